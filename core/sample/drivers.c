/* core/sample/drivers.c — built-in sensor drivers. See drivers.h.
 *
 * Parameters are checked in one place: each driver declares a table of
 * pspec {key, kind, default, lo, hi}; open() runs it through parse_params,
 * which rejects unknown keys (typos), wrong types and out-of-range numbers
 * with a message naming the driver, the key and the allowed range.
 *
 * The simulated world (lume_board_ctx)
 *   One per board, shared by its sim.* channels, all of which are read on
 *   the sampler thread (never read one board from two threads). The world
 *   advances with the now_ns it is asked about, never with the number of
 *   reads, so it behaves the same at any sample rate; a now_ns earlier than
 *   the world's clock reads the current state without moving it.
 *   - power: two states, mains (1) and battery (0); each stay lasts
 *     MIN_DWELL_S plus an exponential draw, so its mean is mains_mean_s or
 *     battery_mean_s (a real transfer switch does not chatter: a state
 *     never lasts less than MIN_DWELL_S).
 *     With source_file set, a file holding "mains" or "battery" (or 1 or 0)
 *     decides instead, from the moment it holds one (re-read at most every
 *     SOURCE_CHECK_NS of world time); without it, or when it holds
 *     anything else, the random switching goes on. Tests and demos drive
 *     the board's power supply this way.
 *   - battery: a voltage that rises by charge_per_h V/h while on mains and
 *     falls by drain_per_h V/h while on battery, clamped to [empty, full],
 *     integrated exactly across every switch.
 *   - ambient temperature: base + amplitude * sin(2π (h - 9) / 24), h the
 *     simulated hour of day (24 h = day_s seconds, midnight at the first
 *     read; coolest at 03:00, warmest at 15:00), plus a mean-reverting
 *     random walk (Ornstein-Uhlenbeck: step walk °C per √s, reverting with
 *     time constant revert_s), stepped exactly over any interval.
 *   sim.humidity reads that ambient temperature, so it is anti-correlated.
 *
 * Randomness: xoshiro256** streams seeded with splitmix64 from the board's
 * seed — stream 0 for power switching, 1 for the temperature walk, one more
 * per opened channel in open order. The same seed, open order and now_ns
 * sequence give the same readings; power switch times (and so the battery)
 * do not even depend on when or how often the world is read.
 *
 * Host drivers read /proc with pread() at offset 0 on a descriptor opened
 * once, into a buffer inside their state: read() neither allocates nor
 * uses stdio. */
#include "drivers.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "clock.h"
#include "drv_linux.h"
#include "drv_modbus.h"
#include "drv_uart.h"
#include "log.h"

#define MIN_DWELL_S   1.0
#define SOURCE_CHECK_NS 100000000LL   /* sim.power source_file: re-read at most this often */
#define PROC_MAGIC    0x9fa0
#define SYSFS_MAGIC   0x62656572

/* ---- params ------------------------------------------------------------ */

static bool parse_num_text(const char *s, double *out, bool strict)
{
    char *end;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v))
        return false;
    if (strict) {
        while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
            end++;
        if (*end)
            return false;
    }
    *out = v;
    return true;
}

static const lume_param *param_get(const lume_params *p, const char *key)
{
    if (!p || !key)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].key && !strcmp(p->v[i].key, key))
            return &p->v[i];
    return NULL;
}

/* A string that holds a number counts as that number. */
double lume_params_num(const lume_params *p, const char *key, double dflt)
{
    const lume_param *q = param_get(p, key);
    double v;
    if (!q)
        return dflt;
    if (!q->str)
        return q->num;
    return parse_num_text(q->str, &v, true) ? v : dflt;
}

/* A number is not a string: dflt is returned for it. */
const char *lume_params_str(const lume_params *p, const char *key, const char *dflt)
{
    const lume_param *q = param_get(p, key);
    return q && q->str ? q->str : dflt;
}

