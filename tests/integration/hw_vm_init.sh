#!/bin/busybox sh
# tests/integration/hw_vm_init.sh — /init of the real-kernel test's VM
# (test_hw_vm.sh). Prints "HW KEY VALUE" lines on ttyS0 for the host to
# parse, then powers off. Never waits on anything without a bound.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp/var
say() { echo "HW $*"; }

insmod /mods/i2c-stub.ko chip_addr=0x48,0x49 || say error insmod i2c-stub
insmod /mods/i2c-dev.ko || say error insmod i2c-dev
insmod /mods/lm75.ko || say error insmod lm75
B=0
for d in /sys/bus/i2c/devices/i2c-*; do
  grep -q stub "$d/name" && B=${d##*/i2c-}
done
say bus "$B"
# 0x48: the registers lume reads (SMBus words go low byte first)
i2cset -y "$B" 0x48 0x00 0x7f b
i2cset -y "$B" 0x48 0x02 0x9001 w     # big-endian 0x0190 = 400
i2cset -y "$B" 0x48 0x04 0x38ff w     # big-endian 0xff38 = -200
i2cset -y "$B" 0x48 0x10 0x01 b
i2cset -y "$B" 0x48 0x11 0x02 b
i2cset -y "$B" 0x48 0x12 0x03 b
# 0x49: an LM75 at 25.5 C (0x1980 big-endian), then the kernel's driver
i2cset -y "$B" 0x49 0x00 0x8019 w
echo lm75 0x49 >"/sys/bus/i2c/devices/i2c-$B/new_device"

# gpio-sim: one bank of 8 lines; line 1 pulled up, the rest pulled down
insmod /mods/configfs.ko
mount -t configfs none /sys/kernel/config
GPIO=""
if [ -f /lume/gpio-why ]; then
  say gpio "unavailable: $(cat /lume/gpio-why)"
elif ! insmod /mods/gpio-sim.ko; then
  say gpio "unavailable: insmod gpio-sim.ko failed"
else
  S=/sys/kernel/config/gpio-sim/lume
  mkdir $S $S/bank0 && echo 8 >$S/bank0/num_lines && echo 1 >$S/live && GPIO=yes
  SIM=/sys/devices/platform/$(cat $S/dev_name)/$(cat $S/bank0/chip_name)
  say gpio "chip $(cat $S/bank0/chip_name) at $SIM"
  echo pull-up >"$SIM/sim_gpio1/pull"
  echo pull-up >"$SIM/sim_gpio5/pull"   # the output led: fail-safe 0
fi
# the outputs script: a good version in place before lume starts; without
# gpio-sim, the board and the script lose their gpio-sim lines
[ -n "$GPIO" ] || sed -i '/-- gpio-sim$/d' /lume/boards/vm.lua /lume/act.lua
cp /lume/act.lua /lume/scripts/act.lua

# outs TAG REG LED VALVE: up to 10 s for the I2C output register (as i2cget
# reads it) and the gpio-sim lines of the led and valve outputs to read
# REG, LED and VALVE, then print what they read
outs() {
  i=0
  while [ $i -lt 50 ]; do
    r=$(($(i2cget -y "$B" 0x48 0x20 w)))
    l=-; v=-
    [ -n "$GPIO" ] && l=$(cat "$SIM/sim_gpio5/value") && v=$(cat "$SIM/sim_gpio6/value")
    [ "$r" = "$2" ] && { [ -z "$GPIO" ] || [ "$l/$v" = "$3/$4" ]; } && break
    sleep 0.2; i=$((i + 1))
  done
  say "$1_reg" "$r"; say "$1_led" "$l"; say "$1_valve" "$v"
}
# raw register values as i2cget reads a big-endian word (low byte first)
SET=$((0x5801))   # 21.5 / 0.0625 = 0x0158
FS=$((0x5000))    # the fail-safe 5 / 0.0625 = 0x0050

cd /lume
lume run --config /lume/lume.conf.lua >/tmp/lume.out 2>&1 &
P=$!
# lume answers `lume stats` once it runs (bounded: 30 s), then one more
# second so that every sensor has been read at 10 Hz
i=0
until lume stats --store /tmp/var >/dev/null 2>&1 || [ $i -ge 150 ]; do sleep 0.2; i=$((i + 1)); done
sleep 1
say stats1 "$(lume stats --store /tmp/var)"
i2cset -y "$B" 0x48 0x00 0x2a b
i2cset -f -y "$B" 0x49 0x00 0x001e w  # 30.0 C (-f: lm75 holds the address)
if [ -n "$GPIO" ]; then
  echo pull-down >"$SIM/sim_gpio1/pull"
  for v in pull-up pull-down pull-up pull-down; do
    echo $v >"$SIM/sim_gpio3/pull"
    echo $v >"$SIM/sim_gpio4/pull"
    sleep 0.05
  done
  say gpio_busy "$(hwprobe read gpio chip=gpio-sim.0-node0 line=1)"
fi
sleep 1
say stats2 "$(lume stats --store /tmp/var)"

# outputs driven by lume from the script act: (1) the good version set them
outs set "$SET" 1 0
# (2) a version that sets them too, then fails at load: rolled back, the
# fail-safes written (the old version stays, it set its values at load only)
{ cat /lume/act.lua; echo 'error("broken on purpose")'; } >/lume/scripts/act.lua
say reload_bad "$(lume reload act --config /lume/lume.conf.lua >/tmp/r 2>&1; echo "exit=$? $(tr '\n' ' ' </tmp/r)")"
outs rollback "$FS" 0 1
say stats3 "$(lume stats --store /tmp/var)"
# (3) the good version again drives them, then SIGTERM: the fail-safes
cp /lume/act.lua /lume/scripts/act.lua
say reload_good "$(lume reload act --config /lume/lume.conf.lua >/tmp/r 2>&1; echo "exit=$? $(tr '\n' ' ' </tmp/r)")"
outs again "$SET" 1 0
before=$(wc -l </tmp/lume.out)
kill -TERM $P
wait $P
say lume_exit $?
# after exit the register keeps the fail-safe; a gpio-sim line lume no
# longer requests reads its pull again (led 1, valve 0): the shutdown
# fail-safe of the lines shows in what lume logs after SIGTERM
outs term "$FS" 1 0
tail -n +$((before + 1)) /tmp/lume.out | grep 'fail-safe' | sed 's/^/HW fsterm /'
say lume_sanitizer "$(grep -c 'Sanitizer\|runtime error:' /tmp/lume.out)"
sed 's/^/HW lume.out /' /tmp/lume.out | head -20

# driver errors, through the drivers themselves (hwprobe)
say out_range "$(hwprobe write i2c.register 300 bus=$B address=0x48 register=0x21)"
say busy "$(hwprobe read i2c bus=$B address=0x49)"
say nochip "$(hwprobe read hwmon chip=nosuch input=temp1)"
say done
poweroff -f
