/* bindings/oem.c — an OEM's own sensor drivers and Lua modules (lume.h:
 * lume_config_add_driver, lume_config_add_module).
 *
 * They live on the config (lume_config.ext, copied with it), so each
 * runtime has the set it was built with and nothing process-wide changes.
 * Board files find an OEM driver by name exactly as a built-in one
 * (boards.c asks lume_oem_open first); a script's require finds a module
 * here before lume's stdlib (sandbox.c).
 *
 * One sensor of an OEM driver:
 *   open    on the loop thread, with its params checked by the built-in
 *           drivers' own lume_params_parse against the declaration;
 *   read    on a guard thread of its own (core/sample/guard.h): the sampler
 *           waits at most read_timeout_ms, and not at all while a read it
 *           gave up on still runs (ETIMEDOUT). A positive return becomes
 *           -EIO, a NaN or infinite value -ERANGE; the sampler counts them
 *           in read_errors and the runtime logs them (runtime.c);
 *   close   through the guard, which never waits on a stuck read: the
 *           guard's thread closes once the read returns.
 * A sensor's state copies ops and ctx: it may outlive the runtime (a read
 * stuck at lume_runtime_free), and must not point into it. */
#include "oem.h"
#include "runtime.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"

#define NAME_MAX_LEN       64
#define DEFAULT_TIMEOUT_MS 100

typedef struct oem_driver {
    char              *name;
    lume_driver_ops    ops;            /* params points to pnames' copy */
    lume_driver_param *params;
    void              *ctx;
    lume_pspec         spec[LUME_DRIVER_MAX_PARAMS];
    lume_driver        drv;            /* what the sampler sees: read/close below */
} oem_driver;

typedef struct oem_module {
    char            *name;
    lume_module_open open;
} oem_module;

typedef struct lume_oem {
    oem_driver *d;
    size_t      nd;
    oem_module *m;
    size_t      nm;
} lume_oem;

/* ---- one sensor ---------------------------------------------------------- */

typedef struct oem_chan {
    lume_driver_ops ops;
    void           *ctx;
    void           *chan;
    lume_guard     *guard;
} oem_chan;

static int chan_read_guarded(void *ud, double *out)
{
    oem_chan *c = ud;
    double v = NAN;
    int r = c->ops.read(c->ctx, c->chan, &v);
    if (r > 0)
        r = -EIO;
    if (r == 0 && !isfinite(v))
        r = -ERANGE;
    *out = r == 0 ? v : NAN;
    return r;
}

static void chan_done(void *ud)
{
    oem_chan *c = ud;
    if (c->ops.close)
        c->ops.close(c->ctx, c->chan);
    free(c);
}

static int chan_read(void *state, int64_t now_ns, double *out)
{
    (void)now_ns;
    return lume_guard_read(((oem_chan *)state)->guard, out);
}

static void chan_close(void *state)
{
    lume_guard_free(((oem_chan *)state)->guard);
}

const lume_driver *lume_oem_driver(const lume_runtime *rt, const char *name)
{
    const lume_oem *o = rt->cfg.ext;
    for (size_t i = 0; o && name && i < o->nd; i++)
        if (!strcmp(o->d[i].name, name))
            return &o->d[i].drv;
    return NULL;
}

int lume_oem_open(const lume_driver *drv, const lume_params *p, void **state, char **err)
{
    const oem_driver *d = (const oem_driver *)((const char *)drv - offsetof(oem_driver, drv));
    lume_pvals pv;
    int r = lume_params_parse(d->name, d->spec, d->ops.n_params, p, &pv, err);
    if (r < 0)
        return r;
    lume_driver_value vals[LUME_DRIVER_MAX_PARAMS];
    for (size_t i = 0; i < d->ops.n_params; i++) {
        const lume_driver_param *dp = &d->params[i];
        if (dp->required && !(pv.given & (1u << i))) {
            *err = lume_strdupf("%s: param '%s' is required", d->name, dp->name);
            return -EINVAL;
        }
        vals[i].num = pv.num[i];
        vals[i].str = dp->type == LUME_PARAM_STRING ? (pv.str[i] ? pv.str[i] : dp->dflt_str)
                                                    : NULL;
    }
    oem_chan *c = calloc(1, sizeof *c);
    if (!c) {
        *err = lume_strdupf("out of memory");
        return -ENOMEM;
    }
    c->ops = d->ops;
    c->ctx = d->ctx;
    char *e = NULL;
    r = d->ops.open(d->ctx, vals, &c->chan, &e);
    if (r != 0) {
        *err = lume_strdupf("%s: %s", d->name,
                            e ? e : r < 0 ? strerror(-r) : "open failed (a positive return)");
        free(e);
        free(c);
        return r < 0 ? r : -EIO;
    }
    free(e);
    int ms = d->ops.read_timeout_ms > 0 ? d->ops.read_timeout_ms : DEFAULT_TIMEOUT_MS;
    c->guard = lume_guard_new(chan_read_guarded, chan_done, c, (int64_t)ms * 1000000);
    if (!c->guard) {
        int en = errno;
        chan_done(c);
        *err = lume_strdupf("%s: no thread for its reads: %s", d->name, strerror(en));
        return -en;
    }
    *state = c;
    return 0;
}

