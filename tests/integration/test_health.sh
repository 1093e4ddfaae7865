#!/usr/bin/env bash
# The health channel: a heartbeat on its own topic, at the period desired
# in health.period_s, that keeps its period while a script floods the
# telemetry lanes far faster than the link drains them (real mosquitto,
# counted at the broker with mosquitto_sub).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s --max-inflight 10 || exit 1
BROKER_PORT=$s_PORT
D=hdev
# desired before the device starts: a heartbeat every second
mosq_pub s "lume/$D/desired" '{"$version":1,"health":{"period_s":1}}' -r || exit 1
mosq_sub s "$T/health.out" "lume/$D/health" -F '%U %p' || exit 1

# the flood: 1,000 messages every 10 ms on the telemetry and bulk lanes
FLOOD='local n = 0
lume.timer.every(10, function()
  for _ = 1, 1000 do
    n = n + 1
    lume.publish("flood", "flood " .. n, { priority = n % 2 == 0 and "telemetry" or "bulk" })
  end
end)'
d="$T/$D"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', backoff_min_ms = 50, backoff_max_ms = 500" "$FLOOD"
start_bg dev "$LUME" run --config "$d/lume.conf.lua"
PID=$LAST_PID
check "the device connects" wait_for 10 grep -q "mqtt: connected" "$T/dev.err"
check "reported.health.period_s is the desired 1" wait_for 10 reported_is $D health.period_s 1
start=$(date +%s.%N)          # count from here: the flood is under way
sleep 8
awk -v s="$start" '$1 >= s && $1 < s + 8' "$T/health.out" >"$T/health.8s"
n=$(grep -c . "$T/health.8s")
gap=$(awk '{ if (NR > 1 && $1 - last > max) max = $1 - last; last = $1 } END { printf "%.2f", max + 0 }' "$T/health.8s")
depth=$(tail -n 1 "$T/health.8s" | cut -d' ' -f2- | lua5.4 "$ROOT/tests/integration/jget.lua" outbox.telemetry)
echo "# $n heartbeats in 8 s, longest gap ${gap} s, telemetry lane depth at the last one: $depth"
check "7 to 9 heartbeats in 8 s while flooded ($n)" test "$n" -ge 7 -a "$n" -le 9
check "no gap between heartbeats longer than 1.5 s ($gap)" awk "BEGIN { exit !($gap <= 1.5) }"
check "the telemetry lane was flooded (depth $depth at the last heartbeat)" test "${depth:-0}" -gt 1000

last=$(tail -n 1 "$T/health.8s" | cut -d' ' -f2-)
field() { printf '%s' "$last" | lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
has() { [ "$(field "$1")" != nil ]; }
check "the heartbeat names lume's version" has lume
check "and the script's version" has scripts.app.version
check "and its handler errors" test "$(field scripts.app.errors)" = 0
check "uptime, RSS and CPU load" sh -c "[ '$(field uptime_s)' != nil ] && [ '$(field rss_kb)' -gt 0 ] && [ '$(field cpu.load1)' != nil ]"
check "battery voltage and power source from the sim board" \
  sh -c "[ '$(field power.battery_v)' != nil ] && echo '$(field power.source)' | grep -Eq '^(mains|battery)$'"
check "sampler lateness p99 and overruns" sh -c "[ '$(field sampler.late_p99_us)' != nil ] && [ '$(field sampler.overruns)' != nil ]"
check "reconnects" test "$(field net.reconnects)" = 0
check "and the store's state" test "$(field store.writable)" = true

# a bad period is refused with a message, and the last good one stays
mosq_pub s "lume/$D/desired" '{"$version":2,"health":{"period_s":0}}' -r
check "a bad health.period_s is reported in errors.health" \
  wait_for 10 reported_matches $D errors.health 'period_s'
check "the period stays 1" reported_is $D health.period_s 1
kill -TERM "$PID"; wait "$PID"
mosq_pub s "lume/$D/desired" '' -r
finish
