#!/usr/bin/env bash
# The lume command: help, exit codes, run, reload (socket and inotify),
# outbox inspection, clean stop on SIGTERM, nothing committed lost on SIGKILL.
. "$(dirname "$0")/lib.sh"

out=$("$LUME" version); rc=$?
check "lume version prints versions and exits 0" test $rc -eq 0 -a -n "$(echo "$out" | grep -E '^lume [0-9.]+ \(Lua 5\.4.*libwebsockets.*SQLite')"
for c in run reload outbox; do
  "$LUME" $c --help >"$T/help.out" 2>&1; rc=$?
  check "lume $c --help exits 0 and shows usage" test $rc -eq 0 -a -n "$(grep "usage: lume $c" "$T/help.out")"
done
"$LUME" --help >"$T/help.out"; check "lume --help lists the commands" grep -q "reload \[SCRIPT\]" "$T/help.out"
"$LUME" frobnicate 2>"$T/err"; rc=$?
check "an unknown command exits 2" test $rc -eq 2 -a -n "$(grep "unknown command 'frobnicate'" "$T/err")"
"$LUME" run --frob 2>"$T/err"; rc=$?
check "an unknown option exits 2" test $rc -eq 2 -a -n "$(grep "unknown or incomplete option '--frob'" "$T/err")"

echo 'return { sandbox = { memory_limit = "huge" } }' >"$T/bad.conf.lua"
"$LUME" run --config "$T/bad.conf.lua" 2>"$T/err"; rc=$?
check "a bad config exits 2 naming the key and value" test $rc -eq 2 -a -n "$(grep 'bad.conf.lua: sandbox.memory_limit: expected a size in bytes.*got "huge"' "$T/err")"
"$LUME" run --scripts /nonexistent --store "$T/noscripts" 2>"$T/err"; rc=$?
check "--scripts naming a missing directory exits 2 naming it" test $rc -eq 2 -a -n "$(grep -F 'lume run: --scripts /nonexistent: no such directory' "$T/err")"
check "... before anything is started" test ! -e "$T/noscripts"
echo 'while true do end' >"$T/loop.lua"
timeout 30 "$LUME" run --config "$T/loop.lua" --store "$T/loopstore" 2>"$T/err"; rc=$?
check "a config that never ends exits 2 naming the file and the limit" test $rc -eq 2 -a -n "$(grep -F "lume: config $T/loop.lua: stopped: it ran longer than 2000 ms, the time limit of a config file" "$T/err")"
# ~100 MiB if nothing stops it (so an old lume is not a danger to the machine)
echo 'local t = {} for i = 1, 1e6 do t[i] = ("x"):rep(64) .. i end return {}' >"$T/bomb.lua"
"$LUME" stats --config "$T/bomb.lua" 2>"$T/err"; rc=$?
check "lume stats with a config that eats memory exits 2 naming the limit" test $rc -eq 2 -a -n "$(grep -F "lume: config $T/bomb.lua: stopped: it needed more than 16 MiB of memory" "$T/err")"
"$LUME" run --board nosuch --store "$T/nosuch" 2>"$T/err"; rc=$?
check "an unknown board exits 2 and lists the boards" test $rc -eq 2 -a -n "$(grep "unknown board 'nosuch'.*host, .*sim" "$T/err")"
"$LUME" reload --store "$T/nowhere" 2>"$T/err"; rc=$?
check "lume reload with no lume running exits 1 and says so" test $rc -eq 1 -a -n "$(grep "cannot reach a running lume" "$T/err")"

# --- a running device ---------------------------------------------------------
D="$T/dev"; make_device "$D"
cat >"$D/scripts/counter.lua" <<'EOS'
local n = 0
lume.timer.every(5, function()
  n = n + 1
  lume.publish("seq", tostring(n), { priority = "bulk" })
end)
EOS
start_bg lume "$LUME" run --config "$D/lume.conf.lua"; PID=$LAST_PID
check "lume run prints a status line with every sensor" wait_for 10 grep -q "temperature=.*vibration=.*outbox alarm=" "$T/lume.out"
check "the default scripts load" grep -q "rules loaded" "$T/lume.err"
check "the control socket exists" test -S "$D/var/lume.sock"

