/* core/sample/outputs.h — output drivers: how lume acts on the world.
 *
 * A board file declares outputs (a GPIO line, a Modbus coil or holding
 * register, an I2C register, a file) next to its sensors, each with a driver,
 * its params and a fail-safe value. Scripts drive them through the Lua API;
 * the runtime applies the fail-safe value whenever the script that drives an
 * output stops driving it (stopped, rolled back, quarantined, crashed) and
 * on shutdown. This header is only the driver's side: one struct per kind
 * of output, found by name, exactly as core/sample/drivers.h does for
 * sensors. A new output driver is one struct in its driver's file and one
 * line in the table of outputs.c.
 */
#ifndef LUME_OUTPUTS_H
#define LUME_OUTPUTS_H

#include <stddef.h>

#include "drivers.h"

typedef struct lume_output_driver {
    const char *name;       /* as board files name it: "gpio", "modbus.coil", ... */
    const char *doc;        /* one line: what it drives, which params */
    /* Open one output. Runs on the loop thread while the board loads; params
     * checked (lume_params_parse). 0 and *state, or a negative errno-style
     * code with *err (malloc'd) naming what was wrong. */
    int  (*open)(lume_board_ctx *board, const lume_params *p, void **state, char **err);
    /* Set the output to v (a level 0/1, a register value in the output's
     * units). Never runs on the sampler thread; may block up to the output's
     * own timeout (a Modbus request), so callers run it off the loop where
     * that matters. 0, or a negative errno-style code with *err (malloc'd). */
    int  (*write)(void *state, double v, char **err);
    void (*close)(void *state);
} lume_output_driver;

/* NULL when no output driver has that name. */
const lume_output_driver *lume_output_driver_find(const char *name);
/* Enumerate: NULL past the last. */
const lume_output_driver *lume_output_driver_at(size_t i);

#endif
