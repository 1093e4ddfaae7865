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
-- the batch to SQLite (outbox.commit_batch, default 1000): the figure
-- includes that commit, amortised. A second runtime with commit_batch =
-- 1,000,000 (never reached) gives the cost without any commit.
-- Prints one JSON line.

local build, tmp = arg[1], arg[2]
local N = tonumber(arg[3] or 200000)
local ROUNDS = tonumber(arg[4] or 5)
assert(build and tmp, "usage: lua5.4 bench/publish.lua BUILD_DIR TMP_DIR [N] [ROUNDS]")
package.cpath = build .. "/?.so;" .. package.cpath

local host = require "lume_host"
local json = require "dkjson"

-- One runtime per variant; commit_batch decides how often an append commits.
local function measure(label, commit_batch, n, rounds)
  local rt = assert(host.new{
    board = "sim",
    boards_dir = "boards",
    stdlib_dir = "stdlib",
    scripts_dir = tmp .. "/scripts",
    store = tmp .. "/store-" .. label,
    log_level = "warn",
    outbox = { max_messages = 0, max_bytes = 0, commit_batch = commit_batch },
  })
  assert(rt:install("b", [[
function bench(n) for i = 1, n do lume.publish('r', 'x') end end
function floor(n) for i = 1, n do string.len('x') end end
]]))
  local function timed(fn)
    local t0 = os.clock()
    local ok, err = rt:call("b", fn, n)
    local t1 = os.clock()
    assert(ok, err)
    return (t1 - t0) * 1e9 / n
  end
  timed("bench")
  timed("floor")
  local best_pub, best_floor = math.huge, math.huge
  for _ = 1, rounds do
    best_floor = math.min(best_floor, timed("floor"))
    best_pub = math.min(best_pub, timed("bench"))
  end
  local ob = rt:outbox()
  local appended, commits = ob.telemetry.appended, ob.commits
  rt:close()
  local expected = n * (rounds + 1)
  assert(appended == expected,
    ("expected %d messages appended, the outbox counted %d"):format(expected, appended))
  return best_pub, best_floor, commits
end

-- As a script sees it: every 1000th publish commits the batch.
local pub, floor, commits = measure("default", 1000, N, ROUNDS)
-- The same calls with no commit at all (the batch never fills): what the
-- binding and the in-memory append cost, without SQLite.
local n2 = math.min(N, 100000)
local nocommit, _, commits2 = measure("nocommit", 1000000, n2, ROUNDS)
assert(commits2 == 0, "the no-commit variant committed")

print(json.encode{
  n = N, rounds = ROUNDS,
  publish_ns = pub, floor_ns = floor, commits = commits,
  publish_nocommit_ns = nocommit, n_nocommit = n2,
})
