/* tests/unit/test_tls.c — lume_tls against real certificates (made with the
 * openssl CLI in a temp folder) and a real peer: `openssl s_server` in a child
 * process, reached over a plain TCP socket whose bytes the test pumps through
 * lume_tls_conn, as lume's lws RAW socket does. A second part runs an mbedtls
 * server in this process over the same queues, to feed records byte by byte,
 * corrupt one, and close the session.
 */
#include <errno.h>
#include <poll.h>
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
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "log.h"
#include "testutil.h"
#include "tls.h"

/* ---- the certificates, made once for the whole run ----------------------- */

static char g_dir[256];

/* g_dir/name, kept for the whole run. */
static const char *path_of(const char *name)
{
    return tu_path(g_dir, name);
}

static int group_setup(void **state)
{
    (void)state;
    if (tu_tmpdir(g_dir, sizeof g_dir, "tls"))
        return -1;
    int bad = 0;
    bad |= tu_write_text(path_of("server.ext"), TU_SERVER_EXT);
    bad |= tu_write_text(path_of("client.ext"),
                         "basicConstraints=CA:FALSE\n"
                         "keyUsage=digitalSignature,keyAgreement\n"
                         "extendedKeyUsage=clientAuth\n");
    bad |= tu_write_text(path_of("garbage.pem"), "this is not a certificate\n");
    bad |= tu_make_ca(g_dir, "ca", "/CN=lume test CA");
    bad |= tu_make_ca(g_dir, "other", "/CN=some other CA");
    bad |= tu_make_leaf(g_dir, "server", "/CN=localhost", "ca", "server.ext", "3", "10");
    bad |= tu_make_leaf(g_dir, "expired", "/CN=localhost", "ca", "server.ext", "-1", "11");
    bad |= tu_make_leaf(g_dir, "client", "/CN=lume device 1", "ca", "client.ext", "3", "12");
    bad |= tu_make_leaf(g_dir, "stranger", "/CN=lume device 2", "other", "client.ext", "3", "13");
    /* one certificate per name rule (RFC 6125, see core/net/tls.c) */
    static const struct {
        const char *base, *subj, *san;   /* san NULL: no subjectAltName at all */
    } names[] = {
        {"ipsan", "/CN=lume ip broker", "IP:127.0.0.1,IP:::1"},
        {"ipcn", "/CN=127.0.0.1", NULL},
        {"ipcn6", "/CN=::1", NULL},
        {"ipdns", "/CN=lume ip broker", "DNS:127.0.0.1,DNS:::1"},
        {"ipwild", "/CN=lume ip broker", "DNS:*.0.0.1"},
        {"iponly", "/CN=localhost", "IP:127.0.0.1"},
        {"wild", "/CN=lume wildcard broker", "DNS:*.lume.test"},
        {"wildtld", "/CN=lume wildcard broker", "DNS:*.test"},
        {"wildpart", "/CN=lume wildcard broker", "DNS:b*.lume.test"},
        {"cnonly", "/CN=broker.lume.test", NULL},
        {"cnsan", "/CN=broker.lume.test", "DNS:other.lume.test"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char ext[64], text[512];
        snprintf(ext, sizeof ext, "%s.ext", names[i].base);
        snprintf(text, sizeof text,
                 "basicConstraints=CA:FALSE\n"
                 "keyUsage=digitalSignature,keyAgreement\n"
                 "extendedKeyUsage=serverAuth\n%s%s%s",
                 names[i].san ? "subjectAltName=" : "", names[i].san ? names[i].san : "",
                 names[i].san ? "\n" : "");
        char serial[8];
        snprintf(serial, sizeof serial, "%zu", 20 + i);
        bad |= tu_write_text(path_of(ext), text);
        bad |= tu_make_leaf(g_dir, names[i].base, names[i].subj, "ca", ext, "3", serial);
    }
    bad |= tu_openssl(g_dir, "ec", "-in", "client.key", "-aes256", "-passout", "pass:secret",
                      "-out", "client-enc.key", NULL);
    if (bad) {
        fprintf(stderr, "making test certificates failed; see %s/openssl.log:\n", g_dir);
        tu_dump_logs(g_dir);
        tu_rm_tree(g_dir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* ---- log capture ------------------------------------------------------------ */

static char g_last_warn[1024];
static int  g_warns;

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    (void)component;
    if (level >= LUME_LOG_WARN) {
        g_warns++;
        snprintf(g_last_warn, sizeof g_last_warn, "%s", msg);
    }
}

/* ---- per-test fixture: an s_server child, a socket, a lume_tls_conn ------- */

typedef struct fx {
    pid_t          server;
    int            fd;
    bool           peer_closed;
    lume_tls      *tls;
    lume_tls_conn *conn;
    char          *err;
    void          *mem[3];     /* test buffers, freed in teardown */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->server = -1;
    f->fd = -1;
    g_warns = 0;
    g_last_warn[0] = '\0';
    lume_log_set_sink(capture, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lume_tls_conn_free(f->conn);
    lume_tls_free(f->tls);
    free(f->err);
    for (int i = 0; i < 3; i++)
        free(f->mem[i]);
    if (f->fd >= 0)
        close(f->fd);
    tu_stop(&f->server, SIGTERM);
    lume_log_set_sink(NULL, NULL);
    free(f);
    return 0;
}

/* Start `openssl s_server -rev` on addr ("127.0.0.1" or "::1") with the
 * certificate `cert` (base name), no extra arguments; f->fd is connected to
 * it. false when the address cannot be listened on (no IPv6 here). */
static bool start_server_at(fx *f, const char *addr, const char *cert)
{
    char certp[64], keyp[64];
    snprintf(certp, sizeof certp, "%s.pem", cert);
    snprintf(keyp, sizeof keyp, "%s.key", cert);
    const char *args[] = {"-cert", certp, "-key", keyp, "-rev", "-quiet", NULL};
    int port;
    f->fd = tu_s_server_at(g_dir, "s_server.log", addr, args, &f->server, &port);
    return f->fd >= 0;
}

/* Start `openssl s_server -rev` with the server certificate `cert` (base
 * name) plus extra arguments (NULL-terminated), and connect to it: f->fd is
 * the connected socket. The connect retries until s_server listens; a
 * port someone else took in between makes s_server exit, and we try
 * another port. */
static void start_server(fx *f, const char *cert, ...)
{
    char certp[64], keyp[64];
    snprintf(certp, sizeof certp, "%s.pem", cert);
    snprintf(keyp, sizeof keyp, "%s.key", cert);
    const char *args[24] = {"-cert", certp, "-key", keyp, "-rev", "-quiet"};
    int n = 6;
    va_list ap;
    va_start(ap, cert);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 21)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;

    int port;
    f->fd = tu_s_server(g_dir, "s_server.log", args, &f->server, &port);
    if (f->fd < 0)
        fail_msg("openssl s_server did not start (see %s/s_server.log)", g_dir);
}

/* Send everything lume_tls_conn_out holds. */
static void flush_out(fx *f)
{
    size_t n;
    const void *p;
    while ((p = lume_tls_conn_out(f->conn, &n)) && n > 0) {
        ssize_t k = send(f->fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            /* the peer is gone (it rejected us): drop what is left */
            lume_tls_conn_out_consume(f->conn, n);
            return;
        }
        lume_tls_conn_out_consume(f->conn, (size_t)k);
    }
}

/* Wait (at most timeout_ms) for bytes from the socket and feed them.
 * Returns the count fed, 0 when the peer closed, -1 on timeout. */
static int pump_in(fx *f, int timeout_ms)
{
    struct pollfd p = { .fd = f->fd, .events = POLLIN };
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return -1;
    unsigned char buf[8192];
    ssize_t k = recv(f->fd, buf, sizeof buf, 0);
    if (k <= 0) {
        f->peer_closed = true;
        return 0;
    }
    assert_int_equal(lume_tls_conn_feed(f->conn, buf, (size_t)k), 0);
    return (int)k;
}

#define STEP_MS   200
#define MAX_STEPS 150        /* a hang guard (30 s), not a speed assertion */

/* Run the handshake over the socket. 0 on success, or the failure code;
 * -EPIPE when the server hung up without a TLS alert mbedtls could read. */
static int handshake(fx *f)
{
    for (int i = 0; i < MAX_STEPS; i++) {
        int r = lume_tls_conn_handshake(f->conn);
        flush_out(f);
        if (r != -EAGAIN)
            return r;
        if (f->peer_closed)
            return -EPIPE;
        pump_in(f, STEP_MS);
    }
    fail_msg("handshake did not finish");
    return -ETIMEDOUT;
}

/* Make lume_tls + conn from opts for `host`, connect, handshake. */
static int connect_with(fx *f, const lume_tls_opts *o, const char *host)
{
    f->tls = lume_tls_new(o, &f->err);
    if (!f->tls)
        fail_msg("lume_tls_new: %s", f->err ? f->err : "?");
    f->conn = lume_tls_conn_new(f->tls, host, &f->err);
    if (!f->conn)
        fail_msg("lume_tls_conn_new: %s", f->err ? f->err : "?");
    return handshake(f);
}

/* Read until `want` bytes arrived (or fail). */
static void read_exactly(fx *f, char *buf, size_t want)
{
    size_t got = 0;
    int idle = 0;       /* waits that brought nothing: the hang guard */
    while (got < want && idle < MAX_STEPS) {
        ssize_t r = lume_tls_conn_read(f->conn, buf + got, want - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r != -EAGAIN)
            fail_msg("read: %zd (%s), got %zu of %zu", r, lume_tls_conn_error(f->conn), got,
                     want);
        flush_out(f);
        if (f->peer_closed)
            fail_msg("peer closed after %zu of %zu bytes", got, want);
        if (pump_in(f, STEP_MS) < 0)
            idle++;
    }
    assert_int_equal(got, want);
}

static void send_plain(fx *f, const char *s, size_t n)
{
    int r = lume_tls_conn_write(f->conn, s, n);
    if (r != 0)
        fail_msg("write: %d (%s)", r, lume_tls_conn_error(f->conn));
    flush_out(f);
}

static void reverse_line(const char *in, char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = in[len - 1 - i];
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, hay ? hay : "(null)");
}

/* ---- handshakes with openssl s_server ---------------------------------------- */

static void test_handshake_and_round_trip(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "localhost");
    if (r != 0)
        fail_msg("handshake: %d (%s)", r, lume_tls_conn_error(f->conn));
    assert_true(lume_tls_conn_ready(f->conn));
    assert_string_equal(lume_tls_conn_error(f->conn), "");

    /* s_server -rev sends each line back reversed */
    const char *line = "hello from lume";
    send_plain(f, line, strlen(line));
    send_plain(f, "\n", 1);
    char got[64] = { 0 }, want[64] = { 0 };
    read_exactly(f, got, strlen(line) + 1);
    reverse_line(line, want, strlen(line));
    want[strlen(line)] = '\n';
    assert_string_equal(got, want);
    assert_int_equal(lume_tls_conn_read(f->conn, got, sizeof got), -EAGAIN);
}

/* Many lines in one write: several TLS records each way. */
static void test_large_round_trip(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    assert_int_equal(connect_with(f, &o, "localhost"), 0);

    enum { LINES = 1500 };
    size_t cap = LINES * 64, len = 0;
    char *plain = f->mem[0] = malloc(cap), *want = f->mem[1] = malloc(cap),
         *got = f->mem[2] = malloc(cap);
    assert_non_null(plain);
    assert_non_null(want);
    assert_non_null(got);
    for (int i = 0; i < LINES; i++) {
        int k = snprintf(plain + len, cap - len, "line %04d of the lume tls test %d\n", i,
                         i * 7919);
        reverse_line(plain + len, want + len, (size_t)k - 1);
        want[len + (size_t)k - 1] = '\n';
        len += (size_t)k;
    }
    assert_true(len > 3 * 16384);      /* more than three full records */
    send_plain(f, plain, len);
    read_exactly(f, got, len);
    assert_memory_equal(got, want, len);
}

static void test_server_name_overrides_host(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .server_name = "localhost" };
    int r = connect_with(f, &o, "127.0.0.1");
    if (r != 0)
        fail_msg("handshake: %d (%s)", r, lume_tls_conn_error(f->conn));
}

