/* core/sample/drv_gpio.c — GPIO lines through the character device
 * (/dev/gpiochipN), with the distribution's libgpiod (v1 API, 1.6).
 *
 * Input `gpio`, two modes:
 *   level  each reading is the line's logical level (0/1, after active_low).
 *   edges  the line is requested for edge events; each reading is the number
 *          of edges accepted since the channel opened (a counter: a rate,
 *          a flow meter's pulses, a door's openings). Edges are taken from
 *          the kernel's queue without blocking at each read, so an edge
 *          between two readings is never lost, as long as no more than the
 *          kernel's queue (16 events per line) arrive between two reads: the
 *          v1 uAPI drops the excess without telling, so sample an edges
 *          channel at least as often as 16 edges can arrive.
 *
 * Debounce (edges mode): an edge whose kernel timestamp is less than
 * debounce_ms after the last accepted edge is dropped. The timestamp is the
 * kernel's (taken in the interrupt), not the time lume read the event, so
 * debouncing does not depend on how late the sampler reads the queue.
 *
 *     edge event ──► ts - last_ts < debounce ? ──yes──► dropped
 *                               │ no
 *                               ▼
 *                    count++, last_ts = ts, level = rising
 *
 * Output `gpio`: the line requested as an output with its initial value
 * when the board loads; write(v) sets it to v != 0 (logical, after
 * active_low). Closing releases the line (the kernel then leaves it as it
 * was: the fail-safe value is written by the outputs service first).
 *
 * read() runs on the sampler thread: one ioctl (level) or a non-blocking
 * poll of the event fd plus one read (edges); nothing allocates. */
#include "drv_linux.h"

#include <errno.h>
#include <gpiod.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define CONSUMER "lume"

enum { M_LEVEL, M_EDGES };

typedef struct gpio_line {
    struct gpiod_chip *chip;
    struct gpiod_line *line;
    int      mode;
    int64_t  debounce_ns;
    int64_t  last_ts;       /* kernel timestamp of the last accepted edge */
    bool     have_last;
    double   count;
} gpio_line;

static const lume_pspec in_spec[] = {
    {"chip", LUME_P_STR, 0, 0, 0},
    {"line", LUME_P_NUM, -1, 0, 1023},
    {"active_low", LUME_P_NUM, 0, 0, 1},
    {"bias", LUME_P_STR, 0, 0, 0},
    {"mode", LUME_P_STR, 0, 0, 0},
    {"edge", LUME_P_STR, 0, 0, 0},
    {"debounce_ms", LUME_P_NUM, 0, 0, 60000},
};

static const lume_pspec out_spec[] = {
    {"chip", LUME_P_STR, 0, 0, 0},
    {"line", LUME_P_NUM, -1, 0, 1023},
    {"active_low", LUME_P_NUM, 0, 0, 1},
    {"initial", LUME_P_NUM, 0, 0, 1},
    {"drive", LUME_P_STR, 0, 0, 0},
};

