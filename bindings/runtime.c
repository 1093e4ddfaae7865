/* bindings/runtime.c — one runtime: loop, sampler, outbox, store, scripts.
 *
 * Data flow on the loop thread:
 *   sampler ring --(wake: lws_cancel_service)--> lume_runtime_dispatch
 *     --> each script's on_sample handlers (per sample, or batched per drain)
 *     --> lume.publish --> outbox pending batch --(commit timer)--> SQLite
 */
#include "host.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sched.h>
#include <unistd.h>

#include <cJSON.h>

#include "clock.h"
#include "log.h"

#define DRAIN_MAX 4096
#define ERR_LOG_FULL 10          /* errors per script logged in full */
#define ERR_LOG_EVERY_MS 10000   /* then a summary at most this often */

const char *lume_script_status_name(int status)
{
    switch (status) {
    case LUME_SCRIPT_LOADING: return "loading";
    case LUME_SCRIPT_RUNNING: return "running";
    case LUME_SCRIPT_FAILED: return "failed";
    case LUME_SCRIPT_STOPPED: return "stopped";
    case LUME_SCRIPT_PARKED: return "parked";
    default: return "?";
    }
}

void lume_script_error(lume_script *s, const char *what, const char *msg)
{
    s->errors++;
    free(s->last_error);
    s->last_error = lume_strdupf("%s: %s", what, msg);
    char comp[96];
    snprintf(comp, sizeof comp, "script %s", s->name);
    int64_t now = lume_wall_ms();
    int limit = s->rt->cfg.sandbox.max_errors_per_s;
    if (limit > 0 && s->status == LUME_SCRIPT_RUNNING) {
        if (now - s->storm_start_ms >= 1000) {
            s->storm_start_ms = now;
            s->storm_count = 0;
        }
        if (++s->storm_count > (uint64_t)limit) {
            s->status = LUME_SCRIPT_STOPPED;
            lume_log(LUME_LOG_ERROR, comp, "stopped: more than %d errors in one second "
                     "(sandbox.max_errors_per_s); last: %s: %s", limit, what, msg);
            return;
        }
    }
    if (s->errors <= ERR_LOG_FULL) {
        lume_log(LUME_LOG_ERROR, comp, "%s: %s", what, msg);
        if (s->errors == ERR_LOG_FULL)
            lume_log(LUME_LOG_WARN, comp, "further errors are summarised every %d s",
                     ERR_LOG_EVERY_MS / 1000);
        s->err_window_start_ms = (uint64_t)now;
        s->err_window_count = 0;
    } else {
        s->err_window_count++;
        if ((uint64_t)now - s->err_window_start_ms >= ERR_LOG_EVERY_MS) {
            /* first line of the message only */
            const char *nl = strchr(msg, '\n');
            lume_log(LUME_LOG_ERROR, comp, "%llu more errors (%llu in all), last: %s: %.*s",
                     (unsigned long long)s->err_window_count, (unsigned long long)s->errors,
                     what, nl ? (int)(nl - msg) : (int)strlen(msg), msg);
            s->err_window_start_ms = (uint64_t)now;
            s->err_window_count = 0;
        }
    }
}

/* ---- dispatch ------------------------------------------------------------- */

typedef struct sample_call {
    int                ref;
    const lume_sample *smp;     /* one sample, or */
    const lume_sample *buf;     /* a drain's samples, filtered by channel */
    size_t             n;
    unsigned           channel;
    const char        *name;
} sample_call;

static int push_sample(lua_State *L, void *ud)
{
    const sample_call *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_pushnumber(L, c->smp->value);
    lua_pushnumber(L, (lua_Number)c->smp->wall_ns / 1e9);
    lua_pushstring(L, c->name);
    return 3;
}

int lume_script_call_sample(lume_script *s, lume_handler *h, const lume_sample *smp,
                            const char *name, const char *what)
{
    sample_call c = {.ref = h->ref, .smp = smp, .name = name};
    s->call_detail = name;
    return lume_sandbox_pcall(s, push_sample, &c, s->rt->cfg.sandbox.cpu_budget_ms, what);
}

