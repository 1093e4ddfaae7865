/* cli/rollout.c — a script, ring by ring, with health gates:
 *
 *   lume rollout SCRIPT.lua --rings R1,R2,... [--gate G] [--bake S] [--timeout S]
 *                [--key KEY | --unsigned] [--name N] [--version V] [--soak S]
 *                [--state FILE] [--broker URL | --config FILE]
 *   lume rollout --resume [--state FILE | --name N]
 *
 * A ring is a group (twin.groups). For each ring in order:
 *
 *   PUSH ──► WAIT ──► BAKE ──► CHECK ──pass──► the next ring's PUSH ... DONE (exit 0)
 *    │        │ gates   (bake S)   │ gates, errors
 *    │        └─fail──────────────┴─fail──► RESTORE every ring touched ──► FAILED (exit 1)
 *    └ before publishing: what the ring's document held for the script
 *      and what each device ran (saved first, so a crash can restore it)
 *
 * PUSH publishes the bundle (signed for group:R with --key) in the ring's
 * desired document; WAIT waits for every member's outcome as `push --wait`
 * (devices.c); BAKE lets it run for --bake seconds; CHECK evaluates the
 * gates over the ring's devices. RESTORE puts back, in each ring touched,
 * the bundle the ring's document held before (re-signed as a rollback with
 * a fresh seq when it was signed: the devices that activated the new one
 * would refuse the old seq), or removes the entry when there was none, and
 * waits until the devices report it active.
 *
 * Gates ("metric<=N" or "metric<=N%", comma-separated; default
 * "rolled_back<=0,rejected<=0,no_answer<=0"):
 *   rolled_back  devices that rolled the version back (or quarantined it)
 *   rejected     devices that refused it (signature, load, self-test, or
 *                another layer's bundle wins there)
 *   no_answer    devices with no outcome within --timeout
 *   errors       per device: handler errors of the new version by its last
 *                heartbeat of the bake (health channel); a count, not a %
 *
 * Before each WAIT, BAKE and CHECK the ring's document must still hold this
 * rollout's bundle (version and sha256): when someone pushed meanwhile the
 * rollout stops (exit 1) and restores nothing — the newer push is theirs.
 *
 * Progress lives in a state file (default ~/.lume/rollouts/NAME.json),
 * written (to a temporary file, then renamed) before every step's effect:
 * `lume rollout --resume` picks up where a killed or crashed CLI stopped.
 * A bake in progress keeps its deadline (the wall clock). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "crypto.h"
#include "hub.h"
#include "log.h"
#include "manifest.h"

static const char ROLLOUT_USAGE[] =
    "usage: lume rollout SCRIPT.lua --rings R1,R2,... [--gate G] [--bake S] [--timeout S]\n"
    "                    [--key KEY | --unsigned] [--name N] [--version V] [--soak S]\n"
    "                    [--state FILE] [--broker URL | --config FILE]\n"
    "       lume rollout --resume [--state FILE | --name N]\n\n"
    "Pushes SCRIPT to each ring (a group) in turn: publishes it in the ring's\n"
    "desired document, waits for every member's outcome (as push --wait, at most\n"
    "--timeout S, default 60), lets it run --bake S seconds (default 60), and\n"
    "checks the health gates over the ring's devices before it promotes it to\n"
    "the next ring. When a gate fails, every ring already touched gets back the\n"
    "bundle its document held before (re-signed as a rollback with --key), the\n"
    "failing devices are named with their reasons, and the exit code is 1.\n\n"
    "  --gate G   comma-separated METRIC<=N or METRIC<=N%, over a ring's devices:\n"
    "             rolled_back, rejected, no_answer (counts or % of the ring),\n"
    "             errors (per device: handler errors of the new version in its\n"
    "             last heartbeat of the bake; set health.period_s below the bake)\n"
    "             default rolled_back<=0,rejected<=0,no_answer<=0\n"
    "  --state F  the progress file (default ~/.lume/rollouts/NAME.json)\n"
    "  --resume   continue the rollout of that state file after the CLI stopped\n"
    "             (killed, machine restarted): a bake keeps its deadline\n"
    "Without --key, rings with devices that accept only signed bundles are\n"
    "refused (exit 2) unless --unsigned is given, as with push.\n"
    "Exit codes: 0 every ring promoted; 1 a gate failed (restored), or the\n"
    "restore did not complete; 2 usage, or another rollout of NAME in progress.\n";

enum { P_PUSH, P_WAIT, P_BAKE, P_CHECK, P_RESTORE, P_DONE, P_FAILED };
static const char *const PHASE[] = {"push", "wait", "bake", "check", "restore", "done", "failed"};

enum { M_ROLLED_BACK, M_REJECTED, M_NO_ANSWER, M_ERRORS, M_COUNT };
static const char *const METRIC[] = {"rolled_back", "rejected", "no_answer", "errors"};

typedef struct gate {
    double limit[M_COUNT]; /* <0: no gate */
    bool   pct[M_COUNT];
} gate;

