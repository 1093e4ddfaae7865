/* core/outbox.c — the durable outbox (see outbox.h, docs/outbox.md).
 *
 * Where a message is
 * ------------------
 *
 *   append ──► PENDING (batch in memory) ──commit──► COMMITTED ──peek──► handed out
 *                 │ cap drop                          │   ▲                 │ mark_inflight
 *                 ▼                                   │   └──requeue──── IN FLIGHT
 *               gone                       ack / cap drop / expiry          │ ack
 *                                                     ▼                     ▼
 *                                              PENDING DELETE ──commit──► gone
 *
 * State kept in memory (everything else lives in the table):
 *   - the pending batch: an array of `pend` records whose topic and payload
 *     bytes sit in one growable arena (one copy per message, no malloc);
 *   - `meta`: a hash keyed by id for committed rows we know something about:
 *     in flight (F_INFLIGHT), with a packet id/attempts change not yet
 *     written (F_DIRTY), or merely seen by peek (a cache so that
 *     mark_inflight needs no SELECT);
 *   - `pdel`: a hash set of committed ids deleted in memory (acked, expired,
 *     dropped) whose DELETE waits for the next commit;
 *   - per-lane counters: depth/bytes (committed + pending - pending
 *     deletes), in-flight count/bytes, live pending count.
 *
 * Invariants:
 *   1. ids grow in append order; every pending id is above every committed id.
 *   2. A row whose id is in pdel is never returned, marked, acked or dropped.
 *   3. cur_peek[l]: every committed row of lane l with an id at or below the
 *      cursor is in flight or in pdel. A row leaves "in flight" only by ack
 *      (into pdel) or requeue (which resets the cursors), so this holds until
 *      then. peek advances its cursor only over a contiguous run of such rows
 *      (peek is repeatable: what it returned but was not marked is returned
 *      again).
 *   3b. cur_evict[l]: the same, except for the rows in the eviction
 *      candidate queue evq[l] (fetched EVICT_CHUNK at a time, oldest first,
 *      re-checked against meta/pdel when used). The queue is emptied by
 *      commit (its ids may then be gone from the table) and by requeue.
 *   4. depth[l] - inflight_n[l] is what the cap policy may drop in lane l.
 *   5. A failed commit changes nothing in memory: the transaction is rolled
 *      back and the whole batch (inserts, updates, deletes) is retried.
 *   6. The file is core/store.c's: the writer's connection is the store's
 *      (lume_store_db_handle), every commit result is noted with it, and
 *      lume_outbox_check replaces it between calls (statements finalized
 *      before, prepared after; the checkpointer stopped and restarted). A
 *      file put back holds the same rows, so memory stays true; after a
 *      salvage, reconcile() rebuilds counters, in-flight marks and cursors
 *      from what survived (invariants 1-4 hold again: cursors at 0, no
 *      pending deletes once the batch is written).
 */
#include "outbox.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "store.h"

#define COMP "outbox"
#define LOG_EVERY_NS (10 * LUME_NS_PER_SEC)
#define BUSY_TIMEOUT_MS 250
#define MAX_TOPIC 65535
#define SCHEMA_VERSION 1

/* ---- a small open-addressing hash keyed by message id ------------------ */

enum { F_INFLIGHT = 1, F_DIRTY = 2 };

typedef struct ent {
    uint64_t id;        /* 0 = empty slot (ids start at 1) */
    uint32_t attempts;
    uint32_t bytes;
    uint16_t packet_id;
    uint8_t  lane;
    uint8_t  flags;
} ent;

typedef struct idmap {
    ent   *slot;
    size_t cap;         /* power of two, or 0 */
    size_t n;
} idmap;

static size_t idmap_hash(uint64_t id, size_t cap)
{
    id *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(id >> 32) & (cap - 1);
}

static ent *idmap_get(const idmap *m, uint64_t id)
{
    if (!m->n)
        return NULL;
    for (size_t i = idmap_hash(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].id == id)
            return &m->slot[i];
        if (!m->slot[i].id)
            return NULL;
    }
}

static int idmap_grow(idmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    ent *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slot[i].id)
            continue;
        size_t j = idmap_hash(m->slot[i].id, ncap);
        while (ns[j].id)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = ns;
    m->cap = ncap;
    return 0;
}

/* The entry for id, created zeroed (but for id) when absent; NULL when out
 * of memory. */
static ent *idmap_put(idmap *m, uint64_t id)
{
    ent *e = idmap_get(m, id);
    if (e)
        return e;
    if ((m->n + 1) * 2 > m->cap && idmap_grow(m) < 0)
        return NULL;
    size_t i = idmap_hash(id, m->cap);
    while (m->slot[i].id)
        i = (i + 1) & (m->cap - 1);
    memset(&m->slot[i], 0, sizeof m->slot[i]);
    m->slot[i].id = id;
    m->n++;
    return &m->slot[i];
}

/* Remove e (a pointer from idmap_get/put) with backward-shift deletion, so
 * no tombstones are needed. */
static void idmap_del(idmap *m, ent *e)
{
    size_t i = (size_t)(e - m->slot), mask = m->cap - 1;
    for (size_t j = (i + 1) & mask; m->slot[j].id; j = (j + 1) & mask) {
        size_t h = idmap_hash(m->slot[j].id, m->cap);
        /* slot j may move to the hole at i when its home h is not in (i, j] */
        if (((j - h) & mask) >= ((j - i) & mask)) {
            m->slot[i] = m->slot[j];
            i = j;
        }
    }
    m->slot[i].id = 0;
    m->n--;
}

