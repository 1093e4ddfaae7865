/* bindings/repl.c — the REPL evaluator (repl.h): one sandboxed Lua state per
 * session, lines in, text out.
 *
 * A line's life (as lua.c's doREPL):
 *
 *              line
 *               │ appended to the pending chunk ("=x" at its start: "return x")
 *               ▼
 *   ┌────────────────────────┐  "return " .. chunk compiles (first line only)
 *   │ COMPILE                │ ─────────────────────────────────────────┐
 *   └────────────────────────┘                                          │
 *     │ chunk compiles   │ syntax error at <eof>   │ other syntax error   │
 *     │                  ▼                         ▼                      │
 *     │          MORE: chunk kept,        ERROR: message out,             │
 *     │          continuation prompt      chunk dropped                   │
 *     ▼                                                                   ▼
 *   RUN (lume_sandbox_eval: CPU budget, memory cap, interruptible) ◄──────┘
 *     │ ok: print() output, then the results through the pretty-printer
 *     │     (itself run under the budget: a huge table cannot hang)
 *     │ error: print() output, then the message and its traceback
 *     ▼
 *   chunk dropped; if it ran without error its text joins the history
 *   (what .save writes)
 *
 * Invariants:
 *   1. Every host call that can allocate on the session's state runs
 *      protected (lua_load is; results are printed by lume_sandbox_eval),
 *      so the memory cap never reaches Lua's panic.
 *   2. out never grows past LUME_REPL_MAX_OUT (print output is cut, with a
 *      note), the pending chunk past LUME_REPL_MAX_CHUNK (an error).
 */
#include "repl.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "scripts.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"

#define PP_KEY "lume.repl.pp"

struct lume_repl {
    lume_script *s;        /* the session's state (not in rt->scripts) */
    char        *pending;  /* the incomplete chunk */
    size_t       plen;
    char        *out;      /* this evaluation's output */
    size_t       olen, ocap;
    bool         cut;      /* out reached LUME_REPL_MAX_OUT */
    char        *hist;     /* chunks that ran without error */
    size_t       hlen;
    int          budget_ms;
};

/* The pretty-printer: results of one evaluation -> one string. Top-level
 * strings print raw (as lua.c does), nested ones quoted; tables to depth
 * MAXD, MAXN entries each, cycles shown. */
static const char PP_SRC[] =
    "local MAXD, MAXN = 3, 100\n"
    "local fmt, sort, concat, rep = string.format, table.sort, table.concat, string.rep\n"
    "local function key(k)\n"
    "  if type(k) == 'string' and k:match('^[%a_][%w_]*$') then return k end\n"
    "  if type(k) == 'string' then return '[' .. fmt('%q', k) .. ']' end\n"
    "  return '[' .. tostring(k) .. ']'\n"
    "end\n"
    "local pp\n"
    "function pp(v, depth, seen)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return fmt('%q', v):gsub('\\\\\\n', '\\\\n') end\n"
    "  if t ~= 'table' then return tostring(v) end\n"
    "  if seen[v] then return '<cycle>' end\n"
    "  if depth >= MAXD then return next(v) == nil and '{}' or '{...}' end\n"
    "  seen[v] = true\n"
    "  local parts, n, keys = {}, #v, {}\n"
    "  for i = 1, n do\n"
    "    if #parts >= MAXN then break end\n"
    "    parts[#parts + 1] = pp(v[i], depth + 1, seen)\n"
    "  end\n"
    "  for k in next, v do\n"
    "    if not (math.type(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end\n"
    "  end\n"
    "  sort(keys, function(a, b)\n"
    "    local ta, tb = type(a), type(b)\n"
    "    if ta ~= tb then return ta < tb end\n"
    "    if ta == 'number' or ta == 'string' then return a < b end\n"
    "    return tostring(a) < tostring(b)\n"
    "  end)\n"
    "  local more = 0\n"
    "  for _, k in ipairs(keys) do\n"
    "    if #parts >= MAXN then more = more + 1\n"
    "    else parts[#parts + 1] = key(k) .. ' = ' .. pp(v[k], depth + 1, seen) end\n"
    "  end\n"
    "  if n > MAXN then more = more + n - MAXN end\n"
    "  if more > 0 then parts[#parts + 1] = fmt('... (%d more)', more) end\n"
    "  seen[v] = nil\n"
    "  if #parts == 0 then return '{}' end\n"
    "  local flat = '{ ' .. concat(parts, ', ') .. ' }'\n"
    "  if #flat <= 72 and not flat:find('\\n', 1, true) then return flat end\n"
    "  local ind = rep('  ', depth + 1)\n"
    "  return '{\\n' .. ind .. concat(parts, ',\\n' .. ind) .. '\\n' .. rep('  ', depth) .. '}'\n"
    "end\n"
    "return function(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    out[i] = type(v) == 'string' and v or pp(v, 0, {})\n"
    "  end\n"
    "  return concat(out, '\\t')\n"
    "end\n";

