// fuzz-liblume: yes
/* tests/fuzz/fuzz_bundles.c — libFuzzer target for the bundle pipeline
 * (bindings/bundles.c): what arrives as desired.scripts from the twin,
 * {name: {version, source | chunks | url, sha256, sig, seq, target,
 * key_id, rollback, soak_s, name}}, handed to lume_manager_apply in a real
 * runtime (sim board, one file script "base", a state store, a trusted key:
 * tests/fuzz/fuzz-bundles.pub, device "fuzz-dev" in groups fleet and site-a)
 * with no network: lume_fetch_start and lume_fetch_cancel are defined here
 * (liblume.a's fetch.c is then not linked), and a url bundle's body is
 * handed back by the target.
 *
 * Run from the top of the tree (boards/, stdlib/ and the key are found
 * there), as tests/fuzz/run does.
 *
 * Input: [ctl][doc A] 0x1e [doc B] 0x1e [body]. Each doc is parsed with the
 * twin's own limits (lume_twin_parse) and applied; B is applied after A,
 * as the next desired document. ctl bit 0: twin.allow_unsigned while A is
 * applied; bit 1: while B is; bit 2: fetches fail (HTTP error) instead of
 * delivering body; bit 3: A's fetches are answered before B is applied
 * (else after). After each input every bundle is removed (an empty
 * document), the store's bundle records are wiped and the file script
 * reloaded, so inputs do not depend on each other.
 *
 * Invariants, abort() on violation:
 *  1. a script the twin manages runs only under a name the document being
 *     applied holds, and that name is a valid script name;
 *  2. a managed script staged by this input (its name and sha256 did not
 *     run before) comes from a spec of that name in A or B whose sha256,
 *     when given, is the source's, and that carries a sig unless
 *     twin.allow_unsigned was on: the pipeline never runs unsigned or
 *     altered code it should refuse (a signature the fuzzer cannot make
 *     means only the committed seeds' signed bundles can get that far);
 *  3. a fetch whose bundle is gone was cancelled: answering a live fetch
 *     never reaches a freed bundle (ASan would say), and after the empty
 *     document no fetch is live and nothing managed runs;
 *  4. the file script comes back (reload) once its bundle is removed. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fetch.h"
#include "bundles.h"
#include "runtime.h"
#include "scripts.h"
#include "log.h"
#include "twin.h"

#define SEP 0x1e
#define KEY_FILE "tests/fuzz/fuzz-bundles.pub"

#include "fuzz.h"

static void quiet(void *ud, int level, const char *component, const char *msg)
{
    (void)ud, (void)level, (void)component, (void)msg;
}

/* ---- fetch, without a network ---------------------------------------------- */

struct lume_fetch {
    lume_fetch_cb cb;
    void         *ud;
    size_t        max;
    bool          live;
};

#define MAX_FETCH 64
static struct lume_fetch g_fetch[MAX_FETCH];
static int g_nfetch;

lume_fetch *lume_fetch_start(lume_loop *loop, const char *url, const lume_tls_opts *tls,
                             size_t max_bytes, int timeout_ms, lume_fetch_cb cb, void *ud,
                             char **err)
{
    (void)loop, (void)tls, (void)timeout_ms;
    if (!url || strncasecmp(url, "https://", 8) || !cb || g_nfetch == MAX_FETCH) {
        *err = lume_strdupf("only https:// URLs are fetched, got '%s'", url ? url : "");
        return NULL;
    }
    struct lume_fetch *f = &g_fetch[g_nfetch++];
    *f = (struct lume_fetch){.cb = cb, .ud = ud, .max = max_bytes, .live = true};
    return f;
}

void lume_fetch_cancel(lume_fetch *f)
{
    if (f)
        f->live = false;
}

static void answer_fetches(bool fail, const char *body, size_t len)
{
    for (int i = 0; i < g_nfetch; i++) {
        struct lume_fetch *f = &g_fetch[i];
        if (!f->live)
            continue;
        f->live = false; /* the real one is freed once its callback returns */
        if (fail)
            f->cb(f->ud, -EIO, "fetch https://fuzz.example/x: HTTP 404 Not Found", NULL, 0);
        else if (len > f->max)
            f->cb(f->ud, -EFBIG, "fetch https://fuzz.example/x: larger than allowed", NULL, 0);
        else
            f->cb(f->ud, 0, NULL, body, len);
    }
    g_nfetch = 0;
}

