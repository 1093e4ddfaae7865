/* core/hub/hub_azure.c — the `azure` dialect: Azure IoT Hub's device MQTT API
 * (docs/azure.md; Microsoft's "Communicate with an IoT hub using the MQTT
 * protocol", api-version 2021-04-12).
 *
 *   connect     client id {device}[/{module}], user name
 *               {hub}/{device}[/{module}]/?api-version=2021-04-12[&model-id=..],
 *               password a SAS token (or none with an X.509 client certificate)
 *   leave       devices/{device}/messages/events/{property bag}      telemetry
 *               $iothub/twin/GET/?$rid={n}                           whole twin
 *               $iothub/twin/PATCH/properties/reported/?$rid={n}     reported patch
 *               $iothub/methods/res/{status}/?$rid={rid}             method answer
 *   arrive      $iothub/twin/res/{status}/?$rid={n}[&$version=..]    TWIN_RESPONSE
 *               $iothub/twin/PATCH/properties/desired/?$version={v}  DESIRED_PATCH
 *               $iothub/methods/POST/{name}/?$rid={rid}              METHOD
 *               devices/{device}/messages/devicebound/{bag}          C2D
 *
 * The twin has one desired document per device: one layer, "device". It
 * arrives whole in the answer to a GET (after every connect, and after a
 * gap in the patches' versions) and as versioned merge patches in between;
 * runtime/twin_host.c applies both.
 *
 * SAS tokens (made here, with mbedtls):
 *   sr  = urlencode("{hub}/devices/{device}[/modules/{module}]")
 *   sig = urlencode(base64(HMAC-SHA256(base64decode(key), sr + "\n" + se)))
 *   SharedAccessSignature sr={sr}&sig={sig}&se={se}
 * A token lives net.sas_ttl_s; lume_hub_password() makes a fresh one for
 * each CONNECT and says when to reconnect (at 80 % of its life) so that the
 * hub never drops a connection for an expired token.
 *
 * Invariants:
 *   1. No key material is logged; a bad key is named by where it came from.
 *   2. Request ids are this dialect's own, increasing, never 0.
 *   3. Topics built here fit LUME_HUB_TOPIC_MAX or are refused (0 / error),
 *      never truncated. */
#include "hub.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>

#include "dps.h"
#include "log.h"

#define API_VERSION "2021-04-12"
#define SAS_MAX 1024
#define REPORTED_MAX (32 * 1024)
#define REPORTED_DEPTH 10 /* objects below the reported section */
#define REPORTED_STRING_MAX 4096
#define REPORTED_KEY_MAX 1024

typedef struct azure_hub {
    char     host[256];
    char     device[129];
    char     module[129];
    char     client_id[260];
    char     username[LUME_HUB_TOPIC_MAX + 256];
    char     resource[640];
    char    *key_b64;            /* NULL: X.509 */
    char     token[SAS_MAX];
    char     events[LUME_HUB_TOPIC_MAX]; /* "devices/{d}[/modules/{m}]/messages/events/" */
    char     devicebound[LUME_HUB_TOPIC_MAX];
    const char *transport;       /* "mqtt" | "ws" */
    bool     dps;                /* host and device come from DPS */
    size_t   bound_sub;          /* index of the devicebound subscription, or SIZE_MAX */
    uint64_t next_rid;
} azure_hub;

/* ---- helpers shared with tests -------------------------------------------- */


int lume_hub_azure_sas(const char *resource, const char *key_b64, int64_t expiry, char *buf,
                       size_t cap)
{
    unsigned char key[128], mac[32];
    size_t klen = 0;
    if (!key_b64 || !*key_b64 ||
        mbedtls_base64_decode(key, sizeof key, &klen, (const unsigned char *)key_b64,
                              strlen(key_b64)) != 0 || klen == 0)
        return -EINVAL;
    char sr[640 * 3], tosign[640 * 3 + 32];
    if (!lume_hub_urlencode(resource, strlen(resource), sr, sizeof sr))
        return -ENOSPC;
    int n = snprintf(tosign, sizeof tosign, "%s\n%lld", sr, (long long)expiry);
    if (n < 0 || (size_t)n >= sizeof tosign)
        return -ENOSPC;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    int r = mbedtls_md_hmac(md, key, klen, (const unsigned char *)tosign, (size_t)n, mac);
    memset(key, 0, sizeof key);
    if (r != 0)
        return -EINVAL;
    unsigned char b64[64];
    size_t blen = 0;
    if (mbedtls_base64_encode(b64, sizeof b64, &blen, mac, sizeof mac) != 0)
        return -ENOSPC;
    char sig[200];
    if (!lume_hub_urlencode((const char *)b64, blen, sig, sizeof sig))
        return -ENOSPC;
    n = snprintf(buf, cap, "SharedAccessSignature sr=%s&sig=%s&se=%lld", sr, sig,
                 (long long)expiry);
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    return n;
}

