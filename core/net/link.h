/* core/net/link.h — connectivity modes: when the session to the hub is up.
 *
 *   persistent    connected all the time (the session reconnects forever)
 *   intermittent  offline, with a window now and then: connect every
 *                 every_s, or when the outbox holds max_queued messages,
 *                 or at once when a new alarm is queued; drain the outbox
 *                 and exchange the twin; DISCONNECT; offline again.
 *
 * This is the mechanism; the policy (which mode, with what parameters, and
 * `auto`: following the board's power source) is a script,
 * scripts/connectivity.lua, through lume.net.connectivity (bindings/l_net.c).
 * Nothing is lost offline: messages wait in the durable outbox, and the
 * session's own rules (mqtt.h) deliver them in each window. The decisions
 * are lume_link_step, a pure function of the state and what the session
 * and the outbox say, so they are tested alone (tests/unit/test_link.c).
 * Everything runs on the loop thread. */
#ifndef LUME_LINK_H
#define LUME_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "mqtt.h"
#include "outbox.h"

typedef enum lume_link_mode {
    LUME_LINK_PERSISTENT = 0,
    LUME_LINK_INTERMITTENT = 1,
} lume_link_mode;

#define LUME_LINK_EVERY_MAX_S  86400.0
#define LUME_LINK_WINDOW_MAX_S 3600.0

typedef struct lume_link_params {
    int      mode;          /* lume_link_mode */
    double   every_s;       /* intermittent: a window at least this often (default 300) */
    uint64_t max_queued;    /* intermittent: a window when the outbox holds this many
                               messages; 0: never (default 0) */
    double   window_s;      /* the longest a window stays open (default 60) */
    bool     alarm;         /* a new message on the alarm lane opens a window at once
                               (default true) */
    char     by[128];       /* who chose this, in words (reported): "auto: on battery" */
} lume_link_params;

void        lume_link_params_default(lume_link_params *p);
/* 0, or -EINVAL with why naming the key, the value and what was expected
 * ("connectivity.every_s must be seconds from 0.1 to 86400, got -5"). */
int         lume_link_params_check(const lume_link_params *p, char *why, size_t cap);
const char *lume_link_mode_name(int mode);   /* "persistent", "intermittent" */
int         lume_link_mode_parse(const char *s); /* -1 for anything else */

/* ---- the decisions, alone ---------------------------------------------- */

typedef enum lume_link_phase {
    LUME_LINK_ONLINE = 0,   /* persistent: the session runs */
    LUME_LINK_ASLEEP,       /* intermittent, offline until a wake-up */
    LUME_LINK_WAKING,       /* a window is open, the session connecting */
    LUME_LINK_AWAKE,        /* connected: draining */
    LUME_LINK_CLOSING,      /* DISCONNECT sent, waiting for OFFLINE */
} lume_link_phase;
const char *lume_link_phase_name(int phase);

typedef enum lume_link_action {
    LUME_LINK_NOTHING = 0,
    LUME_LINK_CONNECT,      /* lume_mqtt_start */
    LUME_LINK_DISCONNECT,   /* lume_mqtt_stop */
} lume_link_action;

typedef enum lume_link_woke {
    LUME_LINK_WOKE_NONE = 0,
    LUME_LINK_WOKE_TIMER,   /* every_s */
    LUME_LINK_WOKE_QUEUED,  /* max_queued */
    LUME_LINK_WOKE_ALARM,   /* a new alarm */
} lume_link_woke;

/* What the step sees. */
typedef struct lume_link_in {
    int64_t  now_ms;        /* monotonic */
    int      session;       /* lume_mqtt_state */
    bool     settled;       /* connected in a window: lume_mqtt_settled and the host
                               waits for nothing */
    uint64_t queued;        /* messages in the outbox (every lane) */
    uint64_t alarms;        /* alarm-lane messages committed so far (a counter) */
} lume_link_in;

/* The state the step keeps. Zeroed = ONLINE, nothing seen. */
typedef struct lume_link_fsm {
    int      phase;         /* lume_link_phase */
    int64_t  opened_ms;     /* when the current or last window opened */
    int64_t  next_ms;       /* ASLEEP: the next timed window */
    uint64_t alarms_seen;   /* alarms already sent or being sent */
    bool     cut;           /* the last window closed before it drained */
    int      woke;          /* lume_link_woke: what opened a window in this step */
    char     why[160];      /* the reason of the last action, in words */
} lume_link_fsm;

/* One decision: the action to take now (f->why says why, for the log). */
int lume_link_step(lume_link_fsm *f, const lume_link_params *p, const lume_link_in *in);
/* The parameters changed to p at now_ms (f->phase follows the mode). */
void lume_link_fsm_mode(lume_link_fsm *f, const lume_link_params *p, const lume_link_in *in);

/* ---- the mechanism ------------------------------------------------------ */

typedef struct lume_link lume_link;

typedef struct lume_link_host {
    /* The host still waits for an answer it asked for on this connection
     * (a twin GET, a reported PATCH): the window stays open. May be NULL. */
    bool (*busy)(void *ud);
    /* The applied parameters or the counters changed (a window opened or
     * closed, a new mode): report them. May be NULL. */
    void (*changed)(void *ud);
    void *ud;
} lume_link_host;

typedef struct lume_link_stats {
    lume_link_params params;
    int      phase;
    uint64_t sets;             /* lume_link_set calls that applied */
    uint64_t windows;          /* connections made in intermittent mode */
    uint64_t windows_cut;      /* closed after window_s, not drained */
    uint64_t wakes_timer, wakes_queued, wakes_alarm;
    int64_t  last_connect_ms;  /* wall clock (ms since the epoch), 0: never */
    int64_t  last_disconnect_ms;
    char     last_wake[160];   /* why the last window opened */
} lume_link_stats;

/* Persistent, with no session yet. NULL on out of memory. */
lume_link *lume_link_new(lume_loop *loop, lume_outbox *ob, const lume_link_host *h);
/* Stops the link's timer; the session is left as it is. NULL is fine. */
void       lume_link_free(lume_link *k);
/* The session it drives (NULL: none, e.g. before DPS assigned a hub or
 * before the session is freed). The link starts and stops it only once it
 * has been started by its owner (a state other than OFFLINE seen). */
void       lume_link_attach(lume_link *k, lume_mqtt *m);
/* The session's state changed (its on_state): counts windows, times. */
void       lume_link_session_state(lume_link *k, int state);
/* Apply p. 0, or -EINVAL with why (lume_link_params_check): the previous
 * parameters stay. */
int        lume_link_set(lume_link *k, const lume_link_params *p, char *why, size_t cap);
void       lume_link_get(const lume_link *k, lume_link_stats *st);
/* The mode messages leave by now ("persistent", "intermittent"). */
const char *lume_link_transport(const lume_link *k);

#endif
