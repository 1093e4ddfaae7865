-- bench/pattern.lua — lume's pattern matcher (bindings/pattern.c) beside
-- Lua 5.4's own on the patterns edge rules use.
--
--   lua5.4 bench/pattern.lua BUILD_DIR [N] [ROUNDS]
--
-- Each case runs N times through Lua's string functions and through
-- lume_host.pattern_lib() (the same C functions a script gets, without the
-- budget check: in a script's state that check is one relaxed atomic load
-- every 4096 steps), in the same lua5.4 state, alternating, ROUNDS rounds
-- after a warm-up; the best round of each is printed in ns per call (os.clock,
-- process CPU time), with lume / Lua. Then the same cases once more inside a
-- script's sandbox (a real runtime, budget checks on), for the record: that
-- state has its own allocator and GC mode, so compare it with care.

local build = arg[1]
local N = tonumber(arg[2] or 200000)
local ROUNDS = tonumber(arg[3] or 5)
assert(build, "usage: lua5.4 bench/pattern.lua BUILD_DIR [N] [ROUNDS]")
package.cpath = build .. "/?.so;" .. package.cpath

local host = require "lume_host"
local P = host.pattern_lib()
local L = { find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }

-- name, then a function of the library table F that does one call's work.
local CASES = {
  { "match key=number", [[
    local s = "temp=21.5"
    return function(F) return F.match(s, "^(%w+)=(%-?%d+%.?%d*)$") end ]] },
  { "match no match", [[
    local s = "this is not a reading"
    return function(F) return F.match(s, "^(%w+)=(%-?%d+%.?%d*)$") end ]] },
  { "gsub CSV separators", [[
    local s = "2024-05-01T10:00:00Z, 21.5 ,40.2,  1013.25,ok"
    return function(F) return F.gsub(s, "%s*,%s*", ";") end ]] },
  { "gmatch CSV fields", [[
    local s = "2024-05-01T10:00:00Z,21.5,40.2,1013.25,ok"
    return function(F) local n = 0 for _ in F.gmatch(s, "([^,]+)") do n = n + 1 end return n end ]] },
  { "gmatch words", [[
    local s = "the quick brown fox jumps over the lazy dog near the river bank"
    return function(F) local n = 0 for _ in F.gmatch(s, "%a+") do n = n + 1 end return n end ]] },
  { "gmatch key=value pairs", [[
    local s = "dev=ab12;temp=21.5;hum=40;mode=eco;fw=1.4.2"
    return function(F) local n = 0 for k, v in F.gmatch(s, "(%w+)=([^;]+)") do n = n + 1 end return n end ]] },
  { "find number", [[
    local s = "sensor 7 reports value 1234.5678 at noon"
    return function(F) return F.find(s, "%d+%.%d+") end ]] },
  { "find plain", [[
    local s = "2024-05-01 10:00:00 WARN disk 91% full; ERROR fan stalled"
    return function(F) return F.find(s, "ERROR", 1, true) end ]] },
  { "match trim", [[
    local s = "    padded value with spaces    "
    return function(F) return F.match(s, "^%s*(.-)%s*$") end ]] },
  { "gsub function", [[
    local s = "a=1 b=2 c=3 d=4"
    local f = function(k, v) return k .. ":" .. v end
    return function(F) return F.gsub(s, "(%w+)=(%w+)", f) end ]] },
}

local function time(fn, F, n)
  local t0 = os.clock()
  for _ = 1, n do fn(F) end
  return (os.clock() - t0) * 1e9 / n
end

print(("%-26s %12s %12s %8s"):format("case (ns per call)", "Lua 5.4", "lume", "lume/Lua"))
local sum_l, sum_p = 0, 0
for _, case in ipairs(CASES) do
  local fn = assert(load(case[2]))()
  assert(select("#", fn(L)) == select("#", fn(P)))
  time(fn, L, N // 10); time(fn, P, N // 10)
  local best_l, best_p = math.huge, math.huge
  for _ = 1, ROUNDS do
    best_l = math.min(best_l, time(fn, L, N))
    best_p = math.min(best_p, time(fn, P, N))
  end
  sum_l, sum_p = sum_l + best_l, sum_p + best_p
  print(("%-26s %12.0f %12.0f %8.2f"):format(case[1], best_l, best_p, best_p / best_l))
end
print(("%-26s %12.0f %12.0f %8.2f"):format("all cases", sum_l, sum_p, sum_p / sum_l))

-- In a script's sandbox: lume's functions with the budget check on.
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p '" .. tmp .. "/scripts'")
local rt = assert(host.new{
  board = "sim", boards_dir = "boards", stdlib_dir = "stdlib",
  scripts_dir = tmp .. "/scripts", store = tmp .. "/store", log_level = "warn",
})
local src = { "cases = {}" }
for i, case in ipairs(CASES) do
  src[#src + 1] = ("cases[%d] = (function() %s end)()"):format(i, case[2])
end
src[#src + 1] = [[
function run(i, n)
  local fn, F = cases[i], string
  local t0 = os.clock()
  for _ = 1, n do fn(F) end
  return (os.clock() - t0) * 1e9 / n
end]]
assert(rt:install("bench", table.concat(src, "\n")))
print()
print(("%-26s %12s"):format("in a script's state", "lume"))
local sum_s = 0
for i, case in ipairs(CASES) do
  local best = math.huge
  rt:call("bench", "run", i, N // 10)
  for _ = 1, ROUNDS do
    local ok, t = rt:call("bench", "run", i, N)
    assert(ok, t)
    best = math.min(best, t)
  end
  sum_s = sum_s + best
  print(("%-26s %12.0f"):format(case[1], best))
end
print(("%-26s %12.0f"):format("all cases", sum_s))
rt:close()
os.execute("rm -rf '" .. tmp .. "'")
