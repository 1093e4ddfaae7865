#!/usr/bin/env bash
# The broker's name by RFC 6125, against a real mosquitto: for mqtts:// (lume's
# own check, core/net/tls.c) and wss:// (lws's TLS library), a broker reached by IP
# address must carry that address as an iPAddress subjectAltName; a
# certificate whose CN (or dNSName) is "127.0.0.1" is refused by both.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

C=$MOSQ_CERTS
mosq_certs "$C" || exit 1

# A second cert dir: the same CA, a server certificate with CN=127.0.0.1 and
# no subjectAltName at all.
IPCN="$T/ipcn-certs"
mkdir -p "$IPCN" && chmod 755 "$IPCN"
cp "$C/ca.pem" "$C/ca.key" "$IPCN/"
(
  cd "$IPCN" || exit 1
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout server.key -out server.csr -subj "/O=lume tests/CN=127.0.0.1"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 0x77 -days 30 \
    -sha256 -extfile ext -out server.pem
  chmod 0644 server.pem
) >"$T/ipcn-openssl.log" 2>&1 || { echo "# openssl failed:"; sed 's/^/#   /' "$T/ipcn-openssl.log"; exit 1; }
_mosq_key "$IPCN/server.key" "$IPCN/ca.key"

mosq_start good --tls --wss || exit 1
MOSQ_CERTS=$IPCN
mosq_start ipcn --tls --wss || exit 1
MOSQ_CERTS=$C
mosq_sub good "$T/good.out" 'lume/#'

# refused NAME NETLUA PATTERN: lume logs PATTERN, keeps its messages, sends nothing
refused() {
  local name=$1 net=$2 pat=$3
  local d="$T/$name"
  net_device "$d" "$net, backoff_min_ms = 100, backoff_max_ms = 400, connect_timeout_ms = 3000"
  start_bg "$name" "$LUME" run --config "$d/lume.conf.lua"
  local pid=$LAST_PID
  check "$name: refused, the log names the cause" wait_for 15 grep -Eq "$pat" "$T/$name.err"
  check "$name: never connected" sh -c "! grep -q 'mqtt: connected to' '$T/$name.err'"
  check "$name: messages wait in the outbox" wait_for 5 sh -c "'$LUME' outbox stats --store '$d/var' | grep -Eq '^telemetry +[1-9]'"
  kill -TERM "$pid"; wait "$pid"
}

refused mqtts-ip-in-cn "url = 'mqtts://127.0.0.1:$ipcn_TLS_PORT', ca_file = '$IPCN/ca.pem'" \
  "TLS handshake with 127.0.0.1:$ipcn_TLS_PORT failed: certificate verify failed: name does not match: 127.0.0.1 is an IP address.*CN=\"127.0.0.1\" \(not used"
refused wss-ip-in-cn "url = 'wss://127.0.0.1:$ipcn_WSS_PORT/mqtt', ca_file = '$IPCN/ca.pem'" \
  "SSL error: IP address mismatch"

# and the IP in an iPAddress subjectAltName works over both
net_device "$T/ipsan" "url = 'mqtts://127.0.0.1:$good_TLS_PORT', ca_file = '$C/ca.pem'"
start_bg ipsan "$LUME" run --config "$T/ipsan/lume.conf.lua"; PID=$LAST_PID
check "mqtts://127.0.0.1 with an iPAddress SAN connects" wait_for 10 grep -q "^lume/ipsan/telemetry/hello hello 2$" "$T/good.out"
kill -TERM "$PID"; wait "$PID"
net_device "$T/ipsanwss" "url = 'wss://127.0.0.1:$good_WSS_PORT/mqtt', ca_file = '$C/ca.pem'"
start_bg ipsanwss "$LUME" run --config "$T/ipsanwss/lume.conf.lua"; PID=$LAST_PID
check "wss://127.0.0.1 with an iPAddress SAN connects" wait_for 10 grep -q "^lume/ipsanwss/telemetry/hello hello 2$" "$T/good.out"
kill -TERM "$PID"; wait "$PID"

finish
