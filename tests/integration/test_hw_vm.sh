#!/usr/bin/env bash
# tests/integration/test_hw_vm.sh — lume's Linux hardware drivers against the
# real kernel: the distribution's own kernel (linux-image-amd64) boots under
# qemu-system-x86 (KVM when /dev/kvm is usable, else TCG) with an initramfs
# built here from busybox-static, lume, hwprobe (one driver call, for the
# drivers' errors: tests/integration/hwprobe.c), their shared libraries, a
# board file (hw_vm_board.lua) and a script (hw_vm_act.lua). In the VM, init
# (tests/integration/hw_vm_init.sh) loads i2c-stub (chips at 0x48 and 0x49)
# with i2c-dev and lm75, writes registers with busybox i2cset, binds the
# kernel's lm75 driver to 0x49, runs lume on the board and prints what `lume
# stats` saw, changes the registers, prints again, and prints everything to
# ttyS0, which this script parses. Outputs: the script drives an I2C
# register and two gpio-sim lines declared in the board with fail-safes;
# init reads them back (i2cget, gpio-sim's sysfs value) after the script
# set them, after `lume reload` of a version that fails at load (rolled
# back: the fail-safes), after the good version again, and after SIGTERM.
# gpio-sim (a configfs bank whose lines are pulled through sysfs): the
# kernel's own module, or, for a kernel built without it (Debian 12's), the
# kernel's gpio-sim.c built from the distribution's linux-source against its
# headers (gpio_sim_module.sh, cached in $BUILD/vm); when that fails too, the
# GPIO checks are a TAP SKIP that says why. See docs/hardware.md.
. "$(dirname "$0")/lib.sh"

need() { not_ok "real-kernel test can run" "$1" "install with: make deps-vm"; finish; exit 1; }
KIMG=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -n "$KIMG" ] && [ -r "$KIMG" ] || need "no readable /boot/vmlinuz-* (linux-image-amd64)"
KVER=${KIMG#/boot/vmlinuz-}
MODS=/lib/modules/$KVER
command -v qemu-system-x86_64 >/dev/null || need "qemu-system-x86_64 missing (qemu-system-x86)"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 || need "$BUSYBOX is missing or not static (busybox-static)"
PROBE="$BUILD/tests/it/hwprobe"
[ -x "$PROBE" ] || need "$PROBE not built (make all)"

# ---- the initramfs ---------------------------------------------------------
R=$T/root
mkdir -p "$R"/{bin,mods,proc,sys,dev,tmp,lume/boards,lume/scripts,lume/stdlib}
cp "$BUSYBOX" "$R/bin/busybox"
cp "$LUME" "$PROBE" "$R/bin/"
for b in "$LUME" "$PROBE"; do
  for lib in $(ldd "$b" | grep -o '/[^ ]*'); do cp -L --parents "$lib" "$R/" 2>/dev/null; done
done
for m in kernel/drivers/i2c/i2c-stub kernel/drivers/i2c/i2c-dev kernel/drivers/hwmon/lm75 \
         kernel/drivers/gpio/gpio-sim kernel/fs/configfs/configfs; do
  f=$(ls "$MODS/$m".ko* 2>/dev/null | head -1)
  [ -n "$f" ] || continue
  case "$f" in
    *.xz) xz -dc "$f" >"$R/mods/$(basename "$m").ko" ;;
    *.zst) zstd -qdc "$f" >"$R/mods/$(basename "$m").ko" ;;
    *) cp "$f" "$R/mods/$(basename "$m").ko" ;;
  esac
done
for m in i2c-stub i2c-dev lm75 configfs; do
  [ -f "$R/mods/$m.ko" ] || need "$MODS has no $m module"
done
# gpio-sim: the kernel's, else built from the distribution's kernel source
# (cached in $BUILD/vm); when neither works, init says why and the GPIO
# checks are a TAP SKIP with that reason
if [ ! -f "$R/mods/gpio-sim.ko" ]; then
  if ko=$(bash "$ROOT/tests/integration/gpio_sim_module.sh" "$KVER" "$BUILD/vm" 2>"$T/gpiosim.err"); then
    cp "$ko" "$R/mods/gpio-sim.ko"
    echo "# gpio-sim: $KVER has none; using $ko built from the distribution's kernel source"
  else
    echo "no gpio-sim module: $(tr '\n' ' ' <"$T/gpiosim.err")" >"$R/lume/gpio-why"
  fi
