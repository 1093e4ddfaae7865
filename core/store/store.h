/* core/store/store.h — the store directory and the SQLite files in it, defending
 * themselves: one runtime per store, private modes, files that are deleted,
 * replaced, damaged, read-only or out of space (docs/store.md).
 *
 * Two handles:
 *   - lume_store: the directory. Made 0700, checked (nothing in it may be
 *     writable by another user), locked with flock(2) on STORE/lock, which
 *     holds the owner's PID. Re-made and re-locked by lume_store_check when
 *     it disappears.
 *   - lume_store_db: one database file of a store (the outbox, the state
 *     store), opened so that its own contents never stop a start: a damaged
 *     file is moved aside and salvaged row by row, an empty one is reported,
 *     an unwritable one is worked around (a spill file next to it, or an
 *     in-memory copy), and a file deleted or replaced while open is put back
 *     from the open connection (SQLite's online backup).
 *
 * The loop thread owns both handles: every call here is made from it. A
 * module that keeps prepared statements on the connection (outbox.c, kv.c)
 * finalizes them before lume_store_db_repair and prepares them again after
 * it: the connection may be a new one. A module that lends the connection
 * to another thread between calls (outbox.c: its committer) gets it back
 * before lume_store_db_due, _repair, _relieve and _close, which use it, and
 * notes results (lume_store_db_note) from the loop thread. */
#ifndef LUME_STORE_H
#define LUME_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "salvage.h"

/* ---- the directory ------------------------------------------------------ */

typedef struct lume_store lume_store;

/* Make (mkdir -p; the store itself 0700) and lock dir. What lume made in
 * it (lock, outbox.db*, state.db*, lume.sock, hung.json*) is tightened to
 * 0600 when this user owns it, and so is the directory (0700) unless it also
 * holds other files: then it is left as it is (refused when others can write
 * it). Returns 0 and *out, or:
 *   -EBUSY   another process holds the lock (*err names its PID);
 *   -EPERM   another user can write the directory or a file in it: owned by
 *            another user (root excepted), or group/other-writable and not
 *            ours to fix (*err names the path, the owner and the mode);
 *   -errno   the directory cannot be made or the lock file opened.
 * On error nothing is locked and *out is NULL. */
int  lume_store_open(const char *dir, lume_store **out, char **err);
/* Unlock and free (the lock file stays; its PID is cleared). */
void lume_store_close(lume_store *s);
const char *lume_store_dir(const lume_store *s);
/* Once a second from the loop: is the directory still there, is the lock
 * file still ours? Re-makes (0700) and re-locks what was removed. 1 when
 * something was re-made (logged as an ERROR), 0 when all is well, -EBUSY
 * when another process holds the lock now (the store is no longer ours:
 * from then on every call says so; see lume_store_db_strand), other -errno
 * when it cannot be re-made (logged; retried on the next call). */
int  lume_store_check(lume_store *s);
/* Another process took the store (lume_store_check said -EBUSY). */
bool lume_store_lost(const lume_store *s);
/* Free space for an unprivileged writer in the store's file system, in
 * bytes, or -errno. */
int64_t lume_store_free_bytes(const lume_store *s);
/* Times lume_store_check re-made the directory or the lock. */
uint64_t lume_store_remade(const lume_store *s);

/* Check one path as lume_store_open checks its entries: 0 (perhaps
 * tightened to `mode`), -ENOENT, or -EPERM with *err. */
int  lume_store_secure(const char *path, unsigned mode, char **err);
/* mkdir -p; the last component is made with `mode`. 0 or -errno. */
int  lume_store_mkdirs(const char *dir, unsigned mode);

/* ---- a database file ---------------------------------------------------- */

typedef struct lume_store_db lume_store_db;

/* Open the database at path (whose directory must exist) for table t:
 *   - a spill left by an earlier run (path.spill) is the newest state: put
 *     back in place when path can be replaced, else used where it is;
 *   - an absent file is created 0600; an empty one (0 bytes, nothing in its
 *     WAL) is reported, moved aside and started afresh;
 *   - PRAGMA quick_check; a damaged file (or one that is not a database)
 *     is moved aside as path.corrupt-YYYYMMDDTHHMMSSZ (with its WAL) and
 *     what can be read is salvaged into a fresh file in its place;
 *   - a file that cannot be written is copied to path.spill and used
 *     there; when the directory cannot take that either, to memory (the
 *     same when writes start failing while it runs: lume_store_db_repair);
 *   - when the file's shared memory cannot be made (a full disk), the
 *     connection uses exclusive locking (no -shm; readers wait);
 *   - the schema is created; journal_mode=WAL for files.
 * NULL only when out of memory or when the file is owned by another user
 * (*err). Every event is logged and kept for lume_store_db_info. */
