/* core/net/fetch.c — see fetch.h.
 *
 * One fetch is one lws HTTP/1.1 client connection with lws's own TLS:
 *
 *   lume_fetch_start ─► CONNECTING ──(ESTABLISHED_CLIENT_HTTP, 200)──► BODY
 *        │                  │                                        │
 *        │                  ├─(CLIENT_CONNECTION_ERROR)─┐            ├─ RECEIVE_CLIENT_HTTP_READ
 *        │                  ├─(status != 200)───────────┤            │   (appends; > max_bytes: fail)
 *        │                  └─(timer)───────────────────┤            ├─(COMPLETED / closed) ─► done(0)
 *        │                                              ▼            └─(timer, close early)─► done(<0)
 *        └─(lws fails inside the call) ─► 0-delay timer ─► done(<0)
 *
 * Invariants:
 *  1. The callback runs at most once, from the loop, never inside
 *     lume_fetch_start; after it returns the fetch is freed.
 *  2. Once a fetch has an outcome (or is cancelled) it is detached from its
 *     wsi (opaque user data NULL), so later lws callbacks for that wsi do
 *     nothing; a wsi still open is killed asynchronously.
 *  3. Both timers are cancelled before the fetch is freed.
 *
 * Status codes given to the callback: 0; -EIO (HTTP status other than 200,
 * connection or TLS failure, connection closed before the body was whole);
 * -EFBIG (body larger than max_bytes); -ETIMEDOUT; -ENOMEM.
 *
 * The vhost. TLS settings (CA file, client certificate) belong to an lws
 * vhost, and a vhost cannot be destroyed cheaply while the loop runs. So
 * fetch keeps one vhost per lws context and TLS configuration, created the
 * first time it is needed and found again by name with
 * lws_get_vhost_by_name(): "lume-fetch" for the system store, or
 * "lume-fetch ca=<file> cert=<file> key=<file>" otherwise. Because the
 * lookup is in the loop's own context, a vhost goes away with its loop and a
 * later loop at the same address cannot see a stale one (a registry keyed by
 * the loop pointer could). lws keeps the vhost's name pointer, so the names
 * are interned in a small process-wide list that is never freed: one entry
 * per distinct TLS configuration the process ever uses.
 *
 * Trust: the vhost trusts exactly tls->ca_file (or the system bundle
 * /etc/ssl/certs/ca-certificates.crt): lws's extra loading of the OS store is
 * switched off (LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS), so a private CA
 * given in ca_file is the only anchor. tls->min_version and tls->ciphers are
 * not applied here (their names are mbedtls'; lws may run on OpenSSL): the
 * TLS library's defaults hold, as for wss:// in net.c.
 *
 * Bodies without a Content-Length (HTTP/1.0 servers) end when the server
 * closes the connection; a connection cut short then looks complete, which
 * is why callers check the bundle's sha256. With a Content-Length a short
 * body is an error. */
#include "fetch.h"
#include "net.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"
#include "log.h"

#define RX_CHUNK       16384
#define DEFAULT_CA     "/etc/ssl/certs/ca-certificates.crt"
#define PROTOCOL_NAME  "lume-fetch"

struct lume_fetch {
    lume_loop     *loop;
    struct lws    *wsi;          /* NULL once detached */
    lume_timer     timeout;
    lume_timer     later;        /* delivers an outcome reached inside start */
    lume_fetch_cb  cb;
    void          *ud;
    char          *shown;        /* the URL for messages (query elided) */
    char          *host;         /* address to connect to */
    char          *path;         /* path and query sent in the request */
    char          *name;         /* the name the certificate must carry */
    const char    *ca;           /* the trusted CA file (interned) */
    bool           insecure;
    int            port;
    int            timeout_ms;
    size_t         max;
    int            http_status;
    int64_t        content_length; /* -1: not given */
    unsigned char *body;
    size_t         len, cap;
    bool           in_start;     /* inside lume_fetch_start */
    bool           in_cb;        /* inside the user's callback */
    bool           done;         /* has an outcome (or was cancelled) */
    int            res_status;   /* the outcome, while it waits for 'later' */
    char          *res_err;
};

