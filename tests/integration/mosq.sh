# tests/integration/mosq.sh — real mosquitto brokers for integration tests.
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/mosq.sh"
#   mosq_start hub --tls --passwd dev:secret || exit 1
#   mosq_sub hub "$T/hub.out" 'lume/#'
#   ... lume connects to 127.0.0.1:$hub_TLS_PORT with --cafile $MOSQ_CERTS/ca.pem
#   check "telemetry arrives" wait_for 10 grep -q '^lume/dev1/telemetry ' "$T/hub.out"
#
# Every broker is a foreground `mosquitto -c FILE` started as a background job
# of the test shell, its PID added to lib.sh's PIDS (killed on exit), its files
# under $T (removed on exit). Listeners bind 127.0.0.1 only, on free ports
# picked at random below the kernel's ephemeral range; a start that loses a
# port race is retried on new ports. Call these functions from the test's own
# shell (not inside $(...) or a pipeline): they set variables and track PIDs.
# Each returns 0 on success; on failure it prints why on stderr as "# ..."
# lines (TAP diagnostics, with the broker log when there is one) and returns
# non-zero.
#
# mosq_certs DIR
#   Makes DIR (mode 755) with, from the openssl CLI, EC P-256 keys and
#   SHA-256 certificates valid for 10 years:
#     ca.pem ca.key             the test CA ("lume test CA")
#     server.pem server.key     CN=localhost, SAN DNS:localhost, IP:127.0.0.1,
#                               serverAuth, signed by ca
#     client.pem client.key     CN=lume-client, clientAuth, signed by ca
#     other-ca.pem other-ca.key an unrelated CA ("lume other CA")
#     other-client.pem/.key     CN=lume-client, signed by other-ca
#   Certificates 0644; keys 0640 group mosquitto when run as root (the broker
#   drops to that user), else 0600. Keys are PKCS#8 PEM (OpenSSL and
#   mbedtls both read them). Does nothing if DIR/ca.pem already exists.
#   mosq_start uses $MOSQ_CERTS (default $T/certs), made on first need.
#
# mosq_start NAME [options]
#   Writes $T/mosq-NAME/mosquitto.conf and starts the broker; returns once it
#   logged "running" and every listener accepts TCP connections (at most
#   ~10 s). NAME must be a shell identifier. Always a plain MQTT listener;
#   options add to it:
#     --tls               TLS listener, server.pem/server.key
#     --mtls              another TLS listener that also requires a client
#                         certificate signed by ca.pem (require_certificate)
#     --ws                websockets listener (plain)
#     --wss               websockets listener over TLS, server.pem/server.key
#     --passwd USER:PASS  password_file from mosquitto_passwd -b -c, and
#                         allow_anonymous false (on every listener); mosq_pub
#                         and mosq_sub then pass -u/-P
#     --persist           persistence true in $T/mosq-NAME/data/, autosave
#                         every second; sessions and queued QoS 1 messages
#                         survive mosq_stop/mosq_restart (and mosq_kill after
#                         mosq_save)
#     --max-inflight N    max_inflight_messages N
#     --max-queued N      max_queued_messages N
#     --conf 'LINE'       a raw global config line (before the listeners);
#                         repeatable, e.g. --conf 'max_keepalive 10'
#     --verbose           log_type all (every packet in the log)
#   Sets (and exports):
#     NAME_PORT           plain MQTT port        NAME_PID  broker PID
#     NAME_TLS_PORT       --tls                  NAME_LOG  broker log (stderr;
#     NAME_MTLS_PORT      --mtls                           appended on restart)
#     NAME_WS_PORT        --ws                   NAME_DIR  its directory
#     NAME_WSS_PORT       --wss                  NAME_CERTS  the cert dir
#     NAME_USER NAME_PASS --passwd (else empty)
#   Ports of listeners not asked for are empty.
#
# mosq_stop NAME       SIGTERM, wait for exit (SIGKILL after 10 s); with
#                      --persist the database is written on the way out.
# mosq_kill NAME       SIGKILL and reap: a crash, nothing saved since the last
#                      autosave/mosq_save.
# mosq_restart NAME    stop it if running (SIGTERM), then start it again with
#                      the same config and the same ports, retrying for up to
#                      ~10 s while a port cannot be bound yet. Updates NAME_PID.
# mosq_ports NAME      prints the broker's ports (plain first), space-separated.
# mosq_free_port       a free 127.0.0.1 port in REPLY, reserved for this test
#                      (never handed to a broker), e.g. for "connection
#                      refused" tests. (_mosq_pick_port is the same thing.)
# mosq_save NAME       (--persist) SIGUSR1: make the broker write its database
#                      now, and wait until the new file is in place.
#
# mosq_sub NAME OUTFILE TOPIC [mosquitto_sub args...]
#   Background `mosquitto_sub -h 127.0.0.1 -p NAME_PORT -v -q 1 -t TOPIC`
#   (plus -u/-P with --passwd) writing "topic payload" lines to OUTFILE.
#   Returns once the subscription is active: it also subscribes to a private
#   probe topic and publishes probes until one comes back. Probe lines never
#   reach OUTFILE (lines containing the probe token are dropped; mind that
#   with -C, which counts them). Extra args go last, so they override
#   (-p "$NAME_TLS_PORT" --cafile ..., -c -i ID, -q 0, more -t ...).
#   Sets MOSQ_SUB_PID (= LAST_PID), registered in PIDS; the client's stderr is
#   in OUTFILE.err. Stop it early with `kill $MOSQ_SUB_PID` (a clean
#   disconnect: a -c session stays on the broker).
#
# mosq_pub NAME TOPIC MESSAGE [mosquitto_pub args...]
#   `mosquitto_pub -h 127.0.0.1 -p NAME_PORT -q 1 -t TOPIC -m MESSAGE` (plus
#   -u/-P with --passwd), extra args last; its exit status (killed after 20 s).
#
# mosq_ws_handshake PORT [CAFILE]
#   Sends a minimal WebSocket upgrade (Sec-WebSocket-Protocol: mqtt) to
#   127.0.0.1:PORT — over TLS checked against CAFILE (SNI localhost) when
#   given — and succeeds when the answer is "HTTP/1.1 101" with the right
#   Sec-WebSocket-Accept. The response headers are left in MOSQ_WS_RESPONSE.
#
# Facts about Debian 12's mosquitto 2.0.11 this file relies on: a websockets
# listener only opens next to a plain one; it binds every interface unless
# `socket_domain ipv4` is set on it; `#` never matches `$...` topics; started
# as root it drops to the `mosquitto` user, so everything it reads must be
# readable by that user (and $T traversable: this file chmods $T to 755).

