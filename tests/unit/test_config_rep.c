/* tests/unit/test_config_rep.c — the config chunk's string.rep
 * (bindings/config_lua.c): Lua's own loops n times even when its result is
 * empty, allocating nothing the memory cap could refuse and running no
 * instruction the time limit's hook could stop, so `("").rep(1e15)` held
 * every lume command for days. Found while writing tests/fuzz/fuzz_config.c
 * (whose invariant 2: the loader returns within its time limit). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "lume.h"
#include "testutil.h"

static char g_dir[256];

/* Load text as a config file: its result, *ms how long it took. */
static int load(const char *text, lume_config *c, char **err, int64_t *ms)
{
    const char *path = tu_path(g_dir, "rep.lua");
    assert_int_equal(tu_write_text(path, text), 0);
    assert_int_equal(lume_config_init(c), 0);
    int64_t t0 = lume_mono_ns();
    int rc = lume_config_load(c, path, err);
    *ms = (lume_mono_ns() - t0) / LUME_NS_PER_MS;
    return rc;
}

static void test_empty_rep_returns_at_once(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "return { device_id = 'a' .. string.rep('', 1e15) }",
        "return { device_id = 'a' .. (''):rep(2^62, '') }",
        "return { device_id = 'a' .. string.rep('', math.maxinteger, '') }",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        lume_config c;
        char *err = NULL;
        int64_t ms = 0;
        int rc = load(texts[i], &c, &err, &ms);
        if (rc)
            fail_msg("%s: %s", texts[i], err ? err : "?");
        assert_true(ms < 1000);
        assert_string_equal(c.device_id, "a");
        lume_config_free(&c);
    }
}

static void test_rep_still_works_and_is_capped(void **state)
{
    (void)state;
    lume_config c;
    char *err = NULL;
    int64_t ms = 0;
    assert_int_equal(load("return { device_id = ('ab'):rep(3, '-') .. ('x'):rep(0) .. "
                          "('y'):rep(-1) .. ('z'):rep(2) }", &c, &err, &ms), 0);
    assert_string_equal(c.device_id, "ab-ab-abzz");
    lume_config_free(&c);
    /* a separator alone still costs memory: the cap stops it */
    assert_int_equal(load("return { store = (''):rep(1 << 30, ',') }", &c, &err, &ms), -EINVAL);
    assert_non_null(strstr(err, "the memory limit of a config file"));
    free(err);
    lume_config_free(&c);
    err = NULL;
    assert_int_equal(load("return { store = string.rep() }", &c, &err, &ms), -EINVAL);
    assert_non_null(strstr(err, "bad argument #1 to 'rep'"));
    free(err);
    lume_config_free(&c);
}

static int setup(void **state)
{
    (void)state;
    tu_quiet_logs(1);
    return tu_tmpdir(g_dir, sizeof g_dir, "config-rep");
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    tu_quiet_logs(0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_rep_returns_at_once),
        cmocka_unit_test(test_rep_still_works_and_is_capped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
