/* core/sample/guard.h — a driver read that cannot hold up the sampler.
 *
 * A driver lume did not write (an OEM's, lume.h) may block: a bus that
 * hangs, a server that stops answering. A guard runs its reads on a thread
 * of their own; the sampler hands a request over and waits at most the
 * guard's timeout. A read still running when the next one is due is not
 * waited for again: that reading fails at once with -ETIMEDOUT. So a hung
 * driver costs the sampler one timeout, then nothing, and its readings
 * resume when the read returns. */
#ifndef LUME_GUARD_H
#define LUME_GUARD_H

#include <stdint.h>

typedef struct lume_guard lume_guard;

/* The read the guard runs: 0 and *out, or a negative errno-style code. */
typedef int (*lume_guard_read_fn)(void *ud, double *out);
/* What releases ud: called once, by lume_guard_free, or by the guard's
 * thread when a read was still running at lume_guard_free (once it
 * returns). */
typedef void (*lume_guard_done_fn)(void *ud);

/* A guard with its thread. NULL with errno set (ENOMEM, EAGAIN). */
lume_guard *lume_guard_new(lume_guard_read_fn read, lume_guard_done_fn done, void *ud,
                           int64_t timeout_ns);
/* One reading, from one thread at a time (the sampler's). 0 and *out;
 * -ETIMEDOUT (the read took longer than the timeout, or the previous one
 * has not returned yet); or the read's own negative code. */
int  lume_guard_read(lume_guard *g, double *out);
/* Stop the thread and call done(ud). When a read is stuck, the thread is
 * left to finish it, then calls done and frees the guard itself; lume
 * waits for nothing (a read that never returns leaks its thread). NULL is
 * fine. */
void lume_guard_free(lume_guard *g);

#endif
