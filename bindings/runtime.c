/* bindings/runtime.c — one runtime: loop, sampler, outbox, store, scripts.
 *
 * Data flow on the loop thread:
 *   sampler ring --(wake: lws_cancel_service)--> lume_runtime_dispatch
 *     --> each script's on_sample handlers (per sample, or batched per drain)
 *     --> lume.publish --> outbox pending batch --(commit timer: hand-off)-->
 *         the outbox's committer thread --> SQLite --(wake)--> poll --> MQTT kick
 *   (a durable publish, alarms by default, and lume.flush wait for the commit)
 */
#include "runtime.h"
#include "msgsign.h"
#include "sim.h"
#include "repl_sock.h"
#include "boards.h"
#include "bundles.h"
#include "console.h"
#include "control.h"
#include "keep.h"
#include "l_net.h"
#include "lume.h"
#include "registry.h"
#include "sandbox.h"
#include "script.h"
#include "scripts.h"
#include "store_host.h"
#include "twin_host.h"
#include "config.h"
#include "drivers.h"
#include "hist.h"
#include "hub.h"
#include "kv.h"
#include "loop.h"
#include "mqtt.h"
#include "outbox.h"
#include "ring.h"
#include "sampler.h"
#include "dps.h"
#include "outsvc.h"
#include "l_hub.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <lua.h>

#include "clock.h"
#include "log.h"

/* Around every call from the embedder: the runtime's log target is the
 * calling thread's while it runs (see "the embedder's process" below). */
#define ENTER(rt) lume_log_target *prev_log_ = lume_log_use(&(rt)->log)
#define LEAVE() lume_log_use(prev_log_)

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
            lume_output_release(s, "stopped: error storm");
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
    size_t             k;       /* how many of them are the channel's */
    unsigned           channel;
    const char        *name;
} sample_call;

static int push_sample(lua_State *L, void *ud)
{
    const sample_call *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_pushnumber(L, c->smp->value);
    lua_pushnumber(L, lume_ns_seconds(c->smp->wall_ns));
    lua_pushstring(L, c->name);
    return 3;
}

int lume_script_call_sample(lume_script *s, const lume_cb *h, const lume_sample *smp,
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
    /* sized for the channel's samples alone: no slack for the GC to sweep */
    lua_createtable(L, (int)c->k, 0);
    lua_createtable(L, (int)c->k, 0);
    lua_Integer k = 0;
    for (size_t j = 0; j < c->n; j++) {
        if (c->buf[j].channel != c->channel || c->buf[j].status != 0)
            continue;
        k++;
        lua_pushnumber(L, c->buf[j].value);
        lua_rawseti(L, -3, k);
        lua_pushnumber(L, lume_ns_seconds(c->buf[j].wall_ns));
        lua_rawseti(L, -2, k);
    }
    lua_pushstring(L, c->name);
    return 3;
}

int lume_script_call_batch(lume_script *s, const lume_cb *h, const lume_sample *buf, size_t n,
                           const char *name, const char *what)
{
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        k += buf[j].channel == h->channel && buf[j].status == 0;
    if (!k)
        return 0; /* no sample of its channel in this drain: no call */
    sample_call c = {.ref = h->ref, .buf = buf, .n = n, .k = k, .channel = h->channel,
                     .name = name};
    s->call_detail = "batch";
    return lume_sandbox_pcall(s, push_batch, &c, s->rt->cfg.sandbox.cpu_budget_ms, what);
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
        const lume_cb_list *hl = &s->cbs[LUME_CB_SAMPLE];
        for (size_t i = 0; i < hl->n && s->status == LUME_SCRIPT_RUNNING; i++) {
            const lume_cb *h = &hl->v[i];
            if (h->batch && !h->dead)
                lume_script_call_batch(s, h, buf, n, lume_sampler_name(rt->sampler, h->channel),
                                       "on_sample");
        }
    }
}

