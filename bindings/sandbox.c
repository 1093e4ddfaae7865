/* bindings/sandbox.c — one sandboxed lua_State per script.
 *
 * What a script gets: base functions without dofile/loadfile (load only
 * takes text chunks), string (no string.dump; lume's own budget-checked
 * pattern functions and string.rep), table, math, utf8, coroutine
 * (resume/wrap/close wrapped so the watchdog can reach the running
 * coroutine), os with only time/clock/date/difftime, a `require` that finds
 * only stdlib/, print routed to the log, and the `lume` API. No io, no
 * debug, no package.loadlib, no os.execute/exit/getenv/remove/rename. No
 * finalizers: setmetatable refuses a metatable with a __gc field (Lua runs
 * finalizers with hooks off, so no budget could stop one), and getmetatable
 * hides the metatables of lume's handles.
 *
 * Memory: every allocation goes through a capped lua_Alloc; past the cap the
 * allocation fails and Lua raises a memory error in the script.
 *
 * CPU: the budget counts the CPU time the loop thread spends in the call
 * (its thread CPU clock), so preemption by other processes never kills a
 * script. The instruction-count hook makes Lua about 3x slower while armed,
 * so it is not armed on every call. A watchdog thread sleeps until the call
 * could first have used its budget; only if the call is still running and
 * has used it does it arm the count and call hooks on the running Lua
 * thread, and the hook raises "CPU budget exceeded". The call hook also
 * fires when a C loop (table.sort, table.concat, ...) calls any function,
 * and C loops that call none (the pattern matcher, string.rep) check the
 * `expired` flag through lume_sandbox_check. The script's pcall/xpcall/
 * coroutine.resume re-raise that error, so a script cannot catch its way
 * out of its budget.
 *
 * Reading the thread CPU clock is a system call (~0.6 us), too slow for
 * every handler call. The loop thread stamps (wall, cpu) at most once a
 * millisecond; a call's CPU start is bounded above by stamp_cpu + (wall now -
 * stamp_wall), since CPU time never runs faster than the wall. Measured from
 * that bound, the CPU a call used is never over-counted: the budget fires
 * late by at most the preemption inside that millisecond, never early.
 *
 * Hangs: the wall-clock time of each watched activity (a call, a load, a
 * state being closed) is limited by sandbox.hang_limit_ms. Past it, the
 * watchdog logs which script hung and in what, writes the store's hung
 * marker (the script's name and source hash), and ends the process with
 * exit code 1 so its supervisor restarts it; on that restart the script is
 * quarantined (lume_scripts_note_hang), so a hang is treated like a crash
 * loop.
 *
 *   loop thread                         watchdog thread
 *   ───────────                         ───────────────
 *   lock; current=s, seq++, starts;
 *   signal if idle; unlock
 *   lua_pcall ...                        wait until start + budget (wall)
 *                                        lock; same call and cpu used >= budget?
 *      hook fires -> error ◄──────────── yes: sethook, armed, expired; unlock
 *                                        no: wait (budget - used), again
 *                                        armed and start + hang limit passed:
 *                                        log, write marker, _exit(1)
 *   lock; current=NULL; if armed:
 *   lua_sethook(NULL); unlock
 *
 * Invariants:
 *   1. The watchdog touches a lua_State only under mu, only while it is
 *      wd->thread_L of the current call, and never while wd->closing.
 *   2. expired is true only while armed is (both cleared by watch_end).
 */
#include "sandbox.h"
#include "modules.h"
#include "pattern.h"
#include "oem.h"
#include "runtime.h"
#include "script.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "check.h"
#include "clock.h"
#include "log.h"

#define BUDGET_MSG "CPU budget exceeded"
#define INTERRUPT_MSG "interrupted"
#define WALL_MSG "time limit exceeded: the evaluation ran for more than %d ms"
#define STAMP_NS   LUME_NS_PER_MS   /* how often the loop thread reads its CPU clock */

lume_script *lume_script_of(lua_State *L)
{
    return *(lume_script **)lua_getextraspace(L);
}

