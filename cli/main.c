/* cli/main.c — the `lume` command: the table of commands (`commands`, at
 * the end: one line per command, see cli.h for adding one), `run` and the
 * local commands.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
 * For `lume run`, which a supervisor restarts on failure:
 *   0  a clean stop on SIGINT or SIGTERM;
 *   1  a runtime failure: the event loop failed (core/net/loop.c), the sampler
 *      thread could not start, the store cannot be opened, a script held
 *      the loop past sandbox.hang_limit_ms (sandbox.c ends the process);
 *   2  the configuration (a key, the board, net.*, twin.*) or the command
 *      line is wrong: restarting will not help until someone fixes it.
 * Under systemd (Type=notify) it also speaks the notification protocol
 * (core/base/notify.h): READY=1 once the loop turns, WATCHDOG=1 from the loop,
 * STOPPING=1 when it stops, STATUS= lines; see examples/systemd/. */
#include <errno.h>
#include <malloc.h>
#include <sqlite3.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libwebsockets.h>
#include <lua.h>
#include <mbedtls/version.h>
#include <sqlite3.h>

#include "control.h"
#include "lume.h"
#include "runtime.h"
#include "config.h"
#include "loop.h"
#include "outbox.h"
#include "sampler.h"
#include "cli.h"
#include "log.h"
#include "notify.h"

#define EXIT_RUNTIME 1

static lume_runtime *g_rt;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
    if (g_rt)
        lume_runtime_stop(g_rt);
}

typedef lume_cli_opts opts;

int lume_cli_parse_opts(int argc, char **argv, opts *o, const char *usage, int *first_arg)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"board", required_argument, NULL, 'b'},
        {"store", required_argument, NULL, 's'},  {"scripts", required_argument, NULL, 'S'},
        {"quiet", no_argument, NULL, 'q'},        {"limit", required_argument, NULL, 'n'},
        {"console", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:b:s:S:qn:C:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config = optarg; break;
        case 'b': o->board = optarg; break;
        case 's': o->store = optarg; break;
        case 'S': o->scripts = optarg; break;
        case 'q': o->quiet = true; break;
        case 'n': o->limit = optarg; break;
        case 'C': o->console = optarg; break;
        case 'h': fputs(usage, stdout); return 1;
        default:
            fprintf(stderr, "lume: unknown or incomplete option '%s'\n\n%s", argv[optind - 1],
                    usage);
            return EXIT_USAGE;
        }
    }
    *first_arg = optind;
    return 0;
}

/* Defaults, then the config file (--config or $LUME_CONFIG), then flags. */
int lume_cli_build_config(lume_config *c, const opts *o)
{
    if (lume_config_init(c) < 0) {
        fprintf(stderr, "lume: out of memory\n");
        return EXIT_RUNTIME;
    }
    const char *file = o->config ? o->config : getenv("LUME_CONFIG");
    char *err = NULL;
    int lr = file ? lume_config_load(c, file, &err) : 0;
    if (lr < 0) {
        fprintf(stderr, "lume: %s\n", err);
        free(err);
        lume_config_free(c);
        return lr == -ENOMEM ? EXIT_RUNTIME : EXIT_USAGE; /* memory: not the file's fault */
    }
    struct { const char *key, *val; } flags[] = {
        {"board", o->board}, {"store", o->store}, {"scripts_dir", o->scripts},
        {"console.listen", o->console}};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        if (!flags[i].val)
            continue;
        lume_config_value v = {.kind = LUME_CV_STRING, .str = flags[i].val};
        if (lume_config_set(c, flags[i].key, &v, &err) < 0) {
            fprintf(stderr, "lume: --%s: %s\n", flags[i].key, err);
            free(err);
            lume_config_free(c);
            return EXIT_USAGE;
        }
    }
    if (o->quiet)
        c->status_interval_ms = 0;
    return 0;
}

