/* tests/unit/test_crypto.c — lume's bundle hashing and signatures against the
 * openssl CLI: keys lume makes are read by `openssl pkey`, signatures made
 * the way docs/bundles.md tells operators to make them
 * (`openssl dgst -sha256 -sign key.pem FILE | base64 -w0`) verify in lume,
 * and signatures lume makes verify with `openssl dgst -verify`. Every test
 * works in its own temp folder, removed in teardown even when it fails. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/base64.h>

#include "crypto.h"
#include "testutil.h"

typedef struct fx {
    char  dir[256];
    char  path[12][400];  /* scratch paths, see P() */
    int   npath;
    char *err;
    char *sig;
    void *mem;
} fx;

/* dir/name (a fresh slot each call; up to 12 per test) */
static const char *P(fx *f, const char *name)
{
    assert_true(f->npath < 12);
    char buf[sizeof f->path[0]];
    snprintf(buf, sizeof buf, "%s/%s", f->dir, name);
    char *p = f->path[f->npath++];
    memcpy(p, buf, sizeof buf);
    return p;
}

/* &f->err, emptied: for the err out-parameter of the next call */
static char **E(fx *f)
{
    free(f->err);
    f->err = NULL;
    return &f->err;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "crypto")) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_rm_tree(f->dir);
    free(f->err);
    free(f->sig);
    free(f->mem);
    free(f);
    return 0;
}

/* Run argv (NULL-terminated) in f->dir, output into dir/cmd.log.
 * Returns the exit status, or -1 when it did not exit normally; fails the
 * test when it could not be started. */
static int run(fx *f, const char *const *argv)
{
    int st = tu_run(f->dir, "cmd.log", argv);
    assert_true(st != -2);
    return st;
}

#define RUN(f, ...) run((f), (const char *const[]){__VA_ARGS__, NULL})
/* a shell pipeline, as an operator would type it, run in f->dir */
#define SH(f, cmd) RUN((f), "sh", "-c", (cmd))

static void write_file(const char *path, const void *data, size_t len)
{
    assert_int_equal(tu_write_file(path, data, len), 0);
}

/* The whole file, NUL-terminated, in f->mem (replacing what was there). */
static char *slurp(fx *f, const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    free(f->mem);
    f->mem = NULL;
    size_t cap = 0, n = 0;
    char *b = NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            b = realloc(b, cap);
            assert_non_null(b);
            f->mem = b;
        }
        size_t k = fread(b + n, 1, cap - n - 1, fp);
        n += k;
        if (k == 0)
            break;
    }
    fclose(fp);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

/* A key pair made by lume: dir/name.key and dir/name.pub. */
typedef struct pair { const char *key, *pub; } pair;
static pair keypair(fx *f, const char *name)
{
    char k[64], p[64];
    snprintf(k, sizeof k, "%s.key", name);
    snprintf(p, sizeof p, "%s.pub", name);
    pair kp;
    kp.key = P(f, k);
    kp.pub = P(f, p);
    int r = lume_ecdsa_keygen(kp.key, kp.pub, E(f));
    if (r)
        fail_msg("keygen %s: %s", name, f->err ? f->err : "?");
    return kp;
}

static const char script[] = "-- rules v3\nlume.on('temp', function(s) if s.v > 80 then "
                             "lume.publish('alarm', s) end end)\n";

/* ---- sha256 --------------------------------------------------------------- */

static void test_sha256_hex_matches_openssl(void **state)
{
    fx *f = *state;
    char hex[65];
    /* FIPS 180-2 test vector */
    lume_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    lume_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    /* and a larger file, against the CLI */
    size_t n = 100000;
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    f->mem = buf;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 7 + (i >> 8));
    write_file(P(f, "blob"), buf, n);
    lume_sha256_hex(buf, n, hex);
    assert_int_equal(SH(f, "openssl dgst -sha256 -r blob | cut -c1-64 > blob.sha"), 0);
    char *want = slurp(f, P(f, "blob.sha"), NULL);
    assert_memory_equal(want, hex, 64);
}

/* ---- keygen ----------------------------------------------------------------- */