static int push_batch(lua_State *L, void *ud)
{
    const sample_call *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_createtable(L, (int)(c->n < 4096 ? c->n : 4096), 0);
    lua_createtable(L, (int)(c->n < 4096 ? c->n : 4096), 0);
    lua_Integer k = 0;
    for (size_t j = 0; j < c->n; j++) {
        if (c->buf[j].channel != c->channel || c->buf[j].status != 0)
            continue;
        k++;
        lua_pushnumber(L, c->buf[j].value);
        lua_rawseti(L, -3, k);
        lua_pushnumber(L, (lua_Number)c->buf[j].wall_ns / 1e9);
        lua_rawseti(L, -2, k);
    }
    lua_pushstring(L, c->name);
    return 3;
}

int lume_script_call_batch(lume_script *s, lume_handler *h, const lume_sample *buf, size_t n,
                           const char *name, const char *what)
{
    size_t k = 0;
    for (size_t j = 0; j < n && !k; j++)
        k += buf[j].channel == h->channel && buf[j].status == 0;
    if (!k)
        return 0; /* no sample of its channel in this drain: no call */
    sample_call c = {.ref = h->ref, .buf = buf, .n = n, .channel = h->channel, .name = name};
    s->call_detail = "batch";
    return lume_sandbox_pcall(s, push_batch, &c, s->rt->cfg.sandbox.cpu_budget_ms, what);
}

static void sweep_handlers(lume_script *s)
{
    size_t j = 0;
    for (size_t i = 0; i < s->nhandlers; i++) {
        if (s->handlers[i].dead) {
            luaL_unref(s->L, LUA_REGISTRYINDEX, s->handlers[i].ref);
            continue;
        }
        s->handlers[j++] = s->handlers[i];
    }
    s->nhandlers = j;
}

static void log_read_error(lume_runtime *rt, const lume_sample *smp)
{
    unsigned ch = smp->channel;
    int64_t now = lume_wall_ms();
    if (now - rt->chan_err_log_ms[ch] < ERR_LOG_EVERY_MS && rt->chan_err_log_ms[ch])
        return;
    rt->chan_err_log_ms[ch] = now;
    lume_channel_stats st;
    lume_sampler_stats(rt->sampler, ch, &st);
    lume_log(LUME_LOG_WARN, "sampler", "sensor '%s' read failed: %s (%llu failures so far)",
             lume_sampler_name(rt->sampler, ch), strerror(-smp->status),
             (unsigned long long)st.read_errors);
}

/* Batched handlers get (values, times, name) once per drain. */
static void call_batches(lume_runtime *rt, const lume_sample *buf, size_t n)
{
    for (lume_script *s = rt->scripts; s; s = s->next) {
        for (size_t i = 0; i < s->nhandlers && s->status == LUME_SCRIPT_RUNNING; i++) {
            lume_handler *h = &s->handlers[i];
            if (h->batch && !h->dead)
                lume_script_call_batch(s, h, buf, n, lume_sampler_name(rt->sampler, h->channel),
                                       "on_sample");
        }
    }
}

void lume_runtime_dispatch(lume_runtime *rt)
{
    size_t n;
    while ((n = lume_sampler_drain(rt->sampler, rt->drain_buf, rt->drain_cap)) > 0) {
        for (lume_script *s = rt->scripts; s; s = s->next)
            s->in_dispatch = true;
        for (size_t i = 0; i < n; i++) {
            const lume_sample *smp = &rt->drain_buf[i];
            if (smp->status != 0) {
                log_read_error(rt, smp);
                continue;
            }
            const char *name = lume_sampler_name(rt->sampler, smp->channel);
            /* kept for the dry run of a new script version */
            rt->recent[smp->channel * LUME_RECENT + rt->recent_n[smp->channel]++ % LUME_RECENT] =
                *smp;
            for (lume_script *s = rt->scripts; s; s = s->next) {
                if (s->status != LUME_SCRIPT_RUNNING)
                    continue;
                for (size_t k = 0; k < s->nhandlers; k++) {
                    lume_handler *h = &s->handlers[k];
                    if (h->channel == smp->channel && !h->batch && !h->dead &&
                        s->status == LUME_SCRIPT_RUNNING)
                        lume_script_call_sample(s, h, smp, name, "on_sample");
                }
            }
        }
        call_batches(rt, rt->drain_buf, n);
        for (lume_script *s = rt->scripts; s; s = s->next) {
            s->in_dispatch = false;
            if (s->L)
                sweep_handlers(s);
        }
    }
}

