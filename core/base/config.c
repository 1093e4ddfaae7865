/* core/base/config.c — the field table and the one place values are checked. */
#include "config.h"
#include "hub.h"
#include "net.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"
#include "mqtt_codec.h"

#define F(k, t, member, lo, hi, d, doc) \
    {k, t, offsetof(lume_config, member), lo, hi, d, doc}

static const lume_config_field fields[] = {
    F("device_id", LUME_CFG_STRING, device_id, 1, 128, "host name",
      "device identity: letters, digits and -._: (used in topics)"),
    F("board", LUME_CFG_STRING, board, 1, 4096, "sim",
      "board definition: boards_dir/NAME.lua, or the path of a board file (with a / or .lua)"),
    F("boards_dir", LUME_CFG_STRING, boards_dir, 1, 4096, "boards",
      "where board files live (default: ./boards if there, else DATADIR/boards)"),
    F("scripts_dir", LUME_CFG_STRING, scripts_dir, 1, 4096, "scripts",
      "edge scripts: every *.lua here runs in its own sandbox (default: ./scripts if there, "
      "else DATADIR/scripts)"),
    F("stdlib_dir", LUME_CFG_STRING, stdlib_dir, 1, 4096, "stdlib",
      "where require finds lume's Lua modules (default: ./stdlib if there, else "
      "DATADIR/stdlib)"),
    F("store", LUME_CFG_STRING, store, 1, 4096, "var",
      "directory for outbox.db, state.db and the control socket lume.sock"),
    F("log_level", LUME_CFG_LOGLEVEL, log_level, 0, 3, "info", "debug, info, warn or error"),
    F("status_interval_ms", LUME_CFG_INT, status_interval_ms, 0, 3600000, "1000",
      "live status line period in ms; 0 turns it off"),
    F("malloc_arenas", LUME_CFG_INT, malloc_arenas, 0, 64, "0 (glibc: 8 per core)",
      "lume run: malloc arenas of the process (M_ARENA_MAX); 1 saves ~130 KiB per thread that "
      "allocates, for low-rate devices (docs/sampler.md, Idle cost); an embedder's process is "
      "left alone"),
    F("sqlite_lean", LUME_CFG_BOOL, sqlite_lean, 0, 1, "false",
      "lume run: SQLite without its per-connection preallocations (a 20-page cache block "
      "and lookaside, ~0.5 MiB over lume's five connections), for low-rate devices; an "
      "embedder's process is left alone"),
    F("watch_scripts", LUME_CFG_BOOL, watch_scripts, 0, 1, "true",
      "reload a script when its file is saved (inotify)"),
    F("scripts_local_override", LUME_CFG_BOOL, scripts_local_override, 0, 1, "false",
      "a dev board's setting: a local file edited under the name of a script the twin "
      "manages replaces the twin's version (reported as origin local) instead of being "
      "refused with a reported error"),
    F("sandbox.memory_limit", LUME_CFG_SIZE, sandbox.memory_limit, 64 * 1024,
      1024.0 * 1024 * 1024, "1MiB", "memory cap of one script's Lua state"),
    F("sandbox.cpu_budget_ms", LUME_CFG_INT, sandbox.cpu_budget_ms, 1, 60000, "50",
      "CPU time one handler call may take before it is stopped"),
    F("sandbox.load_budget_ms", LUME_CFG_INT, sandbox.load_budget_ms, 1, 600000, "1000",
      "time a script's top level may take when it loads"),
    F("sandbox.store_quota", LUME_CFG_SIZE, sandbox.store_quota, 0,
      1024.0 * 1024 * 1024, "256KiB", "bytes of lume.store per script"),
    F("sandbox.max_errors_per_s", LUME_CFG_INT, sandbox.max_errors_per_s, 0, 1000000, "0",
      "handler errors per second after which a script is stopped; 0 = never"),
    F("sandbox.max_overruns", LUME_CFG_INT, sandbox.max_overruns, 0, 1000000, "5",
      "CPU-budget overruns per minute after which a script is stopped; 0 = never"),
    F("sandbox.hang_limit_ms", LUME_CFG_INT, sandbox.hang_limit_ms, 100, 3600000, "10000",
      "wall-clock time one script activity may hold the loop; past it lume logs the script, "
      "ends the process for its supervisor to restart, and quarantines the script"),
    F("outbox.commit_interval_ms", LUME_CFG_INT, outbox.commit_interval_ms, 1, 60000, "50",
      "pending messages are committed at least this often"),
    F("outbox.commit_batch", LUME_CFG_INT, outbox.commit_batch, 1, 1000000, "1000",
      "a batch this large is committed at once"),
    F("outbox.max_messages", LUME_CFG_INT64, outbox.max_messages, 0, 1e12, "1000000",
      "cap on queued messages (0 = none); bulk, then telemetry dropped first"),
    F("outbox.max_bytes", LUME_CFG_SIZE, outbox.max_bytes, 0, 1e15, "64MiB",
      "cap on queued bytes (0 = none)"),
    F("outbox.synchronous", LUME_CFG_SYNC, outbox.synchronous_full, 0, 1, "normal",
      "SQLite synchronous mode: normal (survives a crash of lume) or full (also power loss)"),
    F("outbox.durable_lanes", LUME_CFG_LANES, outbox.durable_lanes, 0, 0, "{\"alarm\"}",
      "lanes whose lume.publish returns only once the message is committed (about 0.1 ms "
      "each); other lanes are committed within commit_interval_ms"),
    F("outbox.inline_checkpoints", LUME_CFG_BOOL, outbox.inline_checkpoints, 0, 1, "false",
      "checkpoint the WAL on the committer's commits instead of on a thread of its own: one "
      "thread and one SQLite connection less, for low-rate devices (each checkpoint then "
      "delays a commit by a few ms)"),
    F("sampler.realtime", LUME_CFG_BOOL, sampler.realtime, 0, 1, "false",
      "run the sampler thread SCHED_FIFO (needs CAP_SYS_NICE; logged fallback)"),
    F("sampler.priority", LUME_CFG_INT, sampler.priority, 1, 99, "50", "SCHED_FIFO priority"),
    F("sampler.lock_memory", LUME_CFG_BOOL, sampler.lock_memory, 0, 1, "false",
      "mlockall the process (needs CAP_IPC_LOCK; logged fallback)"),
    F("sampler.cpu", LUME_CFG_INT, sampler.cpu, -1, 1023, "-1",
      "pin the sampler thread to this CPU and the rest of lume to the others; -1 = no pinning"),
    F("sampler.ring_size", LUME_CFG_INT64, sampler.ring_size, 16, 1 << 24, "8192",
      "samples the sampler can queue for the loop"),
    F("sampler.latency_ms", LUME_CFG_INT, sampler.latency_ms, 0, 60000, "100",
      "longest a reading waits before the loop is woken for it, unless its sensor sets "
      "latency_ms in the board; readings within it share one wake-up; 0 = wake at once"),
    F("console.listen", LUME_CFG_STRING, console.listen, 1, 300, "none (off)",
      "serve the web console at ADDRESS:PORT (\"127.0.0.1:8080\"); an address other than "
      "loopback needs console.token"),
    F("console.token", LUME_CFG_STRING, console.token, 8, 256, "none",
      "access token the console asks for (?token=, a cookie or Authorization: Bearer)"),
    F("console.dir", LUME_CFG_STRING, console.dir, 1, 4096, "console",
      "the console's page and scripts (default: ./console if there, else DATADIR/console)"),
    F("net.url", LUME_CFG_STRING, net.url, 1, 1024, "none (offline)",
      "broker: mqtt://host[:1883], mqtts://host[:8883], ws://host[:80]/path or wss://host[:443]/path"),
    F("net.dialect", LUME_CFG_STRING, net.dialect, 1, 32, "mqtt",
      "the hub's topics and twin protocol: \"mqtt\" (lume's own topics on any MQTT broker) "
      "or \"azure\" (Azure IoT Hub's device MQTT API, docs/azure.md)"),
    F("net.client_id", LUME_CFG_STRING, net.client_id, 1, 128, "device_id",
      "MQTT client id (well-formed UTF-8)"),
    F("net.username", LUME_CFG_STRING, net.username, 1, 1024, "none",
      "MQTT user name (well-formed UTF-8)"),
    F("net.password", LUME_CFG_STRING, net.password, 1, 4096, "none", "MQTT password"),
    F("net.ca_file", LUME_CFG_STRING, net.ca_file, 1, 4096, "system store",
      "PEM CA bundle that signs the broker's certificate"),
    F("net.cert_file", LUME_CFG_STRING, net.cert_file, 1, 4096, "none",
      "client certificate for mutual TLS"),
    F("net.key_file", LUME_CFG_STRING, net.key_file, 1, 4096, "none", "its private key"),
    F("net.server_name", LUME_CFG_STRING, net.server_name, 1, 255, "the URL's host",
      "name the broker's certificate must carry (and SNI)"),
    F("net.tls_min_version", LUME_CFG_STRING, net.tls_min_version, 3, 3, "1.2",
      "lowest TLS version accepted"),
    F("net.ciphers", LUME_CFG_STRING, net.ciphers, 1, 4096, "library defaults",
      "colon-separated cipher suites (mqtts://)"),
    F("net.tls_insecure", LUME_CFG_BOOL, net.tls_insecure, 0, 1, "false",
      "skip certificate verification (never in production)"),
    F("net.keepalive_s", LUME_CFG_INT, net.keepalive_s, 0, 65535, "30",
      "MQTT keepalive; a silent broker is dropped after 1.5x"),
    F("net.window", LUME_CFG_INT, net.window, 1, 1024, "32", "QoS 1 messages in flight"),
    F("net.backoff_min_ms", LUME_CFG_INT, net.backoff_min_ms, 10, 3600000, "500",
      "shortest wait before reconnecting"),
    F("net.backoff_max_ms", LUME_CFG_INT, net.backoff_max_ms, 10, 3600000, "30000",
      "longest wait before reconnecting (exponential backoff, full jitter)"),
    F("net.stable_ms", LUME_CFG_INT, net.stable_ms, 0, 3600000, "10000",
      "a connection that stayed up this long resets the backoff to its minimum"),
    F("net.connect_timeout_ms", LUME_CFG_INT, net.connect_timeout_ms, 100, 600000, "10000",
      "time to open the connection and get CONNACK"),
    F("net.max_packet", LUME_CFG_SIZE, net.max_packet, 64, 268435460.0, "256KiB",
      "largest packet accepted from the broker"),
    F("net.connection_string", LUME_CFG_STRING, net.connection_string, 1, 4096, "none",
      "azure: \"HostName=<hub host>;DeviceId=<id>;SharedAccessKey=<base64 key>\" (sets the hub "
      "host, the device id and the SAS key)"),
    F("net.sas_key", LUME_CFG_STRING, net.sas_key, 1, 1024, "none",
      "azure: the device's base64 shared access key (SAS tokens are made from it)"),
    F("net.sas_key_file", LUME_CFG_STRING, net.sas_key_file, 1, 4096, "none",
      "azure: a file holding the base64 shared access key"),
    F("net.sas_ttl_s", LUME_CFG_INT, net.sas_ttl_s, 2, 31536000, "900",
      "azure: SAS token lifetime in seconds; the device reconnects with a fresh one at 80 %"),
    F("net.hub_host", LUME_CFG_STRING, net.hub_host, 1, 255, "the URL's host",
      "azure: the hub's host name, as in the SAS token and user name ({hub}.azure-devices.net)"),
    F("net.module_id", LUME_CFG_STRING, net.module_id, 1, 128, "none",
      "azure: a module identity (client id device/module)"),
    F("net.model_id", LUME_CFG_STRING, net.model_id, 1, 512, "none",
      "azure: IoT Plug and Play model id, sent in the user name"),
    F("net.dps.endpoint", LUME_CFG_STRING, net.dps.endpoint, 1, 1024,
      "mqtts://global.azure-devices-provisioning.net:8883",
      "azure DPS: the provisioning service's MQTT endpoint"),
    F("net.dps.id_scope", LUME_CFG_STRING, net.dps.id_scope, 1, 64, "none",
      "azure DPS: the ID scope (0ne...); set, the device asks DPS which hub it belongs to"),
    F("net.dps.registration_id", LUME_CFG_STRING, net.dps.registration_id, 1, 128, "device_id",
      "azure DPS: the registration id (with X.509, the certificate's CN)"),
    F("net.dps.symmetric_key", LUME_CFG_STRING, net.dps.symmetric_key, 1, 1024, "none",
      "azure DPS: an individual enrollment's base64 key"),
    F("net.dps.symmetric_key_file", LUME_CFG_STRING, net.dps.symmetric_key_file, 1, 4096,
      "none", "azure DPS: a file holding an individual enrollment's base64 key"),
    F("net.dps.group_key", LUME_CFG_STRING, net.dps.group_key, 1, 1024, "none",
      "azure DPS: a group enrollment's base64 key; the device key is "
      "base64(HMAC-SHA256(group key, registration id))"),
    F("net.dps.resolve", LUME_CFG_LIST, net.dps.resolve, 0, 16, "none",
      "azure DPS: {\"hub.azure-devices.net=10.0.0.5:8883\"}: reach an assigned hub at "
      "another address (a private endpoint), or a whole URL (\"hub=mqtt://127.0.0.1:1883\")"),
    F("net.sign.alg", LUME_CFG_STRING, net.sign.alg, 1, 32, "none (unsigned)",
      "sign every published message: \"hmac-sha256\" or \"ecdsa-p256\" (docs/signing.md)"),
    F("net.sign.key_file", LUME_CFG_STRING, net.sign.key_file, 1, 4096, "none",
      "hmac-sha256: a base64 secret (openssl rand -base64 32); ecdsa-p256: a P-256 private "
      "key PEM"),
    F("net.clean_session", LUME_CFG_BOOL, net.clean_session, 0, 1, "false",
      "false: the broker keeps subscriptions and queued QoS 1 messages across reconnects"),
    F("twin.groups", LUME_CFG_LIST, twin.groups, 0, 16, "none",
      "the device's groups, merged in this order before its own desired document: "
      "{\"fleet\", \"site-a\", \"ring-pilot\"}; each 1..128 bytes of UTF-8 without "
      "'+', '#' or '/'"),
    F("twin.trusted_keys", LUME_CFG_LIST, twin.trusted_keys, 0, 16, "none",
      "PEM public keys (P-256) whose signatures on script bundles are accepted"),
    F("twin.revoked_keys", LUME_CFG_LIST, twin.revoked_keys, 0, 64, "none",
      "key ids (16 hex digits, as lume keygen prints) whose signatures are refused, "
      "even when the key is still in twin.trusted_keys"),
    F("twin.allow_unsigned", LUME_CFG_BOOL, twin.allow_unsigned, 0, 1, "false",
      "accept script bundles without a signature"),
    F("twin.max_script_bytes", LUME_CFG_SIZE, twin.max_script_bytes, 1, 4194304, "256KiB",
      "largest script bundle accepted"),
    F("twin.max_publish_rate", LUME_CFG_INT, twin.max_publish_rate, 1, 10000000, "1000",
      "soak gate: a new script publishing faster than this per second is rolled back"),
    F("twin.fetch_timeout_ms", LUME_CFG_INT, twin.fetch_timeout_ms, 100, 600000, "15000",
      "time to fetch a bundle's url"),
    F("twin.fetch_ca_file", LUME_CFG_STRING, twin.fetch_ca_file, 1, 4096, "net.ca_file",
      "CA bundle for https bundle urls"),
};
#undef F

