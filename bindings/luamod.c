/* bindings/luamod.c — lume_host: the runtime as a Lua C module, so busted
 * specs (on lua5.4) drive a real runtime: real sampler thread, real SQLite
 * outbox, real sandboxed script states. Also what an embedder's own Lua
 * tooling would use.
 *
 *   local host = require "lume_host"
 *   local rt = assert(host.new{ board = "sim", store = dir, scripts_dir = dir })
 *   rt:run(200)                          -- service the loop for 200 ms
 *   rt:install("name", source)           -- true | nil, err
 *   rt:reload("name")                    -- from scripts_dir; true | nil, err
 *   rt:unload("name")
 *   rt:scripts()                         -- { name = {status, version, errors, ...} }
 *   rt:sensor("vibration")               -- stats + last value
 *   rt:set_rate("vibration", 500)        -- applied rate
 *   rt:outbox()                          -- outbox stats
 *   rt:peek(n)                           -- committed messages in send order
 *   rt:call("script", "fn", ...)         -- call a global of a script (JSON values)
 *   rt:status_line()
 *   rt:stats()                           -- lume stats, as a JSON string
 *   rt:desired(json [, layer])           -- a desired document, as if it had arrived
 *   rt:reported()                        -- the reported document, as a JSON string
 *   rt:sim_start(t0), rt:sim_advance(t), rt:sim_sample(sensor, value, t), rt:sim_now(),
 *   rt:sim_events()                      -- a simulated clock (sim.h; the lume.test harness)
 *   rt:close()
 *   host.config_check(tbl)               -- true | nil, err (the same checks as lume run)
 *   host.config_load(path)               -- true | nil, err
 *   host.logs()                          -- log lines since the last call
 *   host.clock()                         -- monotonic seconds (for benchmarks)
 *   host.thread_clock()                  -- CPU seconds of the calling thread (the loop's)
 *   host.pattern_lib()                   -- {find, match, gmatch, gsub}: lume's matcher
 *                                        -- (the sandbox's, without the budget checks)
 *   host.version
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include <lualib.h>

#include "config_lua.h"
#include "luajson.h"
#include "lume.h"
#include "pattern.h"
#include "registry.h"
#include "runtime.h"
#include "script.h"
#include "scripts.h"
#include "sim.h"
#include "twin_host.h"
#include "config.h"
#include "hist.h"
#include "outbox.h"
#include "sampler.h"
#include "log.h"

#define RT_MT "lume_host.runtime"
#define MAX_LOGS 20000

typedef struct {
    lume_runtime *rt;
} rt_ud;

/* ---- log capture ---------------------------------------------------------- */

typedef struct {
    int   level;
    char *component;
    char *msg;
} logline;

static logline g_logs[MAX_LOGS];
static size_t  g_nlogs;
static bool    g_verbose;

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    if (g_verbose)
        lume_log_stderr(NULL, level, component, msg);
    if (g_nlogs == MAX_LOGS) {
        free(g_logs[0].component);
        free(g_logs[0].msg);
        memmove(g_logs, g_logs + 1, (MAX_LOGS - 1) * sizeof *g_logs);
        g_nlogs--;
    }
    g_logs[g_nlogs].level = level;
    g_logs[g_nlogs].component = strdup(component ? component : "");
    g_logs[g_nlogs].msg = strdup(msg);
    g_nlogs++;
}

// Lua: host.logs() -> { {level=, component=, msg=}, ... }
static int h_logs(lua_State *L)
{
    lua_createtable(L, (int)g_nlogs, 0);
    for (size_t i = 0; i < g_nlogs; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, lume_log_level_name(g_logs[i].level));
        lua_setfield(L, -2, "level");
        lua_pushstring(L, g_logs[i].component ? g_logs[i].component : "");
        lua_setfield(L, -2, "component");
        lua_pushstring(L, g_logs[i].msg ? g_logs[i].msg : "");
        lua_setfield(L, -2, "msg");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        free(g_logs[i].component);
        free(g_logs[i].msg);
    }
    g_nlogs = 0;
    return 1;
}

/* ---- config --------------------------------------------------------------- */

