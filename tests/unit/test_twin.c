/* tests/unit/test_twin.c — the twin's documents: RFC 7386 merge patch,
 * layered desired state with $version, change visits, the reported
 * document, persistence in a real SQLite file, and every malformed input we
 * could name. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv.h"
#include "log.h"
#include "testutil.h"
#include "twin.h"

static const char *const LAYERS[] = {"fleet", "site-a", "ring-pilot", "device"};
#define NLAYERS (sizeof LAYERS / sizeof LAYERS[0])

/* ---- helpers -------------------------------------------------------------- */

typedef struct fx {
    char     dir[256];
    char     path[300];
    lume_kv *kv;
} fx;

static int setup_kv(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "twin")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    char *err = NULL;
    if (!(f->kv = lume_kv_open(f->path, &err))) {
        fprintf(stderr, "kv open: %s\n", err ? err : "?");
        free(err);
        tu_rm_tree(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_kv(void **state)
{
    fx *f = *state;
    lume_kv_close(f->kv);
    tu_rm_tree(f->dir);
    free(f);
    return 0;
}

static void reopen_kv(fx *f)
{
    lume_kv_close(f->kv);
    char *err = NULL;
    f->kv = lume_kv_open(f->path, &err);
    assert_null(err);
    assert_non_null(f->kv);
}

static lume_twin *open_twin(lume_kv *kv)
{
    char *err = NULL;
    lume_twin *t = lume_twin_open(kv, LAYERS, NLAYERS, &err);
    if (!t)
        print_error("twin open: %s\n", err ? err : "?");
    assert_null(err);
    assert_non_null(t);
    return t;
}

static int setn(lume_twin *t, const char *layer, const char *json, size_t len)
{
    char *err = NULL;
    int rc = lume_twin_set_layer(t, layer, json, len, &err);
    if (rc < 0) {
        assert_non_null(err);
        print_message("  (set_layer %s: %s)\n", layer, err);
    } else {
        assert_null(err);
    }
    free(err);
    return rc;
}

static int set(lume_twin *t, const char *layer, const char *json)
{
    return setn(t, layer, json, strlen(json));
}

/* a equals the JSON text want (compared as documents, not as text). */
static void assert_json(const cJSON *a, const char *want)
{
    cJSON *w = cJSON_Parse(want);
    assert_non_null(w);
    if (!cJSON_Compare(a, w, 1)) {
        char *s = cJSON_PrintUnformatted(a);
        print_error("got  %s\nwant %s\n", s ? s : "(null)", want);
        free(s);
        cJSON_Delete(w);
        fail();
    }
    cJSON_Delete(w);
}

static char *print(const cJSON *x)
{
    char *s = cJSON_PrintUnformatted(x);
    assert_non_null(s);
    return s;
}

/* Log capture. */
typedef struct logcap {
    int  warns;
    char last[512];
} logcap;

static void cap_sink(void *ud, int level, const char *component, const char *msg)
{
    logcap *c = ud;
    if (level >= LUME_LOG_WARN && !strcmp(component, "twin")) {
        c->warns++;
        snprintf(c->last, sizeof c->last, "%s", msg);
    }
}

/* ---- RFC 7386 ------------------------------------------------------------ */

static void merge_case(const char *orig, const char *patch, const char *want)
{
    cJSON *t = cJSON_Parse(orig);
    cJSON *p = cJSON_Parse(patch);
    assert_non_null(t);
    assert_non_null(p);
    assert_int_equal(lume_json_merge_patch(&t, p), 0);
    assert_json(t, want);
    /* The result owns its memory: the patch can go first. */
    cJSON_Delete(p);
    char *s = print(t);
    free(s);
    cJSON_Delete(t);
}

static void test_rfc7386_appendix_a(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"a\":\"foo\"}", "null", "null"},
        {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        merge_case(cases[i][0], cases[i][1], cases[i][2]);
}

static void test_rfc7386_section3_and_null_target(void **state)
{
    (void)state;
    merge_case("{\"title\":\"Goodbye!\",\"author\":{\"givenName\":\"John\","
               "\"familyName\":\"Doe\"},\"tags\":[\"example\",\"sample\"],"
               "\"content\":\"This will be unchanged\"}",
               "{\"title\":\"Hello!\",\"phoneNumber\":\"+01-123-456-7890\","
               "\"author\":{\"familyName\":null},\"tags\":[\"example\"]}",
               "{\"title\":\"Hello!\",\"author\":{\"givenName\":\"John\"},"
               "\"tags\":[\"example\"],\"content\":\"This will be unchanged\","
               "\"phoneNumber\":\"+01-123-456-7890\"}");
    /* *target may be NULL. */
    cJSON *t = NULL;
    cJSON *p = cJSON_Parse("{\"a\":{\"b\":null,\"c\":1},\"d\":null}");
    assert_int_equal(lume_json_merge_patch(&t, p), 0);
    assert_json(t, "{\"a\":{\"c\":1}}");
    cJSON_Delete(t);
    cJSON_Delete(p);
}

/* A patch built with constant keys (cJSON_AddItemToObjectCS) does not leave
 * the target pointing into the patch's memory. */
static void test_merge_patch_copies_keys(void **state)
{
    (void)state;
    char *k1 = strdup("outer"), *k2 = strdup("inner");
    cJSON *p = cJSON_CreateObject(), *in = cJSON_CreateObject();
    cJSON_AddItemToObjectCS(in, k2, cJSON_CreateNumber(3));
    cJSON_AddItemToObjectCS(p, k1, in);
    cJSON *t = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(t, "x");
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(1));
    assert_int_equal(lume_json_merge_patch(&t, p), 0);
    cJSON_Delete(p);
    memset(k1, 'z', strlen(k1));
    memset(k2, 'z', strlen(k2));
    free(k1);
    free(k2);
    assert_json(t, "{\"x\":[1],\"outer\":{\"inner\":3}}");
    cJSON_Delete(t);
}

/* ---- layers ---------------------------------------------------------------- */

static void test_layers_merge_in_order(void **state)
{
    (void)state;
    const char *fleet = "{\"log\":{\"level\":\"info\",\"dest\":\"stderr\"},"
                        "\"sensors\":{\"temp\":{\"rate\":1,\"unit\":\"C\"}},\"beta\":true,"
                        "\"scripts\":{\"rules\":{\"version\":1}}}";
    const char *site = "{\"sensors\":{\"temp\":{\"rate\":2},\"hum\":{\"rate\":1}}}";
    const char *ring = "{\"beta\":null,\"log\":{\"level\":\"debug\"},"
                       "\"scripts\":{\"rules\":{\"version\":2}}}";
    const char *device = "{\"sensors\":{\"hum\":null,\"temp\":{\"unit\":\"F\"}},"
                         "\"scripts\":{\"sampling\":{\"version\":7}},\"tags\":[1,2]}";
    const char *want = "{\"log\":{\"level\":\"debug\",\"dest\":\"stderr\"},"
                       "\"sensors\":{\"temp\":{\"rate\":2,\"unit\":\"F\"}},"
                       "\"scripts\":{\"rules\":{\"version\":2},\"sampling\":{\"version\":7}},"
                       "\"tags\":[1,2]}";
    /* Arrival order must not matter: layer order decides. */
    static const int orders[][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}};
    const char *docs[] = {fleet, site, ring, device};
    for (size_t o = 0; o < 3; o++) {
        lume_twin *t = open_twin(NULL);
        assert_json(lume_twin_desired(t), "{}");
        for (int i = 0; i < 4; i++) {
            int l = orders[o][i];
            assert_int_equal(set(t, LAYERS[l], docs[l]), 1);
        }
        assert_json(lume_twin_desired(t), want);
        lume_twin_close(t);
    }
}

