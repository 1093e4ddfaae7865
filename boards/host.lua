-- boards/host.lua — the machine lume runs on, read from /proc and /sys.
--
-- Temperatures come from the thermal zone and the first hwmon chip when the
-- machine has them (both report millidegrees); they are optional: a machine
-- without them (a container, a VM) skips them and keeps the rest.
-- Driver params and their defaults: docs/sampler.md.
return {
  name = "host",
  description = "This host: load average, available memory, CPU use and, where present, temperatures",
  sensors = {
    { name = "load", driver = "host.loadavg", unit = "load",
      rate = 0.2, min_rate = 0.01, max_rate = 10 },

    { name = "mem_available", driver = "host.mem", unit = "MiB",
      rate = 0.2, min_rate = 0.01, max_rate = 10 },

    { name = "cpu", driver = "host.cpu", unit = "%",
      rate = 1, min_rate = 0.1, max_rate = 10 },

    { name = "cpu_temp", driver = "file", unit = "C", optional = true,
      rate = 0.5, min_rate = 0.01, max_rate = 10,
      params = { path = "/sys/class/thermal/thermal_zone0/temp", scale = 0.001 } },

    { name = "board_temp", driver = "file", unit = "C", optional = true,
      rate = 0.5, min_rate = 0.01, max_rate = 10,
      params = { path = "/sys/class/hwmon/hwmon0/temp1_input", scale = 0.001 } },
  },
}
