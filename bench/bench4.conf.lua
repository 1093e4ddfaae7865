-- bench/bench4.conf.lua — the config of `lume run` in benchmark 1 (sampler
-- lateness): the bench4 board (4 channels at 1 kHz) and the default scripts.
-- Paths are relative to this file; bench/run passes --store (a temp dir).
return {
  board = "bench4",
  boards_dir = "boards",
  scripts_dir = "../scripts",
  stdlib_dir = "../stdlib",
  log_level = "warn",
  status_interval_ms = 0,
  watch_scripts = false,
}
