/* bindings/bundles.c — script bundles pushed through the twin.
 *
 * desired.scripts.<name> = {version, source | chunks | url, sha256, soak_s,
 *                            name, seq, target, rollback, key_id, sig}
 *
 * VERIFY checks a signed bundle's manifest (core/trust/manifest.h): its name and
 * target against this device, its key id against twin.trusted_keys and
 * twin.revoked_keys, its seq against the anti-rollback floor kept per name
 * in the store (NS_SEQ), then the signature. The floor advances only when a
 * version becomes ACTIVE; what VERIFY records is a pending entry.
 *
 *                 (url)                       ok
 *   desired ──► FETCHING ──► VERIFY ──► COMPILE ──► SELF-TEST + DRY RUN
 *      │                      │  size      │ fresh       │ replay recorded
 *      │                      │  sha256    │ sandbox,    │ samples, nothing
 *      │                      │  signature │ top level   │ published
 *      ▼ same version         ▼ fails      ▼ fails       ▼ fails
 *   (nothing)              REJECTED ◄──────┴─────────────┘   (old keeps running)
 *                                                        │ ok
 *                                                        ▼
 *                      SWAP: between two ring drains; the previous version
 *                      is PARKED (kept, not live), never two versions live
 *                                                        │
 *                                                        ▼
 *                SOAKING (soak_s): gates every 100 ms — handler errors, CPU
 *                budget overruns, memory > 90% of the cap, publishes above
 *                twin.max_publish_rate, script stopped
 *                  │ passes                         │ a gate trips
 *                  ▼                                ▼
 *               ACTIVE: persisted as           ROLLED_BACK: the parked version
 *               last-known-good, the           (or the persisted last-known-good)
 *               parked version freed           swapped back; the failure counted
 *
 * A version that fails three times (counted across restarts) is QUARANTINED:
 * not tried again until a different version is desired. Every state change
 * is reported under reported.scripts.<name> = {version, status, error, since,
 * running}. On start, the last-known-good bundles run before the device
 * connects, so an offline restart runs what was last applied. */
#include "bundles.h"
#include "keep.h"
#include "lume.h"
#include "registry.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "scripts.h"
#include "twin_host.h"
#include "kv.h"
#include "loop.h"
#include "ring.h"
#include "sampler.h"
#include "tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "crypto.h"
#include "fetch.h"
#include "log.h"
#include "manifest.h"
#include "schema.h"

#define NS_LKG "lkg"
#define NS_SEQ "bundle-seq"   /* anti-rollback floor per script name (manifest.h) */
#define NS_FAIL "bundle-fail"
#define QUARANTINE_AFTER 3
#define GATE_MS 100

enum { B_NONE, B_FETCHING, B_SOAKING, B_ACTIVE, B_ROLLED_BACK, B_REJECTED, B_QUARANTINED,
       B_REMOVED };
static const char *const bstatus[] = {"none",     "fetching", "soaking",     "active",
                                      "rolled_back", "rejected", "quarantined", "removed"};

typedef struct bundle {
    struct lume_manager *mgr;
    char         *name;
    int           status;
    char         *version;          /* the version the status is about */
    char         *running;          /* the version live now (NULL: none, or a file's) */
    char         *prev_running;     /* what ran before the version under soak */
    char         *signer, *prev_signer; /* key ids of running / prev_running (NULL: unsigned) */
    char         *next_signer;      /* of the version verify() passed last */
    char         *local;            /* a refused local file: {file, sha256, error} (JSON) */
    char         *error;
    int64_t       since_ms;
    lume_script  *soaking;          /* the new version under soak */
    lume_script  *parked;           /* the previous version, during the soak */
    char         *soak_source;      /* source of the version under soak (for LKG) */
    int           soak_s;
    int64_t       soak_start_ms;
    uint64_t      base_errors, base_overruns, base_publishes;
    lume_timer    gate_timer;
    lume_fetch   *fetch;
    cJSON        *fetch_spec;
    uint64_t      seen;             /* the apply that last named it */
    bool          stored;           /* may have a last-known-good or failure count in kv */
    bool          unreported;       /* a report waits for the end of the apply */
    struct bundle *next;            /* all bundles */
    struct bundle *hnext;           /* same hash bucket */
} bundle;

/* Bundles are found by name through a hash table, and an apply reports once
 * at its end: a desired document of n entries costs O(n), not O(n^2). */
struct lume_manager {
    lume_runtime *rt;
    lume_keyring *keys;
    bundle       *bundles;
    bundle      **buckets;
    size_t        nbuckets, count;
    uint64_t      apply_gen;
    bool          applying;         /* inside lume_manager_apply: reports wait */
    size_t        logged;           /* errors logged in full during this apply */
    size_t        unlogged;
};

static int64_t now_ms(void) { return lume_wall_ms(); }

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? strdup(v) : NULL;
}

static size_t hash_name(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)(h ^ (h >> 32));
}

static bundle *find(struct lume_manager *m, const char *name)
{
    if (!m->nbuckets)
        return NULL;
    for (bundle *b = m->buckets[hash_name(name) & (m->nbuckets - 1)]; b; b = b->hnext)
        if (!strcmp(b->name, name))
            return b;
    return NULL;
}

static int grow(struct lume_manager *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
    bundle **nb = calloc(n, sizeof *nb);
    if (!nb)
        return -ENOMEM;
    for (bundle *b = m->bundles; b; b = b->next) {
        size_t i = hash_name(b->name) & (n - 1);
        b->hnext = nb[i];
        nb[i] = b;
    }
    free(m->buckets);
    m->buckets = nb;
    m->nbuckets = n;
    return 0;
}

static void gate_tick(lume_timer *t);

