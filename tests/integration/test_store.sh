#!/usr/bin/env bash
# The store defends itself (docs/store.md), with real `lume run` processes,
# real signals and a real mosquitto: one runtime per store (the second exits
# 2 naming the PID), private modes (0700/0600; a store another user can
# write refused with exit 2), damaged databases salvaged at start (truncated,
# zeroed, a garbage page, empty; outbox.db and state.db) with counts in
# `lume stats` and the twin, `rm -rf` of the store while running with the
# broker down (nothing lost once it is back), a read-only outbox.db (nothing
# it held lost; what came in meanwhile kept), a full disk (tmpfs) in stats.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

MNT=""
IMMUTABLE=()
store_cleanup() {
  local f
  for f in "${IMMUTABLE[@]+"${IMMUTABLE[@]}"}"; do chattr -i "$f" 2>/dev/null; done
  if [ -n "$MNT" ]; then umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null; fi
  cleanup
}
trap store_cleanup EXIT

skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }
# sget STORE PATH: one value of `lume stats` (nil when it does not answer)
sget() { "$LUME" stats --store "$1" 2>/dev/null | lua5.4 "$ROOT/tests/integration/jget.lua" "$2" 2>/dev/null || echo nil; }
sis() { [ "$(sget "$1" "$2")" = "$3" ]; }
# stop PID: SIGTERM, the exit code in RC
stop() { kill -TERM "$1" 2>/dev/null; wait "$1"; RC=$?; }
total() { "$LUME" outbox stats --store "$1" 2>/dev/null | awk '$1 == "total" { print $2 }'; }
# at_least STORE N: the outbox holds N messages or more
at_least() { local t; t=$(total "$1"); [ "${t:-0}" -ge "$2" ]; }
# dev DIR SCRIPT [EXTRA CONFIG]: a device without a broker
dev() {
  local d=$1
  mkdir -p "$d/scripts"
  printf '%s\n' "$2" >"$d/scripts/app.lua"
  cat >"$d/lume.conf.lua" <<EOC
return {
  device_id = "$(basename "$d")",
  boards_dir = "$ROOT/boards",
  stdlib_dir = "$ROOT/stdlib",
  scripts_dir = "$d/scripts",
  store = "${STORE_AT:-$d/var}",
  status_interval_ms = 0,
  watch_scripts = false,
  sandbox = { store_quota = 10000000 },
  ${3:-}
}
EOC
}

# --- two runtimes on one store --------------------------------------------------
D="$T/two"; dev "$D" 'lume.timer.every(20, function() lume.publish("x", "x") end)'
start_bg two1 "$LUME" run --config "$D/lume.conf.lua"; P1=$LAST_PID
check "a runtime starts" wait_for 10 test -S "$D/var/lume.sock"
# (bounded: a runtime that does not refuse would run on)
timeout 15 "$LUME" run --config "$D/lume.conf.lua" >"$T/two2.out" 2>"$T/two2.err"; rc=$?
check "a second runtime on the same store exits 2" test $rc -eq 2
check "... naming the PID that holds the store" grep -q "in use by another lume (pid $P1 " "$T/two2.err"
check "the lock file holds that PID" test "$(cat "$D/var/lock")" = "$P1"
check "lume outbox stats still reads the store" sh -c "'$LUME' outbox stats --store '$D/var' | grep -q '^total'"
check "lume stats still reaches the first" sis "$D/var" process.device_id two
check "the first runs on, untouched" kill -0 "$P1"
stop "$P1"
check "... and stops with exit 0" test "$RC" -eq 0
start_bg two3 "$LUME" run --config "$D/lume.conf.lua"; P3=$LAST_PID
check "once it stopped, the store is free again" wait_for 10 sis "$D/var" process.device_id two
stop "$P3"

