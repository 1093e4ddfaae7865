/* tests/unit/test_mqtt_codec.c — core/net/mqtt_codec.c: round trips of every
 * packet type, byte vectors written by hand from the MQTT 3.1.1 spec, split
 * and concatenated streams, remaining-length boundaries, malformed packets
 * (each must fail with a message naming the problem), topic matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt_codec.h"

/* ---- helpers ------------------------------------------------------------ */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        int v;
        if (*p >= '0' && *p <= '9') v = *p - '0';
        else if (*p >= 'a' && *p <= 'f') v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F') v = *p - 'A' + 10;
        else continue;
        if (hi < 0) {
            hi = v;
        } else {
            assert_true(n < cap);
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    assert_int_equal(hi, -1);
    return n;
}

/* A growing text buffer for dumps. */
typedef struct text {
    char  *s;
    size_t len, cap;
} text;

static void tput(text *t, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void tput(text *t, const char *f, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, f);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->cap - t->len, f, ap);
        va_end(ap);
        assert_true(n >= 0);
        if (t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
}

static void tbytes(text *t, const char *name, const void *p, size_t len)
{
    tput(t, " %s[%zu]=", name, len);
    for (size_t i = 0; i < len; i++)
        tput(t, "%02x", ((const uint8_t *)p)[i]);
}

/* Every field of a packet, as text: two packets are equal iff their dumps
 * are. Fields the wire cannot carry (will_* without will, packet_id at
 * QoS 0) are left out. remaining_length/wire_size are not fields. */
static char *dump(const lume_mqtt_packet *p)
{
    text t = {0};
    tput(&t, "%s", lume_mqtt_type_name(p->type));
    switch (p->type) {
    case LUME_MQTT_CONNECT: {
        const lume_mqtt_connect *c = &p->connect;
        tbytes(&t, "id", c->client_id.ptr, c->client_id.len);
        tput(&t, " ka=%u clean=%d will=%d", c->keepalive, c->clean_session, c->will);
        if (c->will) {
            tput(&t, " wqos=%u wret=%d", c->will_qos, c->will_retain);
            tbytes(&t, "wtopic", c->will_topic.ptr, c->will_topic.len);
            tbytes(&t, "wmsg", c->will_message.ptr, c->will_message.len);
        }
        tput(&t, " user=%d pass=%d", c->has_username, c->has_password);
        if (c->has_username)
            tbytes(&t, "u", c->username.ptr, c->username.len);
        if (c->has_password)
            tbytes(&t, "p", c->password.ptr, c->password.len);
        break;
    }
    case LUME_MQTT_CONNACK:
        tput(&t, " sp=%d rc=%u", p->connack.session_present, p->connack.return_code);
        break;
    case LUME_MQTT_PUBLISH:
        tput(&t, " dup=%d qos=%u retain=%d", p->publish.dup, p->publish.qos,
             p->publish.retain);
        if (p->publish.qos)
            tput(&t, " id=%u", p->publish.packet_id);
        if (p->publish.topic.ptr)
            tbytes(&t, "topic", p->publish.topic.ptr, p->publish.topic.len);
        else
            tput(&t, " topic[%zu] not kept", p->publish.topic.len);
        if (p->publish.oversize) {
            assert_null(p->publish.payload);
            tput(&t, " oversize, %zu payload bytes dropped", p->publish.payload_len);
        } else {
            tbytes(&t, "payload", p->publish.payload, p->publish.payload_len);
        }
        break;
    case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE:
        tput(&t, " id=%u n=%zu", p->subscribe.packet_id, p->subscribe.count);
        for (size_t i = 0; i < p->subscribe.count; i++) {
            tbytes(&t, "f", p->subscribe.subs[i].filter.ptr, p->subscribe.subs[i].filter.len);
            if (p->type == LUME_MQTT_SUBSCRIBE)
                tput(&t, "/q%u", p->subscribe.subs[i].qos);
        }
        break;
    case LUME_MQTT_SUBACK:
        tput(&t, " id=%u", p->suback.packet_id);
        tbytes(&t, "codes", p->suback.codes, p->suback.count);
        break;
    case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC: case LUME_MQTT_PUBREL:
    case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        tput(&t, " id=%u", p->packet_id);
        break;
    default:
        break;
    }
    return t.s;
}

#define MAXPKT 64

typedef struct collect {
    char    *dumps[MAXPKT];
    uint32_t wire[MAXPKT];
    size_t   n;
    int      stop;            /* callback's return value */
} collect;

static int on_packet(void *ud, const lume_mqtt_packet *pkt)
{
    collect *c = ud;
    assert_true(c->n < MAXPKT);
    c->wire[c->n] = pkt->wire_size;
    c->dumps[c->n++] = dump(pkt);
    return c->stop;
}

static void collect_clear(collect *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->dumps[i]);
    c->n = 0;
}

static void assert_same(const collect *a, const collect *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        assert_string_equal(a->dumps[i], b->dumps[i]);
}

/* Encode, checking encoded_size and encode agree. Returns the size. */
static size_t enc(const lume_mqtt_packet *p, uint8_t *buf, size_t cap)
{
    char why[256] = "";
    int v = lume_mqtt_validate(p, why, sizeof why);
    if (v)
        fail_msg("validate: %s", why);
    ssize_t size = lume_mqtt_encoded_size(p);
    assert_true(size > 0);
    size_t need = 0;
    ssize_t n = lume_mqtt_encode(p, buf, cap, &need);
    assert_int_equal(n, size);
    assert_int_equal(need, (size_t)size);
    return (size_t)n;
}

/* Parse one whole buffer with a fresh default parser; expect success. */
static void parse_all(const uint8_t *b, size_t len, collect *out)
{
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    assert_non_null(p);
    int rc = lume_mqtt_parser_feed(p, b, len, on_packet, out);
    if (rc)
        fail_msg("feed: %d %s", rc, lume_mqtt_parser_error(p));
    assert_null(lume_mqtt_parser_error(p));
    assert_int_equal(lume_mqtt_parser_consumed(p), len);
    lume_mqtt_parser_free(p);
}

/* ---- the packets used in round trips and streams ------------------------ */

static const lume_mqtt_sub subs3[] = {
    {{"a/+/c", 5}, 1}, {{"dev/#", 5}, 0}, {{"#", 1}, 2},
};
static const lume_mqtt_sub unsubs2[] = {{{"a/+/c", 5}, 0}, {{"$SYS/#", 6}, 0}};
static const uint8_t suback_codes[] = {1, 0, 0x80, 2};
static const char binary[] = "bin\0ary\xff";

static size_t sample_packets(lume_mqtt_packet *v)
{
    size_t n = 0;
    lume_mqtt_packet *p;

    p = &v[n++];                             /* CONNECT: every field */
    *p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    p->connect = (lume_mqtt_connect){
        .client_id = lume_mqtt_cstr("dev-1"), .keepalive = 65535, .clean_session = true,
        .will = true, .will_qos = 2, .will_retain = true,
        .will_topic = lume_mqtt_cstr("lume/dev-1/status"),
        .will_message = {binary, sizeof binary - 1},
        .has_username = true, .has_password = true,
        .username = lume_mqtt_cstr("user \xc3\xa9"), .password = {binary, sizeof binary - 1}};

    p = &v[n++];                             /* CONNECT: nothing optional */
    *p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    p->connect.client_id = lume_mqtt_cstr("");

    p = &v[n++];                             /* CONNECT: user, empty password, will QoS 1 */
    *p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    p->connect = (lume_mqtt_connect){
        .client_id = lume_mqtt_cstr("c"), .keepalive = 30, .will = true, .will_qos = 1,
        .will_topic = lume_mqtt_cstr("w"), .will_message = lume_mqtt_cstr(""),
        .has_username = true, .username = lume_mqtt_cstr(""), .has_password = true,
        .password = lume_mqtt_cstr("")};

    for (int rc = 0; rc <= 5; rc++) {
        p = &v[n++];
        *p = (lume_mqtt_packet){.type = LUME_MQTT_CONNACK};
        p->connack.return_code = (uint8_t)rc;
        p->connack.session_present = rc == 0;
    }

    p = &v[n++];                             /* PUBLISH QoS 0, retain */
    *p = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    p->publish = (lume_mqtt_publish){.retain = true, .topic = lume_mqtt_cstr("dev/1/temp"),
                                     .payload = "21.5", .payload_len = 4};
    p = &v[n++];                             /* PUBLISH QoS 1, DUP, binary payload */
    *p = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    p->publish = (lume_mqtt_publish){.dup = true, .qos = 1, .packet_id = 1,
                                     .topic = lume_mqtt_cstr("d\xc3\xa9v/\xf0\x9f\x8c\xa1"),
                                     .payload = binary, .payload_len = sizeof binary - 1};
    p = &v[n++];                             /* PUBLISH QoS 2, empty payload, $ topic */
    *p = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    p->publish = (lume_mqtt_publish){.qos = 2, .packet_id = 65535,
                                     .topic = lume_mqtt_cstr("$SYS/x")};

    static const lume_mqtt_type acks[] = {LUME_MQTT_PUBACK, LUME_MQTT_PUBREC,
                                          LUME_MQTT_PUBREL, LUME_MQTT_PUBCOMP,
                                          LUME_MQTT_UNSUBACK};
    for (size_t i = 0; i < 5; i++) {
        p = &v[n++];
        *p = (lume_mqtt_packet){.type = acks[i]};
        p->packet_id = (uint16_t)(0x1234 + i);
    }

    p = &v[n++];
    *p = (lume_mqtt_packet){.type = LUME_MQTT_SUBSCRIBE};
    p->subscribe = (lume_mqtt_subscribe){.packet_id = 10, .subs = subs3, .count = 3};
    p = &v[n++];
    *p = (lume_mqtt_packet){.type = LUME_MQTT_SUBACK};
    p->suback = (lume_mqtt_suback){.packet_id = 10, .codes = suback_codes, .count = 4};
    p = &v[n++];
    *p = (lume_mqtt_packet){.type = LUME_MQTT_UNSUBSCRIBE};
    p->subscribe = (lume_mqtt_subscribe){.packet_id = 11, .subs = unsubs2, .count = 2};

    v[n++] = (lume_mqtt_packet){.type = LUME_MQTT_PINGREQ};
    v[n++] = (lume_mqtt_packet){.type = LUME_MQTT_PINGRESP};
    v[n++] = (lume_mqtt_packet){.type = LUME_MQTT_DISCONNECT};
    return n;
}