void lume_runtime_dispatch_samples(lume_runtime *rt, const lume_sample *buf, size_t n)
{
    /* handlers cancelled during the drain are released after it */
    for (lume_script *s = rt->scripts; s; s = s->next)
        lume_cb_enter(s, LUME_CB_SAMPLE);
    for (size_t i = 0; i < n; i++) {
        const lume_sample *smp = &buf[i];
        if (smp->status != 0) {
            log_read_error(rt, smp);
            continue;
        }
        const char *name = lume_sampler_name(rt->sampler, smp->channel);
        if (rt->sample_tap)
            rt->sample_tap(rt->sample_tap_ud, name, smp);
        /* kept for the dry run of a new script version */
        if (rt->console)
            lume_console_sample(rt->console, smp->channel, smp->value);
        rt->recent[smp->channel * LUME_RECENT + rt->recent_n[smp->channel]++ % LUME_RECENT] =
            *smp;
        for (lume_script *s = rt->scripts; s; s = s->next) {
            if (s->status != LUME_SCRIPT_RUNNING)
                continue;
            const lume_cb_list *hl = &s->cbs[LUME_CB_SAMPLE];
            for (size_t k = 0; k < hl->n; k++) {
                const lume_cb *h = &hl->v[k];
                if (h->channel == smp->channel && !h->batch && !h->dead &&
                    s->status == LUME_SCRIPT_RUNNING)
                    lume_script_call_sample(s, h, smp, name, "on_sample");
            }
        }
    }
    call_batches(rt, buf, n);
    for (lume_script *s = rt->scripts; s; s = s->next)
        lume_cb_leave(s, LUME_CB_SAMPLE);
}

void lume_runtime_dispatch(lume_runtime *rt)
{
    size_t n;
    while ((n = lume_sampler_drain(rt->sampler, rt->drain_buf, rt->drain_cap)) > 0)
        if (!rt->sim) /* a simulated clock: the test's samples only (sim.h) */
            lume_runtime_dispatch_samples(rt, rt->drain_buf, n);
}

/* Commits the outbox's committer finished: what they made sendable goes. */
static void outbox_poll(lume_runtime *rt)
{
    if (lume_outbox_poll(rt->outbox) && rt->mqtt)
        lume_mqtt_kick(rt->mqtt);
}

static void on_wake(void *ud)
{
    lume_runtime_dispatch(ud);
    outbox_poll(ud);
}

/* The committer thread's notify: only lume_loop_wake crosses threads. */
static void wake_loop(void *ud) { lume_loop_wake(ud); }

/* ---- timers --------------------------------------------------------------- */

/* The commit timer runs only while something is not yet durable: armed by
 * after_turn (below) at the end of the turn that made the change, it fires
 * commit_interval_ms later and hands the batch to the committer. An idle
 * device has no commit tick (it used to wake the loop 20 times a second);
 * how late timers fire (the loop's stalls) is measured by the loop itself
 * over every timer (lume_loop_get_stats). */
static void start_commit_timer(lume_runtime *rt)
{
    lume_timer_start(&rt->commit_timer, (int64_t)rt->cfg.outbox.commit_interval_ms * 1000);
}

static void commit_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    /* handed to the committer; its wake-up sends what it committed */
    if (lume_outbox_pending_age_ms(rt->outbox) >= 0)
        lume_outbox_commit_start(rt->outbox);
    outbox_poll(rt);
}

/* After every turn: a change that is not durable yet (an append, an ack,
 * an in-flight mark, a failed commit to retry) keeps the commit timer
 * armed; nothing pending, nothing armed. */
static void after_turn(void *ud)
{
    lume_runtime *rt = ud;
    if (rt->outbox && !lume_timer_pending(&rt->commit_timer) &&
        lume_outbox_pending_age_ms(rt->outbox) >= 0)
        start_commit_timer(rt);
}

