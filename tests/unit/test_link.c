/* tests/unit/test_link.c — the decisions of core/net/link.c, alone: a link's
 * state, its parameters and what the session and the outbox say, step by
 * step on a made-up clock. (The mechanism around them, with a real broker,
 * is tests/integration/test_connectivity.sh.) */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "link.h"
#include "mqtt.h"

typedef struct t_link {
    lume_link_fsm    f;
    lume_link_params p;
    lume_link_in     in;
} t_link;

/* intermittent, a window every 10 s of at most 5 s, max_queued 100 */
static void intermittent(t_link *t, int session)
{
    memset(t, 0, sizeof *t);
    lume_link_params_default(&t->p);
    t->in.now_ms = 1000000;
    t->in.session = session;
    t->p.mode = LUME_LINK_INTERMITTENT;
    t->p.every_s = 10;
    t->p.window_s = 5;
    t->p.max_queued = 100;
    lume_link_fsm_mode(&t->f, &t->p, &t->in);
}

static int step(t_link *t) { return lume_link_step(&t->f, &t->p, &t->in); }

/* From AWAKE: drained, DISCONNECT, the session goes OFFLINE: ASLEEP. */
static void close_drained(t_link *t)
{
    t->in.session = LUME_MQTT_CONNECTED;
    t->in.settled = true;
    assert_int_equal(step(t), LUME_LINK_DISCONNECT);
    assert_int_equal(t->f.phase, LUME_LINK_CLOSING);
    assert_false(t->f.cut);
    t->in.settled = false;
    assert_int_equal(step(t), LUME_LINK_NOTHING);    /* still saying goodbye */
    t->in.session = LUME_MQTT_OFFLINE;
    assert_int_equal(step(t), LUME_LINK_NOTHING);
    assert_int_equal(t->f.phase, LUME_LINK_ASLEEP);
}

static void test_persistent_connects_when_offline(void **state)
{
    (void)state;
    t_link t;
    memset(&t, 0, sizeof t);
    lume_link_params_default(&t.p);
    t.in.session = LUME_MQTT_OFFLINE;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    t.in.session = LUME_MQTT_BACKOFF;              /* the session's own retries */
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    t.in.session = LUME_MQTT_CONNECTED;
    t.in.settled = true;                            /* never closes */
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    assert_int_equal(t.f.phase, LUME_LINK_ONLINE);
}

/* Going intermittent while connected: that connection is a window. */
static void test_connected_becomes_a_window(void **state)
{
    (void)state;
    t_link t;
    intermittent(&t, LUME_MQTT_CONNECTED);
    assert_int_equal(t.f.phase, LUME_LINK_AWAKE);
    assert_int_equal(step(&t), LUME_LINK_NOTHING);  /* not settled: draining */
    int64_t opened = t.in.now_ms;
    t.in.now_ms += 1000;
    close_drained(&t);
    assert_true(t.f.next_ms == opened + 10000);     /* every_s from the window's start */
    t.in.now_ms = opened + 9999;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    t.in.now_ms = opened + 10000;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    assert_int_equal(t.f.woke, LUME_LINK_WOKE_TIMER);
    assert_int_equal(t.f.phase, LUME_LINK_WAKING);
    t.in.session = LUME_MQTT_CONNECTING;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    t.in.session = LUME_MQTT_CONNECTED;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    assert_int_equal(t.f.phase, LUME_LINK_AWAKE);
}

/* Invariant 4: a new alarm while asleep opens a window at once; one that
 * came while a window was open went in it and opens nothing after. */
static void test_alarm_wakes_at_once(void **state)
{
    (void)state;
    t_link t;
    intermittent(&t, LUME_MQTT_OFFLINE);
    assert_int_equal(t.f.phase, LUME_LINK_ASLEEP);
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    t.in.now_ms += 100;
    t.in.alarms = 1;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    assert_int_equal(t.f.woke, LUME_LINK_WOKE_ALARM);
    t.in.session = LUME_MQTT_CONNECTED;
    t.in.alarms = 2;                                /* during the window */
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    close_drained(&t);
    assert_int_equal(step(&t), LUME_LINK_NOTHING);  /* already sent */
    t.in.alarms = 3;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    /* off: alarms wait for the timer */
    intermittent(&t, LUME_MQTT_OFFLINE);
    t.p.alarm = false;
    t.in.alarms = 5;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
}

/* max_queued opens a window; after a window cut short (invariant 3) it
 * does not, until a window drains; the timer still does. */