# --- modes ------------------------------------------------------------------------
D="$T/modes"; dev "$D" 'lume.store.set("k", 1)'
start_bg modes "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
wait_for 10 test -S "$D/var/lume.sock"
check "the store directory is 0700" test "$(stat -c %a "$D/var")" = 700
for f in outbox.db state.db outbox.db-wal outbox.db-shm state.db-wal state.db-shm lock; do
  check "$f is 0600" test "$(stat -c %a "$D/var/$f")" = 600
done
stop "$P"
chmod 755 "$D/var"; chmod 644 "$D/var/outbox.db" "$D/var/state.db"
start_bg modes2 "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
wait_for 10 test -S "$D/var/lume.sock"
check "looser modes of ours are tightened: directory" test "$(stat -c %a "$D/var")" = 700
check "... and databases" test "$(stat -c %a "$D/var/outbox.db")$(stat -c %a "$D/var/state.db")" = 600600
check "... and logged" grep -q "mode 0755 made 0700" "$T/modes2.err"
stop "$P"
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1; then
  chown nobody "$D/var"; chmod 777 "$D/var"
  timeout 15 "$LUME" run --config "$D/lume.conf.lua" >"$T/modes3.out" 2>"$T/modes3.err"; rc=$?
  check "a store directory another user can write is refused with exit 2" test $rc -eq 2
  check "... with a message naming it and its owner" grep -q "$D/var is owned by uid $(id -u nobody)" "$T/modes3.err"
  chown root "$D/var"; chmod 700 "$D/var"
  chown nobody "$D/var/outbox.db"
  timeout 15 "$LUME" run --config "$D/lume.conf.lua" >"$T/modes4.out" 2>"$T/modes4.err"; rc=$?
  check "a database another user can write is refused with exit 2" \
    test $rc -eq 2 -a -n "$(grep "outbox.db is owned by uid" "$T/modes4.err")"
  chown root "$D/var/outbox.db"
else
  skip "a store another user can write is refused" "needs root (chown) and a user 'nobody'"
fi

# --- damaged databases at start --------------------------------------------------
# A store with 5000 queued messages and 3000 stored keys.
G="$T/golden"
# (in slices, so that no call nears the CPU budget on a slow or sanitized build)
dev "$G" 'local i, j = 0, 0
lume.timer.every(10, function()
  for _ = 1, 500 do if i < 5000 then i = i + 1; lume.publish("m", "m " .. i) end end
  if i < 5000 then return end
  for _ = 1, 50 do if j < 3000 then j = j + 1; lume.store.set("k" .. j, string.rep("v", 50) .. j) end end
  if j == 3000 then j = j + 1; lume.log.info("filled") end
end)'
start_bg golden "$LUME" run --config "$G/lume.conf.lua"; P=$LAST_PID
wait_for 60 grep -q "filled" "$T/golden.err"
sleep 0.3
stop "$P"
GOLD_ROWS=$(sqlite3 "$G/var/state.db" 'SELECT count(*) FROM kv')
check "a store with 5000 messages and 3000 keys ($GOLD_ROWS rows in state.db)" \
  test "$(total "$G/var")" = 5000 -a "$GOLD_ROWS" -ge 3000
rm "$G/scripts/app.lua"
OB_SIZE=$(stat -c %s "$G/var/outbox.db"); ST_SIZE=$(stat -c %s "$G/var/state.db")

