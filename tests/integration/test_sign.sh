#!/usr/bin/env bash
# Message signing (net.sign, docs/signing.md) end to end: real lume devices
# sign what they publish to a real mosquitto, mosquitto_sub captures it, and
# `lume verify` checks the capture. The HMAC is recomputed with python3's
# hmac and the ECDSA signature checked with `openssl dgst -verify`, over the
# canonical bytes rebuilt from docs/signing.md (not from lume's code). Keys
# come from the openssl CLI. A message taken from the outbox of a killed
# device goes out byte for byte as it was stored (signed once, on entry).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s || exit 1
BROKER_PORT=$s_PORT
openssl rand -base64 32 >"$T/hmac.key"
openssl rand -base64 32 >"$T/other.key"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/ec.key" 2>/dev/null
openssl pkey -in "$T/ec.key" -pubout -out "$T/ec.pub"
chmod 600 "$T"/*.key

# the canonical bytes and the checks, written from docs/signing.md
cat >"$T/canon.py" <<'EOP'
import base64, hashlib, hmac, json, sys, urllib.parse
q = lambda s: urllib.parse.quote(s, safe="-._~")
def canon(alg, kid, device, route, seq, ts, payload):
    return ("lume-msg-v1\nalg=%s\nkey=%s\ndevice=%s\nroute=%s\nseq=%d\nts=%d\npayload=%s\n" % (
        alg, kid, q(device), q(route), seq, ts, hashlib.sha256(payload).hexdigest())).encode()
what, line = sys.argv[1], open(sys.argv[2]).readline().rstrip("\n")
topic, payload = line.split(" ", 1)
_, device, _, route = topic.split("/", 3)
env = json.loads(payload)
h = env["lume_sig"]
body = env["payload"].encode()
c = canon(h["alg"], h["kid"], device, route, h["seq"], h["ts"], body)
if what == "hmac":
    key = base64.b64decode(open(sys.argv[3]).read())
    mine = base64.b64encode(hmac.new(key, c, hashlib.sha256).digest()).decode()
    print("same" if hmac.compare_digest(mine, h["sig"]) else "differs: %s vs %s" % (mine, h["sig"]))
else:  # write the bytes and the DER signature for openssl
    open(sys.argv[3], "wb").write(c)
    open(sys.argv[3] + ".sig", "wb").write(base64.b64decode(h["sig"]))
EOP

# ---- HMAC-SHA256, mqtt dialect (the envelope) ------------------------------------------
mosq_sub s "$T/cap.out" 'lume/+/telemetry/#' || exit 1
SCRIPT='local n = 0
lume.timer.every(100, function()
  n = n + 1
  lume.publish("env/temp", "hello " .. n)
  if n % 3 == 0 then lume.publish("bulk", {n = n, text = "ünï"}, {priority = "bulk"}) end
end)'
d="$T/dev1"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', backoff_min_ms = 100, backoff_max_ms = 300, sign = { alg = 'hmac-sha256', key_file = '$T/hmac.key' }" "$SCRIPT"
start_bg dev "$LUME" run --config "$d/lume.conf.lua"
DEV=$LAST_PID
kid=$(printf lume-key-id | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(base64 -d "$T/hmac.key" | xxd -p | tr -d '\n')" | awk '{print $NF}' | cut -c1-16)
check "the device logs its key id, the one openssl computes ($kid)" wait_for 10 grep -q "key id $kid" "$T/dev.err"
check "signed messages arrive" wait_for 10 sh -c "[ \$(grep -c '/telemetry/' '$T/cap.out') -ge 8 ]"
head -n 8 "$T/cap.out" >"$T/good.txt"
check "each payload is wrapped in the lume_sig envelope" grep -q '^lume/dev1/telemetry/env/temp {"lume_sig":{"v":1,"alg":"hmac-sha256","kid":"'"$kid"'","seq":' "$T/good.txt"
"$LUME" verify --key "$T/hmac.key" "$T/good.txt" >"$T/v.out" 2>&1
check "lume verify: all 8 valid, exit 0" grep -q "^8 valid, 0 invalid" "$T/v.out"
check "python3's hmac computes the same HMAC-SHA256 over docs/signing.md's bytes" \
  test "$(python3 "$T/canon.py" hmac "$T/good.txt" "$T/hmac.key")" = same
grep bulk "$T/good.txt" | head -n 1 >"$T/bulk.txt"
check "and for a JSON payload with non-ASCII text" \
  test "$(python3 "$T/canon.py" hmac "$T/bulk.txt" "$T/hmac.key")" = same

verify_fails() { # FILE REGEX: exit 1 and the reason named
  local out rc
  out=$("$LUME" verify --key "${KEY:-$T/hmac.key}" "$1" 2>&1); rc=$?
  [ $rc -eq 1 ] && printf '%s\n' "$out" | grep -Eq "$2" || { echo "# rc $rc: $out"; return 1; }
}
head -n 1 "$T/good.txt" | sed 's/"payload":"hello /"payload":"jello /' >"$T/tampered.txt"
check "one byte of the payload changed: bad signature, exit 1" verify_fails "$T/tampered.txt" 'INVALID: bad signature'
head -n 1 "$T/good.txt" | sed 's|^lume/dev1/telemetry/env/temp|lume/dev1/telemetry/env/tamp|' >"$T/moved.txt"
check "moved to another route: bad signature" verify_fails "$T/moved.txt" 'INVALID: bad signature'
head -n 1 "$T/good.txt" | sed 's|^lume/dev1/|lume/dev2/|' >"$T/other-dev.txt"
check "claimed by another device: bad signature" verify_fails "$T/other-dev.txt" 'INVALID: bad signature'
KEY="$T/other.key" check "another secret: wrong key, naming both key ids" verify_fails "$T/good.txt" "wrong key: signed with hmac-sha256 key $kid"
printf 'lume/dev1/telemetry/x not an envelope\n' >"$T/junk.txt"
check "an unsigned payload: malformed" verify_fails "$T/junk.txt" 'INVALID: malformed: not a signed message'
printf 'what is this\n' >"$T/junk2.txt"
check "a line that is no capture: malformed" verify_fails "$T/junk2.txt" 'INVALID: malformed'
# the same seq signed over other bytes (a genuine message, replayed with a
# forged copy): the forgery fails and the reuse is named
{ head -n 1 "$T/good.txt"; head -n 1 "$T/good.txt"; } >"$T/resend.txt"
check "the same message twice (a QoS 1 resend) verifies" sh -c "'$LUME' verify --key '$T/hmac.key' '$T/resend.txt' | grep -q '^2 valid, 0 invalid'"
sed -n 1p "$T/good.txt" | cut -d' ' -f2- >"$T/payload-only.txt"
check "--topic T with the payload alone (mosquitto_sub without -v)" \
  sh -c "'$LUME' verify --key '$T/hmac.key' --topic lume/dev1/telemetry/env/temp '$T/payload-only.txt' | grep -q '^1 valid'"
missing_key() { local out rc; out=$("$LUME" verify --key "$T/nope" "$T/good.txt" 2>&1); rc=$?; [ $rc -eq 2 ] && printf '%s' "$out" | grep -q 'nope: No such file'; }
check "a missing key file is a usage error (exit 2) naming it" missing_key

# ---- signed once, on entry to the outbox: what was stored is what is sent ---------------
mosq_stop s
sleep 0.8                                  # messages pile up in the outbox
kill -KILL "$DEV"; wait "$DEV" 2>/dev/null
# (lume outbox dump shows payloads up to 200 bytes, bytes outside ASCII as
# '.': the "hello N" envelopes fit)
"$LUME" outbox dump --config "$d/lume.conf.lua" | awk '$4 ~ /telemetry\/env\/temp$/' | cut -d' ' -f4- >"$T/stored.txt"
nstored=$(grep -c . "$T/stored.txt")
check "messages queued while offline are stored signed ($nstored)" \
  sh -c "[ $nstored -ge 3 ] && '$LUME' verify --key '$T/hmac.key' '$T/stored.txt' | grep -q '^$nstored valid, 0 invalid'"
mosq_restart s || exit 1
mosq_sub s "$T/cap2.out" 'lume/+/telemetry/#' || exit 1
start_bg dev1b "$LUME" run --config "$d/lume.conf.lua"
DEV=$LAST_PID
check "after a restart they go out byte for byte as stored" \
  wait_for 10 sh -c "[ \$(grep -cFxf '$T/stored.txt' '$T/cap2.out') -eq $nstored ]"
sleep 0.3
kill -TERM "$DEV"; wait "$DEV"
cat "$T/cap.out" "$T/cap2.out" | grep '/telemetry/' >"$T/all.txt"
"$LUME" verify --key "$T/hmac.key" "$T/all.txt" >"$T/all.v" 2>&1
check "no seq is reused across the restart (every message of both runs valid)" grep -q ' 0 invalid' "$T/all.v"
maxseq=$(python3 -c "import json,sys; print(max(json.loads(l.split(' ',1)[1])['lume_sig']['seq'] for l in open('$T/cap2.out') if '/telemetry/' in l))")
check "the restarted device went on from a new block of seqs ($maxseq > 1000)" test "$maxseq" -gt 1000

# ---- ECDSA P-256 with a device key ------------------------------------------------------
d="$T/dev3"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', sign = { alg = 'ecdsa-p256', key_file = '$T/ec.key' }" "$SCRIPT"
start_bg dev3 "$LUME" run --config "$d/lume.conf.lua"
DEV=$LAST_PID
check "ecdsa: signed messages arrive" wait_for 10 sh -c "[ \$(grep -c '^lume/dev3/telemetry/' '$T/cap2.out') -ge 3 ]"
kill -TERM "$DEV"; wait "$DEV"
grep '^lume/dev3/telemetry/' "$T/cap2.out" | head -n 3 >"$T/ec.txt"
eckid=$(openssl pkey -pubin -in "$T/ec.pub" -outform DER | sha256sum | cut -c1-16)
check "ecdsa: the key id is openssl's ($eckid)" grep -q "\"kid\":\"$eckid\"" "$T/ec.txt"
check "ecdsa: lume verify with the public key: valid" sh -c "'$LUME' verify --key '$T/ec.pub' '$T/ec.txt' | grep -q '^3 valid, 0 invalid'"
python3 "$T/canon.py" ecdsa "$T/ec.txt" "$T/ec.bytes"
check "ecdsa: openssl dgst -verify accepts the signature over docs/signing.md's bytes" \
  sh -c "openssl dgst -sha256 -verify '$T/ec.pub' -signature '$T/ec.bytes.sig' '$T/ec.bytes' | grep -q 'Verified OK'"
head -n 1 "$T/ec.txt" | sed 's/"payload":"hello /"payload":"hellO /' >"$T/ec-tampered.txt"
KEY="$T/ec.pub" check "ecdsa: one byte changed: bad signature" verify_fails "$T/ec-tampered.txt" 'INVALID: bad signature'
KEY="$T/hmac.key" check "ecdsa message checked with the HMAC secret: wrong key" verify_fails "$T/ec.txt" 'wrong key: signed with ecdsa-p256'

# ---- azure dialect: the signature in the property bag -----------------------------------
mosq_sub s "$T/az.out" 'devices/+/messages/events/#' || exit 1
d="$T/az1"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', dialect = 'azure', connection_string = 'HostName=h.azure-devices.net;DeviceId=az1;SharedAccessKey=$(openssl rand -base64 32)', sign = { alg = 'hmac-sha256', key_file = '$T/hmac.key' }" "$SCRIPT"
start_bg az "$LUME" run --config "$d/lume.conf.lua"
DEV=$LAST_PID
check "azure: signed messages arrive with lume-sig in the property bag" \
  wait_for 10 sh -c "[ \$(grep -c 'lume-seq=.*&lume-sig=' '$T/az.out') -ge 3 ]"
kill -TERM "$DEV"; wait "$DEV"
head -n 3 "$T/az.out" >"$T/az.txt"
check "azure: the payload is untouched (no envelope)" grep -q ' hello 1$' "$T/az.txt"
check "azure: lume verify: valid" sh -c "'$LUME' verify --key '$T/hmac.key' '$T/az.txt' | grep -q '^3 valid, 0 invalid'"
# what a cloud consumer sees: the body, and the properties apart from the topic
python3 - "$T/az.txt" >"$T/az.json" <<'EOP'
import json, sys, urllib.parse
for line in open(sys.argv[1]):
    topic, payload = line.rstrip("\n").split(" ", 1)
    base, bag = topic.rsplit("/", 1)
    props = dict(urllib.parse.parse_qsl(bag))
    print(json.dumps({"topic": base + "/", "payload": payload, "properties": props}))
EOP
check "azure: a JSON capture with the properties apart verifies" sh -c "'$LUME' verify --key '$T/hmac.key' '$T/az.json' | grep -q '^3 valid, 0 invalid'"
sed -i '1s/"payload": "hello 1"/"payload": "hello 7"/' "$T/az.json"
check "azure: a changed body in a JSON capture: bad signature" verify_fails "$T/az.json" 'line 1: INVALID: bad signature'

# ---- configuration errors --------------------------------------------------------------
d="$T/bad"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', sign = { alg = 'hmac-sha1', key_file = '$T/hmac.key' }"
"$LUME" run --config "$d/lume.conf.lua" >/dev/null 2>"$T/bad.err"; rc=$?
check "net.sign.alg 'hmac-sha1' is refused (exit 2), naming the key" sh -c "[ $rc -eq 2 ] && grep -q 'net.sign.alg: expected' '$T/bad.err'"
printf 'c2hvcnQ=\n' >"$T/short.key"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', sign = { alg = 'hmac-sha256', key_file = '$T/short.key' }"
"$LUME" run --config "$d/lume.conf.lua" >/dev/null 2>"$T/bad.err"; rc=$?
check "a 5-byte HMAC secret is refused (exit 2), naming the file" sh -c "[ $rc -eq 2 ] && grep -q 'short.key.*too short' '$T/bad.err'"
net_device "$d" "url = 'mqtt://127.0.0.1:$s_PORT', sign = { alg = 'ecdsa-p256', key_file = '$T/ec.pub' }"
"$LUME" run --config "$d/lume.conf.lua" >/dev/null 2>"$T/bad.err"; rc=$?
check "ecdsa with a public key is refused (exit 2): it needs the private key" sh -c "[ $rc -eq 2 ] && grep -q 'net.sign.key_file: .*ec.pub: not a PEM private key' '$T/bad.err'"
finish