static void idmap_free(idmap *m)
{
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- the handle -------------------------------------------------------- */

typedef struct pend {
    uint64_t id;
    int64_t  created_ms, expires_ms;
    size_t   off;           /* topic (NUL-terminated) then payload, in arena */
    uint32_t topic_len, len;
    uint8_t  lane, qos, dropped;
} pend;

#define EVICT_CHUNK 256

typedef struct cand {
    uint64_t id;
    uint64_t bytes;
} cand;

typedef struct candq {
    cand   c[EVICT_CHUNK];
    size_t n, i;            /* filled, next to use */
} candq;

typedef struct ratelog {
    int64_t last_ns;
    bool    ever;
} ratelog;

enum {
    S_BEGIN, S_COMMIT, S_ROLLBACK, S_INSERT, S_UPDATE, S_DELETE, S_PEEK,
    S_EVICT, S_LOOKUP, S_DUMP, S_STATS, S_COUNT
};

struct lume_outbox {
    sqlite3          *db;             /* lume_store_db_handle(sd), or the reader's own */
    lume_store_db    *sd;             /* the file and its defences (NULL read-only) */
    sqlite3_stmt     *st[S_COUNT];
    char             *path;           /* the file in use (its spill while it has one) */
    bool              readonly;
    lume_outbox_opts  opts;

    uint64_t next_id;
    pend    *pend;
    size_t   npend, cappend;
    char    *arena;
    size_t   arena_len, arena_cap;
    size_t   pend_head[LUME_LANES];   /* first pend index that may be live */
    uint64_t pend_live[LUME_LANES];
    int64_t  pending_since_ns;        /* 0 = nothing pending */

    idmap    meta, pdel;
    uint64_t cur_peek[LUME_LANES], cur_evict[LUME_LANES];
    candq    evq[LUME_LANES];

    uint64_t depth[LUME_LANES], bytes[LUME_LANES];
    uint64_t inflight_n[LUME_LANES], inflight_b[LUME_LANES];
    lume_outbox_stats st_ctr;         /* appended/acked/expired/... counters */

    ratelog  log_drop[LUME_LANES], log_refuse[LUME_LANES], log_commit;
    uint64_t failed_in_row;

    /* Checkpoints run on a thread of their own, with its own connection:
     * a WAL checkpoint writes the database file and fsyncs it, which took
     * the loop thread up to ~10 ms per commit when SQLite ran it inline
     * (wal_autocheckpoint). The loop's connection never checkpoints. */
    pthread_t        ckpt_thread;
    pthread_mutex_t  ckpt_mu;
    pthread_cond_t   ckpt_cv;
    bool             ckpt_running, ckpt_quit, ckpt_due;
};

#define CKPT_PAGES 1000      /* wake the checkpointer when the WAL has this many */
#define CKPT_PERIOD_MS 1000  /* and at least this often */

static void *checkpointer(void *arg)
{
    lume_outbox *ob = arg;
    sqlite3 *db = NULL;
    pthread_setname_np(pthread_self(), "lume-ckpt");
    if (sqlite3_open_v2(ob->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        lume_log(LUME_LOG_WARN, "outbox", "%s: checkpointer cannot open: %s", ob->path,
                 db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 100);
    pthread_mutex_lock(&ob->ckpt_mu);
    while (!ob->ckpt_quit) {
        if (!ob->ckpt_due) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += CKPT_PERIOD_MS / 1000;
            pthread_cond_timedwait(&ob->ckpt_cv, &ob->ckpt_mu, &ts);
        }
        ob->ckpt_due = false;
        if (ob->ckpt_quit)
            break;
        pthread_mutex_unlock(&ob->ckpt_mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            lume_log(LUME_LOG_WARN, "outbox", "%s: checkpoint: %s", ob->path,
                     sqlite3_errmsg(db));
        pthread_mutex_lock(&ob->ckpt_mu);
    }
    pthread_mutex_unlock(&ob->ckpt_mu);
    sqlite3_close(db);
    return NULL;
}

/* sqlite3_wal_hook: after each commit on the loop's connection. */
static int wal_grew(void *ud, sqlite3 *db, const char *name, int pages)
{
    (void)db, (void)name;
    lume_outbox *ob = ud;
    if (pages >= CKPT_PAGES && ob->ckpt_running) {
        pthread_mutex_lock(&ob->ckpt_mu);
        ob->ckpt_due = true;
        pthread_cond_signal(&ob->ckpt_cv);
        pthread_mutex_unlock(&ob->ckpt_mu);
    }
    return SQLITE_OK;
}

static void start_checkpointer(lume_outbox *ob)
{
    pthread_mutex_init(&ob->ckpt_mu, NULL);
    pthread_cond_init(&ob->ckpt_cv, NULL);
    if (pthread_create(&ob->ckpt_thread, NULL, checkpointer, ob) != 0) {
        /* fall back to SQLite's own checkpoints on the loop thread */
        sqlite3_exec(ob->db, "PRAGMA wal_autocheckpoint=1000", NULL, NULL, NULL);
        return;
    }
    ob->ckpt_running = true;
    sqlite3_wal_hook(ob->db, wal_grew, ob);
}

static void stop_checkpointer(lume_outbox *ob)
{
    if (!ob->ckpt_running)
        return;
    pthread_mutex_lock(&ob->ckpt_mu);
    ob->ckpt_quit = true;
    pthread_cond_signal(&ob->ckpt_cv);
    pthread_mutex_unlock(&ob->ckpt_mu);
    pthread_join(ob->ckpt_thread, NULL);
    ob->ckpt_running = false;
    sqlite3_wal_hook(ob->db, NULL, NULL);
    pthread_mutex_destroy(&ob->ckpt_mu);
    pthread_cond_destroy(&ob->ckpt_cv);
}

static const char *const lane_names[LUME_LANES] = {"alarm", "telemetry", "bulk"};

int lume_lane_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < LUME_LANES; i++)
        if (!strcmp(name, lane_names[i]))
            return i;
    return -1;
}

const char *lume_lane_name(int lane)
{
    return lane >= 0 && lane < LUME_LANES ? lane_names[lane] : "?";
}

void lume_outbox_opts_default(lume_outbox_opts *o)
{
    o->commit_interval_ms = 50;
    o->commit_batch = 1000;
    o->max_messages = 1000000;
    o->max_bytes = 64LL * 1024 * 1024;
    o->synchronous_full = false;
}

/* Out-of-range values fall back to their defaults. */
static void opts_normalise(lume_outbox_opts *dst, const lume_outbox_opts *src)
{
    lume_outbox_opts d;
    lume_outbox_opts_default(&d);
    if (!src) {
        *dst = d;
        return;
    }
    *dst = *src;
    if (dst->commit_interval_ms <= 0)
        dst->commit_interval_ms = d.commit_interval_ms;
    if (dst->commit_batch <= 0)
        dst->commit_batch = d.commit_batch;
    if (dst->max_messages < 0)
        dst->max_messages = d.max_messages;
    if (dst->max_bytes < 0)
        dst->max_bytes = d.max_bytes;
}

void lume_outbox_msg_clear(lume_outbox_msg *m)
{
    if (!m)
        return;
    free(m->topic);
    free(m->payload);
    m->topic = NULL;
    m->payload = NULL;
    m->len = 0;
}

/* True when a rate-limited line should be written now: the first time, then
 * at most once per LOG_EVERY_NS. */
static bool ratelog_due(ratelog *r)
{
    int64_t now = lume_mono_ns();
    if (r->ever && now - r->last_ns < LOG_EVERY_NS)
        return false;
    r->ever = true;
    r->last_ns = now;
    return true;
}

static void mark_pending(lume_outbox *ob)
{
    if (!ob->pending_since_ns)
        ob->pending_since_ns = lume_mono_ns();
}

/* ---- open / close ------------------------------------------------------ */

static const char *const sql_text[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT] = "INSERT INTO outbox(id,lane,qos,created_ms,expires_ms,packet_id,"
                 "attempts,topic,payload) VALUES(?1,?2,?3,?4,?5,0,0,?6,?7)",
    [S_UPDATE] = "UPDATE outbox SET packet_id=?2, attempts=?3 WHERE id=?1",
    [S_DELETE] = "DELETE FROM outbox WHERE id=?1",
    [S_PEEK] = "SELECT id,qos,created_ms,expires_ms,packet_id,attempts,topic,payload"
               " FROM outbox WHERE lane=?1 AND id>?2 ORDER BY id",
    [S_EVICT] = "SELECT id, length(CAST(topic AS BLOB)) + ifnull(length(payload),0)"
                " FROM outbox WHERE lane=?1 AND id>?2 ORDER BY id",
    [S_LOOKUP] = "SELECT lane,packet_id,attempts,"
                 "length(CAST(topic AS BLOB)) + ifnull(length(payload),0)"
                 " FROM outbox WHERE id=?1",
    [S_DUMP] = "SELECT id,lane,qos,created_ms,expires_ms,packet_id,attempts,topic,payload"
               " FROM outbox ORDER BY lane, id",
    [S_STATS] = "SELECT lane, count(*),"
                " ifnull(sum(length(CAST(topic AS BLOB)) + ifnull(length(payload),0)),0),"
                " ifnull(sum(packet_id != 0),0) FROM outbox GROUP BY lane",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS outbox("
    " id INTEGER PRIMARY KEY,"
    " lane INTEGER NOT NULL,"
    " qos INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL DEFAULT 0,"
    " packet_id INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " topic TEXT NOT NULL,"
    " payload BLOB);"
    "CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox(lane, id);";

/* Run a one-row query and keep its first column. */
static int exec_first(sqlite3 *db, const char *sql, int64_t *num, char *text, size_t cap)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (num)
            *num = sqlite3_column_int64(s, 0);
        if (text) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(text, cap, "%s", t ? (const char *)t : "");
        }
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

static int exec_int(sqlite3 *db, const char *sql, int64_t *out)
{
    return exec_first(db, sql, out, NULL, 0);
}

static int exec_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    return exec_first(db, sql, NULL, out, cap);
}