typedef struct rollout {
    cJSON         *st;    /* the state (saved as is) */
    char           path[PATH_MAX];
    lume_ops_opts  o;     /* rebuilt from the state */
    gate           g;
    lume_ops_client c;
    bool           connected;
} rollout;

/* ---- the state file ------------------------------------------------------------ */

static int save(rollout *r)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->path);
    char *json = cJSON_Print(r->st);
    FILE *f = json ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(json, f) >= 0;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f)
        fclose(f);
    free(json);
    if (!ok || rename(tmp, r->path) < 0) {
        fprintf(stderr, "lume rollout: cannot write the state file %s: %s\n", r->path,
                strerror(errno));
        unlink(tmp);
        return EXIT_FAIL;
    }
    return 0;
}

static const char *sget(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double nget(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void set_num(cJSON *o, const char *k, double v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    cJSON_AddNumberToObject(o, k, v);
}

static void set_str(cJSON *o, const char *k, const char *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static int set_phase(rollout *r, int p)
{
    set_str(r->st, "phase", PHASE[p]);
    return save(r);
}

static int phase_of(const rollout *r)
{
    const char *p = sget(r->st, "phase");
    for (int i = 0; p && i <= P_FAILED; i++)
        if (!strcmp(p, PHASE[i]))
            return i;
    return -1;
}

static char *abs_path(const char *p)
{
    char buf[PATH_MAX];
    return p ? strdup(realpath(p, buf) ? buf : p) : NULL;
}

static int default_state_path(const char *name, char *buf, size_t cap)
{
    const char *home = getenv("HOME");
    if (!home || !*home) {
        fprintf(stderr, "lume rollout: no $HOME for ~/.lume/rollouts: give --state FILE\n");
        return EXIT_USAGE;
    }
    snprintf(buf, cap, "%s/.lume", home);
    mkdir(buf, 0700);
    snprintf(buf, cap, "%s/.lume/rollouts", home);
    mkdir(buf, 0700);
    snprintf(buf, cap, "%s/.lume/rollouts/%s.json", home, name);
    return 0;
}

/* ---- gates ------------------------------------------------------------------------ */

static int parse_gate(const char *s, gate *g)
{
    for (int m = 0; m < M_COUNT; m++)
        g->limit[m] = -1, g->pct[m] = false;
    char *copy = strdup(s ? s : "rolled_back<=0,rejected<=0,no_answer<=0");
    int r = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && !r;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        char *le = strstr(t, "<=");
        int m = -1;
        for (int k = 0; le && k < M_COUNT; k++)
            if ((size_t)(le - t) == strlen(METRIC[k]) && !strncmp(t, METRIC[k], strlen(METRIC[k])))
                m = k;
        char *end = NULL;
        double v = le ? strtod(le + 2, &end) : -1;
        bool pct = end && *end == '%';
        if (m < 0 || !end || end == le + 2 || (*end && strcmp(end, "%")) || v < 0 ||
            (pct && (m == M_ERRORS || v > 100))) {
            fprintf(stderr, "lume rollout: --gate: '%s' is not METRIC<=N or METRIC<=N%% with "
                            "METRIC one of rolled_back, rejected, no_answer (count or %%), "
                            "errors (a count per device)\n", t);
            r = EXIT_USAGE;
            break;
        }
        g->limit[m] = v;
        g->pct[m] = pct;
    }
    free(copy);
    return r;
}

/* ---- one ring ---------------------------------------------------------------------- */

static cJSON *ring_entry(rollout *r, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r->st, "touched"), i);
}

static int connect_once(rollout *r)
{
    if (r->connected)
        return 0;
    int rc = lume_ops_connect(&r->c, &r->o);
    r->connected = true; /* closed at the end either way */
    return rc;
}

