/* core/store/schema.c — the schema of lume's own desired keys, as data.
 *
 * The table below is the one definition: the device (runtime/twin_host.c,
 * bindings/bundles.c) checks a desired value against it before applying it,
 * `lume twin set` before publishing it, docs/twin.md prints it. Checking
 * walks the value: each member's pattern is its parent's plus ".name", or
 * ".*" when the table has no entry of that exact name; a member with no
 * entry is refused unless its parent is open. Two rules a table cannot say
 * are written out below it (check_rules): a bundle's required and exclusive
 * fields, and outbox limits, which are config keys checked by the config's
 * own rules (core/base/config.c) so that `lume config` and the twin agree. */
#include "schema.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define LEVELS "debug|info|warn|error"
#define MAX_SAFE 9007199254740991.0 /* 2^53 - 1 */

static const lume_schema_field fields[] = {
    {"sensors", LUME_ST_OBJECT, 0, 0, false, false, NULL, NULL,
     "sampling rates by sensor name (the board's sensors)"},
    {"sensors.*", LUME_ST_NUMBER | LUME_ST_OBJECT, 0, INFINITY, true, false, NULL, NULL,
     "a rate in Hz, or {rate = Hz}; clamped to the board's bounds, reported as applied"},
    {"sensors.*.rate", LUME_ST_NUMBER, 0, INFINITY, true, false, NULL, NULL, "Hz"},
    {"log", LUME_ST_STRING | LUME_ST_OBJECT, 0, 0, false, false, LEVELS, "log level",
     "the log level, \"info\", or {level = \"info\"}"},
    {"log.level", LUME_ST_STRING, 0, 0, false, false, LEVELS, "log level",
     "debug, info, warn or error"},
    {"log.remote", LUME_ST_OBJECT, 0, 0, false, true, NULL, NULL,
     "log lines sent to the hub (its members are remote logging's own)"},
    {"health", LUME_ST_OBJECT, 0, 0, false, false, NULL, NULL, "the heartbeat"},
    {"health.period_s", LUME_ST_NUMBER, 1, 86400, false, false, NULL, NULL,
     "seconds between heartbeats (default 60)"},
    {"outbox", LUME_ST_OBJECT, 0, 0, false, true, NULL, NULL,
     "outbox limits: max_messages, max_bytes, commit_interval_ms, commit_batch, "
     "durable_lanes, with the bounds `lume config` lists for outbox.*"},
    {"scripts", LUME_ST_OBJECT, 0, 0, false, false, NULL, NULL,
     "script bundles by name (docs/bundles.md)"},
    {"scripts.*", LUME_ST_OBJECT | LUME_ST_NULL, 0, 0, false, false, NULL, NULL,
     "a bundle: version and exactly one of source, chunks, url (url needs sha256); "
     "null removes it"},
    {"scripts.*.version", LUME_ST_STRING | LUME_ST_NUMBER, 0, 0, false, false, NULL, NULL,
     "the bundle's version"},
    {"scripts.*.source", LUME_ST_STRING, 0, 0, false, false, NULL, NULL, "the Lua source"},
    {"scripts.*.chunks", LUME_ST_ARRAY, 0, 0, false, false, NULL, NULL,
     "the Lua source in pieces, joined in order"},
    {"scripts.*.url", LUME_ST_STRING, 0, 0, false, false, NULL, NULL,
     "where the source is fetched (https)"},
    {"scripts.*.sha256", LUME_ST_STRING, 0, 0, false, false, NULL, NULL,
     "of the source, hex"},
    {"scripts.*.soak_s", LUME_ST_NUMBER, 0, 86400, false, false, NULL, NULL,
     "seconds of soak before the version is active"},
    {"scripts.*.name", LUME_ST_STRING, 0, 0, false, false, NULL, NULL, "manifest: the script"},
    {"scripts.*.seq", LUME_ST_NUMBER, 1, MAX_SAFE, false, false, NULL, NULL,
     "manifest: anti-rollback sequence"},
    {"scripts.*.target", LUME_ST_STRING, 0, 0, false, false, NULL, NULL,
     "manifest: device:ID or group:G"},
    {"scripts.*.rollback", LUME_ST_BOOL, 0, 0, false, false, NULL, NULL,
     "manifest: an intended downgrade"},
    {"scripts.*.key_id", LUME_ST_STRING, 0, 0, false, false, NULL, NULL,
     "manifest: the signing key's id"},
    {"scripts.*.sig", LUME_ST_STRING, 0, 0, false, false, NULL, NULL,
     "manifest: the signature"},
};
#define NFIELDS (sizeof fields / sizeof *fields)

const lume_schema_field *lume_twin_schema(size_t *n)
{
    *n = NFIELDS;
    return fields;
}

static const lume_schema_field *find(const char *pattern)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].path, pattern))
            return &fields[i];
    return NULL;
}

bool lume_twin_schema_builtin(const char *key)
{
    return key && !strchr(key, '.') && find(key);
}

