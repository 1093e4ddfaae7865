/* runtime/repl_sock.c — the REPL's socket: how `lume repl` reaches a running
 * lume. Each connection is one session of the evaluator (bindings/repl.h).
 *
 * A Unix stream socket at STORE/repl.sock, mode 0600 (bound as the control
 * socket is, lume_control_bind_private). Besides the mode, every connection
 * is checked with SO_PEERCRED: a peer whose uid is not this process's
 * effective uid is told so and closed, even if someone loosened the mode.
 *
 * Protocol. The client sends lines (at most MAX_LINE bytes, newline
 * included):
 *   e TEXT    evaluate one line of input (lume_repl_eval)
 *   c TEXT    completion candidates for the text before the cursor
 *   d TEXT    a dot-command without its dot ("scripts", "watch temperature")
 *   x         drop the pending incomplete chunk (Ctrl-C at "..>")
 * and, at any time while an evaluation runs, the single byte 0x03 (Ctrl-C):
 * the evaluation is interrupted through the watchdog. lume answers each
 * line with one frame, "KIND LEN\n" and LEN bytes, KIND one of
 *   ok | more | error | cands (LEN bytes of newline-separated candidates)
 * Anything else (an unknown request, a NUL byte, a line longer than
 * MAX_LINE — the rest of it is read and dropped) gets an "error" frame;
 * the session goes on.
 *
 * A connection's life:
 *
 *   accept4 ── peer uid differs, or MAX_SESSIONS busy ──► "error ..." frame, closed
 *      │
 *      ▼          a complete line                      ┌─────────────────────┐
 *   ┌──────────┐ ───────────────────────────────────►  │ EVALUATING (loop    │
 *   │ READING  │                                       │ thread in Lua); a   │
 *   │ POLLIN   │ ◄─── answer sent whole ───┐           │ helper thread polls │
 *   └──────────┘                           │           │ the socket: 0x03 or │
 *      │ EOF / error                       │           │ EOF -> interrupt    │
 *      ▼                            ┌──────────────┐   └─────────────────────┘
 *   CLOSED (session freed) ◄─ error │ WRITING      │ ◄──── answer framed
 *      ▲     client gone mid-eval   │ reads paused,│
 *      └────────────────────────────│ POLLOUT      │
 *                                   └──────────────┘
 *
 * Invariants:
 *   1. The evaluator runs on the loop thread only; the helper thread only
 *      reads the socket into its own buffer and calls lume_repl_interrupt.
 *      It is joined before the evaluation's answer is sent, and the bytes it
 *      read are queued after the ones already buffered (order kept).
 *   2. A connection buffers at most MAX_LINE bytes of input and MAX_OUT of
 *      unsent answers (a client that never reads is closed).
 *   3. A client that leaves mid-evaluation interrupts it; its session is
 *      freed; the runtime goes on.
 *
 * No Lua here: the evaluator is reached through repl.h's Lua-free API. */
#include "control.h"
#include "lume.h"
#include "repl.h"
#include "repl_sock.h"
#include "services.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define MAX_SESSIONS 8
#define MAX_LINE     (LUME_REPL_MAX_CHUNK + 64)
#define MAX_OUT      (8u << 20)
#define HELPER_BUF   65536

typedef struct rconn {
    struct lume_repl_sock *srv;
    lume_watch *w;
    int         fd;
    lume_repl  *repl;
    char       *in;
    size_t      n;
    bool        dropping;   /* inside a line longer than MAX_LINE */
    bool        gone;       /* the client left (seen by the helper) */
    char       *out;
    size_t      outlen, outoff;
    struct rconn *prev, *next;
} rconn;

struct lume_repl_sock {
    lume_runtime *rt;
    lume_watch   *listen;
    char         *path;
    dev_t         dev;          /* the socket's file: close removes only that one */
    ino_t         ino;
    rconn        *conns;
    size_t        n;
};

/* ---- the helper that watches the socket during an evaluation ---------------- */

