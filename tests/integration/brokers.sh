# tests/integration/brokers.sh — the broker under test is a parameter:
#
#   LUME_TEST_BROKER=mosquitto (default) | rabbitmq | aedes
#
# Sourced by mosq.sh. With mosquitto nothing changes. With another broker,
# mosq_start / mosq_stop / mosq_kill / mosq_restart / mosq_sub / mosq_pub
# keep their interface (NAME_PORT, NAME_PID, NAME_LOG, ...; mosquitto_pub
# and mosquitto_sub stay the test's clients) but start that broker instead:
#
#   aedes     node tests/brokers/aedes/server.js (make deps-node installs it):
#             aedes with aedes-persistence in memory; plain, --tls, --mtls,
#             --ws, --wss and --passwd listeners. Everything it holds
#             (retained messages, sessions) is gone after a stop.
#   rabbitmq  Debian's rabbitmq-server with the rabbitmq_mqtt plugin (and
#             rabbitmq_web_mqtt for --ws/--wss), run from
#             /usr/lib/rabbitmq/bin as this user, its own node name, config,
#             database, cookie ($HOME) and logs under NAME_DIR, its own epmd
#             on a free port (started here, its PID tracked), the Erlang
#             distribution and every listener on 127.0.0.1, AMQP off. It
#             touches nothing global. Retained messages and sessions are in
#             its database: they survive a restart (as mosquitto --persist).
#             Not supported: --mtls (its TLS options are one set for every
#             MQTT listener), --max-inflight/--max-queued/--conf/--verbose
#             (mosquitto's own settings: ignored).
#
# broker_can FEATURE  (tls mtls ws wss passwd persist): whether the broker
# under test offers it; a test skips what its broker lacks with `skip`
# (lib.sh), so the same test runs against each broker.
# docs/brokers.md says what differs between the brokers and why.

LUME_TEST_BROKER=${LUME_TEST_BROKER:-mosquitto}
export LUME_TEST_BROKER

broker_can() {
  case "$LUME_TEST_BROKER:$1" in
    mosquitto:*) return 0 ;;
    aedes:tls|aedes:mtls|aedes:ws|aedes:wss|aedes:passwd) return 0 ;;
    rabbitmq:tls|rabbitmq:ws|rabbitmq:wss|rabbitmq:passwd|rabbitmq:persist) return 0 ;;
    *) return 1 ;;
  esac
}

case "$LUME_TEST_BROKER" in
  mosquitto) ;;
  aedes)
    if [ ! -e "$ROOT/tests/brokers/aedes/node_modules/aedes" ]; then
      echo "# LUME_TEST_BROKER=aedes: tests/brokers/aedes is not installed (make deps-node)" >&2
      exit 1
    fi ;;
  rabbitmq)
    if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || ! command -v epmd >/dev/null; then
      echo "# LUME_TEST_BROKER=rabbitmq: rabbitmq-server is not installed (make deps-interop)" >&2
      exit 1
    fi ;;
  *) echo "# LUME_TEST_BROKER=$LUME_TEST_BROKER: expected mosquitto, rabbitmq or aedes" >&2; exit 1 ;;
esac

if [ "$LUME_TEST_BROKER" != mosquitto ]; then

# the broker's files need no other user: it runs as this one
_mosq_check_access() { return 0; }

# mosq_save: aedes holds everything in memory, rabbitmq writes as it goes
mosq_save() { _mosq_known "$1"; }

_broker_opt() { # NAME OPTION: the option's value (or 1) when mosq_start had it
  local -n _o="_MOSQ_OPTS_$1"
  printf '%s' "${_o[$2]:-}"
}

_mosq_write_conf() {
  local n=$1 dir certs
  dir="${n}_DIR"; dir=${!dir}
  certs="${n}_CERTS"; certs=${!certs}
  local v
  for v in MTLS_PORT; do
    v="${n}_$v"
    if [ -n "${!v}" ] && ! broker_can mtls; then
      _mosq_diag "$LUME_TEST_BROKER has no --mtls listener here (docs/brokers.md)"
      printf -v "$v" %s ""
    fi
  done
  [ "$LUME_TEST_BROKER" = rabbitmq ] && _rmq_write_conf "$n" "$dir" "$certs"
  return 0
}

