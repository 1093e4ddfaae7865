/* cli/ops.c — what the operator commands (sign.c, push.c, twin.c, fleet.c)
 * share: their options, a short-lived broker client, the desired documents.
 *
 * The broker commands talk to the broker with the device's own session code
 * (core/net/mqtt.c, core/net/net.c, core/net/tls.c): --broker URL, or --config FILE for
 * the net.* settings (credentials, CA, client certificate, TLS version and
 * ciphers: all of them, mapped as `lume run` maps them, by
 * lume_mqtt_opts_from_config; only the client id, the clean session and
 * quicker timeouts are the operator's own). Where documents live is the
 * dialect's (lume_hub_operator_topic, core/hub/hub.h). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "l_net.h"
#include "lume.h"
#include "config.h"
#include "loop.h"
#include "mqtt.h"
#include "outbox.h"
#include "hub.h"
#include "log.h"
#include "manifest.h"

/* ---- a short-lived broker client ------------------------------------------------ */

static void c_state(void *ud, int state, const char *reason)
{
    lume_ops_client *c = ud;
    (void)reason;
    c->connected = state == LUME_MQTT_CONNECTED;
}

static void c_message(void *ud, const char *topic, const void *payload, size_t len, int qos,
                      bool retain)
{
    lume_ops_client *c = ud;
    (void)qos, (void)retain;
    if (c->tap && c->tap(c->tap_ud, topic, payload, len))
        return; /* the tap keeps it (devices.c's own index) */
    c->last_msg_ms = lume_mono_ns() / LUME_NS_PER_MS;
    for (lume_ops_msg *m = c->msgs; m; m = m->next)
        if (!strcmp(m->topic, topic)) { /* latest wins */
            free(m->payload);
            m->payload = malloc(len + 1);
            memcpy(m->payload, payload, len);
            m->payload[len] = 0;
            m->len = len;
            return;
        }
    lume_ops_msg *m = calloc(1, sizeof *m);
    m->topic = strdup(topic);
    m->payload = malloc(len + 1);
    memcpy(m->payload, payload, len);
    m->payload[len] = 0;
    m->len = len;
    m->next = c->msgs;
    c->msgs = m;
}

static bool is_connected(void *ud) { return ((lume_ops_client *)ud)->connected; }
static bool never(void *ud) { (void)ud; return false; }

const lume_ops_msg *lume_ops_get(lume_ops_client *c, const char *topic)
{
    for (lume_ops_msg *m = c->msgs; m; m = m->next)
        if (!strcmp(m->topic, topic))
            return m;
    return NULL;
}

