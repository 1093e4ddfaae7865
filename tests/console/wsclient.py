"""tests/console/wsclient.py — a small RFC 6455 client on the standard
library, for the console's protocol test and benchmark: it can send what a
browser never would (broken JSON, binary frames, fragments, 100 KB)."""
import base64
import json
import os
import socket
import struct


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason}")
        self.code, self.reason = code, reason


class WS:
    def __init__(self, port, path="/ws", headers=None, host="127.0.0.1", timeout=10,
                 rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect: the window the server sees stays small
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
               "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
               "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: lume-console"]
        req += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.s.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])
        if self.status != 101:
            raise ConnectionError(f"handshake answered {self.status}")

    def frame(self, opcode, data, fin=True):
        hdr = bytes([(0x80 if fin else 0) | opcode])
        n = len(data)
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.s.sendall(hdr + mask + body)

    def send(self, obj):
        self.frame(1, json.dumps(obj).encode())

    def send_text(self, text):
        self.frame(1, text.encode() if isinstance(text, str) else text)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def recv(self):
        """The next message as a dict; Closed when the server closes."""
        data = b""
        while True:
            op, payload = self.recv_frame()
            if op == 8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode(errors="replace"))
            if op == 9:
                self.frame(10, payload)
                continue
            data += payload
            if op in (0, 1):
                # fragments of one message are not sent by the console
                return json.loads(data)

    def recv_type(self, want, limit=200):
        """Skip messages until one of type want (or an error) arrives."""
        for _ in range(limit):
            m = self.recv()
            if m.get("type") in (want, "error"):
                return m
        raise AssertionError(f"no {want} message in {limit}")

    def close(self):
        try:
            self.frame(8, struct.pack(">H", 1000))
        except OSError:
            pass
        self.s.close()
