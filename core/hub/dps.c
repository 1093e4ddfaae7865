/* core/hub/dps.c — the DPS registration client (dps.h): Azure IoT Hub Device
 * Provisioning Service's device MQTT API, api-version 2019-03-31.
 *
 *   connect   {endpoint} (mqtts://global.azure-devices-provisioning.net:8883)
 *             client id {registrationId}
 *             user name {idScope}/registrations/{registrationId}/api-version=2019-03-31
 *             password  SharedAccessSignature sr={urlenc(idScope/registrations/regId)}
 *                       &sig=..&se=..&skn=registration  (none with X.509)
 *   subscribe $dps/registrations/res/#
 *   register  $dps/registrations/PUT/iotdps-register/?$rid={n}
 *             {"registrationId": .., "payload": {"modelId": ..}}
 *   poll      $dps/registrations/GET/iotdps-get-operationstatus/?$rid={n}&operationId={op}
 *   answers   $dps/registrations/res/{status}/?$rid={n}[&retry-after={s}]
 *             202 {"operationId", "status": "assigning"}        poll after retry-after
 *             200 {"status": "assigned", "registrationState":
 *                  {"assignedHub", "deviceId", "substatus", ..}}  done
 *             429 (throttled)                               the same again after retry-after
 *             200 {"status": "failed"|"disabled", ..}, 4xx, 5xx, bad JSON   backoff
 *
 *                start
 *   IDLE ──────────────► CONNECTING ──CONNACK──► REGISTERING ──202──► WAITING
 *                         ▲   │ refused:            │  ▲               │ retry-after
 *                         │   │ the session's       │  │               ▼
 *                         │   │ own backoff         │  └──202─────── POLLING
 *                         │   ▼                     │                  │
 *                         └─ (session) ◄─ BACKOFF ◄─┴─ error, no answer ┤
 *                                                                       │ 200 assigned
 *                                                                       ▼
 *                                                 DONE: session closed, done() from a timer
 *
 * Invariants:
 *   1. No key material is logged.
 *   2. A poll never goes sooner than the retry-after the service asked for
 *      (default DEFAULT_RETRY_S, bounded to MIN_RETRY_S..MAX_RETRY_S).
 *   3. Every failure is logged with the service's reason and retried after
 *      a backoff that doubles (net.backoff_min_ms .. net.backoff_max_ms,
 *      at least 1 s): never a tight loop.
 *   4. Only answers to the request in flight ($rid) are acted on.
 *   5. done() runs from a timer, never inside the session's callbacks, so
 *      the callee may free the client.
 *   6. The register request follows the SUBSCRIBE to the answers on each
 *      connection (sent from a timer after the CONNACK callback). */
#include "dps.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include "hub.h"
#include "log.h"
#include "mqtt.h"

#define DEFAULT_RETRY_S 3
#define MIN_RETRY_S     1
#define MAX_RETRY_S     60
#define ANSWER_MS       30000    /* a request unanswered this long is a failure */
#define TOKEN_TTL_S     3600
#define KEY_MAX         512

typedef enum dps_state {
    D_IDLE, D_CONNECTING, D_REGISTERING, D_WAITING, D_POLLING, D_BACKOFF, D_DONE
} dps_state;

struct lume_dps {
    lume_loop          *loop;
    const lume_config  *cfg;
    lume_mqtt          *m;
    char                url[1100];
    char                reg_id[129];
    char                username[512];
    char                resource[256];
    char                key_b64[KEY_MAX];   /* "" with X.509 */
    char                token[1024];
    char                rid[24];            /* the request in flight, "" when none */
    uint64_t            next_rid;
    dps_state           st;
    int                 polls;
    int                 backoff_ms;
    lume_timer          poll_timer, retry_timer, answer_timer, done_timer;
    lume_dps_assignment a;
    char                last_error[512];
    lume_dps_done_fn    done;
    void               *ud;
};

/* ---- keys ------------------------------------------------------------------ */