/* Let go of the connection: no checkpointer, no statements. */
static void detach(lume_outbox *ob)
{
    stop_checkpointer(ob);
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(ob->st[i]);
        ob->st[i] = NULL;
    }
}

static void free_handle(lume_outbox *ob)
{
    detach(ob);
    if (ob->sd)
        lume_store_db_close(ob->sd);   /* puts a deleted or spilled file back first */
    else
        sqlite3_close(ob->db);
    idmap_free(&ob->meta);
    idmap_free(&ob->pdel);
    free(ob->pend);
    free(ob->arena);
    free(ob->path);
    free(ob);
}

/* Per-lane depth and bytes from the table (also the read-only stats). */
static int load_counts(lume_outbox *ob, uint64_t *depth, uint64_t *bytes,
                       uint64_t *sent)
{
    sqlite3_stmt *s = ob->st[S_STATS];
    int rc;
    for (int l = 0; l < LUME_LANES; l++)
        depth[l] = bytes[l] = sent[l] = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int l = sqlite3_column_int(s, 0);
        if (l < 0 || l >= LUME_LANES)
            continue;
        depth[l] = (uint64_t)sqlite3_column_int64(s, 1);
        bytes[l] = (uint64_t)sqlite3_column_int64(s, 2);
        sent[l] = (uint64_t)sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* The table, for salvage and fresh files (core/store.c). The index names
 * every row, so rows lost with a damaged table page are counted exactly. */
static const lume_store_table outbox_table = {
    .file = "outbox",
    .table = "outbox",
    .schema = schema_sql,
    .cols = "id,lane,qos,created_ms,expires_ms,packet_id,attempts,topic,payload",
    .ncols = 9,
    .nkey = 1,
    .key1 = "id",
    .hints_asc = "SELECT id FROM outbox INDEXED BY outbox_lane_id",
    .hints_desc = "SELECT id FROM outbox INDEXED BY outbox_lane_id ORDER BY lane DESC, id DESC",
};

/* ob->path follows the file in use (the checkpointer opens it by name). */
static int follow_file(lume_outbox *ob)
{
    const char *f = lume_store_db_file(ob->sd);
    if (!*f || !strcmp(f, ob->path))
        return 0;
    char *p = strdup(f);
    if (!p)
        return -ENOMEM;
    free(ob->path);
    ob->path = p;
    return 0;
}

/* Set up the writer's connection (ob->db): pragmas, schema version,
 * statements, the checkpointer. 0, or -1 with *what (SQLite's message). */
static int attach(lume_outbox *ob, int64_t ver, const char **what)
{
    bool mem = lume_store_db_in_memory(ob->sd);
    char mode[16] = "memory";
    if ((!mem && exec_text(ob->db, "PRAGMA journal_mode=WAL", mode, sizeof mode) != SQLITE_OK) ||
        sqlite3_exec(ob->db, ob->opts.synchronous_full ? "PRAGMA synchronous=FULL"
                                                      : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(ob->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        (ver < SCHEMA_VERSION &&
         sqlite3_exec(ob->db, "PRAGMA user_version=1", NULL, NULL, NULL) != SQLITE_OK)) {
        *what = sqlite3_errmsg(ob->db);
        return -1;
    }
    if (mem) {
        /* in memory until the file can be written (store.c says so) */
    } else if (strcmp(mode, "wal")) {
        lume_log(LUME_LOG_WARN, COMP, "%s: WAL mode not available (journal_mode "
                 "is %s): commits will be slower", ob->path, mode);
    } else if (lume_store_db_exclusive(ob->sd)) {
        /* no shared memory (a full disk): nobody else can checkpoint this
         * file, and the WAL must stay small */
        sqlite3_exec(ob->db, "PRAGMA wal_autocheckpoint=64", NULL, NULL, NULL);
    } else if (sqlite3_exec(ob->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL) ==
             SQLITE_OK) {
        ob->ckpt_quit = ob->ckpt_due = false;
        start_checkpointer(ob);
    }
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(ob->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &ob->st[i], NULL) != SQLITE_OK) {
            *what = sqlite3_errmsg(ob->db);
            return -1;
        }
    return 0;
}

static lume_outbox *open_common(const char *path, const lume_outbox_opts *o,
                                bool readonly, char **err)
{
    lume_outbox *ob = NULL;
    const char *what = "out of memory";
    char *why = NULL;
    if (err)
        *err = NULL;
    if (!path || !*path) {
        what = "no path given";
        goto err;
    }
    ob = calloc(1, sizeof *ob);
    if (!ob || !(ob->path = strdup(path)))
        goto err;
    ob->readonly = readonly;
    opts_normalise(&ob->opts, o);

    if (readonly) {
        /* While outbox.db cannot be written the runtime keeps its rows in
         * a spill next to it (store.c): that is what there is to read. */
        char *spill = lume_strdupf("%s.spill", path);
        const char *file = spill && access(spill, F_OK) == 0 ? spill : path;
        int rc = sqlite3_open_v2(file, &ob->db, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READONLY,
                                 NULL);
        free(spill);
        if (rc != SQLITE_OK) {
            what = ob->db ? sqlite3_errmsg(ob->db) : "cannot allocate a connection";
            goto err;
        }
    } else {
        /* Damage, emptiness, a read-only file or a full disk never stop
         * the open: store.c salvages, spills or keeps it in memory. */
        ob->sd = lume_store_db_open(path, &outbox_table, &why);
        if (!ob->sd) {
            what = why ? why : "cannot open";
            goto err;
        }
        ob->db = lume_store_db_handle(ob->sd);
        if (follow_file(ob) < 0)
            goto err;
    }
    sqlite3_busy_timeout(ob->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(ob->db, 1);

    int64_t ver = 0;
    if (exec_int(ob->db, "PRAGMA user_version", &ver) != SQLITE_OK) {
        what = sqlite3_errmsg(ob->db);
        goto err;
    }
    if (ver > SCHEMA_VERSION) {
        what = "written by a newer lume (schema version too high)";
        goto err;
    }
    if (readonly) {
        for (int i = 0; i < S_COUNT; i++) {
            if (i != S_DUMP && i != S_STATS)
                continue;
            if (sqlite3_prepare_v3(ob->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                                   &ob->st[i], NULL) != SQLITE_OK) {
                what = sqlite3_errmsg(ob->db);
                goto err;
            }
        }
        return ob;
    }
    if (attach(ob, ver, &what) < 0)
        goto err;
    uint64_t sent[LUME_LANES];
    int64_t maxid = 0;
    if (load_counts(ob, ob->depth, ob->bytes, sent) < 0 ||
        exec_int(ob->db, "SELECT ifnull(max(id),0) FROM outbox", &maxid) != SQLITE_OK) {
        what = sqlite3_errmsg(ob->db);
        goto err;
    }
    ob->next_id = (uint64_t)maxid + 1;
    uint64_t resend = sent[0] + sent[1] + sent[2];
    if (resend)
        lume_log(LUME_LOG_INFO, COMP,
                 "%s: %llu message(s) sent before the last stop were not "
                 "acknowledged; they will be resent with their packet ids", path,
                 (unsigned long long)resend);
    return ob;

err:
    if (err)
        *err = lume_strdupf("outbox %s: %s", path ? path : "(null)", what);
    free(why);
    if (ob)
        free_handle(ob);
    return NULL;
}

lume_outbox *lume_outbox_open(const char *path, const lume_outbox_opts *o, char **err)
{
    return open_common(path, o, false, err);
}

lume_outbox *lume_outbox_open_readonly(const char *path, char **err)
{
    return open_common(path, NULL, true, err);
}

void lume_outbox_close(lume_outbox *ob)
{
    if (!ob)
        return;
    if (!ob->readonly && lume_outbox_commit(ob) < 0 &&
        (!lume_store_db_full(ob->sd) || lume_store_db_relieve(ob->sd) < 0 ||
         lume_outbox_commit(ob) < 0)) {
        /* (a full disk: the WAL's own space, given back, may take the batch) */
        uint64_t n = 0;
        for (int l = 0; l < LUME_LANES; l++)
            n += ob->pend_live[l];
        lume_log(LUME_LOG_ERROR, COMP,
                 "%s: closing with a failed commit: %llu uncommitted message(s) lost",
                 ob->path, (unsigned long long)n);
    }
    free_handle(ob);
}

/* ---- the file under the outbox (store.c) ------------------------------- */

/* The table lost rows (a salvage): make memory agree with it again. The
 * pending batch is written first; counters come from the table; in-flight
 * marks of rows that are gone are dropped (they were sent: their PUBACK
 * finds nothing to delete); cursors start again from the first row. */
static void reconcile(lume_outbox *ob)
{
    if (ob->pending_since_ns)
        lume_outbox_commit(ob);
    idmap keep = {0};
    sqlite3_stmt *s = ob->st[S_LOOKUP];
    for (size_t i = 0; i < ob->meta.cap; i++) {
        const ent *e = &ob->meta.slot[i];
        if (!e->id || !(e->flags & (F_INFLIGHT | F_DIRTY)))
            continue;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)e->id);
        bool there = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_reset(s);
        ent *k;
        if (there && (k = idmap_put(&keep, e->id)))
            *k = *e;
    }
    idmap_free(&ob->meta);
    ob->meta = keep;

    uint64_t sent[LUME_LANES];
    if (load_counts(ob, ob->depth, ob->bytes, sent) < 0)
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot count the salvaged rows: %s", ob->path,
                 sqlite3_errmsg(ob->db));
    for (size_t i = 0; i < ob->npend; i++) {
        const pend *p = &ob->pend[i];
        if (p->dropped)
            continue;
        ob->depth[p->lane]++;
        ob->bytes[p->lane] += p->topic_len + p->len;
    }
    /* deletes still pending (the commit above failed) */
    for (size_t i = 0; i < ob->pdel.cap; i++) {
        if (!ob->pdel.slot[i].id)
            continue;
        sqlite3_bind_int64(s, 1, (sqlite3_int64)ob->pdel.slot[i].id);
        if (sqlite3_step(s) == SQLITE_ROW) {
            int l = sqlite3_column_int(s, 0);
            if (l >= 0 && l < LUME_LANES && ob->depth[l]) {
                ob->depth[l]--;
                ob->bytes[l] -= (uint64_t)sqlite3_column_int64(s, 3);
            }
        }
        sqlite3_reset(s);
    }
    for (int l = 0; l < LUME_LANES; l++) {
        ob->inflight_n[l] = ob->inflight_b[l] = 0;
        ob->cur_peek[l] = ob->cur_evict[l] = 0;
        ob->evq[l].n = ob->evq[l].i = 0;
    }
    for (size_t i = 0; i < ob->meta.cap; i++) {
        const ent *e = &ob->meta.slot[i];
        if (e->id && (e->flags & F_INFLIGHT)) {
            ob->inflight_n[e->lane]++;
            ob->inflight_b[e->lane] += e->bytes;
        }
    }
}