#define NFIELDS (sizeof fields / sizeof fields[0])
static const char *const sections[] = {"sandbox", "outbox", "sampler", "net", "net.dps", "twin",
                                      "console", "net.sign"};

const lume_config_field *lume_config_field_at(size_t i)
{
    return i < NFIELDS ? &fields[i] : NULL;
}

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

bool lume_board_is_path(const char *board)
{
    size_t n = strlen(board);
    return strchr(board, '/') || (n > 4 && !strcmp(board + n - 4, ".lua"));
}

int lume_config_init(lume_config *c)
{
    memset(c, 0, sizeof *c);
    char host[256] = "lume-device";
    if (gethostname(host, sizeof host) != 0 || !host[0])
        strcpy(host, "lume-device");
    host[sizeof host - 1] = 0;
    c->device_id = xstrdup(host);
    c->board = xstrdup("sim");
    c->boards_dir = lume_data_default("boards");
    c->scripts_dir = lume_data_default("scripts");
    c->stdlib_dir = lume_data_default("stdlib");
    c->console.dir = lume_data_default("console");
    c->store = xstrdup("var");
    c->source = xstrdup("(defaults)");
    c->log_level = LUME_LOG_INFO;
    c->status_interval_ms = 1000;
    c->watch_scripts = true;
    c->sandbox.memory_limit = 1024 * 1024;
    c->sandbox.cpu_budget_ms = 50;
    c->sandbox.load_budget_ms = 1000;
    c->sandbox.store_quota = 256 * 1024;
    c->sandbox.max_errors_per_s = 0;
    c->sandbox.max_overruns = 5;
    c->sandbox.hang_limit_ms = 10000;
    lume_outbox_opts_default(&c->outbox);
    c->sampler.priority = 50;
    c->sampler.ring_size = 8192;
    c->sampler.latency_ms = 100;
    c->sampler.cpu = -1;
    c->net.keepalive_s = 30;
    c->net.window = 32;
    c->net.backoff_min_ms = 500;
    c->net.backoff_max_ms = 30000;
    c->net.connect_timeout_ms = 10000;
    c->net.stable_ms = 10000;
    c->net.max_packet = 256 * 1024;
    c->net.sas_ttl_s = 900;
    c->twin.max_script_bytes = 256 * 1024;
    c->twin.max_publish_rate = 1000;
    c->twin.fetch_timeout_ms = 15000;
    if (!c->device_id || !c->board || !c->boards_dir || !c->scripts_dir || !c->stdlib_dir ||
        !c->console.dir || !c->store || !c->source) {
        lume_config_free(c);
        return -ENOMEM;
    }
    return 0;
}

