-- bench/publish.lua — the cost of one lume.publish from a script, beside
-- the cost of the cheapest call a script can make into C (the floor).
--
--   lua5.4 bench/publish.lua BUILD_DIR TMP_DIR [N] [ROUNDS]
--
-- Builds a real runtime through the lume_host module (sim board, no default
-- scripts, a fresh store in TMP_DIR, no outbox caps so that the rounds never
-- hit the drop policy), installs one script with these globals:
--   bench(n)    for i = 1, n do lume.publish('r', 'x') end
--   durable(n)  the same with {durable = true}
--   flush()     lume.flush()
--   floor(n)    for i = 1, n do string.len('x') end
-- and times rt:call(script, fn, n), ROUNDS times each after a warm-up call,
-- alternating with the floor. Every publish appends to the outbox (topic
-- lume/<device>/telemetry/r, 1-byte payload); every 1000th hands the batch
-- to the outbox's committer thread (outbox.commit_batch, default 1000),
-- which commits it while the script goes on.
--
-- Rows (ns per call; median of the rounds, min-max beside it). CPU is the
-- calling (loop) thread's, CLOCK_THREAD_CPUTIME_ID: the handler's cost, as
-- os.clock measured it when the commit ran in the handler; wall time is
-- printed beside it (on a loaded machine the thread also waits for a CPU):
--   default   N publishes as calls of 1000 with the loop serviced for 8 ms
--             between them (a handler's burst, then the loop turns: about
--             120,000 messages/s, well below what the committer can write,
--             which takes about 2 µs of CPU per message on the development
--             machine: a faster stream waits for it, see burst);
--   burst     N publishes in one call, then lume.flush(): wall time until
--             all of it is durable, so bound by how fast the committer
--             writes; the loop thread's CPU; the whole process's CPU
--             (os.clock, the committer and checkpointer included);
--   durable   2,000 durable publishes in one call: wall time each (the
--             commit of one message, on the committer, waited for);
--   no commit a runtime with commit_batch = 1,000,000 (never reached): the
--             binding and the in-memory append alone;
--   floor     string.len('x') in the same state.
-- The floor and the no-commit row are measured the same way (CPU and wall).
-- Prints one JSON line.

local build, tmp = arg[1], arg[2]
local N = tonumber(arg[3] or 200000)
local ROUNDS = tonumber(arg[4] or 5)
assert(build and tmp, "usage: lua5.4 bench/publish.lua BUILD_DIR TMP_DIR [N] [ROUNDS]")
package.cpath = build .. "/?.so;" .. package.cpath

local host = require "lume_host"
local json = require "dkjson"

local SCRIPT = [[
function bench(n) for i = 1, n do lume.publish('r', 'x') end end
function durable(n) for i = 1, n do lume.publish('r', 'x', { durable = true }) end end
function flush() return assert(lume.flush()) end
function burst(n) bench(n) ; flush() end
function floor(n) for i = 1, n do string.len('x') end end
]]

local function runtime(label, commit_batch)
  local rt = assert(host.new{
    board = "sim",
    boards_dir = "boards",
    stdlib_dir = "stdlib",
    scripts_dir = tmp .. "/scripts",
    store = tmp .. "/store-" .. label,
    log_level = "warn",
    outbox = { max_messages = 0, max_bytes = 0, commit_batch = commit_batch },
  })
  assert(rt:install("b", SCRIPT))
  return rt
end

-- ns per iteration of fn(n): wall, loop-thread CPU, process CPU
local function timed(rt, fn, n)
  local w0, t0, p0 = host.clock(), host.thread_clock(), os.clock()
  local ok, err = rt:call("b", fn, n)
  local w1, t1, p1 = host.clock(), host.thread_clock(), os.clock()
  assert(ok, err)
  return (w1 - w0) * 1e9 / n, (t1 - t0) * 1e9 / n, (p1 - p0) * 1e9 / n
end

local function spread(v)
  table.sort(v)
  local m = #v % 2 == 1 and v[(#v + 1) // 2] or (v[#v // 2] + v[#v // 2 + 1]) / 2
  return { median = m, min = v[1], max = v[#v] }
end

local out = { n = N, rounds = ROUNDS }

-- default: paced calls of 1000 with loop turns between them
do
  local rt = runtime("default", 1000)
  timed(rt, "bench", 1000)
  timed(rt, "floor", N)
  local wall, cpu, floor, floor_wall = {}, {}, {}, {}
  for r = 1, ROUNDS do
    floor_wall[r], floor[r] = timed(rt, "floor", N)
    local w, c = 0, 0
    for _ = 1, N // 1000 do
      local cw, cc = timed(rt, "bench", 1000)
      w, c = w + cw, c + cc
      rt:run(8)
    end
    wall[r], cpu[r] = w / (N // 1000), c / (N // 1000)
  end
  rt:call("b", "flush")
  local ob = rt:outbox()
  out.commits_default = ob.commits
  out.commit_errors = ob.commit_errors
  assert(ob.telemetry.appended == N * ROUNDS + 1000, "publishes went missing")
  assert(ob.pending == 0)
  out.default = spread(wall)
  out.default_cpu = spread(cpu)
  out.floor = spread(floor)
  out.floor_wall = spread(floor_wall)
  rt:close()
end

-- burst, durable
do
  local rt = runtime("burst", 1000)
  timed(rt, "burst", 10000)
  local wall, cpu, proc = {}, {}, {}
  for r = 1, ROUNDS do
    wall[r], cpu[r], proc[r] = timed(rt, "burst", N)
  end
  out.burst = spread(wall)
  out.burst_cpu = spread(cpu)
  out.burst_process_cpu = spread(proc)
  timed(rt, "durable", 100)
  local dur = {}
  for r = 1, ROUNDS do dur[r] = timed(rt, "durable", 2000) end
  out.durable = spread(dur)
  out.n_durable = 2000
  assert(rt:outbox().pending == 0)
  rt:close()
end

-- no commit at all: the batch never fills
do
  local n2 = math.min(N, 100000)
  local rt = runtime("nocommit", 1000000)
  timed(rt, "bench", n2)
  local v, w = {}, {}
  for r = 1, ROUNDS do w[r], v[r] = timed(rt, "bench", n2) end
  assert(rt:outbox().commits == 0, "the no-commit variant committed")
  out.nocommit = spread(v)
  out.nocommit_wall = spread(w)
  out.n_nocommit = n2
  rt:close()
end

print(json.encode(out))