static void test_keygen_makes_keys_openssl_reads(void **state)
{
    fx *f = *state;
    const char *priv = P(f, "device.key"), *pub = P(f, "device.pub");
    assert_int_equal(lume_ecdsa_keygen(priv, pub, E(f)), 0);

    struct stat st;
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(pub, &st), 0);

    assert_int_equal(RUN(f, "openssl", "pkey", "-in", "device.key", "-noout"), 0);
    assert_int_equal(RUN(f, "openssl", "pkey", "-pubin", "-in", "device.pub", "-noout"), 0);
    /* the curve is P-256 */
    assert_int_equal(SH(f, "openssl pkey -pubin -in device.pub -noout -text_pub "
                           "| grep -q 'NIST CURVE: P-256'"), 0);
    /* and the public key file is the private key's public half */
    assert_int_equal(RUN(f, "openssl", "pkey", "-in", "device.key", "-pubout", "-out",
                         "derived.pub"), 0);
    size_t a, b;
    char *derived = strdup(slurp(f, P(f, "derived.pub"), &a));
    assert_non_null(derived);
    char *ours = slurp(f, pub, &b);
    bool same = a == b && memcmp(derived, ours, a) == 0;
    free(derived);
    assert_true(same);

    /* two key pairs are different */
    keypair(f, "other");
    assert_int_not_equal(RUN(f, "cmp", "-s", "device.pub", "other.pub"), 0);
}

static void test_keygen_refuses_to_overwrite(void **state)
{
    fx *f = *state;
    const char *priv = P(f, "k.key"), *pub = P(f, "k.pub");
    write_file(priv, "precious\n", 9);
    assert_int_equal(lume_ecdsa_keygen(priv, pub, E(f)), -EEXIST);
    assert_non_null(f->err);
    assert_non_null(strstr(f->err, priv));
    assert_string_equal(slurp(f, priv, NULL), "precious\n");
    assert_int_equal(access(pub, F_OK), -1); /* nothing half-made */
    free(f->err);
    f->err = NULL;

    /* an existing public key also stops it, and no private key is left */
    const char *priv2 = P(f, "j.key"), *pub2 = P(f, "j.pub");
    write_file(pub2, "old public\n", 11);
    assert_int_equal(lume_ecdsa_keygen(priv2, pub2, E(f)), -EEXIST);
    assert_non_null(strstr(f->err, pub2));
    assert_string_equal(slurp(f, pub2, NULL), "old public\n");
    assert_int_equal(access(priv2, F_OK), -1);
    free(f->err);
    f->err = NULL;

    /* an unwritable place: an error naming the file */
    const char *nowhere = P(f, "no/such/dir/x.key");
    assert_true(lume_ecdsa_keygen(nowhere, P(f, "x.pub"), E(f)) < 0);
    assert_non_null(strstr(f->err, nowhere));
}

/* ---- signatures across lume and openssl ------------------------------------- */

static lume_keyring *load1(fx *f, const char *path)
{
    const char *paths[1] = {path};
    lume_keyring *k = lume_keyring_load(paths, 1, E(f));
    if (!k)
        fail_msg("keyring %s: %s", path, f->err ? f->err : "?");
    return k;
}

