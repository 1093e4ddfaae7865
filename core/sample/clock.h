/* core/sample/clock.h — the two clocks lume uses, in nanoseconds. */
#ifndef LUME_CLOCK_H
#define LUME_CLOCK_H

#include <math.h>
#include <stdint.h>
#include <time.h>

#define LUME_NS_PER_SEC  1000000000LL
#define LUME_NS_PER_MS   1000000LL

/* CLOCK_MONOTONIC: deadlines, lateness, intervals. */
static inline int64_t lume_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LUME_NS_PER_SEC + ts.tv_nsec;
}

/* CLOCK_REALTIME: timestamps that leave the device (Unix epoch). */
static inline int64_t lume_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * LUME_NS_PER_SEC + ts.tv_nsec;
}

static inline int64_t lume_wall_ms(void) { return lume_wall_ns() / LUME_NS_PER_MS; }

/* ns as seconds in a double, exact to the double's precision: the whole
 * seconds and the fraction are converted apart (a plain ns / 1e9 rounds
 * twice at today's epoch, ~2^60 ns, and can land one step below the
 * seconds it came from). */
static inline double lume_ns_seconds(int64_t ns)
{
    return (double)(ns / 1000000000) + (double)(ns % 1000000000) / 1e9;
}

/* Seconds to the nearest ns; lume_ns_seconds(lume_seconds_ns(s)) == s for
 * any s a double holds to better than a ns-tenth of its magnitude's step. */
static inline int64_t lume_seconds_ns(double s)
{
    double whole;
    double frac = modf(s, &whole);
    return (int64_t)whole * 1000000000 + llround(frac * 1e9);
}

#endif
