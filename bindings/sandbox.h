/* bindings/sandbox.h — sandbox.c: script states, the capped allocator, the CPU-budget
 * and hang watchdog, protected calls. */
#ifndef LUME_SANDBOX_H
#define LUME_SANDBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <lua.h>

#include "log.h"
#include "script.h"

/* The CPU-budget and hang watchdog: one thread per runtime; arms the hooks
 * on the running Lua thread only when a call has used its CPU budget, and
 * ends the process when an activity holds the loop past the hang limit
 * (see sandbox.c). */
#define LUME_HUNG_MARKER "hung.json"
typedef struct lume_watchdog {
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;          /* on CLOCK_MONOTONIC */
    lume_log_target *log;        /* its starter's log target */
    bool            running, quit;
    lume_script    *current;     /* under mu */
    lua_State      *thread_L;    /* innermost running Lua thread, under mu */
    const char     *what;        /* what the current activity is */
    bool            closing;     /* the current activity closes a state: no hooks */
    int64_t         wall_start_ns;
    int64_t         cpu_start_ns;/* upper bound of the loop thread's CPU clock at the start */
    int             budget_ms;
    int             hang_ms;
    bool            armed;
    bool            interrupted; /* the armed call was interrupted (lume_sandbox_interrupt) */
    int             wall_ms;     /* the current call's wall-clock limit, 0: none (eval) */
    bool            wall_expired;/* the armed call passed it */
    atomic_bool     expired;     /* the running call is over budget (lume_sandbox_check) */
    bool            idle;        /* waiting with no call to watch */
    int64_t         wait_until;  /* the time it sleeps towards, 0 when none */
    /* the loop thread's own, read without mu */
    pthread_t       loop_thread;
    clockid_t       loop_clock;
    bool            have_loop;
    int64_t         stamp_wall_ns, stamp_cpu_ns;
    char            marker[4096], marker_tmp[4100];
} lume_watchdog;

lua_State  *lume_sandbox_new(lume_script *s, char **err);
int         lume_watchdog_start(lume_watchdog *wd, int budget_ms, int hang_ms,
                                const char *store);
void        lume_watchdog_stop(lume_watchdog *wd);
/* Call the function at the top of s->L (below it nargs arguments) under the
 * CPU budget. 0, or the Lua status with the error recorded on the script
 * (counted, logged with script:line and a traceback). Pops function and
 * arguments; leaves nothing. */
int         lume_sandbox_call(lume_script *s, int nargs, int budget_ms, const char *what);
lume_script *lume_script_of(lua_State *L);
/* As lume_sandbox_call, but for a caller that wants the outcome (the REPL):
 * leaves the results (LUA_MULTRET) or the error message with its traceback
 * on the stack in place of the function and its arguments, records nothing
 * on the script, logs nothing. Besides the CPU budget, wall_ms (when > 0)
 * limits its wall-clock time ("time limit exceeded"): on a loaded machine
 * a CPU budget can outlast the hang limit. The Lua status. */
int         lume_sandbox_eval(lume_script *s, int nargs, int budget_ms, int wall_ms,
                              const char *what);
/* Any thread: stop the call of s that is running now, if any, through the
 * watchdog's hook; it fails with "interrupted". Nothing happens when s is
 * not running (a later call is not affected). */
void        lume_sandbox_interrupt(lume_script *s);
/* Push, inside the protected call, the function to call and its arguments;
 * return how many arguments (or -1: nothing to call). Anything it does that
 * fails (memory cap, a conversion error) is the script's error. */
typedef int (*lume_sandbox_push)(lua_State *L, void *ud);
/* lume_sandbox_call for a call whose function and arguments are built by
 * push on the script's state: every host call that allocates on a script's
 * state goes through here, so nothing a script's cap refuses can reach Lua's
 * panic. 0 or the Lua status, as lume_sandbox_call. */
int         lume_sandbox_pcall(lume_script *s, lume_sandbox_push push, void *ud, int budget_ms,
                               const char *what);
/* Close s->L under the hang limit (s->L is NULL afterwards). */
void        lume_sandbox_close(lume_script *s);
/* For C code that loops on a script's behalf without calling any function
 * (the pattern matcher; loops that call functions are reached by the call
 * hook): raises the script's "CPU budget exceeded" error when the
 * running call has used up its budget; returns at once otherwise (one
 * relaxed atomic load). Call it every few thousand steps. */
void        lume_sandbox_check(lua_State *L);
/* For a state that is not a script's (its extra space holds NULL), run on
 * this thread: from now on lume_sandbox_check raises msg once lume_mono_ns()
 * reaches deadline_ns (0: no deadline). The config chunk's limit. */
void        lume_sandbox_set_deadline(int64_t deadline_ns, const char *msg);

/* Replace "rep" in the string table at the top of the stack with one that
 * returns an empty result at once (Lua's loops n times even then, beyond
 * any hook or cap) and, when limit is not 0, refuses a result larger than
 * limit bytes before building it. Used by the script sandbox (its memory
 * cap) and the config chunk (0: its allocator's cap reports it). */
void        lume_string_rep_install(lua_State *L, size_t limit);

#endif
