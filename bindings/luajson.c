/* bindings/luajson.c — Lua values <-> JSON for publish payloads and the
 * store. Encoding writes into one growing buffer (no cJSON tree on the
 * publish path); decoding uses cJSON.
 *
 * Tables with keys 1..n are arrays, tables with string keys objects; an
 * empty table is {}. Integers print without a fraction, floats with the
 * shortest of %.14g/%.17g that round-trips. NaN, infinities, functions,
 * userdata, mixed or non-string keys and nesting deeper than 64 are errors
 * that name the path ("value.readings[3]: NaN cannot be encoded"). */
#include "host.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "log.h"

#define MAX_DEPTH 64

typedef struct {
    char  *p;
    size_t n, cap;
    bool   oom;
    char   path[256];
    char  *err;
} jbuf;

static void put(jbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 128;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(jbuf *b, const char *s) { put(b, s, strlen(s)); }

static void put_string(jbuf *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            put(b, s + i - run, run);
            run = 0;
            puts_(b, esc);
        } else {
            run++;
        }
    }
    put(b, s + n - run, run);
    put(b, "\"", 1);
}

static int fail(jbuf *b, const char *what)
{
    if (!b->err)
        b->err = lume_strdupf("%s: %s", b->path[0] ? b->path : "value", what);
    return -1;
}

static int encode(lua_State *L, int idx, jbuf *b, int depth);

static int encode_table(lua_State *L, int idx, jbuf *b, int depth)
{
    if (depth >= MAX_DEPTH)
        return fail(b, "nested deeper than 64 levels (a cycle?)");
    if (!lua_checkstack(L, 4))
        return fail(b, "too deep");
    size_t plen = strlen(b->path);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    /* array if keys are exactly 1..n */
    bool array = n > 0;
    if (array) {
        lua_Integer count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
                lua_pop(L, 1);
                array = false;
                break;
            }
            count++;
        }
        if (array && count != n)
            array = false;
    }
    if (array) {
        put(b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                put(b, ",", 1);
            lua_rawgeti(L, idx, i);
            snprintf(b->path + plen, sizeof b->path - plen, "[%lld]", (long long)i);
            int r = encode(L, lua_gettop(L), b, depth + 1);
            lua_pop(L, 1);
            if (r < 0)
                return r;
        }
        b->path[plen] = 0;
        put(b, "]", 1);
        return 0;
    }
    put(b, "{", 1);
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return fail(b, "a table with keys that are not strings (nor 1..n) cannot be "
                           "encoded as JSON");
        }
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen);
        if (!first)
            put(b, ",", 1);
        first = false;
        put_string(b, k, klen);
        put(b, ":", 1);
        snprintf(b->path + plen, sizeof b->path - plen, "%s%.*s", plen || depth ? "." : "",
                 (int)(klen > 40 ? 40 : klen), k);
        int r = encode(L, lua_gettop(L), b, depth + 1);
        lua_pop(L, 1);
        if (r < 0) {
            lua_pop(L, 1);
            return r;
        }
    }
    b->path[plen] = 0;
    put(b, "}", 1);
    return 0;
}

static int encode(lua_State *L, int idx, jbuf *b, int depth)
{
    char num[40];
    switch (lua_type(L, idx)) {
    case LUA_TNIL: puts_(b, "null"); return 0;
    case LUA_TBOOLEAN: puts_(b, lua_toboolean(L, idx) ? "true" : "false"); return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (!isfinite(d))
                return fail(b, isnan(d) ? "NaN cannot be encoded as JSON"
                                        : "infinity cannot be encoded as JSON");
            snprintf(num, sizeof num, "%.14g", d);
            if (strtod(num, NULL) != d)
                snprintf(num, sizeof num, "%.17g", d);
        }
        puts_(b, num);
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        put_string(b, s, n);
        return 0;
    }
    case LUA_TTABLE:
        if (lua_getmetatable(L, idx)) { /* lume.json's null sentinel */
            lua_getfield(L, -1, "__name");
            bool is_null = lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "json.null");
            lua_pop(L, 2);
            if (is_null) {
                puts_(b, "null");
                return 0;
            }
        }
        return encode_table(L, idx, b, depth);
    default: {
        char what[64];
        snprintf(what, sizeof what, "a %s cannot be encoded as JSON", luaL_typename(L, idx));
        return fail(b, what);
    }
    }
}

char *lume_json_encode(lua_State *L, int idx, size_t *len, char **err)
{
    jbuf b = {0};
    idx = lua_absindex(L, idx);
    if (encode(L, idx, &b, 0) < 0 || b.oom) {
        *err = b.err ? b.err : lume_strdupf("out of memory");
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}

static int push_item(lua_State *L, const cJSON *j, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return -1;
    if (cJSON_IsNull(j)) lua_pushnil(L);
    else if (cJSON_IsFalse(j)) lua_pushboolean(L, 0);
    else if (cJSON_IsTrue(j)) lua_pushboolean(L, 1);
    else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
    else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        lua_Integer i = 0;
        for (const cJSON *c = j->child; c; c = c->next) {
            if (push_item(L, c, depth + 1) < 0)
                return -1;
            lua_rawseti(L, -2, ++i);
        }
    } else if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, 4);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (push_item(L, c, depth + 1) < 0)
                return -1;
            lua_setfield(L, -2, c->string);
        }
    } else
        return -1;
    return 0;
}

int lume_json_push(lua_State *L, const char *s, size_t len, char **err)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!j) {
        *err = lume_strdupf("invalid JSON near byte %td", end ? end - s : (ptrdiff_t)0);
        return -EINVAL;
    }
    int top = lua_gettop(L);
    int r = push_item(L, j, 0);
    cJSON_Delete(j);
    if (r < 0) {
        lua_settop(L, top);
        *err = lume_strdupf("JSON nested deeper than %d levels", MAX_DEPTH);
        return -EINVAL;
    }
    return 0;
}

int lume_json_push_cjson(lua_State *L, const cJSON *j)
{
    int top = lua_gettop(L);
    if (!j) {
        lua_pushnil(L);
        return 0;
    }
    if (push_item(L, j, 0) < 0) {
        lua_settop(L, top);
        lua_pushnil(L);
        return -EINVAL;
    }
    return 0;
}

cJSON *lume_json_to_cjson(lua_State *L, int idx, char **err)
{
    size_t len;
    char *json = lume_json_encode(L, idx, &len, err);
    if (!json)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(json, len);
    free(json);
    if (!j)
        *err = lume_strdupf("out of memory");
    return j;
}
