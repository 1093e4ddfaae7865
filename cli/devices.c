/* cli/devices.c — what the devices report, read by the operator commands
 * (push --wait, rollout, fleet status): every device's retained reported
 * document, its status ("online", or "offline" from its last will) and its
 * latest heartbeat, where the dialect keeps them (lume_hub_operator_topic).
 *
 * Reading a fleet is one burst: one subscription per kind of document
 * ("lume/+/reported", "lume/+/status", "lume/+/health" in the mqtt
 * dialect) and then a PUBLISH to a topic of this client's own that it also
 * subscribed to. A broker hands over the retained messages of a SUBSCRIBE
 * before it handles the next packet of the same connection, so when the
 * sentinel comes back, every retained document has arrived — no quiet
 * period to wait out, whether there are 3 devices or 3,000. (A broker that
 * breaks this order makes the read return early; max_ms bounds it when
 * the sentinel never comes.) The subscriptions stay, so a wait sees each
 * device's documents change as they change.
 *
 * The outcome of a push, per device (lume_ops_outcome_of):
 *
 *   PENDING ──(desired_versions[layer] >= the $version published, and
 *      │       reported.scripts.NAME settled: not soaking, not fetching)
 *      ├──► ACTIVE       status active, running the version pushed
 *      ├──► ROLLED_BACK  status rolled_back or quarantined: error says why
 *      ├──► REJECTED     status rejected (error says why), or another
 *      │                 layer's bundle wins (the device's own document)
 *      └──(timeout)──► NO_ANSWER   with what is known: offline, never
 *                                  reported, not yet applied, still soaking */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "hub.h"
#include "log.h"

static const char *const OUTCOME[] = {"pending", "active", "rolled_back", "rejected",
                                      "no_answer"};

const char *lume_ops_outcome_name(int outcome)
{
    return outcome >= 0 && outcome <= LUME_OUT_NO_ANSWER ? OUTCOME[outcome] : "?";
}

/* ---- the index of devices by id --------------------------------------------- */

static size_t hash_id(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)(h ^ (h >> 32));
}

static int reindex(lume_ops_fleet *f, size_t want)
{
    size_t n = 64;
    while (n < want * 2)
        n *= 2;
    size_t *ix = malloc(n * sizeof *ix);
    if (!ix)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        ix[i] = SIZE_MAX;
    for (size_t k = 0; k < f->n; k++) {
        size_t i = hash_id(f->v[k].id) & (n - 1);
        while (ix[i] != SIZE_MAX)
            i = (i + 1) & (n - 1);
        ix[i] = k;
    }
    free(f->index);
    f->index = ix;
    f->nindex = n;
    return 0;
}

lume_ops_device *lume_ops_fleet_device(lume_ops_fleet *f, const char *id)
{
    if (f->nindex) {
        for (size_t i = hash_id(id) & (f->nindex - 1); f->index[i] != SIZE_MAX;
             i = (i + 1) & (f->nindex - 1))
            if (!strcmp(f->v[f->index[i]].id, id))
                return &f->v[f->index[i]];
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        lume_ops_device *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return NULL;
        f->v = v;
        f->cap = cap;
    }
    if ((f->n + 1) * 2 > f->nindex && reindex(f, f->n + 1) < 0)
        return NULL;
    lume_ops_device *d = &f->v[f->n];
    memset(d, 0, sizeof *d);
    if (!(d->id = strdup(id)))
        return NULL;
    size_t i = hash_id(id) & (f->nindex - 1);
    while (f->index[i] != SIZE_MAX)
        i = (i + 1) & (f->nindex - 1);
    f->index[i] = f->n++;
    return d;
}

/* ---- the burst and the updates ------------------------------------------------ */

/* Does topic match filter (levels, '+' one level)? The '+' level (or, for
 * a device's own topic, the device of the selection) goes to id. */
static bool match(const char *filter, const char *topic, const char *dflt, char *id, size_t cap)
{
    bool captured = false;
    while (*filter && *topic) {
        const char *fe = strchr(filter, '/'), *te = strchr(topic, '/');
        size_t fl = fe ? (size_t)(fe - filter) : strlen(filter);
        size_t tl = te ? (size_t)(te - topic) : strlen(topic);
        if (fl == 1 && *filter == '+') {
            if (tl + 1 > cap || !tl)
                return false;
            memcpy(id, topic, tl);
            id[tl] = 0;
            captured = true;
        } else if (fl != tl || memcmp(filter, topic, fl)) {
            return false;
        }
        filter += fl + (fe ? 1 : 0);
        topic += tl + (te ? 1 : 0);
        if (!fe != !te)
            return false;
        if (!fe)
            break;
    }
    if (*filter || *topic)
        return false;
    if (!captured) {
        if (!dflt)
            return false;
        snprintf(id, cap, "%s", dflt);
    }
    return true;
}