/* ---- URL ------------------------------------------------------------------ */

typedef struct url_parts {
    char host[256];
    int  port;
    const char *path;      /* into the URL: from '/' or '?', up to '#' */
    size_t      path_len;
    size_t      query_at;  /* offset of '?' in path, or path_len */
} url_parts;

/* 0, or -EINVAL with *err. */
static int parse_url(const char *url, url_parts *u, char **err)
{
    memset(u, 0, sizeof *u);
    if (!url || strncasecmp(url, "https://", 8) != 0) {
        *err = lume_strdupf("only https:// URLs are fetched, got '%s'", url ? url : "");
        return -EINVAL;
    }
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            *err = lume_strdupf("fetch URL '%s': contains a space or control character", url);
            return -EINVAL;
        }
    const char *a = url + 8;
    size_t alen = strcspn(a, "/?#");
    const char *aend = a + alen;
    if (memchr(a, '@', alen)) {
        *err = lume_strdupf("fetch URL '%s': user names or passwords in URLs are not supported",
                            url);
        return -EINVAL;
    }
    const char *h = a, *hend, *port = NULL;
    if (*h == '[') {
        hend = memchr(h, ']', alen);
        if (!hend) {
            *err = lume_strdupf("fetch URL '%s': unterminated [IPv6 address]", url);
            return -EINVAL;
        }
        h++;
        if (hend + 1 < aend) {
            if (hend[1] != ':') {
                *err = lume_strdupf("fetch URL '%s': unexpected text after ]", url);
                return -EINVAL;
            }
            port = hend + 2;
        }
    } else {
        hend = memchr(h, ':', alen);
        if (hend)
            port = hend + 1;
        else
            hend = aend;
    }
    if (hend == h || (size_t)(hend - h) >= sizeof u->host) {
        *err = lume_strdupf("fetch URL '%s': %s host name", url, hend == h ? "no" : "too long a");
        return -EINVAL;
    }
    const char *bad = lume_url_host_bad(h, (size_t)(hend - h), *hend == ']');
    if (bad) {
        char what[32];
        lume_url_byte_name(what, sizeof what, bad);
        *err = lume_strdupf("fetch URL '%s': the host may not hold %s (a host is letters, "
                            "digits, '-', '.' and '_', or an [IPv6 address])", url, what);
        return -EINVAL;
    }
    memcpy(u->host, h, (size_t)(hend - h));
    u->port = 443;
    if (port) {
        long p = 0;
        const char *c = port;
        for (; c < aend && isdigit((unsigned char)*c) && p <= 65535; c++)
            p = p * 10 + (*c - '0');
        if (c != aend || c == port || p < 1 || p > 65535) {
            *err = lume_strdupf("fetch URL '%s': bad port", url);
            return -EINVAL;
        }
        u->port = (int)p;
    }
    u->path = aend;
    u->path_len = strcspn(aend, "#");
    const char *q = memchr(u->path, '?', u->path_len);
    u->query_at = q ? (size_t)(q - u->path) : u->path_len;
    return 0;
}

/* ---- vhosts, one per context and TLS configuration ---------------------------- */

static pthread_mutex_t g_names_mu = PTHREAD_MUTEX_INITIALIZER;
static struct name { struct name *next; char s[]; } *g_names;

/* A copy of s that lives as long as the process (lws keeps vhost names). */
static const char *intern(const char *s)
{
    pthread_mutex_lock(&g_names_mu);
    struct name *n;
    for (n = g_names; n; n = n->next)
        if (!strcmp(n->s, s))
            break;
    if (!n) {
        size_t len = strlen(s) + 1;
        n = malloc(sizeof *n + len);
        if (n) {
            memcpy(n->s, s, len);
            n->next = g_names;
            g_names = n;
        }
    }
    pthread_mutex_unlock(&g_names_mu);
    return n ? n->s : NULL;
}

static int cb_fetch(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);

static const struct lws_protocols fetch_protocols[] = {
    {.name = PROTOCOL_NAME, .callback = cb_fetch, .rx_buffer_size = RX_CHUNK},
    {.name = NULL}};

