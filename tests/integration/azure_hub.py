#!/usr/bin/python3
"""tests/integration/azure_hub.py — an Azure IoT Hub emulator for lume's
integration tests: a real mosquitto does the MQTT, this adds the hub.

  device ──► proxy (this, --listen) ──► mosquitto (--broker)  ◄── hub side (this, paho)

The proxy reads each connection's CONNECT and checks it as the hub does:
  client id    {device} or {device}/{module}
  user name    {hub}/{client id}/?api-version=...[&model-id=...][&DeviceClientType=...]
               (other query parameters are accepted, as the hub accepts them;
               the hub must be one of --host, which may be given more than once,
               e.g. "localhost:PORT" for a client told HostName=localhost:PORT)
  password     SharedAccessSignature sr=..&sig=..&se=.. in any order, where the
               URL-decoded sr is {hub}/devices/{device}[/modules/{module}] and
               sig is HMAC-SHA256(base64dec(key), sr + "\n" + se) over sr exactly
               as the token carries it (URL-encoded, whatever the hex case).
It answers CONNACK 5 (not authorized) and closes on a bad one, and otherwise
forwards the CONNECT and everything after it unchanged to mosquitto, and
closes the connection when the token expires (at se), as the hub does.
What the device sends is held to the hub's topics, as the hub closes the
connection of a device that strays: PUBLISH only to
devices/{device}[/modules/{module}]/messages/events/..., $iothub/twin/GET/?$rid=,
$iothub/twin/PATCH/properties/reported/?$rid=, $iothub/methods/res/{status}/?$rid=
(never QoS 2); SUBSCRIBE only to .../messages/devicebound/#, $iothub/twin/res/#,
$iothub/twin/PATCH/properties/desired/#, $iothub/methods/POST/#. A packet
outside them is not forwarded; the connection is closed (event
"off_protocol", naming it).
--listen is plain MQTT; --tls-listen (with --tls-cert, --tls-key) the same over
TLS, as the hub's port 8883 (Microsoft's device SDKs speak only mqtts).

The hub side is a paho client on mosquitto that subscribes to the exact
$iothub filters (mosquitto's '#' never matches a '$' topic) and plays the
device twin (GET -> 200 with desired, reported and $version; reported PATCH
-> 204 with the new version, or 429 on demand), direct methods and C2D.

Control: one JSON command per TCP connection on --control, one JSON answer:
  {"cmd": "patch", "patch": {...}}            desired patch, $version + 1, sent
  {"cmd": "patch", "patch": {...}, "send": false}   changed, not sent (offline change)
  {"cmd": "patch", "patch": {...}, "skip": 1} bump the version once unseen, then send
  {"cmd": "twin"}                             {"desired":..., "reported":...}
  {"cmd": "fail429", "n": 2}                  the next n reported PATCHes get 429
  {"cmd": "fail429", "n": 1, "status": 400}   ... or another status (with a message body)
  {"cmd": "method", "name": "x", "payload": .., "timeout": 5} -> {"status":, "payload":}
  {"cmd": "c2d", "device": "d", "payload": "text", "props": {"k": "v"}}
                                              property bag as the hub sends it:
                                              $.to, $.mid, then the sender's
                                              properties, all URL-encoded
  {"cmd": "outage", "s": 3}                   drop every device connection and refuse
                                              new ones (no CONNACK) for s seconds
  {"cmd": "refuse", "device": "d"}            drop d's connections and refuse it from
                                              now on (CONNACK 5: moved to another hub)
  {"cmd": "stats"}                            counters
  {"cmd": "patch", ..., "await": {"path": "scripts.x", "match": {"status": "active"}},
   "timeout": 10}                             and wait until the reported twin at path
                                              holds match: {"version", "ms": from just
                                              before the publish to the reported PATCH
                                              that made it so} (bench/azure/run)
  {"cmd": "echo"}                             {"ms": a QoS 1 message from the hub side
                                              to the broker and back} (a floor)
Benchmark options: --quiet-telemetry (no telemetry subscription, no events),
--allow-plain (a CONNECT without a password is forwarded unchecked: the
mqtt-dialect peer of bench/azure/run through the same proxy).
  {"cmd": "rawpatch", "body": "not json"}     $version + 1, this body sent as the desired
                                              patch as is (the twin does not change)
  {"cmd": "getbody", "body": "{", "n": 1}     the next n GETs answered 200 with this body
  {"cmd": "failget", "n": 2, "status": 429}   the next n GETs answered with this status
The hub's twin rules (keys without '.', '$', space or control characters,
objects at most 10 deep, strings at most 4 KB, each section at most 32 KB
counted as the hub counts) refuse a "patch" ({"error", "status": 400}) and a
device's reported PATCH (400 with the reason), changing nothing.
Events go to stdout, one JSON line each: ready, connect (with tls and what the
user name's query said: api-version, model-id, DeviceClientType), refused
(why), expired, off_protocol (why), tls_failed, bad_connect, twin_get,
reported_patch, desired_patch, telemetry (props decoded), outage.
"""
import argparse
import hmac
import json
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt

from mqtt_wire import mqtt_str, parse_connect, raw_fields, read_packet, sas_sign

lock = threading.Lock()
changed = threading.Condition(lock)   # the reported twin changed (under lock)
last_reported = [0.0]                 # time.monotonic() of the last reported PATCH
echoes = {}                           # echo id -> threading.Event
live = set()               # sockets to mosquitto, for "outage"
by_client = {}             # client id -> its sockets to mosquitto, for "refuse"
refused_devices = set()    # refused with CONNACK 5 (a device moved or disabled)
outage_until = [0.0]
stats = {"connects": 0, "refused": 0, "expired_drops": 0, "off_protocol": 0, "gets": 0, "reported_patches": 0,
         "throttled": 0, "telemetry": 0, "method_calls": 0, "c2d": 0, "reported_rejected": 0}
SECTION_MAX = 32 * 1024
STRING_MAX = 4 * 1024
DEPTH_MAX = 10


def nodelay(s):
    """The hub answers at once: no Nagle on the emulator's own sockets."""
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def event(**kw):
    kw["t"] = round(time.time(), 3)
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()


# ---- the proxy: CONNECT checked, then bytes both ways ----------------------

def parse_bag(bag):
    """A property bag or query string as the hub reads one: '&'-separated,
    the first '=' splits key and value, both URL-decoded ('+' stays '+'),
    a key without '=' has the value None."""
    out = {}
    for part in bag.split("&"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        out[urllib.parse.unquote(k)] = urllib.parse.unquote(v) if eq else None
    return out



def check_sas(args, cid, user, pw):
    """(None, se, info) when the hub would accept the CONNECT, else (why, se,
    info); info holds what the user name said (api-version, model-id, ...)."""
    info = {}
    device, _, module = cid.partition("/")
    if not user or "/?" not in user:
        return "user name %r is not {hub}/%s/?api-version=..." % (user, cid), 0, info
    path, query = user.split("/?", 1)
    host, _, who = path.partition("/")
    info = parse_bag(query)
    if host.lower() not in [h.lower() for h in args.host]:
        return "user name names the hub %r, this hub is %s" % (host, " or ".join(args.host)), 0, info
    if who != cid:
        return "user name names %r, the client id is %r" % (who, cid), 0, info
    if not info.get("api-version"):
        return "user name %r has no api-version" % user, 0, info
    if not pw or not pw.startswith("SharedAccessSignature "):
        return "no SAS token", 0, info
    raw = raw_fields(pw[len("SharedAccessSignature "):])
    if "skn" in raw:
        return "a policy token (skn=%s): this hub knows only the device key" % raw["skn"], 0, info
    sr, sig, se = raw.get("sr", ""), urllib.parse.unquote(raw.get("sig", "")), raw.get("se", "")
    resource = "%s/devices/%s" % (host, device) + ("/modules/%s" % module if module else "")
    if urllib.parse.unquote(sr).lower() != resource.lower():
        return "token for %r, not %r" % (urllib.parse.unquote(sr), resource), 0, info
    if not se.isdigit():
        return "token has no expiry (se=%r)" % se, 0, info
    se = int(se)
    if se <= time.time():
        return "token expired at %d" % se, se, info
    tosign = sr + "\n" + str(se)
    for key in args.key:
        good = sas_sign(key, tosign)
        if hmac.compare_digest(good, sig):
            return None, se, info
    return "signature does not verify with the device key", se, info


def device_rules(cid):
    """What the hub lets the device with this client id publish and
    subscribe to (compiled patterns)."""
    device, _, module = cid.partition("/")
    me = re.escape("devices/%s" % device) + (re.escape("/modules/%s" % module) if module else "")
    pub = re.compile(r"^(?:%s/messages/events/.*"
                     r"|\$iothub/twin/GET/\?\$rid=[^&]+.*"
                     r"|\$iothub/twin/PATCH/properties/reported/\?\$rid=[^&]+.*"
                     r"|\$iothub/methods/res/\d{3}/\?\$rid=[^&]+.*)$" % me, re.S)
    sub = re.compile(r"^(?:%s/messages/devicebound/#|\$iothub/twin/res/#"
                     r"|\$iothub/twin/PATCH/properties/desired/#|\$iothub/methods/POST/#)$"
                     % me)
    return pub, sub


def off_protocol(rules, buf):
    """Consumes the whole packets at the start of buf (a bytearray of what
    the device sent after its CONNECT); returns why the hub would close the
    connection for one of them, or None."""
    pub, sub = rules
    while len(buf) >= 2:
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            length += (buf[i] & 127) * mult
            mult *= 128
            i += 1
            if not buf[i - 1] & 128:
                break
            if i > 4:
                return "malformed remaining length"
        if len(buf) < i + length:
            return None
        kind, flags = buf[0] >> 4, buf[0] & 15
        body = bytes(buf[i:i + length])
        del buf[:i + length]
        if kind == 3:                                   # PUBLISH
            topic = mqtt_str(body, 0)[0].decode(errors="replace")
            if (flags >> 1) & 3 == 2:
                return "PUBLISH with QoS 2 to %r (the hub has no QoS 2)" % topic
            if not pub.match(topic):
                return "PUBLISH to %r, a topic the hub does not take from this device" % topic
        elif kind == 8:                                 # SUBSCRIBE
            j = 2
            while j < len(body):
                f, j = mqtt_str(body, j)
                j += 1
                if not sub.match(f.decode(errors="replace")):
                    return "SUBSCRIBE to %r, a filter the hub does not offer this device" % f.decode(errors="replace")
        elif kind == 1:
            return "a second CONNECT"
    return None


def relay(c, up, se, cid, hub_rules=True):
    """Bytes both ways in one thread (an SSL socket must not be read and
    written from two threads at once) until either side closes; True when
    the token's expiry came first. With hub_rules, what the device sends is
    checked against the hub's topics: a PUBLISH or SUBSCRIBE the hub would
    not take closes the connection before it reaches mosquitto, as the hub
    closes it."""
    socks = [c, up]
    rules, pending = device_rules(cid) if hub_rules else None, bytearray()
    while True:
        left = se - time.time()
        if left <= 0:
            return True
        ready = [c] if getattr(c, "pending", lambda: 0)() else []
        if not ready:
            ready, _, _ = select.select(socks, [], [], min(left, 1.0))
        for a in ready:
            b = up if a is c else c
            try:
                d = a.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except OSError:
                return False
            if not d:
                return False
            if a is c and rules:
                pending += d
                why = off_protocol(rules, pending)
                if why:
                    with lock:
                        stats["off_protocol"] += 1
                    event(ev="off_protocol", client=cid, why=why)
                    return False
            try:
                b.sendall(d)
            except OSError:
                return False


def serve_client(args, c, tls):
    cid = None
    try:
        if tls:
            try:
                c = tls.wrap_socket(c, server_side=True)
            except (ssl.SSLError, OSError) as e:
                event(ev="tls_failed", why=str(e))
                c.close()
                return
        hdr, body = read_packet(c)
        if time.time() < outage_until[0]:
            c.close()
            return
        if hdr[0] >> 4 != 1:
            c.close()
            return
        cid, user, pw = parse_connect(body)
        plain = pw is None and args.allow_plain
        if plain:
            why, se, info = None, time.time() + 86400 * 365, {}
        else:
            why, se, info = check_sas(args, cid, user, pw)
        if not why and cid in refused_devices:
            why = "device %s is disabled on this hub (control command)" % cid
        if why:
            with lock:
                stats["refused"] += 1
            event(ev="refused", client=cid, why=why)
            c.sendall(bytes([0x20, 2, 0, 5]))      # CONNACK 5: not authorized
            c.close()
            return
        up = socket.create_connection(("127.0.0.1", args.broker))
        nodelay(up)
        up.sendall(hdr + body)
        with lock:
            stats["connects"] += 1
            live.add(up)
            by_client.setdefault(cid, set()).add(up)
        event(ev="connect", client=cid, se=se, ttl=round(se - time.time(), 1),
              tls=bool(tls), user=info)
        expired = relay(c, up, se, cid, hub_rules=not plain)
        if expired:
            with lock:
                stats["expired_drops"] += 1
            event(ev="expired", client=cid, se=se)
        with lock:
            live.discard(up)
            by_client.get(cid, set()).discard(up)
        for x in (c, up):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()
    except (EOFError, OSError, ValueError) as e:
        if cid is None and not isinstance(e, EOFError):
            event(ev="bad_connect", why=str(e))
        c.close()


def proxy(args, port, tls):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        nodelay(c)
        threading.Thread(target=serve_client, args=(args, c, tls), daemon=True).start()


# ---- the hub side ------------------------------------------------------------

class Twin:
    def __init__(self):
        self.desired = {"$version": 1}
        self.reported = {"$version": 1}
        self.fail429 = 0
        self.fail_status = 429
        self.get_bodies = []       # raw answers for the next GETs
        self.get_fail = [0, 429]   # the next n GETs answered with a status
        self.fail_why = None       # why the last reported PATCH was refused


def twin_size(v):
    """A section's size as the hub counts it: keys and string values by
    characters (control characters not counted), numbers 8, booleans 4."""
    if isinstance(v, dict):
        return sum(len(k.encode()) + twin_size(x) for k, x in v.items() if not k.startswith("$"))
    if isinstance(v, list):
        return sum(twin_size(x) for x in v)
    if isinstance(v, bool):
        return 4
    if isinstance(v, (int, float)):
        return 8
    if isinstance(v, str):
        return len([c for c in v if not (ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0)])
    return 0


def twin_rules(v, path="", depth=0):
    """Why the hub refuses this (part of a) section, or None."""
    if isinstance(v, dict):
        if depth > DEPTH_MAX:
            return "%s: objects nested deeper than %d" % (path, DEPTH_MAX)
        for k, x in v.items():
            if path == "" and k == "$version":
                continue
            if not k or any(c in ".$ " or ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in k):
                return "property name %r (at %s) is not allowed" % (k, path or "top")
            why = twin_rules(x, path + "." + k if path else k, depth + 1)
            if why:
                return why
    elif isinstance(v, str) and len(v.encode()) > STRING_MAX:
        return "%s: string of %d bytes, over %d" % (path, len(v.encode()), STRING_MAX)
    return None


twin = Twin()
pending_methods = {}       # rid -> [event, result]
next_rid = [100]


def merge(target, patch):
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = v


def query(topic):
    return parse_bag(topic.split("?", 1)[1]) if "?" in topic else {}


def on_message(client, args, msg):
    t = msg.topic
    if t.startswith("$iothub/twin/GET/"):
        rid = query(t).get("$rid", "")
        with lock:
            stats["gets"] += 1
            status = 200
            if twin.get_fail[0] > 0:
                twin.get_fail[0] -= 1
                status = twin.get_fail[1]
                body = b"" if status == 429 else json.dumps(
                    {"errorCode": status * 1000 + 1, "message": "emulated failure"})
            elif twin.get_bodies:
                body = twin.get_bodies.pop(0)
            else:
                body = json.dumps({"desired": twin.desired, "reported": twin.reported})
        client.publish("$iothub/twin/res/%d/?$rid=%s" % (status, rid), body)
        event(ev="twin_get", rid=rid, status=status, version=twin.desired["$version"])
    elif t.startswith("$iothub/twin/PATCH/properties/reported/"):
        rid = query(t).get("$rid", "")
        arrived = time.monotonic()
        with lock:
            if twin.fail429 > 0:
                twin.fail429 -= 1
                stats["throttled"] += 1
                status = twin.fail_status
            else:
                why = None
                try:
                    patch = json.loads(msg.payload or b"{}")
                except ValueError as e:
                    patch, why = None, "malformed JSON: %s" % e
                if patch is not None:
                    after = json.loads(json.dumps(twin.reported))
                    merge(after, patch if isinstance(patch, dict) else {})
                    why = twin_rules(after) or (
                        "reported section of %d bytes is over %d" % (twin_size(after), SECTION_MAX)
                        if twin_size(after) > SECTION_MAX else None)
                if why:
                    stats["reported_rejected"] += 1
                    twin.fail_why = why
                    status = 400
                else:
                    stats["reported_patches"] += 1
                    twin.reported = after
                    twin.reported["$version"] += 1
                    last_reported[0] = arrived
                    changed.notify_all()
                    status = 204
            v = twin.reported["$version"]
        if status == 204:
            client.publish("$iothub/twin/res/204/?$rid=%s&$version=%d" % (rid, v), b"")
        elif status == 429:
            client.publish("$iothub/twin/res/429/?$rid=%s" % rid, b"")
        else:
            why = twin.fail_why or "emulated failure"
            twin.fail_why = None
            client.publish("$iothub/twin/res/%d/?$rid=%s" % (status, rid),
                           json.dumps({"errorCode": status * 1000 + 1, "message": why}))
        event(ev="reported_patch", rid=rid, status=status, **({"why": why} if status == 400 else {}))
    elif t.startswith("$iothub/methods/res/"):
        status = int(t.split("/")[3])
        rid = query(t).get("$rid", "")
        p = pending_methods.get(rid)
        if p:
            p[1] = {"status": status, "payload": msg.payload.decode(errors="replace")}
            p[0].set()
    elif t.startswith("bench/echo/"):
        e = echoes.get(t)
        if e:
            e.set()
    elif "/messages/events/" in t:
        bag = t.split("/messages/events/", 1)[1]
        props = parse_bag(bag)
        with lock:
            stats["telemetry"] += 1
        event(ev="telemetry", device=t.split("/")[1], props=props,
              payload=msg.payload.decode(errors="replace"))


def control(args, client):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.control))
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        f = c.makefile("rw")
        try:
            cmd = json.loads(f.readline())
            f.write(json.dumps(command(client, cmd)) + "\n")
            f.flush()
        except Exception as e:          # noqa: BLE001 - a test tool: say what failed
            try:
                c.sendall((json.dumps({"error": str(e)}) + "\n").encode())
            except OSError:
                pass
        # the answer ends with the connection: the file object holds the
        # socket open too, so it is closed first
        try:
            f.close()
        except OSError:
            pass
        c.close()