static void soon_tick(lume_timer *t)
{
    lume_runtime *rt = t->ud;
    if (lume_outbox_pending_age_ms(rt->outbox) >= 0)
        lume_outbox_commit_start(rt->outbox);
    outbox_poll(rt);
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

static char *stats_json(lume_runtime *rt)
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
        cJSON_AddNumberToObject(o, "timeouts", (double)st.timeouts);
        if (st.last_error) /* why the last failed read failed: "Connection timed out" */
            cJSON_AddStringToObject(o, "last_error", strerror(-st.last_error));
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
        cJSON *h = cJSON_AddObjectToObject(o, "handlers"); /* live callbacks, by kind */
        for (int k = 0; k < LUME_CB_KINDS; k++)
            cJSON_AddNumberToObject(h, lume_cb_kind_name(k), (double)lume_cb_count(s, k));
        if (s->last_error)
            cJSON_AddStringToObject(o, "last_error", s->last_error);
    }
    cJSON *outs = cJSON_AddObjectToObject(root, "outputs"); /* docs/outputs.md */
    for (size_t i = 0; i < lume_outsvc_count(rt->outputs); i++) {
        lume_output_stats st;
        lume_outsvc_stats(rt->outputs, i, &st);
        cJSON *o = cJSON_AddObjectToObject(outs, st.name);
        cJSON_AddStringToObject(o, "driver", st.driver);
        cJSON_AddStringToObject(o, "owner", st.owner);
        cJSON_AddNumberToObject(o, "value", st.value);
        cJSON_AddNumberToObject(o, "failsafe", st.failsafe);
        const struct { const char *k; uint64_t v; } cnt[] = {
            {"sets", st.sets}, {"writes", st.writes}, {"write_errors", st.write_errors},
            {"timeouts", st.timeouts}, {"rate_limited", st.rate_limited},
            {"refused", st.refused}, {"coalesced", st.coalesced}, {"failsafes", st.failsafes}};
        for (size_t k = 0; k < sizeof cnt / sizeof *cnt; k++)
            cJSON_AddNumberToObject(o, cnt[k].k, (double)cnt[k].v);
        if (st.last_error[0])
            cJSON_AddStringToObject(o, "last_error", st.last_error);
    }
    lume_outbox_stats os;
    lume_outbox_get_stats(rt->outbox, &os);
    cJSON *ob = cJSON_AddObjectToObject(root, "outbox");
    for (int l = 0; l < LUME_LANES; l++) {
        cJSON *o = cJSON_AddObjectToObject(ob, lume_lane_name(l));
        cJSON_AddNumberToObject(o, "depth", (double)os.depth[l]);
        cJSON_AddNumberToObject(o, "bytes", (double)os.bytes[l]);
        cJSON_AddNumberToObject(o, "appended", (double)os.appended[l]);
        cJSON_AddNumberToObject(o, "pending", (double)os.lane_pending[l]);
        cJSON_AddNumberToObject(o, "dropped", (double)os.dropped[l]);
        cJSON_AddNumberToObject(o, "refused", (double)os.refused[l]);
        cJSON_AddNumberToObject(o, "expired", (double)os.expired[l]);
        cJSON_AddBoolToObject(o, "durable_publish",
                              (rt->cfg.outbox.durable_lanes & (1 << l)) != 0);
    }
    /* pending: accepted, not yet durable (lost if the process dies now) */
    cJSON_AddNumberToObject(ob, "pending", (double)os.pending);
    int64_t age = lume_outbox_pending_age_ms(rt->outbox);
    cJSON_AddNumberToObject(ob, "pending_age_ms", (double)(age < 0 ? 0 : age));
    cJSON_AddNumberToObject(ob, "durable_id", (double)os.durable_id);
    cJSON_AddNumberToObject(ob, "commits", (double)os.commits);
    cJSON_AddNumberToObject(ob, "commit_errors", (double)os.commit_errors);
    cJSON_AddNumberToObject(ob, "file_bytes", (double)os.file_bytes);
    cJSON_AddNumberToObject(ob, "free_bytes", (double)os.free_bytes);
    lume_twin_host_stats_json(rt, root);
    lume_net_dps_json(rt, root);
    lume_net_link_json(rt, root);
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
        cJSON_AddNumberToObject(net, "skipped_oversize", (double)ms.skipped_oversize);
        cJSON_AddNumberToObject(net, "unexpected_acks", (double)ms.unexpected_acks);
        cJSON_AddNumberToObject(net, "inflight", (double)ms.inflight);
    }
    lume_store_host_json(rt, root);
    lume_console_stats_json(rt, root);
    cJSON *loop = cJSON_AddObjectToObject(root, "loop");
    lume_loop_stats ls;
    lume_loop_get_stats(rt->loop, &ls);
    cJSON_AddNumberToObject(loop, "max_stall_ms", (double)ls.late_max_ns / 1e6);
    cJSON_AddNumberToObject(loop, "stalls_over_1s", (double)ls.late_over_1s);
    /* every turn of the loop and what caused it (docs/sampler.md: idle cost) */
    cJSON *wk = cJSON_AddObjectToObject(loop, "wakeups");
    cJSON_AddNumberToObject(wk, "turns", (double)ls.turns);
    cJSON_AddNumberToObject(wk, "cross_thread", (double)ls.wakes);
    cJSON_AddNumberToObject(wk, "sampler", (double)lume_sampler_wakes(rt->sampler));
    cJSON_AddNumberToObject(wk, "watched_fd", (double)ls.fd_events);
    cJSON_AddNumberToObject(wk, "timer_turns", (double)ls.timer_turns);
    cJSON_AddNumberToObject(wk, "sub_ms_sleeps", (double)ls.sub_ms_sleeps);
    uint64_t other = ls.turns - ls.wakes - ls.fd_events - ls.timer_turns;
    cJSON_AddNumberToObject(wk, "socket_or_lws", ls.turns > ls.wakes + ls.fd_events +
                            ls.timer_turns ? (double)other : 0);
    cJSON *tm = cJSON_AddObjectToObject(wk, "timers");
    for (size_t i = 0; i < ls.ntimer; i++)
        cJSON_AddNumberToObject(tm, ls.timer[i].name, (double)ls.timer[i].fired);
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

