--- Sliding windows over numeric samples.
--
-- A window keeps the most recent samples of a series and answers questions
-- about them (mean, variance, min, max, rate) in O(1) time. There are two
-- kinds:
--
-- * `window.count(n)` holds the last `n` values, in a ring of `n` slots
--   allocated once by the constructor.
-- * `window.time(seconds)` holds the values whose timestamps lie in the
--   half-open interval `(now - seconds, now]`, where `now` is the newest
--   timestamp seen (by `push` or `expire`). Its storage grows and shrinks
--   with the number of samples inside the interval.
--
-- Every push costs O(1) amortised time:
--
-- * mean and variance are kept by Welford's method, updated when a value
--   enters and reversed when it leaves. Reversal accumulates rounding error,
--   so the window recomputes both exactly (two passes over the values) once
--   it has evicted as many values as it holds, and also at once when an
--   eviction removes most of the spread (a spike of 1e9 leaving a window of
--   values near 1 would otherwise leave the variance as rounding noise).
--   The periodic recomputation costs O(1) per push, amortised; an immediate
--   one needs the spread to shrink 10^4-fold in one eviction, which the
--   range of doubles allows only a bounded number of times per window.
-- * min and max come from monotonic deques (each value enters and leaves a
--   deque at most once), kept from the first call of either.
--
-- On demand, O(n) or O(n log n) per call: `slope` (least-squares rate of
-- change) and `percentile` (exact). Two more objects live here:
-- `window.ewma` (exponentially weighted mean and variance, irregular
-- timestamps handled by a half-life) and `window.sketch` (percentiles of a
-- whole stream in bounded memory, within a stated relative error).
--
-- `variance()` is the *population* variance (the sum of squared deviations
-- divided by `n`, not `n - 1`): the window is the whole population being
-- described, not a sample of a larger one.
--
-- Statistics of an empty window are `nil`. Values must be finite numbers;
-- NaN or infinity raises an error, since one of them would poison every
-- statistic until it left the window.
--
-- @module lume.window
-- @usage
--   local window = require "lume.window"
--
--   local w = window.count(60)             -- the last 60 readings
--   for _, v in ipairs{20.5, 21.0, 22.5} do w:push(v) end
--   print(w:count(), w:mean(), w:stddev(), w:min(), w:max())
--   --> 3   21.333333333333   0.8498365855988   20.5   22.5
--
--   local tw = window.time(10)             -- readings of the last 10 s
--   tw:push(20.5, 100.0)
--   tw:push(21.0, 104.0)
--   tw:push(22.0, 111.0)                   -- evicts the sample taken at 100
--   print(tw:count(), tw:rate())           --> 2   0.2 (samples per second)

local check = require "lume.check"
local show, is_finite, as_integer = check.show, check.is_finite, check.as_integer
local sqrt, huge = math.sqrt, math.huge
local tointeger = math.tointeger
local format = string.format
local sort, unpack = table.sort, table.unpack

local window = {}




---------------------------------------------------------------------------
-- Storage: rings addressed by absolute position.
--
-- Every ring is a Lua array of `cap` slots; the element at position `p`
-- (an integer that only grows) lives in slot `p % cap + 1`. The values
-- ring is addressed by sequence number (the first push is 1), so the value
-- with sequence `s` is `vals[s % cap + 1]`, and the min/max deques hold
-- sequence numbers between a low and a high position. A push is then a few
-- integer operations and table stores, with no call and no wrap test. All
-- rings of a window share its `cap`: a count window's is its size; a time
-- window's doubles when full and halves when a quarter full (the live
-- positions are placed again in the new slots).
---------------------------------------------------------------------------

local MIN_CAP = 8

local function ring(cap)
  local r = {}
  for i = 1, cap do r[i] = 0 end
  return r
end

-- Positions lo..hi of r (capacity cap) into a new ring of capacity ncap.
local function replace(r, lo, hi, cap, ncap)
  local nr = ring(ncap)
  for p = lo, hi do nr[p % ncap + 1] = r[p % cap + 1] end
  return nr
end