static int build(lua_State *L, int idx, lume_config *c)
{
    if (lume_config_init(c) < 0)
        return luaL_error(L, "out of memory");
    c->status_interval_ms = 0;
    c->watch_scripts = false;
    char *err = NULL;
    if (lume_config_from_lua(c, L, idx, "config", &err) < 0) {
        lume_config_free(c);
        lua_pushnil(L);
        lua_pushstring(L, err);
        free(err);
        return 2;
    }
    return 0;
}

// Lua: host.config_check(tbl) -> true | nil, err
static int h_config_check(lua_State *L)
{
    lume_config c;
    int r = build(L, 1, &c);
    if (r)
        return r;
    lume_config_free(&c);
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: host.config_load(path) -> true | nil, err
static int h_config_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lume_config c;
    lume_config_init(&c);
    char *err = NULL;
    int r = lume_config_load(&c, path, &err);
    lume_config_free(&c);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        free(err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: host.new(config) -> runtime | nil, err
static int h_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    rt_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->rt = NULL; /* closed state first: a failure below leaves nothing half-built */
    luaL_setmetatable(L, RT_MT);
    lume_config c;
    int r = build(L, 1, &c);
    if (r)
        return r;
    char *err = NULL;
    u->rt = lume_runtime_new(&c, &err);
    /* the specs call into the runtime's parts directly, outside its own
     * log target: the process level follows the config, as it did when
     * lume_runtime_new set it */
    if (u->rt)
        lume_log_set_level(c.log_level);
    lume_config_free(&c);
    if (!u->rt) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "cannot create runtime");
        free(err);
        return 2;
    }
    return 1;
}

static lume_runtime *check_rt(lua_State *L)
{
    rt_ud *u = luaL_checkudata(L, 1, RT_MT);
    if (!u->rt)
        luaL_error(L, "runtime is closed");
    return u->rt;
}

// Lua: rt:run(ms)
static int r_run(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    lua_Integer ms = luaL_checkinteger(L, 2);
    luaL_argcheck(L, ms >= 0 && ms <= 3600000, 2, "ms out of range");
    lume_runtime_run_for(rt, (int)ms);
    return 0;
}

static int result(lua_State *L, int r, char *err)
{
    if (r == 0) {
        free(err);
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err ? err : strerror(-r));
    free(err);
    return 2;
}

// Lua: rt:install(name, source) -> true | nil, err
static int r_install(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    const char *name = luaL_checkstring(L, 2);
    size_t len;
    const char *src = luaL_checklstring(L, 3, &len);
    char *err = NULL;
    int r = lume_scripts_install(rt, name, NULL, src, len, &err);
    return result(L, r, err);
}

// Lua: rt:reload([name]) -> true | nil, err
static int r_reload(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    const char *name = luaL_optstring(L, 2, NULL);
    char *err = NULL;
    int r = lume_scripts_reload(rt, name, &err);
    return result(L, r, err);
}

// Lua: rt:unload(name) -> bool
static int r_unload(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    lua_pushboolean(L, lume_scripts_unload(rt, luaL_checkstring(L, 2)) == 0);
    return 1;
}

static void setint(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

// Lua: rt:scripts() -> { name = {...} }
static int r_scripts(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    lua_newtable(L);
    for (lume_script *s = rt->scripts; s; s = s->next) {
        lua_createtable(L, 0, 12);
        lua_pushstring(L, lume_script_status_name(s->status));
        lua_setfield(L, -2, "status");
        lua_pushstring(L, s->version);
        lua_setfield(L, -2, "version");
        setint(L, "generation", s->generation);
        setint(L, "errors", s->errors);
        setint(L, "calls", s->calls);
        setint(L, "budget_overruns", s->budget_overruns);
        setint(L, "publishes", s->publishes);
        setint(L, "handlers", lume_cb_count(s, LUME_CB_SAMPLE));
        setint(L, "mem", s->mem.used);
        setint(L, "mem_peak", s->mem.peak);
        setint(L, "mem_limit", s->mem.limit);
        if (s->last_error) {
            lua_pushstring(L, s->last_error);
            lua_setfield(L, -2, "last_error");
        }
        lua_setfield(L, -2, s->name);
    }
    return 1;
}

// Lua: rt:sensor(name) -> stats | nil, err
static int r_sensor(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    const char *name = luaL_checkstring(L, 2);
    int ch = lume_sampler_find(rt->sampler, name);
    if (ch < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "no sensor named '%s'", name);
        return 2;
    }
    lume_channel_stats st;
    lume_sampler_stats(rt->sampler, (unsigned)ch, &st);
    lua_createtable(L, 0, 10);
    setint(L, "samples", st.samples);
    setint(L, "overruns", st.overruns);
    setint(L, "drops", st.drops);
    setint(L, "read_errors", st.read_errors);
    lua_pushnumber(L, st.rate_hz);
    lua_setfield(L, -2, "rate");
    lua_pushnumber(L, (double)lume_hist_percentile(&st.late, 99) / 1e3);
    lua_setfield(L, -2, "late_p99_us");
    double v;
    int64_t t;
    int32_t status;
    if (lume_sampler_last(rt->sampler, (unsigned)ch, &v, &t, &status) == 0 && status == 0) {
        lua_pushnumber(L, v);
        lua_setfield(L, -2, "value");
    }
    return 1;
}

