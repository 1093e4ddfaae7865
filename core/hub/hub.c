/* core/hub/hub.c — the dialect table and the calls every dialect shares (see
 * hub.h). Adding a dialect: its file, and one line in `dialects` below. */
#include "hub.h"
#include "dps.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "log.h"

/* make LUME_NO_AZURE=1 leaves hub_azure.c and dps.c out (no_azure.c stands
 * in for what the rest calls): its line goes, and a config that asks for it
 * is told why */
static const lume_hub_ops *const dialects[] = {
    &lume_hub_mqtt,
#ifndef LUME_NO_AZURE
    &lume_hub_azure,
#endif
};

#define NDIALECTS (sizeof dialects / sizeof *dialects)

const char *lume_hub_names(void)
{
    static char list[256];
    size_t u = 0;
    for (size_t i = 0; i < NDIALECTS && u < sizeof list; i++)
        u += (size_t)snprintf(list + u, sizeof list - u, "%s%s", i ? ", " : "",
                              dialects[i]->name);
    return list;
}

static const lume_hub_ops *find(const char *name, char **err)
{
    const char *want = name && *name ? name : "mqtt";
    for (size_t i = 0; i < NDIALECTS; i++)
        if (!strcmp(dialects[i]->name, want))
            return dialects[i];
#ifdef LUME_NO_AZURE
    if (!strcmp(want, "azure")) {
        lume_set_err(err, "net.dialect: %s", LUME_NO_AZURE_MSG);
        return NULL;
    }
#endif
    lume_set_err(err, "net.dialect: no dialect named \"%s\" (there are: %s)", want,
                 lume_hub_names());
    return NULL;
}

bool lume_hub_known(const char *name) { return find(name, NULL) != NULL; }

bool lume_hub_check(const char *name, char **err) { return find(name, err) != NULL; }

/* the two DPS calls that read the config alone: here, so that a lume built
 * without the azure dialect still knows a config that asks for DPS */
bool lume_dps_configured(const lume_config *c)
{
    return c->net.dps.id_scope && *c->net.dps.id_scope;
}

const char *lume_dps_registration_id(const lume_config *c)
{
    return c->net.dps.registration_id ? c->net.dps.registration_id : c->device_id;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

size_t lume_hub_urlencode(const char *s, size_t len, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t u = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool keep = isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
        if (u + (keep ? 1 : 3) + 1 > cap) {
            if (cap)
                buf[0] = 0;
            return 0;
        }
        if (keep) {
            buf[u++] = (char)c;
        } else {
            buf[u++] = '%';
            buf[u++] = hex[c >> 4];
            buf[u++] = hex[c & 15];
        }
    }
    if (cap)
        buf[u] = 0;
    return u;
}

int lume_hub_parse_telemetry(const char *topic, lume_hub_msg *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; topic && i < NDIALECTS; i++)
        if (dialects[i]->parse_telemetry && dialects[i]->parse_telemetry(topic, out) == 0) {
            out->dialect = dialects[i]->name;
            return 0;
        }
    return -EINVAL;
}

bool lume_hub_bag_get(const char *bag, const char *key, char *buf, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = bag; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
        if (!strncmp(p, key, kl) && (p[kl] == '=' || p[kl] == '&' || !p[kl])) {
            const char *v = p[kl] == '=' ? p + kl + 1 : p + kl;
            size_t n = strcspn(v, "&");
            if (n >= cap)
                return false;
            memcpy(buf, v, n);
            buf[n] = 0;
            lume_hub_urldecode(buf);
            return true;
        }
    return false;
}

bool lume_hub_has_props(const lume_hub *h) { return h->ops->props; }

void lume_hub_urldecode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (*r == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}


lume_hub *lume_hub_new(const lume_config *c, char **err)
{
    /* DPS hands out IoT Hub assignments: it implies the azure dialect */
    bool dps = lume_dps_configured(c);
    if (dps && c->net.dialect && strcmp(c->net.dialect, "azure")) {
        lume_set_err(err, "net.dps: provisioning assigns an Azure IoT hub, but net.dialect is "
                     "\"%s\" (leave it unset or make it \"azure\")", c->net.dialect);
        return NULL;
    }
    const lume_hub_ops *ops = find(dps ? "azure" : c->net.dialect, err);
    if (!ops)
        return NULL;
    lume_hub *h = calloc(1, sizeof *h);
    if (!h) {
        lume_set_err(err, "out of memory");
        return NULL;
    }
    h->ops = ops;
    h->cfg = c;
    if (ops->open(h, err) < 0) {
        lume_hub_free(h);
        return NULL;
    }
    lume_check(h->nlayers > 0 && !strcmp(h->layers[h->nlayers - 1], "device"),
               "layers: a dialect's layers end with the device's own");
    lume_check(h->nsubs <= LUME_HUB_MAX_SUBS && h->nlayers <= LUME_HUB_MAX_LAYERS,
               "the tables hold what was added");
    return h;
}

void lume_hub_free(lume_hub *h)
{
    if (!h)
        return;
    if (h->ops->close)
        h->ops->close(h);
    for (size_t i = 0; i < h->nlayers; i++) {
        free(h->layers[i]);
        free(h->layer_topics[i]);
    }
    for (size_t i = 0; i < h->nsubs; i++)
        free(h->subs[i]);
    free(h);
}

