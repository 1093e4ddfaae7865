/* bindings/config_lua.h — config_lua.c: the configuration from a Lua table. */
#ifndef LUME_CONFIG_LUA_H
#define LUME_CONFIG_LUA_H

#include <lua.h>

#include "config.h"

/* Check a Lua table (at idx) into c, key by key. 0 or
 * negative with *err naming origin, key, value and what was expected. */
int lume_config_from_lua(lume_config *c, lua_State *L, int idx, const char *origin,
                         char **err);

#endif
