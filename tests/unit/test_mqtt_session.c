/* tests/unit/test_mqtt_session.c — core/net/mqtt.c against a fake broker.
 *
 * Each test listens on a 127.0.0.1 port of the kernel's choosing, points a
 * real lume_mqtt session (its own lume_loop, net and outbox) at it, accepts
 * the connection, answers CONNECT with CONNACK and then writes bytes
 * crafted with the codec: what a real broker would not send on demand (a
 * retained message larger than the client's limit, acknowledgements with
 * ids nobody used, a SUBACK of 2000 bytes). Everything lume sends back is
 * parsed and recorded, so a test can wait for "PUBACK 257". A test never
 * sleeps for a fixed time to assert that something happened; it steps the
 * loop until the condition holds or a generous hang guard (GUARD_MS) passes.
 * The backoff is a minute long: a reconnect within a test would show as a
 * second accepted connection, and every test asserts there was one. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "mqtt_codec.h"
#include "outbox.h"
#include "testutil.h"

#define GUARD_MS 20000
#define LIMIT    1024          /* the session's max_packet in these tests */
#define MAXSEEN  256

/* ---- the log, captured ---------------------------------------------------- */

static char  *g_log;
static size_t g_loglen, g_logcap;

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[2048];
    int n = snprintf(line, sizeof line, "%s %s: %s\n",
                     level >= 0 && level <= 3 ? names[level] : "?", component, msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    if (g_loglen + (size_t)n + 1 > g_logcap) {
        g_logcap = (g_loglen + (size_t)n + 1) * 2;
        g_log = realloc(g_log, g_logcap);
        assert_non_null(g_log);
    }
    memcpy(g_log + g_loglen, line, (size_t)n + 1);
    g_loglen += (size_t)n;
}

static size_t log_count(const char *needle)
{
    size_t n = 0;
    for (const char *p = g_log ? g_log : ""; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- the fixture: a fake broker and a session ------------------------------ */

typedef struct seen {
    int      type;
    uint16_t id;
} seen;

typedef struct fx {
    char              dir[256];
    lume_loop        *loop;
    lume_outbox      *ob;
    lume_mqtt        *m;
    int               lfd, fd, port, accepts;
    lume_mqtt_parser *p;          /* what lume sends */
    seen              seen[MAXSEEN];
    size_t            nseen;
    uint16_t          sub_id;     /* the id of the last SUBSCRIBE */
    /* what the host was handed */
    int               skipped, messages;
    char              skip_topic[256], skip_why[512], msg_topic[256], msg_payload[256];
    size_t            skip_size;
    int               skip_qos;
    bool              skip_retain, skip_topic_null;
    bool              send_on_connect;
    const char       *pw;         /* what the password callback gives */
    char              connect_pw[128]; /* the password of the last CONNECT */
    bool              publish_dup;     /* DUP of the last PUBLISH */
} fx;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_lume_packet(void *ud, const lume_mqtt_packet *pkt)
{
    fx *f = ud;
    assert_true(f->nseen < MAXSEEN);
    seen *s = &f->seen[f->nseen++];
    s->type = pkt->type;
    switch (pkt->type) {
    case LUME_MQTT_PUBACK: case LUME_MQTT_PUBREC: case LUME_MQTT_PUBREL:
    case LUME_MQTT_PUBCOMP: case LUME_MQTT_UNSUBACK:
        s->id = pkt->packet_id;
        break;
    case LUME_MQTT_PUBLISH:
        s->id = pkt->publish.packet_id;
        f->publish_dup = pkt->publish.dup;
        break;
    case LUME_MQTT_CONNECT:
        s->id = 0;
        snprintf(f->connect_pw, sizeof f->connect_pw, "%.*s",
                 pkt->connect.has_password ? (int)pkt->connect.password.len : 0,
                 pkt->connect.has_password ? pkt->connect.password.ptr : "");
        break;
    case LUME_MQTT_SUBSCRIBE: case LUME_MQTT_UNSUBSCRIBE:
        s->id = pkt->subscribe.packet_id;
        if (pkt->type == LUME_MQTT_SUBSCRIBE)
            f->sub_id = s->id;
        break;
    default:
        s->id = 0;
        break;
    }
    return 0;
}

/* Accept, and parse whatever lume sent. */
static void service_fake(fx *f)
{
    if (f->fd < 0) {
        int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            f->fd = fd;
            f->accepts++;
        }
    }
    if (f->fd < 0)
        return;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(f->fd, buf, sizeof buf);
        if (n == 0) { /* lume closed: ready for its next connection */
            close(f->fd);
            f->fd = -1;
            lume_mqtt_parser_reset(f->p);
            break;
        }
        if (n < 0)
            break;
        int rc = lume_mqtt_parser_feed(f->p, buf, (size_t)n, on_lume_packet, f);
        if (rc)
            fail_msg("lume sent something malformed: %s", lume_mqtt_parser_error(f->p));
    }
}

