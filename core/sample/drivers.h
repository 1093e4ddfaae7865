/* core/sample/drivers.h — sensor drivers: how one channel takes a reading.
 *
 * A board file (boards/NAME.lua, data only) names a driver for each sensor
 * and gives it parameters. Drivers are C so the sampler thread never touches
 * Lua. Built-in drivers:
 *   sim.temperature  slow random walk plus a daily cycle         (°C)
 *   sim.humidity     random walk anti-correlated with temperature (%RH)
 *   sim.vibration    fast noise with injected anomaly bursts      (g RMS)
 *   sim.battery      drains on battery, charges on mains          (V)
 *   sim.power        power source: 1 = mains, 0 = battery, switching
 *   host.loadavg     1-minute load average from /proc/loadavg
 *   host.mem         MemAvailable in MiB from /proc/meminfo
 *   host.cpu         CPU busy % since the previous read, from /proc/stat
 *   file             a number read from a file, times `scale` (hwmon,
 *                    thermal zones, GPIO sysfs, test fixtures)
 *   modbus           a Modbus TCP/RTU register, coil or discrete input
 *                    (drv_modbus.c: read by a poller thread, never waited on)
 *   uart             a number from a serial line (drv_uart.c: non-blocking)
 * sim.battery and sim.power of one board share that board's simulated world
 * (lume_board_ctx), so the battery charges exactly while power reads mains.
 * An embedder's own drivers (lume.h: lume_config_add_driver) come with the
 * config (bindings/oem.c): board files name them the same way, their params
 * go through lume_params_parse, and their reads run on a guard thread
 * (guard.h) so they cannot stall the sampler.
 */
#ifndef LUME_DRIVERS_H
#define LUME_DRIVERS_H

#include <stddef.h>
#include <stdint.h>

/* One driver parameter from the board file: a number or a string. */
typedef struct lume_param {
    const char *key;
    const char *str;   /* NULL when the value is a number */
    double      num;
} lume_param;

typedef struct lume_params {
    const lume_param *v;
    size_t            n;
} lume_params;

double      lume_params_num(const lume_params *p, const char *key, double dflt);
const char *lume_params_str(const lume_params *p, const char *key, const char *dflt);

/* Checking parameters against a declaration (every built-in driver, and
 * the OEM drivers of lume.h, go through this one function): unknown keys
 * (typos), wrong types and out-of-range numbers are refused with a message
 * naming the driver, the key and the allowed range. */
#define LUME_PSPEC_MAX 12
enum { LUME_P_NUM, LUME_P_STR };
typedef struct lume_pspec {
    const char *key;
    int         kind;      /* LUME_P_NUM | LUME_P_STR */
    double      dflt;      /* LUME_P_NUM */
    double      lo, hi;    /* LUME_P_NUM: allowed range, inclusive */
} lume_pspec;
typedef struct lume_pvals {
    double      num[LUME_PSPEC_MAX];
    const char *str[LUME_PSPEC_MAX]; /* NULL when not given */
    unsigned    given;     /* bit i: spec[i] was in the board file */
} lume_pvals;
/* 0, or -EINVAL with *err set (malloc'd). n <= LUME_PSPEC_MAX. */
int lume_params_parse(const char *drv, const lume_pspec *spec, size_t n,
                      const lume_params *p, lume_pvals *out, char **err);

/* Per-board shared state (the simulated world, the seed of its randomness).
 * Owned by whoever builds the board; outlives every channel opened on it. */
typedef struct lume_board_ctx lume_board_ctx;
lume_board_ctx *lume_board_ctx_new(uint64_t seed);
void            lume_board_ctx_free(lume_board_ctx *b);

typedef struct lume_driver {
    const char *name;
    const char *doc;        /* one line: what it reads, which params */
    /* Open one channel. Runs on the loop thread before sampling starts.
     * Returns 0 and sets *state, or a negative errno-style code with *err
     * set to a malloc'd message naming what was wrong (-ENOENT when the
     * thing it reads does not exist on this machine: optional sensors are
     * then skipped). */
    int  (*open)(lume_board_ctx *board, const lume_params *p, void **state,
                 char **err);
    /* Take one reading at now_ns (CLOCK_MONOTONIC). Runs only on the
     * sampler thread; must not block for long, allocate, or log. Returns 0
     * and sets *out, or a negative errno-style code. */
    int  (*read)(void *state, int64_t now_ns, double *out);
    void (*close)(void *state);
} lume_driver;

/* NULL when no driver has that name. */
const lume_driver *lume_driver_find(const char *name);
/* Enumerate: NULL past the last. */
const lume_driver *lume_driver_at(size_t i);

#endif
