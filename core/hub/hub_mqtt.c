/* core/hub/hub_mqtt.c — the `mqtt` dialect: lume's own topics on any MQTT 3.1.1
 * broker (mosquitto locally; clusters at fleet scale). docs/twin.md and
 * docs/mqtt.md describe them for operators:
 *
 *   lume/{device}/telemetry/{route}   telemetry, QoS per message
 *   lume/groups/{group}/desired       retained; one layer per configured group
 *   lume/{device}/desired             retained; the device's own layer, last
 *   lume/{device}/reported            retained state document, written by the device
 *   lume/{device}/health              periodic stats, QoS 0, retained (the latest
 *                                     says when the device was last heard from)
 *   lume/{device}/logs                remote log lines while desired log.remote asks, QoS 0
 *   lume/{device}/logs/recent         retained state document: the last lines sent
 *   lume/{device}/status              "online", and "offline" as the last will
 *
 * Each desired layer is a whole document (no patches, no requests): the
 * broker hands the retained ones over on every subscribe, so nothing needs
 * asking for after a connect. */
#include "hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef struct mqtt_hub {
    char   telemetry[LUME_HUB_TOPIC_MAX]; /* "lume/{device}/telemetry/" */
    size_t telemetry_len;
    char   status[LUME_HUB_TOPIC_MAX];
} mqtt_hub;

static int m_open(lume_hub *h, char **err)
{
    const lume_config *c = h->cfg;
    mqtt_hub *m = calloc(1, sizeof *m);
    if (!m)
        goto oom;
    h->priv = m;
    m->telemetry_len = (size_t)snprintf(m->telemetry, sizeof m->telemetry,
                                        "lume/%s/telemetry/", c->device_id);
    snprintf(m->status, sizeof m->status, "lume/%s/status", c->device_id);
    char *groups = c->twin.groups ? strdup(c->twin.groups) : NULL;
    if (c->twin.groups && !groups)
        goto oom;
    int r = 0;
    char name[LUME_HUB_TOPIC_MAX], topic[LUME_HUB_TOPIC_MAX];
    for (char *save = NULL, *g = groups ? strtok_r(groups, ",", &save) : NULL;
         g && r == 0 && h->nlayers < LUME_HUB_MAX_LAYERS - 1; g = strtok_r(NULL, ",", &save)) {
        snprintf(name, sizeof name, "group:%s", g);
        snprintf(topic, sizeof topic, "lume/groups/%s/desired", g);
        r = lume_hub_add_layer(h, name, topic, true);
    }
    free(groups);
    snprintf(topic, sizeof topic, "lume/%s/desired", c->device_id);
    if (r == 0)
        r = lume_hub_add_layer(h, "device", topic, true);
    if (r < 0)
        goto oom;
    return 0;
oom:
    lume_set_err(err, "out of memory");
    return -ENOMEM;
}

static void m_close(lume_hub *h) { free(h->priv); }

static int m_session(lume_hub *h, lume_mqtt_opts *o, char **err)
{
    (void)err;
    mqtt_hub *m = h->priv;
    const lume_config *c = h->cfg;
    o->client_id = c->net.client_id ? c->net.client_id : c->device_id;
    o->username = c->net.username;
    o->password = c->net.password;
    o->status_topic = m->status;
    return 0;
}

static void m_classify(const lume_hub *h, const char *topic, lume_hub_in *in)
{
    for (size_t i = 0; i < h->nlayers; i++)
        if (!strcmp(topic, h->layer_topics[i])) {
            in->kind = LUME_HUB_IN_DESIRED;
            in->layer = i;
            return;
        }
}

static size_t m_telemetry(const lume_hub *h, const char *route, size_t route_len,
                          const lume_hub_prop *props, size_t nprops, char *buf, size_t cap)
{
    (void)props, (void)nprops; /* plain MQTT 3.1.1 has no place for them */
    const mqtt_hub *m = h->priv;
    if (m->telemetry_len + route_len + 1 > cap) {
        if (cap)
            buf[0] = 0;
        return 0;
    }
    memcpy(buf, m->telemetry, m->telemetry_len);
    memcpy(buf + m->telemetry_len, route, route_len);
    buf[m->telemetry_len + route_len] = 0;
    return m->telemetry_len + route_len;
}

