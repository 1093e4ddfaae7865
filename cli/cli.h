/* cli/cli.h — the `lume` command. main.c holds the table of commands; each
 * command (or family of commands) is one file:
 *
 *   main.c    the table, `run` and the local commands (reload, stats,
 *             outbox, config, version)
 *   sign.c    keygen, sign, and the bundle builder push shares
 *   push.c    push
 *   twin.c    twin get|set|drift
 *   fleet.c   fleet status
 *   rollout.c rollout: ring by ring with health gates, a resumable state file
 *   devices.c what the devices report (reported, status, heartbeat), read in
 *             one burst; the outcome of a push per device (push --wait,
 *             rollout, fleet status)
 *   logs.c    logs: a device's remote log lines
 *   ops.c     what the operator commands share: their options, the
 *             short-lived broker client (the config's session options, the
 *             dialect's operator topics), the desired documents
 *   verify.c  verify: signed messages a subscriber captured (net.sign)
 *   test.c    test: busted specs on the rule test harness (lume.test)
 *   record.c  record: a sensor trace from a board, for the harness
 *
 * Adding a command is one new file defining `int lume_cmd_NAME(int argc,
 * char **argv)` (argv[0] is the command's name), its prototype below and
 * one line in the table in main.c.
 * Exit codes everywhere: 0 ok, 1 runtime failure, 2 usage or configuration. */
#ifndef LUME_CLI_H
#define LUME_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "config.h"
#include "loop.h"
#include "mqtt.h"
#include "outbox.h"

#define EXIT_USAGE 2
#define EXIT_FAIL  1
#define EXIT_NO_ANSWER 3  /* push --wait: only devices that did not answer in time */

/* ---- the commands: argv[0] is the command's name ---------------------------- */

int lume_cmd_keygen(int argc, char **argv); /* sign.c */
int lume_cmd_sign(int argc, char **argv);   /* sign.c */
int lume_cmd_push(int argc, char **argv);   /* push.c */
int lume_cmd_twin(int argc, char **argv);   /* twin.c */
int lume_cmd_fleet(int argc, char **argv);  /* fleet.c */
int lume_cmd_repl(int argc, char **argv);   /* repl.c */
int lume_cmd_rollout(int argc, char **argv); /* rollout.c */
int lume_cmd_verify(int argc, char **argv); /* verify.c */
int lume_cmd_record(int argc, char **argv); /* record.c */
int lume_cmd_test(int argc, char **argv);   /* test.c */
int lume_cmd_logs(int argc, char **argv);   /* logs.c */

/* ---- main.c: the options of the local commands (run, reload, stats, repl) ---- */
typedef struct lume_cli_opts {
    const char *config;
    const char *board;
    const char *store;
    const char *scripts;
    bool        quiet;
    const char *limit;
    const char *console;   /* --console ADDRESS:PORT (lume run) */
} lume_cli_opts;
/* getopt_long over --config --board --store --scripts --quiet --limit
 * --console --help; *first_arg the first operand. 0; 1 when --help printed usage;
 * EXIT_USAGE with the reason on stderr. */
int lume_cli_parse_opts(int argc, char **argv, lume_cli_opts *o, const char *usage,
                        int *first_arg);
/* Defaults, then the config file (--config or $LUME_CONFIG), then flags.
 * 0, or the exit code with the reason on stderr. */
int lume_cli_build_config(lume_config *c, const lume_cli_opts *o);

/* ---- ops.c: what the operator commands share -------------------------------- */

/* Every operator command's options (lume_ops_parse). */
typedef struct lume_ops_opts {
    const char *config, *broker, *device, *group, *name, *version, *key, *out, *url, *target;
    const char *dialect;  /* push: --dialect, over --config's net.dialect */
    int         soak;
    uint64_t    seq;      /* 0: not given */
    bool        json, rollback, manifest;
    /* push --wait, rollout */
    bool        wait, unsigned_ok, resume;  /* --wait, --unsigned, --resume */
    int         timeout_s;                  /* --timeout S; -1: not given */
    int         bake_s;                     /* --bake S; -1: not given */
    const char *rings, *gate, *state;       /* --rings R1,R2 --gate G --state FILE */
    bool        dry_run, force;  /* twin set: --dry-run, --force (no schema check) */
} lume_ops_opts;

