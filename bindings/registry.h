/* bindings/registry.h — the one callback registry of a script (registry.c). */
#ifndef LUME_REGISTRY_H
#define LUME_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

typedef struct lume_script lume_script;

/* registry.c — the one callback registry of a script. Every Lua function
 * that takes a callback (lume.on_sample, lume.timer.every/after,
 * lume.subscribe, lume.net.on, lume.twin.on_change) keeps it here, one
 * list per kind; the design, its invariants and how to add a kind are at
 * the top of registry.c. */
enum lume_cb_kind {
    LUME_CB_SAMPLE = 0, /* lume.on_sample        (l_lume.c)  */
    LUME_CB_TIMER,      /* lume.timer.every/after (l_timer.c) */
    LUME_CB_SUB,        /* lume.subscribe        (l_net.c)   */
    LUME_CB_NET,        /* lume.net.on           (l_net.c)   */
    LUME_CB_TWIN,       /* lume.twin.on_change   (l_twin.c)  */
    LUME_CB_KINDS
};

struct lume_script_timer; /* l_timer.c's own */

/* One registered callback. The fields before the union are the registry's;
 * the union is the kind's own data, filled by its module after
 * lume_cb_add (zeroed until then). */
typedef struct lume_cb {
    int      ref;       /* the function, in the script's Lua registry */
    bool     dead;      /* cancelled: dispatch skips it, the sweep releases it */
    uint64_t id;        /* its handle's; increasing along a list */
    union {
        struct {        /* LUME_CB_SAMPLE */
            unsigned channel;
            bool     batch;   /* receives (values, times) once per drain */
        };
        struct lume_script_timer *timer; /* LUME_CB_TIMER (owned) */
        struct {        /* LUME_CB_SUB */
            char *filter;     /* owned */
            int   qos;
        };
        int   event;    /* LUME_CB_NET: LUME_EV_* */
        char *key;      /* LUME_CB_TWIN (owned) */
    };
} lume_cb;

/* What a kind does beyond the registry's own bookkeeping; both may be NULL
 * and both must accept an entry whose kind data is still zeroed. */
typedef struct lume_cb_ops {
    /* The entry was cancelled (by its handle, or its script is going): stop
     * what it set going (a pending timer, a broker subscription). Called
     * once, at once, even in the middle of a dispatch. */
    void (*cancel)(lume_script *s, lume_cb *e);
    /* Free the kind's data. Called once, when the entry is released (at
     * cancel, or after the dispatch that saw it cancelled). */
    void (*release)(lume_cb *e);
} lume_cb_ops;

/* One kind's entries, ordered by id, contiguous for the dispatch loops. */
typedef struct lume_cb_list {
    lume_cb           *v;
    size_t             n, cap;
    size_t             dead;  /* entries in v cancelled and not yet released */
    unsigned           busy;  /* dispatch loops over v running now (they may nest) */
    const lume_cb_ops *ops;   /* set by the kind's first lume_cb_add */
} lume_cb_list;

/* The registry's functions (registry.c; the types are above). Handles: one userdata type per kind ("lume.handler",
 * "lume.timer", ...), with cancel(), active() and __close. */
/* Make every kind's handle metatable in L: once per script state. */
void     lume_cb_open(lua_State *L);
/* Register the function at index fn of L (the running script's state) as
 * a callback of kind, and push its handle. Returns the entry, its kind data
 * zeroed for the caller to fill; the pointer holds until the next add to
 * that kind. Raises (nothing registered) on a memory error. ops are the
 * kind's; the same for every add of a kind. */
lume_cb *lume_cb_add(lua_State *L, int kind, int fn, const lume_cb_ops *ops);
/* Push another handle of the entry id of kind (for a callback's own
 * arguments): cancel and active work through any handle of an entry. Raises
 * on a memory error: call it inside a protected call. */
void     lume_cb_push_handle(lua_State *L, int kind, uint64_t id);
/* The live (not cancelled) entry of kind with handle id, or NULL. */
lume_cb *lume_cb_find(lume_script *s, int kind, uint64_t id);
/* Cancel it: ops->cancel at once; released (luaL_unref, ops->release) at
 * once, or by the sweep when a dispatch is running over that kind. true
 * when it was live. */
bool     lume_cb_cancel(lume_script *s, int kind, uint64_t id);
/* Around a dispatch loop over s->cbs[kind].v (which may run Lua): entries
 * cancelled in between stay in v, dead, until the outermost leave releases
 * them. v may grow (realloc) during a call: loop by index, not pointer. */
void     lume_cb_enter(lume_script *s, int kind);
void     lume_cb_leave(lume_script *s, int kind);
/* The script is going: cancel and release every entry (before its state
 * closes), free the lists. */
void     lume_cb_clear(lume_script *s);
/* Live entries of kind, and its name in lume stats ("on_sample", "timers",
 * "subscriptions", "net", "twin"). */
size_t      lume_cb_count(const lume_script *s, int kind);
const char *lume_cb_kind_name(int kind);

#endif