#define P_NUM LUME_P_NUM
#define P_STR LUME_P_STR
typedef lume_pspec pspec;
typedef lume_pvals pvals;

static int parse_params(const char *drv, const pspec *spec, size_t n,
                        const lume_params *p, pvals *out, char **err)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out->num[i] = spec[i].dflt;
    for (size_t j = 0; p && j < p->n; j++) {
        const lume_param *q = &p->v[j];
        size_t i = 0;
        while (i < n && (!q->key || strcmp(q->key, spec[i].key)))
            i++;
        if (i == n) {
            char known[256] = "";
            size_t len = 0;
            for (size_t k = 0; k < n && len < sizeof known; k++)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s",
                                        k ? ", " : "", spec[k].key);
            *err = lume_strdupf("%s: unknown param '%s' (known: %s)", drv,
                                q->key ? q->key : "(null)", n ? known : "none");
            return -EINVAL;
        }
        out->given |= 1u << i;
        if (spec[i].kind == P_STR) {
            if (!q->str) {
                *err = lume_strdupf("%s: param '%s' must be a string", drv, q->key);
                return -EINVAL;
            }
            out->str[i] = q->str;
            continue;
        }
        double v;
        if (q->str && !parse_num_text(q->str, &v, true)) {
            *err = lume_strdupf("%s: param '%s' must be a number (got \"%s\")", drv,
                                q->key, q->str);
            return -EINVAL;
        }
        if (!q->str)
            v = q->num;
        if (!isfinite(v) || v < spec[i].lo || v > spec[i].hi) {
            *err = lume_strdupf("%s: param '%s' = %g is out of range [%g, %g]", drv,
                                q->key, v, spec[i].lo, spec[i].hi);
            return -EINVAL;
        }
        out->num[i] = v;
    }
    return 0;
}

int lume_params_parse(const char *drv, const lume_pspec *spec, size_t n,
                      const lume_params *p, lume_pvals *out, char **err)
{
    if (n > LUME_PSPEC_MAX) {
        *err = lume_strdupf("%s: more than %d params declared", drv, LUME_PSPEC_MAX);
        return -EINVAL;
    }
    return parse_params(drv, spec, n, p, out, err);
}

#define NSPEC(a) (sizeof(a) / sizeof((a)[0]))

/* ---- randomness -------------------------------------------------------- */

