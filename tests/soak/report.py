#!/usr/bin/env python3
"""tests/soak/report.py — what the fault soak delivered.

    report.py ARRIVALS DUMP... [--json FILE]

ARRIVALS: the witness's lines, "<receive time> <run> <n> <sample time>".
DUMP: `lume outbox dump` of the store taken after each SIGKILL (and after
the final stop): "id lane qos topic <run> <n> <sample time>".

Which messages were committed: the script numbers its messages 1, 2, 3 ...
per run (a run is one start of lume), all in the telemetry lane, and the
outbox commits a lane in order. So when message n of a run is known to have
been committed — it arrived (lume sends only committed messages) or it was
still in the outbox after the kill — every message before it in that run
was committed too. Committed(run) = 1 .. max(n arrived or dumped); what the
script published after the last commit before a SIGKILL was never
committed and may vanish (that is what synchronous commits every 50 ms
trade away). Lost = committed and never arrived.
"""
import json
import sys
from collections import defaultdict


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def main():
    args = sys.argv[1:]
    out_json = None
    if "--json" in args:
        i = args.index("--json")
        out_json = args[i + 1]
        del args[i:i + 2]
    arrivals_path, dumps = args[0], args[1:]

    seen = defaultdict(int)            # (run, n) -> times arrived
    first_latency = {}                 # (run, n) -> s, first arrival
    top = defaultdict(int)             # run -> highest n known committed
    bad_lines = 0
    with open(arrivals_path, errors="replace") as f:
        for line in f:
            p = line.split()
            if len(p) != 4:
                bad_lines += 1
                continue
            recv, run, n, t = float(p[0]), p[1], int(p[2]), float(p[3])
            key = (run, n)
            seen[key] += 1
            if key not in first_latency:
                first_latency[key] = recv - t
            top[run] = max(top[run], n)
    in_outbox = 0
    for d in dumps:
        with open(d, errors="replace") as f:
            for line in f:
                p = line.split()
                if len(p) != 7 or not p[3].endswith("/telemetry/seq"):
                    continue
                run, n = p[4], int(p[5])
                in_outbox += 1
                top[run] = max(top[run], n)

    committed = sum(top.values())
    lost = []
    for run, hi in top.items():
        for n in range(1, hi + 1):
            if (run, n) not in seen:
                lost.append((run, n))
    dups = sum(c - 1 for c in seen.values() if c > 1)
    lat = sorted(first_latency.values())
    r = {
        "runs": len(top),
        "committed": committed,
        "arrived_unique": len(seen),
        "arrived_total": sum(seen.values()),
        "lost": len(lost),
        "lost_first": ["%s:%d" % k for k in sorted(lost)[:10]],
        "duplicated": dups,
        "dumped_after_kills": in_outbox,
        "latency_ms": {"p50": round(pct(lat, 50) * 1000, 1), "p99": round(pct(lat, 99) * 1000, 1),
                       "p999": round(pct(lat, 99.9) * 1000, 1),
                       "max": round(lat[-1] * 1000, 1) if lat else 0.0},
        "unparsed_lines": bad_lines,
    }
    print("runs of lume (starts)      %d" % r["runs"])
    print("committed messages         %d" % r["committed"])
    print("arrived (unique / total)   %d / %d" % (r["arrived_unique"], r["arrived_total"]))
    print("lost among committed       %d%s" % (r["lost"], ("  first: " + ", ".join(r["lost_first"])) if lost else ""))
    print("duplicated (extra copies)  %d" % r["duplicated"])
    print("in the outbox after kills  %d (committed, not yet acknowledged)" % r["dumped_after_kills"])
    print("latency sample->witness    p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms"
          % (r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["p999"],
             r["latency_ms"]["max"]))
    if out_json:
        with open(out_json, "w") as f:
            json.dump(r, f, indent=1)
    return 0 if not lost and committed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
