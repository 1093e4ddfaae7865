/* core/sample/drv_modbus.c — Modbus TCP and RTU through libmodbus.
 *
 * A bus is one libmodbus context per url ("tcp://host:port" or
 * "rtu:/dev/ttyX"), shared by every channel and output that names it and
 * used by one request at a time (its mutex): an RTU line has one master.
 * A request that fails closes the connection; the next one reconnects (a
 * late answer of a server that was stopped never lands in a new request).
 * After a failure, reads of every channel on that bus fail at once with
 * the same error for RETRY_MS (one probe then tells whether it is back):
 * ten channels on a dead server do not queue ten timeouts behind each
 * other. Writes (outputs, fail-safe values above all) always try.
 *
 * A sensor channel never makes the sampler wait on the network. Each
 * channel has a poller thread:
 *
 *    sampler read()                          poller
 *   ┌──────┐ post request, return  ┌────────┐ answer / error ┌──────┐
 *   │ IDLE │ ────────────────────► │ ASKED  │ ─────────────► │ DONE │
 *   └──────┘  the previous answer  └────────┘                └──────┘
 *      ▲                               │ read() while ASKED:     │
 *      │                               │ -ETIMEDOUT, nothing     │
 *      └───────────────────────────────┴─── next read() takes ───┘
 *
 *   1. read() only takes the channel's mutex (never held across I/O), so
 *      a server that stops answering costs the sampler nothing.
 *   2. A reading is the answer to the request posted at the previous
 *      reading of that channel: at most one period old. The first reading
 *      of a channel has none yet (-EINPROGRESS).
 *   3. An unanswered request shows as -ETIMEDOUT at every reading until it
 *      returns (libmodbus's response timeout = params.timeout_ms), then the
 *      next answer is read again: recovery needs nothing from anyone.
 *   4. The poller logs when a server stops answering and when it answers
 *      again, not every failed request. */
#include "drv_modbus.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <modbus.h>

#include "clock.h"
#include "log.h"

#define RETRY_MS 1000

/* ---- types ------------------------------------------------------------- */

int lume_modbus_type(const char *n)
{
    static const char *const names[] = {"u16", "s16", "u32", "s32", "float32"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(n, names[i]))
            return i;
    return -EINVAL;
}

int lume_modbus_width(int type) { return type >= LUME_MB_U32 ? 2 : 1; }

double lume_modbus_decode(const uint16_t *r, int type, int big_words)
{
    uint32_t w = big_words ? ((uint32_t)r[0] << 16 | r[1]) : ((uint32_t)r[1] << 16 | r[0]);
    switch (type) {
    case LUME_MB_U16: return r[0];
    case LUME_MB_S16: return (int16_t)r[0];
    case LUME_MB_U32: return w;
    case LUME_MB_S32: return (int32_t)w;
    default: {
        float f;
        memcpy(&f, &w, sizeof f);
        return f;
    }
    }
}

int lume_modbus_encode(double v, int type, int big_words, uint16_t r[2])
{
    uint32_t w;
    switch (type) {
    case LUME_MB_U16:
        if (!(v >= 0 && v <= 65535))
            return -ERANGE;
        r[0] = (uint16_t)lround(v);
        return 0;
    case LUME_MB_S16:
        if (!(v >= -32768 && v <= 32767))
            return -ERANGE;
        r[0] = (uint16_t)(int16_t)lround(v);
        return 0;
    case LUME_MB_U32:
        if (!(v >= 0 && v <= 4294967295.0))
            return -ERANGE;
        w = (uint32_t)llround(v);
        break;
    case LUME_MB_S32:
        if (!(v >= -2147483648.0 && v <= 2147483647.0))
            return -ERANGE;
        w = (uint32_t)(int32_t)llround(v);
        break;
    default: {
        if (!isfinite(v))
            return -ERANGE;
        float f = (float)v;
        memcpy(&w, &f, sizeof w);
    }
    }
    r[big_words ? 0 : 1] = (uint16_t)(w >> 16);
    r[big_words ? 1 : 0] = (uint16_t)(w & 0xffff);
    return 0;
}

/* ---- buses ------------------------------------------------------------- */

typedef struct bus {
    char            *url;
    modbus_t        *ctx;
    bool             connected;
    int              refs;
    int64_t          down_until;  /* reads fail fast with down_err until then */
    int              down_err;
    pthread_mutex_t  mu;
    struct bus      *next;
} bus;

static pthread_mutex_t buses_mu = PTHREAD_MUTEX_INITIALIZER;
static bus *buses;

