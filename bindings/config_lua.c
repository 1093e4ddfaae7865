/* bindings/config_lua.c — read a Lua config file into a lume_config.
 *
 * The file is a chunk returning a table; it runs with an environment that
 * holds only math, string and os.getenv (so a config can compute a value or
 * read $HOSTNAME, and do nothing else). Every leaf goes through
 * lume_config_set (core/base/config.c), the one place values are checked.
 *
 * Every lume command reads the config before anything else, so a config that
 * never finishes would hang them all. The chunk runs like a script's load:
 *   - memory: its own state's allocator is capped at CONFIG_MEMORY_LIMIT;
 *     past it the allocation fails and the chunk stops with a memory error;
 *   - time: a count hook checks a wall-clock deadline CONFIG_TIME_LIMIT_MS
 *     after the chunk started, and lume's pattern functions (string.find,
 *     match, gmatch, gsub, which can backtrack for minutes inside one C call)
 *     check the same deadline through lume_sandbox_check; string.rep, the
 *     other C loop that neither allocates nor calls, returns at once when
 *     its result is empty (lume_string_rep_install, shared with the sandbox).
 * Either way the error names the file and the limit. Once the chunk has
 * returned, the cap is lifted and the hook removed: walking the table it
 * returned runs in C, unprotected, and must not meet a refused allocation. */
#include "config_lua.h"
#include "lume.h"
#include "pattern.h"
#include "sandbox.h"
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "clock.h"
#include "log.h"

#define CONFIG_MEMORY_LIMIT  (16u * 1024 * 1024) /* bytes */
#define CONFIG_TIME_LIMIT_MS 2000
#define CONFIG_HOOK_COUNT    1000                /* instructions between checks */
#define TIME_LIMIT_MSG       "the config ran longer than its time limit"

/* Keys that name files or folders. In a config file, a relative one is
 * relative to the file's folder (base), whatever the working directory:
 * `lume run --config /etc/lume/lume.conf.lua` from anywhere means the same
 * thing. twin.trusted_keys is a list of files; board only when it is a path
 * (lume_board_is_path). */
static const char *const path_keys[] = {
    "board", "boards_dir", "scripts_dir", "stdlib_dir", "store", "net.ca_file",
    "net.cert_file", "net.key_file", "net.sas_key_file", "twin.fetch_ca_file",
    "twin.trusted_keys", "net.sign.key_file",
};