typedef struct helper {
    int        fd, stop[2];
    lume_repl *repl;
    char       buf[HELPER_BUF];
    size_t     n;
    bool       gone;
} helper;

static void *helper_main(void *arg)
{
    helper *h = arg;
    bool watch_fd = true;
    for (;;) {
        struct pollfd p[2] = {{.fd = h->stop[0], .events = POLLIN},
                              {.fd = h->fd, .events = POLLIN}};
        int r = poll(p, watch_fd ? 2 : 1, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || p[0].revents)
            return NULL;
        if (!p[1].revents)
            continue;
        char tmp[4096];
        ssize_t got = recv(h->fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) { /* the client left: nobody wants the answer */
            h->gone = true;
            lume_repl_interrupt(h->repl);
            watch_fd = false;
            continue;
        }
        for (ssize_t i = 0; i < got; i++) {
            if (tmp[i] == 3) {
                lume_repl_interrupt(h->repl);
                continue;
            }
            if (h->n < sizeof h->buf)
                h->buf[h->n++] = tmp[i];
        }
        if (h->n == sizeof h->buf)
            watch_fd = false; /* the rest waits in the socket */
    }
}

/* ---- a connection ------------------------------------------------------------ */

static void conn_close(rconn *k)
{
    struct lume_repl_sock *s = k->srv;
    if (k->prev)
        k->prev->next = k->next;
    else
        s->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    s->n--;
    lume_loop_unwatch(k->w);
    lume_repl_free(k->repl);
    free(k->in);
    free(k->out);
    free(k);
}

static void process(rconn *k);
static void on_writable(void *ud, int fd);

/* Send what is queued; false when k was closed. */
static bool flush(rconn *k)
{
    while (k->outoff < k->outlen) {
        ssize_t w = send(k->fd, k->out + k->outoff, k->outlen - k->outoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            k->outoff += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            lume_loop_watch_writable(k->w, on_writable) == 0) {
            lume_loop_watch_pause(k->w, true);
            return true;
        }
        conn_close(k);
        return false;
    }
    k->outlen = k->outoff = 0;
    lume_loop_watch_pause(k->w, false);
    return true;
}

static void on_writable(void *ud, int fd)
{
    (void)fd;
    rconn *k = ud;
    if (flush(k) && k->outoff == k->outlen)
        process(k); /* lines that waited behind the answer */
}

/* Queue one frame; false when k was closed. */
static bool frame(rconn *k, const char *kind, const char *body, size_t len)
{
    char head[48];
    int hn = snprintf(head, sizeof head, "%s %zu\n", kind, len);
    size_t need = k->outlen + (size_t)hn + len;
    if (need > MAX_OUT) {
        conn_close(k);
        return false;
    }
    char *o = realloc(k->out, need ? need : 1);
    if (!o) {
        conn_close(k);
        return false;
    }
    k->out = o;
    memcpy(o + k->outlen, head, (size_t)hn);
    memcpy(o + k->outlen + hn, body, len);
    k->outlen = need;
    return true;
}

static bool frame_str(rconn *k, const char *kind, const char *body)
{
    return frame(k, kind, body, strlen(body));
}

static const char *kind_of(int rc)
{
    return rc == LUME_REPL_OK ? "ok" : rc == LUME_REPL_MORE ? "more" : "error";
}

