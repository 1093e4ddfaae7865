/* runtime/remote_log.c — remote logs: while desired log.remote = {level =
 * "warn", for_s = 600} asks, the device's log lines at that level and above
 * go to the hub (the dialect's place: lume_hub_logs; mqtt:
 * lume/{device}/logs, one line a message, QoS 0; azure: telemetry on route
 * lume-log with lume-kind=log), for that long, then stop by themselves.
 * The last lines sent are kept retained where the dialect can (mqtt:
 * lume/{device}/logs/recent) for `lume logs` without --follow.
 *
 *            desired {level, for_s > 0}
 *   OFF ─────────────────────────────────────► ON   until := now + for_s
 *    ▲  ◄── for_s elapsed ("for_s elapsed") ───┤    (the same value again,
 *    │  ◄── log.remote null / absent / for_s 0 ┤     after a restart: the
 *    │       ("stopped by desired")            │     until it had, kept in
 *    │                                         │     the store)
 *    └── bad value: nothing changes; errors.log_remote, the log
 *   ON ── another value ──► ON with the new level and until
 *
 * Invariants:
 *   1. A line enters the lane from whichever thread logs it (the tap, under
 *      the log target's mutex, then the lane's); only the loop thread takes
 *      lines out and sends them.
 *   2. The lane is small and bounded (LANE lines) with a token bucket in
 *      front (RATE lines/s, BURST at once): a line that finds no token or
 *      no room is dropped and counted, and the next line sent carries
 *      "dropped": how many went before it since the last one sent.
 *   3. Lines go straight to the session at QoS 0, never into the outbox,
 *      and only while the connection holds fewer than LOW_WATER unsent
 *      bytes: telemetry and health are never behind a log line; under
 *      pressure (or offline) lines wait in the lane, then are dropped.
 *   4. Never recursive: nothing logged while this file sends, reports or
 *      speaks of itself enters the lane (tl_quiet), and a line logged from
 *      inside the tap is dropped by log.c.
 *   5. The reported document (log.remote: level, until, active, sent,
 *      dropped, stopped) changes when the stream starts and stops, and at
 *      most every REPORT_MS while counts move. */
#include "remote_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hub.h"
#include "kv.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "services.h"
#include "twin_host.h"

#define LANE        64           /* lines waiting to be sent */
#define RATE        20.0         /* lines a second, on average ... */
#define BURST       50.0         /* ... and at once */
#define LOW_WATER   (32 * 1024)  /* unsent bytes on the connection above which lines wait */
#define RECENT      50           /* lines kept in the retained recent document */
#define RECENT_MS   2000         /* the recent document at most this often */
#define REPORT_MS   5000         /* reported counts at most this often */
#define DRAIN_US    100000       /* the lane is looked at every 100 ms while on */
#define FOR_MAX_S   604800       /* a week */
#define KV_NS       "remote_log"
#define SRC_MAX     48
#define MSG_MAX     512

typedef struct rl_line {
    int64_t  wall_ms;
    int      level;
    uint64_t dropped;           /* lines dropped just before this one */
    char     src[SRC_MAX];
    char     msg[MSG_MAX];
} rl_line;

struct lume_remote_log {
    lume_runtime *rt;
    lume_timer    drain_timer, stop_timer;
    bool          on;
    int           level;
    double        for_s;
    int64_t       until_ms;      /* wall clock */
    char          stopped[96];   /* why it stopped, "" while on or never ran */
    cJSON        *spec;          /* the desired value that runs (or ran) */
    uint64_t      seq, sent, dropped_total, reported_sent, reported_dropped;
    int64_t       last_report_ms, last_recent_ms;
    bool          recent_dirty;
    /* the lane (invariant 1): under mu */
    pthread_mutex_t mu;
    rl_line      *lane;          /* LANE lines, allocated on the first start */
    size_t        head, n;
    double        tokens;
    int64_t       refill_ns;
    uint64_t      pending_drop;  /* dropped since the last line that entered */
    uint64_t      dropped;       /* dropped, all told (the tap's side) */
    /* the last lines sent: loop thread only */
    rl_line      *recent;        /* RECENT lines, with lane */
    size_t        rhead, rn;
};

