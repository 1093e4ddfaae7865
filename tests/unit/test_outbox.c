/* tests/unit/test_outbox.c — the durable outbox against real SQLite files
 * in a temporary folder. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "log.h"
#include "outbox.h"
#include "testutil.h"

/* ---- fixture: a temp folder, an outbox in it, captured log lines -------- */

typedef struct fx {
    char         dir[256];
    char         path[300];
    lume_outbox *ob;
    int          log_lines;
    char         last_log[1024];
} fx;

static fx *g_fx;   /* for the log sink */

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    (void)level;
    (void)component;
    if (!g_fx)
        return;
    g_fx->log_lines++;
    snprintf(g_fx->last_log, sizeof g_fx->last_log, "%s", msg);
}

static lume_outbox *open_with(fx *f, int batch, int64_t max_msgs, int64_t max_bytes)
{
    lume_outbox_opts o;
    lume_outbox_opts_default(&o);
    o.commit_batch = batch;
    o.max_messages = max_msgs;
    o.max_bytes = max_bytes;
    char *err = NULL;
    lume_outbox *ob = lume_outbox_open(f->path, &o, &err);
    if (!ob)
        fprintf(stderr, "open: %s\n", err ? err : "?");
    free(err);
    return ob;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "outbox")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/outbox.db", f->dir);
    g_fx = f;
    lume_log_set_sink(capture, NULL);
    f->ob = open_with(f, 1000, 0, 0);
    if (!f->ob) {
        tu_rm_tree(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lume_outbox_close(f->ob);
    lume_log_set_sink(NULL, NULL);
    g_fx = NULL;
    tu_rm_tree(f->dir);
    free(f);
    return 0;
}

/* Replace the fixture's handle (closing commits what pends). */
static void reopen(fx *f, int batch, int64_t max_msgs, int64_t max_bytes)
{
    lume_outbox_close(f->ob);
    f->ob = open_with(f, batch, max_msgs, max_bytes);
    assert_non_null(f->ob);
}

static uint64_t add(lume_outbox *ob, int lane, const char *payload)
{
    uint64_t id = 0;
    assert_int_equal(lume_outbox_append(ob, lane, "dev/1/t", payload, strlen(payload), 1,
                                        0, &id), 0);
    assert_true(id > 0);
    return id;
}

#define MAXP 64
typedef struct got {
    int             n;
    lume_outbox_msg m[MAXP];
} got;

static void got_clear(got *g)
{
    for (int i = 0; i < g->n; i++)
        lume_outbox_msg_clear(&g->m[i]);
    g->n = 0;
}

static int peek(lume_outbox *ob, got *g, int max)
{
    got_clear(g);
    int n = lume_outbox_peek(ob, g->m, max);
    assert_true(n >= 0);
    g->n = n;
    return n;
}

/* The payloads of g, space-separated, for compact order assertions. */
static const char *payloads(const got *g)
{
    static char buf[1024];
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < g->n && off < sizeof buf - 1; i++)
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%.*s", i ? " " : "",
                                (int)g->m[i].len, (const char *)g->m[i].payload);
    return buf;
}

static lume_outbox_stats stats(lume_outbox *ob)
{
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    return st;
}

/* ---- lanes, commit, batching ------------------------------------------ */

static void test_lanes(void **state)
{
    assert_int_equal(lume_lane_parse("alarm"), LUME_LANE_ALARM);
    assert_int_equal(lume_lane_parse("telemetry"), LUME_LANE_TELEMETRY);
    assert_int_equal(lume_lane_parse("bulk"), LUME_LANE_BULK);
    assert_int_equal(lume_lane_parse("urgent"), -1);
    assert_int_equal(lume_lane_parse(NULL), -1);
    for (int l = 0; l < LUME_LANES; l++)
        assert_int_equal(lume_lane_parse(lume_lane_name(l)), l);
    assert_string_equal(lume_lane_name(7), "?");
    (void)state;
}

static void test_order_and_visibility(void **state)
{
    fx *f = *state;
    got g = {0};
    add(f->ob, LUME_LANE_BULK, "b1");
    add(f->ob, LUME_LANE_TELEMETRY, "t1");
    add(f->ob, LUME_LANE_ALARM, "a1");
    add(f->ob, LUME_LANE_BULK, "b2");
    add(f->ob, LUME_LANE_TELEMETRY, "t2");
    add(f->ob, LUME_LANE_ALARM, "a2");
    /* Nothing is sendable before it is committed. */
    assert_int_equal(peek(f->ob, &g, MAXP), 0);
    assert_true(lume_outbox_pending_age_ms(f->ob) >= 0);
    assert_int_equal(stats(f->ob).pending, 6);

    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(lume_outbox_pending_age_ms(f->ob), -1);
    assert_int_equal(stats(f->ob).pending, 0);
    assert_int_equal(peek(f->ob, &g, MAXP), 6);
    assert_string_equal(payloads(&g), "a1 a2 t1 t2 b1 b2");
    assert_string_equal(g.m[0].topic, "dev/1/t");
    assert_int_equal(g.m[0].lane, LUME_LANE_ALARM);
    assert_int_equal(g.m[5].lane, LUME_LANE_BULK);
    assert_int_equal(g.m[0].packet_id, 0);
    assert_int_equal(g.m[0].attempts, 0);
    assert_int_equal(g.m[0].qos, 1);
    assert_int_equal(g.m[0].expires_ms, 0);
    assert_true(g.m[0].created_ms > 0);

    /* A limit cuts in lane order; peek is repeatable until marked. */
    assert_int_equal(peek(f->ob, &g, 3), 3);
    assert_string_equal(payloads(&g), "a1 a2 t1");
    assert_int_equal(peek(f->ob, &g, 3), 3);
    assert_string_equal(payloads(&g), "a1 a2 t1");
    got_clear(&g);
}

static void test_auto_commit(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 10, 0, 0);
    char p[16];
    for (int i = 0; i < 9; i++) {
        snprintf(p, sizeof p, "%d", i);
        add(f->ob, LUME_LANE_TELEMETRY, p);
    }
    assert_int_equal(peek(f->ob, &g, MAXP), 0);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.commits, 0);
    assert_int_equal(st.committing, 0);
    assert_int_equal(st.durable_id, 0);
    add(f->ob, LUME_LANE_TELEMETRY, "9");   /* the 10th hands the batch over */
    st = stats(f->ob);
    assert_true(st.committing == 10 || st.commits == 1);
    /* The barrier: everything accepted so far is durable when it returns. */
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    st = stats(f->ob);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.committing, 0);
    assert_int_equal(st.durable_id, 11);   /* 10 messages and the row of their topic */
    assert_int_equal(peek(f->ob, &g, MAXP), 10);
    assert_string_equal(payloads(&g), "0 1 2 3 4 5 6 7 8 9");
    got_clear(&g);
}

/* The committer thread, not the caller's, writes; it tells the loop when it
 * is done (notify), and the loop takes note with poll. */
typedef struct woken {
    pthread_mutex_t mu;
    int             n;
    pthread_t       by;
} woken;

static void on_notify(void *ud)
{
    woken *w = ud;
    pthread_mutex_lock(&w->mu);
    w->n++;
    w->by = pthread_self();
    pthread_mutex_unlock(&w->mu);
}

