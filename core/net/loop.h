/* core/net/loop.h — the one event loop: a libwebsockets context on the main
 * thread that owns lws, Lua and SQLite.
 *
 *   lume_loop_new ─► lume_loop_run ──(lws_service until stopped)──► free
 *                        ▲    │
 *   other thread:        │    ├─ timers: lws sul (lume_timer)
 *   lume_loop_wake ──────┘    ├─ wake handlers (LWS_CALLBACK_EVENT_WAIT_CANCELLED)
 *   (lws_cancel_service)      └─ watched fds (inotify, control socket)
 *
 * Only lume_loop_wake and lume_loop_stop may be called from another thread
 * (or a signal handler); everything else belongs to the loop thread.
 *
 * A loop ends in one of two ways: stopped (lume_loop_stop: a clean end), or
 * failed — libwebsockets gave up (lws_service < 0), or poll() fails on every
 * turn (see "When the loop fails" in loop.c). A failed loop stays failed:
 * lume_loop_run returns its error and lume_loop_error says why, so the
 * process can exit non-zero and its supervisor restart it. */
#ifndef LUME_LOOP_H
#define LUME_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <libwebsockets.h>

typedef struct lume_loop lume_loop;

typedef struct lume_timer lume_timer;
typedef void (*lume_timer_fn)(lume_timer *t);
struct lume_timer {
    lws_sorted_usec_list_t sul;   /* first: lws schedules this */
    lume_loop    *loop;
    lume_timer_fn fn;
    void         *ud;
    const char   *name;           /* lume_timer_name; NULL counts as "other" */
    int64_t       due_ns;         /* CLOCK_MONOTONIC it is armed for */
};

/* extra: NULL, or a protocol table (terminated by an all-zero entry) that
 * the loop's vhost serves besides its own (the network session adds its
 * protocols here). NULL on error with *err set. */
lume_loop *lume_loop_new(const struct lws_protocols *extra, char **err);
void       lume_loop_free(lume_loop *l);

struct lws_context *lume_loop_lws(lume_loop *l);
struct lws_vhost   *lume_loop_vhost(lume_loop *l);

/* Service until lume_loop_stop. 0 when stopped; when the loop failed, a
 * negative errno-style code (-EINVAL, -ENOMEM: poll() fails; -EIO: lws gave
 * up) and lume_loop_error says why. */
int  lume_loop_run(lume_loop *l);
/* One pass of the loop, waiting at most timeout_ms for something to happen.
 * 0; -ECANCELED when the loop was stopped; another negative code (as
 * lume_loop_run) when it failed. */
int  lume_loop_step(lume_loop *l, int timeout_ms);
/* Service the loop, even when stopped, until done(ud) is true or ms have
 * passed (a clean goodbye on shutdown); at once when the loop failed.
 * Returns done's last answer. */
bool lume_loop_drain(lume_loop *l, int ms, bool (*done)(void *ud), void *ud);
/* Why the loop failed ("poll() fails on every turn: ..."), or NULL while it
 * has not. The string belongs to the loop. */
const char *lume_loop_error(const lume_loop *l);
/* Any thread, or a signal handler. */
void lume_loop_stop(lume_loop *l);
bool lume_loop_stopped(const lume_loop *l);
/* Any thread: the loop wakes and calls every wake handler. */
void lume_loop_wake(lume_loop *l);

/* Loop thread. At most 8 handlers. 0 or -ENOSPC. */
int  lume_loop_on_wake(lume_loop *l, void (*fn)(void *ud), void *ud);

void lume_timer_init(lume_timer *t, lume_loop *l, lume_timer_fn fn, void *ud);
/* Name the timer in the loop's wake-up accounting (a static string). */
void lume_timer_name(lume_timer *t, const char *name);
/* (Re)arm to fire once after delay_us. */
void lume_timer_start(lume_timer *t, int64_t delay_us);
void lume_timer_cancel(lume_timer *t);
bool lume_timer_pending(const lume_timer *t);

/* What woke the loop, for `lume stats` (loop.wakeups) and a count of idle
 * cost: every turn of the loop is one poll() return, caused by a timer
 * (counted by name), a cross-thread lume_loop_wake (sampler, committer,
 * signals), a watched fd, or a socket lws serves (MQTT, console, fetch:
 * "socket or lws" = the turns none of the others explain). */
#define LUME_LOOP_MAX_NAMES 24
typedef struct lume_loop_stats {
    uint64_t turns;              /* lws_service() calls */
    uint64_t wakes;              /* turns that ran the wake handlers */
    uint64_t fd_events;          /* turns with a watched-fd callback */
    uint64_t timer_turns;        /* turns in which a timer fired */
    uint64_t timers;             /* timer callbacks */
    size_t   ntimer;             /* named entries below */
    struct { const char *name; uint64_t fired; } timer[LUME_LOOP_MAX_NAMES];
    int64_t  late_max_ns;        /* longest a timer fired after its time */
    uint64_t late_over_1s;       /* timers that fired over a second late */
    uint64_t sub_ms_sleeps;      /* last sub-millisecond before a timer slept, not
                                    polled away (loop.c) */
} lume_loop_stats;
void lume_loop_get_stats(const lume_loop *l, lume_loop_stats *out);
/* Forget lateness so far (loading scripts is not a stall of the running
 * loop): what a timer armed before was late by counts from now. */
void lume_loop_reset_late(lume_loop *l);
/* fn(ud) after every turn of the loop (loop thread; one hook): what must be
 * armed once something is pending (the outbox's commit timer) is armed
 * there instead of ticking while idle. */
void lume_loop_on_turn(lume_loop *l, void (*fn)(void *ud), void *ud);

/* Watch a readable file descriptor (not a socket lws knows about): fn runs on
 * the loop when fd is readable. The loop takes fd over and closes it when the
 * watch ends (lume_loop_unwatch or lume_loop_free). Returns a handle for
 * lume_loop_unwatch, or NULL with *err set (fd is then still the caller's). */
typedef struct lume_watch lume_watch;
lume_watch *lume_loop_watch_fd(lume_loop *l, int fd, void (*fn)(void *ud, int fd),
                               void *ud, char **err);
void        lume_loop_unwatch(lume_watch *w);
/* Stop (paused) or resume read callbacks: POLLIN leaves the poll set, so a
 * descriptor that stays readable (EOF, a listening socket that cannot
 * accept) does not wake the loop. 0, or -EIO when lws refused. */
int         lume_loop_watch_pause(lume_watch *w, bool paused);
/* fn(ud, fd) runs once, when fd can be written (POLLOUT). Call again to
 * wait again — from inside fn too. 0, or -EIO when lws refused (or the
 * descriptor is already closed: lws closes it on a hang-up while reads are
 * paused). */
int         lume_loop_watch_writable(lume_watch *w, void (*fn)(void *ud, int fd));
/* False once the descriptor is closed or closing (unwatched, or lws closed
 * it on a hang-up): its number may already belong to another file. */
bool        lume_loop_watch_open(const lume_watch *w);

#endif
