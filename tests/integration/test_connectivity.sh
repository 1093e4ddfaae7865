#!/usr/bin/env bash
# Connectivity modes (docs/connectivity.md): scripts/connectivity.lua with
# desired connectivity.mode = "auto" on a sim board whose power source the
# test switches (sim.power's source_file). On mains the device stays
# connected; on battery it goes intermittent: clean DISCONNECTs seen by the
# broker, telemetry arriving in bursts a window apart; an alarm raised while
# offline connects at once; bad desired values are reported and change
# nothing; back on mains it is persistent again. A sequence-numbered stream
# counted at a subscriber loses nothing and keeps its order throughout.
# Real mosquitto, a real lume process; about 20 s.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s || exit 1
BROKER_PORT=$s_PORT
D=cdev
d="$T/$D"
echo mains >"$T/power"
echo 0 >"$T/trigger"
echo 0 >"$T/stop"
cat >"$T/board.lua" <<EOF
return {
  name = "simc",
  sensors = {
    { name = "power", driver = "sim.power", unit = "mains", rate = 10, min_rate = 1, max_rate = 10,
      params = { source_file = "$T/power" } },
    { name = "battery", driver = "sim.battery", unit = "V", rate = 1, min_rate = 0.1, max_rate = 10 },
    { name = "trigger", driver = "file", unit = "", rate = 10, min_rate = 1, max_rate = 10,
      params = { path = "$T/trigger" } },
    { name = "stop", driver = "file", unit = "", rate = 10, min_rate = 1, max_rate = 10,
      params = { path = "$T/stop" } },
  },
}
EOF
# the stream: seq 1, 2, ... every 200 ms on the telemetry lane, until $T/stop says 1;
# an alarm on the alarm lane when $T/trigger says 1
APP='local n, stopped, raised = 0, false, false
lume.timer.every(200, function()
  if stopped then return end
  n = n + 1
  lume.publish("seq", tostring(n))
end)
lume.on_sample("stop", function(v)
  if v > 0 and not stopped then stopped = true; lume.log.info("seq stopped at %d", n) end
end)
lume.on_sample("trigger", function(v)
  if v > 0 and not raised then
    raised = true
    lume.publish("alarm", "over-temperature", { priority = "alarm" })
    lume.log.info("alarm raised")
  end
end)'
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', backoff_min_ms = 100, backoff_max_ms = 500" "$APP"
cp "$ROOT/scripts/connectivity.lua" "$d/scripts/"
sed -i "s|^  device_id = .*|&\n  board = '$T/board.lua',|" "$d/lume.conf.lua"

