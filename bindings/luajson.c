/* bindings/luajson.c — Lua values <-> JSON for publish payloads, twin
 * reports and the store. Encoding writes into one growing buffer (no cJSON
 * tree on the publish path); decoding uses cJSON.
 *
 * The encoder follows lume's one rule for Lua values as JSON, the rule of
 * stdlib/lume/json.lua's pure-Lua encoder, output and errors alike (the
 * rule is written out in docs/stdlib.md, "lume.json"; the conformance spec
 * tests/lua/json_conformance_spec.lua runs the same cases through both):
 *
 *   1. nil -> null; booleans; integers as %lld; floats: NaN and infinities
 *      are errors, integral values in [-2^63, 2^63) as integers, others
 *      with the fewest of 14..17 significant digits (%.Ng) that read back
 *      exactly.
 *   2. strings: valid UTF-8 (Lua's utf8.len, strict), `"` `\` and bytes
 *      below 0x20 escaped (\b \f \n \r \t, else \u00xx), the rest as is.
 *   3. a table's JSON type comes from its metatable as getmetatable() shows
 *      it: __jsontype = "array" (json.array, and every array decoded by
 *      lume) or "null" (json.null). Otherwise keys decide: exactly 1..n ->
 *      array; all strings, or none (the empty table) -> object. Keys
 *      that are neither strings nor positive integers, string keys in an
 *      array, gaps (sparse), string keys mixed with integer ones, cycles
 *      and nesting deeper than 64 tables are errors.
 *   4. object members in the table's own order (lua_next, raw): two
 *      encodings of one table are the same text.
 *   5. errors: "<what> at <path>", the path from "value" with .name,
 *      ["other name"] (%q) and [i] (Lua indices): "cannot encode NaN at
 *      value.readings[3]". Checks on a table's keys come before anything
 *      inside it.
 * Nothing here raises or calls Lua code: metatables and fields are read
 * raw, error texts are built in C memory. */
#include "luajson.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "log.h"

#define MAX_DEPTH 64
#define ARRAY_MT "lume.json.array" /* in the registry: decoded arrays' metatable */

enum { JT_NONE, JT_ARRAY, JT_NULL };

typedef struct jenc {
    lua_State  *L;
    char       *p;          /* output */
    size_t      n, cap;
    bool        oom;
    bool        bytes;      /* strings byte for byte, not checked as UTF-8 */
    int         k_jsontype, k_metatable, k_name; /* stack slots of field names */
    int         depth;      /* tables around the value being written */
    const void *open[MAX_DEPTH + 1];     /* those tables, for cycles */
    struct {                             /* the path: each level's key */
        int         stack;  /* a string key's stack index, or 0: */
        lua_Integer i;      /* an integer key */
    } key[MAX_DEPTH + 2];
    char       *err;
} jenc;

static void put(jenc *b, const char *s, size_t n)
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

static void puts_(jenc *b, const char *s) { put(b, s, strlen(s)); }

/* ---- error texts (C memory: nothing here may raise) ---------------------- */

typedef struct {
    char  *p;
    size_t n, cap;
} sbuf;

static void sput(sbuf *o, const char *s, size_t n)
{
    if (!o->p && o->cap == (size_t)-1)
        return; /* out of memory earlier */
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 128;
        while (cap < o->n + n + 1)
            cap *= 2;
        char *q = realloc(o->p, cap);
        if (!q) {
            free(o->p);
            o->p = NULL;
            o->cap = (size_t)-1;
            return;
        }
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = 0;
}

static void sputs(sbuf *o, const char *s) { sput(o, s, strlen(s)); }