static void tick(lume_timer *t) { (void)t; }

/* One short pass of the loop and of the fake broker. */
static void step(fx *f)
{
    lume_timer t;
    lume_timer_init(&t, f->loop, tick, NULL);
    lume_timer_start(&t, 2 * 1000); /* lws waits for its next event: bound it */
    lume_loop_step(f->loop, 2);
    lume_timer_cancel(&t);
    service_fake(f);
}

#define WAIT_FOR(f, cond)                                                      \
    do {                                                                       \
        int64_t end_ = now_ms() + GUARD_MS;                                    \
        while (!(cond) && now_ms() < end_)                                     \
            step(f);                                                           \
        if (!(cond))                                                           \
            fail_msg("not within %d ms: %s\nlog:\n%s", GUARD_MS, #cond,        \
                     g_log ? g_log : "");                                      \
    } while (0)

static void run_for(fx *f, int ms)
{
    int64_t end = now_ms() + ms;
    while (now_ms() < end)
        step(f);
}

static uint64_t stat_bytes_in(fx *f)
{
    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    return st.bytes_in;
}

/* Write all of b, stepping the loop while the socket is full (lume reads
 * on this same thread). */
static void fake_write(fx *f, const void *b, size_t len)
{
    const uint8_t *p = b;
    int64_t end = now_ms() + GUARD_MS;
    while (len) {
        ssize_t n = send(f->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            fail_msg("fake broker: send: %s\nlog:\n%s", strerror(errno), g_log ? g_log : "");
        assert_true(now_ms() < end);
        step(f);
    }
}

/* Write b in pieces of `chunk` bytes, each read by lume before the next is
 * written: the session sees at least len / chunk separate reads. */
static void fake_write_split(fx *f, const void *b, size_t len, size_t chunk)
{
    const uint8_t *p = b;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        uint64_t want = stat_bytes_in(f) + n;
        fake_write(f, p + off, n);
        WAIT_FOR(f, stat_bytes_in(f) >= want);
    }
}

static size_t encode(const lume_mqtt_packet *pkt, uint8_t *buf, size_t cap)
{
    char why[256];
    if (lume_mqtt_validate(pkt, why, sizeof why))
        fail_msg("test packet: %s", why);
    ssize_t n = lume_mqtt_encode(pkt, buf, cap, NULL);
    assert_true(n > 0);
    return (size_t)n;
}

static void fake_send(fx *f, const lume_mqtt_packet *pkt)
{
    uint8_t buf[4096];
    fake_write(f, buf, encode(pkt, buf, sizeof buf));
}

static void fake_ack(fx *f, int type, uint16_t id)
{
    lume_mqtt_packet p = {.type = (lume_mqtt_type)type, .packet_id = id};
    fake_send(f, &p);
}

static void fake_suback(fx *f, uint16_t id)
{
    static const uint8_t granted = 1;
    lume_mqtt_packet p = {.type = LUME_MQTT_SUBACK};
    p.suback = (lume_mqtt_suback){.packet_id = id, .codes = &granted, .count = 1};
    fake_send(f, &p);
}

/* How many packets of this type (and id, unless 0) lume has sent. */
static size_t sent_count(const fx *f, int type, uint16_t id)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nseen; i++)
        if (f->seen[i].type == type && (!id || f->seen[i].id == id))
            n++;
    return n;
}

/* With f->send_on_connect, the host does what lume's twin and scripts do
 * when the session connects: publish its reported document, subscribe. */
