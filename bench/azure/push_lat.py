#!/usr/bin/python3
"""bench/azure/push_lat.py — the pushes of bench/azure/run, section 2.

  push_lat.py CONTROL_PORT PATCHES

PATCHES holds one desired patch per line, as `lume push --dialect azure`
prints them ({"scripts": {"bench": {"version": "pN", ...}}}). For each, in
order, through the hub emulator's control port (tests/integration/
azure_hub.py): the patch, awaited until the reported twin says
scripts.bench is running that version with status active (the emulator
times it: from just before its publish to the reported PATCH); then a
direct method "ping" to the device (answered by its script); then a QoS 1
echo through the broker from the hub side. Prints one JSON object:
{"push": [ms...], "method": [ms...], "echo": [ms...], "failed": k,
"error": "first failure"}."""
import json
import socket
import sys


def ctl(port, cmd):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(json.dumps(cmd).encode() + b"\n")
    ans = json.loads(s.makefile().readline())
    s.close()
    return ans


def main():
    port = int(sys.argv[1])
    out = {"push": [], "method": [], "echo": [], "failed": 0, "error": None}

    def fail(why):
        out["failed"] += 1
        out["error"] = out["error"] or why

    for line in open(sys.argv[2]):
        patch = json.loads(line)
        name, bundle = next(iter(patch["scripts"].items()))
        a = ctl(port, {"cmd": "patch", "patch": patch, "timeout": 10,
                       "await": {"path": "scripts." + name,
                                 "match": {"running": bundle["version"], "status": "active"}}})
        if "ms" in a:
            out["push"].append(a["ms"])
        else:
            fail("push %s: %s" % (bundle["version"], a.get("error")))
        m = ctl(port, {"cmd": "method", "name": "ping", "payload": None})
        if m.get("status") == 200:
            out["method"].append(m["ms"])
        else:
            fail("ping: %r" % m)
        e = ctl(port, {"cmd": "echo"})
        if "ms" in e:
            out["echo"].append(e["ms"])
        else:
            fail("echo: %r" % e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