/* ---- opening ------------------------------------------------------------- */

/* The value of `name=` in a connection string ("A=1;B=2"), or "" */
static void cs_get(const char *cs, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    buf[0] = 0;
    for (const char *p = cs; p && *p; p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL) {
        while (*p == ' ')
            p++;
        if (!strncmp(p, name, nl) && p[nl] == '=') {
            const char *v = p + nl + 1, *end = strchr(v, ';');
            size_t n = end ? (size_t)(end - v) : strlen(v);
            if (n >= cap)
                n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = 0;
            return;
        }
    }
}

char *lume_hub_read_key_file(const char *key, const char *path, char **err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        lume_set_err(err, "%s: cannot open %s: %s", key, path, strerror(errno));
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *s = buf;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
        s[--l] = 0;
    if (!l) {
        lume_set_err(err, "%s: %s is empty (expected the base64 device key)", key, path);
        return NULL;
    }
    char *k = strdup(s);
    memset(buf, 0, sizeof buf);
    if (!k)
        lume_set_err(err, "out of memory");
    return k;
}

static int identity(lume_hub *h, char **err);

static int a_open(lume_hub *h, char **err)
{
    const lume_config *c = h->cfg;
    azure_hub *a = calloc(1, sizeof *a);
    if (!a)
        goto oom;
    h->priv = a;
    a->next_rid = 1;
    a->bound_sub = SIZE_MAX;
    const char *cs = c->net.connection_string;
    char key[1024] = "";
    if (cs) {
        cs_get(cs, "HostName", a->host, sizeof a->host);
        cs_get(cs, "DeviceId", a->device, sizeof a->device);
        cs_get(cs, "ModuleId", a->module, sizeof a->module);
        cs_get(cs, "SharedAccessKey", key, sizeof key);
        if (!a->host[0] || !a->device[0]) {
            lume_set_err(err, "net.connection_string: expected \"HostName=<hub>.azure-devices.net;"
                         "DeviceId=<id>;SharedAccessKey=<base64 key>\", %s is missing",
                         !a->host[0] ? "HostName" : "DeviceId");
            return -EINVAL;
        }
    }
    if (!a->host[0] && c->net.hub_host)
        snprintf(a->host, sizeof a->host, "%s", c->net.hub_host);
    if (!a->host[0] && c->net.url) { /* the URL's host */
        const char *p = strstr(c->net.url, "://");
        p = p ? p + 3 : c->net.url;
        size_t n = strcspn(p, ":/");
        snprintf(a->host, sizeof a->host, "%.*s", (int)(n < 255 ? n : 255), p);
    }
    if (!a->device[0])
        snprintf(a->device, sizeof a->device, "%s", c->device_id);
    if (!a->module[0] && c->net.module_id)
        snprintf(a->module, sizeof a->module, "%s", c->net.module_id);
    if (key[0])
        a->key_b64 = strdup(key);
    else if (c->net.sas_key)
        a->key_b64 = strdup(c->net.sas_key);
    else if (c->net.sas_key_file &&
             !(a->key_b64 = lume_hub_read_key_file("net.sas_key_file", c->net.sas_key_file, err)))
        return -EINVAL;
    if (!a->key_b64 && lume_dps_configured(c)) {
        /* the hub and the device id come from DPS (lume_hub_azure_assign);
         * the key is the enrollment's, or derived from the group's */
        a->dps = true;
        int r = lume_dps_device_key(c, key, sizeof key, err);
        if (r < 0)
            return r;
        if (r == 0)
            a->key_b64 = strdup(key);
        snprintf(a->device, sizeof a->device, "%s", lume_dps_registration_id(c));
        snprintf(a->host, sizeof a->host, "%s", "unassigned.invalid");
    }
    memset(key, 0, sizeof key);
    if (a->key_b64) {
        char probe[SAS_MAX];
        if (lume_hub_azure_sas("x", a->key_b64, 1, probe, sizeof probe) < 0) {
            lume_set_err(err, "%s: the shared access key is not base64",
                         cs && strstr(cs, "SharedAccessKey=") ? "net.connection_string"
                         : c->net.sas_key ? "net.sas_key" : "net.sas_key_file");
            return -EINVAL;
        }
    } else if (!c->net.cert_file) {
        lume_set_err(err, "net.dialect \"azure\" needs credentials: net.connection_string, "
                     "net.sas_key or net.sas_key_file (SAS), or net.cert_file and "
                     "net.key_file (X.509)");
        return -EINVAL;
    }
    if (!a->host[0]) {
        lume_set_err(err, "net.dialect \"azure\": no hub host (net.hub_host, the connection "
                     "string's HostName, or net.url)");
        return -EINVAL;
    }
    a->transport = c->net.url && !strncmp(c->net.url, "ws", 2) ? "ws" : "mqtt";
    if (identity(h, err) < 0)
        return -EINVAL;
    if (lume_hub_add_layer(h, "device", "$iothub/twin/PATCH/properties/desired/", false))
        goto oom;
    char bound[LUME_HUB_TOPIC_MAX + 2];
    snprintf(bound, sizeof bound, "%s#", a->devicebound);
    if (lume_hub_add_subscription(h, "$iothub/twin/res/#", 0) ||
        lume_hub_add_subscription(h, "$iothub/twin/PATCH/properties/desired/#", 0) ||
        lume_hub_add_subscription(h, "$iothub/methods/POST/#", 0))
        goto oom;
    if (!a->module[0]) {
        a->bound_sub = h->nsubs;
        if (lume_hub_add_subscription(h, bound, 1))
            goto oom;
    }
    return 0;
oom:
    lume_set_err(err, "out of memory");
    return -ENOMEM;
}

