#!/usr/bin/env bash
# Deploy and wait, ring demotion, fleet status with names — against a real
# mosquitto and six real lume processes (4 in ring-pilot, 2 in ring-main) on
# a one-sensor 1 Hz board, devices that trust a key from `lume keygen`:
#  - a push without --key to devices that require signatures is refused,
#    naming them; `push --wait` prints each device's outcome;
#  - a rollout of v1 over both rings, its CLI SIGKILLed mid-bake and resumed
#    from its state file, promotes it to both rings;
#  - a rollout of v2, which errors on 3 of the 4 pilot devices, stops at the
#    pilot ring, names the 3 devices and the reason, restores v1 there and
#    never touches the main ring;
#  - `lume fleet status` names versions, failures and a device gone offline.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s || exit 1
BROKER_PORT=$s_PORT
B="mqtt://127.0.0.1:$s_PORT"
"$LUME" keygen --out "$T/ops" >/dev/null || exit 1
mkdir -p "$T/boards"
cat >"$T/boards/tiny.lua" <<'EOB'
return { name = "tiny", description = "one slow sensor",
  sensors = { { name = "temperature", driver = "sim.temperature", unit = "C",
                rate = 1, min_rate = 0.1, max_rate = 10 } } }
EOB
# heartbeats every second: the errors gate reads them during the bake
mosq_pub s lume/groups/fleet/desired '{"$version":1,"health":{"period_s":1}}' -r || exit 1

DEVS="p1 p2 p3 p4 m1 m2"
declare -A PID
for id in $DEVS; do
  ring=ring-pilot; [ "${id#m}" != "$id" ] && ring=ring-main
  d="$T/$id"
  net_device "$d" "url = '$B', keepalive_s = 5, backoff_min_ms = 200" 'x = 0'
  sed -i "s|^  boards_dir = .*|  boards_dir = '$T/boards', board = 'tiny',|; s|^  net = |  twin = { trusted_keys = {'$T/ops.pub'}, groups = {'fleet', '$ring'} },\n  net = |" "$d/lume.conf.lua"
  start_bg "$id" "$LUME" run --config "$d/lume.conf.lua"
  PID[$id]=$LAST_PID
done
all_report() { for id in $DEVS; do reported_matches $id lume.trust.signed_only true || return 1; done; }
check "six devices report that they accept only signed bundles" wait_for 20 all_report

printf 'lume.timer.every(500, function() lume.publish("beat", "v0") end)\n' >"$T/v0.lua"
printf 'lume.timer.every(500, function() lume.publish("beat", "v1") end)\n' >"$T/v1.lua"
cat >"$T/v2.lua" <<'EOS'
-- v2 breaks on the pilot devices p1..p3 only
lume.timer.every(100, function()
  if lume.device.id:match("^p[123]$") then error("v2 cannot read the valve on " .. lume.device.id) end
  lume.publish("beat", "v2")
end)
EOS

# 1. deploy and wait
"$LUME" push --group ring-pilot --broker "$B" --name app --version v0 "$T/v0.lua" >"$T/unsigned.out" 2>&1
rc=$?
check "push without --key to signature-only devices: exit 2" test $rc -eq 2
check "... naming them" grep -q "not published: p1, p2, p3, p4 accept only signed bundles" "$T/unsigned.out"
check "... and nothing was published" sh -c "! mosquitto_sub -h 127.0.0.1 -p $s_PORT -t lume/groups/ring-pilot/desired -C 1 -W 1 2>/dev/null | grep -q ."
# on a terminal (script(1) gives it one): the count is rewritten in place
script -qec "'$LUME' push --group ring-main --broker '$B' --name app --version v0 --soak 1 --key '$T/ops.key' --wait --timeout 20 '$T/v0.lua'" /dev/null >"$T/wait.out" 2>&1
rc=$?
check "push --wait to ring-main: exit 0 once both are active" test $rc -eq 0
tr -d '\r' <"$T/wait.out" >"$T/wait.txt"
check "... one line per device" sh -c "grep -Eq '^m1 +active$' '$T/wait.txt' && grep -Eq '^m2 +active$' '$T/wait.txt' && [ \$(grep -Ec ' +active$' '$T/wait.txt') -eq 2 ]"
check "... with a live count on the terminal" grep -q $'\r\033\\[K2 devices: 2 active, 0 rolled back, 0 rejected, 0 waiting' "$T/wait.out"
"$LUME" push --device ghost --broker "$B" --name app --unsigned --wait --timeout 1 "$T/v0.lua" >"$T/ghost.out" 2>&1
rc=$?
check "push --wait to a device that never answers: exit 3" test $rc -eq 3
check "... says no_answer and why" grep -Eq "^ghost +no_answer +no reported document" "$T/ghost.out"

