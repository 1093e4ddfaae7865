/* bindings/l_net.c — lume.net: the broker connection as scripts see it.
 *
 *   lume.subscribe(filter, fn [, {qos = 1}]) -> handle   (also lume.net.subscribe)
 *       fn(topic, payload, {qos =, retain =}); + and # wildcards; restored
 *       after every reconnect; a QoS 1 message is acknowledged after fn ran
 *       (even if fn failed: a poison message cannot block the session)
 *   lume.net.state()   -> "offline" | "connecting" | "handshake" | "connected" | "backoff"
 *   lume.net.stats()   -> {sent, acked, resent, received, reconnects, bytes_in, bytes_out,
 *                          protocol_errors, skipped_oversize, unexpected_acks, ...}
 *   lume.net.on("connected" | "disconnected", fn) -> handle  (fn(reason))
 *   lume.net.last_error() -> the reason of the last disconnect, or nil
 *   lume.net.connectivity({mode =, every_s =, max_queued =, window_s =, alarm =, by =})
 *                      -> true | nil, err: when the session is up (core/net/link.h); a
 *                         key left out takes its default; a bad value is refused (the
 *                         log, reported errors.connectivity) and the last good stays.
 *                         scripts/connectivity.lua is the policy that calls it.
 *   lume.net.connectivity() -> {mode, every_s, max_queued, window_s, alarm, by, phase,
 *                               windows, windows_cut, last_connect, last_disconnect}
 */
#include "l_net.h"
#include "lume.h"
#include "modules.h"
#include "registry.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "twin_host.h"
#include "config.h"
#include "hub.h"
#include "link.h"
#include "mqtt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "dps.h"
#include "l_hub.h"
#include "twin_host.h"
#include "log.h"
#include "mqtt_codec.h"

/* Whether a live subscription of any script wants filter. */
static bool filter_wanted(lume_runtime *rt, const char *filter)
{
    for (lume_script *s = rt->scripts; s; s = s->next) {
        const lume_cb_list *l = &s->cbs[LUME_CB_SUB];
        for (size_t i = 0; i < l->n; i++)
            if (!l->v[i].dead && l->v[i].filter && !strcmp(l->v[i].filter, filter))
                return true;
    }
    return false;
}

/* A subscription cancelled (or its script gone): the session drops the
 * filter once no live subscription wants it. */
static void sub_cancel(lume_script *s, lume_cb *e)
{
    lume_runtime *rt = s->rt;
    if (e->filter && rt->mqtt && !filter_wanted(rt, e->filter))
        lume_mqtt_remove_subscription(rt->mqtt, e->filter);
}

static void sub_release(lume_cb *e)
{
    free(e->filter);
    e->filter = NULL;
}

static const lume_cb_ops sub_ops = {sub_cancel, sub_release};
static const lume_cb_ops listener_ops = {NULL, NULL};

// Lua: lume.subscribe(filter, fn [, {qos = 0|1}]) -> handle
static int l_subscribe(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    size_t flen;
    const char *filter = luaL_checklstring(L, 1, &flen);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int qos = 1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "qos") != LUA_TNIL) {
            lua_Integer q = lua_tointeger(L, -1);
            if (!lua_isinteger(L, -1) || q < 0 || q > 1)
                return luaL_error(L, "subscribe: qos must be 0 or 1");
            qos = (int)q;
        }
        lua_pop(L, 1);
    }
    char why[96];
    lume_mqtt_name_error bad = lume_mqtt_check_filter(filter, flen, why, sizeof why);
    if (bad != LUME_MQTT_NAME_OK) {
        char q[320];
        lume_quote(q, sizeof q, filter, flen, 60);
        const char *rule =
            bad == LUME_MQTT_NAME_BAD_FILTER
                ? "'#' only as the whole last level, '+' only as a whole level (MQTT 3.1.1, "
                  "4.7.1)"
            : bad == LUME_MQTT_NAME_EMPTY ? "a filter is at least one character (MQTT 3.1.1, 4.7.3)"
            : bad == LUME_MQTT_NAME_TOO_LONG ? "at most 65535 bytes (MQTT 3.1.1, 1.5.3)"
            : "well-formed UTF-8 without U+0000 (MQTT 3.1.1, 1.5.3)";
        return luaL_error(L, "subscribe: %s is not a valid topic filter: %s; it %s", q, rule,
                          why);
    }
    lume_cb *e = lume_cb_add(L, LUME_CB_SUB, 2, &sub_ops); /* pushes the handle */
    e->filter = strdup(filter);
    if (!e->filter) {
        lume_cb_cancel(s, LUME_CB_SUB, e->id);
        return luaL_error(L, "out of memory");
    }
    e->qos = qos;
    if (s->rt->mqtt)
        lume_mqtt_add_subscription(s->rt->mqtt, filter, qos);
    return 1;
}