static unsigned type_of(const cJSON *v)
{
    if (cJSON_IsObject(v)) return LUME_ST_OBJECT;
    if (cJSON_IsString(v)) return LUME_ST_STRING;
    if (cJSON_IsNumber(v)) return LUME_ST_NUMBER;
    if (cJSON_IsBool(v)) return LUME_ST_BOOL;
    if (cJSON_IsArray(v)) return LUME_ST_ARRAY;
    return LUME_ST_NULL;
}

/* What f accepts, in words: "a number above 0 or an object". */
static void describe(const lume_schema_field *f, char *buf, size_t cap)
{
    static const char *const names[] = {"an object", "a string", "a number", "true or false",
                                        "an array", "null"};
    size_t u = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < 6; i++) {
        if (!(f->types & (1u << i)))
            continue;
        const char *sep = u ? " or " : "";
        if ((1u << i) == LUME_ST_STRING && f->choices) {
            u += (size_t)snprintf(buf + u, u < cap ? cap - u : 0, "%sone of \"", sep);
            for (const char *c = f->choices; *c && u + 4 < cap; c++)
                u += (size_t)snprintf(buf + u, cap - u, "%s", *c == '|' ? "\", \"" : (char[]){*c, 0});
            u += (size_t)snprintf(buf + u, u < cap ? cap - u : 0, "\"");
        } else if ((1u << i) == LUME_ST_NUMBER && isinf(f->max) && f->min_open) {
            u += (size_t)snprintf(buf + u, u < cap ? cap - u : 0, "%sa number above %g", sep, f->min);
        } else if ((1u << i) == LUME_ST_NUMBER && (f->min != 0 || f->max != 0)) {
            u += (size_t)snprintf(buf + u, u < cap ? cap - u : 0, "%sa number from %g to %.17g",
                                  sep, f->min, f->max);
        } else {
            u += (size_t)snprintf(buf + u, u < cap ? cap - u : 0, "%s%s", sep, names[i]);
        }
    }
}

/* A value as short JSON for a message. */
static void show(const cJSON *v, char *buf, size_t cap)
{
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        snprintf(buf, cap, "(a value)");
        return;
    }
    if (strlen(s) > 60)
        snprintf(buf, cap, "%.57s...", s);
    else
        snprintf(buf, cap, "%s", s);
    free(s);
}

static int fail(char *where, size_t wcap, const char *path, char *why, size_t ycap,
                const char *what)
{
    snprintf(where, wcap, "%s", path);
    snprintf(why, ycap, "%s: %s", path, what);
    return -EINVAL;
}

static int check_node(const lume_schema_field *f, const char *path, const cJSON *v,
                      char *where, size_t wcap, char *why, size_t ycap, int depth);

/* What no table entry says. */
static int check_rules(const lume_schema_field *f, const char *path, const cJSON *v,
                       char *where, size_t wcap, char *why, size_t ycap)
{
    char msg[600];
    if (!strcmp(f->path, "scripts.*") && cJSON_IsObject(v)) {
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(v, "version");
        int given = !!cJSON_GetObjectItemCaseSensitive(v, "source") +
                    !!cJSON_GetObjectItemCaseSensitive(v, "chunks") +
                    !!cJSON_GetObjectItemCaseSensitive(v, "url");
        if (!ver)
            return fail(where, wcap, path, why, ycap,
                        "bundle has no version (a string or a number)");
        if (given != 1)
            return fail(where, wcap, path, why, ycap,
                        "a bundle needs exactly one of source, chunks, url");
        if (cJSON_GetObjectItemCaseSensitive(v, "url") &&
            !cJSON_GetObjectItemCaseSensitive(v, "sha256"))
            return fail(where, wcap, path, why, ycap, "a bundle with a url needs its sha256");
    }
    if (!strcmp(f->path, "outbox") && cJSON_IsObject(v)) {
        lume_config scratch;
        if (lume_config_init(&scratch) < 0)
            return 0; /* out of memory: the device checks again */
        int r = lume_twin_schema_outbox(&scratch, v, msg, sizeof msg);
        lume_config_free(&scratch);
        if (r < 0) {
            /* the config's message starts with the key: outbox.max_messages: ... */
            const char *colon = strstr(msg, ": ");
            snprintf(where, wcap, "%.*s", colon ? (int)(colon - msg) : (int)strlen(path),
                     colon ? msg : path);
            snprintf(why, ycap, "%s", msg);
            return -EINVAL;
        }
    }
    return 0;
}