/* ---- output ---------------------------------------------------------------- */

static void out_add(lume_repl *r, const char *p, size_t n)
{
    if (r->cut)
        return;
    if (r->olen + n > LUME_REPL_MAX_OUT) {
        n = LUME_REPL_MAX_OUT - r->olen;
        r->cut = true;
    }
    if (r->olen + n + 64 > r->ocap) {
        size_t cap = r->ocap ? r->ocap : 256;
        while (cap < r->olen + n + 64)
            cap *= 2;
        char *o = realloc(r->out, cap);
        if (!o) {
            r->cut = true;
            return;
        }
        r->out = o;
        r->ocap = cap;
    }
    memcpy(r->out + r->olen, p, n);
    r->olen += n;
    if (r->cut) {
        static const char note[] = "\n... (output cut at 1 MiB)\n";
        memcpy(r->out + r->olen, note, sizeof note - 1);
        r->olen += sizeof note - 1;
    }
    r->out[r->olen] = 0;
}

static void out_line(lume_repl *r, const char *p, size_t n)
{
    out_add(r, p, n);
    if (!n || p[n - 1] != '\n')
        out_add(r, "\n", 1);
}

// Lua: print(...)  -> tostring of each argument, tab-separated, shown at the prompt
static int repl_print(lua_State *L)
{
    lume_repl *r = lua_touserdata(L, lua_upvalueindex(1));
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            out_add(r, "\t", 1);
        out_add(r, s, len);
        lua_pop(L, 1);
    }
    out_add(r, "\n", 1);
    return 0;
}