/* The fetch vhost of this loop for these TLS settings; NULL with *err. */
static struct lws_vhost *fetch_vhost(lume_loop *loop, const lume_tls_opts *tls,
                                     const char **ca_out, char **err)
{
    const char *ca = tls && tls->ca_file ? tls->ca_file : DEFAULT_CA;
    *ca_out = intern(ca);
    const char *cert = tls ? tls->cert_file : NULL;
    const char *key = tls ? tls->key_file : NULL;
    char *want;
    if (!strcmp(ca, DEFAULT_CA) && !cert && !key)
        want = lume_strdupf("%s", PROTOCOL_NAME);
    else
        want = lume_strdupf("%s ca=%s cert=%s key=%s", PROTOCOL_NAME, ca, cert ? cert : "",
                            key ? key : "");
    const char *name = want ? intern(want) : NULL;
    free(want);
    if (!name || !*ca_out) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    struct lws_context *ctx = lume_loop_lws(loop);
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, name);
    if (vh)
        return vh;

    /* lws only logs an unreadable CA file and then fails every handshake:
     * say what is wrong here instead. */
    FILE *fp = fopen(ca, "r");
    if (!fp) {
        *err = lume_strdupf("CA file %s: %s", ca, strerror(errno));
        return NULL;
    }
    fclose(fp);
    if ((cert && !key) || (key && !cert)) {
        *err = lume_strdupf("a client certificate needs both cert_file and key_file");
        return NULL;
    }

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = fetch_protocols;
    info.vhost_name = name;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    info.client_ssl_ca_filepath = ca;
    info.client_ssl_cert_filepath = cert;
    info.client_ssl_private_key_filepath = key;
    vh = lws_create_vhost(ctx, &info);
    if (!vh)
        *err = lume_strdupf("cannot set up TLS (ca_file %s%s%s)", ca, cert ? ", cert_file " : "",
                            cert ? cert : "");
    return vh;
}

/* ---- outcomes -------------------------------------------------------------- */

static void fetch_free(lume_fetch *f)
{
    lume_timer_cancel(&f->timeout);
    lume_timer_cancel(&f->later);
    free(f->res_err);
    free(f->body);
    free(f->shown);
    free(f->host);
    free(f->path);
    free(f->name);
    free(f);
}

/* Let go of the wsi: later callbacks for it see no fetch. kill: close it
 * (asynchronously) too; not when lws is closing it already. */
static void detach(lume_fetch *f, struct lws *wsi, bool kill)
{
    if (!wsi)
        wsi = f->wsi;
    if (wsi) {
        lws_set_opaque_user_data(wsi, NULL);
        if (kill)
            lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
    }
    f->wsi = NULL;
}

static void deliver(lume_fetch *f)
{
    lume_check(f->done && !f->in_start && !f->in_cb,
               "invariant 1: the callback runs at most once, never inside lume_fetch_start");
    lume_check(!f->wsi, "invariant 2: a fetch with an outcome is detached from its wsi");
    f->in_cb = true;
    if (f->res_status == 0)
        f->cb(f->ud, 0, NULL, f->body ? (const void *)f->body : "", f->len);
    else
        f->cb(f->ud, f->res_status, f->res_err ? f->res_err : "out of memory", NULL, 0);
    fetch_free(f);
}

static void later_fired(lume_timer *t)
{
    deliver(t->ud);
}

/* The fetch has its outcome: status 0 (the body is f->body) or an error
 * whose cause is printf'd into the message. Detaches from wsi (killing it
 * when kill), then calls back, or, inside lume_fetch_start, arranges for
 * that to happen from the loop. f is gone afterwards unless in_start. */
