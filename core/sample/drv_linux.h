/* core/sample/drv_linux.h — the Linux hardware drivers: GPIO lines through
 * the character device (drv_gpio.c, libgpiod), I2C/SMBus registers through
 * /dev/i2c-N (drv_i2c.c), hwmon and IIO sysfs channels (drv_iio.c).
 *
 * Each driver is one entry of the tables in drivers.c (sensors) and
 * outputs.c (outputs); the LUME_DRIVER_* macros below are those entries, so
 * a driver's name, doc line and functions are written once, next to it. */
#ifndef LUME_DRV_LINUX_H
#define LUME_DRV_LINUX_H

#include "drivers.h"
#include "outputs.h"

int  lume_gpio_in_open(lume_board_ctx *b, const lume_params *p, void **state, char **err);
int  lume_gpio_in_read(void *state, int64_t now_ns, double *out);
void lume_gpio_in_close(void *state);
extern const lume_output_driver lume_gpio_output;

int  lume_i2c_in_open(lume_board_ctx *b, const lume_params *p, void **state, char **err);
int  lume_i2c_in_read(void *state, int64_t now_ns, double *out);
void lume_i2c_in_close(void *state);
extern const lume_output_driver lume_i2c_output;

/* hwmon and iio find their sysfs file, then read it as the `file` driver
 * does (read and close are that driver's). `sysfs` (default "/sys") moves
 * the tree they search: tests, chroots. */
int  lume_hwmon_open(lume_board_ctx *b, const lume_params *p, void **state, char **err);
int  lume_iio_open(lume_board_ctx *b, const lume_params *p, void **state, char **err);

#define LUME_DRIVER_GPIO                                                                  \
    {"gpio",                                                                              \
     "a GPIO input line through the character device: chip (name, path, label or "       \
     "number, required), line (offset, required), active_low=0, bias=as-is|disable|"     \
     "pull-up|pull-down, mode=level|edges (edges: the count of edges seen, kernel-"      \
     "timestamped), edge=both|rising|falling, debounce_ms=0",                            \
     lume_gpio_in_open, lume_gpio_in_read, lume_gpio_in_close}
#define LUME_DRIVER_I2C                                                                   \
    {"i2c",                                                                               \
     "an I2C/SMBus register through /dev/i2c-N: bus (required), address (required), "    \
     "register=0, size=byte|word|block, length=2 (block bytes, 1..4), order=be|le, "     \
     "signed=0, scale=1 (value = raw * scale + offset), offset=0",                       \
     lume_i2c_in_open, lume_i2c_in_read, lume_i2c_in_close}
#define LUME_DRIVER_HWMON                                                                 \
    {"hwmon",                                                                             \
     "a hwmon input found by chip name under /sys/class/hwmon: chip (required), input "  \
     "(a file stem like temp1, or a label, required), scale (default by type: "          \
     "temp/in/curr/humidity 0.001, power/energy 1e-6, else 1), offset=0",                \
     lume_hwmon_open, lume_file_read, lume_file_close}
#define LUME_DRIVER_IIO                                                                   \
    {"iio",                                                                               \
     "an IIO channel found by device name under /sys/bus/iio/devices: device "           \
     "(required), channel (e.g. voltage0, temp, required); value = (raw + offset) * "    \
     "scale from the channel's sysfs files",                                              \
     lume_iio_open, lume_file_read, lume_file_close}

/* The `file` driver's read and close (drivers.c), shared by hwmon and iio. */
int  lume_file_read(void *state, int64_t now_ns, double *out);
void lume_file_close(void *state);

#endif