static int open_session(lua_State *L)
{
    lume_repl *r = lua_touserdata(L, 1);
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, repl_print, 1);
    lua_setglobal(L, "print");
    if (luaL_loadbufferx(L, PP_SRC, sizeof PP_SRC - 1, "=repl", "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, PP_KEY);
    return 0;
}

lume_repl *lume_repl_new(lume_runtime *rt, char **err)
{
    lume_repl *r = calloc(1, sizeof *r);
    lume_script *s = calloc(1, sizeof *s);
    if (!r || !s) {
        free(r);
        free(s);
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    r->s = s;
    s->rt = rt;
    s->name = strdup("repl");
    s->status = LUME_SCRIPT_RUNNING;
    s->next_id = 1;
    snprintf(s->version, sizeof s->version, "repl");
    r->budget_ms = LUME_REPL_BUDGET_MS;
    if (r->budget_ms > rt->cfg.sandbox.hang_limit_ms / 2)
        r->budget_ms = rt->cfg.sandbox.hang_limit_ms / 2;
    if (!s->name)
        goto fail_oom;
    s->L = lume_sandbox_new(s, err);
    if (!s->L)
        goto fail;
    lua_pushcfunction(s->L, open_session);
    lua_pushlightuserdata(s->L, r);
    if (lume_sandbox_eval(s, 1, r->budget_ms, "repl start") != LUA_OK) {
        *err = lume_strdupf("cannot start the REPL: %s", lua_tostring(s->L, -1));
        goto fail;
    }
    lua_settop(s->L, 0);
    return r;
fail_oom:
    *err = lume_strdupf("out of memory");
fail:
    lume_script_free(s);
    free(r);
    return NULL;
}

void lume_repl_free(lume_repl *r)
{
    if (!r)
        return;
    lume_script_free(r->s); /* closes its state under the hang limit */
    free(r->pending);
    free(r->out);
    free(r->hist);
    free(r);
}

void lume_repl_reset(lume_repl *r)
{
    free(r->pending);
    r->pending = NULL;
    r->plen = 0;
}

const char *lume_repl_history(lume_repl *r, size_t *len)
{
    *len = r->hlen;
    return r->hist ? r->hist : "";
}

void lume_repl_interrupt(lume_repl *r)
{
    lume_sandbox_interrupt(r->s);
}

/* ---- evaluation ------------------------------------------------------------ */

static bool incomplete(lua_State *L, int st)
{
    if (st != LUA_ERRSYNTAX)
        return false;
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    static const char eof[] = "<eof>";
    return msg && len >= sizeof eof - 1 && !strcmp(msg + len - (sizeof eof - 1), eof);
}

static int finish(lume_repl *r, int rc, char **out)
{
    if (!r->out)
        out_add(r, "", 0);
    *out = r->out;
    r->out = NULL;
    r->olen = r->ocap = 0;
    r->cut = false;
    if (!*out)
        *out = strdup("");
    return rc;
}

static void hist_add(lume_repl *r, const char *src, size_t n)
{
    char *h = realloc(r->hist, r->hlen + n + 2);
    if (!h)
        return;
    r->hist = h;
    memcpy(h + r->hlen, src, n);
    r->hlen += n;
    if (!n || src[n - 1] != '\n')
        h[r->hlen++] = '\n';
    h[r->hlen] = 0;
}

int lume_repl_eval(lume_repl *r, const char *line, size_t len, char **out)
{
    lua_State *L = r->s->L;
    r->olen = 0;
    r->cut = false;
    bool first = r->plen == 0;
    if (r->plen + len + 2 > LUME_REPL_MAX_CHUNK) {
        lume_repl_reset(r);
        out_line(r, "error: input longer than 1 MiB (the pending chunk was dropped)", 62);
        return finish(r, LUME_REPL_ERROR, out);
    }
    char *p = realloc(r->pending, r->plen + len + 2 + 7);
    if (!p) {
        lume_repl_reset(r);
        out_line(r, "error: out of memory", 20);
        return finish(r, LUME_REPL_ERROR, out);
    }
    r->pending = p;
    if (r->plen)
        p[r->plen++] = '\n';
    if (first && len && line[0] == '=') { /* "=expr", as Lua 5.1's prompt */
        memcpy(p, "return ", 7);
        memcpy(p + 7, line + 1, len - 1);
        r->plen = 7 + len - 1;
    } else {
        memcpy(p + r->plen, line, len);
        r->plen += len;
    }
    p[r->plen] = 0;
    if (memchr(p, 0, r->plen)) {
        lume_repl_reset(r);
        out_line(r, "error: input contains a NUL byte", 32);
        return finish(r, LUME_REPL_ERROR, out);
    }
    lua_settop(L, 0);
    if (!lua_checkstack(L, 8)) {
        lume_repl_reset(r);
        out_line(r, "error: out of memory", 20);
        return finish(r, LUME_REPL_ERROR, out);
    }
    int st = LUA_ERRSYNTAX;
    if (first) { /* a bare expression? (lua.c's addreturn) */
        char *ret = malloc(r->plen + 8);
        if (ret) {
            memcpy(ret, "return ", 7);
            memcpy(ret + 7, p, r->plen);
            st = luaL_loadbufferx(L, ret, r->plen + 7, "=stdin", "t");
            free(ret);
            if (st != LUA_OK)
                lua_pop(L, 1);
        }
    }
    if (st != LUA_OK) {
        st = luaL_loadbufferx(L, p, r->plen, "=stdin", "t");
        if (st != LUA_OK) {
            if (incomplete(L, st)) {
                lua_settop(L, 0);
                return finish(r, LUME_REPL_MORE, out);
            }
            size_t n;
            const char *msg = lua_tolstring(L, -1, &n);
            if (st == LUA_ERRMEM)
                out_line(r, "error: memory limit reached (sandbox.memory_limit)", 50);
            else if (msg)
                out_line(r, msg, n);
            lua_settop(L, 0);
            lume_repl_reset(r);
            return finish(r, LUME_REPL_ERROR, out);
        }
    }
    st = lume_sandbox_eval(r->s, 0, r->budget_ms, "repl");
    int rc = LUME_REPL_OK;
    if (st == LUA_OK) {
        int nres = lua_gettop(L);
        if (nres > 0) {
            if (lua_checkstack(L, 2)) {
                lua_getfield(L, LUA_REGISTRYINDEX, PP_KEY); /* no allocation */
                lua_insert(L, 1);
                st = lume_sandbox_eval(r->s, nres, r->budget_ms, "repl print");
            } else {
                st = LUA_ERRMEM;
            }
            if (st == LUA_OK) {
                size_t n;
                const char *s = lua_tolstring(L, -1, &n);
                if (s)
                    out_line(r, s, n);
            }
        }
        if (st == LUA_OK)
            hist_add(r, p, r->plen);
    }
    if (st != LUA_OK) {
        rc = LUME_REPL_ERROR;
        size_t n = 0;
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        if (st == LUA_ERRMEM)
            out_line(r, "error: memory limit reached (sandbox.memory_limit)", 50);
        else if (msg)
            out_line(r, msg, n);
        else
            out_line(r, "error: (error object is not a string)", 37);
    }
    lua_settop(L, 0);
    lume_repl_reset(r);
    lua_gc(L, LUA_GCSTEP, 0);
    return finish(r, rc, out);
}

/* ---- completion ------------------------------------------------------------ */

typedef struct complete_ctx {
    const char *path;   /* "a.b." part, up to and including the last . or : */
    size_t      plen;
    const char *word;   /* the partial last part */
    char      **c;
    size_t      n, cap;
    bool        oom;
} complete_ctx;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Raw lookups only: nothing the user defined runs (no __index). */
static int do_complete(lua_State *L)
{
    complete_ctx *c = lua_touserdata(L, 1);
    lua_pushglobaltable(L);
    const char *p = c->path, *end = c->path + c->plen;
    while (p < end) {
        const char *q = p;
        while (q < end && *q != '.' && *q != ':')
            q++;
        if (!lua_istable(L, -1))
            return 0;
        lua_pushlstring(L, p, (size_t)(q - p));
        lua_rawget(L, -2);
        lua_remove(L, -2);
        p = q + 1;
    }
    if (!lua_istable(L, -1))
        return 0;
    size_t wlen = strlen(c->word);
    unsigned steps = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) && steps++ < 100000 && c->n < 1000) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen);
            bool ident = klen > 0 && !(k[0] >= '0' && k[0] <= '9');
            for (size_t i = 0; i < klen && ident; i++)
                ident = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
                        (k[i] >= '0' && k[i] <= '9') || k[i] == '_';
            if (ident && klen >= wlen && !memcmp(k, c->word, wlen)) {
                if (c->n == c->cap) {
                    size_t cap = c->cap ? c->cap * 2 : 16;
                    char **nc = realloc(c->c, cap * sizeof *nc);
                    if (!nc) {
                        c->oom = true;
                        lua_pop(L, 2);
                        break;
                    }
                    c->c = nc;
                    c->cap = cap;
                }
                char *s = malloc(c->plen + klen + 1);
                if (!s) {
                    c->oom = true;
                    lua_pop(L, 2);
                    break;
                }
                memcpy(s, c->path, c->plen);
                memcpy(s + c->plen, k, klen + 1);
                c->c[c->n++] = s;
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

void lume_repl_free_cands(char **cands, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cands[i]);
    free(cands);
}

int lume_repl_complete(lume_repl *r, const char *prefix, char ***cands, size_t *n)
{
    *cands = NULL;
    *n = 0;
    /* the identifier path at the end of prefix: [A-Za-z0-9_.:]* */
    size_t len = strlen(prefix), start = len;
    while (start > 0) {
        char ch = prefix[start - 1];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '_' || ch == '.' || ch == ':')
            start--;
        else
            break;
    }
    const char *path = prefix + start;
    const char *last = NULL;
    for (const char *q = path; *q; q++)
        if (*q == '.' || *q == ':')
            last = q;
    complete_ctx c = {.path = path, .plen = last ? (size_t)(last - path) + 1 : 0,
                      .word = last ? last + 1 : path};
    lua_State *L = r->s->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, do_complete);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 0, 0); /* raw gets only: no Lua code runs */
    lua_settop(L, 0);
    if (c.oom || st == LUA_ERRMEM) {
        lume_repl_free_cands(c.c, c.n);
        return -ENOMEM;
    }
    if (c.n)
        qsort(c.c, c.n, sizeof *c.c, cmp_str);
    *cands = c.c;
    *n = c.n;
    return 0;
}
