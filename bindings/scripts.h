/* bindings/scripts.h — scripts.c: the script set: load, build, swap, reload, unload,
 * the hang quarantine. Lua-free (runtime/control.c includes it). */
#ifndef LUME_SCRIPTS_H
#define LUME_SCRIPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "lume.h"

#include <cJSON.h>

typedef struct lume_script lume_script; /* script.h */

int  lume_scripts_load_dir(lume_runtime *rt);
/* Build a new version of `name` from source and swap it in. 0, or negative
 * with *err (the old version, if any, keeps running). */
int  lume_scripts_install(lume_runtime *rt, const char *name, const char *path,
                          const char *src, size_t len, char **err);
/* Reload `name` from its file (NULL: every file, leaving the twin's
 * scripts alone). 0, or negative with *err: -EPERM when the twin manages
 * `name` (lume_scripts_managed_why), -ENOENT, -EINVAL, -EIO. */
int  lume_scripts_reload(lume_runtime *rt, const char *name, char **err);
/* The twin's scripts, for the answer to `reload` of every script: a
 * malloc'd "; left alone, managed by the twin: rules (bundle version 7),
 * ..." or "" (NULL when out of memory). */
char *lume_scripts_managed_note(lume_runtime *rt);
/* Why `name` must not be reloaded from a file: a malloc'd message naming
 * the twin and the bundle version when the twin manages it; NULL when it
 * does not. */
char *lume_scripts_managed_why(lume_runtime *rt, const char *name);
/* Build a version in a fresh sandbox and run its top level, without
 * swapping it in: NULL with *err (file:line) when it does not load. */
lume_script *lume_scripts_build(lume_runtime *rt, const char *name, const char *path,
                                const char *src, size_t len, char **err);
/* Swap a built version in, replacing (and freeing) the running one. */
void lume_scripts_swap(lume_runtime *rt, lume_script *s);
int  lume_scripts_unload(lume_runtime *rt, const char *name);
lume_script *lume_scripts_find(lume_runtime *rt, const char *name);
/* letters, digits, _ and -, 1..64: the rule for file and bundle names alike */
bool lume_script_name_valid(const char *name);
void lume_scripts_free_all(lume_runtime *rt);
/* At start: a hang marker left by the watchdog (sandbox.c) quarantines the
 * source that hung, persisted in the store. */
void lume_scripts_note_hang(lume_runtime *rt);
/* 1 when this source of `name` hung the device (with *why when why is
 * given); 0 otherwise — and, when why is given, a quarantine of another
 * source of that name is lifted. */
int  lume_scripts_hung(lume_runtime *rt, const char *name, const char *sha256, char **why);
void lume_script_free(lume_script *s);
int  lume_scripts_watch(lume_runtime *rt);
/* Where the code live under a name came from, added to a reported entry o:
 * origin "twin" (signer: the key id, sha256) or "local" (file, sha256),
 * null when nothing runs; the other keys null (reported is merge-patched). */
void lume_scripts_add_origin(cJSON *o, const lume_script *s, const char *signer);
/* The reported entry of a script from a local file, added to scripts. */
void lume_scripts_add_local(cJSON *scripts, const lume_script *s);

#endif
