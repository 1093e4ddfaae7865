/* bindings/sim.c — see sim.h.
 *
 *   real clock ──lume_sim_start──► simulated clock (until the runtime is freed)
 *
 *   lume_sim_advance(to):  while a timer is due at or before `to`:
 *                             now = its due time; run it (it may re-arm)
 *                          now = to
 *   lume_sim_sample(t):    lume_sim_advance(t); dispatch the sample
 *
 * Invariants:
 *   1. now never goes back.
 *   2. Timers fire in (due, arming order): two timers due together fire in
 *      the order they were armed, so a run is the same every time.
 *   3. A timer is in the queue at most once (arming again moves it). */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "runtime.h"

typedef struct pending {
    lume_timer *t;
    int64_t     due;     /* simulated monotonic ns */
    uint64_t    order;
} pending;

struct lume_sim {
    int64_t         wall0;   /* wall ns at monotonic 0 */
    int64_t         now;     /* simulated monotonic ns */
    pending        *q;
    size_t          nq, capq;
    uint64_t        order;
    lume_sim_event *ev;
    size_t          nev, capev;
};

int lume_sim_start(lume_runtime *rt, int64_t start_wall_ns)
{
    if (rt->sim)
        return -EALREADY;
    lume_sim *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->wall0 = start_wall_ns;
    rt->sim = s;
    return 0;
}

void lume_sim_free(lume_sim *sim)
{
    if (!sim)
        return;
    lume_sim_events_free(sim->ev, sim->nev);
    free(sim->q);
    free(sim);
}

int64_t lume_rt_wall_ns(const lume_runtime *rt)
{
    return rt->sim ? rt->sim->wall0 + rt->sim->now : lume_wall_ns();
}

int64_t lume_rt_mono_ns(const lume_runtime *rt)
{
    return rt->sim ? rt->sim->now : lume_mono_ns();
}

static void unqueue(lume_sim *s, lume_timer *t)
{
    for (size_t i = 0; i < s->nq; i++)
        if (s->q[i].t == t) {
            s->q[i] = s->q[--s->nq];
            return;
        }
}

bool lume_sim_arm(lume_runtime *rt, lume_timer *t, int64_t delay_us)
{
    lume_sim *s = rt->sim;
    if (!s)
        return false;
    unqueue(s, t);
    if (s->nq == s->capq) {
        size_t cap = s->capq ? s->capq * 2 : 16;
        pending *g = realloc(s->q, cap * sizeof *g);
        if (!g) { /* the timer cannot fire: say so rather than hide it */
            lume_log(LUME_LOG_ERROR, "sim", "out of memory: a script timer is dropped");
            return true;
        }
        s->q = g;
        s->capq = cap;
    }
    s->q[s->nq++] = (pending){t, s->now + (delay_us > 0 ? delay_us : 0) * 1000, s->order++};
    return true;
}

bool lume_sim_cancel(lume_runtime *rt, lume_timer *t)
{
    if (!rt->sim)
        return false;
    unqueue(rt->sim, t);
    return true;
}

int lume_sim_advance(lume_runtime *rt, int64_t to_wall_ns)
{
    lume_sim *s = rt->sim;
    if (!s)
        return 0;
    int64_t to = to_wall_ns - s->wall0;
    int fired = 0;
    for (;;) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < s->nq; i++)
            if (s->q[i].due <= to &&
                (best == SIZE_MAX || s->q[i].due < s->q[best].due ||
                 (s->q[i].due == s->q[best].due && s->q[i].order < s->q[best].order)))
                best = i;
        if (best == SIZE_MAX)
            break;
        pending p = s->q[best];
        s->q[best] = s->q[--s->nq];
        if (p.due > s->now)
            s->now = p.due;
        p.t->fn(p.t); /* may arm it again, arm others, cancel others */
        fired++;
    }
    if (to > s->now)
        s->now = to;
    return fired;
}

int lume_sim_sample(lume_runtime *rt, unsigned channel, double value, int64_t wall_ns)
{
    if (!rt->sim)
        return -EINVAL;
    if (channel >= lume_sampler_count(rt->sampler))
        return -EINVAL;
    lume_sim_advance(rt, wall_ns);
    lume_sample smp = {.t_ns = rt->sim->now, .wall_ns = lume_rt_wall_ns(rt), .value = value,
                       .channel = channel};
    lume_runtime_dispatch_samples(rt, &smp, 1);
    return 0;
}

static lume_sim_event *add_event(lume_sim *s)
{
    if (s->nev == s->capev) {
        size_t cap = s->capev ? s->capev * 2 : 64;
        lume_sim_event *g = realloc(s->ev, cap * sizeof *g);
        if (!g)
            return NULL;
        s->ev = g;
        s->capev = cap;
    }
    lume_sim_event *e = &s->ev[s->nev++];
    memset(e, 0, sizeof *e);
    e->wall_ns = s->wall0 + s->now;
    return e;
}

void lume_sim_published(lume_runtime *rt, const char *script, const char *route,
                        size_t route_len, const void *payload, size_t len, int lane, int qos)
{
    lume_sim_event *e = rt->sim ? add_event(rt->sim) : NULL;
    if (!e)
        return;
    e->kind = LUME_SIM_PUBLISH;
    e->script = strdup(script);
    e->name = strndup(route, route_len);
    e->payload = malloc(len + 1);
    if (e->payload) {
        memcpy(e->payload, payload, len);
        e->payload[len] = 0;
        e->len = len;
    }
    e->lane = lane;
    e->qos = qos;
}

void lume_sim_output(lume_runtime *rt, const char *script, const char *name, double value)
{
    lume_sim_event *e = rt->sim ? add_event(rt->sim) : NULL;
    if (!e)
        return;
    e->kind = LUME_SIM_OUTPUT;
    e->script = strdup(script);
    e->name = strdup(name);
    e->value = value;
}

lume_sim_event *lume_sim_events(lume_runtime *rt, size_t *n)
{
    *n = 0;
    if (!rt->sim)
        return NULL;
    lume_sim_event *ev = rt->sim->ev;
    *n = rt->sim->nev;
    rt->sim->ev = NULL;
    rt->sim->nev = rt->sim->capev = 0;
    return ev;
}

void lume_sim_events_free(lume_sim_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ev[i].script);
        free(ev[i].name);
        free(ev[i].payload);
    }
    free(ev);
}
