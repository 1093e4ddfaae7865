/* bindings/hub_host.h — what the hub's requests need from the runtime:
 * direct methods and cloud-to-device messages (l_hub.c), the SAS token
 * and the twin request counters (twin_host.c). */
#ifndef LUME_HUB_HOST_H
#define LUME_HUB_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "host.h"

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

/* l_hub.c: lume.method(name, fn), lume.on_c2d(fn) */
void lume_hub_open_into(lua_State *L);     /* sets them on the table on top */
/* A direct method call: answered through the dialect (200, 404, 500, 504). */
void lume_hub_host_method(lume_runtime *rt, const char *name, const char *rid,
                          const void *payload, size_t len);
/* A cloud-to-device message with its URL-encoded property bag (may be NULL). */
void lume_hub_host_c2d(lume_runtime *rt, const char *props, const void *payload, size_t len);
/* Whether the script of L registered a method or a c2d handler. On the
 * script's state: call it inside a protected call. */
bool lume_hub_registered(lua_State *L);
/* Counters of l_hub.c's, added into st. */
void lume_hub_host_count(lume_twin_host_stats *st);

#endif