static void test_version_staleness(void **state)
{
    (void)state;
    lume_twin *t = open_twin(NULL);
    assert_int_equal(lume_twin_layer_version(t, "device"), -1);
    assert_int_equal(set(t, "device", "{\"$version\":5,\"rate\":5}"), 1);
    assert_int_equal(lume_twin_layer_version(t, "device"), 5);
    /* $-keys are metadata, not desired state. */
    assert_json(lume_twin_desired(t), "{\"rate\":5}");

    /* Older: ignored, nothing changes. */
    assert_int_equal(set(t, "device", "{\"$version\":4,\"rate\":4}"), 0);
    assert_json(lume_twin_desired(t), "{\"rate\":5}");
    assert_int_equal(lume_twin_layer_version(t, "device"), 5);
    assert_int_equal(set(t, "device", "{\"$version\":0,\"rate\":0}"), 0);
    assert_json(lume_twin_desired(t), "{\"rate\":5}");

    /* Same version, same content (any formatting, any key order, other $
     * metadata): a no-op. */
    assert_int_equal(set(t, "device", "{\"$version\":5,\"rate\":5}"), 0);
    assert_int_equal(set(t, "device", " { \"rate\" : 5.0 ,\n \"$version\" : 5, \"$by\":\"ops\" }"), 0);

    /* Newer applies. */
    assert_int_equal(set(t, "device", "{\"$version\":6,\"rate\":6,\"$by\":\"ops\"}"), 1);
    assert_json(lume_twin_desired(t), "{\"rate\":6}");
    assert_int_equal(lume_twin_layer_version(t, "device"), 6);

    /* Versions are per layer. */
    assert_int_equal(set(t, "fleet", "{\"$version\":2,\"rate\":1,\"mode\":\"eco\"}"), 1);
    assert_json(lume_twin_desired(t), "{\"rate\":6,\"mode\":\"eco\"}");
    char *v = lume_twin_versions_json(t);
    assert_non_null(v);
    cJSON *vj = cJSON_Parse(v);
    assert_json(vj, "{\"fleet\":2,\"device\":6}");
    cJSON_Delete(vj);
    free(v);

    /* A document without $version always replaces, and the layer then has
     * no version: any versioned document applies after it. */
    assert_int_equal(set(t, "device", "{\"rate\":1}"), 1);
    assert_int_equal(lume_twin_layer_version(t, "device"), -1);
    assert_json(lume_twin_desired(t), "{\"rate\":1,\"mode\":\"eco\"}");
    assert_int_equal(set(t, "device", "{\"rate\":1}"), 0);
    assert_int_equal(set(t, "device", "{\"$version\":1,\"rate\":2}"), 1);
    assert_int_equal(lume_twin_layer_version(t, "device"), 1);
    v = lume_twin_versions_json(t);
    vj = cJSON_Parse(v);
    assert_json(vj, "{\"fleet\":2,\"device\":1}");
    cJSON_Delete(vj);
    free(v);

    /* Largest exact version. */
    assert_int_equal(set(t, "ring-pilot", "{\"$version\":9007199254740991}"), 1);
    assert_true(lume_twin_layer_version(t, "ring-pilot") == 9007199254740991LL);
    assert_int_equal(lume_twin_layer_version(t, "no-such-layer"), -1);
    lume_twin_close(t);
}

