/* core/sample/outsvc.c — the output service. See outsvc.h for its rules.
 *
 * One thread per output, one pending value per output (latest wins):
 *
 *     set / release / free              thread
 *   ┌──────┐  pending = v   ┌────────┐  takes pending  ┌─────────┐
 *   │ IDLE │ ─────────────► │ QUEUED │ ──────────────► │ WRITING │
 *   └──────┘                └────────┘                 └─────────┘
 *      ▲     write returned, nothing pending               │
 *      └───────────────────────────────────────────────────┘
 *        (pending again while WRITING: QUEUED after it, the older value
 *         replaced and counted as coalesced)
 *
 * Invariants
 *   1. The loop thread never waits on a driver: set and release only take
 *      the output's mutex, which the thread never holds across a write.
 *   2. A fail-safe request replaces whatever is pending, and is written
 *      even when the set before it failed.
 *   3. Only lume_outsvc_free joins the threads; a write stuck past the
 *      wait of rule 6 leaves its thread detached (it owns nothing shared
 *      but the output, which is then leaked rather than closed under it). */
#include "outsvc.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

typedef struct out {
    char                     *name;
    const lume_output_driver *drv;
    void                     *state;
    lume_output_opts          o;
    const void               *owner;
    char                     *owner_name;
    int64_t                   last_set_ns;
    double                    value;        /* last asked for */
    lume_log_target          *log;          /* the adder's (log.h, rule 3) */
    pthread_t                 thread;
    pthread_mutex_t           mu;
    pthread_cond_t            cv;           /* work queued, or quit */
    pthread_cond_t            cv_idle;      /* nothing queued or writing */
    bool                      queued, writing, quit, failsafe_pending;
    double                    pending;
    uint64_t                  sets, writes, write_errors, timeouts, rate_limited, refused,
                              coalesced, failsafes;
    char                      last_error[160];
} out;

struct lume_outsvc {
    out  **v;
    size_t n;
};

static void *writer(void *arg)
{
    out *o = arg;
    lume_log_use(o->log);
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (!o->queued && !o->quit)
            pthread_cond_wait(&o->cv, &o->mu);
        if (!o->queued && o->quit)
            break;
        double v = o->pending;
        bool fs = o->failsafe_pending;
        o->queued = false;
        o->failsafe_pending = false;
        o->writing = true;
        pthread_mutex_unlock(&o->mu);
        char *err = NULL;
        int64_t t0 = lume_mono_ns();
        int r = o->drv->write(o->state, v, &err);
        int64_t took = lume_mono_ns() - t0;
        pthread_mutex_lock(&o->mu);
        o->writing = false;
        o->writes++;
        if (r < 0 || took > o->o.timeout_ns) {
            if (r == -ETIMEDOUT || took > o->o.timeout_ns)
                o->timeouts++;
            else
                o->write_errors++;
            snprintf(o->last_error, sizeof o->last_error, "%s",
                     err ? err : r < 0 ? strerror(-r) : "write took longer than its timeout");
            if (!o->quit) /* quit and still here: left running, its log target may be gone */
                lume_log(LUME_LOG_ERROR, "output", "%s: writing %g%s failed: %s (%.0f ms)",
                         o->name, v, fs ? " (fail-safe)" : "", o->last_error, (double)took / 1e6);
        }
        free(err);
        if (!o->queued)
            pthread_cond_broadcast(&o->cv_idle);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

/* Queue v (o->mu held). */
static void queue(out *o, double v, bool failsafe)
{
    if (o->queued)
        o->coalesced++;
    o->pending = v;
    o->queued = true;
    o->failsafe_pending = failsafe;
    o->value = v;
    if (failsafe)
        o->failsafes++;
    pthread_cond_signal(&o->cv);
}

lume_outsvc *lume_outsvc_new(void)
{
    return calloc(1, sizeof(lume_outsvc));
}

int lume_outsvc_find(const lume_outsvc *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->v[i]->name, name))
            return (int)i;
    return -ENOENT;
}

