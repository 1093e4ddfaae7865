/* core/net/mqtt.c — the MQTT 3.1.1 client session (see mqtt.h).
 *
 *              start
 *   OFFLINE ─────────► CONNECTING ──(transport open: send CONNECT)──► HANDSHAKE
 *      ▲                 │   ▲                                          │
 *      │ stop            │   │ retry timer                 CONNACK 0    │ CONNACK refused,
 *      │                 │   │ (full-jitter exponential)   ─────────┐   │ timeout, error
 *      │                 ▼   │                                      ▼   ▼
 *      └────────────── BACKOFF ◄──(close, error, keepalive, protocol error)── CONNECTED ──┐
 *                                                                               ▲        │
 *              PUBLISH over max_packet (skipped, acknowledged), unexpected ack ─┴────────┘
 *
 * lume_mqtt_stop (an intermittent link closing its window, core/net/link.c):
 * from CONNECTED, "offline" on the status topic and DISCONNECT (nothing
 * more is sent after it); once it is written (or the broker closed, or
 * RENEW_DRAIN_MS passed) close, in-flight messages requeued, OFFLINE, no
 * retry. From any other state: OFFLINE at once. lume_mqtt_start leaves it.
 * lume_mqtt_settled says when such a window may close: nothing owed either
 * way, and a PINGREQ sent once that was so answered (invariant 9).
 *
 * lume_mqtt_reconnect (fresh credentials: a SAS token about to expire):
 * DISCONNECT (nothing more is sent after it), and once it is written (or
 * the broker closed, or RENEW_DRAIN_MS passed) close, in-flight messages
 * requeued (invariant 2), and CONNECTING at once, without backoff. The password of each CONNECT comes
 * from cbs.password when the host gives one.
 *
 * What stays CONNECTED (invariants 6, 7) and what is a protocol error
 * (closes): a PUBLISH over max_packet stays; any other packet over it, a
 * remaining length past 4 bytes, a malformed packet, a QoS 2 PUBLISH that
 * fits, or a packet other than CONNACK before CONNACK closes.
 *
 * Invariants:
 *  1. A message is marked in flight (outbox) before its PUBLISH is queued,
 *     and leaves the outbox only on PUBACK (QoS 1) or once queued to the
 *     socket (QoS 0).
 *  2. On every CONNACK the outbox's in-flight messages become sendable
 *     again (requeue) and go out first in lane order, with DUP=1 and their
 *     original packet id when that id is free.
 *  3. At most opts.window QoS 1 messages are in flight; the table `inf`
 *     maps their packet ids to outbox ids.
 *  4. A QoS 1 message from the broker is acknowledged after the host's
 *     handler ran, whatever the handler did.
 *  5. Dead peer: when nothing has arrived for keepalive seconds a PINGREQ
 *     goes out (also whenever nothing was sent for that long); no packet
 *     within 1.5 x keepalive of the last one received closes the
 *     connection.
 *  6. A PUBLISH larger than opts.max_packet never closes the connection
 *     (else a retained one would be sent again on every reconnect, for
 *     ever): the parser streams it through in skip mode, buffering nothing
 *     but its topic; it is counted (skipped_oversize), logged, handed to
 *     the host's on_skipped and then acknowledged like any message of its
 *     QoS (PUBACK; for QoS 2, PUBREC and PUBCOMP on the broker's PUBREL).
 *  7. Every acknowledgement is matched to what this connection sent: a
 *     PUBACK to a window slot, a state document or a superseded copy of
 *     one; a SUBACK to a subscription (or one removed while it was
 *     pending); an UNSUBACK to an UNSUBSCRIBE; a PUBREL to our PUBREC. The
 *     last kinds wait in the `awaiting` table (MAX_AWAIT, oldest forgotten
 *     first, emptied on disconnect). An acknowledgement matching nothing
 *     (and any PUBREC/PUBCOMP: lume never publishes with QoS 2) is counted
 *     (unexpected_acks) and logged at WARN — the first ODD_LOG_FULL in
 *     full, then a summary at most every ODD_LOG_EVERY_MS — and the
 *     connection stays up. Packet ids still awaited are not reused.
 *  8. On CONNACK every subscription is sent before the host's on_state
 *     (CONNECTED) runs: whatever the host publishes from it follows the
 *     SUBSCRIBEs on the wire (a twin GET after `$iothub/twin/res/#`).
 *  9. Settled (lume_mqtt_settled) means: no message in flight or sendable
 *     in the outbox (the last peek found none and nothing was committed
 *     since), every state document, subscription and request
 *     acknowledged, and a PINGRESP arrived for a PINGREQ sent once every
 *     subscription was acknowledged. A broker answers a connection's
 *     packets in order, so what it queued for us before (the retained
 *     documents of our subscriptions) has arrived by then. A new
 *     SUBSCRIBE starts the wait over; messages sent meanwhile need only
 *     their PUBACKs, so a steady stream does not hold the answer off. */
#include "mqtt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clock.h"
#include "log.h"
#include "mqtt_codec.h"

#define SEND_HIGH_WATER (256 * 1024) /* bytes queued before we stop pumping */
#define PEEK_MAX 64
#define MAX_AWAIT 64                 /* acknowledgements awaited outside the tables */
#define ODD_LOG_FULL 10              /* odd events of one kind logged in full */
#define ODD_LOG_EVERY_MS 10000       /* then a summary at most this often */
#define RENEW_DRAIN_MS 2000          /* lume_mqtt_reconnect: DISCONNECT written by then */

typedef struct inflight {
    uint16_t pkid;
    uint64_t id;
} inflight;

typedef struct sub {
    char    *filter;
    int      qos;
    uint16_t pkid;   /* SUBSCRIBE awaiting SUBACK, 0 when none */
} sub;

#define MAX_STATE 16

/* An acknowledgement due that no other table expects (invariant 7). */
typedef struct awaited {
    uint8_t  type;   /* the packet type that will answer: PUBACK SUBACK UNSUBACK PUBREL */
    uint16_t id;
} awaited;