static void on_state(void *ud, int state, const char *reason)
{
    (void)reason;
    fx *f = ud;
    if (state != LUME_MQTT_CONNECTED || !f->send_on_connect)
        return;
    assert_int_equal(lume_mqtt_publish_state(f->m, "lume/dev-1/reported", "{}", 2), 0);
    assert_int_equal(lume_mqtt_add_subscription(f->m, "lume/dev-1/cmd/#", 1), 0);
}

static void on_message(void *ud, const char *topic, const void *payload, size_t len, int qos,
                       bool retain)
{
    (void)qos, (void)retain;
    fx *f = ud;
    f->messages++;
    snprintf(f->msg_topic, sizeof f->msg_topic, "%s", topic);
    snprintf(f->msg_payload, sizeof f->msg_payload, "%.*s", (int)len, (const char *)payload);
}

static void on_skipped(void *ud, const char *topic, size_t size, int qos, bool retain,
                       const char *why)
{
    fx *f = ud;
    f->skipped++;
    f->skip_topic_null = !topic;
    snprintf(f->skip_topic, sizeof f->skip_topic, "%s", topic ? topic : "");
    snprintf(f->skip_why, sizeof f->skip_why, "%s", why);
    f->skip_size = size;
    f->skip_qos = qos;
    f->skip_retain = retain;
}

static const char *on_password(void *ud) { return ((fx *)ud)->pw; }

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->fd = f->lfd = -1;
    g_loglen = 0;
    if (g_log)
        g_log[0] = '\0';
    lume_log_set_sink(capture, NULL);
    lume_log_set_level(LUME_LOG_DEBUG);
    char *err = NULL;
    if (tu_tmpdir(f->dir, sizeof f->dir, "mqtt-session") < 0)
        goto fail;
    f->ob = lume_outbox_open(tu_path(f->dir, "outbox.db"), NULL, &err);
    f->loop = lume_loop_new(NULL, &err);
    f->p = lume_mqtt_parser_new(0, 0);
    if (!f->ob || !f->loop || !f->p)
        goto fail;

    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(f->lfd, 4) < 0 || getsockname(f->lfd, (struct sockaddr *)&a, &alen) < 0)
        goto fail;
    f->port = ntohs(a.sin_port);

    char url[64];
    snprintf(url, sizeof url, "mqtt://127.0.0.1:%d", f->port);
    lume_mqtt_opts o;
    lume_mqtt_opts_default(&o);
    o.url = url;
    o.client_id = "dev-1";
    o.username = "dev-1-user";
    o.max_packet = LIMIT;
    o.backoff_min_ms = o.backoff_max_ms = 60000;
    lume_mqtt_cbs cbs = {.on_state = on_state, .on_message = on_message,
                         .on_skipped = on_skipped, .password = on_password};
    f->m = lume_mqtt_new(f->loop, f->ob, &o, &cbs, f, &err);
    if (!f->m)
        goto fail;
    lume_mqtt_add_subscription(f->m, "lume/dev-1/desired", 1);
    *state = f;
    return 0;
fail:
    fprintf(stderr, "setup: %s (%s)\n", err ? err : "failed", strerror(errno));
    free(err);
    *state = f;
    return -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (!f)
        return 0;
    lume_mqtt_free(f->m);
    if (f->fd >= 0)
        close(f->fd);
    if (f->lfd >= 0)
        close(f->lfd);
    lume_outbox_close(f->ob);
    lume_loop_free(f->loop);
    lume_mqtt_parser_free(f->p);
    tu_rm_tree(f->dir);
    free(f);
    lume_log_set_sink(NULL, NULL);
    return 0;
}

/* Start, accept, CONNECT -> CONNACK, SUBSCRIBE -> SUBACK: connected. */
static void connect_session(fx *f)
{
    lume_mqtt_start(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_CONNECT, 0) == 1);
    lume_mqtt_packet ack = {.type = LUME_MQTT_CONNACK};
    fake_send(f, &ack);
    WAIT_FOR(f, lume_mqtt_get_state(f->m) == LUME_MQTT_CONNECTED &&
                    sent_count(f, LUME_MQTT_SUBSCRIBE, 0) == 1);
    fake_suback(f, f->sub_id);
    run_for(f, 20);
}