size_t lume_outsvc_count(const lume_outsvc *s) { return s ? s->n : 0; }

int lume_outsvc_add(lume_outsvc *s, const char *name, const lume_output_driver *drv,
                    void *state, const lume_output_opts *opts, char **err)
{
    if (lume_outsvc_find(s, name) >= 0) {
        lume_set_err(err, "output %s: declared twice", name);
        drv->close(state);
        return -EEXIST;
    }
    out **nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    out *o = calloc(1, sizeof *o);
    if (nv)
        s->v = nv;
    if (!nv || !o || !(o->name = strdup(name))) {
        free(o);
        drv->close(state);
        lume_set_err(err, "output %s: out of memory", name);
        return -ENOMEM;
    }
    o->drv = drv;
    o->state = state;
    o->log = lume_log_current();
    o->o = *opts;
    if (o->o.timeout_ns <= 0)
        o->o.timeout_ns = LUME_NS_PER_SEC;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    pthread_cond_init(&o->cv_idle, NULL);
    int r = pthread_create(&o->thread, NULL, writer, o);
    if (r != 0) {
        drv->close(state);
        free(o->name);
        free(o);
        lume_set_err(err, "output %s: no thread: %s", name, strerror(r));
        return -r;
    }
    s->v[s->n++] = o;
    pthread_mutex_lock(&o->mu);
    queue(o, o->o.failsafe, true); /* rule 1 */
    o->failsafes = 0;              /* the start is not a fail-safe event */
    pthread_mutex_unlock(&o->mu);
    return 0;
}

int lume_outsvc_claim(lume_outsvc *s, int i, const void *owner, const char *owner_name,
                      char **err)
{
    out *o = s->v[i];
    pthread_mutex_lock(&o->mu);
    int r = 0;
    if (o->owner && o->owner != owner && strcmp(o->owner_name, owner_name) != 0) {
        lume_set_err(err, "output %s is driven by script %s", o->name, o->owner_name);
        o->refused++;
        r = -EBUSY;
    } else if (o->owner != owner) {
        char *n = strdup(owner_name);
        if (!n) {
            r = -ENOMEM;
            lume_set_err(err, "out of memory");
        } else {
            free(o->owner_name);
            o->owner_name = n;
            o->owner = owner;
        }
    }
    pthread_mutex_unlock(&o->mu);
    return r;
}

int lume_outsvc_set(lume_outsvc *s, int i, const void *owner, double v, char **err)
{
    out *o = s->v[i];
    int r = 0;
    pthread_mutex_lock(&o->mu);
    int64_t now = lume_mono_ns();
    if (o->owner != owner) {
        lume_set_err(err, "output %s: not driven by this script (owner: %s)", o->name,
                     o->owner_name ? o->owner_name : "none");
        o->refused++;
        r = -EPERM;
    } else if (!(v >= o->o.min && v <= o->o.max)) {
        lume_set_err(err, "output %s: %g is outside [%g, %g]", o->name, v, o->o.min, o->o.max);
        o->refused++;
        r = -ERANGE;
    } else if (o->o.max_rate_hz > 0 && o->last_set_ns &&
               (double)(now - o->last_set_ns) < 1e9 / o->o.max_rate_hz) {
        lume_set_err(err, "output %s: rate limited (max_rate_hz = %g)", o->name, o->o.max_rate_hz);
        o->rate_limited++;
        r = -EAGAIN;
    } else {
        o->last_set_ns = now;
        o->sets++;
        queue(o, v, false);
    }
    pthread_mutex_unlock(&o->mu);
    return r;
}

double lume_outsvc_get(const lume_outsvc *s, int i)
{
    out *o = s->v[i];
    pthread_mutex_lock(&o->mu);
    double v = o->value;
    pthread_mutex_unlock(&o->mu);
    return v;
}