/* ---- the capped allocator ------------------------------------------------ */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lume_mem *m = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        m->used -= old;
        return NULL;
    }
    if (nsize > old && m->used + (nsize - old) > m->limit) {
        m->refused++;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    m->used = m->used - old + nsize;
    if (m->used > m->peak)
        m->peak = m->used;
    return p;
}

/* ---- the watchdog --------------------------------------------------------- */

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * LUME_NS_PER_SEC + ts.tv_nsec;
}

static void budget_error(lua_State *L, lume_script *s)
{
    s->killed = true;
    if (s->rt->wd.interrupted)
        luaL_error(L, INTERRUPT_MSG);
    if (s->rt->wd.wall_expired)
        luaL_error(L, WALL_MSG, s->rt->wd.wall_ms);
    luaL_error(L, BUDGET_MSG ": the call used more than %d ms of CPU", s->rt->wd.budget_ms);
}

/* A state that is not a script's (the config chunk, config_lua.c) has no
 * watchdog: it runs under a wall-clock deadline of the thread running it,
 * checked by its own count hook and, through lume_sandbox_check, by the C
 * loops that check a script's budget (the pattern matcher). */
static _Thread_local int64_t     tl_deadline_ns;   /* lume_mono_ns(); 0 = none */
static _Thread_local const char *tl_deadline_msg;

void lume_sandbox_set_deadline(int64_t deadline_ns, const char *msg)
{
    tl_deadline_ns = deadline_ns;
    tl_deadline_msg = msg;
}

