/* runtime/console.c — the web console: one page (console/index.html,
 * console.js, console.css) and a WebSocket, served by a vhost of the
 * runtime's own libwebsockets context, on the loop thread. No second event
 * loop, no thread.
 *
 * HTTP: GET /, /index.html, /console.js, /console.css — the files of
 * console.dir, read once at start, each with its Content-Type, an ETag (a
 * hash of the bytes) and "Cache-Control: no-cache" (the browser asks again
 * and gets 304 Not Modified while the file is the same). Anything else: 404.
 *
 * Access. With console.token set, every request carries it: "?token=" in
 * the URL (the page then sets a cookie, lume_console_token, HttpOnly and
 * SameSite=Strict, so its scripts and the WebSocket carry it too), the
 * cookie, or "Authorization: Bearer TOKEN". Without it: 401 on HTTP; the
 * WebSocket is closed at once with 1008 (policy violation). Without a token
 * the console listens only on loopback (config.c refuses anything else).
 * A WebSocket whose Origin is not the page's own host is closed the same
 * way (a web page elsewhere cannot drive a loopback console).
 *
 * WebSocket protocol ("lume-console"): JSON text messages, each an object
 * with a string "type".
 *   server -> client
 *     hello   {device, board, sensors:[{name, unit}], period_ms, repl, log: "lines"}
 *     points  {t: wall ms, d: {CHANNEL: [min, max, last, n]}}  every PERIOD_MS
 *             for the channels that had samples in the slot
 *     stats   {stats: lume stats, twin: {desired, reported}}   every STATS_MS
 *     log     {text: "HH:MM:SS.mmm level component: msg\n..."}  new log lines
 *     eval    {id, status: "ok"|"more"|"error", output}         a REPL answer
 *     complete {id, candidates: [...]}
 *     pong    {id}
 *     error   {error, id?}    a message that was not understood
 *   client -> server
 *     eval {id, code}   the REPL (bindings/repl.h, one session per
 *                       connection; ".cmd" is a dot-command)
 *     complete {id, text}   interrupt (drops a pending multi-line chunk)
 *     ping {id}
 * A malformed frame (not JSON, not an object, no type), a binary frame, an
 * unknown type or a message over MAX_MSG bytes gets an error message; the
 * connection stays open and nothing else changes.
 *
 * Keeping the sampler fast. Samples are folded into a per-channel
 * min/max/last on the loop as it drains the ring (lume_console_sample: a
 * compare and a store), sent once per PERIOD_MS whatever the sample rate.
 * Each client has a queue of at most QUEUE_MAX messages; a client that
 * reads slower than the console writes loses the newest frames (counted in
 * "console": frames_dropped), never holds memory or the loop.
 *
 * A WebSocket connection's life:
 *
 *   upgrade ─► ESTABLISHED ── bad token or foreign Origin ──► close 1008
 *                  │ hello queued; first client: the tick timer starts
 *                  ▼
 *   ┌───────────────────────────────┐ RECEIVE: fragments gathered up to
 *   │ OPEN                          │ MAX_MSG; a whole message handled
 *   │ queue ≤ QUEUE_MAX (full: drop │ (answer queued) or answered "error"
 *   │ newest, count); WRITEABLE     │
 *   │ sends one message, asks again │
 *   └───────────────────────────────┘
 *                  │ peer closes, write fails, runtime ends
 *                  ▼
 *   CLOSED: queue released, REPL state freed; last client: the timer stops
 *
 * Invariants:
 *   1. Loop thread only. The log tail comes from the runtime's log target
 *      (lume_log_tail), which keeps its last lines whoever logs them.
 *   2. Per client, queued messages never exceed QUEUE_MAX; a message is
 *      shared (refcounted) between the clients it goes to.
 *   3. No sample is sent one by one: at most one points message per
 *      PERIOD_MS reaches each client.
 *   4. A client's bytes never reach anything but its own answers. */
#include "console.h"
#include "repl.h"
#include "services.h"
#include "twin_host.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>

#define PERIOD_MS 100
#define STATS_MS 1000
#define MAX_MSG (64 * 1024)
#define QUEUE_MAX 64
#define MAX_ASSET (512 * 1024)
#define HELLO_LOG 100