static void finish(lume_fetch *f, struct lws *wsi, bool kill, int status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void finish(lume_fetch *f, struct lws *wsi, bool kill, int status, const char *fmt, ...)
{
    if (f->done)
        return;
    f->done = true;
    lume_timer_cancel(&f->timeout);
    detach(f, wsi, kill);
    f->res_status = status;
    if (status != 0) {
        char cause[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cause, sizeof cause, fmt, ap);
        va_end(ap);
        f->res_err = lume_strdupf("fetch %s: %s", f->shown, cause);
    }
    if (f->in_start) {
        lume_timer_start(&f->later, 0);
        return;
    }
    deliver(f);
}

static void timeout_fired(lume_timer *t)
{
    lume_fetch *f = t->ud;
    finish(f, NULL, true, -ETIMEDOUT, "timed out after %d ms", f->timeout_ms);
}

/* ---- lws ------------------------------------------------------------------ */

static int body_append(lume_fetch *f, const void *p, size_t n)
{
    if (n > f->max - f->len)
        return -EFBIG;
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 16384;
        while (cap < f->len + n)
            cap *= 2;
        if (cap > f->max)
            cap = f->max;
        unsigned char *b = realloc(f->body, cap);
        if (!b)
            return -ENOMEM;
        f->body = b;
        f->cap = cap;
    }
    memcpy(f->body + f->len, p, n);
    f->len += n;
    return 0;
}

/* After a 200, the response headers: a Content-Length we can check early. */
static int headers(lume_fetch *f, struct lws *wsi)
{
    char cl[32];
    f->content_length = -1;
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cl, &end, 10);
    if (errno || end == cl || *end || v > INT64_MAX)
        return 0; /* lws would have refused it; read until close */
    f->content_length = (int64_t)v;
    if (v > f->max) {
        finish(f, wsi, false, -EFBIG, "larger than %zu bytes", f->max);
        return -1;
    }
    if (v > 0 && !(f->body = malloc((size_t)v))) {
        finish(f, wsi, false, -ENOMEM, "out of memory for %llu bytes", v);
        return -1;
    }
    f->cap = (size_t)v;
    return 0;
}

/* The connection ended before COMPLETED_CLIENT_HTTP. */
static void closed_early(lume_fetch *f, struct lws *wsi)
{
    if (f->http_status == 200 && f->content_length < 0) {
        /* HTTP/1.0 style: the body ends when the server closes */
        finish(f, wsi, false, 0, "done");
    } else if (f->http_status == 200) {
        finish(f, wsi, false, -EIO, "connection closed after %zu of %" PRId64 " bytes", f->len,
               f->content_length);
    } else {
        finish(f, wsi, false, -EIO, "connection closed before an answer");
    }
}

/* lws 4.1 on OpenSSL reports a rejected certificate as "connect SSL err 1:
 * error:00000001:lib(0)::reason(1)"; the precise cause ("hostname
 * mismatch", "unable to get local issuer certificate") only reaches the lws
 * log line just before. Name what the check used, so the error alone says
 * where to look. */
static void connection_error(lume_fetch *f, struct lws *wsi, const char *reason)
{
    if (strcasestr(reason, "ssl") || strcasestr(reason, "tls") || strcasestr(reason, "cert"))
        finish(f, wsi, false, -EIO,
               "cannot connect: %s (TLS handshake failed; trusting %s, expecting the name %s%s)",
               reason, f->ca, f->name, f->insecure ? ", insecure" : "");
    else
        finish(f, wsi, false, -EIO, "cannot connect: %s", reason);
}

static int cb_fetch(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    lume_fetch *f = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (f)
            connection_error(f, wsi, in && *(const char *)in ? (const char *)in
                                                             : "connection failed");
        return 0;

    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        if (!f)
            return -1;
        f->wsi = wsi;
        f->http_status = (int)lws_http_client_http_response(wsi);
        if (f->http_status != 200) {
            finish(f, wsi, false, -EIO, "HTTP %d", f->http_status);
            return -1;
        }
        return headers(f, wsi);

    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        if (!f)
            return -1;
        char buf[LWS_PRE + RX_CHUNK];
        char *p = buf + LWS_PRE;
        int n = (int)sizeof buf - LWS_PRE;
        /* calls RECEIVE_CLIENT_HTTP_READ (and maybe COMPLETED): f may be gone */
        if (lws_http_client_read(wsi, &p, &n) < 0)
            return -1;
        return 0;
    }

    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ: {
        if (!f)
            return -1;
        int r = body_append(f, in, len);
        if (r == -EFBIG) {
            finish(f, wsi, false, r, "larger than %zu bytes", f->max);
            return -1;
        }
        if (r < 0) {
            finish(f, wsi, false, r, "out of memory after %zu bytes", f->len);
            return -1;
        }
        return 0;
    }

    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        if (!f)
            return -1;
        if (f->content_length >= 0 && (int64_t)f->len != f->content_length)
            finish(f, wsi, false, -EIO, "body of %zu bytes, Content-Length said %" PRId64,
                   f->len, f->content_length);
        else
            finish(f, wsi, false, 0, "done");
        return -1; /* one request per connection: close it */

    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
    case LWS_CALLBACK_WSI_DESTROY:
        if (f)
            closed_early(f, wsi);
        return 0;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- API ------------------------------------------------------------------ */

