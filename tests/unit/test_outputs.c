/* tests/unit/test_outputs.c — Modbus value decoding (word orders), the uart
 * field pick, and the output service: ownership, range, rate limit, the
 * fail-safe on each kind of release and at free, writes off the caller's
 * thread. The service drives the real `file` output driver (a file the
 * test reads back), and a slow driver of the test's own for blocking. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "drv_modbus.h"
#include "drv_uart.h"
#include "outsvc.h"
#include "testutil.h"

#define MS 1000000LL

/* ---- Modbus types ------------------------------------------------------ */

static void test_modbus_decode(void **st)
{
    (void)st;
    uint16_t r[2] = {0xfffe, 0x0001};
    assert_true(lume_modbus_decode(r, LUME_MB_U16, 1) == 65534);
    assert_true(lume_modbus_decode(r, LUME_MB_S16, 1) == -2);
    assert_true(lume_modbus_decode(r, LUME_MB_U32, 1) == 4294836225.0); /* 0xfffe0001 */
    assert_true(lume_modbus_decode(r, LUME_MB_U32, 0) == 0x0001fffe);
    assert_true(lume_modbus_decode(r, LUME_MB_S32, 1) == -131071.0);
    /* 123.456f = 0x42f6e979: ABCD = {0x42f6, 0xe979}, CDAB = {0xe979, 0x42f6} */
    uint16_t abcd[2] = {0x42f6, 0xe979}, cdab[2] = {0xe979, 0x42f6};
    assert_true(fabs(lume_modbus_decode(abcd, LUME_MB_F32, 1) - 123.456) < 1e-4);
    assert_true(fabs(lume_modbus_decode(cdab, LUME_MB_F32, 0) - 123.456) < 1e-4);
    assert_false(fabs(lume_modbus_decode(abcd, LUME_MB_F32, 0) - 123.456) < 1);
    assert_int_equal(lume_modbus_type("float32"), LUME_MB_F32);
    assert_int_equal(lume_modbus_type("f32"), -EINVAL);
    assert_int_equal(lume_modbus_width(LUME_MB_S32), 2);
    assert_int_equal(lume_modbus_width(LUME_MB_S16), 1);
}

static void test_modbus_encode_roundtrip(void **st)
{
    (void)st;
    const double vals[] = {0, 1, -1, 1234.5, -32768, 65535, 2147483647.0, -2147483648.0};
    for (int type = LUME_MB_U16; type <= LUME_MB_F32; type++)
        for (int big = 0; big < 2; big++)
            for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
                uint16_t r[2] = {0, 0};
                if (lume_modbus_encode(vals[i], type, big, r) < 0)
                    continue;
                double back = lume_modbus_decode(r, type, big);
                double want = type == LUME_MB_F32 ? (double)(float)vals[i]
                                                  : (double)llround(vals[i]);
                assert_true(back == want);
            }
    uint16_t r[2];
    assert_int_equal(lume_modbus_encode(-1, LUME_MB_U16, 1, r), -ERANGE);
    assert_int_equal(lume_modbus_encode(70000, LUME_MB_S16, 1, r), -ERANGE);
    assert_int_equal(lume_modbus_encode(NAN, LUME_MB_F32, 1, r), -ERANGE);
    assert_int_equal(lume_modbus_encode(0x12345678, LUME_MB_U32, 0, r), 0);
    assert_int_equal(r[0], 0x5678); /* little word order: low word first */
    assert_int_equal(r[1], 0x1234);
}