// Lua: lume.net.on("connected" | "disconnected", fn) -> handle
static int l_on(lua_State *L)
{
    static const char *const names[] = {"connected", "disconnected", NULL};
    int ev = luaL_checkoption(L, 1, NULL, names);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lume_cb *e = lume_cb_add(L, LUME_CB_NET, 2, &listener_ops); /* pushes the handle */
    e->event = ev;
    return 1;
}

// Lua: lume.net.state() -> string
static int l_state(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lua_pushstring(L, lume_mqtt_state_name(s->rt->mqtt ? lume_mqtt_get_state(s->rt->mqtt)
                                                        : LUME_MQTT_OFFLINE));
    return 1;
}

// Lua: lume.net.last_error() -> string | nil
static int l_last_error(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *e = s->rt->mqtt ? lume_mqtt_last_error(s->rt->mqtt) : "";
    if (*e)
        lua_pushstring(L, e);
    else
        lua_pushnil(L);
    return 1;
}

static void setint(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

// Lua: lume.net.stats() -> table
static int l_stats(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lume_mqtt_stats st = {0};
    if (s->rt->mqtt)
        lume_mqtt_get_stats(s->rt->mqtt, &st);
    lua_createtable(L, 0, 12);
    setint(L, "sent", st.sent);
    setint(L, "resent", st.resent);
    setint(L, "acked", st.acked);
    setint(L, "received", st.received);
    setint(L, "connects", st.connects);
    setint(L, "reconnects", st.reconnects);
    setint(L, "bytes_in", st.bytes_in);
    setint(L, "bytes_out", st.bytes_out);
    setint(L, "protocol_errors", st.protocol_errors);
    setint(L, "skipped_oversize", st.skipped_oversize);
    setint(L, "unexpected_acks", st.unexpected_acks);
    setint(L, "inflight", st.inflight);
    return 1;
}

static lume_link *link_of(lume_runtime *rt);
static void link_report(void *ud);

static int push_link(lua_State *L, lume_link *k)
{
    lume_link_stats st;
    lume_link_get(k, &st);
    lua_createtable(L, 0, 12);
    lua_pushstring(L, lume_link_mode_name(st.params.mode));
    lua_setfield(L, -2, "mode");
    lua_pushnumber(L, st.params.every_s);
    lua_setfield(L, -2, "every_s");
    lua_pushinteger(L, (lua_Integer)st.params.max_queued);
    lua_setfield(L, -2, "max_queued");
    lua_pushnumber(L, st.params.window_s);
    lua_setfield(L, -2, "window_s");
    lua_pushboolean(L, st.params.alarm);
    lua_setfield(L, -2, "alarm");
    lua_pushstring(L, st.params.by);
    lua_setfield(L, -2, "by");
    lua_pushstring(L, lume_link_phase_name(st.phase));
    lua_setfield(L, -2, "phase");
    lua_pushinteger(L, (lua_Integer)st.windows);
    lua_setfield(L, -2, "windows");
    lua_pushinteger(L, (lua_Integer)st.windows_cut);
    lua_setfield(L, -2, "windows_cut");
    if (st.last_connect_ms) {
        lua_pushnumber(L, (lua_Number)st.last_connect_ms / 1e3);
        lua_setfield(L, -2, "last_connect");
    }
    if (st.last_disconnect_ms) {
        lua_pushnumber(L, (lua_Number)st.last_disconnect_ms / 1e3);
        lua_setfield(L, -2, "last_disconnect");
    }
    return 1;
}

/* The parameters in the table at idx, over the defaults. 0, or -EINVAL with
 * why naming the key. */
static int link_params(lua_State *L, int idx, lume_link_params *p, char *why, size_t cap)
{
    static const char *const keys[] = {"mode", "every_s", "max_queued", "window_s", "alarm",
                                       "by", NULL};
    lume_link_params_default(p);
    if (!lua_istable(L, idx)) {
        snprintf(why, cap, "connectivity must be an object {mode, every_s, max_queued, "
                 "window_s, alarm}, got %s", luaL_typename(L, idx));
        return -EINVAL;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        size_t i = 0;
        while (k && keys[i] && strcmp(keys[i], k))
            i++;
        if (!k || !keys[i]) {
            snprintf(why, cap, "connectivity: unknown key '%.64s' (expected mode, every_s, "
                     "max_queued, window_s, alarm)", k ? k : luaL_typename(L, -1));
            lua_pop(L, 1);
            return -EINVAL;
        }
    }
    int t = lua_getfield(L, idx, "mode");
    if (t != LUA_TNIL) {
        const char *m = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        p->mode = lume_link_mode_parse(m);
        if (p->mode < 0) {
            snprintf(why, cap, "connectivity.mode must be \"persistent\", \"intermittent\" or "
                     "\"auto\", got %s%.64s%s", m ? "\"" : "", m ? m : luaL_typename(L, -1),
                     m ? "\"" : "");
            return -EINVAL;
        }
    }
    lua_pop(L, 1);
    static const char *const nums[] = {"every_s", "window_s", "max_queued"};
    for (int i = 0; i < 3; i++) {
        t = lua_getfield(L, idx, nums[i]);
        if (t != LUA_TNIL) {
            double v = lua_tonumber(L, -1);
            if (t != LUA_TNUMBER || (i == 2 && (!(v >= 0) || v > 1e9 || v != (double)(uint64_t)v))) {
                snprintf(why, cap, "connectivity.%s must be %s, got %s", nums[i],
                         i == 2 ? "a whole number of messages from 0 (never) to 1e9"
                                : "a number of seconds", luaL_tolstring(L, -1, NULL));
                return -EINVAL;
            }
            if (i == 0) p->every_s = v;
            else if (i == 1) p->window_s = v;
            else p->max_queued = (uint64_t)v;
        }
        lua_pop(L, 1);
    }
    t = lua_getfield(L, idx, "alarm");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
        snprintf(why, cap, "connectivity.alarm must be true or false, got %s",
                 luaL_tolstring(L, -1, NULL));
        return -EINVAL;
    }
    if (t == LUA_TBOOLEAN)
        p->alarm = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "by") == LUA_TSTRING)
        snprintf(p->by, sizeof p->by, "%s", lua_tostring(L, -1));
    else
        snprintf(p->by, sizeof p->by, "script %s", lume_script_of(L)->name);
    lua_pop(L, 1);
    return 0;
}

