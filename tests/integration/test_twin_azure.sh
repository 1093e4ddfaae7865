#!/usr/bin/env bash
# Scripts pushed through the twin of the azure dialect: the specs every
# dialect passes (tests/integration/twin_specs.sh, as test_twin.sh runs them
# for mqtt), with bundles and settings sent as desired patches by the hub
# emulator (tests/integration/azure_hub.py) and read back from the hub's
# twin; then the hub's own limits: bundles over a twin string go as chunks,
# a desired document over the twin's 32 KB as a url; malformed twin JSON (a
# GET answer, a desired patch), 429 storms on GETs and reported PATCHes,
# unknown methods, reported patches over 32 KB, forbidden key names, objects
# nested too deep: clear errors in the log, in reported and in `lume stats`,
# nothing already accepted lost.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"
. "$(dirname "$0")/azhub.sh"
. "$(dirname "$0")/twin_specs.sh"

if ! $PY -c 'import paho.mqtt.client' 2>/dev/null; then
  echo "# python3-paho-mqtt is missing (make deps installs it)"
  not_ok "python3-paho-mqtt installed"
  finish; exit 1
fi

mosq_start az || exit 1
mosq_certs "$MOSQ_CERTS" || exit 1
C=$MOSQ_CERTS
HOST=testhub.azure-devices.net
KEY=$(head -c 32 /dev/urandom | base64 -w0)
az_hub_start hub "$az_PORT" "$HOST" "$KEY" || { not_ok "the hub emulator starts"; finish; exit 1; }

"$LUME" keygen --out "$T/ops" >/dev/null
"$LUME" keygen --out "$T/rogue" >/dev/null

D=pump
d="$T/$D"
net_device "$d" "url = 'mqtt://127.0.0.1:$HUB_PORT', dialect = 'azure', connection_string = 'HostName=$HOST;DeviceId=$D;SharedAccessKey=$KEY', keepalive_s = 5, max_packet = '1MiB', backoff_min_ms = 200, backoff_max_ms = 1000" 'x = 0'
sed -i "s|^  net = |  twin = { trusted_keys = {'$T/ops.pub'}, max_script_bytes = 65536, fetch_ca_file = '$C/ca.pem' },\n  net = |" "$d/lume.conf.lua"
start_bg pump "$LUME" run --config "$d/lume.conf.lua"
PUMP=$LAST_PID
check "the device connects to the hub" wait_for 10 hub_stat_ge gets 1

# ---- the specs every dialect passes (tests/integration/twin_specs.sh) -------------
DIALECT=azure
# lua5.4 - ARGS <<'EOL' ... : a chunk with lume.json, ARGS in arg[1..]
lj() { lua5.4 - "$@"; }
# az_patch K=JSON...: the control command sending {K: JSON, ...} as a desired patch
az_patch() {
  lj "$ROOT" "$@" <<'EOL'
package.path = arg[1] .. "/stdlib/?.lua;" .. package.path
local json = require "lume.json"
local patch = {}
for i = 2, #arg do
  local k, v = arg[i]:match("^([^=]+)=(.*)$")
  patch[k] = json.decode(v)
end
print(json.encode({cmd = "patch", patch = patch}))
EOL
}
# az_bundle_patch NAME BUNDLE [unsigned]: the control command sending the
# bundle as desired.scripts.NAME. The hub merges a patch into the twin, so
# every bundle field the new bundle has not is sent as null: nothing of the
# bundle it replaces (a source where a url now is, an old sig) stays.
# unsigned: without its manifest fields and signature.
az_bundle_patch() {
  lj "$ROOT" "$@" <<'EOL'
package.path = arg[1] .. "/stdlib/?.lua;" .. package.path
local json = require "lume.json"
local b = json.decode(arg[3])
if arg[4] == "unsigned" then
  for _, k in ipairs({"name", "seq", "target", "rollback", "key_id", "sig"}) do b[k] = nil end
end
for _, k in ipairs({"version", "source", "chunks", "url", "sha256", "sig", "name", "seq",
                    "target", "rollback", "key_id", "soak_s"}) do
  if b[k] == nil then b[k] = json.null end
end
print(json.encode({cmd = "patch", patch = {scripts = {[arg[2]] = b}}}))
EOL
}
# The operator's side of `lume push` on this hub: `lume sign` makes the bundle
# (inline, chunks or url; signed for device:$D as lume push signs it, soak
# 10 s unless told), the hub sends it as a desired patch. Without --key the
# bundle is unsigned (its bytes made by lume sign, its manifest dropped).
dialect_push() {
  local key="" name="" version="" soak=10 url="" file="" b r
  while [ $# -gt 0 ]; do
    case $1 in
      --key) key=$2; shift ;; --name) name=$2; shift ;; --version) version=$2; shift ;;
      --soak) soak=$2; shift ;; --url) url=$2; shift ;; *) file=$1 ;;
    esac
    shift
  done
  if [ -n "$key" ]; then
    b=$("$LUME" sign "$file" --key "$key" --name "$name" --version "$version" --soak "$soak" \
        --target "device:$D" ${url:+--url "$url"}) || return 1
    r=$(azctl "$(az_bundle_patch "$name" "$b")")
  else
    b=$("$LUME" sign "$file" --key "$T/ops.key" --name unsigned --version "$version" --soak "$soak" \
        ${url:+--url "$url"}) || return 1
    r=$(azctl "$(az_bundle_patch "$name" "$b" unsigned)")
  fi
  echo "$r"
  case $r in *'"error"'*) return 1 ;; esac
}
dialect_set() {
  local r; r=$(azctl "$(az_patch "$@")")
  echo "$r"
  case $r in *'"error"'*) return 1 ;; esac
}
dialect_reported() { azctl '{"cmd":"twin"}' | jget reported; }
dialect_telemetry() {
  grep "\"device\": \"$D\"" "$HUB_OUT" | grep "\"route\": \"$1\"" \
    | sed -n 's/.*"payload": "\(.*\)", "t": [0-9.]*}$/\1/p'
}
BAD_NAME="bad!name"    # (a space, as test_twin.sh uses, is a key the hub refuses)
spec_www_start
# a 70000-byte script does not fit a twin (32 KB): it comes from a url
BIG_PUSH="--url https://localhost:$WWW_PORT/big.lua"
BIG_WHY="fetch https://localhost:$WWW_PORT/big.lua: larger than 65536 bytes"
twin_specs

