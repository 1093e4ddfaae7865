/* core/sample/sampler.c — the timing-critical sampling thread. See sampler.h.
 *
 * Scheduling
 *   Every channel has an absolute deadline D (int64 ns, CLOCK_MONOTONIC)
 *   and a period P. One iteration of the thread:
 *     1. apply rate changes published by lume_sampler_set_rate;
 *     2. find the earliest deadline E, and W, the time the loop must be
 *        woken by (see Wake); if the earlier of the two is in the future,
 *        sleep until it, then start over. A sleep of up to IDLE_SLICE_NS
 *        is clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME); a longer one
 *        is a futex wait on `kick` with the same absolute deadline (and the
 *        same timer slack), which stop and set_rate interrupt by bumping
 *        `kick`: an idle low-rate sampler wakes only when a channel is due,
 *        not every slice;
 *     3. read every channel whose deadline has come;
 *     4. call opts.wake if W has come.
 *   At start every channel is due at once (first reading immediately).
 *
 * One reading of a channel (take_reading):
 *   t    = lume_mono_ns()  right BEFORE the driver read (the sample's t_ns)
 *   wall = lume_wall_ns()  right after t, also before the read (wall_ns)
 *   lateness L = t - D. If L >= P the thread is a whole period or more
 *   behind: the k = L / P missed slots are skipped (D += k*P, overruns += k),
 *   so 0 <= L < P always holds for what is recorded, and no catch-up burst
 *   of back-to-back reads ever happens. L goes into the channel's lateness
 *   histogram, the reading into the ring (drops += 1 when it is full), and
 *   D += P. A failed read (negative return) is counted in read_errors,
 *   remembered in last_error, and still pushed, with value NAN and the
 *   error as status.
 *   Consequence (tested): between two readings of one channel at a fixed
 *   rate, t2 - t1 is within one period of (1 + overruns in between) * P.
 *
 * Rate changes (any thread -> sampler thread)
 *   set_rate clamps hz, then under rate_mu writes {rate, period, pull} of
 *   the channel inside a per-channel seqlock (rate_seq, odd while writing).
 *   pull = (time of the call) + new period. The thread, at step 1, copies a
 *   consistent {period, pull}; if its pending deadline is later than pull
 *   (the new period is shorter than what remains) the deadline is pulled in
 *   to pull. The new period is used from that deadline on.
 *
 * Last reading (sampler thread -> any thread)
 *   value bits, t and status are atomics written inside a per-channel
 *   seqlock (last_seq: 0 = never read, odd = being written).
 *
 * Wake (coalesced by latency bound)
 *   Each channel has a latency bound B (lume_channel_def.latency_ms: the
 *   longest a reading of it may wait in the ring before the loop is woken;
 *   0 takes opts.latency_ms, negative means at once: alarm-critical). The
 *   thread keeps W, the time the loop must be woken by (INT64_MAX: none
 *   owed). After a push:
 *     - the ring was empty (lume_ring_count() <= 1 right after the push;
 *       ring.c invariant 4 makes this race-free against a consumer that
 *       drains until empty): the loop has taken everything before, a new
 *       batch starts, W = t + B;
 *     - else, while a wake is owed (W != INT64_MAX): W = min(W, t + B);
 *     - else the loop was woken and has not drained yet: it will take this
 *       sample too, nothing is owed;
 *     - the ring is half full or more: W = now (never a drop for the sake
 *       of a later wake).
 *   After every due channel of a pass was read, opts.wake is called once
 *   if W has come, and W = INT64_MAX. So a reading reaches the loop at most
 *   B after it was taken (plus the loop's own latency), a channel with
 *   B < 0 wakes the loop in the pass that read it, and channels sharing a
 *   bound and a rate cost one wake-up per batch instead of one per pass.
 *
 * Realtime
 *   lume_sampler_start asks for mlockall (opts.lock_memory) in the calling
 *   thread and creates the thread with an explicit SCHED_FIFO attribute
 *   (opts.realtime). When the system refuses, a WARN names the cause and the
 *   sampler runs anyway (normal scheduling / unlocked memory). Memory locked
 *   with mlockall stays locked for the life of the process. */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define IDLE_SLICE_NS     (50 * LUME_NS_PER_MS)
#define DEFAULT_RING      8192
#define DEFAULT_RT_PRIO   50
#define THREAD_STACK      (512 * 1024)
#define MIN_HZ            1e-6          /* one reading every ~11.6 days */
#define MAX_HZ            1e6           /* one reading per microsecond */