MOSQ_CERTS=${MOSQ_CERTS:-$T/certs}
chmod 755 "$T"
_MOSQ_TAKEN=" "       # ports handed out by this shell (kept while stopped)
_MOSQ_NAMES=" "

_mosq_diag() { local l; for l in "$@"; do echo "# mosq: $l" >&2; done; }

# True when mosquitto will drop privileges to the `mosquitto` user.
_mosq_drops() { [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; }

# _mosq_key FILE...: private files the broker must read.
_mosq_key() {
  if _mosq_drops; then chgrp mosquitto "$@" && chmod 0640 "$@"; else chmod 0600 "$@"; fi
}

_mosq_alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)
  [ "$st" != Z ]
}

_mosq_forget_pid() {
  local i
  for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$1" ] && unset "PIDS[$i]"; done
}

_mosq_port_busy() {
  case "$_MOSQ_TAKEN" in *" $1 "*) return 0 ;; esac
  if command -v ss >/dev/null 2>&1; then
    # any TCP socket on it, listening or not (TIME_WAIT included)
    [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ] && return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# _mosq_pick_port: a free port in REPLY (20000 .. below the ephemeral range).
_mosq_pick_port() {
  local lo=20000 hi=32767 eph p i
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph=32768
  [ "$eph" -gt $((lo + 2000)) ] && hi=$((eph - 1))
  for i in $(seq 200); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    if ! _mosq_port_busy "$p"; then _MOSQ_TAKEN+="$p "; REPLY=$p; return 0; fi
  done
  _mosq_diag "no free port found in $lo-$hi"
  return 1
}

mosq_free_port() { _mosq_pick_port; }