static void test_openssl_signature_verifies_in_lume(void **state)
{
    fx *f = *state;
    write_file(P(f, "rules.lua"), script, strlen(script));
    /* an operator's key made with openssl (SEC1) and the docs' command line */
    assert_int_equal(RUN(f, "openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                         "-out", "op.key"), 0);
    assert_int_equal(RUN(f, "openssl", "pkey", "-in", "op.key", "-pubout", "-out", "op.pub"), 0);
    assert_int_equal(SH(f, "openssl dgst -sha256 -sign op.key rules.lua | base64 -w0 > sig"), 0);
    char *sig = strdup(slurp(f, P(f, "sig"), NULL));
    assert_non_null(sig);
    f->sig = sig;

    lume_keyring *k = load1(f, P(f, "op.pub"));
    assert_int_equal(lume_keyring_count(k), 1);
    int r = lume_keyring_verify(k, script, strlen(script), sig, E(f));
    if (r)
        fail_msg("verify: %d %s", r, f->err);

    /* one changed byte: refused */
    char *tampered = strdup(script);
    tampered[20] ^= 1;
    r = lume_keyring_verify(k, tampered, strlen(tampered), sig, E(f));
    free(tampered);
    assert_int_equal(r, -EBADMSG);
    assert_non_null(f->err);
    assert_non_null(strstr(f->err, "does not verify"));
    free(f->err);
    f->err = NULL;
    /* one byte more or less: refused */
    assert_int_equal(lume_keyring_verify(k, script, strlen(script) - 1, sig, NULL), -EBADMSG);

    /* the PKCS#8 form of a key works as well, for signing with lume */
    assert_int_equal(RUN(f, "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                         "ec_paramgen_curve:P-256", "-out", "p8.key"), 0);
    assert_non_null(strstr(slurp(f, P(f, "p8.key"), NULL), "BEGIN PRIVATE KEY"));
    assert_int_equal(RUN(f, "openssl", "pkey", "-in", "p8.key", "-pubout", "-out", "p8.pub"), 0);
    char *sig2 = NULL;
    assert_int_equal(lume_ecdsa_sign(P(f, "p8.key"), script, strlen(script), &sig2, E(f)), 0);
    lume_keyring *k2 = load1(f, P(f, "p8.pub"));
    r = lume_keyring_verify(k2, script, strlen(script), sig2, E(f));
    /* and a signature by another key is refused */
    int r_other = lume_keyring_verify(k, script, strlen(script), sig2, NULL);
    free(sig2);
    lume_keyring_free(k2);
    lume_keyring_free(k);
    assert_int_equal(r, 0);
    assert_int_equal(r_other, -EBADMSG);
}

static void test_lume_signature_verifies_with_openssl(void **state)
{
    fx *f = *state;
    write_file(P(f, "rules.lua"), script, strlen(script));
    pair dev = keypair(f, "dev");
    assert_int_equal(lume_ecdsa_sign(dev.key, script, strlen(script), &f->sig, E(f)), 0);
    assert_non_null(f->sig);
    assert_null(strchr(f->sig, '\n')); /* one line, like base64 -w0 */
    write_file(P(f, "sig.b64"), f->sig, strlen(f->sig));
    assert_int_equal(SH(f, "base64 -d sig.b64 > sig.der"), 0);
    assert_int_equal(RUN(f, "openssl", "dgst", "-sha256", "-verify", "dev.pub", "-signature",
                         "sig.der", "rules.lua"), 0);
    /* the check is real: openssl refuses the same signature over other bytes */
    write_file(P(f, "other.lua"), script, strlen(script) - 1);
    assert_int_equal(RUN(f, "openssl", "dgst", "-sha256", "-verify", "dev.pub", "-signature",
                         "sig.der", "other.lua"), 1);
    /* and lume agrees with itself */
    lume_keyring *k = load1(f, dev.pub);
    int r = lume_keyring_verify(k, script, strlen(script), f->sig, E(f));
    lume_keyring_free(k);
    assert_int_equal(r, 0);
}

static void test_signature_by_another_key_is_refused(void **state)
{
    fx *f = *state;
    pair a = keypair(f, "a"), b = keypair(f, "b");
    assert_int_equal(lume_ecdsa_sign(b.key, script, strlen(script), &f->sig, E(f)), 0);
    lume_keyring *k = load1(f, a.pub);
    int r = lume_keyring_verify(k, script, strlen(script), f->sig, E(f));
    lume_keyring_free(k);
    assert_int_equal(r, -EBADMSG);
    assert_non_null(strstr(f->err, "does not verify"));
}

static void test_keyring_with_two_keys_accepts_either(void **state)
{
    fx *f = *state;
    pair a = keypair(f, "a"), b = keypair(f, "b"), c = keypair(f, "c");
    const char *paths[2] = {a.pub, b.pub};
    lume_keyring *k = lume_keyring_load(paths, 2, E(f));
    assert_non_null(k);
    assert_int_equal(lume_keyring_count(k), 2);
    char *sa = NULL, *sb = NULL, *sc = NULL;
    assert_int_equal(lume_ecdsa_sign(a.key, script, strlen(script), &sa, E(f)), 0);
    assert_int_equal(lume_ecdsa_sign(b.key, script, strlen(script), &sb, E(f)), 0);
    assert_int_equal(lume_ecdsa_sign(c.key, script, strlen(script), &sc, E(f)), 0);
    int ra = lume_keyring_verify(k, script, strlen(script), sa, NULL);
    int rb = lume_keyring_verify(k, script, strlen(script), sb, NULL);
    int rc = lume_keyring_verify(k, script, strlen(script), sc, E(f));
    lume_keyring_free(k);
    free(sa);
    free(sb);
    free(sc);
    assert_int_equal(ra, 0);
    assert_int_equal(rb, 0);
    assert_int_equal(rc, -EBADMSG);
    assert_non_null(strstr(f->err, "any of the 2 trusted keys"));
}

static void test_empty_keyring_verifies_nothing(void **state)
{
    fx *f = *state;
    pair a = keypair(f, "a");
    assert_int_equal(lume_ecdsa_sign(a.key, script, strlen(script), &f->sig, E(f)), 0);
    lume_keyring *k = lume_keyring_load(NULL, 0, E(f));
    assert_non_null(k);
    assert_int_equal(lume_keyring_count(k), 0);
    int r = lume_keyring_verify(k, script, strlen(script), f->sig, E(f));
    lume_keyring_free(k);
    assert_int_equal(r, -EBADMSG);
    assert_non_null(strstr(f->err, "no trusted"));
}

static void test_malformed_signatures_are_einval(void **state)
{
    fx *f = *state;
    pair a = keypair(f, "a");
    lume_keyring *k = load1(f, a.pub);
    const size_t n = strlen(script);

    /* not base64 at all */
    int r1 = lume_keyring_verify(k, script, n, "this is not base64!!", E(f));
    bool said = f->err && strstr(f->err, "base64");
    free(f->err);
    f->err = NULL;
    /* empty */
    int r2 = lume_keyring_verify(k, script, n, "", NULL);
    /* base64, but not a DER signature */
    int r3 = lume_keyring_verify(k, script, n, "aGVsbG8gd29ybGQ=", NULL);
    /* too large: 300 bytes of base64 */
    unsigned char big[300];
    memset(big, 0x30, sizeof big);
    unsigned char b64[500];
    size_t olen;
    assert_int_equal(mbedtls_base64_encode(b64, sizeof b64, &olen, big, sizeof big), 0);
    int r4 = lume_keyring_verify(k, script, n, (char *)b64, NULL);
    /* a real signature with a byte appended inside the DER */
    char *sig = NULL;
    assert_int_equal(lume_ecdsa_sign(a.key, script, n, &sig, E(f)), 0);
    unsigned char der[128];
    size_t dlen;
    assert_int_equal(mbedtls_base64_decode(der, sizeof der, &dlen, (unsigned char *)sig,
                                           strlen(sig)), 0);
    free(sig);
    der[dlen++] = 0;
    assert_int_equal(mbedtls_base64_encode(b64, sizeof b64, &olen, der, dlen), 0);
    int r5 = lume_keyring_verify(k, script, n, (char *)b64, NULL);
    /* NULL */
    int r6 = lume_keyring_verify(k, script, n, NULL, NULL);
    lume_keyring_free(k);
    assert_int_equal(r1, -EINVAL);
    assert_true(said);
    assert_int_equal(r2, -EINVAL);
    assert_int_equal(r3, -EINVAL);
    assert_int_equal(r4, -EINVAL);
    assert_int_equal(r5, -EINVAL);
    assert_int_equal(r6, -EINVAL);
}

/* ---- keyring load errors ------------------------------------------------------ */

/* Loading [good, bad] fails with an error naming bad. */
static void expect_load_error(fx *f, const char *good, const char *bad, const char *words)
{
    const char *paths[2] = {good, bad};
    free(f->err);
    f->err = NULL;
    lume_keyring *k = lume_keyring_load(paths, 2, E(f));
    if (k) {
        lume_keyring_free(k);
        fail_msg("%s loaded into the keyring", bad);
    }
    assert_non_null(f->err);
    if (!strstr(f->err, bad) || (words && !strstr(f->err, words)))
        fail_msg("error '%s' should name %s and say '%s'", f->err, bad, words ? words : "");
}

static void test_keyring_rejects_other_keys_naming_the_file(void **state)
{
    fx *f = *state;
    const char *good_key = P(f, "good.key"), *good_pub = P(f, "good.pub");
    const char *rsa = P(f, "rsa.pub"), *p384 = P(f, "p384.pub"), *p384_key = P(f, "p384.key");
    const char *junk = P(f, "junk.pub"), *missing = P(f, "missing.pub");
    assert_int_equal(lume_ecdsa_keygen(good_key, good_pub, E(f)), 0);
    assert_int_equal(RUN(f, "openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                         "rsa_keygen_bits:2048", "-out", "rsa.key"), 0);
    assert_int_equal(RUN(f, "openssl", "pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"),
                     0);
    assert_int_equal(RUN(f, "openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout",
                         "-out", "p384.key"), 0);
    assert_int_equal(RUN(f, "openssl", "pkey", "-in", "p384.key", "-pubout", "-out",
                         "p384.pub"), 0);
    static const char junk_pem[] = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n";
    write_file(junk, junk_pem, strlen(junk_pem));

    expect_load_error(f, good_pub, rsa, "not an EC P-256 public key (RSA)");
    expect_load_error(f, good_pub, p384, "not an EC P-256 public key (EC secp384r1)");
    expect_load_error(f, good_pub, junk, "not a PEM public key");
    expect_load_error(f, good_pub, missing, "No such file");
    expect_load_error(f, good_pub, good_key, "private key");

    /* lume refuses to sign with the wrong kind of key too */
    char *sig = NULL;
    assert_int_equal(lume_ecdsa_sign(p384_key, script, 3, &sig, E(f)), -EINVAL);
    assert_null(sig);
    assert_non_null(strstr(f->err, "p384.key"));
    assert_non_null(strstr(f->err, "not an EC P-256 private key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sha256_hex_matches_openssl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keygen_makes_keys_openssl_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keygen_refuses_to_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openssl_signature_verifies_in_lume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lume_signature_verifies_with_openssl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_signature_by_another_key_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keyring_with_two_keys_accepts_either, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_empty_keyring_verifies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_signatures_are_einval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyring_rejects_other_keys_naming_the_file, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
