/* tests/unit/test_sampler.c — the sampling thread, with test drivers.
 *
 * Timing assertions here are either exact invariants of the scheduler (a
 * reading's lateness is below one period; the span between two readings is
 * within one period of (readings + skipped slots) periods) or generous
 * bounds that only a stalled machine could break. Waits poll with a 10 s
 * ceiling and fail only when that passes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "sampler.h"
#include "testutil.h"

#define WAIT_MS 10000

/* ---- a test driver ----------------------------------------------------- */

typedef struct tdrv {
    atomic_int reads;        /* value of the n-th reading is n */
    atomic_int closed;
    int        sleep_ms;     /* block this long in each read */
    int        fail_every;   /* every n-th read fails with -EIO */
} tdrv;

static int tdrv_read(void *state, int64_t now, double *out)
{
    (void)now;
    tdrv *d = state;
    int n = atomic_fetch_add(&d->reads, 1) + 1;
    if (d->sleep_ms)
        tu_sleep_ms(d->sleep_ms);
    if (d->fail_every && n % d->fail_every == 0)
        return -EIO;
    *out = n;
    return 0;
}

static void tdrv_close(void *state)
{
    tdrv *d = state;
    atomic_fetch_add(&d->closed, 1);
}

static const lume_driver test_driver = {
    .name = "test.counter", .doc = "test", .read = tdrv_read, .close = tdrv_close,
};

static int add(lume_sampler *s, const char *name, double hz, double lo, double hi, tdrv *d)
{
    lume_channel_def def = {
        .name = name, .unit = "n", .rate_hz = hz, .min_hz = lo, .max_hz = hi,
        .driver = &test_driver, .state = d,
    };
    return lume_sampler_add(s, &def);
}

static lume_channel_stats st;   /* large (histogram): not on the stack */

static uint64_t stat_samples(lume_sampler *s, unsigned ch)
{
    lume_sampler_stats(s, ch, &st);
    return st.samples;
}

/* Poll until the channel has pushed at least n samples; false on timeout. */
static bool wait_samples(lume_sampler *s, unsigned ch, uint64_t n)
{
    for (int i = 0; i < WAIT_MS; i++) {
        if (stat_samples(s, ch) >= n)
            return true;
        tu_sleep_ms(1);
    }
    return false;
}

/* Drain everything into a growing array. */
typedef struct { lume_sample *v; size_t n, cap; } sbuf;

static void drain_all(lume_sampler *s, sbuf *b)
{
    for (;;) {
        if (b->cap - b->n < 256) {
            b->cap = b->cap ? b->cap * 2 : 1024;
            b->v = realloc(b->v, b->cap * sizeof *b->v);
            assert_non_null(b->v);
        }
        size_t n = lume_sampler_drain(s, b->v + b->n, b->cap - b->n);
        if (n == 0)
            return;
        b->n += n;
    }
}

/* The scheduler's invariant for one channel at a fixed period P: readings
 * sit on a grid of deadlines, each late by less than P, so the span between
 * the first and last reading is within P of (readings - 1 + skipped) * P. */
static void assert_grid(const lume_sample *v, size_t n, int64_t period, uint64_t overruns)
{
    assert_true(n >= 2);
    int64_t span = v[n - 1].t_ns - v[0].t_ns;
    int64_t grid = ((int64_t)n - 1 + (int64_t)overruns) * period;
    if (llabs(span - grid) >= period)
        fail_msg("span %lld ns vs grid %lld ns (n=%zu, overruns=%llu, P=%lld)",
                 (long long)span, (long long)grid, n, (unsigned long long)overruns,
                 (long long)period);
}

/* ---- tests ------------------------------------------------------------- */

