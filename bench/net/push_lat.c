/* bench/net/push_lat.c — twin script push latency, for bench/net/run.
 *
 *   push_lat --port P --device D --script FILE [--pushes 100] [--name bench]
 *            [--floor 200] [--gap-ms 10] [--host H] [--wait-s 30]
 *
 * One libmosquitto client (MQTT 3.1.1, QoS 1, TCP_NODELAY, no extra thread:
 * the same loop for everything below), subscribed to lume/D/reported and to a
 * private echo topic.
 *
 *  1. Waits (up to --wait-s) for the device's reported document, which lume
 *     publishes retained when it connects.
 *  2. Floor: --floor round trips through the broker: publish a message to
 *     the echo topic, wait for it to come back. No device involved.
 *  3. Pushes: for n = 1..--pushes, publish the retained desired document
 *       {"$version": n, "scripts": {"<name>": {"version": "n",
 *        "source": "-- push n\n" .. FILE, "sha256": <hex>, "soak_s": 0}}}
 *     to lume/D/desired and wait until a reported document says
 *     scripts.<name>.running == "n" and status == "active" (a status of
 *     "rejected", "rolled_back" or "quarantined" for n fails the push; so
 *     does no answer within 10 s). The time is from just before the publish
 *     to the arrival of that reported document.
 *
 * Prints one JSON object on stdout: {"floor": {n, p50_ms, ...}, "push":
 * {...}, "failed": k, "error": "first failure", "script_bytes", "doc_bytes"}.
 * Exit 1 on a connection error, bad usage, or no reported document. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <mbedtls/sha256.h>
#include <mosquitto.h>
#include <stdbool.h>
#include <unistd.h>

#include "common.h"

static const char *prog = "push_lat";

static struct {
    char     echo_topic[64], reported_topic[256];
    const char *name;
    int      subacks;
    bool     reported_seen;
    /* the message being waited for */
    long     echo_want;
    bool     echo_back;
    char     want_version[32];
    int      outcome;        /* 0 waiting, 1 active, -1 failed */
    char     error[512];
} S;

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted)
{
    (void)m, (void)ud, (void)mid;
    if (n < 1 || granted[0] > 2)
        die(prog, "subscription refused");
    S.subacks++;
}

static const char *str_at(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void on_reported(const char *payload, size_t len)
{
    S.reported_seen = true;
    if (!S.want_version[0] || S.outcome)
        return;
    cJSON *doc = cJSON_ParseWithLength(payload, len);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "scripts"), S.name);
    const char *running = str_at(b, "running"), *status = str_at(b, "status");
    const char *version = str_at(b, "version"), *error = str_at(b, "error");
    if (running && status && !strcmp(running, S.want_version) && !strcmp(status, "active")) {
        S.outcome = 1;
    } else if (version && status && !strcmp(version, S.want_version) &&
               (!strcmp(status, "rejected") || !strcmp(status, "rolled_back") ||
                !strcmp(status, "quarantined"))) {
        S.outcome = -1;
        snprintf(S.error, sizeof S.error, "version %s %s: %s", version, status,
                 error ? error : "(no error given)");
    }
    cJSON_Delete(doc);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    (void)m, (void)ud;
    if (!strcmp(msg->topic, S.reported_topic)) {
        on_reported(msg->payload, (size_t)msg->payloadlen);
    } else if (!strcmp(msg->topic, S.echo_topic)) {
        char buf[32];
        size_t n = (size_t)msg->payloadlen < sizeof buf - 1 ? (size_t)msg->payloadlen : sizeof buf - 1;
        memcpy(buf, msg->payload, n);
        buf[n] = 0;
        if (atol(buf) == S.echo_want)
            S.echo_back = true;
    }
}

