/* tests/unit/test_hub_azure.c — the azure dialect (core/hub/hub_azure.c):
 * SAS tokens against vectors computed independently (python3's hmac, and
 * the openssl CLI at test time), the session's names, what arrives, what
 * leaves, the reported document's limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "hub.h"

#define KEY "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3OA=="

static void config(lume_config *c, const char *cs)
{
    assert_int_equal(lume_config_init(c), 0);
    free(c->device_id);
    c->device_id = strdup("dev-1");
    c->net.dialect = strdup("azure");
    c->net.url = strdup("mqtts://myhub.azure-devices.net:8883");
    if (cs)
        c->net.connection_string = strdup(cs);
}

/* python3: sr = quote(res, safe=''); sig = b64(hmac(b64dec(KEY), sr+"\n"+se, sha256)) */
static void test_sas_reference_vector(void **state)
{
    (void)state;
    char tok[1024];
    int n = lume_hub_azure_sas("myhub.azure-devices.net/devices/dev-1", KEY, 1767225600, tok,
                               sizeof tok);
    assert_true(n > 0);
    assert_string_equal(tok, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1"
                             "&sig=q0rcFZiOAQrCl8POFYxOFmswLZnLB1XkU2uywBXnEcg%3D&se=1767225600");
    assert_int_equal(lume_hub_azure_sas("x", "not base64!", 1, tok, sizeof tok), -EINVAL);
    assert_int_equal(lume_hub_azure_sas("x", KEY, 1, tok, 20), -ENOSPC);
}

/* The same with the openssl CLI, for another resource and expiry. */
static void test_sas_matches_openssl(void **state)
{
    (void)state;
    const char *sr = "other.azure-devices.net%2Fdevices%2Fpump-7%2Fmodules%2Fedge";
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "printf '%%s\\n%%s' '%s' 1900000000 | openssl dgst -sha256 -mac HMAC -macopt "
             "hexkey:$(printf '%%s' '%s' | base64 -d | od -An -tx1 | tr -d ' \\n') -binary "
             "| base64", sr, KEY);
    FILE *p = popen(cmd, "r");
    if (!p)
        skip();
    char sig[128] = "";
    if (!fgets(sig, sizeof sig, p)) {
        pclose(p);
        skip();
    }
    pclose(p);
    sig[strcspn(sig, "\n")] = 0;
    char enc[256], want[1024], tok[1024];
    lume_hub_urlencode(sig, strlen(sig), enc, sizeof enc);
    snprintf(want, sizeof want, "SharedAccessSignature sr=%s&sig=%s&se=1900000000", sr, enc);
    assert_true(lume_hub_azure_sas("other.azure-devices.net/devices/pump-7/modules/edge", KEY,
                                   1900000000, tok, sizeof tok) > 0);
    assert_string_equal(tok, want);
}

static void test_session_from_connection_string(void **state)
{
    (void)state;
    lume_config c;
    config(&c, "HostName=myhub.azure-devices.net;DeviceId=dev-1;SharedAccessKey=" KEY);
    c.net.model_id = strdup("dtmi:com:example:Thermostat;1");
    c.net.sas_ttl_s = 10;
    char *err = NULL;
    lume_hub *h = lume_hub_new(&c, &err);
    assert_non_null(h);
    assert_string_equal(lume_hub_name(h), "azure");
    lume_mqtt_opts o = {0};
    assert_int_equal(lume_hub_session(h, &o, &err), 0);
    assert_string_equal(o.client_id, "dev-1");
    assert_string_equal(o.username, "myhub.azure-devices.net/dev-1/?api-version=2021-04-12"
                                    "&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1");
    assert_null(o.status_topic);
    assert_non_null(o.password);
    assert_true(!strncmp(o.password, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices"
                                     "%2Fdev-1&sig=", 66));
    int64_t renew = 0;
    const char *pw = lume_hub_password(h, &renew);
    assert_non_null(pw);
    assert_true(renew > 7200 && renew <= 8000); /* 80 % of what is left of 10 s (9..10 s) */
    long long se = atoll(strstr(pw, "&se=") + 4);
    long long now = (long long)time(NULL);
    assert_true(se >= now + 9 && se <= now + 11);
    const char *const *layers;
    assert_int_equal(lume_hub_layers(h, &layers), 1);
    assert_string_equal(layers[0], "device");
    const char *const *subs;
    const int *qos;
    size_t n = lume_hub_subscriptions(h, &subs, &qos);
    assert_int_equal(n, 4);
    assert_string_equal(subs[0], "$iothub/twin/res/#");
    assert_string_equal(subs[1], "$iothub/twin/PATCH/properties/desired/#");
    assert_string_equal(subs[2], "$iothub/methods/POST/#");
    assert_string_equal(subs[3], "devices/dev-1/messages/devicebound/#");
    lume_hub_free(h);
    lume_config_free(&c);
}

