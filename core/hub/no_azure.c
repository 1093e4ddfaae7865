/* core/hub/no_azure.c — what stands in for hub_azure.c and dps.c in a lume
 * built with LUME_NO_AZURE=1 (the Makefile leaves those two out): every call
 * the rest of lume makes into them fails with LUME_NO_AZURE_MSG, so a config
 * that asks for DPS or the azure dialect, and `lume provision`, are told why.
 * In a full build this file compiles to nothing. */
#ifdef LUME_NO_AZURE
#include "dps.h"
#include "hub.h"

#include <errno.h>

#include "log.h"

int lume_hub_azure_assign(lume_hub *h, const char *host, const char *device, char **err)
{
    lume_set_err(err, "%s", LUME_NO_AZURE_MSG);
    return -ENOTSUP;
}

int lume_dps_hub_url(const lume_config *c, const char *hub, char *buf, size_t cap)
{
    return -ENOTSUP;
}

int lume_dps_load(lume_kv *kv, const lume_config *c, lume_dps_assignment *a) { return -ENOENT; }

int lume_dps_save(lume_kv *kv, const lume_config *c, const lume_dps_assignment *a)
{
    return -ENOTSUP;
}

int lume_dps_forget(lume_kv *kv, const lume_config *c) { return 0; }

lume_dps *lume_dps_new(lume_loop *loop, const lume_config *c, lume_dps_done_fn done, void *ud,
                       char **err)
{
    lume_set_err(err, "net.dps: %s", LUME_NO_AZURE_MSG);
    return NULL;
}

void lume_dps_start(lume_dps *d) {}
int lume_dps_polls(const lume_dps *d) { return 0; }
const char *lume_dps_last_error(const lume_dps *d) { return LUME_NO_AZURE_MSG; }
void lume_dps_free(lume_dps *d) {}
#else
typedef int lume_no_azure_unused; /* ISO C wants a translation unit to declare something */
#endif
