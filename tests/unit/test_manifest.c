/* tests/unit/test_manifest.c — what a bundle's signature covers: the
 * canonical manifest bytes (the test vector of docs/bundles.md), signing
 * and verifying them, every field bound by the signature, key ids (unknown,
 * revoked, several keys), the bundle fields, targets, and the anti-rollback
 * floor's rules. Every test that needs keys works in its own temp folder,
 * removed in teardown even when it fails. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "manifest.h"
#include "testutil.h"

/* ---- the test vector (docs/bundles.md, "A worked example") -------------------- */

static const char VEC_SOURCE[] =
    "lume.on_sample(\"temperature\", function(v) if v > 80 then lume.publish(\"alarm\", v) "
    "end end)\n";
static const char VEC_SOURCE_SHA[] =
    "b532f00a231edbe6ba019513e3bfeeb5bcba302946050f171c18a0f9f138045f";
static const char VEC_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMz2ovC+sVoHimmom7XgKEVB44gpM\n"
    "UhOH3CmBjrzDeTVtRkHM+uo02ViYvrJHJpqFAPdz7Bxum1pzeQt7g/b9KQ==\n"
    "-----END PUBLIC KEY-----\n";
/* a key for this test only: never trust it anywhere */
static const char VEC_KEY[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBw7Tng7tOFMx5XZw9WrJf3yAI7mqkWhIGkbIK/9B2EgoAoGCCqGSM49\n"
    "AwEHoUQDQgAEMz2ovC+sVoHimmom7XgKEVB44gpMUhOH3CmBjrzDeTVtRkHM+uo0\n"
    "2ViYvrJHJpqFAPdz7Bxum1pzeQt7g/b9KQ==\n"
    "-----END EC PRIVATE KEY-----\n";
static const char VEC_KEY_ID[] = "a4855797efc55bcd";
static const char VEC_BYTES[] =
    "lume-bundle-v2\n"
    "name=rules\n"
    "version=v3\n"
    "sha256=b532f00a231edbe6ba019513e3bfeeb5bcba302946050f171c18a0f9f138045f\n"
    "seq=1732000000000\n"
    "target=group:ring-pilot\n"
    "rollback=0\n"
    "key=a4855797efc55bcd\n";
static const char VEC_BYTES_SHA[] =
    "3dedc6dfd3f10204cbe4f92f5fb018410743eb63e786c200c1c619817ec13637";
/* lume's signature (deterministic, RFC 6979); openssl's differ run to run
 * and verify all the same */
static const char VEC_SIG[] = "MEYCIQDYxqu+9a+9d4thPB09qjuHJtf1upEgOY6WNwCxIvkvLAIhAPlWJ+X703ANb035"
                              "cs7Qtso8QmpqOPDrZ6aSvM46V7kN";

static lume_manifest vec_manifest(void)
{
    return (lume_manifest){.name = "rules",
                           .version = "v3",
                           .sha256 = VEC_SOURCE_SHA,
                           .seq = 1732000000000ULL,
                           .target = "group:ring-pilot",
                           .rollback = false,
                           .key_id = VEC_KEY_ID};
}

/* ---- fixture --------------------------------------------------------------------- */

typedef struct fx {
    char          dir[256];
    char         *err;
    lume_keyring *k;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "manifest")) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lume_keyring_free(f->k);
    tu_rm_tree(f->dir);
    free(f->err);
    free(f);
    return 0;
}

static char **E(fx *f)
{
    free(f->err);
    f->err = NULL;
    return &f->err;
}

/* the error so far contains want */
static void err_has(fx *f, const char *want)
{
    if (!f->err || !strstr(f->err, want))
        fail_msg("error '%s' does not contain '%s'", f->err ? f->err : "(none)", want);
}

