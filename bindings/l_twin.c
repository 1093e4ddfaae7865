/* bindings/l_twin.c — lume.twin: the desired keys that belong to scripts.
 *
 *   lume.twin.desired(key)        -> the merged desired value (nil when unset)
 *   lume.twin.on_change(key, fn)  -> handle; fn(new, old) when that key changes
 *   lume.twin.report(tbl)         -> true | nil, err: merged into the reported
 *                                    document (flushed once per loop turn)
 * The keys scripts, sensors, log and outbox have built-in meaning and are
 * applied by the runtime; report() refuses them and the other keys lume
 * reports itself (desired_versions, errors, lume). */
#include "l_twin.h"
#include "luajson.h"
#include "lume.h"
#include "modules.h"
#include "registry.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "twin_host.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"
#include "schema.h"

/* lume's own desired keys (the schema's, core/store/schema.h) and these */
static const char *const reported_by_lume[] = {"desired_versions", "errors", "lume", NULL};

/* A key of tbl (at 1) that lume reports itself, or NULL. */
static const char *reserved_in(lua_State *L)
{
    size_t n;
    const lume_schema_field *f = lume_twin_schema(&n);
    for (size_t i = 0; i < n + 3; i++) {
        const char *k = i < n ? f[i].path : reported_by_lume[i - n];
        if (!k || (i < n && strchr(k, '.')))
            continue;
        lua_getfield(L, 1, k);
        bool set = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (set)
            return k;
    }
    return NULL;
}

static void listener_release(lume_cb *e)
{
    free(e->key);
    e->key = NULL;
}

static const lume_cb_ops listener_ops = {NULL, listener_release};

// Lua: lume.twin.desired(key) -> value | nil
static int l_desired(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *key = luaL_checkstring(L, 1);
    const cJSON *d = lume_twin_host_desired(s->rt);
    lume_json_push_cjson(L, d ? cJSON_GetObjectItemCaseSensitive(d, key) : NULL);
    return 1;
}

// Lua: lume.twin.on_change(key, fn) -> handle   (h:cancel(), h:active(), <close>: registry.c)
static int l_on_change(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *key = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lume_cb *e = lume_cb_add(L, LUME_CB_TWIN, 2, &listener_ops); /* pushes the handle */
    e->key = strdup(key);
    if (!e->key) {
        lume_cb_cancel(s, LUME_CB_TWIN, e->id);
        return luaL_error(L, "out of memory");
    }
    return 1;
}

// Lua: lume.twin.report(tbl) -> true | nil, err
static int l_report(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *r = reserved_in(L);
    if (r)
        return luaL_error(L, "twin.report: '%s' is reported by lume itself", r);
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
    uint64_t reported = lume_twin_host_errors_reported(rt);
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (s->status != LUME_SCRIPT_RUNNING)
            continue;
        lume_cb_list *l = &s->cbs[LUME_CB_TWIN];
        lume_cb_enter(s, LUME_CB_TWIN);
        for (size_t i = 0; i < l->n; i++) {
            const lume_cb *t = &l->v[i]; /* not held across the call */
            if (t->dead || !t->key || strcmp(t->key, key))
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
        lume_cb_leave(s, LUME_CB_TWIN);
    }
    /* the operator sees why the value did not take, and the error goes
     * away with the next value every script takes */
    if (failed || lume_twin_host_errors_reported(rt) == reported) /* else what a handler */
        lume_twin_host_error(rt, key, failed);                    /* called reported it */
    free(failed);
}

static const luaL_Reg funcs[] = {{"desired", l_desired}, {"on_change", l_on_change},
                                 {"report", l_report}, {NULL, NULL}};

int lume_open_twin(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