static int rebase(lume_config *c, const char *key, const char *base, char **err)
{
    const lume_config_field *f = NULL;
    for (size_t i = 0; i < sizeof path_keys / sizeof *path_keys && !f; i++)
        if (!strcmp(key, path_keys[i]))
            for (size_t j = 0; (f = lume_config_field_at(j)) && strcmp(f->key, key); j++)
                ;
    if (!f)
        return 0;
    char **slot = (char **)((char *)c + f->offset);
    const char *v = *slot;
    if (!v || (!strcmp(key, "board") && !lume_board_is_path(v)))
        return 0;
    size_t cap = strlen(v) * 2 + 16, used = 0, blen = strlen(base);
    for (const char *p = v; *p; p++)
        cap += *p == ',' ? blen + 1 : 0;
    char *out = malloc(cap + blen + 1);
    if (!out) {
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    for (const char *p = v; *p;) { /* each item of a list; the one value otherwise */
        size_t n = f->type == LUME_CFG_LIST ? strcspn(p, ",") : strlen(p);
        if (used)
            out[used++] = ',';
        if (p[0] != '/')
            used += (size_t)sprintf(out + used, "%s/", base);
        memcpy(out + used, p, n);
        used += n;
        p += n;
        if (*p == ',')
            p++;
    }
    out[used] = 0;
    free(*slot);
    *slot = out;
    return 0;
}


/* May raise a Lua error (memory, a key's __tostring): callers run it
 * protected (load below; a Lua C function's own caller). Every C allocation
 * is freed before the next call that can raise. */
static int walk(lume_config *c, lua_State *L, int t, const char *prefix, const char *file,
                const char *base, char **err)
{
    luaL_checkstack(L, 4, "config tables nested too deep");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pushvalue(L, -2);
            *err = lume_strdupf("%s: %s%skeys must be names, got [%s]", file, prefix,
                                *prefix ? ": " : "", luaL_tolstring(L, -1, NULL));
            return -EINVAL;
        }
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", lua_tostring(L, -2));
        lume_config_value v = {0};
        switch (lua_type(L, -1)) {
        case LUA_TBOOLEAN: v.kind = LUME_CV_BOOL; v.b = lua_toboolean(L, -1); break;
        case LUA_TNUMBER: v.kind = LUME_CV_NUMBER; v.num = lua_tonumber(L, -1); break;
        case LUA_TSTRING: v.kind = LUME_CV_STRING; v.str = lua_tolstring(L, -1, &v.len); break;
        case LUA_TTABLE:
            if (lua_rawlen(L, -1) > 0) { /* a list: "a,b,c" */
                int list = lua_gettop(L);
                lua_Integer n = (lua_Integer)lua_rawlen(L, list);
                for (lua_Integer i = 1; i <= n; i++) {
                    lua_rawgeti(L, list, i);
                    bool ok = lua_type(L, -1) == LUA_TSTRING && !strchr(lua_tostring(L, -1), ',');
                    size_t len = ok ? lua_rawlen(L, -1) : 0;
                    lua_pop(L, 1);
                    if (!ok) {
                        *err = lume_strdupf("%s: %s: expected a list of strings (without commas)",
                                            file, key);
                        return -EINVAL;
                    }
                    if (len == 0) {
                        *err = lume_strdupf("%s: %s: entry %lld is \"\": expected a list of "
                                            "non-empty names", file, key, (long long)i);
                        return -EINVAL;
                    }
                }
                luaL_Buffer b; /* in Lua's memory: nothing to free if it raises */
                luaL_buffinit(L, &b);
                for (lua_Integer i = 1; i <= n; i++) {
                    if (i > 1)
                        luaL_addchar(&b, ',');
                    lua_rawgeti(L, list, i);
                    luaL_addvalue(&b);
                }
                luaL_pushresult(&b);
                lua_replace(L, list);
                v.kind = LUME_CV_STRING;
                v.str = lua_tolstring(L, list, &v.len);
                break;
            }
            v.kind = LUME_CV_TABLE;
            break;
        default: v.kind = LUME_CV_OTHER; v.type_name = luaL_typename(L, -1); break;
        }
        char *e = NULL;
        int r = lume_config_set(c, key, &v, &e);
        if (r < 0) {
            *err = lume_strdupf("%s: %s", file, e ? e : "bad value");
            free(e);
            return r;
        }
        if (r == 0 && base)
            r = rebase(c, key, base, err);
        if (r < 0)
            return r;
        if (r == 1) {
            r = walk(c, L, lua_gettop(L), key, file, base, err);
            if (r < 0)
                return r;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int from_lua(lume_config *c, lua_State *L, int idx, const char *origin,
                    const char *base, char **err)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        *err = lume_strdupf("%s: the configuration must be a table, got %s", origin,
                            luaL_typename(L, idx));
        return -EINVAL;
    }
    int top = lua_gettop(L);
    int r = walk(c, L, idx, "", origin, base, err);
    lua_settop(L, top);
    if (r == 0) {
        char *e = NULL;
        r = lume_config_check(c, &e);
        if (r < 0) {
            *err = lume_strdupf("%s: %s", origin, e);
            free(e);
        }
    }
    return r;
}

int lume_config_from_lua(lume_config *c, lua_State *L, int idx, const char *origin,
                         char **err)
{
    return from_lua(c, L, idx, origin, NULL, err);
}

/* The config state's allocator: a cap, and whether it refused anything. */
typedef struct {
    size_t used, limit;
    bool   refused;
} config_mem;

static void *config_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    config_mem *m = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        m->used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > m->limit - m->used) {
        m->refused = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    m->used = m->used - old + nsize;
    return p;
}

static void config_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lume_sandbox_check(L); /* raises past the deadline (lume_sandbox_set_deadline) */
}

/* The chunk's environment, built in protected mode (it allocates under the
 * cap): math, string (lume's deadline-checked pattern functions), os.getenv. */
static int push_env(lua_State *L)
{
    lua_newtable(L);
    luaL_requiref(L, "math", luaopen_math, 0);
    lua_setfield(L, -2, "math");
    luaL_requiref(L, "string", luaopen_string, 0);
    lume_string_rep_install(L, 0); /* the capped allocator refuses big ones */
    lua_setfield(L, -2, "string");
    if (lume_pattern_install(L) < 0) /* through the string metatable */
        return luaL_error(L, "no string library");
    luaL_requiref(L, "os", luaopen_os, 0);
    lua_createtable(L, 0, 1);
    lua_getfield(L, -2, "getenv");
    lua_setfield(L, -2, "getenv");
    lua_setfield(L, -3, "os");
    lua_pop(L, 1);
    return 1;
}

typedef struct walk_args {
    lume_config *c;
    const char  *path;
    const char  *base;     /* the folder relative paths are relative to */
    char       **err;
    int          r;
} walk_args;

/* from_lua as a protected call: (walk_args, the table). */
static int walk_protected(lua_State *L)
{
    walk_args *a = lua_touserdata(L, 1);
    a->r = from_lua(a->c, L, 2, a->path, a->base, a->err);
    return 0;
}

/* luaL_loadfilex as a protected call (it raises when memory runs out):
 * (path) -> the chunk or the message, the status. */
static int loadfile_protected(lua_State *L)
{
    int st = luaL_loadfilex(L, lua_touserdata(L, 1), "t");
    lua_pushinteger(L, st);
    return 2;
}

