--- Building blocks for edge rules.
--
-- Small stateful objects that turn a stream of readings into decisions:
--
-- * `rules.threshold{...}`  alarm with hysteresis and an optional hold time
-- * `rules.rate_limit{...}` token bucket
-- * `rules.anomaly{...}`    z-score of each reading against a window
-- * `rules.debounce(s)`     a discrete input that must settle before it counts
-- * `rules.deadband(d)`     report a value only when it moved far enough
--
-- None of them reads a clock: every call that depends on time takes the
-- time `t` (seconds, any origin, never decreasing) from the caller, usually
-- the sample's own timestamp. That keeps them deterministic and testable.
--
-- Constructors check their options and raise on a mistake, including an
-- option name they do not know (a typo would otherwise be ignored).
--
-- @module lume.rules
-- @usage
--   local rules = require "lume.rules"
--
--   local hot = rules.threshold{above = 30, clear = 28, for_s = 10}
--   local limit = rules.rate_limit{per_s = 1 / 60, burst = 3}
--
--   lume.on_sample("temperature", function(v, t)
--     local event = hot:update(v, t)        -- "raised", "cleared" or nil
--     if event and limit:allow(t) then
--       lume.publish("alarms", {alarm = "hot", event = event, value = v})
--     end
--   end)

local check = require "lume.check"
local show, is_finite, as_integer = check.show, check.is_finite, check.as_integer
local window = require "lume.window"

local abs, huge, max = math.abs, math.huge, math.max
local tointeger = math.tointeger
local format = string.format

local rules = {}




-- Check that `data`, given to a restore method, is a table.
local function check_saved(fname, data)
  if type(data) ~= "table" then
    error(format("%s: saved state must be a table, got %s", fname, show(data)), 3)
  end
end

-- A saved field that must be nil or pass `ok`.
local function saved_field(fname, data, key, ok, what)
  local x = data[key]
  if x ~= nil and not ok(x) then
    error(format("%s: saved %s must be %s, got %s", fname, key, what, show(x)), 3)
  end
  return x
end

local function check_finite(fname, what, x, level)
  if not is_finite(x) then
    error(format("%s: %s must be a finite number, got %s", fname, what, show(x)),
          level + 1)
  end
end

local function check_time(fname, t, level)
  if not is_finite(t) then
    error(format("%s: t must be a finite number (seconds), got %s", fname, show(t)),
          level + 1)
  end
end

---------------------------------------------------------------------------
-- threshold
---------------------------------------------------------------------------

local Threshold = {}
Threshold.__index = Threshold
Threshold.__name = "lume.rules.threshold"

--- An alarm with hysteresis.
--
-- Give either `above` (alarm on high values) or `below` (alarm on low ones):
--
-- * with `above = 30, clear = 28` the alarm is raised when a value is
--   greater than 30, and cleared only when a value is less than 28; values
--   from 28 to 30 leave it as it is.
-- * with `below = 5, clear = 8` it is raised below 5 and cleared above 8.
--
-- `clear` defaults to the trigger level (no hysteresis band). With `for_s`
-- the raising condition must hold on every update for at least `for_s`
-- seconds before the alarm is raised (a reading that does not meet it
-- restarts the wait); `update` then needs `t`.
--
-- NaN never meets a condition: it neither raises nor clears, and it
-- restarts a `for_s` wait.
-- @tparam table opts `above` or `below`, optional `clear`, optional `for_s`
-- @treturn threshold
function rules.threshold(opts)
  local fname = "rules.threshold"
  check.options(fname, opts, { above = true, below = true, clear = true, for_s = true })
  local above, below, clear, for_s = opts.above, opts.below, opts.clear, opts.for_s
  if above ~= nil and below ~= nil then
    error(fname .. ": give either above or below, not both "
          .. "(use two thresholds for a band)", 2)
  end
  if above == nil and below == nil then
    error(fname .. ": one of above or below is required", 2)
  end
  local high = above ~= nil
  local level = high and above or below
  check_finite(fname, high and "above" or "below", level, 2)
  if clear == nil then
    clear = level
  else
    check_finite(fname, "clear", clear, 2)
    if high and clear > level then
      error(format("%s: clear (%s) must not be greater than above (%s)",
                   fname, show(clear), show(level)), 2)
    elseif not high and clear < level then
      error(format("%s: clear (%s) must not be less than below (%s)",
                   fname, show(clear), show(level)), 2)
    end
  end
  if for_s ~= nil and (not is_finite(for_s) or for_s < 0) then
    error(fname .. ": for_s must be a non-negative number of seconds, got "
          .. show(for_s), 2)
  end
  return setmetatable({
    high = high, level = level, clear = clear, for_s = for_s,
    on = false, since = nil,
  }, Threshold)
