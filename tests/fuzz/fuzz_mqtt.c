// fuzz-sources: core/net/mqtt_codec.c
/* tests/fuzz/fuzz_mqtt.c — libFuzzer target for core/net/mqtt_codec.c.
 *
 * Input: [limits][chunking][stream...]. limits picks the parser's maximum
 * packet size (64 B .. 8 KiB), filter limit (1..8) and skip mode (bit 6:
 * oversize PUBLISH packets are skipped, not errors); chunking seeds the
 * chunk sizes (0: the whole stream in one feed). The stream is fed three
 * ways and the invariants below are asserted (abort() on violation):
 *
 *  1. chunked feeding and one whole feed give the same packets, the same
 *     return code, the same error message, and stop at the same byte;
 *  2. a parser whose callback stops after every packet, resumed from
 *     lume_mqtt_parser_consumed(), gives the same packets too;
 *  3. every decoded packet re-encodes (validate, encoded_size, encode
 *     agree), and the re-encoding equals the packet's own bytes on the wire
 *     (the remaining length may have been sent non-minimally: the first
 *     byte and the body must be identical);
 *  4. parsing the re-encoded stream gives the same packets again, with no
 *     error;
 *  5. decoded strings are NUL-terminated at .len, topics are valid topic
 *     names that match themselves and "#" (unless '$'), filters are valid;
 *  6. a dead parser stays dead: another feed returns the same code and
 *     consumes nothing;
 *  7. a skipped PUBLISH (skip mode only) was over the limit, has no
 *     payload, a valid topic or none kept (only when it could not fit), and
 *     does not encode; chunked and whole feeding skip the same ones. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_codec.h"

#include "fuzz.h"

typedef struct sink {
    uint8_t       *enc;       /* re-encoded packets, back to back */
    size_t         len, cap;
    size_t         count;
    const uint8_t *orig;      /* the stream fed (NULL: do not compare) */
    size_t         off;       /* where the next packet starts in orig */
    int            stop;      /* callback returns this */
    size_t         max_packet;
    bool           skip;      /* skip mode */
    size_t         skipped;   /* oversize PUBLISH packets seen */
    uint64_t       skip_sum;  /* a digest of what they were */
} sink;

static void check_cstr(const lume_mqtt_str *s)
{
    CHECK(s->ptr != NULL);
    CHECK(s->ptr[s->len] == '\0');
    CHECK(strlen(s->ptr) == s->len);
}

static void check_strings(const lume_mqtt_packet *pkt)
{
    switch (pkt->type) {
    case LUME_MQTT_CONNECT:
        check_cstr(&pkt->connect.client_id);
        if (pkt->connect.will) {
            check_cstr(&pkt->connect.will_topic);
            CHECK(lume_mqtt_topic_valid(pkt->connect.will_topic.ptr));
            CHECK(pkt->connect.will_message.ptr[pkt->connect.will_message.len] == '\0');
        }
        if (pkt->connect.has_username)
            check_cstr(&pkt->connect.username);
        if (pkt->connect.has_password)
            CHECK(pkt->connect.password.ptr[pkt->connect.password.len] == '\0');
        break;
    case LUME_MQTT_PUBLISH: {
        const char *t = pkt->publish.topic.ptr;
        check_cstr(&pkt->publish.topic);
        CHECK(lume_mqtt_topic_valid(t));
        CHECK(lume_mqtt_topic_match(t, t));
        CHECK(lume_mqtt_topic_match("#", t) == (t[0] != '$'));
        CHECK(((const char *)pkt->publish.payload)[pkt->publish.payload_len] == '\0');
        break;
    }
    case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE:
        for (size_t i = 0; i < pkt->subscribe.count; i++) {
            const char *f = pkt->subscribe.subs[i].filter.ptr;
            check_cstr(&pkt->subscribe.subs[i].filter);
            CHECK(lume_mqtt_filter_valid(f));
            CHECK(!lume_mqtt_topic_valid(f) == (strpbrk(f, "+#") != NULL));
            lume_mqtt_topic_match(f, "a/b/c");
            lume_mqtt_topic_match(f, "$SYS/x");
        }
        break;
    default:
        break;
    }
}

/* 7: a skipped PUBLISH. */
static int on_skipped(sink *s, const lume_mqtt_packet *pkt)
{
    const lume_mqtt_publish *m = &pkt->publish;
    CHECK(s->skip);
    CHECK(pkt->wire_size > s->max_packet);
    CHECK(m->payload == NULL);
    CHECK(lume_mqtt_encoded_size(pkt) == -EINVAL);
    CHECK(m->qos <= 2 && (m->qos == 0) == (m->packet_id == 0));
    if (m->topic.ptr) {
        check_cstr(&m->topic);
        CHECK(lume_mqtt_topic_valid(m->topic.ptr));
        CHECK(m->topic.len < s->max_packet);
    } else {
        CHECK(m->topic.len >= s->max_packet);
    }
    CHECK(pkt->remaining_length == 2 + m->topic.len + (m->qos ? 2 : 0) + m->payload_len);
    if (s->orig) {
        CHECK(s->orig[s->off] >> 4 == LUME_MQTT_PUBLISH);
        s->off += pkt->wire_size;
    }
    s->skipped++;
    s->skip_sum = s->skip_sum * 1000003u + pkt->wire_size * 31u + m->packet_id * 7u +
                  m->topic.len + (m->topic.ptr ? (uint8_t)m->topic.ptr[0] : 0);
    return s->stop;
}

