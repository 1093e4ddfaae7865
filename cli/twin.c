/* cli/twin.c — read or change a device's twin:
 *
 *   lume twin get   (--device ID | --group G)
 *   lume twin set   (--device ID | --group G) [--dry-run] [--force] CHANGE ...
 *   lume twin drift --device ID [--json]
 *   lume twin schema
 *
 * `set` merges its changes into the layer's current desired document as
 * the device merges layers (RFC 7386 merge patch, null deletes, a bundle
 * under scripts replaced whole: lume_twin_merge_layer), checks lume's own
 * keys against the schema the device uses (core/store/schema.h), prints
 * the diff, and publishes with a $version above both the retained one and
 * the one the devices report holding (lume_ops_current_doc). Nothing is
 * published when an argument is not JSON or a value breaks the schema
 * (exit 2). `drift` compares what is desired with what the device reports
 * it runs and applied, and lists every difference (exit 1), or says
 * "in sync" (exit 0). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "schema.h"
#include "twin.h"

/* Each subcommand's usage (`lume twin SUB --help`); TWIN_COMMON ends each. */
#define TWIN_COMMON "       [--broker URL | --config FILE]\n"
static const struct twin_sub {
    const char *name, *usage;
} SUBS[] = {
    {"get", "usage: lume twin get (--device ID | --group G)\n" TWIN_COMMON "\n"
            "prints the desired document(s) and, for a device, the merged desired document\n"
            "and what it reported\n"},
    {"set", "usage: lume twin set (--device ID | --group G) [--dry-run] [--force] CHANGE ...\n"
            TWIN_COMMON "\n"
            "CHANGE is a JSON object merged into the layer's desired document, or\n"
            "PATH=VALUE with a dotted PATH (sensors.temperature.rate=5). VALUE is JSON when\n"
            "it parses as JSON (5, true, null, \"text\", {...}, [...]), else a string;\n"
            "a VALUE starting with { [ or \" must be JSON. null deletes. Changes merge as\n"
            "an RFC 7396 merge patch (a bundle under scripts is replaced whole).\n"
            "lume's own keys (sensors, log, health, outbox, scripts) are checked against\n"
            "the device's schema (lume twin schema). When the broker lost the device's\n"
            "document, set refuses to publish one that would remove the bundles the device\n"
            "runs. --force publishes anyway (no schema check, no such guard).\n"
            "Prints the changes, then publishes with the next $version (above the retained\n"
            "one and the one the device(s) report holding); --dry-run only prints.\n"
            "Exit 2, nothing published: an argument that is not JSON, a schema violation.\n"},
    {"drift", "usage: lume twin drift --device ID [--json]\n" TWIN_COMMON "\n"
              "compares what is desired with what the device reports it runs and applied:\n"
              "layer versions, script versions, origins and signers, clamped or missing\n"
              "sensor rates, the log level, health and outbox values, reported errors;\n"
              "one difference a line (PATH: desired X, actual Y (why)); exit 0 only when\n"
              "in sync, 1 when anything differs\n"},
    {"schema", "usage: lume twin schema\n\n"
               "the schema of lume's own desired keys, as the device and `twin set` check it\n"},
};
#define NSUBS (sizeof SUBS / sizeof *SUBS)

static void print_usage(FILE *f)
{
    for (size_t i = 0; i < NSUBS; i++) {
        const char *u = SUBS[i].usage, *nl = strstr(u, "\n\n"); /* the synopsis lines */
        fprintf(f, "%.*s\n", (int)(nl ? nl - u : (long)strlen(u)), u);
    }
}

/* ---- reading the device's view ---------------------------------------------------- */

/* Every layer of a device: its groups (from what it reported) and itself. */
static int device_view(lume_ops_client *c, const char *dev, cJSON **reported, cJSON **layers)
{
    char t_rep[300], t_des[300];
    lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_REPORTED, dev, t_rep, sizeof t_rep);
    lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_DESIRED, dev, t_des, sizeof t_des);
    const char *f[] = {t_rep, t_des};
    lume_ops_collect(c, f, 2, 300, 3000);
    const lume_ops_msg *m = lume_ops_get(c, t_rep);
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
        lume_ops_collect(c, gf, 1, 300, 2000);
        const lume_ops_msg *gm = lume_ops_get(c, t);
        cJSON *doc = gm && gm->len ? cJSON_ParseWithLength(gm->payload, gm->len) : NULL;
        char key[300];
        snprintf(key, sizeof key, "group:%s", g->valuestring);
        cJSON_AddItemToObject(*layers, key, doc ? doc : cJSON_CreateNull());
    }
    m = lume_ops_get(c, t_des);
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
        lume_twin_merge_layer(out, copy);
        cJSON_Delete(copy);
    }
    return out;
}

