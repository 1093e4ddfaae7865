/* core/base/notify.h — telling the service manager how lume is doing: systemd's
 * notification protocol (sd_notify(3)), spoken directly, without libsystemd.
 *
 *   lume_notify *n = lume_notify_open(&err);   // NULL: nobody listens
 *   lume_notify_watchdog_start(n, loop);       // WATCHDOG=1 every interval/2
 *   lume_notify_send(n, "READY=1\nSTATUS=%s", ...);
 *   ...
 *   lume_notify_send(n, "STOPPING=1");
 *   lume_notify_close(n);                      // before the loop is freed
 *
 * Every function accepts NULL for n and then does nothing (returns 0), so
 * a caller never asks "are we supervised?" twice. Loop thread only. */
#ifndef LUME_NOTIFY_H
#define LUME_NOTIFY_H

#include <stdint.h>

#include "loop.h"

typedef struct lume_notify lume_notify;

/* From the environment: $NOTIFY_SOCKET (an absolute path, or a name in the
 * abstract namespace written with a leading '@'), and $WATCHDOG_USEC with
 * $WATCHDOG_PID (the watchdog is ours only when WATCHDOG_PID is unset or
 * names this process). NULL with *err left NULL when $NOTIFY_SOCKET is unset
 * or empty (not started by a notifying supervisor); NULL with *err set when
 * it is unusable (a relative path, too long, no socket). */
lume_notify *lume_notify_open(char **err);
/* Stops the watchdog timer and closes the socket. Call it before the loop
 * the watchdog runs on is freed. */
void         lume_notify_close(lume_notify *n);

/* Send one datagram of newline-separated assignments ("READY=1",
 * "STATUS=...", "STOPPING=1", "WATCHDOG=1", "ERRNO=5"). Never blocks (a full
 * receive queue drops the datagram). 0, or -errno (-EMSGSIZE, -EAGAIN,
 * -ECONNREFUSED, ...); 0 for a NULL n. */
int          lume_notify_send(lume_notify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The watchdog interval the supervisor asked for, in microseconds; 0 when
 * none (or it was meant for another process). */
int64_t      lume_notify_watchdog_usec(const lume_notify *n);
/* Send WATCHDOG=1 from a timer on l every half interval, so a loop that
 * stops turning stops the pings and the supervisor restarts lume. 0, or
 * -ENOENT when there is no watchdog to feed (nothing started). */
int          lume_notify_watchdog_start(lume_notify *n, lume_loop *l);
/* Pings sent so far (tests, stats). */
uint64_t     lume_notify_pings(const lume_notify *n);

#endif
