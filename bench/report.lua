-- bench/report.lua — turns the JSON the benchmarks printed into the tables
-- bench/run shows. Called by bench/run only:
--
--   lua5.4 bench/report.lua sampler BARE.json PEER.json LUME_STATS.json [NOSCRIPTS_STATS.json]
--   lua5.4 bench/report.lua sampler-rt BARE_RT.json LUME_RT_STATS.json
--   lua5.4 bench/report.lua sampler-pin BARE.json LUME_PIN_STATS.json
--   lua5.4 bench/report.lua outbox OUTBOX.json PUBLISH.json
--   lua5.4 bench/report.lua memory LUME_STATS.json RSS ANON FILE LUA_RSS LUA_ANON LUA_FILE
--                                  LUA_STATE_BYTES      (RSS figures in KiB)
--
-- Every figure printed comes from those files/arguments; a goal is "yes" or
-- "NO" from the figures, never assumed.

local json = require "dkjson"

local function load(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  local v, _, err = json.decode(text)
  if not v then error(path .. ": not JSON (" .. tostring(err) .. "): " .. text) end
  return v
end

local function num(x, digits)
  if x == nil then return "-" end
  if type(x) ~= "number" then return tostring(x) end
  if digits then return string.format("%." .. digits .. "f", x) end
  local s = string.format("%.0f", x)
  -- thousands separators for readability
  local int = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (int:gsub("^,", ""))
end

local function ratio(a, b)
  if type(a) ~= "number" or type(b) ~= "number" or b == 0 then return "-" end
  return string.format("%.2fx", a / b)
end

local function yesno(ok) return ok and "yes" or "NO" end

-- Print rows (arrays of strings) as a Markdown-style table with aligned columns.
local function table_out(head, rows)
  local w = {}
  for i, h in ipairs(head) do w[i] = utf8.len(h) end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i], utf8.len(c)) end
  end
  local function line(r)
    local out = {}
    for i, c in ipairs(r) do out[i] = c .. string.rep(" ", w[i] - utf8.len(c)) end
    print("| " .. table.concat(out, " | ") .. " |")
  end
  line(head)
  local sep = {}
  for i = 1, #head do sep[i] = string.rep("-", w[i]) end
  print("|-" .. table.concat(sep, "-|-") .. "-|")
  for _, r in ipairs(rows) do line(r) end
end

local mode = arg[1]

