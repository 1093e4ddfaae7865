/* bindings/host.h — internals shared by the Lua host's files (not for
 * embedders: see lume.h). */
#ifndef LUME_HOST_H
#define LUME_HOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#include "drivers.h"
#include "kv.h"
#include "lume.h"
#include "mqtt.h"
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

/* A sample handler registered by lume.on_sample. */
typedef struct lume_handler {
    int      ref;       /* function in the script's registry */
    unsigned channel;
    bool     batch;     /* receives (values, times) once per drain */
    uint64_t id;
    bool     dead;      /* cancelled; swept after dispatch */
} lume_handler;

/* A timer made by lume.timer.every/after. */
typedef struct lume_script_timer {
    lume_timer  t;                 /* first */
    lume_script *script;
    int          ref;              /* callback */
    int64_t      period_us;        /* 0 = one-shot */
    uint64_t     id;
    bool         dead;
    bool         firing;          /* its callback is running */
    struct lume_script_timer *next;
} lume_script_timer;

/* A subscription made by lume.subscribe. */
typedef struct lume_sub {
    char    *filter;
    int      ref;       /* handler */
    int      qos;
    uint64_t id;
    bool     dead;
} lume_sub;

enum { LUME_EV_CONNECTED = 0, LUME_EV_DISCONNECTED = 1 };

/* A handler of lume.net.on(event, fn). */
typedef struct lume_listener {
    int      event;
    int      ref;
    uint64_t id;
    bool     dead;
} lume_listener;

/* A handler of lume.twin.on_change(key, fn). */
typedef struct lume_twin_listener {
    char    *key;
    int      ref;
    uint64_t id;
    bool     dead;
} lume_twin_listener;

/* The capped allocator's account. */
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
    lume_handler *handlers;
    size_t        nhandlers, caphandlers;
    uint64_t      next_id;
    lume_script_timer *timers;
    lume_sub     *subs;
    size_t        nsubs, capsubs;
    lume_listener *listeners;
    size_t        nlisteners, caplisteners;
    lume_twin_listener *tlisteners;
    size_t        ntl, captl;
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
    bool          in_dispatch;
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
    lume_loop       *loop;
    lume_sampler    *sampler;
    lume_board_ctx  *board;
    char            *board_desc;
    lume_outbox     *outbox;
    lume_kv         *kv;
    lume_watchdog    wd;
    lume_mqtt       *mqtt;          /* NULL when offline (no net.url) */
    bool             was_connected;
    char             topic_prefix[160]; /* "lume/<device>/telemetry/" */
    size_t           topic_prefix_len;
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
    lume_watch      *control_watch;
    char            *control_path;
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

/* pattern.c — lume's own string.find/match/gmatch/gsub: Lua 5.4's pattern
 * language and results, checking the CPU budget as they step. */
/* Replace find, match, gmatch and gsub in L's string table (the global
 * `string` and the string metatable's __index) with lume's, which call
 * lume_sandbox_check(L) every few thousand steps: for a script's state only.
 * 0, or -ENOENT when L has no string table (nothing changed). Raises on
 * memory errors, like any Lua API call. */
int         lume_pattern_install(lua_State *L);
/* Push a table {find, match, gmatch, gsub} of the same functions that never
 * check a budget: for states that are not a script's (tests, tools). */
void        lume_pattern_push(lua_State *L);

/* scripts.c — the script manager */
int  lume_scripts_load_dir(lume_runtime *rt);
/* Build a new version of `name` from source and swap it in. 0, or negative
 * with *err (the old version, if any, keeps running). */
int  lume_scripts_install(lume_runtime *rt, const char *name, const char *path,
                          const char *src, size_t len, char **err);
int  lume_scripts_reload(lume_runtime *rt, const char *name, char **err);
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
void lume_runtime_dispatch(lume_runtime *rt);
/* Call one on_sample handler of s with one sample, or (batch handlers) with
 * the samples of its channel in buf (no call when there are none); the one
 * path for live dispatch and the bundle dry run. The Lua status. */
int  lume_script_call_sample(lume_script *s, lume_handler *h, const lume_sample *smp,
                             const char *name, const char *what);
int  lume_script_call_batch(lume_script *s, lume_handler *h, const lume_sample *buf, size_t n,
                            const char *name, const char *what);
/* Commit the outbox and hand it to the session at the end of this loop
 * turn (alarms do not wait for the commit interval). */
void lume_runtime_commit_soon(lume_runtime *rt);
/* Record an error of a script (counted, logged, kept as last_error). */
void lume_script_error(lume_script *s, const char *what, const char *msg);

/* store_host.c — the store in a running lume (lock, checks, stats, twin) */
/* Make and lock the store directory (core/store.h lume_store_open: -EBUSY
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

/* control.c — the control socket (lume reload, lume status) */
int  lume_control_listen(lume_runtime *rt, char **err);
void lume_control_close(lume_runtime *rt);
/* Client side: send one command line, print the reply. Exit code. */
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
void lume_net_script_gone(lume_script *s);           /* drop its subscriptions */

/* luajson.c — Lua values <-> JSON (publish payloads, store values). */
/* Encode the value at idx into a malloc'd string. NULL with *err on a value
 * JSON cannot hold (function, cycle, NaN), naming where it was. */
char *lume_json_encode(lua_State *L, int idx, size_t *len, char **err);
/* Push the decoded value; 0, or -EINVAL with *err. */
int   lume_json_push(lua_State *L, const char *s, size_t len, char **err);

/* config_lua.c — check a Lua table (at idx) into c, key by key. 0 or
 * negative with *err naming origin, key, value and what was expected. */
int lume_config_from_lua(lume_config *c, lua_State *L, int idx, const char *origin,
                         char **err);

/* manager.c — script bundles from the twin: verify, stage, soak, commit
 * or roll back (the state machine is drawn at the top of manager.c) */
#define LUME_RECENT 32
struct lume_manager;
struct lume_manager *lume_manager_new(lume_runtime *rt, char **err);
void lume_manager_free(struct lume_manager *m);
/* Start the last-known-good bundles persisted in the store (at startup). */
void lume_manager_restore(struct lume_manager *m);
/* The desired "scripts" object changed (NULL: removed). */
void lume_manager_apply(struct lume_manager *m, const cJSON *scripts);
/* The reported "scripts" object (borrowed). */
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

/* ops.c — operator commands (exit codes: 0 ok, 1 failure, 2 usage) */
int lume_cmd_keygen(int argc, char **argv);
int lume_cmd_sign(int argc, char **argv);
int lume_cmd_push(int argc, char **argv);
int lume_cmd_twin(int argc, char **argv);
int lume_cmd_fleet(int argc, char **argv);

/* boards.c — load boards/NAME.lua into the sampler */
int lume_board_load(lume_runtime *rt, char **err);

#endif