/* Print o (indented) and free it. */
static void print_json(cJSON *o)
{
    char *s = cJSON_Print(o);
    printf("%s\n", s ? s : "null");
    free(s);
    cJSON_Delete(o);
}

/* A value as short JSON ("none" for NULL), truncated for one line. */
static void shortj(const cJSON *v, char *buf, size_t cap)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    if (!s)
        snprintf(buf, cap, "none");
    else if (strlen(s) > 70)
        snprintf(buf, cap, "%.60s... (%zu bytes)", s, strlen(s));
    else
        snprintf(buf, cap, "%s", s);
    free(s);
}

/* A string member, or NULL. */
static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- set ------------------------------------------------------------------------ */

/* Where JSON text first goes wrong: a small RFC 8259 scanner, because
 * cJSON's error offset is approximate (often one byte past). Returns the
 * offset of the first byte that cannot continue a JSON text (len when the
 * text ends too early); *ok when the whole text is one JSON value. */
typedef struct jscan {
    const char *s;
    size_t len, i;
    int depth;
} jscan;

static void jws(jscan *j)
{
    while (j->i < j->len && strchr(" \t\r\n", j->s[j->i]) && j->s[j->i])
        j->i++;
}

static bool jlit(jscan *j, const char *w)
{
    size_t n = strlen(w);
    for (size_t k = 0; k < n; k++, j->i++)
        if (j->i >= j->len || j->s[j->i] != w[k])
            return false;
    return true;
}

static bool jvalue(jscan *j);

static bool jstring(jscan *j)
{
    if (j->i >= j->len || j->s[j->i] != '"')
        return false;
    for (j->i++; j->i < j->len; j->i++) {
        unsigned char c = (unsigned char)j->s[j->i];
        if (c == '"') {
            j->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            j->i++;
            if (j->i >= j->len || !strchr("\"\\/bfnrtu", j->s[j->i]) || !j->s[j->i])
                return false;
            if (j->s[j->i] == 'u')
                for (int k = 0; k < 4; k++) {
                    j->i++;
                    if (j->i >= j->len || !strchr("0123456789abcdefABCDEF", j->s[j->i]) ||
                        !j->s[j->i])
                        return false;
                }
        }
    }
    return false;
}

/* At least one digit: false when there is none. */
static bool jdigits(jscan *j)
{
    size_t start = j->i;
    while (j->i < j->len && j->s[j->i] >= '0' && j->s[j->i] <= '9')
        j->i++;
    return j->i > start;
}

static bool jnumber(jscan *j)
{
    if (j->i < j->len && j->s[j->i] == '-')
        j->i++;
    if (!jdigits(j))
        return false;
    if (j->i < j->len && j->s[j->i] == '.') {
        j->i++;
        if (!jdigits(j))
            return false;
    }
    if (j->i < j->len && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->len && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        if (!jdigits(j))
            return false;
    }
    return true;
}

static bool jvalue(jscan *j)
{
    jws(j);
    if (j->i >= j->len || ++j->depth > 64)
        return false;
    char c = j->s[j->i];
    bool ok;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->i++;
        jws(j);
        if (j->i < j->len && j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return true;
        }
        for (;;) {
            if (c == '{') {
                jws(j);
                if (!jstring(j))
                    return false;
                jws(j);
                if (j->i >= j->len || j->s[j->i] != ':')
                    return false;
                j->i++;
            }
            if (!jvalue(j))
                return false;
            jws(j);
            if (j->i < j->len && j->s[j->i] == ',') {
                j->i++;
                continue;
            }
            if (j->i < j->len && j->s[j->i] == close) {
                j->i++;
                break;
            }
            return false;
        }
        ok = true;
    } else if (c == '"') {
        ok = jstring(j);
    } else if (c == 't' || c == 'f' || c == 'n') {
        ok = jlit(j, c == 't' ? "true" : c == 'f' ? "false" : "null");
    } else {
        ok = jnumber(j);
    }
    j->depth--;
    return ok;
}

