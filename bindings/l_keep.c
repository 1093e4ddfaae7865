/* bindings/l_keep.c — lume.keep: state a script hands to its next version.
 *
 *   local alarms = lume.keep("alarms", {raised = {}})           -- plain table
 *   local hot = lume.keep("hot", rules.threshold{above = 30})   -- an object
 *   local st = lume.keep("st", {n = 0}, {version = 2,
 *                        migrate = function(old, old_version) ... end})
 *
 * lume.keep registers a table under a name (once per name and script) and
 * returns it, filled with what the previous version kept under that name.
 * A table, or a value inside it, that has `save` and `restore` methods (the
 * stdlib's rules, windows and batches) is saved as what `save()` returns and
 * restored with `restore(data)`, so its options come from the new code and
 * only its state from the old; a plain table's keys are copied over.
 *
 * Where the state comes from, and when it is taken:
 *
 *   old version running ──(build: before the new top level runs)──► snapshot
 *        │                                         of old, read by lume.keep
 *        │ swap / rollback: the snapshot again, taken just before the old
 *        │ version stops, restored into the new one before its first
 *        │ handler (undoes what a dry run did), and saved in the store
 *        ▼
 *   no older version (restart, first load), or its snapshot failed
 *        ──► the store (state.db, namespace "keep", one document per
 *        script), saved at every swap, every LUME_KEEP_SAVE_MS when it
 *        changed, at unload and at shutdown
 *
 * Invariants:
 *   1. A snapshot goes through lume's JSON encoder (the one lume.store
 *      uses): data only, no functions or userdata; at most
 *      sandbox.store_quota bytes per script, else it is refused (logged)
 *      and the store keeps the last good one.
 *   2. Each name carries its version (default 1). Saved state of another
 *      version is restored only through the new code's `migrate(old,
 *      old_version)`; without one, or when migrate returns nil, it is
 *      refused (logged) and the table keeps its defaults.
 *   3. A save, migrate or restore that raises is the script's error (log,
 *      error count) and never stops the swap; the other names still go. */
#include "keep.h"
#include "luajson.h"
#include "modules.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "kv.h"
#include "loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "crypto.h"
#include "log.h"

#define KEEP_REG "lume.keep"   /* registry: name -> {value, version, migrate} */
#define NS_KEEP "keep"         /* state.db: script name -> snapshot */
#define TYPE_JSON 1

static bool name_ok(const char *n, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
              (n[i] >= '0' && n[i] <= '9') || n[i] == '_' || n[i] == '-' || n[i] == '.'))
            return false;
    return true;
}

/* When the value at idx has a method `name`, push it and return true. */
static bool method(lua_State *L, int idx, const char *name)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return false;
    if (lua_getfield(L, idx, name) == LUA_TFUNCTION)
        return true;
    lua_pop(L, 1);
    return false;
}

/* Push what is saved for the value at idx: value:save(), or for a plain
 * table a copy whose objects are replaced by what their save() returns. */
static void push_saved(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (method(L, idx, "save")) {
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_newtable(L);
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {          /* key, value */
        if (method(L, -1, "save")) {    /* key, value, save */
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);          /* key, value, saved */
            lua_remove(L, -2);          /* key, saved */
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);              /* key, key, saved */
        lua_rawset(L, t);               /* key */
    }
}

/* Restore data (at didx) into the value at vidx. */
static void restore_into(lua_State *L, int vidx, int didx)
{
    vidx = lua_absindex(L, vidx);
    didx = lua_absindex(L, didx);
    if (method(L, vidx, "restore")) {
        lua_pushvalue(L, vidx);
        lua_pushvalue(L, didx);
        lua_call(L, 2, 0);
        return;
    }
    if (lua_type(L, didx) != LUA_TTABLE)
        luaL_error(L, "saved state is a %s, not a table", luaL_typename(L, didx));
    lua_pushnil(L);
    while (lua_next(L, didx)) {         /* key, data */
        lua_pushvalue(L, -2);
        lua_gettable(L, vidx);          /* key, data, current */
        if (method(L, -1, "restore")) { /* key, data, current, restore */
            lua_insert(L, -2);          /* key, data, restore, current */
            lua_pushvalue(L, -3);
            lua_call(L, 2, 0);          /* key, data */
            lua_pop(L, 1);
        } else {
            lua_pop(L, 1);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);          /* key, key, data */
            lua_settable(L, vidx);
        }
    }
}

/* Protected: (name, entry, saved) -> restores saved {v, d} into entry. */
static int apply_saved(lua_State *L)
{
    const char *name = lua_tostring(L, 1);
    lua_getfield(L, 2, "value");                       /* 4 */
    lua_getfield(L, 2, "version");                     /* 5 */
    lua_getfield(L, 3, "v");                           /* 6 */
    lua_getfield(L, 3, "d");                           /* 7 */
    lua_Integer want = lua_tointeger(L, 5), had = lua_tointeger(L, 6);
    if (had != want) {
        if (lua_getfield(L, 2, "migrate") != LUA_TFUNCTION)
            return luaL_error(L, "kept state '%s' is version %I and this version keeps "
                              "version %I: not restored (give lume.keep a migrate function)",
                              name, had, want);
        lua_pushvalue(L, 7);
        lua_pushinteger(L, had);
        lua_call(L, 2, 1);
        if (lua_isnil(L, -1))
            return luaL_error(L, "kept state '%s' of version %I refused by migrate", name,
                              had);
        lua_replace(L, 7);
    }
    restore_into(L, 4, 7);
    return 0;
}

