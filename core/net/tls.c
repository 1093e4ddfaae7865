/* core/net/tls.c — TLS client connections with mbedtls (2.28) over memory.
 *
 * mbedtls never sees a socket. Each connection has two byte queues:
 *
 *   peer --ciphertext--> lume_tls_conn_feed() --> [in]  --> bio_recv --> mbedtls
 *   mbedtls --> bio_send --> [out] --> lume_tls_conn_out()/_consume() --> peer
 *
 * bio_recv returns MBEDTLS_ERR_SSL_WANT_READ when [in] is empty, which
 * surfaces as -EAGAIN from handshake/read; bio_send always takes everything
 * (the queue grows), so mbedtls_ssl_write never blocks.
 *
 * Connection states:
 *
 *   HANDSHAKE --handshake() == 0--> READY --read() == 0 (close_notify)--> READY
 *       |                             |
 *       +------- any hard error ------+--> FAILED (sticky: every later call
 *                                          returns the same code; error()
 *                                          keeps the words)
 *
 * The server's name is lume's to judge, not mbedtls's: a verify callback on
 * every connection decides it by RFC 6125 ("the server's name" below), so an
 * IP address is matched only against iPAddress entries.
 *
 * The shared lume_tls (config, CA chain, own cert/key, RNG) is reference
 * counted: each connection holds a reference, so lume_tls_free() may come
 * before the last lume_tls_conn_free(). Single-threaded, like the lws loop
 * that drives it. No logging and no allocation per record: the queues grow
 * to the largest burst and stay.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "check.h"
#include "log.h"

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define BUF_MIN        4096

#if defined(MBEDTLS_SSL_PROTO_TLS1_3) || defined(MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL)
#if defined(MBEDTLS_SSL_MINOR_VERSION_4)
#define HAVE_TLS13 1
#endif
#endif

struct lume_tls {
    int                      refs;
    mbedtls_ssl_config       conf;
    mbedtls_entropy_context  entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt         ca;
    mbedtls_x509_crt         own_cert;
    mbedtls_pk_context       own_key;
    int                     *ciphers;      /* 0-terminated, or NULL */
    char                    *server_name;  /* opts.server_name copy, or NULL */
    bool                     insecure;
};

/* A byte queue: live bytes are p[head .. end). */
typedef struct bytes {
    unsigned char *p;
    size_t         head, end, cap;
} bytes;

struct lume_tls_conn {
    lume_tls            *tls;
    mbedtls_ssl_context  ssl;
    bytes                in, out;
    bool                 ready;
    bool                 closed;      /* close_notify received */
    char                *name;        /* the name the certificate must carry, or NULL */
    unsigned char        ip[16];      /* the name as an IP address ... */
    size_t               ip_len;      /* ... 4 or 16 bytes; 0 = a DNS name */
    char                 name_err[400]; /* why the name did not match ("" = it did) */
    int                  failed;      /* 0, or the sticky negative code */
    char                 err[1024];
};

/* ---- byte queues --------------------------------------------------------- */

/* Append n bytes. 0, or -ENOMEM with the queue unchanged. */
static int bytes_put(bytes *b, const void *data, size_t n)
{
    lume_check(b->head <= b->end && b->end <= b->cap, "a queue's live bytes are p[head .. end)");
    if (n == 0)
        return 0;
    size_t live = b->end - b->head;
    if (b->cap - b->end < n && b->head > 0) {
        /* compact: the consumed prefix is wasted space */
        memmove(b->p, b->p + b->head, live);
        b->head = 0;
        b->end = live;
    }
    if (b->cap - b->end < n) {
        if (n > SIZE_MAX / 2 - live)
            return -ENOMEM;
        size_t want = b->cap ? b->cap : BUF_MIN;
        while (want < live + n)
            want *= 2;
        unsigned char *np = realloc(b->p, want);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = want;
    }
    memcpy(b->p + b->end, data, n);
    b->end += n;
    return 0;
}

