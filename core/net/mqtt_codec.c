/* core/net/mqtt_codec.c — see mqtt_codec.h.
 *
 * The parser is a state machine over the byte stream:
 *
 *     TYPE --first byte ok--> LENGTH --last length byte, size ok--> BODY
 *      ^                        |  (remaining length 0)               |
 *      |                        v                                      |
 *      +------ decode + validate ok, callback <---- body complete <----+
 *      |
 *      |          LENGTH --PUBLISH over max_packet, skip mode on--> SKIP
 *      |                                                              |
 *      +--- callback (publish.oversize, no payload) <-- last byte <---+
 *   any check failing: --> DEAD (error kept) --reset--> TYPE
 *
 * Invariants:
 *  1. Checks run as early as the bytes allow: the first byte's type and
 *     reserved flags when it arrives, the remaining length and the size
 *     limit (and the fixed size of CONNACK/acks/PINGs) when the last length
 *     byte arrives, before any body byte is buffered.
 *  2. The buffer holds one packet's body (the remaining-length bytes); it
 *     was allocated at init with max_packet bytes, and a body is at most
 *     max_packet - 2 bytes, so there is always room for a NUL after it.
 *  3. Decoding reads every field through a cursor that checks each length
 *     against what is left of the remaining length. A length-prefixed
 *     string is moved two bytes back over its own prefix and NUL-terminated
 *     in the gap; the next field is never touched.
 *  4. The callback sees a packet only after decoding and
 *     lume_mqtt_validate() — the same checks the encoder applies — passed.
 *  5. Skip mode (off unless asked for): a PUBLISH over max_packet is not an
 *     error. Its topic length, topic name and packet identifier are read
 *     one byte at a time (so every check fails at the same byte whatever
 *     the chunking) and checked as decode would check them; the topic is
 *     kept in the buffer when it fits there, else only its length; the
 *     payload bytes are counted and dropped as they arrive. Nothing but
 *     the topic is ever buffered. The callback then gets the packet with
 *     publish.oversize set and no payload. Every other type over
 *     max_packet is still -EMSGSIZE.
 */
#include "mqtt_codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

enum { ST_TYPE, ST_LENGTH, ST_BODY, ST_SKIP, ST_DEAD };

struct lume_mqtt_parser {
    uint8_t       *buf;          /* max_packet bytes */
    size_t         max_packet;
    lume_mqtt_sub *subs;         /* max_filters entries */
    size_t         max_filters;
    int            state;
    int            dead_rc;
    bool           in_cb;
    uint8_t        byte0;
    unsigned       len_bytes;    /* remaining-length bytes read so far */
    uint32_t       rl;
    uint32_t       have;         /* body bytes buffered (SKIP: read) */
    size_t         consumed;
    bool           skip;         /* skip mode: oversize PUBLISH streams through */
    uint32_t       skip_hdr;     /* SKIP: topic length + topic + packet id bytes */
    uint16_t       skip_tlen;    /* SKIP: the topic's length */
    uint16_t       skip_pid;     /* SKIP: the packet identifier */
    char           err[224];
};

static const char *const type_names[16] = {
    "reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
    "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
    "PINGREQ", "PINGRESP", "DISCONNECT", "reserved(15)",
};

const char *lume_mqtt_type_name(int type)
{
    if (type < 0 || type > 15)
        return "invalid";
    return type_names[type];
}

const char *lume_mqtt_connack_name(int code)
{
    static const char *const names[] = {
        "accepted", "unacceptable protocol version", "identifier rejected",
        "server unavailable", "bad user name or password", "not authorized",
    };
    if (code < 0 || code > 5)
        return "reserved";
    return names[code];
}

static void fmt(char *msg, size_t msglen, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt(char *msg, size_t msglen, const char *f, ...)
{
    if (!msg || !msglen)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, msglen, f, ap);
    va_end(ap);
}

/* ---- strings, topics, filters ---------------------------------------- */

/* Well-formed UTF-8 (Unicode table 3-7, RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) without U+0000 (1.5.3). */
enum { UTF8_OK, UTF8_NUL, UTF8_BAD_BYTE, UTF8_TRUNCATED };

static int utf8_check(const uint8_t *s, size_t len, size_t *at)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        *at = i;
        if (c < 0x80) {
            if (c == 0)
                return UTF8_NUL;
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0;          /* overlong */
            if (c == 0xED) hi = 0x9F;          /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90;          /* overlong */
            if (c == 0xF4) hi = 0x8F;          /* above U+10FFFF */
        } else
            return UTF8_BAD_BYTE;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len)
                return UTF8_TRUNCATED;
            uint8_t cc = s[i + k];
            if (cc < lo || cc > hi) {
                *at = i + k;
                return UTF8_BAD_BYTE;
            }
            lo = 0x80;
            hi = 0xBF;
        }
        i += n + 1;
    }
    return UTF8_OK;
}

/* What is wrong with s as an MQTT UTF-8 string (length, UTF-8, no U+0000):
 * LUME_MQTT_NAME_OK, or the problem with a phrase ("contains U+0000 at byte
 * 3") in why. */