static _Thread_local bool tl_quiet; /* invariant 4 */

/* ---- the tap: any thread ------------------------------------------------------ */

static void tap(void *ud, int level, const char *component, const char *msg)
{
    lume_remote_log *r = ud;
    if (tl_quiet)
        return;
    int64_t now = lume_mono_ns();
    pthread_mutex_lock(&r->mu);
    r->tokens += (double)(now - r->refill_ns) / 1e9 * RATE;
    if (r->tokens > BURST)
        r->tokens = BURST;
    r->refill_ns = now;
    if (r->tokens < 1 || r->n == LANE) {
        r->pending_drop++;
        r->dropped++;
    } else {
        r->tokens -= 1;
        rl_line *l = &r->lane[(r->head + r->n++) % LANE];
        l->wall_ms = lume_wall_ms();
        l->level = level;
        l->dropped = r->pending_drop;
        r->pending_drop = 0;
        snprintf(l->src, sizeof l->src, "%s", component ? component : "lume");
        snprintf(l->msg, sizeof l->msg, "%s", msg);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- the loop thread ---------------------------------------------------------- */

static void iso_ms(char *buf, size_t n, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char d[32];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", d, (int)(ms % 1000));
}

static cJSON *line_json(const rl_line *l, uint64_t seq)
{
    char t[48];
    iso_ms(t, sizeof t, l->wall_ms);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "time", t);
    cJSON_AddStringToObject(o, "level", lume_log_level_name(l->level));
    cJSON_AddStringToObject(o, "source", l->src);
    cJSON_AddStringToObject(o, "msg", l->msg);
    if (l->dropped)
        cJSON_AddNumberToObject(o, "dropped", (double)l->dropped);
    return o;
}

/* log.remote as it stands, into the reported document. */
static void report(lume_remote_log *r)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "log"), "remote");
    char until[48];
    iso_ms(until, sizeof until, r->until_ms);
    cJSON_AddStringToObject(o, "level", lume_log_level_name(r->level));
    cJSON_AddNumberToObject(o, "for_s", r->for_s);
    cJSON_AddStringToObject(o, "until", until);
    cJSON_AddBoolToObject(o, "active", r->on);
    cJSON_AddNumberToObject(o, "sent", (double)r->sent);
    cJSON_AddNumberToObject(o, "dropped", (double)r->dropped_total);
    if (r->stopped[0])
        cJSON_AddStringToObject(o, "stopped", r->stopped);
    else
        cJSON_AddNullToObject(o, "stopped");
    lume_twin_host_report(r->rt, patch);
    r->reported_sent = r->sent;
    r->reported_dropped = r->dropped_total;
    r->last_report_ms = lume_wall_ms();
}

/* The retained document of the last lines, where the dialect keeps one. */
static void send_recent(lume_remote_log *r)
{
    lume_services *sv = lume_runtime_services(r->rt);
    lume_hub_out out;
    r->last_recent_ms = lume_wall_ms();
    r->recent_dirty = false;
    if (!sv->mqtt || lume_hub_logs(sv->hub, &out, true) < 0)
        return;
    cJSON *doc = cJSON_CreateObject();
    cJSON *lines = cJSON_AddArrayToObject(doc, "lines");
    for (size_t i = 0; i < r->rn; i++) {
        size_t k = (r->rhead + RECENT - r->rn + i) % RECENT;
        cJSON_AddItemToArray(lines, line_json(&r->recent[k], r->seq - r->rn + i + 1));
    }
    cJSON_AddBoolToObject(doc, "active", r->on);
    cJSON_AddNumberToObject(doc, "sent", (double)r->sent);
    cJSON_AddNumberToObject(doc, "dropped", (double)r->dropped_total);
    char *json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (json)
        lume_mqtt_publish_state(sv->mqtt, out.topic, json, strlen(json));
    free(json);
}

