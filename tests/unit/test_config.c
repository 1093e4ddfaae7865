/* tests/unit/test_config.c — the one place config values are checked. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "lume.h"
#include "testutil.h"

static lume_config_value num(double v) { return (lume_config_value){.kind = LUME_CV_NUMBER, .num = v}; }
static lume_config_value str(const char *s) { return (lume_config_value){.kind = LUME_CV_STRING, .str = s}; }
static lume_config_value boolean(bool b) { return (lume_config_value){.kind = LUME_CV_BOOL, .b = b}; }

/* Set key to v and expect failure rc with a message containing want. */
static void expect_err(const char *key, lume_config_value v, int rc, const char *want)
{
    lume_config c;
    assert_int_equal(lume_config_init(&c), 0);
    lume_config before;
    assert_int_equal(lume_config_copy(&before, &c), 0);
    char *err = NULL;
    assert_int_equal(lume_config_set(&c, key, &v, &err), rc);
    assert_non_null(err);
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
    /* c is unchanged on error */
    assert_int_equal(c.sandbox.memory_limit, before.sandbox.memory_limit);
    assert_string_equal(c.board, before.board);
    assert_int_equal(c.log_level, before.log_level);
    free(err);
    lume_config_free(&c);
    lume_config_free(&before);
}

static void test_defaults(void **state)
{
    (void)state;
    lume_config c;
    assert_int_equal(lume_config_init(&c), 0);
    assert_string_equal(c.board, "sim");
    assert_string_equal(c.scripts_dir, "scripts");
    assert_string_equal(c.store, "var");
    assert_true(strlen(c.device_id) > 0);
    assert_int_equal(c.sandbox.memory_limit, 1024 * 1024);
    assert_int_equal(c.outbox.commit_interval_ms, 50);
    assert_int_equal(c.outbox.commit_batch, 1000);
    assert_int_equal(c.status_interval_ms, 1000);
    char *err = NULL;
    assert_int_equal(lume_config_check(&c, &err), 0);
    lume_config_free(&c);
}