typedef struct rng { uint64_t s[4]; } rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* [0, 1) */
static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_gauss(rng *r)
{
    double u1 = 1.0 - rng_unit(r);          /* (0, 1] */
    double u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double rng_exp(rng *r, double mean)
{
    return -mean * log(1.0 - rng_unit(r));
}

/* Exact Ornstein-Uhlenbeck step over dt seconds: mean 0, time constant tau,
 * diffusion sigma per sqrt(second). */
static double ou_step(rng *r, double x, double dt, double sigma, double tau)
{
    double a = exp(-dt / tau);
    double sd = sigma * sqrt(tau / 2.0 * (1.0 - a * a));
    return x * a + sd * rng_gauss(r);
}

/* ---- the board's world ------------------------------------------------- */

struct lume_board_ctx {
    uint64_t seed;
    uint64_t streams;          /* channel streams handed out so far */
    rng      rng;              /* stream 0: power switching */
    rng      walk_rng;         /* stream 1: the temperature walk */
    bool     started;
    int64_t  t0, t;            /* first and latest now_ns seen */
    /* power */
    double   mains_mean_s, battery_mean_s;
    bool     mains;
    int64_t  switch_at;        /* INT64_MAX while source_file decides */
    char    *source_file;      /* sim.power's, or NULL */
    int64_t  source_at;        /* when it was last read */
    /* battery */
    double   full, empty, drain_per_h, charge_per_h, volts;
    /* ambient temperature */
    double   t_base, t_amp, day_s, t_walk, t_revert_s, t_x;
};

lume_board_ctx *lume_board_ctx_new(uint64_t seed)
{
    lume_board_ctx *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->seed = seed;
    rng_seed(&b->rng, seed, 0);
    rng_seed(&b->walk_rng, seed, 1);
    b->streams = 1;
    b->mains_mean_s = 120;
    b->battery_mean_s = 60;
    b->full = 4.2;
    b->empty = 3.3;
    b->drain_per_h = 0.9;
    b->charge_per_h = 0.6;
    b->volts = b->empty + 0.75 * (b->full - b->empty);
    b->t_base = 22;
    b->t_amp = 4;
    b->day_s = 86400;
    b->t_walk = 0.02;
    b->t_revert_s = 1800;
    return b;
}

void lume_board_ctx_free(lume_board_ctx *b)
{
    if (b)
        free(b->source_file);
    free(b);
}

static int64_t dwell_ns(lume_board_ctx *b)
{
    double mean = b->mains ? b->mains_mean_s : b->battery_mean_s;
    double s = MIN_DWELL_S + rng_exp(&b->rng, mean - MIN_DWELL_S);
    return (int64_t)(s * 1e9);
}

static void battery_run(lume_board_ctx *b, int64_t dt_ns)
{
    double h = (double)dt_ns / 3.6e12;
    b->volts += b->mains ? b->charge_per_h * h : -b->drain_per_h * h;
    if (b->volts > b->full)
        b->volts = b->full;
    if (b->volts < b->empty)
        b->volts = b->empty;
}

/* sim.power's source_file: 1 mains, 0 battery, -1 neither (missing, other). */
static int source_read(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    buf[strcspn(buf, " \t\r\n")] = 0;
    if (!strcmp(buf, "mains") || !strcmp(buf, "1"))
        return 1;
    if (!strcmp(buf, "battery") || !strcmp(buf, "0"))
        return 0;
    return -1;
}

/* After the world reached now: the file's word, when it has one, is the
 * power source from now on. */
static void source_apply(lume_board_ctx *b, int64_t now)
{
    if (!b->source_file || (b->source_at && now - b->source_at < SOURCE_CHECK_NS))
        return;
    b->source_at = now;
    int src = source_read(b->source_file);
    if (src >= 0) {
        b->mains = src == 1;
        b->switch_at = INT64_MAX;
    } else if (b->switch_at == INT64_MAX) {   /* back to chance */
        b->switch_at = now + dwell_ns(b);
    }
}

static void world_advance(lume_board_ctx *b, int64_t now)
{
    if (!b->started) {
        b->started = true;
        b->t0 = b->t = now;
        double pm = b->mains_mean_s / (b->mains_mean_s + b->battery_mean_s);
        b->mains = rng_unit(&b->rng) < pm;
        b->switch_at = now + dwell_ns(b);
        source_apply(b, now);
        return;
    }
    if (now <= b->t)
        return;
    b->t_x = ou_step(&b->walk_rng, b->t_x, (double)(now - b->t) / 1e9, b->t_walk,
                     b->t_revert_s);
    while (b->switch_at <= now) {
        battery_run(b, b->switch_at - b->t);
        b->t = b->switch_at;
        b->mains = !b->mains;
        b->switch_at = b->t + dwell_ns(b);
    }
    battery_run(b, now - b->t);
    b->t = now;
    source_apply(b, now);
}

/* Ambient temperature at the world's current time. */
static double world_temp(const lume_board_ctx *b)
{
    double days = (double)(b->t - b->t0) / 1e9 / b->day_s;
    double hour = 24.0 * (days - floor(days));
    return b->t_base + b->t_amp * sin(2.0 * M_PI * (hour - 9.0) / 24.0) + b->t_x;
}

/* A channel's private randomness. */
typedef struct sim_chan {
    lume_board_ctx *b;
    rng             rng;
    double          noise;
    /* humidity's own walk */
    double          base, coupling, walk, revert_s, x;
    bool            started;
    int64_t         t;
    /* vibration */
    double          rms, every_s, burst_s, gain;
    int64_t         burst_at;
} sim_chan;

static int sim_chan_new(lume_board_ctx *b, void **state, char **err, const char *drv)
{
    if (!b) {
        *err = lume_strdupf("%s: needs a board (lume_board_ctx)", drv);
        return -EINVAL;
    }
    sim_chan *c = calloc(1, sizeof *c);
    if (!c) {
        *err = lume_strdupf("%s: out of memory", drv);
        return -ENOMEM;
    }
    c->b = b;
    rng_seed(&c->rng, b->seed, ++b->streams);
    *state = c;
    return 0;
}

static void sim_close(void *state) { free(state); }

/* ---- sim.temperature --------------------------------------------------- */

static const pspec temp_spec[] = {
    {"base", P_NUM, 22, -100, 200},
    {"amplitude", P_NUM, 4, 0, 100},
    {"day_s", P_NUM, 86400, 1, 1e9},
    {"walk", P_NUM, 0.02, 0, 10},
    {"revert_s", P_NUM, 1800, 1, 1e9},
    {"noise", P_NUM, 0.05, 0, 10},
};

static int temp_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    pvals v;
    int rc = parse_params("sim.temperature", temp_spec, NSPEC(temp_spec), p, &v, err);
    if (rc < 0)
        return rc;
    if ((rc = sim_chan_new(b, state, err, "sim.temperature")) < 0)
        return rc;
    b->t_base = v.num[0];
    b->t_amp = v.num[1];
    b->day_s = v.num[2];
    b->t_walk = v.num[3];
    b->t_revert_s = v.num[4];
    ((sim_chan *)*state)->noise = v.num[5];
    return 0;
}

