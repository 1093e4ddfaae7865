/* core/net/mqtt.h — the MQTT 3.1.1 client session: one connection to a broker
 * that delivers the outbox at least once, restores subscriptions after every
 * reconnect and hands incoming messages to the host.
 *
 * The session owns no message: it peeks the outbox, marks messages in
 * flight with their packet id, deletes them on PUBACK (QoS 1) or once
 * written to the socket (QoS 0), and puts them back on disconnect; the
 * unacknowledged ones are sent again with DUP=1 and their original packet
 * id. Alarms overtake telemetry because the outbox hands out lanes in that
 * order. Everything runs on the loop thread. */
#ifndef LUME_MQTT_H
#define LUME_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "net.h"
#include "outbox.h"
#include "tls.h"

typedef enum lume_mqtt_state {
    LUME_MQTT_OFFLINE = 0,    /* not started, or stopped */
    LUME_MQTT_CONNECTING,     /* transport (TCP, TLS, WebSocket) */
    LUME_MQTT_HANDSHAKE,      /* CONNECT sent, waiting for CONNACK */
    LUME_MQTT_CONNECTED,
    LUME_MQTT_BACKOFF,        /* waiting to reconnect */
} lume_mqtt_state;
const char *lume_mqtt_state_name(int state);

typedef struct lume_mqtt_opts {
    const char   *url;
    const char   *client_id;
    const char   *username;       /* NULL = none */
    const char   *password;       /* NULL = none */
    lume_tls_opts tls;
    int           keepalive_s;    /* 30 */
    int           window;         /* QoS 1 messages in flight, 32 */
    int           backoff_min_ms; /* 500 */
    int           backoff_max_ms; /* 30000 */
    int           stable_ms;      /* connected this long resets the backoff: 10000 */
    int           connect_timeout_ms; /* transport + CONNACK: 10000 */
    size_t        max_packet;     /* largest packet accepted, 256 KiB: a PUBLISH over it is
                                     skipped (acknowledged, counted, on_skipped), any
                                     other packet over it closes the connection */
    bool          clean_session;  /* false */
    const char   *status_topic;   /* last will "offline", "online" on connect; NULL = none */
} lume_mqtt_opts;
void lume_mqtt_opts_default(lume_mqtt_opts *o);

typedef struct lume_mqtt_cbs {
    /* State changes; reason says why for disconnects ("keepalive: no answer
     * to PINGREQ within 15 s", "CONNACK refused: bad user name or password"). */
    void (*on_state)(void *ud, int state, const char *reason);
    /* An incoming PUBLISH. The session acknowledges a QoS 1 message after
     * this returns, whatever it did. */
    void (*on_message)(void *ud, const char *topic, const void *payload, size_t len,
                       int qos, bool retain);
    /* An incoming PUBLISH larger than max_packet, skipped: its payload was
     * dropped as it arrived, the session acknowledges it after this returns
     * (as on_message) and the connection stays up. topic is NULL when it
     * was too long to keep; size is the packet's size on the wire; why says
     * it in words ("PUBLISH to 'x' of 1048602 bytes is larger than
     * net.max_packet (262144 bytes)"). May be NULL. */
    void (*on_skipped)(void *ud, const char *topic, size_t size, int qos, bool retain,
                       const char *why);
    /* The password of the next CONNECT when it changes from one connection
     * to the next (a SAS token that expires): called before each CONNECT
     * (the string stays owned by the callee and
     * need only live until the CONNECT is written, within the call). NULL, or a NULL result: opts.password. May be NULL. */
    const char *(*password)(void *ud);
    /* The topic an outbox message leaves with, when the host changes it as
     * it goes (azure: the link's mode in the property bag, core/net/link.h):
     * written into buf (cap bytes) and returned, or NULL to send the stored
     * topic. Called for every PUBLISH from the outbox, resends included.
     * May be NULL. */
    const char *(*topic_out)(void *ud, const char *topic, char *buf, size_t cap);
} lume_mqtt_cbs;

typedef struct lume_mqtt_stats {
    uint64_t sent;        /* PUBLISH packets written (first sends) */
    uint64_t resent;      /* PUBLISH packets written again with DUP=1 */
    uint64_t acked;       /* PUBACKs for our messages */
    uint64_t received;    /* PUBLISH packets from the broker */
    uint64_t reconnects;  /* connections after the first */
    uint64_t connects;    /* successful CONNACKs */
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t protocol_errors;
    uint64_t skipped_oversize; /* PUBLISH packets over max_packet, skipped (not dropped) */
    uint64_t unexpected_acks;  /* PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK matching
                                  nothing this session sent */
    uint32_t inflight;
} lume_mqtt_stats;

