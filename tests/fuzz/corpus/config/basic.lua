return {
  device_id = "dev-1",
  board = "sim",
  log_level = "info",
  sandbox = { memory_limit = "4MiB", cpu_budget_ms = 20 },
  outbox = { commit_interval_ms = 100, synchronous = "full" },
  net = { url = "mqtts://broker.example:8883", client_id = "dev-1", keepalive_s = 30 },
  twin = { groups = { "fleet", "site-a" }, allow_unsigned = false },
}