/* ---- round trips and vectors --------------------------------------------- */

static void test_round_trip_every_type(void **state)
{
    (void)state;
    lume_mqtt_packet v[40];
    size_t n = sample_packets(v);
    bool seen[16] = {false};
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[512];
        size_t len = enc(&v[i], buf, sizeof buf);
        collect got = {0};
        parse_all(buf, len, &got);
        assert_int_equal(got.n, 1);
        char *want = dump(&v[i]);
        assert_string_equal(got.dumps[0], want);
        assert_int_equal(got.wire[0], len);
        seen[v[i].type] = true;
        free(want);
        collect_clear(&got);
    }
    for (int t = 1; t <= 14; t++)
        assert_true(seen[t]);
}

/* Decoded fields, checked one by one for two packets (the dumps above
 * compare everything; this shows it in plain C too, and the NULs). */
static int check_publish_fields(void *ud, const lume_mqtt_packet *p)
{
    (void)ud;
    assert_int_equal(p->type, LUME_MQTT_PUBLISH);
    assert_true(p->publish.dup);
    assert_int_equal(p->publish.qos, 1);
    assert_false(p->publish.retain);
    assert_string_equal(p->publish.topic.ptr, "a/b");
    assert_int_equal(p->publish.topic.len, 3);
    assert_int_equal(p->publish.packet_id, 10);
    assert_int_equal(p->publish.payload_len, 2);
    assert_memory_equal(p->publish.payload, "hi", 3);   /* NUL-terminated */
    assert_int_equal(p->remaining_length, 9);
    assert_int_equal(p->wire_size, 11);
    return 0;
}

static void test_known_vectors(void **state)
{
    (void)state;
    /* Each: hand-written bytes (MQTT 3.1.1 sections 2 and 3) and the packet
     * they encode. The encoder must produce the bytes, the parser must
     * decode them to the packet. */
    static const lume_mqtt_sub sub_ab = {{"a/b", 3}, 1};
    static const uint8_t codes[] = {0x01, 0x80};
    struct { const char *hex; lume_mqtt_packet pkt; } vec[12];
    size_t n = 0;
    /* CONNECT "lume", clean session, keep alive 60: 3.1 */
    vec[n].hex = "10 10  00 04 4d 51 54 54  04  02  00 3c  00 04 6c 75 6d 65";
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    vec[n].pkt.connect = (lume_mqtt_connect){.client_id = {"lume", 4}, .keepalive = 60,
                                             .clean_session = true};
    n++;
    /* CONNECT with will (QoS 1, retain), user name and password:
     * flags 1110 1110 = 0xee; remaining length 10 + 3 + 3 + 5 + 3 + 3 = 27 */
    vec[n].hex = "10 1b  00 04 4d 51 54 54  04  ee  00 0a  00 01 63  00 01 77"
                 "  00 03 62 79 65  00 01 75  00 01 70";
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    vec[n].pkt.connect = (lume_mqtt_connect){
        .client_id = {"c", 1}, .keepalive = 10, .clean_session = true, .will = true,
        .will_qos = 1, .will_retain = true, .will_topic = {"w", 1},
        .will_message = {"bye", 3}, .has_username = true, .username = {"u", 1},
        .has_password = true, .password = {"p", 1}};
    n++;
    vec[n].hex = "20 02 01 00";                       /* CONNACK, session present */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_CONNACK};
    vec[n].pkt.connack.session_present = true;
    n++;
    vec[n].hex = "20 02 00 05";                       /* CONNACK not authorized */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_CONNACK};
    vec[n].pkt.connack.return_code = LUME_MQTT_CONNACK_NOT_AUTHORIZED;
    n++;
    /* PUBLISH DUP QoS 1 "a/b" id 10 "hi": first byte 0011 1010 */
    vec[n].hex = "3a 09  00 03 61 2f 62  00 0a  68 69";
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    vec[n].pkt.publish = (lume_mqtt_publish){.dup = true, .qos = 1, .topic = {"a/b", 3},
                                             .packet_id = 10, .payload = "hi",
                                             .payload_len = 2};
    n++;
    vec[n].hex = "31 03  00 01 78";                   /* PUBLISH QoS 0 retain, no payload */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    vec[n].pkt.publish = (lume_mqtt_publish){.retain = true, .topic = {"x", 1}};
    n++;
    vec[n].hex = "40 02 00 0a";                       /* PUBACK 10 */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_PUBACK, .packet_id = 10};
    n++;
    vec[n].hex = "62 02 00 0a";                       /* PUBREL 10: flags 0010 */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_PUBREL, .packet_id = 10};
    n++;
    vec[n].hex = "82 08  00 01  00 03 61 2f 62  01";  /* SUBSCRIBE 1: a/b QoS 1 */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_SUBSCRIBE};
    vec[n].pkt.subscribe = (lume_mqtt_subscribe){.packet_id = 1, .subs = &sub_ab, .count = 1};
    n++;
    vec[n].hex = "90 04  00 01  01 80";               /* SUBACK 1: QoS 1, failure */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_SUBACK};
    vec[n].pkt.suback = (lume_mqtt_suback){.packet_id = 1, .codes = codes, .count = 2};
    n++;
    vec[n].hex = "a2 07  00 02  00 03 61 2f 62";      /* UNSUBSCRIBE 2: a/b */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_UNSUBSCRIBE};
    vec[n].pkt.subscribe = (lume_mqtt_subscribe){.packet_id = 2, .subs = &sub_ab, .count = 1};
    n++;
    vec[n].hex = "c0 00";                             /* PINGREQ */
    vec[n].pkt = (lume_mqtt_packet){.type = LUME_MQTT_PINGREQ};
    n++;

    for (size_t i = 0; i < n; i++) {
        uint8_t want[64], got[64];
        size_t wlen = unhex(vec[i].hex, want, sizeof want);
        size_t glen = enc(&vec[i].pkt, got, sizeof got);
        assert_int_equal(glen, wlen);
        assert_memory_equal(got, want, wlen);
        collect c = {0};
        parse_all(want, wlen, &c);
        assert_int_equal(c.n, 1);
        lume_mqtt_packet norm = vec[i].pkt;
        if (norm.type == LUME_MQTT_UNSUBSCRIBE) {      /* qos is not on the wire */
            static const lume_mqtt_sub unsub_ab = {{"a/b", 3}, 0};
            norm.subscribe.subs = &unsub_ab;
        }
        char *d = dump(&norm);
        assert_string_equal(c.dumps[0], d);
        free(d);
        collect_clear(&c);
    }

    /* The DUP QoS 1 PUBLISH, field by field. */
    uint8_t b[16];
    size_t len = unhex("3a 09 00 03 61 2f 62 00 0a 68 69", b, sizeof b);
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    assert_int_equal(lume_mqtt_parser_feed(p, b, len, check_publish_fields, NULL), 0);
    lume_mqtt_parser_free(p);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(lume_mqtt_type_name(LUME_MQTT_CONNECT), "CONNECT");
    assert_string_equal(lume_mqtt_type_name(LUME_MQTT_UNSUBACK), "UNSUBACK");
    assert_string_equal(lume_mqtt_type_name(LUME_MQTT_DISCONNECT), "DISCONNECT");
    assert_string_equal(lume_mqtt_type_name(0), "reserved(0)");
    assert_string_equal(lume_mqtt_type_name(15), "reserved(15)");
    assert_string_equal(lume_mqtt_connack_name(0), "accepted");
    assert_string_equal(lume_mqtt_connack_name(1), "unacceptable protocol version");
    assert_string_equal(lume_mqtt_connack_name(2), "identifier rejected");
    assert_string_equal(lume_mqtt_connack_name(3), "server unavailable");
    assert_string_equal(lume_mqtt_connack_name(4), "bad user name or password");
    assert_string_equal(lume_mqtt_connack_name(5), "not authorized");
    assert_string_equal(lume_mqtt_connack_name(6), "reserved");
}

