/* core/base/log.c — see log.h. */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static _Atomic int      g_level = LUME_LOG_INFO;
static pthread_mutex_t  g_mu = PTHREAD_MUTEX_INITIALIZER;
static lume_log_sink    g_sink = lume_log_stderr;
static void            *g_sink_ud;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *lume_log_level_name(int level)
{
    if (level < LUME_LOG_DEBUG || level > LUME_LOG_ERROR)
        return "?";
    return level_names[level];
}

int lume_log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i <= LUME_LOG_ERROR; i++)
        if (!strcasecmp(name, level_names[i]))
            return i;
    return -1;
}

static _Thread_local lume_log_target *tl_target;

static bool level_ok(int level) { return level >= LUME_LOG_DEBUG && level <= LUME_LOG_ERROR; }

#define RING_LINE 256
struct lume_log_ring {
    uint64_t seq;                          /* lines kept so far */
    char     line[LUME_LOG_RING][RING_LINE];
};

void lume_log_target_init(lume_log_target *t, int level, lume_log_sink sink, void *ud)
{
    atomic_init(&t->level, level_ok(level) ? level : LUME_LOG_INFO);
    for (int i = 0; i < 4; i++)
        atomic_init(&t->lines[i], 0);
    t->sink = sink;
    t->ud = sink ? ud : NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->ring = calloc(1, sizeof *t->ring);
    atomic_init(&t->tap_level, LUME_LOG_TAP_OFF);
    t->tap = NULL;
    t->tap_ud = NULL;
}

static _Thread_local bool tl_in_tap; /* inside a tap: lines are dropped */

void lume_log_target_tap(lume_log_target *t, lume_log_sink tap, void *ud, int tap_level)
{
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->tap_level, tap && level_ok(tap_level) ? tap_level : LUME_LOG_TAP_OFF);
    t->tap = tap;
    t->tap_ud = tap ? ud : NULL;
    pthread_mutex_unlock(&t->mu);
}

unsigned long long lume_log_target_lines(lume_log_target *t, int level)
{
    if (level < LUME_LOG_WARN || !level_ok(level))
        return 0;
    return atomic_load_explicit(&t->lines[level], memory_order_relaxed);
}

void lume_log_target_destroy(lume_log_target *t)
{
    pthread_mutex_destroy(&t->mu);
    free(t->ring);
    t->ring = NULL;
}

/* Under t->mu. */
static void ring_add(struct lume_log_ring *r, int level, const char *component, const char *msg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(r->line[r->seq % LUME_LOG_RING], RING_LINE, "%02d:%02d:%02d.%03ld %s %.32s: %.190s\n",
             tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, lume_log_level_name(level),
             component, msg);
    char *l = r->line[r->seq % LUME_LOG_RING];
    size_t n = strlen(l);
    if (n && l[n - 1] != '\n') /* cut: keep the line a line */
        l[n - 1] = '\n';
    r->seq++;
}

char *lume_log_tail(lume_log_target *t, uint64_t *seq, int last)
{
    pthread_mutex_lock(&t->mu);
    struct lume_log_ring *r = t->ring;
    uint64_t have = r ? r->seq : 0;
    uint64_t from = *seq;
    if (!from && last >= 0)
        from = have > (uint64_t)last ? have - (uint64_t)last : 0;
    if (have > LUME_LOG_RING && from < have - LUME_LOG_RING)
        from = have - LUME_LOG_RING; /* older ones are gone */
    size_t len = 0;
    for (uint64_t i = from; i < have; i++)
        len += strlen(r->line[i % LUME_LOG_RING]);
    char *out = malloc(len + 1);
    if (out) {
        size_t off = 0;
        for (uint64_t i = from; i < have; i++) {
            size_t n = strlen(r->line[i % LUME_LOG_RING]);
            memcpy(out + off, r->line[i % LUME_LOG_RING], n);
            off += n;
        }
        out[off] = 0;
        *seq = have;
    }
    pthread_mutex_unlock(&t->mu);
    return out;
}

void lume_log_target_set_level(lume_log_target *t, int level)
{
    if (level_ok(level))
        atomic_store(&t->level, level);
}

lume_log_target *lume_log_use(lume_log_target *t)
{
    lume_log_target *prev = tl_target;
    tl_target = t;
    return prev;
}

lume_log_target *lume_log_current(void) { return tl_target; }

void lume_log_set_level(int level)
{
    if (!level_ok(level))
        return;
    if (tl_target)
        atomic_store(&tl_target->level, level);
    else
        atomic_store(&g_level, level);
}