static bundle *get(struct lume_manager *m, const char *name)
{
    bundle *b = find(m, name);
    if (b)
        return b;
    if (m->count + 1 > m->nbuckets && grow(m) < 0)
        return NULL;
    b = calloc(1, sizeof *b);
    if (!b || !(b->name = strdup(name))) {
        free(b);
        return NULL;
    }
    b->mgr = m;
    lume_timer_init(&b->gate_timer, m->rt->loop, gate_tick, b);
    lume_timer_name(&b->gate_timer, "bundle soak");
    b->next = m->bundles;
    m->bundles = b;
    size_t i = hash_name(name) & (m->nbuckets - 1);
    b->hnext = m->buckets[i];
    m->buckets[i] = b;
    m->count++;
    return b;
}

static void bundle_free(bundle *b)
{
    lume_timer_cancel(&b->gate_timer);
    if (b->fetch)
        lume_fetch_cancel(b->fetch);
    cJSON_Delete(b->fetch_spec);
    if (b->parked)
        lume_script_free(b->parked);
    free(b->name);
    free(b->version);
    free(b->running);
    free(b->prev_running);
    free(b->signer);
    free(b->prev_signer);
    free(b->next_signer);
    free(b->local);
    free(b->error);
    free(b->soak_source);
    free(b);
}

/* Forget a bundle (its removal reported): unlinked from the list and its
 * bucket, then freed. */
static void forget(struct lume_manager *m, bundle *b)
{
    for (bundle **pp = &m->bundles; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    for (bundle **pp = &m->buckets[hash_name(b->name) & (m->nbuckets - 1)]; *pp;
         pp = &(*pp)->hnext)
        if (*pp == b) {
            *pp = b->hnext;
            break;
        }
    m->count--;
    bundle_free(b);
}

/* ---- reporting -------------------------------------------------------------- */

static void add_report(cJSON *scripts, bundle *b)
{
    if (b->status == B_REMOVED) {
        cJSON_AddNullToObject(scripts, b->name);
    } else {
        cJSON *o = cJSON_AddObjectToObject(scripts, b->name);
        if (b->version)
            cJSON_AddStringToObject(o, "version", b->version);
        else
            cJSON_AddNullToObject(o, "version");
        /* an active version a local file replaced (scripts_local_override)
         * is not what runs: fleet views count it as overridden */
        lume_script *live = lume_scripts_find(b->mgr->rt, b->name);
        bool overridden = b->status == B_ACTIVE && live && !live->managed;
        cJSON_AddStringToObject(o, "status", overridden ? "overridden" : bstatus[b->status]);
        if (b->error || overridden)
            cJSON_AddStringToObject(o, "error", overridden ? "a local file runs instead "
                                    "(scripts_local_override)" : b->error);
        else
            cJSON_AddNullToObject(o, "error");
        cJSON_AddNumberToObject(o, "since", (double)b->since_ms / 1000.0);
        /* where the code that runs under this name came from */
        if (b->running && live && live->managed)
            cJSON_AddStringToObject(o, "running", b->running);
        else if (live && live->L && !live->managed) /* a local file's: "3:ab12cd34" */
            cJSON_AddStringToObject(o, "running", live->version);
        else
            cJSON_AddNullToObject(o, "running");
        lume_scripts_add_origin(o, live, b->signer);
        cJSON *local = b->local ? cJSON_Parse(b->local) : NULL;
        if (local)
            cJSON_AddItemToObject(o, "local", local);
        else
            cJSON_AddNullToObject(o, "local");
    }
}

static void report(bundle *b)
{
    if (b->mgr->applying) { /* one patch at the end of the apply */
        b->unreported = true;
        return;
    }
    cJSON *patch = cJSON_CreateObject();
    add_report(cJSON_AddObjectToObject(patch, "scripts"), b);
    lume_twin_host_report(b->mgr->rt, patch);
}

static void set_status(bundle *b, int status, const char *version, const char *error)
{
    b->status = status;
    if (version != b->version)
        set_str(&b->version, version);
    set_str(&b->error, error);
    b->since_ms = now_ms();
    char comp[96];
    snprintf(comp, sizeof comp, "bundle %s", b->name);
    struct lume_manager *m = b->mgr;
    if (error && m->applying && m->logged >= 20) {
        m->unlogged++; /* one document naming thousands of bad bundles: summarised */
    } else if (error) {
        m->logged++;
        lume_log(LUME_LOG_ERROR, comp, "version %s %s: %s", version ? version : "?",
                 bstatus[status], error);
    } else
        lume_log(LUME_LOG_INFO, comp, "version %s %s", version ? version : "?", bstatus[status]);
    report(b);
}

/* ---- persistence: last-known-good and failure counts ------------------------- */

static void save_lkg(bundle *b, const char *version, const char *src)
{
    b->stored = true;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", version);
    if (b->signer)
        cJSON_AddStringToObject(o, "key_id", b->signer);
    cJSON_AddStringToObject(o, "source", src);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (json)
        lume_kv_set(b->mgr->rt->kv, NS_LKG, b->name, json, strlen(json), 1);
    free(json);
}

/* The persisted last-known-good: 0 and malloc'd version/source (and its
 * signer's key id, NULL when unsigned, when signer is not NULL), or -ENOENT. */
static int load_lkg(struct lume_manager *m, const char *name, char **version, char **src,
                    char **signer)
{
    void *val;
    size_t len;
    int type;
    if (lume_kv_get(m->rt->kv, NS_LKG, name, &val, &len, &type) < 0)
        return -ENOENT;
    cJSON *o = cJSON_ParseWithLength(val, len);
    free(val);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
    cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "source");
    int r = -ENOENT;
    if (cJSON_IsString(v) && cJSON_IsString(s)) {
        *version = strdup(v->valuestring);
        *src = strdup(s->valuestring);
        r = *version && *src ? 0 : -ENOMEM;
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "key_id");
        if (signer)
            *signer = cJSON_IsString(k) ? strdup(k->valuestring) : NULL;
    }
    cJSON_Delete(o);
    return r;
}