void lume_config_free(lume_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].type == LUME_CFG_STRING || fields[i].type == LUME_CFG_LIST) {
            char **p = (char **)((char *)c + fields[i].offset);
            free(*p);
            *p = NULL;
        }
    free(c->source);
    c->source = NULL;
    if (c->ext && c->ext_free)
        c->ext_free(c->ext);
    c->ext = NULL;
    if (c->heap)
        free(c);
}

int lume_config_copy(lume_config *dst, const lume_config *src)
{
    *dst = *src;
    dst->heap = false;
    bool ok = true;
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].type == LUME_CFG_STRING || fields[i].type == LUME_CFG_LIST) {
            char **p = (char **)((char *)dst + fields[i].offset);
            const char *orig = *p;
            *p = orig ? strdup(orig) : NULL;
            if (orig && !*p)
                ok = false;
        }
    dst->source = src->source ? strdup(src->source) : NULL;
    if (src->source && !dst->source)
        ok = false;
    dst->ext = src->ext ? src->ext_copy(src->ext) : NULL;
    if (src->ext && !dst->ext)
        ok = false;
    if (!ok) {
        lume_config_free(dst);
        memset(dst, 0, sizeof *dst);
        return -ENOMEM;
    }
    return 0;
}

/* Levenshtein distance, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static const char *nearest_key(const char *key)
{
    const char *best = NULL;
    size_t bestd = 4;
    for (size_t i = 0; i < NFIELDS; i++) {
        size_t dd = edit_distance(key, fields[i].key);
        if (dd < bestd) {
            bestd = dd;
            best = fields[i].key;
        }
    }
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++) {
        size_t dd = edit_distance(key, sections[i]);
        if (dd < bestd) {
            bestd = dd;
            best = sections[i];
        }
    }
    return best;
}

/* How a value looks in a message. */
static void describe(const lume_config_value *v, char *buf, size_t n)
{
    switch (v->kind) {
    case LUME_CV_BOOL: snprintf(buf, n, "%s", v->b ? "true" : "false"); break;
    case LUME_CV_NUMBER: snprintf(buf, n, "%.17g", v->num); break;
    case LUME_CV_STRING: lume_quote(buf, n, v->str, v->len ? v->len : strlen(v->str), 60); break;
    case LUME_CV_TABLE: snprintf(buf, n, "a table"); break;
    default: snprintf(buf, n, "a %s", v->type_name ? v->type_name : "value"); break;
    }
}

