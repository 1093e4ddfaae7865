// fuzz-liblume: yes
/* tests/fuzz/fuzz_twin.c — libFuzzer target for core/store/twin.c.
 *
 * Input: [ctl][doc 0] 0x1e [doc 1] 0x1e ... 0x1e [reported patch]. The
 * pieces after ctl are split on 0x1e (a byte no accepted JSON holds raw):
 * up to 4 layer documents, then, when there are at least 2 pieces, the
 * last is a reported patch. Two bits of ctl per document pick its layer
 * among fleet, site, ring, device (several may go to the same layer: a
 * replacement, a stale version, a clear when the piece is empty). A twin
 * without kv gets them in order; the invariants below abort on violation:
 *
 *  1. the merged document is always an object;
 *  2. a set_layer error comes with a message and leaves the desired
 *     document and the versions exactly as they were (printed JSON
 *     compared), and so does a 0 (stale or identical);
 *  3. applying the document just applied again returns 0;
 *  4. each_change visits each key at most once, "now" is the key's value
 *     in the desired document (NULL only when the key is gone), "before"
 *     is its value at the previous visit (NULL only when it was absent), and
 *     every key whose value prints differently (object members sorted) is
 *     visited; a second
 *     each_change visits nothing, and neither does one after a layer change
 *     that leaves the merged document as it was (an empty "probe" layer
 *     merged first);
 *  5. the reported patch (parsed with the twin's limits) is accepted when
 *     it is an object, refused otherwise; applying it twice is the same as
 *     once (not dirty again), and take_reported gives JSON that parses back
 *     to an object;
 *  6. a second twin given the documents each layer holds, in reverse layer
 *     order, merges to the same document. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "twin.h"

#include "fuzz.h"

#define SEP 0x1e

static const char *const LAYERS[] = {"probe", "fleet", "site", "ring", "device"};
#define NLAYERS 5

static void quiet(void *ud, int level, const char *component, const char *msg)
{
    (void)ud, (void)level, (void)component, (void)msg;
}

static char *print(const cJSON *x)
{
    char *s = cJSON_PrintUnformatted(x);
    CHECK(s != NULL);
    return s;
}

typedef struct seen {
    const cJSON *desired;   /* the twin's document now */
    const cJSON *prev;      /* a copy of it as of the previous visit */
    char        *keys[4096];
    int          n;
    bool         overflow;
} seen;

static void on_change(void *ud, const char *key, const cJSON *now, const cJSON *before)
{
    seen *s = ud;
    CHECK(key != NULL);
    CHECK(now || before);
    for (int i = 0; i < s->n; i++)
        CHECK(strcmp(s->keys[i], key) != 0);
    if (s->n < 4096)
        s->keys[s->n++] = strdup(key);
    else
        s->overflow = true;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(s->desired, key);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(s->prev, key);
    CHECK((now == NULL) == (d == NULL));
    CHECK((before == NULL) == (p == NULL));
    if (now) {
        char *a = print(now), *b = print(d);
        CHECK(strcmp(a, b) == 0);
        free(a);
        free(b);
    }
    if (before) {
        char *a = print(before), *b = print(p);
        CHECK(strcmp(a, b) == 0);
        free(a);
        free(b);
    }
}

static void on_change_none(void *ud, const char *key, const cJSON *now, const cJSON *before)
{
    (void)ud, (void)now, (void)before;
    fprintf(stderr, "unexpected change of '%s'\n", key);
    CHECK(!"each_change visited a key that did not change");
}

static bool was_seen(const seen *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->keys[i], key))
            return true;
    return s->overflow;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Objects are unordered: sort their members (in place) before printing. */
static void canon(cJSON *x)
{
    size_t n = 0;
    for (cJSON *c = x->child; c; c = c->next) {
        canon(c);
        n++;
    }
    if (!cJSON_IsObject(x) || n < 2)
        return;
    cJSON **v = malloc(n * sizeof *v);
    CHECK(v != NULL);
    n = 0;
    for (cJSON *c = x->child; c; c = c->next)
        v[n++] = c;
    qsort(v, n, sizeof *v, by_name);
    for (size_t i = 0; i < n; i++) {
        v[i]->prev = i ? v[i - 1] : v[n - 1];
        v[i]->next = i + 1 < n ? v[i + 1] : NULL;
    }
    x->child = v[0];
    free(v);
}

static char *print_canon(const cJSON *x)
{
    cJSON *d = cJSON_Duplicate(x, 1);
    CHECK(d != NULL);
    canon(d);
    char *s = print(d);
    cJSON_Delete(d);
    return s;
}

/* Visit, check, and keep a copy of the document for next time. */
static void visit(lume_twin *t, cJSON **prev)
{
    seen s = {.desired = lume_twin_desired(t), .prev = *prev};
    lume_twin_each_change(t, on_change, &s);
    /* Whatever prints differently was visited. */
    const cJSON *c;
    cJSON_ArrayForEach(c, s.desired) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(*prev, c->string);
        char *a = print_canon(c), *b = p ? print_canon(p) : NULL;
        if (!b || strcmp(a, b))
            CHECK(was_seen(&s, c->string));
        free(a);
        free(b);
    }
    cJSON_ArrayForEach(c, *prev)
        if (!cJSON_GetObjectItemCaseSensitive(s.desired, c->string))
            CHECK(was_seen(&s, c->string));
    for (int i = 0; i < s.n; i++)
        free(s.keys[i]);
    lume_twin_each_change(t, on_change_none, NULL);
    cJSON_Delete(*prev);
    *prev = cJSON_Duplicate(s.desired, 1);
    CHECK(*prev != NULL);
}

