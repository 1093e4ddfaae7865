/* bindings/api.c — the parts of lume.h that are not the runtime: the
 * version, config handles and their setters, lume_free. The runtime's own
 * calls are in runtime.c; lume_config_load is in config_lua.c. */
#include "lume.h"
#include "config.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

const char *lume_version(void) { return LUME_VERSION; }

void lume_free(void *p) { free(p); }

lume_config *lume_config_new(void)
{
    lume_config *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    if (lume_config_init(c) < 0) {
        free(c);
        return NULL;
    }
    c->heap = true;
    return c;
}

/* lume_config_set with err optional and cleared on success. */
static int set(lume_config *c, const char *key, const lume_config_value *v, char **err)
{
    char *e = NULL;
    int r;
    if (!c || !key) {
        e = lume_strdupf("lume_config_set: %s is NULL", c ? "the key" : "the config");
        r = -EINVAL;
    } else {
        r = lume_config_set(c, key, v, &e); /* 1 only for a table value: not here */
    }
    if (err)
        *err = e;
    else
        free(e);
    return r;
}

int lume_config_set_string(lume_config *cfg, const char *key, const char *value, char **err)
{
    if (!value) {
        if (err)
            *err = lume_strdupf("%s: the value is NULL", key ? key : "?");
        return -EINVAL;
    }
    lume_config_value v = {.kind = LUME_CV_STRING, .str = value};
    return set(cfg, key, &v, err);
}

int lume_config_set_int(lume_config *cfg, const char *key, int64_t value, char **err)
{
    /* doubles hold every integer up to 2^53 exactly; past that the range
     * check of every numeric key refuses it anyway */
    lume_config_value v = {.kind = LUME_CV_NUMBER, .num = (double)value};
    return set(cfg, key, &v, err);
}

int lume_config_set_bool(lume_config *cfg, const char *key, bool value, char **err)
{
    lume_config_value v = {.kind = LUME_CV_BOOL, .b = value};
    return set(cfg, key, &v, err);
}

void lume_config_set_log(lume_config *cfg, lume_log_sink sink, void *ud)
{
    if (!cfg)
        return;
    cfg->log_sink = sink;
    cfg->log_ud = sink ? ud : NULL;
}
