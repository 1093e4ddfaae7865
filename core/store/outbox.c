/* core/store/outbox.c — the durable outbox (see outbox.h, docs/outbox.md).
 *
 * Where a message is
 * ------------------
 *
 *   append ──► PENDING ──hand-off──► COMMITTING ──committed──► COMMITTED ──peek──► handed out
 *              (batch cur)  (batch job, written by the           │   ▲                │ mark_inflight
 *                 │          committer thread; failed:           │   └──requeue──── IN FLIGHT
 *                 │ cap drop back to the loop, kept whole        │                    │ ack
 *                 ▼          and resubmitted)     ack / cap drop / expiry              ▼
 *               gone                                              ▼                    │
 *                                            PENDING DELETE (cur.del) ──hand-off, commit──► gone
 *
 * A message is durable once the transaction holding it committed: it is
 * then in the WAL (the kernel's page cache), which survives a crash of the
 * process. Pending and committing messages are accepted but not durable.
 *
 * Threads
 * -------
 * The loop thread owns the handle and the read connection `db` (peek, the
 * cap policy's candidates, lookups, dump, stats). The write connection
 * `wdb` is used by one thread at a time (`wdb_busy`, under `mu`): the
 * committer thread, which writes one batch per transaction and, between
 * batches, gives free pages back to the file system (incremental vacuum) and
 * cuts a long WAL back; or the loop itself, for a barrier (a durable
 * publish, flush) while the committer is idle: the loop would only wait for
 * it, and two thread wake-ups cost more than the commit; or the loop
 * borrowing it for the store's once-a-second look (invariant 8). The checkpointer
 * thread copies the WAL into the database file on a third connection. A
 * batch is handed over when it holds commit_batch appends or acks, by the
 * loop's timer (commit_start) and by the barrier (commit). It crosses
 * between the loop and the committer whole, under `mu`, and only one is
 * ever handed over (`job`):
 *
 *     J_NONE ──hand-off──► J_QUEUED ──► J_RUNNING ──┬──► J_DONE ───reap──► J_NONE
 *                             ▲                     └──► J_FAILED ─┐ reap: counted, logged
 *                             └── resubmit: timer (commit_start), ─┘
 *                                 commit, back-pressure in append
 *
 * While QUEUED or RUNNING on the committer the job is the committer's and
 * the loop only reads it; in the other states it is the loop's (a barrier
 * the loop writes itself goes NONE -> RUNNING -> DONE | FAILED in one
 * call). The committer wakes the loop
 * (notify) after each job; the loop reaps (takes note of) a finished job at
 * the start of every call.
 *
 * State kept in memory (everything else lives in the tables):
 *   - two batches, cur (filled by the loop) and job (handed over), each with
 *     its appended messages (`pend` records whose topic and payload bytes sit
 *     in one growable arena: one copy per message, no malloc), the committed
 *     ids it deletes (`del`, acked, expired or dropped), the packet id and
 *     attempts changes it writes (`upd`, collected from meta at hand-off)
 *     and its changes to the per-lane counters of table outbox_lanes;
 *   - `meta`: a hash keyed by id for committed rows we know something about:
 *     in flight (F_INFLIGHT), with a packet id/attempts change not yet
 *     handed over (F_DIRTY), or merely seen by peek (a cache so that
 *     mark_inflight needs no SELECT);
 *   - per-lane counters: depth/bytes (committed + committing + pending -
 *     deleted), in-flight count/bytes; the totals of dropped, refused and
 *     expired messages (read from outbox_lanes at open);
 *   - visible_below: every row with a lower id was committed and reaped.
 *
 * Invariants:
 *   1. ids grow in append order: every id in job is above every committed
 *      id, every id in cur above every id in job. Batches commit in hand-off
 *      order, so after a crash the table holds a prefix of what was
 *      accepted, in whole transactions: nothing follows a gap.
 *   2. The loop reads only rows with id < visible_below; a row whose id is
 *      in cur.del or job.del is never returned, marked, acked or dropped.
 *   3. cur_peek[l]: every committed row of lane l with an id at or below the
 *      cursor is in flight or deleted. A row leaves "in flight" only by ack
 *      (into cur.del) or requeue (which resets the cursors), so this holds
 *      until then. peek advances its cursor only over a contiguous run of
 *      such rows (peek is repeatable: what it returned but was not marked is
 *      returned again).
 *   3b. cur_evict[l]: the same, except for the rows in the eviction
 *      candidate queue evq[l] (fetched EVICT_CHUNK at a time, oldest first,
 *      re-checked against meta and the deletes when used). The queue is
 *      emptied when a job is reaped (its ids may then be gone from the
 *      table) and by requeue.
 *   4. depth[l] - inflight_n[l] is what the cap policy may drop in lane l.
 *      A message in a job the committer holds is dropped only after waiting
 *      for that job (then it is a committed row, or the job failed and is the
 *      loop's again).
 *   5. A failed commit changes nothing in memory: the transaction is rolled
 *      back and the job (inserts, updates, deletes, counter changes) is kept
 *      whole and resubmitted before anything newer.
 *   6. outbox_lanes holds, per lane, the depth, bytes and sent (packet_id
 *      != 0) count of the rows of outbox, and the dropped, refused and
 *      expired totals; every transaction that changes the rows changes those
 *      counts with them. Opening reads them; it never scans the backlog.
 *   7. Accepted-not-durable messages (cur + job) stay at or below
 *      4 x commit_batch: an append at that limit first waits for the job,
 *      and refuses with -EIO when the disk refuses it twice.
 *   8. The file is core/store/store.c's (docs/store.md): the write connection
 *      `wdb` is the store's (lume_store_db_handle); the read connection and
 *      the checkpointer's open the file the store uses (its spill while it
 *      has one) by name. Only the loop thread talks to the store: a job's
 *      result (job_rc) is noted with it when the loop reaps the job, and
 *      lume_outbox_check, on the loop once a second, replaces wdb only with
 *      the committer and the checkpointer stopped (the job drained first:
 *      the barrier), every statement finalized before and prepared after,
 *      the read connection reopened. While the store keeps the rows in
 *      memory, or holds the file with exclusive locking (no shared memory:
 *      a full disk), there is no second connection that could see them:
 *      `db` is `wdb`, and jobs run on the loop thread (no committer, no
 *      checkpointer) until the file is back to normal. A file put back holds
 *      the same rows, so memory stays true; after a salvage, reconcile()
 *      writes the pending batches, recounts outbox_lanes from what survived
 *      (the loss totals from memory) and rebuilds the counters, in-flight
 *      marks and cursors (invariants 1-6 hold again).
 *   9. A topic is stored once. The first append of a topic (while fewer
 *      than TOPICS_MAX are interned) adds a topic row (lane TOPIC_LANE, the
 *      topic in its topic column, never sent, never counted in
 *      outbox_lanes) to the batch just before the message; the message's
 *      topic column holds TOPIC_REF and that row's id ("\x01" "17"). By
 *      invariant 1 a committed message's topic row is committed too, in the
 *      same or an earlier transaction. `tdefs` (memory) holds every topic
 *      row of the file, loaded at open and after a salvage; peek resolves a
 *      reference there, dump in SQL. Bytes count the whole topic. The hand-
 *      off that leaves no message at all (every depth 0) deletes the topic
 *      rows in its transaction and forgets them. Past TOPICS_MAX a message
 *      keeps its topic in its own row, as rows of schema 2 files do. A
 *      message whose topic row was lost to damage (a salvage) is dropped by
 *      peek, logged and counted in dropped.
 */
#include "outbox.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "log.h"
#include "store.h"

#define COMP "outbox"
#define LOG_EVERY_NS (10 * LUME_NS_PER_SEC)
#define BUSY_TIMEOUT_MS 250
#define MAX_TOPIC 65535
#define SCHEMA_VERSION 3
#define TOPIC_LANE 255             /* rows holding an interned topic: never sent (invariant 9) */
#define TOPIC_REF '\x01'           /* a message's topic column: TOPIC_REF + its topic row's id */
#define TOPICS_MAX 64              /* topics interned at once; past that, stored inline */
#define PENDING_BATCHES 4          /* accepted-not-durable limit, in commit_batch units */
#define RECLAIM_MIN_PAGES 256      /* give space back once this much is free ... */
#define RECLAIM_FRACTION 4         /* ... and more than 1/4 of the file */
#define RECLAIM_CHUNK 128          /* pages per incremental_vacuum (one transaction) */
#define WAL_KEEP_BYTES (4 * 1024 * 1024)   /* journal_size_limit */

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

/* Empty m, keeping its slots for reuse. */
static void idmap_clear(idmap *m)
{
    if (m->n)
        memset(m->slot, 0, m->cap * sizeof *m->slot);
    m->n = 0;
}

/* ---- the handle -------------------------------------------------------- */

typedef struct pend {
    uint64_t id;
    int64_t  created_ms, expires_ms;
    size_t   off;           /* topic (NUL-terminated) then payload, in arena */
    uint32_t topic_len, len;  /* as stored (a reference when interned) */
    uint32_t tbytes;          /* the topic's own length, counted in bytes */
    uint8_t  lane, qos, dropped;
} pend;

typedef struct upd {
    uint64_t id;
    uint32_t attempts;
    uint16_t packet_id;
} upd;

/* An interned topic (invariant 9): the row TOPIC_LANE/id holds it; a
 * message row refers to it by `ref` (TOPIC_REF and the id in decimal). */
typedef struct tdef {
    uint64_t id;
    char    *topic;
    uint32_t len;
    uint32_t reflen;
    char     ref[24];
} tdef;

/* The columns of outbox_lanes a batch changes (inserts are counted by the
 * committer from the batch's messages). */
enum { C_DEPTH, C_BYTES, C_SENT, C_DROPPED, C_REFUSED, C_EXPIRED, C_COUNT };

/* What one transaction writes. */
typedef struct batch {
    pend    *pend;
    size_t   npend, cappend;
    size_t   ntop;               /* of the pends, topic rows (invariant 9) */
    char    *arena;
    size_t   arena_len, arena_cap;
    size_t   head[LUME_LANES];   /* first pend index of the lane that may be live */
    uint64_t live[LUME_LANES];   /* appended and not dropped */
    uint64_t nlive;
    uint64_t last_id;            /* highest id appended into it, 0 when none */
    idmap    del;                /* committed ids to DELETE */
    upd     *upd;
    size_t   nupd, capupd;
    int64_t  ctr[LUME_LANES][C_COUNT];
    int64_t  since_ns;           /* its oldest change; 0 = nothing to write */
} batch;

#define EVICT_CHUNK 256

typedef struct cand {
    uint64_t id;
    uint64_t bytes;
    bool     sent;
} cand;

typedef struct candq {
    cand   c[EVICT_CHUNK];
    size_t n, i;            /* filled, next to use */
} candq;

typedef struct ratelog {
    int64_t last_ns;
    bool    ever;
} ratelog;

/* Statements of the loop's read connection. */
enum { S_PEEK, S_EVICT, S_LOOKUP, S_DUMP, S_STATS, S_LANES, S_FREE, S_TOPICS, S_COUNT };
/* Statements of the committer's write connection. */
enum { W_BEGIN, W_COMMIT, W_ROLLBACK, W_INSERT, W_UPDATE, W_DELETE, W_LANES, W_COUNT };

