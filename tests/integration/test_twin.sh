#!/usr/bin/env bash
# Scripts pushed through the twin: signed bundles, staged activation, soak,
# automatic rollback, quarantine, offline restarts, layered documents, bad
# documents.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s --persist || exit 1
mosq_certs "$MOSQ_CERTS" || exit 1
BROKER_PORT=$s_PORT
B="mqtt://127.0.0.1:$s_PORT"
C=$MOSQ_CERTS
mosq_sub s "$T/s.out" 'lume/+/telemetry/#'

"$LUME" keygen --out "$T/ops" >/dev/null
check "lume keygen makes a key pair" test -s "$T/ops.key" -a -s "$T/ops.pub"
"$LUME" keygen --out "$T/rogue" >/dev/null

# An https server for bundles given by url (openssl s_server -WWW).
mkdir -p "$T/www"
_mosq_pick_port; WWW_PORT=$REPLY
(cd "$T/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$WWW_PORT" \
   -cert "$C/server.pem" -key "$C/server.key") >"$T/www.log" 2>&1 &
PIDS+=($!)

D=pump
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5, max_packet = '1MiB'" 'x = 0'
sed -i "s|^  net = |  twin = { trusted_keys = {'$T/ops.pub'}, max_script_bytes = 65536, fetch_ca_file = '$C/ca.pem', groups = {'fleet', 'site-a', 'ring-pilot'} },\n  net = |" "$d/lume.conf.lua"
cat >>"$d/lume.conf.lua" <<'EOC'
EOC
start_bg pump "$LUME" run --config "$d/lume.conf.lua"
PUMP=$LAST_PID

# version 1: a heartbeat, so we can see it keep running
cat >"$T/v1.lua" <<'EOS'
local n = 0
lume.timer.every(100, function() n = n + 1; lume.publish("beat", "v1 " .. n) end)
function self_test() return n == 0 end
EOS
push() { "$LUME" push --device $D --broker "$B" --key "$T/ops.key" "$@" >>"$T/push.log" 2>&1; }
beats() { grep -c "^lume/$D/telemetry/beat v1 " "$T/s.out"; }
check "lume push publishes a signed bundle" push --name app --version 1 --soak 0 "$T/v1.lua"
check "a good script pushed becomes active and is reported" wait_for 5 reported_is $D scripts.app.status active
check "reported: the version running" reported_is $D scripts.app.running 1
check "the new script runs" wait_for 5 sh -c "[ \$(grep -c '^lume/$D/telemetry/beat v1 ' '$T/s.out') -ge 3 ]"
check "drift: in sync" "$LUME" twin drift --device $D --broker "$B"

# bad versions: rejected or rolled back with a reason; v1 keeps running and
# the sampler is unaffected
# "VERSION STATUS" of scripts.app in the reported document
reported_v() {
  mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t "lume/$1/reported" -C 1 -W 3 2>/dev/null \
    | ROOT="$ROOT" lua5.4 -e 'package.path = os.getenv("ROOT") .. "/stdlib/?.lua;" .. package.path
      local j = require("lume.json").decode(io.read("a"))
      local a = j and j.scripts and j.scripts.app or {}
      print(tostring(a.version) .. " " .. tostring(a.status))'
}
version_status_is() { [ "$(reported_v "$1")" = "$2 $3" ]; }  # DEV VERSION STATUS
bad() {
  local what=$1 version=$2 status=$3 pattern=$4; shift 4
  local before; before=$(beats)
  "$@" >>"$T/push.log" 2>&1
  # the status must be about this version, not the state a previous one left
  check "$what: version $version is $status" wait_for 15 version_status_is $D "$version" "$status"
  check "$what: the reason names it" reported_matches $D scripts.app.error "$pattern"
  check "$what: version 1 keeps running" reported_is $D scripts.app.running 1
  check "$what: its heartbeat goes on" wait_for 5 sh -c "[ \$(grep -c '^lume/$D/telemetry/beat v1 ' '$T/s.out') -gt $((before + 2)) ]"
}
printf 'local = 1\n' >"$T/syntax.lua"
bad "syntax error" 2 rejected "does not load: .*1:" push --name app --version 2 "$T/syntax.lua"
printf 'error("boom at load")\n' >"$T/loaderr.lua"
bad "error at load" 3 rejected "does not load: .*boom at load" push --name app --version 3 "$T/loaderr.lua"
printf 'function self_test() return false, "sensor missing" end\n' >"$T/selftest.lua"
bad "self_test false" 4 rejected "self_test returned false: sensor missing" push --name app --version 4 "$T/selftest.lua"
printf 'lume.timer.every(100, function() error("late boom") end)\n' >"$T/soakerr.lua"
bad "errors during soak" 5 rolled_back "soak: .*handler errors.*late boom" push --name app --version 5 --soak 3 "$T/soakerr.lua"
printf 'lume.timer.after(300, function() while true do end end)\n' >"$T/loop.lua"
bad "infinite loop" 6 rolled_back "CPU budget" push --name app --version 6 --soak 3 "$T/loop.lua"
printf 'lume.timer.after(300, function() local t = {} while true do t[#t+1] = string.rep("x", 64) .. #t end end)\n' >"$T/bomb.lua"
bad "memory bomb" 7 rolled_back "memory" push --name app --version 7 --soak 3 "$T/bomb.lua"
printf 'lume.timer.every(10, function() for i = 1, 100 do lume.publish("flood", i) end end)\n' >"$T/flood.lua"
bad "publish flood" 8 rolled_back "publish flood" push --name app --version 8 --soak 3 "$T/flood.lua"
bad "signed by an untrusted key" 9 rejected "unknown key id [0-9a-f]{16}: not one of the trusted keys" \
  "$LUME" push --device $D --broker "$B" --key "$T/rogue.key" --name app --version 9 --soak 0 "$T/v1.lua"
