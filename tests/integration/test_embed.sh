#!/usr/bin/env bash
# The embedding API (bindings/lume.h) from an OEM's own program:
# examples/embed.c runs the runtime in slices and reads its measurements.
. "$(dirname "$0")/lib.sh"

EMBED="$BUILD/examples/embed"
D="$T/oem"; make_device "$D"
"$EMBED" "$D/lume.conf.lua" >"$T/embed.out" 2>"$T/embed.err"; rc=$?
check "the embedding example runs and exits 0" test $rc -eq 0
check "it prints a status line with the sensors and the default scripts" \
  grep -q "^status: temperature=.*vibration=.*scripts routing@1:[0-9a-f]* rules@1:[0-9a-f]* sampling@1:[0-9a-f]*" "$T/embed.out"
check "the stats JSON shows samples taken and no drops" sh -c \
  "grep '^stats: ' '$T/embed.out' | sed 's/^stats: //' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.vibration.drops | grep -qx 0 && \
   grep '^stats: ' '$T/embed.out' | sed 's/^stats: //' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.vibration.samples | grep -Eqx '[1-9][0-9]+'"
echo 'return { board = "nosuch" }' >"$T/bad.lua"
"$EMBED" "$T/bad.lua" >/dev/null 2>"$T/bad.err"; rc=$?
check "a bad config comes back to the embedding program as an error" test $rc -ne 0 -a -n "$(grep "unknown board 'nosuch'" "$T/bad.err")"
finish
