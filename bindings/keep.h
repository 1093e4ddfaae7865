/* bindings/keep.h — l_keep.c: state a script hands to its next version
 * (lume.keep). Lua-free: scripts.c, bundles.c and runtime.c call it. */
#ifndef LUME_KEEP_H
#define LUME_KEEP_H

#include <stdbool.h>
#include <stddef.h>

#include "lume.h"

typedef struct lume_script lume_script; /* script.h */

/* Every KEEP_SAVE_MS the kept state of every running script goes to the
 * store (when it changed), so a crash loses at most that much. */
#define LUME_KEEP_SAVE_MS 10000

/* The kept state of a running script as one JSON document
 * {"NAME": {"v": version, "d": data}, ...}, malloc'd; NULL when it keeps
 * nothing, or on error, then with *failed set (logged: a save method that
 * raised, state larger than sandbox.store_quota; the script keeps running). */
char *lume_keep_snapshot(lume_script *s, size_t *len, bool *failed);
/* Restore a snapshot into the tables s kept (each through its version
 * check, migrate and restore method); what cannot be restored is logged and
 * the table keeps its defaults. */
void  lume_keep_restore(lume_script *s, const char *json, size_t len);
/* Hand old's kept state to s (a swap, a rollback) and save it in the store. */
void  lume_keep_hand_over(lume_script *old, lume_script *s);
/* Where a new version of `name` restores from when no older version runs:
 * the store (malloc'd, NULL when there is none). */
char *lume_keep_load(lume_runtime *rt, const char *name, size_t *len);
/* Save s's kept state in the store if it changed since the last save. */
void  lume_keep_save(lume_script *s);
/* lume_keep_save for every running script (the periodic save, shutdown). */
void  lume_keep_save_all(lume_runtime *rt);
/* Start the periodic save (runtime start). */
void  lume_keep_start(lume_runtime *rt);

#endif
