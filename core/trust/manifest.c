/* core/trust/manifest.c — see manifest.h.
 *
 * Why a line-oriented text and not JSON: every value is checked to hold no
 * newline (nor any control character), the fields come in one fixed order,
 * each exactly once, with a fixed name, so the bytes are unambiguous and
 * any language can make them with string concatenation — no canonical-JSON
 * rules (key order, number formatting, escapes) to get exactly right.
 *
 * Invariants:
 *  1. Two different manifests never encode to the same bytes: fields are
 *     checked (lume_manifest_check) before they are encoded, and no value
 *     can contain '\n', so each line is one field.
 *  2. The device never trusts what a bundle says about itself without the
 *     signature: lume_manifest_from_bundle only collects fields, the caller
 *     compares name and target with its own identity, and
 *     lume_manifest_verify checks the signature over all of them. Refusing
 *     on an unverified field (a stale seq, a foreign target) is always safe;
 *     accepting needs the signature.
 *  3. The floor's seq never goes down. A rollback can bring back older
 *     bytes (it moves active_seq and the sha256, not seq), and each
 *     rollback needs a seq above every rollback activated before, so a
 *     rollback is accepted once and cannot be replayed later.
 *  4. The floor advances only when a bundle is activated (its soak passed),
 *     never at verification: a bundle that fails to load, its self-test, its
 *     dry run or its soak leaves the floor where it was. */
#include "manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"

static bool is_hex_lower(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* a device id or group name: 1..128 of letters, digits and -._: */
static bool valid_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.' || s[i] == '_' ||
              s[i] == ':'))
            return false;
    return true;
}

