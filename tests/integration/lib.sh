# tests/integration/lib.sh — a small TAP harness for integration tests that
# start real lume processes. Source it; it makes a temp dir ($T) and removes
# it, and kills every process started with `start_bg`, on exit (even on
# failure).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
LUME="$BUILD/lume"
T=$(mktemp -d "${TMPDIR:-/tmp}/lume-it.XXXXXX")
N=0
FAILED=0
PIDS=()

cleanup() {
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

ok() { N=$((N + 1)); echo "ok $N - $1"; }
not_ok() { N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok $N - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
# check DESCRIPTION COMMAND...: ok when the command succeeds
check() { local _desc=$1; shift; if "$@"; then ok "$_desc"; else not_ok "$_desc" "failed: $*"; fi; }

# wait_for SECONDS COMMAND...: poll until the command succeeds
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.1; done
  "$@"
}

# start_bg NAME COMMAND...: run in the background, output in $T/NAME.out/.err
start_bg() {
  local name=$1; shift
  : >"$T/$name.out"; : >"$T/$name.err"   # there at once, for a grep that polls them
  "$@" >"$T/$name.out" 2>"$T/$name.err" &
  PIDS+=($!)
  LAST_PID=$!
}

# A scratch device: scripts/ with the default scripts, a config, a store.
make_device() {
  local d=$1
  mkdir -p "$d/scripts"
  cp "$ROOT"/scripts/*.lua "$d/scripts/"
  cat >"$d/lume.conf.lua" <<EOC
return {
  device_id = "it-device",
  boards_dir = "$ROOT/boards",
  stdlib_dir = "$ROOT/stdlib",
  scripts_dir = "$d/scripts",
  store = "$d/var",
  status_interval_ms = 200,
}
EOC
}

finish() {
  # under `make asan` the lume binary is instrumented and its invariant checks
  # are on (core/base/check.h): any report fails the test
  local bad
  bad=$(grep -l "AddressSanitizer\|LeakSanitizer\|runtime error:\|invariant failed" "$T"/*.err 2>/dev/null)
  if [ -n "$bad" ]; then
    not_ok "no sanitizer reports" $bad
    for f in $bad; do grep -A20 "Sanitizer\|runtime error:\|invariant failed" "$f" | sed 's/^/#   /' | head -40; done
  fi
  echo "# $N checks, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# net_device DIR NETLUA [SCRIPT]: a device in DIR whose config has
# `net = { NETLUA }` and one script (default: publish "hello N" every 100 ms
# and log what arrives on lume/<id>/cmd/#). Device id: basename of DIR.
net_device() {
  local d=$1 net=$2 script=${3:-}
  local id; id=$(basename "$d")
  mkdir -p "$d/scripts"
  if [ -z "$script" ]; then
    script='local n = 0
lume.timer.every(100, function() n = n + 1; lume.publish("hello", "hello " .. n) end)
lume.subscribe("lume/" .. lume.device.id .. "/cmd/#", function(topic, payload)
  lume.log.info("cmd arrived: %s %s", topic, payload)
end)'
  fi
  printf '%s\n' "$script" >"$d/scripts/app.lua"
  cat >"$d/lume.conf.lua" <<EOC
return {
  device_id = "$id",
  boards_dir = "$ROOT/boards",
  stdlib_dir = "$ROOT/stdlib",
  scripts_dir = "$d/scripts",
  store = "$d/var",
  status_interval_ms = 0,
  watch_scripts = false,
  net = { $net },
}
EOC
}

# twin helpers (need BROKER_PORT): the device's retained reported document,
# or one value of it by path ("scripts.app.status")
reported() {
  mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t "lume/$1/reported" -C 1 -W 3 2>/dev/null \
    | lua5.4 "$ROOT/tests/integration/jget.lua" "${2:-}"
}
# reported_is DEV PATH VALUE
reported_is() { [ "$(reported "$1" "$2")" = "$3" ]; }
# reported_matches DEV PATH REGEX
reported_matches() { reported "$1" "$2" | grep -Eq "$3"; }

# probe_device DIR HOLD_S NET: a device folder for scripts/rules.lua (its
# hold cut to HOLD_S seconds) on the board "probe", whose temperature is
# what set_temp DIR VALUE writes (22 to start), with DIR/lume.conf.lua
# (device id: DIR's name; NET: the fields of its net table). Fails when
# scripts/rules.lua no longer sets HOLD_S as expected.
probe_device() {
  local d=$1 hold=$2 net=$3
  mkdir -p "$d/scripts" "$d/boards"
  sed "s/HOLD_S = 30.0, 28.0, 5/HOLD_S = 30.0, 28.0, $hold/" "$ROOT/scripts/rules.lua" >"$d/scripts/rules.lua"
  grep -q "28.0, $hold " "$d/scripts/rules.lua" || return 1
  echo 22 >"$d/temperature"
  cat >"$d/boards/probe.lua" <<EOB
return { name = "probe", sensors = {
  { name = "temperature", driver = "file", unit = "C", rate = 20, min_rate = 1, max_rate = 100,
    params = { path = "$d/temperature" } } } }
EOB
  cat >"$d/lume.conf.lua" <<EOC
return {
  device_id = "$(basename "$d")", board = "probe", boards_dir = "$d/boards",
  stdlib_dir = "$ROOT/stdlib", scripts_dir = "$d/scripts", store = "$d/var",
  status_interval_ms = 0, watch_scripts = false,
  net = { $net },
}
EOC
}
set_temp() { echo "$2" >"$1/temperature.tmp" && mv "$1/temperature.tmp" "$1/temperature"; }

# skip DESCRIPTION REASON: a check this run cannot make (TAP's SKIP)
skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }
