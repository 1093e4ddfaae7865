/* core/sample/drv_i2c.c — I2C/SMBus registers through /dev/i2c-N, with the
 * kernel's i2c-dev ioctls (linux/i2c-dev.h; no library).
 *
 * A channel is one register of one chip: bus N (/dev/i2c-N), a 7-bit
 * address, a register (command) number and a transfer size:
 *   byte   SMBus read/write byte data (8 bits)
 *   word   SMBus read/write word data (16 bits; SMBus sends the low byte
 *          first, so order=le is the wire order; most sensors — LM75,
 *          TMP102, INA219 — keep registers big-endian: order=be swaps)
 *   block  an I2C block read of `length` bytes (1..4) starting at the
 *          register, combined in `order` (24-bit ADCs, 32-bit counters)
 * The raw integer (two's complement when signed=1) becomes the value
 * raw * scale + offset. The output `i2c.register` does the inverse:
 * raw = round((v - offset) / scale), refused when it does not fit the size.
 *
 * Bounded time: the adapter's timeout is set to I2C_TIMEOUT_MS and its
 * retries to 0 when the channel opens, so a bus with a stuck slave fails a
 * read with -ETIMEDOUT (counted as a read error) instead of holding the
 * sampler. An address claimed by a kernel driver is refused (EBUSY), never
 * forced: two masters of one chip's registers corrupt each other's state. */
#include "drv_linux.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"

#define I2C_TIMEOUT_MS 100

enum { S_BYTE, S_WORD, S_BLOCK };

typedef struct i2c_reg {
    int      fd;
    int      bus, addr;
    uint8_t  reg;
    int      size, length;
    bool     be, sign;
    double   scale, offset;
} i2c_reg;

static const lume_pspec in_spec[] = {
    {"bus", LUME_P_NUM, -1, 0, 1023},
    {"address", LUME_P_NUM, -1, 0x03, 0x77},
    {"register", LUME_P_NUM, 0, 0, 255},
    {"size", LUME_P_STR, 0, 0, 0},
    {"length", LUME_P_NUM, 2, 1, 4},
    {"order", LUME_P_STR, 0, 0, 0},
    {"signed", LUME_P_NUM, 0, 0, 1},
    {"scale", LUME_P_NUM, 1, -1e12, 1e12},
    {"offset", LUME_P_NUM, 0, -1e12, 1e12},
};
#define SPEC_N(s) (sizeof s / sizeof *s)

static int smbus(int fd, char rw, uint8_t cmd, int size, union i2c_smbus_data *d)
{
    struct i2c_smbus_ioctl_data a = {.read_write = rw, .command = cmd, .size = (uint32_t)size,
                                     .data = d};
    return ioctl(fd, I2C_SMBUS, &a) < 0 ? -errno : 0;
}