enum { J_NONE, J_QUEUED, J_RUNNING, J_DONE, J_FAILED };

struct lume_outbox {
    sqlite3          *db;             /* the loop's: reads (wdb itself when single) */
    sqlite3          *wdb;            /* the committer's: every write; the store's
                                         (lume_store_db_handle(sd)) */
    lume_store_db    *sd;             /* the file and its defences (NULL read-only) */
    bool              single;         /* db == wdb, no threads (invariant 8) */
    bool              recount_due;    /* a salvaged file's outbox_lanes not recounted yet */
    sqlite3_stmt     *st[S_COUNT], *wst[W_COUNT];
    char             *path;           /* the file in use (its spill while it has one) */
    bool              readonly;
    lume_outbox_opts  opts;

    uint64_t next_id, visible_below;
    batch    bat[2];
    batch   *cur, *job;
    bool     fresh;                   /* a job was reaped since the last poll */
    bool     handoff_wanted;          /* hand cur over once the committer is free */
    bool     job_noted;               /* the failure of the FAILED job was counted */

    idmap    meta;
    tdef    *tdefs;                   /* interned topics, in id order (invariant 9) */
    size_t   ntdefs, captdefs, tlast; /* tlast: the one found last */
    uint64_t tdangling;               /* messages whose topic row was lost (salvage) */
    uint64_t cur_peek[LUME_LANES], cur_evict[LUME_LANES];
    candq    evq[LUME_LANES];

    uint64_t depth[LUME_LANES], bytes[LUME_LANES];
    uint64_t inflight_n[LUME_LANES], inflight_b[LUME_LANES];
    lume_outbox_stats st_ctr;         /* appended/acked/expired/... counters */

    ratelog  log_drop[LUME_LANES], log_refuse[LUME_LANES], log_commit;
    uint64_t failed_in_row;
    char     last_err[300];

    /* The committer: the thread that runs every write on wdb. Under mu:
     * jstate changes, job_err, notify, sync_full_want, cm_quit. Without a
     * thread (pthread_create failed) jobs run inline on the caller's. */
    pthread_t        cm_thread;
    pthread_mutex_t  mu;
    pthread_cond_t   cv_work, cv_done;
    bool             cm_inited, cm_running, cm_quit;
    _Atomic int      jstate;
    char             job_err[256];
    int              job_rc;          /* SQLite code of the last job (noted by the loop) */
    void           (*notify)(void *ud);
    void            *notify_ud;
    bool             sync_full_want, sync_full_is;   /* wdb's synchronous */
    bool             reclaim_due;
    bool             cm_wants_wdb;    /* the committer waits for the loop to free wdb */
    int64_t          reclaim_last_ns; /* when free pages were last looked at */
    bool             reclaim_later;   /* commits since: look again once the second is up */
    bool             wal_restart_due; /* set by the checkpointer */
    bool             wdb_busy;        /* a thread is using wdb (the committer, or the
                                         loop writing a barrier's job itself) */
    int              wal_pages;       /* the committer's: WAL frames after its last commit */
    int              auto_vacuum;     /* wdb's: 0 none, 1 full, 2 incremental */
    int64_t          page_size;

    /* Checkpoints run on a thread of their own, with its own connection:
     * a WAL checkpoint writes the database file and fsyncs it, which took
     * the loop thread up to ~10 ms per commit when SQLite ran it inline
     * (wal_autocheckpoint). Neither the loop's nor the committer's
     * connection ever checkpoints. */
    pthread_t        ckpt_thread;
    lume_log_target *ckpt_log;   /* the opener's log target (log.h, rule 3) */
    pthread_mutex_t  ckpt_mu;
    pthread_cond_t   ckpt_cv;
    bool             ckpt_running, ckpt_quit, ckpt_due;
    bool             ckpt_idle;   /* waiting for the WAL to grow at all */
    uint64_t         ckpt_gen;    /* commits seen by wal_grew (under ckpt_mu) */
};
#define CKPT_PAGES 1000      /* wake the checkpointer when the WAL has this many */
#define WAL_MAX_PAGES (8 * CKPT_PAGES) /* past this the committer cuts the WAL back */
#define CKPT_GAP_MS 100      /* and at most this often */
#define CKPT_PERIOD_MS 1000  /* and at least this often, while commits come */