static int temp_read(void *state, int64_t now, double *out)
{
    sim_chan *c = state;
    world_advance(c->b, now);
    *out = world_temp(c->b) + c->noise * rng_gauss(&c->rng);
    return 0;
}

/* ---- sim.humidity ------------------------------------------------------ */

static const pspec hum_spec[] = {
    {"base", P_NUM, 45, 0, 100},
    {"coupling", P_NUM, 3, -50, 50},
    {"walk", P_NUM, 0.05, 0, 10},
    {"revert_s", P_NUM, 1800, 1, 1e9},
    {"noise", P_NUM, 0.3, 0, 50},
};

static int hum_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    pvals v;
    int rc = parse_params("sim.humidity", hum_spec, NSPEC(hum_spec), p, &v, err);
    if (rc < 0)
        return rc;
    if ((rc = sim_chan_new(b, state, err, "sim.humidity")) < 0)
        return rc;
    sim_chan *c = *state;
    c->base = v.num[0];
    c->coupling = v.num[1];
    c->walk = v.num[2];
    c->revert_s = v.num[3];
    c->noise = v.num[4];
    return 0;
}

static int hum_read(void *state, int64_t now, double *out)
{
    sim_chan *c = state;
    world_advance(c->b, now);
    if (!c->started) {
        c->started = true;
        c->t = now;
    } else if (now > c->t) {
        c->x = ou_step(&c->rng, c->x, (double)(now - c->t) / 1e9, c->walk, c->revert_s);
        c->t = now;
    }
    double h = c->base - c->coupling * (world_temp(c->b) - c->b->t_base) + c->x +
               c->noise * rng_gauss(&c->rng);
    *out = h < 0 ? 0 : h > 100 ? 100 : h;
    return 0;
}

/* ---- sim.vibration ----------------------------------------------------- */

static const pspec vib_spec[] = {
    {"rms", P_NUM, 0.02, 0, 100},
    {"burst_every_s", P_NUM, 30, 0.001, 1e9},
    {"burst_s", P_NUM, 2, 0.001, 1e6},
    {"burst_gain", P_NUM, 25, 1, 1e6},
};