/* url -> a new libmodbus context, or NULL with *err. */
static modbus_t *ctx_new(const char *drv, const char *url, int baud, const char *parity,
                         char **err)
{
    modbus_t *ctx = NULL;
    if (!strncmp(url, "tcp://", 6)) {
        char host[256];
        int port = 502;
        const char *h = url + 6, *c = strrchr(h, ':');
        size_t hl = c ? (size_t)(c - h) : strlen(h);
        if (hl == 0 || hl >= sizeof host || (c && (port = atoi(c + 1)) <= 0) || port > 65535) {
            lume_set_err(err, "%s: params.url %s: expected tcp://HOST[:PORT]", drv, url);
            return NULL;
        }
        memcpy(host, h, hl);
        host[hl] = '\0';
        ctx = modbus_new_tcp(host, port);
    } else if (!strncmp(url, "rtu:", 4) && url[4]) {
        char p = parity ? parity[0] : 'N';
        if (!parity || strlen(parity) != 1 || !strchr("NEO", p)) {
            lume_set_err(err, "%s: params.parity %s: expected N, E or O", drv,
                         parity ? parity : "(none)");
            return NULL;
        }
        ctx = modbus_new_rtu(url + 4, baud, p, 8, 1);
    } else {
        lume_set_err(err, "%s: params.url %s: expected tcp://HOST[:PORT] or rtu:/dev/DEVICE",
                     drv, url);
        return NULL;
    }
    if (!ctx)
        lume_set_err(err, "%s: %s: %s", drv, url, modbus_strerror(errno));
    return ctx;
}

static bus *bus_get(const char *drv, const char *url, int baud, const char *parity, char **err)
{
    pthread_mutex_lock(&buses_mu);
    bus *b;
    for (b = buses; b; b = b->next)
        if (!strcmp(b->url, url)) {
            b->refs++;
            pthread_mutex_unlock(&buses_mu);
            return b;
        }
    modbus_t *ctx = ctx_new(drv, url, baud, parity, err);
    b = ctx ? calloc(1, sizeof *b) : NULL;
    if (b && !(b->url = strdup(url))) {
        free(b);
        b = NULL;
    }
    if (!b) {
        if (ctx) {
            modbus_free(ctx);
            lume_set_err(err, "%s: out of memory", drv);
        }
        pthread_mutex_unlock(&buses_mu);
        return NULL;
    }
    b->ctx = ctx;
    b->refs = 1;
    pthread_mutex_init(&b->mu, NULL);
    b->next = buses;
    buses = b;
    pthread_mutex_unlock(&buses_mu);
    return b;
}

static void bus_put(bus *b)
{
    pthread_mutex_lock(&buses_mu);
    if (--b->refs == 0) {
        for (bus **p = &buses; *p; p = &(*p)->next)
            if (*p == b) {
                *p = b->next;
                break;
            }
        if (b->connected)
            modbus_close(b->ctx);
        modbus_free(b->ctx);
        pthread_mutex_destroy(&b->mu);
        free(b->url);
        free(b);
    }
    pthread_mutex_unlock(&buses_mu);
}

/* Run one request on the bus (b->mu held): connect when needed, set the
 * unit and timeout; on failure close (the next request reconnects).
 * Returns 0 or -errno. */
static int bus_begin(bus *b, int unit, int timeout_ms)
{
    if (!b->connected) {
        modbus_set_response_timeout(b->ctx, (uint32_t)(timeout_ms / 1000),
                                    (uint32_t)(timeout_ms % 1000) * 1000);
        if (modbus_connect(b->ctx) < 0)
            return errno ? -errno : -EIO;
        b->connected = true;
    }
    modbus_set_response_timeout(b->ctx, (uint32_t)(timeout_ms / 1000),
                                (uint32_t)(timeout_ms % 1000) * 1000);
    modbus_set_slave(b->ctx, unit);
    return 0;
}

/* libmodbus's own error codes (a Modbus exception, a bad CRC) are past the
 * system's errno range: what the sampler and `lume stats` show is the
 * nearest errno (strerror must name it); the log keeps libmodbus's words. */
static int plain_errno(int r)
{
    if (-r < MODBUS_ENOBASE)
        return r;
    switch (-r) {
    case EMBXILADD: return -ENXIO;        /* illegal data address */
    case EMBXILFUN: return -EOPNOTSUPP;   /* illegal function */
    case EMBXILVAL: return -EINVAL;       /* illegal data value */
    case EMBXSBUSY: return -EBUSY;        /* slave busy */
    case EMBBADCRC: case EMBBADDATA: case EMBBADEXC: case EMBMDATA: case EMBBADSLAVE:
        return -EBADMSG;
    default: return -EPROTO;
    }
}