static void on_wake(void *ud) { lume_runtime_dispatch(ud); }

/* ---- timers --------------------------------------------------------------- */

/* The commit timer also measures how late the loop comes back to it: the
 * longest stall anything on the loop caused (lume stats: loop). */
static void start_commit_timer(lume_runtime *rt)
{
    int64_t us = (int64_t)rt->cfg.outbox.commit_interval_ms * 1000;
    rt->commit_due_ns = lume_mono_ns() + us * 1000;
    lume_timer_start(&rt->commit_timer, us);
}

static void commit_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    int64_t late = lume_mono_ns() - rt->commit_due_ns;
    if (late > rt->stall_max_ns)
        rt->stall_max_ns = late;
    if (late > LUME_NS_PER_SEC)
        rt->stalls_1s++;
    if (lume_outbox_pending_age_ms(rt->outbox) >= 0)
        lume_outbox_commit(rt->outbox);
    if (rt->mqtt)
        lume_mqtt_kick(rt->mqtt); /* newly committed messages can go */
    start_commit_timer(rt);
}

static void soon_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    if (lume_outbox_pending_age_ms(rt->outbox) >= 0)
        lume_outbox_commit(rt->outbox);
    if (rt->mqtt)
        lume_mqtt_kick(rt->mqtt);
}

void lume_runtime_commit_soon(lume_runtime *rt)
{
    if (!lume_timer_pending(&rt->soon_timer))
        lume_timer_start(&rt->soon_timer, 0);
}

