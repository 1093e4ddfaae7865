/* bindings/l_timer.c — lume.timer: callbacks on the loop's lws timers.
 *
 *   local t = lume.timer.every(1000, function() ... end)  -- period in ms
 *   lume.timer.after(500, fn)                              -- once
 *   t:cancel()   t:active() -> bool
 *
 * The timer belongs to the script, not to the handle: dropping the handle
 * keeps it running (a script usually does not keep it); `local t <close>`
 * cancels it at the end of the scope. Unloading the script cancels all. */
#include "host.h"

#include <stdlib.h>

#define TIMER_MT "lume.timer"

typedef struct {
    uint64_t id;
} timer_ud;

static void release(lume_script *s, lume_script_timer *t)
{
    for (lume_script_timer **pp = &s->timers; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    lume_timer_cancel(&t->t);
    luaL_unref(s->L, LUA_REGISTRYINDEX, t->ref);
    free(t);
}

static void fire(lume_timer *lt)
{
    lume_script_timer *t = (lume_script_timer *)lt;
    lume_script *s = t->script;
    if (s->status != LUME_SCRIPT_RUNNING) {
        /* a parked version (kept during a new one's soak) keeps its timers
         * ticking without running them, so a rollback resumes them */
        if (s->status == LUME_SCRIPT_PARKED && t->period_us > 0)
            lume_timer_start(&t->t, t->period_us);
        return;
    }
    if (t->period_us > 0)
        lume_timer_start(&t->t, t->period_us);
    else
        t->dead = true;
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, t->ref);
    t->firing = true;
    lume_sandbox_call(s, 0, s->rt->cfg.sandbox.cpu_budget_ms,
                      t->period_us > 0 ? "timer.every" : "timer.after");
    t->firing = false;
    if (t->dead) /* one-shot, or cancelled from its own callback */
        release(s, t);
}

static int make(lua_State *L, bool periodic)
{
    lume_script *s = lume_script_of(L);
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, ms >= 1 && ms <= 86400000.0 * 365, 1,
                  "interval must be between 1 ms and a year");
    lume_script_timer *t = calloc(1, sizeof *t);
    if (!t)
        return luaL_error(L, "out of memory");
    lume_timer_init(&t->t, s->rt->loop, fire, t);
    t->script = s;
    lua_pushvalue(L, 2);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->period_us = periodic ? (int64_t)(ms * 1000) : 0;
    t->id = s->next_id++;
    t->next = s->timers;
    s->timers = t;
    lume_timer_start(&t->t, (int64_t)(ms * 1000));
    timer_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->id = t->id;
    luaL_setmetatable(L, TIMER_MT);
    return 1;
}

// Lua: lume.timer.every(ms, fn) -> timer
static int l_every(lua_State *L) { return make(L, true); }
// Lua: lume.timer.after(ms, fn) -> timer
static int l_after(lua_State *L) { return make(L, false); }

static lume_script_timer *find(lua_State *L, timer_ud *u)
{
    lume_script *s = lume_script_of(L);
    for (lume_script_timer *t = s->timers; t; t = t->next)
        if (t->id == u->id && !t->dead)
            return t;
    return NULL;
}

// Lua: timer:cancel() -> bool (whether it was active)
static int l_cancel(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    timer_ud *u = luaL_checkudata(L, 1, TIMER_MT);
    lume_script_timer *t = find(L, u);
    if (!t) {
        lua_pushboolean(L, 0);
        return 1;
    }
    t->dead = true;
    lume_timer_cancel(&t->t);
    if (!t->firing)
        release(s, t);
    lua_pushboolean(L, 1);
    return 1;
}

// Lua: timer:active() -> bool
static int l_active(lua_State *L)
{
    timer_ud *u = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushboolean(L, find(L, u) != NULL);
    return 1;
}

static int l_gc(lua_State *L) { (void)L; return 0; }

static const luaL_Reg methods[] = {{"cancel", l_cancel}, {"active", l_active}, {NULL, NULL}};
static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__close", l_cancel}, {NULL, NULL}};
static const luaL_Reg funcs[] = {{"every", l_every}, {"after", l_after}, {NULL, NULL}};

int lume_open_timer(lua_State *L)
{
    luaL_newmetatable(L, TIMER_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