mosq_pub s "lume/$D/desired" '{"$version":1,"connectivity":{"mode":"auto","every_s":3,"window_s":5}}' -r || exit 1
mosq_sub s "$T/tel.out" "lume/$D/telemetry/#" -F '%U %t %p' || exit 1
start_bg dev "$LUME" run --config "$d/lume.conf.lua"
PID=$LAST_PID
stats() { "$LUME" stats --store "$d/var" 2>/dev/null | lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
stats_is() { [ "$(stats "$1")" = "$2" ]; }
# broker side: clean goodbyes ("Client X disconnected.") and drops
clean_disconnects() { grep -c "Client $D disconnected\.$" "$s_LOG"; }
drops() { grep -Ec "Client $D closed its connection|Socket error on client $D|Client $D has exceeded" "$s_LOG"; }
connects() { grep -c "New client connected .* as $D " "$s_LOG"; }

check "on mains, auto is persistent" wait_for 10 reported_is $D connectivity.mode persistent
check "and says why" wait_for 5 reported_is $D connectivity.by "auto: on mains"
check "the stream flows" wait_for 5 grep -q "telemetry/seq 5$" "$T/tel.out"

# ---- battery: intermittent -------------------------------------------------------
echo battery >"$T/power"
t_batt=$(date +%s.%N)
check "on battery the device disconnects cleanly (DISCONNECT, seen by the broker)" \
  wait_for 5 sh -c "[ \$(grep -c 'Client $D disconnected\.\$' '$s_LOG') -ge 1 ]"
check "lume says intermittent, asleep" wait_for 3 stats_is connectivity.phase asleep
sleep 6.5
c=$(connects)
check "windows reopen every ~3 s (connections so far: $c, 3 or 4 expected)" test "$c" -ge 3 -a "$c" -le 4
# arrivals after the switch come in bursts a window apart: the largest gap
# between two messages is about every_s, far above the stream's 200 ms
gap=$(awk -v s="$t_batt" '$1 > s + 1 { if (last && $1 - last > max) max = $1 - last; last = $1 } END { printf "%.2f", max + 0 }' "$T/tel.out")
bursts=$(awk -v s="$t_batt" '$1 > s + 1 { if (last && $1 - last > 1.5) n++; last = $1 } END { print n + 0 }' "$T/tel.out")
echo "# while intermittent: $bursts gaps over 1.5 s, the longest ${gap} s"
check "telemetry arrives in bursts a window apart (gaps of 2..4 s: $gap s, $bursts of them)" \
  awk "BEGIN { exit !($gap >= 2 && $gap <= 4.5 && $bursts >= 1) }"

# ---- an alarm while offline connects at once -------------------------------------
wait_for 5 stats_is connectivity.phase asleep
before=$(stats connectivity.wakes_alarm)
t_alarm=$(date +%s.%N)
echo 1 >"$T/trigger"
check "an alarm raised while asleep arrives" wait_for 5 grep -q "telemetry/alarm over-temperature" "$T/tel.out"
lat=$(awk -v s="$t_alarm" '$2 ~ /telemetry\/alarm$/ { printf "%.2f", $1 - s; exit }' "$T/tel.out")
echo "# alarm: ${lat} s from the trigger file to the subscriber"
check "it opened a window of its own (wakes_alarm $before -> $(stats connectivity.wakes_alarm))" \
  test "$(stats connectivity.wakes_alarm)" -gt "${before:-0}"
check "at once: within 1.5 s, not at the next timed window ($lat s)" awk "BEGIN { exit !($lat < 1.5) }"

# ---- bad desired values: reported, the mode stays --------------------------------
mosq_pub s "lume/$D/desired" '{"$version":2,"connectivity":{"mode":"turbo","every_s":3,"window_s":5}}' -r
check "an unknown mode is reported in errors.connectivity" \
  wait_for 8 reported_matches $D errors.connectivity 'mode.*"turbo"'
check "and the intermittent mode stays" reported_is $D connectivity.mode intermittent
check "the log names it" grep -q 'desired.connectivity: connectivity.mode must be .*got "turbo"' "$T/dev.err"
mosq_pub s "lume/$D/desired" '{"$version":3,"connectivity":{"mode":"auto","every_s":-5}}' -r
check "a negative every_s is reported" wait_for 8 reported_matches $D errors.connectivity 'every_s.*-5'
check "the last good every_s stays" reported_is $D connectivity.every_s 3
# max_queued: with every_s 60, windows open as the stream fills the outbox
mosq_pub s "lume/$D/desired" '{"$version":4,"connectivity":{"mode":"auto","every_s":60,"max_queued":8,"window_s":5}}' -r
check "a good document clears the error" wait_for 8 reported_is $D errors.connectivity nil
q=$(stats connectivity.wakes_queued)
check "max_queued opens windows (8 messages: every ~1.6 s)" wait_for 5 sh -c "[ \$('$LUME' stats --store '$d/var' | lua5.4 '$ROOT/tests/integration/jget.lua' connectivity.wakes_queued) -ge \$(( ${q:-0} + 2 )) ]"

# ---- back on mains: persistent --------------------------------------------------
echo mains >"$T/power"
check "back on mains: persistent" wait_for 5 stats_is connectivity.phase online
check "and connected" wait_for 5 stats_is net.state connected
n_clean=$(clean_disconnects)
sleep 2
check "and it stays connected (no more disconnects)" test "$(clean_disconnects)" = "$n_clean"
persistent_reported() {
  local doc; doc=$(mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t "lume/$D/reported" -C 1 -W 3 2>/dev/null)
  get() { printf '%s' "$doc" | lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
  [ "$(get connectivity.mode)" = persistent ] && [ "$(get connectivity.windows)" -ge 3 ] &&
    [ "$(get connectivity.last_disconnect)" != nil ] && [ "$(get connectivity.last_connect)" != nil ]
}
check "reported: persistent, windows counted, last connect and disconnect" wait_for 5 persistent_reported
check "the broker saw no dropped connection, only clean goodbyes" test "$(drops)" = 0

# ---- nothing lost, nothing out of order ----------------------------------------
echo 1 >"$T/stop"
check "the stream stops" wait_for 5 grep -q "seq stopped at" "$T/dev.err"
last=$(grep -o "seq stopped at [0-9]*" "$T/dev.err" | awk '{ print $4 }')
check "every message up to $last reaches the subscriber" wait_for 5 grep -q "telemetry/seq $last$" "$T/tel.out"
awk '$2 ~ /telemetry\/seq$/ { print $3 }' "$T/tel.out" >"$T/seq"
check "none lost: 1..$last all there ($(sort -un "$T/seq" | wc -l) distinct)" \
  sh -c "[ \"\$(sort -un '$T/seq' | tr '\n' ' ')\" = \"\$(seq 1 $last | tr '\n' ' ')\" ]"
check "none out of order within the lane" \
  awk 'BEGIN { m = 0 } { if ($1 < m) bad = 1; if ($1 > m) m = $1 } END { exit bad }' "$T/seq"
echo "# $(wc -l <"$T/seq") messages received for $last sent; $(connects) connections; $(clean_disconnects) clean disconnects"

kill -TERM "$PID"; wait "$PID"
mosq_pub s "lume/$D/desired" '' -r
finish
