/* core/sample/clock.h — the two clocks lume uses, in nanoseconds. */
#ifndef LUME_CLOCK_H
#define LUME_CLOCK_H

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

#endif
