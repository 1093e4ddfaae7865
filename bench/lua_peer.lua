-- bench/lua_peer.lua — the pure-Lua peer for sampler lateness: what a
-- sampling loop written in plain Lua achieves on this machine.
--
--   lua5.3 bench/lua_peer.lua [HZ] [CHANNELS] [SECONDS]
--
-- The same schedule and the same definition of lateness as lume's sampler
-- (docs/sampler.md) and bench/bare_loop.c: CHANNELS channels at HZ on
-- absolute deadlines; lateness = clock reading right before a channel's
-- "read" minus its deadline; when a channel is a whole period or more
-- behind, the missed slots are skipped and counted as overruns and the
-- recorded lateness is what remains (< one period).
--
-- Runs on lua5.3 because Debian 12's lua-posix (luaposix 33.4) has no build
-- for Lua 5.4. luaposix 33 has clock_gettime but no clock_nanosleep, so the
-- loop cannot sleep to an absolute deadline: it reads CLOCK_MONOTONIC and
-- nanosleep()s the time left (one extra clock read per wake-up; a wake-up
-- that comes early just loops). Timer slack is set to 1 ns through
-- /proc/self/timerslack_ns, as lume's sampler does with prctl, so both get
-- the same timer precision.
--
-- Lateness values go into a table preallocated before the run (no table
-- growth in the loop); percentiles are computed afterwards with the
-- bucketing of core/sample/hist.c (upper bound of the bucket, capped by the max),
-- so the three loops report comparable figures. Prints one JSON line.

local time = require "posix.time"

local HZ = tonumber(arg[1] or 1000)
local CHANNELS = tonumber(arg[2] or 4)
local SECONDS = tonumber(arg[3] or 30)

local f = io.open("/proc/self/timerslack_ns", "w")
local slack_ok = false
if f then
  slack_ok = f:write("1") and f:close() and true or false
end

local clock_gettime, nanosleep, MONO = time.clock_gettime, time.nanosleep, time.CLOCK_MONOTONIC
local function now_ns()
  local ts = clock_gettime(MONO)
  return ts.tv_sec * 1000000000 + ts.tv_nsec
end

local period = math.floor(1e9 / HZ)
local cap = math.floor(SECONDS * HZ * CHANNELS) + 16 * CHANNELS
local lat = {}
for i = 1, cap do lat[i] = 0 end
local nlat, overruns = 0, 0

local deadline = {}
local start = now_ns() + 10000000
for i = 1, CHANNELS do deadline[i] = start end
local stop = start + math.floor(SECONDS * 1e9)
local req = { tv_sec = 0, tv_nsec = 0 }
local sink = 0

while true do
  local nxt = deadline[1]
  for i = 2, CHANNELS do
    if deadline[i] < nxt then nxt = deadline[i] end
  end
  if nxt >= stop then break end
  local left = nxt - now_ns()
  if left > 0 then
    req.tv_sec = left // 1000000000
    req.tv_nsec = left % 1000000000
    nanosleep(req)
  end
  for i = 1, CHANNELS do
    local now = now_ns()
    local d = deadline[i]
    if d <= now then
      local late = now - d
      if late >= period then
        local k = late // period
        d = d + k * period
        late = late - k * period
        overruns = overruns + k
      end
      sink = sink + now            -- the "reading"
      nlat = nlat + 1
      if nlat <= cap then lat[nlat] = late end
      deadline[i] = d + period
    end
  end
end

-- core/sample/hist.c: 64 ns buckets below 1024 ns; above, 16 sub-buckets per
-- power of two. Returns the inclusive upper bound of the value's bucket.
local function bucket_top(ns)
  if ns < 1024 then return (ns // 64 + 1) * 64 - 1 end
  local msb = 10
  while (ns >> (msb + 1)) ~= 0 do msb = msb + 1 end
  local width = 1 << (msb - 4)
  local sub = (ns >> (msb - 4)) & 15
  return (1 << msb) + (sub + 1) * width - 1
end

local n = math.min(nlat, cap)
local vals = {}
for i = 1, n do vals[i] = lat[i] end
table.sort(vals)
local max = vals[n] or 0
local function pct(p)
  if n == 0 then return 0 end
  local rank = math.ceil(p / 100 * n)
  if rank < 1 then rank = 1 end
  if rank > n then rank = n end
  return math.min(bucket_top(vals[rank]), max)
end

io.write(string.format(
  '{"p50_us":%.1f,"p99_us":%.1f,"p999_us":%.1f,"max_us":%.1f,"samples":%d,' ..
  '"overruns":%d,"timerslack_1ns":%s,"lua":"%s"}\n',
  pct(50) / 1e3, pct(99) / 1e3, pct(99.9) / 1e3, max / 1e3, nlat, overruns,
  tostring(slack_ok), _VERSION))