int lume_dps_derive_key(const char *group_key_b64, const char *registration_id, char *buf,
                        size_t cap)
{
    unsigned char key[256], mac[32];
    size_t klen = 0, olen = 0;
    if (!group_key_b64 || mbedtls_base64_decode(key, sizeof key, &klen,
                                                (const unsigned char *)group_key_b64,
                                                strlen(group_key_b64)) != 0 || klen == 0)
        return -EINVAL;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    int r = mbedtls_md_hmac(md, key, klen, (const unsigned char *)registration_id,
                            strlen(registration_id), mac);
    memset(key, 0, sizeof key);
    if (r != 0)
        return -EINVAL;
    r = mbedtls_base64_encode((unsigned char *)buf, cap, &olen, mac, sizeof mac);
    memset(mac, 0, sizeof mac);
    return r == 0 ? (int)olen : -ENOSPC;
}

static bool is_base64_key(const char *k)
{
    unsigned char out[256];
    size_t n = 0;
    return k && *k && mbedtls_base64_decode(out, sizeof out, &n, (const unsigned char *)k,
                                            strlen(k)) == 0 && n > 0;
}

int lume_dps_device_key(const lume_config *c, char *buf, size_t cap, char **err)
{
    const char *which = NULL;
    int given = !!c->net.dps.symmetric_key + !!c->net.dps.symmetric_key_file +
                !!c->net.dps.group_key;
    if (given > 1) {
        lume_set_err(err, "net.dps: give one of symmetric_key, symmetric_key_file and "
                     "group_key, not %d of them", given);
        return -EINVAL;
    }
    if (c->net.dps.group_key) {
        which = "net.dps.group_key";
        int n = lume_dps_derive_key(c->net.dps.group_key, lume_dps_registration_id(c), buf, cap);
        if (n < 0) {
            lume_set_err(err, "%s: the group enrollment key is not base64", which);
            return -EINVAL;
        }
        return 0;
    }
    if (c->net.dps.symmetric_key) {
        which = "net.dps.symmetric_key";
        snprintf(buf, cap, "%s", c->net.dps.symmetric_key);
    } else if (c->net.dps.symmetric_key_file) {
        which = "net.dps.symmetric_key_file";
        char *k = lume_hub_read_key_file(which, c->net.dps.symmetric_key_file, err);
        if (!k)
            return -EINVAL;
        snprintf(buf, cap, "%s", k);
        memset(k, 0, strlen(k));
        free(k);
    } else if (c->net.cert_file) {
        buf[0] = 0;
        return 1; /* X.509: the TLS client certificate is the credential */
    } else {
        lume_set_err(err, "net.dps needs a credential: net.dps.symmetric_key or "
                     "net.dps.symmetric_key_file (individual enrollment), net.dps.group_key "
                     "(group enrollment), or net.cert_file and net.key_file (X.509)");
        return -EINVAL;
    }
    if (!is_base64_key(buf)) {
        memset(buf, 0, cap);
        lume_set_err(err, "%s: the enrollment key is not base64", which);
        return -EINVAL;
    }
    return 0;
}

/* ---- where an assigned hub is reached -------------------------------------- */

