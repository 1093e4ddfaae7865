#!/usr/bin/env bash
# The broker harness (mosq.sh) itself, with mosquitto_pub/mosquitto_sub as the
# only peers: certificates, plain/TLS/mutual-TLS/password/websocket listeners,
# persistence across restarts, restarts on the same ports, and error reports.
# Needs no lume build.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

C=$MOSQ_CERTS
PUB=(timeout 10 mosquitto_pub -q 1)

# absent PATTERN FILE: the line is not in FILE (call after a later sentinel
# line arrived through the same subscription, so absence means something)
absent() { ! grep -q "$1" "$2"; }
# loopback_only PID: every listening socket of PID is 127.0.0.1
loopback_only() {
  local l
  l=$(ss -Hltnp | grep "pid=$1,")
  [ -n "$l" ] && ! awk '{ print $4 }' <<<"$l" | grep -vq '^127\.0\.0\.1:'
}

# --- certificates ---------------------------------------------------------------
check "mosq_certs makes the CA, server, client and other-CA files" mosq_certs "$C"
for f in ca.pem ca.key server.pem server.key client.pem client.key other-ca.pem; do
  check "$f exists" test -s "$C/$f"
done
check "the server certificate verifies against ca.pem" \
  sh -c "openssl verify -CAfile '$C/ca.pem' '$C/server.pem' >/dev/null"
check "the client certificate verifies against ca.pem" \
  sh -c "openssl verify -CAfile '$C/ca.pem' -purpose sslclient '$C/client.pem' >/dev/null"
check "the server certificate does not verify against other-ca.pem" \
  sh -c "! openssl verify -CAfile '$C/other-ca.pem' '$C/server.pem' >/dev/null 2>&1"
check "the server certificate is valid for the name localhost" \
  sh -c "openssl verify -CAfile '$C/ca.pem' -verify_hostname localhost '$C/server.pem' >/dev/null"
check "the server certificate is valid for the address 127.0.0.1" \
  sh -c "openssl verify -CAfile '$C/ca.pem' -verify_ip 127.0.0.1 '$C/server.pem' >/dev/null"
check "the server certificate is not valid for another name" \
  sh -c "! openssl verify -CAfile '$C/ca.pem' -verify_hostname example.com '$C/server.pem' >/dev/null 2>&1"
check "the server certificate is CN=localhost" \
  sh -c "openssl x509 -in '$C/server.pem' -noout -subject | grep -q 'CN *= *localhost'"
check "the client certificate is CN=lume-client" \
  sh -c "openssl x509 -in '$C/client.pem' -noout -subject | grep -q 'CN *= *lume-client'"

# --- plain ----------------------------------------------------------------------
check "a plain broker starts" mosq_start plain
if [ "$(id -u)" -eq 0 ]; then
  check "started as root, the broker runs as user mosquitto" \
    test "$(ps -o user= -p "$plain_PID")" = mosquitto
fi
check "it listens on 127.0.0.1 only" loopback_only "$plain_PID"
check "mosq_sub returns with an active subscription" mosq_sub plain "$T/plain.out" 'a/#'
check "mosq_pub publishes" mosq_pub plain a/1 "hello plain"
check "the message arrives" wait_for 5 grep -qx 'a/1 hello plain' "$T/plain.out"
check "probe messages are kept out of the output file" test "$(wc -l <"$T/plain.out")" -eq 1
check "mosq_stop stops the broker" mosq_stop plain
check "after mosq_stop its port is closed" sh -c "! (exec 3<>/dev/tcp/127.0.0.1/$plain_PORT) 2>/dev/null"

# --- TLS, mutual TLS, websockets -------------------------------------------------
check "a broker with TLS, mutual-TLS, ws and wss listeners starts" mosq_start sec --tls --mtls --ws --wss
check "all its listeners are on 127.0.0.1 only" loopback_only "$sec_PID"
check "five distinct ports" test "$(printf '%s\n' "$sec_PORT" "$sec_TLS_PORT" "$sec_MTLS_PORT" "$sec_WS_PORT" "$sec_WSS_PORT" | sort -u | wc -l)" -eq 5
check "a TLS subscriber verifying with ca.pem subscribes" \
  mosq_sub sec "$T/sec.out" 'sec/#' -h localhost -p "$sec_TLS_PORT" --cafile "$C/ca.pem"
