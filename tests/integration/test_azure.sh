#!/usr/bin/env bash
# The azure dialect against an emulated Azure IoT Hub (tests/integration/
# azure_hub.py: a proxy that checks each CONNECT's SAS token and drops the
# connection when the token expires, in front of a real mosquitto, and a
# hub side that plays the twin, direct methods and C2D): telemetry with
# property bags, desired patches (a bundle, a sensor rate) applied and
# reported, a change made while offline picked up by the GET after
# reconnecting, `lume push --dialect azure` patches sent by the hub and
# applied (or rejected when signed for another device), a version gap
# answered by a GET, 429 with backoff, a wrong
# key refused (CONNACK 5) with backoff, token renewals losing nothing,
# methods and C2D round trips.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"
. "$(dirname "$0")/azhub.sh"

if ! $PY -c 'import paho.mqtt.client' 2>/dev/null; then
  echo "# python3-paho-mqtt is missing (make deps installs it)"
  not_ok "python3-paho-mqtt installed"
  finish; exit 1
fi

mosq_start az --ws || exit 1
HOST=testhub.azure-devices.net
KEY=$(head -c 32 /dev/urandom | base64 -w0)
BADKEY=$(head -c 32 /dev/urandom | base64 -w0)
az_hub_start hub "$az_PORT" "$HOST" "$KEY" || { not_ok "the hub emulator starts"; finish; exit 1; }

"$LUME" keygen --out "$T/ops" >/dev/null

D=az1
d="$T/$D"
SCRIPT='local n = 0
lume.timer.every(100, function()
  n = n + 1
  lume.publish("hello", {n = n}, {properties = {site = "plant a", seq = tostring(n)}})
end)
lume.method("double", function(p) return {twice = p.x * 2} end)
lume.method("boom", function() error("no such valve") end)
lume.method("spin", function() while true do end end)
local ok, err = lume.twin.report({valve = {["bad.key"] = 1}})
lume.log.info("report bad key: %s %s", tostring(ok), tostring(err))
lume.on_c2d(function(payload, props)
  lume.log.info("c2d arrived: %s kind=%s", payload, props.kind or "?")
  lume.publish("c2d-echo", {payload = payload, kind = props.kind})
end)'
CS="HostName=$HOST;DeviceId=$D;SharedAccessKey=$KEY"
net_device "$d" "url = 'mqtt://127.0.0.1:$HUB_PORT', dialect = 'azure', connection_string = '$CS', keepalive_s = 5, backoff_min_ms = 200, backoff_max_ms = 1000" "$SCRIPT"
sed -i "s|^  net = |  twin = { trusted_keys = {'$T/ops.pub'} },\n  net = |" "$d/lume.conf.lua"
start_bg dev "$LUME" run --config "$d/lume.conf.lua"
DEV=$LAST_PID

# ---- connection, telemetry ----------------------------------------------------
check "the device connects with a SAS token the hub verifies" wait_for 10 sh -c "grep -q '\"ev\": \"connect\", \"client\": \"$D\"' '$T/hub.out'"
check "telemetry arrives on devices/$D/messages/events/" wait_for 10 sh -c "grep -q '\"ev\": \"telemetry\", \"device\": \"$D\"' '$T/hub.out'"
line=$(events telemetry | grep '"route": "hello"' | head -1)
check "property bag: route=hello, \$.ct, \$.ce, t=mqtt" sh -c "echo '$line' | grep -q '\"\$.ct\": \"application/json\", \"\$.ce\": \"utf-8\", \"route\": \"hello\", \"t\": \"mqtt\"'"
check "property bag: the script's own properties, URL-decoded by the hub" sh -c "echo '$line' | grep -q '\"site\": \"plant a\"'"

# ---- twin ----------------------------------------------------------------------
check "a twin GET after connecting" wait_for 10 hub_stat_ge gets 1
check "reported properties arrive as a PATCH, answered 204" wait_for 10 hub_stat_ge reported_patches 1
check "reported: lume.board in the hub's twin" wait_for 10 hub_twin_is reported.lume.board sim

azctl '{"cmd":"patch","patch":{"sensors":{"temperature":5}}}' >/dev/null
check "a sensor rate pushed as a desired patch is applied and reported" wait_for 10 hub_twin_is reported.sensors.temperature.rate 5

