/* runtime/twin_host.c — the device twin in the runtime: its layers arrive
 * on the hub dialect's topics (core/hub/hub.h: which layers there are, where
 * each arrives, where the reported and health documents go — this file
 * names no topic), the built-in desired keys are applied here, the others
 * go to the scripts, and the reported document goes out once per loop
 * turn. What arrives goes through lume_twin_set_layer, what leaves comes
 * from lume_twin_take_reported.
 *
 * Built-in desired keys (scripts, sensors, log — its `remote` member is
 * remote_log.c's —, health, outbox): their schema is core/store/schema.c,
 * the one the operator's `lume twin set` checks too; each value is checked
 * against it before it applies. A bad
 * value is refused with a message in reported.errors.<key> and the log;
 * the rest of the document still applies.
 *
 * Dialects of requests (azure: lume_hub_reported says state = false). The
 * desired layer arrives whole in the answer to a GET and as versioned merge
 * patches in between; the reported document leaves as merge patches:
 *
 *   connect ──► GET ($rid g) ──200──► layer := desired ($version V);
 *                   │                 base := the hub's reported ──► PATCH diff(base, doc)
 *                   └─other / 30 s──► GET again (backoff 1 s .. 60 s)
 *   PATCH ?$version=v:  v <= V: stale, ignored │ v = V + 1: merged, V := v │ else: GET
 *                       not a JSON object: refused (errors.desired_patch), GET
 *   GET answered 200 with no twin in it: errors.desired, GET again (backoff)
 *   PATCH ($rid r) ──204──► base := what was sent; changed meanwhile? next diff
 *                  ──429──► the whole diff again after 1 s, 2 s, ... 60 s
 *                  ──other─► logged with the body, counted; the next diff carries it
 *
 * Invariants:
 *   1. At most one GET and one reported PATCH are awaited (get_rid, rep_rid);
 *      a connect forgets both (nothing is answered across connections).
 *   2. base is what the hub acknowledged (or reported in a GET answer);
 *      every PATCH is diff(base, the whole reported document), so a lost or
 *      refused PATCH is carried by the next one and keys lume no longer
 *      reports are sent as null.
 *   3. Nothing the dialect refuses (key names, string and section sizes,
 *      depth) enters the reported document: lume_twin_host_check_patch
 *      checks the document as the patch would make it, at report time, so
 *      one oversized report cannot block every later one.
 *
 * No Lua here (runtime/services.h): the runtime is seen through
 * lume_services, and the Lua host is reached through its Lua-free
 * prototypes: the bundles (bundles.h), the scripts' on_change handlers
 * (l_twin.h), methods and cloud-to-device messages (l_hub.h). */
#include "twin_host.h"
#include "remote_log.h"
#include "bundles.h"
#include "l_hub.h"
#include "l_twin.h"
#include "lume.h"
#include "services.h"
#include "config.h"
#include "hub.h"
#include "loop.h"
#include "mqtt.h"
#include "outbox.h"
#include "sampler.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "schema.h"
#include "twin.h"

#define HEALTH_PERIOD_S 60  /* the heartbeat's period unless desired health.period_s */
#define GET_TIMEOUT_MS 30000 /* a twin GET unanswered this long is asked again */
#define SCRIPT_RESERVE 4096  /* of a size-limited reported section, kept from scripts
                              * for lume's own reports (statuses, sensors, errors) */

struct lume_twin_host {
    lume_runtime       *rt;
    lume_twin          *twin;
    size_t              nlayers;
    const char *const  *layers;  /* the dialect's: "group:fleet", ..., "device" */
    lume_timer          flush_timer, health_timer;
    double              health_period_s;
    uint64_t            health_seq;
    bool                health_on;     /* the heartbeat runs (a session exists or comes) */
    /* A dialect of requests (azure): the reported document goes as a PATCH
     * answered by a TWIN_RESPONSE, the desired one arrives whole in the
     * answer to a GET and as versioned patches in between. */
    lume_timer          renew_timer, rep_retry_timer, get_retry_timer;
    char                get_rid[64];   /* the twin GET awaiting its answer, or "" */
    char                rep_rid[64];   /* the reported PATCH awaiting 204, or "" */
    bool                rep_again;     /* the reported document changed meanwhile */
    int                 rep_backoff_ms, get_backoff_ms;
    cJSON              *layer;         /* the single desired layer as applied */
    cJSON              *rep_base;      /* the reported document the hub holds (acked),
                                          NULL: unknown, the whole document goes */
    cJSON              *rep_sent;      /* the document the PATCH in flight makes */
    lume_twin_host_stats st;
    uint64_t            errors_reported; /* report_error calls (lume_twin_notify) */
    lume_remote_log    *rlog;          /* desired log.remote (remote_log.c) */
};

static void send_get(struct lume_twin_host *h);

/* A request of the dialect's: QoS 1 when it asks for it (the broker's
 * PUBACK), else QoS 0; either way answered by its request id. */
static int send_request(lume_runtime *rt, const lume_hub_out *out, const char *body, size_t len)
{
    lume_services *sv = lume_runtime_services(rt);
    return out->qos == 1 ? lume_mqtt_publish_request(sv->mqtt, out->topic, body, len)
                         : lume_mqtt_publish_now(sv->mqtt, out->topic, body, len, out->retain);
}

