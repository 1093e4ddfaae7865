#!/usr/bin/env bash
# Accepted is not durable, and lume says which is which: `lume run` killed
# with SIGKILL in the middle of a stream to a real broker.
#  1. durable publishes ({durable = true}): not one message whose publish
#     returned is lost;
#  2. default publishes: what is lost is telemetry accepted in the last
#     moments (at most 4 x outbox.commit_batch messages, all after the last
#     message that survived), and no alarm (alarms are durable by default);
#  3. an alarm is durable when its publish returns, not at the end of the
#     loop turn: killed while the handler that published it still runs.
# The script tells the test what it had been told: after every tick it logs
# "accepted N" (every message up to N was accepted) and stores the last
# sequence number whose durable publish returned in its lume.store (itself
# committed before store.set returns), so after the kill the test knows
# exactly which messages must have survived: delivered to the subscriber,
# or still committed in the outbox.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

mosq_start b --max-queued 0 || exit 1
mosq_sub b "$T/sub.out" 'lume/+/telemetry/#' -c -i durable-counter

# The publisher: 100 messages per 10 ms tick, 1 in 1000 an alarm; payload
# "lane seq". (A durable alarm commits everything accepted before it too.)
script() { # DURABLE(true|false)
  cat <<EOS
local seq = 0
lume.timer.every(10, function()
  for _ = 1, 100 do
    seq = seq + 1
    local lane = seq % 1000 == 0 and "alarm" or "telemetry"
    local id, err = lume.publish(lane, lane .. " " .. seq, { priority = lane, durable = $1 })
    if not id then error(err) end
    if lane == "alarm" then lume.store.set("alarm", seq) end
  end
  if $1 then lume.store.set("durable", seq) end
  lume.log.info("accepted %d", seq)
end)
EOS
}

# stored DIR KEY: a number the script kept in its lume.store (state.db)
stored() {
  sqlite3 "$1/var/state.db" "SELECT CAST(val AS TEXT) FROM kv WHERE ns = 'script:app' AND key = '$2'" \
    2>/dev/null || echo 0
}

# survivors DEV DIR: every "lane seq" that survived: delivered to the
# subscriber, or committed in the outbox (sorted, unique)
survivors() {
  { grep "^lume/$1/telemetry/" "$T/sub.out" | cut -d' ' -f2,3
    "$LUME" outbox dump --store "$2/var" | awk '{print $5, $6}'; } | sort -k2,2n -u
}

# quiet FILE: its size has not changed for 2 s (the broker delivered what it had)
quiet() {
  local a b
  a=$(stat -c %s "$1"); sleep 2; b=$(stat -c %s "$1")
  [ "$a" = "$b" ]
}

# run_and_kill DEV DURABLE MIN: start the device, SIGKILL it once it logged
# "accepted MIN" or more, wait for the broker to deliver what it holds.
run_and_kill() {
  local dev=$1 durable=$2 min=$3 d="$T/$1" pid
  net_device "$d" "url = 'mqtt://127.0.0.1:$b_PORT', backoff_min_ms = 50, backoff_max_ms = 500" \
    "$(script "$durable")"
  start_bg "$dev" "$LUME" run --config "$d/lume.conf.lua"
  pid=$LAST_PID
  wait_for 30 sh -c "grep -o 'accepted [0-9]*' '$T/$dev.err' | awk '{v = \$2} END {exit !(v + 0 >= $min)}'"
  # a different kill point each run: up to 30 ms more
  sleep "0.0$((RANDOM % 3))$((RANDOM % 10))"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null
  wait_for 30 quiet "$T/sub.out"
}