_mosq_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mosq_certs() {
  local d=${1:?usage: mosq_certs DIR} rc
  [ -s "$d/ca.pem" ] && return 0
  mkdir -p "$d" && chmod 755 "$d" || return 1
  (
    set -e
    cd "$d"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    ca() { # NAME CN
      openssl req -x509 "${ec[@]}" -keyout "$1.key" -out "$1.pem" -days 3650 -sha256 \
        -subj "/O=lume tests/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    }
    leaf() { # NAME CA CN EXTENSIONS
      openssl req -new "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "/O=lume tests/CN=$3"
      printf '%b' "$4" >.ext
      openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 3650 -sha256 \
        -extfile .ext -out "$1.pem"
      rm -f "$1.csr" .ext
    }
    ca ca "lume test CA"
    ca other-ca "lume other CA"
    leaf server ca localhost "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    leaf client ca lume-client "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    leaf other-client other-ca lume-client "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    chmod 0644 ./*.pem
  ) >"$d/openssl.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    _mosq_diag "openssl failed making certificates in $d:"
    sed 's/^/#   /' "$d/openssl.log" >&2
    rm -f "$d/ca.pem"
    return 1
  fi
  _mosq_key "$d"/*.key
}

# _mosq_check_access FILE... (DIR/ for a directory it must write): checked as
# the user mosquitto will run as, so a mode problem is named, not guessed.
_mosq_check_access() {
  _mosq_drops || return 0
  command -v runuser >/dev/null 2>&1 || return 0
  local bad
  bad=$(runuser -u mosquitto -- sh -c '
    for f; do
      case $f in */) test -w "$f" -a -x "$f" || echo "$f (not writable)" ;;
                 *) test -r "$f" || echo "$f (not readable)" ;; esac
    done' sh "$@" 2>&1)
  [ -z "$bad" ] && return 0
  local lines
  mapfile -t lines <<<"$bad"
  _mosq_diag "the broker runs as user mosquitto and cannot use:" "${lines[@]/#/  }" \
    "(are all parent directories of \$T traversable? TMPDIR=${TMPDIR:-/tmp})"
  return 1
}

# _mosq_write_conf NAME: the config from the NAME_* variables and options.
_mosq_write_conf() {
  local n=$1 dir certs
  dir="${n}_DIR"; dir=${!dir}
  certs="${n}_CERTS"; certs=${!certs}
  local p tls mtls ws wss
  p="${n}_PORT"; p=${!p}
  tls="${n}_TLS_PORT"; tls=${!tls}
  mtls="${n}_MTLS_PORT"; mtls=${!mtls}
  ws="${n}_WS_PORT"; ws=${!ws}
  wss="${n}_WSS_PORT"; wss=${!wss}
  local -n o="_MOSQ_OPTS_$n"
  {
    echo "# written by tests/integration/mosq.sh for broker '$n'"
    echo "per_listener_settings false"
    echo "log_dest stderr"
    if [ -n "${o[verbose]:-}" ]; then echo "log_type all"
    else printf 'log_type %s\n' error warning notice information subscribe unsubscribe; fi
    echo "connection_messages true"
    echo "log_timestamp_format %Y-%m-%dT%H:%M:%S"
    if [ -n "${o[passwd]:-}" ]; then
      echo "allow_anonymous false"
      echo "password_file $dir/passwd"
    else
      echo "allow_anonymous true"
    fi
    if [ -n "${o[persist]:-}" ]; then
      echo "persistence true"
      echo "persistence_location $dir/data/"
      echo "persistence_file mosquitto.db"
      echo "autosave_interval 1"
    fi
    [ -n "${o[inflight]:-}" ] && echo "max_inflight_messages ${o[inflight]}"
    [ -n "${o[queued]:-}" ] && echo "max_queued_messages ${o[queued]}"
    [ -n "${o[conf]:-}" ] && printf '%s' "${o[conf]}"
    printf '\nlistener %s 127.0.0.1\nsocket_domain ipv4\n' "$p"
    [ -n "$tls" ] && printf '\nlistener %s 127.0.0.1\nsocket_domain ipv4\ncertfile %s\nkeyfile %s\n' \
      "$tls" "$certs/server.pem" "$certs/server.key"
    [ -n "$mtls" ] && printf '\nlistener %s 127.0.0.1\nsocket_domain ipv4\ncertfile %s\nkeyfile %s\ncafile %s\nrequire_certificate true\n' \
      "$mtls" "$certs/server.pem" "$certs/server.key" "$certs/ca.pem"
    [ -n "$ws" ] && printf '\nlistener %s 127.0.0.1\nsocket_domain ipv4\nprotocol websockets\n' "$ws"
    [ -n "$wss" ] && printf '\nlistener %s 127.0.0.1\nsocket_domain ipv4\nprotocol websockets\ncertfile %s\nkeyfile %s\n' \
      "$wss" "$certs/server.pem" "$certs/server.key"
    true
  } >"$dir/mosquitto.conf"
  chmod 0644 "$dir/mosquitto.conf"
}

