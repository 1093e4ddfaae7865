#!/usr/bin/env bash
# DPS provisioning (core/hub/dps.c) against tests/integration/dps_emulator.py
# and two hub emulators (azure_hub.py), each on its own real mosquitto:
# individual enrollment, group enrollment (derived key), retry-after
# honoured, a device moved to another hub re-provisions, the assignment
# survives a restart with DPS gone, `lume provision`, failures (a wrong key,
# a "disabled" answer, malformed JSON) logged and retried with backoff.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

PY=/usr/bin/python3
if ! $PY -c 'import paho.mqtt.client' 2>/dev/null; then
  not_ok "python3-paho-mqtt installed (make deps installs it)"
  finish; exit 1
fi

SCOPE=0ne00DPS1T
HUB_A=hub-a.azure-devices.net
HUB_B=hub-b.azure-devices.net
KEY_IND=$(head -c 32 /dev/urandom | base64 -w0)
KEY_BAD=$(head -c 32 /dev/urandom | base64 -w0)
GROUP=$(head -c 64 /dev/urandom | base64 -w0)
derive() { $PY -c 'import base64,hashlib,hmac,sys
print(base64.b64encode(hmac.new(base64.b64decode(sys.argv[1]), sys.argv[2].encode(), hashlib.sha256).digest()).decode())' "$GROUP" "$1"; }
RETRY=2     # the emulator's retry-after, seconds
POLLS=2     # assigned at the 2nd poll

mosq_certs "$T/certs"
C="$T/certs"
mosq_start dpsb || exit 1
mosq_start hba || exit 1
mosq_start hbb || exit 1
_mosq_pick_port; DPS_PORT=$REPLY
_mosq_pick_port; DPS_CTL=$REPLY
_mosq_pick_port; DPS_TLS=$REPLY
_mosq_pick_port; HA_PORT=$REPLY
_mosq_pick_port; HA_CTL=$REPLY
_mosq_pick_port; HB_PORT=$REPLY
_mosq_pick_port; HB_CTL=$REPLY

# the hubs accept the individual key and the group-derived keys of the devices below
HUB_KEYS=(--key "$KEY_IND" --key "$(derive dev-grp)" --key "$(derive dev-cli)")
start_bg huba $PY "$ROOT/tests/integration/azure_hub.py" --listen "$HA_PORT" --broker "$hba_PORT" \
  --control "$HA_CTL" --host "$HUB_A" "${HUB_KEYS[@]}"
start_bg hubb $PY "$ROOT/tests/integration/azure_hub.py" --listen "$HB_PORT" --broker "$hbb_PORT" \
  --control "$HB_CTL" --host "$HUB_B" "${HUB_KEYS[@]}"
start_bg dps $PY "$ROOT/tests/integration/dps_emulator.py" --listen "$DPS_PORT" --broker "$dpsb_PORT" \
  --tls-listen "$DPS_TLS" --cert "$C/server.pem" --key "$C/server.key" --client-ca "$C/ca.pem" \
  --control "$DPS_CTL" --scope "$SCOPE" --hub "$HUB_A" --polls "$POLLS" --retry-after "$RETRY" \
  --individual "dev-ind=$KEY_IND" --individual "dev-bad=$KEY_IND" --group "$GROUP"
DPS_PID=$LAST_PID
for x in huba hubb dps; do
  wait_for 10 grep -qs '"ready"' "$T/$x.out" || { not_ok "the $x emulator starts" "$(cat "$T/$x.err")"; finish; exit 1; }
done

ctl() {
  $PY -c 'import socket,sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().readline().strip())' "$1" "$2"
}
jget() { lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
dps_stat() { ctl "$DPS_CTL" '{"cmd":"stats"}' | jget "$1"; }
ev() { grep "\"ev\": \"$2\"" "$T/$1.out"; }          # ev EMULATOR EVENT
has_ev() { ev "$1" "$2" | grep -q "$3"; }            # has_ev EMULATOR EVENT TEXT

RESOLVE="resolve = {'$HUB_A=mqtt://127.0.0.1:$HA_PORT', '$HUB_B=mqtt://127.0.0.1:$HB_PORT'}"
# dps_device DIR 'CREDENTIAL' [EXTRA NET]: a device provisioned through the emulator
dps_device() {
  net_device "$1" "dps = { endpoint = 'mqtt://127.0.0.1:$DPS_PORT', id_scope = '$SCOPE', $2, $RESOLVE }, backoff_min_ms = 500, backoff_max_ms = 2000, keepalive_s = 5${3:+, $3}" \
    'lume.timer.every(200, function() lume.publish("hello", {id = lume.device.id}) end)'
}

# ---- individual enrollment --------------------------------------------------------
d1="$T/dev-ind"
dps_device "$d1" "symmetric_key = '$KEY_IND'" "model_id = 'dtmi:com:example:Pump;1'"
start_bg d1 "$LUME" run --config "$d1/lume.conf.lua"
D1=$LAST_PID
check "individual: the device registers with DPS" wait_for 10 has_ev dps register '"registration": "dev-ind"'
check "individual: the register body carries the model id" has_ev dps register '"payload": {"modelId": "dtmi:com:example:Pump;1"}'
check "individual: DPS assigns it to hub A after $POLLS polls" wait_for 20 has_ev dps assigned '"registration": "dev-ind"'
check "individual: it connects to hub A as the assigned device (SAS verified there)" wait_for 10 has_ev huba connect '"client": "dev-ind"'
check "individual: its telemetry reaches hub A" wait_for 10 sh -c "grep -q '\"ev\": \"telemetry\", \"device\": \"dev-ind\"' '$T/huba.out'"
check "individual: the assignment is logged" grep -q "assigned to hub $HUB_A as device dev-ind (initialAssignment)" "$T/d1.err"

# ---- retry-after honoured -----------------------------------------------------------
gaps=$($PY - "$T/dps.out" dev-ind <<'EOP'
import json, sys
t = [e["t"] for e in map(json.loads, open(sys.argv[1]))
     if e.get("registration") == sys.argv[2] and e["ev"] in ("register", "poll")]
print(" ".join("%.2f" % (b - a) for a, b in zip(t, t[1:])))
EOP
)
echo "# dev-ind: seconds between register and polls: $gaps"
check "retry-after: $POLLS polls before the assignment" test "$(ctl "$DPS_CTL" '{"cmd":"stats"}' | jget registrations.dev-ind.polls)" -eq "$POLLS"
check "retry-after: no poll sooner than the ${RETRY} s the service asked" test "$(dps_stat registrations.dev-ind.early_polls)" -eq 0
check "retry-after: every gap >= ${RETRY} s" $PY -c "import sys; g=[float(x) for x in sys.argv[1:]]; sys.exit(not g or min(g) < $RETRY - 0.05)" $gaps

# ---- re-provisioning: moved to hub B, hub A refuses it ------------------------------
ctl "$DPS_CTL" "{\"cmd\":\"assign\",\"registration\":\"dev-ind\",\"hub\":\"$HUB_B\"}" >/dev/null
ctl "$HA_CTL" '{"cmd":"refuse","device":"dev-ind"}' >/dev/null
check "re-provision: hub A refuses the device (CONNACK 5)" wait_for 10 has_ev huba refused '"client": "dev-ind"'
check "re-provision: the device says why it provisions again" wait_for 10 grep -q "the hub refused this device's credentials (CONNACK code 5: not authorized); provisioning again" "$T/d1.err"
check "re-provision: it registers again" wait_for 10 test "$(dps_stat registrations.dev-ind.registers)" -ge 2
check "re-provision: DPS assigns hub B (deviceDataMigrated)" wait_for 20 has_ev dps assigned "\"hub\": \"$HUB_B\""
check "re-provision: it connects to hub B" wait_for 10 has_ev hubb connect '"client": "dev-ind"'
check "re-provision: its telemetry reaches hub B" wait_for 10 sh -c "grep -q '\"ev\": \"telemetry\", \"device\": \"dev-ind\"' '$T/hubb.out'"
stats_has() { "$LUME" stats --config "$1/lume.conf.lua" 2>/dev/null | grep -q "$2"; }
check "re-provision: lume stats shows the new assignment and the re-provisioning" wait_for 5 stats_has "$d1" "\"state\":\"assigned\",\"assigned_hub\":\"$HUB_B\",\"device_id\":\"dev-ind\",\"substatus\":\"deviceDataMigrated\",\"polls\":0,\"reprovisions\":1"

# ---- group enrollment: the key derived from the group's -------------------------------
d2="$T/dev-grp"
dps_device "$d2" "group_key = '$GROUP'"
start_bg d2 "$LUME" run --config "$d2/lume.conf.lua"
D2=$LAST_PID
check "group: DPS verifies the derived key and assigns hub A" wait_for 20 has_ev dps assigned '"registration": "dev-grp"'
check "group: hub A accepts the derived key" wait_for 10 has_ev huba connect '"client": "dev-grp"'
check "group: no poll came early" test "$(dps_stat registrations.dev-grp.early_polls)" -eq 0
kill "$D2"; wait "$D2" 2>/dev/null

# ---- lume provision ------------------------------------------------------------------
d3="$T/dev-cli"
dps_device "$d3" "group_key = '$GROUP'"
"$LUME" provision --config "$d3/lume.conf.lua" >"$T/prov.out" 2>"$T/prov.err"
rc=$?
echo "# lume provision said:"; sed 's/^/#   /' "$T/prov.out"
check "lume provision: exit 0" test "$rc" -eq 0
check "lume provision: prints the hub" grep -qx "hub:        $HUB_A" "$T/prov.out"
check "lume provision: prints the device id" grep -qx "device id:  dev-cli" "$T/prov.out"
check "lume provision: prints the status and sub-status" sh -c "grep -qx 'status:     assigned' '$T/prov.out' && grep -qx 'sub-status: initialAssignment' '$T/prov.out'"
start_bg d3 "$LUME" run --config "$d3/lume.conf.lua"
D3=$LAST_PID
check "lume provision: lume run uses the stored assignment" wait_for 10 has_ev huba connect '"client": "dev-cli"'
check "lume provision: ... without registering again" test "$(dps_stat registrations.dev-cli.registers)" -eq 1
kill "$D3"; wait "$D3" 2>/dev/null

# ---- X.509: the client certificate (CN lume-client) is the credential --------------------
d5="$T/lume-client"
net_device "$d5" "dps = { endpoint = 'mqtts://localhost:$DPS_TLS', id_scope = '$SCOPE' }, ca_file = '$C/ca.pem', cert_file = '$C/client.pem', key_file = '$C/client.key'" 'x = 0'
"$LUME" provision --config "$d5/lume.conf.lua" >"$T/prov5.out" 2>"$T/prov5.err"
rc=$?
check "X.509: lume provision registers over TLS with the client certificate (exit 0)" test "$rc" -eq 0
check "X.509: the emulator saw no password, a certificate with CN = the registration id" has_ev dps connect '"client": "lume-client", "conn": [0-9]*, "auth": "x509"'
check "X.509: assigned" grep -qx "device id:  lume-client" "$T/prov5.out"

# ---- failures: "disabled", malformed JSON, 429, then assigned ------------------------------
ctl "$DPS_CTL" '{"cmd":"fail","registration":"dev-grp","status":"disabled"}' >/dev/null
ctl "$DPS_CTL" '{"cmd":"garbage","registration":"dev-grp"}' >/dev/null
ctl "$DPS_CTL" '{"cmd":"throttle","registration":"dev-grp","n":1}' >/dev/null
rm -rf "$d2/var"
start_bg d2b "$LUME" run --config "$d2/lume.conf.lua"
D2=$LAST_PID
check "failures: a \"disabled\" answer is logged with the service's reason" wait_for 20 grep -q 'registration dev-grp: status "disabled" (errorCode 400209: the enrollment is disabled); registering again in' "$T/d2b.err"
check "failures: a malformed answer is logged" wait_for 20 grep -q 'registration dev-grp: answer 200 is not a JSON object' "$T/d2b.err"
grp_assigned_ge() { [ "$(ev dps assigned | grep -c '"registration": "dev-grp"')" -ge "$1" ]; }
check "failures: a 429 is answered by polling again after retry-after" wait_for 20 grep -q "registration dev-grp: throttled (429); asking again in $RETRY s" "$T/d2b.err"
check "failures: then it registers again and is assigned" wait_for 30 grp_assigned_ge 2
kill "$D2"; wait "$D2" 2>/dev/null

# ---- a wrong key: refused, logged, backoff ------------------------------------------------
d4="$T/dev-bad"
dps_device "$d4" "symmetric_key = '$KEY_BAD'"
start_bg d4 "$LUME" run --config "$d4/lume.conf.lua"
D4=$LAST_PID
check "wrong key: DPS refuses the token (401)" wait_for 10 has_ev dps refused '"client": "dev-bad", "status": 401'
check "wrong key: the device's log names the refusal" wait_for 10 grep -q "the provisioning service refused registration dev-bad: CONNACK refused by 127.0.0.1:$DPS_PORT: not authorized (code 5)" "$T/d4.err"
check "wrong key: lume stats says it is registering, and why it is not assigned" wait_for 5 stats_has "$d4" '"state":"registering",.*"last_error":"CONNACK refused by 127.0.0.1:[0-9]*: not authorized (code 5)"'
sleep 6
n=$(ev dps refused | grep -c '"client": "dev-bad"')
echo "# dev-bad: $n refused attempts in ~6 s"
check "wrong key: it tries again with backoff (2 .. 12 attempts in ~6 s, no tight loop)" test "$n" -ge 2 -a "$n" -le 12
kill "$D4"; wait "$D4" 2>/dev/null

# ---- the assignment survives a restart with DPS gone ---------------------------------------
kill "$D1"; wait "$D1" 2>/dev/null
kill "$DPS_PID"; wait "$DPS_PID" 2>/dev/null
b_connects=$(ev hubb connect | grep -c '"client": "dev-ind"')
start_bg d1b "$LUME" run --config "$d1/lume.conf.lua"
D1=$LAST_PID
check "offline restart: the device connects to its stored hub B directly" wait_for 10 sh -c "[ \$(grep '\"ev\": \"connect\"' '$T/hubb.out' | grep -c '\"client\": \"dev-ind\"') -gt $b_connects ]"
check "offline restart: it says the stored assignment stands" grep -q "the stored assignment stands: hub $HUB_B, device dev-ind" "$T/d1b.err"
check "offline restart: it never contacted DPS" sh -c "! grep -q 'registering dev-ind' '$T/d1b.err'"
kill "$D1"; wait "$D1" 2>/dev/null

[ -n "${DPS_KEEP:-}" ] && cp -r "$T" "$DPS_KEEP"
finish