/* One kind of odd event from the broker, logged with a rate limit. */
typedef struct oddlog {
    const char *what;        /* "unexpected acknowledgements" */
    int         level;
    uint64_t    n;           /* events so far */
    int64_t     window_ms;   /* start of the current summary window */
    uint64_t    window_n;    /* events in it not logged in full */
    char        last[512];   /* the latest of them, in words */
} oddlog;

typedef struct state_doc {
    char    *topic;
    void    *payload;
    size_t   len;
    uint16_t pkid;     /* in flight with this id, 0 when not sent */
    bool     acked;
} state_doc;

struct lume_mqtt {
    lume_loop        *loop;
    lume_outbox      *ob;
    lume_net         *net;
    lume_url          url;
    lume_mqtt_opts    o;
    char             *strs[8];     /* owned copies of the option strings */
    lume_mqtt_cbs     cbs;
    void             *ud;
    lume_conn        *conn;
    lume_mqtt_parser *parser;
    int               state;
    char              last_error[512];
    int               refused;       /* the last CONNACK's refusal code, 0 when accepted */
    char             *drop;        /* a reason to drop the connection after feed */
    lume_timer        retry_timer, tick_timer;
    int               attempt;
    int64_t           state_since_ms, connected_at_ms, last_tx_ms, last_rx_ms, ping_sent_ms;
    inflight         *inf;
    int               ninf;
    uint16_t          next_pkid;
    sub              *subs;
    size_t            nsubs;
    lume_mqtt_stats   st;
    uint64_t          rng;
    bool              stopping;
    unsigned char    *enc;
    size_t            enccap;
    lume_outbox_msg   peeked[PEEK_MAX];
    int               pf_pos, pf_n;   /* prefetched, not yet sent */
    state_doc         states[MAX_STATE];
    size_t            nstates;
    awaited           awaiting[MAX_AWAIT];
    size_t            nawaiting;
    oddlog            odd_acks, odd_skips;
    bool              renewing;       /* DISCONNECT sent by lume_mqtt_reconnect */
    int64_t           renew_at_ms;
    char              renew_reason[128];
    bool              outbox_empty;   /* the last peek found nothing, no commit since */
    int               settle;         /* invariant 9: 0, 1 PINGREQ sent, 2 answered */
    int64_t           stop_at_ms;     /* lume_mqtt_stop: DISCONNECT sent then */
    char              stop_reason[128];
};

const char *lume_mqtt_state_name(int s)
{
    switch (s) {
    case LUME_MQTT_OFFLINE: return "offline";
    case LUME_MQTT_CONNECTING: return "connecting";
    case LUME_MQTT_HANDSHAKE: return "handshake";
    case LUME_MQTT_CONNECTED: return "connected";
    case LUME_MQTT_BACKOFF: return "backoff";
    default: return "?";
    }
}

void lume_mqtt_opts_default(lume_mqtt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->keepalive_s = 30;
    o->window = 32;
    o->backoff_min_ms = 500;
    o->backoff_max_ms = 30000;
    o->stable_ms = 10000;
    o->connect_timeout_ms = 10000;
    o->max_packet = 256 * 1024;
    o->clean_session = false;
}

static int64_t now_ms(void) { return lume_mono_ns() / LUME_NS_PER_MS; }