/* mqtts://127.0.0.1: the certificate's iPAddress SAN is what must match
 * (mbedtls 2.28 checks DNS names only; lume adds the IP check). */
static void test_ip_address_host(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "127.0.0.1");
    if (r != 0)
        fail_msg("handshake: %d (%s)", r, lume_tls_conn_error(f->conn));
}

static void test_other_ip_address_fails(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "127.0.0.2");
    assert_true(r < 0 && r != -EAGAIN && r != -EPIPE);
    assert_contains(lume_tls_conn_error(f->conn), "does not match");
    assert_contains(lume_tls_conn_error(f->conn), "127.0.0.2");
}

/* An IPv6 literal is parsed too: the certificate has no ::1 entry. */
static void test_ipv6_host_without_san_fails(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "::1");
    assert_true(r < 0 && r != -EAGAIN && r != -EPIPE);
    assert_contains(lume_tls_conn_error(f->conn), "does not match");
}

static void test_wrong_ca_fails(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("other.pem") };
    int r = connect_with(f, &o, "localhost");
    assert_true(r < 0 && r != -EAGAIN && r != -EPIPE);
    assert_false(lume_tls_conn_ready(f->conn));
    assert_contains(lume_tls_conn_error(f->conn), "certificate verify failed");
    assert_contains(lume_tls_conn_error(f->conn), "not correctly signed");
    /* the failure sticks */
    assert_int_equal(lume_tls_conn_handshake(f->conn), r);
    char b[8];
    assert_int_equal(lume_tls_conn_read(f->conn, b, sizeof b), r);
    assert_int_equal(lume_tls_conn_write(f->conn, "x", 1), r);
}