check "TLS publish verifying the server with ca.pem succeeds" \
  "${PUB[@]}" -h localhost -p "$sec_TLS_PORT" --cafile "$C/ca.pem" -t sec/tls -m via-tls
check "the TLS message reaches the TLS subscriber" wait_for 5 grep -qx 'sec/tls via-tls' "$T/sec.out"
"${PUB[@]}" -h localhost -p "$sec_TLS_PORT" --cafile "$C/other-ca.pem" -t sec/wrongca -m bad 2>"$T/wrongca.err"
check "TLS publish verifying with the wrong CA fails" test $? -ne 0
"${PUB[@]}" -h localhost -p "$sec_MTLS_PORT" --cafile "$C/ca.pem" -t sec/nocert -m bad 2>"$T/nocert.err"
check "mutual TLS without a client certificate fails" test $? -ne 0
"${PUB[@]}" -h localhost -p "$sec_MTLS_PORT" --cafile "$C/ca.pem" \
  --cert "$C/other-client.pem" --key "$C/other-client.key" -t sec/othercert -m bad 2>"$T/othercert.err"
check "mutual TLS with a client certificate from another CA fails" test $? -ne 0
check "mutual TLS with client.pem succeeds" \
  "${PUB[@]}" -h localhost -p "$sec_MTLS_PORT" --cafile "$C/ca.pem" \
  --cert "$C/client.pem" --key "$C/client.key" -t sec/mtls -m via-mtls
check "the mutual-TLS message arrives" wait_for 5 grep -qx 'sec/mtls via-mtls' "$T/sec.out"
mosq_pub sec sec/end sentinel
check "a later message arrives" wait_for 5 grep -qx 'sec/end sentinel' "$T/sec.out"
check "... and none of the refused ones did" absent ' bad$' "$T/sec.out"
check "the broker logged the refused client certificate" grep -q 'OpenSSL Error' "$sec_LOG"

check "the ws listener answers a WebSocket upgrade with 101" mosq_ws_handshake "$sec_WS_PORT"
echo "$MOSQ_WS_RESPONSE" | grep -q 'Sec-WebSocket-Protocol: mqtt'
check "... and agrees on the mqtt subprotocol" test $? -eq 0
check "the wss listener answers with 101 over TLS verified with ca.pem" \
  mosq_ws_handshake "$sec_WSS_PORT" "$C/ca.pem"
mosq_ws_handshake "$sec_WSS_PORT" "$C/other-ca.pem"
check "the wss handshake fails when verified with the wrong CA" test $? -ne 0

# restarts on the same ports, with a subscriber connected at each kill
ports_before="$(mosq_ports sec)"
for i in 1 2 3; do
  old=$sec_PID
  mosq_kill sec
  check "restart $i: mosq_restart after SIGKILL succeeds" mosq_restart sec
  check "restart $i: same ports, new PID" test "$(mosq_ports sec)" = "$ports_before" -a "$sec_PID" != "$old"
  check "restart $i: a subscriber connects" mosq_sub sec "$T/r$i.out" 'r/#'
  "${PUB[@]}" -h localhost -p "$sec_TLS_PORT" --cafile "$C/ca.pem" -t r/$i -m "round $i"
  check "restart $i: a TLS message arrives" wait_for 5 grep -qx "r/$i round $i" "$T/r$i.out"
done
check "after the restarts the wss listener still upgrades" mosq_ws_handshake "$sec_WSS_PORT" "$C/ca.pem"

# --- password -------------------------------------------------------------------
check "a broker with a password file starts" mosq_start auth --passwd lume:s3cret
check "mosq_sub passes the credentials" mosq_sub auth "$T/auth.out" 'auth/#'
check "publishing with the right password succeeds" \
  "${PUB[@]}" -h 127.0.0.1 -p "$auth_PORT" -u lume -P s3cret -t auth/ok -m right
