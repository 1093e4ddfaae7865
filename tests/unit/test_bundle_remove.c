/* tests/unit/test_bundle_remove.c — a bundle removed from the twin while
 * a new version of it soaks (bindings/manager.c, remove_bundle): the
 * version it parked is an earlier version of the same bundle, and it must
 * go with the bundle, not come back as a script nothing manages. Found by
 * tests/fuzz/fuzz_manager.c (its corpus keeps the input:
 * removed-mid-soak). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "bundles.h"
#include "lume.h"
#include "runtime.h"
#include "script.h"
#include "scripts.h"
#include "config.h"
#include "log.h"
#include "testutil.h"
#include "twin.h"

static char g_dir[256];

static lume_runtime *runtime(void)
{
    char scripts[300], store[300];
    snprintf(scripts, sizeof scripts, "%s/scripts", g_dir);
    snprintf(store, sizeof store, "%s/store", g_dir);
    mkdir(scripts, 0755);
    assert_int_equal(tu_write_text(tu_path(scripts, "base.lua"), "local n = 0\n"), 0);
    lume_config c;
    assert_int_equal(tu_runtime_config(&c, scripts, store, "remove-dev"), 0);
    char *err = NULL;
    lume_runtime *rt = lume_runtime_new(&c, &err);
    if (!rt)
        fail_msg("runtime: %s", err ? err : "?");
    lume_config_free(&c);
    return rt;
}

static void apply(lume_runtime *rt, const char *json)
{
    char *err = NULL;
    cJSON *doc = lume_twin_parse(json, strlen(json), &err);
    if (!doc)
        fail_msg("%s: %s", json, err ? err : "?");
    lume_manager_apply(rt->mgr, doc);
    cJSON_Delete(doc);
}

static size_t managed(lume_runtime *rt)
{
    size_t n = 0;
    for (lume_script *s = rt->scripts; s; s = s->next)
        n += s->managed;
    return n;
}

static void test_removed_while_a_new_version_soaks(void **state)
{
    (void)state;
    lume_runtime *rt = runtime();
    apply(rt, "{\"s\":{\"version\":\"1\",\"source\":\"local a = 1\",\"soak_s\":0}}");
    assert_string_equal(lume_manager_running_version(rt->mgr, "s"), "1");
    apply(rt, "{\"s\":{\"version\":\"2\",\"source\":\"local a = 2\",\"soak_s\":60}}");
    assert_string_equal(lume_manager_running_version(rt->mgr, "s"), "2"); /* soaking, 1 parked */
    apply(rt, "{}");
    assert_null(lume_scripts_find(rt, "s"));
    assert_null(lume_manager_running_version(rt->mgr, "s"));
    assert_int_equal(managed(rt), 0);
    lume_runtime_free(rt);
}

static void test_file_script_comes_back(void **state)
{
    (void)state;
    lume_runtime *rt = runtime();
    lume_script *file = lume_scripts_find(rt, "base");
    assert_non_null(file);
    assert_false(file->managed);
    apply(rt, "{\"base\":{\"version\":\"1\",\"source\":\"local b = 1\",\"soak_s\":60}}");
    assert_true(lume_scripts_find(rt, "base")->managed);
    apply(rt, "{}"); /* removed during its soak: the file's version comes back */
    lume_script *back = lume_scripts_find(rt, "base");
    assert_non_null(back);
    assert_false(back->managed);
    assert_int_equal(managed(rt), 0);
    lume_runtime_free(rt);
}

static int setup(void **state)
{
    (void)state;
    tu_quiet_logs(1);
    return tu_tmpdir(g_dir, sizeof g_dir, "bundle-remove");
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
        cmocka_unit_test_setup_teardown(test_removed_while_a_new_version_soaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_script_comes_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
