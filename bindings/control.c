/* bindings/control.c — the control socket: how `lume reload` reaches a
 * running lume.
 *
 * A Unix stream socket at STORE/lume.sock (mode 0600). One command line per
 * connection, one reply line:
 *   reload [NAME]   -> "ok reloaded NAME" | "error MESSAGE"
 *   status          -> "ok <status line>"
 *   stats           -> "ok {json}": sensors, scripts, outbox, process
 * The listening socket and each accepted connection are watched by the loop;
 * a client that sends nothing within the loop turn is simply read later. */
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

typedef struct conn {
    lume_runtime *rt;
    lume_watch   *w;
    char          buf[512];
    size_t        n;
} conn;

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
    char out[65536];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof out - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof out - 2)
        n = (int)sizeof out - 2;
    /* one line: newlines inside a message become spaces */
    for (int i = 0; i < n; i++)
        if (out[i] == '\n')
            out[i] = ' ';
    out[n++] = '\n';
    ssize_t w = write(fd, out, (size_t)n);
    (void)w;
}

static void handle(lume_runtime *rt, int fd, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r", &save);
    char *arg = strtok_r(NULL, " \t\r", &save);
    if (cmd && !strcmp(cmd, "reload")) {
        char *err = NULL;
        int r = lume_scripts_reload(rt, arg, &err);
        if (r == 0)
            reply(fd, "ok reloaded %s", arg ? arg : "all scripts");
        else
            reply(fd, "error %s", err ? err : "reload failed");
        free(err);
    } else if (cmd && !strcmp(cmd, "stats")) {
        char *json = lume_runtime_stats_json(rt);
        if (json)
            reply(fd, "ok %s", json);
        else
            reply(fd, "error out of memory");
        free(json);
    } else if (cmd && !strcmp(cmd, "status")) {
        char st[2048];
        lume_runtime_status_line(rt, st, sizeof st);
        reply(fd, "ok %s", st);
    } else {
        reply(fd, "error unknown command '%s' (reload [NAME], status, stats)", cmd ? cmd : "");
    }
}

static void on_conn(void *ud, int fd)
{
    conn *c = ud;
    ssize_t n = read(fd, c->buf + c->n, sizeof c->buf - 1 - c->n);
    if (n > 0) {
        c->n += (size_t)n;
        c->buf[c->n] = 0;
        char *nl = strchr(c->buf, '\n');
        if (!nl && c->n < sizeof c->buf - 1)
            return; /* wait for the rest of the line */
        if (nl)
            *nl = 0;
        handle(c->rt, fd, c->buf);
    }
    /* done (or EOF / error): the loop closes fd */
    lume_loop_unwatch(c->w);
    free(c);
}

static void on_listen(void *ud, int fd)
{
    lume_runtime *rt = ud;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        conn *c = calloc(1, sizeof *c);
        char *err = NULL;
        if (!c || !(c->w = lume_loop_watch_fd(rt->loop, cfd, on_conn, c, &err))) {
            free(err);
            free(c);
            close(cfd);
            continue;
        }
        c->rt = rt;
    }
}

int lume_control_listen(lume_runtime *rt, char **err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lume.sock", rt->cfg.store);
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
                                rt->cfg.store, path);
            return -EADDRINUSE;
        }
        close(probe);
    }
    unlink(path);
    mode_t old = umask(077);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0 || listen(fd, 8) < 0) {
        *err = lume_strdupf("control socket %s: %s", path, strerror(errno));
        close(fd);
        return -errno;
    }
    rt->control_watch = lume_loop_watch_fd(rt->loop, fd, on_listen, rt, err);
    if (!rt->control_watch) {
        close(fd);
        unlink(path);
        return -EIO;
    }
    rt->control_path = strdup(path);
    return 0;
}

void lume_control_close(lume_runtime *rt)
{
    if (rt->control_watch) {
        lume_loop_unwatch(rt->control_watch); /* the loop closes the socket */
        rt->control_watch = NULL;
    }
    if (rt->control_path)
        unlink(rt->control_path);
}

int lume_control_request(const char *sock_path, const char *line)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof sa.sun_path) {
        fprintf(stderr, "lume: socket path too long: %s\n", sock_path);
        return 1;
    }
    strcpy(sa.sun_path, sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "lume: cannot reach a running lume at %s: %s\n", sock_path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    char out[600];
    int n = snprintf(out, sizeof out, "%s\n", line);
    if (write(fd, out, (size_t)n) != n) {
        fprintf(stderr, "lume: write to %s failed: %s\n", sock_path, strerror(errno));
        close(fd);
        return 1;
    }
    char buf[65536];
    size_t got = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (got < sizeof buf - 1 && poll(&pfd, 1, 30000) > 0) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(buf, '\n', got))
            break;
    }
    close(fd);
    buf[got] = 0;
    if (got == 0) {
        fprintf(stderr, "lume: no answer from %s\n", sock_path);
        return 1;
    }
    if (!strncmp(buf, "ok ", 3)) {
        fputs(buf + 3, stdout);
        return 0;
    }
    fputs(!strncmp(buf, "error ", 6) ? buf + 6 : buf, stderr);
    return 1;
}