// Lua: lume.net.connectivity([{mode =, every_s =, max_queued =, window_s =, alarm =, by =}])
//      -> true | nil, err   (no argument: the applied mode and its counters)
static int l_connectivity(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lume_runtime *rt = s->rt;
    lume_link *k = link_of(rt);
    if (!k)
        return luaL_error(L, "connectivity: out of memory");
    if (lua_isnone(L, 1))
        return push_link(L, k);
    if (s->dry_run) { /* replaying recorded samples: nothing changes */
        lua_pushboolean(L, 1);
        return 1;
    }
    lume_link_params p;
    char why[256];
    int top = lua_gettop(L);
    int r = link_params(L, 1, &p, why, sizeof why);
    lua_settop(L, top);
    if (r == 0)
        r = lume_link_set(k, &p, why, sizeof why);
    if (r < 0) {
        lume_link_stats st;
        lume_link_get(k, &st);
        char msg[400];
        snprintf(msg, sizeof msg, "%s; %s stays (%s)", why,
                 lume_link_mode_name(st.params.mode), st.params.by);
        if (rt->twin)
            lume_twin_host_error(rt, "connectivity", msg);   /* logged there */
        else
            lume_log(LUME_LOG_ERROR, "link", "%s", msg);
        lua_pushnil(L);
        lua_pushstring(L, msg);
        return 2;
    }
    lume_twin_host_error(rt, "connectivity", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg funcs[] = {{"subscribe", l_subscribe}, {"on", l_on},
                                 {"state", l_state},         {"stats", l_stats},
                                 {"last_error", l_last_error},
                                 {"connectivity", l_connectivity}, {NULL, NULL}};

int lume_open_net(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}

/* ---- the host side ------------------------------------------------------- */

typedef struct net_call {
    int          ref;
    const char  *reason;                 /* an event's */
    const char  *topic;                  /* a message's */
    const void  *payload;
    size_t       len;
    int          qos;
    bool         retain;
} net_call;

static int push_event(lua_State *L, void *ud)
{
    const net_call *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_pushstring(L, c->reason ? c->reason : "");
    return 1;
}

static int push_message(lua_State *L, void *ud)
{
    const net_call *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_pushstring(L, c->topic);
    lua_pushlstring(L, c->payload ? c->payload : "", c->len);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, c->qos);
    lua_setfield(L, -2, "qos");
    lua_pushboolean(L, c->retain);
    lua_setfield(L, -2, "retain");
    return 3;
}

static void emit(lume_runtime *rt, int ev, const char *reason)
{
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (s->status != LUME_SCRIPT_RUNNING)
            continue;
        lume_cb_list *l = &s->cbs[LUME_CB_NET];
        lume_cb_enter(s, LUME_CB_NET);
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].dead || l->v[i].event != ev)
                continue;
            net_call c = {.ref = l->v[i].ref, .reason = reason};
            lume_sandbox_pcall(s, push_event, &c, rt->cfg.sandbox.cpu_budget_ms,
                               ev == LUME_EV_CONNECTED ? "net.on(connected)"
                                                       : "net.on(disconnected)");
            if (s->status != LUME_SCRIPT_RUNNING)
                break;
        }
        lume_cb_leave(s, LUME_CB_NET);
    }
}