// Lua: rt:set_rate(name, hz) -> applied
static int r_set_rate(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    int ch = lume_sampler_find(rt->sampler, luaL_checkstring(L, 2));
    luaL_argcheck(L, ch >= 0, 2, "no such sensor");
    double applied = 0;
    if (lume_sampler_set_rate(rt->sampler, (unsigned)ch, luaL_checknumber(L, 3), &applied) < 0)
        return luaL_error(L, "bad rate");
    lua_pushnumber(L, applied);
    return 1;
}

// Lua: rt:outbox() -> stats
static int r_outbox(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    lume_outbox_stats st;
    lume_outbox_get_stats(rt->outbox, &st);
    lua_createtable(L, 0, 10);
    for (int l = 0; l < LUME_LANES; l++) {
        lua_createtable(L, 0, 6);
        setint(L, "depth", st.depth[l]);
        setint(L, "bytes", st.bytes[l]);
        setint(L, "appended", st.appended[l]);
        setint(L, "pending", st.lane_pending[l]);
        setint(L, "dropped", st.dropped[l]);
        setint(L, "refused", st.refused[l]);
        setint(L, "expired", st.expired[l]);
        lua_setfield(L, -2, lume_lane_name(l));
    }
    setint(L, "pending", st.pending);
    setint(L, "committing", st.committing);
    setint(L, "durable_id", st.durable_id);
    setint(L, "commits", st.commits);
    setint(L, "commit_errors", st.commit_errors);
    setint(L, "inflight", st.inflight);
    setint(L, "file_bytes", st.file_bytes);
    setint(L, "free_bytes", st.free_bytes);
    return 1;
}

// Lua: rt:peek(n) -> { {id=, lane=, topic=, payload=, qos=}, ... }
static int r_peek(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    lua_Integer n = luaL_optinteger(L, 2, 100);
    luaL_argcheck(L, n > 0 && n <= 100000, 2, "1..100000");
    lume_outbox_commit(rt->outbox);
    lume_outbox_msg *m = calloc((size_t)n, sizeof *m);
    if (!m)
        return luaL_error(L, "out of memory");
    int got = lume_outbox_peek(rt->outbox, m, (int)n);
    lua_createtable(L, got > 0 ? got : 0, 0);
    for (int i = 0; i < got; i++) {
        lua_createtable(L, 0, 5);
        setint(L, "id", m[i].id);
        lua_pushstring(L, lume_lane_name(m[i].lane));
        lua_setfield(L, -2, "lane");
        lua_pushstring(L, m[i].topic);
        lua_setfield(L, -2, "topic");
        lua_pushlstring(L, m[i].payload ? m[i].payload : "", m[i].len);
        lua_setfield(L, -2, "payload");
        setint(L, "qos", (uint64_t)m[i].qos);
        lua_rawseti(L, -2, i + 1);
        lume_outbox_msg_clear(&m[i]);
    }
    free(m);
    return 1; /* peek is a look, not a send: nothing is marked in flight */
}