static void bytes_drop(bytes *b, size_t k)
{
    lume_check(b->head <= b->end && b->end <= b->cap, "a queue's live bytes are p[head .. end)");
    size_t live = b->end - b->head;
    if (k >= live) {
        b->head = b->end = 0;
        return;
    }
    b->head += k;
    /* keep the queue compact when most of it is a consumed prefix */
    if (b->head >= BUF_MIN && b->head >= b->cap / 2) {
        memmove(b->p, b->p + b->head, live - k);
        b->end = live - k;
        b->head = 0;
    }
}

/* ---- mbedtls BIO callbacks ---------------------------------------------- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    lume_tls_conn *c = ctx;
    if (len > INT_MAX)
        len = INT_MAX;
    if (bytes_put(&c->out, buf, len) < 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    lume_tls_conn *c = ctx;
    size_t live = c->in.end - c->in.head;
    if (live == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > live)
        len = live;
    if (len > INT_MAX)
        len = INT_MAX;
    memcpy(buf, c->in.p + c->in.head, len);
    bytes_drop(&c->in, len);
    return (int)len;
}

/* ---- errors ---------------------------------------------------------------- */

#if MBEDTLS_VERSION_NUMBER < 0x03000000
static const char *alert_name(int d)
{
    switch (d) {
    case MBEDTLS_SSL_ALERT_MSG_CLOSE_NOTIFY:          return "close notify";
    case MBEDTLS_SSL_ALERT_MSG_UNEXPECTED_MESSAGE:    return "unexpected message";
    case MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC:        return "bad record mac";
    case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE:     return "handshake failure";
    case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:              return "bad certificate";
    case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT:      return "unsupported certificate";
    case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED:          return "certificate revoked";
    case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED:          return "certificate expired";
    case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN:          return "certificate unknown";
    case MBEDTLS_SSL_ALERT_MSG_ILLEGAL_PARAMETER:     return "illegal parameter";
    case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:            return "unknown CA";
    case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED:         return "access denied";
    case MBEDTLS_SSL_ALERT_MSG_DECODE_ERROR:          return "decode error";
    case MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR:         return "decrypt error";
    case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION:      return "protocol version";
    case MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY: return "insufficient security";
    case MBEDTLS_SSL_ALERT_MSG_INTERNAL_ERROR:        return "internal error";
    case MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME:     return "unrecognized name";
    case 116:                                         return "certificate required";
    default:                                          return "alert";
    }
}
#endif

/* Put the words for mbedtls error `ret` into c->err; return the code that
 * the public functions hand out, and make it sticky. */
static int conn_fail(lume_tls_conn *c, const char *what, int ret)
{
    lume_check(!c->failed, "FAILED is sticky: a failed connection does not fail again");
    char detail[512];
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
        /* the name is lume's check (verify_name), in lume's words */
        bool name_bad = (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) && c->name_err[0];
        if (name_bad)
            flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
        int k = flags ? mbedtls_x509_crt_verify_info(detail, sizeof detail, "", flags) : 0;
        if (k < 0 || (k == 0 && !name_bad))
            snprintf(detail, sizeof detail, "flags 0x%x", (unsigned)flags);
        else if (k == 0)
            detail[0] = '\0';
        /* one line per reason -> "a; b" */
        size_t len = strlen(detail);
        while (len > 0 && detail[len - 1] == '\n')
            detail[--len] = '\0';
        char joined[sizeof detail + 64];
        size_t j = 0;
        for (size_t i = 0; i < len && j + 3 < sizeof joined; i++) {
            if (detail[i] == '\n') {
                joined[j++] = ';';
                joined[j++] = ' ';
            } else {
                joined[j++] = detail[i];
            }
        }
        joined[j] = '\0';
        if (name_bad)
            snprintf(c->err, sizeof c->err, "certificate verify failed: %s%s%s", c->name_err,
                     j ? "; " : "", joined);
        else
            snprintf(c->err, sizeof c->err, "certificate verify failed: %s", joined);
        c->failed = -EPROTO;
        return c->failed;
    }
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
#if MBEDTLS_VERSION_NUMBER < 0x03000000
        int desc = c->ssl.in_msg ? c->ssl.in_msg[1] : -1;
        snprintf(c->err, sizeof c->err, "%s: the peer sent a fatal alert: %s (%d)",
                 what, alert_name(desc), desc);
