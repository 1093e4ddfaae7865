/* core/hub/dps.h — Azure IoT Hub Device Provisioning Service (DPS) client:
 * which hub a device belongs to, and under which device id, asked over
 * DPS's device MQTT API (docs/azure.md, "Provisioning"). C only; the azure
 * dialect (hub_azure.c) connects to the answer.
 *
 * Who calls what:
 *   lume_dps_configured(cfg)             net.dps.id_scope is set
 *   lume_dps_load(kv, cfg, &a)           the assignment stored by an earlier
 *                                        registration (no network)
 *   d = lume_dps_new(loop, cfg, done)    a registration, retried with backoff
 *   lume_dps_start(d)                    until assigned: done(ud, &a) from a
 *                                        timer (d may be freed in it)
 *   lume_dps_save(kv, cfg, &a)           kept for the next start
 *   lume_hub_azure_assign(hub, a.hub, a.device_id, err)   (hub.h)
 *
 * Everything runs on the loop thread. */
#ifndef LUME_DPS_H
#define LUME_DPS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "kv.h"
#include "loop.h"

#define LUME_DPS_API_VERSION "2019-03-31"
#define LUME_DPS_DEFAULT_ENDPOINT "mqtts://global.azure-devices-provisioning.net:8883"
#define LUME_DPS_KV_NS "dps"

/* What DPS answered (registrationState). */
typedef struct lume_dps_assignment {
    char hub[256];        /* assignedHub: "{hub}.azure-devices.net" */
    char device_id[129];  /* deviceId on that hub */
    char status[32];      /* "assigned" (else "failed", "disabled", ...) */
    char substatus[64];   /* "initialAssignment", "deviceDataMigrated", ... ("" when none) */
    char operation_id[128];
} lume_dps_assignment;

typedef struct lume_dps lume_dps;
typedef void (*lume_dps_done_fn)(void *ud, const lume_dps_assignment *a);

/* True when the config asks for provisioning (net.dps.id_scope). */
bool lume_dps_configured(const lume_config *c);
/* The registration id: net.dps.registration_id, else device_id. */
const char *lume_dps_registration_id(const lume_config *c);

/* The device's base64 key into buf: net.dps.symmetric_key, the file
 * net.dps.symmetric_key_file, or derived from net.dps.group_key. 0; 1 when
 * there is none (X.509: net.cert_file); negative with *err naming the key at
 * fault (not base64, unreadable file, nothing configured). The key itself
 * is never in a message. */
int lume_dps_device_key(const lume_config *c, char *buf, size_t cap, char **err);
/* A group enrollment's device key: base64(HMAC-SHA256(base64dec(group_key),
 * registration_id)). Its length, or -EINVAL (not base64) / -ENOSPC. */
int lume_dps_derive_key(const char *group_key_b64, const char *registration_id, char *buf,
                        size_t cap);

/* The URL the session opens for an assigned hub: net.dps.resolve's
 * "host=addr:port" entry for it (a private endpoint, a test; the value may
 * also be a whole URL, "host=mqtt://127.0.0.1:1883"), else
 * net.url's scheme, port and path with the hub as host, else
 * mqtts://{hub}:8883. 0, or -ENOSPC. */
int lume_dps_hub_url(const lume_config *c, const char *hub, char *buf, size_t cap);

/* The stored assignment for this id scope and registration id: 0, or
 * -ENOENT (none, or one for another scope or registration), -EIO. */
int lume_dps_load(lume_kv *kv, const lume_config *c, lume_dps_assignment *a);
/* 0, or -EIO (logged). */
int lume_dps_save(lume_kv *kv, const lume_config *c, const lume_dps_assignment *a);
/* Forget the stored assignment (a hub refused the device). 0, or -EIO. */
int lume_dps_forget(lume_kv *kv, const lume_config *c);

/* A registration client. c is borrowed and outlives it. NULL with *err (the
 * key, the endpoint URL). */
lume_dps *lume_dps_new(lume_loop *loop, const lume_config *c, lume_dps_done_fn done, void *ud,
                       char **err);
/* Connect and register; every failure is logged and retried with backoff
 * until an assignment arrives. */
void      lume_dps_start(lume_dps *d);
/* Polls sent so far, and the last failure in words ("" when none). */
int         lume_dps_polls(const lume_dps *d);
const char *lume_dps_last_error(const lume_dps *d);
void      lume_dps_free(lume_dps *d);

#endif
