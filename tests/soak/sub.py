#!/usr/bin/env python3
"""tests/soak/sub.py — the soak's witness: a minimal MQTT 3.1.1 subscriber.

    sub.py PORT TOPIC OUTFILE

Connects to 127.0.0.1:PORT straight (not through the proxy) with a persistent
session (clean session 0, a fixed client id), subscribes to TOPIC at QoS 1,
and writes one line per PUBLISH received: "<receive time, unix s> <payload>",
acknowledging QoS 1 messages after the line is written. Prints "subscribed"
on stdout once the SUBACK is in. Reconnects (the session keeps what it
missed) if the broker drops it. SIGTERM: flush and exit 0.
"""
import signal
import socket
import struct
import sys
import time

CLIENT_ID = b"lume-soak-witness"


def enc_str(b):
    return struct.pack("!H", len(b)) + b


def packet(ptype, flags, body):
    n = len(body)
    rl = bytearray()
    while True:
        d = n % 128
        n //= 128
        rl.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes([(ptype << 4) | flags]) + bytes(rl) + body


class Stream:
    def __init__(self, sock):
        self.s, self.buf = sock, b""

    def need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def packet(self):
        h = self.need(1)[0]
        mult, n = 1, 0
        while True:
            d = self.need(1)[0]
            n += (d & 0x7F) * mult
            mult *= 128
            if not d & 0x80:
                break
        return h >> 4, h & 0x0F, self.need(n)


def session(port, topic, out, first):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(30)
    st = Stream(s)
    body = enc_str(b"MQTT") + bytes([4, 0x00]) + struct.pack("!H", 60) + enc_str(CLIENT_ID)
    s.sendall(packet(1, 0, body))
    t, _, b = st.packet()
    if t != 2 or b[1] != 0:
        raise ConnectionError("CONNACK refused")
    s.sendall(packet(8, 2, struct.pack("!H", 1) + enc_str(topic.encode()) + bytes([1])))
    last_ping = time.monotonic()
    while True:
        try:
            t, flags, b = st.packet()
        except socket.timeout:
            t = None
        now = time.monotonic()
        if now - last_ping > 20:
            s.sendall(packet(12, 0, b""))
            last_ping = now
        if t is None:
            continue
        if t == 9 and first:
            print("subscribed", flush=True)
            first = False
        elif t == 3:
            qos = (flags >> 1) & 3
            tl = struct.unpack("!H", b[:2])[0]
            pos = 2 + tl
            pid = None
            if qos:
                pid = struct.unpack("!H", b[pos:pos + 2])[0]
                pos += 2
            out.write("%.6f %s\n" % (time.time(), b[pos:].decode("utf-8", "replace")))
            out.flush()
            if qos == 1:
                s.sendall(packet(4, 0, struct.pack("!H", pid)))


def main():
    port, topic, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    out = open(path, "a")

    def stop(*_):
        out.flush()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    first = True
    while True:
        try:
            session(port, topic, out, first)
        except (ConnectionError, OSError) as e:
            print("reconnecting:", e, file=sys.stderr, flush=True)
            first = False
            time.sleep(0.2)


if __name__ == "__main__":
    main()