# damaged NAME FILE HOW EXPECT: start on a copy of the golden store with FILE
# damaged by HOW; the device must start, salvage and report
damaged() {
  local name=$1 file=$2 how=$3 d="$T/$1"
  dev "$d" 'lume.log.info("keys: %d", #lume.store.keys())'
  cp -a "$G/var" "$d/var"
  local size; size=$(stat -c %s "$d/var/$file")
  local pages=$((size / 4096))
  case $how in
    truncated) truncate -s $((size / 2)) "$d/var/$file" ;;
    zeroed) dd if=/dev/zero of="$d/var/$file" bs=4096 count=$pages conv=notrunc 2>/dev/null ;;
    page) dd if=/dev/urandom of="$d/var/$file" bs=4096 seek=$((pages / 2)) count=1 conv=notrunc 2>/dev/null ;;
    empty) : >"$d/var/$file" ;;
  esac
  start_bg "$name" "$LUME" run --config "$d/lume.conf.lua"; local pid=$LAST_PID
  check "$name: the device starts" wait_for 15 sis "$d/var" store.corruptions 1
  check "$name: the scripts run" wait_for 5 grep -q "keys: " "$T/$name.err"
  local db=${file%.db}
  SALV=$(sget "$d/var" "store.files.$db.salvaged")
  LOST=$(sget "$d/var" "store.files.$db.lost")
  EXACT=$(sget "$d/var" "store.files.$db.lost_exact")
  case $SALV in ''|*[!0-9]*) SALV=-1 ;; esac   # no answer: fails the checks below
  case $LOST in ''|*[!0-9]*) LOST=-1 ;; esac
  check "$name: the damaged file is moved aside with a timestamp" \
    sh -c "ls '$d/var/$file'.corrupt-20[0-9][0-9][0-1][0-9][0-3][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z >/dev/null"
  check "$name: the log names it" grep -Eq "(WARN|ERROR) +store: .*$file" "$T/$name.err"
  check "$name: the log says where it went" grep -q "$file.corrupt-" "$T/$name.err"
  check "$name: stats name the event" sh -c "'$LUME' stats --store '$d/var' | grep -q 'moved aside to'"
  check "$name: the store takes writes again" sis "$d/var" store.writable true
  stop "$pid"
  check "$name: a clean stop, exit 0" test "$RC" -eq 0
  if [ "$db" = outbox ]; then
    # the salvaged rows are the messages and the row of their one topic
    # (docs/outbox.md: topics are stored once; it is on the first page)
    check "$name: the outbox holds what stats say was salvaged ($SALV, one a topic row)" \
      test "$(( $(total "$d/var") + (SALV > 0) ))" = "$SALV"
  else
    # the script's own keys: what was salvaged less the twin's few rows
    local keys; keys=$(sed -n 's/.*keys: \([0-9]*\)$/\1/p' "$T/$name.err" | tail -n 1)
    check "$name: the scripts see what was salvaged ($keys of $SALV rows)" \
      test -n "$keys" -a "${keys:-0}" -le "$SALV" -a "${keys:-0}" -ge $((SALV - 5))
  fi
}

damaged ob-page outbox.db page
check "ob-page: most messages salvaged ($SALV), the lost ones counted exactly ($LOST)" \
  test "$SALV" -gt 4000 -a "$EXACT" = true -a $((SALV + LOST)) -eq 5001   # and the topic row
damaged ob-truncated outbox.db truncated
check "ob-truncated: what the first half holds is salvaged ($SALV)" test "$SALV" -gt 1000 -a "$SALV" -lt 5000
damaged ob-zeroed outbox.db zeroed
check "ob-zeroed: nothing readable, reported as 0 salvaged, loss not exact" \
  test "$SALV" = 0 -a "$EXACT" = false
damaged ob-empty outbox.db empty
check "ob-empty: a zero-length outbox.db is a warning, not silence" \
  grep -q "WARN  store: .*outbox.db was empty (0 bytes)" "$T/ob-empty.err"
damaged st-page state.db page
check "st-page: most rows salvaged ($SALV of $GOLD_ROWS)" test "$SALV" -ge $((GOLD_ROWS * 9 / 10))
damaged st-truncated state.db truncated
check "st-truncated: what the first half holds is salvaged ($SALV)" test "$SALV" -gt 1000 -a "$SALV" -lt "$GOLD_ROWS"
damaged st-zeroed state.db zeroed
check "st-zeroed: reported as 0 salvaged" test "$SALV" = 0