static void test_committer_thread(void **state)
{
    fx *f = *state;
    woken w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    lume_outbox_set_notify(f->ob, on_notify, &w);
    assert_int_equal(lume_outbox_poll(f->ob), 0);
    add(f->ob, LUME_LANE_TELEMETRY, "a");
    assert_int_equal(lume_outbox_commit_start(f->ob), 0);
    int n = 0;
    for (int i = 0; i < 5000 && !n; i++) {
        pthread_mutex_lock(&w.mu);
        n = w.n;
        pthread_mutex_unlock(&w.mu);
        if (!n)
            tu_sleep_ms(1);
    }
    assert_int_equal(n, 1);
    assert_false(pthread_equal(w.by, pthread_self()));
    /* Woken: poll reaps the job and says something became sendable. */
    assert_int_equal(lume_outbox_poll(f->ob), 1);
    assert_int_equal(lume_outbox_poll(f->ob), 0);
    assert_int_equal(stats(f->ob).commits, 1);
    assert_int_equal(stats(f->ob).pending, 0);
    assert_int_equal(lume_outbox_pending_age_ms(f->ob), -1);
    got g = {0};
    assert_int_equal(peek(f->ob, &g, MAXP), 1);
    got_clear(&g);
    /* Nothing to write: commit_start and commit do nothing. */
    assert_int_equal(lume_outbox_commit_start(f->ob), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(stats(f->ob).commits, 1);
    lume_outbox_set_notify(f->ob, NULL, NULL);
}

/* ---- in flight, ack, requeue, reopen ----------------------------------- */

static void test_inflight_ack_reopen(void **state)
{
    fx *f = *state;
    got g = {0};
    uint64_t id1 = add(f->ob, LUME_LANE_TELEMETRY, "m1");
    uint64_t id2 = add(f->ob, LUME_LANE_TELEMETRY, "m2");
    uint64_t id3 = add(f->ob, LUME_LANE_TELEMETRY, "m3");
    /* Not committed yet: cannot be marked or acked. */
    assert_int_equal(lume_outbox_mark_inflight(f->ob, id1, 5), -ENOENT);
    assert_int_equal(lume_outbox_ack(f->ob, id1), -ENOENT);
    assert_int_equal(lume_outbox_commit(f->ob), 0);

    assert_int_equal(peek(f->ob, &g, 2), 2);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, id1, 101), 0);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, id2, 102), 0);
    assert_int_equal(stats(f->ob).inflight, 2);
    /* In-flight messages are not handed out again. */
    assert_int_equal(peek(f->ob, &g, MAXP), 1);
    assert_string_equal(payloads(&g), "m3");

    assert_int_equal(lume_outbox_ack(f->ob, id1), 0);
    assert_int_equal(lume_outbox_ack(f->ob, id1), -ENOENT);
    assert_int_equal(lume_outbox_ack(f->ob, 999999), -ENOENT);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.acked[LUME_LANE_TELEMETRY], 1);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(lume_outbox_commit(f->ob), 0);

    reopen(f, 1000, 0, 0);
    /* The acked message is gone; the unacked in-flight one is sendable again
     * with its packet id, ahead of the never-sent one. */
    assert_int_equal(stats(f->ob).depth[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(peek(f->ob, &g, MAXP), 2);
    assert_string_equal(payloads(&g), "m2 m3");
    assert_int_equal(g.m[0].id, id2);
    assert_int_equal(g.m[0].packet_id, 102);
    assert_int_equal(g.m[0].attempts, 1);
    assert_int_equal(g.m[1].id, id3);
    assert_int_equal(g.m[1].packet_id, 0);
    assert_int_equal(g.m[1].attempts, 0);
    /* Acking after a restart works without a peek first. */
    assert_int_equal(lume_outbox_ack(f->ob, id3), 0);
    got_clear(&g);
}

static void test_requeue(void **state)
{
    fx *f = *state;
    got g = {0};
    uint64_t id[5];
    char p[16];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "m%d", i);
        id[i] = add(f->ob, LUME_LANE_BULK, p);
    }
    add(f->ob, LUME_LANE_ALARM, "alarm");
    assert_int_equal(lume_outbox_commit(f->ob), 0);

    assert_int_equal(peek(f->ob, &g, 4), 4);
    assert_string_equal(payloads(&g), "alarm m0 m1 m2");
    for (int i = 0; i < 4; i++)
        assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[i].id, (uint16_t)(10 + i)), 0);
    assert_int_equal(peek(f->ob, &g, MAXP), 2);
    assert_string_equal(payloads(&g), "m3 m4");
    assert_int_equal(lume_outbox_ack(f->ob, id[1]), 0);   /* m1 acked */

    lume_outbox_requeue(f->ob);
    assert_int_equal(stats(f->ob).inflight, 0);
    /* Back in their original order, keeping packet ids; the acked one stays
     * gone even though its DELETE is not committed yet. */
    assert_int_equal(peek(f->ob, &g, MAXP), 5);
    assert_string_equal(payloads(&g), "alarm m0 m2 m3 m4");
    assert_int_equal(g.m[0].packet_id, 10);
    assert_int_equal(g.m[1].packet_id, 11);
    assert_int_equal(g.m[2].packet_id, 13);
    assert_int_equal(g.m[3].packet_id, 0);
    assert_int_equal(g.m[1].attempts, 1);

    /* Resent: attempts counts the marks. */
    assert_int_equal(lume_outbox_mark_inflight(f->ob, id[0], 11), 0);
    lume_outbox_requeue(f->ob);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    reopen(f, 1000, 0, 0);
    assert_int_equal(peek(f->ob, &g, MAXP), 5);
    assert_string_equal(payloads(&g), "alarm m0 m2 m3 m4");
    assert_int_equal(g.m[1].attempts, 2);
    assert_int_equal(g.m[1].packet_id, 11);
    assert_int_equal(g.m[2].packet_id, 13);
    got_clear(&g);
}

static void test_ttl_expiry(void **state)
{
    fx *f = *state;
    got g = {0};
    uint64_t id;
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "t", "short", 5, 1, 5,
                                        &id), 0);
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "t", "long", 4, 1,
                                        3600 * 1000, NULL), 0);
    add(f->ob, LUME_LANE_TELEMETRY, "forever");
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    tu_sleep_ms(40);

    assert_int_equal(peek(f->ob, &g, MAXP), 2);
    assert_string_equal(payloads(&g), "long forever");
    assert_true(g.m[0].expires_ms > g.m[0].created_ms);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.expired[LUME_LANE_TELEMETRY], 1);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(lume_outbox_ack(f->ob, id), -ENOENT);
    /* Counted once, even when peeked again after a requeue. */
    lume_outbox_requeue(f->ob);
    assert_int_equal(peek(f->ob, &g, MAXP), 2);
    assert_int_equal(stats(f->ob).expired[LUME_LANE_TELEMETRY], 1);

    reopen(f, 1000, 0, 0);   /* the DELETE was committed on close */
    assert_int_equal(stats(f->ob).depth[LUME_LANE_TELEMETRY], 2);
    got_clear(&g);
}

/* ---- cap policy ---------------------------------------------------------- */