/* The last good value of the board's sensor `name`; false when it has none. */
static bool sensor_value(lume_runtime *rt, const char *name, double *v)
{
    int ch = lume_sampler_find(rt->sampler, name);
    int64_t t;
    int32_t status;
    return ch >= 0 && lume_sampler_last(rt->sampler, (unsigned)ch, v, &t, &status) == 0 &&
           status == 0;
}

/* The heartbeat: small, the same keys every time, what an operator checks
 * first. The whole picture stays in lume stats. */
char *lume_runtime_health_json(lume_runtime *rt, uint64_t seq, double period_s)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddNumberToObject(root, "seq", (double)seq);
    cJSON_AddNumberToObject(root, "t", (double)lume_wall_ms() / 1e3);
    cJSON_AddNumberToObject(root, "period_s", period_s);
    cJSON_AddStringToObject(root, "lume", LUME_VERSION);
    cJSON_AddNumberToObject(root, "uptime_s", (double)(lume_wall_ms() - rt->started_ms) / 1e3);

    /* CPU: the machine's load, and this process's share since the last one */
    cJSON *cpu = cJSON_AddObjectToObject(root, "cpu");
    double load[1];
    if (getloadavg(load, 1) == 1)
        cJSON_AddNumberToObject(cpu, "load1", load[0]);
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    int64_t cpu_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, wall_ns = lume_wall_ns();
    if (rt->health_wall_ns && wall_ns > rt->health_wall_ns)
        cJSON_AddNumberToObject(cpu, "process_pct", 100.0 * (double)(cpu_ns - rt->health_cpu_ns) /
                                                        (double)(wall_ns - rt->health_wall_ns));
    rt->health_wall_ns = wall_ns;
    rt->health_cpu_ns = cpu_ns;
    cJSON_AddNumberToObject(root, "rss_kb", (double)rss_kb());

    /* power, from the board's `battery` (V) and `power` (1 mains, 0 battery) */
    double v;
    cJSON *power = cJSON_AddObjectToObject(root, "power");
    if (sensor_value(rt, "battery", &v))
        cJSON_AddNumberToObject(power, "battery_v", v);
    if (sensor_value(rt, "power", &v))
        cJSON_AddStringToObject(power, "source", v >= 0.5 ? "mains" : "battery");

    lume_outbox_stats os;
    lume_outbox_get_stats(rt->outbox, &os);
    cJSON *ob = cJSON_AddObjectToObject(root, "outbox");
    for (int l = 0; l < LUME_LANES; l++)
        cJSON_AddNumberToObject(ob, lume_lane_name(l), (double)os.depth[l]);

    if (rt->mqtt) {
        lume_mqtt_stats ms;
        lume_mqtt_get_stats(rt->mqtt, &ms);
        cJSON *net = cJSON_AddObjectToObject(root, "net");
        cJSON_AddNumberToObject(net, "reconnects", (double)ms.reconnects);
        cJSON_AddNumberToObject(net, "sent", (double)ms.sent);
    }

    /* the sampler: the worst channel's lateness p99, overruns of all */
    uint64_t p99 = 0, overruns = 0;
    for (unsigned ch = 0; ch < lume_sampler_count(rt->sampler); ch++) {
        lume_channel_stats st;
        lume_sampler_stats(rt->sampler, ch, &st);
        uint64_t p = lume_hist_percentile(&st.late, 99);
        if (p > p99)
            p99 = p;
        overruns += st.overruns;
    }
    cJSON *smp = cJSON_AddObjectToObject(root, "sampler");
    cJSON_AddNumberToObject(smp, "late_p99_us", (double)p99 / 1e3);
    cJSON_AddNumberToObject(smp, "overruns", (double)overruns);

    cJSON *scripts = cJSON_AddObjectToObject(root, "scripts");
    for (lume_script *s = rt->scripts; s; s = s->next) {
        cJSON *o = cJSON_AddObjectToObject(scripts, s->name);
        cJSON_AddStringToObject(o, "version", s->version);
        cJSON_AddStringToObject(o, "status", lume_script_status_name(s->status));
        cJSON_AddNumberToObject(o, "errors", (double)s->errors);
    }
    lume_store_host_json(rt, root); /* writable, disk full, corruptions: as lume stats */
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

