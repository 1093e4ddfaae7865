/* core/trust/crypto.c — see crypto.h.
 *
 * What is signed: the SHA-256 of the given bytes (for a script bundle, its
 * manifest: core/trust/manifest.c), exactly as `openssl dgst -sha256 -sign key.pem
 * FILE` signs FILE. The signature is the DER SEQUENCE { INTEGER r, INTEGER s }
 * (at most 72 bytes for P-256), carried as base64. lume_keyring_verify_with
 * checks it with the one key a key id names (bundles); lume_keyring_verify
 * with any key of the keyring. Keys other than EC P-256 are refused when the
 * keyring loads, so a bundle cannot be "signed" with a weaker or unexpected
 * algorithm.
 * Signing is deterministic (RFC 6979, mbedtls' MBEDTLS_ECDSA_DETERMINISTIC):
 * the same key and file give the same signature; openssl's random-nonce
 * signatures verify all the same.
 *
 * Each key is named by its key id, the SHA-256 of its DER
 * SubjectPublicKeyInfo cut to 16 hex digits (64 bits: enough to tell a
 * handful of keys apart, not a security boundary — the signature is).
 * mbedtls writes the same DER as `openssl pkey -pubout -outform DER` (named
 * curve, uncompressed point), so the id can be computed with the CLI too.
 * Revoked ids are a list of their own, checked before the key is looked
 * up: a revoked key stays refused even if it is still listed as trusted.
 *
 * Key files are read here (not with mbedtls_pk_parse_*file) so that a
 * missing or unreadable file is reported with errno's words. */
#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/base64.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "log.h"

#define KEY_FILE_MAX   (64 * 1024) /* a PEM key is a few hundred bytes */
#define SIG_DER_MAX    200         /* P-256 DER signatures are <= 72 bytes */
#define PEM_BUF        4096

#define PUBKEY_DER_MAX 256         /* a P-256 SubjectPublicKeyInfo is 91 bytes */

struct lume_keyring {
    size_t               n;
    mbedtls_pk_context  *keys;
    char               (*ids)[LUME_KEY_ID_LEN + 1];
    char               **paths;
    size_t               nrevoked;
    char               (*revoked)[LUME_KEY_ID_LEN + 1];
};

static const char *mbed_str(int code, char *buf, size_t cap)
{
    mbedtls_strerror(code, buf, cap);
    return buf;
}

void lume_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char h[32];
    mbedtls_sha256_ret(data, len, h, 0);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[64] = '\0';
}

/* Read a whole (small) file, NUL-terminated (PEM parsing wants the NUL
 * counted in the length). 0, or -errno with *err naming the file. */
