#!/usr/bin/env bash
# An idle device costs few wake-ups, and what is accepted still becomes
# durable: lume on the low-rate fleet board (four sensors at 1 Hz) with one
# script that publishes a single message after 1.5 s. `lume stats` accounts
# for every turn of the loop (loop.wakeups): no commit timer while nothing
# is pending (it used to tick every 50 ms), one commit for the message, the
# sampler waking the loop about once a second (its four readings share a
# wake-up), and the message committed. Then the bench/fleet/devices driver itself,
# on 3 devices (a smoke run: the table comes out, every device ends active,
# nothing it started is left running).
. "$(dirname "$0")/lib.sh"

make_device "$T/d"
rm -f "$T/d/scripts/"*.lua
cat >"$T/d/scripts/once.lua" <<'EOS'
lume.timer.after(1500, function() lume.publish("hello", "once") end)
EOS
sed -i "s|^  boards_dir = .*|  boards_dir = '$ROOT/bench/boards', board = 'fleet',|; s|^  status_interval_ms = 200,|  status_interval_ms = 0,|" "$T/d/lume.conf.lua"
start_bg idle "$LUME" run --config "$T/d/lume.conf.lua"
check "lume starts on the fleet board" wait_for 10 sh -c "'$LUME' stats --store '$T/d/var' >/dev/null"
sleep 2.5
"$LUME" stats --store "$T/d/var" >"$T/stats.json"
j() { local v; v=$(lua5.4 "$ROOT/tests/integration/jget.lua" "$1" <"$T/stats.json"); [ "$v" = nil ] && v=0; echo "$v"; }
up0=$(j process.uptime_s); turns0=$(j loop.wakeups.turns)
sw0=$(awk '{print $3}' "/proc/$LAST_PID/schedstat")
sleep 2
sw1=$(awk '{print $3}' "/proc/$LAST_PID/schedstat")
"$LUME" stats --store "$T/d/var" >"$T/stats.json"
up=$(j process.uptime_s)
turns=$(j loop.wakeups.turns)
commits=$(j 'loop.wakeups.timers.outbox commit')
sampler=$(j loop.wakeups.sampler)
echo "# after ${up} s: $turns turns ($((turns - turns0)) in the last 2 s), sampler wake-ups $sampler, commit timer $commits"
check "the commit timer fired for the one message only (not every 50 ms)" \
  test "$commits" -ge 1 -a "$commits" -le 3
check "the sampler woke the loop about once a second for four 1 Hz sensors" \
  awk -v s="$sampler" -v u="$up" 'BEGIN { exit !(s >= 1 && s <= u + 2) }'
check "the message was committed (durable, in the outbox)" \
  test "$(j outbox.telemetry.appended)" = 1 -a "$(j outbox.pending)" = 0
# the kernel's count of the loop thread's wake-ups, and lume's count of
# its turns: no busy poll(0) in the last millisecond before each timer
echo "# the loop thread was scheduled $((sw1 - sw0)) times in 2 s"
check "the idle loop thread woke a few times a second, not tens" test $((sw1 - sw0)) -lt 30
check "the idle loop turned a few times a second, not hundreds" test $((turns - turns0)) -lt 30
kill -TERM "$LAST_PID"; wait "$LAST_PID" 2>/dev/null

# a bad latency bound in a board is refused at start, naming the sensor
mkdir -p "$T/badboards"
cat >"$T/badboards/bad.lua" <<'EOB'
return { name = "bad", sensors = { { name = "door", driver = "sim.power", unit = "mains",
  rate = 1, min_rate = 1, max_rate = 1, latency_ms = "soon" } } }
EOB
sed "s|^  boards_dir = .*|  boards_dir = '$T/badboards', board = 'bad',|" "$T/d/lume.conf.lua" >"$T/bad.conf.lua"
"$LUME" run --config "$T/bad.conf.lua" >/dev/null 2>"$T/bad.err"
rc=$?
check "a board whose latency_ms is not a number is refused (exit 2)" test "$rc" = 2
check "... naming the sensor and the key" grep -q "sensor 'door': latency_ms must be a number of milliseconds" "$T/bad.err"

# the benchmark driver, small
FLEET_IDLE_S=2 BUILD="$BUILD" "$ROOT/bench/fleet/devices" 3 >"$T/fleet.out" 2>"$T/fleet.err"
rc=$?
sed 's/^/# /' "$T/fleet.out" | tail -14
check "bench/fleet/devices 3 runs to the end" test "$rc" = 0
check "every device went active after the group push" grep -q '(3 of 3)' "$T/fleet.out"
check "fleet status counted the fleet" grep -q 'fleet status counted the fleet: yes' "$T/fleet.out"
dir=$(sed -n 's/^# data under \(.*\)$/\1/p' "$T/fleet.out")
check "bench/fleet/devices said where its data was, and removed it" test -n "$dir" -a ! -e "$dir"
# (the pattern [l]ume-fleet... does not match the shell that runs pgrep)
pat="$(dirname "$dir")/[l]$(basename "$dir" | cut -c2-)/"
check "bench/fleet/devices left no process running" sh -c "! pgrep -f '$pat' >/dev/null"
finish