static bool on_doc(void *ud, const char *topic, const char *payload, size_t len)
{
    lume_ops_fleet *f = ud;
    f->last_ms = lume_mono_ns() / LUME_NS_PER_MS;
    if (!strcmp(topic, f->sync)) {
        f->synced = true;
        return true;
    }
    char id[256];
    for (size_t k = 0; k < f->nfilters; k++) {
        if (!match(f->filters[k], topic, f->device, id, sizeof id))
            continue;
        lume_ops_device *d = lume_ops_fleet_device(f, id);
        if (!d)
            return true;
        if (k == 1) {
            char was[16];
            snprintf(was, sizeof was, "%s", d->status);
            snprintf(d->status, sizeof d->status, "%.*s", (int)(len < 15 ? len : 15), payload);
            if (f->synced && strcmp(was, d->status))
                d->status_at = (double)lume_wall_ns() / 1e9;
            return true;
        }
        cJSON **doc = k == 0 ? &d->reported : &d->health;
        cJSON_Delete(*doc);
        *doc = len ? cJSON_ParseWithLength(payload, len) : NULL; /* empty: deleted */
        if (*doc && !cJSON_IsObject(*doc)) {
            cJSON_Delete(*doc);
            *doc = NULL;
        }
        return true;
    }
    return false; /* not a device's document: the client's own collect */
}

/* The burst has ended: the sentinel came back, or (a broker whose ACL
 * refuses this client's topic never echoes it) nothing arrived for
 * QUIET_MS. */
#define QUIET_MS 1000
static bool is_synced(void *ud)
{
    lume_ops_fleet *f = ud;
    return f->synced || lume_mono_ns() / LUME_NS_PER_MS - f->last_ms >= QUIET_MS;
}
static bool never(void *ud) { (void)ud; return false; }

int lume_ops_fleet_read(lume_ops_client *c, lume_ops_fleet *f, const char *group,
                        const char *device, int max_ms)
{
    memset(f, 0, sizeof *f);
    f->c = c;
    f->group = group;
    f->device = device;
    static const lume_hub_doc each[3] = {LUME_HUB_ALL_REPORTED, LUME_HUB_ALL_STATUS,
                                         LUME_HUB_ALL_HEALTH};
    static const lume_hub_doc one[3] = {LUME_HUB_DEVICE_REPORTED, LUME_HUB_DEVICE_STATUS,
                                        LUME_HUB_DEVICE_HEALTH};
    for (size_t k = 0; k < 3; k++)
        if (!lume_hub_operator_topic(&c->cfg, device ? one[k] : each[k], device,
                                     f->filters[k], sizeof f->filters[k])) {
            fprintf(stderr, "lume: the %s dialect keeps no device documents an operator can "
                            "read over MQTT (its hub's service API has them)\n",
                    c->cfg.net.dialect ? c->cfg.net.dialect : "mqtt");
            return EXIT_FAIL;
        }
    f->nfilters = 3;
    snprintf(f->sync, sizeof f->sync, "lume-ops/sync/%d-%lld", (int)getpid(),
             (long long)(lume_mono_ns() % 1000000000));
    c->tap = on_doc;
    c->tap_ud = f;
    /* QoS 0: a broker's queue limits for QoS 1 (mosquitto's
     * max_queued_messages, 1000 by default) would drop a large burst */
    for (size_t k = 0; k < 3; k++)
        lume_mqtt_add_subscription(c->m, f->filters[k], 0);
    lume_mqtt_add_subscription(c->m, f->sync, 0);
    lume_mqtt_publish_now(c->m, f->sync, "sync", 4, false);
    f->last_ms = lume_mono_ns() / LUME_NS_PER_MS;
    int64_t end = f->last_ms + max_ms;
    while (!is_synced(f) && lume_mono_ns() / LUME_NS_PER_MS < end)
        lume_loop_drain(c->loop, 100, is_synced, f); /* slices: the quiet is a time */
    if (!is_synced(f))
        fprintf(stderr, "lume: the retained documents were still arriving after %d ms; going "
                        "on with the %zu devices read so far\n", max_ms, f->n);
    else if (!f->synced)
        fprintf(stderr, "lume: the broker did not echo this client's sentinel (%s: an ACL?); "
                        "took the end of the retained documents from %d ms of quiet\n",
                f->sync, QUIET_MS);
    return 0;
}

void lume_ops_fleet_turn(lume_ops_fleet *f, int ms)
{
    lume_loop_drain(f->c->loop, ms, never, NULL);
}