/* json.lua's show() of a string: Lua's %q, with "\<newline>" as "\n". */
static void sput_quoted(sbuf *o, const char *s, size_t len)
{
    sput(o, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char t[8];
        if (c == '"' || c == '\\') {
            t[0] = '\\';
            t[1] = (char)c;
            sput(o, t, 2);
        } else if (c == '\n') {
            sput(o, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) { /* iscntrl in the C locale */
            unsigned char next = i + 1 < len ? (unsigned char)s[i + 1] : 0;
            snprintf(t, sizeof t, next >= '0' && next <= '9' ? "\\%03d" : "\\%d", c);
            sputs(o, t);
        } else {
            sput(o, (const char *)&c, 1);
        }
    }
    sput(o, "\"", 1);
}

/* Lua's tostring() of a key that is not a string, without calling any
 * __tostring (nothing here runs Lua code). */
static void sput_value(sbuf *o, const jenc *b, int idx)
{
    lua_State *L = b->L;
    char t[64];
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(t, sizeof t, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
        } else {
            snprintf(t, sizeof t, LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, idx));
            if (t[strspn(t, "-0123456789")] == 0) /* looks like an int: Lua adds ".0" */
                strcat(t, ".0");
        }
        sputs(o, t);
        return;
    case LUA_TBOOLEAN: sputs(o, lua_toboolean(L, idx) ? "true" : "false"); return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        sput_quoted(o, s, n);
        return;
    }
    default: {
        const char *name = luaL_typename(L, idx);
        if (lua_getmetatable(L, idx)) {
            lua_pushvalue(L, b->k_name);
            if (lua_rawget(L, -2) == LUA_TSTRING)
                name = lua_tostring(L, -1); /* kept alive by the metatable */
            lua_pop(L, 2);
        }
        snprintf(t, sizeof t, "%s: %p", name, lua_topointer(L, idx));
        sputs(o, t);
    }
    }
}

/* Record the first error: what, then " at " and the path of the current
 * level. Returns -1. */
static int fail(jenc *b, const char *what)
{
    if (b->err)
        return -1;
    sbuf o = {0};
    sputs(&o, what);
    sputs(&o, " at value");
    for (int d = 1; d <= b->depth; d++) {
        if (!b->key[d].stack) {
            char t[32];
            snprintf(t, sizeof t, "[%lld]", (long long)b->key[d].i);
            sputs(&o, t);
            continue;
        }
        size_t n;
        const char *k = lua_tolstring(b->L, b->key[d].stack, &n);
        bool ident = n > 0 && !(k[0] >= '0' && k[0] <= '9');
        for (size_t i = 0; i < n && ident; i++)
            ident = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
                    (k[i] >= '0' && k[i] <= '9') || k[i] == '_';
        if (ident) {
            sput(&o, ".", 1);
            sput(&o, k, n);
        } else {
            sput(&o, "[", 1);
            sput_quoted(&o, k, n);
            sput(&o, "]", 1);
        }
    }
    b->err = o.p ? o.p : lume_strdupf("out of memory");
    return -1;
}

/* A failure about the value at idx: "<pre><tostring of it><post>". */
static int fail_with(jenc *b, const char *pre, int idx, const char *post)
{
    sbuf o = {0};
    sputs(&o, pre);
    sput_value(&o, b, idx);
    sputs(&o, post);
    int r = fail(b, o.p ? o.p : "out of memory");
    free(o.p);
    return r;
}

/* ---- the encoder ---------------------------------------------------------- */

/* How far the UTF-8 sequence at s[i] (of n bytes) goes: its length, or 0
 * when Lua's utf8.len (strict) would refuse it there. */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t n)
{
    unsigned c = s[i];
    size_t len;
    uint32_t cp, min;
    if (c < 0xc2 || c > 0xf4)
        return 0; /* a continuation byte, an overlong C0/C1, or past U+10FFFF */
    if (c < 0xe0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c < 0xf0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else {
        len = 4, cp = c & 0x07, min = 0x10000;
    }
    if (i + len > n)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int put_string(jenc *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    put(b, "\"", 1);
    size_t run = 0; /* bytes that go as they are, not yet written */
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++, i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = b->bytes ? 1 : utf8_seq(s, i, n);
            if (!len) {
                char what[80];
                snprintf(what, sizeof what,
                         "string is not valid UTF-8 (bad byte at position %zu)", i + 1);
                return fail(b, what);
            }
            run += len, i += len;
            continue;
        }
        put(b, str + i - run, run);
        run = 0;
        char esc[8];
        switch (c) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(b, esc);
        }
        i++;
    }
    put(b, str + n - run, run);
    put(b, "\"", 1);
    return 0;
}

