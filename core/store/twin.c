/* core/store/twin.c — the device twin's documents (see twin.h and docs/twin.md).
 *
 * State held by a twin:
 *
 *   layers[i]  name, doc (the layer's object without its top-level $-keys;
 *              NULL while the layer is absent), version (-1: none)
 *   merged     the RFC 7386 merge of the present layers, in order, onto {},
 *              except that a layer's scripts.<name> replaces the entry below
 *              it whole (merge_layer: a bundle is one signed unit)
 *   visited    the merged document as of the last each_change ({} at open)
 *   reported   the reported document, dirty when changed since take
 *
 * Invariants:
 *   1. merged is always an object and equals merge(layers): it is rebuilt
 *      from scratch whenever a layer changes, never patched in place.
 *   2. A call that fails changes nothing: the new merged document is built
 *      and the layer persisted (or deleted) in kv before anything held in
 *      memory is replaced.
 *   3. Every document held passed parse_doc: at most LUME_TWIN_MAX_DEPTH
 *      deep, no key twice in an object, finite numbers, valid UTF-8, no NUL
 *      character. The recursive helpers below therefore recurse at most 32
 *      levels on twin documents (report() checks the depth of its patch).
 *   4. With a kv, "layer:<name>" holds the raw bytes that produced each
 *      present layer, so open() rebuilds the same state. A saved document
 *      that does not parse is parsed once more before its layer starts
 *      empty: cJSON reports running out of memory as "not JSON", and a
 *      layer lost for want of memory would remove the bundles it names.
 *
 * Objects are cJSON linked lists, so a name lookup is linear. Merging or
 * comparing two objects of n keys by lookups is O(n^2): 1e9 string compares
 * for a 256 KiB document of 30 000 keys. Objects of KIDX_MIN keys or more
 * are therefore indexed in a small hash table (kidx) for the duration of
 * one merge or comparison. */
#include "twin.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"

#define COMP         "twin"
#define KV_NS        "twin"
#define KV_TYPE_JSON 1                       /* same tag as lume.store's JSON */
#define MAX_VERSION  9007199254740991.0      /* 2^53 - 1: exact in a double */
#define KIDX_MIN     16

typedef struct layer {
    char    *name;
    cJSON   *doc;        /* NULL: absent */
    int64_t  version;    /* -1: none */
} layer;

struct lume_twin {
    lume_kv  *kv;
    layer    *layers;
    size_t    nlayers;
    cJSON    *merged;
    cJSON    *visited;
    uint64_t  gen;         /* bumped whenever a layer changes */
    uint64_t  visited_gen; /* gen as of the last each_change */
    bool      visiting;    /* inside each_change's callbacks */
    cJSON    *reported;
    bool      dirty;
    int64_t   stale_got, stale_held; /* the last set_layer's stale document, or -1 */
};

/* ---- a name index for large objects ---------------------------------- */

typedef struct kidx {
    cJSON **slot;   /* NULL: empty, &kidx_tomb: deleted */
    size_t  mask;
} kidx;

static cJSON kidx_tomb;

static size_t count_children(const cJSON *x)
{
    size_t n = 0;
    for (const cJSON *c = x ? x->child : NULL; c; c = c->next)
        n++;
    return n;
}

static size_t hash_name(const char *s)
{
    uint64_t h = 14695981039346656037u;            /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)(h ^ (h >> 32));
}

static cJSON **kidx_slot(const kidx *ix, const char *name, cJSON ***tomb)
{
    size_t i = hash_name(name) & ix->mask;
    if (tomb)
        *tomb = NULL;
    for (;;) {
        cJSON **s = &ix->slot[i];
        if (!*s)
            return s;
        if (*s == &kidx_tomb) {
            if (tomb && !*tomb)
                *tomb = s;
        } else if (!strcmp((*s)->string, name)) {
            return s;
        }
        i = (i + 1) & ix->mask;
    }
}

static cJSON *kidx_find(const kidx *ix, const char *name)
{
    return *kidx_slot(ix, name, NULL);
}

/* Insert or replace by item->string (never NULL here). */
static void kidx_put(kidx *ix, cJSON *item)
{
    cJSON **tomb;
    cJSON **s = kidx_slot(ix, item->string, &tomb);
    if (!*s && tomb)
        s = tomb;
    *s = item;
}

