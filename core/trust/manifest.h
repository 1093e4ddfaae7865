/* core/trust/manifest.h — what a script bundle's signature covers, and the
 * anti-rollback floor.
 *
 * A signed bundle carries a manifest: the script's name, its version, the
 * SHA-256 of its source, a sequence number, an optional target (one device
 * or one group), a rollback flag and the id of the signing key. The
 * signature (crypto.h) is over one canonical byte encoding of it:
 *
 *   lume-bundle-v2\n
 *   name=<name>\n
 *   version=<version>\n
 *   sha256=<64 lower-case hex>\n
 *   seq=<decimal, no sign, no leading zero>\n
 *   target=<empty | device:<id> | group:<name>>\n
 *   rollback=<0 | 1>\n
 *   key=<16 lower-case hex>\n
 *
 * docs/bundles.md is the reference for other tools. The device rebuilds
 * these bytes from the bundle's fields; ops (lume sign, lume push) writes
 * both from one lume_manifest, so the two cannot drift apart.
 *
 * The floor (lume_seq_floor) is what a device remembers per script name to
 * refuse replays: the highest seq it activated, the bundle active now, the
 * highest seq of a rollback it activated, and the bundle verified but not yet
 * activated (pending). Its rules are in manifest.c; persisting it is the
 * caller's business (a JSON text, lume_seq_floor_encode/decode). */
#ifndef LUME_MANIFEST_H
#define LUME_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "crypto.h"

#define LUME_MANIFEST_FORMAT "lume-bundle-v2"
/* The largest seq: 15 digits, so that a JSON number holds it exactly in any
 * parser (a double holds every integer up to 2^53, and cJSON prints a number
 * with 15 significant digits when that reads back close enough: past 15
 * digits it would round). Milliseconds since 1970 stay below it until the
 * year 33658. */
#define LUME_SEQ_MAX 999999999999999ULL
#define LUME_MANIFEST_VERSION_MAX 63   /* bytes */
#define LUME_MANIFEST_TARGET_MAX 135   /* "device:" + 128 */

typedef struct lume_manifest {
    const char *name;      /* script name: letters, digits, _ and -, 1 to 64 */
    const char *version;   /* 1 to 63 bytes, none of them a control character */
    const char *sha256;    /* 64 lower-case hex digits */
    uint64_t    seq;       /* 1 to LUME_SEQ_MAX */
    const char *target;    /* NULL or "": any device; "device:<id>" or "group:<name>",
                              <id>/<name> 1 to 128 of letters, digits and -._: */
    bool        rollback;  /* signed permission to go below the floor */
    const char *key_id;    /* LUME_KEY_ID_LEN lower-case hex digits */
} lume_manifest;

/* Check every field. 0, or -EINVAL with *err naming the field and value. */
int lume_manifest_check(const lume_manifest *m, char **err);

/* The canonical bytes: *out malloc'd (NUL-terminated, the NUL not counted
 * in *len). 0, or -EINVAL (as lume_manifest_check) / -ENOMEM with *out NULL. */
int lume_manifest_encode(const lume_manifest *m, char **out, size_t *len, char **err);

/* Sign the canonical bytes with the private key at priv_path, which must be
 * the key m->key_id names. *sig_b64 malloc'd base64 DER. 0, or negative
 * with *err (a bad field, an unreadable key, a key whose id is not
 * m->key_id). */
int lume_manifest_sign(const lume_manifest *m, const char *priv_path, char **sig_b64,
                       char **err);

/* Verify sig_b64 over the canonical bytes with the key m->key_id names.
 * 0; -EINVAL for a bad field or a malformed signature; -ENOKEY, -EKEYREVOKED,
 * -EBADMSG as lume_keyring_verify_with. *err says which. */
int lume_manifest_verify(const lume_manifest *m, const char *sig_b64, const lume_keyring *k,
                         char **err);

/* The manifest fields of a signed bundle (a JSON object): name, version,
 * sha256, seq, target, rollback, key_id; and *sig its sig. The strings point
 * into bundle (valid while it lives). 0; -ENOENT when the bundle has no sig
 * (unsigned: nothing filled in); -EPROTO for an old-format bundle (a sig but
 * no manifest fields: *err says how to re-sign); -EINVAL for a missing or
 * bad field (*err names it). */
int lume_manifest_from_bundle(const cJSON *bundle, lume_manifest *m, const char **sig,
                              char **err);

/* Add m's fields and sig to a bundle object (name, seq, target when set,
 * rollback, key_id, sig; version and sha256 too when the bundle has none).
 * 0, or -ENOMEM (the bundle may hold some of them). */
int lume_manifest_to_bundle(const lume_manifest *m, const char *sig_b64, cJSON *bundle);

/* Is target (NULL or "" = any device) meant for this device? groups: the
 * device's groups, comma-separated (twin.groups), may be NULL. 0, or
 * -EACCES with *err naming the target and what the device is. */
int lume_manifest_target_check(const char *target, const char *device_id, const char *groups,
                               char **err);

/* ---- the anti-rollback floor of one script name ------------------------------ */

typedef struct lume_seq_floor {
    uint64_t seq;            /* highest seq activated (never goes down); 0: none yet */
    uint64_t active_seq;     /* seq of the bundle activated last */
    char     sha256[65];     /* its sha256 */
    char     version[LUME_MANIFEST_VERSION_MAX + 1]; /* its version */
    uint64_t rollback_seq;   /* highest seq of an activated rollback; 0: none */
    struct {                 /* verified, not yet activated */
        bool     set;
        bool     rollback;
        uint64_t seq;
        char     sha256[65];
        char     version[LUME_MANIFEST_VERSION_MAX + 1];
    } pending;
} lume_seq_floor;

/* May the bundle of manifest m go on, given floor f? pending_live: the
 * pending bundle is still on its way (soaking), so m must not undercut it
 * either. 0: accepted; 1: accepted as a signed rollback below the floor
 * (*err then holds the warning to log); -ESTALE: refused, *err says why
 * (a replay below the floor, a seq reused for other bytes, a rollback seq
 * already used). name is for the messages. */
int lume_seq_floor_check(const lume_seq_floor *f, const lume_manifest *m, bool pending_live,
                         const char *name, char **err);

/* Remember m as verified but not yet active (replacing any pending one). */
void lume_seq_floor_set_pending(lume_seq_floor *f, const lume_manifest *m);

/* The bundle (version, sha256) was activated: when it is the pending one,
 * the floor advances to it (seq = max(seq, its seq), active = it, and
 * rollback_seq too for a rollback). The pending bundle is forgotten either
 * way. Returns true when the floor moved. */
bool lume_seq_floor_commit(lume_seq_floor *f, const char *version, const char *sha256);

/* As JSON text: malloc'd, NULL on ENOMEM. */
char *lume_seq_floor_encode(const lume_seq_floor *f);
/* From JSON text. 0, or -EINVAL (f is then an empty floor). */
int   lume_seq_floor_decode(const void *json, size_t len, lume_seq_floor *f);

#endif