/* Restore the entry at eidx from the decoded snapshot at didx, catching
 * what the script's migrate or restore raises (but not a budget kill). */
static void apply_one(lua_State *L, lume_script *s, const char *name, int eidx, int didx)
{
    if (lua_getfield(L, didx, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    int saved = lua_gettop(L);
    lua_pushcfunction(L, apply_saved);
    lua_pushstring(L, name);
    lua_pushvalue(L, eidx);
    lua_pushvalue(L, saved);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        if (s->killed)
            lua_error(L);
        const char *msg = lua_tostring(L, -1);
        if (!s->keep_quiet) /* said once, when it loaded */
            lume_log(LUME_LOG_WARN, "scripts", "%s: %s; it starts from its defaults",
                     s->name, msg ? msg : "kept state not restored");
        lua_pop(L, 1);
    }
    lua_settop(L, saved - 1);
}

static void push_registry(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, KEEP_REG) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, KEEP_REG);
    }
}

// Lua: lume.keep(name, tbl [, {version = n, migrate = fn}]) -> tbl
static int l_keep(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    size_t nlen;
    const char *name = luaL_checklstring(L, 1, &nlen);
    luaL_argcheck(L, name_ok(name, nlen), 1,
                  "name must be 1..64 letters, digits, '_', '-' or '.'");
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer version = 1;
    bool migrate = false;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (!strcmp(k, "version")) {
                int isint;
                version = lua_tointegerx(L, -1, &isint);
                if (!isint || version < 1)
                    return luaL_argerror(L, 3, "version must be an integer >= 1");
            } else if (!strcmp(k, "migrate")) {
                if (!lua_isfunction(L, -1))
                    return luaL_argerror(L, 3, "migrate must be a function(old, old_version)");
                migrate = true;
            } else {
                return luaL_argerror(L, 3, lua_pushfstring(L, "unknown option '%s' "
                                     "(expected version, migrate)", k));
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, 3);
    push_registry(L);                                  /* 4 */
    if (lua_getfield(L, 4, name) != LUA_TNIL)
        return luaL_error(L, "lume.keep: '%s' is kept already (one table per name)", name);
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);                          /* 5: the entry */
    lua_pushvalue(L, 2);
    lua_setfield(L, 5, "value");
    lua_pushinteger(L, version);
    lua_setfield(L, 5, "version");
    if (migrate) {
        lua_getfield(L, 3, "migrate");
        lua_setfield(L, 5, "migrate");
    }
    lua_pushvalue(L, 5);
    lua_setfield(L, 4, name);
    if (s->keep_in) {
        char *err = NULL;
        if (lume_json_push(L, s->keep_in, s->keep_in_len, &err) < 0) { /* 6 */
            lume_log(LUME_LOG_WARN, "scripts", "%s: kept state unreadable (%s); '%s' starts "
                     "from its defaults", s->name, err ? err : "?", name);
            free(err);
        } else if (lua_istable(L, 6)) {
            apply_one(L, s, name, 5, 6);
        }
    }
    lua_settop(L, 2);
    return 1;
}

/* ---- the host side: snapshot, restore, save ------------------------------- */

typedef struct snap_ctx {
    lume_script *s;
    char        *json;
    size_t       len;
    const char  *in;
    size_t       inlen;
} snap_ctx;

/* Protected: the snapshot of every kept name, as one JSON string. */
static int snap_fn(lua_State *L)
{
    snap_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (lua_getfield(L, LUA_REGISTRYINDEX, KEEP_REG) != LUA_TTABLE)
        return 0;
    luaL_Buffer b;
    lua_newtable(L);                    /* 2: the encoded parts, in order */
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {            /* name, entry */
        const char *name = lua_tostring(L, -2);
        lua_getfield(L, -1, "version");
        lua_Integer v = lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, -1, "value");
        push_saved(L, -1);              /* name, entry, value, saved */
        char *err = NULL;
        size_t len;
        char *json = lume_json_encode_bytes(L, -1, &len, &err);
        if (!json) {
            lua_pushfstring(L, "lume.keep '%s': cannot save: %s", name, err ? err : "?");
            free(err);
            return lua_error(L);
        }
        lua_pushfstring(L, "%s\"%s\":{\"v\":%I,\"d\":", n ? "," : "{", name, v);
        lua_rawseti(L, 2, ++n);
        lua_pushlstring(L, json, len);
        free(json);
        lua_rawseti(L, 2, ++n);
        lua_pushliteral(L, "}");
        lua_rawseti(L, 2, ++n);
        lua_pop(L, 3);                  /* name */
    }
    if (!n)
        return 0;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    size_t len;
    const char *out = lua_tolstring(L, -1, &len);
    c->json = malloc(len + 1);
    if (!c->json)
        return luaL_error(L, "lume.keep: out of memory");
    memcpy(c->json, out, len + 1);
    c->len = len;
    return 0;
}