static void reg_free(i2c_reg *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* Parse the params (the input and the output share them), open the
 * bus, claim the address and check the adapter can do the transfer. */
static int reg_open(const char *drv, const lume_params *p, i2c_reg **out, char **err)
{
    static const char *const sizes[] = {"byte", "word", "block", NULL};
    lume_pvals v;
    int r = lume_params_parse(drv, in_spec, SPEC_N(in_spec), p, &v, err);
    if (r < 0)
        return r;
    if (!(v.given & 1) || !(v.given & 2)) {
        *err = lume_strdupf("%s: params 'bus' (N of /dev/i2c-N) and 'address' (7-bit, "
                            "0x03..0x77) are required", drv);
        return -EINVAL;
    }
    int size = -1;
    for (int i = 0; sizes[i]; i++)
        if (!v.str[3] ? i == 0 : !strcmp(v.str[3], sizes[i]))
            size = i;
    if (size < 0) {
        *err = lume_strdupf("%s: size '%s' is not one of byte, word, block", drv, v.str[3]);
        return -EINVAL;
    }
    if (v.str[5] && strcmp(v.str[5], "be") && strcmp(v.str[5], "le")) {
        *err = lume_strdupf("%s: order '%s' is not one of be, le", drv, v.str[5]);
        return -EINVAL;
    }
    if ((v.given & 1u << 4) && size != S_BLOCK) {
        *err = lume_strdupf("%s: param 'length' needs size = \"block\"", drv);
        return -EINVAL;
    }
    if (v.num[7] == 0) {
        *err = lume_strdupf("%s: param 'scale' must not be 0", drv);
        return -EINVAL;
    }
    i2c_reg *c = calloc(1, sizeof *c);
    if (!c) {
        *err = lume_strdupf("%s: out of memory", drv);
        return -ENOMEM;
    }
    c->bus = (int)v.num[0];
    c->addr = (int)v.num[1];
    c->reg = (uint8_t)v.num[2];
    c->size = size;
    c->length = size == S_BLOCK ? (int)v.num[4] : size == S_WORD ? 2 : 1;
    c->be = !v.str[5] || !strcmp(v.str[5], "be");
    c->sign = v.num[6] != 0;
    c->scale = v.num[7];
    c->offset = v.num[8];
    char path[32];
    snprintf(path, sizeof path, "/dev/i2c-%d", c->bus);
    c->fd = open(path, O_RDWR | O_CLOEXEC);
    if (c->fd < 0) {
        r = -errno;
        *err = lume_strdupf("%s: %s: %s%s", drv, path, strerror(-r),
                            r == -ENOENT ? " (is the bus enabled and i2c-dev loaded?)" : "");
        goto err;
    }
    if (ioctl(c->fd, I2C_SLAVE, (unsigned long)c->addr) < 0) {
        r = -errno;
        *err = lume_strdupf("%s: %s address 0x%02x: %s", drv, path, c->addr,
                            r == -EBUSY ? "in use by a kernel driver" : strerror(-r));
        goto err;
    }
    unsigned long funcs = 0;
    unsigned long need = size == S_BYTE   ? I2C_FUNC_SMBUS_BYTE_DATA
                         : size == S_WORD ? I2C_FUNC_SMBUS_WORD_DATA
                                          : I2C_FUNC_SMBUS_READ_I2C_BLOCK;
    if (ioctl(c->fd, I2C_FUNCS, &funcs) < 0 || (funcs & need) != need) {
        r = -EOPNOTSUPP;
        *err = lume_strdupf("%s: %s cannot do %s transfers", drv, path, sizes[size]);
        goto err;
    }
    ioctl(c->fd, I2C_TIMEOUT, (unsigned long)(I2C_TIMEOUT_MS / 10));
    ioctl(c->fd, I2C_RETRIES, 0UL);
    *out = c;
    return 0;
err:
    reg_free(c);
    return r;
}

/* The register's raw integer, as bytes in c->be order. */
static int reg_raw(i2c_reg *c, int64_t *raw)
{
    union i2c_smbus_data d;
    uint8_t b[4];
    int r;
    if (c->size == S_BYTE) {
        if ((r = smbus(c->fd, I2C_SMBUS_READ, c->reg, I2C_SMBUS_BYTE_DATA, &d)) < 0)
            return r;
        b[0] = d.byte;
    } else if (c->size == S_WORD) {
        if ((r = smbus(c->fd, I2C_SMBUS_READ, c->reg, I2C_SMBUS_WORD_DATA, &d)) < 0)
            return r;
        b[0] = (uint8_t)(d.word & 0xff);   /* first on the wire */
        b[1] = (uint8_t)(d.word >> 8);
    } else {
        d.block[0] = (uint8_t)c->length;
        if ((r = smbus(c->fd, I2C_SMBUS_READ, c->reg, I2C_SMBUS_I2C_BLOCK_DATA, &d)) < 0)
            return r;
        if (d.block[0] < c->length)
            return -EBADMSG;
        memcpy(b, d.block + 1, (size_t)c->length);
    }
    uint64_t u = 0;
    for (int i = 0; i < c->length; i++)
        u |= (uint64_t)b[c->be ? i : c->length - 1 - i] << (8 * (c->length - 1 - i));
    int bits = 8 * c->length;
    if (c->sign && (u >> (bits - 1)) & 1)
        *raw = (int64_t)u - ((int64_t)1 << bits);
    else
        *raw = (int64_t)u;
    return 0;
}

int lume_i2c_in_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    i2c_reg *c;
    int r = reg_open("i2c", p, &c, err);
    if (r < 0)
        return r;
    *state = c;
    return 0;
}

int lume_i2c_in_read(void *state, int64_t now, double *out)
{
    (void)now;
    i2c_reg *c = state;
    int64_t raw;
    int r = reg_raw(c, &raw);
    if (r < 0)
        return r;
    *out = (double)raw * c->scale + c->offset;
    return 0;
}

void lume_i2c_in_close(void *state)
{
    reg_free(state);
}

/* ---- output ------------------------------------------------------------ */

static int out_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    i2c_reg *c;
    int r = reg_open("i2c.register", p, &c, err);
    if (r < 0)
        return r;
    if (c->size == S_BLOCK) {
        *err = lume_strdupf("i2c.register: size 'block' cannot be written: byte or word");
        reg_free(c);
        return -EINVAL;
    }
    *state = c;
    return 0;
}

static int out_write(void *state, double v, char **err)
{
    i2c_reg *c = state;
    double raw = round((v - c->offset) / c->scale);
    int bits = 8 * c->length;
    double lo = c->sign ? -ldexp(1, bits - 1) : 0;
    double hi = c->sign ? ldexp(1, bits - 1) - 1 : ldexp(1, bits) - 1;
    if (!(raw >= lo && raw <= hi)) {
        *err = lume_strdupf("i2c.register bus %d 0x%02x reg 0x%02x: %g is raw %g, outside "
                            "[%g, %g]", c->bus, c->addr, c->reg, v, raw, lo, hi);
        return -ERANGE;
    }
    uint32_t u = (uint32_t)((int64_t)raw & ((1 << bits) - 1));
    union i2c_smbus_data d;
    int r;
    if (c->size == S_BYTE) {
        d.byte = (uint8_t)u;
        r = smbus(c->fd, I2C_SMBUS_WRITE, c->reg, I2C_SMBUS_BYTE_DATA, &d);
    } else {
        /* d.word goes low byte first on the wire; big-endian puts the high
         * byte first */
        d.word = (uint16_t)(c->be ? ((u & 0xff) << 8 | u >> 8) : u);
        r = smbus(c->fd, I2C_SMBUS_WRITE, c->reg, I2C_SMBUS_WORD_DATA, &d);
    }
    if (r < 0) {
        *err = lume_strdupf("i2c.register bus %d 0x%02x reg 0x%02x: %s", c->bus, c->addr,
                            c->reg, strerror(-r));
        return r;
    }
    return 0;
}

const lume_output_driver lume_i2c_output = {
    "i2c.register",
    "an I2C register written over SMBus: bus, address (required), register=0, "
    "size=byte|word, order=be|le, signed=0, scale=1, offset=0 (raw = round((v - offset) "
    "/ scale))",
    out_open, out_write, lume_i2c_in_close};