-- lume stats gives percentiles per channel: take the worst channel for
-- each percentile; sum samples, overruns and drops.
local function worst_of(stats)
  local w = { p50 = 0, p99 = 0, p999 = 0, max = 0, samples = 0, overruns = 0, drops = 0,
              names = {} }
  for name, s in pairs(stats.sensors) do
    w.names[#w.names + 1] = name
    w.p50 = math.max(w.p50, s.late_p50_us)
    w.p99 = math.max(w.p99, s.late_p99_us)
    w.p999 = math.max(w.p999, s.late_p999_us)
    w.max = math.max(w.max, s.late_max_us)
    w.samples = w.samples + s.samples
    w.overruns = w.overruns + s.overruns
    w.drops = w.drops + s.drops
  end
  table.sort(w.names)
  return w
end

if mode == "sampler" then
  local bare, peer, stats = load(arg[2]), load(arg[3]), load(arg[4])
  local bare_stats = arg[5] and load(arg[5])
  local w = worst_of(stats)
  local w0 = bare_stats and worst_of(bare_stats)
  local us = function(x) return x and (num(x, 1) .. " µs") or "-" end
  local head = { "what", "lume", "floor: bare C loop", "peer: Lua 5.3 loop",
                 "lume/floor", "lume/peer", "goal", "met?", "lume, no scripts" }
  local goal_p99 = bare.p99_us * 1.25
  local rows = {
    { "lateness p50", us(w.p50), us(bare.p50_us), us(peer.p50_us),
      ratio(w.p50, bare.p50_us), ratio(w.p50, peer.p50_us), "", "", us(w0 and w0.p50) },
    { "lateness p99", us(w.p99), us(bare.p99_us), us(peer.p99_us),
      ratio(w.p99, bare.p99_us), ratio(w.p99, peer.p99_us),
      "<= 1.25x floor (" .. num(goal_p99, 1) .. " µs)", yesno(w.p99 <= goal_p99),
      us(w0 and w0.p99) },
    { "lateness p99.9", us(w.p999), us(bare.p999_us), us(peer.p999_us),
      ratio(w.p999, bare.p999_us), ratio(w.p999, peer.p999_us), "", "", us(w0 and w0.p999) },
    { "lateness max", us(w.max), us(bare.max_us), us(peer.max_us),
      ratio(w.max, bare.max_us), ratio(w.max, peer.max_us), "", "", us(w0 and w0.max) },
    { "samples taken", num(w.samples), num(bare.samples), num(peer.samples), "", "", "", "",
      num(w0 and w0.samples) },
    { "overruns (slots skipped)", num(w.overruns), num(bare.overruns), num(peer.overruns),
      "", "", "", "", num(w0 and w0.overruns) },
    { "ring drops", num(w.drops), "-", "-", "", "", "0", yesno(w.drops == 0),
      num(w0 and w0.drops) },
  }
  table_out(head, rows)
  print(("lume: worst of its %d channels (%s) for each percentile — `lume stats` "
    .. "reports percentiles per channel; samples, overruns and drops are summed. "
    .. "Sampler realtime (SCHED_FIFO): %s; bare loop realtime: %s. Lua peer timer "
    .. "slack 1 ns: %s."):format(#w.names, table.concat(w.names, ", "),
    tostring(stats.process.realtime), tostring(bare.realtime), tostring(peer.timerslack_1ns)))
  local scripts = {}
  for name, s in pairs(stats.scripts) do
    scripts[#scripts + 1] = ("%s %s (%d calls, %d errors, %d budget overruns)"):format(
      name, s.status, s.calls, s.errors, s.budget_overruns)
  end
  table.sort(scripts)
  print("scripts during the run: " .. table.concat(scripts, "; "))

elseif mode == "sampler-rt" or mode == "sampler-pin" then
  local bare, stats = load(arg[2]), load(arg[3])
  local w = worst_of(stats)
  local us = function(x) return num(x, 1) .. " µs" end
  local head = mode == "sampler-rt"
    and { "what", "lume, SCHED_FIFO", "floor: bare C loop, SCHED_FIFO", "lume/floor", "goal", "met?" }
    or { "what", "lume, sampler.cpu = 1", "floor: bare C loop", "lume/floor", "goal", "met?" }
  local goal_p99 = bare.p99_us * 1.25
  table_out(head, {
    { "lateness p50", us(w.p50), us(bare.p50_us), ratio(w.p50, bare.p50_us), "", "" },
    { "lateness p99", us(w.p99), us(bare.p99_us), ratio(w.p99, bare.p99_us),
      "<= 1.25x floor (" .. num(goal_p99, 1) .. " µs)", yesno(w.p99 <= goal_p99) },
    { "lateness p99.9", us(w.p999), us(bare.p999_us), ratio(w.p999, bare.p999_us), "", "" },
    { "lateness max", us(w.max), us(bare.max_us), ratio(w.max, bare.max_us), "", "" },
    { "samples taken", num(w.samples), num(bare.samples), "", "", "" },
    { "overruns (slots skipped)", num(w.overruns), num(bare.overruns), "", "", "" },
    { "ring drops", num(w.drops), "-", "", "0", yesno(w.drops == 0) },
  })
  local rt_lume, rt_bare = stats.process.realtime, bare.realtime
  print(("realtime in effect: lume %s, bare loop %s%s"):format(tostring(rt_lume),
    tostring(rt_bare), (rt_lume and rt_bare) and ""
      or " — refused here (needs CAP_SYS_NICE/CAP_IPC_LOCK): these are normal-scheduling figures"))

elseif mode == "outbox" then
  local ob, pub = load(arg[2]), load(arg[3])
  local L, R, B = ob.lume, ob.sqlite, ob.backlog
  local function rate(side) return ("%s msg/s (%s–%s)"):format(num(side.median), num(side.min), num(side.max)) end
  local function mb(x) return x and ("%.1f MB"):format(x / 1e6) or "-" end
  local function kb(x) return x and (num(x / 1024) .. " KiB") or "-" end
  local function ms(x) return x and (num(x, 2) .. " ms") or "-" end
  local head = { "what", "lume", "floor", "lume/floor", "goal", "met?" }
  local rows = {
    { ("outbox, %s msgs of %d B appended, committed, checkpointed, closed (batches of %d)"):format(
        num(ob.messages), ob.payload, ob.batch),
      rate(L), "raw SQLite: " .. rate(R), ratio(L.median, R.median),
      ">= 200,000 msg/s", yesno(L.median >= 200000) },
    { "  CPU per message (the whole process: committer, checkpointer included)",
      num(L.cpu_us_median, 2) .. " µs", "raw SQLite: " .. num(R.cpu_us_median, 2) .. " µs",
      ratio(L.cpu_us_median, R.cpu_us_median), "", "" },
  }
  if B then
    local open_goal = B.open_empty_ms + 5
    local size_goal = 8 * 1024 * 1024
    local drained = B.size_drained_open
    for _, r in ipairs {
      { "open an empty outbox", ms(B.open_empty_ms), "raw SQLite open + max(id): " .. ms(B.raw_open_empty_ms),
        ratio(B.open_empty_ms, B.raw_open_empty_ms), "", "" },
      { ("open with %s messages queued"):format(num(B.messages)), ms(B.open_backlog_ms),
        "raw SQLite open + max(id): " .. ms(B.raw_open_backlog_ms),
        ratio(B.open_backlog_ms, B.raw_open_backlog_ms),
        ("<= empty + 5 ms (%s)"):format(ms(open_goal)), yesno(B.open_backlog_ms <= open_goal) },
      { "  the full scan opening used to run (count, bytes per lane)", ms(B.old_scan_ms), "", "", "", "" },
      { ("drain %s messages (peek 64, mark, ack)"):format(num(B.messages)),
        num(B.messages / B.drain_s) .. " msg/s", "", "", "", "" },
      { ("outbox.db + -wal with %s queued"):format(num(B.messages)), mb(B.size_backlog), "", "", "", "" },
      { "  after the drain, still open (space given back)", mb(drained),
        "fresh empty outbox: " .. kb(B.size_empty), ratio(drained, B.size_empty),
        "<= 8 MiB", yesno(drained <= size_goal) },
      { "  after the drain, closed", kb(B.size_drained_closed),
        "fresh empty outbox: " .. kb(B.size_empty), ratio(B.size_drained_closed, B.size_empty), "", "" },
    } do rows[#rows + 1] = r end
  end
  local fl = pub.floor.median
  local function ns(x) return ("%s ns (%s–%s)"):format(num(x.median, 0), num(x.min, 0), num(x.max, 0)) end
  local floor = "string.len('x'): " .. num(fl, 1) .. " ns"
  local floor_wall = "string.len('x'): " .. num(pub.floor_wall.median, 1) .. " ns"
  for _, r in ipairs {
    { "lume.publish('r', 'x'), default, calls of 1000, 8 ms of loop turns between: the handler's CPU",
      ns(pub.default_cpu), floor, ratio(pub.default_cpu.median, fl), "<= 300 ns",
      yesno(pub.default_cpu.median <= 300) },
    { "  wall time in the handler (the thread also waits for a CPU)", ns(pub.default),
      floor_wall, ratio(pub.default.median, pub.floor_wall.median), "", "" },
    { ("  one burst of %s in a handler, then lume.flush(): the handler's CPU"):format(num(pub.n)),
      ns(pub.burst_cpu), floor, ratio(pub.burst_cpu.median, fl), "", "" },
    { "    the process's CPU (the committer and checkpointer threads included)",
      ns(pub.burst_process_cpu), floor, ratio(pub.burst_process_cpu.median, fl), "", "" },
    { "    wall time until all of it is durable (as fast as the committer writes)",
      ns(pub.burst), floor_wall, ratio(pub.burst.median, pub.floor_wall.median), "", "" },
    { "lume.publish('r', 'x', {durable = true}): wall, returns once committed", ns(pub.durable),
      floor_wall, ratio(pub.durable.median, pub.floor_wall.median), "", "" },
    { "  without any commit (commit_batch never reached): the handler's CPU", ns(pub.nocommit),
      floor, ratio(pub.nocommit.median, fl), "", "" },
  } do rows[#rows + 1] = r end
  table_out(head, rows)
  print(("outbox: %d rounds each, alternating, fresh file each round; median (min–max). Both sides "
    .. "timed from the first append/INSERT to the return of close, WAL and synchronous=NORMAL on "
    .. "both; raw SQLite checkpoints inline (wal_autocheckpoint=1000), lume on its checkpointer "
    .. "thread while its committer writes. Opens: median of 5. The drained size is measured once "
    .. "stats.free_bytes < 1 MiB (%.1f s after the drain) plus 3 s."):format(ob.rounds,
    B and B.reclaim_s or 0))
  print(("publish: %d rounds of %s calls each, median (min–max) ns per call; the handler's CPU "
    .. "is the loop thread's (CLOCK_THREAD_CPUTIME_ID; the floor is measured the same way), the "
    .. "process's from os.clock, wall time from host.clock. %d commits for the default rows, %d "
    .. "commit errors; durable: %d calls per round; no-commit: %s calls per round."):format(pub.rounds, num(pub.n), pub.commits_default,
    pub.commit_errors, pub.n_durable, num(pub.n_nocommit)))

elseif mode == "memory" then
  local stats = load(arg[2])
  local vmrss, anon, file = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
  local lua_rss, lua_anon, lua_file = tonumber(arg[6]), tonumber(arg[7]), tonumber(arg[8])
  local lua_state = tonumber(arg[9])
  local limit_kb = 12 * 1024
  local kb = function(x) return num(x) .. " KiB" end
  local head = { "what", "lume", "floor", "lume/floor", "goal", "met?" }
  local rss = stats.process.rss_kb
  local rows = {
    { ("RSS after %.0f s (lume stats process.rss_kb)"):format(stats.process.uptime_s),
      kb(rss), "idle lua5.4: " .. kb(lua_rss), ratio(rss, lua_rss),
      "<= 12 MiB (12,288 KiB)", yesno(rss <= limit_kb) },
    { "RSS, same moment (/proc/PID/status VmRSS)", kb(vmrss), "idle lua5.4: " .. kb(lua_rss),
      ratio(vmrss, lua_rss), "<= 12 MiB (12,288 KiB)", yesno(vmrss <= limit_kb) },
    { "  of which RssAnon (heap, stacks)", kb(anon), "idle lua5.4: " .. kb(lua_anon),
      ratio(anon, lua_anon), "", "" },
    { "  of which RssFile (mapped binaries, libraries)", kb(file),
      "idle lua5.4: " .. kb(lua_file), ratio(file, lua_file), "", "" },
  }
  local names = {}
  for name in pairs(stats.scripts) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local s = stats.scripts[name]
    rows[#rows + 1] = {
      ("script state '%s' (peak %s, cap %s)"):format(name, kb(s.mem_peak / 1024),
        kb(s.mem_limit / 1024)),
      kb(s.mem / 1024), "bare lua5.4 state: " .. kb(lua_state / 1024),
      ratio(s.mem, lua_state), "", "" }
  end
  table_out(head, rows)
  local nsensors = 0
  for _ in pairs(stats.sensors) do nsensors = nsensors + 1 end
  print(("board %s, %d sensors, default scripts, outbox depth %d. Idle lua5.4: a busy "
    .. "loop measured while it runs. Bare lua5.4 state: collectgarbage('count') of "
    .. "`lua5.4 -e` with its standard libraries loaded."):format(stats.process.board,
    nsensors, stats.outbox.alarm.depth + stats.outbox.telemetry.depth + stats.outbox.bulk.depth))

else
  io.stderr:write("usage: lua5.4 bench/report.lua sampler|outbox|memory FILES...\n")
  os.exit(2)
end
