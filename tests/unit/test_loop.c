/* tests/unit/test_loop.c — the event loop's ends (stopped, failed) and its
 * watches (pause, writable).
 *
 * The failure test makes poll() really fail, the way `prlimit --nofile` does
 * to a running lume: the soft RLIMIT_NOFILE goes below the number of
 * descriptors the loop polls, so every poll() returns EINVAL — which
 * libwebsockets 4.1 ignores (core/net/loop.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    char *err = NULL;
    lume_log_set_level(LUME_LOG_ERROR);
    lume_loop *l = lume_loop_new(NULL, &err);
    if (!l) {
        free(err);
        return -1;
    }
    *state = l;
    return 0;
}

static int teardown(void **state)
{
    lume_loop_free(*state);
    return 0;
}

static void stop_tick(lume_timer *t) { lume_loop_stop(t->ud); }

static void test_stopped_is_not_failed(void **state)
{
    lume_loop *l = *state;
    lume_timer t;
    lume_timer_init(&t, l, stop_tick, l);
    lume_timer_start(&t, 20 * 1000);
    assert_int_equal(lume_loop_run(l), 0);
    assert_null(lume_loop_error(l));
    assert_int_equal(lume_loop_step(l, 10), -ECANCELED);
}

static void test_failing_poll_fails_the_loop(void **state)
{
    lume_loop *l = *state;
    lume_timer guard; /* timers still fire while poll fails: a way out */
    lume_timer_init(&guard, l, stop_tick, l);
    lume_timer_start(&guard, 3000 * 1000);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 0; /* the loop polls at least its wake-up pipe */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int64_t t0 = ms_now();
    int r = lume_loop_run(l);
    int64_t took = ms_now() - t0;
    setrlimit(RLIMIT_NOFILE, &old);
    lume_timer_cancel(&guard);
    assert_int_equal(r, -EINVAL);
    assert_true(took < 2000);
    const char *why = lume_loop_error(l);
    assert_non_null(why);
    assert_non_null(strstr(why, "poll() fails on every turn: Invalid argument"));
    assert_non_null(strstr(why, "RLIMIT_NOFILE is 0"));
    /* it stays failed, even with the limit back */
    assert_int_equal(lume_loop_step(l, 10), -EINVAL);
}

static bool never(void *ud) { (void)ud; return false; }

static void test_drain_returns_at_once_when_failed(void **state)
{
    lume_loop *l = *state;
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 0;
    lume_timer guard;
    lume_timer_init(&guard, l, stop_tick, l);
    lume_timer_start(&guard, 3000 * 1000);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int r = lume_loop_run(l);
    setrlimit(RLIMIT_NOFILE, &old);
    lume_timer_cancel(&guard);
    assert_int_equal(r, -EINVAL);
    int64_t t0 = ms_now();
    assert_false(lume_loop_drain(l, 1000, never, NULL));
    assert_true(ms_now() - t0 < 100);
}

/* A timer that fires on every turn and leaves errno = EINVAL behind must not
 * pass for a failing poll. */
typedef struct {
    lume_loop *l;
    int64_t    until;
    unsigned   fired;
} busy;

static void busy_tick(lume_timer *t)
{
    busy *b = t->ud;
    b->fired++;
    errno = EINVAL;
    if (ms_now() < b->until)
        lume_timer_start(t, 0);
    else
        lume_loop_stop(b->l);
}

static void test_busy_timer_leaving_errno_is_not_a_failure(void **state)
{
    lume_loop *l = *state;
    busy b = {.l = l, .until = ms_now() + 400};
    lume_timer t;
    lume_timer_init(&t, l, busy_tick, &b);
    lume_timer_start(&t, 0);
    assert_int_equal(lume_loop_run(l), 0);
    assert_null(lume_loop_error(l));
    assert_true(b.fired > 100);
}

/* ---- watches ------------------------------------------------------------------ */

typedef struct {
    unsigned reads, writes, want_again;
    lume_watch *w;
} calls;

static void on_read(void *ud, int fd)
{
    calls *c = ud;
    char buf[64];
    c->reads++;
    ssize_t n = read(fd, buf, sizeof buf);
    (void)n;
}

