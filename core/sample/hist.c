/* core/sample/hist.c — log-linear latency histogram. See hist.h.
 *
 * Bucket layout (SUB = LUME_HIST_SUB = 16):
 *   group 0        values [0, 1024): 16 buckets of 64 ns each
 *   group g >= 1   values [2^(9+g), 2^(10+g)): 16 buckets of 2^(5+g) ns
 *   index = g * SUB + sub-bucket; values past the last group land in the
 *   last bucket (the percentile is then capped by max_ns).
 * Group 1 has the same width as group 0, so the layout is continuous, and in
 * every group a bucket's width is at most 1/16 of the values it holds: the
 * upper bound returned by a percentile exceeds the true value by less than
 * max(64 ns, value/16).
 *
 * Concurrency: lume_hist_record uses relaxed __atomic read-modify-writes on
 * the plain uint64_t fields of the public struct, so one thread may record
 * while another takes a snapshot. reset and merge are plain: call them on a
 * histogram nobody is recording into (e.g. a snapshot). */
#include "hist.h"

#include <string.h>

#define GROUP0_SHIFT 6      /* 64 ns buckets below 1024 ns */
#define GROUP0_LIMIT 1024u

static unsigned bucket_of(uint64_t ns)
{
    if (ns < GROUP0_LIMIT)
        return (unsigned)(ns >> GROUP0_SHIFT);
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);  /* >= 10 */
    unsigned g = msb - 9u;
    if (g > LUME_HIST_OCTAVES)
        return LUME_HIST_BUCKETS - 1;
    unsigned sub = (unsigned)((ns >> (msb - 4u)) & (LUME_HIST_SUB - 1));
    return g * LUME_HIST_SUB + sub;
}

/* Largest value that falls in bucket i (inclusive upper bound). */
static uint64_t bucket_top(unsigned i)
{
    unsigned g = i / LUME_HIST_SUB, sub = i % LUME_HIST_SUB;
    if (g == 0)
        return ((uint64_t)(sub + 1) << GROUP0_SHIFT) - 1;
    unsigned msb = g + 9u;
    uint64_t width = (uint64_t)1 << (msb - 4u);
    return ((uint64_t)1 << msb) + (uint64_t)(sub + 1) * width - 1;
}

void lume_hist_reset(lume_hist *h)
{
    memset(h, 0, sizeof *h);
}

void lume_hist_record(lume_hist *h, uint64_t ns)
{
    uint64_t max = __atomic_load_n(&h->max_ns, __ATOMIC_RELAXED);
    while (ns > max &&
           !__atomic_compare_exchange_n(&h->max_ns, &max, ns, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    __atomic_fetch_add(&h->b[bucket_of(ns)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
}

void lume_hist_snapshot(const lume_hist *h, lume_hist *out)
{
    /* The buckets are the truth; count is recomputed from them so that a
     * snapshot taken mid-record is self-consistent for percentiles. */
    uint64_t n = 0;
    for (unsigned i = 0; i < LUME_HIST_BUCKETS; i++) {
        out->b[i] = __atomic_load_n(&h->b[i], __ATOMIC_RELAXED);
        n += out->b[i];
    }
    out->count = n;
    out->sum_ns = __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
    out->max_ns = __atomic_load_n(&h->max_ns, __ATOMIC_RELAXED);
}

void lume_hist_merge(lume_hist *into, const lume_hist *from)
{
    for (unsigned i = 0; i < LUME_HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum_ns += from->sum_ns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

uint64_t lume_hist_percentile(const lume_hist *h, double p)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < LUME_HIST_BUCKETS; i++)
        total += h->b[i];
    if (total == 0)
        return 0;
    if (!(p > 0))               /* also NaN */
        p = 0;
    if (p > 100)
        p = 100;
    /* rank: the smallest r (1-based) with r >= p% of total. */
    double want = p / 100.0 * (double)total;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > total)
        rank = total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LUME_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            if (i == LUME_HIST_BUCKETS - 1)
                return h->max_ns;      /* the catch-all bucket */
            uint64_t top = bucket_top(i);
            return top < h->max_ns ? top : h->max_ns;
        }
    }
    return h->max_ns;
}
