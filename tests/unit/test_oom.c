/* tests/unit/test_oom.c — out of memory at every allocation.
 *
 * Each sweep opens something with the N-th allocation failing
 * (tests/unit/fault.h), for N = 1, 2, ... until N is past the last
 * allocation the open makes, and expects every time either a clean error
 * (NULL and a message; for the runtime errno too) or a handle that works
 * and a store that kept what it held; never a crash, and (under ASan,
 * detect_leaks=1) never a leak. Each sweep runs twice: the N-th allocation
 * failing alone (the code must go on correctly after a failure it
 * handled), and every allocation from the N-th on failing (an error path
 * must not need memory; Lua's ltests.c mode).
 *
 * What is swept: lume_outbox_open (a fresh file and one holding messages),
 * lume_twin_open (with a state store holding layers and a reported
 * document), lume_config_load (a file with a list, sections and
 * os.getenv), and lume_runtime_new with a real configuration: the sim board,
 * the default scripts, a store holding a twin layer and a last-known-good
 * bundle; once offline and once with a broker URL and twin groups.
 *
 * A runtime makes some 8,200 allocations (a Lua state per script, SQLite,
 * the twin) and takes milliseconds to open, so `make test` sweeps every 29th N
 * of it offline and every 97th online (closing the inotify descriptor of
 * watch_scripts costs ~15 ms), starting from a random N below the step
 * (seeded: LUME_OOM_SEED, printed, repeats a run), so that runs cover
 * different allocations; and every N of the rest. `make oom` sweeps every
 * N of everything under ASan (LUME_OOM_STEP=1 sets the runtime's step).
 *
 * A runtime that fails because an allocation failed says so: errno ENOMEM
 * (lume.h), never EINVAL, which would blame the configuration (exit code 2
 * of `lume run`). The files live on /dev/shm
 * when it is there (tmpfs: thousands of SQLite files created, no fsync
 * waited for), else in $TMPDIR. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cJSON.h>

#include "config.h"
#include "fault.h"
#include "kv.h"
#include "log.h"
#include "lume.h"
#include "outbox.h"
#include "testutil.h"
#include "twin.h"

static char g_dir[256];

static long env_step(long dflt)
{
    const char *s = getenv("LUME_OOM_STEP");
    long v = s && *s ? strtol(s, NULL, 10) : dflt;
    return v > 0 ? v : dflt;
}

/* The seed of the sampled sweeps' first N: $LUME_OOM_SEED or the clock. */
static unsigned g_seed;

/* ---- the sweep ------------------------------------------------------------ */

typedef struct target {
    const char *what;
    /* Open with *err (NULL on success); the handle or NULL. */
    void *(*open)(void *ctx, char **err);
    /* Use the handle (fired: an allocation failed during its open) and
     * close it. */
    void (*use)(void *ctx, void *h, bool fired);
    /* Before each attempt (remove files, ...); may be NULL. */
    void (*reset)(void *ctx);
    void *ctx;
} target;

/* The attempt under way, for a failure's message (teardown). */
static char g_what[128];
static long g_n;
static bool g_persistent;

/* Sweep N = first, first + step, ... with the given mode; returns the
 * number of allocations a successful open made. first is 1, or
 * $LUME_OOM_FROM (to reproduce one N: with LUME_OOM_STEP past the count). */
static long sweep(const target *t, bool persistent, long step)
{
    long attempts = 0, clean_errors = 0, survived = 0;
    const char *from = getenv("LUME_OOM_FROM");
    long first = from && *from ? strtol(from, NULL, 10) : 1;
    if (step > 1 && !(from && *from)) { /* a sample: start anywhere below the step */
        first = 1 + (long)(rand_r(&g_seed) % (unsigned)step);
        print_message("%s: every %ld-th allocation from the %ld-th (LUME_OOM_SEED)\n",
                      t->what, step, first);
    }
    snprintf(g_what, sizeof g_what, "%s", t->what);
    g_persistent = persistent;
    for (long n = first > 0 ? first : 1;; n += step) {
        g_n = n;
        if (t->reset)
            t->reset(t->ctx);
        char *err = NULL;
        tu_fault_arm(n, persistent);
        void *h = t->open(t->ctx, &err);
        long seen = tu_fault_disarm();
        bool fired = tu_fault_fired();
        attempts++;
        if (!h) {
            if (!fired)
                fail_msg("%s: failed with no allocation failed: %s", t->what, err ? err : "?");
            if (!persistent && !err)
                fail_msg("%s: allocation %ld of %ld failed alone, and the open failed "
                         "without a message", t->what, n, seen);
            free(err);
            clean_errors++;
        } else {
            if (err)
                fail_msg("%s: succeeded but set *err: %s", t->what, err);
            t->use(t->ctx, h, fired);
            survived += fired;
        }
        if (!fired) {
            g_n = 0;
            print_message("%s (%s): %ld allocations; %ld attempts (every %ld): %ld clean "
                          "errors, %ld opens that survived a failed allocation\n",
                          t->what, persistent ? "from the N-th on" : "the N-th alone", seen,
                          attempts, step, clean_errors, survived);
            assert_true(h != NULL);
            return seen;
        }
    }
}