lume_fetch *lume_fetch_start(lume_loop *loop, const char *url, const lume_tls_opts *tls,
                             size_t max_bytes, int timeout_ms, lume_fetch_cb cb, void *ud,
                             char **err)
{
    url_parts u;
    if (parse_url(url, &u, err))
        return NULL;
    if (timeout_ms <= 0 || !cb) {
        *err = lume_strdupf("fetch %s: %s", url, !cb ? "no callback" : "timeout must be > 0 ms");
        return NULL;
    }
    lume_fetch *f = calloc(1, sizeof *f);
    if (!f) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    f->loop = loop;
    f->cb = cb;
    f->ud = ud;
    f->port = u.port;
    f->max = max_bytes;
    f->timeout_ms = timeout_ms;
    f->content_length = -1;
    lume_timer_init(&f->timeout, loop, timeout_fired, f);
    lume_timer_init(&f->later, loop, later_fired, f);
    size_t pre = (size_t)(u.path - url);
    f->shown = lume_strdupf("%.*s%.*s%s", (int)pre, url, (int)u.query_at, u.path,
                            u.query_at < u.path_len ? "?..." : "");
    f->host = lume_strdupf("%s", u.host);
    f->name = lume_strdupf("%s", tls && tls->server_name ? tls->server_name : u.host);
    f->insecure = tls && tls->insecure;
    f->path = lume_strdupf("%s%.*s", *u.path == '/' ? "" : "/", (int)u.path_len, u.path);
    if (!f->shown || !f->host || !f->path || !f->name) {
        *err = lume_strdupf("out of memory");
        goto err;
    }

    char *why = NULL;
    struct lws_vhost *vh = fetch_vhost(loop, tls, &f->ca, &why);
    if (!vh) {
        *err = lume_strdupf("fetch %s: %s", f->shown, why ? why : "out of memory");
        free(why);
        goto err;
    }
    if (f->insecure)
        lume_log(LUME_LOG_WARN, "fetch",
                 "%s: TLS certificate checks relaxed (insecure): for tests only", f->shown);

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = lume_loop_lws(loop);
    i.vhost = vh;
    i.address = f->host;
    i.port = f->port;
    i.path = f->path;
    i.host = f->name;
    i.method = "GET";
    i.alpn = "http/1.1";
    i.local_protocol_name = PROTOCOL_NAME;
    i.opaque_user_data = f;
    i.ssl_connection = LCCSCF_USE_SSL | LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
    if (f->insecure)
        i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;

    lume_timer_start(&f->timeout, (int64_t)timeout_ms * 1000);
    f->in_start = true;
    struct lws *wsi = lws_client_connect_via_info(&i);
    f->in_start = false;
    if (f->done) /* failed inside: 'later' delivers it */
        return f;
    if (!wsi) {
        f->in_start = true; /* deliver from the loop, never from here */
        finish(f, NULL, false, -EIO, "cannot connect: lws could not start a connection");
        f->in_start = false;
        return f;
    }
    f->wsi = wsi;
    return f;

err:
    fetch_free(f);
    return NULL;
}

void lume_fetch_cancel(lume_fetch *f)
{
    if (!f || f->in_cb)
        return; /* inside its callback: freed when that returns */
    if (!f->done)
        detach(f, NULL, true);
    fetch_free(f);
}
