/* bench/bare_loop.c — the machine's floor for sampler lateness.
 *
 * The same schedule as lume's sampler, with nothing else: one thread,
 * CHANNELS channels at HZ on absolute deadlines with
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), timer slack 1 ns, and
 * SCHED_FIFO + mlockall when --realtime is given and allowed. Lateness is
 * the time a deadline's reading starts minus the deadline, defined as in
 * core/sample/sampler.c: a channel a whole period or more behind skips the missed
 * slots (counted as overruns) and records what remains (< one period).
 *
 *   bare_loop [--hz 1000] [--channels 4] [--seconds 30] [--realtime]
 * Prints one JSON line: p50/p99/p99.9/max lateness in µs, samples, overruns. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#include "clock.h"
#include "hist.h"

int main(int argc, char **argv)
{
    double hz = 1000, seconds = 30;
    int channels = 4, realtime = 0;
    static const struct option opts[] = {{"hz", required_argument, NULL, 'h'},
                                         {"channels", required_argument, NULL, 'c'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"realtime", no_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': hz = atof(optarg); break;
        case 'c': channels = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'r': realtime = 1; break;
        default: fprintf(stderr, "usage: bare_loop [--hz N] [--channels N] [--seconds S] [--realtime]\n"); return 2;
        }
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    int rt_ok = 0;
    if (realtime) {
        struct sched_param sp = {.sched_priority = 50};
        rt_ok = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0 &&
                mlockall(MCL_CURRENT | MCL_FUTURE) == 0;
    }
    static lume_hist h;
    lume_hist_reset(&h);
    int64_t period = (int64_t)(1e9 / hz);
    if (hz <= 0 || channels <= 0 || seconds <= 0) {
        fprintf(stderr, "bare_loop: --hz, --channels and --seconds must be > 0\n");
        return 2;
    }
    int64_t *deadline = calloc((size_t)channels, sizeof *deadline);
    if (!deadline)
        return 1;
    int64_t start = lume_mono_ns() + 10 * LUME_NS_PER_MS;
    for (int i = 0; i < channels; i++)
        deadline[i] = start;
    int64_t end = start + (int64_t)(seconds * 1e9);
    uint64_t samples = 0, overruns = 0;
    volatile double sink = 0;
    for (;;) {
        int64_t next = deadline[0];
        for (int i = 1; i < channels; i++)
            if (deadline[i] < next)
                next = deadline[i];
        if (next >= end)
            break;
        struct timespec ts = {.tv_sec = next / LUME_NS_PER_SEC, .tv_nsec = next % LUME_NS_PER_SEC};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        for (int i = 0; i < channels; i++) {
            int64_t now = lume_mono_ns();
            if (deadline[i] > now)
                continue;
            /* As core/sample/sampler.c take_reading: a whole period or more behind,
             * skip the missed slots (overruns) and record what remains. */
            int64_t late = now - deadline[i];
            if (late >= period) {
                int64_t k = late / period;
                deadline[i] += k * period;
                late -= k * period;
                overruns += (uint64_t)k;
            }
            lume_hist_record(&h, (uint64_t)late);
            sink += (double)now; /* the "reading" */
            samples++;
            deadline[i] += period;
        }
    }
    printf("{\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
           "\"samples\":%llu,\"overruns\":%llu,\"realtime\":%s}\n",
           lume_hist_percentile(&h, 50) / 1e3, lume_hist_percentile(&h, 99) / 1e3,
           lume_hist_percentile(&h, 99.9) / 1e3, h.max_ns / 1e3, (unsigned long long)samples,
           (unsigned long long)overruns, rt_ok ? "true" : "false");
    free(deadline);
    return 0;
}
