-- bench/rules.lua — samples/s through a window + threshold rule in Lua, in
-- the batched handler form, through the real runtime, beside plain Lua 5.4
-- running the same rule in a loop (the floor).
--
--   lua5.4 bench/rules.lua BUILD_DIR TMP_DIR [SECONDS] [CHANNELS] [ROUNDS]
--
-- The rule, per channel (the same text in both runs):
--   w:push(v, t)              a window.count(100) with timestamps
--   th:update(v, t)           a rules.threshold{above =, clear =}
--   then reads w:mean() once per batch (what a rule would report)
-- in a handler lume.on_sample(name, fn, {batch = true}) gets as
-- fn(values, times).
--
-- lume: a runtime through the lume_host module (so this thread runs its
-- loop) on a board of CHANNELS (default 12) sim.vibration channels at
-- 100 kHz each (the board maximum), a ring of 65536 samples: the sampler
-- thread offers more than a million samples/s; the loop drains the ring
-- and calls each channel's handler once per drain. Measured over SECONDS
-- (default 5) after a 1 s warm-up: samples the handlers saw, per second of
-- wall time and per second of the loop thread's CPU (its capacity: on a
-- machine whose other core is busy the sampler and the loop take turns,
-- and the wall rate is what they got), and the ring drops (samples the
-- loop did not take in time).
-- floor: the same handler function, called in a loop in this lua5.4 with
-- arrays of the drain's size (the mean batch size lume saw, per channel),
-- timed by the thread's CPU clock.
-- ROUNDS (default 3) alternating rounds; the median is shown, min-max beside.
-- Prints a Markdown table.

local build, tmp = arg[1], arg[2]
local SECONDS = tonumber(arg[3] or 5)
local CHANNELS = tonumber(arg[4] or 12)
local ROUNDS = tonumber(arg[5] or 3)
local GOAL = 1e6
local PAUSE_S = 0.2
assert(build and tmp, "usage: lua5.4 bench/rules.lua BUILD_DIR TMP_DIR [SECONDS] [CHANNELS] [ROUNDS]")
package.cpath = build .. "/?.so;" .. package.cpath
package.path = "stdlib/?.lua;" .. package.path
local host = require "lume_host"

-- The rule: make(name) -> batch handler; count() -> samples seen.
local RULE = [[
local window, rules = require "lume.window", require "lume.rules"
local seen, events, batches = 0, 0, 0
function make(name)
  local w = window.count(100)
  local th = rules.threshold{above = 0.5, clear = 0.3}
  return function(values, times)
    local n = #values
    for i = 1, n do
      local v, t = values[i], times[i]
      w:push(v, t)
      if th:update(v, t) then events = events + 1 end
    end
    local _ = w:mean()
    seen, batches = seen + n, batches + 1
  end
end
function count() return seen, events, batches end
]]