static void test_same_version_new_content_warns(void **state)
{
    (void)state;
    logcap cap = {0};
    lume_log_set_sink(cap_sink, &cap);
    lume_twin *t = open_twin(NULL);
    assert_int_equal(set(t, "site-a", "{\"$version\":3,\"rate\":1}"), 1);
    assert_int_equal(cap.warns, 0);
    assert_int_equal(set(t, "site-a", "{\"$version\":3,\"rate\":2}"), 1);
    assert_json(lume_twin_desired(t), "{\"rate\":2}");
    assert_int_equal(cap.warns, 1);
    assert_non_null(strstr(cap.last, "layer 'site-a'"));
    assert_non_null(strstr(cap.last, "$version"));
    /* The same again is a no-op, and no warning. */
    assert_int_equal(set(t, "site-a", "{\"$version\":3,\"rate\":2}"), 0);
    assert_int_equal(cap.warns, 1);
    lume_twin_close(t);
    lume_log_set_sink(NULL, NULL);
}

static void test_clear_layer(void **state)
{
    (void)state;
    lume_twin *t = open_twin(NULL);
    assert_int_equal(setn(t, "device", "", 0), 0);      /* nothing to clear */
    assert_int_equal(set(t, "fleet", "{\"a\":1,\"b\":1}"), 1);
    assert_int_equal(set(t, "device", "{\"$version\":9,\"a\":null,\"c\":3}"), 1);
    assert_json(lume_twin_desired(t), "{\"b\":1,\"c\":3}");
    assert_int_equal(setn(t, "device", NULL, 0), 1);
    assert_json(lume_twin_desired(t), "{\"a\":1,\"b\":1}");
    assert_int_equal(lume_twin_layer_version(t, "device"), -1);
    char *v = lume_twin_versions_json(t);
    assert_string_equal(v, "{}");
    free(v);
    assert_int_equal(setn(t, "device", "", 0), 0);
    /* After a clear, an older version applies again. */
    assert_int_equal(set(t, "device", "{\"$version\":1,\"c\":1}"), 1);
    assert_json(lume_twin_desired(t), "{\"a\":1,\"b\":1,\"c\":1}");
    /* A layer holding only a version is present: clearing it is a change. */
    assert_int_equal(set(t, "ring-pilot", "{\"$version\":4}"), 1);
    assert_int_equal(setn(t, "ring-pilot", "", 0), 1);
    lume_twin_close(t);
}

static void test_depth_32_accepted(void **state)
{
    (void)state;
    char buf[512];
    size_t n = 0;
    for (int i = 0; i < 32; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "{\"k\":");
    n += (size_t)snprintf(buf + n, sizeof buf - n, "1");
    for (int i = 0; i < 32; i++)
        buf[n++] = '}';
    buf[n] = 0;
    lume_twin *t = open_twin(NULL);
    assert_int_equal(set(t, "device", buf), 1);
    const cJSON *x = lume_twin_desired(t);
    int depth = 0;
    while (cJSON_IsObject(x)) {
        depth++;
        x = cJSON_GetObjectItemCaseSensitive(x, "k");
    }
    assert_int_equal(depth, 32);
    assert_true(cJSON_IsNumber(x));
    lume_twin_close(t);
}

/* Objects large enough to take the indexed paths (merge, compare,
 * duplicate detection). */
static void test_large_objects(void **state)
{
    (void)state;
    size_t cap = 300000, n = 0;
    char *a = malloc(cap), *b = malloc(cap);
    assert_non_null(a);
    assert_non_null(b);
    n += (size_t)snprintf(a + n, cap - n, "{\"$version\":1");
    for (int i = 0; i < 15000; i++)
        n += (size_t)snprintf(a + n, cap - n, ",\"k%d\":%d", i, i);
    snprintf(a + n, cap - n, "}");
    lume_twin *t = open_twin(NULL);
    assert_int_equal(set(t, "fleet", a), 1);
    assert_int_equal(cJSON_GetArraySize(lume_twin_desired(t)), 15000);
    assert_int_equal(set(t, "fleet", a), 0);

    /* The device deletes the even keys and changes k1. */
    n = (size_t)snprintf(b, cap, "{\"k1\":\"one\"");
    for (int i = 0; i < 15000; i += 2)
        n += (size_t)snprintf(b + n, cap - n, ",\"k%d\":null", i);
    snprintf(b + n, cap - n, "}");
    assert_int_equal(set(t, "device", b), 1);
    const cJSON *d = lume_twin_desired(t);
    assert_int_equal(cJSON_GetArraySize(d), 7500);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(d, "k1")->valuestring, "one");
    assert_null(cJSON_GetObjectItemCaseSensitive(d, "k2"));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(d, "k14999")->valueint, 14999);

    /* The same keys in another order are the same document. */
    n = (size_t)snprintf(b, cap, "{\"$version\":1");
    for (int i = 14999; i >= 0; i--)
        n += (size_t)snprintf(b + n, cap - n, ",\"k%d\":%d", i, i);
    snprintf(b + n, cap - n, "}");
    assert_int_equal(set(t, "fleet", b), 0);

    /* A key twice in a large object is found. */
    n = (size_t)snprintf(b, cap, "{\"k0\":0");
    for (int i = 1; i < 100; i++)
        n += (size_t)snprintf(b + n, cap - n, ",\"k%d\":%d", i, i);
    snprintf(b + n, cap - n, ",\"k57\":1}");
    char *err = NULL;
    assert_int_equal(lume_twin_set_layer(t, "site-a", b, strlen(b), &err), -EINVAL);
    assert_non_null(strstr(err, "\"k57\" twice"));
    free(err);
    lume_twin_close(t);
    free(a);
    free(b);
}

