/* core/sample/ring.h — lock-free single-producer / single-consumer ring of samples.
 *
 * The sampler thread is the only producer, the event loop the only consumer.
 * Capacity is a power of two; head and tail are C11 atomics on separate cache
 * lines (release on publish, acquire on observe). Nothing allocates after
 * lume_ring_new. A full ring refuses the push: the caller counts the drop. */
#ifndef LUME_RING_H
#define LUME_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lume_sample {
    int64_t  t_ns;     /* CLOCK_MONOTONIC when the reading was actually taken */
    int64_t  wall_ns;  /* CLOCK_REALTIME at the same moment */
    double   value;
    uint32_t channel;  /* index into the sampler's channels */
    int32_t  status;   /* 0, or the driver's negative errno-style failure */
} lume_sample;

typedef struct lume_ring lume_ring;

/* capacity is rounded up to a power of two (minimum 2). NULL on ENOMEM. */
lume_ring *lume_ring_new(size_t capacity);
void       lume_ring_free(lume_ring *r);

/* Producer side. false (and nothing written) when the ring is full. */
bool   lume_ring_push(lume_ring *r, const lume_sample *s);
/* Consumer side: pop up to max samples into out, oldest first. */
size_t lume_ring_pop(lume_ring *r, lume_sample *out, size_t max);
/* Approximate number of samples waiting (exact when called by either side
 * with the other idle). */
size_t lume_ring_count(const lume_ring *r);
size_t lume_ring_capacity(const lume_ring *r);

#endif
