/* bindings/l_store.c — lume.store: persistent key/value state per script.
 *
 *   lume.store.set("count", 3)        -> true | nil, err (quota, I/O)
 *   lume.store.get("count")           -> 3 | nil
 *   lume.store.delete("count")
 *   lume.store.keys()                 -> {"count", ...}
 *
 * Values are anything JSON can hold (nil, booleans, numbers, strings, tables
 * of those). Each script has its own namespace ("script:NAME") in state.db
 * and a quota (sandbox.store_quota). A value survives restarts and reloads. */
#include "luajson.h"
#include "modules.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "kv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#define TYPE_JSON 1

static void ns_of(lume_script *s, char *buf, size_t n) { snprintf(buf, n, "script:%s", s->name); }

static const char *check_key(lua_State *L)
{
    size_t n;
    const char *k = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n > 0 && n <= 256, 1, "key must be 1..256 bytes");
    return k;
}

// Lua: lume.store.get(key) -> value | nil
static int l_get(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *k = check_key(L);
    char ns[96];
    ns_of(s, ns, sizeof ns);
    void *val;
    size_t len;
    int type;
    int r = lume_kv_get(s->rt->kv, ns, k, &val, &len, &type);
    if (r == -ENOENT) {
        lua_pushnil(L);
        return 1;
    }
    if (r < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "store.get: %s", strerror(-r));
        return 2;
    }
    char *err = NULL;
    r = lume_json_push(L, val, len, &err);
    free(val);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "store.get: stored value is corrupt: %s", err);
        free(err);
        return 2;
    }
    return 1;
}

// Lua: lume.store.set(key, value) -> true | nil, err
static int l_set(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *k = check_key(L);
    char ns[96];
    ns_of(s, ns, sizeof ns);
    if (s->dry_run) { /* a dry run changes nothing */
        lua_pushboolean(L, 1);
        return 1;
    }
    if (lua_isnoneornil(L, 2)) {
        lume_kv_del(s->rt->kv, ns, k);
        lua_pushboolean(L, 1);
        return 1;
    }
    char *err = NULL;
    size_t len;
    char *json = lume_json_encode_bytes(L, 2, &len, &err);
    if (!json) {
        lua_pushfstring(L, "store.set: %s", err);
        free(err);
        return lua_error(L);
    }
    int64_t used = lume_kv_ns_bytes(s->rt->kv, ns);
    void *old;
    size_t oldlen = 0;
    int type;
    if (lume_kv_get(s->rt->kv, ns, k, &old, &oldlen, &type) == 0)
        free(old);
    int64_t quota = s->rt->cfg.sandbox.store_quota;
    if (used - (int64_t)oldlen + (int64_t)len + (int64_t)strlen(k) > quota) {
        free(json);
        lua_pushnil(L);
        lua_pushfstring(L, "store.set: quota of %d bytes for script %s exceeded", (int)quota,
                        s->name);
        return 2;
    }
    int r = lume_kv_set(s->rt->kv, ns, k, json, len, TYPE_JSON);
    free(json);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "store.set: %s", strerror(-r));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: lume.store.delete(key) -> true
static int l_delete(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *k = check_key(L);
    char ns[96];
    ns_of(s, ns, sizeof ns);
    lume_kv_del(s->rt->kv, ns, k);
    lua_pushboolean(L, 1);
    return 1;
}

static int collect_key(void *ud, const char *key, const void *val, size_t len, int type)
{
    lua_State *L = ud;
    (void)val, (void)len, (void)type;
    lua_pushstring(L, key);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

// Lua: lume.store.keys() -> {key, ...}
static int l_keys(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    char ns[96];
    ns_of(s, ns, sizeof ns);
    lua_newtable(L);
    lume_kv_each(s->rt->kv, ns, collect_key, L);
    return 1;
}

static const luaL_Reg funcs[] = {{"get", l_get}, {"set", l_set}, {"delete", l_delete},
                                 {"keys", l_keys}, {NULL, NULL}};

int lume_open_store(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
