/* bindings/l_timer.c — lume.timer: callbacks on the loop's lws timers.
 *
 *   local t = lume.timer.every(1000, function(now, t) ... end)  -- period in ms
 *   lume.timer.after(500, fn)                                    -- once
 *   t:cancel()   t:active() -> bool
 *
 * The callback gets the wall-clock time it fires at, in seconds (lume.now(),
 * the clock of samples' t), and a handle of its own timer, so a timer can
 * cancel itself without an upvalue declared before it.
 *
 * The timer belongs to the script, not to the handle: dropping the handle
 * keeps it running (a script usually does not keep it); `local t <close>`
 * cancels it at the end of the scope. Unloading the script cancels all.
 * Each timer is a registry entry (registry.c) of kind LUME_CB_TIMER whose
 * data is a malloc'd timer: the loop's timer needs an address that stays
 * put while the registry's array moves. */
#include "modules.h"
#include "registry.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "loop.h"
#include "sim.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"

typedef struct lume_script_timer {
    lume_timer   t;          /* first: fire() gets it */
    lume_script *script;
    uint64_t     id;         /* its registry entry */
    int64_t      period_us;  /* 0 = one-shot */
} timer;

/* Cancelled: it never fires again. */
static void cancel(lume_script *s, lume_cb *e)
{
    if (e->timer && !lume_sim_cancel(s->rt, &e->timer->t))
        lume_timer_cancel(&e->timer->t);
}

/* On the loop's timers, or on the runtime's simulated clock (sim.h). */
static void arm(timer *t, int64_t us)
{
    if (!lume_sim_arm(t->script->rt, &t->t, us))
        lume_timer_start(&t->t, us);
}

static void release(lume_cb *e)
{
    free(e->timer);
    e->timer = NULL;
}

static const lume_cb_ops timer_ops = {cancel, release};

typedef struct fire_args {
    int      ref;
    uint64_t id;
    double   now;
} fire_args;

/* Inside the protected call: fn(now, handle); the handle may not fit the
 * script's memory, which is then the script's error. */
static int push_fire(lua_State *L, void *ud)
{
    fire_args *a = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
    lua_pushnumber(L, a->now);
    lume_cb_push_handle(L, LUME_CB_TIMER, a->id);
    return 2;
}

static void fire(lume_timer *lt)
{
    timer *t = (timer *)lt;
    lume_script *s = t->script;
    bool periodic = t->period_us > 0;
    if (s->status != LUME_SCRIPT_RUNNING) {
        /* a parked version (kept during a new one's soak) keeps its timers
         * ticking without running them, so a rollback resumes them */
        if (s->status == LUME_SCRIPT_PARKED && periodic)
            arm(t, t->period_us);
        return;
    }
    lume_cb *e = lume_cb_find(s, LUME_CB_TIMER, t->id);
    if (!e) /* cannot happen: a cancelled timer is stopped */
        return;
    fire_args a = {e->ref, t->id, lume_ns_seconds(lume_rt_wall_ns(s->rt))};
    lume_cb_enter(s, LUME_CB_TIMER); /* t and the ref stay until the leave */
    if (periodic)
        arm(t, t->period_us);
    else /* a one-shot is over as it fires: inactive inside its own callback */
        lume_cb_cancel(s, LUME_CB_TIMER, a.id);
    lume_sandbox_pcall(s, push_fire, &a, s->rt->cfg.sandbox.cpu_budget_ms,
                       periodic ? "timer.every" : "timer.after");
    lume_cb_leave(s, LUME_CB_TIMER); /* may free t */
}

static int make(lua_State *L, bool periodic)
{
    lume_script *s = lume_script_of(L);
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, ms >= 1 && ms <= 86400000.0 * 365, 1,
                  "interval must be between 1 ms and a year");
    lume_cb *e = lume_cb_add(L, LUME_CB_TIMER, 2, &timer_ops); /* pushes the handle */
    timer *t = calloc(1, sizeof *t);
    if (!t) {
        lume_cb_cancel(s, LUME_CB_TIMER, e->id);
        return luaL_error(L, "out of memory");
    }
    lume_timer_init(&t->t, s->rt->loop, fire, t);
    lume_timer_name(&t->t, "lume.timer");
    t->script = s;
    t->id = e->id;
    t->period_us = periodic ? (int64_t)(ms * 1000) : 0;
    e->timer = t;
    arm(t, (int64_t)(ms * 1000));
    return 1;
}

// Lua: lume.timer.every(ms, fn) -> timer   fn(now, timer): now in seconds, as lume.now()   (t:cancel(), t:active(), <close>: registry.c)
static int l_every(lua_State *L) { return make(L, true); }
// Lua: lume.timer.after(ms, fn) -> timer
static int l_after(lua_State *L) { return make(L, false); }

static const luaL_Reg funcs[] = {{"every", l_every}, {"after", l_after}, {NULL, NULL}};

int lume_open_timer(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
