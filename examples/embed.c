/* examples/embed.c — lume inside your own program.
 *
 * An OEM product links liblume and drives the runtime from its own main,
 * through lume.h alone: here, three half-second slices of the loop (your
 * program would do its own work between them, or call lume_runtime_run and
 * stop it from a signal handler), the status line after each, and the
 * measurements as JSON at the end. lume's log lines go through our own sink
 * (a product would hand them to its logger), prefixed "log: " on stderr.
 *
 *   cc -Ibindings examples/embed.c -Lbuild -llume -Wl,-rpath,$PWD/build -o embed
 *   ./embed [CONFIG.lua]          (`make` builds it as build/examples/embed)
 */
#include <stdio.h>

#include "lume.h"

static void on_log(void *ud, int level, const char *component, const char *msg)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf((FILE *)ud, "log: %s %s: %s\n",
            level >= LUME_LOG_DEBUG && level <= LUME_LOG_ERROR ? names[level] : "?", component,
            msg);
}

static int fail(const char *what, char *err, int code)
{
    fprintf(stderr, "embed: %s: %s\n", what, err ? err : "failed");
    lume_free(err);
    return code;
}

int main(int argc, char **argv)
{
    char *err = NULL;
    lume_config *cfg = lume_config_new();
    if (!cfg)
        return fail("config", NULL, 1);
    if (argc > 1 && lume_config_load(cfg, argv[1], &err) < 0) {
        lume_config_free(cfg);
        return fail("config", err, 2);
    }
    /* we print the status ourselves */
    if (lume_config_set_int(cfg, "status_interval_ms", 0, &err) < 0) {
        lume_config_free(cfg);
        return fail("config", err, 2);
    }
    lume_config_set_log(cfg, on_log, stderr);
    lume_runtime *rt = lume_runtime_new(cfg, &err);
    lume_config_free(cfg); /* the runtime keeps its own copy */
    if (!rt)
        return fail("cannot start lume", err, 1);
    printf("lume %s (built against %s)\n", lume_version(), LUME_VERSION);
    for (int i = 0; i < 3; i++) {
        if (lume_runtime_run_for(rt, 500) < 0)
            break;
        char line[4096];
        lume_runtime_status_line(rt, line, sizeof line);
        printf("status: %s\n", line);
    }
    char *json = lume_runtime_stats_json(rt);
    printf("stats: %s\n", json ? json : "{}");
    lume_free(json);
    lume_runtime_free(rt);
    return 0;
}