static size_t json_error_at(const char *s, size_t len)
{
    jscan j = {s, len, 0, 0};
    if (jvalue(&j)) {
        jws(&j);
        if (j.i == len)
            return (size_t)-1;
    }
    return j.i;
}

/* text parsed as JSON, strictly (the whole text, the twin's own rules:
 * lume_twin_parse). NULL after printing where it fails: line, column and
 * byte (1-based), with the line and a caret. */
static cJSON *parse_strict(const char *arg, const char *text, bool quiet)
{
    size_t len = strlen(text);
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end ? (size_t)(end - text) : 0;
    const char *what = "not JSON";
    if (v) {
        while (at < len && strchr(" \t\r\n", text[at]))
            at++;
        if (at == len) { /* cJSON took it: now the twin's rules (keys twice, UTF-8, depth) */
            char *err = NULL;
            cJSON *t = lume_twin_parse(text, len, &err);
            if (t) {
                cJSON_Delete(v);
                return t;
            }
            if (!quiet)
                fprintf(stderr, "lume twin set: '%s': %s\nnothing published\n", arg,
                        err ? err : "refused");
            free(err);
            cJSON_Delete(v);
            return NULL;
        }
        cJSON_Delete(v);
        what = "not JSON (more data after the value)";
    }
    if (quiet)
        return NULL;
    size_t exact = json_error_at(text, len); /* cJSON's offset is only near */
    if (exact != (size_t)-1)
        at = exact;
    if (at > len)
        at = len;
    size_t line = 1, bol = 0;
    for (size_t i = 0; i < at; i++)
        if (text[i] == '\n') {
            line++;
            bol = i + 1;
        }
    size_t eol = bol;
    while (eol < len && text[eol] != '\n')
        eol++;
    if (at == len) /* the text stops inside a value */
        fprintf(stderr, "lume twin set: '%s': not JSON: it ends too early, at line %zu, column "
                "%zu (after byte %zu)\n", arg, line, at - bol + 1, len);
    else
        fprintf(stderr, "lume twin set: '%s': %s at line %zu, column %zu (byte %zu of %zu)\n",
                arg, what, line, at - bol + 1, at + 1, len);
    fprintf(stderr, "  %.*s\n  %*s^\nnothing published\n", (int)(eol - bol), text + bol,
            (int)(at - bol), "");
    return NULL;
}

/* One CHANGE argument as a merge patch (an object). NULL after printing why. */
static cJSON *change_patch(const char *arg)
{
    const char *p = arg;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    if (*p == '{') {
        cJSON *doc = parse_strict(arg, arg, false);
        if (doc && !cJSON_IsObject(doc)) { /* (cannot happen: it starts with {) */
            cJSON_Delete(doc);
            doc = NULL;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, doc)
            if (e->string[0] == '$') {
                fprintf(stderr, "lume twin set: '%s': %s is metadata lume sets itself\n"
                        "nothing published\n", arg, e->string);
                cJSON_Delete(doc);
                return NULL;
            }
        return doc;
    }
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "lume twin set: expected a JSON object or PATH=VALUE, got '%s'\n"
                "nothing published\n", arg);
        return NULL;
    }
    const char *val = eq + 1, *q = val;
    while (*q == ' ' || *q == '\t')
        q++;
    cJSON *v;
    if (*q == '{' || *q == '[' || *q == '"') {
        if (!(v = parse_strict(arg, val, false)))
            return NULL; /* meant as JSON: it must be */
    } else if (!(v = parse_strict(arg, val, true))) {
        v = cJSON_CreateString(val); /* a bare word is a string */
    }
    /* PATH: dotted, every segment non-empty, not metadata */
    char path[1024];
    snprintf(path, sizeof path, "%.*s", (int)(eq - arg), arg);
    cJSON *patch = cJSON_CreateObject(), *at = patch;
    char *save = NULL, *seg = strtok_r(path, ".", &save);
    bool bad = path[0] == '.' || path[strlen(path) - 1] == '.' || strstr(path, "..") ||
               path[0] == '$';
    while (seg && !bad) {
        char *next = strtok_r(NULL, ".", &save);
        if (next) {
            at = cJSON_AddObjectToObject(at, seg);
        } else {
            cJSON_AddItemToObject(at, seg, v);
            v = NULL;
        }
        seg = next;
    }
    if (bad || v) {
        fprintf(stderr, "lume twin set: '%s': PATH must be dotted key names (a.b.c), not "
                "empty, not starting with $\nnothing published\n", arg);
        cJSON_Delete(v);
        cJSON_Delete(patch);
        return NULL;
    }
    return patch;
}

