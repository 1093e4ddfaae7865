#!/usr/bin/env bash
# Poison twin input, hostile bundles and a saturated machine: a document
# that overwhelms a script's memory is that script's error (reported, no
# crash, no crash loop after a restart); a document of thousands of script
# entries is handled in one pass and its removed entries go away; a layer's
# bundle replaces a group's bundle of the same name whole; a bundle whose
# pattern backtracks forever is rolled back by the CPU budget and the device
# keeps sampling; healthy scripts are never killed because the machine is busy.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s --persist || exit 1
BROKER_PORT=$s_PORT
B="mqtt://127.0.0.1:$s_PORT"
pub() { mosquitto_pub -h 127.0.0.1 -p "$s_PORT" -q 1 "$@"; }
stats() { "$LUME" stats --store "$1/var" 2>/dev/null | lua5.4 "$ROOT/tests/integration/jget.lua" "$2"; }
stat_is() { [ "$(stats "$1" "$2")" = "$3" ]; }            # DIR PATH VALUE
stat_gt() { local v; v=$(stats "$1" "$2"); [ -n "$v" ] && [ "$v" != nil ] && [ "$v" -gt "$3" ]; }
answers() { "$LUME" stats --store "$1/var" 2>/dev/null | grep -q "\"$2\""; }  # DIR SCRIPT

# --- a device whose script owns the desired key "cfg" (1 MiB memory cap) ---
D=poison
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5, max_packet = '1MiB'" \
'seen = 0
lume.twin.on_change("cfg", function(now) seen = seen + 1; lume.log.info("cfg has %d keys", (function() local n = 0 for _ in pairs(now or {}) do n = n + 1 end return n end)()) end)
lume.timer.every(100, function() lume.publish("beat", "alive") end)'
sed -i "s|^  net = |  twin = { allow_unsigned = true, groups = {'fleet'} },\n  sandbox = { memory_limit = '1MiB' },\n  net = |" "$d/lume.conf.lua"
start_bg poison "$LUME" run --config "$d/lume.conf.lua"
check "the device connects" wait_for 10 sh -c "'$LUME' stats --store '$d/var' 2>/dev/null | grep -q '\"state\":\"connected\"'"

