/* tests/unit/test_url.c — the broker URL parser (core/net/net.c,
 * lume_url_parse): what it takes apart, and the hosts it refuses with an
 * error naming the character (a '@' of user info, a space, a control byte
 * would otherwise reach the resolver as part of a host name). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"

static void test_good_urls(void **state)
{
    (void)state;
    static const struct { const char *url, *host; int port; bool tls; const char *path; } ok[] = {
        {"mqtt://broker.example-1.net", "broker.example-1.net", 1883, false, ""},
        {"mqtts://my_broker:8884", "my_broker", 8884, true, ""},
        {"mqtt://127.0.0.1:1", "127.0.0.1", 1, false, ""},
        {"mqtts://[::1]:8883/", "::1", 8883, true, "/"},
        {"mqtt://[fe80::1%eth0]", "fe80::1%eth0", 1883, false, ""},
#ifndef LUME_NO_WS
        {"wss://hub.local/ws/mqtt", "hub.local", 443, true, "/ws/mqtt"},
#endif
    };
#ifdef LUME_NO_WS /* a build without WebSockets refuses them, saying so */
    {
        lume_url u;
        char *err = NULL;
        assert_int_not_equal(lume_url_parse("wss://hub.local/ws/mqtt", &u, &err), 0);
        assert_non_null(err);
        assert_non_null(strstr(err, "LUME_NO_WS"));
        free(err);
    }
#endif
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        lume_url u;
        char *err = NULL;
        if (lume_url_parse(ok[i].url, &u, &err) != 0)
            fail_msg("%s: %s", ok[i].url, err ? err : "?");
        assert_string_equal(u.host, ok[i].host);
        assert_int_equal(u.port, ok[i].port);
        assert_int_equal(u.tls, ok[i].tls);
        assert_string_equal(u.path, ok[i].path);
    }
}

static void test_hosts_refused_naming_the_character(void **state)
{
    (void)state;
    static const struct { const char *url, *words; } bad[] = {
        {"mqtt://user@broker", "the host may not hold '@'"},
        {"mqtt://user:pw@broker:1883", "port must be 1..65535"},
        {"mqtts://bro ker:8883", "the host may not hold a space"},
        {"mqtt://broker\t", "the host may not hold byte 0x09"},
        {"mqtt://bro\nker", "the host may not hold byte 0x0a"},
        {"mqtt://exa%6dple.com", "the host may not hold '%'"},
        {"mqtt://a!b", "the host may not hold '!'"},
        {"mqtt://[::1 ]:1883", "the host may not hold a space"},
        {"mqtt://[::1@x]", "the host may not hold '@'"},
        {"mqtt://[%eth0]", "the host may not hold '%'"},
        {"mqtt://", "missing or too long host"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lume_url u;
        char *err = NULL;
        if (lume_url_parse(bad[i].url, &u, &err) == 0)
            fail_msg("%s was accepted (host '%s')", bad[i].url, u.host);
        if (!err || !strstr(err, bad[i].words))
            fail_msg("%s: error '%s' should say '%s'", bad[i].url, err ? err : "(null)",
                     bad[i].words);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_urls),
        cmocka_unit_test(test_hosts_refused_naming_the_character),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