cat >"$T/beat.lua" <<'EOS'
local n = 0
lume.timer.every(200, function() n = n + 1; lume.publish("beat", {n = n}) end)
EOS
B=$("$LUME" sign "$T/beat.lua" --key "$T/ops.key" --name beat --version v1)
azctl "{\"cmd\":\"patch\",\"patch\":{\"scripts\":{\"beat\":$B}}}" >/dev/null
check "a script bundle pushed as a desired patch becomes active and is reported" wait_for 15 hub_twin_is reported.scripts.beat.status active
check "the pushed script runs (its telemetry arrives)" wait_for 10 sh -c "grep -q '\"route\": \"beat\"' '$T/hub.out'"
check "desired_versions reports the hub's \$version" wait_for 5 hub_twin_is reported.desired_versions.device "$(hub_twin 'desired.$version')"

# `lume push` for a hub that keeps twins behind its service API: it prints the
# desired patch (signed as for the mqtt dialect) that the operator hands to
# `az iot hub device-twin update --desired`; here the emulator's hub sends it
printf 'lume.timer.every(300, function() lume.publish("tick", 1) end)\n' >"$T/tick.lua"
P=$("$LUME" push --config "$d/lume.conf.lua" --device "$D" "$T/tick.lua" --key "$T/ops.key" \
  --version t1 --soak 0 2>"$T/push.err")
echo "# patch: ${P:0:120}..."
check "lume push (net.dialect azure in --config) prints the desired patch, signed for device:$D" \
  sh -c "printf '%s' '$P' | grep -q '^{\"scripts\":{\"tick\":{\"version\":\"t1\",.*\"target\":\"device:$D\".*\"sig\":\"[^\"]'"
azctl "{\"cmd\":\"patch\",\"patch\":$P}" >/dev/null
check "... that patch, sent by the hub, is verified, applied and reported active" \
  wait_for 15 hub_twin_is reported.scripts.tick.status active
check "... at its version" hub_twin_is reported.scripts.tick.version t1
P=$("$LUME" push --dialect azure --device "$D" "$T/tick.lua" --key "$T/ops.key" --version t2 --soak 0)
azctl "{\"cmd\":\"patch\",\"patch\":$P}" >/dev/null
check "lume push --dialect azure (no config): the next version is applied as well" \
  wait_for 15 hub_twin_is reported.scripts.tick.version t2
P=$("$LUME" push --dialect azure --device other "$T/tick.lua" --key "$T/ops.key" --version t3 --soak 0)
azctl "{\"cmd\":\"patch\",\"patch\":$P}" >/dev/null
check "a patch signed for another device is refused, naming the target" \
  wait_for 15 grep -q 'tick.*it targets device:other' "$T/dev.err"
check "... reported rejected to the hub" wait_for 10 hub_twin_is reported.scripts.tick.status rejected
check "... and the version running stays" hub_twin_is reported.scripts.tick.running t2
check "lume push --dialect azure --group: refused, naming why" \
  sh -c "out=\$('$LUME' push --dialect azure --group g '$T/tick.lua' 2>&1); test \$? = 2 && echo \"\$out\" | grep -q 'no group documents'"

# a version gap: the hub bumps $version without sending, then sends the next
gets_before=$(hub_stat gets)
azctl '{"cmd":"patch","patch":{"sensors":{"temperature":4}},"skip":1}' >/dev/null
check "a desired patch after a version gap makes the device GET the twin" wait_for 10 hub_stat_ge gets $((gets_before + 1))
check "... and what the GET brought is applied" wait_for 10 hub_twin_is reported.sensors.temperature.rate 4
check "the gap is logged" grep -q "a gap; asking for the whole twin" "$T/dev.err"

# 429: the next two reported PATCHes are throttled, then accepted
azctl '{"cmd":"fail429","n":2}' >/dev/null
azctl '{"cmd":"patch","patch":{"sensors":{"temperature":3}}}' >/dev/null
check "429 answered with backoff and retried until 204" wait_for 15 hub_twin_is reported.sensors.temperature.rate 3
check "the throttling is logged" grep -q "throttled (429)" "$T/dev.err"
check "lume stats counts it" wait_for 5 sh -c "'$LUME' stats --config '$d/lume.conf.lua' 2>/dev/null | grep -q '\"reported_throttled\":[1-9]'"