_mosq_launch() {
  case "$LUME_TEST_BROKER" in
    aedes) _aedes_launch "$1" ;;
    rabbitmq) _rmq_launch "$1" ;;
  esac
}

# ---- aedes ----------------------------------------------------------------------

_aedes_launch() {
  local n=$1 dir log off pid v args=()
  dir="${n}_DIR"; dir=${!dir}
  log="$dir/mosquitto.log"   # (NAME_LOG: the same name whatever the broker)
  touch "$log"
  off=$(stat -c %s "$log")
  v="${n}_PORT"; args+=(--port "${!v}")
  v="${n}_TLS_PORT"; [ -n "${!v}" ] && args+=(--tls-port "${!v}")
  v="${n}_MTLS_PORT"; [ -n "${!v}" ] && args+=(--mtls-port "${!v}")
  v="${n}_WS_PORT"; [ -n "${!v}" ] && args+=(--ws-port "${!v}")
  v="${n}_WSS_PORT"; [ -n "${!v}" ] && args+=(--wss-port "${!v}")
  v="${n}_CERTS"; args+=(--certs "${!v}")
  v=$(_broker_opt "$n" passwd); [ -n "$v" ] && args+=(--passwd "$v")
  node "$ROOT/tests/brokers/aedes/server.js" "${args[@]}" >>"$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  printf -v "${n}_PID" %s "$pid"; export "${n}_PID"
  _broker_wait "$n" "$pid" "$log" "$off" '^aedes running' 'EADDRINUSE' 15
}

# ---- rabbitmq -------------------------------------------------------------------

# RabbitMQ's password hash (rabbit_password_hashing_sha256): base64 of a
# 4-byte salt and SHA-256(salt + password).
_rmq_hash() {
  python3 -c 'import base64, hashlib, os, sys
s = os.urandom(4)
print(base64.b64encode(s + hashlib.sha256(s + sys.argv[1].encode()).digest()).decode())' "$1"
}