/* A key pair made by lume: dir/name.key, dir/name.pub; its id in id. */
static void keypair(fx *f, const char *name, char id[LUME_KEY_ID_LEN + 1])
{
    char k[64], p[64];
    snprintf(k, sizeof k, "%s.key", name);
    snprintf(p, sizeof p, "%s.pub", name);
    if (lume_ecdsa_keygen(tu_path(f->dir, k), tu_path(f->dir, p), E(f)))
        fail_msg("keygen %s: %s", name, f->err ? f->err : "?");
    assert_int_equal(lume_key_id_file(tu_path(f->dir, p), id, E(f)), 0);
}

static const char *key_path(fx *f, const char *name)
{
    char k[64];
    snprintf(k, sizeof k, "%s.key", name);
    return tu_path(f->dir, k);
}

/* The keyring of dir/<names[i]>.pub. */
static lume_keyring *ring(fx *f, const char *const *names, size_t n)
{
    const char *paths[8];
    for (size_t i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "%s.pub", names[i]);
        paths[i] = tu_path(f->dir, p);
    }
    lume_keyring *k = lume_keyring_load(paths, n, E(f));
    if (!k)
        fail_msg("keyring: %s", f->err ? f->err : "?");
    return k;
}

/* ---- encoding ------------------------------------------------------------------- */

static void test_vector_bytes(void **state)
{
    fx *f = *state;
    char hex[65];
    lume_sha256_hex(VEC_SOURCE, strlen(VEC_SOURCE), hex);
    assert_string_equal(hex, VEC_SOURCE_SHA);

    lume_manifest m = vec_manifest();
    char *bytes = NULL;
    size_t n = 0;
    assert_int_equal(lume_manifest_encode(&m, &bytes, &n, E(f)), 0);
    assert_int_equal(n, strlen(VEC_BYTES));
    assert_int_equal(n, 183);
    assert_memory_equal(bytes, VEC_BYTES, n);
    lume_sha256_hex(bytes, n, hex);
    free(bytes);
    assert_string_equal(hex, VEC_BYTES_SHA);

    /* no target and a rollback: an empty target line, rollback=1 */
    m.target = NULL;
    m.rollback = true;
    assert_int_equal(lume_manifest_encode(&m, &bytes, &n, E(f)), 0);
    assert_non_null(strstr(bytes, "\nseq=1732000000000\ntarget=\nrollback=1\nkey="));
    char *again = NULL;
    m.target = ""; /* "" and NULL are the same: any device */
    assert_int_equal(lume_manifest_encode(&m, &again, NULL, E(f)), 0);
    assert_string_equal(bytes, again);
    free(again);
    free(bytes);
}

static void test_vector_key_id_and_signature(void **state)
{
    fx *f = *state;
    const char *pub = tu_path(f->dir, "vec.pub"), *key = tu_path(f->dir, "vec.key");
    assert_int_equal(tu_write_text(pub, VEC_PUB), 0);
    assert_int_equal(tu_write_text(key, VEC_KEY), 0);
    char id[LUME_KEY_ID_LEN + 1];
    assert_int_equal(lume_key_id_file(pub, id, E(f)), 0);
    assert_string_equal(id, VEC_KEY_ID);
    assert_int_equal(lume_key_id_file(key, id, E(f)), 0); /* the private key: the same id */
    assert_string_equal(id, VEC_KEY_ID);

    const char *paths[1] = {pub};
    f->k = lume_keyring_load(paths, 1, E(f));
    assert_non_null(f->k);
    assert_string_equal(lume_keyring_key_id(f->k, 0), VEC_KEY_ID);
    assert_null(lume_keyring_key_id(f->k, 1));
    lume_manifest m = vec_manifest();
    int r = lume_manifest_verify(&m, VEC_SIG, f->k, E(f));
    if (r)
        fail_msg("the test vector's signature does not verify: %s", f->err);
    /* lume signs deterministically: the same signature again */
    char *sig = NULL;
    assert_int_equal(lume_manifest_sign(&m, key, &sig, E(f)), 0);
    bool same = !strcmp(sig, VEC_SIG);
    free(sig);
    assert_true(same);
}