static void dps_check_refusal(lume_runtime *rt, int state);

static void on_state(void *ud, int state, const char *reason)
{
    dps_check_refusal(ud, state);
    lume_runtime *rt = ud;
    lume_link *k = rt->link;   /* (none while the runtime is torn down) */
    if (k) {
        lume_link_attach(k, rt->mqtt);
        lume_link_session_state(k, state);
    }
    if (state == LUME_MQTT_CONNECTED) {
        rt->was_connected = true;
        lume_twin_host_connected(rt);
        emit(rt, LUME_EV_CONNECTED, reason);
    } else if (rt->was_connected && state != LUME_MQTT_HANDSHAKE &&
               state != LUME_MQTT_CONNECTING) {
        rt->was_connected = false;
        lume_link_stats ls;
        if (k)
            lume_link_get(k, &ls);
        /* an intermittent window closing is no trouble */
        lume_log(k && ls.phase == LUME_LINK_CLOSING ? LUME_LOG_INFO : LUME_LOG_WARN, "mqtt",
                 "disconnected: %s", reason ? reason : "");
        emit(rt, LUME_EV_DISCONNECTED, reason);
    }
}

static void on_message(void *ud, const char *topic, const void *payload, size_t len, int qos,
                       bool retain)
{
    lume_runtime *rt = ud;
    if (lume_twin_host_message(rt, topic, payload, len))
        return; /* a desired document: the twin's, not the scripts' */
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (s->status != LUME_SCRIPT_RUNNING)
            continue;
        lume_cb_list *l = &s->cbs[LUME_CB_SUB];
        lume_cb_enter(s, LUME_CB_SUB);
        for (size_t i = 0; i < l->n; i++) {
            const lume_cb *sub = &l->v[i]; /* not held across the call */
            if (sub->dead || !lume_mqtt_topic_match(sub->filter, topic))
                continue;
            net_call c = {.ref = sub->ref, .topic = topic, .payload = payload, .len = len,
                          .qos = qos, .retain = retain};
            char what[300];
            snprintf(what, sizeof what, "subscribe(%s)", sub->filter);
            lume_sandbox_pcall(s, push_message, &c, rt->cfg.sandbox.cpu_budget_ms, what);
            if (s->status != LUME_SCRIPT_RUNNING)
                break;
        }
        lume_cb_leave(s, LUME_CB_SUB);
    }
}

/* A message too large to take: the session logged and acknowledged it; the
 * twin reports it when it was a desired document. */
static void on_skipped(void *ud, const char *topic, size_t size, int qos, bool retain,
                       const char *why)
{
    (void)size, (void)qos, (void)retain;
    lume_twin_host_refused(ud, topic, why);
}