/* ---- each_change ---------------------------------------------------------- */

typedef struct visit {
    char key[32];
    char now[128];
    char before[128];
} visit;

typedef struct visits {
    int   n;
    visit v[16];
} visits;

static void on_change(void *ud, const char *key, const cJSON *now, const cJSON *before)
{
    visits *vs = ud;
    assert_true(vs->n < 16);
    visit *v = &vs->v[vs->n++];
    snprintf(v->key, sizeof v->key, "%s", key);
    char *s = now ? print(now) : NULL;
    snprintf(v->now, sizeof v->now, "%s", s ? s : "-");
    free(s);
    s = before ? print(before) : NULL;
    snprintf(v->before, sizeof v->before, "%s", s ? s : "-");
    free(s);
}

static const visit *find_visit(const visits *vs, const char *key)
{
    const visit *found = NULL;
    for (int i = 0; i < vs->n; i++)
        if (!strcmp(vs->v[i].key, key)) {
            assert_null(found);          /* each key at most once */
            found = &vs->v[i];
        }
    return found;
}

static void expect_visit(const visits *vs, const char *key, const char *now,
                         const char *before)
{
    const visit *v = find_visit(vs, key);
    if (!v)
        print_error("no visit of %s\n", key);
    assert_non_null(v);
    assert_string_equal(v->now, now);
    assert_string_equal(v->before, before);
}

static void test_each_change(void **state)
{
    (void)state;
    lume_twin *t = open_twin(NULL);
    visits vs = {0};
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 0);              /* nothing desired yet */

    assert_int_equal(set(t, "fleet", "{\"log\":\"info\",\"sensors\":{\"t\":1},\"keep\":1}"), 1);
    assert_int_equal(set(t, "device", "{\"scripts\":{\"rules\":\"v1\"}}"), 1);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 4);               /* the first visit sees every key */
    expect_visit(&vs, "log", "\"info\"", "-");
    expect_visit(&vs, "sensors", "{\"t\":1}", "-");
    expect_visit(&vs, "keep", "1", "-");
    expect_visit(&vs, "scripts", "{\"rules\":\"v1\"}", "-");

    memset(&vs, 0, sizeof vs);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 0);

    /* Added, changed (deep inside), removed; "keep" and "scripts" not. */
    assert_int_equal(set(t, "device", "{\"scripts\":{\"rules\":\"v1\"},\"log\":null,"
                                      "\"sensors\":{\"t\":2},\"rate\":10}"), 1);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 3);
    expect_visit(&vs, "rate", "10", "-");
    expect_visit(&vs, "sensors", "{\"t\":2}", "{\"t\":1}");
    expect_visit(&vs, "log", "-", "\"info\"");

    /* A layer change that leaves the merged document as it was. */
    memset(&vs, 0, sizeof vs);
    assert_int_equal(set(t, "ring-pilot", "{\"keep\":1}"), 1);
    assert_int_equal(set(t, "site-a", "{}"), 1);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 0);

    /* Stale and identical documents change nothing to visit. */
    assert_int_equal(set(t, "site-a", "{}"), 0);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 0);

    /* Clearing a layer removes its keys. */
    assert_int_equal(setn(t, "device", "", 0), 1);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 4);
    expect_visit(&vs, "log", "\"info\"", "-");                  /* no longer deleted */
    expect_visit(&vs, "scripts", "-", "{\"rules\":\"v1\"}");
    expect_visit(&vs, "sensors", "{\"t\":1}", "{\"t\":2}");
    expect_visit(&vs, "rate", "-", "10");
    lume_twin_close(t);
}

typedef struct reenter {
    lume_twin *t;
    int        calls;
} reenter;

static void on_change_sets(void *ud, const char *key, const cJSON *now, const cJSON *before)
{
    reenter *r = ud;
    r->calls++;
    /* Replaces the merged document while its keys are being visited. */
    assert_int_equal(set(r->t, "device", "{\"b\":2}"), r->calls == 1 ? 1 : 0);
    assert_non_null(key);
    if (now)
        free(print(now));
    if (before)
        free(print(before));
    lume_twin_each_change(r->t, on_change_sets, ud);   /* nested: ignored */
}

static void test_each_change_callback_may_set(void **state)
{
    (void)state;
    lume_twin *t = open_twin(NULL);
    assert_int_equal(set(t, "fleet", "{\"a\":1,\"c\":3}"), 1);
    reenter r = {t, 0};
    lume_twin_each_change(t, on_change_sets, &r);
    assert_int_equal(r.calls, 2);
    /* The change made during the visit is visited next time. */
    visits vs = {0};
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 1);
    expect_visit(&vs, "b", "2", "-");
    lume_twin_close(t);
}

/* ---- malformed input ------------------------------------------------------ */

typedef struct bad {
    const char *json;
    size_t      len;        /* 0: strlen */
    const char *expect;     /* in the message */
} bad;

