/* cli/record.c — capturing a sensor trace from a board, for the rule test
 * harness (stdlib/lume/test.lua, docs/testing-rules.md):
 *
 *   lume record [--board B | --config FILE] --for DURATION FILE|-
 *
 * Runs the board's sensors, each at its configured rate, through lume's own
 * sampler (a runtime with no scripts, no network, a store of its own in a
 * temporary folder), and writes every reading as it reaches the loop:
 *   t,sensor,value          (FILE.csv, or -: CSV with that header line)
 *   {"t":..,"sensor":..,"value":..}   (FILE.jsonl or FILE.json: JSON lines)
 * t is the wall-clock time the reading was taken, in seconds with
 * microseconds. Readings that failed are not written (counted, and the
 * log says why). */
#include "cli.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lume.h"
#include "runtime.h"
#include "log.h"

static const char RECORD_USAGE[] =
    "usage: lume record [--board NAME | --config FILE] --for DURATION FILE|-\n\n"
    "Samples the board's sensors at their configured rates for DURATION\n"
    "(\"60s\", \"5m\", \"1h\", or seconds) and writes every reading to FILE as a\n"
    "trace the rule test harness reads (docs/testing-rules.md): CSV\n"
    "`t,sensor,value` (FILE ending .jsonl or .json: JSON lines). t is when the\n"
    "reading was taken, wall-clock seconds. No scripts run and nothing is\n"
    "sent; lume record keeps its own store in a temporary folder, so it can\n"
    "run next to a lume on the same board only if the board's drivers can be\n"
    "shared. Stops early, keeping what it wrote, on SIGINT or SIGTERM.\n\n"
    "  --board NAME    board definition (default: the config's, else sim)\n"
    "  --config FILE   take board, boards_dir and sampler settings from it\n"
    "  --for DURATION  how long to record\n";

typedef struct rec {
    FILE    *out;
    bool     json;
    uint64_t n;
} rec;

static volatile sig_atomic_t g_stop;
static lume_runtime *g_rt;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_rt)
        lume_runtime_stop(g_rt);
}

static void tap(void *ud, const char *sensor, const lume_sample *smp)
{
    rec *r = ud;
    double t = (double)smp->wall_ns / 1e9;
    if (!isfinite(smp->value))
        return; /* not a number a trace can hold */
    if (r->json)
        fprintf(r->out, "{\"t\":%.6f,\"sensor\":\"%s\",\"value\":%.17g}\n", t, sensor,
                smp->value);
    else
        fprintf(r->out, "%.6f,%s,%.17g\n", t, sensor, smp->value);
    r->n++;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    remove(path);
    return 0;
}

/* "90", "90s", "5m", "1h", "250ms" -> ms; -1 when not a duration. */
static long long duration_ms(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v))
        return -1;
    double mul = !strcmp(end, "") || !strcmp(end, "s") ? 1000 : !strcmp(end, "ms") ? 1
               : !strcmp(end, "m") ? 60000 : !strcmp(end, "h") ? 3600000 : -1;
    if (mul < 0 || v * mul > 7 * 86400000.0)
        return -1;
    return (long long)(v * mul + 0.5);
}

