-- tests/integration/hw_vm_board.lua — the board of the real-kernel test
-- (test_hw_vm.sh): registers of an i2c-stub chip at 0x48 on the stub's bus
-- (bus 0: the VM has no other I2C adapter), the kernel's lm75 driver bound
-- to the stub chip at 0x49 (read through hwmon), and, when the kernel has
-- gpio-sim, lines of its bank: levels, edge counts with and
-- without debounce.
local i2c = function(t) t.bus = 0; t.address = 0x48; return t end
return {
  name = "vm",
  description = "qemu VM: i2c-stub registers, lm75 over hwmon, gpio-sim",
  sensors = {
    { name = "reg_byte", driver = "i2c", unit = "raw", rate = 10,
      params = i2c { register = 0x00 } },
    { name = "temp_be", driver = "i2c", unit = "C", rate = 10,
      params = i2c { register = 0x02, size = "word", order = "be", scale = 0.0625 } },
    { name = "signed_word", driver = "i2c", unit = "raw", rate = 10,
      params = i2c { register = 0x04, size = "word", signed = 1, scale = 0.5 } },
    { name = "block24", driver = "i2c", unit = "raw", rate = 10,
      params = i2c { register = 0x10, size = "block", length = 3 } },
    { name = "lm75_temp", driver = "hwmon", unit = "C", rate = 10,
      params = { chip = "lm75", input = "temp1" } },
    { name = "gpio_in", driver = "gpio", unit = "level", rate = 10, optional = true,
      params = { chip = "gpio-sim.0-node0", line = 1 } },
    { name = "gpio_low", driver = "gpio", unit = "level", rate = 10, optional = true,
      params = { chip = "gpio-sim.0-node0", line = 2, active_low = 1 } },
    { name = "gpio_edges", driver = "gpio", unit = "edges", rate = 10, optional = true,
      params = { chip = "gpio-sim.0-node0", line = 3, mode = "edges" } },
    { name = "gpio_debounced", driver = "gpio", unit = "edges", rate = 10, optional = true,
      params = { chip = "gpio-sim.0-node0", line = 4, mode = "edges", debounce_ms = 2000 } },
  },
  outputs = {
    setpoint = { driver = "i2c.register", failsafe = 5, min = 0, max = 100,
                 params = i2c { register = 0x20, size = "word", scale = 0.0625 } },
    led = { driver = "gpio", failsafe = 0, params = { chip = "gpio-sim.0-node0", line = 5 } }, -- gpio-sim
    valve = { driver = "gpio", failsafe = 1, params = { chip = "gpio-sim.0-node0", line = 6 } }, -- gpio-sim
  },
}
