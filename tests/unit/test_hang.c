/* tests/unit/test_hang.c — the last line of defence: a script activity
 * that holds the loop past sandbox.hang_limit_ms ends the process (exit 1)
 * with a marker in the store, and on the next start the source that hung
 * is quarantined until it changes.
 *
 * Nothing a script can write in Lua escapes the CPU budget any more (see
 * tests/lua/hardbounds_spec.lua), so the hang here comes from C, as it
 * would from an OEM's driver call that never returns: the test registers a
 * C function that blocks in the script's state, in a forked child running
 * a real runtime, and checks the child's exit and the store it left. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lume.h"
#include "script.h"
#include "scripts.h"
#include "config.h"
#include "testutil.h"

static char dir[512];

static const char *const SLOW_SRC =
    "-- calls into a C function (an OEM driver, say) that never returns\n"
    "lume.timer.every(20, function() if blocker then blocker() end end)\n";

static int c_block(lua_State *L)
{
    (void)L;
    struct timespec ts = {30, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

static lume_runtime *runtime(void)
{
    char scripts[600], store[600];
    snprintf(scripts, sizeof scripts, "%s/scripts", dir);
    snprintf(store, sizeof store, "%s/var", dir);
    lume_config cfg;
    assert_int_equal(tu_runtime_config(&cfg, scripts, store, "hang-test"), 0);
    assert_int_equal(tu_config_set(&cfg, "sandbox.cpu_budget_ms", "20"), 0);
    assert_int_equal(tu_config_set(&cfg, "sandbox.load_budget_ms", "100"), 0);
    assert_int_equal(tu_config_set(&cfg, "sandbox.hang_limit_ms", "400"), 0);
    char *err = NULL;
    lume_runtime *rt = lume_runtime_new(&cfg, &err);
    lume_config_free(&cfg);
    if (!rt)
        fail_msg("runtime: %s", err);
    return rt;
}

static int setup(void **state)
{
    (void)state;
    if (tu_tmpdir(dir, sizeof dir, "hang") < 0)
        return -1;
    char scripts[600];
    snprintf(scripts, sizeof scripts, "%s/scripts", dir);
    mkdir(scripts, 0755);
    tu_write_text(tu_path(scripts, "slow.lua"), SLOW_SRC);
    tu_write_text(tu_path(scripts, "steady.lua"),
                  "n = 0\nlume.timer.every(10, function() n = n + 1 end)\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(dir);
    return 0;
}

static void test_hang_ends_process_and_quarantines(void **state)
{
    (void)state;
    /* 1. the child hangs in a script's timer callback */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        lume_runtime *rt = runtime();
        lume_script *s = lume_scripts_find(rt, "slow");
        if (!s || !s->L)
            _exit(10);
        lua_register(s->L, "blocker", c_block);
        lume_runtime_run_for(rt, 20000);
        _exit(11); /* the watchdog should have ended us long before */
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    struct stat sb;
    assert_int_equal(stat(tu_path(dir, "var/hung.json"), &sb), 0);

    /* 2. the next start quarantines the source that hung; the rest runs */
    lume_runtime *rt = runtime();
    assert_int_not_equal(stat(tu_path(dir, "var/hung.json"), &sb), 0); /* consumed */
    lume_script *slow = lume_scripts_find(rt, "slow");
    assert_non_null(slow);
    assert_int_equal(slow->status, LUME_SCRIPT_FAILED);
    assert_null(slow->L);
    assert_non_null(slow->last_error);
    assert_non_null(strstr(slow->last_error, "quarantined"));
    assert_non_null(strstr(slow->last_error, "timer.every"));
    lume_script *steady = lume_scripts_find(rt, "steady");
    assert_non_null(steady);
    assert_int_equal(steady->status, LUME_SCRIPT_RUNNING);
    lume_runtime_run_for(rt, 100);
    assert_int_equal(steady->status, LUME_SCRIPT_RUNNING);
    lume_runtime_free(rt);

    /* 3. still quarantined after another restart (persisted, not a
     * one-off), and lifted once the source changes */
    rt = runtime();
    slow = lume_scripts_find(rt, "slow");
    assert_int_equal(slow->status, LUME_SCRIPT_FAILED);
    char scripts[600];
    snprintf(scripts, sizeof scripts, "%s/scripts", dir);
    tu_write_text(tu_path(scripts, "slow.lua"), "lume.timer.every(20, function() end)\n");
    char *err = NULL;
    assert_int_equal(lume_runtime_reload(rt, "slow", &err), 0);
    slow = lume_scripts_find(rt, "slow");
    assert_int_equal(slow->status, LUME_SCRIPT_RUNNING);
    lume_runtime_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hang_ends_process_and_quarantines, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
