/* cli/cli.h — the `lume` command. main.c holds the table of commands; each
 * command (or family of commands) is one file:
 *
 *   main.c    the table, `run` and the local commands (reload, stats,
 *             outbox, config, version)
 *   sign.c    keygen, sign, and the bundle builder push shares
 *   push.c    push
 *   twin.c    twin get|set|drift
 *   fleet.c   fleet status
 *   logs.c    logs: a device's remote log lines
 *   ops.c     what the operator commands share: their options, the
 *             short-lived broker client (the config's session options, the
 *             dialect's operator topics), the desired documents
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

/* ---- the commands: argv[0] is the command's name ---------------------------- */

int lume_cmd_keygen(int argc, char **argv); /* sign.c */
int lume_cmd_sign(int argc, char **argv);   /* sign.c */
int lume_cmd_push(int argc, char **argv);   /* push.c */
int lume_cmd_twin(int argc, char **argv);   /* twin.c */
int lume_cmd_fleet(int argc, char **argv);  /* fleet.c */
int lume_cmd_repl(int argc, char **argv);   /* repl.c */
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
    /* every message as it arrives (set after lume_ops_connect), besides the
     * latest one per topic kept in msgs: a stream (lume logs --follow) */
    void       (*on_msg)(void *ud, const char *topic, const char *payload, size_t len);
    void        *on_msg_ud;
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
/* The current document of a desired topic (an empty object when none). */
cJSON *lume_ops_current_doc(lume_ops_client *c, const char *topic);
/* Bump doc's $version and publish it retained; says so on stdout. 0, or
 * EXIT_FAIL when the broker did not acknowledge it. */
int   lume_ops_publish_doc(lume_ops_client *c, const char *topic, cJSON *doc);

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
