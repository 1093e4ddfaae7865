/* tests/unit/test_fetch.c — lume_fetch against real HTTPS servers.
 *
 * The group setup makes a CA, a server certificate for localhost and
 * 127.0.0.1, and an unrelated CA with the openssl CLI in a temp folder, then
 * starts two `openssl s_server` children:
 *   -WWW  serving www/ (files relative to its cwd, "HTTP/1.0 200 ok", no
 *         Content-Length, the body ends when it closes). For a missing file
 *         OpenSSL 3.0 answers "HTTP/1.0 200 ok" too, with "Error opening
 *         '<name>'" and its error queue as the body — never a 404.
 *   -HTTP serving raw/, where each file is the whole response, status line
 *         and headers included: real 404 and 302 answers, a Content-Length.
 * Each test drives its own lume_loop with lume_loop_step until the callback
 * has fired or a generous hang guard passes (not a speed assertion). The
 * servers are killed and the folder removed in the group teardown, also when
 * tests fail; the children die with the test process (PR_SET_PDEATHSIG). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetch.h"
#include "log.h"
#include "loop.h"
#include "testutil.h"

#define GUARD_MS   30000   /* hang guard for one fetch */
#define FETCH_MS   20000   /* the fetch's own timeout where it is not under test */
#define BIG_SIZE   (200 * 1024 + 17)

/* ---- the group: certificates, files, two s_servers ---------------------- */

static char  g_dir[256];
static pid_t g_www = -1, g_raw = -1;
static int   g_www_port, g_raw_port;
static unsigned char *g_big;

/* g_dir/name, valid for the whole run */
static const char *gpath(const char *name)
{
    return tu_path(g_dir, name);
}

/* Start `openssl s_server <mode>` in g_dir/<sub>; waits until it accepts
 * connections. 0, or -1 (see g_dir/<sub>.log). */
static int start_server(const char *mode, const char *sub, pid_t *pid, int *port)
{
    char log[300];
    snprintf(log, sizeof log, "../%s.log", sub);
    const char *args[] = {mode, "-cert", gpath("server.pem"), "-key", gpath("server.key"),
                          "-quiet", NULL};
    int fd = tu_s_server(gpath(sub), log, args, pid, port);
    if (fd < 0)
        return -1;
    close(fd); /* only a probe: s_server shrugs it off */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_stop(&g_www, SIGTERM);
    tu_stop(&g_raw, SIGTERM);
    tu_rm_tree(g_dir);
    free(g_big);
    g_big = NULL;
    return 0;
}

static int group_setup(void **state)
{
    if (tu_tmpdir(g_dir, sizeof g_dir, "fetch"))
        return -1;
    int bad = 0;
    bad |= mkdir(gpath("www"), 0700) | mkdir(gpath("raw"), 0700);
    bad |= tu_write_text(gpath("server.ext"), TU_SERVER_EXT);
    bad |= tu_make_ca(g_dir, "ca", "/CN=lume fetch test CA");
    bad |= tu_make_ca(g_dir, "other", "/CN=some other CA");
    bad |= tu_make_leaf(g_dir, "server", "/CN=localhost", "ca", "server.ext", "3", "7");

    /* www/: what -WWW serves */
    bad |= tu_write_text(gpath("www/hello.lua"), "print('hello from a fetched script')\n");
    g_big = malloc(BIG_SIZE);
    if (!g_big)
        bad = 1;
    else {
        uint32_t x = 2463534242u; /* xorshift: every byte value, no runs */
        for (size_t i = 0; i < BIG_SIZE; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            g_big[i] = (unsigned char)x;
        }
        bad |= tu_write_file(gpath("www/big.bin"), g_big, BIG_SIZE);
    }
    /* raw/: whole responses for -HTTP */
    bad |= tu_write_text(gpath("raw/gone"), "HTTP/1.0 404 Not Found\r\n"
                                            "Content-Type: text/plain\r\n\r\n"
                                            "no such bundle\n");
    bad |= tu_write_text(gpath("raw/moved"), "HTTP/1.0 302 Found\r\n"
                                             "Location: https://localhost/hello.lua\r\n\r\n");
    char sized[5100];
    int h = snprintf(sized, sizeof sized, "HTTP/1.0 200 OK\r\nContent-Length: 5000\r\n\r\n");
    for (int i = 0; i < 5000; i++)
        sized[h + i] = (char)('a' + i % 26);
    bad |= tu_write_file(gpath("raw/sized"), sized, (size_t)h + 5000);
    bad |= tu_write_text(gpath("raw/short"),
                         "HTTP/1.0 200 OK\r\nContent-Length: 5000\r\n\r\nonly this");

    if (!bad && start_server("-WWW", "www", &g_www, &g_www_port))
        bad = 1;
    if (!bad && start_server("-HTTP", "raw", &g_raw, &g_raw_port))
        bad = 1;
    if (bad) {
        fprintf(stderr, "fetch test setup failed; logs in %s:\n", g_dir);
        tu_dump_logs(g_dir);
        group_teardown(state);
        return -1;
    }
    return 0;
}

