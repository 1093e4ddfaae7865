/* core/store/store.c — the store directory and its databases, defending
 * themselves (see store.h, docs/store.md).
 *
 * The directory
 * -------------
 * lume_store_open makes the directory 0700, refuses one that another user
 * can write (owned by another user, root excepted, or group/other-writable
 * and not ours to fix), takes flock(LOCK_EX|LOCK_NB) on STORE/lock and
 * writes its PID there, then tightens what it made inside (files 0600). It
 * changes nothing it did not make: a directory that also holds other files
 * (a store pointed at /tmp by mistake) keeps its mode, and is refused if
 * others can write it. A second runtime on the same store fails the flock
 * and names the PID.
 * Readers (lume outbox stats) take no lock. lume_store_check, once a
 * second, re-makes a directory or lock file that was removed.
 *
 * Where a database lives
 * ----------------------
 *
 *            open: quick_check fails ──► salvage ──┐
 *                                                   ▼
 *   ┌────────────── deleted/replaced ─────────►  FILE  ◄──── retry: path can be replaced ───┐
 *   │  (backup of the open connection put      │  ▲  │                                      │
 *   └── back at the path) ◄────────────────────┘  │  │ path cannot be written               │
 *                                   damage seen ──┘  ├──────────────────────────────► SPILL (path.spill)
 *                                   (salvage)        │ neither can the directory             │
 *                                                    └──────────────────────────────► MEMORY ┘
 *
 *   FILE    the connection is on `path` (perhaps with exclusive locking when
 *           its shared memory could not be made: a full disk). Writes that
 *           fail as read-only or with I/O errors, and a probe write that
 *           fails the same way a moment later, move it to SPILL (or MEMORY).
 *   SPILL   `path` cannot be written (immutable, read-only, not ours): a
 *           copy next to it, `path.spill`, is the live file; it is put back
 *           over `path` as soon as that works (at the next open too).
 *   MEMORY  nothing could be written: an in-memory copy, put back when
 *           the file system takes it; at close, what it held is logged as
 *           not saved.
 *
 * Invariants:
 *   1. The live connection holds every committed row. Putting a file back
 *      copies from it (sqlite3_backup) into path.tmp, fsyncs, renames over
 *      the target; only then is the old connection closed, with
 *      SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE so that it touches no file by name.
 *   2. A file renamed into place never meets a -wal or -shm that belongs to
 *      another file: they go aside with the file they belong to, or are
 *      removed when their content is already in the copy.
 *   3. Nothing is deleted that lume did not write and cannot rebuild: a
 *      damaged, empty or foreign file is renamed aside (path.corrupt-STAMP,
 *      path.replaced-STAMP, with its -wal), the newest KEEP_ASIDE of each
 *      kind kept.
 *   4. Salvage (salvage.c) reads rows through the table's b-tree or from
 *      pages in use, never from free pages: nothing acked or deleted comes
 *      back.
 *   5. Repairs run on the loop thread between statements: no transaction
 *      is open, and the owner has finalized its statements.
 *   6. Whoever holds STORE/lock owns the files. A runtime whose store was
 *      removed and then taken by another (which now holds a new lock)
 *      never puts anything back: it stops, and saves its rows as
 *      path.stranded-PID-STAMP (two runtimes putting back their own files
 *      would replace each other's every second). */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define COMP "store"
#define KEEP_ASIDE 4                      /* newest copies of each kind kept */
#define RETRY_NS (10 * LUME_NS_PER_SEC)   /* degraded modes try to recover this often */
#define RELIEF_NS (5 * LUME_NS_PER_SEC)   /* a full disk: WAL truncated this often */
#define BUSY_MS 250
/* Files up to this size (with their WAL) get a full PRAGMA quick_check when
 * opened; bigger ones a check that reads a few pages (header, size,
 * schema): opening never scans a big backlog (outbox.c, invariant 6), and
 * damage deeper in is found by the reads that meet it (lume_store_db_note). */
#define CHECK_FULL_MAX (4 * 1024 * 1024)
#define MEM_FLAGS (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX)

/* ---- small helpers ------------------------------------------------------- */

static void stamp(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%Y%m%dT%H%M%SZ", &tm);
}

