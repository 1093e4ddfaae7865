/* core/net/net.h — one byte-stream connection on the loop, chosen by URL:
 *
 *   mqtt://host[:1883]        plain TCP          (lws RAW client socket)
 *   mqtts://host[:8883]       TLS by lume        (mbedtls over a RAW socket: see tls.h)
 *   ws://host[:80][/path]     MQTT over WebSocket, subprotocol "mqtt" (lws)
 *   wss://host[:443][/path]   the same over lws's TLS
 *
 * The MQTT session sees only bytes: on_open, on_data, on_close(reason), and
 * lume_conn_send. The default WebSocket path is /mqtt; Azure IoT Hub's is
 * /$iothub/websocket. */
#ifndef LUME_NET_H
#define LUME_NET_H

/* what a lume built with LUME_NO_WS=1 says of a ws:// or wss:// broker url */
#define LUME_NO_WS_MSG "this lume was built without WebSockets (LUME_NO_WS): use mqtt:// or mqtts://"

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"
#include "tls.h"

typedef struct lume_url {
    char scheme[8];   /* mqtt, mqtts, ws, wss */
    char host[256];   /* without brackets for IPv6 */
    int  port;
    char path[512];   /* ws/wss only; "/mqtt" by default */
    bool tls;
    bool ws;
} lume_url;

/* Parse and check a broker URL. 0, or -EINVAL with *err naming what is
 * wrong ("broker url 'mqtt:/x': expected scheme://host[:port][/path]"). */
int lume_url_parse(const char *url, lume_url *out, char **err);
/* The first byte of host[0..n) that a host name may not hold, or NULL: a
 * name is letters, digits, '-', '.' and '_'; an IPv6 address (ipv6: it was
 * in brackets) hex digits, ':' and '.', with an optional zone ("%eth0",
 * letters and digits). So '@' (user info), spaces, controls, '%' encodings
 * and the rest of RFC 3986's delimiters never reach the resolver. */
const char *lume_url_host_bad(const char *host, size_t n, bool ipv6);
/* "'@'" or "byte 0x0a" for a message naming the byte at c. */
void lume_url_byte_name(char *buf, size_t n, const char *c);

typedef struct lume_conn lume_conn;

typedef struct lume_conn_cbs {
    void (*on_open)(void *ud);                       /* ready for bytes */
    void (*on_data)(void *ud, const void *p, size_t n);
    /* The connection is gone (failed to connect, TLS failed, peer closed,
     * error). reason names the cause. The lume_conn is freed right after
     * this returns: drop the pointer. Not called after lume_conn_close. */
    void (*on_close)(void *ud, const char *reason);
    void (*on_drain)(void *ud);                      /* send queue emptied */
} lume_conn_cbs;

typedef struct lume_net lume_net;   /* per-loop state: vhosts, TLS config */

/* tls may be NULL when no TLS URL will be used. NULL with *err. */
lume_net *lume_net_new(lume_loop *loop, const lume_tls_opts *tls, char **err);
void      lume_net_free(lume_net *n);

/* Start connecting. NULL with *err when it cannot even start (the reason is
 * also what on_close would say). */
lume_conn *lume_conn_open(lume_net *n, const lume_url *url, const lume_conn_cbs *cbs,
                          void *ud, char **err);
/* Queue bytes. 0, or -ENOMEM / -ENOTCONN. */
int    lume_conn_send(lume_conn *c, const void *p, size_t len);
size_t lume_conn_queued(const lume_conn *c);
/* Close now; no callback follows. */
void   lume_conn_close(lume_conn *c);

#endif