int lume_dps_hub_url(const lume_config *c, const char *hub, char *buf, size_t cap)
{
    size_t hl = strlen(hub);
    const char *scheme = "mqtts", *path = "";
    lume_url u;
    char *e = NULL;
    bool tmpl = c->net.url && lume_url_parse(c->net.url, &u, &e) == 0;
    free(e);
    if (tmpl) {
        scheme = u.scheme;
        path = u.ws ? u.path : "";
    }
    for (const char *p = c->net.dps.resolve; p && *p;) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (eq && (size_t)(eq - p) == hl && !memcmp(p, hub, hl)) {
            int vl = (int)(n - hl - 1);
            bool full = memmem(eq + 1, (size_t)vl, "://", 3) != NULL; /* a whole URL */
            int w = full ? snprintf(buf, cap, "%.*s", vl, eq + 1)
                         : snprintf(buf, cap, "%s://%.*s%s", scheme, vl, eq + 1, path);
            return w > 0 && (size_t)w < cap ? 0 : -ENOSPC;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    int port = tmpl ? u.port : 8883;
    int w = snprintf(buf, cap, "%s://%s:%d%s", scheme, hub, port, path);
    return w > 0 && (size_t)w < cap ? 0 : -ENOSPC;
}

/* ---- the stored assignment ----------------------------------------------------- */

static void kv_key(const lume_config *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", c->net.dps.id_scope, lume_dps_registration_id(c));
}

static void copy_str(const cJSON *o, const char *name, char *buf, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    snprintf(buf, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int lume_dps_load(lume_kv *kv, const lume_config *c, lume_dps_assignment *a)
{
    char key[256];
    kv_key(c, key, sizeof key);
    void *val = NULL;
    size_t len = 0;
    int type = 0;
    int r = lume_kv_get(kv, LUME_DPS_KV_NS, key, &val, &len, &type);
    if (r < 0)
        return r;
    cJSON *o = cJSON_ParseWithLength(val, len);
    free(val);
    memset(a, 0, sizeof *a);
    if (o) {
        copy_str(o, "assignedHub", a->hub, sizeof a->hub);
        copy_str(o, "deviceId", a->device_id, sizeof a->device_id);
        copy_str(o, "substatus", a->substatus, sizeof a->substatus);
        copy_str(o, "operationId", a->operation_id, sizeof a->operation_id);
        snprintf(a->status, sizeof a->status, "assigned");
    }
    cJSON_Delete(o);
    if (!a->hub[0] || !a->device_id[0]) {
        lume_log(LUME_LOG_WARN, "dps", "the stored assignment for %s is unreadable; "
                 "provisioning again", key);
        return -ENOENT;
    }
    return 0;
}

int lume_dps_save(lume_kv *kv, const lume_config *c, const lume_dps_assignment *a)
{
    char key[256];
    kv_key(c, key, sizeof key);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "assignedHub", a->hub);
    cJSON_AddStringToObject(o, "deviceId", a->device_id);
    cJSON_AddStringToObject(o, "substatus", a->substatus);
    cJSON_AddStringToObject(o, "operationId", a->operation_id);
    cJSON_AddNumberToObject(o, "at", (double)time(NULL));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int r = s ? lume_kv_set(kv, LUME_DPS_KV_NS, key, s, strlen(s), 0) : -ENOMEM;
    free(s);
    if (r < 0)
        lume_log(LUME_LOG_ERROR, "dps", "cannot store the assignment for %s (%s): the next "
                 "start provisions again", key, strerror(-r));
    return r;
}

int lume_dps_forget(lume_kv *kv, const lume_config *c)
{
    char key[256];
    kv_key(c, key, sizeof key);
    return lume_kv_del(kv, LUME_DPS_KV_NS, key);
}

/* ---- the registration ------------------------------------------------------ */

static void fail(lume_dps *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A failure: logged with why, the registration starts over after a backoff
 * (invariant 3). */
static void fail(lume_dps *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->last_error, sizeof d->last_error, fmt, ap);
    va_end(ap);
    int lo = d->cfg->net.backoff_min_ms > 1000 ? d->cfg->net.backoff_min_ms : 1000;
    int hi = d->cfg->net.backoff_max_ms > lo ? d->cfg->net.backoff_max_ms : lo;
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : lo;
    if (d->backoff_ms > hi)
        d->backoff_ms = hi;
    lume_log(LUME_LOG_ERROR, "dps", "registration %s: %s; registering again in %d ms",
             d->reg_id, d->last_error, d->backoff_ms);
    d->st = D_BACKOFF;
    d->rid[0] = 0;
    lume_timer_cancel(&d->poll_timer);
    lume_timer_cancel(&d->answer_timer);
    lume_timer_start(&d->retry_timer, (int64_t)d->backoff_ms * 1000);
}

static void send_req(lume_dps *d, const char *topic_fmt, const char *body)
{
    snprintf(d->rid, sizeof d->rid, "%llu", (unsigned long long)d->next_rid++);
    char topic[LUME_HUB_TOPIC_MAX];
    snprintf(topic, sizeof topic, topic_fmt, d->rid, d->a.operation_id);
    if (lume_mqtt_publish_request(d->m, topic, body, strlen(body)) < 0) {
        d->rid[0] = 0; /* not connected: the next CONNACK registers again */
        return;
    }
    lume_timer_start(&d->answer_timer, (int64_t)ANSWER_MS * 1000);
}

static void send_register(lume_dps *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "registrationId", d->reg_id);
    if (d->cfg->net.model_id) {
        cJSON *p = cJSON_AddObjectToObject(o, "payload");
        cJSON_AddStringToObject(p, "modelId", d->cfg->net.model_id);
    }
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!body) {
        fail(d, "out of memory");
        return;
    }
    d->st = D_REGISTERING;
    d->a.operation_id[0] = 0;
    /* %.0s: the operation id is not in this topic */
    send_req(d, "$dps/registrations/PUT/iotdps-register/?$rid=%s%.0s", body);
    free(body);
}