#else
        snprintf(c->err, sizeof c->err, "%s: the peer sent a fatal alert", what);
#endif
        c->failed = -ECONNABORTED;
        return c->failed;
    }
    mbedtls_strerror(ret, detail, sizeof detail);
    snprintf(c->err, sizeof c->err, "%s: %s (-0x%04x)", what, detail, (unsigned)-ret);
    c->failed = ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? -ENOMEM : -EPROTO;
    return c->failed;
}

/* ---- the server's name (RFC 6125) ------------------------------------------
 * mbedtls 2.28's own check (mbedtls_ssl_set_hostname) compares the expected
 * name, as a string, with the certificate's dNSName entries (or its CN when
 * it has no subjectAltName), wildcards included. For mqtts://127.0.0.1 that
 * accepts a certificate whose CN or dNSName is "127.0.0.1" (or "*.0.0.1"),
 * and it never looks at iPAddress entries. So lume checks the name itself, in
 * verify_name, on the leaf (depth 0), and its verdict replaces mbedtls's
 * (the CN-mismatch flag is cleared or set by it alone):
 *
 *   1. An IP address (the host is an IPv4 or IPv6 literal; inet_aton's forms
 *      too, "127.1", since the resolver takes them) matches only an
 *      iPAddress subjectAltName holding the same 4 or 16 bytes: never a
 *      dNSName, never the CN (RFC 6125 1.7.2, RFC 5280 4.2.1.6). No SNI is
 *      sent for it (RFC 6066 3 forbids literal addresses there).
 *   2. A DNS name matches a dNSName subjectAltName, ASCII case-insensitively,
 *      one trailing dot ignored on either side. A wildcard counts only as the
 *      complete left-most label ("*.example.com"), stands for exactly one
 *      non-empty label, and needs at least two labels after it ("*.com" and
 *      "f*.example.com" match nothing) — RFC 6125 6.4.3, with the two
 *      restrictions it recommends.
 *   3. The CN is consulted only for a DNS name, and only when the
 *      certificate has no dNSName at all (RFC 6125 6.4.4), with the rules of
 *      2. Kept because self-made broker certificates (openssl req -subj
 *      /CN=broker) often have no subjectAltName, and RFC 6125 still allows
 *      it; a certificate that has any dNSName is judged by those alone.
 *   4. Bytes that cannot be in a host name (NUL, controls, non-ASCII) in a
 *      presented name make it match nothing: no prefix tricks.
 */

enum { GN_DNS = 2, GN_IP = 7 };   /* GeneralName tags: dNSName, iPAddress */

typedef bool (*san_fn)(void *ud, int kind, const unsigned char *p, size_t n);

/* Call each(ud, kind, p, n) for every dNSName and iPAddress in crt's
 * subjectAltName, in order, until it returns true. 1 when it did, 0 when
 * the walk ended (or there is no subjectAltName), -1 when the extension is
 * malformed (mbedtls parsed it, so this does not happen in practice). */