static int vib_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    pvals v;
    int rc = parse_params("sim.vibration", vib_spec, NSPEC(vib_spec), p, &v, err);
    if (rc < 0)
        return rc;
    if (v.num[1] <= v.num[2]) {
        *err = lume_strdupf("sim.vibration: burst_every_s (%g) must be longer than "
                            "burst_s (%g)", v.num[1], v.num[2]);
        return -EINVAL;
    }
    if ((rc = sim_chan_new(b, state, err, "sim.vibration")) < 0)
        return rc;
    sim_chan *c = *state;
    c->rms = v.num[0];
    c->every_s = v.num[1];
    c->burst_s = v.num[2];
    c->gain = v.num[3];
    return 0;
}

/* Time from one burst's start to the next: burst_s plus an exponential gap,
 * so the mean is burst_every_s. */
static int64_t vib_interval(sim_chan *c)
{
    return (int64_t)((c->burst_s + rng_exp(&c->rng, c->every_s - c->burst_s)) * 1e9);
}

static int vib_read(void *state, int64_t now, double *out)
{
    sim_chan *c = state;
    int64_t len = (int64_t)(c->burst_s * 1e9);
    if (!c->started) {
        c->started = true;
        c->burst_at = now + vib_interval(c) - len;   /* first one: a gap away */
    }
    while (now >= c->burst_at + len)
        c->burst_at += vib_interval(c);
    double env = 1.0;
    if (now >= c->burst_at) {
        double s = sin(M_PI * (double)(now - c->burst_at) / (double)len);
        env += (c->gain - 1.0) * s * s;    /* smooth rise and fall, peak = gain */
    }
    /* the RMS of a short window of noise: ~12% jitter around the level */
    *out = c->rms * env * fabs(1.0 + 0.125 * rng_gauss(&c->rng));
    return 0;
}

/* ---- sim.battery and sim.power ----------------------------------------- */

static const pspec bat_spec[] = {
    {"full", P_NUM, 4.2, 0, 1000},
    {"empty", P_NUM, 3.3, 0, 1000},
    {"drain_per_h", P_NUM, 0.9, 0, 1e6},
    {"charge_per_h", P_NUM, 0.6, 0, 1e6},
    {"start", P_NUM, 0, 0, 1000},
};

static int bat_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    pvals v;
    int rc = parse_params("sim.battery", bat_spec, NSPEC(bat_spec), p, &v, err);
    if (rc < 0)
        return rc;
    double full = v.num[0], empty = v.num[1];
    if (empty >= full) {
        *err = lume_strdupf("sim.battery: empty (%g V) must be below full (%g V)",
                            empty, full);
        return -EINVAL;
    }
    double start = (v.given & (1u << 4)) ? v.num[4] : empty + 0.75 * (full - empty);
    if (start < empty || start > full) {
        *err = lume_strdupf("sim.battery: start (%g V) must be within [%g, %g]", start,
                            empty, full);
        return -EINVAL;
    }
    if ((rc = sim_chan_new(b, state, err, "sim.battery")) < 0)
        return rc;
    b->full = full;
    b->empty = empty;
    b->drain_per_h = v.num[2];
    b->charge_per_h = v.num[3];
    b->volts = start;
    return 0;
}

static int bat_read(void *state, int64_t now, double *out)
{
    sim_chan *c = state;
    world_advance(c->b, now);
    *out = c->b->volts;
    return 0;
}

static const pspec pow_spec[] = {
    {"mains_mean_s", P_NUM, 120, MIN_DWELL_S, 1e9},
    {"battery_mean_s", P_NUM, 60, MIN_DWELL_S, 1e9},
    {"source_file", P_STR, 0, 0, 0},
};