# another status: logged with the hub's message and counted; the next change goes through
azctl '{"cmd":"fail429","n":1,"status":400}' >/dev/null
azctl '{"cmd":"patch","patch":{"log":"info"}}' >/dev/null
check "a reported PATCH answered 400 is logged with the hub's message" wait_for 10 grep -q 'reported PATCH answered 400: .*emulated failure' "$T/dev.err"
check "... and counted in lume stats" wait_for 5 sh -c "'$LUME' stats --config '$d/lume.conf.lua' 2>/dev/null | grep -q '\"reported_errors\":1'"

# a sensor no longer desired leaves the hub's reported twin (the PATCH nulls it)
azctl '{"cmd":"patch","patch":{"sensors":{"temperature":null,"humidity":2}}}' >/dev/null
check "reported PATCHes are diffs: a new sensor appears" wait_for 10 hub_twin_is reported.sensors.humidity.rate 2
check "... and the one no longer desired is removed from the hub's twin" hub_twin_is reported.sensors.temperature nil
check "a reported key the hub refuses ('.') is refused to the script, naming it" grep -q 'report bad key: nil twin.report: reported key "bad.key" (at valve.bad.key)' "$T/dev.err"

# ---- methods and C2D --------------------------------------------------------------
r=$(azctl '{"cmd":"method","name":"double","payload":{"x":21}}')
check "direct method: 200 with the handler's value as JSON" sh -c "echo '$r' | grep -q '\"status\": 200' && echo '$r' | grep -q 'twice.*42'"
r=$(azctl '{"cmd":"method","name":"nope","payload":null}')
check "direct method: unknown name -> 404" sh -c "echo '$r' | grep -q '\"status\": 404'"
r=$(azctl '{"cmd":"method","name":"boom","payload":null}')
check "direct method: handler error -> 500 with the message" sh -c "echo '$r' | grep -q '\"status\": 500' && echo '$r' | grep -q 'no such valve'"
r=$(azctl '{"cmd":"method","name":"spin","payload":null,"timeout":10}')
check "direct method: over its CPU budget -> 504" sh -c "echo '$r' | grep -q '\"status\": 504'"
azctl "{\"cmd\":\"c2d\",\"device\":\"$D\",\"payload\":\"open valve 3\",\"props\":{\"kind\":\"cmd x\"}}" >/dev/null
check "C2D: lume.on_c2d gets the payload and the parsed property bag" wait_for 10 grep -q "c2d arrived: open valve 3 kind=cmd x" "$T/dev.err"

# ---- remote logs: telemetry on the route lume-log, marked lume-kind=log ------------
azctl '{"cmd":"patch","patch":{"log":{"remote":{"level":"warn","for_s":30}}}}' >/dev/null
check "remote logs on: reported log.remote.active in the hub's twin" wait_for 10 hub_twin_is reported.log.remote.active true
azctl '{"cmd":"method","name":"boom","payload":null}' >/dev/null   # logged at WARN
check "remote logs: the warning arrives as telemetry on route lume-log with lume-kind=log" \
  wait_for 10 sh -c "grep '\"route\": \"lume-log\"' '$T/hub.out' | grep '\"lume-kind\": \"log\"' | grep -q 'no such valve'"
azctl '{"cmd":"patch","patch":{"log":null}}' >/dev/null
check "remote logs off when log is removed" wait_for 10 hub_twin_is reported.log.remote.active false

# ---- a change while disconnected: picked up by the GET after reconnecting ------------
connects_before=$(hub_stat connects)
azctl '{"cmd":"outage","s":3}' >/dev/null
check "the device sees the hub go away" wait_for 10 grep -q "disconnected" "$T/dev.err"
azctl '{"cmd":"patch","patch":{"sensors":{"temperature":2}},"send":false}' >/dev/null
check "the device reconnects after the outage" wait_for 20 hub_stat_ge connects $((connects_before + 1))
check "the desired change made while it was away is applied (from the GET) and reported" wait_for 10 hub_twin_is reported.sensors.temperature.rate 2
kill "$DEV"; wait "$DEV" 2>/dev/null