static int m_reported(lume_hub *h, lume_hub_out *out)
{
    snprintf(out->topic, sizeof out->topic, "lume/%s/reported", h->cfg->device_id);
    out->qos = 1;
    out->retain = true;
    out->state = true;
    return 0;
}

static int m_health(lume_hub *h, lume_hub_out *out)
{
    snprintf(out->topic, sizeof out->topic, "lume/%s/health", h->cfg->device_id);
    out->qos = 0;
    out->retain = true; /* fleet views read the latest without waiting a period */
    return 0;
}

static int m_logs(lume_hub *h, lume_hub_out *out, bool recent)
{
    snprintf(out->topic, sizeof out->topic, "lume/%s/logs%s", h->cfg->device_id,
             recent ? "/recent" : "");
    out->qos = recent ? 1 : 0;
    out->retain = recent;
    out->state = recent;
    return 0;
}

static size_t m_operator_topic(const lume_config *c, lume_hub_doc doc, const char *name,
                               char *buf, size_t cap)
{
    (void)c;
    int n = -1;
    switch (doc) {
    case LUME_HUB_DEVICE_DESIRED: n = snprintf(buf, cap, "lume/%s/desired", name); break;
    case LUME_HUB_DEVICE_REPORTED: n = snprintf(buf, cap, "lume/%s/reported", name); break;
    case LUME_HUB_GROUP_DESIRED: n = snprintf(buf, cap, "lume/groups/%s/desired", name); break;
    case LUME_HUB_ALL_REPORTED: n = snprintf(buf, cap, "lume/+/reported"); break;
    case LUME_HUB_DEVICE_STATUS: n = snprintf(buf, cap, "lume/%s/status", name); break;
    case LUME_HUB_ALL_STATUS: n = snprintf(buf, cap, "lume/+/status"); break;
    case LUME_HUB_DEVICE_HEALTH: n = snprintf(buf, cap, "lume/%s/health", name); break;
    case LUME_HUB_ALL_HEALTH: n = snprintf(buf, cap, "lume/+/health"); break;
    case LUME_HUB_DEVICE_LOGS: n = snprintf(buf, cap, "lume/%s/logs", name); break;
    case LUME_HUB_DEVICE_LOGS_RECENT: n = snprintf(buf, cap, "lume/%s/logs/recent", name); break;
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int m_reported_device(const lume_config *c, const char *topic, char *buf, size_t cap)
{
    (void)c;
    const char *end = strrchr(topic, '/');
    if (strncmp(topic, "lume/", 5) || !end || strcmp(end, "/reported") || end <= topic + 5)
        return -EINVAL;
    size_t n = (size_t)(end - (topic + 5));
    if (n + 1 > cap || memchr(topic + 5, '/', n))
        return -EINVAL;
    memcpy(buf, topic + 5, n);
    buf[n] = 0;
    return 0;
}

/* lume/{device}/telemetry/{route} */
static int m_parse_telemetry(const char *topic, lume_hub_msg *out)
{
    if (strncmp(topic, "lume/", 5))
        return -EINVAL;
    const char *d = topic + 5, *slash = strchr(d, '/');
    if (!slash || slash == d || strncmp(slash, "/telemetry/", 11) || !slash[11])
        return -EINVAL;
    size_t dn = (size_t)(slash - d), rn = strlen(slash + 11);
    if (dn >= sizeof out->device || rn >= sizeof out->route)
        return -EINVAL;
    memcpy(out->device, d, dn);
    out->device[dn] = 0;
    memcpy(out->route, slash + 11, rn + 1);
    out->route_len = rn;
    return 0;
}

const lume_hub_ops lume_hub_mqtt = {
    .name = "mqtt",
    .open = m_open,
    .close = m_close,
    .session = m_session,
    .classify = m_classify,
    .telemetry_topic = m_telemetry,
    .reported = m_reported,
    .health = m_health,
    .logs = m_logs,
    .operator_topic = m_operator_topic,
    .reported_device = m_reported_device,
    .parse_telemetry = m_parse_telemetry,
};
