/* bindings/script.h — a script of the Lua host: its state, its callbacks, its counters
 * (built by scripts.c, run by sandbox.c and runtime.c). */
#ifndef LUME_SCRIPT_H
#define LUME_SCRIPT_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "lume.h"
#include "registry.h"

typedef struct lume_script lume_script;

enum lume_script_status {
    LUME_SCRIPT_LOADING = 0,
    LUME_SCRIPT_RUNNING,
    LUME_SCRIPT_FAILED,    /* did not load: no state */
    LUME_SCRIPT_STOPPED,   /* stopped by the runtime (error storm) */
    LUME_SCRIPT_PARKED,    /* the previous version, kept while a new one soaks */
};
const char *lume_script_status_name(int status);
/* Write the fail-safe value of every output s drives, and free them
 * (l_output.c; outsvc.h rule 3). why goes to the log. */
void lume_output_release(lume_script *s, const char *why);

/* The capped allocator's account. */
typedef struct lume_mem {
    size_t used, peak, limit;
    uint64_t refused;
} lume_mem;

struct lume_script {
    lume_runtime *rt;
    char         *name;
    char         *path;       /* file it came from, NULL when loaded from a string */
    char          version[32];/* "3:ab12cd34" = generation:sha256 prefix */
    unsigned      generation;
    lua_State    *L;
    char          sha256[65]; /* of the source it was built from */
    lume_mem      mem;
    int           status;
    lume_cb_list  cbs[LUME_CB_KINDS]; /* its callbacks, by kind (registry.c) */
    uint64_t      next_id;    /* of the next callback */
    uint64_t      calls, errors, budget_overruns, publishes;
    uint64_t      err_window_start_ms, err_window_count;
    int64_t       storm_start_ms;
    int64_t       overrun_start_ms;
    uint64_t      overrun_count;
    uint64_t      storm_count;
    char         *last_error;
    int64_t       loaded_ms;
    bool          killed;     /* budget exceeded in the current call */
    bool          warned;     /* logged a warning while loading (it said why it is idle) */
    bool          dry_run;    /* replaying recorded samples: publish and store do nothing */
    bool          managed;    /* installed from the twin (a bundle), not from a file */
    uint64_t      dry_publishes;
    char         *keep_in;    /* while it builds: the state lume.keep restores from */
    size_t        keep_in_len;
    char          keep_sha[65]; /* sha256 of the kept state last saved ("" when none) */
    char          keep_in_sha[65]; /* of keep_in: a hand-over of the same state is quiet */
    bool          keep_quiet;   /* restoring again what it restored at load: no warnings */
    const char   *call_detail;  /* for the error message of the current call */
    lume_script  *next;
};

#endif
