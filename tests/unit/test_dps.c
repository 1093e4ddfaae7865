/* tests/unit/test_dps.c — DPS (core/hub/dps.c): a group enrollment's device
 * key against vectors computed independently (python3's hmac, fixed below,
 * and the openssl CLI at test time), which key the config yields, where an
 * assigned hub is reached, the azure dialect following an assignment, and
 * the assignment kept in a real state store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dps.h"
#include "hub.h"
#include "kv.h"

#define GROUP "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yT/UkQW7+VyQmN/vg=="

/* python3: b64(hmac.new(b64dec(GROUP), reg.encode(), sha256).digest()) */
static void test_derived_key_reference_vector(void **state)
{
    (void)state;
    char k[64];
    assert_int_equal(lume_dps_derive_key(GROUP, "sn-007-888-abc-mac-a1-b2-c3", k, sizeof k), 44);
    assert_string_equal(k, "sdCoZND+oZoWNxFTm2UHIXx7dEXZoA0tcAIcR93QMf0=");
    assert_int_equal(lume_dps_derive_key(GROUP, "dev-grp", k, sizeof k), 44);
    assert_string_equal(k, "1l3uHLQ1RKAM6D8DdHKW4xJUuqtKGrzrTbWsTOKHbhg=");
    assert_int_equal(lume_dps_derive_key("not base64!", "dev-grp", k, sizeof k), -EINVAL);
    assert_int_equal(lume_dps_derive_key(GROUP, "dev-grp", k, 20), -ENOSPC);
}

/* The same with the openssl CLI, for another registration id. */
static void test_derived_key_matches_openssl(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "printf '%%s' 'pump-42' | openssl dgst -sha256 -mac HMAC -macopt "
             "hexkey:$(printf '%%s' '%s' | base64 -d | od -An -tx1 | tr -d ' \\n') -binary "
             "| base64", GROUP);
    FILE *p = popen(cmd, "r");
    if (!p)
        skip();
    char want[128] = "";
    if (!fgets(want, sizeof want, p)) {
        pclose(p);
        skip();
    }
    pclose(p);
    want[strcspn(want, "\n")] = 0;
    char k[64];
    assert_true(lume_dps_derive_key(GROUP, "pump-42", k, sizeof k) > 0);
    assert_string_equal(k, want);
}

static void config(lume_config *c)
{
    assert_int_equal(lume_config_init(c), 0);
    free(c->device_id);
    c->device_id = strdup("dev-grp");
    c->net.dps.id_scope = strdup("0ne00000A0A");
}

static void test_device_key_from_config(void **state)
{
    (void)state;
    lume_config c;
    config(&c);
    char k[128], *err = NULL;
    assert_true(lume_dps_configured(&c));
    /* nothing: the error names what would do */
    assert_int_equal(lume_dps_device_key(&c, k, sizeof k, &err), -EINVAL);
    assert_non_null(strstr(err, "net.dps.group_key"));
    free(err), err = NULL;
    c.net.dps.group_key = strdup(GROUP);
    assert_int_equal(lume_dps_device_key(&c, k, sizeof k, &err), 0);
    assert_string_equal(k, "1l3uHLQ1RKAM6D8DdHKW4xJUuqtKGrzrTbWsTOKHbhg=");
    /* two credentials: refused, naming them */
    c.net.dps.symmetric_key = strdup("c2VjcmV0");
    assert_int_equal(lume_dps_device_key(&c, k, sizeof k, &err), -EINVAL);
    assert_non_null(strstr(err, "not 2 of them"));
    free(err), err = NULL;
    free(c.net.dps.group_key), c.net.dps.group_key = NULL;
    assert_int_equal(lume_dps_device_key(&c, k, sizeof k, &err), 0);
    assert_string_equal(k, "c2VjcmV0");
    free(c.net.dps.symmetric_key), c.net.dps.symmetric_key = strdup("%%%");
    assert_int_equal(lume_dps_device_key(&c, k, sizeof k, &err), -EINVAL);
    assert_string_equal(err, "net.dps.symmetric_key: the enrollment key is not base64");
    free(err), err = NULL;
    free(c.net.dps.symmetric_key), c.net.dps.symmetric_key = NULL;
    c.net.cert_file = strdup("dev.pem"); /* X.509: no key */
    assert_int_equal(lume_dps_device_key(&c, k, sizeof k, &err), 1);
    lume_config_free(&c);
}

