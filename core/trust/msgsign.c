/* core/trust/msgsign.c — see msgsign.h; docs/signing.md for operators.
 *
 * Invariants:
 *   1. One encoder (lume_msgsig_encode) makes the bytes both sides sign and
 *      check; every field is checked before anything is encoded.
 *   2. A seq is handed out only after the state store holds a reservation
 *      at or above it, so no restart can hand it out again.
 *   3. No key material is logged or put in an error message: a key is named
 *      by its file and its key id.
 *   4. HMAC signatures are compared in constant time. */
#include "msgsign.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "hub.h"
#include "log.h"
#include "manifest.h"

#define HMAC_MIN 16
#define HMAC_MAX 128
#define SECRET_FILE_MAX 4096
#define KV_NS "msg-sign"
#define KV_KEY "seq-reserved"
#define SEQ_MAX LUME_SEQ_MAX  /* exact as a JSON number (manifest.h) */

/* A key of either side: an HMAC secret, or an ECDSA private key (the
 * signer) or public key (the checker). */
typedef struct msgkey {
    const char    *alg;
    char           id[LUME_KEY_ID_LEN + 1];
    unsigned char  secret[HMAC_MAX];  /* hmac */
    size_t         secret_len;
    lume_signer   *ecdsa;             /* ecdsa, signing */
    lume_keyring  *ring;              /* ecdsa, checking */
} msgkey;

struct lume_msgsign {
    msgkey         k;
    uint64_t       next, reserved;    /* next seq to hand out; highest reserved */
    bool           loaded;            /* reserved read from the store */
};

struct lume_msgverify {
    msgkey         k;
};

static void key_free(msgkey *k)
{
    lume_signer_free(k->ecdsa);
    lume_keyring_free(k->ring);
    mbedtls_platform_zeroize(k, sizeof *k);
}

/* ---- the canonical bytes -------------------------------------------------------- */

static bool alg_known(const char *alg)
{
    return alg && (!strcmp(alg, LUME_MSGSIG_HMAC) || !strcmp(alg, LUME_MSGSIG_ECDSA));
}

/* Append len bytes of s to the buffer *b (used *u of *cap), percent-encoded
 * (RFC 3986 unreserved kept) when enc. 0 or -ENOMEM. */
static int add(char **b, size_t *u, size_t *cap, const char *s, size_t len, bool enc)
{
    size_t need = *u + (enc ? 3 * len : len) + 1;
    if (need > *cap) {
        size_t c = need * 2;
        char *g = realloc(*b, c);
        if (!g)
            return -ENOMEM;
        *b = g;
        *cap = c;
    }
    if (enc) {
        *u += lume_hub_urlencode(s, len, *b + *u, *cap - *u);
    } else {
        memcpy(*b + *u, s, len);
        *u += len;
        (*b)[*u] = 0;
    }
    return 0;
}

