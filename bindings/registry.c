/* bindings/registry.c — the one callback registry of a script.
 *
 * Every Lua function that takes a callback keeps it here: lume.on_sample,
 * lume.timer.every/after, lume.subscribe, lume.net.on, lume.twin.on_change.
 * A registration is an entry in one list per kind (s->cbs[kind]): the
 * function's reference in the script's Lua registry, the id of its handle,
 * a dead flag, and the kind's own data (a channel, a timer, a filter, ...).
 * The Lua side of every kind is the same handle type, one metatable per
 * kind so a handle says what it is:
 *
 *   h:cancel() -> bool   (true when it was live; also __close)
 *   h:active() -> bool
 *
 * and dropping a handle does not cancel (scripts often drop it); unloading
 * the script cancels everything.
 *
 * Life of an entry:
 *
 *     lume_cb_add ──► live ──cancel──► dead ──sweep──► released
 *                       │     (ops->cancel    (luaL_unref, ops->release,
 *                       │      at once)        removed from v)
 *                       └── cancel while no dispatch runs over its kind:
 *                           dead and released in the same call
 *
 * Invariants:
 *   1. v is ordered by id (ids only grow, entries are appended, removal
 *      keeps the order), so a handle finds its entry by binary search.
 *   2. While a dispatch loop runs over a kind (busy > 0, between
 *      lume_cb_enter and lume_cb_leave) no entry leaves v: the loop indexes
 *      v while the Lua it calls cancels and adds. The outermost leave
 *      releases what was cancelled meanwhile. Adds may move v (realloc),
 *      so dispatch loops hold indices, never pointers, across a call.
 *   3. Every entry is released exactly once: its reference is unref'd and
 *      ops->release called (at cancel, at the sweep, or at unload); so
 *      20,000 create+cancel cycles leave the Lua registry as they found it.
 *   4. ops->cancel runs exactly once per entry, when it becomes dead, before
 *      anything else can fire it (a cancelled timer never fires; a
 *      cancelled subscription is dropped from the session at once when no
 *      other live entry wants its filter).
 *   5. Dispatch costs what it did before the registry: each kind's entries
 *      are one contiguous array of 32-byte entries, read by index with the
 *      same tests (dead, and the kind's own) as the arrays they replaced.
 *
 * Adding a Lua module that takes callbacks touches its own file, plus one
 * kind here: a LUME_CB_* value in registry.h (and a member in lume_cb's union
 * when its data does not fit the existing ones — a pointer to its own
 * struct, as timers do), and a row in `kinds` below (its name in lume
 * stats, its handle's metatable). The module calls lume_cb_add (which
 * pushes the handle), fills its data, and runs its callbacks with
 * lume_cb_enter / loop by index skipping dead entries / lume_cb_leave.
 * Its lume_cb_ops say what a cancel stops and what release frees. */
#include "registry.h"
#include "sandbox.h"
#include "script.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

static const struct {
    const char *name;   /* in lume stats, per script: handlers.<name> */
    const char *mt;     /* the handle's metatable (tostring, type errors) */
} kinds[LUME_CB_KINDS] = {
    [LUME_CB_SAMPLE] = {"on_sample", "lume.handler"},
    [LUME_CB_TIMER] = {"timers", "lume.timer"},
    [LUME_CB_SUB] = {"subscriptions", "lume.subscription"},
    [LUME_CB_NET] = {"net", "lume.listener"},
    [LUME_CB_TWIN] = {"twin", "lume.twin.listener"},
};

typedef struct {
    uint64_t id;
} handle;

const char *lume_cb_kind_name(int kind)
{
    return kind >= 0 && kind < LUME_CB_KINDS ? kinds[kind].name : "?";
}

size_t lume_cb_count(const lume_script *s, int kind)
{
    const lume_cb_list *l = &s->cbs[kind];
    return l->n - l->dead;
}

/* The index of the entry with id in l (dead or not), or l->n. */
static size_t index_of(const lume_cb_list *l, uint64_t id)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo].id == id ? lo : l->n;
}

lume_cb *lume_cb_find(lume_script *s, int kind, uint64_t id)
{
    lume_cb_list *l = &s->cbs[kind];
    size_t i = index_of(l, id);
    return i < l->n && !l->v[i].dead ? &l->v[i] : NULL;
}