/* The RFC 7386 merge patch that turns from into to (NULL on OOM). */
static cJSON *merge_diff(const cJSON *from, const cJSON *to)
{
    cJSON *d = cJSON_CreateObject();
    const cJSON *e;
    cJSON_ArrayForEach(e, from)
        if (e->string && !cJSON_GetObjectItemCaseSensitive(to, e->string))
            cJSON_AddNullToObject(d, e->string);
    cJSON_ArrayForEach(e, to) {
        if (!e->string)
            continue;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(from, e->string);
        if (f && cJSON_IsObject(f) && cJSON_IsObject(e)) {
            cJSON *sub = merge_diff(f, e);
            if (sub && sub->child)
                cJSON_AddItemToObject(d, e->string, sub);
            else
                cJSON_Delete(sub);
        } else if (!f || !cJSON_Compare(f, e, true)) {
            cJSON_AddItemToObject(d, e->string, cJSON_Duplicate(e, 1));
        }
    }
    return d;
}

/* Send the reported document where the dialect says. */
static void send_reported(struct lume_twin_host *h, const char *doc)
{
    lume_runtime *rt = h->rt;
    lume_services *sv = lume_runtime_services(rt);
    lume_hub_out out;
    if (!sv->mqtt || lume_hub_reported(sv->hub, &out) < 0)
        return;
    if (out.state) {
        lume_mqtt_publish_state(sv->mqtt, out.topic, doc, strlen(doc));
        return;
    }
    /* a request: checked against the hub's limits, one in flight at a time */
    char why[512];
    if (lume_hub_check_reported(sv->hub, doc, strlen(doc), why, sizeof why) < 0) {
        h->st.reported_refused++;
        lume_log(LUME_LOG_ERROR, "twin", "reported properties not sent: %s", why);
        return;
    }
    if (h->rep_rid[0] || lume_timer_pending(&h->rep_retry_timer) ||
        lume_mqtt_get_state(sv->mqtt) != LUME_MQTT_CONNECTED) {
        h->rep_again = true; /* sent whole after the answer, or on connect */
        return;
    }
    if (!h->rep_base && h->get_rid[0]) { /* the GET's answer says what the hub holds */
        h->rep_again = true;
        return;
    }
    /* a merge patch from what the hub holds to doc: keys gone become null */
    cJSON *now = cJSON_Parse(doc);
    if (!now)
        return;
    cJSON *diff = h->rep_base ? merge_diff(h->rep_base, now) : cJSON_Duplicate(now, 1);
    if (!diff || !diff->child) {   /* the hub holds this already */
        cJSON_Delete(diff);
        cJSON_Delete(now);
        h->rep_again = false;
        return;
    }
    char *body = cJSON_PrintUnformatted(diff);
    cJSON_Delete(diff);
    if (body && send_request(rt, &out, body, strlen(body)) == 0) {
        snprintf(h->rep_rid, sizeof h->rep_rid, "%s", out.rid);
        h->rep_again = false;
        h->st.reported_sent++;
        cJSON_Delete(h->rep_sent);
        h->rep_sent = now;
    } else {
        h->rep_again = true;
        cJSON_Delete(now);
    }
    free(body);
}

/* The whole reported document again (after a 204 with changes meanwhile,
 * a 429's backoff, a connect). */
static void resend_reported(struct lume_twin_host *h)
{
    char *doc = lume_twin_take_reported(h->twin);
    if (doc)
        send_reported(h, doc);
    free(doc);
}

const cJSON *lume_twin_host_desired(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    return sv->twin ? lume_twin_desired(sv->twin->twin) : NULL;
}

static void flush(lume_timer *t)
{
    struct lume_twin_host *h = t->ud;
    if (!lume_twin_reported_dirty(h->twin))
        return;
    char *doc = lume_twin_take_reported(h->twin);
    if (doc)
        send_reported(h, doc);
    free(doc);
}

/* Would the reported document, with patch merged, keep within the dialect's
 * rules, and leave `reserve` bytes of its size limit free? 0, or -EINVAL
 * with why (counted reported_refused). */
static int check_merged(lume_services *sv, const cJSON *patch, size_t reserve, char *why,
                        size_t cap)
{
    if (!lume_hub_limits_reported(sv->hub))
        return 0;
    /* the whole document as it would be: the hub's limits are on the whole
     * section (its size), and nothing over them may enter it, or every
     * later report would be refused with it */
    const cJSON *cur = sv->twin ? lume_twin_reported(sv->twin->twin) : NULL;
    cJSON *doc = cur ? cJSON_Duplicate(cur, 1) : cJSON_CreateObject();
    char *json = NULL;
    if (doc && lume_json_merge_patch(&doc, patch) == 0)
        json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!json)
        return 0; /* out of memory: lume_twin_report says so */
    size_t len = strlen(json), max = lume_hub_reported_max(sv->hub);
    int r = lume_hub_check_reported(sv->hub, json, len, why, cap);
    free(json);
    if (r == 0 && reserve && max != SIZE_MAX && len + reserve > max) {
        snprintf(why, cap, "the reported document would be %zu bytes: scripts may fill %zu of "
                 "the hub's %zu per section (%zu are kept for lume's own reports: script "
                 "statuses, sensors, errors)", len, max - reserve, max, reserve);
        r = -EINVAL;
    }
    if (r < 0 && sv->twin)
        sv->twin->st.reported_refused++;
    return r;
}