int lume_ops_connect(lume_ops_client *c, const lume_ops_opts *o)
{
    memset(c, 0, sizeof *c);
    lume_config cfg;
    lume_config_init(&cfg);
    char *err = NULL;
    int lr = o->config ? lume_config_load(&cfg, o->config, &err) : 0;
    if (lr < 0) {
        fprintf(stderr, "lume: %s\n", err);
        free(err);
        lume_config_free(&cfg);
        return lr == -ENOMEM ? EXIT_FAIL : EXIT_USAGE; /* memory: not the file's fault */
    }
    const char *url = o->broker ? o->broker : cfg.net.url;
    if (!url) {
        fprintf(stderr, "lume: which broker? give --broker URL or --config FILE with net.url\n");
        lume_config_free(&cfg);
        return EXIT_USAGE;
    }
    lume_log_set_level(LUME_LOG_ERROR);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > sizeof c->dir - 20)
        tmp = "/tmp";
    snprintf(c->dir, sizeof c->dir, "%s/lume-ops.XXXXXX", tmp);
    if (!mkdtemp(c->dir)) {
        fprintf(stderr, "lume: cannot make a temp dir: %s\n", strerror(errno));
        lume_config_free(&cfg);
        return EXIT_FAIL;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/outbox.db", c->dir);
    c->ob = lume_outbox_open(path, NULL, &err);
    c->loop = c->ob ? lume_loop_new(NULL, &err) : NULL;
    if (!c->loop)
        goto fail;
    /* every net.* setting, as `lume run` maps them; then what makes this
     * an operator's short-lived client rather than the device: its own
     * client id and a clean session (never the device's session), and
     * quick attempts (a person is waiting) */
    lume_mqtt_opts mo;
    lume_mqtt_opts_from_config(&cfg, &mo);
    char id[64];
    snprintf(id, sizeof id, "lume-ops-%d-%lld", (int)getpid(), (long long)(lume_wall_ns() % 100000));
    mo.url = url;
    mo.client_id = id;
    mo.clean_session = true;
    mo.connect_timeout_ms = 5000;
    mo.backoff_min_ms = 200;
    mo.backoff_max_ms = 1000;
    lume_mqtt_cbs cbs = {.on_state = c_state, .on_message = c_message};
    c->m = lume_mqtt_new(c->loop, c->ob, &mo, &cbs, c, &err);
    c->cfg = cfg; /* kept (freed by lume_ops_close): the dialect's topics */
    c->have_cfg = true;
    c->opts = o;
    c->held_version = -1;
    if (!c->m) {
        fprintf(stderr, "lume: %s\n", err ? err : "cannot start");
        free(err);
        return EXIT_FAIL;
    }
    lume_mqtt_start(c->m);
    if (!lume_loop_drain(c->loop, 8000, is_connected, c)) {
        fprintf(stderr, "lume: cannot reach the broker at %s: %s\n", url,
                lume_mqtt_last_error(c->m));
        return EXIT_FAIL;
    }
    return 0;
fail:
    fprintf(stderr, "lume: %s\n", err ? err : "cannot start");
    free(err);
    lume_config_free(&cfg);
    return EXIT_FAIL;
}

/* Subscribe and gather retained messages until quiet_ms pass without one
 * (at most max_ms). */
void lume_ops_collect(lume_ops_client *c, const char *const *filters, size_t n, int quiet_ms, int max_ms)
{
    for (size_t i = 0; i < n; i++)
        lume_mqtt_add_subscription(c->m, filters[i], 1);
    int64_t start = lume_mono_ns() / LUME_NS_PER_MS;
    c->last_msg_ms = start;
    while (1) {
        int64_t now = lume_mono_ns() / LUME_NS_PER_MS;
        if (now - c->last_msg_ms >= quiet_ms || now - start >= max_ms)
            break;
        lume_loop_drain(c->loop, 50, never, NULL);
    }
}

static bool synced(void *ud) { return lume_mqtt_state_synced(((lume_ops_client *)ud)->m); }

static int c_publish_retained(lume_ops_client *c, const char *topic, const char *doc)
{
    lume_mqtt_publish_state(c->m, topic, doc, strlen(doc));
    if (!lume_loop_drain(c->loop, 10000, synced, c)) {
        fprintf(stderr, "lume: the broker did not acknowledge %s\n", topic);
        return EXIT_FAIL;
    }
    return 0;
}

void lume_ops_close(lume_ops_client *c)
{
    if (c->have_cfg)
        lume_config_free(&c->cfg);
    if (c->m)
        lume_mqtt_free(c->m);
    if (c->loop)
        lume_loop_free(c->loop);
    if (c->ob)
        lume_outbox_close(c->ob);
    for (lume_ops_msg *m = c->msgs, *nx; m; m = nx) {
        nx = m->next;
        free(m->topic);
        free(m->payload);
        free(m);
    }
    if (c->dir[0]) {
        char path[160];
        const char *files[] = {"outbox.db", "outbox.db-wal", "outbox.db-shm"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", c->dir, files[i]);
            unlink(path);
        }
        rmdir(c->dir);
    }
}

/* ---- options ------------------------------------------------------------------------ */

