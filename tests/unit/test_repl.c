/* tests/unit/test_repl.c — the REPL evaluator (bindings/repl.c) on a real
 * runtime: expressions and `=expr` print their values, multi-line chunks
 * wait for more, tables print to a depth limit, print() output comes back,
 * errors leave the session usable, the CPU budget stops `while true do
 * end`, another thread's interrupt stops a runaway loop, the memory cap
 * holds, and completion sees the live state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lume.h"
#include "config.h"
#include "repl.h"
#include "runtime.h"
#include "testutil.h"

static char dir[512];
static lume_runtime *rt;

static int setup(void **state)
{
    (void)state;
    if (tu_tmpdir(dir, sizeof dir, "repl") < 0)
        return -1;
    char cfgsrc[4096], root[512];
    if (!getcwd(root, sizeof root))
        return -1;
    mkdir(tu_path(dir, "scripts"), 0755);
    snprintf(cfgsrc, sizeof cfgsrc,
             "return { device_id = 'repl-test', board = 'sim', boards_dir = '%s/boards',\n"
             "  stdlib_dir = '%s/stdlib', scripts_dir = '%s/scripts', store = '%s/var',\n"
             "  status_interval_ms = 0, watch_scripts = false,\n"
             "  sandbox = { memory_limit = 4194304 } }\n",
             root, root, dir, dir);
    if (tu_write_text(tu_path(dir, "lume.conf.lua"), cfgsrc) < 0)
        return -1;
    lume_config cfg;
    char *err = NULL;
    lume_config_init(&cfg);
    if (lume_config_load(&cfg, tu_path(dir, "lume.conf.lua"), &err) < 0)
        return -1;
    rt = lume_runtime_new(&cfg, &err);
    lume_config_free(&cfg);
    return rt ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lume_runtime_free(rt);
    tu_rm_tree(dir);
    return 0;
}

static int eval(lume_repl *r, const char *line, char **out)
{
    return lume_repl_eval(r, line, strlen(line), out);
}

static void expect(lume_repl *r, const char *line, int rc, const char *needle)
{
    char *out = NULL;
    int got = eval(r, line, &out);
    assert_non_null(out);
    if (got != rc || !strstr(out, needle))
        fail_msg("'%s' -> %d '%s', expected %d with '%s'", line, got, out, rc, needle);
    free(out);
}

static void test_values_and_chunks(void **state)
{
    (void)state;
    char *err = NULL;
    lume_repl *r = lume_repl_new(rt, &err);
    assert_non_null(r);
    expect(r, "1 + 2", LUME_REPL_OK, "3\n");
    expect(r, "=2 * 21", LUME_REPL_OK, "42\n");
    expect(r, "x = 5", LUME_REPL_OK, "");
    expect(r, "x, 'str'", LUME_REPL_OK, "5\tstr\n");
    expect(r, "function sq(n)", LUME_REPL_MORE, "");
    expect(r, "  return n * n", LUME_REPL_MORE, "");
    expect(r, "end", LUME_REPL_OK, "");
    expect(r, "sq(7)", LUME_REPL_OK, "49");
    expect(r, "print('hello', 1) return 2", LUME_REPL_OK, "hello\t1\n2\n");
    expect(r, "{a = 1, b = {c = {d = {e = 1}}}, 'x'}", LUME_REPL_OK,
           "{ \"x\", a = 1, b = { c = { d = {...} } } }");
    expect(r, "t = {} t.self = t return t", LUME_REPL_OK, "self = <cycle>");
    expect(r, "error('boom')", LUME_REPL_ERROR, "boom");
    expect(r, "y = x +", LUME_REPL_MORE, "");
    expect(r, ")", LUME_REPL_ERROR, "unexpected symbol");
    expect(r, "x", LUME_REPL_OK, "5"); /* the session survived */
    expect(r, "io", LUME_REPL_OK, "nil"); /* the sandbox */
    size_t hl;
    const char *h = lume_repl_history(r, &hl);
    assert_non_null(strstr(h, "function sq(n)\n  return n * n\nend\n"));
    assert_null(strstr(h, "boom"));
    lume_repl_free(r);
}

static void test_budget_and_memory(void **state)
{
    (void)state;
    char *err = NULL;
    lume_repl *r = lume_repl_new(rt, &err);
    assert_non_null(r);
    expect(r, "while true do end", LUME_REPL_ERROR, "exceeded");
    expect(r, "t = {} for i = 1, 1e8 do t[i] = i end", LUME_REPL_ERROR, "memory");
    expect(r, "t = nil", LUME_REPL_OK, "");
    expect(r, "1", LUME_REPL_OK, "1");
    lume_repl_free(r);
}

static void *interrupter(void *arg)
{
    tu_sleep_ms(200);
    lume_repl_interrupt(arg);
    return NULL;
}

