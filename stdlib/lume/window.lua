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
--   deque at most once).
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

local window = {}




---------------------------------------------------------------------------
-- Deque of numbers in a ring buffer. `buf[1..cap]` always holds numbers
-- (stale slots keep their old value), so the table stays in its array part.
-- A fixed deque never grows; the caller evicts before it pushes when full.
-- A growable deque doubles when full and halves when a quarter full.
---------------------------------------------------------------------------

local MIN_CAP = 8

local function dq_new(cap, fixed)
  local buf = {}
  for i = 1, cap do buf[i] = 0 end
  return { buf = buf, cap = cap, head = 1, n = 0, fixed = fixed }
end

local function dq_resize(d, ncap)
  local old, cap, head, n = d.buf, d.cap, d.head, d.n
  local buf = {}
  for i = 1, n do buf[i] = old[(head + i - 2) % cap + 1] end
  for i = n + 1, ncap do buf[i] = 0 end
  d.buf, d.cap, d.head = buf, ncap, 1
end

local function dq_push_back(d, x)
  local n = d.n
  if n == d.cap then dq_resize(d, d.cap * 2) end
  n = n + 1
  d.n = n
  d.buf[(d.head + n - 2) % d.cap + 1] = x
end

local function dq_pop_front(d)
  local x = d.buf[d.head]
  d.head = d.head % d.cap + 1
  d.n = d.n - 1
  if not d.fixed and d.cap > MIN_CAP and d.n * 4 <= d.cap then
    dq_resize(d, d.cap // 2)
  end
  return x
end

local function dq_pop_back(d)
  d.n = d.n - 1
end

local function dq_front(d)
  return d.buf[d.head]
end

local function dq_back(d)
  return d.buf[(d.head + d.n - 2) % d.cap + 1]
end

-- i-th element from the front, 1-based.
local function dq_get(d, i)
  return d.buf[(d.head + i - 2) % d.cap + 1]
end

local function dq_clear(d)
  d.head, d.n = 1, 0
  if not d.fixed and d.cap > MIN_CAP then dq_resize(d, MIN_CAP) end
end

---------------------------------------------------------------------------
-- Window
--
-- Fields:
--   kind    "count" or "time"
--   size    capacity (count) or length in seconds (time)
--   vals    deque of values, oldest first
--   ts      deque of timestamps parallel to vals (time windows always;
--           count windows once a timestamp has been pushed, `false` for
--           values pushed without one)
--   seq     sequence number of the newest value (the first push is 1);
--           the value with sequence number s sits at vals index
--           s - (seq - vals.n)
--   mins    deque of sequence numbers whose values increase strictly from
--           the front; the front is the window minimum
--   maxs    the same, decreasing; the front is the window maximum
--   mean_, m2  Welford state: mean and sum of squared deviations
--   evicted    values evicted since the last exact recomputation
--   now        newest time seen by push or expire (time windows)
---------------------------------------------------------------------------

local Window = {}
Window.__index = Window
Window.__name = "lume.window"

local function new(kind, size, cap, fixed)
  return setmetatable({
    kind = kind, size = size,
    vals = dq_new(cap, fixed),
    ts = kind == "time" and dq_new(cap, fixed) or nil,
    mins = dq_new(cap, fixed), maxs = dq_new(cap, fixed),
    seq = 0, mean_ = 0.0, m2 = 0.0, evicted = 0,
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
  return new("count", size, size, true)
end

--- A window over the values of the last `seconds` seconds.
-- @tparam number seconds length of the window (positive, finite)
-- @treturn window
function window.time(seconds)
  if not is_finite(seconds) or seconds <= 0 then
    error("window.time: seconds must be a positive finite number, got "
          .. show(seconds), 2)
  end
  return new("time", seconds, MIN_CAP, false)
end

local function value_at(self, s)
  return dq_get(self.vals, s - (self.seq - self.vals.n))
end

-- Exact mean and sum of squared deviations, by two passes.
local function recompute(self)
  local vals, n = self.vals, self.vals.n
  self.evicted = 0
  if n == 0 then
    self.mean_, self.m2 = 0.0, 0.0
    return
  end
  local sum = 0.0
  for i = 1, n do sum = sum + dq_get(vals, i) end
  local mean = sum / n
  local m2, corr = 0.0, 0.0
  for i = 1, n do
    local d = dq_get(vals, i) - mean
    m2 = m2 + d * d
    corr = corr + d
  end
  -- corr is the rounding error of the first pass (exactly 0 in exact
  -- arithmetic); folding it back in is the "corrected two-pass" algorithm.
  self.mean_ = mean + corr / n
  self.m2 = m2 - corr * corr / n
  if self.m2 < 0 then self.m2 = 0.0 end
end

-- Remove the oldest value.
local function evict(self)
  local vals = self.vals
  local first = self.seq - vals.n + 1
  local x = dq_pop_front(vals)
  if self.ts then dq_pop_front(self.ts) end
  if dq_front(self.mins) == first then dq_pop_front(self.mins) end
  if dq_front(self.maxs) == first then dq_pop_front(self.maxs) end
  local n = vals.n
  if n == 0 then
    self.mean_, self.m2, self.evicted = 0.0, 0.0, 0
    return
  end
  -- Welford in reverse.
  local m2_old = self.m2
  local d = x - self.mean_
  local mean = self.mean_ - d / n
  local m2 = m2_old - d * (x - mean)
  self.mean_, self.m2 = mean, m2
  local evicted = self.evicted + 1
  self.evicted = evicted
  -- Recompute after a window's worth of evictions, and at once when the
  -- leaving value carried most of the spread (m2 fell by more than 10^4:
  -- the subtraction cancelled that many digits), or the state is broken.
  if evicted >= n or m2 < m2_old * 1e-4 or m2 ~= m2 or m2 == huge then
    recompute(self)
  end
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
  local ts = self.ts
  while ts.n > 0 and dq_front(ts) <= horizon do evict(self) end
  return self
end

--- Add a value.
-- For a time window `t` is required and must not be older than the newest
-- timestamp already seen. For a count window it is optional; when given it
-- is kept so that `rate` and `last` can report it.
-- @tparam number v the value (finite)
-- @tparam[opt] number t its timestamp in seconds
-- @treturn window self
function Window:push(v, t)
  if not is_finite(v) then
    error("window:push: value must be a finite number, got " .. show(v), 2)
  end
  local vals = self.vals
  if self.kind == "time" then
    if not is_finite(t) then
      error("window:push: a time window needs a finite timestamp t "
            .. "(seconds), got " .. show(t), 2)
    end
    if self.now and t < self.now then
      error(format("window:push: time went backwards (t=%s is before %s)",
                   show(t), show(self.now)), 2)
    end
    self:expire(t)
  else
    if t ~= nil and not is_finite(t) then
      error("window:push: t must be a finite number or nil, got " .. show(t), 2)
    end
    if vals.n == self.size then evict(self) end
    if t ~= nil and not self.ts then
      -- First timestamp for this count window: start the parallel deque,
      -- with `false` for the values that came without one.
      self.ts = dq_new(self.size, true)
      for _ = 1, vals.n do dq_push_back(self.ts, false) end
    end
  end

  -- Monotonic deques: drop the entries the new value dominates.
  local mins, maxs = self.mins, self.maxs
  while mins.n > 0 and value_at(self, dq_back(mins)) >= v do dq_pop_back(mins) end
  while maxs.n > 0 and value_at(self, dq_back(maxs)) <= v do dq_pop_back(maxs) end

  local seq = self.seq + 1
  self.seq = seq
  dq_push_back(vals, v)
  if self.ts then
    if t == nil then t = false end
    dq_push_back(self.ts, t)
  end
  dq_push_back(mins, seq)
  dq_push_back(maxs, seq)

  -- Welford.
  local d = v - self.mean_
  local mean = self.mean_ + d / vals.n
  self.m2 = self.m2 + d * (v - mean)
  self.mean_ = mean
  return self
end

--- Number of values in the window.
-- @treturn integer
function Window:count()
  return self.vals.n
end

Window.__len = Window.count

--- Arithmetic mean of the values, or nil when the window is empty.
-- @treturn number|nil
function Window:mean()
  if self.vals.n == 0 then return nil end
  return self.mean_
end

--- Population variance of the values (divided by n), or nil when empty.
-- @treturn number|nil
function Window:variance()
  local n = self.vals.n
  if n == 0 then return nil end
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
  if self.vals.n == 0 then return nil end
  return value_at(self, dq_front(self.mins))
end

--- Largest value in the window, or nil when empty.
-- @treturn number|nil
function Window:max()
  if self.vals.n == 0 then return nil end
  return value_at(self, dq_front(self.maxs))
end

--- Newest value and its timestamp (nil when not known), or nil when empty.
-- @treturn number|nil value
-- @treturn number|nil timestamp
function Window:last()
  local n = self.vals.n
  if n == 0 then return nil end
  local t = self.ts and dq_get(self.ts, n) or nil
  return dq_get(self.vals, n), t or nil
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
    return self.vals.n / self.size
  end
  local n, ts = self.vals.n, self.ts
  if n < 2 or not ts then return nil end
  local t0, t1 = dq_front(ts), dq_get(ts, n)
  if not t0 or not t1 or t1 <= t0 then return nil end
  return (n - 1) / (t1 - t0)
end

--- The values, oldest first, as a new array; for a window with timestamps a
-- second array holds them (`false` for values pushed without one).
-- @treturn {number,...} values
-- @treturn[opt] {number,...} timestamps
function Window:values()
  local vals, ts, n = self.vals, self.ts, self.vals.n
  local out = {}
  for i = 1, n do out[i] = dq_get(vals, i) end
  if not ts then return out end
  local times = {}
  for i = 1, n do times[i] = dq_get(ts, i) end
  return out, times
end

--- Remove every value (the window keeps its size).
-- @treturn window self
function Window:clear()
  dq_clear(self.vals)
  dq_clear(self.mins)
  dq_clear(self.maxs)
  if self.ts then dq_clear(self.ts) end
  if self.kind == "count" then self.ts = nil end
  self.mean_, self.m2, self.evicted, self.now = 0.0, 0.0, 0, nil
  return self
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
    return format("window.count(%d): %d values", self.size, self.vals.n)
  end
  return format("window.time(%s): %d values", show(self.size), self.vals.n)
end

--- True if `x` is a window made by this module.
-- @return boolean
function window.is_window(x)
  return getmetatable(x) == Window
end

return window
