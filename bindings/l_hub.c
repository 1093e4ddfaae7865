/* bindings/l_hub.c — what a hub asks of the scripts: direct methods and
 * cloud-to-device messages (dialects that have them: azure).
 *
 *   lume.method(name, fn)   fn(payload) -> value: answered 200 with value as
 *                           JSON; an error in fn -> 500 {"message": ...};
 *                           fn over its CPU budget -> 504; a method no
 *                           running script registered -> 404
 *   lume.on_c2d(fn)         fn(payload, properties): payload as a string,
 *                           properties the message's property bag (a table
 *                           of strings, URL-decoded)
 *
 * The handlers live in the registry of the script's own lua_State (table
 * "lume.methods", field "lume.c2d"): they go when the script's state goes,
 * so a replaced or stopped script never answers. The first running script
 * that registered a name answers it. */

#include "l_hub.h"
#include "modules.h"
#include "luajson.h"
#include "lume.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "twin_host.h"
#include "hub.h"
#include "mqtt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"

#define METHODS_KEY "lume.methods"
#define C2D_KEY "lume.c2d"

static uint64_t n_methods, n_methods_failed, n_c2d;

// Lua: lume.method(name, fn)
static int l_method(lua_State *L)
{
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (n == 0 || n > 127 || strpbrk(name, "/#+?"))
        return luaL_argerror(L, 1, "a method name is 1..127 bytes without '/', '#', '+', '?'");
    if (lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
    }
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, name);
    return 0;
}

// Lua: lume.on_c2d(fn)
static int l_on_c2d(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, C2D_KEY);
    return 0;
}

void lume_hub_open_into(lua_State *L)
{
    lua_pushcfunction(L, l_method);
    lua_setfield(L, -2, "method");
    lua_pushcfunction(L, l_on_c2d);
    lua_setfield(L, -2, "on_c2d");
}

/* ---- the host side ------------------------------------------------------- */

typedef struct hub_call {
    const char *name;         /* a method's; NULL for C2D */
    const char *props;
    const void *payload;
    size_t      len;
    char       *result;       /* malloc'd JSON of a method's return value */
    size_t      result_len;
} hub_call;

/* Inside the protected call: run the method and keep its value as JSON. */
static int method_tramp(lua_State *L)
{
    hub_call *c = lua_touserdata(L, lua_upvalueindex(1));
    lua_call(L, 1, 1);
    char *err = NULL;
    if (lua_isnil(L, -1)) {
        c->result = strdup("null");
        c->result_len = 4;
        return 0;
    }
    c->result = lume_json_encode(L, -1, &c->result_len, &err);
    if (!c->result) {
        lua_pushfstring(L, "method result: %s", err ? err : "cannot encode");
        free(err);
        return lua_error(L);
    }
    return 0;
}

static int push_method(lua_State *L, void *ud)
{
    hub_call *c = ud;
    lua_pushlightuserdata(L, c);
    lua_pushcclosure(L, method_tramp, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
    lua_getfield(L, -1, c->name);
    lua_remove(L, -2);
    /* the payload as a Lua value when it is JSON, else as a string */
    char *err = NULL;
    if (!c->len || lume_json_push(L, c->payload, c->len, &err) < 0) {
        free(err);
        lua_pushlstring(L, c->payload ? c->payload : "", c->len);
    }
    return 2;
}

static bool has_method(lume_script *s, const char *name)
{
    lua_State *L = s->L;
    if (!L || !lua_checkstack(L, 2))
        return false;
    bool yes = false;
    if (lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY) == LUA_TTABLE)
        yes = lua_getfield(L, -1, name) == LUA_TFUNCTION, lua_pop(L, 1);
    lua_pop(L, 1);
    return yes;
}

static void respond(lume_runtime *rt, int status, const char *rid, const char *body,
                    size_t len)
{
    lume_hub_out out;
    if (!rt->mqtt || lume_hub_method_response(rt->hub, status, rid, &out) < 0)
        return;
    if (lume_mqtt_publish_now(rt->mqtt, out.topic, body, len, false) < 0)
        lume_log(LUME_LOG_WARN, "hub", "method answer %d for request %s not sent: not "
                 "connected", status, rid);
}