static lume_mqtt_name_error utf8_problem(const lume_mqtt_str *s, char *why, size_t whylen)
{
    if (s->len > LUME_MQTT_MAX_STRING) {
        fmt(why, whylen, "is %zu bytes, longer than 65535", s->len);
        return LUME_MQTT_NAME_TOO_LONG;
    }
    if (s->len && !s->ptr) {
        fmt(why, whylen, "has length %zu but no data", s->len);
        return LUME_MQTT_NAME_BAD_UTF8;
    }
    size_t at = 0;
    switch (utf8_check((const uint8_t *)s->ptr, s->len, &at)) {
    case UTF8_OK:
        return LUME_MQTT_NAME_OK;
    case UTF8_NUL:
        fmt(why, whylen, "contains U+0000 at byte %zu", at);
        return LUME_MQTT_NAME_NUL;
    case UTF8_TRUNCATED:
        fmt(why, whylen, "is not well-formed UTF-8 (sequence at byte %zu truncated)", at);
        return LUME_MQTT_NAME_BAD_UTF8;
    default:
        fmt(why, whylen, "is not well-formed UTF-8 (byte 0x%02x at offset %zu)",
            (uint8_t)s->ptr[at], at);
        return LUME_MQTT_NAME_BAD_UTF8;
    }
}

/* True when s is a string MQTT accepts (length, UTF-8, no U+0000); else
 * writes "<ctx>: <what> ..." into msg and returns false. */
static bool check_utf8(const char *ctx, const char *what, const lume_mqtt_str *s,
                       char *msg, size_t msglen)
{
    char why[96];
    if (utf8_problem(s, why, sizeof why) == LUME_MQTT_NAME_OK)
        return true;
    fmt(msg, msglen, "%s: %s %s", ctx, what, why);
    return false;
}

/* Wildcard placement of a filter (UTF-8 checked elsewhere). NULL when fine,
 * else what is wrong. */
static const char *filter_problem(const char *s, size_t len)
{
    if (len == 0)
        return "is empty";
    for (size_t i = 0; i < len; i++) {
        bool level_start = i == 0 || s[i - 1] == '/';
        bool level_end = i + 1 == len || s[i + 1] == '/';
        if (s[i] == '#') {
            if (!level_start)
                return "has '#' not at the start of a level";
            if (i + 1 != len)
                return "has '#' not as the last level";
        } else if (s[i] == '+') {
            if (!level_start || !level_end)
                return "has '+' not alone in its level";
        }
    }
    return NULL;
}

static const char *topic_problem(const char *s, size_t len)
{
    if (len == 0)
        return "is empty";
    for (size_t i = 0; i < len; i++)
        if (s[i] == '+' || s[i] == '#')
            return s[i] == '+' ? "contains wildcard '+'" : "contains wildcard '#'";
    return NULL;
}

static bool check_topic(const char *ctx, const char *what, const lume_mqtt_str *s,
                        char *msg, size_t msglen)
{
    if (!check_utf8(ctx, what, s, msg, msglen))
        return false;
    const char *why = topic_problem(s->ptr, s->len);
    if (why) {
        fmt(msg, msglen, "%s: %s %s", ctx, what, why);
        return false;
    }
    return true;
}

static bool check_filter(const char *ctx, size_t i, const lume_mqtt_str *s,
                         char *msg, size_t msglen)
{
    char what[32];
    snprintf(what, sizeof what, "topic filter %zu", i + 1);
    if (!check_utf8(ctx, what, s, msg, msglen))
        return false;
    const char *why = filter_problem(s->ptr, s->len);
    if (why) {
        fmt(msg, msglen, "%s: %s '%.*s' %s", ctx, what,
            (int)(s->len > 64 ? 64 : s->len), s->ptr ? s->ptr : "", why);
        return false;
    }
    return true;
}

bool lume_mqtt_filter_valid(const char *filter)
{
    if (!filter)
        return false;
    lume_mqtt_str s = lume_mqtt_cstr(filter);
    return check_filter("", 0, &s, NULL, 0);
}

bool lume_mqtt_topic_valid(const char *topic)
{
    if (!topic)
        return false;
    lume_mqtt_str s = lume_mqtt_cstr(topic);
    return check_topic("", "", &s, NULL, 0);
}

lume_mqtt_name_error lume_mqtt_check_string(const char *s, size_t len, char *why,
                                            size_t whylen)
{
    lume_mqtt_str m = {s, len};
    fmt(why, whylen, "%s", "");
    return utf8_problem(&m, why, whylen);
}

lume_mqtt_name_error lume_mqtt_check_topic(const char *s, size_t len, char *why,
                                           size_t whylen)
{
    lume_mqtt_name_error e = lume_mqtt_check_string(s, len, why, whylen);
    if (e != LUME_MQTT_NAME_OK)
        return e;
    const char *p = topic_problem(s, len);
    if (!p)
        return LUME_MQTT_NAME_OK;
    fmt(why, whylen, "%s", p);
    return len == 0 ? LUME_MQTT_NAME_EMPTY : LUME_MQTT_NAME_WILDCARD;
}

lume_mqtt_name_error lume_mqtt_check_filter(const char *s, size_t len, char *why,
                                            size_t whylen)
{
    lume_mqtt_name_error e = lume_mqtt_check_string(s, len, why, whylen);
    if (e != LUME_MQTT_NAME_OK)
        return e;
    const char *p = filter_problem(s, len);
    if (!p)
        return LUME_MQTT_NAME_OK;
    fmt(why, whylen, "%s", p);
    return len == 0 ? LUME_MQTT_NAME_EMPTY : LUME_MQTT_NAME_BAD_FILTER;
}

