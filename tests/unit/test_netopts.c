/* tests/unit/test_netopts.c — lume_mqtt_opts_from_config, the one mapping
 * of the net.* settings to session options that `lume run` (l_net.c) and
 * every operator command (ops.c) use: each setting lands in its option,
 * and no net.* key of the config table is left out (a key added to the
 * config later fails here until it is mapped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "l_net.h"
#include "config.h"
#include "mqtt.h"
#include "log.h"

static void test_every_field(void **state)
{
    (void)state;
    lume_config c;
    assert_int_equal(lume_config_init(&c), 0);
    lume_config keep = c; /* the strings set below are not the config's to free */
    c.net.url = "mqtts://broker:8883";
    c.net.client_id = "client-7";
    c.net.username = "user";
    c.net.password = "secret";
    c.net.ca_file = "/ca.pem";
    c.net.cert_file = "/cert.pem";
    c.net.key_file = "/key.pem";
    c.net.server_name = "broker.example";
    c.net.tls_min_version = "1.3";
    c.net.ciphers = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256";
    c.net.tls_insecure = true;
    c.net.keepalive_s = 11;
    c.net.window = 12;
    c.net.backoff_min_ms = 13;
    c.net.backoff_max_ms = 14;
    c.net.stable_ms = 15;
    c.net.connect_timeout_ms = 16;
    c.net.max_packet = 17;
    c.net.clean_session = true;
    lume_mqtt_opts o;
    memset(&o, 0xa5, sizeof o);
    lume_mqtt_opts_from_config(&c, &o);
    assert_string_equal(o.url, "mqtts://broker:8883");
    assert_string_equal(o.client_id, "client-7");
    assert_string_equal(o.username, "user");
    assert_string_equal(o.password, "secret");
    assert_string_equal(o.tls.ca_file, "/ca.pem");
    assert_string_equal(o.tls.cert_file, "/cert.pem");
    assert_string_equal(o.tls.key_file, "/key.pem");
    assert_string_equal(o.tls.server_name, "broker.example");
    assert_string_equal(o.tls.min_version, "1.3");
    assert_string_equal(o.tls.ciphers, "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256");
    assert_true(o.tls.insecure);
    assert_int_equal(o.keepalive_s, 11);
    assert_int_equal(o.window, 12);
    assert_int_equal(o.backoff_min_ms, 13);
    assert_int_equal(o.backoff_max_ms, 14);
    assert_int_equal(o.stable_ms, 15);
    assert_int_equal(o.connect_timeout_ms, 16);
    assert_int_equal(o.max_packet, 17);
    assert_true(o.clean_session);
    assert_null(o.status_topic); /* the caller's (it names a topic) */
    lume_config_free(&keep);
}

static void test_defaults(void **state)
{
    (void)state;
    lume_config c;
    assert_int_equal(lume_config_init(&c), 0);
    lume_mqtt_opts o, d;
    lume_mqtt_opts_from_config(&c, &o);
    lume_mqtt_opts_default(&d);
    /* the config's defaults are the session's */
    assert_int_equal(o.keepalive_s, d.keepalive_s);
    assert_int_equal(o.window, d.window);
    assert_int_equal(o.backoff_min_ms, d.backoff_min_ms);
    assert_int_equal(o.backoff_max_ms, d.backoff_max_ms);
    assert_int_equal(o.stable_ms, d.stable_ms);
    assert_int_equal(o.connect_timeout_ms, d.connect_timeout_ms);
    assert_int_equal(o.max_packet, d.max_packet);
    assert_int_equal(o.clean_session, d.clean_session);
    assert_null(o.tls.min_version);
    assert_null(o.tls.ciphers);
    assert_string_equal(o.client_id, c.device_id); /* net.client_id's default */
    lume_config_free(&c);
}

/* Every net.* key of the config table changes the options when its value
 * changes. */
static void test_no_key_left_out(void **state)
{
    (void)state;
    lume_config c;
    assert_int_equal(lume_config_init(&c), 0);
    lume_mqtt_opts base;
    memset(&base, 0, sizeof base);
    lume_mqtt_opts_from_config(&c, &base);
    size_t seen = 0;
    for (size_t i = 0; lume_config_field_at(i); i++) {
        const lume_config_field *f = lume_config_field_at(i);
        if (strncmp(f->key, "net.", 4))
            continue;
        /* chooses the hub dialect (core/hub/hub.h), which fills its own part
         * of the options (client id, credentials, status topic): test_hub */
        static const char *const dialect_keys[] = {
            "net.dialect", "net.connection_string", "net.sas_key", "net.sas_key_file",
            "net.sas_ttl_s", "net.hub_host", "net.module_id", "net.model_id"};
        bool dialects = false;
        for (size_t k = 0; k < sizeof dialect_keys / sizeof *dialect_keys; k++)
            dialects |= !strcmp(f->key, dialect_keys[k]);
        if (dialects) /* the azure dialect's own (test_hub_azure) */
            continue;
        if (!strncmp(f->key, "net.dps.", 8)) /* DPS's own session (test_dps, test_dps.sh) */
            continue;
        if (!strncmp(f->key, "net.sign.", 9)) /* message signing, not the session (test_sign.sh) */
            continue;
        seen++;
        lume_config m = c; /* shallow: nothing of m is freed */
        char *p = (char *)&m + f->offset;
        static const char marker[] = "a value no default has";
        switch (f->type) {
        case LUME_CFG_STRING: *(const char **)p = marker; break;
        case LUME_CFG_BOOL: *(bool *)p = !*(bool *)p; break;
        case LUME_CFG_INT: *(int *)p += 7; break;
        case LUME_CFG_INT64:
        case LUME_CFG_SIZE: *(int64_t *)p += 7; break;
        default: fail_msg("%s: a type this test does not know", f->key);
        }
        lume_mqtt_opts o;
        memset(&o, 0, sizeof o);
        lume_mqtt_opts_from_config(&m, &o);
        if (!memcmp(&o, &base, sizeof o))
            fail_msg("%s does not reach the session options", f->key);
    }
    assert_true(seen >= 19);
    lume_config_free(&c);
}

int main(void)
{
    lume_log_set_level(LUME_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_no_key_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