static void test_cap_policy(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 1000, 10, 0);
    char p[16];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "b%d", i);
        add(f->ob, LUME_LANE_BULK, p);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "t%d", i);
        add(f->ob, LUME_LANE_TELEMETRY, p);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "a%d", i);
        add(f->ob, LUME_LANE_ALARM, p);
    }
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(f->log_lines, 0);

    /* Full: a new telemetry message pushes out the oldest bulk one. */
    add(f->ob, LUME_LANE_TELEMETRY, "t3");
    assert_int_equal(stats(f->ob).dropped[LUME_LANE_BULK], 1);
    assert_int_equal(f->log_lines, 1);
    assert_non_null(strstr(f->last_log, "bulk"));
    /* Bulk pushes out bulk; alarms push out bulk. */
    add(f->ob, LUME_LANE_BULK, "b4");
    add(f->ob, LUME_LANE_ALARM, "a3");
    add(f->ob, LUME_LANE_ALARM, "a4");
    /* The last bulk message is the pending b4: dropped too. */
    add(f->ob, LUME_LANE_ALARM, "a5");
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 5);
    assert_int_equal(st.depth[LUME_LANE_BULK], 0);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 4);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 6);
    /* Rate-limited: one line per lane within 10 s, not one per drop. */
    assert_int_equal(f->log_lines, 1);

    /* Bulk may not push out telemetry. */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "t", "b5", 2, 1, 0, NULL),
                     -ENOSPC);
    assert_int_equal(stats(f->ob).refused[LUME_LANE_BULK], 1);
    /* Telemetry pushes out telemetry, alarms push out telemetry. */
    add(f->ob, LUME_LANE_TELEMETRY, "t4");
    for (int i = 6; i < 10; i++) {
        snprintf(p, sizeof p, "a%d", i);
        add(f->ob, LUME_LANE_ALARM, p);
    }
    st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_TELEMETRY], 5);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 0);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 10);

    /* Only alarms remain: others refused, alarms accepted up to 2x. */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "t", "x", 1, 1, 0, NULL),
                     -ENOSPC);
    for (int i = 10; i < 20; i++) {
        snprintf(p, sizeof p, "a%d", i);
        add(f->ob, LUME_LANE_ALARM, p);
    }
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_ALARM, "t", "a20", 3, 1, 0, NULL),
                     -ENOSPC);
    st = stats(f->ob);
    assert_int_equal(st.refused[LUME_LANE_TELEMETRY], 1);
    assert_int_equal(st.refused[LUME_LANE_ALARM], 1);
    assert_int_equal(st.dropped[LUME_LANE_ALARM], 0);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 20);
    assert_non_null(strstr(f->last_log, "refused"));

    /* What survives, durably: every alarm, in order, nothing else. */
    reopen(f, 1000, 10, 0);
    assert_int_equal(peek(f->ob, &g, MAXP), 20);
    assert_string_equal(payloads(&g), "a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 "
                                      "a15 a16 a17 a18 a19");
    got_clear(&g);
}

static void test_cap_spares_inflight(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 1000, 3, 0);
    add(f->ob, LUME_LANE_BULK, "b0");
    add(f->ob, LUME_LANE_BULK, "b1");
    add(f->ob, LUME_LANE_BULK, "b2");
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(peek(f->ob, &g, 2), 2);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[0].id, 1), 0);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[1].id, 2), 0);
    /* b2, then the pending b3 may go; b0 and b1 may not. */
    add(f->ob, LUME_LANE_BULK, "b3");
    add(f->ob, LUME_LANE_BULK, "b4");
    assert_int_equal(stats(f->ob).dropped[LUME_LANE_BULK], 2);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(peek(f->ob, &g, MAXP), 1);
    assert_string_equal(payloads(&g), "b4");
    assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[0].id, 3), 0);
    /* Everything is in flight: nothing may go, the new message is refused. */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "t", "b5", 2, 1, 0, NULL),
                     -ENOSPC);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 2);
    assert_int_equal(st.refused[LUME_LANE_BULK], 1);
    assert_int_equal(st.depth[LUME_LANE_BULK], 3);
    lume_outbox_requeue(f->ob);
    assert_int_equal(peek(f->ob, &g, MAXP), 3);
    assert_string_equal(payloads(&g), "b0 b1 b4");
    got_clear(&g);
}

static void test_cap_bytes(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 1000, 0, 100);
    char p[25];
    /* topic "t" (1 byte) + 24 bytes of payload = 25 bytes each: 4 fit. */
    for (int i = 0; i < 5; i++) {
        memset(p, 'a' + i, sizeof p - 1);
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "t", p, 24, 0, 0, NULL), 0);
        if (i == 1)
            assert_int_equal(lume_outbox_commit(f->ob), 0);
    }
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.bytes[LUME_LANE_BULK], 100);
    assert_int_equal(st.depth[LUME_LANE_BULK], 4);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 1);
    /* Larger than the whole cap: refused without dropping anything. */
    char big[200] = {0};
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "t", big, sizeof big, 0,
                                        0, NULL), -ENOSPC);
    st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 1);
    assert_int_equal(st.refused[LUME_LANE_TELEMETRY], 1);
    /* A 60-byte telemetry message needs three 25-byte bulk ones to go. */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "t", big, 59, 0, 0, NULL),
                     0);
    st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 4);
    assert_int_equal(st.bytes[LUME_LANE_BULK] + st.bytes[LUME_LANE_TELEMETRY], 85);

    /* Byte counters are rebuilt from the table on open. */
    reopen(f, 1000, 0, 100);
    st = stats(f->ob);
    assert_int_equal(st.bytes[LUME_LANE_BULK], 25);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], 60);
    assert_int_equal(peek(f->ob, &g, MAXP), 2);
    assert_int_equal(g.m[1].len, 24);
    assert_int_equal(((char *)g.m[1].payload)[0], 'e');
    got_clear(&g);
}

/* ---- stats, dump, read-only view ---------------------------------------- */

static void test_stats(void **state)
{
    fx *f = *state;
    got g = {0};
    add(f->ob, LUME_LANE_ALARM, "a");
    add(f->ob, LUME_LANE_TELEMETRY, "tt");
    add(f->ob, LUME_LANE_TELEMETRY, "tt");
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "topic", NULL, 0, 0, 0, NULL),
                     0);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.appended[LUME_LANE_ALARM], 1);
    assert_int_equal(st.appended[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(st.appended[LUME_LANE_BULK], 1);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], 2 * (7 + 2));
    assert_int_equal(st.bytes[LUME_LANE_BULK], 5);
    assert_int_equal(st.pending, 4);
    assert_int_equal(st.commits, 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);   /* nothing to do: not counted */
    assert_int_equal(peek(f->ob, &g, MAXP), 4);
    assert_int_equal(g.m[3].len, 0);
    assert_null(g.m[3].payload);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[1].id, 7), 0);
    assert_int_equal(lume_outbox_ack(f->ob, g.m[0].id), 0);
    st = stats(f->ob);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.acked[LUME_LANE_ALARM], 1);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 0);
    assert_int_equal(st.commit_errors, 0);
    /* An ack or a mark is a pending change too. */
    assert_true(lume_outbox_pending_age_ms(f->ob) >= 0);
    got_clear(&g);
}

typedef struct dumped {
    int  n, stop_at;
    char order[256];
} dumped;

static int on_dump(void *ud, const lume_outbox_msg *m)
{
    dumped *d = ud;
    size_t off = strlen(d->order);
    snprintf(d->order + off, sizeof d->order - off, "%s%.*s", d->n ? " " : "", (int)m->len,
             (const char *)m->payload);
    d->n++;
    return d->stop_at && d->n >= d->stop_at;
}