/* Send one line on the stream: 0, or negative (not sent). */
static int send_line(lume_remote_log *r, const rl_line *l)
{
    lume_services *sv = lume_runtime_services(r->rt);
    lume_hub_out out;
    if (!sv->mqtt || lume_hub_logs(sv->hub, &out, false) < 0)
        return -ENOENT;
    cJSON *o = line_json(l, r->seq + 1);
    char *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    int rc = json ? lume_mqtt_publish_now(sv->mqtt, out.topic, json, strlen(json), false)
                  : -ENOMEM;
    free(json);
    if (rc == 0) {
        r->seq++;
        r->sent++;
        r->recent[r->rhead] = *l;
        r->rhead = (r->rhead + 1) % RECENT;
        if (r->rn < RECENT)
            r->rn++;
        r->recent_dirty = true;
    }
    return rc;
}

static bool can_send(lume_remote_log *r)
{
    lume_services *sv = lume_runtime_services(r->rt);
    return sv->mqtt && lume_mqtt_get_state(sv->mqtt) == LUME_MQTT_CONNECTED &&
           lume_mqtt_queued(sv->mqtt) < LOW_WATER;
}

/* Lines from the lane to the session (invariant 3), the recent document
 * and the reported counts when due. */
static void drain(lume_remote_log *r)
{
    while (can_send(r)) {
        rl_line l;
        pthread_mutex_lock(&r->mu);
        bool have = r->n > 0;
        if (have) {
            l = r->lane[r->head];
            r->head = (r->head + 1) % LANE;
            r->n--;
        }
        r->dropped_total = r->dropped;
        pthread_mutex_unlock(&r->mu);
        if (!have)
            break;
        if (send_line(r, &l) < 0) { /* its count and its own go with the next line */
            pthread_mutex_lock(&r->mu);
            r->pending_drop += l.dropped + 1;
            r->dropped++;
            pthread_mutex_unlock(&r->mu);
        }
    }
    pthread_mutex_lock(&r->mu);
    r->dropped_total = r->dropped;
    pthread_mutex_unlock(&r->mu);
    int64_t now = lume_wall_ms();
    if (r->recent_dirty && now - r->last_recent_ms >= RECENT_MS)
        send_recent(r);
    if ((r->sent != r->reported_sent || r->dropped_total != r->reported_dropped) &&
        now - r->last_report_ms >= REPORT_MS)
        report(r);
}

static void drain_tick(lume_timer *t)
{
    lume_remote_log *r = t->ud;
    tl_quiet = true;
    lume_timer_start(t, DRAIN_US);
    drain(r);
    tl_quiet = false;
}

/* ON → OFF: the tap goes, what is in the lane goes out (when it can), and
 * a last line on the stream says the stream ended and why. */
static void stop(lume_remote_log *r, const char *why)
{
    if (!r->on)
        return;
    lume_services *sv = lume_runtime_services(r->rt);
    lume_log_target_tap(&sv->log, NULL, NULL, LUME_LOG_TAP_OFF);
    lume_timer_cancel(&r->drain_timer);
    lume_timer_cancel(&r->stop_timer);
    drain(r);
    pthread_mutex_lock(&r->mu);
    uint64_t left = r->n, pending = r->pending_drop;
    r->dropped += r->n;  /* not sent: counted as dropped */
    r->n = 0;
    r->pending_drop = 0;
    r->dropped_total = r->dropped;
    pthread_mutex_unlock(&r->mu);
    r->on = false;
    snprintf(r->stopped, sizeof r->stopped, "%s", why);
    rl_line end = {.wall_ms = lume_wall_ms(), .level = LUME_LOG_INFO, .dropped = pending + left};
    snprintf(end.src, sizeof end.src, "remote-log");
    snprintf(end.msg, sizeof end.msg, "remote log stopped: %s (%llu lines sent, %llu dropped)",
             why, (unsigned long long)r->sent, (unsigned long long)r->dropped_total);
    if (lume_runtime_services(r->rt)->mqtt &&
        lume_mqtt_get_state(lume_runtime_services(r->rt)->mqtt) == LUME_MQTT_CONNECTED)
        send_line(r, &end);
    lume_log(LUME_LOG_INFO, "twin", "%s", end.msg);
    send_recent(r);
    report(r);
}