/* A layer change that leaves the merged document as it was. */
static void probe_toggle(lume_twin *t)
{
    char *err = NULL;
    int rc = lume_twin_set_layer(t, "probe", "{}", 2, &err);
    CHECK(err == NULL);
    if (rc == 0)
        rc = lume_twin_set_layer(t, "probe", "", 0, &err);
    CHECK(rc == 1 && err == NULL);
    lume_twin_each_change(t, on_change_none, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        lume_log_set_sink(quiet, NULL);
        init = true;
    }
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    const char *piece[5];
    size_t plen[5];
    int np = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && np < 5; i++) {
        if (i == n || (uint8_t)in[i] == SEP || np == 4) {
            if (np == 4)
                i = n;                  /* the last piece takes the rest */
            piece[np] = in + start;
            plen[np] = i - start;
            np++;
            start = i + 1;
        }
    }
    int ndocs = np >= 2 ? np - 1 : np;
    if (ndocs > 4)
        ndocs = 4;

    char *err = NULL;
    lume_twin *t = lume_twin_open(NULL, LAYERS, NLAYERS, &err);
    CHECK(t != NULL && err == NULL);
    cJSON *prev = cJSON_CreateObject();
    CHECK(prev != NULL);
    const char *held[NLAYERS] = {0};
    size_t held_len[NLAYERS] = {0};

    for (int i = 0; i < ndocs; i++) {
        int li = 1 + ((ctl >> (2 * i)) & 3);
        const char *layer = LAYERS[li];
        char *before = print(lume_twin_desired(t));
        char *vbefore = lume_twin_versions_json(t);
        CHECK(vbefore != NULL);
        int64_t ver = lume_twin_layer_version(t, layer);

        int rc = lume_twin_set_layer(t, layer, piece[i], plen[i], &err);
        CHECK(cJSON_IsObject(lume_twin_desired(t)));
        if (rc < 0) {
            CHECK(err != NULL && strstr(err, layer) != NULL);
            free(err);
            err = NULL;
        } else {
            CHECK(rc <= 1 && err == NULL);
        }
        if (rc <= 0) {
            char *after = print(lume_twin_desired(t));
            char *vafter = lume_twin_versions_json(t);
            CHECK(strcmp(before, after) == 0);
            CHECK(strcmp(vbefore, vafter) == 0);
            CHECK(lume_twin_layer_version(t, layer) == ver);
            free(after);
            free(vafter);
        } else {
            held[li] = plen[i] ? piece[i] : NULL;
            held_len[li] = plen[i];
            CHECK(lume_twin_set_layer(t, layer, piece[i], plen[i], &err) == 0);
            CHECK(err == NULL);
        }
        free(before);
        free(vbefore);
        visit(t, &prev);
        probe_toggle(t);
    }

    if (np >= 2) {
        cJSON *patch = lume_twin_parse(piece[np - 1], plen[np - 1], &err);
        CHECK((patch == NULL) == (err != NULL));
        free(err);
        err = NULL;
        if (patch) {
            int rc = lume_twin_report(t, patch, &err);
            if (cJSON_IsObject(patch)) {
                CHECK(rc == 0 && err == NULL);
                char *s = lume_twin_take_reported(t);
                CHECK(s != NULL);
                CHECK(!lume_twin_reported_dirty(t));
                cJSON *back = cJSON_Parse(s);
                CHECK(cJSON_IsObject(back));
                cJSON_Delete(back);
                free(s);
                CHECK(lume_twin_report(t, patch, NULL) == 0);
                CHECK(!lume_twin_reported_dirty(t));
            } else {
                CHECK(rc == -EINVAL && err != NULL);
                free(err);
                err = NULL;
            }
            /* The same patch applied to the desired document, twice. */
            cJSON *x = cJSON_Duplicate(lume_twin_desired(t), 1);
            CHECK(x != NULL);
            CHECK(lume_json_merge_patch(&x, patch) == 0);
            char *once = print(x);
            CHECK(lume_json_merge_patch(&x, patch) == 0);
            char *twice = print(x);
            CHECK(strcmp(once, twice) == 0);
            free(once);
            free(twice);
            cJSON_Delete(x);
            cJSON_Delete(patch);
        }
    }

    /* The same layers in another arrival order merge the same. */
    lume_twin *u = lume_twin_open(NULL, LAYERS, NLAYERS, &err);
    CHECK(u != NULL);
    for (int li = NLAYERS - 1; li >= 1; li--) {
        if (!held[li])
            continue;
        CHECK(lume_twin_set_layer(u, LAYERS[li], held[li], held_len[li], &err) == 1);
        CHECK(lume_twin_layer_version(u, LAYERS[li]) == lume_twin_layer_version(t, LAYERS[li]));
    }
    char *a = print(lume_twin_desired(t)), *b = print(lume_twin_desired(u));
    CHECK(strcmp(a, b) == 0);
    free(a);
    free(b);
    lume_twin_close(u);

    cJSON_Delete(prev);
    lume_twin_close(t);
    return 0;
}