void lume_mqtt_opts_from_config(const lume_config *c, lume_mqtt_opts *o)
{
    lume_mqtt_opts_default(o);
    o->url = c->net.url;
    o->client_id = c->net.client_id ? c->net.client_id : c->device_id;
    o->username = c->net.username;
    o->password = c->net.password;
    o->tls.ca_file = c->net.ca_file;
    o->tls.cert_file = c->net.cert_file;
    o->tls.key_file = c->net.key_file;
    o->tls.server_name = c->net.server_name;
    o->tls.min_version = c->net.tls_min_version;
    o->tls.ciphers = c->net.ciphers;
    o->tls.insecure = c->net.tls_insecure;
    o->keepalive_s = c->net.keepalive_s;
    o->window = c->net.window;
    o->backoff_min_ms = c->net.backoff_min_ms;
    o->backoff_max_ms = c->net.backoff_max_ms;
    o->connect_timeout_ms = c->net.connect_timeout_ms;
    o->stable_ms = c->net.stable_ms;
    o->max_packet = (size_t)c->net.max_packet;
    o->clean_session = c->net.clean_session;
}

/* A fresh password before each CONNECT (azure: a SAS token; the twin host
 * arms its renewal). */
static const char *on_password(void *ud) { return lume_twin_host_password(ud); }

/* Each outbox message leaves with the link's mode in its properties where
 * the dialect has them (azure: lume-conn=intermittent in the property bag). */
static const char *on_topic_out(void *ud, const char *topic, char *buf, size_t cap)
{
    lume_runtime *rt = ud;
    if (!rt->link)
        return NULL;
    return lume_hub_stamp(rt->hub, topic, "lume-conn", lume_link_transport(rt->link), buf, cap)
               ? buf : NULL;
}

/* ---- the link (core/net/link.h): the host's side ----------------------------- */

static bool link_busy(void *ud) { return lume_twin_host_busy(ud); }

/* The applied mode and its counters, to reported.connectivity. */
static void link_report(void *ud)
{
    lume_runtime *rt = ud;
    if (!rt->twin || !rt->link)
        return;
    lume_link_stats st;
    lume_link_get(rt->link, &st);
    if (!st.sets)   /* no policy (scripts/connectivity.lua) runs: nothing to report */
        return;
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(patch, "connectivity");
    cJSON_AddStringToObject(o, "mode", lume_link_mode_name(st.params.mode));
    cJSON_AddNumberToObject(o, "every_s", st.params.every_s);
    cJSON_AddNumberToObject(o, "max_queued", (double)st.params.max_queued);
    cJSON_AddNumberToObject(o, "window_s", st.params.window_s);
    cJSON_AddBoolToObject(o, "alarm", st.params.alarm);
    cJSON_AddStringToObject(o, "by", st.params.by);
    cJSON_AddNumberToObject(o, "windows", (double)st.windows);
    cJSON_AddNumberToObject(o, "windows_cut", (double)st.windows_cut);
    if (st.last_connect_ms)
        cJSON_AddNumberToObject(o, "last_connect", (double)st.last_connect_ms / 1e3);
    else
        cJSON_AddNullToObject(o, "last_connect");
    if (st.last_disconnect_ms)
        cJSON_AddNumberToObject(o, "last_disconnect", (double)st.last_disconnect_ms / 1e3);
    else
        cJSON_AddNullToObject(o, "last_disconnect");
    lume_twin_host_report(rt, patch);
}

static lume_link *link_of(lume_runtime *rt)
{
    if (!rt->link) {
        lume_link_host h = {.busy = link_busy, .changed = link_report, .ud = rt};
        rt->link = lume_link_new(rt->loop, rt->outbox, &h);
    }
    return rt->link;
}

void lume_net_link_free(lume_runtime *rt)
{
    lume_link_free(rt->link);
    rt->link = NULL;
}

void lume_net_link_json(lume_runtime *rt, cJSON *root)
{
    if (!rt->link)
        return;
    lume_link_stats st;
    lume_link_get(rt->link, &st);
    cJSON *o = cJSON_AddObjectToObject(root, "connectivity");
    cJSON_AddStringToObject(o, "mode", lume_link_mode_name(st.params.mode));
    cJSON_AddStringToObject(o, "phase", lume_link_phase_name(st.phase));
    cJSON_AddStringToObject(o, "by", st.params.by);
    cJSON_AddNumberToObject(o, "windows", (double)st.windows);
    cJSON_AddNumberToObject(o, "windows_cut", (double)st.windows_cut);
    cJSON_AddNumberToObject(o, "wakes_timer", (double)st.wakes_timer);
    cJSON_AddNumberToObject(o, "wakes_queued", (double)st.wakes_queued);
    cJSON_AddNumberToObject(o, "wakes_alarm", (double)st.wakes_alarm);
    cJSON_AddStringToObject(o, "last_wake", st.last_wake);
}

