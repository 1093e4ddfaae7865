/* cli/fleet.c — which devices run what:
 *
 *   lume fleet status [--group G] [--json] */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

/* ---- fleet status ------------------------------------------------------------------- */

static const char FLEET_USAGE[] =
    "usage: lume fleet status [--group G] [--json] [--broker URL | --config FILE]\n\n"
    "Reads every device's retained reported document and counts, per group,\n"
    "how many devices run which version of each script in which status.\n";

int lume_cmd_fleet(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "status") && strcmp(argv[1], "--help"))) {
        fputs(FLEET_USAGE, stderr);
        return EXIT_USAGE;
    }
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc - 1, argv + 1, &o, FLEET_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        return r;
    }
    char every[300];
    lume_hub_operator_topic(&c.cfg, LUME_HUB_ALL_REPORTED, NULL, every, sizeof every);
    const char *f[] = {every};
    lume_ops_collect(&c, f, 1, 500, 10000);
    /* summary[group][script][version][status] = count; devices per group */
    cJSON *sum = cJSON_CreateObject();
    for (lume_ops_msg *m = c.msgs; m; m = m->next) {
        cJSON *doc = cJSON_ParseWithLength(m->payload, m->len);
        if (!doc)
            continue;
        cJSON *groups = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(doc, "lume"), "groups");
        cJSON *all = cJSON_CreateArray();
        const cJSON *g;
        cJSON_ArrayForEach(g, groups)
            if (cJSON_IsString(g))
                cJSON_AddItemToArray(all, cJSON_CreateString(g->valuestring));
        if (!cJSON_GetArraySize(all))
            cJSON_AddItemToArray(all, cJSON_CreateString("(no group)"));
        cJSON_ArrayForEach(g, all) {
            if (o.group && strcmp(o.group, g->valuestring))
                continue;
            cJSON *grp = cJSON_GetObjectItemCaseSensitive(sum, g->valuestring);
            if (!grp) {
                grp = cJSON_AddObjectToObject(sum, g->valuestring);
                cJSON_AddNumberToObject(grp, "devices", 0);
                cJSON_AddObjectToObject(grp, "scripts");
            }
            cJSON *dn = cJSON_GetObjectItemCaseSensitive(grp, "devices");
            cJSON_SetNumberValue(dn, dn->valuedouble + 1);
            cJSON *gs = cJSON_GetObjectItemCaseSensitive(grp, "scripts");
            const cJSON *s;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "scripts")) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, "version");
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "status");
                if (!cJSON_IsString(st))
                    continue;
                char key[200];
                snprintf(key, sizeof key, "%s %s", cJSON_IsString(v) ? v->valuestring : "-",
                         st->valuestring);
                cJSON *sc = cJSON_GetObjectItemCaseSensitive(gs, s->string);
                if (!sc)
                    sc = cJSON_AddObjectToObject(gs, s->string);
                cJSON *cnt = cJSON_GetObjectItemCaseSensitive(sc, key);
                if (cnt)
                    cJSON_SetNumberValue(cnt, cnt->valuedouble + 1);
                else
                    cJSON_AddNumberToObject(sc, key, 1);
            }
        }
        cJSON_Delete(all);
        cJSON_Delete(doc);
    }
    if (o.json) {
        char *s = cJSON_Print(sum);
        printf("%s\n", s);
        free(s);
    } else {
        const cJSON *g;
        cJSON_ArrayForEach(g, sum) {
            printf("group %s: %.0f devices\n", g->string,
                   cJSON_GetObjectItemCaseSensitive(g, "devices")->valuedouble);
            const cJSON *s;
            cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(g, "scripts")) {
                const cJSON *vs;
                cJSON_ArrayForEach(vs, s)
                    printf("  script %s version %s: %.0f\n", s->string, vs->string,
                           vs->valuedouble);
            }
        }
        if (!cJSON_GetArraySize(sum))
            printf("no devices have reported%s%s\n", o.group ? " in group " : "",
                   o.group ? o.group : "");
    }
    cJSON_Delete(sum);
    lume_ops_close(&c);
    return 0;
}
