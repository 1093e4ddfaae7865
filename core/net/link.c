/* core/net/link.c — connectivity modes (see link.h): when the session is up.
 *
 *   persistent:  ONLINE ── the session OFFLINE (stopped) ──► CONNECT
 *
 *   intermittent:
 *                    a new alarm (alarm = true)
 *                    outbox holds >= max_queued (not after a cut window)
 *                    every_s since the last window opened
 *        ┌─────────► ASLEEP ───────────────────────────────────────────► WAKING
 *        │             │  the session started by someone else: adopted   │   │
 *        │             └────────────────────────────────────────────────►│   │ CONNACK
 *        │                                                               │   ▼
 *        │   OFFLINE                 window_s over (cut)                 │  AWAKE ◄─┐
 *     CLOSING ◄────────────────────────────────────────────────────────────┘   │    │ still
 *        ▲        DISCONNECT (lume_mqtt_stop)                                   │    │ draining
 *        └──── settled: outbox drained, twin exchanged (lume_mqtt_settled) ◄────┴────┘
 *              or window_s over (cut)
 *
 *   A mode change re-enters the picture: to persistent from anywhere →
 *   ONLINE (CONNECT once the session is OFFLINE); to intermittent from
 *   ONLINE → AWAKE or WAKING (the connection there is becomes a window that
 *   drains and closes) or ASLEEP when offline.
 *
 * Invariants:
 *   1. The link connects and disconnects only through the session
 *      (lume_mqtt_start, lume_mqtt_stop): delivery stays the session's
 *      (at least once, in order within a lane); a window closing with
 *      messages in flight puts them back in the outbox.
 *   2. A window closes drained only when lume_mqtt_settled says so and the
 *      host waits for no answer (a twin GET): what was committed has been
 *      acknowledged and the desired state has arrived. A message accepted
 *      and not yet committed waits for the next window (an alarm opens it
 *      at once, invariant 4); a steady stream never keeps a window open.
 *   3. A window never stays open longer than window_s: a link that cannot
 *      drain (a broker that does not acknowledge, a flood) still sleeps.
 *      After such a cut window, only the timer or an alarm opens the next
 *      one (max_queued would reopen it at once, for ever).
 *   4. An alarm committed while a window is open goes out in that window;
 *      one committed while asleep or closing (or too late for the window)
 *      opens a window at once. Alarms are counted once committed
 *      (appended - lane_pending): the session sees nothing before.
 *   5. The link touches the session only after its owner started it once
 *      (the runtime at start, DPS once assigned).
 *
 * The decisions are lume_link_step (pure: the state, the parameters, what
 * the session and outbox say → an action); the rest is its timer: every
 * 100 ms in intermittent mode, every second in persistent mode. */
#include "link.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clock.h"
#include "log.h"

#define TICK_INTERMITTENT_US 100000
#define TICK_PERSISTENT_US   1000000

void lume_link_params_default(lume_link_params *p)
{
    memset(p, 0, sizeof *p);
    p->mode = LUME_LINK_PERSISTENT;
    p->every_s = 300;
    p->max_queued = 0;
    p->window_s = 60;
    p->alarm = true;
    snprintf(p->by, sizeof p->by, "default");
}

const char *lume_link_mode_name(int mode)
{
    return mode == LUME_LINK_INTERMITTENT ? "intermittent" : "persistent";
}

int lume_link_mode_parse(const char *s)
{
    if (s && !strcmp(s, "persistent"))
        return LUME_LINK_PERSISTENT;
    if (s && !strcmp(s, "intermittent"))
        return LUME_LINK_INTERMITTENT;
    return -1;
}

const char *lume_link_phase_name(int phase)
{
    switch (phase) {
    case LUME_LINK_ONLINE: return "online";
    case LUME_LINK_ASLEEP: return "asleep";
    case LUME_LINK_WAKING: return "waking";
    case LUME_LINK_AWAKE: return "awake";
    case LUME_LINK_CLOSING: return "closing";
    default: return "?";
    }
}