static void expect_bad_field(fx *f, lume_manifest m, const char *want)
{
    char *bytes = (char *)"untouched";
    assert_int_equal(lume_manifest_encode(&m, &bytes, NULL, E(f)), -EINVAL);
    assert_null(bytes);
    err_has(f, want);
}

static void test_fields_are_checked_before_encoding(void **state)
{
    fx *f = *state;
    lume_manifest m = vec_manifest();
    m.version = "v3\nseq=99";
    expect_bad_field(f, m, "manifest version");
    m = vec_manifest();
    m.version = "v3\r";
    expect_bad_field(f, m, "without control characters");
    m = vec_manifest();
    m.version = "";
    expect_bad_field(f, m, "manifest version");
    m = vec_manifest();
    m.version = "0123456789012345678901234567890123456789012345678901234567890123"; /* 64 */
    expect_bad_field(f, m, "1 to 63 bytes");
    m = vec_manifest();
    m.name = "bad name";
    expect_bad_field(f, m, "manifest name 'bad name'");
    m = vec_manifest();
    m.name = "rules\nname=other";
    expect_bad_field(f, m, "manifest name");
    m = vec_manifest();
    m.sha256 = "B532F00A231EDBE6BA019513E3BFEEB5BCBA302946050F171C18A0F9F138045F";
    expect_bad_field(f, m, "64 lower-case hex digits");
    m = vec_manifest();
    m.sha256 = "b532f00a";
    expect_bad_field(f, m, "manifest sha256");
    m = vec_manifest();
    m.seq = 0;
    expect_bad_field(f, m, "manifest seq 0");
    m = vec_manifest();
    m.seq = LUME_SEQ_MAX + 1;
    expect_bad_field(f, m, "from 1 to 999999999999999");
    m = vec_manifest();
    m.target = "pump-7";
    expect_bad_field(f, m, "expected device:<id> or group:<name>");
    m = vec_manifest();
    m.target = "device:";
    expect_bad_field(f, m, "manifest target");
    m = vec_manifest();
    m.target = "group:a\nrollback=1";
    expect_bad_field(f, m, "manifest target");
    m = vec_manifest();
    m.key_id = "A4855797EFC55BCD";
    expect_bad_field(f, m, "manifest key id");
    m = vec_manifest();
    m.key_id = NULL;
    expect_bad_field(f, m, "manifest key id '(none)'");
    /* the largest seq is fine */
    m = vec_manifest();
    m.seq = LUME_SEQ_MAX;
    char *bytes = NULL;
    assert_int_equal(lume_manifest_encode(&m, &bytes, NULL, E(f)), 0);
    assert_non_null(strstr(bytes, "\nseq=999999999999999\n"));
    free(bytes);
}

/* ---- signatures ------------------------------------------------------------------ */

static void test_good_manifest_verifies_and_every_field_is_bound(void **state)
{
    fx *f = *state;
    char a[LUME_KEY_ID_LEN + 1], b[LUME_KEY_ID_LEN + 1];
    keypair(f, "a", a);
    keypair(f, "b", b);
    const char *names[] = {"a", "b"};
    f->k = ring(f, names, 2);
    lume_manifest m = vec_manifest();
    m.key_id = a;
    char *sig = NULL;
    assert_int_equal(lume_manifest_sign(&m, key_path(f, "a"), &sig, E(f)), 0);
    assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), 0);

    /* each field changed after signing: the signature no longer verifies */
    struct { const char *what; lume_manifest m; int rc; } t[9];
    size_t n = 0;
    for (size_t i = 0; i < 9; i++)
        t[i].m = m, t[i].rc = -EBADMSG;
    t[n].what = "name", t[n++].m.name = "other";
    t[n].what = "version", t[n++].m.version = "v4";
    t[n].what = "sha256",
    t[n++].m.sha256 = "c532f00a231edbe6ba019513e3bfeeb5bcba302946050f171c18a0f9f138045f";
    t[n].what = "seq", t[n++].m.seq = m.seq + 1;
    t[n].what = "target", t[n++].m.target = "group:ring-main";
    t[n].what = "no target", t[n++].m.target = NULL;
    t[n].what = "rollback", t[n++].m.rollback = true;
    t[n].what = "key id (another trusted key)", t[n++].m.key_id = b;
    t[n].what = "key id (unknown)", t[n].rc = -ENOKEY, t[n++].m.key_id = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        int r = lume_manifest_verify(&t[i].m, sig, f->k, E(f));
        if (r != t[i].rc)
            fail_msg("%s changed: verify gave %d (%s), expected %d", t[i].what, r,
                     f->err ? f->err : "", t[i].rc);
    }
    /* and the original still verifies */
    assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), 0);
    free(sig);
}