static void expect_refused(lume_twin *t, lume_kv *kv, const char *json, size_t len,
                           const char *expect, const char *good_raw)
{
    char *before = print(lume_twin_desired(t));
    char *vbefore = lume_twin_versions_json(t);
    char *err = NULL;
    int rc = lume_twin_set_layer(t, "device", json, len, &err);
    if (rc >= 0 || !err || !strstr(err, expect))
        print_error("input %.60s: rc %d, message: %s\nwanted: %s\n", json, rc,
                    err ? err : "(none)", expect);
    assert_true(rc < 0);
    assert_non_null(err);
    assert_non_null(strstr(err, expect));
    assert_non_null(strstr(err, "desired document for layer 'device'"));
    free(err);
    char *after = print(lume_twin_desired(t));
    char *vafter = lume_twin_versions_json(t);
    assert_string_equal(before, after);
    assert_string_equal(vbefore, vafter);
    free(before);
    free(after);
    free(vbefore);
    free(vafter);
    /* What was persisted is still the last good document. */
    void *v = NULL;
    size_t vlen = 0;
    assert_int_equal(lume_kv_get(kv, "twin", "layer:device", &v, &vlen, NULL), 0);
    assert_int_equal(vlen, strlen(good_raw));
    assert_memory_equal(v, good_raw, vlen);
    free(v);
}

static void test_malformed_refused(void **state)
{
    fx *f = *state;
    static const char nul_in_string[] = "{\"a\":\"x\0y\"}";
    static const char nul_after[] = "{\"a\":1}\0";
    static const bad cases[] = {
        {"not json", 0, "not JSON (error near byte"},
        {"{\"a\": {\"b\": 1}", 0, "not JSON (error near byte"},
        {"{\"a\":1", 0, "not JSON (error near byte"},
        {"{\"a\":tru}", 0, "not JSON (error near byte"},
        {"{\"a\":1,}", 0, "not JSON (error near byte"},
        {"{'a':1}", 0, "not JSON (error near byte"},
        {"   ", 0, "not JSON (error near byte"},
        {"{\"a\":1} {\"b\":2}", 0, "not JSON (more data after the document, at byte 8)"},
        {"{\"a\":1}x", 0, "not JSON (more data after the document, at byte 7)"},
        {"[1,2]", 0, "must be a JSON object, got an array"},
        {"\"text\"", 0, "must be a JSON object, got a string"},
        {"42", 0, "must be a JSON object, got a number"},
        {"null", 0, "must be a JSON object, got null"},
        {"true", 0, "must be a JSON object, got true"},
        {"{\"$version\":\"7\"}", 0, "$version must be a non-negative integer, got \"7\""},
        {"{\"$version\":-1}", 0, "$version must be a non-negative integer, got -1"},
        {"{\"$version\":1.5}", 0, "$version must be a non-negative integer, got 1.5"},
        {"{\"$version\":true}", 0, "$version must be a non-negative integer, got true"},
        {"{\"$version\":null}", 0, "$version must be a non-negative integer, got null"},
        {"{\"$version\":[3]}", 0, "$version must be a non-negative integer, got [3]"},
        {"{\"$version\":{\"v\":3}}", 0, "$version must be a non-negative integer, got {\"v\":3}"},
        {"{\"$version\":1e300}", 0, "$version 1e+300 is too large"},
        {"{\"$version\":9007199254740992}", 0, "is too large (at most 9007199254740991)"},
        {"{\"$version\":3,\"$version\":4}", 0, "has the key \"$version\" twice in the top level"},
        {"{\"s\":{\"a\":1,\"b\":2,\"a\":3}}", 0, "has the key \"a\" twice in s"},
        {"{\"a\":1e999}", 0, "has a number out of range at a"},
        {"{\"a\":{\"b\":[1,-1e400]}}", 0, "has a number out of range at a.b[1]"},
        {nul_in_string, sizeof nul_in_string - 1, "contains a NUL byte at byte 7"},
        {nul_after, sizeof nul_after - 1, "contains a NUL byte at byte 7"},
        {"{\"a\":\"x\\u0000y\"}", 0, "contains \\u0000 (a NUL character) at byte 7"},
        {"{\"a\\u0000\":1}", 0, "contains \\u0000"},
        {"{\"a\":\"\\uZZZZ\"}", 0, "not JSON (bad \\u escape at byte 6)"},
        {"{\"a\":\"\\u12\"}", 0, "not JSON (bad \\u escape at byte 6)"},
        {"{\"a\":\"\\ud800\"}", 0, "not JSON (error near byte"},
        {"{\"a\":\"\\q\"}", 0, "not JSON (error near byte"},
        {"{\"a\":\"\xff\"}", 0, "is not valid UTF-8 (byte 0xff at byte 6)"},
        {"{\"a\":\"\xc0\xaf\"}", 0, "is not valid UTF-8 (byte 0xc0 at byte 6)"},
        {"{\"a\":\"\xed\xa0\x80\"}", 0, "is not valid UTF-8 (byte 0xed at byte 6)"},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", 0, "is not valid UTF-8"},
        {"{\"a\":\"\xe2\x82\"}", 0, "is not valid UTF-8"},
        {"{\"\xfe\":1}", 0, "is not valid UTF-8"},
        {"{\"a\":\"tab\there\"}", 0, "control character 0x09 in a string at byte 9"},
        {"{\"a\":\"line\nbreak\"}", 0, "control character 0x0a in a string"},
        {"{\x01\"a\":1}", 0, "not JSON (control character 0x01 at byte 1)"},
    };
    lume_twin *t = open_twin(f->kv);
    const char *good = "{\"$version\":3,\"scripts\":{\"rules\":\"v1\"},\"log\":\"info\"}";
    assert_int_equal(set(t, "device", good), 1);
    assert_int_equal(set(t, "fleet", "{\"log\":\"warn\",\"sensors\":{\"t\":{\"rate\":1}}}"), 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(t, f->kv, cases[i].json, cases[i].len ? cases[i].len : strlen(cases[i].json),
                       cases[i].expect, good);

    /* Larger than the limit: refused before parsing. */
    size_t big = 300000;
    char *s = malloc(big + 1);
    assert_non_null(s);
    memset(s, ' ', big);
    memcpy(s, "{\"a\":\"", 6);
    memset(s + 6, 'x', big - 8);
    memcpy(s + big - 2, "\"}", 2);
    s[big] = 0;
    expect_refused(t, f->kv, s, big, "is 300000 bytes, more than 262144", good);
    /* At the limit: accepted. */
    memset(s + 6, 'y', LUME_TWIN_MAX_DOC - 8);
    memcpy(s + LUME_TWIN_MAX_DOC - 2, "\"}", 2);
    assert_int_equal(setn(t, "ring-pilot", s, LUME_TWIN_MAX_DOC), 1);
    assert_int_equal(setn(t, "ring-pilot", "", 0), 1);

    /* 100000 levels of arrays, and of objects: refused by lume's own depth
     * check before cJSON recurses. cJSON alone also refuses (its nesting
     * limit is 1000) without crashing. */
    size_t deep = 100000;
    for (size_t i = 0; i < deep; i++)
        s[i] = '[';
    expect_refused(t, f->kv, s, deep, "is nested deeper than 32", good);
    cJSON *raw = cJSON_ParseWithLength(s, deep);
    assert_null(raw);
    for (size_t i = deep; i < 2 * deep; i++)
        s[i] = ']';
    assert_null(cJSON_ParseWithLength(s, 2 * deep));
    size_t n = 0;
    for (size_t i = 0; i < 20000; i++)
        n += (size_t)snprintf(s + n, big - n, "{\"k\":");
    expect_refused(t, f->kv, s, n, "is nested deeper than 32", good);

    /* 33 levels: refused; brackets inside strings do not count. */
    n = 0;
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(s + n, big - n, "{\"k\":");
    n += (size_t)snprintf(s + n, big - n, "1");
    for (int i = 0; i < 33; i++)
        s[n++] = '}';
    expect_refused(t, f->kv, s, n, "is nested deeper than 32", good);
    n = 0;
    for (int i = 0; i < 31; i++)
        n += (size_t)snprintf(s + n, big - n, "{\"k[{\\\"\":");
    n += (size_t)snprintf(s + n, big - n, "[\"]]]{{{[[[\"]");
    for (int i = 0; i < 31; i++)
        s[n++] = '}';
    assert_int_equal(setn(t, "site-a", s, n), 1);
    free(s);

    /* An unknown layer. */
    char *err = NULL;
    assert_int_equal(lume_twin_set_layer(t, "site-b", "{}", 2, &err), -ENOENT);
    assert_non_null(strstr(err, "unknown layer 'site-b'"));
    free(err);

    /* After all that, the device still runs the last good documents, also
     * after a restart. */
    const cJSON *d = lume_twin_desired(t);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(d, "log")->valuestring, "info");
    assert_json(cJSON_GetObjectItemCaseSensitive(d, "scripts"), "{\"rules\":\"v1\"}");
    char *last = print(d);
    lume_twin_close(t);
    t = open_twin(f->kv);
    char *again = print(lume_twin_desired(t));
    assert_string_equal(last, again);
    assert_int_equal(lume_twin_layer_version(t, "device"), 3);
    free(last);
    free(again);
    lume_twin_close(t);
}