/* The changes between two documents, one a line: "+ path: v", "- path (was v)",
 * "~ path: a -> b". Returns how many. */
static int print_diff(const char *path, const cJSON *a, const cJSON *b)
{
    int n = 0;
    char pa[1024], va[128], vb[128];
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (e->string[0] == '$' && !*path)
            continue;
        snprintf(pa, sizeof pa, "%s%s%s", path, *path ? "." : "", e->string);
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(b, e->string);
        if (!o) {
            shortj(e, va, sizeof va);
            printf("  - %s (was %s)\n", pa, va);
            n++;
        } else if (cJSON_IsObject(e) && cJSON_IsObject(o)) {
            n += print_diff(pa, e, o);
        } else if (!cJSON_Compare(e, o, 1)) {
            shortj(e, va, sizeof va);
            shortj(o, vb, sizeof vb);
            printf("  ~ %s: %s -> %s\n", pa, va, vb);
            n++;
        }
    }
    cJSON_ArrayForEach(e, b) {
        if ((e->string[0] == '$' && !*path) || cJSON_GetObjectItemCaseSensitive(a, e->string))
            continue;
        snprintf(pa, sizeof pa, "%s%s%s", path, *path ? "." : "", e->string);
        shortj(e, vb, sizeof vb);
        printf("  + %s: %s\n", pa, vb);
        n++;
    }
    return n;
}

static int cmd_set(const lume_ops_opts *o, int first, int argc, char **argv)
{
    if (first >= argc) {
        fprintf(stderr, "lume twin set: give the changes: a JSON object or PATH=VALUE ...\n\n%s",
                SUBS[1].usage);
        return EXIT_USAGE;
    }
    /* every argument parsed before anything is asked of the broker */
    cJSON *patches = cJSON_CreateArray();
    for (int i = first; i < argc; i++) {
        cJSON *p = change_patch(argv[i]);
        if (!p) {
            cJSON_Delete(patches);
            return EXIT_USAGE;
        }
        cJSON_AddItemToArray(patches, p);
    }
    lume_ops_client c;
    int r = lume_ops_connect(&c, o);
    if (r) {
        lume_ops_close(&c);
        cJSON_Delete(patches);
        return r;
    }
    char topic[512];
    lume_ops_target_topic(&c, o, topic, sizeof topic);
    cJSON *before = lume_ops_current_doc(&c, topic);
    cJSON *after = cJSON_Duplicate(before, 1);
    const cJSON *p;
    cJSON_ArrayForEach(p, patches)
        lume_twin_merge_layer(after, p);
    /* lume's own keys, as the device will check them */
    cJSON_ArrayForEach(p, patches) {
        const cJSON *k;
        cJSON_ArrayForEach(k, p) {
            char where[256], why[700];
            if (o->force || lume_twin_schema_check(k->string, cJSON_GetObjectItemCaseSensitive(
                                after, k->string), where, sizeof where, why, sizeof why) == 0)
                continue;
            bool named = !strncmp(why, where, strlen(where)); /* the reason names the path */
            fprintf(stderr, "lume twin set: %s%s%s\nnothing published (lume twin schema lists "
                    "what lume's keys take; --force publishes anyway)\n", named ? "" : where,
                    named ? "" : ": ", why);
            r = EXIT_USAGE;
            goto out;
        }
    }
    if (!o->force && lume_ops_lost_bundles(&c, o, topic, after, "lume twin set")) {
        r = EXIT_FAIL;
        goto out;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(before, "$version");
    double next = cJSON_IsNumber(v) ? v->valuedouble + 1 : 1;
    printf("%s: changes for $version %.0f%s\n", topic, next, o->dry_run ? " (dry run)" : "");
    int n = print_diff("", before, after);
    if (!n) {
        printf("  (none: the desired document already says this; nothing published)\n");
        goto out;
    }
    if (o->dry_run) {
        printf("dry run: nothing published\n");
        goto out;
    }
    r = lume_ops_publish_doc(&c, topic, after);
out:
    cJSON_Delete(before);
    cJSON_Delete(after);
    cJSON_Delete(patches);
    lume_ops_close(&c);
    return r;
}

/* ---- drift ---------------------------------------------------------------------- */

typedef struct drift_list {
    cJSON *items;  /* [{path, desired, actual, why}] */
} drift_list;

static void differ(drift_list *d, const char *path, const cJSON *desired, const char *actual,
                   const char *why)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddItemToObject(o, "desired", desired ? cJSON_Duplicate(desired, 1) : cJSON_CreateNull());
    cJSON_AddStringToObject(o, "actual", actual ? actual : "none");
    if (why)
        cJSON_AddStringToObject(o, "why", why);
    else
        cJSON_AddNullToObject(o, "why");
    cJSON_AddItemToArray(d->items, o);
}