static int bus_fail(bus *b)
{
    int e = errno ? errno : EIO;
    modbus_close(b->ctx);
    b->connected = false;
    b->down_err = -e;
    b->down_until = lume_mono_ns() + RETRY_MS * LUME_NS_PER_MS;
    return -e;
}

/* ---- the sensor driver ------------------------------------------------- */

enum { T_HOLDING, T_INPUT, T_COIL, T_DISCRETE };

typedef struct mb_chan {
    bus            *bus;
    int             unit, table, addr, type, big, timeout_ms;
    double          scale, offset;
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            asked, quit, have, down;
    lume_log_target *log;           /* the opener's (log.h, rule 3) */
    int             rc;
    double          value;
    char            name[96];
} mb_chan;

static const lume_pspec mb_spec[] = {
    {"url", LUME_P_STR, 0, 0, 0},
    {"unit", LUME_P_NUM, 1, 0, 247},
    {"table", LUME_P_STR, 0, 0, 0},     /* holding | input | coil | discrete */
    {"address", LUME_P_NUM, 0, 0, 65535},
    {"type", LUME_P_STR, 0, 0, 0},      /* u16 | s16 | u32 | s32 | float32 */
    {"order", LUME_P_STR, 0, 0, 0},     /* big | little (word order) */
    {"scale", LUME_P_NUM, 1, -1e12, 1e12},
    {"offset", LUME_P_NUM, 0, -1e12, 1e12},
    {"timeout_ms", LUME_P_NUM, 500, 1, 60000},
    {"baud", LUME_P_NUM, 9600, 50, 4000000},
    {"parity", LUME_P_STR, 0, 0, 0},    /* N | E | O */
};
#define MB_NSPEC (sizeof mb_spec / sizeof *mb_spec)

/* The common params: url, unit, type, order, timeout, baud, parity. */
static int common(const char *drv, const lume_pvals *v, int *type, int *big, char **err)
{
    if (!v->str[0]) {
        lume_set_err(err, "%s: params.url is required (tcp://HOST[:PORT] or rtu:/dev/DEVICE)",
                     drv);
        return -EINVAL;
    }
    *type = lume_modbus_type(v->str[4] ? v->str[4] : "u16");
    if (*type < 0) {
        lume_set_err(err, "%s: params.type %s: expected u16, s16, u32, s32 or float32", drv,
                     v->str[4]);
        return -EINVAL;
    }
    const char *o = v->str[5] ? v->str[5] : "big";
    if (strcmp(o, "big") && strcmp(o, "little")) {
        lume_set_err(err, "%s: params.order %s: expected big (high word first) or little",
                     drv, o);
        return -EINVAL;
    }
    *big = !strcmp(o, "big");
    return 0;
}

static int chan_request(mb_chan *c, double *out)
{
    uint16_t regs[2];
    uint8_t bit;
    int n, w = lume_modbus_width(c->type);
    pthread_mutex_lock(&c->bus->mu);
    if (c->bus->down_err && lume_mono_ns() < c->bus->down_until) {
        int e = c->bus->down_err;
        pthread_mutex_unlock(&c->bus->mu);
        return e;
    }
    errno = 0;
    int r = bus_begin(c->bus, c->unit, c->timeout_ms);
    if (r == 0) {
        errno = 0;
        switch (c->table) {
        case T_HOLDING: n = modbus_read_registers(c->bus->ctx, c->addr, w, regs); break;
        case T_INPUT: n = modbus_read_input_registers(c->bus->ctx, c->addr, w, regs); break;
        case T_COIL: n = modbus_read_bits(c->bus->ctx, c->addr, 1, &bit); break;
        default: n = modbus_read_input_bits(c->bus->ctx, c->addr, 1, &bit); break;
        }
        if (n < 0 && c->bus->connected && errno >= MODBUS_ENOBASE && errno != EMBBADCRC &&
            errno != EMBBADDATA && errno != EMBMDATA)
            r = -errno;     /* the server answered with an exception: the bus is fine */
        else if (n < 0)
            r = bus_fail(c->bus);
        else
            c->bus->down_err = 0;
    } else {
        r = bus_fail(c->bus);
    }
    pthread_mutex_unlock(&c->bus->mu);
    if (r < 0)
        return r;
    double raw = c->table >= T_COIL ? (double)(bit != 0) : lume_modbus_decode(regs, c->type, c->big);
    *out = raw * c->scale + c->offset;
    return 0;
}

