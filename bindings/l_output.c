/* bindings/l_output.c — lume.output(name): drive an output of the board.
 *
 *   local pump = lume.output("pump")  -- nil, err when the board has none
 *   pump:set(v)     -> true | nil, err   (v: a number, or true/false for 1/0)
 *   pump:get()      -> the last value asked for (a set, or the fail-safe)
 *   pump:stats()    -> {sets, writes, write_errors, timeouts, rate_limited, ...}
 *   pump.name, pump.failsafe
 *   lume.output.list() -> {"pump", ...}
 *
 * The service (core/sample/outsvc.h) does the work; this file only maps
 * the script to an owner: the owner is the script's lume_script, named by
 * the script's name, so a new version of the script takes its outputs
 * over, and set() claims first (a version that comes back after a
 * rollback drives them again). The runtime writes the fail-safe values
 * when a script's state closes or the script is stopped
 * (lume_output_release). set() never waits on I/O: the write happens on
 * the output's own thread; a failed write shows in stats and the log.
 * While a bundle's new version replays recorded samples or runs its
 * self_test (a dry run, bindings/bundles.c), set() returns true and drives
 * nothing.
 */
#include "modules.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "outsvc.h"
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#define OUTPUT_MT "lume.output"

typedef struct {
    int i;
} output_ud;

static output_ud *check_output(lua_State *L) { return luaL_checkudata(L, 1, OUTPUT_MT); }

void lume_output_release(lume_script *s, const char *why)
{
    lume_outsvc_release(s->rt->outputs, s, why);
}

// Lua: lume.output(name) -> output | nil, err
static int l_output_new(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *name = luaL_checkstring(L, 2); /* 1 is the module table (__call) */
    int i = s->rt->outputs ? lume_outsvc_find(s->rt->outputs, name) : -ENOENT;
    if (i < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "no output named '%s' on board %s", name, s->rt->cfg.board);
        return 2;
    }
    char *err = NULL;
    if (lume_outsvc_claim(s->rt->outputs, i, s, s->name, &err) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        free(err);
        return 2;
    }
    output_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->i = i;
    luaL_setmetatable(L, OUTPUT_MT);
    return 1;
}

// Lua: output:set(v) -> true | nil, err
static int l_set(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    output_ud *u = check_output(L);
    double v = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : luaL_checknumber(L, 2);
    if (s->dry_run) { /* recorded samples, self_test (bundles.c): nothing is driven */
        lua_pushboolean(L, 1);
        return 1;
    }
    char *err = NULL;
    int r = lume_outsvc_claim(s->rt->outputs, u->i, s, s->name, &err);
    if (r == 0)
        r = lume_outsvc_set(s->rt->outputs, u->i, s, v, &err);
    if (r == 0 && s->rt->sim) { /* a rule test's record (sim.h) */
        lume_output_stats st;
        lume_outsvc_stats(s->rt->outputs, (size_t)u->i, &st);
        lume_sim_output(s->rt, s->name, st.name, v);
    }
    if (r < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "output refused the value");
        free(err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: output:get() -> number
static int l_get(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lua_pushnumber(L, lume_outsvc_get(s->rt->outputs, check_output(L)->i));
    return 1;
}

// Lua: output:stats() -> table
static int l_stats(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lume_output_stats st;
    lume_outsvc_stats(s->rt->outputs, (size_t)check_output(L)->i, &st);
    lua_createtable(L, 0, 12);
    const struct { const char *k; uint64_t v; } n[] = {
        {"sets", st.sets}, {"writes", st.writes}, {"write_errors", st.write_errors},
        {"timeouts", st.timeouts}, {"rate_limited", st.rate_limited},
        {"refused", st.refused}, {"coalesced", st.coalesced}, {"failsafes", st.failsafes}};
    for (size_t k = 0; k < sizeof n / sizeof *n; k++) {
        lua_pushinteger(L, (lua_Integer)n[k].v);
        lua_setfield(L, -2, n[k].k);
    }
    lua_pushnumber(L, st.value);
    lua_setfield(L, -2, "value");
    lua_pushstring(L, st.owner);
    lua_setfield(L, -2, "owner");
    if (st.last_error[0]) {
        lua_pushstring(L, st.last_error);
        lua_setfield(L, -2, "last_error");
    }
    return 1;
}

// Lua: lume.output.list() -> {names}
static int l_output_list(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    size_t n = lume_outsvc_count(s->rt->outputs);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lume_output_stats st;
        lume_outsvc_stats(s->rt->outputs, i, &st);
        lua_pushstring(L, st.name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_index(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    output_ud *u = check_output(L);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "name") || !strcmp(k, "failsafe")) {
        lume_output_stats st;
        lume_outsvc_stats(s->rt->outputs, (size_t)u->i, &st);
        if (k[0] == 'n')
            lua_pushstring(L, st.name);
        else
            lua_pushnumber(L, st.failsafe);
        return 1;
    }
    return lume_handle_method(L, k);
}

static int l_tostring(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lume_output_stats st;
    lume_outsvc_stats(s->rt->outputs, (size_t)check_output(L)->i, &st);
    lua_pushfstring(L, "lume.output(%s)", st.name);
    return 1;
}

/* The handle owns nothing: the fail-safe follows the script, not the
 * handle (a handle collected while the script runs changes nothing). */
static int l_gc(lua_State *L) { (void)L; return 0; }

static const luaL_Reg methods[] = {{"set", l_set}, {"get", l_get}, {"stats", l_stats},
                                   {NULL, NULL}};
static const luaL_Reg meta[] = {{"__index", l_index}, {"__tostring", l_tostring},
                                {"__gc", l_gc},       {"__close", l_gc},
                                {NULL, NULL}};
static const luaL_Reg funcs[] = {{"list", l_output_list}, {NULL, NULL}};

int lume_open_output(lua_State *L)
{
    return lume_open_handle_module(L, OUTPUT_MT, meta, methods, funcs, l_output_new);
}