static const char RUN_USAGE[] =
    "usage: lume run [--config FILE] [--board NAME] [--store DIR] [--scripts DIR] [--quiet]\n"
    "                [--console ADDRESS:PORT]\n"
    "\n"
    "Runs the device runtime: samples the board's sensors, runs every script in\n"
    "the scripts directory in its own sandbox, and keeps outgoing messages in\n"
    "the outbox under the store directory. Prints a status line every second\n"
    "(stdout) and the log (stderr). Stops cleanly on SIGINT or SIGTERM.\n"
    "\n"
    "  --config FILE   a Lua file returning a table (see `lume config`);\n"
    "                  default $LUME_CONFIG, else built-in defaults\n"
    "  --board NAME    board definition boards/NAME.lua (default sim)\n"
    "  --store DIR     outbox, state and control socket (default var)\n"
    "  --scripts DIR   edge scripts (default scripts)\n"
    "  --quiet         no status line\n"
    "  --console ADDRESS:PORT  serve the web console there (127.0.0.1:8080;\n"
    "                  another address needs console.token; docs/console.md)\n"
    "\n"
    "Exit codes: 0 stopped by SIGINT or SIGTERM, 1 runtime failure (the event\n"
    "loop failed, the store cannot be opened, ...), 2 configuration or usage\n"
    "error. Under systemd with Type=notify it reports READY=1, WATCHDOG=1 (when\n"
    "WatchdogSec= is set), STATUS= and STOPPING=1 ($NOTIFY_SOCKET).\n";

/* The first turn of the loop: the runtime is up. */
typedef struct {
    lume_timer   t;
    lume_notify *notify;
    lume_runtime *rt;
} ready_ctx;

static void on_ready(lume_timer *t)
{
    ready_ctx *c = t->ud;
    const lume_config *cfg = lume_runtime_config(c->rt);
    lume_notify_send(c->notify, "READY=1\nSTATUS=running: device %s, board %s, %zu sensors",
                     cfg->device_id, cfg->board, lume_sampler_count(lume_runtime_sampler(c->rt)));
}

static int cmd_run(int argc, char **argv)
{
    opts o = {0};
    int first;
    int r = lume_cli_parse_opts(argc, argv, &o, RUN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first < argc) {
        fprintf(stderr, "lume run: unexpected argument '%s'\n\n%s", argv[first], RUN_USAGE);
        return EXIT_USAGE;
    }
    /* --scripts names the scripts to run: a directory that is not there is
     * a mistake, not a device with no scripts */
    if (o.scripts) {
        struct stat sd;
        const char *why = NULL;
        if (stat(o.scripts, &sd) != 0)
            why = errno == ENOENT || errno == ENOTDIR ? "no such directory" : strerror(errno);
        else if (!S_ISDIR(sd.st_mode))
            why = "not a directory";
        if (why) {
            fprintf(stderr, "lume run: --scripts %s: %s\n", o.scripts, why);
            return EXIT_USAGE;
        }
    }
    lume_config c;
    if ((r = lume_cli_build_config(&c, &o)))
        return r;
    /* lume is this process: its own lines (before and after the runtime's)
     * at the configured level, and, with sampler.cpu, the loop (this
     * thread) off the sampler's CPU — the library does neither for an
     * embedder (lume.h) */
    lume_log_set_level(c.log_level);
    if (c.malloc_arenas > 0) /* before any thread: the process's, not the library's */
        mallopt(M_ARENA_MAX, c.malloc_arenas);
    if (c.sqlite_lean) { /* no connection is open yet */
        sqlite3_shutdown();
        if (sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0) != SQLITE_OK ||
            sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0) != SQLITE_OK)
            lume_log(LUME_LOG_WARN, "lume", "sqlite_lean: SQLite refused the settings");
    }
    if (c.sampler.cpu >= 0)
        lume_thread_avoid_cpu(c.sampler.cpu, NULL); /* else the runtime says why not */
    char *err = NULL;
    lume_notify *notify = lume_notify_open(&err);
    if (err) {
        lume_log(LUME_LOG_WARN, "notify", "%s: not reporting to the service manager", err);
        free(err);
        err = NULL;
    }
    lume_runtime *rt = lume_runtime_new(&c, &err);
    int why = errno;
    lume_config_free(&c);
    if (!rt) {
        fprintf(stderr, "lume: %s\n", err ? err : "cannot start");
        /* a bad board or config is the operator's to fix: usage/config error */
        int code = why == EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
        lume_notify_send(notify, "STATUS=cannot start: %s", err ? err : "?");
        lume_notify_close(notify);
        free(err);
        return code;
    }
    g_rt = rt;
    malloc_trim(0); /* what starting took (config and board states, schema reads) back */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    lume_loop *loop = lume_runtime_loop(rt);
    ready_ctx ready = {.notify = notify, .rt = rt};
    lume_timer_init(&ready.t, loop, on_ready, &ready);
    lume_timer_start(&ready.t, 0);
    if (lume_notify_watchdog_start(notify, loop) == 0)
        lume_log(LUME_LOG_INFO, "notify", "watchdog: pinging the service manager every %lld ms",
                 (long long)(lume_notify_watchdog_usec(notify) / 2000));
    r = lume_runtime_run(rt);
    lume_timer_cancel(&ready.t);
    const char *failure = lume_loop_error(loop);
    if (r < 0) {
        char buf[300];
        if (!failure) {
            snprintf(buf, sizeof buf, "runtime failure: %s", strerror(-r));
            failure = buf;
        }
        lume_log(LUME_LOG_ERROR, "lume", "stopping after a runtime failure (exit %d): %s",
                 EXIT_RUNTIME, failure);
        lume_notify_send(notify, "STOPPING=1\nSTATUS=failed: %s\nERRNO=%d", failure, -r);
    } else {
        int sig = g_signal;
        lume_log(LUME_LOG_INFO, "lume", "stopping (%s)", sig ? strsignal(sig) : "stopped");
        lume_notify_send(notify, "STOPPING=1\nSTATUS=stopping on %s",
                         sig ? strsignal(sig) : "request");
    }
    /* the watchdog's timer lives on the loop: gone before the loop is */
    lume_notify_close(notify);
    g_rt = NULL;
    lume_runtime_free(rt);
    return r < 0 ? EXIT_RUNTIME : 0;
}