void lume_sandbox_check(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    if (!s) {
        if (tl_deadline_ns && lume_mono_ns() >= tl_deadline_ns)
            luaL_error(L, "%s", tl_deadline_msg ? tl_deadline_msg : "time limit exceeded");
        return;
    }
    lume_watchdog *wd = &s->rt->wd;
    if (!atomic_load_explicit(&wd->expired, memory_order_relaxed))
        return;
    pthread_mutex_lock(&wd->mu);
    lume_check(wd->armed || !atomic_load_explicit(&wd->expired, memory_order_relaxed),
               "invariant 2: expired is true only while armed is");
    bool mine = wd->armed && wd->current == s;
    pthread_mutex_unlock(&wd->mu);
    if (mine)
        budget_error(L, s);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lume_script *s = lume_script_of(L);
    lume_watchdog *wd = &s->rt->wd;
    pthread_mutex_lock(&wd->mu);
    bool armed = wd->armed && wd->current == s;
    pthread_mutex_unlock(&wd->mu);
    if (!armed) {
        /* A suspended coroutine that was hooked in an earlier call. */
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    budget_error(L, s);
}

#define HOOK_MASK (LUA_MASKCOUNT | LUA_MASKCALL)

/* The last line of defence: an activity held the loop past the hang limit.
 * Under wd->mu; never returns. Only async-signal-safe-ish calls after the
 * log line: the loop thread is stuck and holds whatever it holds. */
static void hang(lume_watchdog *wd, int64_t held_ns)
{
    lume_script *s = wd->current;
    char what[160]; /* for the JSON line: no quote, backslash or control character */
    snprintf(what, sizeof what, "%s", wd->what ? wd->what : "?");
    for (char *p = what; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '_';
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "{\"script\":\"%s\",\"sha256\":\"%s\",\"version\":\"%s\",\"managed\":%s,"
                     "\"what\":\"%s\",\"held_ms\":%lld,\"at\":%lld}\n",
                     s->name, s->sha256, s->version, s->managed ? "true" : "false",
                     what, (long long)(held_ns / LUME_NS_PER_MS),
                     (long long)(lume_wall_ms() / 1000));
    char comp[96];
    snprintf(comp, sizeof comp, "script %s", s->name);
    lume_log(LUME_LOG_ERROR, comp, "hung: %s (version %s) held the loop for %lld ms, more than "
             "sandbox.hang_limit_ms (%d); ending the process so its supervisor restarts it — "
             "the script will be quarantined", what, s->version,
             (long long)(held_ns / LUME_NS_PER_MS), wd->hang_ms);
    int fd = open(wd->marker_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        fsync(fd);
        close(fd);
        rename(wd->marker_tmp, wd->marker);
    }
    _exit(1);
}

/* Arm the hooks on the running Lua thread: the call is over budget. */
static void arm(lume_watchdog *wd)
{
    lume_check(wd->current && wd->thread_L && !wd->closing && !wd->armed,
               "invariant 1: the watchdog hooks only the running thread of a call, "
               "never a closing one");
    lua_sethook(wd->thread_L, budget_hook, HOOK_MASK, 1000);
    wd->armed = true;
    atomic_store_explicit(&wd->expired, true, memory_order_relaxed);
}

static void wait_until(lume_watchdog *wd, int64_t mono_ns)
{
    struct timespec ts = {.tv_sec = mono_ns / LUME_NS_PER_SEC,
                          .tv_nsec = mono_ns % LUME_NS_PER_SEC};
    wd->wait_until = mono_ns;
    pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
    wd->wait_until = 0;
}

static void *watchdog_main(void *arg)
{
    lume_watchdog *wd = arg;
    lume_log_use(wd->log);
    pthread_setname_np(pthread_self(), "lume-watchdog");
    pthread_mutex_lock(&wd->mu);
    while (!wd->quit) {
        if (!wd->current) {
            wd->idle = true;
            pthread_cond_wait(&wd->cv, &wd->mu);
            wd->idle = false;
            continue;
        }
        int64_t now = lume_mono_ns();
        int64_t hang_at = wd->wall_start_ns + (int64_t)wd->hang_ms * LUME_NS_PER_MS;
        if (now >= hang_at)
            hang(wd, now - wd->wall_start_ns);
        if (wd->armed || wd->closing) {
            wait_until(wd, hang_at);
            continue;
        }
        /* an evaluation's wall-clock limit (lume_sandbox_eval): on a busy
         * machine its CPU budget may take longer than the hang limit */
        int64_t wall_at = wd->wall_ms ? wd->wall_start_ns + (int64_t)wd->wall_ms * LUME_NS_PER_MS
                                      : hang_at;
        if (now >= wall_at) {
            wd->wall_expired = true;
            arm(wd);
            continue;
        }
        if (wall_at < hang_at)
            hang_at = wall_at;
        int64_t used = clock_ns(wd->loop_clock) - wd->cpu_start_ns;
        int64_t left = (int64_t)wd->budget_ms * LUME_NS_PER_MS - used;
        if (left <= 0) {
            arm(wd);
            continue;
        }
        /* CPU time cannot advance faster than the wall: nothing to see
         * before `left` has passed */
        wait_until(wd, now + left < hang_at ? now + left : hang_at);
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

int lume_watchdog_start(lume_watchdog *wd, int budget_ms, int hang_ms, const char *store)
{
    memset(wd, 0, sizeof *wd);
    wd->budget_ms = budget_ms;
    wd->hang_ms = hang_ms;
    snprintf(wd->marker, sizeof wd->marker, "%s/%s", store, LUME_HUNG_MARKER);
    snprintf(wd->marker_tmp, sizeof wd->marker_tmp, "%s/%s.tmp", store, LUME_HUNG_MARKER);
    pthread_mutex_init(&wd->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd->cv, &ca);
    pthread_condattr_destroy(&ca);
    wd->log = lume_log_current(); /* the runtime's (log.h, rule 3) */
    int r = pthread_create(&wd->thread, NULL, watchdog_main, wd);
    if (r)
        return -r;
    wd->running = true;
    return 0;
}

void lume_watchdog_stop(lume_watchdog *wd)
{
    if (!wd->running)
        return;
    pthread_mutex_lock(&wd->mu);
    wd->quit = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_mutex_destroy(&wd->mu);
    pthread_cond_destroy(&wd->cv);
    wd->running = false;
}

/* Start watching an activity of s on this (the loop) thread. closing: the
 * state is being closed — only the hang limit applies, no hook is set. */
static void watch_start(lume_script *s, int budget_ms, const char *what, bool closing)
{
    lume_watchdog *wd = &s->rt->wd;
    if (!wd->running)
        return;
    pthread_t self = pthread_self();
    int64_t now = lume_mono_ns();
    if (!wd->have_loop || !pthread_equal(self, wd->loop_thread)) {
        wd->loop_thread = self;
        wd->have_loop = pthread_getcpuclockid(self, &wd->loop_clock) == 0;
        if (!wd->have_loop)
            wd->loop_clock = CLOCK_THREAD_CPUTIME_ID; /* unreachable on Linux */
        wd->stamp_wall_ns = 0;
    }
    if (now - wd->stamp_wall_ns >= STAMP_NS) {
        wd->stamp_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        wd->stamp_wall_ns = now = lume_mono_ns();
    }
    pthread_mutex_lock(&wd->mu);
    wd->current = s;
    wd->thread_L = s->L;
    wd->what = what;
    wd->closing = closing;
    wd->budget_ms = budget_ms;
    wd->wall_start_ns = now;
    wd->interrupted = false;
    wd->wall_expired = false;
    wd->wall_ms = 0;
    wd->cpu_start_ns = wd->stamp_cpu_ns + (now - wd->stamp_wall_ns);
    wd->armed = false;
    /* only an idle watchdog, or one sleeping towards a later time (a
     * script's load budget, a hang limit), needs waking: one waiting for an
     * earlier time wakes then and sees this call */
    int64_t first = now + (int64_t)budget_ms * LUME_NS_PER_MS;
    if (wd->idle || first < wd->wait_until)
        pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
}

static void watch_begin(lume_script *s, int budget_ms, const char *what)
{
    watch_start(s, budget_ms, what, false);
}

static void watch_end(lume_script *s)
{
    lume_watchdog *wd = &s->rt->wd;
    if (!wd->running)
        return;
    pthread_mutex_lock(&wd->mu);
    if (wd->armed && wd->thread_L)
        lua_sethook(wd->thread_L, NULL, 0, 0);
    if (wd->armed && wd->thread_L != s->L)
        lua_sethook(s->L, NULL, 0, 0);
    atomic_store_explicit(&wd->expired, false, memory_order_relaxed);
    wd->current = NULL;
    wd->thread_L = NULL;
    wd->armed = false;
    wd->interrupted = false;
    wd->wall_expired = false;
    wd->wall_ms = 0;
    wd->closing = false;
    pthread_mutex_unlock(&wd->mu);
}

/* Switch the watchdog's target to the coroutine about to run (or back). */
static lua_State *watch_switch(lume_script *s, lua_State *to)
{
    lume_watchdog *wd = &s->rt->wd;
    pthread_mutex_lock(&wd->mu);
    lua_State *prev = wd->thread_L;
    if (wd->current == s) {
        wd->thread_L = to;
        if (wd->armed)
            lua_sethook(to, budget_hook, HOOK_MASK, 1000);
    }
    pthread_mutex_unlock(&wd->mu);
    return prev;
}

void lume_sandbox_close(lume_script *s)
{
    if (!s->L)
        return;
    lume_script *cur = NULL;
    lume_watchdog *wd = &s->rt->wd;
    if (wd->running) {
        pthread_mutex_lock(&wd->mu);
        cur = wd->current;
        pthread_mutex_unlock(&wd->mu);
    }
    /* closed from inside another script's call (a swap from a handler):
     * that call's watch covers it */
    bool watch = !cur;
    if (watch)
        watch_start(s, s->rt->cfg.sandbox.cpu_budget_ms, "unload", true);
    lua_close(s->L);
    s->L = NULL;
    lume_output_release(s, "closed (stopped, unloaded, replaced or rolled back)");
    if (watch)
        watch_end(s);
}

/* ---- protected calls ------------------------------------------------------ */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* A script that keeps overrunning its budget is stopped: each overrun costs
 * the loop a whole budget, and samples queue up behind it. */
static void count_overrun(lume_script *s)
{
    s->budget_overruns++;
    int limit = s->rt->cfg.sandbox.max_overruns;
    if (!limit || s->status != LUME_SCRIPT_RUNNING)
        return;
    int64_t now = lume_mono_ns() / LUME_NS_PER_MS;
    if (now - s->overrun_start_ms >= 60000) {
        s->overrun_start_ms = now;
        s->overrun_count = 0;
    }
    if (++s->overrun_count >= (uint64_t)limit) {
        s->status = LUME_SCRIPT_STOPPED;
        free(s->last_error);
        s->last_error = lume_strdupf("stopped: %d CPU budget overruns within a minute "
                                     "(sandbox.max_overruns)", limit);
        char comp[96];
        snprintf(comp, sizeof comp, "script %s", s->name);
        lume_log(LUME_LOG_ERROR, comp, "%s", s->last_error);
    }
    lume_output_release(s, "killed: over its CPU budget");
}

int lume_sandbox_call(lume_script *s, int nargs, int budget_ms, const char *what)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    s->killed = false;
    s->calls++;
    watch_begin(s, budget_ms, what);
    int st = lua_pcall(L, nargs, 0, base);
    watch_end(s);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        char buf[160];
        if (st == LUA_ERRMEM) {
            snprintf(buf, sizeof buf, "memory limit of %zu bytes exceeded (%s)",
                     s->mem.limit, msg ? msg : "not enough memory");
            msg = buf;
        }
        char whatbuf[160];
        if (s->call_detail) { /* composed only on error: the hot path formats nothing */
            snprintf(whatbuf, sizeof whatbuf, "%s(%s)", what, s->call_detail);
            what = whatbuf;
        }
        lume_script_error(s, what, msg ? msg : "(error without message)");
        if (s->killed)
            count_overrun(s);
        lua_pop(L, 1);
    }
    lua_remove(L, base);
    s->killed = false;
    s->call_detail = NULL;
    return st;
}

int lume_sandbox_eval(lume_script *s, int nargs, int budget_ms, int wall_ms, const char *what)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    s->killed = false;
    s->calls++;
    watch_begin(s, budget_ms, what);
    lume_watchdog *wd = &s->rt->wd;
    if (wd->running && wall_ms > 0) {
        pthread_mutex_lock(&wd->mu);
        wd->wall_ms = wall_ms;
        int64_t at = wd->wall_start_ns + (int64_t)wall_ms * LUME_NS_PER_MS;
        if (wd->idle || at < wd->wait_until)
            pthread_cond_signal(&wd->cv);
        pthread_mutex_unlock(&wd->mu);
    }
    int st = lua_pcall(L, nargs, LUA_MULTRET, base);
    watch_end(s);
    lua_remove(L, base);
    s->killed = false;
    return st;
}