static void test_interrupt(void **state)
{
    (void)state;
    char *err = NULL;
    lume_repl *r = lume_repl_new(rt, &err);
    assert_non_null(r);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, interrupter, r), 0);
    expect(r, "while true do end", LUME_REPL_ERROR, "interrupted");
    pthread_join(th, NULL);
    expect(r, "2", LUME_REPL_OK, "2");
    lume_repl_interrupt(r); /* none running: nothing happens to the next one */
    expect(r, "3", LUME_REPL_OK, "3");
    /* the budget still holds after an interrupt */
    expect(r, "while true do end", LUME_REPL_ERROR, "exceeded");
    lume_repl_free(r);
}

static void test_complete(void **state)
{
    (void)state;
    char *err = NULL;
    lume_repl *r = lume_repl_new(rt, &err);
    assert_non_null(r);
    char *out;
    assert_int_equal(eval(r, "mything = {alpha = 1, alps = 2, beta = 3}", &out), LUME_REPL_OK);
    free(out);
    char **c;
    size_t n;
    assert_int_equal(lume_repl_complete(r, "x = mything.al", &c, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(c[0], "mything.alpha");
    assert_string_equal(c[1], "mything.alps");
    lume_repl_free_cands(c, n);
    assert_int_equal(lume_repl_complete(r, "lume.sen", &c, &n), 0);
    assert_true(n >= 1);
    assert_string_equal(c[0], "lume.sensor");
    lume_repl_free_cands(c, n);
    assert_int_equal(lume_repl_complete(r, "myth", &c, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0], "mything");
    lume_repl_free_cands(c, n);
    assert_int_equal(lume_repl_complete(r, "nosuch.x", &c, &n), 0);
    assert_int_equal(n, 0);
    lume_repl_free_cands(c, n);
    lume_repl_free(r);
}

static void dot(lume_repl *r, const char *line, int rc, const char *needle)
{
    char *out = NULL;
    int got = lume_repl_dot(r, line, &out);
    assert_non_null(out);
    if (got != rc || !strstr(out, needle))
        fail_msg("'%s' -> %d '%s', expected %d with '%s'", line, got, out, rc, needle);
    free(out);
}

static void test_dot_commands(void **state)
{
    (void)state;
    char *err = NULL;
    lume_repl *r = lume_repl_new(rt, &err);
    assert_non_null(r);
    dot(r, ".help", LUME_REPL_OK, ".watch SENSOR");
    dot(r, ".nope", LUME_REPL_ERROR, "unknown command .nope");
    dot(r, ".rate nosuch 5", LUME_REPL_ERROR, "no sensor named 'nosuch'");
    dot(r, ".rate temperature x", LUME_REPL_ERROR, "positive number");
    dot(r, ".rate temperature 7", LUME_REPL_OK, "temperature: 7 Hz");
    dot(r, ".watch temperature", LUME_REPL_OK, "temperature");
    dot(r, ".outbox", LUME_REPL_OK, "telemetry");
    dot(r, ".twin", LUME_REPL_OK, "drift:");
    dot(r, ".log loud", LUME_REPL_ERROR, "debug, info, warn or error");
    dot(r, ".log info", LUME_REPL_OK, "log level info");
    dot(r, ".save ok", LUME_REPL_ERROR, "nothing to save");
    char *out;
    assert_int_equal(eval(r, "hits = 0", &out), LUME_REPL_OK);
    free(out);
    assert_int_equal(eval(r, "nosuchfn()", &out), LUME_REPL_ERROR); /* not saved */
    free(out);
    dot(r, ".save bad/name", LUME_REPL_ERROR, "letters, digits");
    dot(r, ".save fromrepl", LUME_REPL_OK, "script fromrepl loaded");
    dot(r, ".scripts", LUME_REPL_OK, "fromrepl");
    FILE *f = fopen(tu_path(dir, "scripts/fromrepl.lua"), "r");
    assert_non_null(f);
    char buf[256] = {0};
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_string_equal(buf, "hits = 0\n");
    dot(r, ".reload fromrepl", LUME_REPL_OK, "reloaded fromrepl");
    dot(r, ".reload nosuch", LUME_REPL_ERROR, "nosuch");
    /* the runtime's log: what its threads log (the loop thread uses its
     * target while it runs; here, this thread) */
    lume_log_target *was = lume_log_use(&rt->log);
    dot(r, ".reload fromrepl", LUME_REPL_OK, "reloaded fromrepl");
    dot(r, ".tail", LUME_REPL_OK, "fromrepl reloaded");
    char *t = NULL;
    assert_int_equal(lume_repl_dot(r, ".tail", &t), LUME_REPL_OK);
    unsigned long long seq = 0;
    assert_int_equal(sscanf(t, "seq %llu", &seq), 1);
    free(t);
    char req[64];
    snprintf(req, sizeof req, ".tail %llu", seq);
    dot(r, req, LUME_REPL_OK, "seq"); /* nothing new yet */
    lume_log(LUME_LOG_WARN, "repl-test", "a line to follow");
    dot(r, req, LUME_REPL_OK, "warn repl-test: a line to follow");
    lume_log_use(was);
    lume_repl_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_chunks),
        cmocka_unit_test(test_budget_and_memory),
        cmocka_unit_test(test_interrupt),
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_dot_commands),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