int lume_twin_host_check_patch(lume_runtime *rt, const cJSON *patch, char *why, size_t cap)
{
    return check_merged(lume_runtime_services(rt), patch, SCRIPT_RESERVE, why, cap);
}

/* Reported patches kept from before the twin host starts: a script's top
 * level reports once or a few times; a loop that reports more is cut here. */
#define EARLY_REPORTS_MAX 256

void lume_twin_host_report(lume_runtime *rt, cJSON *patch)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    if (!h) { /* before the twin host starts (scripts load first): kept for it */
        if (!sv->twin_early)
            sv->twin_early = cJSON_CreateArray();
        if (cJSON_GetArraySize(sv->twin_early) >= EARLY_REPORTS_MAX) {
            lume_log(LUME_LOG_WARN, "twin", "reported patch made before the twin started "
                     "dropped: more than %d of them", EARLY_REPORTS_MAX);
            cJSON_Delete(patch);
        } else if (!cJSON_AddItemToArray(sv->twin_early, patch)) { /* out of memory */
            cJSON_Delete(patch);
        }
        return;
    }
    char why[512];
    if (check_merged(sv, patch, 0, why, sizeof why) < 0) {
        lume_log(LUME_LOG_ERROR, "twin", "reported patch refused, not merged: %s", why);
        cJSON_Delete(patch);
        return;
    }
    char *err = NULL;
    if (lume_twin_report(h->twin, patch, &err) < 0) {
        lume_log(LUME_LOG_ERROR, "twin", "report: %s", err ? err : "?");
        free(err);
    }
    cJSON_Delete(patch);
    /* coalesced: one reported document per loop turn */
    if (!lume_timer_pending(&h->flush_timer))
        lume_timer_start(&h->flush_timer, 0);
}

uint64_t lume_twin_host_errors_reported(lume_runtime *rt)
{
    struct lume_twin_host *h = lume_runtime_services(rt)->twin;
    return h ? h->errors_reported : 0;
}

static void report_error(lume_runtime *rt, const char *key, const char *msg)
{
    if (msg && lume_runtime_services(rt)->twin)
        lume_runtime_services(rt)->twin->errors_reported++;
    cJSON *patch = cJSON_CreateObject();
    cJSON *errs = cJSON_AddObjectToObject(patch, "errors");
    if (msg) {
        cJSON_AddStringToObject(errs, key, msg);
        if (!strcmp(key, "desired")) /* the document itself, not one of its keys */
            lume_log(LUME_LOG_ERROR, "twin", "desired document: %s", msg);
        else if (!strcmp(key, "desired_patch")) /* msg names the patch */
            lume_log(LUME_LOG_ERROR, "twin", "%s", msg);
        else
            lume_log(LUME_LOG_ERROR, "twin", "desired.%s: %s", key, msg);
    } else {
        cJSON_AddNullToObject(errs, key);
    }
    lume_twin_host_report(rt, patch);
}

void lume_twin_host_error(lume_runtime *rt, const char *key, const char *msg)
{
    lume_services *sv = lume_runtime_services(rt);
    if (!sv->twin)
        return;
    /* only a change is reported: one report per key per document */
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(lume_twin_reported(sv->twin->twin),
                                                         "errors");
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(errs, key);
    if (!msg && !cJSON_IsString(cur))
        return;
    if (msg && cJSON_IsString(cur) && !strcmp(cur->valuestring, msg))
        return;
    report_error(rt, key, msg);
}

/* ---- built-in keys ------------------------------------------------------------ */

/* v checked against the schema (core/store/schema.h); refused: reported
 * under errors.<key>, false. */
static bool schema_ok(lume_runtime *rt, const char *key, const cJSON *v)
{
    char where[256], why[700];
    if (lume_twin_schema_check(key, v, where, sizeof where, why, sizeof why) == 0)
        return true;
    report_error(rt, key, why);
    return false;
}