---------------------------------------------------------------------------
-- Window
--
-- Fields:
--   kind    "count" or "time"
--   size    capacity (count) or length in seconds (time)
--   cap     slots in each ring
--   vals    values by sequence number; `first`..`seq` are in the window
--           (empty when seq < first)
--   ts      timestamps, parallel to vals (time windows always; count
--           windows once a timestamp has been pushed, `false` for values
--           pushed without one)
--   mins    sequence numbers at positions mlo..mhi whose values increase
--           strictly from mlo; mins at mlo is the window minimum
--   maxs    the same at xlo..xhi, decreasing: the maximum
--   ext     whether mins and maxs are kept (from the first min() or max())
--   mean_, m2  Welford state: mean and sum of squared deviations
--   evicted    values evicted since the last exact recomputation
--   now        newest time seen by push or expire (time windows)
---------------------------------------------------------------------------

local Window = {}
Window.__index = Window
Window.__name = "lume.window"

local function new(kind, size, cap)
  return setmetatable({
    kind = kind, size = size, cap = cap,
    vals = ring(cap), ts = kind == "time" and ring(cap) or nil,
    mins = ring(cap), maxs = ring(cap),
    first = 1, seq = 0, mlo = 1, mhi = 0, xlo = 1, xhi = 0, ext = false,
    mean_ = 0.0, m2 = 0.0, evicted = 0,
  }, Window)
end

--- A window over the last `n` values.
-- @tparam integer n number of values kept (at least 1)
-- @treturn window
function window.count(n)
  local size = as_integer(n)
  if not size or size < 1 then
    error("window.count: size must be a positive integer, got " .. show(n), 2)
  end
  return new("count", size, size)
end

--- A window over the values of the last `seconds` seconds.
-- @tparam number seconds length of the window (positive, finite)
-- @treturn window
function window.time(seconds)
  if not is_finite(seconds) or seconds <= 0 then
    error("window.time: seconds must be a positive finite number, got "
          .. show(seconds), 2)
  end
  return new("time", seconds, MIN_CAP)
end

-- Every ring to capacity ncap (time windows).
local function resize(self, ncap)
  local cap = self.cap
  self.vals = replace(self.vals, self.first, self.seq, cap, ncap)
  self.ts = replace(self.ts, self.first, self.seq, cap, ncap)
  self.mins = replace(self.mins, self.mlo, self.mhi, cap, ncap)
  self.maxs = replace(self.maxs, self.xlo, self.xhi, cap, ncap)
  self.cap = ncap
end

-- Exact mean and sum of squared deviations, by two passes.
local function recompute(self)
  local vals, cap, first, last = self.vals, self.cap, self.first, self.seq
  local n = last - first + 1
  self.evicted = 0
  if n <= 0 then
    self.mean_, self.m2 = 0.0, 0.0
    return
  end
  local sum = 0.0
  for s = first, last do sum = sum + vals[s % cap + 1] end
  local mean = sum / n
  local m2, corr = 0.0, 0.0
  for s = first, last do
    local d = vals[s % cap + 1] - mean
    m2 = m2 + d * d
    corr = corr + d
  end
  -- corr is the rounding error of the first pass (exactly 0 in exact
  -- arithmetic); folding it back in is the "corrected two-pass" algorithm.
  self.mean_ = mean + corr / n
  self.m2 = m2 - corr * corr / n
  if self.m2 < 0 then self.m2 = 0.0 end
end

-- After an eviction that took m2 from m2_old to m2 in a window of n values:
-- recompute after a window's worth of evictions, and at once when the
-- leaving value carried most of the spread (m2 fell by more than 10^4: the
-- subtraction cancelled that many digits), or the state is broken.
local function settle(self, n, m2_old, m2)
  local evicted = self.evicted + 1
  self.evicted = evicted
  if evicted >= n or m2 < m2_old * 1e-4 or m2 ~= m2 or m2 == huge then recompute(self) end
end

