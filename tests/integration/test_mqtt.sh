#!/usr/bin/env bash
# lume against a real mosquitto: every transport both ways, and every way a
# connection can fail — each with a log line naming the cause, retries with
# backoff, and nothing lost from the outbox.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

# every listener the broker under test has (LUME_TEST_BROKER, brokers.sh)
listeners=()
for l in tls mtls ws wss; do broker_can $l && listeners+=(--$l); done
mosq_start b "${listeners[@]}" || exit 1
mosq_start auth --passwd dev:s3cret || exit 1
C=$MOSQ_CERTS
mosq_sub b "$T/b.out" 'lume/#'
mosq_sub auth "$T/auth.out" 'lume/#'

# both_ways NAME BROKER NETLUA: telemetry reaches mosquitto_sub, a command
# from mosquitto_pub reaches the script.
both_ways() {
  local name=$1 broker=$2 net=$3 out="$T/$2.out"
  case $net in *":'"*|*":/mqtt'"*) skip "$name: both ways" "$LUME_TEST_BROKER has no such listener"; return ;; esac
  local d="$T/$name"
  net_device "$d" "$net"
  start_bg "$name" "$LUME" run --config "$d/lume.conf.lua"
  local pid=$LAST_PID
  check "$name: telemetry arrives at the broker" wait_for 10 grep -q "^lume/$name/telemetry/hello hello 3$" "$out"
  check "$name: status online (retained)" grep -q "^lume/$name/status online$" "$out"
  wait_for 10 grep -q "mqtt: connected to" "$T/$name.err"
  mosq_pub "$broker" "lume/$name/cmd/set" "rate=5" >/dev/null
  check "$name: a command reaches the script" wait_for 10 grep -q "cmd arrived: lume/$name/cmd/set rate=5" "$T/$name.err"
  kill -TERM "$pid"; wait "$pid"
  check "$name: a clean stop says offline" wait_for 5 grep -q "^lume/$name/status offline$" "$out"
}

both_ways plain b "url = 'mqtt://127.0.0.1:$b_PORT'"
both_ways tls b "url = 'mqtts://localhost:$b_TLS_PORT', ca_file = '$C/ca.pem'"
both_ways tlsip b "url = 'mqtts://127.0.0.1:$b_TLS_PORT', ca_file = '$C/ca.pem'"
both_ways mtls b "url = 'mqtts://localhost:$b_MTLS_PORT', ca_file = '$C/ca.pem', cert_file = '$C/client.pem', key_file = '$C/client.key'"
both_ways passwd auth "url = 'mqtt://127.0.0.1:$auth_PORT', username = 'dev', password = 's3cret'"
both_ways ws b "url = 'ws://127.0.0.1:$b_WS_PORT/mqtt'"
both_ways wss b "url = 'wss://127.0.0.1:$b_WSS_PORT/mqtt', ca_file = '$C/ca.pem', server_name = 'localhost'"

# fails NAME NETLUA PATTERN: lume logs PATTERN and keeps retrying with backoff
fails() {
  local name=$1 net=$2 pat=$3
  local d="$T/$name"
  net_device "$d" "$net, backoff_min_ms = 100, backoff_max_ms = 400, connect_timeout_ms = 3000"
  start_bg "$name" "$LUME" run --config "$d/lume.conf.lua"
  FAIL_PID=$LAST_PID
  check "$name: the log names the cause" wait_for 15 grep -Eq "$pat" "$T/$name.err"
  check "$name: retries with backoff" wait_for 15 sh -c "[ \$(grep -c 'reconnecting in' '$T/$name.err') -ge 3 ]"
  check "$name: backoff delays stay within [min, max]" sh -c \
    "grep -o 'reconnecting in [0-9]* ms' '$T/$name.err' | awk '{ if (\$3 < 100 || \$3 > 400) bad=1 } END { exit bad }'"
  check "$name: messages wait in the outbox" sh -c "'$LUME' outbox stats --store '$d/var' | grep -Eq '^telemetry +[1-9]'"
}

