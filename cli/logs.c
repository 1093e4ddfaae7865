/* cli/logs.c — a device's remote log lines (runtime/remote_log.c sends them
 * while desired log.remote asks):
 *
 *   lume logs --device ID [--follow] [--since WHEN] [--json]
 *
 * Without --follow: the last lines the device sent, from the retained
 * document the dialect keeps of them (mqtt: lume/ID/logs/recent, the last
 * 50), then exit. With --follow: those, then every line as it arrives on
 * the stream (lume/ID/logs) until SIGINT or SIGTERM. A line is shown once:
 * a stream line already shown from the retained document (same seq, same
 * time) is skipped. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hub.h"

static const char LOGS_USAGE[] =
    "usage: lume logs --device ID [--follow] [--since WHEN] [--json]\n"
    "                 [--broker URL | --config FILE]\n"
    "\n"
    "Shows the log lines a device streams while its desired log.remote asks\n"
    "for them, e.g.\n"
    "  lume twin set --device ID 'log={\"remote\":{\"level\":\"warn\",\"for_s\":600}}'\n"
    "One line per log line: time, level, source, message; a line after lines\n"
    "the device dropped (its rate limit: 20 lines/s, 50 at once) says how many.\n"
    "\n"
    "  --device ID    the device\n"
    "  --follow       after the last lines kept, every new line as it arrives,\n"
    "                 until interrupted (Ctrl-C)\n"
    "  --since WHEN   only lines from then on: 30s, 10m, 2h, 1d ago, or a time\n"
    "                 2026-11-30T13:00:00Z\n"
    "  --json         each line as the device sent it (one JSON object a line)\n"
    "\n"
    "Without --follow it prints the last lines the device sent (it keeps its\n"
    "last 50 retained at the broker, also after the stream stopped) and exits.\n"
    "Exit codes: 0 ok, 1 the broker cannot be reached, 2 usage error or a\n"
    "dialect whose logs lume cannot read (azure: they are telemetry with the\n"
    "property lume-kind=log, read them where the hub's telemetry goes).\n";

typedef struct logs_ctx {
    const char *stream, *recent;
    int64_t     since_ms;     /* -1: all */
    bool        json;
    uint64_t    last_seq;     /* the newest line shown ... */
    int64_t     last_ms;      /* ... and its time */
    unsigned    shown;
} logs_ctx;

static volatile sig_atomic_t g_stop;
static void on_stop(int sig) { (void)sig; g_stop = 1; }

/* "2026-11-30T13:00:00.123Z" (fraction optional) → ms since the epoch, or -1. */
static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    if (*p == '.') {
        char *end;
        long frac = strtol(p + 1, &end, 10);
        int digits = (int)(end - (p + 1));
        if (digits < 1)
            return -1;
        while (digits > 3) { frac /= 10; digits--; }
        while (digits < 3) { frac *= 10; digits++; }
        ms = (int)frac;
        p = end;
    }
    if (strcmp(p, "Z") && *p)
        return -1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* --since: 30s, 10m, 2h, 1d ago, or a time. ms since the epoch, or -1. */
static int64_t parse_since(const char *s)
{
    char *end;
    errno = 0;
    double n = strtod(s, &end);
    if (end != s && !errno && n >= 0 && strlen(end) == 1 && strchr("smhd", *end)) {
        double mult = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 86400;
        return lume_wall_ms() - (int64_t)(n * mult * 1000);
    }
    return parse_time(s);
}

/* One line object as the device sent it: printed unless filtered or shown. */
static void show(logs_ctx *x, const cJSON *o)
{
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "time");
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(o, "level");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "msg");
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(o, "dropped");
    if (!cJSON_IsString(t) || !cJSON_IsString(msg))
        return;
    int64_t ms = parse_time(t->valuestring);
    uint64_t s = cJSON_IsNumber(seq) ? (uint64_t)seq->valuedouble : 0;
    if (ms < x->since_ms)
        return;
    if (x->shown && ms <= x->last_ms && s <= x->last_seq) /* shown from the recent document */
        return;
    x->last_ms = ms;
    x->last_seq = s;
    x->shown++;
    if (x->json) {
        char *j = cJSON_PrintUnformatted(o);
        printf("%s\n", j ? j : "{}");
        free(j);
        return;
    }
    char level[8] = "?";
    if (cJSON_IsString(lv))
        for (size_t i = 0; i < sizeof level - 1 && lv->valuestring[i]; i++)
            level[i] = (char)(lv->valuestring[i] >= 'a' && lv->valuestring[i] <= 'z'
                                  ? lv->valuestring[i] - 32 : lv->valuestring[i]);
    printf("%s %-5s %s: %s", t->valuestring, level,
           cJSON_IsString(src) ? src->valuestring : "?", msg->valuestring);
    if (cJSON_IsNumber(dr) && dr->valuedouble > 0)
        printf("  (%.0f lines dropped before this one)", dr->valuedouble);
    putchar('\n');
}

