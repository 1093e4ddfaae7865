#!/usr/bin/env bash
# The embedding API (bindings/lume.h) from an OEM's own program:
# examples/embed.c runs the runtime in slices and reads its measurements,
# built from lume.h alone against liblume.so. Also: lume.h on its own
# (C and C++, few lines once preprocessed) and what liblume.so exports
# (`make symbols` compares the whole set with the header).
. "$(dirname "$0")/lib.sh"

EMBED="$BUILD/examples/embed"
SO="$BUILD/liblume.so.0"
D="$T/oem"; make_device "$D"
"$EMBED" "$D/lume.conf.lua" >"$T/embed.out" 2>"$T/embed.err"; rc=$?
check "the embedding example runs and exits 0" test $rc -eq 0
check "it prints a status line with the sensors and the default scripts" \
  grep -q "^status: temperature=.*vibration=.*scripts connectivity@1:[0-9a-f]* routing@1:[0-9a-f]* rules@1:[0-9a-f]* sampling@1:[0-9a-f]*" "$T/embed.out"
check "the stats JSON shows samples taken and no drops" sh -c \
  "grep '^stats: ' '$T/embed.out' | sed 's/^stats: //' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.vibration.drops | grep -qx 0 && \
   grep '^stats: ' '$T/embed.out' | sed 's/^stats: //' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.vibration.samples | grep -Eqx '[1-9][0-9]+'"
check "the runtime's log goes to the program's own sink, and only there" sh -c \
  "grep -q '^log: info lume: device it-device on board sim' '$T/embed.err' && \
   ! grep -v '^log: ' '$T/embed.err' | grep -q ."
check "lume_version() matches the header it was built against" \
  grep -Eq '^lume ([0-9]+\.[0-9]+\.[0-9]+) \(built against \1\)$' "$T/embed.out"
echo 'return { board = "nosuch" }' >"$T/bad.lua"
"$EMBED" "$T/bad.lua" >/dev/null 2>"$T/bad.err"; rc=$?
check "a bad config comes back to the embedding program as an error" test $rc -ne 0 -a -n "$(grep "unknown board 'nosuch'" "$T/bad.err")"

# lume.h alone: a copy in an empty folder is all these compiles can see.
mkdir -p "$T/inc"; cp "$ROOT/bindings/lume.h" "$T/inc/"
CC=${CC:-cc}
check "lume.h compiles alone as C99 (-Wall -Wextra -Wpedantic -Werror)" \
  "$CC" -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c "$T/inc/lume.h"
lines=$("$CC" -E -P -x c "$T/inc/lume.h" | wc -l)
check "lume.h preprocessed is small ($lines lines, under 400: no lws, Lua or core headers)" \
  test "$lines" -lt 400
check "the example compiles with lume.h alone on the include path" \
  "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$T/inc" -c "$ROOT/examples/embed.c" -o "$T/embed.o"
check "and links with liblume.so alone" \
  "$CC" -o "$T/embed-so" "$T/embed.o" -L"$BUILD" -llume
# a sanitizer build's library wants its runtime loaded first: link, do not run
asan=0; readelf -d "$SO" | grep -q 'NEEDED.*lib[a-z]*san' && asan=1
if command -v g++ >/dev/null; then
  check "lume.h compiles alone as C++11 (g++ -Wall -Wextra -Wpedantic -Werror)" \
    g++ -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only "$T/inc/lume.h"
  cat >"$T/cxx.cc" <<'EOC'
#include <cstdio>
#include "lume.h"
int main()
{
    lume_config *cfg = lume_config_new();
    char *err = nullptr;
    int r = lume_config_set_int(cfg, "sandbox.memory_limt", 1, &err);
    std::printf("%s %d %s\n", lume_version(), r, err ? err : "");
    lume_free(err);
    lume_config_free(cfg);
    return 0;
}
EOC
  check "a C++ program links against liblume.so (extern \"C\")" \
    g++ -std=c++11 -Wall -Wextra -Werror -I"$T/inc" "$T/cxx.cc" -o "$T/cxx" -L"$BUILD" -llume -Wl,-rpath,"$BUILD"
  if [ $asan = 0 ]; then
    check "and calls it" sh -c "'$T/cxx' | grep -q \"^0\\.[0-9.]* -2 .*did you mean 'sandbox.memory_limit'\""
  fi
else
  ok "# SKIP g++ not installed (make deps installs build-essential)"
fi
check "liblume.so has the soname liblume.so.0" sh -c "readelf -d '$SO' | grep -q 'SONAME.*\\[liblume.so.0\\]'"
check "it exports lume_runtime_new and keeps internals (lume_runtime_loop, lume_log) hidden" sh -c \
  "nm -D --defined-only '$SO' | grep -q ' T lume_runtime_new@' && \
   ! nm -D --defined-only '$SO' | grep -Eq ' (lume_runtime_loop|lume_log)(@|$)'"
finish