# --- rm -rf of the store while running, the broker down ----------------------------
# (a deep queue: a subscriber slower than the burst must not make the broker drop)
mosq_start b --max-queued 100000 || exit 1
mosq_stop b   # its port now refuses: lume queues
D="$T/gone"
net_device "$D" "url = 'mqtt://127.0.0.1:$b_PORT', backoff_min_ms = 100, backoff_max_ms = 300" \
'local n = 0
lume.timer.every(10, function()
  if n >= 3000 then return end
  for i = 1, 10 do n = n + 1; lume.publish("hello", "hello " .. n) end
  if n >= 3000 then lume.log.info("published %d", n) end
end)'
start_bg gone "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
check "gone: messages queue while the broker is down" \
  wait_for 15 at_least "$D/var" 1000
rm -rf "$D/var"
check "gone: an ERROR says the store was removed, within 2 s" wait_for 2 grep -q "ERROR store: store $D/var was removed while lume ran" "$T/gone.err"
check "gone: outbox.db is put back" wait_for 2 grep -q "$D/var/outbox.db was deleted or replaced while lume ran: put back" "$T/gone.err"
check "gone: state.db is put back" wait_for 2 grep -q "$D/var/state.db was deleted or replaced while lume ran: put back" "$T/gone.err"
check "gone: the control socket is back (lume stats answers)" wait_for 3 sis "$D/var" store.recoveries 2
check "gone: ... and the socket re-made is counted" sis "$D/var" store.socket_remade 1
check "gone: the store directory is 0700 again" test "$(stat -c %a "$D/var")" = 700
check "gone: the lock is held again" test "$(cat "$D/var/lock")" = "$P"
check "gone: the script published all 3000 (the last ones into the new files)" \
  wait_for 20 grep -q "published 3000" "$T/gone.err"
stop "$P"
check "gone: a clean stop, exit 0" test "$RC" -eq 0
"$LUME" outbox dump --store "$D/var" | awk '$4 ~ /hello$/ {print $6}' | sort -n >"$T/gone.seq"
QUEUED=3000
check "gone: all 3000 messages are still queued, 1..3000 without a gap" \
  awk '{ if ($1 != NR) { bad = 1; exit } } END { exit bad || NR != 3000 }' "$T/gone.seq"
mosq_restart b || exit 1
mosq_sub b "$T/b.out" 'lume/gone/telemetry/#'
rm "$D/scripts/app.lua"
start_bg gone2 "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
check "gone: once the broker is back, all $QUEUED messages arrive" \
  wait_for 60 sh -c "[ \$(grep -c '^lume/gone/telemetry/hello hello ' '$T/b.out') -ge $QUEUED ]"
check "gone: 0 lost, in order" sh -c \
  "grep '^lume/gone/telemetry/hello hello ' '$T/b.out' | awk '{ if (\$3 != NR) { bad = 1; exit } } END { exit bad || NR != $QUEUED }'"
stop "$P"

# --- removed, then taken by another runtime before the check ------------------------
# The first runtime is paused (SIGSTOP) across the removal and the second's
# start, so the second holds the new lock: the first must not fight over the
# files, but stop and keep its rows aside.
D="$T/taken"
dev "$D" 'local n = 0
lume.timer.every(10, function() n = n + 1; lume.publish("x", "x " .. n) end)'
start_bg takenA "$LUME" run --config "$D/lume.conf.lua"; A=$LAST_PID
wait_for 10 test -S "$D/var/lume.sock"; sleep 0.5
kill -STOP "$A"
rm -rf "$D/var"
start_bg takenB "$LUME" run --config "$D/lume.conf.lua"; B=$LAST_PID
wait_for 10 test -S "$D/var/lume.sock"
kill -CONT "$A"
check "taken: the first runtime stops" wait_for 5 sh -c "! kill -0 $A 2>/dev/null || grep -q ' Z ' /proc/$A/stat"
wait "$A"; rc=$?
check "taken: ... with exit 1" test $rc -eq 1
check "taken: ... saying why" grep -q "is another runtime's now: stopping" "$T/takenA.err"
check "taken: its rows are saved aside, named after it" \
  sh -c "[ \"\$(sqlite3 '$D'/var/outbox.db.stranded-$A-*Z 'SELECT count(*) FROM outbox')\" -gt 10 ]"
