/* core/sample/drv_uart.c — the `uart` sensor driver.
 *
 * The line is opened non-blocking (O_NONBLOCK, raw termios at the board's
 * baud, 8N1). A reading drains what the kernel holds into a buffer in the
 * state (no allocation) and takes the newest complete frame:
 *   framing = "line":   text lines ending in \n (a \r before it ignored);
 *                       field N (1-based) split on one sep character.
 *   framing = "length": frames of frame_len bytes, each starting with the
 *                       byte sync (when given, so a reader that starts in
 *                       mid-frame finds the next one); a value of `type`
 *                       at byte offset `at`.
 * Older complete frames in the same drain are skipped (the sample is the
 * newest value); a partial frame stays for the next reading. No new frame
 * since the previous reading: -EAGAIN; a frame that does not parse:
 * -EBADMSG; a line longer than the buffer is dropped whole (-EMSGSIZE).
 * The sampler never waits: the driver never blocks. */
#include "drv_uart.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"

#define UART_BUF 1024

typedef struct uart {
    int    fd;
    bool   line;
    char   sep;
    int    field, frame_len, at, type, sync;
    double scale, offset;
    size_t n;
    bool   skipping;        /* inside an over-long line */
    unsigned char buf[UART_BUF];
} uart;

static const lume_pspec uart_spec[] = {
    {"path", LUME_P_STR, 0, 0, 0},
    {"baud", LUME_P_NUM, 9600, 50, 4000000},
    {"framing", LUME_P_STR, 0, 0, 0},   /* line | length */
    {"field", LUME_P_NUM, 1, 1, 64},
    {"sep", LUME_P_STR, 0, 0, 0},
    {"frame_len", LUME_P_NUM, 0, 0, UART_BUF / 2},
    {"at", LUME_P_NUM, 0, 0, UART_BUF / 2},
    {"type", LUME_P_STR, 0, 0, 0},
    {"sync", LUME_P_NUM, -1, -1, 255},
    {"scale", LUME_P_NUM, 1, -1e12, 1e12},
    {"offset", LUME_P_NUM, 0, -1e12, 1e12},
};

static const char *const types[] = {"u8", "s8", "u16le", "u16be", "s16le", "s16be",
                                    "u32le", "u32be", "s32le", "s32be", "f32le", "f32be"};
#define NTYPES (sizeof types / sizeof *types)

static int type_width(int t) { return t < 2 ? 1 : t < 6 ? 2 : 4; }

static double decode(const unsigned char *b, int t)
{
    int w = type_width(t);
    bool be = w > 1 && (t % 2) == 1;
    uint32_t u = 0;
    for (int i = 0; i < w; i++)
        u = u << 8 | b[be ? i : w - 1 - i];
    switch (t) {
    case 0: return u;
    case 1: return (int8_t)u;
    case 2: case 3: return u;
    case 4: case 5: return (int16_t)u;
    case 6: case 7: return u;
    case 8: case 9: return (int32_t)u;
    default: {
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    }
}

static speed_t baud_of(int b)
{
    static const struct { int b; speed_t s; } t[] = {
        {1200, B1200}, {2400, B2400}, {4800, B4800}, {9600, B9600}, {19200, B19200},
        {38400, B38400}, {57600, B57600}, {115200, B115200}, {230400, B230400},
        {460800, B460800}, {921600, B921600}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (t[i].b == b)
            return t[i].s;
    return 0;
}

int lume_uart_field(const char *line, size_t len, char sep, int field, double *out)
{
    const char *p = line, *end = line + len;
    for (int f = 1; f < field; f++) {
        const char *s = memchr(p, sep, (size_t)(end - p));
        if (!s)
            return -ENODATA;
        p = s + 1;
    }
    const char *e = memchr(p, sep, (size_t)(end - p));
    if (!e)
        e = end;
    char num[64];
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    size_t n = (size_t)(e - p);
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof num)
        return -EBADMSG;
    memcpy(num, p, n);
    num[n] = '\0';
    char *stop;
    errno = 0;
    double v = strtod(num, &stop);
    if (*stop || errno || !isfinite(v))
        return -EBADMSG;
    *out = v;
    return 0;
}

static int uart_open(lume_board_ctx *board, const lume_params *p, void **state, char **err)
{
    (void)board;
    lume_pvals v;
    int r = lume_params_parse("uart", uart_spec, sizeof uart_spec / sizeof *uart_spec, p, &v,
                              err);
    if (r < 0)
        return r;
    if (!v.str[0]) {
        lume_set_err(err, "uart: params.path is required (e.g. /dev/ttyUSB0)");
        return -EINVAL;
    }
    speed_t sp = baud_of((int)v.num[1]);
    if (!sp) {
        lume_set_err(err, "uart: params.baud %g: expected a standard rate (1200 .. 921600)",
                     v.num[1]);
        return -EINVAL;
    }
    const char *fr = v.str[2] ? v.str[2] : "line";
    bool line = !strcmp(fr, "line");
    if (!line && strcmp(fr, "length")) {
        lume_set_err(err, "uart: params.framing %s: expected line or length", fr);
        return -EINVAL;
    }
    if (v.str[4] && strlen(v.str[4]) != 1) {
        lume_set_err(err, "uart: params.sep \"%s\": expected one character", v.str[4]);
        return -EINVAL;
    }
    int type = 0;
    if (!line) {
        const char *tn = v.str[7] ? v.str[7] : "u8";
        type = -1;
        for (size_t i = 0; i < NTYPES; i++)
            if (!strcmp(tn, types[i]))
                type = (int)i;
        if (type < 0) {
            lume_set_err(err, "uart: params.type %s: expected u8, s8, u16le, u16be, s16le, "
                         "s16be, u32le, u32be, s32le, s32be, f32le or f32be", tn);
            return -EINVAL;
        }
        if (v.num[5] < 1 || v.num[6] + type_width(type) > v.num[5]) {
            lume_set_err(err, "uart: length framing needs frame_len >= at + %d (the %s), got "
                         "frame_len = %g, at = %g", type_width(type), tn, v.num[5], v.num[6]);
            return -EINVAL;
        }
    }
    int fd = open(v.str[0], O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        lume_set_err(err, "uart: %s: %s", v.str[0], strerror(e));
        return -e;
    }
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cflag |= CLOCAL | CREAD;
        cfsetispeed(&t, sp);
        cfsetospeed(&t, sp);
        tcsetattr(fd, TCSANOW, &t);
    } else if (errno != ENOTTY) { /* a FIFO or a file works too (tests) */
        int e = errno;
        close(fd);
        lume_set_err(err, "uart: %s: %s", v.str[0], strerror(e));
        return -e;
    }
    uart *u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        lume_set_err(err, "uart: out of memory");
        return -ENOMEM;
    }
    u->fd = fd;
    u->line = line;
    u->sep = v.str[4] ? v.str[4][0] : ',';
    u->field = (int)v.num[3];
    u->frame_len = (int)v.num[5];
    u->at = (int)v.num[6];
    u->type = type;
    u->sync = (int)v.num[8];
    u->scale = v.num[9];
    u->offset = v.num[10];
    *state = u;
    return 0;
}

