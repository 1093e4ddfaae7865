#!/usr/bin/env bash
# The web console (runtime/console.c): what `lume run` refuses to start
# with (a non-loopback address without a token, a missing asset folder, a
# port already taken), then the HTTP and WebSocket protocol against a
# running lume (tests/console/protocol_test.py: token checks, malformed
# frames, oversized and unknown messages, 20 clients at once), and that the
# runtime is undisturbed afterwards (`lume stats` answers, console counters).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

D="$T/dev"; make_device "$D"
TOKEN=it-token-$RANDOM$RANDOM

# --- refused configurations --------------------------------------------------
out=$("$LUME" run --config "$D/lume.conf.lua" --quiet --console 0.0.0.0:1 2>&1); rc=$?
check "a console on 0.0.0.0 without a token: exit 2" test "$rc" = 2
check "... naming the key and the way out" grep -q \
  'console.listen: 0.0.0.0:1 is not a loopback address: set console.token' <<<"$out"
out=$("$LUME" run --config "$D/lume.conf.lua" --quiet --console 127.0.0.1 2>&1); rc=$?
check "--console without a port: exit 2 naming what is expected" \
  sh -c "[ $rc = 2 ] && grep -q 'console.listen: expected ADDRESS:PORT' <<'E'
$out
E"
# with_console FILE LUA-TABLE: the device's config plus `console = TABLE`
with_console() { { sed '$d' "$D/lume.conf.lua"; echo "  console = $2,"; echo "}"; } >"$1"; }
with_console "$T/nodir.lua" "{ listen = \"127.0.0.1:1\", dir = \"$T/none\" }"
out=$("$LUME" run --config "$T/nodir.lua" --quiet 2>&1); rc=$?
check "a console folder that is not there: exit 2 naming the file" \
  sh -c "[ $rc = 2 ] && grep -q 'console: cannot read $T/none/index.html' <<'E'
$out
E"
mosq_free_port; BUSY=$REPLY
python3 -c "import socket,time,sys; s=socket.socket(); s.bind(('127.0.0.1',$BUSY)); s.listen(); print('x',flush=True); time.sleep(30)" >"$T/busy.out" &
PIDS+=($!)
wait_for 5 grep -qs x "$T/busy.out"
out=$("$LUME" run --config "$D/lume.conf.lua" --quiet --console 127.0.0.1:$BUSY 2>&1); rc=$?
check "a port already taken: exit 2, 'cannot listen'" \
  sh -c "[ $rc = 2 ] && grep -q 'console: cannot listen on 127.0.0.1:$BUSY' <<'E'
$out
E"

# --- a running console ----------------------------------------------------------
mosq_free_port; PORT=$REPLY
with_console "$T/console.lua" \
  "{ listen = \"127.0.0.1:$PORT\", token = \"$TOKEN\", dir = \"$ROOT/console\" }"
start_bg lume "$LUME" run --config "$T/console.lua" --quiet
PID=$LAST_PID
check "lume serves the console" wait_for 10 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null"
# under `make asan` lume's RSS is ASan's quarantine: the test skips that check
if ldd "$LUME" 2>/dev/null | grep -q libasan; then export LUME_ASAN=1; fi
PYTHONPATH="$ROOT/tests/console" timeout 120 python3 "$ROOT/tests/console/protocol_test.py" \
  "$PORT" "$TOKEN" >"$T/proto.out" 2>&1
rc=$?
# renumber the protocol test's TAP lines into ours
while IFS= read -r line; do
  case "$line" in
    "ok "*) ok "${line#ok * - }" ;;
    "not ok "*) not_ok "${line#not ok * - }" ;;
    "#   "*) echo "$line" ;;
  esac
done <"$T/proto.out"
[ "$rc" = 0 ] || not_ok "protocol_test.py exits 0" "$(tail -5 "$T/proto.out")"
check "lume is still running" kill -0 "$PID"
stats=$("$LUME" stats --store "$D/var" 2>&1)
check "lume stats shows the console's counters" grep -q '"console":{"listen":"127.0.0.1:'"$PORT" <<<"$stats"
check "... the refused requests and bad messages counted" \
  grep -Eq '"refused":[1-9][0-9]*,.*"bad_messages":[1-9]' <<<"$stats"
check "the log names the refused WebSocket" grep -q 'WebSocket refused: a missing or wrong console token' "$T/lume.err"
kill -TERM "$PID"
check "lume stops cleanly on SIGTERM with clients gone" wait_for 10 sh -c "! kill -0 $PID 2>/dev/null"
wait "$PID"; rc=$?
check "... exit 0" test "$rc" = 0
finish