int lume_outbox_check(lume_outbox *ob)
{
    if (!ob || ob->readonly || !lume_store_db_due(ob->sd))
        return 0;
    detach(ob);
    int r = lume_store_db_repair(ob->sd);
    ob->db = lume_store_db_handle(ob->sd);
    follow_file(ob);
    const char *what = NULL;
    int64_t ver = 0;   /* a salvaged file starts at 0 */
    exec_int(ob->db, "PRAGMA user_version", &ver);
    if (attach(ob, ver, &what) < 0) {
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot prepare the outbox again: %s", ob->path,
                 what ? what : "?");
        lume_store_db_note(ob->sd, sqlite3_extended_errcode(ob->db), what);
        return -EIO;
    }
    if (r == 2)
        reconcile(ob);
    return r;
}

lume_store_db *lume_outbox_store(const lume_outbox *ob)
{
    return ob ? ob->sd : NULL;
}

void lume_outbox_set_opts(lume_outbox *ob, const lume_outbox_opts *o)
{
    if (!ob || ob->readonly)
        return;
    bool was_full = ob->opts.synchronous_full;
    opts_normalise(&ob->opts, o);
    if (was_full != ob->opts.synchronous_full &&
        sqlite3_exec(ob->db, ob->opts.synchronous_full ? "PRAGMA synchronous=FULL"
                                                      : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK)
        lume_log(LUME_LOG_WARN, COMP, "%s: cannot change synchronous: %s", ob->path,
                 sqlite3_errmsg(ob->db));
}

const lume_outbox_opts *lume_outbox_get_opts(const lume_outbox *ob)
{
    return ob ? &ob->opts : NULL;
}

/* ---- commit ------------------------------------------------------------ */

/* Step a write statement once and reset it; SQLITE_DONE becomes SQLITE_OK. */
static int step_reset(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int cmp_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int write_batch(lume_outbox *ob)
{
    int rc;
    sqlite3_stmt *ins = ob->st[S_INSERT], *upd = ob->st[S_UPDATE], *del = ob->st[S_DELETE];

    for (size_t i = 0; i < ob->npend; i++) {
        const pend *p = &ob->pend[i];
        if (p->dropped)
            continue;
        const char *topic = ob->arena + p->off;
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)p->id);
        sqlite3_bind_int(ins, 2, p->lane);
        sqlite3_bind_int(ins, 3, p->qos);
        sqlite3_bind_int64(ins, 4, p->created_ms);
        sqlite3_bind_int64(ins, 5, p->expires_ms);
        /* The arena does not move until the batch is cleared: SQLITE_STATIC. */
        sqlite3_bind_text(ins, 6, topic, (int)p->topic_len, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 7, topic + p->topic_len + 1, (int)p->len, SQLITE_STATIC);
        if ((rc = step_reset(ins)) != SQLITE_OK)
            return rc;
    }
    for (size_t i = 0; i < ob->meta.cap; i++) {
        const ent *e = &ob->meta.slot[i];
        if (!e->id || !(e->flags & F_DIRTY))
            continue;
        sqlite3_bind_int64(upd, 1, (sqlite3_int64)e->id);
        sqlite3_bind_int(upd, 2, e->packet_id);
        sqlite3_bind_int64(upd, 3, e->attempts);
        if ((rc = step_reset(upd)) != SQLITE_OK)
            return rc;
    }
    if (!ob->pdel.n)
        return SQLITE_OK;
    /* Deletes in id order walk the b-tree pages once instead of at random. */
    size_t n = 0;
    uint64_t *ids = malloc(ob->pdel.n * sizeof *ids);
    if (!ids)
        return SQLITE_NOMEM;
    for (size_t i = 0; i < ob->pdel.cap; i++)
        if (ob->pdel.slot[i].id)
            ids[n++] = ob->pdel.slot[i].id;
    qsort(ids, n, sizeof *ids, cmp_id);
    rc = SQLITE_OK;
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        sqlite3_bind_int64(del, 1, (sqlite3_int64)ids[i]);
        rc = step_reset(del);
    }
    free(ids);
    return rc;
}