int lume_cmd_record(int argc, char **argv)
{
    static const struct option longopts[] = {{"board", required_argument, NULL, 'b'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"for", required_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    lume_cli_opts o = {0};
    const char *dur = NULL;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "b:c:f:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b': o.board = optarg; break;
        case 'c': o.config = optarg; break;
        case 'f': dur = optarg; break;
        case 'h': fputs(RECORD_USAGE, stdout); return 0;
        default:
            fprintf(stderr, "lume record: unknown or incomplete option '%s'\n\n%s",
                    argv[optind - 1], RECORD_USAGE);
            return EXIT_USAGE;
        }
    }
    long long ms = dur ? duration_ms(dur) : -1;
    if (!dur || ms < 0 || optind != argc - 1) {
        if (dur && ms < 0)
            fprintf(stderr, "lume record: --for: expected a duration like 60s, 5m or 1h (at "
                    "most a week), got '%s'\n", dur);
        else
            fprintf(stderr, "lume record: give --for DURATION and one FILE (or - for stdout)\n\n%s",
                    RECORD_USAGE);
        return EXIT_USAGE;
    }
    const char *file = argv[optind];
    size_t fl = strlen(file);
    rec r = {.json = (fl > 6 && !strcmp(file + fl - 6, ".jsonl")) ||
                     (fl > 5 && !strcmp(file + fl - 5, ".json"))};

    const char *td = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/lume-record.XXXXXX", td && *td && strlen(td) < 400 ? td : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "lume record: cannot make a temporary folder: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    char store[600], scripts[600];
    snprintf(store, sizeof store, "%s/var", dir);
    snprintf(scripts, sizeof scripts, "%s/scripts", dir);
    int rc = EXIT_FAIL;
    lume_runtime *rt = NULL;
    lume_config c;
    bool have_cfg = false;
    if (mkdir(scripts, 0700) != 0) {
        fprintf(stderr, "lume record: %s: %s\n", scripts, strerror(errno));
        goto out;
    }
    if ((rc = lume_cli_build_config(&c, &o)) != 0)
        goto out;
    have_cfg = true;
    rc = EXIT_USAGE;
    /* the board's sampler and nothing else: no scripts, no network, no
     * twin, no console, a store of our own */
    lume_config_value none = {.kind = LUME_CV_STRING};
    struct { const char *key, *val; } set[] = {{"store", store}, {"scripts_dir", scripts}};
    char *err = NULL;
    for (size_t i = 0; i < 2; i++) {
        none.str = set[i].val;
        if (lume_config_set(&c, set[i].key, &none, &err) < 0) {
            fprintf(stderr, "lume record: %s\n", err ? err : set[i].key);
            free(err);
            goto out;
        }
    }
    free(c.net.url);
    c.net.url = NULL;
    free(c.net.dps.id_scope);
    c.net.dps.id_scope = NULL;
    free(c.console.listen);
    c.console.listen = NULL;
    c.status_interval_ms = 0;
    c.watch_scripts = false;
    if (c.log_level < LUME_LOG_WARN)
        c.log_level = LUME_LOG_WARN; /* the trace may be on stdout: only what is wrong */
    rt = lume_runtime_new(&c, &err);
    if (!rt) {
        int why = errno;
        fprintf(stderr, "lume record: %s\n", err ? err : "cannot start");
        free(err);
        rc = why == EINVAL ? EXIT_USAGE : EXIT_FAIL;
        goto out;
    }
    /* the file only once the board is up: a wrong board leaves no file */
    r.out = strcmp(file, "-") ? fopen(file, "w") : stdout;
    if (!r.out) {
        fprintf(stderr, "lume record: %s: %s\n", file, strerror(errno));
        rc = EXIT_FAIL;
        goto out;
    }
    if (!r.json)
        fputs("t,sensor,value\n", r.out);
    rt->sample_tap = tap;
    rt->sample_tap_ud = &r;
    g_rt = rt;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "lume record: board %s, %zu sensors, for %s, to %s\n", c.board,
            lume_sampler_count(lume_runtime_sampler(rt)), dur, file);
    for (long long left = ms; left > 0 && !g_stop; left -= 1000)
        lume_runtime_run_for(rt, (int)(left > 1000 ? 1000 : left));
    g_rt = NULL;
    rc = 0;
    if (fflush(r.out) != 0 || ferror(r.out)) {
        fprintf(stderr, "lume record: writing %s: %s\n", file, strerror(errno));
        rc = EXIT_FAIL;
    }
    fprintf(stderr, "lume record: %llu readings%s\n", (unsigned long long)r.n,
            g_stop ? " (stopped early)" : "");
out:
    if (rt)
        lume_runtime_free(rt);
    if (r.out && r.out != stdout)
        fclose(r.out);
    if (have_cfg)
        lume_config_free(&c);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); /* our temporary folder */
    return rc;
}
