/* bindings/host.h — internals shared by the Lua host's files (not for
 * embedders: see lume.h). */
#ifndef LUME_HOST_H
#define LUME_HOST_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#include "config.h"
#include "dps.h"
#include "drivers.h"
#include "hub.h"
#include "kv.h"
#include "log.h"
#include "loop.h"
#include "lume.h"
#include "mqtt.h"
#include "outbox.h"
#include "sampler.h"
#include "store.h"
#include <cJSON.h>

typedef struct lume_script lume_script;

enum lume_script_status {
    LUME_SCRIPT_LOADING = 0,
    LUME_SCRIPT_RUNNING,
    LUME_SCRIPT_FAILED,    /* did not load: no state */
    LUME_SCRIPT_STOPPED,   /* stopped by the runtime (error storm) */
    LUME_SCRIPT_PARKED,    /* the previous version, kept while a new one soaks */
};
const char *lume_script_status_name(int status);

enum { LUME_EV_CONNECTED = 0, LUME_EV_DISCONNECTED = 1 };

/* registry.c — the one callback registry of a script. Every Lua function
 * that takes a callback (lume.on_sample, lume.timer.every/after,
 * lume.subscribe, lume.net.on, lume.twin.on_change) keeps it here, one
 * list per kind; the design, its invariants and how to add a kind are at
 * the top of registry.c. */
enum lume_cb_kind {
    LUME_CB_SAMPLE = 0, /* lume.on_sample        (l_lume.c)  */
    LUME_CB_TIMER,      /* lume.timer.every/after (l_timer.c) */
    LUME_CB_SUB,        /* lume.subscribe        (l_net.c)   */
    LUME_CB_NET,        /* lume.net.on           (l_net.c)   */
    LUME_CB_TWIN,       /* lume.twin.on_change   (l_twin.c)  */
    LUME_CB_KINDS
};

struct lume_script_timer; /* l_timer.c's own */

/* One registered callback. The fields before the union are the registry's;
 * the union is the kind's own data, filled by its module after
 * lume_cb_add (zeroed until then). */
typedef struct lume_cb {
    int      ref;       /* the function, in the script's Lua registry */
    bool     dead;      /* cancelled: dispatch skips it, the sweep releases it */
    uint64_t id;        /* its handle's; increasing along a list */
    union {
        struct {        /* LUME_CB_SAMPLE */
            unsigned channel;
            bool     batch;   /* receives (values, times) once per drain */
        };
        struct lume_script_timer *timer; /* LUME_CB_TIMER (owned) */
        struct {        /* LUME_CB_SUB */
            char *filter;     /* owned */
            int   qos;
        };
        int   event;    /* LUME_CB_NET: LUME_EV_* */
        char *key;      /* LUME_CB_TWIN (owned) */
    };
} lume_cb;

/* What a kind does beyond the registry's own bookkeeping; both may be NULL
 * and both must accept an entry whose kind data is still zeroed. */
typedef struct lume_cb_ops {
    /* The entry was cancelled (by its handle, or its script is going): stop
     * what it set going (a pending timer, a broker subscription). Called
     * once, at once, even in the middle of a dispatch. */
    void (*cancel)(lume_script *s, lume_cb *e);
    /* Free the kind's data. Called once, when the entry is released (at
     * cancel, or after the dispatch that saw it cancelled). */
    void (*release)(lume_cb *e);
} lume_cb_ops;

/* One kind's entries, ordered by id, contiguous for the dispatch loops. */
typedef struct lume_cb_list {
    lume_cb           *v;
    size_t             n, cap;
    size_t             dead;  /* entries in v cancelled and not yet released */
    unsigned           busy;  /* dispatch loops over v running now (they may nest) */
    const lume_cb_ops *ops;   /* set by the kind's first lume_cb_add */
} lume_cb_list;

/* The capped allocator's account. *//* The capped allocator's account. */
typedef struct lume_mem {
    size_t used, peak, limit;
    uint64_t refused;
} lume_mem;

