/* tests/unit/test_oem.c — an OEM's own drivers and modules through lume.h
 * (lume_config_add_driver, lume_config_add_module): what registration
 * refuses, params checked against the declaration when the board loads,
 * a script using both, and drivers that fail, return garbage or block
 * without taking the runtime (or its other sensors) down. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lume.h"
#include "testutil.h"

static char dir[512];
static char root[512];

static int setup(void **state)
{
    (void)state;
    if (!getcwd(root, sizeof root))
        return -1;
    return tu_tmpdir(dir, sizeof dir, "oem") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(dir);
    return 0;
}

/* ---- the OEM's driver: a constant, or trouble, per its `mode` param ----- */

typedef struct {
    atomic_int opened, closed, reads;
    atomic_bool release;        /* lets a blocked read return */
} oem_ctx;

typedef struct {
    int    mode;                /* 0 value, 1 error, 2 NaN, 3 inf, 4 block */
    double value;
} oem_chan;

static int drv_open(void *ctx, const lume_driver_value *v, void **chan, char **err)
{
    oem_ctx *c = ctx;
    static const char *const modes[] = {"value", "error", "nan", "inf", "block"};
    int mode = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(v[1].str, modes[i]))
            mode = i;
    if (mode < 0) {
        *err = strdup("mode must be value, error, nan, inf or block");
        return -EINVAL;
    }
    oem_chan *ch = malloc(sizeof *ch);
    if (!ch)
        return -ENOMEM;
    ch->mode = mode;
    ch->value = v[0].num;
    *chan = ch;
    atomic_fetch_add(&c->opened, 1);
    return 0;
}

static int drv_read(void *ctx, void *chan, double *out)
{
    oem_ctx *c = ctx;
    oem_chan *ch = chan;
    atomic_fetch_add(&c->reads, 1);
    switch (ch->mode) {
    case 1: return -EIO;
    case 2: *out = NAN; return 0;
    case 3: *out = INFINITY; return 0;
    case 4:
        while (!atomic_load(&c->release))
            tu_sleep_ms(5);
        *out = ch->value;
        return 0;
    default: *out = ch->value; return 0;
    }
}

static void drv_close(void *ctx, void *chan)
{
    atomic_fetch_add(&((oem_ctx *)ctx)->closed, 1);
    free(chan);
}

static const lume_driver_param params[] = {
    {.name = "value", .type = LUME_PARAM_NUMBER, .dflt = 1, .min = -100, .max = 100},
    {.name = "mode", .type = LUME_PARAM_STRING, .dflt_str = "value"},
    {.name = "bus", .type = LUME_PARAM_STRING, .required = true},
};
static const lume_driver_ops ops = {
    .doc = "test: a constant, or trouble", .params = params, .n_params = 3,
    .open = drv_open, .read = drv_read, .close = drv_close, .read_timeout_ms = 20,
};

/* ---- the OEM's module ------------------------------------------------- */

static int mod_twice(lua_State *L)
{
    lua_pushnumber(L, 2 * luaL_checknumber(L, 1));
    return 1;
}