static int san_walk(const mbedtls_x509_crt *crt, san_fn each, void *ud)
{
    if (!(crt->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME) || !crt->v3_ext.p)
        return 0;
    unsigned char *p = crt->v3_ext.p;
    const unsigned char *end = p + crt->v3_ext.len;
    size_t n;
    /* Extensions ::= SEQUENCE OF Extension */
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
        return -1;
    end = p + n;
    while (p < end) {
        /* Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT
         *                          FALSE, extnValue OCTET STRING } */
        if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
            return -1;
        unsigned char *ext_end = p + n;
        mbedtls_asn1_buf oid = { .tag = MBEDTLS_ASN1_OID };
        if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID))
            return -1;
        oid.p = p;
        p += oid.len;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) != 0) {
            p = ext_end;
            continue;
        }
        int critical;
        (void)mbedtls_asn1_get_bool(&p, ext_end, &critical);  /* optional */
        if (mbedtls_asn1_get_tag(&p, ext_end, &n, MBEDTLS_ASN1_OCTET_STRING))
            return -1;
        /* GeneralNames ::= SEQUENCE OF GeneralName */
        const unsigned char *names_end = p + n;
        if (mbedtls_asn1_get_tag(&p, names_end, &n,
                                 MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
            return -1;
        names_end = p + n;
        while (p < names_end) {
            unsigned char tag = *p++;
            if (mbedtls_asn1_get_len(&p, names_end, &n))
                return -1;
            /* dNSName [2] IA5String and iPAddress [7] OCTET STRING, both
             * implicitly tagged, primitive */
            if ((tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | GN_DNS) ||
                 tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | GN_IP)) &&
                each(ud, tag & 0x1f, p, n))
                return 1;
            p += n;
        }
        return 0;
    }
    return 0;
}

static bool is_host_byte(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f;
}

/* Does the presented DNS name p[0..n) (a dNSName or CN) match the
 * reference name ref? Rules 2 and 4 above. */
static bool dns_match(const unsigned char *p, size_t n, const char *ref)
{
    size_t rn = strlen(ref);
    if (rn && ref[rn - 1] == '.')
        rn--;
    if (n && p[n - 1] == '.')
        n--;
    if (n == 0 || rn == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_host_byte(p[i]))
            return false;
    if (p[0] == '*') {
        /* "*." + at least two labels, no other '*' */
        if (n < 2 || p[1] != '.' || memchr(p + 1, '*', n - 1))
            return false;
        const unsigned char *rest = p + 1;     /* ".example.com" */
        size_t rest_n = n - 1;
        const unsigned char *dot = memchr(rest + 1, '.', rest_n - 1);
        if (rest_n < 4 || !dot || dot == rest + 1 || dot == rest + rest_n - 1)
            return false;
        const char *rdot = memchr(ref, '.', rn);
        if (!rdot || rdot == ref) /* the label the wildcard stands for is empty */
            return false;
        size_t tail = rn - (size_t)(rdot - ref);
        return tail == rest_n && !strncasecmp(rdot, (const char *)rest, rest_n);
    }
    if (memchr(p, '*', n))
        return false;
    return n == rn && !strncasecmp(ref, (const char *)p, n);
}

typedef struct name_check {
    const lume_tls_conn *c;
    bool                 has_dns;
    char                 seen[200];   /* "DNS:a, IP:1.2.3.4", for the message */
    size_t               seen_len;
} name_check;

static void seen_add(name_check *nc, const char *what)
{
    size_t k = strlen(what);
    if (nc->seen_len + k + 7 >= sizeof nc->seen) {
        if (nc->seen_len + 5 < sizeof nc->seen && !strstr(nc->seen, "..."))
            nc->seen_len += (size_t)snprintf(nc->seen + nc->seen_len,
                                             sizeof nc->seen - nc->seen_len, ", ...");
        return;
    }
    nc->seen_len += (size_t)snprintf(nc->seen + nc->seen_len, sizeof nc->seen - nc->seen_len,
                                     "%s%s", nc->seen_len ? ", " : "", what);
}

static bool san_each(void *ud, int kind, const unsigned char *p, size_t n)
{
    name_check *nc = ud;
    const lume_tls_conn *c = nc->c;
    char shown[128];
    if (kind == GN_IP) {
        char a[INET6_ADDRSTRLEN] = "?";
        if (n == 4 || n == 16)
            inet_ntop(n == 4 ? AF_INET : AF_INET6, p, a, sizeof a);
        snprintf(shown, sizeof shown, "IP:%s", a);
        seen_add(nc, shown);
        return c->ip_len && n == c->ip_len && !memcmp(p, c->ip, n);
    }
    nc->has_dns = true;
    char q[80];
    lume_quote(q, sizeof q, (const char *)p, n, 48);
    snprintf(shown, sizeof shown, "DNS:%s", q);
    seen_add(nc, shown);
    return !c->ip_len && dns_match(p, n, c->name);
}

