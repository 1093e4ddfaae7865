/* tests/unit/test_store.c — the store that defends itself (core/store/store.c):
 * the lock, modes, salvage of damaged files (rowid and WITHOUT ROWID
 * tables, a damaged leaf, a damaged interior page, a truncated file, no
 * deleted row brought back), files put back from the open connection after
 * an unlink or a replacement, empty and not-a-database files, spills; and
 * the outbox and the state store over it (pending, in-flight and committed
 * messages through an unlink; damage found while running). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "kv.h"
#include "log.h"
#include "outbox.h"
#include "store.h"
#include "testutil.h"

/* ---- fixture: a temp folder, captured log lines -------------------------- */

typedef struct fx {
    char dir[256];
    int  errors;          /* ERROR lines logged */
    char last[1024];
} fx;

static fx *g_fx;

static void capture(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    (void)component;
    if (!g_fx)
        return;
    if (level >= LUME_LOG_ERROR)
        g_fx->errors++;
    snprintf(g_fx->last, sizeof g_fx->last, "%s", msg);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f || tu_tmpdir(f->dir, sizeof f->dir, "store")) {
        free(f);
        return -1;
    }
    g_fx = f;
    lume_log_set_sink(capture, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lume_log_set_sink(NULL, NULL);
    g_fx = NULL;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chattr -R -i '%s' 2>/dev/null", f->dir);
    if (system(cmd)) {
        /* not every file system has attributes */
    }
    tu_rm_tree(f->dir);
    free(f);
    return 0;
}

static const char *P(fx *f, const char *name) { return tu_path(f->dir, name); }

/* ---- the tables under test ----------------------------------------------- */

#define ROWS_SCHEMA                                                                   \
    "CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, lane INTEGER NOT NULL,"  \
    " qos INTEGER NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL"   \
    " DEFAULT 0, packet_id INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL"       \
    " DEFAULT 0, topic TEXT NOT NULL, payload BLOB);"                                   \
    "CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox(lane, id);"

static const lume_store_table rows_t = {
    .file = "outbox", .table = "outbox", .schema = ROWS_SCHEMA,
    .cols = "id,lane,qos,created_ms,expires_ms,packet_id,attempts,topic,payload",
    .ncols = 9, .nkey = 1, .key1 = "id",
    .hints_asc = "SELECT id FROM outbox INDEXED BY outbox_lane_id",
    .hints_desc = "SELECT id FROM outbox INDEXED BY outbox_lane_id ORDER BY lane DESC, id DESC",
};

#define KV_SCHEMA                                                                     \
    "CREATE TABLE IF NOT EXISTS kv(ns TEXT NOT NULL, key TEXT NOT NULL, type INTEGER"   \
    " NOT NULL, val BLOB, PRIMARY KEY(ns, key)) WITHOUT ROWID;"

static const lume_store_table kv_t = {
    .file = "state store", .table = "kv", .schema = KV_SCHEMA, .cols = "ns,key,type,val",
    .ncols = 4, .nkey = 2, .key1 = "ns", .key2 = "key",
};

static void exec(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &e);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, e ? e : "?");
    sqlite3_free(e);
    assert_int_equal(rc, SQLITE_OK);
}

static int64_t one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int64_t count_in(const char *path, const char *table)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    int64_t n = one(db, sql);
    sqlite3_close(db);
    return n;
}

/* A file of n outbox rows (ids 1..n), checkpointed into the main file. */
static void make_rows(const char *path, int n)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA secure_delete=OFF");
    exec(db, ROWS_SCHEMA);
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<%d)"
             " INSERT INTO outbox SELECT x, x%%3, 1, x, 0, 0, 0, 'lume/t/telemetry/x',"
             " printf('payload %%06d', x) FROM c", n);
    exec(db, sql);
    exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
}

/* A file of n kv rows in two namespaces. */
static void make_kv(const char *path, int n)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "PRAGMA journal_mode=WAL");
    exec(db, KV_SCHEMA);
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<%d)"
             " INSERT INTO kv SELECT CASE WHEN x%%2 THEN 'script:a' ELSE 'twin' END,"
             " 'k' || x, 1, printf('value %%06d %%s', x, hex(randomblob(20))) FROM c", n);
    exec(db, sql);
    exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
}

