/* bindings/pattern.c — lume's own matcher behind string.find, string.match,
 * string.gmatch and string.gsub in a script's state.
 *
 * Why it exists: a script's CPU budget is enforced by Lua's count hook, which
 * only fires between Lua instructions. Lua's own matcher (lstrlib.c) is one C
 * call that can backtrack for minutes — string.find(("a"):rep(300),
 * "a*a*a*a*a*a*a*b") — and while it runs the hook never fires and the
 * device's whole event loop stands still. This matcher speaks exactly Lua
 * 5.4's pattern language with exactly its results and error messages, and
 * every few thousand steps it calls lume_sandbox_check(), which raises the
 * script's "CPU budget exceeded" once the watchdog has declared the call over
 * budget.
 *
 * How it matches: a backtracking matcher over the pattern text, with no
 * compilation step. pm_match() walks the pattern item by item; it recurses
 * for what must be undone on failure (a capture opening or closing, each
 * length a quantifier tries, an optional item) and loops for the rest. Errors
 * are lazy, as in lstrlib: a malformed piece raises only when the matcher
 * reaches it, so string.find("abc", "x[") is nil, not an error.
 *
 * Steps: work is charged to pm_state.steps — each pm_match frame (so each
 * backtrack) for the pattern bytes it went through, each quantifier for the
 * run of bytes it measured, and bulk work (a %b scan, a back-reference
 * comparison, a plain find's candidates, gsub's copying) for its length.
 * When the count runs out, pm_tick() refills it and, in a script's state,
 * checks the budget (in the config chunk's state, its deadline: see
 * lume_sandbox_set_deadline). A normal call pays one subtraction and one branch per
 * frame and per run.
 *
 * Invariants:
 *  1. The matcher owns no memory. Its state lives on the C stack (pm_state),
 *     in a gmatch iterator's userdata, or in a luaL_Buffer, all of which Lua
 *     reclaims, so any error — budget, malformed pattern, memory — may
 *     longjmp out of any step without leaking.
 *  2. Results and errors are Lua 5.4's, down to which error a pattern raises
 *     first. Where this file and lstrlib.c differ in shape (a table for the
 *     character classes, memmem for long plain needles, a loop per kind of
 *     item in max_expand), the observable result is the same.
 *  3. Recursion is at most PM_MAXDEPTH (200, lstrlib's MAXCCALLS) pm_match
 *     frames deep; deeper raises "pattern too complex", at the same point as
 *     Lua does.
 *  4. Between two budget checks the matcher does at most about PM_STEPS
 *     steps' worth of work, whatever the pattern and subject, give or take
 *     one bulk charge, which is bounded by the subject's length (a plain
 *     find of a needle over 32 bytes is memmem: linear, never checked).
 *     Frames charge when they return: a frame's own work, apart from its
 *     children's, is bounded by the pattern's length.
 *  5. Subject and pattern are Lua strings, so a NUL follows their last byte.
 *     The matcher reads that NUL where lstrlib does (a frontier or %b at the
 *     subject's end, the byte after an item or after a '%'), never further.
 *
 * Character classes follow the C library's <ctype.h> in the locale current
 * when the first state is built (lume never calls setlocale: the "C" locale),
 * as Lua's do; they are looked up in a table built once.
 */
#include "pattern.h"
#include "sandbox.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "check.h"

#define PM_ESC         '%'
#define PM_SPECIALS    "^$*+?.([%-"
#define PM_MAXCAPTURES 32     /* lstrlib's LUA_MAXCAPTURES */
#define PM_MAXDEPTH    200    /* lstrlib's MAXCCALLS */
#define PM_STEPS       4096   /* steps between two budget checks */
#define PM_WIDE        32     /* a set this long costs more than a step per test */

/* A capture's length while it is open, or for a position capture `()`. */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION   (-2)

#if defined(__GNUC__)
#define PM_COLD __attribute__((noinline, cold))
#else
#define PM_COLD
#endif

typedef unsigned char uchar;

/* ---- character classes ---------------------------------------------------- */

enum {
    CL_ALPHA = 1 << 0, CL_CNTRL = 1 << 1, CL_DIGIT = 1 << 2, CL_GRAPH = 1 << 3,
    CL_LOWER = 1 << 4, CL_PUNCT = 1 << 5, CL_SPACE = 1 << 6, CL_UPPER = 1 << 7,
    CL_ALNUM = 1 << 8, CL_XDIGIT = 1 << 9,
    CL_ZERO = 1 << 10,        /* %z, the NUL byte: deprecated since 5.2, still in 5.4 */
    CL_NEGATE = 1 << 15,      /* an upper-case class letter: the complement */
};