typedef struct asset {
    const char *path;     /* "/console.js" */
    const char *file;
    const char *type;
    char       *body;
    size_t      len;
    char        etag[24];
} asset;

typedef struct msg {      /* shared by the clients it is queued for */
    int    refs;
    size_t len;
    unsigned char buf[];  /* LWS_PRE, then len bytes */
} msg;

typedef struct client {
    struct lume_console *c;
    struct lws    *wsi;
    struct client *next;
    bool           ws;          /* a WebSocket in the list */
    /* HTTP */
    const asset   *a;
    size_t         sent;
    /* WebSocket */
    msg           *q[QUEUE_MAX];
    int            qh, qn;
    char          *rx;
    size_t         rxn;
    bool           rx_over;     /* the message in progress is over MAX_MSG */
    bool           rx_binary;
    lume_repl     *repl;        /* made at the first eval */
} client;

struct lume_console {
    lume_runtime     *rt;
    struct lws_vhost *vh;
    struct lws_protocols protocols[2];
    asset             assets[3];
    char             *token;
    client           *clients;
    int               nclients;
    lume_timer        tick;
    bool              stopped;      /* lume_console_stop: the runtime is ending */
    int               ticks;
    size_t            nch;
    struct acc { double min, max, last; uint32_t n; } *acc;
    uint64_t          log_sent;     /* the runtime log's lines the clients have
                                       been sent (lume_log_tail's sequence) */
    /* counters (lume stats: console) */
    uint64_t          frames_dropped, bad_messages, refused, connections;
};

static const char *const TYPES = "eval, complete, interrupt, ping";

/* ---- messages and queues -------------------------------------------------- */

/* Replace each byte that does not belong to well-formed UTF-8 with '?': a
 * browser fails the whole connection on a text frame that is not UTF-8, and
 * script output, log lines and names may hold any bytes. */
static void utf8_clean(unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        size_t k = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3
                               : (b & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = k > 0 && i + k <= n;
        for (size_t j = 1; ok && j < k; j++)
            ok = (p[i + j] & 0xC0) == 0x80;
        if (ok && k == 2)
            ok = b >= 0xC2; /* overlong */
        if (ok && k == 3) {
            unsigned cp = (b & 0x0Fu) << 12 | (p[i + 1] & 0x3Fu) << 6 | (p[i + 2] & 0x3Fu);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && k == 4) {
            unsigned cp = (b & 0x07u) << 18 | (p[i + 1] & 0x3Fu) << 12;
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            p[i++] = '?';
            continue;
        }
        i += k;
    }
}

static msg *msg_new(const char *s, size_t len)
{
    msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return NULL;
    m->refs = 0;
    m->len = len;
    memcpy(m->buf + LWS_PRE, s, len);
    utf8_clean(m->buf + LWS_PRE, len);
    return m;
}

static void msg_unref(msg *m)
{
    if (m && --m->refs <= 0)
        free(m);
}

/* Queue m for cl (a full queue drops it, counted). m with no reference
 * left afterwards is freed by the caller's msg_unref pattern: callers take
 * one reference while sending to many. */
static void enqueue(client *cl, msg *m)
{
    if (cl->qn >= QUEUE_MAX) {
        cl->c->frames_dropped++;
        return;
    }
    m->refs++;
    cl->q[(cl->qh + cl->qn++) % QUEUE_MAX] = m;
    lws_callback_on_writable(cl->wsi);
}

static void send_str(client *cl, const char *s)
{
    if (!s)
        return;
    msg *m = msg_new(s, strlen(s));
    if (!m)
        return;
    m->refs = 1;
    enqueue(cl, m);
    msg_unref(m);
}

static void send_json(client *cl, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    send_str(cl, s);
    free(s);
    cJSON_Delete(o);
}

static void broadcast(struct lume_console *c, const char *s, size_t len)
{
    msg *m = msg_new(s, len);
    if (!m)
        return;
    m->refs = 1;
    for (client *cl = c->clients; cl; cl = cl->next)
        enqueue(cl, m);
    msg_unref(m);
}