char *lume_runtime_stats_json(lume_runtime *rt)
{
    ENTER(rt);
    char *json = stats_json(rt);
    LEAVE();
    return json;
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

/* ---- the embedder's process ------------------------------------------------
 *
 * lume_runtime_new may be called by a program that is not lume's: it leaves
 * the process as it found it (lume.h, "Side effects"). What that takes:
 *   1. The log: a runtime has its own target (rt->log: the `log_level` key
 *      and lume_config_set_log's sink), in use on the calling thread for the
 *      length of every call into the runtime (ENTER/LEAVE) and taken by the
 *      threads the runtime starts (log.h, rule 3). The process default level
 *      and sink are not touched.
 *   2. CPUs: sampler.cpu pins the sampler thread (sampler.c) and keeps the
 *      threads created here (the watchdog, the outbox's checkpointer) off
 *      that CPU: they inherit the creating thread's affinity, so the calling
 *      thread is narrowed while they are created and given back its own
 *      mask before lume_runtime_new returns. The caller's thread, which
 *      runs the loop, is the embedder's: `lume run` keeps it off that CPU
 *      itself (lume_thread_avoid_cpu).
 *   3. The umask: the control socket is bound in a private directory
 *      (control.c), not under a changed umask.
 *   4. SIGPIPE: libwebsockets sets it to SIG_IGN when it creates a context
 *      (TLS libraries write to sockets without MSG_NOSIGNAL, and a peer
 *      that resets would end the process). A handler the embedder
 *      installed is put back (it runs, the write fails with EPIPE); only
 *      the default disposition, which would end the process, stays
 *      ignored. */

int lume_thread_avoid_cpu(int cpu, cpu_set_t *saved)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    int e = pthread_getaffinity_np(pthread_self(), sizeof set, &set);
    if (e)
        return -e;
    if (saved)
        *saved = set;
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return -EINVAL;
    CPU_CLR(cpu, &set);
    if (CPU_COUNT(&set) == 0)
        return -EINVAL;
    e = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return e ? -e : 0;
}

/* sampler.cpu: can this machine give the sampler a CPU of its own? If not,
 * nothing is pinned (cfg.sampler.cpu = -1). Then (invariant 2) narrow the
 * calling thread for the threads about to be created; *narrowed says
 * whether to give *saved back. */
static void sampler_cpu_begin(lume_runtime *rt, cpu_set_t *saved, bool *narrowed)
{
    int cpu = rt->cfg.sampler.cpu;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    *narrowed = false;
    if (cpu < 0)
        return;
    if (cpu >= n || n < 2) {
        lume_log(LUME_LOG_WARN, "sampler", "sampler.cpu %d: this machine has %ld CPUs; "
                 "nothing pinned", cpu, n);
        rt->cfg.sampler.cpu = -1;
        return;
    }
    int r = lume_thread_avoid_cpu(cpu, saved);
    if (r == 0)
        *narrowed = true;
    else
        lume_log(LUME_LOG_WARN, "sampler", "cannot keep lume's other threads off CPU %d: %s",
                 cpu, strerror(-r));
}

static void sampler_cpu_end(const cpu_set_t *saved, bool narrowed)
{
    if (!narrowed)
        return;
    int e = pthread_setaffinity_np(pthread_self(), sizeof *saved, saved);
    if (e)
        lume_log(LUME_LOG_WARN, "sampler", "cannot give the calling thread its CPUs back: %s",
                 strerror(e));
}

/* Everything lume_runtime_new does but the log target; on failure *why is
 * the errno for the caller (EINVAL: the configuration is at fault). */
