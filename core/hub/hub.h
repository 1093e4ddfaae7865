/* core/hub/hub.h — hub dialects: the wire conventions of the hub a device talks
 * to, behind one interface, so that the session (mqtt.c), the outbox, the
 * twin store (twin.c), the bundle pipeline and the Lua API never name a
 * topic. A dialect is one file (hub_mqtt.c, hub_azure.c) plus one
 * line in the table of lume_hub_find().
 *
 * What a dialect decides, and who asks:
 *
 *   ┌ connect ──────────── lume_hub_session(): client id, user name,
 *   │                      password or token (and when it must be renewed),
 *   │                      the status/last-will topic, the subscriptions
 *   ├ arrive ───────────── lume_hub_classify(topic) → what it is:
 *   │                        DESIRED        a whole layer (mqtt: the retained
 *   │                                       document of a group or the device)
 *   │                        DESIRED_PATCH  a versioned patch of a layer
 *   │                                       (azure: PATCH/properties/desired/?$version=)
 *   │                        TWIN_RESPONSE  the answer to a twin request,
 *   │                                       by request id and status (azure:
 *   │                                       res/200/?$rid=, res/204, res/429)
 *   │                        METHOD         a direct method call (name, $rid)
 *   │                        C2D            a cloud-to-device message (props)
 *   │                        NONE           not the hub's: a script's subscription
 *   ├ after CONNACK ─────── lume_hub_connected(): requests to send at once
 *   │                      (azure: GET the whole twin; mqtt: nothing, the
 *   │                      broker resends retained layers on subscribe)
 *   ├ leave ────────────── lume_hub_telemetry_topic(route, properties)
 *   │                      lume_hub_reported(): where and how the reported
 *   │                      document goes (mqtt: a retained state document,
 *   │                      latest wins; azure: a PATCH request with a $rid,
 *   │                      answered by TWIN_RESPONSE 204)
 *   │                      lume_hub_health()
 *   └ operate ──────────── lume_hub_operator_topic(): where an operator's
 *                          tools find a device's desired and reported
 *                          documents and a group's desired layer
 *
 * Layers. A device merges its desired document from layers in order, the
 * device's own last (docs/twin.md). The mqtt dialect has one layer per
 * configured group then "device"; a hub with a single desired document per
 * device (azure) has only "device". lume_hub_layers() names them for
 * lume_twin_open().
 *
 * Invariants:
 *   1. Every topic lume sends to or subscribes to comes from a dialect.
 *   2. classify() never allocates and never fails: a topic it does not know
 *      is NONE, and goes to the scripts' subscriptions.
 *   3. A dialect holds no connection state that the session owns (packet
 *      ids, in-flight messages); it may hold request ids of its own.
 *
 * Everything runs on the loop thread. */
#ifndef LUME_HUB_H
#define LUME_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "mqtt.h"

#define LUME_HUB_TOPIC_MAX   512
#define LUME_HUB_MAX_LAYERS  17   /* 16 groups and the device */
#define LUME_HUB_MAX_SUBS    20

typedef enum lume_hub_in_kind {
    LUME_HUB_IN_NONE = 0,
    LUME_HUB_IN_DESIRED,
    LUME_HUB_IN_DESIRED_PATCH,
    LUME_HUB_IN_TWIN_RESPONSE,
    LUME_HUB_IN_METHOD,
    LUME_HUB_IN_C2D,
} lume_hub_in_kind;

/* What arrived on a topic (lume_hub_classify). */
typedef struct lume_hub_in {
    lume_hub_in_kind kind;
    size_t      layer;        /* DESIRED, DESIRED_PATCH: index into the layers */
    int64_t     version;      /* DESIRED_PATCH: the patch's version, -1 when none */
    int         status;       /* TWIN_RESPONSE: 200, 204, 429, ... */
    char        rid[64];      /* TWIN_RESPONSE, METHOD: the request id ("" when none) */
    char        name[128];    /* METHOD: the method's name */
    const char *props;        /* C2D, METHOD: the property bag inside the topic, or NULL */
} lume_hub_in;

/* How one outgoing document travels (lume_hub_reported, lume_hub_health,
 * lume_hub_connected). */
typedef struct lume_hub_out {
    char topic[LUME_HUB_TOPIC_MAX];
    int  qos;
    bool retain;
    bool state;               /* a latest-wins document the session resends on every
                                 connect until acknowledged (lume_mqtt_publish_state) */
    char payload[64];         /* for a request with a fixed body (azure's twin GET: "") */
    char rid[64];             /* a request's id, matched by TWIN_RESPONSE ("" when none) */
} lume_hub_out;

/* A message property (route, content type, a script's own). */
typedef struct lume_hub_prop {
    const char *key, *value;
} lume_hub_prop;

/* The operator's documents (lume_hub_operator_topic). */
typedef enum lume_hub_doc {
    LUME_HUB_DEVICE_DESIRED = 0,   /* a device's own desired layer */
    LUME_HUB_DEVICE_REPORTED,      /* a device's reported document */
    LUME_HUB_GROUP_DESIRED,        /* a group's desired layer (name = the group) */
    LUME_HUB_ALL_REPORTED,         /* a filter matching every device's reported document */
    LUME_HUB_DEVICE_STATUS,        /* a device's "online" / "offline" (last will), retained */
    LUME_HUB_ALL_STATUS,           /* a filter matching every device's status */
    LUME_HUB_DEVICE_HEALTH,        /* a device's latest heartbeat (retained) */
    LUME_HUB_ALL_HEALTH,           /* a filter matching every device's heartbeat */
    LUME_HUB_DEVICE_LOGS,          /* a device's remote log stream (runtime/remote_log.c) */
    LUME_HUB_DEVICE_LOGS_RECENT,   /* the retained last lines of that stream */
} lume_hub_doc;

typedef struct lume_hub lume_hub;

/* Whether a dialect of that name exists; the names, ", "-separated. */
bool        lume_hub_known(const char *name);
const char *lume_hub_names(void);

/* The dialect named in the config (net.dialect; "mqtt" when unset) for this
 * device. NULL with *err naming the dialect and the ones there are. */
lume_hub *lume_hub_new(const lume_config *c, char **err);
void      lume_hub_free(lume_hub *h);
const char *lume_hub_name(const lume_hub *h);

/* The desired layers, in merge order ("group:fleet", ..., "device"). */
size_t      lume_hub_layers(const lume_hub *h, const char *const **names);

/* Fill the dialect's part of the session options: client id, user name,
 * password, status (last will) topic. The strings stay owned by h. 0, or
 * negative with *err. */
int         lume_hub_session(lume_hub *h, lume_mqtt_opts *o, char **err);
/* The topics to subscribe to, with their QoS. */
size_t      lume_hub_subscriptions(const lume_hub *h, const char *const **filters,
                                   const int **qos);
/* Classify an incoming topic (never fails; NONE for a script's). */
void        lume_hub_classify(const lume_hub *h, const char *topic, lume_hub_in *in);
/* Requests to send after each CONNACK: how many were written to out. */
size_t      lume_hub_connected(lume_hub *h, lume_hub_out *out, size_t max);

/* The telemetry topic of a route with properties: its length, or 0 when it
 * does not fit in cap (a NUL is written). */
size_t      lume_hub_telemetry_topic(const lume_hub *h, const char *route, size_t route_len,
                                     const lume_hub_prop *props, size_t nprops, char *buf,
                                     size_t cap);
/* An outgoing telemetry topic with one more property key=value in its
 * property bag (how the message left: lume-conn=intermittent), into buf:
 * its length, or 0 (buf "") when the dialect has no place for properties
 * (mqtt 3.1.1), topic is not telemetry, or it does not fit. */
size_t      lume_hub_stamp(const lume_hub *h, const char *topic, const char *key,
                           const char *value, char *buf, size_t cap);
/* Where the reported document goes next. 0. */
int         lume_hub_reported(lume_hub *h, lume_hub_out *out);
/* Where the health document goes. 0, or -ENOENT when the dialect has none. */
int         lume_hub_health(lume_hub *h, lume_hub_out *out);