static void send_error(client *cl, const cJSON *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_error(client *cl, const cJSON *id, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    cl->c->bad_messages++;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    cJSON_AddStringToObject(o, "error", why);
    if (id)
        cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, 1));
    send_json(cl, o);
}

/* ---- the tick: points, stats, log ----------------------------------------- */

static void send_points(struct lume_console *c)
{
    char buf[16384];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"type\":\"points\",\"t\":%lld,\"d\":{",
                                (long long)lume_wall_ms());
    bool any = false;
    for (size_t ch = 0; ch < c->nch; ch++) {
        struct acc *a = &c->acc[ch];
        if (!a->n)
            continue;
        /* (a board of some hundred channels fills the buffer: the rest wait
         * for the next slot, their min/max kept) */
        if (n + 128 >= sizeof buf)
            break;
        if (isfinite(a->min) && isfinite(a->max) && isfinite(a->last)) {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"%zu\":[%.9g,%.9g,%.9g,%u]",
                                  any ? "," : "", ch, a->min, a->max, a->last, a->n);
            any = true;
        }
        a->n = 0;
    }
    if (!any)
        return;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "}}");
    broadcast(c, buf, n);
}

static void send_stats(struct lume_console *c)
{
    char *stats = lume_runtime_stats_json(c->rt);
    const cJSON *desired = lume_twin_host_desired(c->rt);
    char *d = desired ? cJSON_PrintUnformatted(desired) : NULL;
    char *r = lume_twin_host_reported_json(c->rt);
    char *s = lume_strdupf("{\"type\":\"stats\",\"stats\":%s,\"twin\":{\"desired\":%s,"
                           "\"reported\":%s}}", stats ? stats : "{}", d ? d : "{}",
                           r ? r : "{}");
    if (s)
        broadcast(c, s, strlen(s));
    free(s);
    free(r);
    free(d);
    free(stats);
}

/* New lines of the runtime's log (its target keeps the last LUME_LOG_RING,
 * core/base/log.h) to every client. */
static void send_log(struct lume_console *c)
{
    char *text = lume_log_tail(&lume_runtime_services(c->rt)->log, &c->log_sent, LUME_LOG_RING);
    if (text && *text) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "log");
        cJSON_AddStringToObject(o, "text", text);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (s)
            broadcast(c, s, strlen(s));
        free(s);
    }
    free(text);
}

static void tick(lume_timer *t)
{
    struct lume_console *c = t->ud;
    if (!c->nclients)
        return; /* the last one left: the timer stops */
    send_points(c);
    send_log(c);
    if (c->ticks++ % (STATS_MS / PERIOD_MS) == 0)
        send_stats(c);
    lume_timer_start(t, PERIOD_MS * 1000);
}

void lume_console_sample(struct lume_console *c, unsigned channel, double value)
{
    if (!c->nclients || channel >= c->nch)
        return;
    struct acc *a = &c->acc[channel];
    if (!a->n++) {
        a->min = a->max = value;
    } else {
        if (value < a->min)
            a->min = value;
        if (value > a->max)
            a->max = value;
    }
    a->last = value;
}

/* ---- access ----------------------------------------------------------------- */

static bool same(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

/* The token this request carries (query, cookie or bearer), or "". */
static void request_token(struct lws *wsi, char *out, size_t cap)
{
    char buf[1024];
    out[0] = 0;
    const char *q = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
    if (q) {
        snprintf(out, cap, "%s", q);
        return;
    }
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
        !strncmp(buf, "Bearer ", 7)) {
        snprintf(out, cap, "%s", buf + 7);
        return;
    }
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_COOKIE) > 0) {
        for (char *p = buf; (p = strstr(p, "lume_console_token=")); p++) {
            if (p != buf && p[-1] != ' ' && p[-1] != ';')
                continue;
            p += strlen("lume_console_token=");
            size_t n = strcspn(p, "; ");
            snprintf(out, cap, "%.*s", (int)n, p);
            return;
        }
    }
}

static bool authorized(struct lume_console *c, struct lws *wsi)
{
    if (!c->token)
        return true;
    char tok[1024];
    request_token(wsi, tok, sizeof tok);
    return tok[0] && same(tok, c->token);
}

