/* core/net/net.c — see net.h.
 *
 *   lume_conn_open ──► CONNECTING ──(RAW_CONNECTED / CLIENT_ESTABLISHED)──►
 *        │                 │          mqtts: HANDSHAKE ──(done)──┐
 *        │                 │                                     ▼
 *        │                 └──(CONNECTION_ERROR)──► on_close    OPEN ──► on_open
 *        ▼                                                        │
 *   (fails at once: NULL + err)                  (CLOSE / error)  └──► on_close
 *
 * A lume_conn is freed exactly once: when lws reports the connection gone
 * (after on_close), or, after lume_conn_close, when lws destroys the wsi. */
#include "net.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "log.h"

#define CHUNK 16384

struct lume_net {
    lume_loop        *loop;
    struct lws_vhost *vh;       /* RAW and ws:// */
    struct lws_vhost *vh_tls;   /* wss:// (lws TLS with our CA/cert/key) */
    lume_tls         *tls;      /* mqtts:// (mbedtls) */
    bool              insecure;
};

struct lume_conn {
    lume_net      *net;
    struct lws    *wsi;
    lume_url       url;
    lume_conn_cbs  cbs;
    void          *ud;
    lume_tls_conn *tls;        /* mqtts only */
    bool           open;       /* bytes may flow */
    bool           user_closed;
    bool           in_open;    /* inside lws_client_connect_via_info */
    char          *early_reason;
    /* plaintext (or, for mqtts, nothing: the TLS conn queues ciphertext) */
    unsigned char *q;
    size_t         qhead, qlen, qcap;
    unsigned char  sendbuf[LWS_PRE + CHUNK];
};

/* ---- URL ---------------------------------------------------------------- */

const char *lume_url_host_bad(const char *host, size_t n, bool ipv6)
{
    bool zone = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];
        bool ok;
        if (ipv6 && !zone && c == '%')
            ok = zone = i > 0;
        else if (ipv6 && !zone)
            ok = isxdigit(c) || c == ':' || c == '.';
        else if (zone)
            ok = isalnum(c);
        else
            ok = isalnum(c) || c == '-' || c == '.' || c == '_';
        if (!ok)
            return host + i;
    }
    return NULL;
}

void lume_url_byte_name(char *buf, size_t n, const char *c)
{
    unsigned char b = (unsigned char)*c;
    if (b > 0x20 && b < 0x7f)
        snprintf(buf, n, "'%c'", b);
    else if (b == ' ')
        snprintf(buf, n, "a space");
    else
        snprintf(buf, n, "byte 0x%02x", b);
}

int lume_url_parse(const char *url, lume_url *u, char **err)
{
    memset(u, 0, sizeof *u);
    const char *sep = url ? strstr(url, "://") : NULL;
    if (!sep || (size_t)(sep - url) >= sizeof u->scheme) {
        *err = lume_strdupf("broker url '%s': expected scheme://host[:port][/path] with scheme "
                            "mqtt, mqtts, ws or wss", url ? url : "");
        return -EINVAL;
    }
    memcpy(u->scheme, url, (size_t)(sep - url));
    if (!strcmp(u->scheme, "mqtt")) u->port = 1883;
    else if (!strcmp(u->scheme, "mqtts")) u->port = 8883, u->tls = true;
#ifdef LUME_NO_WS
    else if (!strcmp(u->scheme, "ws") || !strcmp(u->scheme, "wss")) {
        *err = lume_strdupf("broker url '%s': %s", url, LUME_NO_WS_MSG);
        return -ENOTSUP;
    }
#else
    else if (!strcmp(u->scheme, "ws")) u->port = 80, u->ws = true;
    else if (!strcmp(u->scheme, "wss")) u->port = 443, u->ws = u->tls = true;
#endif
    else {
        *err = lume_strdupf("broker url '%s': unknown scheme '%s' (mqtt, mqtts, ws or wss)",
                            url, u->scheme);
        return -EINVAL;
    }
    const char *h = sep + 3, *hend;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend) {
            *err = lume_strdupf("broker url '%s': unterminated [IPv6 address]", url);
            return -EINVAL;
        }
        h++;
    } else {
        hend = h + strcspn(h, ":/");
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0 || hl >= sizeof u->host) {
        *err = lume_strdupf("broker url '%s': missing or too long host", url);
        return -EINVAL;
    }
    const char *bad = lume_url_host_bad(h, hl, *hend == ']');
    if (bad) {
        char what[32];
        lume_url_byte_name(what, sizeof what, bad);
        *err = lume_strdupf("broker url '%s': the host may not hold %s (a host is letters, "
                            "digits, '-', '.' and '_', or an [IPv6 address])", url, what);
        return -EINVAL;
    }
    memcpy(u->host, h, hl);
    const char *p = hend + (*hend == ']');
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
            *err = lume_strdupf("broker url '%s': port must be 1..65535", url);
            return -EINVAL;
        }
        u->port = (int)port;
        p = end;
    }
    if (*p == '/') {
        if (!u->ws && p[1]) {
            *err = lume_strdupf("broker url '%s': a path is only meaningful for ws:// and wss://",
                                url);
            return -EINVAL;
        }
        if (strlen(p) >= sizeof u->path) {
            *err = lume_strdupf("broker url '%s': path too long", url);
            return -EINVAL;
        }
        strcpy(u->path, p);
    } else if (*p) {
        *err = lume_strdupf("broker url '%s': unexpected '%s' after the host", url, p);
        return -EINVAL;
    }
    if (u->ws && (!u->path[0] || !strcmp(u->path, "/")))
        strcpy(u->path, "/mqtt");
    return 0;
}