check "taken: the second runtime saw nothing of it (no ERROR)" sh -c "! grep -q ERROR '$T/takenB.err'"
check "taken: the second's control socket is still there" sis "$D/var" process.device_id taken
check "taken: the lock is the second's" test "$(cat "$D/var/lock")" = "$B"
stop "$B"
check "taken: the second stops cleanly, exit 0" test "$RC" -eq 0

# --- the twin reports the store -----------------------------------------------------
D="$T/twin"
net_device "$D" "url = 'mqtt://127.0.0.1:$b_PORT'" 'lume.log.info("up")'
cp -a "$G/var" "$D/var"
dd if=/dev/urandom of="$D/var/state.db" bs=4096 seek=$((ST_SIZE / 4096 / 2)) count=1 conv=notrunc 2>/dev/null
BROKER_PORT=$b_PORT
start_bg twin "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
check "twin: the reported document has a store section with the salvage" \
  wait_for 15 reported_is twin store.corruptions 1
TS=$(reported twin store.salvaged); case $TS in ''|*[!0-9]*) TS=0 ;; esac
check "twin: ... its salvaged count ($TS of $GOLD_ROWS)" test "$TS" -ge $((GOLD_ROWS * 9 / 10))
check "twin: ... and the event" reported_matches twin store.last_event "state.db is damaged"
check "twin: health (lume stats) shows it too" sis "$D/var" store.corruptions 1
stop "$P"

# --- a read-only outbox.db ------------------------------------------------------------
D="$T/ro"
dev "$D" 'for i = 1, 1000 do lume.publish("old", "old " .. i) end lume.log.info("filled")'
start_bg ro0 "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
wait_for 10 grep -q filled "$T/ro0.err"; sleep 0.3; stop "$P"
BEFORE=$(md5sum <"$D/var/outbox.db")
if chattr +i "$D/var/outbox.db" 2>/dev/null; then
  IMMUTABLE+=("$D/var/outbox.db")
  printf '%s\n' 'local n = 0
lume.timer.every(10, function() n = n + 1; lume.publish("new", "new " .. n) end)' >"$D/scripts/app.lua"
  start_bg ro "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
  check "ro: lume starts on an immutable outbox.db" wait_for 10 sis "$D/var" store.writable false
  check "ro: stats say why" sh -c "'$LUME' stats --store '$D/var' | grep -q 'outbox.db cannot be written'"
  check "ro: stats name where its rows are kept" sis "$D/var" store.files.outbox.mode spill
  check "ro: lume outbox stats sees old and new" wait_for 5 at_least "$D/var" 1001
  sleep 0.5
  stop "$P"
  check "ro: a clean stop, exit 0" test "$RC" -eq 0
  check "ro: nothing lost at shutdown (no such log line)" sh -c "! grep -q 'lost' '$T/ro.err'"
  check "ro: outbox.db itself is untouched" test "$(md5sum <"$D/var/outbox.db")" = "$BEFORE"
  chattr -i "$D/var/outbox.db"
  rm "$D/scripts/app.lua"
  start_bg ro2 "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
  check "ro: writable again, the kept rows are put back" wait_for 10 grep -q "spill of an earlier run .* put back in place" "$T/ro2.err"
  stop "$P"
  "$LUME" outbox dump --store "$D/var" >"$T/ro.dump"
  check "ro: all 1000 old messages are there" test "$(grep -c ' old$\| old [0-9]*$' "$T/ro.dump")" -eq 1000
  awk '$4 ~ /new$/ {print $6}' "$T/ro.dump" | sort -n >"$T/ro.new"
  check "ro: every new message accepted meanwhile is there ($(wc -l <"$T/ro.new"), 1..n without a gap)" \
    awk '{ if ($1 != NR) { bad = 1; exit } } END { exit bad || NR < 10 }' "$T/ro.new"
  # ... and made immutable while lume runs (the WAL too): writes fail, the
  # rows move to the spill, nothing queued is lost
  D="$T/ro-live"
  dev "$D" 'local n = 0