typedef struct chan {
    char              *name;
    char              *unit;
    double             min_hz, max_hz;
    const lume_driver *drv;
    void              *state;

    /* rate: written by set_rate (under rate_mu), read by the thread */
    _Atomic uint32_t   rate_seq;
    _Atomic double     rate_hz;
    _Atomic int64_t    period_ns;
    _Atomic int64_t    pull_ns;

    /* the thread's own */
    int64_t            deadline;
    int64_t            period;
    uint32_t           rate_seen;
    int64_t            latency;      /* wake bound, ns; < 0: at once */

    /* counters: written by the thread, read by anyone */
    _Atomic uint64_t   samples, overruns, drops, read_errors, timeouts;
    _Atomic int32_t    last_error;
    lume_hist          late;

    /* last reading */
    _Atomic uint32_t   last_seq;
    _Atomic uint64_t   last_bits;
    _Atomic int64_t    last_t;
    _Atomic int32_t    last_status;
} chan;

struct lume_sampler {
    lume_sampler_opts opts;
    lume_ring        *ring;
    chan            **ch;
    size_t            n, cap;
    pthread_mutex_t   rate_mu;
    pthread_t         thread;
    lume_log_target  *log;          /* its starter's log target (log.h, rule 3) */
    bool              running;      /* loop thread's view: thread exists */
    _Atomic bool      stop;
    _Atomic uint32_t  kick;         /* bumped by stop and set_rate: ends a futex sleep */
    int64_t           wake_at;      /* the thread's W (see Wake), INT64_MAX: none owed */
    _Atomic uint64_t  wakes;        /* opts.wake calls */
    bool              rt_ok;        /* SCHED_FIFO granted */
    bool              mlock_ok;     /* mlockall succeeded */
};

static const char *errname(int e)
{
    switch (e) {
    case EPERM:  return "EPERM";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EAGAIN: return "EAGAIN";
    case ENOSYS: return "ENOSYS";
    default:     return "error";
    }
}

static int64_t period_of(double hz)
{
    double p = 1e9 / hz;
    int64_t ns = (int64_t)llround(p);
    return ns < 1 ? 1 : ns;
}

/* ---- construction ------------------------------------------------------ */

lume_sampler *lume_sampler_new(const lume_sampler_opts *opts)
{
    lume_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (opts)
        s->opts = *opts;
    if (s->opts.ring_capacity == 0)
        s->opts.ring_capacity = DEFAULT_RING;
    if (s->opts.rt_priority < 1 || s->opts.rt_priority > 99)
        s->opts.rt_priority = DEFAULT_RT_PRIO;
    s->ring = lume_ring_new(s->opts.ring_capacity);
    if (!s->ring)
        goto err;
    if (pthread_mutex_init(&s->rate_mu, NULL) != 0)
        goto err;
    atomic_init(&s->stop, false);
    atomic_init(&s->kick, 0);
    atomic_init(&s->wakes, 0);
    return s;
err:
    lume_ring_free(s->ring);
    free(s);
    return NULL;
}

void lume_sampler_free(lume_sampler *s)
{
    if (!s)
        return;
    lume_sampler_stop(s);
    for (size_t i = 0; i < s->n; i++) {
        chan *c = s->ch[i];
        if (c->drv->close)
            c->drv->close(c->state);
        free(c->name);
        free(c->unit);
        free(c);
    }
    free(s->ch);
    lume_ring_free(s->ring);
    pthread_mutex_destroy(&s->rate_mu);
    free(s);
}

static bool hz_ok(double hz)
{
    return isfinite(hz) && hz >= MIN_HZ && hz <= MAX_HZ;
}

