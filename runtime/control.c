/* runtime/control.c — the control socket: how `lume reload` and `lume stats`
 * reach a running lume.
 *
 * A Unix stream socket at STORE/lume.sock (mode 0600: bound in a fresh 0700
 * directory, chmod'ed, then renamed into place — the process umask, which
 * belongs to the embedder, is never changed). One request line per
 * connection, one answer line, then lume closes the connection:
 *   reload [NAME]   -> "ok reloaded NAME" | "ok reloaded all scripts ..." |
 *                      "error MESSAGE"
 *   status          -> "ok <status line>"
 *   stats           -> "ok {json}": sensors, scripts, outbox, process
 * Anything else gets "error MESSAGE" naming what was wrong: an empty line, a
 * NUL byte, a line longer than MAX_REQUEST bytes, an unknown command, extra
 * arguments. A script the twin manages is not reloaded from a file: the
 * answer names the twin and the bundle version (`lume reload` of every
 * script leaves those alone and says so).
 *
 * Limits, and why each exists (fault injection found the first two):
 *   MAX_CONNS   connections open at once. A client that connects and sends
 *               nothing used to hold a descriptor for ever; a thousand of
 *               them used up RLIMIT_NOFILE, accept4() then failed with
 *               EMFILE while the listening socket stayed readable, and the
 *               loop spun at full speed on it.
 *   IDLE_MS     from accept (or from the last write progress) to the end of
 *               the exchange. Not reset by each byte read: a client
 *               trickling one byte a second cannot hold a slot.
 *   MAX_REQUEST bytes of a request line, newline included.
 *   EVICT_MS    when all slots are taken, a newcomer takes the slot of the
 *               connection that has waited longest without a request, if it
 *               has waited at least this long (an operator's `lume stats`
 *               gets through a flood of idle connections); otherwise the
 *               newcomer is the one turned away.
 *
 * A connection's life:
 *
 *        accept4() ── all MAX_CONNS slots busy, none idle ≥ EVICT_MS ──►
 *            │         "error busy ..." written, closed at once (never watched)
 *            ▼
 *   ┌──────────────────┐ a complete line (\n, or EOF after bytes),   ┌──────────────────┐
 *   │ READING          │ or a bad one (NUL, > MAX_REQUEST, empty):   │ WRITING          │
 *   │ POLLIN watched;  │ handle() makes the one answer line ───────► │ reads paused,    │
 *   │ timer: IDLE_MS   │                                             │ POLLOUT while    │
 *   │ from accept      │                                             │ the answer waits;│
 *   └──────────────────┘                                             │ timer: IDLE_MS   │
 *      │ IDLE_MS passes, or evicted: "error ..." (best effort)       │ since progress   │
 *      │ EOF with nothing sent: "error empty request" (best effort)  └──────────────────┘
 *      │ read error                                                     │ all written, or
 *      ▼                                                                ▼ IDLE_MS, or error
 *   CLOSED: unwatched (the loop closes the descriptor), timer cancelled, slot free
 *
 * Invariants:
 *   1. At most MAX_CONNS connections are open. Every connection accepted is
 *      served or answered "error ..." and closed; none waits unanswered in
 *      the kernel's backlog because lume stopped accepting.
 *   2. No descriptor sits in the poll set while it cannot make progress:
 *      when accept4() fails for want of descriptors, one reserve descriptor
 *      is given up to accept and turn away the newcomer (and a client idle
 *      for EVICT_MS gives its descriptor up for the next one), and when even
 *      that fails the listening socket is paused for PAUSE_MS; a connection in
 *      WRITING has its reads paused (a half-closed client is readable for
 *      ever).
 *   3. Every connection ends at most IDLE_MS after its last progress.
 *   4. Every request gets exactly one answer line, unless the client left.
 *   5. Loop thread only; answers never block (MSG_DONTWAIT, SIGPIPE never
 *      raised: MSG_NOSIGNAL, embedders need not ignore it).
 *
 * No Lua here (runtime/services.h): the runtime is seen through
 * lume_services; `reload` reaches the scripts through scripts.h's Lua-free
 * prototypes, `status` and `stats` through lume.h. */
#include "control.h"
#include "lume.h"
#include "scripts.h"
#include "services.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "log.h"