end

--- Feed a reading.
-- @tparam number v the reading
-- @tparam[opt] number t its time in seconds (required when `for_s` is set)
-- @treturn string|nil `"raised"` or `"cleared"` when the state changes,
--   nil otherwise
function Threshold:update(v, t)
  if type(v) ~= "number" then
    error("threshold:update: value must be a number, got " .. show(v), 2)
  end
  if self.for_s and not is_finite(t) then
    error("threshold:update: t must be a finite number (seconds) when for_s "
          .. "is set, got " .. show(t), 2)
  end
  if self.on then
    local done
    if self.high then done = v < self.clear else done = v > self.clear end
    if done then
      self.on = false
      return "cleared"
    end
    return nil
  end
  local hit
  if self.high then hit = v > self.level else hit = v < self.level end
  if not hit then
    self.since = nil
    return nil
  end
  if self.for_s then
    if self.since == nil then self.since = t end
    if t - self.since < self.for_s then return nil end
  end
  self.since = nil
  self.on = true
  return "raised"
end

--- Whether the alarm is raised.
-- @treturn boolean
function Threshold:active()
  return self.on
end

--- Back to the cleared state, forgetting any pending `for_s` wait.
function Threshold:reset()
  self.on, self.since = false, nil
end

--- The state to hand to the next version (see `lume.keep`): whether the
-- alarm is raised and since when the raising condition holds. The levels
-- are not saved: they come from the code that restores it.
-- @treturn table
function Threshold:save()
  return { on = self.on, since = self.since }
end

--- Take a state made by `save` (from this or an earlier version).
-- @tparam table data
function Threshold:restore(data)
  check_saved("threshold:restore", data)
  local on = saved_field("threshold:restore", data, "on",
                         function(x) return type(x) == "boolean" end, "a boolean")
  local since = saved_field("threshold:restore", data, "since", is_finite, "a finite number")
  self.on, self.since = on == true, since
end

---------------------------------------------------------------------------
-- rate_limit
---------------------------------------------------------------------------

local RateLimit = {}
RateLimit.__index = RateLimit
RateLimit.__name = "lume.rules.rate_limit"

-- Slack for tokens computed from float time differences, so that calls
-- exactly 1/per_s apart are not refused for a rounding error.
local TOKEN_EPS = 1e-9

--- A token bucket.
--
-- The bucket holds up to `burst` tokens (default 1) and starts full. It
-- gains `per_s` tokens per second; each allowed call takes one (or `cost`).
-- So in the long run at most `per_s` calls per second are allowed, with
-- bursts of up to `burst` calls after a quiet spell.
-- @tparam table opts `per_s` (positive), optional `burst` (at least 1)
-- @treturn rate_limit
function rules.rate_limit(opts)
  local fname = "rules.rate_limit"
  check.options(fname, opts, { per_s = true, burst = true })
  local per_s, burst = opts.per_s, opts.burst
  if not is_finite(per_s) or per_s <= 0 then
    error(fname .. ": per_s must be a positive finite number, got " .. show(per_s), 2)
  end
  if burst == nil then
    burst = 1
  elseif not is_finite(burst) or burst < 1 then
    error(fname .. ": burst must be a finite number >= 1, got " .. show(burst), 2)
  end
  return setmetatable({ per_s = per_s, burst = burst, tokens = burst, last = nil },
                      RateLimit)
end

local function refill(self, t)
  local last = self.last
  if last == nil then
    self.last = t
  elseif t > last then
    local tokens = self.tokens + (t - last) * self.per_s
    if tokens > self.burst then tokens = self.burst end
    self.tokens, self.last = tokens, t
  end
  -- A t older than the last one adds nothing (time does not run backwards).
end

--- Try to take `cost` tokens at time `t`.
-- @tparam number t the time in seconds
-- @tparam[opt=1] number cost tokens to take (at most `burst`)
-- @treturn boolean true if allowed (the tokens were taken)
function RateLimit:allow(t, cost)
  check_time("rate_limit:allow", t, 2)
  if cost == nil then
    cost = 1
  elseif not is_finite(cost) or cost < 0 then
    error("rate_limit:allow: cost must be a non-negative number, got " .. show(cost), 2)
  elseif cost > self.burst then
    error(format("rate_limit:allow: cost %s exceeds burst %s (it could never be allowed)",
                 show(cost), show(self.burst)), 2)
  end
  refill(self, t)
  if self.tokens + TOKEN_EPS >= cost then
    local tokens = self.tokens - cost
    self.tokens = tokens > 0 and tokens or 0
    return true
  end
  return false
end

