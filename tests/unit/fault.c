/* tests/unit/fault.c — the allocation-failure injector (see fault.h). */
#include "fault.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <sqlite3.h>

/* One injector per thread: only the thread that armed it counts. */
static _Thread_local struct {
    bool armed, persistent, fired;
    long n, seen;
} tl;

void tu_fault_arm(long n, bool persistent)
{
    tl.armed = true;
    tl.persistent = persistent;
    tl.fired = false;
    tl.n = n;
    tl.seen = 0;
}

long tu_fault_disarm(void)
{
    tl.armed = false;
    return tl.seen;
}

bool tu_fault_fired(void)
{
    return tl.fired;
}

/* True when this allocation is to fail. */
static bool fail_now(void)
{
    if (!tl.armed)
        return false;
    tl.seen++;
    if (tl.n <= 0 || tl.seen < tl.n || (tl.seen > tl.n && !tl.persistent))
        return false;
    tl.fired = true;
    return true;
}

/* ---- ld --wrap: liblume.a's calls land here -------------------------------- */

/* The definitions ld gives the __real_ names (the C library's, or the
 * sanitizer's under ASan). */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int   __real_vasprintf(char **out, const char *fmt, va_list ap);
int   __real_scandir(const char *dir, struct dirent ***list,
                     int (*filter)(const struct dirent *),
                     int (*cmp)(const struct dirent **, const struct dirent **));

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int   __wrap_vasprintf(char **out, const char *fmt, va_list ap);
int   __wrap_scandir(const char *dir, struct dirent ***list,
                     int (*filter)(const struct dirent *),
                     int (*cmp)(const struct dirent **, const struct dirent **));

void *__wrap_malloc(size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(k, n);
}

/* realloc(p, 0) frees (glibc), so only a real request can fail. Lua's
 * allocator never passes 0 (it frees itself). */
void *__wrap_realloc(void *p, size_t n)
{
    if (n && fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strndup(s, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_aligned_alloc(align, n);
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    if (fail_now()) {
        *out = NULL;
        errno = ENOMEM;
        return -1;
    }
    return __real_vasprintf(out, fmt, ap);
}

int __wrap_scandir(const char *dir, struct dirent ***list,
                   int (*filter)(const struct dirent *),
                   int (*cmp)(const struct dirent **, const struct dirent **))
{
    if (fail_now()) {
        errno = ENOMEM;
        return -1;
    }
    return __real_scandir(dir, list, filter, cmp);
}

/* ---- SQLite and cJSON ---------------------------------------------------------- */

/* SQLite wants the size of an allocation back (xSize): it sits in a header
 * of 8 bytes, which keeps the 8-byte alignment SQLite needs. */
#define HDR 8

static void *sq_malloc(int n)
{
    if (n <= 0 || fail_now())
        return NULL;
    unsigned char *p = __real_malloc((size_t)n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    return p + HDR;
}

static void sq_free(void *p)
{
    if (p)
        free((unsigned char *)p - HDR);
}

static void *sq_realloc(void *p, int n)
{
    if (!p)
        return sq_malloc(n);
    if (n <= 0 || fail_now())
        return NULL;
    unsigned char *q = __real_realloc((unsigned char *)p - HDR, (size_t)n + HDR);
    if (!q)
        return NULL;
    memcpy(q, &n, sizeof n);
    return q + HDR;
}

static int sq_size(void *p)
{
    int n = 0;
    if (p)
        memcpy(&n, (unsigned char *)p - HDR, sizeof n);
    return n;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *ud)
{
    (void)ud;
    return SQLITE_OK;
}

static void sq_shutdown(void *ud)
{
    (void)ud;
}

static void *cj_malloc(size_t n)
{
    return __wrap_malloc(n);
}

int tu_fault_install(void)
{
    static const sqlite3_mem_methods mem = {sq_malloc, sq_free,  sq_realloc, sq_size,
                                            sq_roundup, sq_init, sq_shutdown, NULL};
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &mem) != SQLITE_OK) {
        fprintf(stderr, "fault: SQLite is initialised already: its allocations are not "
                        "counted\n");
        return -1;
    }
    cJSON_Hooks hooks = {.malloc_fn = cj_malloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
    return 0;
}