/* The hub session to url (server_name: the TLS name when the URL's host is
 * not the hub's, NULL otherwise), with the dialect's and the scripts'
 * subscriptions; started at once when the runtime runs. */
static int session_new(lume_runtime *rt, const char *url, const char *server_name, char **err)
{
    const lume_config *c = &rt->cfg;
    lume_mqtt_opts o;
    lume_mqtt_opts_from_config(c, &o);
    o.url = url;
    if (server_name && !c->net.server_name)
        o.tls.server_name = server_name;
    /* who connects, with what credentials, and the status topic: the dialect's */
    if (lume_hub_session(rt->hub, &o, err) < 0)
        return -EINVAL;
    lume_mqtt_cbs cbs = {.on_state = on_state, .on_message = on_message,
                         .on_skipped = on_skipped, .password = on_password,
                         .topic_out = on_topic_out};
    rt->mqtt = lume_mqtt_new(rt->loop, rt->outbox, &o, &cbs, rt, err);
    if (!rt->mqtt)
        return -EINVAL;
    if (!link_of(rt)) { /* when the session is up: the link decides from now on */
        lume_set_err(err, "out of memory");
        return -ENOMEM;
    }
    lume_link_attach(rt->link, rt->mqtt);
    if (rt->twin) { /* a session made after the twin host started (DPS) */
        const char *const *filters;
        const int *qos;
        size_t n = lume_hub_subscriptions(rt->hub, &filters, &qos);
        for (size_t i = 0; i < n; i++)
            lume_mqtt_add_subscription(rt->mqtt, filters[i], qos[i]);
    }
    /* subscriptions the scripts made before the session existed */
    for (lume_script *s = rt->scripts; s; s = s->next) {
        const lume_cb_list *l = &s->cbs[LUME_CB_SUB];
        for (size_t i = 0; i < l->n; i++)
            if (!l->v[i].dead && l->v[i].filter)
                lume_mqtt_add_subscription(rt->mqtt, l->v[i].filter, l->v[i].qos);
    }
    if (rt->started)
        lume_mqtt_start(rt->mqtt);
    return 0;
}

/* ---- DPS (core/hub/dps.h, docs/azure.md "Provisioning") ----------------------
 *
 *   start ─► stored assignment? ─yes─► hub session ◄──────────────┐
 *              │ no                        │ CONNACK 4 or 5       │ assigned
 *              ▼                           ▼ (moved, disabled)    │ (stored)
 *           register ◄──── forget it, session closed ◄────────────┤
 *              └──────────────────────────────────────────────────┘ */

static int dps_register(lume_runtime *rt, char **err);

/* Connect to the hub of assignment a. */
static int dps_connect(lume_runtime *rt, const lume_dps_assignment *a, char **err)
{
    char url[1300];
    if (lume_hub_azure_assign(rt->hub, a->hub, a->device_id, err) < 0)
        return -EINVAL;
    if (lume_dps_hub_url(&rt->cfg, a->hub, url, sizeof url) < 0) {
        lume_set_err(err, "dps: the URL of hub %s is too long", a->hub);
        return -EINVAL;
    }
    lume_log(LUME_LOG_INFO, "dps", "connecting to hub %s as device %s (%s)", a->hub,
             a->device_id, url);
    rt->dps_assigned = *a;
    return session_new(rt, url, a->hub, err);
}

static void dps_done(void *ud, const lume_dps_assignment *got)
{
    lume_runtime *rt = ud;
    lume_dps_assignment a = *got; /* got lives in rt->dps */
    lume_dps_free(rt->dps);
    rt->dps = NULL;
    lume_dps_save(rt->kv, &rt->cfg, &a);
    char *err = NULL;
    if (dps_connect(rt, &a, &err) < 0) {
        lume_log(LUME_LOG_ERROR, "dps", "cannot connect to the assigned hub: %s",
                 err ? err : "?");
        free(err);
    }
}

static int dps_register(lume_runtime *rt, char **err)
{
    rt->dps = lume_dps_new(rt->loop, &rt->cfg, dps_done, rt, err);
    if (!rt->dps)
        return -EINVAL;
    if (rt->started)
        lume_dps_start(rt->dps);
    return 0;
}

