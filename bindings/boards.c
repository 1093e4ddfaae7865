/* bindings/boards.c — load boards/NAME.lua (data only) into the sampler.
 * The board key is NAME (boards_dir/NAME.lua) or the path of a board file
 * (lume_board_is_path: it has a '/' or ends in .lua; a config file's
 * relative path is relative to the config's folder, config_lua.c).
 *
 * A board file is a Lua chunk run with an environment holding only `math`,
 * returning { name=, description=, sensors = { {name=, driver=, unit=,
 * rate=, min_rate=, max_rate=, params={...}, optional=bool}, ... } }.
 * Every field is checked here; errors name the file, the sensor and the
 * field. */
#include "boards.h"
#include "lume.h"
#include "runtime.h"
#include "oem.h"
#include "drivers.h"
#include "outputs.h"
#include "outsvc.h"
#include "sampler.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "log.h"

#define MAX_PARAMS 32

static int filter_lua(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 4 && e->d_name[0] != '.' && !strcmp(e->d_name + n - 4, ".lua");
}

/* "host, sim": the boards in dir, sorted. */
static char *list_boards(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, filter_lua, alphasort);
    if (n < 0)
        return strdup("none: the directory cannot be read");
    char buf[1024] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list[i]->d_name);
        if (used + len < sizeof buf - 8)
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%.*s", used ? ", " : "",
                                     (int)(len - 4), list[i]->d_name);
        free(list[i]);
    }
    free(list);
    return strdup(used ? buf : "none");
}

static bool is_ident(const char *s)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
              (p != s && *p >= '0' && *p <= '9')))
            return false;
    return true;
}

static double field_num(lua_State *L, int t, const char *k, double dflt, bool *bad)
{
    int ty = lua_getfield(L, t, k);
    double v = dflt;
    if (ty == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        *bad = true;
    lua_pop(L, 1);
    return v;
}

/* The params table of the entry at t (a sensor's or an output's) into
 * params[MAX_PARAMS]; the strings stay alive while the table is on the
 * stack (it is left there). 0, or -EINVAL with *err. */
static int read_params(lua_State *L, int t, const char *file, const char *what,
                       const char *name, lume_param *params, size_t *np, char **err)
{
    int pt = lua_getfield(L, t, "params");
    if (pt == LUA_TTABLE) {
        int pidx = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, pidx)) {
            if (lua_type(L, -2) != LUA_TSTRING || *np == MAX_PARAMS ||
                (lua_type(L, -1) != LUA_TNUMBER && lua_type(L, -1) != LUA_TSTRING)) {
                *err = lume_strdupf("%s: %s '%s': params must map names to numbers or "
                                    "strings (at most %d)", file, what, name, MAX_PARAMS);
                return -EINVAL;
            }
            params[*np].key = lua_tostring(L, -2);
            if (lua_type(L, -1) == LUA_TNUMBER) {
                params[*np].str = NULL;
                params[*np].num = lua_tonumber(L, -1);
            } else {
                params[*np].str = lua_tostring(L, -1);
                params[*np].num = 0;
            }
            (*np)++;
            lua_pop(L, 1); /* values stay alive: the params table is on the stack */
        }
    } else if (pt != LUA_TNIL) {
        *err = lume_strdupf("%s: %s '%s': params must be a table", file, what, name);
        return -EINVAL;
    }
    return 0;
}

/* The first key of the table at t that is not in known[n], as text (left
 * on the stack, valid while it stays there), or NULL when all are known. */
static const char *unknown_field(lua_State *L, int t, const char *const *known, size_t n)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        bool ok = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (size_t i = 0; i < n && !ok; i++)
                ok = !strcmp(lua_tostring(L, -2), known[i]);
        if (!ok) {
            lua_pushvalue(L, -2);
            return luaL_tolstring(L, -1, NULL);
        }
        lua_pop(L, 1);
    }
    return NULL;
}

