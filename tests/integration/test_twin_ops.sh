#!/usr/bin/env bash
# The operator's side of the twin against a real mosquitto and a real lume:
# `lume twin set` (JSON checked with its position, dotted paths merged,
# null deletes, the device's schema checked before anything is published,
# --dry-run), `lume twin drift` (clamped rates, reported errors, script
# versions, origins and signers, refused local files, local overrides),
# $version that never goes backwards (a stale document is a WARN and a
# reported error; a broker restarted without persistence does not make the
# next change vanish). One broker and one device serve every case.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s || exit 1          # no persistence: a restart loses the retained documents
BROKER_PORT=$s_PORT
B="mqtt://127.0.0.1:$s_PORT"
"$LUME" keygen --out "$T/ops" >"$T/keygen.out"
KEYID=$(sed -n 's/^key id: *//p' "$T/keygen.out")

D=tw1
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5"
sed -i "s|^  watch_scripts = false,|  watch_scripts = true,\n  twin = { trusted_keys = {'$T/ops.pub'}, groups = {'fleet'} },|" "$d/lume.conf.lua"
start_dev() { start_bg "$1" "$LUME" run --config "$d/lume.conf.lua"; DEV=$LAST_PID; }
start_dev dev1
wait_for 10 reported_is $D lume.board sim

tset() { "$LUME" twin set --device $D --broker "$B" "$@"; }
drift() { "$LUME" twin drift --device $D --broker "$B" "$@"; }
desired() { mosquitto_sub -h 127.0.0.1 -p $s_PORT -t "lume/$D/desired" -C 1 -W 1 2>/dev/null; }
desired_at() { desired | lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }

# ---- set: JSON checked, nothing published on error ----------------------------------
tset 'sensors={temperature:{rate:2}}' >"$T/bad.out" 2>"$T/bad.err"; rc=$?
check "invalid JSON: exit 2" test "$rc" -eq 2
check "... the error names line, column and byte" grep -q "not JSON at line 1, column 2 (byte 2 of 22)" "$T/bad.err"
check "... and nothing is published (no retained desired document)" test -z "$(desired)"
tset $'{"log": "info",\n "sensors": {"temperature": 2,}}' 2>"$T/bad2.err"; rc=$?
check "a JSON document broken on its second line: exit 2, line 2 shown" \
  sh -c "[ $rc -eq 2 ] && grep -q 'line 2, column 31' '$T/bad2.err'"

# dotted paths merge into what is desired; null deletes
tset sensors.temperature.rate=5 >"$T/set1.out"
tset sensors.humidity.rate=2 >"$T/set2.out"
check "set prints the change it publishes" grep -q '^  + sensors.humidity: {"rate":2}' "$T/set2.out"
check "a dotted path keeps the sibling sensors" test "$(desired_at sensors.temperature.rate) $(desired_at sensors.humidity.rate)" = "5 2"
both_applied() { reported_is $D sensors.humidity.rate 2 && reported_is $D sensors.temperature.rate 5; }
check "the device applies both" wait_for 10 both_applied
tset sensors.humidity=null >"$T/set3.out"
check "null deletes the key, the siblings stay" test "$(desired_at sensors.humidity) $(desired_at sensors.temperature.rate)" = "nil 5"
check "... the diff says what goes" grep -q '^  - sensors.humidity (was {"rate":2})' "$T/set3.out"
check "... and the device drops it" wait_for 10 reported_is $D sensors.humidity nil

# the device's schema, on the operator's side
v0=$(desired_at '$version')
tset sensors.temperature.rate=fast >"$T/schema.out" 2>"$T/schema.err"; rc=$?
check "a schema violation: exit 2" test "$rc" -eq 2
check "... naming the path and the reason" grep -q 'lume twin set: sensors.temperature.rate must be a number above 0, got "fast"' "$T/schema.err"
tset log=loud 2>"$T/schema2.err"; rc=$?
check "a bad log level: exit 2 with the levels" sh -c "[ $rc -eq 2 ] && grep -q 'log level must be one of \"debug\", \"info\", \"warn\", \"error\", got \"loud\"' '$T/schema2.err'"
tset 'outbox={"max_messages":-3}' 2>"$T/schema3.err"; rc=$?
check "an outbox limit out of range: exit 2 (the config's own rule)" sh -c "[ $rc -eq 2 ] && grep -q 'outbox.max_messages: expected a number between 0' '$T/schema3.err'"
tset --dry-run sensors.temperature.rate=9 >"$T/dry.out"
check "--dry-run prints the change" grep -q '^  ~ sensors.temperature.rate: 5 -> 9' "$T/dry.out"
check "nothing refused or dry was published" test "$(desired_at '$version') $(desired_at sensors.temperature.rate)" = "$v0 5"