mosq_ports() { # NAME: its ports, space-separated
  local v out=""
  for v in PORT TLS_PORT MTLS_PORT WS_PORT WSS_PORT; do
    v="${1}_$v"; [ -n "${!v}" ] && out+="${!v} "
  done
  echo "$out"
}

# _mosq_launch NAME: start mosquitto with its config; 0 when running and every
# port accepts, 2 when it exited failing to bind a port, 1 otherwise.
_mosq_launch() {
  local n=$1 dir log pid off end p
  dir="${n}_DIR"; dir=${!dir}
  log="$dir/mosquitto.log"
  touch "$log"
  off=$(stat -c %s "$log")
  mosquitto -c "$dir/mosquitto.conf" >>"$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  printf -v "${n}_PID" %s "$pid"; export "${n}_PID"
  _broker_wait "$n" "$pid" "$log" "$off" 'mosquitto version .* running' \
    'Address already in use|ERROR on binding|Unable to create websockets listener' 10
}

# _broker_wait NAME PID LOG OFF READY-REGEX BIND-REGEX SECS: wait until the
# broker's log (past byte OFF) says READY and every port of NAME accepts
# TCP connections: 0; 2 when it exited and the log matches BIND (lost a port
# race); 1 otherwise (killed after SECS). _MOSQ_RUNLOG: the log of this run.
_broker_wait() {
  local n=$1 pid=$2 log=$3 off=$4 ready=$5 bind=$6 secs=$7 end p
  _MOSQ_RUNLOG=""
  end=$((SECONDS + secs))
  while :; do
    _MOSQ_RUNLOG=$(tail -c +$((off + 1)) "$log")
    if ! _mosq_alive "$pid"; then
      wait "$pid" 2>/dev/null
      _mosq_forget_pid "$pid"
      printf -v "${n}_PID" %s ""
      _MOSQ_RUNLOG=$(tail -c +$((off + 1)) "$log")
      grep -Eqi "$bind" <<<"$_MOSQ_RUNLOG" && return 2
      return 1
    fi
    grep -Eq "$ready" <<<"$_MOSQ_RUNLOG" && break
    if [ $SECONDS -ge $end ]; then
      _MOSQ_RUNLOG+=$'\n'"(mosq.sh: not ready after $secs s; killed)"
      kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      _mosq_forget_pid "$pid"
      printf -v "${n}_PID" %s ""
      return 1
    fi
    sleep 0.05
  done
  for p in $(mosq_ports "$n"); do
    if ! wait_for 10 _mosq_port_open "$p"; then
      _MOSQ_RUNLOG+=$'\n'"(mosq.sh: port $p does not accept connections)"
      kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      _mosq_forget_pid "$pid"
      printf -v "${n}_PID" %s ""
      return 1
    fi
  done
  return 0
}

_mosq_fail_log() { # NAME WHAT
  local log="${1}_LOG"
  _mosq_diag "$2; broker log (${!log}):"
  sed 's/^/#   /' <<<"$_MOSQ_RUNLOG" >&2
}

