/* bindings/store_host.h — store_host.c: the store in a running lume (lock, checks, stats,
 * twin). */
#ifndef LUME_STORE_HOST_H
#define LUME_STORE_HOST_H

#include <cJSON.h>

#include "lume.h"

/* Make and lock the store directory (core/store/store.h lume_store_open: -EBUSY
 * when another lume holds it, -EPERM when another user can write it). */
int  lume_store_host_open(lume_runtime *rt, char **err);
/* Report it and check it once a second (after the databases, the twin and
 * the control socket are up). */
void lume_store_host_start(lume_runtime *rt);
void lume_store_host_stop(lume_runtime *rt);
/* Unlock (after the databases are closed). */
void lume_store_host_close(lume_runtime *rt);
/* Add the "store" object to a stats document. */
void lume_store_host_json(lume_runtime *rt, cJSON *root);

#endif
