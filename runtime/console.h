/* runtime/console.h — console.c: the web console (`lume run --console
 * 127.0.0.1:8080`, the config's console table). Its protocol, limits and
 * the life of a connection are drawn at the top of console.c;
 * docs/console.md is the operator's page. Loop thread only. */
#ifndef LUME_CONSOLE_H
#define LUME_CONSOLE_H

#include <stdint.h>

#include "lume.h"

struct cJSON;
struct lume_console;

/* Start serving when console.listen is set (else 0 and nothing happens):
 * the page's files are read from console.dir, a vhost of the runtime's
 * own lws context listens. 0, or -1 with *err naming what was wrong (a
 * missing asset, an address that cannot be bound). */
int  lume_console_start(lume_runtime *rt, char **err);
/* Before the loop ends: no more log tap, timer or client state. */
void lume_console_stop(lume_runtime *rt);
/* After lume_loop_free (its connections call back until then). */
void lume_console_free(lume_runtime *rt);
/* One sample that the loop drained (runtime.c): folded into the channel's
 * min/max/last of the current 100 ms slot, nothing more. */
void lume_console_sample(struct lume_console *c, unsigned channel, double value);
/* "console": clients, frames dropped, bad messages (lume stats). */
void lume_console_stats_json(lume_runtime *rt, struct cJSON *root);

#endif