static void test_dump_and_readonly(void **state)
{
    fx *f = *state;
    add(f->ob, LUME_LANE_BULK, "b1");
    add(f->ob, LUME_LANE_ALARM, "a1");
    add(f->ob, LUME_LANE_TELEMETRY, "t1");
    add(f->ob, LUME_LANE_BULK, "b2");
    add(f->ob, LUME_LANE_ALARM, "a2");
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    add(f->ob, LUME_LANE_ALARM, "pending");

    dumped d = {0};
    assert_int_equal(lume_outbox_dump(f->ob, on_dump, &d), 5);
    assert_string_equal(d.order, "a1 a2 t1 b1 b2");
    dumped early = {.stop_at = 2};
    assert_int_equal(lume_outbox_dump(f->ob, on_dump, &early), 2);
    assert_string_equal(early.order, "a1 a2");

    /* Another handle, read-only, while the writer is open. */
    char *err = NULL;
    lume_outbox *ro = lume_outbox_open_readonly(f->path, &err);
    assert_non_null(ro);
    assert_null(err);
    lume_outbox_stats st = stats(ro);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 2);   /* not the pending one */
    assert_int_equal(st.depth[LUME_LANE_BULK], 2);
    assert_int_equal(st.bytes[LUME_LANE_BULK], 2 * (7 + 2));
    assert_int_equal(st.inflight, 0);
    dumped r = {0};
    assert_int_equal(lume_outbox_dump(ro, on_dump, &r), 5);
    assert_string_equal(r.order, "a1 a2 t1 b1 b2");

    /* The writer commits more and sends one: the reader sees both. */
    got g = {0};
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(peek(f->ob, &g, 1), 1);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[0].id, 9), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    st = stats(ro);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 3);
    assert_int_equal(st.inflight, 1);

    /* It cannot change anything. */
    assert_int_equal(lume_outbox_append(ro, LUME_LANE_ALARM, "t", "x", 1, 0, 0, NULL),
                     -EROFS);
    assert_int_equal(lume_outbox_ack(ro, g.m[0].id), -EROFS);
    assert_int_equal(lume_outbox_peek(ro, g.m, 1), -EROFS);
    lume_outbox_close(ro);

    assert_null(lume_outbox_open_readonly("/nonexistent-lume/outbox.db", &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-lume/outbox.db"));
    free(err);
    got_clear(&g);
}

static void test_bad_args(void **state)
{
    fx *f = *state;
    lume_outbox *ob = f->ob;
    lume_outbox_msg m;
    assert_int_equal(lume_outbox_append(ob, -1, "t", "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, LUME_LANES, "t", "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "t", "x", 1, 3, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "t", "x", 1, -1, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, NULL, "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "", "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "a/#", "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "a/+/b", "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "t", NULL, 4, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(ob, 0, "t", "x", 1, 0, -5, NULL), -EINVAL);
    assert_int_equal(lume_outbox_append(NULL, 0, "t", "x", 1, 0, 0, NULL), -EINVAL);
    assert_int_equal(lume_outbox_peek(ob, NULL, 4), -EINVAL);
    assert_int_equal(lume_outbox_peek(ob, &m, -1), -EINVAL);
    assert_int_equal(lume_outbox_peek(ob, &m, 0), 0);
    assert_int_equal(lume_outbox_mark_inflight(ob, 0, 1), -ENOENT);
    assert_int_equal(lume_outbox_mark_inflight(ob, 12345, 1), -ENOENT);
    assert_int_equal(lume_outbox_commit(NULL), -EINVAL);
    assert_int_equal(lume_outbox_dump(ob, NULL, NULL), -EINVAL);
    /* None of the refused appends counted as appended. */
    assert_int_equal(stats(ob).appended[0], 0);
    assert_int_equal(stats(ob).pending, 0);

    char *err = NULL;
    assert_null(lume_outbox_open(NULL, NULL, &err));
    assert_non_null(err);
    free(err);
    err = NULL;
    assert_null(lume_outbox_open("/nonexistent-lume/outbox.db", NULL, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-lume/outbox.db"));
    free(err);
}

static void test_opts(void **state)
{
    fx *f = *state;
    lume_outbox_opts o;
    lume_outbox_opts_default(&o);
    assert_int_equal(o.commit_interval_ms, 50);
    assert_int_equal(o.commit_batch, 1000);
    assert_int_equal(o.max_messages, 1000000);
    assert_int_equal(o.max_bytes, 64LL * 1024 * 1024);
    assert_false(o.synchronous_full);
    o.commit_batch = 2;
    o.max_messages = 1;
    o.synchronous_full = true;
    lume_outbox_set_opts(f->ob, &o);
    const lume_outbox_opts *now = lume_outbox_get_opts(f->ob);
    assert_int_equal(now->commit_batch, 2);
    assert_int_equal(now->max_messages, 1);
    assert_true(now->synchronous_full);
    /* The new limits apply at once. */
    add(f->ob, LUME_LANE_BULK, "1");
    add(f->ob, LUME_LANE_BULK, "2");
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 1);
    assert_int_equal(st.depth[LUME_LANE_BULK], 1);
    /* batch of 2 reached: handed to the committer */
    assert_true(st.committing == 1 || st.commits == 1);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    st = stats(f->ob);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.commits, 1);
    o.commit_batch = -3;   /* out of range: the default */
    lume_outbox_set_opts(f->ob, &o);
    assert_int_equal(lume_outbox_get_opts(f->ob)->commit_batch, 1000);
}

/* ---- a session against a model -------------------------------------------- */

/* Random appends, commits, peeks, marks, out-of-order acks, requeues and
 * reopens, checked after every peek against a plain model: peek must return
 * exactly the first committed, unacked, not-in-flight messages in lane then
 * append order; at the end everything is acked exactly once. */
enum { M_NONE, M_PENDING, M_COMMITTED, M_ACKED };
#define SIM_MSGS 3000

typedef struct model {
    uint8_t  state[SIM_MSGS], lane[SIM_MSGS], inflight[SIM_MSGS];
    uint64_t id[SIM_MSGS];
    uint16_t pid[SIM_MSGS];
    uint32_t marks[SIM_MSGS];
    int      appended;
} model;

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static int seq_of(const lume_outbox_msg *m)
{
    char buf[16];
    assert_true(m->len > 0 && m->len < sizeof buf);
    memcpy(buf, m->payload, m->len);
    buf[m->len] = 0;
    return atoi(buf);
}

/* A full batch (of appends or acks) went to the committer: once it is
 * written, everything appended before is committed. Wait for it with the
 * barrier and tell the model. */
static void settle(lume_outbox *ob, model *md, uint64_t *seen)
{
    lume_outbox_stats st = stats(ob);
    if (!st.committing && st.commits == *seen)
        return;
    assert_int_equal(lume_outbox_commit(ob), 0);
    st = stats(ob);
    assert_int_equal(st.pending, 0);
    *seen = st.commits;
    for (int k = 0; k < md->appended; k++)
        if (md->state[k] == M_PENDING)
            md->state[k] = M_COMMITTED;
}

static void test_session_model(void **state)
{
    fx *f = *state;
    static model md;
    memset(&md, 0, sizeof md);
    uint32_t r = 12345;
    got g = {0};
    int acked = 0;
    reopen(f, 64, 0, 0);

    uint64_t seen = 0;
    for (int step = 0; acked < SIM_MSGS; step++) {
        assert_true(step < 200000);
        uint32_t op = rnd(&r) % 100;
        if (op < 30 && md.appended < SIM_MSGS) {
            int n = 1 + (int)(rnd(&r) % 20);
            for (int i = 0; i < n && md.appended < SIM_MSGS; i++) {
                int s = md.appended++;
                char p[16];
                snprintf(p, sizeof p, "%d", s);
                md.lane[s] = (uint8_t)(rnd(&r) % LUME_LANES);
                assert_int_equal(lume_outbox_append(f->ob, md.lane[s], "sim", p, strlen(p),
                                                    1, 0, &md.id[s]), 0);
                md.state[s] = M_PENDING;
                settle(f->ob, &md, &seen);
            }
        } else if (op < 45) {
            assert_int_equal(lume_outbox_commit(f->ob), 0);
            seen = stats(f->ob).commits;
            for (int k = 0; k < md.appended; k++)
                if (md.state[k] == M_PENDING)
                    md.state[k] = M_COMMITTED;
        } else if (op < 75) {
            int max = 1 + (int)(rnd(&r) % 40);
            peek(f->ob, &g, max);
            /* What the model says peek must return. */
            int want = 0;
            for (int l = 0; l < LUME_LANES && want < max; l++)
                for (int k = 0; k < md.appended && want < max; k++) {
                    if (md.lane[k] != l || md.state[k] != M_COMMITTED || md.inflight[k])
                        continue;
                    assert_true(want < g.n);
                    assert_int_equal(seq_of(&g.m[want]), k);
                    assert_int_equal(g.m[want].id, md.id[k]);
                    assert_int_equal(g.m[want].packet_id, md.pid[k]);
                    assert_int_equal(g.m[want].attempts, md.marks[k]);
                    want++;
                }
            assert_int_equal(g.n, want);
            /* Send some of them. */
            int send = g.n ? (int)(rnd(&r) % (unsigned)(g.n + 1)) : 0;
            for (int i = 0; i < send; i++) {
                int k = seq_of(&g.m[i]);
                uint16_t pid = md.pid[k] ? md.pid[k] : (uint16_t)(1 + rnd(&r) % 65535);
                assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[i].id, pid), 0);
                md.inflight[k] = 1;
                md.pid[k] = pid;
                md.marks[k]++;
            }
        } else if (op < 93) {
            /* PUBACKs, in any order. */
            for (int k = 0; k < md.appended; k++)
                if (md.inflight[k] && rnd(&r) % 3 == 0) {
                    assert_int_equal(lume_outbox_ack(f->ob, md.id[k]), 0);
                    assert_int_equal(lume_outbox_ack(f->ob, md.id[k]), -ENOENT);
                    md.inflight[k] = 0;
                    md.state[k] = M_ACKED;
                    acked++;
                }
        } else if (op < 97) {
            lume_outbox_requeue(f->ob);
            memset(md.inflight, 0, sizeof md.inflight);
        } else {
            reopen(f, 64, 0, 0);   /* commits on close */
            seen = 0;
            for (int k = 0; k < md.appended; k++)
                if (md.state[k] == M_PENDING)
                    md.state[k] = M_COMMITTED;
            memset(md.inflight, 0, sizeof md.inflight);
        }
        settle(f->ob, &md, &seen);   /* a batch of acks is handed over too */
        /* Counters agree with the model at every step. */
        lume_outbox_stats st = stats(f->ob);
        uint64_t depth = 0, infl = 0;
        for (int k = 0; k < md.appended; k++) {
            depth += md.state[k] == M_PENDING || md.state[k] == M_COMMITTED;
            infl += md.inflight[k];
        }
        assert_int_equal(st.depth[0] + st.depth[1] + st.depth[2], depth);
        assert_int_equal(st.inflight, infl);
    }
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    reopen(f, 64, 0, 0);
    dumped d = {0};
    assert_int_equal(lume_outbox_dump(f->ob, on_dump, &d), 0);
    got_clear(&g);
}