bool lume_mqtt_topic_match(const char *filter, const char *topic)
{
    if (!filter || !topic)
        return false;
    size_t flen = strlen(filter), tlen = strlen(topic);
    if (flen > LUME_MQTT_MAX_STRING || tlen > LUME_MQTT_MAX_STRING ||
        filter_problem(filter, flen) || topic_problem(topic, tlen))
        return false;
    /* 4.7.2: a leading wildcard does not match a '$' topic. */
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    const char *f = filter, *t = topic;
    for (;;) {                       /* f and t each at the start of a level */
        if (f[0] == '#')
            return true;
        const char *fe = strchrnul(f, '/'), *te = strchrnul(t, '/');
        if (!(f[0] == '+' && fe == f + 1) &&
            (fe - f != te - t || memcmp(f, t, (size_t)(fe - f)) != 0))
            return false;
        if (!*fe && !*te)
            return true;
        if (!*fe)
            return false;            /* topic has more levels */
        if (!*te)                    /* "a/#" matches "a" */
            return strcmp(fe + 1, "#") == 0;
        f = fe + 1;
        t = te + 1;
    }
}

/* ---- validation and sizes --------------------------------------------- */

static bool fixed_flags(int type, uint8_t *flags)
{
    switch (type) {
    case LUME_MQTT_PUBREL: case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE:
        *flags = 2;
        return true;
    case LUME_MQTT_PUBLISH:
        return false;
    default:
        *flags = 0;
        return true;
    }
}

static size_t str_size(const lume_mqtt_str *s) { return 2 + s->len; }

/* Remaining length of a valid-so-far packet, saturating above the limit so
 * that no sum overflows. */
static uint64_t body_size(const lume_mqtt_packet *p)
{
    const uint64_t over = (uint64_t)LUME_MQTT_MAX_REMAINING + 1;
    uint64_t n = 0;
    switch (p->type) {
    case LUME_MQTT_CONNECT: {
        const lume_mqtt_connect *c = &p->connect;
        n = 10 + str_size(&c->client_id);
        if (c->will)
            n += str_size(&c->will_topic) + str_size(&c->will_message);
        if (c->has_username)
            n += str_size(&c->username);
        if (c->has_password)
            n += str_size(&c->password);
        return n;
    }
    case LUME_MQTT_CONNACK:
        return 2;
    case LUME_MQTT_PUBLISH:
        if (p->publish.payload_len >= over)
            return over;
        return str_size(&p->publish.topic) + (p->publish.qos ? 2 : 0) +
               p->publish.payload_len;
    case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC: case LUME_MQTT_PUBREL:
    case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        return 2;
    case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE:
        n = 2;
        for (size_t i = 0; i < p->subscribe.count && n < over; i++)
            n += str_size(&p->subscribe.subs[i].filter) +
                 (p->type == LUME_MQTT_SUBSCRIBE);
        return n < over ? n : over;
    case LUME_MQTT_SUBACK:
        if (p->suback.count >= over)
            return over;
        return 2 + p->suback.count;
    default:
        return 0;
    }
}

