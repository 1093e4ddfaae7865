# tests/integration/twin_specs.sh — the twin and bundle specs every hub
# dialect must pass the same way: a bundle pushed becomes active and is
# reported with its version; bad bundles are rejected or rolled back with the
# reason while the running version goes on; a version failing three times is
# quarantined; chunked and url bundles; sensor rates (clamped too), the log
# level and outbox limits pushed as desired and reported as applied.
#
# Sourced (after lib.sh) by one test script per dialect — test_twin.sh (mqtt:
# retained documents on mosquitto), test_twin_azure.sh (azure: desired
# patches from tests/integration/azure_hub.py) — which start the hub and a
# device, then call `twin_specs`. Every check is named "[DIALECT] ...".
#
# The dialect's adapter, defined by the test script:
#   DIALECT              "mqtt" | "azure"
#   D, d                 the device's id and directory ($d/lume.conf.lua,
#                        $d/var); its config trusts $T/ops.pub, has
#                        max_script_bytes = 65536 and fetch_ca_file = $C/ca.pem
#   PUMP                 the running lume's PID (the specs restart it)
#   dialect_push ARGS    push a bundle for $D, taking `lume push`'s arguments:
#                        [--key KEY] --name N --version V [--soak S] [--url U] FILE
#                        (no --key: unsigned)
#   dialect_set K=JSON.. set top-level desired keys for $D (as `lume twin set`)
#   dialect_set_raw K=JSON..  (optional) the same without the operator's schema
#                        check (`lume twin set --force`), to reach the device's
#                        own checks; dialect_set when not defined
#   dialect_reported     print the reported document as the hub holds it (JSON)
#   dialect_telemetry R  print the payloads of $D's telemetry on route R, one a line
#   BAD_NAME             a script name lume refuses ("unknown script name
#                        format") that the hub can carry as a key
#   BIG_PUSH, BIG_WHY    how a script over max_script_bytes (70000 bytes in
#                        $T/big.lua) reaches the device, and the reason expected
#   dialect_in_sync      (optional) an operator's check that $D runs what is desired
#
# Needs from the test: $C (mosq_certs: ca.pem, server.pem/.key for the https
# server), $T/ops.key (trusted) and $T/rogue.key (not).