/* Evaluate with the helper watching the socket; false when k was closed. */
static bool eval(rconn *k, const char *text, size_t len)
{
    helper *h = calloc(1, sizeof *h);
    pthread_t th;
    bool started = false;
    if (h && pipe2(h->stop, O_CLOEXEC) == 0) {
        h->fd = k->fd;
        h->repl = k->repl;
        started = pthread_create(&th, NULL, helper_main, h) == 0;
        if (!started) {
            close(h->stop[0]);
            close(h->stop[1]);
        }
    }
    char *out = NULL;
    int rc = lume_repl_eval(k->repl, text, len, &out);
    if (started) {
        ssize_t w = write(h->stop[1], "x", 1);
        (void)w;
        pthread_join(th, NULL);
        close(h->stop[0]);
        close(h->stop[1]);
        if (h->n) { /* bytes that came during the evaluation: after the rest */
            char *in = realloc(k->in, k->n + h->n + 1);
            if (in) {
                k->in = in;
                memcpy(in + k->n, h->buf, h->n);
                k->n += h->n;
            }
        }
        k->gone = h->gone;
    }
    free(h);
    if (k->gone) {
        lume_log(LUME_LOG_INFO, "repl", "a client left during an evaluation: session closed");
        free(out);
        conn_close(k);
        return false;
    }
    bool ok = frame_str(k, kind_of(rc), out ? out : "error: out of memory\n");
    free(out);
    return ok;
}

static bool complete(rconn *k, const char *text)
{
    char **c = NULL;
    size_t n = 0;
    if (lume_repl_complete(k->repl, text, &c, &n) < 0)
        return frame_str(k, "error", "error: out of memory\n");
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(c[i]) + 1;
    char *body = malloc(len + 1);
    size_t off = 0;
    for (size_t i = 0; body && i < n; i++) {
        size_t l = strlen(c[i]);
        memcpy(body + off, c[i], l);
        body[off + l] = '\n';
        off += l + 1;
    }
    lume_repl_free_cands(c, n);
    bool ok = body ? frame(k, "cands", body, off) : frame_str(k, "error", "error: out of memory\n");
    free(body);
    return ok;
}

/* One request line (without its newline); false when k was closed. */
static bool request(rconn *k, char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        line[--len] = 0;
    if (memchr(line, 0, len))
        return frame_str(k, "error", "error: the request contains a NUL byte\n");
    if (len >= 2 && line[1] == ' ') {
        char *text = line + 2;
        size_t tl = len - 2;
        if (line[0] == 'e')
            return eval(k, text, tl);
        if (line[0] == 'c')
            return complete(k, text);
        if (line[0] == 'd') {
            char *out = NULL;
            int rc = lume_repl_dot(k->repl, text, &out);
            bool ok = frame_str(k, kind_of(rc), out ? out : "error: out of memory\n");
            free(out);
            return ok;
        }
    }
    if (len == 1 && line[0] == 'x') {
        lume_repl_reset(k->repl);
        return frame_str(k, "ok", "");
    }
    char q[41];
    size_t ql = len < 40 ? len : 40;
    for (size_t i = 0; i < ql; i++)
        q[i] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
    q[ql] = 0;
    char msg[200];
    snprintf(msg, sizeof msg, "error: unknown request '%s%s' (e TEXT, c TEXT, d TEXT, x)\n", q,
             len > 40 ? "..." : "");
    return frame_str(k, "error", msg);
}

/* Handle the complete lines buffered, until an answer must wait. */
static void process(rconn *k)
{
    while (k->outlen == 0) {
        /* a stray Ctrl-C outside an evaluation means nothing */
        size_t skip = 0;
        while (skip < k->n && k->in[skip] == 3)
            skip++;
        if (skip) {
            memmove(k->in, k->in + skip, k->n - skip);
            k->n -= skip;
        }
        char *nl = k->n ? memchr(k->in, '\n', k->n) : NULL;
        if (!nl)
            return;
        size_t len = (size_t)(nl - k->in);
        *nl = 0;
        char *line = malloc(len + 1);
        if (!line) {
            conn_close(k);
            return;
        }
        memcpy(line, k->in, len + 1);
        memmove(k->in, nl + 1, k->n - len - 1);
        k->n -= len + 1;
        bool alive = request(k, line, len);
        free(line);
        if (!alive || !flush(k))
            return;
    }
}

