/* core/net/tls.h — TLS for lume's connections, with mbedtls, independent of the
 * socket: ciphertext in, plaintext out, and the other way round.
 *
 * Why: Debian 12's libwebsockets (4.1.6) cannot start TLS on a RAW client
 * socket, so for mqtts:// lume runs TLS itself over a plain lws RAW socket:
 * bytes from LWS_CALLBACK_RAW_RX go to lume_tls_conn_feed(), ciphertext to
 * send comes from lume_tls_conn_out(). wss:// uses lws's own TLS; the same
 * lume_tls_opts feed both (see lume_tls_opts comments).
 *
 *   lume_tls *t = lume_tls_new(&opts, &err);          // loads CA, cert, key
 *   lume_tls_conn *c = lume_tls_conn_new(t, &err);
 *   on socket data:  lume_tls_conn_feed(c, data, n);
 *                    r = lume_tls_conn_handshake(c);   // 0 done, -EAGAIN more
 *                    n = lume_tls_conn_read(c, buf, cap);
 *   to send:         lume_tls_conn_write(c, plain, n);
 *   then flush:      p = lume_tls_conn_out(c, &n); send p[0..n); lume_tls_conn_out_consume(c, sent);
 *
 * Errors are negative errno-style codes; lume_tls_conn_error() gives the
 * words ("certificate verify failed: ... not signed by a trusted CA"). */
#ifndef LUME_TLS_H
#define LUME_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct lume_tls_opts {
    const char *ca_file;      /* PEM CA bundle; NULL = the system store
                                 (/etc/ssl/certs/ca-certificates.crt) */
    const char *cert_file;    /* client certificate (mutual TLS); NULL = none */
    const char *key_file;     /* its private key; required with cert_file */
    const char *server_name;  /* SNI and the name the server certificate
                                 must carry (default: the URL's host) */
    const char *min_version;  /* "1.2" (default) or "1.3" where supported */
    const char *ciphers;      /* NULL = library defaults; otherwise a
                                 colon-separated list of IANA suite names
                                 (TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256) */
    bool        insecure;     /* skip verification: tests against nothing
                                 real only; logged loudly */
} lume_tls_opts;

typedef struct lume_tls lume_tls;            /* shared config: CA, cert, key */
typedef struct lume_tls_conn lume_tls_conn;  /* one connection */

/* Load what opts name. NULL with *err naming the file and the cause. */
lume_tls *lume_tls_new(const lume_tls_opts *opts, char **err);
void      lume_tls_free(lume_tls *t);

/* A client connection verifying the server as `host` (or opts.server_name
 * when set). NULL with *err. */
lume_tls_conn *lume_tls_conn_new(lume_tls *t, const char *host, char **err);
void           lume_tls_conn_free(lume_tls_conn *c);

/* Ciphertext received from the peer. 0, or -ENOMEM (nothing kept). */
int     lume_tls_conn_feed(lume_tls_conn *c, const void *data, size_t n);
/* Drive the handshake: 0 when complete, -EAGAIN when it needs more bytes
 * from the peer (send lume_tls_conn_out first), another negative code when
 * it failed (lume_tls_conn_error says why). */
int     lume_tls_conn_handshake(lume_tls_conn *c);
bool    lume_tls_conn_ready(const lume_tls_conn *c);
/* Plaintext that has arrived: bytes copied (> 0), -EAGAIN when none yet,
 * 0 when the peer closed the TLS session, or another negative code. */
ssize_t lume_tls_conn_read(lume_tls_conn *c, void *buf, size_t cap);
/* Encrypt all of plain into the outgoing queue. 0 or negative. */
int     lume_tls_conn_write(lume_tls_conn *c, const void *plain, size_t n);
/* Ciphertext waiting to be sent: a pointer to *n bytes (NULL, *n = 0 when
 * none); after sending k of them, consume k. */
const void *lume_tls_conn_out(lume_tls_conn *c, size_t *n);
void        lume_tls_conn_out_consume(lume_tls_conn *c, size_t k);
/* The reason of the last failure, or "" */
const char *lume_tls_conn_error(const lume_tls_conn *c);

#endif
