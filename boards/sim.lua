-- boards/sim.lua — a simulated device: no hardware needed, reproducible.
--
-- One simulated world per board: temperature and humidity share its air,
-- battery and power share its power supply. The world moves with time, not
-- with reads, so every rate below can be changed at run time (between
-- min_rate and max_rate) without changing what the sensors see.
-- Driver params and their defaults: docs/sampler.md.
return {
  name = "sim",
  description = "Simulated board: room temperature and humidity on a daily cycle, "
             .. "a vibration sensor with anomaly bursts, a battery on a flaky mains supply",
  sensors = {
    { name = "temperature", driver = "sim.temperature", unit = "C",
      rate = 1, min_rate = 0.1, max_rate = 100,
      params = { base = 22, amplitude = 4, day_s = 86400, walk = 0.02, noise = 0.05 } },

    { name = "humidity", driver = "sim.humidity", unit = "%RH",
      rate = 1, min_rate = 0.1, max_rate = 100,
      params = { base = 45, coupling = 3, walk = 0.05, noise = 0.3 } },

    -- feeds the anomaly alarm (scripts/rules.lua): alarm-critical, each
    -- reading wakes the loop at once (latency_ms = 0; docs/sampler.md)
    { name = "vibration", driver = "sim.vibration", unit = "g",
      rate = 100, min_rate = 10, max_rate = 2000, latency_ms = 0,
      params = { rms = 0.02, burst_every_s = 30, burst_s = 2, burst_gain = 25 } },

    { name = "battery", driver = "sim.battery", unit = "V",
      rate = 0.2, min_rate = 0.01, max_rate = 10,
      params = { full = 4.2, empty = 3.3, drain_per_h = 0.9, charge_per_h = 0.6 } },

    { name = "power", driver = "sim.power", unit = "mains",
      rate = 1, min_rate = 0.1, max_rate = 10,
      params = { mains_mean_s = 120, battery_mean_s = 60 } },
  },
}