# 2. a rollout of v1 over both rings, killed mid-bake and resumed
ST="$T/rollout-v1.json"
GATE='rolled_back<=2%,rejected<=0,no_answer<=0,errors<=0'
start_bg rollout1 "$LUME" rollout "$T/v1.lua" --name app --version v1 --rings ring-pilot,ring-main \
  --gate "$GATE" --bake 2 --soak 1 --timeout 20 --key "$T/ops.key" --state "$ST" --broker "$B"
R1=$LAST_PID
check "the rollout reaches the pilot ring's bake" wait_for 20 grep -sEq '"phase":[[:space:]]*"bake"' "$ST"
kill -9 $R1
wait $R1 2>/dev/null
check "... and its CLI is SIGKILLed there: pilot baking, main still on v0" \
  eval "grep -Eq '\"ring\":[[:space:]]*0' '$ST' && reported_is m1 scripts.app.running v0"
"$LUME" rollout --resume --state "$ST" >"$T/resume.out" 2>"$T/resume.err"
rc=$?
check "rollout --resume finishes: exit 0" test $rc -eq 0
check "... it said where it resumed" grep -q "resuming the rollout of app version v1 .*ring 1, bake" "$T/resume.out"
check "... reading each device's handler errors from its heartbeats during the bake" sh -c "! grep -q 'no heartbeat' '$T/resume.out'"
check "... and promoted both rings" sh -c "grep -q 'ring ring-pilot: gates passed' '$T/resume.out' && grep -q 'ring ring-main: gates passed' '$T/resume.out' && grep -q 'done: every ring promoted' '$T/resume.out'"
v1_all() { for id in $DEVS; do reported_is $id scripts.app.running v1 && reported_is $id scripts.app.status active || return 1; done; }
check "all six devices run v1" v1_all

# 3. a rollout of v2 that fails on 3 of the 4 pilot devices
main_before=$(mosquitto_sub -h 127.0.0.1 -p $s_PORT -t lume/groups/ring-main/desired -C 1 -W 2 | lua5.4 "$ROOT/tests/integration/jget.lua" '$version')
"$LUME" rollout "$T/v2.lua" --name app --version v2 --rings ring-pilot,ring-main --gate "$GATE" \
  --bake 2 --soak 1 --timeout 20 --key "$T/ops.key" --state "$T/rollout-v2.json" --broker "$B" \
  >"$T/v2.out" 2>"$T/v2.err"
rc=$?
check "the v2 rollout fails: exit 1" test $rc -eq 1
check "... at the rolled_back gate, 3 of 4 pilot devices" grep -q "ring ring-pilot: gate rolled_back<=2% failed: 3 of 4 devices" "$T/v2.out"
for id in p1 p2 p3; do
  check "... naming $id and the reason" grep -Eq "^  $id rolled_back: soak: [0-9]+ handler errors, last: .*v2 cannot read the valve on $id" "$T/v2.out"
done
check "... not naming p4" sh -c "! grep -q '^  p4 ' '$T/v2.out'"
check "... restoring the pilot ring" grep -q "ring ring-pilot: restored v1 on 4 of 4 devices" "$T/v2.out"
pilot_v1() { for id in p1 p2 p3 p4; do reported_is $id scripts.app.running v1 && reported_is $id scripts.app.status active || return 1; done; }
check "the 4 pilot devices report v1 active again" pilot_v1
main_after=$(mosquitto_sub -h 127.0.0.1 -p $s_PORT -t lume/groups/ring-main/desired -C 1 -W 2 | lua5.4 "$ROOT/tests/integration/jget.lua" '$version')
check "the main ring's desired document is untouched (\$version $main_before)" test "$main_after" = "$main_before"
check "... its devices still run v1" sh -c "! grep -q 'bundle app: version v2' '$T/m1.err' '$T/m2.err'"
main_v1() { for id in m1 m2; do reported_is $id scripts.app.running v1 && reported_is $id scripts.app.status active || return 1; done; }
check "... and report v1 active" main_v1
check "... a plain count line as it changed (stderr not a terminal)" grep -q "^4 devices: 1 active, 3 rolled back, 0 rejected, 0 waiting$" "$T/v2.err"
check "the state file says failed" grep -Eq '"phase":[[:space:]]*"failed"' "$T/rollout-v2.json"

# 3b. a version that passes its soak and then fails: the errors gate, after the bake
cat >"$T/v3.lua" <<'EOS'
lume.timer.after(1500, function() lume.timer.every(200, function() error("v3 drifts on " .. lume.device.id) end) end)
EOS
"$LUME" rollout "$T/v3.lua" --name app --version v3 --rings ring-pilot --gate "$GATE" \
  --bake 2 --soak 1 --timeout 20 --key "$T/ops.key" --state "$T/rollout-v3.json" --broker "$B" \
  >"$T/v3.out" 2>"$T/v3.err"