/* lume_twin_parse on its own: any JSON value, the same limits. */
static void test_parse_standalone(void **state)
{
    (void)state;
    char *err = (char *)0x1;
    const char *arr = "[1,\"\xc3\xa9\",{\"a\":null}]";
    cJSON *x = lume_twin_parse(arr, strlen(arr), &err);
    assert_null(err);
    assert_non_null(x);
    assert_json(x, "[1,\"\xc3\xa9\",{\"a\":null}]");
    cJSON_Delete(x);
    const char *bom = "\xef\xbb\xbf {\"bom\":1}\n";     /* a BOM is allowed */
    x = lume_twin_parse(bom, strlen(bom), &err);
    assert_non_null(x);
    cJSON_Delete(x);
    assert_null(lume_twin_parse("", 0, &err));
    assert_string_equal(err, "document: not JSON (empty)");
    free(err);
    assert_null(lume_twin_parse("[1,2", 4, &err));
    assert_string_equal(err, "document: not JSON (error near byte 3 of 4)");
    free(err);
    /* err may be NULL. */
    assert_null(lume_twin_parse("{", 1, NULL));
}

/* lume_twin_parse_object: an object, errors naming what it is. */
static void test_parse_object(void **state)
{
    (void)state;
    char *err = NULL;
    cJSON *x = lume_twin_parse_object("twin GET answer", "{\"desired\":{}}", 14, &err);
    assert_null(err);
    assert_json(x, "{\"desired\":{}}");
    cJSON_Delete(x);
    assert_null(lume_twin_parse_object("twin GET answer", "{\"desired\": {", 13, &err));
    assert_string_equal(err, "twin GET answer: not JSON (error near byte 12 of 13)");
    free(err);
    assert_null(lume_twin_parse_object("desired patch $version 7", "[1, 2]", 6, &err));
    assert_string_equal(err, "desired patch $version 7 must be a JSON object, got an array");
    free(err);
    char deep[80];
    memset(deep, '[', 40);
    assert_null(lume_twin_parse_object("desired patch $version 8", deep, 40, &err));
    assert_string_equal(err, "desired patch $version 8 is nested deeper than 32");
    free(err);
}

