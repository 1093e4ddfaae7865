/* bindings/l_sensor.c — lume.sensor(name): a handle on one sampler channel.
 *
 *   local s = lume.sensor("vibration")   -- nil, err when there is no such sensor
 *   s:read()        -> value, t (wall-clock seconds) | nil, err
 *   s:rate([hz])    -> current rate | applied rate (clamped to the board's bounds)
 *   s:stats()       -> {samples, overruns, drops, read_errors, rate, late_p50_us, ...}
 *   s:bounds()      -> min_hz, max_hz
 *   s.name, s.unit
 *   lume.sensor.list() -> {"temperature", ...}
 */
#include "modules.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "hist.h"
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"

#define SENSOR_MT "lume.sensor"

typedef struct {
    unsigned ch;
} sensor_ud;

static sensor_ud *check_sensor(lua_State *L) { return luaL_checkudata(L, 1, SENSOR_MT); }

// Lua: lume.sensor(name) -> sensor | nil, err
static int l_sensor_new(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *name = luaL_checkstring(L, 2); /* 1 is the module table (__call) */
    int ch = lume_sampler_find(s->rt->sampler, name);
    if (ch < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "no sensor named '%s' on board %s", name, s->rt->cfg.board);
        return 2;
    }
    sensor_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->ch = (unsigned)ch;
    luaL_setmetatable(L, SENSOR_MT);
    return 1;
}

// Lua: lume.sensor.list() -> {names}
static int l_sensor_list(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    size_t n = lume_sampler_count(s->rt->sampler);
    lua_createtable(L, (int)n, 0);
    for (unsigned i = 0; i < n; i++) {
        lua_pushstring(L, lume_sampler_name(s->rt->sampler, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

// Lua: sensor:read() -> value, t | nil, err
static int l_read(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    sensor_ud *u = check_sensor(L);
    double v;
    int64_t t;
    int32_t st;
    if (lume_sampler_last(s->rt->sampler, u->ch, &v, &t, &st) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "no reading yet");
        return 2;
    }
    if (st != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "read failed: %s", strerror(-st));
        return 2;
    }
    /* t is monotonic; report wall-clock seconds like on_sample does */
    int64_t wall = lume_wall_ns() - (lume_mono_ns() - t);
    lua_pushnumber(L, v);
    lua_pushnumber(L, lume_ns_seconds(wall));
    return 2;
}

// Lua: sensor:rate([hz]) -> rate
static int l_rate(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    sensor_ud *u = check_sensor(L);
    if (lua_isnoneornil(L, 2)) {
        lua_pushnumber(L, lume_sampler_rate(s->rt->sampler, u->ch));
        return 1;
    }
    double hz = luaL_checknumber(L, 2);
    luaL_argcheck(L, hz > 0 && isfinite(hz), 2, "rate must be a positive number of Hz");
    double applied = 0;
    lume_sampler_set_rate(s->rt->sampler, u->ch, hz, &applied);
    lua_pushnumber(L, applied);
    return 1;
}

// Lua: sensor:bounds() -> min_hz, max_hz
static int l_bounds(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    sensor_ud *u = check_sensor(L);
    double lo, hi;
    lume_sampler_bounds(s->rt->sampler, u->ch, &lo, &hi);
    lua_pushnumber(L, lo);
    lua_pushnumber(L, hi);
    return 2;
}

static void setnum(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void setint(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

// Lua: sensor:stats() -> table
static int l_stats(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    sensor_ud *u = check_sensor(L);
    lume_channel_stats st;
    lume_sampler_stats(s->rt->sampler, u->ch, &st);
    lua_createtable(L, 0, 12);
    setint(L, "samples", st.samples);
    setint(L, "overruns", st.overruns);
    setint(L, "drops", st.drops);
    setint(L, "read_errors", st.read_errors);
    setnum(L, "rate", st.rate_hz);
    setnum(L, "late_p50_us", (double)lume_hist_percentile(&st.late, 50) / 1e3);
    setnum(L, "late_p99_us", (double)lume_hist_percentile(&st.late, 99) / 1e3);
    setnum(L, "late_p999_us", (double)lume_hist_percentile(&st.late, 99.9) / 1e3);
    setnum(L, "late_max_us", (double)st.late.max_ns / 1e3);
    setnum(L, "late_mean_us",
           st.late.count ? (double)st.late.sum_ns / (double)st.late.count / 1e3 : 0);
    if (st.last_error) {
        lua_pushstring(L, strerror(-st.last_error));
        lua_setfield(L, -2, "last_error");
    }
    return 1;
}

static int l_index(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    sensor_ud *u = check_sensor(L);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "name")) {
        lua_pushstring(L, lume_sampler_name(s->rt->sampler, u->ch));
        return 1;
    }
    if (!strcmp(k, "unit")) {
        const char *unit = lume_sampler_unit(s->rt->sampler, u->ch);
        if (unit)
            lua_pushstring(L, unit);
        else
            lua_pushnil(L);
        return 1;
    }
    return lume_handle_method(L, k);
}

static int l_tostring(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    sensor_ud *u = check_sensor(L);
    lua_pushfstring(L, "lume.sensor(%s)", lume_sampler_name(s->rt->sampler, u->ch));
    return 1;
}

static int l_gc(lua_State *L) { (void)L; return 0; } /* nothing owned */

static const luaL_Reg methods[] = {{"read", l_read},     {"rate", l_rate},
                                   {"stats", l_stats},   {"bounds", l_bounds},
                                   {NULL, NULL}};
static const luaL_Reg meta[] = {{"__index", l_index}, {"__tostring", l_tostring},
                                {"__gc", l_gc},       {"__close", l_gc},
                                {NULL, NULL}};
static const luaL_Reg funcs[] = {{"list", l_sensor_list}, {NULL, NULL}};

int lume_open_sensor(lua_State *L)
{
    return lume_open_handle_module(L, SENSOR_MT, meta, methods, funcs, l_sensor_new);
}