/* ---- per test: a loop, a log capture, one or more results ------------------ */

typedef struct result {
    int            fired;
    int            status;
    char          *err;
    unsigned char *body;
    size_t         len;
    lume_fetch    *self;          /* cancel it from inside its callback */
    bool           cancel_in_cb;
} result;

typedef struct fx {
    lume_loop *loop;
    result     r[2];
    char      *err;
} fx;

static char g_warn[1024];

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    if (level >= LUME_LOG_WARN && !strcmp(component, "fetch"))
        snprintf(g_warn, sizeof g_warn, "%s", msg);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    g_warn[0] = '\0';
    lume_log_set_sink(capture, NULL); /* also keeps lws's TLS complaints quiet */
    f->loop = lume_loop_new(NULL, &f->err);
    if (!f->loop) {
        fprintf(stderr, "lume_loop_new: %s\n", f->err ? f->err : "?");
        free(f->err);
        free(f);
        lume_log_set_sink(NULL, NULL);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lume_loop_free(f->loop);
    for (int i = 0; i < 2; i++) {
        free(f->r[i].err);
        free(f->r[i].body);
    }
    free(f->err);
    free(f);
    lume_log_set_sink(NULL, NULL);
    return 0;
}

static void done(void *ud, int status, const char *err, const void *body, size_t len)
{
    result *r = ud;
    r->fired++;
    r->status = status;
    free(r->err);
    r->err = err ? strdup(err) : NULL;
    free(r->body);
    r->body = malloc(len + 1);
    assert_non_null(r->body);
    if (len)
        memcpy(r->body, body, len);
    r->body[len] = '\0';
    r->len = len;
    if (r->cancel_in_cb)
        lume_fetch_cancel(r->self); /* allowed until the callback returns */
}

static void tick(lume_timer *t) { (void)t; }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Step the loop until every result in r[0..n) has fired or ms have passed. */
static void run_until(fx *f, int n, int ms)
{
    lume_timer t;
    lume_timer_init(&t, f->loop, tick, NULL);
    int64_t end = now_ms() + ms;
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && f->r[i].fired;
        if (all || now_ms() >= end)
            break;
        lume_timer_start(&t, 50 * 1000); /* lws waits for its next event: bound it */
        lume_loop_step(f->loop, 50);
    }
    lume_timer_cancel(&t);
}

/* Step the loop for ms, whatever happens. */
static void run_for(fx *f, int ms)
{
    lume_timer t;
    lume_timer_init(&t, f->loop, tick, NULL);
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        lume_timer_start(&t, 50 * 1000);
        lume_loop_step(f->loop, 50);
    }
    lume_timer_cancel(&t);
}

static const char *url_of(int port, const char *host, const char *path)
{
    static char buf[4][256];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "https://%s:%d/%s", host, port, path);
    return b;
}

/* Start a fetch into f->r[i] (asserting it started and has not called back
 * yet), with the test CA unless tls says otherwise. */
static lume_fetch *start(fx *f, int i, const char *url, const lume_tls_opts *tls, size_t max,
                         int timeout_ms)
{
    lume_tls_opts dflt = {.ca_file = gpath("ca.pem")};
    free(f->err);
    f->err = NULL;
    lume_fetch *h = lume_fetch_start(f->loop, url, tls ? tls : &dflt, max, timeout_ms, done,
                                     &f->r[i], &f->err);
    if (!h)
        fail_msg("lume_fetch_start(%s): %s", url, f->err ? f->err : "?");
    assert_int_equal(f->r[i].fired, 0); /* never from inside lume_fetch_start */
    f->r[i].self = h;
    return h;
}

/* One fetch to its end: the result. */
static result *fetch(fx *f, const char *url, const lume_tls_opts *tls, size_t max, int timeout_ms)
{
    start(f, 0, url, tls, max, timeout_ms);
    run_until(f, 1, GUARD_MS);
    assert_int_equal(f->r[0].fired, 1);
    return &f->r[0];
}