/* ---- streams ------------------------------------------------------------- */

static uint8_t payload200[200];

/* Several packets back to back, one with a 2-byte remaining length. */
static size_t build_stream(uint8_t *buf, size_t cap, bool small)
{
    lume_mqtt_packet v[40];
    size_t n = sample_packets(v), len = 0;
    for (size_t i = 0; i < sizeof payload200; i++)
        payload200[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < n; i++) {
        if (small && i % 3)
            continue;
        len += enc(&v[i], buf + len, cap - len);
    }
    if (!small) {
        lume_mqtt_packet big = {.type = LUME_MQTT_PUBLISH};
        big.publish = (lume_mqtt_publish){.qos = 1, .packet_id = 99,
                                          .topic = lume_mqtt_cstr("bulk/data"),
                                          .payload = payload200, .payload_len = 200};
        len += enc(&big, buf + len, cap - len);
        lume_mqtt_packet ping = {.type = LUME_MQTT_PINGREQ};
        len += enc(&ping, buf + len, cap - len);
    }
    return len;
}

static void feed_chunks(lume_mqtt_parser *p, const uint8_t *b, size_t len, size_t chunk,
                        collect *c)
{
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        int rc = lume_mqtt_parser_feed(p, b + off, n, on_packet, c);
        if (rc)
            fail_msg("chunk %zu at %zu: %s", chunk, off, lume_mqtt_parser_error(p));
    }
}

static void test_split_reads(void **state)
{
    (void)state;
    uint8_t buf[2048];
    size_t len = build_stream(buf, sizeof buf, false);
    assert_true(len > 300);
    collect ref = {0};
    parse_all(buf, len, &ref);
    assert_true(ref.n >= 20);
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);

    for (size_t chunk = 1; chunk <= len; chunk++) {     /* every chunk size */
        collect c = {0};
        lume_mqtt_parser_reset(p);
        feed_chunks(p, buf, len, chunk, &c);
        assert_same(&ref, &c);
        collect_clear(&c);
    }
    for (size_t k = 0; k <= len; k++) {                 /* every split point */
        collect c = {0};
        lume_mqtt_parser_reset(p);
        assert_int_equal(lume_mqtt_parser_feed(p, buf, k, on_packet, &c), 0);
        assert_int_equal(lume_mqtt_parser_feed(p, buf + k, len - k, on_packet, &c), 0);
        assert_same(&ref, &c);
        collect_clear(&c);
    }
    collect_clear(&ref);

    /* A shorter stream, cut at every pair of points into three feeds. */
    len = build_stream(buf, sizeof buf, true);
    parse_all(buf, len, &ref);
    assert_true(ref.n >= 6);
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i; j <= len; j++) {
            collect c = {0};
            lume_mqtt_parser_reset(p);
            assert_int_equal(lume_mqtt_parser_feed(p, buf, i, on_packet, &c), 0);
            assert_int_equal(lume_mqtt_parser_feed(p, buf + i, j - i, on_packet, &c), 0);
            assert_int_equal(lume_mqtt_parser_feed(p, buf + j, len - j, on_packet, &c), 0);
            assert_same(&ref, &c);
            collect_clear(&c);
        }
    collect_clear(&ref);
    lume_mqtt_parser_free(p);
}

static int count_publishes(void *ud, const lume_mqtt_packet *pkt)
{
    size_t *n = ud;
    assert_int_equal(pkt->type, LUME_MQTT_PUBLISH);
    assert_int_equal(pkt->publish.packet_id, *n + 1);   /* in order */
    char want[32];
    snprintf(want, sizeof want, "t/%zu", *n);
    assert_string_equal(pkt->publish.topic.ptr, want);
    (*n)++;
    return 0;
}

static void test_concatenated_in_one_feed(void **state)
{
    (void)state;
    enum { N = 500 };
    static uint8_t buf[N * 32];
    size_t len = 0;
    for (size_t i = 0; i < N; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "t/%zu", i);
        lume_mqtt_packet m = {.type = LUME_MQTT_PUBLISH};
        m.publish = (lume_mqtt_publish){.qos = 1, .packet_id = (uint16_t)(i + 1),
                                        .topic = lume_mqtt_cstr(topic), .payload = "v",
                                        .payload_len = 1};
        len += enc(&m, buf + len, sizeof buf - len);
    }
    size_t n = 0;
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    assert_int_equal(lume_mqtt_parser_feed(p, buf, len, count_publishes, &n), 0);
    assert_int_equal(n, N);
    assert_int_equal(lume_mqtt_parser_consumed(p), len);
    lume_mqtt_parser_free(p);
}

static void test_callback_stops_feeding(void **state)
{
    (void)state;
    uint8_t buf[2048];
    size_t len = build_stream(buf, sizeof buf, false);
    collect ref = {0};
    parse_all(buf, len, &ref);

    /* Stop after every packet; resume from where it stopped. */
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    collect c = {.stop = 42};
    size_t off = 0, calls = 0;
    while (off < len) {
        int rc = lume_mqtt_parser_feed(p, buf + off, len - off, on_packet, &c);
        assert_int_equal(rc, 42);
        assert_null(lume_mqtt_parser_error(p));
        size_t used = lume_mqtt_parser_consumed(p);
        assert_int_equal(used, c.wire[c.n - 1]);           /* exactly one packet */
        off += used;
        calls++;
    }
    assert_int_equal(calls, ref.n);
    assert_same(&ref, &c);
    collect_clear(&c);
    collect_clear(&ref);
    lume_mqtt_parser_free(p);
}

static lume_mqtt_parser *reentry_parser;
static int feed_from_callback(void *ud, const lume_mqtt_packet *pkt)
{
    (void)pkt;
    int *rc = ud;
    *rc = lume_mqtt_parser_feed(reentry_parser, "\xc0\x00", 2, feed_from_callback, ud);
    return 0;
}

static void test_feed_from_callback_is_refused(void **state)
{
    (void)state;
    reentry_parser = lume_mqtt_parser_new(0, 0);
    int inner = 0;
    assert_int_equal(lume_mqtt_parser_feed(reentry_parser, "\xd0\x00", 2, feed_from_callback,
                                           &inner), 0);
    assert_int_equal(inner, -EBUSY);
    lume_mqtt_parser_free(reentry_parser);
}

/* ---- remaining length ---------------------------------------------------- */