/* The entry's reference and its kind's data go (invariant 3). */
static void release(lume_script *s, lume_cb_list *l, lume_cb *e)
{
    if (s->L)
        luaL_unref(s->L, LUA_REGISTRYINDEX, e->ref);
    e->ref = LUA_NOREF;
    if (l->ops && l->ops->release)
        l->ops->release(e);
}

/* Release the dead entries of l and close the gaps (order kept). */
static void sweep(lume_script *s, lume_cb_list *l)
{
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].dead) {
            release(s, l, &l->v[i]);
            continue;
        }
        if (i != j)
            l->v[j] = l->v[i];
        j++;
    }
    l->n = j;
    l->dead = 0;
}

lume_cb *lume_cb_add(lua_State *L, int kind, int fn, const lume_cb_ops *ops)
{
    lume_script *s = lume_script_of(L);
    lume_cb_list *l = &s->cbs[kind];
    fn = lua_absindex(L, fn);
    luaL_checktype(L, fn, LUA_TFUNCTION);
    /* everything that can fail comes before the entry exists */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        lume_cb *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            luaL_error(L, "out of memory");
            return NULL;
        }
        l->v = v;
        l->cap = cap;
    }
    uint64_t id = s->next_id++;
    lume_cb_push_handle(L, kind, id);
    lua_pushvalue(L, fn);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    l->ops = ops;
    lume_cb *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    e->ref = ref;
    e->id = id;
    return e;
}

void lume_cb_push_handle(lua_State *L, int kind, uint64_t id)
{
    handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->id = id;
    luaL_setmetatable(L, kinds[kind].mt);
}

bool lume_cb_cancel(lume_script *s, int kind, uint64_t id)
{
    lume_cb_list *l = &s->cbs[kind];
    size_t i = index_of(l, id);
    if (i == l->n || l->v[i].dead)
        return false;
    lume_cb *e = &l->v[i];
    e->dead = true;
    l->dead++;
    if (l->ops && l->ops->cancel)
        l->ops->cancel(s, e);
    if (l->busy)
        return true; /* the sweep at the outermost leave releases it */
    release(s, l, e);
    memmove(e, e + 1, (l->n - i - 1) * sizeof *e);
    l->n--;
    l->dead--;
    return true;
}

void lume_cb_enter(lume_script *s, int kind) { s->cbs[kind].busy++; }

void lume_cb_leave(lume_script *s, int kind)
{
    lume_cb_list *l = &s->cbs[kind];
    if (l->busy > 0) /* a script that joined the list mid-dispatch was never entered */
        l->busy--;
    if (l->busy == 0 && l->dead)
        sweep(s, l);
}

void lume_cb_clear(lume_script *s)
{
    for (int k = 0; k < LUME_CB_KINDS; k++) {
        lume_cb_list *l = &s->cbs[k];
        for (size_t i = 0; i < l->n; i++) {
            lume_cb *e = &l->v[i];
            if (!e->dead && l->ops && l->ops->cancel) {
                e->dead = true;
                l->ops->cancel(s, e);
            }
            e->dead = true;
        }
        l->dead = l->n;
        sweep(s, l);
        free(l->v);
        memset(l, 0, sizeof *l);
    }
}

/* ---- the handles ---------------------------------------------------------- */

// Lua: h:cancel() -> bool (whether it was live); also __close
static int l_cancel(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(1));
    handle *h = luaL_checkudata(L, 1, kinds[kind].mt);
    lua_pushboolean(L, lume_cb_cancel(lume_script_of(L), kind, h->id));
    return 1;
}

// Lua: h:active() -> bool
static int l_active(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(1));
    handle *h = luaL_checkudata(L, 1, kinds[kind].mt);
    lua_pushboolean(L, lume_cb_find(lume_script_of(L), kind, h->id) != NULL);
    return 1;
}

/* A handle going away does not cancel its callback. */
static int l_gc(lua_State *L)
{
    (void)L;
    return 0;
}

static const luaL_Reg methods[] = {{"cancel", l_cancel}, {"active", l_active}, {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__close", l_cancel}, {NULL, NULL}};

void lume_cb_open(lua_State *L)
{
    for (int k = 0; k < LUME_CB_KINDS; k++) {
        luaL_newmetatable(L, kinds[k].mt);
        lua_pushinteger(L, k);
        luaL_setfuncs(L, meta, 1);
        luaL_newlibtable(L, methods);
        lua_pushinteger(L, k);
        luaL_setfuncs(L, methods, 1);
        lua_setfield(L, -2, "__index");
        lua_pop(L, 1);
    }
}
