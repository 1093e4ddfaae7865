/* core/store/kv.c — the persistent key/value state store (see kv.h).
 *
 * One WITHOUT ROWID table keyed by (ns, key), WAL journal, synchronous
 * NORMAL: a write that returned 0 survives the process being killed; after a
 * power loss the newest writes may be missing but the file is consistent.
 * Every set/del is one autocommit statement; statements are prepared once
 * per connection.
 *
 * The file itself is core/store/store.c's: opened through lume_store_db_open (a
 * damaged file is moved aside and salvaged, an unwritable one spilled or
 * kept in memory), and lume_kv_check swaps the connection when the file
 * was deleted, replaced or found damaged.
 *
 * Invariants:
 *   1. Every statement in st[] belongs to the connection in db; they are
 *      finalized before the store replaces the connection and prepared
 *      again after.
 *   2. Every result of a write, and every failure, is noted with the store
 *      (lume_store_db_note): that is how damage found while running is
 *      salvaged and a full or read-only disk is reported. */
#include "kv.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "store.h"

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

static const char kv_schema[] =
    "CREATE TABLE IF NOT EXISTS kv("
    " ns TEXT NOT NULL, key TEXT NOT NULL, type INTEGER NOT NULL,"
    " val BLOB, PRIMARY KEY(ns, key)) WITHOUT ROWID;";

static const lume_store_table kv_table = {
    .file = "state store",
    .table = "kv",
    .schema = kv_schema,
    .cols = "ns,key,type,val",
    .ncols = 4,
    .nkey = 2,
    .key1 = "ns",
    .key2 = "key",
};

struct lume_kv {
    sqlite3       *db;     /* lume_store_db_handle(sd) */
    lume_store_db *sd;
    sqlite3_stmt  *st[K_COUNT];
    char          *path;
};

static void detach(lume_kv *kv)
{
    for (int i = 0; i < K_COUNT; i++) {
        sqlite3_finalize(kv->st[i]);
        kv->st[i] = NULL;
    }
}

/* Pragmas, schema and statements on kv->db. NULL, or SQLite's message. */
static const char *attach(lume_kv *kv)
{
    kv->db = lume_store_db_handle(kv->sd);
    sqlite3_busy_timeout(kv->db, 250);
    if (sqlite3_exec(kv->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(kv->db, kv_schema, NULL, NULL, NULL) != SQLITE_OK)
        return sqlite3_errmsg(kv->db);
    for (int i = 0; i < K_COUNT; i++)
        if (sqlite3_prepare_v3(kv->db, kv_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &kv->st[i],
                               NULL) != SQLITE_OK)
            return sqlite3_errmsg(kv->db);
    return NULL;
}

static void kv_free(lume_kv *kv)
{
    detach(kv);
    lume_store_db_close(kv->sd);   /* puts a deleted or spilled file back first */
    free(kv->path);
    free(kv);
}

lume_kv *lume_kv_open(const char *path, char **err)
{
    lume_kv *kv = NULL;
    const char *what = "out of memory";
    char *why = NULL;
    if (err)
        *err = NULL;
    if (!path || !*path) {
        what = "no path given";
        goto err;
    }
    kv = calloc(1, sizeof *kv);
    if (!kv || !(kv->path = strdup(path)))
        goto err;
    /* damage, emptiness, a read-only file or a full disk never stop the
     * open: store.c salvages, spills or keeps it in memory */
    kv->sd = lume_store_db_open(path, &kv_table, &why);
    if (!kv->sd) {
        what = why ? why : "cannot open";
        goto err;
    }
    if ((what = attach(kv)))
        goto err;
    return kv;

err:
    if (err)
        *err = lume_strdupf("kv %s: %s", path ? path : "(null)", what);
    free(why);
    if (kv)
        kv_free(kv);
    return NULL;
}

int lume_kv_check(lume_kv *kv)
{
    if (!kv || !lume_store_db_due(kv->sd))
        return 0;
    detach(kv);
    int r = lume_store_db_repair(kv->sd);
    const char *what = attach(kv);
    if (what) {
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot prepare the state store again: %s", kv->path,
                 what);
        lume_store_db_note(kv->sd, sqlite3_extended_errcode(kv->db), what);
        return -EIO;
    }
    return r;
}

lume_store_db *lume_kv_store(const lume_kv *kv)
{
    return kv ? kv->sd : NULL;
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
    int rc = sqlite3_extended_errcode(kv->db);
    lume_store_db_note(kv->sd, rc, sqlite3_errmsg(kv->db));
    return (rc & 0xff) == SQLITE_NOMEM ? -ENOMEM : -EIO;
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
    if (!res)
        lume_store_db_note(kv->sd, SQLITE_OK, NULL);
    done(s);
    lume_check(sqlite3_get_autocommit(kv->db), "every set/del is one autocommit statement");
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
    if (!res)
        lume_store_db_note(kv->sd, SQLITE_OK, NULL);
    done(s);
    lume_check(sqlite3_get_autocommit(kv->db), "every set/del is one autocommit statement");
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