mosq_start() {
  local n=${1:?usage: mosq_start NAME [options]}; shift
  if ! [[ $n =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then _mosq_diag "bad broker name '$n'"; return 1; fi
  case "$_MOSQ_NAMES" in *" $n "*) _mosq_diag "broker '$n' was already started"; return 1 ;; esac
  unset "_MOSQ_OPTS_$n"
  declare -gA "_MOSQ_OPTS_$n"
  local -n o="_MOSQ_OPTS_$n"
  local want_tls="" want_mtls="" want_ws="" want_wss=""
  while [ $# -gt 0 ]; do
    case $1 in
      --tls) want_tls=1 ;;
      --mtls) want_mtls=1 ;;
      --ws) want_ws=1 ;;
      --wss) want_wss=1 ;;
      --persist) o[persist]=1 ;;
      --verbose) o[verbose]=1 ;;
      --passwd|--max-inflight|--max-queued|--conf)
        if [ $# -lt 2 ]; then _mosq_diag "$1 needs a value"; return 1; fi
        case $1 in
          --passwd)
            case $2 in *:*) ;; *) _mosq_diag "--passwd wants USER:PASS"; return 1 ;; esac
            o[passwd]=$2 ;;
          --max-inflight) o[inflight]=$2 ;;
          --max-queued) o[queued]=$2 ;;
          --conf) o[conf]+="$2"$'\n' ;;
        esac
        shift ;;
      *) _mosq_diag "mosq_start: unknown option '$1'"; return 1 ;;
    esac
    shift
  done

  local dir="$T/mosq-$n" certs=$MOSQ_CERTS
  mkdir -p "$dir" && chmod 755 "$dir" || return 1
  printf -v "${n}_DIR" %s "$dir"
  printf -v "${n}_LOG" %s "$dir/mosquitto.log"
  printf -v "${n}_CERTS" %s "$certs"
  printf -v "${n}_USER" %s ""
  printf -v "${n}_PASS" %s ""
  printf -v "${n}_PID" %s ""
  export "${n}_DIR" "${n}_LOG" "${n}_CERTS" "${n}_USER" "${n}_PASS" "${n}_PID"
  local need=("$dir/mosquitto.conf")
  if [ -n "$want_tls$want_mtls$want_wss" ]; then
    mosq_certs "$certs" || return 1
    need+=("$certs/server.pem" "$certs/server.key" "$certs/ca.pem")
  fi
  if [ -n "${o[passwd]:-}" ]; then
    printf -v "${n}_USER" %s "${o[passwd]%%:*}"
    printf -v "${n}_PASS" %s "${o[passwd]#*:}"
    rm -f "$dir/passwd"
    if ! mosquitto_passwd -b -c "$dir/passwd" "${o[passwd]%%:*}" "${o[passwd]#*:}" >"$dir/passwd.log" 2>&1; then
      _mosq_diag "mosquitto_passwd failed:"; sed 's/^/#   /' "$dir/passwd.log" >&2
      return 1
    fi
    _mosq_key "$dir/passwd"
    need+=("$dir/passwd")
  fi
  if [ -n "${o[persist]:-}" ]; then
    mkdir -p "$dir/data"
    if _mosq_drops; then chown mosquitto:mosquitto "$dir/data"; fi
    chmod 0700 "$dir/data"
    need+=("$dir/data/")
  fi
  : >"$dir/mosquitto.log"

  local attempt v rc
  for attempt in 1 2 3 4 5; do
    for v in PORT TLS_PORT MTLS_PORT WS_PORT WSS_PORT; do printf -v "${n}_$v" %s ""; done
    _mosq_pick_port || return 1; printf -v "${n}_PORT" %s "$REPLY"
    if [ -n "$want_tls" ]; then _mosq_pick_port || return 1; printf -v "${n}_TLS_PORT" %s "$REPLY"; fi
    if [ -n "$want_mtls" ]; then _mosq_pick_port || return 1; printf -v "${n}_MTLS_PORT" %s "$REPLY"; fi
    if [ -n "$want_ws" ]; then _mosq_pick_port || return 1; printf -v "${n}_WS_PORT" %s "$REPLY"; fi
    if [ -n "$want_wss" ]; then _mosq_pick_port || return 1; printf -v "${n}_WSS_PORT" %s "$REPLY"; fi
    export "${n}_PORT" "${n}_TLS_PORT" "${n}_MTLS_PORT" "${n}_WS_PORT" "${n}_WSS_PORT"
    _mosq_write_conf "$n"
    if [ "$attempt" -eq 1 ]; then _mosq_check_access "${need[@]}" || return 1; fi
    _mosq_launch "$n"; rc=$?
    if [ $rc -eq 0 ]; then _MOSQ_NAMES+="$n "; return 0; fi
    [ $rc -eq 2 ] || break
    echo "# mosq: broker '$n' lost a port race, retrying on other ports" >&2
  done
  _mosq_fail_log "$n" "broker '$n' did not start"
  return 1
}