int lume_log_get_level(void)
{
    return atomic_load(tl_target ? &tl_target->level : &g_level);
}

void lume_log_set_sink(lume_log_sink fn, void *ud)
{
    pthread_mutex_lock(&g_mu);
    g_sink = fn ? fn : lume_log_stderr;
    g_sink_ud = fn ? ud : NULL;
    pthread_mutex_unlock(&g_mu);
}

void lume_log_stderr(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000L,
            tags[level < 0 ? 0 : level > 3 ? 3 : level], component ? component : "lume",
            msg);
}

void lume_logv(int level, const char *component, const char *fmt, va_list ap)
{
    lume_log_target *t = tl_target;
    if (t && level >= LUME_LOG_WARN && level_ok(level))
        atomic_fetch_add_explicit(&t->lines[level], 1, memory_order_relaxed);
    if (tl_in_tap) /* a tap's own line: never recursive */
        return;
    bool tapped = t && level_ok(level) && level >= atomic_load(&t->tap_level);
    if (level < lume_log_get_level() && !tapped)
        return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    if (tapped) {
        pthread_mutex_lock(&t->mu);
        if (t->tap && level >= atomic_load(&t->tap_level)) {
            tl_in_tap = true;
            t->tap(t->tap_ud, level, component, buf);
            tl_in_tap = false;
        }
        pthread_mutex_unlock(&t->mu);
        if (level < lume_log_get_level())
            return;
    }
    if (t && t->ring) {
        pthread_mutex_lock(&t->mu);
        ring_add(t->ring, level, component, buf);
        if (t->sink)
            t->sink(t->ud, level, component, buf);
        pthread_mutex_unlock(&t->mu);
        if (t->sink)
            return;
    } else if (t && t->sink) {
        pthread_mutex_lock(&t->mu);
        t->sink(t->ud, level, component, buf);
        pthread_mutex_unlock(&t->mu);
        return;
    }
    pthread_mutex_lock(&g_mu);
    g_sink(g_sink_ud, level, component, buf);
    pthread_mutex_unlock(&g_mu);
}

void lume_log(int level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lume_logv(level, component, fmt, ap);
    va_end(ap);
}

char *lume_strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

void lume_set_err(char **err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    *err = s;
}

const char *lume_strerror(int e)
{
    return e == ENOMEM ? "out of memory" : strerror(e);
}

bool lume_err_oom(const char *err)
{
    static const char tail[] = "out of memory";
    size_t n = err ? strlen(err) : 0;
    return !err || (n >= sizeof tail - 1 && !strcmp(err + n - (sizeof tail - 1), tail));
}

/* Length of the well-formed UTF-8 sequence at s[0..left) (2..4), or 0 (the
 * ranges of Unicode table 3-7, as the MQTT codec checks them). */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n > left)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if (s[k] < lo || s[k] > hi)
            return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return n;
}

char *lume_quote(char *buf, size_t n, const char *s, size_t len, size_t max_bytes)
{
    if (n < 8) { /* too small for anything useful */
        if (n)
            buf[0] = 0;
        return buf;
    }
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (!s)
        len = 0;
    size_t w = 0, i = 0;
    buf[w++] = '"';
    while (i < len && i < max_bytes) {
        char piece[8];
        size_t k;
        unsigned char c = p[i];
        size_t seq = c >= 0x80 ? utf8_seq(p + i, len - i) : 0;
        if (seq) {
            k = seq;
            memcpy(piece, p + i, k);
        } else if (c == '"' || c == '\\') {
            piece[0] = '\\';
            piece[1] = (char)c;
            k = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            piece[0] = (char)c;
            k = 1;
        } else {
            k = (size_t)(c == 0 ? snprintf(piece, sizeof piece, "\\0")
                         : c == '\n' ? snprintf(piece, sizeof piece, "\\n")
                         : c == '\t' ? snprintf(piece, sizeof piece, "\\t")
                         : snprintf(piece, sizeof piece, "\\x%02x", c));
        }
        if (w + k + 5 > n) /* keep room for '"', "..." and the NUL */
            break;
        memcpy(buf + w, piece, k);
        w += k;
        i += seq ? seq : 1;
    }
    buf[w++] = '"';
    if (i < len) {
        memcpy(buf + w, "...", 3);
        w += 3;
    }
    buf[w] = 0;
    return buf;
}

int lume_fmt(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}
