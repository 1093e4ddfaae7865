-- bench/net/boards/fast.lua — the board of bench/net/run's latency and twin
-- push benchmarks: one simulated vibration sensor sampled at 1 kHz (the
-- board's maximum), so a sample's trip through the ring is part of what is
-- measured and ring drops during script swaps would show.
return {
  name = "fast",
  description = "Benchmark board: one vibration channel at 1 kHz",
  sensors = {
    { name = "vibration", driver = "sim.vibration", unit = "g",
      rate = 1000, min_rate = 1, max_rate = 1000 },
  },
}