struct lume_script {
    lume_runtime *rt;
    char         *name;
    char         *path;       /* file it came from, NULL when loaded from a string */
    char          version[32];/* "3:ab12cd34" = generation:sha256 prefix */
    unsigned      generation;
    lua_State    *L;
    char          sha256[65]; /* of the source it was built from */
    lume_mem      mem;
    int           status;
    lume_cb_list  cbs[LUME_CB_KINDS]; /* its callbacks, by kind (registry.c) */
    uint64_t      next_id;    /* of the next callback */
    uint64_t      calls, errors, budget_overruns, publishes;
    uint64_t      err_window_start_ms, err_window_count;
    int64_t       storm_start_ms;
    int64_t       overrun_start_ms;
    uint64_t      overrun_count;
    uint64_t      storm_count;
    char         *last_error;
    int64_t       loaded_ms;
    bool          killed;     /* budget exceeded in the current call */
    bool          dry_run;    /* replaying recorded samples: publish and store do nothing */
    bool          managed;    /* installed from the twin (a bundle), not from a file */
    uint64_t      dry_publishes;
    const char   *call_detail;  /* for the error message of the current call */
    lume_script  *next;
};

/* The CPU-budget and hang watchdog: one thread per runtime; arms the hooks
 * on the running Lua thread only when a call has used its CPU budget, and
 * ends the process when an activity holds the loop past the hang limit
 * (see sandbox.c). */
#define LUME_HUNG_MARKER "hung.json"
typedef struct lume_watchdog {
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;          /* on CLOCK_MONOTONIC */
    lume_log_target *log;        /* its starter's log target */
    bool            running, quit;
    lume_script    *current;     /* under mu */
    lua_State      *thread_L;    /* innermost running Lua thread, under mu */
    const char     *what;        /* what the current activity is */
    bool            closing;     /* the current activity closes a state: no hooks */
    int64_t         wall_start_ns;
    int64_t         cpu_start_ns;/* upper bound of the loop thread's CPU clock at the start */
    int             budget_ms;
    int             hang_ms;
    bool            armed;
    atomic_bool     expired;     /* the running call is over budget (lume_sandbox_check) */
    bool            idle;        /* waiting with no call to watch */
    int64_t         wait_until;  /* the time it sleeps towards, 0 when none */
    /* the loop thread's own, read without mu */
    pthread_t       loop_thread;
    clockid_t       loop_clock;
    bool            have_loop;
    int64_t         stamp_wall_ns, stamp_cpu_ns;
    char            marker[4096], marker_tmp[4100];
} lume_watchdog;

struct lume_runtime {
    lume_config      cfg;
    lume_log_target  log;           /* its level and sink (core/base/log.h) */
    lume_loop       *loop;
    lume_sampler    *sampler;
    lume_board_ctx  *board;
    char            *board_desc;
    lume_outbox     *outbox;
    lume_kv         *kv;
    lume_watchdog    wd;
    lume_mqtt       *mqtt;          /* NULL when offline (no net.url), or while DPS
                                       has not assigned a hub yet */
    struct lume_dps *dps;           /* a DPS registration under way, or NULL */
    lume_timer       dps_timer;     /* provision again (a hub refused the device) */
    int              dps_backoff_ms;
    int              dps_reprovisions;  /* registrations after a hub refused the device */
    lume_dps_assignment dps_assigned; /* the hub connected to ("" before one) */
    bool             was_connected;
    struct lume_hub *hub;           /* the hub's dialect: every topic (core/hub/hub.h) */
    struct lume_manager *mgr;       /* bundles from the twin */
    struct lume_twin_host *twin;    /* the twin and its dialect */
    lume_sample     *recent;        /* last RECENT samples per channel, for dry runs */
    unsigned        *recent_n;      /* samples recorded per channel (saturating ring index) */
    lume_script     *scripts;
    lume_timer       commit_timer, status_timer, deadline_timer, reload_timer, soon_timer;
    lume_sample     *drain_buf;
    size_t           drain_cap;
    int64_t         *chan_err_log_ms;
    lume_watch      *inotify_watch;
    struct lume_control *control;   /* the control socket (control.c) */
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
    int64_t          commit_due_ns;  /* when commit_timer should fire */
    int64_t          stall_max_ns;   /* the loop's longest lateness, seen by commit_timer */
    uint64_t         stalls_1s;      /* turns the loop came back more than 1 s late */
};

/* sandbox.c — states, the capped allocator, the watchdog, protected calls */
lua_State  *lume_sandbox_new(lume_script *s, char **err);
int         lume_watchdog_start(lume_watchdog *wd, int budget_ms, int hang_ms,
                                const char *store);
void        lume_watchdog_stop(lume_watchdog *wd);
/* Call the function at the top of s->L (below it nargs arguments) under the
 * CPU budget. 0, or the Lua status with the error recorded on the script
 * (counted, logged with script:line and a traceback). Pops function and
 * arguments; leaves nothing. */
