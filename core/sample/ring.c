/* core/sample/ring.c — lock-free SPSC ring of samples. See ring.h.
 *
 * Indices are free-running size_t counters: head counts pushes, tail counts
 * pops, both only grow (wrapping modulo 2^N, which the power-of-two mask
 * makes harmless). The ring holds head - tail samples; it is empty when they
 * are equal and full when head - tail == capacity. Slot i is buf[i & mask].
 *
 * Invariants:
 *  1. Only the producer stores head; only the consumer stores tail.
 *  2. The producer writes a slot, then publishes it with a release store of
 *     head; the consumer observes head with acquire before reading slots.
 *     The mirror holds for tail: the consumer's release store of tail hands
 *     the slots back to the producer, who loads tail with acquire.
 *  3. Each side keeps a private cached copy of the other side's index and
 *     only reloads it when the cache says full (producer) or empty
 *     (consumer), so the shared cache lines bounce only when they must.
 *  4. After publishing its index each side issues a seq_cst fence. With
 *     that, a producer that pushes and then sees lume_ring_count() <= 1, and
 *     a consumer that pops until pop returns 0, can never both miss each
 *     other: either the consumer's last look sees the new sample, or the
 *     producer sees the ring was drained and wakes the consumer. The
 *     sampler's "wake only when the ring was empty" rule relies on this.
 *
 * head (with the producer's cache) and tail (with the consumer's cache) sit
 * on separate 64-byte cache lines; the read-only fields on a third. */
#include "ring.h"

#include "check.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE 64

struct lume_ring {
    /* producer's line */
    alignas(CACHE_LINE) _Atomic size_t head;
    size_t tail_cache;                  /* producer's last view of tail */
    /* consumer's line */
    alignas(CACHE_LINE) _Atomic size_t tail;
    size_t head_cache;                  /* consumer's last view of head */
    /* read-only after lume_ring_new */
    alignas(CACHE_LINE) size_t mask;
    lume_sample *buf;
};

lume_ring *lume_ring_new(size_t capacity)
{
    size_t cap = 2;
    while (cap < capacity) {
        if (cap > ((size_t)-1 >> 1) / sizeof(lume_sample))
            return NULL;                /* would overflow: treat as ENOMEM */
        cap <<= 1;
    }
    lume_ring *r = aligned_alloc(CACHE_LINE, sizeof *r);
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    r->buf = calloc(cap, sizeof *r->buf);
    if (!r->buf) {
        free(r);
        return NULL;
    }
    r->mask = cap - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    return r;
}

void lume_ring_free(lume_ring *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

bool lume_ring_push(lume_ring *r, const lume_sample *s)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head - r->tail_cache > r->mask) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head - r->tail_cache > r->mask)
            return false;               /* full */
    }
    lume_check(atomic_load_explicit(&r->tail, memory_order_relaxed) - r->tail_cache <=
                   r->mask + 1,
               "invariant 3: the producer's cached tail is never ahead of tail");
    r->buf[head & r->mask] = *s;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);   /* invariant 4 */
    return true;
}

size_t lume_ring_pop(lume_ring *r, lume_sample *out, size_t max)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t avail = r->head_cache - tail;
    if (avail < max) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        avail = r->head_cache - tail;
    }
    size_t n = avail < max ? avail : max;
    lume_check(avail <= r->mask + 1, "invariant 3: the consumer's cached head is never ahead of "
               "head, and the ring never holds more than its capacity");
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        out[i] = r->buf[(tail + i) & r->mask];
    atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);   /* invariant 4 */
    return n;
}

size_t lume_ring_count(const lume_ring *r)
{
    /* Load tail first: head only grows, so head - tail never underflows. */
    size_t tail = atomic_load_explicit(&((lume_ring *)r)->tail, memory_order_acquire);
    size_t head = atomic_load_explicit(&((lume_ring *)r)->head, memory_order_acquire);
    return head - tail;
}

size_t lume_ring_capacity(const lume_ring *r)
{
    return r->mask + 1;
}
