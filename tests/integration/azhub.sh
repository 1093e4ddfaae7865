# tests/integration/azhub.sh — the Azure IoT Hub emulator (azure_hub.py) in
# integration tests. Source after lib.sh and mosq.sh.
#
#   az_hub_start NAME BROKER_PORT HOST KEY [args...]
#       starts azure_hub.py in front of the mosquitto on BROKER_PORT, its
#       events in $T/NAME.out; sets HUB_PORT (where devices connect),
#       CTL_PORT (control), HUB_PID, HUB_OUT. Returns once it is ready, non-zero
#       (with the emulator's stderr as TAP diagnostics) when it does not start.
#   azctl JSON          one command to the emulator, its answer on stdout
#   hub_twin PATH       one value of the hub's twin ("reported.sensors.x.rate")
#   hub_twin_is PATH V, hub_stat NAME, hub_stat_ge NAME N
#   events EV           the emulator's event lines of that kind
#   jget PATH           one value of the JSON on stdin
PY=/usr/bin/python3

az_hub_start() {
  local name=$1 broker=$2 host=$3 key=$4; shift 4
  _mosq_pick_port || return 1; HUB_PORT=$REPLY
  _mosq_pick_port || return 1; CTL_PORT=$REPLY
  HUB_OUT="$T/$name.out"
  start_bg "$name" $PY "$ROOT/tests/integration/azure_hub.py" --listen "$HUB_PORT" --broker "$broker" \
    --control "$CTL_PORT" --host "$host" --key "$key" "$@"
  HUB_PID=$LAST_PID
  wait_for 10 grep -qs '"ready"' "$HUB_OUT" && return 0
  sed 's/^/# /' "$T/$name.err"
  return 1
}

azctl() {
  $PY -c 'import socket,sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().readline().strip())' "$CTL_PORT" "$1"
}
jget() { lua5.4 "$ROOT/tests/integration/jget.lua" "$1"; }
hub_twin() { azctl '{"cmd":"twin"}' | jget "$1"; }
hub_twin_is() { [ "$(hub_twin "$1")" = "$2" ]; }
hub_stat() { azctl '{"cmd":"stats"}' | jget "$1"; }
hub_stat_ge() { [ "$(hub_stat "$1")" -ge "$2" ]; }
events() { grep "\"ev\": \"$1\"" "${HUB_OUT:-$T/hub.out}"; }
