#!/usr/bin/env bash
# Scripts pushed through the twin of the mqtt dialect: the specs every dialect
# passes (tests/integration/twin_specs.sh: signed bundles, staged activation,
# soak, automatic rollback, quarantine, chunks, urls, sensors, log, outbox),
# then what is the mqtt dialect's own: coalesced retained reports, offline
# restarts, layered group documents, bad documents.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"
. "$(dirname "$0")/twin_specs.sh"

mosq_start s --persist || exit 1
mosq_certs "$MOSQ_CERTS" || exit 1
BROKER_PORT=$s_PORT
B="mqtt://127.0.0.1:$s_PORT"
C=$MOSQ_CERTS
mosq_sub s "$T/s.out" 'lume/+/telemetry/#'

"$LUME" keygen --out "$T/ops" >/dev/null
check "lume keygen makes a key pair" test -s "$T/ops.key" -a -s "$T/ops.pub"
"$LUME" keygen --out "$T/rogue" >/dev/null

D=pump
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5, max_packet = '1MiB'" 'x = 0'
sed -i "s|^  net = |  twin = { trusted_keys = {'$T/ops.pub'}, max_script_bytes = 65536, fetch_ca_file = '$C/ca.pem', groups = {'fleet', 'site-a', 'ring-pilot'} },\n  net = |" "$d/lume.conf.lua"
start_bg pump "$LUME" run --config "$d/lume.conf.lua"
PUMP=$LAST_PID

# ---- the specs every dialect passes (tests/integration/twin_specs.sh) -------------
DIALECT=mqtt
dialect_push() { "$LUME" push --device $D --broker "$B" --unsigned "$@"; } # --unsigned: the specs push unsigned on purpose
dialect_set() { "$LUME" twin set --device $D --broker "$B" "$@"; }
dialect_set_raw() { "$LUME" twin set --force --device $D --broker "$B" "$@"; }
dialect_reported() { mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t "lume/$D/reported" -C 1 -W 3 2>/dev/null; }
dialect_telemetry() { grep "^lume/$D/telemetry/$1 " "$T/s.out" | cut -d' ' -f2-; }
dialect_in_sync() { "$LUME" twin drift --device $D --broker "$B"; }
BAD_NAME="bad name!"
BIG_PUSH=""
BIG_WHY="too large: 70000 bytes"
spec_www_start
twin_specs

# ---- what only the mqtt dialect has: retained documents, group layers --------------
# reported changes are coalesced: 100 reports in one handler leave as one document
mosquitto_sub -h 127.0.0.1 -p $s_PORT -t "lume/$D/reported" >"$T/reported.stream" 2>/dev/null &
PIDS+=($!)
sleep 0.5
printf 'lume.timer.after(300, function() for i = 1, 100 do lume.twin.report({ ["burst_" .. i] = i }) end end)\n' >"$T/burst.lua"
spec_push --name burst --version 1 --soak 0 "$T/burst.lua"
check "a burst of reports arrives" wait_for 10 grep -q '"burst_100":100' "$T/reported.stream"
check "coalesced: every reported document with the first of the burst has the last too" \
  sh -c "grep '\"burst_1\":1[,}]' '$T/reported.stream' | grep -vq '\"burst_100\":100' && exit 1 || exit 0"

# restart offline: last-known-good scripts and desired rates from SQLite
kill -TERM $PUMP; wait $PUMP
if broker_can persist; then
mosq_stop s
start_bg pump4 "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
check "offline restart: the last-known-good script runs" wait_for 10 sh -c "'$LUME' stats --store '$d/var' | grep -q '\"app\":{\"status\":\"running\"'"
check "offline restart: desired sensor rates restored" sh -c "'$LUME' stats --store '$d/var' | grep -q '\"vibration\":{\"unit\":\"[^\"]*\",\"rate\":500,'"
# desired changed while lume is stopped is applied on the next connect
kill -TERM $PUMP; wait $PUMP
mosq_restart s
else # its retained documents would not survive the restart (docs/brokers.md)
  skip "offline restart" "$LUME_TEST_BROKER keeps retained messages in memory: the broker stays up"
fi
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
spec_push --name layers --version 1 --soak 0 "$T/layers.lua"
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