/* After a successful commit: empty the batch, forget the pending deletes,
 * keep only in-flight entries in meta (the table now holds the rest). */
static void batch_done(lume_outbox *ob)
{
    ob->npend = 0;
    ob->arena_len = 0;
    for (int l = 0; l < LUME_LANES; l++) {
        ob->pend_head[l] = 0;
        ob->pend_live[l] = 0;
    }
    idmap_free(&ob->pdel);
    ob->pending_since_ns = 0;
    for (int l = 0; l < LUME_LANES; l++) {
        candq *q = &ob->evq[l];
        if (q->i < q->n)
            ob->cur_evict[l] = q->c[q->i].id - 1;
        q->n = q->i = 0;
    }

    size_t keep = 0;
    for (size_t i = 0; i < ob->meta.cap; i++) {
        ent *e = &ob->meta.slot[i];
        e->flags &= (uint8_t)~F_DIRTY;
        keep += e->id && (e->flags & F_INFLIGHT);
    }
    if (keep == ob->meta.n)
        return;
    idmap fresh = {0};
    for (size_t i = 0; i < ob->meta.cap; i++) {
        ent *e = &ob->meta.slot[i], *f;
        if (!e->id || !(e->flags & F_INFLIGHT))
            continue;
        if (!(f = idmap_put(&fresh, e->id))) {
            /* Out of memory: keep the old map; stale cache entries are
             * harmless (they match the table). */
            idmap_free(&fresh);
            return;
        }
        *f = *e;
    }
    idmap_free(&ob->meta);
    ob->meta = fresh;
}