static int failures_of(bundle *b, const char *version)
{
    void *val;
    size_t len;
    int type, n = 0;
    if (lume_kv_get(b->mgr->rt->kv, NS_FAIL, b->name, &val, &len, &type) < 0)
        return 0;
    b->stored = true;
    char *nl = memchr(val, '\n', len);
    if (nl && (size_t)(nl - (char *)val) == strlen(version) && !memcmp(val, version, strlen(version)))
        n = atoi(nl + 1);
    free(val);
    return n;
}

static int count_failure(bundle *b, const char *version)
{
    b->stored = true;
    int n = failures_of(b, version) + 1;
    char buf[300];
    int len = snprintf(buf, sizeof buf, "%s\n%d", version, n);
    lume_kv_set(b->mgr->rt->kv, NS_FAIL, b->name, buf, (size_t)len, 0);
    return n;
}

/* ---- the pipeline ------------------------------------------------------------- */

static const char *version_of(const cJSON *spec, char *buf, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, "version");
    if (cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) < 64)
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "%.17g", v->valuedouble);
        return buf;
    }
    return NULL;
}


/* Concatenate `chunks`: an array of strings, or an object "0".."n-1" /
 * "1".."n". NULL with *err. */
static char *join_chunks(const cJSON *chunks, size_t *len, char **err)
{
    size_t n = (size_t)cJSON_GetArraySize(chunks);
    if (!cJSON_IsArray(chunks) && !cJSON_IsObject(chunks)) {
        *err = lume_strdupf("chunks must be an array of strings or an object of numbered strings");
        return NULL;
    }
    if (n == 0 || n > 4096) {
        *err = lume_strdupf("chunks: expected 1 to 4096 chunks, got %zu", n);
        return NULL;
    }
    const cJSON **order = calloc(n, sizeof *order);
    if (!order) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    size_t total = 0, i = 0;
    int base = 1; /* numbered keys run 1..n, or 0..n-1 when a "0" is there */
    const cJSON *c;
    cJSON_ArrayForEach(c, chunks) {
        if (!cJSON_IsString(c)) {
            *err = lume_strdupf("chunks: chunk %zu is not a string", i);
            goto fail;
        }
        if (cJSON_IsObject(chunks)) {
            char *end;
            long k = strtol(c->string, &end, 10);
            if (!c->string[0] || *end || k < 0) {
                *err = lume_strdupf("chunks: key '%s' is not a chunk number", c->string);
                goto fail;
            }
            if (k == 0)
                base = 0;
        }
        total += strlen(c->valuestring);
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(c, chunks) {
        size_t at = i;
        if (cJSON_IsObject(chunks)) {
            at = (size_t)strtol(c->string, NULL, 10) - (size_t)base;
            if (at >= n || order[at]) {
                *err = lume_strdupf("chunks: numbering must run %d..%zu without gaps or repeats",
                                    base, n - 1 + (size_t)base);
                goto fail;
            }
        }
        order[at] = c;
        i++;
    }
    char *out = malloc(total + 1);
    if (!out) {
        *err = lume_strdupf("out of memory");
        goto fail;
    }
    size_t used = 0;
    for (i = 0; i < n; i++) {
        size_t l = strlen(order[i]->valuestring);
        memcpy(out + used, order[i]->valuestring, l);
        used += l;
    }
    out[used] = 0;
    *len = used;
    free(order);
    return out;
fail:
    free(order);
    return NULL;
}

/* Replay the recorded samples through the new version's handlers, by the
 * live dispatch's own calls. 0, or -1 with the first error in
 * s->last_error. */
static int dry_run(lume_script *s)
{
    lume_runtime *rt = s->rt;
    s->dry_run = true;
    uint64_t errors = s->errors;
    size_t nch = lume_sampler_count(rt->sampler);
    lume_sample buf[LUME_RECENT];
    for (unsigned ch = 0; ch < nch && s->errors == errors; ch++) {
        unsigned n = rt->recent_n[ch] < LUME_RECENT ? rt->recent_n[ch] : LUME_RECENT;
        unsigned first = rt->recent_n[ch] < LUME_RECENT ? 0 : rt->recent_n[ch] % LUME_RECENT;
        for (unsigned k = 0; k < n; k++)
            buf[k] = rt->recent[ch * LUME_RECENT + (first + k) % LUME_RECENT];
        const char *name = lume_sampler_name(rt->sampler, ch);
        const lume_cb_list *hl = &s->cbs[LUME_CB_SAMPLE];
        lume_cb_enter(s, LUME_CB_SAMPLE);
        for (size_t h = 0; h < hl->n && s->errors == errors; h++) {
            const lume_cb *hd = &hl->v[h];
            if (hd->channel != ch || hd->dead)
                continue;
            if (hd->batch) {
                lume_script_call_batch(s, hd, buf, n, name, "dry run");
                continue;
            }
            /* by index: a handler that registers another may move hl->v */
            for (unsigned k = 0; k < n && s->errors == errors && !hl->v[h].dead; k++)
                lume_script_call_sample(s, &hl->v[h], &buf[k], name, "dry run");
        }
        lume_cb_leave(s, LUME_CB_SAMPLE);
    }
    s->dry_run = false;
    return s->errors == errors ? 0 : -1;
}

/* self_test(): a global function the script may define. 0, or -1 with why. */
static int self_test(lume_script *s, char **why)
{
    lua_State *L = s->L;
    if (lua_getglobal(L, "self_test") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pop(L, 1);
    /* run it through a tiny wrapper that turns `false` into an error */
    static const char wrap[] =
        "local ok, msg = self_test() "
        "if ok == false then error('self_test returned false' .. (msg and (': ' .. tostring(msg)) or ''), 0) end";
    uint64_t errors = s->errors;
    if (luaL_loadbufferx(L, wrap, sizeof wrap - 1, "=self_test", "t") != LUA_OK) {
        lua_pop(L, 1);
        return 0;
    }
    s->dry_run = true;
    lume_sandbox_call(s, 0, s->rt->cfg.sandbox.load_budget_ms, "self_test");
    s->dry_run = false;
    if (s->errors != errors) {
        *why = lume_strdupf("self_test failed: %s", s->last_error ? s->last_error : "?");
        return -1;
    }
    return 0;
}

static void finish_soak(bundle *b, bool passed, const char *why);
static void floor_activated(bundle *b, const char *version, const char *src);

/* This version hung the device (sandbox.c's watchdog ended the process):
 * counted as failed enough times to stay quarantined, like a crash loop. */
static void quarantine(bundle *b, const char *version, const char *why)
{
    while (count_failure(b, version) < QUARANTINE_AFTER)
        ;
    set_status(b, B_QUARANTINED, version, why);
}

/* Verified source in hand: compile, test, swap, soak. */
static void stage(bundle *b, const char *version, const char *src, size_t len, int soak_s)
{
    struct lume_manager *m = b->mgr;
    lume_runtime *rt = m->rt;
    char *err = NULL;
    char sha[65];
    lume_sha256_hex(src, len, sha);
    if (lume_scripts_hung(rt, b->name, sha, &err)) {
        quarantine(b, version, err);
        free(err);
        return;
    }
    lume_script *s = lume_scripts_build(rt, b->name, NULL, src, len, &err);
    if (!s) {
        char *why = lume_strdupf("does not load: %s", err ? err : "?");
        count_failure(b, version);
        set_status(b, B_REJECTED, version, why);
        free(why);
        free(err);
        return;
    }
    s->managed = true;
    char *why = NULL;
    if (self_test(s, &why) < 0 ||
        (dry_run(s) < 0 && (why = lume_strdupf("dry run on recorded samples failed: %s",
                                                s->last_error ? s->last_error : "?")))) {
        count_failure(b, version);
        set_status(b, B_REJECTED, version, why);
        free(why);
        lume_script_free(s);
        return;
    }
    s->errors = 0;
    s->publishes = 0;
    s->dry_publishes = 0;
    free(s->last_error);
    s->last_error = NULL;

    /* swap: the running version (file or bundle) is parked, not freed */
    lume_script *old = lume_scripts_find(rt, b->name);
    if (b->soaking) { /* a newer version arrived mid-soak: the one soaking goes */
        lume_timer_cancel(&b->gate_timer);
        old = NULL;
    }
    if (old) {
        lume_keep_hand_over(old, s); /* before it stops; undoes the dry run's changes */
        for (lume_script **pp = &rt->scripts; *pp; pp = &(*pp)->next)
            if (*pp == old) {
                *pp = old->next;
                break;
            }
        old->next = NULL;
        old->status = LUME_SCRIPT_PARKED;
        if (b->parked)
            lume_script_free(b->parked);
        b->parked = old;
    }
    lume_scripts_swap(rt, s); /* frees a version that was soaking */
    b->soaking = s;
    set_str(&b->soak_source, src);
    b->soak_s = soak_s;
    b->soak_start_ms = now_ms();
    b->base_errors = s->errors;
    b->base_overruns = s->budget_overruns;
    b->base_publishes = s->publishes;
    if (!b->soaking || b->soaking == s) {
        free(b->prev_running);
        b->prev_running = b->running ? strdup(b->running) : NULL;
        set_str(&b->prev_signer, b->signer);
    }
    set_str(&b->running, version);
    set_str(&b->signer, b->next_signer);
    set_str(&b->local, NULL); /* the twin's version replaced what ran */
    if (soak_s <= 0) {
        set_str(&b->version, version);
        finish_soak(b, true, NULL);
        return;
    }
    set_status(b, B_SOAKING, version, NULL);
    lume_timer_start(&b->gate_timer, GATE_MS * 1000);
}

static void finish_soak(bundle *b, bool passed, const char *why)
{
    lume_runtime *rt = b->mgr->rt;
    lume_timer_cancel(&b->gate_timer);
    b->soaking = NULL;
    /* the version that soaked is the one running: b->version may name a
     * newer bundle that was rejected while this one soaked */
    const char *soaked = b->running ? b->running : b->version;
    char *version = soaked ? strdup(soaked) : NULL;
    if (passed) {
        save_lkg(b, version, b->soak_source);
        floor_activated(b, version, b->soak_source);
        if (b->parked) {
            lume_script_free(b->parked);
            b->parked = NULL;
        }
        set_str(&b->soak_source, NULL);
        set_status(b, B_ACTIVE, version, NULL);
        free(version);
        return;
    }
    int fails = count_failure(b, version);
    /* roll back: the parked version, else the persisted last-known-good */
    char *lkg_version = NULL, *lkg_src = NULL, *lkg_signer = NULL;
    if (b->parked) {
        lume_script *p = b->parked;
        b->parked = NULL;
        lume_scripts_swap(rt, p); /* frees the failed version */
        set_str(&b->running, b->prev_running);
        set_str(&b->signer, b->prev_signer);
    } else if (load_lkg(b->mgr, b->name, &lkg_version, &lkg_src, &lkg_signer) == 0 &&
               strcmp(lkg_version, version)) {
        char *err = NULL;
        lume_script *p = lume_scripts_build(rt, b->name, NULL, lkg_src, strlen(lkg_src), &err);
        if (p) {
            p->managed = true;
            lume_scripts_swap(rt, p);
            set_str(&b->running, lkg_version);
            set_str(&b->signer, lkg_signer);
        } else {
            lume_scripts_unload(rt, b->name);
            set_str(&b->running, NULL);
        }
        free(err);
    } else {
        lume_scripts_unload(rt, b->name);
        set_str(&b->running, NULL);
    }
    free(lkg_version);
    free(lkg_src);
    free(lkg_signer);
    set_str(&b->soak_source, NULL);
    char *msg = lume_strdupf("%s%s", why ? why : "soak failed",
                             fails >= QUARANTINE_AFTER ? " (failed 3 times: quarantined)" : "");
    set_status(b, fails >= QUARANTINE_AFTER ? B_QUARANTINED : B_ROLLED_BACK, version, msg);
    free(msg);
    free(version);
}

static void gate_tick(lume_timer *t)
{
    bundle *b = t->ud;
    lume_runtime *rt = b->mgr->rt;
    lume_script *s = b->soaking;
    if (!s || lume_scripts_find(rt, b->name) != s) {
        /* replaced under us (a file reload): the soak is moot */
        b->soaking = NULL;
        return;
    }
    int64_t elapsed = now_ms() - b->soak_start_ms;
    char why[600];
    if (s->status == LUME_SCRIPT_STOPPED) {
        snprintf(why, sizeof why, "soak: the script was stopped: %s",
                 s->last_error ? s->last_error : "?");
        finish_soak(b, false, why);
        return;
    }
    if (s->budget_overruns > b->base_overruns) {
        snprintf(why, sizeof why, "soak: CPU budget exceeded (%llu overruns)",
                 (unsigned long long)(s->budget_overruns - b->base_overruns));
        finish_soak(b, false, why);
        return;
    }
    if (s->errors > b->base_errors) {
        snprintf(why, sizeof why, "soak: %llu handler errors, last: %s",
                 (unsigned long long)(s->errors - b->base_errors),
                 s->last_error ? s->last_error : "?");
        finish_soak(b, false, why);
        return;
    }
    if (s->mem.peak > s->mem.limit / 10 * 9) {
        snprintf(why, sizeof why, "soak: memory near its cap (%zu of %zu bytes)", s->mem.peak,
                 s->mem.limit);
        finish_soak(b, false, why);
        return;
    }
    uint64_t pubs = s->publishes - b->base_publishes;
    double per_s = (double)pubs * 1000.0 / (double)(elapsed > 1000 ? elapsed : 1000);
    if (per_s > rt->cfg.twin.max_publish_rate) {
        snprintf(why, sizeof why, "soak: publish flood (%.0f messages/s, more than "
                 "twin.max_publish_rate %d)", per_s, rt->cfg.twin.max_publish_rate);
        finish_soak(b, false, why);
        return;
    }
    if (elapsed >= (int64_t)b->soak_s * 1000) {
        finish_soak(b, true, NULL);
        return;
    }
    lume_timer_start(t, GATE_MS * 1000);
}

/* ---- verification: size, sha256, manifest, signature, anti-rollback ----------- */

/* The floor of a script name from the store: 0 (an empty floor when there is
 * none yet), or -1 with *why when the store cannot be read (fail closed). */
static int floor_load(bundle *b, lume_seq_floor *f, char **why)
{
    void *val;
    size_t len;
    int type;
    int r = lume_kv_get(b->mgr->rt->kv, NS_SEQ, b->name, &val, &len, &type);
    if (r == -ENOENT) {
        memset(f, 0, sizeof *f);
        return 0;
    }
    if (r < 0) {
        *why = lume_strdupf("cannot read the anti-rollback record of %s from the store", b->name);
        return -1;
    }
    r = lume_seq_floor_decode(val, len, f);
    free(val);
    if (r < 0) {
        *why = lume_strdupf("the anti-rollback record of %s in the store (%s) is unreadable; "
                            "refusing signed bundles for it until it is reset (docs/bundles.md)",
                            b->name, NS_SEQ);
        return -1;
    }
    return 0;
}

static int floor_save(bundle *b, const lume_seq_floor *f)
{
    char *json = lume_seq_floor_encode(f);
    int r = json ? lume_kv_set(b->mgr->rt->kv, NS_SEQ, b->name, json, strlen(json), 0) : -ENOMEM;
    free(json);
    return r;
}

/* reported.scripts.<name>.warning: set for an accepted rollback, cleared by
 * the next signed bundle that is not one. */
static void report_warning(bundle *b, const char *warning)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "scripts"), b->name);
    if (warning)
        cJSON_AddStringToObject(o, "warning", warning);
    else
        cJSON_AddNullToObject(o, "warning");
    lume_twin_host_report(b->mgr->rt, patch);
}