static void test_rate_200hz(void **state)
{
    (void)state;
    tdrv d = {0};
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    assert_int_equal(add(s, "c", 200, 1, 1000, &d), 0);
    double v;
    int64_t t;
    int32_t status;
    assert_int_equal(lume_sampler_last(s, 0, &v, &t, &status), -EAGAIN);

    int64_t t_start = lume_mono_ns();
    assert_int_equal(lume_sampler_start(s), 0);
    tu_sleep_ms(1000);
    lume_sampler_stop(s);
    int64_t t_stop = lume_mono_ns();

    sbuf b = {0};
    drain_all(s, &b);
    lume_sampler_stats(s, 0, &st);
    assert_int_equal(b.n, st.samples);            /* nothing lost in between */
    assert_int_equal(st.drops, 0);
    assert_int_equal(st.read_errors, 0);
    /* ~200 slots in ~1 s. Slots the thread was too late for are skipped and
     * counted as overruns (a loaded machine), so the slots add up either way;
     * most of them must still have been read. */
    uint64_t slots = b.n + st.overruns;
    if (slots < 100 || slots > 300 || b.n < 50)
        fail_msg("%zu samples + %llu overruns in ~1 s at 200 Hz", b.n,
                 (unsigned long long)st.overruns);

    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.v[i].channel, 0);
        assert_int_equal(b.v[i].status, 0);
        assert_true(b.v[i].value == (double)(i + 1));    /* in order, none missing */
        assert_true(b.v[i].t_ns >= t_start && b.v[i].t_ns <= t_stop);
        if (i > 0)
            assert_true(b.v[i].t_ns > b.v[i - 1].t_ns);  /* strictly increasing */
    }
    /* spaced 5 ms: on the 5 ms grid, each reading less than 5 ms late */
    assert_grid(b.v, b.n, 5000000, st.overruns);

    /* wall clock: the same moment on CLOCK_REALTIME */
    int64_t wall_now = lume_wall_ns();
    assert_true(b.v[b.n - 1].wall_ns <= wall_now);
    assert_true(wall_now - b.v[b.n - 1].wall_ns < 60 * LUME_NS_PER_SEC);

    /* lateness: one entry per reading, each below one period */
    assert_int_equal(st.late.count, st.samples);
    assert_true(st.late.max_ns < 5000000);
    assert_true(lume_hist_percentile(&st.late, 50) <= st.late.max_ns);

    /* last() is the last reading, as a consistent triple */
    assert_int_equal(lume_sampler_last(s, 0, &v, &t, &status), 0);
    assert_true(v == b.v[b.n - 1].value);
    assert_int_equal(t, b.v[b.n - 1].t_ns);
    assert_int_equal(status, 0);

    free(b.v);
    lume_sampler_free(s);
    assert_int_equal(atomic_load(&d.closed), 1);
}

static void test_set_rate(void **state)
{
    (void)state;
    tdrv d = {0};
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    /* 0.01 Hz: without a pulled-in deadline the 2nd reading is 100 s away */
    assert_int_equal(add(s, "slow", 0.01, 0.01, 100, &d), 0);

    double applied = 0;
    assert_int_equal(lume_sampler_set_rate(s, 0, 5000, &applied), 0);
    assert_true(applied == 100);
    assert_true(lume_sampler_rate(s, 0) == 100);
    assert_int_equal(lume_sampler_set_rate(s, 0, 0.0001, &applied), 0);
    assert_true(applied == 0.01);
    assert_true(lume_sampler_rate(s, 0) == 0.01);
    assert_int_equal(lume_sampler_set_rate(s, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_sampler_set_rate(s, 0, -5, NULL), -EINVAL);
    assert_int_equal(lume_sampler_set_rate(s, 0, NAN, NULL), -EINVAL);
    assert_int_equal(lume_sampler_set_rate(s, 0, INFINITY, NULL), -EINVAL);
    assert_int_equal(lume_sampler_set_rate(s, 1, 10, NULL), -EINVAL);  /* no channel */
    assert_true(lume_sampler_rate(s, 0) == 0.01);     /* failures changed nothing */

    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 1));               /* first reading at start */
    tu_sleep_ms(30);
    assert_int_equal(stat_samples(s, 0), 1);          /* and the next is far off */

    assert_int_equal(lume_sampler_set_rate(s, 0, 50, &applied), 0);
    assert_true(applied == 50);
    assert_true(wait_samples(s, 0, 30));              /* only with the pull-in */
    lume_sampler_stop(s);

    sbuf b = {0};
    drain_all(s, &b);
    lume_sampler_stats(s, 0, &st);
    assert_true(st.rate_hz == 50);
    assert_true(b.n >= 30);
    /* from the second reading on the channel runs on a 20 ms grid */
    assert_grid(b.v + 1, b.n - 1, 20000000, st.overruns);
    free(b.v);
    lume_sampler_free(s);
}