/* "%lld" without printf's machinery (integers are most of a payload). */
static void put_int(jenc *b, long long v)
{
    char t[24];
    size_t i = sizeof t;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    do {
        t[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        t[--i] = '-';
    put(b, t + i, sizeof t - i);
}

static int put_number(jenc *b, lua_State *L, int idx)
{
    if (lua_isinteger(L, idx)) {
        put_int(b, (long long)lua_tointeger(L, idx));
        return 0;
    }
    double d = lua_tonumber(L, idx);
    if (isnan(d))
        return fail(b, "cannot encode NaN");
    if (isinf(d))
        return fail(b, d > 0 ? "cannot encode inf" : "cannot encode -inf");
    if (d == floor(d) && d >= -9.2233720368547758e18 && d < 9.2233720368547758e18) {
        put_int(b, (long long)d); /* integral: written as an integer */
        return 0;
    }
    char num[48]; /* the fewest of 14..17 significant digits that read back exactly */
    for (int prec = 14; prec <= 17; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, d);
        if (strtod(num, NULL) == d)
            break;
    }
    puts_(b, num);
    return 0;
}

/* The JSON type a table's metatable gives it, as getmetatable() shows the
 * metatable (its __metatable field when it has one). */
static int jsontype(jenc *b, int idx)
{
    lua_State *L = b->L;
    if (!lua_getmetatable(L, idx))
        return JT_NONE;
    lua_pushvalue(L, b->k_metatable);
    if (lua_rawget(L, -2) != LUA_TNIL)
        lua_remove(L, -2); /* a protected metatable: this is what shows */
    else
        lua_pop(L, 1);
    int jt = JT_NONE;
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pushvalue(L, b->k_jsontype);
        if (lua_rawget(L, -2) == LUA_TSTRING) {
            const char *t = lua_tostring(L, -1);
            jt = !strcmp(t, "array") ? JT_ARRAY : !strcmp(t, "null") ? JT_NULL : JT_NONE;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return jt;
}

static int encode(jenc *b, int idx);

/* The key at the top is the first of its class (wanted: string or not) in
 * the table's order; leaves it on the stack. */
static void first_key(lua_State *L, int idx, bool string)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if ((lua_type(L, -1) == LUA_TSTRING) == string)
            return;
    }
    lua_pushnil(L); /* cannot happen: the caller counted one */
}

static int encode_table(jenc *b, int idx, int jt)
{
    lua_State *L = b->L;
    const void *me = lua_topointer(L, idx);
    for (int d = 0; d < b->depth; d++)
        if (b->open[d] == me)
            return fail(b, "table contains a cycle");
    if (b->depth >= MAX_DEPTH) {
        char what[48];
        snprintf(what, sizeof what, "nesting deeper than %d", MAX_DEPTH);
        return fail(b, what);
    }
    if (!lua_checkstack(L, 8))
        return fail(b, "out of memory (Lua stack)");
    /* classify the keys */
    lua_Integer n = 0, strings = 0, ints = 0, maxint = 0;
    bool odd = false;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            ints++;
            if (lua_tointeger(L, -1) > maxint)
                maxint = lua_tointeger(L, -1);
        } else if (!odd) {
            odd = true;
            lua_pushvalue(L, -1); /* the first odd key, kept for the message */
            lua_insert(L, -2);
        }
    }
    int top = lua_gettop(L);
    bool array;
    if (odd) {
        char pre[64];
        snprintf(pre, sizeof pre, "table has a %s key ", luaL_typename(L, top));
        int r = fail_with(b, pre, top, " (JSON keys are strings)");
        lua_pop(L, 1);
        return r;
    } else if (jt == JT_ARRAY || (n > 0 && ints == n)) {
        if (strings > 0) {
            first_key(L, idx, true);
            int r = fail_with(b, "array table has a string key ", lua_gettop(L), "");
            lua_settop(L, top);
            return r;
        }
        if (maxint != n) {
            char what[128];
            snprintf(what, sizeof what,
                     "sparse array (key %lld, but only %lld elements); use json.null for holes",
                     (long long)maxint, (long long)n);
            return fail(b, what);
        }
        array = true;
    } else if (ints > 0) {
        first_key(L, idx, false);
        char what[96];
        snprintf(what, sizeof what, "table mixes string keys and the integer key %lld",
                 (long long)lua_tointeger(L, -1));
        lua_settop(L, top);
        return fail(b, what);
    } else {
        array = false;
    }

    b->open[b->depth++] = me;
    int d = b->depth;
    if (array) {
        put(b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                put(b, ",", 1);
            b->key[d].stack = 0;
            b->key[d].i = i;
            lua_rawgeti(L, idx, i);
            int r = encode(b, lua_gettop(L));
            lua_pop(L, 1);
            if (r < 0)
                return r;
        }
        put(b, "]", 1);
    } else {
        put(b, "{", 1);
        bool first = true;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (!first)
                put(b, ",", 1);
            first = false;
            b->key[d].stack = lua_gettop(L) - 1;
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen); /* a string: checked above */
            int r = put_string(b, k, klen);
            put(b, ":", 1);
            if (r == 0)
                r = encode(b, lua_gettop(L));
            lua_pop(L, 1);
            if (r < 0) {
                lua_pop(L, 1);
                return r;
            }
        }
        put(b, "}", 1);
    }
    b->depth--;
    return 0;
}