/* ---- reported ------------------------------------------------------------- */

static cJSON *P(const char *s)
{
    cJSON *x = cJSON_Parse(s);
    assert_non_null(x);
    return x;
}

static int report(lume_twin *t, const char *json)
{
    cJSON *p = P(json);
    char *err = NULL;
    int rc = lume_twin_report(t, p, &err);
    assert_true(rc < 0 ? err != NULL : err == NULL);
    free(err);
    cJSON_Delete(p);
    return rc;
}

static void test_reported(void **state)
{
    (void)state;
    lume_twin *t = open_twin(NULL);
    assert_false(lume_twin_reported_dirty(t));
    assert_json(lume_twin_reported(t), "{}");

    assert_int_equal(report(t, "{\"scripts\":{\"rules\":{\"state\":\"soak\"}},\"fw\":\"1.2\"}"), 0);
    assert_true(lume_twin_reported_dirty(t));
    char *s = lume_twin_take_reported(t);
    assert_non_null(s);
    cJSON *j = P(s);
    assert_json(j, "{\"scripts\":{\"rules\":{\"state\":\"soak\"}},\"fw\":\"1.2\"}");
    assert_null(strchr(s, '\n'));                 /* unformatted */
    cJSON_Delete(j);
    free(s);
    assert_false(lume_twin_reported_dirty(t));

    /* Patching what is already there is not a change. */
    assert_int_equal(report(t, "{\"fw\":\"1.2\",\"scripts\":{\"rules\":{}}}"), 0);
    assert_false(lume_twin_reported_dirty(t));
    assert_int_equal(report(t, "{}"), 0);
    assert_false(lume_twin_reported_dirty(t));
    assert_int_equal(report(t, "{\"gone\":null}"), 0);
    assert_false(lume_twin_reported_dirty(t));

    /* Nested merge, null deletes. */
    assert_int_equal(report(t, "{\"scripts\":{\"rules\":{\"state\":\"live\",\"v\":2},"
                               "\"sampling\":{\"state\":\"live\"}},\"fw\":null}"), 0);
    assert_true(lume_twin_reported_dirty(t));
    assert_json(lume_twin_reported(t), "{\"scripts\":{\"rules\":{\"state\":\"live\",\"v\":2},"
                                       "\"sampling\":{\"state\":\"live\"}}}");
    s = lume_twin_take_reported(t);
    free(s);

    /* Not an object, or too deep: refused, nothing changes. */
    char *err = NULL;
    cJSON *arr = P("[1]");
    assert_int_equal(lume_twin_report(t, arr, &err), -EINVAL);
    assert_string_equal(err, "reported patch must be a JSON object, got an array");
    free(err);
    cJSON_Delete(arr);
    assert_int_equal(lume_twin_report(t, NULL, NULL), -EINVAL);
    cJSON *deep = cJSON_CreateObject(), *cur = deep;
    for (int i = 0; i < 40; i++)
        cur = cJSON_AddObjectToObject(cur, "d");
    assert_int_equal(lume_twin_report(t, deep, &err), -EINVAL);
    assert_non_null(strstr(err, "nested deeper than 32"));
    free(err);
    cJSON_Delete(deep);
    assert_false(lume_twin_reported_dirty(t));
    lume_twin_close(t);
}

/* ---- persistence ------------------------------------------------------------ */