static void test_overruns(void **state)
{
    (void)state;
    tdrv d = {.sleep_ms = 25};                 /* blocks 2.5 periods at 100 Hz */
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    assert_int_equal(add(s, "stuck", 100, 1, 1000, &d), 0);
    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 10));
    lume_sampler_stop(s);

    sbuf b = {0};
    drain_all(s, &b);
    lume_sampler_stats(s, 0, &st);
    /* each read eats >= 25 ms, so readings start >= 25 ms apart while
     * recorded lateness stays < 10 ms: at least one 10 ms slot is skipped
     * between two readings, never read back-to-back to catch up */
    assert_true(st.overruns >= st.samples - 1);
    assert_true(st.late.max_ns < 10000000);
    for (size_t i = 1; i < b.n; i++)
        assert_true(b.v[i].t_ns - b.v[i - 1].t_ns >= 25000000);
    assert_grid(b.v, b.n, 10000000, st.overruns);
    free(b.v);
    lume_sampler_free(s);
}

static void test_drops(void **state)
{
    (void)state;
    tdrv d = {0};
    lume_sampler_opts o = {.ring_capacity = 4};
    lume_sampler *s = lume_sampler_new(&o);
    assert_non_null(s);
    assert_int_equal(add(s, "fast", 1000, 1, 2000, &d), 0);
    assert_int_equal(lume_sampler_start(s), 0);
    for (int i = 0; i < WAIT_MS; i++) {            /* nobody drains */
        lume_sampler_stats(s, 0, &st);
        if (st.drops >= 10)
            break;
        tu_sleep_ms(1);
    }
    lume_sampler_stop(s);
    lume_sampler_stats(s, 0, &st);
    assert_true(st.drops >= 10);
    assert_int_equal(st.samples, 4);               /* exactly what fit */
    assert_int_equal(st.samples + st.drops, atomic_load(&d.reads));
    lume_sample out[8];
    assert_int_equal(lume_sampler_drain(s, out, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_true(out[i].value == i + 1);        /* the oldest were kept */
    /* last() still follows the readings that were dropped */
    double v;
    assert_int_equal(lume_sampler_last(s, 0, &v, NULL, NULL), 0);
    assert_true(v == (double)atomic_load(&d.reads));
    lume_sampler_free(s);
}

/* ---- wake -------------------------------------------------------------- */

typedef struct waker {
    atomic_int      calls;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            pending;
} waker;

static void on_wake(void *ud)
{
    waker *w = ud;
    atomic_fetch_add(&w->calls, 1);
    pthread_mutex_lock(&w->mu);
    w->pending = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void test_wake(void **state)
{
    (void)state;
    waker w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    tdrv d = {0};
    lume_sampler_opts o = {.wake = on_wake, .wake_ud = &w};
    lume_sampler *s = lume_sampler_new(&o);
    assert_non_null(s);
    assert_int_equal(add(s, "c", 500, 1, 1000, &d), 0);
    assert_int_equal(lume_sampler_start(s), 0);

    /* Nobody drains: only the push into the empty ring wakes. */
    assert_true(wait_samples(s, 0, 20));
    assert_int_equal(atomic_load(&w.calls), 1);

    /* Drained: the next push wakes again. */
    sbuf b = {0};
    drain_all(s, &b);
    uint64_t have = stat_samples(s, 0);
    assert_true(wait_samples(s, 0, have + 1));
    assert_true(atomic_load(&w.calls) >= 2);

    /* A consumer like the event loop: sleep until woken, drain until empty.
     * A lost wake-up would leave it asleep with samples waiting (the ring
     * is never empty again, so no further wake would come): the 5 s timed
     * wait would expire. */
    int timeouts = 0;
    while (b.n < 300) {
        pthread_mutex_lock(&w.mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        while (!w.pending)
            if (pthread_cond_timedwait(&w.cv, &w.mu, &ts) == ETIMEDOUT) {
                timeouts++;
                break;
            }
        w.pending = false;
        pthread_mutex_unlock(&w.mu);
        drain_all(s, &b);
        assert_int_equal(timeouts, 0);
    }
    lume_sampler_stop(s);
    drain_all(s, &b);
    lume_sampler_stats(s, 0, &st);
    assert_int_equal(b.n, st.samples);
    assert_int_equal(st.drops, 0);
    int calls = atomic_load(&w.calls);
    assert_true(calls >= 2 && (uint64_t)calls <= st.samples);
    free(b.v);
    lume_sampler_free(s);
}

/* ---- realtime ---------------------------------------------------------- */

/* The scheduling policy of the thread named lume-sampler, or -1. */
static int sampler_policy(void)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return -1;
    int policy = -1;
    struct dirent *e;
    while ((e = readdir(dir))) {
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f) && !strcmp(comm, "lume-sampler\n"))
            policy = sched_getscheduler(atoi(e->d_name));
        fclose(f);
    }
    closedir(dir);
    return policy;
}

static char logbuf[4096];
static size_t loglen;

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    if (level >= LUME_LOG_WARN)
        loglen += (size_t)snprintf(logbuf + loglen, sizeof logbuf - loglen, "%s: %s\n",
                                   component, msg);
    if (loglen >= sizeof logbuf)
        loglen = sizeof logbuf - 1;
}

