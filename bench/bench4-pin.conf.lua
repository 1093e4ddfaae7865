-- bench/bench4-pin.conf.lua — bench/bench4.conf.lua with the sampler thread pinned
-- alone on CPU 1 and the loop and watchdog on the other CPUs (sampler.cpu),
-- normal scheduling: the variant of benchmark 1 that needs no privilege.
return {
  board = "bench4",
  boards_dir = "boards",
  scripts_dir = "../scripts",
  stdlib_dir = "../stdlib",
  log_level = "warn",
  status_interval_ms = 0,
  watch_scripts = false,
  sampler = { cpu = 1 },
}
