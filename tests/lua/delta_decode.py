#!/usr/bin/env python3
"""A second decoder of lume.delta's packed form (format version 2), written
from docs/delta.md alone, to show that the document is enough: what a cloud
function would run. tests/lua/stdlib_delta_spec.lua compares its output
with lume.delta's own decoder.

    python3 tests/lua/delta_decode.py FILE   (FILE: one packed string per line)

Prints one JSON line per input line: the list of series
{"name", "precision", "values", "times"?}, or {"error": "..."}.
"""
import base64
import binascii
import json
import sys

MAX_EXP = 22
LIMIT = 2 ** 53


class Bad(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        if self.pos >= len(self.data):
            raise Bad("truncated at byte %d" % self.pos)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uvarint(self):
        z = 0
        for i in range(8):
            b = self.byte()
            z |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                return z
        raise Bad("varint longer than 8 bytes")

    def svarint(self):
        z = self.uvarint()
        return (z >> 1) ^ -(z & 1)

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Bad("truncated at byte %d" % self.pos)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b


def value(q, m, e):
    x = float(q * m)                      # exact: |q * m| < 2^53
    return x / 10.0 ** -e if e < 0 else x * 10.0 ** e


def precision(r):
    m, e = r.svarint(), r.svarint()
    if m < 1 or abs(e) > MAX_EXP:
        raise Bad("bad precision %d * 10^%d" % (m, e))
    return m, e


def column(r, n, m, e, every, order, base):
    out, q, d = [], 0, None
    for i in range(n):
        x = r.svarint()
        if i == 0 or (every and i % every == 0):   # a keyframe
            q, d = base + x, None
        elif order == 1 or d is None:              # a difference
            d = x
            q += d
        else:                                      # a difference of differences
            d += x
            q += d
        if abs(q * m) >= LIMIT:
            raise Bad("value out of range")
        out.append(value(q, m, e))
    return out


def decode(text):
    text = text.strip()
    raw = text.encode("latin-1") if text[:2] == "LD" and ord(text[2]) < 0x20 else None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise Bad("not base64: %s" % e)
    if raw[:2] != b"LD":
        raise Bad("no LD magic")
    if len(raw) < 3 or raw[2] != 2:
        raise Bad("format version %s is not supported" % (raw[2] if len(raw) > 2 else None))
    r = Reader(raw)
    r.pos = 3
    series = []
    count = r.uvarint()
    tm, te = precision(r)
    base = r.svarint()
    for _ in range(count):
        name = r.take(r.uvarint()).decode("utf-8")
        m, e = precision(r)
        n, every, flags = r.uvarint(), r.uvarint(), r.byte()
        if flags & ~7 or (flags & 4 and not flags & 1):
            raise Bad("unknown flags %#x" % flags)
        s = {"name": name, "precision": value(1, m, e),
             "values": column(r, n, m, e, every, 2 if flags & 2 else 1, 0)}
        if flags & 1:
            s["times"] = column(r, n, tm, te, every, 2 if flags & 4 else 1, base)
        series.append(s)
    if r.pos != len(raw):
        raise Bad("%d bytes after the last series" % (len(raw) - r.pos))
    return series


def main():
    with open(sys.argv[1]) as f:
        for line in f:
            try:
                print(json.dumps(decode(line)))
            except Bad as e:
                print(json.dumps({"error": str(e)}))


if __name__ == "__main__":
    main()