/* In a child that has dropped every privilege: start must still work,
 * with a WARN naming what was refused. Returns the child's verdict. */
static int unprivileged_child(void)
{
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            return 10;
    }
    struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_RTPRIO, &zero) != 0 || setrlimit(RLIMIT_MEMLOCK, &zero) != 0)
        return 11;
    /* Without privilege mlockall must fail here, unless a sanitizer has
     * replaced it with a no-op that succeeds (ASan and TSan do): then there
     * is no refusal to report. */
    bool mlock_noop = mlockall(MCL_CURRENT) == 0;
    lume_log_set_sink(capture, NULL);
    tdrv d = {0};
    lume_sampler_opts o = {.realtime = true, .rt_priority = 60, .lock_memory = true};
    lume_sampler *s = lume_sampler_new(&o);
    if (!s || add(s, "c", 200, 1, 1000, &d) != 0)
        return 12;
    if (lume_sampler_start(s) != 0)
        return 13;
    if (!wait_samples(s, 0, 5))
        return 14;
    if (lume_sampler_is_realtime(s))
        return 15;
    if (sampler_policy() != SCHED_OTHER)
        return 16;
    lume_sampler_free(s);
    lume_log_set_sink(NULL, NULL);
    if (!strstr(logbuf, "SCHED_FIFO") || !strstr(logbuf, "EPERM") ||
        !strstr(logbuf, "normal scheduling") || (!mlock_noop && !strstr(logbuf, "mlockall"))) {
        fprintf(stderr, "log was:\n%s", logbuf);
        return 17;
    }
    return 0;
}

static void test_realtime_without_privilege(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(unprivileged_child());
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    if (WEXITSTATUS(ws) != 0)
        fail_msg("unprivileged child failed at step %d", WEXITSTATUS(ws));
}