void lume_sandbox_interrupt(lume_script *s)
{
    lume_watchdog *wd = &s->rt->wd;
    if (!wd->running)
        return;
    pthread_mutex_lock(&wd->mu);
    if (wd->current == s && !wd->closing && wd->thread_L) {
        wd->interrupted = true;
        if (!wd->armed)
            arm(wd);
    }
    pthread_mutex_unlock(&wd->mu);
}

typedef struct push_ctx {
    lume_sandbox_push push;
    void             *ud;
} push_ctx;

static int protected_call(lua_State *L)
{
    push_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    int nargs = c->push(L, c->ud);
    if (nargs < 0)
        return 0;
    lua_call(L, nargs, 0);
    return 0;
}

int lume_sandbox_pcall(lume_script *s, lume_sandbox_push push, void *ud, int budget_ms,
                       const char *what)
{
    if (!s->L || !lua_checkstack(s->L, 4))
        return LUA_ERRMEM;
    push_ctx c = {push, ud};
    lua_pushcfunction(s->L, protected_call); /* neither push allocates */
    lua_pushlightuserdata(s->L, &c);
    return lume_sandbox_call(s, 1, budget_ms, what);
}

/* pcall/xpcall that cannot swallow a budget kill. */
static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    lume_script *s = lume_script_of(L);
    if (s->killed) {
        if (s->rt->wd.interrupted)
            lua_pushliteral(L, INTERRUPT_MSG);
        else
            lua_pushfstring(L, BUDGET_MSG ": the call used more than %d ms of CPU",
                            s->rt->wd.budget_ms);
        return lua_error(L);
    }
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, status, 0);
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, status, 2);
}