/* Sign a bundle for ring with --key (nothing without): a fresh seq above what the
 * document holds; rollback as said. 0 or the exit code. */
static int sign_for(rollout *r, const char *ring, const cJSON *prev, cJSON *bundle, bool rollback)
{
    static const char *const manifest_fields[] = {"name", "seq", "target", "rollback", "key_id",
                                                  "sig"};
    for (size_t k = 0; k < 6; k++)
        cJSON_DeleteItemFromObjectCaseSensitive(bundle, manifest_fields[k]);
    if (!r->o.key)
        return 0;
    uint64_t seq = lume_ops_now_seq();
    double pseq = nget(prev, "seq");
    if (pseq >= (double)seq && pseq < (double)LUME_SEQ_MAX)
        seq = (uint64_t)pseq + 1;
    char target[300];
    snprintf(target, sizeof target, "group:%s", ring);
    lume_ops_opts o = r->o;
    o.rollback = rollback;
    return lume_ops_sign_bundle("rollout", &o, sget(r->st, "name"), seq, target, bundle);
}

/* Ring's desired document as the broker and its devices have it
 * (lume_ops_current_doc), and its topic in topic[cap]. */
static cJSON *ring_doc(rollout *r, const char *ring, char *topic, size_t cap)
{
    lume_ops_opts o = r->o;
    o.group = ring;
    o.device = NULL;
    lume_ops_target_topic(&r->c, &o, topic, cap);
    return lume_ops_current_doc(&r->c, topic);
}

/* Publish scripts.NAME = bundle (taken; NULL removes it) in ring's document.
 * *published: its $version. 0 or the exit code. */
static int publish(rollout *r, const char *ring, cJSON *bundle, double *published)
{
    char topic[512];
    cJSON *doc = ring_doc(r, ring, topic, sizeof topic);
    cJSON *scripts = cJSON_GetObjectItemCaseSensitive(doc, "scripts");
    if (!cJSON_IsObject(scripts)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "scripts");
        scripts = cJSON_AddObjectToObject(doc, "scripts");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(scripts, sget(r->st, "name"));
    if (bundle)
        cJSON_AddItemToObject(scripts, sget(r->st, "name"), bundle);
    int rc = lume_ops_publish_doc(&r->c, topic, doc);
    *published = nget(doc, "$version");
    cJSON_Delete(doc);
    return rc;
}

/* What ring's document holds for NAME now (a copy, or NULL). */
static cJSON *current_bundle(rollout *r, const char *ring)
{
    char topic[512];
    cJSON *doc = ring_doc(r, ring, topic, sizeof topic);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "scripts"), sget(r->st, "name"));
    cJSON *copy = cJSON_IsObject(b) ? cJSON_Duplicate(b, 1) : NULL;
    cJSON_Delete(doc);
    return copy;
}

static int push_bundle(rollout *r, const char *ring, cJSON *t, size_t members);

static int do_push(rollout *r, int i, const char *ring)
{
    const char *name = sget(r->st, "name");
    lume_ops_fleet f;
    int rc = lume_ops_fleet_read(&r->c, &f, ring, NULL, 10000);
    size_t members = 0;
    for (size_t k = 0; !rc && k < f.n; k++)
        members += lume_ops_selected(&f, &f.v[k]);
    if (!rc && !members) {
        fprintf(stderr, "lume rollout: no device reports being in ring %s (reported "
                        "lume.groups): nothing to roll out to\n", ring);
        rc = EXIT_FAIL;
    }
    char who[1024];
    if (!rc && !r->o.key && !r->o.unsigned_ok &&
        lume_ops_unsigned_refusers(&f, NULL, who, sizeof who)) {
        fprintf(stderr, "lume rollout: not published: in ring %s, %s accept only signed "
                        "bundles; give --key KEY, or --unsigned\n", ring, who);
        rc = EXIT_USAGE;
    }
    if (rc) {
        lume_ops_fleet_free(&f);
        return rc;
    }
    /* before anything is published: what to restore (kept from before a
     * crash that may have come after the publish) */
    cJSON *t = ring_entry(r, i);
    if (t && !strcmp(sget(t, "ring") ? sget(t, "ring") : "", ring)) {
        lume_ops_fleet_free(&f);
        return push_bundle(r, ring, t, members);
    }
    t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "ring", ring);
    cJSON *prev = current_bundle(r, ring);
    cJSON_AddItemToObject(t, "prev", prev ? prev : cJSON_CreateNull());
    cJSON *devs = cJSON_AddObjectToObject(t, "devices");
    for (size_t k = 0; k < f.n; k++) {
        if (!lume_ops_selected(&f, &f.v[k]))
            continue;
        const char *run = sget(cJSON_GetObjectItemCaseSensitive(
                                   cJSON_GetObjectItemCaseSensitive(f.v[k].reported, "scripts"),
                                   name), "running");
        set_str(devs, f.v[k].id, run);
    }
    lume_ops_fleet_free(&f);
    cJSON *touched = cJSON_GetObjectItemCaseSensitive(r->st, "touched");
    while (cJSON_GetArraySize(touched) > i)
        cJSON_DeleteItemFromArray(touched, i);
    cJSON_AddItemToArray(touched, t);
    if ((rc = save(r)))
        return rc;

    return push_bundle(r, ring, t, members);
}