/* ---- the send queue ------------------------------------------------------ */

static int q_append(lume_conn *c, const void *p, size_t n)
{
    if (c->qhead > 0 && c->qhead == c->qlen) {
        c->qhead = c->qlen = 0;
    }
    if (c->qlen + n > c->qcap) {
        if (c->qhead > 0) { /* compact first */
            memmove(c->q, c->q + c->qhead, c->qlen - c->qhead);
            c->qlen -= c->qhead;
            c->qhead = 0;
        }
        if (c->qlen + n > c->qcap) {
            size_t cap = c->qcap ? c->qcap : 4096;
            while (cap < c->qlen + n)
                cap *= 2;
            unsigned char *q = realloc(c->q, cap);
            if (!q)
                return -ENOMEM;
            c->q = q;
            c->qcap = cap;
        }
    }
    memcpy(c->q + c->qlen, p, n);
    c->qlen += n;
    return 0;
}

static const void *pending(lume_conn *c, size_t *n)
{
    if (c->tls)
        return lume_tls_conn_out(c->tls, n);
    *n = c->qlen - c->qhead;
    return *n ? c->q + c->qhead : NULL;
}

static void consume(lume_conn *c, size_t n)
{
    if (c->tls) {
        lume_tls_conn_out_consume(c->tls, n);
        return;
    }
    c->qhead += n;
    if (c->qhead == c->qlen)
        c->qhead = c->qlen = 0;
}

size_t lume_conn_queued(const lume_conn *c)
{
    size_t n = 0;
    if (c->tls)
        lume_tls_conn_out((lume_tls_conn *)c->tls, &n);
    else
        n = c->qlen - c->qhead;
    return n;
}

int lume_conn_send(lume_conn *c, const void *p, size_t len)
{
    if (!c->open || !c->wsi)
        return -ENOTCONN;
    int r = c->tls ? lume_tls_conn_write(c->tls, p, len) : q_append(c, p, len);
    if (r < 0)
        return r;
    lws_callback_on_writable(c->wsi);
    return 0;
}

/* ---- lws callbacks --------------------------------------------------------- */

static void conn_free(lume_conn *c)
{
    if (c->tls)
        lume_tls_conn_free(c->tls);
    free(c->early_reason);
    free(c->q);
    free(c);
}

/* The connection is gone. Report once (unless the user closed it), free. */
static void gone(lume_conn *c, struct lws *wsi, const char *reason)
{
    if (wsi)
        lws_set_opaque_user_data(wsi, NULL);
    c->wsi = NULL;
    c->open = false;
    if (c->in_open) { /* inside lume_conn_open: it reports */
        if (!c->early_reason)
            c->early_reason = strdup(reason);
        return;
    }
    if (!c->user_closed && c->cbs.on_close)
        c->cbs.on_close(c->ud, reason);
    conn_free(c);
}