static void stop_tick(lume_timer *t)
{
    lume_remote_log *r = t->ud;
    tl_quiet = true;
    stop(r, "for_s elapsed");
    tl_quiet = false;
}

/* OFF → ON (or ON with a new value). -ENOMEM when its lines have no room. */
static int start(lume_remote_log *r, int level, double for_s, int64_t until_ms)
{
    lume_services *sv = lume_runtime_services(r->rt);
    if (!r->lane) { /* a device that never streams pays nothing for it */
        r->lane = calloc(LANE, sizeof *r->lane);
        r->recent = r->lane ? calloc(RECENT, sizeof *r->recent) : NULL;
        if (!r->recent) {
            free(r->lane);
            r->lane = NULL;
            return -ENOMEM;
        }
    }
    char until[48];
    iso_ms(until, sizeof until, until_ms);
    r->level = level;
    r->for_s = for_s;
    r->until_ms = until_ms;
    r->stopped[0] = 0;
    if (!r->on) {
        pthread_mutex_lock(&r->mu);
        r->tokens = BURST;
        r->refill_ns = lume_mono_ns();
        pthread_mutex_unlock(&r->mu);
    }
    r->on = true;
    lume_hub_out out;
    bool has = sv->mqtt && lume_hub_logs(sv->hub, &out, false) == 0;
    lume_log(LUME_LOG_INFO, "twin", "remote log: %s and above to %s until %s", 
             lume_log_level_name(level), has ? out.topic : "(no hub: nowhere)", until);
    lume_log_target_tap(&sv->log, tap, r, level);
    lume_timer_start(&r->drain_timer, DRAIN_US);
    int64_t left = until_ms - lume_wall_ms();
    lume_timer_start(&r->stop_timer, (left > 0 ? left : 0) * 1000);
    report(r);
    return 0;
}

lume_remote_log *lume_remote_log_new(lume_runtime *rt)
{
    lume_remote_log *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    lume_services *sv = lume_runtime_services(rt);
    r->rt = rt;
    pthread_mutex_init(&r->mu, NULL);
    lume_timer_init(&r->drain_timer, sv->loop, drain_tick, r);
    lume_timer_init(&r->stop_timer, sv->loop, stop_tick, r);
    return r;
}

void lume_remote_log_free(lume_remote_log *r)
{
    if (!r)
        return;
    lume_services *sv = lume_runtime_services(r->rt);
    if (r->on) /* the tap must be gone before r is */
        lume_log_target_tap(&sv->log, NULL, NULL, LUME_LOG_TAP_OFF);
    lume_timer_cancel(&r->drain_timer);
    lume_timer_cancel(&r->stop_timer);
    cJSON_Delete(r->spec);
    pthread_mutex_destroy(&r->mu);
    free(r->lane);
    free(r->recent);
    free(r);
}

/* Check desired log.remote: 0 with *level and *for_s, or -EINVAL with why. */
static int parse(const cJSON *v, int *level, double *for_s, char *why, size_t cap)
{
    *level = LUME_LOG_WARN;
    *for_s = 600;
    if (!cJSON_IsObject(v)) {
        snprintf(why, cap, "must be an object {\"level\": \"warn\", \"for_s\": 600}");
        return -EINVAL;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!strcmp(e->string, "level")) {
            int l = cJSON_IsString(e) ? lume_log_level_parse(e->valuestring) : -1;
            if (l < 0) {
                char q[80] = "a non-string";
                if (cJSON_IsString(e))
                    lume_quote(q, sizeof q, e->valuestring, strlen(e->valuestring), 40);
                snprintf(why, cap, "level must be \"debug\", \"info\", \"warn\" or \"error\", "
                         "got %s", q);
                return -EINVAL;
            }
            *level = l;
        } else if (!strcmp(e->string, "for_s")) {
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0) || e->valuedouble > FOR_MAX_S) {
                char *s = cJSON_PrintUnformatted(e);
                snprintf(why, cap, "for_s must be seconds from 0 (stop) to %d, got %.40s",
                         FOR_MAX_S, s ? s : "?");
                free(s);
                return -EINVAL;
            }
            *for_s = e->valuedouble;
        } else {
            snprintf(why, cap, "unknown key '%.64s' (expected level, for_s)", e->string);
            return -EINVAL;
        }
    }
    return 0;
}

