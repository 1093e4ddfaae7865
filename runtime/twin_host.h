/* runtime/twin_host.h — twin_host.c: the twin in a running lume, its built-in keys and
 * the dialect's requests (SAS token, counters). */
#ifndef LUME_TWIN_HOST_H
#define LUME_TWIN_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "lume.h"

struct lume_twin_host;
int  lume_twin_host_start(lume_runtime *rt, char **err);
void lume_twin_host_free(lume_runtime *rt);
/* Merge patch into the reported document; flushed at the end of the turn. */
void lume_twin_host_report(lume_runtime *rt, cJSON *patch);  /* takes patch */
/* reported.errors.<key> = msg (logged), or cleared with msg NULL; nothing
 * is sent when it is already so. */
void lume_twin_host_error(lume_runtime *rt, const char *key, const char *msg);
/* How many errors were reported so far (a counter): lume_twin_notify leaves
 * errors.<key> alone when a handler's call reported one (lume.net.connectivity). */
uint64_t lume_twin_host_errors_reported(lume_runtime *rt);
/* A message on a twin topic? Then handled, and true. */
bool lume_twin_host_message(lume_runtime *rt, const char *topic, const void *payload,
                            size_t len);
/* A message the session could not take (too large: skipped, see
 * lume_mqtt_cbs.on_skipped), why says so. When topic is one of the twin's
 * desired layers, the reason goes to reported errors.desired (and the log),
 * and true; otherwise nothing, false. topic may be NULL (not kept). */
bool lume_twin_host_refused(lume_runtime *rt, const char *topic, const char *why);
void lume_twin_host_connected(lume_runtime *rt);
/* The twin still waits for an answer on this connection (a GET, a reported
 * PATCH) or has a report to send: an intermittent window stays open. */
bool lume_twin_host_busy(lume_runtime *rt);
/* A desired document for layer ("device", "group:<g>") as if it had
 * arrived on its topic (tools and tests); false for an unknown layer. */
bool lume_twin_host_feed(lume_runtime *rt, const char *layer, const void *payload, size_t len);
/* The reported document as JSON (malloc'd), NULL when there is none. */
char *lume_twin_host_reported_json(lume_runtime *rt);
const cJSON *lume_twin_host_desired(lume_runtime *rt);

/* Counted by twin_host.c, shown in `lume stats` under "twin". */
typedef struct lume_twin_host_stats {
    uint64_t gets;                /* whole twins applied from a GET */
    uint64_t get_errors;          /* GETs answered other than 200 */
    uint64_t patches_applied, patches_stale, patch_gaps, patches_refused;
    uint64_t reported_sent, reported_acked;
    uint64_t reported_throttled;  /* 429: sent again after a backoff */
    uint64_t reported_errors;     /* other statuses */
    uint64_t reported_refused;    /* refused before sending (key rules, 32 KiB) */
    uint64_t token_renewals;
    uint64_t methods, methods_failed, c2d;
} lume_twin_host_stats;

void lume_twin_host_stats_get(lume_runtime *rt, lume_twin_host_stats *st);
/* A script's report: would the reported document, with this patch merged,
 * keep within the dialect's rules (key names, string and document sizes,
 * depth), leaving 4 KiB of a size-limited section to lume's own reports?
 * 0, or -EINVAL with why naming what breaks them (counted reported_refused). */
int lume_twin_host_check_patch(lume_runtime *rt, const cJSON *patch, char *why, size_t cap);
/* The counters as root.twin (for lume_runtime_stats_json). */
void lume_twin_host_stats_json(lume_runtime *rt, cJSON *root);
/* A fresh password for the next CONNECT (the dialect's SAS token), or NULL;
 * arms the renewal that reconnects before it expires. */
const char *lume_twin_host_password(lume_runtime *rt);

#endif