_rmq_write_conf() {
  local n=$1 dir=$2 certs=$3 v p tls ws wss pw plugins="rabbitmq_mqtt"
  p="${n}_PORT"; p=${!p}
  tls="${n}_TLS_PORT"; tls=${!tls}
  ws="${n}_WS_PORT"; ws=${!ws}
  wss="${n}_WSS_PORT"; wss=${!wss}
  pw=$(_broker_opt "$n" passwd)
  # the node's own ports: Erlang distribution and epmd (kept across restarts)
  for v in RMQ_DIST RMQ_EPMD; do
    v="${n}_$v"
    if [ -z "${!v:-}" ]; then _mosq_pick_port || return 1; printf -v "$v" %s "$REPLY"; fi
  done
  mkdir -p "$dir/home"
  {
    echo "# written by tests/integration/brokers.sh for broker '$n'"
    echo "listeners.tcp = none"
    echo "loopback_users = none"
    echo "log.console = true"
    echo "log.console.level = info"
    echo "log.file = false"
    echo "mqtt.listeners.tcp.default = 127.0.0.1:$p"
    if [ -n "$pw" ]; then
      echo "mqtt.allow_anonymous = false"
      echo "load_definitions = $dir/definitions.json"
    else
      echo "mqtt.allow_anonymous = true"
    fi
    if [ -n "$tls$wss" ]; then
      printf 'ssl_options.%s = %s\n' cacertfile "$certs/ca.pem" certfile "$certs/server.pem" \
        keyfile "$certs/server.key" verify verify_none fail_if_no_peer_cert false
    fi
    [ -n "$tls" ] && echo "mqtt.listeners.ssl.default = 127.0.0.1:$tls"
    [ -n "$ws$wss" ] && echo "web_mqtt.ws_path = /mqtt"
    if [ -n "$ws" ]; then
      echo "web_mqtt.tcp.ip = 127.0.0.1"
      echo "web_mqtt.tcp.port = $ws"
    elif [ -n "$wss" ]; then
      echo "web_mqtt.tcp.listener = none"
    fi
    if [ -n "$wss" ]; then
      echo "web_mqtt.ssl.ip = 127.0.0.1"
      echo "web_mqtt.ssl.port = $wss"
      printf 'web_mqtt.ssl.%s = %s\n' cacertfile "$certs/ca.pem" certfile "$certs/server.pem" \
        keyfile "$certs/server.key"
    fi
  } >"$dir/rabbitmq.conf"
  if [ -n "$pw" ]; then
    cat >"$dir/definitions.json" <<EOD
{"users": [{"name": "${pw%%:*}", "password_hash": "$(_rmq_hash "${pw#*:}")",
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}],
 "vhosts": [{"name": "/"}],
 "permissions": [{"user": "${pw%%:*}", "vhost": "/", "configure": ".*", "write": ".*",
                  "read": ".*"}]}
EOD
  fi
  [ -n "$ws$wss" ] && plugins+=",rabbitmq_web_mqtt"
  # what `rabbitmq-plugins --offline enable` writes (without its 4 s start)
  echo "[${plugins}]." >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
}

_rmq_launch() {
  local n=$1 dir log off pid epid v dist epmdp node
  dir="${n}_DIR"; dir=${!dir}
  log="$dir/mosquitto.log"
  touch "$log"
  off=$(stat -c %s "$log")
  dist="${n}_RMQ_DIST"; dist=${!dist}
  epmdp="${n}_RMQ_EPMD"; epmdp=${!epmdp}
  node="lume-$n-$$@localhost"
  # its own epmd: RabbitMQ would otherwise start a global one on 4369
  epid="${n}_RMQ_EPMD_PID"; epid=${!epid:-}
  if [ -z "$epid" ] || ! _mosq_alive "$epid"; then
    epmd -port "$epmdp" -address 127.0.0.1 >>"$dir/epmd.log" 2>&1 &
    epid=$!
    PIDS+=("$epid")
    printf -v "${n}_RMQ_EPMD_PID" %s "$epid"
    wait_for 5 _mosq_port_open "$epmdp" || { _MOSQ_RUNLOG="(epmd did not start on $epmdp)"; return 1; }
  fi
  rm -f "$dir/rabbit.pid"
  env HOME="$dir/home" ERL_EPMD_PORT="$epmdp" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_DIST_PORT="$dist" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_LOGS=- RABBITMQ_PID_FILE="$dir/rabbit.pid" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server >>"$log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  printf -v "${n}_RMQ_SH_PID" %s "$pid"
  printf -v "${n}_PID" %s "$pid"; export "${n}_PID"
  _broker_wait "$n" "$pid" "$log" "$off" 'Server startup complete' 'eaddrinuse' 90 || return $?
  # NAME_PID: the Erlang VM itself (signals reach the broker, not the script)
  if [ -s "$dir/rabbit.pid" ]; then
    v=$(cat "$dir/rabbit.pid")
    if [ "$v" != "$pid" ] && _mosq_alive "$v"; then
      PIDS+=("$v")
      printf -v "${n}_PID" %s "$v"; export "${n}_PID"
    fi
  fi
  return 0
}

# mosq_stop for rabbitmq: SIGTERM to the VM, then the script that ran it
if [ "$LUME_TEST_BROKER" = rabbitmq ]; then
  eval "_mosq_stop_one() $(declare -f mosq_stop | tail -n +2)"
  mosq_stop() {
    local n=${1:?usage: mosq_stop NAME} sh
    _mosq_stop_one "$n" || return 1
    sh="${n}_RMQ_SH_PID"; sh=${!sh:-}
    if [ -n "$sh" ]; then
      wait_for 10 sh -c "! kill -0 $sh 2>/dev/null" || kill -9 "$sh" 2>/dev/null
      wait "$sh" 2>/dev/null
      _mosq_forget_pid "$sh"
    fi
    return 0
  }
  eval "_mosq_kill_one() $(declare -f mosq_kill | tail -n +2)"
  mosq_kill() {
    local n=${1:?usage: mosq_kill NAME} sh
    _mosq_kill_one "$n" || return 1
    sh="${n}_RMQ_SH_PID"; sh=${!sh:-}
    [ -n "$sh" ] && { kill -9 "$sh" 2>/dev/null; wait "$sh" 2>/dev/null; _mosq_forget_pid "$sh"; }
    return 0
  }
fi

fi