fi
cp -r "$ROOT"/stdlib/. "$R/lume/stdlib/"
cp "$ROOT/tests/integration/hw_vm_board.lua" "$R/lume/boards/vm.lua"
cp "$ROOT/tests/integration/hw_vm_act.lua" "$R/lume/act.lua"
cat >"$R/lume/lume.conf.lua" <<EOC
return { device_id = "vm", board = "vm", boards_dir = "/lume/boards",
         stdlib_dir = "/lume/stdlib", scripts_dir = "/lume/scripts", store = "/tmp/var",
         watch_scripts = false }
EOC
cp "$ROOT/tests/integration/hw_vm_init.sh" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$T/initrd.gz"

# ---- boot ----------------------------------------------------------------
# boot ACCEL...: run the VM to its end (init powers off); the console in $C
C=$T/console
boot() {
  rm -f "$C"
  start_bg qemu timeout 300 qemu-system-x86_64 "$@" -m 512 -smp 1 -M pc -nodefaults \
    -display none -no-reboot -serial "file:$C" -kernel "$KIMG" -initrd "$T/initrd.gz" \
    -append "console=ttyS0 earlyprintk=ttyS0 rdinit=/init panic=-1 quiet loglevel=3"
  QPID=$LAST_PID
}
# KVM when /dev/kvm opens, the CPU shows vmx or svm, and the kernel prints
# within 15 s under it (some nested setups accept KVM and then never run the
# guest: it stops after the boot stub's "Probing EDD"); else TCG
ACCEL=tcg
if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
  echo "# the CPU shows no vmx/svm flag (a VM without nested virtualization): emulating (TCG), slower"
  boot -accel tcg
elif (exec 3<>/dev/kvm) 2>/dev/null; then
  boot -accel kvm
  wait_for 15 grep -q 'Linux version' "$C" 2>/dev/null && ACCEL=kvm
  if [ "$ACCEL" = tcg ]; then
    kill "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null
    echo "# KVM did not run the guest (no kernel output in 15 s): emulating (TCG), slower"
    boot -accel tcg
  fi
else
  echo "# /dev/kvm cannot be opened: emulating (TCG), slower"
  boot -accel tcg
fi
wait "$QPID"
rc=$?
[ -z "${HW_VM_CONSOLE:-}" ] || cp "$C" "$HW_VM_CONSOLE"   # keep it to look at
[ "$rc" -eq 0 ] || not_ok "the VM ran to its end" "qemu exit $rc" "$(tail -20 "$C" 2>/dev/null)"
grep -q '^HW done' "$C" || { not_ok "init in the VM finished" "$(tail -30 "$C")"; finish; exit 1; }
ok "$KVER booted under qemu ($ACCEL), init finished"

# value KEY: the text after "HW KEY " on the console
value() { sed -n "s/^HW $1 //p" "$C" | tr -d '\r' | tail -1; }
# stat N SENSOR: that sensor's value in the Nth `lume stats`
stat() { value "stats$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['sensors']['$2']['value'])" 2>/dev/null; }
near() { python3 -c "import sys; sys.exit(0 if abs(float('$1') - float('$2')) < 1e-6 else 1)" 2>/dev/null; }
expect() {  # expect DESC GOT WANT
  if near "$2" "$3"; then ok "$1 ($2)"; else not_ok "$1" "got '$2', want $3"; fi
}

expect "i2c byte register read by lume" "$(stat 1 reg_byte)" 127
expect "i2c word, big-endian, scaled (0x0190 * 0.0625)" "$(stat 1 temp_be)" 25
expect "i2c word, signed (0xff38 * 0.5)" "$(stat 1 signed_word)" -100
expect "i2c block of 3 bytes, big-endian (0x010203)" "$(stat 1 block24)" 66051
expect "hwmon: the kernel's lm75 driver found by name, millidegrees to C" "$(stat 1 lm75_temp)" 25.5
expect "lume sees the byte register changed by i2cset" "$(stat 2 reg_byte)" 42
expect "lume sees the lm75 temperature change" "$(stat 2 lm75_temp)" 30
check "lume exits 0 on SIGTERM" [ "$(value lume_exit)" = 0 ]
# under `make asan` lume and hwprobe are instrumented (libasan goes into the
# initramfs with the other libraries): a report anywhere fails the test
check "no sanitizer report in the VM" \
  sh -c "[ '$(value lume_sanitizer)' = 0 ] && ! grep -q 'Sanitizer\|runtime error:' '$C'"