int lume_mqtt_validate(const lume_mqtt_packet *pkt, char *msg, size_t msglen)
{
    if (!pkt) {
        fmt(msg, msglen, "no packet");
        return -EINVAL;
    }
    const char *ctx = lume_mqtt_type_name(pkt->type);
    switch (pkt->type) {
    case LUME_MQTT_CONNECT: {
        const lume_mqtt_connect *c = &pkt->connect;
        if (!check_utf8(ctx, "client identifier", &c->client_id, msg, msglen))
            return -EINVAL;
        if (c->will) {
            if (c->will_qos > 2) {
                fmt(msg, msglen, "CONNECT: will QoS %u is invalid", c->will_qos);
                return -EINVAL;
            }
            if (!check_topic(ctx, "will topic", &c->will_topic, msg, msglen))
                return -EINVAL;
            if (c->will_message.len > LUME_MQTT_MAX_STRING ||
                (c->will_message.len && !c->will_message.ptr)) {
                fmt(msg, msglen, "CONNECT: will message of %zu bytes is invalid (at most 65535)",
                    c->will_message.len);
                return -EINVAL;
            }
        } else if (c->will_qos || c->will_retain) {
            fmt(msg, msglen, "CONNECT: will %s set without the will flag",
                c->will_qos ? "QoS" : "retain");
            return -EINVAL;
        }
        if (c->has_password && !c->has_username) {
            fmt(msg, msglen, "CONNECT: password flag set without the user name flag");
            return -EINVAL;
        }
        if (c->has_username && !check_utf8(ctx, "user name", &c->username, msg, msglen))
            return -EINVAL;
        if (c->has_password && (c->password.len > LUME_MQTT_MAX_STRING ||
                                (c->password.len && !c->password.ptr))) {
            fmt(msg, msglen, "CONNECT: password of %zu bytes is invalid (at most 65535)",
                c->password.len);
            return -EINVAL;
        }
        break;
    }
    case LUME_MQTT_CONNACK:
        if (pkt->connack.return_code > 5) {
            fmt(msg, msglen, "CONNACK: return code %u is reserved",
                pkt->connack.return_code);
            return -EINVAL;
        }
        if (pkt->connack.session_present && pkt->connack.return_code) {
            fmt(msg, msglen, "CONNACK: session present set with return code %u (%s)",
                pkt->connack.return_code, lume_mqtt_connack_name(pkt->connack.return_code));
            return -EINVAL;
        }
        break;
    case LUME_MQTT_PUBLISH: {
        const lume_mqtt_publish *m = &pkt->publish;
        if (m->qos > 2) {
            fmt(msg, msglen, "PUBLISH: QoS %u is invalid", m->qos);
            return -EINVAL;
        }
        if (m->dup && m->qos == 0) {
            fmt(msg, msglen, "PUBLISH: DUP set on a QoS 0 message");
            return -EINVAL;
        }
        if (m->oversize) {
            fmt(msg, msglen, "PUBLISH: a skipped (oversize) packet has no payload to encode");
            return -EINVAL;
        }
        if (!check_topic(ctx, "topic", &m->topic, msg, msglen))
            return -EINVAL;
        if (m->qos && m->packet_id == 0) {
            fmt(msg, msglen, "PUBLISH: packet identifier is 0 on a QoS %u message", m->qos);
            return -EINVAL;
        }
        if (m->payload_len && !m->payload) {
            fmt(msg, msglen, "PUBLISH: payload length %zu but no payload", m->payload_len);
            return -EINVAL;
        }
        break;
    }
    case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC: case LUME_MQTT_PUBREL:
    case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        if (pkt->packet_id == 0) {
            fmt(msg, msglen, "%s: packet identifier is 0", ctx);
            return -EINVAL;
        }
        break;
    case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE: {
        const lume_mqtt_subscribe *s = &pkt->subscribe;
        if (s->packet_id == 0) {
            fmt(msg, msglen, "%s: packet identifier is 0", ctx);
            return -EINVAL;
        }
        if (s->count == 0 || !s->subs) {
            fmt(msg, msglen, "%s: no topic filters", ctx);
            return -EINVAL;
        }
        for (size_t i = 0; i < s->count; i++) {
            if (!check_filter(ctx, i, &s->subs[i].filter, msg, msglen))
                return -EINVAL;
            if (pkt->type == LUME_MQTT_SUBSCRIBE && s->subs[i].qos > 2) {
                fmt(msg, msglen, "SUBSCRIBE: requested QoS %u of topic filter %zu is invalid",
                    s->subs[i].qos, i + 1);
                return -EINVAL;
            }
        }
        break;
    }
    case LUME_MQTT_SUBACK: {
        const lume_mqtt_suback *s = &pkt->suback;
        if (s->packet_id == 0) {
            fmt(msg, msglen, "SUBACK: packet identifier is 0");
            return -EINVAL;
        }
        if (s->count == 0 || !s->codes) {
            fmt(msg, msglen, "SUBACK: no return codes");
            return -EINVAL;
        }
        for (size_t i = 0; i < s->count; i++)
            if (s->codes[i] > 2 && s->codes[i] != LUME_MQTT_SUBACK_FAILURE) {
                fmt(msg, msglen,
                    "SUBACK: return code 0x%02x of entry %zu is invalid (0, 1, 2 or 0x80)",
                    s->codes[i], i + 1);
                return -EINVAL;
            }
        break;
    }
    case LUME_MQTT_PINGREQ: case LUME_MQTT_PINGRESP: case LUME_MQTT_DISCONNECT:
        break;
    default:
        fmt(msg, msglen, "packet type %d is %s", (int)pkt->type,
            pkt->type == 0 || pkt->type == 15 ? "reserved" : "unknown");
        return -EINVAL;
    }
    uint64_t rl = body_size(pkt);
    if (rl > LUME_MQTT_MAX_REMAINING) {
        fmt(msg, msglen, "%s: remaining length %llu exceeds the limit 268435455", ctx,
            (unsigned long long)rl);
        return -EINVAL;
    }
    return 0;
}