bad "unsigned bundle" 10 rejected "unsigned bundle" \
  "$LUME" push --device $D --broker "$B" --name app --version 10 --soak 0 "$T/v1.lua"
head -c 70000 /dev/zero | tr '\0' '-' >"$T/big.lua"
bad "oversized bundle" 11 rejected "too large: 70000 bytes" push --name app --version 11 "$T/big.lua"
cp "$T/syntax.lua" "$T/www/other.lua"
bad "wrong sha256" 12 rejected "sha256 mismatch" push --name app --version 12 --url "https://localhost:$WWW_PORT/other.lua" "$T/v1.lua"
_mosq_pick_port; closed=$REPLY
bad "url that fails" 13 rejected "fetch https://localhost:$closed/v1.lua" push --name app --version 13 --url "https://localhost:$closed/v1.lua" "$T/v1.lua"
"$LUME" push --device $D --broker "$B" --name "bad name!" --version 1 --soak 0 "$T/v1.lua" >>"$T/push.log" 2>&1  # unsigned: lume cannot sign a manifest for a bad name
check "unknown script name format: rejected" wait_for 10 reported_matches $D 'scripts.bad name!.error' "unknown script name format"
# every sensor's drops, not just one of them: 0 in all, and at least one sensor seen
no_drops() {
  "$LUME" stats --store "$1/var" | lua5.4 -e '
    local s, n, bad = io.read("a"), 0, 0
    for v in s:gmatch("\"drops\":(%d+)") do n = n + 1; if tonumber(v) > 0 then bad = bad + 1 end end
    os.exit(n > 0 and bad == 0)'
}
check "the sampler was unaffected (no ring drops on any sensor)" no_drops "$d"

# a url bundle that works
cp "$T/v1.lua" "$T/www/v1.lua"
check "a bundle fetched from an https url becomes active" push --name app --version 14 --soak 0 --url "https://localhost:$WWW_PORT/v1.lua" "$T/v1.lua"
check "the url version runs" wait_for 10 reported_is $D scripts.app.running 14

# quarantine: a version that fails three times (across restarts) is not tried again
push --name app --version 15 --soak 2 "$T/soakerr.lua"
check "a failing version is rolled back" wait_for 10 reported_is $D scripts.app.status rolled_back
for i in 1 2; do
  kill -TERM $PUMP; wait $PUMP
  start_bg pump$i "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
  wait_for 10 grep -q "bundle app: version 15 \(rolled_back\|quarantined\)" "$T/pump$i.err"
done
check "after failing 3 times it is quarantined" wait_for 10 reported_is $D scripts.app.status quarantined
kill -TERM $PUMP; wait $PUMP
start_bg pump3 "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
check "a quarantined version is not tried again after a restart" sh -c "sleep 2; grep -q 'version 15 quarantined' '$T/pump3.err' && ! grep -q 'version 15 rolled_back' '$T/pump3.err'"
check "the last-known-good runs meanwhile" reported_is $D scripts.app.running 14
push --name app --version 16 --soak 0 "$T/v1.lua"
check "a different version is tried again" wait_for 10 reported_is $D scripts.app.running 16

# reported changes are coalesced: 100 reports in one handler leave as one document
mosquitto_sub -h 127.0.0.1 -p $s_PORT -t "lume/$D/reported" >"$T/reported.stream" 2>/dev/null &
PIDS+=($!)
sleep 0.5
printf 'lume.timer.after(300, function() for i = 1, 100 do lume.twin.report({ ["burst_" .. i] = i }) end end)\n' >"$T/burst.lua"
push --name burst --version 1 --soak 0 "$T/burst.lua"
check "a burst of reports arrives" wait_for 10 grep -q '"burst_100":100' "$T/reported.stream"
check "coalesced: every reported document with the first of the burst has the last too" \
  sh -c "grep '\"burst_1\":1[,}]' '$T/reported.stream' | grep -vq '\"burst_100\":100' && exit 1 || exit 0"