rc=$?
check "a version that errors after its soak: the rollout fails at the errors gate, exit 1" \
  sh -c "[ $rc -eq 1 ] && grep -q 'ring ring-pilot: gate errors<=0 failed on 4 devices' '$T/v3.out'"
check "... naming each device and its error count" grep -Eq "^  p2 errors: [1-9][0-9]* handler errors during the bake \(gate errors<=0\)" "$T/v3.out"
check "... and the pilot ring is back on v1" pilot_v1

# 3c. the state file's default place, and a rollout already in progress
mkdir -p "$T/home/.lume/rollouts"
printf '{"name":"app","version":"v9","phase":"bake"}\n' >"$T/home/.lume/rollouts/app.json"
HOME="$T/home" "$LUME" rollout "$T/v1.lua" --name app --rings ring-pilot --key "$T/ops.key" --broker "$B" >"$T/busy.out" 2>&1
rc=$?
check "another rollout of app in progress (~/.lume/rollouts/app.json): exit 2, saying how to resume" \
  sh -c "[ $rc -eq 2 ] && grep -q 'a rollout of app (version v9) is in progress in $T/home/.lume/rollouts/app.json (bake): lume rollout --resume' '$T/busy.out'"
HOME="$T/home" "$LUME" rollout --resume --name app >"$T/bad.out" 2>&1
rc=$?
check "--resume of a damaged state file: exit 2, naming it" sh -c "[ $rc -eq 2 ] && grep -q 'app.json is not a rollout state file' '$T/bad.out'"
# a rollout resumed after someone else pushed to its ring: the v2 rollout's
# state put back to its pilot bake, while the ring's document holds v1
python3 -c "
import json; p = '$T/rollout-v2.json'; s = json.load(open(p)); s['phase'] = 'bake'; s['ring'] = 0
json.dump(s, open('$T/stale.json', 'w'))"
"$LUME" rollout --resume --state "$T/stale.json" >"$T/stale.out" 2>&1
rc=$?
check "resuming over someone else's push: exit 1, nothing restored" sh -c "[ $rc -eq 1 ] && grep -q 'ring ring-pilot: its desired document no longer holds version v2 of app (it holds v1): someone pushed meanwhile; stopping without restoring anything' '$T/stale.out' && ! grep -q published '$T/stale.out'"
"$LUME" rollout "$T/v1.lua" --rings ring-pilot --gate "errors<=5%" --broker "$B" >"$T/gate.out" 2>&1
rc=$?
check "a gate that makes no sense (errors in %): exit 2, naming it" sh -c "[ $rc -eq 2 ] && grep -q \"'errors<=5%' is not METRIC<=N\" '$T/gate.out'"

# 4. fleet status: names, versions, failures, silence
kill -9 "${PID[m2]}"
check "a SIGKILLed device is marked offline (its last will)" \
  wait_for 10 sh -c "mosquitto_sub -h 127.0.0.1 -p $s_PORT -t lume/m2/status -C 1 -W 2 | grep -q offline"
"$LUME" fleet status --broker "$B" >"$T/fleet.out" 2>&1
check "fleet status: ring-pilot's 4 devices run app v1, by id" sh -c \
  "grep -A1 '^  script app version v1 active: 4$' '$T/fleet.out' | grep -q '^    p1 p2 p3 p4$'"
check "fleet status: ring-main's devices by id" sh -c "grep -A1 '^  script app version v1 active: 2$' '$T/fleet.out' | grep -q '^    m1 m2$'"
check "fleet status: m2 is not heard from: offline, and since when" \
  grep -Eq "^  not heard from: m2 offline \(last heard [0-9T:Z-]+, [0-9]+ s ago\)" "$T/fleet.out"
"$LUME" fleet status --group ring-pilot --json --broker "$B" >"$T/fleet.json"
check "fleet status --json: the ring's 4 devices by id, nothing failed, nobody silent" python3 -c "
import json
g = json.load(open('$T/fleet.json'))['groups']
assert list(g) == ['ring-pilot'], g
p = g['ring-pilot']
assert p['devices'] == 4 and p['online'] == 4, p
rows = [r for r in p['scripts']['app'] if r['version'] == 'v1' and r['status'] == 'active']
assert sorted(rows[0]['devices']) == ['p1', 'p2', 'p3', 'p4'], rows
assert p['failures'] == [] and p['not_heard_from'] == [], p
"

finish
