/* bindings/sim.h — a simulated clock for a runtime, for testing rules (the
 * lume.test harness, `lume test`, docs/testing-rules.md).
 *
 * With a simulated clock, the runtime's scripts see time only as the test
 * moves it: lume.now(), lume.monotonic(), the `now` of timer callbacks and
 * the `t` of samples come from it, script timers fire when the test
 * advances past them (in due order, each at its own due time), and samples
 * reach the handlers only from the test (lume_sim_sample), through the same
 * dispatch as live samples; the board's own readings, if the loop runs at
 * all, are drained and dropped. So a day of trace runs in as long as its
 * handlers take, and the same trace gives the same results every time.
 *
 * Everything else is the real runtime: the sandbox and its budgets (CPU
 * time stays real), the outbox, the state store, lume.keep, the twin. The
 * runtime's own timers (commits, status) are the loop's, on real time. What scripts
 * publish and the outputs they set are also recorded, in order, with the
 * simulated time (lume_sim_events), for the test's assertions.
 *
 * Loop thread only, like the rest of the runtime. */
#ifndef LUME_SIM_H
#define LUME_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

typedef struct lume_runtime lume_runtime;
typedef struct lume_sim lume_sim;

/* Put rt on a simulated clock that reads start_wall_ns now (monotonic 0).
 * Before scripts are installed, so their timers are simulated from the
 * start. 0; -EALREADY; -ENOMEM. */
int     lume_sim_start(lume_runtime *rt, int64_t start_wall_ns);
void    lume_sim_free(lume_sim *sim);

/* The clocks scripts see: simulated when rt has a simulated clock. */
int64_t lume_rt_wall_ns(const lume_runtime *rt);
int64_t lume_rt_mono_ns(const lume_runtime *rt);

/* A script timer: armed (delay_us from the simulated now) or cancelled on
 * the simulated clock. false when rt has none (use the loop's timers). */
bool    lume_sim_arm(lume_runtime *rt, lume_timer *t, int64_t delay_us);
bool    lume_sim_cancel(lume_runtime *rt, lume_timer *t);

/* Move the clock to to_wall_ns, firing every timer due on the way at its
 * due time. Time never goes back: a to_wall_ns before now fires nothing
 * and leaves the clock. The number of timer callbacks run. */
int     lume_sim_advance(lume_runtime *rt, int64_t to_wall_ns);
/* Advance to wall_ns, then hand one sample of channel to the handlers.
 * 0; -EINVAL for an unknown channel. */
int     lume_sim_sample(lume_runtime *rt, unsigned channel, double value, int64_t wall_ns);

/* ---- what the scripts did (recorded only on a simulated clock) ------------- */

typedef enum { LUME_SIM_PUBLISH, LUME_SIM_OUTPUT } lume_sim_kind;

typedef struct lume_sim_event {
    lume_sim_kind kind;
    int64_t       wall_ns;    /* simulated time */
    char         *script;
    char         *name;       /* publish: the route; output: the output's name */
    char         *payload;    /* publish: the payload bytes (before any signature) */
    size_t        len;
    int           lane, qos;  /* publish */
    double        value;      /* output */
} lume_sim_event;

void    lume_sim_published(lume_runtime *rt, const char *script, const char *route,
                           size_t route_len, const void *payload, size_t len, int lane,
                           int qos);
void    lume_sim_output(lume_runtime *rt, const char *script, const char *name, double value);
/* The events recorded since the last call, oldest first; the caller frees
 * them with lume_sim_events_free. */
lume_sim_event *lume_sim_events(lume_runtime *rt, size_t *n);
void    lume_sim_events_free(lume_sim_event *ev, size_t n);

#endif