# sensors, log, outbox keys
"$LUME" twin set --device $D --broker "$B" 'sensors={"vibration":{"rate":500},"humidity":50000}' 'log="debug"' 'outbox={"max_messages":5000}' >/dev/null
check "desired sensor rates are applied" wait_for 10 reported_is $D sensors.vibration.rate 500
check "a rate above the board's bound is clamped and reported" reported_is $D sensors.humidity.clamped true
check "log level applied" reported_is $D log.level debug
check "outbox limits applied" reported_is $D outbox.max_messages 5000
"$LUME" twin set --device $D --broker "$B" 'outbox={"max_messages":-3}' 'sensors={"vibration":{"rate":500},"nosuch":5}' >/dev/null
check "a bad outbox limit is refused naming key and value" wait_for 10 reported_matches $D errors.outbox "outbox.max_messages: expected a number between 0 and .* got -3"
check "an unknown sensor is reported" reported_matches $D errors.sensors "nosuch: no such sensor"

# restart offline: last-known-good scripts and desired rates from SQLite
kill -TERM $PUMP; wait $PUMP
mosq_stop s
start_bg pump4 "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
check "offline restart: the last-known-good script runs" wait_for 10 sh -c "'$LUME' stats --store '$d/var' | grep -q '\"app\":{\"status\":\"running\"'"
check "offline restart: desired sensor rates restored" sh -c "'$LUME' stats --store '$d/var' | grep -q '\"vibration\":{\"unit\":\"[^\"]*\",\"rate\":500,'"
# desired changed while lume is stopped is applied on the next connect
kill -TERM $PUMP; wait $PUMP
mosq_restart s
"$LUME" twin set --device $D --broker "$B" 'sensors={"vibration":{"rate":250}}' >/dev/null
start_bg pump5 "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
check "desired changed while stopped is applied on connect" wait_for 10 reported_is $D sensors.vibration.rate 250

# layers: fleet < site < ring < device, null deletes
cat >"$T/layers.lua" <<'EOS'
local json = require "lume.json"
local function get(k) local v = lume.twin.desired(k) ; if v == nil then return json.null end ; return v end
local function show() lume.twin.report({ seen = { limit = get("limit"), mode = get("mode"), extra = get("extra") } }) end
lume.twin.on_change("limit", show)
lume.twin.on_change("mode", show)
lume.twin.on_change("extra", show)
show()
EOS
push --name layers --version 1 --soak 0 "$T/layers.lua"
wait_for 10 reported_is $D scripts.layers.status active
"$LUME" twin set --group fleet --broker "$B" 'limit=10' 'mode={"a":1,"b":1}' 'extra="fleet"' >/dev/null
"$LUME" twin set --group site-a --broker "$B" 'limit=20' 'mode={"b":2}' >/dev/null
"$LUME" twin set --group ring-pilot --broker "$B" 'limit=30' 'extra=null' >/dev/null
check "group layers merge in order" wait_for 10 reported_is $D seen.limit 30
check "nested objects merge across layers" wait_for 5 reported_is $D seen.mode '{"a":1,"b":2}'
"$LUME" twin set --device $D --broker "$B" 'limit=40' 'extra=null' >/dev/null
check "the device layer comes last" wait_for 10 reported_is $D seen.limit 40
mosquitto_pub -h 127.0.0.1 -p $s_PORT -r -q 1 -t lume/groups/ring-pilot/desired -m '{"$version":99,"limit":30,"extra":"ring"}'
"$LUME" twin set --device $D --broker "$B" 'extra=null' 'limit=null' >/dev/null
mosquitto_pub -h 127.0.0.1 -p $s_PORT -r -q 1 -t lume/$D/desired -m "$(mosquitto_sub -h 127.0.0.1 -p $s_PORT -t lume/$D/desired -C 1 -W 3 | sed 's/"\$version":\([0-9]*\)/"$version":\1,"extra":null/')"
check "null in a later layer deletes a key set by an earlier one" wait_for 10 reported_is $D seen.extra nil
check "versions of every layer are reported" reported_matches $D desired_versions '"group:ring-pilot":99'

# bad documents: a clear reported error, nothing applied, no crash
for doc in 'not json' '[1,2,3]' '{"$version":"7"}' "$(printf '%0.s[' $(seq 1 40))" '{"scripts":[1]}'; do
  mosquitto_pub -h 127.0.0.1 -p $s_PORT -q 1 -t lume/$D/desired -m "$doc"
done
check "a malformed desired document is reported" wait_for 10 reported_matches $D errors.desired "."
head -c 300000 /dev/zero | tr '\0' 'x' | sed 's/^/{"a":"/; s/$/"}/' >"$T/huge.json"
mosquitto_pub -h 127.0.0.1 -p $s_PORT -q 1 -t lume/$D/desired -f "$T/huge.json"
check "a huge document is refused with its size" wait_for 10 reported_matches $D errors.desired "$(wc -c <"$T/huge.json") bytes, more than 262144"
check "lume survived every bad document" kill -0 $PUMP
check "and still runs its scripts" reported_is $D scripts.app.status active

finish