static unsigned varint_size(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

ssize_t lume_mqtt_encoded_size(const lume_mqtt_packet *pkt)
{
    if (lume_mqtt_validate(pkt, NULL, 0) < 0)
        return -EINVAL;
    uint32_t rl = (uint32_t)body_size(pkt);
    return (ssize_t)(1 + varint_size(rl) + rl);
}

static uint8_t *put_u16(uint8_t *w, uint16_t v)
{
    w[0] = (uint8_t)(v >> 8);
    w[1] = (uint8_t)v;
    return w + 2;
}

static uint8_t *put_str(uint8_t *w, const lume_mqtt_str *s)
{
    w = put_u16(w, (uint16_t)s->len);
    if (s->len)
        memcpy(w, s->ptr, s->len);
    return w + s->len;
}

ssize_t lume_mqtt_encode(const lume_mqtt_packet *pkt, void *buf, size_t cap,
                         size_t *needed)
{
    ssize_t total = lume_mqtt_encoded_size(pkt);
    if (total < 0)
        return total;
    if (needed)
        *needed = (size_t)total;
    if (cap < (size_t)total || !buf)
        return -ENOSPC;
    uint32_t rl = (uint32_t)body_size(pkt);
    uint8_t *w = buf;
    uint8_t flags;
    if (!fixed_flags(pkt->type, &flags))
        flags = (uint8_t)((pkt->publish.dup ? 8 : 0) | pkt->publish.qos << 1 |
                          (pkt->publish.retain ? 1 : 0));
    *w++ = (uint8_t)(pkt->type << 4 | flags);
    uint32_t v = rl;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        *w++ = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);

    switch (pkt->type) {
    case LUME_MQTT_CONNECT: {
        const lume_mqtt_connect *c = &pkt->connect;
        static const lume_mqtt_str proto = {"MQTT", 4};
        w = put_str(w, &proto);
        *w++ = 4;
        *w++ = (uint8_t)((c->has_username ? 0x80 : 0) | (c->has_password ? 0x40 : 0) |
                         (c->will && c->will_retain ? 0x20 : 0) |
                         (c->will ? (c->will_qos << 3) | 0x04 : 0) |
                         (c->clean_session ? 0x02 : 0));
        w = put_u16(w, c->keepalive);
        w = put_str(w, &c->client_id);
        if (c->will) {
            w = put_str(w, &c->will_topic);
            w = put_str(w, &c->will_message);
        }
        if (c->has_username)
            w = put_str(w, &c->username);
        if (c->has_password)
            w = put_str(w, &c->password);
        break;
    }
    case LUME_MQTT_CONNACK:
        *w++ = pkt->connack.session_present ? 1 : 0;
        *w++ = pkt->connack.return_code;
        break;
    case LUME_MQTT_PUBLISH:
        w = put_str(w, &pkt->publish.topic);
        if (pkt->publish.qos)
            w = put_u16(w, pkt->publish.packet_id);
        if (pkt->publish.payload_len)
            memcpy(w, pkt->publish.payload, pkt->publish.payload_len);
        w += pkt->publish.payload_len;
        break;
    case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC: case LUME_MQTT_PUBREL:
    case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        w = put_u16(w, pkt->packet_id);
        break;
    case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE:
        w = put_u16(w, pkt->subscribe.packet_id);
        for (size_t i = 0; i < pkt->subscribe.count; i++) {
            w = put_str(w, &pkt->subscribe.subs[i].filter);
            if (pkt->type == LUME_MQTT_SUBSCRIBE)
                *w++ = pkt->subscribe.subs[i].qos;
        }
        break;
    case LUME_MQTT_SUBACK:
        w = put_u16(w, pkt->suback.packet_id);
        memcpy(w, pkt->suback.codes, pkt->suback.count);
        w += pkt->suback.count;
        break;
    default:                         /* PINGREQ PINGRESP DISCONNECT */
        break;
    }
    return (ssize_t)(w - (uint8_t *)buf);
}

/* ---- parser ------------------------------------------------------------ */

lume_mqtt_parser *lume_mqtt_parser_new(size_t max_packet, size_t max_filters)
{
    if (!max_packet)
        max_packet = LUME_MQTT_DEFAULT_MAX_PACKET;
    if (!max_filters)
        max_filters = LUME_MQTT_DEFAULT_MAX_FILTERS;
    if (max_packet < 2 || max_packet > (size_t)LUME_MQTT_MAX_REMAINING + 5) {
        errno = EINVAL;
        return NULL;
    }
    lume_mqtt_parser *p = calloc(1, sizeof *p);
    if (!p)
        goto err;
    p->buf = malloc(max_packet);
    p->subs = calloc(max_filters, sizeof *p->subs);
    if (!p->buf || !p->subs)
        goto err;
    p->max_packet = max_packet;
    p->max_filters = max_filters;
    p->state = ST_TYPE;
    return p;
err:
    lume_mqtt_parser_free(p);
    errno = ENOMEM;
    return NULL;
}

void lume_mqtt_parser_free(lume_mqtt_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    free(p->subs);
    free(p);
}

void lume_mqtt_parser_reset(lume_mqtt_parser *p)
{
    if (!p)
        return;
    p->state = ST_TYPE;
    p->dead_rc = 0;
    p->have = p->rl = 0;
    p->len_bytes = 0;
    p->skip_hdr = 0;
    p->skip_tlen = p->skip_pid = 0;
    p->err[0] = '\0';
}

void lume_mqtt_parser_skip_oversize(lume_mqtt_parser *p, bool on)
{
    if (p)
        p->skip = on;
}

const char *lume_mqtt_parser_error(const lume_mqtt_parser *p)
{
    return p && p->state == ST_DEAD ? p->err : NULL;
}

size_t lume_mqtt_parser_consumed(const lume_mqtt_parser *p)
{
    return p ? p->consumed : 0;
}