/* Still the first connection, up, and no protocol error. */
static void assert_still_up(fx *f)
{
    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(lume_mqtt_get_state(f->m), LUME_MQTT_CONNECTED);
    assert_int_equal(f->accepts, 1);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(st.protocol_errors, 0);
    assert_string_equal(lume_mqtt_last_error(f->m), "");
}

/* A PUBLISH of payload_len bytes of 'x' into buf (malloc'd); its size. */
static size_t publish_bytes(uint8_t **buf, const char *topic, int qos, uint16_t id,
                            bool retain, size_t payload_len)
{
    size_t cap = payload_len + strlen(topic) + 16;
    char *pay = malloc(payload_len + 1);
    *buf = malloc(cap);
    assert_non_null(pay);
    assert_non_null(*buf);
    memset(pay, 'x', payload_len);
    lume_mqtt_packet p = {.type = LUME_MQTT_PUBLISH};
    p.publish = (lume_mqtt_publish){.qos = (uint8_t)qos, .packet_id = id, .retain = retain,
                                    .topic = lume_mqtt_cstr(topic), .payload = pay,
                                    .payload_len = payload_len};
    size_t n = encode(&p, *buf, cap);
    free(pay);
    return n;
}

/* ---- oversize PUBLISH -------------------------------------------------------- */

/* A retained QoS 1 document over the limit and a small message after it,
 * in one write of 2 KiB (one read): the first is skipped and acknowledged,
 * the second delivered and acknowledged, the connection stays up. */
static void test_oversize_publish_in_one_read(void **state)
{
    fx *f = *state;
    connect_session(f);
    uint8_t *big, *small;
    size_t nbig = publish_bytes(&big, "lume/dev-1/desired", 1, 257, true, 2000);
    size_t nsmall = publish_bytes(&small, "lume/dev-1/cmd", 1, 258, false, 5);
    memcpy(small + nsmall - 5, "hello", 5);
    uint8_t *both = malloc(nbig + nsmall);
    memcpy(both, big, nbig);
    memcpy(both + nbig, small, nsmall);
    fake_write(f, both, nbig + nsmall);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBACK, 258) == 1);

    assert_int_equal(sent_count(f, LUME_MQTT_PUBACK, 257), 1);    /* acknowledged */
    size_t i257 = 0, i258 = 0;                                    /* in order */
    for (size_t i = 0; i < f->nseen; i++) {
        if (f->seen[i].type == LUME_MQTT_PUBACK && f->seen[i].id == 257) i257 = i;
        if (f->seen[i].type == LUME_MQTT_PUBACK && f->seen[i].id == 258) i258 = i;
    }
    assert_true(i257 < i258);
    assert_int_equal(f->skipped, 1);
    assert_string_equal(f->skip_topic, "lume/dev-1/desired");
    assert_int_equal(f->skip_size, nbig);
    assert_int_equal(f->skip_qos, 1);
    assert_true(f->skip_retain);
    char want[256];
    snprintf(want, sizeof want, "PUBLISH to 'lume/dev-1/desired' of %zu bytes is larger than "
             "net.max_packet (1024 bytes)", nbig);
    assert_string_equal(f->skip_why, want);
    assert_int_equal(f->messages, 1);                             /* the next one parsed */
    assert_string_equal(f->msg_topic, "lume/dev-1/cmd");
    assert_string_equal(f->msg_payload, "hello");

    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(st.skipped_oversize, 1);
    assert_int_equal(st.received, 1);
    assert_int_equal(st.unexpected_acks, 0);
    assert_int_equal(log_count(want), 1);                         /* logged: topic, size, limit */
    assert_int_equal(log_count("ERROR mqtt: PUBLISH to 'lume/dev-1/desired'"), 1);
    run_for(f, 200);
    assert_still_up(f);
    free(big);
    free(small);
    free(both);
}

/* 100 KB over a 1 KiB limit, fed in many reads (the header a byte at a
 * time, then 997-byte pieces): QoS 1 (PUBACK), QoS 0 (nothing to send),
 * QoS 2 (PUBREC, then PUBCOMP for the broker's PUBREL), each followed by a
 * message that must arrive intact. Nothing past the limit is buffered: the
 * parser's buffer is LIMIT bytes. */