static int runtime_init(lume_runtime *rt, int *why, char **err)
{
    *why = EIO;
    rt->hub = lume_hub_new(&rt->cfg, err);
    if (!rt->hub) {
        *why = EINVAL;
        return -EINVAL;
    }
    if (rt->cfg.net.sign.alg) { /* net.sign: every publish signed (docs/signing.md) */
        if (!(rt->msgsign = lume_msgsign_open(rt->cfg.net.sign.alg, rt->cfg.net.sign.key_file,
                                              err))) {
            *why = EINVAL;
            return -EINVAL;
        }
        lume_log(LUME_LOG_INFO, "sign", "signing every published message: %s, key id %s (%s)",
                 lume_msgsign_alg(rt->msgsign), lume_msgsign_key_id(rt->msgsign),
                 rt->cfg.net.sign.key_file);
    }
    char path[4096];
    /* one runtime per store, and a store no other user can write */
    int r = lume_store_host_open(rt, err);
    if (r < 0) {
        if (r == -EBUSY || r == -EPERM)
            *why = EINVAL; /* the operator's to fix: another lume, or the modes */
        return -1;
    }
    struct sigaction pipe_before;
    sigaction(SIGPIPE, NULL, &pipe_before);
    rt->loop = lume_loop_new(NULL, err);
    if ((pipe_before.sa_flags & SA_SIGINFO) || pipe_before.sa_handler != SIG_DFL)
        sigaction(SIGPIPE, &pipe_before, NULL); /* invariant 4 */
    if (!rt->loop)
        return -1;
    lume_sampler_opts so = {
        .ring_capacity = (size_t)rt->cfg.sampler.ring_size,
        .realtime = rt->cfg.sampler.realtime,
        .rt_priority = rt->cfg.sampler.priority,
        .lock_memory = rt->cfg.sampler.lock_memory,
        .pin = rt->cfg.sampler.cpu >= 0,
        .cpu = rt->cfg.sampler.cpu,
        .latency_ms = rt->cfg.sampler.latency_ms,
        .wake = (void (*)(void *))lume_loop_wake,
        .wake_ud = rt->loop,
    };
    rt->sampler = lume_sampler_new(&so);
    rt->board = lume_board_ctx_new((uint64_t)lume_wall_ns());
    if (!rt->sampler || !rt->board) {
        *err = lume_strdupf("out of memory");
        *why = ENOMEM;
        return -1;
    }
    if (lume_board_load(rt, err) < 0) {
        *why = EINVAL; /* the board file or the board name: the operator's to fix */
        return -1;
    }
    size_t nch = lume_sampler_count(rt->sampler);
    rt->chan_err_log_ms = calloc(nch, sizeof *rt->chan_err_log_ms);
    rt->recent = calloc(nch * LUME_RECENT, sizeof *rt->recent);
    rt->recent_n = calloc(nch, sizeof *rt->recent_n);
    /* no bigger than the ring: a low-rate board's small ring, a small buffer */
    rt->drain_cap = (size_t)rt->cfg.sampler.ring_size < DRAIN_MAX ? (size_t)rt->cfg.sampler.ring_size
                                                                  : DRAIN_MAX;
    rt->drain_buf = malloc(rt->drain_cap * sizeof *rt->drain_buf);
    if (!rt->chan_err_log_ms || !rt->drain_buf || !rt->recent || !rt->recent_n) {
        *err = lume_strdupf("out of memory");
        *why = ENOMEM;
        return -1;
    }
    snprintf(path, sizeof path, "%s/outbox.db", rt->cfg.store);
    rt->outbox = lume_outbox_open(path, &rt->cfg.outbox, err);
    if (!rt->outbox)
        return -1;
    lume_outbox_set_notify(rt->outbox, wake_loop, rt->loop);
    snprintf(path, sizeof path, "%s/state.db", rt->cfg.store);
    rt->kv = lume_kv_open(path, err);
    if (!rt->kv)
        return -1;
    r = lume_watchdog_start(&rt->wd, rt->cfg.sandbox.cpu_budget_ms,
                            rt->cfg.sandbox.hang_limit_ms, rt->cfg.store);
    if (r < 0) {
        *err = lume_strdupf("cannot start the watchdog thread: %s", strerror(-r));
        return -1;
    }
    lume_loop_on_wake(rt->loop, on_wake, rt);
    lume_timer_init(&rt->commit_timer, rt->loop, commit_tick, rt);
    lume_timer_name(&rt->commit_timer, "outbox commit");
    lume_loop_on_turn(rt->loop, after_turn, rt);
    lume_timer_init(&rt->status_timer, rt->loop, status_tick, rt);
    lume_timer_name(&rt->status_timer, "status line");
    lume_timer_init(&rt->deadline_timer, rt->loop, noop_tick, rt);
    lume_timer_name(&rt->deadline_timer, "run_for deadline");
    lume_timer_init(&rt->soon_timer, rt->loop, soon_tick, rt);
    lume_timer_name(&rt->soon_timer, "outbox commit now");
    rt->started_ms = lume_wall_ms();

    /* before the scripts load: the console's log tail shows their loading */
    if (lume_console_start(rt, err) < 0) {
        *why = EINVAL; /* asked for and not possible: the operator's to fix */
        return -1;
    }
    lume_scripts_note_hang(rt);
    lume_keep_start(rt);
    lume_scripts_load_dir(rt);
    if (lume_net_start(rt, err) < 0) {
        char *e = *err;
        *err = lume_strdupf("net: %s", e ? e : "cannot start");
        free(e);
        *why = EINVAL;
        return -1;
    }
    if (lume_twin_host_start(rt, err) < 0) {
        char *e = *err;
        *err = lume_strdupf("twin: %s", e ? e : "cannot start");
        free(e);
        *why = EINVAL;
        return -1;
    }
    if (rt->cfg.watch_scripts)
        lume_scripts_watch(rt);
    char *cerr = NULL;
    if (lume_control_listen(rt, &cerr) < 0) {
        lume_log(LUME_LOG_WARN, "control", "%s (lume reload will not reach this process)",
                 cerr ? cerr : "cannot listen");
        free(cerr);
        cerr = NULL;
    }
    if (lume_repl_sock_listen(rt, &cerr) < 0) {
        lume_log(LUME_LOG_WARN, "repl", "%s (lume repl will not reach this process)",
                 cerr ? cerr : "cannot listen");
        free(cerr);
        cerr = NULL;
    }
    lume_store_host_start(rt);
    lume_log(LUME_LOG_INFO, "lume", "device %s on board %s: %zu sensors, store %s",
             rt->cfg.device_id, rt->cfg.board, nch, rt->cfg.store);
    return 0;
}

