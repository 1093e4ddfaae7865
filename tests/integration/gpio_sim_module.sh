#!/usr/bin/env bash
# tests/integration/gpio_sim_module.sh KVER OUTDIR — the kernel's own gpio-sim
# driver built as a module for kernel KVER, for a kernel built without it
# (Debian 12's: CONFIG_GPIO_SIM and the IRQ_SIM it needs are not set).
# Sources: drivers/gpio/gpio-sim.c and kernel/irq/irq_sim.c from the
# distribution's linux-source package of the same version, built against
# its linux-headers-KVER (both from `make deps-vm`). irq_sim.c goes into the
# module too, with one change: irq_to_desc() is not exported to modules, so
# the simulated interrupt is raised with generic_handle_irq() (the same
# handler, looked up by the kernel). Cached: OUTDIR/gpio-sim.ko is built
# once. Prints the module's path; on failure, why, on stderr, exit 1.
set -eu
KVER=$1
OUT=$2
KO=$OUT/gpio-sim-$KVER.ko
[ -f "$KO" ] && { echo "$KO"; exit 0; }
HDR=/usr/src/linux-headers-$KVER
[ -d "$HDR" ] || { echo "no $HDR (linux-headers-$KVER)" >&2; exit 1; }
SRC=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1)
[ -n "$SRC" ] || { echo "no /usr/src/linux-source-*.tar.xz (linux-source)" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/lume-gpiosim.XXXXXX")
trap 'rm -rf "$W"' EXIT
top=$(basename "$SRC" .tar.xz)
tar -xJf "$SRC" -C "$W" "$top/drivers/gpio/gpio-sim.c" "$top/drivers/gpio/gpiolib.h" \
  "$top/kernel/irq/irq_sim.c" "$top/include/linux/irq_sim.h"
M=$W/mod
mkdir -p "$M/include/linux"
cp "$W/$top/drivers/gpio/gpio-sim.c" "$M/gpio_sim_main.c"
cp "$W/$top/drivers/gpio/gpiolib.h" "$M/"
cp "$W/$top/include/linux/irq_sim.h" "$M/include/linux/"
sed 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' \
  "$W/$top/kernel/irq/irq_sim.c" >"$M/irq_sim.c"
grep -q 'generic_handle_irq(irqnum)' "$M/irq_sim.c" \
  || { echo "$SRC: irq_sim.c is not the one this script knows how to build" >&2; exit 1; }
printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio_sim_main.o irq_sim.o\nccflags-y := -I$(src)/include\n' \
  >"$M/Kbuild"
if ! make -s -C "$HDR" M="$M" modules >"$W/build.log" 2>&1; then
  echo "building gpio-sim failed:" >&2; tail -20 "$W/build.log" >&2; exit 1
fi
mkdir -p "$OUT"
cp "$M/gpio-sim.ko" "$KO"
echo "$KO"
