/* core/net/loop.c — see loop.h.
 *
 * When the loop fails
 * -------------------
 * libwebsockets 4.1 (Debian 12's 4.1.6) makes a failing loop hard to see:
 *
 *   - lws_service() returns < 0 only when the context is being destroyed
 *     (lws_service_fd_tsi sees being_destroyed1, or pt->destroy_self).
 *   - When poll() itself fails, _lws_plat_service_tsi ignores its result:
 *     no descriptor is serviced, but the function returns 0. The usual
 *     causes are EINVAL — more descriptors to poll than RLIMIT_NOFILE
 *     allows, e.g. after `prlimit --nofile` lowered the limit of a running
 *     process — and ENOMEM. The next lws_service() fails the same way at
 *     once: the loop spins at 100% of a CPU, sockets, the sampler's wake-ups
 *     and the control socket are never read again, yet timers still fire
 *     (lws runs ripe timers before it polls), so a watchdog fed from a
 *     timer would be fed forever.
 *
 * So lume_loop_step watches each turn:
 *
 *   1. errno is cleared before lws_service(). After a failed poll, lws runs
 *      no callback (no descriptor has revents) and no system call, so the
 *      turn ends with poll's errno: EINVAL, ENOMEM or EFAULT. Timers run
 *      before poll; lume_timer callbacks leave errno as they found it, so
 *      a timer that fires every turn cannot fake (or hide) a failing poll.
 *   2. A turn that ends with one of those counts towards a "failing
 *      streak". A turn that ends with errno 0, or in which a descriptor
 *      callback ran (a watched fd, a wake-up: proof that poll worked),
 *      ends the streak. Other errno values (left by callbacks) neither
 *      count nor end it.
 *   3. A streak of at least FAIL_TURNS turns lasting at least FAIL_MS
 *      milliseconds fails the loop: poll() fails on every turn. A failing
 *      poll returns in microseconds, so this takes FAIL_MS, while a healthy
 *      loop ends a streak on its next quiet turn.
 *   4. lws_service() < 0 while the loop was not stopped fails it too.
 *
 * A failed loop stays failed: lume_loop_step and lume_loop_run return its
 * error, lume_loop_drain returns at once, lume_loop_error says why.
 *
 * The last millisecond before a timer
 * -----------------------------------
 * lws 4.1 gives poll() the time to its next timer truncated to whole
 * milliseconds: with 0.4 ms left it polls with timeout 0, again and again,
 * until the timer is ripe — a busy wait of up to 1 ms before every timer
 * (measured: ~700 poll() calls a second on an idle device, most of its
 * loop's CPU). So after a quiet turn (no descriptor, wake-up or timer
 * callback, poll() found nothing) with the earliest timer of lume's list
 * less than 1 ms away, the loop sleeps until that timer is due
 * (loop.wakeups.sub_ms_sleeps). Nothing is served later than it would have
 * been but a socket that becomes readable in that last millisecond, by
 * less than a millisecond. */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "log.h"

#define MAX_WAKE 8
#define MAX_PROTOCOLS 16
#define FAIL_TURNS 1000
#define FAIL_MS 100

struct lume_watch {
    lume_loop  *loop;
    struct lws *wsi;
    int         fd;
    void      (*fn)(void *ud, int fd);
    void      (*wfn)(void *ud, int fd);  /* once writable, then NULL */
    void       *ud;
    bool        closing;
    bool        in_wfn;     /* inside wfn: lws drops POLLOUT after it returns */
    bool        rearm;      /* wfn asked again from inside: re-ask after lws */
    lws_sorted_usec_list_t rearm_sul;
};

struct lume_loop {
    struct lws_context  *ctx;
    struct lws_vhost    *vh;
    atomic_bool          stop;
    int                  nwake;
    struct { void (*fn)(void *); void *ud; } wake[MAX_WAKE];
    struct lws_protocols protocols[MAX_PROTOCOLS];
    uint64_t             fd_events;      /* descriptor callbacks so far */
    lume_loop_stats      st;             /* wake-up accounting (loop.h) */
    int64_t              late_epoch_ns;  /* lume_loop_reset_late */
    bool                 turn_woke, turn_fd, turn_timer;
    lws_dll2_owner_t    *sul_owner;      /* lws's list of lume's timers, by due time */
    lws_sorted_usec_list_t step_sul;    /* bounds lume_loop_step's wait (not counted) */
    void               (*on_turn)(void *ud);
    void                *on_turn_ud;
    uint64_t             streak;         /* turns in the failing streak */
    int64_t              streak_start_ns;
    int                  streak_errno;
    int                  failed;         /* 0, or the negative error */
    char                 error[256];
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    lume_log(level == LLL_ERR ? LUME_LOG_ERROR : level == LLL_WARN ? LUME_LOG_WARN
                                                                    : LUME_LOG_DEBUG,
             "lws", "%.*s", (int)n, line);
}