int         lume_sandbox_call(lume_script *s, int nargs, int budget_ms, const char *what);
lume_script *lume_script_of(lua_State *L);
/* Push, inside the protected call, the function to call and its arguments;
 * return how many arguments (or -1: nothing to call). Anything it does that
 * fails (memory cap, a conversion error) is the script's error. */
typedef int (*lume_sandbox_push)(lua_State *L, void *ud);
/* lume_sandbox_call for a call whose function and arguments are built by
 * push on the script's state: every host call that allocates on a script's
 * state goes through here, so nothing a script's cap refuses can reach Lua's
 * panic. 0 or the Lua status, as lume_sandbox_call. */
int         lume_sandbox_pcall(lume_script *s, lume_sandbox_push push, void *ud, int budget_ms,
                               const char *what);
/* Close s->L under the hang limit (s->L is NULL afterwards). */
void        lume_sandbox_close(lume_script *s);
/* For C code that loops on a script's behalf without calling any function
 * (the pattern matcher; loops that call functions are reached by the call
 * hook): raises the script's "CPU budget exceeded" error when the
 * running call has used up its budget; returns at once otherwise (one
 * relaxed atomic load). Call it every few thousand steps. */
void        lume_sandbox_check(lua_State *L);
/* For a state that is not a script's (its extra space holds NULL), run on
 * this thread: from now on lume_sandbox_check raises msg once lume_mono_ns()
 * reaches deadline_ns (0: no deadline). The config chunk's limit. */
void        lume_sandbox_set_deadline(int64_t deadline_ns, const char *msg);

/* pattern.c — lume's own string.find/match/gmatch/gsub: Lua 5.4's pattern
 * language and results, checking the CPU budget as they step. */
/* Replace find, match, gmatch and gsub in L's string table (the global
 * `string` and the string metatable's __index) with lume's, which call
 * lume_sandbox_check(L) every few thousand steps: for a script's state, and
 * the config chunk's (which has a deadline instead of a budget).
 * 0, or -ENOENT when L has no string table (nothing changed). Raises on
 * memory errors, like any Lua API call. */
int         lume_pattern_install(lua_State *L);
/* Replace "rep" in the string table at the top of the stack with one that
 * returns an empty result at once (Lua's loops n times even then, beyond
 * any hook or cap) and, when limit is not 0, refuses a result larger than
 * limit bytes before building it. Used by the script sandbox (its memory
 * cap) and the config chunk (0: its allocator's cap reports it). */
void        lume_string_rep_install(lua_State *L, size_t limit);
/* Push a table {find, match, gmatch, gsub} of the same functions that never
 * check a budget: for states that are not a script's (tests, tools). */
void        lume_pattern_push(lua_State *L);

/* scripts.c — the script manager */
int  lume_scripts_load_dir(lume_runtime *rt);
/* Build a new version of `name` from source and swap it in. 0, or negative
 * with *err (the old version, if any, keeps running). */
int  lume_scripts_install(lume_runtime *rt, const char *name, const char *path,
                          const char *src, size_t len, char **err);
/* Reload `name` from its file (NULL: every file, leaving the twin's
 * scripts alone). 0, or negative with *err: -EPERM when the twin manages
 * `name` (lume_scripts_managed_why), -ENOENT, -EINVAL, -EIO. */
int  lume_scripts_reload(lume_runtime *rt, const char *name, char **err);
/* Why `name` must not be reloaded from a file: a malloc'd message naming
 * the twin and the bundle version when the twin manages it; NULL when it
 * does not. */
char *lume_scripts_managed_why(lume_runtime *rt, const char *name);
/* Build a version in a fresh sandbox and run its top level, without
 * swapping it in: NULL with *err (file:line) when it does not load. */
lume_script *lume_scripts_build(lume_runtime *rt, const char *name, const char *path,
                                const char *src, size_t len, char **err);
/* Swap a built version in, replacing (and freeing) the running one. */
void lume_scripts_swap(lume_runtime *rt, lume_script *s);
int  lume_scripts_unload(lume_runtime *rt, const char *name);
lume_script *lume_scripts_find(lume_runtime *rt, const char *name);
/* letters, digits, _ and -, 1..64: the rule for file and bundle names alike */
bool lume_script_name_valid(const char *name);
void lume_scripts_free_all(lume_runtime *rt);
/* At start: a hang marker left by the watchdog (sandbox.c) quarantines the
 * source that hung, persisted in the store. */
