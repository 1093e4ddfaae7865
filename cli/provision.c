/* cli/provision.c — `lume provision --config FILE [--timeout S] [--json]`:
 * register with the Azure Device Provisioning Service by hand (core/hub/dps.c)
 * and print the assignment: hub, device id, status, sub-status. The answer
 * is stored in the device's state store ({store}/state.db), where `lume run`
 * finds it, as if the device had provisioned itself. Exit 0 assigned, 1 not
 * assigned before the timeout (the last failure printed), 2 usage/config. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config.h"
#include "dps.h"
#include "kv.h"
#include "log.h"
#include "loop.h"
#include "lume.h"

typedef struct prov {
    bool                done;
    lume_dps_assignment a;
} prov;

static void on_done(void *ud, const lume_dps_assignment *a)
{
    prov *p = ud;
    p->a = *a;
    p->done = true;
}

static bool is_done(void *ud) { return ((prov *)ud)->done; }

static const char usage[] =
    "usage: lume provision --config FILE [--timeout SECONDS] [--json]\n"
    "  register with the Device Provisioning Service (net.dps in the config), print the\n"
    "  assigned hub and device id, and store them where `lume run` finds them\n";

int lume_cmd_provision(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                             {"timeout", required_argument, 0, 't'},
                                             {"json", no_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *file = NULL;
    int timeout_s = 120, ch;
    bool json = false;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:jh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': file = optarg; break;
        case 't': timeout_s = atoi(optarg); break;
        case 'j': json = true; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return EXIT_USAGE;
        }
    }
    if (!file || timeout_s <= 0) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    lume_config cfg;
    char *err = NULL;
    lume_kv *kv = NULL;
    lume_loop *loop = NULL;
    lume_dps *d = NULL;
    int rc = EXIT_FAIL;
    if (lume_config_init(&cfg) < 0 || lume_config_load(&cfg, file, &err) < 0) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (!lume_dps_configured(&cfg)) {
        err = lume_strdupf("%s: no net.dps.id_scope: nothing to provision", file);
        rc = EXIT_USAGE;
        goto out;
    }
    char path[4200];
    mkdir(cfg.store, 0700);
    snprintf(path, sizeof path, "%s/state.db", cfg.store);
    prov p = {0};
    if (!(kv = lume_kv_open(path, &err)) || !(loop = lume_loop_new(NULL, &err)))
        goto out;
    if (!(d = lume_dps_new(loop, &cfg, on_done, &p, &err))) {
        rc = EXIT_USAGE; /* the key or the endpoint: the config's */
        goto out;
    }
    lume_dps_start(d);
    if (!lume_loop_drain(loop, timeout_s * 1000, is_done, &p)) {
        const char *why = lume_dps_last_error(d);
        err = lume_strdupf("not assigned within %d s%s%s", timeout_s, *why ? ": " : "", why);
        goto out;
    }
    lume_dps_save(kv, &cfg, &p.a);
    if (json)
        printf("{\"assignedHub\":\"%s\",\"deviceId\":\"%s\",\"status\":\"%s\","
               "\"substatus\":\"%s\",\"operationId\":\"%s\"}\n", p.a.hub, p.a.device_id,
               p.a.status, p.a.substatus, p.a.operation_id);
    else
        printf("hub:        %s\ndevice id:  %s\nstatus:     %s\nsub-status: %s\n", p.a.hub,
               p.a.device_id, p.a.status, p.a.substatus[0] ? p.a.substatus : "-");
    rc = 0;
out:
    if (err)
        fprintf(stderr, "lume provision: %s\n", err);
    free(err);
    lume_dps_free(d);
    lume_loop_free(loop);
    lume_kv_close(kv);
    lume_config_free(&cfg);
    return rc;
}
