/* cli/ops.c — the operator's commands:
 *
 *   lume keygen [--out PREFIX]                 P-256 key pair PREFIX.key / PREFIX.pub,
 *                                              and its key id
 *   lume sign FILE --key KEY --name N --version V [--seq S] [--target T]
 *             [--rollback] [--url URL] [--soak S] [--manifest]
 *                                              a signed bundle (JSON), or the manifest
 *   lume push (--device ID | --group G) SCRIPT.lua [--name N] [--version V]
 *             [--soak S] [--key KEY [--seq S] [--target T] [--rollback]]
 *                                              build, sign, publish (retained)
 *   lume twin get|set|drift --device ID [KEY=JSON ...]
 *   lume fleet status [--group G] [--json]
 *
 * The broker commands talk to the broker with the device's own session code
 * (core/net/mqtt.c, core/net/net.c, core/net/tls.c): --broker URL, or --config FILE for
 * the net.* settings (credentials, CA, client certificate, TLS version and
 * ciphers: all of them, mapped as `lume run` maps them, by
 * lume_mqtt_opts_from_config; only the client id, the clean session and
 * quicker timeouts are the operator's own). */
#include "host.h"
#include "cli.h"
#include "hub.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "log.h"
#include "manifest.h"
#include "twin.h"

#define INLINE_MAX 4096   /* some hubs cap a twin string at 4 KB: chunk above */
#define CHUNK 4000

typedef struct ops_opts {
    const char *config, *broker, *device, *group, *name, *version, *key, *out, *url, *target;
    int         soak;
    uint64_t    seq;      /* 0: not given */
    bool        json, rollback, manifest;
} ops_opts;

/* ---- a short-lived broker client ------------------------------------------------ */

typedef struct msg {
    char       *topic;
    char       *payload;
    size_t      len;
    struct msg *next;
} msg;

typedef struct client {
    lume_loop   *loop;
    lume_outbox *ob;
    lume_mqtt   *m;
    char         dir[64];
    msg         *msgs;
    int64_t      last_msg_ms;
    bool         connected;
    lume_config  cfg;            /* net.dialect says where documents live */
    bool         have_cfg;
} client;

static void c_state(void *ud, int state, const char *reason)
{
    client *c = ud;
    (void)reason;
    c->connected = state == LUME_MQTT_CONNECTED;
}

static void c_message(void *ud, const char *topic, const void *payload, size_t len, int qos,
                      bool retain)
{
    client *c = ud;
    (void)qos, (void)retain;
    c->last_msg_ms = lume_mono_ns() / LUME_NS_PER_MS;
    for (msg *m = c->msgs; m; m = m->next)
        if (!strcmp(m->topic, topic)) { /* latest wins */
            free(m->payload);
            m->payload = malloc(len + 1);
            memcpy(m->payload, payload, len);
            m->payload[len] = 0;
            m->len = len;
            return;
        }
    msg *m = calloc(1, sizeof *m);
    m->topic = strdup(topic);
    m->payload = malloc(len + 1);
    memcpy(m->payload, payload, len);
    m->payload[len] = 0;
    m->len = len;
    m->next = c->msgs;
    c->msgs = m;
}

static bool is_connected(void *ud) { return ((client *)ud)->connected; }
static bool never(void *ud) { (void)ud; return false; }

static const msg *c_get(client *c, const char *topic)
{
    for (msg *m = c->msgs; m; m = m->next)
        if (!strcmp(m->topic, topic))
            return m;
    return NULL;
}

static int c_open(client *c, const ops_opts *o)
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
    c->cfg = cfg; /* kept (freed by c_close): the dialect's topics */
    c->have_cfg = true;
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
static void c_collect(client *c, const char *const *filters, size_t n, int quiet_ms, int max_ms)
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

static bool synced(void *ud) { return lume_mqtt_state_synced(((client *)ud)->m); }

static int c_publish_retained(client *c, const char *topic, const char *doc)
{
    lume_mqtt_publish_state(c->m, topic, doc, strlen(doc));
    if (!lume_loop_drain(c->loop, 10000, synced, c)) {
        fprintf(stderr, "lume: the broker did not acknowledge %s\n", topic);
        return EXIT_FAIL;
    }
    return 0;
}

