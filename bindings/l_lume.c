/* bindings/l_lume.c — the `lume` global of every script.
 *
 *   lume.on_sample(sensor, fn [, {batch = true}]) -> handle
 *   lume.publish(route, value [, {priority=, ttl=, qos=, durable=, properties={k="v"}}])
 *                                     -> id | nil, err [, id]
 *   lume.flush()                      -> true | nil, err
 *   lume.now()                        -> wall-clock seconds (float), the clock of samples' t
 *   lume.monotonic()                  -> seconds on a clock that never jumps (intervals)
 *   lume.method(name, fn), lume.on_c2d(fn) (l_hub.c)
 *   lume.device                       {id, board, version}
 *   lume.sensor(name)                 (l_sensor.c)
 *   lume.timer.every / after          (l_timer.c)
 *   lume.log.debug / info / warn / error (l_log.c)
 *   lume.store.get / set / delete / keys (l_store.c)
 */
#include "luajson.h"
#include "lume.h"
#include "modules.h"
#include "registry.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "hub.h"
#include "msgsign.h"
#include "sim.h"
#include "outbox.h"
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "log.h"
#include "mqtt_codec.h"

static int sensor_index(lua_State *L, lume_script *s, const char *name)
{
    int ch = lume_sampler_find(s->rt->sampler, name);
    if (ch >= 0)
        return ch;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t n = lume_sampler_count(s->rt->sampler);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            luaL_addstring(&b, ", ");
        luaL_addstring(&b, lume_sampler_name(s->rt->sampler, i));
    }
    luaL_pushresult(&b);
    return luaL_error(L, "no sensor named '%s' on board %s (sensors: %s)", name,
                      s->rt->cfg.board, lua_tostring(L, -1));
}

/* An on_sample handler holds nothing but its function: the registry's
 * bookkeeping is all there is to cancel and release. */
static const lume_cb_ops sample_ops = {NULL, NULL};

// Lua: lume.on_sample(sensor, fn [, {batch = true}]) -> handle
//      (h:cancel(), h:active(), <close>: registry.c)
static int l_on_sample(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    bool batch = false;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "batch");
        batch = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    int ch = sensor_index(L, s, name);
    lume_cb *h = lume_cb_add(L, LUME_CB_SAMPLE, 2, &sample_ops); /* pushes the handle */
    h->channel = (unsigned)ch;
    h->batch = batch;
    return 1;
}

/* A route is the tail of the topic lume/<device>/telemetry/<route>: it must
 * make that a valid MQTT 3.1.1 topic name, and lume keeps it short. Raises
 * (misuse) with the rule it breaks. */
#define ROUTE_MAX 255 /* bytes */
#define MAX_PROPS 32
#define MAX_MESSAGE (256 * 1024)

static void check_route(lua_State *L, int arg, const char *route, size_t len)
{
    char q[320], why[96];
    const char *rule = NULL;
    if (len == 0)
        rule = "route must not be empty";
    else if (len > ROUTE_MAX)
        rule = "route must be at most 255 bytes";
    else if (route[0] == '/')
        rule = "route must not start with '/' (it follows lume/<device>/telemetry/)";
    else {
        switch (lume_mqtt_check_topic(route, len, why, sizeof why)) {
        case LUME_MQTT_NAME_OK: return;
        case LUME_MQTT_NAME_NUL:
            rule = "route must not hold a NUL byte (MQTT 3.1.1, 1.5.3: topics are UTF-8 "
                   "without U+0000)";
            break;
        case LUME_MQTT_NAME_WILDCARD:
            rule = "route must not hold '+' or '#' (MQTT 3.1.1, 4.7.1: wildcards are for "
                   "subscriptions, never in a published topic)";
            break;
        default:
            rule = "route must be well-formed UTF-8 (MQTT 3.1.1, 1.5.3: topics are UTF-8)";
            break;
        }
    }
    lume_quote(q, sizeof q, route, len, 60);
    if (len > ROUTE_MAX)
        snprintf(why, sizeof why, "is %zu bytes", len);
    else if (len == 0 || route[0] == '/')
        why[0] = 0;
    luaL_argerror(L, arg, lua_pushfstring(L, "%s: %s%s%s", rule, q, why[0] ? " " : "", why));
}