// Lua: rt:call(script, fname, ...) -> true, results... | nil, err
static int r_call(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    lume_script *s = lume_scripts_find(rt, luaL_checkstring(L, 2));
    const char *fname = luaL_checkstring(L, 3);
    if (!s || !s->L)
        return luaL_error(L, "no running script named '%s'", lua_tostring(L, 2));
    lua_State *S = s->L;
    int base = lua_gettop(S);
    lua_getglobal(S, fname);
    int nargs = lua_gettop(L) - 3;
    for (int i = 4; i <= lua_gettop(L); i++) {
        size_t len;
        char *err = NULL;
        char *json = lume_json_encode_bytes(L, i, &len, &err);
        if (!json || lume_json_push(S, json, len, &err) < 0) {
            free(json);
            lua_settop(S, base);
            lua_pushnil(L);
            lua_pushstring(L, err);
            free(err);
            return 2;
        }
        free(json);
    }
    /* the function runs as the runtime's own calls do: with its log target
     * (its level, lume.log.level, lume.log.counts) */
    lume_log_target *prev = lume_log_use(&rt->log);
    int st = lua_pcall(S, nargs, LUA_MULTRET, 0);
    lume_log_use(prev);
    if (st != LUA_OK) {
        lua_pushnil(L);
        lua_pushstring(L, lua_tostring(S, -1));
        lua_settop(S, base);
        return 2;
    }
    int nres = lua_gettop(S) - base;
    lua_pushboolean(L, 1);
    for (int i = 1; i <= nres; i++) {
        size_t len;
        char *err = NULL;
        char *json = lume_json_encode_bytes(S, base + i, &len, &err);
        if (!json || lume_json_push(L, json, len, &err) < 0) {
            lua_pushnil(L);
            free(err);
        }
        free(json);
    }
    lua_settop(S, base);
    return nres + 1;
}

// Lua: rt:status_line() -> string
static int r_status_line(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    char buf[2048];
    lume_runtime_status_line(rt, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

// Lua: rt:stats() -> json
static int r_stats(lua_State *L)
{
    char *json = lume_runtime_stats_json(check_rt(L));
    lua_pushstring(L, json ? json : "{}");
    free(json);
    return 1;
}

// Lua: rt:desired(json [, layer]) -> bool (the layer exists)
static int r_desired(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    size_t len;
    const char *doc = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, lume_twin_host_feed(rt, luaL_optstring(L, 3, "device"), doc, len));
    return 1;
}

// Lua: rt:reported() -> json | nil
static int r_reported(lua_State *L)
{
    char *json = lume_twin_host_reported_json(check_rt(L));
    if (json)
        lua_pushstring(L, json);
    else
        lua_pushnil(L);
    free(json);
    return 1;
}

// Lua: host.clock() -> seconds (CLOCK_MONOTONIC)
static int h_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

// Lua: host.thread_clock() -> seconds (CLOCK_THREAD_CPUTIME_ID of the caller)
static int h_thread_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

// Lua: rt:close()
static int r_close(lua_State *L)
{
    rt_ud *u = luaL_checkudata(L, 1, RT_MT);
    if (u->rt) {
        lume_runtime_free(u->rt);
        u->rt = NULL;
    }
    return 0;
}

// Lua: host.pattern_lib() -> { find = f, match = f, gmatch = f, gsub = f }
static int h_pattern_lib(lua_State *L)
{
    lume_pattern_push(L);
    return 1;
}

/* ---- a simulated clock (sim.h): the lume.test harness ---------------------- */

static int64_t seconds_ns(lua_State *L, int idx)
{
    lua_Number t = luaL_checknumber(L, idx);
    luaL_argcheck(L, t >= 0 && t < 9.2e9, idx, "time must be seconds from 0 to 9.2e9");
    return lume_seconds_ns(t);
}

// Lua: rt:sim_start(t0) -> true | nil, err   the scripts' clock reads t0 (seconds) from now on
static int r_sim_start(lua_State *L)
{
    int r = lume_sim_start(check_rt(L), seconds_ns(L, 2));
    return result(L, r, r == -EALREADY ? strdup("the clock is simulated already") : NULL);
}

// Lua: rt:sim_advance(t) -> timer callbacks run   (t: seconds, simulated)
static int r_sim_advance(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    if (!rt->sim)
        return luaL_error(L, "sim_advance: the clock is not simulated (sim_start)");
    lua_pushinteger(L, lume_sim_advance(rt, seconds_ns(L, 2)));
    return 1;
}

// Lua: rt:sim_sample(sensor, value, t) -> true | nil, err
static int r_sim_sample(lua_State *L)
{
    lume_runtime *rt = check_rt(L);
    const char *name = luaL_checkstring(L, 2);
    double v = luaL_checknumber(L, 3);
    int64_t t = seconds_ns(L, 4);
    if (!rt->sim)
        return luaL_error(L, "sim_sample: the clock is not simulated (sim_start)");
    int ch = lume_sampler_find(rt->sampler, name);
    if (ch < 0) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 0; i < lume_sampler_count(rt->sampler); i++) {
            if (i)
                luaL_addstring(&b, ", ");
            luaL_addstring(&b, lume_sampler_name(rt->sampler, (unsigned)i));
        }
        luaL_pushresult(&b);
        lua_pushnil(L);
        lua_pushfstring(L, "no sensor named '%s' on board %s (sensors: %s)", name,
                        rt->cfg.board, lua_tostring(L, -2));
        return 2;
    }
    lume_sim_sample(rt, (unsigned)ch, v, t);
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: rt:sim_now() -> seconds (simulated)
static int r_sim_now(lua_State *L)
{
    lua_pushnumber(L, lume_ns_seconds(lume_rt_wall_ns(check_rt(L))));
    return 1;
}