static void c_close(client *c)
{
    if (c->have_cfg)
        lume_config_free(&c->cfg);
    if (c->m)
        lume_mqtt_free(c->m);
    if (c->loop)
        lume_loop_free(c->loop);
    if (c->ob)
        lume_outbox_close(c->ob);
    for (msg *m = c->msgs, *nx; m; m = nx) {
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

static int parse(int argc, char **argv, ops_opts *o, const char *usage, int *first)
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
        {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    o->soak = -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:B:d:g:n:v:s:k:o:u:jhQ:T:RM", longopts, NULL)) != -1) {
        switch (ch) {
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

static char *read_all(const char *path, size_t *len)
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

/* ---- keygen, sign ------------------------------------------------------------------- */

static const char KEYGEN_USAGE[] =
    "usage: lume keygen [--out PREFIX]\n\n"
    "Makes an ECDSA P-256 key pair for signing script bundles: PREFIX.key\n"
    "(private, mode 0600) and PREFIX.pub (give it to devices in\n"
    "twin.trusted_keys), and prints the key id that bundles signed with it\n"
    "carry (and that twin.revoked_keys lists). PREFIX defaults to\n"
    "lume-signing. Never overwrites.\n";

int lume_cmd_keygen(int argc, char **argv)
{
    ops_opts o = {0};
    int first, r = parse(argc, argv, &o, KEYGEN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    const char *prefix = o.out ? o.out : "lume-signing";
    char priv[4096], pub[4096];
    snprintf(priv, sizeof priv, "%s.key", prefix);
    snprintf(pub, sizeof pub, "%s.pub", prefix);
    char *err = NULL;
    char id[LUME_KEY_ID_LEN + 1];
    if (lume_ecdsa_keygen(priv, pub, &err) < 0 || lume_key_id_file(pub, id, &err) < 0) {
        fprintf(stderr, "lume keygen: %s\n", err ? err : "failed");
        free(err);
        return EXIT_FAIL;
    }
    printf("private key: %s\npublic key:  %s\nkey id:      %s\n", priv, pub, id);
    return 0;
}

/* The bundle without its manifest fields: version, source (inline up to
 * 4 KB, else chunks of 4000 bytes) or url, sha256. */
static cJSON *bundle_body(const ops_opts *o, const char *src, size_t len, const char *hex,
                          const char *version)
{
    cJSON *bundle = cJSON_CreateObject();
    cJSON_AddStringToObject(bundle, "version", version);
    if (o->url) {
        cJSON_AddStringToObject(bundle, "url", o->url);
    } else if (len <= INLINE_MAX) {
        cJSON_AddStringToObject(bundle, "source", src);
    } else {
        cJSON *chunks = cJSON_AddArrayToObject(bundle, "chunks");
        for (size_t off = 0; off < len; off += CHUNK) {
            size_t n = len - off < CHUNK ? len - off : CHUNK;
            char *piece = strndup(src + off, n);
            cJSON_AddItemToArray(chunks, cJSON_CreateString(piece));
            free(piece);
        }
    }
    cJSON_AddStringToObject(bundle, "sha256", hex);
    return bundle;
}

/* --target T, or dflt: "any" means no target. */
static const char *target_of(const ops_opts *o, const char *dflt)
{
    if (!o->target)
        return dflt;
    return strcmp(o->target, "any") ? o->target : NULL;
}

/* Sign the manifest of bundle (name, its version and sha256, seq, target,
 * o->rollback) with o->key and add the manifest fields and sig to it.
 * 0, or EXIT_FAIL with the reason on stderr. */
static int sign_bundle(const char *cmd, const ops_opts *o, const char *name, uint64_t seq,
                       const char *target, cJSON *bundle)
{
    char id[LUME_KEY_ID_LEN + 1];
    char *err = NULL, *sig = NULL;
    lume_manifest m = {
        .name = name,
        .version = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(bundle, "version")),
        .sha256 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(bundle, "sha256")),
        .seq = seq,
        .target = target,
        .rollback = o->rollback,
        .key_id = id,
    };
    if (lume_key_id_file(o->key, id, &err) < 0 || lume_manifest_sign(&m, o->key, &sig, &err) < 0) {
        fprintf(stderr, "lume %s: %s\n", cmd, err ? err : "cannot sign");
        free(err);
        return EXIT_FAIL;
    }
    int r = lume_manifest_to_bundle(&m, sig, bundle);
    free(sig);
    if (r < 0) {
        fprintf(stderr, "lume %s: out of memory\n", cmd);
        return EXIT_FAIL;
    }
    return 0;
}

static uint64_t now_seq(void) { return (uint64_t)lume_wall_ms(); }

static const char SIGN_USAGE[] =
    "usage: lume sign FILE --key KEY --name N --version V [--seq S] [--target T]\n"
    "                 [--rollback] [--url URL] [--soak S] [--manifest]\n\n"
    "Prints a signed script bundle for FILE as one line of JSON: the value of\n"
    "desired.scripts.N, with version, source (or chunks, or --url URL),\n"
    "sha256, name, seq, target, rollback, key_id, sig (and soak_s with --soak).\n"
    "The signature (ECDSA P-256 with KEY) covers the bundle's manifest: name,\n"
    "version, sha256, seq, target, rollback and key id (docs/bundles.md).\n\n"
    "  --seq S      sequence number, 1 to 999999999999999; default: the time in\n"
    "               ms. A device refuses a seq below the highest it activated\n"
    "               for N, and a seq it saw before with other bytes\n"
    "  --target T   device:ID or group:G: only that device or group accepts it;\n"
    "               default (or 'any'): every device that trusts KEY\n"
    "  --rollback   allow it below the device's seq floor (a deliberate downgrade)\n"
    "  --manifest   print the exact manifest bytes instead, unsigned (KEY may then\n"
    "               be the public key): to sign them with openssl or an HSM:\n"
    "               openssl dgst -sha256 -sign KEY manifest | base64 -w0\n";

int lume_cmd_sign(int argc, char **argv)
{
    ops_opts o = {0};
    int first, r = parse(argc, argv, &o, SIGN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first != argc - 1 || !o.key || !o.name || !o.version) {
        fprintf(stderr, "lume sign: give one FILE, --key KEY, --name N and --version V (the "
                        "signature covers the name and the version)\n\n%s", SIGN_USAGE);
        return EXIT_USAGE;
    }
    size_t len;
    char *data = read_all(argv[first], &len);
    if (!data) {
        fprintf(stderr, "lume sign: cannot read %s: %s\n", argv[first], strerror(errno));
        return EXIT_FAIL;
    }
    char hex[65];
    lume_sha256_hex(data, len, hex);
    uint64_t seq = o.seq ? o.seq : now_seq();
    if (o.manifest) {
        char id[LUME_KEY_ID_LEN + 1], *bytes = NULL, *err = NULL;
        size_t n = 0;
        lume_manifest m = {.name = o.name, .version = o.version, .sha256 = hex, .seq = seq,
                           .target = target_of(&o, NULL), .rollback = o.rollback,
                           .key_id = id};
        free(data);
        if (lume_key_id_file(o.key, id, &err) < 0 || lume_manifest_encode(&m, &bytes, &n, &err) < 0) {
            fprintf(stderr, "lume sign: %s\n", err ? err : "failed");
            free(err);
            return EXIT_FAIL;
        }
        fwrite(bytes, 1, n, stdout);
        free(bytes);
        return 0;
    }
    cJSON *bundle = bundle_body(&o, data, len, hex, o.version);
    free(data);
    r = sign_bundle("sign", &o, o.name, seq, target_of(&o, NULL), bundle);
    if (r == 0) {
        if (o.soak >= 0)
            cJSON_AddNumberToObject(bundle, "soak_s", o.soak);
        char *json = cJSON_PrintUnformatted(bundle);
        printf("%s\n", json);
        free(json);
    }
    cJSON_Delete(bundle);
    return r;
}

/* ---- push, twin --------------------------------------------------------------------- */

static void target_topic(const client *c, const ops_opts *o, char *buf, size_t n)
{
    if (o->device)
        lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_DESIRED, o->device, buf, n);
    else
        lume_hub_operator_topic(&c->cfg, LUME_HUB_GROUP_DESIRED, o->group, buf, n);
}

/* The current document of a desired topic (an empty object when none). */
static cJSON *current_doc(client *c, const char *topic)
{
    const char *f[] = {topic};
    c_collect(c, f, 1, 300, 2000);
    const msg *m = c_get(c, topic);
    cJSON *doc = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        doc = cJSON_CreateObject();
    }
    return doc;
}

static int publish_doc(client *c, const char *topic, cJSON *doc)
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

static const char PUSH_USAGE[] =
    "usage: lume push (--device ID | --group G) SCRIPT.lua [--name N] [--version V]\n"
    "                 [--soak S] [--key KEY [--seq S] [--target T] [--rollback]]\n"
    "                 [--url URL] [--broker URL | --config FILE]\n\n"
    "Builds a bundle from SCRIPT.lua (source inline up to 4 KB, else chunks of\n"
    "4000 bytes; or only --url with the sha256 when the file is served over\n"
    "https), signs its manifest with KEY, and sets desired.scripts.NAME in the\n"
    "device's or group's desired document (retained), bumping its $version.\n"
    "NAME defaults to the file name, V to the first 12 hex digits of the\n"
    "sha256, S (soak) to 10.\n\n"
    "The signature covers name, version, sha256, seq, target, rollback and the\n"
    "key id (docs/bundles.md):\n"
    "  --seq S      default: the time in ms, or one more than the seq of the\n"
    "               bundle NAME now in that document if that is higher\n"
    "  --target T   default: device:ID with --device, group:G with --group;\n"
    "               'any' signs it for every device that trusts KEY\n"
    "  --rollback   sign a deliberate downgrade: devices accept it even below\n"
    "               the highest seq they activated for NAME (each rollback\n"
    "               is accepted once)\n";

int lume_cmd_push(int argc, char **argv)
{
    ops_opts o = {0};
    int first, r = parse(argc, argv, &o, PUSH_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first != argc - 1 || !o.device == !o.group) {
        fprintf(stderr, "lume push: give one SCRIPT.lua and one of --device or --group\n\n%s",
                PUSH_USAGE);
        return EXIT_USAGE;
    }
    if (!o.key && (o.seq || o.target || o.rollback)) {
        fprintf(stderr, "lume push: --seq, --target and --rollback sign a manifest: give --key "
                        "KEY too\n");
        return EXIT_USAGE;
    }
    const char *file = argv[first];
    size_t len;
    char *src = read_all(file, &len);
    if (!src) {
        fprintf(stderr, "lume push: cannot read %s: %s\n", file, strerror(errno));
        return EXIT_FAIL;
    }
    char name[128];
    if (o.name)
        snprintf(name, sizeof name, "%s", o.name);
    else {
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    }
    char hex[65], v[13];
    lume_sha256_hex(src, len, hex);
    snprintf(v, sizeof v, "%.12s", hex);
    cJSON *bundle = bundle_body(&o, src, len, hex, o.version ? o.version : v);
    free(src);
    char id[LUME_KEY_ID_LEN + 1], *err = NULL;
    if (o.key && lume_key_id_file(o.key, id, &err) < 0) { /* before the broker: fail fast */
        fprintf(stderr, "lume push: %s\n", err ? err : "cannot read the key");
        free(err);
        cJSON_Delete(bundle);
        return EXIT_FAIL;
    }

    client c;
    if ((r = c_open(&c, &o))) {
        c_close(&c);
        cJSON_Delete(bundle);
        return r;
    }
    char topic[512];
    target_topic(&c, &o, topic, sizeof topic);
    cJSON *doc = current_doc(&c, topic);
    cJSON *scripts = cJSON_GetObjectItemCaseSensitive(doc, "scripts");
    if (!cJSON_IsObject(scripts)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "scripts");
        scripts = cJSON_AddObjectToObject(doc, "scripts");
    }
    if (o.key) {
        uint64_t seq = o.seq;
        if (!seq) { /* strictly above what this document holds for NAME, even across clocks */
            seq = now_seq();
            const cJSON *prev = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(scripts, name), "seq");
            if (cJSON_IsNumber(prev) && prev->valuedouble >= (double)seq &&
                prev->valuedouble < (double)LUME_SEQ_MAX)
                seq = (uint64_t)prev->valuedouble + 1;
        }
        char dflt[300];
        snprintf(dflt, sizeof dflt, "%s:%s", o.device ? "device" : "group",
                 o.device ? o.device : o.group);
        r = sign_bundle("push", &o, name, seq, target_of(&o, dflt), bundle);
        if (r) {
            cJSON_Delete(bundle);
            cJSON_Delete(doc);
            c_close(&c);
            return r;
        }
    }
    cJSON_AddNumberToObject(bundle, "soak_s", o.soak >= 0 ? o.soak : 10);
    cJSON_DeleteItemFromObjectCaseSensitive(scripts, name);
    cJSON_AddItemToObject(scripts, name, bundle);
    r = publish_doc(&c, topic, doc);
    cJSON_Delete(doc);
    c_close(&c);
    return r;
}