/* ca_file NULL: the system store, which does not know our test CA. */
static void test_system_store_rejects_private_ca(void **state)
{
    fx *f = *state;
    if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) != 0)
        skip();
    start_server(f, "server", NULL);
    lume_tls_opts o = { 0 };
    int r = connect_with(f, &o, "localhost");
    assert_true(r < 0 && r != -EAGAIN);
    assert_contains(lume_tls_conn_error(f->conn), "not correctly signed");
}

static void test_wrong_name_fails(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "broker.example.com");
    assert_true(r < 0 && r != -EAGAIN && r != -EPIPE);
    const char *e = lume_tls_conn_error(f->conn);
    assert_contains(e, "certificate verify failed");
    assert_contains(e, "name does not match");
    assert_contains(e, "broker.example.com");
    /* what the certificate does carry */
    assert_contains(e, "DNS:\"localhost\", IP:127.0.0.1");
}

/* ---- names by RFC 6125 (mqtts://): one server per case ---------------------- */

typedef struct name_case {
    const char *cert;   /* the server's certificate */
    const char *addr;   /* where the server listens */
    const char *host;   /* the name lume expects */
    bool        ok;     /* accepted? */
    const char *why;    /* a case that fails: in the error */
} name_case;

/* Run each case against a fresh s_server; fail naming every case that went
 * wrong. Cases on ::1 are skipped when this machine has no IPv6 loopback.
 * Returns how many ran. */
