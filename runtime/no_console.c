/* runtime/no_console.c — what stands in for console.c in a lume built with
 * LUME_NO_CONSOLE=1 (the Makefile leaves console.c out): lume_config_check
 * already refuses console.listen and `--console` with LUME_NO_CONSOLE_MSG;
 * should a runtime still be asked to serve, it fails with the same words.
 * There is never a console, so the rest has nothing to do. In a full build
 * this file compiles to nothing. */
#ifdef LUME_NO_CONSOLE
#include "console.h"
#include "services.h"

#include "config.h"
#include "log.h"

int lume_console_start(lume_runtime *rt, char **err)
{
    if (!lume_runtime_services(rt)->cfg.console.listen)
        return 0;
    lume_set_err(err, "console.listen: %s", LUME_NO_CONSOLE_MSG);
    return -1;
}

void lume_console_stop(lume_runtime *rt) {}
void lume_console_free(lume_runtime *rt) {}
void lume_console_sample(struct lume_console *c, unsigned channel, double value) {}
void lume_console_stats_json(lume_runtime *rt, struct cJSON *root) {}
#else
typedef int lume_no_console_unused; /* ISO C wants a translation unit to declare something */
#endif
