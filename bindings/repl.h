/* bindings/repl.h — repl.c: the REPL evaluator, one per session, shared by
 * `lume repl` (its socket, runtime/repl_server.c) and the web console's REPL
 * box. Lua-free: runtime/ and cli/ include it.
 *
 * A session is its own sandboxed Lua state (bindings/sandbox.c) with the
 * scripts' API, memory cap (sandbox.memory_limit) and a per-evaluation CPU
 * budget larger than a handler's (LUME_REPL_BUDGET_MS) plus a wall-clock
 * limit of half sandbox.hang_limit_ms (a starved loop thread may take
 * longer than that to use its CPU budget, and the hang limit ends the
 * process): nothing typed can hurt the device. Its state is
 * not one of the running scripts: callbacks registered from the REPL
 * (lume.on_sample, timers) are not dispatched.
 *
 * Thread rules: everything on the loop thread, except lume_repl_interrupt
 * (any thread). An evaluation holds the loop thread until it ends, so a
 * front end that offers Ctrl-C (or notices its client leaving) watches its
 * client from another thread meanwhile and calls lume_repl_interrupt:
 * runtime/repl_sock.c starts such a helper thread for each evaluation. */
#ifndef LUME_REPL_H
#define LUME_REPL_H

#include <stddef.h>

#include "lume.h"

#define LUME_REPL_BUDGET_MS 1000  /* CPU per evaluation (handlers: sandbox.cpu_budget_ms) */
#define LUME_REPL_MAX_OUT   (1u << 20) /* print output and results per evaluation */
#define LUME_REPL_MAX_CHUNK (1u << 20) /* a pending multi-line chunk */

typedef struct lume_repl lume_repl;

/* A new session on rt. NULL with *err (malloc'd) when its state cannot be
 * built. */
lume_repl *lume_repl_new(lume_runtime *rt, char **err);

enum { LUME_REPL_OK, LUME_REPL_MORE, LUME_REPL_ERROR };

/* Evaluate one line of input, appended to the pending incomplete chunk (as
 * lua.c does: a chunk whose syntax error is at "<eof>" waits for more and
 * gives LUME_REPL_MORE). `=expr` and bare expressions return their values.
 * *out (malloc'd, NUL-terminated, never NULL unless out of memory) gets the
 * print() output, then the results pretty-printed (tables to a depth of 3),
 * or the error message. LUME_REPL_ERROR for a syntax or run-time error, a
 * budget kill ("CPU budget exceeded"), an interrupt ("interrupted") or a
 * memory-cap refusal; the session stays usable. */
int  lume_repl_eval(lume_repl *r, const char *line, size_t len, char **out);

/* Completion candidates for the identifier path that ends `prefix` (the
 * text before the cursor): globals, lume.* fields, fields of any table
 * reached through a.b.c or a:b, computed against the live state, sorted.
 * Each candidate is the whole path ("lume.sensor"). *cands (malloc'd array
 * of malloc'd strings, free with lume_repl_free_cands) and *n. 0, or
 * -ENOMEM. */
int  lume_repl_complete(lume_repl *r, const char *prefix, char ***cands, size_t *n);
void lume_repl_free_cands(char **cands, size_t n);

/* Drop a pending incomplete chunk (Ctrl-C at a continuation prompt). */
void lume_repl_reset(lume_repl *r);
/* The lines of every chunk that ran without error, in order (for .save);
 * borrowed, valid until the next eval. */
const char *lume_repl_history(lume_repl *r, size_t *len);

/* A dot-command (".scripts", "save NAME"; the dot is optional): its answer
 * text in *out as lume_repl_eval. LUME_REPL_OK or LUME_REPL_ERROR. `.watch
 * SENSOR` answers one reading (the client asks again to redraw); `.help`
 * lists them all. */
int  lume_repl_dot(lume_repl *r, const char *line, char **out);

/* Any thread: stop a runaway evaluation through the watchdog (it fails
 * with "interrupted"); nothing happens when none is running. */
void lume_repl_interrupt(lume_repl *r);
void lume_repl_free(lume_repl *r);

#endif
