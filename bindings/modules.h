/* bindings/modules.h — the Lua modules, one file each (l_<module>.c); each
 * opener pushes its module table, and the `modules` table of l_lume.c
 * makes it lume.NAME (a new module: one file, its opener here, one line
 * there). */
#ifndef LUME_MODULES_H
#define LUME_MODULES_H

#include <lauxlib.h>
#include <lua.h>

int lume_open_lume(lua_State *L);    /* l_lume.c: the `lume` global */
int lume_open_sensor(lua_State *L);  /* l_sensor.c */
int lume_open_timer(lua_State *L);   /* l_timer.c */
int lume_open_log(lua_State *L);     /* l_log.c */
int lume_open_store(lua_State *L);   /* l_store.c */
int lume_open_net(lua_State *L);     /* l_net.c: lume.net and lume.subscribe */
int lume_open_twin(lua_State *L);    /* l_twin.c: lume.twin */
int lume_open_output(lua_State *L);  /* l_output.c: lume.output */
int lume_open_keep(lua_State *L);    /* l_keep.c: the lume.keep function */
/* l_hub.c: sets lume.method(name, fn) and lume.on_c2d(fn) on the table on top */
void lume_hub_open_into(lua_State *L);

/* l_lume.c: a module whose values are handles (lume.sensor, lume.output):
 * registers the handles' metatable `mt` with `meta` and a "methods" table,
 * and pushes the module table of `funcs`, callable as `call` (the module
 * called makes a handle: lume.sensor("temperature")). */
int lume_open_handle_module(lua_State *L, const char *mt, const luaL_Reg *meta,
                            const luaL_Reg *methods, const luaL_Reg *funcs, lua_CFunction call);
/* From a handle's __index (handle at 1): push its method named k, or nil. */
int lume_handle_method(lua_State *L, const char *k);

#endif