/* A signed bundle's manifest: for this name, for this device, by a trusted
 * key that is not revoked, not below the floor, and the signature. Refusals
 * come before the signature check where they can (refusing on a field the
 * signature does not yet vouch for is safe; accepting is not), so a replay
 * under a new version string is named a replay, not a bad signature.
 * 0 (the bundle is recorded as pending in the floor), or -1 with *why. */
static int verify_manifest(bundle *b, const lume_manifest *m, const char *sig, char **why)
{
    lume_runtime *rt = b->mgr->rt;
    char *err = NULL;
    if (strcmp(m->name, b->name)) {
        *why = lume_strdupf("bundle is for script '%s' but sits under desired.scripts.%s (the "
                            "signature covers the name: sign it for %s)", m->name, b->name,
                            b->name);
        return -1;
    }
    if (lume_manifest_target_check(m->target, rt->cfg.device_id, rt->cfg.twin.groups, &err)) {
        *why = err;
        return -1;
    }
    if (lume_keyring_check_id(b->mgr->keys, m->key_id, &err)) {
        *why = err ? err : lume_strdupf("signing key %s refused", m->key_id);
        return -1;
    }
    lume_seq_floor f;
    if (floor_load(b, &f, why) < 0)
        return -1;
    bool pending_live = b->status == B_SOAKING && f.pending.set && b->version &&
                        !strcmp(f.pending.version, b->version);
    int floor_rc = lume_seq_floor_check(&f, m, pending_live, b->name, &err);
    if (floor_rc < 0) {
        *why = err;
        return -1;
    }
    char *warning = err; /* set for an accepted rollback */
    err = NULL;
    if (lume_manifest_verify(m, sig, b->mgr->keys, &err) != 0) {
        *why = lume_strdupf("bad signature: %s (the signature covers name, version, sha256, "
                            "seq, target, rollback and key: one of them changed after signing, "
                            "or another key signed it)", err ? err : "?");
        free(err);
        free(warning);
        return -1;
    }
    lume_seq_floor_set_pending(&f, m);
    if (floor_save(b, &f) < 0) {
        *why = lume_strdupf("cannot record seq %llu of %s in the store",
                            (unsigned long long)m->seq, b->name);
        free(warning);
        return -1;
    }
    if (floor_rc == 1) {
        char comp[96];
        snprintf(comp, sizeof comp, "bundle %s", b->name);
        lume_log(LUME_LOG_WARN, comp, "%s", warning ? warning : "signed rollback accepted");
    }
    report_warning(b, floor_rc == 1 ? warning : NULL);
    free(warning);
    return 0;
}

