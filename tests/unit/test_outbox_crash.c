/* tests/unit/test_outbox_crash.c — kill -9 a process in the middle of an
 * append burst and check that every message it saw durable is there,
 * exactly once, in order, and that nothing follows a gap.
 *
 * A child process opens the outbox and appends sequence numbers as fast as it
 * can. Even rounds: the child calls lume_outbox_commit (the barrier) every
 * BATCH appends and reports the last sequence number once it returned.
 * Odd rounds: append alone hands every full batch to the committer thread,
 * and the child reports the sequence number of stats.durable_id whenever it
 * moves. The parent reads the pipe until the child is well into its burst,
 * sends SIGKILL, reopens the outbox and checks it (and that the lane counts
 * read from outbox_lanes, not counted from the rows, match the rows: they
 * are written in the same transactions). Six rounds on the same file, each
 * starting where the last one's survivors end, so recovery of a killed
 * writer is itself exercised again by the next child. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "outbox.h"
#include "testutil.h"

#define ROUNDS 6
#define BATCH 997          /* prime, so a torn batch could not hide */
#define TOPIC "crash/seq"
#define WAIT_MS 60000      /* a guard against a hung child, not a speed check */

typedef struct fx {
    char  dir[256];
    char  path[300];
    pid_t child;
    int   rfd;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->rfd = -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "crash")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/outbox.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_stop(&f->child, SIGKILL);
    if (f->rfd >= 0)
        close(f->rfd);
    tu_rm_tree(f->dir);
    free(f);
    return 0;
}

/* The child: append start, start+1, ... until killed. Never returns. */
static void burst(const char *path, uint64_t start, int wfd, bool barrier)
{
    lume_outbox_opts o;
    lume_outbox_opts_default(&o);
    o.commit_batch = BATCH;
    o.max_messages = 0;
    o.max_bytes = 0;
    char *err = NULL;
    lume_outbox *ob = lume_outbox_open(path, &o, &err);
    if (!ob) {
        fprintf(stderr, "child: %s\n", err ? err : "open failed");
        _exit(2);
    }
    /* Never block on a slow reader: a report skipped is only a lower bound. */
    fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    uint64_t first_id = 0, durable = 0;
    for (uint64_t seq = start;; seq++) {
        uint64_t id;
        if (lume_outbox_append(ob, LUME_LANE_TELEMETRY, TOPIC, &seq, sizeof seq, 1, 0,
                               &id) != 0)
            _exit(3);
        if (!first_id)
            first_id = id;
        uint64_t report = 0;
        if (barrier) {
            if ((seq - start + 1) % BATCH == 0) {
                if (lume_outbox_commit(ob) != 0)
                    _exit(4);
                lume_outbox_stats st;
                lume_outbox_get_stats(ob, &st);
                if (st.pending != 0 || st.durable_id != id)
                    _exit(5);
                report = seq;
            }
        } else {
            lume_outbox_stats st;
            lume_outbox_get_stats(ob, &st);
            if (st.durable_id >= first_id && st.durable_id != durable) {
                durable = st.durable_id;
                report = start + (durable - first_id);
            }
        }
        if (report) {
            ssize_t w = write(wfd, &report, sizeof report);   /* atomic: < PIPE_BUF */
            (void)w;
        }
    }
}

/* Read one 8-byte report; 1, 0 at end of file, or fail the test on error or
 * when nothing comes for WAIT_MS. */
static int read_report(int fd, uint64_t *v)
{
    unsigned char buf[sizeof *v];
    size_t got = 0;
    while (got < sizeof buf) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, WAIT_MS);
        assert_true(n > 0);
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r == 0) {
            assert_int_equal(got, 0);   /* no torn report */
            return 0;
        }
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r > 0);
        got += (size_t)r;
    }
    memcpy(v, buf, sizeof *v);
    return 1;
}

typedef struct check {
    uint64_t next;       /* the sequence number expected next */
    uint64_t last_id;
    int      bad;
    char     why[160];
} check;

static int on_msg(void *ud, const lume_outbox_msg *m)
{
    check *c = ud;
    uint64_t seq;
    if (m->len != sizeof seq || m->lane != LUME_LANE_TELEMETRY || strcmp(m->topic, TOPIC)) {
        snprintf(c->why, sizeof c->why, "message %llu is not one of ours",
                 (unsigned long long)m->id);
        return c->bad = 1;
    }
    memcpy(&seq, m->payload, sizeof seq);
    if (seq != c->next || m->id <= c->last_id) {
        snprintf(c->why, sizeof c->why, "id %llu holds seq %llu, expected seq %llu",
                 (unsigned long long)m->id, (unsigned long long)seq,
                 (unsigned long long)c->next);
        return c->bad = 1;
    }
    c->next++;
    c->last_id = m->id;
    return 0;
}

static void test_kill_mid_burst(void **state)
{
    fx *f = *state;
    uint64_t survived = 0;   /* highest sequence number in the outbox */

    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            burst(f->path, survived + 1, fds[1], round % 2 == 0);
        }
        f->child = pid;
        f->rfd = fds[0];
        close(fds[1]);

        /* Let it run: 30,000 to 70,000 messages committed, then a little
         * more for a different kill point each round. */
        uint64_t target = survived + 30000 + (uint64_t)round * 10000, reported = 0, v;
        while (reported < target) {
            assert_int_equal(read_report(f->rfd, &v), 1);
            assert_true(v > reported);
            reported = v;
        }
        struct timespec ts = {0, (long)round * 1700 * 1000};
        nanosleep(&ts, NULL);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        f->child = 0;
        /* Killed by us, not dead of its own error. */
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);
        /* Whatever it managed to report before dying was committed too. */
        while (read_report(f->rfd, &v) == 1) {
            assert_true(v > reported);
            reported = v;
        }
        close(f->rfd);
        f->rfd = -1;

        char *err = NULL;
        lume_outbox *ob = lume_outbox_open(f->path, NULL, &err);
        assert_non_null(ob);
        check c = {.next = 1};
        int n = lume_outbox_dump(ob, on_msg, &c);
        if (c.bad)
            fail_msg("round %d: %s", round, c.why);
        assert_true(n >= 0);
        uint64_t last = c.next - 1;   /* 1..last present once each, in order */
        assert_int_equal((uint64_t)n, last);
        assert_true(last >= reported);
        /* Whole batches only: each commit landed entirely or not at all
         * (the barrier rounds commit exactly every BATCH messages). */
        if (round % 2 == 0)
            assert_int_equal((last - survived) % BATCH, 0);
        lume_outbox_stats st;
        lume_outbox_get_stats(ob, &st);
        assert_int_equal(st.depth[LUME_LANE_TELEMETRY], last);
        assert_int_equal(st.bytes[LUME_LANE_TELEMETRY], last * (sizeof TOPIC - 1 + 8));
        lume_outbox_close(ob);
        survived = last;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_mid_burst, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
