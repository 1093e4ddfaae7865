/* tests/unit/test_drivers.c — built-in sensor drivers.
 *
 * The simulated drivers are driven with explicit now_ns values, so hours of
 * simulated time take milliseconds and every run is reproducible. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers.h"
#include "testutil.h"

#define SEC 1000000000LL

/* ---- helpers ----------------------------------------------------------- */

typedef struct chan {
    const lume_driver *d;
    void              *state;
} chan;

static int open_ch(chan *c, lume_board_ctx *b, const char *drv, const lume_param *pv,
                   size_t n, char **err)
{
    c->d = lume_driver_find(drv);
    assert_non_null(c->d);
    c->state = NULL;
    lume_params p = {pv, n};
    *err = NULL;
    return c->d->open(b, &p, &c->state, err);
}

static chan must_open(lume_board_ctx *b, const char *drv, const lume_param *pv, size_t n)
{
    chan c;
    char *err;
    int rc = open_ch(&c, b, drv, pv, n, &err);
    if (rc != 0)
        fail_msg("%s: open failed %d: %s", drv, rc, err ? err : "(no message)");
    assert_null(err);
    return c;
}

static double must_read(chan *c, int64_t now)
{
    double v = NAN;
    int rc = c->d->read(c->state, now, &v);
    if (rc != 0)
        fail_msg("%s: read failed %d", c->d->name, rc);
    assert_true(isfinite(v));
    return v;
}

static void close_ch(chan *c)
{
    c->d->close(c->state);
    c->state = NULL;
}

/* Open must fail with want, leave *state alone and say something that
 * contains needle. */