int lume_link_params_check(const lume_link_params *p, char *why, size_t cap)
{
    if (p->mode != LUME_LINK_PERSISTENT && p->mode != LUME_LINK_INTERMITTENT) {
        snprintf(why, cap, "connectivity.mode must be \"persistent\" or \"intermittent\"");
        return -EINVAL;
    }
    if (!isfinite(p->every_s) || p->every_s < 0.1 || p->every_s > LUME_LINK_EVERY_MAX_S) {
        snprintf(why, cap, "connectivity.every_s must be seconds from 0.1 to %g, got %g",
                 LUME_LINK_EVERY_MAX_S, p->every_s);
        return -EINVAL;
    }
    if (!isfinite(p->window_s) || p->window_s < 0.1 || p->window_s > LUME_LINK_WINDOW_MAX_S) {
        snprintf(why, cap, "connectivity.window_s must be seconds from 0.1 to %g, got %g",
                 LUME_LINK_WINDOW_MAX_S, p->window_s);
        return -EINVAL;
    }
    return 0;
}

/* ---- the decisions -------------------------------------------------------- */

static int64_t ms(double s) { return (int64_t)(s * 1000.0 + 0.5); }

static int close_window(lume_link_fsm *f, const lume_link_params *p, bool cut)
{
    f->phase = LUME_LINK_CLOSING;
    f->cut = cut;
    if (cut)
        snprintf(f->why, sizeof f->why, "intermittent: the window of %g s is over before the "
                 "outbox drained; what is left waits for the next window", p->window_s);
    else
        snprintf(f->why, sizeof f->why, "intermittent: outbox drained, twin exchanged");
    return LUME_LINK_DISCONNECT;
}

static void open_window(lume_link_fsm *f, const lume_link_in *in)
{
    f->phase = LUME_LINK_WAKING;
    f->opened_ms = in->now_ms;
    f->alarms_seen = in->alarms;
}

int lume_link_step(lume_link_fsm *f, const lume_link_params *p, const lume_link_in *in)
{
    int64_t now = in->now_ms;
    f->woke = LUME_LINK_WOKE_NONE;
    switch (f->phase) {
    case LUME_LINK_ONLINE:
        if (in->session != LUME_MQTT_OFFLINE)
            return LUME_LINK_NOTHING;
        snprintf(f->why, sizeof f->why, "persistent: connecting");
        return LUME_LINK_CONNECT;
    case LUME_LINK_ASLEEP:
        if (in->session != LUME_MQTT_OFFLINE) { /* started by its owner: a window */
            open_window(f, in);
            snprintf(f->why, sizeof f->why, "intermittent: the session was started");
            return LUME_LINK_NOTHING;
        }
        if (p->alarm && in->alarms != f->alarms_seen) {
            f->woke = LUME_LINK_WOKE_ALARM;
            snprintf(f->why, sizeof f->why, "intermittent: a new alarm: connecting at once");
        } else if (p->max_queued && in->queued >= p->max_queued && !f->cut) {
            f->woke = LUME_LINK_WOKE_QUEUED;
            snprintf(f->why, sizeof f->why, "intermittent: %llu messages queued (max_queued "
                     "%llu)", (unsigned long long)in->queued,
                     (unsigned long long)p->max_queued);
        } else if (now >= f->next_ms) {
            f->woke = LUME_LINK_WOKE_TIMER;
            snprintf(f->why, sizeof f->why, "intermittent: a window every %g s", p->every_s);
        } else {
            return LUME_LINK_NOTHING;
        }
        open_window(f, in);
        return LUME_LINK_CONNECT;
    case LUME_LINK_WAKING:
    case LUME_LINK_AWAKE:
        if (in->session == LUME_MQTT_CONNECTED) {
            f->phase = LUME_LINK_AWAKE;
            f->alarms_seen = in->alarms;   /* invariant 4: they go in this window */
            if (in->settled)
                return close_window(f, p, false);
        } else {
            f->phase = LUME_LINK_WAKING;   /* connecting, or lost and reconnecting */
        }
        if (now - f->opened_ms >= ms(p->window_s))
            return close_window(f, p, true);
        if (in->session == LUME_MQTT_OFFLINE) { /* a start that met a stop under way */
            snprintf(f->why, sizeof f->why, "intermittent: connecting");
            return LUME_LINK_CONNECT;
        }
        return LUME_LINK_NOTHING;
    case LUME_LINK_CLOSING:
        if (in->session != LUME_MQTT_OFFLINE)
            return LUME_LINK_NOTHING;
        f->phase = LUME_LINK_ASLEEP;
        f->next_ms = f->opened_ms + ms(p->every_s);
        if (f->next_ms <= now)   /* a window longer than every_s: skip the missed slot */
            f->next_ms = now + ms(p->every_s);
        return LUME_LINK_NOTHING;
    default:
        lume_check(false, "a link phase is one of lume_link_phase");
        return LUME_LINK_NOTHING;
    }
}

