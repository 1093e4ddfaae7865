/* cli/push.c — push a script through the twin:
 *
 *   lume push (--device ID | --group G) SCRIPT.lua [--name N] [--version V]
 *             [--soak S] [--key KEY [--seq S] [--target T] [--rollback]]
 *             [--dialect D]                    build, sign, publish (retained);
 *                                              or print the desired patch where
 *                                              the hub's own tooling sets the twin */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "lume.h"
#include "config.h"
#include "hub.h"
#include "manifest.h"

static const char PUSH_USAGE[] =
    "usage: lume push (--device ID | --group G) SCRIPT.lua [--name N] [--version V]\n"
    "                 [--soak S] [--key KEY [--seq S] [--target T] [--rollback]]\n"
    "                 [--url URL] [--broker URL | --config FILE] [--dialect D]\n\n"
    "Builds a bundle from SCRIPT.lua (source inline up to 4 KB, else chunks of\n"
    "4000 bytes; or only --url with the sha256 when the file is served over\n"
    "https), signs its manifest with KEY, and sets desired.scripts.NAME in the\n"
    "device's or group's desired document (retained), bumping its $version.\n"
    "With a dialect whose hub keeps the twin behind its own service API\n"
    "(--dialect azure, or net.dialect = \"azure\" in --config), nothing is\n"
    "published: the desired patch {\"scripts\": {NAME: bundle}} is printed for\n"
    "the hub's tooling (az iot hub device-twin update --device-id ID --desired\n"
    "PATCH), signed the same way; --device only. The hub merges a patch into\n"
    "the twin, so every bundle field this bundle has not is sent as null.\n"
    "NAME defaults to the file name, V to the first 12 hex digits of the\n"
    "sha256, S (soak) to 10.\n\n"
    "The signature covers name, version, sha256, seq, target, rollback and the\n"
    "key id (docs/bundles.md):\n"
    "  --seq S      default: the time in ms, or one more than the seq of the\n"
    "               bundle NAME now in that document if that is higher\n"
    "  --target T   default: device:ID with --device, group:G with --group;\n"
    "               'any' signs it for every device that trusts KEY\n"
    "  --rollback   sign a deliberate downgrade: devices accept it even below\n"
    "               the highest seq they activated for NAME (each rollback\n"
    "               is accepted once)\n\n"
    "Without --key, a push to devices that accept only signed bundles (their\n"
    "reported lume.trust.signed_only) is refused, naming them (exit 2), unless\n"
    "--unsigned is given. With --key and --wait, devices that do not list KEY\n"
    "in their reported lume.trust.trusted_keys are named in a warning.\n\n"
    "  --wait       wait until every targeted device reports the outcome: the\n"
    "               device, or every device whose reported lume.groups lists G\n"
    "               (read from the retained reported documents before the\n"
    "               push). One line per device: ID OUTCOME [REASON], where\n"
    "               OUTCOME is active, rolled_back, rejected or no_answer; with\n"
    "               --group a count on stderr while it waits.\n"
    "  --timeout S  how long --wait waits (default 60)\n"
    "Exit codes with --wait: 0 every device active; 1 any rolled back or\n"
    "rejected; 3 only devices that did not answer in time (offline, slow):\n"
    "waiting longer may still succeed; 2 usage.\n";

/* 1 when push prints a desired patch instead of publishing: the dialect
 * (--dialect, else --config's net.dialect) has no desired topic an
 * operator can publish to; 0 when it publishes; -1 (said on stderr) when
 * the config cannot be read or --group asks for what such a hub has not. */
static int push_patch_only(const lume_ops_opts *o)
{
    lume_config cfg;
    lume_config_init(&cfg);
    char *err = NULL, topic[512];
    if (!o->dialect && o->config && lume_config_load(&cfg, o->config, &err) < 0) {
        fprintf(stderr, "lume push: %s\n", err);
        free(err);
        lume_config_free(&cfg);
        return -1;
    }
    lume_config_value v = {.kind = LUME_CV_STRING, .str = o->dialect};
    int r = o->dialect && lume_config_set(&cfg, "net.dialect", &v, &err) != 0 ? -1
            : lume_hub_operator_topic(&cfg, LUME_HUB_DEVICE_DESIRED, "x", topic, sizeof topic) ? 0
                                                                                               : 1;
    if (r < 0)
        fprintf(stderr, "lume push: --dialect: %s\n", err ? err : "cannot set it");
    else if (r == 1 && o->group) {
        fprintf(stderr, "lume push: the %s dialect has no group documents (each device has "
                        "one twin): give --device ID\n", cfg.net.dialect);
        r = -1;
    }
    free(err);
    lume_config_free(&cfg);
    return r;
}

/* Sign bundle NAME (when --key is given) with --seq, else the time in ms, or
 * one more than prev's seq (the bundle NAME the document holds now, or
 * NULL) if that is higher; then its soak_s. 0, or EXIT_FAIL said on stderr. */
