#!/usr/bin/env bash
# tests/integration/test_repl.sh — `lume repl` driven as a person would: tmux
# runs it against a real `lume run`, send-keys types (a multi-line function,
# a Tab completion, an infinite loop then Ctrl-C, .watch then a key, .save),
# capture-pane checks the screen. Then the socket itself: mode 0600, another
# uid refused by SO_PEERCRED even with the mode loosened (root only: CI
# runs as root), and a client that leaves mid-evaluation, sends garbage or a
# 10 MB line leaves the runtime and the next session unharmed. Last, with no
# lume running, `lume repl` starts one in-process.
. "$(dirname "$0")/lib.sh"

command -v tmux >/dev/null || { echo "1..0 # SKIP tmux is not installed (make deps)"; exit 0; }

TMUX_SOCK="lume-test-repl-$$"
TEST_USER=""
tm() { tmux -L "$TMUX_SOCK" "$@"; }
repl_cleanup() {
  tm kill-server 2>/dev/null
  [ -n "$TEST_USER" ] && userdel "$TEST_USER" 2>/dev/null
  cleanup
}
trap repl_cleanup EXIT

D="$T/dev"
make_device "$D"
start_bg run "$LUME" run --config "$D/lume.conf.lua" --quiet
RUN_PID=$LAST_PID
wait_for 10 test -S "$D/var/repl.sock"
check "the runtime makes STORE/repl.sock" test -S "$D/var/repl.sock"
check "repl.sock has mode 0600" [ "$(stat -c %a "$D/var/repl.sock")" = 600 ]

screen() { tm capture-pane -p -t repl -S -200; }
# type TEXT...: literal text, then Enter
# (as a person does, after the prompt is back: keys typed ahead are echoed
# by the terminal before the line editor takes over, and garble the screen)
at_prompt() { screen | grep -v '^$' | tail -1 | grep -Eq '^>>? ?$'; }
type_line() { wait_for 10 at_prompt; tm send-keys -t repl -l "$1"; tm send-keys -t repl Enter; }
# shows PATTERN [SECONDS]: the screen shows PATTERN (extended regex) within SECONDS
shows() {
  wait_for "${2:-5}" bash -c 'tmux -L "$0" capture-pane -p -t repl -S -200 | grep -Eq -- "$1"' \
    "$TMUX_SOCK" "$1" && return 0
  echo "#   the screen ends with:"; screen | grep -v '^$' | tail -12 | sed 's/^/#   | /'
  return 1
}

tm new-session -d -s repl -x 120 -y 50 "$LUME repl --config $D/lume.conf.lua; echo REPL-EXIT=\$?; sleep 30"
check "lume repl shows its banner and a prompt" shows '^lume repl .*Ctrl-D to leave'

type_line '6 * 7'
check "a bare expression prints its value" shows '^42$'

type_line 'function area(w, h)'
type_line '  return w * h'
check "an incomplete chunk gives the continuation prompt" shows '^>>   return w \* h'
type_line 'end'
type_line '=area(3, 4)'
check "the multi-line function is defined and =expr prints" shows '^12$'

type_line 'greenhouse = {humidity_max = 80, humidity_min = 40}'
wait_for 10 at_prompt
tm send-keys -t repl -l 'greenhouse.humidity_ma'
tm send-keys -t repl Tab
sleep 0.3
tm send-keys -t repl Enter
check "Tab completes a field against the live state" shows '^> greenhouse\.humidity_max$'
check "... and the completed expression prints" shows '^80$'

type_line '{name = "pump", levels = {1, 2, {deep = {deeper = {deepest = 1}}}}}'
check "tables are pretty-printed to a depth limit" \
  shows '\{ levels = \{ 1, 2, \{ deep = \{\.\.\.\} \} \}, name = "pump" \}'

type_line 'for i = 1, 3 do print("tick", i) end'
check "print output is shown at the prompt" shows '^tick +3$'

type_line 'while true do end'
sleep 0.5
tm send-keys -t repl C-c
check "Ctrl-C interrupts a runaway evaluation" shows '^interrupted' 3
type_line '2 + 2'
check "... and the prompt comes back" shows '^4$'

type_line 'while true do end'
check "with no Ctrl-C the per-evaluation CPU budget stops it" shows 'CPU budget exceeded|time limit exceeded' 10
check "the runtime survived both" kill -0 "$RUN_PID"

type_line '.watch temperature 10'
check ".watch redraws live values" shows '^temperature = [-0-9.]+ C'
sleep 0.5
tm send-keys -t repl q
type_line '"after watch"'
check "a key stops .watch and the prompt comes back" shows '^after watch$'

type_line 'count = 0'
type_line 'lume.timer.every(1000, function() count = count + 1 end)'
type_line 'nosuchfunction()'
type_line '.save fromrepl'
check ".save writes and loads the script" shows 'saved .* script fromrepl loaded'
check "... into scripts/NAME.lua, without the chunk that failed" \
  bash -c 'grep -q "^count = 0$" "$0" && ! grep -q nosuchfunction "$0"' "$D/scripts/fromrepl.lua"