static void expect_error(result *r, int status, const char *url, const char *cause)
{
    char want[700];
    snprintf(want, sizeof want, "fetch %s: %s", url, cause);
    if (r->status != status || !r->err || strncmp(r->err, want, strlen(want)) != 0)
        fail_msg("got status %d '%s', expected %d '%s...'", r->status, r->err ? r->err : "(null)",
                 status, want);
    assert_null(r->len ? r->body : NULL);
}

static void expect_body(result *r, const void *want, size_t len)
{
    if (r->status != 0)
        fail_msg("fetch failed: %d %s", r->status, r->err ? r->err : "");
    assert_null(r->err);
    assert_int_equal(r->len, len);
    assert_memory_equal(r->body, want, len);
}

/* ---- success ----------------------------------------------------------------- */

static void test_small_file_comes_back_byte_exact(void **state)
{
    fx *f = *state;
    const char want[] = "print('hello from a fetched script')\n";
    result *r = fetch(f, url_of(g_www_port, "localhost", "hello.lua"), NULL, 262144, FETCH_MS);
    expect_body(r, want, strlen(want));
}

static void test_large_file_spanning_many_chunks_is_byte_exact(void **state)
{
    fx *f = *state;
    result *r = fetch(f, url_of(g_www_port, "localhost", "big.bin"), NULL, 262144, FETCH_MS);
    expect_body(r, g_big, BIG_SIZE);
}

static void test_content_length_body_and_exact_limit(void **state)
{
    fx *f = *state;
    /* exactly max_bytes is allowed */
    result *r = fetch(f, url_of(g_raw_port, "localhost", "sized"), NULL, 5000, FETCH_MS);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->len, 5000);
    for (int i = 0; i < 5000; i++)
        if (r->body[i] != 'a' + i % 26)
            fail_msg("byte %d differs", i);
}

static void test_ip_address_url_with_server_name(void **state)
{
    fx *f = *state;
    /* connect to 127.0.0.1 but check the certificate for "localhost" */
    lume_tls_opts tls = {.ca_file = gpath("ca.pem"), .server_name = "localhost"};
    const char want[] = "print('hello from a fetched script')\n";
    result *r = fetch(f, url_of(g_www_port, "127.0.0.1", "hello.lua"), &tls, 1000, FETCH_MS);
    expect_body(r, want, strlen(want));
}

/* ---- what the server says ------------------------------------------------------ */

static void test_missing_file_as_s_server_answers_it(void **state)
{
    fx *f = *state;
    /* OpenSSL 3.0's -WWW answers a missing file with "HTTP/1.0 200 ok" and an
     * error text: to HTTP that is a success, and lume cannot tell. This is
     * why a bundle's sha256 is checked after the fetch. */
    result *r = fetch(f, url_of(g_www_port, "localhost", "missing.lua"), NULL, 262144, FETCH_MS);
    assert_int_equal(r->status, 0);
    if (strncmp((char *)r->body, "Error opening 'missing.lua'", 27) != 0)
        fail_msg("unexpected body from s_server: %s", r->body);
}

static void test_http_404_is_an_error(void **state)
{
    fx *f = *state;
    const char *url = url_of(g_raw_port, "localhost", "gone");
    result *r = fetch(f, url, NULL, 262144, FETCH_MS);
    char exact[300];
    snprintf(exact, sizeof exact, "fetch %s: HTTP 404", url);
    assert_int_equal(r->status, -EIO);
    assert_string_equal(r->err, exact);
}

static void test_redirect_is_not_followed(void **state)
{
    fx *f = *state;
    const char *url = url_of(g_raw_port, "localhost", "moved");
    result *r = fetch(f, url, NULL, 262144, FETCH_MS);
    expect_error(r, -EIO, url, "HTTP 302");
}

static void test_larger_than_max_bytes(void **state)
{
    fx *f = *state;
    /* streamed (no Content-Length): stops once past the limit */
    const char *url = url_of(g_www_port, "localhost", "big.bin");
    result *r = fetch(f, url, NULL, 100000, FETCH_MS);
    expect_error(r, -EFBIG, url, "larger than 100000 bytes");
    assert_string_equal(strstr(r->err, "larger"), "larger than 100000 bytes");

    /* announced (Content-Length 5000): refused from the headers */
    f->r[0].fired = 0;
    url = url_of(g_raw_port, "localhost", "sized");
    r = fetch(f, url, NULL, 4999, FETCH_MS);
    expect_error(r, -EFBIG, url, "larger than 4999 bytes");
}

static void test_body_shorter_than_content_length(void **state)
{
    fx *f = *state;
    const char *url = url_of(g_raw_port, "localhost", "short");
    result *r = fetch(f, url, NULL, 262144, FETCH_MS);
    expect_error(r, -EIO, url, "connection closed after 9 of 5000 bytes");
}