static void test_unknown_key_id_is_named(void **state)
{
    fx *f = *state;
    char a[LUME_KEY_ID_LEN + 1], rogue[LUME_KEY_ID_LEN + 1];
    keypair(f, "a", a);
    keypair(f, "rogue", rogue);
    const char *names[] = {"a"};
    f->k = ring(f, names, 1);
    lume_manifest m = vec_manifest();
    m.key_id = rogue;
    char *sig = NULL;
    assert_int_equal(lume_manifest_sign(&m, key_path(f, "rogue"), &sig, E(f)), 0);
    assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), -ENOKEY);
    err_has(f, "unknown key id");
    err_has(f, rogue);
    err_has(f, a); /* and what is trusted */
    assert_int_equal(lume_keyring_check_id(f->k, rogue, E(f)), -ENOKEY);
    err_has(f, rogue);
    /* an empty keyring trusts nothing */
    lume_keyring *none = lume_keyring_load(NULL, 0, E(f));
    assert_int_equal(lume_manifest_verify(&m, sig, none, E(f)), -ENOKEY);
    err_has(f, "no trusted public keys");
    lume_keyring_free(none);
    free(sig);
}

static void test_revoked_key_is_refused_even_while_trusted(void **state)
{
    fx *f = *state;
    char a[LUME_KEY_ID_LEN + 1], b[LUME_KEY_ID_LEN + 1];
    keypair(f, "a", a);
    keypair(f, "b", b);
    const char *names[] = {"a", "b"};
    f->k = ring(f, names, 2);
    lume_manifest m = vec_manifest();
    m.key_id = b;
    char *sig = NULL;
    assert_int_equal(lume_manifest_sign(&m, key_path(f, "b"), &sig, E(f)), 0);
    assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), 0);
    assert_false(lume_keyring_revoked(f->k, b));
    assert_int_equal(lume_keyring_revoke(f->k, b, E(f)), 0);
    assert_int_equal(lume_keyring_revoke(f->k, b, E(f)), 0); /* twice is once */
    assert_true(lume_keyring_revoked(f->k, b));
    assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), -EKEYREVOKED);
    err_has(f, b);
    err_has(f, "revoked");
    assert_int_equal(lume_keyring_check_id(f->k, b, E(f)), -EKEYREVOKED);
    /* the other key is untouched */
    m.key_id = a;
    free(sig);
    assert_int_equal(lume_manifest_sign(&m, key_path(f, "a"), &sig, E(f)), 0);
    assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), 0);
    free(sig);
    /* a revocation of a key that is not (or no longer) trusted is kept */
    assert_int_equal(lume_keyring_revoke(f->k, "0123456789abcdef", E(f)), 0);
    assert_true(lume_keyring_revoked(f->k, "0123456789abcdef"));
    /* and a malformed id is refused, the keyring unchanged */
    assert_int_equal(lume_keyring_revoke(f->k, "keys/old.pub", E(f)), -EINVAL);
    err_has(f, "not a key id");
    assert_false(lume_keyring_revoked(f->k, "keys/old.pub"));
}

