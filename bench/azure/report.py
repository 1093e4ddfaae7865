#!/usr/bin/python3
"""bench/azure/report.py — the tables of bench/azure/run.

  report.py throughput|push|renewal RESULTS.jsonl   a table from the JSON lines
  report.py gaps TIMES LUME_LOG HUB_EVENTS DEVICE   the renewal gaps, as JSON

gaps: TIMES is count_sub --times output ("SEQ WALL_S" per arrival), LUME_LOG
the device's log at level info, HUB_EVENTS the emulator's stdout (one JSON
event a line: its connects and expired-token drops of DEVICE are counted). A
renewal is lume's "reconnecting: SAS token renewal" line (the DISCONNECT is
sent right then); its gap is the longest of the gaps between arrivals that
overlap that millisecond and the gap after them (the first arrival after it
may still be one the old connection carried). The floor is the same measure
taken at instants every 10 ms at least 100 ms away from any renewal: what a
renewal costing nothing would show on this machine at this load."""
import bisect
import datetime
import json
import re
import sys

FLOOR_STEP_S = 0.01      # the floor's instants
FLOOR_CLEAR_S = 0.1      # ... at least this far from a renewal
RENEW_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z .*reconnecting: SAS token renewal")


def pct(v, p):
    """Nearest rank: the smallest value with at least p % at or below it."""
    if not v:
        return None
    v = sorted(v)
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


def ms(x):
    return "-" if x is None else "%.3g" % x


def grouped(x):
    return "-" if x is None else "{:,.0f}".format(x)


def table(head, rows):
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
    print(line(head))
    print("|-" + "-|-".join("-" * x for x in w) + "-|")
    for r in rows:
        print(line(r))


def runs(path, bench):
    out = []
    for line in open(path):
        if line.startswith("{"):
            r = json.loads(line)
            if r.get("bench") == bench:
                out.append(r)
    return out


def throughput(path):
    rs = runs(path, "tp")
    rows, notes = [], []
    for p in ("direct", "proxy"):
        for q in (1, 0):
            best, every, lost, cpu = {}, {"azure": [], "mqtt": []}, {"azure": 0, "mqtt": 0}, \
                {"azure": [], "mqtt": []}
            rates = {"azure": [], "mqtt": []}
            for r in rs:
                if r["path"] != p or r["qos"] != q:
                    continue
                d, s = r["dialect"], r["sub"]
                miss, dups = s.get("missing", 0), s.get("dups", 0)
                every[d].append(grouped(s.get("rate")) + (" (%d missing)" % miss if miss else "")
                                + (" (%d dup)" % dups if dups else ""))
                lost[d] += miss
                cpu[d].append(r.get("lume_cpu_s", 0) * 100000 / max(1, s.get("expected", 1)))
                if not miss and s.get("rate", 0) > best.get(d, 0):
                    best[d] = s["rate"]
                if not miss:
                    rates[d].append(s.get("rate", 0))
            if not every["azure"] and not every["mqtt"]:
                continue
            a, m = best.get("azure"), best.get("mqtt")
            ratio = a / m if a and m else None
            ma, mm = pct(rates["azure"], 50), pct(rates["mqtt"], 50)
            mratio = "%.3f" % (ma / mm) if ma and mm else "-"
            met = ratio is not None and ratio >= 0.95 and lost["azure"] == 0
            label = "straight to mosquitto" if p == "direct" else "through the emulator's proxy"
            rows.append([label, q, grouped(a), grouped(m), "%.3f" % ratio if ratio else "-",
                         mratio, ">= 0.95", "yes" if met else "NO"])
            notes.append("%s, QoS %d — azure: %s; mqtt: %s; lume CPU s per 100,000 (mean): "
                         "azure %.2f, mqtt %.2f" % (label, q, ", ".join(every["azure"]),
                                                    ", ".join(every["mqtt"]),
                                                    sum(cpu["azure"]) / max(1, len(cpu["azure"])),
                                                    sum(cpu["mqtt"]) / max(1, len(cpu["mqtt"]))))
    table(["path", "QoS", "azure msg/s", "mqtt msg/s", "azure / mqtt", "(medians)", "goal",
           "met"], rows)
    print()
    print("best round shown (a round with missing messages does not count); every round:")
    for n in notes:
        print("  " + n)


