/* core/loop.c — see loop.h. */
#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define MAX_WAKE 8
#define MAX_PROTOCOLS 16

struct lume_watch {
    lume_loop  *loop;
    struct lws *wsi;
    int         fd;
    void      (*fn)(void *ud, int fd);
    void       *ud;
    bool        closing;
};

struct lume_loop {
    struct lws_context  *ctx;
    struct lws_vhost    *vh;
    atomic_bool          stop;
    int                  nwake;
    struct { void (*fn)(void *); void *ud; } wake[MAX_WAKE];
    struct lws_protocols protocols[MAX_PROTOCOLS];
};

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    lume_log(level == LLL_ERR ? LUME_LOG_ERROR : level == LLL_WARN ? LUME_LOG_WARN
                                                                    : LUME_LOG_DEBUG,
             "lws", "%.*s", (int)n, line);
}

static int cb_core(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                   void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    lume_loop *l = ctx ? lws_context_user(ctx) : NULL;
    lume_watch *w;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (l)
            for (int i = 0; i < l->nwake; i++)
                l->wake[i].fn(l->wake[i].ud);
        break;
    case LWS_CALLBACK_RAW_RX_FILE:
        w = lws_get_opaque_user_data(wsi);
        if (w && !w->closing)
            w->fn(w->ud, w->fd);
        break;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        w = lws_get_opaque_user_data(wsi);
        if (w) {
            lws_set_opaque_user_data(wsi, NULL);
            w->wsi = NULL;
            if (w->closing)
                free(w);
        }
        break;
    default:
        break;
    }
    return 0;
}

lume_loop *lume_loop_new(const struct lws_protocols *extra, char **err)
{
    lume_loop *l = calloc(1, sizeof *l);
    if (!l) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    int n = 0;
    l->protocols[n++] = (struct lws_protocols){.name = "lume-core", .callback = cb_core};
    for (; extra && extra->name; extra++) {
        if (n >= MAX_PROTOCOLS - 1) {
            *err = lume_strdupf("loop: too many protocols (max %d)", MAX_PROTOCOLS - 2);
            free(l);
            return NULL;
        }
        l->protocols[n++] = *extra;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = l->protocols;
    info.user = l;
    /* No TLS library initialisation here: it costs ~4 MB of RSS (OpenSSL on
     * Debian) and most devices never open a wss:// or https:// connection.
     * The vhosts that need TLS (net.c, fetch.c) ask for it themselves. */
    info.options = 0;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;
    l->ctx = lws_create_context(&info);
    if (!l->ctx) {
        *err = lume_strdupf("loop: lws_create_context failed");
        free(l);
        return NULL;
    }
    l->vh = lws_get_vhost_by_name(l->ctx, "default");
    if (!l->vh) {
        *err = lume_strdupf("loop: no default vhost");
        lws_context_destroy(l->ctx);
        free(l);
        return NULL;
    }
    return l;
}

void lume_loop_free(lume_loop *l)
{
    if (!l)
        return;
    lws_context_destroy(l->ctx);
    free(l);
}

struct lws_context *lume_loop_lws(lume_loop *l) { return l->ctx; }
struct lws_vhost *lume_loop_vhost(lume_loop *l) { return l->vh; }

int lume_loop_step(lume_loop *l, int timeout_ms)
{
    if (atomic_load(&l->stop))
        return -1;
    /* lws 4.1 ignores the timeout and waits for its next event or timer;
     * a timer keeps step() bounded for callers that need it. */
    (void)timeout_ms;
    int r = lws_service(l->ctx, 0);
    if (r < 0 || atomic_load(&l->stop))
        return -1;
    return 0;
}

int lume_loop_run(lume_loop *l)
{
    while (lume_loop_step(l, 1000) >= 0)
        ;
    return 0;
}

static void drain_tick(lume_timer *t) { (void)t; }

bool lume_loop_drain(lume_loop *l, int ms, bool (*done)(void *ud), void *ud)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
    lume_timer t;
    lume_timer_init(&t, l, drain_tick, NULL);
    while (!done(ud)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (now >= end)
            break;
        lume_timer_start(&t, (end - now) * 1000); /* bound the wait */
        if (lws_service(l->ctx, 0) < 0)
            break;
    }
    lume_timer_cancel(&t);
    return done(ud);
}

void lume_loop_stop(lume_loop *l)
{
    atomic_store(&l->stop, true);
    lws_cancel_service(l->ctx);
}

bool lume_loop_stopped(const lume_loop *l) { return atomic_load(&l->stop); }

void lume_loop_wake(lume_loop *l) { lws_cancel_service(l->ctx); }

int lume_loop_on_wake(lume_loop *l, void (*fn)(void *ud), void *ud)
{
    if (l->nwake >= MAX_WAKE)
        return -ENOSPC;
    l->wake[l->nwake].fn = fn;
    l->wake[l->nwake].ud = ud;
    l->nwake++;
    return 0;
}

static void timer_cb(lws_sorted_usec_list_t *sul)
{
    lume_timer *t = lws_container_of(sul, lume_timer, sul);
    t->fn(t);
}

void lume_timer_init(lume_timer *t, lume_loop *l, lume_timer_fn fn, void *ud)
{
    memset(t, 0, sizeof *t);
    t->loop = l;
    t->fn = fn;
    t->ud = ud;
}

void lume_timer_start(lume_timer *t, int64_t delay_us)
{
    if (delay_us < 0)
        delay_us = 0;
    lws_sul_schedule(t->loop->ctx, 0, &t->sul, timer_cb, (lws_usec_t)delay_us);
}

void lume_timer_cancel(lume_timer *t)
{
    if (t->loop)
        lws_sul_cancel(&t->sul);
}

bool lume_timer_pending(const lume_timer *t)
{
    return t->sul.list.owner != NULL;
}

lume_watch *lume_loop_watch_fd(lume_loop *l, int fd, void (*fn)(void *ud, int fd),
                               void *ud, char **err)
{
    lume_watch *w = calloc(1, sizeof *w);
    if (!w) {
        *err = lume_strdupf("out of memory");
        return NULL;
    }
    w->loop = l;
    w->fd = fd;
    w->fn = fn;
    w->ud = ud;
    lws_adopt_desc_t d;
    memset(&d, 0, sizeof d);
    d.vh = l->vh;
    d.type = LWS_ADOPT_RAW_FILE_DESC;
    d.fd.filefd = fd;
    d.vh_prot_name = "lume-core";
    d.opaque = w;
    w->wsi = lws_adopt_descriptor_vhost_via_info(&d);
    if (!w->wsi) {
        *err = lume_strdupf("loop: cannot watch fd %d", fd);
        free(w);
        return NULL;
    }
    return w;
}

void lume_loop_unwatch(lume_watch *w)
{
    if (!w)
        return;
    if (!w->wsi) {
        free(w);
        return;
    }
    /* lws closes the fd it adopted; hand it a duplicate-free path: mark the
     * watch closing and let RAW_CLOSE_FILE free it. */
    w->closing = true;
    lws_set_timeout(w->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}