int lume_msgsig_encode(const lume_msgsig *m, char **out, size_t *len, char **err)
{
    *out = NULL;
    *len = 0;
    if (!alg_known(m->alg)) {
        lume_set_err(err, "alg: expected \"%s\" or \"%s\", got \"%.40s\"", LUME_MSGSIG_HMAC,
                     LUME_MSGSIG_ECDSA, m->alg ? m->alg : "(none)");
        return -EINVAL;
    }
    if (!lume_key_id_valid(m->key_id)) {
        lume_set_err(err, "key id: expected %d lower-case hex digits, got \"%.40s\"",
                     LUME_KEY_ID_LEN, m->key_id ? m->key_id : "(none)");
        return -EINVAL;
    }
    if (m->seq < 1 || m->seq > SEQ_MAX) {
        lume_set_err(err, "seq: expected a whole number from 1 to %llu, got %llu",
                     (unsigned long long)SEQ_MAX, (unsigned long long)m->seq);
        return -EINVAL;
    }
    if (m->ts_ms < 0) {
        lume_set_err(err, "ts: expected milliseconds since 1970, got %lld", (long long)m->ts_ms);
        return -EINVAL;
    }
    if (!m->device || !*m->device) {
        lume_set_err(err, "device: empty");
        return -EINVAL;
    }
    char hex[65];
    lume_sha256_hex(m->payload ? m->payload : "", m->len, hex);
    size_t cap = 0, u = 0;
    char *b = NULL, head[200];
    int n = snprintf(head, sizeof head, LUME_MSGSIG_FORMAT "\nalg=%s\nkey=%s\ndevice=", m->alg,
                     m->key_id);
    if (add(&b, &u, &cap, head, (size_t)n, false) < 0 ||
        add(&b, &u, &cap, m->device, strlen(m->device), true) < 0 ||
        add(&b, &u, &cap, "\nroute=", 7, false) < 0 ||
        add(&b, &u, &cap, m->route ? m->route : "", m->route ? m->route_len : 0, true) < 0)
        goto oom;
    n = snprintf(head, sizeof head, "\nseq=%" PRIu64 "\nts=%" PRId64 "\npayload=%s\n", m->seq,
                 m->ts_ms, hex);
    if (add(&b, &u, &cap, head, (size_t)n, false) < 0)
        goto oom;
    *out = b;
    *len = u;
    return 0;
oom:
    free(b);
    lume_set_err(err, "out of memory");
    return -ENOMEM;
}

/* ---- keys ------------------------------------------------------------------------- */

/* The decoded HMAC secret of a base64 file. 0, or -EINVAL with *err. */
static int read_secret(const char *what, const char *path, unsigned char *out, size_t *len,
                       char **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lume_set_err(err, "%s: %s: %s", what, path, strerror(errno));
        return -EINVAL;
    }
    char buf[SECRET_FILE_MAX + 1];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0 || n > SECRET_FILE_MAX) {
        lume_set_err(err, "%s: %s: %s", what, path,
                     n < 0 ? strerror(errno) : "too large for an HMAC secret");
        return -EINVAL;
    }
    /* base64 text; whitespace (line breaks of base64 -w76, a final newline)
     * is left out */
    size_t k = 0;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t')
            buf[k++] = buf[i];
    int r = k ? mbedtls_base64_decode(out, HMAC_MAX, len, (unsigned char *)buf, k) : -1;
    mbedtls_platform_zeroize(buf, sizeof buf);
    if (r == MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL || (r == 0 && *len > HMAC_MAX)) {
        lume_set_err(err, "%s: %s: an HMAC secret is at most %d bytes", what, path, HMAC_MAX);
        return -EINVAL;
    }
    if (r != 0) {
        lume_set_err(err, "%s: %s: not an HMAC secret: expected base64 text "
                     "(openssl rand -base64 32)%s", what, path, k ? "" : ", the file is empty");
        return -EINVAL;
    }
    if (*len < HMAC_MIN) {
        lume_set_err(err, "%s: %s: the HMAC secret is %zu bytes, too short (at least %d: "
                     "openssl rand -base64 32)", what, path, *len, HMAC_MIN);
        mbedtls_platform_zeroize(out, HMAC_MAX);
        return -EINVAL;
    }
    return 0;
}

static int hmac(const unsigned char *key, size_t klen, const void *data, size_t len,
                unsigned char out[32])
{
    return mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, klen, data, len,
                           out);
}

static void hmac_key_id(const unsigned char *key, size_t klen, char id[LUME_KEY_ID_LEN + 1])
{
    static const char hexd[] = "0123456789abcdef";
    unsigned char h[32];
    hmac(key, klen, "lume-key-id", 11, h);
    for (int i = 0; i < LUME_KEY_ID_LEN / 2; i++) {
        id[2 * i] = hexd[h[i] >> 4];
        id[2 * i + 1] = hexd[h[i] & 15];
    }
    id[LUME_KEY_ID_LEN] = 0;
}

