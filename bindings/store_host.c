/* bindings/store_host.c — the store in a running lume: its lock, the check
 * once a second, what `lume stats` and the twin say about it.
 *
 *   lume_runtime_new ─► lume_store_host_open (mkdir 0700, check modes, lock)
 *                       ... outbox.db, state.db opened (core/store/store.c defends them)
 *                  ─► lume_store_host_start: every second (store_tick)
 *                        lume_store_check      directory and lock file still there?
 *                        lume_outbox_check     outbox.db deleted/replaced/damaged?
 *                        lume_kv_check         state.db likewise
 *                        the control socket    still at its path? else listen again
 *                        free space            statvfs
 *                        the twin's `store`    reported when it changed
 *   lume_runtime_free ─► lume_store_host_close (unlock)
 *
 * A store removed and then taken by another runtime (it holds the lock now)
 * is not fought over: this runtime stops (lume_runtime_run returns -EBUSY,
 * exit 1) and saves its rows as FILE.stranded-PID-STAMP.
 *
 * Stats (`lume stats`, and so the health channel) carry a "store" object:
 * writable, disk_full, free_bytes, last_error, recoveries, corruptions,
 * salvaged, lost, and the same per file (files.outbox, files.state). */
#include "store_host.h"
#include "control.h"
#include "lume.h"
#include "runtime.h"
#include "twin_host.h"
#include "kv.h"
#include "loop.h"
#include "mqtt.h"
#include "outbox.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

#define TICK_US 1000000
#define LOW_SPACE (64 * 1024)   /* below this many free bytes the disk counts as full */

int lume_store_host_open(lume_runtime *rt, char **err)
{
    return lume_store_open(rt->cfg.store, &rt->store, err);
}

static void note_socket(lume_runtime *rt)
{
    struct stat st;
    const char *path = lume_control_path(rt);
    if (path && stat(path, &st) == 0) {
        rt->control_dev = st.st_dev;
        rt->control_ino = st.st_ino;
    }
}

/* The control socket's file removed (rm -rf of the store): listen again. */
static void check_socket(lume_runtime *rt)
{
    const char *path = lume_control_path(rt);
    if (!path)
        return;
    struct stat st;
    if (stat(path, &st) == 0 && st.st_ino == rt->control_ino && st.st_dev == rt->control_dev)
        return;
    lume_log(LUME_LOG_ERROR, "control", "the control socket %s was removed while lume ran: "
             "listening again", path);
    lume_control_close(rt);
    char *err = NULL;
    if (lume_control_listen(rt, &err) < 0) {
        lume_log(LUME_LOG_ERROR, "control", "%s (lume reload and lume stats will not reach "
                 "this process)", err ? err : "cannot listen");
        free(err);
        return;
    }
    rt->socket_remade++;
    note_socket(rt);
}

static void files(lume_runtime *rt, lume_store_db_info *ob, lume_store_db_info *kv)
{
    lume_store_db_info_get(lume_outbox_store(rt->outbox), ob);
    lume_store_db_info_get(lume_kv_store(rt->kv), kv);
}

static bool disk_full(lume_runtime *rt, const lume_store_db_info *ob,
                      const lume_store_db_info *kv)
{
    return ob->disk_full || kv->disk_full || (rt->free_bytes >= 0 && rt->free_bytes < LOW_SPACE);
}

static void add_file(cJSON *o, const lume_store_db_info *i)
{
    cJSON_AddStringToObject(o, "file", i->file);
    cJSON_AddStringToObject(o, "mode", i->mode);
    cJSON_AddBoolToObject(o, "exclusive", i->exclusive);
    cJSON_AddBoolToObject(o, "writable", i->writable);
    cJSON_AddBoolToObject(o, "disk_full", i->disk_full);
    cJSON_AddStringToObject(o, "last_error", i->last_error);
    cJSON_AddNumberToObject(o, "recoveries", (double)i->recoveries);
    cJSON_AddNumberToObject(o, "corruptions", (double)i->corruptions);
    cJSON_AddNumberToObject(o, "salvaged", (double)i->salvaged);
    cJSON_AddNumberToObject(o, "lost", (double)i->lost);
    cJSON_AddBoolToObject(o, "lost_exact", i->lost_exact);
    cJSON_AddStringToObject(o, "last_event", i->last_event);
}

/* "outbox.db: x; state.db: y" from the non-empty ones. */
static void join(char *buf, size_t n, const char *a, const char *b)
{
    snprintf(buf, n, "%s%s%s", a, *a && *b ? "; " : "", b);
}

