/* core/base/log.h — leveled logging shared by every part of lume.
 *
 * Thread-safe: the sampler thread may log (rarely: realtime fallbacks, read
 * failures rate-limited by the caller). A line is formatted once and handed
 * to the sink under a mutex. The default sink writes
 *   2026-11-26T12:00:00.123Z WARN  sampler: message
 * to stderr.
 *
 * Where a line goes. Each thread has a log target (lume_log_use): a level
 * and, optionally, a sink of its own. A runtime has one (bindings/runtime.c)
 * and makes it the target of its loop thread for the length of each call
 * into it, and of the threads it starts; code that runs outside any runtime
 * (the CLI before and after its runtime, tools, tests) uses the process
 * default: lume_log_set_level / lume_log_set_sink with no target in use.
 *   1. A line is dropped when below the level of the calling thread's
 *      target (the process default's when it has none).
 *   2. It goes to the target's sink when it has one, else to the process
 *      default sink; one sink is never called by two threads at once.
 *   3. A thread started by a module on behalf of its caller (the sampler,
 *      the watchdog, the outbox's checkpointer) takes its creator's target:
 *      lume_log_current() when it is created, lume_log_use() when it runs. */
#ifndef LUME_LOG_H
#define LUME_LOG_H

#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* The levels and the sink type are public too (bindings/lume.h declares the
 * same under the same guard). */
#ifndef LUME_LOG_LEVELS_DEFINED
#define LUME_LOG_LEVELS_DEFINED
enum {
    LUME_LOG_DEBUG = 0,
    LUME_LOG_INFO  = 1,
    LUME_LOG_WARN  = 2,
    LUME_LOG_ERROR = 3,
};
typedef void (*lume_log_sink)(void *ud, int level, const char *component,
                              const char *msg);
#endif

/* Log one line. component names the part of lume ("sampler", "outbox",
 * "script rules.lua"). Lines below the current level are dropped. */
void lume_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lume_logv(int level, const char *component, const char *fmt, va_list ap);

/* A log target: a level, and a sink (NULL: the process default sink). The
 * sink is fixed at init; the level may change at any time. */
struct lume_log_ring;
typedef struct lume_log_target {
    _Atomic int     level;
    _Atomic unsigned long long lines[4]; /* warn and error lines, by level, even when
                                            below the level (only those are counted) */
    lume_log_sink   sink;
    void           *ud;
    pthread_mutex_t mu;   /* one call of sink at a time; the ring */
    struct lume_log_ring *ring; /* its last LUME_LOG_RING lines (NULL: out of memory) */
    _Atomic int     tap_level;  /* lines at or above it also go to tap, even below
                                   `level` (LUME_LOG_TAP_OFF: none); lume_log_target_tap */
    lume_log_sink   tap;        /* under mu */
    void           *tap_ud;
} lume_log_target;

/* A target keeps its last lines, whatever its sink, for those who follow
 * the log (`.tail` in the REPL, the web console). */
#define LUME_LOG_RING 128
/* The lines of t with a sequence number above *seq (at most the last
 * `last` of them when *seq is 0), each "HH:MM:SS.mmm LEVEL component:
 * message\n", as one malloc'd string ("" when none; NULL when out of
 * memory); *seq becomes the newest line's number. Any thread. */
char *lume_log_tail(lume_log_target *t, uint64_t *seq, int last);

void lume_log_target_init(lume_log_target *t, int level, lume_log_sink sink, void *ud);
void lume_log_target_destroy(lume_log_target *t);
void lume_log_target_set_level(lume_log_target *t, int level);
/* How many lines at `level` (LUME_LOG_WARN or LUME_LOG_ERROR) were logged
 * to t since it was made; 0 for the other levels. */
unsigned long long lume_log_target_lines(lume_log_target *t, int level);
/* A tap on t: a second sink with a level of its own (a remote log stream,
 * runtime/remote_log.c), called for every line at or above tap_level from
 * whichever thread logs it, under t's mutex, whatever t's own level. A
 * line logged from inside a tap is dropped (never recursive). tap NULL or
 * tap_level LUME_LOG_TAP_OFF removes it; once this returns the old tap is
 * not running and will not be called again. */
#define LUME_LOG_TAP_OFF 4
void lume_log_target_tap(lume_log_target *t, lume_log_sink tap, void *ud, int tap_level);
/* Make t the calling thread's target (NULL: the process default) and
 * return the one it had. t must outlive its use on the thread. */
lume_log_target *lume_log_use(lume_log_target *t);
/* The calling thread's target (NULL: the process default). */
lume_log_target *lume_log_current(void);

/* The level of the calling thread's target: the runtime's whose call runs
 * on this thread, else the process default. */
void lume_log_set_level(int level);
int  lume_log_get_level(void);
/* "debug"|"info"|"warn"|"error" -> level; -1 for anything else. */
int  lume_log_level_parse(const char *name);
const char *lume_log_level_name(int level);

/* Replace the process default sink (NULL restores stderr): it receives the
 * lines of every thread whose target has no sink of its own. Extra sinks
 * are not chained: a sink that wants stderr too calls lume_log_stderr
 * itself. */
void lume_log_set_sink(lume_log_sink fn, void *ud);
void lume_log_stderr(void *ud, int level, const char *component, const char *msg);

/* printf into a fresh malloc'd string (for char **err out-parameters).
 * Returns NULL only when out of memory. */
char *lume_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* snprintf whose output may be cut on purpose (paths, SQL, messages into a
 * fixed buffer): the same result, without -Wformat-truncation's warnings. */
int lume_fmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* *err = lume_strdupf(fmt, ...) when err is not NULL; nothing otherwise. */
void lume_set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether an error message says that memory ran out: NULL (the message
 * itself could not be made) or one that ends in "out of memory", as every
 * out-of-memory failure's message does. So a caller that gets only *err
 * back tells "out of memory" (ENOMEM) from a fault of its input. */
bool lume_err_oom(const char *err);
/* strerror(e) for a message, except ENOMEM: "out of memory" (the words
 * lume_err_oom looks for). */
const char *lume_strerror(int e);

/* s[0..len) for a message: in double quotes, well-formed UTF-8 and
 * printable ASCII as they are, '"' and '\\' escaped, anything else as \0,
 * \n, \t, \xNN; past max_bytes of s it stops with "..." after the quote.
 * Writes into buf (always NUL-terminated when n > 0) and returns buf. */
char *lume_quote(char *buf, size_t n, const char *s, size_t len, size_t max_bytes);

#endif