static bool is_pem(const char *path)
{
    char buf[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    return strstr(buf, "-----BEGIN") != NULL;
}

lume_msgsign *lume_msgsign_open(const char *alg, const char *key_file, char **err)
{
    if (!alg_known(alg)) {
        lume_set_err(err, "net.sign.alg: expected \"%s\" or \"%s\", got \"%s\"", LUME_MSGSIG_HMAC,
                     LUME_MSGSIG_ECDSA, alg ? alg : "(none)");
        return NULL;
    }
    if (!key_file) {
        lume_set_err(err, "net.sign.key_file: needed with net.sign.alg");
        return NULL;
    }
    lume_msgsign *s = calloc(1, sizeof *s);
    if (!s) {
        lume_set_err(err, "out of memory");
        return NULL;
    }
    if (!strcmp(alg, LUME_MSGSIG_HMAC)) {
        s->k.alg = LUME_MSGSIG_HMAC;
        if (read_secret("net.sign.key_file", key_file, s->k.secret, &s->k.secret_len, err) < 0)
            goto fail;
        hmac_key_id(s->k.secret, s->k.secret_len, s->k.id);
    } else {
        s->k.alg = LUME_MSGSIG_ECDSA;
        char *e = NULL;
        if (!(s->k.ecdsa = lume_signer_open(key_file, &e))) {
            lume_set_err(err, "net.sign.key_file: %s", e ? e : key_file);
            free(e);
            goto fail;
        }
        memcpy(s->k.id, lume_signer_key_id(s->k.ecdsa), sizeof s->k.id);
    }
    return s;
fail:
    lume_msgsign_free(s);
    return NULL;
}

void lume_msgsign_free(lume_msgsign *s)
{
    if (s)
        key_free(&s->k);
    free(s);
}

const char *lume_msgsign_alg(const lume_msgsign *s) { return s->k.alg; }
const char *lume_msgsign_key_id(const lume_msgsign *s) { return s->k.id; }

uint64_t lume_msgsign_next_seq(lume_msgsign *s, lume_kv *kv, char **err)
{
    if (!s->loaded) {
        void *v = NULL;
        size_t len = 0;
        int type = 0;
        int r = lume_kv_get(kv, KV_NS, KV_KEY, &v, &len, &type);
        if (r == 0 && len == sizeof(uint64_t))
            memcpy(&s->reserved, v, sizeof s->reserved);
        free(v);
        if (r < 0 && r != -ENOENT) {
            lume_set_err(err, "cannot read the reserved message seq from the state store: %s",
                         strerror(-r));
            return 0;
        }
        s->next = s->reserved + 1; /* what earlier runs reserved is never reused */
        s->loaded = true;
    }
    if (s->next > SEQ_MAX) {
        lume_set_err(err, "message seq exhausted (%llu)", (unsigned long long)SEQ_MAX);
        return 0;
    }
    if (s->next > s->reserved) {
        uint64_t hi = s->next + LUME_MSGSIG_SEQ_BLOCK - 1;
        int r = lume_kv_set(kv, KV_NS, KV_KEY, &hi, sizeof hi, 0);
        if (r < 0) {
            lume_set_err(err, "cannot reserve message seqs in the state store: %s",
                         strerror(-r));
            return 0;
        }
        s->reserved = hi;
    }
    return s->next++;
}

int lume_msgsign_sign(lume_msgsign *s, lume_msgsig *m, char sig[LUME_SIG_B64_MAX], char **err)
{
    m->alg = s->k.alg;
    m->key_id = s->k.id;
    char *bytes = NULL;
    size_t len = 0;
    int r = lume_msgsig_encode(m, &bytes, &len, err);
    if (r)
        return r;
    if (s->k.ecdsa) {
        r = lume_signer_sign(s->k.ecdsa, bytes, len, sig, LUME_SIG_B64_MAX, err);
    } else {
        unsigned char h[32];
        size_t n = 0;
        hmac(s->k.secret, s->k.secret_len, bytes, len, h);
        mbedtls_base64_encode((unsigned char *)sig, LUME_SIG_B64_MAX, &n, h, sizeof h);
    }
    free(bytes);
    return r;
}

/* ---- the envelope -------------------------------------------------------------------- */

static bool utf8_text(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false; /* overlong, out of range, a surrogate */
        i += k + 1;
    }
    return true;
}

