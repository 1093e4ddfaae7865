/* bindings/oem.h — oem.c: the OEM drivers and modules on a runtime's config
 * (lume.h: lume_config_add_driver, lume_config_add_module). */
#ifndef LUME_OEM_H
#define LUME_OEM_H

#include <stddef.h>

#include "drivers.h"
#include "lume.h"

/* The OEM driver `name` (NULL: none), valid while rt lives; its open replaces
 * drv->open (NULL): 0 with *state, or negative with *err. */
const lume_driver *lume_oem_driver(const lume_runtime *rt, const char *name);
int lume_oem_open(const lume_driver *drv, const lume_params *p, void **state, char **err);
/* The module `name`'s open function, or NULL. */
lume_module_open lume_oem_module(const lume_runtime *rt, const char *name);
/* ", a, b": the OEM drivers' names into buf (for "known:" lists); its length. */
size_t lume_oem_driver_names(const lume_runtime *rt, char *buf, size_t n);

#endif
