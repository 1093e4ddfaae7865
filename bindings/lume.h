/* bindings/lume.h — the embedding API: run lume inside your own program.
 *
 *   lume_config cfg;
 *   lume_config_init(&cfg);                  // defaults (core/config.h)
 *   lume_config_load(&cfg, "lume.conf.lua", &err);
 *   lume_runtime *rt = lume_runtime_new(&cfg, &err);
 *   lume_runtime_run(rt);                    // until lume_runtime_stop()
 *   lume_runtime_free(rt);
 *
 * The runtime owns one libwebsockets loop (main thread), the sampler thread,
 * the outbox and state store, and one sandboxed Lua state per script. */
#ifndef LUME_H
#define LUME_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "outbox.h"
#include "sampler.h"

#define LUME_VERSION "0.1.0"

typedef struct lume_runtime lume_runtime;

/* Load a Lua config file (a chunk returning a table) into c, checking every
 * key through lume_config_set. 0, or -EINVAL/-ENOENT with *err naming the
 * file, the key, the value and what was expected (c may be partly set). */
int lume_config_load(lume_config *c, const char *path, char **err);

/* Build a runtime: board, sampler, outbox, store, scripts. The config is
 * copied. NULL with *err set when something essential is wrong, and errno
 * EINVAL when the configuration is at fault (unknown or bad board, bad
 * net.* or twin.* settings, unreadable certificates or keys, a store that
 * another runtime holds or another user can write), EIO otherwise (a store
 * directory that cannot be made, no thread); scripts that fail to load are
 * logged and reported, not fatal. What is in the store never fails it: a
 * damaged, empty, read-only or full store is salvaged, spilled or reported
 * (docs/store.md). */
lume_runtime *lume_runtime_new(const lume_config *c, char **err);
void          lume_runtime_free(lume_runtime *rt);
/* Start the sampler and service the loop until lume_runtime_stop. 0, or
 * -EBUSY when it stopped because its store was removed and another runtime
 * took it (its rows saved aside; docs/store.md). */
int           lume_runtime_run(lume_runtime *rt);
/* Run the loop for ms milliseconds (tests, embedding in a host loop). */
int           lume_runtime_run_for(lume_runtime *rt, int ms);
/* Any thread or a signal handler. */
void          lume_runtime_stop(lume_runtime *rt);

/* Reload one script (by name, "rules") or every script (name NULL) from its
 * file. 0, or negative with *err (the old version keeps running). */
int lume_runtime_reload(lume_runtime *rt, const char *name, char **err);

lume_loop    *lume_runtime_loop(lume_runtime *rt);
lume_sampler *lume_runtime_sampler(lume_runtime *rt);
lume_outbox  *lume_runtime_outbox(lume_runtime *rt);
const lume_config *lume_runtime_config(lume_runtime *rt);

/* Everything measurable as a malloc'd JSON object: sensors (rates,
 * counters, lateness percentiles), scripts (status, version, errors,
 * memory), outbox lanes, process (RSS, uptime). NULL on ENOMEM. */
char *lume_runtime_stats_json(lume_runtime *rt);

/* Render the one-line live status into buf. */
void lume_runtime_status_line(lume_runtime *rt, char *buf, size_t n);

#endif