static void test_remaining_length_boundaries(void **state)
{
    (void)state;
    static const struct { uint32_t rl; const char *hdr; } b[] = {
        {0, "00"}, {127, "7f"}, {128, "80 01"}, {16383, "ff 7f"}, {16384, "80 80 01"},
        {2097151, "ff ff 7f"}, {2097152, "80 80 80 01"}, {268435455, "ff ff ff 7f"},
    };
    size_t maxpay = 2097152;
    uint8_t *payload = calloc(1, maxpay);
    uint8_t *buf = malloc(maxpay + 16);
    assert_non_null(payload);
    assert_non_null(buf);
    for (size_t i = 0; i < maxpay; i++)
        payload[i] = (uint8_t)(i % 251);
    lume_mqtt_parser *big = lume_mqtt_parser_new(maxpay + 5, 0);
    assert_non_null(big);

    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        uint8_t hdr[8];
        size_t hlen = unhex(b[i].hdr, hdr, sizeof hdr);
        lume_mqtt_packet m = {.type = LUME_MQTT_PINGREQ};
        if (b[i].rl) {                 /* a PUBLISH of exactly that length: "t" + payload */
            m.type = LUME_MQTT_PUBLISH;
            m.publish.topic = lume_mqtt_cstr("t");
            m.publish.payload = payload;
            m.publish.payload_len = b[i].rl - 3;
        }
        assert_int_equal(lume_mqtt_encoded_size(&m), 1 + hlen + b[i].rl);
        if (b[i].rl > maxpay)
            continue;
        size_t len = enc(&m, buf, maxpay + 16);
        assert_memory_equal(buf + 1, hdr, hlen);
        collect c = {0};
        lume_mqtt_parser_reset(big);
        assert_int_equal(lume_mqtt_parser_feed(big, buf, len, on_packet, &c), 0);
        assert_int_equal(c.n, 1);
        assert_int_equal(c.wire[0], len);
        char *d = dump(&m);
        assert_string_equal(c.dumps[0], d);
        free(d);
        collect_clear(&c);
    }

    /* The largest length is refused by the size limit from the header alone. */
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    assert_int_equal(lume_mqtt_parser_feed(p, "\x30\xff\xff\xff\x7f", 5, on_packet, NULL),
                     -EMSGSIZE);
    assert_non_null(strstr(lume_mqtt_parser_error(p),
                           "PUBLISH: packet of 268435460 bytes exceeds the maximum of 262144"));

    /* A fifth length byte: refused at the fourth byte's continuation bit. */
    lume_mqtt_parser_reset(p);
    assert_int_equal(lume_mqtt_parser_feed(p, "\x30\xff\xff\xff\xff\x01", 6, on_packet, NULL),
                     -EPROTO);
    assert_string_equal(lume_mqtt_parser_error(p),
                        "PUBLISH: remaining length continues past 4 bytes");
    assert_int_equal(lume_mqtt_parser_consumed(p), 5);

    /* The encoder refuses a packet past the limit. */
    lume_mqtt_packet m = {.type = LUME_MQTT_PUBLISH};
    m.publish = (lume_mqtt_publish){.topic = lume_mqtt_cstr("t"), .payload = payload,
                                    .payload_len = 268435455 - 2};
    char why[256];
    assert_int_equal(lume_mqtt_encoded_size(&m), -EINVAL);
    assert_int_equal(lume_mqtt_validate(&m, why, sizeof why), -EINVAL);
    assert_string_equal(why, "PUBLISH: remaining length 268435456 exceeds the limit 268435455");

    /* A non-minimal length (3.1.1 does not forbid it) is accepted. */
    collect c = {0};
    lume_mqtt_parser_reset(p);
    assert_int_equal(lume_mqtt_parser_feed(p, "\xc0\x80\x80\x00", 4, on_packet, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.wire[0], 4);
    collect_clear(&c);

    lume_mqtt_parser_free(p);
    lume_mqtt_parser_free(big);
    free(payload);
    free(buf);
}

static void test_max_packet_size(void **state)
{
    (void)state;
    lume_mqtt_parser *p = lume_mqtt_parser_new(64, 0);
    assert_non_null(p);
    uint8_t pay[64] = {0}, buf[128];
    lume_mqtt_packet m = {.type = LUME_MQTT_PUBLISH};
    m.publish = (lume_mqtt_publish){.topic = lume_mqtt_cstr("t"), .payload = pay,
                                    .payload_len = 64 - 2 - 3};  /* exactly 64 bytes */
    size_t len = enc(&m, buf, sizeof buf);
    assert_int_equal(len, 64);
    collect c = {0};
    assert_int_equal(lume_mqtt_parser_feed(p, buf, len, on_packet, &c), 0);
    assert_int_equal(c.n, 1);
    collect_clear(&c);

    m.publish.payload_len++;                                 /* 65 bytes */
    len = enc(&m, buf, sizeof buf);
    assert_int_equal(lume_mqtt_parser_feed(p, buf, len, on_packet, &c), -EMSGSIZE);
    assert_string_equal(lume_mqtt_parser_error(p),
                        "PUBLISH: packet of 65 bytes exceeds the maximum of 64");
    assert_int_equal(lume_mqtt_parser_consumed(p), 2);     /* header only */
    assert_int_equal(c.n, 0);
    lume_mqtt_parser_free(p);

    /* Bad sizes for the parser itself. */
    errno = 0;
    assert_null(lume_mqtt_parser_new(1, 0));
    assert_int_equal(errno, EINVAL);
    assert_null(lume_mqtt_parser_new((size_t)LUME_MQTT_MAX_REMAINING + 6, 0));
}

static void test_filter_limit(void **state)
{
    (void)state;
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 2);
    uint8_t buf[64];
    size_t len = unhex("82 0e 00 01  00 01 61 00  00 01 62 01  00 01 63 02", buf, sizeof buf);
    collect c = {0};
    assert_int_equal(lume_mqtt_parser_feed(p, buf, len, on_packet, &c), -EPROTO);
    assert_string_equal(lume_mqtt_parser_error(p),
                        "SUBSCRIBE: more than 2 topic filters (parser limit)");
    assert_int_equal(c.n, 0);
    lume_mqtt_parser_free(p);
    p = lume_mqtt_parser_new(0, 3);                          /* three fit */
    assert_int_equal(lume_mqtt_parser_feed(p, buf, len, on_packet, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.dumps[0], "SUBSCRIBE id=1 n=3 f[1]=61/q0 f[1]=62/q1 f[1]=63/q2");
    collect_clear(&c);
    lume_mqtt_parser_free(p);
}

/* ---- malformed packets --------------------------------------------------- */


