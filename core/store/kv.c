/* core/store/kv.c — the persistent key/value state store (see kv.h).
 *
 * One WITHOUT ROWID table keyed by (ns, key), WAL journal, synchronous
 * NORMAL: a write that returned 0 survives the process being killed; after a
 * power loss the newest writes may be missing but the file is consistent.
 * Every set/del is one autocommit statement; statements are prepared once. */
#include "kv.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define COMP "kv"

enum { K_GET, K_SET, K_DEL, K_EACH, K_BYTES, K_COUNT };

static const char *const kv_sql[K_COUNT] = {
    [K_GET] = "SELECT type, val FROM kv WHERE ns=?1 AND key=?2",
    [K_SET] = "INSERT INTO kv(ns,key,type,val) VALUES(?1,?2,?3,?4)"
              " ON CONFLICT(ns,key) DO UPDATE SET type=excluded.type, val=excluded.val",
    [K_DEL] = "DELETE FROM kv WHERE ns=?1 AND key=?2",
    [K_EACH] = "SELECT key, type, val FROM kv WHERE ns=?1 ORDER BY key",
    [K_BYTES] = "SELECT ifnull(sum(length(CAST(key AS BLOB)) + ifnull(length(val),0)),0)"
                " FROM kv WHERE ns=?1",
};

struct lume_kv {
    sqlite3      *db;
    sqlite3_stmt *st[K_COUNT];
    char         *path;
};

static void kv_free(lume_kv *kv)
{
    for (int i = 0; i < K_COUNT; i++)
        sqlite3_finalize(kv->st[i]);
    sqlite3_close(kv->db);
    free(kv->path);
    free(kv);
}

lume_kv *lume_kv_open(const char *path, char **err)
{
    lume_kv *kv = NULL;
    const char *what = "out of memory";
    if (err)
        *err = NULL;
    if (!path || !*path) {
        what = "no path given";
        goto err;
    }
    kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->path = strdup(path)))
        goto err;
    if (sqlite3_open_v2(path, &kv->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        what = kv->db ? sqlite3_errmsg(kv->db) : "cannot allocate a connection";
        goto err;
    }
    sqlite3_busy_timeout(kv->db, 250);
    if (sqlite3_exec(kv->db,
                     "PRAGMA journal_mode=WAL;"
                     "PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS kv("
                     " ns TEXT NOT NULL, key TEXT NOT NULL, type INTEGER NOT NULL,"
                     " val BLOB, PRIMARY KEY(ns, key)) WITHOUT ROWID;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        what = sqlite3_errmsg(kv->db);
        goto err;
    }
    for (int i = 0; i < K_COUNT; i++)
        if (sqlite3_prepare_v3(kv->db, kv_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &kv->st[i], NULL) != SQLITE_OK) {
            what = sqlite3_errmsg(kv->db);
            goto err;
        }
    return kv;

err:
    if (err)
        *err = lume_strdupf("kv %s: %s", path ? path : "(null)", what);
    if (kv)
        kv_free(kv);
    return NULL;
}

void lume_kv_close(lume_kv *kv)
{
    if (kv)
        kv_free(kv);
}

static void bind_ns_key(sqlite3_stmt *s, const char *ns, const char *key)
{
    sqlite3_bind_text(s, 1, ns, -1, SQLITE_STATIC);
    if (key)
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
}

/* Reset s and drop its bindings, so no pointer of the caller's outlives the
 * call. */
static void done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static int fail(lume_kv *kv, const char *op, const char *ns, const char *key)
{
    lume_log(LUME_LOG_ERROR, COMP, "%s: %s %s/%s failed: %s", kv->path, op, ns,
             key ? key : "*", sqlite3_errmsg(kv->db));
    return -EIO;
}

int lume_kv_get(lume_kv *kv, const char *ns, const char *key, void **val,
                size_t *len, int *type)
{
    if (!kv || !ns || !key || !val)
        return -EINVAL;
    sqlite3_stmt *s = kv->st[K_GET];
    bind_ns_key(s, ns, key);
    int rc = sqlite3_step(s), res;
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        const void *src = sqlite3_column_blob(s, 1);
        /* One spare byte, always NUL, so string values can be used as is. */
        char *copy = malloc(n + 1);
        if (!copy) {
            res = -ENOMEM;
        } else {
            if (n)
                memcpy(copy, src, n);
            copy[n] = 0;
            *val = copy;
            if (len)
                *len = n;
            if (type)
                *type = sqlite3_column_int(s, 0);
            res = 0;
        }
    } else if (rc == SQLITE_DONE) {
        res = -ENOENT;
    } else {
        res = fail(kv, "get", ns, key);
    }
    done(s);
    return res;
}

int lume_kv_set(lume_kv *kv, const char *ns, const char *key, const void *val,
                size_t len, int type)
{
    if (!kv || !ns || !key || (!val && len) || len > INT32_MAX)
        return -EINVAL;
    sqlite3_stmt *s = kv->st[K_SET];
    bind_ns_key(s, ns, key);
    sqlite3_bind_int(s, 3, type);
    /* An empty value is an empty blob, not NULL. */
    sqlite3_bind_blob(s, 4, len ? val : "", (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int res = rc == SQLITE_DONE ? 0 : fail(kv, "set", ns, key);
    done(s);
    return res;
}

int lume_kv_del(lume_kv *kv, const char *ns, const char *key)
{
    if (!kv || !ns || !key)
        return -EINVAL;
    sqlite3_stmt *s = kv->st[K_DEL];
    bind_ns_key(s, ns, key);
    int rc = sqlite3_step(s);
    int res = rc == SQLITE_DONE ? 0 : fail(kv, "del", ns, key);
    done(s);
    return res;
}

int lume_kv_each(lume_kv *kv, const char *ns,
                 int (*fn)(void *ud, const char *key, const void *val, size_t len,
                           int type),
                 void *ud)
{
    if (!kv || !ns || !fn)
        return -EINVAL;
    sqlite3_stmt *s = kv->st[K_EACH];
    bind_ns_key(s, ns, NULL);
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(s, 0);
        int type = sqlite3_column_int(s, 1);
        const void *val = sqlite3_column_blob(s, 2);
        size_t len = (size_t)sqlite3_column_bytes(s, 2);
        n++;
        if (fn(ud, key ? key : "", len ? val : "", len, type))
            break;
    }
    int res = rc == SQLITE_ROW || rc == SQLITE_DONE ? n : fail(kv, "each", ns, NULL);
    done(s);
    return res;
}

int64_t lume_kv_ns_bytes(lume_kv *kv, const char *ns)
{
    if (!kv || !ns)
        return -EINVAL;
    sqlite3_stmt *s = kv->st[K_BYTES];
    bind_ns_key(s, ns, NULL);
    int64_t res = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0)
                                                : fail(kv, "size of", ns, NULL);
    done(s);
    return res;
}
