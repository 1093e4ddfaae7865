/* bench/net/mosq_pub.c — the libmosquitto peer publisher of bench/net/run.
 *
 *   mosq_pub --port P --topic T --qos Q --count N [--size 64] [--window 32]
 *            [--host H] [--cafile F] [--backlog B]
 *   mosq_pub --port P --topic T --qos Q --rate HZ --seconds S [...]
 *
 * libmosquitto 2.0, MQTT 3.1.1, clean session, TCP_NODELAY (as lume), the
 * in-flight window (MOSQ_OPT_SEND_MAXIMUM, the same as
 * mosquitto_max_inflight_messages_set for 3.1.1) set to --window. With
 * --cafile, TLS through libmosquitto's OpenSSL with an SSL_CTX of our own
 * (MOSQ_OPT_SSL_CTX): the broker's certificate verified against that CA and
 * the host's address, TLS 1.2 at most (lume's mbedtls 2.28 speaks 1.2 at
 * most) and the cipher suites offered in mbedtls 2.28's default order, so
 * the broker picks the same suite for both. The network runs in
 * libmosquitto's own thread (mosquitto_loop_start), the usual way to use the
 * library.
 *
 * Count mode: N messages of --size bytes, each starting with its sequence
 * number 0..N-1, published as fast as the library takes them, with at most
 * --backlog (default 4096) published but not yet done (QoS 1: acknowledged;
 * QoS 0: written to the socket) so the library's queue stays short.
 * Rate mode: one message every 1/HZ s (clock_nanosleep, absolute deadlines)
 * for S seconds, the payload the wall-clock time it is published ("%.6f").
 *
 * Prints one JSON object on stdout ({"published","done","secs","tls",
 * "cipher"}). Exit 1 on a connection error or bad usage. */
#include <getopt.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "common.h"

static const char *prog = "mosq_pub";

/* The TLS 1.2 suites mbedtls 2.28 offers by default, in its order (as
 * `openssl s_server` lists them when lume connects), less the DHE-RSA/RSA
 * ones no P-256 certificate can use. */
#define MBEDTLS_ORDER                                                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"                      \
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-GCM-SHA256:"   \
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint64_t ndone;
static int connected; /* 0 waiting, 1 up, -1 refused */
static char tlsver[32] = "none", cipher[64] = "none";

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    (void)ud;
    SSL *ssl = mosquitto_ssl_get(m);
    if (ssl) {
        snprintf(tlsver, sizeof tlsver, "%s", SSL_get_version(ssl));
        snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(ssl));
    }
    pthread_mutex_lock(&mu);
    connected = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_publish(struct mosquitto *m, void *ud, int mid)
{
    (void)m, (void)ud, (void)mid;
    pthread_mutex_lock(&mu);
    ndone++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Wait until at most `outstanding` of `published` are not done, or forever
 * when the connection drops (the library reconnects by itself). */
static void wait_done(uint64_t published, uint64_t outstanding)
{
    pthread_mutex_lock(&mu);
    while (published - ndone > outstanding)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *topic = NULL, *cafile = NULL;
    int port = 0, qos = -1, size = 64, window = 32;
    uint64_t count = 0, backlog = 4096;
    double rate = 0, seconds = 0;
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'},    {"port", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},   {"qos", required_argument, NULL, 'q'},
        {"count", required_argument, NULL, 'n'},   {"size", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},  {"cafile", required_argument, NULL, 'c'},
        {"backlog", required_argument, NULL, 'b'}, {"rate", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 'S'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 't': topic = optarg; break;
        case 'q': qos = atoi(optarg); break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 's': size = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'c': cafile = optarg; break;
        case 'b': backlog = strtoull(optarg, NULL, 10); break;
        case 'r': rate = atof(optarg); break;
        case 'S': seconds = atof(optarg); break;
        default: die(prog, "usage: see the comment at the top of bench/net/mosq_pub.c");
        }
    }
    if (!port || !topic || qos < 0 || qos > 1 || (!count && !(rate > 0 && seconds > 0)) ||
        size < 16 || size > 65536 || window < 1 || window > 65535 || backlog < 1)
        die(prog, "--port, --topic, --qos 0|1 and --count N or --rate HZ --seconds S are "
                  "required (--size 16..65536)");

    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "mosq-pub-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m)
        die(prog, "mosquitto_new failed");
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, window);
    if (cafile) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx || !SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) ||
            !SSL_CTX_set_cipher_list(ctx, MBEDTLS_ORDER) ||
            SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1 ||
            !X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), host))
            die(prog, "cannot set up TLS with CA %s", cafile);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
            mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, ctx) != MOSQ_ERR_SUCCESS)
            die(prog, "MOSQ_OPT_SSL_CTX failed");
    }
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_publish_callback_set(m, on_publish);
    int rc = mosquitto_connect(m, host, port, 60);
    if (rc != MOSQ_ERR_SUCCESS)
        die(prog, "cannot connect to %s:%d: %s", host, port, mosquitto_strerror(rc));
    if ((rc = mosquitto_loop_start(m)) != MOSQ_ERR_SUCCESS)
        die(prog, "loop_start: %s", mosquitto_strerror(rc));
    /* libmosquitto retries a failed connection (a TLS error, say) forever:
     * give it 10 s */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&mu);
    while (!connected && pthread_cond_timedwait(&cv, &mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&mu);
    if (connected <= 0)
        die(prog, "no session with %s:%d after 10 s (%s)", host, port,
            connected < 0 ? "CONNACK refused" : "connection or TLS handshake failing");

    char *buf = malloc((size_t)size);
    if (!buf)
        die(prog, "out of memory");
    uint64_t published = 0;
    double t0 = mono_s();
    if (count) {
        memset(buf, 'x', (size_t)size);
        for (uint64_t i = 0; i < count; i++) {
            char num[24];
            int k = snprintf(num, sizeof num, "%010llu", (unsigned long long)i);
            memcpy(buf, num, (size_t)k);
            buf[k] = ' ';
            wait_done(published, backlog - 1);
            if ((rc = mosquitto_publish(m, NULL, topic, size, buf, qos, false)) != MOSQ_ERR_SUCCESS)
                die(prog, "publish: %s", mosquitto_strerror(rc));
            published++;
        }
    } else {
        struct timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        long period_ns = (long)(1e9 / rate);
        uint64_t n = (uint64_t)(rate * seconds);
        for (uint64_t i = 0; i < n; i++) {
            next.tv_nsec += period_ns;
            while (next.tv_nsec >= 1000000000L) {
                next.tv_nsec -= 1000000000L;
                next.tv_sec++;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
                ;
            int len = snprintf(buf, (size_t)size, "%.6f", wall_s());
            if ((rc = mosquitto_publish(m, NULL, topic, len, buf, qos, false)) != MOSQ_ERR_SUCCESS)
                die(prog, "publish: %s", mosquitto_strerror(rc));
            published++;
        }
    }
    wait_done(published, 0);
    double secs = mono_s() - t0;
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    printf("{\"published\":%llu,\"done\":%llu,\"secs\":%.6f,\"tls\":\"%s\",\"cipher\":\"%s\","
           "\"cpu_s\":%.3f}\n",
           (unsigned long long)published, (unsigned long long)ndone, secs, tlsver, cipher, cpu_s());
    free(buf);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return 0;
}