static void test_oversize_publish_split_across_reads(void **state)
{
    fx *f = *state;
    connect_session(f);
    static const struct { int qos; uint16_t id; const char *topic; } v[] = {
        {1, 300, "lume/groups/fleet/desired"}, {0, 0, "lume/dev-1/cmd/big"},
        {2, 301, "lume/dev-1/cmd/q2"},
    };
    for (size_t k = 0; k < 3; k++) {
        uint8_t *big, *small;
        size_t nbig = publish_bytes(&big, v[k].topic, v[k].qos, v[k].id, k == 0, 100000);
        size_t nsmall = publish_bytes(&small, "lume/dev-1/cmd/after", 1, (uint16_t)(400 + k),
                                      false, 3);
        fake_write_split(f, big, 40, 1);
        fake_write_split(f, big + 40, nbig - 40, 997);
        fake_write_split(f, small, nsmall, 1);
        WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBACK, (uint16_t)(400 + k)) == 1);
        assert_int_equal(f->skipped, (int)k + 1);
        assert_string_equal(f->skip_topic, v[k].topic);
        assert_int_equal(f->skip_size, nbig);
        assert_int_equal(f->skip_qos, v[k].qos);
        assert_int_equal(f->messages, (int)k + 1);
        assert_string_equal(f->msg_topic, "lume/dev-1/cmd/after");
        assert_string_equal(f->msg_payload, "xxx");
        free(big);
        free(small);
    }
    assert_int_equal(sent_count(f, LUME_MQTT_PUBACK, 300), 1);
    assert_int_equal(sent_count(f, LUME_MQTT_PUBREC, 301), 1);
    assert_int_equal(sent_count(f, LUME_MQTT_PUBACK, 0), 4);     /* 300 and the three after */
    fake_ack(f, LUME_MQTT_PUBREL, 301);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBCOMP, 301) == 1);

    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(st.skipped_oversize, 3);
    assert_int_equal(st.received, 3);
    assert_int_equal(st.unexpected_acks, 0);                      /* the PUBREL was due */
    run_for(f, 200);
    assert_still_up(f);
}

/* A topic longer than the limit cannot be kept: the host gets NULL and its
 * length in the reason; the message is still acknowledged. */
static void test_oversize_publish_topic_not_kept(void **state)
{
    fx *f = *state;
    connect_session(f);
    char topic[1500];
    memset(topic, 'a', sizeof topic - 1);
    topic[sizeof topic - 1] = '\0';
    uint8_t *big;
    size_t nbig = publish_bytes(&big, topic, 1, 77, false, 10);
    fake_write(f, big, nbig);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBACK, 77) == 1);
    assert_int_equal(f->skipped, 1);
    assert_true(f->skip_topic_null);
    assert_non_null(strstr(f->skip_why, "a topic of 1499 bytes (too long to keep)"));
    free(big);
    assert_still_up(f);
}

/* Other packets over the limit, and a remaining length past 4 bytes, are
 * protocol errors: the connection closes with a reason naming them. */
static void test_oversize_suback_closes(void **state)
{
    fx *f = *state;
    connect_session(f);
    uint8_t codes[2000];
    memset(codes, 1, sizeof codes);
    lume_mqtt_packet p = {.type = LUME_MQTT_SUBACK};
    p.suback = (lume_mqtt_suback){.packet_id = 5, .codes = codes, .count = sizeof codes};
    uint8_t buf[4096];
    fake_write(f, buf, encode(&p, buf, sizeof buf));
    WAIT_FOR(f, lume_mqtt_get_state(f->m) == LUME_MQTT_BACKOFF);
    assert_non_null(strstr(lume_mqtt_last_error(f->m),
                           "SUBACK: packet of 2005 bytes exceeds the maximum of 1024"));
    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(st.protocol_errors, 1);
    assert_int_equal(st.skipped_oversize, 0);
}

static void test_bad_remaining_length_closes(void **state)
{
    fx *f = *state;
    connect_session(f);
    fake_write(f, "\x30\xff\xff\xff\xff\x01", 6);
    WAIT_FOR(f, lume_mqtt_get_state(f->m) == LUME_MQTT_BACKOFF);
    assert_non_null(strstr(lume_mqtt_last_error(f->m),
                           "PUBLISH: remaining length continues past 4 bytes"));
    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(st.protocol_errors, 1);
}

