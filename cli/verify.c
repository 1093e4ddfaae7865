/* cli/verify.c — checking signed messages (net.sign) that a subscriber
 * captured:
 *
 *   lume verify --key KEY [--topic T] FILE|-
 *
 * One message per line, in one of three forms (docs/signing.md):
 *   TOPIC PAYLOAD                  mosquitto_sub -v (topic, one space, payload)
 *   {"topic":..,"payload":..}      a JSON capture; "payload_b64" for bytes, and
 *                                  "properties":{..} for a hub's property bag
 *   PAYLOAD                        the payload alone (mosquitto_sub without -v),
 *                                  with --topic T
 * The signature travels in the topic's property bag (azure) or in the
 * payload's envelope (mqtt); core/trust/msgsign.c does the checking. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <mbedtls/base64.h>

#include "hub.h"
#include "log.h"
#include "msgsign.h"

static const char VERIFY_USAGE[] =
    "usage: lume verify --key KEY [--topic T] FILE|-\n\n"
    "Checks the signatures of messages a lume with net.sign published, as a\n"
    "subscriber captured them, one message a line (FILE, or - for stdin):\n"
    "  TOPIC PAYLOAD             what mosquitto_sub -v prints\n"
    "  {\"topic\":\"..\",\"payload\":\"..\"}  a JSON capture (\"payload_b64\" for bytes,\n"
    "                            \"properties\":{..} for a hub's property bag)\n"
    "  PAYLOAD                   the payload alone, with --topic T\n"
    "KEY is the HMAC secret (base64 text) or the device's P-256 public key PEM.\n"
    "Prints one line per message: ok, or why not (bad signature, wrong key,\n"
    "malformed, seq reused). Exit 0 when every message is valid, 1 when one\n"
    "is not (or there is none), 2 for a usage error. docs/signing.md\n";

/* The seqs seen, with their signatures: a seq used twice for different
 * bytes is a forgery or a replay of another message; the same message
 * twice is a resend (QoS 1 is at least once) and is fine. */
typedef struct seen {
    uint64_t seq;
    char     kid[LUME_KEY_ID_LEN + 1];
    char     sig[LUME_SIG_B64_MAX];
    size_t   line;
} seen;

/* Check one message; its verdict on stdout or stderr. true when valid. */
static bool check_one(const lume_msgverify *v, size_t line, const char *topic,
                      const void *payload, size_t plen, const cJSON *props, seen **tab,
                      size_t *n)
{
    char *err = NULL;
    void *hold = NULL;
    char sig[LUME_SIG_B64_MAX] = "", alg[32] = "", kid[64] = "", seqs[32] = "", ts[32] = "";
    lume_hub_msg hm;
    lume_msgsig m = {0};
    int r = -EINVAL;
    char fixed[LUME_HUB_TOPIC_MAX * 2];
    const char *route = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(props, "route"));
    if (lume_hub_parse_telemetry(topic, &hm) < 0 && route) {
        /* a hub's consumer sees the properties apart from the topic: the
         * route is one of them */
        size_t tl = strlen(topic);
        if (tl < LUME_HUB_TOPIC_MAX) {
            memcpy(fixed, topic, tl);
            memcpy(fixed + tl, "route=", 7);
            lume_hub_urlencode(route, strlen(route), fixed + tl + 6, sizeof fixed - tl - 6);
            topic = fixed;
        }
    }
    if (lume_hub_parse_telemetry(topic, &hm) < 0) {
        lume_set_err(&err, "malformed: '%.200s' is not a lume telemetry topic "
                     "(lume/DEVICE/telemetry/ROUTE, devices/DEVICE/messages/events/...)", topic);
        goto out;
    }
    m.device = hm.device;
    m.route = hm.route;
    m.route_len = hm.route_len;
    /* the signature's fields: a property bag (the capture's "properties",
     * then the topic's), else the envelope in the payload */
    const char *names[] = {"lume-alg", "lume-kid", "lume-seq", "lume-ts", "lume-sig"};
    char *vals[] = {alg, kid, seqs, ts, sig};
    size_t caps[] = {sizeof alg, sizeof kid, sizeof seqs, sizeof ts, sizeof sig};
    int found = 0;
    for (int i = 0; i < 5; i++) {
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(props, names[i]));
        if (p && strlen(p) < caps[i]) {
            strcpy(vals[i], p);
            found++;
        } else if (hm.bag && lume_hub_bag_get(hm.bag, names[i], vals[i], caps[i])) {
            found++;
        }
    }
    if (found == 5) {
        char *end1, *end2;
        unsigned long long sq = strtoull(seqs, &end1, 10);
        long long t = strtoll(ts, &end2, 10);
        if (*end1 || *end2 || !*seqs || !*ts || seqs[0] == '-') {
            lume_set_err(&err, "malformed: lume-seq '%s' or lume-ts '%s' is not a number", seqs,
                         ts);
            goto out;
        }
        m.alg = alg;
        m.key_id = kid;
        m.seq = sq;
        m.ts_ms = t;
        m.payload = payload;
        m.len = plen;
    } else if (found) {
        lume_set_err(&err, "malformed: the property bag has %d of the 5 signature properties "
                     "(lume-alg, lume-kid, lume-seq, lume-ts, lume-sig)", found);
        goto out;
    } else if ((r = lume_msgsig_unwrap(payload, plen, &m, sig, &hold, &err)) < 0) {
        if (hm.bag) { /* a hub with properties: the signature should be there */
            free(err);
            err = NULL;
            lume_set_err(&err, "malformed: not signed: no lume-sig in the properties and no "
                         "envelope in the payload");
        }
        goto out;
    }
    r = lume_msgverify_check(v, &m, sig, &err);
    if (r == 0) {
        for (size_t i = 0; i < *n; i++)
            if ((*tab)[i].seq == m.seq && !strcmp((*tab)[i].kid, m.key_id) &&
                strcmp((*tab)[i].sig, sig)) {
                lume_set_err(&err, "seq reused: seq %" PRIu64 " already signed other bytes on "
                             "line %zu (a replayed or forged message)", m.seq, (*tab)[i].line);
                r = -EEXIST;
                goto out;
            }
        seen *g = realloc(*tab, (*n + 1) * sizeof **tab);
        if (g) {
            *tab = g;
            g[*n].seq = m.seq;
            snprintf(g[*n].kid, sizeof g[*n].kid, "%s", m.key_id);
            snprintf(g[*n].sig, sizeof g[*n].sig, "%s", sig);
            g[*n].line = line;
            (*n)++;
        }
        printf("line %zu: ok: device %s route %.*s seq %" PRIu64 " ts %" PRId64 " (%s, key %s)\n",
               line, m.device, (int)m.route_len, m.route, m.seq, m.ts_ms, m.alg, m.key_id);
    }
