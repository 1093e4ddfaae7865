/* bindings/sandbox.c — one sandboxed lua_State per script.
 *
 * What a script gets: base functions without dofile/loadfile (load only
 * takes text chunks), string (no string.dump), table, math, utf8, coroutine
 * (resume/wrap wrapped so the watchdog can reach the running coroutine), os
 * with only time/clock/date/difftime, a `require` that finds only stdlib/,
 * print routed to the log, and the `lume` API. No io, no debug, no
 * package.loadlib, no os.execute/exit/getenv/remove/rename.
 *
 * Memory: every allocation goes through a capped lua_Alloc; past the cap the
 * allocation fails and Lua raises a memory error in the script.
 *
 * CPU: the instruction-count hook makes Lua about 3x slower while armed, so
 * it is not armed on every call. A watchdog thread sleeps until the running
 * call's deadline; only if the call is still running then does it arm the
 * count hook on the running Lua thread, and the hook raises "CPU budget
 * exceeded". The script's pcall/xpcall/coroutine.resume re-raise that error,
 * so a script cannot catch its way out of its budget.
 *
 *   loop thread                         watchdog thread
 *   ───────────                         ───────────────
 *   lock; current=s, deadline=now+b;
 *   signal; unlock
 *   lua_pcall ...                        wait until deadline
 *                                        lock; still current? -> lua_sethook
 *      hook fires -> error ◄──────────── armed=true; unlock
 *   lock; current=NULL; if armed:
 *   lua_sethook(NULL); unlock
 */
#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lualib.h>

#include "clock.h"
#include "log.h"

#define BUDGET_MSG "CPU budget exceeded"

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

void lume_sandbox_check(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    if (!s)
        return;
    lume_watchdog *wd = &s->rt->wd;
    if (!atomic_load_explicit(&wd->expired, memory_order_relaxed))
        return;
    pthread_mutex_lock(&wd->mu);
    bool mine = wd->armed && wd->current == s;
    pthread_mutex_unlock(&wd->mu);
    if (!mine)
        return;
    s->killed = true;
    luaL_error(L, BUDGET_MSG ": the call ran longer than %d ms", wd->budget_ms);
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
    s->killed = true;
    luaL_error(L, BUDGET_MSG ": the call ran longer than %d ms", wd->budget_ms);
}

static void *watchdog_main(void *arg)
{
    lume_watchdog *wd = arg;
    pthread_setname_np(pthread_self(), "lume-watchdog");
    pthread_mutex_lock(&wd->mu);
    while (!wd->quit) {
        if (!wd->current || wd->armed) {
            wd->idle = true;
            pthread_cond_wait(&wd->cv, &wd->mu);
            wd->idle = false;
            continue;
        }
        int64_t now = lume_mono_ns();
        if (now < wd->deadline_ns) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait = wd->deadline_ns - now;
            int64_t abs_ns = (int64_t)ts.tv_sec * LUME_NS_PER_SEC + ts.tv_nsec + wait;
            ts.tv_sec = abs_ns / LUME_NS_PER_SEC;
            ts.tv_nsec = abs_ns % LUME_NS_PER_SEC;
            wd->wait_until = wd->deadline_ns;
            pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
            wd->wait_until = 0;
            continue;
        }
        /* Overrun: arm the count hook on the running Lua thread. */
        lua_sethook(wd->thread_L, budget_hook, LUA_MASKCOUNT, 1000);
        wd->armed = true;
        atomic_store_explicit(&wd->expired, true, memory_order_relaxed);
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

int lume_watchdog_start(lume_watchdog *wd, int budget_ms)
{
    memset(wd, 0, sizeof *wd);
    wd->budget_ms = budget_ms;
    pthread_mutex_init(&wd->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&wd->cv, &ca);
    pthread_condattr_destroy(&ca);
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

static void watch_begin(lume_script *s, int budget_ms)
{
    lume_watchdog *wd = &s->rt->wd;
    pthread_mutex_lock(&wd->mu);
    wd->current = s;
    wd->thread_L = s->L;
    wd->budget_ms = budget_ms;
    wd->deadline_ns = lume_mono_ns() + (int64_t)budget_ms * LUME_NS_PER_MS;
    wd->armed = false;
    /* only an idle watchdog, or one sleeping towards a later deadline (a
     * script's load budget), needs waking: one waiting for an earlier
     * deadline wakes then and sees this one */
    if (wd->idle || wd->deadline_ns < wd->wait_until)
        pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
}

static void watch_end(lume_script *s)
{
    lume_watchdog *wd = &s->rt->wd;
    pthread_mutex_lock(&wd->mu);
    if (wd->armed)
        lua_sethook(s->L, NULL, 0, 0);
    atomic_store_explicit(&wd->expired, false, memory_order_relaxed);
    wd->current = NULL;
    wd->thread_L = NULL;
    wd->armed = false;
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
            lua_sethook(to, budget_hook, LUA_MASKCOUNT, 1000);
    }
    pthread_mutex_unlock(&wd->mu);
    return prev;
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
}

int lume_sandbox_call(lume_script *s, int nargs, int budget_ms, const char *what)
{
    lua_State *L = s->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    s->killed = false;
    s->calls++;
    watch_begin(s, budget_ms);
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

/* pcall/xpcall that cannot swallow a budget kill. */
static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    lume_script *s = lume_script_of(L);
    if (s->killed) {
        lua_pushfstring(L, BUDGET_MSG ": the call ran longer than %d ms", s->rt->wd.budget_ms);
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
        lua_pushfstring(L, BUDGET_MSG ": the call ran longer than %d ms", s->rt->wd.budget_ms);
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
        if (lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD)
            lua_resetthread(co);
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

static int sb_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_aux, 1);
    return 1;
}

static int sb_print(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *str = luaL_tolstring(L, i, &len);
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
        (void)str;
    }
    luaL_pushresult(&b);
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

/* require: modules from stdlib_dir only, text chunks, cached. */
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
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
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
    lua_gc(L, LUA_GCGEN, 0, 0);
    lua_pushcfunction(L, open_sandbox);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        *err = lume_strdupf("cannot build the sandbox: %s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}