static void test_several_keys_each_verifies_its_own(void **state)
{
    fx *f = *state;
    const char *names[] = {"k1", "k2", "k3"};
    char ids[3][LUME_KEY_ID_LEN + 1];
    for (size_t i = 0; i < 3; i++)
        keypair(f, names[i], ids[i]);
    assert_string_not_equal(ids[0], ids[1]);
    assert_string_not_equal(ids[1], ids[2]);
    f->k = ring(f, names, 3);
    assert_int_equal(lume_keyring_count(f->k), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(lume_keyring_key_id(f->k, i), ids[i]);
        lume_manifest m = vec_manifest();
        m.key_id = ids[i];
        char *sig = NULL;
        assert_int_equal(lume_manifest_sign(&m, key_path(f, names[i]), &sig, E(f)), 0);
        assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), 0);
        /* the same signature claimed for the next key: refused */
        m.key_id = ids[(i + 1) % 3];
        assert_int_equal(lume_manifest_verify(&m, sig, f->k, E(f)), -EBADMSG);
        err_has(f, ids[(i + 1) % 3]);
        free(sig);
    }
    /* signing refuses a key that is not the one the manifest names */
    lume_manifest m = vec_manifest();
    m.key_id = ids[0];
    char *sig = NULL;
    assert_int_equal(lume_manifest_sign(&m, key_path(f, "k2"), &sig, E(f)), -EINVAL);
    assert_null(sig);
    err_has(f, ids[1]);
    err_has(f, ids[0]);
}

/* ---- bundles --------------------------------------------------------------------- */

static void test_bundle_fields_round_trip(void **state)
{
    fx *f = *state;
    lume_manifest m = vec_manifest();
    m.rollback = true;
    cJSON *bundle = cJSON_CreateObject();
    cJSON_AddStringToObject(bundle, "source", VEC_SOURCE);
    assert_int_equal(lume_manifest_to_bundle(&m, VEC_SIG, bundle), 0);
    char *json = cJSON_PrintUnformatted(bundle);
    cJSON_Delete(bundle);
    bundle = cJSON_Parse(json);
    free(json);
    lume_manifest back;
    const char *sig = NULL;
    assert_int_equal(lume_manifest_from_bundle(bundle, &back, &sig, E(f)), 0);
    assert_string_equal(back.name, "rules");
    assert_string_equal(back.version, "v3");
    assert_string_equal(back.sha256, VEC_SOURCE_SHA);
    assert_true(back.seq == 1732000000000ULL);
    assert_string_equal(back.target, "group:ring-pilot");
    assert_true(back.rollback);
    assert_string_equal(back.key_id, VEC_KEY_ID);
    assert_string_equal(sig, VEC_SIG);
    cJSON_Delete(bundle);

    /* an unsigned bundle: nothing to read */
    bundle = cJSON_Parse("{\"version\":\"1\",\"source\":\"x\"}");
    assert_int_equal(lume_manifest_from_bundle(bundle, &back, &sig, E(f)), -ENOENT);
    cJSON_Delete(bundle);
}

static void expect_bundle_err(fx *f, const char *json, int rc, const char *want)
{
    cJSON *bundle = cJSON_Parse(json);
    assert_non_null(bundle);
    lume_manifest m;
    const char *sig = NULL;
    int r = lume_manifest_from_bundle(bundle, &m, &sig, E(f));
    cJSON_Delete(bundle);
    if (r != rc)
        fail_msg("%s: %d (%s), expected %d", json, r, f->err ? f->err : "", rc);
    err_has(f, want);
}

#define SHA "\"sha256\":\"b532f00a231edbe6ba019513e3bfeeb5bcba302946050f171c18a0f9f138045f\""
#define GOOD "\"name\":\"rules\",\"version\":\"v3\"," SHA ",\"key_id\":\"a4855797efc55bcd\""

