#!/usr/bin/env bash
# Installs (docs/install.md): `make install` into a temporary DESTDIR; the
# OEM example (examples/oem.c: its own driver and module) built from
# another folder against the installed library with pkg-config and run; the
# installed lume run from another folder, finding its boards and stdlib;
# a config naming its boards and scripts relative to itself; `make
# uninstall` leaving nothing of ours; and the .deb (`make deb`): its
# contents, its maintainer scripts, and an install and purge into a
# throwaway root with `dpkg --root`.
. "$(dirname "$0")/lib.sh"

DEST="$T/dest"; P=/usr/local
mk() { make -s -C "$ROOT" BUILD="$BUILD" "$@"; }
mk install DESTDIR="$DEST" >"$T/install.out" 2>"$T/install.err"; rc=$?
check "make install DESTDIR=... succeeds" test $rc -eq 0
check "the binary, the libraries and the header are under PREFIX" test -x "$DEST$P/bin/lume" -a \
  -f "$DEST$P/lib/liblume.a" -a -f "$DEST$P/lib/liblume.so.0.1.0" -a -f "$DEST$P/include/lume.h"
check "liblume.so -> liblume.so.0 -> liblume.so.0.1.0, whose soname is liblume.so.0" sh -c \
  "[ \$(readlink '$DEST$P/lib/liblume.so') = liblume.so.0 ] && \
   [ \$(readlink '$DEST$P/lib/liblume.so.0') = liblume.so.0.1.0 ] && \
   readelf -d '$DEST$P/lib/liblume.so.0.1.0' | grep -q 'SONAME.*\[liblume.so.0\]'"
check "boards, stdlib and the default scripts are in PREFIX/share/lume" test \
  -f "$DEST$P/share/lume/boards/sim.lua" -a -f "$DEST$P/share/lume/stdlib/lume/rules.lua" \
  -a -f "$DEST$P/share/lume/scripts/rules.lua"
check "the web console's page is in PREFIX/share/lume/console" test \
  -f "$DEST$P/share/lume/console/index.html" -a -f "$DEST$P/share/lume/console/console.js" \
  -a -f "$DEST$P/share/lume/console/console.css"
U="$DEST$P/lib/systemd/system/lume.service"
check "lume.service: Type=notify, Restart=on-failure, the sampler's capabilities, /etc/lume, a state dir" sh -c \
  "grep -qx 'Type=notify' '$U' && grep -qx 'Restart=on-failure' '$U' && \
   grep -q '^AmbientCapabilities=.*CAP_SYS_NICE' '$U' && grep -qx 'StateDirectory=lume' '$U' && \
   grep -qx 'ExecStart=$P/bin/lume run --config /etc/lume/lume.conf.lua --store /var/lib/lume --quiet' '$U'"
check "a default /etc/lume/lume.conf.lua" grep -q 'board = "sim"' "$DEST/etc/lume/lume.conf.lua"
check "lume.pc names the version" grep -qx 'Version: 0.1.0' "$DEST$P/lib/pkgconfig/lume.pc"

# ---- the OEM example, from another folder, against the installed library
mkdir -p "$T/product"; cd "$T/product" || exit 1
export PKG_CONFIG_PATH="$DEST$P/lib/pkgconfig"
PC="pkg-config --define-variable=prefix=$DEST$P"
flags=$($PC --cflags --libs lume)
check "pkg-config --cflags --libs lume points into the DESTDIR ($flags)" sh -c \
  "echo '$flags' | grep -q -- '-I$DEST$P/include' && echo '$flags' | grep -q -- '-L$DEST$P/lib -llume'"
CC=${CC:-cc}
$CC -std=c11 -Wall -Wextra -Wpedantic -Werror "$ROOT/examples/oem.c" $flags -o oem 2>"$T/oem-cc.err"
check "examples/oem.c builds with pkg-config alone (-Werror)" test -x oem
asan=0; readelf -d "$BUILD/liblume.so.0" | grep -q 'NEEDED.*lib[a-z]*san' && asan=1
if [ $asan = 1 ]; then
  echo "# skipped: running oem (a sanitizer build's liblume wants its runtime preloaded)"
