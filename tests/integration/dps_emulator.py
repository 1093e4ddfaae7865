#!/usr/bin/python3
"""tests/integration/dps_emulator.py — an Azure IoT Hub Device Provisioning
Service (DPS) emulator for lume's integration tests and the Node SDK check
(tests/azure-sdk/dps_sdk.js): a real mosquitto does the MQTT, this adds DPS.

  device ──► proxy (this: --listen plain, --tls-listen TLS) ──► mosquitto (--broker)
                                                                   ▲
                                                service side (this, paho)

The proxy reads each connection's CONNECT and checks it as DPS does (see
azure_hub.py for the hub's): client id = registration id, user name
{idScope}/registrations/{registrationId}/api-version=...[&ClientVersion=..],
password a SAS token with sr={idScope}/registrations/{registrationId},
skn=registration, signed with the enrollment's key (or, on the TLS listener
with --client-ca, no password and a client certificate that CA signed whose
CN is the registration id: an X.509 enrollment): an individual
enrollment's own (--individual REG=KEY), or for a group enrollment
(--group KEY) the device key base64(HMAC-SHA256(base64dec(KEY), REG)). A bad
token is refused as DPS refuses it (CONNACK 5, not authorized; the event
says status 401). A good one is forwarded, and from then on the proxy
scopes the connection's DPS topics to it ($dps/registrations/... <->
$dps/c/{n}/registrations/...) so each device sees only its own answers, as
with the real service.

The service side (paho on mosquitto) answers
  $dps/registrations/PUT/iotdps-register/?$rid=R          202 {"operationId", "status": "assigning"}
                                                          &retry-after=--retry-after
  $dps/registrations/GET/iotdps-get-operationstatus/?$rid=R&operationId=OP
        sooner than retry-after allows: 429 (recorded as an early poll)
        before the --polls-th poll: 202 again with retry-after
        then: 200 {"status": "assigned", "registrationState": {"assignedHub",
              "deviceId", "substatus", ...}}
A register body whose registrationId is not the connection's is answered 401.

Control: one JSON command per TCP connection on --control, one JSON answer:
  {"cmd": "assign", "registration": "r", "hub": "h", "device": "d"}
        r's next assignment (a device moved to another hub)
  {"cmd": "fail", "registration": "r", "status": "disabled"|"failed"}   next answer says so
  {"cmd": "garbage", "registration": "r"}      next answer is not JSON
  {"cmd": "throttle", "registration": "r", "n": 1}   r's next n polls answered 429
  {"cmd": "stats"}                             counters, and per registration
Events (connects, refusals, registers, polls, assignments) go to stdout as
JSON lines.
"""
import argparse
import hmac
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import paho.mqtt.client as mqtt

from mqtt_wire import enc_str, mqtt_str, packet, parse_connect, raw_fields, read_packet, sas_sign

lock = threading.Lock()
conns = {}                 # n -> registration id (authenticated)
ops = {}                   # operationId -> {"reg", "polls", "not_before"}
regs = {}                  # registration id -> its counters and next assignment
stats = {"connects": 0, "refused": 0, "registers": 0, "polls": 0, "early_polls": 0,
         "assigned": 0, "errors": 0}
next_conn = [1]


def event(**kw):
    kw["t"] = round(time.time(), 3)
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()


def derive(group_key, reg):
    return sas_sign(group_key, reg)


def reg_state(reg):
    with lock:
        return regs.setdefault(reg, {"hub": ARGS.hub, "device": reg, "substatus":
                                     "initialAssignment", "registers": 0, "polls": 0,
                                     "early_polls": 0, "assigned": 0, "fail": None,
                                     "garbage": False, "throttle": 0})


# ---- MQTT packets (3.1.1): the wire helpers are mqtt_wire.py's ------------