char *lume_msgsig_wrap(const lume_msgsig *m, const char *sig, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *h = cJSON_AddObjectToObject(root, "lume_sig");
    char *text = NULL, *out = NULL;
    if (!h)
        goto out;
    cJSON_AddNumberToObject(h, "v", 1);
    cJSON_AddStringToObject(h, "alg", m->alg);
    cJSON_AddStringToObject(h, "kid", m->key_id);
    cJSON_AddNumberToObject(h, "seq", (double)m->seq);
    cJSON_AddNumberToObject(h, "ts", (double)m->ts_ms);
    cJSON_AddStringToObject(h, "sig", sig);
    if (utf8_text(m->payload, m->len)) {
        if (!(text = malloc(m->len + 1)))
            goto out;
        memcpy(text, m->payload ? m->payload : "", m->len);
        text[m->len] = 0;
        cJSON_AddStringToObject(root, "payload", text);
    } else {
        size_t n = 0;
        mbedtls_base64_encode(NULL, 0, &n, m->payload, m->len);
        if (!(text = malloc(n)) ||
            mbedtls_base64_encode((unsigned char *)text, n, &n, m->payload, m->len))
            goto out;
        cJSON_AddStringToObject(root, "payload_b64", text);
    }
    out = cJSON_PrintUnformatted(root);
    if (out)
        *len = strlen(out);
out:
    free(text);
    cJSON_Delete(root);
    return out;
}

/* A whole number 0 <= v <= max from a JSON number, or false. */
static bool json_uint(const cJSON *it, double max, uint64_t *v)
{
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > max ||
        it->valuedouble != (double)(uint64_t)it->valuedouble)
        return false;
    *v = (uint64_t)it->valuedouble;
    return true;
}

int lume_msgsig_unwrap(const void *json, size_t len, lume_msgsig *m,
                       char sig[LUME_SIG_B64_MAX], void **hold, char **err)
{
    *hold = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const char *why = NULL;
    if (!cJSON_IsObject(root)) {
        why = "not a signed message: the payload is not a JSON envelope";
        goto bad;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "lume_sig");
    if (!cJSON_IsObject(h)) {
        why = "not a signed message: the envelope has no \"lume_sig\" object";
        goto bad;
    }
    uint64_t v = 0, seq = 0, ts = 0;
    const char *alg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "alg"));
    const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "kid"));
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "sig"));
    if (!json_uint(cJSON_GetObjectItemCaseSensitive(h, "v"), 1e15, &v) || v != 1)
        why = "lume_sig.v: expected 1 (the only envelope version)";
    else if (!alg)
        why = "lume_sig.alg: missing or not a string";
    else if (!kid)
        why = "lume_sig.kid: missing or not a string";
    else if (!json_uint(cJSON_GetObjectItemCaseSensitive(h, "seq"), (double)SEQ_MAX, &seq) ||
             seq == 0)
        why = "lume_sig.seq: expected a whole number from 1 to 999999999999999";
    else if (!json_uint(cJSON_GetObjectItemCaseSensitive(h, "ts"), 9e15, &ts))
        why = "lume_sig.ts: expected a whole number of milliseconds";
    else if (!s || strlen(s) >= LUME_SIG_B64_MAX)
        why = "lume_sig.sig: missing, not a string, or too long for a signature";
    if (why)
        goto bad;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "payload");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(root, "payload_b64");
    if (!!text == !!b64 || (text && !cJSON_IsString(text)) || (b64 && !cJSON_IsString(b64))) {
        why = "the envelope needs exactly one of \"payload\" (a string) or \"payload_b64\"";
        goto bad;
    }
    /* everything m points to lives in one block: alg, kid, payload */
    size_t plen = text ? strlen(text->valuestring) : strlen(b64->valuestring);
    char *blk = malloc(strlen(alg) + strlen(kid) + plen + 3);
    if (!blk) {
        why = "out of memory";
        goto bad;
    }
    char *a = blk, *k = a + strlen(alg) + 1, *p = k + strlen(kid) + 1;
    strcpy(a, alg);
    strcpy(k, kid);
    size_t n = plen;
    if (text) {
        memcpy(p, text->valuestring, plen);
    } else if (mbedtls_base64_decode((unsigned char *)p, plen + 1, &n,
                                     (unsigned char *)b64->valuestring, plen) != 0) {
        free(blk);
        why = "payload_b64: not valid base64";
        goto bad;
    }
    strcpy(sig, s);
    m->alg = a;
    m->key_id = k;
    m->seq = seq;
    m->ts_ms = (int64_t)ts;
    m->payload = p;
    m->len = n;
    *hold = blk;
    cJSON_Delete(root);
    return 0;
