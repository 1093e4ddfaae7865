/* cli/sign.c — signing script bundles:
 *
 *   lume keygen [--out PREFIX]                 P-256 key pair PREFIX.key / PREFIX.pub,
 *                                              and its key id
 *   lume sign FILE --key KEY --name N --version V [--seq S] [--target T]
 *             [--rollback] [--url URL] [--soak S] [--manifest]
 *                                              a signed bundle (JSON), or the manifest
 *
 * and the bundle builder `lume push` shares (cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "crypto.h"
#include "manifest.h"

#define INLINE_MAX 4096   /* some hubs cap a twin string at 4 KB: chunk above */
#define CHUNK 4000

/* ---- keygen, sign ------------------------------------------------------------------- */

static const char KEYGEN_USAGE[] =
    "usage: lume keygen [--out PREFIX]\n\n"
    "Makes an ECDSA P-256 key pair for signing script bundles: PREFIX.key\n"
    "(private, mode 0600) and PREFIX.pub (give it to devices in\n"
    "twin.trusted_keys), and prints the key id that bundles signed with it\n"
    "carry (and that twin.revoked_keys lists). PREFIX defaults to\n"
    "lume-signing. Never overwrites.\n";

int lume_cmd_keygen(int argc, char **argv)
{
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc, argv, &o, KEYGEN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    const char *prefix = o.out ? o.out : "lume-signing";
    char priv[4096], pub[4096];
    snprintf(priv, sizeof priv, "%s.key", prefix);
    snprintf(pub, sizeof pub, "%s.pub", prefix);
    char *err = NULL;
    char id[LUME_KEY_ID_LEN + 1];
    if (lume_ecdsa_keygen(priv, pub, &err) < 0 || lume_key_id_file(pub, id, &err) < 0) {
        fprintf(stderr, "lume keygen: %s\n", err ? err : "failed");
        free(err);
        return EXIT_FAIL;
    }
    printf("private key: %s\npublic key:  %s\nkey id:      %s\n", priv, pub, id);
    return 0;
}

/* The bundle without its manifest fields: version, source (inline up to
 * 4 KB, else chunks of 4000 bytes) or url, sha256. */
cJSON *lume_ops_bundle_body(const lume_ops_opts *o, const char *src, size_t len, const char *hex,
                          const char *version)
{
    cJSON *bundle = cJSON_CreateObject();
    cJSON_AddStringToObject(bundle, "version", version);
    if (o->url) {
        cJSON_AddStringToObject(bundle, "url", o->url);
    } else if (len <= INLINE_MAX) {
        cJSON_AddStringToObject(bundle, "source", src);
    } else {
        cJSON *chunks = cJSON_AddArrayToObject(bundle, "chunks");
        for (size_t off = 0; off < len; off += CHUNK) {
            size_t n = len - off < CHUNK ? len - off : CHUNK;
            char *piece = strndup(src + off, n);
            cJSON_AddItemToArray(chunks, cJSON_CreateString(piece));
            free(piece);
        }
    }
    cJSON_AddStringToObject(bundle, "sha256", hex);
    return bundle;
}

/* --target T, or dflt: "any" means no target. */
const char *lume_ops_target_of(const lume_ops_opts *o, const char *dflt)
{
    if (!o->target)
        return dflt;
    return strcmp(o->target, "any") ? o->target : NULL;
}

/* Sign the manifest of bundle (name, its version and sha256, seq, target,
 * o->rollback) with o->key and add the manifest fields and sig to it.
 * 0, or EXIT_FAIL with the reason on stderr. */
int lume_ops_sign_bundle(const char *cmd, const lume_ops_opts *o, const char *name, uint64_t seq,
                       const char *target, cJSON *bundle)
{
    char id[LUME_KEY_ID_LEN + 1];
    char *err = NULL, *sig = NULL;
    lume_manifest m = {
        .name = name,
        .version = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(bundle, "version")),
        .sha256 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(bundle, "sha256")),
        .seq = seq,
        .target = target,
        .rollback = o->rollback,
        .key_id = id,
    };
    if (lume_key_id_file(o->key, id, &err) < 0 || lume_manifest_sign(&m, o->key, &sig, &err) < 0) {
        fprintf(stderr, "lume %s: %s\n", cmd, err ? err : "cannot sign");
        free(err);
        return EXIT_FAIL;
    }
    int r = lume_manifest_to_bundle(&m, sig, bundle);
    free(sig);
    if (r < 0) {
        fprintf(stderr, "lume %s: out of memory\n", cmd);
        return EXIT_FAIL;
    }
    return 0;
}

