/* core/sample/outputs.c — the table of output drivers (outputs.h), and the
 * built-in `file` output: writes the value as text to a file (a GPIO sysfs
 * value, an LED's brightness, a test fixture). */
#include "outputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drv_linux.h"
#include "drv_modbus.h"
#include "log.h"

typedef struct file_out {
    char  *path;
    double scale;
} file_out;

static const lume_pspec file_spec[] = {
    {"path", LUME_P_STR, 0, 0, 0},
    {"scale", LUME_P_NUM, 1, -1e12, 1e12},
};

static int file_open(lume_board_ctx *board, const lume_params *p, void **state, char **err)
{
    (void)board;
    lume_pvals v;
    int r = lume_params_parse("file", file_spec, 2, p, &v, err);
    if (r < 0)
        return r;
    if (!v.str[0]) {
        *err = lume_strdupf("file output: params.path is required");
        return -EINVAL;
    }
    file_out *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(v.str[0]))) {
        free(f);
        *err = lume_strdupf("file output: out of memory");
        return -ENOMEM;
    }
    f->scale = v.num[1];
    *state = f;
    return 0;
}

static int file_write(void *state, double v, char **err)
{
    file_out *f = state;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g\n", v * f->scale);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, (size_t)n) != n) {
        int e = errno;
        *err = lume_strdupf("file output %s: %s", f->path, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

static void file_close(void *state)
{
    file_out *f = state;
    if (f)
        free(f->path);
    free(f);
}

static const lume_output_driver file_driver = {
    "file", "a number written as text to params.path (times scale)", file_open, file_write,
    file_close};

/* One line per output driver. */
static const lume_output_driver *const outputs[] = {
    &file_driver,
    &lume_gpio_output,
    &lume_i2c_output,
    &lume_out_modbus_coil,
    &lume_out_modbus_register,
};

const lume_output_driver *lume_output_driver_find(const char *name)
{
    for (size_t i = 0; i < sizeof outputs / sizeof *outputs; i++)
        if (!strcmp(outputs[i]->name, name))
            return outputs[i];
    return NULL;
}

const lume_output_driver *lume_output_driver_at(size_t i)
{
    return i < sizeof outputs / sizeof *outputs ? outputs[i] : NULL;
}