int lume_outsvc_release(lume_outsvc *s, const void *owner, const char *why)
{
    int n = 0;
    for (size_t i = 0; s && owner && i < s->n; i++) {
        out *o = s->v[i];
        pthread_mutex_lock(&o->mu);
        if (o->owner == owner) {
            lume_log(LUME_LOG_WARN, "output", "%s: fail-safe %g (script %s %s)", o->name,
                     o->o.failsafe, o->owner_name, why);
            queue(o, o->o.failsafe, true);
            o->owner = NULL;
            free(o->owner_name);
            o->owner_name = NULL;
            o->last_set_ns = 0;
            n++;
        }
        pthread_mutex_unlock(&o->mu);
    }
    return n;
}

static int wait_idle(out *o, int64_t deadline_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t left = deadline_ns - lume_mono_ns();
    if (left < 0)
        left = 0;
    int64_t ns = ts.tv_nsec + left;
    ts.tv_sec += (time_t)(ns / LUME_NS_PER_SEC);
    ts.tv_nsec = (long)(ns % LUME_NS_PER_SEC);
    int r = 0;
    pthread_mutex_lock(&o->mu);
    while ((o->queued || o->writing) && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&o->cv_idle, &o->mu, &ts);
    bool busy = o->queued || o->writing;
    pthread_mutex_unlock(&o->mu);
    return busy ? -ETIMEDOUT : 0;
}

int lume_outsvc_flush(lume_outsvc *s, int64_t timeout_ns)
{
    int64_t dl = lume_mono_ns() + timeout_ns;
    int r = 0;
    for (size_t i = 0; s && i < s->n; i++)
        if (wait_idle(s->v[i], dl) < 0)
            r = -ETIMEDOUT;
    return r;
}

void lume_outsvc_stats(lume_outsvc *s, size_t i, lume_output_stats *st)
{
    out *o = s->v[i];
    pthread_mutex_lock(&o->mu);
    st->name = o->name;
    st->driver = o->drv->name;
    st->owner = o->owner_name ? o->owner_name : "";
    st->value = o->value;
    st->failsafe = o->o.failsafe;
    st->sets = o->sets;
    st->writes = o->writes;
    st->write_errors = o->write_errors;
    st->timeouts = o->timeouts;
    st->rate_limited = o->rate_limited;
    st->refused = o->refused;
    st->coalesced = o->coalesced;
    st->failsafes = o->failsafes;
    memcpy(st->last_error, o->last_error, sizeof st->last_error);
    pthread_mutex_unlock(&o->mu);
}

void lume_outsvc_free(lume_outsvc *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        out *o = s->v[i];
        pthread_mutex_lock(&o->mu);
        if (o->owner || o->value != o->o.failsafe)
            lume_log(LUME_LOG_INFO, "output", "%s: fail-safe %g (shutdown)", o->name,
                     o->o.failsafe);
        queue(o, o->o.failsafe, true);
        pthread_mutex_unlock(&o->mu);
    }
    int64_t wait = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i]->o.timeout_ns > wait)
            wait = s->v[i]->o.timeout_ns;
    int64_t grace = 2 * wait + 500 * LUME_NS_PER_MS; /* one write running, then the fail-safe */
    int64_t dl = lume_mono_ns() + grace;
    for (size_t i = 0; i < s->n; i++) {
        out *o = s->v[i];
        bool stuck = wait_idle(o, dl) < 0;
        pthread_mutex_lock(&o->mu);
        o->quit = true;
        pthread_cond_signal(&o->cv);
        pthread_mutex_unlock(&o->mu);
        if (stuck) { /* invariant 3 */
            lume_log(LUME_LOG_ERROR, "output", "%s: the fail-safe write did not finish in "
                     "%.0f ms; left running", o->name, (double)grace / 1e6);
            pthread_detach(o->thread);
            continue;
        }
        pthread_join(o->thread, NULL);
        o->drv->close(o->state);
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->cv);
        pthread_cond_destroy(&o->cv_idle);
        free(o->name);
        free(o->owner_name);
        free(o);
    }
    free(s->v);
    free(s);
}
