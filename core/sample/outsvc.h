/* core/sample/outsvc.h — the output service: who drives which output, and
 * writes that never block the loop.
 *
 * Lua-free. The runtime adds one entry per output of the board file (its
 * driver already opened, outputs.h); scripts claim outputs and set values
 * through bindings/l_output.c. Rules (docs/outputs.md):
 *   1. Every output starts at its fail-safe value (written when added).
 *   2. An output has at most one owner. The first script to claim it owns
 *      it; a new version of the same script (same name) takes it over; any
 *      other claim is refused with -EBUSY naming the owner.
 *   3. lume_outsvc_release(owner) writes the fail-safe value of every output
 *      that owner holds and frees them: the runtime calls it when a script's
 *      state is closed (stopped, unloaded, rolled back, quarantined) and
 *      when a script is stopped with its state kept (error storm).
 *   4. A set outside [min, max] is refused (-ERANGE); one sooner than
 *      1/max_rate_hz after the last accepted set is refused (-EAGAIN) and
 *      counted. The fail-safe value is never rate limited.
 *   5. Writes run on the output's own thread: set returns at once; the
 *      latest value wins (values queued behind a slow write are replaced,
 *      and counted as coalesced); a write that fails or takes longer than
 *      the output's timeout is counted and logged.
 *   6. lume_outsvc_free writes every fail-safe value, waits for those
 *      writes at most twice the largest output timeout plus 500 ms (a write
 *      under way, then the fail-safe), then closes the drivers. */
#ifndef LUME_OUTSVC_H
#define LUME_OUTSVC_H

#include <stddef.h>
#include <stdint.h>

#include "outputs.h"

typedef struct lume_outsvc lume_outsvc;

typedef struct lume_output_opts {
    double  failsafe;
    double  max_rate_hz;  /* 0: no limit */
    double  min, max;     /* accepted range of set */
    int64_t timeout_ns;   /* a write longer than this is counted as a timeout */
} lume_output_opts;

typedef struct lume_output_stats {
    const char *name, *driver, *owner;  /* owner: "" when free */
    double   value;           /* last value asked for (set or fail-safe) */
    double   failsafe;
    uint64_t sets, writes, write_errors, timeouts, rate_limited, refused, coalesced,
             failsafes;
    char     last_error[160];
} lume_output_stats;

/* NULL on out of memory. */
lume_outsvc *lume_outsvc_new(void);
/* Add an opened output; takes drv/state (closed by lume_outsvc_free, or here
 * on error). Starts its thread and writes the fail-safe value. 0, or
 * -EEXIST/-ENOMEM with *err (malloc'd). */
int  lume_outsvc_add(lume_outsvc *s, const char *name, const lume_output_driver *drv,
                     void *state, const lume_output_opts *o, char **err);
size_t lume_outsvc_count(const lume_outsvc *s);
/* Index of the output with that name, or -ENOENT. */
int  lume_outsvc_find(const lume_outsvc *s, const char *name);
/* Claim output i for owner (any unique pointer) named owner_name. 0;
 * -EBUSY with *err naming the current owner. */
int  lume_outsvc_claim(lume_outsvc *s, int i, const void *owner, const char *owner_name,
                       char **err);
/* Ask for v. 0 (queued for the output's thread); -EPERM (not the owner),
 * -ERANGE, -EAGAIN (rate limited), each with *err. Never blocks on I/O. */
int  lume_outsvc_set(lume_outsvc *s, int i, const void *owner, double v, char **err);
/* The last value asked for (a set, or the fail-safe value). */
double lume_outsvc_get(const lume_outsvc *s, int i);
/* Fail-safe every output owner holds, and free them. why goes to the log.
 * Returns how many outputs it released. */
int  lume_outsvc_release(lume_outsvc *s, const void *owner, const char *why);
/* Block until every queued write is done or timeout_ns passed (tests,
 * shutdown). 0, or -ETIMEDOUT. */
int  lume_outsvc_flush(lume_outsvc *s, int64_t timeout_ns);
void lume_outsvc_stats(lume_outsvc *s, size_t i, lume_output_stats *out);
/* Fail-safe everything, wait (rule 6), close. NULL is fine. */
void lume_outsvc_free(lume_outsvc *s);

#endif