# fixed NAME NETLUA BROKER: restart the failing device with a good config:
# every message it queued while failing arrives, 1..N without a gap.
fixed() {
  local name=$1 net=$2 broker=$3
  local d="$T/$name"
  kill -TERM "$FAIL_PID"; wait "$FAIL_PID"
  local queued; queued=$("$LUME" outbox dump --store "$d/var" | awk '$4 ~ /hello$/ {print $6}' | sort -n | tail -n 1)
  sed -i "s|net = {.*|net = { $net },|" "$d/lume.conf.lua"
  rm "$d/scripts/app.lua"   # no new messages: only what was queued
  start_bg "$name-fixed" "$LUME" run --config "$d/lume.conf.lua"
  local pid=$LAST_PID
  check "$name: after the fix all $queued queued messages arrive" \
    wait_for 15 sh -c "[ \$(grep -c '^lume/$name/telemetry/hello hello ' '$T/$broker.out') -ge $queued ]"
  check "$name: none lost, none out of order" sh -c \
    "grep '^lume/$name/telemetry/hello hello ' '$T/$broker.out' | awk '{ if (\$3 != NR) { bad = 1; exit } } END { exit bad || NR < $queued }'"
  kill -TERM "$pid"; wait "$pid"
}

fails wrongca "url = 'mqtts://localhost:$b_TLS_PORT', ca_file = '$C/other-ca.pem'" \
  "TLS handshake with localhost:$b_TLS_PORT failed: .*not correctly signed"
fixed wrongca "url = 'mqtts://localhost:$b_TLS_PORT', ca_file = '$C/ca.pem'" b

fails badname "url = 'mqtts://127.0.0.1:$b_TLS_PORT', ca_file = '$C/ca.pem', server_name = 'broker.example'" \
  "TLS handshake .* failed: .*(CN|name)"
kill -TERM "$FAIL_PID"; wait "$FAIL_PID"

if broker_can mtls; then
fails nocert "url = 'mqtts://localhost:$b_MTLS_PORT', ca_file = '$C/ca.pem'" \
  "(TLS handshake .* failed|closed by the broker)"
kill -TERM "$FAIL_PID"; wait "$FAIL_PID"
else skip "nocert: refused without a client certificate" "$LUME_TEST_BROKER has no --mtls listener"; fi

fails wrongpw "url = 'mqtt://127.0.0.1:$auth_PORT', username = 'dev', password = 'nope'" \
  "CONNACK refused by 127.0.0.1:$auth_PORT: (bad user name or password \(code 4\)|not authorized \(code 5\))"
fixed wrongpw "url = 'mqtt://127.0.0.1:$auth_PORT', username = 'dev', password = 's3cret'" auth

anon_code="not authorized \(code 5\)"   # RabbitMQ answers a missing user name with 4
[ "$LUME_TEST_BROKER" = rabbitmq ] && anon_code="bad user name or password \(code 4\)"
fails anon "url = 'mqtt://127.0.0.1:$auth_PORT'" \
  "CONNACK refused by 127.0.0.1:$auth_PORT: $anon_code"
kill -TERM "$FAIL_PID"; wait "$FAIL_PID"

_mosq_pick_port; closed=$REPLY
fails closedport "url = 'mqtt://127.0.0.1:$closed'" \
  "cannot connect to mqtt://127.0.0.1:$closed"
kill -TERM "$FAIL_PID"; wait "$FAIL_PID"

fails nohost "url = 'mqtt://no-such-broker.invalid:1883'" \
  "cannot connect to mqtt://no-such-broker.invalid:1883"
kill -TERM "$FAIL_PID"; wait "$FAIL_PID"

