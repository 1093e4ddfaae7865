/* bench/net/common.h — small helpers shared by the bench/net programs
 * (header-only: each program is one .c file built by bench/net/run). */
#ifndef BENCH_NET_COMMON_H
#define BENCH_NET_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* User + system CPU seconds of this process so far (all threads). */
static inline double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static inline void die(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile p (0..100) of sorted v[0..n-1]: the smallest value with at
 * least p% of the values at or below it (nearest rank). 0 when empty. */
static inline double pct(const double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/* Sorts v and prints "NAME":{"n":..,"p50_ms":..,...} (values in seconds,
 * printed in ms). */
static inline void print_lat(FILE *f, const char *name, double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    fprintf(f, "\"%s\":{\"n\":%zu,\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
               "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f}",
            name, n, n ? v[0] * 1e3 : 0, pct(v, n, 50) * 1e3, pct(v, n, 90) * 1e3,
            pct(v, n, 99) * 1e3, n ? v[n - 1] * 1e3 : 0, n ? sum / (double)n * 1e3 : 0);
}

#endif
