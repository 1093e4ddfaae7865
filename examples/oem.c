/* examples/oem.c — an OEM product that extends lume from C: its own sensor
 * driver (an ADC on the product's board) and its own Lua module (the
 * product's calibration), then a script that uses both.
 *
 * Built against an installed lume, as a product's build would:
 *
 *   cc examples/oem.c $(pkg-config --cflags --libs lume) -o oem
 *   ./oem WORKDIR [SECONDS]
 *
 * It writes its board file and its script into WORKDIR (boards/acme.lua,
 * scripts/calib.lua; the store goes to WORKDIR/var), adds the driver
 * `acme.adc` and the module `acme.calib` to the config, and runs lume for
 * SECONDS (default 1). lume's stdlib comes from the installed data
 * directory ($LUME_DATADIR overrides it). lume's log goes to stderr through
 * our sink; exit 0 when the script reported a calibrated reading.
 *
 * lume.h itself needs no Lua header; the module does (lua.h, lauxlib.h:
 * `pkg-config --cflags lume` has them, the Lua liblume was built with). */
#define _POSIX_C_SOURCE 200809L /* strdup, mkdir */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "lume.h"

/* ---- the driver: one ADC per product, one channel per sensor ------------ */

typedef struct adc {          /* ctx: the product's ADC, shared by its channels */
    unsigned long reads;
} adc;

typedef struct adc_chan {
    int    channel;
    double gain;
} adc_chan;

static const lume_driver_param adc_params[] = {
    {.name = "channel", .type = LUME_PARAM_NUMBER, .required = true, .min = 0, .max = 7},
    {.name = "gain", .type = LUME_PARAM_NUMBER, .dflt = 1, .min = 0.5, .max = 16},
};

static int adc_open(void *ctx, const lume_driver_value *v, void **chan, char **err)
{
    (void)ctx;
    if (v[0].num != (int)v[0].num) {
        *err = strdup("channel must be a whole number");
        return -EINVAL;
    }
    adc_chan *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->channel = (int)v[0].num;
    c->gain = v[1].num;
    *chan = c;
    return 0;
}

/* A real product reads its converter here (SPI, I2C, a register). Ours
 * reads 100 counts plus the channel number, times the gain. */
static int adc_read(void *ctx, void *chan, double *value)
{
    adc *a = ctx;
    adc_chan *c = chan;
    a->reads++;
    *value = (100 + c->channel) * c->gain;
    return 0;
}

static void adc_close(void *ctx, void *chan)
{
    (void)ctx;
    free(chan);
}

static const lume_driver_ops adc_ops = {
    .doc = "ACME on-board ADC: channel (0-7, required), gain=1 (0.5-16)",
    .params = adc_params, .n_params = 2,
    .open = adc_open, .read = adc_read, .close = adc_close,
    .read_timeout_ms = 50,
};

/* ---- the module: the product's calibration, for scripts ----------------- */

// Lua: calib.celsius(raw) -> degrees C
static int calib_celsius(lua_State *L)
{
    lua_pushnumber(L, luaL_checknumber(L, 1) * 0.1);
    return 1;
}

static int open_calib(lua_State *L)
{
    static const luaL_Reg fns[] = {{"celsius", calib_celsius}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushliteral(L, "1.0");
    lua_setfield(L, -2, "version");
    return 1;
}

/* ---- the product's board file and script --------------------------------- */

static const char board[] =
    "return { name = 'acme', description = 'ACME controller, rev B',\n"
    "  sensors = {\n"
    "    { name = 'probe', driver = 'acme.adc', unit = 'counts', rate = 20,\n"
    "      params = { channel = 3, gain = 2 } },\n"
    "  } }\n";

static const char script[] =
    "local calib = require 'acme.calib'\n"
    "local n = 0\n"
    "lume.on_sample('probe', function(raw)\n"
    "  n = n + 1\n"
    "  if n % 10 == 1 then\n"
    "    lume.log.info('probe raw %g -> %.1f C (acme.calib %s)', raw, calib.celsius(raw),\n"
    "                  calib.version)\n"
    "  end\n"
    "end)\n";

static int saw_reading;

static void on_log(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "log: %s %s: %s\n",
            level >= LUME_LOG_DEBUG && level <= LUME_LOG_ERROR ? names[level] : "?", component,
            msg);
    if (strstr(msg, "probe raw ") && strstr(msg, "(acme.calib 1.0)"))
        saw_reading = 1; /* sink calls come one at a time */
}

static int write_file(const char *dir, const char *sub, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "oem: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int fail(const char *what, char *err)
{
    fprintf(stderr, "oem: %s: %s\n", what, err ? err : "failed");
    lume_free(err);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: oem WORKDIR [SECONDS]\n");
        return 2;
    }
    const char *dir = argv[1];
    int seconds = argc > 2 ? atoi(argv[2]) : 1;
    mkdir(dir, 0755);
    if (write_file(dir, "boards", "acme.lua", board) < 0 ||
        write_file(dir, "scripts", "calib.lua", script) < 0)
        return 1;

    char *err = NULL, path[4096];
    adc the_adc = {0};
    lume_config *cfg = lume_config_new();
    if (!cfg)
        return fail("config", NULL);
    snprintf(path, sizeof path, "%s/boards/acme.lua", dir);  /* a board file by its path */
    if (lume_config_set_string(cfg, "board", path, &err) < 0)
        return fail("board", err);
    snprintf(path, sizeof path, "%s/scripts", dir);
    if (lume_config_set_string(cfg, "scripts_dir", path, &err) < 0)
        return fail("scripts_dir", err);
    snprintf(path, sizeof path, "%s/var", dir);
    if (lume_config_set_string(cfg, "store", path, &err) < 0 ||
        lume_config_set_int(cfg, "status_interval_ms", 0, &err) < 0 ||
        lume_config_set_bool(cfg, "watch_scripts", 0, &err) < 0)
        return fail("config", err);
    if (lume_config_add_driver(cfg, "acme.adc", &adc_ops, &the_adc, &err) < 0)
        return fail("driver acme.adc", err);
    if (lume_config_add_module(cfg, "acme.calib", open_calib, &err) < 0)
        return fail("module acme.calib", err);
    lume_config_set_log(cfg, on_log, NULL);

    lume_runtime *rt = lume_runtime_new(cfg, &err);
    lume_config_free(cfg);
    if (!rt)
        return fail("cannot start lume", err);
    for (int i = 0; i < seconds * 4; i++)
        if (lume_runtime_run_for(rt, 250) < 0)
            break;
    char *json = lume_runtime_stats_json(rt);
    printf("stats: %s\n", json ? json : "{}");
    lume_free(json);
    lume_runtime_free(rt); /* closes the channel: the_adc is free to go after this */
    printf("oem: %lu ADC reads, script %s\n", the_adc.reads,
           saw_reading ? "reported a calibrated reading" : "reported NOTHING");
    return saw_reading ? 0 : 1;
}