static void apply_sensors(lume_runtime *rt, const cJSON *v)
{
    lume_services *sv = lume_runtime_services(rt);
    if (!schema_ok(rt, "sensors", v))
        return;
    /* null first: sensors no longer desired leave the reported document */
    cJSON *patch = cJSON_CreateObject();
    cJSON_AddNullToObject(patch, "sensors");
    lume_twin_host_report(rt, patch);
    patch = cJSON_CreateObject();
    cJSON *rep = cJSON_AddObjectToObject(patch, "sensors");
    char problems[1024] = "";
    size_t used = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        const cJSON *rate = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "rate") : e;
        int ch = lume_sampler_find(sv->sampler, e->string);
        const char *why = NULL;
        if (ch < 0)
            why = "no such sensor on this board";
        else if (!rate) /* {} : the schema lets rate be left out */
            why = "no rate given";
        if (why) {
            used += (size_t)snprintf(problems + used, used < sizeof problems ? sizeof problems - used : 0,
                                     "%s%s: %s", used ? "; " : "", e->string, why);
            continue;
        }
        double applied = 0;
        lume_sampler_set_rate(sv->sampler, (unsigned)ch, rate->valuedouble, &applied);
        cJSON *o = cJSON_AddObjectToObject(rep, e->string);
        cJSON_AddNumberToObject(o, "rate", applied);
        cJSON_AddNumberToObject(o, "requested", rate->valuedouble);
        cJSON_AddBoolToObject(o, "clamped", applied != rate->valuedouble);
        if (applied != rate->valuedouble)
            lume_log(LUME_LOG_WARN, "twin", "sensor %s: %g Hz requested, clamped to %g Hz "
                     "(the board's bounds)", e->string, rate->valuedouble, applied);
    }
    lume_twin_host_report(rt, patch);
    lume_twin_host_error(rt, "sensors", used ? problems : NULL);
}

static void apply_log(lume_runtime *rt, const cJSON *v)
{
    lume_services *sv = lume_runtime_services(rt);
    const cJSON *lvl = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "level") : v;
    if (v && !schema_ok(rt, "log", v))
        return; /* refused whole: what runs (level, remote stream) stays */
    lume_remote_log_apply(sv->twin->rlog, rt,
                          cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "remote") : NULL);
    if (!v || (cJSON_IsObject(v) && !lvl)) { /* no level desired: its error goes with it */
        lume_twin_host_error(rt, "log", NULL);
        return;
    }
    /* {remote = ...} without a level: the level stays */
    int level = lvl ? lume_log_level_parse(lvl->valuestring) : sv->cfg.log_level;
    lume_log_target_set_level(&sv->log, level); /* this runtime's, not the process's */
    sv->cfg.log_level = level;
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(patch, "log");
    cJSON_AddStringToObject(o, "level", lume_log_level_name(level));
    cJSON_AddStringToObject(o, "by", "desired"); /* over a script's lume.log.level */
    cJSON_AddNullToObject(o, "why");
    lume_twin_host_report(rt, patch);
    lume_twin_host_error(rt, "log", NULL);
}

static void apply_health(lume_runtime *rt, const cJSON *v)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    double period = HEALTH_PERIOD_S;
    if (v) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(v, "period_s");
        if (!schema_ok(rt, "health", v))
            return;
        if (p)
            period = p->valuedouble;
    }
    if (period != h->health_period_s) {
        lume_log(LUME_LOG_INFO, "twin", "health: a heartbeat every %g s", period);
        h->health_period_s = period;
        if (h->health_on)
            lume_timer_start(&h->health_timer, (int64_t)(period * 1e6));
    }
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(patch, "health");
    cJSON_AddNumberToObject(o, "period_s", period);
    lume_twin_host_report(rt, patch);
    lume_twin_host_error(rt, "health", NULL);
}

static void apply_outbox(lume_runtime *rt, const cJSON *v)
{
    lume_services *sv = lume_runtime_services(rt);
    if (!v) {
        lume_twin_host_error(rt, "outbox", NULL);
        return;
    }
    if (!schema_ok(rt, "outbox", v))
        return;
    lume_config scratch;
    if (lume_config_copy(&scratch, &sv->cfg) < 0)
        return;
    char why[600];
    if (lume_twin_schema_outbox(&scratch, v, why, sizeof why) < 0) { /* against this config */
        report_error(rt, "outbox", why);
        lume_config_free(&scratch);
        return;
    }
    sv->cfg.outbox = scratch.outbox;
    lume_config_free(&scratch);
    lume_outbox_set_opts(sv->outbox, &sv->cfg.outbox);
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(patch, "outbox");
    cJSON_AddNumberToObject(o, "max_messages", (double)sv->cfg.outbox.max_messages);
    cJSON_AddNumberToObject(o, "max_bytes", (double)sv->cfg.outbox.max_bytes);
    cJSON_AddNumberToObject(o, "commit_interval_ms", sv->cfg.outbox.commit_interval_ms);
    cJSON_AddNumberToObject(o, "commit_batch", sv->cfg.outbox.commit_batch);
    cJSON *lanes = cJSON_AddArrayToObject(o, "durable_lanes");
    for (int l = 0; l < LUME_LANES; l++)
        if (sv->cfg.outbox.durable_lanes & (1 << l))
            cJSON_AddItemToArray(lanes, cJSON_CreateString(lume_lane_name(l)));
    lume_twin_host_report(rt, patch);
    lume_twin_host_error(rt, "outbox", NULL);
}

static void on_change(void *ud, const char *key, const cJSON *now, const cJSON *before)
{
    struct lume_twin_host *h = ud;
    lume_runtime *rt = h->rt;
    lume_services *sv = lume_runtime_services(rt);
    if (!strcmp(key, "scripts"))
        lume_manager_apply(sv->mgr, now);
    else if (!strcmp(key, "sensors"))
        apply_sensors(rt, now);
    else if (!strcmp(key, "log"))
        apply_log(rt, now);
    else if (!strcmp(key, "outbox"))
        apply_outbox(rt, now);
    else if (!strcmp(key, "health"))
        apply_health(rt, now);
    else
        lume_twin_notify(rt, key, now, before);
}

