#!/usr/bin/env bash
# Kept state across real restarts: scripts/rules.lua (hold shortened to 2 s)
# on a board whose temperature the test writes; an excursion raises one
# over-temperature alarm, counted at a real mosquitto, however the lume
# process is restarted during it: SIGKILL (the state saved every 10 s) and
# SIGTERM (saved at shutdown).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start s || exit 1
D=keepdev
d="$T/$D"
probe_device "$d" 2 "url = \"mqtt://127.0.0.1:$s_PORT\", backoff_min_ms = 50, backoff_max_ms = 500" ||
  { not_ok "scripts/rules.lua sets HOLD_S as this test expects"; finish; exit 1; }
mosq_sub s "$T/alarms.out" "lume/$D/telemetry/alarm/#" || exit 1
count() { grep -c "\"state\":\"$1\"" "$T/alarms.out"; }
start() { start_bg "dev$1" "$LUME" run --config "$d/lume.conf.lua"; PID=$LAST_PID
          wait_for 10 grep -q "mqtt: connected" "$T/dev$1.err"; }

start 1
set_temp "$d" 35
check "the excursion raises the alarm" wait_for 10 sh -c "[ \$(grep -c '\"state\":\"raised\"' '$T/alarms.out') -ge 1 ]"
sleep 11                                   # one periodic save of the kept state
kill -9 "$PID"; wait "$PID" 2>/dev/null
check "restarted after SIGKILL" start 2
sleep 3                                    # longer than the hold
check "no second alarm after SIGKILL and restart ($(count raised) raised)" test "$(count raised)" -eq 1
check "the alarm is not cleared either" test "$(count cleared)" -eq 0
kill -TERM "$PID"; wait "$PID"
check "restarted after SIGTERM" start 3
sleep 3
check "no second alarm after SIGTERM and restart ($(count raised) raised)" test "$(count raised)" -eq 1
set_temp "$d" 20
check "the end of the excursion clears it, once" wait_for 5 sh -c "[ \$(grep -c '\"state\":\"cleared\"' '$T/alarms.out') -eq 1 ]"
kill -TERM "$PID"; wait "$PID"
finish