void lume_scripts_note_hang(lume_runtime *rt);
/* 1 when this source of `name` hung the device (with *why when why is
 * given); 0 otherwise — and, when why is given, a quarantine of another
 * source of that name is lifted. */
int  lume_scripts_hung(lume_runtime *rt, const char *name, const char *sha256, char **why);
void lume_script_free(lume_script *s);
int  lume_scripts_watch(lume_runtime *rt);

/* runtime.c */
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

/* store_host.c — the store in a running lume (lock, checks, stats, twin) */
/* Make and lock the store directory (core/store/store.h lume_store_open: -EBUSY
 * when another lume holds it, -EPERM when another user can write it). */
int  lume_store_host_open(lume_runtime *rt, char **err);
/* Report it and check it once a second (after the databases, the twin and
 * the control socket are up). */
void lume_store_host_start(lume_runtime *rt);
void lume_store_host_stop(lume_runtime *rt);
/* Unlock (after the databases are closed). */
void lume_store_host_close(lume_runtime *rt);
/* Add the "store" object to a stats document. */
void lume_store_host_json(lume_runtime *rt, cJSON *root);

/* control.c — the control socket (lume reload, lume stats, lume status);
 * its limits and the life of a connection are drawn at the top of control.c */
struct lume_control;
int  lume_control_listen(lume_runtime *rt, char **err);
void lume_control_close(lume_runtime *rt);
/* The socket's path while listening, else NULL (store_host.c watches it). */
const char *lume_control_path(const lume_runtime *rt);
/* The file at the socket's path is another runtime's now: close leaves it. */
void lume_control_disown(lume_runtime *rt);
/* Client side: send one command line, print the answer (stdout for "ok",
 * stderr for "error", prefixed "lume COMMAND: "). Exit code: 0 ok, 1 the
 * running lume answered an error or cannot be reached, 2 a request that
 * cannot be sent (too long, socket path too long). */
int  lume_control_request(const char *sock_path, const char *line);

/* Lua modules (one file each); each pushes its module table. */
int lume_open_lume(lua_State *L);    /* l_lume.c: the `lume` global */
int lume_open_sensor(lua_State *L);  /* l_sensor.c */
int lume_open_timer(lua_State *L);   /* l_timer.c */
int lume_open_log(lua_State *L);     /* l_log.c */
int lume_open_store(lua_State *L);   /* l_store.c */
int lume_open_net(lua_State *L);     /* l_net.c: lume.net and lume.subscribe */
int lume_open_twin(lua_State *L);    /* l_twin.c: lume.twin */
/* l_twin.c: call the scripts' on_change(key) handlers */
void lume_twin_notify(lume_runtime *rt, const char *key, const cJSON *now, const cJSON *before);

/* l_net.c — the host side of the network API */
int  lume_net_start(lume_runtime *rt, char **err);   /* from cfg.net; 0 when offline */
void lume_net_stop(lume_runtime *rt);               /* a DPS registration, its timer */
void lume_net_dps_json(lume_runtime *rt, cJSON *root); /* lume stats: "dps" */
/* The session options of the net.* settings of c — every one of them, the
 * one mapping for `lume run` and the operator commands. o points into c
 * (valid while c is); status_topic is left NULL, for the caller. */
void lume_mqtt_opts_from_config(const lume_config *c, lume_mqtt_opts *o);

/* registry.c — the callback registry (the types are above struct
 * lume_script). Handles: one userdata type per kind ("lume.handler",
 * "lume.timer", ...), with cancel(), active() and __close. */
/* Make every kind's handle metatable in L: once per script state. */
void     lume_cb_open(lua_State *L);
/* Register the function at index fn of L (the running script's state) as
 * a callback of kind, and push its handle. Returns the entry, its kind data
 * zeroed for the caller to fill; the pointer holds until the next add to
 * that kind. Raises (nothing registered) on a memory error. ops are the
 * kind's; the same for every add of a kind. */
lume_cb *lume_cb_add(lua_State *L, int kind, int fn, const lume_cb_ops *ops);
/* The live (not cancelled) entry of kind with handle id, or NULL. */
lume_cb *lume_cb_find(lume_script *s, int kind, uint64_t id);
/* Cancel it: ops->cancel at once; released (luaL_unref, ops->release) at
 * once, or by the sweep when a dispatch is running over that kind. true
 * when it was live. */
bool     lume_cb_cancel(lume_script *s, int kind, uint64_t id);
/* Around a dispatch loop over s->cbs[kind].v (which may run Lua): entries
 * cancelled in between stay in v, dead, until the outermost leave releases
 * them. v may grow (realloc) during a call: loop by index, not pointer. */