int lume_outbox_commit(lume_outbox *ob)
{
    if (!ob)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    if (!ob->pending_since_ns)
        return 0;

    int rc = step_reset(ob->st[S_BEGIN]);
    if (rc == SQLITE_OK)
        rc = write_batch(ob);
    if (rc == SQLITE_OK)
        rc = step_reset(ob->st[S_COMMIT]);
    if (rc != SQLITE_OK) {
        /* Keep the message before ROLLBACK replaces it. */
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(ob->db));
        if (!sqlite3_get_autocommit(ob->db))
            step_reset(ob->st[S_ROLLBACK]);
        lume_store_db_note(ob->sd, rc, msg);   /* full, read-only, damaged: store.c */
        ob->st_ctr.commit_errors++;
        ob->failed_in_row++;
        if (ratelog_due(&ob->log_commit))
            lume_log(LUME_LOG_ERROR, COMP,
                     "%s: commit failed (%s, code %d); the batch is kept and retried "
                     "(%llu failure(s) in a row)", ob->path, msg, rc,
                     (unsigned long long)ob->failed_in_row);
        return -EIO;
    }
    if (ob->failed_in_row) {
        lume_log(LUME_LOG_INFO, COMP, "%s: commit succeeded after %llu failure(s)",
                 ob->path, (unsigned long long)ob->failed_in_row);
        ob->failed_in_row = 0;
        ob->log_commit.ever = false;
    }
    lume_store_db_note(ob->sd, SQLITE_OK, NULL);
    ob->st_ctr.commits++;
    batch_done(ob);
    return 0;
}

int64_t lume_outbox_pending_age_ms(const lume_outbox *ob)
{
    if (!ob || !ob->pending_since_ns)
        return -1;
    return (lume_mono_ns() - ob->pending_since_ns) / LUME_NS_PER_MS;
}

/* ---- cap policy -------------------------------------------------------- */

static void forget_row(lume_outbox *ob, uint64_t id, int lane, uint64_t bytes)
{
    ent *e = idmap_get(&ob->meta, id);
    if (e)
        idmap_del(&ob->meta, e);
    ob->depth[lane]--;
    ob->bytes[lane] -= bytes;
}

/* Queue the deletion of committed row id (counted in lane by the caller).
 * -ENOMEM when the pending-delete set cannot grow (nothing changed). */
static int delete_row(lume_outbox *ob, uint64_t id, int lane, uint64_t bytes)
{
    if (!idmap_put(&ob->pdel, id))
        return -ENOMEM;
    forget_row(ob, id, lane, bytes);
    mark_pending(ob);
    return 0;
}

/* Drop the oldest droppable message of lane l: committed rows first (they
 * are older), then pending ones. 0, or -ENOENT when there is none. */
static int drop_oldest(lume_outbox *ob, int l)
{
    uint64_t committed = ob->depth[l] - ob->inflight_n[l] - ob->pend_live[l];
    candq *q = &ob->evq[l];
    while (committed) {
        if (q->i == q->n) {
            /* Refill: the next EVICT_CHUNK rows of the lane, oldest first. */
            sqlite3_stmt *s = ob->st[S_EVICT];
            int rc = SQLITE_DONE;
            q->n = q->i = 0;
            sqlite3_bind_int(s, 1, l);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)ob->cur_evict[l]);
            while (q->n < EVICT_CHUNK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                q->c[q->n].id = (uint64_t)sqlite3_column_int64(s, 0);
                q->c[q->n].bytes = (uint64_t)sqlite3_column_int64(s, 1);
                ob->cur_evict[l] = q->c[q->n++].id;
            }
            if (!q->n)
                lume_log(LUME_LOG_ERROR, COMP, "%s: cannot find the oldest %s message "
                         "to drop: %s", ob->path, lane_names[l],
                         rc == SQLITE_DONE ? "counters out of step" : sqlite3_errmsg(ob->db));
            sqlite3_reset(s);
            if (!q->n)
                break;
        }
        const cand *c = &q->c[q->i++];
        if (idmap_get(&ob->pdel, c->id))
            continue;
        const ent *e = idmap_get(&ob->meta, c->id);
        if (e && (e->flags & F_INFLIGHT))
            continue;
        if (delete_row(ob, c->id, l, c->bytes) < 0) {
            q->i--;
            break;      /* out of memory: try a pending message instead */
        }
        ob->st_ctr.dropped[l]++;
        return 0;
    }
    for (size_t i = ob->pend_head[l]; i < ob->npend; i++) {
        pend *p = &ob->pend[i];
        if (p->lane != l || p->dropped)
            continue;
        p->dropped = 1;
        ob->pend_head[l] = i + 1;
        ob->pend_live[l]--;
        ob->depth[l]--;
        ob->bytes[l] -= p->topic_len + p->len;
        ob->st_ctr.dropped[l]++;
        return 0;
    }
    return -ENOENT;
}

static bool over_cap(const lume_outbox *ob, uint64_t n, uint64_t b, int mult)
{
    return (ob->opts.max_messages && n > (uint64_t)ob->opts.max_messages * (uint64_t)mult) ||
           (ob->opts.max_bytes && b > (uint64_t)ob->opts.max_bytes * (uint64_t)mult);
}

static void totals(const lume_outbox *ob, uint64_t *n, uint64_t *b)
{
    *n = *b = 0;
    for (int l = 0; l < LUME_LANES; l++) {
        *n += ob->depth[l];
        *b += ob->bytes[l];
    }
}

/* Make room for one message of `size` bytes in `lane`. A message may push
 * out only messages of its own lane or a lower one (bulk first, then
 * telemetry; alarms never), and never one in flight. 0 when it fits, or
 * -ENOSPC (then nothing was dropped). */