static uint16_t char_classes[256];  /* the classes each byte belongs to */
static uint16_t class_letter[256];  /* after '%': its class (| CL_NEGATE), 0 if none */
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

static void build_classes(void)
{
    for (int c = 0; c < 256; c++) {
        uint16_t k = 0;
        k |= isalpha(c) ? CL_ALPHA : 0;
        k |= iscntrl(c) ? CL_CNTRL : 0;
        k |= isdigit(c) ? CL_DIGIT : 0;
        k |= isgraph(c) ? CL_GRAPH : 0;
        k |= islower(c) ? CL_LOWER : 0;
        k |= ispunct(c) ? CL_PUNCT : 0;
        k |= isspace(c) ? CL_SPACE : 0;
        k |= isupper(c) ? CL_UPPER : 0;
        k |= isalnum(c) ? CL_ALNUM : 0;
        k |= isxdigit(c) ? CL_XDIGIT : 0;
        k |= c == 0 ? CL_ZERO : 0;
        char_classes[c] = k;

        uint16_t cl;
        switch (tolower(c)) {
        case 'a': cl = CL_ALPHA; break;
        case 'c': cl = CL_CNTRL; break;
        case 'd': cl = CL_DIGIT; break;
        case 'g': cl = CL_GRAPH; break;
        case 'l': cl = CL_LOWER; break;
        case 'p': cl = CL_PUNCT; break;
        case 's': cl = CL_SPACE; break;
        case 'u': cl = CL_UPPER; break;
        case 'w': cl = CL_ALNUM; break;
        case 'x': cl = CL_XDIGIT; break;
        case 'z': cl = CL_ZERO; break;
        default: cl = 0; break;
        }
        if (cl && isupper(c))
            cl |= CL_NEGATE;
        class_letter[c] = cl;
    }
}

/* Does byte c match `%cl`? A letter that names no class stands for itself. */
static inline bool match_class(int c, int cl)
{
    unsigned k = class_letter[cl];
    if (!k)
        return cl == c;
    return ((char_classes[c] & k) != 0) != ((k & CL_NEGATE) != 0);
}

/* ---- matcher state and steps ---------------------------------------------- */

typedef struct pm_capture {
    const char *init;
    ptrdiff_t   len;          /* or CAP_UNFINISHED, CAP_POSITION */
} pm_capture;

typedef struct pm_state {
    const char *src_init;     /* the subject: [src_init, src_end), NUL at src_end */
    const char *src_end;
    const char *p_end;        /* the pattern's end (a NUL there too) */
    lua_State  *L;
    ptrdiff_t   steps;        /* left before the next budget check */
    int         depth;        /* pm_match frames left (invariant 3) */
    int         level;        /* captures opened so far */
    bool        budget;       /* a script's state: check its CPU budget */
    pm_capture  cap[PM_MAXCAPTURES];
} pm_state;

static void pm_prepare(pm_state *ms, lua_State *L, bool budget, const char *s, size_t ls,
                       const char *p, size_t lp)
{
    ms->L = L;
    ms->budget = budget;
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->p_end = p + lp;
    ms->steps = PM_STEPS;
    ms->depth = PM_MAXDEPTH;
    ms->level = 0;
}

/* Before each match attempt: no captures, full depth (the step count runs on). */
static inline void pm_reset(pm_state *ms)
{
    ms->level = 0;
    ms->depth = PM_MAXDEPTH;
}

/* The step count ran out: refill it, and check the budget (which may raise). */
static PM_COLD void pm_tick(pm_state *ms)
{
    ms->steps = PM_STEPS;
    if (ms->budget)
        lume_sandbox_check(ms->L);
}

static inline void pm_charge(pm_state *ms, ptrdiff_t n)
{
    if ((ms->steps -= n) <= 0)
        pm_tick(ms);
}

/* ---- pattern items -------------------------------------------------------- */

/* p starts an item; returns just past its character class (single char,
 * `%x` or `[set]`), where a quantifier may follow. */
