/* cli/twin.c — read or change a device's twin:
 *
 *   lume twin get|set|drift --device ID [KEY=JSON ...]
 *   lume twin get|set --group G [KEY=JSON ...] */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "twin.h"

static const char TWIN_USAGE[] =
    "usage: lume twin get (--device ID | --group G)\n"
    "       lume twin set (--device ID | --group G) KEY=JSON ...   (KEY=null deletes)\n"
    "       lume twin drift --device ID\n"
    "       [--broker URL | --config FILE]\n\n"
    "get   prints the desired document(s) and, for a device, what it reported\n"
    "set   changes top-level keys of the desired document and bumps $version\n"
    "drift compares what is desired with what the device reports it applied;\n"
    "      exit 0 when they agree, 1 when they drift\n";

/* Every layer of a device: its groups (from what it reported) and itself. */
static int device_view(lume_ops_client *c, const char *dev, cJSON **reported, cJSON **layers)
{
    char t_rep[300], t_des[300];
    lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_REPORTED, dev, t_rep, sizeof t_rep);
    lume_hub_operator_topic(&c->cfg, LUME_HUB_DEVICE_DESIRED, dev, t_des, sizeof t_des);
    const char *f[] = {t_rep, t_des};
    lume_ops_collect(c, f, 2, 300, 3000);
    const lume_ops_msg *m = lume_ops_get(c, t_rep);
    *reported = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    *layers = cJSON_CreateObject();
    cJSON *groups = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(*reported, "lume"), "groups");
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        if (!cJSON_IsString(g))
            continue;
        char t[300];
        lume_hub_operator_topic(&c->cfg, LUME_HUB_GROUP_DESIRED, g->valuestring, t, sizeof t);
        const char *gf[] = {t};
        lume_ops_collect(c, gf, 1, 300, 2000);
        const lume_ops_msg *gm = lume_ops_get(c, t);
        cJSON *doc = gm && gm->len ? cJSON_ParseWithLength(gm->payload, gm->len) : NULL;
        char key[300];
        snprintf(key, sizeof key, "group:%s", g->valuestring);
        cJSON_AddItemToObject(*layers, key, doc ? doc : cJSON_CreateNull());
    }
    m = lume_ops_get(c, t_des);
    cJSON *doc = m && m->len ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    cJSON_AddItemToObject(*layers, "device", doc ? doc : cJSON_CreateNull());
    return *reported ? 0 : -ENOENT;
}

/* Layers merged as the device merges them. */
static cJSON *merged(const cJSON *layers)
{
    cJSON *out = cJSON_CreateObject();
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        if (!cJSON_IsObject(l))
            continue;
        cJSON *copy = cJSON_Duplicate(l, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "$version");
        lume_json_merge_patch(&out, copy);
        cJSON_Delete(copy);
    }
    return out;
}

static int drift(const cJSON *layers, const cJSON *reported)
{
    int n = 0;
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(reported, "desired_versions");
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "$version");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(dv, l->string);
        if (cJSON_IsNumber(v) && (!cJSON_IsNumber(rv) || rv->valuedouble != v->valuedouble)) {
            char applied[32] = "none";
            if (cJSON_IsNumber(rv))
                snprintf(applied, sizeof applied, "%.0f", rv->valuedouble);
            printf("drift: layer %s: desired $version %.0f, device applied %s\n", l->string,
                   v->valuedouble, applied);
            n++;
        }
    }
    cJSON *want = merged(layers);
    const cJSON *scripts = cJSON_GetObjectItemCaseSensitive(want, "scripts");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(reported, "scripts");
    const cJSON *b;
    cJSON_ArrayForEach(b, scripts) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, "version");
        char want_v[64];
        if (cJSON_IsString(v))
            snprintf(want_v, sizeof want_v, "%s", v->valuestring);
        else if (cJSON_IsNumber(v))
            snprintf(want_v, sizeof want_v, "%.17g", v->valuedouble);
        else
            continue;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rs, b->string);
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(r, "running");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(r, "error");
        if (!cJSON_IsString(rv) || strcmp(rv->valuestring, want_v) || !cJSON_IsString(st) ||
            strcmp(st->valuestring, "active")) {
            printf("drift: script %s: desired %s, device runs %s (%s%s%s)\n", b->string, want_v,
                   cJSON_IsString(rv) ? rv->valuestring : "nothing",
                   cJSON_IsString(st) ? st->valuestring : "no report",
                   cJSON_IsString(er) ? ": " : "", cJSON_IsString(er) ? er->valuestring : "");
            n++;
        }
    }
    cJSON_Delete(want);
    if (!n)
        printf("in sync\n");
    return n;
}

int lume_cmd_twin(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "get") && strcmp(argv[1], "set") &&
                     strcmp(argv[1], "drift") && strcmp(argv[1], "--help"))) {
        fputs(TWIN_USAGE, stderr);
        return EXIT_USAGE;
    }
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc - 1, argv + 1, &o, TWIN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    const char *sub = argv[1];
    first += 1;
    if (!o.device == !o.group || (!strcmp(sub, "drift") && !o.device)) {
        fprintf(stderr, "lume twin %s: give --device ID%s\n\n%s", sub,
                strcmp(sub, "drift") ? " or --group G" : "", TWIN_USAGE);
        return EXIT_USAGE;
    }
    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        return r;
    }
    char topic[512];
    lume_ops_target_topic(&c, &o, topic, sizeof topic);
    if (!strcmp(sub, "set")) {
        if (first >= argc) {
            fprintf(stderr, "lume twin set: give KEY=JSON ...\n");
            lume_ops_close(&c);
            return EXIT_USAGE;
        }
        cJSON *doc = lume_ops_current_doc(&c, topic);
        for (int i = first; i < argc; i++) {
            char *eq = strchr(argv[i], '=');
            if (!eq || eq == argv[i]) {
                fprintf(stderr, "lume twin set: expected KEY=JSON, got '%s'\n", argv[i]);
                cJSON_Delete(doc);
                lume_ops_close(&c);
                return EXIT_USAGE;
            }
            *eq = 0;
            cJSON *v = cJSON_Parse(eq + 1);
            if (!v)
                v = cJSON_CreateString(eq + 1); /* a bare word is a string */
            cJSON_DeleteItemFromObjectCaseSensitive(doc, argv[i]);
            if (cJSON_IsNull(v))
                cJSON_Delete(v); /* removed from the layer */
            else
                cJSON_AddItemToObject(doc, argv[i], v);
        }
        r = lume_ops_publish_doc(&c, topic, doc);
        cJSON_Delete(doc);
        lume_ops_close(&c);
        return r;
    }
    if (o.group) { /* get for a group: its one document */
        cJSON *doc = lume_ops_current_doc(&c, topic);
        char *s = cJSON_Print(doc);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(doc);
        lume_ops_close(&c);
        return 0;
    }
    cJSON *reported = NULL, *layers = NULL;
    int found = device_view(&c, o.device, &reported, &layers);
    if (!strcmp(sub, "get")) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "layers", layers);
        cJSON_AddItemToObject(out, "desired", merged(layers));
        cJSON_AddItemToObject(out, "reported", reported ? reported : cJSON_CreateNull());
        char *s = cJSON_Print(out);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(out);
        lume_ops_close(&c);
        return 0;
    }
    if (found < 0) {
        printf("drift: device %s has reported nothing\n", o.device);
        r = EXIT_FAIL;
    } else {
        r = drift(layers, reported) ? EXIT_FAIL : 0;
    }
    cJSON_Delete(layers);
    cJSON_Delete(reported);
    lume_ops_close(&c);
    return r;
}