static char *joinf(const char *a, const char *b)
{
    return lume_strdupf("%s%s", a, b);
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static off_t size_of(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static void unlink_sfx(const char *path, const char *sfx)
{
    char p[4200];
    lume_fmt(p, sizeof p, "%s%s", path, sfx);
    unlink(p);
}

static void dir_of(const char *path, char *out, size_t n)
{
    lume_fmt(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        lume_fmt(out, n, ".");
    else if (slash == out)
        out[1] = 0;
    else
        *slash = 0;
}

static void fsync_dir(const char *path)
{
    char d[4200];
    dir_of(path, d, sizeof d);
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Create path (absent) with mode 0600. 0 or -errno. */
static int create_file(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/* Remove path-wal and path-shm (their rows are in a copy about to take
 * path's place). 0, or -1 when one is there and cannot be removed: then the
 * copy must not go in (the WAL would be replayed over it; invariant 2). */
static int clear_wal(const char *path)
{
    static const char *const sfx[] = {"-wal", "-shm"};
    for (int i = 0; i < 2; i++) {
        char w[4300];
        lume_fmt(w, sizeof w, "%s%s", path, sfx[i]);
        if (unlink(w) != 0 && errno != ENOENT)
            return -1;
    }
    return 0;
}

int lume_store_mkdirs(const char *dir, unsigned mode)
{
    char buf[4096];
    if (!dir || !*dir || strlen(dir) >= sizeof buf)
        return -EINVAL;
    lume_fmt(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int lume_store_secure(const char *path, unsigned mode, char **err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    uid_t me = geteuid();
    unsigned cur = (unsigned)st.st_mode & 07777;
    if (st.st_uid != me && st.st_uid != 0) {
        if (err)
            *err = lume_strdupf("%s is owned by uid %u, not by this user (uid %u): another user "
                                "can write it; chown it to uid %u or run lume as uid %u",
                                path, (unsigned)st.st_uid, (unsigned)me, (unsigned)me,
                                (unsigned)st.st_uid);
        return -EPERM;
    }
    if (st.st_uid != me) {
        /* root's, and this is not root: fine unless others may write */
        if (cur & 022) {
            if (err)
                *err = lume_strdupf("%s is writable by group or others (mode %04o, owner root): "
                                    "another user can write it; chmod go-w it", path, cur);
            return -EPERM;
        }
        return 0;
    }
    if ((cur & 0777) == mode)
        return 0;
    if (chmod(path, (mode_t)mode) != 0) {
        if (cur & 022) {
            if (err)
                *err = lume_strdupf("%s is writable by group or others (mode %04o) and cannot "
                                    "be made %04o: %s", path, cur, mode, strerror(errno));
            return -EPERM;
        }
        lume_log(LUME_LOG_WARN, COMP, "%s: mode %04o, cannot make it %04o: %s", path, cur, mode,
                 strerror(errno));
        return 0;
    }
    lume_log(LUME_LOG_WARN, COMP, "%s: mode %04o made %04o (lume's store is private)", path, cur,
             mode);
    return 0;
}

/* ---- the directory ------------------------------------------------------- */

struct lume_store {
    char    *dir;
    char    *lock_path;
    int      lock_fd;
    dev_t    dev;
    ino_t    ino;
    uint64_t remade;
    int64_t  last_fail_log_ns;
    bool     lost;            /* another process took the lock: not ours any more */
};

static void note_dir(lume_store *s)
{
    struct stat st;
    if (stat(s->dir, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
}

static void write_pid(int fd)
{
    char pid[32];
    int n = lume_fmt(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) == n)
        return;
    lume_log(LUME_LOG_WARN, COMP, "cannot write the PID into the lock file: %s", strerror(errno));
}

/* Open and lock path. The fd, or -EBUSY (held: *err names the PID), -EPERM
 * (another user's), -errno. */
static int take_lock(const char *dir, const char *path, char **err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        *err = lume_strdupf("store %s: cannot open the lock file %s: %s", dir, path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid != geteuid() && st.st_uid != 0) {
        *err = lume_strdupf("store %s: the lock file %s is owned by uid %u, not by this user "
                            "(uid %u): another user can write it", dir, path,
                            (unsigned)st.st_uid, (unsigned)geteuid());
        close(fd);
        return -EPERM;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            char pid[32] = "";
            ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
            pid[n > 0 ? n : 0] = 0;
            pid[strcspn(pid, "\r\n")] = 0;
            *err = lume_strdupf("store %s is in use by another lume (pid %s holds %s); one "
                                "runtime per store", dir, *pid ? pid : "unknown", path);
            close(fd);
            return -EBUSY;
        }
        *err = lume_strdupf("store %s: cannot lock %s: %s", dir, path, strerror(e));
        close(fd);
        return -e;
    }
    if (st.st_uid == geteuid() && (st.st_mode & 0777) != 0600)
        fchmod(fd, 0600);
    write_pid(fd);
    return fd;
}

/* Names lume makes in a store (and everything derived from them: -wal,
 * .spill, .corrupt-STAMP, .tmp, ...). */
static bool lume_name(const char *n)
{
    return !strcmp(n, "lock") || !strcmp(n, "lume.sock") || !strncmp(n, "hung.json", 9) ||
           !strncmp(n, "outbox.db", 9) || !strncmp(n, "state.db", 8);
}

/* Does dir hold entries lume did not make? */
static bool foreign_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)))
        found = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !lume_name(e->d_name);
    closedir(d);
    return found;
}

/* The store directory: as lume_store_secure, except that a directory that
 * also holds other files (a store pointed at /tmp or /var/lib by mistake)
 * is never changed: refused when others can write it, left as it is (with
 * a warning) otherwise. */
static int secure_dir(const char *dir, char **err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode)) {
        *err = lume_strdupf("%s is not a directory", dir);
        return -ENOTDIR;
    }
    if (!foreign_entries(dir))
        return lume_store_secure(dir, 0700, err);
    unsigned cur = (unsigned)st.st_mode & 07777;
    if (cur & 022) {
        *err = lume_strdupf("%s is writable by group or others (mode %04o) and holds files that "
                            "are not lume's: give lume a directory of its own", dir, cur);
        return -EPERM;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0)
        return lume_store_secure(dir, 0700, err);   /* refused: another user's */
    if (cur & 077)
        lume_log(LUME_LOG_WARN, COMP, "%s holds files that are not lume's: its mode %04o is "
                 "left as it is (give lume a directory of its own)", dir, cur);
    return 0;
}

/* Everything lume made in the directory: 0600 files, 0700 folders; refuse
 * what another user can write. Other files are not lume's to change. */
static int secure_entries(const char *dir, char **err)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int r = 0;
    struct dirent *e;
    while (r == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !lume_name(e->d_name))
            continue;
        char p[4400];
        lume_fmt(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0 || S_ISLNK(st.st_mode)) {
            if (S_ISLNK(st.st_mode) && stat(p, &st) == 0 && S_ISREG(st.st_mode))
                r = lume_store_secure(p, 0600, err) == -EPERM ? -EPERM : 0;
            continue;
        }
        if (S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode))
            r = lume_store_secure(p, 0600, err) == -EPERM ? -EPERM : 0;
        else if (S_ISDIR(st.st_mode))
            r = lume_store_secure(p, 0700, err) == -EPERM ? -EPERM : 0;
    }
    closedir(d);
    return r;
}

int lume_store_open(const char *dir, lume_store **out, char **err)
{
    *out = NULL;
    *err = NULL;
    int r = lume_store_mkdirs(dir, 0700);
    if (r < 0) {
        *err = lume_strdupf("store: cannot create directory '%s': %s", dir, strerror(-r));
        return r;
    }
    char *why = NULL;
    if ((r = secure_dir(dir, &why)) < 0) {
        *err = lume_strdupf("store: %s", why ? why : strerror(-r));
        free(why);
        return r;
    }
    lume_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir)) || !(s->lock_path = lume_strdupf("%s/lock", dir))) {
        if (s)
            free(s->dir);
        free(s);
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    s->lock_fd = take_lock(dir, s->lock_path, err);
    if (s->lock_fd < 0) {
        r = s->lock_fd;
        free(s->lock_path);
        free(s->dir);
        free(s);
        return r;
    }
    if ((r = secure_entries(dir, &why)) < 0) {
        *err = lume_strdupf("store: %s", why ? why : "unsafe file");
        free(why);
        lume_store_close(s);
        return r;
    }
    note_dir(s);
    *out = s;
    return 0;
}

void lume_store_close(lume_store *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0) {
        if (ftruncate(s->lock_fd, 0) != 0) {
            /* a stale PID in an unlocked file misleads no one: the lock decides */
        }
        close(s->lock_fd);
    }
    free(s->lock_path);
    free(s->dir);
    free(s);
}

const char *lume_store_dir(const lume_store *s) { return s ? s->dir : NULL; }
uint64_t lume_store_remade(const lume_store *s) { return s ? s->remade : 0; }
bool lume_store_lost(const lume_store *s) { return s && s->lost; }

int64_t lume_store_free_bytes(const lume_store *s)
{
    struct statvfs v;
    if (!s || statvfs(s->dir, &v) != 0)
        return s ? -errno : -EINVAL;
    return (int64_t)v.f_bavail * (int64_t)v.f_frsize;
}