static void *checkpointer(void *arg)
{
    lume_outbox *ob = arg;
    sqlite3 *db = NULL;
    lume_log_use(ob->ckpt_log);
    pthread_setname_np(pthread_self(), "lume-ckpt");
    if (sqlite3_open_v2(ob->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        lume_log(LUME_LOG_WARN, "outbox", "%s: checkpointer cannot open: %s", ob->path,
                 db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 100);
    /* A connection learns that the file is in WAL mode when it first reads
     * it; until then sqlite3_wal_checkpoint_v2 does nothing and says so only
     * with log = -1 (this thread never checkpointed before this read). */
    if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK)
        lume_log(LUME_LOG_WARN, "outbox", "%s: checkpointer cannot read: %s", ob->path,
                 sqlite3_errmsg(db));
    pthread_mutex_lock(&ob->ckpt_mu);
    uint64_t seen = ob->ckpt_gen - 1; /* one checkpoint after the start */
    while (!ob->ckpt_quit) {
        if (!ob->ckpt_due && seen == ob->ckpt_gen) {
            /* nothing committed since the last checkpoint: sleep until a
             * commit comes (an idle device's checkpointer never wakes) */
            ob->ckpt_idle = true;
            pthread_cond_wait(&ob->ckpt_cv, &ob->ckpt_mu);
            ob->ckpt_idle = false;
            continue;
        }
        if (!ob->ckpt_due) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += CKPT_PERIOD_MS / 1000;
            pthread_cond_timedwait(&ob->ckpt_cv, &ob->ckpt_mu, &ts);
        }
        ob->ckpt_due = false;
        if (ob->ckpt_quit)
            break;
        seen = ob->ckpt_gen;
        pthread_mutex_unlock(&ob->ckpt_mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            lume_log(LUME_LOG_WARN, "outbox", "%s: checkpoint: %s", ob->path,
                     sqlite3_errmsg(db));
        /* All of a big WAL is in the database file now: the committer
         * truncates it when it has nothing else to do. */
        if (rc == SQLITE_OK && log > 0 && done == log &&
            (int64_t)log * ob->page_size > WAL_KEEP_BYTES) {
            pthread_mutex_lock(&ob->mu);
            ob->wal_restart_due = true;
            pthread_cond_signal(&ob->cv_work);
            pthread_mutex_unlock(&ob->mu);
        }
        pthread_mutex_lock(&ob->ckpt_mu);
        /* At most one checkpoint per CKPT_GAP_MS: each one fsyncs twice, and
         * back to back (the WAL stays above CKPT_PAGES while commits follow
         * each other closely) they slowed every commit down. */
        struct timespec gap;
        clock_gettime(CLOCK_REALTIME, &gap);
        gap.tv_nsec += CKPT_GAP_MS * 1000000L;
        if (gap.tv_nsec >= 1000000000L) {
            gap.tv_sec++;
            gap.tv_nsec -= 1000000000L;
        }
        while (!ob->ckpt_quit &&
               pthread_cond_timedwait(&ob->ckpt_cv, &ob->ckpt_mu, &gap) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&ob->ckpt_mu);
    sqlite3_close(db);
    return NULL;
}

/* sqlite3_wal_hook: after each commit on the committer's connection. */
static int wal_grew(void *ud, sqlite3 *db, const char *name, int pages)
{
    (void)db, (void)name;
    lume_outbox *ob = ud;
    ob->wal_pages = pages;
    if (ob->ckpt_running) {
        pthread_mutex_lock(&ob->ckpt_mu);
        ob->ckpt_gen++;
        if (pages >= CKPT_PAGES)
            ob->ckpt_due = true;
        if (ob->ckpt_due || ob->ckpt_idle)
            pthread_cond_signal(&ob->ckpt_cv);
        pthread_mutex_unlock(&ob->ckpt_mu);
    }
    return SQLITE_OK;
}

static void start_checkpointer(lume_outbox *ob)
{
    pthread_mutex_init(&ob->ckpt_mu, NULL);
    pthread_cond_init(&ob->ckpt_cv, NULL);
    ob->ckpt_log = lume_log_current();
    if (pthread_create(&ob->ckpt_thread, NULL, checkpointer, ob) != 0) {
        /* fall back to SQLite's own checkpoints, on the committer's commits */
        sqlite3_exec(ob->wdb, "PRAGMA wal_autocheckpoint=1000", NULL, NULL, NULL);
        return;
    }
    ob->ckpt_running = true;
    sqlite3_wal_hook(ob->wdb, wal_grew, ob);
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
    sqlite3_wal_hook(ob->wdb, NULL, NULL);
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
    o->durable_lanes = 1 << LUME_LANE_ALARM;
    o->inline_checkpoints = false;
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
    if (dst->durable_lanes < 0 || dst->durable_lanes >= 1 << LUME_LANES)
        dst->durable_lanes = d.durable_lanes;
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

/* cur has something to write. */
static void mark_pending(lume_outbox *ob)
{
    if (!ob->cur->since_ns)
        ob->cur->since_ns = lume_mono_ns();
}

/* A committed row's id was deleted in memory (its DELETE is pending or
 * being committed). */
static bool is_deleted(const lume_outbox *ob, uint64_t id)
{
    return idmap_get(&ob->cur->del, id) || idmap_get(&ob->job->del, id);
}

/* Empty a batch after its commit, keeping its buffers. */
static void batch_reset(batch *b)
{
    b->npend = 0;
    b->ntop = 0;
    b->arena_len = 0;
    b->nlive = 0;
    b->last_id = 0;
    b->nupd = 0;
    b->since_ns = 0;
    for (int l = 0; l < LUME_LANES; l++) {
        b->head[l] = 0;
        b->live[l] = 0;
    }
    memset(b->ctr, 0, sizeof b->ctr);
    idmap_clear(&b->del);
}

static void batch_free(batch *b)
{
    free(b->pend);
    free(b->arena);
    free(b->upd);
    idmap_free(&b->del);
    memset(b, 0, sizeof *b);
}

/* ---- interned topics (invariant 9) -------------------------------------- */

static void tdefs_clear(lume_outbox *ob)
{
    for (size_t i = 0; i < ob->ntdefs; i++)
        free(ob->tdefs[i].topic);
    ob->ntdefs = ob->tlast = 0;
}

/* Remember topic row id. The entry, or NULL when out of memory. */
static tdef *tdef_add(lume_outbox *ob, uint64_t id, const char *topic, size_t len)
{
    if (ob->ntdefs == ob->captdefs) {
        size_t ncap = ob->captdefs ? ob->captdefs * 2 : 16;
        tdef *n = realloc(ob->tdefs, ncap * sizeof *n);
        if (!n)
            return NULL;
        ob->tdefs = n;
        ob->captdefs = ncap;
    }
    tdef *d = &ob->tdefs[ob->ntdefs];
    if (!(d->topic = malloc(len + 1)))
        return NULL;
    memcpy(d->topic, topic, len);
    d->topic[len] = 0;
    d->id = id;
    d->len = (uint32_t)len;
    int n = snprintf(d->ref, sizeof d->ref, "%c%llu", TOPIC_REF, (unsigned long long)id);
    d->reflen = (uint32_t)n;
    ob->tlast = ob->ntdefs++;
    return d;
}

/* The interned topic equal to topic/len, or NULL. The same topic as the
 * last append is the common case: one memcmp. */
static const tdef *tdef_by_topic(lume_outbox *ob, const char *topic, size_t len)
{
    for (size_t k = 0; k < ob->ntdefs; k++) {
        size_t i = (ob->tlast + k) % ob->ntdefs;
        const tdef *d = &ob->tdefs[i];
        if (d->len == len && !memcmp(d->topic, topic, len)) {
            ob->tlast = i;
            return d;
        }
    }
    return NULL;
}

/* The topic a stored reference (TOPIC_REF + id) names, or NULL. */
static const tdef *tdef_by_ref(const lume_outbox *ob, const char *ref, size_t len)
{
    uint64_t id = 0;
    for (size_t i = 1; i < len; i++) {
        if (ref[i] < '0' || ref[i] > '9')
            return NULL;
        id = id * 10 + (uint64_t)(ref[i] - '0');
    }
    size_t lo = 0, hi = ob->ntdefs;   /* tdefs are in id order */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ob->tdefs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ob->ntdefs && ob->tdefs[lo].id == id ? &ob->tdefs[lo] : NULL;
}

/* Read the topic rows (at open, and after a salvage). 0 or -EIO/-ENOMEM. */
static int tdefs_load(lume_outbox *ob)
{
    tdefs_clear(ob);
    sqlite3_stmt *s = ob->st[S_TOPICS];
    int rc, r = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (!tdef_add(ob, (uint64_t)sqlite3_column_int64(s, 0),
                      (const char *)sqlite3_column_text(s, 1) ? (const char *)sqlite3_column_text(s, 1) : "",
                      (size_t)sqlite3_column_bytes(s, 1))) {
            r = -ENOMEM;
            break;
        }
    sqlite3_reset(s);
    return r ? r : rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -EIO;
}

/* ---- open / close ------------------------------------------------------ */

/* A row's bytes: its topic's (the interned one for a reference, invariant
 * 9) plus its payload's. T is the row's table name or alias. */
#define TOPIC_BYTES(T)                                                                      \
    "(CASE WHEN substr(" T ".topic,1,1)=char(1) THEN ifnull((SELECT length(CAST(d.topic AS"  \
    " BLOB)) FROM outbox d WHERE d.id=CAST(substr(" T ".topic,2) AS INTEGER) AND"          \
    " d.lane=255),0) ELSE length(CAST(" T ".topic AS BLOB)) END)"
#define ROW_BYTES TOPIC_BYTES("outbox") " + ifnull(length(payload),0)"

static const char *const sql_text[S_COUNT] = {
    [S_PEEK] = "SELECT id,qos,created_ms,expires_ms,packet_id,attempts,topic,payload"
               " FROM outbox WHERE lane=?1 AND id>?2 AND id<?3 ORDER BY id",
    [S_EVICT] = "SELECT id, " ROW_BYTES ", packet_id != 0"
                " FROM outbox WHERE lane=?1 AND id>?2 AND id<?3 ORDER BY id",
    [S_LOOKUP] = "SELECT lane,packet_id,attempts, " ROW_BYTES " FROM outbox WHERE id=?1",
    /* invariant 9: topic rows are not messages; a reference is resolved (a
     * lost topic row leaves the reference itself) */
    [S_DUMP] = "SELECT o.id,o.lane,o.qos,o.created_ms,o.expires_ms,o.packet_id,o.attempts,"
               " CASE WHEN substr(o.topic,1,1)=char(1) THEN ifnull((SELECT d.topic FROM outbox d"
               "  WHERE d.id=CAST(substr(o.topic,2) AS INTEGER) AND d.lane=255), o.topic)"
               " ELSE o.topic END, o.payload FROM outbox o WHERE o.lane<255 ORDER BY o.lane, o.id",
    [S_TOPICS] = "SELECT id, topic FROM outbox WHERE lane=255 ORDER BY id",
    [S_STATS] = "SELECT lane, count(*), ifnull(sum(" ROW_BYTES "),0),"
                " ifnull(sum(packet_id != 0),0) FROM outbox GROUP BY lane",
    [S_LANES] = "SELECT lane, depth, bytes, sent, dropped, refused, expired FROM outbox_lanes",
    [S_FREE] = "PRAGMA freelist_count",
};

static const char *const wsql_text[W_COUNT] = {
    [W_BEGIN] = "BEGIN",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_INSERT] = "INSERT INTO outbox(id,lane,qos,created_ms,expires_ms,packet_id,"
                 "attempts,topic,payload) VALUES(?1,?2,?3,?4,?5,0,0,?6,?7)",
    [W_UPDATE] = "UPDATE outbox SET packet_id=?2, attempts=?3 WHERE id=?1",
    [W_DELETE] = "DELETE FROM outbox WHERE id=?1",
    [W_LANES] = "UPDATE outbox_lanes SET depth=depth+?2, bytes=bytes+?3, sent=sent+?4,"
                " dropped=dropped+?5, refused=refused+?6, expired=expired+?7 WHERE lane=?1",
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
    "CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox(lane, id);"
    /* Invariant 6: what opening reads instead of scanning the backlog, and
     * the loss counters that outlive the process. */
    "CREATE TABLE IF NOT EXISTS outbox_lanes("
    " lane INTEGER PRIMARY KEY,"
    " depth INTEGER NOT NULL DEFAULT 0,"
    " bytes INTEGER NOT NULL DEFAULT 0,"
    " sent INTEGER NOT NULL DEFAULT 0,"
    " dropped INTEGER NOT NULL DEFAULT 0,"
    " refused INTEGER NOT NULL DEFAULT 0,"
    " expired INTEGER NOT NULL DEFAULT 0);"
    "INSERT OR IGNORE INTO outbox_lanes(lane) VALUES(0),(1),(2);";

/* Schema version 1 had no outbox_lanes: count its backlog once, the only
 * full scan an outbox file ever gets (and a file salvaged by the store,
 * schema 0 again, gets the same). */
static const char migrate_v1_sql[] =
    "UPDATE outbox_lanes SET"
    " depth=(SELECT count(*) FROM outbox o WHERE o.lane=outbox_lanes.lane),"
    " bytes=(SELECT ifnull(sum(" TOPIC_BYTES("o") " + ifnull(length(o.payload),0)),0)"
    "        FROM outbox o WHERE o.lane=outbox_lanes.lane),"
    " sent=(SELECT count(*) FROM outbox o WHERE o.lane=outbox_lanes.lane AND o.packet_id!=0);";

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

static void stop_committer(lume_outbox *ob);

/* The loop's read connection: `db` itself when single, else its own on
 * the file the store uses. Its statements are finalized. */
static void close_reader(lume_outbox *ob)
{
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(ob->st[i]);
        ob->st[i] = NULL;
    }
    if (ob->db && ob->db != ob->wdb)
        sqlite3_close(ob->db);
    ob->db = NULL;
}

/* Let go of the write connection: no committer, no checkpointer, no
 * statements (the connection itself stays the store's). */
static void detach(lume_outbox *ob)
{
    stop_committer(ob);
    stop_checkpointer(ob);
    close_reader(ob);
    for (int i = 0; i < W_COUNT; i++) {
        sqlite3_finalize(ob->wst[i]);
        ob->wst[i] = NULL;
    }
}

static void free_handle(lume_outbox *ob)
{
    detach(ob);
    if (ob->sd)
        lume_store_db_close(ob->sd);   /* puts a deleted or spilled file back first */
    else if (ob->wdb)
        sqlite3_close(ob->wdb);
    if (ob->cm_inited) {
        pthread_mutex_destroy(&ob->mu);
        pthread_cond_destroy(&ob->cv_work);
        pthread_cond_destroy(&ob->cv_done);
    }
    idmap_free(&ob->meta);
    tdefs_clear(ob);
    free(ob->tdefs);
    batch_free(&ob->bat[0]);
    batch_free(&ob->bat[1]);
    free(ob->path);
    free(ob);
}

/* Per-lane depth, bytes and sent rows counted from the table: the read-only
 * view of a file whose writer never added outbox_lanes (schema 1). */
static int scan_counts(lume_outbox *ob, uint64_t *depth, uint64_t *bytes, uint64_t *sent)
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

/* Invariant 6: the counts of outbox_lanes, one row per lane (O(1), no scan
 * of the messages). st gets depth, bytes, dropped, refused, expired; sent
 * the rows sent and not acknowledged. */
static int read_lanes(lume_outbox *ob, lume_outbox_stats *st, uint64_t *sent)
{
    sqlite3_stmt *s = ob->st[S_LANES];
    int rc;
    for (int l = 0; l < LUME_LANES; l++)
        sent[l] = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int l = sqlite3_column_int(s, 0);
        if (l < 0 || l >= LUME_LANES)
            continue;
        st->depth[l] = (uint64_t)sqlite3_column_int64(s, 1);
        st->bytes[l] = (uint64_t)sqlite3_column_int64(s, 2);
        sent[l] = (uint64_t)sqlite3_column_int64(s, 3);
        st->dropped[l] = (uint64_t)sqlite3_column_int64(s, 4);
        st->refused[l] = (uint64_t)sqlite3_column_int64(s, 5);
        st->expired[l] = (uint64_t)sqlite3_column_int64(s, 6);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Create the tables, or bring a schema 1 file (or a salvaged one, 0) up
 * to date, in one transaction on the write connection. SQLITE_OK or
 * SQLite's error (the message is in ob->wdb). */
static int setup_schema(lume_outbox *ob, int64_t ver)
{
    if (ver >= SCHEMA_VERSION)
        return SQLITE_OK;
    sqlite3 *db = ob->wdb;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
    /* 0: a new file (nothing to count), or one the store salvaged at open
     * (its rows counted once; the loss totals did not survive) */
    if (rc == SQLITE_OK && ver <= 1)
        rc = sqlite3_exec(db, migrate_v1_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA user_version=3", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot set up the schema: %s", ob->path, msg);
    } else if (rc == SQLITE_OK && ver >= 1) {
        lume_log(LUME_LOG_INFO, COMP, "%s: schema %d -> 3:%s topics of new messages are "
                 "interned (older rows keep theirs)", ob->path, (int)ver,
                 ver == 1 ? " lane counts now kept in the file (opening no longer scans the "
                            "backlog);" : "");
    }
    return rc;
}

/* The table, for salvage and fresh files (core/store/store.c). The index
 * names every row, so rows lost with a damaged table page are counted
 * exactly. A fresh file gives free pages back (auto_vacuum is set before
 * anything is written to it). */
static const lume_store_table outbox_table = {
    .file = "outbox",
    .table = "outbox",
    .pragmas = "PRAGMA auto_vacuum=INCREMENTAL",
    .schema = schema_sql,
    .cols = "id,lane,qos,created_ms,expires_ms,packet_id,attempts,topic,payload",
    .ncols = 9,
    .nkey = 1,
    .key1 = "id",
    .hints_asc = "SELECT id FROM outbox INDEXED BY outbox_lane_id",
    .hints_desc = "SELECT id FROM outbox INDEXED BY outbox_lane_id ORDER BY lane DESC, id DESC",
};

/* ob->path follows the file in use (the read connection and the
 * checkpointer open it by name). Only while neither thread runs. */
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

static void *committer(void *arg);
static void reap(lume_outbox *ob);

/* Set up the write connection (the store's): pragmas, schema, statements;
 * then the read connection. *wal says whether the file is in WAL mode with
 * shared memory (the checkpointer can run). 0, or -1 with *what. */
static int attach(lume_outbox *ob, int64_t ver, bool *wal, const char **what)
{
    ob->wdb = lume_store_db_handle(ob->sd);
    bool mem = lume_store_db_in_memory(ob->sd);
    bool excl = lume_store_db_exclusive(ob->sd);
    ob->single = mem || excl;
    *wal = false;
    sqlite3_busy_timeout(ob->wdb, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(ob->wdb, 1);
    char mode[16] = "memory";
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA journal_size_limit=%d", WAL_KEEP_BYTES);
    int64_t av = 0;
    /* auto_vacuum takes effect only in a file without tables (a new one;
     * store.c sets it first, outbox_table.pragmas); an older file is
     * converted by the committer once it drains (reclaim). */
    if ((!mem && exec_text(ob->wdb, "PRAGMA journal_mode=WAL", mode, sizeof mode) != SQLITE_OK) ||
        sqlite3_exec(ob->wdb, ob->opts.synchronous_full ? "PRAGMA synchronous=FULL"
                                                       : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK ||
        /* exclusive locking: nobody else can checkpoint, the WAL must stay
         * small, so SQLite checkpoints on commit */
        sqlite3_exec(ob->wdb, excl ? "PRAGMA wal_autocheckpoint=64" : "PRAGMA wal_autocheckpoint=0",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(ob->wdb, sql, NULL, NULL, NULL) != SQLITE_OK ||
        setup_schema(ob, ver) != SQLITE_OK ||
        exec_int(ob->wdb, "PRAGMA auto_vacuum", &av) != SQLITE_OK ||
        exec_int(ob->wdb, "PRAGMA page_size", &ob->page_size) != SQLITE_OK) {
        *what = sqlite3_errmsg(ob->wdb);
        return -1;
    }
    if (!mem && strcmp(mode, "wal"))
        lume_log(LUME_LOG_WARN, COMP, "%s: WAL mode not available (journal_mode "
                 "is %s): commits will be slower", ob->path, mode);
    *wal = !mem && !excl && !strcmp(mode, "wal");
    ob->auto_vacuum = (int)av;
    ob->sync_full_is = ob->sync_full_want = ob->opts.synchronous_full;
    for (int i = 0; i < W_COUNT; i++)
        if (sqlite3_prepare_v3(ob->wdb, wsql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &ob->wst[i], NULL) != SQLITE_OK) {
            *what = sqlite3_errmsg(ob->wdb);
            return -1;
        }
    if (ob->single) {
        ob->db = ob->wdb;
    } else {
        if (sqlite3_open_v2(ob->path, &ob->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                            NULL) != SQLITE_OK) {
            *what = ob->db ? sqlite3_errmsg(ob->db) : "cannot allocate a connection: out of memory";
            return -1;
        }
        sqlite3_busy_timeout(ob->db, BUSY_TIMEOUT_MS);
        sqlite3_extended_result_codes(ob->db, 1);
    }
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(ob->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &ob->st[i], NULL) != SQLITE_OK) {
            *what = sqlite3_errmsg(ob->db);
            return -1;
        }
    return 0;
}

/* The committer thread (and the checkpointer, in WAL mode); none when
 * single (invariant 8): jobs then run on the loop thread. */
static void start_committer(lume_outbox *ob, bool wal)
{
    if (!ob->cm_inited) {
        pthread_mutex_init(&ob->mu, NULL);
        pthread_cond_init(&ob->cv_work, NULL);
        pthread_cond_init(&ob->cv_done, NULL);
        ob->cm_inited = true;
    }
    ob->reclaim_due = true;   /* a file may open with space to give back */
    ob->cm_quit = ob->cm_wants_wdb = ob->wdb_busy = ob->wal_restart_due = false;
    ob->wal_pages = 0;
    if (ob->single)
        return;
    if (wal && ob->opts.inline_checkpoints) {
        /* a low-rate device: its few commits can afford SQLite's own */
        sqlite3_exec(ob->wdb, "PRAGMA wal_autocheckpoint=1000", NULL, NULL, NULL);
    } else if (wal) {
        ob->ckpt_quit = ob->ckpt_due = false;
        start_checkpointer(ob);   /* before the committer uses wdb: it hooks it */
    }
    if (pthread_create(&ob->cm_thread, NULL, committer, ob) == 0)
        ob->cm_running = true;
    else
        lume_log(LUME_LOG_WARN, COMP, "%s: cannot start the committer thread: commits run "
                 "on the caller's thread", ob->path);
}

/* Join the committer; a job it still held is drained first (the barrier's
 * wait), so the job is the loop's afterwards. */
static void stop_committer(lume_outbox *ob)
{
    if (!ob->cm_running)
        return;
    pthread_mutex_lock(&ob->mu);
    int js;
    while ((js = atomic_load(&ob->jstate)) == J_QUEUED || js == J_RUNNING)
        pthread_cond_wait(&ob->cv_done, &ob->mu);
    ob->cm_quit = true;
    pthread_cond_signal(&ob->cv_work);
    pthread_mutex_unlock(&ob->mu);
    pthread_join(ob->cm_thread, NULL);
    ob->cm_running = false;
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
    ob->cur = &ob->bat[0];
    ob->job = &ob->bat[1];
    atomic_init(&ob->jstate, J_NONE);

    int64_t ver = 0;
    if (readonly) {
        /* While outbox.db cannot be written the runtime keeps its rows in
         * a spill next to it (store.c): that is what there is to read. */
        char *spill = lume_strdupf("%s.spill", path);
        const char *file = spill && access(spill, F_OK) == 0 ? spill : path;
        int rc = sqlite3_open_v2(file, &ob->db, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READONLY,
                                 NULL);
        free(spill);
        if (rc != SQLITE_OK) {
            what = ob->db ? sqlite3_errmsg(ob->db) : "cannot allocate a connection: out of memory";
            goto err;
        }
        sqlite3_busy_timeout(ob->db, BUSY_TIMEOUT_MS);
        sqlite3_extended_result_codes(ob->db, 1);
        if (exec_int(ob->db, "PRAGMA user_version", &ver) != SQLITE_OK) {
            what = sqlite3_errmsg(ob->db);
            goto err;
        }
        if (ver > SCHEMA_VERSION) {
            what = "written by a newer lume (schema version too high)";
            goto err;
        }
        for (int i = 0; i < S_COUNT; i++) {
            if (i != S_DUMP && i != S_STATS && (i != S_LANES || ver < 2))
                continue;
            if (sqlite3_prepare_v3(ob->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                                   &ob->st[i], NULL) != SQLITE_OK) {
                what = sqlite3_errmsg(ob->db);
                goto err;
            }
        }
        return ob;
    }

    /* Damage, emptiness, a read-only file or a full disk never stop the
     * open: store.c salvages, spills or keeps the rows in memory. */
    ob->sd = lume_store_db_open(path, &outbox_table, &why);
    if (!ob->sd) {
        what = why ? why : "cannot open";
        goto err;
    }
    ob->wdb = lume_store_db_handle(ob->sd);
    if (follow_file(ob) < 0)
        goto err;
    if (exec_int(ob->wdb, "PRAGMA user_version", &ver) != SQLITE_OK) {
        what = sqlite3_errmsg(ob->wdb);
        goto err;
    }
    if (ver > SCHEMA_VERSION) {
        what = "written by a newer lume (schema version too high)";
        goto err;
    }
    bool wal = false;
    if (attach(ob, ver, &wal, &what) < 0)
        goto err;
    uint64_t sent[LUME_LANES];
    int64_t maxid = 0;
    if (read_lanes(ob, &ob->st_ctr, sent) < 0 || tdefs_load(ob) < 0 ||
        exec_int(ob->db, "SELECT ifnull(max(id),0) FROM outbox", &maxid) != SQLITE_OK) {
        what = sqlite3_errmsg(ob->db);
        goto err;
    }
    for (int l = 0; l < LUME_LANES; l++) {
        ob->depth[l] = ob->st_ctr.depth[l];
        ob->bytes[l] = ob->st_ctr.bytes[l];
        ob->st_ctr.depth[l] = ob->st_ctr.bytes[l] = 0;
    }
    ob->next_id = ob->visible_below = (uint64_t)maxid + 1;
    start_committer(ob, wal);
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
    if (!ob->readonly && lume_outbox_commit(ob) < 0 && lume_store_db_full(ob->sd)) {
        /* A full disk: the WAL's own space, given back, may take the batch.
         * The threads are stopped first (wdb is the loop's alone then). */
        stop_committer(ob);
        stop_checkpointer(ob);
        if (lume_store_db_relieve(ob->sd) == 0)
            lume_outbox_commit(ob);
    }
    if (!ob->readonly && (atomic_load(&ob->jstate) != J_NONE || ob->cur->since_ns)) {
        uint64_t n = ob->cur->nlive + ob->job->nlive;
        lume_log(LUME_LOG_ERROR, COMP,
                 "%s: closing with a failed commit: %llu uncommitted message(s) lost",
                 ob->path, (unsigned long long)n);
    }
    free_handle(ob);
}

/* ---- the file under the outbox (store.c) ------------------------------- */

/* Count outbox_lanes again from the rows (a salvaged file: its counts
 * started at 0); the loss totals come from memory. Everything accepted is
 * committed and no thread uses wdb. SQLITE_OK or the error. */
static int recount(lume_outbox *ob)
{
    int rc = sqlite3_exec(ob->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(ob->wdb, migrate_v1_sql, NULL, NULL, NULL);
    for (int l = 0; l < LUME_LANES && rc == SQLITE_OK; l++) {
        char sql[192];
        snprintf(sql, sizeof sql, "UPDATE outbox_lanes SET dropped=%llu, refused=%llu, "
                 "expired=%llu WHERE lane=%d", (unsigned long long)ob->st_ctr.dropped[l],
                 (unsigned long long)ob->st_ctr.refused[l],
                 (unsigned long long)ob->st_ctr.expired[l], l);
        rc = sqlite3_exec(ob->wdb, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(ob->wdb, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite3_extended_errcode(ob->wdb);
        lume_store_db_note(ob->sd, rc, sqlite3_errmsg(ob->wdb));
        if (!sqlite3_get_autocommit(ob->wdb))
            sqlite3_exec(ob->wdb, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* The table lost rows (a salvage), or its counts were not recounted yet:
 * make memory and outbox_lanes agree with it again. The pending batches are
 * written first (on the loop: the committer is stopped), then outbox_lanes
 * is recounted; in-flight marks of rows that are gone are dropped (they
 * were sent: their PUBACK finds nothing to delete); cursors start again
 * from the first row. */
static void reconcile(lume_outbox *ob)
{
    if (lume_outbox_commit(ob) == 0 && recount(ob) == SQLITE_OK) {
        if (ob->recount_due)
            lume_log(LUME_LOG_INFO, COMP, "%s: lane counts recounted from the salvaged rows",
                     ob->path);
        ob->recount_due = false;
    } else {
        ob->recount_due = true;   /* again on the next lume_outbox_check */
    }
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
    /* invariant 9: the topic rows that survived (a message whose topic row
     * was lost is dropped by peek, logged) */
    if (tdefs_load(ob) < 0)
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot read the topics back: %s", ob->path,
                 sqlite3_errmsg(ob->db));

    uint64_t sent[LUME_LANES];
    if (scan_counts(ob, ob->depth, ob->bytes, sent) < 0)
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot count the salvaged rows: %s", ob->path,
                 sqlite3_errmsg(ob->db));
    /* what is still pending (the commit above failed): its live messages,
     * minus the deletes of rows that are there */
    batch *bs[2] = {ob->job, ob->cur};
    for (int b = 0; b < 2; b++) {
        if (b == 0 && atomic_load(&ob->jstate) == J_NONE)
            continue;
        const batch *j = bs[b];
        for (size_t i = 0; i < j->npend; i++) {
            const pend *p = &j->pend[i];
            if (p->dropped || p->lane == TOPIC_LANE)
                continue;
            ob->depth[p->lane]++;
            ob->bytes[p->lane] += p->tbytes + p->len;
        }
        for (size_t i = 0; i < j->del.cap; i++) {
            if (!j->del.slot[i].id)
                continue;
            sqlite3_bind_int64(s, 1, (sqlite3_int64)j->del.slot[i].id);
            if (sqlite3_step(s) == SQLITE_ROW) {
                int l = sqlite3_column_int(s, 0);
                uint64_t by = (uint64_t)sqlite3_column_int64(s, 3);
                if (l >= 0 && l < LUME_LANES && ob->depth[l]) {
                    ob->depth[l]--;
                    ob->bytes[l] -= by <= ob->bytes[l] ? by : ob->bytes[l];
                }
            }
            sqlite3_reset(s);
        }
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

/* The loop borrows wdb from the committer for a call into the store that
 * looks at the connection (lume_store_db_due asks it whether its file has
 * moved): it waits until the committer is between two uses of wdb. */
static void hold_wdb(lume_outbox *ob)
{
    if (!ob->cm_running)
        return;
    pthread_mutex_lock(&ob->mu);
    while (ob->wdb_busy)
        pthread_cond_wait(&ob->cv_done, &ob->mu);
    ob->wdb_busy = true;
    pthread_mutex_unlock(&ob->mu);
}

static void release_wdb(lume_outbox *ob)
{
    if (!ob->cm_running)
        return;
    pthread_mutex_lock(&ob->mu);
    ob->wdb_busy = false;
    if (ob->cm_wants_wdb || atomic_load(&ob->jstate) == J_QUEUED)
        pthread_cond_signal(&ob->cv_work);
    pthread_mutex_unlock(&ob->mu);
}

int lume_outbox_check(lume_outbox *ob)
{
    if (!ob || ob->readonly)
        return 0;
    hold_wdb(ob);
    bool due = lume_store_db_due(ob->sd);
    release_wdb(ob);
    if (!due && !ob->recount_due)
        return 0;
    /* Invariant 8: the job drained, the threads stopped, every statement
     * finalized, before the store may replace wdb. */
    reap(ob);
    detach(ob);   /* a job the committer holds is finished first; reaped after */
    int r = due ? lume_store_db_repair(ob->sd) : 0;
    follow_file(ob);
    const char *what = NULL;
    int64_t ver = 0;   /* a salvaged file starts at 0 */
    bool wal = false;
    ob->wdb = lume_store_db_handle(ob->sd);
    exec_int(ob->wdb, "PRAGMA user_version", &ver);
    if (attach(ob, ver, &wal, &what) < 0) {
        lume_log(LUME_LOG_ERROR, COMP, "%s: cannot prepare the outbox again: %s", ob->path,
                 what ? what : "?");
        lume_store_db_note(ob->sd, sqlite3_extended_errcode(ob->wdb), what);
        start_committer(ob, false);
        return -EIO;
    }
    if (r == 2 || ob->recount_due) {
        if (r == 2)
            ob->recount_due = true;
        reconcile(ob);
    }
    start_committer(ob, wal);
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
    opts_normalise(&ob->opts, o);
    /* synchronous belongs to the committer's connection: it applies the
     * change before its next write. */
    pthread_mutex_lock(&ob->mu);
    ob->sync_full_want = ob->opts.synchronous_full;
    pthread_mutex_unlock(&ob->mu);
}

const lume_outbox_opts *lume_outbox_get_opts(const lume_outbox *ob)
{
    return ob ? &ob->opts : NULL;
}

void lume_outbox_set_notify(lume_outbox *ob, void (*fn)(void *ud), void *ud)
{
    if (!ob || ob->readonly)
        return;
    pthread_mutex_lock(&ob->mu);
    ob->notify = fn;
    ob->notify_ud = ud;
    pthread_mutex_unlock(&ob->mu);
}

const char *lume_outbox_last_error(const lume_outbox *ob)
{
    return ob ? ob->last_err : "";
}

/* ---- the committer (its own thread, its own connection) ----------------- */

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

/* The statements of one transaction: the job's inserts, updates, deletes
 * and counter changes. */
static int write_batch(lume_outbox *ob, const batch *j)
{
    int rc;
    sqlite3_stmt *ins = ob->wst[W_INSERT], *upds = ob->wst[W_UPDATE];
    sqlite3_stmt *del = ob->wst[W_DELETE], *lanes = ob->wst[W_LANES];
    int64_t added[LUME_LANES][2] = {{0}};

    for (size_t i = 0; i < j->npend; i++) {
        const pend *p = &j->pend[i];
        if (p->dropped)
            continue;
        const char *topic = j->arena + p->off;
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)p->id);
        sqlite3_bind_int(ins, 2, p->lane);
        sqlite3_bind_int(ins, 3, p->qos);
        sqlite3_bind_int64(ins, 4, p->created_ms);
        sqlite3_bind_int64(ins, 5, p->expires_ms);
        /* The arena does not move while the job is ours: SQLITE_STATIC. */
        sqlite3_bind_text(ins, 6, topic, (int)p->topic_len, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 7, topic + p->topic_len + 1, (int)p->len, SQLITE_STATIC);
        if ((rc = step_reset(ins)) != SQLITE_OK)
            return rc;
        if (p->lane == TOPIC_LANE)
            continue;   /* a topic row: not a message (invariant 9) */
        added[p->lane][0]++;
        added[p->lane][1] += p->tbytes + p->len;
    }
    for (size_t i = 0; i < j->nupd; i++) {
        sqlite3_bind_int64(upds, 1, (sqlite3_int64)j->upd[i].id);
        sqlite3_bind_int(upds, 2, j->upd[i].packet_id);
        sqlite3_bind_int64(upds, 3, j->upd[i].attempts);
        if ((rc = step_reset(upds)) != SQLITE_OK)
            return rc;
    }
    if (j->del.n) {
        /* Deletes in id order walk the b-tree pages once instead of at random. */
        size_t n = 0;
        uint64_t *ids = malloc(j->del.n * sizeof *ids);
        if (!ids)
            return SQLITE_NOMEM;
        for (size_t i = 0; i < j->del.cap; i++)
            if (j->del.slot[i].id)
                ids[n++] = j->del.slot[i].id;
        qsort(ids, n, sizeof *ids, cmp_id);
        rc = SQLITE_OK;
        for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
            sqlite3_bind_int64(del, 1, (sqlite3_int64)ids[i]);
            rc = step_reset(del);
        }
        free(ids);
        if (rc != SQLITE_OK)
            return rc;
    }
    /* Invariant 6: the counts change in the same transaction as the rows. */
    for (int l = 0; l < LUME_LANES; l++) {
        int64_t d[C_COUNT];
        bool any = false;
        for (int c = 0; c < C_COUNT; c++) {
            d[c] = j->ctr[l][c] + (c == C_DEPTH ? added[l][0] : c == C_BYTES ? added[l][1] : 0);
            any |= d[c] != 0;
        }
        if (!any)
            continue;
        sqlite3_bind_int(lanes, 1, l);
        for (int c = 0; c < C_COUNT; c++)
            sqlite3_bind_int64(lanes, 2 + c, d[c]);
        if ((rc = step_reset(lanes)) != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Cut the WAL back to nothing: checkpoint what the checkpointer has not
 * copied yet, wait (busy timeout) for readers to leave the WAL, truncate it.
 * Only the committer writes, so this blocks no other writer. */
static void wal_truncate(lume_outbox *ob)
{
    int rc;
    /* SQLITE_BUSY at once: the checkpointer is in a checkpoint (a few ms) */
    for (int i = 0; i < 50; i++) {
        rc = sqlite3_wal_checkpoint_v2(ob->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (rc != SQLITE_BUSY)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (rc == SQLITE_OK)
        ob->wal_pages = 0;
    else if (rc != SQLITE_BUSY)
        lume_log(LUME_LOG_WARN, COMP, "%s: checkpoint: %s", ob->path, sqlite3_errmsg(ob->wdb));
}

/* The WAL starts over only when a commit begins with all of it in the
 * database file and no reader in it. While commits follow each other
 * closely and the loop reads (a drain) that moment rarely comes, and the WAL
 * grows; past WAL_MAX_PAGES the committer cuts it back between two of its
 * own commits. The checkpointer has copied most of it by then, so this
 * costs the committer little, and the loop nothing. */
static void bound_wal(lume_outbox *ob)
{
    if (ob->wal_pages >= WAL_MAX_PAGES)
        wal_truncate(ob);
}

/* One transaction for the job, on the thread that holds wdb: SQLITE_OK, or
 * the error with everything rolled back and the reason in ob->job_err. */
static int run_job(lume_outbox *ob, bool on_loop)
{
    if (!on_loop)
        bound_wal(ob);   /* the loop leaves that to the committer */
    int rc = step_reset(ob->wst[W_BEGIN]);
    if (rc == SQLITE_OK)
        rc = write_batch(ob, ob->job);
    if (rc == SQLITE_OK)
        rc = step_reset(ob->wst[W_COMMIT]);
    if (rc != SQLITE_OK) {
        /* Keep the message before ROLLBACK replaces it. */
        snprintf(ob->job_err, sizeof ob->job_err, "%s, code %d", sqlite3_errmsg(ob->wdb), rc);
        if (!sqlite3_get_autocommit(ob->wdb))
            step_reset(ob->wst[W_ROLLBACK]);
    }
    ob->job_rc = rc;   /* read by the loop after jstate (release/acquire) */
    return rc;
}

/* Give free pages back to the file system, one chunk (one transaction) at a
 * time, between jobs. A file made before auto_vacuum (schema 1) is VACUUMed
 * once into incremental mode, when it holds no message (then it is cheap).
 * Returns true when there is more to do. */
static bool reclaim_step(lume_outbox *ob)
{
    int64_t freep = 0, pages = 0;
    if (exec_int(ob->wdb, "PRAGMA freelist_count", &freep) != SQLITE_OK ||
        exec_int(ob->wdb, "PRAGMA page_count", &pages) != SQLITE_OK)
        return false;
    if (freep < RECLAIM_MIN_PAGES || freep * RECLAIM_FRACTION < pages)
        return false;
    if (ob->auto_vacuum != 2) {
        int64_t any = 1, av = 0;
        if (exec_int(ob->wdb, "SELECT EXISTS(SELECT 1 FROM outbox)", &any) != SQLITE_OK || any)
            return false;
        if (sqlite3_exec(ob->wdb, "PRAGMA auto_vacuum=INCREMENTAL", NULL, NULL, NULL) !=
                SQLITE_OK ||
            sqlite3_exec(ob->wdb, "VACUUM", NULL, NULL, NULL) != SQLITE_OK ||
            exec_int(ob->wdb, "PRAGMA auto_vacuum", &av) != SQLITE_OK || av != 2) {
            lume_log(LUME_LOG_WARN, COMP, "%s: cannot switch to incremental vacuum: %s "
                     "(free pages are reused, not given back)", ob->path,
                     sqlite3_errmsg(ob->wdb));
            ob->auto_vacuum = -1;   /* do not try again in this process */
            return false;
        }
        ob->auto_vacuum = 2;
        lume_log(LUME_LOG_INFO, COMP, "%s: vacuumed into incremental mode (%lld free pages "
                 "given back)", ob->path, (long long)freep);
        return true;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%d)", RECLAIM_CHUNK);
    if (sqlite3_exec(ob->wdb, sql, NULL, NULL, NULL) != SQLITE_OK) {
        lume_log(LUME_LOG_WARN, COMP, "%s: incremental vacuum: %s", ob->path,
                 sqlite3_errmsg(ob->wdb));
        return false;
    }
    return true;
}

/* After a commit: look for free pages to give back at most once a second
 * (two PRAGMAs; at 1,000 commits/s looking every time kept the committer
 * busy, and durable publishes waiting behind it). Under mu. */
static void reclaim_after_commit(lume_outbox *ob)
{
    int64_t now = lume_mono_ns();
    if (now - ob->reclaim_last_ns >= LUME_NS_PER_SEC) {
        ob->reclaim_last_ns = now;
        ob->reclaim_due = true;
        ob->reclaim_later = false;
    } else {
        ob->reclaim_later = true;
    }
}

/* The committer's connection follows opts.synchronous_full (set_opts). */
static void apply_sync(lume_outbox *ob, bool want)
{
    if (want != ob->sync_full_is &&
        sqlite3_exec(ob->wdb, want ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) == SQLITE_OK)
        ob->sync_full_is = want;
}

static void *committer(void *arg)
{
    lume_outbox *ob = arg;
    pthread_setname_np(pthread_self(), "lume-commit");
    pthread_mutex_lock(&ob->mu);
    for (;;) {
        if (ob->wdb_busy) {   /* the loop writes a job itself */
            ob->cm_wants_wdb = true;
            pthread_cond_wait(&ob->cv_work, &ob->mu);
            continue;
        }
        ob->cm_wants_wdb = false;
        if (atomic_load(&ob->jstate) == J_QUEUED) {
            lume_check(!ob->single, "invariant 8: no committer while db is wdb");
            atomic_store(&ob->jstate, J_RUNNING);
            ob->wdb_busy = true;
            bool want = ob->sync_full_want;
            pthread_mutex_unlock(&ob->mu);
            apply_sync(ob, want);
            int rc = run_job(ob, false);
            pthread_mutex_lock(&ob->mu);
            ob->wdb_busy = false;
            atomic_store_explicit(&ob->jstate, rc == SQLITE_OK ? J_DONE : J_FAILED,
                                  memory_order_release);
            pthread_cond_broadcast(&ob->cv_done);
            if (rc == SQLITE_OK)
                reclaim_after_commit(ob);
            void (*fn)(void *) = ob->notify;
            void *ud = ob->notify_ud;
            pthread_mutex_unlock(&ob->mu);
            if (fn)
                fn(ud);   /* lume_loop_wake: the loop reaps and sends */
            pthread_mutex_lock(&ob->mu);
            continue;
        }
        if (ob->cm_quit)
            break;
        if (ob->wal_restart_due) {
            ob->wal_restart_due = false;
            ob->wdb_busy = true;
            pthread_mutex_unlock(&ob->mu);
            wal_truncate(ob);
            pthread_mutex_lock(&ob->mu);
            ob->wdb_busy = false;
            pthread_cond_broadcast(&ob->cv_done);   /* the loop may wait for wdb */
            continue;
        }
        if (ob->reclaim_due) {
            ob->wdb_busy = true;
            pthread_mutex_unlock(&ob->mu);
            bool more = reclaim_step(ob);
            pthread_mutex_lock(&ob->mu);
            ob->wdb_busy = false;
            pthread_cond_broadcast(&ob->cv_done);   /* the loop may wait for wdb */
            ob->reclaim_due = more;
            continue;
        }
        if (ob->reclaim_later) {
            /* commits came too soon after the last look: look once the
             * second is up, even when no commit follows (a drain's end) */
            int64_t wait = ob->reclaim_last_ns + LUME_NS_PER_SEC - lume_mono_ns();
            if (wait <= 0) {
                reclaim_after_commit(ob);
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + wait;
            ts.tv_sec += (time_t)(ns / LUME_NS_PER_SEC);
            ts.tv_nsec = (long)(ns % LUME_NS_PER_SEC);
            pthread_cond_timedwait(&ob->cv_work, &ob->mu, &ts);
            continue;
        }
        pthread_cond_wait(&ob->cv_work, &ob->mu);
    }
    pthread_mutex_unlock(&ob->mu);
    return NULL;
}

/* ---- hand-off and reaping (the loop's side) ----------------------------- */

static void handoff(lume_outbox *ob);

/* The job is ours again and committed: its rows are visible, its deletes
 * done. */
static void job_done(lume_outbox *ob)
{
    batch *j = ob->job;
    if (j->last_id >= ob->visible_below)
        ob->visible_below = j->last_id + 1;
    lume_check(ob->visible_below <= ob->next_id,
               "invariant 1: nothing is visible that was not appended");
    for (int l = 0; l < LUME_LANES; l++) {
        candq *q = &ob->evq[l];
        if (q->i < q->n)
            ob->cur_evict[l] = q->c[q->i].id - 1;
        q->n = q->i = 0;
    }
    batch_reset(j);
    atomic_store(&ob->jstate, J_NONE);
    ob->st_ctr.commits++;
    ob->fresh = true;
    ob->last_err[0] = 0;
    if (ob->failed_in_row) {
        lume_log(LUME_LOG_INFO, COMP, "%s: commit succeeded after %llu failure(s)",
                 ob->path, (unsigned long long)ob->failed_in_row);
        ob->failed_in_row = 0;
        ob->log_commit.ever = false;
    }

    /* Keep only in-flight and changed entries in meta (the table now holds
     * the rest). */
    size_t keep = 0;
    for (size_t i = 0; i < ob->meta.cap; i++) {
        const ent *e = &ob->meta.slot[i];
        keep += e->id && (e->flags & (F_INFLIGHT | F_DIRTY));
    }
    if (keep != ob->meta.n) {
        idmap fresh = {0};
        bool ok = true;
        for (size_t i = 0; i < ob->meta.cap && ok; i++) {
            ent *e = &ob->meta.slot[i], *f;
            if (!e->id || !(e->flags & (F_INFLIGHT | F_DIRTY)))
                continue;
            if ((f = idmap_put(&fresh, e->id)))
                *f = *e;
            else
                ok = false;
        }
        if (ok) {
            idmap_free(&ob->meta);
            ob->meta = fresh;
        } else {
            /* Out of memory: keep the old map; stale cache entries are
             * harmless (they match the table). */
            idmap_free(&fresh);
        }
    }
    if (ob->handoff_wanted || ob->cur->npend - ob->cur->ntop >= (size_t)ob->opts.commit_batch)
        handoff(ob);
}

/* Take note of what the committer finished. */
static void reap(lume_outbox *ob)
{
    int js = atomic_load_explicit(&ob->jstate, memory_order_acquire);
    if (js == J_DONE) {
        lume_store_db_note(ob->sd, SQLITE_OK, NULL);
        job_done(ob);
    } else if (js == J_FAILED && !ob->job_noted) {
        lume_check(ob->job_rc != SQLITE_OK, "invariant 5: a failed job has its error");
        ob->job_noted = true;
        /* full, read-only, damaged: store.c acts on it (lume_outbox_check) */
        lume_store_db_note(ob->sd, ob->job_rc, ob->job_err);
        ob->st_ctr.commit_errors++;
        ob->failed_in_row++;
        snprintf(ob->last_err, sizeof ob->last_err, "commit failed: %s", ob->job_err);
        if (ratelog_due(&ob->log_commit))
            lume_log(LUME_LOG_ERROR, COMP,
                     "%s: commit failed (%s); the batch is kept and retried "
                     "(%llu failure(s) in a row)", ob->path, ob->job_err,
                     (unsigned long long)ob->failed_in_row);
    }
}

/* Give the job (new, or failed and retried) to the committer. now: the
 * caller waits for it (a barrier); when the committer is idle the loop then
 * writes it itself, which spares the two thread hand-overs (their wake-up
 * latency) that a durable publish would otherwise wait through. */
static void submit(lume_outbox *ob, bool now)
{
    int js0 = atomic_load(&ob->jstate);
    lume_check(js0 == J_NONE || js0 == J_FAILED,
               "job: one job at a time, handed over only when none is out");
    lume_check(js0 == J_NONE || ob->job->since_ns != 0,
               "invariant 5: a failed job is kept whole until it is resubmitted");
    (void)js0;
    ob->job_noted = false;
    bool here = !ob->cm_running;
    if (ob->cm_running) {
        pthread_mutex_lock(&ob->mu);
        if (now && !ob->wdb_busy) {
            ob->wdb_busy = true;
            atomic_store(&ob->jstate, J_RUNNING);
            here = true;
        } else {
            atomic_store(&ob->jstate, J_QUEUED);
            pthread_cond_signal(&ob->cv_work);
        }
        pthread_mutex_unlock(&ob->mu);
    }
    if (!here)
        return;
    apply_sync(ob, ob->opts.synchronous_full);
    int rc = run_job(ob, ob->cm_running);
    if (!ob->cm_running) {
        atomic_store(&ob->jstate, rc == SQLITE_OK ? J_DONE : J_FAILED);
        if (rc == SQLITE_OK)
            reclaim_step(ob);   /* no thread: space is given back here */
        return;
    }
    pthread_mutex_lock(&ob->mu);
    ob->wdb_busy = false;
    atomic_store(&ob->jstate, rc == SQLITE_OK ? J_DONE : J_FAILED);
    bool had = ob->reclaim_due || ob->wal_restart_due || ob->reclaim_later;
    if (rc == SQLITE_OK)
        reclaim_after_commit(ob);
    ob->wal_restart_due |= ob->wal_pages >= WAL_MAX_PAGES;
    /* wake the committer only when it waits for wdb or has new work */
    if (ob->cm_wants_wdb ||
        (!had && (ob->reclaim_due || ob->wal_restart_due || ob->reclaim_later)))
        pthread_cond_signal(&ob->cv_work);
    pthread_mutex_unlock(&ob->mu);
}

/* Hand cur over when the committer is free (else once it is; now: for a
 * barrier, see submit). A failed job is not retried here: commit_start,
 * commit and append's back-pressure do that. */
static void handoff_now(lume_outbox *ob, bool now)
{
    int js = atomic_load(&ob->jstate);
    if (js != J_NONE) {
        ob->handoff_wanted = true;
        return;
    }
    ob->handoff_wanted = false;
    batch *c = ob->cur;
    if (!c->since_ns)
        return;
    /* The packet id and attempts changes go with this batch. */
    for (size_t i = 0; i < ob->meta.cap; i++) {
        ent *e = &ob->meta.slot[i];
        if (!e->id || !(e->flags & F_DIRTY))
            continue;
        if (c->nupd == c->capupd) {
            size_t ncap = c->capupd ? c->capupd * 2 : 64;
            upd *nu = realloc(c->upd, ncap * sizeof *nu);
            if (!nu) {
                c->nupd = 0;   /* out of memory: nothing handed over, retried later */
                return;
            }
            c->upd = nu;
            c->capupd = ncap;
        }
        c->upd[c->nupd++] = (upd){.id = e->id, .attempts = e->attempts,
                                  .packet_id = e->packet_id};
    }
    for (size_t i = 0; i < ob->meta.cap; i++)
        ob->meta.slot[i].flags &= (uint8_t)~F_DIRTY;
    /* Invariant 9: no message left, none pending: this batch deletes the
     * topic rows too (a topic row in c itself is inserted, then deleted). */
    if (ob->ntdefs && !ob->depth[0] && !ob->depth[1] && !ob->depth[2]) {
        size_t i = 0;
        for (; i < ob->ntdefs; i++)
            if (!idmap_put(&c->del, ob->tdefs[i].id))
                break;
        if (i == ob->ntdefs)
            tdefs_clear(ob);   /* else out of memory: kept, deleted another time */
    }
    ob->cur = ob->job;
    ob->job = c;
    submit(ob, now);
}

static void handoff(lume_outbox *ob) { handoff_now(ob, false); }

/* Wait until the committer is done with the job, then reap. */
static void wait_job(lume_outbox *ob)
{
    int js = atomic_load(&ob->jstate);
    if (ob->cm_running && (js == J_QUEUED || js == J_RUNNING)) {
        pthread_mutex_lock(&ob->mu);
        while ((js = atomic_load(&ob->jstate)) == J_QUEUED || js == J_RUNNING)
            pthread_cond_wait(&ob->cv_done, &ob->mu);
        pthread_mutex_unlock(&ob->mu);
    }
    reap(ob);
}

/* ---- commit --------------------------------------------------------------- */

int lume_outbox_commit(lume_outbox *ob)
{
    if (!ob)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    bool ours = false;   /* a failure now is of a job this call submitted */
    for (;;) {
        wait_job(ob);   /* reaping may hand cur over: then wait for that too */
        int js = atomic_load(&ob->jstate);
        if (js == J_QUEUED || js == J_RUNNING)
            continue;
        if (js == J_FAILED) {
            if (ours)
                return -EIO;
            submit(ob, true);   /* retry the failed one first (invariant 5) */
            ours = true;
            continue;
        }
        if (!ob->cur->since_ns)
            return 0;
        handoff_now(ob, true);
        ours = true;
        if (atomic_load(&ob->jstate) == J_NONE)
            return -ENOMEM;   /* could not collect the batch's updates */
    }
}

int lume_outbox_commit_start(lume_outbox *ob)
{
    if (!ob)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    reap(ob);
    if (atomic_load(&ob->jstate) == J_FAILED) {
        if (ob->cur->since_ns)
            ob->handoff_wanted = true;
        submit(ob, false);
        reap(ob);
        return -EIO;
    }
    handoff(ob);
    reap(ob);   /* done already when there is no committer thread */
    return 0;
}

int lume_outbox_poll(lume_outbox *ob)
{
    if (!ob || ob->readonly)
        return 0;
    reap(ob);
    int r = ob->fresh;
    ob->fresh = false;
    return r;
}

int64_t lume_outbox_pending_age_ms(const lume_outbox *ob)
{
    if (!ob || ob->readonly)
        return -1;
    int64_t since = ob->cur->since_ns;
    if (atomic_load(&ob->jstate) != J_NONE && ob->job->since_ns &&
        (!since || ob->job->since_ns < since))
        since = ob->job->since_ns;
    if (!since)
        return -1;
    return (lume_mono_ns() - since) / LUME_NS_PER_MS;
}
/* ---- cap policy -------------------------------------------------------- */

static void forget_row(lume_outbox *ob, uint64_t id, int lane, uint64_t bytes)
{
    ent *e = idmap_get(&ob->meta, id);
    if (e)
        idmap_del(&ob->meta, e);
    lume_check(ob->depth[lane] > 0 && ob->bytes[lane] >= bytes,
               "invariant 4: a lane's depth and bytes never go below zero");
    ob->depth[lane]--;
    ob->bytes[lane] -= bytes;
}

/* Queue the deletion of committed row id (counted in lane by the caller);
 * sent: its packet_id is not 0 (outbox_lanes.sent). -ENOMEM when the
 * pending-delete set cannot grow (nothing changed). */
static int delete_row(lume_outbox *ob, uint64_t id, int lane, uint64_t bytes, bool sent)
{
    lume_check(id < ob->visible_below && !is_deleted(ob, id),
               "invariant 2: only a visible row not already deleted is deleted");
    if (!idmap_put(&ob->cur->del, id))
        return -ENOMEM;
    forget_row(ob, id, lane, bytes);
    int64_t *c = ob->cur->ctr[lane];
    c[C_DEPTH]--;
    c[C_BYTES] -= (int64_t)bytes;
    c[C_SENT] -= sent;
    mark_pending(ob);
    return 0;
}

/* Drop the oldest live message of lane l from batch b (cur, or a failed
 * job: the loop's own). 0, or -ENOENT. */
static int drop_pending(lume_outbox *ob, batch *b, int l)
{
    for (size_t i = b->head[l]; i < b->npend; i++) {
        pend *p = &b->pend[i];
        if (p->lane != l || p->dropped)
            continue;
        lume_check(ob->depth[l] > 0 && b->live[l] > 0,
                   "invariant 4: a lane's depth never goes below zero");
        p->dropped = 1;
        b->head[l] = i + 1;
        b->live[l]--;
        b->nlive--;
        ob->depth[l]--;
        ob->bytes[l] -= p->tbytes + p->len;
        return 0;
    }
    return -ENOENT;
}

static void wait_job(lume_outbox *ob);

/* Drop the oldest droppable message of lane l: committed rows first (they
 * are older), then those of a failed job, then pending ones; a job the
 * committer holds is waited for first (invariant 4). 0, or -ENOENT when
 * there is none. */
static int drop_oldest(lume_outbox *ob, int l)
{
    for (;;) {
        lume_check(ob->depth[l] >= ob->inflight_n[l] + ob->cur->live[l] + ob->job->live[l],
                   "invariant 4: depth counts in flight, pending and committing");
        uint64_t committed = ob->depth[l] - ob->inflight_n[l] - ob->cur->live[l] -
                             ob->job->live[l];
        candq *q = &ob->evq[l];
        while (committed) {
            if (q->i == q->n) {
                /* Refill: the next EVICT_CHUNK rows of the lane, oldest first. */
                sqlite3_stmt *s = ob->st[S_EVICT];
                int rc = SQLITE_DONE;
                q->n = q->i = 0;
                sqlite3_bind_int(s, 1, l);
                sqlite3_bind_int64(s, 2, (sqlite3_int64)ob->cur_evict[l]);
                sqlite3_bind_int64(s, 3, (sqlite3_int64)ob->visible_below);
                while (q->n < EVICT_CHUNK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                    q->c[q->n].id = (uint64_t)sqlite3_column_int64(s, 0);
                    q->c[q->n].bytes = (uint64_t)sqlite3_column_int64(s, 1);
                    q->c[q->n].sent = sqlite3_column_int(s, 2) != 0;
                    ob->cur_evict[l] = q->c[q->n++].id;
                }
                if (!q->n)
                    lume_log(LUME_LOG_ERROR, COMP, "%s: cannot find the oldest %s message "
                             "to drop: %s", ob->path, lane_names[l],
                             rc == SQLITE_DONE ? "counters out of step"
                                               : sqlite3_errmsg(ob->db));
                sqlite3_reset(s);
                if (!q->n)
                    break;
            }
            const cand *c = &q->c[q->i++];
            if (is_deleted(ob, c->id))
                continue;
            const ent *e = idmap_get(&ob->meta, c->id);
            if (e && (e->flags & F_INFLIGHT))
                continue;
            /* meta knows a packet id not yet written */
            bool sent = e ? e->packet_id != 0 : c->sent;
            if (delete_row(ob, c->id, l, c->bytes, sent) < 0) {
                q->i--;
                break;      /* out of memory: try a pending message instead */
            }
            ob->st_ctr.dropped[l]++;
            ob->cur->ctr[l][C_DROPPED]++;
            return 0;
        }
        int js = atomic_load(&ob->jstate);
        if (!ob->job->live[l] || js == J_NONE || js == J_FAILED)
            break;
        wait_job(ob);   /* its messages become committed rows, or ours again */
    }
    if ((atomic_load(&ob->jstate) == J_FAILED && drop_pending(ob, ob->job, l) == 0) ||
        drop_pending(ob, ob->cur, l) == 0) {
        ob->st_ctr.dropped[l]++;
        ob->cur->ctr[l][C_DROPPED]++;
        mark_pending(ob);
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
    ob->cur->ctr[lane][C_REFUSED]++;
    mark_pending(ob);
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
    if (!t || !*t || *t == TOPIC_REF)
        return false;
    size_t n = strcspn(t, "+#");   /* glibc's is vectorised: this is the hot path */
    if (t[n] || n >= MAX_TOPIC)
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

/* Invariant 7: at the limit of accepted-not-durable messages, wait for the
 * committer (and retry a failed job once). 0, or -EIO. */
static int back_pressure(lume_outbox *ob)
{
    uint64_t limit = (uint64_t)ob->opts.commit_batch * PENDING_BATCHES;
    bool retried = false;
    while (ob->cur->nlive + ob->job->nlive >= limit) {
        int js = atomic_load(&ob->jstate);
        if (js == J_QUEUED || js == J_RUNNING) {
            wait_job(ob);
        } else if (js == J_FAILED) {
            if (retried)
                return -EIO;
            submit(ob, true);
            retried = true;
            wait_job(ob);
        } else {
            handoff(ob);   /* J_NONE: cur is all of it */
            if (atomic_load(&ob->jstate) == J_NONE)
                return -EIO;   /* out of memory collecting its updates */
        }
    }
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
    reap(ob);
    if (back_pressure(ob) < 0)
        return -EIO;

    /* Invariant 9: the row stores a reference to its topic's row, written
     * (with a lower id) in the same batch the first time, or the topic itself
     * once TOPICS_MAX are interned. Room is made first: a hand-off in
     * make_room may not come between the topic row and its first message. */
    int64_t now = lume_wall_ms();
    const tdef *d = tdef_by_topic(ob, topic, tlen);
    bool intern = !d && ob->ntdefs < TOPICS_MAX;
    size_t slen = d ? d->reflen : tlen, fulllen = tlen;
    if (intern) {
        char ref[24];
        slen = (size_t)snprintf(ref, sizeof ref, "%c%llu", TOPIC_REF,
                                (unsigned long long)ob->next_id);
    }
    int rc = make_room(ob, lane, fulllen + len);
    if (rc < 0)
        return rc;
    batch *c = ob->cur;
    if (intern) {
        if (reserve((void **)&c->pend, &c->cappend, c->npend + 1, sizeof *c->pend) < 0 ||
            reserve((void **)&c->arena, &c->arena_cap, c->arena_len + tlen + 1, 1) < 0 ||
            !(d = tdef_add(ob, ob->next_id, topic, tlen)))
            return -ENOMEM;
        pend *t = &c->pend[c->npend++];
        *t = (pend){.id = ob->next_id++, .created_ms = now, .off = c->arena_len,
                    .topic_len = (uint32_t)tlen, .lane = TOPIC_LANE};
        memcpy(c->arena + c->arena_len, topic, tlen + 1);
        c->arena_len += tlen + 1;
        c->last_id = t->id;
        c->ntop++;
        mark_pending(ob);
        lume_check(d->reflen == slen, "invariant 9: a topic reference is as long as it was made");
    }
    if (d) {
        topic = d->ref;
        tlen = d->reflen;
    }
    if (reserve((void **)&c->pend, &c->cappend, c->npend + 1, sizeof *c->pend) < 0 ||
        reserve((void **)&c->arena, &c->arena_cap, c->arena_len + tlen + 1 + len, 1) < 0)
        return -ENOMEM;

    pend *p = &c->pend[c->npend++];
    p->id = ob->next_id++;
    p->created_ms = now;
    p->expires_ms = ttl_ms ? now + ttl_ms : 0;
    p->off = c->arena_len;
    p->topic_len = (uint32_t)tlen;
    p->tbytes = (uint32_t)fulllen;
    p->len = (uint32_t)len;
    p->lane = (uint8_t)lane;
    p->qos = (uint8_t)qos;
    p->dropped = 0;
    char *dst = c->arena + c->arena_len;
    memcpy(dst, topic, tlen + 1);
    if (len)
        memcpy(dst + tlen + 1, payload, len);
    c->arena_len += tlen + 1 + len;

    c->live[lane]++;
    c->nlive++;
    c->last_id = p->id;
    lume_check(p->id > ob->job->last_id && p->id >= ob->visible_below,
               "invariant 1: ids grow in append order");
    lume_check(c->nlive + ob->job->nlive <= (uint64_t)ob->opts.commit_batch * PENDING_BATCHES,
               "invariant 7: accepted-not-durable stays within 4 x commit_batch");
    ob->depth[lane]++;
    ob->bytes[lane] += fulllen + len;
    ob->st_ctr.appended[lane]++;
    mark_pending(ob);
    if (id)
        *id = p->id;

    /* Accepted whatever happens now. A full batch goes to the committer;
     * this call does not wait for it. */
    if (c->npend - c->ntop >= (size_t)ob->opts.commit_batch)
        handoff(ob);
    return 0;
}

/* ---- peek / in flight / ack / requeue ---------------------------------- */

int lume_outbox_peek(lume_outbox *ob, lume_outbox_msg *out, int max)
{
    if (!ob || (!out && max > 0) || max < 0)
        return -EINVAL;
    if (ob->readonly)
        return -EROFS;
    reap(ob);
    int got = 0, err = 0;
    int64_t now = lume_wall_ms();
    sqlite3_stmt *s = ob->st[S_PEEK];

    for (int l = 0; l < LUME_LANES && got < max && !err; l++) {
        if (ob->depth[l] == ob->cur->live[l] + ob->job->live[l] + ob->inflight_n[l])
            continue;   /* nothing committed and sendable in this lane */
        bool contiguous = true;   /* every row so far is skipped for good */
        int rc = SQLITE_DONE;
        sqlite3_bind_int(s, 1, l);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)ob->cur_peek[l]);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)ob->visible_below);
        while (got < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            uint64_t id = (uint64_t)sqlite3_column_int64(s, 0);
            ent *e = idmap_get(&ob->meta, id);
            bool gone = (e && (e->flags & F_INFLIGHT)) || is_deleted(ob, id);
            int64_t exp = sqlite3_column_int64(s, 3);
            const void *topic = sqlite3_column_text(s, 6);
            size_t tlen = (size_t)sqlite3_column_bytes(s, 6);
            const void *pl = sqlite3_column_blob(s, 7);
            size_t plen = (size_t)sqlite3_column_bytes(s, 7);
            /* invariant 9: a reference to an interned topic */
            const tdef *d = NULL;
            bool lost = false;
            if (!gone && tlen && *(const char *)topic == TOPIC_REF &&
                !(d = tdef_by_ref(ob, topic, tlen)))
                lost = true;
            if (!gone && ((exp && exp <= now) || lost)) {
                bool sent = e ? e->packet_id != 0 : sqlite3_column_int(s, 4) != 0;
                if (delete_row(ob, id, l, (d ? d->len : lost ? 0 : tlen) + plen, sent) < 0) {
                    err = -ENOMEM;
                    break;
                }
                if (lost) {
                    /* only after damage: the salvage lost its topic row */
                    if (!ob->tdangling++)
                        lume_log(LUME_LOG_ERROR, COMP, "%s: message %llu refers to topic row "
                                 "%.20s, lost to damage: dropped (counted in dropped)",
                                 ob->path, (unsigned long long)id, (const char *)topic + 1);
                    ob->st_ctr.dropped[l]++;
                    ob->cur->ctr[l][C_DROPPED]++;
                } else {
                    ob->st_ctr.expired[l]++;
                    ob->cur->ctr[l][C_EXPIRED]++;
                }
                gone = true;
            }
            if (gone) {
                if (contiguous)
                    ob->cur_peek[l] = id;
                continue;
            }
            contiguous = false;
            lume_check(id > ob->cur_peek[l] && id < ob->visible_below && !is_deleted(ob, id),
                       "invariants 2, 3: peek returns no deleted row, none at/below its cursor");
            /* Cache what mark_inflight/ack need, so they need no SELECT. */
            if (!e && (e = idmap_put(&ob->meta, id))) {
                e->lane = (uint8_t)l;
                e->bytes = (uint32_t)((d ? d->len : tlen) + plen);
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
            const char *mt = d ? d->topic : topic ? (const char *)topic : "";
            size_t mtlen = d ? d->len : tlen;
            m->topic = malloc(mtlen + 1);
            m->len = plen;
            m->payload = plen ? malloc(plen) : NULL;
            if (!m->topic || (plen && !m->payload)) {
                lume_outbox_msg_clear(m);
                err = -ENOMEM;
                break;
            }
            memcpy(m->topic, mt, mtlen + 1);
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
    if (!id || id >= ob->visible_below || is_deleted(ob, id)) {
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
    reap(ob);
    int rc;
    ent *e = find_row(ob, id, &rc);
    if (!e)
        return rc;
    if (!(e->flags & F_INFLIGHT)) {
        e->flags |= F_INFLIGHT;
        ob->inflight_n[e->lane]++;
        ob->inflight_b[e->lane] += e->bytes;
        lume_check(ob->inflight_n[e->lane] <= ob->depth[e->lane],
                   "invariant 4: in flight is part of a lane's depth");
    }
    /* outbox_lanes.sent counts rows whose packet_id is not 0 */
    ob->cur->ctr[e->lane][C_SENT] += (packet_id != 0) - (e->packet_id != 0);
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
    reap(ob);
    int rc;
    ent *e = find_row(ob, id, &rc);
    if (!e)
        return rc;
    int lane = e->lane;
    uint64_t bytes = e->bytes;
    bool inflight = e->flags & F_INFLIGHT, sent = e->packet_id != 0;
    if ((rc = delete_row(ob, id, lane, bytes, sent)) < 0)   /* frees e */
        return rc;
    if (inflight) {
        ob->inflight_n[lane]--;
        ob->inflight_b[lane] -= bytes;
    }
    ob->st_ctr.acked[lane]++;
    /* a batch of deletes goes to the committer as a batch of appends does */
    if (ob->cur->del.n >= (size_t)ob->opts.commit_batch)
        handoff(ob);
    return 0;
}

void lume_outbox_requeue(lume_outbox *ob)
{
    if (!ob || ob->readonly)
        return;
    reap(ob);
    for (size_t i = 0; i < ob->meta.cap; i++)
        ob->meta.slot[i].flags &= (uint8_t)~F_INFLIGHT;
    for (int l = 0; l < LUME_LANES; l++) {
        ob->inflight_n[l] = ob->inflight_b[l] = 0;
        ob->cur_peek[l] = ob->cur_evict[l] = 0;
        ob->evq[l].n = ob->evq[l].i = 0;
    }
}

/* ---- stats and dump ---------------------------------------------------- */

static uint64_t file_size(const char *path, const char *suffix)
{
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

void lume_outbox_get_stats(lume_outbox *ob, lume_outbox_stats *st)
{
    if (!st)
        return;
    memset(st, 0, sizeof *st);
    if (!ob)
        return;
    st->file_bytes = file_size(ob->path, "") + file_size(ob->path, "-wal");
    if (ob->readonly) {
        /* Another process owns the handle: the file's own counts (a
         * schema 1 file is counted row by row). */
        uint64_t sent[LUME_LANES];
        int r = ob->st[S_LANES] ? read_lanes(ob, st, sent)
                                : scan_counts(ob, st->depth, st->bytes, sent);
        if (r < 0)
            lume_log(LUME_LOG_WARN, COMP, "%s: cannot read stats: %s", ob->path,
                     sqlite3_errmsg(ob->db));
        st->inflight = sent[0] + sent[1] + sent[2];
        return;
    }
    reap(ob);
    uint64_t fb = st->file_bytes;
    *st = ob->st_ctr;
    st->file_bytes = fb;
    /* the header of the last commit: one page, no scan */
    if (sqlite3_step(ob->st[S_FREE]) == SQLITE_ROW)
        st->free_bytes = (uint64_t)sqlite3_column_int64(ob->st[S_FREE], 0) *
                         (uint64_t)ob->page_size;
    sqlite3_reset(ob->st[S_FREE]);
    for (int l = 0; l < LUME_LANES; l++) {
        st->depth[l] = ob->depth[l];
        st->bytes[l] = ob->bytes[l];
        st->lane_pending[l] = ob->cur->live[l] + ob->job->live[l];
        st->pending += st->lane_pending[l];
        st->inflight += ob->inflight_n[l];
    }
    st->committing = ob->job->nlive;
    st->durable_id = ob->visible_below - 1;
}

int lume_outbox_dump(lume_outbox *ob, int (*fn)(void *ud, const lume_outbox_msg *m),
                     void *ud)
{
    if (!ob || !fn)
        return -EINVAL;
    if (!ob->readonly)
        reap(ob);
    sqlite3_stmt *s = ob->st[S_DUMP];
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lume_outbox_msg m = {0};
        m.id = (uint64_t)sqlite3_column_int64(s, 0);
        if (!ob->readonly && (m.id >= ob->visible_below || is_deleted(ob, m.id)))
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
