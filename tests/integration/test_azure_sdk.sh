#!/usr/bin/env bash
# The IoT Hub emulator (tests/integration/azure_hub.py) checked with
# Microsoft's own Azure IoT device SDK for Node.js (tests/azure-sdk/hub_sdk.js,
# installed by `make deps-node`): SAS over TLS from a connection string,
# getTwin, a reported patch (204, $version bumped), a desired patch with its
# $version, a direct method, C2D with a property bag, sendEvent with
# properties, token renewal, an expired token dropped, a wrong key refused.
# Then lume once over the same TLS listener (mqtts with the test CA).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

PY=/usr/bin/python3
SDK="$ROOT/tests/azure-sdk"
if ! command -v node >/dev/null; then
  not_ok "node is installed" "no node on PATH: run 'make deps' (deps-node installs nodejs and npm)"
  finish; exit 1
fi
if [ ! -d "$SDK/node_modules/azure-iot-device-mqtt" ]; then
  not_ok "the Azure IoT device SDK is installed in tests/azure-sdk/node_modules" \
    "missing: run 'make deps-node' (npm ci against tests/azure-sdk/package-lock.json)"
  finish; exit 1
fi
if ! $PY -c 'import paho.mqtt.client' 2>/dev/null; then
  not_ok "python3-paho-mqtt installed" "missing: run 'make deps'"
  finish; exit 1
fi

mosq_start azs || exit 1
mosq_certs "$MOSQ_CERTS" || exit 1
HOST=testhub.azure-devices.net
KEY=$(head -c 32 /dev/urandom | base64 -w0)
BADKEY=$(head -c 32 /dev/urandom | base64 -w0)
_mosq_pick_port; HUB_PORT=$REPLY
_mosq_pick_port; TLS_PORT=$REPLY
_mosq_pick_port; CTL_PORT=$REPLY

# the hub answers to its own name and, for a client told HostName=localhost:PORT,
# to that (the SAS token's sr then carries "%3A")
start_bg hub $PY "$ROOT/tests/integration/azure_hub.py" --listen "$HUB_PORT" --broker "$azs_PORT" \
  --tls-listen "$TLS_PORT" --tls-cert "$MOSQ_CERTS/server.pem" --tls-key "$MOSQ_CERTS/server.key" \
  --control "$CTL_PORT" --host "$HOST" --host "localhost:$TLS_PORT" --key "$KEY" \
  --desired '{"greeting":"hi"}'
wait_for 10 grep -qs '"ready"' "$T/hub.out" || { not_ok "the hub emulator starts" "$(cat "$T/hub.err")"; finish; exit 1; }

# ---- Microsoft's SDK against the emulator ------------------------------------------
SDK_HOST=$HOST SDK_GATEWAY="localhost:$TLS_PORT" SDK_KEY=$KEY SDK_BADKEY=$BADKEY \
  SDK_CA="$MOSQ_CERTS/ca.pem" SDK_CTL=$CTL_PORT SDK_EVENTS="$T/hub.out" SDK_DEVICE=sdk1 \
  timeout "${SDK_TIMEOUT:-90}" node "$SDK/hub_sdk.js" >"$T/sdk.out" 2>"$T/sdk.err"
rc=$?
while IFS= read -r line; do
  case "$line" in
    PASS\ *) ok "SDK: ${line#PASS }" ;;
    FAIL\ *) not_ok "SDK: ${line#FAIL }" ;;
    \#*) echo "$line" ;;
  esac
done <"$T/sdk.out"
if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$T/sdk.out"; then
  not_ok "hub_sdk.js ran to its end (exit $rc)" "$(tail -20 "$T/sdk.err")"
fi
check "hub_sdk.js made its checks" grep -q '^PASS ' "$T/sdk.out"

# ---- the emulator holds a device to the hub's topics --------------------------------
# a device with a good token that publishes to a topic of lume's mqtt dialect:
# the hub would close the connection, so the emulator does
off=$($PY - "$HUB_PORT" "$HOST" "$KEY" <<'EOP'
import base64, hashlib, hmac, socket, sys, time, urllib.parse
import paho.mqtt.client as mqtt
port, host, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
se = int(time.time()) + 60
sr = urllib.parse.quote(host + "/devices/stray", safe="")
sig = base64.b64encode(hmac.new(base64.b64decode(key), (sr + "\n" + str(se)).encode(),
                                hashlib.sha256).digest()).decode()
c = mqtt.Client(client_id="stray")
c.username_pw_set(host + "/stray/?api-version=2021-04-12",
                  "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, urllib.parse.quote(sig, safe=""), se))
gone = []
c.on_disconnect = lambda *a: gone.append(1)
c.connect("127.0.0.1", port)
c.loop_start()
time.sleep(0.5)
c.publish("devices/stray/messages/events/", "ok", qos=1).wait_for_publish(5)
c.publish("lume/stray/telemetry/x", "off", qos=1)
end = time.time() + 5
while not gone and time.time() < end:
    time.sleep(0.05)
print("closed" if gone else "still-connected")
EOP
)
check "a device publishing off the hub's topics: the emulator closes its connection" test "$off" = closed
check "... naming the topic" wait_for 5 sh -c "grep '\"ev\": \"off_protocol\", \"client\": \"stray\"' '$T/hub.out' | grep -q 'lume/stray/telemetry/x'"
check "... after its telemetry on the hub's own topic went through" sh -c "grep -q '\"device\": \"stray\", .*\"payload\": \"ok\"' '$T/hub.out'"

# ---- lume over the same TLS listener ------------------------------------------------
jget() { lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
azctl() {
  $PY -c 'import socket,sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().readline().strip())' "$CTL_PORT" "$1"
}
d="$T/aztls"
net_device "$d" "url = 'mqtts://localhost:$TLS_PORT', ca_file = '$MOSQ_CERTS/ca.pem', dialect = 'azure', hub_host = '$HOST', sas_key = '$KEY', model_id = 'dtmi:com:example:Pump;1'" \
  'lume.timer.every(200, function() lume.publish("tls", 1, {properties = {k = "v w"}}) end)'
start_bg aztls "$LUME" run --config "$d/lume.conf.lua"
AZT=$LAST_PID
check "lume over mqtts with the test CA: the emulator verifies its token on the TLS listener" \
  wait_for 10 sh -c "grep '\"ev\": \"connect\", \"client\": \"aztls\"' '$T/hub.out' | grep -q '\"tls\": true'"
check "... its user name carries the model id, URL-decoded by the hub" \
  sh -c "grep '\"client\": \"aztls\"' '$T/hub.out' | grep -q '\"model-id\": \"dtmi:com:example:Pump;1\"'"
check "... telemetry arrives with its property bag" \
  wait_for 10 sh -c "grep '\"device\": \"aztls\"' '$T/hub.out' | grep -q '\"k\": \"v w\"'"
board_reported() { [ "$(azctl '{"cmd":"twin"}' | jget reported.lume.board)" = sim ]; }
check "... its reported properties reach the twin (GET, PATCH, 204)" wait_for 10 board_reported
check "... and sends nothing off the hub's topics" sh -c "! grep -q '\"ev\": \"off_protocol\", \"client\": \"aztls\"' '$T/hub.out'"
kill "$AZT"; wait "$AZT" 2>/dev/null

[ -n "${AZ_KEEP:-}" ] && cp -r "$T" "$AZ_KEEP"
finish