/* ---- commit failures ------------------------------------------------------ */

/* Another writer holds the database lock: SQLITE_BUSY. */
static void test_commit_busy(void **state)
{
    fx *f = *state;
    got g = {0};
    uint64_t x0 = add(f->ob, LUME_LANE_TELEMETRY, "x0");
    uint64_t x1 = add(f->ob, LUME_LANE_TELEMETRY, "x1");
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, x0, 77), 0);
    assert_int_equal(lume_outbox_mark_inflight(f->ob, x1, 78), 0);
    add(f->ob, LUME_LANE_TELEMETRY, "x2");
    add(f->ob, LUME_LANE_TELEMETRY, "x3");

    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    int lines = f->log_lines;
    assert_int_equal(lume_outbox_commit(f->ob), -EIO);
    assert_int_equal(f->log_lines, lines + 1);
    assert_non_null(strstr(f->last_log, "locked"));
    assert_non_null(strstr(lume_outbox_last_error(f->ob), "locked"));
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.commit_errors, 1);
    assert_int_equal(st.pending, 2);
    /* Not visible while failing; an ack meanwhile joins the batch. */
    assert_int_equal(peek(f->ob, &g, MAXP), 0);
    assert_int_equal(lume_outbox_ack(f->ob, x0), 0);
    assert_int_equal(lume_outbox_commit(f->ob), -EIO);   /* still locked */
    assert_int_equal(stats(f->ob).commit_errors, 2);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);

    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(stats(f->ob).pending, 0);
    assert_int_equal(lume_outbox_pending_age_ms(f->ob), -1);
    /* The other connection sees everything the retried commit wrote: the
     * inserts, the in-flight mark, the delete. */
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(other, "SELECT group_concat(CAST(payload AS TEXT)"
                                        " || ':' || packet_id, ' ') FROM "
                                        "(SELECT * FROM outbox WHERE lane < 255 ORDER BY id)",
                                        -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "x1:78 x2:0 x3:0");
    sqlite3_finalize(s);
    sqlite3_close(other);
    assert_int_equal(peek(f->ob, &g, MAXP), 2);
    assert_string_equal(payloads(&g), "x2 x3");
    got_clear(&g);
}

/* The cap policy needs to drop a message that is in the batch the
 * committer is writing: it waits for that commit first (here it fails on a
 * locked file, so the batch is the loop's again), then drops from it. */
static void test_cap_waits_for_the_committer(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 2, 3, 0);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    add(f->ob, LUME_LANE_BULK, "b0");
    add(f->ob, LUME_LANE_BULK, "b1");     /* handed over: the committer waits on the lock */
    assert_int_equal(stats(f->ob).committing, 2);
    add(f->ob, LUME_LANE_BULK, "b2");
    add(f->ob, LUME_LANE_BULK, "b3");     /* over the cap: b0 must go */
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 1);
    assert_int_equal(st.depth[LUME_LANE_BULK], 3);
    assert_int_equal(st.commit_errors, 1);
    assert_int_equal(st.pending, 3);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(peek(f->ob, &g, MAXP), 3);
    assert_string_equal(payloads(&g), "b1 b2 b3");
    got_clear(&g);
    reopen(f, 2, 3, 0);
    st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 1);
    assert_int_equal(st.depth[LUME_LANE_BULK], 3);
}

/* The file system refuses to grow the files (RLIMIT_FSIZE, a real write
 * error from the kernel); the automatic commit of a full batch fails. */