/* Page numbers of one kind of page of a b-tree (dbstat). */
static int pages_of(const char *path, const char *name, const char *type, int *out, int max)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT pageno FROM dbstat WHERE name=?1 AND "
                                        "pagetype=?2 ORDER BY pageno", -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW && n < max)
        out[n++] = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* Garbage over page pno (1-based, 4096-byte pages). */
static void smash(const char *path, int pno)
{
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 131 + 7);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof junk, (off_t)(pno - 1) * 4096), (ssize_t)sizeof junk);
    close(fd);
}

/* Salvage src_path into a fresh dst (in memory); returns the result and
 * leaves dst open in *out when out is given. */
static lume_salvage_result salvage(const char *src_path, const lume_store_table *t,
                                         sqlite3 **out)
{
    sqlite3 *src, *dst;
    assert_int_equal(sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_open(":memory:", &dst), SQLITE_OK);
    exec(dst, t->schema);
    lume_salvage_result r;
    assert_int_equal(lume_salvage(src, dst, t, &r), 0);
    sqlite3_close(src);
    if (out)
        *out = dst;
    else
        sqlite3_close(dst);
    return r;
}

/* ---- the directory ------------------------------------------------------- */

static void test_lock(void **state)
{
    fx *f = *state;
    const char *dir = P(f, "var");
    lume_store *a = NULL, *b = NULL;
    char *err = NULL;
    assert_int_equal(lume_store_open(dir, &a, &err), 0);
    assert_int_equal(lume_store_open(dir, &b, &err), -EBUSY);
    assert_null(b);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)getpid());
    assert_non_null(strstr(err, pid));
    free(err);
    lume_store_close(a);
    assert_int_equal(lume_store_open(dir, &b, &err), 0);
    lume_store_close(b);
}