/* The client's tap: every line as it arrives; false keeps the message in
 * the client's latest-per-topic list as usual. */
static bool on_msg(void *ud, const char *topic, const char *payload, size_t len)
{
    logs_ctx *x = ud;
    cJSON *doc = cJSON_ParseWithLength(payload, len);
    if (!strcmp(topic, x->recent)) {
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(doc, "lines"))
            show(x, l);
    } else if (!strcmp(topic, x->stream) && cJSON_IsObject(doc)) {
        show(x, doc);
    }
    cJSON_Delete(doc);
    fflush(stdout);
    return false;
}

static bool stopped(void *ud) { (void)ud; return g_stop; }

int lume_cmd_logs(int argc, char **argv)
{
    /* --follow and --since are this command's own; the rest are every
     * operator command's (lume_ops_parse) */
    bool follow = false;
    const char *since = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return EXIT_FAIL;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && (!strcmp(argv[i], "--follow") || !strcmp(argv[i], "-f")))
            follow = true;
        else if (i > 0 && !strcmp(argv[i], "--since") && i + 1 < argc)
            since = argv[++i];
        else if (i > 0 && !strncmp(argv[i], "--since=", 8))
            since = argv[i] + 8;
        else
            rest[n++] = argv[i];
    }
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(n, rest, &o, LOGS_USAGE, &first);
    if (r) {
        free(rest);
        return r == 1 ? 0 : r;
    }
    bool extra = first < n;
    free(rest);
    if (!o.device || extra || o.group) {
        fprintf(stderr, "lume logs: %s\n\n%s",
                extra ? "unexpected operand" : o.group ? "--group: logs are per device"
                                                       : "--device ID is required",
                LOGS_USAGE);
        return EXIT_USAGE;
    }
    logs_ctx x = {.since_ms = -1, .json = o.json};
    if (since && (x.since_ms = parse_since(since)) < 0) {
        fprintf(stderr, "lume logs: --since: expected 30s, 10m, 2h, 1d or a time like "
                "2026-11-30T13:00:00Z, got '%s'\n", since);
        return EXIT_USAGE;
    }
    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        return r;
    }
    char stream[LUME_HUB_TOPIC_MAX], recent[LUME_HUB_TOPIC_MAX];
    if (!lume_hub_operator_topic(&c.cfg, LUME_HUB_DEVICE_LOGS, o.device, stream, sizeof stream) ||
        !lume_hub_operator_topic(&c.cfg, LUME_HUB_DEVICE_LOGS_RECENT, o.device, recent,
                                 sizeof recent)) {
        fprintf(stderr, "lume logs: the %s dialect keeps no log topic lume can read (its log "
                "lines are telemetry with the property lume-kind=log)\n",
                c.cfg.net.dialect ? c.cfg.net.dialect : "mqtt");
        lume_ops_close(&c);
        return EXIT_USAGE;
    }
    x.stream = stream;
    x.recent = recent;
    c.tap = on_msg;
    c.tap_ud = &x;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (follow) {
        struct sigaction sa = {.sa_handler = on_stop};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        lume_mqtt_add_subscription(c.m, recent, 1);
        lume_mqtt_add_subscription(c.m, stream, 0);
        while (!g_stop)
            lume_loop_drain(c.loop, 200, stopped, NULL);
    } else {
        const char *f[] = {recent};
        lume_ops_collect(&c, f, 1, 500, 3000);
        if (!lume_ops_get(&c, recent))
            fprintf(stderr, "lume logs: %s has kept no log lines (none sent yet; desired "
                    "log.remote turns them on)\n", o.device);
    }
    lume_ops_close(&c);
    return 0;
}
