/* core/sample/sampler.h — the timing-critical sampling thread.
 *
 * One thread schedules every channel on absolute deadlines with
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), timer slack at its
 * minimum (PR_SET_TIMERSLACK 1 ns), optionally SCHED_FIFO and mlockall when
 * the options ask and the system allows (a logged fallback otherwise).
 *
 * Each reading is timestamped when it was actually taken and pushed into a
 * lume_ring; the sampler calls opts.wake (the loop's lws_cancel_service) at
 * most the channel's latency bound after a reading reached an empty ring,
 * so readings that share a bound share a wake-up (sampler.c: Wake). The
 * thread never touches Lua, lws or SQLite.
 *
 * Per channel it counts samples, overruns (deadlines missed by a whole
 * period or more; the missed slots are skipped, not bunched up), ring drops,
 * read errors, and keeps a lateness histogram (actual read time minus
 * deadline). Rates change at run time from the loop thread; the new period
 * takes effect from the channel's next deadline. */
#ifndef LUME_SAMPLER_H
#define LUME_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drivers.h"
#include "hist.h"
#include "ring.h"

typedef struct lume_sampler lume_sampler;

typedef struct lume_sampler_opts {
    size_t ring_capacity;   /* samples; default 8192 */
    bool   realtime;        /* ask for SCHED_FIFO */
    int    rt_priority;     /* 1..99, default 50 */
    bool   lock_memory;     /* mlockall(MCL_CURRENT|MCL_FUTURE) */
    bool   pin;             /* pin the thread to CPU `cpu` (logged fallback) */
    int    cpu;
    int    latency_ms;      /* default latency bound of a channel; 0: wake at once */
    void (*wake)(void *ud); /* called on the sampler thread; may be NULL */
    void  *wake_ud;
} lume_sampler_opts;

typedef struct lume_channel_def {
    const char        *name;      /* copied */
    const char        *unit;      /* copied; may be NULL */
    double             rate_hz;   /* initial rate, within [min_hz, max_hz] */
    double             min_hz;
    double             max_hz;
    const lume_driver *driver;
    void              *state;     /* from driver->open; closed by the sampler */
    int                latency_ms; /* longest a reading waits before the loop is woken:
                                      0 = opts.latency_ms, < 0 = at once (alarm-critical) */
} lume_channel_def;

typedef struct lume_channel_stats {
    uint64_t samples;       /* readings pushed into the ring */
    uint64_t overruns;      /* deadlines skipped because the thread was late */
    uint64_t drops;         /* readings lost because the ring was full */
    uint64_t read_errors;   /* driver read failures */
    uint64_t timeouts;      /* of which -ETIMEDOUT (a guarded or polled driver not answering) */
    int32_t  last_error;    /* last negative errno from read, 0 if none */
    double   rate_hz;       /* current rate */
    lume_hist late;         /* lateness: read time - deadline */
} lume_channel_stats;

/* NULL on ENOMEM (opts may be NULL for defaults). */
lume_sampler *lume_sampler_new(const lume_sampler_opts *opts);
/* Stops the thread if running, closes every channel's driver state. */
void          lume_sampler_free(lume_sampler *s);

/* Before start only. Returns the channel index (>= 0), or -EINVAL (bad
 * bounds/rate, duplicate name), -EBUSY (already started), -ENOMEM. On error
 * def->state is NOT closed: the caller still owns it. */
int  lume_sampler_add(lume_sampler *s, const lume_channel_def *def);
/* Start the thread. 0, or negative errno (the thread could not start). */
int  lume_sampler_start(lume_sampler *s);
/* Stop and join. Safe to call twice. */
void lume_sampler_stop(lume_sampler *s);

size_t      lume_sampler_count(const lume_sampler *s);
/* Channel index by name, -ENOENT if none. */
int         lume_sampler_find(const lume_sampler *s, const char *name);
const char *lume_sampler_name(const lume_sampler *s, unsigned ch);
const char *lume_sampler_unit(const lume_sampler *s, unsigned ch);
void        lume_sampler_bounds(const lume_sampler *s, unsigned ch,
                                double *min_hz, double *max_hz);

/* Any thread. Clamps hz into the channel's bounds and stores the applied
 * rate in *applied (may be NULL). 0, or -EINVAL (no such channel, hz not a
 * positive finite number). */
int    lume_sampler_set_rate(lume_sampler *s, unsigned ch, double hz,
                             double *applied);
double lume_sampler_rate(const lume_sampler *s, unsigned ch);

/* The most recent reading of a channel (consistent triple). Returns 0, or
 * -EAGAIN when the channel has not been read yet. */
int  lume_sampler_last(const lume_sampler *s, unsigned ch, double *value,
                       int64_t *t_ns, int32_t *status);

/* Consumer side of the ring (the loop thread only). */
size_t lume_sampler_drain(lume_sampler *s, lume_sample *out, size_t max);
/* Snapshot of one channel's counters. */
void   lume_sampler_stats(const lume_sampler *s, unsigned ch,
                          lume_channel_stats *out);
/* How often the thread called opts.wake so far. */
uint64_t lume_sampler_wakes(const lume_sampler *s);
/* Whether realtime scheduling / memory locking actually took effect. */
bool   lume_sampler_is_realtime(const lume_sampler *s);

#endif