static void kidx_del(kidx *ix, const char *name)
{
    cJSON **s = kidx_slot(ix, name, NULL);
    if (*s)
        *s = &kidx_tomb;
}

/* Index obj's children, with room for extra more. Leaves ix->slot NULL
 * (callers then search linearly) when obj is small or memory is short. On
 * a name present twice, the first is indexed, as cJSON's lookups do. */
static void kidx_build(kidx *ix, const cJSON *obj, size_t n, size_t extra)
{
    ix->slot = NULL;
    ix->mask = 0;
    if (n + extra < KIDX_MIN)
        return;
    size_t cap = 32;
    while (cap < 2 * (n + extra))
        cap <<= 1;
    if (!(ix->slot = calloc(cap, sizeof *ix->slot)))
        return;
    ix->mask = cap - 1;
    for (cJSON *c = obj->child; c; c = c->next) {
        if (!c->string)
            continue;
        cJSON **s = kidx_slot(ix, c->string, NULL);
        if (!*s)
            *s = c;
    }
}

static cJSON *lookup(const kidx *ix, const cJSON *obj, const char *name)
{
    if (ix->slot)
        return kidx_find(ix, name);
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

/* ---- copy, compare, depth ------------------------------------------------ */

static int set_name(cJSON *item, const char *name)
{
    if (item->string && !(item->type & cJSON_StringIsConst) && !strcmp(item->string, name))
        return 0;
    size_t n = strlen(name) + 1;
    char *s = cJSON_malloc(n);
    if (!s)
        return -ENOMEM;
    memcpy(s, name, n);
    if (item->string && !(item->type & cJSON_StringIsConst))
        cJSON_free(item->string);
    item->string = s;
    item->type &= ~cJSON_StringIsConst;
    return 0;
}

/* A deep copy that owns all its strings (cJSON_Duplicate keeps constant
 * keys pointing into the original). NULL when out of memory. */
static cJSON *json_copy(const cJSON *x)
{
    cJSON *n = NULL;
    switch (x->type & 0xFF) {
    case cJSON_False:  n = cJSON_CreateFalse(); break;
    case cJSON_True:   n = cJSON_CreateTrue(); break;
    case cJSON_Number: n = cJSON_CreateNumber(x->valuedouble); break;
    case cJSON_String: n = cJSON_CreateString(x->valuestring ? x->valuestring : ""); break;
    case cJSON_Raw:    n = cJSON_CreateRaw(x->valuestring ? x->valuestring : "null"); break;
    case cJSON_Array:
    case cJSON_Object:
        n = (x->type & 0xFF) == cJSON_Array ? cJSON_CreateArray() : cJSON_CreateObject();
        if (!n)
            return NULL;
        for (const cJSON *c = x->child; c; c = c->next) {
            cJSON *cc = json_copy(c);
            if (!cc || (c->string && set_name(cc, c->string) < 0)) {
                cJSON_Delete(cc);
                cJSON_Delete(n);
                return NULL;
            }
            cJSON_AddItemToArray(n, cc);     /* appends; objects are lists too */
        }
        break;
    default:           n = cJSON_CreateNull(); break;
    }
    return n;
}

static bool json_equal(const cJSON *a, const cJSON *b);

/* Objects without a name twice: equal when they have the same number of
 * members and every member of a is in b with an equal value. */
static bool objects_equal(const cJSON *a, const cJSON *b)
{
    size_t na = count_children(a);
    if (na != count_children(b))
        return false;
    /* The common case, same keys in the same order, is one walk. */
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next) {
        if (!x->string || !y->string || strcmp(x->string, y->string))
            break;
        if (!json_equal(x, y))
            return false;
    }
    if (!x)
        return true;
    kidx ix;
    kidx_build(&ix, b, na, 0);
    bool eq = true;
    for (; x && eq; x = x->next)
        eq = x->string && json_equal(x, lookup(&ix, b, x->string));
    free(ix.slot);
    return eq;
}

/* Exact, unlike cJSON_Compare (which treats numbers within a relative
 * DBL_EPSILON as equal, and is quadratic on objects). */