static void test_commit_write_error(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 100, 0, 0);
    struct stat sb;
    off_t biggest = 0;
    char p[320];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
        if (stat(p, &sb) == 0 && sb.st_size > biggest)
            biggest = sb.st_size;
    }
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)biggest + 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    /* Batches of 100 go to the committer, which fails to write them; the
     * outbox takes up to 4 batches (400 messages) that are not durable,
     * then retries the failed one itself, and refuses when that fails. */
    char payload[4000];
    int rc_last = 0, accepted = 0;
    for (int i = 0; i < 401; i++) {
        memset(payload, 'a' + i % 26, sizeof payload);
        snprintf(payload, 16, "%06d", i % 1000000);
        rc_last = lume_outbox_append(f->ob, LUME_LANE_BULK, "big", payload, sizeof payload,
                                     1, 0, NULL);
        accepted += rc_last == 0;
    }
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);

    /* The first batch's commit failed and was kept; the 401st append found
     * 400 not durable, retried it, failed, and was not taken. */
    assert_int_equal(accepted, 400);
    assert_int_equal(rc_last, -EIO);
    assert_int_equal(st.commit_errors, 2);
    assert_int_equal(st.pending, 400);
    assert_int_equal(st.committing, 100);
    assert_int_equal(st.commits, 0);
    assert_non_null(strstr(f->last_log, "commit failed"));
    assert_non_null(strstr(lume_outbox_last_error(f->ob), "commit failed"));

    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_string_equal(lume_outbox_last_error(f->ob), "");
    reopen(f, 100, 0, 0);
    dumped d = {0};
    assert_int_equal(lume_outbox_dump(f->ob, on_dump, &d), 400);
    assert_int_equal(peek(f->ob, &g, MAXP), MAXP);
    for (int i = 0; i < MAXP; i++) {
        snprintf(p, sizeof p, "%06d", i);
        assert_memory_equal(g.m[i].payload, p, 6);
    }
    got_clear(&g);
}


/* ---- counters that outlive the process, space, opening ------------------ */

/* Drops, refusals and expiries are kept in the file, written with the
 * messages: a restart (and another process's read-only view) sees them. */
static void test_counters_persist(void **state)
{
    fx *f = *state;
    got g = {0};
    reopen(f, 1000, 3, 0);
    add(f->ob, LUME_LANE_TELEMETRY, "t0");
    add(f->ob, LUME_LANE_TELEMETRY, "t1");
    add(f->ob, LUME_LANE_TELEMETRY, "t2");
    /* bulk may not push out telemetry */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "t", "b0", 2, 1, 0, NULL),
                     -ENOSPC);
    add(f->ob, LUME_LANE_TELEMETRY, "t3");   /* drops t0 */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_ALARM, "t", "a0", 2, 1, 1, NULL),
                     0);                      /* drops t1, expires soon */
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    tu_sleep_ms(20);
    assert_int_equal(peek(f->ob, &g, MAXP), 2);   /* a0 expired on the way */
    assert_string_equal(payloads(&g), "t2 t3");
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(st.refused[LUME_LANE_BULK], 1);
    assert_int_equal(st.expired[LUME_LANE_ALARM], 1);
    got_clear(&g);

    /* A refusal alone is a change to write. */
    add(f->ob, LUME_LANE_TELEMETRY, "t4");
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "t", "b1", 2, 1, 0, NULL),
                     -ENOSPC);
    assert_true(lume_outbox_pending_age_ms(f->ob) >= 0);
    reopen(f, 1000, 3, 0);   /* close commits */
    st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_TELEMETRY], 2);
    assert_int_equal(st.refused[LUME_LANE_BULK], 2);
    assert_int_equal(st.expired[LUME_LANE_ALARM], 1);
    assert_int_equal(st.dropped[LUME_LANE_BULK], 0);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 3);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 0);
    /* The counts of this process start from 0. */
    assert_int_equal(st.appended[LUME_LANE_TELEMETRY], 0);
    assert_int_equal(st.commits, 0);

    /* More after the restart add up; another process sees them too. */
    add(f->ob, LUME_LANE_TELEMETRY, "t5");   /* drops t2 */
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    char *err = NULL;
    lume_outbox *ro = lume_outbox_open_readonly(f->path, &err);
    assert_non_null(ro);
    st = stats(ro);
    assert_int_equal(st.dropped[LUME_LANE_TELEMETRY], 3);
    assert_int_equal(st.refused[LUME_LANE_BULK], 2);
    assert_int_equal(st.expired[LUME_LANE_ALARM], 1);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 3);
    lume_outbox_close(ro);
}

/* The sizes of outbox.db and outbox.db-wal. */
static off_t db_size(const char *path, bool with_wal)
{
    struct stat sb;
    char p[320];
    off_t n = stat(path, &sb) == 0 ? sb.st_size : 0;
    snprintf(p, sizeof p, "%s-wal", path);
    if (with_wal && stat(p, &sb) == 0)
        n += sb.st_size;
    return n;
}

/* Deliver everything: peek, mark, ack until the outbox is empty. */
static void drain(lume_outbox *ob)
{
    got g = {0};
    uint16_t pid = 1;
    while (peek(ob, &g, MAXP) > 0)
        for (int i = 0; i < g.n; i++) {
            assert_int_equal(lume_outbox_mark_inflight(ob, g.m[i].id, pid++), 0);
            assert_int_equal(lume_outbox_ack(ob, g.m[i].id), 0);
            if (!pid)
                pid = 1;
        }
    got_clear(&g);
    assert_int_equal(lume_outbox_commit(ob), 0);
}

/* After a backlog drains, the file gives its space back (it used to keep
 * the high-water mark for ever). */
static void test_reclaim_after_drain(void **state)
{
    fx *f = *state;
    char payload[1000];
    memset(payload, 'r', sizeof payload);
    for (int i = 0; i < 8000; i++)
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "reclaim/me", payload,
                                            sizeof payload, 1, 0, NULL), 0);
    reopen(f, 1000, 0, 0);
    off_t full = db_size(f->path, false);
    assert_true(full > 8 * 1000 * 1000);
    assert_int_equal(stats(f->ob).depth[LUME_LANE_BULK], 8000);

    drain(f->ob);
    /* The committer gives the free pages back between commits. */
    uint64_t freeb = 0;
    for (int i = 0; i < 3000; i++) {
        freeb = stats(f->ob).free_bytes;
        if (freeb < 1024 * 1024)
            break;
        tu_sleep_ms(10);
    }
    assert_true(freeb < 1024 * 1024);
    reopen(f, 1000, 0, 0);   /* the last close checkpoints into the file */
    off_t empty = db_size(f->path, true);
    assert_true(empty < full / 8);
    assert_int_equal(stats(f->ob).depth[LUME_LANE_BULK], 0);
    /* and it still works */
    add(f->ob, LUME_LANE_ALARM, "after");
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    got g = {0};
    assert_int_equal(peek(f->ob, &g, MAXP), 1);
    got_clear(&g);
}

/* The WAL is copied into the database file while the outbox is open (the
 * checkpointer's connection once never read the file, so it never knew it
 * was in WAL mode and its checkpoints did nothing until close), and cut
 * back: a long stream does not grow it without bound. */
static void test_checkpoints_while_open(void **state)
{
    fx *f = *state;
    char payload[1000];
    memset(payload, 'c', sizeof payload);
    off_t wal_max = 0;
    for (int i = 0; i < 60000; i++) {
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, "ckpt/me", payload,
                                            sizeof payload, 1, 0, NULL), 0);
        if (i % 1000 == 999) {
            off_t w = db_size(f->path, true) - db_size(f->path, false);
            if (w > wal_max)
                wal_max = w;
        }
    }
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    off_t db = 0;
    for (int i = 0; i < 500 && (db = db_size(f->path, false)) < 50 * 1000 * 1000; i++)
        tu_sleep_ms(10);
    assert_true(db >= 50 * 1000 * 1000);   /* 60 MB of messages */
    assert_true(wal_max < 40 * 1000 * 1000);
}