# ---- drift: clamped values and reported errors ------------------------------------
tset sensors.vibration.rate=99999 sensors.nosuch=5 >/dev/null
tset --force log=loud >/dev/null 2>&1
check "the device clamps and reports the applied rate" wait_for 10 reported_is $D sensors.vibration.rate 2000
wait_for 10 reported_matches $D errors.log "loud"
drift >"$T/drift1.out"; rc=$?
check "drift: exit 1 when anything differs" test "$rc" -eq 1
check "drift: the clamped rate, desired and applied" grep -q '^sensors.vibration.rate: desired 99999, actual 2000 (clamped' "$T/drift1.out"
check "drift: a desired key the device reports an error for (sensors)" grep -q '^sensors: desired .*nosuch: no such sensor' "$T/drift1.out"
check "drift: ... (log)" grep -q '^log: desired "loud", actual error (log level must be' "$T/drift1.out"
drift --json >"$T/drift1.json"
check "drift --json: in_sync false, each difference with its path" \
  sh -c "grep -q '\"in_sync\":	false' '$T/drift1.json' && grep -q '\"path\":	\"sensors.vibration.rate\"' '$T/drift1.json'"
tset sensors.vibration.rate=500 sensors.nosuch=null log=null >/dev/null

# ---- scripts: origin, signer, local files ------------------------------------------
printf 'lume.timer.every(100, function() lume.publish("beat", "v1") end)\n' >"$T/v1.lua"
"$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name app --version 1 --soak 0 "$T/v1.lua" >/dev/null
check "a signed bundle becomes active" wait_for 10 reported_is $D scripts.app.status active
check "reported: origin twin, signed by the key" test "$(reported $D scripts.app.origin) $(reported $D scripts.app.signer)" = "twin $KEYID"
check "drift: in sync (exit 0)" wait_for 10 drift
drift --json >"$T/sync.json"
check "drift --json: in_sync true" grep -q '"in_sync":	true' "$T/sync.json"

printf 'lume.timer.every(100, function() lume.publish("beat", "local") end)\n' >"$d/scripts/app.lua"
check "a local edit of a twin-managed script is refused and reported" wait_for 10 reported_is $D scripts.app.local.status refused
check "... at WARN in the log" grep -q "WARN.*app.lua not reloaded: app is managed by the twin" "$T/dev1.err"
check "... the twin's version keeps running" test "$(reported $D scripts.app.origin) $(reported $D scripts.app.running)" = "twin 1"
drift >"$T/drift2.out"; rc=$?
check "... drift exit 1, naming the refused local file" sh -c "[ $rc -eq 1 ] && grep -q '^scripts.app.local: desired \"1\", actual local file .*app.lua (sha256 [0-9a-f]*) refused' '$T/drift2.out'"

# ---- $version: stale documents, a broker that lost its retained state -------------
held=$(reported $D desired_versions.device)
mosquitto_pub -h 127.0.0.1 -p $s_PORT -r -q 1 -t "lume/$D/desired" -m '{"$version":1,"log":"debug"}'
check "a stale \$version is a reported error naming both versions" \
  wait_for 10 reported_matches $D errors.desired "\\\$version 1 received is older than \\\$version $held held"
check "... logged at WARN (and not as an error)" sh -c "grep -q 'WARN.*\$version 1 is older than $held held; ignored' '$T/dev1.err' && ! grep -q 'ERROR.*version 1 received' '$T/dev1.err'"
drift >"$T/drift-stale.out"
check "... and drift lists it" grep -q "^errors.desired: desired null, actual error (device layer: \$version 1 received" "$T/drift-stale.out"
tset log=warn >"$T/guard1.out" 2>"$T/guard1.err"; rc=$?
check "set on the broker's older document would remove the twin's bundle: refused (exit 1)" \
  sh -c "[ $rc -eq 1 ] && grep -q 'holds \\\$version 1 of lume/$D/desired, but device $D holds \\\$version $held.*remove what the twin runs there: app (version 1)' '$T/guard1.err'"
