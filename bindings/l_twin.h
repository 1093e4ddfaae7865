/* bindings/l_twin.h — l_twin.c: lume.twin, and the host's call into its handlers. */
#ifndef LUME_L_TWIN_H
#define LUME_L_TWIN_H

#include <cJSON.h>

#include "lume.h"

/* Call the scripts' on_change(key) handlers. */
void lume_twin_notify(lume_runtime *rt, const char *key, const cJSON *now, const cJSON *before);

#endif