static bool json_equal(const cJSON *a, const cJSON *b)
{
    if (!a || !b)
        return a == b;
    int ta = a->type & 0xFF;
    if (ta != (b->type & 0xFF))
        return false;
    switch (ta) {
    case cJSON_Number:
        return a->valuedouble == b->valuedouble
            || (isnan(a->valuedouble) && isnan(b->valuedouble));
    case cJSON_String:
    case cJSON_Raw:
        return !strcmp(a->valuestring ? a->valuestring : "",
                       b->valuestring ? b->valuestring : "");
    case cJSON_Array: {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y))
                return false;
        return !x && !y;
    }
    case cJSON_Object:
        return objects_equal(a, b);
    default:
        return true;
    }
}

/* Depth of x (a scalar is 0, {} or [] is 1), or limit + 1 once deeper. */
static int json_depth(const cJSON *x, int limit)
{
    if (!cJSON_IsArray(x) && !cJSON_IsObject(x))
        return 0;
    if (limit <= 0)
        return 1;
    int d = 0;
    for (const cJSON *c = x->child; c && d < limit; c = c->next) {
        int cd = json_depth(c, limit - 1);
        if (cd > d)
            d = cd;
    }
    return d + 1;
}

static const char *kind(const cJSON *x)
{
    switch (x->type & 0xFF) {
    case cJSON_Array:  return "an array";
    case cJSON_Object: return "an object";
    case cJSON_String: return "a string";
    case cJSON_Number: return "a number";
    case cJSON_True:   return "true";
    case cJSON_False:  return "false";
    case cJSON_NULL:   return "null";
    default:           return "something that is not JSON";
    }
}

/* ---- RFC 7386 ------------------------------------------------------------ */

/* Apply an object patch to an object target, in place. *changed is set
 * when the target's content changes. -ENOMEM leaves target a valid
 * document holding part of the patch. */
static int merge_object(cJSON *target, const cJSON *patch, bool *changed)
{
    kidx ix;
    kidx_build(&ix, target, count_children(target), count_children(patch));
    int rc = 0;
    for (const cJSON *p = patch->child; p; p = p->next) {
        if (!p->string)
            continue;
        cJSON *t = lookup(&ix, target, p->string);
        if (cJSON_IsNull(p)) {
            if (t) {
                if (ix.slot)
                    kidx_del(&ix, p->string);
                cJSON_Delete(cJSON_DetachItemViaPointer(target, t));
                *changed = true;
            }
            continue;
        }
        if (cJSON_IsObject(p) && cJSON_IsObject(t)) {
            if ((rc = merge_object(t, p, changed)) < 0)
                break;
            continue;
        }
        cJSON *n;
        if (cJSON_IsObject(p)) {
            /* MergePatch({}, p): drops p's nulls at every level. */
            bool ignored = false;
            if ((n = cJSON_CreateObject()) && merge_object(n, p, &ignored) < 0) {
                cJSON_Delete(n);
                n = NULL;
            }
        } else {
            if (t && json_equal(t, p))
                continue;
            n = json_copy(p);
        }
        if (!n || set_name(n, p->string) < 0) {
            cJSON_Delete(n);
            rc = -ENOMEM;
            break;
        }
        if (ix.slot)
            kidx_put(&ix, n);                  /* while t is still alive */
        if (t)
            cJSON_ReplaceItemViaPointer(target, t, n);   /* frees t */
        else
            cJSON_AddItemToArray(target, n);
        *changed = true;
    }
    free(ix.slot);
    return rc;
}

int lume_json_merge_patch(cJSON **target, const cJSON *patch)
{
    if (!cJSON_IsObject(patch)) {
        cJSON *n = patch ? json_copy(patch) : cJSON_CreateNull();
        if (!n)
            return -ENOMEM;
        cJSON_Delete(*target);
        *target = n;
        return 0;
    }
    if (!cJSON_IsObject(*target)) {
        cJSON *n = cJSON_CreateObject();
        if (!n)
            return -ENOMEM;
        cJSON_Delete(*target);
        *target = n;
    }
    bool changed = false;
    return merge_object(*target, patch, &changed);
}

/* ---- parsing with limits ------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One pass over the bytes before cJSON sees them: what cJSON would accept
 * silently (NUL bytes and \u0000 truncate its strings, an invalid \u digit
 * reads as 0, control characters count as white space, invalid UTF-8 is
 * copied through) and nesting depth (cJSON recurses while parsing; it stops
 * at 1000 levels, lume at LUME_TWIN_MAX_DEPTH). */