static void drift_scripts(drift_list *d, const cJSON *want, const cJSON *rs)
{
    const cJSON *b;
    cJSON_ArrayForEach(b, want) {
        if (!cJSON_IsObject(b))
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, "version");
        char want_v[64], path[300], actual[600], why[900];
        if (cJSON_IsString(v))
            snprintf(want_v, sizeof want_v, "%s", v->valuestring);
        else if (cJSON_IsNumber(v))
            snprintf(want_v, sizeof want_v, "%.17g", v->valuedouble);
        else
            continue;
        cJSON *wv = cJSON_CreateString(want_v);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rs, b->string);
        const char *running = str_of(r, "running"), *status = str_of(r, "status"),
                   *error = str_of(r, "error"), *origin = str_of(r, "origin");
        snprintf(path, sizeof path, "scripts.%s", b->string);
        if (!r) {
            differ(d, path, wv, "nothing", "the device reports no such script");
        } else if (origin && !strcmp(origin, "local")) {
            snprintf(actual, sizeof actual, "local file %s (sha256 %.16s)",
                     str_of(r, "file") ? str_of(r, "file") : "?",
                     str_of(r, "sha256") ? str_of(r, "sha256") : "?");
            differ(d, path, wv, actual, "a local file runs instead of the twin's version "
                   "(the device allows local overrides)");
        } else if (!running || strcmp(running, want_v) || !status || strcmp(status, "active")) {
            snprintf(actual, sizeof actual, "%s%s", running ? "version " : "nothing",
                     running ? running : "");
            snprintf(why, sizeof why, "version %s is %s%s%s", want_v, status ? status : "?",
                     error ? ": " : "", error ? error : "");
            differ(d, path, wv, actual, why);
        } else {
            /* the signer desired is the one that signed what runs */
            const char *want_k = str_of(b, "key_id"), *signer = str_of(r, "signer");
            if (want_k && (!signer || strcmp(signer, want_k))) {
                snprintf(why, sizeof why, "signed by %s, the twin's bundle by %s",
                         signer ? signer : "nobody", want_k);
                differ(d, path, wv, running, why);
            }
        }
        const cJSON *local = cJSON_GetObjectItemCaseSensitive(r, "local");
        if (cJSON_IsObject(local)) {
            snprintf(path, sizeof path, "scripts.%s.local", b->string);
            snprintf(actual, sizeof actual, "local file %s (sha256 %.16s) refused",
                     str_of(local, "file") ? str_of(local, "file") : "?",
                     str_of(local, "sha256") ? str_of(local, "sha256") : "?");
            differ(d, path, wv, actual, str_of(local, "error"));
        }
        cJSON_Delete(wv);
    }
}

static void drift_sensors(drift_list *d, const cJSON *want, const cJSON *rep)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, want) {
        const cJSON *rate = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "rate") : s;
        if (!cJSON_IsNumber(rate))
            continue;
        char path[300], actual[64], why[128];
        snprintf(path, sizeof path, "sensors.%s.rate", s->string);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rep, s->string);
        const cJSON *applied = cJSON_GetObjectItemCaseSensitive(r, "rate");
        if (!cJSON_IsNumber(applied)) {
            differ(d, path, rate, "not applied", "the device reports no rate for it (see "
                   "errors.sensors)");
        } else if (applied->valuedouble != rate->valuedouble) {
            snprintf(actual, sizeof actual, "%g", applied->valuedouble);
            snprintf(why, sizeof why, "clamped to the board's bounds: %g Hz requested, %g Hz "
                     "applied", rate->valuedouble, applied->valuedouble);
            differ(d, path, rate, actual, why);
        }
    }
}

