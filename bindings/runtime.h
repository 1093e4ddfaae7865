/* bindings/runtime.h — the runtime of the Lua host (runtime.c): its struct, the parts
 * of it the lume command and the tests reach, sample dispatch. */
#ifndef LUME_RUNTIME_H
#define LUME_RUNTIME_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "dps.h"
#include "drivers.h"
#include "kv.h"
#include "log.h"
#include "loop.h"
#include "lume.h"
#include "mqtt.h"
#include "outbox.h"
#include "sampler.h"
#include "store.h"
#include "sandbox.h"
#include "script.h"
#include "services.h"

struct lume_runtime {
    /* what the Lua-free services see (runtime/services.h): its fields are
     * the runtime's own (rt->cfg), the whole is rt->sv */
#if defined(__clang__) /* the extension is asked for (-fms-extensions): no warning */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wmicrosoft-anon-tag"
#endif
    union {
        lume_services sv;
        lume_services;
    };
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
    lume_board_ctx  *board;
    char            *board_desc;
    lume_watchdog    wd;
    lume_timer       dps_timer;     /* provision again (a hub refused the device) */
    int              dps_backoff_ms;
    int              dps_reprovisions;  /* registrations after a hub refused the device */
    lume_dps_assignment dps_assigned; /* the hub connected to ("" before one) */
    bool             was_connected;
    lume_sample     *recent;        /* last RECENT samples per channel, for dry runs */
    unsigned        *recent_n;      /* samples recorded per channel (saturating ring index) */
    lume_script     *scripts;
    lume_timer       commit_timer, status_timer, deadline_timer, reload_timer, soon_timer;
    lume_timer       keep_timer;     /* the kept state of every script to the store (keep.h) */
    lume_sample     *drain_buf;
    size_t           drain_cap;
    int64_t         *chan_err_log_ms;
    lume_watch      *inotify_watch;
    lume_store      *store;          /* the store directory, locked (store_host.c) */
    lume_timer       store_timer;    /* once a second: the store's files still there, sound */
    dev_t            control_dev;    /* the control socket's file, to see it removed */
    ino_t            control_ino;
    uint64_t         socket_remade;
    int64_t          free_bytes;     /* in the store's file system, at the last check */
    char            *store_reported; /* the twin's last `store` section (JSON) */
    bool             store_lost;     /* another runtime took the store: stopping */
    char             pending_reload[4096]; /* names queued by inotify */
    bool             started;
    int64_t          started_ms;
    int64_t          health_wall_ns, health_cpu_ns; /* at the last health document */
    struct lume_msgsign *msgsign;    /* net.sign: signs each publish (core/trust/msgsign.h) */
    struct lume_sim *sim;            /* a simulated clock (lume test, sim.h); NULL: real time */
    /* every sample read, before the handlers (lume record); NULL: none */
    void           (*sample_tap)(void *ud, const char *sensor, const lume_sample *smp);
    void            *sample_tap_ud;
};

/* The parts of a runtime, for the lume command and the tests (not in
 * lume.h: their types are internal). Borrowed, valid until
 * lume_runtime_free. */
lume_loop    *lume_runtime_loop(lume_runtime *rt);
lume_sampler *lume_runtime_sampler(lume_runtime *rt);
lume_outbox  *lume_runtime_outbox(lume_runtime *rt);
const lume_config *lume_runtime_config(lume_runtime *rt);
/* Keep the calling thread off CPU cpu (it keeps the others it had); its
 * mask before into *saved when saved is not NULL. 0; -EINVAL when that
 * would leave it no CPU; -errno from pthread_setaffinity_np. The library
 * never does this to its caller: `lume run` does it to its loop thread
 * when sampler.cpu is set. */
int  lume_thread_avoid_cpu(int cpu, cpu_set_t *saved);
void lume_runtime_dispatch(lume_runtime *rt);
/* Run the handlers for n samples: the one path for live samples and a
 * simulated clock's (sim.h). */
void lume_runtime_dispatch_samples(lume_runtime *rt, const lume_sample *buf, size_t n);
/* Call one on_sample handler of s with one sample, or (batch handlers) with
 * the samples of its channel in buf (no call when there are none); the one
 * path for live dispatch and the bundle dry run. The Lua status. */
int  lume_script_call_sample(lume_script *s, const lume_cb *h, const lume_sample *smp,
                             const char *name, const char *what);
int  lume_script_call_batch(lume_script *s, const lume_cb *h, const lume_sample *buf, size_t n,
                            const char *name, const char *what);
/* Commit the outbox and hand it to the session at the end of this loop
 * turn (alarms do not wait for the commit interval). */
void lume_runtime_commit_soon(lume_runtime *rt);
/* Record an error of a script (counted, logged, kept as last_error). */
void lume_script_error(lume_script *s, const char *what, const char *msg);

#endif
