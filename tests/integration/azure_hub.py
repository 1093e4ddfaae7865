#!/usr/bin/python3
"""tests/integration/azure_hub.py — an Azure IoT Hub emulator for lume's
integration tests: a real mosquitto does the MQTT, this adds the hub.

  device ──► proxy (this, --listen) ──► mosquitto (--broker)  ◄── hub side (this, paho)

The proxy reads each connection's CONNECT, checks it as the hub does
(client id = device id, user name {hub}/{device}/?api-version=..., password a
SAS token signed with the device key: sr, sig, se), answers CONNACK 5 (not
authorized) and closes on a bad one, and otherwise forwards the CONNECT and
everything after it unchanged to mosquitto, and closes the connection when
the token expires (at se), as the hub does.

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
  {"cmd": "c2d", "payload": "text", "props": {"k": "v"}}
  {"cmd": "outage", "s": 3}                   drop every device connection and refuse
                                              new ones (no CONNACK) for s seconds
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
Events (connects, refusals, expiries, telemetry) go to stdout, one JSON line each.
"""
import argparse
import base64
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt

API = "2021-04-12"
lock = threading.Lock()
changed = threading.Condition(lock)   # the reported twin changed (under lock)
last_reported = [0.0]                 # time.monotonic() of the last reported PATCH
echoes = {}                           # echo id -> threading.Event
live = set()               # proxied sockets, for "outage"
outage_until = [0.0]
stats = {"connects": 0, "refused": 0, "expired_drops": 0, "gets": 0, "reported_patches": 0,
         "throttled": 0, "telemetry": 0, "method_calls": 0, "c2d": 0}


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

def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def read_packet(s):
    first = read_exact(s, 1)
    mult, length, hdr = 1, 0, b""
    while True:
        d = read_exact(s, 1)
        hdr += d
        length += (d[0] & 127) * mult
        mult *= 128
        if not d[0] & 128:
            break
    return first + hdr, read_exact(s, length)


def mqtt_str(b, i):
    n = int.from_bytes(b[i:i + 2], "big")
    return b[i + 2:i + 2 + n], i + 2 + n


def parse_connect(body):
    _, i = mqtt_str(body, 0)          # "MQTT"
    flags = body[i + 1]
    i += 4                            # level, flags, keepalive
    cid, i = mqtt_str(body, i)
    if flags & 0x04:
        _, i = mqtt_str(body, i)
        _, i = mqtt_str(body, i)
    user = pw = None
    if flags & 0x80:
        user, i = mqtt_str(body, i)
    if flags & 0x40:
        pw, i = mqtt_str(body, i)
    return cid.decode(), user.decode() if user else None, pw.decode() if pw else None


def check_sas(args, cid, user, pw):
    """None when the hub would accept it, else why not; and the token's se."""
    device = cid
    want_user = "%s/%s/?api-version=%s" % (args.host, device, API)
    if not user or not (user == want_user or user.startswith(want_user + "&")):
        return "user name %r is not %r" % (user, want_user), 0
    if not pw or not pw.startswith("SharedAccessSignature "):
        return "no SAS token", 0
    fields = dict(urllib.parse.parse_qsl(pw[len("SharedAccessSignature "):],
                                         keep_blank_values=True))
    sr, sig, se = fields.get("sr", ""), fields.get("sig", ""), fields.get("se", "0")
    resource = "%s/devices/%s" % (args.host, device)
    if sr != resource:
        return "token for %r, not %r" % (sr, resource), 0
    se = int(se)
    if se <= time.time():
        return "token expired at %d" % se, se
    tosign = urllib.parse.quote(resource, safe="") + "\n" + str(se)
    good = base64.b64encode(hmac.new(base64.b64decode(args.key), tosign.encode(),
                                     hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(good, sig):
        return "signature does not verify with the device key", se
    return None, se


def pipe(a, b, done):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    done.set()


def serve_client(args, c):
    try:
        hdr, body = read_packet(c)
        if time.time() < outage_until[0]:
            c.close()
            return
        if hdr[0] >> 4 != 1:
            c.close()
            return
        cid, user, pw = parse_connect(body)
        if pw is None and args.allow_plain:
            why, se = None, time.time() + 86400 * 365
        else:
            why, se = check_sas(args, cid, user, pw)
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
        event(ev="connect", client=cid, se=se, ttl=round(se - time.time(), 1))
        done = threading.Event()
        with lock:
            live.update((c, up))
        threading.Thread(target=pipe, args=(c, up, done), daemon=True).start()
        threading.Thread(target=pipe, args=(up, c, done), daemon=True).start()
        expired = not done.wait(max(0.0, se - time.time()))
        if expired:
            with lock:
                stats["expired_drops"] += 1
            event(ev="expired", client=cid, se=se)
        with lock:
            live.difference_update((c, up))
        for s in (c, up):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
    except (EOFError, OSError):
        c.close()


def proxy(args):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.listen))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        nodelay(c)
        threading.Thread(target=serve_client, args=(args, c), daemon=True).start()