else
  LD_LIBRARY_PATH="$DEST$P/lib" ./oem "$T/product/work" 1 >"$T/oem.out" 2>"$T/oem.err"; rc=$?
  check "oem runs against the installed liblume.so and exits 0" test $rc -eq 0
  check "it loaded liblume from the DESTDIR" sh -c \
    "LD_LIBRARY_PATH='$DEST$P/lib' ldd ./oem | grep -q 'liblume.so.0 => $DEST$P/lib/liblume.so.0'"
  check "its script read the OEM driver (raw 206: channel 3, gain 2) through the OEM module" \
    grep -q "script calib: probe raw 206 -> 20.6 C (acme.calib 1.0)" "$T/oem.err"
  check "the driver was read at its rate, without errors" sh -c \
    "grep -Eq '^oem: [1-9][0-9]+ ADC reads' '$T/oem.out' && \
     grep '^stats: ' '$T/oem.out' | sed 's/^stats: //' | lua5.4 '$ROOT/tests/integration/jget.lua' sensors.probe.read_errors | grep -qx 0"
fi

# ---- the installed lume, from a folder with no boards/ or stdlib/
ILUME="$DEST$P/bin/lume"
check "lume config names the compiled-in data dir" sh -c \
  "LUME_DATADIR= '$ILUME' config | grep -q 'built in: $P/share/lume'"
: >"$T/run1.err"
CPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$T" && LUME_DATADIR="$DEST$P/share/lume" exec "$ILUME" run --store "$T/st1" --quiet \
  --console 127.0.0.1:$CPORT >"$T/run1.out" 2>"$T/run1.err") &
PIDS+=($!); pid=$!
wait_for 10 grep -q "on board sim" "$T/run1.err"
check "the installed lume serves the console's page from its data dir" sh -c \
  "python3 -c 'import urllib.request,sys; sys.exit(0 if b\"console.js\" in urllib.request.urlopen(\"http://127.0.0.1:$CPORT/\").read() else 1)'"
kill -INT $pid; wait $pid; rc=$?
check "the installed lume runs the sim board and the default scripts from elsewhere, exits 0" sh -c \
  "[ $rc -eq 0 ] && grep -q 'on board sim: 5 sensors' '$T/run1.err' && \
   grep -q 'rules loaded' '$T/run1.err' && ! grep -q ERROR '$T/run1.err'"
if [ ! -e "$P/share/lume/boards/sim.lua" ]; then
  LUME_DATADIR= "$ILUME" run --store "$T/st2" --quiet >/dev/null 2>"$T/run2.err"; rc=$?
  check "without LUME_DATADIR it looks in the compiled-in $P/share/lume (not installed here: exit 2)" \
    sh -c "[ $rc -eq 2 ] && grep -q 'there is no $P/share/lume/boards/sim.lua' '$T/run2.err'"
fi
# a config that names its board and scripts relative to itself
mkdir -p "$T/site/boards" "$T/site/rules"
cp "$ROOT/boards/sim.lua" "$T/site/boards/plant.lua"
echo 'lume.on_sample("temperature", function(v) lume.log.info("site rule saw %.1f", v) end)' \
  >"$T/site/rules/site.lua"
cat >"$T/site/dev.lua" <<'EOC'
return { board = "boards/plant.lua", scripts_dir = "rules", store = "var", status_interval_ms = 0 }
EOC
cd "$T/product" || exit 1
: >"$T/run3.err"
LUME_DATADIR="$DEST$P/share/lume" "$ILUME" run --config ../site/dev.lua >"$T/run3.out" 2>"$T/run3.err" &
PIDS+=($!); pid=$!
wait_for 10 grep -q "site rule saw" "$T/run3.err"
kill -INT $pid; wait $pid; rc=$?
check "lume run --config ../site/dev.lua from elsewhere: board, scripts and store relative to the config" \
  sh -c "[ $rc -eq 0 ] && grep -q 'on board $T/site/boards/plant.lua: 5 sensors, store $T/site/var' '$T/run3.err' && \
         grep -q 'site rule saw' '$T/run3.err' && test -d '$T/site/var'"