out:
    if (r != 0)
        printf("line %zu: INVALID: %s\n", line, err ? err : "?");
    free(err);
    free(hold);
    return r == 0;
}

/* One line of the capture. */
static bool check_line(const lume_msgverify *v, size_t line, char *s, size_t len,
                       const char *topic_opt, seen **tab, size_t *n)
{
    cJSON *j = NULL;
    bool ok = false;
    if (!topic_opt && s[0] == '{' && (j = cJSON_ParseWithLength(s, len)) &&
        cJSON_IsObject(j) && !cJSON_GetObjectItemCaseSensitive(j, "lume_sig")) {
        /* a JSON capture */
        const char *topic = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "topic"));
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "payload"));
        const char *b64 = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(j, "payload_b64"));
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties");
        if (!topic || !!text == !!b64) {
            printf("line %zu: INVALID: malformed: a JSON capture needs \"topic\" and one of "
                   "\"payload\" or \"payload_b64\"\n", line);
        } else if (text) {
            ok = check_one(v, line, topic, text, strlen(text), props, tab, n);
        } else {
            size_t bl = strlen(b64), dl = 0;
            unsigned char *d = malloc(bl + 1);
            if (d && mbedtls_base64_decode(d, bl + 1, &dl, (const unsigned char *)b64, bl) == 0)
                ok = check_one(v, line, topic, d, dl, props, tab, n);
            else
                printf("line %zu: INVALID: malformed: payload_b64 is not base64\n", line);
            free(d);
        }
        cJSON_Delete(j);
        return ok;
    }
    cJSON_Delete(j);
    if (topic_opt)
        return check_one(v, line, topic_opt, s, len, NULL, tab, n);
    char *sp = memchr(s, ' ', len);
    if (!sp) {
        printf("line %zu: INVALID: malformed: expected 'TOPIC PAYLOAD' (mosquitto_sub -v), a "
               "JSON capture, or --topic T with the payload alone\n", line);
        return false;
    }
    *sp = 0;
    return check_one(v, line, s, sp + 1, len - (size_t)(sp + 1 - s), NULL, tab, n);
}

int lume_cmd_verify(int argc, char **argv)
{
    static const struct option longopts[] = {{"key", required_argument, NULL, 'k'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *key = NULL, *topic = NULL;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "k:t:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'k': key = optarg; break;
        case 't': topic = optarg; break;
        case 'h': fputs(VERIFY_USAGE, stdout); return 0;
        default:
            fprintf(stderr, "lume verify: unknown or incomplete option '%s'\n\n%s",
                    argv[optind - 1], VERIFY_USAGE);
            return EXIT_USAGE;
        }
    }
    if (!key || optind != argc - 1) {
        fprintf(stderr, "lume verify: give --key KEY and one FILE (or - for stdin)\n\n%s",
                VERIFY_USAGE);
        return EXIT_USAGE;
    }
    const char *file = argv[optind];
    char *err = NULL;
    lume_msgverify *v = lume_msgverify_open(key, &err);
    if (!v) {
        fprintf(stderr, "lume verify: %s\n", err ? err : key);
        free(err);
        return EXIT_USAGE;
    }
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "lume verify: %s: %s\n", file, strerror(errno));
        lume_msgverify_free(v);
        return EXIT_FAIL;
    }
    char *buf = NULL;
    size_t cap = 0, line = 0, good = 0, bad = 0, n = 0;
    seen *tab = NULL;
    ssize_t len;
    while ((len = getline(&buf, &cap, f)) >= 0) {
        line++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = 0;
        if (len == 0)
            continue;
        if (check_line(v, line, buf, (size_t)len, topic, &tab, &n))
            good++;
        else
            bad++;
    }
    if (f != stdin)
        fclose(f);
    free(buf);
    free(tab);
    printf("%zu valid, %zu invalid (%s key %s)\n", good, bad, lume_msgverify_alg(v),
           lume_msgverify_key_id(v));
    lume_msgverify_free(v);
    if (good + bad == 0) {
        fprintf(stderr, "lume verify: %s holds no message\n", file);
        return EXIT_FAIL;
    }
    return bad ? EXIT_FAIL : 0;
}