/* A version became active: the floor advances to it when it is the bundle
 * verify_manifest recorded as pending (an unsigned bundle leaves it). */
static void floor_activated(bundle *b, const char *version, const char *src)
{
    lume_seq_floor f;
    char *why = NULL;
    if (!version || !src || floor_load(b, &f, &why) < 0) {
        free(why);
        return;
    }
    if (!f.pending.set)
        return;
    char hex[65];
    lume_sha256_hex(src, strlen(src), hex);
    if (lume_seq_floor_commit(&f, version, hex)) {
        char comp[96];
        snprintf(comp, sizeof comp, "bundle %s", b->name);
        lume_log(LUME_LOG_INFO, comp, "anti-rollback floor: seq %llu (version %s active, seq %llu)",
                 (unsigned long long)f.seq, f.version, (unsigned long long)f.active_seq);
    }
    if (floor_save(b, &f) < 0)
        lume_log(LUME_LOG_ERROR, "bundle", "%s: cannot save the anti-rollback floor", b->name);
}

/* Size, sha256, signed manifest (or unsigned, when allowed). 0, or -1 with
 * *why. */
static int verify(bundle *b, const cJSON *spec, const char *src, size_t len, char **why)
{
    lume_runtime *rt = b->mgr->rt;
    if ((int64_t)len > rt->cfg.twin.max_script_bytes) {
        *why = lume_strdupf("bundle too large: %zu bytes, more than twin.max_script_bytes (%lld)",
                            len, (long long)rt->cfg.twin.max_script_bytes);
        return -1;
    }
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(spec, "sha256");
    if (sha) {
        char hex[65];
        lume_sha256_hex(src, len, hex);
        if (!cJSON_IsString(sha) || strcasecmp(sha->valuestring, hex)) {
            *why = lume_strdupf("sha256 mismatch: the bundle says %s, the source hashes to %s",
                                cJSON_IsString(sha) ? sha->valuestring : "(not a string)", hex);
            return -1;
        }
    }
    lume_manifest m;
    const char *sig = NULL;
    char *err = NULL;
    int r = lume_manifest_from_bundle(spec, &m, &sig, &err);
    if (r == -ENOENT) {
        if (!rt->cfg.twin.allow_unsigned) {
            *why = lume_strdupf("unsigned bundle: a sig is required (twin.allow_unsigned is false)");
            return -1;
        }
        set_str(&b->next_signer, NULL);
        return 0;
    }
    if (r < 0) {
        *why = r == -EPROTO ? err : lume_strdupf("bad manifest: %s", err ? err : "?");
        if (r != -EPROTO)
            free(err);
        return -1;
    }
    if (verify_manifest(b, &m, sig, why) < 0)
        return -1;
    set_str(&b->next_signer, m.key_id);
    return 0;
}