/* A desired value against the reported one, key by key (health, outbox). */
static void drift_values(drift_list *d, const char *key, const cJSON *want, const cJSON *rep)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, want) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rep, e->string);
        if (cJSON_IsString(e) && cJSON_IsNumber(r))
            continue; /* "64MiB" against bytes: the config's units */
        bool same = r && cJSON_Compare(e, r, 1);
        if (!same && cJSON_IsArray(e) && cJSON_IsArray(r) &&
            cJSON_GetArraySize(e) == cJSON_GetArraySize(r)) { /* lanes, in any order */
            same = true;
            const cJSON *x;
            cJSON_ArrayForEach(x, e) {
                bool found = false;
                const cJSON *y;
                cJSON_ArrayForEach(y, r) found |= cJSON_Compare(x, y, 1);
                same &= found;
            }
        }
        if (!same) {
            char path[300], actual[128];
            snprintf(path, sizeof path, "%s.%s", key, e->string);
            shortj(r, actual, sizeof actual);
            differ(d, path, e, actual, "the device reports another value applied");
        }
    }
}

static int drift(const cJSON *layers, const cJSON *reported, const char *dev, bool json)
{
    drift_list d = {cJSON_CreateArray()};
    char actual[64], why[300];
    /* each layer's $version, applied or not */
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(reported, "desired_versions");
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "$version");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(dv, l->string);
        if (cJSON_IsNumber(v) && (!cJSON_IsNumber(rv) || rv->valuedouble != v->valuedouble)) {
            char path[300];
            snprintf(path, sizeof path, "$version.%s", l->string);
            snprintf(actual, sizeof actual, cJSON_IsNumber(rv) ? "%.0f" : "none",
                     cJSON_IsNumber(rv) ? rv->valuedouble : 0.0);
            snprintf(why, sizeof why, "the device has not applied this layer's document%s",
                     cJSON_IsNumber(rv) && rv->valuedouble > v->valuedouble
                         ? " (it holds a newer one: the broker lost its retained state?)" : "");
            differ(&d, path, v, actual, why);
        }
    }
    cJSON *want = merged(layers);
    /* what the device says it could not apply */
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(reported, "errors")) {
        if (!cJSON_IsString(e))
            continue;
        const cJSON *wv = cJSON_GetObjectItemCaseSensitive(want, e->string);
        char path[300]; /* a desired key's own path; else the error's (errors.desired) */
        snprintf(path, sizeof path, "%s%s", wv ? "" : "errors.", e->string);
        differ(&d, path, wv, "error", e->valuestring);
    }
    drift_scripts(&d, cJSON_GetObjectItemCaseSensitive(want, "scripts"),
                  cJSON_GetObjectItemCaseSensitive(reported, "scripts"));
    drift_sensors(&d, cJSON_GetObjectItemCaseSensitive(want, "sensors"),
                  cJSON_GetObjectItemCaseSensitive(reported, "sensors"));
    const cJSON *log = cJSON_GetObjectItemCaseSensitive(want, "log");
    const cJSON *lvl = cJSON_IsObject(log) ? cJSON_GetObjectItemCaseSensitive(log, "level") : log;
    const cJSON *rlog = cJSON_GetObjectItemCaseSensitive(reported, "log");
    if (cJSON_IsString(lvl)) {
        const char *have = str_of(rlog, "level"), *by = str_of(rlog, "by");
        if (!have || strcmp(have, lvl->valuestring)) {
            if (!have)
                snprintf(why, sizeof why, "the device reports no level applied");
            else
                snprintf(why, sizeof why, "set by %s%s%s", by ? by : "?",
                         str_of(rlog, "why") ? ": " : "",
                         str_of(rlog, "why") ? str_of(rlog, "why") : "");
            differ(&d, "log.level", lvl, have, why);
        }
    }
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(want, "health")))
        drift_values(&d, "health", cJSON_GetObjectItemCaseSensitive(want, "health"),
                     cJSON_GetObjectItemCaseSensitive(reported, "health"));
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(want, "outbox")))
        drift_values(&d, "outbox", cJSON_GetObjectItemCaseSensitive(want, "outbox"),
                     cJSON_GetObjectItemCaseSensitive(reported, "outbox"));
    cJSON_Delete(want);

    int n = cJSON_GetArraySize(d.items);
    if (json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "device", dev);
        cJSON_AddBoolToObject(out, "in_sync", n == 0);
        cJSON_AddItemToObject(out, "differences", d.items);
        print_json(out);
        return n;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, d.items) {
        char want_s[128];
        shortj(cJSON_GetObjectItemCaseSensitive(it, "desired"), want_s, sizeof want_s);
        printf("%s: desired %s, actual %s%s%s%s\n", str_of(it, "path"), want_s,
               str_of(it, "actual"), str_of(it, "why") ? " (" : "",
               str_of(it, "why") ? str_of(it, "why") : "", str_of(it, "why") ? ")" : "");
    }
    if (!n)
        printf("in sync\n");
    cJSON_Delete(d.items);
    return n;
}

