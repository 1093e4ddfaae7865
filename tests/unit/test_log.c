/* tests/unit/test_log.c — a log target's tap (core/base/log.c,
 * lume_log_target_tap): the remote log stream's way in. It gets lines at
 * its own level whatever the target's, from any thread; a line logged from
 * inside it is dropped; once removed it is never called again; the target's
 * own sink and ring are unchanged by it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct seen {
    int  n, last_level;
    char last[256];
    bool recurse;     /* log from inside the callback */
} seen;

static void record(void *ud, int level, const char *component, const char *msg)
{
    seen *s = ud;
    s->n++;
    s->last_level = level;
    snprintf(s->last, sizeof s->last, "%s: %s", component, msg);
    if (s->recurse)
        lume_log(LUME_LOG_ERROR, "tap", "logged from inside: %d", s->n);
}

static void test_tap_has_its_own_level(void **state)
{
    (void)state;
    seen sink = {0}, tap = {0};
    lume_log_target t;
    lume_log_target_init(&t, LUME_LOG_WARN, record, &sink);
    lume_log_target *was = lume_log_use(&t);

    lume_log(LUME_LOG_DEBUG, "c", "before any tap");
    assert_int_equal(sink.n, 0);

    lume_log_target_tap(&t, record, &tap, LUME_LOG_DEBUG);
    lume_log(LUME_LOG_DEBUG, "c", "debug %d", 1);
    assert_int_equal(tap.n, 1);          /* below the target's level: the tap only */
    assert_string_equal(tap.last, "c: debug 1");
    assert_int_equal(tap.last_level, LUME_LOG_DEBUG);
    assert_int_equal(sink.n, 0);
    uint64_t seq = 0;
    char *ring = lume_log_tail(&t, &seq, 10);
    assert_string_equal(ring, "");       /* nor in the ring */
    free(ring);

    lume_log(LUME_LOG_ERROR, "c", "error %d", 2);
    assert_int_equal(tap.n, 2);          /* both */
    assert_int_equal(sink.n, 1);
    assert_string_equal(sink.last, "c: error 2");

    lume_log_target_tap(&t, record, &tap, LUME_LOG_ERROR);
    lume_log(LUME_LOG_WARN, "c", "warn");
    assert_int_equal(tap.n, 2);          /* below the tap's new level */
    assert_int_equal(sink.n, 2);

    lume_log_target_tap(&t, NULL, NULL, LUME_LOG_TAP_OFF);
    lume_log(LUME_LOG_ERROR, "c", "after");
    assert_int_equal(tap.n, 2);          /* removed: never called again */
    assert_int_equal(sink.n, 3);

    lume_log_use(was);
    lume_log_target_destroy(&t);
}

static void test_tap_never_recursive(void **state)
{
    (void)state;
    seen sink = {0}, tap = {.recurse = true};
    lume_log_target t;
    lume_log_target_init(&t, LUME_LOG_INFO, record, &sink);
    lume_log_target *was = lume_log_use(&t);
    lume_log_target_tap(&t, record, &tap, LUME_LOG_INFO);
    lume_log(LUME_LOG_WARN, "c", "one");
    lume_log(LUME_LOG_WARN, "c", "two");
    /* the lines logged from inside the tap reached neither the tap nor the sink */
    assert_int_equal(tap.n, 2);
    assert_int_equal(sink.n, 2);
    assert_string_equal(sink.last, "c: two");
    lume_log_target_tap(&t, NULL, NULL, LUME_LOG_TAP_OFF);
    lume_log(LUME_LOG_WARN, "c", "three"); /* and logging works after it */
    assert_int_equal(sink.n, 3);
    lume_log_use(was);
    lume_log_target_destroy(&t);
}

/* Another thread logging to the same target while the tap comes and goes. */
typedef struct worker {
    lume_log_target *t;
    int lines;
} worker;

static void *log_lines(void *arg)
{
    worker *w = arg;
    lume_log_use(w->t);
    for (int i = 0; i < w->lines; i++)
        lume_log(LUME_LOG_WARN, "thread", "line %d", i);
    return NULL;
}

static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static int counted;
static void count(void *ud, int level, const char *component, const char *msg)
{
    (void)ud, (void)level, (void)component, (void)msg;
    pthread_mutex_lock(&count_mu);
    counted++;
    pthread_mutex_unlock(&count_mu);
}

static void test_tap_from_threads(void **state)
{
    (void)state;
    lume_log_target t;
    lume_log_target_init(&t, LUME_LOG_ERROR, count, NULL);
    int tapped = 0;
    worker w = {&t, 20000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, log_lines, &w), 0);
    for (int i = 0; i < 200; i++) {
        lume_log_target_tap(&t, count, &tapped, LUME_LOG_WARN);
        lume_log_target_tap(&t, NULL, NULL, LUME_LOG_TAP_OFF);
    }
    pthread_join(th, NULL);
    /* every call the tap got was while it was installed; none after */
    int n = counted;
    lume_log_use(&t);
    lume_log(LUME_LOG_WARN, "main", "after");
    lume_log_use(NULL);
    assert_int_equal(counted, n);
    assert_true(n <= w.lines);
    lume_log_target_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tap_has_its_own_level),
        cmocka_unit_test(test_tap_never_recursive),
        cmocka_unit_test(test_tap_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