# outputs lume drives from the script act (hw_vm_act.lua), read back with
# i2cget: 21.5 / 0.0625 = 0x0158 and the fail-safe 5 / 0.0625 = 0x0050, big-endian on the wire
expect "the script's i2c.register output: 21.5 -> 0x0158, big-endian on the wire" \
  "$(value set_reg)" $((0x5801))
v=$(value reload_bad)
check "lume reload of a version that fails at load: refused, naming the error: $v" \
  grep -q "^exit=1 .*broken on purpose" <<<"$v"
expect "rolled back: the register holds its fail-safe 5 (0x0050)" "$(value rollback_reg)" $((0x5000))
fs=$(value stats3 | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['outputs']['setpoint']['failsafes'], d['scripts']['act']['status'])" 2>&1)
check "lume stats: the fail-safe counted, the old version still running ($fs)" \
  sh -c '[ "${1%% *}" -ge 1 ] && [ "${1#* }" = running ]' _ "$fs"
check "lume reload of the good version again: $(value reload_good)" \
  sh -c '[ "${1%% *}" = exit=0 ]' _ "$(value reload_good)"
expect "the good version drives the register again" "$(value again_reg)" $((0x5801))
expect "after SIGTERM the register holds its fail-safe" "$(value term_reg)" $((0x5000))
check "after SIGTERM lume logs the register's fail-safe" \
  grep -q '^HW fsterm .*output: setpoint: fail-safe 5 ' "$C"
v=$(value out_range)
check "i2c.register refuses a value that does not fit a byte: $v" \
  grep -q 'outside \[0, 255\]' <<<"$v"
v=$(value busy)
check "i2c on an address a kernel driver holds: $v" grep -q 'in use by a kernel driver' <<<"$v"
v=$(value nochip)
check "hwmon names the chips there when the chip is missing: $v" grep -q 'chips: lm75' <<<"$v"

g=$(value gpio)
case "$g" in
  unavailable*) echo "ok $((N += 1)) # SKIP gpio-sim: ${g#unavailable: }" ;;
  *)
    expect "gpio input pulled up by gpio-sim" "$(stat 1 gpio_in)" 1
    expect "gpio input, active_low, of a line pulled down" "$(stat 1 gpio_low)" 1
    expect "lume sees the gpio-sim line pulled down" "$(stat 2 gpio_in)" 0
    expect "gpio edges: 4 pull flips counted (kernel events)" "$(stat 2 gpio_edges)" 4
    expect "gpio edges with debounce_ms=2000: 4 quick flips count once" \
      "$(stat 2 gpio_debounced)" 1
    # led: line 5 pulled up, fail-safe 0; valve: line 6 pulled down, fail-safe 1
    expect "the script drives gpio output led high" "$(value set_led)" 1
    expect "the script drives gpio output valve low" "$(value set_valve)" 0
    expect "rolled back: led at its fail-safe 0 (its line is pulled up)" "$(value rollback_led)" 0
    expect "rolled back: valve at its fail-safe 1 (its line is pulled down)" "$(value rollback_valve)" 1
    expect "the good version drives led again" "$(value again_led)" 1
    expect "the good version drives valve again" "$(value again_valve)" 0
    check "on SIGTERM lume writes led's fail-safe 0 before it lets the line go" \
      grep -q '^HW fsterm .*output: led: fail-safe 0 ' "$C"
    check "on SIGTERM lume writes valve's fail-safe 1 before it lets the line go" \
      grep -q '^HW fsterm .*output: valve: fail-safe 1 ' "$C"
    expect "after exit the released led line reads its pull-up" "$(value term_led)" 1
    v=$(value gpio_busy)
    check "gpio on a line lume already holds: $v" grep -q "in use by 'lume'" <<<"$v"
    ;;
esac
finish
