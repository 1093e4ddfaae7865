/* cli/fleet.c — which devices run what:
 *
 *   lume fleet status [--group G] [--json]
 *
 * Per group (a device is in each group its reported lume.groups lists; a
 * ring is a group): the devices by script, version and status with their
 * ids, the failures with their reasons, and the devices not heard from —
 * offline by their status topic (the last will), never said, or silent:
 * their latest heartbeat older than three of its periods. Everything comes
 * from one burst of retained documents (devices.c). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

static const char FLEET_USAGE[] =
    "usage: lume fleet status [--group G] [--json] [--broker URL | --config FILE]\n\n"
    "Reads every device's retained reported document, status (online, or\n"
    "offline by its last will) and latest heartbeat, and shows per group (a\n"
    "ring is a group): how many devices run which version of each script in\n"
    "which status, with their ids; every failure (rolled back, rejected,\n"
    "quarantined, or an error) with its reason; the devices not heard from:\n"
    "offline, never online, or whose latest heartbeat is older than three of\n"
    "its periods, with when they were last heard from. --json prints the same\n"
    "as one JSON object for tooling. Exit 0, or 1 when the broker cannot be\n"
    "read.\n";

#define IDS_SHOWN 20 /* ids listed per line in the table (the JSON has all) */

static const char *sget(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *obj(cJSON *parent, const char *key)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);
    return o ? o : cJSON_AddObjectToObject(parent, key);
}

static cJSON *arr(cJSON *parent, const char *key)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);
    return o ? o : cJSON_AddArrayToObject(parent, key);
}

/* Not heard from: why, or NULL when the device is heard from. */
static const char *silence(const lume_ops_device *d, double now)
{
    if (!strcmp(d->status, "offline"))
        return "offline";
    if (!d->status[0])
        return "never online";
    double t = lume_ops_last_heard(d);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(d->health, "period_s");
    double period = cJSON_IsNumber(p) ? p->valuedouble : 60;
    if (t > 0 && now - t > 3 * period)
        return "silent";
    return NULL;
}

static void add_device(cJSON *grp, const lume_ops_device *d, double now)
{
    cJSON *n = cJSON_GetObjectItemCaseSensitive(grp, "devices");
    cJSON_SetNumberValue(n, n->valuedouble + 1);
    const char *key = !strcmp(d->status, "online") ? "online"
                      : !strcmp(d->status, "offline") ? "offline" : "unknown";
    cJSON *c = cJSON_GetObjectItemCaseSensitive(grp, key);
    cJSON_SetNumberValue(c, c->valuedouble + 1);
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(d->reported, "scripts")) {
        const char *st = sget(s, "status");
        if (!st)
            continue;
        const char *v = sget(s, "version") ? sget(s, "version") : "-";
        cJSON *rows = arr(obj(grp, "scripts"), s->string), *row = NULL, *r;
        cJSON_ArrayForEach(r, rows)
            if (!strcmp(sget(r, "version"), v) && !strcmp(sget(r, "status"), st))
                row = r;
        if (!row) {
            row = cJSON_CreateObject();
            cJSON_AddItemToArray(rows, row);
            cJSON_AddStringToObject(row, "version", v);
            cJSON_AddStringToObject(row, "status", st);
            cJSON_AddNumberToObject(row, "count", 0);
            cJSON_AddArrayToObject(row, "devices");
        }
        cJSON *cnt = cJSON_GetObjectItemCaseSensitive(row, "count");
        cJSON_SetNumberValue(cnt, cnt->valuedouble + 1);
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(row, "devices"),
                             cJSON_CreateString(d->id));
        const char *err = sget(s, "error");
        bool bad = !strcmp(st, "rolled_back") || !strcmp(st, "rejected") ||
                   !strcmp(st, "quarantined");
        if (bad || err) {
            cJSON *fl = cJSON_CreateObject();
            cJSON_AddStringToObject(fl, "device", d->id);
            cJSON_AddStringToObject(fl, "script", s->string);
            cJSON_AddStringToObject(fl, "version", v);
            cJSON_AddStringToObject(fl, "status", st);
            if (sget(s, "running"))
                cJSON_AddStringToObject(fl, "running", sget(s, "running"));
            else
                cJSON_AddNullToObject(fl, "running");
            cJSON_AddStringToObject(fl, "reason", err ? err : st);
            cJSON_AddItemToArray(arr(grp, "failures"), fl);
        }
    }
    const char *why = silence(d, now);
    if (why) {
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "device", d->id);
        cJSON_AddStringToObject(q, "status", why);
        double t = lume_ops_last_heard(d);
        if (t > 0)
            cJSON_AddNumberToObject(q, "last_heard", t);
        else
            cJSON_AddNullToObject(q, "last_heard");
        cJSON_AddItemToArray(arr(grp, "not_heard_from"), q);
    }
}

static void print_ids(const cJSON *ids)
{
    int n = cJSON_GetArraySize(ids), i = 0;
    const cJSON *id;
    printf("   ");
    cJSON_ArrayForEach(id, ids) {
        if (i++ == IDS_SHOWN) {
            printf(" ... and %d more", n - IDS_SHOWN);
            break;
        }
        printf(" %s", id->valuestring);
    }
    printf("\n");
}