static void on_readable(void *ud, int fd)
{
    rconn *k = ud;
    if (!k->in && !(k->in = malloc(MAX_LINE + 1))) {
        conn_close(k);
        return;
    }
    size_t from = k->n;
    if (k->n < MAX_LINE) {
        ssize_t r = recv(fd, k->in + k->n, MAX_LINE - k->n, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        if (r <= 0) {
            conn_close(k);
            return;
        }
        k->n += (size_t)r;
    }
    if (k->dropping) { /* the tail of an overlong line */
        char *nl = memchr(k->in + from, '\n', k->n - from);
        if (!nl) {
            k->n = from;
            return;
        }
        size_t rest = k->n - (size_t)(nl + 1 - k->in);
        memmove(k->in + from, nl + 1, rest);
        k->n = from + rest;
        k->dropping = false;
    }
    if (k->n >= MAX_LINE && !memchr(k->in, '\n', k->n)) {
        k->n = 0;
        k->dropping = true;
        char msg[120];
        snprintf(msg, sizeof msg, "error: request longer than %u bytes: dropped\n",
                 (unsigned)MAX_LINE);
        if (!frame_str(k, "error", msg) || !flush(k))
            return;
    }
    process(k);
}

static void reject(int fd, const char *why)
{
    char msg[300];
    int n = snprintf(msg, sizeof msg, "error %zu\n%s\n", strlen(why) + 1, why);
    ssize_t w = send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

static void on_listen(void *ud, int lfd)
{
    struct lume_repl_sock *s = ud;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 || cr.uid != geteuid()) {
            lume_log(LUME_LOG_WARN, "repl", "refused a REPL connection from uid %ld (pid %ld): "
                     "only uid %ld, who runs lume, may attach", (long)cr.uid, (long)cr.pid,
                     (long)geteuid());
            reject(fd, "error: refused: the REPL is open only to the user who runs lume");
            continue;
        }
        if (s->n >= MAX_SESSIONS) {
            reject(fd, "error: busy: " "too many REPL sessions are attached");
            continue;
        }
        char *err = NULL;
        rconn *k = calloc(1, sizeof *k);
        if (k)
            k->repl = lume_repl_new(s->rt, &err);
        if (!k || !k->repl) {
            char msg[300];
            snprintf(msg, sizeof msg, "error: cannot start a session: %s",
                     err ? err : "out of memory");
            reject(fd, msg);
            free(err);
            free(k);
            continue;
        }
        k->srv = s;
        k->fd = fd;
        k->w = lume_loop_watch_fd(lume_runtime_services(s->rt)->loop, fd, on_readable, k, &err);
        if (!k->w) {
            reject(fd, "error: cannot watch the connection");
            free(err);
            lume_repl_free(k->repl);
            free(k);
            continue;
        }
        k->next = s->conns;
        if (s->conns)
            s->conns->prev = k;
        s->conns = k;
        s->n++;
    }
}

int lume_repl_sock_listen(lume_runtime *rt, char **err)
{
    lume_services *sv = lume_runtime_services(rt);
    char path[4096];
    snprintf(path, sizeof path, "%s/repl.sock", sv->cfg.store);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        *err = lume_strdupf("REPL socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = lume_strdupf("REPL socket: %s", strerror(errno));
        return -errno;
    }
    unlink(path); /* the store is locked: a file there is a dead lume's */
    int r = lume_control_bind_private(fd, path);
    if (r < 0 || listen(fd, 8) < 0) {
        int e = r < 0 ? -r : errno;
        *err = lume_strdupf("REPL socket %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    struct lume_repl_sock *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        close(fd);
        unlink(path);
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    s->rt = rt;
    struct stat st;
    if (stat(path, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    s->listen = lume_loop_watch_fd(sv->loop, fd, on_listen, s, err);
    if (!s->listen) {
        close(fd);
        unlink(path);
        free(s->path);
        free(s);
        return -EIO;
    }
    sv->repl = s;
    return 0;
}

void lume_repl_sock_close(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_repl_sock *s = sv->repl;
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    lume_loop_unwatch(s->listen);
    struct stat st; /* another runtime may have taken the store (and made its own) */
    if (stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
    free(s->path);
    free(s);
    sv->repl = NULL;
}
