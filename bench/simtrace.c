/* bench/simtrace.c — a sensor trace from a board's simulated sensors, on a
 * simulated clock: what `lume run` on that board would have read, without
 * waiting for it.
 *
 *   simtrace BOARD.lua [--seconds S] [--seed N] [--jitter-us J] [--epoch E]
 *
 * Reads the board file (data: name, driver, rate, params per sensor), opens
 * each sim.* sensor with lume's own drivers (core/sample/drivers.c) on one
 * simulated world seeded with N (default 1), and reads every sensor at its
 * default rate for S seconds (default 600), in time order, as the sampler
 * would. A reading's timestamp is its deadline plus a lateness drawn from an
 * exponential distribution of mean J µs (default 50, about what the sampler
 * shows in docs/BENCHMARKS.md §1; 0 for exact deadlines), on the wall clock
 * from E (default 1764547200, 2026-12-01 00:00 UTC). Sensors with other
 * drivers are skipped (named on stderr).
 *
 * Prints one line per reading: NAME TAB T TAB VALUE (%.17g, so the doubles
 * read back exactly). The same arguments give the same trace. Exit 1 when
 * the board cannot be read or a driver refuses its params. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "drivers.h"

#define MAX_SENSORS 32
#define MAX_PARAMS  LUME_PSPEC_MAX

typedef struct {
    char              name[64];
    const lume_driver *drv;
    void              *state;
    int64_t            period_ns;
    int64_t            next_ns;
} chan;

static uint64_t rng_state;

/* splitmix64: the jitter's own randomness, apart from the world's */
static double unit(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static int fail(const char *msg)
{
    fprintf(stderr, "simtrace: %s\n", msg);
    return 1;
}

/* Open sensor `i` of the board table on top of L's stack into c. 1: opened,
 * 0: skipped, -1: error (printed). */
static int open_sensor(lua_State *L, lume_board_ctx *b, chan *c)
{
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "driver");
    lua_getfield(L, -3, "rate");
    const char *name = lua_tostring(L, -3), *drv = lua_tostring(L, -2);
    double rate = lua_tonumber(L, -1);
    if (!name || !drv || !(rate > 0)) {
        fprintf(stderr, "simtrace: a sensor without name, driver or a positive rate\n");
        return -1;
    }
    snprintf(c->name, sizeof c->name, "%s", name);
    lua_pop(L, 3);
    if (strncmp(drv, "sim.", 4) != 0) {
        fprintf(stderr, "simtrace: %s (driver %s) skipped: not simulated\n", name, drv);
        return 0;
    }
    c->drv = lume_driver_find(drv);
    if (!c->drv) {
        fprintf(stderr, "simtrace: %s: no driver %s\n", name, drv);
        return -1;
    }
    lume_param pv[MAX_PARAMS];
    size_t n = 0;
    if (lua_getfield(L, -1, "params") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (n == MAX_PARAMS || lua_type(L, -2) != LUA_TSTRING) {
                fprintf(stderr, "simtrace: %s: too many or unnamed params\n", name);
                return -1;
            }
            pv[n].key = lua_tostring(L, -2);  /* kept alive by the board table */
            pv[n].str = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            pv[n].num = lua_tonumber(L, -1);
            n++;
            lua_pop(L, 1);
        }
    }
    lume_params p = {pv, n};
    char *err = NULL;
    if (c->drv->open(b, &p, &c->state, &err) < 0) {
        fprintf(stderr, "simtrace: %s: %s\n", name, err ? err : "open failed");
        free(err);
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    c->period_ns = (int64_t)llround(1e9 / rate);
    return 1;
}

int main(int argc, char **argv)
{
    const char *board = NULL;
    double seconds = 600, jitter_us = 50, epoch = 1764547200;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--jitter-us") && i + 1 < argc)
            jitter_us = atof(argv[++i]);
        else if (!strcmp(argv[i], "--epoch") && i + 1 < argc)
            epoch = atof(argv[++i]);
        else if (argv[i][0] != '-' && !board)
            board = argv[i];
        else
            return fail("usage: simtrace BOARD.lua [--seconds S] [--seed N] [--jitter-us J] "
                        "[--epoch E]");
    }
    if (!board || !(seconds > 0) || jitter_us < 0)
        return fail("usage: simtrace BOARD.lua [--seconds S] [--seed N] [--jitter-us J] "
                    "[--epoch E]");
    rng_state = seed ^ 0x6a09e667f3bcc908ULL;

    lua_State *L = luaL_newstate();
    if (!L)
        return fail("out of memory");
    if (luaL_dofile(L, board) != LUA_OK || !lua_istable(L, -1)) {
        fprintf(stderr, "simtrace: %s: %s\n", board,
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "must return a table");
        return 1;
    }
    lume_board_ctx *b = lume_board_ctx_new(seed);
    chan ch[MAX_SENSORS];
    size_t nch = 0;
    if (!b || lua_getfield(L, -1, "sensors") != LUA_TTABLE)
        return fail("the board has no sensors table");
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
        if (nch == MAX_SENSORS)
            return fail("too many sensors");
        memset(&ch[nch], 0, sizeof ch[nch]);
        int rc = open_sensor(L, b, &ch[nch]);
        if (rc < 0)
            return 1;
        nch += (size_t)rc;
        lua_pop(L, 1);
    }
    if (nch == 0)
        return fail("no simulated sensor on this board");

    /* Every reading in deadline order (ties: board order), on a monotonic
     * clock starting at 1 s, as the sampler would take them. */
    const int64_t t0 = 1000000000LL, end = t0 + (int64_t)(seconds * 1e9);
    for (size_t i = 0; i < nch; i++)
        ch[i].next_ns = t0;
    for (;;) {
        size_t k = 0;
        for (size_t i = 1; i < nch; i++)
            if (ch[i].next_ns < ch[k].next_ns)
                k = i;
        if (ch[k].next_ns >= end)
            break;
        int64_t late = (int64_t)(-log(1.0 - unit()) * jitter_us * 1e3);
        int64_t now = ch[k].next_ns + late;
        double v;
        if (ch[k].drv->read(ch[k].state, now, &v) == 0)
            printf("%s\t%.17g\t%.17g\n", ch[k].name, epoch + (double)(now - t0) / 1e9, v);
        ch[k].next_ns += ch[k].period_ns;
    }
    for (size_t i = 0; i < nch; i++)
        ch[i].drv->close(ch[i].state);
    lume_board_ctx_free(b);
    lua_close(L);
    return fflush(stdout) == 0 ? 0 : 1;
}