static void poll_tick(lume_timer *t)
{
    lume_dps *d = t->ud;
    if (d->st != D_WAITING)
        return;
    d->st = D_POLLING;
    d->polls++;
    send_req(d, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s&operationId=%s",
             "");
}

static void retry_tick(lume_timer *t)
{
    lume_dps *d = t->ud;
    if ((d->st == D_BACKOFF || d->st == D_CONNECTING) &&
        lume_mqtt_get_state(d->m) == LUME_MQTT_CONNECTED)
        send_register(d);
    else if (d->st == D_BACKOFF)
        d->st = D_CONNECTING; /* the session registers on its next CONNACK */
}

static void answer_tick(lume_timer *t)
{
    lume_dps *d = t->ud;
    if (d->rid[0])
        fail(d, "no answer to request %s within %d s", d->rid, ANSWER_MS / 1000);
}

static void done_tick(lume_timer *t)
{
    lume_dps *d = t->ud;
    lume_mqtt_free(d->m); /* DISCONNECT: the service is done with us */
    d->m = NULL;
    d->done(d->ud, &d->a); /* may free d (invariant 5) */
}

/* The value of name in the query of topic ("?$rid=1&retry-after=3"). */
static bool topic_query(const char *topic, const char *name, char *buf, size_t cap)
{
    const char *q = strchr(topic, '?');
    size_t nl = strlen(name);
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        size_t n = strcspn(p, "&");
        if (n > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            snprintf(buf, cap, "%.*s", (int)(n - nl - 1), p + nl + 1);
            return true;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return false;
}

/* Why a failed answer failed: the service's errorCode and message. */
static void reason(const cJSON *o, char *buf, size_t cap)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "registrationState");
    const cJSON *src = rs ? rs : o;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(src, "errorCode");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(src, "errorMessage");
    if (!cJSON_IsString(msg))
        msg = cJSON_GetObjectItemCaseSensitive(src, "message");
    snprintf(buf, cap, "%s%.0f%s%s", cJSON_IsNumber(code) ? "errorCode " : "",
             cJSON_IsNumber(code) ? code->valuedouble : 0, cJSON_IsNumber(code) ? ": " : "",
             cJSON_IsString(msg) ? msg->valuestring : "(no message)");
}