type_line '.scripts'
check ".scripts lists it with version, status and origin" shows '^fromrepl +[0-9]+:[0-9a-f]+ +running +file'
type_line '.rate temperature 3'
check ".rate sets a sensor's rate" shows '^temperature: 3 Hz'
type_line '.twin'
check ".twin shows desired, reported and the drift" shows '^drift:'
type_line '.outbox'
check ".outbox shows the lanes" shows '^telemetry +[0-9]+'

type_line '.log warn'
check ".log sets the runtime's level" shows '^log level warn'
type_line '.log info'
type_line '.tail'
check ".tail shows the last lines of the log" shows 'following the log'
"$LUME" reload fromrepl --config "$D/lume.conf.lua" >/dev/null
check ".tail follows the log as lines come" shows 'info scripts: fromrepl reloaded' 5
tm send-keys -t repl q

tm send-keys -t repl C-d
check "Ctrl-D leaves the REPL" shows '^REPL-EXIT=0$'
check "... and leaves the runtime running" kill -0 "$RUN_PID"
# libedit's history file writes a space as \040
check "the history is kept in the store" grep -Eq '^6( |\\040)\*( |\\040)7$' "$D/var/repl_history"

# ---- the socket ----------------------------------------------------------------
cat >"$T/client.py" <<'EOP'
import socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(10)
    return s
def frame(s):
    head = b""
    while not head.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            return None, None
        head += c
    kind, n = head.split()
    body = b""
    while len(body) < int(n):
        body += s.recv(int(n) - len(body))
    return kind.decode(), body.decode()
s = conn()
if mode == "garbage":
    s.sendall(b"\x00\xff garbage\nzzz\n")
    print(frame(s)); print(frame(s))
elif mode == "big":
    s.sendall(b"e " + b"a" * (10 << 20) + b"\n")
    print(frame(s))
elif mode == "leave":
    s.sendall(b"e while true do end\n")
    time.sleep(0.2)
    s.close()
    sys.exit(0)
elif mode == "refused":
    print(frame(s))
    sys.exit(0)
t = time.monotonic()
s.sendall(b"e 40 + 2\n")
print(frame(s), "%.1fs" % (time.monotonic() - t))
EOP
out=$(python3 "$T/client.py" "$D/var/repl.sock" garbage 2>&1)
check "garbage gets errors naming what was wrong, then the session works" \
  bash -c 'grep -q "NUL byte" <<<"$0" && grep -q "unknown request .zzz." <<<"$0" && grep -q "(.ok., .42" <<<"$0"' "$out"
out=$(python3 "$T/client.py" "$D/var/repl.sock" big 2>&1)
check "a 10 MB line is refused, then the session works" \
  bash -c 'grep -q "longer than" <<<"$0" && grep -q "(.ok., .42" <<<"$0"' "$out"
python3 "$T/client.py" "$D/var/repl.sock" leave
out=$(python3 "$T/client.py" "$D/var/repl.sock" ok 2>&1)
check "a client that leaves mid-evaluation is interrupted at once" \
  bash -c 'grep -q "(.ok., .42" <<<"$0" && grep -Eq " 0\.[0-9]s$" <<<"$0"' "$out"
check "... and the runtime logs it" wait_for 3 grep -q "client left during an evaluation" "$T/run.err"
check "the runtime is still running" kill -0 "$RUN_PID"

if [ "$(id -u)" = 0 ] && command -v useradd >/dev/null; then
  TEST_USER="lumet$$"
  TEST_USER=${TEST_USER:0:30}
  useradd --system --no-create-home --shell /usr/sbin/nologin "$TEST_USER"
  chmod 711 "$T" "$D" "$D/var"
  chmod 666 "$D/var/repl.sock" # as if someone loosened it: SO_PEERCRED still refuses
  out=$(runuser -u "$TEST_USER" -- python3 "$T/client.py" "$D/var/repl.sock" refused 2>&1)
  check "another uid is refused even with the mode loosened" grep -q "refused" <<<"$out"
  check "... and the refusal is logged" wait_for 3 grep -q "refused a REPL connection from uid" "$T/run.err"
  chmod 600 "$D/var/repl.sock"
  chmod 700 "$T" "$D/var"
  userdel "$TEST_USER"
  TEST_USER=""
else
  echo "# skipped the other-uid check: it needs root to create a user (CI runs as root)"
fi

# ---- none running: lume repl starts one in-process -------------------------------
kill -TERM "$RUN_PID"
wait "$RUN_PID" 2>/dev/null
check "the runtime stops cleanly and removes repl.sock" test ! -e "$D/var/repl.sock"
tm kill-session -t repl 2>/dev/null
tm new-session -d -s repl -x 120 -y 50 "$LUME repl --config $D/lume.conf.lua; echo REPL-EXIT=\$?; sleep 30"
check "with no lume running, lume repl starts one in this process" \
  shows 'started one in this process on board sim'
type_line '#lume.sensor.list()'
check "... whose sensors answer" shows '^5$'
check "... and whose log goes to the store" test -s "$D/var/repl.log"
tm send-keys -t repl C-d
check "Ctrl-D stops it and leaves" shows '^REPL-EXIT=0$'
check "... removing its socket" test ! -e "$D/var/repl.sock"

if [ "$FAILED" -gt 0 ]; then
  echo "# the runtime's log ends with:"; tail -20 "$T/run.err" | sed 's/^/#   | /'
fi
finish