static int push_finish(const lume_ops_opts *o, const char *name, const cJSON *prev,
                       cJSON *bundle)
{
    if (o->key) {
        uint64_t seq = o->seq;
        if (!seq) { /* strictly above what this document holds for NAME, even across clocks */
            seq = lume_ops_now_seq();
            const cJSON *pseq = cJSON_GetObjectItemCaseSensitive(prev, "seq");
            if (cJSON_IsNumber(pseq) && pseq->valuedouble >= (double)seq &&
                pseq->valuedouble < (double)LUME_SEQ_MAX)
                seq = (uint64_t)pseq->valuedouble + 1;
        }
        char dflt[300];
        snprintf(dflt, sizeof dflt, "%s:%s", o->device ? "device" : "group",
                 o->device ? o->device : o->group);
        int r = lume_ops_sign_bundle("push", o, name, seq, lume_ops_target_of(o, dflt), bundle);
        if (r)
            return r;
    }
    cJSON_AddNumberToObject(bundle, "soak_s", o->soak >= 0 ? o->soak : 10);
    return 0;
}

/* Every field a bundle may have (docs/bundles.md): in a patch that a hub
 * merges into its twin, the ones this bundle has not are null, so nothing
 * of the bundle it replaces (a source where a url now is, an old sig)
 * stays. */
static const char *const BUNDLE_FIELDS[] = {"version", "source", "chunks", "url",    "sha256",
                                            "sig",     "name",   "seq",    "target", "rollback",
                                            "key_id",  "soak_s"};

/* Print {"scripts": {name: bundle}} (takes bundle); 0 or EXIT_FAIL. */
static int print_patch(const char *name, cJSON *bundle)
{
    for (size_t i = 0; i < sizeof BUNDLE_FIELDS / sizeof *BUNDLE_FIELDS; i++)
        if (!cJSON_GetObjectItemCaseSensitive(bundle, BUNDLE_FIELDS[i]))
            cJSON_AddNullToObject(bundle, BUNDLE_FIELDS[i]);
    cJSON *patch = cJSON_CreateObject();
    cJSON *scripts = patch ? cJSON_AddObjectToObject(patch, "scripts") : NULL;
    if (!scripts) {
        cJSON_Delete(bundle);
        cJSON_Delete(patch);
        fprintf(stderr, "lume push: out of memory\n");
        return EXIT_FAIL;
    }
    cJSON_AddItemToObject(scripts, name, bundle);
    char *json = cJSON_PrintUnformatted(patch);
    cJSON_Delete(patch);
    if (!json) {
        fprintf(stderr, "lume push: out of memory\n");
        return EXIT_FAIL;
    }
    printf("%s\n", json);
    free(json);
    return 0;
}

/* Count what the wait found: 0 all active, 1 a failure, 3 only no answers. */
int lume_ops_outcome_exit(const lume_ops_fleet *f)
{
    bool failed = false, silent = false, any = false;
    for (size_t i = 0; i < f->n; i++) {
        if (!lume_ops_selected(f, &f->v[i]))
            continue;
        any = true;
        failed |= f->v[i].outcome == LUME_OUT_ROLLED_BACK || f->v[i].outcome == LUME_OUT_REJECTED;
        silent |= f->v[i].outcome == LUME_OUT_NO_ANSWER || f->v[i].outcome == LUME_OUT_PENDING;
    }
    return failed ? EXIT_FAIL : silent || !any ? EXIT_NO_ANSWER : 0;
}

/* Put bundle (taken) under scripts.NAME of the target's document, publish
 * it, and with --wait wait for the outcome. The exit code. */
static int push_publish(const lume_ops_opts *o, lume_ops_client *c, const char *name,
                        cJSON *bundle, lume_ops_fleet *f)
{
    char topic[512];
    lume_ops_target_topic(c, o, topic, sizeof topic);
    cJSON *doc = lume_ops_current_doc(c, topic);
    cJSON *scripts = cJSON_GetObjectItemCaseSensitive(doc, "scripts");
    if (!cJSON_IsObject(scripts)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "scripts");
        scripts = cJSON_AddObjectToObject(doc, "scripts");
    }
    int r = push_finish(o, name, cJSON_GetObjectItemCaseSensitive(scripts, name), bundle);
    if (r) {
        cJSON_Delete(bundle);
        cJSON_Delete(doc);
        return r;
    }
    char version[64];
    snprintf(version, sizeof version, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(bundle, "version")));
    cJSON_DeleteItemFromObjectCaseSensitive(scripts, name);
    cJSON_AddItemToObject(scripts, name, bundle);
    if (!o->force && lume_ops_lost_bundles(c, o, topic, doc, "lume push")) {
        cJSON_Delete(doc);
        return EXIT_FAIL;
    }
    r = lume_ops_publish_doc(c, topic, doc);
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(doc, "$version");
    double published = cJSON_IsNumber(pv) ? pv->valuedouble : 0;
    cJSON_Delete(doc);
    if (r || !o->wait)
        return r;
    char layer[300];
    snprintf(layer, sizeof layer, "%s%s", o->device ? "device" : "group:",
             o->device ? "" : o->group);
    size_t members = 0;
    for (size_t i = 0; i < f->n; i++)
        members += lume_ops_selected(f, &f->v[i]);
    if (!members) {
        printf("no device has reported that it is in group %s: nothing to wait for\n", o->group);
        return EXIT_NO_ANSWER;
    }
    fflush(stdout);
    lume_ops_wait(f, layer, published, name, version, o->timeout_s >= 0 ? o->timeout_s : 60);
    lume_ops_print_outcomes(f, stdout);
    return lume_ops_outcome_exit(f);
}