/* "512", "512B", "64KiB", "4MiB", "1GiB", "2MB" (MB = MiB, as users mean). */
static int parse_size(const char *s, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || errno || !isfinite(x))
        return -1;
    while (*end == ' ')
        end++;
    double mul = 1;
    if (!*end || !strcasecmp(end, "b"))
        mul = 1;
    else if (!strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib"))
        mul = 1024;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib"))
        mul = 1024.0 * 1024;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib"))
        mul = 1024.0 * 1024 * 1024;
    else
        return -1;
    *out = floor(x * mul);
    return 0;
}

#define GROUP_NAME_MAX 128 /* bytes; like device_id, a level of the topics lume uses */

/* A group name (one entry of twin.groups): 0, or -EINVAL with *err naming
 * the value and the rule it breaks. */
static int check_group_name(const char *key, const char *name, size_t n, char **err)
{
    char q[320], why[96];
    lume_quote(q, sizeof q, name, n, 60);
    if (n == 0) {
        *err = lume_strdupf("%s: \"\" is not a valid group name: it must not be empty", key);
        return -EINVAL;
    }
    if (n > GROUP_NAME_MAX) {
        *err = lume_strdupf("%s: %s is not a valid group name: at most %d bytes, got %zu", key,
                            q, GROUP_NAME_MAX, n);
        return -EINVAL;
    }
    if (memchr(name, '+', n) || memchr(name, '#', n) || memchr(name, '/', n)) {
        *err = lume_strdupf("%s: %s is not a valid group name: no '+', '#' or '/' (they are "
                            "MQTT wildcards and topic separators)", key, q);
        return -EINVAL;
    }
    if (lume_mqtt_check_string(name, n, why, sizeof why) != LUME_MQTT_NAME_OK) {
        *err = lume_strdupf("%s: %s is not a valid group name: it must be well-formed UTF-8 "
                            "(it is a level of the topic lume/groups/<group>/desired), and "
                            "it %s", key, q, why);
        return -EINVAL;
    }
    return 0;
}

