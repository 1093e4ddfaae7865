/* core/net/mqtt_codec.h — MQTT 3.1.1 (OASIS standard) packet codec. No I/O.
 *
 * Debian's libwebsockets is built without its MQTT role, so lume carries
 * its own codec. It does no I/O and allocates nothing after
 * lume_mqtt_parser_new(): the encoder writes into a buffer the caller
 * provides, the parser decodes into a buffer it allocated once, at init.
 * The MQTT session owns the sockets and the timers.
 *
 * Encoding
 *   lume_mqtt_packet pkt = {.type = LUME_MQTT_PUBLISH};
 *   pkt.publish.qos = 1; pkt.publish.packet_id = 7;
 *   pkt.publish.topic = lume_mqtt_cstr("dev/1/temp");
 *   pkt.publish.payload = "21.5"; pkt.publish.payload_len = 4;
 *   ssize_t n = lume_mqtt_encode(&pkt, buf, sizeof buf, &need);
 * lume_mqtt_encoded_size() gives the exact size first, if wanted. Both
 * refuse (-EINVAL) a packet the parser would refuse; lume_mqtt_validate()
 * says why in words.
 *
 * Decoding
 *   lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);   // 256 KiB, 64 filters
 *   rc = lume_mqtt_parser_feed(p, bytes, n, on_packet, ud);  // any chunking
 *   if (rc < 0) log(lume_mqtt_parser_error(p));  // dead until reset
 * The parser takes any chunking of the byte stream (a packet split at any
 * byte, several packets in one chunk) and calls on_packet once per complete
 * packet, only after every check has passed: the callback never sees a
 * half-decoded or half-validated packet. It decodes all 14 packet types in
 * both directions (a client-to-server CONNECT as well as a CONNACK).
 *
 * Strings in a decoded packet (topic, client id, filters, user name,
 * password, will topic and message) point into the parser's buffer, valid
 * only during the callback, and are NUL-terminated in place (.len excludes
 * the NUL); the PUBLISH payload is NUL-terminated too. UTF-8 strings never
 * contain U+0000 (checked), so .ptr is a faithful C string for them.
 *
 * Oversize PUBLISH (skip mode, off by default):
 *   lume_mqtt_parser_skip_oversize(p, true);
 * A PUBLISH larger than max_packet is then not an error: its payload
 * streams through and is dropped as it arrives (never buffered), its topic
 * and packet identifier are read and checked as usual, and the callback
 * gets it with publish.oversize set, no payload and payload_len the number
 * of payload bytes dropped, so that the caller can acknowledge it and go
 * on. Any other packet type over max_packet is still -EMSGSIZE.
 *
 * QoS 2: PUBREC, PUBREL and PUBCOMP are decoded and encoded like the other
 * acknowledgements, and a QoS 2 PUBLISH decodes as a valid packet. The codec
 * is the whole protocol; what to do with QoS 2 (lume's client publishes and
 * subscribes with QoS 0/1 only, so a QoS 2 packet from the broker is a
 * broker bug) is the session's decision.
 *
 * Not thread-safe per parser; separate parsers are independent. */
#ifndef LUME_MQTT_CODEC_H
#define LUME_MQTT_CODEC_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* Control packet types (the high nibble of the first byte). 0 and 15 are
 * reserved and never valid. */
typedef enum lume_mqtt_type {
    LUME_MQTT_CONNECT     = 1,
    LUME_MQTT_CONNACK     = 2,
    LUME_MQTT_PUBLISH     = 3,
    LUME_MQTT_PUBACK      = 4,
    LUME_MQTT_PUBREC      = 5,
    LUME_MQTT_PUBREL      = 6,
    LUME_MQTT_PUBCOMP     = 7,
    LUME_MQTT_SUBSCRIBE   = 8,
    LUME_MQTT_SUBACK      = 9,
    LUME_MQTT_UNSUBSCRIBE = 10,
    LUME_MQTT_UNSUBACK    = 11,
    LUME_MQTT_PINGREQ     = 12,
    LUME_MQTT_PINGRESP    = 13,
    LUME_MQTT_DISCONNECT  = 14,
} lume_mqtt_type;