static void test_pause_and_resume_reads(void **state)
{
    lume_loop *l = *state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    calls c = {0};
    char *err = NULL;
    c.w = lume_loop_watch_fd(l, p[0], on_read, &c, &err);
    assert_non_null(c.w);
    assert_true(lume_loop_watch_open(c.w));
    assert_int_equal(lume_loop_watch_pause(c.w, true), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    lume_loop_drain(l, 100, never, NULL);
    assert_int_equal(c.reads, 0);
    assert_int_equal(lume_loop_watch_pause(c.w, false), 0);
    lume_loop_drain(l, 100, never, NULL);
    assert_int_equal(c.reads, 1);
    lume_loop_unwatch(c.w);
    assert_false(lume_loop_watch_open(c.w)); /* still allocated until the loop closes it */
    close(p[1]);
    lume_loop_drain(l, 20, never, NULL);
}

static void on_write(void *ud, int fd)
{
    calls *c = ud;
    (void)fd;
    c->writes++;
    if (c->want_again) { /* from inside: lws drops POLLOUT after this returns */
        c->want_again--;
        assert_int_equal(lume_loop_watch_writable(c->w, on_write), 0);
    }
}

static void test_writable_once_and_again_from_inside(void **state)
{
    lume_loop *l = *state;
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    calls c = {.want_again = 2};
    char *err = NULL;
    c.w = lume_loop_watch_fd(l, sp[0], on_read, &c, &err);
    assert_non_null(c.w);
    lume_loop_drain(l, 50, never, NULL);
    assert_int_equal(c.writes, 0); /* nobody asked */
    assert_int_equal(lume_loop_watch_writable(c.w, on_write), 0);
    lume_loop_drain(l, 200, never, NULL);
    assert_int_equal(c.writes, 3); /* once, then twice more asked from inside */
    lume_loop_drain(l, 50, never, NULL);
    assert_int_equal(c.writes, 3); /* and no more */
    lume_loop_unwatch(c.w);
    close(sp[1]);
    lume_loop_drain(l, 20, never, NULL);
}

/* Wake-up accounting (loop.h): each turn is counted once, a named timer
 * under its name, a late one by how late; a cross-thread wake as such; the
 * turn hook runs after every turn. */
static int turn_hooks;
static void on_turn(void *ud) { (void)ud; turn_hooks++; }
static int woken;
static void on_wake(void *ud) { (void)ud; woken++; }
static void tick3(lume_timer *t)
{
    int *left = t->ud;
    if (--*left > 0)
        lume_timer_start(t, 1000);
}

static void test_wakeups_are_counted(void **state)
{
    lume_loop *l = *state;
    lume_loop_stats st;
    lume_loop_on_turn(l, on_turn, NULL);
    assert_int_equal(lume_loop_on_wake(l, on_wake, NULL), 0);
    lume_timer t, u;
    int left = 3, other = 1;
    lume_timer_init(&t, l, tick3, &left);
    lume_timer_name(&t, "tick");
    lume_timer_init(&u, l, tick3, &other);     /* unnamed: "other" */
    lume_timer_start(&t, 1000);
    lume_timer_start(&u, 1000);
    /* libwebsockets 4.1 returns from its first turns at once, without
     * polling: step until the timers ran, not a number of times */
    int64_t end = ms_now() + 5000;
    while ((left > 0 || other > 0) && ms_now() < end)
        assert_int_equal(lume_loop_step(l, 100), 0);
    lume_loop_get_stats(l, &st);
    assert_int_equal(left, 0);
    assert_true(st.turns >= 3);
    assert_int_equal(turn_hooks, (int)st.turns);
    assert_int_equal(st.timers, 4);
    int tick = -1, oth = -1;
    for (size_t i = 0; i < st.ntimer; i++) {
        if (!strcmp(st.timer[i].name, "tick"))
            tick = (int)st.timer[i].fired;
        if (!strcmp(st.timer[i].name, "other"))
            oth = (int)st.timer[i].fired;
    }
    assert_int_equal(tick, 3);
    assert_int_equal(oth, 1);
    assert_true(st.timer_turns >= 3 && st.timer_turns <= 4);
    /* (lws may run the wake handlers once as it starts) */
    assert_int_equal(st.wakes, (uint64_t)woken);

    /* a wake from "another thread" is counted as such, once */
    uint64_t turns = st.turns;
    int before = woken;
    lume_loop_wake(l);
    end = ms_now() + 5000;
    while (woken == before && ms_now() < end)
        assert_int_equal(lume_loop_step(l, 100), 0);
    lume_loop_get_stats(l, &st);
    assert_int_equal(woken, before + 1);
    assert_int_equal(st.wakes, (uint64_t)woken);
    assert_true(st.turns > turns);
    assert_int_equal(turn_hooks, (int)st.turns);

    /* a timer that fires late says by how much; a reset forgets it */
    left = 1;
    lume_timer_start(&t, 1000);
    usleep(30 * 1000);                 /* the loop is busy elsewhere */
    assert_int_equal(lume_loop_step(l, 100), 0);
    lume_loop_get_stats(l, &st);
    assert_true(st.late_max_ns >= 25 * 1000000LL);
    lume_loop_reset_late(l);
    lume_loop_get_stats(l, &st);
    assert_true(st.late_max_ns == 0);
    lume_loop_on_turn(l, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stopped_is_not_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_poll_fails_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_returns_at_once_when_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_timer_leaving_errno_is_not_a_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wakeups_are_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writable_once_and_again_from_inside, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
