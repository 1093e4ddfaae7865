#!/usr/bin/env bash
# `lume record` and `lume test` (docs/testing-rules.md): a trace recorded
# from the sim board for a few seconds (every sensor at its board rate, CSV
# and JSON lines, stopped early by SIGINT keeping what it wrote), then fed
# to scripts/rules.lua by a user's spec in a folder of its own, run by
# `lume test` on the harness's simulated clock; a failing spec fails it,
# and a machine without busted is told so.
. "$(dirname "$0")/lib.sh"

# run from folders of their own, as a user would: boards and stdlib come from
# the data folder (here the source tree; test_install.sh runs an installed lume)
export LUME_DATADIR="$ROOT"
cd "$T" || exit 1
"$LUME" record --board sim --for 2s "$T/trace.csv" 2>"$T/rec.err"; rc=$?
check "lume record --board sim --for 2s exits 0" test $rc -eq 0
check "the trace starts with the header t,sensor,value" test "$(head -n 1 "$T/trace.csv")" = "t,sensor,value"
count() { grep -c ",$1," "$T/trace.csv"; }
vib=$(count vibration); temp=$(count temperature)
echo "# 2 s: $vib vibration readings (100 Hz), $temp temperature (1 Hz)"
check "vibration at its board rate, 100 Hz ($vib in 2 s)" test "$vib" -ge 150 -a "$vib" -le 230
check "temperature at 1 Hz ($temp in 2 s)" test "$temp" -ge 1 -a "$temp" -le 3
check "every line is t,sensor,value with a wall-clock t and a number" \
  awk -F, -v now="$(date +%s)" 'NR > 1 && !($1 > now - 60 && $1 <= now + 1 && $2 ~ /^[a-z_]+$/ && $3 + 0 == $3) { bad = 1 } END { exit bad }' "$T/trace.csv"
check "it says how many readings it wrote" grep -q "lume record: $(($(wc -l <"$T/trace.csv") - 1)) readings" "$T/rec.err"

"$LUME" record --board sim --for 1h "$T/trace.jsonl" 2>"$T/rec.err" &
PIDS+=($!); LAST_PID=$!
REC=$LAST_PID
check "JSON lines for a .jsonl file" wait_for 5 sh -c "grep -q '^{\"t\":[0-9.]*,\"sensor\":\"vibration\",\"value\":' '$T/trace.jsonl' 2>/dev/null"
kill -INT "$REC"; wait "$REC"; rc=$?
check "SIGINT stops it early (exit 0), keeping what it wrote" sh -c "[ $rc -eq 0 ] && grep -q 'stopped early' '$T/rec.err' && [ \$(wc -l <'$T/trace.jsonl') -gt 10 ]"
"$LUME" record --board nosuch --for 1s "$T/nosuch.csv" 2>"$T/nosuch.err"; rc=$?
check "an unknown board: exit 2, naming it, and no file" sh -c "[ $rc -eq 2 ] && grep -q \"unknown board 'nosuch'\" '$T/nosuch.err' && [ ! -e '$T/nosuch.csv' ]"
"$LUME" record --for 2x x 2>"$T/bad.err"; rc=$?
check "a bad --for is a usage error naming it" sh -c "[ $rc -eq 2 ] && grep -q \"got '2x'\" '$T/bad.err'"

# ---- a user's own project: the rules, a recorded trace, a spec --------------------------
mkdir -p "$T/proj/scripts" "$T/proj/spec"
cp "$ROOT/scripts/rules.lua" "$T/proj/scripts/"
# the recorded trace, with a hot spell written into it
awk -F, 'NR == 1 { print; next } { print } END { for (i = 0; i < 20; i++) printf "%.6f,temperature,33\n", $1 + 1 + i }' \
  "$T/trace.csv" >"$T/proj/spec/hot.csv"
cat >"$T/proj/spec/rules_spec.lua" <<'EOS'
local harness = require "lume.test"
describe("my rules", function()
  it("raise one over-temperature alarm in the recorded hot spell", function()
    local trace = harness.read_trace("spec/hot.csv")
    local h <close> = harness.new{ script = "scripts/rules.lua", trace = trace }
    local alarms = h:published("alarm/overtemp")
    assert.equal(1, #alarms)
    assert.equal("raised", alarms[1].value.state)
    assert.is_true(h:now() >= trace[#trace].t)
  end)
end)
EOS
cd "$T/proj" || exit 1
# an ASan build's lume_host.so needs the sanitizer loaded first into lua5.4
# (as `make asan` runs busted)
if readelf -d "$BUILD/lume_host.so" | grep -q 'NEEDED.*libasan'; then
  export LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so):$(${CC:-cc} -print-file-name=libubsan.so)"
  export ASAN_OPTIONS=detect_leaks=0
fi
"$LUME" test spec/rules_spec.lua >"$T/test.out" 2>&1; rc=$?
check "lume test runs the user's spec on the recorded trace: exit 0" sh -c "[ $rc -eq 0 ] && grep -q '1 success / 0 failures' '$T/test.out'"
[ "$rc" -eq 0 ] || { sed 's/^/#   /' "$T/test.out"; sed 's/^/#   trace: /' spec/hot.csv | tail -30; }
sed 's/assert.equal(1, #alarms)/assert.equal(2, #alarms)/' spec/rules_spec.lua >spec/wrong_spec.lua
"$LUME" test spec/wrong_spec.lua >"$T/wrong.out" 2>&1; rc=$?
check "a failing spec: exit 1, and busted says what failed" sh -c "[ $rc -eq 1 ] && grep -q 'wrong_spec.lua:7: Expected objects to be equal' '$T/wrong.out'"
"$LUME" test spec/rules_spec.lua -- -o TAP >"$T/tap.out" 2>&1
check "arguments after -- go to busted (-o TAP)" grep -q '^ok 1 - my rules' "$T/tap.out"
"$LUME" test spec/nope_spec.lua 2>"$T/nope.err"; rc=$?
check "a missing spec is a usage error naming it" sh -c "[ $rc -eq 2 ] && grep -q 'spec/nope_spec.lua: no such file' '$T/nope.err'"
mkdir -p "$T/nobusted"; ln -s "$(command -v lua5.4)" "$T/nobusted/lua5.4"
PATH="$T/nobusted" "$LUME" test spec/rules_spec.lua 2>"$T/nob.err"; rc=$?
check "without busted: exit 2, saying which package to install" sh -c "[ $rc -eq 2 ] && grep -q 'busted is not installed.*lua-busted' '$T/nob.err'"
cd "$T" || exit 1
finish
