/* tests/unit/test_hub.c — the hub dialect interface (core/hub/hub.h) and the
 * mqtt dialect behind it: the same topics lume always used, every one of
 * them coming from the dialect. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hub.h"
#include "net.h"

static void config(lume_config *c, const char *groups)
{
    assert_int_equal(lume_config_init(c), 0);
    free(c->device_id);
    c->device_id = strdup("pump-7");
    free(c->twin.groups);
    c->twin.groups = groups ? strdup(groups) : NULL;
}

static void test_layers_and_subscriptions(void **state)
{
    (void)state;
    lume_config c;
    config(&c, "fleet,site-a");
    char *err = NULL;
    lume_hub *h = lume_hub_new(&c, &err);
    assert_non_null(h);
    assert_string_equal(lume_hub_name(h), "mqtt");
    const char *const *layers;
    assert_int_equal(lume_hub_layers(h, &layers), 3);
    assert_string_equal(layers[0], "group:fleet");
    assert_string_equal(layers[1], "group:site-a");
    assert_string_equal(layers[2], "device");
    const char *const *subs;
    const int *qos;
    assert_int_equal(lume_hub_subscriptions(h, &subs, &qos), 3);
    assert_string_equal(subs[0], "lume/groups/fleet/desired");
    assert_string_equal(subs[2], "lume/pump-7/desired");
    assert_int_equal(qos[2], 1);
    lume_hub_free(h);
    lume_config_free(&c);
}

static void test_classify(void **state)
{
    (void)state;
    lume_config c;
    config(&c, "fleet");
    lume_hub *h = lume_hub_new(&c, NULL);
    lume_hub_in in;
    lume_hub_classify(h, "lume/pump-7/desired", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_DESIRED);
    assert_int_equal(in.layer, 1);
    lume_hub_classify(h, "lume/groups/fleet/desired", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_DESIRED);
    assert_int_equal(in.layer, 0);
    /* anything else is a script's: another device's, another group's, commands */
    const char *others[] = {"lume/pump-8/desired", "lume/groups/site-b/desired",
                            "lume/pump-7/cmd/valve", "lume/pump-7/desired/x", ""};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        lume_hub_classify(h, others[i], &in);
        assert_int_equal(in.kind, LUME_HUB_IN_NONE);
    }
    lume_hub_classify(h, NULL, &in);
    assert_int_equal(in.kind, LUME_HUB_IN_NONE);
    lume_hub_free(h);
    lume_config_free(&c);
}

static void test_outgoing(void **state)
{
    (void)state;
    lume_config c;
    config(&c, NULL);
    lume_hub *h = lume_hub_new(&c, NULL);
    char buf[64];
    assert_int_equal(lume_hub_telemetry_topic(h, "env", 3, NULL, 0, buf, sizeof buf),
                     strlen("lume/pump-7/telemetry/env"));
    assert_string_equal(buf, "lume/pump-7/telemetry/env");
    /* too long for the buffer: 0 and an empty string, never a cut topic */
    assert_int_equal(lume_hub_telemetry_topic(h, "a-very-long-route-name-indeed", 29, NULL, 0,
                                              buf, 30), 0);
    assert_string_equal(buf, "");
    /* MQTT 3.1.1 has no message properties: the link's mode is not carried */
    char stamped[64];
    assert_int_equal(lume_hub_stamp(h, "lume/pump-7/telemetry/env", "lume-conn", "intermittent",
                                    stamped, sizeof stamped), 0);
    assert_string_equal(stamped, "");
    lume_hub_out out;
    assert_int_equal(lume_hub_reported(h, &out), 0);
    assert_string_equal(out.topic, "lume/pump-7/reported");
    assert_true(out.state);
    assert_true(out.retain);
    assert_int_equal(out.qos, 1);
    assert_int_equal(lume_hub_health(h, &out), 0);
    assert_string_equal(out.topic, "lume/pump-7/health");
    assert_true(out.retain); /* the latest heartbeat: when a device was last heard from */
    assert_int_equal(lume_hub_logs(h, &out, false), 0);   /* remote logs: a stream ... */
    assert_string_equal(out.topic, "lume/pump-7/logs");
    assert_int_equal(out.qos, 0);
    assert_false(out.retain);
    assert_int_equal(lume_hub_logs(h, &out, true), 0);    /* ... and its last lines kept */
    assert_string_equal(out.topic, "lume/pump-7/logs/recent");
    assert_true(out.retain);
    assert_true(out.state);
    lume_hub_out req[4];
    assert_int_equal(lume_hub_connected(h, req, 4), 0); /* retained layers need no request */
    lume_mqtt_opts o;
    lume_mqtt_opts_default(&o);
    assert_int_equal(lume_hub_session(h, &o, NULL), 0);
    assert_string_equal(o.client_id, "pump-7");
    assert_string_equal(o.status_topic, "lume/pump-7/status");
    lume_hub_free(h);
    lume_config_free(&c);
}