static int load_sensor(lume_runtime *rt, lua_State *L, const char *file, int idx, char **err)
{
    int t = lua_gettop(L);
    static const char *const known[] = {"name", "driver", "unit", "rate", "min_rate",
                                        "max_rate", "params", "optional", "description",
                                        "latency_ms"};
    const char *unknown = unknown_field(L, t, known, sizeof known / sizeof *known);
    if (unknown) {
        *err = lume_strdupf("%s: sensors[%d]: unknown field '%s'", file, idx, unknown);
        return -EINVAL;
    }

    lua_getfield(L, t, "name");
    const char *name = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || !is_ident(name)) {
        *err = lume_strdupf("%s: sensors[%d]: name must be an identifier (letters, digits, _)",
                            file, idx);
        return -EINVAL;
    }
    lua_getfield(L, t, "driver");
    const char *drv_name = lua_tostring(L, -1);
    const lume_driver *drv = drv_name && lua_type(L, -1) == LUA_TSTRING ? lume_driver_find(drv_name)
                                                                       : NULL;
    if (!drv && drv_name && lua_type(L, -1) == LUA_TSTRING)
        drv = lume_oem_driver(rt, drv_name); /* the embedder's (lume.h), open is NULL */
    if (!drv) {
        char known_drv[1024] = "";
        size_t used = 0;
        for (size_t i = 0; lume_driver_at(i); i++)
            used += (size_t)snprintf(known_drv + used, sizeof known_drv - used, "%s%s",
                                     i ? ", " : "", lume_driver_at(i)->name);
        if (used < sizeof known_drv)
            lume_oem_driver_names(rt, known_drv + used, sizeof known_drv - used);
        *err = lume_strdupf("%s: sensor '%s': unknown driver '%s' (known: %s)", file, name,
                            drv_name ? drv_name : "(missing)", known_drv);
        return -EINVAL;
    }
    lua_getfield(L, t, "unit");
    const char *unit = lua_tostring(L, -1);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) {
        *err = lume_strdupf("%s: sensor '%s': unit must be a string", file, name);
        return -EINVAL;
    }
    bool bad = false;
    double rate = field_num(L, t, "rate", 1, &bad);
    double lo = field_num(L, t, "min_rate", rate, &bad);
    double hi = field_num(L, t, "max_rate", rate, &bad);
    if (bad || !(lo > 0) || !(hi >= lo) || !(rate >= lo && rate <= hi) || !isfinite(hi) ||
        hi > 100000) {
        *err = lume_strdupf("%s: sensor '%s': rates must be numbers with 0 < min_rate <= rate "
                            "<= max_rate <= 100000 Hz (got rate=%g min_rate=%g max_rate=%g)",
                            file, name, rate, lo, hi);
        return -EINVAL;
    }
    /* the latency bound (docs/sampler.md, Waking the loop): absent = the
     * sampler.latency_ms default, 0 = wake at once (alarm-critical) */
    double lat = field_num(L, t, "latency_ms", -1, &bad);
    if (bad || !(lat == -1 || (lat >= 0 && lat <= 60000))) {
        *err = lume_strdupf("%s: sensor '%s': latency_ms must be a number of milliseconds "
                            "from 0 (wake the loop at once: alarm-critical) to 60000", file,
                            name);
        return -EINVAL;
    }
    lua_getfield(L, t, "optional");
    bool optional = lua_toboolean(L, -1);

    lume_param params[MAX_PARAMS];
    size_t np = 0;
    if (read_params(L, t, file, "sensor", name, params, &np, err) < 0)
        return -EINVAL;
    lume_params p = {params, np};
    void *state = NULL;
    char *derr = NULL;
    int r = drv->open ? drv->open(rt->board, &p, &state, &derr)
                      : lume_oem_open(drv, &p, &state, &derr);
    if (r == -ENOENT && optional) {
        lume_log(LUME_LOG_INFO, "board", "optional sensor '%s' skipped: %s", name,
                 derr ? derr : "not present on this machine");
        free(derr);
        lua_settop(L, t);
        return 0;
    }
    if (r < 0) {
        *err = lume_strdupf("%s: sensor '%s' (%s): %s", file, name, drv->name,
                            derr ? derr : lume_strerror(-r));
        free(derr);
        return r;
    }
    lume_channel_def def = {.name = name, .unit = unit, .rate_hz = rate, .min_hz = lo,
                            .max_hz = hi, .driver = drv, .state = state,
                            .latency_ms = lat < 0 ? 0 : lat == 0 ? -1 : (int)lat};
    r = lume_sampler_add(rt->sampler, &def);
    if (r < 0) {
        if (drv->close)
            drv->close(state);
        *err = lume_strdupf("%s: sensor '%s': %s", file, name,
                            r == -EINVAL ? "duplicate name or bad rate bounds" : lume_strerror(-r));
        return r;
    }
    lua_settop(L, t);
    return 0;
}