static void *poller(void *arg)
{
    mb_chan *c = arg;
    lume_log_use(c->log);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->asked && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->quit)
            break;
        pthread_mutex_unlock(&c->mu);
        double v = NAN;
        int r = chan_request(c, &v);
        pthread_mutex_lock(&c->mu);
        if (r < 0 && !c->down) {     /* invariant 4 */
            c->down = true;
            lume_log(LUME_LOG_WARN, "modbus", "%s (unit %d): %s", c->name, c->unit,
                     r == -ETIMEDOUT ? "not answering (timeout)" : modbus_strerror(-r));
        } else if (r == 0 && c->down) {
            c->down = false;
            lume_log(LUME_LOG_INFO, "modbus", "%s: %s answers again", c->name, c->bus->url);
        }
        c->rc = plain_errno(r);
        c->value = v;
        c->have = true;
        c->asked = false;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int mb_open(lume_board_ctx *board, const lume_params *p, void **state, char **err)
{
    (void)board;
    lume_pvals v;
    int r = lume_params_parse("modbus", mb_spec, MB_NSPEC, p, &v, err);
    if (r < 0)
        return r;
    int type, big;
    if ((r = common("modbus", &v, &type, &big, err)) < 0)
        return r;
    static const char *const tables[] = {"holding", "input", "coil", "discrete"};
    const char *t = v.str[2] ? v.str[2] : "holding";
    int table = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(t, tables[i]))
            table = i;
    if (table < 0) {
        lume_set_err(err, "modbus: params.table %s: expected holding, input, coil or discrete", t);
        return -EINVAL;
    }
    mb_chan *c = calloc(1, sizeof *c);
    if (!c) {
        lume_set_err(err, "modbus: out of memory");
        return -ENOMEM;
    }
    c->bus = bus_get("modbus", v.str[0], (int)v.num[9], v.str[10] ? v.str[10] : "N", err);
    if (!c->bus) {
        free(c);
        return -EINVAL;
    }
    c->unit = (int)v.num[1];
    c->table = table;
    c->addr = (int)v.num[3];
    c->type = type;
    c->big = big;
    c->scale = v.num[6];
    c->offset = v.num[7];
    c->timeout_ms = (int)v.num[8];
    snprintf(c->name, sizeof c->name, "%s %s %d", v.str[0], t, c->addr);
    c->log = lume_log_current();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if ((r = pthread_create(&c->thread, NULL, poller, c)) != 0) {
        bus_put(c->bus);
        free(c);
        lume_set_err(err, "modbus: no thread: %s", strerror(r));
        return -r;
    }
    *state = c;
    return 0;
}

static int mb_read(void *state, int64_t now_ns, double *out)
{
    (void)now_ns;
    mb_chan *c = state;
    pthread_mutex_lock(&c->mu);
    if (c->asked) {                 /* invariant 3 */
        pthread_mutex_unlock(&c->mu);
        return -ETIMEDOUT;
    }
    int r = c->have ? c->rc : -EINPROGRESS;
    *out = c->value;
    c->have = false;
    c->asked = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return r;
}

static void mb_close(void *state)
{
    mb_chan *c = state;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL); /* at most one request: its timeout */
    bus_put(c->bus);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

const lume_driver lume_drv_modbus = {
    "modbus",
    "a Modbus TCP or RTU value (libmodbus), value = raw * scale + offset: url "
    "(tcp://HOST[:PORT] or rtu:/dev/DEVICE, required), unit=1, table=holding "
    "(holding, input, coil, discrete), address=0, type=u16 (u16, s16, u32, s32, "
    "float32), order=big (word order of 32-bit types: big = high word first), "
    "scale=1, offset=0, timeout_ms=500, baud=9600 and parity=N (RTU, 8 data bits, "
    "1 stop bit); read off the sampler thread, each reading the answer to the "
    "previous request",
    mb_open, mb_read, mb_close};

/* ---- the output drivers ------------------------------------------------ */

typedef struct mb_out {
    bus   *bus;
    int    unit, addr, type, big, timeout_ms, coil;
    double scale, offset;
} mb_out;