static int soak_of(const cJSON *spec)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(spec, "soak_s");
    if (cJSON_IsNumber(s) && s->valuedouble >= 0 && s->valuedouble <= 86400)
        return (int)s->valuedouble;
    return 0;
}

static void fetched(void *ud, int status, const char *err, const void *body, size_t len)
{
    bundle *b = ud;
    b->fetch = NULL;
    cJSON *spec = b->fetch_spec;
    b->fetch_spec = NULL;
    char vbuf[64];
    const char *version = version_of(spec, vbuf, sizeof vbuf);
    char *v = strdup(version ? version : "?");
    if (status != 0) {
        count_failure(b, v);
        set_status(b, B_REJECTED, v, err ? err : "fetch failed");
    } else {
        char *why = NULL;
        if (verify(b, spec, body, len, &why) < 0) {
            count_failure(b, v);
            set_status(b, B_REJECTED, v, why);
            free(why);
        } else {
            char *src = malloc(len + 1);
            if (src) {
                memcpy(src, body, len);
                src[len] = 0;
                stage(b, v, src, len, soak_of(spec));
                free(src);
            }
        }
    }
    free(v);
    cJSON_Delete(spec);
}

static void process(struct lume_manager *m, bundle *b, const cJSON *spec)
{
    const char *name = b->name;
    char vbuf[64];
    const char *version = version_of(spec, vbuf, sizeof vbuf);
    if (!lume_script_name_valid(name)) {
        set_status(b, B_REJECTED, version, "unknown script name format: use letters, digits, "
                                           "_ and - (at most 64)");
        return;
    }
    if (!cJSON_IsObject(spec)) {
        set_status(b, B_REJECTED, NULL, "a bundle must be an object {version, source | chunks "
                                        "| url, sha256, sig, soak_s}");
        return;
    }
    if (!version) {
        set_status(b, B_REJECTED, NULL, "bundle has no version (a string or a number)");
        return;
    }
    /* nothing to do when this version is live, soaking, or being fetched */
    if (b->version && !strcmp(b->version, version) &&
        (b->status == B_ACTIVE || b->status == B_SOAKING || b->status == B_FETCHING ||
         b->status == B_QUARANTINED))
        return;
    char path[128], where[256], bad[700];
    snprintf(path, sizeof path, "scripts.%s", name);
    /* the schema `lume twin set` checks too (core/store/schema.c) */
    if (lume_twin_schema_check(path, spec, where, sizeof where, bad, sizeof bad) < 0) {
        set_status(b, B_REJECTED, version, bad);
        return;
    }
    if (failures_of(b, version) >= QUARANTINE_AFTER) {
        set_status(b, B_QUARANTINED, version,
                   "this version failed 3 times; push a different version");
        return;
    }
    if (b->fetch) {
        lume_fetch_cancel(b->fetch);
        b->fetch = NULL;
        cJSON_Delete(b->fetch_spec);
        b->fetch_spec = NULL;
    }
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(spec, "source");
    const cJSON *chunks = cJSON_GetObjectItemCaseSensitive(spec, "chunks");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(spec, "url");
    int given = !!source + !!chunks + !!url;
    char *why = NULL;
    if (given != 1) {
        set_status(b, B_REJECTED, version, "a bundle needs exactly one of source, chunks, url");
        return;
    }
    if (url) {
        if (!cJSON_IsString(url) || !cJSON_GetObjectItemCaseSensitive(spec, "sha256")) {
            set_status(b, B_REJECTED, version, cJSON_IsString(url)
                                                   ? "a bundle with a url needs its sha256"
                                                   : "url must be a string");
            return;
        }
        lume_runtime *rt = m->rt;
        lume_tls_opts tls = {.ca_file = rt->cfg.twin.fetch_ca_file ? rt->cfg.twin.fetch_ca_file
                                                                   : rt->cfg.net.ca_file};
        char *err = NULL;
        b->fetch_spec = cJSON_Duplicate(spec, 1);
        b->fetch = lume_fetch_start(rt->loop, url->valuestring, &tls,
                                    (size_t)rt->cfg.twin.max_script_bytes,
                                    rt->cfg.twin.fetch_timeout_ms, fetched, b, &err);
        if (!b->fetch) {
            cJSON_Delete(b->fetch_spec);
            b->fetch_spec = NULL;
            count_failure(b, version);
            set_status(b, B_REJECTED, version, err ? err : "cannot fetch");
            free(err);
            return;
        }
        set_status(b, B_FETCHING, version, NULL);
        return;
    }
    size_t len = 0;
    char *src = NULL;
    if (source) {
        if (!cJSON_IsString(source)) {
            set_status(b, B_REJECTED, version, "source must be a string");
            return;
        }
        src = strdup(source->valuestring);
        len = strlen(source->valuestring);
    } else {
        src = join_chunks(chunks, &len, &why);
        if (!src) {
            set_status(b, B_REJECTED, version, why);
            free(why);
            return;
        }
    }
    if (verify(b, spec, src, len, &why) < 0) {
        count_failure(b, version);
        set_status(b, B_REJECTED, version, why);
        free(why);
        free(src);
        return;
    }
    stage(b, version, src, len, soak_of(spec));
    free(src);
}