/* Where remote log lines go (recent false: the stream, one line a
 * message; true: the retained document of the last lines, a state
 * document). 0, or -ENOENT when the dialect has no such place (azure keeps
 * no retained messages: its stream is telemetry with lume-kind=log). */
int         lume_hub_logs(lume_hub *h, lume_hub_out *out, bool recent);

/* Operator side: the topic of a document of device `id` or group `name`
 * for the dialect in c. Its length, or 0 (with buf "") when the dialect
 * keeps that document elsewhere (a hub's REST API) or it does not fit. */
size_t      lume_hub_operator_topic(const lume_config *c, lume_hub_doc doc, const char *name,
                                    char *buf, size_t cap);
/* The device id a reported topic belongs to (for ALL_REPORTED), copied into
 * buf. 0, or -EINVAL when the topic is not one. */
int         lume_hub_reported_device(const lume_config *c, const char *topic, char *buf,
                                     size_t cap);

/* A password made fresh for the next CONNECT (azure: a SAS token), or NULL
 * when the session's fixed one (lume_hub_session) stands. *renew_ms: how
 * long until the connection must be made again with a fresh one (0: never). */
const char *lume_hub_password(lume_hub *h, int64_t *renew_ms);
/* A twin GET request (a dialect whose desired state arrives as versioned
 * patches asks for the whole twin again after a gap). 0, or -ENOENT. */
int         lume_hub_twin_get(lume_hub *h, lume_hub_out *out);
/* The answer to a direct method call: topic of status and request id. 0,
 * or -ENOENT when the dialect has no methods. */
int         lume_hub_method_response(lume_hub *h, int status, const char *rid,
                                     lume_hub_out *out);
/* The dialect's limits on reported documents (azure: key characters,
 * objects at most 10 deep, 32 KiB): 0, or -EINVAL with why (naming the key)
 * filled. */
int         lume_hub_check_reported(const lume_hub *h, const char *json, size_t len,
                                    char *why, size_t cap);
/* Whether the dialect has such limits (else lume_hub_check_reported is 0). */
bool        lume_hub_limits_reported(const lume_hub *h);
/* The largest reported document the dialect takes, in bytes of JSON
 * (SIZE_MAX: no limit). */
size_t      lume_hub_reported_max(const lume_hub *h);
/* azure: a SAS token for resource ("{hub host}/devices/{device}"), signed
 * with the base64 key, expiring at expiry (seconds since the epoch), into
 * buf. Its length, or a negative code (-EINVAL: key not base64; -ENOSPC). */
int         lume_hub_azure_sas(const char *resource, const char *key_b64, int64_t expiry,
                               char *buf, size_t cap);
/* azure: the hub and device id DPS assigned (core/hub/dps.h): client id,
 * user name, token resource and topics follow them from the next CONNECT.
 * 0, or -EINVAL with *err (not the azure dialect; empty or too long). */
int         lume_hub_azure_assign(lume_hub *h, const char *host, const char *device,
                                  char **err);
/* A base64 key kept in a file (whitespace trimmed), malloc'd; NULL with
 * *err naming the config key and the file (unreadable, empty). */
char       *lume_hub_read_key_file(const char *key, const char *path, char **err);
/* URL-encode (RFC 3986 unreserved kept) len bytes of s into buf: the
 * length, or 0 when it does not fit (buf ""). */
size_t      lume_hub_urlencode(const char *s, size_t len, char *buf, size_t cap);
/* Decode a %XX-encoded string in place (in a property bag '+' is kept). */
void        lume_hub_urldecode(char *s);

/* ---- signed messages (core/trust/msgsign.h, docs/signing.md) ------------ */

/* What a telemetry topic says: which dialect made it, the device, the
 * route, and the property bag when the dialect has one (lume verify, and
 * the signer, so both read device and route the same way). */