static int pow_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    pvals v;
    int rc = parse_params("sim.power", pow_spec, NSPEC(pow_spec), p, &v, err);
    if (rc < 0)
        return rc;
    if ((rc = sim_chan_new(b, state, err, "sim.power")) < 0)
        return rc;
    b->mains_mean_s = v.num[0];
    b->battery_mean_s = v.num[1];
    if (v.str[2]) {
        free(b->source_file);
        if (!(b->source_file = strdup(v.str[2]))) {
            *err = lume_strdupf("sim.power: out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

static int pow_read(void *state, int64_t now, double *out)
{
    sim_chan *c = state;
    world_advance(c->b, now);
    *out = c->b->mains ? 1.0 : 0.0;
    return 0;
}

/* ---- host.* ------------------------------------------------------------ */

typedef struct host_chan {
    int      fd;
    uint64_t prev_busy, prev_total;   /* host.cpu */
    double   last;                    /* host.cpu */
    char     buf[4096];
} host_chan;

static int open_proc(const char *drv, const char *path, void **state, char **err)
{
    host_chan *h = calloc(1, sizeof *h);
    if (!h) {
        *err = lume_strdupf("%s: out of memory", drv);
        return -ENOMEM;
    }
    h->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (h->fd < 0) {
        int e = errno;
        *err = lume_strdupf("%s: %s: %s", drv, path, strerror(e));
        free(h);
        return -e;
    }
    *state = h;
    return 0;
}

static void host_close(void *state)
{
    host_chan *h = state;
    if (!h)
        return;
    close(h->fd);
    free(h);
}

/* pread the whole (small) file into h->buf, NUL-terminated. */
static int proc_slurp(host_chan *h, size_t max)
{
    if (max > sizeof h->buf - 1)
        max = sizeof h->buf - 1;
    ssize_t n = pread(h->fd, h->buf, max, 0);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ENODATA;
    h->buf[n] = '\0';
    return 0;
}

static int no_params(const char *drv, const lume_params *p, char **err)
{
    pvals v;
    return parse_params(drv, NULL, 0, p, &v, err);
}

static int load_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    int rc = no_params("host.loadavg", p, err);
    return rc < 0 ? rc : open_proc("host.loadavg", "/proc/loadavg", state, err);
}

static int load_read(void *state, int64_t now, double *out)
{
    (void)now;
    host_chan *h = state;
    int rc = proc_slurp(h, 128);
    if (rc < 0)
        return rc;
    return parse_num_text(h->buf, out, false) ? 0 : -EBADMSG;
}

static int mem_parse(host_chan *h, double *out)
{
    int rc = proc_slurp(h, sizeof h->buf - 1);
    if (rc < 0)
        return rc;
    const char *p = strstr(h->buf, "MemAvailable:");
    double kib;
    if (!p || !parse_num_text(p + 13, &kib, false))
        return -ENODATA;
    *out = kib / 1024.0;
    return 0;
}

static int mem_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    int rc = no_params("host.mem", p, err);
    if (rc < 0 || (rc = open_proc("host.mem", "/proc/meminfo", state, err)) < 0)
        return rc;
    double v;
    if ((rc = mem_parse(*state, &v)) < 0) {
        *err = lume_strdupf("host.mem: /proc/meminfo has no MemAvailable line "
                            "(kernel older than 3.14?)");
        host_close(*state);
        *state = NULL;
        return -ENOENT;
    }
    return 0;
}

static int mem_read(void *state, int64_t now, double *out)
{
    (void)now;
    return mem_parse(state, out);
}

/* The first line of /proc/stat: "cpu  user nice system idle iowait irq
 * softirq steal guest guest_nice" in ticks. guest time is already counted
 * in user/nice, so the total is the first eight fields; idle + iowait is
 * not busy. */
static int cpu_sample(host_chan *h, uint64_t *busy, uint64_t *total)
{
    int rc = proc_slurp(h, 512);
    if (rc < 0)
        return rc;
    if (strncmp(h->buf, "cpu ", 4))
        return -EBADMSG;
    const char *p = h->buf + 4;
    uint64_t f[8] = {0};
    for (int i = 0; i < 8; i++) {
        char *end;
        f[i] = strtoull(p, &end, 10);
        if (end == p) {
            if (i < 4)
                return -EBADMSG;   /* old kernels have fewer fields */
            break;
        }
        p = end;
    }
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += f[i];
    *busy = *total - f[3] - f[4];
    return 0;
}

static int cpu_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    int rc = no_params("host.cpu", p, err);
    if (rc < 0 || (rc = open_proc("host.cpu", "/proc/stat", state, err)) < 0)
        return rc;
    host_chan *h = *state;
    if ((rc = cpu_sample(h, &h->prev_busy, &h->prev_total)) < 0) {
        *err = lume_strdupf("host.cpu: /proc/stat: no 'cpu' line (%s)", strerror(-rc));
        host_close(h);
        *state = NULL;
        return rc;
    }
    /* until enough ticks pass for a figure of its own: the average since boot */
    h->last = h->prev_total ? 100.0 * (double)h->prev_busy / (double)h->prev_total : 0;
    return 0;
}