/* A WebSocket from a page of another site (its Origin is not our Host). */
static bool foreign_origin(struct lws *wsi)
{
    char origin[300], host[300];
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
        return false; /* not a browser: the token decides */
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        return true;
    const char *o = strstr(origin, "://");
    return !o || strcmp(o + 3, host) != 0;
}

/* ---- requests ----------------------------------------------------------------- */

static lume_repl *session(client *cl, const cJSON *id)
{
    if (cl->repl)
        return cl->repl;
    char *err = NULL;
    cl->repl = lume_repl_new(cl->c->rt, &err);
    if (!cl->repl)
        send_error(cl, id, "eval: cannot start a REPL session: %s", err ? err : "out of memory");
    free(err);
    return cl->repl;
}

/* eval {id, code}: a line for the evaluator (".cmd": a dot-command), the
 * answer {type: eval, id, status, output}. The loop runs the evaluation:
 * its CPU budget and wall-clock limit (repl.h) bound it; the console has
 * no thread to deliver a Ctrl-C meanwhile. */
static void on_eval(client *cl, const cJSON *id, const cJSON *code)
{
    if (!cJSON_IsString(code)) {
        send_error(cl, id, "eval: \"code\" must be a string");
        return;
    }
    lume_repl *r = session(cl, id);
    if (!r)
        return;
    const char *line = code->valuestring;
    char *out = NULL;
    int st = line[0] == '.' ? lume_repl_dot(r, line, &out)
                            : lume_repl_eval(r, line, strlen(line), &out);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "eval");
    if (id)
        cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, 1));
    cJSON_AddStringToObject(o, "status", st == LUME_REPL_OK     ? "ok"
                                         : st == LUME_REPL_MORE ? "more"
                                                                : "error");
    cJSON_AddStringToObject(o, "output", out ? out : "");
    free(out);
    send_json(cl, o);
}

/* complete {id, text}: {type: complete, id, candidates: [...]} */
static void on_complete(client *cl, const cJSON *id, const cJSON *text)
{
    if (!cJSON_IsString(text)) {
        send_error(cl, id, "complete: \"text\" must be a string");
        return;
    }
    lume_repl *r = session(cl, id);
    char **cands = NULL;
    size_t n = 0;
    if (!r || lume_repl_complete(r, text->valuestring, &cands, &n) < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "complete");
    if (id)
        cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, 1));
    cJSON *a = cJSON_AddArrayToObject(o, "candidates");
    for (size_t i = 0; i < n && i < 200; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(cands[i]));
    lume_repl_free_cands(cands, n);
    send_json(cl, o);
}

static void on_message(client *cl, const char *data, size_t len)
{
    cJSON *m = cJSON_ParseWithLength(data, len);
    if (!m) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= data && at <= data + len ? (size_t)(at - data) : 0;
        send_error(cl, NULL, "malformed message: not JSON (at byte %zu of %zu)", off, len);
        return;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
    if (!cJSON_IsObject(m) || !cJSON_IsString(type)) {
        send_error(cl, NULL, "malformed message: expected a JSON object with a string "
                             "\"type\" (one of: %s)", TYPES);
    } else if (!strcmp(type->valuestring, "ping")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "pong");
        if (id)
            cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, 1));
        send_json(cl, o);
    } else if (!strcmp(type->valuestring, "eval")) {
        on_eval(cl, id, cJSON_GetObjectItemCaseSensitive(m, "code"));
    } else if (!strcmp(type->valuestring, "complete")) {
        on_complete(cl, id, cJSON_GetObjectItemCaseSensitive(m, "text"));
    } else if (!strcmp(type->valuestring, "interrupt")) {
        /* an evaluation holds the loop, so none runs while this is read:
         * drop the pending multi-line chunk (Ctrl-C at a continuation
         * prompt); a runaway one is ended by its CPU budget */
        if (cl->repl)
            lume_repl_reset(cl->repl);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "eval");
        if (id)
            cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, 1));
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddStringToObject(o, "output", "");
        send_json(cl, o);
    } else {
        char t[64];
        snprintf(t, sizeof t, "%s", type->valuestring);
        send_error(cl, id, "unknown message type \"%s\" (known: %s)", t, TYPES);
    }
    cJSON_Delete(m);
}

