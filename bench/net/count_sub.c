/* bench/net/count_sub.c — the counting subscriber of bench/net/run.
 *
 *   count_sub --port P --topic T --qos Q --count N [--mode count|rtt]
 *             [--host H] [--cafile F] [--warmup K] [--idle S] [--timeout S]
 *             [--times FILE]
 *
 * Subscribes to T at QoS Q (libmosquitto, MQTT 3.1.1, clean session,
 * TCP_NODELAY), prints "ready" on stdout once the broker has acknowledged the
 * subscription, then:
 *
 *   --mode count  payloads start with a decimal sequence number 0..N-1.
 *                 Counts distinct, duplicate and missing numbers and the
 *                 time from the first to the last message received; stops
 *                 when all N arrived, or after --idle seconds (default 5)
 *                 without a message, or --timeout seconds (default 120).
 *                 With --times, every arrival (duplicates too) is written
 *                 to FILE at the end as "SEQ WALL_S" lines (CLOCK_REALTIME,
 *                 taken on arrival): bench/azure's renewal gaps.
 *   --mode rtt    payloads start with the wall-clock time they were made, in
 *                 seconds ("%.6f"); records now (CLOCK_REALTIME) - that time
 *                 for N messages after skipping the first K (--warmup).
 *
 * Prints one JSON object on stdout at the end. Exit 0 when the run finished
 * (even with missing messages: the JSON says so), 1 on a connection error or
 * bad usage. */
#include <getopt.h>
#include <mosquitto.h>
#include <unistd.h>
#include <stdbool.h>

#include "common.h"

static const char *prog = "count_sub";