const char *lume_hub_name(const lume_hub *h) { return h->ops->name; }

size_t lume_hub_layers(const lume_hub *h, const char *const **names)
{
    *names = (const char *const *)h->layers;
    return h->nlayers;
}

int lume_hub_session(lume_hub *h, lume_mqtt_opts *o, char **err)
{
    return h->ops->session(h, o, err);
}

size_t lume_hub_subscriptions(const lume_hub *h, const char *const **filters, const int **qos)
{
    *filters = (const char *const *)h->subs;
    *qos = h->subs_qos;
    return h->nsubs;
}

void lume_hub_classify(const lume_hub *h, const char *topic, lume_hub_in *in)
{
    memset(in, 0, sizeof *in);
    in->version = -1;
    if (topic)
        h->ops->classify(h, topic, in);
    lume_check((in->kind != LUME_HUB_IN_DESIRED && in->kind != LUME_HUB_IN_DESIRED_PATCH) ||
                   in->layer < h->nlayers,
               "a desired document is for a layer the dialect named");
}

size_t lume_hub_connected(lume_hub *h, lume_hub_out *out, size_t max)
{
    memset(out, 0, max * sizeof *out);
    return h->ops->connected ? h->ops->connected(h, out, max) : 0;
}

size_t lume_hub_telemetry_topic(const lume_hub *h, const char *route, size_t route_len,
                                const lume_hub_prop *props, size_t nprops, char *buf,
                                size_t cap)
{
    return h->ops->telemetry_topic(h, route, route_len, props, nprops, buf, cap);
}

size_t lume_hub_stamp(const lume_hub *h, const char *topic, const char *key, const char *value,
                      char *buf, size_t cap)
{
    if (cap)
        buf[0] = 0;
    return h->ops->stamp ? h->ops->stamp(h, topic, key, value, buf, cap) : 0;
}

int lume_hub_reported(lume_hub *h, lume_hub_out *out)
{
    memset(out, 0, sizeof *out);
    return h->ops->reported(h, out);
}

int lume_hub_health(lume_hub *h, lume_hub_out *out)
{
    memset(out, 0, sizeof *out);
    return h->ops->health ? h->ops->health(h, out) : -ENOENT;
}

int lume_hub_logs(lume_hub *h, lume_hub_out *out, bool recent)
{
    memset(out, 0, sizeof *out);
    return h->ops->logs ? h->ops->logs(h, out, recent) : -ENOENT;
}

size_t lume_hub_operator_topic(const lume_config *c, lume_hub_doc doc, const char *name,
                               char *buf, size_t cap)
{
    const lume_hub_ops *ops = find(c->net.dialect, NULL);
    size_t n = ops ? ops->operator_topic(c, doc, name, buf, cap) : 0;
    if (!n && cap)
        buf[0] = 0;
    return n;
}

int lume_hub_reported_device(const lume_config *c, const char *topic, char *buf, size_t cap)
{
    const lume_hub_ops *ops = find(c->net.dialect, NULL);
    return ops && ops->reported_device ? ops->reported_device(c, topic, buf, cap) : -EINVAL;
}

const char *lume_hub_password(lume_hub *h, int64_t *renew_ms)
{
    *renew_ms = 0;
    return h->ops->password ? h->ops->password(h, renew_ms) : NULL;
}

int lume_hub_twin_get(lume_hub *h, lume_hub_out *out)
{
    memset(out, 0, sizeof *out);
    return h->ops->twin_get ? h->ops->twin_get(h, out) : -ENOENT;
}

int lume_hub_method_response(lume_hub *h, int status, const char *rid, lume_hub_out *out)
{
    memset(out, 0, sizeof *out);
    return h->ops->method_response ? h->ops->method_response(h, status, rid, out) : -ENOENT;
}

int lume_hub_check_reported(const lume_hub *h, const char *json, size_t len, char *why,
                            size_t cap)
{
    if (cap)
        why[0] = 0;
    return h->ops->check_reported ? h->ops->check_reported(h, json, len, why, cap) : 0;
}

bool lume_hub_limits_reported(const lume_hub *h)
{
    return h->ops->check_reported != NULL;
}

size_t lume_hub_reported_max(const lume_hub *h)
{
    return h->ops->reported_max ? h->ops->reported_max : SIZE_MAX;
}

int lume_hub_add_subscription(lume_hub *h, const char *filter, int qos)
{
    if (h->nsubs == LUME_HUB_MAX_SUBS || !(h->subs[h->nsubs] = strdup(filter)))
        return -ENOMEM;
    h->subs_qos[h->nsubs++] = qos;
    return 0;
}

int lume_hub_add_layer(lume_hub *h, const char *name, const char *topic, bool subscribe)
{
    if (h->nlayers == LUME_HUB_MAX_LAYERS)
        return -ENOMEM;
    char *n = strdup(name), *t = strdup(topic);
    if (!n || !t) {
        free(n);
        free(t);
        return -ENOMEM;
    }
    h->layers[h->nlayers] = n;
    h->layer_topics[h->nlayers] = t;
    h->nlayers++;
    return subscribe ? lume_hub_add_subscription(h, topic, 1) : 0;
}