/* The value that ran and its until, kept across restarts: the same desired
 * value does not stream again for another for_s after a reboot. */
static int64_t stored_until(lume_services *sv, const cJSON *v)
{
    void *val = NULL;
    size_t len = 0;
    int type = 0;
    int64_t until = -1;
    if (lume_kv_get(sv->kv, KV_NS, "spec", &val, &len, &type) == 0) {
        cJSON *doc = cJSON_ParseWithLength(val, len);
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(doc, "until_ms");
        if (cJSON_Compare(cJSON_GetObjectItemCaseSensitive(doc, "spec"), v, true) &&
            cJSON_IsNumber(u))
            until = (int64_t)u->valuedouble;
        cJSON_Delete(doc);
    }
    free(val);
    return until;
}

static void store_until(lume_services *sv, const cJSON *v, int64_t until_ms)
{
    if (!v) {
        lume_kv_del(sv->kv, KV_NS, "spec");
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "spec", cJSON_Duplicate(v, 1));
    cJSON_AddNumberToObject(doc, "until_ms", (double)until_ms);
    char *json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (json)
        lume_kv_set(sv->kv, KV_NS, "spec", json, strlen(json), 1);
    free(json);
}

void lume_remote_log_apply(lume_remote_log *r, lume_runtime *rt, const cJSON *v)
{
    if (v && cJSON_IsNull(v))
        v = NULL;
    if (!r) {
        if (v)
            lume_twin_host_error(rt, "log_remote", "out of memory: remote logs are off");
        return;
    }
    lume_services *sv = lume_runtime_services(rt);
    bool was_quiet = tl_quiet;
    tl_quiet = true; /* invariant 4: what this says of itself stays local */
    int level = LUME_LOG_WARN;
    double for_s = 0;
    char why[256];
    if (v && parse(v, &level, &for_s, why, sizeof why) < 0) {
        lume_twin_host_error(rt, "log_remote", why); /* logged there, at ERROR; what runs stays */
        tl_quiet = was_quiet;
        return;
    }
    lume_twin_host_error(rt, "log_remote", NULL);
    if (!v || for_s == 0) {
        if (!cJSON_Compare(r->spec, v, true)) {
            cJSON_Delete(r->spec);
            r->spec = v ? cJSON_Duplicate(v, 1) : NULL;
            store_until(sv, NULL, 0);
        }
        stop(r, v ? "for_s is 0 in desired log.remote" : "desired log.remote removed");
    } else if (!r->on || !cJSON_Compare(r->spec, v, true)) {
        int64_t now = lume_wall_ms(), until = stored_until(sv, v);
        if (until < 0) {
            until = now + (int64_t)(for_s * 1000);
            store_until(sv, v, until);
        }
        cJSON_Delete(r->spec);
        r->spec = cJSON_Duplicate(v, 1);
        if (until > now) {
            if (start(r, level, for_s, until) < 0)
                lume_twin_host_error(rt, "log_remote", "out of memory: remote logs are off");
        } else if (!r->stopped[0]) { /* ran out before this start (a restart) */
            r->level = level;
            r->for_s = for_s;
            r->until_ms = until;
            snprintf(r->stopped, sizeof r->stopped, "for_s elapsed");
            report(r);
        }
    }
    tl_quiet = was_quiet;
}