static int encode(jenc *b, int idx)
{
    lua_State *L = b->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: puts_(b, "null"); return 0;
    case LUA_TBOOLEAN: puts_(b, lua_toboolean(L, idx) ? "true" : "false"); return 0;
    case LUA_TNUMBER: return put_number(b, L, idx);
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(b, s, n);
    }
    case LUA_TTABLE: {
        int jt = jsontype(b, idx);
        if (jt == JT_NULL) {
            puts_(b, "null");
            return 0;
        }
        return encode_table(b, idx, jt);
    }
    default: {
        char what[64];
        snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
        return fail(b, what);
    }
    }
}

static char *encode_value(lua_State *L, int idx, bool bytes, size_t *len, char **err)
{
    jenc b = {.L = L, .bytes = bytes};
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    /* what allocates in Lua comes first, before any C memory is held: the
     * field names read raw from metatables */
    if (!lua_checkstack(L, 8)) {
        *err = lume_strdupf("out of memory (Lua stack)");
        return NULL;
    }
    lua_pushliteral(L, "__jsontype");
    b.k_jsontype = lua_gettop(L);
    lua_pushliteral(L, "__metatable");
    b.k_metatable = lua_gettop(L);
    lua_pushliteral(L, "__name");
    b.k_name = lua_gettop(L);
    int r = encode(&b, idx);
    lua_settop(L, top);
    if (r < 0 || b.oom) {
        free(b.p);
        *err = b.err ? b.err : lume_strdupf("out of memory");
        return NULL;
    }
    if (!b.p) /* cannot happen: every value writes something */
        b.p = calloc(1, 1);
    *len = b.n;
    return b.p;
}

char *lume_json_encode(lua_State *L, int idx, size_t *len, char **err)
{
    return encode_value(L, idx, false, len, err);
}

char *lume_json_encode_bytes(lua_State *L, int idx, size_t *len, char **err)
{
    return encode_value(L, idx, true, len, err);
}

/* ---- the decoder ---------------------------------------------------------- */

/* Push the metatable every decoded array gets ({__jsontype = "array"},
 * one per state, in the registry): so an empty [] encodes back as [], as
 * lume.json's decoder does. */
static void push_array_mt(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, ARRAY_MT) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, ARRAY_MT);
}

/* Push j; arrays get the metatable at index mt. */
static int push_item(lua_State *L, const cJSON *j, int depth, int mt)
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
        lua_pushvalue(L, mt);
        lua_setmetatable(L, -2);
        lua_Integer i = 0;
        for (const cJSON *c = j->child; c; c = c->next) {
            if (push_item(L, c, depth + 1, mt) < 0)
                return -1;
            lua_rawseti(L, -2, ++i);
        }
    } else if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, 4);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (push_item(L, c, depth + 1, mt) < 0)
                return -1;
            lua_setfield(L, -2, c->string);
        }
    } else
        return -1;
    return 0;
}

typedef struct json_push {
    const cJSON *j;
    int          r;
} json_push;

/* In a protected call: a memory error while building the tables must not
 * skip the cJSON_Delete of the parsed document (it would leak). */
static int json_push_body(lua_State *L)
{
    json_push *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    push_array_mt(L);
    c->r = push_item(L, c->j, 0, 1);
    return c->r == 0 ? 1 : 0;
}

int lume_json_push(lua_State *L, const char *s, size_t len, char **err)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!j) {
        *err = lume_strdupf("invalid JSON near byte %td", end ? end - s : (ptrdiff_t)0);
        return -EINVAL;
    }
    json_push c = {j, -1};
    lua_pushcfunction(L, json_push_body);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 1, 0);
    cJSON_Delete(j);
    if (st != LUA_OK)
        return lua_error(L); /* as before: the error goes on, nothing leaks */
    if (c.r < 0) {
        lua_pop(L, 1);
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
    push_array_mt(L);
    if (push_item(L, j, 0, top + 1) < 0) {
        lua_settop(L, top);
        lua_pushnil(L);
        return -EINVAL;
    }
    lua_remove(L, top + 1); /* the metatable, below the value */
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