static int push_snap(lua_State *L, void *ud)
{
    lua_pushcfunction(L, snap_fn);
    lua_pushlightuserdata(L, ud);
    return 1;
}

char *lume_keep_snapshot(lume_script *s, size_t *len, bool *failed)
{
    *failed = false;
    if (!s->L)
        return NULL;
    snap_ctx c = {.s = s};
    if (lume_sandbox_pcall(s, push_snap, &c, s->rt->cfg.sandbox.cpu_budget_ms, "keep") != 0) {
        free(c.json);
        *failed = true;
        return NULL; /* the script's error, logged and counted by the sandbox */
    }
    int64_t quota = s->rt->cfg.sandbox.store_quota;
    if (c.json && (int64_t)c.len > quota) {
        lume_log(LUME_LOG_ERROR, "scripts", "%s: kept state is %zu bytes, more than "
                 "sandbox.store_quota (%lld): not saved, the last saved state stays", s->name,
                 c.len, (long long)quota);
        free(c.json);
        *failed = true;
        return NULL;
    }
    *len = c.len;
    return c.json;
}

/* Protected: restore c->in into every kept name. */
static int restore_fn(lua_State *L)
{
    snap_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (lua_getfield(L, LUA_REGISTRYINDEX, KEEP_REG) != LUA_TTABLE) /* 1 */
        return 0;
    char *err = NULL;
    if (lume_json_push(L, c->in, c->inlen, &err) < 0) {           /* 2 */
        lua_pushfstring(L, "kept state unreadable: %s", err ? err : "?");
        free(err);
        return lua_error(L);
    }
    if (!lua_istable(L, 2))
        return 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {            /* name, entry */
        apply_one(L, c->s, lua_tostring(L, -2), lua_gettop(L), 2);
        lua_pop(L, 1);
    }
    return 0;
}

static int push_restore(lua_State *L, void *ud)
{
    lua_pushcfunction(L, restore_fn);
    lua_pushlightuserdata(L, ud);
    return 1;
}

void lume_keep_restore(lume_script *s, const char *json, size_t len)
{
    if (!s->L || !json)
        return;
    snap_ctx c = {.s = s, .in = json, .inlen = len};
    lume_sandbox_pcall(s, push_restore, &c, s->rt->cfg.sandbox.cpu_budget_ms, "keep");
}

static void store(lume_script *s, const char *json, size_t len)
{
    char sha[65];
    lume_sha256_hex(json, len, sha);
    if (!strcmp(sha, s->keep_sha))
        return;
    int r = lume_kv_set(s->rt->kv, NS_KEEP, s->name, json, len, TYPE_JSON);
    if (r < 0) {
        lume_log(LUME_LOG_ERROR, "scripts", "%s: cannot save its kept state: %s", s->name,
                 strerror(-r));
        return;
    }
    memcpy(s->keep_sha, sha, sizeof sha);
}

void lume_keep_hand_over(lume_script *old, lume_script *s)
{
    if (!old || !old->L || old->status != LUME_SCRIPT_RUNNING || !s->L)
        return;
    size_t len = 0;
    bool failed;
    char *json = lume_keep_snapshot(old, &len, &failed);
    if (!json)
        return;
    char sha[65];
    lume_sha256_hex(json, len, sha);
    s->keep_quiet = !strcmp(sha, s->keep_in_sha);
    lume_keep_restore(s, json, len);
    s->keep_quiet = false;
    store(s, json, len);
    free(json);
}

char *lume_keep_load(lume_runtime *rt, const char *name, size_t *len)
{
    void *val;
    int type;
    if (lume_kv_get(rt->kv, NS_KEEP, name, &val, len, &type) < 0)
        return NULL;
    return val;
}

void lume_keep_save(lume_script *s)
{
    if (!s->L || s->status != LUME_SCRIPT_RUNNING || s->dry_run)
        return;
    size_t len = 0;
    bool failed;
    char *json = lume_keep_snapshot(s, &len, &failed);
    if (json)
        store(s, json, len);
    free(json);
}

void lume_keep_save_all(lume_runtime *rt)
{
    for (lume_script *s = rt->scripts; s; s = s->next)
        lume_keep_save(s);
}

static void keep_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    lume_keep_save_all(rt);
    lume_timer_start(t, LUME_KEEP_SAVE_MS * 1000);
}

void lume_keep_start(lume_runtime *rt)
{
    lume_timer_init(&rt->keep_timer, rt->loop, keep_tick, rt);
    lume_timer_name(&rt->keep_timer, "lume.keep save");
    lume_timer_start(&rt->keep_timer, LUME_KEEP_SAVE_MS * 1000);
}

int lume_open_keep(lua_State *L)
{
    lua_pushcfunction(L, l_keep);
    return 1;
}