/* The assigned hub refused the device's credentials: provision again. */
static void dps_again(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    if (!rt->mqtt || rt->dps)
        return;
    lume_outbox_commit(rt->outbox);
    if (rt->link)
        lume_link_attach(rt->link, NULL);
    lume_mqtt_free(rt->mqtt); /* in-flight messages stay in the outbox */
    rt->mqtt = NULL;
    memset(&rt->dps_assigned, 0, sizeof rt->dps_assigned);
    rt->dps_reprovisions++;
    lume_dps_forget(rt->kv, &rt->cfg);
    char *err = NULL;
    if (dps_register(rt, &err) < 0) {
        lume_log(LUME_LOG_ERROR, "dps", "cannot provision again: %s", err ? err : "?");
        free(err);
    }
}

/* From on_state: a refusal by the hub (not by the network) means the
 * device's identity there is gone or moved. */
static void dps_check_refusal(lume_runtime *rt, int state)
{
    if (!lume_dps_configured(&rt->cfg) || !rt->mqtt)
        return;
    if (state == LUME_MQTT_CONNECTED) {
        rt->dps_backoff_ms = 0;
        return;
    }
    int code = lume_mqtt_refused(rt->mqtt);
    if (state != LUME_MQTT_BACKOFF || (code != 4 && code != 5) ||
        lume_timer_pending(&rt->dps_timer))
        return;
    /* the first time at once; again soon after only with a growing pause */
    int64_t wait = rt->dps_backoff_ms;
    int lo = rt->cfg.net.backoff_min_ms > 1000 ? rt->cfg.net.backoff_min_ms : 1000;
    rt->dps_backoff_ms = rt->dps_backoff_ms ? rt->dps_backoff_ms * 2 : lo;
    if (rt->dps_backoff_ms > 300000)
        rt->dps_backoff_ms = 300000;
    lume_log(LUME_LOG_WARN, "dps", "the hub refused this device's credentials (CONNACK code "
             "%d: %s); provisioning again%s", code, code == 4 ? "bad user name or password"
             : "not authorized", wait ? "" : " now");
    lume_timer_start(&rt->dps_timer, wait * 1000);
}

int lume_net_start(lume_runtime *rt, char **err)
{
    const lume_config *c = &rt->cfg;
    if (lume_dps_configured(c)) {
        lume_timer_init(&rt->dps_timer, rt->loop, dps_again, rt);
        lume_dps_assignment a;
        if (lume_dps_load(rt->kv, c, &a) == 0) {
            lume_log(LUME_LOG_INFO, "dps", "the stored assignment stands: hub %s, device %s "
                     "(no registration)", a.hub, a.device_id);
            return dps_connect(rt, &a, err);
        }
        return dps_register(rt, err);
    }
    if (!c->net.url)
        return 0;
    return session_new(rt, c->net.url, NULL, err);
}

void lume_net_dps_json(lume_runtime *rt, cJSON *root)
{
    const lume_config *c = &rt->cfg;
    if (!lume_dps_configured(c))
        return;
    cJSON *o = cJSON_AddObjectToObject(root, "dps");
    cJSON_AddStringToObject(o, "id_scope", c->net.dps.id_scope);
    cJSON_AddStringToObject(o, "registration_id", lume_dps_registration_id(c));
    cJSON_AddStringToObject(o, "state", rt->dps ? "registering"
                            : rt->dps_assigned.hub[0] ? "assigned" : "idle");
    cJSON_AddStringToObject(o, "assigned_hub", rt->dps_assigned.hub);
    cJSON_AddStringToObject(o, "device_id", rt->dps_assigned.device_id);
    cJSON_AddStringToObject(o, "substatus", rt->dps_assigned.substatus);
    cJSON_AddNumberToObject(o, "polls", rt->dps ? lume_dps_polls(rt->dps) : 0);
    cJSON_AddNumberToObject(o, "reprovisions", rt->dps_reprovisions);
    cJSON_AddStringToObject(o, "last_error", rt->dps ? lume_dps_last_error(rt->dps) : "");
}

void lume_net_stop(lume_runtime *rt)
{
    if (lume_dps_configured(&rt->cfg))
        lume_timer_cancel(&rt->dps_timer);
    lume_dps_free(rt->dps);
    rt->dps = NULL;
}
