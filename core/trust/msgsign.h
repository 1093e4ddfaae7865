/* core/trust/msgsign.h — signing each published message (net.sign), and
 * checking such a signature (lume verify).
 *
 * A signature covers one canonical byte string, built from the message and
 * the signing context (docs/signing.md is the reference for other tools):
 *
 *   lume-msg-v1\n
 *   alg=<hmac-sha256 | ecdsa-p256>\n
 *   key=<key id: 16 lower-case hex>\n
 *   device=<device id, percent-encoded>\n
 *   route=<route, percent-encoded>\n
 *   seq=<decimal, 1 to 2^63-1>\n
 *   ts=<decimal ms since 1970>\n
 *   payload=<lower-case hex SHA-256 of the payload bytes>\n
 *
 * Percent-encoding keeps A-Z a-z 0-9 - . _ ~ and writes every other byte as
 * %XX (upper-case hex), as the azure dialect encodes its property bag, so no
 * value can hold a line feed or an '='.
 *
 *   hmac-sha256  base64(HMAC-SHA256(secret, bytes)); the secret is a file of
 *                base64 text (openssl rand -base64 32), 16 to 128 bytes once
 *                decoded; its key id is the first 16 hex digits of
 *                HMAC-SHA256(secret, "lume-key-id"), so the id names the
 *                secret without giving away a hash of it.
 *   ecdsa-p256   base64(DER ECDSA P-256 over SHA-256(bytes)), as
 *                `openssl dgst -sha256 -sign` makes it; the key is a P-256
 *                private key PEM, its id the bundle key id (crypto.h).
 *
 * seq goes up by one for every message a device signs, and is never used
 * twice for one key and device: it is reserved in blocks in the state
 * store, so a restart skips the rest of a block rather than reuse it.
 *
 * Where the signature travels is the dialect's choice (core/hub/hub.h):
 * properties (lume-alg, lume-kid, lume-seq, lume-ts, lume-sig) where the hub
 * has a property bag, else the JSON envelope of lume_msgsig_wrap. Signing
 * happens once, when the message enters the outbox, so a resend carries the
 * same signature. */
#ifndef LUME_MSGSIGN_H
#define LUME_MSGSIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "kv.h"

#define LUME_MSGSIG_FORMAT "lume-msg-v1"
#define LUME_MSGSIG_HMAC   "hmac-sha256"
#define LUME_MSGSIG_ECDSA  "ecdsa-p256"
#define LUME_MSGSIG_SEQ_BLOCK 1000  /* seqs reserved per write to the state store */

/* One message's signed fields (pointers borrowed). */
typedef struct lume_msgsig {
    const char *alg;        /* LUME_MSGSIG_HMAC or LUME_MSGSIG_ECDSA */
    const char *key_id;     /* 16 lower-case hex digits */
    const char *device;     /* as it appears in the topic */
    const char *route;
    size_t      route_len;
    uint64_t    seq;
    int64_t     ts_ms;
    const void *payload;
    size_t      len;
} lume_msgsig;

/* The canonical bytes: *out malloc'd, NUL-terminated (not counted in *len).
 * 0, or -EINVAL (an unknown alg, a bad key id, seq 0, a negative ts) with
 * *err naming the field, or -ENOMEM. */
int lume_msgsig_encode(const lume_msgsig *m, char **out, size_t *len, char **err);

/* ---- the device's side ----------------------------------------------------- */

typedef struct lume_msgsign lume_msgsign;

/* The signer of net.sign: alg and the key file (an HMAC secret or a P-256
 * private key). NULL with *err naming the key (net.sign.alg or
 * net.sign.key_file) and what is wrong. */
lume_msgsign *lume_msgsign_open(const char *alg, const char *key_file, char **err);
void          lume_msgsign_free(lume_msgsign *s);
const char   *lume_msgsign_alg(const lume_msgsign *s);
const char   *lume_msgsign_key_id(const lume_msgsign *s);
/* The next seq, reserving a block in kv (namespace "msg-sign") when the
 * current one is used up. 0 with *err when the reservation could not be
 * written (nothing must then be signed: a restart could reuse the seq). */
uint64_t      lume_msgsign_next_seq(lume_msgsign *s, lume_kv *kv, char **err);
/* Fill m->alg and m->key_id, and sign m into sig (LUME_SIG_B64_MAX bytes).
 * 0, or negative with *err. */
int           lume_msgsign_sign(lume_msgsign *s, lume_msgsig *m, char sig[LUME_SIG_B64_MAX],
                                char **err);

/* The envelope for dialects without message properties (mqtt), one line
 * of JSON:
 *   {"lume_sig":{"v":1,"alg":..,"kid":..,"seq":..,"ts":..,"sig":..},"payload":"<text>"}
 * "payload" holds the payload as a JSON string when it is UTF-8 without a
 * NUL byte, else "payload_b64" holds its base64. malloc'd, *len set; NULL
 * on ENOMEM. */
char *lume_msgsig_wrap(const lume_msgsig *m, const char *sig, size_t *len);
/* Take an envelope apart: m's alg, key_id, seq, ts_ms, payload and len
 * (m->device and m->route are left alone: they come from the topic), the
 * signature into sig. The strings and the payload live in *hold (free it).
 * 0, or -EINVAL with *err saying what is malformed. */
int   lume_msgsig_unwrap(const void *json, size_t len, lume_msgsig *m,
                         char sig[LUME_SIG_B64_MAX], void **hold, char **err);

/* ---- the checker's side (lume verify) -------------------------------------- */

typedef struct lume_msgverify lume_msgverify;

/* A key to check with: an HMAC secret (base64 text) or a P-256 public key
 * PEM. NULL with *err naming the file. */
lume_msgverify *lume_msgverify_open(const char *key_file, char **err);
void            lume_msgverify_free(lume_msgverify *v);
const char     *lume_msgverify_alg(const lume_msgverify *v);
const char     *lume_msgverify_key_id(const lume_msgverify *v);
/* 0 when sig is m's signature by this key. -EINVAL: m or sig malformed;
 * -ENOKEY: m names another key id or algorithm; -EBADMSG: the signature does
 * not verify. *err says which, in words. */
int             lume_msgverify_check(const lume_msgverify *v, const lume_msgsig *m,
                                     const char *sig, char **err);

#endif