static const char *class_end(pm_state *ms, const char *p)
{
    char c = *p++;
    if (c == PM_ESC) {
        if (p == ms->p_end)
            luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (*p == '^')
            p++;
        /* the first byte of a set is a member even when it is ']' */
        do {
            if (p == ms->p_end)
                luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*p++ == PM_ESC && p < ms->p_end)
                p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

/* Is byte c in the set that opens at p ('[') and closes at ec (']')? */
static bool in_set(int c, const char *p, const char *ec)
{
    bool member = true;
    if (p[1] == '^') {
        member = false;
        p++;
    }
    while (++p < ec) {
        if (*p == PM_ESC) {
            p++;
            if (match_class(c, (uchar)*p))
                return member;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((uchar)p[-2] <= c && c <= (uchar)*p)
                return member;
        } else if ((uchar)*p == c) {
            return member;
        }
    }
    return !member;
}

/* Does the byte at s match the item [p, ep)? Never past the subject's end. */
static inline bool single(const pm_state *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return false;
    int c = (uchar)*s;
    switch (*p) {
    case '.':
        return true;
    case PM_ESC:
        return match_class(c, (uchar)p[1]);
    case '[':
        return in_set(c, p, ep - 1);
    default:
        return (uchar)*p == c;
    }
}

/* ---- the matcher ---------------------------------------------------------- */

static const char *pm_match(pm_state *ms, const char *s, const char *p);

/* `%bxy` at s; p points at x. */
static const char *match_balance(pm_state *ms, const char *s, const char *p)
{
    if (p >= ms->p_end - 1)
        luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (*s != *p)
        return NULL;
    char opener = p[0], closer = p[1];
    const char *start = s;
    int nesting = 1;
    while (++s < ms->src_end) {
        if (*s == closer) {
            if (--nesting == 0) {
                pm_charge(ms, s - start);
                return s + 1;
            }
        } else if (*s == opener) {
            nesting++;
        }
    }
    pm_charge(ms, s - start);
    return NULL;
}

/* The capture a back reference `%d` names (d is the digit's byte). */
static int capture_ref(pm_state *ms, int d)
{
    int l = d - '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
        return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    return l;
}

static const char *match_backref(pm_state *ms, const char *s, int d)
{
    int l = capture_ref(ms, d);
    size_t len = (size_t)ms->cap[l].len;  /* a position capture: huge, never matches */
    if ((size_t)(ms->src_end - s) < len)
        return NULL;
    pm_charge(ms, 1 + (ptrdiff_t)(len >> 4));
    if (memcmp(ms->cap[l].init, s, len) != 0)
        return NULL;
    return s + len;
}

/* The innermost capture still open, which `)` closes. */
static int capture_to_close(pm_state *ms)
{
    for (int l = ms->level - 1; l >= 0; l--)
        if (ms->cap[l].len == CAP_UNFINISHED)
            return l;
    return luaL_error(ms->L, "invalid pattern capture");
}

static const char *open_capture(pm_state *ms, const char *s, const char *p, ptrdiff_t what)
{
    int l = ms->level;
    if (l >= PM_MAXCAPTURES)
        luaL_error(ms->L, "too many captures");
    ms->cap[l].init = s;
    ms->cap[l].len = what;
    ms->level = l + 1;
    const char *r = pm_match(ms, s, p);
    if (!r)
        ms->level--;
    return r;
}

static const char *close_capture(pm_state *ms, const char *s, const char *p)
{
    int l = capture_to_close(ms);
    ms->cap[l].len = s - ms->cap[l].init;
    const char *r = pm_match(ms, s, p);
    if (!r)
        ms->cap[l].len = CAP_UNFINISHED;
    return r;
}

/* `x*` (and `x+` after its first x): the longest run first, then shorter. */
static const char *max_expand(pm_state *ms, const char *s, const char *p, const char *ep)
{
    /* the run's length, with one loop per kind of item (single() unrolled) */
    ptrdiff_t n = 0, avail = ms->src_end - s;
    switch (*p) {
    case '.':
        n = avail;
        break;
    case PM_ESC: {
        int cl = (uchar)p[1];
        while (n < avail && match_class((uchar)s[n], cl))
            n++;
        break;
    }
    case '[':
        if (ep - p < PM_WIDE) {
            while (n < avail && in_set((uchar)s[n], p, ep - 1))
                n++;
        } else {              /* a long set: each test costs more */
            while (n < avail && in_set((uchar)s[n], p, ep - 1)) {
                n++;
                pm_charge(ms, (ep - p) / PM_WIDE);
            }
        }
        break;
    default:
        while (n < avail && s[n] == *p)
            n++;
        break;
    }
    pm_charge(ms, n);
    for (; n >= 0; n--) {
        const char *r = pm_match(ms, s + n, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* `x-`: the shortest run first, then one more x at a time. */
static const char *min_expand(pm_state *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t wide = (ep - p) / PM_WIDE;  /* 0 but for a long set */
    for (;;) {
        const char *r = pm_match(ms, s, ep + 1);
        if (r)
            return r;
        if (wide)
            pm_charge(ms, wide);
        if (!single(ms, s, p, ep))
            return NULL;
        s++;
    }
}

/* Match pattern p (up to ms->p_end) at subject position s: the end of the
 * match, or NULL. */
static const char *pm_match(pm_state *ms, const char *s, const char *p)
{
    const char *p0 = p;
    if (ms->depth-- == 0)
        luaL_error(ms->L, "pattern too complex");
    while (p != ms->p_end) {
        const char *ep;
        switch (*p) {
        case '(':
            if (p[1] == ')')
                s = open_capture(ms, s, p + 2, CAP_POSITION);
            else
                s = open_capture(ms, s, p + 1, CAP_UNFINISHED);
            goto out;
        case ')':
            s = close_capture(ms, s, p + 1);
            goto out;
        case '$':
            if (p + 1 == ms->p_end) {   /* an anchor only at the very end */
                if (s != ms->src_end)
                    s = NULL;
                goto out;
            }
            break;
        case PM_ESC:
            if (p[1] == 'b') {
                s = match_balance(ms, s, p + 2);
                if (!s)
                    goto out;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (*p != '[')
                    luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                ep = class_end(ms, p);
                int before = s == ms->src_init ? 0 : (uchar)s[-1];
                int at = (uchar)*s;     /* the NUL at the subject's end */
                bool edge = !in_set(before, p, ep - 1) && in_set(at, p, ep - 1);
                p = ep;
                if (edge)
                    continue;
                s = NULL;
                goto out;
            }
            if (p[1] >= '0' && p[1] <= '9') {
                s = match_backref(ms, s, (uchar)p[1]);
                if (!s)
                    goto out;
                p += 2;
                continue;
            }
            break;
        default:
            break;
        }

        /* a single-character item, perhaps quantified */
        ep = class_end(ms, p);
        if (!single(ms, s, p, ep)) {
            if (*ep == '*' || *ep == '?' || *ep == '-') {  /* zero of them will do */
                p = ep + 1;
                continue;
            }
            p = ep;           /* (for the charge: the item was read) */
            s = NULL;
            goto out;
        }
        switch (*ep) {
        case '?': {
            const char *r = pm_match(ms, s + 1, ep + 1);
            if (r) {
                s = r;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        case '+':
            s = max_expand(ms, s + 1, p, ep);
            goto out;
        case '*':
            s = max_expand(ms, s, p, ep);
            goto out;
        case '-':
            s = min_expand(ms, s, p, ep);
            goto out;
        default:
            s++;
            p = ep;
            continue;
        }
    }
out:
    ms->depth++;
    pm_charge(ms, 1 + (p - p0));  /* this frame's own work: the items it went through */
    return s;
}

/* ---- captures to Lua ------------------------------------------------------ */

/* Capture i of the match [s, e): its bytes in *str and their count; for a
 * position capture, the position is pushed and CAP_POSITION returned. With
 * no captures, capture 0 is the whole match. */
static ptrdiff_t capture_get(pm_state *ms, int i, const char *s, const char *e,
                             const char **str)
{
    if (i >= ms->level) {
        if (i != 0)
            luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        *str = s;
        return e - s;
    }
    ptrdiff_t len = ms->cap[i].len;
    *str = ms->cap[i].init;
    if (len == CAP_UNFINISHED)
        luaL_error(ms->L, "unfinished capture");
    else if (len == CAP_POSITION)
        lua_pushinteger(ms->L, (ms->cap[i].init - ms->src_init) + 1);
    return len;
}

static void push_capture(pm_state *ms, int i, const char *s, const char *e)
{
    const char *str;
    ptrdiff_t len = capture_get(ms, i, s, e, &str);
    if (len != CAP_POSITION)
        lua_pushlstring(ms->L, str, (size_t)len);
}

/* Push the captures of the match [s, e) — or the whole match when the pattern
 * has none and s is given. Returns how many. */
static int push_captures(pm_state *ms, const char *s, const char *e)
{
    int n = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(ms, i, s, e);
    return n;
}

/* ---- find and match ------------------------------------------------------- */

/* A 1-based start position: negative counts from the end, 0 and anything
 * before the start clamp to 1 (lstrlib's posrelatI). */
static size_t start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return (size_t)((lua_Integer)len + pos) + 1;
}

/* Does p hold a magic character? (It may hold NULs: look past each.) */
static bool has_specials(const char *p, size_t lp)
{
    size_t at = 0;
    do {
        if (strpbrk(p + at, PM_SPECIALS))
            return true;
        at += strlen(p + at) + 1;
    } while (at <= lp);
    return false;
}

/* The first [p, p + lp) in [s, s + ls), or NULL. A short needle the way Lua
 * looks for it (memchr for its first byte, then memcmp; the fastest on the
 * short subjects scripts search), charging each candidate; a long one with
 * memmem, which is linear in the subject and needs no interrupting. */
static const char *find_plain(pm_state *ms, const char *s, size_t ls, const char *p, size_t lp)
{
    if (lp == 0)
        return s;
    if (lp > ls)
        return NULL;
    if (lp > 32)
        return memmem(s, ls, p, lp);
    const char *last = s + (ls - lp);   /* the last place it could start */
    while (s <= last) {
        const char *hit = memchr(s, *p, (size_t)(last - s) + 1);
        if (!hit)
            return NULL;
        if (memcmp(hit + 1, p + 1, lp - 1) == 0)
            return hit;
        pm_charge(ms, 1 + ((hit - s) >> 4));
        s = hit + 1;
    }
    return NULL;
}

static int find_or_match(lua_State *L, bool find, bool budget)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    pm_state ms;
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        ms.L = L;             /* all find_plain needs of it: the step count */
        ms.budget = budget;
        ms.steps = PM_STEPS;
        const char *hit = find_plain(&ms, s + init, ls - init, p, lp);
        if (hit) {
            lua_pushinteger(L, (hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    pm_prepare(&ms, L, budget, s, ls, p, lp);
    bool anchor = *p == '^';
    if (anchor)
        p++;                  /* ms.p_end stays */
    const char *start = s + init;
    do {
        pm_reset(&ms);
        const char *e = pm_match(&ms, start, p);
        lume_check(ms.depth == PM_MAXDEPTH, "invariant 3: every frame gave its level back");
        if (e) {
            if (!find)
                return push_captures(&ms, start, e);
            lua_pushinteger(L, (start - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&ms, NULL, NULL) + 2;
        }
    } while (start++ < ms.src_end && !anchor);
    luaL_pushfail(L);
    return 1;
}


/* ---- gmatch --------------------------------------------------------------- */

/* A gmatch iterator's state: a userdata, upvalue 3 of the iterator (1 and 2
 * are the subject and the pattern, which keep the pointers below alive). */
typedef struct pm_iter {
    pm_state    ms;
    const char *src;          /* where the next search starts */
    const char *p;
    const char *lastmatch;    /* end of the previous match: an empty match there is skipped */
} pm_iter;

static int gmatch_next(lua_State *L)
{
    pm_iter *it = lua_touserdata(L, lua_upvalueindex(3));
    it->ms.L = L;             /* the iterator may run in another coroutine */
    for (const char *src = it->src; src <= it->ms.src_end; src++) {
        pm_reset(&it->ms);
        const char *e = pm_match(&it->ms, src, it->p);
        if (e && e != it->lastmatch) {
            it->src = it->lastmatch = e;
            return push_captures(&it->ms, src, e);
        }
    }
    return 0;
}

static int gmatch_new(lua_State *L, bool budget)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    lua_settop(L, 2);
    pm_iter *it = lua_newuserdatauv(L, sizeof *it, 0);
    if (init > ls)
        init = ls + 1;        /* past the end: the iterator finds nothing */
    pm_prepare(&it->ms, L, budget, s, ls, p, lp);
    it->src = s + init;
    it->p = p;
    it->lastmatch = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* ---- gsub ----------------------------------------------------------------- */

/* Append the replacement string (argument 3) for the match [s, e), with its
 * %0-%9 and %% expanded. */
static void add_template(pm_state *ms, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ms->L;
    size_t l;
    const char *t = lua_tolstring(L, 3, &l);
    const char *esc;
    pm_charge(ms, (ptrdiff_t)(l >> 4));
    while ((esc = memchr(t, PM_ESC, l)) != NULL) {
        luaL_addlstring(b, t, (size_t)(esc - t));
        esc++;                /* a trailing '%' sees the string's NUL */
        if (*esc == PM_ESC) {
            luaL_addchar(b, PM_ESC);
        } else if (*esc == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
            pm_charge(ms, (e - s) >> 4);
        } else if (*esc >= '1' && *esc <= '9') {
            const char *cap;
            ptrdiff_t len = capture_get(ms, *esc - '1', s, e, &cap);
            if (len == CAP_POSITION) {
                luaL_addvalue(b);
            } else {
                luaL_addlstring(b, cap, (size_t)len);
                pm_charge(ms, len >> 4);
            }
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", PM_ESC);
        }
        l -= (size_t)(esc + 1 - t);
        t = esc + 1;
    }
    luaL_addlstring(b, t, l);
}

/* Append the replacement for the match [s, e); tr is argument 3's type.
 * Returns whether it changed anything (false: nil or false kept the match). */
static bool add_replacement(pm_state *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = ms->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(ms, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_template(ms, b, s, e);
        return true;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return true;
}

static int gsub_all(lua_State *L, bool budget)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                            tr == LUA_TTABLE, 3, "string/function/table");
    bool anchor = *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    const char *lastmatch = NULL;
    lua_Integer n = 0;
    bool changed = false;
    pm_state ms;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    pm_prepare(&ms, L, budget, src, ls, p, lp);
    while (n < max_n) {
        pm_reset(&ms);
        const char *e = pm_match(&ms, src, p);
        if (e && e != lastmatch) {
            n++;
            changed = add_replacement(&ms, &b, src, e, tr) || changed;
            src = lastmatch = e;
        } else if (src < ms.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);  /* nothing replaced: the subject itself */
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ---- installing ----------------------------------------------------------- */

/* The functions come in two sets, light C functions both: the sandbox's,
 * which check the budget, and the others (lume_pattern_push). */

// Lua: string.find(s, pattern [, init [, plain]]) -> start, end, captures... | nil
static int pm_find(lua_State *L)
{
    return find_or_match(L, true, true);
}

// Lua: string.match(s, pattern [, init]) -> captures... | whole match | nil
static int pm_match_str(lua_State *L)
{
    return find_or_match(L, false, true);
}

// Lua: string.gmatch(s, pattern [, init]) -> iterator over the matches' captures
// As in Lua 5.4, a '^' in the pattern is an ordinary character here.
static int pm_gmatch(lua_State *L)
{
    return gmatch_new(L, true);
}

// Lua: string.gsub(s, pattern, repl [, n]) -> string, count
// repl: a string with %0-%9 and %%, a table indexed by the first capture, or
// a function of the captures; nil or false from a table or function keeps
// the match as it was.
static int pm_gsub(lua_State *L)
{
    return gsub_all(L, true);
}

static int pm_find_nocheck(lua_State *L)
{
    return find_or_match(L, true, false);
}

static int pm_match_nocheck(lua_State *L)
{
    return find_or_match(L, false, false);
}

static int pm_gmatch_nocheck(lua_State *L)
{
    return gmatch_new(L, false);
}

static int pm_gsub_nocheck(lua_State *L)
{
    return gsub_all(L, false);
}

static const luaL_Reg sandbox_funcs[] = {
    {"find", pm_find}, {"match", pm_match_str}, {"gmatch", pm_gmatch}, {"gsub", pm_gsub},
    {NULL, NULL}};
static const luaL_Reg nocheck_funcs[] = {
    {"find", pm_find_nocheck}, {"match", pm_match_nocheck}, {"gmatch", pm_gmatch_nocheck},
    {"gsub", pm_gsub_nocheck}, {NULL, NULL}};

/* Set the four functions into the table at the top. */
static void set_funcs(lua_State *L, bool budget)
{
    pthread_once(&classes_once, build_classes);
    luaL_setfuncs(L, budget ? sandbox_funcs : nocheck_funcs, 0);
}

int lume_pattern_install(lua_State *L)
{
    int done = 0;
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
            set_funcs(L, true);
            done++;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    if (lua_getglobal(L, LUA_STRLIBNAME) == LUA_TTABLE) {
        set_funcs(L, true);
        done++;
    }
    lua_pop(L, 1);
    return done ? 0 : -ENOENT;
}

void lume_pattern_push(lua_State *L)
{
    lua_createtable(L, 0, 4);
    set_funcs(L, false);
}