static void report_versions(struct lume_twin_host *h)
{
    char *v = lume_twin_versions_json(h->twin);
    cJSON *patch = cJSON_CreateObject();
    cJSON *parsed = v ? cJSON_Parse(v) : NULL;
    free(v);
    /* null first: layers that lost their version disappear */
    cJSON_AddNullToObject(patch, "desired_versions");
    lume_twin_host_report(h->rt, patch);
    patch = cJSON_CreateObject();
    cJSON *vers = parsed ? parsed : cJSON_CreateObject();
    if (!cJSON_AddItemToObject(patch, "desired_versions", vers)) /* out of memory */
        cJSON_Delete(vers);
    lume_twin_host_report(h->rt, patch);
}

/* A whole document for layer i. */
static void set_layer(struct lume_twin_host *h, size_t i, const void *payload, size_t len)
{
    lume_runtime *rt = h->rt;
    char *err = NULL;
    int r = lume_twin_set_layer(h->twin, h->layers[i], payload, len, &err);
    if (r < 0) {
        report_error(rt, "desired", err ? err : "bad document");
        free(err);
        return;
    }
    int64_t got, held;
    if (r == 0 && lume_twin_was_stale(h->twin, &got, &held)) { /* logged at WARN */
        char msg[300];
        snprintf(msg, sizeof msg, "%s layer: $version %lld received is older than $version "
                 "%lld held; ignored (publish it with a $version above %lld)", h->layers[i],
                 (long long)got, (long long)held, (long long)held);
        cJSON *patch = cJSON_CreateObject(); /* reported only: the twin logged it at WARN */
        cJSON_AddStringToObject(cJSON_AddObjectToObject(patch, "errors"), "desired", msg);
        lume_twin_host_report(rt, patch);
    }
    if (r == 1) {
        lume_twin_host_error(rt, "desired", NULL);
        lume_twin_each_change(h->twin, on_change, h);
        report_versions(h);
    }
}

/* The single desired layer, whole, as the hub holds it at `version`. */
static void set_whole(struct lume_twin_host *h, cJSON *doc, int64_t version)
{
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "$version");
    if (version >= 0)
        cJSON_AddNumberToObject(doc, "$version", (double)version);
    char *json = cJSON_PrintUnformatted(doc);
    cJSON_Delete(h->layer);
    h->layer = doc;
    if (json)
        set_layer(h, h->nlayers - 1, json, strlen(json));
    free(json);
}

