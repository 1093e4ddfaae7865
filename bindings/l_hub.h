/* bindings/l_hub.h — l_hub.c: the host's calls into lume.method and
 * lume.on_c2d (Lua-free: runtime/twin_host.c includes it). */
#ifndef LUME_L_HUB_H
#define LUME_L_HUB_H

#include <stddef.h>

#include "lume.h"
#include "twin_host.h"

/* A direct method call: answered through the dialect (200, 404, 500, 504). */
void lume_hub_host_method(lume_runtime *rt, const char *name, const char *rid,
                          const void *payload, size_t len);
/* A cloud-to-device message with its URL-encoded property bag (may be NULL). */
void lume_hub_host_c2d(lume_runtime *rt, const char *props, const void *payload, size_t len);
/* Counters of l_hub.c's, added into st. */
void lume_hub_host_count(lume_twin_host_stats *st);

#endif