static int run_name_cases(const name_case *cases, size_t n)
{
    int ran = 0;
    char report[4096] = "";
    size_t rl = 0;
#define CASE_FAIL(...)                                                              \
    do {                                                                            \
        if (rl < sizeof report)                                                     \
            rl += (size_t)snprintf(report + rl, sizeof report - rl, __VA_ARGS__);   \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        const name_case *k = &cases[i];
        fx f = { .server = -1, .fd = -1 };
        if (!start_server_at(&f, k->addr, k->cert)) {
            if (strchr(k->addr, ':') && tu_free_port_at(k->addr) < 0)
                continue; /* no IPv6 loopback */
            fail_msg("openssl s_server on %s did not start (see %s/s_server.log)", k->addr,
                     g_dir);
        }
        lume_tls_opts o = { .ca_file = path_of("ca.pem") };
        f.tls = lume_tls_new(&o, &f.err);
        assert_non_null(f.tls);
        f.conn = lume_tls_conn_new(f.tls, k->host, &f.err);
        assert_non_null(f.conn);
        int r = handshake(&f);
        char e[1100];
        snprintf(e, sizeof e, "%s", lume_tls_conn_error(f.conn));
        lume_tls_conn_free(f.conn);
        lume_tls_free(f.tls);
        free(f.err);
        close(f.fd);
        tu_stop(&f.server, SIGTERM);
        if (k->ok && r != 0)
            CASE_FAIL("\n  case %zu: %s at %s as \"%s\" should be accepted: %d (%s)", i,
                      k->cert, k->addr, k->host, r, e);
        if (!k->ok && (r == 0 || r == -EAGAIN || r == -EPIPE))
            CASE_FAIL("\n  case %zu: %s at %s as \"%s\" should be refused by the name check, "
                      "got %d (%s)", i, k->cert, k->addr, k->host, r, e);
        else if (!k->ok && (!strstr(e, "name does not match") || (k->why && !strstr(e, k->why))))
            CASE_FAIL("\n  case %zu: %s as \"%s\": error \"%s\" should say \"name does not "
                      "match\" and \"%s\"", i, k->cert, k->host, e, k->why ? k->why : "");
        ran++;
    }
#undef CASE_FAIL
    if (rl)
        fail_msg("%s", report);
    return ran;
}

/* An IP address matches only an iPAddress subjectAltName with the same
 * address: never the CN, never a dNSName (mbedtls 2.28 alone took both). */
static void test_names_ip_address(void **state)
{
    (void)state;
    static const name_case cases[] = {
        {"ipsan", "127.0.0.1", "127.0.0.1", true, NULL},
        {"ipsan", "127.0.0.1", "127.1", true, NULL},  /* the resolver's short form */
        {"ipsan", "127.0.0.1", "127.0.0.2", false, "only an iPAddress"},
        {"ipcn", "127.0.0.1", "127.0.0.1", false, "CN=\"127.0.0.1\" (not used"},
        {"ipdns", "127.0.0.1", "127.0.0.1", false, "DNS:\"127.0.0.1\""},
        {"ipwild", "127.0.0.1", "127.0.0.1", false, "DNS:\"*.0.0.1\""},
        /* and an iPAddress entry is no DNS name either */
        {"ipsan", "127.0.0.1", "localhost", false, "IP:127.0.0.1"},
    };
    assert_int_equal(run_name_cases(cases, sizeof cases / sizeof *cases), 7);
}

/* The same over IPv6, to a server on ::1 (skipped without IPv6). */
static void test_names_ipv6_address(void **state)
{
    (void)state;
    if (tu_free_port_at("::1") < 0)
        skip();
    static const name_case cases[] = {
        {"ipsan", "::1", "::1", true, NULL},
        {"ipsan", "::1", "0:0:0:0:0:0:0:1", true, NULL},
        {"server", "::1", "::1", false, "IP:127.0.0.1"},
        {"ipcn6", "::1", "::1", false, "only an iPAddress"},
        {"ipdns", "::1", "::1", false, "DNS:\"::1\""},
    };
    assert_int_equal(run_name_cases(cases, sizeof cases / sizeof *cases), 5);
}

/* A DNS name: dNSName entries, ASCII case-insensitive, a trailing dot
 * ignored; a wildcard only as the whole left-most label, for one label,
 * with at least two labels after it. */
static void test_names_dns_and_wildcards(void **state)
{
    (void)state;
    static const name_case cases[] = {
        {"server", "127.0.0.1", "localhost", true, NULL},
        {"server", "127.0.0.1", "LocalHost.", true, NULL},
        {"server", "127.0.0.1", "localhost.localdomain", false, "DNS:\"localhost\""},
        {"wild", "127.0.0.1", "broker.lume.test", true, NULL},
        {"wild", "127.0.0.1", "BROKER.Lume.Test", true, NULL},
        {"wild", "127.0.0.1", "a.b.lume.test", false, "DNS:\"*.lume.test\""},
        {"wild", "127.0.0.1", "lume.test", false, NULL},
        {"wild", "127.0.0.1", ".lume.test", false, NULL},
        {"wildtld", "127.0.0.1", "broker.test", false, "DNS:\"*.test\""},
        {"wildpart", "127.0.0.1", "broker.lume.test", false, "DNS:\"b*.lume.test\""},
    };
    assert_int_equal(run_name_cases(cases, sizeof cases / sizeof *cases), 10);
}