/* CONNACK return codes (3.2.2.3). 6..255 are reserved. */
typedef enum lume_mqtt_connack_code {
    LUME_MQTT_CONNACK_ACCEPTED           = 0,
    LUME_MQTT_CONNACK_BAD_PROTOCOL       = 1, /* unacceptable protocol version */
    LUME_MQTT_CONNACK_ID_REJECTED        = 2, /* identifier rejected */
    LUME_MQTT_CONNACK_SERVER_UNAVAILABLE = 3,
    LUME_MQTT_CONNACK_BAD_CREDENTIALS    = 4, /* bad user name or password */
    LUME_MQTT_CONNACK_NOT_AUTHORIZED     = 5,
} lume_mqtt_connack_code;

#define LUME_MQTT_SUBACK_FAILURE   0x80       /* SUBACK return code */
#define LUME_MQTT_MAX_REMAINING    268435455u /* 4-byte remaining length */
#define LUME_MQTT_MAX_STRING       65535u     /* 2-byte length prefix */
#define LUME_MQTT_DEFAULT_MAX_PACKET (256u * 1024u)
#define LUME_MQTT_DEFAULT_MAX_FILTERS 64u

/* A length-delimited string or byte string. To encode: ptr/len of the
 * caller's bytes (ptr may be NULL when len is 0). Decoded: see above. */
typedef struct lume_mqtt_str {
    const char *ptr;
    size_t      len;
} lume_mqtt_str;

static inline lume_mqtt_str lume_mqtt_cstr(const char *s)
{
    lume_mqtt_str r = {s, s ? strlen(s) : 0};
    return r;
}

typedef struct lume_mqtt_connect {
    lume_mqtt_str client_id;     /* may be empty */
    uint16_t      keepalive;     /* seconds; 0 = off */
    bool          clean_session;
    bool          will;          /* will flag; when false the next four are unused */
    uint8_t       will_qos;      /* 0..2; must be 0 without will */
    bool          will_retain;   /* must be false without will */
    lume_mqtt_str will_topic;    /* a topic name: non-empty, no wildcards */
    lume_mqtt_str will_message;  /* binary */
    bool          has_username;
    bool          has_password;  /* requires has_username (3.1.2-22) */
    lume_mqtt_str username;
    lume_mqtt_str password;      /* binary */
} lume_mqtt_connect;

typedef struct lume_mqtt_connack {
    bool    session_present;     /* must be false when return_code != 0 */
    uint8_t return_code;         /* lume_mqtt_connack_code */
} lume_mqtt_connack;

typedef struct lume_mqtt_publish {
    bool          dup;           /* must be false with QoS 0 */
    uint8_t       qos;           /* 0..2 */
    bool          retain;
    lume_mqtt_str topic;         /* non-empty, no wildcards, UTF-8 */
    uint16_t      packet_id;     /* non-zero when qos > 0; QoS 0: not sent (0 decoded) */
    const void   *payload;       /* may be NULL when payload_len is 0 */
    size_t        payload_len;
    /* Decoded only, in skip mode (lume_mqtt_parser_skip_oversize): the
     * packet was larger than max_packet and its payload was dropped.
     * payload is NULL and payload_len the size dropped; topic is the topic
     * when it fitted in the parser's buffer (shorter than max_packet),
     * else .ptr is NULL and .len its length. The encoder refuses it. */
    bool          oversize;
} lume_mqtt_publish;

/* One topic filter of a SUBSCRIBE (filter + requested QoS) or of an
 * UNSUBSCRIBE (qos unused, 0 when decoded). */
typedef struct lume_mqtt_sub {
    lume_mqtt_str filter;
    uint8_t       qos;
} lume_mqtt_sub;

typedef struct lume_mqtt_subscribe {      /* SUBSCRIBE and UNSUBSCRIBE */
    uint16_t             packet_id;       /* non-zero */
    const lume_mqtt_sub *subs;            /* at least one */
    size_t               count;
} lume_mqtt_subscribe;

typedef struct lume_mqtt_suback {
    uint16_t       packet_id;             /* non-zero */
    const uint8_t *codes;                 /* 0, 1, 2 or 0x80; at least one */
    size_t         count;
} lume_mqtt_suback;