def reported_holds(path, match):
    node = twin.reported
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return isinstance(node, dict) and all(node.get(k) == v for k, v in match.items())


def command(client, cmd):
    k = cmd["cmd"]
    if k == "patch":
        t0 = time.monotonic()
        with lock:
            after = json.loads(json.dumps(twin.desired))
            merge(after, cmd["patch"])
            why = twin_rules(after) or (
                "desired section of %d bytes is over %d" % (twin_size(after), SECTION_MAX)
                if twin_size(after) > SECTION_MAX else None)
            if not why:
                twin.desired["$version"] += cmd.get("skip", 0)
                merge(twin.desired, cmd["patch"])
                twin.desired["$version"] += 1
                v = twin.desired["$version"]
                body = dict(cmd["patch"], **{"$version": v})
        if why:
            event(ev="desired_refused", why=why)
            return {"error": why, "status": 400}
        if cmd.get("send", True):
            client.publish("$iothub/twin/PATCH/properties/desired/?$version=%d" % v,
                           json.dumps(body))
        w = cmd.get("await")
        if w:
            end = t0 + cmd.get("timeout", 10)
            with changed:
                while not reported_holds(w["path"], w["match"]):
                    if not changed.wait(max(0.0, end - time.monotonic())) and \
                            time.monotonic() >= end:
                        return {"version": v, "error": "not reported within the timeout"}
                ms = (last_reported[0] - t0) * 1000
            return {"version": v, "ms": round(ms, 3)}
        event(ev="desired_patch", version=v, sent=cmd.get("send", True))
        return {"version": v}
    if k == "rawpatch":
        with lock:
            twin.desired["$version"] += 1
            v = twin.desired["$version"]
        client.publish("$iothub/twin/PATCH/properties/desired/?$version=%d" % v, cmd["body"])
        event(ev="desired_patch", version=v, sent=True, raw=True)
        return {"version": v}
    if k == "getbody":
        with lock:
            twin.get_bodies.extend([cmd["body"]] * cmd.get("n", 1))
        return {"ok": True}
    if k == "failget":
        with lock:
            twin.get_fail = [cmd.get("n", 1), cmd.get("status", 429)]
        return {"ok": True}
    if k == "echo":
        topic = "bench/echo/%d" % next_rid[0]
        next_rid[0] += 1
        e = echoes[topic] = threading.Event()
        t0 = time.monotonic()
        client.publish(topic, b"x", qos=1)
        ok = e.wait(cmd.get("timeout", 5))
        ms = (time.monotonic() - t0) * 1000
        del echoes[topic]
        return {"ms": round(ms, 3)} if ok else {"error": "no echo"}
    if k == "twin":
        with lock:
            return {"desired": twin.desired, "reported": twin.reported}
    if k == "fail429":
        with lock:
            twin.fail429 = cmd.get("n", 1)
            twin.fail_status = cmd.get("status", 429)
        return {"ok": True}
    if k == "method":
        rid = str(next_rid[0])
        next_rid[0] += 1
        p = pending_methods[rid] = [threading.Event(), None]
        with lock:
            stats["method_calls"] += 1
        t0 = time.monotonic()
        client.publish("$iothub/methods/POST/%s/?$rid=%s" % (cmd["name"], rid),
                       json.dumps(cmd.get("payload")))
        if not p[0].wait(cmd.get("timeout", 5)):
            return {"status": None, "error": "no answer"}
        return dict(p[1], ms=round((time.monotonic() - t0) * 1000, 3))
    if k == "c2d":
        # as the hub sends it: system properties first, every key and value
        # URL-encoded ('/' too: the bag is one topic level)
        with lock:
            stats["c2d"] += 1
            mid = "c2d-%d" % stats["c2d"]
        props = {"$.to": "/devices/%s/messages/deviceBound" % cmd["device"], "$.mid": mid}
        props.update(cmd.get("props", {}))
        bag = "&".join(urllib.parse.quote(k, safe="") + "=" + urllib.parse.quote(str(v), safe="")
                       for k, v in props.items())
        client.publish("devices/%s/messages/devicebound/%s" % (cmd["device"], bag),
                       cmd.get("payload", ""), qos=1)
        return {"ok": True, "mid": mid}
    if k == "outage":
        with lock:
            outage_until[0] = time.time() + cmd.get("s", 3)
            socks = list(live)
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        event(ev="outage", s=cmd.get("s", 3))
        return {"ok": True, "dropped": len(socks)}
    if k == "refuse":
        with lock:
            refused_devices.add(cmd["device"])
            socks = list(by_client.get(cmd["device"], ()))
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        event(ev="refuse", device=cmd["device"], dropped=len(socks))
        return {"ok": True, "dropped": len(socks)}
    if k == "stats":
        with lock:
            return dict(stats)
    return {"error": "unknown command %r" % k}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--tls-listen", type=int, help="also MQTT over TLS on this port")
    ap.add_argument("--tls-cert", help="the TLS listener's certificate (PEM)")
    ap.add_argument("--tls-key", help="the TLS listener's key (PEM)")
    ap.add_argument("--broker", type=int, required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--host", action="append", required=True,
                    help="the hub's host name (repeatable: every name it answers to)")
    ap.add_argument("--key", required=True, action="append",
                    help="a device key the hub accepts (repeatable)")
    ap.add_argument("--desired", default="{}")
    ap.add_argument("--quiet-telemetry", action="store_true")
    ap.add_argument("--allow-plain", action="store_true")
    args = ap.parse_args()
    twin.desired.update(json.loads(args.desired))
    client = mqtt.Client(client_id="azure-hub-emulator", userdata=args)
    client.on_message = on_message
    client.connect("127.0.0.1", args.broker)
    nodelay(client.socket())
    subs = [("$iothub/twin/GET/#", 0), ("$iothub/twin/PATCH/properties/reported/#", 0),
            ("$iothub/methods/res/#", 0), ("bench/echo/#", 1)]
    if not args.quiet_telemetry:
        subs.append(("devices/+/messages/events/#", 1))
    client.subscribe(subs)
    client.loop_start()
    threading.Thread(target=proxy, args=(args, args.listen, None), daemon=True).start()
    if args.tls_listen:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        threading.Thread(target=proxy, args=(args, args.tls_listen, tls), daemon=True).start()
    threading.Thread(target=control, args=(args, client), daemon=True).start()
    event(ev="ready")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