/* The CN counts only for a DNS name and only without any dNSName. */
static void test_names_common_name(void **state)
{
    (void)state;
    static const name_case cases[] = {
        {"cnonly", "127.0.0.1", "broker.lume.test", true, NULL},
        {"cnonly", "127.0.0.1", "other.lume.test", false, "CN=\"broker.lume.test\""},
        {"cnsan", "127.0.0.1", "broker.lume.test", false, "DNS:\"other.lume.test\""},
        {"cnsan", "127.0.0.1", "other.lume.test", true, NULL},
        /* iPAddress entries alone are no dNSName: the CN still counts */
        {"iponly", "127.0.0.1", "localhost", true, NULL},
    };
    assert_int_equal(run_name_cases(cases, sizeof cases / sizeof *cases), 5);
}

static void test_expired_fails(void **state)
{
    fx *f = *state;
    start_server(f, "expired", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "localhost");
    assert_true(r < 0 && r != -EAGAIN && r != -EPIPE);
    assert_contains(lume_tls_conn_error(f->conn), "expired");
}

static void test_insecure_accepts_and_warns(void **state)
{
    fx *f = *state;
    start_server(f, "server", NULL);
    lume_tls_opts o = { .ca_file = path_of("other.pem"), .insecure = true };
    assert_int_equal(g_warns, 0);
    int r = connect_with(f, &o, "not-the-name");
    if (r != 0)
        fail_msg("handshake: %d (%s)", r, lume_tls_conn_error(f->conn));
    assert_true(g_warns >= 1);
    assert_contains(g_last_warn, "TLS verification disabled");
}

static void test_mutual_tls_accepts_client_cert(void **state)
{
    fx *f = *state;
    start_server(f, "server", "-Verify", "1", "-CAfile", "ca.pem", "-verify_return_error",
                 NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .cert_file = path_of("client.pem"),
                        .key_file = path_of("client.key") };
    int r = connect_with(f, &o, "localhost");
    if (r != 0)
        fail_msg("handshake: %d (%s)", r, lume_tls_conn_error(f->conn));
    /* the server really took us: data flows */
    send_plain(f, "ab\n", 3);
    char got[4] = { 0 };
    read_exactly(f, got, 3);
    assert_string_equal(got, "ba\n");
}

static void test_mutual_tls_without_cert_fails(void **state)
{
    fx *f = *state;
    start_server(f, "server", "-Verify", "1", "-CAfile", "ca.pem", "-verify_return_error",
                 NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    int r = connect_with(f, &o, "localhost");
    assert_true(r < 0 && r != -EAGAIN);
    assert_false(lume_tls_conn_ready(f->conn));
    if (r != -EPIPE)
        assert_contains(lume_tls_conn_error(f->conn), "alert");
}

static void test_mutual_tls_foreign_cert_fails(void **state)
{
    fx *f = *state;
    start_server(f, "server", "-Verify", "1", "-CAfile", "ca.pem", "-verify_return_error",
                 NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .cert_file = path_of("stranger.pem"),
                        .key_file = path_of("stranger.key") };
    int r = connect_with(f, &o, "localhost");
    assert_true(r < 0 && r != -EAGAIN);
    if (r != -EPIPE)
        assert_contains(lume_tls_conn_error(f->conn), "alert");
}

/* The cipher list reaches the wire: a server offering only AES-256 refuses a
 * client limited to AES-128, and accepts one that lists AES-256 too (given
 * in IANA's underscore spelling). */
static void test_cipher_list_is_applied(void **state)
{
    fx *f = *state;
    start_server(f, "server", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", NULL);
    lume_tls_opts o = { .ca_file = path_of("ca.pem"),
                        .ciphers = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256" };
    int r = connect_with(f, &o, "localhost");
    assert_true(r < 0 && r != -EAGAIN);
    if (r != -EPIPE)
        assert_contains(lume_tls_conn_error(f->conn), "alert");
}

static void test_cipher_list_match_succeeds(void **state)
{
    fx *f = *state;
    start_server(f, "server", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", NULL);
    lume_tls_opts o = {
        .ca_file = path_of("ca.pem"),
        .ciphers = "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    };
    int r = connect_with(f, &o, "localhost");
    if (r != 0)
        fail_msg("handshake: %d (%s)", r, lume_tls_conn_error(f->conn));
}

/* ---- configuration errors --------------------------------------------------- */

/* lume_tls_new must fail, and its message contain each of the needles. */
static void expect_new_fails(const lume_tls_opts *o, const char *n1, const char *n2)
{
    char *err = NULL;
    lume_tls *t = lume_tls_new(o, &err);
    if (t) {
        lume_tls_free(t);
        fail_msg("lume_tls_new succeeded; expected an error with \"%s\"", n1);
    }
    assert_non_null(err);
    assert_contains(err, n1);
    if (n2)
        assert_contains(err, n2);
    free(err);
}

static void test_missing_ca_file(void **state)
{
    (void)state;
    const char *p = path_of("nowhere/ca.pem");
    lume_tls_opts o = { .ca_file = p };
    char want[600];
    snprintf(want, sizeof want, "ca_file %s: cannot read (%s)", p, strerror(ENOENT));
    expect_new_fails(&o, want, NULL);
}

static void test_ca_file_is_a_directory(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = g_dir };
    expect_new_fails(&o, g_dir, "cannot read");
}

static void test_garbage_ca_file(void **state)
{
    (void)state;
    const char *p = path_of("garbage.pem");
    lume_tls_opts o = { .ca_file = p };
    char want[600];
    snprintf(want, sizeof want, "ca_file %s: is not a PEM certificate", p);
    expect_new_fails(&o, want, NULL);
}

static void test_cert_without_key(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .cert_file = path_of("client.pem") };
    expect_new_fails(&o, "without key_file", path_of("client.pem"));
}

static void test_key_without_cert(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .key_file = path_of("client.key") };
    expect_new_fails(&o, "without cert_file", path_of("client.key"));
}

static void test_missing_and_garbage_cert_and_key(void **state)
{
    (void)state;
    char want[600];
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .cert_file = path_of("gone.pem"),
                        .key_file = path_of("client.key") };
    snprintf(want, sizeof want, "cert_file %s: cannot read", path_of("gone.pem"));
    expect_new_fails(&o, want, NULL);

    o.cert_file = path_of("garbage.pem");
    snprintf(want, sizeof want, "cert_file %s: is not a PEM certificate", path_of("garbage.pem"));
    expect_new_fails(&o, want, NULL);

    o.cert_file = path_of("client.pem");
    o.key_file = path_of("gone.key");
    snprintf(want, sizeof want, "key_file %s: cannot read", path_of("gone.key"));
    expect_new_fails(&o, want, NULL);

    o.key_file = path_of("garbage.pem");
    snprintf(want, sizeof want, "key_file %s: is not a PEM private key", path_of("garbage.pem"));
    expect_new_fails(&o, want, NULL);

    o.key_file = path_of("client-enc.key");
    expect_new_fails(&o, path_of("client-enc.key"), "encrypted");
}

static void test_key_not_matching_cert(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .cert_file = path_of("client.pem"),
                        .key_file = path_of("server.key") };
    char want[900];
    snprintf(want, sizeof want, "key_file %s: key does not match cert_file %s",
             path_of("server.key"), path_of("client.pem"));
    expect_new_fails(&o, want, NULL);
}