/* Rules 1-4: true when crt is for c->name; otherwise c->name_err says why. */
static bool name_matches(lume_tls_conn *c, const mbedtls_x509_crt *crt)
{
    name_check nc = { .c = c };
    int r = san_walk(crt, san_each, &nc);
    if (r == 1)
        return true;
    if (!c->ip_len && r == 0 && !nc.has_dns) {
        for (const mbedtls_x509_name *nm = &crt->subject; nm; nm = nm->next) {
            if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &nm->oid) != 0)
                continue;
            char q[80], shown[128];
            lume_quote(q, sizeof q, (const char *)nm->val.p, nm->val.len, 48);
            snprintf(shown, sizeof shown, "CN=%s", q);
            seen_add(&nc, shown);
            if (dns_match(nm->val.p, nm->val.len, c->name))
                return true;
        }
    } else if (c->ip_len) {
        for (const mbedtls_x509_name *nm = &crt->subject; nm; nm = nm->next)
            if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &nm->oid) == 0) {
                char q[80], shown[128];
                lume_quote(q, sizeof q, (const char *)nm->val.p, nm->val.len, 48);
                snprintf(shown, sizeof shown, "CN=%s (not used for an IP address)", q);
                seen_add(&nc, shown);
            }
    }
    if (r < 0)
        snprintf(c->name_err, sizeof c->name_err,
                 "the certificate's subjectAltName extension is malformed");
    else if (c->ip_len)
        snprintf(c->name_err, sizeof c->name_err,
                 "name does not match: %s is an IP address, which only an iPAddress "
                 "subjectAltName can match; the certificate has %s", c->name,
                 nc.seen_len ? nc.seen : "no names");
    else
        snprintf(c->name_err, sizeof c->name_err,
                 "name does not match: \"%s\" is in no dNSName subjectAltName (nor the CN, "
                 "when there is no dNSName); the certificate has %s", c->name,
                 nc.seen_len ? nc.seen : "no names");
    return false;
}

static int verify_name(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    lume_tls_conn *c = ctx;
    if (depth != 0 || !c->name)
        return 0;
    c->name_err[0] = '\0';
    if (name_matches(c, crt))
        *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    else
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* ---- config ---------------------------------------------------------------- */

/* 0 when path is a readable regular file; otherwise *err says why. */
static int check_file(const char *label, const char *path, char **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = lume_strdupf("%s %s: cannot read (%s)", label, path, strerror(errno));
        return -1;
    }
    struct stat st;
    int r = fstat(fd, &st);
    close(fd);
    if (r == 0 && S_ISDIR(st.st_mode)) {
        *err = lume_strdupf("%s %s: cannot read (%s)", label, path, strerror(EISDIR));
        return -1;
    }
    return 0;
}

static void mbed_words(int ret, char *buf, size_t cap)
{
    mbedtls_strerror(ret, buf, cap);
}

static int load_ca(lume_tls *t, const char *path, bool system_store, char **err)
{
    if (system_store && access(path, F_OK) != 0) {
        *err = lume_strdupf("ca_file not set and the system CA store %s is missing "
                            "(install ca-certificates, or set ca_file)", path);
        return -1;
    }
    if (check_file("ca_file", path, err) < 0)
        return -1;
    int r = mbedtls_x509_crt_parse_file(&t->ca, path);
    /* r > 0: some certificates of a bundle did not parse; fine as long as
     * at least one did (the system bundle may hold some mbedtls rejects). */
    if (r < 0 || t->ca.version == 0) {
        char w[200];
        mbed_words(r < 0 ? r : MBEDTLS_ERR_X509_INVALID_FORMAT, w, sizeof w);
        *err = lume_strdupf("ca_file %s: is not a PEM certificate (%s)", path, w);
        return -1;
    }
    return 0;
}