static void on_receive(client *cl, struct lws *wsi, const void *in, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        cl->rxn = 0;
        cl->rx_over = false;
        cl->rx_binary = lws_frame_is_binary(wsi);
    }
    if (!cl->rx_over && cl->rxn + len > MAX_MSG)
        cl->rx_over = true;
    if (!cl->rx_over && !cl->rx_binary) {
        if (!cl->rx) {
            cl->rx = malloc(MAX_MSG);
            if (!cl->rx) {
                cl->rx_over = true;
                return;
            }
        }
        memcpy(cl->rx + cl->rxn, in, len);
        cl->rxn += len;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return;
    if (cl->rx_binary)
        send_error(cl, NULL, "binary frames are not part of the protocol: send JSON text");
    else if (cl->rx_over)
        send_error(cl, NULL, "message too large: more than %d bytes", MAX_MSG);
    else
        on_message(cl, cl->rx, cl->rxn);
    cl->rxn = 0;
}

static void hello(struct lume_console *c, client *cl)
{
    const lume_config *cfg = &lume_runtime_services(c->rt)->cfg;
    lume_sampler *s = lume_runtime_services(c->rt)->sampler;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "hello");
    cJSON_AddStringToObject(o, "device", cfg->device_id);
    cJSON_AddStringToObject(o, "board", cfg->board);
    cJSON_AddStringToObject(o, "version", lume_version());
    cJSON_AddNumberToObject(o, "period_ms", PERIOD_MS);
    cJSON_AddBoolToObject(o, "repl", true);
    cJSON *a = cJSON_AddArrayToObject(o, "sensors");
    for (unsigned ch = 0; ch < c->nch; ch++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", lume_sampler_name(s, ch));
        const char *unit = lume_sampler_unit(s, ch);
        cJSON_AddStringToObject(e, "unit", unit ? unit : "");
        cJSON_AddItemToArray(a, e);
    }
    /* the last lines; the others were just sent what is older (see
     * ESTABLISHED), newer lines come with the next tick */
    uint64_t seq = 0;
    char *text = lume_log_tail(&lume_runtime_services(c->rt)->log, &seq, HELLO_LOG);
    cJSON_AddStringToObject(o, "log", text ? text : "");
    free(text);
    if (seq > c->log_sent)
        send_log(c); /* cl is not in the list yet: it has these */
    send_json(cl, o);
}

static void client_close(struct lume_console *c, client *cl)
{
    if (cl->ws) {
        for (client **p = &c->clients; *p; p = &(*p)->next)
            if (*p == cl) {
                *p = cl->next;
                break;
            }
        c->nclients--;
        cl->ws = false;
    }
    while (cl->qn) {
        msg_unref(cl->q[cl->qh]);
        cl->qh = (cl->qh + 1) % QUEUE_MAX;
        cl->qn--;
    }
    free(cl->rx);
    cl->rx = NULL;
    lume_repl_free(cl->repl);
    cl->repl = NULL;
}

/* ---- HTTP ----------------------------------------------------------------- */