# ---- a wrong key: CONNACK 5 named in the log, backoff -------------------------------
d3="$T/az3"
net_device "$d3" "url = 'mqtt://127.0.0.1:$HUB_PORT', dialect = 'azure', hub_host = '$HOST', sas_key = '$BADKEY', backoff_min_ms = 200, backoff_max_ms = 800" 'x = 0'
start_bg az3 "$LUME" run --config "$d3/lume.conf.lua"
AZ3=$LAST_PID
check "a wrong key: the hub refuses the token" wait_for 10 sh -c "grep -q '\"ev\": \"refused\", \"client\": \"az3\", \"why\": \"signature does not verify' '$T/hub.out'"
check "a wrong key: CONNACK refusal named in the device's log" wait_for 10 grep -q "CONNACK refused by 127.0.0.1:$HUB_PORT: .*(code 5)" "$T/az3.err"
check "a wrong key: the device backs off and tries again" wait_for 10 sh -c "[ \$(grep -c 'reconnecting in' '$T/az3.err') -ge 2 ]"
kill "$AZ3"; wait "$AZ3" 2>/dev/null

# ---- MQTT over WebSockets (straight to the broker's ws listener: no SAS check
# on this path, the proxy speaks plain MQTT only) --------------------------------
d4="$T/az4"
net_device "$d4" "url = 'ws://127.0.0.1:$az_WS_PORT/\$iothub/websocket', dialect = 'azure', hub_host = '$HOST', sas_key = '$KEY'" 'lume.timer.every(200, function() lume.publish("ws", 1) end)'
start_bg az4 "$LUME" run --config "$d4/lume.conf.lua"
AZ4=$LAST_PID
check "over WebSockets: telemetry carries t=ws" wait_for 10 sh -c "grep '\"device\": \"az4\"' '$T/hub.out' | grep -q '\"t\": \"ws\"'"
check "over WebSockets: the twin GET is answered and the reported PATCH acknowledged" wait_for 10 sh -c "'$LUME' stats --config '$d4/lume.conf.lua' 2>/dev/null | grep -q '\"gets\":[1-9].*\"reported_acked\":[1-9]'"
kill "$AZ4"; wait "$AZ4" 2>/dev/null

# ---- token renewals: a 4 s token for ~30 s of telemetry, nothing lost ------------------
d2="$T/az2"
printf '%s' "$KEY" >"$T/az2.key"
net_device "$d2" "url = 'mqtt://127.0.0.1:$HUB_PORT', dialect = 'azure', hub_host = '$HOST', sas_key_file = '$T/az2.key', sas_ttl_s = 4, backoff_min_ms = 100, backoff_max_ms = 500" 'local n = 0
lume.timer.every(100, function() n = n + 1; lume.publish("seq", {n = n}) end)'
start_bg az2 "$LUME" run --config "$d2/lume.conf.lua"
AZ2=$LAST_PID
sleep 30
az2_connects() { events connect | grep -c '"client": "az2"'; }
check "renewals: the device reconnected with fresh tokens (>= 6 connections in 30 s)" test "$(az2_connects)" -ge 6
check "renewals: the hub never had to drop an expired token" test "$(events expired | grep -c '"client": "az2"')" -eq 0
check "renewals: logged as such" grep -q "SAS token renewal" "$T/az2.err"
kill -STOP "$AZ2" 2>/dev/null; sleep 0.5; kill -CONT "$AZ2" 2>/dev/null
sleep 2
kill "$AZ2"; wait "$AZ2" 2>/dev/null
# every n from 1 to the largest that arrived, none missing (duplicates allowed)
lost=$($PY - "$T/hub.out" <<'EOP'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("ev") == "telemetry" and e["device"] == "az2" and e["props"].get("route") == "seq":
        seen.add(json.loads(e["payload"])["n"])
top = max(seen) if seen else 0
print(top, len([n for n in range(1, top + 1) if n not in seen]))
EOP
)
echo "# az2: highest seq ${lost% *}, missing ${lost#* }"
check "renewals: ~30 s of telemetry arrived (>= 250 messages)" test "${lost% *}" -ge 250
check "renewals: zero lost across the reconnects" test "${lost#* }" -eq 0

check "lume sent nothing off the hub's topics (the emulator would have closed it)" \
  sh -c "! grep -q '\"ev\": \"off_protocol\"' '$T/hub.out'"

[ -n "${AZ_KEEP:-}" ] && cp -r "$T" "$AZ_KEEP"
finish