int lume_store_check(lume_store *s)
{
    if (!s)
        return -EINVAL;
    if (s->lost)
        return -EBUSY;
    int remade = 0;
    struct stat st;
    if (stat(s->dir, &st) != 0) {
        int r = lume_store_mkdirs(s->dir, 0700);
        if (r < 0) {
            int64_t now = lume_mono_ns();
            if (!s->last_fail_log_ns || now - s->last_fail_log_ns > 60 * LUME_NS_PER_SEC) {
                s->last_fail_log_ns = now;
                lume_log(LUME_LOG_ERROR, COMP, "store %s is gone and cannot be made again: %s "
                         "(the databases stay open; retried every second)", s->dir,
                         strerror(-r));
            }
            return r;
        }
        lume_log(LUME_LOG_ERROR, COMP, "store %s was removed while lume ran: made again (0700); "
                 "its databases are put back from their open connections", s->dir);
        remade = 1;
    } else if (st.st_ino != s->ino || st.st_dev != s->dev) {
        char *why = NULL;
        if (secure_dir(s->dir, &why) < 0) {
            lume_log(LUME_LOG_ERROR, COMP, "%s", why ? why : "store directory replaced");
            free(why);
        }
        lume_log(LUME_LOG_ERROR, COMP, "store %s was replaced by another directory while lume "
                 "ran; its databases are put back from their open connections", s->dir);
        remade = 1;
    }
    note_dir(s);

    struct stat lst, fst;
    bool ours = fstat(s->lock_fd, &fst) == 0 && stat(s->lock_path, &lst) == 0 &&
                lst.st_ino == fst.st_ino && lst.st_dev == fst.st_dev;
    if (!ours) {
        char *why = NULL;
        int fd = take_lock(s->dir, s->lock_path, &why);
        if (fd == -EBUSY || fd == -EPERM) {
            /* another runtime made the store its own in the meantime: it
             * holds the lock, so the store is its (invariant 6) */
            s->lost = true;
            lume_log(LUME_LOG_ERROR, COMP, "the store was removed while lume ran, and another "
                     "process took it since: %s", why ? why : strerror(-fd));
            free(why);
            return -EBUSY;
        }
        if (fd < 0) {
            lume_log(LUME_LOG_ERROR, COMP, "the lock file was removed while lume ran and cannot "
                     "be taken again: %s", why ? why : strerror(-fd));
            free(why);
            return fd;
        }
        close(s->lock_fd);
        s->lock_fd = fd;
        if (!remade)
            lume_log(LUME_LOG_ERROR, COMP, "the lock file %s was removed while lume ran: made "
                     "again", s->lock_path);
        remade = 1;
    }
    if (remade)
        s->remade++;
    return remade;
}