// Lua: rt:sim_events() -> { {kind = "publish", t, script, route, payload, priority, qos}
//                          | {kind = "output", t, script, output, value}, ... } since the last call
static int r_sim_events(lua_State *L)
{
    size_t n = 0;
    lume_sim_event *ev = lume_sim_events(check_rt(L), &n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        const lume_sim_event *e = &ev[i];
        lua_createtable(L, 0, 8);
        lua_pushstring(L, e->kind == LUME_SIM_PUBLISH ? "publish" : "output");
        lua_setfield(L, -2, "kind");
        lua_pushnumber(L, lume_ns_seconds(e->wall_ns));
        lua_setfield(L, -2, "t");
        lua_pushstring(L, e->script ? e->script : "");
        lua_setfield(L, -2, "script");
        lua_pushstring(L, e->name ? e->name : "");
        lua_setfield(L, -2, e->kind == LUME_SIM_PUBLISH ? "route" : "output");
        if (e->kind == LUME_SIM_PUBLISH) {
            lua_pushlstring(L, e->payload ? e->payload : "", e->len);
            lua_setfield(L, -2, "payload");
            lua_pushstring(L, lume_lane_name(e->lane));
            lua_setfield(L, -2, "priority");
            lua_pushinteger(L, e->qos);
            lua_setfield(L, -2, "qos");
        } else {
            lua_pushnumber(L, e->value);
            lua_setfield(L, -2, "value");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lume_sim_events_free(ev, n);
    return 1;
}

static const luaL_Reg rt_methods[] = {
    {"run", r_run},         {"install", r_install},   {"reload", r_reload},
    {"unload", r_unload},   {"scripts", r_scripts},   {"sensor", r_sensor},
    {"set_rate", r_set_rate}, {"outbox", r_outbox},   {"peek", r_peek},
    {"call", r_call},       {"status_line", r_status_line}, {"close", r_close},
    {"stats", r_stats},     {"desired", r_desired},   {"reported", r_reported},
    {"sim_start", r_sim_start}, {"sim_advance", r_sim_advance}, {"sim_sample", r_sim_sample},
    {"sim_now", r_sim_now}, {"sim_events", r_sim_events},
    {NULL, NULL}};
static const luaL_Reg rt_meta[] = {{"__gc", r_close}, {"__close", r_close}, {NULL, NULL}};
static const luaL_Reg funcs[] = {{"new", h_new},
                                 {"config_check", h_config_check},
                                 {"config_load", h_config_load},
                                 {"logs", h_logs},
                                 {"clock", h_clock},
                                 {"thread_clock", h_thread_clock},
                                 {"pattern_lib", h_pattern_lib},
                                 {NULL, NULL}};

int luaopen_lume_host(lua_State *L);
int luaopen_lume_host(lua_State *L)
{
    luaL_newmetatable(L, RT_MT);
    luaL_setfuncs(L, rt_meta, 0);
    luaL_newlib(L, rt_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    g_verbose = getenv("LUME_TEST_VERBOSE") != NULL;
    lume_log_set_sink(capture, NULL);
    luaL_newlib(L, funcs);
    lua_pushstring(L, LUME_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