/* Run the loop until *flag or `secs` pass; false on timeout. */
static bool loop_until(struct mosquitto *m, const bool *flag, double secs)
{
    double end = mono_s() + secs;
    while (!*flag) {
        int rc = mosquitto_loop(m, 10, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            die(prog, "connection lost: %s", mosquitto_strerror(rc));
        if (mono_s() > end)
            return false;
    }
    return true;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(prog, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n + 4096 > cap && !(buf = realloc(buf, cap = cap * 2 + 8192)))
            die(prog, "out of memory");
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *device = NULL, *script = NULL;
    int port = 0, pushes = 100, floor_n = 200, gap_ms = 10;
    double wait_s = 30;
    S.name = "bench";
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'},   {"port", required_argument, NULL, 'p'},
        {"device", required_argument, NULL, 'd'}, {"script", required_argument, NULL, 's'},
        {"pushes", required_argument, NULL, 'n'}, {"name", required_argument, NULL, 'N'},
        {"floor", required_argument, NULL, 'f'},  {"gap-ms", required_argument, NULL, 'g'},
        {"wait-s", required_argument, NULL, 'w'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'd': device = optarg; break;
        case 's': script = optarg; break;
        case 'n': pushes = atoi(optarg); break;
        case 'N': S.name = optarg; break;
        case 'f': floor_n = atoi(optarg); break;
        case 'g': gap_ms = atoi(optarg); break;
        case 'w': wait_s = atof(optarg); break;
        default: die(prog, "usage: see the comment at the top of bench/net/push_lat.c");
        }
    }
    if (!port || !device || !script || pushes < 1 || floor_n < 1)
        die(prog, "--port, --device and --script are required");
    size_t slen;
    char *src = read_file(script, &slen);
    snprintf(S.reported_topic, sizeof S.reported_topic, "lume/%s/reported", device);
    snprintf(S.echo_topic, sizeof S.echo_topic, "bench/echo/%d", (int)getpid());
    char desired_topic[256];
    snprintf(desired_topic, sizeof desired_topic, "lume/%s/desired", device);

    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "push-lat-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m)
        die(prog, "mosquitto_new failed");
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    mosquitto_message_callback_set(m, on_message);
    int rc = mosquitto_connect(m, host, port, 60);
    if (rc != MOSQ_ERR_SUCCESS)
        die(prog, "cannot connect to %s:%d: %s", host, port, mosquitto_strerror(rc));
    mosquitto_subscribe(m, NULL, S.reported_topic, 1);
    mosquitto_subscribe(m, NULL, S.echo_topic, 1);
    double end = mono_s() + wait_s;
    while (S.subacks < 2 || !S.reported_seen) {
        if ((rc = mosquitto_loop(m, 50, 1)) != MOSQ_ERR_SUCCESS)
            die(prog, "connection lost: %s", mosquitto_strerror(rc));
        if (mono_s() > end)
            die(prog, "no reported document from device %s in %.0f s", device, wait_s);
    }

    /* 2. the floor */
    double *fl = calloc((size_t)floor_n, sizeof *fl), *pl = calloc((size_t)pushes, sizeof *pl);
    if (!fl || !pl)
        die(prog, "out of memory");
    size_t nfl = 0, npl = 0;
    for (int i = 0; i < floor_n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%d", i);
        S.echo_want = i;
        S.echo_back = false;
        double t0 = mono_s();
        mosquitto_publish(m, NULL, S.echo_topic, len, buf, 1, false);
        if (loop_until(m, &S.echo_back, 5))
            fl[nfl++] = mono_s() - t0;
    }

    /* 3. the pushes */
    int failed = 0;
    size_t doc_bytes = 0;
    char first_error[512] = "";
    size_t cap = slen + 64;
    char *body = malloc(cap);
    if (!body)
        die(prog, "out of memory");
    for (int n = 1; n <= pushes; n++) {
        int blen = snprintf(body, cap, "-- push %d\n%s", n, src);
        unsigned char h[32];
        char hex[65];
        mbedtls_sha256_ret((const unsigned char *)body, (size_t)blen, h, 0);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", h[i]);
        snprintf(S.want_version, sizeof S.want_version, "%d", n);
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "$version", n);
        cJSON *b = cJSON_AddObjectToObject(cJSON_AddObjectToObject(doc, "scripts"), S.name);
        cJSON_AddStringToObject(b, "version", S.want_version);
        cJSON_AddStringToObject(b, "source", body);
        cJSON_AddStringToObject(b, "sha256", hex);
        cJSON_AddNumberToObject(b, "soak_s", 0);
        char *json = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
        if (!json)
            die(prog, "out of memory");
        doc_bytes = strlen(json);
        S.outcome = 0;
        double t0 = mono_s();
        rc = mosquitto_publish(m, NULL, desired_topic, (int)doc_bytes, json, 1, true);
        free(json);
        if (rc != MOSQ_ERR_SUCCESS)
            die(prog, "publish: %s", mosquitto_strerror(rc));
        double until = t0 + 10;
        while (!S.outcome && mono_s() < until)
            if ((rc = mosquitto_loop(m, 10, 1)) != MOSQ_ERR_SUCCESS)
                die(prog, "connection lost: %s", mosquitto_strerror(rc));
        double t1 = mono_s();
        if (S.outcome == 1) {
            pl[npl++] = t1 - t0;
        } else {
            failed++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "%s",
                         S.outcome ? S.error : "no active report within 10 s");
        }
        /* let the loop breathe between pushes, answering anything pending */
        double gap_end = mono_s() + gap_ms / 1000.0;
        while (mono_s() < gap_end)
            mosquitto_loop(m, 1, 1);
    }
    S.want_version[0] = 0;
    mosquitto_disconnect(m);
    mosquitto_loop(m, 10, 1);

    printf("{");
    print_lat(stdout, "floor", fl, nfl);
    printf(",");
    print_lat(stdout, "push", pl, npl);
    cJSON *e = cJSON_CreateString(first_error);
    char *es = cJSON_PrintUnformatted(e);
    printf(",\"failed\":%d,\"error\":%s,\"script_bytes\":%zu,\"doc_bytes\":%zu}\n", failed,
           es ? es : "\"\"", slen, doc_bytes);
    free(es);
    cJSON_Delete(e);
    free(body);
    free(src);
    free(fl);
    free(pl);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return 0;
}
