#!/usr/bin/env bash
# The DPS emulator (dps_emulator.py) checked with Microsoft's own Node.js
# provisioning SDK (tests/azure-sdk/dps_sdk.js over MQTT with TLS, a cert
# made here): individual and group enrollment are assigned, retry-after is
# the SDK's polling interval too (no early poll), a wrong key is refused.
# Needs the SDK packages (`make deps-node` into tests/azure-sdk/node_modules).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

PY=/usr/bin/python3
SDK="$ROOT/tests/azure-sdk"
if [ ! -d "$SDK/node_modules/azure-iot-provisioning-device-mqtt" ] || ! command -v node >/dev/null; then
  not_ok "the Azure IoT provisioning SDK is installed in tests/azure-sdk/node_modules" \
    "missing: run 'make deps-node' (npm ci against tests/azure-sdk/package-lock.json)"
  finish; exit 1
fi
if ! $PY -c 'import paho.mqtt.client' 2>/dev/null; then
  not_ok "python3-paho-mqtt installed (make deps installs it)"
  finish; exit 1
fi

SCOPE=0ne00SDK01
KEY=$(head -c 32 /dev/urandom | base64 -w0)
GROUP=$(head -c 64 /dev/urandom | base64 -w0)
mosq_certs "$T/certs"
mosq_start sdkb || exit 1
_mosq_pick_port; DPS_PORT=$REPLY
_mosq_pick_port; DPS_TLS=$REPLY
_mosq_pick_port; DPS_CTL=$REPLY
start_bg dps $PY "$ROOT/tests/integration/dps_emulator.py" --listen "$DPS_PORT" --tls-listen "$DPS_TLS" \
  --cert "$T/certs/server.pem" --key "$T/certs/server.key" --broker "$sdkb_PORT" --control "$DPS_CTL" \
  --scope "$SCOPE" --hub sdk-hub.azure-devices.net --polls 2 --retry-after 1 \
  --individual "sdk-ind=$KEY" --group "$GROUP"
wait_for 10 grep -qs '"ready"' "$T/dps.out" || { not_ok "the DPS emulator starts" "$(cat "$T/dps.err")"; finish; exit 1; }
jget() { lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
dps_stat() {
  $PY -c 'import socket,sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"{\"cmd\":\"stats\"}\n")
print(s.makefile().readline().strip())' "$DPS_CTL" | jget "$1"
}
sdk() { NODE_EXTRA_CA_CERTS="$T/certs/ca.pem" timeout 90 node "$SDK/dps_sdk.js" --host "127.0.0.1:$DPS_TLS" --scope "$SCOPE" "$@"; }

sdk --registration sdk-ind --key "$KEY" --model-id 'dtmi:com:example:Pump;1' >"$T/ind.out" 2>"$T/ind.err"
rc=$?
echo "# individual: $(cat "$T/ind.out" "$T/ind.err")"
check "SDK, individual enrollment: registered (exit 0)" test "$rc" -eq 0
check "SDK, individual enrollment: assigned hub and device id" sh -c "grep -q '\"assignedHub\":\"sdk-hub.azure-devices.net\",\"deviceId\":\"sdk-ind\",\"status\":\"assigned\",\"substatus\":\"initialAssignment\"' '$T/ind.out'"
check "SDK, individual enrollment: the model id arrived in the register payload" grep -q '"registration": "sdk-ind", .*"payload": {"modelId": "dtmi:com:example:Pump;1"}' "$T/dps.out"
check "SDK, individual enrollment: it polled with the emulator's retry-after (no early poll)" test "$(dps_stat registrations.sdk-ind.early_polls)" -eq 0

sdk --registration sdk-grp --group-key "$GROUP" >"$T/grp.out" 2>"$T/grp.err"
rc=$?
echo "# group: $(cat "$T/grp.out" "$T/grp.err")"
check "SDK, group enrollment (derived key): registered" test "$rc" -eq 0
check "SDK, group enrollment: assigned" grep -q '"deviceId":"sdk-grp","status":"assigned"' "$T/grp.out"

sdk --registration sdk-ind --key "$(head -c 32 /dev/urandom | base64 -w0)" >"$T/bad.out" 2>"$T/bad.err"
rc=$?
echo "# wrong key: $(cat "$T/bad.err" | head -3)"
check "SDK, wrong key: registration fails" test "$rc" -ne 0
check "SDK, wrong key: the emulator refused the token (401)" grep -q '"ev": "refused", "client": "sdk-ind", "status": 401' "$T/dps.out"
[ -n "${DPS_KEEP:-}" ] && cp -r "$T" "$DPS_KEEP"
finish