typedef struct lume_mqtt lume_mqtt;

/* NULL with *err (bad URL, TLS files that do not load, ...). */
lume_mqtt *lume_mqtt_new(lume_loop *loop, lume_outbox *ob, const lume_mqtt_opts *o,
                         const lume_mqtt_cbs *cbs, void *ud, char **err);
/* Sends DISCONNECT when connected (so the broker does not publish the
 * will), closes, frees. In-flight messages stay in the outbox. */
void lume_mqtt_free(lume_mqtt *m);
/* Begin connecting (and reconnecting, forever, with backoff). */
void lume_mqtt_start(lume_mqtt *m);

/* Remember a subscription (sent now when connected, and after every
 * reconnect). 0, or -EINVAL for a bad filter / qos. */
int  lume_mqtt_add_subscription(lume_mqtt *m, const char *filter, int qos);
int  lume_mqtt_remove_subscription(lume_mqtt *m, const char *filter);
/* The outbox has new committed messages: send what the window allows. */
void lume_mqtt_kick(lume_mqtt *m);
/* Publish outside the outbox (QoS 0, e.g. a status). 0 or -ENOTCONN. */
int  lume_mqtt_publish_now(lume_mqtt *m, const char *topic, const void *payload, size_t len,
                           bool retain);

/* Publish a request outside the outbox with QoS 1, not retained (a twin
 * request with its own id, answered on another topic): the broker's PUBACK
 * is expected (invariant 7) but nothing is resent on a new connection — the
 * requester asks again. 0, -ENOTCONN, or a send error. */
int  lume_mqtt_publish_request(lume_mqtt *m, const char *topic, const void *payload,
                               size_t len);

/* Publish a state document: QoS 1, retained, latest wins per topic. The
 * session keeps the latest payload of each state topic and (re)sends it on
 * every connect until the broker has acknowledged it (the reported twin,
 * for one). 0, or -ENOMEM / -EINVAL (bad topic, more than 16 topics). */
int  lume_mqtt_publish_state(lume_mqtt *m, const char *topic, const void *payload, size_t len);
/* True when every state document has been acknowledged. */
bool lume_mqtt_state_synced(const lume_mqtt *m);

/* Close the connection cleanly and stay offline: from CONNECTED, "offline"
 * on the status topic and DISCONNECT (so the broker drops the will), then
 * close once that is written; from any other state at once. In-flight
 * messages go back to the outbox. reason is what on_state says. No
 * reconnect follows until lume_mqtt_start. A no-op when offline. */
void lume_mqtt_stop(lume_mqtt *m, const char *reason);
/* True when a connection may close without leaving anything behind:
 * connected, no message in flight or sendable in the outbox, every state
 * document, subscription and request acknowledged, and a PINGREQ sent once
 * all that held has been answered (so what the broker queued for us before
 * it, the retained documents of our subscriptions, has arrived). Sends
 * that PINGREQ when it is due: call it again until it says true. */
bool lume_mqtt_settled(lume_mqtt *m);

/* Close the connection (DISCONNECT first when connected) and connect again
 * at once, without backoff: fresh credentials (a renewed SAS token) take
 * effect. In-flight messages go back to the outbox and are resent with
 * DUP=1 on the new connection; nothing is lost. A no-op when stopped. */
void lume_mqtt_reconnect(lume_mqtt *m, const char *reason);

int  lume_mqtt_get_state(const lume_mqtt *m);
/* Bytes written to the connection and not yet taken by the socket (0 when
 * not connected): what a sender of optional messages (remote log lines)
 * looks at before adding to it. */
size_t lume_mqtt_queued(const lume_mqtt *m);
void lume_mqtt_get_stats(const lume_mqtt *m, lume_mqtt_stats *st);
/* The reason of the last disconnect or failed attempt, or "". */
const char *lume_mqtt_last_error(const lume_mqtt *m);
/* The return code of the last CONNACK when it refused the connection (4 bad
 * user name or password, 5 not authorized, ...), 0 after an accepted one. */
int  lume_mqtt_refused(const lume_mqtt *m);

#endif