/* The index of s in names (NULL-terminated), or -1. dflt when s is NULL. */
static int pick(const char *s, const char *const *names, int dflt)
{
    if (!s)
        return dflt;
    for (int i = 0; names[i]; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

static void line_free(gpio_line *g)
{
    if (!g)
        return;
    if (g->line)
        gpiod_line_release(g->line);
    if (g->chip)
        gpiod_chip_close(g->chip);
    free(g);
}

/* Open chip/line of drv; the line is not requested yet. */
static int line_open(const char *drv, const lume_pvals *v, gpio_line **out, char **err)
{
    if (!v->str[0] || !v->str[0][0]) {
        *err = lume_strdupf("%s: param 'chip' is required (gpiochip0, /dev/gpiochip0, a "
                            "label or a number)", drv);
        return -EINVAL;
    }
    if (!(v->given & 2)) {
        *err = lume_strdupf("%s: param 'line' is required (the line's offset on its chip)", drv);
        return -EINVAL;
    }
    gpio_line *g = calloc(1, sizeof *g);
    if (!g) {
        *err = lume_strdupf("%s: out of memory", drv);
        return -ENOMEM;
    }
    g->chip = gpiod_chip_open_lookup(v->str[0]);
    if (!g->chip) {
        int e = errno ? errno : ENOENT;
        *err = lume_strdupf("%s: chip '%s': %s", drv, v->str[0], strerror(e));
        free(g);
        return -e;
    }
    unsigned n = gpiod_chip_num_lines(g->chip);
    unsigned off = (unsigned)v->num[1];
    if (off >= n) {
        *err = lume_strdupf("%s: chip '%s' (%s) has %u lines: line %u does not exist", drv,
                            v->str[0], gpiod_chip_label(g->chip), n, off);
        line_free(g);
        return -ENOENT;
    }
    g->line = gpiod_chip_get_line(g->chip, off);
    if (!g->line) {
        int e = errno;
        *err = lume_strdupf("%s: chip '%s' line %u: %s", drv, v->str[0], off, strerror(e));
        line_free(g);
        return -e;
    }
    *out = g;
    return 0;
}

/* After a failed request: the message an operator needs. */
static int request_failed(const char *drv, const lume_pvals *v, gpio_line *g, char **err)
{
    int e = errno ? errno : EIO;
    const char *user = gpiod_line_consumer(g->line);
    if (e == EBUSY)
        *err = lume_strdupf("%s: chip '%s' line %u is in use by '%s'", drv, v->str[0],
                            (unsigned)v->num[1], user ? user : "another consumer");
    else
        *err = lume_strdupf("%s: chip '%s' line %u: request refused: %s", drv, v->str[0],
                            (unsigned)v->num[1], strerror(e));
    g->line = NULL;   /* never requested: nothing to release */
    line_free(g);
    return -e;
}

int lume_gpio_in_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    static const char *const biases[] = {"as-is", "disable", "pull-up", "pull-down", NULL};
    static const char *const modes[] = {"level", "edges", NULL};
    static const char *const edges[] = {"both", "rising", "falling", NULL};
    lume_pvals v;
    int r = lume_params_parse("gpio", in_spec, sizeof in_spec / sizeof *in_spec, p, &v, err);
    if (r < 0)
        return r;
    int bias = pick(v.str[3], biases, 0), mode = pick(v.str[4], modes, M_LEVEL),
        edge = pick(v.str[5], edges, 0);
    if (bias < 0 || mode < 0 || edge < 0) {
        *err = bias < 0   ? lume_strdupf("gpio: bias '%s' is not one of as-is, disable, "
                                         "pull-up, pull-down", v.str[3])
               : mode < 0 ? lume_strdupf("gpio: mode '%s' is not one of level, edges", v.str[4])
                          : lume_strdupf("gpio: edge '%s' is not one of both, rising, falling",
                                         v.str[5]);
        return -EINVAL;
    }
    if (mode == M_LEVEL && (v.given & (1u << 5 | 1u << 6))) {
        *err = lume_strdupf("gpio: params 'edge' and 'debounce_ms' need mode = \"edges\"");
        return -EINVAL;
    }
    gpio_line *g;
    if ((r = line_open("gpio", &v, &g, err)) < 0)
        return r;
    static const int bias_flag[] = {0, GPIOD_LINE_REQUEST_FLAG_BIAS_DISABLE,
                                    GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP,
                                    GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN};
    static const int edge_type[] = {GPIOD_LINE_REQUEST_EVENT_BOTH_EDGES,
                                    GPIOD_LINE_REQUEST_EVENT_RISING_EDGE,
                                    GPIOD_LINE_REQUEST_EVENT_FALLING_EDGE};
    struct gpiod_line_request_config cfg = {
        .consumer = CONSUMER,
        .request_type = mode == M_EDGES ? edge_type[edge] : GPIOD_LINE_REQUEST_DIRECTION_INPUT,
        .flags = bias_flag[bias] | (v.num[2] ? GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW : 0),
    };
    errno = 0;
    if (gpiod_line_request(g->line, &cfg, 0) < 0)
        return request_failed("gpio", &v, g, err);
    g->mode = mode;
    g->debounce_ns = (int64_t)(v.num[6] * 1e6);
    *state = g;
    return 0;
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

int lume_gpio_in_read(void *state, int64_t now, double *out)
{
    (void)now;
    gpio_line *g = state;
    if (g->mode == M_LEVEL) {
        int lv = gpiod_line_get_value(g->line);
        if (lv < 0)
            return -errno;
        *out = lv;
        return 0;
    }
    static const struct timespec zero = {0, 0};
    for (;;) {
        int r = gpiod_line_event_wait(g->line, &zero);
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        struct gpiod_line_event ev[16];
        int n = gpiod_line_event_read_multiple(g->line, ev, 16);
        if (n < 0)
            return -errno;
        for (int i = 0; i < n; i++) {
            int64_t t = ts_ns(&ev[i].ts);
            if (g->have_last && t - g->last_ts < g->debounce_ns)
                continue;
            g->have_last = true;
            g->last_ts = t;
            g->count++;
        }
        if (n < 16)
            break;
    }
    *out = g->count;
    return 0;
}

void lume_gpio_in_close(void *state)
{
    line_free(state);
}

/* ---- output ------------------------------------------------------------ */

static int out_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    static const char *const drives[] = {"push-pull", "open-drain", "open-source", NULL};
    static const int drive_flag[] = {0, GPIOD_LINE_REQUEST_FLAG_OPEN_DRAIN,
                                     GPIOD_LINE_REQUEST_FLAG_OPEN_SOURCE};
    lume_pvals v;
    int r = lume_params_parse("gpio output", out_spec, sizeof out_spec / sizeof *out_spec, p,
                              &v, err);
    if (r < 0)
        return r;
    int drive = pick(v.str[4], drives, 0);
    if (drive < 0) {
        *err = lume_strdupf("gpio output: drive '%s' is not one of push-pull, open-drain, "
                            "open-source", v.str[4]);
        return -EINVAL;
    }
    gpio_line *g;
    if ((r = line_open("gpio output", &v, &g, err)) < 0)
        return r;
    struct gpiod_line_request_config cfg = {
        .consumer = CONSUMER,
        .request_type = GPIOD_LINE_REQUEST_DIRECTION_OUTPUT,
        .flags = drive_flag[drive] | (v.num[2] ? GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW : 0),
    };
    errno = 0;
    if (gpiod_line_request(g->line, &cfg, v.num[3] != 0) < 0)
        return request_failed("gpio output", &v, g, err);
    *state = g;
    return 0;
}

static int out_write(void *state, double v, char **err)
{
    gpio_line *g = state;
    if (v != v) {
        *err = lume_strdupf("gpio output line %u: value is NaN", gpiod_line_offset(g->line));
        return -EINVAL;
    }
    if (gpiod_line_set_value(g->line, v != 0) < 0) {
        int e = errno;
        *err = lume_strdupf("gpio output line %u: %s", gpiod_line_offset(g->line), strerror(e));
        return -e;
    }
    return 0;
}

const lume_output_driver lume_gpio_output = {
    "gpio",
    "a GPIO output line through the character device: chip (required), line (required), "
    "active_low=0, initial=0 (level set when the board loads), drive=push-pull|open-drain|"
    "open-source; set(v) drives v != 0",
    out_open, out_write, lume_gpio_in_close};