static void test_modbus_bad_params(void **st)
{
    (void)st;
    const lume_driver *d = lume_driver_find("modbus");
    assert_non_null(d);
    struct { lume_param p[2]; const char *want; } cases[] = {
        {{{"url", "udp://x", 0}, {"unit", NULL, 1}}, "tcp://HOST"},
        {{{"url", "tcp://127.0.0.1:1502", 0}, {"type", "f64", 0}}, "params.type f64"},
        {{{"url", "tcp://127.0.0.1:1502", 0}, {"order", "middle", 0}}, "params.order middle"},
        {{{"url", "tcp://127.0.0.1:1502", 0}, {"table", "holdings", 0}}, "params.table"},
        {{{"url", "tcp://127.0.0.1:1502", 0}, {"unit", NULL, 300}}, "unit"},
        {{{"url", "tcp://127.0.0.1:1502", 0}, {"adress", NULL, 3}}, "adress"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lume_params p = {cases[i].p, 2};
        void *state = NULL;
        char *err = NULL;
        assert_true(d->open(NULL, &p, &state, &err) < 0);
        assert_non_null(err);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: '%s' does not name '%s'", i, err, cases[i].want);
        free(err);
    }
}

static void test_uart_field(void **st)
{
    (void)st;
    double v = 0;
    const char *l = "T,21.5, 40 ,x";
    assert_int_equal(lume_uart_field(l, strlen(l), ',', 2, &v), 0);
    assert_true(v == 21.5);
    assert_int_equal(lume_uart_field(l, strlen(l), ',', 3, &v), 0);
    assert_true(v == 40);
    assert_int_equal(lume_uart_field(l, strlen(l), ',', 4, &v), -EBADMSG);
    assert_int_equal(lume_uart_field(l, strlen(l), ',', 1, &v), -EBADMSG);
    assert_int_equal(lume_uart_field(l, strlen(l), ',', 5, &v), -ENODATA);
    assert_int_equal(lume_uart_field("", 0, ',', 1, &v), -EBADMSG);
    assert_int_equal(lume_uart_field("1;2", 3, ';', 2, &v), 0);
    assert_true(v == 2);
}

/* ---- the output service ------------------------------------------------ */

static char dir[256];

static double read_back(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    double v = NAN;
    if (fscanf(f, "%lf", &v) != 1)
        v = NAN;
    fclose(f);
    return v;
}

/* An output `name` on the file driver, writing dir/name. */
static void add_file(lume_outsvc *s, const char *name, const lume_output_opts *o, char *path,
                     size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    lume_param pv[] = {{"path", path, 0}};
    lume_params p = {pv, 1};
    const lume_output_driver *d = lume_output_driver_find("file");
    assert_non_null(d);
    void *state = NULL;
    char *err = NULL;
    assert_int_equal(d->open(NULL, &p, &state, &err), 0);
    assert_int_equal(lume_outsvc_add(s, name, d, state, o, &err), 0);
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/lume-outputs.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The uart driver on a FIFO (no termios there: the driver accepts ENOTTY),
 * written by the test: partial frames, the newest frame wins, garbage and
 * an over-long line are read errors the next good frame recovers from. */
static void *uart_open_on(const char *path, lume_param *pv, size_t n)
{
    const lume_driver *d = lume_driver_find("uart");
    assert_non_null(d);
    pv[0] = (lume_param){"path", path, 0};
    lume_params p = {pv, n};
    void *state = NULL;
    char *err = NULL;
    if (d->open(NULL, &p, &state, &err) < 0)
        fail_msg("uart open: %s", err);
    return state;
}

static void put(int fd, const void *b, size_t n) { assert_int_equal(write(fd, b, n), (ssize_t)n); }

static void test_uart_line_framing(void **st)
{
    (void)st;
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/line", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    lume_param pv[4] = {{0}, {"field", NULL, 2}, {"sep", ";", 0}, {"scale", NULL, 10}};
    void *u = uart_open_on(fifo, pv, 4);
    const lume_driver *d = lume_driver_find("uart");
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    assert_true(w >= 0);
    double v = 0;
    assert_int_equal(d->read(u, 0, &v), -EAGAIN);      /* nothing yet */
    put(w, "a;1.5\r\nb;2.", 12);
    assert_int_equal(d->read(u, 0, &v), 0);
    assert_true(v == 15);
    assert_int_equal(d->read(u, 0, &v), -EAGAIN);      /* "b;2." is not complete */
    put(w, "5\na;3\na;4\n", 10);
    assert_int_equal(d->read(u, 0, &v), 0);
    assert_true(v == 40);                              /* the newest line */
    put(w, "a;x\n", 4);
    assert_int_equal(d->read(u, 0, &v), -EBADMSG);
    put(w, "a\n", 2);
    assert_int_equal(d->read(u, 0, &v), -EBADMSG);     /* no field 2 */
    char big[1500];
    memset(big, 'z', sizeof big);
    put(w, big, sizeof big);
    put(w, "\na;6\n", 5);
    int r1 = d->read(u, 0, &v);
    assert_true(r1 == -EMSGSIZE);
    int r2 = d->read(u, 0, &v);
    assert_true(r2 == -EMSGSIZE || r2 == 0);            /* the tail of the long line */
    put(w, "a;7\n", 4);
    assert_int_equal(d->read(u, 0, &v), 0);
    assert_true(v == 70);
    close(w);
    d->close(u);
}

static void test_uart_length_framing(void **st)
{
    (void)st;
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/frames", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    lume_param pv[6] = {{0}, {"framing", "length", 0}, {"frame_len", NULL, 4},
                        {"at", NULL, 1}, {"type", "s16be", 0}, {"sync", NULL, 0xAA}};
    void *u = uart_open_on(fifo, pv, 6);
    const lume_driver *d = lume_driver_find("uart");
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    double v = 0;
    /* two junk bytes, a frame (-2), another (300), half a frame */
    const unsigned char b[] = {0x01, 0x02, 0xAA, 0xFF, 0xFE, 0x00, 0xAA, 0x01, 0x2C, 0x00,
                               0xAA, 0x00};
    put(w, b, sizeof b);
    assert_int_equal(d->read(u, 0, &v), 0);
    assert_true(v == 300);
    assert_int_equal(d->read(u, 0, &v), -EAGAIN);
    const unsigned char c[] = {0x07, 0x00};
    put(w, c, sizeof c);
    assert_int_equal(d->read(u, 0, &v), 0);
    assert_true(v == 7);
    close(w);
    d->close(u);
    /* a frame longer than its value needs, and a type it does not know */
    lume_param bad[4] = {{0}, {"framing", "length", 0}, {"frame_len", NULL, 2},
                         {"type", "u32le", 0}};
    lume_params p = {bad, 4};
    bad[0] = (lume_param){"path", fifo, 0};
    void *state = NULL;
    char *err = NULL;
    assert_true(d->open(NULL, &p, &state, &err) < 0);
    assert_non_null(strstr(err, "frame_len >= at + 4"));
    free(err);
}


static void test_failsafe_at_start_and_ownership(void **st)
{
    (void)st;
    lume_outsvc *s = lume_outsvc_new();
    lume_output_opts o = {.failsafe = 0, .min = 0, .max = 100, .timeout_ns = 500 * MS};
    char path[300];
    add_file(s, "pump", &o, path, sizeof path);
    assert_int_equal(lume_outsvc_flush(s, 2000 * MS), 0);
    assert_true(read_back(path) == 0); /* rule 1 */
    int i = lume_outsvc_find(s, "pump");
    assert_int_equal(i, 0);
    assert_int_equal(lume_outsvc_find(s, "fan"), -ENOENT);
    int a, b, a2;
    char *err = NULL;
    assert_int_equal(lume_outsvc_claim(s, i, &a, "rules", &err), 0);
    assert_int_equal(lume_outsvc_claim(s, i, &b, "other", &err), -EBUSY);
    assert_non_null(strstr(err, "rules"));
    free(err);
    err = NULL;
    assert_int_equal(lume_outsvc_set(s, i, &b, 5, &err), -EPERM);
    free(err);
    err = NULL;
    assert_int_equal(lume_outsvc_set(s, i, &a, 7, &err), 0);
    assert_int_equal(lume_outsvc_set(s, i, &a, 101, &err), -ERANGE);
    free(err);
    err = NULL;
    assert_int_equal(lume_outsvc_flush(s, 2000 * MS), 0);
    assert_true(read_back(path) == 7);
    assert_true(lume_outsvc_get(s, i) == 7);
    /* a new version of the same script takes it over; the old one's
     * release then changes nothing */
    assert_int_equal(lume_outsvc_claim(s, i, &a2, "rules", &err), 0);
    assert_int_equal(lume_outsvc_release(s, &a, "closed"), 0);
    assert_int_equal(lume_outsvc_flush(s, 2000 * MS), 0);
    assert_true(read_back(path) == 7);
    /* the owner's release: fail-safe, and the output is free again */
    assert_int_equal(lume_outsvc_release(s, &a2, "rolled back"), 1);
    assert_int_equal(lume_outsvc_flush(s, 2000 * MS), 0);
    assert_true(read_back(path) == 0);
    assert_int_equal(lume_outsvc_claim(s, i, &b, "other", &err), 0);
    lume_output_stats stt;
    lume_outsvc_stats(s, 0, &stt);
    assert_int_equal(stt.sets, 1);
    assert_int_equal(stt.refused, 3);
    assert_int_equal(stt.failsafes, 1);
    assert_string_equal(stt.owner, "other");
    lume_outsvc_free(s);
}

static void test_rate_limit(void **st)
{
    (void)st;
    lume_outsvc *s = lume_outsvc_new();
    lume_output_opts o = {.failsafe = 0, .max_rate_hz = 2, .min = -1e9, .max = 1e9,
                          .timeout_ns = 500 * MS};
    char path[300];
    add_file(s, "valve", &o, path, sizeof path);
    int a;
    char *err = NULL;
    assert_int_equal(lume_outsvc_claim(s, 0, &a, "rules", &err), 0);
    assert_int_equal(lume_outsvc_set(s, 0, &a, 1, &err), 0);
    assert_int_equal(lume_outsvc_set(s, 0, &a, 2, &err), -EAGAIN);
    assert_non_null(strstr(err, "rate limited"));
    free(err);
    err = NULL;
    /* the fail-safe is never rate limited */
    assert_int_equal(lume_outsvc_release(s, &a, "stopped"), 1);
    assert_int_equal(lume_outsvc_flush(s, 2000 * MS), 0);
    assert_true(read_back(path) == 0);
    usleep(510 * 1000);
    assert_int_equal(lume_outsvc_claim(s, 0, &a, "rules", &err), 0);
    assert_int_equal(lume_outsvc_set(s, 0, &a, 3, &err), 0);
    usleep(510 * 1000);
    assert_int_equal(lume_outsvc_set(s, 0, &a, 4, &err), 0);
    lume_output_stats stt;
    lume_outsvc_stats(s, 0, &stt);
    assert_int_equal(stt.rate_limited, 1);
    assert_int_equal(stt.sets, 3);
    lume_outsvc_free(s);
    assert_true(read_back(path) == 0); /* rule 6: free writes the fail-safe */
}

/* A driver whose writes take 300 ms, recording what it was given. */
static double slow_seen[64];
static int slow_n;
static int slow_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b; (void)p; (void)err;
    *state = NULL;
    return 0;
}
static int slow_write(void *state, double v, char **err)
{
    (void)state; (void)err;
    usleep(300 * 1000);
    if (slow_n < 64)
        slow_seen[slow_n++] = v;
    return 0;
}
static void slow_close(void *state) { (void)state; }
static const lume_output_driver slow = {"slow", "test", slow_open, slow_write, slow_close};