static int prescan(const char *what, const unsigned char *s, size_t len, char **err)
{
    bool in_str = false;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == 0) {
            lume_set_err(err, "%s contains a NUL byte at byte %zu", what, i);
            return -EINVAL;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(s + i, len - i);
            if (!n) {
                lume_set_err(err, "%s is not valid UTF-8 (byte 0x%02x at byte %zu)", what, c, i);
                return -EINVAL;
            }
            i += n - 1;
            continue;
        }
        if (in_str) {
            if (c == '"') {
                in_str = false;
            } else if (c == '\\' && i + 1 < len) {
                if (s[i + 1] == 'u') {
                    int v = 0;
                    for (size_t k = i + 2; k < i + 6; k++) {
                        int h = k < len ? hexval(s[k]) : -1;
                        if (h < 0) {
                            lume_set_err(err, "%s: not JSON (bad \\u escape at byte %zu)", what, i);
                            return -EINVAL;
                        }
                        v = v * 16 + h;
                    }
                    if (v == 0) {
                        lume_set_err(err, "%s contains \\u0000 (a NUL character) at byte %zu,"
                               " which lume does not accept", what, i);
                        return -EINVAL;
                    }
                    i += 5;
                } else if (s[i + 1] < 0x80) {
                    i++;   /* a bad escape letter is cJSON's to report */
                }
            } else if (c < 0x20) {
                lume_set_err(err, "%s: not JSON (control character 0x%02x in a string at byte %zu;"
                       " it must be escaped)", what, c, i);
                return -EINVAL;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = true;
            break;
        case '{':
        case '[':
            if (++depth > LUME_TWIN_MAX_DEPTH) {
                lume_set_err(err, "%s is nested deeper than %d", what, LUME_TWIN_MAX_DEPTH);
                return -EINVAL;
            }
            break;
        case '}':
        case ']':
            if (depth > 0)
                depth--;
            break;
        case ' ': case '\t': case '\n': case '\r':
            break;
        default:
            if (c < 0x20) {
                lume_set_err(err, "%s: not JSON (control character 0x%02x at byte %zu)", what, c, i);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Where a value sits, for messages: "sensors.temp[2]". */
typedef struct path {
    char   s[160];
    size_t len;
} path;

static size_t path_push(path *p, const cJSON *x, size_t index, bool in_array)
{
    size_t at = p->len;
    int n;
    size_t room = sizeof p->s - at;
    if (in_array)
        n = snprintf(p->s + at, room, "[%zu]", index);
    else
        n = snprintf(p->s + at, room, "%s%.48s", at ? "." : "", x->string);
    if (n < 0 || (size_t)n >= room)
        n = (int)room - 1;
    p->len = at + (size_t)n;
    return at;
}

static const char *path_str(const path *p)
{
    return p->len ? p->s : "the top level";
}

/* After cJSON: no name twice in an object, finite numbers, depth. */
static int check_tree(const char *what, const cJSON *x, int depth, path *p, char **err)
{
    if (cJSON_IsNumber(x) && !isfinite(x->valuedouble)) {
        lume_set_err(err, "%s has a number out of range at %s", what, path_str(p));
        return -EINVAL;
    }
    if (!cJSON_IsArray(x) && !cJSON_IsObject(x))
        return 0;
    if (depth > LUME_TWIN_MAX_DEPTH) {
        lume_set_err(err, "%s is nested deeper than %d", what, LUME_TWIN_MAX_DEPTH);
        return -EINVAL;
    }
    bool obj = cJSON_IsObject(x);
    kidx ix = {0};
    size_t n = obj ? count_children(x) : 0;
    if (obj && n >= KIDX_MIN) {
        size_t cap = 32;
        while (cap < 2 * n)
            cap <<= 1;
        if (!(ix.slot = calloc(cap, sizeof *ix.slot))) {
            lume_set_err(err, "%s: out of memory", what);
            return -ENOMEM;
        }
        ix.mask = cap - 1;
    }
    int rc = 0;
    size_t i = 0;
    for (const cJSON *c = x->child; c && !rc; c = c->next, i++) {
        if (obj) {
            bool dup;
            if (ix.slot) {
                cJSON **s = kidx_slot(&ix, c->string, NULL);
                dup = *s != NULL;
                *s = (cJSON *)c;
            } else {
                dup = false;
                for (const cJSON *e = x->child; e != c && !dup; e = e->next)
                    dup = !strcmp(e->string, c->string);
            }
            if (dup) {
                lume_set_err(err, "%s has the key \"%.64s\" twice in %s", what, c->string,
                       path_str(p));
                rc = -EINVAL;
                break;
            }
        }
        size_t at = path_push(p, c, i, !obj);
        rc = check_tree(what, c, depth + 1, p, err);
        p->len = at;
        p->s[at] = '\0';
    }
    free(ix.slot);
    return rc;
}

static cJSON *parse_doc(const char *what, const char *json, size_t len, char **err)
{
    if (len > LUME_TWIN_MAX_DOC) {
        lume_set_err(err, "%s is %zu bytes, more than %d", what, len, LUME_TWIN_MAX_DOC);
        return NULL;
    }
    if (!json || len == 0) {
        lume_set_err(err, "%s: not JSON (empty)", what);
        return NULL;
    }
    if (prescan(what, (const unsigned char *)json, len, err) < 0)
        return NULL;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!doc) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        lume_set_err(err, "%s: not JSON (error near byte %zu of %zu)", what, at, len);
        return NULL;
    }
    size_t at = (size_t)(end - json);
    while (at < len && (json[at] == ' ' || json[at] == '\t' || json[at] == '\n'
                        || json[at] == '\r'))
        at++;
    if (at < len) {
        lume_set_err(err, "%s: not JSON (more data after the document, at byte %zu)", what, at);
        cJSON_Delete(doc);
        return NULL;
    }
    path p = {.len = 0};
    p.s[0] = '\0';
    if (check_tree(what, doc, 1, &p, err) < 0) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

cJSON *lume_twin_parse(const char *json, size_t len, char **err)
{
    if (err)
        *err = NULL;
    return parse_doc("document", json, len, err);
}

cJSON *lume_twin_parse_object(const char *what, const char *json, size_t len, char **err)
{
    if (err)
        *err = NULL;
    cJSON *doc = parse_doc(what, json, len, err);
    if (doc && !cJSON_IsObject(doc)) {
        lume_set_err(err, "%s must be a JSON object, got %s", what, kind(doc));
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* ---- layers ---------------------------------------------------------------- */

static layer *find_layer(const lume_twin *t, const char *name)
{
    for (size_t i = 0; name && i < t->nlayers; i++)
        if (!strcmp(t->layers[i].name, name))
            return &t->layers[i];
    return NULL;
}

/* Check and remove the top-level $-keys; *version is $version or -1. */
static int take_meta(const char *what, cJSON *doc, int64_t *version, char **err)
{
    *version = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "$version");
    if (v) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (d >= 0 && d <= MAX_VERSION && (double)(int64_t)d == d) {
            *version = (int64_t)d;
        } else {
            char *s = cJSON_PrintUnformatted(v);
            if (s && strlen(s) > 40)
                strcpy(s + 37, "...");
            if (d > MAX_VERSION)
                lume_set_err(err, "%s: $version %s is too large (at most %.0f)", what,
                       s ? s : "", MAX_VERSION);
            else
                lume_set_err(err, "%s: $version must be a non-negative integer, got %s", what,
                       s ? s : kind(v));
            free(s);
            return -EINVAL;
        }
    }
    for (cJSON *c = doc->child, *next; c; c = next) {
        next = c->next;
        if (c->string && c->string[0] == '$')
            cJSON_Delete(cJSON_DetachItemViaPointer(doc, c));
    }
    return 0;
}

/* A layer document as set_layer and open accept it: the stripped object
 * and its version. NULL with *err. */
static cJSON *parse_layer(const char *what, const char *json, size_t len, int64_t *version,
                          char **err)
{
    cJSON *doc = lume_twin_parse_object(what, json, len, err);
    if (!doc)
        return NULL;
    if (take_meta(what, doc, version, err) < 0) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* The merged document with layer `over` (SIZE_MAX: none) taken as
 * over_doc (NULL: absent). 0 or -ENOMEM. */
/* Keys whose entries a layer replaces whole instead of merging into: a
 * script bundle is one signed unit, so a device layer's bundle for a name
 * replaces a group's bundle for that name (never `source` from one layer
 * beside `chunks` from another). */
static const char *const whole_entries[] = {"scripts"};

/* Merge one layer onto m: for each whole-entry key, the entries the layer
 * sets are first dropped from m, so the merge below re-creates them from
 * this layer alone. Linear in the sizes of both. */
static int merge_layer(cJSON *m, const cJSON *d)
{
    for (size_t k = 0; k < sizeof whole_entries / sizeof *whole_entries; k++) {
        cJSON *mine = cJSON_GetObjectItemCaseSensitive(m, whole_entries[k]);
        const cJSON *theirs = cJSON_GetObjectItemCaseSensitive(d, whole_entries[k]);
        if (!cJSON_IsObject(mine) || !cJSON_IsObject(theirs))
            continue;
        kidx ix;
        kidx_build(&ix, mine, count_children(mine), 0);
        for (const cJSON *e = theirs->child; e; e = e->next) {
            cJSON *old = e->string && cJSON_IsObject(e) ? lookup(&ix, mine, e->string) : NULL;
            if (!old)
                continue;
            if (ix.slot)
                kidx_del(&ix, e->string);
            cJSON_Delete(cJSON_DetachItemViaPointer(mine, old));
        }
        free(ix.slot);
    }
    bool changed = false;
    return merge_object(m, d, &changed);
}

int lume_twin_merge_layer(cJSON *target, const cJSON *doc)
{
    if (!cJSON_IsObject(target) || !cJSON_IsObject(doc))
        return -EINVAL;
    return merge_layer(target, doc);
}

static int build_merged(const lume_twin *t, size_t over, const cJSON *over_doc, cJSON **out)
{
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; i < t->nlayers; i++) {
        const cJSON *d = i == over ? over_doc : t->layers[i].doc;
        if (d && merge_layer(m, d) < 0) {
            cJSON_Delete(m);
            return -ENOMEM;
        }
    }
    *out = m;
    return 0;
}

static char *layer_key(const char *name)
{
    return lume_strdupf("layer:%s", name);
}

int lume_twin_set_layer(lume_twin *t, const char *name, const char *json, size_t len,
                        char **err)
{
    if (err)
        *err = NULL;
    layer *l = find_layer(t, name);
    if (!l) {
        lume_set_err(err, "desired document for unknown layer '%s'", name ? name : "(null)");
        return -ENOENT;
    }
    size_t li = (size_t)(l - t->layers);
    t->stale_got = t->stale_held = -1;
    char what[160];
    snprintf(what, sizeof what, "desired document for layer '%.100s'", l->name);

    cJSON *doc = NULL, *merged = NULL;
    int64_t version = -1;
    int rc;
    if (len > 0) {
        if (!(doc = parse_layer(what, json, len, &version, err)))
            return -EINVAL;
        if (l->doc && l->version >= 0 && version >= 0 && version < l->version) {
            /* a broker that lost its retained state, an operator's tool
             * that counted from 0: nothing the operator meant applies */
            lume_log(LUME_LOG_WARN, COMP, "%s: $version %lld is older than %lld held; ignored "
                     "(publish it with a $version above %lld)", what, (long long)version,
                     (long long)l->version, (long long)l->version);
            t->stale_got = version;
            t->stale_held = l->version;
            cJSON_Delete(doc);
            return 0;
        }
        if (l->doc && version == l->version) {
            if (json_equal(doc, l->doc)) {
                cJSON_Delete(doc);
                return 0;
            }
            if (version >= 0)
                lume_log(LUME_LOG_WARN, COMP, "%s: content changed but $version is still"
                         " %lld; applying it (bump $version with every change)", what,
                         (long long)version);
        }
    } else if (!l->doc) {
        return 0;                       /* clearing an absent layer */
    }

    if ((rc = build_merged(t, li, doc, &merged)) < 0) {
        lume_set_err(err, "%s: out of memory", what);
        goto err;
    }
    if (t->kv) {
        char *key = layer_key(l->name);
        if (!key) {
            rc = -ENOMEM;
            lume_set_err(err, "%s: out of memory", what);
            goto err;
        }
        rc = doc ? lume_kv_set(t->kv, KV_NS, key, json, len, KV_TYPE_JSON)
                 : lume_kv_del(t->kv, KV_NS, key);
        free(key);
        if (rc < 0) {
            lume_set_err(err, "%s: not applied, the state store could not %s it (%s)", what,
                   doc ? "save" : "delete", strerror(-rc));
            goto err;
        }
    }
    cJSON_Delete(l->doc);
    l->doc = doc;
    l->version = doc ? version : -1;
    cJSON_Delete(t->merged);
    t->merged = merged;
    t->gen++;
    lume_check(cJSON_IsObject(t->merged), "invariant 1: merged is always an object");
    lume_check(!doc || json_depth(doc, LUME_TWIN_MAX_DEPTH) <= LUME_TWIN_MAX_DEPTH,
               "invariant 3: every document held passed parse_doc (depth)");
    return 1;

err:
    cJSON_Delete(doc);
    cJSON_Delete(merged);
    return rc;
}

const cJSON *lume_twin_desired(const lume_twin *t)
{
    return t->merged;
}

bool lume_twin_was_stale(const lume_twin *t, int64_t *got, int64_t *held)
{
    *got = t->stale_got;
    *held = t->stale_held;
    return t->stale_got >= 0;
}

int64_t lume_twin_layer_version(const lume_twin *t, const char *name)
{
    const layer *l = find_layer(t, name);
    return l && l->doc ? l->version : -1;
}

char *lume_twin_versions_json(const lume_twin *t)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (!o)
        return NULL;
    for (size_t i = 0; i < t->nlayers; i++) {
        const layer *l = &t->layers[i];
        if (l->doc && l->version >= 0
            && !cJSON_AddNumberToObject(o, l->name, (double)l->version))
            goto out;
    }
    s = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return s;
}

void lume_twin_each_change(lume_twin *t,
                           void (*fn)(void *ud, const char *key, const cJSON *now,
                                      const cJSON *before),
                           void *ud)
{
    if (t->visiting || t->visited_gen == t->gen)
        return;
    lume_check(cJSON_IsObject(t->merged) && cJSON_IsObject(t->visited),
               "invariant 1: merged (and visited, a copy of it) is always an object");
    /* Visit a copy: fn may call set_layer, which replaces t->merged. */
    uint64_t gen = t->gen;
    cJSON *now = json_copy(t->merged);
    if (!now) {
        lume_log(LUME_LOG_ERROR, COMP, "out of memory: desired changes not visited yet");
        return;
    }
    const cJSON *before = t->visited;
    kidx ib, in;
    kidx_build(&ib, before, count_children(before), 0);
    kidx_build(&in, now, count_children(now), 0);
    t->visiting = true;
    for (const cJSON *c = now->child; c; c = c->next) {
        const cJSON *b = lookup(&ib, before, c->string);
        if (!b || !json_equal(c, b))
            fn(ud, c->string, c, b);
    }
    for (const cJSON *b = before->child; b; b = b->next)
        if (!lookup(&in, now, b->string))
            fn(ud, b->string, NULL, b);
    t->visiting = false;
    free(ib.slot);
    free(in.slot);
    cJSON_Delete(t->visited);
    t->visited = now;
    t->visited_gen = gen;
}

/* ---- reported ---------------------------------------------------------------- */

int lume_twin_report(lume_twin *t, const cJSON *patch, char **err)
{
    if (err)
        *err = NULL;
    if (!cJSON_IsObject(patch)) {
        lume_set_err(err, "reported patch must be a JSON object, got %s",
               patch ? kind(patch) : "nothing");
        return -EINVAL;
    }
    if (json_depth(patch, LUME_TWIN_MAX_DEPTH) > LUME_TWIN_MAX_DEPTH) {
        lume_set_err(err, "reported patch is nested deeper than %d", LUME_TWIN_MAX_DEPTH);
        return -EINVAL;
    }
    bool changed = false;
    int rc = merge_object(t->reported, patch, &changed);
    if (changed)
        t->dirty = true;    /* also after -ENOMEM: part of it was applied */
    if (rc < 0)
        lume_set_err(err, "reported patch: out of memory (partly applied)");
    return rc;
}

bool lume_twin_reported_dirty(const lume_twin *t)
{
    return t->dirty;
}

const cJSON *lume_twin_reported(const lume_twin *t)
{
    return t->reported;
}

char *lume_twin_take_reported(lume_twin *t)
{
    char *s = cJSON_PrintUnformatted(t->reported);
    if (!s)
        return NULL;
    t->dirty = false;
    if (t->kv) {
        int rc = lume_kv_set(t->kv, KV_NS, "reported", s, strlen(s), KV_TYPE_JSON);
        if (rc < 0)
            lume_log(LUME_LOG_WARN, COMP, "could not save the reported document (%s);"
                     " it is sent but will not survive a restart", strerror(-rc));
    }
    return s;
}

/* ---- open / close -------------------------------------------------------------- */

void lume_twin_close(lume_twin *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nlayers; i++) {
        free(t->layers[i].name);
        cJSON_Delete(t->layers[i].doc);
    }
    free(t->layers);
    cJSON_Delete(t->merged);
    cJSON_Delete(t->visited);
    cJSON_Delete(t->reported);
    free(t);
}