static void sweep_both(const target *t, long step)
{
    sweep(t, false, step);
    sweep(t, true, step);
}

/* ---- the outbox ------------------------------------------------------------- */

typedef struct ob_ctx {
    char     path[300];
    bool     fresh;
    uint64_t depth;     /* messages the file holds */
} ob_ctx;

static void ob_reset(void *ud)
{
    ob_ctx *c = ud;
    if (!c->fresh)
        return;
    char p[320];
    unlink(c->path);
    snprintf(p, sizeof p, "%s-wal", c->path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", c->path);
    unlink(p);
}

static void *ob_open(void *ud, char **err)
{
    ob_ctx *c = ud;
    return lume_outbox_open(c->path, NULL, err);
}

static void ob_use(void *ud, void *h, bool fired)
{
    (void)fired;
    ob_ctx *c = ud;
    lume_outbox *ob = h;
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], c->depth);
    uint64_t id = 0;
    assert_int_equal(lume_outbox_append(ob, LUME_LANE_TELEMETRY, "t/x", "v", 1, 1, 0, &id), 0);
    assert_int_equal(lume_outbox_commit(ob), 0);
    lume_outbox_msg m[8];
    int n = lume_outbox_peek(ob, m, 8);
    assert_int_equal(n, (int)c->depth + 1);
    for (int i = 0; i < n; i++)
        lume_outbox_msg_clear(&m[i]);
    assert_int_equal(lume_outbox_ack(ob, id), 0);
    lume_outbox_close(ob);
}

static void test_outbox_open(void **state)
{
    (void)state;
    ob_ctx c = {.fresh = true};
    snprintf(c.path, sizeof c.path, "%s/fresh.db", g_dir);
    target t = {"lume_outbox_open (new file)", ob_open, ob_use, ob_reset, &c};
    sweep_both(&t, 1);

    /* a file that holds three messages */
    ob_ctx d = {.fresh = false, .depth = 3};
    snprintf(d.path, sizeof d.path, "%s/held.db", g_dir);
    char *err = NULL;
    lume_outbox *ob = lume_outbox_open(d.path, NULL, &err);
    assert_non_null(ob);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lume_outbox_append(ob, LUME_LANE_TELEMETRY, "t/held", "x", 1, 1, 0,
                                            NULL), 0);
    lume_outbox_close(ob);
    target u = {"lume_outbox_open (a file with messages)", ob_open, ob_use, NULL, &d};
    sweep_both(&u, 1);
}

/* ---- the twin ------------------------------------------------------------------ */

static const char *const LAYERS[] = {"fleet", "site-a", "device"};
#define NLAYERS (sizeof LAYERS / sizeof LAYERS[0])

typedef struct twin_ctx {
    lume_kv *kv;
    char    *want;      /* the desired document without faults */
    char    *want_rep;  /* the reported one */
    long     degraded;  /* opens that succeeded with less than was saved */
} twin_ctx;

static void *twin_open(void *ud, char **err)
{
    twin_ctx *c = ud;
    return lume_twin_open(c->kv, LAYERS, NLAYERS, err);
}

static void twin_use(void *ud, void *h, bool fired)
{
    twin_ctx *c = ud;
    lume_twin *t = h;
    assert_true(cJSON_IsObject(lume_twin_desired(t)));
    char *got = cJSON_PrintUnformatted(lume_twin_desired(t));
    char *rep = cJSON_PrintUnformatted(lume_twin_reported(t));
    assert_non_null(got);
    assert_non_null(rep);
    if (!fired) {
        assert_string_equal(got, c->want);
        assert_string_equal(rep, c->want_rep);
    } else if (strcmp(got, c->want) || strcmp(rep, c->want_rep)) {
        c->degraded++;
    }
    /* still works: a layer can be set and reported */
    char *err = NULL;
    static const char site[] = "{\"$version\":9,\"b\":2}";
    assert_true(lume_twin_set_layer(t, "site-a", site, sizeof site - 1, &err) >= 0);
    assert_null(err);
    assert_true(lume_twin_set_layer(t, "site-a", NULL, 0, &err) >= 0);   /* as it was */
    assert_null(err);
    free(got);
    free(rep);
    lume_twin_close(t);
}

