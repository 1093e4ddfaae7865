/* core/base/notify.c — the sd_notify protocol without libsystemd.
 *
 * The protocol (sd_notify(3), systemd's "notify" socket): a service started
 * with Type=notify finds in $NOTIFY_SOCKET the address of an AF_UNIX
 * datagram socket and sends it datagrams of newline-separated KEY=VALUE
 * assignments. lume sends:
 *
 *   READY=1      once the runtime is up and its loop turns (systemd then
 *                considers the start finished; `systemctl start` returns)
 *   STATUS=...   one short human line, shown by `systemctl status`
 *   WATCHDOG=1   every half of $WATCHDOG_USEC (set from WatchdogSec=);
 *                when pings stop for a whole interval, systemd kills lume
 *                with SIGABRT and, with Restart=on-failure, starts it again
 *   STOPPING=1   when a clean shutdown begins
 *   ERRNO=n      with STATUS=, when lume fails
 *
 * An address starting with '/' is a path; one starting with '@' names the
 * abstract namespace (the '@' becomes a leading NUL, and the address length
 * counts only the name's bytes — no trailing NUL). Anything else is refused
 * (systemd also knows vsock addresses; lume does not need them).
 *
 * Invariants:
 *   1. Nothing here blocks the loop: the socket is non-blocking, and a
 *      datagram that does not fit the receiver's queue is dropped and
 *      counted as an error (the next ping comes half an interval later).
 *   2. WATCHDOG=1 is sent only from a timer on the event loop: the pings
 *      prove that the loop turns, not merely that the process exists. (A
 *      loop whose poll() fails still runs timers; lume_loop fails itself in
 *      that case — see core/net/loop.c — so the process exits and the pings
 *      stop.)
 *   3. $WATCHDOG_USEC is honoured only when $WATCHDOG_PID is unset or is our
 *      own PID: an inherited variable meant for a parent is ignored.
 *   4. With no $NOTIFY_SOCKET there is no lume_notify at all, and every call
 *      takes NULL and does nothing. */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define MAX_DATAGRAM 4096

struct lume_notify {
    int                fd;
    struct sockaddr_un sa;
    socklen_t          salen;
    int64_t            wd_usec;
    lume_timer         wd;
    bool               wd_running;
    uint64_t           pings;
    int                last_errno;   /* of the last failed ping (logged once per change) */
};

static int64_t watchdog_from_env(void)
{
    const char *us = getenv("WATCHDOG_USEC");
    if (!us || !*us)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(us, &end, 10);
    if (errno || *end || v == 0 || v > (unsigned long long)INT64_MAX / 2) {
        lume_log(LUME_LOG_WARN, "notify", "WATCHDOG_USEC=%s: not a positive number of "
                 "microseconds; no watchdog pings", us);
        return 0;
    }
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid) {
        long p = strtol(pid, &end, 10);
        if (*end || p != (long)getpid())
            return 0; /* meant for another process */
    }
    return (int64_t)v;
}

lume_notify *lume_notify_open(char **err)
{
    const char *addr = getenv("NOTIFY_SOCKET");
    if (!addr || !*addr)
        return NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(addr);
    if (addr[0] != '/' && addr[0] != '@') {
        *err = lume_strdupf("NOTIFY_SOCKET=%s: expected an absolute path or @name", addr);
        return NULL;
    }
    if (len >= sizeof sa.sun_path) {
        *err = lume_strdupf("NOTIFY_SOCKET=%s: longer than %zu bytes", addr,
                            sizeof sa.sun_path - 1);
        return NULL;
    }
    memcpy(sa.sun_path, addr, len);
    socklen_t salen;
    if (addr[0] == '@') {
        sa.sun_path[0] = 0;
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    lume_notify *n = calloc(1, sizeof *n);
    if (!n) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0) {
        *err = lume_strdupf("NOTIFY_SOCKET: cannot make a datagram socket: %s", strerror(errno));
        free(n);
        return NULL;
    }
    n->sa = sa;
    n->salen = salen;
    n->wd_usec = watchdog_from_env();
    return n;
}

void lume_notify_close(lume_notify *n)
{
    if (!n)
        return;
    if (n->wd_running)
        lume_timer_cancel(&n->wd);
    close(n->fd);
    free(n);
}

static int send_text(lume_notify *n, const char *buf, size_t len)
{
    ssize_t w = sendto(n->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT,
                       (const struct sockaddr *)&n->sa, n->salen);
    if (w < 0)
        return -errno;
    return (size_t)w == len ? 0 : -EMSGSIZE;
}

int lume_notify_send(lume_notify *n, const char *fmt, ...)
{
    if (!n)
        return 0;
    char buf[MAX_DATAGRAM];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof buf)
        return -EMSGSIZE;
    return send_text(n, buf, (size_t)len);
}

int64_t lume_notify_watchdog_usec(const lume_notify *n) { return n ? n->wd_usec : 0; }

uint64_t lume_notify_pings(const lume_notify *n) { return n ? n->pings : 0; }

static void ping(lume_timer *t)
{
    lume_notify *n = t->ud;
    int r = send_text(n, "WATCHDOG=1", 10);
    if (r == 0) {
        n->pings++;
        if (n->last_errno)
            lume_log(LUME_LOG_INFO, "notify", "watchdog pings reach the supervisor again");
        n->last_errno = 0;
    } else if (-r != n->last_errno) {
        n->last_errno = -r;
        lume_log(LUME_LOG_WARN, "notify", "watchdog ping not delivered: %s (the supervisor may "
                 "restart lume if this goes on)", strerror(-r));
    }
    lume_timer_start(t, n->wd_usec / 2);
}

int lume_notify_watchdog_start(lume_notify *n, lume_loop *l)
{
    if (!n || !n->wd_usec)
        return -ENOENT;
    if (n->wd_running)
        lume_timer_cancel(&n->wd);
    lume_timer_init(&n->wd, l, ping, n);
    n->wd_running = true;
    lume_timer_start(&n->wd, n->wd_usec / 2);
    return 0;
}