static void test_persistence(void **state)
{
    fx *f = *state;
    lume_twin *t = open_twin(f->kv);
    assert_int_equal(set(t, "fleet", "{\"$version\":2,\"log\":\"warn\",\"sensors\":{\"t\":{\"rate\":1}}}"), 1);
    assert_int_equal(set(t, "site-a", "{\"sensors\":{\"h\":{\"rate\":2}}}"), 1);
    assert_int_equal(set(t, "device", "{\"$version\":7,\"log\":null,\"scripts\":{\"rules\":\"v3\"}}"), 1);
    assert_int_equal(set(t, "ring-pilot", "{\"beta\":true}"), 1);
    assert_int_equal(setn(t, "ring-pilot", "", 0), 1);       /* cleared: not persisted */
    assert_int_equal(report(t, "{\"scripts\":{\"rules\":\"live\"}}"), 0);
    free(lume_twin_take_reported(t));
    assert_int_equal(report(t, "{\"unsent\":1}"), 0);          /* not taken: not saved */
    char *desired = print(lume_twin_desired(t));
    char *versions = lume_twin_versions_json(t);
    visits vs = {0};
    lume_twin_each_change(t, on_change, &vs);
    lume_twin_close(t);

    /* A restart, offline: the device runs what it last applied. */
    reopen_kv(f);
    t = open_twin(f->kv);
    char *d2 = print(lume_twin_desired(t));
    char *v2 = lume_twin_versions_json(t);
    assert_string_equal(d2, desired);
    assert_string_equal(v2, versions);
    assert_json(lume_twin_desired(t), "{\"sensors\":{\"t\":{\"rate\":1},\"h\":{\"rate\":2}},"
                                      "\"scripts\":{\"rules\":\"v3\"}}");
    assert_int_equal(lume_twin_layer_version(t, "device"), 7);
    assert_int_equal(lume_twin_layer_version(t, "fleet"), 2);
    assert_json(lume_twin_reported(t), "{\"scripts\":{\"rules\":\"live\"}}");
    assert_false(lume_twin_reported_dirty(t));
    free(d2);
    free(v2);
    /* Every key is visited once after open. */
    memset(&vs, 0, sizeof vs);
    lume_twin_each_change(t, on_change, &vs);
    assert_int_equal(vs.n, 2);
    expect_visit(&vs, "sensors", "{\"t\":{\"rate\":1},\"h\":{\"rate\":2}}", "-");
    /* Versions held survive: the broker re-sending older state is stale,
     * the same state is a no-op. */
    assert_int_equal(set(t, "device", "{\"$version\":6,\"scripts\":{\"rules\":\"v2\"}}"), 0);
    assert_int_equal(set(t, "device", "{\"$version\":7,\"log\":null,\"scripts\":{\"rules\":\"v3\"}}"), 0);
    assert_int_equal(set(t, "site-a", "{\"sensors\":{\"h\":{\"rate\":2}}}"), 0);
    lume_twin_close(t);

    /* Another group list (the device moved to site-b): site-a's saved
     * document is not merged. */
    static const char *const other[] = {"fleet", "site-b", "device"};
    char *err = NULL;
    t = lume_twin_open(f->kv, other, 3, &err);
    assert_non_null(t);
    assert_json(lume_twin_desired(t), "{\"sensors\":{\"t\":{\"rate\":1}},"
                                      "\"scripts\":{\"rules\":\"v3\"}}");
    lume_twin_close(t);

    free(desired);
    free(versions);
}

static void test_persisted_garbage_is_skipped(void **state)
{
    fx *f = *state;
    const char *junk = "{\"a\":";
    assert_int_equal(lume_kv_set(f->kv, "twin", "layer:device", junk, strlen(junk), 1), 0);
    const char *ok = "{\"$version\":4,\"a\":1}";
    assert_int_equal(lume_kv_set(f->kv, "twin", "layer:fleet", ok, strlen(ok), 1), 0);
    assert_int_equal(lume_kv_set(f->kv, "twin", "reported", "[1]", 3, 1), 0);
    logcap cap = {0};
    lume_log_set_sink(cap_sink, &cap);
    lume_twin *t = open_twin(f->kv);
    assert_int_equal(cap.warns, 2);
    assert_non_null(strstr(cap.last, "saved reported document"));
    assert_json(lume_twin_desired(t), "{\"a\":1}");
    assert_int_equal(lume_twin_layer_version(t, "fleet"), 4);
    assert_int_equal(lume_twin_layer_version(t, "device"), -1);
    assert_json(lume_twin_reported(t), "{}");
    /* The next good document replaces it. */
    assert_int_equal(set(t, "device", "{\"b\":2}"), 1);
    lume_twin_close(t);
    t = open_twin(f->kv);
    assert_json(lume_twin_desired(t), "{\"a\":1,\"b\":2}");
    assert_int_equal(cap.warns, 3);           /* the reported document, again */
    lume_twin_close(t);
    lume_log_set_sink(NULL, NULL);
}

static void test_open_errors(void **state)
{
    (void)state;
    char *err = NULL;
    static const char *const dup[] = {"fleet", "device", "fleet"};
    assert_null(lume_twin_open(NULL, dup, 3, &err));
    assert_string_equal(err, "twin: layer 'fleet' is listed twice");
    free(err);
    static const char *const empty[] = {"fleet", ""};
    assert_null(lume_twin_open(NULL, empty, 2, &err));
    assert_string_equal(err, "twin: layer 2 has no name");
    free(err);
    /* No layers: a twin whose desired document stays {}. */
    lume_twin *t = lume_twin_open(NULL, NULL, 0, &err);
    assert_non_null(t);
    assert_json(lume_twin_desired(t), "{}");
    assert_int_equal(lume_twin_set_layer(t, "device", "{}", 2, &err), -ENOENT);
    free(err);
    lume_twin_close(t);
    lume_twin_close(NULL);
}

int main(void)
{
    lume_log_set_level(LUME_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7386_appendix_a),
        cmocka_unit_test(test_rfc7386_section3_and_null_target),
        cmocka_unit_test(test_merge_patch_copies_keys),
        cmocka_unit_test(test_layers_merge_in_order),
        cmocka_unit_test(test_version_staleness),
        cmocka_unit_test(test_same_version_new_content_warns),
        cmocka_unit_test(test_clear_layer),
        cmocka_unit_test(test_depth_32_accepted),
        cmocka_unit_test(test_large_objects),
        cmocka_unit_test(test_each_change),
        cmocka_unit_test(test_each_change_callback_may_set),
        cmocka_unit_test_setup_teardown(test_malformed_refused, setup_kv, teardown_kv),
        cmocka_unit_test(test_parse_standalone),
        cmocka_unit_test(test_parse_object),
        cmocka_unit_test(test_reported),
        cmocka_unit_test_setup_teardown(test_persistence, setup_kv, teardown_kv),
        cmocka_unit_test_setup_teardown(test_persisted_garbage_is_skipped, setup_kv, teardown_kv),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