int lume_ops_parse(int argc, char **argv, lume_ops_opts *o, const char *usage, int *first)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"broker", required_argument, NULL, 'B'},
        {"device", required_argument, NULL, 'd'}, {"group", required_argument, NULL, 'g'},
        {"name", required_argument, NULL, 'n'},   {"version", required_argument, NULL, 'v'},
        {"soak", required_argument, NULL, 's'},   {"key", required_argument, NULL, 'k'},
        {"out", required_argument, NULL, 'o'},    {"url", required_argument, NULL, 'u'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {"seq", required_argument, NULL, 'Q'},    {"target", required_argument, NULL, 'T'},
        {"rollback", no_argument, NULL, 'R'},     {"manifest", no_argument, NULL, 'M'},
        {"dialect", required_argument, NULL, 'D'},
        {"wait", no_argument, NULL, 'W'},         {"timeout", required_argument, NULL, 't'},
        {"unsigned", no_argument, NULL, 'U'},     {"rings", required_argument, NULL, 'r'},
        {"gate", required_argument, NULL, 'G'},   {"bake", required_argument, NULL, 'b'},
        {"state", required_argument, NULL, 'S'},  {"resume", no_argument, NULL, 'Z'},
        {"dry-run", no_argument, NULL, 'N'},      {"force", no_argument, NULL, 'F'},
        {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    o->soak = -1;
    o->timeout_s = -1;
    o->bake_s = -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:B:d:g:n:v:s:k:o:u:jhQ:T:RMD:Wt:Ur:G:b:S:ZNF", longopts,
                             NULL)) != -1) {
        switch (ch) {
        case 'W': o->wait = true; break;
        case 'U': o->unsigned_ok = true; break;
        case 'Z': o->resume = true; break;
        case 'r': o->rings = optarg; break;
        case 'G': o->gate = optarg; break;
        case 'S': o->state = optarg; break;
        case 't':
        case 'b': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || !*optarg || v < 0 || v > 86400) {
                fprintf(stderr, "lume: --%s: expected seconds 0..86400, got '%s'\n",
                        ch == 't' ? "timeout" : "bake", optarg);
                return EXIT_USAGE;
            }
            *(ch == 't' ? &o->timeout_s : &o->bake_s) = (int)v;
            break;
        }
        case 'c': o->config = optarg; break;
        case 'B': o->broker = optarg; break;
        case 'd': o->device = optarg; break;
        case 'g': o->group = optarg; break;
        case 'n': o->name = optarg; break;
        case 'v': o->version = optarg; break;
        case 'k': o->key = optarg; break;
        case 'o': o->out = optarg; break;
        case 'u': o->url = optarg; break;
        case 'j': o->json = true; break;
        case 'T': o->target = optarg; break;
        case 'R': o->rollback = true; break;
        case 'M': o->manifest = true; break;
        case 'N': o->dry_run = true; break;
        case 'F': o->force = true; break;
        case 'D':
            if (!lume_hub_known(optarg)) {
                fprintf(stderr, "lume: --dialect: no dialect named \"%s\" (there are: %s)\n",
                        optarg, lume_hub_names());
                return EXIT_USAGE;
            }
            o->dialect = optarg;
            break;
        case 'Q': {
            char *end;
            errno = 0;
            unsigned long long q = strtoull(optarg, &end, 10);
            if (*end || !*optarg || optarg[0] == '-' || errno || q < 1 || q > LUME_SEQ_MAX) {
                fprintf(stderr, "lume: --seq: expected a whole number from 1 to %llu, got '%s'\n",
                        (unsigned long long)LUME_SEQ_MAX, optarg);
                return EXIT_USAGE;
            }
            o->seq = q;
            break;
        }
        case 's': {
            char *end;
            long s = strtol(optarg, &end, 10);
            if (*end || s < 0 || s > 86400) {
                fprintf(stderr, "lume: --soak: expected seconds 0..86400, got '%s'\n", optarg);
                return EXIT_USAGE;
            }
            o->soak = (int)s;
            break;
        }
        case 'h': fputs(usage, stdout); return 1;
        default:
            fprintf(stderr, "lume: unknown or incomplete option '%s'\n\n%s", argv[optind - 1], usage);
            return EXIT_USAGE;
        }
    }
    *first = optind;
    /* --device and --group become topic levels: the config's own rules */
    const char *keys[] = {"device_id", "twin.groups"}, *vals[] = {o->device, o->group};
    for (int i = 0; i < 2; i++) {
        if (!vals[i])
            continue;
        lume_config scratch;
        char *err = NULL;
        lume_config_value v = {.kind = LUME_CV_STRING, .str = vals[i]};
        int bad = lume_config_init(&scratch) < 0 ||
                  lume_config_set(&scratch, keys[i], &v, &err) != 0 ||
                  (i == 1 && strchr(vals[i], ','));
        lume_config_free(&scratch);
        if (bad) {
            fprintf(stderr, "lume: --%s: %s\n", i ? "group" : "device",
                    err ? err : "one group name, without ','");
            free(err);
            return EXIT_USAGE;
        }
        free(err);
    }
    return 0;
}