static int check_node(const lume_schema_field *f, const char *path, const cJSON *v,
                      char *where, size_t wcap, char *why, size_t ycap, int depth)
{
    char want[300], got[80];
    const char *label = f->label ? f->label : path;
    unsigned t = type_of(v);
    if (!(f->types & t)) {
        describe(f, want, sizeof want);
        show(v, got, sizeof got);
        snprintf(where, wcap, "%s", path);
        snprintf(why, ycap, "%s must be %s, got %s", label, want, got);
        return -EINVAL;
    }
    bool below = f->min_open ? !(v->valuedouble > f->min) : !(v->valuedouble >= f->min);
    if (t == LUME_ST_NUMBER && (f->min != 0 || f->max != 0) &&
        (below || v->valuedouble > f->max)) {
        lume_schema_field only = *f;
        only.types = LUME_ST_NUMBER;
        describe(&only, want, sizeof want);
        show(v, got, sizeof got);
        snprintf(where, wcap, "%s", path);
        snprintf(why, ycap, "%s must be %s, got %s", label, want, got);
        return -EINVAL;
    }
    if (t == LUME_ST_STRING && f->choices) {
        size_t n = strlen(v->valuestring);
        const char *c = f->choices, *hit = NULL;
        for (const char *p = c; p && *p; p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL) {
            size_t len = strchr(p, '|') ? (size_t)(strchr(p, '|') - p) : strlen(p);
            if (len == n && !strncmp(p, v->valuestring, n))
                hit = p;
        }
        if (!hit) {
            lume_schema_field only = *f;
            only.types = LUME_ST_STRING;
            describe(&only, want, sizeof want);
            show(v, got, sizeof got);
            snprintf(where, wcap, "%s", path);
            snprintf(why, ycap, "%s must be %s, got %s", label, want, got);
            return -EINVAL;
        }
    }
    if (t == LUME_ST_OBJECT && depth < 8) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            char pat[256], cpath[512];
            snprintf(pat, sizeof pat, "%s.%s", f->path, e->string);
            snprintf(cpath, sizeof cpath, "%s.%s", path, e->string);
            const lume_schema_field *cf = strchr(e->string, '.') ? NULL : find(pat);
            if (!cf) {
                snprintf(pat, sizeof pat, "%s.*", f->path);
                cf = find(pat);
            }
            if (!cf) {
                if (f->open)
                    continue;
                /* the names it does have */
                size_t u = 0, plen = strlen(f->path);
                want[0] = 0;
                for (size_t i = 0; i < NFIELDS; i++)
                    if (!strncmp(fields[i].path, f->path, plen) && fields[i].path[plen] == '.' &&
                        !strchr(fields[i].path + plen + 1, '.') && u < sizeof want)
                        u += (size_t)snprintf(want + u, sizeof want - u, "%s%s", u ? ", " : "",
                                              fields[i].path + plen + 1);
                snprintf(where, wcap, "%s", cpath);
                snprintf(why, ycap, "%s: unknown key (%s has: %s)", cpath, path, want);
                return -EINVAL;
            }
            int r = check_node(cf, cpath, e, where, wcap, why, ycap, depth + 1);
            if (r < 0)
                return r;
        }
    }
    return check_rules(f, path, v, where, wcap, why, ycap);
}

int lume_twin_schema_check(const char *path, const cJSON *v, char *where, size_t wcap,
                           char *why, size_t ycap)
{
    if (!v || !path)
        return 0;
    /* the pattern of path: each segment by its exact name, else '*' */
    char pat[256] = "", seg[256];
    const lume_schema_field *f = NULL;
    for (const char *p = path; *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        snprintf(seg, sizeof seg, "%s%s%.*s", pat, *pat ? "." : "", (int)n, p);
        f = find(seg);
        if (!f && *pat) {
            snprintf(seg, sizeof seg, "%s.*", pat);
            f = find(seg);
        }
        if (!f)
            return 0; /* not lume's */
        snprintf(pat, sizeof pat, "%s", f->path);
        p = dot ? dot + 1 : p + n;
    }
    return check_node(f, path, v, where, wcap, why, ycap, 0);
}

int lume_twin_schema_outbox(lume_config *c, const cJSON *outbox, char *why, size_t cap)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, outbox) {
        char key[128], list[64] = "";
        snprintf(key, sizeof key, "outbox.%s", e->string);
        lume_config_value cv = {0};
        bool names = cJSON_IsArray(e);   /* durable_lanes: ["alarm", "bulk"] */
        if (names) {
            const cJSON *it;
            cJSON_ArrayForEach(it, e) {
                names = cJSON_IsString(it) && !strchr(it->valuestring, ',') &&
                        strlen(list) + strlen(it->valuestring) + 2 < sizeof list;
                if (!names)
                    break;
                if (*list)
                    strcat(list, ",");
                strcat(list, it->valuestring);
            }
        }
        if (names) {
            cv.kind = *list ? LUME_CV_STRING : LUME_CV_TABLE;
            cv.str = list;
        } else if (cJSON_IsNumber(e)) {
            cv.kind = LUME_CV_NUMBER;
            cv.num = e->valuedouble;
        } else if (cJSON_IsString(e)) {
            cv.kind = LUME_CV_STRING;
            cv.str = e->valuestring;
        } else if (cJSON_IsBool(e)) {
            cv.kind = LUME_CV_BOOL;
            cv.b = cJSON_IsTrue(e);
        } else {
            cv.kind = LUME_CV_OTHER;
            cv.type_name = cJSON_IsObject(e) ? "object" : cJSON_IsArray(e) ? "array" : "null";
        }
        char *err = NULL;
        if (lume_config_set(c, key, &cv, &err) != 0) { /* the config's own checks */
            snprintf(why, cap, "%s", err ? err : "bad value");
            free(err);
            return -EINVAL;
        }
    }
    return 0;
}