static struct {
    int      qos, rtt;
    uint64_t count, warmup;
    bool     subscribed, done;
    /* count mode */
    unsigned char *seen;
    uint64_t received, unique, dups, bad, out_of_order, last_seq;
    double   first, last;
    /* rtt mode */
    double  *lat;
    uint64_t nlat, skipped;
    /* --times */
    struct arrival { uint64_t seq; double wall; } *times;
    size_t   ntimes, cap_times;
    bool     keep_times;
} S;

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    (void)ud;
    if (rc != 0)
        die(prog, "CONNACK refused: %s", mosquitto_connack_string(rc));
    (void)m;
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted)
{
    (void)m, (void)ud, (void)mid;
    if (n < 1 || granted[0] > 2)
        die(prog, "subscription refused");
    if (granted[0] != S.qos)
        die(prog, "the broker granted QoS %d, not %d", granted[0], S.qos);
    S.subscribed = true;
    printf("ready\n");
    fflush(stdout);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    (void)m, (void)ud;
    double now = mono_s();
    char buf[64];
    size_t n = (size_t)msg->payloadlen < sizeof buf - 1 ? (size_t)msg->payloadlen : sizeof buf - 1;
    memcpy(buf, msg->payload, n);
    buf[n] = 0;
    if (S.rtt) {
        double sent = strtod(buf, NULL), wnow = wall_s();
        if (!(sent > 0)) {
            S.bad++;
            return;
        }
        if (S.skipped < S.warmup) {
            S.skipped++;
            return;
        }
        if (S.nlat < S.count)
            S.lat[S.nlat++] = wnow - sent;
        if (S.nlat == S.count)
            S.done = true;
        return;
    }
    char *end;
    unsigned long long seq = strtoull(buf, &end, 10);
    if (end == buf || seq >= S.count) {
        S.bad++;
        return;
    }
    if (S.keep_times) {
        if (S.ntimes == S.cap_times) {
            size_t cap = S.cap_times ? S.cap_times * 2 : 65536;
            struct arrival *t = realloc(S.times, cap * sizeof *t);
            if (!t)
                die(prog, "out of memory");
            S.times = t;
            S.cap_times = cap;
        }
        S.times[S.ntimes++] = (struct arrival){seq, wall_s()};
    }
    if (!S.received)
        S.first = now;
    S.last = now;
    S.received++;
    if (S.received > 1 && seq != S.last_seq + 1)
        S.out_of_order++;
    S.last_seq = seq;
    if (S.seen[seq / 8] & (1u << (seq % 8))) {
        S.dups++;
    } else {
        S.seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
        if (++S.unique == S.count)
            S.done = true;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *topic = NULL, *cafile = NULL, *mode = "count";
    const char *times = NULL;
    int port = 0;
    double idle = 5, timeout = 120;
    S.qos = -1;
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'},   {"port", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},  {"qos", required_argument, NULL, 'q'},
        {"count", required_argument, NULL, 'n'},  {"mode", required_argument, NULL, 'm'},
        {"cafile", required_argument, NULL, 'c'}, {"warmup", required_argument, NULL, 'w'},
        {"idle", required_argument, NULL, 'i'},   {"timeout", required_argument, NULL, 'T'},
        {"times", required_argument, NULL, 'W'},  {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 't': topic = optarg; break;
        case 'q': S.qos = atoi(optarg); break;
        case 'n': S.count = strtoull(optarg, NULL, 10); break;
        case 'm': mode = optarg; break;
        case 'c': cafile = optarg; break;
        case 'w': S.warmup = strtoull(optarg, NULL, 10); break;
        case 'i': idle = atof(optarg); break;
        case 'T': timeout = atof(optarg); break;
        case 'W': times = optarg; S.keep_times = true; break;
        default: die(prog, "usage: see the comment at the top of bench/net/count_sub.c");
        }
    }
    if (!port || !topic || S.qos < 0 || S.qos > 1 || !S.count)
        die(prog, "--port, --topic, --qos 0|1 and --count are required");
    S.rtt = !strcmp(mode, "rtt");
    if (!S.rtt && strcmp(mode, "count"))
        die(prog, "--mode must be count or rtt");
    if (S.rtt)
        S.lat = calloc(S.count, sizeof *S.lat);
    else
        S.seen = calloc(S.count / 8 + 1, 1);
    if (!S.lat && !S.seen)
        die(prog, "out of memory");

    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "count-sub-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m)
        die(prog, "mosquitto_new failed");
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (cafile && mosquitto_tls_set(m, cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS)
        die(prog, "mosquitto_tls_set failed");
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    mosquitto_message_callback_set(m, on_message);
    int rc = mosquitto_connect(m, host, port, 60);
    if (rc != MOSQ_ERR_SUCCESS)
        die(prog, "cannot connect to %s:%d: %s", host, port, mosquitto_strerror(rc));
    if ((rc = mosquitto_subscribe(m, NULL, topic, S.qos)) != MOSQ_ERR_SUCCESS)
        die(prog, "subscribe: %s", mosquitto_strerror(rc));

    double start = mono_s(), last_seen = 0;
    uint64_t last_count = 0;
    while (!S.done) {
        rc = mosquitto_loop(m, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            die(prog, "connection lost: %s", mosquitto_strerror(rc));
        double now = mono_s();
        uint64_t got = S.rtt ? S.nlat + S.skipped : S.received;
        if (got != last_count) {
            last_count = got;
            last_seen = now;
        }
        if (got && now - last_seen > idle)
            break;
        if (now - start > timeout)
            break;
    }
    mosquitto_disconnect(m);
    mosquitto_loop(m, 100, 1);

    if (S.rtt) {
        printf("{\"mode\":\"rtt\",\"expected\":%llu,\"bad\":%llu,\"cpu_s\":%.3f,",
               (unsigned long long)S.count, (unsigned long long)S.bad, cpu_s());
        print_lat(stdout, "lat", S.lat, S.nlat);
        printf("}\n");
    } else {
        double secs = S.last - S.first;
        printf("{\"mode\":\"count\",\"expected\":%llu,\"received\":%llu,\"unique\":%llu,"
               "\"dups\":%llu,\"missing\":%llu,\"out_of_order\":%llu,\"bad\":%llu,"
               "\"secs\":%.6f,\"rate\":%.1f,\"cpu_s\":%.3f}\n",
               (unsigned long long)S.count, (unsigned long long)S.received,
               (unsigned long long)S.unique, (unsigned long long)S.dups,
               (unsigned long long)(S.count - S.unique), (unsigned long long)S.out_of_order,
               (unsigned long long)S.bad, secs, secs > 0 ? (double)S.unique / secs : 0.0,
               cpu_s());
    }
    if (times) {
        FILE *f = fopen(times, "w");
        if (!f)
            die(prog, "cannot write %s: %s", times, strerror(errno));
        for (size_t i = 0; i < S.ntimes; i++)
            fprintf(f, "%llu %.6f\n", (unsigned long long)S.times[i].seq, S.times[i].wall);
        fclose(f);
    }
    free(S.times);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    free(S.lat);
    free(S.seen);
    return 0;
}
