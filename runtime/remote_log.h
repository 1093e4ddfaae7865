/* runtime/remote_log.h — the device's log lines streamed to the hub while
 * desired log.remote asks for them (remote_log.c; docs/twin.md "Remote
 * logs", docs/mqtt.md). Loop thread only, except that the log tap it
 * installs may be called from any thread. */
#ifndef LUME_REMOTE_LOG_H
#define LUME_REMOTE_LOG_H

#include <cJSON.h>

#include "lume.h"

typedef struct lume_remote_log lume_remote_log;

/* Off until lume_remote_log_apply turns it on. NULL when out of memory
 * (then desired log.remote is refused with a reported error). */
lume_remote_log *lume_remote_log_new(lume_runtime *rt);
/* Removes its tap from the runtime's log target, stops its timers, frees. */
void lume_remote_log_free(lume_remote_log *r);
/* Desired log.remote: {level = "warn", for_s = 600}, or NULL / null /
 * for_s 0 to stop. A bad value leaves what runs as it is and goes to the
 * log and reported.errors.log_remote. r may be NULL (out of memory). */
void lume_remote_log_apply(lume_remote_log *r, lume_runtime *rt, const cJSON *v);

#endif