lume_module_open lume_oem_module(const lume_runtime *rt, const char *name)
{
    const lume_oem *o = rt->cfg.ext;
    for (size_t i = 0; o && i < o->nm; i++)
        if (!strcmp(o->m[i].name, name))
            return o->m[i].open;
    return NULL;
}

size_t lume_oem_driver_names(const lume_runtime *rt, char *buf, size_t n)
{
    const lume_oem *o = rt->cfg.ext;
    size_t used = 0;
    for (size_t i = 0; o && i < o->nd && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, ", %s", o->d[i].name);
    return used < n ? used : n;
}

/* ---- the set on a config ------------------------------------------------- */

static void driver_clear(oem_driver *d)
{
    for (size_t i = 0; d->params && i < d->ops.n_params; i++) {
        free((char *)d->params[i].name);
        free((char *)d->params[i].dflt_str);
    }
    free(d->params);
    free(d->name);
}

static void oem_free(void *p)
{
    lume_oem *o = p;
    if (!o)
        return;
    for (size_t i = 0; i < o->nd; i++)
        driver_clear(&o->d[i]);
    for (size_t i = 0; i < o->nm; i++)
        free(o->m[i].name);
    free(o->d);
    free(o->m);
    free(o);
}

/* Fill d (zeroed) from a name and a declaration: its own copies. */
static int driver_fill(oem_driver *d, const char *name, const lume_driver_ops *ops, void *ctx)
{
    d->name = strdup(name);
    d->ops = *ops;
    d->ops.params = NULL;
    d->ctx = ctx;
    if (!d->name)
        return -ENOMEM;
    if (ops->n_params) {
        d->params = calloc(ops->n_params, sizeof *d->params);
        if (!d->params) {
            d->ops.n_params = 0;
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < ops->n_params; i++) {
        const lume_driver_param *s = &ops->params[i];
        d->params[i] = *s;
        d->params[i].name = strdup(s->name);
        d->params[i].dflt_str = s->dflt_str ? strdup(s->dflt_str) : NULL;
        if (!d->params[i].name || (s->dflt_str && !d->params[i].dflt_str))
            return -ENOMEM;
        d->spec[i] = (lume_pspec){.key = d->params[i].name,
                                  .kind = s->type == LUME_PARAM_STRING ? LUME_P_STR : LUME_P_NUM,
                                  .dflt = s->dflt, .lo = s->min, .hi = s->max};
    }
    d->ops.params = d->params;
    d->drv = (lume_driver){.name = d->name, .doc = ops->doc ? ops->doc : "an OEM driver",
                           .open = NULL, .read = chan_read, .close = chan_close};
    return 0;
}

static void *oem_copy(const void *p)
{
    const lume_oem *src = p;
    lume_oem *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->d = src->nd ? calloc(src->nd, sizeof *o->d) : NULL;
    o->m = src->nm ? calloc(src->nm, sizeof *o->m) : NULL;
    if ((src->nd && !o->d) || (src->nm && !o->m))
        goto fail;
    for (; o->nd < src->nd; o->nd++)
        if (driver_fill(&o->d[o->nd], src->d[o->nd].name, &src->d[o->nd].ops,
                        src->d[o->nd].ctx) < 0) {
            o->nd++;
            goto fail;
        }
    for (; o->nm < src->nm; o->nm++) {
        o->m[o->nm].open = src->m[o->nm].open;
        if (!(o->m[o->nm].name = strdup(src->m[o->nm].name)))
            goto fail;
    }
    return o;
fail:
    oem_free(o);
    return NULL;
}

/* The config's set, made on first use. */
static lume_oem *oem_of(lume_config *cfg)
{
    if (!cfg->ext) {
        cfg->ext = calloc(1, sizeof(lume_oem));
        cfg->ext_copy = oem_copy;
        cfg->ext_free = oem_free;
    }
    return cfg->ext;
}

static bool name_ok(const char *s, bool module)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || (!module && ch == '-');
        if (!ok)
            return false;
    }
    if (module && (s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") || !strncmp(s, "lume.", 5) ||
                   !strcmp(s, "lume")))
        return false;
    return true;
}