void lume_runtime_status_line(lume_runtime *rt, char *buf, size_t n)
{
    size_t u = 0;
#define P(...) do { if (u < n) u += (size_t)snprintf(buf + u, n - u, __VA_ARGS__); } while (0)
    size_t nch = lume_sampler_count(rt->sampler);
    for (unsigned ch = 0; ch < nch; ch++) {
        double v;
        int64_t t;
        int32_t st;
        const char *unit = lume_sampler_unit(rt->sampler, ch);
        P("%s%s=", ch ? " " : "", lume_sampler_name(rt->sampler, ch));
        if (lume_sampler_last(rt->sampler, ch, &v, &t, &st) == 0 && st == 0)
            P("%.4g%s", v, unit ? unit : "");
        else
            P("?");
        P("@%gHz", lume_sampler_rate(rt->sampler, ch));
    }
    lume_outbox_stats os;
    lume_outbox_get_stats(rt->outbox, &os);
    P(" | outbox alarm=%llu telemetry=%llu bulk=%llu",
      (unsigned long long)os.depth[0], (unsigned long long)os.depth[1],
      (unsigned long long)os.depth[2]);
    uint64_t errors = 0;
    P(" | scripts");
    for (lume_script *s = rt->scripts; s; s = s->next) {
        P(" %s@%s%s", s->name, s->version,
          s->status == LUME_SCRIPT_RUNNING ? "" : s->status == LUME_SCRIPT_FAILED ? "(failed)"
                                                                                 : "(stopped)");
        errors += s->errors;
    }
    P(" | errors %llu", (unsigned long long)errors);
    if (rt->mqtt) {
        lume_mqtt_stats ms;
        lume_mqtt_get_stats(rt->mqtt, &ms);
        P(" | net %s sent=%llu acked=%llu resent=%llu reconnects=%llu",
          lume_mqtt_state_name(lume_mqtt_get_state(rt->mqtt)), (unsigned long long)ms.sent,
          (unsigned long long)ms.acked, (unsigned long long)ms.resent,
          (unsigned long long)ms.reconnects);
    }
#undef P
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

char *lume_runtime_stats_json(lume_runtime *rt)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *sensors = cJSON_AddObjectToObject(root, "sensors");
    size_t nch = lume_sampler_count(rt->sampler);
    for (unsigned ch = 0; ch < nch; ch++) {
        lume_channel_stats st;
        lume_sampler_stats(rt->sampler, ch, &st);
        cJSON *o = cJSON_AddObjectToObject(sensors, lume_sampler_name(rt->sampler, ch));
        const char *unit = lume_sampler_unit(rt->sampler, ch);
        cJSON_AddStringToObject(o, "unit", unit ? unit : "");
        cJSON_AddNumberToObject(o, "rate", st.rate_hz);
        cJSON_AddNumberToObject(o, "samples", (double)st.samples);
        cJSON_AddNumberToObject(o, "overruns", (double)st.overruns);
        cJSON_AddNumberToObject(o, "drops", (double)st.drops);
        cJSON_AddNumberToObject(o, "read_errors", (double)st.read_errors);
        cJSON_AddNumberToObject(o, "late_p50_us", (double)lume_hist_percentile(&st.late, 50) / 1e3);
        cJSON_AddNumberToObject(o, "late_p99_us", (double)lume_hist_percentile(&st.late, 99) / 1e3);
        cJSON_AddNumberToObject(o, "late_p999_us",
                                (double)lume_hist_percentile(&st.late, 99.9) / 1e3);
        cJSON_AddNumberToObject(o, "late_max_us", (double)st.late.max_ns / 1e3);
        double v;
        int64_t t;
        int32_t status;
        if (lume_sampler_last(rt->sampler, ch, &v, &t, &status) == 0 && status == 0)
            cJSON_AddNumberToObject(o, "value", v);
    }
    cJSON *scripts = cJSON_AddObjectToObject(root, "scripts");
    for (lume_script *s = rt->scripts; s; s = s->next) {
        cJSON *o = cJSON_AddObjectToObject(scripts, s->name);
        cJSON_AddStringToObject(o, "status", lume_script_status_name(s->status));
        cJSON_AddStringToObject(o, "version", s->version);
        cJSON_AddNumberToObject(o, "errors", (double)s->errors);
        cJSON_AddNumberToObject(o, "calls", (double)s->calls);
        cJSON_AddNumberToObject(o, "budget_overruns", (double)s->budget_overruns);
        cJSON_AddNumberToObject(o, "publishes", (double)s->publishes);
        cJSON_AddNumberToObject(o, "mem", (double)s->mem.used);
        cJSON_AddNumberToObject(o, "mem_peak", (double)s->mem.peak);
        cJSON_AddNumberToObject(o, "mem_limit", (double)s->mem.limit);
        if (s->last_error)
            cJSON_AddStringToObject(o, "last_error", s->last_error);
    }
    lume_outbox_stats os;
    lume_outbox_get_stats(rt->outbox, &os);
    cJSON *ob = cJSON_AddObjectToObject(root, "outbox");
    for (int l = 0; l < LUME_LANES; l++) {
        cJSON *o = cJSON_AddObjectToObject(ob, lume_lane_name(l));
        cJSON_AddNumberToObject(o, "depth", (double)os.depth[l]);
        cJSON_AddNumberToObject(o, "bytes", (double)os.bytes[l]);
        cJSON_AddNumberToObject(o, "appended", (double)os.appended[l]);
        cJSON_AddNumberToObject(o, "dropped", (double)os.dropped[l]);
        cJSON_AddNumberToObject(o, "refused", (double)os.refused[l]);
        cJSON_AddNumberToObject(o, "expired", (double)os.expired[l]);
    }
    cJSON_AddNumberToObject(ob, "pending", (double)os.pending);
    cJSON_AddNumberToObject(ob, "commits", (double)os.commits);
    if (rt->mqtt) {
        lume_mqtt_stats ms;
        lume_mqtt_get_stats(rt->mqtt, &ms);
        cJSON *net = cJSON_AddObjectToObject(root, "net");
        cJSON_AddStringToObject(net, "state", lume_mqtt_state_name(lume_mqtt_get_state(rt->mqtt)));
        cJSON_AddStringToObject(net, "last_error", lume_mqtt_last_error(rt->mqtt));
        cJSON_AddNumberToObject(net, "sent", (double)ms.sent);
        cJSON_AddNumberToObject(net, "resent", (double)ms.resent);
        cJSON_AddNumberToObject(net, "acked", (double)ms.acked);
        cJSON_AddNumberToObject(net, "received", (double)ms.received);
        cJSON_AddNumberToObject(net, "connects", (double)ms.connects);
        cJSON_AddNumberToObject(net, "reconnects", (double)ms.reconnects);
        cJSON_AddNumberToObject(net, "bytes_in", (double)ms.bytes_in);
        cJSON_AddNumberToObject(net, "bytes_out", (double)ms.bytes_out);
        cJSON_AddNumberToObject(net, "protocol_errors", (double)ms.protocol_errors);
        cJSON_AddNumberToObject(net, "inflight", (double)ms.inflight);
    }
    lume_store_host_json(rt, root);
    cJSON *loop = cJSON_AddObjectToObject(root, "loop");
    cJSON_AddNumberToObject(loop, "max_stall_ms", (double)rt->stall_max_ns / 1e6);
    cJSON_AddNumberToObject(loop, "stalls_over_1s", (double)rt->stalls_1s);
    cJSON *proc = cJSON_AddObjectToObject(root, "process");
    cJSON_AddNumberToObject(proc, "rss_kb", (double)rss_kb());
    cJSON_AddNumberToObject(proc, "uptime_s", (double)(lume_wall_ms() - rt->started_ms) / 1e3);
    cJSON_AddBoolToObject(proc, "realtime", lume_sampler_is_realtime(rt->sampler));
    cJSON_AddStringToObject(proc, "device_id", rt->cfg.device_id);
    cJSON_AddStringToObject(proc, "board", rt->cfg.board);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static void status_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    char line[2048];
    lume_runtime_status_line(rt, line, sizeof line);
    char when[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    printf("[%s] %s\n", when, line);
    fflush(stdout);
    lume_timer_start(t, (int64_t)rt->cfg.status_interval_ms * 1000);
}

static void noop_tick(lume_timer *t) { (void)t; }

/* ---- life cycle ----------------------------------------------------------- */

/* sampler.cpu: the sampler has that CPU to itself; the loop and the
 * watchdog run on the others. */
static void isolate_sampler_cpu(lume_runtime *rt)
{
    int cpu = rt->cfg.sampler.cpu;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpu < 0)
        return;
    if (cpu >= n || n < 2) {
        lume_log(LUME_LOG_WARN, "sampler", "sampler.cpu %d: this machine has %ld CPUs; "
                 "nothing pinned", cpu, n);
        rt->cfg.sampler.cpu = -1;
        return;
    }
    cpu_set_t rest;
    CPU_ZERO(&rest);
    for (int i = 0; i < n && i < CPU_SETSIZE; i++)
        if (i != cpu)
            CPU_SET(i, &rest);
    /* before any other thread exists: the watchdog, the outbox's
     * checkpointer and the sampler inherit this; the sampler then moves */
    if (pthread_setaffinity_np(pthread_self(), sizeof rest, &rest) != 0)
        lume_log(LUME_LOG_WARN, "sampler", "cannot keep the loop off CPU %d", cpu);
}