def rewrite(first, body, frm, to):
    """A PUBLISH's topic, or a SUBSCRIBE's/UNSUBSCRIBE's filters, from prefix frm to to."""
    kind = first >> 4
    if kind == 3:
        topic, i = mqtt_str(body, 0)
        if topic.startswith(frm):
            body = enc_str(to + topic[len(frm):]) + body[i:]
    elif kind in (8, 10):
        out, i = body[:2], 2
        while i < len(body):
            f, i = mqtt_str(body, i)
            if f.startswith(frm):
                f = to + f[len(frm):]
            out += enc_str(f)
            if kind == 8:
                out += body[i:i + 1]
                i += 1
        body = out
    return packet(first, body)


def check_sas(cid, user, pw, cn=None):
    """None when DPS would accept it, else why not. cn: the CN of a client
    certificate verified by --client-ca (an X.509 enrollment), or None."""
    want = "%s/registrations/%s/api-version=" % (ARGS.scope, cid)
    if not user or not user.startswith(want):
        return "user name %r does not start with %r" % (user, want)
    if pw is None and cn is not None:
        return None if cn == cid else "certificate CN %r is not the registration id %r" % (cn, cid)
    if cid in ARGS.individual_keys:
        key = ARGS.individual_keys[cid]
    elif ARGS.group:
        key = derive(ARGS.group, cid)
    else:
        return "no enrollment for registration %r" % cid
    if not pw or not pw.startswith("SharedAccessSignature "):
        return "no SAS token"
    # the fields as sent (raw) and URL-decoded
    raw = raw_fields(pw[len("SharedAccessSignature "):])
    f = {k: urllib.parse.unquote(v) for k, v in raw.items()}
    resource = "%s/registrations/%s" % (ARGS.scope, cid)
    if f.get("sr") != resource:
        return "token for %r, not %r" % (f.get("sr"), resource)
    if f.get("skn") != "registration":
        return "skn is %r, not 'registration'" % f.get("skn")
    se = int(f.get("se", "0"))
    if se <= time.time():
        return "token expired at %d" % se
    # the signature covers sr as it is written in the token: URL-encoded as
    # documented (lume, the C SDK), or as is (the Node SDK sends it so)
    tosign = raw["sr"] + "\n" + raw["se"]
    good = sas_sign(key, tosign)
    if not hmac.compare_digest(good, f.get("sig", "")):
        return "signature does not verify with the enrollment's key"
    return None


def pump(src, dst, frm, to, done):
    try:
        while True:
            hdr, body = read_packet(src)
            dst.sendall(rewrite(hdr[0], body, frm, to))
    except (EOFError, OSError):
        pass
    done.set()


def serve_client(c, cn=None):
    try:
        hdr, body = read_packet(c)
        if hdr[0] >> 4 != 1:
            c.close()
            return
        cid, user, pw = parse_connect(body)
        why = check_sas(cid, user, pw, cn)
        if why:
            with lock:
                stats["refused"] += 1
            event(ev="refused", client=cid, status=401, why=why)
            c.sendall(bytes([0x20, 2, 0, 5]))       # CONNACK 5: not authorized
            c.close()
            return
        with lock:
            n = next_conn[0]
            next_conn[0] += 1
            conns[n] = cid
            stats["connects"] += 1
        up = socket.create_connection(("127.0.0.1", ARGS.broker))
        up.sendall(hdr + body)
        event(ev="connect", client=cid, conn=n, auth="x509" if pw is None else "sas")
        mine = ("$dps/c/%d/registrations/" % n).encode()
        theirs = b"$dps/registrations/"
        done = threading.Event()
        threading.Thread(target=pump, args=(c, up, theirs, mine, done), daemon=True).start()
        threading.Thread(target=pump, args=(up, c, mine, theirs, done), daemon=True).start()
        done.wait()
        for s in (c, up):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with lock:
            conns.pop(n, None)
    except (EOFError, OSError, ssl.SSLError):
        c.close()