/* coroutine.resume that points the watchdog at the coroutine. */
static int sb_resume(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    int narg = lua_gettop(L) - 1;
    int st;
    if (!lua_checkstack(co, narg)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "too many arguments to resume");
        return 2;
    }
    lua_xmove(L, co, narg);
    lua_State *prev = watch_switch(s, co);
    int nres;
    st = lua_resume(co, L, narg, &nres);
    watch_switch(s, prev);
    if (s->killed) {
        if (s->rt->wd.interrupted)
            lua_pushliteral(L, INTERRUPT_MSG);
        else
            lua_pushfstring(L, BUDGET_MSG ": the call used more than %d ms of CPU",
                            s->rt->wd.budget_ms);
        return lua_error(L);
    }
    if (st == LUA_OK || st == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushboolean(L, 0);
            lua_pushliteral(L, "too many results to resume");
            return 2;
        }
        lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + 1;
    }
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
}

static int wrap_aux(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushcfunction(L, sb_resume);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_rotate(L, 1, 2);
    lua_call(L, n + 1, LUA_MULTRET);
    if (!lua_toboolean(L, 1)) {
        lua_State *co = lua_tothread(L, lua_upvalueindex(1));
        if (lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD) {
            /* runs the coroutine's pending __close handlers: watched */
            lume_script *s = lume_script_of(L);
            lua_State *prev = watch_switch(s, co);
            lua_resetthread(co);
            watch_switch(s, prev);
            if (s->killed)
                budget_error(L, s);
        }
        lua_settop(L, 2);
        if (lua_type(L, 2) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    return lua_gettop(L) - 1;
}

/* coroutine.close: runs the coroutine's pending __close handlers, watched. */
static int sb_close(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "lume.base_coclose");
    lua_insert(L, 1);
    lua_State *prev = watch_switch(s, co);
    int r = lua_pcall(L, 1, LUA_MULTRET, 0);
    watch_switch(s, prev);
    if (s->killed)
        budget_error(L, s);
    if (r != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* setmetatable without finalizers: Lua runs __gc with hooks off, so no
 * budget could stop one (a finalizer that loops would hang the loop at
 * collection, unload or shutdown). A table is marked for finalization only
 * when setmetatable sees a __gc field, so refusing it here (any value, even
 * false, which could be swapped for a function later) leaves none. */
static int sb_setmetatable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int t = lua_type(L, 2);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc is not available in the sandbox (finalizers "
                                 "run outside the CPU budget); use a <close> variable or "
                                 "lume.timer");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* getmetatable: the metatables of lume's handles (userdata) stay hidden, so
 * no script can add a Lua finalizer to them. */
static int sb_getmetatable(lua_State *L)
{
    luaL_checkany(L, 1);
    if (lua_type(L, 1) == LUA_TUSERDATA) {
        lua_pushliteral(L, "locked");
        return 1;
    }
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    luaL_getmetafield(L, 1, "__metatable");
    return 1;
}

/* string.rep: Lua's loops n times even when the result is empty ("", 1e18),
 * allocating nothing a cap could refuse and running no instruction a hook
 * could stop. Upvalue 1: Lua's own rep; upvalue 2: a size to refuse before
 * building (0: none; the state's allocator refuses what its cap does not
 * hold, and the caller reports that its own way). */
static int safe_rep(lua_State *L)
{
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t limit = (size_t)lua_tointeger(L, lua_upvalueindex(2));
    if (n > 1 && (l + lsep) > ((size_t)-1 >> 1) / (size_t)n)
        return luaL_error(L, "resulting string too large");
    if (limit && (size_t)n * (l + lsep) > limit)
        return luaL_error(L, "string.rep: resulting string too large (%I x %d bytes, more "
                             "than the memory limit of %I bytes)", n, (int)(l + lsep),
                          (lua_Integer)limit);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

void lume_string_rep_install(lua_State *L, size_t limit)
{
    lua_getfield(L, -1, "rep");
    lua_pushinteger(L, (lua_Integer)limit);
    lua_pushcclosure(L, safe_rep, 2);
    lua_setfield(L, -2, "rep");
}

static int sb_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_aux, 1);
    return 1;
}

// Lua: print(...)  -> one info line in the log: tostring of each argument,
//      tab-separated (as Lua's print), a NUL byte shown as \0 (it would end the line)
static int sb_print(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    int n = lua_gettop(L); /* before luaL_buffinit, which may push its placeholder */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL); /* raises for a __tostring that fails or is no string */
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    if (memchr(line, 0, len)) {
        luaL_Buffer e; /* line stays on the stack below: it lives while e is built */
        luaL_buffinit(L, &e);
        for (size_t i = 0; i < len; i++) {
            if (line[i])
                luaL_addchar(&e, line[i]);
            else
                luaL_addstring(&e, "\\0");
        }
        luaL_pushresult(&e);
    }
    char comp[96];
    snprintf(comp, sizeof comp, "script %s", s->name);
    lume_log(LUME_LOG_INFO, comp, "%s", lua_tostring(L, -1));
    return 0;
}

static int sb_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (!strcmp(opt, "count")) {
        lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                              (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
        return 1;
    }
    if (!strcmp(opt, "collect") || !strcmp(opt, "step")) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        lua_pushinteger(L, 0);
        return 1;
    }
    return luaL_error(L, "collectgarbage: option '%s' is not available in the sandbox", opt);
}