void lume_link_fsm_mode(lume_link_fsm *f, const lume_link_params *p, const lume_link_in *in)
{
    if (p->mode == LUME_LINK_PERSISTENT) {
        f->phase = LUME_LINK_ONLINE;
        f->cut = false;
        return;
    }
    switch (f->phase) {
    case LUME_LINK_ONLINE:
        if (in->session == LUME_MQTT_OFFLINE) {
            f->phase = LUME_LINK_ASLEEP;
            f->opened_ms = in->now_ms;   /* the first window after every_s */
            f->next_ms = in->now_ms + ms(p->every_s);
            f->alarms_seen = in->alarms;
        } else {   /* the connection there is becomes a window: drain, close */
            open_window(f, in);
            f->phase = in->session == LUME_MQTT_CONNECTED ? LUME_LINK_AWAKE : LUME_LINK_WAKING;
        }
        break;
    case LUME_LINK_ASLEEP:   /* a new every_s counts from the last window */
        f->next_ms = f->opened_ms + ms(p->every_s);
        break;
    default:                 /* a window open or closing goes on */
        break;
    }
}

/* ---- the mechanism --------------------------------------------------------- */

struct lume_link {
    lume_loop       *loop;
    lume_outbox     *ob;
    lume_link_host   h;
    lume_mqtt       *m;
    bool             started;   /* invariant 5 */
    lume_link_params p;
    lume_link_fsm    f;
    lume_timer       timer;
    lume_link_stats  st;
};

static int64_t now_ms(void) { return lume_mono_ns() / LUME_NS_PER_MS; }
static int64_t wall_ms(void) { return lume_wall_ns() / LUME_NS_PER_MS; }

static void changed(lume_link *k)
{
    if (k->h.changed)
        k->h.changed(k->h.ud);
}

/* Alarms the session can see: appended and committed (invariant 4: one
 * still waiting for its commit when a window closes opens the next). */
static uint64_t committed_alarms(const lume_outbox_stats *os)
{
    return os->appended[LUME_LANE_ALARM] - os->lane_pending[LUME_LANE_ALARM];
}

static void inputs(lume_link *k, lume_link_in *in)
{
    memset(in, 0, sizeof *in);
    in->now_ms = now_ms();
    in->session = lume_mqtt_get_state(k->m);
    if (k->p.mode != LUME_LINK_INTERMITTENT)
        return;
    lume_outbox_stats os;
    lume_outbox_get_stats(k->ob, &os);
    for (int l = 0; l < LUME_LANES; l++)
        in->queued += os.depth[l];
    in->alarms = committed_alarms(&os);
    if ((k->f.phase == LUME_LINK_AWAKE || k->f.phase == LUME_LINK_WAKING) &&
        in->session == LUME_MQTT_CONNECTED)
        in->settled = lume_mqtt_settled(k->m) && !(k->h.busy && k->h.busy(k->h.ud));
}