static void test_good_values(void **state)
{
    (void)state;
    lume_config c;
    lume_config_init(&c);
    char *err = NULL;
    lume_config_value v = str("2MiB");
    assert_int_equal(lume_config_set(&c, "sandbox.memory_limit", &v, &err), 0);
    /* a board is a name in boards_dir, or the path of a board file */
    static const char *const boards[] = {"rpi4", "../boards/x", "/opt/acme/board.lua",
                                         "mine.lua"};
    for (size_t i = 0; i < sizeof boards / sizeof *boards; i++) {
        lume_config_value b = str(boards[i]);
        assert_int_equal(lume_config_set(&c, "board", &b, &err), 0);
        assert_string_equal(c.board, boards[i]);
    }
    assert_int_equal(c.sandbox.memory_limit, 2 * 1024 * 1024);
    v = str("512KiB");
    assert_int_equal(lume_config_set(&c, "sandbox.store_quota", &v, &err), 0);
    assert_int_equal(c.sandbox.store_quota, 512 * 1024);
    v = num(65536);
    assert_int_equal(lume_config_set(&c, "sandbox.memory_limit", &v, &err), 0);
    assert_int_equal(c.sandbox.memory_limit, 65536);
    v = str("debug");
    assert_int_equal(lume_config_set(&c, "log_level", &v, &err), 0);
    assert_int_equal(c.log_level, LUME_LOG_DEBUG);
    v = str("full");
    assert_int_equal(lume_config_set(&c, "outbox.synchronous", &v, &err), 0);
    assert_true(c.outbox.synchronous_full);
    v = boolean(true);
    assert_int_equal(lume_config_set(&c, "sampler.realtime", &v, &err), 0);
    assert_true(c.sampler.realtime);
    v = str("pump-7.site:a_b");
    assert_int_equal(lume_config_set(&c, "device_id", &v, &err), 0);
    assert_string_equal(c.device_id, "pump-7.site:a_b");
    v = str("a4855797efc55bcd,0123456789abcdef");
    assert_int_equal(lume_config_set(&c, "twin.revoked_keys", &v, &err), 0);
    assert_string_equal(c.twin.revoked_keys, "a4855797efc55bcd,0123456789abcdef");
    v = (lume_config_value){.kind = LUME_CV_TABLE};
    assert_int_equal(lume_config_set(&c, "sandbox", &v, &err), 1); /* descend */
    assert_null(err);
    lume_config copy;
    assert_int_equal(lume_config_copy(&copy, &c), 0);
    assert_ptr_not_equal(copy.device_id, c.device_id);
    assert_string_equal(copy.device_id, c.device_id);
    lume_config_free(&c);
    assert_string_equal(copy.device_id, "pump-7.site:a_b");
    lume_config_free(&copy);
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_err("outbx", (lume_config_value){.kind = LUME_CV_TABLE}, -ENOENT,
               "outbx: unknown key (did you mean 'outbox'?)");
    expect_err("sandbox.memory_limt", num(1), -ENOENT, "did you mean 'sandbox.memory_limit'");
    expect_err("zzzzzzzzzz", num(1), -ENOENT, "zzzzzzzzzz: unknown key");
    expect_err("sandbox.memory_limit", num(-5), -EINVAL,
               "sandbox.memory_limit: expected a size in bytes between 65536 and 1073741824, got -5");
    expect_err("sandbox.memory_limit", str("lots"), -EINVAL, "like 65536, \"512KiB\"");
    expect_err("sandbox.memory_limit", str("2TiB"), -EINVAL, "like 65536");
    expect_err("sandbox.memory_limit", str("4GiB"), -EINVAL, "between 65536 and 1073741824");
    expect_err("sandbox.cpu_budget_ms", num(0), -EINVAL, "between 1 and 60000, got 0");
    expect_err("sandbox.cpu_budget_ms", num(1.5), -EINVAL, "expected a whole number, got 1.5");
    expect_err("sandbox.cpu_budget_ms", str("10"), -EINVAL, "expected a number, got \"10\"");
    expect_err("board", num(7), -EINVAL, "board: expected a string, got 7");
    expect_err("board", str(".hidden"), -EINVAL, "expected a board name");
    expect_err("board", str("a123456789012345678901234567890123456789012345678901234567890123x"),
               -EINVAL, "at most 64 bytes");
    expect_err("board", str(""), -EINVAL, "expected a string of 1 to 4096 bytes");
    expect_err("device_id", str("a b"), -EINVAL, "letters, digits and -._: only");
    expect_err("log_level", str("loud"), -EINVAL, "got \"loud\"");
    expect_err("sampler.realtime", str("yes"), -EINVAL, "expected true or false, got \"yes\"");
    expect_err("sampler.priority", num(100), -EINVAL, "between 1 and 99, got 100");
    expect_err("outbox.synchronous", str("sometimes"), -EINVAL, "\"normal\" or \"full\"");
    expect_err("sandbox", num(3), -EINVAL, "sandbox: expected a table, got 3");
    expect_err("status_interval_ms",
               (lume_config_value){.kind = LUME_CV_OTHER, .type_name = "function"}, -EINVAL,
               "expected a number, got a function");
    expect_err("scripts_dir", str(""), -EINVAL, "scripts_dir: expected a string of 1 to");
    /* revoked keys are key ids, not key files */
    expect_err("twin.revoked_keys", str("keys/old.pub"), -EINVAL,
               "twin.revoked_keys: expected key ids of 16 lower-case hex digits (lume keygen "
               "prints them), got \"keys/old.pub\"");
    expect_err("twin.revoked_keys", str("a4855797efc55bcd,A4855797EFC55BCD"), -EINVAL,
               "got \"A4855797EFC55BCD\" in");
    expect_err("twin.revoked_keys", str("a4855797efc55bc"), -EINVAL, "16 lower-case hex");
}

static lume_config_value lstr(const char *s, size_t len)
{
    return (lume_config_value){.kind = LUME_CV_STRING, .str = s, .len = len};
}

/* Names that end up in MQTT packets and topics: each refused with the key,
 * the value (escaped) and the rule. */