static int push_bundle(rollout *r, const char *ring, cJSON *t, size_t members)
{
    const char *version = sget(r->st, "version"), *name = sget(r->st, "name");
    const cJSON *prev = cJSON_GetObjectItemCaseSensitive(t, "prev");
    int rc;
    const char *src = sget(r->st, "source");
    char hex[65];
    lume_sha256_hex(src, strlen(src), hex);
    cJSON *bundle = lume_ops_bundle_body(&r->o, src, strlen(src), hex, version);
    cJSON_AddNumberToObject(bundle, "soak_s", nget(r->st, "soak_s"));
    if ((rc = sign_for(r, ring, cJSON_IsObject(prev) ? prev : NULL, bundle, false))) {
        cJSON_Delete(bundle);
        return rc;
    }
    double published;
    if ((rc = publish(r, ring, bundle, &published)))
        return rc;
    set_num(t, "published", published);
    printf("ring %s: version %s of %s published to %zu devices\n", ring, version, name, members);
    fflush(stdout);
    return set_phase(r, P_WAIT);
}

/* Which devices of ring f break which gate; each named on stdout with its
 * reason. The number of gates that fail. */
static int check_gates(rollout *r, lume_ops_fleet *f, const char *ring, bool with_errors,
                       double bake_start)
{
    size_t total = 0, n[M_COUNT] = {0};
    const char *sha = sget(r->st, "sha256");
    double worst_errors = 0;
    for (size_t k = 0; k < f->n; k++) {
        lume_ops_device *d = &f->v[k];
        if (!lume_ops_selected(f, d))
            continue;
        total++;
        if (d->outcome == LUME_OUT_ROLLED_BACK)
            n[M_ROLLED_BACK]++;
        else if (d->outcome == LUME_OUT_REJECTED)
            n[M_REJECTED]++;
        else if (d->outcome == LUME_OUT_NO_ANSWER || d->outcome == LUME_OUT_PENDING)
            n[M_NO_ANSWER]++;
    }
    int failed = 0;
    for (int m = 0; m < M_ERRORS; m++) {
        if (r->g.limit[m] < 0)
            continue;
        double v = r->g.pct[m] ? (total ? 100.0 * (double)n[m] / (double)total : 0) : (double)n[m];
        if (v <= r->g.limit[m])
            continue;
        failed++;
        printf("ring %s: gate %s<=%g%s failed: %zu of %zu devices (%.1f%%)\n", ring, METRIC[m],
               r->g.limit[m], r->g.pct[m] ? "%" : "", n[m], total,
               total ? 100.0 * (double)n[m] / (double)total : 0.0);
        int want = m == M_ROLLED_BACK ? LUME_OUT_ROLLED_BACK
                   : m == M_REJECTED  ? LUME_OUT_REJECTED : LUME_OUT_NO_ANSWER;
        for (size_t k = 0; k < f->n; k++)
            if (lume_ops_selected(f, &f->v[k]) && f->v[k].outcome == want)
                printf("  %s %s: %s\n", f->v[k].id, METRIC[m],
                       f->v[k].reason ? f->v[k].reason : "");
    }
    if (with_errors && r->g.limit[M_ERRORS] >= 0) {
        size_t unknown = 0, over = 0;
        for (size_t k = 0; k < f->n; k++) {
            lume_ops_device *d = &f->v[k];
            if (!lume_ops_selected(f, d) || d->outcome != LUME_OUT_ACTIVE)
                continue;
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(d->health, "scripts"), sget(r->st, "name"));
            const char *hv = sget(s, "version"), *colon = hv ? strchr(hv, ':') : NULL;
            if (lume_ops_last_heard(d) < bake_start || !colon || strncmp(colon + 1, sha, 8)) {
                unknown++;
                continue;
            }
            double e = nget(s, "errors");
            if (e > worst_errors)
                worst_errors = e;
            if (e > r->g.limit[M_ERRORS]) {
                if (!over++)
                    failed++;
                printf("  %s errors: %.0f handler errors during the bake (gate errors<=%g)\n",
                       d->id, e, r->g.limit[M_ERRORS]);
            }
        }
        if (over)
            printf("ring %s: gate errors<=%g failed on %zu devices\n", ring,
                   r->g.limit[M_ERRORS], over);
        if (unknown)
            printf("ring %s: warning: %zu devices sent no heartbeat of the new version during "
                   "the bake: their errors are unknown (health.period_s longer than --bake?)\n",
                   ring, unknown);
    }
    fflush(stdout);
    return failed;
}