static const struct bad {
    const char *hex;
    int         rc;
    const char *msg;        /* the whole message */
} bad[] = {
    /* packet types and reserved flags (2.2.2) */
    {"00 00", -EPROTO, "packet type 0 is reserved (first byte 0x00)"},
    {"f0 00", -EPROTO, "packet type 15 is reserved (first byte 0xf0)"},
    {"11 00", -EPROTO, "CONNECT: reserved flags 0x1, must be 0x0"},
    {"28 02 00 00", -EPROTO, "CONNACK: reserved flags 0x8, must be 0x0"},
    {"42 02 00 01", -EPROTO, "PUBACK: reserved flags 0x2, must be 0x0"},
    {"60 02 00 01", -EPROTO, "PUBREL: reserved flags 0x0, must be 0x2"},
    {"80 06 00 01 00 01 61 00", -EPROTO, "SUBSCRIBE: reserved flags 0x0, must be 0x2"},
    {"a0 05 00 01 00 01 61", -EPROTO, "UNSUBSCRIBE: reserved flags 0x0, must be 0x2"},
    {"c1 00", -EPROTO, "PINGREQ: reserved flags 0x1, must be 0x0"},
    {"ef 00", -EPROTO, "DISCONNECT: reserved flags 0xf, must be 0x0"},
    /* PUBLISH */
    {"36 05 00 01 61 00 01", -EPROTO, "PUBLISH: QoS 3 is invalid"},
    {"38 03 00 01 61", -EPROTO, "PUBLISH: DUP set on a QoS 0 message"},
    {"30 0c 01 2c 61 62 63 64 65 66 67 68 69 6a", -EPROTO,
     "PUBLISH: topic length 300 exceeds the 10 bytes left (remaining length 12)"},
    {"30 03 00 05 61", -EPROTO,
     "PUBLISH: topic length 5 exceeds the 1 byte left (remaining length 3)"},
    {"30 01 00", -EPROTO, "PUBLISH: topic length needs 2 bytes, 1 left (remaining length 1)"},
    {"30 00", -EPROTO, "PUBLISH: topic length needs 2 bytes, 0 left (remaining length 0)"},
    {"32 04 00 02 61 62", -EPROTO,
     "PUBLISH: packet identifier needs 2 bytes, 0 left (remaining length 4)"},
    {"32 05 00 02 61 62 00", -EPROTO,
     "PUBLISH: packet identifier needs 2 bytes, 1 left (remaining length 5)"},
    {"32 06 00 02 61 62 00 00", -EPROTO, "PUBLISH: packet identifier is 0 on a QoS 1 message"},
    {"34 06 00 02 61 62 00 00", -EPROTO, "PUBLISH: packet identifier is 0 on a QoS 2 message"},
    {"30 02 00 00", -EPROTO, "PUBLISH: topic is empty"},
    {"30 05 00 03 61 2f 2b", -EPROTO, "PUBLISH: topic contains wildcard '+'"},
    {"30 06 00 04 61 2f 23 78", -EPROTO, "PUBLISH: topic contains wildcard '#'"},
    {"30 04 00 02 c3 28", -EPROTO,
     "PUBLISH: topic is not well-formed UTF-8 (byte 0x28 at offset 1)"},
    {"30 04 00 02 c0 af", -EPROTO,                           /* overlong '/' */
     "PUBLISH: topic is not well-formed UTF-8 (byte 0xc0 at offset 0)"},
    {"30 05 00 03 ed a0 80", -EPROTO,                        /* surrogate U+D800 */
     "PUBLISH: topic is not well-formed UTF-8 (byte 0xa0 at offset 1)"},
    {"30 06 00 04 f4 90 80 80", -EPROTO,                     /* U+110000 */
     "PUBLISH: topic is not well-formed UTF-8 (byte 0x90 at offset 1)"},
    {"30 04 00 02 61 e2", -EPROTO,
     "PUBLISH: topic is not well-formed UTF-8 (sequence at byte 1 truncated)"},
    {"30 05 00 03 61 00 62", -EPROTO, "PUBLISH: topic contains U+0000 at byte 1"},
    {"30 ff ff ff ff", -EPROTO, "PUBLISH: remaining length continues past 4 bytes"},
    /* SUBSCRIBE, SUBACK, UNSUBSCRIBE */
    {"82 02 00 01", -EPROTO, "SUBSCRIBE: no topic filters"},
    {"82 06 00 00 00 01 61 00", -EPROTO, "SUBSCRIBE: packet identifier is 0"},
    {"82 06 00 01 00 01 61 03", -EPROTO,
     "SUBSCRIBE: requested QoS 3 of topic filter 1 is invalid"},
    {"82 06 00 01 00 01 61 81", -EPROTO,
     "SUBSCRIBE: requested QoS byte 0x81 of topic filter 1 has reserved bits set"},
    {"82 05 00 01 00 01 61", -EPROTO,
     "SUBSCRIBE: requested QoS of topic filter 1 needs 1 byte, 0 left (remaining length 5)"},
    {"82 08 00 01 00 01 61 00 00 02", -EPROTO,
     "SUBSCRIBE: topic filter 2 length 2 exceeds the 0 bytes left (remaining length 8)"},
    {"82 0a 00 01 00 05 61 2f 23 2f 62 00", -EPROTO,
     "SUBSCRIBE: topic filter 1 'a/#/b' has '#' not as the last level"},
    {"82 06 00 01 00 01 00 00", -EPROTO, "SUBSCRIBE: topic filter 1 contains U+0000 at byte 0"},
    {"82 07 00 01 00 02 61 2b 00", -EPROTO,
     "SUBSCRIBE: topic filter 1 'a+' has '+' not alone in its level"},
    {"82 05 00 01 00 00 00", -EPROTO, "SUBSCRIBE: topic filter 1 '' is empty"},
    {"a2 02 00 01", -EPROTO, "UNSUBSCRIBE: no topic filters"},
    {"a2 06 00 01 00 01 23 7f", -EPROTO,
     "UNSUBSCRIBE: topic filter 2 length needs 2 bytes, 1 left (remaining length 6)"},
    {"90 02 00 01", -EPROTO, "SUBACK: no return codes"},
    {"90 04 00 01 01 03", -EPROTO,
     "SUBACK: return code 0x03 of entry 2 is invalid (0, 1, 2 or 0x80)"},
    {"90 03 00 00 00", -EPROTO, "SUBACK: packet identifier is 0"},
    /* CONNECT */
    {"10 10 00 04 4d 51 54 54 04 03 00 3c 00 04 6c 75 6d 65", -EPROTO,
     "CONNECT: reserved flag bit 0 is set (flags 0x03)"},
    {"10 12 00 06 4d 51 49 73 64 70 03 02 00 3c 00 04 6c 75 6d 65", -EPROTO,
     "CONNECT: protocol name 'MQIsdp', must be 'MQTT'"},
    {"10 10 00 04 4d 51 54 54 03 02 00 3c 00 04 6c 75 6d 65", -EPROTONOSUPPORT,
     "CONNECT: protocol level 3 not supported (must be 4, MQTT 3.1.1)"},
    {"10 10 00 04 4d 51 54 54 04 42 00 3c 00 04 6c 75 6d 65", -EPROTO,
     "CONNECT: password flag set without the user name flag"},
    {"10 0f 00 04 4d 51 54 54 04 02 00 3c 00 04 6c 75 6d 65", -EPROTO,
     "CONNECT: client identifier length 4 exceeds the 3 bytes left (remaining length 15)"},
    {"10 10 00 04 4d 51 54 54 04 0a 00 3c 00 04 6c 75 6d 65", -EPROTO,
     "CONNECT: will QoS set without the will flag"},
    {"10 10 00 04 4d 51 54 54 04 22 00 3c 00 04 6c 75 6d 65", -EPROTO,
     "CONNECT: will retain set without the will flag"},
    {"10 15 00 04 4d 51 54 54 04 1e 00 3c 00 01 63 00 01 77 00 03 62 79 65", -EPROTO,
     "CONNECT: will QoS 3 is invalid"},
    {"10 15 00 04 4d 51 54 54 04 06 00 3c 00 01 63 00 01 23 00 03 62 79 65", -EPROTO,
     "CONNECT: will topic contains wildcard '#'"},
    {"10 12 00 04 4d 51 54 54 04 06 00 3c 00 01 63 00 01 77 00 03", -EPROTO,
     "CONNECT: will message length 3 exceeds the 0 bytes left (remaining length 18)"},
    {"10 12 00 04 4d 51 54 54 04 02 00 3c 00 04 6c 75 6d 65 00 00", -EPROTO,
     "CONNECT: 2 trailing bytes after the payload (remaining length 18)"},
    {"10 0a 00 04 4d 51 54 54 04 02 00 3c", -EPROTO,
     "CONNECT: client identifier length needs 2 bytes, 0 left (remaining length 10)"},
    {"10 07 00 04 4d 51 54 54 04", -EPROTO,
     "CONNECT: connect flags needs 1 byte, 0 left (remaining length 7)"},
    {"10 10 00 04 4d 51 54 54 04 02 00 3c 00 04 6c ff 6d 65", -EPROTO,
     "CONNECT: client identifier is not well-formed UTF-8 (byte 0xff at offset 1)"},
    {"10 11 00 04 4d 51 54 54 04 82 00 3c 00 01 63 00 02 75 00", -EPROTO,
     "CONNECT: user name contains U+0000 at byte 1"},
    /* CONNACK */
    {"20 03 00 00 00", -EPROTO, "CONNACK: remaining length 3, must be 2"},
    {"20 01 00", -EPROTO, "CONNACK: remaining length 1, must be 2"},
    {"20 02 02 00", -EPROTO, "CONNACK: reserved bits of acknowledge flags 0x02 set"},
    {"20 02 00 06", -EPROTO, "CONNACK: return code 6 is reserved"},
    {"20 02 01 05", -EPROTO, "CONNACK: session present set with return code 5 (not authorized)"},
    /* fixed-size packets: trailing bytes, short, zero ids */
    {"40 03 00 01 00", -EPROTO, "PUBACK: remaining length 3, must be 2"},
    {"40 02 00 00", -EPROTO, "PUBACK: packet identifier is 0"},
    {"50 01 01", -EPROTO, "PUBREC: remaining length 1, must be 2"},
    {"72 02 00 01", -EPROTO, "PUBCOMP: reserved flags 0x2, must be 0x0"},
    {"b0 00", -EPROTO, "UNSUBACK: remaining length 0, must be 2"},
    {"c0 01 00", -EPROTO, "PINGREQ: remaining length 1, must be 0"},
    {"d0 02 00 00", -EPROTO, "PINGRESP: remaining length 2, must be 0"},
    {"e0 01 00", -EPROTO, "DISCONNECT: remaining length 1, must be 0"},
};

static int must_not_be_called(void *ud, const lume_mqtt_packet *pkt)
{
    (void)ud;
    fail_msg("callback called for a %s", lume_mqtt_type_name(pkt->type));
    return 0;
}

static void test_malformed(void **state)
{
    (void)state;
    size_t checked = 0;
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *msg = bad[i].msg;
        uint8_t b[64];
        size_t len = unhex(bad[i].hex, b, sizeof b);

        /* In one feed. */
        lume_mqtt_parser_reset(p);
        int rc = lume_mqtt_parser_feed(p, b, len, must_not_be_called, NULL);
        if (rc != bad[i].rc || !lume_mqtt_parser_error(p) ||
            strcmp(lume_mqtt_parser_error(p), msg) != 0)
            fail_msg("case %zu (%s): rc %d, message \"%s\"; want rc %d, \"%s\"", i,
                     bad[i].hex, rc, lume_mqtt_parser_error(p) ? lume_mqtt_parser_error(p)
                                                              : "(none)",
                     bad[i].rc, msg);
        size_t used = lume_mqtt_parser_consumed(p);
        assert_true(used >= 1 && used <= len);

        /* Dead until reset: same code, nothing consumed, message kept. */
        assert_int_equal(lume_mqtt_parser_feed(p, "\xc0\x00", 2, must_not_be_called, NULL),
                         bad[i].rc);
        assert_int_equal(lume_mqtt_parser_consumed(p), 0);
        assert_string_equal(lume_mqtt_parser_error(p), msg);

        /* Byte by byte: the same error, found at the same byte. */
        lume_mqtt_parser_reset(p);
        assert_null(lume_mqtt_parser_error(p));
        size_t k;
        for (k = 0; k < len; k++) {
            rc = lume_mqtt_parser_feed(p, b + k, 1, must_not_be_called, NULL);
            if (rc)
                break;
        }
        assert_int_equal(rc, bad[i].rc);
        assert_int_equal(k + 1, used);
        assert_string_equal(lume_mqtt_parser_error(p), msg);
        checked++;
    }
    assert_true(checked >= 60);

    /* After reset the parser works again. */
    lume_mqtt_parser_reset(p);
    collect c = {0};
    assert_int_equal(lume_mqtt_parser_feed(p, "\xc0\x00", 2, on_packet, &c), 0);
    assert_int_equal(c.n, 1);
    collect_clear(&c);
    lume_mqtt_parser_free(p);
}