typedef struct lume_mqtt_packet {
    lume_mqtt_type type;
    /* Set by the parser, ignored by the encoder: the packet's remaining
     * length and its whole size on the wire (fixed header included). */
    uint32_t       remaining_length;
    uint32_t       wire_size;
    union {
        lume_mqtt_connect   connect;
        lume_mqtt_connack   connack;
        lume_mqtt_publish   publish;
        lume_mqtt_subscribe subscribe;    /* SUBSCRIBE, UNSUBSCRIBE */
        lume_mqtt_suback    suback;
        uint16_t            packet_id;    /* PUBACK PUBREC PUBREL PUBCOMP UNSUBACK; non-zero */
    };                                    /* PINGREQ PINGRESP DISCONNECT: nothing */
} lume_mqtt_packet;

/* "CONNECT" .. "DISCONNECT"; "reserved(0)" / "reserved(15)" otherwise. */
const char *lume_mqtt_type_name(int type);
/* "accepted", "unacceptable protocol version", "identifier rejected",
 * "server unavailable", "bad user name or password", "not authorized";
 * "reserved" for 6..255. */
const char *lume_mqtt_connack_name(int code);

/* ---- encoder ---------------------------------------------------------- */

/* Check pkt by the rules the parser applies (flags, QoS, packet ids,
 * string lengths and UTF-8, topic names and filters, will and credential
 * flags, return codes, remaining length limit). Returns 0, or -EINVAL and
 * writes a message naming the problem into msg (msg may be NULL). */
int lume_mqtt_validate(const lume_mqtt_packet *pkt, char *msg, size_t msglen);

/* The exact number of bytes lume_mqtt_encode() writes for pkt, or -EINVAL
 * when pkt is not valid (see lume_mqtt_validate). */
ssize_t lume_mqtt_encoded_size(const lume_mqtt_packet *pkt);

/* Encode pkt into buf[0..cap). Returns the number of bytes written;
 * -EINVAL when pkt is not valid (nothing written, *needed untouched);
 * -ENOSPC when cap is too small: *needed (if non-NULL) holds the size
 * required and buf is left unmodified. On success *needed holds the size
 * written too. */
ssize_t lume_mqtt_encode(const lume_mqtt_packet *pkt, void *buf, size_t cap,
                         size_t *needed);

/* ---- incremental parser ---------------------------------------------- */

typedef struct lume_mqtt_parser lume_mqtt_parser;

/* Called once per complete, fully validated packet. Return 0 to continue,
 * anything else to stop feeding: lume_mqtt_parser_feed() then returns that
 * value. The callback must not feed, reset or free the parser. */
typedef int (*lume_mqtt_packet_cb)(void *ud, const lume_mqtt_packet *pkt);

/* A parser for packets of at most max_packet bytes on the wire (fixed
 * header included; 0 = LUME_MQTT_DEFAULT_MAX_PACKET, at most
 * LUME_MQTT_MAX_REMAINING + 5, at least 2) and SUBSCRIBE/UNSUBSCRIBE
 * packets of at most max_filters filters (0 = LUME_MQTT_DEFAULT_MAX_FILTERS).
 * Allocates its packet buffer (max_packet bytes) and filter table now and
 * never again. Returns NULL with errno EINVAL or ENOMEM. */
lume_mqtt_parser *lume_mqtt_parser_new(size_t max_packet, size_t max_filters);
void lume_mqtt_parser_free(lume_mqtt_parser *p);   /* NULL is a no-op */

/* Feed the next len bytes of the stream. Returns:
 *   0          every byte consumed (a partial packet stays buffered);
 *   cb's value when the callback returned non-zero: the bytes after that
 *              packet are not consumed (see lume_mqtt_parser_consumed) and
 *              the parser stays usable;
 *   -EPROTO    malformed packet; -EMSGSIZE packet larger than max_packet
 *              (found from its fixed header, before buffering the body;
 *              in skip mode, every type but PUBLISH);
 *   -EPROTONOSUPPORT CONNECT with a protocol level other than 4;
 *   -EBUSY     called from inside the callback (nothing consumed).
 * After -EPROTO/-EMSGSIZE/-EPROTONOSUPPORT the parser is dead: every later
 * feed returns the same code and consumes nothing, until reset; the message
 * stays available through lume_mqtt_parser_error(). The callback is never
 * called for the bad packet. */