static int wait_ring(rollout *r, const char *ring, cJSON *t, lume_ops_fleet *f)
{
    int rc = lume_ops_fleet_read(&r->c, f, ring, NULL, 10000);
    if (rc)
        return rc;
    char layer[300];
    snprintf(layer, sizeof layer, "group:%s", ring);
    printf("ring %s: waiting for the outcome (at most %d s)\n", ring, r->o.timeout_s);
    fflush(stdout);
    lume_ops_wait(f, layer, nget(t, "published"), sget(r->st, "name"), sget(r->st, "version"),
                  r->o.timeout_s);
    return 0;
}

/* ---- restore ------------------------------------------------------------------------ */

static int restore(rollout *r)
{
    const char *name = sget(r->st, "name");
    cJSON *touched = cJSON_GetObjectItemCaseSensitive(r->st, "touched"), *t;
    int rc = 0;
    cJSON_ArrayForEach(t, touched) {
        const char *ring = sget(t, "ring");
        if (nget(t, "restored") >= 0)
            continue; /* published before a resume */
        const cJSON *prev = cJSON_GetObjectItemCaseSensitive(t, "prev");
        cJSON *b = cJSON_IsObject(prev) ? cJSON_Duplicate(prev, 1) : NULL;
        if (b && r->o.key) { /* a fresh seq: devices that activated the new one refuse the old */
            cJSON *cur = current_bundle(r, ring);
            int sr = sign_for(r, ring, cur, b, true);
            cJSON_Delete(cur);
            if (sr) {
                cJSON_Delete(b);
                rc = EXIT_FAIL;
                continue;
            }
        } /* without --key the bundle goes back as it was: an unsigned rollout
           * never moved a device's seq floor */
        double published;
        printf("ring %s: restoring %s%s\n", ring, b ? "version " : "no bundle of ",
               b ? sget(b, "version") : name);
        if (publish(r, ring, b, &published)) {
            rc = EXIT_FAIL;
            continue;
        }
        set_num(t, "restored", published);
        save(r);
    }
    /* the outcome of each restore */
    cJSON_ArrayForEach(t, touched) {
        const char *ring = sget(t, "ring");
        if (nget(t, "restored") < 0)
            continue;
        const cJSON *prev = cJSON_GetObjectItemCaseSensitive(t, "prev");
        const char *pv = cJSON_IsObject(prev) ? sget(prev, "version") : NULL;
        lume_ops_fleet f;
        if (lume_ops_fleet_read(&r->c, &f, ring, NULL, 10000)) {
            rc = EXIT_FAIL;
            continue;
        }
        char layer[300];
        snprintf(layer, sizeof layer, "group:%s", ring);
        size_t bad = lume_ops_wait(&f, layer, nget(t, "restored"), name, pv, r->o.timeout_s);
        size_t total = 0;
        const cJSON *devs = cJSON_GetObjectItemCaseSensitive(t, "devices");
        for (size_t k = 0; k < f.n; k++) {
            lume_ops_device *d = &f.v[k];
            if (!lume_ops_selected(&f, d))
                continue;
            total++;
            const char *before = sget(devs, d->id);
            if (d->outcome != LUME_OUT_ACTIVE)
                printf("  %s restore %s: %s\n", d->id, lume_ops_outcome_name(d->outcome),
                       d->reason ? d->reason : "");
            else if ((before && pv && strcmp(before, pv)) || (!before) != (!pv))
                printf("  %s restored to the ring's previous %s, it ran %s before\n", d->id,
                       pv ? pv : "(none)", before ? before : "none of the twin's");
        }
        printf("ring %s: restored %s on %zu of %zu devices\n", ring, pv ? pv : "(no bundle)",
               total - bad, total);
        if (bad)
            rc = EXIT_FAIL;
        lume_ops_fleet_free(&f);
    }
    fflush(stdout);
    return rc;
}