static const lume_pspec out_spec[] = {
    {"url", LUME_P_STR, 0, 0, 0},
    {"unit", LUME_P_NUM, 1, 0, 247},
    {"table", LUME_P_STR, 0, 0, 0},     /* unused: the driver's name says it */
    {"address", LUME_P_NUM, 0, 0, 65535},
    {"type", LUME_P_STR, 0, 0, 0},
    {"order", LUME_P_STR, 0, 0, 0},
    {"scale", LUME_P_NUM, 1, -1e12, 1e12},
    {"offset", LUME_P_NUM, 0, -1e12, 1e12},
    {"timeout_ms", LUME_P_NUM, 500, 1, 60000},
    {"baud", LUME_P_NUM, 9600, 50, 4000000},
    {"parity", LUME_P_STR, 0, 0, 0},
};

static int out_open(const char *drv, int coil, const lume_params *p, void **state, char **err)
{
    lume_pvals v;
    int r = lume_params_parse(drv, out_spec, MB_NSPEC, p, &v, err);
    if (r < 0)
        return r;
    if (v.str[2]) {
        lume_set_err(err, "%s: params.table is not for outputs (the driver's name says "
                     "what it writes)", drv);
        return -EINVAL;
    }
    int type, big;
    if ((r = common(drv, &v, &type, &big, err)) < 0)
        return r;
    if (v.num[6] == 0) {
        lume_set_err(err, "%s: params.scale must not be 0", drv);
        return -EINVAL;
    }
    mb_out *o = calloc(1, sizeof *o);
    if (!o) {
        lume_set_err(err, "%s: out of memory", drv);
        return -ENOMEM;
    }
    o->bus = bus_get(drv, v.str[0], (int)v.num[9], v.str[10] ? v.str[10] : "N", err);
    if (!o->bus) {
        free(o);
        return -EINVAL;
    }
    o->coil = coil;
    o->unit = (int)v.num[1];
    o->addr = (int)v.num[3];
    o->type = type;
    o->big = big;
    o->scale = v.num[6];
    o->offset = v.num[7];
    o->timeout_ms = (int)v.num[8];
    *state = o;
    return 0;
}

static int coil_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    return out_open("modbus.coil", 1, p, state, err);
}

static int reg_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    return out_open("modbus.register", 0, p, state, err);
}

static int out_write(void *state, double v, char **err)
{
    mb_out *o = state;
    uint16_t regs[2];
    int w = lume_modbus_width(o->type);
    if (!o->coil && lume_modbus_encode((v - o->offset) / o->scale, o->type, o->big, regs) < 0) {
        lume_set_err(err, "%s: %g does not fit its type", o->bus->url, v);
        return -ERANGE;
    }
    pthread_mutex_lock(&o->bus->mu);
    errno = 0;
    int r = bus_begin(o->bus, o->unit, o->timeout_ms), n = 0;
    if (r == 0) {
        errno = 0;
        if (o->coil)
            n = modbus_write_bit(o->bus->ctx, o->addr, v != 0);
        else if (w == 1)
            n = modbus_write_register(o->bus->ctx, o->addr, regs[0]);
        else
            n = modbus_write_registers(o->bus->ctx, o->addr, 2, regs);
        if (n < 0 && errno >= MODBUS_ENOBASE && errno != EMBBADCRC && errno != EMBBADDATA &&
            errno != EMBMDATA)
            r = -errno;     /* an exception answer: the bus is fine */
        else if (n < 0)
            r = bus_fail(o->bus);
        else
            o->bus->down_err = 0;
    } else {
        r = bus_fail(o->bus);
    }
    pthread_mutex_unlock(&o->bus->mu);
    if (r < 0)
        lume_set_err(err, "%s unit %d %s %d: %s", o->bus->url, o->unit,
                     o->coil ? "coil" : "register", o->addr,
                     r == -ETIMEDOUT ? "not answering (timeout)" : modbus_strerror(-r));
    return plain_errno(r);
}

static void out_close(void *state)
{
    mb_out *o = state;
    if (!o)
        return;
    bus_put(o->bus);
    free(o);
}

const lume_output_driver lume_out_modbus_coil = {
    "modbus.coil",
    "a Modbus coil (0 = off, anything else = on): url, unit=1, address, timeout_ms=500, "
    "baud, parity as for the modbus sensor driver",
    coil_open, out_write, out_close};

const lume_output_driver lume_out_modbus_register = {
    "modbus.register",
    "a Modbus holding register (or two, for 32-bit types), raw = (v - offset) / scale: "
    "url, unit=1, address, type=u16, order=big, scale=1, offset=0, timeout_ms=500, "
    "baud, parity",
    reg_open, out_write, out_close};
