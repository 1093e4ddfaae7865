/* bindings/l_net.h — l_net.c: the host side of the network API (lume.net). */
#ifndef LUME_L_NET_H
#define LUME_L_NET_H

#include <cJSON.h>

#include "config.h"
#include "lume.h"
#include "mqtt.h"

/* lume.net.on events */
enum { LUME_EV_CONNECTED = 0, LUME_EV_DISCONNECTED = 1 };

int  lume_net_start(lume_runtime *rt, char **err);   /* from cfg.net; 0 when offline */
void lume_net_stop(lume_runtime *rt);               /* a DPS registration, its timer */
void lume_net_dps_json(lume_runtime *rt, cJSON *root); /* lume stats: "dps" */
void lume_net_link_json(lume_runtime *rt, cJSON *root); /* lume stats: "connectivity" */
void lume_net_link_free(lume_runtime *rt);           /* the link (core/net/link.h) */
/* The session options of the net.* settings of c — every one of them, the
 * one mapping for `lume run` and the operator commands. o points into c
 * (valid while c is); status_topic is left NULL, for the caller. */
void lume_mqtt_opts_from_config(const lume_config *c, lume_mqtt_opts *o);

#endif