"$LUME" reload rules --config "$D/lume.conf.lua" >"$T/r.out" 2>&1; rc=$?
check "lume reload NAME reloads and exits 0" test $rc -eq 0 -a -n "$(grep 'reloaded rules' "$T/r.out")"
check "the reload is logged with the new version" wait_for 5 grep -q "rules reloaded (version 2:" "$T/lume.err"

cp "$D/scripts/rules.lua" "$T/rules.good"
printf 'lume.on_sample("temperature", function() end)\nlocal = 3\n' >"$D/scripts/rules.lua"
check "saving a broken script logs file:line and keeps the old version" wait_for 5 grep -q "rules.lua:2:.*the running version stays" "$T/lume.err"
"$LUME" reload rules --config "$D/lume.conf.lua" >"$T/r.out" 2>&1; rc=$?
check "lume reload of a broken script exits 1 with file:line" test $rc -eq 1 -a -n "$(grep 'rules.lua:2:' "$T/r.out")"
cp "$T/rules.good" "$D/scripts/rules.lua"
check "saving a fixed script reloads it (inotify)" wait_for 5 grep -q "rules reloaded (version [3-9]:" "$T/lume.err"
check "status still lists rules without failure" wait_for 3 sh -c "tail -n 1 '$T/lume.out' | grep -q 'rules@[0-9]*:[0-9a-f]* '"

check "messages reach the outbox" wait_for 5 sh -c "'$LUME' outbox stats --store '$D/var' | grep -Eq '^bulk +[1-9]'"
"$LUME" outbox dump --store "$D/var" --limit 3 >"$T/dump.out"
check "outbox dump shows topic and payload in send order" grep -Eq '^[0-9]+ bulk qos1 lume/it-device/telemetry/seq 1$' "$T/dump.out"
check "outbox dump --limit" test "$(wc -l <"$T/dump.out")" -eq 3

# SIGKILL: nothing that was committed is lost
sleep 0.5
"$LUME" outbox dump --store "$D/var" >"$T/before.out"
committed=$(awk '$4 ~ /seq$/ {print $5}' "$T/before.out" | sort -n | tail -n 1)
kill -9 "$PID"; wait "$PID" 2>/dev/null
rm "$D/scripts/counter.lua"
"$LUME" outbox dump --store "$D/var" >"$T/after.out"
missing=$(awk '$4 ~ /seq$/ {print $5}' "$T/after.out" | sort -n | awk -v max="$committed" 'BEGIN{e=1} $1<=max {if ($1!=e) {print e; exit} e++} END{if (e<=max) print e}')
check "after SIGKILL every committed message (1..$committed) is still there" test -n "$committed" -a -z "$missing"

start_bg lume2 "$LUME" run --config "$D/lume.conf.lua"; PID=$LAST_PID
check "lume restarts on the same store after SIGKILL (stale socket replaced)" wait_for 10 grep -q "outbox alarm=" "$T/lume2.out"
kill -TERM "$PID"
check "SIGTERM stops lume cleanly (exit 0)" wait "$PID"
check "the control socket is removed on exit" test ! -e "$D/var/lume.sock"
check "the outbox kept its messages across the restart" sh -c "'$LUME' outbox stats --store '$D/var' | grep -Eq '^bulk +[1-9]'"

# operator commands refuse names that would make wildcard or nested topics
"$LUME" push --group '#' --broker mqtt://127.0.0.1:1 "$D/scripts/counter.lua" >"$T/g.out" 2>&1; rc=$?
check "lume push --group '#' exits 2" test "$rc" = 2
check "naming the rule" grep -q "not a valid group name: no '+', '#' or '/'" "$T/g.out"
"$LUME" twin get --device 'a/b' --broker mqtt://127.0.0.1:1 >"$T/d.out" 2>&1; rc=$?
check "lume twin get --device 'a/b' exits 2 naming the rule" sh -c "[ $rc = 2 ] && grep -q 'device_id: expected' '$T/d.out'"

finish
