/* runtime/services.h — the part of a runtime that its Lua-free services
 * see (twin_host.c, control.c): the configuration, the log, the loop, the
 * sampler, the outbox, the key-value store, the session and its dialect,
 * and the services' own state.
 *
 *   cli/ ──► bindings/ (the Lua host: struct lume_runtime, scripts,
 *               │  ▲     Lua modules, bundles)
 *               ▼  │ Lua-free prototypes only (bundles.h, scripts.h,
 *            runtime/    l_twin.h, l_hub.h)
 *               │        the services: the twin's built-in keys, the
 *               ▼        control socket; no Lua include path
 *             core/      the C services: no Lua, no runtime
 *
 * struct lume_runtime (bindings/runtime.h) begins with a lume_services,
 * whose fields the Lua host reaches as its own (rt->cfg, rt->loop: an
 * anonymous member, -fms-extensions) and a service through
 * lume_runtime_services(rt). The files of runtime/ are compiled without
 * Lua's include path, so a header of bindings/ that pulls lua.h into one of
 * them fails the build, and `make symbols` checks that their objects refer
 * to no Lua symbol. */
#ifndef LUME_SERVICES_H
#define LUME_SERVICES_H

#include <stdint.h>

#include "config.h"
#include "kv.h"
#include "log.h"
#include "loop.h"
#include "lume.h"
#include "mqtt.h"
#include "outbox.h"
#include "sampler.h"

struct lume_dps;
struct lume_hub;
struct lume_link;
struct lume_manager;
struct lume_twin_host;
struct lume_control;
struct lume_outsvc;
struct lume_console;
struct lume_repl_sock;

typedef struct lume_services {
    lume_config      cfg;
    lume_log_target  log;           /* its level and sink (core/base/log.h) */
    lume_loop       *loop;
    lume_sampler    *sampler;
    lume_outbox     *outbox;
    lume_kv         *kv;
    lume_mqtt       *mqtt;          /* NULL when offline (no net.url), or while DPS
                                       has not assigned a hub yet */
    struct lume_dps *dps;           /* a DPS registration under way, or NULL */
    struct lume_hub *hub;           /* the hub's dialect: every topic (core/hub/hub.h) */
    struct lume_link *link;         /* when the session is up (core/net/link.h), or NULL */
    struct lume_manager *mgr;       /* bundles from the twin (bindings/bundles.c) */
    struct lume_twin_host *twin;    /* the twin and its dialect (twin_host.c) */
    struct cJSON *twin_early;       /* reported patches made before the twin host started
                                       (a script's top level), replayed in order at start */
    struct lume_control *control;   /* the control socket (control.c) */
    struct lume_outsvc *outputs;    /* the board's outputs (core/sample/outsvc.h), or NULL */
    struct lume_console *console;   /* the web console, or NULL (console.c) */
    struct lume_repl_sock *repl;    /* the REPL's socket (repl_sock.c) */
} lume_services;

/* The services' part of rt (runtime.c). Never NULL for a runtime. */
lume_services *lume_runtime_services(lume_runtime *rt);
/* The health document (runtime.c; docs/twin.md "Health"), malloc'd JSON or
 * NULL when out of memory. seq numbers the documents, period_s is the
 * period they are sent at. */
char *lume_runtime_health_json(lume_runtime *rt, uint64_t seq, double period_s);

#endif