def listen(port, ctx):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        if ctx:
            try:
                c.settimeout(10)
                c = ctx.wrap_socket(c, server_side=True)
                c.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                event(ev="tls_error", why=str(e))
                c.close()
                continue
        cn = None
        peer = c.getpeercert() if ctx else None
        for rdn in (peer or {}).get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
        threading.Thread(target=serve_client, args=(c, cn), daemon=True).start()


# ---- the service side ---------------------------------------------------------

def answer(client, n, status, rid, body, retry_after=None):
    topic = "$dps/c/%d/registrations/res/%d/?$rid=%s" % (n, status, rid)
    if retry_after is not None:
        topic += "&retry-after=%d" % retry_after
    client.publish(topic, body if isinstance(body, (bytes, str)) else json.dumps(body), qos=0)


def now_utc():
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())


def on_message(client, _ud, msg):
    parts = msg.topic.split("/")          # $dps c N registrations PUT|GET ...
    try:
        n = int(parts[2])
    except (IndexError, ValueError):
        return
    with lock:
        reg = conns.get(n)
    if reg is None:
        return
    rest = "/".join(parts[3:])
    q = dict(urllib.parse.parse_qsl(msg.topic.split("?", 1)[1])) if "?" in msg.topic else {}
    rid = q.get("$rid", "")
    st = reg_state(reg)
    if rest.startswith("registrations/PUT/iotdps-register/"):
        try:
            req = json.loads(msg.payload or b"{}")
        except ValueError:
            req = {}
        if req.get("registrationId") != reg:
            with lock:
                stats["errors"] += 1
            answer(client, n, 401, rid, {"errorCode": 401002, "message":
                   "registrationId %r is not this connection's (%r)" % (
                       req.get("registrationId"), reg)})
            return
        op = "4.%s.%s" % (uuid.uuid4().hex[:16], uuid.uuid4().hex[:8])
        with lock:
            ops[op] = {"reg": reg, "polls": 0, "not_before": time.time() + ARGS.retry_after}
            stats["registers"] += 1
            st["registers"] += 1
            st["payload"] = req.get("payload")
        event(ev="register", registration=reg, rid=rid, operation=op, payload=req.get("payload"))
        answer(client, n, 202, rid, {"operationId": op, "status": "assigning"}, ARGS.retry_after)
    elif rest.startswith("registrations/GET/iotdps-get-operationstatus/"):
        op = q.get("operationId", "")
        with lock:
            o = ops.get(op)
        if not o or o["reg"] != reg:
            answer(client, n, 404, rid, {"errorCode": 404201, "message": "no operation %r" % op})
            return
        t = time.time()
        with lock:
            stats["polls"] += 1
            st["polls"] += 1
            early = t < o["not_before"] - 0.05
            if early:
                stats["early_polls"] += 1
                st["early_polls"] += 1
            else:
                o["polls"] += 1
            o["not_before"] = t + ARGS.retry_after
        event(ev="poll", registration=reg, operation=op, early=early, n=o["polls"])
        if early:
            answer(client, n, 429, rid, {"errorCode": 429001, "message":
                   "polled sooner than retry-after allows"}, ARGS.retry_after)
            return
        with lock:
            throttle = st["throttle"] > 0
            if throttle:
                st["throttle"] -= 1
                o["polls"] -= 1
        if throttle:
            event(ev="throttled", registration=reg, operation=op)
            answer(client, n, 429, rid, {"errorCode": 429001, "message": "throttled (control)"},
                   ARGS.retry_after)
            return
        if o["polls"] < ARGS.polls:
            answer(client, n, 202, rid, {"operationId": op, "status": "assigning"},
                   ARGS.retry_after)
            return
        with lock:
            fail, garbage = st["fail"], st["garbage"]
            if garbage:
                st["garbage"] = False
            else:
                st["fail"] = None
        if garbage:
            event(ev="garbage", registration=reg)
            answer(client, n, 200, rid, b'{"operationId": "' + op.encode() + b'", "status": ')
            return
        rs = {"registrationId": reg, "createdDateTimeUtc": now_utc(),
              "lastUpdatedDateTimeUtc": now_utc(), "etag": '"%s"' % uuid.uuid4().hex[:8]}
        if fail:
            rs.update(status=fail, errorCode=400209 if fail == "disabled" else 500000,
                      errorMessage="the enrollment is %s" % fail)
            answer(client, n, 200, rid, {"operationId": op, "status": fail,
                                         "registrationState": rs})
            event(ev="not_assigned", registration=reg, status=fail)
            return
        rs.update(assignedHub=st["hub"], deviceId=st["device"], status="assigned",
                  substatus=st["substatus"])
        with lock:
            stats["assigned"] += 1
            st["assigned"] += 1
        event(ev="assigned", registration=reg, hub=st["hub"], device=st["device"],
              substatus=st["substatus"])
        answer(client, n, 200, rid, {"operationId": op, "status": "assigned",
                                     "registrationState": rs})