static void no_delay(struct lws *wsi)
{
    /* MQTT packets are small and acknowledged one by one: without this,
     * Nagle and delayed ACKs cap a window of 32 at ~1,000 messages/s */
    int fd = lws_get_socket_fd(wsi), one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void became_open(lume_conn *c)
{
    c->open = true;
    if (c->wsi)
        no_delay(c->wsi);
    if (c->cbs.on_open)
        c->cbs.on_open(c->ud);
}

static int write_some(lume_conn *c, struct lws *wsi)
{
    size_t n;
    const void *p = pending(c, &n);
    if (!n) {
        if (c->open && c->cbs.on_drain)
            c->cbs.on_drain(c->ud);
        return 0;
    }
    if (n > CHUNK)
        n = CHUNK;
    memcpy(c->sendbuf + LWS_PRE, p, n);
    int w = lws_write(wsi, c->sendbuf + LWS_PRE, n, c->url.ws ? LWS_WRITE_BINARY : LWS_WRITE_RAW);
    if (w < (int)n)
        return -1;
    consume(c, n);
    pending(c, &n);
    if (n)
        lws_callback_on_writable(wsi);
    else if (c->open && c->cbs.on_drain)
        c->cbs.on_drain(c->ud);
    return 0;
}

static void tls_progress(lume_conn *c, struct lws *wsi)
{
    if (!lume_tls_conn_ready(c->tls)) {
        int r = lume_tls_conn_handshake(c->tls);
        size_t n;
        if (lume_tls_conn_out(c->tls, &n) && n)
            lws_callback_on_writable(wsi);
        if (r == -EAGAIN)
            return;
        if (r < 0) {
            char reason[400];
            snprintf(reason, sizeof reason, "TLS handshake with %s:%d failed: %s", c->url.host,
                     c->url.port, lume_tls_conn_error(c->tls));
            lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
            gone(c, wsi, reason);
            return;
        }
        became_open(c);
        if (!c->wsi)
            return;
    }
    unsigned char buf[CHUNK];
    for (;;) {
        ssize_t n = lume_tls_conn_read(c->tls, buf, sizeof buf);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            char reason[400];
            snprintf(reason, sizeof reason, "%s", n == 0 ? "TLS session closed by the broker"
                                                         : lume_tls_conn_error(c->tls));
            lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
            gone(c, wsi, reason);
            return;
        }
        if (c->cbs.on_data)
            c->cbs.on_data(c->ud, buf, (size_t)n);
        if (!c->wsi || c->user_closed)
            return;
    }
}

static int cb_net(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    lume_conn *c = lws_get_opaque_user_data(wsi);
    char why[400];
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (!c)
            break;
        snprintf(why, sizeof why, "cannot connect to %s://%s:%d: %s", c->url.scheme, c->url.host,
                 c->url.port, in ? (const char *)in : "connection failed");
        gone(c, wsi, why);
        break;
    case LWS_CALLBACK_RAW_CONNECTED:
        if (!c || c->user_closed)
            break;
        if (c->url.tls) {
            char *err = NULL;
            c->tls = lume_tls_conn_new(c->net->tls, c->url.host, &err);
            if (!c->tls) {
                snprintf(why, sizeof why, "TLS: %s", err ? err : "cannot start");
                free(err);
                gone(c, wsi, why);
                return -1;
            }
            tls_progress(c, wsi);
        } else {
            became_open(c);
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c && !c->user_closed)
            became_open(c);
        break;
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c || c->user_closed)
            break;
        if (c->tls) {
            if (lume_tls_conn_feed(c->tls, in, len) < 0) {
                gone(c, wsi, "out of memory");
                return -1;
            }
            tls_progress(c, wsi);
        } else if (c->cbs.on_data) {
            c->cbs.on_data(c->ud, in, len);
        }
        break;
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c || c->user_closed)
            break;
        if (write_some(c, wsi) < 0) {
            gone(c, wsi, "write to the broker failed");
            return -1;
        }
        break;
    case LWS_CALLBACK_RAW_CLOSE:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!c)
            break;
        if (c->user_closed) {
            lws_set_opaque_user_data(wsi, NULL);
            conn_free(c);
            break;
        }
        snprintf(why, sizeof why, "connection to %s:%d closed by the broker", c->url.host,
                 c->url.port);
        gone(c, wsi, why);
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        if (!c)
            break;
        lws_set_opaque_user_data(wsi, NULL);
        if (c->user_closed) {
            conn_free(c);
            break;
        }
        gone(c, NULL, "connection destroyed");
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols net_protocols[] = {
    {.name = "lume-net", .callback = cb_net, .rx_buffer_size = CHUNK},
    {.name = NULL}};