lume_runtime *lume_runtime_new(const lume_config *c, char **err)
{
    int why = EIO; /* errno on failure: EINVAL when the configuration is at fault */
    lume_runtime *rt = calloc(1, sizeof *rt);
    if (!rt || lume_config_copy(&rt->cfg, c) < 0) {
        free(rt);
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    isolate_sampler_cpu(rt);
    rt->topic_prefix_len = (size_t)snprintf(rt->topic_prefix, sizeof rt->topic_prefix,
                                            "lume/%s/telemetry/", rt->cfg.device_id);
    lume_log_set_level(rt->cfg.log_level);
    char path[4096];
    /* one runtime per store, and a store no other user can write */
    int r = lume_store_host_open(rt, err);
    if (r < 0) {
        if (r == -EBUSY || r == -EPERM)
            why = EINVAL; /* the operator's to fix: another lume, or the modes */
        goto err;
    }
    rt->loop = lume_loop_new(NULL, err);
    if (!rt->loop)
        goto err;
    lume_sampler_opts so = {
        .ring_capacity = (size_t)rt->cfg.sampler.ring_size,
        .realtime = rt->cfg.sampler.realtime,
        .rt_priority = rt->cfg.sampler.priority,
        .lock_memory = rt->cfg.sampler.lock_memory,
        .pin = rt->cfg.sampler.cpu >= 0,
        .cpu = rt->cfg.sampler.cpu,
        .wake = (void (*)(void *))lume_loop_wake,
        .wake_ud = rt->loop,
    };
    rt->sampler = lume_sampler_new(&so);
    rt->board = lume_board_ctx_new((uint64_t)lume_wall_ns());
    if (!rt->sampler || !rt->board) {
        *err = lume_strdupf("out of memory");
        goto err;
    }
    if (lume_board_load(rt, err) < 0) {
        why = EINVAL; /* the board file or the board name: the operator's to fix */
        goto err;
    }
    size_t nch = lume_sampler_count(rt->sampler);
    rt->chan_err_log_ms = calloc(nch, sizeof *rt->chan_err_log_ms);
    rt->recent = calloc(nch * LUME_RECENT, sizeof *rt->recent);
    rt->recent_n = calloc(nch, sizeof *rt->recent_n);
    rt->drain_cap = DRAIN_MAX;
    rt->drain_buf = malloc(rt->drain_cap * sizeof *rt->drain_buf);
    if (!rt->chan_err_log_ms || !rt->drain_buf || !rt->recent || !rt->recent_n) {
        *err = lume_strdupf("out of memory");
        goto err;
    }
    snprintf(path, sizeof path, "%s/outbox.db", rt->cfg.store);
    rt->outbox = lume_outbox_open(path, &rt->cfg.outbox, err);
    if (!rt->outbox)
        goto err;
    snprintf(path, sizeof path, "%s/state.db", rt->cfg.store);
    rt->kv = lume_kv_open(path, err);
    if (!rt->kv)
        goto err;
    r = lume_watchdog_start(&rt->wd, rt->cfg.sandbox.cpu_budget_ms,
                            rt->cfg.sandbox.hang_limit_ms, rt->cfg.store);
    if (r < 0) {
        *err = lume_strdupf("cannot start the watchdog thread: %s", strerror(-r));
        goto err;
    }
    lume_loop_on_wake(rt->loop, on_wake, rt);
    lume_timer_init(&rt->commit_timer, rt->loop, commit_tick, rt);
    start_commit_timer(rt);
    lume_timer_init(&rt->status_timer, rt->loop, status_tick, rt);
    lume_timer_init(&rt->deadline_timer, rt->loop, noop_tick, rt);
    lume_timer_init(&rt->soon_timer, rt->loop, soon_tick, rt);
    rt->started_ms = lume_wall_ms();

    lume_scripts_note_hang(rt);
    lume_scripts_load_dir(rt);
    if (lume_net_start(rt, err) < 0) {
        char *e = *err;
        *err = lume_strdupf("net: %s", e ? e : "cannot start");
        free(e);
        why = EINVAL;
        goto err;
    }
    if (lume_twin_host_start(rt, err) < 0) {
        char *e = *err;
        *err = lume_strdupf("twin: %s", e ? e : "cannot start");
        free(e);
        why = EINVAL;
        goto err;
    }
    if (rt->cfg.watch_scripts)
        lume_scripts_watch(rt);
    char *cerr = NULL;
    if (lume_control_listen(rt, &cerr) < 0) {
        lume_log(LUME_LOG_WARN, "control", "%s (lume reload will not reach this process)",
                 cerr ? cerr : "cannot listen");
        free(cerr);
    }
    lume_store_host_start(rt);
    lume_log(LUME_LOG_INFO, "lume", "device %s on board %s: %zu sensors, store %s",
             rt->cfg.device_id, rt->cfg.board, nch, rt->cfg.store);
    return rt;
err:
    lume_runtime_free(rt);
    errno = why;
    return NULL;
}

static int start(lume_runtime *rt)
{
    if (rt->started)
        return 0;
    int r = lume_sampler_start(rt->sampler);
    if (r < 0) {
        lume_log(LUME_LOG_ERROR, "sampler", "cannot start the sampler thread: %s", strerror(-r));
        return r;
    }
    rt->started = true;
    start_commit_timer(rt); /* loading scripts is not a stall of the running loop */
    if (rt->mqtt)
        lume_mqtt_start(rt->mqtt);
    if (rt->cfg.status_interval_ms > 0)
        lume_timer_start(&rt->status_timer, (int64_t)rt->cfg.status_interval_ms * 1000);
    return 0;
}

int lume_runtime_run(lume_runtime *rt)
{
    int r = start(rt);
    if (r < 0)
        return r;
    lume_loop_run(rt->loop);
    lume_outbox_commit(rt->outbox);
    return rt->store_lost ? -EBUSY : 0;
}

int lume_runtime_run_for(lume_runtime *rt, int ms)
{
    int r = start(rt);
    if (r < 0)
        return r;
    int64_t end = lume_mono_ns() + (int64_t)ms * LUME_NS_PER_MS;
    lume_timer_start(&rt->deadline_timer, (int64_t)ms * 1000);
    while (lume_mono_ns() < end) {
        if (lume_loop_step(rt->loop, ms) < 0)
            break;
        int64_t left = end - lume_mono_ns();
        if (left > 0 && !lume_timer_pending(&rt->deadline_timer))
            lume_timer_start(&rt->deadline_timer, left / 1000 + 1);
    }
    lume_timer_cancel(&rt->deadline_timer);
    lume_runtime_dispatch(rt);
    return 0;
}

void lume_runtime_stop(lume_runtime *rt) { lume_loop_stop(rt->loop); }

int lume_runtime_reload(lume_runtime *rt, const char *name, char **err)
{
    return lume_scripts_reload(rt, name, err);
}

void lume_runtime_free(lume_runtime *rt)
{
    if (!rt)
        return;
    if (rt->mqtt) {
        lume_outbox_commit(rt->outbox);
        lume_mqtt_free(rt->mqtt); /* DISCONNECT when connected */
        rt->mqtt = NULL;
    }
    lume_twin_host_free(rt);
    if (rt->sampler)
        lume_sampler_stop(rt->sampler);
    if (rt->loop) {
        lume_timer_cancel(&rt->commit_timer);
        lume_timer_cancel(&rt->status_timer);
        lume_timer_cancel(&rt->deadline_timer);
        lume_timer_cancel(&rt->reload_timer);
        lume_timer_cancel(&rt->soon_timer);
    }
    lume_store_host_stop(rt);
    lume_scripts_free_all(rt);
    lume_watchdog_stop(&rt->wd);
    if (rt->loop) {
        lume_control_close(rt);
        if (rt->inotify_watch)
            lume_loop_unwatch(rt->inotify_watch);
        rt->inotify_watch = NULL;
    }
    if (rt->outbox)
        lume_outbox_close(rt->outbox);
    if (rt->kv)
        lume_kv_close(rt->kv);
    lume_store_host_close(rt); /* unlocked only once the databases are closed */
    if (rt->loop)
        lume_loop_free(rt->loop); /* closes watched fds (inotify) */
    if (rt->sampler)
        lume_sampler_free(rt->sampler);
    if (rt->board)
        lume_board_ctx_free(rt->board);
    free(rt->drain_buf);
    free(rt->chan_err_log_ms);
    free(rt->recent);
    free(rt->recent_n);
    free(rt->board_desc);
    free(rt->control_path);
    lume_config_free(&rt->cfg);
    free(rt);
}

lume_loop *lume_runtime_loop(lume_runtime *rt) { return rt->loop; }
lume_sampler *lume_runtime_sampler(lume_runtime *rt) { return rt->sampler; }
lume_outbox *lume_runtime_outbox(lume_runtime *rt) { return rt->outbox; }
const lume_config *lume_runtime_config(lume_runtime *rt) { return &rt->cfg; }
