#!/usr/bin/env bash
# Modbus, serial lines and outputs against real peers, loopback only:
# pymodbus's server (Debian's python3-pymodbus, tests/integration/
# modbus_server.py) over TCP on a free 127.0.0.1 port and over RTU on a pty
# pair made with socat; a serial writer on another pty pair.
#   - lume reads registers of every type (u16, s16, float32, u32 with the
#     low word first, s32) with scaling, an input register, a discrete
#     input, over TCP and RTU, and lines from a serial port (a garbage line
#     is a counted read error, not a crash);
#   - a script drives a coil and a register; the coil's fail-safe value is
#     seen on the server after a new version fails and is rolled back, and
#     after SIGTERM;
#   - the server stopped with SIGSTOP (by PID): the Modbus channel reports
#     timeouts, a 50 Hz sim channel has no more overruns than an idle
#     machine gives it, and readings come back after SIGCONT;
#   - bad board entries (unknown type, output without a fail-safe) are
#     refused naming what was wrong; a server that refuses connections is a
#     counted error and lume keeps running.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
for need in socat; do
  command -v $need >/dev/null || { echo "Bail out! $need is missing (make deps)"; exit 1; }
done
$PY -c 'import pymodbus, serial_asyncio' 2>/dev/null \
  || { echo "Bail out! python3-pymodbus (and python3-serial-asyncio) missing (make deps)"; exit 1; }

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sget() { "$LUME" stats --store "$D/var" 2>/dev/null | lua5.4 "$ROOT/tests/integration/jget.lua" "$1" 2>/dev/null || echo nil; }
snear() { near "$(sget "$1")" "$2"; }  # re-read on every call (wait_for)
dumped() { grep -qx "$2" "$1" 2>/dev/null; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "nil" && d < 0.001) }'; }

# --- peers ---------------------------------------------------------------------
PORT=$(free_port)
start_bg srv_tcp $PY "$ROOT/tests/integration/modbus_server.py" tcp "$PORT" "$T/tcp.dump"
SRV=$LAST_PID
start_bg socat_rtu socat pty,raw,echo=0,link="$T/rtu_srv" pty,raw,echo=0,link="$T/rtu_lume"
start_bg socat_uart socat pty,raw,echo=0,link="$T/uart_w" pty,raw,echo=0,link="$T/uart_lume"
check "socat made both pty pairs" wait_for 10 test -e "$T/rtu_srv" -a -e "$T/uart_w" -a -e "$T/uart_lume"
start_bg srv_rtu $PY "$ROOT/tests/integration/modbus_server.py" rtu "$T/rtu_srv" "$T/rtu.dump"
check "the Modbus TCP server is up" wait_for 20 test -s "$T/tcp.dump"
check "the Modbus RTU server is up" wait_for 20 test -s "$T/rtu.dump"
# the serial writer: 20 lines a second, every tenth one garbage
start_bg writer bash -c 'exec 3>"$1"; i=0; while :; do i=$((i + 1))
  if [ $((i % 10)) = 0 ]; then printf "T,abc\n" >&3; else printf "T,21.5,ok\r\n" >&3; fi
  sleep 0.05; done' sh "$T/uart_w"

# --- the device ------------------------------------------------------------------
D="$T/dev"
mkdir -p "$D/scripts"
TCP="tcp://127.0.0.1:$PORT"
cat >"$T/board.lua" <<EOB
return {
  description = "test: sim channels next to Modbus TCP/RTU and a serial line",
  sensors = {
    { name = "vib", driver = "sim.vibration", rate = 50 },
    { name = "hr_u16", driver = "modbus", rate = 10,
      params = { url = "$TCP", address = 0, type = "u16", scale = 0.1, timeout_ms = 300 } },
    { name = "hr_s16", driver = "modbus", rate = 10,
      params = { url = "$TCP", address = 1, type = "s16", scale = 0.01 } },
    { name = "hr_f32", driver = "modbus", rate = 10,
      params = { url = "$TCP", address = 2, type = "float32", order = "big" } },
    { name = "hr_u32", driver = "modbus", rate = 10,
      params = { url = "$TCP", address = 4, type = "u32", order = "little" } },
    { name = "hr_s32", driver = "modbus", rate = 10,
      params = { url = "$TCP", address = 6, type = "s32", offset = 100000.5 } },
    { name = "ir", driver = "modbus", rate = 10,
      params = { url = "$TCP", table = "input", address = 0 } },
    { name = "di", driver = "modbus", rate = 10,
      params = { url = "$TCP", table = "discrete", address = 0 } },
    { name = "no_such_reg", driver = "modbus", rate = 5,
      params = { url = "$TCP", address = 5000 } },
    { name = "rtu_f32", driver = "modbus", rate = 5,
      params = { url = "rtu:$T/rtu_lume", baud = 19200, address = 2, type = "float32",
                 timeout_ms = 500 } },
    { name = "line", driver = "uart", rate = 20,
      params = { path = "$T/uart_lume", baud = 115200, field = 2, sep = "," } },
  },
  outputs = {
    pump = { driver = "modbus.coil", failsafe = 0, max_rate_hz = 100,
             params = { url = "$TCP", address = 0, timeout_ms = 300 } },
    speed = { driver = "modbus.register", failsafe = 0, min = 0, max = 100,
              params = { url = "$TCP", address = 10, type = "u16", scale = 0.1 } },
    rtu_coil = { driver = "modbus.coil", failsafe = false,
                 params = { url = "rtu:$T/rtu_lume", baud = 19200, address = 3 } },
  },
}
EOB
cat >"$D/lume.conf.lua" <<EOC
return {
  device_id = "it-modbus",
  board = "$T/board.lua",
  boards_dir = "$ROOT/boards",
  stdlib_dir = "$ROOT/stdlib",
  scripts_dir = "$D/scripts",
  store = "$D/var",
  status_interval_ms = 0,
  watch_scripts = false,
}
EOC
good_script='local pump = assert(lume.output("pump"))
assert(pump:set(1))
assert(lume.output("speed"):set(55.5))
assert(lume.output("rtu_coil"):set(true))
lume.on_sample("vib", function() end)'
printf '%s\n' "$good_script" >"$D/scripts/plc.lua"

start_bg lume "$LUME" run --config "$D/lume.conf.lua" --quiet
LPID=$LAST_PID
check "lume runs and answers stats" wait_for 15 sh -c "'$LUME' stats --store '$D/var' | grep -q '\"outputs\"'"

check "u16 holding register x 0.1 = 123.4" wait_for 10 snear sensors.hr_u16.value 123.4
check "s16 holding register x 0.01 = -2" wait_for 5 snear sensors.hr_s16.value -2
check "float32, high word first = 123.456" wait_for 5 \
  sh -c "awk -v v=\$('$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.hr_f32.value) 'BEGIN { exit !(v > 123.4559 && v < 123.4561) }'"
check "u32, low word first = 74565" wait_for 5 snear sensors.hr_u32.value 74565
check "s32 + offset 100000.5 = 0.5" wait_for 5 snear sensors.hr_s32.value 0.5
check "input register = 500" wait_for 5 snear sensors.ir.value 500
check "discrete input = 1" wait_for 5 snear sensors.di.value 1
check "a register the server does not have: a read error named in stats and the log" wait_for 5 sh -c \
  "'$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.no_such_reg.last_error | grep -q 'No such device or address' && grep -q 'holding 5000 (unit 1): Illegal data address' '$T/lume.err'"
check "and the channels next to it still read" wait_for 5 snear sensors.hr_u16.value 123.4
check "RTU over a pty: float32 = 123.456" wait_for 10 \
  sh -c "awk -v v=\$('$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.rtu_f32.value) 'BEGIN { exit !(v > 123.4559 && v < 123.4561) }'"