/* ---- moving a file aside ------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keep the newest KEEP_ASIDE of path.<tag>-* (and their -wal, -journal). */
static void prune_aside(const char *path, const char *tag)
{
    char dir[4200];
    dir_of(path, dir, sizeof dir);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char prefix[512];
    lume_fmt(prefix, sizeof prefix, "%s.%s-", base, tag);
    DIR *d = opendir(dir);
    if (!d)
        return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, strlen(prefix)) ||
            (len > 4 && !strcmp(e->d_name + len - 4, "-wal")) ||
            (len > 8 && !strcmp(e->d_name + len - 8, "-journal")))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn)
                break;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i + KEEP_ASIDE < n; i++) {
        char p[4800];
        lume_fmt(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
        unlink_sfx(p, "-wal");
        unlink_sfx(p, "-journal");
        lume_log(LUME_LOG_INFO, COMP, "removed %s (only the newest %d are kept)", p, KEEP_ASIDE);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Rename path (with its -wal and -journal) to path.<tag>-STAMP, remove its
 * -shm. 0 with the new name in out, or -errno (nothing moved). */
static int move_aside(const char *path, const char *tag, char *out, size_t n)
{
    char st[32];
    stamp(st, sizeof st);
    lume_fmt(out, n, "%s.%s-%s", path, tag, st);
    for (int i = 2; exists(out) && i < 100; i++)
        lume_fmt(out, n, "%s.%s-%s-%d", path, tag, st, i);
    if (rename(path, out) != 0)
        return -errno;
    char a[4300], b[4300];
    lume_fmt(a, sizeof a, "%s-wal", path);
    lume_fmt(b, sizeof b, "%s-wal", out);
    rename(a, b);
    lume_fmt(a, sizeof a, "%s-journal", path);
    lume_fmt(b, sizeof b, "%s-journal", out);
    rename(a, b);
    unlink_sfx(path, "-shm");
    fsync_dir(path);
    prune_aside(path, tag);
    return 0;
}

/* ---- a database file ----------------------------------------------------- */

enum { M_FILE, M_SPILL, M_MEMORY };
static const char *const mode_names[] = {"file", "spill", "memory"};

struct lume_store_db {
    const lume_store_table *t;
    sqlite3  *db;
    char     *path, *spill;
    int       mode;
    bool      exclusive;       /* no shared memory (a full disk at open) */
    bool      damaged_in_place;/* MEMORY after a salvage that could not move the file aside */
    bool      mem_partial;     /* MEMORY without the file's rows (it could not be read):
                                  never put back over it */
    bool      corrupt_seen, readonly_seen, full_seen, ioerr_seen;
    bool      stranded;        /* the store is another runtime's now: never touch the path */
    int64_t   next_retry_ns;
    int64_t   next_relief_ns;  /* disk full: when to give the WAL's space back again */
    int64_t   full_at_ns;      /* the last write that failed for lack of space */
    int64_t   next_probe_ns;   /* writes failed (read-only, I/O): when to try one again */
    char      last_error[256];
    char      last_event[640];
    uint64_t  events, recoveries, corruptions;
    int64_t   salvaged, lost;
    bool      lost_exact;
};

static const char *cur_file(const lume_store_db *d)
{
    return d->mode == M_FILE ? d->path : d->mode == M_SPILL ? d->spill : "";
}

static void event(lume_store_db *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void event(lume_store_db *d, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->last_event, sizeof d->last_event, fmt, ap);
    va_end(ap);
    d->events++;
    lume_log(level, COMP, "%s", d->last_event);
}

static void set_error(lume_store_db *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(lume_store_db *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->last_error, sizeof d->last_error, fmt, ap);
    va_end(ap);
}

/* Close a connection without touching any file by name (invariant 1). */
static void close_quietly(sqlite3 *db)
{
    if (!db)
        return;
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_close_v2(db);
}

static int connect_file(const char *file, bool readonly, bool exclusive, sqlite3 **out)
{
    *out = NULL;
    int flags = SQLITE_OPEN_NOMUTEX | (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE);
    int rc = sqlite3_open_v2(file, out, flags, NULL);
    if (*out) {
        sqlite3_extended_result_codes(*out, 1);
        sqlite3_busy_timeout(*out, BUSY_MS);
        if (rc == SQLITE_OK && exclusive)
            rc = sqlite3_exec(*out, "PRAGMA locking_mode=EXCLUSIVE", NULL, NULL, NULL);
    }
    return rc;
}

/* A big file: its header (page size, page count) against its size on
 * disk, and its schema read. 1 damaged (why), else 0. */
static int check_header(sqlite3 *db, const char *file, off_t size, char *why, size_t n)
{
    unsigned char h[100];
    FILE *f = fopen(file, "rb");
    size_t got = f ? fread(h, 1, sizeof h, f) : 0;
    if (f)
        fclose(f);
    if (got == sizeof h) {
        if (memcmp(h, "SQLite format 3", 16) != 0) {
            lume_fmt(why, n, "file is not a database (no SQLite header)");
            return 1;
        }
        uint32_t psz = (uint32_t)h[16] << 8 | h[17];
        if (psz == 1)
            psz = 65536;
        uint32_t pages = (uint32_t)h[28] << 24 | (uint32_t)h[29] << 16 | (uint32_t)h[30] << 8 | h[31];
        bool valid = pages && !memcmp(h + 24, h + 92, 4);
        if (psz < 512 || (psz & (psz - 1))) {
            lume_fmt(why, n, "a bad page size in the header (%u)", psz);
            return 1;
        }
        if (valid && (off_t)pages * psz > size) {
            lume_fmt(why, n, "the file is shorter (%lld bytes) than its header says (%u pages "
                 "of %u)", (long long)size, pages, psz);
            return 1;
        }
    }
    return 0;
}

/* PRAGMA quick_check (a big file: check_header and its schema read): 0
 * fine, 1 damaged (why), or a negative SQLite code when the file could not
 * be read for another reason (why). */
static int check_file(sqlite3 *db, char *why, size_t n)
{
    sqlite3_stmt *s = NULL;
    const char *file = sqlite3_db_filename(db, "main");
    off_t size = file && *file ? size_of(file) : -1;
    if (size > 0) {
        char wal[4200];
        lume_fmt(wal, sizeof wal, "%s-wal", file);
        off_t ws = size_of(wal);
        if (size + (ws > 0 ? ws : 0) > CHECK_FULL_MAX) {
            if (check_header(db, file, size, why, n))
                return 1;
            int rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
            if (rc == SQLITE_OK)
                return 0;
            rc = sqlite3_extended_errcode(db);
            lume_fmt(why, n, "%s", sqlite3_errmsg(db));
            int p = rc & 0xff;
            return p == SQLITE_CORRUPT || p == SQLITE_NOTADB ? 1 : -rc;
        }
    }
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (t && !strcmp(t, "ok")) {
            sqlite3_finalize(s);
            return 0;
        }
        lume_fmt(why, n, "%s", t ? t : "quick_check failed");
        for (char *p = why; *p; p++)
            if (*p == '\n')
                *p = ' ';
        sqlite3_finalize(s);
        return 1;
    }
    lume_fmt(why, n, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(s);
    int p = rc & 0xff;
    if (p == SQLITE_CORRUPT || p == SQLITE_NOTADB || p == SQLITE_DONE)
        return 1;
    return -rc;
}

static bool shm_trouble(int rc)
{
    return rc == SQLITE_IOERR_SHMSIZE || rc == SQLITE_IOERR_SHMOPEN || rc == SQLITE_IOERR_SHMMAP ||
           rc == SQLITE_IOERR_SHMLOCK || (rc & 0xff) == SQLITE_FULL ||
           rc == SQLITE_READONLY_CANTINIT || rc == SQLITE_CANTOPEN;
}

/* The table's pragmas, journal_mode=WAL (files) and its schema. SQLite code. */
static int prepare_schema(lume_store_db *d)
{
    if (d->mode != M_MEMORY) {
        if (d->t->pragmas)
            sqlite3_exec(d->db, d->t->pragmas, NULL, NULL, NULL);
        int rc = sqlite3_exec(d->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return sqlite3_extended_errcode(d->db);
    }
    if (sqlite3_exec(d->db, d->t->schema, NULL, NULL, NULL) != SQLITE_OK)
        return sqlite3_extended_errcode(d->db);
    return SQLITE_OK;
}

/* Copy src into a new file at target (target.tmp, fsync, rename). 0 or
 * -errno / -EIO with why. */
static int backup_to(sqlite3 *src, const char *target, char *why, size_t n)
{
    char tmp[4300];
    lume_fmt(tmp, sizeof tmp, "%s.tmp", target);
    unlink(tmp);
    unlink_sfx(tmp, "-journal");
    int r = create_file(tmp);
    if (r < 0) {
        lume_fmt(why, n, "cannot create %s: %s", tmp, strerror(-r));
        return r;
    }
    sqlite3 *dst = NULL;
    int rc = connect_file(tmp, false, false, &dst);
    sqlite3_backup *b = rc == SQLITE_OK ? sqlite3_backup_init(dst, "main", src, "main") : NULL;
    if (b) {
        rc = sqlite3_backup_step(b, -1);
        int fin = sqlite3_backup_finish(b);
        if (rc == SQLITE_DONE)
            rc = fin;
    } else if (rc == SQLITE_OK) {
        rc = sqlite3_extended_errcode(dst);
    }
    if (rc != SQLITE_OK) {
        lume_fmt(why, n, "copy to %s failed: %s", tmp, dst ? sqlite3_errmsg(dst) : "no memory");
        sqlite3_close_v2(dst);
        unlink(tmp);
        unlink_sfx(tmp, "-journal");
        return (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
    }
    sqlite3_close_v2(dst);
    int fd = open(tmp, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    /* the copy holds everything: WAL files left at target belong to what it
     * replaces, and must not be replayed over the copy (invariant 2) */
    if (clear_wal(target) < 0) {
        r = -errno;
        lume_fmt(why, n, "cannot remove %s-wal or -shm: %s", target, strerror(-r));
        unlink(tmp);
        return r;
    }
    if (rename(tmp, target) != 0) {
        r = -errno;
        lume_fmt(why, n, "cannot put %s in place: %s", target, strerror(-r));
        unlink(tmp);
        return r;
    }
    fsync_dir(target);
    return 0;
}

/* 0 when lume may write path now (absent, or open for writing works),
 * else the errno that refused it. */
static int write_errno(const char *path)
{
    if (!exists(path))
        return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno ? errno : EACCES;
    close(fd);
    return 0;
}

static bool replaceable(const char *path) { return write_errno(path) == 0; }

static int64_t count_rows(sqlite3 *db, const char *table)
{
    char sql[256];
    lume_fmt(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    sqlite3_stmt *s = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* Move the live connection's rows to a fresh in-memory database. The old
 * connection is closed. Always leaves a usable connection (perhaps empty). */
static void go_memory(lume_store_db *d, const char *reason, bool partial)
{
    char why[512];
    lume_fmt(why, sizeof why, "%s", reason);   /* reason may be the old connection's message */
    sqlite3 *mem = NULL;
    if (sqlite3_open_v2(":memory:", &mem, MEM_FLAGS, NULL) != SQLITE_OK) {
        sqlite3_close_v2(mem);
        return;  /* out of memory: keep what there is */
    }
    sqlite3_extended_result_codes(mem, 1);
    int64_t rows = 0;
    if (d->db) {
        sqlite3_backup *b = sqlite3_backup_init(mem, "main", d->db, "main");
        if (b) {
            sqlite3_backup_step(b, -1);
            sqlite3_backup_finish(b);
        }
        close_quietly(d->db);
    }
    d->db = mem;
    d->mode = M_MEMORY;
    d->mem_partial = partial;
    sqlite3_exec(mem, d->t->schema, NULL, NULL, NULL);
    rows = count_rows(mem, d->t->table);
    d->next_retry_ns = lume_mono_ns() + RETRY_NS;
    set_error(d, "%s", why);
    event(d, LUME_LOG_ERROR, "%s: %s: running in memory (%lld row(s)) until the file can be "
          "written; retried every %d s", d->path, why, (long long)rows,
          (int)(RETRY_NS / LUME_NS_PER_SEC));
}

/* Salvage what src (a connection to the damaged file `file`) can read into
 * a fresh file in its place; the damaged file goes aside. Leaves d->db a
 * usable connection (the fresh file, or memory). `how` says what was found. */
static void salvage_into_place(lume_store_db *d, sqlite3 *src, const char *file,
                               const char *how)
{
    char tmp[4300], why[512] = "", aside[4400] = "";
    lume_fmt(tmp, sizeof tmp, "%s.salvage", file);
    unlink(tmp);
    unlink_sfx(tmp, "-journal");
    sqlite3 *dst = NULL;
    bool to_memory = create_file(tmp) < 0;
    int rc = to_memory ? sqlite3_open_v2(":memory:", &dst, MEM_FLAGS, NULL)
                       : connect_file(tmp, false, false, &dst);
    /* a scratch file until it is renamed into place (fsynced first) */
    if (rc == SQLITE_OK && d->t->pragmas && !to_memory)
        sqlite3_exec(dst, d->t->pragmas, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                               "PRAGMA cache_size=-16000", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(dst, d->t->schema, NULL, NULL, NULL);
    if (rc != SQLITE_OK && !to_memory) {
        sqlite3_close_v2(dst);
        unlink(tmp);
        to_memory = true;
        dst = NULL;
        rc = sqlite3_open_v2(":memory:", &dst, MEM_FLAGS, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(dst, d->t->schema, NULL, NULL, NULL);
    }
    lume_salvage_result r = {0};
    if (rc == SQLITE_OK)
        lume_salvage(src, dst, d->t, &r);
    if (d->t->hints_asc == NULL && r.damage)
        r.exact = false;
    close_quietly(src);
    if (src == d->db)
        d->db = NULL;

    d->corruptions++;
    d->salvaged += r.copied;
    d->lost += r.lost;
    d->lost_exact = d->corruptions == 1 ? r.exact : d->lost_exact && r.exact;
    char lost[96];
    if (r.exact)
        lume_fmt(lost, sizeof lost, "%lld lost", (long long)r.lost);
    else if (r.lost)
        lume_fmt(lost, sizeof lost, "at least %lld lost (more may be)", (long long)r.lost);
    else
        lume_fmt(lost, sizeof lost, "an unknown number lost (unreadable pages)");

    if (!to_memory) {
        sqlite3_close_v2(dst);
        dst = NULL;
        int fd = open(tmp, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    if (!to_memory && move_aside(file, "corrupt", aside, sizeof aside) == 0 &&
        rename(tmp, file) == 0) {
        fsync_dir(file);
        sqlite3_close_v2(dst);
        sqlite3 *db = NULL;
        connect_file(file, false, false, &db);
        d->db = db;
        event(d, LUME_LOG_ERROR, "%s is damaged (%s): moved aside to %s; %lld row(s) salvaged "
              "into a fresh file, %s", file, how, aside, (long long)r.copied, lost);
        set_error(d, "%s damaged (%s)", file, how);
        if (prepare_schema(d) != SQLITE_OK)
            go_memory(d, sqlite3_errmsg(d->db), false);
        return;
    }
    lume_fmt(why, sizeof why, "%s is damaged (%s) and cannot be replaced here", file, how);
    if (!to_memory) {
        /* the file stays: copy the salvaged rows to memory */
        sqlite3 *mem = NULL;
        connect_file(tmp, true, false, &dst);
        if (sqlite3_open_v2(":memory:", &mem, MEM_FLAGS, NULL) == SQLITE_OK) {
            sqlite3_backup *b = sqlite3_backup_init(mem, "main", dst, "main");
            if (b) {
                sqlite3_backup_step(b, -1);
                sqlite3_backup_finish(b);
            }
        }
        sqlite3_close_v2(dst);
        unlink(tmp);
        dst = mem;
    }
    d->db = dst;
    d->mode = M_MEMORY;
    d->damaged_in_place = true;
    d->next_retry_ns = lume_mono_ns() + RETRY_NS;
    set_error(d, "%s", why);
    event(d, LUME_LOG_ERROR, "%s: %lld row(s) salvaged into memory, %s; running in memory until "
          "the damaged file can be moved aside", why, (long long)r.copied, lost);
    if (d->db)
        sqlite3_exec(d->db, d->t->schema, NULL, NULL, NULL);
}

/* Put the live connection's rows at target (the path, or the spill) and
 * reconnect there. 0, or -errno with last_error (the old connection stays). */
static int put_in_place(lume_store_db *d, const char *target)
{
    char why[512], dir[4200];
    dir_of(target, dir, sizeof dir);
    if (!exists(dir)) {
        int r = lume_store_mkdirs(dir, 0700);
        if (r < 0) {
            set_error(d, "cannot make %s again: %s", dir, strerror(-r));
            return r;
        }
    }
    if (d->damaged_in_place && !strcmp(target, d->path) && exists(d->path)) {
        char aside[4400];
        if (move_aside(d->path, "corrupt", aside, sizeof aside) < 0) {
            set_error(d, "cannot move the damaged %s aside: %s", d->path, strerror(errno));
            return -EIO;
        }
        lume_log(LUME_LOG_WARN, COMP, "the damaged %s moved aside to %s", d->path, aside);
    }
    /* the WAL files at target are stale (the copy will hold their rows, or
     * they are the open connection's own, read through its descriptors):
     * gone first, and no copy is made while one cannot go (invariant 2) */
    if (clear_wal(target) < 0) {
        set_error(d, "cannot remove %s-wal or -shm: %s", target, strerror(errno));
        return -EPERM;
    }
    int r = backup_to(d->db, target, why, sizeof why);
    if (r < 0) {
        set_error(d, "%s", why);
        return r;
    }
    sqlite3 *db = NULL;
    int rc = connect_file(target, false, false, &db);
    if (rc == SQLITE_OK) {
        sqlite3 *old = d->db;
        int old_mode = d->mode;
        d->db = db;
        d->mode = !strcmp(target, d->path) ? M_FILE : M_SPILL;
        if ((rc = prepare_schema(d)) != SQLITE_OK) {
            lume_fmt(why, sizeof why, "%s", sqlite3_errmsg(db));
            d->db = old;
            d->mode = old_mode;
            close_quietly(db);
            set_error(d, "%s: %s", target, why);
            return -EIO;
        }
        close_quietly(old);
        if (old_mode == M_SPILL && d->mode == M_FILE) {
            unlink(d->spill);
            unlink_sfx(d->spill, "-wal");
            unlink_sfx(d->spill, "-shm");
        }
        d->damaged_in_place = false;
        d->exclusive = false;
        d->readonly_seen = d->ioerr_seen = false;
        return 0;
    }
    set_error(d, "%s: %s", target, db ? sqlite3_errmsg(db) : "cannot open");
    close_quietly(db);
    return -EIO;
}

/* Is the file under the connection still the one at its path? */
static bool moved(lume_store_db *d)
{
    if (d->mode == M_MEMORY || !d->db)
        return false;
    int m = 0;
    if (sqlite3_file_control(d->db, "main", SQLITE_FCNTL_HAS_MOVED, &m) != SQLITE_OK)
        return false;
    return m != 0;
}

lume_store_db *lume_store_db_open(const char *path, const lume_store_table *t, char **err)
{
    if (err)
        *err = NULL;
    lume_store_db *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path)) || !(d->spill = joinf(path, ".spill"))) {
        if (d)
            free(d->path);
        free(d);
        if (err)
            *err = lume_strdupf("out of memory");
        return NULL;
    }
    d->t = t;
    d->lost_exact = true;
    static const char *const sfx[] = {"", "-wal", "-shm", ".spill", ".spill-wal", ".spill-shm"};
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        char p[4300], *why = NULL;
        lume_fmt(p, sizeof p, "%s%s", path, sfx[i]);
        if (lume_store_secure(p, 0600, &why) == -EPERM) {
            if (err)
                *err = why;
            else
                free(why);
            free(d->spill);
            free(d->path);
            free(d);
            return NULL;
        }
    }
    char why[512] = "";

    /* A spill from an earlier run holds the newest rows. */
    if (exists(d->spill)) {
        if (replaceable(path) && clear_wal(path) == 0) {
            char a[4300], b[4300];
            lume_fmt(a, sizeof a, "%s-wal", d->spill);
            lume_fmt(b, sizeof b, "%s-wal", path);
            rename(a, b);
            unlink_sfx(d->spill, "-shm");
            if (rename(d->spill, path) == 0) {
                fsync_dir(path);
                lume_log(LUME_LOG_WARN, COMP, "%s: the spill of an earlier run (%s) put back "
                         "in place", path, d->spill);
            } else {
                rename(b, a);
                d->mode = M_SPILL;
            }
        } else {
            d->mode = M_SPILL;
        }
    }
    const char *file = cur_file(d);

    /* Absent, or empty. */
    struct stat st;
    int st_rc = stat(file, &st), st_errno = errno;
    if (st_rc != 0 && st_errno == ENOENT) {
        /* WAL files without their database belong to nothing we have */
        char w[4300];
        lume_fmt(w, sizeof w, "%s-wal", file);
        if (size_of(w) > 0) {
            char aside[4400], stp[32];
            stamp(stp, sizeof stp);
            lume_fmt(aside, sizeof aside, "%s.orphan-%s-wal", file, stp);
            rename(w, aside);
            lume_log(LUME_LOG_WARN, COMP, "%s: a WAL without its database moved aside to %s",
                     file, aside);
        }
        unlink_sfx(file, "-wal");
        unlink_sfx(file, "-shm");
        int r = create_file(file);
        if (r == -ENOENT || r == -ENOTDIR) {
            /* no directory: the caller's mistake, not the file's state */
            if (err)
                *err = lume_strdupf("cannot create %s: %s", file, strerror(-r));
            free(d->spill);
            free(d->path);
            free(d);
            return NULL;
        }
        if (r < 0 && r != -EEXIST) {
            lume_fmt(why, sizeof why, "cannot create %s: %s", file, strerror(-r));
            go_memory(d, why, false);   /* there was no file */
            goto schema;
        }
    } else if (st_rc == 0 && st.st_size == 0) {
        char w[4300];
        lume_fmt(w, sizeof w, "%s-wal", file);
        if (size_of(w) <= 0) {
            char aside[4400];
            d->corruptions++;
            d->lost_exact = false;
            if (move_aside(file, "corrupt", aside, sizeof aside) == 0 && create_file(file) == 0) {
                event(d, LUME_LOG_WARN, "%s was empty (0 bytes): whatever it held is lost; "
                      "moved aside to %s and started afresh", file, aside);
            } else {
                unlink_sfx(file, "-shm");
                event(d, LUME_LOG_WARN, "%s was empty (0 bytes): whatever it held is lost; "
                      "started afresh", file);
            }
            set_error(d, "%s was empty (0 bytes)", file);
        }
    }

    /* Writable? (a file of ours with a read-only mode was fixed above) */
    int werr = write_errno(file);
    bool readonly = werr != 0;
    int rc = connect_file(file, readonly, false, &d->db);
    int chk = rc == SQLITE_OK ? check_file(d->db, why, sizeof why) : -rc;
    if (chk < 0 && shm_trouble(-chk)) {
        char first[300];
        lume_fmt(first, sizeof first, "%s", why);
        close_quietly(d->db);
        d->db = NULL;
        rc = connect_file(file, readonly, true, &d->db);
        chk = rc == SQLITE_OK ? check_file(d->db, why, sizeof why) : -rc;
        if (chk >= 0) {
            d->exclusive = true;
            d->next_retry_ns = lume_mono_ns() + RETRY_NS;
            set_error(d, "%s: no shared memory for the WAL (%s)", file, first);
            lume_log(LUME_LOG_WARN, COMP, "%s: its shared memory (-shm) cannot be made (disk "
                     "full?): exclusive locking until it can; readers of the file wait",
                     file);
        }
    }
    if (chk < 0 && ((-chk) & 0xff) == SQLITE_NOMEM) {
        /* short of memory says nothing about the file: it stays as it is
         * (taken for damage, it was moved aside and salvaged with no
         * memory to salvage with: every row lost) */
        close_quietly(d->db);
        if (err)
            *err = lume_strdupf("%s: out of memory", path);
        free(d->spill);
        free(d->path);
        free(d);
        return NULL;
    }
    if (chk == 1) {
        sqlite3 *src = d->db;
        d->db = NULL;
        char how[512];
        lume_fmt(how, sizeof how, "%s", why);
        salvage_into_place(d, src, file, how);
        goto schema;
    }
    if (chk < 0 && ((-chk) & 0xff) != SQLITE_BUSY && ((-chk) & 0xff) != SQLITE_LOCKED) {
        /* unreadable (I/O errors): as damaged, what can be read is saved */
        sqlite3 *src = d->db;
        d->db = NULL;
        char how[512];
        lume_fmt(how, sizeof how, "cannot be read: %s", why);
        salvage_into_place(d, src, file, how);
        goto schema;
    }
    if (chk < 0) {
        /* another process holds the file (an sqlite3 shell in a write
         * transaction): it stays as it is, lume runs in memory */
        lume_fmt(why, sizeof why, "%s is locked by another process: %s", file,
             d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(-chk));
        close_quietly(d->db);
        d->db = NULL;
        go_memory(d, why, true);
        goto schema;
    }
    if (readonly) {
        char copy[512];
        if (d->mode == M_FILE && backup_to(d->db, d->spill, copy, sizeof copy) == 0) {
            sqlite3 *db = NULL;
            if (connect_file(d->spill, false, false, &db) == SQLITE_OK) {
                close_quietly(d->db);
                d->db = db;
                d->mode = M_SPILL;
                d->exclusive = false;
                d->next_retry_ns = lume_mono_ns() + RETRY_NS;
                set_error(d, "%s cannot be written: %s", path, strerror(werr));
                event(d, LUME_LOG_WARN, "%s cannot be written (read-only, immutable or not "
                      "ours): its rows are copied to %s and kept there until %s can be "
                      "replaced; %s itself is left as it is", path, d->spill, path, path);
                goto schema;
            }
            close_quietly(db);
            unlink(d->spill);
        }
        lume_fmt(why, sizeof why, "%s cannot be written, nor a copy next to it", file);
        go_memory(d, why, false);
    }

schema:
    if (d->db && d->mode != M_MEMORY && (rc = prepare_schema(d)) != SQLITE_OK) {
        lume_fmt(why, sizeof why, "%s: %s", file, sqlite3_errmsg(d->db));
        go_memory(d, why, false);
    }
    if (!d->db) {
        if (err)
            *err = lume_strdupf("%s: out of memory", path);
        free(d->spill);
        free(d->path);
        free(d);
        return NULL;
    }
    return d;
}

void lume_store_db_note(lume_store_db *d, int rc, const char *msg)
{
    if (!d)
        return;
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        d->full_seen = d->readonly_seen = d->ioerr_seen = false;
        return;
    case SQLITE_FULL:
        d->full_seen = true;
        d->full_at_ns = lume_mono_ns();
        break;
    case SQLITE_READONLY:
        d->readonly_seen = true;
        break;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        d->ioerr_seen = true;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        d->corrupt_seen = true;
        break;
    default:
        break;
    }
    set_error(d, "%s: %s", cur_file(d)[0] ? cur_file(d) : d->path,
              msg ? msg : sqlite3_errstr(rc));
}

/* Writes to the file failed as if it were read-only (or its disk broken). */
static bool stopped_taking_writes(const lume_store_db *d)
{
    return d->mode == M_FILE && (d->readonly_seen || d->ioerr_seen);
}

/* Does the file take a write now? (the schema version, rewritten as it is) */
static int write_probe(lume_store_db *d)
{
    int64_t v = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    char sql[64];
    lume_fmt(sql, sizeof sql, "PRAGMA user_version=%lld", (long long)v);
    if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sqlite3_extended_errcode(d->db);
    return SQLITE_OK;
}

int lume_store_db_relieve(lume_store_db *d)
{
    if (!d || !d->db || d->mode == M_MEMORY)
        return -EINVAL;
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(d->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
    return rc == SQLITE_OK ? 0 : -EIO;
}

void lume_store_db_space_back(lume_store_db *d)
{
    /* not while writes still fail: only a failure a while ago is stale */
    if (d && lume_mono_ns() - d->full_at_ns > 2 * LUME_NS_PER_SEC)
        d->full_seen = false;
}

bool lume_store_db_full(const lume_store_db *d) { return d && d->full_seen; }

bool lume_store_db_due(lume_store_db *d)
{
    if (!d || d->stranded)
        return false;
    if (d->corrupt_seen || moved(d))
        return true;
    int64_t now = lume_mono_ns();
    if (stopped_taking_writes(d) && now >= d->next_probe_ns)
        return true;
    if (d->full_seen && d->mode != M_MEMORY && now >= d->next_relief_ns)
        return true;
    return (d->mode != M_FILE || d->exclusive) && now >= d->next_retry_ns;
}

int lume_store_db_repair(lume_store_db *d)
{
    if (!d || !d->db)
        return 0;
    if (d->corrupt_seen) {
        d->corrupt_seen = false;
        char how[300];
        lume_fmt(how, sizeof how, "found while running: %s", d->last_error);
        if (d->mode == M_MEMORY) {
            /* damage in memory is not a file's: nothing to move aside */
            return 0;
        }
        char file[4300];
        lume_fmt(file, sizeof file, "%s", cur_file(d));
        salvage_into_place(d, d->db, file, how);
        return 2;
    }
    if (moved(d)) {
        const char *target = cur_file(d);
        if (exists(target)) {
            char aside[4400];
            if (move_aside(target, "replaced", aside, sizeof aside) == 0)
                lume_log(LUME_LOG_ERROR, COMP, "%s was replaced by another file while lume ran: "
                         "that file moved aside to %s", target, aside);
        }
        char tgt[4300];
        lume_fmt(tgt, sizeof tgt, "%s", target);
        if (put_in_place(d, tgt) < 0) {
            lume_log(LUME_LOG_ERROR, COMP, "%s was deleted or replaced while lume ran and cannot "
                     "be put back yet: %s (the open connection keeps every row; retried)", tgt,
                     d->last_error);
            return 0;
        }
        d->recoveries++;
        event(d, LUME_LOG_ERROR, "%s was deleted or replaced while lume ran: put back from the "
              "open connection, nothing lost", tgt);
        return 1;
    }
    int64_t now = lume_mono_ns();
    if (stopped_taking_writes(d) && now >= d->next_probe_ns) {
        d->next_probe_ns = now + LUME_NS_PER_SEC;
        if (write_probe(d) == SQLITE_OK) {
            d->readonly_seen = d->ioerr_seen = false;
            return 0;
        }
        char was[300];
        lume_fmt(was, sizeof was, "%s", d->last_error);
        if (put_in_place(d, d->spill) == 0) {
            d->next_retry_ns = now + RETRY_NS;
            set_error(d, "%s", was);
            event(d, LUME_LOG_ERROR, "%s stopped taking writes (%s): its rows are copied to %s "
                  "and kept there until it can be replaced", d->path, was, d->spill);
        } else {
            go_memory(d, was, false);
        }
        return 1;
    }
    if (d->full_seen && d->mode != M_MEMORY && now >= d->next_relief_ns) {
        d->next_relief_ns = now + RELIEF_NS;
        lume_store_db_relieve(d);
    }
    if (now < d->next_retry_ns)
        return 0;
    d->next_retry_ns = now + RETRY_NS;
    if (d->mode == M_MEMORY && d->mem_partial) {
        /* the file holds rows memory does not: it is never replaced; it
         * is used again if nothing was written to memory meanwhile */
        sqlite3 *db = NULL;
        char why[256];
        if (count_rows(d->db, d->t->table) == 0 &&
            connect_file(d->path, false, false, &db) == SQLITE_OK &&
            check_file(db, why, sizeof why) == 0) {
            sqlite3_close_v2(d->db);
            d->db = db;
            d->mode = M_FILE;
            d->mem_partial = false;
            if (prepare_schema(d) == SQLITE_OK) {
                event(d, LUME_LOG_WARN, "%s can be used again", d->path);
                return 1;
            }
            go_memory(d, sqlite3_errmsg(d->db), false);
            return 1;
        }
        close_quietly(db);
        return 0;
    }
    if (d->mode == M_SPILL || d->mode == M_MEMORY) {
        if (!replaceable(d->path))
            return 0;
        int was = d->mode;
        if (put_in_place(d, d->path) < 0)
            return 0;
        event(d, LUME_LOG_WARN, "%s can be written again: the rows kept in %s are back in it",
              d->path, was == M_SPILL ? d->spill : "memory");
        return 1;
    }
    if (d->exclusive) {
        /* shared memory may be possible now (space freed). The exclusive
         * connection holds the file's lock: it goes first (checkpointing
         * as it closes), and comes back if the shared one cannot be made. */
        sqlite3 *db = NULL;
        char why[256];
        sqlite3_close_v2(d->db);
        d->db = NULL;
        if (connect_file(d->path, false, false, &db) == SQLITE_OK &&
            check_file(db, why, sizeof why) == 0) {
            d->db = db;
            d->exclusive = false;
            lume_log(LUME_LOG_INFO, COMP, "%s: shared memory available again; readers no longer "
                     "wait", d->path);
            return 1;
        }
        close_quietly(db);
        if (connect_file(d->path, false, true, &d->db) != SQLITE_OK) {
            close_quietly(d->db);
            d->db = NULL;
            go_memory(d, "cannot open the file again", true);
        }
        return 1;
    }
    return 0;
}

void lume_store_db_strand(lume_store_db *d)
{
    if (d)
        d->stranded = true;
}

/* The store went to another runtime: this connection's rows are saved next
 * to its files, under a name that says whose they were. */
static void save_stranded(lume_store_db *d)
{
    char st[32], target[4400], why[512];
    stamp(st, sizeof st);
    lume_fmt(target, sizeof target, "%s.stranded-%d-%s", d->path, (int)getpid(), st);
    if (backup_to(d->db, target, why, sizeof why) == 0)
        event(d, LUME_LOG_ERROR, "%s belongs to another runtime now: the %lld row(s) this one "
              "held are saved as %s", d->path, (long long)count_rows(d->db, d->t->table),
              target);
    else
        event(d, LUME_LOG_ERROR, "%s belongs to another runtime now, and this one's rows "
              "cannot be saved: %s", d->path, why);
}

void lume_store_db_close(lume_store_db *d)
{
    if (!d)
        return;
    if (d->stranded) {
        save_stranded(d);
        close_quietly(d->db);
        free(d->spill);
        free(d->path);
        free(d);
        return;
    }
    if (moved(d) || d->mode != M_FILE) {
        d->next_retry_ns = 0;
        lume_store_db_repair(d);
    }
    if (d->mode == M_MEMORY && d->db) {
        int64_t n = count_rows(d->db, d->t->table);
        lume_log(LUME_LOG_ERROR, COMP, "%s could not be written (%s): the %lld row(s) held in "
                 "memory are not saved; the file keeps what it held before", d->path,
                 d->last_error, (long long)n);
    }
    if (d->mode == M_MEMORY || d->exclusive)
        sqlite3_close_v2(d->db);
    else if (moved(d))
        close_quietly(d->db);
    else
        sqlite3_close_v2(d->db);
    free(d->spill);
    free(d->path);
    free(d);
}

sqlite3 *lume_store_db_handle(const lume_store_db *d) { return d ? d->db : NULL; }
const char *lume_store_db_file(const lume_store_db *d) { return d ? cur_file(d) : ""; }
bool lume_store_db_in_memory(const lume_store_db *d) { return d && d->mode == M_MEMORY; }
bool lume_store_db_exclusive(const lume_store_db *d) { return d && d->exclusive; }

void lume_store_db_info_get(const lume_store_db *d, lume_store_db_info *o)
{
    memset(o, 0, sizeof *o);
    if (!d) {
        o->file = o->mode = o->last_error = o->last_event = "";
        return;
    }
    o->file = cur_file(d);
    o->mode = mode_names[d->mode];
    o->exclusive = d->exclusive;
    o->writable = d->mode == M_FILE && !d->readonly_seen && !d->ioerr_seen;
    o->disk_full = d->full_seen;
    o->last_error = d->last_error;
    o->recoveries = d->recoveries;
    o->corruptions = d->corruptions;
    o->salvaged = d->salvaged;
    o->lost = d->lost;
    o->lost_exact = d->lost_exact;
    o->last_event = d->last_event;
    o->events = d->events;
}