local function board()
  local lines = { "return { name = 'rules-bench', sensors = {" }
  for i = 1, CHANNELS do
    lines[#lines + 1] = ("{ name = 'c%d', driver = 'sim.vibration', unit = 'g', rate = 100000,"
      .. " min_rate = 1, max_rate = 100000, params = { rms = 0.2, burst_every_s = 1,"
      .. " burst_s = 0.2, burst_gain = 5 } },"):format(i)
  end
  lines[#lines + 1] = "} }"
  local f = assert(io.open(tmp .. "/rules-bench.lua", "w"))
  f:write(table.concat(lines, "\n"))
  f:close()
end

local function lume_round(r)
  os.execute("mkdir -p '" .. tmp .. "/scripts'")
  local rt = assert(host.new{
    board = "rules-bench", boards_dir = tmp, stdlib_dir = "stdlib",
    scripts_dir = tmp .. "/scripts", store = tmp .. "/store-" .. r, log_level = "warn",
    sampler = { ring_size = 65536 },
  })
  local src = { RULE }
  for i = 1, CHANNELS do
    src[#src + 1] = ("lume.on_sample('c%d', make('c%d'), {batch = true})"):format(i, i)
  end
  assert(rt:install("bench", table.concat(src, "\n")))
  rt:run(1000)
  local function totals()
    local s, d = 0, 0
    for i = 1, CHANNELS do
      local st = assert(rt:sensor("c" .. i))
      s, d = s + st.samples, d + st.drops
    end
    local _, seen, _, batches = rt:call("bench", "count")
    return seen, batches, s, d
  end
  -- The loop in turns: PAUSE_S asleep while the ring fills (as a loop that
  -- is behind finds it), then serviced until the ring is empty. Only the
  -- serviced time is counted.
  local seen0, b0, s0, d0 = totals()
  local w0, cpu, busy = host.clock(), 0, 0
  while host.clock() - w0 < SECONDS do
    os.execute("sleep " .. PAUSE_S)
    local c, w = host.thread_clock(), host.clock()
    rt:run(0)
    cpu, busy = cpu + host.thread_clock() - c, busy + host.clock() - w
  end
  local w1 = host.clock()
  local seen1, b1, s1, d1 = totals()
  rt:close()
  os.execute("rm -rf '" .. tmp .. "/store-" .. r .. "'")
  local seen = seen1 - seen0
  return { wall = seen / busy, cpu = seen / cpu, offered = (s1 - s0) / (w1 - w0),
           drops = d1 - d0, batch = seen / math.max(1, b1 - b0), loop_cpu = cpu / busy }
end

-- The same rule text in this interpreter, with arrays of `batch` values.
local function floor_round(batch)
  local env = setmetatable({}, { __index = _G })
  assert(load(RULE, "rule", "t", env))()
  local handlers = {}
  for i = 1, CHANNELS do handlers[i] = env.make("c" .. i) end
  -- values like the sim channels': noise around 0 with bursts above 0.5
  local values, times = {}, {}
  math.randomseed(7)
  for i = 1, batch do
    values[i] = (math.random() - 0.5) * 0.4 * ((i // 500) % 5 == 0 and 5 or 1)
    times[i] = i * 1e-5
  end
  local n, c0 = 0, host.thread_clock()
  local deadline = c0 + SECONDS / 2
  local t0 = 0
  repeat
    for i = 1, CHANNELS do
      for k = 1, batch do times[k] = t0 + k * 1e-5 end
      handlers[i](values, times)
      n = n + batch
    end
    t0 = t0 + batch * 1e-5
  until host.thread_clock() >= deadline
  return n / (host.thread_clock() - c0)
end

board()
local runs, floors = {}, {}
for r = 1, ROUNDS do
  runs[r] = lume_round(r)
  floors[r] = floor_round(math.max(1, math.floor(runs[r].batch + 0.5)))
end

local function med(list, key)
  local v = {}
  for i, x in ipairs(list) do v[i] = key and x[key] or x end
  table.sort(v)
  return v[(#v + 1) // 2], v[1], v[#v]
end
local function fmt(m, lo, hi) return ("%.0f (%.0f-%.0f)"):format(m, lo, hi) end
local floor_m = med(floors)
local cpu_m = med(runs, "cpu")
print(("%d channels at 100 kHz, %d s per round, %d rounds; median (min-max)"):format(
  CHANNELS, SECONDS, ROUNDS))
print()
print("| samples/s through window + threshold | lume (sampler → ring → batch handler) | plain Lua 5.4 loop (floor) |")
print("|---|---|---|")
print(("| per second of the loop thread's CPU | %s | %s |"):format(fmt(med(runs, "cpu")),
  fmt(med(floors))))
print(("| per second of wall time | %s | |"):format(fmt(med(runs, "wall"))))
print(("| offered by the sampler (per wall second) | %s | |"):format(fmt(med(runs, "offered"))))
print(("| ring drops per round | %s | |"):format(fmt(med(runs, "drops"))))
print(("| samples per handler call | %s | (the same) |"):format(fmt(med(runs, "batch"))))
print(("| loop thread busy (CPU s per wall s) | %.2f | |"):format((med(runs, "loop_cpu"))))
print(("| lume / floor | %.2f | 1 |"):format(cpu_m / floor_m))
print()
print(("goal: >= 1,000,000 samples/s per second of the loop's CPU: %s (%.0f)"):format(
  cpu_m >= GOAL and "met" or "NO", cpu_m))