/* Client id, SAS resource, topics and user name from host, device and
 * module (at open, and again for each DPS assignment). 0, or -EINVAL. */
static int identity(lume_hub *h, char **err)
{
    const lume_config *c = h->cfg;
    azure_hub *a = h->priv;
    const char *dev = a->device, *mod = a->module;
    if (*mod) {
        snprintf(a->client_id, sizeof a->client_id, "%s/%s", dev, mod);
        snprintf(a->resource, sizeof a->resource, "%s/devices/%s/modules/%s", a->host, dev, mod);
        snprintf(a->events, sizeof a->events, "devices/%s/modules/%s/messages/events/", dev, mod);
    } else {
        snprintf(a->client_id, sizeof a->client_id, "%s", dev);
        snprintf(a->resource, sizeof a->resource, "%s/devices/%s", a->host, dev);
        snprintf(a->events, sizeof a->events, "devices/%s/messages/events/", dev);
    }
    snprintf(a->devicebound, sizeof a->devicebound, "devices/%s/messages/devicebound/", dev);
    int n = snprintf(a->username, sizeof a->username, "%s/%s/?api-version=" API_VERSION,
                     a->host, a->client_id);
    if (c->net.model_id) {
        char enc[LUME_HUB_TOPIC_MAX];
        if (!lume_hub_urlencode(c->net.model_id, strlen(c->net.model_id), enc, sizeof enc)) {
            lume_set_err(err, "net.model_id: too long");
            return -EINVAL;
        }
        n += snprintf(a->username + n, sizeof a->username - (size_t)n, "&model-id=%s", enc);
    }
    if ((size_t)n >= sizeof a->username) {
        lume_set_err(err, "azure: the user name for %s is too long", a->client_id);
        return -EINVAL;
    }
    if (a->bound_sub < h->nsubs) { /* a new device id: its cloud-to-device topic */
        char *f = lume_strdupf("%s#", a->devicebound);
        if (!f) {
            lume_set_err(err, "out of memory");
            return -ENOMEM;
        }
        free(h->subs[a->bound_sub]);
        h->subs[a->bound_sub] = f;
    }
    return 0;
}

int lume_hub_azure_assign(lume_hub *h, const char *host, const char *device, char **err)
{
    if (h->ops != &lume_hub_azure) {
        lume_set_err(err, "a hub assignment needs the azure dialect, not %s", h->ops->name);
        return -EINVAL;
    }
    azure_hub *a = h->priv;
    if (!host[0] || strlen(host) >= sizeof a->host || !device[0] ||
        strlen(device) >= sizeof a->device) {
        lume_set_err(err, "azure: assigned hub \"%.100s\" or device id \"%.100s\" is empty "
                     "or too long", host, device);
        return -EINVAL;
    }
    snprintf(a->host, sizeof a->host, "%s", host);
    snprintf(a->device, sizeof a->device, "%s", device);
    return identity(h, err);
}

static void a_close(lume_hub *h)
{
    azure_hub *a = h->priv;
    if (a && a->key_b64) {
        memset(a->key_b64, 0, strlen(a->key_b64));
        free(a->key_b64);
    }
    if (a)
        memset(a->token, 0, sizeof a->token);
    free(a);
}

static const char *a_password(lume_hub *h, int64_t *renew_ms)
{
    azure_hub *a = h->priv;
    if (!a->key_b64)
        return NULL; /* X.509 */
    int ttl = h->cfg->net.sas_ttl_s > 0 ? h->cfg->net.sas_ttl_s : 900;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t se = (int64_t)now.tv_sec + ttl; /* whole seconds: it may live up to 1 s less */
    if (lume_hub_azure_sas(a->resource, a->key_b64, se, a->token, sizeof a->token) < 0)
        return NULL;
    int64_t left_ms = se * 1000 - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    *renew_ms = left_ms * 4 / 5; /* at 80 % of the life it really has */
    return a->token;
}

static int a_session(lume_hub *h, lume_mqtt_opts *o, char **err)
{
    azure_hub *a = h->priv;
    int64_t renew;
    o->client_id = a->client_id;
    o->username = a->username;
    o->password = a_password(h, &renew);
    if (a->key_b64 && !o->password) {
        lume_set_err(err, "azure: cannot make a SAS token for %s", a->resource);
        return -EINVAL;
    }
    o->status_topic = NULL; /* the hub has no retained status; no last will */
    return 0;
}

/* The value of `name` in a query string ("$rid=3&$version=7"), into buf. */
static bool query_get(const char *q, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t n = strcspn(v, "&");
            if (n >= cap)
                n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = 0;
            return true;
        }
    return false;
}

static void a_classify(const lume_hub *h, const char *topic, lume_hub_in *in)
{
    const azure_hub *a = h->priv;
    char v[32];
    if (!strncmp(topic, "$iothub/twin/res/", 17)) {
        const char *q = strchr(topic + 17, '?');
        in->kind = LUME_HUB_IN_TWIN_RESPONSE;
        in->status = atoi(topic + 17);
        if (q) {
            query_get(q + 1, "$rid", in->rid, sizeof in->rid);
            if (query_get(q + 1, "$version", v, sizeof v))
                in->version = strtoll(v, NULL, 10);
        }
    } else if (!strncmp(topic, "$iothub/twin/PATCH/properties/desired/", 38)) {
        const char *q = strchr(topic + 38, '?');
        in->kind = LUME_HUB_IN_DESIRED_PATCH;
        in->layer = 0;
        if (q && query_get(q + 1, "$version", v, sizeof v))
            in->version = strtoll(v, NULL, 10);
    } else if (!strncmp(topic, "$iothub/methods/POST/", 21)) {
        const char *name = topic + 21, *end = strchr(name, '/');
        size_t n = end ? (size_t)(end - name) : strlen(name);
        in->kind = LUME_HUB_IN_METHOD;
        if (n >= sizeof in->name)
            n = sizeof in->name - 1;
        memcpy(in->name, name, n);
        in->name[n] = 0;
        const char *q = end ? strchr(end, '?') : NULL;
        if (q)
            query_get(q + 1, "$rid", in->rid, sizeof in->rid);
    } else if (!strncmp(topic, a->devicebound, strlen(a->devicebound))) {
        in->kind = LUME_HUB_IN_C2D;
        in->props = topic + strlen(a->devicebound);
    }
}

/* Append "&key=value" (both URL-encoded) at buf[*u]. false when it does not fit. */
static bool add_prop(char *buf, size_t cap, size_t *u, const char *k, size_t klen,
                     const char *val, size_t vlen)
{
    if (*u && *u + 1 < cap && buf[*u - 1] != '/')
        buf[(*u)++] = '&';
    size_t n = lume_hub_urlencode(k, klen, buf + *u, cap - *u);
    if (!n)
        return false;
    *u += n;
    if (*u + 2 >= cap)
        return false;
    buf[(*u)++] = '=';
    if (vlen) {
        n = lume_hub_urlencode(val, vlen, buf + *u, cap - *u);
        if (!n)
            return false;
        *u += n;
    }
    buf[*u] = 0;
    return true;
}