static void test_unknown_cipher(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem"),
                        .ciphers = "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256" };
    expect_new_fails(&o, "ECDHE-RSA-AES128-GCM-SHA256", "unknown cipher");
    o.ciphers = "::";
    expect_new_fails(&o, "ciphers", "empty");
}

static void test_min_version(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem"), .min_version = "1.1" };
    expect_new_fails(&o, "min_version", "\"1.1\"");
    o.min_version = "tls12";
    expect_new_fails(&o, "min_version", "tls12");

    o.min_version = "1.2";
    char *err = NULL;
    lume_tls *t = lume_tls_new(&o, &err);
    assert_non_null(t);
    lume_tls_free(t);

    o.min_version = "1.3";
    t = lume_tls_new(&o, &err);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) || defined(MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL)
    (void)0;   /* a build with TLS 1.3 may accept it */
#else
    assert_null(t);
    assert_contains(err, "min_version 1.3");
    assert_contains(err, "has no TLS 1.3");
#endif
    lume_tls_free(t);
    free(err);
}

static void test_conn_needs_a_name(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    char *err = NULL;
    lume_tls *t = lume_tls_new(&o, &err);
    assert_non_null(t);
    lume_tls_conn *c = lume_tls_conn_new(t, NULL, &err);
    assert_null(c);
    assert_contains(err, "server_name");
    free(err);
    lume_tls_free(t);
}

/* ---- in process: an mbedtls server over the same queues --------------------- */

typedef struct mem_server {
    mbedtls_ssl_config       conf;
    mbedtls_ssl_context      ssl;
    mbedtls_entropy_context  entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt         cert;
    mbedtls_pk_context       key;
    lume_tls_conn           *client;   /* its out-queue is our input */
    unsigned char           *out;      /* what we sent, not yet fed */
    size_t                   out_len, out_cap;
    size_t                   recv_max; /* take at most this many bytes per recv */
} mem_server;

static int ms_send(void *ctx, const unsigned char *buf, size_t len)
{
    mem_server *s = ctx;
    if (s->out_len + len > s->out_cap) {
        size_t cap = (s->out_len + len) * 2;
        unsigned char *p = realloc(s->out, cap);
        if (!p)
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        s->out = p;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, buf, len);
    s->out_len += len;
    return (int)len;
}

/* Read the client's out-queue, in small bites to exercise partial consume. */
static int ms_recv(void *ctx, unsigned char *buf, size_t len)
{
    mem_server *s = ctx;
    size_t n;
    const unsigned char *p = lume_tls_conn_out(s->client, &n);
    if (!p || n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > n)
        len = n;
    if (len > s->recv_max)
        len = s->recv_max;
    memcpy(buf, p, len);
    lume_tls_conn_out_consume(s->client, len);
    return (int)len;
}