-- Remove the oldest value.
local function evict(self)
  local cap, first = self.cap, self.first
  local x = self.vals[first % cap + 1]
  self.first = first + 1
  if self.ext then
    if self.mins[self.mlo % cap + 1] == first then self.mlo = self.mlo + 1 end
    if self.maxs[self.xlo % cap + 1] == first then self.xlo = self.xlo + 1 end
  end
  local n = self.seq - first
  if n == 0 then
    self.mean_, self.m2, self.evicted = 0.0, 0.0, 0
  else
    -- Welford in reverse.
    local m2_old, mean_old = self.m2, self.mean_
    local d = x - mean_old
    local mean = mean_old - d / n
    local m2 = m2_old - d * (x - mean)
    self.mean_, self.m2 = mean, m2
    settle(self, n, m2_old, m2)
  end
  if self.kind == "time" and cap > MIN_CAP and n * 4 <= cap then resize(self, cap // 2) end
end

--- Evict, from a time window, the values at or before `now - seconds`.
-- Useful before reading statistics when samples may have stopped arriving.
-- Time never moves backwards: an older `now` than the newest timestamp
-- evicts nothing.
-- @tparam number now current time in seconds
-- @treturn window self
function Window:expire(now)
  if self.kind ~= "time" then
    error("window:expire: only time windows expire (this is a count window)", 2)
  end
  if not is_finite(now) then
    error("window:expire: now must be a finite number, got " .. show(now), 2)
  end
  if self.now == nil or now > self.now then self.now = now end
  local horizon = self.now - self.size
  while self.seq >= self.first and self.ts[self.first % self.cap + 1] <= horizon do
    evict(self)
  end
  return self
end

-- Monotonic deques (kept only once min or max has been asked for: a rule
-- that reads neither does not pay for them): drop the entries value v, at
-- sequence seq, dominates, and append it.
local function extremes(self, seq, v, cap)
  local vals = self.vals
  local mins, lo, hi = self.mins, self.mlo, self.mhi
  while hi >= lo and vals[mins[hi % cap + 1] % cap + 1] >= v do hi = hi - 1 end
  hi = hi + 1
  mins[hi % cap + 1] = seq
  self.mhi = hi
  local maxs = self.maxs
  lo, hi = self.xlo, self.xhi
  while hi >= lo and vals[maxs[hi % cap + 1] % cap + 1] <= v do hi = hi - 1 end
  hi = hi + 1
  maxs[hi % cap + 1] = seq
  self.xhi = hi
end

-- Start keeping the deques, from the values in the window now.
local function track_extremes(self)
  self.ext = true
  self.mlo, self.mhi, self.xlo, self.xhi = 1, 0, 1, 0
  local vals, cap = self.vals, self.cap
  for s = self.first, self.seq do extremes(self, s, vals[s % cap + 1], cap) end
end

--- Add a value.
-- For a time window `t` is required and must not be older than the newest
-- timestamp already seen. For a count window it is optional; when given it
-- is kept so that `rate`, `slope` and `last` can report it.
-- @tparam number v the value (finite)
-- @tparam[opt] number t its timestamp in seconds
-- @treturn window self
function Window:push(v, t)
  -- v - v is 0 for a finite number, NaN for NaN and the infinities (and an
  -- error for a non-number): one test instead of three.
  if type(v) ~= "number" or v - v ~= 0 then
    error("window:push: value must be a finite number, got " .. show(v), 2)
  end
  local seq, cap = self.seq + 1, self.cap
  if self.kind == "time" then
    if type(t) ~= "number" or t - t ~= 0 then
      error("window:push: a time window needs a finite timestamp t "
            .. "(seconds), got " .. show(t), 2)
    end
    local now = self.now
    if now and t < now then
      error(format("window:push: time went backwards (t=%s is before %s)",
                   show(t), show(now)), 2)
    end
    if now ~= t then
      self:expire(t)
      cap = self.cap
    end
    if seq - self.first == cap then
      resize(self, cap * 2)
      cap = self.cap
    end
    self.ts[seq % cap + 1] = t
  else
    local slot, ts = seq % cap + 1, self.ts
    if t ~= nil then
      if type(t) ~= "number" or t - t ~= 0 then
        error("window:push: t must be a finite number or nil, got " .. show(t), 2)
      end
      if not ts then
        -- First timestamp for this count window: start the parallel ring,
        -- with `false` for the values that came without one.
        ts = ring(cap)
        for s = self.first, seq - 1 do ts[s % cap + 1] = false end
        self.ts = ts
      end
      ts[slot] = t
    elseif ts then
      ts[slot] = false
    end
    local first = self.first
    if seq - first == cap then
      -- Full: v takes the slot of the oldest value x (seq and first share
      -- it), and Welford's update for one value replaced by another.
      local vals = self.vals
      local x = vals[slot]
      vals[slot] = v
      self.seq, self.first = seq, first + 1
      if self.ext then
        if self.mins[self.mlo % cap + 1] == first then self.mlo = self.mlo + 1 end
        if self.maxs[self.xlo % cap + 1] == first then self.xlo = self.xlo + 1 end
        extremes(self, seq, v, cap)
      end
      local mean, m2 = self.mean_, self.m2
      local d = v - x
      local nmean = mean + d / cap
      local nm2 = m2 + d * ((v - nmean) + (x - mean))
      self.mean_, self.m2 = nmean, nm2
      settle(self, cap, m2, nm2)
      return self
    end
  end

  local vals = self.vals
  vals[seq % cap + 1] = v
  self.seq = seq
  if self.ext then extremes(self, seq, v, cap) end
  -- Welford.
  local mean = self.mean_
  local d = v - mean
  mean = mean + d / (seq - self.first + 1)
  self.m2 = self.m2 + d * (v - mean)
  self.mean_ = mean
  return self
end

--- Number of values in the window.
-- @treturn integer
function Window:count()
  return self.seq - self.first + 1
end

Window.__len = Window.count

--- Arithmetic mean of the values, or nil when the window is empty.
-- @treturn number|nil
function Window:mean()
  if self.seq < self.first then return nil end
  return self.mean_
end

--- Population variance of the values (divided by n), or nil when empty.
-- @treturn number|nil
function Window:variance()
  local n = self.seq - self.first + 1
  if n <= 0 then return nil end
  local var = self.m2 / n
  if var < 0 then var = 0.0 end
  return var
end

--- Population standard deviation, or nil when the window is empty.
-- @treturn number|nil
function Window:stddev()
  local var = self:variance()
  return var and sqrt(var)
end

--- Smallest value in the window, or nil when empty.
-- @treturn number|nil
function Window:min()
  if self.seq < self.first then return nil end
  if not self.ext then track_extremes(self) end
  local cap = self.cap
  return self.vals[self.mins[self.mlo % cap + 1] % cap + 1]
end

--- Largest value in the window, or nil when empty.
-- @treturn number|nil
function Window:max()
  if self.seq < self.first then return nil end
  if not self.ext then track_extremes(self) end
  local cap = self.cap
  return self.vals[self.maxs[self.xlo % cap + 1] % cap + 1]
end

--- Newest value and its timestamp (nil when not known), or nil when empty.
-- @treturn number|nil value
-- @treturn number|nil timestamp
function Window:last()
  local seq = self.seq
  if seq < self.first then return nil end
  local slot = seq % self.cap + 1
  local t = self.ts and self.ts[slot] or nil
  return self.vals[slot], t or nil
end

--- Values per second.
--
-- For a time window this is `count / seconds`: the number of values inside
-- the window divided by its length. It therefore reads low until the window
-- has been open for `seconds`. Pass `now` to expire old values first (when
-- samples may have stopped arriving).
--
-- For a count window it is `(count - 1) / (newest t - oldest t)`, which
-- needs timestamps on the oldest and newest values and at least two values
-- spanning a positive time; otherwise it is nil.
-- @tparam[opt] number now current time (time windows only)
-- @treturn number|nil
function Window:rate(now)
  if self.kind == "time" then
    if now ~= nil then self:expire(now) end
    return self:count() / self.size
  end
  local n, ts, cap = self:count(), self.ts, self.cap
  if n < 2 or not ts then return nil end
  local t0, t1 = ts[self.first % cap + 1], ts[self.seq % cap + 1]
  if not t0 or not t1 or t1 <= t0 then return nil end
  return (n - 1) / (t1 - t0)
end

--- The values, oldest first, as a new array; for a window with timestamps a
-- second array holds them (`false` for values pushed without one).
-- @treturn {number,...} values
-- @treturn[opt] {number,...} timestamps
function Window:values()
  local vals, ts, cap, first = self.vals, self.ts, self.cap, self.first
  local out = {}
  for s = first, self.seq do out[s - first + 1] = vals[s % cap + 1] end
  if not ts then return out end
  local times = {}
  for s = first, self.seq do times[s - first + 1] = ts[s % cap + 1] end
  return out, times
end

--- Remove every value (the window keeps its size).
-- @treturn window self
function Window:clear()
  local cap = self.kind == "time" and MIN_CAP or self.size
  local fresh = new(self.kind, self.size, cap)
  for k in pairs(self) do self[k] = nil end
  for k, v in pairs(fresh) do self[k] = v end
  return self
end

--- Rate of change of the values, in units per second.
--
-- `how` = `"lsq"` (the default): the least-squares slope of value against
-- time over every value in the window that has a timestamp (two passes
-- over them, so O(n) per call; robust to noise). `how` = `"ends"`:
-- `(newest - oldest) / (t_newest - t_oldest)`, O(1), but only as good as
-- two readings. nil with fewer than two timestamped values, or when they
-- all share one time.
-- @tparam[opt="lsq"] string how `"lsq"` or `"ends"`
-- @treturn number|nil
function Window:slope(how)
  local ts, cap, first, last = self.ts, self.cap, self.first, self.seq
  if how ~= nil and how ~= "lsq" and how ~= "ends" then
    error("window:slope: how must be \"lsq\" or \"ends\", got " .. show(how), 2)
  end
  if not ts or last - first < 1 then return nil end
  local vals = self.vals
  if how == "ends" then
    local t0, t1 = ts[first % cap + 1], ts[last % cap + 1]
    if not t0 or not t1 or t1 <= t0 then return nil end
    return (vals[last % cap + 1] - vals[first % cap + 1]) / (t1 - t0)
  end
  local n, st, sv = 0, 0.0, 0.0
  for s = first, last do
    local t = ts[s % cap + 1]
    if t then n, st, sv = n + 1, st + t, sv + vals[s % cap + 1] end
  end
  if n < 2 then return nil end
  local tm, vm = st / n, sv / n
  local stt, stv = 0.0, 0.0
  for s = first, last do
    local t = ts[s % cap + 1]
    if t then
      local dt = t - tm
      stt, stv = stt + dt * dt, stv + dt * (vals[s % cap + 1] - vm)
    end
  end
  if stt <= 0 then return nil end
  return stv / stt
end

-- The p-th percentile of a sorted array, by linear interpolation between
-- the closest ranks.
local function interpolate(sorted, n, p)
  local h = (n - 1) * p / 100          -- 0-based rank
  local lo = h // 1
  local x = sorted[lo + 1]
  if lo + 1 >= n then return x end
  return x + (h - lo) * (sorted[lo + 2] - x)
end

local function check_p(fname, p)
  check.number(fname, "p", p, {min = 0, max = 100, what = "a percentile from 0 to 100"}, 4)
end

--- Percentiles of the values in the window, exact: one sort of a copy
-- (O(n log n) per call), then linear interpolation between the closest
-- ranks (the p-th percentile of n sorted values x1..xn is at rank
-- `1 + (n - 1) * p / 100`; numpy's default). Several at once share the
-- sort: `w:percentile(50, 99)` returns two numbers. nil when empty.
-- @tparam number p a percentile, 0 to 100
-- @return one number per p
function Window:percentile(p, ...)
  local nq = select("#", ...) + 1
  local qs = {p, ...}
  for i = 1, nq do check_p("window:percentile", qs[i]) end
  local n = self:count()
  if n == 0 then return nil end
  local sorted = self:values()
  sort(sorted)
  local out = {}
  for i = 1, nq do out[i] = interpolate(sorted, n, qs[i]) end
  return unpack(out, 1, nq)
end

--- The state to hand to the next version (see `lume.keep`): the values,
-- their timestamps, and the newest time seen. The size and kind are not
-- saved: they come from the code that restores it.
-- @treturn table
function Window:save()
  local vals, times = self:values()
  return { values = vals, times = times, now = self.now }
end

--- Take a state made by `save`: the values are pushed again, oldest first,
-- so a smaller window keeps the newest, and a time window drops the values
-- older than its length.
-- @tparam table data
function Window:restore(data)
  local fname = "window:restore"
  if type(data) ~= "table" or type(data.values) ~= "table" then
    error(fname .. ": saved state must be a table with a values array, got " .. show(data), 2)
  end
  local vals, times = data.values, data.times
  if times ~= nil and type(times) ~= "table" then
    error(fname .. ": saved times must be an array, got " .. show(times), 2)
  end
  for i = 1, #vals do
    if not is_finite(vals[i]) then
      error(format("%s: saved value %d must be a finite number, got %s", fname, i,
                   show(vals[i])), 2)
    end
    local t = times and times[i]
    if t and not is_finite(t) then
      error(format("%s: saved time %d must be a finite number, got %s", fname, i, show(t)), 2)
    end
    if self.kind == "time" and not t then
      error(format("%s: saved value %d has no time (a time window needs one)", fname, i), 2)
    end
  end
  if data.now ~= nil and not is_finite(data.now) then
    error(fname .. ": saved now must be a finite number, got " .. show(data.now), 2)
  end
  self:clear()
  for i = 1, #vals do
    local t = times and times[i] or nil
    if self.kind == "time" and self.now and t < self.now then t = self.now end
    self:push(vals[i], t)
  end
  if self.kind == "time" and data.now ~= nil then self:expire(data.now) end
  return self
end

function Window:__tostring()
  if self.kind == "count" then
    return format("window.count(%d): %d values", self.size, self:count())
  end
  return format("window.time(%s): %d values", show(self.size), self:count())
end

--- True if `x` is a window made by this module.
-- @return boolean
function window.is_window(x)
  return getmetatable(x) == Window
end

---------------------------------------------------------------------------
-- ewma
---------------------------------------------------------------------------

local Ewma = {}
Ewma.__index = Ewma
Ewma.__name = "lume.window.ewma"

--- An exponentially weighted moving average (and variance) of a series.
--
-- Give `alpha` (0 < alpha <= 1): each reading moves the average by
-- `alpha * (v - mean)`, whatever the time between readings. Or give
-- `half_life_s`: a reading `dt` seconds after the previous one gets the
-- weight `a = 1 - 2^(-dt / half_life_s)`, so irregular timestamps are
-- handled: after a gap of one half-life the old average counts half, and
-- two readings with the same time count as one (the second gets weight 0).
-- `push` then needs `t`, which may not go backwards.
--
-- The first reading is the average (no bias towards 0). The variance is
-- the exponentially weighted one of West (1979):
-- `var = (1 - a) * (var + a * (v - mean)^2)`, with `mean` before the
-- update. Memory is constant.
-- @tparam table opts `alpha` or `half_life_s`
-- @treturn ewma
function window.ewma(opts)
  local fname = "window.ewma"
  check.options(fname, opts, {"alpha", "half_life_s"})
  if (opts.alpha == nil) == (opts.half_life_s == nil) then
    error(fname .. ": give exactly one of alpha or half_life_s", 2)
  end
  local alpha = check.number(fname, "alpha", opts.alpha, {gt = 0, max = 1, optional = true})
  local hl = check.number(fname, "half_life_s", opts.half_life_s, {gt = 0, optional = true})
  return setmetatable({ alpha = alpha, half_life = hl, n = 0, mean_ = 0.0, var_ = 0.0 }, Ewma)
end

--- Add a reading.
-- @tparam number v the reading (finite)
-- @tparam[opt] number t its time in seconds (required with `half_life_s`)
-- @treturn number the new average
function Ewma:push(v, t)
  if type(v) ~= "number" or v - v ~= 0 then
    error("ewma:push: value must be a finite number, got " .. show(v), 2)
  end
  if t ~= nil or self.half_life then
    if type(t) ~= "number" or t - t ~= 0 then
      error("ewma:push: t must be a finite number (seconds)"
            .. (self.half_life and " with half_life_s" or " or nil") .. ", got " .. show(t), 2)
    end
    if self.t and t < self.t then
      error(format("ewma:push: time went backwards (t=%s is before %s)", show(t), show(self.t)), 2)
    end
  end
  local n = self.n
  if n == 0 then
    self.mean_, self.var_ = v, 0.0
  else
    local a = self.alpha or 1 - 2 ^ (-(t - self.t) / self.half_life)
    local mean = self.mean_
    local d = v - mean
    self.mean_ = mean + a * d
    self.var_ = (1 - a) * (self.var_ + a * d * d)
  end
  self.n = n + 1
  if t ~= nil then self.t = t end
  return self.mean_
end

--- The average, or nil before the first reading.
function Ewma:mean()
  if self.n == 0 then return nil end
  return self.mean_
end
Ewma.value = Ewma.mean

--- The exponentially weighted variance, or nil before the first reading.
function Ewma:variance()
  if self.n == 0 then return nil end
  return self.var_
end

--- Its square root, or nil before the first reading.
function Ewma:stddev()
  if self.n == 0 then return nil end
  return sqrt(self.var_)
end

--- Readings pushed so far.
function Ewma:count() return self.n end

--- Forget every reading.
function Ewma:clear()
  self.n, self.mean_, self.var_, self.t = 0, 0.0, 0.0, nil
  return self
end

--- The state to hand to the next version (see `lume.keep`).
-- @treturn table `{n, mean, var, t}`
function Ewma:save()
  return { n = self.n, mean = self.mean_, var = self.var_, t = self.t }
end

--- Take a state made by `save`.
function Ewma:restore(data)
  local fname = "ewma:restore"
  check.type(fname, "saved state", data, "table")
  local n = check.number(fname, "saved n", data.n, {integer = true, min = 0})
  local mean = check.number(fname, "saved mean", data.mean, {default = 0.0})
  local var = check.number(fname, "saved var", data.var, {min = 0, default = 0.0})
  self.n, self.mean_, self.var_ = n, mean, var
  self.t = check.number(fname, "saved t", data.t, {optional = true})
  return self
end

function Ewma:__tostring()
  return format("window.ewma(%s): %d readings", self.alpha and "alpha=" .. show(self.alpha)
                or "half_life_s=" .. show(self.half_life), self.n)
end

---------------------------------------------------------------------------
-- sketch
---------------------------------------------------------------------------

local Sketch = {}
Sketch.__index = Sketch
Sketch.__name = "lume.window.sketch"

local log, ceil = math.log, math.ceil

--- Percentiles of a whole stream in bounded memory: a log-bucket sketch
-- (DDSketch, Masson et al. 2019).
--
-- A value x > 0 is counted in bucket `ceil(log(x) / log(g))`, with
-- `g = (1 + accuracy) / (1 - accuracy)`; negative values in a mirror set of
-- buckets by |x|; |x| < `min_value` in one bucket for zero. A percentile
-- answers with the middle of the bucket that holds the value of its rank,
-- so **it is within `accuracy` relative error of the exact order statistic**
-- `x[floor(p / 100 * (n - 1)) + 1]` of the sorted values (within
-- `min_value` near zero), and clamped to the exact min and max.
--
-- Memory: one counter per bucket in use, at most `max_bins` (default 2048)
-- for each sign. With accuracy 0.01, 2048 buckets span a ratio of 10^17
-- between the smallest and largest |x|; past that the buckets nearest zero
-- are merged, and the bound no longer holds for the low percentiles.
-- A sensor reading 0.1 to 100 with accuracy 0.01 uses about 350 buckets.
-- @tparam[opt] table opts `accuracy` (0 < a < 1, default 0.01),
--   `max_bins` (default 2048), `min_value` (default 1e-9)
-- @treturn sketch
function window.sketch(opts)
  local fname = "window.sketch"
  opts = check.options(fname, opts, {"accuracy", "max_bins", "min_value"}, 3, true)
  local a = check.number(fname, "accuracy", opts.accuracy, {gt = 0, max = 0.5, default = 0.01})
  local max_bins = check.number(fname, "max_bins", opts.max_bins,
                                {integer = true, min = 1, default = 2048})
  local min_value = check.number(fname, "min_value", opts.min_value, {gt = 0, default = 1e-9})
  local g = (1 + a) / (1 - a)
  return setmetatable({ accuracy = a, g = g, lg = log(g), max_bins = max_bins,
                        min_value = min_value, pos = {}, neg = {}, npos = 0, nneg = 0,
                        zero = 0, n = 0 }, Sketch)
end

-- Merge the lowest bucket of a store into the next one up.
local function collapse(store)
  local lo, lo2
  for k in pairs(store) do
    if not lo or k < lo then lo, lo2 = k, lo elseif not lo2 or k < lo2 then lo2 = k end
  end
  store[lo2] = store[lo2] + store[lo]
  store[lo] = nil
end

local function add(self, v, c)
  local x = v < 0 and -v or v
  if x < self.min_value then
    self.zero = self.zero + c
  else
    local k = ceil(log(x) / self.lg)
    local store = v < 0 and self.neg or self.pos
    local had = store[k]
    if had then
      store[k] = had + c
    else
      store[k] = c
      if v < 0 then
        self.nneg = self.nneg + 1
        if self.nneg > self.max_bins then collapse(store); self.nneg = self.nneg - 1 end
      else
        self.npos = self.npos + 1
        if self.npos > self.max_bins then collapse(store); self.npos = self.npos - 1 end
      end
    end
  end
  self.n = self.n + c
  if not self.lo or v < self.lo then self.lo = v end
  if not self.hi or v > self.hi then self.hi = v end
end

--- Add a value.
-- @tparam number v a finite number
-- @treturn sketch self
function Sketch:push(v)
  if type(v) ~= "number" or v - v ~= 0 then
    error("sketch:push: value must be a finite number, got " .. show(v), 2)
  end
  add(self, v, 1)
  return self
end

local function keys(store, descending)
  local ks = {}
  for k in pairs(store) do ks[#ks + 1] = k end
  if descending then sort(ks, function(a, b) return a > b end) else sort(ks) end
  return ks
end

--- Percentiles (0 to 100) of everything pushed, within the accuracy (see
-- `window.sketch`); several at once share one pass. nil when empty.
-- @return one number per p
function Sketch:percentile(p, ...)
  local nq = select("#", ...) + 1
  local qs = {p, ...}
  for i = 1, nq do check_p("sketch:percentile", qs[i]) end
  if self.n == 0 then return nil end
  -- buckets in increasing order of value: negatives by decreasing |x|,
  -- zero, positives
  local order, counts = {}, {}
  local g, lo, hi = self.g, self.lo, self.hi
  for _, k in ipairs(keys(self.neg, true)) do
    order[#order + 1] = -2 * g ^ k / (g + 1); counts[#order] = self.neg[k]
  end
  if self.zero > 0 then order[#order + 1] = 0.0; counts[#order] = self.zero end
  for _, k in ipairs(keys(self.pos)) do
    order[#order + 1] = 2 * g ^ k / (g + 1); counts[#order] = self.pos[k]
  end
  local out = {}
  for i = 1, nq do
    local rank = (qs[i] / 100 * (self.n - 1)) // 1     -- 0-based
    local seen, v = 0, order[#order]
    for j = 1, #order do
      seen = seen + counts[j]
      if seen > rank then v = order[j]; break end
    end
    if v < lo then v = lo elseif v > hi then v = hi end
    out[i] = v
  end
  return unpack(out, 1, nq)
end

--- Values pushed so far.
function Sketch:count() return self.n end
--- The exact smallest and largest values pushed (nil when empty).
function Sketch:min() return self.lo end
function Sketch:max() return self.hi end
--- Buckets in use (the memory the sketch holds, one counter each).
function Sketch:bins() return self.npos + self.nneg + (self.zero > 0 and 1 or 0) end

--- Forget everything pushed.
function Sketch:clear()
  self.pos, self.neg, self.npos, self.nneg, self.zero, self.n = {}, {}, 0, 0, 0, 0
  self.lo, self.hi = nil, nil
  return self
end

local function flat(store)
  local out = {}
  for _, k in ipairs(keys(store)) do out[#out + 1] = k; out[#out + 1] = store[k] end
  return out
end

--- The state to hand to the next version (see `lume.keep`): the buckets as
-- flat `{index, count, ...}` arrays, the zero count, min and max, and the
-- accuracy they were counted with.
-- @treturn table
function Sketch:save()
  return { accuracy = self.accuracy, pos = flat(self.pos), neg = flat(self.neg),
           zero = self.zero, min = self.lo, max = self.hi }
end

--- Take a state made by `save`. Buckets counted with another accuracy are
-- re-counted at their middle value (adding that accuracy's error to this
-- one's).
function Sketch:restore(data)
  local fname = "sketch:restore"
  check.type(fname, "saved state", data, "table")
  local acc = check.number(fname, "saved accuracy", data.accuracy, {gt = 0, max = 0.5})
  check.type(fname, "saved pos", data.pos, "table")
  check.type(fname, "saved neg", data.neg, "table")
  local zero = check.number(fname, "saved zero", data.zero, {integer = true, min = 0, default = 0})
  local lo = check.number(fname, "saved min", data.min, {optional = true})
  local hi = check.number(fname, "saved max", data.max, {optional = true})
  local g = (1 + acc) / (1 - acc)
  for _, side in ipairs{"pos", "neg"} do
    local arr = data[side]
    if #arr % 2 ~= 0 then error(fname .. ": saved " .. side .. " must hold index, count pairs", 2) end
    for i = 1, #arr do
      check.number(fname, format("saved %s[%d]", side, i), arr[i],
                   {integer = true, min = (i % 2 == 0) and 1 or nil})
    end
  end
  self:clear()
  for _, side in ipairs{"pos", "neg"} do
    local arr, sign = data[side], side == "neg" and -1 or 1
    for i = 1, #arr, 2 do add(self, sign * 2 * g ^ arr[i] / (g + 1), arr[i + 1]) end
  end
  if zero > 0 then add(self, 0.0, zero) end
  if self.n > 0 then self.lo, self.hi = lo or self.lo, hi or self.hi end
  return self
end

function Sketch:__tostring()
  return format("window.sketch(accuracy=%s): %d values in %d buckets", show(self.accuracy),
                self.n, self:bins())
end

return window