static uint64_t rnd(lume_mqtt *m)
{
    /* splitmix64: jitter only, not security */
    uint64_t z = (m->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void set_state(lume_mqtt *m, int s, const char *reason)
{
    if (m->state == s)
        return;
    m->state = s;
    m->state_since_ms = now_ms();
    if (m->cbs.on_state)
        m->cbs.on_state(m->ud, s, reason);
}

/* ---- sending -------------------------------------------------------------- */

static int send_packet(lume_mqtt *m, const lume_mqtt_packet *p)
{
    if (!m->conn)
        return -ENOTCONN;
    size_t need = 0;
    ssize_t n = lume_mqtt_encode(p, m->enc, m->enccap, &need);
    if (n == -ENOSPC) {
        unsigned char *b = realloc(m->enc, need);
        if (!b)
            return -ENOMEM;
        m->enc = b;
        m->enccap = need;
        n = lume_mqtt_encode(p, m->enc, m->enccap, &need);
    }
    if (n < 0)
        return (int)n;
    int r = lume_conn_send(m->conn, m->enc, (size_t)n);
    if (r == 0) {
        m->st.bytes_out += (uint64_t)n;
        m->last_tx_ms = now_ms();
    }
    return r;
}

static bool pkid_in_use(lume_mqtt *m, uint16_t id)
{
    for (int i = 0; i < m->ninf; i++)
        if (m->inf[i].pkid == id)
            return true;
    for (size_t i = 0; i < m->nstates; i++)
        if (m->states[i].pkid == id)
            return true;
    for (size_t i = 0; i < m->nsubs; i++)
        if (m->subs[i].pkid == id)
            return true;
    for (size_t i = 0; i < m->nawaiting; i++)   /* PUBREL ids are the broker's */
        if (m->awaiting[i].id == id && m->awaiting[i].type != LUME_MQTT_PUBREL)
            return true;
    return false;
}

/* ---- acknowledgements awaited, odd events ---------------------------------- */

static void await_add(lume_mqtt *m, int type, uint16_t id)
{
    if (m->nawaiting == MAX_AWAIT) {     /* forget the oldest */
        memmove(m->awaiting, m->awaiting + 1, (MAX_AWAIT - 1) * sizeof *m->awaiting);
        m->nawaiting--;
    }
    m->awaiting[m->nawaiting].type = (uint8_t)type;
    m->awaiting[m->nawaiting].id = id;
    m->nawaiting++;
}

/* True (and forgotten) when an acknowledgement of this type and id was due. */
static bool await_take(lume_mqtt *m, int type, uint16_t id)
{
    for (size_t i = 0; i < m->nawaiting; i++)
        if (m->awaiting[i].type == type && m->awaiting[i].id == id) {
            memmove(m->awaiting + i, m->awaiting + i + 1,
                    (m->nawaiting - i - 1) * sizeof *m->awaiting);
            m->nawaiting--;
            return true;
        }
    return false;
}

/* A summary of what was not logged in full, once the window has passed. */
static void oddlog_flush(oddlog *o, int64_t now)
{
    if (!o->window_n || now - o->window_ms < ODD_LOG_EVERY_MS)
        return;
    lume_log(o->level, "mqtt", "%llu more %s in the last %lld s (%llu in all); the last: %s",
             (unsigned long long)o->window_n, o->what, (long long)((now - o->window_ms) / 1000),
             (unsigned long long)o->n, o->last);
    o->window_ms = now;
    o->window_n = 0;
}

static void oddlog_event(oddlog *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void oddlog_event(oddlog *o, const char *fmt, ...)
{
    int64_t now = now_ms();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->last, sizeof o->last, fmt, ap);
    va_end(ap);
    if (++o->n <= ODD_LOG_FULL) {
        lume_log(o->level, "mqtt", "%s", o->last);
        if (o->n == ODD_LOG_FULL)
            lume_log(o->level, "mqtt", "further %s are summarised every %d s", o->what,
                     ODD_LOG_EVERY_MS / 1000);
        o->window_ms = now;
        return;
    }
    o->window_n++;
    oddlog_flush(o, now);
}

static void unexpected_ack(lume_mqtt *m, int type, uint16_t id, const char *why)
{
    m->st.unexpected_acks++;
    oddlog_event(&m->odd_acks, "unexpected %s with packet id %u from %s:%d (%s); ignored",
                 lume_mqtt_type_name(type), id, m->url.host, m->url.port, why);
}

static uint16_t alloc_pkid(lume_mqtt *m)
{
    for (;;) {
        if (++m->next_pkid == 0)
            m->next_pkid = 1;
        if (!pkid_in_use(m, m->next_pkid)) {
            lume_check(m->next_pkid != 0, "packet ids run 1..65535 (MQTT 3.1.1, 2.3.1)");
            return m->next_pkid;
        }
    }
}

/* Messages peeked but not yet sent are kept in m->peeked[pf_pos..pf_n):
 * each SQLite peek is a read transaction, so peeking PEEK_MAX at once and
 * handing them out as window slots free keeps the PUBACK -> PUBLISH path
 * cheap. The prefetch is dropped on every new commit (so a new alarm
 * overtakes what was prefetched) and on disconnect. */
static void drop_prefetch(lume_mqtt *m)
{
    for (int i = m->pf_pos; i < m->pf_n; i++)
        lume_outbox_msg_clear(&m->peeked[i]);
    m->pf_pos = m->pf_n = 0;
}

/* Nothing goes out after a DISCONNECT (lume_mqtt_reconnect, lume_mqtt_stop). */
static bool may_send(const lume_mqtt *m)
{
    return m->state == LUME_MQTT_CONNECTED && m->conn && !m->renewing && !m->stopping;
}

static void pump(lume_mqtt *m)
{
    while (may_send(m) &&
           m->ninf < m->o.window && lume_conn_queued(m->conn) < SEND_HIGH_WATER) {
        if (m->pf_pos == m->pf_n) {
            m->pf_pos = m->pf_n = 0;
            int n = lume_outbox_peek(m->ob, m->peeked, PEEK_MAX);
            m->outbox_empty = n == 0;
            if (n <= 0)
                break;
            m->pf_n = n;
        }
        lume_outbox_msg *msg = &m->peeked[m->pf_pos++];
        lume_mqtt_packet p = {.type = LUME_MQTT_PUBLISH};
        p.publish.qos = (uint8_t)msg->qos;
        char stamped[1024]; /* the topic as it leaves (cbs.topic_out) */
        const char *topic = m->cbs.topic_out
                                ? m->cbs.topic_out(m->ud, msg->topic, stamped, sizeof stamped)
                                : NULL;
        p.publish.topic = lume_mqtt_cstr(topic ? topic : msg->topic);
        p.publish.payload = msg->payload;
        p.publish.payload_len = msg->len;
        bool resend = msg->attempts > 0;
        int r;
        if (msg->qos == 1) {
            uint16_t id = msg->packet_id && !pkid_in_use(m, msg->packet_id)
                              ? msg->packet_id : alloc_pkid(m);
            p.publish.packet_id = id;
            p.publish.dup = resend;
            int mr = lume_outbox_mark_inflight(m->ob, msg->id, id);
            if (mr < 0) { /* invariant 1: never sent unless marked */
                lume_outbox_msg_clear(msg);
                if (mr == -ENOENT)
                    continue; /* gone since the peek (dropped by the cap) */
                drop_prefetch(m); /* out of memory, or the table unreadable: */
                return;           /* the next kick tries again */
            }
            r = send_packet(m, &p);
            if (r == 0) {
                lume_check(m->ninf < m->o.window, "invariant 3: at most opts.window in flight");
                m->inf[m->ninf].pkid = id;
                m->inf[m->ninf].id = msg->id;
                m->ninf++;
            }
        } else {
            r = send_packet(m, &p);
            if (r == 0)
                lume_outbox_ack(m->ob, msg->id); /* QoS 0: gone once queued */
        }
        if (r == 0) {
            if (resend)
                m->st.resent++;
            else
                m->st.sent++;
        } else if (r == -EINVAL) {
            /* cannot be encoded (should not happen: the outbox checks
             * topics): drop it loudly rather than block the lane */
            lume_log(LUME_LOG_ERROR, "mqtt", "message %llu to '%s' cannot be encoded; "
                     "dropped", (unsigned long long)msg->id, msg->topic);
            lume_outbox_ack(m->ob, msg->id);
        }
        lume_outbox_msg_clear(msg);
        if (r != 0 && r != -EINVAL) {
            drop_prefetch(m);
            return;
        }
    }
}

void lume_mqtt_kick(lume_mqtt *m)
{
    drop_prefetch(m); /* newly committed messages may belong before these */
    m->outbox_empty = false;
    pump(m);
}


static void send_state(lume_mqtt *m, state_doc *d)
{
    lume_mqtt_packet p = {.type = LUME_MQTT_PUBLISH};
    p.publish.qos = 1;
    p.publish.retain = true;
    p.publish.topic = lume_mqtt_cstr(d->topic);
    p.publish.payload = d->payload;
    p.publish.payload_len = d->len;
    d->pkid = 0;
    d->pkid = alloc_pkid(m);
    p.publish.packet_id = d->pkid;
    if (send_packet(m, &p) < 0)
        d->pkid = 0;
}

int lume_mqtt_publish_state(lume_mqtt *m, const char *topic, const void *payload, size_t len)
{
    if (!lume_mqtt_topic_valid(topic))
        return -EINVAL;
    state_doc *d = NULL;
    for (size_t i = 0; i < m->nstates; i++)
        if (!strcmp(m->states[i].topic, topic))
            d = &m->states[i];
    if (!d) {
        if (m->nstates == MAX_STATE)
            return -EINVAL;
        d = &m->states[m->nstates];
        memset(d, 0, sizeof *d);
        if (!(d->topic = strdup(topic)))
            return -ENOMEM;
        m->nstates++;
    }
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, payload, len);
    free(d->payload);
    d->payload = copy;
    d->len = len;
    d->acked = false;
    if (d->pkid && m->state == LUME_MQTT_CONNECTED)
        await_add(m, LUME_MQTT_PUBACK, d->pkid); /* an older copy in flight: its PUBACK
                                                    is due but no longer counts */
    d->pkid = 0;
    if (may_send(m))
        send_state(m, d);
    return 0;
}

bool lume_mqtt_state_synced(const lume_mqtt *m)
{
    for (size_t i = 0; i < m->nstates; i++)
        if (!m->states[i].acked)
            return false;
    return true;
}

int lume_mqtt_publish_now(lume_mqtt *m, const char *topic, const void *payload, size_t len,
                          bool retain)
{
    if (!may_send(m)) /* nothing after DISCONNECT */
        return -ENOTCONN;
    lume_mqtt_packet p = {.type = LUME_MQTT_PUBLISH};
    p.publish.topic = lume_mqtt_cstr(topic);
    p.publish.payload = payload;
    p.publish.payload_len = len;
    p.publish.retain = retain;
    return send_packet(m, &p);
}

size_t lume_mqtt_queued(const lume_mqtt *m)
{
    return m->conn ? lume_conn_queued(m->conn) : 0;
}

int lume_mqtt_publish_request(lume_mqtt *m, const char *topic, const void *payload, size_t len)
{
    if (!may_send(m)) /* nothing after DISCONNECT */
        return -ENOTCONN;
    lume_mqtt_packet p = {.type = LUME_MQTT_PUBLISH};
    p.publish.topic = lume_mqtt_cstr(topic);
    p.publish.payload = payload;
    p.publish.payload_len = len;
    p.publish.qos = 1;
    p.publish.packet_id = alloc_pkid(m);
    int r = send_packet(m, &p);
    if (r == 0)
        await_add(m, LUME_MQTT_PUBACK, p.publish.packet_id); /* invariant 7: its PUBACK */
    return r;
}

static int send_subscribe(lume_mqtt *m, sub *s)
{
    m->settle = 0;   /* invariant 9: its retained messages come before the next PINGRESP */
    lume_mqtt_sub one = {.filter = lume_mqtt_cstr(s->filter), .qos = (uint8_t)s->qos};
    lume_mqtt_packet p = {.type = LUME_MQTT_SUBSCRIBE};
    s->pkid = alloc_pkid(m);
    p.subscribe.packet_id = s->pkid;
    p.subscribe.subs = &one;
    p.subscribe.count = 1;
    return send_packet(m, &p);
}

int lume_mqtt_add_subscription(lume_mqtt *m, const char *filter, int qos)
{
    if (!filter || !lume_mqtt_filter_valid(filter) || qos < 0 || qos > 1)
        return -EINVAL;
    for (size_t i = 0; i < m->nsubs; i++)
        if (!strcmp(m->subs[i].filter, filter)) {
            m->subs[i].qos = qos > m->subs[i].qos ? qos : m->subs[i].qos;
            return 0;
        }
    sub *s = realloc(m->subs, (m->nsubs + 1) * sizeof *s);
    if (!s)
        return -ENOMEM;
    m->subs = s;
    s = &m->subs[m->nsubs];
    s->filter = strdup(filter);
    s->qos = qos;
    s->pkid = 0;
    if (!s->filter)
        return -ENOMEM;
    m->nsubs++;
    if (may_send(m))
        send_subscribe(m, s);
    return 0;
}

int lume_mqtt_remove_subscription(lume_mqtt *m, const char *filter)
{
    for (size_t i = 0; i < m->nsubs; i++)
        if (!strcmp(m->subs[i].filter, filter)) {
            if (m->state == LUME_MQTT_CONNECTED) {
                if (m->subs[i].pkid)   /* its SUBACK is still due */
                    await_add(m, LUME_MQTT_SUBACK, m->subs[i].pkid);
                lume_mqtt_sub one = {.filter = lume_mqtt_cstr(filter)};
                lume_mqtt_packet p = {.type = LUME_MQTT_UNSUBSCRIBE};
                p.subscribe.packet_id = alloc_pkid(m);
                p.subscribe.subs = &one;
                p.subscribe.count = 1;
                if (send_packet(m, &p) == 0)
                    await_add(m, LUME_MQTT_UNSUBACK, p.subscribe.packet_id);
            }
            free(m->subs[i].filter);
            m->subs[i] = m->subs[--m->nsubs];
            return 0;
        }
    return -ENOENT;
}

/* ---- connection life ------------------------------------------------------ */

static void connect_now(lume_mqtt *m);

static void schedule_retry(lume_mqtt *m)
{
    if (m->connected_at_ms && now_ms() - m->connected_at_ms >= m->o.stable_ms)
        m->attempt = 0;
    m->connected_at_ms = 0;
    int64_t cap = m->o.backoff_min_ms;
    for (int i = 0; i < m->attempt && cap < m->o.backoff_max_ms; i++)
        cap *= 2;
    if (cap > m->o.backoff_max_ms)
        cap = m->o.backoff_max_ms;
    /* full jitter between the minimum and the current cap */
    int64_t delay = m->o.backoff_min_ms;
    if (cap > m->o.backoff_min_ms)
        delay += (int64_t)(rnd(m) % (uint64_t)(cap - m->o.backoff_min_ms + 1));
    if (m->attempt < 30)
        m->attempt++;
    set_state(m, LUME_MQTT_BACKOFF, m->last_error);
    lume_log(LUME_LOG_WARN, "mqtt", "%s; reconnecting in %lld ms (attempt %d)", m->last_error,
             (long long)delay, m->attempt);
    lume_timer_start(&m->retry_timer, delay * 1000);
}

/* The connection is over (reason says why). Close it if still open, put
 * in-flight messages back, and schedule the next attempt. */
static void teardown(lume_mqtt *m, const char *reason)
{
    snprintf(m->last_error, sizeof m->last_error, "%s", reason);
    if (m->conn) {
        lume_conn_close(m->conn);
        m->conn = NULL;
    }
    lume_mqtt_parser_reset(m->parser);
    drop_prefetch(m);
    m->ninf = 0;
    lume_outbox_requeue(m->ob);
    m->ping_sent_ms = 0;
    m->nawaiting = 0;                /* nothing is answered across connections */
}

/* The end of lume_mqtt_reconnect: connect again at once, no backoff. */
static void reconnect_now(lume_mqtt *m)
{
    m->renewing = false;
    lume_timer_cancel(&m->retry_timer);
    teardown(m, m->renew_reason);   /* in-flight messages go back to the outbox */
    m->connected_at_ms = 0;
    m->attempt = 0;
    connect_now(m);
}

static void disconnected(lume_mqtt *m, const char *reason)
{
    if (m->renewing && !m->stopping) { /* the broker closed after our DISCONNECT */
        reconnect_now(m);
        return;
    }
    teardown(m, reason);
    if (m->stopping) {
        set_state(m, LUME_MQTT_OFFLINE, reason);
        return;
    }
    schedule_retry(m);
}

static void on_packet_connack(lume_mqtt *m, const lume_mqtt_packet *p)
{
    if (p->connack.return_code != 0) {
        char why[512];
        snprintf(why, sizeof why, "CONNACK refused by %s:%d: %s (code %d)", m->url.host,
                 m->url.port, lume_mqtt_connack_name(p->connack.return_code),
                 p->connack.return_code);
        m->drop = strdup(why);
        m->refused = p->connack.return_code;
        return;
    }
    m->refused = 0;
    m->st.connects++;
    if (m->st.connects > 1)
        m->st.reconnects++;
    m->connected_at_ms = now_ms();
    m->last_error[0] = 0;
    m->ninf = 0;
    drop_prefetch(m);
    lume_outbox_requeue(m->ob);
    m->outbox_empty = false;
    m->settle = 0;
    /* nothing of an earlier connection is in flight on this one */
    for (size_t i = 0; i < m->nsubs; i++)
        m->subs[i].pkid = 0;
    for (size_t i = 0; i < m->nstates; i++)
        m->states[i].pkid = 0;
    m->nawaiting = 0;
    lume_check(m->ninf == 0 && m->pf_pos == m->pf_n,
               "invariant 2: on CONNACK nothing is in flight or prefetched");

    /* invariant 8: the subscriptions go out before the host hears of the
     * connection, so a request it sends from the callback (a twin GET) is
     * behind the SUBSCRIBE for its answer (a broker or hub handles one
     * connection's packets in order; an answer published before its
     * subscription is lost) */
    for (size_t i = 0; i < m->nsubs; i++)
        send_subscribe(m, &m->subs[i]);
    /* the host may subscribe or publish state from this callback: what it
     * sends now is not sent again below (pkid set) */
    set_state(m, LUME_MQTT_CONNECTED, p->connack.session_present ? "session present" : "new session");
    lume_log(LUME_LOG_INFO, "mqtt", "connected to %s://%s:%d as %s (%s)", m->url.scheme,
             m->url.host, m->url.port, m->o.client_id,
             p->connack.session_present ? "session resumed" : "new session");
    if (m->o.status_topic)
        lume_mqtt_publish_now(m, m->o.status_topic, "online", 6, true);
    for (size_t i = 0; i < m->nstates; i++)
        if (!m->states[i].acked && !m->states[i].pkid)
            send_state(m, &m->states[i]);
    pump(m);
}

/* Invariant 6: an oversize PUBLISH, its payload already dropped. */
static void on_publish_skipped(lume_mqtt *m, const lume_mqtt_packet *p)
{
    const lume_mqtt_publish *pub = &p->publish;
    lume_check(pub->oversize && pub->payload == NULL && p->wire_size > m->o.max_packet,
               "invariant 6: a skipped PUBLISH is over max_packet and has no payload");
    char topic[300], why[512];
    if (pub->topic.ptr)
        snprintf(topic, sizeof topic, "'%.256s%s'", pub->topic.ptr,
                 pub->topic.len > 256 ? "..." : "");
    else
        snprintf(topic, sizeof topic, "a topic of %zu bytes (too long to keep)",
                 pub->topic.len);
    snprintf(why, sizeof why, "PUBLISH to %s of %u bytes is larger than net.max_packet "
             "(%zu bytes)", topic, p->wire_size, m->o.max_packet);
    m->st.skipped_oversize++;
    oddlog_event(&m->odd_skips, "%s: skipped (QoS %u%s, %zu payload bytes dropped); the "
                 "connection stays up", why, pub->qos, pub->retain ? ", retained" : "",
                 pub->payload_len);
    if (m->cbs.on_skipped)
        m->cbs.on_skipped(m->ud, pub->topic.ptr, p->wire_size, pub->qos, pub->retain, why);
    if (pub->qos == 1) {
        lume_mqtt_packet ack = {.type = LUME_MQTT_PUBACK, .packet_id = pub->packet_id};
        send_packet(m, &ack);
    } else if (pub->qos == 2) {
        lume_mqtt_packet rec = {.type = LUME_MQTT_PUBREC, .packet_id = pub->packet_id};
        if (send_packet(m, &rec) == 0)
            await_add(m, LUME_MQTT_PUBREL, pub->packet_id);
    }
}

static int on_packet(void *ud, const lume_mqtt_packet *p)
{
    lume_mqtt *m = ud;
    lume_check(m->conn && (m->state == LUME_MQTT_HANDSHAKE || m->state == LUME_MQTT_CONNECTED),
               "packets arrive only on an open connection, after CONNECT");
    m->last_rx_ms = now_ms();
    m->ping_sent_ms = 0; /* any packet proves the broker alive */
    char why[512];
    if (m->state == LUME_MQTT_HANDSHAKE && p->type != LUME_MQTT_CONNACK) {
        snprintf(why, sizeof why, "protocol error: %s before CONNACK",
                 lume_mqtt_type_name(p->type));
        m->drop = strdup(why);
        return 1;
    }
    switch (p->type) {
    case LUME_MQTT_CONNACK:
        if (m->state != LUME_MQTT_HANDSHAKE) {
            m->drop = strdup("protocol error: a second CONNACK");
            return 1;
        }
        on_packet_connack(m, p);
        return m->drop ? 1 : 0;
    case LUME_MQTT_PUBACK:
        for (size_t i = 0; i < m->nstates; i++)
            if (m->states[i].pkid == p->packet_id) {
                m->states[i].pkid = 0;
                m->states[i].acked = true;
                return 0;
            }
        for (int i = 0; i < m->ninf; i++)
            if (m->inf[i].pkid == p->packet_id) {
                lume_outbox_ack(m->ob, m->inf[i].id);
                m->inf[i] = m->inf[--m->ninf];
                m->st.acked++;
                return 0;
            }
        if (!await_take(m, LUME_MQTT_PUBACK, p->packet_id))
            unexpected_ack(m, p->type, p->packet_id, "no message in flight with that id");
        return 0;
    case LUME_MQTT_PUBLISH:
        if (p->publish.oversize) {
            on_publish_skipped(m, p);
            return 0;
        }
        if (p->publish.qos > 1) {
            snprintf(why, sizeof why, "protocol error: QoS 2 PUBLISH to '%s' (lume subscribes "
                     "with QoS 0 or 1 only)", p->publish.topic.ptr);
            m->drop = strdup(why);
            return 1;
        }
        m->st.received++;
        if (m->cbs.on_message)
            m->cbs.on_message(m->ud, p->publish.topic.ptr, p->publish.payload,
                              p->publish.payload_len, p->publish.qos, p->publish.retain);
        if (p->publish.qos == 1 && m->conn) {
            lume_mqtt_packet ack = {.type = LUME_MQTT_PUBACK, .packet_id = p->publish.packet_id};
            send_packet(m, &ack);
        }
        return 0;
    case LUME_MQTT_SUBACK:
        for (size_t i = 0; i < m->nsubs; i++)
            if (m->subs[i].pkid == p->suback.packet_id) {
                m->subs[i].pkid = 0;
                if (p->suback.count && p->suback.codes[0] == LUME_MQTT_SUBACK_FAILURE)
                    lume_log(LUME_LOG_ERROR, "mqtt", "the broker refused the subscription to "
                             "'%s'", m->subs[i].filter);
                return 0;
            }
        if (!await_take(m, LUME_MQTT_SUBACK, p->suback.packet_id))
            unexpected_ack(m, p->type, p->suback.packet_id, "no SUBSCRIBE waiting with that id");
        return 0;
    case LUME_MQTT_UNSUBACK:
        if (!await_take(m, LUME_MQTT_UNSUBACK, p->packet_id))
            unexpected_ack(m, p->type, p->packet_id, "no UNSUBSCRIBE waiting with that id");
        return 0;
    case LUME_MQTT_PUBREC:
    case LUME_MQTT_PUBCOMP:
        unexpected_ack(m, p->type, p->packet_id, "lume never publishes with QoS 2");
        return 0;
    case LUME_MQTT_PUBREL: {
        /* the broker releases a QoS 2 message we PUBREC'd (a skipped one);
         * 4.3.3: answer PUBCOMP whatever the id */
        if (!await_take(m, LUME_MQTT_PUBREL, p->packet_id))
            unexpected_ack(m, p->type, p->packet_id, "no PUBREC of ours with that id");
        lume_mqtt_packet comp = {.type = LUME_MQTT_PUBCOMP, .packet_id = p->packet_id};
        send_packet(m, &comp);
        return 0;
    }
    case LUME_MQTT_PINGRESP:
        if (m->settle == 1)
            m->settle = 2;   /* invariant 9 */
        return 0;
    default:
        snprintf(why, sizeof why, "protocol error: unexpected %s from the broker",
                 lume_mqtt_type_name(p->type));
        m->drop = strdup(why);
        return 1;
    }
}

static void conn_open(void *ud)
{
    lume_mqtt *m = ud;
    set_state(m, LUME_MQTT_HANDSHAKE, NULL);
    lume_mqtt_packet p = {.type = LUME_MQTT_CONNECT};
    p.connect.client_id = lume_mqtt_cstr(m->o.client_id);
    p.connect.keepalive = (uint16_t)m->o.keepalive_s;
    p.connect.clean_session = m->o.clean_session;
    if (m->o.status_topic) {
        p.connect.will = true;
        p.connect.will_qos = 1;
        p.connect.will_retain = true;
        p.connect.will_topic = lume_mqtt_cstr(m->o.status_topic);
        p.connect.will_message = lume_mqtt_cstr("offline");
    }
    if (m->o.username) {
        p.connect.has_username = true;
        p.connect.username = lume_mqtt_cstr(m->o.username);
    }
    const char *pw = m->cbs.password ? m->cbs.password(m->ud) : NULL;
    if (!pw)
        pw = m->o.password;
    if (pw && m->o.username) { /* 3.1.2-22: a password only with a user name */
        p.connect.has_password = true;
        p.connect.password = lume_mqtt_cstr(pw);
    }
    m->last_rx_ms = now_ms();
    int r = send_packet(m, &p);
    if (r < 0) {
        char why[512];
        snprintf(why, sizeof why, "cannot send CONNECT: %s", strerror(-r));
        disconnected(m, why);
    }
}

static void conn_data(void *ud, const void *data, size_t n)
{
    lume_mqtt *m = ud;
    m->st.bytes_in += n;
    int r = lume_mqtt_parser_feed(m->parser, data, n, on_packet, m);
    if (r < 0 && !m->drop) {
        m->st.protocol_errors++;
        char why[400];
        snprintf(why, sizeof why, "protocol error from %s:%d: %s", m->url.host, m->url.port,
                 lume_mqtt_parser_error(m->parser));
        lume_log(LUME_LOG_ERROR, "mqtt", "%s", why);
        disconnected(m, why);
        return;
    }
    if (m->drop) {
        char *why = m->drop;
        m->drop = NULL;
        if (strncmp(why, "CONNACK", 7))
            m->st.protocol_errors++;
        disconnected(m, why);
        free(why);
        return;
    }
    pump(m); /* PUBACKs in this read freed window slots */
}

static void conn_close(void *ud, const char *reason)
{
    lume_mqtt *m = ud;
    m->conn = NULL; /* net frees it */
    disconnected(m, reason);
}

static void conn_drain(void *ud)
{
    lume_mqtt *m = ud;
    if (m->stopping && m->conn) {
        disconnected(m, m->stop_reason[0] ? m->stop_reason : "stopped");
        return;
    }
    if (m->renewing && m->conn) {
        reconnect_now(m);
        return;
    }
    pump(m);
}

static void connect_now(lume_mqtt *m)
{
    set_state(m, LUME_MQTT_CONNECTING, NULL);
    lume_conn_cbs cbs = {.on_open = conn_open, .on_data = conn_data, .on_close = conn_close,
                         .on_drain = conn_drain};
    char *err = NULL;
    m->conn = lume_conn_open(m->net, &m->url, &cbs, m, &err);
    if (!m->conn) {
        disconnected(m, err ? err : "cannot connect");
        free(err);
    }
}

static void retry_fire(lume_timer *t) { connect_now(t->ud); }

void lume_mqtt_reconnect(lume_mqtt *m, const char *reason)
{
    if (m->stopping || m->state == LUME_MQTT_OFFLINE || m->renewing)
        return;
    lume_log(LUME_LOG_INFO, "mqtt", "reconnecting: %s", reason);
    snprintf(m->renew_reason, sizeof m->renew_reason, "%s", reason);
    if (m->conn && m->state == LUME_MQTT_CONNECTED) {
        lume_mqtt_packet p = {.type = LUME_MQTT_DISCONNECT};
        if (send_packet(m, &p) == 0) {
            /* a clean goodbye first: the rest when it is written (conn_drain),
             * when the broker closes, or after RENEW_DRAIN_MS (tick) */
            m->renewing = true;
            m->renew_at_ms = now_ms();
            return;
        }
    }
    reconnect_now(m);
}

/* Once a second: connect timeout, keepalive, dead peer. */
static void tick(lume_timer *t)
{
    lume_mqtt *m = t->ud;
    int64_t now = now_ms();
    int64_t ka = (int64_t)m->o.keepalive_s * 1000;
    if ((m->state == LUME_MQTT_CONNECTING || m->state == LUME_MQTT_HANDSHAKE) &&
        now - m->state_since_ms >= m->o.connect_timeout_ms) {
        char why[512];
        snprintf(why, sizeof why, "%s to %s:%d timed out after %d ms",
                 m->state == LUME_MQTT_CONNECTING ? "connecting" : "waiting for CONNACK",
                 m->url.host, m->url.port, m->o.connect_timeout_ms);
        disconnected(m, why);
    } else if (m->state == LUME_MQTT_CONNECTED && ka > 0) {
        if (m->ping_sent_ms && now - m->last_rx_ms >= ka + ka / 2) {
            char why[512];
            snprintf(why, sizeof why, "keepalive: nothing from %s:%d for %lld ms (1.5 x "
                     "keepalive)", m->url.host, m->url.port, (long long)(now - m->last_rx_ms));
            disconnected(m, why);
        } else if (!m->ping_sent_ms && (now - m->last_rx_ms >= ka || now - m->last_tx_ms >= ka)) {
            lume_mqtt_packet p = {.type = LUME_MQTT_PINGREQ};
            if (send_packet(m, &p) == 0)
                m->ping_sent_ms = now;
        }
    }
    if (m->renewing && now - m->renew_at_ms >= RENEW_DRAIN_MS)
        reconnect_now(m);
    else if (m->stopping && m->conn && m->stop_at_ms && now - m->stop_at_ms >= RENEW_DRAIN_MS)
        disconnected(m, m->stop_reason);
    oddlog_flush(&m->odd_acks, now);
    oddlog_flush(&m->odd_skips, now);
    int64_t period = ka > 0 && ka / 4 < 1000 ? (ka / 4 > 50 ? ka / 4 : 50) : 1000;
    lume_timer_start(t, period * 1000);
}

/* ---- life cycle ----------------------------------------------------------- */

static const char *own(lume_mqtt *m, int slot, const char *s)
{
    if (!s)
        return NULL;
    m->strs[slot] = strdup(s);
    return m->strs[slot];
}

lume_mqtt *lume_mqtt_new(lume_loop *loop, lume_outbox *ob, const lume_mqtt_opts *o,
                         const lume_mqtt_cbs *cbs, void *ud, char **err)
{
    lume_mqtt *m = calloc(1, sizeof *m);
    if (!m) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    m->loop = loop;
    m->ob = ob;
    m->o = *o;
    m->cbs = *cbs;
    m->ud = ud;
    m->rng = (uint64_t)lume_wall_ns() ^ (uint64_t)(uintptr_t)m;
    if (lume_url_parse(o->url, &m->url, err) < 0)
        goto err;
    m->o.url = own(m, 0, o->url);
    m->o.client_id = own(m, 1, o->client_id ? o->client_id : "lume");
    m->o.username = own(m, 2, o->username);
    m->o.password = own(m, 3, o->password);
    m->o.status_topic = own(m, 4, o->status_topic);
    if (!m->o.url || !m->o.client_id || (o->username && !m->o.username) ||
        (o->password && !m->o.password) || (o->status_topic && !m->o.status_topic)) {
        *err = lume_strdupf("out of memory");
        goto err;
    }
    if (m->o.window < 1)
        m->o.window = 1;
    if (m->o.password && !m->o.username) {
        *err = lume_strdupf("net.password needs net.username (MQTT 3.1.1 sends a password only "
                            "with a user name)");
        goto err;
    }
    m->inf = calloc((size_t)m->o.window, sizeof *m->inf);
    m->parser = lume_mqtt_parser_new(m->o.max_packet, 0);
    if (!m->inf || !m->parser) {
        *err = lume_strdupf("out of memory");
        goto err;
    }
    lume_mqtt_parser_skip_oversize(m->parser, true); /* invariant 6 */
    m->odd_acks.what = "unexpected acknowledgements";
    m->odd_acks.level = LUME_LOG_WARN;
    m->odd_skips.what = "oversize messages skipped";
    m->odd_skips.level = LUME_LOG_ERROR;
    m->net = lume_net_new(loop, m->url.tls ? &o->tls : NULL, err);
    if (!m->net)
        goto err;
    lume_timer_init(&m->retry_timer, loop, retry_fire, m);
    lume_timer_name(&m->retry_timer, "mqtt reconnect");
    lume_timer_init(&m->tick_timer, loop, tick, m);
    lume_timer_name(&m->tick_timer, "mqtt keepalive");
    return m;
err:
    lume_mqtt_free(m);
    return NULL;
}

void lume_mqtt_start(lume_mqtt *m)
{
    if (m->state != LUME_MQTT_OFFLINE)
        return;   /* already connecting or connected */
    m->stopping = false;
    m->stop_at_ms = 0;
    m->stop_reason[0] = 0;
    lume_timer_start(&m->tick_timer, 1000 * 1000);
    connect_now(m);
}

static bool drained(void *ud)
{
    lume_mqtt *m = ud;
    return !m->conn;
}

void lume_mqtt_free(lume_mqtt *m)
{
    if (!m)
        return;
    if (m->loop) {
        lume_timer_cancel(&m->retry_timer);
        lume_timer_cancel(&m->tick_timer);
    }
    if (m->conn && m->state == LUME_MQTT_CONNECTED) {
        /* a clean goodbye: the status says offline, no will needed */
        if (!m->stopping) { /* (else lume_mqtt_stop said goodbye already) */
            if (m->o.status_topic)
                lume_mqtt_publish_now(m, m->o.status_topic, "offline", 7, true);
            m->stopping = true;
            lume_mqtt_packet p = {.type = LUME_MQTT_DISCONNECT};
            send_packet(m, &p);
        }
        lume_loop_drain(m->loop, 500, drained, m);
    }
    if (m->conn) {
        lume_conn_close(m->conn);
        m->conn = NULL;
    }
    drop_prefetch(m);
    lume_net_free(m->net);
    lume_mqtt_parser_free(m->parser);
    for (size_t i = 0; i < m->nsubs; i++)
        free(m->subs[i].filter);
    free(m->subs);
    for (size_t i = 0; i < m->nstates; i++) {
        free(m->states[i].topic);
        free(m->states[i].payload);
    }
    free(m->inf);
    free(m->enc);
    free(m->drop);
    for (size_t i = 0; i < sizeof m->strs / sizeof *m->strs; i++)
        free(m->strs[i]);
    free(m);
}

void lume_mqtt_stop(lume_mqtt *m, const char *reason)
{
    if (m->state == LUME_MQTT_OFFLINE || m->stopping)
        return;
    snprintf(m->stop_reason, sizeof m->stop_reason, "%s", reason ? reason : "stopped");
    lume_timer_cancel(&m->retry_timer);
    m->renewing = false;
    if (may_send(m)) {
        /* a clean goodbye: the status says offline, the broker drops the will */
        if (m->o.status_topic)
            lume_mqtt_publish_now(m, m->o.status_topic, "offline", 7, true);
        lume_mqtt_packet p = {.type = LUME_MQTT_DISCONNECT};
        if (send_packet(m, &p) == 0) {
            m->stopping = true;        /* the rest when it is written (conn_drain), */
            m->stop_at_ms = now_ms();  /* the broker closes, or RENEW_DRAIN_MS (tick) */
            lume_log(LUME_LOG_INFO, "mqtt", "disconnecting from %s:%d: %s", m->url.host,
                     m->url.port, m->stop_reason);
            return;
        }
    }
    m->stopping = true;
    disconnected(m, m->stop_reason);
}

bool lume_mqtt_settled(lume_mqtt *m)
{
    if (!may_send(m))
        return false;
    bool quiet = m->ninf == 0 && m->pf_pos == m->pf_n && m->outbox_empty &&
                 m->nawaiting == 0 && lume_mqtt_state_synced(m);
    for (size_t i = 0; quiet && i < m->nsubs; i++)
        quiet = m->subs[i].pkid == 0;
    if (!quiet)
        return false;
    if (m->settle == 0) {
        lume_mqtt_packet p = {.type = LUME_MQTT_PINGREQ};
        if (send_packet(m, &p) == 0) {
            m->settle = 1;
            if (!m->ping_sent_ms)
                m->ping_sent_ms = now_ms();
        }
        return false;
    }
    return m->settle == 2;
}

int lume_mqtt_get_state(const lume_mqtt *m) { return m->state; }

void lume_mqtt_get_stats(const lume_mqtt *m, lume_mqtt_stats *st)
{
    *st = m->st;
    st->inflight = (uint32_t)m->ninf;
}

const char *lume_mqtt_last_error(const lume_mqtt *m) { return m->last_error; }
int lume_mqtt_refused(const lume_mqtt *m) { return m->refused; }