char *lume_ops_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

/* ---- the desired documents ---------------------------------------------------------- */

void lume_ops_target_topic(const lume_ops_client *c, const lume_ops_opts *o, char *buf, size_t n)
{
    if (o->device)
        lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_DESIRED, o->device, buf, n);
    else
        lume_hub_operator_topic(&c->cfg, LUME_HUB_GROUP_DESIRED, o->group, buf, n);
}

/* The $version of layer in a reported document's desired_versions, or -1. */
static int64_t reported_version(const char *json, size_t len, const char *layer)
{
    cJSON *r = cJSON_ParseWithLength(json, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r, "desired_versions"), layer);
    int64_t n = cJSON_IsNumber(v) && v->valuedouble >= 0 ? (int64_t)v->valuedouble : -1;
    cJSON_Delete(r);
    return n;
}

/* The reported topic (filter) of o's target: the device's own, or every
 * device's for a group. 0 when the dialect has none. */
static size_t reported_topic(lume_ops_client *c, const lume_ops_opts *o, char *t, size_t cap)
{
    return o->device ? lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_REPORTED, o->device, t, cap)
                     : lume_hub_operator_topic(&c->cfg, LUME_HUB_ALL_REPORTED, "", t, cap);
}

/* The highest $version the devices of o's target report holding for its
 * layer, from the reported documents gathered: the device's own, or every
 * device's for a group. -1: none reported. */
static int64_t held_version(lume_ops_client *c, const lume_ops_opts *o)
{
    char t[512], layer[300], dev[256];
    int64_t best = -1;
    if (!reported_topic(c, o, t, sizeof t))
        return -1;
    if (o->device) {
        const lume_ops_msg *m = lume_ops_get(c, t);
        return m ? reported_version(m->payload, m->len, "device") : -1;
    }
    snprintf(layer, sizeof layer, "group:%s", o->group);
    for (const lume_ops_msg *m = c->msgs; m; m = m->next)
        if (lume_hub_reported_device(&c->cfg, m->topic, dev, sizeof dev) == 0) {
            int64_t v = reported_version(m->payload, m->len, layer);
            if (v > best)
                best = v;
        }
    return best;
}

