/* core/store/twin.h — the device twin's documents: desired (in layers, merged)
 * and reported, with versions, persisted in SQLite through lume_kv. No Lua.
 *
 * Desired state comes in layers, merged in a fixed order with the device's
 * own document last: fleet < site < ring < device (the order of the groups
 * in the config, then "device"). Each layer is a JSON object; the merged
 * document is the RFC 7386 JSON merge-patch of the layers in order (a null
 * deletes a key set by an earlier layer). A layer may carry "$version" (an
 * integer): a document with a lower version than the one held is ignored
 * (stale), an equal version with the same content is a no-op, so applying
 * what the broker re-sends on every reconnect is idempotent. Keys starting
 * with '$' are metadata and are not part of the merged document.
 *
 * The reported document is patched (merge-patch semantics) and flushed as
 * one whole document per loop turn by the caller (take_reported).
 *
 * Limits (documents larger or deeper are refused with a message): 256 KiB
 * per layer document, nesting depth 32. */
#ifndef LUME_TWIN_H
#define LUME_TWIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "kv.h"

#define LUME_TWIN_MAX_DOC   (256 * 1024)
#define LUME_TWIN_MAX_DEPTH 32

typedef struct lume_twin lume_twin;

/* layers: names in merge order, e.g. {"fleet", "site-a", "ring-pilot",
 * "device"} (the last is the device's own). Loads what was persisted (the
 * layers, the reported document). NULL with *err. kv may be NULL (nothing
 * persisted: tests, CLI tools). */
lume_twin *lume_twin_open(lume_kv *kv, const char *const *layers, size_t nlayers, char **err);
void       lume_twin_close(lume_twin *t);

/* A layer document arrived. Returns 1 when it changed the layer (and the
 * layer is persisted), 0 when it was stale or identical (nothing changes),
 * or negative with *err naming what is wrong (not JSON, not an object, too
 * large, too deep, "$version" not a non-negative integer, unknown layer);
 * on error the layer is unchanged. An empty document (len 0: a retained
 * message deleted) clears the layer. */
int lume_twin_set_layer(lume_twin *t, const char *layer, const char *json, size_t len,
                        char **err);

/* Whether the last lume_twin_set_layer ignored its document as stale: the
 * $version it carried (*got) was below the one the layer holds (*held).
 * Such a document is logged at WARN; the caller reports it. */
bool lume_twin_was_stale(const lume_twin *t, int64_t *got, int64_t *held);

/* The merged desired document (without $ keys). Owned by the twin, valid
 * until the next set_layer. Never NULL (an empty object at least). */
const cJSON *lume_twin_desired(const lume_twin *t);
/* The version of a layer (-1 when it has none, or no such layer). */
int64_t      lume_twin_layer_version(const lume_twin *t, const char *layer);
/* {"fleet": 3, "device": 12} — versions of the layers held (malloc'd JSON). */
char        *lume_twin_versions_json(const lume_twin *t);

/* Visit the top-level keys of the merged desired document whose value
 * differs from the last visit (added, changed or removed: now is NULL when
 * removed), then remember the current document as visited. The first call
 * after open visits every key. */
void lume_twin_each_change(lume_twin *t,
                           void (*fn)(void *ud, const char *key, const cJSON *now,
                                      const cJSON *before),
                           void *ud);

/* Merge-patch the reported document (patch must be an object). 0 or
 * -EINVAL (*err may be NULL). Marks it dirty when anything changed. */
int  lume_twin_report(lume_twin *t, const cJSON *patch, char **err);
bool lume_twin_reported_dirty(const lume_twin *t);
/* The whole reported document as JSON (malloc'd); clears dirty and
 * persists it. */
char *lume_twin_take_reported(lume_twin *t);
const cJSON *lume_twin_reported(const lume_twin *t);

/* RFC 7386: apply patch to *target (replaced in place; *target may be NULL
 * or not an object). 0, or -ENOMEM. */
int lume_json_merge_patch(cJSON **target, const cJSON *patch);
/* Merge one layer's object onto target (an object) as the twin merges its
 * layers: RFC 7386, except that an entry under "scripts" replaces the
 * entry below it whole (a bundle is one signed unit). `lume twin set`
 * merges its patch into a layer the same way. 0, -ENOMEM, or -EINVAL when
 * either is not an object. */
int lume_twin_merge_layer(cJSON *target, const cJSON *layer);
/* Parse with the twin's limits (size, depth). NULL with *err. */
cJSON *lume_twin_parse(const char *json, size_t len, char **err);
/* The same for a JSON object, errors naming it `what` ("twin GET answer:
 * not JSON (error near byte 3 of 9)", "... must be a JSON object, got an
 * array"). NULL with *err. */
cJSON *lume_twin_parse_object(const char *what, const char *json, size_t len, char **err);

#endif