static void test_names_at_the_edge(void **state)
{
    (void)state;
    /* a NUL byte in any string (a Lua string may hold one) */
    expect_err("store", lstr("var\0/x", 6), -EINVAL,
               "store: \"var\\0/x\" holds a NUL byte (at byte 3)");
    expect_err("net.client_id", lstr("dev\0ice", 7), -EINVAL, "holds a NUL byte");
    /* the client id and user name are MQTT UTF-8 strings */
    expect_err("net.client_id", str("dev\xff"), -EINVAL,
               "net.client_id: \"dev\\xff\" is not a valid MQTT client id: it must be "
               "well-formed UTF-8 (MQTT 3.1.1, 1.5.3), and it is not well-formed UTF-8 (byte "
               "0xff at offset 3)");
    expect_err("net.client_id", str("a\xed\xa0\x80"), -EINVAL, "client id");
    expect_err("net.username", str("\xc3"), -EINVAL, "is not a valid MQTT user name");
    /* the device id is a topic level */
    expect_err("device_id", str("a/b"), -EINVAL,
               "device_id: expected letters, digits and -._: only (the device id is a level of "
               "every topic lume uses: no '+', '#' or '/', no spaces), got \"a/b\"");
    expect_err("device_id", str("#"), -EINVAL, "no '+', '#' or '/'");
    expect_err("device_id", str("caf\xc3\xa9"), -EINVAL, "got \"caf\xc3\xa9\"");
    char longid[200];
    memset(longid, 'd', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    expect_err("device_id", str(longid), -EINVAL, "device_id: expected a string of 1 to 128 bytes");
    /* group names */
    expect_err("twin.groups", str("fleet,#"), -EINVAL,
               "twin.groups: \"#\" is not a valid group name: no '+', '#' or '/' (they are MQTT "
               "wildcards and topic separators)");
    expect_err("twin.groups", str("site+1"), -EINVAL, "\"site+1\" is not a valid group name");
    expect_err("twin.groups", str("a/b"), -EINVAL, "\"a/b\" is not a valid group name");
    expect_err("twin.groups", str("fleet,,site"), -EINVAL,
               "twin.groups: \"\" is not a valid group name: it must not be empty");
    expect_err("twin.groups", str("ok,\xff"), -EINVAL,
               "twin.groups: \"\\xff\" is not a valid group name: it must be well-formed UTF-8");
    char longgroup[200];
    memset(longgroup, 'g', sizeof longgroup - 1);
    longgroup[sizeof longgroup - 1] = 0;
    expect_err("twin.groups", str(longgroup), -EINVAL, "at most 128 bytes, got 199");

    /* and what is fine */
    lume_config c;
    lume_config_init(&c);
    char *err = NULL;
    lume_config_value v = str("fleet,site-\xc3\xa9t\xc3\xa9,ring_1");
    assert_int_equal(lume_config_set(&c, "twin.groups", &v, &err), 0);
    v = str("caf\xc3\xa9-1");
    assert_int_equal(lume_config_set(&c, "net.client_id", &v, &err), 0);
    v = lstr("dev-1", 5);
    assert_int_equal(lume_config_set(&c, "device_id", &v, &err), 0);
    assert_string_equal(c.device_id, "dev-1");
    assert_null(err);
    lume_config_free(&c);
}

static void test_cross_check(void **state)
{
    (void)state;
    lume_config c;
    lume_config_init(&c);
    c.sandbox.cpu_budget_ms = 20000;
    c.sandbox.load_budget_ms = 100;
    char *err = NULL;
    assert_int_equal(lume_config_check(&c, &err), -EINVAL);
    assert_non_null(strstr(err, "sandbox.cpu_budget_ms (20000)"));
    free(err);
    lume_config_free(&c);
}

/* console.listen: ADDRESS:PORT; beyond loopback only with console.token */
static void test_console_listen(void **state)
{
    (void)state;
    char host[64];
    int port = 0;
    assert_int_equal(lume_console_addr_parse("127.0.0.1:8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(lume_console_addr_parse("[::1]:9", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9);
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:", ":80", "h:0", "h:65536",
                                      "h:80x", "::1:80", "[::1]80", "[]:80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(lume_console_addr_parse(bad[i], host, sizeof host, &port), -EINVAL);
    assert_true(lume_console_addr_loopback("127.0.0.53"));
    assert_true(lume_console_addr_loopback("::1"));
    assert_true(lume_console_addr_loopback("localhost"));
    assert_false(lume_console_addr_loopback("0.0.0.0"));
    assert_false(lume_console_addr_loopback("192.168.1.7"));

#ifndef LUME_NO_CONSOLE /* there any console.listen is refused: test_hub's test_left_out */
    lume_config c;
    lume_config_init(&c);
    char *err = NULL;
    assert_null(c.console.listen); /* off by default */
    lume_config_value v = str("0.0.0.0:8080");
    assert_int_equal(lume_config_set(&c, "console.listen", &v, &err), 0);
    assert_int_equal(lume_config_check(&c, &err), -EINVAL);
    assert_non_null(strstr(err, "console.listen: 0.0.0.0:8080 is not a loopback address: set "
                                "console.token"));
    free(err);
    err = NULL;
    v = str("short");
    assert_int_equal(lume_config_set(&c, "console.token", &v, &err), -EINVAL);
    assert_non_null(strstr(err, "console.token"));
    free(err);
    err = NULL;
    v = str("a-long-enough-token");
    assert_int_equal(lume_config_set(&c, "console.token", &v, &err), 0);
    assert_int_equal(lume_config_check(&c, &err), 0);
    v = str("localhost");
    assert_int_equal(lume_config_set(&c, "console.listen", &v, &err), 0);
    assert_int_equal(lume_config_check(&c, &err), -EINVAL);
    assert_non_null(strstr(err, "console.listen: expected ADDRESS:PORT"));
    free(err);
    lume_config_free(&c);
#endif
}

static void test_field_table(void **state)
{
    (void)state;
    /* every field has a doc and a default, and keys are unique */
    size_t n = 0;
    for (const lume_config_field *f; (f = lume_config_field_at(n)); n++) {
        assert_non_null(f->doc);
        assert_non_null(f->dflt);
        for (size_t j = 0; j < n; j++)
            assert_string_not_equal(lume_config_field_at(j)->key, f->key);
    }
    assert_true(n >= 20);
}

/* outbox.durable_lanes: lane names into a bit set. */
static void test_durable_lanes(void **state)
{
    (void)state;
    lume_config c;
    lume_config_init(&c);
    assert_int_equal(c.outbox.durable_lanes, 1 << LUME_LANE_ALARM);
    char *err = NULL;
    lume_config_value v = str("alarm,bulk");
    assert_int_equal(lume_config_set(&c, "outbox.durable_lanes", &v, &err), 0);
    assert_int_equal(c.outbox.durable_lanes, (1 << LUME_LANE_ALARM) | (1 << LUME_LANE_BULK));
    v = str("none");
    assert_int_equal(lume_config_set(&c, "outbox.durable_lanes", &v, &err), 0);
    assert_int_equal(c.outbox.durable_lanes, 0);
    v = (lume_config_value){.kind = LUME_CV_TABLE};   /* {} */
    c.outbox.durable_lanes = 7;
    assert_int_equal(lume_config_set(&c, "outbox.durable_lanes", &v, &err), 0);
    assert_int_equal(c.outbox.durable_lanes, 0);
    lume_config_free(&c);
    expect_err("outbox.durable_lanes", str("alarm,urgent"), -EINVAL,
               "outbox.durable_lanes: expected lane names (\"alarm\", \"telemetry\", "
               "\"bulk\"), got \"urgent\" in \"alarm,urgent\"");
    expect_err("outbox.durable_lanes", num(1), -EINVAL, "expected a list of lane names, got 1");
}

/* Relative paths in a config file are relative to its folder, whatever the
 * working directory; absolute ones stay; a board name stays a name. */
static void test_config_relative_paths(void **state)
{
    (void)state;
    char dir[512], sub[600], real[PATH_MAX], cwd[PATH_MAX], want[PATH_MAX + 64];
    assert_int_equal(tu_tmpdir(dir, sizeof dir, "cfgrel"), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(sub, sizeof sub, "%s/etc", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_non_null(realpath(sub, real));
    assert_int_equal(tu_write_text(tu_path(sub, "c.lua"),
        "return { boards_dir = 'b', scripts_dir = '../s', stdlib_dir = '/opt/std',\n"
        "  store = 'var', board = 'my/board.lua', net = { ca_file = 'ca.pem' },\n"
        "  twin = { trusted_keys = { 'k1.pem', '/abs/k2.pem' } } }\n"), 0);
    assert_int_equal(chdir("/"), 0); /* a config path relative to another folder */
    lume_config *c = lume_config_new();
    char *err = NULL, path[700];
    snprintf(path, sizeof path, "%s/c.lua", sub);
    if (lume_config_load(c, path + 1, &err) != 0) /* "tmp/.../c.lua" from "/" */
        fail_msg("%s", err);
    lume_config *cc = c; /* lume.h's handle is config.h's struct */
    snprintf(want, sizeof want, "%s/b", real);
    assert_string_equal(cc->boards_dir, want);
    snprintf(want, sizeof want, "%s/../s", real);
    assert_string_equal(cc->scripts_dir, want);
    assert_string_equal(cc->stdlib_dir, "/opt/std");
    snprintf(want, sizeof want, "%s/var", real);
    assert_string_equal(cc->store, want);
    snprintf(want, sizeof want, "%s/my/board.lua", real);
    assert_string_equal(cc->board, want);
    snprintf(want, sizeof want, "%s/ca.pem", real);
    assert_string_equal(cc->net.ca_file, want);
    snprintf(want, sizeof want, "%s/k1.pem,/abs/k2.pem", real);
    assert_string_equal(cc->twin.trusted_keys, want);
    lume_config_free(c);
    /* a board name is not a path */
    assert_int_equal(tu_write_text(tu_path(sub, "n.lua"), "return { board = 'rpi4' }\n"), 0);
    c = lume_config_new();
    snprintf(path, sizeof path, "%s/n.lua", sub);
    assert_int_equal(lume_config_load(c, path, &err), 0);
    assert_string_equal(c->board, "rpi4");
    lume_config_free(c);
    assert_int_equal(chdir(cwd), 0);
    tu_rm_tree(dir);
}

/* boards_dir, scripts_dir, stdlib_dir default to $LUME_DATADIR/x, else ./x
 * when the working directory has it, else the compiled-in data dir's. */
static void test_data_dir_defaults(void **state)
{
    (void)state;
    char dir[512], cwd[PATH_MAX], want[700];
    assert_int_equal(tu_tmpdir(dir, sizeof dir, "datadir"), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    const char *old = getenv("LUME_DATADIR");
    char *saved = old ? strdup(old) : NULL;
    unsetenv("LUME_DATADIR");
    lume_config c;
    assert_int_equal(lume_config_init(&c), 0); /* nothing here: the compiled-in one */
    snprintf(want, sizeof want, "%s/boards", lume_datadir_builtin());
    assert_string_equal(c.boards_dir, want);
    snprintf(want, sizeof want, "%s/stdlib", lume_datadir_builtin());
    assert_string_equal(c.stdlib_dir, want);
    lume_config_free(&c);
    assert_int_equal(mkdir("boards", 0755), 0); /* a folder here wins */
    assert_int_equal(lume_config_init(&c), 0);
    assert_string_equal(c.boards_dir, "boards");
    snprintf(want, sizeof want, "%s/scripts", lume_datadir_builtin());
    assert_string_equal(c.scripts_dir, want);
    lume_config_free(&c);
    setenv("LUME_DATADIR", "/opt/lume-data", 1); /* and the environment over both */
    assert_int_equal(lume_config_init(&c), 0);
    assert_string_equal(c.boards_dir, "/opt/lume-data/boards");
    assert_string_equal(c.scripts_dir, "/opt/lume-data/scripts");
    assert_string_equal(lume_datadir(), "/opt/lume-data");
    lume_config_free(&c);
    if (saved)
        setenv("LUME_DATADIR", saved, 1);
    else
        unsetenv("LUME_DATADIR");
    free(saved);
    assert_int_equal(chdir(cwd), 0);
    tu_rm_tree(dir);
}

int main(void)
{
    lume_log_set_level(LUME_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),   cmocka_unit_test(test_good_values),
        cmocka_unit_test(test_bad_values), cmocka_unit_test(test_cross_check),
        cmocka_unit_test(test_field_table), cmocka_unit_test(test_names_at_the_edge),
        cmocka_unit_test(test_durable_lanes), cmocka_unit_test(test_console_listen),
        cmocka_unit_test(test_config_relative_paths), cmocka_unit_test(test_data_dir_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