static int load_own(lume_tls *t, const lume_tls_opts *o, char **err)
{
    if (!o->cert_file && !o->key_file)
        return 0;
    if (!o->cert_file) {
        *err = lume_strdupf("key_file %s given without cert_file", o->key_file);
        return -1;
    }
    if (!o->key_file) {
        *err = lume_strdupf("cert_file %s given without key_file", o->cert_file);
        return -1;
    }
    char w[200];
    if (check_file("cert_file", o->cert_file, err) < 0)
        return -1;
    int r = mbedtls_x509_crt_parse_file(&t->own_cert, o->cert_file);
    if (r < 0 || t->own_cert.version == 0) {
        mbed_words(r < 0 ? r : MBEDTLS_ERR_X509_INVALID_FORMAT, w, sizeof w);
        *err = lume_strdupf("cert_file %s: is not a PEM certificate (%s)", o->cert_file, w);
        return -1;
    }
    if (check_file("key_file", o->key_file, err) < 0)
        return -1;
    r = mbedtls_pk_parse_keyfile(&t->own_key, o->key_file, NULL);
    if (r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
        *err = lume_strdupf("key_file %s: is encrypted (lume needs an unencrypted key)",
                            o->key_file);
        return -1;
    }
    if (r < 0) {
        mbed_words(r, w, sizeof w);
        *err = lume_strdupf("key_file %s: is not a PEM private key (%s)", o->key_file, w);
        return -1;
    }
    if (mbedtls_pk_check_pair(&t->own_cert.pk, &t->own_key) != 0) {
        *err = lume_strdupf("key_file %s: key does not match cert_file %s",
                            o->key_file, o->cert_file);
        return -1;
    }
    return 0;
}

/* "A:B:C" -> 0-terminated id array in t->ciphers. Accepts mbedtls' names
 * (TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256) and IANA's underscore spelling. */
static int parse_ciphers(lume_tls *t, const char *list, char **err)
{
    size_t max = 1;
    for (const char *p = list; *p; p++)
        max += *p == ':';
    t->ciphers = calloc(max + 1, sizeof *t->ciphers);
    char *copy = strdup(list);
    if (!t->ciphers || !copy) {
        free(copy);
        *err = lume_strdupf("ciphers: out of memory");
        return -1;
    }
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t len = strlen(tok);
        while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
            tok[--len] = '\0';
        if (len == 0)
            continue;
        char name[128];
        if (len >= sizeof name) {
            *err = lume_strdupf("ciphers: unknown cipher suite \"%s\"", tok);
            free(copy);
            return -1;
        }
        for (size_t i = 0; i <= len; i++)
            name[i] = tok[i] == '_' ? '-' : tok[i];
        int id = mbedtls_ssl_get_ciphersuite_id(name);
        if (id == 0) {
            *err = lume_strdupf("ciphers: unknown cipher suite \"%s\" (names look like "
                                "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256)", tok);
            free(copy);
            return -1;
        }
        t->ciphers[n++] = id;
    }
    free(copy);
    if (n == 0) {
        *err = lume_strdupf("ciphers: empty list \"%s\"", list);
        return -1;
    }
    t->ciphers[n] = 0;
    mbedtls_ssl_conf_ciphersuites(&t->conf, t->ciphers);
    return 0;
}

static int set_min_version(lume_tls *t, const char *v, char **err)
{
    if (!v || !strcmp(v, "1.2")) {
        mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        return 0;
    }
    if (!strcmp(v, "1.3")) {
#ifdef HAVE_TLS13
        mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_4);
        mbedtls_ssl_conf_max_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_4);
        return 0;
#else
        *err = lume_strdupf("min_version 1.3: this mbedtls (%s) has no TLS 1.3",
                            MBEDTLS_VERSION_STRING);
        return -1;
