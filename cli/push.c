/* cli/push.c — push a script through the twin:
 *
 *   lume push (--device ID | --group G) SCRIPT.lua [--name N] [--version V]
 *             [--soak S] [--key KEY [--seq S] [--target T] [--rollback]]
 *                                              build, sign, publish (retained) */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "manifest.h"

static const char PUSH_USAGE[] =
    "usage: lume push (--device ID | --group G) SCRIPT.lua [--name N] [--version V]\n"
    "                 [--soak S] [--key KEY [--seq S] [--target T] [--rollback]]\n"
    "                 [--url URL] [--broker URL | --config FILE]\n\n"
    "Builds a bundle from SCRIPT.lua (source inline up to 4 KB, else chunks of\n"
    "4000 bytes; or only --url with the sha256 when the file is served over\n"
    "https), signs its manifest with KEY, and sets desired.scripts.NAME in the\n"
    "device's or group's desired document (retained), bumping its $version.\n"
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
    "               is accepted once)\n";

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

    lume_ops_client c;
    if ((r = lume_ops_connect(&c, &o))) {
        lume_ops_close(&c);
        cJSON_Delete(bundle);
        return r;
    }
    char topic[512];
    lume_ops_target_topic(&c, &o, topic, sizeof topic);
    cJSON *doc = lume_ops_current_doc(&c, topic);
    cJSON *scripts = cJSON_GetObjectItemCaseSensitive(doc, "scripts");
    if (!cJSON_IsObject(scripts)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "scripts");
        scripts = cJSON_AddObjectToObject(doc, "scripts");
    }
    if (o.key) {
        uint64_t seq = o.seq;
        if (!seq) { /* strictly above what this document holds for NAME, even across clocks */
            seq = lume_ops_now_seq();
            const cJSON *prev = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(scripts, name), "seq");
            if (cJSON_IsNumber(prev) && prev->valuedouble >= (double)seq &&
                prev->valuedouble < (double)LUME_SEQ_MAX)
                seq = (uint64_t)prev->valuedouble + 1;
        }
        char dflt[300];
        snprintf(dflt, sizeof dflt, "%s:%s", o.device ? "device" : "group",
                 o.device ? o.device : o.group);
        r = lume_ops_sign_bundle("push", &o, name, seq, lume_ops_target_of(&o, dflt), bundle);
        if (r) {
            cJSON_Delete(bundle);
            cJSON_Delete(doc);
            lume_ops_close(&c);
            return r;
        }
    }
    cJSON_AddNumberToObject(bundle, "soak_s", o.soak >= 0 ? o.soak : 10);
    cJSON_DeleteItemFromObjectCaseSensitive(scripts, name);
    cJSON_AddItemToObject(scripts, name, bundle);
    r = lume_ops_publish_doc(&c, topic, doc);
    cJSON_Delete(doc);
    lume_ops_close(&c);
    return r;
}