tset --force log=warn >"$T/after-stale.out" 2>&1
check "the next set counts from the version the device holds" wait_for 10 reported_is $D desired_versions.device $((held + 1))
warn_applied() { reported_is $D log.level warn && reported_is $D errors.desired nil; }
check "... is applied, and clears the error" wait_for 5 warn_applied

"$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name app --version 1b --soak 0 "$T/v1.lua" >/dev/null
wait_for 10 reported_is $D scripts.app.running 1b
held=$((held + 2))
mosquitto_pub -h 127.0.0.1 -p $s_PORT -r -q 1 -t lume/groups/fleet/desired -m '{"$version":40,"mode":"a"}'
wait_for 10 reported_is $D desired_versions.group:fleet 40
mosq_kill s                      # SIGKILL by its recorded PID: no persistence, retained state gone
mosq_restart s
check "the broker restarted without the retained desired document" test -z "$(desired)"
wait_for 15 reported_is $D desired_versions.device $held   # the device reconnected and reported again
tset sensors.temperature.rate=7 >"$T/guard.out" 2>"$T/guard.err"; rc=$?
check "a document of the change alone would remove the twin's bundle: refused (exit 1)" \
  sh -c "[ $rc -eq 1 ] && grep -q 'would remove what the twin runs there: app (version 1b)' '$T/guard.err'"
check "... nothing published" test -z "$(desired)"
printf 'lume.timer.every(1000, function() end)\n' >"$T/other.lua"
"$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name other --version 1 --soak 0 \
  "$T/other.lua" >"$T/pguard.out" 2>"$T/pguard.err"; rc=$?
check "a push onto the broker's empty document would remove app too: refused (exit 1)" \
  sh -c "[ $rc -eq 1 ] && grep -q '^lume push: .*would remove what the twin runs there: app (version 1b)' '$T/pguard.err'"
check "... nothing published" test -z "$(desired)"
tset --force sensors.temperature.rate=7 >"$T/restart.out" 2>"$T/restart.err"; rc=$?
check "after the restart, set publishes \$version $((held + 1))" sh -c "[ $rc -eq 0 ] && grep -q 'version $((held + 1))' '$T/restart.out'"
check "... saying why it counts from the device's version" grep -q "the broker holds no lume/$D/desired, but the device reports holding \$version $held" "$T/restart.err"
check "... and the change does not vanish: the device applies it" wait_for 10 reported_is $D sensors.temperature.rate 7
"$LUME" twin set --group fleet --broker "$B" mode=b >"$T/group.out" 2>&1
check "a group's next \$version is above what its devices report holding (41)" \
  sh -c "grep -q 'version 41' '$T/group.out' && grep -q 'the devices report holding \\\$version 40' '$T/group.out'"
check "... and the device applies it" wait_for 10 reported_is $D desired_versions.group:fleet 41

# ---- a dev board: local overrides allowed, and drift shows them ---------------------
kill -TERM "$DEV"; wait "$DEV"
sed -i 's|^  watch_scripts = true,|  watch_scripts = true,\n  scripts_local_override = true,|' "$d/lume.conf.lua"
start_dev dev2
"$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name app --version 2 --soak 0 "$T/v1.lua" >/dev/null
wait_for 10 reported_is $D scripts.app.running 2
printf 'lume.timer.every(100, function() lume.publish("beat", "dev") end)\n' >"$d/scripts/app.lua"
check "override allowed: the local file runs, reported as origin local" wait_for 10 reported_is $D scripts.app.origin local
check "... and the twin's version 2 as overridden, not active" test "$(reported $D scripts.app.version) $(reported $D scripts.app.status)" = "2 overridden"
check "... with its file and sha256" test "$(reported $D scripts.app.sha256)" = "$(sha256sum "$d/scripts/app.lua" | cut -d' ' -f1)"
drift >"$T/drift3.out"; rc=$?
check "... drift exit 1: a local file runs instead of the twin's version 2" \
  sh -c "[ $rc -eq 1 ] && grep -q '^scripts.app: desired \"2\", actual local file .*app.lua (sha256 [0-9a-f]*) (a local file runs' '$T/drift3.out'"

finish