static int read_small_file(const char *path, unsigned char **buf, size_t *len, char **err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        lume_set_err(err, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        lume_set_err(err, "%s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        if (S_ISREG(st.st_mode))
            lume_set_err(err, "%s: too large for a key file (more than %d bytes)", path,
                    KEY_FILE_MAX);
        else
            lume_set_err(err, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        lume_set_err(err, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, b + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            lume_set_err(err, "%s: %s", path, strerror(e));
            mbedtls_platform_zeroize(b, got);
            free(b);
            close(fd);
            return -e;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    b[got] = '\0';
    *buf = b;
    *len = got + 1;
    return 0;
}

static void free_secret(unsigned char *b, size_t len)
{
    if (b) {
        mbedtls_platform_zeroize(b, len);
        free(b);
    }
}

/* "EC secp384r1", "RSA", ...: what a key is, for error messages. */
static void describe_key(mbedtls_pk_context *pk, char *buf, size_t cap)
{
    mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);
    if (t == MBEDTLS_PK_ECKEY || t == MBEDTLS_PK_ECKEY_DH || t == MBEDTLS_PK_ECDSA) {
        const mbedtls_ecp_curve_info *ci =
            mbedtls_ecp_curve_info_from_grp_id(mbedtls_pk_ec(*pk)->grp.id);
        snprintf(buf, cap, "EC %s", ci ? ci->name : "(unknown curve)");
    } else {
        snprintf(buf, cap, "%s", mbedtls_pk_get_name(pk));
    }
}

static bool is_p256(mbedtls_pk_context *pk)
{
    mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);
    return (t == MBEDTLS_PK_ECKEY || t == MBEDTLS_PK_ECDSA) &&
           mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

/* The key id of a parsed key (public, or the public half of a private one). */
static int key_id_of(mbedtls_pk_context *pk, char id[LUME_KEY_ID_LEN + 1])
{
    unsigned char der[PUBKEY_DER_MAX];
    int n = mbedtls_pk_write_pubkey_der(pk, der, sizeof der);
    if (n <= 0)
        return -EINVAL;
    char hex[65];
    lume_sha256_hex(der + sizeof der - (size_t)n, (size_t)n, hex); /* written at the end */
    memcpy(id, hex, LUME_KEY_ID_LEN);
    id[LUME_KEY_ID_LEN] = '\0';
    return 0;
}

bool lume_key_id_valid(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= LUME_KEY_ID_LEN || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == LUME_KEY_ID_LEN;
}

int lume_key_id_file(const char *path, char id[LUME_KEY_ID_LEN + 1], char **err)
{
    id[0] = '\0';
    if (!path) {
        lume_set_err(err, "key id: no key file");
        return -EINVAL;
    }
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    int rc = read_small_file(path, &pem, &pem_len, err);
    if (rc)
        return rc;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    char m[160], what[64];
    bool private = strstr((char *)pem, "PRIVATE KEY") != NULL;
    int r = private ? mbedtls_pk_parse_key(&pk, pem, pem_len, NULL, 0)
                    : mbedtls_pk_parse_public_key(&pk, pem, pem_len);
    free_secret(pem, pem_len);
    if (r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
        lume_set_err(err, "%s: the private key is encrypted; give its public key "
                     "(openssl pkey -in KEY -pubout)", path);
        rc = -EINVAL;
    } else if (r != 0) {
        lume_set_err(err, "%s: not a PEM %s key: %s", path, private ? "private" : "public",
                mbed_str(r, m, sizeof m));
        rc = -EINVAL;
    } else if (!is_p256(&pk)) {
        describe_key(&pk, what, sizeof what);
        lume_set_err(err, "%s: not an EC P-256 key (%s)", path, what);
        rc = -EINVAL;
    } else if (key_id_of(&pk, id) != 0) {
        lume_set_err(err, "%s: cannot encode the public key", path);
        rc = -EINVAL;
    }
    mbedtls_pk_free(&pk);
    return rc;
}

/* A seeded CTR_DRBG. 0, or negative with *err. */
static int rng_init(mbedtls_entropy_context *ent, mbedtls_ctr_drbg_context *drbg,
                    const char *who, char **err)
{
    mbedtls_entropy_init(ent);
    mbedtls_ctr_drbg_init(drbg);
    int r = mbedtls_ctr_drbg_seed(drbg, mbedtls_entropy_func, ent, (const unsigned char *)who,
                                  strlen(who));
    if (r != 0) {
        char m[160];
        lume_set_err(err, "%s: cannot seed the random generator: %s", who,
                mbed_str(r, m, sizeof m));
        return -EIO;
    }
    return 0;
}

/* Write all of buf to a new file (O_EXCL) with mode; fsync'd. 0 or -errno. */
static int write_new_file(const char *path, const unsigned char *buf, size_t len, mode_t mode,
                          char **err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            lume_set_err(err, "%s: already exists; not overwriting a key", path);
        else
            lume_set_err(err, "%s: %s", path, strerror(e));
        return -e;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, buf + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            lume_set_err(err, "%s: %s", path, strerror(e));
            close(fd);
            unlink(path);
            return -e;
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        lume_set_err(err, "%s: %s", path, strerror(e));
        unlink(path);
        return -e;
    }
    return 0;
}

int lume_ecdsa_keygen(const char *priv_path, const char *pub_path, char **err)
{
    if (!priv_path || !pub_path || !*priv_path || !*pub_path) {
        lume_set_err(err, "keygen: both a private and a public key path are needed");
        return -EINVAL;
    }
    if (!strcmp(priv_path, pub_path)) {
        lume_set_err(err, "keygen: the private and public key paths are the same (%s)", priv_path);
        return -EINVAL;
    }
    /* Check both before writing either: an existing key is never touched,
     * and a refusal leaves no half pair behind. (O_EXCL still guards each
     * file against a race.) */
    const char *paths[2] = {priv_path, pub_path};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (lstat(paths[i], &st) == 0) {
            lume_set_err(err, "%s: already exists; not overwriting a key", paths[i]);
            return -EEXIST;
        }
    }

    mbedtls_pk_context pk;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    unsigned char *priv_pem = NULL, *pub_pem = NULL;
    char m[160];
    int rc;

    mbedtls_pk_init(&pk);
    rc = rng_init(&ent, &drbg, "lume keygen", err);
    if (rc)
        goto out;
    priv_pem = calloc(1, PEM_BUF);
    pub_pem = calloc(1, PEM_BUF);
    if (!priv_pem || !pub_pem) {
        lume_set_err(err, "keygen: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    int r = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (r == 0)
        r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                mbedtls_ctr_drbg_random, &drbg);
    if (r == 0)
        r = mbedtls_pk_write_key_pem(&pk, priv_pem, PEM_BUF);
    if (r == 0)
        r = mbedtls_pk_write_pubkey_pem(&pk, pub_pem, PEM_BUF);
    if (r != 0) {
        lume_set_err(err, "keygen: %s", mbed_str(r, m, sizeof m));
        rc = -EIO;
        goto out;
    }
    rc = write_new_file(priv_path, priv_pem, strlen((char *)priv_pem), 0600, err);
    if (rc)
        goto out;
    rc = write_new_file(pub_path, pub_pem, strlen((char *)pub_pem), 0644, err);
    if (rc) {
        unlink(priv_path); /* ours: created above; no half pair */
        goto out;
    }
out:
    free_secret(priv_pem, PEM_BUF);
    free(pub_pem);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return rc;
}

/* A loaded P-256 private key with its random generator: parsed once,
 * used for many signatures (message signing signs every publish). */
struct lume_signer {
    mbedtls_pk_context       pk;
    mbedtls_entropy_context  ent;
    mbedtls_ctr_drbg_context drbg;
    char                     id[LUME_KEY_ID_LEN + 1];
    char                    *path;
};

lume_signer *lume_signer_open(const char *priv_path, char **err)
{
    if (!priv_path) {
        lume_set_err(err, "sign: no private key path");
        return NULL;
    }
    lume_signer *s = calloc(1, sizeof *s);
    if (!s) {
        lume_set_err(err, "sign: out of memory");
        return NULL;
    }
    mbedtls_pk_init(&s->pk);
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    char m[160], what[64];
    if (rng_init(&s->ent, &s->drbg, "lume sign", err) ||
        read_small_file(priv_path, &pem, &pem_len, err))
        goto fail;
    int r = mbedtls_pk_parse_key(&s->pk, pem, pem_len, NULL, 0);
    if (r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED || r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
        lume_set_err(err, "%s: the private key is encrypted; give an unencrypted PEM key",
                priv_path);
        goto fail;
    }
    if (r != 0) {
        lume_set_err(err, "%s: not a PEM private key: %s", priv_path, mbed_str(r, m, sizeof m));
        goto fail;
    }
    if (!is_p256(&s->pk)) {
        describe_key(&s->pk, what, sizeof what);
        lume_set_err(err, "%s: not an EC P-256 private key (%s)", priv_path, what);
        goto fail;
    }
    if (key_id_of(&s->pk, s->id) != 0 || !(s->path = strdup(priv_path))) {
        lume_set_err(err, "%s: cannot encode the public key", priv_path);
        goto fail;
    }
    free_secret(pem, pem_len);
    return s;
fail:
    free_secret(pem, pem_len);
    lume_signer_free(s);
    return NULL;
}

const char *lume_signer_key_id(const lume_signer *s) { return s->id; }

void lume_signer_free(lume_signer *s)
{
    if (!s)
        return;
    mbedtls_pk_free(&s->pk);
    mbedtls_ctr_drbg_free(&s->drbg);
    mbedtls_entropy_free(&s->ent);
    free(s->path);
    free(s);
}

int lume_signer_sign(lume_signer *s, const void *data, size_t len, char *sig_b64, size_t cap,
                     char **err)
{
    unsigned char hash[32], der[MBEDTLS_ECDSA_MAX_LEN];
    size_t der_len = 0, b64_len = 0;
    char m[160];
    mbedtls_sha256_ret(data, len, hash, 0);
    int r = mbedtls_pk_sign(&s->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, der, &der_len,
                            mbedtls_ctr_drbg_random, &s->drbg);
    if (r != 0) {
        lume_set_err(err, "%s: signing failed: %s", s->path, mbed_str(r, m, sizeof m));
        return -EIO;
    }
    if (mbedtls_base64_encode((unsigned char *)sig_b64, cap, &b64_len, der, der_len) != 0) {
        lume_set_err(err, "sign: no room for the signature");
        return -ENOSPC;
    }
    return 0;
}

int lume_ecdsa_sign(const char *priv_path, const void *data, size_t len, char **sig_b64,
                    char **err)
{
    *sig_b64 = NULL;
    lume_signer *s = lume_signer_open(priv_path, err);
    if (!s)
        return -EINVAL;
    char b64[LUME_SIG_B64_MAX];
    int r = lume_signer_sign(s, data, len, b64, sizeof b64, err);
    lume_signer_free(s);
    if (r)
        return r;
    if (!(*sig_b64 = strdup(b64))) {
        lume_set_err(err, "sign: out of memory");
        return -ENOMEM;
    }
    return 0;
}

lume_keyring *lume_keyring_load(const char *const *pub_paths, size_t n, char **err)
{
    lume_keyring *k = calloc(1, sizeof *k);
    if (!k || (n && (!(k->keys = calloc(n, sizeof *k->keys)) ||
                     !(k->ids = calloc(n, sizeof *k->ids)) ||
                     !(k->paths = calloc(n, sizeof *k->paths))))) {
        if (k) {
            free(k->keys);
            free(k->ids);
        }
        free(k);
        lume_set_err(err, "keyring: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *path = pub_paths[i] ? pub_paths[i] : "(null)";
        unsigned char *pem = NULL;
        size_t pem_len = 0;
        char m[160], what[64];
        mbedtls_pk_init(&k->keys[i]);
        k->n = i + 1; /* so the error path frees it */
        if (read_small_file(path, &pem, &pem_len, err))
            goto err;
        int r = mbedtls_pk_parse_public_key(&k->keys[i], pem, pem_len);
        bool private = strstr((char *)pem, "PRIVATE KEY") != NULL;
        free_secret(pem, pem_len);
        if (r != 0) {
            if (private)
                lume_set_err(err, "%s: holds a private key; the keyring takes public keys "
                             "(openssl pkey -in KEY -pubout)", path);
            else
                lume_set_err(err, "%s: not a PEM public key: %s", path, mbed_str(r, m, sizeof m));
            goto err;
        }
        if (!is_p256(&k->keys[i])) {
            describe_key(&k->keys[i], what, sizeof what);
            lume_set_err(err, "%s: not an EC P-256 public key (%s)", path, what);
            goto err;
        }
        if (key_id_of(&k->keys[i], k->ids[i]) != 0) {
            lume_set_err(err, "%s: cannot encode the public key", path);
            goto err;
        }
        if (!(k->paths[i] = strdup(path))) {
            lume_set_err(err, "keyring: out of memory");
            goto err;
        }
    }
    return k;
err:
    lume_keyring_free(k);
    return NULL;
}

void lume_keyring_free(lume_keyring *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++) {
        mbedtls_pk_free(&k->keys[i]);
        if (k->paths)
            free(k->paths[i]);
    }
    free(k->keys);
    free(k->ids);
    free(k->paths);
    free(k->revoked);
    free(k);
}

size_t lume_keyring_count(const lume_keyring *k) { return k ? k->n : 0; }

const char *lume_keyring_key_id(const lume_keyring *k, size_t i)
{
    return k && i < k->n ? k->ids[i] : NULL;
}

const char *lume_keyring_key_path(const lume_keyring *k, size_t i)
{
    return k && i < k->n ? k->paths[i] : NULL;
}

int lume_keyring_revoke(lume_keyring *k, const char *key_id, char **err)
{
    if (!lume_key_id_valid(key_id)) {
        lume_set_err(err, "'%s' is not a key id (%d lower-case hex digits, as lume keygen prints)",
                key_id ? key_id : "(null)", LUME_KEY_ID_LEN);
        return -EINVAL;
    }
    if (lume_keyring_revoked(k, key_id))
        return 0;
    void *grown = realloc(k->revoked, (k->nrevoked + 1) * sizeof *k->revoked);
    if (!grown) {
        lume_set_err(err, "keyring: out of memory");
        return -ENOMEM;
    }
    k->revoked = grown;
    memcpy(k->revoked[k->nrevoked++], key_id, LUME_KEY_ID_LEN + 1);
    return 0;
}

bool lume_keyring_revoked(const lume_keyring *k, const char *key_id)
{
    for (size_t i = 0; k && key_id && i < k->nrevoked; i++)
        if (!strcmp(k->revoked[i], key_id))
            return true;
    return false;
}

/* Is der exactly one SEQUENCE { INTEGER r, INTEGER s } with r, s > 0? */
static bool der_ecdsa_sig(const unsigned char *der, size_t len)
{
    unsigned char *p = (unsigned char *)der;
    const unsigned char *end = der + len;
    size_t seq;
    mbedtls_mpi r, s;
    bool ok = false;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    if (mbedtls_asn1_get_tag(&p, end, &seq, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
        goto out;
    if (p + seq != end)
        goto out;
    if (mbedtls_asn1_get_mpi(&p, end, &r) || mbedtls_asn1_get_mpi(&p, end, &s) || p != end)
        goto out;
    ok = mbedtls_mpi_cmp_int(&r, 0) > 0 && mbedtls_mpi_cmp_int(&s, 0) > 0;
out:
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return ok;
}

/* Decode and check a base64 DER signature into der. 0, or -EINVAL with *err. */
static int decode_sig(const char *sig_b64, unsigned char der[SIG_DER_MAX], size_t *der_len,
                      char **err)
{
    size_t b64_len = sig_b64 ? strlen(sig_b64) : 0;
    if (b64_len == 0) {
        lume_set_err(err, "signature is empty");
        return -EINVAL;
    }
    int r = mbedtls_base64_decode(der, SIG_DER_MAX, der_len, (const unsigned char *)sig_b64,
                                  b64_len);
    if (r == MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL) {
        lume_set_err(err, "signature is too long for an ECDSA P-256 signature (more than %d bytes)",
                SIG_DER_MAX);
        return -EINVAL;
    }
    if (r != 0) {
        lume_set_err(err, "signature is not valid base64");
        return -EINVAL;
    }
    if (!der_ecdsa_sig(der, *der_len)) {
        lume_set_err(err, "signature is not a DER-encoded ECDSA signature "
                     "(openssl dgst -sha256 -sign KEY FILE | base64 -w0)");
        return -EINVAL;
    }
    return 0;
}

int lume_keyring_verify(const lume_keyring *k, const void *data, size_t len,
                        const char *sig_b64, char **err)
{
    unsigned char der[SIG_DER_MAX];
    size_t der_len = 0;
    int r = decode_sig(sig_b64, der, &der_len, err);
    if (r)
        return r;
    if (!k || k->n == 0) {
        lume_set_err(err, "signature cannot be checked: no trusted public keys");
        return -EBADMSG;
    }
    unsigned char hash[32];
    mbedtls_sha256_ret(data, len, hash, 0);
    for (size_t i = 0; i < k->n; i++)
        if (mbedtls_pk_verify(&k->keys[i], MBEDTLS_MD_SHA256, hash, sizeof hash, der,
                              der_len) == 0)
            return 0;
    if (k->n == 1)
        lume_set_err(err, "signature does not verify with the trusted key");
    else
        lume_set_err(err, "signature does not verify with any of the %zu trusted keys", k->n);
    return -EBADMSG;
}

/* The index of key_id in k, or a negative errno as lume_keyring_check_id. */
static int find_id(const lume_keyring *k, const char *key_id, char **err)
{
    if (!lume_key_id_valid(key_id)) {
        lume_set_err(err, "key id '%.40s' is not %d lower-case hex digits", key_id ? key_id : "(null)",
                LUME_KEY_ID_LEN);
        return -ENOKEY;
    }
    if (lume_keyring_revoked(k, key_id)) {
        lume_set_err(err, "key %s is revoked (twin.revoked_keys)", key_id);
        return -EKEYREVOKED;
    }
    for (size_t i = 0; k && i < k->n; i++)
        if (!strcmp(k->ids[i], key_id))
            return (int)i;
    char have[(LUME_KEY_ID_LEN + 2) * 4 + 16] = "";
    size_t used = 0;
    for (size_t j = 0; k && j < k->n && j < 4; j++)
        used += (size_t)snprintf(have + used, sizeof have - used, "%s%s", j ? ", " : "",
                                 k->ids[j]);
    if (k && k->n > 4)
        snprintf(have + used, sizeof have - used, ", ...");
    if (!k || k->n == 0)
        lume_set_err(err, "unknown key id %s: there are no trusted public keys (twin.trusted_keys "
                     "is empty)", key_id);
    else
        lume_set_err(err, "unknown key id %s: not one of the trusted keys (twin.trusted_keys has "
                     "%s)", key_id, have);
    return -ENOKEY;
}

int lume_keyring_check_id(const lume_keyring *k, const char *key_id, char **err)
{
    int i = find_id(k, key_id, err);
    return i < 0 ? i : 0;
}

int lume_keyring_verify_with(const lume_keyring *k, const char *key_id, const void *data,
                             size_t len, const char *sig_b64, char **err)
{
    int i = find_id(k, key_id, err);
    if (i < 0)
        return i;
    unsigned char der[SIG_DER_MAX];
    size_t der_len = 0;
    int r = decode_sig(sig_b64, der, &der_len, err);
    if (r)
        return r;
    unsigned char hash[32];
    mbedtls_sha256_ret(data, len, hash, 0);
    if (mbedtls_pk_verify(&k->keys[i], MBEDTLS_MD_SHA256, hash, sizeof hash, der, der_len)
        == 0)
        return 0;
    lume_set_err(err, "signature does not verify with key %s (%s)", key_id, k->paths[i]);
    return -EBADMSG;
}