static void test_credentials_checked(void **state)
{
    (void)state;
    lume_config c;
    config(&c, NULL);
    char *err = NULL;
    assert_null(lume_hub_new(&c, &err)); /* no key, no certificate */
    assert_non_null(strstr(err, "net.sas_key_file"));
    free(err);
    err = NULL;
    c.net.sas_key = strdup("%%%not-base64");
    assert_null(lume_hub_new(&c, &err));
    assert_non_null(strstr(err, "net.sas_key: the shared access key is not base64"));
    free(err);
    err = NULL;
    free(c.net.sas_key);
    c.net.sas_key = NULL;
    c.net.cert_file = strdup("dev.crt"); /* X.509: no password */
    c.net.key_file = strdup("dev.key");
    c.net.module_id = strdup("edge");
    lume_hub *h = lume_hub_new(&c, &err);
    assert_non_null(h);
    lume_mqtt_opts o = {0};
    assert_int_equal(lume_hub_session(h, &o, &err), 0);
    assert_null(o.password);
    assert_string_equal(o.client_id, "dev-1/edge");
    assert_string_equal(o.username, "myhub.azure-devices.net/dev-1/edge/?api-version=2021-04-12");
    lume_hub_free(h);
    lume_config_free(&c);
}

static void test_classify_and_outgoing(void **state)
{
    (void)state;
    lume_config c;
    config(&c, "HostName=myhub.azure-devices.net;DeviceId=dev-1;SharedAccessKey=" KEY);
    char *err = NULL;
    lume_hub *h = lume_hub_new(&c, &err);
    assert_non_null(h);
    lume_hub_in in;
    lume_hub_classify(h, "$iothub/twin/res/204/?$rid=7&$version=12", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_TWIN_RESPONSE);
    assert_int_equal(in.status, 204);
    assert_string_equal(in.rid, "7");
    assert_int_equal(in.version, 12);
    lume_hub_classify(h, "$iothub/twin/PATCH/properties/desired/?$version=5", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_DESIRED_PATCH);
    assert_int_equal(in.layer, 0);
    assert_int_equal(in.version, 5);
    lume_hub_classify(h, "$iothub/methods/POST/reboot/?$rid=abc", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_METHOD);
    assert_string_equal(in.name, "reboot");
    assert_string_equal(in.rid, "abc");
    lume_hub_classify(h, "devices/dev-1/messages/devicebound/%24.to=%2Fdevices&k=v", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_C2D);
    assert_string_equal(in.props, "%24.to=%2Fdevices&k=v");
    lume_hub_classify(h, "devices/dev-2/messages/devicebound/", &in);
    assert_int_equal(in.kind, LUME_HUB_IN_NONE);

    char topic[1024];
    lume_hub_prop props[] = {{"site", "a b"}, {"k&", "v=1"}};
    size_t n = lume_hub_telemetry_topic(h, "temp/avg", 8, props, 2, topic, sizeof topic);
    assert_true(n > 0);
    assert_string_equal(topic, "devices/dev-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
                               "&route=temp%2Favg&t=mqtt&site=a%20b&k%26=v%3D1");
    /* the link's mode, added at the end of the bag as the message leaves */
    char stamped[1024];
    assert_true(lume_hub_stamp(h, topic, "lume-conn", "intermittent", stamped, sizeof stamped) > 0);
    assert_string_equal(stamped, "devices/dev-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
                                 "&route=temp%2Favg&t=mqtt&site=a%20b&k%26=v%3D1"
                                 "&lume-conn=intermittent");
    assert_int_equal(lume_hub_stamp(h, "$iothub/twin/GET/?$rid=1", "lume-conn", "x", stamped,
                                    sizeof stamped), 0);        /* not telemetry */
    assert_int_equal(lume_hub_stamp(h, topic, "lume-conn", "persistent", stamped,
                                    strlen(topic) + 5), 0);     /* does not fit */
    assert_string_equal(stamped, "");
    assert_int_equal(lume_hub_telemetry_topic(h, "temp", 4, props, 2, topic, 40), 0);

    lume_hub_out out;
    assert_int_equal(lume_hub_reported(h, &out), 0);
    assert_false(out.state);
    assert_false(out.retain);
    assert_int_equal(out.qos, 1);              /* a request with QoS 1, PUBACKed */
    char want[128];
    snprintf(want, sizeof want, "$iothub/twin/PATCH/properties/reported/?$rid=%s", out.rid);
    assert_string_equal(out.topic, want);
    lume_hub_out get[2];
    assert_int_equal(lume_hub_connected(h, get, 2), 1);
    assert_true(strcmp(get[0].rid, out.rid) != 0);      /* ids are never reused */
    snprintf(want, sizeof want, "$iothub/twin/GET/?$rid=%s", get[0].rid);
    assert_string_equal(get[0].topic, want);
    assert_int_equal(lume_hub_method_response(h, 404, "abc", &out), 0);
    assert_string_equal(out.topic, "$iothub/methods/res/404/?$rid=abc");
    assert_int_equal(lume_hub_operator_topic(&c, LUME_HUB_DEVICE_DESIRED, "dev-1", topic,
                                             sizeof topic), 0);
    /* remote log lines: telemetry on their own route, marked; nothing retained */
    assert_int_equal(lume_hub_logs(h, &out, false), 0);
    assert_string_equal(out.topic, "devices/dev-1/messages/events/$.ct=application%2Fjson"
                                   "&$.ce=utf-8&route=lume-log&t=mqtt&lume-kind=log");
    assert_int_equal(out.qos, 0);
    assert_int_equal(lume_hub_logs(h, &out, true), -ENOENT);
    assert_int_equal(lume_hub_operator_topic(&c, LUME_HUB_DEVICE_LOGS, "dev-1", topic,
                                             sizeof topic), 0);
    lume_hub_free(h);
    lume_config_free(&c);
}

