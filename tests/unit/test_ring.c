/* tests/unit/test_ring.c — the SPSC sample ring. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "ring.h"

static lume_sample mk(uint64_t i)
{
    lume_sample s = {
        .t_ns = (int64_t)i, .wall_ns = (int64_t)(i * 3), .value = (double)i * 0.5,
        .channel = (uint32_t)(i % 7), .status = (int32_t)-(int)(i % 3),
    };
    return s;
}

static void check(const lume_sample *s, uint64_t i)
{
    lume_sample want = mk(i);
    assert_int_equal(s->t_ns, want.t_ns);
    assert_int_equal(s->wall_ns, want.wall_ns);
    assert_true(s->value == want.value);
    assert_int_equal(s->channel, want.channel);
    assert_int_equal(s->status, want.status);
}

static void test_capacity_rounding(void **st)
{
    (void)st;
    static const size_t ask[][2] = {
        {0, 2}, {1, 2}, {2, 2}, {3, 4}, {5, 8}, {8, 8}, {1000, 1024}, {1025, 2048},
    };
    for (size_t i = 0; i < sizeof ask / sizeof ask[0]; i++) {
        lume_ring *r = lume_ring_new(ask[i][0]);
        assert_non_null(r);
        assert_int_equal(lume_ring_capacity(r), ask[i][1]);
        /* and it really holds that many, not one fewer */
        lume_sample s = mk(1);
        for (size_t k = 0; k < ask[i][1]; k++)
            assert_true(lume_ring_push(r, &s));
        assert_false(lume_ring_push(r, &s));
        lume_ring_free(r);
    }
}

static void test_full_empty(void **st)
{
    (void)st;
    lume_ring *r = lume_ring_new(4);
    lume_sample out[8];
    assert_int_equal(lume_ring_count(r), 0);
    assert_int_equal(lume_ring_pop(r, out, 8), 0);

    for (uint64_t i = 0; i < 4; i++) {
        lume_sample s = mk(i);
        assert_true(lume_ring_push(r, &s));
        assert_int_equal(lume_ring_count(r), i + 1);
    }
    lume_sample extra = mk(99);
    assert_false(lume_ring_push(r, &extra));      /* full: refused */
    assert_int_equal(lume_ring_count(r), 4);

    assert_int_equal(lume_ring_pop(r, out, 1), 1);  /* pop respects max */
    check(&out[0], 0);
    assert_true(lume_ring_push(r, &extra));        /* room again */
    assert_int_equal(lume_ring_pop(r, out, 8), 4);
    check(&out[0], 1);
    check(&out[1], 2);
    check(&out[2], 3);
    check(&out[3], 99);                            /* the refused push wrote nothing */
    assert_int_equal(lume_ring_count(r), 0);
    assert_int_equal(lume_ring_pop(r, out, 8), 0);
    lume_ring_free(r);
}

static void test_wrap_around(void **st)
{
    (void)st;
    lume_ring *r = lume_ring_new(8);
    lume_sample out[8];
    uint64_t next_in = 0, next_out = 0;
    /* Many laps with uneven push/pop sizes so every slot boundary is crossed. */
    for (int round = 0; round < 1000; round++) {
        size_t npush = 1 + (size_t)(round * 7 % 8);
        for (size_t k = 0; k < npush; k++) {
            lume_sample s = mk(next_in);
            if (!lume_ring_push(r, &s))
                break;
            next_in++;
        }
        size_t n = lume_ring_pop(r, out, 1 + (size_t)(round * 5 % 8));
        for (size_t k = 0; k < n; k++)
            check(&out[k], next_out++);
        assert_int_equal(lume_ring_count(r), next_in - next_out);
    }
    size_t n;
    while ((n = lume_ring_pop(r, out, 8)) > 0)
        for (size_t k = 0; k < n; k++)
            check(&out[k], next_out++);
    assert_int_equal(next_in, next_out);
    assert_true(next_in > 1000);
    lume_ring_free(r);
}

#define STRESS_N 3000000u

static void *producer(void *arg)
{
    lume_ring *r = arg;
    for (uint64_t i = 0; i < STRESS_N; i++) {
        lume_sample s = mk(i);
        while (!lume_ring_push(r, &s))
            sched_yield();
    }
    return NULL;
}

static void test_two_thread_stress(void **st)
{
    (void)st;
    lume_ring *r = lume_ring_new(1024);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, r), 0);
    lume_sample out[97];     /* odd batch size: batches straddle the wrap */
    uint64_t next = 0;
    int bad = 0;
    while (next < STRESS_N) {
        size_t n = lume_ring_pop(r, out, sizeof out / sizeof out[0]);
        if (n == 0) {
            sched_yield();
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            lume_sample want = mk(next);
            /* cheap compare in the hot loop, cmocka detail on failure */
            if (memcmp(&out[k], &want, sizeof want) != 0 && !bad) {
                bad = 1;
                check(&out[k], next);
            }
            next++;
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(next, STRESS_N);
    assert_int_equal(lume_ring_pop(r, out, 1), 0);   /* nothing extra */
    lume_ring_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_rounding),
        cmocka_unit_test(test_full_empty),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_two_thread_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
