/* core/sample/guard.c — driver reads on their own thread. See guard.h.
 *
 * States (mu protects st, result, value, orphan):
 *
 *        lume_guard_read posts           thread picks it up
 *   IDLE ------------------------> ASKED ------------------> READING
 *    ^                                                          |
 *    |   read taken (in time)            read returns           |
 *    +--------------------------- DONE <------------------------+
 *    |                              |
 *    +------------------------------+  a late DONE is thrown away by the
 *                                      next lume_guard_read, which posts anew
 *
 * Invariants:
 *   1. Only the thread calls the driver's read; done(ud) runs exactly once,
 *      never while a read runs.
 *   2. lume_guard_read waits at most timeout_ns, and not at all while the
 *      previous read is still ASKED or READING.
 *   3. lume_guard_free never waits on a driver read: with one running it
 *      sets orphan, and the thread releases everything when the read
 *      returns. */
#include "guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

enum { IDLE, ASKED, READING, DONE, QUIT };

struct lume_guard {
    pthread_mutex_t    mu;
    pthread_cond_t     cv_ask;   /* the thread waits for ASKED / QUIT */
    pthread_cond_t     cv_done;  /* lume_guard_read waits for DONE */
    pthread_t          thread;
    int                st;
    int                result;
    double             value;
    bool               orphan;
    int64_t            timeout_ns;
    lume_guard_read_fn read;
    lume_guard_done_fn done;
    void              *ud;
};

static void release(lume_guard *g)
{
    if (g->done)
        g->done(g->ud);
    pthread_cond_destroy(&g->cv_ask);
    pthread_cond_destroy(&g->cv_done);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static void *worker(void *arg)
{
    lume_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (g->st != ASKED && g->st != QUIT)
            pthread_cond_wait(&g->cv_ask, &g->mu);
        if (g->st == QUIT)
            break;
        g->st = READING;
        pthread_mutex_unlock(&g->mu);
        double v = 0;
        int r = g->read(g->ud, &v);
        pthread_mutex_lock(&g->mu);
        if (g->orphan) {            /* freed while we read: ours to release */
            pthread_mutex_unlock(&g->mu);
            release(g);
            return NULL;
        }
        g->result = r;
        g->value = v;
        g->st = DONE;
        pthread_cond_signal(&g->cv_done);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

lume_guard *lume_guard_new(lume_guard_read_fn read, lume_guard_done_fn done, void *ud,
                           int64_t timeout_ns)
{
    lume_guard *g = calloc(1, sizeof *g);
    if (!g) {
        errno = ENOMEM;
        return NULL;
    }
    g->read = read;
    g->done = done;
    g->ud = ud;
    g->timeout_ns = timeout_ns;
    g->st = IDLE;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv_ask, NULL);
    pthread_cond_init(&g->cv_done, &ca);
    pthread_condattr_destroy(&ca);
    int r = pthread_create(&g->thread, NULL, worker, g);
    if (r != 0) {
        g->done = NULL; /* the caller still owns ud */
        release(g);
        errno = r;
        return NULL;
    }
    return g;
}

int lume_guard_read(lume_guard *g, double *out)
{
    pthread_mutex_lock(&g->mu);
    if (g->st == ASKED || g->st == READING) { /* the previous read has not returned */
        pthread_mutex_unlock(&g->mu);
        return -ETIMEDOUT;
    }
    g->st = ASKED; /* a late DONE is dropped here */
    pthread_cond_signal(&g->cv_ask);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + g->timeout_ns;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (g->st != DONE)
        if (pthread_cond_timedwait(&g->cv_done, &g->mu, &ts) == ETIMEDOUT && g->st != DONE) {
            pthread_mutex_unlock(&g->mu);
            return -ETIMEDOUT;
        }
    g->st = IDLE;
    int r = g->result;
    *out = g->value;
    pthread_mutex_unlock(&g->mu);
    return r;
}

void lume_guard_free(lume_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    if (g->st == ASKED || g->st == READING) {
        /* ASKED: the thread will read once more, then see orphan */
        g->orphan = true;
        pthread_mutex_unlock(&g->mu);
        pthread_detach(g->thread);
        return;
    }
    g->st = QUIT;
    pthread_cond_signal(&g->cv_ask);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    release(g);
}