lume_store_db *lume_store_db_open(const char *path, const lume_store_table *t, char **err);
/* The store is another runtime's now: nothing is put back; at close the
 * rows are saved as path.stranded-PID-STAMP instead. */
void lume_store_db_strand(lume_store_db *d);
/* Puts a file back (deleted, replaced, or held in memory) when it can, then
 * closes (a stranded one: saves its rows aside, see above). The caller has
 * finalized its statements. */
void lume_store_db_close(lume_store_db *d);
sqlite3 *lume_store_db_handle(const lume_store_db *d);
/* The file in use: the path given to open, or its spill. "" in memory. */
const char *lume_store_db_file(const lume_store_db *d);
bool lume_store_db_in_memory(const lume_store_db *d);
/* The connection has no shared memory (exclusive locking): checkpoints run
 * on it, not on another connection. */
bool lume_store_db_exclusive(const lume_store_db *d);

/* Note the result of a write or a read (an SQLite code, extended or
 * not): SQLITE_OK/DONE/ROW clear the disk-full and read-only marks, FULL,
 * READONLY, IOERR, CANTOPEN set them and last_error, CORRUPT and NOTADB
 * schedule a salvage (lume_store_db_due). msg may be NULL. Cheap; logs
 * nothing. */
void lume_store_db_note(lume_store_db *d, int rc, const char *msg);
/* A write failed for lack of space: checkpoint and truncate the WAL, which
 * gives back the space of frames already in the database (a WAL stays at
 * its largest size otherwise). 0, or -EIO / -EINVAL (in memory). The caller
 * has no statement running. */
int  lume_store_db_relieve(lume_store_db *d);
/* The file system has room again (the caller looked): the disk-full mark
 * of a write that failed more than 2 s ago is cleared (the next failure
 * sets it again). */
void lume_store_db_space_back(lume_store_db *d);
/* The last write failed for lack of space. */
bool lume_store_db_full(const lume_store_db *d);
/* Is there something for lume_store_db_repair to do? The file deleted,
 * moved or replaced (compares the open file with the path), damage seen,
 * writes refused (read-only, I/O errors: a probe write, then the spill), a
 * full disk (every 5 s: lume_store_db_relieve), or a degraded mode (spill,
 * memory, exclusive) whose retry is due (every 10 s). A stat(2) or two. */
bool lume_store_db_due(lume_store_db *d);
/* Do it. The caller has finalized its statements on the connection, and
 * prepares them again afterwards (on lume_store_db_handle). Returns
 *   0  nothing done, or a retry that did not succeed yet (same connection);
 *   1  a new connection with the same rows (put back, moved, reopened);
 *   2  a new connection with the rows that could be salvaged (damage).
 * Failures are logged and kept in last_error; the old connection stays. */
int  lume_store_db_repair(lume_store_db *d);

typedef struct lume_store_db_info {
    const char *file;         /* as lume_store_db_file */
    const char *mode;         /* "file", "spill", "memory" */
    bool        exclusive;    /* no shared memory: readers of the file wait */
    bool        writable;     /* in its own file, and no write has failed since the last that worked */
    bool        disk_full;    /* the last write failed for lack of space */
    const char *last_error;   /* "" when none */
    uint64_t    recoveries;   /* files deleted or replaced while open, put back */
    uint64_t    corruptions;  /* damaged or empty files moved aside */
    int64_t     salvaged;     /* rows salvaged from those */
    int64_t     lost;         /* rows known lost (a lower bound unless lost_exact) */
    bool        lost_exact;
    const char *last_event;   /* one line for the operator, "" when none */
    uint64_t    events;       /* grows with every event: compare to see a new one */
} lume_store_db_info;
void lume_store_db_info_get(const lume_store_db *d, lume_store_db_info *out);

#endif