/* ---- schema --------------------------------------------------------------------- */

static int cmd_schema(void)
{
    size_t n;
    const lume_schema_field *f = lume_twin_schema(&n);
    static const char *const tn[] = {"object", "string", "number", "bool", "array", "null"};
    for (size_t i = 0; i < n; i++) {
        char types[80] = "", bounds[80] = "";
        for (unsigned b = 0; b < 6; b++)
            if (f[i].types & (1u << b))
                snprintf(types + strlen(types), sizeof types - strlen(types), "%s%s",
                         *types ? "|" : "", tn[b]);
        if (f[i].choices)
            snprintf(bounds, sizeof bounds, "%s", f[i].choices);
        else if (f[i].min != 0 || f[i].max != 0)
            snprintf(bounds, sizeof bounds, f[i].min_open ? "> %g" : "%g .. %.17g", f[i].min,
                     f[i].max);
        printf("%-20s %-14s %-22s %s\n", f[i].path, types, bounds, f[i].meaning);
    }
    return 0;
}

int lume_cmd_twin(int argc, char **argv)
{
    const struct twin_sub *sub = NULL;
    for (size_t i = 0; argc >= 2 && i < NSUBS; i++)
        if (!strcmp(argv[1], SUBS[i].name))
            sub = &SUBS[i];
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        print_usage(stdout);
        return 0;
    }
    if (!sub) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc - 1, argv + 1, &o, sub->usage, &first);
    if (r)
        return r == 1 ? 0 : r;
    first += 1;
    if (!strcmp(sub->name, "schema"))
        return cmd_schema();
    bool drift_cmd = !strcmp(sub->name, "drift");
    if (!o.device == !o.group || (drift_cmd && !o.device)) {
        fprintf(stderr, "lume twin %s: give --device ID%s\n\n%s", sub->name,
                drift_cmd ? "" : " or --group G", sub->usage);
        return EXIT_USAGE;
    }
    if (!strcmp(sub->name, "set"))
        return cmd_set(&o, first, argc, argv);
    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        return r;
    }
    if (o.group) { /* get for a group: its one document */
        char topic[512];
        lume_ops_target_topic(&c, &o, topic, sizeof topic);
        print_json(lume_ops_current_doc(&c, topic));
        lume_ops_close(&c);
        return 0;
    }
    cJSON *reported = NULL, *layers = NULL;
    int found = device_view(&c, o.device, &reported, &layers);
    if (!strcmp(sub->name, "get")) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "layers", layers);
        cJSON_AddItemToObject(out, "desired", merged(layers));
        cJSON_AddItemToObject(out, "reported", reported ? reported : cJSON_CreateNull());
        print_json(out);
        lume_ops_close(&c);
        return 0;
    }
    if (found < 0) {
        if (o.json)
            printf("{\"device\": \"%s\", \"in_sync\": false, \"differences\": [{\"path\": \"\", "
                   "\"desired\": null, \"actual\": \"none\", \"why\": \"the device has reported "
                   "nothing\"}]}\n", o.device);
        else
            printf("drift: device %s has reported nothing\n", o.device);
        r = EXIT_FAIL;
    } else {
        r = drift(layers, reported, o.device, o.json) ? EXIT_FAIL : 0;
    }
    cJSON_Delete(layers);
    cJSON_Delete(reported);
    lume_ops_close(&c);
    return r;
}