# ---- lume test from the installed lume: the harness and lume_host.so in place
check "lume_host.so is installed in PREFIX/lib/lume" test -f "$DEST$P/lib/lume/lume_host.so"
mkdir -p "$T/rules/spec"; cp "$ROOT/scripts/rules.lua" "$T/rules/"
cat >"$T/rules/spec/r_spec.lua" <<'EOS'
local harness = require "lume.test"
it("raises one alarm", function()
  local h <close> = harness.new{ script = "rules.lua" }
  h:feed(harness.generate{ sensor = "temperature", to = 30, rate = 1, value = function(t) return t > 10 and 35 or 20 end })
  assert.equal(1, #h:published("alarm/overtemp"))
end)
EOS
pre=; [ $asan = 0 ] || pre="$(${CC:-cc} -print-file-name=libasan.so):$(${CC:-cc} -print-file-name=libubsan.so)"
(cd "$T/rules" && LD_PRELOAD=$pre ASAN_OPTIONS=detect_leaks=0 LUME_DATADIR="$DEST$P/share/lume" \
  "$ILUME" test spec/r_spec.lua >"$T/ltest.out" 2>&1); rc=$?
check "the installed lume test runs a spec with the installed harness, from elsewhere" sh -c \
  "[ $rc -eq 0 ] && grep -q '1 success / 0 failures' '$T/ltest.out'" || sed 's/^/#   /' "$T/ltest.out"

# ---- CFLAGS on the command line add to the project's flags
check "make CFLAGS=... keeps -Wall and the include paths, and adds the given flags" sh -c \
  "make -s -n -B -C '$ROOT' BUILD='$BUILD' CFLAGS=-DLUME_PROBE_FLAG '$BUILD/core/base/log.o' '$BUILD/bindings/api.o' \
   | grep -c -- '-Wall.*-Icore/base.*-DLUME_PROBE_FLAG' | grep -qx 2"

# ---- uninstall: exactly what was installed
mkdir -p "$DEST$P/bin"; echo mine >"$DEST$P/bin/other-tool"
mk uninstall DESTDIR="$DEST" >"$T/uninstall.out" 2>&1
left=$(cd "$DEST" && find . ! -type d | sort | tr '\n' ' ')
check "make uninstall removes every file it installed, and nothing else (left: $left)" \
  test "$left" = "./usr/local/bin/other-tool "
check "and the folders it made, unless something else lives there" sh -c \
  "[ -z \"\$(cd '$DEST' && find . -type d ! -name . | grep -v '^./usr$\|^./usr/local$\|^./usr/local/bin$')\" ]"
mk install DESTDIR="$DEST" >/dev/null 2>&1
echo '-- mine' >>"$DEST/etc/lume/lume.conf.lua"
mk uninstall DESTDIR="$DEST" >"$T/uninstall2.out" 2>&1
check "an edited /etc/lume/lume.conf.lua is kept by uninstall, and said so" sh -c \
  "grep -q -- '-- mine' '$DEST/etc/lume/lume.conf.lua' && grep -q 'changed since it was installed: kept' '$T/uninstall2.out'"

# ---- the .deb
mk deb >"$T/deb.out" 2>"$T/deb.err"; rc=$?
DEB=$(ls "$BUILD"/lume_*_*.deb 2>/dev/null | head -1)
check "make deb builds a .deb" test $rc -eq 0 -a -n "$DEB"
if [ -n "$DEB" ]; then
  dpkg-deb -I "$DEB" >"$T/deb.info"; dpkg-deb -c "$DEB" >"$T/deb.list"
  MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
  check "its control: package lume, Depends from dpkg-shlibdeps, /etc/lume/lume.conf.lua a conffile" sh -c \
    "grep -q '^ Package: lume' '$T/deb.info' && grep -q '^ Depends:.*liblua5.4-0' '$T/deb.info' && \
     dpkg-deb -e '$DEB' '$T/ctl' && grep -qx /etc/lume/lume.conf.lua '$T/ctl/conffiles'"
  check "its maintainer scripts are there, executable and valid sh" sh -c \
    "for s in postinst prerm postrm; do test -x '$T/ctl/'\$s && sh -n '$T/ctl/'\$s || exit 1; done"
  check "its files: /usr paths, the multiarch library with its links, the unit, the data" sh -c \
    "grep -q ' ./usr/bin/lume$' '$T/deb.list' && grep -q ' ./usr/lib/$MA/liblume.so.0 -> liblume.so.0.1.0$' '$T/deb.list' && \
     grep -q ' ./lib/systemd/system/lume.service$' '$T/deb.list' && grep -q ' ./usr/share/lume/boards/sim.lua$' '$T/deb.list' && \
     grep -q ' ./usr/lib/$MA/pkgconfig/lume.pc$' '$T/deb.list' && ! grep -q 'install.manifest' '$T/deb.list'"
  # postinst on this machine, with the commands that would change it
  # replaced by ones that only record their arguments
  mkdir -p "$T/stubs"
  for c in useradd systemctl; do printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' $c "$T" >"$T/stubs/$c"; done
  printf '#!/bin/sh\nexit 2\n' >"$T/stubs/getent"; chmod +x "$T/stubs"/*
  PATH="$T/stubs:$PATH" DPKG_ROOT="$T/nowhere" sh "$T/ctl/postinst" configure
  check "postinst into another root (DPKG_ROOT) touches nothing" test ! -e "$T/calls"
  PATH="$T/stubs:$PATH" sh "$T/ctl/postinst" configure; rc=$?
  if [ -d /run/systemd/system ]; then want='systemctl enable lume.service'; else want=''; fi
  check "postinst makes the lume system user, and enables the service only under systemd" sh -c \
    "[ $rc -eq 0 ] && grep -q '^useradd --system .* lume$' '$T/calls' && \
     { [ -z '$want' ] && ! grep -q systemctl '$T/calls' || grep -q '$want' '$T/calls'; }"
  # dpkg itself, into a throwaway root; scripts run chrootless (DPKG_ROOT
  # set, so they do nothing); the root has no libc: dependencies forced
  R="$T/root"; mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"; : >"$R/var/lib/dpkg/status"
  D="dpkg --root=$R --force-script-chrootless --force-not-root --log=/dev/null"
  $D --force-depends -i "$DEB" >"$T/dpkg-i.out" 2>&1
  check "dpkg --root installs it: lume is 'install ok installed'" sh -c \
    "$D -s lume | grep -qx 'Status: install ok installed' && test -x '$R/usr/bin/lume'"
  check "the packaged lume has /usr/share/lume compiled in" sh -c \
    "LUME_DATADIR= '$R/usr/bin/lume' config | grep -q 'built in: /usr/share/lume'"
  : >"$T/run4.err"
  LUME_DATADIR="$R/usr/share/lume" "$R/usr/bin/lume" run --store "$T/st4" --quiet >/dev/null 2>"$T/run4.err" &
  PIDS+=($!); pid=$!
  wait_for 10 grep -q "on board sim" "$T/run4.err"
  kill -INT $pid; wait $pid; rc=$?
  check "the packaged lume runs" sh -c "[ $rc -eq 0 ] && grep -q 'on board sim: 5 sensors' '$T/run4.err'"
  $D -r lume >/dev/null 2>&1
  check "dpkg -r removes its files and keeps the conffile" sh -c \
    "test ! -e '$R/usr/bin/lume' -a ! -e '$R/usr/share/lume/boards/sim.lua' -a -f '$R/etc/lume/lume.conf.lua'"
  $D -P lume >/dev/null 2>&1
  left=$(cd "$R" && find . ! -type d ! -path './var/lib/dpkg/*' | tr '\n' ' ')
  check "dpkg -P leaves nothing of it (left: $left)" test -z "$left"
fi
finish