void lume_ops_fleet_free(lume_ops_fleet *f)
{
    if (f->c && f->c->tap_ud == f) {
        f->c->tap = NULL;
        /* a later read subscribes again, and the broker hands the retained
         * documents over again */
        for (size_t k = 0; k < f->nfilters; k++)
            lume_mqtt_remove_subscription(f->c->m, f->filters[k]);
        lume_mqtt_remove_subscription(f->c->m, f->sync);
    }
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].id);
        cJSON_Delete(f->v[i].reported);
        cJSON_Delete(f->v[i].health);
        free(f->v[i].reason);
        free(f->v[i].prev);
    }
    free(f->v);
    free(f->index);
    memset(f, 0, sizeof *f);
}

bool lume_ops_selected(const lume_ops_fleet *f, const lume_ops_device *d)
{
    if (f->device)
        return !strcmp(d->id, f->device);
    if (!f->group)
        return d->reported != NULL;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(d->reported, "lume"), "groups"))
        if (cJSON_IsString(g) && !strcmp(g->valuestring, f->group))
            return true;
    return false;
}

double lume_ops_last_heard(const lume_ops_device *d)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(d->health, "t");
    return cJSON_IsNumber(t) ? t->valuedouble : 0;
}

/* ---- outcomes ---------------------------------------------------------------- */

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int lume_ops_outcome_of(const lume_ops_device *d, const char *layer, double layer_version,
                        const char *name, const char *version, char **why)
{
    *why = NULL;
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(d->reported, "desired_versions"), layer);
    if (!cJSON_IsNumber(dv) || dv->valuedouble < layer_version)
        return LUME_OUT_PENDING;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(d->reported, "scripts"), name);
    if (!version) /* a bundle taken away: settled when the entry is gone */
        return cJSON_IsObject(e) ? LUME_OUT_PENDING : LUME_OUT_ACTIVE;
    const char *v = str(e, "version"), *st = str(e, "status"), *err = str(e, "error");
    if (!v || !st)
        return LUME_OUT_PENDING;
    if (strcmp(v, version)) {
        *why = lume_strdupf("another layer's bundle wins here: the device runs version %s of %s "
                            "(%s; its own desired document overrides the group's)",
                            str(e, "running") ? str(e, "running") : v, name, st);
        return LUME_OUT_REJECTED;
    }
    if (!strcmp(st, "active")) {
        const char *run = str(e, "running");
        return run && !strcmp(run, version) ? LUME_OUT_ACTIVE : LUME_OUT_PENDING;
    }
    if (!strcmp(st, "rolled_back") || !strcmp(st, "quarantined")) {
        *why = lume_strdupf("%s%s%s", err ? err : st,
                            !strcmp(st, "quarantined") ? " [quarantined]" : "",
                            str(e, "running") ? "" : " (nothing runs now)");
        return LUME_OUT_ROLLED_BACK;
    }
    if (!strcmp(st, "rejected")) {
        *why = strdup(err ? err : "rejected");
        return LUME_OUT_REJECTED;
    }
    return LUME_OUT_PENDING; /* soaking, fetching */
}

static void ago(double t, char *buf, size_t cap)
{
    if (t <= 0) {
        snprintf(buf, cap, "never heard from");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    double d = (double)lume_wall_ns() / 1e9 - t;
    snprintf(buf, cap, "last heard %s, %.0f s ago", when, d < 0 ? 0 : d);
}

/* Why a device has not answered, in words (malloc'd). */
static char *no_answer_why(const lume_ops_device *d, const char *layer, double lv,
                           const char *name)
{
    char heard[96];
    ago(lume_ops_last_heard(d), heard, sizeof heard);
    if (!d->reported)
        return lume_strdupf("no reported document (%s)", heard);
    if (!strcmp(d->status, "offline") && d->status_at > 0)
        return lume_strdupf("went offline %.0f s ago, during the wait (%s)",
                            (double)lume_wall_ns() / 1e9 - d->status_at, heard);
    if (!strcmp(d->status, "offline"))
        return lume_strdupf("offline (%s)", heard);
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(d->reported, "desired_versions"), layer);
    if (!cJSON_IsNumber(dv) || dv->valuedouble < lv) {
        char held[32] = "none";
        if (cJSON_IsNumber(dv))
            snprintf(held, sizeof held, "%.0f", dv->valuedouble);
        return lume_strdupf("has not applied $version %.0f of %s (holds %s; %s)", lv, layer, held,
                            heard);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(d->reported, "scripts"), name);
    return lume_strdupf("still %s (%s)", str(e, "status") ? str(e, "status") : "settling",
                        heard);
}