static void runtime_teardown(lume_runtime *rt);

lume_runtime *lume_runtime_new(const lume_config *c, char **err)
{
    char *e = NULL;
    int why = ENOMEM;
    lume_runtime *rt = NULL;
    if (!c) {
        e = lume_strdupf("lume_runtime_new: the config is NULL");
        why = EINVAL;
        goto out;
    }
    if (lume_config_check(c, &e) < 0) { /* a config built key by key is checked here */
        why = EINVAL;
        goto out;
    }
    rt = calloc(1, sizeof *rt);
    if (!rt || lume_config_copy(&rt->cfg, c) < 0) {
        free(rt);
        rt = NULL;
        e = lume_strdupf("out of memory");
        goto out;
    }
    lume_log_target_init(&rt->log, rt->cfg.log_level, rt->cfg.log_sink, rt->cfg.log_ud);
    ENTER(rt);
    cpu_set_t saved;
    bool narrowed;
    sampler_cpu_begin(rt, &saved, &narrowed);
    int r = runtime_init(rt, &why, &e);
    sampler_cpu_end(&saved, narrowed);
    if (r < 0)
        runtime_teardown(rt);
    LEAVE();
    if (r < 0) {
        lume_log_target_destroy(&rt->log);
        free(rt);
        rt = NULL;
    }
out:
    if (rt) { /* a message on success is no error */
        free(e);
        e = NULL;
    } else
        errno = lume_err_oom(e) ? ENOMEM : why; /* never blamed on the config */
    if (err)
        *err = e;
    else
        free(e);
    return rt;
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
    lume_loop_reset_late(rt->loop); /* loading scripts is not a stall of the running loop */
    if (rt->mqtt)
        lume_mqtt_start(rt->mqtt);
    if (rt->dps)
        lume_dps_start(rt->dps);
    if (rt->cfg.status_interval_ms > 0)
        lume_timer_start(&rt->status_timer, (int64_t)rt->cfg.status_interval_ms * 1000);
    return 0;
}