--- Tokens available at time `t` (without taking any).
-- @tparam number t the time in seconds
-- @treturn number
function RateLimit:available(t)
  check_time("rate_limit:available", t, 2)
  refill(self, t)
  return self.tokens
end

--- The state to hand to the next version (see `lume.keep`): the tokens
-- and the time they were counted at.
-- @treturn table
function RateLimit:save()
  return { tokens = self.tokens, last = self.last }
end

--- Take a state made by `save` (tokens above this bucket's burst are cut).
-- @tparam table data
function RateLimit:restore(data)
  check_saved("rate_limit:restore", data)
  local tokens = saved_field("rate_limit:restore", data, "tokens",
                             function(x) return is_finite(x) and x >= 0 end,
                             "a non-negative number")
  self.last = saved_field("rate_limit:restore", data, "last", is_finite, "a finite number")
  if tokens ~= nil then self.tokens = tokens < self.burst and tokens or self.burst end
end

---------------------------------------------------------------------------
-- anomaly
---------------------------------------------------------------------------

local Anomaly = {}
Anomaly.__index = Anomaly
Anomaly.__name = "lume.rules.anomaly"

--- Flag readings far from the recent mean.
--
-- Each reading is scored against the window *before* it is added:
-- `score = (v - mean) / stddev`, and flagged when `|score| > z`. The reading
-- then enters the window whether flagged or not, so a lasting change of level
-- stops being flagged once the window has learnt it.
--
-- Options:
--
-- * `window`: the number of recent readings to compare against (a count
--   window of that size), or a window made by `lume.window` (for example
--   `window.time(300)`); required.
-- * `z`: the threshold, default 3.
-- * `min_samples`: readings needed in the window before anything is scored,
--   default 10 (or the window size, if smaller); at least 2.
-- * `min_stddev`: a floor for the standard deviation, default 0. With 0, a
--   window of identical readings scores any different reading as infinite;
--   set it to the sensor's resolution to avoid that.
-- @tparam table opts
-- @treturn anomaly
function rules.anomaly(opts)
  local fname = "rules.anomaly"
  check.options(fname, opts, { window = true, z = true, min_samples = true, min_stddev = true })
  local w, capacity = opts.window, nil
  if type(w) == "number" then
    capacity = as_integer(w)
    if not capacity or capacity < 2 then
      error(fname .. ": window must be an integer >= 2 or a lume.window, got " .. show(w), 2)
    end
    w = window.count(capacity)
  elseif window.is_window(w) then
    if w.kind == "count" then capacity = w.size end
  else
    error(fname .. ": window must be an integer >= 2 or a lume.window, got " .. show(w), 2)
  end
  local z = opts.z
  if z == nil then
    z = 3
  elseif not is_finite(z) or z <= 0 then
    error(fname .. ": z must be a positive finite number, got " .. show(z), 2)
  end
  local min_samples = opts.min_samples
  if min_samples == nil then
    min_samples = capacity and math.min(10, capacity) or 10
  else
    min_samples = as_integer(min_samples)
    if not min_samples or min_samples < 2 then
      error(fname .. ": min_samples must be an integer >= 2, got "
            .. show(opts.min_samples), 2)
    end
    if capacity and min_samples > capacity then
      error(format("%s: min_samples (%d) is larger than the window (%d values), "
                   .. "so nothing would ever be scored", fname, min_samples, capacity), 2)
    end
  end
  local min_stddev = opts.min_stddev
  if min_stddev == nil then
    min_stddev = 0
  elseif not is_finite(min_stddev) or min_stddev < 0 then
    error(fname .. ": min_stddev must be a non-negative finite number, got "
          .. show(min_stddev), 2)
  end
  return setmetatable({ w = w, z = z, min_samples = min_samples, min_stddev = min_stddev },
                      Anomaly)
end

--- Score a reading and add it to the window.
-- @tparam number v the reading (finite)
-- @tparam[opt] number t its time in seconds (required for a time window)
-- @treturn boolean flagged
-- @treturn number|nil the z-score, or nil while the window has fewer than
--   `min_samples` readings
function Anomaly:update(v, t)
  if not is_finite(v) then
    error("anomaly:update: value must be a finite number, got " .. show(v), 2)
  end
  local w = self.w
  if w.kind == "time" then
    check_time("anomaly:update", t, 2)
    w:expire(t)
  end
  local flagged, score = false, nil
  if w:count() >= self.min_samples then
    local mean = w:mean()
    local sd = max(w:stddev(), self.min_stddev)
    if sd > 0 then
      score = (v - mean) / sd
    elseif v == mean then
      score = 0.0
    else
      score = v > mean and huge or -huge
    end
    flagged = abs(score) > self.z
  end
  w:push(v, t)
  return flagged, score
end

--- The window the readings are scored against.
-- @treturn window
function Anomaly:window()
  return self.w
end

--- The state to hand to the next version (see `lume.keep`): the window's
-- readings.
-- @treturn table
function Anomaly:save()
  return { window = self.w:save() }
end

--- Take a state made by `save`.
-- @tparam table data
function Anomaly:restore(data)
  check_saved("anomaly:restore", data)
  if data.window ~= nil then self.w:restore(data.window) end
end

---------------------------------------------------------------------------
-- debounce
---------------------------------------------------------------------------

local Debounce = {}
Debounce.__index = Debounce
Debounce.__name = "lume.rules.debounce"

--- A discrete input that must hold a new value for `seconds` before the
-- change counts (a contact that bounces, a state that flickers).
--
-- The stable value starts unknown (nil); the first reading must also hold
-- for `seconds` before it becomes the stable value. Values are compared with
-- `==`, so this is for booleans, strings and integers; combine an analog
-- reading with `rules.threshold` first. The hold is checked on each update,
-- so keep feeding the current reading.
-- @tparam number seconds hold time (non-negative)
-- @treturn debounce
function rules.debounce(seconds)
  if not is_finite(seconds) or seconds < 0 then
    error("rules.debounce: seconds must be a non-negative finite number, got "
          .. show(seconds), 2)
  end
  return setmetatable({ hold = seconds, stable = nil,
                        pending = false, cand = nil, since = nil }, Debounce)
end

--- Feed a reading.
-- @param v the reading (not nil)
-- @tparam number t its time in seconds
-- @treturn boolean true when the stable value changed on this update
-- @return the stable value (nil until the first one has settled)
function Debounce:update(v, t)
  if v == nil then
    error("debounce:update: value must not be nil", 2)
  end
  check_time("debounce:update", t, 2)
  if v == self.stable then
    self.pending = false
    return false, self.stable
  end
  if not self.pending or self.cand ~= v then
    self.pending, self.cand, self.since = true, v, t
  end
  if t - self.since >= self.hold then
    self.stable, self.pending = v, false
    return true, v
  end
  return false, self.stable
end

--- The stable value (nil until the first one has settled).
function Debounce:value()
  return self.stable
end

--- The state to hand to the next version (see `lume.keep`).
-- @treturn table
function Debounce:save()
  return { stable = self.stable, pending = self.pending, cand = self.cand, since = self.since }
end

--- Take a state made by `save`.
-- @tparam table data
function Debounce:restore(data)
  check_saved("debounce:restore", data)
  local since = saved_field("debounce:restore", data, "since", is_finite, "a finite number")
  local pending = data.pending == true and data.cand ~= nil and since ~= nil
  self.stable, self.pending = data.stable, pending
  self.cand, self.since = pending and data.cand or nil, pending and since or nil
end

---------------------------------------------------------------------------
-- deadband
---------------------------------------------------------------------------

local Deadband = {}
Deadband.__index = Deadband
Deadband.__name = "lume.rules.deadband"

--- Report a reading only when it moved at least `delta` from the last
-- reported one. The first reading is always reported. NaN is never reported
-- and does not change the reference.
-- @tparam number delta the dead band (non-negative; 0 reports every change)
-- @treturn deadband
function rules.deadband(delta)
  if not is_finite(delta) or delta < 0 then
    error("rules.deadband: delta must be a non-negative finite number, got "
          .. show(delta), 2)
  end
  return setmetatable({ delta = delta, ref = nil }, Deadband)
end

--- Feed a reading.
-- @tparam number v the reading
-- @treturn number|nil `v` when it should be reported, nil otherwise
function Deadband:update(v)
  if type(v) ~= "number" then
    error("deadband:update: value must be a number, got " .. show(v), 2)
  end
  if v ~= v then return nil end
  local ref = self.ref
  if ref ~= nil then
    if v == ref then return nil end            -- no change is never a move
    -- Forgive the rounding error of the subtraction, so that 0.3 after 0.2
    -- counts as a move of 0.1.
    local slack = 1e-12 * max(abs(v), abs(ref), 1)
    if abs(v - ref) + slack < self.delta then return nil end
  end
  self.ref = v
  return v
end

--- The last reported reading (nil before the first).
function Deadband:last()
  return self.ref
end

--- Forget the last reported reading: the next one is reported.
function Deadband:reset()
  self.ref = nil
end

--- The state to hand to the next version (see `lume.keep`).
-- @treturn table
function Deadband:save()
  return { ref = self.ref }
end

--- Take a state made by `save`.
-- @tparam table data
function Deadband:restore(data)
  check_saved("deadband:restore", data)
  self.ref = saved_field("deadband:restore", data, "ref", is_finite, "a finite number")
end

return rules