/* net.sign (core/trust/msgsign.h, docs/signing.md): sign the message once,
 * here, as it enters the outbox, so every resend carries the same
 * signature. Device and route are read back from the dialect's topic, as
 * `lume verify` reads them. The signature goes into the property bag
 * (props, topic rebuilt) where the dialect has one, else the payload becomes
 * the envelope (*wrapped, malloc'd). 0, or negative with *err. */
#define SIG_PROPS 5
static int sign_message(lume_runtime *rt, lume_hub_prop *props, size_t *nprops,
                        const char **payload, size_t *len, char **wrapped, char *topic,
                        size_t cap, char **err)
{
    lume_hub_msg hm;
    if (lume_hub_parse_telemetry(topic, &hm) < 0) {
        lume_set_err(err, "cannot sign: the dialect's topic %s is not a telemetry topic", topic);
        return -EINVAL;
    }
    uint64_t seq = lume_msgsign_next_seq(rt->msgsign, rt->kv, err);
    if (!seq)
        return -EIO;
    lume_msgsig m = {.device = hm.device, .route = hm.route, .route_len = hm.route_len,
                     .seq = seq, .ts_ms = lume_rt_wall_ns(rt) / 1000000, .payload = *payload,
                     .len = *len};
    char sig[LUME_SIG_B64_MAX], seqs[24], ts[24];
    int r = lume_msgsign_sign(rt->msgsign, &m, sig, err);
    if (r < 0)
        return r;
    if (!lume_hub_has_props(rt->hub)) {
        if (!(*wrapped = lume_msgsig_wrap(&m, sig, len))) {
            lume_set_err(err, "out of memory");
            return -ENOMEM;
        }
        *payload = *wrapped;
        return 0;
    }
    snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)m.seq);
    snprintf(ts, sizeof ts, "%lld", (long long)m.ts_ms);
    const lume_hub_prop add[SIG_PROPS] = {{"lume-alg", m.alg}, {"lume-kid", m.key_id},
                                          {"lume-seq", seqs},  {"lume-ts", ts},
                                          {"lume-sig", sig}};
    memcpy(props + *nprops, add, sizeof add);
    *nprops += SIG_PROPS;
    if (!lume_hub_telemetry_topic(rt->hub, hm.route, hm.route_len, props, *nprops, topic, cap)) {
        lume_set_err(err, "the topic for route '%s' with its signature is too long", hm.route);
        return -EINVAL;
    }
    return 0;
}

