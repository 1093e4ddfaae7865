-- bench/bench4-rt.conf.lua — bench/bench4.conf.lua with the sampler thread
-- SCHED_FIFO and memory locked (sampler.realtime, sampler.lock_memory), for
-- the realtime variant of benchmark 1, compared with `bare_loop --realtime`.
-- Needs CAP_SYS_NICE and CAP_IPC_LOCK (root); otherwise lume logs a WARN,
-- runs with normal scheduling, and `lume stats` says process.realtime=false.
return {
  board = "bench4",
  boards_dir = "boards",
  scripts_dir = "../scripts",
  stdlib_dir = "../stdlib",
  log_level = "warn",
  status_interval_ms = 0,
  watch_scripts = false,
  sampler = { realtime = true, lock_memory = true },
}