static void test_twin_open(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/state.db", g_dir);
    char *err = NULL;
    twin_ctx c = {.kv = lume_kv_open(path, &err)};
    assert_non_null(c.kv);
    static const char fleet[] = "{\"$version\":3,\"a\":{\"x\":1,\"y\":[1,2,3]},\"scripts\":"
                                "{\"r\":{\"version\":\"1\",\"source\":\"local x = 1\"}}}";
    static const char device[] = "{\"$version\":7,\"a\":{\"y\":null,\"z\":\"\\u00e9\"},"
                                 "\"scripts\":{\"r\":{\"version\":\"2\",\"chunks\":[\"a\",\"b\"]}}}";
    static const char reported[] = "{\"lume\":{\"version\":\"0.1.0\"},\"scripts\":{}}";
    assert_int_equal(lume_kv_set(c.kv, "twin", "layer:fleet", fleet, sizeof fleet - 1, 1), 0);
    assert_int_equal(lume_kv_set(c.kv, "twin", "layer:device", device, sizeof device - 1, 1), 0);
    assert_int_equal(lume_kv_set(c.kv, "twin", "reported", reported, sizeof reported - 1, 1),
                     0);
    lume_twin *t = lume_twin_open(c.kv, LAYERS, NLAYERS, &err);
    assert_non_null(t);
    c.want = cJSON_PrintUnformatted(lume_twin_desired(t));
    c.want_rep = cJSON_PrintUnformatted(lume_twin_reported(t));
    lume_twin_close(t);

    target tt = {"lume_twin_open (layers and reported saved)", twin_open, twin_use, NULL, &c};
    sweep(&tt, false, 1);
    sweep(&tt, true, 1);
    /* a saved layer lost for want of memory would remove the bundles it
     * names (twin.c, invariant 4) */
    if (c.degraded)
        fail_msg("lume_twin_open: %ld opens that survived a failed allocation started with "
                 "less than was saved", c.degraded);

    free(c.want);
    free(c.want_rep);
    lume_kv_close(c.kv);
}

/* ---- the config loader ---------------------------------------------------------- */

/* The chunk runs protected; so must the walk of the table it returns (a
 * list joined, keys and values copied): out of memory there is a clean
 * error, not a Lua panic (abort). */
typedef struct cfg_ctx {
    char path[300];
} cfg_ctx;