check "serial line, field 2 = 21.5" wait_for 10 snear sensors.line.value 21.5
check "the garbage lines are counted read errors" wait_for 5 \
  sh -c "[ \$('$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.line.read_errors) -gt 0 ]"
check "the script's coil write reached the TCP server (co0=1)" wait_for 10 dumped "$T/tcp.dump" co0=1
check "the register write reached it, scaled (hr10 = 55.5 / 0.1 = 555)" wait_for 10 dumped "$T/tcp.dump" hr10=555
check "the RTU coil write reached the RTU server (co3=1)" wait_for 10 dumped "$T/rtu.dump" co3=1
check "stats: pump owned by plc, one set, no errors" sh -c \
  "[ '$(sget outputs.pump.owner)/$(sget outputs.pump.sets)/$(sget outputs.pump.write_errors)' = plc/1/0 ]"

# --- a new version that sets the pump, then fails: rolled back, fail-safe --------
printf '%s\n' 'assert(lume.output("pump"):set(1))
error("bad version")' >"$D/scripts/plc.lua"
"$LUME" reload plc --config "$D/lume.conf.lua" >/dev/null 2>&1
check "after the failed version is rolled back, the server's coil is at the fail-safe 0" \
  wait_for 10 dumped "$T/tcp.dump" co0=0
check "the old version keeps running" sh -c "[ '$(sget scripts.plc.status)' = running ]"
check "the log names the fail-safe and why" wait_for 5 grep -q "pump: fail-safe 0 (script plc closed" "$T/lume.err"
check "stats count the fail-safe" sh -c "[ '$(sget outputs.pump.failsafes)' -ge 1 ]"

# --- the TCP server stops answering (SIGSTOP by PID), then comes back -----------
printf '%s\n' "$good_script" >"$D/scripts/plc.lua"
"$LUME" reload plc --config "$D/lume.conf.lua" >/dev/null 2>&1
check "a good version drives the pump again (co0=1)" wait_for 10 dumped "$T/tcp.dump" co0=1
sleep 1
ov0=$(sget sensors.vib.overruns); to0=$(sget sensors.hr_u16.timeouts)
kill -STOP "$SRV"
sleep 3
ov1=$(sget sensors.vib.overruns); to1=$(sget sensors.hr_u16.timeouts)
check "the stopped server: the Modbus channel reports timeouts ($to0 -> $to1)" [ "$to1" -gt "$to0" ]
# a sampler that waited on Modbus would lose 15 slots of the 50 Hz channel
# per 300 ms request, ~20 requests in 3 s
check "the 50 Hz sim channel kept its schedule while Modbus hung (overruns $ov0 -> $ov1)" \
  [ $((ov1 - ov0)) -lt 15 ]
check "the sim channel's lateness stays under its period (p99 $(sget sensors.vib.late_p99_us) us)" \
  awk -v p="$(sget sensors.vib.late_p99_us)" 'BEGIN { exit !(p < 20000) }'
check "the log says the server is not answering" grep -qF "modbus: $TCP holding 0 (unit 1): not answering (timeout)" "$T/lume.err"
check "lume stats reports the timeout as the channel's last error" sh -c \
  "'$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.hr_u16.last_error | grep -qi 'timed out'"
kill -CONT "$SRV"
sleep 1
check "after SIGCONT the Modbus readings come back" wait_for 15 snear sensors.hr_u16.value 123.4
check "the log says it answers again" wait_for 5 grep -q "answers again" "$T/lume.err"
to3=$(sget sensors.hr_u16.timeouts); sleep 1.5; to4=$(sget sensors.hr_u16.timeouts)
check "no new timeouts once it answers ($to3 -> $to4)" [ "$to3" = "$to4" ]