/* Busy % since the previous read (since open for the first). A read less
 * than CPU_MIN_TICKS ticks (summed over all CPUs) after the last figure
 * repeats that figure and lets the interval grow: a handful of ticks would
 * only give 0% or 100%. */
#define CPU_MIN_TICKS 10
static int cpu_read(void *state, int64_t now, double *out)
{
    (void)now;
    host_chan *h = state;
    uint64_t busy, total;
    int rc = cpu_sample(h, &busy, &total);
    if (rc < 0)
        return rc;
    if (total >= h->prev_total + CPU_MIN_TICKS) {
        /* iowait is known to step backwards on some kernels: never below 0 */
        uint64_t dbusy = busy > h->prev_busy ? busy - h->prev_busy : 0;
        double pct = 100.0 * (double)dbusy / (double)(total - h->prev_total);
        h->last = pct > 100 ? 100 : pct;
        h->prev_busy = busy;
        h->prev_total = total;
    }
    *out = h->last;
    return 0;
}

/* ---- file -------------------------------------------------------------- */

static const pspec file_spec[] = {
    {"path", P_STR, 0, 0, 0},
    {"scale", P_NUM, 1, -1e300, 1e300},
    {"offset", P_NUM, 0, -1e300, 1e300},
};

typedef struct file_chan {
    int    fd;          /* kept open for sysfs/procfs, -1 for other files */
    char  *path;
    double scale, offset;
    char   buf[128];
} file_chan;

void lume_file_close(void *state)
{
    file_chan *f = state;
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f);
}

/* sysfs and procfs files are re-read in place with pread(fd, .., 0); any
 * other file is opened anew for each read, so a file replaced by rename or
 * deleted is noticed instead of its old inode being read forever. */
static int file_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    (void)b;
    pvals v;
    int rc = parse_params("file", file_spec, NSPEC(file_spec), p, &v, err);
    if (rc < 0)
        return rc;
    if (!v.str[0] || !v.str[0][0]) {
        *err = lume_strdupf("file: param 'path' is required");
        return -EINVAL;
    }
    file_chan *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(v.str[0]))) {
        free(f);
        *err = lume_strdupf("file: out of memory");
        return -ENOMEM;
    }
    f->scale = v.num[1];
    f->offset = v.num[2];
    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        rc = -errno;
        *err = lume_strdupf("file: %s: %s", f->path, strerror(-rc));
        goto err;
    }
    struct stat st;
    struct statfs sf;
    if (fstat(f->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        *err = lume_strdupf("file: %s: is a directory", f->path);
        goto err;
    }
    if (fstatfs(f->fd, &sf) != 0 ||
        (sf.f_type != SYSFS_MAGIC && sf.f_type != PROC_MAGIC)) {
        close(f->fd);
        f->fd = -1;
    }
    *state = f;
    return 0;
err:
    lume_file_close(f);
    return rc;
}

/* -ENOENT (or another errno) when the file cannot be opened any more,
 * -ENODATA when it is empty, -EBADMSG when it does not hold one number. */