void     lume_cb_enter(lume_script *s, int kind);
void     lume_cb_leave(lume_script *s, int kind);
/* The script is going: cancel and release every entry (before its state
 * closes), free the lists. */
void     lume_cb_clear(lume_script *s);
/* Live entries of kind, and its name in lume stats ("on_sample", "timers",
 * "subscriptions", "net", "twin"). */
size_t      lume_cb_count(const lume_script *s, int kind);
const char *lume_cb_kind_name(int kind);

/* luajson.c — Lua values <-> JSON (publish payloads, twin reports, store
 * values), by the rule lume.json follows too (the top of luajson.c). */
/* Encode the value at idx into a malloc'd string. NULL with *err on a value
 * JSON cannot hold (a function, a cycle, NaN, a string that is not UTF-8,
 * ...): "cannot encode NaN at value.readings[3]". Never raises. */
char *lume_json_encode(lua_State *L, int idx, size_t *len, char **err);
/* The same, except that strings go byte for byte, UTF-8 or not: for what
 * lume alone reads back (the store, the host's own transfers), never for
 * what leaves the device. */
char *lume_json_encode_bytes(lua_State *L, int idx, size_t *len, char **err);
/* Push the decoded value (arrays marked as lume.json's decoder marks
 * them); 0, or -EINVAL with *err. */
int   lume_json_push(lua_State *L, const char *s, size_t len, char **err);

/* config_lua.c — check a Lua table (at idx) into c, key by key. 0 or
 * negative with *err naming origin, key, value and what was expected. */
int lume_config_from_lua(lume_config *c, lua_State *L, int idx, const char *origin,
                         char **err);

/* bundles.c — script bundles from the twin: verify, stage, soak, commit
 * or roll back (the state machine is drawn at the top of bundles.c) */
#define LUME_RECENT 32
struct lume_manager;
struct lume_manager *lume_manager_new(lume_runtime *rt, char **err);
void lume_manager_free(struct lume_manager *m);
/* Start the last-known-good bundles persisted in the store (at startup). */
void lume_manager_restore(struct lume_manager *m);
/* The desired "scripts" object changed (NULL: removed). */
void lume_manager_apply(struct lume_manager *m, const cJSON *scripts);
/* The bundle version the twin runs as `name` now, or NULL (none, or not a
 * bundle; m may be NULL). Borrowed: valid until the manager changes it. */
const char *lume_manager_running_version(struct lume_manager *m, const char *name);
/* twin_host.c — the twin, its built-in keys and the mqtt dialect */
struct lume_twin_host;
int  lume_twin_host_start(lume_runtime *rt, char **err);
void lume_twin_host_free(lume_runtime *rt);
/* Merge patch into the reported document; flushed at the end of the turn. */
void lume_twin_host_report(lume_runtime *rt, cJSON *patch);  /* takes patch */
/* reported.errors.<key> = msg (logged), or cleared with msg NULL; nothing
 * is sent when it is already so. */
void lume_twin_host_error(lume_runtime *rt, const char *key, const char *msg);
/* A message on a twin topic? Then handled, and true. */
bool lume_twin_host_message(lume_runtime *rt, const char *topic, const void *payload,
                            size_t len);
/* A message the session could not take (too large: skipped, see
 * lume_mqtt_cbs.on_skipped), why says so. When topic is one of the twin's
 * desired layers, the reason goes to reported errors.desired (and the log),
 * and true; otherwise nothing, false. topic may be NULL (not kept). */
bool lume_twin_host_refused(lume_runtime *rt, const char *topic, const char *why);
void lume_twin_host_connected(lume_runtime *rt);
/* A desired document for layer ("device", "group:<g>") as if it had
 * arrived on its topic (tools and tests); false for an unknown layer. */
bool lume_twin_host_feed(lume_runtime *rt, const char *layer, const void *payload, size_t len);
/* The reported document as JSON (malloc'd), NULL when there is none. */
char *lume_twin_host_reported_json(lume_runtime *rt);
const cJSON *lume_twin_host_desired(lume_runtime *rt);

/* luajson.c */
int lume_json_push_cjson(lua_State *L, const cJSON *j);
cJSON *lume_json_to_cjson(lua_State *L, int idx, char **err);


/* boards.c — load boards/NAME.lua into the sampler */
int lume_board_load(lume_runtime *rt, char **err);

#endif