_mosq_known() {
  case "$_MOSQ_NAMES" in *" $1 "*) return 0 ;; esac
  _mosq_diag "no broker named '$1' (mosq_start it first)"
  return 1
}

mosq_stop() {
  local n=${1:?usage: mosq_stop NAME} pid end
  _mosq_known "$n" || return 1
  pid="${n}_PID"; pid=${!pid}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  end=$((SECONDS + 10))
  while _mosq_alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.05; done
  if _mosq_alive "$pid"; then
    _mosq_diag "broker '$n' ignored SIGTERM for 10 s; killing it"
    kill -9 "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  _mosq_forget_pid "$pid"
  printf -v "${n}_PID" %s ""
  return 0
}

mosq_kill() {
  local n=${1:?usage: mosq_kill NAME} pid
  _mosq_known "$n" || return 1
  pid="${n}_PID"; pid=${!pid}
  [ -n "$pid" ] || return 0
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  _mosq_forget_pid "$pid"
  printf -v "${n}_PID" %s ""
  return 0
}

mosq_restart() {
  local n=${1:?usage: mosq_restart NAME} pid end rc
  _mosq_known "$n" || return 1
  pid="${n}_PID"; pid=${!pid}
  [ -n "$pid" ] && { mosq_stop "$n" || return 1; }
  end=$((SECONDS + 10))
  while :; do
    _mosq_launch "$n"; rc=$?
    [ $rc -eq 0 ] && return 0
    [ $rc -eq 2 ] && [ $SECONDS -lt $end ] || break
    sleep 0.2
  done
  _mosq_fail_log "$n" "broker '$n' did not restart on ports $(mosq_ports "$n")"
  return 1
}

mosq_save() {
  local n=${1:?usage: mosq_save NAME} pid db before end
  _mosq_known "$n" || return 1
  local -n o="_MOSQ_OPTS_$n"
  if [ -z "${o[persist]:-}" ]; then _mosq_diag "broker '$n' has no --persist"; return 1; fi
  pid="${n}_PID"; pid=${!pid}
  db="${n}_DIR"; db="${!db}/data/mosquitto.db"
  before=$(stat -c %i "$db" 2>/dev/null)
  kill -USR1 "$pid" || return 1
  # mosquitto writes mosquitto.db.new and renames it: a new inode each save
  end=$((SECONDS + 10))
  while [ $SECONDS -lt $end ]; do
    [ -e "$db" ] && [ "$(stat -c %i "$db" 2>/dev/null)" != "$before" ] && return 0
    sleep 0.05
  done
  _mosq_diag "broker '$n' did not write $db after SIGUSR1"
  return 1
}

_mosq_auth() { # NAME: sets _MOSQ_AUTH (array) to -u/-P when --passwd
  local u p
  u="${1}_USER"; u=${!u}; p="${1}_PASS"; p=${!p}
  _MOSQ_AUTH=()
  [ -n "$u" ] && _MOSQ_AUTH=(-u "$u" -P "$p")
  return 0
}