int lume_file_read(void *state, int64_t now, double *out)
{
    (void)now;
    file_chan *f = state;
    int fd = f->fd >= 0 ? f->fd : open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, f->buf, sizeof f->buf - 1, 0);
    int e = errno;
    if (f->fd < 0)
        close(fd);
    if (n < 0)
        return -e;
    if (n == 0)
        return -ENODATA;
    if ((size_t)n == sizeof f->buf - 1)
        return -EBADMSG;            /* far too long for one number */
    f->buf[n] = '\0';
    double v;
    if (!parse_num_text(f->buf, &v, true))
        return -EBADMSG;
    *out = v * f->scale + f->offset;
    return 0;
}

/* ---- the table --------------------------------------------------------- */

static const lume_driver drivers[] = {
    {"sim.temperature",
     "simulated air temperature (C): base=22, amplitude=4 (daily cycle, warmest "
     "15:00), day_s=86400 (length of a simulated day), walk=0.02 (C per sqrt(s) of "
     "mean-reverting random walk), revert_s=1800 (its time constant), noise=0.05 "
     "(sensor noise, C)",
     temp_open, temp_read, sim_close},
    {"sim.humidity",
     "simulated relative humidity (%RH), anti-correlated with the board's "
     "temperature: base=45, coupling=3 (%RH lost per C above the temperature "
     "base), walk=0.05 (%RH per sqrt(s), mean-reverting), revert_s=1800, "
     "noise=0.3",
     hum_open, hum_read, sim_close},
    {"sim.vibration",
     "simulated vibration level (g RMS): rms=0.02 (quiet level), burst_every_s=30 "
     "(mean time between anomaly burst starts, exponential), burst_s=2 (burst "
     "length), burst_gain=25 (peak level / quiet level)",
     vib_open, vib_read, sim_close},
    {"sim.battery",
     "simulated battery voltage (V), charging while the board's sim.power is on "
     "mains: full=4.2, empty=3.3, drain_per_h=0.9 (V/h on battery), "
     "charge_per_h=0.6 (V/h on mains), start=75% between empty and full",
     bat_open, bat_read, sim_close},
    {"sim.power",
     "simulated power source, 1 = mains, 0 = battery, switching at random: "
     "mains_mean_s=120, battery_mean_s=60 (mean stays; never under 1 s); "
     "source_file=PATH: a file holding mains or battery decides instead",
     pow_open, pow_read, sim_close},
    {"host.loadavg", "1-minute load average from /proc/loadavg; no params",
     load_open, load_read, host_close},
    {"host.mem", "MemAvailable from /proc/meminfo in MiB; no params",
     mem_open, mem_read, host_close},
    {"host.cpu",
     "CPU busy % (all CPUs) since the previous read, from /proc/stat; no params",
     cpu_open, cpu_read, host_close},
    {"file",
     "a number read from a file, value * scale + offset: path (required), "
     "scale=1, offset=0 (e.g. thermal zones: scale=0.001 for C)",
     file_open, lume_file_read, lume_file_close},
    LUME_DRIVER_GPIO,
    LUME_DRIVER_I2C,
    LUME_DRIVER_HWMON,
    LUME_DRIVER_IIO,
};

/* Drivers in files of their own (drv_*.c): one line each. */
static const lume_driver *const drivers_ext[] = {
    &lume_drv_modbus,
    &lume_drv_uart,
};

const lume_driver *lume_driver_at(size_t i)
{
    if (i < NSPEC(drivers))
        return &drivers[i];
    i -= NSPEC(drivers);
    return i < NSPEC(drivers_ext) ? drivers_ext[i] : NULL;
}

const lume_driver *lume_driver_find(const char *name)
{
    const lume_driver *d;
    for (size_t i = 0; name && (d = lume_driver_at(i)); i++)
        if (!strcmp(d->name, name))
            return d;
    return NULL;
}