size_t lume_ops_wait(lume_ops_fleet *f, const char *layer, double layer_version,
                     const char *name, const char *version, int timeout_s)
{
    int64_t end = lume_mono_ns() / LUME_NS_PER_MS + (int64_t)timeout_s * 1000;
    bool tty = isatty(2), count = !f->device;
    char last[200] = "";
    size_t failed = 0;
    for (;;) {
        size_t n[LUME_OUT_NO_ANSWER + 1] = {0}, total = 0;
        for (size_t i = 0; i < f->n; i++) {
            lume_ops_device *d = &f->v[i];
            if (!lume_ops_selected(f, d))
                continue;
            total++;
            if (d->outcome == LUME_OUT_PENDING) {
                free(d->reason);
                d->outcome = lume_ops_outcome_of(d, layer, layer_version, name, version,
                                                 &d->reason);
            }
            n[d->outcome]++;
        }
        int64_t left = end - lume_mono_ns() / LUME_NS_PER_MS;
        if (count) {
            char line[200];
            snprintf(line, sizeof line, "%zu devices: %zu active, %zu rolled back, %zu rejected, "
                     "%zu waiting", total, n[LUME_OUT_ACTIVE], n[LUME_OUT_ROLLED_BACK],
                     n[LUME_OUT_REJECTED], n[LUME_OUT_PENDING]);
            if (strcmp(line, last)) {
                fprintf(stderr, tty ? "\r\033[K%s" : "%s\n", line);
                snprintf(last, sizeof last, "%s", line);
            }
        }
        if (!n[LUME_OUT_PENDING] || left <= 0) {
            if (count && tty)
                fputc('\n', stderr);
            failed = total - n[LUME_OUT_ACTIVE];
            break;
        }
        lume_ops_fleet_turn(f, left < 100 ? (int)left : 100);
    }
    for (size_t i = 0; i < f->n; i++) {
        lume_ops_device *d = &f->v[i];
        if (lume_ops_selected(f, d) && d->outcome == LUME_OUT_PENDING) {
            d->outcome = LUME_OUT_NO_ANSWER;
            free(d->reason);
            d->reason = no_answer_why(d, layer, layer_version, name);
        }
    }
    return failed;
}

static int by_id(const void *a, const void *b)
{
    return strcmp((*(const lume_ops_device *const *)a)->id,
                  (*(const lume_ops_device *const *)b)->id);
}

void lume_ops_print_outcomes(const lume_ops_fleet *f, FILE *out)
{
    const lume_ops_device **v = malloc((f->n ? f->n : 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; v && i < f->n; i++)
        if (lume_ops_selected(f, &f->v[i]))
            v[n++] = &f->v[i];
    if (v)
        qsort(v, n, sizeof *v, by_id);
    for (size_t i = 0; v && i < n; i++)
        if (v[i]->reason)
            fprintf(out, "%-24s %-12s %s\n", v[i]->id, lume_ops_outcome_name(v[i]->outcome),
                    v[i]->reason);
        else
            fprintf(out, "%-24s %s\n", v[i]->id, lume_ops_outcome_name(v[i]->outcome));
    free(v);
}

size_t lume_ops_unsigned_refusers(const lume_ops_fleet *f, const char *key_id, char *buf,
                                  size_t cap)
{
    size_t n = 0, used = 0, shown = 0;
    buf[0] = 0;
    const lume_ops_device **v = malloc((f->n ? f->n : 1) * sizeof *v);
    for (size_t i = 0; v && i < f->n; i++)
        v[i] = &f->v[i];
    if (v)
        qsort(v, f->n, sizeof *v, by_id); /* named in order */
    for (size_t i = 0; v && i < f->n; i++) {
        const lume_ops_device *d = v[i];
        if (!lume_ops_selected(f, d))
            continue;
        const cJSON *trust = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(d->reported, "lume"), "trust");
        bool hit;
        if (!key_id) {
            hit = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(trust, "signed_only"));
        } else {
            const cJSON *keys = cJSON_GetObjectItemCaseSensitive(trust, "trusted_keys"), *k;
            hit = cJSON_IsArray(keys);
            cJSON_ArrayForEach(k, keys)
                if (cJSON_IsString(k) && !strcmp(k->valuestring, key_id))
                    hit = false;
        }
        if (!hit)
            continue;
        n++;
        if (shown < 10 && used < cap) {
            used += (size_t)snprintf(buf + used, cap - used, "%s%s", shown ? ", " : "", d->id);
            shown++;
        }
    }
    free(v);
    if (n > shown && used < cap)
        snprintf(buf + used, cap - used, " and %zu more", n - shown);
    return n;
}