/* ---- acknowledgements ---------------------------------------------------------- */

/* Ids nobody used: counted, logged at WARN with type and id, the
 * connection stays up; after ten, a summary instead of a line each. */
static void test_unexpected_acks_are_counted(void **state)
{
    fx *f = *state;
    connect_session(f);
    fake_ack(f, LUME_MQTT_PUBACK, 4242);
    fake_suback(f, 999);
    fake_ack(f, LUME_MQTT_UNSUBACK, 998);
    fake_ack(f, LUME_MQTT_PUBREC, 997);
    fake_ack(f, LUME_MQTT_PUBCOMP, 996);
    fake_ack(f, LUME_MQTT_PUBREL, 995);
    lume_mqtt_stats st;
    WAIT_FOR(f, (lume_mqtt_get_stats(f->m, &st), st.unexpected_acks == 6));
    assert_int_equal(log_count("WARN mqtt: unexpected PUBACK with packet id 4242 from "
                               "127.0.0.1:"), 1);
    assert_int_equal(log_count("unexpected SUBACK with packet id 999"), 1);
    assert_int_equal(log_count("unexpected UNSUBACK with packet id 998"), 1);
    assert_int_equal(log_count("unexpected PUBREC with packet id 997"), 1);
    assert_int_equal(log_count("unexpected PUBCOMP with packet id 996"), 1);
    assert_int_equal(log_count("unexpected PUBREL with packet id 995"), 1);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBCOMP, 995) == 1);     /* 4.3.3: answered anyway */
    run_for(f, 100);
    assert_still_up(f);

    /* a flood: 10 lines in full, then one saying the rest are summarised */
    for (uint16_t id = 5000; id < 5100; id++)
        fake_ack(f, LUME_MQTT_PUBACK, id);
    WAIT_FOR(f, (lume_mqtt_get_stats(f->m, &st), st.unexpected_acks == 106));
    assert_int_equal(log_count("unexpected PUBACK with packet id 50"), 4);
    assert_int_equal(log_count("further unexpected acknowledgements are summarised every "
                               "10 s"), 1);
    assert_int_equal(log_count("WARN mqtt: unexpected "), 10);
    assert_still_up(f);
}

/* Acknowledgements that are due never count: a SUBACK and an UNSUBACK, the
 * PUBACK of an outbox message, PUBACKs of a state document published twice
 * in a row (the first copy superseded while in flight), and the SUBACK of a
 * subscription removed before it arrived. */
static void test_expected_acks_are_not_counted(void **state)
{
    fx *f = *state;
    connect_session(f);

    assert_int_equal(lume_mqtt_add_subscription(f->m, "lume/dev-1/cmd/#", 1), 0);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_SUBSCRIBE, 0) == 2);
    fake_suback(f, f->sub_id);
    assert_int_equal(lume_mqtt_remove_subscription(f->m, "lume/dev-1/cmd/#"), 0);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_UNSUBSCRIBE, 0) == 1);
    fake_ack(f, LUME_MQTT_UNSUBACK, f->seen[f->nseen - 1].id);

    assert_int_equal(lume_mqtt_add_subscription(f->m, "lume/dev-1/x", 0), 0);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_SUBSCRIBE, 0) == 3);
    uint16_t late = f->sub_id;
    assert_int_equal(lume_mqtt_remove_subscription(f->m, "lume/dev-1/x"), 0);
    fake_suback(f, late);                                         /* after the removal */

    assert_int_equal(lume_mqtt_publish_state(f->m, "lume/dev-1/reported", "{\"a\":1}", 7), 0);
    assert_int_equal(lume_mqtt_publish_state(f->m, "lume/dev-1/reported", "{\"a\":2}", 7), 0);
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "lume/dev-1/t", "1", 1, 1,
                                        0, NULL), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    lume_mqtt_kick(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBLISH, 0) == 3);
    for (size_t i = 0; i < f->nseen; i++)
        if (f->seen[i].type == LUME_MQTT_PUBLISH)
            fake_ack(f, LUME_MQTT_PUBACK, f->seen[i].id);
    lume_mqtt_stats st;
    WAIT_FOR(f, (lume_mqtt_get_stats(f->m, &st), st.acked == 1 &&
                 lume_mqtt_state_synced(f->m)));
    run_for(f, 200);
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(st.unexpected_acks, 0);
    assert_int_equal(log_count("unexpected"), 0);
    assert_still_up(f);
}