# 22,000 small entries in ~240 KB: valid, within every limit, too big for the
# script's 1 MiB Lua state once converted
lua5.4 -e '
local t = {}
for i = 1, 22000 do t[#t + 1] = string.format("\"k%d\":%d", i, i % 10) end
io.write("{\"$version\":1,\"cfg\":{", table.concat(t, ","), "}}")' >"$T/big.json"
check "the document is under 256 KiB" test "$(stat -c %s "$T/big.json")" -lt 262144
pub -r -t "lume/$D/desired" -f "$T/big.json"
check "the script's failure is reported under errors.cfg" wait_for 15 reported_matches $D errors.cfg "memory limit"
check "lume stays up and answers lume stats" answers "$d" app
check "the script still runs" stat_is "$d" scripts.app.status running
kill -TERM "$LAST_PID"; wait "$LAST_PID" 2>/dev/null
check "lume stopped cleanly after the poison document" test $? -ne 134
# offline restart with the same stored layer: no abort, no crash loop
sed -i "s|url = '$B'|url = 'mqtt://127.0.0.1:1'|" "$d/lume.conf.lua"
start_bg poison2 "$LUME" run --config "$d/lume.conf.lua"
P2=$LAST_PID
check "an offline restart with the stored document comes up" wait_for 10 answers "$d" app
sleep 1
check "and keeps running" kill -0 "$P2"
check "the script's error is logged on that restart too" grep -q "twin.on_change(cfg).*memory limit" "$T/poison2.err"
kill -TERM "$P2"; wait "$P2" 2>/dev/null

# --- thousands of script entries; layers replace bundles whole ---
D=many
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5, max_packet = '1MiB'" 'x = 0'
sed -i "s|^  net = |  twin = { allow_unsigned = true, groups = {'fleet'} },\n  net = |" "$d/lume.conf.lua"
start_bg many "$LUME" run --config "$d/lume.conf.lua"
check "the second device connects" wait_for 10 sh -c "'$LUME' stats --store '$d/var' 2>/dev/null | grep -q '\"state\":\"connected\"'"
lua5.4 -e '
local t = {}
for i = 1, 15000 do t[#t + 1] = string.format("\"s%d\":%d", i, i) end
io.write("{\"$version\":1,\"scripts\":{", table.concat(t, ","), "}}")' >"$T/many.json"
pub -r -t "lume/$D/desired" -f "$T/many.json"
check "15,000 script entries: every one is reported as rejected" wait_for 30 reported_matches $D scripts.s15000.status rejected
check "the reason names what is wrong" reported_matches $D scripts.s7.error "must be an object"
check "the log summarises instead of 15,000 lines" grep -q "more bundles in this document failed" "$T/many.err"
check "the device stayed connected" stat_is "$d" net.reconnects 0
check "no samples were dropped" stat_is "$d" sensors.vibration.drops 0
pub -r -t "lume/$D/desired" -m '{"$version":2,"scripts":{}}'
check "removed entries leave the reported document" wait_for 15 reported_is $D scripts.s15000 nil

# a group bundle sent as chunks, the device's as source: the device's wins whole
pub -r -t "lume/groups/fleet/desired" -m '{"$version":1,"scripts":{"app":{"version":"g1","chunks":["lume.timer.every(100, function() lume.publish(\"who\", \"group\") end)"]}}}'
check "the group's bundle goes active" wait_for 10 reported_is $D scripts.app.running g1
pub -r -t "lume/$D/desired" -m '{"$version":3,"scripts":{"app":{"version":"d1","source":"lume.timer.every(100, function() lume.publish(\"who\", \"device\") end)"}}}'
check "the device's bundle replaces the group's whole" wait_for 10 reported_is $D scripts.app.running d1
check "and is active (not 'needs exactly one of source, chunks, url')" reported_is $D scripts.app.status active

# a bundle whose pattern backtracks catastrophically: stopped by the budget
# in its dry run or soak, the previous version runs on, the device samples on
src='lume.on_sample("vibration", function() string.find(string.rep("a", 400), "a*a*a*a*a*a*a*a*b") end)'
doc=$(ROOT="$ROOT" SRC="$src" lua5.4 -e 'package.path = os.getenv("ROOT") .. "/stdlib/?.lua;" .. package.path
local json = require "lume.json"
io.write(json.encode({ ["$version"] = 4, scripts = { app = { version = "d2", soak_s = 2,
  source = os.getenv("SRC") } } }))')
before=$(stats "$d" sensors.vibration.samples)
pub -r -t "lume/$D/desired" -m "$doc"
check "the backtracking bundle is rolled back or rejected" wait_for 20 reported_matches $D scripts.app.status 'rolled_back|rejected|quarantined'
check "the reason is the CPU budget" reported_matches $D scripts.app.error "CPU budget"
check "the good version runs again" reported_is $D scripts.app.running d1
check "the device kept sampling" stat_gt "$d" sensors.vibration.samples "$before"
check "lume stats answers" answers "$d" app
P=$LAST_PID
kill -TERM "$P"; wait "$P" 2>/dev/null
start_bg many2 "$LUME" run --config "$d/lume.conf.lua"
check "after a restart lume comes up" wait_for 10 answers "$d" app
check "after a restart the failed bundle is not the one running" wait_for 10 reported_is $D scripts.app.running d1
check "and the reported reason is still the CPU budget" wait_for 10 reported_matches $D scripts.app.error "CPU budget"

# --- hostile file scripts: the runtime answers and stops on SIGINT ---
H="$T/hostile"
make_device "$H"
cat >"$H/scripts/zz_hostile.lua" <<'EOS'
-- each timer tries one way to hold the loop forever
local ok_gc = pcall(setmetatable, {}, { __gc = function() while true do end end })
lume.timer.every(300, function() string.find(string.rep("a", 400), "a*a*a*a*a*a*a*a*b") end)
lume.timer.every(310, function() local s = string.rep("", 1e18) end)
lume.timer.every(320, function()
  local smt = getmetatable("")
  smt.__index = string.lower
  smt.__len = function() return math.maxinteger end
  table.concat("", "", 1, math.maxinteger - 1)
end)
lume.timer.every(330, function()
  local co = coroutine.create(function()
    local x <close> = setmetatable({}, { __close = function() while true do end end })
    coroutine.yield()
  end)
  coroutine.resume(co)
  coroutine.close(co)
end)
EOS
sed -i "s|^  status_interval_ms = 200,|  status_interval_ms = 0,\n  sandbox = { max_overruns = 0 },|" "$H/lume.conf.lua"
start_bg hostile "$LUME" run --config "$H/lume.conf.lua"
HP=$LAST_PID
check "lume runs beside hostile scripts" wait_for 10 answers "$H" zz_hostile
sleep 3
check "the hostile calls were stopped by the budget" stat_gt "$H" scripts.zz_hostile.budget_overruns 3
check "lume stats answers while they keep trying" answers "$H" rules
check "the default scripts are unharmed" stat_is "$H" scripts.rules.status running
check "the sampler dropped nothing" stat_is "$H" sensors.vibration.drops 0
kill -INT "$HP"
rc=0; wait_for 10 sh -c "! kill -0 $HP 2>/dev/null" || rc=1
wait "$HP" 2>/dev/null; code=$?
check "SIGINT stops it" test "$rc" = 0
check "with exit code 0" test "$code" = 0

# --- a saturated machine: preemption never kills a healthy script ---
# lume at nice 19 beside 4 busy loops on 2 cores gets a sliver of CPU, so its
# handlers are preempted mid-call and take many times their CPU in wall time
# (with a wall-clock budget, this run killed healthy handlers 17 times)
S="$T/busy"
make_device "$S"
sed -i "s|^  status_interval_ms = 200,|  status_interval_ms = 0,\n  sandbox = { cpu_budget_ms = 5, max_overruns = 0 },|" "$S/lume.conf.lua"
cat >"$S/scripts/work.lua" <<'EOS'
-- a healthy handler with real work: ~1 ms of CPU, well within a 5 ms budget
local acc = 0
lume.timer.every(20, function()
  local t0 = os.clock()
  while os.clock() - t0 < 0.001 do acc = acc + 1 end
end)
EOS
for i in 1 2 3 4; do start_bg "spin$i" sh -c 'while :; do :; done'; done
start_bg busy nice -n 19 "$LUME" run --config "$S/lume.conf.lua"
BUSY=$LAST_PID
check "the default scripts run on a saturated machine" wait_for 15 answers "$S" rules
sleep 8
"$LUME" stats --store "$S/var" >"$T/busy.json"
over=$(lua5.4 -e '
local s = io.read("a")
local n = 0
for v in s:gmatch("\"budget_overruns\":(%d+)") do n = n + tonumber(v) end
print(n)' <"$T/busy.json")
check "no budget kill while lume gets a sliver of 2 busy cores (CPU time, not wall time)" test "$over" = 0
check "the scripts were called" sh -c "grep -Eq '\"calls\":[1-9][0-9]{2,}' '$T/busy.json'"
kill -TERM "$BUSY"
finish