static int mod_open(lua_State *L)
{
    static const luaL_Reg fns[] = {{"twice", mod_twice}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushstring(L, luaL_checkstring(L, 1)); /* require passes the name */
    lua_setfield(L, -2, "name");
    return 1;
}

/* ---- registration ----------------------------------------------------- */

static void expect(int got, int want, char **errp, const char *needle)
{
    char *err = errp ? *errp : NULL;
    if (errp)
        *errp = NULL;
    assert_int_equal(got, want);
    if (want == 0) {
        assert_null(err);
        return;
    }
    assert_non_null(err);
    if (!strstr(err, needle))
        fail_msg("'%s' not in '%s'", needle, err);
    lume_free(err);
}

static void test_add_driver_refuses(void **state)
{
    (void)state;
    lume_config *cfg = lume_config_new();
    oem_ctx ctx = {0};
    char *err = NULL;
    expect(lume_config_add_driver(NULL, "x", &ops, &ctx, &err), -EINVAL, &err, "cfg is NULL");
    expect(lume_config_add_driver(cfg, NULL, &ops, &ctx, &err), -EINVAL, &err, "name is NULL");
    expect(lume_config_add_driver(cfg, "x", NULL, &ctx, &err), -EINVAL, &err, "ops is NULL");
    lume_driver_ops o = ops;
    o.read = NULL;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "ops->read is NULL");
    o = ops;
    o.open = NULL;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "ops->open is NULL");
    expect(lume_config_add_driver(cfg, "", &ops, &ctx, &err), -EINVAL, &err, "driver name ''");
    expect(lume_config_add_driver(cfg, "acme temp", &ops, &ctx, &err), -EINVAL, &err,
           "'acme temp'");
    char longname[80];
    memset(longname, 'a', 70);
    longname[70] = 0;
    expect(lume_config_add_driver(cfg, longname, &ops, &ctx, &err), -EINVAL, &err, "1 to 64");
    expect(lume_config_add_driver(cfg, "sim.temperature", &ops, &ctx, &err), -EEXIST, &err,
           "built into lume");
    /* declarations */
    lume_driver_param bad[2] = {params[0], params[0]};
    o = ops;
    o.params = bad;
    o.n_params = 2;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "declared twice");
    bad[1].name = "2nd";
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "identifier");
    bad[1] = params[0];
    bad[1].name = "other";
    bad[1].dflt = 1000;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "min <= dflt <= max");
    bad[1].dflt = 0;
    bad[1].type = 7;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "type 7");
    o.params = NULL;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "params NULL");
    o = ops;
    o.n_params = 9;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "at most 8");
    o = ops;
    o.read_timeout_ms = -1;
    expect(lume_config_add_driver(cfg, "x", &o, &ctx, &err), -EINVAL, &err, "read_timeout_ms");
    /* nothing of those was added: the name is free, once */
    expect(lume_config_add_driver(cfg, "x", &ops, &ctx, &err), 0, &err, NULL);
    expect(lume_config_add_driver(cfg, "x", &ops, &ctx, &err), -EEXIST, &err, "already added");
    expect(lume_config_add_driver(cfg, "acme.temp-2", &ops, &ctx, NULL), 0, NULL, NULL);
    assert_int_equal(lume_config_add_driver(cfg, "x", &ops, &ctx, NULL), -EEXIST); /* err NULL */
    lume_config_free(cfg);
}

static void test_add_module_refuses(void **state)
{
    (void)state;
    lume_config *cfg = lume_config_new();
    char *err = NULL;
    expect(lume_config_add_module(NULL, "m", mod_open, &err), -EINVAL, &err, "cfg is NULL");
    expect(lume_config_add_module(cfg, NULL, mod_open, &err), -EINVAL, &err, "name is NULL");
    expect(lume_config_add_module(cfg, "m", NULL, &err), -EINVAL, &err, "open is NULL");
    static const char *const bad[] = {"", ".m", "m.", "a..b", "a-b", "a/b", "lume.rules",
                                      "lume"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect(lume_config_add_module(cfg, bad[i], mod_open, &err), -EINVAL, &err,
               "module name");
    expect(lume_config_add_module(cfg, "acme.util", mod_open, &err), 0, &err, NULL);
    expect(lume_config_add_module(cfg, "acme.util", mod_open, &err), -EEXIST, &err,
           "already added");
    lume_config_free(cfg);
}

/* ---- in a runtime ----------------------------------------------------- */

typedef struct {
    char            text[131072];
    size_t          len;
    pthread_mutex_t mu;
} capture;

static void capture_sink(void *ud, int level, const char *component, const char *msg)
{
    capture *c = ud;
    pthread_mutex_lock(&c->mu);
    int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%d %s: %s\n", level,
                     component, msg);
    if (n > 0 && c->len + (size_t)n < sizeof c->text)
        c->len += (size_t)n;
    pthread_mutex_unlock(&c->mu);
}