static void ms_init(mem_server *s, lume_tls_conn *client)
{
    memset(s, 0, sizeof *s);
    s->client = client;
    s->recv_max = 5;
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_ssl_init(&s->ssl);
    mbedtls_entropy_init(&s->entropy);
    mbedtls_ctr_drbg_init(&s->drbg);
    mbedtls_x509_crt_init(&s->cert);
    mbedtls_pk_init(&s->key);
    assert_int_equal(mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy,
                                           (const unsigned char *)"srv", 3), 0);
    assert_int_equal(mbedtls_x509_crt_parse_file(&s->cert, path_of("server.pem")), 0);
    assert_int_equal(mbedtls_pk_parse_keyfile(&s->key, path_of("server.key"), NULL), 0);
    assert_int_equal(mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT), 0);
    mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
    assert_int_equal(mbedtls_ssl_conf_own_cert(&s->conf, &s->cert, &s->key), 0);
    assert_int_equal(mbedtls_ssl_setup(&s->ssl, &s->conf), 0);
    mbedtls_ssl_set_bio(&s->ssl, s, ms_send, ms_recv, NULL);
}

static void ms_free(mem_server *s)
{
    mbedtls_ssl_free(&s->ssl);
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_ctr_drbg_free(&s->drbg);
    mbedtls_entropy_free(&s->entropy);
    mbedtls_x509_crt_free(&s->cert);
    mbedtls_pk_free(&s->key);
    free(s->out);
}

/* Feed up to `chunk` bytes of what the server sent into the client. */
static size_t ms_deliver(mem_server *s, size_t chunk)
{
    size_t n = s->out_len < chunk ? s->out_len : chunk;
    if (n == 0)
        return 0;
    assert_int_equal(lume_tls_conn_feed(s->client, s->out, n), 0);
    memmove(s->out, s->out + n, s->out_len - n);
    s->out_len -= n;
    return n;
}

typedef struct mem_fx {
    lume_tls      *tls;
    lume_tls_conn *c;
    mem_server     srv;
    void          *mem[2];     /* test buffers, freed in teardown */
} mem_fx;

static int mem_setup(void **state)
{
    mem_fx *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    char *err = NULL;
    m->tls = lume_tls_new(&o, &err);
    if (m->tls)
        m->c = lume_tls_conn_new(m->tls, "localhost", &err);
    if (!m->c) {
        fprintf(stderr, "mem_setup: %s\n", err ? err : "?");
        free(err);
        lume_tls_free(m->tls);
        free(m);
        return -1;
    }
    ms_init(&m->srv, m->c);
    *state = m;
    return 0;
}

static int mem_teardown(void **state)
{
    mem_fx *m = *state;
    ms_free(&m->srv);
    free(m->mem[0]);
    free(m->mem[1]);
    lume_tls_conn_free(m->c);
    lume_tls_free(m->tls);
    free(m);
    return 0;
}

/* Handshake with every server byte fed to the client one at a time. */
static void mem_handshake(mem_fx *m)
{
    bool client_done = false, server_done = false;
    for (int i = 0; i < 200000 && !(client_done && server_done); i++) {
        if (!server_done) {
            int r = mbedtls_ssl_handshake(&m->srv.ssl);
            if (r == 0)
                server_done = true;
            else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
                fail_msg("server handshake: -0x%04x", (unsigned)-r);
        }
        ms_deliver(&m->srv, 1);
        if (!client_done) {
            int r = lume_tls_conn_handshake(m->c);
            if (r == 0)
                client_done = true;
            else if (r != -EAGAIN)
                fail_msg("client handshake: %d (%s)", r, lume_tls_conn_error(m->c));
        }
    }
    assert_true(client_done && server_done);
    assert_true(lume_tls_conn_ready(m->c));
    assert_int_equal(lume_tls_conn_handshake(m->c), 0);
}

static void test_mem_write_before_handshake(void **state)
{
    mem_fx *m = *state;
    assert_false(lume_tls_conn_ready(m->c));
    assert_int_equal(lume_tls_conn_write(m->c, "x", 1), -ENOTCONN);
    char b[4];
    /* read drives the handshake: ClientHello queued, nothing back yet */
    assert_int_equal(lume_tls_conn_read(m->c, b, sizeof b), -EAGAIN);
    size_t n;
    assert_non_null(lume_tls_conn_out(m->c, &n));
    assert_true(n > 0);
    lume_tls_conn_out_consume(m->c, n + 100);   /* over-consume clamps */
    assert_null(lume_tls_conn_out(m->c, &n));
    assert_int_equal(n, 0);
}