# the session as scripts see it: events with reasons, counters, wildcards,
# a poison message that cannot block the session, the last will, dead peers
mosq_start k --persist || exit 1
mosq_sub k "$T/k.out" 'lume/#'
d="$T/watcher"
net_device "$d" "url = 'mqtt://127.0.0.1:$k_PORT', keepalive_s = 2, backoff_min_ms = 100, backoff_max_ms = 300" '
lume.net.on("connected", function(r) lume.log.info("event connected: %s", r) end)
lume.net.on("disconnected", function(r) lume.log.info("event disconnected: %s", r) end)
lume.subscribe("lume/watcher/cmd/+/set", function(topic, payload)
  if payload == "poison" then error("poison message " .. topic) end
  lume.log.info("wildcard got %s %s", topic, payload)
end)
lume.subscribe("lume/watcher/all/#", function(topic) lume.log.info("hash got %s", topic) end)
lume.timer.every(500, function()
  local st = lume.net.stats()
  lume.log.info("net %s sent=%d acked=%d received=%d", lume.net.state(), st.sent, st.acked, st.received)
  lume.publish("tick", "x")
end)'
start_bg watcher "$LUME" run --config "$d/lume.conf.lua"; W=$LAST_PID
check "scripts get a connected event" wait_for 10 grep -q "event connected: new session" "$T/watcher.err"
check "lume.net.state() and stats() count what was sent and acked" wait_for 10 grep -Eq "net connected sent=[1-9][0-9]* acked=[1-9]" "$T/watcher.err"
mosq_pub k lume/watcher/cmd/pump/set on >/dev/null
mosq_pub k lume/watcher/cmd/pump/get on >/dev/null
mosq_pub k lume/watcher/all/a/b/c x >/dev/null
check "+ matches one level" wait_for 5 grep -q "wildcard got lume/watcher/cmd/pump/set on" "$T/watcher.err"
check "+ does not match another last level" sh -c "! grep -q 'cmd/pump/get' '$T/watcher.err'"
check "# matches every level below" wait_for 5 grep -q "hash got lume/watcher/all/a/b/c" "$T/watcher.err"
mosq_pub k lume/watcher/cmd/valve/set poison >/dev/null
mosq_pub k lume/watcher/cmd/valve/set after >/dev/null
check "a poison message is logged as a handler error" wait_for 5 grep -q "poison message lume/watcher/cmd/valve/set" "$T/watcher.err"
check "and does not block the next message" wait_for 5 grep -q "wildcard got lume/watcher/cmd/valve/set after" "$T/watcher.err"
kill -TERM $W; wait $W
start_bg watcher2 "$LUME" run --config "$d/lume.conf.lua"; W=$LAST_PID
wait_for 10 grep -q "event connected" "$T/watcher2.err"
sleep 1
check "the poison message was acknowledged: not redelivered after a restart" sh -c "! grep -q poison '$T/watcher2.err'"
kill -STOP "$k_PID"
check "a dead broker (SIGSTOP) is detected by keepalive within 1.5 x keepalive" wait_for 10 grep -q "keepalive: nothing from 127.0.0.1:$k_PORT for [0-9]* ms (1.5 x keepalive)" "$T/watcher2.err"
check "scripts get a disconnected event with the reason" grep -q "event disconnected: keepalive: nothing from" "$T/watcher2.err"
kill -CONT "$k_PID"
check "and it reconnects when the broker answers again" wait_for 15 sh -c "[ \$(grep -c 'event connected' '$T/watcher2.err') -ge 2 ]"
kill -9 $W; wait $W 2>/dev/null
check "the last will marks a killed device offline" wait_for 10 sh -c "tail -n 5 '$T/k.out' | grep -q '^lume/watcher/status offline$'"

# backoff: it grows while the broker stays away, and a stable connection
# resets it to the first attempt
mosq_start r || exit 1
d="$T/bouncer"
net_device "$d" "url = 'mqtt://127.0.0.1:$r_PORT', backoff_min_ms = 100, backoff_max_ms = 2000, stable_ms = 500" 'x = 1'
start_bg bouncer "$LUME" run --config "$d/lume.conf.lua"; BPID=$LAST_PID
wait_for 10 grep -q "mqtt: connected" "$T/bouncer.err"
mosq_stop r
check "attempts count up while the broker is down" wait_for 15 grep -q "(attempt 4)" "$T/bouncer.err"
check "attempt 1 waits the minimum; later attempts grow (full jitter up to the doubled cap)" sh -c \
  "grep -o 'reconnecting in [0-9]* ms (attempt [0-9]*)' '$T/bouncer.err' | tr -d ')' | awk '\$6 == 1 && \$3 != 100 { bad = 1 } \$6 >= 3 && \$3 > 100 { grew = 1 } END { exit bad || !grew }'"
mosq_restart r
check "it reconnects" wait_for 15 sh -c "[ \$(grep -c 'mqtt: connected' '$T/bouncer.err') -ge 2 ]"
sleep 1   # longer than stable_ms
before=$(grep -c "(attempt 1)" "$T/bouncer.err")
mosq_stop r
check "after a stable connection the next failure is attempt 1 again" \
  wait_for 10 sh -c "[ \$(grep -c '(attempt 1)' '$T/bouncer.err') -gt $before ]"
kill -TERM $BPID; wait $BPID

# config errors are caught before anything starts: exit 2, naming the key
d="$T/badtls"; net_device "$d" "url = 'mqtts://localhost:1', ca_file = '$T/missing.pem'"
"$LUME" run --config "$d/lume.conf.lua" 2>"$T/badtls.err"; rc=$?
check "a missing ca_file exits 2 naming the file" test $rc -eq 2 -a -n "$(grep "missing.pem" "$T/badtls.err")"
d="$T/badurl"; net_device "$d" "url = 'tcp://x'"
"$LUME" run --config "$d/lume.conf.lua" 2>"$T/badurl.err"; rc=$?
check "a bad url exits 2 naming it" test $rc -eq 2 -a -n "$(grep 'net.url: expected mqtt://' "$T/badurl.err")"

finish
