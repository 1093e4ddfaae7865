/* tests/unit/test_schema.c — the schema of lume's own desired keys
 * (core/store/schema.c): what it accepts, what it refuses with which path
 * and words, and the stale-$version signal the twin gives its host. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schema.h"
#include "twin.h"

/* check(path, json): 0 or -EINVAL; where and why kept for the asserts */
static char where[256], why[700];
static int check(const char *path, const char *json)
{
    cJSON *v = cJSON_Parse(json);
    assert_non_null(v);
    where[0] = why[0] = 0;
    int r = lume_twin_schema_check(path, v, where, sizeof where, why, sizeof why);
    cJSON_Delete(v);
    return r;
}

static void refused(const char *path, const char *json, const char *want_where,
                    const char *want_why)
{
    assert_int_equal(check(path, json), -EINVAL);
    assert_string_equal(where, want_where);
    if (!strstr(why, want_why))
        fail_msg("%s %s: why is \"%s\", expected it to contain \"%s\"", path, json, why,
                 want_why);
}

static void test_accepts(void **state)
{
    (void)state;
    assert_int_equal(check("sensors", "{\"temperature\": 2, \"vibration\": {\"rate\": 0.5}}"), 0);
    assert_int_equal(check("sensors", "{\"nosuch\": 5}"), 0); /* the board's to say */
    assert_int_equal(check("log", "\"debug\""), 0);
    assert_int_equal(check("log", "{\"level\": \"warn\", \"remote\": {\"level\": \"warn\", "
                                  "\"for_s\": 600}}"), 0);
    assert_int_equal(check("log", "{\"remote\": {}}"), 0);
    assert_int_equal(check("health", "{\"period_s\": 86400}"), 0);
    assert_int_equal(check("outbox", "{\"max_messages\": 5000, \"durable_lanes\": [\"alarm\"]}"), 0);
    assert_int_equal(check("scripts", "{\"a\": {\"version\": 3, \"source\": \"x\"}, \"b\": null}"), 0);
    assert_int_equal(check("scripts.a", "{\"version\": \"v\", \"url\": \"https://h/x\", "
                                        "\"sha256\": \"00\"}"), 0);
    /* not lume's: anything */
    assert_int_equal(check("limit", "[1, {\"x\": null}]"), 0);
    assert_int_equal(lume_twin_schema_check("sensors", NULL, where, sizeof where, why,
                                            sizeof why), 0);
    assert_true(lume_twin_schema_builtin("outbox"));
    assert_false(lume_twin_schema_builtin("limit"));
    assert_false(lume_twin_schema_builtin("sensors.x"));
}

static void test_refuses(void **state)
{
    (void)state;
    refused("sensors", "{\"temperature\": {\"rate\": \"fast\"}}", "sensors.temperature.rate",
            "sensors.temperature.rate must be a number above 0, got \"fast\"");
    refused("sensors", "{\"temperature\": 0}", "sensors.temperature", "above 0, got 0");
    refused("sensors", "{\"temperature\": {\"rat\": 2}}", "sensors.temperature.rat",
            "unknown key (sensors.temperature has: rate)");
    refused("sensors", "5", "sensors", "sensors must be an object, got 5");
    refused("log", "\"loud\"", "log",
            "log level must be one of \"debug\", \"info\", \"warn\", \"error\", got \"loud\"");
    refused("log", "{\"level\": 3}", "log.level", "log level must be one of");
    refused("log", "{\"remote\": true}", "log.remote", "must be an object, got true");
    refused("log", "{\"colour\": 1}", "log.colour", "unknown key (log has: level, remote)");
    refused("health", "{\"period_s\": 0}", "health.period_s",
            "health.period_s must be a number from 1 to 86400, got 0");
    refused("health", "{\"perod_s\": 5}", "health.perod_s", "unknown key");
    refused("outbox", "{\"max_messages\": -3}", "outbox.max_messages",
            "outbox.max_messages: expected a number between 0");
    refused("outbox", "{\"max_mesages\": 3}", "outbox.max_mesages", "max_messages");
    refused("scripts", "[1]", "scripts", "scripts must be an object, got [1]");
    refused("scripts", "{\"a\": 5}", "scripts.a", "scripts.a must be an object or null");
    refused("scripts", "{\"a\": {\"source\": \"x\"}}", "scripts.a", "bundle has no version");
    refused("scripts.a", "{\"version\": 1, \"source\": \"x\", \"url\": \"u\"}", "scripts.a",
            "exactly one of source, chunks, url");
    refused("scripts.a", "{\"version\": 1, \"url\": \"u\"}", "scripts.a", "needs its sha256");
    refused("scripts.a", "{\"version\": 1, \"source\": \"x\", \"soak_s\": -1}", "scripts.a.soak_s",
            "from 0 to 86400");
    refused("scripts.a", "{\"version\": 1, \"source\": \"x\", \"colour\": 1}", "scripts.a.colour",
            "unknown key");
}

/* The twin tells its host when it ignored a document as stale. */
static void test_stale_signal(void **state)
{
    (void)state;
    static const char *const layers[] = {"device"};
    char *err = NULL;
    lume_twin *t = lume_twin_open(NULL, layers, 1, &err);
    assert_non_null(t);
    int64_t got, held;
    const char *v6 = "{\"$version\":6,\"a\":1}", *v1 = "{\"$version\":1,\"a\":2}";
    assert_int_equal(lume_twin_set_layer(t, "device", v6, strlen(v6), &err), 1);
    assert_false(lume_twin_was_stale(t, &got, &held));
    assert_int_equal(lume_twin_set_layer(t, "device", v1, strlen(v1), &err), 0);
    assert_null(err);
    assert_true(lume_twin_was_stale(t, &got, &held));
    assert_int_equal(got, 1);
    assert_int_equal(held, 6);
    assert_int_equal(lume_twin_set_layer(t, "device", v6, strlen(v6), &err), 0); /* same */
    assert_false(lume_twin_was_stale(t, &got, &held));
    lume_twin_close(t);
}

/* A bundle under scripts is replaced whole, as the device merges layers. */
static void test_merge_layer(void **state)
{
    (void)state;
    cJSON *doc = cJSON_Parse("{\"scripts\":{\"a\":{\"version\":1,\"url\":\"u\",\"sha256\":\"s\"}},"
                             "\"sensors\":{\"t\":1,\"h\":2}}");
    cJSON *patch = cJSON_Parse("{\"scripts\":{\"a\":{\"version\":2,\"source\":\"x\"}},"
                               "\"sensors\":{\"h\":null}}");
    assert_int_equal(lume_twin_merge_layer(doc, patch), 0);
    cJSON *want = cJSON_Parse("{\"scripts\":{\"a\":{\"version\":2,\"source\":\"x\"}},"
                              "\"sensors\":{\"t\":1}}");
    assert_true(cJSON_Compare(doc, want, 1));
    assert_int_equal(lume_twin_merge_layer(doc, cJSON_GetObjectItem(cJSON_GetObjectItem(want, "sensors"), "t")), -EINVAL);
    cJSON_Delete(doc);
    cJSON_Delete(patch);
    cJSON_Delete(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_stale_signal),
        cmocka_unit_test(test_merge_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