static const char RELOAD_USAGE[] =
    "usage: lume reload [SCRIPT] [--config FILE] [--store DIR]\n"
    "\n"
    "Asks the lume running on this store to reload SCRIPT (its file name\n"
    "without .lua), or every script. The new version replaces the old one only\n"
    "if it loads and its top level runs; otherwise the old one keeps running\n"
    "and the error is printed. A script the twin manages is not reloaded from\n"
    "a file: naming one is refused, and reloading every script leaves those\n"
    "alone (push a new version through the twin instead). Exit 0 when\n"
    "reloaded, 1 when not (or no lume runs on this store).\n";

static int cmd_reload(int argc, char **argv)
{
    opts o = {0};
    int first;
    int r = lume_cli_parse_opts(argc, argv, &o, RELOAD_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (argc - first > 1) {
        fprintf(stderr, "lume reload: at most one script name\n\n%s", RELOAD_USAGE);
        return EXIT_USAGE;
    }
    lume_config c;
    if ((r = lume_cli_build_config(&c, &o)))
        return r;
    char sock[4200], line[300];
    snprintf(sock, sizeof sock, "%s/lume.sock", c.store);
    snprintf(line, sizeof line, "reload%s%s", first < argc ? " " : "",
             first < argc ? argv[first] : "");
    lume_config_free(&c);
    return lume_control_request(sock, line);
}

static const char STATS_USAGE[] =
    "usage: lume stats [--config FILE] [--store DIR]\n"
    "\n"
    "Prints, as one JSON object, what the lume running on this store measures:\n"
    "per sensor its rate, samples, overruns, ring drops, read errors and\n"
    "lateness percentiles; per script its status, version, errors, CPU-budget\n"
    "overruns and memory; the outbox lanes; the process RSS and uptime.\n";

static int cmd_stats(int argc, char **argv)
{
    opts o = {0};
    int first;
    int r = lume_cli_parse_opts(argc, argv, &o, STATS_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    lume_config c;
    if ((r = lume_cli_build_config(&c, &o)))
        return r;
    char sock[4200];
    snprintf(sock, sizeof sock, "%s/lume.sock", c.store);
    lume_config_free(&c);
    return lume_control_request(sock, "stats");
}

static const char OUTBOX_USAGE[] =
    "usage: lume outbox stats|dump [--config FILE] [--store DIR] [--limit N]\n"
    "\n"
    "  stats   messages waiting per lane, bytes, in flight\n"
    "  dump    the waiting messages in send order: id lane qos topic payload\n"
    "          (at most N with --limit; payloads shown up to 200 bytes)\n"
    "Reads the store's outbox.db; works while lume runs.\n";

static int dump_one(void *ud, const lume_outbox_msg *m)
{
    long *left = ud;
    if (*left == 0)
        return 1;
    if (*left > 0)
        (*left)--;
    printf("%llu %s qos%d %s ", (unsigned long long)m->id, lume_lane_name(m->lane), m->qos,
           m->topic);
    size_t n = m->len > 200 ? 200 : m->len;
    const unsigned char *p = m->payload;
    for (size_t i = 0; i < n; i++)
        putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
    if (m->len > n)
        printf("... (%zu bytes)", m->len);
    putchar('\n');
    return 0;
}

static int cmd_outbox(int argc, char **argv)
{
    opts o = {0};
    int first;
    int r = lume_cli_parse_opts(argc, argv, &o, OUTBOX_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first >= argc || (strcmp(argv[first], "stats") && strcmp(argv[first], "dump"))) {
        fprintf(stderr, "lume outbox: say stats or dump\n\n%s", OUTBOX_USAGE);
        return EXIT_USAGE;
    }
    long limit = -1;
    if (o.limit) {
        char *end;
        limit = strtol(o.limit, &end, 10);
        if (*end || limit < 0) {
            fprintf(stderr, "lume outbox: --limit: expected a number >= 0, got '%s'\n", o.limit);
            return EXIT_USAGE;
        }
    }
    lume_config c;
    if ((r = lume_cli_build_config(&c, &o)))
        return r;
    char path[4200];
    snprintf(path, sizeof path, "%s/outbox.db", c.store);
    lume_config_free(&c);
    char *err = NULL;
    lume_outbox *ob = lume_outbox_open_readonly(path, &err);
    if (!ob) {
        fprintf(stderr, "lume outbox: %s\n", err ? err : path);
        free(err);
        return EXIT_RUNTIME;
    }
    if (!strcmp(argv[first], "stats")) {
        lume_outbox_stats st;
        lume_outbox_get_stats(ob, &st);
        /* dropped, refused, expired: since the file was created */
        printf("%-10s %10s %12s %10s %10s %10s\n", "lane", "messages", "bytes", "dropped",
               "refused", "expired");
        uint64_t t[5] = {0};
        for (int l = 0; l < LUME_LANES; l++) {
            uint64_t v[5] = {st.depth[l], st.bytes[l], st.dropped[l], st.refused[l],
                             st.expired[l]};
            printf("%-10s %10llu %12llu %10llu %10llu %10llu\n", lume_lane_name(l),
                   (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
                   (unsigned long long)v[3], (unsigned long long)v[4]);
            for (int k = 0; k < 5; k++)
                t[k] += v[k];
        }
        printf("%-10s %10llu %12llu %10llu %10llu %10llu\n", "total", (unsigned long long)t[0],
               (unsigned long long)t[1], (unsigned long long)t[2], (unsigned long long)t[3],
               (unsigned long long)t[4]);
        printf("in flight  %10llu\n", (unsigned long long)st.inflight);
        printf("on disk    %10llu bytes (outbox.db and its WAL)\n",
               (unsigned long long)st.file_bytes);
    } else {
        r = lume_outbox_dump(ob, dump_one, &limit);
        if (r < 0) {
            fprintf(stderr, "lume outbox: dump failed: %s\n", strerror(-r));
            lume_outbox_close(ob);
            return EXIT_RUNTIME;
        }
    }
    lume_outbox_close(ob);
    return 0;
}

static int cmd_config(int argc, char **argv)
{
    (void)argc, (void)argv;
    printf("Configuration keys (a Lua file returning a table, nested by section):\n\n");
    for (size_t i = 0; lume_config_field_at(i); i++) {
        const lume_config_field *f = lume_config_field_at(i);
        printf("  %-28s default %-12s %s\n", f->key, f->dflt, f->doc);
    }
    printf("\nExample:\n  return { device_id = \"pump-7\", board = \"sim\",\n"
           "           sandbox = { memory_limit = \"2MiB\", cpu_budget_ms = 20 } }\n");
    printf("\nRelative paths in a config file are relative to the file's folder.\n"
           "DATADIR: %s (built in: %s; $LUME_DATADIR overrides it)\n", lume_datadir(),
           lume_datadir_builtin());
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    (void)argc, (void)argv;
    char mbed[32];
    mbedtls_version_get_string(mbed);
    printf("lume %s (%s, libwebsockets %s, SQLite %s, mbed TLS %s)\n", LUME_VERSION,
           LUA_RELEASE, lws_get_library_version(), sqlite3_libversion(), mbed);
    return 0;
}

/* The commands: one line each, in the order `lume help` lists them. A new
 * command is one new file (cli/NAME.c defining lume_cmd_NAME, declared in
 * cli.h) and one line here. */
struct command {
    const char *name;
    const char *synopsis; /* after the name, in `lume help` */
    const char *summary;
    int (*fn)(int argc, char **argv); /* argv[0] is the command's name */
};
static const struct command commands[] = {
    {"run", "[--config FILE] [--board NAME]", "run the device runtime", cmd_run},
    {"reload", "[SCRIPT]", "reload one script (or all) in a running lume", cmd_reload},
    {"repl", "[--config FILE]", "a Lua prompt on the running lume (or a new one)", lume_cmd_repl},
    {"outbox", "stats|dump", "inspect the outbox of a store", cmd_outbox},
    {"stats", "", "what a running lume measures, as JSON", cmd_stats},
    {"config", "", "list every configuration key", cmd_config},
    {"keygen", "[--out PREFIX]", "a P-256 key pair for signing bundles, its key id",
     lume_cmd_keygen},
    {"sign", "FILE --key KEY --name N ...", "a signed bundle of a script (JSON)", lume_cmd_sign},
    {"push", "--device ID|--group G FILE.lua", "push a script through the twin", lume_cmd_push},
    {"twin", "get|set|drift|schema", "read or change a device's twin", lume_cmd_twin},
    {"fleet", "status [--group G]", "which devices run what", lume_cmd_fleet},
    {"rollout", "SCRIPT --rings R1,R2 ...", "ring by ring, with health gates", lume_cmd_rollout},
    {"logs", "--device ID [--follow]", "a device's remote log lines (--since WHEN)",
     lume_cmd_logs},
    {"provision", "--config FILE", "register with Azure DPS, print the assignment",
     lume_cmd_provision},
    {"version", "", "print lume's and its libraries' versions", cmd_version},
    {"verify", "--key K [--topic T] FILE|-", "check signed messages (net.sign)", lume_cmd_verify},
    {"test", "SPEC... [-- BUSTED_ARGS]", "run busted specs of your rules, simulated clock", lume_cmd_test},
    {"record", "--board B --for 60s FILE", "capture a sensor trace for lume test", lume_cmd_record},
};

/* Families of sub-commands: a table each (the same struct; fn gets argv
 * from the family's name, argv[1] the sub-command). `lume help` lists the
 * sub-commands instead of the family; main.c refuses a sub-command not in
 * the table. A new sub-command of a family is one line in its table.
 *
 * --help at every level is main.c's: `lume CMD [SUB] ... --help` (or -h)
 * calls the command with argv {CMD, [SUB,] "--help"}, which prints its
 * usage on stdout; a family asked without a sub-command prints its table;
 * a command that parses no options has its usage in `helps`. */
static const struct command outbox_subs[] = {
    {"stats", "[--store DIR]", "messages waiting per lane, bytes, in flight", cmd_outbox},
    {"dump", "[--store DIR] [--limit N]", "the waiting messages in send order", cmd_outbox},
    {NULL, NULL, NULL, NULL}};
static const struct command twin_subs[] = {
    {"get", "--device ID|--group G", "the desired layers and what the device reported",
     lume_cmd_twin},
    {"set", "--device ID|--group G JSON|PATH=VALUE ...", "merge a change into the desired document",
     lume_cmd_twin},
    {"drift", "--device ID [--json]", "what is desired against what runs; exit 1 on any",
     lume_cmd_twin},
    {"schema", "", "the schema of lume's own desired keys", lume_cmd_twin},
    {NULL, NULL, NULL, NULL}};
static const struct command fleet_subs[] = {
    {"status", "[--group G] [--json]", "devices by version and status, failures, who is silent",
     lume_cmd_fleet},
    {NULL, NULL, NULL, NULL}};
static const struct {
    const char *name;
    const struct command *subs;
} families[] = {{"outbox", outbox_subs}, {"twin", twin_subs}, {"fleet", fleet_subs}};
static const struct {
    const char *name, *usage;
} helps[] = {
    {"config", "usage: lume config\n\nLists every configuration key with its default and "
               "meaning, and\nthe data directory lume finds boards, stdlib and scripts in.\n"},
    {"version", "usage: lume version   (or lume --version)\n\nPrints lume's version and its "
                "libraries' (Lua, libwebsockets, SQLite, mbed TLS).\n"},
};

static const struct command *subs_of(const struct command *c)
{
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        if (!strcmp(c->name, families[i].name))
            return families[i].subs;
    return NULL;
}

static const char *own_help(const struct command *c)
{
    for (size_t i = 0; i < sizeof helps / sizeof *helps; i++)
        if (!strcmp(c->name, helps[i].name))
            return helps[i].usage;
    return NULL;
}

static void usage_main(FILE *f)
{
    fputs("lume " LUME_VERSION " — a scriptable, embeddable IoT device runtime\n"
          "\n"
          "usage: lume <command> [options]\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        const struct command *c = &commands[i];
        for (const struct command *s = subs_of(c); s && s->name; s++) { /* one line each */
            char head[128];
            snprintf(head, sizeof head, "%s %s %s", c->name, s->name, s->synopsis);
            fprintf(f, "  %-36s %s\n", head, s->summary);
        }
        if (subs_of(c))
            continue;
        char head[128];
        snprintf(head, sizeof head, "%s%s%s", c->name, *c->synopsis ? " " : "", c->synopsis);
        fprintf(f, "  %-36s %s\n", head, c->summary);
    }
    fputs("\n"
          "`lume COMMAND [SUBCOMMAND] --help` describes each command.\n"
          "exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error\n",
          f);
}

/* A family's table: `lume twin`, `lume twin --help`, `lume twin bogus`. */
static void usage_family(FILE *f, const struct command *c)
{
    fprintf(f, "usage: lume %s <subcommand> [options]\n\n%s\n\nsubcommands:\n", c->name,
            c->summary);
    for (const struct command *s = subs_of(c); s->name; s++) {
        char head[128];
        snprintf(head, sizeof head, "%s %s", s->name, s->synopsis);
        fprintf(f, "  %-40s %s\n", head, s->summary);
    }
    fprintf(f, "\n`lume %s SUBCOMMAND --help` describes each.\n", c->name);
}

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* `lume CMD [SUB] ... --help`: the usage of CMD (or SUB) on stdout, exit 0. */
static int help_of(const struct command *c, int argc, char **argv)
{
    const struct command *sub = NULL, *subs = subs_of(c);
    for (const struct command *s = subs; s && s->name && argc > 2; s++)
        if (!strcmp(argv[2], s->name))
            sub = s;
    if (subs && !sub) {
        usage_family(stdout, c);
        return 0;
    }
    if (own_help(c)) {
        fputs(own_help(c), stdout);
        return 0;
    }
    char *av[] = {argv[1], sub ? argv[2] : (char *)"--help", (char *)"--help", NULL};
    return (sub ? sub->fn : c->fn)(sub ? 3 : 2, av);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || is_help(cmd)) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version"))
        return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        const struct command *c = &commands[i];
        if (strcmp(cmd, c->name))
            continue;
        for (int a = 2; a < argc && strcmp(argv[a], "--"); a++)
            if (is_help(argv[a]))
                return help_of(c, argc, argv);
        if (subs_of(c)) {
            const struct command *s = subs_of(c);
            while (s->name && (argc < 3 || strcmp(argv[2], s->name)))
                s++;
            if (!s->name) {
                if (argc < 3)
                    fprintf(stderr, "lume %s: which one?\n\n", cmd);
                else
                    fprintf(stderr, "lume %s: unknown subcommand '%s'\n\n", cmd, argv[2]);
                usage_family(stderr, c);
                return EXIT_USAGE;
            }
            return s->fn(argc - 1, argv + 1);
        }
        return c->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "lume: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return EXIT_USAGE;
}