static const char TWIN_USAGE[] =
    "usage: lume twin get (--device ID | --group G)\n"
    "       lume twin set (--device ID | --group G) KEY=JSON ...   (KEY=null deletes)\n"
    "       lume twin drift --device ID\n"
    "       [--broker URL | --config FILE]\n\n"
    "get   prints the desired document(s) and, for a device, what it reported\n"
    "set   changes top-level keys of the desired document and bumps $version\n"
    "drift compares what is desired with what the device reports it applied;\n"
    "      exit 0 when they agree, 1 when they drift\n";

/* Every layer of a device: its groups (from what it reported) and itself. */
static int device_view(client *c, const char *dev, cJSON **reported, cJSON **layers)
{
    char t_rep[300], t_des[300];
    lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_REPORTED, dev, t_rep, sizeof t_rep);
    lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_DESIRED, dev, t_des, sizeof t_des);
    const char *f[] = {t_rep, t_des};
    c_collect(c, f, 2, 300, 3000);
    const msg *m = c_get(c, t_rep);
    *reported = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    *layers = cJSON_CreateObject();
    cJSON *groups = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(*reported, "lume"), "groups");
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        if (!cJSON_IsString(g))
            continue;
        char t[300];
        lume_hub_operator_topic(&c->cfg, LUME_HUB_GROUP_DESIRED, g->valuestring, t, sizeof t);
        const char *gf[] = {t};
        c_collect(c, gf, 1, 300, 2000);
        const msg *gm = c_get(c, t);
        cJSON *doc = gm && gm->len ? cJSON_ParseWithLength(gm->payload, gm->len) : NULL;
        char key[300];
        snprintf(key, sizeof key, "group:%s", g->valuestring);
        cJSON_AddItemToObject(*layers, key, doc ? doc : cJSON_CreateNull());
    }
    m = c_get(c, t_des);
    cJSON *doc = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    cJSON_AddItemToObject(*layers, "device", doc ? doc : cJSON_CreateNull());
    return *reported ? 0 : -ENOENT;
}