static bool ident(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static int fail(char **err, int r, char *msg)
{
    if (err)
        *err = msg;
    else
        free(msg);
    return r;
}

static char *check_decl(const char *name, const lume_driver_ops *ops)
{
    if (!ops->open || !ops->read)
        return lume_strdupf("driver '%s': ops->%s is NULL", name, ops->open ? "read" : "open");
    if (ops->n_params > LUME_DRIVER_MAX_PARAMS || (ops->n_params && !ops->params))
        return lume_strdupf("driver '%s': n_params is %zu, with params %s (at most %d)", name,
                            ops->n_params, ops->params ? "set" : "NULL", LUME_DRIVER_MAX_PARAMS);
    if (ops->read_timeout_ms < 0)
        return lume_strdupf("driver '%s': read_timeout_ms is %d (0 for the default, or > 0)",
                            name, ops->read_timeout_ms);
    for (size_t i = 0; i < ops->n_params; i++) {
        const lume_driver_param *p = &ops->params[i];
        if (!ident(p->name))
            return lume_strdupf("driver '%s': params[%zu]: the name must be an identifier",
                                name, i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(ops->params[j].name, p->name))
                return lume_strdupf("driver '%s': param '%s' is declared twice", name, p->name);
        if (p->type != LUME_PARAM_NUMBER && p->type != LUME_PARAM_STRING)
            return lume_strdupf("driver '%s': param '%s': type %d is neither LUME_PARAM_NUMBER "
                                "nor LUME_PARAM_STRING", name, p->name, p->type);
        if (p->type == LUME_PARAM_NUMBER &&
            (!isfinite(p->min) || !isfinite(p->max) || !(p->min <= p->dflt && p->dflt <= p->max)))
            return lume_strdupf("driver '%s': param '%s': needs min <= dflt <= max, all finite "
                                "(got %g <= %g <= %g)", name, p->name, p->min, p->dflt, p->max);
    }
    return NULL;
}

int lume_config_add_driver(lume_config *cfg, const char *name, const lume_driver_ops *ops,
                           void *ctx, char **err)
{
    if (err)
        *err = NULL;
    if (!cfg || !name || !ops)
        return fail(err, -EINVAL, lume_strdupf("lume_config_add_driver: %s is NULL",
                                               !cfg ? "cfg" : !name ? "name" : "ops"));
    if (!name_ok(name, false))
        return fail(err, -EINVAL, lume_strdupf("driver name '%.80s': use 1 to %d letters, "
                                               "digits, '_', '.' or '-'", name, NAME_MAX_LEN));
    char *why = check_decl(name, ops);
    if (why)
        return fail(err, -EINVAL, why);
    if (lume_driver_find(name))
        return fail(err, -EEXIST, lume_strdupf("driver '%s' is built into lume", name));
    lume_oem *o = oem_of(cfg);
    if (!o)
        return fail(err, -ENOMEM, lume_strdupf("out of memory"));
    for (size_t i = 0; i < o->nd; i++)
        if (!strcmp(o->d[i].name, name))
            return fail(err, -EEXIST, lume_strdupf("driver '%s' is already added", name));
    oem_driver *nd = realloc(o->d, (o->nd + 1) * sizeof *nd);
    if (!nd)
        return fail(err, -ENOMEM, lume_strdupf("out of memory"));
    o->d = nd;
    memset(&nd[o->nd], 0, sizeof *nd);
    if (driver_fill(&nd[o->nd], name, ops, ctx) < 0) {
        driver_clear(&nd[o->nd]);
        return fail(err, -ENOMEM, lume_strdupf("out of memory"));
    }
    o->nd++;
    return 0;
}

int lume_config_add_module(lume_config *cfg, const char *name, lume_module_open open,
                           char **err)
{
    if (err)
        *err = NULL;
    if (!cfg || !name || !open)
        return fail(err, -EINVAL, lume_strdupf("lume_config_add_module: %s is NULL",
                                               !cfg ? "cfg" : !name ? "name" : "open"));
    if (!name_ok(name, true))
        return fail(err, -EINVAL, lume_strdupf("module name '%.80s': use 1 to %d letters, "
                                               "digits, '_' and single inner dots, not "
                                               "starting with 'lume.' (lume's stdlib)",
                                               name, NAME_MAX_LEN));
    lume_oem *o = oem_of(cfg);
    if (!o)
        return fail(err, -ENOMEM, lume_strdupf("out of memory"));
    for (size_t i = 0; i < o->nm; i++)
        if (!strcmp(o->m[i].name, name))
            return fail(err, -EEXIST, lume_strdupf("module '%s' is already added", name));
    oem_module *nm = realloc(o->m, (o->nm + 1) * sizeof *nm);
    if (!nm)
        return fail(err, -ENOMEM, lume_strdupf("out of memory"));
    o->m = nm;
    nm[o->nm].open = open;
    if (!(nm[o->nm].name = strdup(name)))
        return fail(err, -ENOMEM, lume_strdupf("out of memory"));
    o->nm++;
    return 0;
}
