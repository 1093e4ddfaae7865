/* core/store/outbox.h — the durable outbox: every message a device sends lives
 * here, committed, before it is sent, and leaves only when the broker has
 * acknowledged it.
 *
 * SQLite in WAL mode, ids increasing in append order. Appends go to an
 * in-memory batch; the batch is handed to the outbox's committer thread,
 * which writes it in one transaction on a connection of its own (the loop
 * hands it over every commit_interval_ms with lume_outbox_commit_start;
 * append and ack hand it over by themselves at commit_batch), so no
 * SQLite write runs on the caller's thread. lume_outbox_commit() is the
 * barrier: it returns once everything accepted so far is durable. Only
 * committed messages are visible to peek, so nothing is ever sent that a
 * crash could lose.
 *
 * Accepted is not durable: a message is durable once the transaction that
 * holds it committed (lume_outbox_commit returned 0, or stats.durable_id
 * reached its id). A crash of the process loses at most what was accepted
 * and not yet durable: the messages of the last commit_interval_ms plus
 * the commit in progress, never more than 4 x commit_batch messages.
 *
 * Three priority lanes, drained alarm -> telemetry -> bulk, FIFO within a
 * lane. A message may carry a TTL; expired messages are deleted (counted)
 * instead of being sent. A size cap (messages and bytes) is enforced at
 * append: oldest bulk is dropped first, then oldest telemetry; alarms are
 * never dropped: when only alarms remain, non-alarm appends are refused with
 * -ENOSPC and alarms are still accepted up to 2x the cap, then refused too.
 * Every drop and refusal is counted per lane and logged.
 *
 * The MQTT session uses: peek (next messages not in flight, lane order) ->
 * mark_inflight(id, packet id) -> ack(id) on PUBACK, or requeue() on
 * disconnect (in-flight messages keep their packet id, to be resent with
 * DUP=1). Packet ids are persisted, so after a restart in-flight messages
 * come back with their original packet id (attempts > 0).
 *
 * Drop, refusal and expiry counters, and the per-lane depth and bytes, live
 * in the database (table outbox_lanes), written in the same transactions as
 * the messages: they survive restarts, and opening reads them instead of
 * scanning the backlog. Space freed by deleted messages is given back to
 * the file system by the committer (incremental vacuum).
 *
 * One thread owns the handle (the loop); the committer and checkpointer
 * threads are the outbox's own. Another process may read the same file
 * (lume outbox stats|dump) through lume_outbox_open_readonly. */
#ifndef LUME_OUTBOX_H
#define LUME_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lume_lane {
    LUME_LANE_ALARM = 0,
    LUME_LANE_TELEMETRY = 1,
    LUME_LANE_BULK = 2,
} lume_lane;
#define LUME_LANES 3

/* "alarm"|"telemetry"|"bulk" -> lane; -1 for anything else. */
int         lume_lane_parse(const char *name);
const char *lume_lane_name(int lane);

typedef struct lume_outbox_opts {
    int     commit_interval_ms; /* default 50 */
    int     commit_batch;       /* default 1000 messages */
    int64_t max_messages;       /* cap; default 1,000,000; 0 = no cap */
    int64_t max_bytes;          /* cap on payload+topic bytes; default 64 MiB; 0 = none */
    bool    synchronous_full;   /* PRAGMA synchronous=FULL (default NORMAL) */
    int     durable_lanes;      /* bit (1 << lane) set: lume.publish to that lane
                                   returns once the message is committed. The
                                   outbox itself does not read it (the host
                                   does); default 1 << LUME_LANE_ALARM */
    bool    inline_checkpoints; /* no checkpointer thread: SQLite checkpoints the WAL
                                   on the committer's commits (every 1000 pages);
                                   one thread and one connection less. At open only */
} lume_outbox_opts;
void lume_outbox_opts_default(lume_outbox_opts *o);

typedef struct lume_outbox lume_outbox;

typedef struct lume_outbox_msg {
    uint64_t id;
    int      lane;
    int      qos;
    int64_t  created_ms;   /* wall clock ms */
    int64_t  expires_ms;   /* 0 = never */
    uint16_t packet_id;    /* 0 until first marked in flight */
    uint32_t attempts;     /* times marked in flight */
    char    *topic;        /* NUL-terminated, malloc'd */
    void    *payload;      /* malloc'd (may be NULL when len == 0) */
    size_t   len;
} lume_outbox_msg;
void lume_outbox_msg_clear(lume_outbox_msg *m);   /* frees topic, payload */

typedef struct lume_outbox_stats {
    uint64_t depth[LUME_LANES];      /* committed + pending, not yet acked */
    uint64_t bytes[LUME_LANES];
    uint64_t pending;                /* accepted, not yet durable (all lanes) */
    uint64_t lane_pending[LUME_LANES];
    uint64_t committing;             /* of those, in the transaction being written */
    uint64_t durable_id;             /* every message with an id <= this is durable
                                        (or already gone) */
    uint64_t inflight;
    uint64_t appended[LUME_LANES];   /* counters of this process */
    uint64_t acked[LUME_LANES];
    /* since the database was created (kept in it, across restarts): */
    uint64_t expired[LUME_LANES];
    uint64_t dropped[LUME_LANES];    /* removed by the cap policy */
    uint64_t refused[LUME_LANES];    /* appends refused (-ENOSPC) */
    uint64_t commits;                /* of this process */
    uint64_t commit_errors;
    uint64_t file_bytes;             /* outbox.db + outbox.db-wal on disk */
    uint64_t free_bytes;             /* free pages in the database, not yet given back */
} lume_outbox_stats;