/* The retained messages a client gathered (lume_ops_collect), by topic. */
typedef struct lume_ops_msg {
    char       *topic;
    char       *payload;
    size_t      len;
    struct lume_ops_msg *next;
} lume_ops_msg;

typedef struct lume_ops_client {
    lume_loop   *loop;
    lume_outbox *ob;
    lume_mqtt   *m;
    char         dir[64];
    lume_ops_msg         *msgs;
    int64_t      last_msg_ms;
    bool         connected;
    lume_config  cfg;            /* net.dialect says where documents live */
    bool         have_cfg;
    /* when set, every message goes here first as it arrives: what it takes
     * (true) does not go into msgs (devices.c keeps its own index); false
     * keeps it there as usual (a stream: lume logs --follow) */
    bool       (*tap)(void *ud, const char *topic, const char *payload, size_t len);
    void        *tap_ud;
    const lume_ops_opts *opts;   /* what it was connected for (--device, --group) */
    int64_t      held_version;   /* lume_ops_current_doc: the highest $version a device
                                    reports holding for the target's layer, or -1 */
} lume_ops_client;

/* Parse argv (getopt_long, from argv[1]) into o and check --device and
 * --group by the config's own rules; *first is the first operand.
 * 0; 1 when --help printed usage (exit 0); EXIT_USAGE with the reason on
 * stderr. */
int   lume_ops_parse(int argc, char **argv, lume_ops_opts *o, const char *usage, int *first);
/* The whole file, NUL-terminated (malloc'd), its length in *len; NULL with
 * errno. */
char *lume_ops_read_file(const char *path, size_t *len);

/* A short-lived broker client: the broker of --broker or net.url, every
 * net.* setting of --config mapped as `lume run` maps them, its own client
 * id and a clean session. 0, or an exit code with the reason on stderr;
 * lume_ops_close(c) in both cases. */
int   lume_ops_connect(lume_ops_client *c, const lume_ops_opts *o);
/* Subscribe and gather retained messages until quiet_ms pass without one
 * (at most max_ms). */
void  lume_ops_collect(lume_ops_client *c, const char *const *filters, size_t n, int quiet_ms,
                       int max_ms);
/* The latest message gathered on topic, or NULL. */
const lume_ops_msg *lume_ops_get(lume_ops_client *c, const char *topic);
void  lume_ops_close(lume_ops_client *c);

/* The desired document's topic of --device or --group (the dialect's). */
void  lume_ops_target_topic(const lume_ops_client *c, const lume_ops_opts *o, char *buf,
                            size_t n);
/* The current document of a desired topic (an empty object when none).
 * For the target of --device or --group, its $version is raised to the
 * highest the devices report holding for that layer (c->held_version), so
 * the next $version is above both even after a broker lost its retained
 * documents. */
cJSON *lume_ops_current_doc(lume_ops_client *c, const char *topic);
/* Would publishing `after` on topic (the --device layer) remove bundles the
 * device runs from the twin, because the broker's document is older than
 * the one the device holds (lost retained state)? Names them on stderr for
 * `cmd`; true: publish nothing without --force. */
bool lume_ops_lost_bundles(lume_ops_client *c, const lume_ops_opts *o, const char *topic,
                           const cJSON *after, const char *cmd);
/* Bump doc's $version and publish it retained; says so on stdout. 0, or
 * EXIT_FAIL when the broker did not acknowledge it. */
int   lume_ops_publish_doc(lume_ops_client *c, const char *topic, cJSON *doc);

/* ---- devices.c: what the devices report, for push --wait, rollout, fleet ---- */

/* One device as its retained documents tell it. */
typedef struct lume_ops_device {
    char  *id;
    cJSON *reported;   /* the reported document, or NULL (none yet) */
    cJSON *health;     /* the latest heartbeat, or NULL */
    char   status[16]; /* "online", "offline", or "" (never said) */
    double status_at;  /* when this client saw the status change (0: in the burst) */
    int    outcome;    /* lume_ops_outcome_of, for the push waited for */
    char  *reason;     /* why, for a failure */
    char  *prev;       /* what it ran before (rollout), or NULL */
} lume_ops_device;

typedef struct lume_ops_fleet {
    lume_ops_device *v;
    size_t           n, cap;
    const char      *group, *device;  /* the selection (NULL: any) */
    size_t          *index;           /* hash of ids into v */
    size_t           nindex;
    char             sync[96];        /* the sentinel topic */
    bool             synced;
    int64_t          last_ms;         /* the last message of the burst (mono) */
    lume_ops_client *c;
    char             filters[3][256];
    size_t           nfilters;
} lume_ops_fleet;