/* A versioned merge patch of the desired layer (azure: ?$version=). */
static void desired_patch(struct lume_twin_host *h, int64_t version, const void *payload,
                          size_t len)
{
    const char *layer = h->layers[h->nlayers - 1];
    int64_t cur = lume_twin_layer_version(h->twin, layer);
    if (h->get_rid[0]) { /* the whole twin is on its way: it holds this patch or
                          * the next patch shows the gap */
        lume_log(LUME_LOG_DEBUG, "twin", "desired patch $version %lld while a GET is "
                 "pending: left to the GET", (long long)version);
        return;
    }
    if (version >= 0 && cur >= 0 && version <= cur) {
        h->st.patches_stale++;
        lume_log(LUME_LOG_INFO, "twin", "desired patch $version %lld is not newer than %lld "
                 "held; ignored", (long long)version, (long long)cur);
        return;
    }
    if (version < 0 || cur < 0 || version > cur + 1) {
        h->st.patch_gaps++;
        lume_log(LUME_LOG_INFO, "twin", "desired patch $version %lld after %lld: a gap; "
                 "asking for the whole twin", (long long)version, (long long)cur);
        send_get(h);
        return;
    }
    char *err = NULL, what[64];
    snprintf(what, sizeof what, "desired patch $version %lld", (long long)version);
    cJSON *patch = lume_twin_parse_object(what, payload, len, &err);
    if (!patch) {
        /* nothing of it applies; the hub's twin holds what it meant. The
         * error stays in reported.errors.desired_patch until a patch applies
         * (the GET's answer clears errors.desired, not this) */
        h->st.patches_refused++;
        report_error(h->rt, "desired_patch", err ? err : what);
        free(err);
        send_get(h);
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(patch, "$version");
    cJSON *doc = h->layer ? cJSON_Duplicate(h->layer, 1) : cJSON_CreateObject();
    if (doc && lume_json_merge_patch(&doc, patch) == 0) {
        h->st.patches_applied++;
        lume_twin_host_error(h->rt, "desired_patch", NULL);
        set_whole(h, doc, version);
    } else {
        cJSON_Delete(doc);
    }
    cJSON_Delete(patch);
}

static void get_retry(lume_timer *t) { send_get(t->ud); }
static void rep_retry(lume_timer *t) { resend_reported(t->ud); }

/* A GET answered with an error status, or 200 with a body that is no twin
 * (why: reported as errors.desired): asked again after 1 s, 2 s, ... 60 s. */
static void get_again(struct lume_twin_host *h, int status, const char *why)
{
    h->st.get_errors++;
    h->get_backoff_ms = h->get_backoff_ms ? h->get_backoff_ms * 2 : 1000;
    if (h->get_backoff_ms > 60000)
        h->get_backoff_ms = 60000;
    if (why)
        report_error(h->rt, "desired", why);
    lume_log(LUME_LOG_WARN, "twin", "twin GET answered %d%s: asking again in %d ms", status,
             status == 429 ? " (throttled)" : why ? " with no twin" : "", h->get_backoff_ms);
    lume_timer_start(&h->get_retry_timer, (int64_t)h->get_backoff_ms * 1000);
}

static void twin_response(struct lume_twin_host *h, const lume_hub_in *in, const void *payload,
                          size_t len)
{
    if (h->get_rid[0] && !strcmp(in->rid, h->get_rid)) {
        h->get_rid[0] = 0;
        lume_timer_cancel(&h->get_retry_timer);
        if (in->status != 200) {
            get_again(h, in->status, NULL);
            return;
        }
        char *err = NULL;
        cJSON *twin = lume_twin_parse_object("twin GET answer", payload, len, &err);
        cJSON *desired = cJSON_DetachItemFromObjectCaseSensitive(twin, "desired");
        if (!cJSON_IsObject(desired)) {
            /* what was applied before stays; the hub is asked again */
            get_again(h, 200, err ? err : "twin GET answer without a \"desired\" object");
            free(err);
            cJSON_Delete(desired);
            cJSON_Delete(twin);
            return;
        }
        h->get_backoff_ms = 0;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(desired, "$version");
        int64_t version = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
        h->st.gets++;
        cJSON *rep = cJSON_DetachItemFromObjectCaseSensitive(twin, "reported");
        if (cJSON_IsObject(rep) && !h->rep_rid[0]) {
            /* what the hub holds, so that keys lume no longer reports go */
            cJSON_DeleteItemFromObjectCaseSensitive(rep, "$version");
            cJSON_DeleteItemFromObjectCaseSensitive(rep, "$metadata");
            cJSON_Delete(h->rep_base);
            h->rep_base = rep;
            rep = NULL;
            h->rep_again = true;
        }
        cJSON_Delete(rep);
        set_whole(h, desired, version);
        cJSON_Delete(twin);
        if (h->rep_again)
            resend_reported(h);
        return;
    }
    if (h->rep_rid[0] && !strcmp(in->rid, h->rep_rid)) {
        h->rep_rid[0] = 0;
        if (in->status == 204 || in->status == 200) {
            h->st.reported_acked++;
            h->rep_backoff_ms = 0;
            cJSON_Delete(h->rep_base);   /* the hub holds what was sent */
            h->rep_base = h->rep_sent;
            h->rep_sent = NULL;
            if (h->rep_again)
                resend_reported(h);
            return;
        }
        if (in->status == 429) {
            h->st.reported_throttled++;
            h->rep_backoff_ms = h->rep_backoff_ms ? h->rep_backoff_ms * 2 : 1000;
            if (h->rep_backoff_ms > 60000)
                h->rep_backoff_ms = 60000;
            lume_log(LUME_LOG_WARN, "twin", "reported PATCH throttled (429): sending again in "
                     "%d ms", h->rep_backoff_ms);
            h->rep_again = true;
            lume_timer_start(&h->rep_retry_timer, (int64_t)h->rep_backoff_ms * 1000);
            return;
        }
        h->st.reported_errors++;
        char q[200];
        lume_quote(q, sizeof q, payload, len, 120);
        lume_log(LUME_LOG_ERROR, "twin", "reported PATCH answered %d: %s", in->status, q);
        if (h->rep_again)
            resend_reported(h);
        return;
    }
    lume_log(LUME_LOG_DEBUG, "twin", "twin answer %d for request %s matches nothing pending",
             in->status, in->rid);
}

static void send_get(struct lume_twin_host *h)
{
    lume_runtime *rt = h->rt;
    lume_services *sv = lume_runtime_services(rt);
    lume_hub_out out;
    if (!sv->mqtt || lume_mqtt_get_state(sv->mqtt) != LUME_MQTT_CONNECTED ||
        lume_hub_twin_get(sv->hub, &out) < 0)
        return;
    if (send_request(rt, &out, out.payload, strlen(out.payload)) == 0) {
        snprintf(h->get_rid, sizeof h->get_rid, "%s", out.rid);
        lume_timer_start(&h->get_retry_timer, GET_TIMEOUT_MS * 1000); /* no answer: again */
    }
}

bool lume_twin_host_message(lume_runtime *rt, const char *topic, const void *payload,
                            size_t len)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    if (!h)
        return false;
    lume_hub_in in;
    lume_hub_classify(sv->hub, topic, &in);
    switch (in.kind) {
    case LUME_HUB_IN_DESIRED:
        set_layer(h, in.layer, payload, len);
        return true;
    case LUME_HUB_IN_DESIRED_PATCH:
        desired_patch(h, in.version, payload, len);
        return true;
    case LUME_HUB_IN_TWIN_RESPONSE:
        twin_response(h, &in, payload, len);
        return true;
    case LUME_HUB_IN_METHOD:
        lume_hub_host_method(rt, in.name, in.rid, payload, len);
        return true;
    case LUME_HUB_IN_C2D:
        lume_hub_host_c2d(rt, in.props, payload, len);
        return true;
    case LUME_HUB_IN_NONE:
    default:
        return false;
    }
}