static void test_good_packets_before_a_bad_one_are_delivered(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t len = unhex("d0 00  40 02 00 07  30 05 00 03 61 2f 2b  c0 00", b, sizeof b);
    lume_mqtt_parser *p = lume_mqtt_parser_new(0, 0);
    collect c = {0};
    assert_int_equal(lume_mqtt_parser_feed(p, b, len, on_packet, &c), -EPROTO);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.dumps[0], "PINGRESP");
    assert_string_equal(c.dumps[1], "PUBACK id=7");
    assert_string_equal(lume_mqtt_parser_error(p), "PUBLISH: topic contains wildcard '+'");
    assert_int_equal(lume_mqtt_parser_consumed(p), 13);    /* through the bad packet */
    collect_clear(&c);
    lume_mqtt_parser_free(p);
}

/* ---- encoder ------------------------------------------------------------- */

static void test_encode_enospc(void **state)
{
    (void)state;
    lume_mqtt_packet m = {.type = LUME_MQTT_PUBLISH};
    m.publish = (lume_mqtt_publish){.qos = 1, .packet_id = 3, .topic = lume_mqtt_cstr("a/b"),
                                    .payload = "hello", .payload_len = 5};
    ssize_t size = lume_mqtt_encoded_size(&m);
    assert_int_equal(size, 2 + 2 + 3 + 2 + 5);
    uint8_t buf[32];
    for (size_t cap = 0; cap < (size_t)size; cap++) {
        memset(buf, 0xaa, sizeof buf);
        size_t need = 0;
        assert_int_equal(lume_mqtt_encode(&m, buf, cap, &need), -ENOSPC);
        assert_int_equal(need, (size_t)size);
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], 0xaa);
    }
    assert_int_equal(lume_mqtt_encode(&m, buf, (size_t)size, NULL), size);
    assert_int_equal(buf[size], 0xaa);                       /* nothing past the end */
}

static void test_encode_refuses_invalid(void **state)
{
    (void)state;
    static char longs[65537];
    memset(longs, 'a', sizeof longs - 1);
    struct { lume_mqtt_packet p; const char *msg; } v[24];
    size_t n = 0;
    uint8_t q3 = 3;
    static const lume_mqtt_sub badsub = {{"a/#/b", 5}, 0};
    static const lume_mqtt_sub q3sub = {{"a", 1}, 3};

#define PUB(...) ((lume_mqtt_packet){.type = LUME_MQTT_PUBLISH, .publish = {__VA_ARGS__}})
    v[n].p = PUB(.qos = 3, .packet_id = 1, .topic = {"a", 1});
    v[n++].msg = "PUBLISH: QoS 3 is invalid";
    v[n].p = PUB(.dup = true, .topic = {"a", 1});
    v[n++].msg = "PUBLISH: DUP set on a QoS 0 message";
    v[n].p = PUB(.qos = 1, .topic = {"a", 1});
    v[n++].msg = "PUBLISH: packet identifier is 0 on a QoS 1 message";
    v[n].p = PUB(.topic = {"a/#", 3});
    v[n++].msg = "PUBLISH: topic contains wildcard '#'";
    v[n].p = PUB(.topic = {"", 0});
    v[n++].msg = "PUBLISH: topic is empty";
    v[n].p = PUB(.topic = {"a\0b", 3});
    v[n++].msg = "PUBLISH: topic contains U+0000 at byte 1";
    v[n].p = PUB(.topic = {longs, 65536});
    v[n++].msg = "PUBLISH: topic is 65536 bytes, longer than 65535";
    v[n].p = PUB(.topic = {"a", 1}, .payload_len = 3);
    v[n++].msg = "PUBLISH: payload length 3 but no payload";
    v[n].p = PUB(.topic = {"a", 1}, .oversize = true);
    v[n++].msg = "PUBLISH: a skipped (oversize) packet has no payload to encode";
#undef PUB
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    v[n].p.connect.has_password = true;
    v[n++].msg = "CONNECT: password flag set without the user name flag";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    v[n].p.connect.will_retain = true;
    v[n++].msg = "CONNECT: will retain set without the will flag";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    v[n].p.connect.will = true;
    v[n].p.connect.will_topic = lume_mqtt_cstr("w/+");
    v[n++].msg = "CONNECT: will topic contains wildcard '+'";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    v[n].p.connect.will = true;
    v[n].p.connect.will_qos = 3;
    v[n].p.connect.will_topic = lume_mqtt_cstr("w");
    v[n++].msg = "CONNECT: will QoS 3 is invalid";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    v[n].p.connect.has_username = v[n].p.connect.has_password = true;
    v[n].p.connect.password = (lume_mqtt_str){longs, 65536};
    v[n++].msg = "CONNECT: password of 65536 bytes is invalid (at most 65535)";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_CONNECT};
    v[n].p.connect.client_id = (lume_mqtt_str){NULL, 2};
    v[n++].msg = "CONNECT: client identifier has length 2 but no data";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_SUBSCRIBE};
    v[n].p.subscribe = (lume_mqtt_subscribe){.packet_id = 1, .subs = &badsub, .count = 1};
    v[n++].msg = "SUBSCRIBE: topic filter 1 'a/#/b' has '#' not as the last level";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_SUBSCRIBE};
    v[n].p.subscribe = (lume_mqtt_subscribe){.packet_id = 1, .subs = &q3sub, .count = 1};
    v[n++].msg = "SUBSCRIBE: requested QoS 3 of topic filter 1 is invalid";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_SUBACK};
    v[n].p.suback = (lume_mqtt_suback){.packet_id = 1, .codes = &q3, .count = 1};
    v[n++].msg = "SUBACK: return code 0x03 of entry 1 is invalid (0, 1, 2 or 0x80)";
    v[n].p = (lume_mqtt_packet){.type = 0};
    v[n++].msg = "packet type 0 is reserved";
    v[n].p = (lume_mqtt_packet){.type = LUME_MQTT_UNSUBACK};
    v[n++].msg = "UNSUBACK: packet identifier is 0";

    assert_true(n <= sizeof v / sizeof v[0]);
    for (size_t i = 0; i < n; i++) {
        char why[256] = "";
        uint8_t buf[16] = {0};
        size_t need = 12345;
        assert_int_equal(lume_mqtt_validate(&v[i].p, why, sizeof why), -EINVAL);
        assert_string_equal(why, v[i].msg);
        assert_int_equal(lume_mqtt_encoded_size(&v[i].p), -EINVAL);
        assert_int_equal(lume_mqtt_encode(&v[i].p, buf, sizeof buf, &need), -EINVAL);
        assert_int_equal(need, 12345);
    }
}

/* ---- topics -------------------------------------------------------------- */

