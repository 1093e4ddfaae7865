/* tests/unit/test_hist.c — the log-linear latency histogram. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

static uint64_t rnd_state = 0x1234567887654321ULL;

static uint64_t rnd(void)      /* xorshift64*: reproducible test data */
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 2685821657736338717ULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The documented precision: the answer is the top of the bucket holding the
 * true value, so it is >= the value and above it by less than
 * max(64 ns, value / 16). */
static void assert_close(uint64_t got, uint64_t truth)
{
    uint64_t slack = truth / LUME_HIST_SUB > 64 ? truth / LUME_HIST_SUB : 64;
    if (got < truth || got - truth >= slack)
        fail_msg("percentile %llu vs true %llu (allowed +%llu)", (unsigned long long)got,
                 (unsigned long long)truth, (unsigned long long)slack);
}

/* True percentile with the same rank rule: smallest r with r >= p% of n. */
static uint64_t true_pct(const uint64_t *sorted, size_t n, double p)
{
    double want = p / 100.0 * (double)n;
    size_t rank = (size_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void test_percentiles_vs_sorted(void **st)
{
    (void)st;
    enum { N = 20000 };
    static const double ps[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    uint64_t *v = malloc(N * sizeof *v);
    lume_hist *h = malloc(sizeof *h);
    assert_non_null(v);
    assert_non_null(h);
    /* Three shapes: small (group 0), log-uniform over 1 us .. 1 s, and a
     * sampler-like mix of tiny lateness with rare big stalls. */
    for (int shape = 0; shape < 3; shape++) {
        lume_hist_reset(h);
        uint64_t sum = 0, max = 0;
        for (size_t i = 0; i < N; i++) {
            uint64_t x;
            if (shape == 0)
                x = rnd() % 1024;
            else if (shape == 1)
                x = (1ULL << (10 + rnd() % 20)) + rnd() % (1ULL << 10);
            else
                x = rnd() % 100 == 0 ? 1000000 + rnd() % 50000000 : 2000 + rnd() % 60000;
            v[i] = x;
            sum += x;
            if (x > max)
                max = x;
            lume_hist_record(h, x);
        }
        qsort(v, N, sizeof *v, cmp_u64);
        assert_int_equal(h->count, N);
        assert_int_equal(h->sum_ns, sum);
        assert_int_equal(h->max_ns, max);
        for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
            assert_close(lume_hist_percentile(h, ps[k]), true_pct(v, N, ps[k]));
        assert_int_equal(lume_hist_percentile(h, 100), max);   /* never above max */
    }
    free(v);
    free(h);
}

static void test_empty_and_extremes(void **st)
{
    (void)st;
    lume_hist h;
    lume_hist_reset(&h);
    assert_int_equal(lume_hist_percentile(&h, 50), 0);
    lume_hist_record(&h, 0);
    assert_int_equal(lume_hist_percentile(&h, 50), 0);     /* capped by max 0 */
    /* Beyond 2^40 ns: the last bucket, reported as the max seen. */
    uint64_t huge = (1ULL << 45) + 12345;
    lume_hist_record(&h, huge);
    assert_int_equal(lume_hist_percentile(&h, 100), huge);
    assert_close(lume_hist_percentile(&h, 50), 0);
    assert_int_equal(h.count, 2);
}

static void test_merge(void **st)
{
    (void)st;
    enum { N = 5000 };
    lume_hist a, b, all;
    lume_hist_reset(&a);
    lume_hist_reset(&b);
    lume_hist_reset(&all);
    uint64_t v[2 * N];
    for (size_t i = 0; i < 2 * N; i++) {
        v[i] = rnd() % 5000000;
        lume_hist_record(i % 2 ? &a : &b, v[i]);
        lume_hist_record(&all, v[i]);
    }
    lume_hist_merge(&a, &b);
    assert_memory_equal(&a, &all, sizeof a);       /* same as recording it all */
    qsort(v, 2 * N, sizeof v[0], cmp_u64);
    assert_close(lume_hist_percentile(&a, 50), true_pct(v, 2 * N, 50));
    assert_close(lume_hist_percentile(&a, 99), true_pct(v, 2 * N, 99));
}

/* A snapshot taken while another thread records is self-consistent and
 * never runs ahead of the recorder; the final one matches exactly. */
typedef struct {
    lume_hist  *h;
    atomic_bool done;
} rec_arg;

#define REC_N 400000u

static void *recorder(void *p)
{
    rec_arg *a = p;
    for (uint64_t i = 0; i < REC_N; i++)
        lume_hist_record(a->h, (i * 7919) % 3000000);
    atomic_store(&a->done, true);
    return NULL;
}

static void test_snapshot_while_recording(void **st)
{
    (void)st;
    lume_hist *h = malloc(sizeof *h);
    lume_hist *snap = malloc(sizeof *snap);
    assert_non_null(h);
    assert_non_null(snap);
    lume_hist_reset(h);
    rec_arg a = {.h = h};
    atomic_init(&a.done, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, recorder, &a), 0);
    uint64_t prev = 0;
    int snaps = 0;
    while (!atomic_load(&a.done) || snaps == 0) {
        lume_hist_snapshot(h, snap);
        uint64_t n = 0;
        for (int i = 0; i < LUME_HIST_BUCKETS; i++)
            n += snap->b[i];
        assert_int_equal(n, snap->count);
        assert_true(snap->count >= prev);          /* counts only grow */
        assert_true(snap->count <= REC_N);
        prev = snap->count;
        snaps++;
    }
    pthread_join(th, NULL);
    lume_hist_snapshot(h, snap);
    assert_int_equal(snap->count, REC_N);
    assert_memory_equal(snap, h, sizeof *h);
    free(h);
    free(snap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles_vs_sorted),
        cmocka_unit_test(test_empty_and_extremes),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_snapshot_while_recording),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