static void print_table(const cJSON *groups, double now)
{
    const cJSON *g;
    cJSON_ArrayForEach(g, groups) {
        printf("group %s: %.0f devices\n", g->string,
               cJSON_GetObjectItemCaseSensitive(g, "devices")->valuedouble);
        printf("  online %.0f, offline %.0f, never said %.0f\n",
               cJSON_GetObjectItemCaseSensitive(g, "online")->valuedouble,
               cJSON_GetObjectItemCaseSensitive(g, "offline")->valuedouble,
               cJSON_GetObjectItemCaseSensitive(g, "unknown")->valuedouble);
        const cJSON *s, *row;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(g, "scripts"))
            cJSON_ArrayForEach(row, s) {
                printf("  script %s version %s %s: %.0f\n", s->string, sget(row, "version"),
                       sget(row, "status"),
                       cJSON_GetObjectItemCaseSensitive(row, "count")->valuedouble);
                print_ids(cJSON_GetObjectItemCaseSensitive(row, "devices"));
            }
        const cJSON *fl;
        cJSON_ArrayForEach(fl, cJSON_GetObjectItemCaseSensitive(g, "failures")) {
            const char *run = sget(fl, "running");
            printf("  failed: %s: script %s version %s %s (runs %s): %s\n", sget(fl, "device"),
                   sget(fl, "script"), sget(fl, "version"), sget(fl, "status"),
                   run ? run : "nothing", sget(fl, "reason"));
        }
        cJSON_ArrayForEach(fl, cJSON_GetObjectItemCaseSensitive(g, "not_heard_from")) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(fl, "last_heard");
            char when[80] = "no heartbeat seen";
            if (cJSON_IsNumber(t)) {
                time_t s0 = (time_t)t->valuedouble;
                struct tm tm;
                gmtime_r(&s0, &tm);
                char iso[32];
                strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
                snprintf(when, sizeof when, "last heard %s, %.0f s ago", iso,
                         now - t->valuedouble > 0 ? now - t->valuedouble : 0);
            }
            printf("  not heard from: %s %s (%s)\n", sget(fl, "device"), sget(fl, "status"), when);
        }
    }
}

static int by_id(const void *a, const void *b)
{
    return strcmp((*(const lume_ops_device *const *)a)->id,
                  (*(const lume_ops_device *const *)b)->id);
}

int lume_cmd_fleet(int argc, char **argv)
{
    /* argv[0] "fleet", argv[1] the sub-command (main.c checked it) */
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc - 1, argv + 1, &o, FLEET_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first < argc - 1) {
        fprintf(stderr, "lume fleet status: unexpected argument '%s'\n\n%s", argv[first + 1],
                FLEET_USAGE);
        return EXIT_USAGE;
    }
    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        return r;
    }
    lume_ops_fleet f;
    if ((r = lume_ops_fleet_read(&c, &f, o.group, NULL, 10000))) {
        lume_ops_fleet_free(&f);
        lume_ops_close(&c);
        return r;
    }
    double now = (double)lume_wall_ns() / 1e9;
    cJSON *root = cJSON_CreateObject();
    cJSON *groups = cJSON_AddObjectToObject(root, "groups");
    size_t total = 0;
    const lume_ops_device **byid = malloc((f.n ? f.n : 1) * sizeof *byid);
    for (size_t i = 0; byid && i < f.n; i++)
        byid[i] = &f.v[i];
    if (byid)
        qsort(byid, f.n, sizeof *byid, by_id);
    for (size_t i = 0; byid && i < f.n; i++) {
        const lume_ops_device *d = byid[i];
        if (!d->reported || !lume_ops_selected(&f, d))
            continue;
        total++;
        const cJSON *gl = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(d->reported, "lume"), "groups");
        cJSON *names = cJSON_CreateArray();
        const cJSON *g;
        cJSON_ArrayForEach(g, gl)
            if (cJSON_IsString(g) && (!o.group || !strcmp(o.group, g->valuestring)))
                cJSON_AddItemToArray(names, cJSON_CreateString(g->valuestring));
        if (!cJSON_GetArraySize(names) && !o.group)
            cJSON_AddItemToArray(names, cJSON_CreateString("(no group)"));
        cJSON_ArrayForEach(g, names) {
            cJSON *grp = cJSON_GetObjectItemCaseSensitive(groups, g->valuestring);
            if (!grp) {
                grp = cJSON_AddObjectToObject(groups, g->valuestring);
                cJSON_AddNumberToObject(grp, "devices", 0);
                cJSON_AddNumberToObject(grp, "online", 0);
                cJSON_AddNumberToObject(grp, "offline", 0);
                cJSON_AddNumberToObject(grp, "unknown", 0);
                cJSON_AddObjectToObject(grp, "scripts");
                cJSON_AddArrayToObject(grp, "failures");
                cJSON_AddArrayToObject(grp, "not_heard_from");
            }
            add_device(grp, d, now);
        }
        cJSON_Delete(names);
    }
    free(byid);
    cJSON_AddNumberToObject(root, "devices", (double)total);
    if (o.json) {
        char *s = cJSON_Print(root);
        printf("%s\n", s ? s : "null");
        free(s);
    } else {
        print_table(groups, now);
        if (!total)
            printf("no devices have reported%s%s\n", o.group ? " in group " : "",
                   o.group ? o.group : "");
    }
    cJSON_Delete(root);
    lume_ops_fleet_free(&f);
    lume_ops_close(&c);
    return 0;
}