/* Bytes this process read from files so far (/proc/self/io rchar). */
static long long bytes_read(void)
{
    FILE *fp = fopen("/proc/self/io", "r");
    long long v = -1;
    char line[128];
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "rchar: %lld", &v) == 1)
            break;
    if (fp)
        fclose(fp);
    return v;
}

/* Opening reads the lane counts kept in the file, not the backlog: the
 * bytes read to open a 10 MB outbox are a few pages, and its depth and
 * bytes are right. */
static void test_open_does_not_scan(void **state)
{
    fx *f = *state;
    char payload[100];
    memset(payload, 'o', sizeof payload);
    lume_outbox_close(f->ob);
    f->ob = open_with(f, 5000, 0, 0);
    for (int i = 0; i < 80000; i++)
        assert_int_equal(lume_outbox_append(f->ob, i % 3, "open/scan", payload,
                                            sizeof payload, 1, 0, NULL), 0);
    got g = {0};
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(peek(f->ob, &g, 5), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(lume_outbox_mark_inflight(f->ob, g.m[i].id, (uint16_t)(i + 1)), 0);
    assert_int_equal(lume_outbox_ack(f->ob, g.m[0].id), 0);
    got_clear(&g);
    lume_outbox_close(f->ob);
    f->ob = NULL;
    off_t size = db_size(f->path, true);
    assert_true(size > 10 * 1000 * 1000);

    long long before = bytes_read();
    assert_true(before >= 0);
    f->ob = open_with(f, 1000, 0, 0);
    long long read = bytes_read() - before;
    assert_non_null(f->ob);
    assert_true(read < 256 * 1024);
    assert_true(read * 40 < (long long)size);
    lume_outbox_stats st = stats(f->ob);
    uint64_t per = sizeof "open/scan" - 1 + sizeof payload;
    /* 26,667 each in lanes 0 and 1, 26,666 in lane 2; the first alarm acked */
    uint64_t n[LUME_LANES] = {26666, 26667, 26666};
    for (int l = 0; l < LUME_LANES; l++) {
        assert_int_equal(st.depth[l], n[l]);
        assert_int_equal(st.bytes[l], n[l] * per);
    }
    assert_non_null(strstr(f->last_log, "4 message(s) sent before the last stop"));
}

/* A file written by a schema 1 lume: counted once when opened (the log
 * says so), then it behaves like a new one, and once it drains it is
 * vacuumed into incremental mode and gives its space back. */
static void test_schema1_migrates(void **state)
{
    fx *f = *state;
    lume_outbox_close(f->ob);
    f->ob = NULL;
    tu_rm_tree(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE outbox(id INTEGER PRIMARY KEY, lane INTEGER NOT NULL,"
        " qos INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
        " expires_ms INTEGER NOT NULL DEFAULT 0, packet_id INTEGER NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, topic TEXT NOT NULL, payload BLOB);"
        "CREATE INDEX outbox_lane_id ON outbox(lane, id);"
        "PRAGMA user_version=1;"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)"
        " INSERT INTO outbox(id,lane,qos,created_ms,topic,payload,packet_id,attempts)"
        " SELECT i, i % 3, 1, 0, 'old/t', zeroblob(1000), i = 2, i = 2 FROM n;",
        NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->ob = open_with(f, 1000, 0, 0);
    assert_non_null(f->ob);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.depth[0], 1000);
    assert_int_equal(st.depth[1], 1000);
    assert_int_equal(st.bytes[2], 1000 * (5 + 1000));
    off_t full = db_size(f->path, true);
    drain(f->ob);
    for (int i = 0; i < 3000 && stats(f->ob).free_bytes >= 1024 * 1024; i++)
        tu_sleep_ms(10);
    reopen(f, 1000, 0, 0);
    assert_true(db_size(f->path, true) < full / 4);
    lume_outbox_close(f->ob);
    f->ob = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA auto_vacuum", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 2);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 3);
    sqlite3_finalize(s);
    sqlite3_close(db);
    f->ob = open_with(f, 1000, 0, 0);
    assert_non_null(f->ob);
}

/* ---- interned topics (schema 3) ------------------------------------------ */

static int64_t one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int count_topic(const lume_outbox_msg *m, int n, const char *topic)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += !strcmp(m[i].topic, topic);
    return k;
}

/* A topic is stored once, in a row of its own; messages refer to it (a few
 * bytes instead of the topic), and come back with the whole topic, also
 * after a reopen. Bytes count the whole topic. Past TOPICS_MAX (64) topics
 * a message keeps its topic in its row. A drained outbox keeps no topic. */
static void test_topics_interned(void **state)
{
    fx *f = *state;
    static const char azure[] = "devices/d1/messages/events/$.ct=application%2Fjson&"
                                "$.ce=utf-8&route=r&t=mqtt";
    for (int i = 0; i < 100; i++)
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, azure, "0123456789",
                                            10, 1, 0, NULL), 0);
    char t[64];
    for (int i = 0; i < 80; i++) {   /* 80 more topics: 63 interned, 17 inline */
        snprintf(t, sizeof t, "lume/d1/telemetry/r%d", i);
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_BULK, t, "x", 1, 1, 0, NULL), 0);
    }
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 100);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], 100 * (strlen(azure) + 10));

    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(one_int(db, "SELECT count(*) FROM outbox WHERE lane=255"), 64);
    assert_int_equal(one_int(db, "SELECT max(length(topic)) FROM outbox WHERE lane=1"), 2);
    assert_int_equal(one_int(db, "SELECT count(*) FROM outbox WHERE lane=2 AND "
                                 "substr(topic,1,1)='lume'"), 0);
    assert_int_equal(one_int(db, "SELECT count(*) FROM outbox WHERE lane=2 AND "
                                 "substr(topic,1,5)='lume/'"), 17);
    assert_int_equal(one_int(db, "SELECT sum(bytes) FROM outbox_lanes WHERE lane=1"),
                     100 * (int64_t)(strlen(azure) + 10));
    sqlite3_close(db);

    for (int round = 0; round < 2; round++) {   /* as appended, then read back at open */
        got g = {0};
        int n = peek(f->ob, &g, MAXP);
        assert_int_equal(n, MAXP);
        assert_int_equal(count_topic(g.m, n, azure), MAXP);
        got_clear(&g);
        reopen(f, 1000, 0, 0);
    }
    /* every message, every topic, in order */
    int seen = 0, bulk = 0;
    lume_outbox_msg m[MAXP];
    int n;
    while ((n = lume_outbox_peek(f->ob, m, MAXP)) > 0) {
        for (int i = 0; i < n; i++) {
            if (m[i].lane == LUME_LANE_TELEMETRY) {
                assert_string_equal(m[i].topic, azure);
                seen++;
            } else {
                snprintf(t, sizeof t, "lume/d1/telemetry/r%d", bulk++);
                assert_string_equal(m[i].topic, t);
            }
            assert_int_equal(lume_outbox_ack(f->ob, m[i].id), 0);
            lume_outbox_msg_clear(&m[i]);
        }
    }
    assert_int_equal(n, 0);
    assert_int_equal(seen, 100);
    assert_int_equal(bulk, 80);
    st = stats(f->ob);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY] + st.bytes[LUME_LANE_BULK], 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(one_int(db, "SELECT count(*) FROM outbox"), 0);   /* topics too */
    sqlite3_close(db);
    /* a topic whose row was deleted is interned again */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, azure, "y", 1, 1, 0, NULL),
                     0);
    reopen(f, 1000, 0, 0);
    got g = {0};
    assert_int_equal(peek(f->ob, &g, MAXP), 1);
    assert_string_equal(g.m[0].topic, azure);
    got_clear(&g);
    /* a topic may not look like a reference */
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "\x01" "1", "y", 1, 1, 0,
                                        NULL), -EINVAL);
}

