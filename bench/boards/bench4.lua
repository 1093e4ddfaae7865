-- bench/boards/bench4.lua — the sampler-lateness benchmark's board: four
-- simulated channels at 1 kHz each (bench/run, benchmark 1).
--
-- The sensor names are the ones the default scripts (scripts/) listen to.
-- scripts/sampling.lua adapts the vibration rate between min_rate and
-- max_rate; max_rate = 1000 keeps every channel at 1 kHz at most, so the
-- schedule is the same as `bare_loop --hz 1000 --channels 4`.
return {
  name = "bench4",
  description = "Benchmark board: temperature, humidity, vibration, battery, all at 1 kHz",
  sensors = {
    { name = "temperature", driver = "sim.temperature", unit = "C",
      rate = 1000, min_rate = 1, max_rate = 1000 },
    { name = "humidity", driver = "sim.humidity", unit = "%RH",
      rate = 1000, min_rate = 1, max_rate = 1000 },
    { name = "vibration", driver = "sim.vibration", unit = "g",
      rate = 1000, min_rate = 1, max_rate = 1000 },
    { name = "battery", driver = "sim.battery", unit = "V",
      rate = 1000, min_rate = 1, max_rate = 1000 },
  },
}