#define MAX_CONNS 16
#define IDLE_MS 5000
#define EVICT_MS 1000
#define PAUSE_MS 1000
#define MAX_REQUEST 4096
#define ACCEPT_BATCH 64          /* accepts per turn: other work gets its turn too */
#define WARN_EVERY_MS 10000
#define MAX_ANSWER (64u << 20)   /* what the client reads at most */
#define COMMANDS "commands: reload [NAME], status, stats"

enum { C_READING, C_WRITING };

struct lume_control;

typedef struct conn {
    struct lume_control *ctl;
    lume_watch   *w;
    int           fd;
    int           state;
    int64_t       accepted_ns;
    lume_timer    timer;
    char          in[MAX_REQUEST];
    size_t        n;
    char         *out;
    size_t        outlen, outoff;
    struct conn  *prev, *next;
} conn;

struct lume_control {
    lume_runtime *rt;
    lume_watch   *listen;
    char         *path;
    int           reserve;        /* /dev/null, given up when accept4 hits EMFILE */
    conn         *conns;
    size_t        nconns;
    lume_timer    resume;         /* the listening socket's pause */
    bool          paused;
    int64_t       warned_busy_ms; /* last "all slots taken" warning */
    int64_t       warned_fd_ms;   /* last "accept failed" warning */
    uint64_t      refused;        /* turned away since the last warning */
    bool          disowned;       /* the file at path is not ours: close leaves it */
};

static int64_t now_ns(void) { return lume_mono_ns(); }

/* "ok ..."/"error ..." as one line: newlines inside become spaces. A fresh
 * malloc'd string ending in '\n', NULL when out of memory. */
static char *line_of(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 2);
    if (!s)
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    for (int i = 0; i < n; i++)
        if (s[i] == '\n' || s[i] == '\r')
            s[i] = ' ';
    s[n] = '\n';
    s[n + 1] = 0;
    return s;
}

static char *fmt_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = line_of(fmt, ap);
    va_end(ap);
    return s;
}

/* Best effort, for a connection about to be closed: one short line into an
 * empty socket buffer always fits; a client that left is no error. */