bad:
    lume_set_err(err, "malformed: %s", why);
    cJSON_Delete(root);
    return -EINVAL;
}

/* ---- checking ---------------------------------------------------------------------- */

lume_msgverify *lume_msgverify_open(const char *key_file, char **err)
{
    lume_msgverify *v = calloc(1, sizeof *v);
    if (!v) {
        lume_set_err(err, "out of memory");
        return NULL;
    }
    if (is_pem(key_file)) {
        v->k.alg = LUME_MSGSIG_ECDSA;
        if (!(v->k.ring = lume_keyring_load(&key_file, 1, err)))
            goto fail;
        memcpy(v->k.id, lume_keyring_key_id(v->k.ring, 0), sizeof v->k.id);
    } else {
        v->k.alg = LUME_MSGSIG_HMAC;
        if (read_secret("--key", key_file, v->k.secret, &v->k.secret_len, err) < 0)
            goto fail;
        hmac_key_id(v->k.secret, v->k.secret_len, v->k.id);
    }
    return v;
fail:
    lume_msgverify_free(v);
    return NULL;
}

void lume_msgverify_free(lume_msgverify *v)
{
    if (v)
        key_free(&v->k);
    free(v);
}

const char *lume_msgverify_alg(const lume_msgverify *v) { return v->k.alg; }
const char *lume_msgverify_key_id(const lume_msgverify *v) { return v->k.id; }

int lume_msgverify_check(const lume_msgverify *v, const lume_msgsig *m, const char *sig,
                         char **err)
{
    char *bytes = NULL, *e = NULL;
    size_t len = 0;
    int r = lume_msgsig_encode(m, &bytes, &len, &e);
    if (r) {
        lume_set_err(err, "malformed: %s", e ? e : "cannot encode");
        free(e);
        return r == -ENOMEM ? r : -EINVAL;
    }
    if (strcmp(m->alg, v->k.alg) || strcmp(m->key_id, v->k.id)) {
        lume_set_err(err, "wrong key: signed with %s key %s, --key is %s key %s", m->alg,
                     m->key_id, v->k.alg, v->k.id);
        free(bytes);
        return -ENOKEY;
    }
    if (v->k.ring) {
        r = lume_keyring_verify_with(v->k.ring, v->k.id, bytes, len, sig, &e);
        if (r == -EINVAL)
            lume_set_err(err, "malformed: %s", e ? e : "bad signature encoding");
        else if (r)
            lume_set_err(err, "bad signature: %s", e ? e : "does not verify");
        free(e);
        free(bytes);
        return r == 0 ? 0 : r == -EINVAL ? -EINVAL : -EBADMSG;
    }
    unsigned char want[32], got[40];
    size_t n = 0;
    hmac(v->k.secret, v->k.secret_len, bytes, len, want);
    free(bytes);
    if (!sig || mbedtls_base64_decode(got, sizeof got, &n, (const unsigned char *)sig,
                                      strlen(sig)) != 0 || n != 32) {
        lume_set_err(err, "malformed: the signature is not the base64 of a 32-byte HMAC-SHA256");
        return -EINVAL;
    }
    unsigned char diff = 0;
    for (int i = 0; i < 32; i++)
        diff |= (unsigned char)(want[i] ^ got[i]);
    if (diff) {
        lume_set_err(err, "bad signature: the HMAC-SHA256 does not match (the message was "
                     "changed after signing)");
        return -EBADMSG;
    }
    return 0;
}