static bool valid_device_id(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.' || *p == ':'))
            return false;
    return true;
}

int lume_config_set(lume_config *c, const char *key, const lume_config_value *v, char **err)
{
    char got[160];
    describe(v, got, sizeof got);

    const lume_config_field *f = NULL;
    for (size_t i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].key, key)) {
            f = &fields[i];
            break;
        }
    if (!f) {
        for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
            if (!strcmp(sections[i], key)) {
                if (v->kind == LUME_CV_TABLE)
                    return 1;
                *err = lume_strdupf("%s: expected a table, got %s", key, got);
                return -EINVAL;
            }
        const char *near = nearest_key(key);
        if (near)
            *err = lume_strdupf("%s: unknown key (did you mean '%s'?)", key, near);
        else
            *err = lume_strdupf("%s: unknown key", key);
        return -ENOENT;
    }

    void *slot = (char *)c + f->offset;
    double num = v->num;
    size_t slen = 0;
    if (v->kind == LUME_CV_STRING) {
        slen = v->len ? v->len : strlen(v->str);
        const char *nul = memchr(v->str, 0, slen);
        if (nul) {
            *err = lume_strdupf("%s: %s holds a NUL byte (at byte %zu): a configuration "
                                "string cannot hold one", key, got, (size_t)(nul - v->str));
            return -EINVAL;
        }
    }
    switch (f->type) {
    case LUME_CFG_STRING: {
        if (v->kind != LUME_CV_STRING)
            goto wrong_type;
        size_t n = slen;
        if (n < (size_t)f->min || n > (size_t)f->max) {
            *err = lume_strdupf("%s: expected a string of %g to %g bytes, got %s", key,
                                f->min, f->max, got);
            return -EINVAL;
        }
        if (!strcmp(key, "device_id") && !valid_device_id(v->str)) {
            *err = lume_strdupf("%s: expected letters, digits and -._: only (the device id is "
                                "a level of every topic lume uses: no '+', '#' or '/', no "
                                "spaces), got %s", key, got);
            return -EINVAL;
        }
        if (!strcmp(key, "net.client_id") || !strcmp(key, "net.username")) {
            char why[96];
            if (lume_mqtt_check_string(v->str, n, why, sizeof why) != LUME_MQTT_NAME_OK) {
                *err = lume_strdupf("%s: %s is not a valid MQTT %s: it must be well-formed "
                                    "UTF-8 (MQTT 3.1.1, 1.5.3), and it %s", key, got,
                                    key[4] == 'c' ? "client id" : "user name", why);
                return -EINVAL;
            }
        }
        if (!strcmp(key, "board") && !lume_board_is_path(v->str) &&
            (v->str[0] == '.' || n > 64)) {
            *err = lume_strdupf("%s: expected a board name (a file in boards_dir, at most 64 "
                                "bytes) or the path of a board file (with a / or ending in "
                                ".lua), got %s", key, got);
            return -EINVAL;
        }
        char *dup = strdup(v->str);
        if (!dup) {
            *err = lume_strdupf("out of memory");
            return -ENOMEM;
        }
        free(*(char **)slot);
        *(char **)slot = dup;
        return 0;
    }
    case LUME_CFG_LIST: {
        if (v->kind != LUME_CV_STRING)
            goto wrong_type;
        /* items: non-empty names, at most max of them */
        size_t items = 0;
        bool groups = !strcmp(key, "twin.groups");
        const char *p = v->str;
        while (*p) {
            size_t n = strcspn(p, ",");
            if (groups && check_group_name(key, p, n, err) < 0)
                return -EINVAL;
            bool ok = n > 0 && n < 4096;
            for (size_t i = 0; ok && i < n; i++)
                ok = p[i] != ' ';
            if (!ok) {
                *err = lume_strdupf("%s: expected a list of names or paths, got %s", key, got);
                return -EINVAL;
            }
            items++;
            p += n;
            if (*p == ',')
                p++;
        }
        if (items > (size_t)f->max) {
            *err = lume_strdupf("%s: at most %.0f entries, got %zu", key, f->max, items);
            return -EINVAL;
        }
        if (!strcmp(key, "net.dps.resolve")) {
            for (p = v->str; *p;) {
                size_t n = strcspn(p, ",");
                const char *eq = memchr(p, '=', n);
                const char *colon = eq ? memchr(eq, ':', n - (size_t)(eq - p)) : NULL;
                if (!eq || eq == p || !colon || colon == eq + 1 || colon + 1 >= p + n) {
                    *err = lume_strdupf("%s: entry \"%.*s\" is not \"hub host=address:port\"",
                                        key, (int)(n < 200 ? n : 200), p);
                    return -EINVAL;
                }
                p += n;
                if (*p == ',')
                    p++;
            }
        }
        if (!strcmp(key, "twin.revoked_keys")) {
            for (p = v->str; *p;) {
                size_t n = strcspn(p, ",");
                bool ok = n == LUME_KEY_ID_LEN;
                for (size_t i = 0; ok && i < n; i++)
                    ok = (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f');
                if (!ok) {
                    *err = lume_strdupf("%s: expected key ids of 16 lower-case hex digits "
                                        "(lume keygen prints them), got \"%.*s\" in %s", key,
                                        (int)n, p, got);
                    return -EINVAL;
                }
                p += n;
                if (*p == ',')
                    p++;
            }
        }
        char *dup = strdup(v->str);
        if (!dup) {
            *err = lume_strdupf("out of memory");
            return -ENOMEM;
        }
        free(*(char **)slot);
        *(char **)slot = dup;
        return 0;
    }
    case LUME_CFG_LANES: {
        int mask = 0;
        if (v->kind == LUME_CV_TABLE) /* {}: no lane */
            ;
        else if (v->kind != LUME_CV_STRING)
            goto wrong_type;
        else if (strcmp(v->str, "none"))
            for (const char *p = v->str; *p;) {
                size_t n = strcspn(p, ",");
                char name[16];
                int lane = -1;
                if (n < sizeof name) {
                    memcpy(name, p, n);
                    name[n] = 0;
                    lane = lume_lane_parse(name);
                }
                if (lane < 0) {
                    *err = lume_strdupf("%s: expected lane names (\"alarm\", \"telemetry\", "
                                        "\"bulk\"), got \"%.*s\" in %s", key, (int)n, p, got);
                    return -EINVAL;
                }
                mask |= 1 << lane;
                p += n;
                if (*p == ',')
                    p++;
            }
        *(int *)slot = mask;
        return 0;
    }
    case LUME_CFG_BOOL:
        if (v->kind != LUME_CV_BOOL)
            goto wrong_type;
        *(bool *)slot = v->b;
        return 0;
    case LUME_CFG_LOGLEVEL: {
        int lvl = v->kind == LUME_CV_STRING ? lume_log_level_parse(v->str) : -1;
        if (lvl < 0) {
            *err = lume_strdupf("%s: expected \"debug\", \"info\", \"warn\" or \"error\", got %s",
                                key, got);
            return -EINVAL;
        }
        *(int *)slot = lvl;
        return 0;
    }
    case LUME_CFG_SYNC:
        if (v->kind == LUME_CV_STRING && !strcasecmp(v->str, "normal"))
            *(bool *)slot = false;
        else if (v->kind == LUME_CV_STRING && !strcasecmp(v->str, "full"))
            *(bool *)slot = true;
        else {
            *err = lume_strdupf("%s: expected \"normal\" or \"full\", got %s", key, got);
            return -EINVAL;
        }
        return 0;
    case LUME_CFG_SIZE:
        if (v->kind == LUME_CV_STRING) {
            if (parse_size(v->str, &num) < 0) {
                *err = lume_strdupf("%s: expected a size in bytes like 65536, \"512KiB\" or "
                                    "\"4MiB\", got %s", key, got);
                return -EINVAL;
            }
        } else if (v->kind != LUME_CV_NUMBER)
            goto wrong_type;
        /* fall through */
    case LUME_CFG_INT:
    case LUME_CFG_INT64:
        if (f->type != LUME_CFG_SIZE && v->kind != LUME_CV_NUMBER)
            goto wrong_type;
        if (!isfinite(num) || num != floor(num)) {
            *err = lume_strdupf("%s: expected a whole number, got %s", key, got);
            return -EINVAL;
        }
        if (num < f->min || num > f->max) {
            *err = lume_strdupf("%s: expected %s between %.0f and %.0f, got %s", key,
                                f->type == LUME_CFG_SIZE ? "a size in bytes" : "a number",
                                f->min, f->max, got);
            return -EINVAL;
        }
        if (f->type == LUME_CFG_INT)
            *(int *)slot = (int)num;
        else
            *(int64_t *)slot = (int64_t)num;
        return 0;
    }
wrong_type: {
    static const char *const want[] = {
        [LUME_CFG_STRING] = "a string", [LUME_CFG_BOOL] = "true or false",
        [LUME_CFG_INT] = "a number", [LUME_CFG_INT64] = "a number",
        [LUME_CFG_SIZE] = "a size", [LUME_CFG_LOGLEVEL] = "a log level",
        [LUME_CFG_SYNC] = "\"normal\" or \"full\"", [LUME_CFG_LIST] = "a list of names",
        [LUME_CFG_LANES] = "a list of lane names"};
    *err = lume_strdupf("%s: expected %s, got %s", key, want[f->type], got);
    return -EINVAL;
}
}

