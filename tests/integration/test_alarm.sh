#!/usr/bin/env bash
# The acknowledged over-temperature alarm of scripts/rules.lua (hold cut to
# 1 s) through a real runtime on the azure dialect, against the hub
# emulator in front of a real mosquitto: a board whose temperature the test
# writes raises the alarm; a direct method `ack_alarm` acknowledges it (an
# ack for the wrong raise is refused, naming why); the reported state
# follows in the hub's twin; a reload keeps it without a second raise; the
# next excursion is a new raise, acknowledged by the desired property
# alarms.overtemp.ack (a stale id refused first).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"
. "$(dirname "$0")/azhub.sh"

$PY -c 'import paho.mqtt.client' 2>/dev/null || { not_ok "python3-paho-mqtt installed (make deps)"; finish; exit 1; }
mosq_start az || exit 1
HOST=testhub.azure-devices.net
KEY=$(head -c 32 /dev/urandom | base64 -w0)
az_hub_start hub "$az_PORT" "$HOST" "$KEY" || { not_ok "the hub emulator starts"; finish; exit 1; }

D=alarmdev
d="$T/$D"
probe_device "$d" 1 "url = 'mqtt://127.0.0.1:$HUB_PORT', dialect = 'azure', keepalive_s = 5,
  connection_string = 'HostName=$HOST;DeviceId=$D;SharedAccessKey=$KEY',
  backoff_min_ms = 200, backoff_max_ms = 1000" ||
  { not_ok "scripts/rules.lua sets HOLD_S as this test expects"; finish; exit 1; }
# alarm events of one kind that reached the hub (their payload is JSON in the event line)
count() { events telemetry | grep '"route": "alarm/overtemp"' | grep -c "state.....$1"; }
count_is() { [ "$(count "$1")" -eq "$2" ]; }
alarm() { hub_twin "reported.alarms.overtemp.$1"; }
# alarm_is STATE [ID [ACKED_BY]]: the hub's twin reports that
alarm_is() { [ "$(alarm state)" = "$1" ] && { [ -z "${2:-}" ] || [ "$(alarm id)" = "$2" ]; } &&
             { [ -z "${3:-}" ] || [ "$(alarm acked_by)" = "$3" ]; }; }
ack_error_has() { alarm ack_error | grep -q "$1"; }
method() { azctl "{\"cmd\":\"method\",\"name\":\"ack_alarm\",\"payload\":$1}"; }
# has TEXT PATTERN...: every pattern is in TEXT (the answer's keys come in any order)
has() { local t=$1 p; shift; for p in "$@"; do printf '%s' "$t" | grep -q "$p" || return 1; done; }

start_bg dev "$LUME" run --config "$d/lume.conf.lua"
DEV=$LAST_PID
check "the device connects and reports the alarm normal" wait_for 15 alarm_is normal

check "... its id is 0 (never raised)" test "$(alarm id)" = 0
set_temp "$d" 35
check "the excursion raises the alarm (raise 1), reported" wait_for 10 alarm_is raised 1
check "... and the raised event reaches the hub on the alarm route" wait_for 5 count_is raised 1

r=$(method '{"name":"overtemp","id":2}')
echo "# $r"
check "method ack_alarm for a raise not made yet: refused, saying why" \
  has "$r" '"status": 200' 'ok[\\"]*:false' \
      'alarm overtemp: ack for raise 2 is for a raise not made yet: the current raise is 1'
check "... reported as ack_error" wait_for 5 ack_error_has "not made yet"
check "... and the state stays raised" alarm_is raised 1
r=$(method '{"name":"overheat","id":1}')
check "method ack_alarm for an unknown alarm names the alarms there are" \
  has "$r" 'no alarm named overheat (alarms here: overtemp)'
r=$(method '{"name":"overtemp","id":1}')
echo "# $r"
check "method ack_alarm with the raise id: 200, ok" has "$r" '"status": 200' 'ok[\\"]*:true' 'state[\\"]*:[\\"]*acknowledged'
check "... the reported state follows: acknowledged by method" wait_for 5 alarm_is acknowledged 1 method
check "... the refusal before is no longer reported" test "$(alarm ack_error)" = nil
check "... and the acknowledged event reaches the hub" wait_for 5 count_is acknowledged 1

"$LUME" reload rules --config "$d/lume.conf.lua" >"$T/reload1.out" 2>&1
check "lume reload rules: reloaded" test $? -eq 0
sleep 1.5                                                 # longer than the hold
check "after the reload: still acknowledged, raise 1" alarm_is acknowledged 1 method
check "... and no second raise ($(count raised) raised)" count_is raised 1

set_temp "$d" 20
check "the end of the excursion: cleared, back to normal" wait_for 5 alarm_is normal 1
set_temp "$d" 36
check "a new excursion is a new raise (id 2) that needs its own ack" wait_for 10 alarm_is raised 2

azctl '{"cmd":"patch","patch":{"alarms":{"overtemp":{"ack":1}}}}' >/dev/null
check "desired alarms.overtemp.ack = 1 (the old raise): refused as stale, reported" \
  wait_for 5 ack_error_has 'ack for raise 1 is stale: the current raise is 2'
check "... and logged" grep -q 'desired alarms.overtemp.ack: .*stale' "$T/dev.err"
check "... the alarm stays raised" alarm_is raised 2
azctl '{"cmd":"patch","patch":{"alarms":{"overtemp":{"ack":2}}}}' >/dev/null
check "desired alarms.overtemp.ack = 2: acknowledged by desired" wait_for 5 alarm_is acknowledged 2 desired

"$LUME" reload rules --config "$d/lume.conf.lua" >"$T/reload2.out" 2>&1
check "lume reload rules again: reloaded" test $? -eq 0
sleep 1.5
check "after the second reload: still acknowledged" alarm_is acknowledged 2 desired
check "... two raises in all ($(count raised))" count_is raised 2
check "the device logged no script error" sh -c "! grep -q 'script rules: .*error' '$T/dev.err'"

kill -TERM "$DEV"; wait "$DEV" 2>/dev/null
finish
