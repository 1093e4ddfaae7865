/* bindings/l_twin.c — lume.twin: the desired keys that belong to scripts.
 *
 *   lume.twin.desired(key)        -> the merged desired value (nil when unset)
 *   lume.twin.on_change(key, fn)  -> handle; fn(new, old) when that key changes
 *   lume.twin.report(tbl)         -> true | nil, err: merged into the reported
 *                                    document (flushed once per loop turn)
 * The keys scripts, sensors, log and outbox have built-in meaning and are
 * applied by the runtime; report() refuses them and the other keys lume
 * reports itself (desired_versions, errors, lume). */
#include "host.h"
#include "hub_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define TL_MT "lume.twin.listener"

static const char *const reserved[] = {"scripts", "sensors", "log", "outbox",
                                       "desired_versions", "errors", "lume", NULL};

typedef struct {
    uint64_t id;
} id_ud;

// Lua: lume.twin.desired(key) -> value | nil
static int l_desired(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *key = luaL_checkstring(L, 1);
    const cJSON *d = lume_twin_host_desired(s->rt);
    lume_json_push_cjson(L, d ? cJSON_GetObjectItemCaseSensitive(d, key) : NULL);
    return 1;
}

// Lua: lume.twin.on_change(key, fn) -> handle
static int l_on_change(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *key = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (s->ntl == s->captl) {
        size_t cap = s->captl ? s->captl * 2 : 4;
        lume_twin_listener *n = realloc(s->tlisteners, cap * sizeof *n);
        if (!n)
            return luaL_error(L, "out of memory");
        s->tlisteners = n;
        s->captl = cap;
    }
    char *k = strdup(key);
    if (!k)
        return luaL_error(L, "out of memory");
    lua_pushvalue(L, 2);
    lume_twin_listener *t = &s->tlisteners[s->ntl++];
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->key = k;
    t->id = s->next_id++;
    t->dead = false;
    id_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->id = t->id;
    luaL_setmetatable(L, TL_MT);
    return 1;
}

// Lua: handle:cancel() -> bool
static int l_cancel(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    id_ud *u = luaL_checkudata(L, 1, TL_MT);
    for (size_t i = 0; i < s->ntl; i++)
        if (s->tlisteners[i].id == u->id && !s->tlisteners[i].dead) {
            s->tlisteners[i].dead = true;
            lua_pushboolean(L, 1);
            return 1;
        }
    lua_pushboolean(L, 0);
    return 1;
}

// Lua: lume.twin.report(tbl) -> true | nil, err
static int l_report(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    for (const char *const *r = reserved; *r; r++) {
        lua_getfield(L, 1, *r);
        if (!lua_isnil(L, -1))
            return luaL_error(L, "twin.report: '%s' is reported by lume itself", *r);
        lua_pop(L, 1);
    }
    if (s->dry_run) {
        lua_pushboolean(L, 1);
        return 1;
    }
    char *err = NULL;
    cJSON *patch = lume_json_to_cjson(L, 1, &err);
    if (!patch) {
        lua_pushnil(L);
        lua_pushfstring(L, "twin.report: %s", err ? err : "cannot encode");
        free(err);
        return 2;
    }
    if (!cJSON_IsObject(patch)) {
        cJSON_Delete(patch);
        return luaL_error(L, "twin.report: expected a table with string keys");
    }
    char why[512];
    if (lume_twin_host_check_patch(s->rt, patch, why, sizeof why) < 0) {
        cJSON_Delete(patch);
        lua_pushnil(L);
        lua_pushfstring(L, "twin.report: %s", why);
        return 2;
    }
    lume_twin_host_report(s->rt, patch);
    lua_pushboolean(L, 1);
    return 1;
}

typedef struct change_call {
    int          ref;
    const cJSON *now, *before;
} change_call;

/* Inside the protected call: converting a large desired value can run into
 * the script's memory cap, which is then this script's error. */
static int push_change(lua_State *L, void *ud)
{
    const change_call *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    /* the old value only for a handler that takes it: a handler of `now`
     * alone never pays for converting (or fails on) the value it replaces */
    lua_Debug ar;
    lua_pushvalue(L, -1);
    bool wants_before = !lua_getinfo(L, ">u", &ar) || ar.nparams >= 2 || ar.isvararg;
    lume_json_push_cjson(L, c->now);
    if (!wants_before)
        return 1;
    lume_json_push_cjson(L, c->before);
    return 2;
}

void lume_twin_notify(lume_runtime *rt, const char *key, const cJSON *now, const cJSON *before)
{
    char *failed = NULL; /* what went wrong, for reported.errors.<key> */
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (s->status != LUME_SCRIPT_RUNNING)
            continue;
        for (size_t i = 0; i < s->ntl; i++) {
            lume_twin_listener *t = &s->tlisteners[i];
            if (t->dead || strcmp(t->key, key))
                continue;
            change_call c = {t->ref, now, before};
            char what[300];
            snprintf(what, sizeof what, "twin.on_change(%s)", key);
            if (lume_sandbox_pcall(s, push_change, &c, rt->cfg.sandbox.cpu_budget_ms, what) !=
                    LUA_OK && !failed)
                failed = lume_strdupf("script %s: %s", s->name,
                                      s->last_error ? s->last_error : "failed");
            if (s->status != LUME_SCRIPT_RUNNING)
                break;
        }
    }
    /* the operator sees why the value did not take, and the error goes
     * away with the next value every script takes */
    lume_twin_host_error(rt, key, failed);
    free(failed);
}

static int l_gc(lua_State *L) { (void)L; return 0; }

static const luaL_Reg methods[] = {{"cancel", l_cancel}, {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__close", l_cancel}, {NULL, NULL}};
static const luaL_Reg funcs[] = {{"desired", l_desired}, {"on_change", l_on_change},
                                 {"report", l_report}, {NULL, NULL}};

int lume_open_twin(lua_State *L)
{
    luaL_newmetatable(L, TL_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