mosq_pub() {
  if [ $# -lt 3 ]; then _mosq_diag "usage: mosq_pub NAME TOPIC MESSAGE [args...]"; return 2; fi
  local n=$1 topic=$2 msg=$3 port; shift 3
  _mosq_known "$n" || return 2
  port="${n}_PORT"; port=${!port}
  _mosq_auth "$n"
  timeout 20 mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 "${_MOSQ_AUTH[@]}" -t "$topic" -m "$msg" "$@"
}

_mosq_filter() { # TOKEN MARKFILE: stdin to stdout without lines holding TOKEN
  local line seen=""
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      *"$1"*) [ -n "$seen" ] || { : >"$2"; seen=1; } ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

mosq_sub() {
  if [ $# -lt 3 ]; then _mosq_diag "usage: mosq_sub NAME OUTFILE TOPIC [args...]"; return 2; fi
  local n=$1 out=$2 topic=$3 port tok ptopic mark pid end next
  shift 3
  _mosq_known "$n" || return 1
  port="${n}_PORT"; port=${!port}
  _mosq_auth "$n"
  tok="lume-probe-$$-$RANDOM$RANDOM"
  ptopic="lume-probe/$tok"
  mark="$T/.$tok.seen"
  # a bash loop (mawk would block-buffer its input) drops probe lines, notes
  # the first one, and writes every other line as soon as it arrives
  mosquitto_sub -h 127.0.0.1 -p "$port" -v -q 1 "${_MOSQ_AUTH[@]}" -t "$topic" -t "$ptopic" "$@" \
    2>"$out.err" > >(_mosq_filter "$tok" "$mark" >"$out") &
  pid=$!
  PIDS+=("$pid")
  MOSQ_SUB_PID=$pid
  LAST_PID=$pid
  end=$((SECONDS + 10))
  next=0
  while [ ! -e "$mark" ]; do
    if ! _mosq_alive "$pid"; then
      wait "$pid" 2>/dev/null
      _mosq_diag "mosquitto_sub on broker '$n' exited:"
      sed 's/^/#   /' "$out.err" >&2
      return 1
    fi
    if [ $SECONDS -ge $end ]; then
      _mosq_diag "mosquitto_sub on broker '$n' got no probe back in 10 s:"
      sed 's/^/#   /' "$out.err" >&2
      return 1
    fi
    # a probe every ~0.2 s; QoS 0 so a missed one costs nothing
    if [ $next -eq 0 ]; then
      timeout 5 mosquitto_pub -h 127.0.0.1 -p "$port" -q 0 "${_MOSQ_AUTH[@]}" -t "$ptopic" -m "$tok" \
        2>>"$out.err"
      next=4
    fi
    next=$((next - 1))
    sleep 0.05
  done
  rm -f "$mark"
  return 0
}

mosq_ws_handshake() {
  local port=${1:?usage: mosq_ws_handshake PORT [CAFILE]} ca=${2:-} req line got="" fd end
  local key="dGhlIHNhbXBsZSBub25jZQ==" accept="s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" # RFC 6455 1.3
  req=$'GET /mqtt HTTP/1.1\r\nHost: localhost:'"$port"$'\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
  req+="Sec-WebSocket-Key: $key"$'\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n'
  MOSQ_WS_RESPONSE=""
  if [ -z "$ca" ]; then
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf '%s' "$req" >&$fd
    while IFS= read -r -t 5 line <&$fd; do
      line=${line%$'\r'}
      [ -z "$line" ] && break
      got+="$line"$'\n'
    done
    exec {fd}>&-
  else
    local co_pid
    coproc _MOSQ_WSS { exec openssl s_client -connect "127.0.0.1:$port" -servername localhost \
      -CAfile "$ca" -verify_return_error -quiet 2>&1; }
    co_pid=$_MOSQ_WSS_PID
    printf '%s' "$req" >&"${_MOSQ_WSS[1]}"
    end=$((SECONDS + 5))
    while [ $SECONDS -lt $end ] && IFS= read -r -t 5 line <&"${_MOSQ_WSS[0]}"; do
      line=${line%$'\r'}
      got+="$line"$'\n'
      case $got in *HTTP/1.1*) [ -z "$line" ] && break ;; esac
    done
    kill "$co_pid" 2>/dev/null
    wait "$co_pid" 2>/dev/null
  fi
  MOSQ_WS_RESPONSE=$got
  grep -q '^HTTP/1.1 101' <<<"$got" && grep -qi "^Sec-WebSocket-Accept: $accept\$" <<<"$got"
}

# The broker is a parameter: LUME_TEST_BROKER=mosquitto|rabbitmq|aedes
# (brokers.sh: the same functions start that broker instead).
. "$(dirname "${BASH_SOURCE[0]}")/brokers.sh"
