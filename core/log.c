/* core/log.c — see log.h. */
#include "log.h"

#include <pthread.h>
#include <stdatomic.h>
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

void lume_log_set_level(int level)
{
    if (level >= LUME_LOG_DEBUG && level <= LUME_LOG_ERROR)
        atomic_store(&g_level, level);
}

int lume_log_get_level(void) { return atomic_load(&g_level); }

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
    if (level < atomic_load(&g_level))
        return;
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
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
