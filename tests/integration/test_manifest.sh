#!/usr/bin/env bash
# Signed manifests and anti-rollback: a real mosquitto, a real `lume run`,
# keys from `lume keygen`, bundles from `lume sign` and `lume push`. Replays
# of older signed bundles (under a new version string, under another name,
# for another device), old-format bundles, unknown and revoked keys are
# refused with a reason that names what was wrong; a signed rollback goes
# in once; the seq floor survives a restart and does not move for a bundle
# that fails later in the pipeline.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s || exit 1
BROKER_PORT=$s_PORT
B="mqtt://127.0.0.1:$s_PORT"

key_id() { "$LUME" keygen --out "$T/$1" | awk '/^key id:/ {print $3}'; }
OPS=$(key_id ops)
OPS2=$(key_id ops2)
ROGUE=$(key_id rogue)
check "lume keygen prints the key id" test "${#OPS}" -eq 16
check "the key id is the openssl one-liner's (docs/bundles.md)" \
  test "$OPS" = "$(openssl pkey -pubin -in "$T/ops.pub" -outform DER | sha256sum | cut -c1-16)"

D=pump
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5" 'x = 0'
sed -i "s|^  net = |  twin = { trusted_keys = {'$T/ops.pub', '$T/ops2.pub'}, groups = {'fleet', 'site-a'} },\n  net = |" "$d/lume.conf.lua"
start_bg pump "$LUME" run --config "$d/lume.conf.lua"
PUMP=$LAST_PID
wait_for 10 reported_matches $D lume.groups fleet