/* ---- the runtime -------------------------------------------------------------- */

static lume_runtime *g_rt;
static char g_dir[256];

static void set(lume_config *c, const char *key, const char *val)
{
    lume_config_value v = {.kind = LUME_CV_STRING, .str = val};
    char *err = NULL;
    if (lume_config_set(c, key, &v, &err) < 0) {
        fprintf(stderr, "fuzz_bundles: config %s: %s\n", key, err ? err : "?");
        abort();
    }
}

static void cleanup(void)
{
    lume_runtime_free(g_rt);
    g_rt = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_bundles: could not remove %s\n", g_dir);
}

static void init(void)
{
    lume_log_set_sink(quiet, NULL);
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/lume-fuzz-manager-XXXXXX", tmp);
    CHECK(mkdtemp(g_dir) != NULL);
    char scripts[300], store[300], base[320];
    snprintf(scripts, sizeof scripts, "%s/scripts", g_dir);
    snprintf(store, sizeof store, "%s/store", g_dir);
    snprintf(base, sizeof base, "%s/base.lua", scripts);
    CHECK(mkdir(scripts, 0755) == 0);
    FILE *f = fopen(base, "w");
    CHECK(f != NULL);
    fputs("local n = 0\nlume.on_sample('temperature', function(v) n = n + 1 end)\n", f);
    CHECK(fclose(f) == 0);
    if (access(KEY_FILE, R_OK) != 0) {
        fprintf(stderr, "fuzz_bundles: run me from the top of lume's tree (%s)\n", KEY_FILE);
        abort();
    }

    lume_config c;
    CHECK(lume_config_init(&c) == 0);
    set(&c, "board", "sim");
    set(&c, "boards_dir", "boards");
    set(&c, "stdlib_dir", "stdlib");
    set(&c, "scripts_dir", scripts);
    set(&c, "store", store);
    set(&c, "device_id", "fuzz-dev");
    set(&c, "log_level", "error");
    set(&c, "twin.groups", "fleet,site-a");
    set(&c, "twin.trusted_keys", KEY_FILE);
    c.watch_scripts = false;
    c.status_interval_ms = 0;
    char *err = NULL;
    g_rt = lume_runtime_new(&c, &err);
    if (!g_rt) {
        fprintf(stderr, "fuzz_bundles: %s\n", err ? err : "no runtime");
        abort();
    }
    lume_config_free(&c);
    CHECK(lume_scripts_find(g_rt, "base") != NULL);
    atexit(cleanup);
}

/* Remove every key of a namespace of the store. */
static int collect(void *ud, const char *key, const void *val, size_t len, int type)
{
    (void)val, (void)len, (void)type;
    cJSON_AddItemToArray(ud, cJSON_CreateString(key));
    return 0;
}

static void wipe(const char *ns)
{
    cJSON *keys = cJSON_CreateArray();
    CHECK(keys != NULL);
    lume_kv_each(g_rt->kv, ns, collect, keys);
    const cJSON *k;
    cJSON_ArrayForEach(k, keys)
        lume_kv_del(g_rt->kv, ns, k->valuestring);
    cJSON_Delete(keys);
}

/* ---- the invariants ------------------------------------------------------------ */

typedef struct seen {
    char name[80];
    char sha[65];
} seen;

#define MAX_SEEN 256

static size_t running(seen *out)
{
    size_t n = 0;
    for (lume_script *s = g_rt->scripts; s && n < MAX_SEEN; s = s->next) {
        if (!s->managed)
            continue;
        snprintf(out[n].name, sizeof out[n].name, "%s", s->name);
        snprintf(out[n].sha, sizeof out[n].sha, "%s", s->sha256);
        n++;
    }
    return n;
}

static bool spec_allows(const cJSON *doc, const lume_script *s, bool unsigned_ok)
{
    const cJSON *spec = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, s->name)
                                            : NULL;
    if (!cJSON_IsObject(spec))
        return false;
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(spec, "sha256");
    if (sha && (!cJSON_IsString(sha) || strcasecmp(sha->valuestring, s->sha256)))
        return false;
    return unsigned_ok || cJSON_IsString(cJSON_GetObjectItemCaseSensitive(spec, "sig"));
}