typedef struct lume_hub_msg {
    const char *dialect;
    char        device[LUME_HUB_TOPIC_MAX];
    char        route[LUME_HUB_TOPIC_MAX];
    size_t      route_len;
    const char *bag;          /* inside the topic given, or NULL */
} lume_hub_msg;
/* Parse a telemetry topic of any dialect. 0, or -EINVAL when no dialect
 * made it. */
int         lume_hub_parse_telemetry(const char *topic, lume_hub_msg *out);
/* Property key's value in a bag ("k=v&k2=v2", URL-encoded), decoded into
 * buf. false when absent or longer than cap - 1. */
bool        lume_hub_bag_get(const char *bag, const char *key, char *buf, size_t cap);
/* Whether the dialect carries message properties (else a signature travels
 * in an envelope around the payload). */
bool        lume_hub_has_props(const lume_hub *h);

/* ---- for dialect files only -------------------------------------------- */

typedef struct lume_hub_ops {
    const char *name;
    int    (*open)(lume_hub *h, char **err);
    void   (*close)(lume_hub *h);
    int    (*session)(lume_hub *h, lume_mqtt_opts *o, char **err);
    void   (*classify)(const lume_hub *h, const char *topic, lume_hub_in *in);
    size_t (*connected)(lume_hub *h, lume_hub_out *out, size_t max);
    size_t (*telemetry_topic)(const lume_hub *h, const char *route, size_t route_len,
                              const lume_hub_prop *props, size_t nprops, char *buf,
                              size_t cap);
    size_t (*stamp)(const lume_hub *h, const char *topic, const char *key, const char *value,
                    char *buf, size_t cap);
    int    (*reported)(lume_hub *h, lume_hub_out *out);
    int    (*health)(lume_hub *h, lume_hub_out *out);
    int    (*logs)(lume_hub *h, lume_hub_out *out, bool recent);
    size_t (*operator_topic)(const lume_config *c, lume_hub_doc doc, const char *name,
                             char *buf, size_t cap);
    int    (*reported_device)(const lume_config *c, const char *topic, char *buf,
                              size_t cap);
    const char *(*password)(lume_hub *h, int64_t *renew_ms);
    int    (*twin_get)(lume_hub *h, lume_hub_out *out);
    int    (*method_response)(lume_hub *h, int status, const char *rid, lume_hub_out *out);
    int    (*check_reported)(const lume_hub *h, const char *json, size_t len, char *why,
                             size_t cap);
    size_t reported_max;          /* 0: no limit */
    int    (*parse_telemetry)(const char *topic, lume_hub_msg *out); /* 0 or -EINVAL */
    bool   props;                 /* telemetry carries message properties */
} lume_hub_ops;

/* The part of a hub every dialect shares; a dialect keeps its own state
 * behind `priv`. */
struct lume_hub {
    const lume_hub_ops *ops;
    const lume_config  *cfg;     /* borrowed: outlives the hub */
    size_t              nlayers;
    char               *layers[LUME_HUB_MAX_LAYERS];
    char               *layer_topics[LUME_HUB_MAX_LAYERS];
    size_t              nsubs;
    char               *subs[LUME_HUB_MAX_SUBS];
    int                 subs_qos[LUME_HUB_MAX_SUBS];
    void               *priv;
};

/* For a dialect's open(): add a subscription (0, or -ENOMEM past
 * LUME_HUB_MAX_SUBS or out of memory); add a layer named `name` whose
 * documents arrive on `topic` (both copied; subscribed at QoS 1 when
 * subscribe is true). */
int lume_hub_add_subscription(lume_hub *h, const char *filter, int qos);
int lume_hub_add_layer(lume_hub *h, const char *name, const char *topic, bool subscribe);

extern const lume_hub_ops lume_hub_mqtt;   /* hub_mqtt.c */
extern const lume_hub_ops lume_hub_azure;  /* hub_azure.c */
/* what a lume built with LUME_NO_AZURE says when a config asks for it */
#define LUME_NO_AZURE_MSG "this lume was built without the azure dialect (LUME_NO_AZURE)"
/* lume_hub_known, with *err saying why not (no such dialect, left out) */
bool lume_hub_check(const char *name, char **err);

#endif
