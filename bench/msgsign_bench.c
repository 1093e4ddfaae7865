/* bench/msgsign_bench.c — what net.sign costs per message (docs/signing.md):
 * lume's signer (the canonical bytes built, the payload hashed, then the
 * HMAC or the ECDSA signature, base64) beside the floor, the bare mbedtls
 * primitive over bytes already built (HMAC-SHA256 of them; ECDSA P-256 over
 * their SHA-256), in CPU time of this thread, alternating rounds. A 24-byte
 * JSON payload, as a sensor reading is.
 *
 *   msgsign_bench HMAC_KEY_FILE EC_KEY_FILE   (bench/run makes both with openssl) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "msgsign.h"

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char PAYLOAD[] = "{\"t\":21.53,\"h\":40.125}x";

static double lume_round(lume_msgsign *s, int n)
{
    char sig[LUME_SIG_B64_MAX], *err = NULL;
    double t0 = cpu_s();
    for (int i = 0; i < n; i++) {
        lume_msgsig m = {.device = "pump-7", .route = "env/temp", .route_len = 8,
                         .seq = (uint64_t)i + 1, .ts_ms = 1732000000000 + i,
                         .payload = PAYLOAD, .len = sizeof PAYLOAD - 1};
        if (lume_msgsign_sign(s, &m, sig, &err) < 0) {
            fprintf(stderr, "msgsign_bench: %s\n", err);
            exit(1);
        }
    }
    return (cpu_s() - t0) / n;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: msgsign_bench HMAC_KEY_FILE EC_KEY_FILE\n");
        return 2;
    }
    char *err = NULL;
    lume_msgsign *h = lume_msgsign_open("hmac-sha256", argv[1], &err);
    lume_msgsign *e = h ? lume_msgsign_open("ecdsa-p256", argv[2], &err) : NULL;
    if (!e) {
        fprintf(stderr, "msgsign_bench: %s\n", err);
        return 1;
    }
    /* the floor's inputs: one message's canonical bytes, a key of each kind */
    lume_msgsig m = {.alg = LUME_MSGSIG_HMAC, .key_id = lume_msgsign_key_id(h), .device = "pump-7",
                     .route = "env/temp", .route_len = 8, .seq = 1, .ts_ms = 1732000000000,
                     .payload = PAYLOAD, .len = sizeof PAYLOAD - 1};
    char *bytes = NULL;
    size_t len = 0;
    lume_msgsig_encode(&m, &bytes, &len, &err);
    unsigned char key[32] = {1, 2, 3}, mac[32], hash[32], der[MBEDTLS_ECDSA_MAX_LEN];
    mbedtls_pk_context pk;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_init(&pk);
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0);
    if (mbedtls_pk_parse_keyfile(&pk, argv[2], NULL) != 0) {
        fprintf(stderr, "msgsign_bench: %s: not a key\n", argv[2]);
        return 1;
    }
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    enum { HN = 200000, EN = 300, ROUNDS = 5 };
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < ROUNDS; r++) {
        double t = lume_round(h, HN);
        best[0] = t < best[0] ? t : best[0];
        double t0 = cpu_s();
        for (int i = 0; i < HN; i++) {
            bytes[len - 2] = (char)('0' + i % 10); /* not the same bytes every time */
            mbedtls_md_hmac(md, key, sizeof key, (unsigned char *)bytes, len, mac);
        }
        t = (cpu_s() - t0) / HN;
        best[1] = t < best[1] ? t : best[1];
        t = lume_round(e, EN);
        best[2] = t < best[2] ? t : best[2];
        t0 = cpu_s();
        for (int i = 0; i < EN; i++) {
            size_t dl = 0;
            bytes[len - 2] = (char)('0' + i % 10);
            mbedtls_sha256_ret((unsigned char *)bytes, len, hash, 0);
            mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, der, &dl, mbedtls_ctr_drbg_random,
                            &drbg);
        }
        t = (cpu_s() - t0) / EN;
        best[3] = t < best[3] ? t : best[3];
    }
    printf("%-34s %14s %14s\n", "CPU per message (best of 5)", "lume signer", "bare mbedtls");
    printf("%-34s %11.2f us %11.2f us\n", "hmac-sha256", best[0] * 1e6, best[1] * 1e6);
    printf("%-34s %11.0f us %11.0f us\n", "ecdsa-p256", best[2] * 1e6, best[3] * 1e6);
    printf("%-34s %11.0f    %11.0f\n", "messages/s on one core, hmac", 1 / best[0], 1 / best[1]);
    printf("%-34s %11.0f    %11.0f\n", "messages/s on one core, ecdsa", 1 / best[2], 1 / best[3]);
    free(bytes);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    lume_msgsign_free(h);
    lume_msgsign_free(e);
    return 0;
}