static void check(const cJSON *doc, const cJSON *a, bool au, const cJSON *b, bool bu,
                  const seen *before, size_t nbefore)
{
    for (lume_script *s = g_rt->scripts; s; s = s->next) {
        if (!s->managed)
            continue;
        /* 1 */
        CHECK(lume_script_name_valid(s->name));
        CHECK(cJSON_IsObject(doc) && cJSON_GetObjectItemCaseSensitive(doc, s->name));
        /* 2 */
        bool old = false;
        for (size_t i = 0; i < nbefore && !old; i++)
            old = !strcmp(before[i].name, s->name) && !strcmp(before[i].sha, s->sha256);
        if (old)
            continue;
        if (!spec_allows(a, s, au) && !spec_allows(b, s, bu)) {
            fprintf(stderr, "managed script %s (sha256 %s) runs, but no spec allows it\n",
                    s->name, s->sha256);
            CHECK(!"a managed script runs that no spec allows");
        }
    }
}

/* The phase of a document: its allow_unsigned holds from now on, even when
 * the text is not a document the twin would take (then nothing is applied). */
static cJSON *apply(const char *text, size_t len, bool unsigned_ok)
{
    g_rt->cfg.twin.allow_unsigned = unsigned_ok;
    char *err = NULL;
    cJSON *doc = lume_twin_parse(text, len, &err);
    free(err);
    if (!doc)
        return NULL;
    lume_manager_apply(g_rt->mgr, doc);
    return doc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_rt)
        init();
    if (size < 1 || size > 256 * 1024)
        return 0;
    uint8_t ctl = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const char *piece[3] = {in, NULL, NULL};
    size_t plen[3] = {n, 0, 0};
    int np = 1;
    for (size_t i = 0; i < n && np < 3; i++)
        if ((uint8_t)in[i] == SEP) {
            plen[np - 1] = (size_t)(in + i - piece[np - 1]);
            piece[np] = in + i + 1;
            plen[np] = n - i - 1;
            np++;
        }
    bool au = ctl & 1, bu = ctl & 2, fail = ctl & 4, early = ctl & 8;
    const char *body = np == 3 ? piece[2] : "return 1";
    size_t body_len = np == 3 ? plen[2] : 8;

    /* The document in force: the last one that was an object (anything
     * else is refused and changes nothing). */
    seen before[MAX_SEEN], mid[MAX_SEEN];
    size_t nbefore = running(before);
    cJSON *a = apply(piece[0], plen[0], au);
    const cJSON *eff = cJSON_IsObject(a) ? a : NULL;
    check(eff, a, au, NULL, false, before, nbefore);
    if (early || np < 2) {
        answer_fetches(fail, body, body_len);
        check(eff, a, au, NULL, false, before, nbefore);
    }
    cJSON *b = NULL;
    if (np >= 2) {
        size_t nmid = running(mid);
        b = apply(piece[1], plen[1], bu);
        if (cJSON_IsObject(b))
            eff = b;
        answer_fetches(fail, body, body_len);
        /* A's fetches not answered yet were answered under B's allow_unsigned */
        check(eff, a, early ? au : bu, b, bu, mid, nmid);
    }

    /* 3: the empty document removes everything and cancels every fetch */
    g_rt->cfg.twin.allow_unsigned = false;
    cJSON *none = cJSON_CreateObject();
    CHECK(none != NULL);
    lume_manager_apply(g_rt->mgr, none);
    cJSON_Delete(none);
    for (int i = 0; i < g_nfetch; i++)
        CHECK(!g_fetch[i].live);
    g_nfetch = 0;
    for (lume_script *s = g_rt->scripts; s; s = s->next)
        CHECK(!s->managed);
    wipe("lkg");
    wipe("bundle-seq");
    wipe("bundle-fail");
    wipe("hung");
    /* 4 */
    if (!lume_scripts_find(g_rt, "base")) {
        char *err = NULL;
        int r = lume_scripts_reload(g_rt, "base", &err);
        if (r)
            fprintf(stderr, "reload base: %s\n", err ? err : "?");
        CHECK(r == 0);
        free(err);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    return 0;
}