static void run(lume_link *k)
{
    if (!k->m || !k->started)
        return;
    lume_link_in in;
    inputs(k, &in);
    int before = k->f.phase;
    int a = lume_link_step(&k->f, &k->p, &in);
    switch (k->f.woke) {
    case LUME_LINK_WOKE_TIMER: k->st.wakes_timer++; break;
    case LUME_LINK_WOKE_QUEUED: k->st.wakes_queued++; break;
    case LUME_LINK_WOKE_ALARM: k->st.wakes_alarm++; break;
    default: break;
    }
    if (k->f.woke != LUME_LINK_WOKE_NONE)
        snprintf(k->st.last_wake, sizeof k->st.last_wake, "%s", k->f.why);
    if (a == LUME_LINK_CONNECT) {
        lume_log(k->f.woke ? LUME_LOG_INFO : LUME_LOG_DEBUG, "link", "%s", k->f.why);
        lume_mqtt_start(k->m);
    } else if (a == LUME_LINK_DISCONNECT) {
        if (k->f.cut)
            k->st.windows_cut++;
        if (k->f.cut)   /* (a drained window: the session's own line says why) */
            lume_log(LUME_LOG_WARN, "link", "%s", k->f.why);
        lume_mqtt_stop(k->m, k->f.why);
    }
    if (k->f.phase != before)
        changed(k);
}

static void tick(lume_timer *t)
{
    lume_link *k = t->ud;
    run(k);
    lume_timer_start(t, k->p.mode == LUME_LINK_INTERMITTENT ? TICK_INTERMITTENT_US
                                                           : TICK_PERSISTENT_US);
}

lume_link *lume_link_new(lume_loop *loop, lume_outbox *ob, const lume_link_host *h)
{
    lume_link *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->loop = loop;
    k->ob = ob;
    if (h)
        k->h = *h;
    lume_link_params_default(&k->p);
    k->f.phase = LUME_LINK_ONLINE;
    lume_timer_init(&k->timer, loop, tick, k);
    lume_timer_start(&k->timer, TICK_PERSISTENT_US);
    return k;
}

void lume_link_free(lume_link *k)
{
    if (!k)
        return;
    lume_timer_cancel(&k->timer);
    free(k);
}

void lume_link_attach(lume_link *k, lume_mqtt *m)
{
    if (k->m != m)
        k->started = m && lume_mqtt_get_state(m) != LUME_MQTT_OFFLINE;
    k->m = m;
}

void lume_link_session_state(lume_link *k, int state)
{
    if (!k->m)
        return;
    if (state != LUME_MQTT_OFFLINE)
        k->started = true;
    bool was = k->st.last_connect_ms > k->st.last_disconnect_ms;
    if (state == LUME_MQTT_CONNECTED) {
        k->st.last_connect_ms = wall_ms();
        if (k->p.mode == LUME_LINK_INTERMITTENT)
            k->st.windows++;
        changed(k);
    } else if (was && state != LUME_MQTT_HANDSHAKE) {
        k->st.last_disconnect_ms = wall_ms();
        changed(k);
    }
}

int lume_link_set(lume_link *k, const lume_link_params *p, char *why, size_t cap)
{
    int r = lume_link_params_check(p, why, cap);
    if (r < 0)
        return r;
    bool same_mode = p->mode == k->p.mode;
    k->p = *p;
    k->st.sets++;
    lume_link_in in;
    memset(&in, 0, sizeof in);
    in.now_ms = now_ms();
    in.session = k->m ? lume_mqtt_get_state(k->m) : LUME_MQTT_OFFLINE;
    if (k->m && p->mode == LUME_LINK_INTERMITTENT) {
        lume_outbox_stats os;
        lume_outbox_get_stats(k->ob, &os);
        in.alarms = committed_alarms(&os);
    }
    lume_link_fsm_mode(&k->f, p, &in);
    if (!same_mode)
        lume_log(LUME_LOG_INFO, "link", "connectivity %s (%s)%s", lume_link_mode_name(p->mode),
                 p->by, k->f.phase == LUME_LINK_AWAKE ? ": draining, then disconnecting" : "");
    changed(k);
    run(k);   /* at once: a persistent link connects now */
    lume_timer_start(&k->timer, p->mode == LUME_LINK_INTERMITTENT ? TICK_INTERMITTENT_US
                                                                 : TICK_PERSISTENT_US);
    return 0;
}

void lume_link_get(const lume_link *k, lume_link_stats *st)
{
    *st = k->st;
    st->params = k->p;
    st->phase = k->f.phase;
}

const char *lume_link_transport(const lume_link *k)
{
    return lume_link_mode_name(k->p.mode);
}
