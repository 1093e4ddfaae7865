-- boards/beaglebone-black.lua — BeagleBone Black (AM335x) with an I/O cape.
--
-- GPIO banks are four chips of 32 lines, found by their labels:
--   gpio0 "44e07000.gpio", gpio1 "4804c000.gpio", gpio2 "481ac000.gpio",
--   gpio3 "481ae000.gpio"; a header pin GPIOb_n is line n of bank b
--   (the pin must be muxed as GPIO: config-pin P9_12 gpio, or the overlay).
--   P9_12 = GPIO1_28  limit switch to GND (pull-up, active low)
--   P9_15 = GPIO1_16  tachometer pulses (rising edges counted)
--   P8_12 = GPIO1_12  valve relay,  P8_14 = GPIO0_26  alarm buzzer
--   I2C2  P9_19 SCL / P9_20 SDA -> /dev/i2c-2 (enabled by the default device tree)
--     an INA219 power monitor at 0x40: bus voltage register 0x02
--     (big-endian, bits 15..3, 4 mV/bit);
--     an MCP23008 port expander at 0x20: its output latch (register 0x0a);
--     its IODIR (0x00) is set to outputs at boot: i2cset -y 2 0x20 0x00 0x00
--   ADC   AIN0 (P9_39), AIN1 (P9_40): IIO device "TI-am335x-adc.0.auto",
--         12 bits over 0..1.8 V (no scale file: values are counts 0..4095)
-- Outputs fall back to their failsafe values when their script stops, is
-- rolled back or crashes, and on shutdown (docs/hardware.md).
local GPIO0, GPIO1 = "44e07000.gpio", "4804c000.gpio"
return {
  name = "beaglebone-black",
  description = "BeagleBone Black with a limit switch, a tachometer, an INA219, "
             .. "two analog inputs, a valve relay, a buzzer and an MCP23008 expander",
  sensors = {
    { name = "limit_switch", driver = "gpio", unit = "closed", optional = true,
      rate = 20, min_rate = 1, max_rate = 200,
      params = { chip = GPIO1, line = 28, bias = "pull-up", active_low = 1 } },

    { name = "tach_pulses", driver = "gpio", unit = "pulses", optional = true,
      rate = 1, min_rate = 0.1, max_rate = 20,
      params = { chip = GPIO1, line = 16, mode = "edges", edge = "rising" } },

    -- INA219 bus voltage: (raw >> 3) * 4 mV = raw * 0.0005 V
    { name = "bus_voltage", driver = "i2c", unit = "V", optional = true,
      rate = 2, min_rate = 0.1, max_rate = 50,
      params = { bus = 2, address = 0x40, register = 0x02, size = "word", order = "be",
                 scale = 0.0005 } },

    { name = "ain0", driver = "iio", unit = "counts", optional = true,
      rate = 10, min_rate = 0.1, max_rate = 200,
      params = { device = "TI-am335x-adc.0.auto", channel = "voltage0" } },

    { name = "ain1", driver = "iio", unit = "counts", optional = true,
      rate = 10, min_rate = 0.1, max_rate = 200,
      params = { device = "TI-am335x-adc.0.auto", channel = "voltage1" } },
  },
  outputs = {
    valve = { driver = "gpio", failsafe = 0,
              params = { chip = GPIO1, line = 12, initial = 0 } },
    buzzer = { driver = "gpio", failsafe = 0,
               params = { chip = GPIO0, line = 26, initial = 0 } },
    expander = { driver = "i2c.register", failsafe = 0,
                 params = { bus = 2, address = 0x20, register = 0x0a, size = "byte" } },
  },
}