/* ---- TLS ------------------------------------------------------------------------- */

static void test_wrong_ca_is_a_connection_error(void **state)
{
    fx *f = *state;
    lume_tls_opts tls = {.ca_file = gpath("other.pem")};
    const char *url = url_of(g_www_port, "localhost", "hello.lua");
    result *r = fetch(f, url, &tls, 262144, FETCH_MS);
    expect_error(r, -EIO, url, "cannot connect: ");
    assert_non_null(strstr(r->err, "TLS handshake failed"));
    assert_non_null(strstr(r->err, "other.pem"));
}

static void test_system_store_does_not_trust_a_private_ca(void **state)
{
    fx *f = *state;
    if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) != 0)
        skip();
    lume_tls_opts tls = {0};
    const char *url = url_of(g_www_port, "localhost", "hello.lua");
    result *r = fetch(f, url, &tls, 262144, FETCH_MS);
    expect_error(r, -EIO, url, "cannot connect: ");
}

static void test_wrong_name_fails_unless_insecure(void **state)
{
    fx *f = *state;
    lume_tls_opts tls = {.ca_file = gpath("ca.pem"), .server_name = "files.example.com"};
    const char *url = url_of(g_www_port, "127.0.0.1", "hello.lua");
    result *r = fetch(f, url, &tls, 262144, FETCH_MS);
    expect_error(r, -EIO, url, "cannot connect: ");
    assert_non_null(strstr(r->err, "files.example.com"));
    assert_string_equal(g_warn, "");

    /* insecure skips the name check (and says so in the log) */
    tls.insecure = true;
    free(f->r[0].err);
    f->r[0].err = NULL;
    f->r[0].fired = 0;
    r = fetch(f, url, &tls, 262144, FETCH_MS);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(g_warn, "insecure"));
}

static void test_two_ca_settings_on_one_loop(void **state)
{
    fx *f = *state;
    /* both at once, on one loop: each gets its own trust */
    lume_tls_opts good = {.ca_file = gpath("ca.pem")};
    lume_tls_opts other = {.ca_file = gpath("other.pem")};
    const char *url = url_of(g_www_port, "localhost", "hello.lua");
    start(f, 0, url, &good, 262144, FETCH_MS);
    start(f, 1, url, &other, 262144, FETCH_MS);
    run_until(f, 2, GUARD_MS);
    assert_int_equal(f->r[0].fired, 1);
    assert_int_equal(f->r[1].fired, 1);
    assert_int_equal(f->r[0].status, 0);
    expect_error(&f->r[1], -EIO, url, "cannot connect: ");
}

/* ---- refused before starting ---------------------------------------------------- */

static void test_only_https_urls(void **state)
{
    fx *f = *state;
    static const struct { const char *url, *words; } bad[] = {
        {"http://localhost/hello.lua", "only https:// URLs are fetched, got 'http://localhost/"
                                       "hello.lua'"},
        {"ftp://files/x", "only https:// URLs are fetched"},
        {"localhost/x", "only https:// URLs are fetched"},
        {"https://", "no host name"},
        {"https:///x", "no host name"},
        {"https://localhost:0/x", "bad port"},
        {"https://localhost:65536/x", "bad port"},
        {"https://localhost:44x/x", "bad port"},
        {"https://user:secret@localhost/x", "user names or passwords"},
        {"https://localhost/a b", "space or control character"},
        {"https://localhost/a\r\nX-Evil: 1", "space or control character"},
        {"https://[::1/x", "unterminated"},
        {"https://local!host/x", "the host may not hold '!'"},
        {"https://local%2ehost/x", "the host may not hold '%'"},
        {"https://[::1;x]/x", "the host may not hold ';'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        free(f->err);
        f->err = NULL;
        lume_fetch *h = lume_fetch_start(f->loop, bad[i].url, NULL, 1000, 1000, done, &f->r[0],
                                         &f->err);
        if (h)
            fail_msg("%s was accepted", bad[i].url);
        if (!f->err || !strstr(f->err, bad[i].words))
            fail_msg("%s: error '%s' should say '%s'", bad[i].url, f->err ? f->err : "(null)",
                     bad[i].words);
    }
    assert_int_equal(f->r[0].fired, 0);
    /* a missing CA file is named at once */
    lume_tls_opts tls = {.ca_file = gpath("no-such-ca.pem")};
    free(f->err);
    f->err = NULL;
    assert_null(lume_fetch_start(f->loop, url_of(g_www_port, "localhost", "x"), &tls, 1000, 1000,
                                 done, &f->r[0], &f->err));
    assert_non_null(strstr(f->err, "no-such-ca.pem"));
    run_for(f, 100);
    assert_int_equal(f->r[0].fired, 0);
}

/* ---- no answer ------------------------------------------------------------------ */

static void test_unreachable_port(void **state)
{
    fx *f = *state;
    int port = tu_free_port(); /* nothing listens there */
    assert_true(port > 0);
    const char *url = url_of(port, "localhost", "hello.lua");
    result *r = fetch(f, url, NULL, 262144, FETCH_MS);
    expect_error(r, -EIO, url, "cannot connect: ");
}

/* A socket that listens but never accepts: the kernel completes the TCP
 * handshake, and the TLS ClientHello is never answered. */
static int silent_listener(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 8), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return s;
}