void lume_twin_host_stats_json(lume_runtime *rt, cJSON *root)
{
    lume_services *sv = lume_runtime_services(rt);
    lume_twin_host_stats st;
    lume_twin_host_stats_get(rt, &st);
    cJSON *o = cJSON_AddObjectToObject(root, "twin");
    cJSON_AddStringToObject(o, "dialect", lume_hub_name(sv->hub));
#define N(f) cJSON_AddNumberToObject(o, #f, (double)st.f)
    N(gets); N(get_errors); N(patches_applied); N(patches_stale); N(patch_gaps);
    N(patches_refused);
    N(reported_sent); N(reported_acked); N(reported_throttled); N(reported_errors);
    N(reported_refused); N(token_renewals); N(methods); N(methods_failed); N(c2d);
#undef N
}

const char *lume_twin_host_password(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    int64_t renew_ms = 0;
    const char *pw = lume_hub_password(sv->hub, &renew_ms);
    struct lume_twin_host *h = sv->twin;
    if (h && renew_ms > 0)
        lume_timer_start(&h->renew_timer, renew_ms * 1000);
    return pw;
}

static void renew(lume_timer *t)
{
    struct lume_twin_host *h = t->ud;
    if (lume_runtime_services(h->rt)->mqtt && lume_mqtt_get_state(lume_runtime_services(h->rt)->mqtt) == LUME_MQTT_CONNECTED) {
        /* (not connected: the next attempt makes a fresh token anyway) */
        h->st.token_renewals++;
        lume_mqtt_reconnect(lume_runtime_services(h->rt)->mqtt, "SAS token renewal (80 % of net.sas_ttl_s)");
    }
}

void lume_twin_host_stats_get(lume_runtime *rt, lume_twin_host_stats *st)
{
    lume_services *sv = lume_runtime_services(rt);
    if (sv->twin)
        *st = sv->twin->st;
    else
        memset(st, 0, sizeof *st);
    lume_hub_host_count(st);
}

bool lume_twin_host_feed(lume_runtime *rt, const char *layer, const void *payload, size_t len)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    for (size_t i = 0; h && i < h->nlayers; i++)
        if (!strcmp(h->layers[i], layer)) {
            set_layer(h, i, payload, len);
            return true;
        }
    return false;
}

char *lume_twin_host_reported_json(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    const cJSON *r = sv->twin ? lume_twin_reported(sv->twin->twin) : NULL;
    return r ? cJSON_PrintUnformatted(r) : NULL;
}

bool lume_twin_host_refused(lume_runtime *rt, const char *topic, const char *why)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    if (!h || !topic)
        return false;
    lume_hub_in in;
    lume_hub_classify(sv->hub, topic, &in);
    if (in.kind != LUME_HUB_IN_DESIRED && in.kind != LUME_HUB_IN_DESIRED_PATCH)
        return false;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s layer: %s; skipped, not applied (what was applied "
             "before stays in effect)", h->layers[in.layer], why ? why : "refused");
    report_error(rt, "desired", msg);
    return true;
}

void lume_twin_host_connected(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    if (h && sv->mqtt) {
        /* nothing asked on an earlier connection will be answered */
        h->get_rid[0] = 0;
        h->rep_rid[0] = 0;
        cJSON_Delete(h->rep_sent);
        h->rep_sent = NULL;
        lume_timer_cancel(&h->rep_retry_timer);
        lume_timer_cancel(&h->get_retry_timer);
        /* requests the dialect makes after every connect (a twin GET) */
        lume_hub_out out[4];
        size_t n = lume_hub_connected(sv->hub, out, 4);
        for (size_t i = 0; i < n; i++)
            if (send_request(rt, &out[i], out[i].payload, strlen(out[i].payload)) == 0 &&
                out[i].rid[0]) { /* a request answered by its id: the twin GET */
                snprintf(h->get_rid, sizeof h->get_rid, "%s", out[i].rid);
                lume_timer_start(&h->get_retry_timer, GET_TIMEOUT_MS * 1000);
            }
        /* the whole reported document goes out (again) on every connect; as
         * a patch (azure) once the GET said what the hub holds */
        resend_reported(h);
    }
}

bool lume_twin_host_busy(lume_runtime *rt)
{
    struct lume_twin_host *h = lume_runtime_services(rt)->twin;
    return h && (h->get_rid[0] || h->rep_rid[0] || h->rep_again ||
                 lume_timer_pending(&h->flush_timer) || lume_timer_pending(&h->rep_retry_timer));
}

