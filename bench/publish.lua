-- bench/publish.lua — the cost of one lume.publish from a script, beside
-- the cost of the cheapest call a script can make into C (the floor).
--
--   lua5.4 bench/publish.lua BUILD_DIR TMP_DIR [N] [ROUNDS]
--
-- Builds a real runtime through the lume_host module (sim board, no default
-- scripts, a fresh store in TMP_DIR, no outbox caps so that 200,000-message
-- rounds never hit the drop policy), installs one script with two globals:
--   bench(n)  for i = 1, n do lume.publish('r', 'x') end
--   floor(n)  for i = 1, n do string.len('x') end
-- and times rt:call(script, fn, N) with os.clock (process CPU time), ROUNDS
-- times each after one warm-up call, alternating. The best round of each is
-- reported, in ns per iteration. Each publish appends to the outbox (topic
-- lume/<device>/telemetry/r, 1-byte payload), and every 1000th one commits
-- the batch to SQLite: the figure includes that commit, amortised.
-- Prints one JSON line.

local build, tmp = arg[1], arg[2]
local N = tonumber(arg[3] or 200000)
local ROUNDS = tonumber(arg[4] or 5)
assert(build and tmp, "usage: lua5.4 bench/publish.lua BUILD_DIR TMP_DIR [N] [ROUNDS]")
package.cpath = build .. "/?.so;" .. package.cpath

local host = require "lume_host"
local json = require "dkjson"

local rt = assert(host.new{
  board = "sim",
  boards_dir = "boards",
  stdlib_dir = "stdlib",
  scripts_dir = tmp .. "/scripts",
  store = tmp .. "/store",
  log_level = "warn",
  outbox = { max_messages = 0, max_bytes = 0 },
})

assert(rt:install("b", [[
function bench(n) for i = 1, n do lume.publish('r', 'x') end end
function floor(n) for i = 1, n do string.len('x') end end
]]))

local function timed(fn, n)
  local t0 = os.clock()
  local ok, err = rt:call("b", fn, n)
  local t1 = os.clock()
  assert(ok, err)
  return (t1 - t0) * 1e9 / n
end

timed("bench", N)
timed("floor", N)
local best_pub, best_floor = math.huge, math.huge
for _ = 1, ROUNDS do
  best_floor = math.min(best_floor, timed("floor", N))
  best_pub = math.min(best_pub, timed("bench", N))
end

local ob = rt:outbox()
local appended = ob.telemetry.appended
local expected = N * (ROUNDS + 1)
rt:close()
assert(appended == expected,
  ("expected %d messages appended, the outbox counted %d"):format(expected, appended))

print(json.encode{
  n = N, rounds = ROUNDS,
  publish_ns = best_pub, floor_ns = best_floor,
  appended = appended,
})