static void say_and_forget(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_and_forget(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = line_of(fmt, ap);
    va_end(ap);
    if (s) {
        ssize_t w = send(fd, s, strlen(s), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    free(s);
}

/* At most one warning of a kind (its last time in *last) per WARN_EVERY_MS. */
static void warn_limited(int64_t *last, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn_limited(int64_t *last, const char *fmt, ...)
{
    int64_t now = lume_wall_ms();
    if (*last && now - *last < WARN_EVERY_MS)
        return;
    *last = now;
    va_list ap;
    va_start(ap, fmt);
    lume_logv(LUME_LOG_WARN, "control", fmt, ap);
    va_end(ap);
}

/* ---- a connection ----------------------------------------------------------- */

static void conn_close(conn *k)
{
    struct lume_control *c = k->ctl;
    lume_timer_cancel(&k->timer);
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    c->nconns--;
    lume_loop_unwatch(k->w); /* the loop closes the descriptor */
    free(k->out);
    free(k);
}

static void on_writable(void *ud, int fd);

/* Write what the answer has left. Closes k when done or when the client is
 * gone; otherwise waits for POLLOUT (k stays). */
static void flush(conn *k)
{
    while (k->outoff < k->outlen) {
        ssize_t w = send(k->fd, k->out + k->outoff, k->outlen - k->outoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            k->outoff += (size_t)w;
            lume_timer_start(&k->timer, (int64_t)IDLE_MS * 1000); /* progress */
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            lume_loop_watch_writable(k->w, on_writable) == 0)
            return;
        break; /* EPIPE, ECONNRESET: the client left */
    }
    conn_close(k);
}

static void on_writable(void *ud, int fd)
{
    (void)fd;
    flush(ud);
}

/* READING -> WRITING with this answer (a malloc'd line; NULL: out of memory). */
static void answer(conn *k, char *line)
{
    if (!line)
        line = strdup("error out of memory\n");
    if (!line) {
        conn_close(k);
        return;
    }
    k->state = C_WRITING;
    k->out = line;
    k->outlen = strlen(line);
    k->outoff = 0;
    lume_loop_watch_pause(k->w, true);
    lume_timer_start(&k->timer, (int64_t)IDLE_MS * 1000);
    flush(k);
}

/* A command word fit to be quoted back: printable, at most 40 bytes. */
static void quote(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src[i] && i < n - 1 && i < 40; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = 0;
}

static char *handle(lume_runtime *rt, char *line)
{
    lume_services *sv = lume_runtime_services(rt);
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r", &save);
    char *arg = cmd ? strtok_r(NULL, " \t\r", &save) : NULL;
    char *extra = arg ? strtok_r(NULL, " \t\r", &save) : NULL;
    if (!cmd)
        return fmt_line("error empty request (" COMMANDS ")");
    if (!strcmp(cmd, "reload")) {
        if (extra)
            return fmt_line("error reload takes at most one script name");
        char *err = NULL, *out;
        int r = lume_scripts_reload(rt, arg, &err);
        if (r == 0 && arg) {
            out = fmt_line("ok reloaded %s", arg);
        } else if (r == 0) {
            char *note = lume_scripts_managed_note(rt);
            out = fmt_line("ok reloaded all scripts from %s%s", sv->cfg.scripts_dir,
                           note ? note : "");
            free(note);
        } else {
            out = fmt_line("error %s", err ? err : "reload failed");
        }
        free(err);
        return out;
    }
    if (!strcmp(cmd, "stats") || !strcmp(cmd, "status")) {
        if (arg)
            return fmt_line("error %s takes no argument", cmd);
        if (!strcmp(cmd, "status")) {
            char st[2048];
            lume_runtime_status_line(rt, st, sizeof st);
            return fmt_line("ok %s", st);
        }
        char *json = lume_runtime_stats_json(rt);
        char *out = json ? fmt_line("ok %s", json) : NULL;
        free(json);
        return out;
    }
    char q[48];
    quote(q, sizeof q, cmd);
    return fmt_line("error unknown command '%s' (" COMMANDS ")", q);
}

static void on_readable(void *ud, int fd)
{
    conn *k = ud;
    if (k->state != C_READING)
        return;
    for (;;) {
        ssize_t n = read(fd, k->in + k->n, sizeof k->in - k->n);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* the rest of the line later, within IDLE_MS */
        if (n < 0) {
            conn_close(k);
            return;
        }
        if (n == 0) { /* EOF: what came is the request */
            if (!k->n) {
                say_and_forget(fd, "error empty request (" COMMANDS ")");
                conn_close(k);
                return;
            }
            break;
        }
        size_t start = k->n;
        k->n += (size_t)n;
        const char *nul = memchr(k->in + start, 0, k->n - start);
        const char *nl = memchr(k->in, '\n', k->n);
        if (nul && (!nl || nul < nl)) {
            answer(k, fmt_line("error the request contains a NUL byte (at byte %zu): send one "
                               "line of text (" COMMANDS ")", (size_t)(nul - k->in)));
            return;
        }
        if (nl) {
            k->n = (size_t)(nl - k->in);
            break;
        }
        if (k->n == sizeof k->in) {
            answer(k, fmt_line("error request too long: no newline in the first %d bytes",
                               MAX_REQUEST));
            return;
        }
    }
    k->in[k->n < sizeof k->in ? k->n : sizeof k->in - 1] = 0;
    answer(k, handle(k->ctl->rt, k->in));
}

static void on_conn_timer(lume_timer *t)
{
    conn *k = t->ud;
    if (k->state == C_READING && lume_loop_watch_open(k->w))
        say_and_forget(k->fd, "error no complete request line within %d ms", IDLE_MS);
    conn_close(k); /* WRITING: the client does not read its answer */
}

/* The READING connection that has waited longest, if that is EVICT_MS. */
static conn *evictable(struct lume_control *c)
{
    conn *old = NULL;
    for (conn *k = c->conns; k; k = k->next)
        if (k->state == C_READING && (!old || k->accepted_ns < old->accepted_ns))
            old = k;
    if (old && now_ns() - old->accepted_ns >= (int64_t)EVICT_MS * 1000000)
        return old;
    return NULL;
}

static void admit(struct lume_control *c, int fd)
{
    if (c->nconns >= MAX_CONNS) {
        conn *old = evictable(c);
        if (!old) {
            say_and_forget(fd, "error busy: %d control connections are open (the limit); try "
                           "again", MAX_CONNS);
            close(fd);
            c->refused++;
            warn_limited(&c->warned_busy_ms, "%d control connections open (the limit): turning newcomers away "
                         "(%llu so far)", MAX_CONNS, (unsigned long long)c->refused);
            return;
        }
        if (lume_loop_watch_open(old->w))
            say_and_forget(old->fd, "error closed: no request after %lld ms while other clients "
                       "waited", (long long)((now_ns() - old->accepted_ns) / 1000000));
        conn_close(old);
    }
    conn *k = calloc(1, sizeof *k);
    char *err = NULL;
    lume_loop *loop = lume_runtime_services(c->rt)->loop;
    if (!k || !(k->w = lume_loop_watch_fd(loop, fd, on_readable, k, &err))) {
        say_and_forget(fd, "error busy: %s", err ? err : "out of memory");
        free(err);
        free(k);
        close(fd);
        return;
    }
    k->ctl = c;
    k->fd = fd;
    k->state = C_READING;
    k->accepted_ns = now_ns();
    lume_timer_init(&k->timer, loop, on_conn_timer, k);
    lume_timer_start(&k->timer, (int64_t)IDLE_MS * 1000);
    k->next = c->conns;
    if (c->conns)
        c->conns->prev = k;
    c->conns = k;
    c->nconns++;
    lume_check(c->nconns <= MAX_CONNS, "invariant 1: at most MAX_CONNS connections are open");
}

static void on_resume(lume_timer *t)
{
    struct lume_control *c = t->ud;
    c->paused = false;
    if (c->reserve < 0)
        c->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    lume_loop_watch_pause(c->listen, false);
}

/* accept4 failed for want of descriptors: give up the reserve one to accept
 * the newcomer, tell it why and close it. True when one was turned away. */
static bool shed(struct lume_control *c, int lfd, int why)
{
    if (c->reserve < 0)
        return false;
    close(c->reserve);
    c->reserve = -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        say_and_forget(fd, "error busy: lume is out of file descriptors (%s)", strerror(why));
        close(fd);
        c->refused++;
    }
    c->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* and a client idle for a while gives its descriptor up, so the next
     * one (an operator's lume stats) gets in */
    conn *old = evictable(c);
    if (old) {
        if (lume_loop_watch_open(old->w))
            say_and_forget(old->fd, "error closed: no request after %lld ms while lume is short "
                           "of file descriptors",
                           (long long)((now_ns() - old->accepted_ns) / 1000000));
        conn_close(old);
    }
    warn_limited(&c->warned_fd_ms, "accept: %s: turning control clients away (%llu so far)", strerror(why),
                 (unsigned long long)c->refused);
    return fd >= 0;
}

static void on_listen(void *ud, int lfd)
{
    struct lume_control *c = ud;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(c, fd);
            continue;
        }
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        if (e == EINTR || e == ECONNABORTED)
            continue;
        if ((e == EMFILE || e == ENFILE) && shed(c, lfd, e))
            continue;
        /* nothing to be done now: stop polling the socket for a while rather
         * than spin on it (invariant 2) */
        warn_limited(&c->warned_fd_ms, "accept: %s: the control socket pauses for %d ms", strerror(e),
                     PAUSE_MS);
        if (!c->paused && lume_loop_watch_pause(c->listen, true) == 0) {
            c->paused = true;
            lume_timer_start(&c->resume, (int64_t)PAUSE_MS * 1000);
        }
        return;
    }
}

/* Bind fd at path with mode 0600 without touching the umask (the REPL's
 * socket too, repl_sock.c): no one else
 * can reach the socket while it sits in a private directory next to path,
 * where it is bound, given its mode and then renamed to path (atomic; the
 * open socket follows its file). 0, or -errno. */
int lume_control_bind_private(int fd, const char *path)
{
    char dir[4096], tmp[4200];
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) + 1 : 0;
    snprintf(dir, sizeof dir, "%.*s.sock.XXXXXX", dlen, path);
    if (!mkdtemp(dir)) /* mode 0700 */
        return -errno;
    snprintf(tmp, sizeof tmp, "%s/s", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int r = 0;
    if (strlen(tmp) >= sizeof sa.sun_path)
        r = -ENAMETOOLONG;
    else {
        strcpy(sa.sun_path, tmp);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(tmp, 0600) < 0 ||
            rename(tmp, path) < 0)
            r = -errno;
        if (r < 0)
            unlink(tmp);
    }
    rmdir(dir);
    return r;
}

int lume_control_listen(lume_runtime *rt, char **err)
{
    lume_services *sv = lume_runtime_services(rt);
    char path[4096];
    snprintf(path, sizeof path, "%s/lume.sock", sv->cfg.store);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        *err = lume_strdupf("control socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = lume_strdupf("control socket: %s", strerror(errno));
        return -errno;
    }
    /* a stale socket from a killed lume: remove it only if nobody answers */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        if (connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            close(fd);
            *err = lume_strdupf("another lume is running with store %s (%s answers)",
                                sv->cfg.store, path);
            return -EADDRINUSE;
        }
        close(probe);
    }
    unlink(path);
    int r = lume_control_bind_private(fd, path);
    if (r < 0 || listen(fd, MAX_CONNS * 2) < 0) {
        int e = r < 0 ? -r : errno;
        *err = lume_strdupf("control socket %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    struct lume_control *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        close(fd);
        unlink(path);
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    c->rt = rt;
    c->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    lume_timer_init(&c->resume, sv->loop, on_resume, c);
    c->listen = lume_loop_watch_fd(sv->loop, fd, on_listen, c, err);
    if (!c->listen) {
        close(fd);
        unlink(path);
        if (c->reserve >= 0)
            close(c->reserve);
        free(c->path);
        free(c);
        return -EIO;
    }
    sv->control = c;
    return 0;
}

void lume_control_close(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_control *c = sv->control;
    if (!c)
        return;
    while (c->conns)
        conn_close(c->conns);
    lume_timer_cancel(&c->resume);
    lume_loop_unwatch(c->listen); /* the loop closes the socket */
    if (!c->disowned)
        unlink(c->path);
    if (c->reserve >= 0)
        close(c->reserve);
    free(c->path);
    free(c);
    sv->control = NULL;
}

const char *lume_control_path(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    return sv->control ? sv->control->path : NULL;
}

void lume_control_disown(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    if (sv->control)
        sv->control->disowned = true;
}

/* ---- the client: lume reload, lume stats ----------------------------------- */

int lume_control_request(const char *sock_path, const char *line)
{
    char what[32];
    snprintf(what, sizeof what, "%.*s", (int)strcspn(line, " "), line);
    size_t len = strlen(line);
    if (len >= MAX_REQUEST || memchr(line, '\n', len)) {
        fprintf(stderr, "lume %s: the request must be one line shorter than %d bytes\n", what,
                MAX_REQUEST);
        return 2;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof sa.sun_path) {
        fprintf(stderr, "lume %s: socket path too long: %s\n", what, sock_path);
        return 2;
    }
    strcpy(sa.sun_path, sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "lume %s: cannot reach a running lume at %s: %s\n", what, sock_path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    char *req = lume_strdupf("%s\n", line);
    size_t off = 0;
    while (req && off < len + 1) {
        ssize_t w = send(fd, req + off, len + 1 - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(req);
    /* even when the request could not be sent whole, lume may have
     * answered (busy, too long): read what it said */
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    bool timed_out = false;
    int64_t deadline = lume_mono_ns() + 30 * LUME_NS_PER_SEC;
    while (buf) {
        if (got && memchr(buf, '\n', got))
            break;
        int64_t left = (deadline - lume_mono_ns()) / 1000000;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int p = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (p < 0 && errno == EINTR)
            continue;
        if (p <= 0) {
            timed_out = p == 0;
            break;
        }
        if (got + 1 >= cap) {
            char *nb = cap < MAX_ANSWER ? realloc(buf, cap * 2) : NULL;
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) {
        fprintf(stderr, "lume %s: out of memory\n", what);
        return 1;
    }
    buf[got] = 0;
    int code = 1;
    char *nl = memchr(buf, '\n', got);
    if (nl)
        nl[1] = 0;
    if (!got && timed_out)
        fprintf(stderr, "lume %s: no answer from %s within 30 s\n", what, sock_path);
    else if (!got)
        fprintf(stderr, "lume %s: the lume at %s closed the connection without answering\n",
                what, sock_path);
    else if (!nl)
        fprintf(stderr, "lume %s: incomplete answer from %s (%zu bytes, no newline)\n", what,
                sock_path, got);
    else if (!strncmp(buf, "ok ", 3)) {
        fputs(buf + 3, stdout);
        code = 0;
    } else if (!strncmp(buf, "error ", 6))
        fprintf(stderr, "lume %s: %s", what, buf + 6);
    else
        fprintf(stderr, "lume %s: unexpected answer from %s: %s", what, sock_path, buf);
    free(buf);
    return code;
}