static void health_tick(lume_timer *t)
{
    struct lume_twin_host *h = t->ud;
    lume_runtime *rt = h->rt;
    lume_services *sv = lume_runtime_services(rt);
    lume_hub_out out;
    /* its own topic, straight to the session (QoS 0): never behind the
     * outbox's lanes; while disconnected a heartbeat is skipped, not queued */
    lume_timer_start(t, (int64_t)(h->health_period_s * 1e6));
    if (sv->mqtt && lume_mqtt_get_state(sv->mqtt) == LUME_MQTT_CONNECTED &&
        lume_hub_health(sv->hub, &out) == 0) {
        char *json = lume_runtime_health_json(rt, ++h->health_seq, h->health_period_s);
        if (json)
            lume_mqtt_publish_now(sv->mqtt, out.topic, json, strlen(json), out.retain);
        free(json);
    }
}

int lume_twin_host_start(lume_runtime *rt, char **err)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = calloc(1, sizeof *h);
    if (!h) {
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    h->rt = rt;
    sv->twin = h;
    h->health_period_s = HEALTH_PERIOD_S;
    h->nlayers = lume_hub_layers(sv->hub, &h->layers);
    lume_timer_init(&h->flush_timer, sv->loop, flush, h);
    lume_timer_name(&h->flush_timer, "twin reported");
    lume_timer_init(&h->health_timer, sv->loop, health_tick, h);
    lume_timer_name(&h->health_timer, "health");
    lume_timer_init(&h->renew_timer, sv->loop, renew, h);
    lume_timer_name(&h->renew_timer, "twin renew");
    lume_timer_init(&h->rep_retry_timer, sv->loop, rep_retry, h);
    lume_timer_name(&h->rep_retry_timer, "twin reported retry");
    lume_timer_init(&h->get_retry_timer, sv->loop, get_retry, h);
    h->rlog = lume_remote_log_new(rt);
    lume_timer_name(&h->get_retry_timer, "twin get retry");

    h->twin = lume_twin_open(sv->kv, (const char *const *)h->layers, h->nlayers, err);
    if (!h->twin)
        return -EINVAL;
    sv->mgr = lume_manager_new(rt, err);
    if (!sv->mgr)
        return -EINVAL;

    /* who this is, for fleet views; what it asks of a bundle, so that an
     * operator's push without a key is refused before it is published */
    cJSON *patch = cJSON_CreateObject();
    cJSON *me = cJSON_AddObjectToObject(patch, "lume");
    cJSON *trust = lume_manager_trust_json(sv->mgr);
    if (!cJSON_AddItemToObject(me, "trust", trust)) /* me NULL: out of memory */
        cJSON_Delete(trust);
    cJSON_AddStringToObject(me, "version", LUME_VERSION);
    cJSON_AddStringToObject(me, "board", sv->cfg.board);
    cJSON *gl = cJSON_AddArrayToObject(me, "groups");
    for (size_t i = 0; i < h->nlayers; i++)
        if (!strncmp(h->layers[i], "group:", 6)) {
            cJSON *g = cJSON_CreateString(h->layers[i] + 6);
            if (!cJSON_AddItemToArray(gl, g)) /* gl NULL: out of memory */
                cJSON_Delete(g);
        }
    lume_twin_host_report(rt, patch);
    /* what the scripts reported as they loaded, in the order they did */
    for (cJSON *p; sv->twin_early && (p = cJSON_DetachItemFromArray(sv->twin_early, 0));)
        lume_twin_host_report(rt, p);
    cJSON_Delete(sv->twin_early);
    sv->twin_early = NULL;

    /* offline start: what was last applied runs before anything connects */
    lume_manager_restore(sv->mgr);
    lume_twin_each_change(h->twin, on_change, h);
    report_versions(h);
    if (h->nlayers == 1) /* patches apply onto the one layer as last applied */
        h->layer = cJSON_Duplicate(lume_twin_desired(h->twin), 1);

    if (sv->mqtt) {
        const char *const *filters;
        const int *qos;
        size_t n = lume_hub_subscriptions(sv->hub, &filters, &qos);
        for (size_t i = 0; i < n; i++)
            if (lume_mqtt_add_subscription(sv->mqtt, filters[i], qos[i]) < 0) {
                /* a desired document missed would go unnoticed */
                *err = lume_strdupf("cannot subscribe to %s: out of memory", filters[i]);
                return -ENOMEM;
            }
    }
    if (sv->mqtt || sv->dps) { /* (DPS: the session comes with the assignment) */
        h->health_on = true;
        lume_timer_start(&h->health_timer, (int64_t)(h->health_period_s * 1e6));
    }
    return 0;
}

void lume_twin_host_free(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_twin_host *h = sv->twin;
    cJSON_Delete(sv->twin_early); /* the twin never started */
    sv->twin_early = NULL;
    if (!h)
        return;
    lume_timer_cancel(&h->flush_timer);
    lume_timer_cancel(&h->health_timer);
    lume_timer_cancel(&h->renew_timer);
    lume_timer_cancel(&h->rep_retry_timer);
    lume_timer_cancel(&h->get_retry_timer);
    lume_remote_log_free(h->rlog);
    cJSON_Delete(h->layer);
    cJSON_Delete(h->rep_base);
    cJSON_Delete(h->rep_sent);
    lume_manager_free(sv->mgr);
    sv->mgr = NULL;
    if (h->twin)
        lume_twin_close(h->twin);
    free(h);
    sv->twin = NULL;
}