def push(path):
    rows = []
    for r in runs(path, "push"):
        lat = r["lat"]
        n = len(lat["push"])
        p50 = pct(lat["push"], 50)
        met = p50 is not None and p50 <= 20 and lat["failed"] == 0
        rows.append(["desired patch -> reported active", "%d/%d" % (n, n + lat["failed"]),
                     ms(p50), ms(pct(lat["push"], 99)), ms(max(lat["push"] or [0])),
                     "p50 <= 20 ms", "yes" if met else "NO"])
        rows.append(["floor: direct method ping (device's script)", len(lat["method"]),
                     ms(pct(lat["method"], 50)), ms(pct(lat["method"], 99)),
                     ms(max(lat["method"] or [0])), "-", "-"])
        rows.append(["floor: QoS 1 echo hub side -> broker -> hub side", len(lat["echo"]),
                     ms(pct(lat["echo"], 50)), ms(pct(lat["echo"], 99)),
                     ms(max(lat["echo"] or [0])), "-", "-"])
        if lat["failed"]:
            print("%d failure(s), first: %s" % (lat["failed"], lat["error"]))
        tw = (r.get("stats") or {}).get("twin") or {}
        rows_note = "bundle source %d bytes; device twin counters: patches_applied %s, " \
                    "patch_gaps %s, gets %s" % (r["bytes"], tw.get("patches_applied", "-"),
                                                tw.get("patch_gaps", "-"), tw.get("gets", "-"))
    table(["what", "n", "p50 ms", "p99 ms", "max ms", "goal", "met"], rows)
    print()
    if rows:
        print(rows_note)


def gaps(times, lume_log, events, device):
    arr = []
    for line in open(times):
        seq, t = line.split()
        arr.append(float(t))
    arr.sort()
    renewals = []
    for line in open(lume_log):
        m = RENEW_RE.match(line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            if arr and arr[0] < t < arr[-1]:
                renewals.append(t)
    connects = expired = 0
    for line in open(events):
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("client") == device:
                connects += e.get("ev") == "connect"
                expired += e.get("ev") == "expired"
    g = [(arr[i], arr[i + 1] - arr[i]) for i in range(len(arr) - 1)]
    starts = [t for t, d in g]

    def gap_at(c):
        """The gaps overlapping [c, c + 1 ms] (a log time is cut to the ms)
        and the one after them: the longest, in ms."""
        i = max(0, bisect.bisect_right(starts, c) - 1)
        k = bisect.bisect_right(starts, c + 0.001)
        pair = [x for x in range(i, k + 1) if x < len(g)]
        return max(g[x][1] for x in pair) * 1000 if pair else None

    per = [x for x in map(gap_at, renewals) if x is not None]
    # the floor: the same measure at instants every FLOOR_STEP_S, away from
    # renewals (a free renewal would look like these)
    floor, c, r = [], arr[0] if arr else 0, sorted(renewals)
    while arr and c < arr[-1]:
        j = bisect.bisect_left(r, c - FLOOR_CLEAR_S)
        if not (j < len(r) and r[j] <= c + FLOOR_CLEAR_S):
            x = gap_at(c)
            if x is not None:
                floor.append(x)
        c += FLOOR_STEP_S
    print(json.dumps({"renewals": len(renewals), "hub_connects": connects, "expired": expired,
                      "gap_ms": [round(x, 3) for x in per],
                      "floor": {"n": len(floor), "p50_ms": pct(floor, 50),
                                "p99_ms": pct(floor, 99), "max_ms": max(floor or [0])}}))


def renewal(path):
    rows, notes = [], []
    for r in runs(path, "renewal"):
        gp, s, fl = r["gaps"], r["sub"], r["gaps"]["floor"]
        label = "straight to mosquitto" if r["path"] == "direct" else "through the emulator's proxy"
        p99 = pct(gp["gap_ms"], 99)
        ok = p99 is not None and p99 <= 50 and s.get("missing", 1) == 0 and gp["expired"] == 0 \
            and gp["renewals"] >= 20
        rows.append(["renewal gap, " + label, len(gp["gap_ms"]), ms(pct(gp["gap_ms"], 50)),
                     ms(p99), ms(max(gp["gap_ms"] or [0])),
                     "p99 <= 50 ms, >= 20 renewals, 0 missing", "yes" if ok else "NO"])
        rows.append(["floor: the same measure away from renewals, " + label, fl["n"], ms(fl["p50_ms"]),
                     ms(fl["p99_ms"]), ms(fl["max_ms"]), "-", "-"])
        tw = (r.get("stats") or {}).get("twin") or {}
        net = (r.get("stats") or {}).get("net") or {}
        notes.append("%s: token TTL %s s; renewals %d (lume's token_renewals %s; connects the "
                     "proxy checked %s), expired tokens dropped by the hub %d; messages %s, "
                     "missing %s, duplicates %s (lume resent %s)"
                     % (label, r["ttl_s"], gp["renewals"], tw.get("token_renewals", "-"),
                        gp["hub_connects"] if r["path"] == "proxy" else "-", gp["expired"],
                        s.get("expected"), s.get("missing"), s.get("dups"),
                        net.get("resent", "-")))
    table(["what", "n", "p50 ms", "p99 ms", "max ms", "goal", "met"], rows)
    print()
    for n in notes:
        print(n)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "throughput":
        throughput(sys.argv[2])
    elif what == "push":
        push(sys.argv[2])
    elif what == "renewal":
        renewal(sys.argv[2])
    elif what == "gaps":
        gaps(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit("usage: report.py throughput|push|renewal RESULTS.jsonl | gaps TIMES LUME_LOG EVENTS DEVICE")