/* Does ring's document still hold this rollout's bundle (version and
 * sha256)? If someone pushed meanwhile, neither waiting nor restoring is
 * ours: said, the state marked failed, false. */
static bool still_ours(rollout *r, const char *ring)
{
    cJSON *now = current_bundle(r, ring);
    const char *v = sget(now, "version"), *sha = sget(now, "sha256");
    bool ours = v && sha && !strcmp(v, sget(r->st, "version")) &&
                !strcmp(sha, sget(r->st, "sha256"));
    if (!ours) {
        printf("ring %s: its desired document no longer holds version %s of %s (it holds %s): "
               "someone pushed meanwhile; stopping without restoring anything\n", ring,
               sget(r->st, "version"), sget(r->st, "name"), v ? v : "none");
        set_phase(r, P_FAILED);
    }
    cJSON_Delete(now);
    return ours;
}

/* ---- the machine -------------------------------------------------------------------- */

static int fail_and_restore(rollout *r)
{
    if (set_phase(r, P_RESTORE))
        return EXIT_FAIL;
    printf("rollout of %s version %s stopped: restoring the rings it touched\n",
           sget(r->st, "name"), sget(r->st, "version"));
    int rc = restore(r);
    set_phase(r, P_FAILED);
    printf("rollout of %s version %s failed%s\n", sget(r->st, "name"), sget(r->st, "version"),
           rc ? " and the restore did not complete" : "; the rings touched are restored");
    return EXIT_FAIL;
}

static int run(rollout *r)
{
    int rc = connect_once(r);
    if (rc)
        return rc;
    const cJSON *rings = cJSON_GetObjectItemCaseSensitive(r->st, "rings");
    for (;;) {
        int p = phase_of(r), i = (int)nget(r->st, "ring");
        if (p == P_DONE || p == P_FAILED) {
            printf("this rollout is %s already (%s)\n", PHASE[p], r->path);
            return p == P_DONE ? 0 : EXIT_FAIL;
        }
        if (p == P_RESTORE)
            return fail_and_restore(r);
        if (i >= cJSON_GetArraySize(rings)) {
            set_phase(r, P_DONE);
            printf("rollout of %s version %s done: every ring promoted\n", sget(r->st, "name"),
                   sget(r->st, "version"));
            return 0;
        }
        const char *ring = cJSON_GetArrayItem(rings, i)->valuestring;
        cJSON *t = ring_entry(r, i);
        if (p == P_PUSH) {
            if ((rc = do_push(r, i, ring)))
                return rc;
            continue;
        }
        if (!still_ours(r, ring))
            return EXIT_FAIL;
        lume_ops_fleet f;
        if ((rc = wait_ring(r, ring, t, &f))) {
            lume_ops_fleet_free(&f);
            return rc;
        }
        if (p == P_WAIT) {
            lume_ops_print_outcomes(&f, stdout);
            if (check_gates(r, &f, ring, false, 0)) {
                lume_ops_fleet_free(&f);
                return fail_and_restore(r);
            }
            set_num(r->st, "bake_until", (double)lume_wall_ns() / 1e9 + r->o.bake_s);
            set_num(r->st, "bake_start", (double)lume_wall_ns() / 1e9);
            if ((rc = set_phase(r, P_BAKE))) {
                lume_ops_fleet_free(&f);
                return rc;
            }
            p = P_BAKE;
        }
        if (p == P_BAKE) {
            double until = nget(r->st, "bake_until");
            printf("ring %s: baking until %.0f s from now\n", ring,
                   until - (double)lume_wall_ns() / 1e9 > 0 ? until - (double)lume_wall_ns() / 1e9
                                                            : 0);
            fflush(stdout);
            while ((double)lume_wall_ns() / 1e9 < until)
                lume_ops_fleet_turn(&f, 200);
            /* what changed during the bake (a device gone offline, a late
             * rollback) counts: outcomes again */
            for (size_t k = 0; k < f.n; k++)
                if (f.v[k].outcome == LUME_OUT_ACTIVE)
                    f.v[k].outcome = LUME_OUT_PENDING;
            char layer[300];
            snprintf(layer, sizeof layer, "group:%s", ring);
            lume_ops_wait(&f, layer, nget(t, "published"), sget(r->st, "name"),
                          sget(r->st, "version"), 0);
            if (!still_ours(r, ring)) {
                lume_ops_fleet_free(&f);
                return EXIT_FAIL;
            }
            if ((rc = set_phase(r, P_CHECK))) {
                lume_ops_fleet_free(&f);
                return rc;
            }
        }
        int bad = check_gates(r, &f, ring, true, nget(r->st, "bake_start"));
        lume_ops_fleet_free(&f);
        if (bad)
            return fail_and_restore(r);
        printf("ring %s: gates passed\n", ring);
        set_num(r->st, "ring", i + 1);
        if ((rc = set_phase(r, P_PUSH)))
            return rc;
    }
}