# ---- the hub's limits on what a twin holds ------------------------------------------
LOG="$T/pump3.err"   # the lume running now (the specs restarted it)
stats() { "$LUME" stats --store "$d/var"; }
stat_ge() { [ "$(stats | jget "twin.$1")" -ge "$2" ]; }
chunks_ok() {
  lj "$ROOT" "$(azctl '{"cmd":"twin"}')" <<'EOL'
package.path = arg[1] .. "/stdlib/?.lua;" .. package.path
local t = require("lume.json").decode(arg[2])
local c = t.desired.scripts.chunky.chunks
local ok = type(c) == "table" and #c >= 2
for _, s in ipairs(c or {}) do ok = ok and #s <= 4096 end
os.exit(ok)
EOL
}
check "[azure] the chunked bundle sits in the hub's desired as chunks of at most 4 KB" chunks_ok
r=$(azctl "$(az_patch "scripts={\"inline\":{\"version\":\"1\",\"source\":\"$(head -c 5000 /dev/zero | tr '\0' '-')\"}}")")
check "[azure] ... because the hub refuses a 5000-byte string value" sh -c "echo '$r' | grep -q 'string of 5000 bytes'"

# a desired document over the twin's 32 KB: the hub refuses the chunked bundle,
# the same script from a url runs
{ echo 'lume.timer.every(200, function() lume.publish("large", "alive") end)'
  for i in $(seq 1 700); do printf -- '-- padding line %04d of a script too large for a twin\n' "$i"; done; } >"$T/large.lua"
cp "$T/large.lua" "$T/www/large.lua"
large_refused() {
  dialect_push --key "$T/ops.key" --name large --version 1 --soak 0 "$T/large.lua" | grep -q 'desired section of .* over 32768'
}
check "[azure] a $(wc -c <"$T/large.lua")-byte script as chunks: the hub refuses the desired document (over 32 KB)" large_refused
spec_push --name large --version 1 --soak 0 --url "https://localhost:$WWW_PORT/large.lua" "$T/large.lua"
check "[azure] ... the same script as a url bundle becomes active" wait_for 10 spec_reported_is scripts.large.status active
large_alive() { dialect_telemetry large | grep -q '^alive'; }
check "[azure] ... and runs" wait_for 5 large_alive

# ---- malformed twin JSON ----------------------------------------------------------------
gets0=$(hub_stat gets)
azctl '{"cmd":"rawpatch","body":"{\"log\": {\"level\": \"warn\"}"}' >/dev/null
check "[azure] a malformed desired patch is reported, naming the patch" \
  wait_for 10 spec_reported_matches errors.desired_patch 'desired patch \$version [0-9]+: not JSON'
check "[azure] ... and logged" grep -q 'desired patch \$version [0-9]*: not JSON' "$LOG"
check "[azure] ... the device asks for the whole twin again" wait_for 10 hub_stat_ge gets $((gets0 + 1))
check "[azure] ... nothing applied before is lost: the log level" spec_reported_is log.level debug
check "[azure] ... the sensor rate" spec_reported_is sensors.vibration.rate 500
check "[azure] ... the script's version" spec_reported_is scripts.app.running 16
azctl '{"cmd":"rawpatch","body":"[1, 2]"}' >/dev/null
check "[azure] a desired patch that is not an object is reported" \
  wait_for 10 spec_reported_matches errors.desired_patch 'desired patch \$version [0-9]+ must be a JSON object, got an array'
dialect_set 'log="info"' >/dev/null
check "[azure] the next good patch applies" wait_for 10 spec_reported_is log.level info
check "[azure] ... and clears the error" wait_for 5 spec_reported_is errors.desired_patch nil
check "[azure] lume stats counts the refused patches" stat_ge patches_refused 2

# a GET answered with malformed JSON: reported, asked again, then applied
# (twice: the error is reported for the 1 s + 2 s of the backoff)
azctl '{"cmd":"getbody","body":"{\"desired\": {\"$version\": 99, ","n":2}' >/dev/null
azctl "$(az_patch 'sensors={"vibration":{"rate":250}}' | sed 's/}$/,"skip":1}/')" >/dev/null
check "[azure] a malformed twin GET answer is reported, naming it" \
  wait_for 10 spec_reported_matches errors.desired 'twin GET answer: not JSON'
check "[azure] ... and logged" grep -q 'twin GET answer: not JSON' "$LOG"
check "[azure] ... the GET is asked again and what it brings is applied" wait_for 10 spec_reported_is sensors.vibration.rate 250
check "[azure] ... and the error is cleared" wait_for 5 spec_reported_is errors.desired nil
azctl '{"cmd":"getbody","body":"{\"reported\": {}}","n":2}' >/dev/null
azctl "$(az_patch 'sensors={"vibration":{"rate":200}}' | sed 's/}$/,"skip":1}/')" >/dev/null
check "[azure] a GET answer without a desired section is reported" \
  wait_for 10 spec_reported_matches errors.desired 'twin GET answer without a "desired" object'
check "[azure] ... and recovered from" wait_for 10 spec_reported_is sensors.vibration.rate 200
check "[azure] lume stats counts the GETs that failed" stat_ge get_errors 4

# ---- 429 storms ---------------------------------------------------------------------
gets0=$(hub_stat gets)
azctl '{"cmd":"failget","n":3,"status":429}' >/dev/null
azctl "$(az_patch 'sensors={"vibration":{"rate":100}}' | sed 's/}$/,"skip":1}/')" >/dev/null
check "[azure] a GET throttled 3 times in a row is asked again until answered" wait_for 15 spec_reported_is sensors.vibration.rate 100
check "[azure] ... with a backoff that doubles (1 s, 2 s, 4 s)" \
  sh -c "for ms in 1000 2000 4000; do grep -q \"twin GET answered 429 (throttled): asking again in \$ms ms\" '$LOG' || exit 1; done"
check "[azure] ... no tight loop: 4 GETs for it" test "$(hub_stat gets)" -eq $((gets0 + 4))
patches0=$(events reported_patch | wc -l)
azctl '{"cmd":"fail429","n":3}' >/dev/null
for r in 10 20 30; do dialect_set "sensors={\"vibration\":{\"rate\":$r}}" >/dev/null; sleep 0.5; done
check "[azure] reported PATCHes throttled 3 times: the last state lands" wait_for 15 spec_reported_is sensors.vibration.rate 30
check "[azure] ... no tight loop: at most 3 throttled + 3 accepted PATCHes for 3 changes" \
  test "$(events reported_patch | wc -l)" -le $((patches0 + 6))
check "[azure] ... backoff doubling to 4 s" grep -q 'reported PATCH throttled (429): sending again in 4000 ms' "$LOG"
check "[azure] ... counted in lume stats" stat_ge reported_throttled 3

# ---- unknown methods ----------------------------------------------------------------
r=$(azctl '{"cmd":"method","name":"no_such_valve","payload":{"x":1}}')
check "[azure] an unknown method: 404 naming it" sh -c "echo '$r' | grep -q '\"status\": 404' && echo '$r' | grep -q 'no method named .*no_such_valve'"
check "[azure] ... logged" grep -q 'no method named "no_such_valve" on this device' "$LOG"
check "[azure] ... counted in lume stats" stat_ge methods_failed 1

# ---- reported patches over the hub's limits ----------------------------------------------
cat >"$T/reporter.lua" <<'EOS'
local function try(what, t)
  local ok, err = lume.twin.report(t)
  lume.log.info("report %s: %s %s", what, tostring(ok), tostring(err))
end
lume.timer.after(200, function()
  try("big", { big = string.rep("x", 40000) })
  try("long string", { long = string.rep("x", 5000) })
  for i = 1, 5 do try("part" .. i, { ["part" .. i] = { a = string.rep("y", 4000), b = string.rep("z", 4000) } }) end
  try("dot", { ["a.b"] = 1 })
  try("dollar", { ["$x"] = 1 })
  try("space", { ok = { ["a b"] = 1 } })
  try("ctrl", { ["a\tb"] = 1 })
  local deep, t = {}, nil
  t = deep
  for i = 1, 11 do t["l" .. i] = {}; t = t["l" .. i] end
  t.leaf = 1
  try("deep", { deep = deep })
  local ten = {}
  t = ten
  for i = 1, 9 do t["l" .. i] = {}; t = t["l" .. i] end
  t.leaf = 1
  try("ten", { ten = ten })
  try("after", { after_the_refusals = true })
  -- fill what is left in small steps: scripts stop 4 KiB short of 32 KiB
  local n = 0
  repeat
    n = n + 1
    local ok, err = lume.twin.report({ ["fill" .. n] = string.rep("f", 100) })
    if not ok then lume.log.info("fill stopped: %s", err) end
  until not ok
end)
EOS
spec_push --name reporter --version 1 --soak 0 "$T/reporter.lua"
check "[azure] a script reporting what the hub refuses keeps running" wait_for 10 spec_reported_is scripts.reporter.status active
check "[azure] a 40 KB report is refused to the script, naming the limit" \
  wait_for 5 grep -q 'report big: nil twin.report: .*over the hub.s 32 KiB' "$LOG"
check "[azure] a string value over 4 KB is refused, naming it" \
  grep -q 'report long string: nil twin.report: reported value at long is a string of 5000 bytes, over the hub.s 4 KiB' "$LOG"
check "[azure] reports that fit go through until the section is full" sh -c "grep -q 'report part1: true' '$LOG' && grep -q 'report part2: true' '$LOG'"
check "[azure] ... the one that would take it over 32 KB is refused" grep -q 'report part5: nil twin.report: .*32 KiB' "$LOG"
for k in dot:"'.'" dollar:"'\\\$'" space:'a space' ctrl:'a control character'; do
  check "[azure] a reported key holding ${k#*:} is refused, naming it" grep -q "report ${k%%:*}: nil twin.report: reported key .* holds ${k#*:}" "$LOG"
done
check "[azure] objects nested deeper than 10 are refused, naming the path" \
  grep -q 'report deep: nil twin.report: .*deep.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.* nested deeper than 10' "$LOG"
check "[azure] ... 10 deep is fine" grep -q 'report ten: true' "$LOG"
check "[azure] reports after the refusals still land" wait_for 10 spec_reported_is after_the_refusals true
check "[azure] ... with what was accepted before them" spec_reported_is part2.a "$(printf 'y%.0s' $(seq 1 4000))"
check "[azure] a script filling the reported section stops 4 KiB short of 32 KiB" \
  grep -q 'fill stopped: twin.report: the reported document would be [0-9]* bytes: scripts may fill 28672 of the hub.s 32768' "$LOG"
cat >"$T/late.lua" <<'EOS'
lume.timer.every(200, function() lume.publish("late", "alive") end)
EOS
spec_push --name late --version 1 --soak 0 "$T/late.lua"
check "[azure] ... so lume's own reports still land: a bundle pushed after it is reported active" \
  wait_for 10 spec_reported_is scripts.late.status active
dialect_set 'sensors={"vibration":{"rate":50},"temperature":2}' >/dev/null
check "[azure] ... and sensor rates applied after it are reported" wait_for 10 spec_reported_is sensors.temperature.rate 2
check "[azure] the hub never had to refuse a reported PATCH" test "$(hub_stat reported_rejected)" -eq 0
check "[azure] lume stats counts the refusals" stat_ge reported_refused 8
check "lume survived all of it" kill -0 "$PUMP"

[ -n "${AZ_KEEP:-}" ] && cp -r "$T" "$AZ_KEEP"
finish