static void test_operator_topics(void **state)
{
    (void)state;
    lume_config c;
    config(&c, NULL);
    char buf[128];
    assert_true(lume_hub_operator_topic(&c, LUME_HUB_DEVICE_DESIRED, "d1", buf, sizeof buf) > 0);
    assert_string_equal(buf, "lume/d1/desired");
    lume_hub_operator_topic(&c, LUME_HUB_DEVICE_REPORTED, "d1", buf, sizeof buf);
    assert_string_equal(buf, "lume/d1/reported");
    lume_hub_operator_topic(&c, LUME_HUB_GROUP_DESIRED, "ring-1", buf, sizeof buf);
    assert_string_equal(buf, "lume/groups/ring-1/desired");
    lume_hub_operator_topic(&c, LUME_HUB_ALL_REPORTED, NULL, buf, sizeof buf);
    assert_string_equal(buf, "lume/+/reported");
    lume_hub_operator_topic(&c, LUME_HUB_DEVICE_LOGS, "d1", buf, sizeof buf);
    assert_string_equal(buf, "lume/d1/logs");
    lume_hub_operator_topic(&c, LUME_HUB_DEVICE_LOGS_RECENT, "d1", buf, sizeof buf);
    assert_string_equal(buf, "lume/d1/logs/recent");
    assert_int_equal(lume_hub_reported_device(&c, "lume/d1/reported", buf, sizeof buf), 0);
    assert_string_equal(buf, "d1");
    assert_int_equal(lume_hub_reported_device(&c, "lume/d1/desired", buf, sizeof buf), -EINVAL);
    assert_int_equal(lume_hub_reported_device(&c, "lume/a/b/reported", buf, sizeof buf),
                     -EINVAL);
    lume_config_free(&c);
}

static void test_unknown_dialect(void **state)
{
    (void)state;
    lume_config c;
    config(&c, NULL);
    lume_config_value v = {.kind = LUME_CV_STRING, .str = "aws"};
    char *err = NULL;
    assert_int_equal(lume_config_set(&c, "net.dialect", &v, &err), 0);
    assert_int_not_equal(lume_config_check(&c, &err), 0);
#ifdef LUME_NO_AZURE
    assert_non_null(strstr(err, "net.dialect: no dialect named \"aws\" (there are: mqtt)"));
#else
    assert_non_null(strstr(err, "net.dialect: no dialect named \"aws\" (there are: mqtt, azure)"));
#endif
    free(err);
    err = NULL;
    assert_null(lume_hub_new(&c, &err));
    assert_non_null(strstr(err, "no dialect named \"aws\""));
    free(err);
    lume_config_free(&c);
}

/* The build options of the Makefile (LUME_NO_AZURE, LUME_NO_WS): a config
 * that asks for what was left out is refused at the check, naming the
 * option; a full build accepts the same config. */
static void test_left_out(void **state)
{
    (void)state;
    lume_config c;
    config(&c, NULL);
    char *err = NULL;
    lume_config_value az = {.kind = LUME_CV_STRING, .str = "azure"};
    assert_int_equal(lume_config_set(&c, "net.dialect", &az, &err), 0);
#ifdef LUME_NO_AZURE
    assert_int_not_equal(lume_config_check(&c, &err), 0);
    assert_string_equal(err, "net.dialect: this lume was built without the azure dialect "
                             "(LUME_NO_AZURE)");
    free(err);
    err = NULL;
    assert_false(lume_hub_known("azure"));
    /* DPS implies the azure dialect: refused when the hub is made */
    lume_config_value mq = {.kind = LUME_CV_STRING, .str = "mqtt"}, scope = {
        .kind = LUME_CV_STRING, .str = "0ne0001"};
    assert_int_equal(lume_config_set(&c, "net.dialect", &mq, &err), 0);
    assert_int_equal(lume_config_set(&c, "net.dps.id_scope", &scope, &err), 0);
    free(c.net.dialect);
    c.net.dialect = NULL;
    assert_null(lume_hub_new(&c, &err));
    assert_non_null(strstr(err, "built without the azure dialect (LUME_NO_AZURE)"));
    free(err);
    err = NULL;
#else
    assert_int_equal(lume_config_check(&c, &err), 0);
    assert_true(lume_hub_known("azure"));
#endif
    lume_config_free(&c);

    config(&c, NULL);
    lume_config_value ws = {.kind = LUME_CV_STRING, .str = "ws://127.0.0.1:9001/mqtt"};
    assert_int_equal(lume_config_set(&c, "net.url", &ws, &err), 0);
    lume_url u;
#ifdef LUME_NO_WS
    assert_int_not_equal(lume_config_check(&c, &err), 0);
    assert_string_equal(err, "net.url \"ws://127.0.0.1:9001/mqtt\": this lume was built without "
                             "WebSockets (LUME_NO_WS): use mqtt:// or mqtts://");
    free(err);
    err = NULL;
    assert_int_equal(lume_url_parse("wss://h/mqtt", &u, &err), -ENOTSUP);
    assert_non_null(strstr(err, "broker url 'wss://h/mqtt': this lume was built without WebSockets"));
    free(err);
    err = NULL;
#else
    assert_int_equal(lume_config_check(&c, &err), 0);
    assert_int_equal(lume_url_parse("wss://h/mqtt", &u, &err), 0);
    assert_true(u.ws && u.tls);
#endif
    lume_config_free(&c);

    /* the web console: console.listen is what `--console` sets */
    config(&c, NULL);
    lume_config_value listen = {.kind = LUME_CV_STRING, .str = "127.0.0.1:8080"};
    assert_int_equal(lume_config_set(&c, "console.listen", &listen, &err), 0);
#ifdef LUME_NO_CONSOLE
    assert_int_equal(lume_config_check(&c, &err), -EINVAL);
    assert_string_equal(err, "console.listen: this lume was built without the web console "
                             "(LUME_NO_CONSOLE)");
    free(err);
    err = NULL;
#else
    assert_int_equal(lume_config_check(&c, &err), 0);
#endif
    lume_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layers_and_subscriptions),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_outgoing),
        cmocka_unit_test(test_operator_topics),
        cmocka_unit_test(test_unknown_dialect),
        cmocka_unit_test(test_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