/* Layers merged as the device merges them. */
static cJSON *merged(const cJSON *layers)
{
    cJSON *out = cJSON_CreateObject();
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        if (!cJSON_IsObject(l))
            continue;
        cJSON *copy = cJSON_Duplicate(l, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "$version");
        lume_json_merge_patch(&out, copy);
        cJSON_Delete(copy);
    }
    return out;
}

static int drift(const cJSON *layers, const cJSON *reported)
{
    int n = 0;
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(reported, "desired_versions");
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "$version");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(dv, l->string);
        if (cJSON_IsNumber(v) && (!cJSON_IsNumber(rv) || rv->valuedouble != v->valuedouble)) {
            char applied[32] = "none";
            if (cJSON_IsNumber(rv))
                snprintf(applied, sizeof applied, "%.0f", rv->valuedouble);
            printf("drift: layer %s: desired $version %.0f, device applied %s\n", l->string,
                   v->valuedouble, applied);
            n++;
        }
    }
    cJSON *want = merged(layers);
    const cJSON *scripts = cJSON_GetObjectItemCaseSensitive(want, "scripts");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(reported, "scripts");
    const cJSON *b;
    cJSON_ArrayForEach(b, scripts) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, "version");
        char want_v[64];
        if (cJSON_IsString(v))
            snprintf(want_v, sizeof want_v, "%s", v->valuestring);
        else if (cJSON_IsNumber(v))
            snprintf(want_v, sizeof want_v, "%.17g", v->valuedouble);
        else
            continue;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rs, b->string);
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(r, "running");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(r, "error");
        if (!cJSON_IsString(rv) || strcmp(rv->valuestring, want_v) || !cJSON_IsString(st) ||
            strcmp(st->valuestring, "active")) {
            printf("drift: script %s: desired %s, device runs %s (%s%s%s)\n", b->string, want_v,
                   cJSON_IsString(rv) ? rv->valuestring : "nothing",
                   cJSON_IsString(st) ? st->valuestring : "no report",
                   cJSON_IsString(er) ? ": " : "", cJSON_IsString(er) ? er->valuestring : "");
            n++;
        }
    }
    cJSON_Delete(want);
    if (!n)
        printf("in sync\n");
    return n;
}

