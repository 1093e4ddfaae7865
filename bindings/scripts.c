/* bindings/scripts.c — the script manager: load, hot reload, swap, unload.
 *
 *            file saved / lume reload NAME / install(src)
 *                              │
 *                              ▼
 *   ┌─────────┐   new state, load chunk, run top level (load budget)
 *   │ running │ ─────────────────────────────┐
 *   │  (old)  │                              │
 *   └─────────┘◄── fails: old keeps running, │ ok
 *        ▲        error logged with file:line ▼
 *        │                              ┌──────────┐
 *        └── swap: old handlers off, ───│ new ready│
 *            new handlers on, old state └──────────┘
 *            closed — all between two drains of the ring
 *
 * Everything runs on the loop thread, and a swap happens between two ring
 * drains: every sample is handled by exactly one version (none dropped — the
 * ring holds samples while a new version builds — none handled twice). A
 * script that fails on first load stays listed as "failed" with its error. */
#include "scripts.h"
#include "bundles.h"
#include "keep.h"
#include "lume.h"
#include "registry.h"
#include "runtime.h"
#include "sandbox.h"
#include "script.h"
#include "kv.h"
#include "loop.h"
#include "l_hub.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "crypto.h"
#include "log.h"

#define MAX_SCRIPT_BYTES (4 * 1024 * 1024)
#define NS_HUNG "hung"   /* name -> the hung marker of its quarantined source */

static int install(lume_runtime *rt, const char *name, const char *path, const char *src,
                   size_t len, char **err);

/* ---- quarantine after a hang ------------------------------------------------ */

void lume_scripts_note_hang(lume_runtime *rt)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", rt->cfg.store, LUME_HUNG_MARKER);
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *o = cJSON_Parse(buf);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "script");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    const cJSON *what = cJSON_GetObjectItemCaseSensitive(o, "what");
    const cJSON *held = cJSON_GetObjectItemCaseSensitive(o, "held_ms");
    if (cJSON_IsString(name) && cJSON_IsString(sha) && lume_script_name_valid(name->valuestring)) {
        lume_kv_set(rt->kv, NS_HUNG, name->valuestring, buf, n, 0);
        lume_log(LUME_LOG_ERROR, "scripts", "%s hung the device on its last run (%s held the "
                 "loop for %.0f ms): quarantined until its source changes",
                 name->valuestring, cJSON_IsString(what) ? what->valuestring : "?",
                 cJSON_IsNumber(held) ? held->valuedouble : 0.0);
    } else {
        lume_log(LUME_LOG_WARN, "scripts", "%s: unreadable hang marker, ignored", path);
    }
    cJSON_Delete(o);
    unlink(path);
}

int lume_scripts_hung(lume_runtime *rt, const char *name, const char *sha256, char **why)
{
    void *val;
    size_t len;
    int type;
    if (lume_kv_get(rt->kv, NS_HUNG, name, &val, &len, &type) < 0)
        return 0;
    cJSON *o = cJSON_ParseWithLength(val, len);
    free(val);
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    int hung = 0;
    if (!cJSON_IsString(sha) || strcmp(sha->valuestring, sha256)) {
        if (why) /* another source for the name: the quarantine is over */
            lume_kv_del(rt->kv, NS_HUNG, name);
    } else {
        hung = 1;
        if (why) {
            const cJSON *what = cJSON_GetObjectItemCaseSensitive(o, "what");
            const cJSON *held = cJSON_GetObjectItemCaseSensitive(o, "held_ms");
            *why = lume_strdupf("quarantined: this source hung the device (%s held the loop for "
                                "%.0f ms, more than sandbox.hang_limit_ms); change it to try "
                                "again", cJSON_IsString(what) ? what->valuestring : "?",
                                cJSON_IsNumber(held) ? held->valuedouble : 0.0);
        }
    }
    cJSON_Delete(o);
    return hung;
}