static void test_server_that_never_answers_times_out(void **state)
{
    fx *f = *state;
    int port, s = silent_listener(&port);
    const char *url = url_of(port, "localhost", "hello.lua");
    start(f, 0, url, NULL, 262144, 400);
    run_until(f, 1, GUARD_MS);
    close(s);
    assert_int_equal(f->r[0].fired, 1);
    expect_error(&f->r[0], -ETIMEDOUT, url, "timed out after 400 ms");
    char exact[300];
    snprintf(exact, sizeof exact, "fetch %s: timed out after 400 ms", url);
    assert_string_equal(f->r[0].err, exact);
}

/* ---- cancel -------------------------------------------------------------------- */

static void test_cancel_before_completion_means_no_callback(void **state)
{
    fx *f = *state;
    /* while waiting for an answer: the 300 ms timeout would fire by now */
    int port, s = silent_listener(&port);
    lume_fetch *h = start(f, 0, url_of(port, "localhost", "x"), NULL, 1000, 300);
    run_for(f, 100);
    assert_int_equal(f->r[0].fired, 0);
    lume_fetch_cancel(h);
    run_for(f, 1000);
    close(s);
    assert_int_equal(f->r[0].fired, 0);

    /* right after starting, against a server that would answer */
    h = start(f, 1, url_of(g_www_port, "localhost", "hello.lua"), NULL, 1000, 300);
    lume_fetch_cancel(h);
    run_for(f, 1000);
    assert_int_equal(f->r[1].fired, 0);

    /* the loop still fetches fine afterwards (s_server is not stuck) */
    result *r = fetch(f, url_of(g_www_port, "localhost", "hello.lua"), NULL, 1000, FETCH_MS);
    assert_int_equal(r->status, 0);
}

static void test_failure_inside_start_is_delivered_from_the_loop(void **state)
{
    fx *f = *state;
    /* a name that does not resolve: lws gives up inside
     * lws_client_connect_via_info, and the error still comes from the loop */
    const char *url = "https://no-such-host.invalid/x.lua";
    start(f, 0, url, NULL, 1000, FETCH_MS); /* asserts: no callback yet */
    run_until(f, 1, GUARD_MS);
    assert_int_equal(f->r[0].fired, 1);
    expect_error(&f->r[0], -EIO, url, "cannot connect");

    /* and cancelling such a fetch before the loop runs: no callback */
    lume_fetch *h = start(f, 1, url, NULL, 1000, FETCH_MS);
    lume_fetch_cancel(h);
    run_for(f, 300);
    assert_int_equal(f->r[1].fired, 0);
}

static void test_cancel_inside_the_callback_is_harmless(void **state)
{
    fx *f = *state;
    f->r[0].cancel_in_cb = true;
    result *r = fetch(f, url_of(g_www_port, "localhost", "hello.lua"), NULL, 1000, FETCH_MS);
    assert_int_equal(r->status, 0);
    run_for(f, 200);
    assert_int_equal(r->fired, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_small_file_comes_back_byte_exact),
        T(test_large_file_spanning_many_chunks_is_byte_exact),
        T(test_content_length_body_and_exact_limit),
        T(test_ip_address_url_with_server_name),
        T(test_missing_file_as_s_server_answers_it),
        T(test_http_404_is_an_error),
        T(test_redirect_is_not_followed),
        T(test_larger_than_max_bytes),
        T(test_body_shorter_than_content_length),
        T(test_wrong_ca_is_a_connection_error),
        T(test_system_store_does_not_trust_a_private_ca),
        T(test_wrong_name_fails_unless_insecure),
        T(test_two_ca_settings_on_one_loop),
        T(test_only_https_urls),
        T(test_unreachable_port),
        T(test_server_that_never_answers_times_out),
        T(test_cancel_before_completion_means_no_callback),
        T(test_failure_inside_start_is_delivered_from_the_loop),
        T(test_cancel_inside_the_callback_is_harmless),
#undef T
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
