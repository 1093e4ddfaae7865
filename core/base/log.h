/* core/base/log.h — leveled logging shared by every part of lume.
 *
 * Thread-safe: the sampler thread may log (rarely: realtime fallbacks, read
 * failures rate-limited by the caller). A line is formatted once and handed
 * to the sink under a mutex. The default sink writes
 *   2026-11-26T12:00:00.123Z WARN  sampler: message
 * to stderr. */
#ifndef LUME_LOG_H
#define LUME_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum {
    LUME_LOG_DEBUG = 0,
    LUME_LOG_INFO  = 1,
    LUME_LOG_WARN  = 2,
    LUME_LOG_ERROR = 3,
};

typedef void (*lume_log_sink)(void *ud, int level, const char *component,
                              const char *msg);

/* Log one line. component names the part of lume ("sampler", "outbox",
 * "script rules.lua"). Lines below the current level are dropped. */
void lume_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lume_logv(int level, const char *component, const char *fmt, va_list ap);

void lume_log_set_level(int level);
int  lume_log_get_level(void);
/* "debug"|"info"|"warn"|"error" -> level; -1 for anything else. */
int  lume_log_level_parse(const char *name);
const char *lume_log_level_name(int level);

/* Replace the sink (NULL restores stderr). Extra sinks are not chained: a
 * sink that wants stderr too calls lume_log_stderr itself. */
void lume_log_set_sink(lume_log_sink fn, void *ud);
void lume_log_stderr(void *ud, int level, const char *component, const char *msg);

/* printf into a fresh malloc'd string (for char **err out-parameters).
 * Returns NULL only when out of memory. */
char *lume_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* *err = lume_strdupf(fmt, ...) when err is not NULL; nothing otherwise. */
void lume_set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s[0..len) for a message: in double quotes, well-formed UTF-8 and
 * printable ASCII as they are, '"' and '\\' escaped, anything else as \0,
 * \n, \t, \xNN; past max_bytes of s it stops with "..." after the quote.
 * Writes into buf (always NUL-terminated when n > 0) and returns buf. */
char *lume_quote(char *buf, size_t n, const char *s, size_t len, size_t max_bytes);

#endif