#endif
    }
    *err = lume_strdupf("min_version \"%s\": must be \"1.2\" or \"1.3\"", v);
    return -1;
}

static void tls_unref(lume_tls *t)
{
    lume_check(!t || t->refs > 0, "each connection holds one reference to its lume_tls");
    if (!t || --t->refs > 0)
        return;
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_ctr_drbg_free(&t->drbg);
    mbedtls_entropy_free(&t->entropy);
    mbedtls_x509_crt_free(&t->ca);
    mbedtls_x509_crt_free(&t->own_cert);
    mbedtls_pk_free(&t->own_key);
    free(t->ciphers);
    free(t->server_name);
    free(t);
}

lume_tls *lume_tls_new(const lume_tls_opts *opts, char **err)
{
    char *e = NULL;
    lume_tls_opts none = { 0 };
    const lume_tls_opts *o = opts ? opts : &none;
    lume_tls *t = calloc(1, sizeof *t);
    if (!t) {
        e = lume_strdupf("tls: out of memory");
        goto err;
    }
    /* everything in a freeable state before anything can fail */
    t->refs = 1;
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_entropy_init(&t->entropy);
    mbedtls_ctr_drbg_init(&t->drbg);
    mbedtls_x509_crt_init(&t->ca);
    mbedtls_x509_crt_init(&t->own_cert);
    mbedtls_pk_init(&t->own_key);
    t->insecure = o->insecure;

    static const char pers[] = "lume-tls";
    int r = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
                                  (const unsigned char *)pers, sizeof pers - 1);
    if (r != 0) {
        char w[200];
        mbed_words(r, w, sizeof w);
        e = lume_strdupf("tls: cannot seed the random generator (%s)", w);
        goto err;
    }
    r = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
                                    MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT);
    if (r != 0) {
        char w[200];
        mbed_words(r, w, sizeof w);
        e = lume_strdupf("tls: cannot set up the configuration (%s)", w);
        goto err;
    }
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);

    if (set_min_version(t, o->min_version, &e) < 0)
        goto err;
    if (o->ciphers && parse_ciphers(t, o->ciphers, &e) < 0)
        goto err;

    /* With verification off the CA chain is never consulted: load it only
     * when named, so a bad path is still reported. */
    if (o->ca_file || !o->insecure) {
        if (load_ca(t, o->ca_file ? o->ca_file : SYSTEM_CA_FILE, !o->ca_file, &e) < 0)
            goto err;
        mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
    }
    if (load_own(t, o, &e) < 0)
        goto err;
    if (o->cert_file) {
        r = mbedtls_ssl_conf_own_cert(&t->conf, &t->own_cert, &t->own_key);
        if (r != 0) {
            e = lume_strdupf("cert_file %s: cannot use it (-0x%04x)", o->cert_file,
                             (unsigned)-r);
            goto err;
        }
    }
    if (o->server_name && !(t->server_name = strdup(o->server_name))) {
        e = lume_strdupf("tls: out of memory");
        goto err;
    }

    if (o->insecure) {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
        lume_log(LUME_LOG_WARN, "tls",
                 "TLS verification disabled (insecure): the server's certificate "
                 "and name are not checked");
    } else {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    return t;

err:
    tls_unref(t);
    if (err)
        *err = e;
    else
        free(e);
    return NULL;
}

void lume_tls_free(lume_tls *t)
{
    tls_unref(t);
}

/* ---- connections ------------------------------------------------------------ */