static void test_topic_match(void **state)
{
    (void)state;
    static const struct { const char *f, *t; bool m; } v[] = {
        /* 4.7.1.2 multi-level wildcard */
        {"sport/tennis/player1/#", "sport/tennis/player1", true},
        {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
        {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
        {"sport/#", "sport", true},
        {"sport/#", "sport/", true},
        {"sport/#", "sports", false},
        {"#", "sport/tennis", true},
        {"#", "/", true},
        {"/#", "/", true},
        {"sport/tennis#", "sport/tennis#", false},          /* invalid filter */
        {"sport/tennis/#/ranking", "sport/tennis/x/ranking", false},
        /* 4.7.1.3 single-level wildcard */
        {"sport/tennis/+", "sport/tennis/player1", true},
        {"sport/tennis/+", "sport/tennis/player2", true},
        {"sport/tennis/+", "sport/tennis/player1/ranking", false},
        {"sport/+", "sport", false},
        {"sport/+", "sport/", true},
        {"+/+", "/finance", true},
        {"/+", "/finance", true},
        {"+", "/finance", false},
        {"+", "finance", true},
        {"sport+", "sport+", false},                        /* invalid both */
        {"a/+/c", "a//c", true},
        {"+/+/+", "a/b", false},
        {"a/+/#", "a/b", true},
        {"a/+/#", "a", false},
        {"a/+/#", "a/b/c/d", true},
        /* 4.7.2 topics beginning with $ */
        {"#", "$SYS/broker/uptime", false},
        {"+/monitor/Clients", "$SYS/monitor/Clients", false},
        {"$SYS/#", "$SYS/monitor/Clients", true},
        {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
        {"$SYS/#", "$SYS", true},
        {"a/$x", "a/$x", true},
        {"a/+", "a/$x", true},                              /* only a leading '$' */
        /* exact, case, empty levels */
        {"a/b", "a/b", true},
        {"a/b", "a/B", false},
        {"a/b", "a/b/", false},
        {"a/b/", "a/b", false},
        {"a//b", "a//b", true},
        {"/", "/", true},
        {"d\xc3\xa9v/+", "d\xc3\xa9v/1", true},
        {"d\xc3\xa9v/+", "dev/1", false},
        /* invalid operands */
        {"a/b", "a/+", false},                              /* topic with wildcard */
        {"#", "a/#", false},
        {"", "a", false},
        {"a", "", false},
        {"#", "", false},
        {"a/#/", "a/b", false},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (lume_mqtt_topic_match(v[i].f, v[i].t) != v[i].m)
            fail_msg("match(\"%s\", \"%s\") should be %s", v[i].f, v[i].t,
                     v[i].m ? "true" : "false");
    assert_false(lume_mqtt_topic_match(NULL, "a"));
    assert_false(lume_mqtt_topic_match("a", NULL));
}

static void test_filter_and_topic_valid(void **state)
{
    (void)state;
    static const struct { const char *s; bool filter, topic; } v[] = {
        {"#", true, false},        {"+", true, false},        {"a/#", true, false},
        {"a/+/b", true, false},    {"+/+", true, false},      {"/", true, true},
        {"a//", true, true},       {"a/b", true, true},       {"$SYS/#", true, false},
        {"", false, false},        {"a#", false, false},      {"#/a", false, false},
        {"a/#/b", false, false},   {"a+", false, false},      {"+a", false, false},
        {"a/b+", false, false},    {"a/#/", false, false},
        {"\xc3\x28", false, false},                 /* bad continuation */
        {"a/\xed\xa0\x80", false, false},           /* surrogate */
        {"\xc1\xbf", false, false},                 /* overlong */
        {"\xf0\x9f\x8c\xa1/+", true, false},        /* U+1F321 */
        {"\xef\xbf\xbf", true, true},               /* U+FFFF: allowed (MAY) */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (lume_mqtt_filter_valid(v[i].s) != v[i].filter)
            fail_msg("filter_valid(\"%s\") should be %d", v[i].s, v[i].filter);
        if (lume_mqtt_topic_valid(v[i].s) != v[i].topic)
            fail_msg("topic_valid(\"%s\") should be %d", v[i].s, v[i].topic);
    }
    static char s[65537];
    memset(s, 'x', 65535);
    assert_true(lume_mqtt_filter_valid(s));
    assert_true(lume_mqtt_topic_valid(s));
    s[65535] = 'x';
    assert_false(lume_mqtt_filter_valid(s));
    assert_false(lume_mqtt_topic_valid(s));
    assert_false(lume_mqtt_filter_valid(NULL));
    assert_false(lume_mqtt_topic_valid(NULL));
}

/* ---- skip mode: oversize PUBLISH --------------------------------------- */

/* A stream around three oversize PUBLISH packets (QoS 1 with its topic
 * kept, QoS 2 with a topic too long to keep, QoS 0 retained), each followed
 * by a small packet, for a parser of 64 bytes. */
static size_t skip_stream(uint8_t **out)
{
    static char topic100[101];
    memset(topic100, 't', 100);
    size_t cap = 400000, len = 0;
    uint8_t *b = malloc(cap);
    unsigned char *pay = malloc(200000);
    assert_non_null(b);
    assert_non_null(pay);
    memset(pay, 'x', 200000);
    lume_mqtt_packet v[7];
    v[0] = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    v[0].publish = (lume_mqtt_publish){.qos = 1, .retain = true, .packet_id = 0x1234,
                                       .topic = lume_mqtt_cstr("lume/dev-1/desired"),
                                       .payload = pay, .payload_len = 200000};
    v[1] = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    v[1].publish = (lume_mqtt_publish){.topic = lume_mqtt_cstr("a"), .payload = "ok",
                                       .payload_len = 2};
    v[2] = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    v[2].publish = (lume_mqtt_publish){.qos = 2, .dup = true, .packet_id = 7,
                                       .topic = lume_mqtt_cstr(topic100), .payload = pay,
                                       .payload_len = 500};
    v[3] = (lume_mqtt_packet){.type = LUME_MQTT_PUBACK, .packet_id = 9};
    v[4] = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};
    v[4].publish = (lume_mqtt_publish){.retain = true, .topic = lume_mqtt_cstr("lume/groups/g/desired"),
                                       .payload = pay, .payload_len = 64};
    v[5] = (lume_mqtt_packet){.type = LUME_MQTT_PINGRESP};
    v[6] = (lume_mqtt_packet){.type = LUME_MQTT_PUBLISH};  /* exactly 64 bytes: not skipped */
    v[6].publish = (lume_mqtt_publish){.topic = lume_mqtt_cstr("t"), .payload = pay,
                                       .payload_len = 64 - 2 - 3};
    for (size_t i = 0; i < 7; i++)
        len += enc(&v[i], b + len, cap - len);
    free(pay);
    *out = b;
    return len;
}

static const char *const skip_want[] = {
    "PUBLISH dup=0 qos=1 retain=1 id=4660 topic[18]=6c756d652f6465762d312f64657369726564"
    " oversize, 200000 payload bytes dropped",
    "PUBLISH dup=0 qos=0 retain=0 topic[1]=61 payload[2]=6f6b",
    "PUBLISH dup=1 qos=2 retain=0 id=7 topic[100] not kept oversize, 500 payload bytes dropped",
    "PUBACK id=9",
    "PUBLISH dup=0 qos=0 retain=1 topic[21]=6c756d652f67726f7570732f672f64657369726564"
    " oversize, 64 payload bytes dropped",
    "PINGRESP",
};

static void test_skip_oversize_publish(void **state)
{
    (void)state;
    uint8_t *b;
    size_t len = skip_stream(&b);
    lume_mqtt_parser *p = lume_mqtt_parser_new(64, 0);
    assert_non_null(p);

    /* Off by default: the first packet is an error, from its header. */
    collect c = {0};
    assert_int_equal(lume_mqtt_parser_feed(p, b, len, on_packet, &c), -EMSGSIZE);
    assert_int_equal(c.n, 0);

    /* On: every chunking gives the same packets, and the stream goes on. */
    static const size_t chunks[] = {0, 1, 2, 3, 5, 7, 13, 64, 65, 1000, 4096, 65536};
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        lume_mqtt_parser_reset(p);
        lume_mqtt_parser_skip_oversize(p, true);
        size_t step = chunks[k] ? chunks[k] : len;
        for (size_t off = 0; off < len; off += step) {
            size_t n = len - off < step ? len - off : step;
            int rc = lume_mqtt_parser_feed(p, b + off, n, on_packet, &c);
            if (rc)
                fail_msg("chunk %zu at %zu: %d %s", step, off, rc, lume_mqtt_parser_error(p));
            assert_int_equal(lume_mqtt_parser_consumed(p), n);
        }
        assert_int_equal(c.n, 7);
        for (size_t i = 0; i < 6; i++)
            if (strcmp(c.dumps[i], skip_want[i]))
                fail_msg("chunk %zu, packet %zu: %s\n  want %s", step, i, c.dumps[i],
                         skip_want[i]);
        assert_non_null(strstr(c.dumps[6], "payload[59]="));
        assert_int_equal(c.wire[0], 1 + 3 + 2 + 18 + 2 + 200000);
        assert_int_equal(c.wire[6], 64);
        collect_clear(&c);
    }

    /* The callback may stop right after a skipped packet and resume. */
    lume_mqtt_parser_reset(p);
    c.stop = 5;
    size_t pos = 0;
    int rc;
    while ((rc = lume_mqtt_parser_feed(p, b + pos, len - pos, on_packet, &c)) == 5)
        pos += lume_mqtt_parser_consumed(p);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n, 7);
    assert_string_equal(c.dumps[0], skip_want[0]);
    assert_string_equal(c.dumps[2], skip_want[2]);
    collect_clear(&c);

    /* The largest remaining length is skipped too: header and topic only. */
    lume_mqtt_parser_reset(p);
    assert_int_equal(lume_mqtt_parser_feed(p, "\x30\xff\xff\xff\x7f\x00\x01\x61", 8,
                                           must_not_be_called, NULL), 0);
    assert_null(lume_mqtt_parser_error(p));

    /* Off again: -EMSGSIZE again. */
    lume_mqtt_parser_reset(p);
    lume_mqtt_parser_skip_oversize(p, false);
    assert_int_equal(lume_mqtt_parser_feed(p, b, len, on_packet, &c), -EMSGSIZE);
    assert_string_equal(lume_mqtt_parser_error(p),
                        "PUBLISH: packet of 200026 bytes exceeds the maximum of 64");
    lume_mqtt_parser_free(p);
    free(b);
}

/* In skip mode an oversize PUBLISH is checked like any other (topic length,
 * topic, packet identifier), at the byte that decides; other types over the
 * limit and a bad remaining length still fail. Parser limit: 16 bytes. */
static const struct bad bad_skip[] = {
    {"32 14 00 30", -EPROTO,
     "PUBLISH: topic length 48 exceeds the 18 bytes left (remaining length 20)"},
    {"32 14 00 12", -EPROTO,
     "PUBLISH: packet identifier needs 2 bytes, 0 left (remaining length 20)"},
    {"34 14 00 11", -EPROTO,
     "PUBLISH: packet identifier needs 2 bytes, 1 left (remaining length 20)"},
    {"32 14 00 01 61 00 00", -EPROTO, "PUBLISH: packet identifier is 0 on a QoS 1 message"},
    {"30 14 00 03 61 2f 2b", -EPROTO, "PUBLISH: topic contains wildcard '+'"},
    {"30 14 00 02 c3 28", -EPROTO,
     "PUBLISH: topic is not well-formed UTF-8 (byte 0x28 at offset 1)"},
    {"30 14 00 02 61 00", -EPROTO, "PUBLISH: topic contains U+0000 at byte 1"},
    {"30 14 00 00", -EPROTO, "PUBLISH: topic is empty"},
    {"36", -EPROTO, "PUBLISH: QoS 3 is invalid"},
    {"90 14", -EMSGSIZE, "SUBACK: packet of 22 bytes exceeds the maximum of 16"},
    {"20 80 01", -EMSGSIZE, "CONNACK: packet of 131 bytes exceeds the maximum of 16"},
    {"30 ff ff ff ff", -EPROTO, "PUBLISH: remaining length continues past 4 bytes"},
};

static void test_skip_oversize_malformed(void **state)
{
    (void)state;
    lume_mqtt_parser *p = lume_mqtt_parser_new(16, 0);
    assert_non_null(p);
    lume_mqtt_parser_skip_oversize(p, true);
    for (size_t i = 0; i < sizeof bad_skip / sizeof bad_skip[0]; i++) {
        uint8_t b[64];
        size_t len = unhex(bad_skip[i].hex, b, sizeof b);
        lume_mqtt_parser_reset(p);
        int rc = lume_mqtt_parser_feed(p, b, len, must_not_be_called, NULL);
        if (rc != bad_skip[i].rc || !lume_mqtt_parser_error(p) ||
            strcmp(lume_mqtt_parser_error(p), bad_skip[i].msg) != 0)
            fail_msg("case %zu (%s): rc %d, message \"%s\"; want rc %d, \"%s\"", i,
                     bad_skip[i].hex, rc,
                     lume_mqtt_parser_error(p) ? lume_mqtt_parser_error(p) : "(none)",
                     bad_skip[i].rc, bad_skip[i].msg);
        assert_int_equal(lume_mqtt_parser_consumed(p), len);  /* the last byte decided */
        lume_mqtt_parser_reset(p);
        size_t k;
        for (k = 0; k < len; k++)
            if ((rc = lume_mqtt_parser_feed(p, b + k, 1, must_not_be_called, NULL)))
                break;
        assert_int_equal(rc, bad_skip[i].rc);
        assert_int_equal(k + 1, len);
        assert_string_equal(lume_mqtt_parser_error(p), bad_skip[i].msg);
    }
    lume_mqtt_parser_free(p);

    /* A remaining length too short for the topic length of an oversize
     * PUBLISH (a parser of 2 bytes skips a 3-byte one). */
    p = lume_mqtt_parser_new(2, 0);
    lume_mqtt_parser_skip_oversize(p, true);
    assert_int_equal(lume_mqtt_parser_feed(p, "\x30\x01\x00", 3, must_not_be_called, NULL),
                     -EPROTO);
    assert_string_equal(lume_mqtt_parser_error(p),
                        "PUBLISH: topic length needs 2 bytes, 1 left (remaining length 1)");
    lume_mqtt_parser_free(p);
}

/* The edge checks take a length (a Lua string may hold a NUL) and say
 * which rule broke, in the parser's words. */
static void test_edge_checks(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        lume_mqtt_name_error topic, filter;
        const char *why;   /* the topic check's phrase */
    } v[] = {
        {"a/b", 3, LUME_MQTT_NAME_OK, LUME_MQTT_NAME_OK, ""},
        {"a\0b", 3, LUME_MQTT_NAME_NUL, LUME_MQTT_NAME_NUL, "contains U+0000 at byte 1"},
        {"a\xff", 2, LUME_MQTT_NAME_BAD_UTF8, LUME_MQTT_NAME_BAD_UTF8,
         "is not well-formed UTF-8 (byte 0xff at offset 1)"},
        {"a\xc3", 2, LUME_MQTT_NAME_BAD_UTF8, LUME_MQTT_NAME_BAD_UTF8,
         "is not well-formed UTF-8 (sequence at byte 1 truncated)"},
        {"a/+", 3, LUME_MQTT_NAME_WILDCARD, LUME_MQTT_NAME_OK, "contains wildcard '+'"},
        {"a/#", 3, LUME_MQTT_NAME_WILDCARD, LUME_MQTT_NAME_OK, "contains wildcard '#'"},
        {"a#", 2, LUME_MQTT_NAME_WILDCARD, LUME_MQTT_NAME_BAD_FILTER, "contains wildcard '#'"},
        {"", 0, LUME_MQTT_NAME_EMPTY, LUME_MQTT_NAME_EMPTY, "is empty"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char why[96];
        lume_mqtt_name_error t = lume_mqtt_check_topic(v[i].s, v[i].len, why, sizeof why);
        if (t != v[i].topic || strcmp(why, v[i].why))
            fail_msg("case %zu: check_topic = %d \"%s\", want %d \"%s\"", i, t, why, v[i].topic,
                     v[i].why);
        if (lume_mqtt_check_filter(v[i].s, v[i].len, NULL, 0) != v[i].filter)
            fail_msg("case %zu: check_filter should be %d", i, v[i].filter);
    }
    char why[96];
    assert_int_equal(lume_mqtt_check_filter("a+", 2, why, sizeof why), LUME_MQTT_NAME_BAD_FILTER);
    assert_string_equal(why, "has '+' not alone in its level");
    assert_int_equal(lume_mqtt_check_string("", 0, why, sizeof why), LUME_MQTT_NAME_OK);
    assert_int_equal(lume_mqtt_check_string("caf\xc3\xa9", 5, why, sizeof why),
                     LUME_MQTT_NAME_OK);
    static char big[65536];
    memset(big, 'x', sizeof big);
    assert_int_equal(lume_mqtt_check_string(big, sizeof big, why, sizeof why),
                     LUME_MQTT_NAME_TOO_LONG);
    assert_string_equal(why, "is 65536 bytes, longer than 65535");
    assert_int_equal(lume_mqtt_check_topic(big, 65535, why, sizeof why), LUME_MQTT_NAME_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_split_reads),
        cmocka_unit_test(test_concatenated_in_one_feed),
        cmocka_unit_test(test_callback_stops_feeding),
        cmocka_unit_test(test_feed_from_callback_is_refused),
        cmocka_unit_test(test_remaining_length_boundaries),
        cmocka_unit_test(test_max_packet_size),
        cmocka_unit_test(test_filter_limit),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_good_packets_before_a_bad_one_are_delivered),
        cmocka_unit_test(test_skip_oversize_publish),
        cmocka_unit_test(test_skip_oversize_malformed),
        cmocka_unit_test(test_encode_enospc),
        cmocka_unit_test(test_encode_refuses_invalid),
        cmocka_unit_test(test_topic_match),
        cmocka_unit_test(test_filter_and_topic_valid),
        cmocka_unit_test(test_edge_checks),
    };
    return cmocka_run_group_tests_name("mqtt_codec", tests, NULL, NULL);
}