int lume_cmd_twin(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "get") && strcmp(argv[1], "set") &&
                     strcmp(argv[1], "drift") && strcmp(argv[1], "--help"))) {
        fputs(TWIN_USAGE, stderr);
        return EXIT_USAGE;
    }
    ops_opts o = {0};
    int first, r = parse(argc - 1, argv + 1, &o, TWIN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    const char *sub = argv[1];
    first += 1;
    if (!o.device == !o.group || (!strcmp(sub, "drift") && !o.device)) {
        fprintf(stderr, "lume twin %s: give --device ID%s\n\n%s", sub,
                strcmp(sub, "drift") ? " or --group G" : "", TWIN_USAGE);
        return EXIT_USAGE;
    }
    client c;
    if ((r = c_open(&c, &o))) {
        c_close(&c);
        return r;
    }
    char topic[512];
    target_topic(&c, &o, topic, sizeof topic);
    if (!strcmp(sub, "set")) {
        if (first >= argc) {
            fprintf(stderr, "lume twin set: give KEY=JSON ...\n");
            c_close(&c);
            return EXIT_USAGE;
        }
        cJSON *doc = current_doc(&c, topic);
        for (int i = first; i < argc; i++) {
            char *eq = strchr(argv[i], '=');
            if (!eq || eq == argv[i]) {
                fprintf(stderr, "lume twin set: expected KEY=JSON, got '%s'\n", argv[i]);
                cJSON_Delete(doc);
                c_close(&c);
                return EXIT_USAGE;
            }
            *eq = 0;
            cJSON *v = cJSON_Parse(eq + 1);
            if (!v)
                v = cJSON_CreateString(eq + 1); /* a bare word is a string */
            cJSON_DeleteItemFromObjectCaseSensitive(doc, argv[i]);
            if (cJSON_IsNull(v))
                cJSON_Delete(v); /* removed from the layer */
            else
                cJSON_AddItemToObject(doc, argv[i], v);
        }
        r = publish_doc(&c, topic, doc);
        cJSON_Delete(doc);
        c_close(&c);
        return r;
    }
    if (o.group) { /* get for a group: its one document */
        cJSON *doc = current_doc(&c, topic);
        char *s = cJSON_Print(doc);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(doc);
        c_close(&c);
        return 0;
    }
    cJSON *reported = NULL, *layers = NULL;
    int found = device_view(&c, o.device, &reported, &layers);
    if (!strcmp(sub, "get")) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "layers", layers);
        cJSON_AddItemToObject(out, "desired", merged(layers));
        cJSON_AddItemToObject(out, "reported", reported ? reported : cJSON_CreateNull());
        char *s = cJSON_Print(out);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(out);
        c_close(&c);
        return 0;
    }
    if (found < 0) {
        printf("drift: device %s has reported nothing\n", o.device);
        r = EXIT_FAIL;
    } else {
        r = drift(layers, reported) ? EXIT_FAIL : 0;
    }
    cJSON_Delete(layers);
    cJSON_Delete(reported);
    c_close(&c);
    return r;
}