/* What the host sends from its "connected" callback goes out once, not
 * again with a second packet id (whose acknowledgement nobody would
 * expect): one SUBSCRIBE per filter, one PUBLISH of the state document. */
static void test_sent_from_the_connected_callback_goes_once(void **state)
{
    fx *f = *state;
    f->send_on_connect = true;
    lume_mqtt_start(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_CONNECT, 0) == 1);
    lume_mqtt_packet ack = {.type = LUME_MQTT_CONNACK};
    fake_send(f, &ack);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_SUBSCRIBE, 0) >= 2 &&
                    sent_count(f, LUME_MQTT_PUBLISH, 0) >= 1);
    run_for(f, 100);
    assert_int_equal(sent_count(f, LUME_MQTT_SUBSCRIBE, 0), 2);
    assert_int_equal(sent_count(f, LUME_MQTT_PUBLISH, 0), 1);
    size_t n = f->nseen;
    for (size_t i = 0; i < n; i++) {
        if (f->seen[i].type == LUME_MQTT_SUBSCRIBE)
            fake_suback(f, f->seen[i].id);
        else if (f->seen[i].type == LUME_MQTT_PUBLISH)
            fake_ack(f, LUME_MQTT_PUBACK, f->seen[i].id);
    }
    WAIT_FOR(f, lume_mqtt_state_synced(f->m));
    run_for(f, 100);
    lume_mqtt_stats st;
    lume_mqtt_get_stats(f->m, &st);
    assert_int_equal(st.unexpected_acks, 0);
    assert_still_up(f);
}

/* Invariant 8: what the host sends from its CONNECTED callback (a twin GET,
 * its reported document) follows the SUBSCRIBE for the subscriptions it had
 * before the connection, so a broker that handles one connection's packets
 * in order routes the answer to it. */
static void test_subscriptions_precede_what_the_connected_callback_sends(void **state)
{
    fx *f = *state;
    f->send_on_connect = true;
    lume_mqtt_start(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_CONNECT, 0) == 1);
    lume_mqtt_packet ack = {.type = LUME_MQTT_CONNACK};
    fake_send(f, &ack);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_SUBSCRIBE, 0) >= 2 &&
                    sent_count(f, LUME_MQTT_PUBLISH, 0) >= 1);
    size_t first_sub = f->nseen, first_pub = f->nseen;
    for (size_t i = f->nseen; i-- > 0;) {
        if (f->seen[i].type == LUME_MQTT_SUBSCRIBE)
            first_sub = i;
        if (f->seen[i].type == LUME_MQTT_PUBLISH)
            first_pub = i;
    }
    assert_true(first_sub < first_pub);
}

/* lume_mqtt_reconnect (a SAS token renewal): DISCONNECT, a new connection at
 * once although the backoff is a minute, the new password from the
 * callback, and the unacknowledged message sent again with DUP=1. */
static void test_reconnect_with_fresh_credentials(void **state)
{
    fx *f = *state;
    f->pw = "token-1";
    connect_session(f);
    assert_string_equal(f->connect_pw, "token-1");
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "lume/dev-1/t", "1", 1, 1,
                                        0, NULL), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    lume_mqtt_kick(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBLISH, 0) == 1);
    assert_false(f->publish_dup);
    f->pw = "token-2";
    lume_mqtt_reconnect(f->m, "SAS token renewal");
    WAIT_FOR(f, sent_count(f, LUME_MQTT_DISCONNECT, 0) == 1 &&
                    sent_count(f, LUME_MQTT_CONNECT, 0) == 2);
    assert_int_equal(f->accepts, 2);
    assert_string_equal(f->connect_pw, "token-2");
    lume_mqtt_packet ack = {.type = LUME_MQTT_CONNACK};
    fake_send(f, &ack);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBLISH, 0) == 2);
    assert_true(f->publish_dup);             /* the same message, again */
    for (size_t i = 0; i < f->nseen; i++)
        if (f->seen[i].type == LUME_MQTT_PUBLISH)
            fake_ack(f, LUME_MQTT_PUBACK, f->seen[i].id);
    lume_mqtt_stats st;
    WAIT_FOR(f, (lume_mqtt_get_stats(f->m, &st), st.acked == 1));
    assert_int_equal(st.reconnects, 1);
    lume_outbox_stats os;
    lume_outbox_get_stats(f->ob, &os);
    assert_int_equal(os.depth[LUME_LANE_TELEMETRY], 0); /* acknowledged, gone; nothing lost */
    assert_int_equal(log_count("reconnecting: SAS token renewal"), 1);
}