static void test_realtime_as_is(void **state)
{
    (void)state;
    /* Whatever this process may do: start works, and is_realtime tells the
     * truth about the thread's policy. */
    tdrv d = {0};
    lume_sampler_opts o = {.realtime = true};
    lume_sampler *s = lume_sampler_new(&o);
    assert_non_null(s);
    assert_int_equal(add(s, "c", 100, 1, 1000, &d), 0);
    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 3));
    int policy = sampler_policy();
    assert_int_equal(policy, lume_sampler_is_realtime(s) ? SCHED_FIFO : SCHED_OTHER);
    lume_sampler_free(s);
}

/* ---- stop, errors, bookkeeping ------------------------------------------ */

static void test_stop_is_prompt(void **state)
{
    (void)state;
    tdrv d = {0};
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    assert_int_equal(add(s, "rare", 0.01, 0.01, 1, &d), 0);   /* next read in 100 s */
    assert_int_equal(lume_sampler_start(s), 0);
    assert_int_equal(lume_sampler_start(s), -EBUSY);
    assert_true(wait_samples(s, 0, 1));
    tu_sleep_ms(20);
    int64_t t0 = lume_mono_ns();
    lume_sampler_stop(s);
    int64_t took = lume_mono_ns() - t0;
    if (took > 2 * LUME_NS_PER_SEC)                 /* at once: stop ends the futex sleep */
        fail_msg("stop took %lld ms", (long long)(took / LUME_NS_PER_MS));
    lume_sampler_stop(s);                           /* twice is fine */
    /* restartable */
    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 2));
    lume_sampler_free(s);                           /* stops it */
    assert_int_equal(atomic_load(&d.closed), 1);
}

/* Wake-ups coalesce by latency bound (sampler.c, Wake): a 200 Hz channel
 * with a 200 ms bound wakes the consumer about 5 times a second, not 200;
 * every reading still arrives, none waits longer than the bound before its
 * wake-up; an alarm-critical channel (latency_ms < 0) wakes it on every
 * pass; and the sampler thread itself sleeps between passes instead of
 * waking every 50 ms. */
typedef struct coal {
    lume_sampler *s;
    sbuf          b;
    int64_t       worst_wait;     /* longest a reading waited for its wake-up */
    atomic_int    calls;
} coal;

static void coal_wake(void *ud)
{
    coal *c = ud;
    int64_t now = lume_mono_ns();
    size_t from = c->b.n;
    drain_all(c->s, &c->b);       /* a consumer on the wake-up thread: fine here */
    for (size_t i = from; i < c->b.n; i++)
        if (now - c->b.v[i].t_ns > c->worst_wait)
            c->worst_wait = now - c->b.v[i].t_ns;
    atomic_fetch_add(&c->calls, 1);
}

static void test_wake_coalesced(void **state)
{
    (void)state;
    coal c = {0};
    tdrv d = {0}, a = {0};
    lume_sampler_opts o = {.wake = coal_wake, .wake_ud = &c, .latency_ms = 200};
    c.s = lume_sampler_new(&o);
    assert_non_null(c.s);
    assert_int_equal(add(c.s, "fast", 200, 1, 1000, &d), 0);
    assert_int_equal(lume_sampler_start(c.s), 0);
    tu_sleep_ms(1000);
    lume_sampler_stop(c.s);
    int calls = atomic_load(&c.calls);
    uint64_t pushed = stat_samples(c.s, 0);
    drain_all(c.s, &c.b);
    assert_int_equal(c.b.n, pushed);                  /* nothing lost */
    assert_true(pushed >= 100);
    if (calls > 20)                                   /* ~5; 200 without bounds */
        fail_msg("%d wake-ups for %llu readings with a 200 ms bound", calls,
                 (unsigned long long)pushed);
    if (c.worst_wait > 200 * LUME_NS_PER_MS + 100 * LUME_NS_PER_MS)
        fail_msg("a reading waited %lld ms for its wake-up (bound 200 ms)",
                 (long long)(c.worst_wait / LUME_NS_PER_MS));
    lume_sampler_free(c.s);
    free(c.b.v);

    /* the same channel beside an alarm-critical one: every pass wakes */
    coal c2 = {0};
    o.wake_ud = &c2;
    c2.s = lume_sampler_new(&o);
    assert_non_null(c2.s);
    assert_int_equal(add(c2.s, "fast", 200, 1, 1000, &d), 0);
    lume_channel_def alarm = {.name = "door", .rate_hz = 20, .min_hz = 1, .max_hz = 100,
                              .driver = &test_driver, .state = &a, .latency_ms = -1};
    assert_int_equal(lume_sampler_add(c2.s, &alarm), 1);
    assert_int_equal(lume_sampler_start(c2.s), 0);
    tu_sleep_ms(1000);
    lume_sampler_stop(c2.s);
    uint64_t doors = stat_samples(c2.s, 1);
    if ((uint64_t)atomic_load(&c2.calls) < doors * 3 / 4)
        fail_msg("%d wake-ups for %llu alarm-critical readings", atomic_load(&c2.calls),
                 (unsigned long long)doors);
    assert_int_equal(lume_sampler_wakes(c2.s), (uint64_t)atomic_load(&c2.calls));
    lume_sampler_free(c2.s);
    free(c2.b.v);
}