/* The summary both stats and the twin carry. */
static void add_summary(lume_runtime *rt, cJSON *o, const lume_store_db_info *ob,
                        const lume_store_db_info *kv)
{
    char buf[1400];
    cJSON_AddBoolToObject(o, "writable", ob->writable && kv->writable);
    cJSON_AddBoolToObject(o, "disk_full", disk_full(rt, ob, kv));
    cJSON_AddNumberToObject(o, "recoveries", (double)(ob->recoveries + kv->recoveries));
    cJSON_AddNumberToObject(o, "corruptions", (double)(ob->corruptions + kv->corruptions));
    cJSON_AddNumberToObject(o, "salvaged", (double)(ob->salvaged + kv->salvaged));
    cJSON_AddNumberToObject(o, "lost", (double)(ob->lost + kv->lost));
    cJSON_AddBoolToObject(o, "lost_exact", ob->lost_exact && kv->lost_exact);
    join(buf, sizeof buf, ob->last_event, kv->last_event);
    cJSON_AddStringToObject(o, "last_event", buf);
}

void lume_store_host_json(lume_runtime *rt, cJSON *root)
{
    lume_store_db_info ob, kv;
    files(rt, &ob, &kv);
    cJSON *o = cJSON_AddObjectToObject(root, "store");
    cJSON_AddStringToObject(o, "dir", rt->cfg.store);
    add_summary(rt, o, &ob, &kv);
    cJSON_AddNumberToObject(o, "free_bytes", (double)rt->free_bytes);
    char buf[600];
    join(buf, sizeof buf, ob.last_error, kv.last_error);
    cJSON_AddStringToObject(o, "last_error", buf);
    cJSON_AddNumberToObject(o, "dir_remade", (double)lume_store_remade(rt->store));
    cJSON_AddNumberToObject(o, "socket_remade", (double)rt->socket_remade);
    cJSON *f = cJSON_AddObjectToObject(o, "files");
    add_file(cJSON_AddObjectToObject(f, "outbox"), &ob);
    add_file(cJSON_AddObjectToObject(f, "state"), &kv);
}

/* The twin's reported `store` section, when it differs from the last one
 * reported (free space is left out: it changes all the time). */
static void report(lume_runtime *rt)
{
    if (!rt->twin)
        return;
    lume_store_db_info ob, kv;
    files(rt, &ob, &kv);
    cJSON *patch = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(patch, "store");
    add_summary(rt, o, &ob, &kv);
    char *now = cJSON_PrintUnformatted(o);
    if (!now || (rt->store_reported && !strcmp(now, rt->store_reported))) {
        free(now);
        cJSON_Delete(patch);
        return;
    }
    free(rt->store_reported);
    rt->store_reported = now;
    lume_twin_host_report(rt, patch);
}

static void store_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    if (lume_store_check(rt->store) == -EBUSY) {
        /* removed, then taken by another runtime: two on one store would
         * replace each other's files and, with a broker, kick each other
         * off. This one stops; its rows are saved aside as it closes. */
        lume_store_db_strand(lume_outbox_store(rt->outbox));
        lume_store_db_strand(lume_kv_store(rt->kv));
        lume_log(LUME_LOG_ERROR, "store", "%s is another runtime's now: stopping (what this "
                 "one held is saved as outbox.db.stranded-%d-* and state.db.stranded-%d-*)",
                 rt->cfg.store, (int)getpid(), (int)getpid());
        rt->store_lost = true;
        /* the socket at that path is the other runtime's: not ours to unlink */
        lume_control_disown(rt);
        lume_runtime_stop(rt);
        return;
    }
    if (lume_outbox_check(rt->outbox) > 0 && rt->mqtt)
        lume_mqtt_kick(rt->mqtt);
    lume_kv_check(rt->kv);
    check_socket(rt);
    rt->free_bytes = lume_store_free_bytes(rt->store);
    if (rt->free_bytes >= LOW_SPACE) {
        /* a write that failed for lack of space may not have been tried
         * since: room now; the next failure says otherwise */
        lume_store_db_space_back(lume_outbox_store(rt->outbox));
        lume_store_db_space_back(lume_kv_store(rt->kv));
    }
    report(rt);
    lume_timer_start(t, TICK_US);
}

void lume_store_host_start(lume_runtime *rt)
{
    rt->free_bytes = lume_store_free_bytes(rt->store);
    lume_store_db_info ob, kv;
    files(rt, &ob, &kv);
    if (disk_full(rt, &ob, &kv))
        lume_log(LUME_LOG_WARN, "store", "%s: the disk is full (%lld bytes free): messages "
                 "wait in memory until it has room", rt->cfg.store, (long long)rt->free_bytes);
    note_socket(rt);
    report(rt);
    lume_timer_init(&rt->store_timer, rt->loop, store_tick, rt);
    lume_timer_name(&rt->store_timer, "store check");
    lume_timer_start(&rt->store_timer, TICK_US);
}

void lume_store_host_stop(lume_runtime *rt)
{
    if (rt->loop)
        lume_timer_cancel(&rt->store_timer);
}

void lume_store_host_close(lume_runtime *rt)
{
    lume_store_close(rt->store);
    rt->store = NULL;
    free(rt->store_reported);
    rt->store_reported = NULL;
}
