/* core/crypto.h — hashing and signatures for script bundles (mbedtls).
 *
 * A bundle's `sig` is an ECDSA P-256 signature over the SHA-256 of the
 * script's source, DER-encoded, then base64 — what
 *   openssl dgst -sha256 -sign key.pem FILE | base64 -w0
 * produces, so operators can sign with the openssl CLI too. Keys are PEM
 * (PKCS#8 or SEC1 private keys, SubjectPublicKeyInfo public keys). */
#ifndef LUME_CRYPTO_H
#define LUME_CRYPTO_H

#include <stddef.h>

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

/* The trusted public keys of a device. */
typedef struct lume_keyring lume_keyring;

/* Load P-256 public keys (PEM files). NULL with *err naming the file that
 * did not load (missing, not PEM, not an EC P-256 public key). n may be 0:
 * an empty keyring verifies nothing. */
lume_keyring *lume_keyring_load(const char *const *pub_paths, size_t n, char **err);
void          lume_keyring_free(lume_keyring *k);
size_t        lume_keyring_count(const lume_keyring *k);

/* Verify sig_b64 over SHA-256(data) against every key. 0 when one key
 * verifies it; -EINVAL when sig_b64 is not base64 of a DER ECDSA
 * signature; -EBADMSG when no key verifies it (also with an empty
 * keyring). *err (may be NULL) says which, in words. */
int lume_keyring_verify(const lume_keyring *k, const void *data, size_t len,
                        const char *sig_b64, char **err);

#endif