static void test_hub_url(void **state)
{
    (void)state;
    lume_config c;
    config(&c);
    char u[256];
    assert_int_equal(lume_dps_hub_url(&c, "hub-a.azure-devices.net", u, sizeof u), 0);
    assert_string_equal(u, "mqtts://hub-a.azure-devices.net:8883");
    c.net.url = strdup("wss://x:443/$iothub/websocket"); /* scheme, port and path */
    assert_int_equal(lume_dps_hub_url(&c, "hub-a.azure-devices.net", u, sizeof u), 0);
    assert_string_equal(u, "wss://hub-a.azure-devices.net:443/$iothub/websocket");
    free(c.net.url), c.net.url = NULL;
    lume_config_value v = {.kind = LUME_CV_STRING,
                           .str = "hub-b.azure-devices.net=10.1.2.3:8883,"
                                  "hub-a.azure-devices.net=mqtt://127.0.0.1:1883"};
    char *err = NULL;
    assert_int_equal(lume_config_set(&c, "net.dps.resolve", &v, &err), 0);
    assert_int_equal(lume_dps_hub_url(&c, "hub-a.azure-devices.net", u, sizeof u), 0);
    assert_string_equal(u, "mqtt://127.0.0.1:1883");
    assert_int_equal(lume_dps_hub_url(&c, "hub-b.azure-devices.net", u, sizeof u), 0);
    assert_string_equal(u, "mqtts://10.1.2.3:8883");
    v.str = "hub-a.azure-devices.net";
    assert_int_equal(lume_config_set(&c, "net.dps.resolve", &v, &err), -EINVAL);
    assert_non_null(strstr(err, "is not \"hub host=address:port\""));
    free(err);
    lume_config_free(&c);
}

/* The dialect starts with the registration id and follows an assignment:
 * client id, user name, token resource, cloud-to-device subscription. */
static void test_dialect_follows_assignment(void **state)
{
    (void)state;
    lume_config c;
    config(&c);
    c.net.dps.group_key = strdup(GROUP);
    char *err = NULL;
    lume_hub *h = lume_hub_new(&c, &err);
    assert_non_null(h);
    assert_string_equal(lume_hub_name(h), "azure"); /* net.dps implies it */
    assert_int_equal(lume_hub_azure_assign(h, "hub-b.azure-devices.net", "pump-9", &err), 0);
    lume_mqtt_opts o = {0};
    assert_int_equal(lume_hub_session(h, &o, &err), 0);
    assert_string_equal(o.client_id, "pump-9");
    assert_string_equal(o.username, "hub-b.azure-devices.net/pump-9/?api-version=2021-04-12");
    assert_non_null(strstr(o.password, "sr=hub-b.azure-devices.net%2Fdevices%2Fpump-9&"));
    const char *const *f;
    const int *q;
    size_t n = lume_hub_subscriptions(h, &f, &q);
    bool bound = false;
    for (size_t i = 0; i < n; i++)
        bound |= !strcmp(f[i], "devices/pump-9/messages/devicebound/#");
    assert_true(bound);
    lume_hub_free(h);
    /* DPS with another dialect: refused, naming both */
    c.net.dialect = strdup("mqtt");
    assert_null(lume_hub_new(&c, &err));
    assert_non_null(strstr(err, "net.dialect is \"mqtt\""));
    free(err);
    lume_config_free(&c);
}

static void test_assignment_stored(void **state)
{
    (void)state;
    char dir[] = "/tmp/lume-dps-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/state.db", dir);
    char *err = NULL;
    lume_kv *kv = lume_kv_open(path, &err);
    assert_non_null(kv);
    lume_config c;
    config(&c);
    lume_dps_assignment a = {.hub = "hub-a.azure-devices.net", .device_id = "dev-grp",
                             .status = "assigned", .substatus = "initialAssignment"}, b;
    assert_int_equal(lume_dps_load(kv, &c, &b), -ENOENT);
    assert_int_equal(lume_dps_save(kv, &c, &a), 0);
    lume_kv_close(kv);
    kv = lume_kv_open(path, &err); /* a restart */
    assert_int_equal(lume_dps_load(kv, &c, &b), 0);
    assert_string_equal(b.hub, "hub-a.azure-devices.net");
    assert_string_equal(b.device_id, "dev-grp");
    assert_string_equal(b.substatus, "initialAssignment");
    /* another id scope: not this one's */
    free(c.net.dps.id_scope), c.net.dps.id_scope = strdup("0ne00000B0B");
    assert_int_equal(lume_dps_load(kv, &c, &b), -ENOENT);
    free(c.net.dps.id_scope), c.net.dps.id_scope = strdup("0ne00000A0A");
    assert_int_equal(lume_dps_forget(kv, &c), 0);
    assert_int_equal(lume_dps_load(kv, &c, &b), -ENOENT);
    lume_kv_close(kv);
    lume_config_free(&c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derived_key_reference_vector),
        cmocka_unit_test(test_derived_key_matches_openssl),
        cmocka_unit_test(test_device_key_from_config),
        cmocka_unit_test(test_hub_url),
        cmocka_unit_test(test_dialect_follows_assignment),
        cmocka_unit_test(test_assignment_stored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