static int http_done(struct lws *wsi)
{
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_request(struct lume_console *c, client *cl, struct lws *wsi, const char *uri)
{
    const asset *a = NULL;
    if (!strcmp(uri, "/"))
        a = &c->assets[0];
    for (int i = 0; !a && i < 3; i++)
        if (!strcmp(uri, c->assets[i].path))
            a = &c->assets[i];
    if (!authorized(c, wsi)) {
        c->refused++;
        lume_log(LUME_LOG_WARN, "console", "refused %s: %s console token", uri,
                 lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COOKIE) ||
                         lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) ||
                         lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS)
                     ? "a wrong"
                     : "no");
        lws_return_http_status(wsi, HTTP_STATUS_UNAUTHORIZED,
                               "this console needs its token: open /?token=TOKEN");
        return http_done(wsi);
    }
    if (!a) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return http_done(wsi);
    }
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
                                       *end = hdr + sizeof hdr - 1;
    char inm[64];
    bool fresh = lws_hdr_copy(wsi, inm, sizeof inm, WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 &&
                 !strcmp(inm, a->etag);
    if (lws_add_http_common_headers(wsi, fresh ? HTTP_STATUS_NOT_MODIFIED : HTTP_STATUS_OK,
                                    a->type, fresh ? 0 : a->len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"etag:",
                                    (const unsigned char *)a->etag, (int)strlen(a->etag), &p,
                                    end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-cache", 8, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
                                    (const unsigned char *)"nosniff", 7, &p, end))
        return -1;
    char tok[300];
    if (c->token && a == &c->assets[0] &&
        lws_get_urlarg_by_name(wsi, "token=", tok, sizeof tok)) {
        char cookie[400];
        int n = snprintf(cookie, sizeof cookie,
                         "lume_console_token=%s; Path=/; HttpOnly; SameSite=Strict",
                         c->token);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"set-cookie:",
                                        (const unsigned char *)cookie, n, &p, end))
            return -1;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (fresh)
        return http_done(wsi);
    cl->a = a;
    cl->sent = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_write(client *cl, struct lws *wsi)
{
    if (!cl->a)
        return 0;
    unsigned char buf[LWS_PRE + 16384];
    size_t n = cl->a->len - cl->sent;
    if (n > sizeof buf - LWS_PRE)
        n = sizeof buf - LWS_PRE;
    memcpy(buf + LWS_PRE, cl->a->body + cl->sent, n);
    bool last = cl->sent + n == cl->a->len;
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
        (int)n)
        return -1;
    cl->sent += n;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    cl->a = NULL;
    return http_done(wsi);
}

/* ---- the callback ----------------------------------------------------------- */