lume_twin *lume_twin_open(lume_kv *kv, const char *const *names, size_t n, char **err)
{
    lume_twin *t = NULL;
    char *key = NULL;
    void *val = NULL;
    if (err)
        *err = NULL;
    if (!names && n) {
        lume_set_err(err, "twin: no layer names given");
        return NULL;
    }
    if (!(t = calloc(1, sizeof *t)) || (n && !(t->layers = calloc(n, sizeof *t->layers))))
        goto oom;
    t->kv = kv;
    t->stale_got = t->stale_held = -1;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !*names[i]) {
            lume_set_err(err, "twin: layer %zu has no name", i + 1);
            goto err;
        }
        if (find_layer(t, names[i])) {
            lume_set_err(err, "twin: layer '%s' is listed twice", names[i]);
            goto err;
        }
        if (!(t->layers[i].name = strdup(names[i])))
            goto oom;
        t->layers[i].version = -1;
        t->nlayers = i + 1;
    }
    if (!(t->visited = cJSON_CreateObject()) || !(t->reported = cJSON_CreateObject()))
        goto oom;
    t->gen = 1;

    for (size_t i = 0; kv && i < n; i++) {
        layer *l = &t->layers[i];
        size_t len = 0;
        char what[160];
        snprintf(what, sizeof what, "saved desired document for layer '%.100s'", l->name);
        if (!(key = layer_key(l->name)))
            goto oom;
        int rc = lume_kv_get(kv, KV_NS, key, &val, &len, NULL);
        free(key);
        key = NULL;
        if (rc == -ENOENT)
            continue;
        if (rc < 0) {
            lume_set_err(err, "twin: could not read the %s: %s", what, lume_strerror(-rc));
            goto err;
        }
        char *perr = NULL;
        l->doc = parse_layer(what, len ? val : "", len, &l->version, &perr);
        if (!l->doc) { /* corrupt, or memory short: cJSON calls both "not JSON" */
            free(perr);
            perr = NULL;
            l->doc = parse_layer(what, len ? val : "", len, &l->version, &perr);
        }
        if (!l->doc) {
            lume_log(LUME_LOG_WARN, COMP, "%s; the layer starts empty",
                     perr ? perr : "out of memory");
            l->version = -1;
        }
        free(perr);
        free(val);
        val = NULL;
    }
    if (kv) {
        size_t len = 0;
        int rc = lume_kv_get(kv, KV_NS, "reported", &val, &len, NULL);
        if (rc < 0 && rc != -ENOENT) {
            lume_set_err(err, "twin: could not read the saved reported document: %s",
                         lume_strerror(-rc));
            goto err;
        }
        if (rc == 0) {
            char *perr = NULL;
            cJSON *r = parse_doc("saved reported document", len ? val : "", len, &perr);
            if (!r) { /* as for a layer: once more before it is given up */
                free(perr);
                perr = NULL;
                r = parse_doc("saved reported document", len ? val : "", len, &perr);
            }
            if (cJSON_IsObject(r)) {
                cJSON_Delete(t->reported);
                t->reported = r;
            } else {
                lume_log(LUME_LOG_WARN, COMP, "%s; reported starts empty",
                         perr ? perr : "saved reported document is not an object");
                cJSON_Delete(r);
            }
            free(perr);
        }
        free(val);
        val = NULL;
    }
    if (build_merged(t, SIZE_MAX, NULL, &t->merged) < 0)
        goto oom;
    lume_check(cJSON_IsObject(t->merged), "invariant 1: merged is always an object");
    return t;

oom:
    lume_set_err(err, "twin: out of memory");
err:
    free(key);
    free(val);
    lume_twin_close(t);
    return NULL;
}