static bool valid_version(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > LUME_MANIFEST_VERSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool valid_target(const char *t)
{
    if (!t || !*t)
        return true;
    if (!strncmp(t, "device:", 7))
        return valid_ident(t + 7);
    if (!strncmp(t, "group:", 6))
        return valid_ident(t + 6);
    return false;
}

int lume_manifest_check(const lume_manifest *m, char **err)
{
    if (!valid_name(m->name)) {
        lume_set_err(err, "manifest name '%s': expected a script name (letters, digits, _ and -, "
                     "at most 64)", m->name ? m->name : "(none)");
        return -EINVAL;
    }
    if (!valid_version(m->version)) {
        lume_set_err(err, "manifest version '%.80s': expected 1 to %d bytes without control "
                     "characters", m->version ? m->version : "(none)",
                LUME_MANIFEST_VERSION_MAX);
        return -EINVAL;
    }
    if (!is_hex_lower(m->sha256, 64)) {
        lume_set_err(err, "manifest sha256 '%.80s': expected 64 lower-case hex digits",
                m->sha256 ? m->sha256 : "(none)");
        return -EINVAL;
    }
    if (m->seq < 1 || m->seq > LUME_SEQ_MAX) {
        lume_set_err(err, "manifest seq %" PRIu64 ": expected a whole number from 1 to %llu",
                m->seq, (unsigned long long)LUME_SEQ_MAX);
        return -EINVAL;
    }
    if (!valid_target(m->target)) {
        lume_set_err(err, "manifest target '%.160s': expected device:<id> or group:<name> (1 to "
                     "128 of letters, digits and -._:), or none", m->target);
        return -EINVAL;
    }
    if (!lume_key_id_valid(m->key_id)) {
        lume_set_err(err, "manifest key id '%.80s': expected %d lower-case hex digits",
                m->key_id ? m->key_id : "(none)", LUME_KEY_ID_LEN);
        return -EINVAL;
    }
    return 0;
}

int lume_manifest_encode(const lume_manifest *m, char **out, size_t *len, char **err)
{
    *out = NULL;
    int rc = lume_manifest_check(m, err);
    if (rc)
        return rc;
    char *s = lume_strdupf(LUME_MANIFEST_FORMAT "\n"
                           "name=%s\n"
                           "version=%s\n"
                           "sha256=%s\n"
                           "seq=%" PRIu64 "\n"
                           "target=%s\n"
                           "rollback=%d\n"
                           "key=%s\n",
                           m->name, m->version, m->sha256, m->seq, m->target ? m->target : "",
                           m->rollback ? 1 : 0, m->key_id);
    if (!s) {
        lume_set_err(err, "manifest: out of memory");
        return -ENOMEM;
    }
    *out = s;
    if (len)
        *len = strlen(s);
    return 0;
}

int lume_manifest_sign(const lume_manifest *m, const char *priv_path, char **sig_b64,
                       char **err)
{
    *sig_b64 = NULL;
    char id[LUME_KEY_ID_LEN + 1];
    int rc = lume_key_id_file(priv_path, id, err);
    if (rc)
        return rc;
    if (!m->key_id || strcmp(id, m->key_id)) {
        lume_set_err(err, "%s: its key id is %s, the manifest names key %s", priv_path, id,
                m->key_id ? m->key_id : "(none)");
        return -EINVAL;
    }
    char *bytes = NULL;
    size_t n = 0;
    rc = lume_manifest_encode(m, &bytes, &n, err);
    if (rc)
        return rc;
    rc = lume_ecdsa_sign(priv_path, bytes, n, sig_b64, err);
    free(bytes);
    return rc;
}

int lume_manifest_verify(const lume_manifest *m, const char *sig_b64, const lume_keyring *k,
                         char **err)
{
    char *bytes = NULL;
    size_t n = 0;
    int rc = lume_manifest_encode(m, &bytes, &n, err);
    if (rc)
        return rc;
    rc = lume_keyring_verify_with(k, m->key_id, bytes, n, sig_b64, err);
    free(bytes);
    return rc;
}

/* ---- bundles -------------------------------------------------------------------- */

int lume_manifest_from_bundle(const cJSON *bundle, lume_manifest *m, const char **sig,
                              char **err)
{
    memset(m, 0, sizeof *m);
    *sig = NULL;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(bundle, "sig");
    if (!s)
        return -ENOENT;
    if (!cJSON_IsString(s)) {
        lume_set_err(err, "sig must be a base64 string");
        return -EINVAL;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(bundle, "name");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(bundle, "seq");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(bundle, "key_id");
    if (!name && !seq && !key) {
        lume_set_err(err, "old-format bundle: its sig covers the script's bytes only, not a "
                     "manifest (name, version, seq, target), so it could be replayed; "
                     "this lume refuses it. Re-sign it with this lume: lume push ... --key "
                     "KEY, or lume sign FILE --key KEY --name N --version V (docs/bundles.md)");
        return -EPROTO;
    }
    static const char *const need[] = {"name", "version", "sha256", "seq", "key_id"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!cJSON_GetObjectItemCaseSensitive(bundle, need[i])) {
            lume_set_err(err, "signed bundle has no %s (a signed bundle carries name, version, "
                         "sha256, seq and key_id next to its sig)", need[i]);
            return -EINVAL;
        }
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(bundle, "version");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(bundle, "sha256");
    const cJSON *target = cJSON_GetObjectItemCaseSensitive(bundle, "target");
    const cJSON *rollback = cJSON_GetObjectItemCaseSensitive(bundle, "rollback");
    if (!cJSON_IsString(name)) {
        lume_set_err(err, "name must be a string");
        return -EINVAL;
    }
    if (!cJSON_IsString(version)) {
        lume_set_err(err, "a signed bundle's version must be a string (the signature covers its "
                     "exact text)");
        return -EINVAL;
    }
    if (!cJSON_IsString(sha)) {
        lume_set_err(err, "sha256 must be a string");
        return -EINVAL;
    }
    if (!cJSON_IsNumber(seq) || seq->valuedouble != floor(seq->valuedouble) ||
        seq->valuedouble < 1 || seq->valuedouble > (double)LUME_SEQ_MAX) {
        lume_set_err(err, "seq must be a whole number from 1 to %llu",
                (unsigned long long)LUME_SEQ_MAX);
        return -EINVAL;
    }
    if (!cJSON_IsString(key)) {
        lume_set_err(err, "key_id must be a string");
        return -EINVAL;
    }
    if (target && !cJSON_IsString(target) && !cJSON_IsNull(target)) {
        lume_set_err(err, "target must be a string (device:<id> or group:<name>)");
        return -EINVAL;
    }
    if (rollback && !cJSON_IsBool(rollback)) {
        lume_set_err(err, "rollback must be true or false");
        return -EINVAL;
    }
    m->name = name->valuestring;
    m->version = version->valuestring;
    m->sha256 = sha->valuestring;
    m->seq = (uint64_t)seq->valuedouble;
    m->target = cJSON_IsString(target) ? target->valuestring : NULL;
    m->rollback = cJSON_IsTrue(rollback);
    m->key_id = key->valuestring;
    int rc = lume_manifest_check(m, err);
    if (rc)
        return rc;
    *sig = s->valuestring;
    return 0;
}

int lume_manifest_to_bundle(const lume_manifest *m, const char *sig_b64, cJSON *bundle)
{
    bool ok = true;
    if (!cJSON_GetObjectItemCaseSensitive(bundle, "version"))
        ok &= cJSON_AddStringToObject(bundle, "version", m->version) != NULL;
    if (!cJSON_GetObjectItemCaseSensitive(bundle, "sha256"))
        ok &= cJSON_AddStringToObject(bundle, "sha256", m->sha256) != NULL;
    ok &= cJSON_AddStringToObject(bundle, "name", m->name) != NULL;
    ok &= cJSON_AddNumberToObject(bundle, "seq", (double)m->seq) != NULL;
    if (m->target && *m->target)
        ok &= cJSON_AddStringToObject(bundle, "target", m->target) != NULL;
    ok &= cJSON_AddBoolToObject(bundle, "rollback", m->rollback) != NULL;
    ok &= cJSON_AddStringToObject(bundle, "key_id", m->key_id) != NULL;
    ok &= cJSON_AddStringToObject(bundle, "sig", sig_b64) != NULL;
    return ok ? 0 : -ENOMEM;
}

int lume_manifest_target_check(const char *target, const char *device_id, const char *groups,
                               char **err)
{
    if (!target || !*target)
        return 0;
    if (!strncmp(target, "device:", 7)) {
        if (device_id && !strcmp(target + 7, device_id))
            return 0;
        lume_set_err(err, "bundle is for another device: it targets %s, this device is %s", target,
                device_id ? device_id : "(no id)");
        return -EACCES;
    }
    if (!strncmp(target, "group:", 6)) {
        const char *g = target + 6;
        size_t n = strlen(g);
        for (const char *p = groups; p && *p;) {
            size_t k = strcspn(p, ",");
            if (k == n && !strncmp(p, g, n))
                return 0;
            p += k;
            if (*p == ',')
                p++;
        }
        lume_set_err(err, "bundle is for another group: it targets %s, this device (%s) is in %s%s",
                target, device_id ? device_id : "?", groups && *groups ? "groups " : "no group",
                groups && *groups ? groups : " (twin.groups)");
        return -EACCES;
    }
    lume_set_err(err, "bundle has an unknown target '%s' (expected device:<id> or group:<name>)",
            target);
    return -EACCES;
}

/* ---- the floor ------------------------------------------------------------------------ */

int lume_seq_floor_check(const lume_seq_floor *f, const lume_manifest *m, bool pending_live,
                         const char *name, char **err)
{
    /* the bundle active now, delivered again (a restart, a re-sent document) */
    if (f->seq && m->seq == f->active_seq && !strcmp(m->sha256, f->sha256))
        return 0;
    if (pending_live && f->pending.set && m->seq == f->pending.seq &&
        !strcmp(m->sha256, f->pending.sha256))
        return 0;
    if (!m->rollback) {
        if (m->seq == f->seq || (pending_live && f->pending.set && m->seq == f->pending.seq)) {
            bool act = m->seq == f->seq;
            lume_set_err(err, "seq %" PRIu64 " was already used for other bytes (version %s, sha256 "
                         "%.12s...); this bundle has sha256 %.12s...: sign it with a new seq",
                    m->seq, act ? f->version : f->pending.version,
                    act ? f->sha256 : f->pending.sha256, m->sha256);
            return -ESTALE;
        }
        if (m->seq < f->seq) {
            lume_set_err(err, "replayed or stale bundle: seq %" PRIu64 " is below seq %" PRIu64
                         ", the highest this device activated for %s (version %s runs now); a "
                         "deliberate downgrade must be signed as a rollback (lume push "
                         "--rollback)", m->seq, f->seq, name, f->version);
            return -ESTALE;
        }
        if (pending_live && f->pending.set && m->seq < f->pending.seq) {
            lume_set_err(err, "replayed or stale bundle: seq %" PRIu64 " is below seq %" PRIu64
                         " of version %s, which is soaking now", m->seq, f->pending.seq,
                    f->pending.version);
            return -ESTALE;
        }
        return 0;
    }
    uint64_t used = f->rollback_seq;
    if (pending_live && f->pending.set && f->pending.rollback && f->pending.seq > used)
        used = f->pending.seq;
    if (m->seq <= used) {
        lume_set_err(err, "replayed rollback: a rollback needs a seq above %" PRIu64 ", the highest "
                     "rollback seq this device accepted for %s, and this one has seq %" PRIu64
                     "; sign a new rollback (lume push --rollback)", used, name, m->seq);
        return -ESTALE;
    }
    if (m->seq <= f->seq) {
        lume_set_err(err, "signed rollback accepted: seq %" PRIu64 " is below seq %" PRIu64
                     " (version %s), the highest activated for %s; version %s goes in",
                m->seq, f->seq, f->version, name, m->version);
        return 1;
    }
    lume_set_err(err, "signed rollback accepted: version %s (seq %" PRIu64 ") replaces version %s",
            m->version, m->seq, f->seq ? f->version : "(none)");
    return 1;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void lume_seq_floor_set_pending(lume_seq_floor *f, const lume_manifest *m)
{
    f->pending.set = true;
    f->pending.rollback = m->rollback;
    f->pending.seq = m->seq;
    copy_str(f->pending.sha256, sizeof f->pending.sha256, m->sha256);
    copy_str(f->pending.version, sizeof f->pending.version, m->version);
}

bool lume_seq_floor_commit(lume_seq_floor *f, const char *version, const char *sha256)
{
    bool match = f->pending.set && version && sha256 && !strcmp(f->pending.version, version) &&
                 !strcmp(f->pending.sha256, sha256);
    if (match) {
        if (f->pending.seq > f->seq)
            f->seq = f->pending.seq;
        f->active_seq = f->pending.seq;
        copy_str(f->sha256, sizeof f->sha256, f->pending.sha256);
        copy_str(f->version, sizeof f->version, f->pending.version);
        if (f->pending.rollback && f->pending.seq > f->rollback_seq)
            f->rollback_seq = f->pending.seq;
        lume_check(f->seq >= f->active_seq && f->seq >= f->rollback_seq,
                   "invariant 3: the floor's seq never goes down (a rollback moves active_seq)");
    }
    memset(&f->pending, 0, sizeof f->pending);
    return match;
}

char *lume_seq_floor_encode(const lume_seq_floor *f)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "seq", (double)f->seq);
    cJSON_AddNumberToObject(o, "active_seq", (double)f->active_seq);
    cJSON_AddStringToObject(o, "sha256", f->sha256);
    cJSON_AddStringToObject(o, "version", f->version);
    cJSON_AddNumberToObject(o, "rollback_seq", (double)f->rollback_seq);
    if (f->pending.set) {
        cJSON *p = cJSON_AddObjectToObject(o, "pending");
        cJSON_AddNumberToObject(p, "seq", (double)f->pending.seq);
        cJSON_AddStringToObject(p, "sha256", f->pending.sha256);
        cJSON_AddStringToObject(p, "version", f->pending.version);
        cJSON_AddBoolToObject(p, "rollback", f->pending.rollback);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static bool get_u64(const cJSON *o, const char *k, uint64_t *v)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > (double)LUME_SEQ_MAX ||
        n->valuedouble != floor(n->valuedouble))
        return false;
    *v = (uint64_t)n->valuedouble;
    return true;
}

static bool get_str(const cJSON *o, const char *k, char *dst, size_t cap)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(s) || strlen(s->valuestring) >= cap)
        return false;
    memcpy(dst, s->valuestring, strlen(s->valuestring) + 1);
    return true;
}

int lume_seq_floor_decode(const void *json, size_t len, lume_seq_floor *f)
{
    memset(f, 0, sizeof *f);
    cJSON *o = cJSON_ParseWithLength(json, len);
    bool ok = cJSON_IsObject(o) && get_u64(o, "seq", &f->seq) &&
              get_u64(o, "active_seq", &f->active_seq) &&
              get_str(o, "sha256", f->sha256, sizeof f->sha256) &&
              get_str(o, "version", f->version, sizeof f->version) &&
              get_u64(o, "rollback_seq", &f->rollback_seq);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pending");
    if (ok && p) {
        const cJSON *rb = cJSON_GetObjectItemCaseSensitive(p, "rollback");
        ok = get_u64(p, "seq", &f->pending.seq) &&
             get_str(p, "sha256", f->pending.sha256, sizeof f->pending.sha256) &&
             get_str(p, "version", f->pending.version, sizeof f->pending.version) &&
             cJSON_IsBool(rb);
        f->pending.set = ok;
        f->pending.rollback = cJSON_IsTrue(rb);
    }
    cJSON_Delete(o);
    if (!ok) {
        memset(f, 0, sizeof *f);
        return -EINVAL;
    }
    return 0;
}