check "... and the message arrives" wait_for 5 grep -qx 'auth/ok right' "$T/auth.out"
"${PUB[@]}" -h 127.0.0.1 -p "$auth_PORT" -u lume -P wrong -t auth/bad -m wrong 2>"$T/auth.err"
rc=$?
check "publishing with a wrong password is refused" test $rc -ne 0 -a -n "$(grep -i 'not authori' "$T/auth.err")"
"${PUB[@]}" -h 127.0.0.1 -p "$auth_PORT" -t auth/bad -m anonymous 2>"$T/anon.err"
check "publishing without credentials is refused" test $? -ne 0
mosq_pub auth auth/end sentinel
check "a later message arrives" wait_for 5 grep -qx 'auth/end sentinel' "$T/auth.out"
check "... and none of the refused ones did" absent 'auth/bad' "$T/auth.out"

# --- persistence ----------------------------------------------------------------
# make_session BROKER PORT: an offline clean_session=false QoS 1 subscriber
make_session() { timeout 10 mosquitto_sub -h 127.0.0.1 -p "$2" -c -i lume-persist -q 1 -t 'q/#' -E; }
check "a persistent broker starts" mosq_start pers --persist
check "an offline clean_session=false subscriber is registered" make_session pers "$pers_PORT"
check "a QoS 1 message is published while it is offline" mosq_pub pers q/1 kept-over-stop
check "mosq_restart (SIGTERM, start) succeeds" mosq_restart pers
check "the database was written" test -s "$pers_DIR/data/mosquitto.db"
check "the subscriber reconnects with its session" mosq_sub pers "$T/pers1.out" 'q/#' -c -i lume-persist
check "the queued message survived the restart" wait_for 5 grep -qx 'q/1 kept-over-stop' "$T/pers1.out"
kill "$MOSQ_SUB_PID"; wait "$MOSQ_SUB_PID" 2>/dev/null
check "offline again, another QoS 1 message is published" mosq_pub pers q/2 kept-over-kill
check "mosq_save writes the database" mosq_save pers
mosq_kill pers
check "mosq_restart after SIGKILL succeeds" mosq_restart pers
check "the subscriber reconnects again" mosq_sub pers "$T/pers2.out" 'q/#' -c -i lume-persist
check "a message saved before SIGKILL survived it" wait_for 5 grep -qx 'q/2 kept-over-kill' "$T/pers2.out"
check "the message delivered before is not delivered again" absent 'q/1' "$T/pers2.out"

# the same without --persist: proves the persistence checks can fail
check "a broker without --persist starts" mosq_start vol
check "an offline session is registered on it" make_session vol "$vol_PORT"
mosq_pub vol q/1 lost
mosq_restart vol
check "the subscriber reconnects" mosq_sub vol "$T/vol.out" 'q/#' -c -i lume-persist
check "without --persist the queued message is gone after a restart" absent 'q/1 lost' "$T/vol.out"

mosq_free_port; free=$REPLY
check "mosq_free_port gives a port nothing listens on" sh -c "! (exec 3<>/dev/tcp/127.0.0.1/$free) 2>/dev/null"
check "... and that no broker reuses" sh -c "case ' $(mosq_ports sec) $(mosq_ports auth) $(mosq_ports pers) $(mosq_ports vol) ' in *' $free '*) exit 1;; esac"

# --- error reporting --------------------------------------------------------------
mosq_start broken --conf 'no_such_option 1' 2>"$T/broken.err"
check "a broker that cannot start makes mosq_start fail" test $? -ne 0
check "... and prints the broker's log" grep -q 'no_such_option' "$T/broken.err"
mosq_start bad-name 2>/dev/null
check "a NAME that is no shell identifier is refused" test $? -ne 0
mosq_start sec 2>/dev/null
check "starting a NAME twice is refused" test $? -ne 0

finish
