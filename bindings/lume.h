/* lume.h — the embedding API: run lume inside your own program.
 *
 *   char *err = NULL;
 *   lume_config *cfg = lume_config_new();                  // the defaults
 *   if (lume_config_load(cfg, "lume.conf.lua", &err) < 0)  // optional
 *       ...;                                               // err says why
 *   lume_config_set_int(cfg, "status_interval_ms", 0, &err);
 *   lume_runtime *rt = lume_runtime_new(cfg, &err);
 *   lume_config_free(cfg);                  // the runtime keeps a copy
 *   lume_runtime_run(rt);                   // until lume_runtime_stop()
 *   lume_runtime_free(rt);
 *
 * A runtime owns one event loop, which runs on the thread that calls
 * lume_runtime_run / lume_runtime_run_for, a sampler thread, a watchdog
 * thread, the outbox and state store under the `store` directory, and one
 * sandboxed Lua state per script. Several runtimes may live in one process
 * (each with its own store).
 *
 * This header includes only standard headers and declares everything
 * liblume.so exports; docs/embedding.md says more.
 *
 * Return values. Calls returning int return 0 on success or a negative
 * errno code (-EINVAL, -ENOENT, ...) listed with each call. Calls taking
 * `char **err` also store a message there on failure (NULL on success); err
 * may be NULL when you do not want it.
 *
 * Ownership. Strings the library returns (*err, lume_runtime_stats_json)
 * are the caller's: release them with lume_free (free() works too: it is
 * the same allocator). Strings passed in are copied; the library keeps no
 * pointer to them after the call returns.
 *
 * Threads. A config may be used from one thread at a time. A runtime
 * belongs to the thread that created it: call everything on it from that
 * thread, except lume_runtime_stop, which any thread and any signal
 * handler may call. Different runtimes may be driven from different
 * threads.
 *
 * Side effects. lume_runtime_new changes nothing process-wide unless the
 * config asks for it: the umask, the calling thread's CPU affinity and
 * scheduling, the process's log level and sink, and the signal handlers
 * you installed are left as they were. One exception comes from
 * libwebsockets: SIGPIPE, when its disposition is the default (end the
 * process), becomes ignored. Asked for by keys: `sampler.lock_memory` calls
 * mlockall (the whole process), `sampler.realtime` makes the sampler thread
 * SCHED_FIFO, `sampler.cpu` pins the sampler thread to that CPU and keeps
 * the runtime's other threads off it (not the calling thread: pin it
 * yourself if the loop must stay off that CPU too), and a script that holds
 * the loop past `sandbox.hang_limit_ms` ends the process (_exit(1)) for its
 * supervisor to restart. libwebsockets' own log (errors and warnings) is
 * routed into lume's log: it is process-wide in libwebsockets. */
#ifndef LUME_H
#define LUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0xMMmmpp: major, minor, patch. */
#define LUME_VERSION_NUM 0x000100
#define LUME_VERSION     "0.1.0"

/* The version of the library actually linked, "0.1.0". Static storage. */
const char *lume_version(void);

/* Release a string the library returned (NULL is fine). */
void lume_free(void *p);

/* ---- logging ------------------------------------------------------------ */

#ifndef LUME_LOG_LEVELS_DEFINED
#define LUME_LOG_LEVELS_DEFINED
enum {
    LUME_LOG_DEBUG = 0,
    LUME_LOG_INFO  = 1,
    LUME_LOG_WARN  = 2,
    LUME_LOG_ERROR = 3,
};
/* One log line: level LUME_LOG_*, component names the part of lume
 * ("sampler", "outbox", "script rules"), msg the text without a newline.
 * Both strings are valid only during the call. */
typedef void (*lume_log_sink)(void *ud, int level, const char *component,
                              const char *msg);
#endif

/* ---- configuration ------------------------------------------------------ */

typedef struct lume_config lume_config;

/* A config with every key at its default (the `lume config` list), or
 * NULL when out of memory. Release it with lume_config_free. */
lume_config *lume_config_new(void);
/* Release cfg (NULL is fine). */
void lume_config_free(lume_config *cfg);