static capture cap = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A device under dir/name with the board `board` (its sensors' text) and
 * one script, the OEM driver and module added. */
static lume_config *device(const char *name, const char *sensors, const char *script,
                           oem_ctx *ctx)
{
    char d[700], sub[760], boards[760], stdlib[600];
    snprintf(d, sizeof d, "%s/%s", dir, name);
    mkdir(d, 0755);
    snprintf(boards, sizeof boards, "%s/boards", d);
    mkdir(boards, 0755);
    char board[4096];
    snprintf(board, sizeof board, "return { name = 'oem', sensors = { %s } }\n", sensors);
    assert_int_equal(tu_write_text(tu_path(boards, "oem.lua"), board), 0);
    snprintf(sub, sizeof sub, "%s/scripts", d);
    mkdir(sub, 0755);
    assert_int_equal(tu_write_text(tu_path(sub, "use.lua"), script), 0);
    snprintf(stdlib, sizeof stdlib, "%s/stdlib", root);
    lume_config *cfg = lume_config_new();
    char *err = NULL, store[760];
    snprintf(store, sizeof store, "%s/var", d);
    struct { const char *k, *v; } s[] = {
        {"device_id", name}, {"board", "oem"}, {"boards_dir", boards}, {"stdlib_dir", stdlib},
        {"scripts_dir", sub}, {"store", store}};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        if (lume_config_set_string(cfg, s[i].k, s[i].v, &err) < 0)
            fail_msg("%s: %s", s[i].k, err);
    assert_int_equal(lume_config_set_int(cfg, "status_interval_ms", 0, NULL), 0);
    assert_int_equal(lume_config_set_bool(cfg, "watch_scripts", false, NULL), 0);
    assert_int_equal(lume_config_add_driver(cfg, "acme.probe", &ops, ctx, &err), 0);
    assert_int_equal(lume_config_add_module(cfg, "acme.util", mod_open, &err), 0);
    memset(cap.text, 0, sizeof cap.text);
    cap.len = 0;
    lume_config_set_log(cfg, capture_sink, &cap);
    return cfg;
}

static void test_board_params_checked(void **state)
{
    (void)state;
    static const struct { const char *params, *needle; } cases[] = {
        {"bus = 'i2c-1', valu = 3", "unknown param 'valu' (known: value, mode, bus)"},
        {"bus = 'i2c-1', value = 300", "param 'value' = 300 is out of range [-100, 100]"},
        {"bus = 'i2c-1', mode = 3", "param 'mode' must be a string"},
        {"value = 3", "param 'bus' is required"},
        {"bus = 'i2c-1', mode = 'melt'", "mode must be value, error, nan, inf or block"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        oem_ctx ctx = {0};
        char sensors[256];
        snprintf(sensors, sizeof sensors,
                 "{ name = 'probe', driver = 'acme.probe', rate = 10, params = { %s } }",
                 cases[i].params);
        char name[32];
        snprintf(name, sizeof name, "params-%zu", i);
        lume_config *cfg = device(name, sensors, "", &ctx);
        char *err = NULL;
        lume_runtime *rt = lume_runtime_new(cfg, &err);
        lume_config_free(cfg);
        assert_null(rt);
        assert_int_equal(errno, EINVAL);
        assert_non_null(err);
        if (!strstr(err, cases[i].needle) || !strstr(err, "sensor 'probe'") ||
            !strstr(err, "oem.lua"))
            fail_msg("case %zu: '%s'", i, err);
        lume_free(err);
        assert_int_equal(ctx.opened, 0);
    }
    /* an unknown driver's message lists the OEM's among the known ones */
    oem_ctx ctx = {0};
    lume_config *cfg = device("unknown", "{ name = 'p', driver = 'acme.prob' }", "", &ctx);
    char *err = NULL;
    assert_null(lume_runtime_new(cfg, &err));
    lume_config_free(cfg);
    assert_non_null(strstr(err, "unknown driver 'acme.prob'"));
    assert_non_null(strstr(err, "acme.probe"));
    lume_free(err);
}

static void test_driver_and_module_in_a_script(void **state)
{
    (void)state;
    oem_ctx ctx = {0};
    lume_config *cfg = device(
        "good", "{ name = 'probe', driver = 'acme.probe', rate = 50, "
                "params = { bus = 'i2c-1', value = 21 } }",
        "local util = require 'acme.util'\n"
        "assert(require 'acme.util' == util)\n"
        "local n = 0\n"
        "lume.on_sample('probe', function(v)\n"
        "  n = n + 1\n"
        "  if n == 3 then lume.log.info('%s: %g', util.name, util.twice(v)) end\n"
        "end)\n", &ctx);
    char *err = NULL;
    lume_runtime *rt = lume_runtime_new(cfg, &err);
    lume_config_free(cfg);
    if (!rt)
        fail_msg("%s", err);
    assert_int_equal(ctx.opened, 1);
    assert_int_equal(lume_runtime_run_for(rt, 300), 0);
    lume_runtime_free(rt);
    assert_int_equal(ctx.closed, 1);
    if (!strstr(cap.text, "acme.util: 42"))
        fail_msg("no 'acme.util: 42' in the log:\n%s", cap.text);
}

/* A module's open that raises gets the script a load error, not a crash. */
static void test_module_that_raises(void **state)
{
    (void)state;
    oem_ctx ctx = {0};
    lume_config *cfg = device("raise", "{ name = 'probe', driver = 'acme.probe', "
                                       "params = { bus = 'b' } }",
                              "local u = require 'acme.util'\nu.twice('not a number')\n", &ctx);
    char *err = NULL;
    lume_runtime *rt = lume_runtime_new(cfg, &err);
    lume_config_free(cfg);
    if (!rt)
        fail_msg("%s", err);
    assert_int_equal(lume_runtime_run_for(rt, 50), 0);
    char *json = lume_runtime_stats_json(rt);
    assert_non_null(json);
    assert_non_null(strstr(json, "number expected"));
    lume_free(json);
    lume_runtime_free(rt);
}

static long long stat_of(const char *json, const char *sensor, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":{", sensor);
    const char *p = strstr(json, pat);
    if (!p)
        return -1;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(p, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void test_bad_drivers(void **state)
{
    (void)state;
    oem_ctx ctx = {0};
    lume_config *cfg = device(
        "bad",
        "{ name = 'fails', driver = 'acme.probe', rate = 20, params = { bus = 'b', mode = 'error' } },"
        "{ name = 'nan', driver = 'acme.probe', rate = 20, params = { bus = 'b', mode = 'nan' } },"
        "{ name = 'inf', driver = 'acme.probe', rate = 20, params = { bus = 'b', mode = 'inf' } },"
        "{ name = 'hangs', driver = 'acme.probe', rate = 20, params = { bus = 'b', mode = 'block' } },"
        "{ name = 'fine', driver = 'acme.probe', rate = 100, params = { bus = 'b', value = 5 } }",
        "", &ctx);
    char *err = NULL;
    lume_runtime *rt = lume_runtime_new(cfg, &err);
    lume_config_free(cfg);
    if (!rt)
        fail_msg("%s", err);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(lume_runtime_run_for(rt, 1000), 0);
    char *json = lume_runtime_stats_json(rt);
    assert_non_null(json);
    /* each bad one counted in read_errors; the fine one read on time and clean */
    assert_true(stat_of(json, "fails", "read_errors") >= 10);
    assert_true(stat_of(json, "nan", "read_errors") >= 10);
    assert_true(stat_of(json, "inf", "read_errors") >= 10);
    assert_true(stat_of(json, "hangs", "read_errors") >= 10);
    assert_int_equal(stat_of(json, "fine", "read_errors"), 0);
    /* and `lume stats` says why */
    assert_non_null(strstr(json, "\"hangs\":{"));
    assert_non_null(strstr(strstr(json, "\"hangs\":{"), "\"last_error\":\"Connection timed out\""));
    assert_non_null(strstr(strstr(json, "\"nan\":{"), "\"last_error\":\"Numerical result out of range\""));
    /* a stalled sampler would have read it a handful of times: the hung
     * read costs it one timeout (20 ms), the others nothing */
    long long fine = stat_of(json, "fine", "samples");
    if (fine < 50)
        fail_msg("the fine sensor read %lld times in 1 s at 100 Hz:\n%s", fine, json);
    lume_free(json);
    /* the log names each sensor and why */
    assert_non_null(strstr(cap.text, "sensor 'fails' read failed: Input/output error"));
    assert_non_null(strstr(cap.text, "sensor 'nan' read failed: Numerical result out of range"));
    assert_non_null(strstr(cap.text, "sensor 'inf' read failed: Numerical result out of range"));
    assert_non_null(strstr(cap.text, "sensor 'hangs' read failed: Connection timed out"));
    /* free does not wait for the stuck read; its close comes once it returns */
    lume_runtime_free(rt);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 5);
    assert_int_equal(ctx.closed, 4);
    atomic_store(&ctx.release, true);
    for (int i = 0; i < 200 && ctx.closed < 5; i++)
        tu_sleep_ms(10);
    assert_int_equal(ctx.closed, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_driver_refuses),
        cmocka_unit_test(test_add_module_refuses),
        cmocka_unit_test(test_board_params_checked),
        cmocka_unit_test(test_driver_and_module_in_a_script),
        cmocka_unit_test(test_module_that_raises),
        cmocka_unit_test(test_bad_drivers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
