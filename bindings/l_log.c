/* bindings/l_log.c — lume.log: the runtime's log, tagged with the script.
 *
 *   lume.log.info("temperature %.1f", t)   -- string.format when args follow
 *   lume.log.level()                       -> "info"
 *   lume.log.level("debug", "why")         -> "info" (the level before); the
 *                                             runtime's level, reported as
 *                                             reported.log {level, by, why}
 *   lume.log.counts()                      -> {warn = n, error = n} lines since start
 *   lume.log("warn", ...)                  raises, naming lume.log.warn: one way to log
 */
#include "modules.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "twin_host.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "log.h"

static int log_at(lua_State *L, int level)
{
    lume_script *s = lume_script_of(L);
    if (level >= LUME_LOG_WARN && s->status == LUME_SCRIPT_LOADING)
        s->warned = true; /* it explains itself: scripts.c does not call it idle */
    if (level < lume_log_get_level())
        return 0;
    const char *msg;
    if (lua_gettop(L) > 1) {
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "format");
        lua_insert(L, 1);
        lua_pop(L, 1);
        lua_call(L, lua_gettop(L) - 1, 1);
        msg = lua_tostring(L, -1);
    } else {
        msg = luaL_tolstring(L, 1, NULL);
    }
    char comp[96];
    snprintf(comp, sizeof comp, "script %s", s->name);
    lume_log(level, comp, "%s", msg);
    return 0;
}

// Lua: lume.log.debug(fmt, ...)
static int l_debug(lua_State *L) { return log_at(L, LUME_LOG_DEBUG); }
// Lua: lume.log.info(fmt, ...)
static int l_info(lua_State *L) { return log_at(L, LUME_LOG_INFO); }
// Lua: lume.log.warn(fmt, ...)
static int l_warn(lua_State *L) { return log_at(L, LUME_LOG_WARN); }
// Lua: lume.log.error(fmt, ...)
static int l_error(lua_State *L) { return log_at(L, LUME_LOG_ERROR); }
// Lua: lume.log.level([name [, why]]) -> the level ("info"; before the change)
static int l_level(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    int before = lume_log_get_level();
    bool set = !lua_isnoneornil(L, 1);
    const char *name = set ? luaL_checkstring(L, 1) : NULL;
    const char *why = luaL_optstring(L, 2, NULL);
    lua_pushstring(L, lume_log_level_name(before));
    if (!set)
        return 1;
    int level = lume_log_level_parse(name);
    if (level < 0)
        return luaL_argerror(L, 1, lua_pushfstring(L, "'%s' is not a level (debug, info, "
                                                      "warn, error)", name));
    if (s->dry_run) /* a dry run changes nothing */
        return 1;
    lume_log_target_set_level(&s->rt->log, level); /* this runtime's, as desired log does */
    s->rt->cfg.log_level = level;
    if (level != before)
        lume_log(LUME_LOG_WARN, "log", "level %s -> %s, set by script %s%s%s",
                 lume_log_level_name(before), lume_log_level_name(level), s->name,
                 why ? ": " : "", why ? why : "");
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(patch, "log");
    cJSON_AddStringToObject(o, "level", lume_log_level_name(level));
    char by[96];
    snprintf(by, sizeof by, "script %s", s->name);
    cJSON_AddStringToObject(o, "by", by);
    if (why)
        cJSON_AddStringToObject(o, "why", why);
    else
        cJSON_AddNullToObject(o, "why");
    lume_twin_host_report(s->rt, patch);
    return 1;
}

// Lua: lume.log.counts() -> {warn = n, error = n}: lines logged since the runtime started
static int l_counts(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)lume_log_target_lines(&s->rt->log, LUME_LOG_WARN));
    lua_setfield(L, -2, "warn");
    lua_pushinteger(L, (lua_Integer)lume_log_target_lines(&s->rt->log, LUME_LOG_ERROR));
    lua_setfield(L, -2, "error");
    return 1;
}

/* lume.log is a table of levels; a call names the right function. */
static int l_call(lua_State *L)
{
    const char *lv = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "info";
    if (strcmp(lv, "debug") && strcmp(lv, "info") && strcmp(lv, "warn") && strcmp(lv, "error"))
        lv = "info";
    return luaL_error(L, "lume.log is not a function: call lume.log.%s(fmt, ...) (levels: "
                         "debug, info, warn, error)", lv);
}

static const luaL_Reg funcs[] = {{"debug", l_debug}, {"info", l_info}, {"warn", l_warn},
                                 {"error", l_error}, {"level", l_level}, {"counts", l_counts},
                                 {NULL, NULL}};

int lume_open_log(lua_State *L)
{
    luaL_newlib(L, funcs);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_call);
    lua_setfield(L, -2, "__call");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    return 1;
}