static int on_packet(void *ud, const lume_mqtt_packet *pkt)
{
    sink *s = ud;
    if (pkt->type == LUME_MQTT_PUBLISH && pkt->publish.oversize)
        return on_skipped(s, pkt);
    char why[256];
    CHECK(lume_mqtt_validate(pkt, why, sizeof why) == 0);
    ssize_t size = lume_mqtt_encoded_size(pkt);
    CHECK(size > 0);
    if (s->len + (size_t)size > s->cap) {
        s->cap = (s->len + (size_t)size) * 2;
        s->enc = realloc(s->enc, s->cap);
        CHECK(s->enc != NULL);
    }
    size_t need = 0;
    uint8_t *w = s->enc + s->len;
    CHECK(lume_mqtt_encode(pkt, w, (size_t)size - 1, &need) == -ENOSPC);
    CHECK(need == (size_t)size);
    CHECK(lume_mqtt_encode(pkt, w, (size_t)size, &need) == size);
    size_t rl = pkt->remaining_length;
    CHECK((size_t)size - rl >= 2 && (size_t)size - rl <= 5);
    CHECK(pkt->wire_size >= (size_t)size && pkt->wire_size - rl <= 5);
    if (s->orig) {
        const uint8_t *o = s->orig + s->off;
        CHECK(o[0] == w[0]);
        CHECK(memcmp(o + pkt->wire_size - rl, w + (size_t)size - rl, rl) == 0);
        s->off += pkt->wire_size;
    }
    check_strings(pkt);
    s->len += (size_t)size;
    s->count++;
    return s->stop;
}

typedef struct outcome {
    int    rc;
    char   err[256];
    size_t consumed;
} outcome;

static void finish(lume_mqtt_parser *p, outcome *o, int rc, size_t consumed)
{
    o->rc = rc;
    o->consumed = consumed;
    const char *e = lume_mqtt_parser_error(p);
    CHECK((rc < 0) == (e != NULL));
    snprintf(o->err, sizeof o->err, "%s", e ? e : "");
    if (rc < 0) {                    /* 6: dead stays dead */
        CHECK(lume_mqtt_parser_feed(p, "\xc0\x00", 2, on_packet, NULL) == rc);
        CHECK(lume_mqtt_parser_consumed(p) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_packet = (size_t)64 << (data[0] & 7);
    size_t max_filters = 1 + (data[0] >> 3 & 7);
    bool skip = data[0] & 0x40;
    unsigned chunk = data[1];
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    lume_mqtt_parser *pa = lume_mqtt_parser_new(max_packet, max_filters);
    lume_mqtt_parser *pb = lume_mqtt_parser_new(max_packet, max_filters);
    CHECK(pa && pb);
    lume_mqtt_parser_skip_oversize(pa, skip);
    lume_mqtt_parser_skip_oversize(pb, skip);
    sink sa = {.orig = in, .max_packet = max_packet, .skip = skip};
    sink sb = {.orig = in, .max_packet = max_packet, .skip = skip};
    sink sc = {.orig = NULL, .max_packet = max_packet, .skip = skip};
    outcome oa = {0}, ob = {0};

    /* A: chunked. Sizes 1..chunk from a small LCG seeded by chunk. */
    size_t pos = 0;
    int rc = 0;
    uint32_t lcg = chunk * 2654435761u + 1;
    while (pos < n && rc == 0) {
        size_t len = n - pos;
        if (chunk) {
            lcg = lcg * 1103515245u + 12345u;
            size_t want = 1 + (lcg >> 16) % chunk;
            if (want < len)
                len = want;
        }
        rc = lume_mqtt_parser_feed(pa, in + pos, len, on_packet, &sa);
        size_t used = lume_mqtt_parser_consumed(pa);
        CHECK(rc != 0 || used == len);
        CHECK(used <= len);
        pos += used;
    }
    finish(pa, &oa, rc, pos);

    /* B: one feed, but the callback stops after each packet; resume. */
    sb.stop = 7;
    pos = 0;
    for (;;) {
        rc = lume_mqtt_parser_feed(pb, in + pos, n - pos, on_packet, &sb);
        pos += lume_mqtt_parser_consumed(pb);
        CHECK(pos <= n);
        if (rc != 7)
            break;
        CHECK(lume_mqtt_parser_error(pb) == NULL);
    }
    finish(pb, &ob, rc, pos);

    /* 1, 2: the same outcome whatever the chunking. */
    CHECK(oa.rc == ob.rc);
    CHECK(strcmp(oa.err, ob.err) == 0);
    CHECK(oa.consumed == ob.consumed);
    CHECK(sa.count == sb.count);
    CHECK(sa.skipped == sb.skipped && sa.skip_sum == sb.skip_sum);
    CHECK(sa.len == sb.len && (sa.len == 0 || memcmp(sa.enc, sb.enc, sa.len) == 0));
    CHECK(oa.rc == 0 || oa.rc == -EPROTO || oa.rc == -EMSGSIZE ||
          oa.rc == -EPROTONOSUPPORT);
    if (oa.rc < 0)
        CHECK(oa.err[0] != '\0');

    /* 4: the re-encoded stream parses back to itself. A re-encoding may
     * be up to 3 bytes shorter (minimal remaining length), so it fits the
     * same limit. */
    lume_mqtt_parser_reset(pb);
    if (sa.len) {
        rc = lume_mqtt_parser_feed(pb, sa.enc, sa.len, on_packet, &sc);
        if (rc)
            fprintf(stderr, "re-parse: %s\n", lume_mqtt_parser_error(pb));
        CHECK(rc == 0);
        CHECK(sc.count == sa.count);
        CHECK(sc.skipped == 0);
        CHECK(sc.len == sa.len && memcmp(sc.enc, sa.enc, sa.len) == 0);
    }

    free(sa.enc);
    free(sb.enc);
    free(sc.enc);
    lume_mqtt_parser_free(pa);
    lume_mqtt_parser_free(pb);
    return 0;
}