int lume_sampler_add(lume_sampler *s, const lume_channel_def *def)
{
    if (s->running)
        return -EBUSY;
    if (!def || !def->name || !def->name[0] || !def->driver || !def->driver->read)
        return -EINVAL;
    if (!hz_ok(def->min_hz) || !hz_ok(def->max_hz) || def->min_hz > def->max_hz ||
        !(def->rate_hz >= def->min_hz && def->rate_hz <= def->max_hz))
        return -EINVAL;
    if (lume_sampler_find(s, def->name) >= 0)
        return -EINVAL;
    if (s->n > (size_t)INT32_MAX)
        return -ENOMEM;

    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 8;
        chan **nch = realloc(s->ch, ncap * sizeof *nch);
        if (!nch)
            return -ENOMEM;
        s->ch = nch;
        s->cap = ncap;
    }
    chan *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->name = strdup(def->name);
    c->unit = def->unit ? strdup(def->unit) : NULL;
    if (!c->name || (def->unit && !c->unit))
        goto err;
    c->min_hz = def->min_hz;
    c->max_hz = def->max_hz;
    c->drv = def->driver;
    c->state = def->state;
    c->latency = def->latency_ms < 0 ? -1 : (int64_t)(def->latency_ms ? def->latency_ms
                                                                        : s->opts.latency_ms) *
                                              LUME_NS_PER_MS;
    if (c->latency == 0)
        c->latency = -1; /* opts.latency_ms 0: every channel wakes at once */
    atomic_init(&c->rate_seq, 0);
    atomic_init(&c->rate_hz, def->rate_hz);
    atomic_init(&c->period_ns, period_of(def->rate_hz));
    atomic_init(&c->pull_ns, INT64_MAX);
    atomic_init(&c->samples, 0);
    atomic_init(&c->overruns, 0);
    atomic_init(&c->drops, 0);
    atomic_init(&c->read_errors, 0);
    atomic_init(&c->timeouts, 0);
    atomic_init(&c->last_error, 0);
    atomic_init(&c->last_seq, 0);
    atomic_init(&c->last_bits, 0);
    atomic_init(&c->last_t, 0);
    atomic_init(&c->last_status, 0);
    lume_hist_reset(&c->late);
    s->ch[s->n] = c;
    return (int)s->n++;
err:
    free(c->name);
    free(c->unit);
    free(c);
    return -ENOMEM;
}

/* ---- the thread -------------------------------------------------------- */

/* Sleep until `when` (CLOCK_MONOTONIC). A short sleep is clock_nanosleep;
 * a long one a futex wait that a bump of s->kick past `seen` ends early
 * (FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time). */