/* The options a resumed rollout runs with, from its state. */
static void opts_of(rollout *r)
{
    memset(&r->o, 0, sizeof r->o);
    r->o.config = sget(r->st, "config");
    r->o.broker = sget(r->st, "broker");
    r->o.key = sget(r->st, "key");
    r->o.unsigned_ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->st, "unsigned"));
    r->o.timeout_s = (int)nget(r->st, "timeout_s");
    r->o.bake_s = (int)nget(r->st, "bake_s");
    r->o.soak = (int)nget(r->st, "soak_s");
    r->o.seq = 0;
}

static int start(rollout *r, const lume_ops_opts *o, const char *file)
{
    size_t len;
    char *src = lume_ops_read_file(file, &len);
    if (!src) {
        fprintf(stderr, "lume rollout: cannot read %s: %s\n", file, strerror(errno));
        return EXIT_FAIL;
    }
    if (strlen(src) != len) {
        fprintf(stderr, "lume rollout: %s holds a NUL byte: not a Lua script\n", file);
        free(src);
        return EXIT_USAGE;
    }
    char name[128], hex[65], v[13];
    if (o->name)
        snprintf(name, sizeof name, "%s", o->name);
    else {
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    }
    lume_sha256_hex(src, len, hex);
    snprintf(v, sizeof v, "%.12s", hex);
    r->st = cJSON_CreateObject();
    cJSON_AddStringToObject(r->st, "name", name);
    cJSON_AddStringToObject(r->st, "version", o->version ? o->version : v);
    cJSON_AddStringToObject(r->st, "file", file);
    cJSON_AddStringToObject(r->st, "sha256", hex);
    cJSON_AddStringToObject(r->st, "source", src);
    free(src);
    cJSON *rings = cJSON_AddArrayToObject(r->st, "rings");
    char *copy = strdup(o->rings);
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        cJSON_AddItemToArray(rings, cJSON_CreateString(t));
    free(copy);
    cJSON_AddStringToObject(r->st, "gate", o->gate ? o->gate
                                                   : "rolled_back<=0,rejected<=0,no_answer<=0");
    cJSON_AddNumberToObject(r->st, "bake_s", o->bake_s >= 0 ? o->bake_s : 60);
    cJSON_AddNumberToObject(r->st, "timeout_s", o->timeout_s >= 0 ? o->timeout_s : 60);
    cJSON_AddNumberToObject(r->st, "soak_s", o->soak >= 0 ? o->soak : 10);
    char *key = abs_path(o->key), *cfg = abs_path(o->config);
    set_str(r->st, "key", key);
    set_str(r->st, "config", cfg);
    free(key);
    free(cfg);
    set_str(r->st, "broker", o->broker);
    cJSON_AddBoolToObject(r->st, "unsigned", o->unsigned_ok);
    cJSON_AddNumberToObject(r->st, "ring", 0);
    cJSON_AddStringToObject(r->st, "phase", PHASE[P_PUSH]);
    cJSON_AddArrayToObject(r->st, "touched");
    return save(r);
}

static bool all_strings(const cJSON *a)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
        if (!cJSON_IsString(e))
            return false;
    return cJSON_GetArraySize(a) > 0;
}