/* Records split at every odd boundary, read through a small buffer. */
static void test_mem_split_records(void **state)
{
    mem_fx *m = *state;
    mem_handshake(m);

    enum { N = 40000 };
    unsigned char *data = m->mem[0] = malloc(N), *got = m->mem[1] = malloc(N);
    assert_non_null(data);
    assert_non_null(got);
    for (size_t i = 0; i < N; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 8));

    /* server -> client: several records, delivered 7 bytes at a time */
    size_t off = 0;
    while (off < N) {
        int r = mbedtls_ssl_write(&m->srv.ssl, data + off, N - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
    size_t have = 0;
    while (have < N) {
        size_t fed = ms_deliver(&m->srv, 7);
        while (have < N) {
            ssize_t r = lume_tls_conn_read(m->c, got + have, N - have < 100 ? N - have : 100);
            if (r == -EAGAIN)
                break;
            if (r <= 0)
                fail_msg("read: %zd (%s)", r, lume_tls_conn_error(m->c));
            have += (size_t)r;
        }
        if (fed == 0 && have < N)
            fail_msg("stalled at %zu of %d", have, N);
    }
    assert_memory_equal(got, data, N);

    /* client -> server: one write, many records; the server takes 5 bytes
     * of the out-queue per recv, so the queue is consumed piecewise */
    m->srv.recv_max = 5;
    assert_int_equal(lume_tls_conn_write(m->c, data, N), 0);
    have = 0;
    memset(got, 0, N);
    while (have < N) {
        int r = mbedtls_ssl_read(&m->srv.ssl, got + have, N - have);
        if (r <= 0)
            fail_msg("server read: -0x%04x at %zu", (unsigned)-r, have);
        have += (size_t)r;
    }
    assert_memory_equal(got, data, N);
    size_t n;
    assert_null(lume_tls_conn_out(m->c, &n));
}

/* A damaged record is an error that names the cause, and sticks. */
static void test_mem_corrupt_record(void **state)
{
    mem_fx *m = *state;
    mem_handshake(m);
    assert_int_equal(mbedtls_ssl_write(&m->srv.ssl, (const unsigned char *)"secret", 6), 6);
    assert_true(m->srv.out_len > 10);
    m->srv.out[m->srv.out_len - 3] ^= 0x40;    /* flip a bit in the tag */
    ms_deliver(&m->srv, m->srv.out_len);
    char b[16];
    ssize_t r = lume_tls_conn_read(m->c, b, sizeof b);
    assert_true(r < 0 && r != -EAGAIN);
    assert_contains(lume_tls_conn_error(m->c), "TLS read failed");
    assert_false(lume_tls_conn_ready(m->c));
    assert_int_equal(lume_tls_conn_read(m->c, b, sizeof b), r);
}

/* close_notify from the peer reads as 0, and keeps reading as 0. */
static void test_mem_close_notify(void **state)
{
    mem_fx *m = *state;
    mem_handshake(m);
    assert_int_equal(mbedtls_ssl_write(&m->srv.ssl, (const unsigned char *)"bye", 3), 3);
    assert_int_equal(mbedtls_ssl_close_notify(&m->srv.ssl), 0);
    ms_deliver(&m->srv, m->srv.out_len);
    char b[16] = { 0 };
    assert_int_equal(lume_tls_conn_read(m->c, b, sizeof b), 3);
    assert_memory_equal(b, "bye", 3);
    assert_int_equal(lume_tls_conn_read(m->c, b, sizeof b), 0);
    assert_int_equal(lume_tls_conn_read(m->c, b, sizeof b), 0);
}

/* lume_tls may be freed before its connections. */
static void test_mem_free_order(void **state)
{
    (void)state;
    lume_tls_opts o = { .ca_file = path_of("ca.pem") };
    char *err = NULL;
    lume_tls *t = lume_tls_new(&o, &err);
    assert_non_null(t);
    lume_tls_conn *a = lume_tls_conn_new(t, "localhost", &err);
    lume_tls_conn *b = lume_tls_conn_new(t, "localhost", &err);
    assert_non_null(a);
    assert_non_null(b);
    lume_tls_free(t);
    assert_int_equal(lume_tls_conn_handshake(a), -EAGAIN);   /* config still alive */
    lume_tls_conn_free(a);
    lume_tls_conn_free(b);
    lume_tls_free(NULL);
    lume_tls_conn_free(NULL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_and_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_name_overrides_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_address_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_ip_address_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_host_without_san_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_system_store_rejects_private_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_name_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_ip_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_ipv6_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_dns_and_wildcards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_common_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insecure_accepts_and_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutual_tls_accepts_client_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutual_tls_without_cert_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutual_tls_foreign_cert_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cipher_list_is_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cipher_list_match_succeeds, setup, teardown),
        cmocka_unit_test(test_missing_ca_file),
        cmocka_unit_test(test_ca_file_is_a_directory),
        cmocka_unit_test(test_garbage_ca_file),
        cmocka_unit_test(test_cert_without_key),
        cmocka_unit_test(test_key_without_cert),
        cmocka_unit_test(test_missing_and_garbage_cert_and_key),
        cmocka_unit_test(test_key_not_matching_cert),
        cmocka_unit_test(test_unknown_cipher),
        cmocka_unit_test(test_min_version),
        cmocka_unit_test(test_conn_needs_a_name),
        cmocka_unit_test_setup_teardown(test_mem_write_before_handshake, mem_setup, mem_teardown),
        cmocka_unit_test_setup_teardown(test_mem_split_records, mem_setup, mem_teardown),
        cmocka_unit_test_setup_teardown(test_mem_corrupt_record, mem_setup, mem_teardown),
        cmocka_unit_test_setup_teardown(test_mem_close_notify, mem_setup, mem_teardown),
        cmocka_unit_test(test_mem_free_order),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