static void expect_open_error(lume_board_ctx *b, const char *drv, const lume_param *pv,
                              size_t n, int want, const char *needle)
{
    chan c;
    char *err;
    int rc = open_ch(&c, b, drv, pv, n, &err);
    if (rc != want)
        fail_msg("%s: open returned %d, want %d (%s)", drv, rc, want, err ? err : "");
    assert_null(c.state);
    assert_non_null(err);
    if (!strstr(err, needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", drv, err, needle);
    free(err);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the table --------------------------------------------------------- */

static void test_table(void **st)
{
    (void)st;
    static const char *const names[] = {
        "sim.temperature", "sim.humidity", "sim.vibration", "sim.battery", "sim.power",
        "host.loadavg", "host.mem", "host.cpu", "file", "gpio", "i2c", "hwmon", "iio",
        "modbus", "uart",
    };
    size_t n = 0;
    while (lume_driver_at(n))
        n++;
    assert_int_equal(n, N(names));
    for (size_t i = 0; i < N(names); i++) {
        const lume_driver *d = lume_driver_find(names[i]);
        assert_non_null(d);
        assert_string_equal(d->name, names[i]);
        assert_true(d->doc && strlen(d->doc) > 20);
        assert_true(d->open && d->read && d->close);
    }
    assert_null(lume_driver_find("sim.nope"));
    assert_null(lume_driver_find(NULL));
    assert_null(lume_driver_at(n));
}

static void test_params_helpers(void **st)
{
    (void)st;
    lume_param pv[] = {{"a", NULL, 2.5}, {"s", "text", 0}, {"n", "17", 0}};
    lume_params p = {pv, N(pv)};
    assert_true(lume_params_num(&p, "a", 9) == 2.5);
    assert_true(lume_params_num(&p, "n", 9) == 17);     /* numeric string */
    assert_true(lume_params_num(&p, "s", 9) == 9);      /* not a number */
    assert_true(lume_params_num(&p, "zz", 9) == 9);
    assert_true(lume_params_num(NULL, "a", 9) == 9);
    assert_string_equal(lume_params_str(&p, "s", "d"), "text");
    assert_string_equal(lume_params_str(&p, "a", "d"), "d");
    assert_string_equal(lume_params_str(&p, "zz", "d"), "d");
}

static void test_param_validation(void **st)
{
    (void)st;
    lume_board_ctx *b = lume_board_ctx_new(1);
    lume_param typo[] = {{"bsae", NULL, 20}};
    expect_open_error(b, "sim.temperature", typo, 1, -EINVAL, "'bsae'");
    expect_open_error(b, "sim.temperature", typo, 1, -EINVAL, "known: base");
    lume_param word[] = {{"base", "warm", 0}};
    expect_open_error(b, "sim.temperature", word, 1, -EINVAL, "must be a number");
    lume_param neg[] = {{"amplitude", NULL, -1}};
    expect_open_error(b, "sim.temperature", neg, 1, -EINVAL, "out of range");
    lume_param burst[] = {{"burst_every_s", NULL, 1}, {"burst_s", NULL, 2}};
    expect_open_error(b, "sim.vibration", burst, 2, -EINVAL, "burst_every_s");
    lume_param bat[] = {{"full", NULL, 3}, {"empty", NULL, 3.5}};
    expect_open_error(b, "sim.battery", bat, 2, -EINVAL, "empty");
    lume_param start[] = {{"start", NULL, 5}};
    expect_open_error(b, "sim.battery", start, 1, -EINVAL, "start");
    lume_param extra[] = {{"x", NULL, 1}};
    expect_open_error(b, "host.loadavg", extra, 1, -EINVAL, "'x'");
    expect_open_error(NULL, "sim.power", NULL, 0, -EINVAL, "board");

    /* a number given as a string is accepted */
    lume_param numstr[] = {{"base", "30", 0}, {"amplitude", NULL, 0}, {"walk", NULL, 0},
                           {"noise", NULL, 0}};
    chan c = must_open(b, "sim.temperature", numstr, N(numstr));
    assert_true(fabs(must_read(&c, 0) - 30) < 1e-9);
    assert_true(fabs(must_read(&c, 3600 * SEC) - 30) < 1e-9);
    close_ch(&c);
    lume_board_ctx_free(b);
}

/* ---- the simulated world ----------------------------------------------- */

static void test_sim_plausible_day(void **st)
{
    (void)st;
    lume_board_ctx *b = lume_board_ctx_new(42);
    chan t = must_open(b, "sim.temperature", NULL, 0);
    chan h = must_open(b, "sim.humidity", NULL, 0);
    chan v = must_open(b, "sim.vibration", NULL, 0);
    chan bat = must_open(b, "sim.battery", NULL, 0);
    chan pw = must_open(b, "sim.power", NULL, 0);

    /* one simulated day, every 60 s, starting at an arbitrary monotonic time */
    int64_t t0 = 123456789 * SEC;
    enum { STEPS = 1440 };
    double temps[STEPS], hums[STEPS];
    double night = 0, afternoon = 0;
    int nn = 0, na = 0;
    for (int i = 0; i < STEPS; i++) {
        int64_t now = t0 + i * 60 * SEC;
        temps[i] = must_read(&t, now);
        hums[i] = must_read(&h, now);
        double vib = must_read(&v, now);
        double volts = must_read(&bat, now);
        double power = must_read(&pw, now);
        assert_true(temps[i] > 10 && temps[i] < 34);
        assert_true(hums[i] >= 0 && hums[i] <= 100);
        assert_true(vib >= 0 && vib < 0.02 * 25 * 2);
        assert_true(volts >= 3.3 && volts <= 4.2);
        assert_true(power == 0 || power == 1);
        double hour = i / 60.0;
        if (hour < 6) {
            night += temps[i];
            nn++;
        } else if (hour >= 12 && hour < 18) {
            afternoon += temps[i];
            na++;
        }
    }
    /* the daily cycle (amplitude 4): afternoons ~7 C warmer than nights */
    double diff = afternoon / na - night / nn;
    if (diff < 4 || diff > 11)
        fail_msg("afternoon - night = %.2f C", diff);

    /* humidity moves against temperature */
    double mt = 0, mh = 0;
    for (int i = 0; i < STEPS; i++) {
        mt += temps[i] / STEPS;
        mh += hums[i] / STEPS;
    }
    double cov = 0, vt = 0, vh = 0;
    for (int i = 0; i < STEPS; i++) {
        cov += (temps[i] - mt) * (hums[i] - mh);
        vt += (temps[i] - mt) * (temps[i] - mt);
        vh += (hums[i] - mh) * (hums[i] - mh);
    }
    double r = cov / sqrt(vt * vh);
    if (r > -0.5)
        fail_msg("temperature/humidity correlation %.2f, want strongly negative", r);
    assert_true(mh > 30 && mh < 60);

    close_ch(&t);
    close_ch(&h);
    close_ch(&v);
    close_ch(&bat);
    close_ch(&pw);
    lume_board_ctx_free(b);
}

static void run_board(uint64_t seed, double *out, int n)
{
    lume_board_ctx *b = lume_board_ctx_new(seed);
    chan t = must_open(b, "sim.temperature", NULL, 0);
    chan v = must_open(b, "sim.vibration", NULL, 0);
    for (int i = 0; i < n; i += 2) {
        out[i] = must_read(&t, i * SEC / 10);
        out[i + 1] = must_read(&v, i * SEC / 10);
    }
    close_ch(&t);
    close_ch(&v);
    lume_board_ctx_free(b);
}

static void test_seed_reproducible(void **st)
{
    (void)st;
    double a[200], b[200], c[200];
    run_board(7, a, 200);
    run_board(7, b, 200);
    run_board(8, c, 200);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

/* Step size 1 s, never more than a power state's minimum stay (1 s): when
 * two successive reads of power agree, there was no switch in between, so
 * the battery must have moved the way that state drives it. */
static void test_battery_follows_power(void **st)
{
    (void)st;
    lume_board_ctx *b = lume_board_ctx_new(2024);
    lume_param bp[] = {{"drain_per_h", NULL, 1.2}, {"charge_per_h", NULL, 0.8},
                       {"start", NULL, 3.8}};
    chan bat = must_open(b, "sim.battery", bp, N(bp));
    chan pw = must_open(b, "sim.power", NULL, 0);
    int64_t t0 = 5 * SEC;
    double p_prev = must_read(&pw, t0), v_prev = must_read(&bat, t0);
    int charging = 0, draining = 0, switches = 0;
    double lowest = v_prev, highest = v_prev;
    for (int i = 1; i <= 6 * 3600; i++) {
        int64_t now = t0 + i * SEC;
        double p = must_read(&pw, now), v = must_read(&bat, now);
        assert_true(v >= 3.3 && v <= 4.2);
        if (p != p_prev) {
            switches++;
        } else if (p == 1) {
            if (!(v > v_prev || v == 4.2))
                fail_msg("on mains at t=%d s but battery %.6f -> %.6f", i, v_prev, v);
            charging++;
        } else {
            if (!(v < v_prev || v == 3.3))
                fail_msg("on battery at t=%d s but battery %.6f -> %.6f", i, v_prev, v);
            draining++;
        }
        if (v < lowest)
            lowest = v;
        if (v > highest)
            highest = v;
        p_prev = p;
        v_prev = v;
    }
    /* 6 h with means of 120 s / 60 s: ~240 switches, both states common */
    assert_true(switches > 100 && switches < 500);
    assert_true(charging > 6 * 3600 / 2);
    assert_true(draining > 6 * 3600 / 6);
    assert_true(highest - lowest > 0.05);
    close_ch(&bat);
    close_ch(&pw);
    lume_board_ctx_free(b);
}

/* The world advances by time: read at 10 Hz or at 0.2 Hz, it is the same
 * world at the moments both look at it. */
static void test_world_independent_of_rate(void **st)
{
    (void)st;
    lume_board_ctx *fast = lume_board_ctx_new(99), *slow = lume_board_ctx_new(99);
    chan fb = must_open(fast, "sim.battery", NULL, 0), fp = must_open(fast, "sim.power", NULL, 0);
    chan sb = must_open(slow, "sim.battery", NULL, 0), sp = must_open(slow, "sim.power", NULL, 0);
    for (int64_t ms = 0; ms <= 3600 * 1000; ms += 100) {
        int64_t now = ms * 1000000;
        double f_v = must_read(&fb, now), f_p = must_read(&fp, now);
        if (ms % 5000 == 0) {
            double s_v = must_read(&sb, now), s_p = must_read(&sp, now);
            assert_true(f_p == s_p);
            if (fabs(f_v - s_v) > 1e-9)
                fail_msg("t=%lld ms: battery %.9f at 10 Hz vs %.9f at 0.2 Hz",
                         (long long)ms, f_v, s_v);
        }
    }
    close_ch(&fb);
    close_ch(&fp);
    close_ch(&sb);
    close_ch(&sp);
    lume_board_ctx_free(fast);
    lume_board_ctx_free(slow);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_vibration_bursts(void **st)
{
    (void)st;
    lume_board_ctx *b = lume_board_ctx_new(5);
    chan v = must_open(b, "sim.vibration", NULL, 0);    /* rms 0.02, gain 25 */
    enum { HZ = 100, SECONDS = 900, N_READ = HZ * SECONDS };
    double *x = malloc(N_READ * sizeof *x);
    assert_non_null(x);
    int bursts = 0, loud = 0;
    int64_t last_loud = -10 * SEC;
    double peak = 0;
    for (int i = 0; i < N_READ; i++) {
        int64_t now = 1000 * SEC + (int64_t)i * (SEC / HZ);
        x[i] = must_read(&v, now);
        assert_true(x[i] >= 0);
        if (x[i] > 0.1) {                   /* 5x the quiet level */
            loud++;
            if (now - last_loud > 1 * SEC)  /* a new episode */
                bursts++;
            last_loud = now;
        }
        if (x[i] > peak)
            peak = x[i];
    }
    qsort(x, N_READ, sizeof *x, cmp_d);
    double median = x[N_READ / 2];
    /* quiet most of the time, at the configured level */
    if (fabs(median - 0.02) > 0.004)
        fail_msg("median %.4f g, want ~0.02", median);
    /* mean one burst per 30 s: ~30 in 900 s */
    if (bursts < 10 || bursts > 60)
        fail_msg("%d bursts in %d s", bursts, SECONDS);
    double frac = (double)loud / N_READ;
    if (frac < 0.01 || frac > 0.15)
        fail_msg("loud %.1f%% of the time", 100 * frac);
    assert_true(peak > 0.02 * 25 * 0.7);
    free(x);
    close_ch(&v);
    lume_board_ctx_free(b);
}

/* ---- host drivers ------------------------------------------------------ */

static void test_host_drivers(void **st)
{
    (void)st;
    int64_t now = 0;
    chan load = must_open(NULL, "host.loadavg", NULL, 0);
    double l = must_read(&load, now);
    assert_true(l >= 0 && l < 10000);
    close_ch(&load);

    chan mem = must_open(NULL, "host.mem", NULL, 0);
    double mib = must_read(&mem, now);
    double total = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
    if (!(mib > 1 && mib <= total))
        fail_msg("MemAvailable %.1f MiB of %.1f MiB", mib, total);
    close_ch(&mem);

    chan cpu = must_open(NULL, "host.cpu", NULL, 0);
    /* keep this CPU busy for 200 ms: the ticks land in /proc/stat */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    volatile uint64_t sink = 0;
    do {
        for (int i = 0; i < 100000; i++)
            sink += (uint64_t)i;
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * SEC + (b.tv_nsec - a.tv_nsec) < 200000000);
    assert_true(sink > 0);
    double busy = must_read(&cpu, now);
    if (!(busy > 0 && busy <= 100))
        fail_msg("cpu busy %.2f%% after spinning 200 ms", busy);
    double again = must_read(&cpu, now);       /* back to back: still valid */
    assert_true(again >= 0 && again <= 100);
    close_ch(&cpu);
}

/* ---- file -------------------------------------------------------------- */

typedef struct fx {
    char dir[256];
    char path[300];
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "test-drivers")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/temp1_input", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    tu_rm_tree(f->dir);
    free(f);
    return 0;
}

static void put(const char *path, const char *text)
{
    /* write-then-rename, the way a well-behaved writer replaces a file */
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void test_file_driver(void **state)
{
    fx *f = *state;
    lume_param pv[] = {{"path", f->path, 0}, {"scale", NULL, 0.001}, {"offset", NULL, -1}};

    /* missing: -ENOENT, and the message names the path */
    expect_open_error(NULL, "file", pv, N(pv), -ENOENT, f->path);

    put(f->path, "45000\n");
    chan c = must_open(NULL, "file", pv, N(pv));
    assert_true(fabs(must_read(&c, 0) - 44.0) < 1e-9);       /* 45000 * 0.001 - 1 */
    put(f->path, "  -2500 \n");                             /* replaced by rename */
    assert_true(fabs(must_read(&c, 0) - -3.5) < 1e-9);
    put(f->path, "1.5e3");
    assert_true(fabs(must_read(&c, 0) - 0.5) < 1e-9);

    double v = 123;
    put(f->path, "hello\n");
    assert_int_equal(c.d->read(c.state, 0, &v), -EBADMSG);
    put(f->path, "12 volts\n");
    assert_int_equal(c.d->read(c.state, 0, &v), -EBADMSG);
    put(f->path, "");
    assert_int_equal(c.d->read(c.state, 0, &v), -ENODATA);
    assert_int_equal(unlink(f->path), 0);                   /* vanished */
    assert_int_equal(c.d->read(c.state, 0, &v), -ENOENT);
    assert_true(v == 123);                                   /* *out untouched */
    put(f->path, "7\n");                                    /* and back */
    assert_true(fabs(must_read(&c, 0) - -0.993) < 1e-9);
    close_ch(&c);

    /* a non-numeric file opens (it may become numeric), but reads fail */
    put(f->path, "not a number");
    c = must_open(NULL, "file", pv, 1);
    assert_int_equal(c.d->read(c.state, 0, &v), -EBADMSG);
    close_ch(&c);

    /* bad params */
    expect_open_error(NULL, "file", NULL, 0, -EINVAL, "path");
    lume_param numpath[] = {{"path", NULL, 3}};
    expect_open_error(NULL, "file", numpath, 1, -EINVAL, "must be a string");
    lume_param dir[] = {{"path", f->dir, 0}};
    expect_open_error(NULL, "file", dir, 1, -EISDIR, f->dir);

    /* procfs: kept open and re-read in place */
    lume_param proc[] = {{"path", "/proc/sys/kernel/pid_max", 0}};
    c = must_open(NULL, "file", proc, 1);
    double p1 = must_read(&c, 0), p2 = must_read(&c, 0);
    assert_true(p1 >= 301 && p1 == p2);
    close_ch(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_params_helpers),
        cmocka_unit_test(test_param_validation),
        cmocka_unit_test(test_sim_plausible_day),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_battery_follows_power),
        cmocka_unit_test(test_world_independent_of_rate),
        cmocka_unit_test(test_vibration_bursts),
        cmocka_unit_test(test_host_drivers),
        cmocka_unit_test_setup_teardown(test_file_driver, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