// Lua: lume.publish(route, value [, {priority = "alarm"|"telemetry"|"bulk", ttl = s, qos = 0|1,
//                                     durable = true, properties = {k = "v"}}])
//                                     -> id | nil, err [, id]
// A durable publish (durable = true, or a lane in outbox.durable_lanes:
// alarms by default) returns once the message is committed. When that
// commit fails it returns nil, err, id: the message is accepted and queued,
// not durable. properties go into the hub dialect's property bag (azure).
static int l_publish(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    size_t rlen;
    const char *route = luaL_checklstring(L, 1, &rlen);
    check_route(L, 1, route, rlen);
    luaL_checkany(L, 2);
    int lane = LUME_LANE_TELEMETRY, qos = 1;
    bool durable = false;
    double ttl = 0;
    lume_hub_prop props[MAX_PROPS + SIG_PROPS];
    size_t nprops = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "priority") != LUA_TNIL) {
            const char *p = lua_tostring(L, -1);
            lane = p ? lume_lane_parse(p) : -1;
            if (lane < 0)
                return luaL_error(L, "publish: priority must be \"alarm\", \"telemetry\" or "
                                     "\"bulk\", got %s", luaL_tolstring(L, -1, NULL));
        }
        if (lua_getfield(L, 3, "ttl") != LUA_TNIL) {
            ttl = lua_tonumber(L, -1);
            if (!lua_isnumber(L, -1) || !(ttl >= 0) || !isfinite(ttl))
                return luaL_error(L, "publish: ttl must be seconds >= 0");
        }
        if (lua_getfield(L, 3, "qos") != LUA_TNIL) {
            lua_Integer q = lua_tointeger(L, -1);
            if (!lua_isinteger(L, -1) || (q != 0 && q != 1))
                return luaL_error(L, "publish: qos must be 0 or 1");
            qos = (int)q;
        }
        if (lua_getfield(L, 3, "durable") != LUA_TNIL) {
            if (!lua_isboolean(L, -1))
                return luaL_error(L, "publish: durable must be true or false, got %s",
                                  luaL_tolstring(L, -1, NULL));
            durable = lua_toboolean(L, -1);
        }
        lua_settop(L, 3);
        /* message properties {k = "v"}: the dialect carries them where its
         * hub has room (azure: the property bag; mqtt 3.1.1: nowhere) */
        if (lua_getfield(L, 3, "properties") != LUA_TNIL) {
            if (!lua_istable(L, -1))
                return luaL_error(L, "publish: properties must be a table of strings");
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                    return luaL_error(L, "publish: properties must map string keys to string "
                                         "values");
                if (nprops == MAX_PROPS)
                    return luaL_error(L, "publish: at most %d properties", MAX_PROPS);
                props[nprops].key = lua_tostring(L, -2);
                props[nprops].value = lua_tostring(L, -1);
                if (!*props[nprops].key)
                    return luaL_error(L, "publish: a property name must not be empty");
                if (s->rt->msgsign && !strncmp(props[nprops].key, "lume-", 5))
                    return luaL_error(L, "publish: property '%s': names starting with lume- "
                                      "carry the message's signature (net.sign)",
                                      props[nprops].key);
                nprops++;
                lua_pop(L, 1);
            }
        } /* left on the stack: the strings stay alive until we return */
    }
    if (s->dry_run) { /* replaying recorded samples: nothing leaves */
        s->dry_publishes++;
        lua_pushinteger(L, 0);
        return 1;
    }
    /* the dialect's topic for the route (checked above: at most ROUTE_MAX
     * bytes, no NUL) */
    char topic[LUME_HUB_TOPIC_MAX + ROUTE_MAX + 1];
    if (!lume_hub_telemetry_topic(s->rt->hub, route, rlen, props, nprops, topic, sizeof topic))
        return luaL_error(L, "publish: the topic for route '%s' (with its properties) is too "
                          "long", route);
    const char *payload;
    size_t len;
    char *owned = NULL;
    if (lua_type(L, 2) == LUA_TSTRING) {
        payload = lua_tolstring(L, 2, &len);
    } else {
        char *err = NULL;
        owned = lume_json_encode(L, 2, &len, &err);
        if (!owned) {
            lua_pushfstring(L, "publish: %s", err ? err : "cannot encode");
            free(err);
            return lua_error(L);
        }
        payload = owned;
    }
    char *wrapped = NULL;
    const char *script_payload = payload; /* what the script published, before a signature */
    size_t script_len = len;
    if (s->rt->msgsign) {
        char *err = NULL;
        if (sign_message(s->rt, props, &nprops, &payload, &len, &wrapped, topic, sizeof topic,
                         &err) < 0) {
            free(owned);
            lua_pushnil(L);
            lua_pushfstring(L, "publish refused: %s", err ? err : "cannot sign");
            free(err);
            return 2;
        }
    }
    if (len + strlen(topic) > MAX_MESSAGE) { /* the hubs' limit (Azure IoT Hub: 256 KB) */
        free(owned);
        free(wrapped);
        lua_pushnil(L);
        lua_pushfstring(L, "publish refused: message of %d bytes (payload and topic) is over "
                        "the 256 KiB a hub accepts", (int)(len + strlen(topic)));
        return 2;
    }
    uint64_t id = 0;
    int r = lume_outbox_append(s->rt->outbox, lane, topic, payload, len, qos,
                               (int64_t)(ttl * 1000), &id);
    if (r == 0 && s->rt->sim) /* a rule test's record (sim.h) */
        lume_sim_published(s->rt, s->name, route, rlen, script_payload, script_len, lane, qos);
    free(owned);
    free(wrapped);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "publish refused: %s",
                        r == -ENOSPC ? "outbox full (cap reached)" : strerror(-r));
        return 2;
    }
    s->publishes++;
    if (lane == LUME_LANE_ALARM)
        lume_runtime_commit_soon(s->rt); /* alarms leave at the end of this turn */
    lume_outbox *ob = s->rt->outbox;
    if ((durable || (lume_outbox_get_opts(ob)->durable_lanes & (1 << lane))) &&
        lume_outbox_commit(ob) < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "publish: message %I accepted but not durable: %s (it stays queued "
                        "and the commit is retried)", (lua_Integer)id,
                        lume_outbox_last_error(ob));
        lua_pushinteger(L, (lua_Integer)id);
        return 3;
    }
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