static void remove_bundle(struct lume_manager *m, bundle *b)
{
    lume_timer_cancel(&b->gate_timer);
    if (b->fetch) {
        lume_fetch_cancel(b->fetch);
        b->fetch = NULL;
    }
    lume_script *s = lume_scripts_find(m->rt, b->name);
    if (s && s->managed)
        lume_scripts_unload(m->rt, b->name);
    b->soaking = NULL;
    if (b->parked) {
        /* the version before the bundle (a file script) comes back; an
         * earlier version of the bundle goes with it */
        if (b->parked->managed)
            lume_script_free(b->parked);
        else
            lume_scripts_swap(m->rt, b->parked);
        b->parked = NULL;
    }
    if (b->stored) { /* a bundle that never got that far has nothing to delete */
        lume_kv_del(m->rt->kv, NS_LKG, b->name);
        lume_kv_del(m->rt->kv, NS_FAIL, b->name);
    }
    set_str(&b->running, NULL);
    set_str(&b->signer, NULL);
    set_str(&b->local, NULL);
    set_status(b, B_REMOVED, b->version, NULL);
}

void lume_manager_apply(struct lume_manager *m, const cJSON *scripts)
{
    if (scripts && !cJSON_IsObject(scripts)) {
        lume_twin_host_error(m->rt, "scripts", "must be an object {name: bundle}");
        return;
    }
    lume_twin_host_error(m->rt, "scripts", NULL);
    uint64_t gen = ++m->apply_gen;
    m->applying = true;
    m->logged = m->unlogged = 0;
    const cJSON *spec;
    cJSON_ArrayForEach(spec, scripts) {
        bundle *b = get(m, spec->string);
        if (!b)
            continue;
        b->seen = gen;
        process(m, b, spec);
    }
    for (bundle *b = m->bundles; b; b = b->next)
        if (b->seen != gen && b->status != B_REMOVED)
            remove_bundle(m, b);
    m->applying = false;
    if (m->unlogged)
        lume_log(LUME_LOG_ERROR, "bundle", "%zu more bundles in this document failed (the first "
                 "%zu are logged above; every one is in reported.scripts)", m->unlogged,
                 m->logged);
    /* one reported patch for the whole document; removed bundles, reported
     * as null, are forgotten */
    cJSON *patch = cJSON_CreateObject();
    cJSON *rep = cJSON_AddObjectToObject(patch, "scripts");
    for (bundle *b = m->bundles, *nx; b; b = nx) {
        nx = b->next;
        lume_script *live = lume_scripts_find(m->rt, b->name);
        if (b->status == B_REMOVED && live && !live->managed) {
            b->unreported = false;  /* the file's script is back under the name */
            lume_scripts_add_local(rep, live);
        } else if (b->unreported) {
            b->unreported = false;
            add_report(rep, b);
        }
        if (b->status == B_REMOVED)
            forget(m, b);
    }
    if (rep && rep->child) /* rep NULL: out of memory, the statuses go unreported */
        lume_twin_host_report(m->rt, patch);
    else
        cJSON_Delete(patch);
}