# ---- the hub side ------------------------------------------------------------

class Twin:
    def __init__(self):
        self.desired = {"$version": 1}
        self.reported = {"$version": 1}
        self.fail429 = 0
        self.fail_status = 429


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
    return dict(urllib.parse.parse_qsl(topic.split("?", 1)[1])) if "?" in topic else {}


def on_message(client, args, msg):
    t = msg.topic
    if t.startswith("$iothub/twin/GET/"):
        rid = query(t).get("$rid", "")
        with lock:
            stats["gets"] += 1
            body = json.dumps({"desired": twin.desired, "reported": twin.reported})
        client.publish("$iothub/twin/res/200/?$rid=%s" % rid, body)
        event(ev="twin_get", rid=rid, version=twin.desired["$version"])
    elif t.startswith("$iothub/twin/PATCH/properties/reported/"):
        rid = query(t).get("$rid", "")
        arrived = time.monotonic()
        with lock:
            if twin.fail429 > 0:
                twin.fail429 -= 1
                stats["throttled"] += 1
                status = twin.fail_status
            else:
                stats["reported_patches"] += 1
                merge(twin.reported, json.loads(msg.payload or b"{}"))
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
            client.publish("$iothub/twin/res/%d/?$rid=%s" % (status, rid),
                           json.dumps({"errorCode": status * 1000 + 1, "message": "emulated failure"}))
        event(ev="reported_patch", rid=rid, status=status)
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
        props = dict(urllib.parse.parse_qsl(bag, keep_blank_values=True))
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
        try:
            f = c.makefile("rw")
            cmd = json.loads(f.readline())
            f.write(json.dumps(command(client, cmd)) + "\n")
            f.flush()
        except Exception as e:          # noqa: BLE001 - a test tool: say what failed
            try:
                c.sendall((json.dumps({"error": str(e)}) + "\n").encode())
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
            twin.desired["$version"] += cmd.get("skip", 0)
            merge(twin.desired, cmd["patch"])
            twin.desired["$version"] += 1
            v = twin.desired["$version"]
            body = dict(cmd["patch"], **{"$version": v})
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
        bag = urllib.parse.urlencode(cmd.get("props", {}), quote_via=urllib.parse.quote)
        with lock:
            stats["c2d"] += 1
        client.publish("devices/%s/messages/devicebound/%s" % (cmd["device"], bag),
                       cmd.get("payload", ""), qos=1)
        return {"ok": True}
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
    if k == "stats":
        with lock:
            return dict(stats)
    return {"error": "unknown command %r" % k}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--broker", type=int, required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--key", required=True)
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
    threading.Thread(target=proxy, args=(args,), daemon=True).start()
    threading.Thread(target=control, args=(args, client), daemon=True).start()
    event(ev="ready")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
