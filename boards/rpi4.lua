-- boards/rpi4.lua — Raspberry Pi 4 Model B (BCM2711) with a small I/O kit.
--
-- Buses and pins (40-pin header, BCM numbering = line offset on the chip
-- labelled "pinctrl-bcm2711", /dev/gpiochip0 on Raspberry Pi OS and Debian):
--   I2C1  SDA GPIO2 (pin 3), SCL GPIO3 (pin 5)  -> /dev/i2c-1
--         (dtparam=i2c_arm=on in config.txt; i2c-dev loaded)
--   TMP102 temperature sensor at 0x48 (ADD0 to GND)
--   EMC2101 fan controller at 0x4c (fan duty register 0x4c, 0..63)
--   GPIO17 (pin 11) push button to GND, internal pull-up (active low)
--   GPIO27 (pin 13) door reed switch to GND, pull-up: edges counted
--   GPIO22 (pin 15) flow meter pulse output (open collector), pull-up
--   GPIO23 (pin 16) pump relay driver, GPIO24 (pin 18) status LED
-- The SoC temperature comes from the kernel's thermal hwmon "cpu_thermal".
-- Sensors that need the kit are optional: a bare Pi runs with what it has.
-- Outputs: scripts drive them with lume.output(name):set(v); each falls back
-- to its failsafe value when its script stops, is rolled back or crashes,
-- and on shutdown (docs/hardware.md). Driver params: docs/sampler.md.
local GPIO = "pinctrl-bcm2711"
return {
  name = "rpi4",
  description = "Raspberry Pi 4 with a TMP102, a button, a door switch, a flow meter, "
             .. "a pump relay, an LED and an EMC2101 fan controller",
  sensors = {
    { name = "soc_temp", driver = "hwmon", unit = "C", optional = true,
      rate = 0.5, min_rate = 0.01, max_rate = 10,
      params = { chip = "cpu_thermal", input = "temp1" } },

    -- TMP102: 12-bit two's complement, left-justified in a big-endian word:
    -- raw / 16 * 0.0625 C = raw * 0.00390625 C
    { name = "air_temp", driver = "i2c", unit = "C", optional = true,
      rate = 1, min_rate = 0.1, max_rate = 30,
      params = { bus = 1, address = 0x48, register = 0x00, size = "word", order = "be",
                 signed = 1, scale = 0.00390625 } },

    { name = "button", driver = "gpio", unit = "pressed", optional = true,
      rate = 20, min_rate = 1, max_rate = 200,
      params = { chip = GPIO, line = 17, bias = "pull-up", active_low = 1 } },

    { name = "door_events", driver = "gpio", unit = "edges", optional = true,
      rate = 2, min_rate = 0.1, max_rate = 50,
      params = { chip = GPIO, line = 27, bias = "pull-up", mode = "edges",
                 debounce_ms = 20 } },

    -- a hall-effect flow meter: ~7.5 pulses per L/min; count falling edges
    { name = "flow_pulses", driver = "gpio", unit = "pulses", optional = true,
      rate = 1, min_rate = 0.1, max_rate = 20,
      params = { chip = GPIO, line = 22, bias = "pull-up", mode = "edges",
                 edge = "falling" } },
  },
  outputs = {
    pump = { driver = "gpio", failsafe = 0,
             params = { chip = GPIO, line = 23, initial = 0 } },
    status_led = { driver = "gpio", failsafe = 0,
                   params = { chip = GPIO, line = 24, initial = 0 } },
    -- cooling fails safe to full speed
    fan_duty = { driver = "i2c.register", failsafe = 63,
                 params = { bus = 1, address = 0x4c, register = 0x4c, size = "byte" } },
  },
}