# spec_reported PATH: one value of the reported document ("scripts.app.status")
spec_reported() { dialect_reported | lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
spec_reported_is() { [ "$(spec_reported "$1")" = "$2" ]; }
spec_reported_matches() { spec_reported "$1" | grep -Eq "$2"; }
# "VERSION STATUS" of scripts.app, from one reading of the document
spec_version_status_is() {
  local doc; doc=$(dialect_reported)
  [ "$(jget_of "$doc" scripts.app.version) $(jget_of "$doc" scripts.app.status)" = "$1 $2" ]
}
jget_of() { printf '%s' "$1" | lua5.4 "$ROOT/tests/integration/jget.lua" "$2"; }
scheck() { local desc=$1; shift; check "[$DIALECT] $desc" "$@"; }
spec_push() { dialect_push --key "$T/ops.key" "$@" >>"$T/push.log" 2>&1; }
beats() { dialect_telemetry beat | grep -c '^v1 '; }
beats_above() { [ "$(beats)" -gt "$1" ]; }
chunky_alive() { dialect_telemetry chunky | grep -q '^alive'; }

# An https server for bundles given by url (openssl s_server -WWW): $WWW_PORT.
spec_www_start() {
  mkdir -p "$T/www"
  _mosq_pick_port; WWW_PORT=$REPLY
  (cd "$T/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$WWW_PORT" \
     -cert "$C/server.pem" -key "$C/server.key") >"$T/www.log" 2>&1 &
  PIDS+=($!)
}

spec_restart() { # NAME: stop lume (SIGTERM) and start it again
  kill -TERM "$PUMP"; wait "$PUMP"
  start_bg "$1" "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
}

# spec_bad WHAT VERSION STATUS REASON-REGEX PUSH-ARGS...: a bad version is
# rejected or rolled back with the reason; version 1 keeps running.
spec_bad() {
  local what=$1 version=$2 status=$3 pattern=$4; shift 4
  local before; before=$(beats)
  "$@" >>"$T/push.log" 2>&1
  # the status must be about this version, not the state a previous one left
  scheck "$what: version $version is $status" wait_for 15 spec_version_status_is "$version" "$status"
  scheck "$what: the reason names it" spec_reported_matches scripts.app.error "$pattern"
  scheck "$what: version 1 keeps running" spec_reported_is scripts.app.running 1
  scheck "$what: its heartbeat goes on" wait_for 5 beats_above $((before + 2))
}

twin_specs() {
  # version 1: a heartbeat, so we can see it keep running
  cat >"$T/v1.lua" <<'EOS'
local n = 0
lume.timer.every(100, function() n = n + 1; lume.publish("beat", "v1 " .. n) end)
function self_test() return n == 0 end
EOS
  scheck "a signed bundle is pushed" spec_push --name app --version 1 --soak 0 "$T/v1.lua"
  scheck "a good script pushed becomes active and is reported" wait_for 10 spec_reported_is scripts.app.status active
  scheck "reported: the version running" spec_reported_is scripts.app.running 1
  scheck "the new script runs" wait_for 5 beats_above 2
  if declare -F dialect_in_sync >/dev/null; then scheck "drift: in sync" dialect_in_sync; fi

  # bad versions: rejected or rolled back with a reason; v1 keeps running and
  # the sampler is unaffected
  printf 'local = 1\n' >"$T/syntax.lua"
  spec_bad "syntax error" 2 rejected "does not load: .*1:" spec_push --name app --version 2 "$T/syntax.lua"
  printf 'error("boom at load")\n' >"$T/loaderr.lua"
  spec_bad "error at load" 3 rejected "does not load: .*boom at load" spec_push --name app --version 3 "$T/loaderr.lua"
  printf 'function self_test() return false, "sensor missing" end\n' >"$T/selftest.lua"
  spec_bad "self_test false" 4 rejected "self_test returned false: sensor missing" spec_push --name app --version 4 "$T/selftest.lua"
  printf 'lume.timer.every(100, function() error("late boom") end)\n' >"$T/soakerr.lua"
  spec_bad "errors during soak" 5 rolled_back "soak: .*handler errors.*late boom" spec_push --name app --version 5 --soak 3 "$T/soakerr.lua"
  printf 'lume.timer.after(300, function() while true do end end)\n' >"$T/loop.lua"
  spec_bad "infinite loop" 6 rolled_back "CPU budget" spec_push --name app --version 6 --soak 3 "$T/loop.lua"
  printf 'lume.timer.after(300, function() local t = {} while true do t[#t+1] = string.rep("x", 64) .. #t end end)\n' >"$T/bomb.lua"
  spec_bad "memory bomb" 7 rolled_back "memory" spec_push --name app --version 7 --soak 3 "$T/bomb.lua"
  printf 'lume.timer.every(10, function() for i = 1, 100 do lume.publish("flood", i) end end)\n' >"$T/flood.lua"
  spec_bad "publish flood" 8 rolled_back "publish flood" spec_push --name app --version 8 --soak 3 "$T/flood.lua"
  spec_bad "signed by an untrusted key" 9 rejected "unknown key id [0-9a-f]{16}: not one of the trusted keys" \
    dialect_push --key "$T/rogue.key" --name app --version 9 --soak 0 "$T/v1.lua"
  spec_bad "unsigned bundle" 10 rejected "unsigned bundle" \
    dialect_push --name app --version 10 --soak 0 "$T/v1.lua"
  head -c 70000 /dev/zero | tr '\0' '-' >"$T/big.lua"
  cp "$T/big.lua" "$T/www/big.lua"
  spec_bad "oversized bundle" 11 rejected "$BIG_WHY" spec_push --name app --version 11 $BIG_PUSH "$T/big.lua"
  cp "$T/syntax.lua" "$T/www/other.lua"
  spec_bad "wrong sha256" 12 rejected "sha256 mismatch" spec_push --name app --version 12 --url "https://localhost:$WWW_PORT/other.lua" "$T/v1.lua"
  _mosq_pick_port; local closed=$REPLY
  spec_bad "url that fails" 13 rejected "fetch https://localhost:$closed/v1.lua" spec_push --name app --version 13 --url "https://localhost:$closed/v1.lua" "$T/v1.lua"
  # unsigned: lume cannot sign a manifest for a bad name
  dialect_push --name "$BAD_NAME" --version 1 --soak 0 "$T/v1.lua" >>"$T/push.log" 2>&1
  scheck "unknown script name format: rejected" wait_for 10 spec_reported_matches "scripts.$BAD_NAME.error" "unknown script name format"
  scheck "the sampler was unaffected (no ring drops on any sensor)" spec_no_drops

  # a url bundle that works
  cp "$T/v1.lua" "$T/www/v1.lua"
  scheck "a bundle fetched from an https url is pushed" spec_push --name app --version 14 --soak 0 --url "https://localhost:$WWW_PORT/v1.lua" "$T/v1.lua"
  scheck "the url version runs" wait_for 10 spec_reported_is scripts.app.running 14

  # a script over 4 KB travels as chunks, joined on the device
  { echo 'lume.timer.every(200, function() lume.publish("chunky", "alive") end)'
    for i in $(seq 1 120); do printf -- '-- padding line %03d to make the script travel in chunks\n' "$i"; done; } >"$T/chunky.lua"
  spec_push --name chunky --version 1 --soak 0 "$T/chunky.lua"
  scheck "a chunked bundle ($(wc -c <"$T/chunky.lua") bytes) becomes active" wait_for 10 spec_reported_is scripts.chunky.status active
  scheck "... and reports its version" spec_reported_is scripts.chunky.running 1
  scheck "... and runs" wait_for 5 chunky_alive

  # quarantine: a version that fails three times (across restarts) is not tried again
  spec_push --name app --version 15 --soak 2 "$T/soakerr.lua"
  scheck "a failing version is rolled back" wait_for 10 spec_reported_is scripts.app.status rolled_back
  local i
  for i in 1 2; do
    spec_restart "pump$i"
    wait_for 10 grep -qs "bundle app: version 15 \(rolled_back\|quarantined\)" "$T/pump$i.err"
  done
  scheck "after failing 3 times it is quarantined" wait_for 10 spec_reported_is scripts.app.status quarantined
  spec_restart pump3
  scheck "a quarantined version is not tried again after a restart" sh -c "sleep 2; grep -q 'version 15 quarantined' '$T/pump3.err' && ! grep -q 'version 15 rolled_back' '$T/pump3.err'"
  scheck "the last-known-good runs meanwhile" spec_reported_is scripts.app.running 14
  spec_push --name app --version 16 --soak 0 "$T/v1.lua"
  scheck "a different version is tried again" wait_for 10 spec_reported_is scripts.app.running 16

  # sensors, log, outbox keys
  dialect_set 'sensors={"vibration":{"rate":500},"humidity":50000}' 'log="debug"' 'outbox={"max_messages":5000}' >/dev/null
  scheck "desired sensor rates are applied" wait_for 10 spec_reported_is sensors.vibration.rate 500
  scheck "a rate above the board's bound is clamped and reported" spec_reported_is sensors.humidity.clamped true
  scheck "log level applied" spec_reported_is log.level debug
  scheck "outbox limits applied" spec_reported_is outbox.max_messages 5000
  declare -F dialect_set_raw >/dev/null || dialect_set_raw() { dialect_set "$@"; }
  dialect_set_raw 'outbox={"max_messages":-3}' 'sensors={"vibration":{"rate":500},"nosuch":5}' >/dev/null
  scheck "a bad outbox limit is refused naming key and value" wait_for 10 spec_reported_matches errors.outbox "outbox.max_messages: expected a number between 0 and .* got -3"
  scheck "an unknown sensor is reported" spec_reported_matches errors.sensors "nosuch: no such sensor"
  scheck "the limit applied before stays in effect" spec_reported_is outbox.max_messages 5000
}

# every sensor's drops, not just one of them: 0 in all, and at least one sensor seen
spec_no_drops() {
  "$LUME" stats --store "$d/var" | lua5.4 -e '
    local s, n, bad = io.read("a"), 0, 0
    for v in s:gmatch("\"drops\":(%d+)") do n = n + 1; if tonumber(v) > 0 then bad = bad + 1 end end
    os.exit(n > 0 and bad == 0)'
}