static void test_queue_threshold_and_cut_windows(void **state)
{
    (void)state;
    t_link t;
    intermittent(&t, LUME_MQTT_OFFLINE);
    t.in.queued = 99;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    t.in.queued = 100;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    assert_int_equal(t.f.woke, LUME_LINK_WOKE_QUEUED);
    int64_t opened = t.in.now_ms;
    t.in.session = LUME_MQTT_BACKOFF;               /* the broker is away */
    t.in.now_ms = opened + 4999;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    t.in.now_ms = opened + 5000;
    assert_int_equal(step(&t), LUME_LINK_DISCONNECT);
    assert_true(t.f.cut);
    t.in.session = LUME_MQTT_OFFLINE;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    assert_int_equal(t.f.phase, LUME_LINK_ASLEEP);
    t.in.queued = 500;
    t.in.now_ms += 1000;
    assert_int_equal(step(&t), LUME_LINK_NOTHING);  /* not at once, for ever */
    t.in.now_ms = opened + 10000;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    assert_int_equal(t.f.woke, LUME_LINK_WOKE_TIMER);
    close_drained(&t);                              /* drained: the threshold counts again */
    assert_int_equal(step(&t), LUME_LINK_CONNECT);
    assert_int_equal(t.f.woke, LUME_LINK_WOKE_QUEUED);
}

/* A window that never settles (a flood) is closed after window_s. */
static void test_window_never_outlasts_window_s(void **state)
{
    (void)state;
    t_link t;
    intermittent(&t, LUME_MQTT_CONNECTED);
    int64_t opened = t.in.now_ms;
    for (int i = 1; i < 50; i++) {
        t.in.now_ms = opened + i * 100;
        assert_int_equal(step(&t), LUME_LINK_NOTHING);
    }
    t.in.now_ms = opened + 5000;
    assert_int_equal(step(&t), LUME_LINK_DISCONNECT);
    assert_true(t.f.cut);
    assert_non_null(strstr(t.f.why, "5 s"));
    /* a window longer than every_s: the next one every_s after it closed */
    t.p.window_s = 30;
    t.in.session = LUME_MQTT_OFFLINE;
    t.in.now_ms = opened + 25000;
    step(&t);
    assert_true(t.f.next_ms == opened + 35000);
}

/* Back to persistent: from a window closing, connect once OFFLINE; a
 * session started by its owner while asleep is adopted as a window. */
static void test_mode_changes(void **state)
{
    (void)state;
    t_link t;
    intermittent(&t, LUME_MQTT_CONNECTED);
    t.in.settled = true;
    assert_int_equal(step(&t), LUME_LINK_DISCONNECT);
    t.p.mode = LUME_LINK_PERSISTENT;
    lume_link_fsm_mode(&t.f, &t.p, &t.in);
    assert_int_equal(t.f.phase, LUME_LINK_ONLINE);
    assert_int_equal(step(&t), LUME_LINK_NOTHING);  /* the goodbye is under way */
    t.in.session = LUME_MQTT_OFFLINE;
    assert_int_equal(step(&t), LUME_LINK_CONNECT);

    intermittent(&t, LUME_MQTT_OFFLINE);
    t.in.session = LUME_MQTT_CONNECTING;            /* the runtime started it */
    assert_int_equal(step(&t), LUME_LINK_NOTHING);
    assert_int_equal(t.f.phase, LUME_LINK_WAKING);
    t.in.session = LUME_MQTT_CONNECTED;
    t.in.settled = true;
    assert_int_equal(step(&t), LUME_LINK_DISCONNECT);
}

static void test_params_are_checked(void **state)
{
    (void)state;
    lume_link_params p;
    char why[256];
    lume_link_params_default(&p);
    assert_int_equal(lume_link_params_check(&p, why, sizeof why), 0);
    assert_string_equal(lume_link_mode_name(p.mode), "persistent");
    p.every_s = -5;
    assert_int_equal(lume_link_params_check(&p, why, sizeof why), -EINVAL);
    assert_string_equal(why, "connectivity.every_s must be seconds from 0.1 to 86400, got -5");
    lume_link_params_default(&p);
    p.window_s = 0;
    assert_int_equal(lume_link_params_check(&p, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "connectivity.window_s"));
    lume_link_params_default(&p);
    p.mode = 7;
    assert_int_equal(lume_link_params_check(&p, why, sizeof why), -EINVAL);
    assert_int_equal(lume_link_mode_parse("intermittent"), LUME_LINK_INTERMITTENT);
    assert_int_equal(lume_link_mode_parse("auto"), -1);   /* the policy's to resolve */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_persistent_connects_when_offline),
        cmocka_unit_test(test_connected_becomes_a_window),
        cmocka_unit_test(test_alarm_wakes_at_once),
        cmocka_unit_test(test_queue_threshold_and_cut_windows),
        cmocka_unit_test(test_window_never_outlasts_window_s),
        cmocka_unit_test(test_mode_changes),
        cmocka_unit_test(test_params_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