static void on_message(void *ud, const char *topic, const void *payload, size_t len, int qos,
                       bool retain)
{
    (void)qos, (void)retain;
    lume_dps *d = ud;
    static const char res[] = "$dps/registrations/res/";
    if (strncmp(topic, res, sizeof res - 1) || d->st == D_DONE)
        return;
    char rid[24] = "", ra[16] = "";
    topic_query(topic, "$rid", rid, sizeof rid);
    if (!d->rid[0] || strcmp(rid, d->rid)) {
        lume_log(LUME_LOG_DEBUG, "dps", "answer %s ignored: not the request in flight (%s)",
                 topic, d->rid[0] ? d->rid : "none");
        return; /* invariant 4 */
    }
    d->rid[0] = 0;
    lume_timer_cancel(&d->answer_timer);
    int status = atoi(topic + sizeof res - 1);
    cJSON *o = cJSON_ParseWithLength(payload, len);
    char why[400];
    if (status == 429) { /* throttled: the same request again after retry-after */
        long s = DEFAULT_RETRY_S;
        if (topic_query(topic, "retry-after", ra, sizeof ra) && atol(ra) > 0)
            s = atol(ra);
        s = s < MIN_RETRY_S ? MIN_RETRY_S : s > MAX_RETRY_S ? MAX_RETRY_S : s;
        lume_log(LUME_LOG_WARN, "dps", "registration %s: throttled (429); asking again in "
                 "%ld s", d->reg_id, s);
        if (d->a.operation_id[0]) {
            d->st = D_WAITING;
            lume_timer_start(&d->poll_timer, (int64_t)s * 1000000);
        } else {
            d->st = D_BACKOFF;
            lume_timer_start(&d->retry_timer, (int64_t)s * 1000000);
        }
        goto out;
    }
    if (!cJSON_IsObject(o)) {
        fail(d, "answer %d is not a JSON object: %.*s", status, (int)(len < 200 ? len : 200),
             (const char *)payload);
        goto out;
    }
    if (status >= 300) {
        reason(o, why, sizeof why);
        fail(d, "the service answered %d (%s)", status, why);
        goto out;
    }
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "operationId");
    const cJSON *stv = cJSON_GetObjectItemCaseSensitive(o, "status");
    const char *st = cJSON_IsString(stv) ? stv->valuestring : "";
    if (cJSON_IsString(op))
        snprintf(d->a.operation_id, sizeof d->a.operation_id, "%s", op->valuestring);
    if (status == 202 || !strcmp(st, "assigning") || !strcmp(st, "unassigned")) {
        if (!d->a.operation_id[0]) {
            fail(d, "answer %d without an operationId", status);
            goto out;
        }
        long s = DEFAULT_RETRY_S;
        if (topic_query(topic, "retry-after", ra, sizeof ra)) {
            char *end;
            s = strtol(ra, &end, 10);
            if (end == ra || *end)
                s = DEFAULT_RETRY_S;
        }
        s = s < MIN_RETRY_S ? MIN_RETRY_S : s > MAX_RETRY_S ? MAX_RETRY_S : s;
        d->st = D_WAITING;
        lume_log(LUME_LOG_INFO, "dps", "registration %s: %s (operation %s); asking again in "
                 "%ld s", d->reg_id, *st ? st : "accepted", d->a.operation_id, s);
        lume_timer_start(&d->poll_timer, (int64_t)s * 1000000);
        goto out;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "registrationState");
    snprintf(d->a.status, sizeof d->a.status, "%s", st);
    copy_str(rs, "assignedHub", d->a.hub, sizeof d->a.hub);
    copy_str(rs, "deviceId", d->a.device_id, sizeof d->a.device_id);
    copy_str(rs, "substatus", d->a.substatus, sizeof d->a.substatus);
    if (strcmp(st, "assigned")) {
        reason(o, why, sizeof why);
        fail(d, "status \"%s\" (%s)", *st ? st : "(none)", why);
        goto out;
    }
    if (!d->a.hub[0] || !d->a.device_id[0]) {
        fail(d, "status \"assigned\" without %s", !d->a.hub[0] ? "assignedHub" : "deviceId");
        goto out;
    }
    d->st = D_DONE;
    d->backoff_ms = 0;
    d->last_error[0] = 0;
    lume_log(LUME_LOG_INFO, "dps", "registration %s: assigned to hub %s as device %s (%s)",
             d->reg_id, d->a.hub, d->a.device_id, d->a.substatus[0] ? d->a.substatus : "-");
    lume_timer_start(&d->done_timer, 0); /* invariant 5 */
out:
    cJSON_Delete(o);
}

static void on_state(void *ud, int state, const char *why)
{
    lume_dps *d = ud;
    if (state == LUME_MQTT_CONNECTED) {
        /* from a timer: the session sends its SUBSCRIBE after this
         * callback, and the answer must not overtake it */
        if (d->st != D_DONE) {
            d->st = D_CONNECTING;
            lume_timer_start(&d->retry_timer, 0);
        }
    } else if (state == LUME_MQTT_BACKOFF && d->st != D_DONE) {
        /* the session backs off and connects again; register after it */
        lume_timer_cancel(&d->poll_timer);
        lume_timer_cancel(&d->answer_timer);
        d->rid[0] = 0;
        d->st = D_CONNECTING;
        snprintf(d->last_error, sizeof d->last_error, "%s", why ? why : "disconnected");
        if (why && strstr(why, "CONNACK refused"))
            lume_log(LUME_LOG_ERROR, "dps", "the provisioning service refused registration "
                     "%s: %s; check net.dps.id_scope and the enrollment key", d->reg_id, why);
    }
}