static void test_modes(void **state)
{
    fx *f = *state;
    const char *dir = P(f, "var");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(tu_write_text(P(f, "var/outbox.db"), ""), 0);
    assert_int_equal(chmod(P(f, "var/outbox.db"), 0644), 0);
    lume_store *s = NULL;
    char *err = NULL;
    assert_int_equal(lume_store_open(dir, &s, &err), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(P(f, "var/outbox.db"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(P(f, "var/lock"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    lume_store_close(s);

    /* a fresh one is made private */
    assert_int_equal(lume_store_open(P(f, "a/b/fresh"), &s, &err), 0);
    assert_int_equal(stat(P(f, "a/b/fresh"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    lume_store_close(s);

    /* a directory that holds other files is not lume's to change */
    const char *shared = P(f, "shared");
    assert_int_equal(mkdir(shared, 0755), 0);
    assert_int_equal(tu_write_text(P(f, "shared/notes.txt"), "x"), 0);
    assert_int_equal(chmod(P(f, "shared/notes.txt"), 0644), 0);
    assert_int_equal(lume_store_open(shared, &s, &err), 0);
    assert_int_equal(stat(shared, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    assert_int_equal(stat(P(f, "shared/notes.txt"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(stat(P(f, "shared/lock"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    lume_store_close(s);
    assert_int_equal(chmod(shared, 01777), 0);   /* like /tmp */
    assert_int_equal(lume_store_open(shared, &s, &err), -EPERM);
    assert_non_null(strstr(err, "directory of its own"));
    free(err);
    assert_int_equal(stat(shared, &st), 0);
    assert_int_equal(st.st_mode & 07777, 01777);
    assert_int_equal(chmod(shared, 0755), 0);

    if (geteuid() != 0) {
        print_message("(another user's store: needs root to chown, skipped)\n");
        return;
    }
    assert_int_equal(chown(dir, 65534, 65534), 0);
    assert_int_equal(lume_store_open(dir, &s, &err), -EPERM);
    assert_non_null(strstr(err, "owned by uid 65534"));
    free(err);
    assert_int_equal(chown(dir, 0, 0), 0);
    assert_int_equal(chown(P(f, "var/outbox.db"), 65534, 65534), 0);
    assert_int_equal(lume_store_open(dir, &s, &err), -EPERM);
    assert_non_null(strstr(err, "outbox.db"));
    free(err);
}

static void test_dir_remade(void **state)
{
    fx *f = *state;
    const char *dir = P(f, "var");
    lume_store *s = NULL, *t = NULL;
    char *err = NULL;
    assert_int_equal(lume_store_open(dir, &s, &err), 0);
    assert_int_equal(lume_store_check(s), 0);
    tu_rm_tree(dir);
    assert_int_equal(lume_store_check(s), 1);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(lume_store_remade(s), 1);
    /* the lock is held again */
    assert_int_equal(lume_store_open(dir, &t, &err), -EBUSY);
    free(err);
    assert_int_equal(lume_store_check(s), 0);
    lume_store_close(s);
}

/* ---- salvage ------------------------------------------------------------- */

static void test_salvage_leaf(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    make_rows(path, 5000);
    int leaves[512];
    int n = pages_of(path, "outbox", "leaf", leaves, 512);
    assert_true(n > 10);
    smash(path, leaves[n / 2]);
    smash(path, leaves[n / 4]);
    sqlite3 *dst;
    lume_salvage_result r = salvage(path, &rows_t, &dst);
    assert_true(r.damage);
    assert_true(r.exact);               /* the index names every row */
    assert_true(r.lost > 0);
    assert_int_equal(r.copied + r.lost, 5000);
    assert_int_equal(one(dst, "SELECT count(*) FROM outbox"), r.copied);
    /* what came back is intact */
    assert_int_equal(one(dst, "SELECT count(*) FROM outbox WHERE payload = "
                              "printf('payload %06d', id) AND lane = id % 3"), r.copied);
    sqlite3_close(dst);
}

static void test_salvage_interior(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    make_rows(path, 20000);
    int inner[64];
    int n = pages_of(path, "outbox", "internal", inner, 64);
    assert_true(n >= 1);
    smash(path, inner[0]);   /* the root: no seek reaches any leaf */
    lume_salvage_result r = salvage(path, &rows_t, NULL);
    assert_true(r.damage);
    assert_int_equal(r.copied, 20000);  /* every leaf read from the pages */
    assert_int_equal(r.lost, 0);
}

static void test_salvage_text_keys(void **state)
{
    fx *f = *state;
    const char *path = P(f, "kv.db");
    make_kv(path, 4000);
    int inner[64], leaves[512];
    assert_true(pages_of(path, "kv", "internal", inner, 64) >= 1);
    int n = pages_of(path, "kv", "leaf", leaves, 512);
    assert_true(n > 10);
    smash(path, inner[0]);
    smash(path, leaves[n / 2]);
    sqlite3 *dst;
    lume_salvage_result r = salvage(path, &kv_t, &dst);
    assert_true(r.damage);
    assert_false(r.exact);
    /* one leaf and the root's own entries are gone, the rest is back */
    assert_true(r.copied > 3800 && r.copied < 4000);
    assert_int_equal(one(dst, "SELECT count(*) FROM kv WHERE val LIKE printf('value %06d %%',"
                              " CAST(substr(key, 2) AS INTEGER))"), r.copied);
    sqlite3_close(dst);
}

static void test_salvage_truncated(void **state)
{
    fx *f = *state;
    const char *path = P(f, "kv.db");
    make_kv(path, 4000);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    lume_salvage_result r = salvage(path, &kv_t, NULL);
    assert_true(r.damage);
    assert_true(r.copied > 1000);      /* what the first half holds */
    assert_true(r.copied < 4000);
}

/* Rows deleted before the damage stay deleted: free pages are not read. */
static void test_salvage_no_resurrection(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    make_rows(path, 8000);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "PRAGMA secure_delete=OFF; DELETE FROM outbox WHERE id BETWEEN 2001 AND 6000;"
             "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_true(one(db, "PRAGMA freelist_count") > 10);
    sqlite3_close(db);
    int inner[64];
    assert_true(pages_of(path, "outbox", "internal", inner, 64) >= 1);
    smash(path, inner[0]);
    sqlite3 *dst;
    lume_salvage_result r = salvage(path, &rows_t, &dst);
    assert_int_equal(one(dst, "SELECT count(*) FROM outbox WHERE id BETWEEN 2001 AND 6000"), 0);
    assert_int_equal(r.copied, 4000);
    sqlite3_close(dst);
}

/* ---- a database file ------------------------------------------------------ */

static void test_open_damaged(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    make_rows(path, 3000);
    int leaves[256];
    int n = pages_of(path, "outbox", "leaf", leaves, 256);
    smash(path, leaves[n / 2]);
    char *err = NULL;
    lume_store_db *d = lume_store_db_open(path, &rows_t, &err);
    assert_non_null(d);
    lume_store_db_info i;
    lume_store_db_info_get(d, &i);
    assert_int_equal(i.corruptions, 1);
    assert_true(i.lost > 0 && i.lost_exact);
    assert_int_equal(i.salvaged + i.lost, 3000);
    assert_string_equal(i.mode, "file");
    assert_true(i.writable);
    assert_non_null(strstr(i.last_event, "moved aside to"));
    assert_int_equal(one(lume_store_db_handle(d), "SELECT count(*) FROM outbox"), i.salvaged);
    assert_int_equal(one(lume_store_db_handle(d), "SELECT quick_check = 'ok' FROM pragma_quick_check"), 1);
    lume_store_db_close(d);
    /* the damaged file is kept aside, with the stamp */
    assert_int_equal(tu_run(f->dir, NULL, (const char *const[]){"sh", "-c",
                                "ls rows.db.corrupt-2*Z >/dev/null", NULL}), 0);
    assert_int_equal(count_in(path, "outbox"), i.salvaged);
}

static void test_open_empty_and_not_a_database(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    assert_int_equal(tu_write_text(path, ""), 0);
    lume_store_db *d = lume_store_db_open(path, &rows_t, NULL);
    assert_non_null(d);
    lume_store_db_info i;
    lume_store_db_info_get(d, &i);
    assert_int_equal(i.corruptions, 1);
    assert_false(i.lost_exact);
    assert_non_null(strstr(i.last_event, "empty (0 bytes)"));
    lume_store_db_close(d);

    char zeros[8192] = {0};
    assert_int_equal(tu_write_file(path, zeros, sizeof zeros), 0);
    d = lume_store_db_open(path, &rows_t, NULL);
    assert_non_null(d);
    lume_store_db_info_get(d, &i);
    assert_int_equal(i.corruptions, 1);
    assert_int_equal(i.salvaged, 0);
    assert_non_null(strstr(i.last_event, "not a database"));
    exec(lume_store_db_handle(d), "INSERT INTO outbox(lane,qos,created_ms,topic) VALUES(1,1,1,'t')");
    lume_store_db_close(d);
    assert_int_equal(count_in(path, "outbox"), 1);
}

/* rm of the file (and its WAL) under the open connection, then a file put
 * in its place: both come back from the connection, nothing lost. */
static void test_put_back(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    lume_store_db *d = lume_store_db_open(path, &rows_t, NULL);
    assert_non_null(d);
    sqlite3 *db = lume_store_db_handle(d);
    exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<500)"
             " INSERT INTO outbox(id,lane,qos,created_ms,topic) SELECT x,1,1,x,'t' FROM c");
    assert_false(lume_store_db_due(d));
    unlink(path);
    unlink(P(f, "rows.db-wal"));
    unlink(P(f, "rows.db-shm"));
    /* written after the unlink: only the open connection has it */
    exec(db, "INSERT INTO outbox(id,lane,qos,created_ms,topic) VALUES(501,1,1,1,'late')");
    assert_true(lume_store_db_due(d));
    assert_int_equal(lume_store_db_repair(d), 1);
    assert_false(lume_store_db_due(d));
    lume_store_db_info i;
    lume_store_db_info_get(d, &i);
    assert_int_equal(i.recoveries, 1);
    assert_int_equal(count_in(path, "outbox"), 501);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* replaced by another file: that one goes aside */
    make_rows(P(f, "other.db"), 10);
    assert_int_equal(rename(P(f, "other.db"), path), 0);
    db = lume_store_db_handle(d);
    exec(db, "INSERT INTO outbox(id,lane,qos,created_ms,topic) VALUES(502,1,1,1,'later')");
    assert_true(lume_store_db_due(d));
    assert_int_equal(lume_store_db_repair(d), 1);
    assert_int_equal(count_in(path, "outbox"), 502);
    assert_int_equal(tu_run(f->dir, NULL, (const char *const[]){"sh", "-c",
                                "ls rows.db.replaced-2*Z >/dev/null", NULL}), 0);
    lume_store_db_close(d);
    assert_int_equal(count_in(path, "outbox"), 502);
}

/* A file that cannot be written (immutable): its rows go to a spill, which
 * is put back once the file can be replaced; the file itself is untouched. */
static void test_spill(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    make_rows(path, 100);
    if (tu_run(f->dir, NULL, (const char *const[]){"chattr", "+i", "rows.db", NULL}) != 0) {
        print_message("(chattr +i not available here: spill not tested)\n");
        return;
    }
    lume_store_db *d = lume_store_db_open(path, &rows_t, NULL);
    assert_non_null(d);
    lume_store_db_info i;
    lume_store_db_info_get(d, &i);
    assert_string_equal(i.mode, "spill");
    assert_false(i.writable);
    assert_non_null(strstr(i.file, "rows.db.spill"));
    exec(lume_store_db_handle(d), "DELETE FROM outbox WHERE id <= 10;"
                                  "INSERT INTO outbox(id,lane,qos,created_ms,topic)"
                                  " VALUES(101,1,1,1,'new')");
    lume_store_db_close(d);
    assert_int_equal(count_in(path, "outbox"), 100);          /* untouched */
    assert_int_equal(count_in(P(f, "rows.db.spill"), "outbox"), 91);
    /* still immutable: the next open runs on the spill */
    d = lume_store_db_open(path, &rows_t, NULL);
    lume_store_db_info_get(d, &i);
    assert_string_equal(i.mode, "spill");
    lume_store_db_close(d);
    assert_int_equal(tu_run(f->dir, NULL, (const char *const[]){"chattr", "-i", "rows.db", NULL}),
                     0);
    d = lume_store_db_open(path, &rows_t, NULL);
    lume_store_db_info_get(d, &i);
    assert_string_equal(i.mode, "file");
    assert_int_equal(one(lume_store_db_handle(d), "SELECT count(*) FROM outbox"), 91);
    lume_store_db_close(d);
    assert_int_equal(access(P(f, "rows.db.spill"), F_OK), -1);
}

/* Writes start failing while running (the file and its WAL made
 * immutable): a probe write confirms it, the rows go to the spill, and the
 * close puts them back once the file can be written again. */
static void test_spill_while_running(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    lume_store_db *d = lume_store_db_open(path, &rows_t, NULL);
    assert_non_null(d);
    exec(lume_store_db_handle(d), "INSERT INTO outbox(id,lane,qos,created_ms,topic)"
                                  " VALUES(1,1,1,1,'a')");
    if (tu_run(f->dir, NULL, (const char *const[]){"chattr", "+i", "rows.db", "rows.db-wal",
                                                   NULL}) != 0) {
        print_message("(chattr +i not available here: not tested)\n");
        lume_store_db_close(d);
        return;
    }
    sqlite3 *db = lume_store_db_handle(d);
    int rc = sqlite3_exec(db, "INSERT INTO outbox(id,lane,qos,created_ms,topic)"
                              " VALUES(2,1,1,1,'b')", NULL, NULL, NULL);
    assert_int_not_equal(rc, SQLITE_OK);
    lume_store_db_note(d, sqlite3_extended_errcode(db), sqlite3_errmsg(db));
    lume_store_db_info i;
    lume_store_db_info_get(d, &i);
    assert_false(i.writable);
    assert_true(lume_store_db_due(d));
    assert_int_equal(lume_store_db_repair(d), 1);
    lume_store_db_info_get(d, &i);
    assert_string_equal(i.mode, "spill");
    assert_non_null(strstr(i.last_event, "stopped taking writes"));
    exec(lume_store_db_handle(d), "INSERT INTO outbox(id,lane,qos,created_ms,topic)"
                                  " VALUES(2,1,1,1,'b')");
    assert_int_equal(tu_run(f->dir, NULL, (const char *const[]){"chattr", "-i", "rows.db",
                                                                "rows.db-wal", NULL}), 0);
    lume_store_db_close(d);
    assert_int_equal(count_in(path, "outbox"), 2);
    assert_int_equal(access(P(f, "rows.db.spill"), F_OK), -1);
}

/* Another process holds the file at open (an sqlite3 shell with an
 * exclusive lock): lume runs in memory, and never writes that memory over
 * the file it could not read. */
static void test_locked_at_open(void **state)
{
    fx *f = *state;
    const char *path = P(f, "rows.db");
    make_rows(path, 100);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    exec(other, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;"
                "INSERT INTO outbox(id,lane,qos,created_ms,topic) VALUES(1000,1,1,1,'x')");
    lume_store_db *d = lume_store_db_open(path, &rows_t, NULL);
    assert_non_null(d);
    lume_store_db_info i;
    lume_store_db_info_get(d, &i);
    assert_string_equal(i.mode, "memory");
    assert_non_null(strstr(i.last_error, "locked by another process"));
    exec(lume_store_db_handle(d), "INSERT INTO outbox(id,lane,qos,created_ms,topic)"
                                  " VALUES(1,1,1,1,'mem')");
    lume_store_db_close(d);
    exec(other, "COMMIT");
    sqlite3_close(other);
    assert_int_equal(count_in(path, "outbox"), 101);   /* its own rows, untouched */
}

/* ---- the outbox and the state store over it ----------------------------- */

static lume_outbox *ob_open(const char *path)
{
    char *err = NULL;
    lume_outbox *ob = lume_outbox_open(path, NULL, &err);
    if (!ob)
        fprintf(stderr, "open: %s\n", err ? err : "?");
    free(err);
    return ob;
}

static void test_outbox_unlinked(void **state)
{
    fx *f = *state;
    const char *path = P(f, "outbox.db");
    lume_outbox *ob = ob_open(path);
    assert_non_null(ob);
    uint64_t ids[20];
    for (int i = 0; i < 20; i++)
        assert_int_equal(lume_outbox_append(ob, LUME_LANE_TELEMETRY, "t", "x", 1, 1, 0, &ids[i]),
                         0);
    assert_int_equal(lume_outbox_commit(ob), 0);
    assert_int_equal(lume_outbox_mark_inflight(ob, ids[0], 7), 0);
    assert_int_equal(lume_outbox_ack(ob, ids[1]), 0);
    assert_int_equal(lume_outbox_commit(ob), 0);
    unlink(path);
    unlink(P(f, "outbox.db-wal"));
    unlink(P(f, "outbox.db-shm"));
    /* committed into the unlinked file, and one still pending */
    assert_int_equal(lume_outbox_append(ob, LUME_LANE_ALARM, "a", "y", 1, 1, 0, NULL), 0);
    assert_int_equal(lume_outbox_commit(ob), 0);
    assert_int_equal(lume_outbox_append(ob, LUME_LANE_BULK, "b", "z", 1, 1, 0, NULL), 0);
    assert_int_equal(lume_outbox_check(ob), 1);
    assert_int_equal(lume_outbox_check(ob), 0);
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 19);
    assert_int_equal(st.inflight, 1);
    lume_outbox_close(ob);

    ob = ob_open(path);
    assert_non_null(ob);
    lume_outbox_get_stats(ob, &st);
    assert_int_equal(st.depth[LUME_LANE_TELEMETRY], 19);
    assert_int_equal(st.depth[LUME_LANE_ALARM], 1);
    assert_int_equal(st.depth[LUME_LANE_BULK], 1);
    lume_outbox_msg m[4];
    int n = lume_outbox_peek(ob, m, 4);
    assert_int_equal(n, 4);
    assert_int_equal(m[0].lane, LUME_LANE_ALARM);
    assert_int_equal(m[1].id, ids[0]);            /* sent before: keeps its packet id */
    assert_int_equal(m[1].packet_id, 7);
    for (int i = 0; i < n; i++)
        lume_outbox_msg_clear(&m[i]);
    lume_outbox_close(ob);
}

/* The file deleted again and again while the committer thread writes
 * batches of its own (commit_start, no barrier): every check stops it, the
 * file is put back, it goes on; nothing is lost, nothing doubled, and the
 * lane counts of the file agree with its rows. (Run under TSan too.) */
static void test_outbox_unlinked_while_committing(void **state)
{
    fx *f = *state;
    const char *path = P(f, "outbox.db");
    lume_outbox *ob = ob_open(path);
    assert_non_null(ob);
    int back = 0;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 250; i++)
            assert_int_equal(lume_outbox_append(ob, i % 3, "lume/t/x", "payload", 7, 1, 0,
                                                NULL), 0);
        lume_outbox_commit_start(ob);   /* the committer writes; the loop goes on */
        if (round % 4 == 1) {
            unlink(path);
            unlink(P(f, "outbox.db-wal"));
            unlink(P(f, "outbox.db-shm"));
        }
        int r = lume_outbox_check(ob);
        assert_true(r >= 0);
        back += r == 1;
        lume_outbox_poll(ob);
    }
    assert_int_equal(back, 10);
    assert_int_equal(lume_outbox_commit(ob), 0);
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    assert_int_equal(st.depth[0] + st.depth[1] + st.depth[2], 40 * 250);
    lume_outbox_close(ob);
    assert_int_equal(count_in(path, "outbox WHERE lane < 255"), 40 * 250);   /* messages */
    sqlite3 *chk;
    assert_int_equal(sqlite3_open(path, &chk), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(chk, "SELECT sum(depth) FROM outbox_lanes", -1, &q,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 40 * 250);
    sqlite3_finalize(q);
    sqlite3_close(chk);
}

/* Damage found by a statement while running: salvaged, counters follow. */
static void test_outbox_damage_while_running(void **state)
{
    fx *f = *state;
    const char *path = P(f, "outbox.db");
    lume_outbox *ob = ob_open(path);
    assert_non_null(ob);
    char payload[200];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(lume_outbox_append(ob, LUME_LANE_BULK, "lume/t/bulk", payload,
                                            sizeof payload, 1, 0, NULL), 0);
    assert_int_equal(lume_outbox_commit(ob), 0);
    /* another connection checkpoints, the file is damaged, and a write
     * there makes our connection read the file again */
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    exec(other, "PRAGMA wal_checkpoint(TRUNCATE)");
    int leaves[512];
    int n = pages_of(path, "outbox", "leaf", leaves, 512);
    assert_true(n > 20);
    smash(path, leaves[n / 2]);
    exec(other, "PRAGMA user_version=1");
    sqlite3_close(other);

    lume_outbox_msg m[64];
    int got, total = 0, rounds = 0;
    while ((got = lume_outbox_peek(ob, m, 64)) > 0 && rounds++ < 200) {
        for (int i = 0; i < got; i++) {
            lume_outbox_ack(ob, m[i].id);
            lume_outbox_msg_clear(&m[i]);
        }
        total += got;
        lume_outbox_commit(ob);
    }
    assert_int_equal(got, -EIO);      /* the damaged page */
    assert_true(total > 0 && total < 3000);
    assert_int_equal(lume_outbox_check(ob), 2);
    lume_store_db_info i;
    lume_store_db_info_get(lume_outbox_store(ob), &i);
    assert_int_equal(i.corruptions, 1);
    assert_true(i.lost > 0 && i.lost_exact);
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    /* the salvaged rows are the messages and the row of their topic (id 1,
     * on the first page, not the damaged one) */
    assert_int_equal(st.depth[LUME_LANE_BULK] + 1, (uint64_t)i.salvaged);
    assert_int_equal((int64_t)total + i.salvaged - 1 + i.lost, 3000);
    /* the file's own lane counts (outbox_lanes, what the next open reads)
     * were recounted from the salvaged rows: some acked, then reopened */
    int rest = 0;
    got = lume_outbox_peek(ob, m, 64);
    assert_int_equal(got, 64);
    for (int k = 0; k < got; k++) {
        assert_int_equal(lume_outbox_mark_inflight(ob, m[k].id, (uint16_t)(k + 1)), 0);
        if (k < 50)
            lume_outbox_ack(ob, m[k].id);
        lume_outbox_msg_clear(&m[k]);
    }
    rest += 50;
    lume_outbox_close(ob);
    ob = ob_open(path);
    assert_non_null(ob);
    lume_outbox_get_stats(ob, &st);
    assert_int_equal(st.depth[LUME_LANE_BULK], (uint64_t)i.salvaged - 1 - 50);
    assert_int_equal(st.depth[LUME_LANE_ALARM] + st.depth[LUME_LANE_TELEMETRY], 0);
    sqlite3 *chk;
    assert_int_equal(sqlite3_open(path, &chk), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(chk, "SELECT (SELECT depth FROM outbox_lanes WHERE "
                                        "lane=2) = (SELECT count(*) FROM outbox WHERE lane=2), (SELECT sent "
                                        "FROM outbox_lanes WHERE lane=2)", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 1);
    assert_int_equal(sqlite3_column_int(q, 1), 14);   /* sent, not acked */
    sqlite3_finalize(q);
    sqlite3_close(chk);
    /* the rest drains */
    while ((got = lume_outbox_peek(ob, m, 64)) > 0) {
        for (int k = 0; k < got; k++) {
            lume_outbox_ack(ob, m[k].id);
            lume_outbox_msg_clear(&m[k]);
        }
        rest += got;
        lume_outbox_commit(ob);
    }
    assert_int_equal(got, 0);
    assert_int_equal(rest + 1, i.salvaged);   /* and the topic row */
    lume_outbox_close(ob);
}

static void test_kv_damaged(void **state)
{
    fx *f = *state;
    const char *path = P(f, "state.db");
    lume_kv *kv = lume_kv_open(path, NULL);
    assert_non_null(kv);
    char key[32], val[200];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "k%05d", i);
        assert_int_equal(lume_kv_set(kv, "script:a", key, val, sizeof val, 1), 0);
    }
    lume_kv_close(kv);
    int leaves[512];
    int n = pages_of(path, "kv", "leaf", leaves, 512);
    assert_true(n > 20);
    smash(path, leaves[n / 2]);
    kv = lume_kv_open(path, NULL);
    assert_non_null(kv);
    lume_store_db_info i;
    lume_store_db_info_get(lume_kv_store(kv), &i);
    assert_int_equal(i.corruptions, 1);
    assert_true(i.salvaged > 1900 && i.salvaged < 2000);
    int found = 0;
    for (int k = 0; k < 2000; k++) {
        void *v = NULL;
        snprintf(key, sizeof key, "k%05d", k);
        if (lume_kv_get(kv, "script:a", key, &v, NULL, NULL) == 0)
            found++;
        free(v);
    }
    assert_int_equal(found, i.salvaged);
    assert_int_equal(lume_kv_set(kv, "script:a", "after", "1", 1, 1), 0);
    lume_kv_close(kv);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_lock),
        T(test_modes),
        T(test_dir_remade),
        T(test_salvage_leaf),
        T(test_salvage_interior),
        T(test_salvage_text_keys),
        T(test_salvage_truncated),
        T(test_salvage_no_resurrection),
        T(test_open_damaged),
        T(test_open_empty_and_not_a_database),
        T(test_put_back),
        T(test_spill),
        T(test_spill_while_running),
        T(test_locked_at_open),
        T(test_outbox_unlinked),
        T(test_outbox_unlinked_while_committing),
        T(test_outbox_damage_while_running),
        T(test_kv_damaged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