/* Context switches of the sampler thread of this process (its schedstat). */
static long sampler_tid(void);
static uint64_t thread_switches(long tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    FILE *f = fopen(path, "r");
    unsigned long long a = 0, b = 0, n = 0;
    if (f) {
        if (fscanf(f, "%llu %llu %llu", &a, &b, &n) != 3)
            n = 0;
        fclose(f);
    }
    return n;
}

static void test_idle_sleeps(void **state)
{
    (void)state;
    tdrv d = {0};
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    assert_int_equal(add(s, "slow", 0.5, 0.01, 100, &d), 0);   /* every 2 s */
    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 1));
    long tid = sampler_tid();
    if (!tid)
        skip();
    uint64_t n0 = thread_switches(tid);
    tu_sleep_ms(1000);
    uint64_t n1 = thread_switches(tid);
    /* with 50 ms slices it was ~20; now at most the one reading due */
    if (n1 - n0 > 3)
        fail_msg("the idle sampler ran %llu times in 1 s", (unsigned long long)(n1 - n0));
    /* a rate change reaches a thread in a long sleep at once */
    uint64_t have = stat_samples(s, 0);
    assert_int_equal(lume_sampler_set_rate(s, 0, 100, NULL), 0);
    assert_true(wait_samples(s, 0, have + 20));
    lume_sampler_free(s);
}

/* The sampler thread of this process, by its name; 0 when not found. */
static long sampler_tid(void)
{
    DIR *d = opendir("/proc/self/task");
    long tid = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f) && !strncmp(comm, "lume-sampler", 12))
            tid = atol(e->d_name);
        fclose(f);
    }
    if (d)
        closedir(d);
    return tid;
}

/* Timer slack at its minimum (1 ns), and sampler.cpu pins the thread. */
static void test_slack_and_pinning(void **state)
{
    (void)state;
    tdrv d = {0};
    lume_sampler_opts o = {.pin = true, .cpu = 0};
    lume_sampler *s = lume_sampler_new(&o);
    assert_non_null(s);
    assert_int_equal(add(s, "c", 100, 1, 1000, &d), 0);
    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 2));
    long tid = sampler_tid();
    assert_true(tid > 0);
    char path[128];
    snprintf(path, sizeof path, "/proc/self/task/%ld/timerslack_ns", tid);
    FILE *f = fopen(path, "r");
    if (f) { /* kernels since 4.6 */
        unsigned long slack = 0;
        assert_int_equal(fscanf(f, "%lu", &slack), 1);
        fclose(f);
        assert_int_equal(slack, 1);
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity((pid_t)tid, sizeof set, &set), 0);
    assert_int_equal(CPU_COUNT(&set), 1);
    assert_true(CPU_ISSET(0, &set));
    lume_sampler_free(s);
}

