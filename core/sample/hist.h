/* core/sample/hist.h — fixed-size log-linear latency histogram (HDR-style).
 *
 * Values are nanoseconds >= 0. Below 1024 ns each value has its own bucket
 * range of width 64 ns; above, every power of two is split into
 * LUME_HIST_SUB linear sub-buckets, so a percentile is exact to within
 * 1/LUME_HIST_SUB (~6%) of its value. Up to 2^40 ns (~18 min); larger values
 * land in the last bucket. No allocation; record() is a few instructions and
 * safe to call from the sampler thread (relaxed atomic increments), while the
 * loop reads a snapshot. */
#ifndef LUME_HIST_H
#define LUME_HIST_H

#include <stdint.h>

#define LUME_HIST_SUB      16
#define LUME_HIST_OCTAVES  31   /* 2^10 .. 2^40 ns */
#define LUME_HIST_BUCKETS  (LUME_HIST_SUB * (LUME_HIST_OCTAVES + 1))

typedef struct lume_hist {
    uint64_t count;
    uint64_t max_ns;
    uint64_t sum_ns;
    uint64_t b[LUME_HIST_BUCKETS];
} lume_hist;

void     lume_hist_reset(lume_hist *h);
void     lume_hist_record(lume_hist *h, uint64_t ns);   /* thread-safe vs readers */
/* Copy with relaxed atomic loads: safe while another thread records. */
void     lume_hist_snapshot(const lume_hist *h, lume_hist *out);
void     lume_hist_merge(lume_hist *into, const lume_hist *from);
/* The value at percentile p (0..100): the upper bound of the bucket holding
 * it, never above max_ns. 0 when empty. */
uint64_t lume_hist_percentile(const lume_hist *h, double p);

#endif