static void test_reported_limits(void **state)
{
    (void)state;
    lume_config c;
    config(&c, "HostName=h;DeviceId=dev-1;SharedAccessKey=" KEY);
    char *err = NULL;
    lume_hub *h = lume_hub_new(&c, &err);
    assert_non_null(h);
    char why[512];
    const char *ok = "{\"sensors\":{\"temp\":{\"rate\":2}},\"lume\":{\"version\":\"1\"}}";
    assert_int_equal(lume_hub_check_reported(h, ok, strlen(ok), why, sizeof why), 0);
    const char *dot = "{\"sensors\":{\"temp.c\":1}}";
    assert_int_equal(lume_hub_check_reported(h, dot, strlen(dot), why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "\"temp.c\" (at sensors.temp.c)"));
    const char *dollar = "{\"$x\":1}";
    assert_int_equal(lume_hub_check_reported(h, dollar, strlen(dollar), why, sizeof why), -EINVAL);
    const char *space = "{\"a b\":1}";
    assert_int_equal(lume_hub_check_reported(h, space, strlen(space), why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "a space"));
    size_t big = 33 * 1024;
    char *doc = malloc(big + 16);
    snprintf(doc, big + 16, "{\"x\":\"%0*d\"}", (int)big, 0);
    assert_int_equal(lume_hub_check_reported(h, doc, strlen(doc), why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "32 KiB"));
    free(doc);
    /* string values at most 4 KiB: 4096 bytes pass, 4097 do not */
    doc = malloc(5000);
    snprintf(doc, 5000, "{\"a\":{\"s\":\"%0*d\"}}", 4096, 0);
    assert_int_equal(lume_hub_check_reported(h, doc, strlen(doc), why, sizeof why), 0);
    snprintf(doc, 5000, "{\"a\":{\"s\":\"%0*d\"}}", 4097, 0);
    assert_int_equal(lume_hub_check_reported(h, doc, strlen(doc), why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "at a.s is a string of 4097 bytes"));
    /* keys at most 1 KiB */
    snprintf(doc, 5000, "{\"%0*d\":1}", 1025, 0);
    assert_int_equal(lume_hub_check_reported(h, doc, strlen(doc), why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "1025 bytes long"));
    free(doc);
    /* objects at most 10 below the section: {"l1":{ ... "l10":{"v":1}}}
     * (the value of l10 is the 10th) passes, one more level does not,
     * naming the path of the object too deep */
    char deep[512];
    for (int levels = 10; levels <= 11; levels++) {
        char *w = deep;
        for (int i = 1; i <= levels; i++)
            w += sprintf(w, "{\"l%d\":", i);
        w += sprintf(w, "{\"v\":1}");
        for (int i = 1; i <= levels; i++)
            *w++ = '}';
        *w = 0;
        int r = lume_hub_check_reported(h, deep, strlen(deep), why, sizeof why);
        assert_int_equal(r, levels == 10 ? 0 : -EINVAL);
    }
    assert_non_null(strstr(why, "reported object at l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11 is "
                                "nested deeper than 10"));
    lume_hub_free(h);
    lume_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sas_reference_vector),
        cmocka_unit_test(test_sas_matches_openssl),
        cmocka_unit_test(test_session_from_connection_string),
        cmocka_unit_test(test_credentials_checked),
        cmocka_unit_test(test_classify_and_outgoing),
        cmocka_unit_test(test_reported_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