/* A module's value on the top, package.loaded below it: store it there as
 * require does (nil counts as true) and return it. */
static int loaded(lua_State *L, const char *name)
{
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

/* require: the embedder's C modules (lume_config_add_module), then modules from
 * stdlib_dir only, text chunks, cached. */
static int sb_require(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *name = luaL_checkstring(L, 1);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.'))
            return luaL_error(L, "require: bad module name '%s'", name);
    if (!*name || name[0] == '.' || strstr(name, ".."))
        return luaL_error(L, "require: bad module name '%s'", name);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, name);
    if (lua_toboolean(L, -1))
        return 1;
    lua_pop(L, 1);

    lume_module_open oem = lume_oem_module(s->rt, name); /* the embedder's (lume.h) */
    if (oem) {
        lua_pushcfunction(L, oem);
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
        return loaded(L, name);
    }

    char rel[512], path[4096];
    snprintf(rel, sizeof rel, "%s", name);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    struct stat st;
    snprintf(path, sizeof path, "%s/%s.lua", s->rt->cfg.stdlib_dir, rel);
    if (stat(path, &st) != 0) {
        snprintf(path, sizeof path, "%s/%s/init.lua", s->rt->cfg.stdlib_dir, rel);
        if (stat(path, &st) != 0)
            return luaL_error(L, "require: module '%s' not found in %s (the sandbox loads "
                                 "only lume's stdlib)", name, s->rt->cfg.stdlib_dir);
    }
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, name);
    lua_pushstring(L, path);
    lua_call(L, 2, 1);
    return loaded(L, name);
}