/* Set one key from the config file's list ("sandbox.memory_limit"),
 * checked as the config file checks it.
 *   _string: string keys, and also sizes ("4MiB"), log levels ("debug"),
 *            outbox.synchronous ("full") and lists ("fleet,site-a");
 *   _int:    numbers and sizes in bytes;
 *   _bool:   true/false keys.
 * 0; -ENOENT for an unknown key (*err suggests the nearest one); -EINVAL
 * for a value of the wrong type or out of range (*err names the key, the
 * value and what was expected); -ENOMEM. cfg is unchanged on error. */
int lume_config_set_string(lume_config *cfg, const char *key, const char *value,
                           char **err);
int lume_config_set_int(lume_config *cfg, const char *key, int64_t value, char **err);
int lume_config_set_bool(lume_config *cfg, const char *key, bool value, char **err);

/* Load a Lua config file (a chunk returning a table) into cfg, every key
 * checked as by the setters, then the checks across keys. 0; -EINVAL
 * (unreadable file, syntax error, a bad value, keys that do not go
 * together); -ENOENT (an unknown key); -ENOMEM. *err names the file, the
 * key, the value and what was expected. cfg may be partly set on error. */
int lume_config_load(lume_config *cfg, const char *path, char **err);

/* Where the log lines of a runtime built from cfg go: sink(ud, ...) for
 * every line at or above its `log_level` key, from any of the runtime's
 * threads, one call at a time; NULL (the default) sends them to stderr.
 * The sink must not call into lume. Lines logged outside any runtime go to
 * stderr. */
void lume_config_set_log(lume_config *cfg, lume_log_sink sink, void *ud);

/* ---- OEM extensions: sensor drivers and Lua modules --------------------- */

/* Both are added to a config, before lume_runtime_new: every runtime built
 * from that config (it copies them) has them, and no other runtime does.
 * The config copies the names and the param declarations (their names and
 * string defaults too); the callbacks, ctx and ops->doc are yours and must
 * stay valid while any such runtime lives (docs/embedding.md). */

/* One parameter of a driver, as a board file gives it (params = {...}).
 * lume checks every sensor's params against these before open: unknown
 * names, a string for a number, a number out of [min, max] and a missing
 * required param are refused with a message naming the board file, the
 * sensor, the driver and the param, and the runtime is not built. */
enum { LUME_PARAM_NUMBER = 0, LUME_PARAM_STRING = 1 };
typedef struct lume_driver_param {
    const char *name;        /* an identifier */
    int         type;        /* LUME_PARAM_NUMBER or LUME_PARAM_STRING */
    bool        required;
    double      dflt;        /* numbers: default, and the range min..max (inclusive) */
    double      min, max;
    const char *dflt_str;    /* strings: default (NULL: none) */
} lume_driver_param;

/* The checked value of each declared param, in declaration order: num for
 * numbers; str for strings (NULL when not given and without default). */
typedef struct lume_driver_value {
    double      num;
    const char *str;
} lume_driver_value;

#define LUME_DRIVER_MAX_PARAMS 8

typedef struct lume_driver_ops {
    const char              *doc;       /* one line for `lume` messages; may be NULL */
    const lume_driver_param *params;    /* n_params of them (at most 8) */
    size_t                   n_params;
    /* Open one sensor of a board file (on the thread calling
     * lume_runtime_new): 0 and *chan, or a negative errno code and, if you
     * like, a malloc'd message in *err. -ENOENT skips an `optional` sensor.
     * The values live only for the call. */
    int  (*open)(void *ctx, const lume_driver_value *values, void **chan, char **err);
    /* Take one reading into *value: 0, or a negative errno code. Runs on a
     * thread of its own per sensor (one read at a time), never on the
     * sampler's: a read longer than read_timeout_ms fails that reading
     * with ETIMEDOUT, and the readings due while it still runs too. A
     * negative code, or a value that is NaN or infinite (ERANGE), is
     * counted in the sensor's read_errors (`lume stats`) and logged;
     * handlers get NaN. */
    int  (*read)(void *ctx, void *chan, double *value);
    /* Release chan (may be NULL): at lume_runtime_free, or when the board
     * fails to load. If a read is stuck then, close runs on the sensor's
     * thread once that read returns. */
    void (*close)(void *ctx, void *chan);
    /* 0: 100 ms. Must be below the sensor's period to be of use. */
    int                      read_timeout_ms;
} lume_driver_ops;