cJSON *lume_ops_current_doc(lume_ops_client *c, const char *topic)
{
    char target[512] = "", rep[512] = "";
    if (c->opts && (c->opts->device || c->opts->group))
        lume_ops_target_topic(c, c->opts, target, sizeof target);
    bool mine = *target && !strcmp(target, topic);
    /* the document and what the devices report, gathered at once */
    const char *f[] = {topic, rep};
    lume_ops_collect(c, f, mine && reported_topic(c, c->opts, rep, sizeof rep) ? 2 : 1, 300,
                     c->opts && c->opts->group ? 5000 : 2000);
    const lume_ops_msg *m = lume_ops_get(c, topic);
    cJSON *doc = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        doc = cJSON_CreateObject();
    }
    if (mine) {
        /* a broker restarted without its retained documents must not make
         * the next $version one the devices already passed */
        c->held_version = held_version(c, c->opts);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "$version");
        double have = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if ((double)c->held_version > have) {
            if (have >= 0 || (m && m->len))
                fprintf(stderr, "lume: the retained %s has $version %.0f, but the device%s "
                        "report%s holding %lld: counting from %lld\n", topic, have,
                        c->opts->device ? "" : "s", c->opts->device ? "s" : "",
                        (long long)c->held_version, (long long)c->held_version);
            else
                fprintf(stderr, "lume: the broker holds no %s, but the device%s report%s "
                        "holding $version %lld (the broker lost its retained documents?): "
                        "the rest of that document is gone from the broker; counting from "
                        "%lld\n", topic, c->opts->device ? "" : "s",
                        c->opts->device ? "s" : "", (long long)c->held_version,
                        (long long)c->held_version);
            cJSON_DeleteItemFromObjectCaseSensitive(doc, "$version");
            cJSON_AddNumberToObject(doc, "$version", (double)c->held_version);
        }
    }
    return doc;
}

int lume_ops_publish_doc(lume_ops_client *c, const char *topic, cJSON *doc)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "$version");
    double next = cJSON_IsNumber(v) ? v->valuedouble + 1 : 1;
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "$version");
    cJSON_AddNumberToObject(doc, "$version", next);
    char *json = cJSON_PrintUnformatted(doc);
    int r = c_publish_retained(c, topic, json);
    if (r == 0)
        printf("published %s ($version %.0f, %zu bytes)\n", topic, next, strlen(json));
    free(json);
    return r;
}

/* The broker's document for the device's layer is not the one the device
 * holds: there is none, or its $version is below the device's (the broker
 * lost its retained state, or someone published an old document). A
 * document built on it would remove the bundles the twin runs there that
 * it lacks. Named on stderr (cmd: who asks), true: nothing is published
 * without --force. `lume twin set` and `lume push` ask before they publish. */
bool lume_ops_lost_bundles(lume_ops_client *c, const lume_ops_opts *o, const char *topic,
                           const cJSON *after, const char *cmd)
{
    const lume_ops_msg *m = lume_ops_get(c, topic);
    cJSON *retained = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(retained, "$version");
    long long have = cJSON_IsNumber(rv) ? (long long)rv->valuedouble : -1;
    bool none = !retained;
    cJSON_Delete(retained);
    char t[512];
    if (!o->device || c->held_version < 0 || have >= c->held_version ||
        !lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_REPORTED, o->device, t, sizeof t))
        return false;
    const lume_ops_msg *rm = lume_ops_get(c, t);
    cJSON *rep = rm ? cJSON_ParseWithLength(rm->payload, rm->len) : NULL;
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(after, "scripts"), *e;
    char names[600] = "";
    size_t u = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(rep, "scripts")) {
        const char *origin = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "origin"));
        const char *running = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "running"));
        if (origin && !strcmp(origin, "twin") && running &&
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(want, e->string)) &&
            u < sizeof names - 100)
            u += (size_t)snprintf(names + u, sizeof names - u, "%s%s (version %s)",
                                  u ? ", " : "", e->string, running);
    }
    cJSON_Delete(rep);
    if (!u)
        return false;
    char held_by_broker[64] = "holds no";
    if (!none)
        snprintf(held_by_broker, sizeof held_by_broker, "holds $version %lld of", have);
    fprintf(stderr, "%s: the broker %s %s, but device %s holds $version %lld "
            "(the broker lost its retained documents, or an old one was published). A "
            "document built on the broker's would remove what the twin runs there: %s.\n"
            "nothing published: push those bundles again (lume push) or restate the layer, "
            "or give --force\n", cmd, held_by_broker, topic, o->device,
            (long long)c->held_version, names);
    return true;
}