static size_t a_telemetry(const lume_hub *h, const char *route, size_t route_len,
                          const lume_hub_prop *props, size_t nprops, char *buf, size_t cap)
{
    const azure_hub *a = h->priv;
    size_t u = strlen(a->events);
    int n = snprintf(buf, cap, "%s$.ct=application%%2Fjson&$.ce=utf-8", a->events);
    if (n < 0 || (size_t)n >= cap)
        goto toolong;
    u = (size_t)n;
    if (!add_prop(buf, cap, &u, "route", 5, route, route_len) ||
        !add_prop(buf, cap, &u, "t", 1, a->transport, strlen(a->transport)))
        goto toolong;
    for (size_t i = 0; i < nprops; i++)
        if (!add_prop(buf, cap, &u, props[i].key, strlen(props[i].key), props[i].value,
                      strlen(props[i].value)))
            goto toolong;
    return u;
toolong:
    if (cap)
        buf[0] = 0;
    return 0;
}

/* A telemetry topic with key=value added at the end of its property bag
 * (the link's mode as the message leaves: lume-conn=intermittent). */
static size_t a_stamp(const lume_hub *h, const char *topic, const char *key, const char *value,
                      char *buf, size_t cap)
{
    const azure_hub *a = h->priv;
    size_t u = strlen(topic);
    if (strncmp(topic, a->events, strlen(a->events)) || u >= cap)
        return 0;
    memcpy(buf, topic, u + 1);
    if (!add_prop(buf, cap, &u, key, strlen(key), value, strlen(value))) {
        buf[0] = 0;
        return 0;
    }
    return u;
}

static int a_reported(lume_hub *h, lume_hub_out *out)
{
    azure_hub *a = h->priv;
    snprintf(out->rid, sizeof out->rid, "%llu", (unsigned long long)a->next_rid++);
    snprintf(out->topic, sizeof out->topic, "$iothub/twin/PATCH/properties/reported/?$rid=%s",
             out->rid);
    out->qos = 1;
    out->retain = false;
    out->state = false;
    return 0;
}

static int a_twin_get(lume_hub *h, lume_hub_out *out)
{
    azure_hub *a = h->priv;
    snprintf(out->rid, sizeof out->rid, "%llu", (unsigned long long)a->next_rid++);
    snprintf(out->topic, sizeof out->topic, "$iothub/twin/GET/?$rid=%s", out->rid);
    out->qos = 1;
    out->payload[0] = 0;
    return 0;
}

static size_t a_connected(lume_hub *h, lume_hub_out *out, size_t max)
{
    if (max < 1)
        return 0;
    a_twin_get(h, &out[0]);
    return 1;
}

static int a_method_response(lume_hub *h, int status, const char *rid, lume_hub_out *out)
{
    (void)h;
    int n = snprintf(out->topic, sizeof out->topic, "$iothub/methods/res/%d/?$rid=%s", status,
                     rid);
    snprintf(out->rid, sizeof out->rid, "%s", rid);
    return n > 0 && (size_t)n < sizeof out->topic ? 0 : -ENOSPC;
}

static int a_health(lume_hub *h, lume_hub_out *out)
{
    /* health travels as telemetry on its own route */
    size_t n = a_telemetry(h, "lume-health", 11, NULL, 0, out->topic, sizeof out->topic);
    out->qos = 0;
    return n ? 0 : -ENOSPC;
}

static int a_logs(lume_hub *h, lume_hub_out *out, bool recent)
{
    if (recent) /* no retained messages on the hub */
        return -ENOENT;
    /* log lines travel as telemetry too, on their own route, marked */
    const lume_hub_prop kind = {"lume-kind", "log"};
    size_t n = a_telemetry(h, "lume-log", 8, &kind, 1, out->topic, sizeof out->topic);
    out->qos = 0;
    return n ? 0 : -ENOSPC;
}

/* What the hub refuses in reported properties: a key with '.', '$', ' ' or a
 * control character, or over 1 KiB; a string value over 4 KiB; an object
 * more than REPORTED_DEPTH below the section (depth: o's). */