static void test_read_errors(void **state)
{
    (void)state;
    tdrv d = {.fail_every = 3};
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    assert_int_equal(add(s, "flaky", 200, 1, 1000, &d), 0);
    assert_int_equal(lume_sampler_start(s), 0);
    assert_true(wait_samples(s, 0, 12));
    lume_sampler_stop(s);
    sbuf b = {0};
    drain_all(s, &b);
    lume_sampler_stats(s, 0, &st);
    uint64_t failed = 0;
    for (size_t i = 0; i < b.n; i++) {
        if ((i + 1) % 3 == 0) {
            assert_int_equal(b.v[i].status, -EIO);
            assert_true(isnan(b.v[i].value));
            failed++;
        } else {
            assert_int_equal(b.v[i].status, 0);
            assert_true(b.v[i].value == (double)(i + 1));
        }
    }
    assert_true(failed >= 4);
    assert_int_equal(st.read_errors, failed);
    assert_int_equal(st.last_error, -EIO);
    assert_int_equal(st.samples, b.n);              /* failures are pushed too */
    double v;
    int32_t status;
    assert_int_equal(lume_sampler_last(s, 0, &v, NULL, &status), 0);
    assert_int_equal(status, b.v[b.n - 1].status);
    free(b.v);
    lume_sampler_free(s);
}

static void test_add_and_lookup(void **state)
{
    (void)state;
    tdrv a = {0}, b = {0}, late = {0};
    lume_sampler *s = lume_sampler_new(NULL);
    assert_non_null(s);
    assert_int_equal(add(s, "a", 10, 1, 100, &a), 0);
    assert_int_equal(add(s, "b", 5, 5, 5, &b), 1);
    assert_int_equal(add(s, "a", 10, 1, 100, &late), -EINVAL);    /* duplicate */
    assert_int_equal(add(s, "x", 10, 20, 100, &late), -EINVAL);   /* rate < min */
    assert_int_equal(add(s, "x", 10, 1, 5, &late), -EINVAL);      /* rate > max */
    assert_int_equal(add(s, "x", 10, 50, 5, &late), -EINVAL);     /* min > max */
    assert_int_equal(add(s, "x", 0, 0, 5, &late), -EINVAL);
    assert_int_equal(add(s, "x", NAN, 1, 5, &late), -EINVAL);
    assert_int_equal(add(s, "", 1, 1, 5, &late), -EINVAL);
    lume_channel_def nodrv = {.name = "y", .rate_hz = 1, .min_hz = 1, .max_hz = 1};
    assert_int_equal(lume_sampler_add(s, &nodrv), -EINVAL);

    assert_int_equal(lume_sampler_count(s), 2);
    assert_int_equal(lume_sampler_find(s, "b"), 1);
    assert_int_equal(lume_sampler_find(s, "zz"), -ENOENT);
    assert_string_equal(lume_sampler_name(s, 0), "a");
    assert_string_equal(lume_sampler_unit(s, 1), "n");
    assert_null(lume_sampler_name(s, 7));
    double lo, hi;
    lume_sampler_bounds(s, 0, &lo, &hi);
    assert_true(lo == 1 && hi == 100);
    assert_true(lume_sampler_rate(s, 1) == 5);

    assert_int_equal(lume_sampler_start(s), 0);
    assert_int_equal(add(s, "c", 1, 1, 1, &late), -EBUSY);
    lume_sampler_free(s);
    assert_int_equal(atomic_load(&a.closed), 1);
    assert_int_equal(atomic_load(&b.closed), 1);
    assert_int_equal(atomic_load(&late.closed), 0);    /* refused: caller's to close */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_lookup),
        cmocka_unit_test(test_rate_200hz),
        cmocka_unit_test(test_set_rate),
        cmocka_unit_test(test_overruns),
        cmocka_unit_test(test_drops),
        cmocka_unit_test(test_wake),
        cmocka_unit_test(test_wake_coalesced),
        cmocka_unit_test(test_idle_sleeps),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_slack_and_pinning),
        cmocka_unit_test(test_stop_is_prompt),
        cmocka_unit_test(test_realtime_without_privilege),
        cmocka_unit_test(test_realtime_as_is),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
