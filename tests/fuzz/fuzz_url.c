// fuzz-liblume: yes
/* tests/fuzz/fuzz_url.c — libFuzzer target for lume's two URL parsers:
 * core/net/net.c's lume_url_parse (the broker: mqtt://, mqtts://, ws://,
 * wss://host[:port][/path], IPv6 in brackets) and core/net/fetch.c's parse_url
 * (bundle urls: https://host[:port][/path][?query][#fragment]). parse_url
 * is static, so this file includes fetch.c itself (liblume.a's copy is then
 * not linked: every symbol it would bring is defined here).
 *
 * Input: the URL text (cut at the first NUL). Invariants, abort() on
 * violation:
 *
 *  1. lume_url_parse returns 0 or -EINVAL; -EINVAL comes with a message
 *     naming the broker url, 0 with none;
 *  2. on 0: a known scheme whose tls/ws flags match it, a host of 1..255
 *     bytes, a port in 1..65535, and a path only for ws/wss, where it
 *     starts with '/' and is not "/" ("/mqtt" by default); mqtt:// and
 *     mqtts:// keep at most a bare "/";
 *     the host holds only what a host name or an [IPv6 address] may
 *     (lume_url_host_bad: no '@', space, control byte, '%' encoding, ...);
 *  3. the parsed URL written back (the host in brackets when it holds ':'
 *     or '/' or starts with '['; the port always) parses to the same
 *     scheme, host, port and path;
 *  4. parse_url returns 0 or -EINVAL; -EINVAL comes with a message;
 *  5. on 0: the URL starts with https:// (any case) and holds no byte
 *     <= 0x20 nor 0x7f, the host is 1..255 bytes and has no '@', the port
 *     is 1..65535, the path is the URL's tail from the end of the
 *     authority, stops before any '#', and its query (from the first '?')
 *     lies inside it;
 *  6. written back as https://host:port<path> (the host in brackets when it
 *     holds ':' or starts with '['), it parses the same. */
#include "../../core/net/fetch.c"

#include <stdint.h>

#include "net.h"

#include "fuzz.h"

static void quiet(void *ud, int level, const char *component, const char *msg)
{
    (void)ud, (void)level, (void)component, (void)msg;
}

static bool needs_brackets(const char *host)
{
    return strchr(host, ':') || strchr(host, '/') || strchr(host, '%') || host[0] == '[';
}

static void broker(const char *url)
{
    lume_url u;
    char *err = NULL;
    int rc = lume_url_parse(url, &u, &err);
    CHECK(rc == 0 || rc == -EINVAL);                                        /* 1 */
    if (rc < 0) {
        CHECK(err != NULL && strstr(err, "broker url") != NULL);
        free(err);
        return;
    }
    CHECK(err == NULL);
    /* 2 */
    bool tls = !strcmp(u.scheme, "mqtts") || !strcmp(u.scheme, "wss");
    bool ws = !strcmp(u.scheme, "ws") || !strcmp(u.scheme, "wss");
    CHECK(tls || ws || !strcmp(u.scheme, "mqtt"));
    CHECK(u.tls == tls && u.ws == ws);
    size_t hl = strnlen(u.host, sizeof u.host);
    CHECK(hl >= 1 && hl < sizeof u.host);
    CHECK(!lume_url_host_bad(u.host, hl, strpbrk(u.host, ":%") != NULL)); /* [..] */
    CHECK(u.port >= 1 && u.port <= 65535);
    size_t pl = strnlen(u.path, sizeof u.path);
    CHECK(pl < sizeof u.path);
    if (ws)
        CHECK(u.path[0] == '/' && strcmp(u.path, "/") != 0);
    else
        CHECK(pl == 0 || !strcmp(u.path, "/"));

    /* 3 */
    char back[1024];
    bool br = needs_brackets(u.host);
    int n = snprintf(back, sizeof back, "%s://%s%s%s:%d%s", u.scheme, br ? "[" : "", u.host,
                     br ? "]" : "", u.port, ws ? u.path : "");
    CHECK(n > 0 && (size_t)n < sizeof back);
    lume_url v;
    rc = lume_url_parse(back, &v, &err);
    if (rc) {
        fprintf(stderr, "'%s' -> '%s': %s\n", url, back, err);
        free(err);
    }
    CHECK(rc == 0);
    CHECK(!strcmp(u.scheme, v.scheme) && !strcmp(u.host, v.host) && u.port == v.port);
    CHECK(ws ? !strcmp(u.path, v.path) : v.path[0] == '\0');
}

static void bundle(const char *url)
{
    url_parts u;
    char *err = NULL;
    int rc = parse_url(url, &u, &err);
    CHECK(rc == 0 || rc == -EINVAL);                                        /* 4 */
    if (rc < 0) {
        CHECK(err != NULL);
        free(err);
        return;
    }
    CHECK(err == NULL);
    /* 5 */
    size_t len = strlen(url);
    CHECK(len >= 8 && !strncasecmp(url, "https://", 8));
    for (size_t i = 0; i < len; i++)
        CHECK((unsigned char)url[i] > 0x20 && url[i] != 0x7f);
    size_t hl = strnlen(u.host, sizeof u.host);
    CHECK(hl >= 1 && hl < sizeof u.host);
    CHECK(!strchr(u.host, '@'));
    CHECK(!lume_url_host_bad(u.host, hl, strpbrk(u.host, ":%") != NULL)); /* [..] */
    CHECK(u.port >= 1 && u.port <= 65535);
    CHECK(u.path >= url + 8 && u.path <= url + len);
    CHECK(u.path_len <= (size_t)(url + len - u.path));
    CHECK(u.path[u.path_len] == '\0' || u.path[u.path_len] == '#');
    CHECK(!memchr(u.path, '#', u.path_len));
    CHECK(u.path_len == 0 || u.path[0] == '/' || u.path[0] == '?');
    CHECK(u.query_at <= u.path_len);
    CHECK(u.query_at == u.path_len || u.path[u.query_at] == '?');
    CHECK(!memchr(u.path, '?', u.query_at));
    /* the authority is what lies between "https://" and the path */
    CHECK(!memchr(url + 8, '@', (size_t)(u.path - url - 8)));

    /* 6 */
    char back[4096];
    bool br = strchr(u.host, ':') || strchr(u.host, '%') || u.host[0] == '[';
    int n = snprintf(back, sizeof back, "https://%s%s%s:%d%.*s", br ? "[" : "", u.host,
                     br ? "]" : "", u.port, (int)u.path_len, u.path);
    if (n < 0 || (size_t)n >= sizeof back)
        return;
    url_parts v;
    rc = parse_url(back, &v, &err);
    if (rc) {
        fprintf(stderr, "'%s' -> '%s': %s\n", url, back, err);
        free(err);
    }
    CHECK(rc == 0);
    CHECK(!strcmp(u.host, v.host) && u.port == v.port && u.path_len == v.path_len &&
          !memcmp(u.path, v.path, u.path_len) && u.query_at == v.query_at);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        lume_log_set_sink(quiet, NULL);
        init = true;
    }
    if (size > 4096)
        return 0;
    char *url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    broker(url);
    bundle(url);
    free(url);
    return 0;
}