// Lua: lume.flush() -> true | nil, err
// Returns once every message accepted so far (by any script) is committed.
static int l_flush(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    if (!s->dry_run) { /* a dry run publishes nothing */
        int r = lume_outbox_commit(s->rt->outbox);
        if (r < 0) {
            const char *why = lume_outbox_last_error(s->rt->outbox);
            lua_pushnil(L);
            lua_pushfstring(L, "flush: %s", *why ? why : strerror(-r));
            return 2;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: lume.now() -> seconds since the epoch, a float with sub-ms resolution:
//      the clock of samples' t and of timer callbacks' first argument
static int l_now(lua_State *L)
{
    lua_pushnumber(L, lume_ns_seconds(lume_rt_wall_ns(lume_script_of(L)->rt)));
    return 1;
}

// Lua: lume.monotonic() -> seconds (float) from an arbitrary origin; never
//      jumps when the wall clock is set, so differences are true intervals
static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, lume_ns_seconds(lume_rt_mono_ns(lume_script_of(L)->rt)));
    return 1;
}

static const luaL_Reg funcs[] = {{"on_sample", l_on_sample}, {"publish", l_publish},
                                 {"flush", l_flush},         {"now", l_now},
                                 {"monotonic", l_monotonic}, {NULL, NULL}};

/* The Lua modules under `lume`, in this order: lume.NAME is what open
 * pushes; alias, when set, is also lume.ALIAS (lume.subscribe =
 * lume.net.subscribe). A new module is one new file (l_NAME.c, its opener
 * declared in modules.h) and one line here. */
static const struct {
    const char   *name;
    lua_CFunction open;
    const char   *alias;
} modules[] = {
    {"sensor", lume_open_sensor, NULL}, {"timer", lume_open_timer, NULL},
    {"log", lume_open_log, NULL},       {"store", lume_open_store, NULL},
    {"net", lume_open_net, "subscribe"}, {"twin", lume_open_twin, NULL},
    {"output", lume_open_output, NULL},
    {"keep", lume_open_keep, NULL},
};

int lume_open_lume(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lume_cb_open(L); /* the handles of every module's callbacks */
    luaL_newlib(L, funcs);
    lume_hub_open_into(L);
    for (size_t i = 0; i < sizeof modules / sizeof *modules; i++) {
        modules[i].open(L);
        if (modules[i].alias) {
            lua_getfield(L, -1, modules[i].alias);
            lua_setfield(L, -3, modules[i].alias);
        }
        lua_setfield(L, -2, modules[i].name);
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, s->rt->cfg.device_id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, s->rt->cfg.board);
    lua_setfield(L, -2, "board");
    lua_pushstring(L, LUME_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "script");
    lua_setfield(L, -2, "device");
    lua_pushstring(L, LUME_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}

int lume_open_handle_module(lua_State *L, const char *mt, const luaL_Reg *meta,
                            const luaL_Reg *methods, const luaL_Reg *lib, lua_CFunction call)
{
    luaL_newmetatable(L, mt);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, lib, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, call);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    return 1;
}

int lume_handle_method(lua_State *L, const char *k)
{
    luaL_getmetafield(L, 1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}