/* Read the retained reported, status and health documents of every device
 * (or only device, or only the members of group: those whose reported
 * lume.groups lists it) in one burst: one subscription per kind and a
 * sentinel topic of this client, published after them; the burst has ended
 * when the sentinel comes back (a broker delivers what a SUBSCRIBE retained
 * before a later PUBLISH), or after 1 s without a message when it does not
 * come back (a broker's ACL), or after max_ms. The subscriptions stay: the
 * documents keep updating while the loop turns (lume_ops_fleet_turn).
 * 0, or EXIT_FAIL said on stderr (this dialect keeps no such topics). */
int   lume_ops_fleet_read(lume_ops_client *c, lume_ops_fleet *f, const char *group,
                          const char *device, int max_ms);
/* Turn the loop for up to ms, taking updates. */
void  lume_ops_fleet_turn(lume_ops_fleet *f, int ms);
void  lume_ops_fleet_free(lume_ops_fleet *f);
/* The device of that id (added, with no documents, when absent); NULL on OOM. */
lume_ops_device *lume_ops_fleet_device(lume_ops_fleet *f, const char *id);
/* Whether the device is selected (group member / the device). */
bool  lume_ops_selected(const lume_ops_fleet *f, const lume_ops_device *d);
/* The time of its latest heartbeat (its own clock), or 0. */
double lume_ops_last_heard(const lume_ops_device *d);

enum { LUME_OUT_PENDING, LUME_OUT_ACTIVE, LUME_OUT_ROLLED_BACK, LUME_OUT_REJECTED,
       LUME_OUT_NO_ANSWER };
const char *lume_ops_outcome_name(int outcome);
/* What d says about bundle `version` of `name`, published as $version
 * layer_version of its layer ("group:G" or "device"): PENDING until the
 * device has applied that document (reported desired_versions) and settled
 * (not soaking or fetching); *why (malloc'd, or NULL) for a failure. */
int   lume_ops_outcome_of(const lume_ops_device *d, const char *layer, double layer_version,
                          const char *name, const char *version, char **why);
/* Wait up to timeout_s for every selected device's outcome (devices not
 * settled by then: NO_ANSWER, with whether they are offline); a count on
 * stderr as it changes (rewritten in place on a tty). Sets d->outcome and
 * d->reason; the number of devices not ACTIVE. */
size_t lume_ops_wait(lume_ops_fleet *f, const char *layer, double layer_version,
                     const char *name, const char *version, int timeout_s);
/* The exit code of a wait (push.c): 0 every selected device ACTIVE,
 * EXIT_FAIL any ROLLED_BACK or REJECTED, else EXIT_NO_ANSWER. */
int   lume_ops_outcome_exit(const lume_ops_fleet *f);
/* One line per selected device: "ID OUTCOME [REASON]", sorted by id. */
void  lume_ops_print_outcomes(const lume_ops_fleet *f, FILE *out);
/* Devices that only accept signed bundles (reported lume.trust.signed_only),
 * and, given key_id, those that do not trust it; as a list in buf
 * ("a, b and 3 more"). The number of such devices. */
size_t lume_ops_unsigned_refusers(const lume_ops_fleet *f, const char *key_id, char *buf,
                                  size_t cap);

/* ---- sign.c: bundles, for sign and push ------------------------------------- */

/* The bundle without its manifest fields: version, source (inline up to
 * 4 KB, else chunks of 4000 bytes) or url, sha256. */
cJSON *lume_ops_bundle_body(const lume_ops_opts *o, const char *src, size_t len,
                            const char *hex, const char *version);
/* --target T, or dflt: "any" means no target. */
const char *lume_ops_target_of(const lume_ops_opts *o, const char *dflt);
/* Sign the manifest of bundle with o->key and add the manifest fields and
 * sig to it. 0, or EXIT_FAIL with the reason on stderr. */
int   lume_ops_sign_bundle(const char *cmd, const lume_ops_opts *o, const char *name,
                           uint64_t seq, const char *target, cJSON *bundle);
/* A default seq: the time in ms. */
uint64_t lume_ops_now_seq(void);

/* provision.c — Azure DPS registration by hand */
int lume_cmd_provision(int argc, char **argv);

#endif