static int make_room(lume_outbox *ob, int lane, uint64_t size)
{
    uint64_t n, b;
    totals(ob, &n, &b);
    if (!over_cap(ob, n + 1, b + size, 1))
        return 0;

    int lowest = lane > LUME_LANE_TELEMETRY ? lane : LUME_LANE_TELEMETRY;
    uint64_t dn = 0, db = 0;    /* what may be dropped */
    for (int l = LUME_LANE_BULK; l >= lowest; l--) {
        dn += ob->depth[l] - ob->inflight_n[l];
        db += ob->bytes[l] - ob->inflight_b[l];
    }
    int mult = 1;
    if (over_cap(ob, n - dn + 1, b - db + size, 1)) {
        /* Even dropping all that may be dropped does not make room. Only
         * alarms get the second cap. */
        if (lane != LUME_LANE_ALARM || over_cap(ob, n - dn + 1, b - db + size, 2))
            goto refuse;
        mult = 2;
    }
    uint64_t before[LUME_LANES];
    memcpy(before, ob->st_ctr.dropped, sizeof before);
    for (int l = LUME_LANE_BULK; l >= lowest; l--) {
        while (ob->depth[l] > ob->inflight_n[l]) {
            totals(ob, &n, &b);
            if (!over_cap(ob, n + 1, b + size, 1))
                break;
            if (drop_oldest(ob, l) < 0)
                break;
        }
    }
    for (int l = 0; l < LUME_LANES; l++)
        if (ob->st_ctr.dropped[l] != before[l] && ratelog_due(&ob->log_drop[l]))
            lume_log(LUME_LOG_WARN, COMP, "%s: over the cap: dropped the oldest %s "
                     "message(s) for a new %s one (%llu %s dropped so far)", ob->path,
                     lane_names[l], lane_names[lane],
                     (unsigned long long)ob->st_ctr.dropped[l], lane_names[l]);
    totals(ob, &n, &b);
    if (!over_cap(ob, n + 1, b + size, mult))
        return 0;
    /* Only when the table could not be read: what was dropped stays dropped. */

refuse:
    ob->st_ctr.refused[lane]++;
    if (ratelog_due(&ob->log_refuse[lane]))
        lume_log(LUME_LOG_WARN, COMP, "%s: full: refused a %s message (%llu %s refused "
                 "so far; depth %llu messages, %llu bytes)", ob->path, lane_names[lane],
                 (unsigned long long)ob->st_ctr.refused[lane], lane_names[lane],
                 (unsigned long long)n, (unsigned long long)b);
    return -ENOSPC;
}

/* ---- append ------------------------------------------------------------ */

static bool topic_ok(const char *t, size_t *len)
{
    if (!t || !*t)
        return false;
    size_t n = 0;
    for (; t[n]; n++)
        if (t[n] == '+' || t[n] == '#' || n >= MAX_TOPIC)
            return false;
    *len = n;
    return true;
}

static int reserve(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    void *nb = realloc(*buf, ncap * elem);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = ncap;
    return 0;
}

int lume_outbox_append(lume_outbox *ob, int lane, const char *topic,
                       const void *payload, size_t len, int qos,
                       int64_t ttl_ms, uint64_t *id)
{
    size_t tlen;
    if (!ob || lane < 0 || lane >= LUME_LANES || qos < 0 || qos > 2 ||
        !topic_ok(topic, &tlen) || (!payload && len) || len > INT32_MAX || ttl_ms < 0)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;

    /* A batch left full by a failed automatic commit: retry it first, and
     * take nothing more into memory while the disk refuses it. */
    if (ob->npend >= (size_t)ob->opts.commit_batch && lume_outbox_commit(ob) < 0)
        return -EIO;

    int rc = make_room(ob, lane, tlen + len);
    if (rc < 0)
        return rc;
    if (reserve((void **)&ob->pend, &ob->cappend, ob->npend + 1, sizeof *ob->pend) < 0 ||
        reserve((void **)&ob->arena, &ob->arena_cap, ob->arena_len + tlen + 1 + len, 1) < 0)
        return -ENOMEM;

    int64_t now = lume_wall_ms();
    pend *p = &ob->pend[ob->npend++];
    p->id = ob->next_id++;
    p->created_ms = now;
    p->expires_ms = ttl_ms ? now + ttl_ms : 0;
    p->off = ob->arena_len;
    p->topic_len = (uint32_t)tlen;
    p->len = (uint32_t)len;
    p->lane = (uint8_t)lane;
    p->qos = (uint8_t)qos;
    p->dropped = 0;
    char *dst = ob->arena + ob->arena_len;
    memcpy(dst, topic, tlen + 1);
    if (len)
        memcpy(dst + tlen + 1, payload, len);
    ob->arena_len += tlen + 1 + len;

    ob->pend_live[lane]++;
    ob->depth[lane]++;
    ob->bytes[lane] += tlen + len;
    ob->st_ctr.appended[lane]++;
    mark_pending(ob);
    if (id)
        *id = p->id;

    /* This message is accepted whatever happens now: a failed commit keeps
     * it in the batch, and the next append or commit retries. */
    if (ob->npend >= (size_t)ob->opts.commit_batch)
        lume_outbox_commit(ob);
    return 0;
}

/* ---- peek / in flight / ack / requeue ---------------------------------- */

int lume_outbox_peek(lume_outbox *ob, lume_outbox_msg *out, int max)
{
    if (!ob || (!out && max > 0) || max < 0)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    int got = 0, err = 0;
    int64_t now = lume_wall_ms();
    sqlite3_stmt *s = ob->st[S_PEEK];

    for (int l = 0; l < LUME_LANES && got < max && !err; l++) {
        if (ob->depth[l] == ob->pend_live[l] + ob->inflight_n[l])
            continue;   /* nothing committed and sendable in this lane */
        bool contiguous = true;   /* every row so far is skipped for good */
        int rc = SQLITE_DONE;
        sqlite3_bind_int(s, 1, l);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)ob->cur_peek[l]);
        while (got < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            uint64_t id = (uint64_t)sqlite3_column_int64(s, 0);
            ent *e = idmap_get(&ob->meta, id);
            bool gone = (e && (e->flags & F_INFLIGHT)) || idmap_get(&ob->pdel, id);
            int64_t exp = sqlite3_column_int64(s, 3);
            const void *topic = sqlite3_column_text(s, 6);
            size_t tlen = (size_t)sqlite3_column_bytes(s, 6);
            const void *pl = sqlite3_column_blob(s, 7);
            size_t plen = (size_t)sqlite3_column_bytes(s, 7);
            if (!gone && exp && exp <= now) {
                if (delete_row(ob, id, l, tlen + plen) < 0) {
                    err = -ENOMEM;
                    break;
                }
                ob->st_ctr.expired[l]++;
                gone = true;
            }
            if (gone) {
                if (contiguous)
                    ob->cur_peek[l] = id;
                continue;
            }
            contiguous = false;
            /* Cache what mark_inflight/ack need, so they need no SELECT. */
            if (!e && (e = idmap_put(&ob->meta, id))) {
                e->lane = (uint8_t)l;
                e->bytes = (uint32_t)(tlen + plen);
                e->packet_id = (uint16_t)sqlite3_column_int(s, 4);
                e->attempts = (uint32_t)sqlite3_column_int64(s, 5);
            }
            lume_outbox_msg *m = &out[got];
            memset(m, 0, sizeof *m);
            m->id = id;
            m->lane = l;
            m->qos = sqlite3_column_int(s, 1);
            m->created_ms = sqlite3_column_int64(s, 2);
            m->expires_ms = exp;
            m->packet_id = e ? e->packet_id : (uint16_t)sqlite3_column_int(s, 4);
            m->attempts = e ? e->attempts : (uint32_t)sqlite3_column_int64(s, 5);
            m->topic = malloc(tlen + 1);
            m->len = plen;
            m->payload = plen ? malloc(plen) : NULL;
            if (!m->topic || (plen && !m->payload)) {
                lume_outbox_msg_clear(m);
                err = -ENOMEM;
                break;
            }
            memcpy(m->topic, topic ? topic : "", tlen + 1);
            if (plen)
                memcpy(m->payload, pl, plen);
            got++;
        }
        if (!err && got < max && rc != SQLITE_DONE) {
            lume_log(LUME_LOG_ERROR, COMP, "%s: peek failed: %s", ob->path,
                     sqlite3_errmsg(ob->db));
            lume_store_db_note(ob->sd, rc, sqlite3_errmsg(ob->db));
            err = -EIO;
        }
        sqlite3_reset(s);
    }
    if (err) {
        for (int i = 0; i < got; i++)
            lume_outbox_msg_clear(&out[i]);
        return err;
    }
    return got;
}