int lume_config_check(const lume_config *c, char **err)
{
    if (c->net.backoff_min_ms > c->net.backoff_max_ms) {
        *err = lume_strdupf("net.backoff_min_ms (%d) is above net.backoff_max_ms (%d)",
                            c->net.backoff_min_ms, c->net.backoff_max_ms);
        return -EINVAL;
    }
    if (!c->net.cert_file != !c->net.key_file) {
        *err = lume_strdupf("net.cert_file and net.key_file go together (mutual TLS needs both)");
        return -EINVAL;
    }
    if (c->net.password && !c->net.username) {
        *err = lume_strdupf("net.password needs net.username (MQTT 3.1.1 sends a password only "
                            "with a user name)");
        return -EINVAL;
    }
    if (c->net.tls_min_version && strcmp(c->net.tls_min_version, "1.2") &&
        strcmp(c->net.tls_min_version, "1.3")) {
        *err = lume_strdupf("net.tls_min_version: expected \"1.2\" or \"1.3\", got \"%s\"",
                            c->net.tls_min_version);
        return -EINVAL;
    }
    if (!c->net.sign.alg != !c->net.sign.key_file) {
        *err = lume_strdupf("net.sign.alg and net.sign.key_file go together (a signature needs "
                            "both the algorithm and the key)");
        return -EINVAL;
    }
    if (c->net.sign.alg && strcmp(c->net.sign.alg, "hmac-sha256") &&
        strcmp(c->net.sign.alg, "ecdsa-p256")) {
        *err = lume_strdupf("net.sign.alg: expected \"hmac-sha256\" or \"ecdsa-p256\", got "
                            "\"%s\"", c->net.sign.alg);
        return -EINVAL;
    }
    if (c->net.dialect && !lume_hub_check(c->net.dialect, err))
        return -EINVAL;
    if (c->net.url) {
        const char *u = c->net.url;
        if (strncmp(u, "mqtt://", 7) && strncmp(u, "mqtts://", 8) && strncmp(u, "ws://", 5) &&
            strncmp(u, "wss://", 6)) {
            *err = lume_strdupf("net.url: expected mqtt://, mqtts://, ws:// or wss://, got \"%s\"",
                                u);
            return -EINVAL;
        }
#ifdef LUME_NO_WS
        if (!strncmp(u, "ws://", 5) || !strncmp(u, "wss://", 6)) {
            *err = lume_strdupf("net.url \"%s\": %s", u, LUME_NO_WS_MSG);
            return -EINVAL;
        }
#endif
    }
    if (c->console.listen) {
#ifdef LUME_NO_CONSOLE
        *err = lume_strdupf("console.listen: %s", LUME_NO_CONSOLE_MSG);
        return -EINVAL;
#endif
        char host[256];
        int port;
        if (lume_console_addr_parse(c->console.listen, host, sizeof host, &port) < 0) {
            *err = lume_strdupf("console.listen: expected ADDRESS:PORT (\"127.0.0.1:8080\", "
                                "\"[::1]:8080\"), got \"%s\"", c->console.listen);
            return -EINVAL;
        }
        if (!lume_console_addr_loopback(host) && !c->console.token) {
            *err = lume_strdupf("console.listen: %s is not a loopback address: set "
                                "console.token (an access token) or listen on 127.0.0.1",
                                c->console.listen);
            return -EINVAL;
        }
    }
    if (c->sandbox.cpu_budget_ms > c->sandbox.load_budget_ms * 10) {
        *err = lume_strdupf("sandbox.cpu_budget_ms (%d) is more than ten times "
                            "sandbox.load_budget_ms (%d): raise load_budget_ms",
                            c->sandbox.cpu_budget_ms, c->sandbox.load_budget_ms);
        return -EINVAL;
    }
    if (c->sandbox.hang_limit_ms <= c->sandbox.cpu_budget_ms ||
        c->sandbox.hang_limit_ms <= c->sandbox.load_budget_ms) {
        *err = lume_strdupf("sandbox.hang_limit_ms (%d) must be more than sandbox.cpu_budget_ms "
                            "(%d) and sandbox.load_budget_ms (%d): it is the last resort "
                            "behind the budgets", c->sandbox.hang_limit_ms,
                            c->sandbox.cpu_budget_ms, c->sandbox.load_budget_ms);
        return -EINVAL;
    }
    return 0;
}

int lume_console_addr_parse(const char *s, char *host, size_t cap, int *port)
{
    const char *colon, *h = s;
    size_t hl;
    if (*s == '[') { /* [v6]:port */
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= cap)
        return -EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 1 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return 0;
}

bool lume_console_addr_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}