static void test_writes_never_block_and_coalesce(void **st)
{
    (void)st;
    slow_n = 0;
    lume_outsvc *s = lume_outsvc_new();
    lume_output_opts o = {.failsafe = 0, .min = -1e9, .max = 1e9, .timeout_ns = 100 * MS};
    char *err = NULL;
    assert_int_equal(lume_outsvc_add(s, "slow", &slow, NULL, &o, &err), 0);
    int a;
    assert_int_equal(lume_outsvc_claim(s, 0, &a, "rules", &err), 0);
    int64_t t0 = lume_mono_ns();
    for (int v = 1; v <= 5; v++)
        assert_int_equal(lume_outsvc_set(s, 0, &a, v, &err), 0);
    assert_true(lume_mono_ns() - t0 < 100 * MS); /* the caller never waited on a write */
    assert_int_equal(lume_outsvc_flush(s, 3000 * MS), 0);
    /* the start's fail-safe, then (behind it) only the latest value */
    assert_true(slow_seen[slow_n - 1] == 5);
    assert_true(slow_n <= 3);
    lume_output_stats stt;
    lume_outsvc_stats(s, 0, &stt);
    assert_true(stt.coalesced >= 3);
    assert_true(stt.timeouts >= 1); /* 300 ms > the 100 ms timeout */
    lume_outsvc_free(s);
    assert_true(slow_seen[slow_n - 1] == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modbus_decode),
        cmocka_unit_test(test_modbus_encode_roundtrip),
        cmocka_unit_test(test_modbus_bad_params),
        cmocka_unit_test(test_uart_field),
        cmocka_unit_test_setup_teardown(test_uart_line_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uart_length_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failsafe_at_start_and_ownership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test(test_writes_never_block_and_coalesce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