/* ---- life cycle -------------------------------------------------------------- */

lume_net *lume_net_new(lume_loop *loop, const lume_tls_opts *tls, char **err)
{
    lume_net *n = calloc(1, sizeof *n);
    if (!n) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    n->loop = loop;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = net_protocols;
    info.vhost_name = "lume-net";
    /* plain sockets only (mqtt://, ws://, and mqtts:// whose TLS is
     * lume_tls): no OpenSSL initialisation, which costs ~0.8 MB of heap per
     * process; the wss:// vhost below asks for it itself */
    info.options = 0;
    n->vh = lws_create_vhost(lume_loop_lws(loop), &info);
    if (!n->vh) {
        *err = lume_strdupf("net: cannot create the lws vhost");
        free(n);
        return NULL;
    }
    if (tls) {
        n->insecure = tls->insecure;
        n->tls = lume_tls_new(tls, err);
        if (!n->tls) {
            lume_net_free(n);
            return NULL;
        }
#ifndef LUME_NO_WS /* wss:// only: mqtts:// is lume_tls */
        memset(&info, 0, sizeof info);
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = net_protocols;
        info.vhost_name = "lume-net-tls";
        info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = tls->ca_file ? tls->ca_file
                                                   : "/etc/ssl/certs/ca-certificates.crt";
        info.client_ssl_cert_filepath = tls->cert_file;
        info.client_ssl_private_key_filepath = tls->key_file;
        info.client_ssl_cipher_list = NULL; /* OpenSSL names differ from mbedtls': defaults */
        n->vh_tls = lws_create_vhost(lume_loop_lws(loop), &info);
        if (!n->vh_tls) {
            *err = lume_strdupf("net: cannot create the TLS vhost for wss:// (ca_file %s)",
                                info.client_ssl_ca_filepath);
            lume_net_free(n);
            return NULL;
        }
#endif
    }
    return n;
}

void lume_net_free(lume_net *n)
{
    if (!n)
        return;
    /* vhosts go with the context */
    if (n->tls)
        lume_tls_free(n->tls);
    free(n);
}

lume_conn *lume_conn_open(lume_net *n, const lume_url *url, const lume_conn_cbs *cbs, void *ud,
                          char **err)
{
    if (url->tls && !n->tls) {
        *err = lume_strdupf("%s:// needs TLS settings", url->scheme);
        return NULL;
    }
    lume_conn *c = calloc(1, sizeof *c);
    if (!c) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    c->net = n;
    c->url = *url;
    c->cbs = *cbs;
    c->ud = ud;

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = lume_loop_lws(n->loop);
    i.address = c->url.host;
    i.port = c->url.port;
    i.host = c->url.host;
    i.origin = c->url.host;
    i.local_protocol_name = "lume-net";
    i.opaque_user_data = c;
    i.pwsi = &c->wsi;
#ifndef LUME_NO_WS
    if (url->ws) {
        i.path = c->url.path;
        i.protocol = "mqtt";
        i.vhost = url->tls ? n->vh_tls : n->vh;
        if (url->tls) {
            i.ssl_connection = LCCSCF_USE_SSL;
            if (n->insecure)
                i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                    LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
        }
    } else
#endif
    {
        i.method = "RAW";
        i.vhost = n->vh;
    }
    c->in_open = true;
    struct lws *wsi = lws_client_connect_via_info(&i);
    c->in_open = false;
    if (!wsi || c->early_reason) {
        *err = lume_strdupf("%s", c->early_reason ? c->early_reason : "cannot connect");
        if (wsi)
            lws_set_opaque_user_data(wsi, NULL);
        if (!c->early_reason && !wsi) {
            free(*err);
            *err = lume_strdupf("cannot connect to %s://%s:%d", url->scheme, url->host, url->port);
        }
        conn_free(c);
        return NULL;
    }
    c->wsi = wsi;
    return c;
}

void lume_conn_close(lume_conn *c)
{
    if (!c)
        return;
    c->user_closed = true;
    c->open = false;
    if (c->tls) { /* its config belongs to the lume_net, which may go first */
        lume_tls_conn_free(c->tls);
        c->tls = NULL;
    }
    if (c->wsi) {
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return; /* freed in RAW_CLOSE / CLIENT_CLOSED / WSI_DESTROY */
    }
    conn_free(c);
}