/* One entry of the board's outputs = { NAME = {driver, params, failsafe,
 * max_rate_hz, min, max}, ... } (docs/outputs.md), at the top of L's stack
 * with its name below it. */
static int load_output(lume_runtime *rt, lua_State *L, const char *file, char **err)
{
    int t = lua_gettop(L);
    const char *name = lua_tostring(L, t - 1);
    if (lua_type(L, t - 1) != LUA_TSTRING || !is_ident(name)) {
        *err = lume_strdupf("%s: outputs: names must be identifiers (letters, digits, _)", file);
        return -EINVAL;
    }
    if (lua_type(L, t) != LUA_TTABLE) {
        *err = lume_strdupf("%s: output '%s' must be a table", file, name);
        return -EINVAL;
    }
    static const char *const known[] = {"driver", "params", "failsafe", "max_rate_hz",
                                        "min", "max", "description"};
    const char *unknown = unknown_field(L, t, known, sizeof known / sizeof *known);
    if (unknown) {
        *err = lume_strdupf("%s: output '%s': unknown field '%s' (known: driver, params, "
                            "failsafe, max_rate_hz, min, max, description)", file, name, unknown);
        return -EINVAL;
    }
    lua_getfield(L, t, "driver");
    const char *dn = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    const lume_output_driver *drv = dn ? lume_output_driver_find(dn) : NULL;
    if (!drv) {
        char names[512] = "";
        size_t used = 0;
        for (size_t i = 0; lume_output_driver_at(i) && used < sizeof names; i++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                     lume_output_driver_at(i)->name);
        *err = lume_strdupf("%s: output '%s': unknown driver '%s' (known: %s)", file, name,
                            dn ? dn : "(missing)", names);
        return -EINVAL;
    }
    lua_getfield(L, t, "failsafe");
    if (lua_type(L, -1) != LUA_TNUMBER && lua_type(L, -1) != LUA_TBOOLEAN) {
        *err = lume_strdupf("%s: output '%s': failsafe is required (the value lume writes "
                            "when no script drives it: a number, or true/false)", file, name);
        return -EINVAL;
    }
    lume_output_opts o = {0};
    o.failsafe = lua_type(L, -1) == LUA_TBOOLEAN ? lua_toboolean(L, -1) : lua_tonumber(L, -1);
    bool bad = false;
    o.max_rate_hz = field_num(L, t, "max_rate_hz", 0, &bad);
    o.min = field_num(L, t, "min", -HUGE_VAL, &bad);
    o.max = field_num(L, t, "max", HUGE_VAL, &bad);
    if (bad || !(o.max_rate_hz >= 0) || !(o.min <= o.max) || !isfinite(o.failsafe) ||
        o.failsafe < o.min || o.failsafe > o.max) {
        *err = lume_strdupf("%s: output '%s': needs numbers with max_rate_hz >= 0 and min <= "
                            "failsafe <= max (got failsafe=%g max_rate_hz=%g min=%g max=%g)",
                            file, name, o.failsafe, o.max_rate_hz, o.min, o.max);
        return -EINVAL;
    }
    lume_param params[MAX_PARAMS];
    size_t np = 0;
    if (read_params(L, t, file, "output", name, params, &np, err) < 0)
        return -EINVAL;
    lume_params p = {params, np};
    o.timeout_ns = (int64_t)(lume_params_num(&p, "timeout_ms", 1000) * 1e6);
    void *state = NULL;
    char *derr = NULL;
    int r = drv->open(rt->board, &p, &state, &derr);
    if (r < 0) {
        *err = lume_strdupf("%s: output '%s' (%s): %s", file, name, drv->name,
                            derr ? derr : strerror(-r));
        free(derr);
        return r;
    }
    if (!rt->outputs && !(rt->outputs = lume_outsvc_new())) {
        drv->close(state);
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    r = lume_outsvc_add(rt->outputs, name, drv, state, &o, &derr);
    if (r < 0) {
        *err = lume_strdupf("%s: %s", file, derr);
        free(derr);
        return r;
    }
    lua_settop(L, t);
    return 0;
}

int lume_board_load(lume_runtime *rt, char **err)
{
    char path[4096];
    if (lume_board_is_path(rt->cfg.board))  /* a board file named by its path */
        snprintf(path, sizeof path, "%s", rt->cfg.board);
    else
        snprintf(path, sizeof path, "%s/%s.lua", rt->cfg.boards_dir, rt->cfg.board);
    struct stat st;
    if (lume_board_is_path(rt->cfg.board) && stat(path, &st) != 0) {
        *err = lume_strdupf("board file %s: %s", path, strerror(errno));
        return -ENOENT;
    }
    if (stat(path, &st) != 0) {
        char *known = list_boards(rt->cfg.boards_dir);
        *err = lume_strdupf("unknown board '%s': there is no %s (boards in %s: %s)",
                            rt->cfg.board, path, rt->cfg.boards_dir, known ? known : "?");
        free(known);
        return -ENOENT;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    int r = -EINVAL;
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        *err = lume_strdupf("%s", lua_tostring(L, -1));
        goto out;
    }
    /* data only: the chunk sees math and nothing else */
    lua_newtable(L);
    luaL_requiref(L, "math", luaopen_math, 0);
    lua_setfield(L, -2, "math");
    lua_setupvalue(L, -2, 1);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        *err = lume_strdupf("%s", lua_tostring(L, -1));
        goto out;
    }
    if (!lua_istable(L, -1)) {
        *err = lume_strdupf("%s: must return a table, returned a %s", path, luaL_typename(L, -1));
        goto out;
    }
    int board = lua_gettop(L);
    lua_getfield(L, board, "description");
    free(rt->board_desc);
    rt->board_desc = strdup(lua_isstring(L, -1) ? lua_tostring(L, -1) : rt->cfg.board);
    lua_pop(L, 1);
    if (lua_getfield(L, board, "sensors") != LUA_TTABLE || lua_rawlen(L, -1) == 0) {
        *err = lume_strdupf("%s: sensors must be a non-empty list", path);
        goto out;
    }
    int sensors = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, sensors);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, sensors, i) != LUA_TTABLE) {
            *err = lume_strdupf("%s: sensors[%lld] must be a table", path, (long long)i);
            goto out;
        }
        r = load_sensor(rt, L, path, (int)i, err);
        if (r < 0)
            goto out;
        lua_settop(L, sensors);
    }
    lua_settop(L, board);
    int ot = lua_getfield(L, board, "outputs");
    if (ot == LUA_TTABLE) {
        int outputs = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, outputs)) {
            lua_pushvalue(L, -2); /* name, value -> name, value, name, value */
            lua_pushvalue(L, -2);
            r = load_output(rt, L, path, err);
            if (r < 0)
                goto out;
            lua_pop(L, 3);
        }
    } else if (ot != LUA_TNIL) {
        *err = lume_strdupf("%s: outputs must be a table of NAME = {driver, params, failsafe, "
                            "...}", path);
        r = -EINVAL;
        goto out;
    }
    if (lume_sampler_count(rt->sampler) == 0) {
        *err = lume_strdupf("%s: no sensor of this board is present on this machine", path);
        r = -ENOENT;
        goto out;
    }
    r = 0;
out:
    lua_close(L);
    return r;
}
