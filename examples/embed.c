/* examples/embed.c — lume inside your own program.
 *
 * An OEM product links liblume.a and drives the runtime from its own main:
 * here, three half-second slices of the loop (your program would do its own
 * work between them, or call lume_runtime_run and stop it from a signal),
 * the status line after each, and the measurements as JSON at the end.
 *
 *   cc -Icore -Ibindings $(pkg-config --cflags lua5.4 libwebsockets libcjson) \
 *      examples/embed.c build/liblume.a \
 *      $(pkg-config --libs lua5.4 libwebsockets libcjson) -lsqlite3 \
 *      -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm -o embed
 *   ./embed [CONFIG.lua]          (`make` builds it as build/examples/embed)
 */
#include <stdio.h>
#include <stdlib.h>

#include "lume.h"

int main(int argc, char **argv)
{
    lume_config cfg;
    char *err = NULL;
    if (lume_config_init(&cfg) < 0)
        return 1;
    if (argc > 1 && lume_config_load(&cfg, argv[1], &err) < 0) {
        fprintf(stderr, "embed: %s\n", err);
        free(err);
        lume_config_free(&cfg);
        return 2;
    }
    cfg.status_interval_ms = 0; /* we print the status ourselves */
    lume_runtime *rt = lume_runtime_new(&cfg, &err);
    lume_config_free(&cfg); /* the runtime keeps its own copy */
    if (!rt) {
        fprintf(stderr, "embed: %s\n", err ? err : "cannot start lume");
        free(err);
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        lume_runtime_run_for(rt, 500);
        char line[4096];
        lume_runtime_status_line(rt, line, sizeof line);
        printf("status: %s\n", line);
    }
    char *json = lume_runtime_stats_json(rt);
    printf("stats: %s\n", json ? json : "{}");
    free(json);
    lume_runtime_free(rt);
    return 0;
}