static int load(lume_config *c, const char *path, char **err)
{
    config_mem mem = {.limit = CONFIG_MEMORY_LIMIT};
    lua_State *L = lua_newstate(config_alloc, &mem);
    if (!L) {
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    *(void **)lua_getextraspace(L) = NULL; /* not a script's state (lume_sandbox_check) */
    int r = -EINVAL;
    int64_t deadline = lume_mono_ns() + CONFIG_TIME_LIMIT_MS * LUME_NS_PER_MS;
    lume_sandbox_set_deadline(deadline, TIME_LIMIT_MSG);
    lua_sethook(L, config_hook, LUA_MASKCOUNT, CONFIG_HOOK_COUNT);
    lua_pushcfunction(L, loadfile_protected);
    lua_pushlightuserdata(L, (void *)path);
    int st = lua_pcall(L, 1, 2, 0);
    if (st == LUA_OK) {
        st = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    if (st == LUA_OK) {
        lua_pushcfunction(L, push_env);
        st = lua_pcall(L, 0, 1, 0);
        if (st == LUA_OK) {
            lua_setupvalue(L, -2, 1);
            st = lua_pcall(L, 0, 1, 0);
        }
    }
    bool late = lume_mono_ns() >= deadline;
    lua_sethook(L, NULL, 0, 0);
    lume_sandbox_set_deadline(0, NULL);
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        if (!m)
            m = "(error object is not a string)";
        if (st == LUA_ERRMEM && !mem.refused) {
            *err = lume_strdupf("config %s: out of memory", path);
            r = -ENOMEM;
        } else if (st == LUA_ERRMEM)
            *err = lume_strdupf("config %s: stopped: it needed more than %u MiB of memory, "
                                "the memory limit of a config file", path,
                                CONFIG_MEMORY_LIMIT >> 20);
        else if (late && strstr(m, TIME_LIMIT_MSG))
            *err = lume_strdupf("config %s: stopped: it ran longer than %d ms, the time limit "
                                "of a config file (an endless loop?)", path,
                                CONFIG_TIME_LIMIT_MS);
        else if (st == LUA_ERRFILE)
            *err = lume_strdupf("config: %s", m);
        else if (st == LUA_ERRSYNTAX)
            *err = lume_strdupf("config: syntax error: %s", m);
        else
            *err = lume_strdupf("config: %s", m);
        goto out;
    }
    if (!lua_istable(L, -1)) {
        *err = lume_strdupf("%s: must return a table, returned %s", path, luaL_typename(L, -1));
        goto out;
    }
    /* the folder relative paths in the file are relative to, absolute */
    char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    char *base = dir ? realpath(dir, NULL) : NULL;
    int   e = base ? 0 : dir ? errno : ENOMEM;
    free(dir);
    if (!base) { /* lume_strerror(ENOMEM) says "out of memory" (lume_err_oom) */
        *err = lume_strdupf("config %s: its folder: %s", path, lume_strerror(e ? e : ENOMEM));
        if (!e || e == ENOMEM)
            r = -ENOMEM;
        goto out;
    }
    /* The walk runs protected and under the same memory cap: a Lua error
     * in it (memory, a key's __tostring) is a config error, not a panic. */
    walk_args a = {.c = c, .path = path, .base = base, .err = err, .r = -EINVAL};
    int tbl = lua_gettop(L);
    mem.refused = false;
    lua_pushcfunction(L, walk_protected);
    lua_pushlightuserdata(L, &a);
    lua_pushvalue(L, tbl);
    st = lua_pcall(L, 2, 0, 0);
    r = a.r;
    if (st != LUA_OK) {
        free(*err);
        if (st == LUA_ERRMEM && !mem.refused) {
            *err = lume_strdupf("config %s: out of memory", path);
            r = -ENOMEM;
        } else if (st == LUA_ERRMEM) {
            *err = lume_strdupf("config %s: stopped: it needed more than %u MiB of memory, "
                                "the memory limit of a config file", path,
                                CONFIG_MEMORY_LIMIT >> 20);
            r = -EINVAL;
        } else {
            const char *m = lua_tostring(L, -1);
            *err = lume_strdupf("config %s: %s", path, m ? m : "(error object is not a string)");
            r = -EINVAL;
        }
    }
    free(base);
    if (r == 0) {
        free(c->source);
        c->source = strdup(path);
    }
out:
    lua_close(L);
    return r;
}

int lume_config_load(lume_config *c, const char *path, char **err)
{
    char *e = NULL;
    int r = c && path ? load(c, path, &e) : -EINVAL;
    if (r < 0 && !e)
        e = lume_strdupf("lume_config_load: %s", !c ? "the config is NULL"
                                                  : !path ? "the path is NULL" : "failed");
    if (err)
        *err = e;
    else
        free(e);
    return r;
}