/* Invariant 9, what an intermittent window waits for: nothing in flight,
 * then a PINGREQ of its own answered. */
static void test_settled_after_acks_and_a_ping(void **state)
{
    fx *f = *state;
    connect_session(f);
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "lume/dev-1/t", "1", 1, 1,
                                        0, NULL), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    lume_mqtt_kick(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBLISH, 0) == 1);
    assert_false(lume_mqtt_settled(f->m));           /* in flight */
    assert_int_equal(sent_count(f, LUME_MQTT_PINGREQ, 0), 0);
    fake_ack(f, LUME_MQTT_PUBACK, f->seen[f->nseen - 1].id);
    lume_mqtt_stats st;
    WAIT_FOR(f, (lume_mqtt_get_stats(f->m, &st), st.acked == 1));
    assert_false(lume_mqtt_settled(f->m));           /* quiet: asks the broker */
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PINGREQ, 0) == 1);
    assert_false(lume_mqtt_settled(f->m));           /* not answered yet */
    run_for(f, 50);
    assert_int_equal(sent_count(f, LUME_MQTT_PINGREQ, 0), 1);   /* one is enough */
    lume_mqtt_packet pong = {.type = LUME_MQTT_PINGRESP};
    fake_send(f, &pong);
    WAIT_FOR(f, lume_mqtt_settled(f->m));
    assert_still_up(f);
}

/* lume_mqtt_stop: "offline"-free goodbye (no status topic here), DISCONNECT,
 * OFFLINE with no retry; the message in flight goes back to the outbox and
 * leaves again with DUP=1 once started. */
static void test_stop_disconnects_and_stays_offline(void **state)
{
    fx *f = *state;
    connect_session(f);
    assert_int_equal(lume_outbox_append(f->ob, LUME_LANE_TELEMETRY, "lume/dev-1/t", "1", 1, 1,
                                        0, NULL), 0);
    assert_int_equal(lume_outbox_commit(f->ob), 0);
    lume_mqtt_kick(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBLISH, 0) == 1);
    lume_mqtt_stop(f->m, "window closed");
    assert_int_equal(lume_mqtt_publish_now(f->m, "x/y", "z", 1, false), -ENOTCONN);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_DISCONNECT, 0) == 1 &&
                    lume_mqtt_get_state(f->m) == LUME_MQTT_OFFLINE);
    assert_string_equal(lume_mqtt_last_error(f->m), "window closed");
    run_for(f, 200);
    assert_int_equal(lume_mqtt_get_state(f->m), LUME_MQTT_OFFLINE);
    assert_int_equal(f->accepts, 1);
    lume_outbox_stats os;
    lume_outbox_get_stats(f->ob, &os);
    assert_int_equal(os.depth[LUME_LANE_TELEMETRY], 1);  /* kept */
    lume_mqtt_start(f->m);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_CONNECT, 0) == 2);
    assert_int_equal(f->accepts, 2);
    lume_mqtt_packet ack = {.type = LUME_MQTT_CONNACK};
    fake_send(f, &ack);
    WAIT_FOR(f, sent_count(f, LUME_MQTT_PUBLISH, 0) == 2);
    assert_true(f->publish_dup);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_oversize_publish_in_one_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_publish_split_across_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversize_publish_topic_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_suback_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_remaining_length_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unexpected_acks_are_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expected_acks_are_not_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_from_the_connected_callback_goes_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_subscriptions_precede_what_the_connected_callback_sends,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_with_fresh_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settled_after_acks_and_a_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_disconnects_and_stays_offline, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name("mqtt_session", tests, NULL, NULL);
    free(g_log);
    return rc;
}
