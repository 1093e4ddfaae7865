/* tests/unit/test_msgsign.c — message signing (core/trust/msgsign.h): the
 * test vector of docs/signing.md (computed with python3's hmac from the
 * document, not from this code), every field bound by the signature, the
 * envelope both ways (text, bytes, malformed), key files refused with their
 * reasons, and seqs never reused across a reopened state store. */
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

#include "kv.h"
#include "msgsign.h"
#include "testutil.h"

/* ---- the test vector (docs/signing.md, "A worked example") ---------------------- */

static const char VEC_SECRET[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
static const char VEC_KID[] = "bc126e7c0bef23b8";
static const char VEC_PAYLOAD[] = "{\"t\":21.5}";
static const char VEC_BYTES[] =
    "lume-msg-v1\n"
    "alg=hmac-sha256\n"
    "key=bc126e7c0bef23b8\n"
    "device=pump-7\n"
    "route=env%2Ftemp\n"
    "seq=42\n"
    "ts=1732000000000\n"
    "payload=64cb2922cbcd122329525c35461f0e6c3e56d112c21aed2200ed6d45a448f9af\n";
static const char VEC_SIG[] = "u5wFLoDHwC8P9qQ2oD8hGw99zicO+dv9u5/ECn7hCkY=";

/* the bundle test key of docs/bundles.md (a test key: never trust it) */
static const char EC_KEY[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBw7Tng7tOFMx5XZw9WrJf3yAI7mqkWhIGkbIK/9B2EgoAoGCCqGSM49\n"
    "AwEHoUQDQgAEMz2ovC+sVoHimmom7XgKEVB44gpMUhOH3CmBjrzDeTVtRkHM+uo0\n"
    "2ViYvrJHJpqFAPdz7Bxum1pzeQt7g/b9KQ==\n"
    "-----END EC PRIVATE KEY-----\n";
static const char EC_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMz2ovC+sVoHimmom7XgKEVB44gpM\n"
    "UhOH3CmBjrzDeTVtRkHM+uo02ViYvrJHJpqFAPdz7Bxum1pzeQt7g/b9KQ==\n"
    "-----END PUBLIC KEY-----\n";

static char dir[256];

static int setup(void **state)
{
    (void)state;
    if (tu_tmpdir(dir, sizeof dir, "msgsign") < 0)
        return -1;
    return tu_write_text(tu_path(dir, "vec.key"), VEC_SECRET) ||
           tu_write_text(tu_path(dir, "ec.key"), EC_KEY) ||
           tu_write_text(tu_path(dir, "ec.pub"), EC_PUB) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(dir);
    return 0;
}

static lume_msgsig vec(void)
{
    lume_msgsig m = {.alg = LUME_MSGSIG_HMAC, .key_id = VEC_KID, .device = "pump-7",
                     .route = "env/temp", .route_len = 8, .seq = 42, .ts_ms = 1732000000000,
                     .payload = VEC_PAYLOAD, .len = strlen(VEC_PAYLOAD)};
    return m;
}

static void test_vector(void **state)
{
    (void)state;
    lume_msgsig m = vec();
    char *bytes = NULL, *err = NULL;
    size_t len = 0;
    assert_int_equal(lume_msgsig_encode(&m, &bytes, &len, &err), 0);
    assert_int_equal(len, strlen(VEC_BYTES));
    assert_string_equal(bytes, VEC_BYTES);
    free(bytes);

    lume_msgsign *s = lume_msgsign_open("hmac-sha256", tu_path(dir, "vec.key"), &err);
    assert_non_null(s);
    assert_string_equal(lume_msgsign_key_id(s), VEC_KID);
    char sig[LUME_SIG_B64_MAX];
    lume_msgsig m2 = vec();
    m2.alg = m2.key_id = NULL; /* the signer fills them in */
    assert_int_equal(lume_msgsign_sign(s, &m2, sig, &err), 0);
    assert_string_equal(sig, VEC_SIG);
    lume_msgsign_free(s);

    lume_msgverify *v = lume_msgverify_open(tu_path(dir, "vec.key"), &err);
    assert_non_null(v);
    assert_int_equal(lume_msgverify_check(v, &m, VEC_SIG, &err), 0);
    lume_msgverify_free(v);
}

/* Every field is bound: changing any one fails the check. */
static void test_fields_bound(void **state)
{
    (void)state;
    char *err = NULL;
    lume_msgverify *v = lume_msgverify_open(tu_path(dir, "vec.key"), &err);
    assert_non_null(v);
    for (int i = 0; i < 6; i++) {
        lume_msgsig m = vec();
        switch (i) {
        case 0: m.device = "pump-8"; break;
        case 1: m.route = "env/tempo"; m.route_len = 9; break;
        case 2: m.route_len = 7; break;           /* "env/tem" */
        case 3: m.seq = 43; break;
        case 4: m.ts_ms++; break;
        case 5: m.payload = "{\"t\":21.6}"; break;
        }
        assert_int_equal(lume_msgverify_check(v, &m, VEC_SIG, &err), -EBADMSG);
        assert_non_null(strstr(err, "bad signature"));
        free(err);
        err = NULL;
    }
    lume_msgsig m = vec();
    m.key_id = "0123456789abcdef";
    assert_int_equal(lume_msgverify_check(v, &m, VEC_SIG, &err), -ENOKEY);
    assert_non_null(strstr(err, "wrong key"));
    free(err);
    err = NULL;
    m = vec();
    assert_int_equal(lume_msgverify_check(v, &m, "not base64!", &err), -EINVAL);
    assert_non_null(strstr(err, "malformed"));
    free(err);
    lume_msgverify_free(v);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    char *bytes = NULL, *err = NULL;
    size_t len;
    const char *want[] = {"alg", "key id", "seq", "ts", "device"};
    for (int i = 0; i < 5; i++) {
        lume_msgsig m = vec();
        switch (i) {
        case 0: m.alg = "hmac-md5"; break;
        case 1: m.key_id = "ABC"; break;
        case 2: m.seq = 0; break;
        case 3: m.ts_ms = -1; break;
        case 4: m.device = ""; break;
        }
        assert_int_equal(lume_msgsig_encode(&m, &bytes, &len, &err), -EINVAL);
        assert_null(bytes);
        assert_non_null(strstr(err, want[i]));
        free(err);
        err = NULL;
    }
}

/* ECDSA: the signer's signature checks with the public key (and is what
 * openssl would check: test_sign.sh). */
static void test_ecdsa(void **state)
{
    (void)state;
    char *err = NULL, sig[LUME_SIG_B64_MAX];
    lume_msgsign *s = lume_msgsign_open("ecdsa-p256", tu_path(dir, "ec.key"), &err);
    assert_non_null(s);
    assert_string_equal(lume_msgsign_key_id(s), "a4855797efc55bcd");
    lume_msgsig m = vec();
    assert_int_equal(lume_msgsign_sign(s, &m, sig, &err), 0);
    assert_string_equal(m.alg, "ecdsa-p256");
    lume_msgverify *v = lume_msgverify_open(tu_path(dir, "ec.pub"), &err);
    assert_non_null(v);
    assert_int_equal(lume_msgverify_check(v, &m, sig, &err), 0);
    m.seq++;
    assert_int_equal(lume_msgverify_check(v, &m, sig, &err), -EBADMSG);
    free(err);
    lume_msgverify_free(v);
    lume_msgsign_free(s);
}

static void test_keys_refused(void **state)
{
    (void)state;
    char *err = NULL;
    tu_write_text(tu_path(dir, "short.key"), "c2hvcnQ=\n");
    tu_write_text(tu_path(dir, "junk.key"), "this is not base64 at all!\n");
    tu_write_text(tu_path(dir, "empty.key"), "\n");
    struct { const char *alg, *file, *want; } cases[] = {
        {"hmac-sha256", "short.key", "too short"},
        {"hmac-sha256", "junk.key", "expected base64"},
        {"hmac-sha256", "empty.key", "empty"},
        {"hmac-sha256", "missing.key", "No such file"},
        {"ecdsa-p256", "ec.pub", "not a PEM private key"},
        {"ecdsa-p256", "vec.key", "not a PEM private key"},
        {"rsa", "ec.key", "net.sign.alg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lume_msgsign *s = lume_msgsign_open(cases[i].alg, tu_path(dir, cases[i].file), &err);
        assert_null(s);
        if (!strstr(err, cases[i].want))
            fail_msg("%s %s: %s", cases[i].alg, cases[i].file, err);
        free(err);
        err = NULL;
    }
}

static void test_envelope(void **state)
{
    (void)state;
    const unsigned char bin[] = {0x00, 0xff, 'a', 0xc3}; /* NUL, not UTF-8 */
    const char *texts[] = {"hello", "ünï \"quoted\"\n\ttab", ""};
    for (int i = 0; i < 4; i++) {
        lume_msgsig m = vec();
        if (i < 3) {
            m.payload = texts[i];
            m.len = strlen(texts[i]);
        } else {
            m.payload = bin;
            m.len = sizeof bin;
        }
        size_t len = 0;
        char *env = lume_msgsig_wrap(&m, VEC_SIG, &len);
        assert_non_null(env);
        assert_non_null(strstr(env, i < 3 ? "\"payload\":" : "\"payload_b64\":"));
        assert_null(memchr(env, '\n', len)); /* one line: mosquitto_sub -v keeps it whole */
        lume_msgsig back = {0};
        char sig[LUME_SIG_B64_MAX], *err = NULL;
        void *hold = NULL;
        assert_int_equal(lume_msgsig_unwrap(env, len, &back, sig, &hold, &err), 0);
        assert_string_equal(sig, VEC_SIG);
        assert_string_equal(back.alg, m.alg);
        assert_string_equal(back.key_id, m.key_id);
        assert_int_equal(back.seq, 42);
        assert_int_equal(back.ts_ms, 1732000000000);
        assert_int_equal(back.len, m.len);
        assert_memory_equal(back.payload, m.payload, m.len);
        free(hold);
        free(env);
    }
    const char *bad[] = {
        "not json", "{\"payload\":\"x\"}",
        "{\"lume_sig\":{\"v\":2,\"alg\":\"hmac-sha256\",\"kid\":\"k\",\"seq\":1,\"ts\":1,\"sig\":\"s\"},\"payload\":\"x\"}",
        "{\"lume_sig\":{\"v\":1,\"alg\":\"hmac-sha256\",\"kid\":\"k\",\"seq\":1.5,\"ts\":1,\"sig\":\"s\"},\"payload\":\"x\"}",
        "{\"lume_sig\":{\"v\":1,\"alg\":\"hmac-sha256\",\"kid\":\"k\",\"seq\":1,\"ts\":1,\"sig\":\"s\"}}",
        "{\"lume_sig\":{\"v\":1,\"alg\":\"hmac-sha256\",\"kid\":\"k\",\"seq\":1,\"ts\":1,\"sig\":\"s\"},\"payload_b64\":\"!!\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lume_msgsig back = {0};
        char sig[LUME_SIG_B64_MAX], *err = NULL;
        void *hold = NULL;
        assert_int_equal(lume_msgsig_unwrap(bad[i], strlen(bad[i]), &back, sig, &hold, &err),
                         -EINVAL);
        assert_null(hold);
        assert_non_null(strstr(err, "malformed"));
        free(err);
    }
}

/* Seqs go up by one, and a reopened store (a restart) never hands out a seq
 * again: it starts past the block the last run reserved. */
static void test_seq_never_reused(void **state)
{
    (void)state;
    char *err = NULL;
    uint64_t last = 0;
    for (int run = 0; run < 3; run++) {
        lume_kv *kv = lume_kv_open(tu_path(dir, "state.db"), &err);
        assert_non_null(kv);
        lume_msgsign *s = lume_msgsign_open("hmac-sha256", tu_path(dir, "vec.key"), &err);
        assert_non_null(s);
        int n = run == 1 ? LUME_MSGSIG_SEQ_BLOCK + 5 : 3; /* run 1 crosses a block */
        for (int i = 0; i < n; i++) {
            uint64_t q = lume_msgsign_next_seq(s, kv, &err);
            assert_true(q > last);
            if (i > 0)
                assert_int_equal(q, last + 1);
            last = q;
        }
        lume_msgsign_free(s);
        lume_kv_close(kv);
    }
    assert_true(last > 2 * LUME_MSGSIG_SEQ_BLOCK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector),         cmocka_unit_test(test_fields_bound),
        cmocka_unit_test(test_encode_refuses), cmocka_unit_test(test_ecdsa),
        cmocka_unit_test(test_keys_refused),   cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_seq_never_reused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