static void rearm_writable(lws_sorted_usec_list_t *sul)
{
    lume_watch *w = lws_container_of(sul, lume_watch, rearm_sul);
    if (w->wsi && !w->closing && w->wfn)
        lws_callback_on_writable(w->wsi);
}

static int cb_core(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                   void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    lume_loop *l = ctx ? lws_context_user(ctx) : NULL;
    lume_watch *w;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (l) {
            l->fd_events++;
            l->turn_woke = true;
            for (int i = 0; i < l->nwake; i++)
                l->wake[i].fn(l->wake[i].ud);
        }
        break;
    case LWS_CALLBACK_RAW_RX_FILE:
        w = lws_get_opaque_user_data(wsi);
        if (l) {
            l->fd_events++;
            l->turn_fd = true;
        }
        if (w && !w->closing)
            w->fn(w->ud, w->fd);
        break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        w = lws_get_opaque_user_data(wsi);
        if (l)
            l->fd_events++;
        if (w && !w->closing && w->wfn) {
            void (*fn)(void *, int) = w->wfn;
            w->wfn = NULL;
            w->in_wfn = true;
            fn(w->ud, w->fd);
            w->in_wfn = false;
            /* lws clears POLLOUT when this returns: ask again on the next
             * turn, before it polls */
            if (w->rearm) {
                w->rearm = false;
                lws_sul_schedule(lws_get_context(wsi), 0, &w->rearm_sul, rearm_writable, 0);
            }
        }
        break;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        w = lws_get_opaque_user_data(wsi);
        if (l)
            l->fd_events++;
        if (w) {
            lws_set_opaque_user_data(wsi, NULL);
            lws_sul_cancel(&w->rearm_sul);
            w->wsi = NULL;
            if (w->closing)
                free(w);
        }
        break;
    default:
        break;
    }
    return 0;
}