lume_tls_conn *lume_tls_conn_new(lume_tls *t, const char *host, char **err)
{
    char *e = NULL;
    lume_tls_conn *c = calloc(1, sizeof *c);
    if (!c) {
        e = lume_strdupf("tls: out of memory");
        goto err;
    }
    mbedtls_ssl_init(&c->ssl);
    const char *name = t->server_name ? t->server_name : host;
    if ((!name || !*name) && !t->insecure) {
        e = lume_strdupf("tls: no host or server_name to verify the server certificate against");
        goto err;
    }
    if (name && *name && !(c->name = strdup(name))) {
        e = lume_strdupf("tls: out of memory");
        goto err;
    }
    struct in_addr v4;
    if (c->name && strspn(c->name, "0123456789abcdefABCDEFxX.") == strlen(c->name) &&
        inet_aton(c->name, &v4)) {
        memcpy(c->ip, &v4, 4);
        c->ip_len = 4;
    } else if (c->name && inet_pton(AF_INET6, c->name, c->ip) == 1) {
        c->ip_len = 16;
    }
    int r = mbedtls_ssl_setup(&c->ssl, &t->conf);
    /* SNI and mbedtls's own name check for a DNS name (verify_name has the
     * last word); none for an IP address (no SNI for literals, RFC 6066) */
    if (r == 0)
        r = mbedtls_ssl_set_hostname(&c->ssl, c->ip_len ? NULL : c->name);
    if (r != 0) {
        char w[200];
        mbed_words(r, w, sizeof w);
        e = lume_strdupf("tls: cannot set up the connection to %s (%s)",
                         name ? name : "?", w);
        goto err;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    mbedtls_ssl_set_verify(&c->ssl, verify_name, c);
    c->tls = t;
    t->refs++;
    return c;

err:
    if (c) {
        mbedtls_ssl_free(&c->ssl);
        free(c->name);
        free(c);
    }
    if (err)
        *err = e;
    else
        free(e);
    return NULL;
}

void lume_tls_conn_free(lume_tls_conn *c)
{
    if (!c)
        return;
    mbedtls_ssl_free(&c->ssl);
    free(c->name);
    free(c->in.p);
    free(c->out.p);
    tls_unref(c->tls);
    free(c);
}

int lume_tls_conn_feed(lume_tls_conn *c, const void *data, size_t n)
{
    return bytes_put(&c->in, data, n);
}

int lume_tls_conn_handshake(lume_tls_conn *c)
{
    if (c->failed)
        return c->failed;
    if (c->ready)
        return 0;
    int r = mbedtls_ssl_handshake(&c->ssl);
    if (r == 0) {
        c->ready = true;
        return 0;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
        return -EAGAIN;
    return conn_fail(c, "TLS handshake failed", r);
}

bool lume_tls_conn_ready(const lume_tls_conn *c)
{
    return c->ready && !c->failed;
}

ssize_t lume_tls_conn_read(lume_tls_conn *c, void *buf, size_t cap)
{
    if (!c->ready) {
        int h = lume_tls_conn_handshake(c);
        if (h != 0)
            return h;
    }
    if (c->failed)
        return c->failed;
    if (c->closed)
        return 0;
    if (cap == 0)
        return -EINVAL;
    int r = mbedtls_ssl_read(&c->ssl, buf, cap);
    if (r > 0)
        return r;
    if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        c->closed = true;
        return 0;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
        return -EAGAIN;
    return conn_fail(c, "TLS read failed", r);
}

int lume_tls_conn_write(lume_tls_conn *c, const void *plain, size_t n)
{
    if (c->failed)
        return c->failed;
    if (!c->ready)
        return -ENOTCONN;
    const unsigned char *p = plain;
    size_t off = 0;
    while (off < n) {
        int r = mbedtls_ssl_write(&c->ssl, p + off, n - off);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        /* With the memory BIO sends never block; anything else (WANT_READ
         * would mean renegotiation, which the client refuses) is fatal. */
        return conn_fail(c, "TLS write failed", r ? r : MBEDTLS_ERR_SSL_INTERNAL_ERROR);
    }
    return 0;
}

const void *lume_tls_conn_out(lume_tls_conn *c, size_t *n)
{
    size_t live = c->out.end - c->out.head;
    *n = live;
    return live ? c->out.p + c->out.head : NULL;
}

void lume_tls_conn_out_consume(lume_tls_conn *c, size_t k)
{
    bytes_drop(&c->out, k);
}

const char *lume_tls_conn_error(const lume_tls_conn *c)
{
    return c->err;
}