static int fail(lume_mqtt_parser *p, int rc, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(lume_mqtt_parser *p, int rc, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(p->err, sizeof p->err, f, ap);
    va_end(ap);
    p->state = ST_DEAD;
    p->dead_rc = rc;
    return rc;
}

static const char *ptype(const lume_mqtt_parser *p)
{
    return type_names[p->byte0 >> 4];
}

/* The first byte: type and reserved flags (2.2.2). */
static int check_first_byte(lume_mqtt_parser *p, uint8_t b)
{
    int type = b >> 4;
    uint8_t flags = b & 0x0f, want;
    p->byte0 = b;
    if (type == 0 || type == 15)
        return fail(p, -EPROTO, "packet type %d is reserved (first byte 0x%02x)", type, b);
    if (fixed_flags(type, &want)) {
        if (flags != want)
            return fail(p, -EPROTO, "%s: reserved flags 0x%x, must be 0x%x", ptype(p),
                        flags, want);
        return 0;
    }
    if ((flags >> 1 & 3) == 3)
        return fail(p, -EPROTO, "PUBLISH: QoS 3 is invalid");
    if ((flags & 8) && !(flags & 6))
        return fail(p, -EPROTO, "PUBLISH: DUP set on a QoS 0 message");
    return 0;
}

/* The remaining length is known: size limit and fixed sizes (2.2.3).
 * 0, 1 for a PUBLISH to skip (skip mode), or the error. */
static int check_length(lume_mqtt_parser *p)
{
    uint64_t wire = 1 + (uint64_t)p->len_bytes + p->rl;
    if (wire > p->max_packet && p->skip && p->byte0 >> 4 == LUME_MQTT_PUBLISH)
        return 1;
    if (wire > p->max_packet)
        return fail(p, -EMSGSIZE, "%s: packet of %llu bytes exceeds the maximum of %zu",
                    ptype(p), (unsigned long long)wire, p->max_packet);
    long want = -1;
    switch (p->byte0 >> 4) {
    case LUME_MQTT_CONNACK: case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC:
    case LUME_MQTT_PUBREL: case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        want = 2;
        break;
    case LUME_MQTT_PINGREQ: case LUME_MQTT_PINGRESP: case LUME_MQTT_DISCONNECT:
        want = 0;
        break;
    }
    if (want >= 0 && p->rl != (uint32_t)want)
        return fail(p, -EPROTO, "%s: remaining length %u, must be %ld", ptype(p), p->rl, want);
    return 0;
}

/* A cursor over the buffered body; every read checks what is left. */
typedef struct cursor {
    lume_mqtt_parser *p;
    uint8_t          *b;
    uint32_t          pos, rl;
} cursor;

static int need(cursor *c, uint32_t n, const char *what)
{
    if (c->rl - c->pos >= n)
        return 0;
    return fail(c->p, -EPROTO, "%s: %s needs %u byte%s, %u left (remaining length %u)",
                ptype(c->p), what, n, n == 1 ? "" : "s", c->rl - c->pos, c->rl);
}

static int rd_u8(cursor *c, const char *what, uint8_t *v)
{
    int rc = need(c, 1, what);
    if (rc)
        return rc;
    *v = c->b[c->pos++];
    return 0;
}

static int rd_u16(cursor *c, const char *what, uint16_t *v)
{
    int rc = need(c, 2, what);
    if (rc)
        return rc;
    *v = (uint16_t)(c->b[c->pos] << 8 | c->b[c->pos + 1]);
    c->pos += 2;
    return 0;
}

/* A length-prefixed string, moved over its prefix and NUL-terminated. */
static int rd_str(cursor *c, const char *what, lume_mqtt_str *s)
{
    char pw[48];
    snprintf(pw, sizeof pw, "%s length", what);
    uint16_t n;
    int rc = rd_u16(c, pw, &n);
    if (rc)
        return rc;
    if (n > c->rl - c->pos)
        return fail(c->p, -EPROTO,
                    "%s: %s length %u exceeds the %u byte%s left (remaining length %u)",
                    ptype(c->p), what, n, c->rl - c->pos, c->rl - c->pos == 1 ? "" : "s",
                    c->rl);
    uint8_t *dst = c->b + c->pos - 2;
    memmove(dst, dst + 2, n);
    dst[n] = '\0';
    s->ptr = (const char *)dst;
    s->len = n;
    c->pos += n;
    return 0;
}

static int trailing(cursor *c, const char *after)
{
    if (c->pos == c->rl)
        return 0;
    return fail(c->p, -EPROTO, "%s: %u trailing byte%s after the %s (remaining length %u)",
                ptype(c->p), c->rl - c->pos, c->rl - c->pos == 1 ? "" : "s", after, c->rl);
}

static void printable(char *dst, size_t cap, const lume_mqtt_str *s)
{
    size_t i, n = s->len < cap - 1 ? s->len : cap - 1;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s->ptr[i];
        dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    dst[i] = '\0';
}

static int decode_connect(cursor *c, lume_mqtt_connect *m)
{
    lume_mqtt_str proto;
    uint8_t level, flags;
    int rc;
    if ((rc = rd_str(c, "protocol name", &proto)))
        return rc;
    if (proto.len != 4 || memcmp(proto.ptr, "MQTT", 4) != 0) {
        char shown[24];
        printable(shown, sizeof shown, &proto);
        return fail(c->p, -EPROTO, "CONNECT: protocol name '%s', must be 'MQTT'", shown);
    }
    if ((rc = rd_u8(c, "protocol level", &level)))
        return rc;
    if (level != 4)
        return fail(c->p, -EPROTONOSUPPORT,
                    "CONNECT: protocol level %u not supported (must be 4, MQTT 3.1.1)", level);
    if ((rc = rd_u8(c, "connect flags", &flags)) || (rc = rd_u16(c, "keep alive", &m->keepalive)))
        return rc;
    if (flags & 1)
        return fail(c->p, -EPROTO, "CONNECT: reserved flag bit 0 is set (flags 0x%02x)", flags);
    /* The flags say which fields follow: check them before reading any. */
    if ((flags & 0x40) && !(flags & 0x80))
        return fail(c->p, -EPROTO, "CONNECT: password flag set without the user name flag");
    if (!(flags & 0x04) && (flags & 0x38))
        return fail(c->p, -EPROTO, "CONNECT: will %s set without the will flag",
                    flags & 0x18 ? "QoS" : "retain");
    if ((flags & 0x18) == 0x18)
        return fail(c->p, -EPROTO, "CONNECT: will QoS 3 is invalid");
    m->has_username = flags & 0x80;
    m->has_password = flags & 0x40;
    m->will_retain = flags & 0x20;
    m->will_qos = (uint8_t)(flags >> 3 & 3);
    m->will = flags & 0x04;
    m->clean_session = flags & 0x02;
    if ((rc = rd_str(c, "client identifier", &m->client_id)))
        return rc;
    if (m->will && ((rc = rd_str(c, "will topic", &m->will_topic)) ||
                    (rc = rd_str(c, "will message", &m->will_message))))
        return rc;
    if (m->has_username && (rc = rd_str(c, "user name", &m->username)))
        return rc;
    if (m->has_password && (rc = rd_str(c, "password", &m->password)))
        return rc;
    return trailing(c, "payload");
}

static int decode_filters(cursor *c, lume_mqtt_subscribe *s, bool with_qos)
{
    lume_mqtt_parser *p = c->p;
    int rc;
    if ((rc = rd_u16(c, "packet identifier", &s->packet_id)))
        return rc;
    size_t n = 0;
    while (c->pos < c->rl) {
        char what[40];
        if (n == p->max_filters)
            return fail(p, -EPROTO, "%s: more than %zu topic filters (parser limit)",
                        ptype(p), p->max_filters);
        snprintf(what, sizeof what, "topic filter %zu", n + 1);
        lume_mqtt_sub *sub = &p->subs[n];
        sub->qos = 0;
        if ((rc = rd_str(c, what, &sub->filter)))
            return rc;
        if (with_qos) {
            uint8_t q;
            snprintf(what, sizeof what, "requested QoS of topic filter %zu", n + 1);
            if ((rc = rd_u8(c, what, &q)))
                return rc;
            if (q & 0xfc)
                return fail(p, -EPROTO,
                            "SUBSCRIBE: requested QoS byte 0x%02x of topic filter %zu has "
                            "reserved bits set", q, n + 1);
            sub->qos = q;
        }
        n++;
    }
    s->subs = p->subs;
    s->count = n;
    return 0;
}

static int decode(lume_mqtt_parser *p, lume_mqtt_packet *pkt)
{
    cursor c = {p, p->buf, 0, p->rl};
    uint8_t flags = p->byte0 & 0x0f;
    int rc = 0;
    memset(pkt, 0, sizeof *pkt);
    pkt->type = (lume_mqtt_type)(p->byte0 >> 4);
    pkt->remaining_length = p->rl;
    pkt->wire_size = 1 + p->len_bytes + p->rl;
    switch (pkt->type) {
    case LUME_MQTT_CONNECT:
        rc = decode_connect(&c, &pkt->connect);
        break;
    case LUME_MQTT_CONNACK: {
        uint8_t ack = p->buf[0];
        if (ack & 0xfe)
            return fail(p, -EPROTO, "CONNACK: reserved bits of acknowledge flags 0x%02x set",
                        ack);
        pkt->connack.session_present = ack & 1;
        pkt->connack.return_code = p->buf[1];
        break;
    }
    case LUME_MQTT_PUBLISH: {
        lume_mqtt_publish *m = &pkt->publish;
        m->dup = flags & 8;
        m->qos = (uint8_t)(flags >> 1 & 3);
        m->retain = flags & 1;
        if ((rc = rd_str(&c, "topic", &m->topic)))
            return rc;
        if (m->qos && (rc = rd_u16(&c, "packet identifier", &m->packet_id)))
            return rc;
        m->payload = p->buf + c.pos;
        m->payload_len = p->rl - c.pos;
        lume_check(p->rl < p->max_packet, "invariant 2: room for a NUL after the body");
        p->buf[p->rl] = '\0';          /* invariant 2: room for it */
        break;
    }
    case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC: case LUME_MQTT_PUBREL:
    case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        rc = rd_u16(&c, "packet identifier", &pkt->packet_id);
        break;
    case LUME_MQTT_SUBSCRIBE:
        rc = decode_filters(&c, &pkt->subscribe, true);
        break;
    case LUME_MQTT_UNSUBSCRIBE:
        rc = decode_filters(&c, &pkt->subscribe, false);
        break;
    case LUME_MQTT_SUBACK:
        if ((rc = rd_u16(&c, "packet identifier", &pkt->suback.packet_id)))
            return rc;
        pkt->suback.codes = p->buf + c.pos;
        pkt->suback.count = p->rl - c.pos;
        break;
    default:                         /* PINGREQ PINGRESP DISCONNECT: length checked */
        break;
    }
    if (rc)
        return rc;
    char why[sizeof p->err];
    if (lume_mqtt_validate(pkt, why, sizeof why) < 0)
        return fail(p, -EPROTO, "%s", why);
    return 0;
}

/* SKIP (invariant 5): take bytes d[*i..len) of an oversize PUBLISH. The
 * topic length, the topic and the packet identifier go one byte at a time,
 * each check at the byte that decides it; the payload is dropped a chunk at
 * a time. 0, or the error (the parser is then dead). */
static int skip_step(lume_mqtt_parser *p, const uint8_t *d, size_t len, size_t *i)
{
    unsigned qos = p->byte0 >> 1 & 3;
    while (*i < len && p->have < p->rl) {
        if (p->skip_hdr && p->have >= p->skip_hdr) {     /* the payload */
            size_t n = p->rl - p->have;
            if (n > len - *i)
                n = len - *i;
            p->have += (uint32_t)n;
            *i += n;
            return 0;
        }
        uint8_t b = d[(*i)++];
        uint32_t at = p->have++;
        if (at < 2) {
            p->skip_tlen = (uint16_t)(p->skip_tlen << 8 | b);
            if (at == 0) {
                if (p->rl < 2)
                    return fail(p, -EPROTO, "PUBLISH: topic length needs 2 bytes, %u left "
                                "(remaining length %u)", p->rl, p->rl);
                continue;
            }
            uint32_t left = p->rl - 2;
            if (p->skip_tlen > left)
                return fail(p, -EPROTO, "PUBLISH: topic length %u exceeds the %u byte%s left "
                            "(remaining length %u)", p->skip_tlen, left, left == 1 ? "" : "s",
                            p->rl);
            if (qos && left - p->skip_tlen < 2)
                return fail(p, -EPROTO, "PUBLISH: packet identifier needs 2 bytes, %u left "
                            "(remaining length %u)", left - p->skip_tlen, p->rl);
            p->skip_hdr = 2u + p->skip_tlen + (qos ? 2u : 0u);
        } else if (at < 2u + p->skip_tlen) {
            if (p->skip_tlen < p->max_packet)                  /* kept */
                p->buf[at - 2] = b;
        } else {
            p->skip_pid = (uint16_t)(p->skip_pid << 8 | b);
        }
        if (p->have < p->skip_hdr)
            continue;
        /* the header is complete: the checks decode would make */
        if (p->skip_tlen < p->max_packet) {
            p->buf[p->skip_tlen] = '\0';
            lume_mqtt_str t = {(const char *)p->buf, p->skip_tlen};
            char why[sizeof p->err];
            if (!check_topic("PUBLISH", "topic", &t, why, sizeof why))
                return fail(p, -EPROTO, "%s", why);
        }
        if (qos && p->skip_pid == 0)
            return fail(p, -EPROTO, "PUBLISH: packet identifier is 0 on a QoS %u message", qos);
    }
    return 0;
}

/* The skipped PUBLISH as the callback sees it. */
static void skipped_packet(lume_mqtt_parser *p, lume_mqtt_packet *pkt)
{
    uint8_t flags = p->byte0 & 0x0f;
    memset(pkt, 0, sizeof *pkt);
    pkt->type = LUME_MQTT_PUBLISH;
    pkt->remaining_length = p->rl;
    pkt->wire_size = 1 + p->len_bytes + p->rl;
    lume_mqtt_publish *m = &pkt->publish;
    m->dup = flags & 8;
    m->qos = (uint8_t)(flags >> 1 & 3);
    m->retain = flags & 1;
    m->topic.ptr = p->skip_tlen < p->max_packet ? (const char *)p->buf : NULL;
    m->topic.len = p->skip_tlen;
    m->packet_id = m->qos ? p->skip_pid : 0;
    m->payload = NULL;
    m->payload_len = p->rl - p->skip_hdr;
    m->oversize = true;
}

int lume_mqtt_parser_feed(lume_mqtt_parser *p, const void *data, size_t len,
                          lume_mqtt_packet_cb cb, void *ud)
{
    if (!p || (!data && len))
        return -EINVAL;
    if (p->in_cb)
        return -EBUSY;
    p->consumed = 0;
    if (p->state == ST_DEAD)
        return p->dead_rc;
    const uint8_t *d = data;
    size_t i = 0;
    int rc;
    while (i < len) {
        bool complete = false;
        switch (p->state) {
        case ST_TYPE:
            if ((rc = check_first_byte(p, d[i++])))
                goto dead;
            p->len_bytes = 0;
            p->rl = 0;
            p->state = ST_LENGTH;
            break;
        case ST_LENGTH: {
            uint8_t b = d[i++];
            p->rl |= (uint32_t)(b & 0x7f) << (7 * p->len_bytes);
            p->len_bytes++;
            if (b & 0x80) {
                if (p->len_bytes == 4) {
                    rc = fail(p, -EPROTO, "%s: remaining length continues past 4 bytes",
                              ptype(p));
                    goto dead;
                }
                break;
            }
            p->have = 0;
            rc = check_length(p);
            if (rc < 0)
                goto dead;
            if (rc == 1) {           /* skip mode: stream it through */
                p->skip_hdr = 0;
                p->skip_tlen = p->skip_pid = 0;
                p->state = ST_SKIP;
                break;
            }
            p->state = ST_BODY;
            complete = p->rl == 0;
            break;
        }
        case ST_SKIP:
            if ((rc = skip_step(p, d, len, &i)))
                goto dead;
            complete = p->have == p->rl;
            break;
        default: {                   /* ST_BODY */
            size_t n = p->rl - p->have;
            if (n > len - i)
                n = len - i;
            memcpy(p->buf + p->have, d + i, n);
            p->have += (uint32_t)n;
            i += n;
            complete = p->have == p->rl;
            break;
        }
        }
        if (!complete)
            continue;
        lume_mqtt_packet pkt;
        if (p->state == ST_SKIP)
            skipped_packet(p, &pkt);
        else if ((rc = decode(p, &pkt)))
            goto dead;
        p->state = ST_TYPE;
        if (cb) {
            p->in_cb = true;
            rc = cb(ud, &pkt);
            p->in_cb = false;
            if (rc) {
                p->consumed = i;
                return rc;
            }
        }
    }
    p->consumed = len;
    return 0;
dead:
    p->consumed = i;
    return rc;
}