/* Newest complete line: parse it, keep the tail. */
static int take_line(uart *u, double *out)
{
    unsigned char *last = NULL, *prev = u->buf;
    for (unsigned char *p = u->buf; (p = memchr(p, '\n', u->n - (size_t)(p - u->buf)));) {
        last = prev;            /* start of the line this \n ends */
        prev = ++p;
        if ((size_t)(p - u->buf) >= u->n)
            break;
    }
    int r = -EAGAIN;
    if (last) {
        size_t len = (size_t)(prev - 1 - last);
        if (len && last[len - 1] == '\r')
            len--;
        if (u->skipping) {      /* the first line ends an over-long one */
            u->skipping = false;
            r = last == u->buf ? -EMSGSIZE : lume_uart_field((char *)last, len, u->sep,
                                                              u->field, out);
        } else {
            r = lume_uart_field((char *)last, len, u->sep, u->field, out);
        }
        if (r == -ENODATA)
            r = -EBADMSG;
        size_t rest = u->n - (size_t)(prev - u->buf);
        memmove(u->buf, prev, rest);
        u->n = rest;
    } else if (u->n == sizeof u->buf) {
        u->n = 0;               /* no newline in a whole buffer */
        u->skipping = true;
        r = -EMSGSIZE;
    }
    return r;
}

static int take_frame(uart *u, double *out)
{
    size_t fl = (size_t)u->frame_len, s = 0;
    if (u->sync >= 0) {         /* drop bytes before the first sync byte */
        while (s < u->n && u->buf[s] != u->sync)
            s++;
    }
    if (u->n - s < fl) {
        memmove(u->buf, u->buf + s, u->n - s);
        u->n -= s;
        return -EAGAIN;
    }
    size_t k = (u->n - s) / fl;  /* complete frames: the newest is k-1 */
    unsigned char *f = u->buf + s + (k - 1) * fl;
    int r = 0;
    if (u->sync >= 0 && f[0] != u->sync)
        r = -EBADMSG;           /* lost sync: the next reading looks for it anew */
    else
        *out = decode(f + u->at, u->type);
    size_t used = s + k * fl;
    memmove(u->buf, u->buf + used, u->n - used);
    u->n -= used;
    return r;
}

static int uart_read(void *state, int64_t now_ns, double *out)
{
    (void)now_ns;
    uart *u = state;
    for (;;) {
        if (u->n == sizeof u->buf) {
            if (!u->line) /* only old frames: keep the newest half */
                u->n = 0;
            else
                break;
        }
        ssize_t r = read(u->fd, u->buf + u->n, sizeof u->buf - u->n);
        if (r > 0) {
            u->n += (size_t)r;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        break;                  /* drained (EOF of a closed pty writer too) */
    }
    double v = 0;
    int r = u->line ? take_line(u, &v) : take_frame(u, &v);
    if (r == 0)
        *out = v * u->scale + u->offset;
    return r;
}

static void uart_close(void *state)
{
    uart *u = state;
    if (!u)
        return;
    close(u->fd);
    free(u);
}

const lume_driver lume_drv_uart = {
    "uart",
    "a number from a serial line (termios, raw, 8N1, non-blocking), value * scale + "
    "offset: path (required), baud=9600, framing=line (line: field=1 split on sep=\",\"; "
    "length: frame_len bytes starting with byte sync (-1: none), a value of type "
    "(u8, s8, u16le, u16be, s16le, s16be, u32le, u32be, s32le, s32be, f32le, f32be) "
    "at byte at), scale=1, offset=0",
    uart_open, uart_read, uart_close};