/* Dump for `lume outbox dump` (read-only, another process) resolves the
 * references and shows no topic row. */
static int dump_topic(void *ud, const lume_outbox_msg *m)
{
    int *n = ud;
    assert_string_equal(m->topic, "devices/d1/messages/events/route=a");
    assert_true(m->lane < LUME_LANES);
    (*n)++;
    return 0;
}

static void test_topics_dump_readonly(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 5; i++)
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_ALARM,
                                            "devices/d1/messages/events/route=a", "z", 1, 1, 0,
                                            NULL), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    char *err = NULL;
    lume_outbox *ro = lume_outbox_open_readonly(f->path, &err);
    assert_non_null(ro);
    int n = 0;
    assert_int_equal(lume_outbox_dump(ro, dump_topic, &n), 5);
    assert_int_equal(n, 5);
    lume_outbox_stats st = stats(ro);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 5);
    assert_int_equal(st.bytes[LUME_LANE_ALARM], 5 * (strlen("devices/d1/messages/events/route=a") + 1));
    lume_outbox_close(ro);
}

/* A file written by lume before interning (schema 2: every row holds its
 * topic, outbox_lanes kept) opens as schema 3 and keeps every message, in
 * order, with its topic and in-flight mark; new messages with the same
 * topic are interned and go out after the old ones. */
static void test_schema2_keeps_messages(void **state)
{
    fx *f = *state;
    lume_outbox_close(f->ob);
    f->ob = NULL;
    tu_rm_tree(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    /* the schema 2 text of lume before this change, verbatim */
    assert_int_equal(sqlite3_exec(db,
        "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS outbox( id INTEGER PRIMARY KEY, lane INTEGER NOT NULL,"
        " qos INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
        " expires_ms INTEGER NOT NULL DEFAULT 0, packet_id INTEGER NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, topic TEXT NOT NULL, payload BLOB);"
        "CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox(lane, id);"
        "CREATE TABLE IF NOT EXISTS outbox_lanes( lane INTEGER PRIMARY KEY,"
        " depth INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,"
        " sent INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0,"
        " refused INTEGER NOT NULL DEFAULT 0, expired INTEGER NOT NULL DEFAULT 0);"
        "INSERT OR IGNORE INTO outbox_lanes(lane) VALUES(0),(1),(2);"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)"
        " INSERT INTO outbox(id,lane,qos,created_ms,topic,payload,packet_id,attempts)"
        " SELECT i, 1, 1, 0, 'devices/d1/messages/events/$.ct=application%2Fjson&route=r',"
        " printf('old%d', i), (i = 1) * 7, i = 1 FROM n;"
        "UPDATE outbox_lanes SET depth=300, sent=1, dropped=4,"
        " bytes=(SELECT sum(length(topic) + length(payload)) FROM outbox) WHERE lane=1;"
        "PRAGMA user_version=2;",
        NULL, NULL, NULL), SQLITE_OK);
    int64_t old_bytes = one_int(db, "SELECT bytes FROM outbox_lanes WHERE lane=1");
    sqlite3_close(db);

    f->ob = open_with(f, 1000, 0, 0);
    assert_non_null(f->ob);
    const char *topic = "devices/d1/messages/events/$.ct=application%2Fjson&route=r";
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 300);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], (uint64_t)old_bytes);
    assert_int_equal(st.dropped[LUME_LANE_TELEMETRY], 4);
    for (int i = 0; i < 50; i++) {
        char p[16];
        snprintf(p, sizeof p, "new%d", i);
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, topic, p, strlen(p), 1,
                                            0, NULL), 0);
    }
    reopen(f, 1000, 0, 0);   /* closing commits */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(one_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(one_int(db, "SELECT count(*) FROM outbox WHERE lane=1 AND topic=("
                                 "SELECT topic FROM outbox WHERE id=1)"), 300);
    assert_int_equal(one_int(db, "SELECT count(*) FROM outbox WHERE lane=255"), 1);
    sqlite3_close(db);

    int seen = 0, n;
    lume_outbox_msg m[MAXP];
    while ((n = lume_outbox_peek(f->ob, m, MAXP)) > 0) {
        for (int i = 0; i < n; i++) {
            char want[16];
            if (seen < 300)
                snprintf(want, sizeof want, "old%d", seen + 1);
            else
                snprintf(want, sizeof want, "new%d", seen - 300);
            assert_int_equal(m[i].len, strlen(want));
            assert_memory_equal(m[i].payload, want, m[i].len);
            assert_string_equal(m[i].topic, topic);
            if (seen == 0) {
                assert_int_equal(m[i].packet_id, 7);   /* sent before: resent with its id */
                assert_int_equal(m[i].attempts, 1);
            }
            assert_int_equal(lume_outbox_ack(f->ob, m[i].id), 0);
            lume_outbox_msg_clear(&m[i]);
            seen++;
        }
    }
    assert_int_equal(n, 0);
    assert_int_equal(seen, 350);
    st = stats(f->ob);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], 0);
}

/* A topic row lost (as to damage a salvage went around): its messages
 * cannot be sent; peek drops them, logs it once and counts them in dropped;
 * messages of other topics still go. */
static void test_topic_row_lost(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 10; i++)
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "a/lost", "p", 1, 1, 0,
                                            NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "a/kept", "q", 1, 1, 0,
                                            NULL), 0);
    lume_outbox_close(f->ob);
    f->ob = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM outbox WHERE lane=255 AND topic='a/lost'",
                                  NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 1);
    /* what the recount after a salvage makes of it: no topic, no topic bytes */
    assert_int_equal(sqlite3_exec(db, "UPDATE outbox_lanes SET bytes=bytes-10*6 WHERE lane=1",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->ob = open_with(f, 1000, 0, 0);
    assert_non_null(f->ob);
    f->log_lines = 0;
    got g = {0};
    assert_int_equal(peek(f->ob, &g, MAXP), 3);
    assert_string_equal(g.m[0].topic, "a/kept");
    got_clear(&g);
    assert_int_equal(f->log_lines, 1);
    assert_non_null(strstr(f->last_log, "lost to damage"));
    lume_outbox_stats st = stats(f->ob);
    assert_int_equal(st.dropped[LUME_LANE_TELEMETRY], 10);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 3);
    assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], 3 * (6 + 1));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes),
        T(test_order_and_visibility),
        T(test_auto_commit),
        T(test_committer_thread),
        T(test_inflight_ack_reopen),
        T(test_requeue),
        T(test_ttl_expiry),
        T(test_cap_policy),
        T(test_cap_spares_inflight),
        T(test_cap_bytes),
        T(test_stats),
        T(test_dump_and_readonly),
        T(test_bad_args),
        T(test_opts),
        T(test_session_model),
        T(test_commit_busy),
        T(test_commit_write_error),
        T(test_cap_waits_for_the_committer),
        T(test_counters_persist),
        T(test_reclaim_after_drain),
        T(test_checkpoints_while_open),
        T(test_open_does_not_scan),
        T(test_schema1_migrates),
        T(test_topics_interned),
        T(test_topics_dump_readonly),
        T(test_schema2_keeps_messages),
        T(test_topic_row_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
