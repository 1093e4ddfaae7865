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

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "log.h"
#include "twin_host.h"
#include <cJSON.h>
#include <unistd.h>

#define PP_KEY "lume.repl.pp"
#define OUT_LIT(r, lit)  out_add(r, lit, sizeof lit - 1)   /* a string literal */
#define LINE_LIT(r, lit) out_line(r, lit, sizeof lit - 1)

struct lume_repl {
    lume_script *s;        /* the session's state (not in rt->scripts) */
    char        *pending;  /* the incomplete chunk */
    size_t       plen;
    char        *out;      /* this evaluation's output */
    size_t       olen, ocap;
    bool         cut;      /* out reached LUME_REPL_MAX_OUT */
    char        *hist;     /* chunks that ran without error */
    size_t       hlen;
    int          budget_ms, wall_ms;
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
        OUT_LIT(r, "\n");
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
            OUT_LIT(r, "\t");
        out_add(r, s, len);
        lua_pop(L, 1);
    }
    OUT_LIT(r, "\n");
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
    r->wall_ms = rt->cfg.sandbox.hang_limit_ms / 2;
    if (r->budget_ms > r->wall_ms)
        r->budget_ms = r->wall_ms;
    if (!s->name)
        goto fail_oom;
    s->L = lume_sandbox_new(s, err);
    if (!s->L)
        goto fail;
    lua_pushcfunction(s->L, open_session);
    lua_pushlightuserdata(s->L, r);
    if (lume_sandbox_eval(s, 1, r->budget_ms, r->wall_ms, "repl start") != LUA_OK) {
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
        OUT_LIT(r, "");
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
        LINE_LIT(r, "error: input longer than 1 MiB (the pending chunk was dropped)");
        return finish(r, LUME_REPL_ERROR, out);
    }
    char *p = realloc(r->pending, r->plen + len + 2 + 7);
    if (!p) {
        lume_repl_reset(r);
        LINE_LIT(r, "error: out of memory");
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
        LINE_LIT(r, "error: input contains a NUL byte");
        return finish(r, LUME_REPL_ERROR, out);
    }
    lua_settop(L, 0);
    if (!lua_checkstack(L, 8)) {
        lume_repl_reset(r);
        LINE_LIT(r, "error: out of memory");
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
                LINE_LIT(r, "error: memory limit reached (sandbox.memory_limit)");
            else if (msg)
                out_line(r, msg, n);
            lua_settop(L, 0);
            lume_repl_reset(r);
            return finish(r, LUME_REPL_ERROR, out);
        }
    }
    st = lume_sandbox_eval(r->s, 0, r->budget_ms, r->wall_ms, "repl");
    int rc = LUME_REPL_OK;
    if (st == LUA_OK) {
        int nres = lua_gettop(L);
        if (nres > 0) {
            if (lua_checkstack(L, 2)) {
                lua_getfield(L, LUA_REGISTRYINDEX, PP_KEY); /* no allocation */
                lua_insert(L, 1);
                st = lume_sandbox_eval(r->s, nres, r->budget_ms, r->wall_ms, "repl print");
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
        /* what .save keeps: statements as typed; an expression typed to
         * see its value (`6 * 7`, `=x`) is not a statement and is left out,
         * a call (`f(1)`) is both and kept, a `return` is left out (it
         * would end the saved script) */
        const char *w = p + strspn(p, " \t\r\n");
        bool ret = !strncmp(w, "return", 6) && !(isalnum((unsigned char)w[6]) || w[6] == '_');
        if (st == LUA_OK && !ret && lua_checkstack(L, 1)) { /* `=x` became "return x" */
            bool stmt = luaL_loadbufferx(L, p, r->plen, "=stdin", "t") == LUA_OK;
            lua_pop(L, 1);
            if (stmt)
                hist_add(r, p, r->plen);
        }
    }
    if (st != LUA_OK) {
        rc = LUME_REPL_ERROR;
        size_t n = 0;
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        if (st == LUA_ERRMEM)
            LINE_LIT(r, "error: memory limit reached (sandbox.memory_limit)");
        else if (msg)
            out_line(r, msg, n);
        else
            LINE_LIT(r, "error: (error object is not a string)");
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

/* ---- dot-commands ---------------------------------------------------------- *
 * What the prompt gives beyond Lua, for `lume repl` and the web console
 * alike. Each answers text; .watch and .tail are driven by the client (it
 * asks again for each redraw: `.watch` answers one reading, `.tail N` the
 * log lines after line N, headed "seq M"). */

#define DOT_HELP                                                                      \
    "Lua: type expressions (printed) or statements; an incomplete chunk continues\n"  \
    "on the next line. Ctrl-C stops a running evaluation, Ctrl-D leaves (lume keeps\n" \
    "running). Tab completes globals and fields.\n"                                   \
    "  .help                this text\n"                                              \
    "  .scripts             scripts: version, status, origin, last error\n"           \
    "  .reload NAME         reload a script from its file\n"                          \
    "  .watch SENSOR [HZ]   live readings, redrawn in place until a key is pressed\n" \
    "  .rate SENSOR HZ      set a sensor's sampling rate\n"                           \
    "  .twin                desired and reported properties, and the drift\n"         \
    "  .outbox              depth per lane, oldest message\n"                         \
    "  .log LEVEL           debug, info, warn or error\n"                             \
    "  .tail                follow the log until a key is pressed (the answer\n"    \
    "                       here: \"seq N\" then the lines; .tail N: those after N)\n"                  \
    "  .save NAME           write what ran without error to scripts/NAME.lua and\n"   \
    "                       load it as a script\n"

static int dot_fail(lume_repl *r, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int dot_fail(lume_repl *r, char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out_line(r, buf, n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    return finish(r, LUME_REPL_ERROR, out);
}

static void outf(lume_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(lume_repl *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n >= 0)
        out_add(r, s, (size_t)n);
    free(s);
}

static int sensor_of(lume_repl *r, const char *name, char **out)
{
    lume_runtime *rt = r->s->rt;
    int ch = name ? lume_sampler_find(rt->sampler, name) : -1;
    if (ch >= 0)
        return ch;
    OUT_LIT(r, "error: ");
    if (name)
        outf(r, "no sensor named '%s' on board %s", name, rt->cfg.board);
    else
        outf(r, "which sensor?");
    OUT_LIT(r, " (sensors:");
    size_t n = lume_sampler_count(rt->sampler);
    for (unsigned i = 0; i < n; i++)
        outf(r, " %s", lume_sampler_name(rt->sampler, i));
    OUT_LIT(r, ")\n");
    *out = NULL;
    return -1;
}

static void dot_scripts(lume_repl *r)
{
    lume_runtime *rt = r->s->rt;
    outf(r, "%-16s %-14s %-8s %-8s %s\n", "script", "version", "status", "origin", "errors");
    for (lume_script *s = rt->scripts; s; s = s->next) {
        char origin[64];
        if (s->managed)
            snprintf(origin, sizeof origin, "twin");
        else
            snprintf(origin, sizeof origin, "%s", s->path ? "file" : "string");
        outf(r, "%-16s %-14s %-8s %-8s %llu%s%s\n", s->name, s->version,
             lume_script_status_name(s->status), origin, (unsigned long long)s->errors,
             s->last_error ? "  last: " : "", s->last_error ? s->last_error : "");
    }
    if (!rt->scripts)
        outf(r, "(no scripts; %s is empty)\n", rt->cfg.scripts_dir);
}

static void print_json(lume_repl *r, const char *label, const cJSON *j)
{
    char *s = j ? cJSON_Print(j) : NULL;
    outf(r, "%s: %s\n", label, s ? s : "(none)");
    free(s);
}

static void dot_twin(lume_repl *r)
{
    lume_runtime *rt = r->s->rt;
    const cJSON *desired = lume_twin_host_desired(rt);
    char *rep = lume_twin_host_reported_json(rt);
    cJSON *reported = rep ? cJSON_Parse(rep) : NULL;
    free(rep);
    print_json(r, "desired", desired);
    print_json(r, "reported", reported);
    OUT_LIT(r, "drift:");
    int n = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, desired) {
        if (!k->string || k->string[0] == '$')
            continue;
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(reported, k->string);
        if (have && cJSON_Compare(k, have, true))
            continue;
        char *want = cJSON_PrintUnformatted(k);
        char *got = have ? cJSON_PrintUnformatted(have) : NULL;
        outf(r, "\n  %s: desired %s, reported %s", k->string, want ? want : "?",
             got ? got : "(nothing)");
        free(want);
        free(got);
        n++;
    }
    if (n)
        out_add(r, "\n", 1);
    else
        outf(r, " none (every desired key is reported as desired)\n");
    cJSON_Delete(reported);
}

typedef struct oldest_ctx {
    lume_outbox_msg first[LUME_LANES];
    bool            seen[LUME_LANES];
    unsigned        visited;
} oldest_ctx;

static int oldest_visit(void *ud, const lume_outbox_msg *m)
{
    oldest_ctx *c = ud;
    if (m->lane >= 0 && m->lane < LUME_LANES && !c->seen[m->lane]) {
        c->seen[m->lane] = true;
        c->first[m->lane].id = m->id;
        c->first[m->lane].created_ms = m->created_ms;
        c->first[m->lane].topic = strdup(m->topic ? m->topic : "");
        c->first[m->lane].len = m->len;
    }
    return ++c->visited >= 100000; /* a scan of a huge outbox stops here */
}

static void dot_outbox(lume_repl *r)
{
    lume_runtime *rt = r->s->rt;
    lume_outbox_stats st;
    lume_outbox_get_stats(rt->outbox, &st);
    oldest_ctx c;
    memset(&c, 0, sizeof c);
    lume_outbox_dump(rt->outbox, oldest_visit, &c);
    int64_t now = lume_wall_ms();
    outf(r, "%-10s %8s %10s  %s\n", "lane", "depth", "bytes", "oldest message");
    for (int l = 0; l < LUME_LANES; l++) {
        outf(r, "%-10s %8llu %10llu  ", lume_lane_name(l), (unsigned long long)st.depth[l],
             (unsigned long long)st.bytes[l]);
        if (c.seen[l])
            outf(r, "#%llu %s (%zu bytes, %.1f s old)\n", (unsigned long long)c.first[l].id,
                 c.first[l].topic ? c.first[l].topic : "?", c.first[l].len,
                 (double)(now - c.first[l].created_ms) / 1000.0);
        else
            outf(r, "%s\n", st.depth[l] ? "(not yet committed)" : "-");
        free(c.first[l].topic);
    }
    outf(r, "pending (accepted, not yet durable): %llu; in flight: %llu\n",
         (unsigned long long)st.pending, (unsigned long long)st.inflight);
}

static int dot_save(lume_repl *r, const char *name, char **out)
{
    lume_runtime *rt = r->s->rt;
    if (!name || !lume_script_name_valid(name))
        return dot_fail(r, out, "error: .save NAME: letters, digits, _ and - (at most 64)");
    if (!r->hlen)
        return dot_fail(r, out, "error: nothing to save yet (only chunks that ran without "
                                "error are kept)");
    char *why = lume_scripts_managed_why(rt, name);
    if (why) {
        int rc = dot_fail(r, out, "error: %s", why);
        free(why);
        return rc;
    }
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s.lua", rt->cfg.scripts_dir, name);
    snprintf(tmp, sizeof tmp, "%s.repl-tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fwrite(r->hist, 1, r->hlen, f) == r->hlen;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dot_fail(r, out, "error: cannot write %s: %s", path, strerror(e));
    }
    char *err = NULL;
    if (lume_scripts_install(rt, name, path, r->hist, r->hlen, &err) < 0) {
        int rc = dot_fail(r, out, "error: saved %s but it did not load: %s", path,
                          err ? err : "?");
        free(err);
        return rc;
    }
    free(err);
    lume_script *s = lume_scripts_find(rt, name);
    outf(r, "saved %zu bytes to %s; script %s loaded (version %s)\n", r->hlen, path, name,
         s ? s->version : "?");
    return finish(r, LUME_REPL_OK, out);
}

int lume_repl_dot(lume_repl *r, const char *line, char **out)
{
    r->olen = 0;
    r->cut = false;
    lume_runtime *rt = r->s->rt;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line[0] == '.' ? line + 1 : line);
    char *save = NULL;
    char *cmd = strtok_r(buf, " \t\r\n", &save);
    char *a1 = cmd ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    char *a2 = a1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    if (!cmd || !strcmp(cmd, "help")) {
        out_add(r, DOT_HELP, sizeof DOT_HELP - 1);
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "scripts")) {
        dot_scripts(r);
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "reload")) {
        if (!a1)
            return dot_fail(r, out, "error: .reload NAME (see .scripts)");
        char *err = NULL;
        if (lume_scripts_reload(rt, a1, &err) < 0) {
            int rc = dot_fail(r, out, "error: %s", err ? err : "reload failed");
            free(err);
            return rc;
        }
        lume_script *s = lume_scripts_find(rt, a1);
        outf(r, "reloaded %s (version %s, %s)\n", a1, s ? s->version : "?",
             s ? lume_script_status_name(s->status) : "?");
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "watch")) { /* one reading; the client redraws */
        int ch = sensor_of(r, a1, out);
        if (ch < 0)
            return finish(r, LUME_REPL_ERROR, out);
        double v;
        int64_t t;
        int32_t st;
        const char *unit = lume_sampler_unit(rt->sampler, (unsigned)ch);
        double hz = lume_sampler_rate(rt->sampler, (unsigned)ch);
        if (lume_sampler_last(rt->sampler, (unsigned)ch, &v, &t, &st) < 0)
            outf(r, "%s: no reading yet (%.3g Hz)\n", a1, hz);
        else if (st != 0)
            outf(r, "%s: read failed: %s (%.3g Hz)\n", a1, strerror(-st), hz);
        else
            outf(r, "%s = %.6g %s  (%.3g Hz, %.0f ms ago)\n", a1, v, unit ? unit : "", hz,
                 (double)(lume_mono_ns() - t) / 1e6);
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "rate")) {
        int ch = sensor_of(r, a1, out);
        if (ch < 0)
            return finish(r, LUME_REPL_ERROR, out);
        char *end = NULL;
        double hz = a2 ? strtod(a2, &end) : 0;
        if (!a2 || *end || !(hz > 0) || !isfinite(hz))
            return dot_fail(r, out, "error: .rate %s HZ: HZ must be a positive number", a1);
        double applied = 0;
        lume_sampler_set_rate(rt->sampler, (unsigned)ch, hz, &applied);
        double lo, hi;
        lume_sampler_bounds(rt->sampler, (unsigned)ch, &lo, &hi);
        outf(r, "%s: %.6g Hz%s\n", a1, applied,
             applied != hz ? " (clamped to the board's bounds)" : "");
        (void)lo;
        (void)hi;
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "twin")) {
        dot_twin(r);
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "outbox")) {
        dot_outbox(r);
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "log")) {
        int lv = a1 ? lume_log_level_parse(a1) : -1;
        if (lv < 0)
            return dot_fail(r, out, "error: .log LEVEL: debug, info, warn or error (now %s)",
                            lume_log_level_name(atomic_load(&rt->log.level)));
        lume_log_target_set_level(&rt->log, lv);
        outf(r, "log level %s\n", lume_log_level_name(lv));
        return finish(r, LUME_REPL_OK, out);
    }
    if (!strcmp(cmd, "save"))
        return dot_save(r, a1, out);
    if (!strcmp(cmd, "tail")) { /* "seq N\n" then the lines after SEQ (none: the last 10) */
        uint64_t seq = a1 ? strtoull(a1, NULL, 10) : 0;
        char *lines = lume_log_tail(&rt->log, &seq, a1 ? -1 : 10);
        outf(r, "seq %llu\n", (unsigned long long)seq);
        if (lines)
            out_add(r, lines, strlen(lines));
        free(lines);
        return finish(r, LUME_REPL_OK, out);
    }
    return dot_fail(r, out, "error: unknown command .%s (.help lists them)", cmd);
}
