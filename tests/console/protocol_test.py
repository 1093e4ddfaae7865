"""tests/console/protocol_test.py PORT TOKEN — the console's WebSocket and
HTTP protocol against a running lume (started by
tests/integration/test_console.sh). Prints TAP lines."""
import http.client
import json
import os
import sys
import time

from wsclient import WS, Closed

PORT, TOKEN = int(sys.argv[1]), sys.argv[2]
n = failed = 0


def check(desc, cond, detail=""):
    global n, failed
    n += 1
    if cond:
        print(f"ok {n} - {desc}")
    else:
        failed += 1
        print(f"not ok {n} - {desc}")
        if detail:
            print(f"#   {detail}")
    sys.stdout.flush()


def get(path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def refused(headers=None, path="/ws"):
    """(code, reason) of the close a WebSocket gets at once, or None."""
    try:
        w = WS(PORT, path=path, headers=headers)
    except ConnectionError as e:
        return ("handshake", str(e))
    try:
        m = w.recv()
        return None if m else None
    except Closed as e:
        return (e.code, e.reason)
    except ConnectionError:
        return ("dropped", "")
    finally:
        w.s.close()


# ---- HTTP -----------------------------------------------------------------
st, h, _ = get("/")
check("GET / without the token: 401", st == 401, f"status {st}")
st, h, _ = get("/?token=wrong-token-123")
check("GET / with a wrong token: 401", st == 401, f"status {st}")
st, h, body = get(f"/?token={TOKEN}")
check("GET /?token=TOKEN: 200 text/html with the page",
      st == 200 and h.get("content-type", "").startswith("text/html") and b"console.js" in body,
      f"status {st} {h.get('content-type')}")
cookie = h.get("set-cookie", "")
check("the page sets an HttpOnly SameSite=Strict token cookie",
      f"lume_console_token={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie,
      cookie)
st, h, body = get("/console.js", {"Cookie": f"lume_console_token={TOKEN}"})
check("console.js with the cookie: 200 text/javascript, no-cache, an ETag",
      st == 200 and h.get("content-type", "").startswith("text/javascript")
      and h.get("cache-control") == "no-cache" and h.get("etag"), str(h))
st2, h2, body2 = get("/console.js", {"Cookie": f"lume_console_token={TOKEN}",
                                      "If-None-Match": h.get("etag", "")})
check("console.js again with If-None-Match: 304, no body", st2 == 304 and body2 == b"", f"{st2}")
st, h, _ = get("/console.css", {"Authorization": f"Bearer {TOKEN}"})
check("console.css with a bearer token: 200 text/css",
      st == 200 and h.get("content-type", "").startswith("text/css"), f"{st} {h}")
st, _, _ = get(f"/etc/passwd?token={TOKEN}")
check("a path that is not an asset: 404", st == 404, f"{st}")

# ---- access to the WebSocket ------------------------------------------------
r = refused()
check("WebSocket without a token: closed with 1008", r and r[0] == 1008, str(r))
r = refused(path="/ws?token=wrong-token-123")
check("WebSocket with a wrong token: closed with 1008", r and r[0] == 1008, str(r))
r = refused(path=f"/ws?token={TOKEN}", headers={"Origin": "http://evil.example"})
check("WebSocket from a page of another origin: closed with 1008", r and r[0] == 1008, str(r))

# ---- the protocol --------------------------------------------------------------
w = WS(PORT, path=f"/ws?token={TOKEN}", headers={"Origin": f"http://127.0.0.1:{PORT}"})
hello = w.recv()
names = [s["name"] for s in hello.get("sensors", [])]
check("hello names the board's sensors", hello.get("type") == "hello" and len(names) > 0, str(hello)[:300])
pts = w.recv_type("points")
check("points arrive: [min, max, last, n] per channel",
      pts.get("type") == "points" and pts["d"] and
      all(len(v) == 4 and v[0] <= v[2] <= v[1] and v[3] >= 1 for v in pts["d"].values()), str(pts)[:300])
stats = w.recv_type("stats")
check("stats arrive with sensors, scripts, outbox and the twin",
      all(k in stats.get("stats", {}) for k in ("sensors", "scripts", "outbox")) and "twin" in stats,
      str(stats)[:300])


def answer_to(send, want="error"):
    send()
    return w.recv_type(want)


def alive():
    w.send({"type": "ping", "id": 77})
    m = w.recv_type("pong")
    return m.get("type") == "pong" and m.get("id") == 77


m = answer_to(lambda: w.send_text("{not json"))
check("malformed JSON: an error naming it, connection open",
      m["type"] == "error" and "not JSON" in m["error"] and alive(), str(m))
m = answer_to(lambda: w.send_text("[1,2,3]"))
check("a JSON array: an error, connection open", m["type"] == "error" and "object" in m["error"] and alive(), str(m))
m = answer_to(lambda: w.send({"id": 3}))
check("an object without a type: an error", m["type"] == "error" and "type" in m["error"], str(m))
m = answer_to(lambda: w.send({"type": "launch-missiles", "id": 4}))
check("an unknown type: an error naming it, with the id",
      m["type"] == "error" and "launch-missiles" in m["error"] and m.get("id") == 4 and alive(), str(m))
m = answer_to(lambda: w.frame(2, b"\x00\x01\x02"))
check("a binary frame: an error", m["type"] == "error" and "binary" in m["error"] and alive(), str(m))
m = answer_to(lambda: w.send_text('{"type":"eval","code":"' + "x" * 100000 + '"}'))
check("a 100 KB message: 'too large', connection open",
      m["type"] == "error" and "too large" in m["error"] and alive(), str(m)[:300])


def fragments():
    part = b"y" * 30000
    w.frame(1, b'{"type":"eval","code":"' + part, fin=False)
    w.frame(0, part, fin=False)
    w.frame(0, part + b'"}', fin=True)


m = answer_to(fragments)
check("a 90 KB message in three fragments: 'too large'", m["type"] == "error" and "too large" in m["error"], str(m)[:300])
m = answer_to(lambda: w.send({"type": "ping", "id": "after"}), want="pong")
check("a small message afterwards is answered", m.get("id") == "after", str(m))

# ---- the REPL box's evaluator (bindings/repl.h) ----------------------------------
check("hello says the REPL is there", hello.get("repl") is True, str(hello.get("repl")))
w.send({"type": "eval", "id": 10, "code": "1 + 2"})
m = w.recv_type("eval")
check("eval '1 + 2' answers 3", m.get("id") == 10 and m.get("status") == "ok" and m.get("output", "").strip() == "3", str(m))
w.send({"type": "eval", "id": 11, "code": "function sq(x)"})
m = w.recv_type("eval")
check("an incomplete chunk answers 'more'", m.get("status") == "more", str(m))
w.send({"type": "eval", "id": 12, "code": "return x * x end"})
m = w.recv_type("eval")
w.send({"type": "eval", "id": 13, "code": "sq(7)"})
m = w.recv_type("eval")
check("... the finished function is callable (sq(7) = 49)", m.get("output", "").strip() == "49", str(m))
w.send({"type": "eval", "id": 14, "code": "error('boom')"})
m = w.recv_type("eval")
check("a run-time error answers status error with the message",
      m.get("status") == "error" and "boom" in m.get("output", ""), str(m))
w.send({"type": "complete", "id": 15, "text": "lume.pub"})
m = w.recv_type("complete")
check("complete 'lume.pub' offers lume.publish", "lume.publish" in m.get("candidates", []), str(m))
w.send({"type": "eval", "id": 16, "code": ".scripts"})
m = w.recv_type("eval")
check("a dot-command (.scripts) lists the scripts", m.get("status") == "ok" and "rules" in m.get("output", ""), str(m)[:300])
w.send({"type": "eval", "id": 18, "code": 'print("bytes \\255\\254 end")'})
m = w.recv_type("eval")
check("output that is not UTF-8 arrives as valid UTF-8 ('?' for the bad bytes)",
      m.get("status") == "ok" and "bytes ?? end" in m.get("output", ""), str(m))
w.send({"type": "eval", "id": 19, "code": "while true do end"})
m = w.recv_type("eval")
check("a runaway evaluation is ended by the REPL's budget, with an error",
      m.get("id") == 19 and m.get("status") == "error", str(m))
check("... and the console answers again", alive())
w.send({"type": "eval", "id": 17, "code": 42})
m = w.recv_type("eval")
check("eval with code that is not a string: an error", m["type"] == "error" and "code" in m["error"], str(m))

# ---- 20 clients at once --------------------------------------------------------
clients = [WS(PORT, path=f"/ws?token={TOKEN}") for _ in range(20)]
got = 0
for c in clients:
    if c.recv().get("type") == "hello" and c.recv_type("points").get("type") == "points":
        got += 1
check("20 clients at once each get hello and live points", got == 20, f"{got} of 20")
st = clients[0].recv_type("stats")
cons = st["stats"].get("console", {})
check("stats count the 21 clients and the bad messages",
      cons.get("clients") == 21 and cons.get("bad_messages", 0) >= 8, str(cons))
samples1 = sum(s["samples"] for s in st["stats"]["sensors"].values())
time.sleep(1.2)
st = clients[0].recv_type("stats")
samples2 = sum(s["samples"] for s in st["stats"]["sensors"].values())
check("the sampler keeps sampling with 21 clients", samples2 > samples1, f"{samples1} -> {samples2}")

# ---- a client that stops reading ------------------------------------------------
# 150 answers of 60 KB (9 MB: more than the kernel buffers hold) to a client
# with a 4 KB receive window that reads nothing: its queue stays bounded, the
# newest frames are dropped and counted, the others are not slowed.
probe = WS(PORT, path=f"/ws?token={TOKEN}")
rss0 = probe.recv_type("stats")["stats"]["process"]["rss_kb"]
probe.close()
slow = WS(PORT, path=f"/ws?token={TOKEN}", rcvbuf=4096)
for i in range(150):
    slow.send({"type": "eval", "id": 1000 + i, "code": "return ('x'):rep(60000)"})
time.sleep(2)
fresh = WS(PORT, path=f"/ws?token={TOKEN}")
t0 = time.monotonic()
fresh.recv_type("points")
waited = time.monotonic() - t0
st = fresh.recv_type("stats")
cons = st["stats"].get("console", {})
check("a client that stops reading: frames dropped and counted", cons.get("frames_dropped", 0) > 0, str(cons))
check("... the other clients still get points", waited < 5, f"{waited:.1f} s")
rss = st["stats"]["process"]["rss_kb"]
print(f"# RSS {rss0} kB before the slow client, {rss} kB after")
if os.environ.get("LUME_ASAN"):
    # ASan's quarantine holds freed memory back: RSS says nothing there
    check("... lume's memory stays bounded # SKIP lume is built with ASan", True)
else:
    check("... lume's memory stays bounded (RSS grows by less than 9 MB, the answers due)",
          rss - rss0 < 9 * 1024, f"{rss0} -> {rss} kB")
slow.s.close()
fresh.close()
for c in clients:
    c.close()
w.close()
print(f"# {n} checks, {failed} failed")
sys.exit(1 if failed else 0)