/* ---- fleet status ------------------------------------------------------------------- */

static const char FLEET_USAGE[] =
    "usage: lume fleet status [--group G] [--json] [--broker URL | --config FILE]\n\n"
    "Reads every device's retained reported document and counts, per group,\n"
    "how many devices run which version of each script in which status.\n";

int lume_cmd_fleet(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "status") && strcmp(argv[1], "--help"))) {
        fputs(FLEET_USAGE, stderr);
        return EXIT_USAGE;
    }
    ops_opts o = {0};
    int first, r = parse(argc - 1, argv + 1, &o, FLEET_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    client c;
    if ((r = c_open(&c, &o))) {
        c_close(&c);
        return r;
    }
    char every[300];
    lume_hub_operator_topic(&c.cfg, LUME_HUB_ALL_REPORTED, NULL, every, sizeof every);
    const char *f[] = {every};
    c_collect(&c, f, 1, 500, 10000);
    /* summary[group][script][version][status] = count; devices per group */
    cJSON *sum = cJSON_CreateObject();
    for (msg *m = c.msgs; m; m = m->next) {
        cJSON *doc = cJSON_ParseWithLength(m->payload, m->len);
        if (!doc)
            continue;
        cJSON *groups = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(doc, "lume"), "groups");
        cJSON *all = cJSON_CreateArray();
        const cJSON *g;
        cJSON_ArrayForEach(g, groups)
            if (cJSON_IsString(g))
                cJSON_AddItemToArray(all, cJSON_CreateString(g->valuestring));
        if (!cJSON_GetArraySize(all))
            cJSON_AddItemToArray(all, cJSON_CreateString("(no group)"));
        cJSON_ArrayForEach(g, all) {
            if (o.group && strcmp(o.group, g->valuestring))
                continue;
            cJSON *grp = cJSON_GetObjectItemCaseSensitive(sum, g->valuestring);
            if (!grp) {
                grp = cJSON_AddObjectToObject(sum, g->valuestring);
                cJSON_AddNumberToObject(grp, "devices", 0);
                cJSON_AddObjectToObject(grp, "scripts");
            }
            cJSON *dn = cJSON_GetObjectItemCaseSensitive(grp, "devices");
            cJSON_SetNumberValue(dn, dn->valuedouble + 1);
            cJSON *gs = cJSON_GetObjectItemCaseSensitive(grp, "scripts");
            const cJSON *s;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "scripts")) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, "version");
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "status");
                if (!cJSON_IsString(st))
                    continue;
                char key[200];
                snprintf(key, sizeof key, "%s %s", cJSON_IsString(v) ? v->valuestring : "-",
                         st->valuestring);
                cJSON *sc = cJSON_GetObjectItemCaseSensitive(gs, s->string);
                if (!sc)
                    sc = cJSON_AddObjectToObject(gs, s->string);
                cJSON *cnt = cJSON_GetObjectItemCaseSensitive(sc, key);
                if (cnt)
                    cJSON_SetNumberValue(cnt, cnt->valuedouble + 1);
                else
                    cJSON_AddNumberToObject(sc, key, 1);
            }
        }
        cJSON_Delete(all);
        cJSON_Delete(doc);
    }
    if (o.json) {
        char *s = cJSON_Print(sum);
        printf("%s\n", s);
        free(s);
    } else {
        const cJSON *g;
        cJSON_ArrayForEach(g, sum) {
            printf("group %s: %.0f devices\n", g->string,
                   cJSON_GetObjectItemCaseSensitive(g, "devices")->valuedouble);
            const cJSON *s;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(g, "scripts")) {
                const cJSON *vs;
                cJSON_ArrayForEach(vs, s)
                    printf("  script %s version %s: %.0f\n", s->string, vs->string,
                           vs->valuedouble);
            }
        }
        if (!cJSON_GetArraySize(sum))
            printf("no devices have reported%s%s\n", o.group ? " in group " : "",
                   o.group ? o.group : "");
    }
    cJSON_Delete(sum);
    c_close(&c);
    return 0;
}