lume_script *lume_scripts_find(lume_runtime *rt, const char *name)
{
    for (lume_script *s = rt->scripts; s; s = s->next)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

bool lume_script_name_valid(const char *name)
{
    if (!*name || strlen(name) > 64)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

void lume_script_free(lume_script *s)
{
    if (!s)
        return;
    lume_cb_clear(s); /* timers stopped, subscriptions dropped, references released */
    lume_sandbox_close(s);
    free(s->name);
    free(s->path);
    free(s->last_error);
    free(s->keep_in);
    free(s);
}

static void unlink_script(lume_runtime *rt, lume_script *s)
{
    for (lume_script **pp = &rt->scripts; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

static void append_script(lume_runtime *rt, lume_script *s)
{
    lume_script **pp = &rt->scripts;
    while (*pp)
        pp = &(*pp)->next;
    s->next = NULL;
    *pp = s;
}

/* Keep a failed first load visible in the list. */
static void record_failed(lume_runtime *rt, const char *name, const char *path, const char *err)
{
    lume_script *s = lume_scripts_find(rt, name);
    if (s && s->L)
        return; /* an older version runs: it stays */
    if (s) { /* failed before, fails again: the newer reason */
        s->errors++;
        free(s->last_error);
        s->last_error = strdup(err);
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        return;
    s->rt = rt;
    s->name = strdup(name);
    s->path = path ? strdup(path) : NULL;
    s->status = LUME_SCRIPT_FAILED;
    s->errors = 1;
    s->last_error = strdup(err);
    snprintf(s->version, sizeof s->version, "-");
    append_script(rt, s);
}

lume_script *lume_scripts_build(lume_runtime *rt, const char *name, const char *path,
                               const char *src, size_t len, char **err)
{
    if (!lume_script_name_valid(name)) {
        *err = lume_strdupf("bad script name '%s': use letters, digits, _ and - (at most 64)",
                            name);
        return NULL;
    }
    if (len > MAX_SCRIPT_BYTES) {
        *err = lume_strdupf("script %s is %zu bytes, more than the limit of %d", name, len,
                            MAX_SCRIPT_BYTES);
        return NULL;
    }
    lume_script *old = lume_scripts_find(rt, name);
    lume_script *s = calloc(1, sizeof *s);
    if (!s) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    s->rt = rt;
    s->name = strdup(name);
    s->path = path ? strdup(path) : NULL;
    s->generation = old ? old->generation + 1 : 1;
    s->status = LUME_SCRIPT_LOADING;
    s->next_id = 1;
    lume_sha256_hex(src, len, s->sha256);
    snprintf(s->version, sizeof s->version, "%u:%.8s", s->generation, s->sha256);
    if (lume_scripts_hung(rt, name, s->sha256, err)) {
        lume_script_free(s);
        return NULL;
    }
    if (!s->name || (path && !s->path)) {
        lume_script_free(s);
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    s->L = lume_sandbox_new(s, err);
    if (!s->L)
        goto fail;

    /* what lume.keep restores from: the running version's state as it is
     * now (nothing runs it until the swap), else the store's (a running
     * version that keeps nothing hands over nothing) */
    bool failed = true;
    if (old && old->L && old->status == LUME_SCRIPT_RUNNING)
        s->keep_in = lume_keep_snapshot(old, &s->keep_in_len, &failed);
    if (failed) /* none runs, or its state cannot be saved: the last save */
        s->keep_in = lume_keep_load(rt, name, &s->keep_in_len);
    if (s->keep_in)
        lume_sha256_hex(s->keep_in, s->keep_in_len, s->keep_in_sha);
    char chunkname[512];
    if (path)
        snprintf(chunkname, sizeof chunkname, "@%s", path);
    else
        snprintf(chunkname, sizeof chunkname, "=%s", name);
    int st = luaL_loadbufferx(s->L, src, len, chunkname, "t");
    if (st != LUA_OK) {
        *err = lume_strdupf("%s", st == LUA_ERRMEM ? "memory limit exceeded while compiling"
                                                   : lua_tostring(s->L, -1));
        goto fail;
    }
    st = lume_sandbox_call(s, 0, rt->cfg.sandbox.load_budget_ms, "load");
    if (st != LUA_OK) {
        *err = lume_strdupf("%s", s->last_error ? s->last_error : "load failed");
        goto fail;
    }
    free(s->keep_in);
    s->keep_in = NULL;
    s->errors = 0; /* load succeeded: count handler errors from here */
    free(s->last_error);
    s->last_error = NULL;
    return s;
fail:
    lume_script_free(s);
    return NULL;
}

/* Globals that other runtimes call by name and lume does not, with what
 * registers them here. */
static const struct {
    const char *global, *use;
} lookalikes[] = {
    {"on_sample", "lume.on_sample(\"SENSOR\", on_sample)"},
    {"on_tick", "lume.timer.every(MS, on_tick)"},
    {"on_timer", "lume.timer.every(MS, on_timer)"},
    {"on_message", "lume.subscribe(\"FILTER\", on_message)"},
    {"on_c2d", "lume.on_c2d(on_c2d)"},
};

/* Protected, on the script's state: pushes why a script that registered
 * no callback at all will never run again (naming the global functions it
 * probably meant as handlers), or nothing when it registered one or logged
 * a warning while it loaded (it said itself why it does nothing). */
static int idle_warning(lua_State *L)
{
    lume_script *s = lume_script_of(L);
    if (s->warned) /* it logged why it is idle (a board without its sensors) */
        return 0;
    for (int k = 0; k < LUME_CB_KINDS; k++)
        if (lume_cb_count(s, k))
            return 0;
    if (lume_hub_registered(L))
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    int g = lua_gettop(L), n = 1;
    lua_pushstring(L, "registers no handler, timer, subscription or method, so lume never "
                      "calls it after it loads");
    for (size_t i = 0; i < sizeof lookalikes / sizeof *lookalikes; i++) {
        lua_pushstring(L, lookalikes[i].global);
        bool fn = lua_rawget(L, g) == LUA_TFUNCTION;
        lua_pop(L, 1);
        if (fn) {
            lua_pushfstring(L, "; it defines global function %s, which lume never calls; use %s",
                            lookalikes[i].global, lookalikes[i].use);
            n++;
        }
    }
    if (n == 1) {
        lua_pushstring(L, " (register with lume.on_sample, lume.timer.every, lume.subscribe, "
                          "lume.twin.on_change or lume.method)");
        n++;
    }
    lua_concat(L, n);
    return 1;
}

/* Warn (log, and the script's last_error when it has none, which lume
 * stats and rt:scripts() show) about a script that went live registering
 * nothing: almost always a mistake, such as handlers written as globals. */
static void warn_if_idle(lume_script *s)
{
    lua_State *L = s->L;
    if (!L || !lua_checkstack(L, 2))
        return;
    lua_pushcfunction(L, idle_warning); /* does not allocate */
    if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
        const char *msg = lua_tostring(L, -1);
        lume_log(LUME_LOG_WARN, "scripts", "%s: %s", s->name, msg);
        if (!s->last_error)
            s->last_error = lume_strdupf("warning: %s", msg);
    }
    lua_pop(L, 1);
}

void lume_scripts_swap(lume_runtime *rt, lume_script *s)
{
    lume_script *old = lume_scripts_find(rt, s->name);
    /* the old version's state as it stops, over whatever s did meanwhile
     * (a dry run): its first handler sees where the old one left off */
    lume_keep_hand_over(old, s);
    s->status = LUME_SCRIPT_RUNNING;
    s->loaded_ms = lume_wall_ms();
    if (old) {
        s->next = old->next;
        for (lume_script **pp = &rt->scripts; *pp; pp = &(*pp)->next)
            if (*pp == old) {
                *pp = s;
                break;
            }
        lume_script_free(old);
    } else {
        append_script(rt, s);
    }
    lume_log(LUME_LOG_INFO, "scripts", "%s %s (version %s, %zu handlers)", s->name,
             old ? "reloaded" : "loaded", s->version, lume_cb_count(s, LUME_CB_SAMPLE));
    warn_if_idle(s);
}

/* ---- where the running code came from ------------------------------------ */

void lume_scripts_add_origin(cJSON *o, const lume_script *s, const char *signer)
{
    bool twin = s && s->managed, local = s && !s->managed && s->path;
    if (twin || local)
        cJSON_AddStringToObject(o, "origin", twin ? "twin" : "local");
    else
        cJSON_AddNullToObject(o, "origin");
    if (twin && signer)
        cJSON_AddStringToObject(o, "signer", signer);
    else
        cJSON_AddNullToObject(o, "signer");
    if (local)
        cJSON_AddStringToObject(o, "file", s->path);
    else
        cJSON_AddNullToObject(o, "file");
    if ((twin || local) && s->sha256[0])
        cJSON_AddStringToObject(o, "sha256", s->sha256);
    else
        cJSON_AddNullToObject(o, "sha256");
}

void lume_scripts_add_local(cJSON *scripts, const lume_script *s)
{
    cJSON *o = cJSON_AddObjectToObject(scripts, s->name);
    if (!o)
        return;
    cJSON_AddStringToObject(o, "version", s->version);
    cJSON_AddStringToObject(o, "status", lume_script_status_name(s->status));
    if (s->last_error)
        cJSON_AddStringToObject(o, "error", s->last_error);
    else
        cJSON_AddNullToObject(o, "error");
    cJSON_AddNumberToObject(o, "since", (double)s->loaded_ms / 1000.0);
    if (s->L)
        cJSON_AddStringToObject(o, "running", s->version);
    else
        cJSON_AddNullToObject(o, "running");
    lume_scripts_add_origin(o, s, NULL);
    cJSON_AddNullToObject(o, "local");
}

/* A local file's script changed (loaded, failed, unloaded): its reported
 * entry, unless the twin owns the name (then the bundle's entry says it). */
static void report_file(lume_runtime *rt, const char *name)
{
    if (rt->mgr)
        lume_manager_report_local(rt->mgr, name);
}

int lume_scripts_install(lume_runtime *rt, const char *name, const char *path, const char *src,
                         size_t len, char **err)
{
    int r = install(rt, name, path, src, len, err);
    if (path)
        report_file(rt, name);
    return r;
}

static int install(lume_runtime *rt, const char *name, const char *path, const char *src,
                   size_t len, char **err)
{
    lume_script *old = lume_scripts_find(rt, name);
    if (old && !old->L)
        old = NULL; /* a failed load's record: nothing runs */
    lume_script *s = lume_scripts_build(rt, name, path, src, len, err);
    if (!s) {
        lume_log(LUME_LOG_ERROR, "scripts", "%s: %s%s", name, *err,
                 old ? " (the running version stays)" : "");
        if (old) {
            free(old->last_error);
            old->last_error = lume_strdupf("reload failed: %s", *err);
        } else if (lume_script_name_valid(name)) {
            record_failed(rt, name, path, *err);
        }
        return -EINVAL;
    }
    /* swap: between two drains, so no sample is lost or handled twice */
    lume_scripts_swap(rt, s);
    return 0;
}

static char *read_file(const char *path, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = lume_strdupf("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > MAX_SCRIPT_BYTES) {
        *err = lume_strdupf("%s: larger than %d bytes", path, MAX_SCRIPT_BYTES);
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf || n != (size_t)st.st_size) {
        free(buf);
        *err = lume_strdupf("cannot read %s", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int install_file(lume_runtime *rt, const char *file, char **err)
{
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/%s", rt->cfg.scripts_dir, file);
    size_t n = strlen(file);
    snprintf(name, sizeof name, "%.*s", (int)(n - 4), file);
    size_t len;
    char *src = read_file(path, &len, err);
    if (!src) {
        lume_log(LUME_LOG_ERROR, "scripts", "%s", *err);
        record_failed(rt, name, path, *err);
        return -EIO;
    }
    int r = lume_scripts_install(rt, name, path, src, len, err);
    free(src);
    return r;
}

static bool is_script_file(const char *f)
{
    size_t n = strlen(f);
    return n > 4 && f[0] != '.' && !strcmp(f + n - 4, ".lua");
}

static int filter_lua(const struct dirent *e) { return is_script_file(e->d_name); }

int lume_scripts_load_dir(lume_runtime *rt)
{
    struct dirent **list;
    int n = scandir(rt->cfg.scripts_dir, &list, filter_lua, alphasort);
    if (n < 0) {
        lume_log(LUME_LOG_WARN, "scripts", "cannot read scripts directory %s: %s",
                 rt->cfg.scripts_dir, strerror(errno));
        return -errno;
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char *err = NULL;
        if (install_file(rt, list[i]->d_name, &err) < 0)
            failed++;
        free(err);
        free(list[i]);
    }
    free(list);
    return failed ? -EINVAL : 0;
}

int lume_scripts_unload(lume_runtime *rt, const char *name)
{
    lume_script *s = lume_scripts_find(rt, name);
    if (!s)
        return -ENOENT;
    lume_log(LUME_LOG_INFO, "scripts", "%s unloaded", name); /* name may be s->name */
    lume_keep_save(s); /* a later version of it starts where this one stopped */
    bool file = !s->managed;
    unlink_script(rt, s);
    lume_script_free(s);
    if (file)
        report_file(rt, name);
    return 0;
}

char *lume_scripts_managed_why(lume_runtime *rt, const char *name)
{
    lume_script *s = lume_scripts_find(rt, name);
    if (!s || !s->managed)
        return NULL;
    const char *v = lume_manager_running_version(rt->mgr, name);
    if (v)
        return lume_strdupf("%s is managed by the twin (bundle version %s): push a new version "
                            "instead", name, v);
    return lume_strdupf("%s is managed by the twin: push a new version instead", name);
}

/* The twin's scripts, for the answer to `reload` (all): "; left alone,
 * managed by the twin: rules (bundle version 7), ..." or "". */
char *lume_scripts_managed_note(lume_runtime *rt)
{
    char buf[1024];
    size_t u = 0, shown = 0, more = 0;
    buf[0] = 0;
    for (lume_script *s = rt->scripts; s; s = s->next) {
        if (!s->managed)
            continue;
        if (shown == 8 || u >= sizeof buf - 200) {
            more++;
            continue;
        }
        const char *v = lume_manager_running_version(rt->mgr, s->name);
        u += (size_t)snprintf(buf + u, sizeof buf - u, "%s%s%s%s%s", shown ? ", " : "",
                              s->name, v ? " (bundle version " : "", v ? v : "", v ? ")" : "");
        shown++;
    }
    if (!shown)
        return strdup("");
    if (more)
        snprintf(buf + u, sizeof buf - u, " and %zu more", more);
    return lume_strdupf("; left alone, managed by the twin (push new versions instead): %s",
                        buf);
}

int lume_scripts_reload(lume_runtime *rt, const char *name, char **err)
{
    if (name) {
        char file[300];
        if (!lume_script_name_valid(name)) {
            *err = lume_strdupf("bad script name '%s'", name);
            return -EINVAL;
        }
        /* the twin's version stays until the twin says otherwise: a file
         * (saved, deleted, or named by lume reload) never replaces it */
        snprintf(file, sizeof file, "%s.lua", name);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", rt->cfg.scripts_dir, file);
        char *why = lume_scripts_managed_why(rt, name);
        if (why && !(rt->cfg.scripts_local_override && access(path, R_OK) == 0 &&
                     lume_manager_may_override(rt->mgr, name))) {
            /* the twin's version stays: refused where the operator looks */
            size_t n = 0;
            char *e = NULL, sha[65] = "";
            char *src = read_file(path, &n, &e);
            if (src)
                lume_sha256_hex(src, n, sha);
            free(src);
            free(e);
            lume_log(LUME_LOG_WARN, "scripts", "%s.lua not reloaded: %s (the twin's version "
                     "stays: scripts_local_override is off; reported under scripts.%s.local)",
                     name, why, name);
            lume_manager_local_refused(rt->mgr, name, path, src ? sha : NULL, why);
            *err = why;
            return -EPERM;
        }
        if (why) {
            lume_log(LUME_LOG_WARN, "scripts", "%s replaces the twin's version of %s "
                     "(scripts_local_override): %s", path, name, why);
            free(why);
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            if (lume_scripts_find(rt, name)) {
                lume_scripts_unload(rt, name);
                return 0;
            }
            *err = lume_strdupf("no script named '%s' (no %s)", name, path);
            return -ENOENT;
        }
        return install_file(rt, file, err);
    }
    /* all: drop scripts whose file is gone, (re)load every file */
    for (lume_script *s = rt->scripts, *nx; s; s = nx) {
        nx = s->next;
        struct stat st;
        if (s->path && stat(s->path, &st) != 0)
            lume_scripts_unload(rt, s->name);
    }
    struct dirent **list;
    int n = scandir(rt->cfg.scripts_dir, &list, filter_lua, alphasort);
    if (n < 0) {
        *err = lume_strdupf("cannot read %s: %s", rt->cfg.scripts_dir, strerror(errno));
        return -EIO;
    }
    int failed = 0;
    char *first = NULL;
    for (int i = 0; i < n; i++) {
        char *e = NULL;
        char nm[256];
        snprintf(nm, sizeof nm, "%.*s", (int)strlen(list[i]->d_name) - 4, list[i]->d_name);
        char *why = lume_scripts_managed_why(rt, nm);
        if (why) {
            lume_log(LUME_LOG_INFO, "scripts", "%s skipped: %s", list[i]->d_name, why);
            free(why);
        } else if (install_file(rt, list[i]->d_name, &e) < 0) {
            failed++;
            if (!first)
                first = e;
            else
                free(e);
        } else {
            free(e);
        }
        free(list[i]);
    }
    free(list);
    if (failed) {
        *err = lume_strdupf("%d script(s) failed, first: %s", failed, first ? first : "?");
        free(first);
        return -EINVAL;
    }
    return 0;
}

void lume_scripts_free_all(lume_runtime *rt)
{
    for (lume_script *s = rt->scripts, *nx; s; s = nx) {
        nx = s->next;
        lume_keep_save(s); /* for the same scripts after a restart */
        lume_script_free(s);
    }
    rt->scripts = NULL;
}

/* ---- inotify: reload on save --------------------------------------------- */

static void reload_pending(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    char names[sizeof rt->pending_reload];
    memcpy(names, rt->pending_reload, sizeof names);
    rt->pending_reload[0] = 0;
    for (char *save = NULL, *nm = strtok_r(names, "\n", &save); nm;
         nm = strtok_r(NULL, "\n", &save)) {
        char *err = NULL;
        lume_scripts_reload(rt, nm, &err);
        free(err);
    }
}

static void queue_reload(lume_runtime *rt, const char *file)
{
    char name[256];
    size_t n = strlen(file);
    snprintf(name, sizeof name, "%.*s\n", (int)(n - 4), file);
    if (!strstr(rt->pending_reload, name) &&
        strlen(rt->pending_reload) + strlen(name) < sizeof rt->pending_reload)
        strcat(rt->pending_reload, name);
    /* debounce: editors write, rename and touch in quick succession */
    lume_timer_start(&rt->reload_timer, 100 * 1000);
}

static void on_inotify(void *ud, int fd)
{
    lume_runtime *rt = ud;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->len && is_script_file(ev->name))
                queue_reload(rt, ev->name);
            p += sizeof *ev + ev->len;
        }
    }
}

int lume_scripts_watch(lume_runtime *rt)
{
    lume_timer_init(&rt->reload_timer, rt->loop, reload_pending, rt);
    lume_timer_name(&rt->reload_timer, "script reload");
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        lume_log(LUME_LOG_WARN, "scripts", "inotify unavailable (%s): use lume reload",
                 strerror(errno));
        return -errno;
    }
    if (inotify_add_watch(fd, rt->cfg.scripts_dir,
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0) {
        lume_log(LUME_LOG_WARN, "scripts", "cannot watch %s (%s): use lume reload",
                 rt->cfg.scripts_dir, strerror(errno));
        close(fd);
        return -errno;
    }
    char *err = NULL;
    rt->inotify_watch = lume_loop_watch_fd(rt->loop, fd, on_inotify, rt, &err);
    if (!rt->inotify_watch) {
        lume_log(LUME_LOG_WARN, "scripts", "%s", err);
        free(err);
        close(fd);
        return -EIO;
    }
    return 0;
}
