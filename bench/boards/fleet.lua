-- bench/boards/fleet.lua — a low-rate simulated device for the fleet
-- benchmark (bench/fleet/devices): the sim board's slow sensors at 1 Hz each, no
-- vibration channel. Every sensor keeps the default latency bound
-- (sampler.latency_ms): the four readings of a second share one wake-up of
-- the loop.
return {
  name = "fleet",
  description = "Low-rate simulated device: four sim sensors at 1 Hz (bench/fleet/devices)",
  sensors = {
    { name = "temperature", driver = "sim.temperature", unit = "C",
      rate = 1, min_rate = 0.01, max_rate = 10 },
    { name = "humidity", driver = "sim.humidity", unit = "%RH",
      rate = 1, min_rate = 0.01, max_rate = 10 },
    { name = "battery", driver = "sim.battery", unit = "V",
      rate = 1, min_rate = 0.01, max_rate = 10 },
    { name = "power", driver = "sim.power", unit = "mains",
      rate = 1, min_rate = 0.01, max_rate = 10 },
  },
}
