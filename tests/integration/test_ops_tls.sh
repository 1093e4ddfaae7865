#!/usr/bin/env bash
# The operator commands take every net.* setting of --config, as `lume run`
# does (one mapping, lume_mqtt_opts_from_config): against a real mosquitto
# over mqtts://, a config whose net.tls_min_version or net.ciphers cannot
# work makes `lume twin get` fail, naming why, where the same config
# without them works. (Before, the operator commands dropped both.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

C=$MOSQ_CERTS
mosq_certs "$C" || exit 1
mosq_start tls --tls || exit 1
URL="mqtts://localhost:$tls_TLS_PORT"

# conf NAME EXTRA: a config in $T/NAME.conf.lua with net = { url, ca_file, EXTRA }
conf() {
  cat >"$T/$1.conf.lua" <<EOC
return {
  device_id = "ops-tls",
  boards_dir = "$ROOT/boards",
  stdlib_dir = "$ROOT/stdlib",
  store = "$T/var",
  net = { url = "$URL", ca_file = "$C/ca.pem", connect_timeout_ms = 3000$2 },
}
EOC
}

# twin_get NAME: lume twin get with that config; exit code in RC, output in $T/NAME.out
twin_get() {
  timeout 60 "$LUME" twin get --device ops-tls --config "$T/$1.conf.lua" >"$T/$1.out" 2>&1
  RC=$?
}

conf plain ""
twin_get plain
check "twin get over mqtts:// with the CA from --config works (exit 0)" [ "$RC" = 0 ]

# the broker's certificate is ECDSA (P-256): an RSA-only suite cannot be agreed
conf rsa ", ciphers = 'TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256'"
twin_get rsa
check "net.ciphers from --config is applied: an RSA-only suite fails (exit 1)" [ "$RC" = 1 ]
check "... and the error is the TLS handshake's" grep -Eqi "handshake|cipher" "$T/rsa.out"

conf ecdsa ", ciphers = 'TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256'"
twin_get ecdsa
check "an ECDSA suite in net.ciphers works (exit 0)" [ "$RC" = 0 ]

conf unknown ", ciphers = 'TLS-NO-SUCH-SUITE'"
twin_get unknown
check "an unknown suite in net.ciphers is named (exit 1)" \
  sh -c "[ $RC = 1 ] && grep -q 'unknown cipher suite \"TLS-NO-SUCH-SUITE\"' '$T/unknown.out'"

# TLS 1.3: mbedtls 2.x has none, so lume refuses it by name; a newer
# mbedtls may speak it (as mosquitto does), and then it works
conf v13 ", tls_min_version = '1.3'"
twin_get v13
major=$(sed -n 's/^#define MBEDTLS_VERSION_MAJOR *\([0-9]*\).*/\1/p' /usr/include/mbedtls/version.h \
  /usr/include/mbedtls/build_info.h 2>/dev/null | head -1)
if [ "${major:-2}" -lt 3 ]; then
  check "net.tls_min_version = '1.3' from --config is applied: refused naming TLS 1.3 (exit 1)" \
    sh -c "[ $RC = 1 ] && grep -q 'has no TLS 1.3' '$T/v13.out'"
else
  check "net.tls_min_version = '1.3' from --config: refused by name or connects" \
    sh -c "[ $RC = 0 ] || grep -q 'has no TLS 1.3' '$T/v13.out'"
fi
for f in plain rsa ecdsa unknown v13; do echo "# $f: $(head -c 300 "$T/$f.out" | tr '\n' ' ')"; done

finish
