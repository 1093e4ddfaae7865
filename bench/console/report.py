"""bench/console/report.py SECONDS STATS0 STATS20 CLIENTS20 [STATS0b STATS20b CLIENTS20b]
— the console benchmark's table: sampler lateness (worst of the 4 channels)
with 0 clients beside 20, per round."""
import json
import sys

secs = sys.argv[1]
files = sys.argv[2:]
rounds = [files[i:i + 3] for i in range(0, len(files), 3)]


def worst(stats, key):
    return max(s[key] for s in stats["sensors"].values())


rows = []
for r, (f0, f20, fc) in enumerate(rounds, 1):
    s0, s20, c = (json.load(open(f)) for f in (f0, f20, fc))
    for label, s in (("0 clients (floor)", s0), ("20 clients", s20)):
        con = s.get("console", {})
        rows.append((r, label, worst(s, "late_p50_us"), worst(s, "late_p99_us"),
                     worst(s, "late_p999_us"), sum(x["samples"] for x in s["sensors"].values()),
                     sum(x["overruns"] for x in s["sensors"].values()),
                     sum(x["drops"] for x in s["sensors"].values()),
                     con.get("frames_dropped", 0), s["process"]["rss_kb"],
                     c["messages"] if s is s20 else 0))
print(f"| round | console clients | lateness p50 | p99 | p99.9 | samples | overruns | ring drops | frames dropped | rss kB | messages to clients in {secs} s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]:.1f} µs | {r[3]:.1f} µs | {r[4]:.1f} µs | {r[5]:,} | {r[6]} | {r[7]} | {r[8]} | {r[9]:,} | {r[10]:,} |")
p0 = [r[3] for r in rows if r[1].startswith("0")]
p20 = [r[3] for r in rows if r[1].startswith("20")]
spread0 = max(p0) - min(p0) if len(p0) > 1 else 0
diff = max(p20) - max(p0)
noise = max(spread0, 0.1 * max(p0))
print()
print(f"p99 with 20 clients {max(p20):.1f} µs (worst round) vs 0 clients {max(p0):.1f} µs: "
      f"{'+' if diff >= 0 else ''}{diff:.1f} µs; noise (spread of the 0-client rounds, at least 10 %): "
      f"{noise:.1f} µs — goal: unchanged within noise: {'met' if diff <= noise else 'NOT met'}")