int lume_mqtt_parser_feed(lume_mqtt_parser *p, const void *data, size_t len,
                          lume_mqtt_packet_cb cb, void *ud);

/* Bytes of data the last feed consumed (all of them unless the callback
 * stopped it or an error occurred). */
size_t lume_mqtt_parser_consumed(const lume_mqtt_parser *p);

/* The message naming what was wrong, e.g. "PUBLISH: topic length 300
 * exceeds the 10 bytes left (remaining length 12)"; NULL while healthy. */
const char *lume_mqtt_parser_error(const lume_mqtt_parser *p);

/* Forget any partial packet and the error: ready for a new connection.
 * Skip mode stays as it was set. */
void lume_mqtt_parser_reset(lume_mqtt_parser *p);

/* Skip mode on or off (off after _new): see "Oversize PUBLISH" above. Takes
 * effect from the next packet whose length is read. */
void lume_mqtt_parser_skip_oversize(lume_mqtt_parser *p, bool on);

/* ---- topics ----------------------------------------------------------- */

/* True when filter matches topic (4.7): '+' is exactly one level (possibly
 * empty), '#' is the rest including the parent level ("a/#" matches "a"),
 * and a filter starting with a wildcard does not match a topic starting
 * with '$'. Byte-wise and case-sensitive. False when filter is not a valid
 * filter or topic not a valid topic name (empty, or has '+' or '#'). UTF-8
 * is not re-checked here: the parser has checked received topics. */
bool lume_mqtt_topic_match(const char *filter, const char *topic);

/* ---- checking names at the edge ---------------------------------------
 * For names that come from scripts and the config, with their length (a Lua
 * string may hold a NUL byte): the same rules the encoder applies, and the
 * same words. Each returns LUME_MQTT_NAME_OK, or what is wrong with a phrase
 * that completes "<the name> ..." in why ("contains U+0000 at byte 3", "is
 * not well-formed UTF-8 (byte 0xff at offset 1)", "contains wildcard '#'");
 * why may be NULL. */
typedef enum lume_mqtt_name_error {
    LUME_MQTT_NAME_OK = 0,
    LUME_MQTT_NAME_EMPTY,       /* topic names and filters are 1+ bytes (4.7.3) */
    LUME_MQTT_NAME_TOO_LONG,    /* more than 65535 bytes (1.5.3) */
    LUME_MQTT_NAME_NUL,         /* U+0000 (1.5.3-2) */
    LUME_MQTT_NAME_BAD_UTF8,    /* not well-formed UTF-8 (1.5.3-1) */
    LUME_MQTT_NAME_WILDCARD,    /* '+' or '#' in a topic name (4.7.1) */
    LUME_MQTT_NAME_BAD_FILTER,  /* a wildcard out of place in a filter (4.7.1.2/3) */
} lume_mqtt_name_error;

/* Any MQTT UTF-8 string (client id, user name): 0..65535 bytes of
 * well-formed UTF-8 without U+0000. */
lume_mqtt_name_error lume_mqtt_check_string(const char *s, size_t len, char *why,
                                            size_t whylen);
/* A topic name for PUBLISH: a string as above, non-empty, no '+' or '#'. */
lume_mqtt_name_error lume_mqtt_check_topic(const char *s, size_t len, char *why,
                                           size_t whylen);
/* A topic filter for SUBSCRIBE: a string as above, non-empty, '#' only as
 * the whole last level, '+' only as a whole level. */
lume_mqtt_name_error lume_mqtt_check_filter(const char *s, size_t len, char *why,
                                            size_t whylen);

/* A valid topic filter: 1..65535 bytes of well-formed UTF-8, '#' only as
 * the whole last level, '+' only as a whole level. */
bool lume_mqtt_filter_valid(const char *filter);

/* A valid topic name for PUBLISH: 1..65535 bytes of well-formed UTF-8, no
 * '+' or '#'. */
bool lume_mqtt_topic_valid(const char *topic);

#endif