/* load: text chunks only; the environment defaults to the script's. */
static int sb_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n >= 3 && !lua_isnil(L, 3)) {
        const char *mode = luaL_checkstring(L, 3);
        if (strchr(mode, 'b'))
            return luaL_error(L, "load: binary chunks are not allowed in the sandbox");
    }
    while (lua_gettop(L) < 3)
        lua_pushnil(L);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (lua_gettop(L) < 4) {
        lua_pushglobaltable(L); /* default env: the script's globals */
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "lume.base_load");
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void remove_field(lua_State *L, const char *lib, const char *field)
{
    if (lua_getglobal(L, lib) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_setfield(L, -2, field);
    }
    lua_pop(L, 1);
}

static int open_sandbox(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_COLIBNAME, luaopen_coroutine, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
    lua_settop(L, 0);

    /* os: only the clock functions */
    lua_newtable(L);
    lua_getglobal(L, "os");
    static const char *const os_keep[] = {"time", "clock", "date", "difftime"};
    for (size_t i = 0; i < sizeof os_keep / sizeof *os_keep; i++) {
        lua_getfield(L, -1, os_keep[i]);
        lua_setfield(L, -3, os_keep[i]);
    }
    lua_pop(L, 1);
    lua_setglobal(L, "os");
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); /* rebuilt below */

    remove_field(L, "string", "dump");
    lume_pattern_install(L); /* string.find/match/gmatch/gsub that honour the CPU budget */
    static const char *const base_drop[] = {"dofile", "loadfile"};
    for (size_t i = 0; i < sizeof base_drop / sizeof *base_drop; i++) {
        lua_pushnil(L);
        lua_setglobal(L, base_drop[i]);
    }
    /* keep the original load reachable only from C, in the registry */
    lua_getglobal(L, "load");
    lua_setfield(L, LUA_REGISTRYINDEX, "lume.base_load");
    lua_register(L, "load", sb_load);

    lua_register(L, "setmetatable", sb_setmetatable);
    lua_register(L, "getmetatable", sb_getmetatable);
    lua_getglobal(L, "string");
    lume_string_rep_install(L, s->mem.limit);
    lua_pop(L, 1);
    lua_register(L, "pcall", sb_pcall);
    lua_register(L, "xpcall", sb_xpcall);
    lua_register(L, "print", sb_print);
    lua_register(L, "collectgarbage", sb_collectgarbage);
    lua_register(L, "require", sb_require);
    lua_getglobal(L, "coroutine");
    lua_pushcfunction(L, sb_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, sb_wrap);
    lua_setfield(L, -2, "wrap");
    lua_getfield(L, -1, "close");
    lua_setfield(L, LUA_REGISTRYINDEX, "lume.base_coclose");
    lua_pushcfunction(L, sb_close);
    lua_setfield(L, -2, "close");
    lua_pop(L, 1);

    /* package.loaded (a fresh one: the sandbox's modules only) */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    static const char *const libs[] = {"_G", "table", "string", "math", "utf8", "coroutine",
                                       "os"};
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
        lua_getglobal(L, libs[i]);
        lua_setfield(L, -2, libs[i]);
    }
    lua_newtable(L); /* package */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "loaded");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", s->rt->cfg.stdlib_dir, s->rt->cfg.stdlib_dir);
    lua_setfield(L, -2, "path");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "package");
    lua_setglobal(L, "package");
    lua_pop(L, 1);

    /* the lume API */
    lume_open_lume(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "lume");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    lua_setfield(L, -2, "lume");
    lua_pop(L, 1);
    return 0;
}

/* Never reached by design (every host call on a script's state is
 * protected: lume_sandbox_pcall); if it is, say whose state it was. */
static int on_panic(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    lume_log(LUME_LOG_ERROR, "sandbox", "unprotected error in the state of script %s: %s",
             s && s->name ? s->name : "?", msg);
    return 0; /* Lua aborts */
}

lua_State *lume_sandbox_new(lume_script *s, char **err)
{
    s->mem.limit = (size_t)s->rt->cfg.sandbox.memory_limit;
    s->mem.used = s->mem.peak = 0;
    lua_State *L = lua_newstate(capped_alloc, &s->mem);
    if (!L) {
        *err = lume_strdupf("cannot create a Lua state within %zu bytes", s->mem.limit);
        return NULL;
    }
    *(lume_script **)lua_getextraspace(L) = s;
    lua_atpanic(L, on_panic);
    lua_gc(L, LUA_GCGEN, 0, 0);
    lua_pushcfunction(L, open_sandbox);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        *err = lume_strdupf("cannot build the sandbox: %s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}