/* Add a driver that board files name as `driver = name`, like the
 * built-in ones. name: letters, digits, '_', '.', '-', 1..64, not a
 * built-in driver's. ops is copied. 0; -EINVAL (NULL cfg, ops, open or
 * read; a bad name or param declaration); -EEXIST (a driver of that name
 * is built in or already added); -ENOMEM. cfg unchanged on error. */
int lume_config_add_driver(lume_config *cfg, const char *name, const lume_driver_ops *ops,
                           void *ctx, char **err);

/* A Lua C module that scripts get with require(name), inside their
 * sandbox. open is a lua_CFunction (lua.h's): it runs in each script's
 * state when that script first requires name, with name as its argument,
 * under the script's memory cap and CPU budget, and returns the module
 * (usually a table from luaL_newlib). Build it against Lua 5.4's headers,
 * the ones liblume was built with. The module is what the script can
 * reach: give it no io, os or debug. name: letters, digits, '_' and '.'
 * (not leading, not doubled), 1..64, not starting with "lume." (lume's own
 * stdlib). 0; -EINVAL (NULL cfg or open, a bad name); -EEXIST (already
 * added); -ENOMEM. cfg unchanged on error. */
struct lua_State;
typedef int (*lume_module_open)(struct lua_State *L);
int lume_config_add_module(lume_config *cfg, const char *name, lume_module_open open,
                           char **err);

/* ---- the runtime -------------------------------------------------------- */

typedef struct lume_runtime lume_runtime;

/* Build a runtime from cfg (copied: free cfg when you like): board,
 * sampler, outbox, store, scripts, network session. Scripts that fail to
 * load are logged and reported, not fatal. NULL with *err set and errno:
 *   EINVAL  the configuration is at fault (checks across keys, unknown or
 *           bad board, bad net.* or twin.* settings, unreadable
 *           certificates or keys, a store that another runtime holds or
 *           another user can write): fix it before trying again;
 *   ENOMEM  out of memory, wherever in the start it ran out (the board,
 *           the stores, the network session, the twin): never reported
 *           as EINVAL, since the configuration is not at fault;
 *   EIO     anything else (the store directory cannot be made, no
 *           thread).
 * What is in the store never fails it: a damaged, empty, read-only or full
 * store is salvaged, spilled or reported (docs/store.md). */
lume_runtime *lume_runtime_new(const lume_config *cfg, char **err);

/* Stop everything, flush the outbox, release rt (NULL is fine). Not while
 * lume_runtime_run runs. */
void lume_runtime_free(lume_runtime *rt);

/* Start the sampler and run the loop on the calling thread until
 * lume_runtime_stop. 0 when stopped; negative when the sampler thread
 * cannot start (-EAGAIN, -EPERM, ...) or the event loop failed (another
 * negative errno code); -EBUSY when it stopped because its store was
 * removed and another runtime took it (its rows saved aside,
 * docs/store.md); the reason is logged. A stop is final: once
 * stopped (even before the first call), run and run_for return 0 at once,
 * and what is left to do is lume_runtime_free. */
int lume_runtime_run(lume_runtime *rt);

/* Run the loop for about ms milliseconds, then return (embedding in your
 * own loop; tests). 0 (also when stopped before the time is up), or
 * negative as lume_runtime_run. */
int lume_runtime_run_for(lume_runtime *rt, int ms);

/* Make lume_runtime_run return soon. Any thread, and signal handlers. */
void lume_runtime_stop(lume_runtime *rt);

/* Reload one script (its name: "rules" for rules.lua) or every script
 * (name NULL) from its file. The old version keeps running on error.
 * 0; -ENOENT no such script; -EINVAL it does not load (*err has
 * file:line); -EPERM the twin manages it (a bundle replaces it only
 * through the twin; reloading every script leaves those alone); -EIO. */
int lume_runtime_reload(lume_runtime *rt, const char *name, char **err);

/* Everything measurable, as a JSON object the caller frees (lume_free):
 * sensors (rates, counters, lateness percentiles), scripts (status,
 * version, errors, memory), outbox lanes, network, process (RSS, uptime).
 * NULL when out of memory. */
char *lume_runtime_stats_json(lume_runtime *rt);

/* The one-line live status (sensors, outbox, scripts, network) into
 * buf[0..n), always NUL-terminated when n > 0, cut when too long. */
void lume_runtime_status_line(lume_runtime *rt, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