lume_loop *lume_loop_new(const struct lws_protocols *extra, char **err)
{
    lume_loop *l = calloc(1, sizeof *l);
    if (!l) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    int n = 0;
    l->protocols[n++] = (struct lws_protocols){.name = "lume-core", .callback = cb_core};
    for (; extra && extra->name; extra++) {
        if (n >= MAX_PROTOCOLS - 1) {
            *err = lume_strdupf("loop: too many protocols (max %d)", MAX_PROTOCOLS - 2);
            free(l);
            return NULL;
        }
        l->protocols[n++] = *extra;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = l->protocols;
    info.user = l;
    /* No TLS library initialisation here: it costs ~4 MB of RSS (OpenSSL on
     * Debian) and most devices never open a wss:// or https:// connection.
     * The vhosts that need TLS (net.c, fetch.c) ask for it themselves. */
    info.options = 0;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;
    l->ctx = lws_create_context(&info);
    if (!l->ctx) {
        *err = lume_strdupf("loop: lws_create_context failed");
        free(l);
        return NULL;
    }
    l->vh = lws_get_vhost_by_name(l->ctx, "default");
    if (!l->vh) {
        *err = lume_strdupf("loop: no default vhost");
        lws_context_destroy(l->ctx);
        free(l);
        return NULL;
    }
    return l;
}

void lume_loop_free(lume_loop *l)
{
    if (!l)
        return;
    lws_context_destroy(l->ctx);
    free(l);
}

struct lws_context *lume_loop_lws(lume_loop *l) { return l->ctx; }
struct lws_vhost *lume_loop_vhost(lume_loop *l) { return l->vh; }

static void fail(lume_loop *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(lume_loop *l, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->error, sizeof l->error, fmt, ap);
    va_end(ap);
    l->failed = code;
    lume_log(LUME_LOG_ERROR, "loop", "%s", l->error);
}

static bool poll_errno(int e) { return e == EINVAL || e == ENOMEM || e == EFAULT; }

/* After a quiet turn: sleep out the last sub-millisecond before the next
 * timer instead of letting lws poll it away (see the top). */
static void sleep_to_timer(lume_loop *l)
{
    if (!l->sul_owner || !l->sul_owner->head)
        return;
    lws_sorted_usec_list_t *next =
        lws_container_of(l->sul_owner->head, lws_sorted_usec_list_t, list);
    lws_usec_t left = next->us - lws_now_usecs();
    if (left <= 0 || left >= 1000)
        return;
    struct timespec ts = {0, (long)left * 1000};
    nanosleep(&ts, NULL);
    l->st.sub_ms_sleeps++;
}

/* One lws_service() turn, watched as described at the top. 0, or the
 * loop's (negative) error. */
static int service(lume_loop *l)
{
    if (l->failed)
        return l->failed;
    uint64_t before = l->fd_events;
    l->turn_woke = l->turn_fd = l->turn_timer = false;
    errno = 0;
    int r = lws_service(l->ctx, 0);
    int e = errno;
    l->st.turns++;
    l->st.wakes += l->turn_woke;
    l->st.fd_events += l->turn_fd;
    l->st.timer_turns += l->turn_timer;
    if (l->on_turn && r >= 0)
        l->on_turn(l->on_turn_ud);
    if (r < 0) {
        if (atomic_load(&l->stop))
            return -ECANCELED;
        fail(l, -EIO, "libwebsockets stopped servicing the loop (lws_service returned %d)", r);
        return l->failed;
    }
    if (l->fd_events != before || e == 0) {
        l->streak = 0;
        if (e == 0 && l->fd_events == before && !l->turn_timer)
            sleep_to_timer(l);
        return 0;
    }
    if (!poll_errno(e))
        return 0;
    int64_t now = mono_ns();
    if (!l->streak++) {
        l->streak_start_ns = now;
        l->streak_errno = e;
    }
    if (l->streak >= FAIL_TURNS && now - l->streak_start_ns >= (int64_t)FAIL_MS * 1000000) {
        struct rlimit rl = {0};
        char lim[64] = "";
        if (e == EINVAL && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            snprintf(lim, sizeof lim, "; RLIMIT_NOFILE is %llu", (unsigned long long)rl.rlim_cur);
        fail(l, -e, "poll() fails on every turn: %s (%llu turns in %lld ms, no descriptor "
             "serviced%s)", strerror(e), (unsigned long long)l->streak,
             (long long)((now - l->streak_start_ns) / 1000000), lim);
    }
    return l->failed;
}

static void step_bound(lws_sorted_usec_list_t *sul) { (void)sul; }

/* lws 4.1's service ignores its timeout: it runs the timers that are due,
 * then waits for the next event or timer, up to 30 s when there is none.
 * The wait is bounded by a timer of the loop's own (not in the stats: it is
 * the caller's deadline, not work). */
int lume_loop_step(lume_loop *l, int timeout_ms)
{
    if (l->failed)
        return l->failed;
    if (atomic_load(&l->stop))
        return -ECANCELED;
    if (timeout_ms >= 0)
        lws_sul_schedule(l->ctx, 0, &l->step_sul, step_bound, (lws_usec_t)timeout_ms * 1000);
    int r = service(l);
    lws_sul_cancel(&l->step_sul);
    if (r < 0)
        return r;
    if (atomic_load(&l->stop))
        return -ECANCELED;
    return 0;
}

int lume_loop_run(lume_loop *l)
{
    /* no bound: an idle loop sleeps until its next event or timer */
    while (!atomic_load(&l->stop)) {
        int r = service(l);
        if (r < 0)
            return r == -ECANCELED ? 0 : r;
    }
    return l->failed;
}

const char *lume_loop_error(const lume_loop *l) { return l->failed ? l->error : NULL; }

static void drain_tick(lume_timer *t) { (void)t; }

bool lume_loop_drain(lume_loop *l, int ms, bool (*done)(void *ud), void *ud)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
    lume_timer t;
    lume_timer_init(&t, l, drain_tick, NULL);
    while (!done(ud)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (now >= end)
            break;
        lume_timer_start(&t, (end - now) * 1000); /* bound the wait */
        if (service(l) < 0)
            break;
    }
    lume_timer_cancel(&t);
    return done(ud);
}

void lume_loop_stop(lume_loop *l)
{
    atomic_store(&l->stop, true);
    lws_cancel_service(l->ctx);
}

bool lume_loop_stopped(const lume_loop *l) { return atomic_load(&l->stop); }

void lume_loop_wake(lume_loop *l) { lws_cancel_service(l->ctx); }

int lume_loop_on_wake(lume_loop *l, void (*fn)(void *ud), void *ud)
{
    if (l->nwake >= MAX_WAKE)
        return -ENOSPC;
    l->wake[l->nwake].fn = fn;
    l->wake[l->nwake].ud = ud;
    l->nwake++;
    return 0;
}

/* Count a timer that fired: by name, and how late. */
static void timer_count(lume_loop *l, lume_timer *t)
{
    l->turn_timer = true;
    l->st.timers++;
    const char *name = t->name ? t->name : "other";
    size_t i;
    for (i = 0; i < l->st.ntimer; i++)
        if (l->st.timer[i].name == name || !strcmp(l->st.timer[i].name, name))
            break;
    if (i == l->st.ntimer && i < LUME_LOOP_MAX_NAMES)
        l->st.timer[l->st.ntimer++].name = name;
    if (i < l->st.ntimer)
        l->st.timer[i].fired++;
    int64_t from = t->due_ns > l->late_epoch_ns ? t->due_ns : l->late_epoch_ns;
    int64_t late = mono_ns() - from;
    if (late > l->st.late_max_ns)
        l->st.late_max_ns = late;
    if (late > 1000000000)
        l->st.late_over_1s++;
}

static void timer_cb(lws_sorted_usec_list_t *sul)
{
    lume_timer *t = lws_container_of(sul, lume_timer, sul);
    int e = errno; /* timers run before poll: what they leave is not poll's */
    timer_count(t->loop, t);
    t->fn(t);
    errno = e;
}

void lume_timer_init(lume_timer *t, lume_loop *l, lume_timer_fn fn, void *ud)
{
    memset(t, 0, sizeof *t);
    t->loop = l;
    t->fn = fn;
    t->ud = ud;
}

void lume_timer_name(lume_timer *t, const char *name) { t->name = name; }

void lume_timer_start(lume_timer *t, int64_t delay_us)
{
    if (delay_us < 0)
        delay_us = 0;
    t->due_ns = mono_ns() + delay_us * 1000;
    lws_sul_schedule(t->loop->ctx, 0, &t->sul, timer_cb, (lws_usec_t)delay_us);
    if (!t->loop->sul_owner)
        t->loop->sul_owner = t->sul.list.owner;
}

void lume_loop_get_stats(const lume_loop *l, lume_loop_stats *out) { *out = l->st; }

void lume_loop_reset_late(lume_loop *l)
{
    l->late_epoch_ns = mono_ns();
    l->st.late_max_ns = 0;
    l->st.late_over_1s = 0;
}

void lume_loop_on_turn(lume_loop *l, void (*fn)(void *ud), void *ud)
{
    l->on_turn = fn;
    l->on_turn_ud = ud;
}

void lume_timer_cancel(lume_timer *t)
{
    if (t->loop)
        lws_sul_cancel(&t->sul);
}

bool lume_timer_pending(const lume_timer *t)
{
    return t->sul.list.owner != NULL;
}

lume_watch *lume_loop_watch_fd(lume_loop *l, int fd, void (*fn)(void *ud, int fd),
                               void *ud, char **err)
{
    lume_watch *w = calloc(1, sizeof *w);
    if (!w) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    w->loop = l;
    w->fd = fd;
    w->fn = fn;
    w->ud = ud;
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = l->vh;
    d.type = LWS_ADOPT_RAW_FILE_DESC;
    d.fd.filefd = fd;
    d.vh_prot_name = "lume-core";
    d.opaque = w;
    w->wsi = lws_adopt_descriptor_vhost_via_info(&d);
    if (!w->wsi) {
        *err = lume_strdupf("loop: cannot watch fd %d", fd);
        free(w);
        return NULL;
    }
    return w;
}

void lume_loop_unwatch(lume_watch *w)
{
    if (!w)
        return;
    if (!w->wsi) {
        free(w);
        return;
    }
    /* lws closes the fd it adopted; hand it a duplicate-free path: mark the
     * watch closing and let RAW_CLOSE_FILE free it. */
    w->closing = true;
    lws_sul_cancel(&w->rearm_sul);
    lws_set_timeout(w->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}

int lume_loop_watch_pause(lume_watch *w, bool paused)
{
    if (!w->wsi || w->closing)
        return -EIO;
    return lws_rx_flow_control(w->wsi, paused ? 0 : 1) < 0 ? -EIO : 0;
}

int lume_loop_watch_writable(lume_watch *w, void (*fn)(void *ud, int fd))
{
    if (!w->wsi || w->closing)
        return -EIO;
    w->wfn = fn;
    if (w->in_wfn) {
        w->rearm = true;
        return 0;
    }
    return lws_callback_on_writable(w->wsi) < 0 ? -EIO : 0;
}

bool lume_loop_watch_open(const lume_watch *w) { return w && w->wsi && !w->closing; }