static int restore_one(void *ud, const char *key, const void *val, size_t len, int type)
{
    struct lume_manager *m = ud;
    (void)val, (void)len, (void)type;
    char *version = NULL, *src = NULL, *signer = NULL;
    if (load_lkg(m, key, &version, &src, &signer) == 0) {
        char *err = NULL;
        char sha[65];
        lume_sha256_hex(src, strlen(src), sha);
        bundle *b = get(m, key);
        if (b)
            b->stored = true;
        if (b && lume_scripts_hung(m->rt, key, sha, &err)) {
            /* the last-known-good hung the device: it never comes back */
            quarantine(b, version, err);
            free(err);
            free(version);
            free(src);
            free(signer);
            return 0;
        }
        /* no bundle (out of memory): nothing would own the script */
        lume_script *s = b ? lume_scripts_build(m->rt, key, NULL, src, strlen(src), &err) : NULL;
        if (s) {
            s->managed = true;
            lume_scripts_swap(m->rt, s);
            set_str(&b->running, version);
            set_str(&b->signer, signer);
            set_str(&b->version, version);
            b->status = B_ACTIVE;
            b->since_ms = now_ms();
            report(b);
        } else {
            lume_log(LUME_LOG_ERROR, "bundle", "%s: last-known-good version %s does not load: %s",
                     key, version, err ? err : "out of memory");
        }
        free(err);
    }
    free(version);
    free(src);
    free(signer);
    return 0;
}

void lume_manager_report_local(struct lume_manager *m, const char *name)
{
    bundle *b = find(m, name);
    if (b && b->status != B_REMOVED) {
        report(b); /* the bundle's entry says what runs */
        return;
    }
    lume_script *s = lume_scripts_find(m->rt, name);
    cJSON *patch = cJSON_CreateObject();
    cJSON *rep = cJSON_AddObjectToObject(patch, "scripts");
    if (s && !s->managed)
        lume_scripts_add_local(rep, s);
    else if (!s)
        cJSON_AddNullToObject(rep, name);
    lume_twin_host_report(m->rt, patch);
}

bool lume_manager_may_override(struct lume_manager *m, const char *name)
{
    bundle *b = m ? find(m, name) : NULL;
    return !b || !b->soaking; /* a soak watches the script it swapped in */
}

void lume_manager_local_refused(struct lume_manager *m, const char *name, const char *file,
                                const char *sha256, const char *why)
{
    bundle *b = m ? find(m, name) : NULL;
    if (!b)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", file);
    if (sha256)
        cJSON_AddStringToObject(o, "sha256", sha256);
    else
        cJSON_AddNullToObject(o, "sha256");
    cJSON_AddStringToObject(o, "status", "refused");
    char *msg = lume_strdupf("local file %s not loaded: %s (the device's config does not set "
                             "scripts_local_override)", file, why);
    cJSON_AddStringToObject(o, "error", msg ? msg : why);
    free(msg);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(b->local);
    b->local = json;
    report(b);
}

const char *lume_manager_running_version(struct lume_manager *m, const char *name)
{
    bundle *b = m ? find(m, name) : NULL;
    return b ? b->running : NULL;
}

void lume_manager_restore(struct lume_manager *m)
{
    lume_kv_each(m->rt->kv, NS_LKG, restore_one, m);
    /* the local files' scripts the twin does not own: reported as local */
    cJSON *patch = cJSON_CreateObject();
    cJSON *rep = cJSON_AddObjectToObject(patch, "scripts");
    for (lume_script *s = m->rt->scripts; s && rep; s = s->next)
        if (!s->managed && s->path && !find(m, s->name))
            lume_scripts_add_local(rep, s);
    if (rep && rep->child)
        lume_twin_host_report(m->rt, patch);
    else
        cJSON_Delete(patch);
}

struct lume_manager *lume_manager_new(lume_runtime *rt, char **err)
{
    struct lume_manager *m = calloc(1, sizeof *m);
    if (!m) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    m->rt = rt;
    const char *paths[16];
    size_t n = 0;
    char *list = rt->cfg.twin.trusted_keys ? strdup(rt->cfg.twin.trusted_keys) : NULL;
    for (char *save = NULL, *p = list ? strtok_r(list, ",", &save) : NULL; p && n < 16;
         p = strtok_r(NULL, ",", &save))
        paths[n++] = p;
    m->keys = lume_keyring_load(paths, n, err);
    free(list);
    if (!m->keys) {
        char *e = *err;
        *err = lume_strdupf("twin.trusted_keys: %s", e ? e : "cannot load");
        free(e);
        free(m);
        return NULL;
    }
    list = rt->cfg.twin.revoked_keys ? strdup(rt->cfg.twin.revoked_keys) : NULL;
    for (char *save = NULL, *p = list ? strtok_r(list, ",", &save) : NULL; p;
         p = strtok_r(NULL, ",", &save)) {
        char *e = NULL;
        if (lume_keyring_revoke(m->keys, p, &e) < 0) {
            *err = lume_strdupf("twin.revoked_keys: %s", e ? e : "cannot revoke");
            free(e);
            free(list);
            lume_keyring_free(m->keys);
            free(m);
            return NULL;
        }
    }
    free(list);
    for (size_t i = 0; i < lume_keyring_count(m->keys); i++) {
        const char *id = lume_keyring_key_id(m->keys, i);
        bool revoked = lume_keyring_revoked(m->keys, id);
        lume_log(revoked ? LUME_LOG_WARN : LUME_LOG_INFO, "twin", "trusted key %s: %s%s", id,
                 lume_keyring_key_path(m->keys, i),
                 revoked ? " (revoked by twin.revoked_keys: its signatures are refused)" : "");
    }
    return m;
}

cJSON *lume_manager_trust_json(const struct lume_manager *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = o ? cJSON_AddArrayToObject(o, "trusted_keys") : NULL;
    if (!ids || !cJSON_AddBoolToObject(o, "signed_only", !m->rt->cfg.twin.allow_unsigned)) {
        cJSON_Delete(o);
        return NULL;
    }
    for (size_t i = 0; i < lume_keyring_count(m->keys); i++) {
        const char *id = lume_keyring_key_id(m->keys, i);
        if (!lume_keyring_revoked(m->keys, id))
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
    }
    return o;
}

void lume_manager_free(struct lume_manager *m)
{
    if (!m)
        return;
    for (bundle *b = m->bundles, *nx; b; b = nx) {
        nx = b->next;
        bundle_free(b);
    }
    free(m->buckets);
    lume_keyring_free(m->keys);
    free(m);
}