static const char *on_password(void *ud)
{
    lume_dps *d = ud;
    if (!d->key_b64[0])
        return NULL; /* X.509 */
    char tok[sizeof d->token - 32];
    if (lume_hub_azure_sas(d->resource, d->key_b64, (int64_t)time(NULL) + TOKEN_TTL_S, tok,
                           sizeof tok) < 0)
        return NULL;
    snprintf(d->token, sizeof d->token, "%s&skn=registration", tok);
    memset(tok, 0, sizeof tok);
    return d->token;
}

lume_dps *lume_dps_new(lume_loop *loop, const lume_config *c, lume_dps_done_fn done, void *ud,
                       char **err)
{
    if (!lume_dps_configured(c)) {
        lume_set_err(err, "net.dps.id_scope is not set");
        return NULL;
    }
    lume_dps *d = calloc(1, sizeof *d);
    if (!d) {
        lume_set_err(err, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->cfg = c;
    d->done = done;
    d->ud = ud;
    d->next_rid = 1;
    lume_timer_init(&d->poll_timer, loop, poll_tick, d);
    lume_timer_init(&d->retry_timer, loop, retry_tick, d);
    lume_timer_init(&d->answer_timer, loop, answer_tick, d);
    lume_timer_init(&d->done_timer, loop, done_tick, d);
    const char *scope = c->net.dps.id_scope;
    snprintf(d->reg_id, sizeof d->reg_id, "%s", lume_dps_registration_id(c));
    snprintf(d->url, sizeof d->url, "%s",
             c->net.dps.endpoint ? c->net.dps.endpoint : LUME_DPS_DEFAULT_ENDPOINT);
    snprintf(d->resource, sizeof d->resource, "%s/registrations/%s", scope, d->reg_id);
    snprintf(d->username, sizeof d->username, "%s/registrations/%s/api-version="
             LUME_DPS_API_VERSION, scope, d->reg_id);
    if (lume_dps_device_key(c, d->key_b64, sizeof d->key_b64, err) < 0)
        goto err;
    lume_mqtt_opts o;
    lume_mqtt_opts_default(&o);
    o.url = d->url;
    o.client_id = d->reg_id;
    o.username = d->username;
    o.clean_session = true;
    o.tls.ca_file = c->net.ca_file;
    o.tls.cert_file = c->net.cert_file;
    o.tls.key_file = c->net.key_file;
    o.tls.min_version = c->net.tls_min_version;
    o.tls.ciphers = c->net.ciphers;
    o.tls.insecure = c->net.tls_insecure;
    o.keepalive_s = c->net.keepalive_s;
    o.backoff_min_ms = c->net.backoff_min_ms;
    o.backoff_max_ms = c->net.backoff_max_ms;
    o.connect_timeout_ms = c->net.connect_timeout_ms;
    o.password = d->key_b64[0] ? on_password(d) : NULL;
    lume_mqtt_cbs cbs = {.on_state = on_state, .on_message = on_message,
                         .password = on_password};
    char *e = NULL;
    d->m = lume_mqtt_new(loop, NULL, &o, &cbs, d, &e);
    if (!d->m) {
        lume_set_err(err, "net.dps.endpoint: %s", e ? e : "cannot start");
        free(e);
        goto err;
    }
    if (lume_mqtt_add_subscription(d->m, "$dps/registrations/res/#", 1) < 0) {
        lume_set_err(err, "out of memory");
        goto err;
    }
    return d;
err:
    lume_dps_free(d);
    return NULL;
}

void lume_dps_start(lume_dps *d)
{
    lume_log(LUME_LOG_INFO, "dps", "registering %s with id scope %s at %s", d->reg_id,
             d->cfg->net.dps.id_scope, d->url);
    d->st = D_CONNECTING;
    lume_mqtt_start(d->m);
}

int lume_dps_polls(const lume_dps *d) { return d->polls; }
const char *lume_dps_last_error(const lume_dps *d) { return d->last_error; }

void lume_dps_free(lume_dps *d)
{
    if (!d)
        return;
    lume_timer_cancel(&d->poll_timer);
    lume_timer_cancel(&d->retry_timer);
    lume_timer_cancel(&d->answer_timer);
    lume_timer_cancel(&d->done_timer);
    lume_mqtt_free(d->m);
    memset(d->key_b64, 0, sizeof d->key_b64);
    memset(d->token, 0, sizeof d->token);
    free(d);
}