static void *cfg_open(void *ud, char **err)
{
    cfg_ctx *c = ud;
    lume_config *cfg = lume_config_new();
    if (!cfg) {
        *err = strdup("out of memory");
        return NULL;
    }
    errno = 0;
    if (lume_config_load(cfg, c->path, err) < 0) {
        if (!lume_err_oom(*err))
            fail_msg("lume_config_load failed, not for memory: %s", *err ? *err : "?");
        lume_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void cfg_use(void *ud, void *h, bool fired)
{
    (void)ud, (void)fired;
    lume_config *cfg = h;
    assert_string_equal(cfg->device_id, "oom-config");
    assert_string_equal(cfg->twin.groups, "fleet,site-a,line-3");
    assert_int_equal(cfg->sandbox.cpu_budget_ms, 50);
    lume_config_free(cfg);
}

static void test_config_load(void **state)
{
    (void)state;
    cfg_ctx c;
    snprintf(c.path, sizeof c.path, "%s/lume.conf.lua", g_dir);
    assert_int_equal(tu_write_text(c.path,
                                   "local g = { 'fleet', 'site-' .. 'a' }\n"
                                   "g[#g + 1] = ('line-%d'):format(3)\n"
                                   "return { device_id = 'oom-config', board = 'sim',\n"
                                   "  twin = { groups = g, allow_unsigned = true },\n"
                                   "  sandbox = { cpu_budget_ms = 50 },\n"
                                   "  log_level = os.getenv('LUME_NO_SUCH_VAR') or 'info' }\n"),
                     0);
    target t = {"lume_config_load", cfg_open, cfg_use, NULL, &c};
    sweep_both(&t, 1);
}

/* ---- the runtime ---------------------------------------------------------------- */

typedef struct rt_ctx {
    lume_config cfg;
    char        kv_path[400];
} rt_ctx;

static void *rt_open(void *ud, char **err)
{
    rt_ctx *c = ud;
    errno = 0;
    lume_runtime *rt = lume_runtime_new(&c->cfg, err);
    int why = errno;
    /* out of memory is not the configuration's fault (lume.h: ENOMEM) */
    if (!rt && why != ENOMEM)
        fail_msg("lume_runtime_new failed with errno %d (%s), not ENOMEM: %s", why,
                 strerror(why), *err ? *err : "?");
    return rt;
}

/* What the store held before must still be there, whatever failed. */
static void rt_check_store(rt_ctx *c)
{
    char *err = NULL;
    lume_kv *kv = lume_kv_open(c->kv_path, &err);
    assert_non_null(kv);
    static const char *const keep[][2] = {{"twin", "layer:device"}, {"lkg", "extra"}};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        void *val = NULL;
        size_t len = 0;
        int rc = lume_kv_get(kv, keep[i][0], keep[i][1], &val, &len, NULL);
        if (rc != 0)
            fail_msg("the store lost %s/%s (%s)", keep[i][0], keep[i][1], strerror(-rc));
        free(val);
    }
    lume_kv_close(kv);
}

static void rt_use(void *ud, void *h, bool fired)
{
    (void)fired;
    lume_runtime *rt = h;
    char *json = lume_runtime_stats_json(rt);
    assert_non_null(json);
    free(json);
    char line[1024];
    lume_runtime_status_line(rt, line, sizeof line);
    lume_runtime_free(rt);
    rt_check_store(ud);
}

/* A store that holds what a device that ran before holds: a twin layer
 * naming a bundle, the bundle as last-known-good, a reported document. */
static void seed_store(const char *store)
{
    char path[400];
    snprintf(path, sizeof path, "%s/state.db", store);
    char *err = NULL;
    lume_kv *kv = lume_kv_open(path, &err);
    assert_non_null(kv);
    static const char layer[] = "{\"$version\":4,\"scripts\":{\"extra\":{\"version\":\"1\","
                                "\"source\":\"local n = 0\\nlume.on_sample('temperature', "
                                "function(v) n = n + 1 end)\"}},\"note\":\"hi\"}";
    static const char lkg[] = "{\"version\":\"1\",\"source\":\"local n = 0\\nlume.on_sample("
                              "'temperature', function(v) n = n + 1 end)\"}";
    assert_int_equal(lume_kv_set(kv, "twin", "layer:device", layer, sizeof layer - 1, 1), 0);
    assert_int_equal(lume_kv_set(kv, "lkg", "extra", lkg, sizeof lkg - 1, 1), 0);
    lume_kv_close(kv);
}

static void runtime_sweep(const char *name, bool online, long step)
{
    rt_ctx c;
    char store[300];
    snprintf(store, sizeof store, "%s/%s", g_dir, name);
    assert_int_equal(mkdir(store, 0755), 0);
    assert_int_equal(tu_runtime_config(&c.cfg, NULL, store, "oom-dev"), 0);
    if (online) {
        assert_int_equal(tu_config_set(&c.cfg, "net.url", "mqtt://127.0.0.1:1"), 0);
        assert_int_equal(tu_config_set(&c.cfg, "twin.groups", "fleet,site-a"), 0);
        /* inotify: closing one costs ~15 ms */
        assert_int_equal(tu_config_set(&c.cfg, "watch_scripts", "true"), 0);
    }
    seed_store(store);
    snprintf(c.kv_path, sizeof c.kv_path, "%s/state.db", store);
    char what[64];
    snprintf(what, sizeof what, "lume_runtime_new (%s)", online ? "online" : "offline");
    target t = {what, rt_open, rt_use, NULL, &c};
    sweep_both(&t, step);
    lume_config_free(&c.cfg);
}

static void test_runtime_offline(void **state)
{
    (void)state;
    runtime_sweep("offline", false, env_step(29));
}

static void test_runtime_online(void **state)
{
    (void)state;
    runtime_sweep("online", true, env_step(97));
}

/* After a test: when a sweep did not finish, which attempt failed. */
static int name_attempt(void **state)
{
    (void)state;
    if (g_n)
        print_error("the failing attempt: %s, allocation %ld failing%s "
                    "(LUME_OOM_FROM=%ld LUME_OOM_STEP=1000000 repeats it)\n", g_what, g_n,
                    g_persistent ? " and every one after it" : " alone", g_n);
    g_n = 0;
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    tu_quiet_logs(!getenv("LUME_OOM_VERBOSE")); /* set: lume's log lines on stderr */
    const char *seed = getenv("LUME_OOM_SEED");
    g_seed = seed && *seed ? (unsigned)strtoul(seed, NULL, 10) : (unsigned)time(NULL);
    print_message("LUME_OOM_SEED=%u\n", g_seed);
    /* thousands of SQLite files are created: on tmpfs no fsync waits */
    if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    return tu_tmpdir(g_dir, sizeof g_dir, "oom");
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    tu_quiet_logs(0);
    return 0;
}

int main(void)
{
    if (tu_fault_install() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_outbox_open, name_attempt),
        cmocka_unit_test_teardown(test_twin_open, name_attempt),
        cmocka_unit_test_teardown(test_config_load, name_attempt),
        cmocka_unit_test_teardown(test_runtime_offline, name_attempt),
        cmocka_unit_test_teardown(test_runtime_online, name_attempt),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