int lume_cmd_push(int argc, char **argv)
{
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc, argv, &o, PUSH_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first != argc - 1 || !o.device == !o.group) {
        fprintf(stderr, "lume push: give one SCRIPT.lua and one of --device or --group\n\n%s",
                PUSH_USAGE);
        return EXIT_USAGE;
    }
    if (o.timeout_s >= 0 && !o.wait) {
        fprintf(stderr, "lume push: --timeout is how long --wait waits: give --wait too\n");
        return EXIT_USAGE;
    }
    if (!o.key && (o.seq || o.target || o.rollback)) {
        fprintf(stderr, "lume push: --seq, --target and --rollback sign a manifest: give --key "
                        "KEY too\n");
        return EXIT_USAGE;
    }
    const char *file = argv[first];
    size_t len;
    char *src = lume_ops_read_file(file, &len);
    if (!src) {
        fprintf(stderr, "lume push: cannot read %s: %s\n", file, strerror(errno));
        return EXIT_FAIL;
    }
    char name[128];
    if (o.name)
        snprintf(name, sizeof name, "%s", o.name);
    else {
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    }
    char hex[65], v[13];
    lume_sha256_hex(src, len, hex);
    snprintf(v, sizeof v, "%.12s", hex);
    cJSON *bundle = lume_ops_bundle_body(&o, src, len, hex, o.version ? o.version : v);
    free(src);
    char id[LUME_KEY_ID_LEN + 1], *err = NULL;
    if (o.key && lume_key_id_file(o.key, id, &err) < 0) { /* before the broker: fail fast */
        fprintf(stderr, "lume push: %s\n", err ? err : "cannot read the key");
        free(err);
        cJSON_Delete(bundle);
        return EXIT_FAIL;
    }

    int no_topics = push_patch_only(&o);
    if (no_topics < 0) {
        cJSON_Delete(bundle);
        return EXIT_USAGE;
    }
    if (no_topics && o.wait) {
        fprintf(stderr, "lume push: --wait reads the devices' reported documents from the "
                        "broker, which this dialect's hub keeps behind its service API\n");
        cJSON_Delete(bundle);
        return EXIT_USAGE;
    }
    if (no_topics) { /* the hub's tooling sets the twin: print the patch */
        if ((r = push_finish(&o, name, NULL, bundle))) {
            cJSON_Delete(bundle);
            return r;
        }
        return print_patch(name, bundle);
    }

    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        cJSON_Delete(bundle);
        return r;
    }
    /* who is targeted, and what they ask of a bundle: before anything is
     * published. Signed and not waiting, nothing needs them: a push to a
     * group of a huge fleet does not read every reported document */
    lume_ops_fleet f;
    memset(&f, 0, sizeof f);
    bool look = !o.key || o.wait;
    if ((look && (r = lume_ops_fleet_read(&c, &f, o.group, o.device, 10000))) ||
        (look && o.device && !lume_ops_fleet_device(&f, o.device))) {
        lume_ops_fleet_free(&f);
        cJSON_Delete(bundle);
        lume_ops_close(&c);
        return r ? r : EXIT_FAIL;
    }
    char who[1024];
    if (!o.key && !o.unsigned_ok && lume_ops_unsigned_refusers(&f, NULL, who, sizeof who)) {
        fprintf(stderr, "lume push: not published: %s accept%s only signed bundles "
                        "(reported lume.trust.signed_only); give --key KEY, or --unsigned to "
                        "push it anyway\n", who, strchr(who, ',') || strstr(who, " more") ? "" : "s");
        lume_ops_fleet_free(&f);
        cJSON_Delete(bundle);
        lume_ops_close(&c);
        return EXIT_USAGE;
    }
    if (o.key && look && lume_ops_unsigned_refusers(&f, id, who, sizeof who))
        fprintf(stderr, "lume push: warning: %s do%s not trust key %s (reported "
                        "lume.trust.trusted_keys): they will reject this bundle\n", who,
                strchr(who, ',') || strstr(who, " more") ? "" : "es", id);
    r = push_publish(&o, &c, name, bundle, &f);
    lume_ops_fleet_free(&f);
    lume_ops_close(&c);
    return r;
}