static void sleep_until(lume_sampler *s, int64_t now, int64_t when, uint32_t seen)
{
    struct timespec ts = {
        .tv_sec = (time_t)(when / LUME_NS_PER_SEC),
        .tv_nsec = (long)(when % LUME_NS_PER_SEC),
    };
    if (when - now <= IDLE_SLICE_NS) {
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        return;
    }
    syscall(SYS_futex, &s->kick, FUTEX_WAIT_BITSET_PRIVATE, seen, &ts, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

static void kick(lume_sampler *s)
{
    atomic_fetch_add_explicit(&s->kick, 1, memory_order_release);
    syscall(SYS_futex, &s->kick, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Step 1: take a consistent {period, pull} published by set_rate. A write
 * still in progress is picked up on a later iteration. */
static void apply_rate(chan *c)
{
    uint32_t seq = atomic_load_explicit(&c->rate_seq, memory_order_acquire);
    if (seq == c->rate_seen || (seq & 1u))
        return;
    int64_t period = atomic_load_explicit(&c->period_ns, memory_order_relaxed);
    int64_t pull = atomic_load_explicit(&c->pull_ns, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&c->rate_seq, memory_order_relaxed) != seq)
        return;
    c->rate_seen = seq;
    c->period = period;
    if (c->deadline > pull)
        c->deadline = pull;
}

static void publish_last(chan *c, double v, int64_t t, int32_t status)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t seq = atomic_load_explicit(&c->last_seq, memory_order_relaxed);
    atomic_store_explicit(&c->last_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&c->last_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&c->last_t, t, memory_order_relaxed);
    atomic_store_explicit(&c->last_status, status, memory_order_relaxed);
    atomic_store_explicit(&c->last_seq, seq + 2, memory_order_release);
}

static void count(_Atomic uint64_t *ctr, uint64_t by)
{
    /* single writer: a relaxed load + store is enough */
    atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

/* One reading of channel idx into the ring; moves s->wake_at (see Wake). */
static void take_reading(lume_sampler *s, unsigned idx)
{
    chan *c = s->ch[idx];
    int64_t t = lume_mono_ns();
    int64_t late = t - c->deadline;
    if (late >= c->period) {
        int64_t k = late / c->period;
        c->deadline += k * c->period;
        late -= k * c->period;
        count(&c->overruns, (uint64_t)k);
    }
    int64_t wall = lume_wall_ns();
    double v = NAN;
    int rc = c->drv->read(c->state, t, &v);
    if (rc < 0) {
        v = NAN;
        count(&c->read_errors, 1);
        if (rc == -ETIMEDOUT)
            count(&c->timeouts, 1);
        atomic_store_explicit(&c->last_error, rc, memory_order_relaxed);
    } else {
        rc = 0;
    }
    lume_hist_record(&c->late, (uint64_t)(late > 0 ? late : 0));
    publish_last(c, v, t, rc);

    lume_sample smp = {
        .t_ns = t, .wall_ns = wall, .value = v, .channel = idx, .status = rc,
    };
    if (lume_ring_push(s->ring, &smp)) {
        count(&c->samples, 1);
        size_t n = lume_ring_count(s->ring);
        int64_t by = c->latency < 0 ? t : t + c->latency;
        if (n <= 1 || s->wake_at != INT64_MAX) {
            if (n <= 1 || by < s->wake_at)
                s->wake_at = by;
        }
        if (n >= lume_ring_capacity(s->ring) / 2 && s->wake_at > t)
            s->wake_at = t;
    } else {
        count(&c->drops, 1);
        s->wake_at = t;
    }
    c->deadline += c->period;
}

static void *run(void *arg)
{
    lume_sampler *s = arg;
    lume_log_use(s->log);
    pthread_setname_np(pthread_self(), "lume-sampler");
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

    int64_t now = lume_mono_ns();
    for (size_t i = 0; i < s->n; i++) {
        chan *c = s->ch[i];
        c->rate_seen = atomic_load_explicit(&c->rate_seq, memory_order_acquire) & ~1u;
        c->period = atomic_load_explicit(&c->period_ns, memory_order_relaxed);
        c->deadline = now;
    }

    s->wake_at = INT64_MAX;
    for (;;) {
        uint32_t seen = atomic_load_explicit(&s->kick, memory_order_acquire);
        if (atomic_load_explicit(&s->stop, memory_order_relaxed))
            break;
        int64_t next = INT64_MAX;
        for (size_t i = 0; i < s->n; i++) {
            apply_rate(s->ch[i]);
            if (s->ch[i]->deadline < next)
                next = s->ch[i]->deadline;
        }
        now = lume_mono_ns();
        int64_t until = next < s->wake_at ? next : s->wake_at;
        if (until > now) {
            sleep_until(s, now, until, seen);
            continue;
        }
        /* read every due channel first, then wake the loop once: waking
         * costs ~10 us and would delay the channels after the first */
        if (next <= now)
            for (size_t i = 0; i < s->n; i++)
                if (s->ch[i]->deadline <= now)
                    take_reading(s, (unsigned)i);
        if (s->wake_at <= lume_mono_ns()) {
            s->wake_at = INT64_MAX;
            count(&s->wakes, 1);
            if (s->opts.wake)
                s->opts.wake(s->opts.wake_ud);
        }
    }
    return NULL;
}

/* ---- control ----------------------------------------------------------- */

int lume_sampler_start(lume_sampler *s)
{
    if (s->running)
        return -EBUSY;
    atomic_store(&s->stop, false);
    s->rt_ok = false;
    s->mlock_ok = false;

    if (s->opts.lock_memory) {
        if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0) {
            s->mlock_ok = true;
        } else {
            int e = errno;
            lume_log(LUME_LOG_WARN, "sampler",
                     "mlockall refused (%s: %s): running with unlocked memory",
                     errname(e), strerror(e));
        }
    }

    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return -rc;
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    s->log = lume_log_current();
    if (s->opts.realtime) {
        struct sched_param sp = { .sched_priority = s->opts.rt_priority };
        pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
        pthread_attr_setschedparam(&attr, &sp);
        rc = pthread_create(&s->thread, &attr, run, s);
        if (rc == 0) {
            s->rt_ok = true;
        } else {
            lume_log(LUME_LOG_WARN, "sampler",
                     "SCHED_FIFO priority %d refused (%s: %s): running with normal scheduling",
                     s->opts.rt_priority, errname(rc), strerror(rc));
            pthread_attr_setinheritsched(&attr, PTHREAD_INHERIT_SCHED);
        }
    }
    if (!s->rt_ok)
        rc = pthread_create(&s->thread, &attr, run, s);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -rc;
    if (s->opts.pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(s->opts.cpu, &set);
        int e = pthread_setaffinity_np(s->thread, sizeof set, &set);
        if (e)
            lume_log(LUME_LOG_WARN, "sampler", "cannot pin the sampler to CPU %d (%s: %s): "
                     "running unpinned", s->opts.cpu, errname(e), strerror(e));
    }
    s->running = true;
    return 0;
}

void lume_sampler_stop(lume_sampler *s)
{
    if (!s || !s->running)
        return;
    atomic_store(&s->stop, true);
    kick(s);
    pthread_join(s->thread, NULL);
    s->running = false;
}

/* ---- queries ----------------------------------------------------------- */

size_t lume_sampler_count(const lume_sampler *s)
{
    return s->n;
}

int lume_sampler_find(const lume_sampler *s, const char *name)
{
    if (name)
        for (size_t i = 0; i < s->n; i++)
            if (!strcmp(s->ch[i]->name, name))
                return (int)i;
    return -ENOENT;
}

const char *lume_sampler_name(const lume_sampler *s, unsigned ch)
{
    return ch < s->n ? s->ch[ch]->name : NULL;
}

const char *lume_sampler_unit(const lume_sampler *s, unsigned ch)
{
    return ch < s->n ? s->ch[ch]->unit : NULL;
}

void lume_sampler_bounds(const lume_sampler *s, unsigned ch, double *min_hz,
                         double *max_hz)
{
    if (min_hz)
        *min_hz = ch < s->n ? s->ch[ch]->min_hz : 0;
    if (max_hz)
        *max_hz = ch < s->n ? s->ch[ch]->max_hz : 0;
}

int lume_sampler_set_rate(lume_sampler *s, unsigned ch, double hz, double *applied)
{
    if (ch >= s->n || !isfinite(hz) || !(hz > 0))
        return -EINVAL;
    chan *c = s->ch[ch];
    if (hz < c->min_hz)
        hz = c->min_hz;
    if (hz > c->max_hz)
        hz = c->max_hz;
    int64_t period = period_of(hz);

    pthread_mutex_lock(&s->rate_mu);
    uint32_t seq = atomic_load_explicit(&c->rate_seq, memory_order_relaxed);
    atomic_store_explicit(&c->rate_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&c->rate_hz, hz, memory_order_relaxed);
    atomic_store_explicit(&c->period_ns, period, memory_order_relaxed);
    atomic_store_explicit(&c->pull_ns, lume_mono_ns() + period, memory_order_relaxed);
    atomic_store_explicit(&c->rate_seq, seq + 2, memory_order_release);
    pthread_mutex_unlock(&s->rate_mu);
    kick(s); /* a thread in a long sleep picks the new deadline up now */

    if (applied)
        *applied = hz;
    return 0;
}

double lume_sampler_rate(const lume_sampler *s, unsigned ch)
{
    if (ch >= s->n)
        return 0;
    return atomic_load_explicit(&s->ch[ch]->rate_hz, memory_order_relaxed);
}

/* -EINVAL when ch is out of range (not in the header's list). */
int lume_sampler_last(const lume_sampler *s, unsigned ch, double *value,
                      int64_t *t_ns, int32_t *status)
{
    if (ch >= s->n)
        return -EINVAL;
    chan *c = s->ch[ch];
    uint64_t bits;
    int64_t t;
    int32_t st;
    for (unsigned spins = 0;; spins++) {
        uint32_t s1 = atomic_load_explicit(&c->last_seq, memory_order_acquire);
        if (s1 == 0)
            return -EAGAIN;
        if (!(s1 & 1u)) {
            bits = atomic_load_explicit(&c->last_bits, memory_order_relaxed);
            t = atomic_load_explicit(&c->last_t, memory_order_relaxed);
            st = atomic_load_explicit(&c->last_status, memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&c->last_seq, memory_order_relaxed) == s1)
                break;
        }
        if (spins > 64)
            sched_yield();      /* the writer was preempted mid-update */
    }
    if (value)
        memcpy(value, &bits, sizeof *value);
    if (t_ns)
        *t_ns = t;
    if (status)
        *status = st;
    return 0;
}

size_t lume_sampler_drain(lume_sampler *s, lume_sample *out, size_t max)
{
    return lume_ring_pop(s->ring, out, max);
}

void lume_sampler_stats(const lume_sampler *s, unsigned ch, lume_channel_stats *out)
{
    memset(out, 0, sizeof *out);
    if (ch >= s->n)
        return;
    chan *c = s->ch[ch];
    out->samples = atomic_load_explicit(&c->samples, memory_order_relaxed);
    out->overruns = atomic_load_explicit(&c->overruns, memory_order_relaxed);
    out->drops = atomic_load_explicit(&c->drops, memory_order_relaxed);
    out->read_errors = atomic_load_explicit(&c->read_errors, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&c->timeouts, memory_order_relaxed);
    out->last_error = atomic_load_explicit(&c->last_error, memory_order_relaxed);
    out->rate_hz = atomic_load_explicit(&c->rate_hz, memory_order_relaxed);
    lume_hist_snapshot(&c->late, &out->late);
}

uint64_t lume_sampler_wakes(const lume_sampler *s)
{
    return atomic_load_explicit(&s->wakes, memory_order_relaxed);
}

bool lume_sampler_is_realtime(const lume_sampler *s)
{
    return s->rt_ok && (!s->opts.lock_memory || s->mlock_ok);
}