static void test_old_and_malformed_bundles(void **state)
{
    fx *f = *state;
    /* a sig over the source alone, as lume signed before manifests */
    expect_bundle_err(f, "{\"version\":\"v3\",\"source\":\"x\"," SHA ",\"sig\":\"MEUCIQ==\"}",
                      -EPROTO, "old-format bundle");
    expect_bundle_err(f, "{\"version\":\"v3\"," SHA ",\"sig\":\"MEUCIQ==\"}", -EPROTO,
                      "Re-sign it with this lume: lume push");
    expect_bundle_err(f, "{\"version\":\"v3\"," SHA ",\"seq\":5,\"sig\":\"x\"}", -EINVAL,
                      "signed bundle has no name");
    expect_bundle_err(f, "{" GOOD ",\"sig\":\"x\"}", -EINVAL, "signed bundle has no seq");
    expect_bundle_err(f, "{" GOOD ",\"seq\":1.5,\"sig\":\"x\"}", -EINVAL,
                      "seq must be a whole number");
    expect_bundle_err(f, "{" GOOD ",\"seq\":0,\"sig\":\"x\"}", -EINVAL, "seq must be");
    expect_bundle_err(f, "{" GOOD ",\"seq\":\"5\",\"sig\":\"x\"}", -EINVAL, "seq must be");
    expect_bundle_err(f, "{" GOOD ",\"seq\":1e300,\"sig\":\"x\"}", -EINVAL, "seq must be");
    expect_bundle_err(f,
                      "{\"name\":\"rules\",\"version\":3," SHA
                      ",\"key_id\":\"a4855797efc55bcd\",\"seq\":1,\"sig\":\"x\"}",
                      -EINVAL, "version must be a string");
    expect_bundle_err(f, "{" GOOD ",\"seq\":1,\"rollback\":1,\"sig\":\"x\"}", -EINVAL,
                      "rollback must be true or false");
    expect_bundle_err(f, "{" GOOD ",\"seq\":1,\"target\":7,\"sig\":\"x\"}", -EINVAL,
                      "target must be a string");
    expect_bundle_err(f, "{" GOOD ",\"seq\":1,\"target\":\"everyone\",\"sig\":\"x\"}", -EINVAL,
                      "manifest target 'everyone'");
    expect_bundle_err(f, "{" GOOD ",\"seq\":1,\"sig\":5}", -EINVAL, "sig must be");
    expect_bundle_err(f,
                      "{\"name\":\"rules\",\"version\":\"v3\",\"sha256\":\"B532F00A231EDBE6BA01951"
                      "3E3BFEEB5BCBA302946050F171C18A0F9F138045F\",\"key_id\":"
                      "\"a4855797efc55bcd\",\"seq\":1,\"sig\":\"x\"}",
                      -EINVAL, "64 lower-case hex digits");
}

static void test_targets(void **state)
{
    fx *f = *state;
    assert_int_equal(lume_manifest_target_check(NULL, "pump-7", NULL, E(f)), 0);
    assert_int_equal(lume_manifest_target_check("", "pump-7", NULL, E(f)), 0);
    assert_int_equal(lume_manifest_target_check("device:pump-7", "pump-7", NULL, E(f)), 0);
    assert_int_equal(lume_manifest_target_check("device:pump-8", "pump-7", "fleet", E(f)),
                     -EACCES);
    err_has(f, "targets device:pump-8, this device is pump-7");
    assert_int_equal(lume_manifest_target_check("device:pump-70", "pump-7", NULL, E(f)),
                     -EACCES);
    assert_int_equal(lume_manifest_target_check("group:site-a", "p", "fleet,site-a,ring", E(f)),
                     0);
    assert_int_equal(lume_manifest_target_check("group:ring", "p", "fleet,site-a,ring", E(f)), 0);
    assert_int_equal(lume_manifest_target_check("group:site", "p", "fleet,site-a,ring", E(f)),
                     -EACCES);
    err_has(f, "targets group:site, this device (p) is in groups fleet,site-a,ring");
    assert_int_equal(lume_manifest_target_check("group:fleet", "p", NULL, E(f)), -EACCES);
    err_has(f, "is in no group");
    assert_int_equal(lume_manifest_target_check("ring:x", "p", NULL, E(f)), -EACCES);
    err_has(f, "unknown target 'ring:x'");
}