# ---- 1. durable publishes: nothing whose publish returned is lost -------------
run_and_kill durable true 3000
D=$(stored "$T/durable" durable)
A=$(grep -o 'accepted [0-9]*' "$T/durable.err" | tail -n 1 | awk '{print $2}')
survivors durable "$T/durable" >"$T/durable.kept"
missing=$(awk -v d="$D" '{ have[$2] = 1 } END { m = 0; for (i = 1; i <= d; i++) if (!have[i]) m++; print m }' "$T/durable.kept")
echo "# durable: publish returned for 1..$D (logged accepted $A); $(wc -l <"$T/durable.kept") survived; missing $missing"
check "durable: the stream ran ($D durable publishes returned)" test "${D:-0}" -ge 3000
check "durable: every message whose publish returned survived the SIGKILL" test "$missing" -eq 0

# ---- 2. default publishes: a bounded tail of telemetry, no alarm ----------------
run_and_kill default false 20000
A=$(grep -o 'accepted [0-9]*' "$T/default.err" | tail -n 1 | awk '{print $2}')
AL=$(stored "$T/default" alarm)
survivors default "$T/default" >"$T/default.kept"
# lost telemetry: accepted (<= A) and not there; kept telemetry: the highest that is
read -r lost_t first_lost last_kept lost_a <<<"$(awk -v a="$A" '
  { have[$2] = 1; if ($1 == "telemetry" && $2 + 0 > last) last = $2 + 0 }
  END { lt = 0; la = 0; first = 0
        for (i = 1; i <= a; i++) if (!have[i]) {
          if (i % 1000 == 0) la++; else { lt++; if (!first) first = i } }
        print lt, first, last + 0, la }' "$T/default.kept")"
echo "# default: accepted 1..$A (last alarm stored $AL); lost $lost_t telemetry (first lost $first_lost, last kept $last_kept), $lost_a alarms"
check "default: the stream ran (accepted $A)" test "${A:-0}" -ge 20000
check "default: no alarm lost (alarms are durable by default)" test "$lost_a" -eq 0
check "default: every alarm whose publish returned survived (up to $AL)" \
  sh -c "awk -v al='$AL' '\$1 == \"alarm\" && \$2 <= al' '$T/default.kept' | wc -l | grep -qx \$(( ${AL:-0} / 1000 ))"
check "default: at most 4 x commit_batch (4000) telemetry lost ($lost_t)" test "$lost_t" -le 4000
check "default: only the newest were lost (nothing kept after the first lost)" \
  test "$first_lost" -eq 0 -o "$last_kept" -lt "${first_lost:-0}"

# ---- 3. killed in the handler, right after an alarm's publish returned ------------
d="$T/inhandler"
mkdir -p "$d/scripts"
cat >"$d/scripts/app.lua" <<'EOS'
local n = 0
lume.timer.every(50, function()
  n = n + 1
  for i = 1, 300 do lume.publish("t", "telemetry " .. n .. "." .. i) end
  local id = assert(lume.publish("a", "alarm " .. n, { priority = "alarm" }))
  lume.log.info("alarm %d published as message %d", n, id)
  local t = os.clock()
  while os.clock() - t < 3 do end   -- still in the handler when the kill comes
end)
EOS
cat >"$d/lume.conf.lua" <<EOC
return {
  device_id = "inhandler", boards_dir = "$ROOT/boards", stdlib_dir = "$ROOT/stdlib",
  scripts_dir = "$d/scripts", store = "$d/var", status_interval_ms = 0, watch_scripts = false,
  sandbox = { cpu_budget_ms = 5000, hang_limit_ms = 20000 },
}
EOC
start_bg inhandler "$LUME" run --config "$d/lume.conf.lua"
pid=$LAST_PID
wait_for 20 grep -q "alarm 1 published" "$T/inhandler.err"
kill -9 "$pid"
wait "$pid" 2>/dev/null
"$LUME" outbox dump --store "$d/var" >"$T/inhandler.dump"
check "an alarm is in the outbox once its publish returned (the handler had not ended)" \
  grep -q ' alarm 1$' "$T/inhandler.dump"
check "so is every message accepted before it (300 telemetry)" \
  test "$(grep -c ' telemetry 1\.' "$T/inhandler.dump")" -eq 300

finish