static void respond_message(lume_runtime *rt, int status, const char *rid, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", msg);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    respond(rt, status, rid, body ? body : "{}", body ? strlen(body) : 2);
    free(body);
}

void lume_hub_host_method(lume_runtime *rt, const char *name, const char *rid,
                          const void *payload, size_t len)
{
    n_methods++;
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (s->status != LUME_SCRIPT_RUNNING || !has_method(s, name))
            continue;
        hub_call c = {.name = name, .payload = payload, .len = len};
        char what[200];
        snprintf(what, sizeof what, "method(%s)", name);
        int st = lume_sandbox_pcall(s, push_method, &c, rt->cfg.sandbox.cpu_budget_ms, what);
        if (st == 0 && c.result) {
            respond(rt, 200, rid, c.result, c.result_len);
        } else {
            n_methods_failed++;
            const char *msg = s->last_error ? s->last_error : "the method failed";
            bool budget = strstr(msg, "CPU budget") != NULL;
            lume_log(LUME_LOG_WARN, "hub", "method %s (request %s): %s", name, rid, msg);
            respond_message(rt, budget ? 504 : 500, rid, msg);
        }
        free(c.result);
        return;
    }
    n_methods_failed++;
    char msg[200];
    snprintf(msg, sizeof msg, "no method named \"%s\" on this device", name);
    lume_log(LUME_LOG_INFO, "hub", "%s (request %s)", msg, rid);
    respond_message(rt, 404, rid, msg);
}

/* props "a=1&b=x%20y" -> {a = "1", b = "x y"} */
static void push_props(lua_State *L, const char *props)
{
    lua_newtable(L);
    if (!props || !*props)
        return;
    char *copy = strdup(props);
    if (!copy)
        return;
    for (char *save = NULL, *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        const char *v = "";
        if (eq) {
            *eq = 0;
            v = eq + 1;
        }
        char *k = kv;
        lume_hub_urldecode(k);
        char *vv = strdup(v);
        if (!vv)
            break;
        lume_hub_urldecode(vv);
        lua_pushstring(L, vv);
        lua_setfield(L, -2, k);
        free(vv);
    }
    free(copy);
}

static int push_c2d(lua_State *L, void *ud)
{
    hub_call *c = ud;
    lua_getfield(L, LUA_REGISTRYINDEX, C2D_KEY);
    lua_pushlstring(L, c->payload ? c->payload : "", c->len);
    push_props(L, c->props);
    return 2;
}

void lume_hub_host_c2d(lume_runtime *rt, const char *props, const void *payload, size_t len)
{
    n_c2d++;
    bool taken = false;
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (s->status != LUME_SCRIPT_RUNNING || !s->L || !lua_checkstack(s->L, 1))
            continue;
        bool has = lua_getfield(s->L, LUA_REGISTRYINDEX, C2D_KEY) == LUA_TFUNCTION;
        lua_pop(s->L, 1);
        if (!has)
            continue;
        hub_call c = {.props = props, .payload = payload, .len = len};
        lume_sandbox_pcall(s, push_c2d, &c, rt->cfg.sandbox.cpu_budget_ms, "on_c2d");
        taken = true;
    }
    if (!taken)
        lume_log(LUME_LOG_INFO, "hub", "cloud-to-device message of %zu bytes: no script "
                 "handles it (lume.on_c2d); acknowledged and dropped", len);
}

bool lume_hub_registered(lua_State *L)
{
    bool has = lua_getfield(L, LUA_REGISTRYINDEX, C2D_KEY) == LUA_TFUNCTION;
    lua_pop(L, 1);
    if (has)
        return true;
    if (lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY) == LUA_TTABLE) {
        lua_pushnil(L);
        if (lua_next(L, -2)) {
            lua_pop(L, 2);
            has = true;
        }
    }
    lua_pop(L, 1);
    return has;
}

void lume_hub_host_count(lume_twin_host_stats *st)
{
    st->methods = n_methods;
    st->methods_failed = n_methods_failed;
    st->c2d = n_c2d;
}