/* ---- the floor -------------------------------------------------------------------- */

static const char SHA_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char SHA_B[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char SHA_C[] = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

static lume_manifest mf(const char *version, const char *sha, uint64_t seq, bool rollback)
{
    return (lume_manifest){.name = "rules", .version = version, .sha256 = sha, .seq = seq,
                           .rollback = rollback, .key_id = VEC_KEY_ID};
}

/* check m against f; when accepted (rc >= 0), verify and activate it */
static int offer(fx *f, lume_seq_floor *fl, lume_manifest m, bool activate)
{
    int rc = lume_seq_floor_check(fl, &m, false, "rules", E(f));
    if (rc >= 0) {
        lume_seq_floor_set_pending(fl, &m);
        if (activate)
            assert_true(lume_seq_floor_commit(fl, m.version, m.sha256));
    }
    return rc;
}

static void test_floor_rules(void **state)
{
    fx *f = *state;
    lume_seq_floor fl;
    memset(&fl, 0, sizeof fl);
    assert_int_equal(offer(f, &fl, mf("1", SHA_A, 1, false), true), 0);
    assert_true(fl.seq == 1 && fl.active_seq == 1);
    /* the active bundle delivered again: fine */
    assert_int_equal(offer(f, &fl, mf("1", SHA_A, 1, false), false), 0);
    /* the same seq for other bytes: refused */
    assert_int_equal(offer(f, &fl, mf("1b", SHA_B, 1, false), false), -ESTALE);
    err_has(f, "seq 1 was already used for other bytes (version 1");
    /* seq 2, rejected later (compile, soak): the floor does not move */
    assert_int_equal(offer(f, &fl, mf("2", SHA_B, 2, false), false), 0);
    assert_false(lume_seq_floor_commit(&fl, "other", SHA_C)); /* something else went active */
    assert_false(fl.pending.set);
    assert_true(fl.seq == 1);
    /* then accepted */
    assert_int_equal(offer(f, &fl, mf("2", SHA_B, 2, false), true), 0);
    assert_true(fl.seq == 2);
    assert_string_equal(fl.version, "2");
    /* a replay of seq 1 under any version: refused, named */
    assert_int_equal(offer(f, &fl, mf("3", SHA_A, 1, false), false), -ESTALE);
    err_has(f, "replayed or stale bundle: seq 1 is below seq 2");
    err_has(f, "version 2 runs now");
    /* a signed rollback to seq 1: accepted, with a warning */
    assert_int_equal(offer(f, &fl, mf("1", SHA_A, 1, true), true), 1);
    err_has(f, "signed rollback accepted: seq 1 is below seq 2");
    assert_true(fl.seq == 2 && fl.active_seq == 1 && fl.rollback_seq == 1);
    assert_string_equal(fl.sha256, SHA_A);
    /* the rollback delivered again (it is what runs): fine */
    assert_int_equal(offer(f, &fl, mf("1", SHA_A, 1, true), false), 0);
    /* seq 2 replayed to undo the rollback: refused */
    assert_int_equal(offer(f, &fl, mf("2", SHA_B, 2, false), false), -ESTALE);
    err_has(f, "seq 2 was already used");
    /* moving on, then the rollback replayed: refused (used) */
    assert_int_equal(offer(f, &fl, mf("3", SHA_C, 3, false), true), 0);
    assert_int_equal(offer(f, &fl, mf("1", SHA_A, 1, true), false), -ESTALE);
    err_has(f, "replayed rollback: a rollback needs a seq above 1");
    /* a newer rollback is fine, even below the floor */
    assert_int_equal(offer(f, &fl, mf("2", SHA_B, 2, true), true), 1);
    assert_true(fl.seq == 3 && fl.active_seq == 2 && fl.rollback_seq == 2);
    /* a rollback above the floor: accepted and moves it */
    assert_int_equal(offer(f, &fl, mf("9", SHA_A, 9, true), true), 1);
    assert_true(fl.seq == 9 && fl.rollback_seq == 9);
}

static void test_floor_while_a_version_soaks(void **state)
{
    fx *f = *state;
    lume_seq_floor fl;
    memset(&fl, 0, sizeof fl);
    assert_int_equal(offer(f, &fl, mf("1", SHA_A, 1, false), true), 0);
    lume_manifest soaking = mf("5", SHA_B, 5, false);
    assert_int_equal(lume_seq_floor_check(&fl, &soaking, false, "rules", E(f)), 0);
    lume_seq_floor_set_pending(&fl, &soaking);
    /* during the soak of seq 5, seq 4 may not displace it */
    lume_manifest older = mf("4", SHA_C, 4, false);
    assert_int_equal(lume_seq_floor_check(&fl, &older, true, "rules", E(f)), -ESTALE);
    err_has(f, "seq 4 is below seq 5 of version 5, which is soaking now");
    /* nor seq 5 with other bytes; the soaking one itself is fine */
    lume_manifest same_seq = mf("5x", SHA_C, 5, false);
    assert_int_equal(lume_seq_floor_check(&fl, &same_seq, true, "rules", E(f)), -ESTALE);
    assert_int_equal(lume_seq_floor_check(&fl, &soaking, true, "rules", E(f)), 0);
    /* once it is no longer soaking (rolled back), seq 4 may go */
    assert_int_equal(lume_seq_floor_check(&fl, &older, false, "rules", E(f)), 0);
}

static void test_floor_encoding(void **state)
{
    (void)state;
    lume_seq_floor fl, back;
    memset(&fl, 0, sizeof fl);
    fl.seq = LUME_SEQ_MAX;
    fl.active_seq = 7;
    strcpy(fl.sha256, SHA_A);
    strcpy(fl.version, "v\"7\"");
    fl.rollback_seq = 3;
    lume_manifest p = mf("8", SHA_B, 8, true);
    lume_seq_floor_set_pending(&fl, &p);
    char *json = lume_seq_floor_encode(&fl);
    assert_non_null(json);
    assert_int_equal(lume_seq_floor_decode(json, strlen(json), &back), 0);
    free(json);
    assert_memory_equal(&fl, &back, sizeof fl);
    /* no pending */
    fl.pending.set = false;
    memset(&fl.pending, 0, sizeof fl.pending);
    json = lume_seq_floor_encode(&fl);
    assert_null(strstr(json, "pending"));
    assert_int_equal(lume_seq_floor_decode(json, strlen(json), &back), 0);
    free(json);
    assert_memory_equal(&fl, &back, sizeof fl);
    /* what is not a floor is refused (the device then fails closed) */
    static const char *const bad[] = {"", "[]", "{}", "{\"seq\":-1,\"active_seq\":0,"
                                      "\"sha256\":\"\",\"version\":\"\",\"rollback_seq\":0}",
                                      "{\"seq\":1,\"active_seq\":1,\"sha256\":\"a\","
                                      "\"version\":\"1\",\"rollback_seq\":0,\"pending\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(lume_seq_floor_decode(bad[i], strlen(bad[i]), &back), -EINVAL);
        assert_true(back.seq == 0 && !back.pending.set);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vector_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vector_key_id_and_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_are_checked_before_encoding, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_good_manifest_verifies_and_every_field_is_bound,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_id_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_key_is_refused_even_while_trusted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_several_keys_each_verifies_its_own, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bundle_fields_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_and_malformed_bundles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floor_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floor_while_a_version_soaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floor_encoding, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
