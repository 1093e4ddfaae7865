#!/usr/bin/env bash
# Rollout rings: 50 lume processes, 25 in ring-pilot and 25 in ring-main. A
# push to the pilot ring reaches exactly the pilot devices and `lume fleet
# status` counts them right before main is touched; then main.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s --max-queued 0 || exit 1
B="mqtt://127.0.0.1:$s_PORT"
mkdir -p "$T/boards"
cat >"$T/boards/tiny.lua" <<'EOB'
return { name = "tiny", description = "one slow sensor: many devices on one machine",
  sensors = { { name = "temperature", driver = "sim.temperature", unit = "C",
                rate = 1, min_rate = 0.1, max_rate = 10 } } }
EOB
PER_RING=25
for ring in pilot main; do
  for i in $(seq 1 $PER_RING); do
    d="$T/dev-$ring-$i"
    net_device "$d" "url = '$B', keepalive_s = 10, backoff_min_ms = 200" 'x = 0'
    sed -i "s|^  boards_dir = .*|  boards_dir = '$T/boards', board = 'tiny',|; s|^  net = |  twin = { allow_unsigned = true, groups = {'fleet', 'ring-$ring'} },\n  net = |" "$d/lume.conf.lua"
    start_bg "dev-$ring-$i" "$LUME" run --config "$d/lume.conf.lua"
  done
done
connected() { [ "$(grep -l 'mqtt: connected' "$T"/dev-*.err 2>/dev/null | wc -l)" -eq $((2 * PER_RING)) ]; }
check "all $((2 * PER_RING)) devices connect" wait_for 60 connected

cat >"$T/probe.lua" <<'EOS'
lume.twin.report({ probe = lume.device.id })
EOS
count() { # count RING STATUSLINE: devices of RING whose fleet status shows the line
  "$LUME" fleet status --group "ring-$1" --broker "$B" >"$T/fleet-$1.out"
  grep -q "^group ring-$1: $2 devices$" "$T/fleet-$1.out" && grep -q "^  script probe version $3: $4$" "$T/fleet-$1.out"
}
"$LUME" push --group ring-pilot --broker "$B" --name probe --version 1 --soak 0 "$T/probe.lua" >/dev/null
check "the pilot ring's devices all run the probe" \
  wait_for 60 sh -c "[ \$(grep -l 'bundle probe: version 1 active' '$T'/dev-pilot-*.err 2>/dev/null | wc -l) -eq $PER_RING ]"
check "no main-ring device got it" sh -c "! grep -l 'bundle probe' '$T'/dev-main-*.err 2>/dev/null"
check "fleet status: 25 pilot devices run probe version 1" wait_for 30 count pilot $PER_RING "1 active" $PER_RING
"$LUME" fleet status --group ring-main --broker "$B" >"$T/fleet-main.out"
check "fleet status: 25 main devices, none with the probe" sh -c \
  "grep -q '^group ring-main: $PER_RING devices$' '$T/fleet-main.out' && ! grep -q probe '$T/fleet-main.out'"
"$LUME" fleet status --broker "$B" >"$T/fleet-all.out"
check "fleet status without --group: the fleet group holds all 50" grep -q "^group fleet: $((2 * PER_RING)) devices$" "$T/fleet-all.out"

"$LUME" push --group ring-main --broker "$B" --name probe --version 1 --soak 0 "$T/probe.lua" >/dev/null
check "then the main ring's devices all run it" \
  wait_for 60 sh -c "[ \$(grep -l 'bundle probe: version 1 active' '$T'/dev-main-*.err 2>/dev/null | wc -l) -eq $PER_RING ]"
check "fleet status: the whole fleet runs probe version 1" wait_for 30 sh -c \
  "'$LUME' fleet status --group fleet --broker '$B' | grep -q '^  script probe version 1 active: $((2 * PER_RING))$'"
check "a device's drift check agrees" "$LUME" twin drift --device dev-main-7 --broker "$B"

finish