# --- SIGTERM: the fail-safe on the server, then exit -----------------------------
check "the pump is on before SIGTERM" wait_for 10 dumped "$T/tcp.dump" co0=1
kill -TERM "$LPID"
rc=0; for _ in $(seq 1 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
wait "$LPID"; rc=$?
check "lume exits 0 on SIGTERM" [ "$rc" -eq 0 ]
check "after SIGTERM the server's coil is at the fail-safe 0" dumped "$T/tcp.dump" co0=0
check "and the register at 0" dumped "$T/tcp.dump" hr10=0
check "and the RTU coil at false" dumped "$T/rtu.dump" co3=0

# --- bad board entries and a server that refuses ---------------------------------
bad_board() { # NAME SENSOR-OR-OUTPUT-LUA REGEX
  local b="$T/bad_$1.lua" c="$T/bad_$1.conf.lua"
  printf 'return { sensors = { { name = "t", driver = "sim.temperature" }, %s }, %s }\n' "$2" "$3" >"$b"
  sed "s|board = \"$T/board.lua\"|board = \"$b\"|; s|store = \"$D/var\"|store = \"$T/bad_$1\"|" \
    "$D/lume.conf.lua" >"$c"
  timeout 20 "$LUME" run --config "$c" --quiet >"$T/bad_$1.out" 2>&1
}
bad_board type '{ name = "m", driver = "modbus", params = { url = "tcp://127.0.0.1:1", type = "f64" } }' ''
check "an unknown Modbus type is refused naming it" grep -q "sensor 'm' (modbus): modbus: params.type f64: expected u16, s16, u32, s32 or float32" "$T/bad_type.out"
bad_board nofs '' 'outputs = { pump = { driver = "modbus.coil", params = { url = "tcp://127.0.0.1:1" } } }'
check "an output without a fail-safe is refused" grep -q "output 'pump': failsafe is required" "$T/bad_nofs.out"
bad_board baddrv '' 'outputs = { pump = { driver = "modbus.coils", failsafe = 0 } }'
check "an unknown output driver is refused with the known ones" grep -q "unknown driver 'modbus.coils' (known: file, .*modbus.coil, modbus.register" "$T/bad_baddrv.out"

DEAD=$(free_port)
cat >"$T/dead.lua" <<EOB
return {
  sensors = {
    { name = "vib", driver = "sim.vibration", rate = 50 },
    { name = "hr_u16", driver = "modbus", rate = 10,
      params = { url = "tcp://127.0.0.1:$DEAD", address = 0, timeout_ms = 300 } },
  },
  outputs = {
    pump = { driver = "modbus.coil", failsafe = 0,
             params = { url = "tcp://127.0.0.1:$DEAD", address = 0, timeout_ms = 300 } },
  },
}
EOB
sed "s|board = \"$T/board.lua\"|board = \"$T/dead.lua\"|" "$D/lume.conf.lua" >"$D/dead.conf.lua"
printf '%s\n' 'local ok, err = lume.output("pump"):set(1)
lume.on_sample("vib", function() end)' >"$D/scripts/plc.lua"
start_bg lume_dead "$LUME" run --config "$D/dead.conf.lua" --quiet
DPID=$LAST_PID
check "with the server refusing connections, lume runs and counts read errors" wait_for 15 sh -c \
  "[ \$('$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.hr_u16.read_errors) -gt 3 ]"
check "the refused coil write is a counted write error with the reason" wait_for 10 sh -c \
  "'$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' outputs.pump.last_error | grep -q 'Connection refused'"
check "the sim channel keeps sampling" wait_for 10 sh -c "[ \$('$LUME' stats --store '$D/var' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.vib.samples) -gt 50 ]"
[ "$FAILED" -gt 0 ] && sed 's/^/#   /' "$T/lume_dead.err" | tail -5
kill -TERM "$DPID"; wait "$DPID"; rc=$?
check "and exits 0 on SIGTERM (its fail-safe write fails, logged)" [ "$rc" -eq 0 ]
finish
