/* bindings/bundles.h — bundles.c: script bundles from the twin: verify, stage, soak,
 * commit or roll back (the state machine is drawn at the top of bundles.c). */
#ifndef LUME_BUNDLES_H
#define LUME_BUNDLES_H

#include <stdbool.h>

#include <cJSON.h>

#include "lume.h"

#define LUME_RECENT 32
struct lume_manager;
struct lume_manager *lume_manager_new(lume_runtime *rt, char **err);
void lume_manager_free(struct lume_manager *m);
/* Start the last-known-good bundles persisted in the store (at startup). */
void lume_manager_restore(struct lume_manager *m);
/* The desired "scripts" object changed (NULL: removed). */
void lume_manager_apply(struct lume_manager *m, const cJSON *scripts);
/* The bundle version the twin runs as `name` now, or NULL (none, or not a
 * bundle; m may be NULL). Borrowed: valid until the manager changes it. */
const char *lume_manager_running_version(struct lume_manager *m, const char *name);
/* A local file's script under name changed: its reported entry again (the
 * bundle's, when the twin owns the name). */
void lume_manager_report_local(struct lume_manager *m, const char *name);
/* Whether a local file may replace the twin's version of name now
 * (scripts_local_override; not while a version soaks). m may be NULL. */
bool lume_manager_may_override(struct lume_manager *m, const char *name);
/* A local file of a twin-managed name was refused: reported under
 * scripts.<name>.local = {file, sha256, status = "refused", error}. */
void lume_manager_local_refused(struct lume_manager *m, const char *name, const char *file,
                                const char *sha256, const char *why);

/* What this device asks of a bundle, for operators (reported.lume.trust):
 * {"signed_only": true unless twin.allow_unsigned, "trusted_keys": [the key
 * ids of twin.trusted_keys, revoked ones left out]}. NULL on OOM. */
cJSON *lume_manager_trust_json(const struct lume_manager *m);

#endif