int lume_runtime_run(lume_runtime *rt)
{
    ENTER(rt);
    int r = start(rt);
    if (r == 0) {
        r = lume_loop_run(rt->loop); /* 0 when stopped, < 0 when the loop failed */
        lume_outbox_commit(rt->outbox);
        if (r == 0 && rt->store_lost)
            r = -EBUSY; /* another runtime took the store (store_host.c) */
    }
    LEAVE();
    return r;
}

static int run_for(lume_runtime *rt, int ms)
{
    int r = start(rt);
    if (r < 0)
        return r;
    int64_t end = lume_mono_ns() + (int64_t)ms * LUME_NS_PER_MS;
    lume_timer_start(&rt->deadline_timer, (int64_t)ms * 1000);
    while (lume_mono_ns() < end) {
        if ((r = lume_loop_step(rt->loop, ms)) < 0)
            break;
        int64_t left = end - lume_mono_ns();
        if (left > 0 && !lume_timer_pending(&rt->deadline_timer))
            lume_timer_start(&rt->deadline_timer, left / 1000 + 1);
    }
    lume_timer_cancel(&rt->deadline_timer);
    lume_runtime_dispatch(rt);
    return r == -ECANCELED ? 0 : r;
}

int lume_runtime_run_for(lume_runtime *rt, int ms)
{
    ENTER(rt);
    int r = run_for(rt, ms);
    LEAVE();
    return r;
}

void lume_runtime_stop(lume_runtime *rt) { lume_loop_stop(rt->loop); }

int lume_runtime_reload(lume_runtime *rt, const char *name, char **err)
{
    char *e = NULL;
    ENTER(rt);
    int r = lume_scripts_reload(rt, name, &e);
    LEAVE();
    if (err)
        *err = e;
    else
        free(e);
    return r;
}

void lume_runtime_free(lume_runtime *rt)
{
    if (!rt)
        return;
    ENTER(rt);
    runtime_teardown(rt);
    LEAVE();
    lume_log_target_destroy(&rt->log);
    free(rt);
}

/* Stop and release everything rt holds but its log target and itself. */
static void runtime_teardown(lume_runtime *rt)
{
    lume_console_stop(rt); /* its REPL sessions before anything they use */
    lume_net_link_free(rt); /* it drives the session: gone first */
    if (rt->mqtt) {
        lume_outbox_commit(rt->outbox);
        lume_mqtt_free(rt->mqtt); /* DISCONNECT when connected */
        rt->mqtt = NULL;
    }
    if (rt->loop)
        lume_net_stop(rt);
    lume_twin_host_free(rt);
    if (rt->sampler)
        lume_sampler_stop(rt->sampler);
    if (rt->loop) {
        lume_timer_cancel(&rt->commit_timer);
        lume_timer_cancel(&rt->status_timer);
        lume_timer_cancel(&rt->deadline_timer);
        lume_timer_cancel(&rt->reload_timer);
        lume_timer_cancel(&rt->soon_timer);
        lume_repl_sock_close(rt); /* its sessions' states before the watchdog */
        lume_timer_cancel(&rt->keep_timer);
    }
    lume_store_host_stop(rt);
    lume_scripts_free_all(rt);
    lume_outsvc_free(rt->outputs); /* every fail-safe written (outsvc.h rule 6) */
    rt->outputs = NULL;
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
    lume_console_free(rt);
    if (rt->sampler)
        lume_sampler_free(rt->sampler);
    if (rt->board)
        lume_board_ctx_free(rt->board);
    free(rt->drain_buf);
    free(rt->chan_err_log_ms);
    free(rt->recent);
    free(rt->recent_n);
    free(rt->board_desc);
    lume_hub_free(rt->hub);
    lume_msgsign_free(rt->msgsign);
    lume_sim_free(rt->sim);
    lume_config_free(&rt->cfg);
}

lume_services *lume_runtime_services(lume_runtime *rt) { return &rt->sv; }
lume_loop *lume_runtime_loop(lume_runtime *rt) { return rt->loop; }
lume_sampler *lume_runtime_sampler(lume_runtime *rt) { return rt->sampler; }
lume_outbox *lume_runtime_outbox(lume_runtime *rt) { return rt->outbox; }
const lume_config *lume_runtime_config(lume_runtime *rt) { return &rt->cfg; }