static int check_keys(const cJSON *o, int depth, char *path, size_t plen, size_t cap, char *why,
                      size_t wcap)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, o) {
        if (!e->string)
            continue;
        int n = snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", e->string);
        size_t l = n > 0 && (size_t)n < cap - plen ? plen + (size_t)n : plen;
        if (strlen(e->string) > REPORTED_KEY_MAX) {
            snprintf(why, wcap, "reported key \"%.40s...\" (at %.80s...) is %zu bytes long, over "
                     "the hub's %d", e->string, path, strlen(e->string), REPORTED_KEY_MAX);
            return -EINVAL;
        }
        if (cJSON_IsString(e) && strlen(e->valuestring) > REPORTED_STRING_MAX) {
            snprintf(why, wcap, "reported value at %s is a string of %zu bytes, over the hub's "
                     "4 KiB for a string", path, strlen(e->valuestring));
            return -EINVAL;
        }
        if (cJSON_IsObject(e) && depth + 1 > REPORTED_DEPTH) {
            snprintf(why, wcap, "reported object at %s is nested deeper than %d levels, the "
                     "hub's limit", path, REPORTED_DEPTH);
            return -EINVAL;
        }
        for (const unsigned char *k = (const unsigned char *)e->string; *k; k++)
            if (*k == '.' || *k == '$' || *k == ' ' || *k < 0x20 || *k == 0x7f) {
                snprintf(why, wcap, "reported key \"%s\" (at %s) holds %s, which the hub "
                         "refuses in property names ('.', '$', space, control characters)",
                         e->string, path, *k == '.' ? "'.'" : *k == '$' ? "'$'" :
                         *k == ' ' ? "a space" : "a control character");
                return -EINVAL;
            }
        if (cJSON_IsObject(e) && check_keys(e, depth + 1, path, l, cap, why, wcap) < 0)
            return -EINVAL;
        path[plen] = 0;
    }
    return 0;
}

static int a_check_reported(const lume_hub *h, const char *json, size_t len, char *why,
                            size_t cap)
{
    (void)h;
    if (len > REPORTED_MAX) {
        snprintf(why, cap, "reported document of %zu bytes is over the hub's 32 KiB per "
                 "section", len);
        return -EINVAL;
    }
    cJSON *doc = cJSON_ParseWithLength(json, len);
    if (!doc) {
        snprintf(why, cap, "reported document is not JSON");
        return -EINVAL;
    }
    char path[512] = "";
    int r = check_keys(doc, 0, path, 0, sizeof path, why, cap);
    cJSON_Delete(doc);
    return r;
}

static size_t a_operator_topic(const lume_config *c, lume_hub_doc doc, const char *name,
                               char *buf, size_t cap)
{
    (void)c, (void)doc, (void)name, (void)buf, (void)cap;
    return 0; /* the hub keeps twins behind its service REST API */
}

/* devices/{device}[/modules/{module}]/messages/events/{bag}; the route is
 * the bag's "route" property */
static int a_parse_telemetry(const char *topic, lume_hub_msg *out)
{
    if (strncmp(topic, "devices/", 8))
        return -EINVAL;
    const char *d = topic + 8, *p = strchr(d, '/');
    if (!p || p == d || (size_t)(p - d) >= sizeof out->device)
        return -EINVAL;
    memcpy(out->device, d, (size_t)(p - d));
    out->device[p - d] = 0;
    if (!strncmp(p, "/modules/", 9) && (p = strchr(p + 9, '/')) == NULL)
        return -EINVAL;
    if (strncmp(p, "/messages/events/", 17))
        return -EINVAL;
    out->bag = p + 17;
    if (!lume_hub_bag_get(out->bag, "route", out->route, sizeof out->route) || !out->route[0])
        return -EINVAL; /* lume always sends a route (found by the fuzzer: "route=") */
    out->route_len = strlen(out->route);
    return 0;
}

const lume_hub_ops lume_hub_azure = {
    .name = "azure",
    .open = a_open,
    .close = a_close,
    .session = a_session,
    .classify = a_classify,
    .connected = a_connected,
    .telemetry_topic = a_telemetry,
    .stamp = a_stamp,
    .reported = a_reported,
    .health = a_health,
    .logs = a_logs,
    .operator_topic = a_operator_topic,
    .password = a_password,
    .twin_get = a_twin_get,
    .method_response = a_method_response,
    .check_reported = a_check_reported,
    .reported_max = REPORTED_MAX,
    .parse_telemetry = a_parse_telemetry,
    .props = true,
};