uint64_t lume_ops_now_seq(void) { return (uint64_t)lume_wall_ms(); }

static const char SIGN_USAGE[] =
    "usage: lume sign FILE --key KEY --name N --version V [--seq S] [--target T]\n"
    "                 [--rollback] [--url URL] [--soak S] [--manifest]\n\n"
    "Prints a signed script bundle for FILE as one line of JSON: the value of\n"
    "desired.scripts.N, with version, source (or chunks, or --url URL),\n"
    "sha256, name, seq, target, rollback, key_id, sig (and soak_s with --soak).\n"
    "The signature (ECDSA P-256 with KEY) covers the bundle's manifest: name,\n"
    "version, sha256, seq, target, rollback and key id (docs/bundles.md).\n\n"
    "  --seq S      sequence number, 1 to 999999999999999; default: the time in\n"
    "               ms. A device refuses a seq below the highest it activated\n"
    "               for N, and a seq it saw before with other bytes\n"
    "  --target T   device:ID or group:G: only that device or group accepts it;\n"
    "               default (or 'any'): every device that trusts KEY\n"
    "  --rollback   allow it below the device's seq floor (a deliberate downgrade)\n"
    "  --manifest   print the exact manifest bytes instead, unsigned (KEY may then\n"
    "               be the public key): to sign them with openssl or an HSM:\n"
    "               openssl dgst -sha256 -sign KEY manifest | base64 -w0\n";

int lume_cmd_sign(int argc, char **argv)
{
    lume_ops_opts o = {0};
    int first, r = lume_ops_parse(argc, argv, &o, SIGN_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first != argc - 1 || !o.key || !o.name || !o.version) {
        fprintf(stderr, "lume sign: give one FILE, --key KEY, --name N and --version V (the "
                        "signature covers the name and the version)\n\n%s", SIGN_USAGE);
        return EXIT_USAGE;
    }
    size_t len;
    char *data = lume_ops_read_file(argv[first], &len);
    if (!data) {
        fprintf(stderr, "lume sign: cannot read %s: %s\n", argv[first], strerror(errno));
        return EXIT_FAIL;
    }
    char hex[65];
    lume_sha256_hex(data, len, hex);
    uint64_t seq = o.seq ? o.seq : lume_ops_now_seq();
    if (o.manifest) {
        char id[LUME_KEY_ID_LEN + 1], *bytes = NULL, *err = NULL;
        size_t n = 0;
        lume_manifest m = {.name = o.name, .version = o.version, .sha256 = hex, .seq = seq,
                           .target = lume_ops_target_of(&o, NULL), .rollback = o.rollback,
                           .key_id = id};
        free(data);
        if (lume_key_id_file(o.key, id, &err) < 0 || lume_manifest_encode(&m, &bytes, &n, &err) < 0) {
            fprintf(stderr, "lume sign: %s\n", err ? err : "failed");
            free(err);
            return EXIT_FAIL;
        }
        fwrite(bytes, 1, n, stdout);
        free(bytes);
        return 0;
    }
    cJSON *bundle = lume_ops_bundle_body(&o, data, len, hex, o.version);
    free(data);
    r = lume_ops_sign_bundle("sign", &o, o.name, seq, lume_ops_target_of(&o, NULL), bundle);
    if (r == 0) {
        if (o.soak >= 0)
            cJSON_AddNumberToObject(bundle, "soak_s", o.soak);
        char *json = cJSON_PrintUnformatted(bundle);
        printf("%s\n", json);
        free(json);
    }
    cJSON_Delete(bundle);
    return r;
}
