/* bindings/l_hub.h — l_hub.c: the host's calls into lume.method and
 * lume.on_c2d (Lua-free: runtime/twin_host.c includes it). */
#ifndef LUME_L_HUB_H
#define LUME_L_HUB_H

#include <stdbool.h>
#include <stddef.h>

#include "lume.h"
#include "twin_host.h"

/* A direct method call: answered through the dialect (200, 404, 500, 504). */
void lume_hub_host_method(lume_runtime *rt, const char *name, const char *rid,
                          const void *payload, size_t len);
/* A cloud-to-device message with its URL-encoded property bag (may be NULL). */
void lume_hub_host_c2d(lume_runtime *rt, const char *props, const void *payload, size_t len);
/* Whether the script of L registered a method or a c2d handler. On the
 * script's state: call it inside a protected call. */
struct lua_State;
bool lume_hub_registered(struct lua_State *L);
/* Counters of l_hub.c's, added into st. */
void lume_hub_host_count(lume_twin_host_stats *st);

#endif