int lume_cmd_rollout(int argc, char **argv)
{
    rollout r;
    memset(&r, 0, sizeof r);
    lume_ops_opts o = {0};
    int first, rc = lume_ops_parse(argc, argv, &o, ROLLOUT_USAGE, &first);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (o.resume ? first != argc : first != argc - 1 || !o.rings) {
        fprintf(stderr, "lume rollout: give SCRIPT.lua and --rings R1,R2,... (or --resume)\n\n%s",
                ROLLOUT_USAGE);
        return EXIT_USAGE;
    }
    if (o.device || o.group || o.url || o.target || o.rollback || o.seq || o.wait) {
        fprintf(stderr, "lume rollout: --device, --group, --url, --target, --rollback, --seq "
                        "and --wait are push's: a rollout targets its rings\n");
        return EXIT_USAGE;
    }
    if (o.key && o.unsigned_ok) {
        fprintf(stderr, "lume rollout: --key or --unsigned, not both\n");
        return EXIT_USAGE;
    }
    if (!o.resume) {
        char *copy = strdup(o.rings);
        int n = 0;
        for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && !rc;
             t = strtok_r(NULL, ",", &save), n++) {
            lume_ops_opts check = {0};
            char *av[] = {(char *)"rollout", (char *)"--group", t, NULL};
            int f2;
            rc = lume_ops_parse(3, av, &check, ROLLOUT_USAGE, &f2);
        }
        free(copy);
        if (rc || !n)
            return EXIT_USAGE;
    }
    gate g;
    if (!o.resume && (rc = parse_gate(o.gate, &g)))
        return rc;
    char id[LUME_KEY_ID_LEN + 1], *err = NULL;
    if (o.key && lume_key_id_file(o.key, id, &err) < 0) {
        fprintf(stderr, "lume rollout: %s\n", err ? err : "cannot read the key");
        free(err);
        return EXIT_FAIL;
    }
    /* the state file */
    char name[128];
    if (!o.resume) {
        const char *file = argv[first], *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    }
    if (o.name)
        snprintf(name, sizeof name, "%s", o.name);
    if (o.state)
        snprintf(r.path, sizeof r.path, "%s", o.state);
    else if (o.resume && !o.name) {
        fprintf(stderr, "lume rollout --resume: which one? give --state FILE or --name N\n");
        return EXIT_USAGE;
    } else if ((rc = default_state_path(name, r.path, sizeof r.path)))
        return rc;

    size_t len;
    char *text = lume_ops_read_file(r.path, &len);
    if (o.resume) {
        if (!text) {
            fprintf(stderr, "lume rollout --resume: cannot read %s: %s\n", r.path,
                    strerror(errno));
            return EXIT_USAGE;
        }
        r.st = cJSON_ParseWithLength(text, len);
        free(text);
        if (!cJSON_IsObject(r.st) || phase_of(&r) < 0 || !sget(r.st, "name") ||
            !sget(r.st, "source") || nget(r.st, "ring") < 0 ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r.st, "rings")) ||
            !all_strings(cJSON_GetObjectItemCaseSensitive(r.st, "rings")) ||
            !sget(r.st, "version") || !sget(r.st, "sha256") ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r.st, "touched"))) {
            fprintf(stderr, "lume rollout --resume: %s is not a rollout state file\n", r.path);
            cJSON_Delete(r.st);
            return EXIT_USAGE;
        }
        opts_of(&r);
        if (parse_gate(sget(r.st, "gate"), &r.g)) {
            cJSON_Delete(r.st);
            return EXIT_USAGE;
        }
        printf("resuming the rollout of %s version %s (%s, ring %d, %s)\n", sget(r.st, "name"),
               sget(r.st, "version"), r.path, (int)nget(r.st, "ring") + 1, sget(r.st, "phase"));
    } else {
        if (text) {
            cJSON *old = cJSON_ParseWithLength(text, len);
            const char *p = sget(old, "phase");
            bool busy = p && strcmp(p, "done") && strcmp(p, "failed");
            if (busy)
                fprintf(stderr, "lume rollout: a rollout of %s (version %s) is in progress in "
                                "%s (%s): lume rollout --resume --state %s, or remove the "
                                "file\n", name, sget(old, "version"), r.path, p, r.path);
            cJSON_Delete(old);
            free(text);
            if (busy)
                return EXIT_USAGE;
        }
        if ((rc = start(&r, &o, argv[first]))) {
            cJSON_Delete(r.st);
            return rc;
        }
        opts_of(&r);
        r.g = g;
    }
    rc = run(&r);
    if (r.connected)
        lume_ops_close(&r.c);
    cJSON_Delete(r.st);
    return rc;
}