static int cb_console(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                      void *in, size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct lume_console *c = vh ? lws_get_vhost_user(vh) : NULL;
    client *cl = user;
    if (!c)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    if (c->stopped) /* the runtime is ending: every connection goes with it */
        return reason == LWS_CALLBACK_CLOSED || reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL ? 0 : -1;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_request(c, cl, wsi, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_write(cl, wsi);
    case LWS_CALLBACK_ESTABLISHED: {
        memset(cl, 0, sizeof *cl);
        cl->c = c;
        cl->wsi = wsi;
        const char *why = !authorized(c, wsi) ? "a missing or wrong console token"
                          : foreign_origin(wsi) ? "a page of another origin"
                                                : NULL;
        if (why) {
            c->refused++;
            lume_log(LUME_LOG_WARN, "console", "WebSocket refused: %s", why);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                             (unsigned char *)why, strlen(why));
            return -1;
        }
        send_log(c);   /* the others get what is new first */
        hello(c, cl);  /* then cl the tail, up to there */
        cl->ws = true;
        cl->next = c->clients;
        c->clients = cl;
        c->connections++;
        if (c->nclients++ == 0) {
            memset(c->acc, 0, c->nch * sizeof *c->acc);
            c->ticks = 0;
            lume_timer_start(&c->tick, 0);
        }
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (cl->ws)
            on_receive(cl, wsi, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!cl->ws || !cl->qn)
            return 0;
        msg *m = cl->q[cl->qh];
        cl->qh = (cl->qh + 1) % QUEUE_MAX;
        cl->qn--;
        int w = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        bool ok = w >= (int)m->len;
        msg_unref(m);
        if (!ok)
            return -1;
        if (cl->qn)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (cl && cl->c)
            client_close(c, cl);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- start and end ---------------------------------------------------------- */

static int load_asset(asset *a, const char *dir, char **err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, a->file);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0) {
        *err = lume_strdupf("console: cannot read %s: %s (console.dir is %s)", path,
                            strerror(errno), dir);
        if (f)
            fclose(f);
        return -1;
    }
    if (st.st_size > MAX_ASSET) {
        *err = lume_strdupf("console: %s is %lld bytes, more than %d", path,
                            (long long)st.st_size, MAX_ASSET);
        fclose(f);
        return -1;
    }
    a->len = (size_t)st.st_size;
    a->body = malloc(a->len + 1);
    if (!a->body || fread(a->body, 1, a->len, f) != a->len) {
        *err = lume_strdupf("console: cannot read %s", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < a->len; i++)
        h = (h ^ (unsigned char)a->body[i]) * 1099511628211ull;
    snprintf(a->etag, sizeof a->etag, "\"%016llx\"", (unsigned long long)h);
    return 0;
}

int lume_console_start(lume_runtime *rt, char **err)
{
    lume_services *sv = lume_runtime_services(rt);
    const lume_config *cfg = &sv->cfg;
    if (!cfg->console.listen)
        return 0;
    char host[256];
    int port;
    if (lume_console_addr_parse(cfg->console.listen, host, sizeof host, &port) < 0) {
        *err = lume_strdupf("console.listen: expected ADDRESS:PORT, got \"%s\"",
                            cfg->console.listen);
        return -1;
    }
    struct lume_console *c = calloc(1, sizeof *c);
    if (!c) {
        *err = lume_strdupf("out of memory");
        return -1;
    }
    sv->console = c;
    c->rt = rt;
    c->assets[0] = (asset){.path = "/index.html", .file = "index.html",
                           .type = "text/html; charset=utf-8"};
    c->assets[1] = (asset){.path = "/console.js", .file = "console.js",
                           .type = "text/javascript; charset=utf-8"};
    c->assets[2] = (asset){.path = "/console.css", .file = "console.css",
                           .type = "text/css; charset=utf-8"};
    for (int i = 0; i < 3; i++)
        if (load_asset(&c->assets[i], cfg->console.dir, err) < 0)
            return -1;
    c->token = cfg->console.token ? strdup(cfg->console.token) : NULL;
    c->nch = lume_sampler_count(sv->sampler);
    c->acc = calloc(c->nch ? c->nch : 1, sizeof *c->acc);
    if ((cfg->console.token && !c->token) || !c->acc) {
        *err = lume_strdupf("out of memory");
        return -1;
    }
    lume_timer_init(&c->tick, sv->loop, tick, c);
    c->protocols[0] = (struct lws_protocols){
        .name = "lume-console", .callback = cb_console,
        .per_session_data_size = sizeof(client), .rx_buffer_size = 4096};

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = host;
    info.protocols = c->protocols;
    info.vhost_name = "lume-console";
    info.user = c;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (strchr(host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    c->vh = lws_create_vhost(lume_loop_lws(sv->loop), &info);
    if (!c->vh) {
        *err = lume_strdupf("console: cannot listen on %s (address in use, or not an "
                            "address of this machine)", cfg->console.listen);
        return -1;
    }
    lume_log(LUME_LOG_INFO, "console", "web console at http://%s/%s", cfg->console.listen,
             c->token ? " (token required)" : "");
    return 0;
}

void lume_console_stop(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_console *c = sv->console;
    if (!c || c->stopped)
        return;
    c->stopped = true;
    lume_timer_cancel(&c->tick);
    /* the connections end with the context (lume_loop_free); their
     * callbacks then find a stopped console and no client state */
    for (client *cl = c->clients, *next; cl; cl = next) {
        next = cl->next;
        client_close(c, cl);
        cl->c = NULL;
    }
}

void lume_console_free(lume_runtime *rt)
{
    lume_services *sv = lume_runtime_services(rt);
    struct lume_console *c = sv->console;
    if (!c)
        return;
    if (!c->stopped)
        lume_console_stop(rt);
    for (int i = 0; i < 3; i++)
        free(c->assets[i].body);
    free(c->acc);
    free(c->token);
    free(c);
    sv->console = NULL;
}

void lume_console_stats_json(lume_runtime *rt, cJSON *root)
{
    struct lume_console *c = lume_runtime_services(rt)->console;
    if (!c)
        return;
    cJSON *o = cJSON_AddObjectToObject(root, "console");
    cJSON_AddStringToObject(o, "listen", lume_runtime_services(rt)->cfg.console.listen);
    cJSON_AddNumberToObject(o, "clients", c->nclients);
    cJSON_AddNumberToObject(o, "connections", (double)c->connections);
    cJSON_AddNumberToObject(o, "refused", (double)c->refused);
    cJSON_AddNumberToObject(o, "frames_dropped", (double)c->frames_dropped);
    cJSON_AddNumberToObject(o, "bad_messages", (double)c->bad_messages);
}