# scripts whose bytes differ per version
mk() { printf 'lume.timer.every(200, function() lume.publish("beat", "%s") end)\n' "$1" >"$T/$1.lua"; }
for v in v1 v2 v3 v4 v5; do mk $v; done
printf 'local = 1\n' >"$T/broken.lua"
# sign OUT SCRIPT ARGS...: a bundle by `lume sign` (key ops unless --key is given again)
sign() { local out=$1 file=$2; shift 2; "$LUME" sign "$T/$file.lua" --key "$T/ops.key" --soak 0 "$@" >"$T/$out.json"; }
# put NAME FILE: desired.scripts.NAME = the bundle in FILE (the other bundles stay)
mkdir -p "$T/desired"
put() {
  cp "$2" "$T/desired/$1.json"
  local s="{" sep="" f
  for f in "$T"/desired/*.json; do s+="$sep\"$(basename "$f" .json)\":$(cat "$f")"; sep=","; done
  "$LUME" twin set --device $D --broker "$B" "scripts=$s}" >>"$T/twin.log" 2>&1
}
unput() { echo null >"$T/desired/$1.json"; }   # (twin set merges: null deletes)
status() { reported_is $D "scripts.$1.status" "$2"; }
running() { reported_is $D "scripts.$1.running" "$2"; }
# refused WHAT NAME VERSION REGEX: VERSION of NAME was rejected, the error matching REGEX
refused() {
  check "$1: refused, the reason names it" wait_for 10 reported_matches $D "scripts.$2.error" "$4"
  check "$1: reported as version $3 rejected" eval "reported_is $D scripts.$2.version '$3' && status $2 rejected"
}

# v1 (seq 1), then v2 (seq 2)
check "lume sign makes a bundle" sign b1 v1 --name rules --version 1 --seq 1 --target device:$D
check "the bundle carries its manifest" grep -q "\"name\":\"rules\",\"seq\":1,\"target\":\"device:$D\",\"rollback\":false,\"key_id\":\"$OPS\",\"sig\":" "$T/b1.json"
put rules "$T/b1.json"
check "v1 (seq 1) becomes active" wait_for 10 running rules 1
sign b2 v2 --name rules --version 2 --seq 2
put rules "$T/b2.json"
check "v2 (seq 2) becomes active" wait_for 10 running rules 2

# the old signed v1 replayed under a newer version string
sed 's/"version":"1"/"version":"3"/' "$T/b1.json" >"$T/replay.json"
put rules "$T/replay.json"
refused "replay of signed v1 (seq 1) as version 3" rules 3 "replayed or stale bundle: seq 1 is below seq 2"
check "v2 keeps running" running rules 2
check "the replay is in lume's log" grep -q "bundle rules: version 3 rejected: replayed or stale bundle" "$T/pump.err"

# a seq used again for other bytes; a field changed after signing
sign b2x v3 --name rules --version 2b --seq 2
put rules "$T/b2x.json"
refused "seq 2 again with other bytes" rules 2b "seq 2 was already used for other bytes"
sed 's/"seq":2,/"seq":50,/; s/"version":"2"/"version":"50"/' "$T/b2.json" >"$T/tampered.json"
put rules "$T/tampered.json"
refused "v2 with its seq raised after signing" rules 50 "bad signature: signature does not verify with key $OPS"

# an explicit signed rollback to v1, below the floor
sign rb v1 --name rules --version 1-rb --seq 1 --rollback
put rules "$T/rb.json"
check "a signed rollback to v1 (seq 1 < 2) is accepted" wait_for 10 running rules 1-rb
check "it is active" status rules active
check "it is reported as a rollback" reported_matches $D scripts.rules.warning "signed rollback accepted: seq 1 is below seq 2"
check "it is logged at WARN" grep -q "WARN.*bundle rules.*signed rollback accepted" "$T/pump.err"
put rules "$T/b2.json"
refused "replaying v2 (seq 2) to undo the rollback" rules 2 "seq 2 was already used for other bytes"
check "the rollback keeps running" running rules 1-rb

# v3 (seq 3), then the rollback replayed
sign b3 v3 --name rules --version 3 --seq 3
put rules "$T/b3.json"
check "v3 (seq 3) becomes active" wait_for 10 running rules 3
check "the rollback warning is cleared" reported_is $D scripts.rules.warning nil
put rules "$T/rb.json"
refused "the used rollback (seq 1) replayed" rules 1-rb "replayed rollback: a rollback needs a seq above 1"

# a bundle that fails later in the pipeline does not raise the floor
sign bbad broken --name rules --version bad --seq 100
put rules "$T/bbad.json"
refused "a broken script signed with seq 100" rules bad "does not load"
sign b4 v4 --name rules --version 4 --seq 4
put rules "$T/b4.json"
check "seq 4 is still accepted after seq 100 failed to load" wait_for 10 running rules 4

# a valid bundle for rules under another name
put other "$T/b4.json"
refused "the rules bundle under the name other" other 4 "bundle is for script 'rules' but sits under desired.scripts.other"
sed 's/"name":"rules",//' "$T/b4.json" >"$T/noname.json"
put other "$T/noname.json"
refused "the same without its name field" other 4 "signed bundle has no name"
unput other

# for another device, for other groups
sign bdev v5 --name rules --version 5 --seq 5 --target device:elsewhere
put rules "$T/bdev.json"
refused "a bundle signed for another device" rules 5 "bundle is for another device: it targets device:elsewhere, this device is $D"
sign bgrp v5 --name rules --version 5g --seq 5 --target group:ring-x
put rules "$T/bgrp.json"
refused "a bundle signed for a group the device is not in" rules 5g "targets group:ring-x, this device \\($D\\) is in groups fleet,site-a"
sed 's/"target":"device:elsewhere"/"target":"device:'$D'"/' "$T/bdev.json" >"$T/retarget.json"
put rules "$T/retarget.json"
refused "the device bundle retargeted at this device after signing" rules 5 "bad signature"
sign bsite v5 --name rules --version 6 --seq 6 --target group:site-a
put rules "$T/bsite.json"
check "a bundle signed for one of the device's groups is accepted" wait_for 10 running rules 6

# the floor survives a restart
kill -TERM $PUMP; wait $PUMP
start_bg pump2 "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
check "after a restart the last version runs" wait_for 10 running rules 6
sed 's/"version":"1"/"version":"7"/' "$T/b1.json" >"$T/replay2.json"
put rules "$T/replay2.json"
refused "after a restart, v1 (seq 1) replayed as version 7" rules 7 "replayed or stale bundle: seq 1 is below seq 6"
check "and it is refused in the log of the new process" grep -q "version 7 rejected: replayed or stale" "$T/pump2.err"

# an old-format bundle: a sig over the source alone
OLD_SIG=$(openssl dgst -sha256 -sign "$T/ops.key" "$T/v1.lua" | base64 -w0)
sed "s/\"version\":\"1\"/\"version\":\"8\"/; s|,\"name\":.*\$|,\"sig\":\"$OLD_SIG\",\"soak_s\":0}|" "$T/b1.json" >"$T/old.json"
check "(the old-format bundle has no manifest fields)" sh -c "! grep -q '\"seq\"' '$T/old.json'"
put rules "$T/old.json"
refused "an old-format bundle" rules 8 "old-format bundle: its sig covers the script's bytes only.*Re-sign it with this lume: lume push"

# keys: unknown, a second trusted key (rotation), revoked
sign brogue v5 --name rules --version 9r --seq 9 --key "$T/rogue.key"
put rules "$T/brogue.json"
refused "a bundle signed by an untrusted key" rules 9r "unknown key id $ROGUE"
sign bops2 v5 --name rules --version 9 --seq 9 --key "$T/ops2.key"
put rules "$T/bops2.json"
check "a bundle signed by the second trusted key is accepted" wait_for 10 running rules 9
kill -TERM $PUMP; wait $PUMP
sed -i "s|trusted_keys = {|revoked_keys = {'$OPS2'}, trusted_keys = {|" "$d/lume.conf.lua"
start_bg pump3 "$LUME" run --config "$d/lume.conf.lua"; PUMP=$LAST_PID
check "a trusted key that is revoked is named at start" wait_for 10 grep -q "trusted key $OPS2: .*revoked" "$T/pump3.err"
wait_for 10 running rules 9
sign brev v5 --name rules --version 10 --seq 10 --key "$T/ops2.key"
put rules "$T/brev.json"
refused "a bundle signed by a revoked key" rules 10 "key $OPS2 is revoked \\(twin.revoked_keys\\)"
sign bops v5 --name rules --version 11 --seq 11
put rules "$T/bops.json"
check "the other key still works" wait_for 10 running rules 11

# lume push: signed for the device, seq from the clock, --rollback
check "lume push signs and publishes" "$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name rules --version 12 --soak 0 "$T/v2.lua"
check "the pushed bundle becomes active" wait_for 10 running rules 12
desired() { mosquitto_sub -h 127.0.0.1 -p "$s_PORT" -t "lume/$D/desired" -C 1 -W 3 2>/dev/null | lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
check "lume push --device signs for that device" test "$(desired scripts.rules.target)" = "device:$D"
check "lume push takes its seq from the clock" test "$(desired scripts.rules.seq)" -gt 1600000000000
"$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name rules --version 13 --seq 12 --soak 0 "$T/v3.lua" >>"$T/twin.log" 2>&1
refused "lume push with a seq below the floor" rules 13 "replayed or stale bundle: seq 12 is below"
check "lume push --rollback signs a rollback that is accepted" \
  "$LUME" push --device $D --broker "$B" --key "$T/ops.key" --name rules --version 13 --seq 12 --rollback --soak 0 "$T/v3.lua"
check "the pushed rollback becomes active" wait_for 10 running rules 13
check "lume survived all of it" kill -0 $PUMP
kill -TERM $PUMP; wait $PUMP

finish
