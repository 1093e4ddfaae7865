/* tests/integration/sockprobe.c — Unix-socket peers for the integration
 * tests that bash cannot be (it has no AF_UNIX): a crowd of idle control
 * clients, a client that sends exact bytes (NUL included), and a fake
 * service manager listening on $NOTIFY_SOCKET.
 *
 *   sockprobe hold SOCK N SECONDS READY
 *       Opens N connections to SOCK (retrying while the listen backlog is
 *       full, for at most 20 s) and holds them, sending nothing, for SECONDS
 *       after the last one. Prints "held N" once they are open and creates
 *       the file READY; 1.5 s later prints "answered A silent S closed C":
 *       connections that got an "error ..." line, that got nothing, and that
 *       were closed with nothing said. Exit 0, or 1 when fewer than N could
 *       connect.
 *   sockprobe send SOCK TEXT [--half-close]
 *       Sends TEXT with \n, \r, \t, \0, \\ and \xHH escapes (then shuts its
 *       writing side with --half-close) and prints the answer line. Exit 0
 *       when a line came back within 10 s, 1 otherwise.
 *   sockprobe sendn SOCK N
 *       Sends N bytes of 'x' (no newline) and prints the answer, as send.
 *   sockprobe notify-listen ADDR OUT
 *       Binds a datagram socket at ADDR (a path, or @name: the abstract
 *       namespace) and appends each assignment of each datagram to OUT as
 *       "<ms since start> <assignment>", one per line, until killed.
 *
 * Test code: not part of liblume, no lume_ prefix. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static socklen_t addr_of(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof sa->sun_path) {
        fprintf(stderr, "sockprobe: address too long: %s\n", path);
        exit(2);
    }
    memcpy(sa->sun_path, path, len);
    if (path[0] == '@') {
        sa->sun_path[0] = 0;
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

static int connect_to(const char *path, int nonblock)
{
    struct sockaddr_un sa;
    socklen_t len = addr_of(path, &sa);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int cmd_hold(const char *path, long n, long secs, const char *ready)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)n + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds)
        return 2;
    long got = 0;
    int64_t end = now_ms() + 20000;
    while (got < n && now_ms() < end) {
        int fd = connect_to(path, 1);
        if (fd >= 0) {
            fds[got++] = fd;
            continue;
        }
        if (fd != -EAGAIN) {
            fprintf(stderr, "sockprobe hold: connect %ld: %s\n", got + 1, strerror(-fd));
            break;
        }
        usleep(1000); /* the backlog is full: lume has not accepted yet */
    }
    printf("held %ld\n", got);
    fflush(stdout);
    int r = open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (r >= 0)
        close(r);
    usleep(1500 * 1000);
    long answered = 0, silent = 0, closed = 0;
    for (long i = 0; i < got; i++) {
        char buf[256];
        ssize_t k = recv(fds[i], buf, sizeof buf - 1, MSG_DONTWAIT);
        if (k > 0 && !strncmp(buf, "error ", 6))
            answered++;
        else if (k == 0)
            closed++;
        else
            silent++;
    }
    printf("answered %ld silent %ld closed %ld\n", answered, silent, closed);
    fflush(stdout);
    sleep((unsigned)secs);
    for (long i = 0; i < got; i++)
        close(fds[i]);
    free(fds);
    return got == n ? 0 : 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t unescape(const char *s, char *out)
{
    size_t n = 0;
    for (; *s; s++) {
        if (*s != '\\' || !s[1]) {
            out[n++] = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case '0': out[n++] = 0; break;
        case 'x':
            if (hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
                out[n++] = (char)(hexval(s[1]) * 16 + hexval(s[2]));
                s += 2;
                break;
            }
            /* fall through */
        default: out[n++] = *s; break;
        }
    }
    return n;
}

static int exchange(const char *path, const char *data, size_t len, int half_close)
{
    int fd = connect_to(path, 0);
    if (fd < 0) {
        fprintf(stderr, "sockprobe: connect %s: %s\n", path, strerror(-fd));
        return 1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* lume may have answered and closed: read what it said */
        off += (size_t)w;
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    char buf[65536];
    size_t got = 0;
    int64_t end = now_ms() + 10000;
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = end - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = 0;
    char *nl = memchr(buf, '\n', got);
    if (!nl) {
        printf("(no answer line%s)\n", got ? ": partial" : "");
        return 1;
    }
    nl[1] = 0;
    fputs(buf, stdout);
    return 0;
}

static int cmd_notify_listen(const char *addr, const char *out)
{
    struct sockaddr_un sa;
    socklen_t len = addr_of(addr, &sa);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (addr[0] != '@')
        unlink(addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0) {
        fprintf(stderr, "sockprobe notify-listen: bind %s: %s\n", addr, strerror(errno));
        return 1;
    }
    FILE *f = fopen(out, "a");
    if (!f) {
        fprintf(stderr, "sockprobe notify-listen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    int64_t t0 = now_ms();
    char buf[8192];
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf - 1, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        buf[k] = 0;
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save))
            fprintf(f, "%lld %s\n", (long long)(now_ms() - t0), l);
        fflush(f);
    }
}

int main(int argc, char **argv)
{
    if (argc >= 6 && !strcmp(argv[1], "hold"))
        return cmd_hold(argv[2], atol(argv[3]), atol(argv[4]), argv[5]);
    if (argc >= 4 && !strcmp(argv[1], "send")) {
        char *data = malloc(strlen(argv[3]) + 1);
        if (!data)
            return 2;
        size_t n = unescape(argv[3], data);
        int r = exchange(argv[2], data, n, argc > 4 && !strcmp(argv[4], "--half-close"));
        free(data);
        return r;
    }
    if (argc >= 4 && !strcmp(argv[1], "sendn")) {
        size_t n = (size_t)atol(argv[3]);
        char *data = malloc(n + 1);
        if (!data)
            return 2;
        memset(data, 'x', n);
        int r = exchange(argv[2], data, n, 0);
        free(data);
        return r;
    }
    if (argc >= 4 && !strcmp(argv[1], "notify-listen"))
        return cmd_notify_listen(argv[2], argv[3]);
    fputs("usage: sockprobe hold SOCK N SECONDS READY | send SOCK TEXT [--half-close] |\n"
          "       sockprobe sendn SOCK N | notify-listen ADDR OUT\n", stderr);
    return 2;
}