/* The meta entry of a committed, live row (looked up in the table when not
 * cached). NULL with *rc = -ENOENT when unknown, -ENOMEM or -EIO. */
static ent *find_row(lume_outbox *ob, uint64_t id, int *rc)
{
    if (!id || id >= ob->next_id || idmap_get(&ob->pdel, id)) {
        *rc = -ENOENT;
        return NULL;
    }
    ent *e = idmap_get(&ob->meta, id);
    if (e)
        return e;
    sqlite3_stmt *s = ob->st[S_LOOKUP];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        int lane = sqlite3_column_int(s, 0);
        if (lane >= 0 && lane < LUME_LANES && (e = idmap_put(&ob->meta, id))) {
            e->lane = (uint8_t)lane;
            e->packet_id = (uint16_t)sqlite3_column_int(s, 1);
            e->attempts = (uint32_t)sqlite3_column_int64(s, 2);
            e->bytes = (uint32_t)sqlite3_column_int64(s, 3);
        }
        *rc = e ? 0 : lane >= 0 && lane < LUME_LANES ? -ENOMEM : -ENOENT;
    } else {
        *rc = r == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_reset(s);
    return e;
}

int lume_outbox_mark_inflight(lume_outbox *ob, uint64_t id, uint16_t packet_id)
{
    if (!ob)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    int rc;
    ent *e = find_row(ob, id, &rc);
    if (!e)
        return rc;
    if (!(e->flags & F_INFLIGHT)) {
        e->flags |= F_INFLIGHT;
        ob->inflight_n[e->lane]++;
        ob->inflight_b[e->lane] += e->bytes;
    }
    e->flags |= F_DIRTY;
    e->packet_id = packet_id;
    e->attempts++;
    mark_pending(ob);
    return 0;
}

int lume_outbox_ack(lume_outbox *ob, uint64_t id)
{
    if (!ob)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    int rc;
    ent *e = find_row(ob, id, &rc);
    if (!e)
        return rc;
    int lane = e->lane;
    uint64_t bytes = e->bytes;
    bool inflight = e->flags & F_INFLIGHT;
    if ((rc = delete_row(ob, id, lane, bytes)) < 0)   /* frees e */
        return rc;
    if (inflight) {
        ob->inflight_n[lane]--;
        ob->inflight_b[lane] -= bytes;
    }
    ob->st_ctr.acked[lane]++;
    return 0;
}

void lume_outbox_requeue(lume_outbox *ob)
{
    if (!ob || ob->readonly)
        return;
    for (size_t i = 0; i < ob->meta.cap; i++)
        ob->meta.slot[i].flags &= (uint8_t)~F_INFLIGHT;
    for (int l = 0; l < LUME_LANES; l++) {
        ob->inflight_n[l] = ob->inflight_b[l] = 0;
        ob->cur_peek[l] = ob->cur_evict[l] = 0;
        ob->evq[l].n = ob->evq[l].i = 0;
    }
}

/* ---- stats and dump ---------------------------------------------------- */

void lume_outbox_get_stats(lume_outbox *ob, lume_outbox_stats *st)
{
    if (!st)
        return;
    memset(st, 0, sizeof *st);
    if (!ob)
        return;
    if (ob->readonly) {
        /* Another process owns the counters; the table tells depth, bytes
         * and what was sent and not yet acknowledged. */
        uint64_t sent[LUME_LANES];
        if (load_counts(ob, st->depth, st->bytes, sent) < 0)
            lume_log(LUME_LOG_WARN, COMP, "%s: cannot read stats: %s", ob->path,
                     sqlite3_errmsg(ob->db));
        st->inflight = sent[0] + sent[1] + sent[2];
        return;
    }
    *st = ob->st_ctr;
    for (int l = 0; l < LUME_LANES; l++) {
        st->depth[l] = ob->depth[l];
        st->bytes[l] = ob->bytes[l];
        st->pending += ob->pend_live[l];
        st->inflight += ob->inflight_n[l];
    }
}

int lume_outbox_dump(lume_outbox *ob, int (*fn)(void *ud, const lume_outbox_msg *m),
                     void *ud)
{
    if (!ob || !fn)
        return -EINVAL;
    sqlite3_stmt *s = ob->st[S_DUMP];
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lume_outbox_msg m = {0};
        m.id = (uint64_t)sqlite3_column_int64(s, 0);
        if (idmap_get(&ob->pdel, m.id))
            continue;
        const ent *e = idmap_get(&ob->meta, m.id);
        m.lane = sqlite3_column_int(s, 1);
        m.qos = sqlite3_column_int(s, 2);
        m.created_ms = sqlite3_column_int64(s, 3);
        m.expires_ms = sqlite3_column_int64(s, 4);
        m.packet_id = e ? e->packet_id : (uint16_t)sqlite3_column_int(s, 5);
        m.attempts = e ? e->attempts : (uint32_t)sqlite3_column_int64(s, 6);
        /* Borrowed from SQLite for the callback only. */
        m.topic = (char *)sqlite3_column_text(s, 7);
        m.payload = (void *)sqlite3_column_blob(s, 8);
        m.len = (size_t)sqlite3_column_bytes(s, 8);
        if (!m.topic)
            m.topic = (char *)"";
        n++;
        if (fn(ud, &m))
            break;
    }
    bool failed = rc != SQLITE_ROW && rc != SQLITE_DONE;
    if (failed)
        lume_log(LUME_LOG_ERROR, COMP, "%s: dump failed: %s", ob->path,
                 sqlite3_errmsg(ob->db));
    sqlite3_reset(s);
    return failed ? -EIO : n;
}