/* Open or create. NULL on error with *err set (malloc'd, names the path and
 * the cause). o may be NULL for defaults. On open, messages that were in
 * flight when the process died become sendable again (keeping packet ids).
 * The file's own state never fails the open (core/store/store.h): a damaged or
 * empty file is moved aside and salvaged, an unwritable one spilled or kept
 * in memory; NULL then means out of memory, a file another user owns, or
 * one written by a newer lume. */
lume_outbox *lume_outbox_open(const char *path, const lume_outbox_opts *o,
                              char **err);
/* Read-only view for another process: stats and dump only (the spill,
 * path.spill, when the writer keeps its rows there). */
lume_outbox *lume_outbox_open_readonly(const char *path, char **err);
/* Commits what is pending, then closes. */
void lume_outbox_close(lume_outbox *ob);
/* Change limits at run time (twin "outbox" key). */
void lume_outbox_set_opts(lume_outbox *ob, const lume_outbox_opts *o);
const lume_outbox_opts *lume_outbox_get_opts(const lume_outbox *ob);

/* Append one message to the pending batch. ttl_ms 0 = no expiry. Returns 0
 * and sets *id (may be NULL): the message is accepted, not yet durable. A
 * batch that reaches commit_batch is handed to the committer thread (append
 * does not wait for it). When 4 x commit_batch messages are accepted and not
 * yet durable, append waits for the commit in progress (back-pressure); if
 * that commit failed, it is retried once, and when it fails again append
 * returns -EIO and does not take the message (the batch is kept and
 * retried). -ENOSPC when refused by the cap policy, -EINVAL for a bad
 * lane/qos/topic. Nothing is visible to peek before commit. */
int lume_outbox_append(lume_outbox *ob, int lane, const char *topic,
                       const void *payload, size_t len, int qos,
                       int64_t ttl_ms, uint64_t *id);
/* The barrier: write everything accepted so far (appends, acks, in-flight
 * marks, counters) and return once it is durable. 0, or -EIO with nothing
 * lost from memory (the failed transaction is retried by the next commit;
 * lume_outbox_last_error says why). */
int lume_outbox_commit(lume_outbox *ob);
/* Hand what is pending to the committer and return at once (the loop's
 * commit timer). A commit that failed is retried first. 0, or -EIO when the
 * last commit failed (it is being retried). */
int lume_outbox_commit_start(lume_outbox *ob);
/* Take note of commits the committer finished (the loop calls it when
 * woken). Returns 1 when messages became sendable (or acks durable) since
 * the last call, else 0. */
int lume_outbox_poll(lume_outbox *ob);
/* fn(ud) is called from the committer thread after each commit it
 * finishes: it must be safe from any thread (lume_loop_wake). NULL: none. */
void lume_outbox_set_notify(lume_outbox *ob, void (*fn)(void *ud), void *ud);
/* Why the last commit failed ("" when it did not), valid until the next
 * call on ob. */
const char *lume_outbox_last_error(const lume_outbox *ob);
/* Milliseconds since the oldest change that is not yet durable, -1 when
 * there is none. */
int64_t lume_outbox_pending_age_ms(const lume_outbox *ob);

/* Up to max committed messages that are not in flight, alarm lane first,
 * then telemetry, then bulk, oldest first in each. Expired ones are deleted
 * on the way and not returned. Returns the count (each out[i] must be
 * cleared by the caller), or negative errno. */
int lume_outbox_peek(lume_outbox *ob, lume_outbox_msg *out, int max);
/* Mark as in flight with this packet id (persisted with the next commit). */
int lume_outbox_mark_inflight(lume_outbox *ob, uint64_t id, uint16_t packet_id);
/* Acknowledged: delete (with the next commit). -ENOENT if unknown. */
int lume_outbox_ack(lume_outbox *ob, uint64_t id);
/* Disconnected: every in-flight message becomes sendable again, in its
 * original order, keeping its packet id. */
void lume_outbox_requeue(lume_outbox *ob);

void lume_outbox_get_stats(lume_outbox *ob, lume_outbox_stats *st);

/* Once a second from the loop: the file deleted, replaced or damaged under
 * the open connection, or a degraded mode that may end (core/store/store.h). Puts
 * the file back (nothing lost), or salvages it and brings the counters, the
 * in-flight marks and the pending batch in line with what survived.
 * 0 nothing done, 1 same rows in a new file, 2 salvaged, -EIO (logged).
 * Loop thread only: before the store touches the connection the committer
 * thread and the checkpointer are stopped (a batch they hold is finished
 * first), and they are started again on the new connection. */
int lume_outbox_check(lume_outbox *ob);
/* The file and its health (lume_store_db_info_get); NULL read-only. */
struct lume_store_db;
struct lume_store_db *lume_outbox_store(const lume_outbox *ob);
/* Visit committed messages in send order (lane, then id); stop when fn
 * returns non-zero. Returns the number visited or negative errno. */
int lume_outbox_dump(lume_outbox *ob, int (*fn)(void *ud, const lume_outbox_msg *m),
                     void *ud);

#endif