def command(cmd):
    k = cmd["cmd"]
    if k == "assign":
        st = reg_state(cmd["registration"])
        with lock:
            st["hub"] = cmd["hub"]
            st["device"] = cmd.get("device", st["device"])
            st["substatus"] = cmd.get("substatus", "deviceDataMigrated")
        return {"ok": True}
    if k == "fail":
        st = reg_state(cmd["registration"])
        with lock:
            st["fail"] = cmd.get("status", "failed")
        return {"ok": True}
    if k == "throttle":
        st = reg_state(cmd["registration"])
        with lock:
            st["throttle"] = cmd.get("n", 1)
        return {"ok": True}
    if k == "garbage":
        st = reg_state(cmd["registration"])
        with lock:
            st["garbage"] = True
        return {"ok": True}
    if k == "stats":
        with lock:
            return dict(stats, registrations=json.loads(json.dumps(regs)))
    return {"error": "unknown command %r" % k}


def control(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        try:
            f = c.makefile("rw")
            f.write(json.dumps(command(json.loads(f.readline()))) + "\n")
            f.flush()
        except Exception as e:          # noqa: BLE001 - a test tool: say what failed
            try:
                c.sendall((json.dumps({"error": str(e)}) + "\n").encode())
            except OSError:
                pass
        c.close()


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--tls-listen", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca", help="CA of X.509 enrollments' device certificates")
    ap.add_argument("--broker", type=int, required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--scope", required=True)
    ap.add_argument("--individual", action="append", default=[], help="REG=BASE64KEY")
    ap.add_argument("--group", help="a group enrollment's base64 key")
    ap.add_argument("--hub", required=True, help="the hub assigned by default")
    ap.add_argument("--polls", type=int, default=2, help="assign at the K-th poll")
    ap.add_argument("--retry-after", type=int, default=1)
    ARGS = ap.parse_args()
    ARGS.individual_keys = dict(x.split("=", 1) for x in ARGS.individual)
    client = mqtt.Client(client_id="dps-emulator")
    client.on_message = on_message
    client.connect("127.0.0.1", ARGS.broker)
    client.subscribe([("$dps/c/+/registrations/PUT/#", 0), ("$dps/c/+/registrations/GET/#", 0)])
    client.loop_start()
    threading.Thread(target=listen, args=(ARGS.listen, None), daemon=True).start()
    if ARGS.tls_listen:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
        if ARGS.client_ca:              # X.509 enrollments: a client certificate it signed
            ctx.load_verify_locations(ARGS.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        threading.Thread(target=listen, args=(ARGS.tls_listen, ctx), daemon=True).start()
    threading.Thread(target=control, args=(ARGS.control,), daemon=True).start()
    time.sleep(0.3)                     # the subscriptions are in place
    event(ev="ready")
    while True:
        time.sleep(3600)


ARGS = None

if __name__ == "__main__":
    main()