lume.timer.every(10, function() n = n + 1; lume.publish("live", "live " .. n) end)'
  start_bg rolive "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
  wait_for 10 at_least "$D/var" 50
  chattr +i "$D/var/outbox.db" "$D/var/outbox.db-wal"
  IMMUTABLE+=("$D/var/outbox.db" "$D/var/outbox.db-wal")
  check "ro-live: writes refused while running move the outbox to its spill" \
    wait_for 5 sis "$D/var" store.files.outbox.mode spill
  check "ro-live: ... logged" grep -q "outbox.db stopped taking writes" "$T/rolive.err"
  check "ro-live: messages still queue" wait_for 5 at_least "$D/var" 300
  stop "$P"
  check "ro-live: a clean stop, exit 0" test "$RC" -eq 0
  check "ro-live: nothing lost at shutdown" sh -c "! grep -q 'lost' '$T/rolive.err'"
  chattr -i "$D/var/outbox.db" "$D/var/outbox.db-wal"
  rm "$D/scripts/app.lua"
  start_bg rolive2 "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
  wait_for 10 test -S "$D/var/lume.sock"
  stop "$P"
  "$LUME" outbox dump --store "$D/var" | awk '$4 ~ /live$/ {print $6}' | sort -n >"$T/rolive.seq"
  check "ro-live: every message is there, 1..$(wc -l <"$T/rolive.seq") without a gap" \
    awk '{ if ($1 != NR) { bad = 1; exit } } END { exit bad || NR < 300 }' "$T/rolive.seq"
else
  skip "a read-only outbox.db" "chattr +i does not work here (not root, or no attribute support)"
fi

# --- a full disk -----------------------------------------------------------------------
MNT="$T/mnt"; mkdir -p "$MNT"
if mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null; then
  D="$T/full"
  STORE_AT="$MNT/var" dev "$D" 'local n = 0
lume.timer.every(10, function() n = n + 1; lume.publish("f", "f " .. n) end)'
  start_bg full "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
  check "full: lume runs on a 1 MiB tmpfs" wait_for 10 sis "$MNT/var" store.disk_full false
  dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null
  check "full: the disk filling up shows in lume stats" wait_for 5 sis "$MNT/var" store.disk_full true
  check "full: ... with the error" sh -c "'$LUME' stats --store '$MNT/var' | grep -q 'last_error\":\"[^\"]*full'"
  check "full: free_bytes is reported, below the tmpfs' size" \
    sh -c "[ \"\$('$LUME' stats --store '$MNT/var' | lua5.4 '$ROOT/tests/integration/jget.lua' store.free_bytes)\" -lt 1048576 ]"
  check "full: lume keeps running" kill -0 "$P"
  rm -f "$MNT/fill"
  check "full: room again clears it" wait_for 10 sis "$MNT/var" store.disk_full false
  stop "$P"
  check "full: a clean stop, exit 0" test "$RC" -eq 0
  dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null
  start_bg full2 "$LUME" run --config "$D/lume.conf.lua"; P=$LAST_PID
  check "full: lume starts on a full disk and says so in stats" wait_for 10 sis "$MNT/var" store.disk_full true
  check "full: ... and in the log" grep -q "the disk is full" "$T/full2.err"
  stop "$P"
  check "full: a clean stop, exit 0" test "$RC" -eq 0
  rm -f "$MNT/fill"
  umount "$MNT" && MNT=""
else
  skip "a full disk shows in lume stats" "cannot mount a tmpfs here (not root?)"
fi

finish
