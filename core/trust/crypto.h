/* core/trust/crypto.h — hashing, keys and ECDSA signatures (mbedtls).
 *
 * A signature here is an ECDSA P-256 signature over the SHA-256 of some
 * bytes, DER-encoded, then base64 — what
 *   openssl dgst -sha256 -sign key.pem FILE | base64 -w0
 * produces, so operators can sign with the openssl CLI too. What a script
 * bundle signs (its manifest) is core/trust/manifest.h's business. Keys are PEM
 * (PKCS#8 or SEC1 private keys, SubjectPublicKeyInfo public keys) and are
 * named by a key id (see lume_key_id_file). */
#ifndef LUME_CRYPTO_H
#define LUME_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* A key id: the first 16 lower-case hex digits of the SHA-256 of the public
 * key's DER SubjectPublicKeyInfo — what
 *   openssl pkey -pubin -in KEY.pub -outform DER | sha256sum | cut -c1-16
 * prints. */
#define LUME_KEY_ID_LEN 16

/* Lower-case hex SHA-256 of data into out (65 bytes with the NUL). */
void lume_sha256_hex(const void *data, size_t len, char out[65]);

/* Make a P-256 key pair: the private key PEM at priv_path (mode 0600), the
 * public key PEM at pub_path. Refuses to overwrite an existing file
 * (-EEXIST). 0, or negative with *err naming the file and the cause. */
int lume_ecdsa_keygen(const char *priv_path, const char *pub_path, char **err);

/* Sign SHA-256(data) with the private key at priv_path. *sig_b64 is a
 * malloc'd base64 DER signature. 0, or negative with *err. */
int lume_ecdsa_sign(const char *priv_path, const void *data, size_t len, char **sig_b64,
                    char **err);

/* A P-256 private key loaded once for many signatures (message signing,
 * core/trust/msgsign.h). LUME_SIG_B64_MAX: room for any signature's base64
 * and its NUL. */
#define LUME_SIG_B64_MAX 100
typedef struct lume_signer lume_signer;
/* NULL with *err naming the file and what is wrong with it (missing, not a
 * PEM private key, encrypted, not EC P-256). */
lume_signer *lume_signer_open(const char *priv_path, char **err);
void         lume_signer_free(lume_signer *s);
/* The key id of its public half. */
const char  *lume_signer_key_id(const lume_signer *s);
/* Sign SHA-256(data) (RFC 6979): base64 DER into sig_b64 (cap bytes,
 * LUME_SIG_B64_MAX is enough). 0, or negative with *err. */
int          lume_signer_sign(lume_signer *s, const void *data, size_t len, char *sig_b64,
                              size_t cap, char **err);

/* The key id of the EC P-256 key in a PEM file: a public key, or a private
 * key (then the id of its public half). 0, or negative with *err naming the
 * file and what is wrong with it. */
int lume_key_id_file(const char *path, char id[LUME_KEY_ID_LEN + 1], char **err);

/* Is s a key id: exactly LUME_KEY_ID_LEN lower-case hex digits? */
bool lume_key_id_valid(const char *s);

/* The trusted public keys of a device, each with its key id, and the key ids
 * it refuses (revoked). */
typedef struct lume_keyring lume_keyring;

/* Load P-256 public keys (PEM files). NULL with *err naming the file that
 * did not load (missing, not PEM, not an EC P-256 public key). n may be 0:
 * an empty keyring verifies nothing. */
lume_keyring *lume_keyring_load(const char *const *pub_paths, size_t n, char **err);
void          lume_keyring_free(lume_keyring *k);
size_t        lume_keyring_count(const lume_keyring *k);

/* The id and file of key i (0 <= i < count); NULL past the end. */
const char   *lume_keyring_key_id(const lume_keyring *k, size_t i);
const char   *lume_keyring_key_path(const lume_keyring *k, size_t i);

/* Refuse signatures by key_id from now on, whether or not the keyring holds
 * that key (a revocation can outlive the key's removal). 0; -EINVAL with
 * *err when key_id is not a key id (the keyring is unchanged); -ENOMEM. */
int  lume_keyring_revoke(lume_keyring *k, const char *key_id, char **err);
bool lume_keyring_revoked(const lume_keyring *k, const char *key_id);

/* Verify sig_b64 over SHA-256(data) against every key. 0 when one key
 * verifies it; -EINVAL when sig_b64 is not base64 of a DER ECDSA
 * signature; -EBADMSG when no key verifies it (also with an empty
 * keyring). *err (may be NULL) says which, in words. Revocations are not
 * consulted: this is the bare primitive. */
int lume_keyring_verify(const lume_keyring *k, const void *data, size_t len,
                        const char *sig_b64, char **err);

/* Would a signature by key_id be checked at all? 0 when the keyring holds
 * that key and it is not revoked; -EKEYREVOKED when it is revoked (whether
 * or not it is also trusted); -ENOKEY when no trusted key has that id (or
 * key_id is not a key id). *err (may be NULL) names the key id. */
int lume_keyring_check_id(const lume_keyring *k, const char *key_id, char **err);

/* Verify sig_b64 over SHA-256(data) with the one key whose id is key_id.
 * 0 when it verifies; -EKEYREVOKED when key_id is revoked (checked first,
 * so a revoked key is refused even while still trusted); -ENOKEY when no
 * trusted key has that id; -EINVAL when sig_b64 is malformed (as above);
 * -EBADMSG when the signature does not verify. *err (may be NULL) names the
 * key id and says which. */
int lume_keyring_verify_with(const lume_keyring *k, const char *key_id, const void *data,
                             size_t len, const char *sig_b64, char **err);

#endif
