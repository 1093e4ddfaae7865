--- Building blocks for edge rules.
--
-- Small stateful objects that turn a stream of readings into decisions:
--
-- * `rules.threshold{...}`  alarm with hysteresis and an optional hold time
-- * `rules.alarm{...}`      a threshold (or any condition) an operator
--                           acknowledges: normal, raised, acknowledged, cleared
-- * `rules.rate_limit{...}` token bucket
-- * `rules.anomaly{...}`    z-score of each reading against a window or an EWMA
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
-- alarm
--
-- States and transitions (event returned in quotes; id = the raise id):
--
--                 condition: "raised", id = id + 1
--     normal ──────────────────────────────────► raised
--      ▲  ▲                                      │    │
--      │  │                        ack(id)       │    │ condition gone
--      │  │             "acknowledged"           │    │ "cleared"
--      │  │                 ┌────────────────────┘    ▼
--      │  │                 ▼                      cleared ── condition ──► raised
--      │  │           acknowledged                 (unacknowledged:      "raised",
--      │  │                 │                       still needs an ack)  id = id + 1
--      │  │ condition gone  │                         │
--      │  └── "cleared" ────┘                         │ ack(id)
--      └─────────────────── "acknowledged" ───────────┘
--
-- Invariants:
--   1. id counts raises; each raise gets a new id, so an ack names the
--      raise it was meant for, and an ack of an old raise (a stale id) is
--      refused: a cleared-then-raised alarm needs a new ack.
--   2. An ack is taken only in raised or cleared, and only with the
--      current id; anything else changes nothing and says why.
--   3. The condition (raised or not) and the acknowledgement are
--      independent: the state is the pair (condition, acknowledged).
---------------------------------------------------------------------------

local Alarm = {}
Alarm.__index = Alarm
Alarm.__name = "lume.rules.alarm"

local ALARM_STATES = { normal = true, raised = true, acknowledged = true, cleared = true }

--- An alarm that an operator acknowledges: a condition (the options of
-- `rules.threshold`, or none, then `set` drives it) plus the state machine
-- drawn at the top of this section in rules.lua.
-- @tparam table opts `name` (a string, in every event), and optionally
--   `above` or `below`, `clear`, `for_s` as for `rules.threshold`
-- @treturn alarm
function rules.alarm(opts)
  local fname = "rules.alarm"
  check.options(fname, opts, { name = true, above = true, below = true, clear = true,
                               for_s = true })
  local name = check.type(fname, "name", opts.name, "string")
  local cond
  if opts.above ~= nil or opts.below ~= nil then
    local ok, made = pcall(rules.threshold, { above = opts.above, below = opts.below,
                                              clear = opts.clear, for_s = opts.for_s })
    if not ok then error((made:gsub("^rules%.threshold", fname)), 2) end
    cond = made
  elseif opts.clear ~= nil or opts.for_s ~= nil then
    error(fname .. ": clear and for_s need above or below", 2)
  end
  return setmetatable({ name = name, cond = cond, state_ = "normal", id = 0 }, Alarm)
end

local function event(self, ev, t, v, by)
  self.changed = t
  return { alarm = self.name, event = ev, state = self.state_, id = self.id, t = t,
           value = v, by = by }
end

--- Drive the condition directly: true raises (from normal or cleared),
-- false clears (from raised or acknowledged).
-- @tparam boolean active
-- @tparam number t the time in seconds
-- @param[opt] v a value to carry in the event
-- @treturn table|nil the event, or nil when nothing changed
function Alarm:set(active, t, v)
  check_time("alarm:set", t, 2)
  local st = self.state_
  if active then
    if st == "normal" or st == "cleared" then
      self.id, self.state_, self.raised_at = self.id + 1, "raised", t
      return event(self, "raised", t, v)
    end
  elseif st == "raised" then
    self.state_ = "cleared"
    return event(self, "cleared", t, v)
  elseif st == "acknowledged" then
    self.state_ = "normal"
    return event(self, "cleared", t, v)
  end
  return nil
end

--- Feed a reading to the alarm's threshold (made with `above` or `below`).
-- @tparam number v the reading
-- @tparam number t its time in seconds
-- @treturn table|nil the event (`{alarm, event, state, id, t, value}`), or nil
function Alarm:update(v, t)
  local cond = self.cond
  if not cond then
    error("alarm:update: this alarm has no above or below; drive it with alarm:set", 2)
  end
  check_time("alarm:update", t, 2)
  local change = cond:update(v, t)
  if change then return self:set(change == "raised", t, v) end
  return nil
end

--- Acknowledge raise `id` at time `t`. Input from outside (a method, a
-- desired property), so a wrong id is an answer, not an error.
-- @param id the raise id being acknowledged
-- @tparam number t the time in seconds
-- @param[opt] by who acknowledged (carried in the event and the report)
-- @treturn table|nil the event, or nil and a message saying why not
function Alarm:ack(id, t, by)
  check_time("alarm:ack", t, 2)
  local want = as_integer(id)
  if not want then
    return nil, format("alarm %s: an ack needs the raise id (an integer), got %s",
                       self.name, show(id))
  end
  local st, cur = self.state_, self.id
  if st == "normal" then
    return nil, format("alarm %s is not raised (raise %d was %s)", self.name, cur,
                       cur == 0 and "never made" or "already acknowledged and cleared")
  end
  if want ~= cur then
    return nil, format("alarm %s: ack for raise %d is %s: the current raise is %d", self.name,
                       want, want < cur and "stale" or "for a raise not made yet", cur)
  end
  if st == "acknowledged" then
    return nil, format("alarm %s: raise %d is already acknowledged", self.name, cur)
  end
  self.acked_at, self.acked_by = t, by
  self.state_ = st == "raised" and "acknowledged" or "normal"
  return event(self, "acknowledged", t, nil, by)
end

--- The state: "normal", "raised", "acknowledged" or "cleared".
function Alarm:state() return self.state_ end

--- Whether the condition holds (raised or acknowledged).
function Alarm:active()
  return self.state_ == "raised" or self.state_ == "acknowledged"
end

--- What to put in reported properties: `{state, id, since, raised_at,
-- acked_at, acked_by}` (the last three when known).
-- @treturn table
function Alarm:report()
  return { state = self.state_, id = self.id, since = self.changed, raised_at = self.raised_at,
           acked_at = self.acked_at, acked_by = self.acked_by }
end

--- The state to hand to the next version (see `lume.keep`). `on` and
-- `since` are its threshold's (so a `rules.threshold` restores it too);
-- the rest is the alarm's.
-- @treturn table
function Alarm:save()
  local data = self.cond and self.cond:save() or {}
  data.state, data.id, data.changed = self.state_, self.id, self.changed
  data.raised_at, data.acked_at, data.acked_by = self.raised_at, self.acked_at, self.acked_by
  return data
end

--- Take a state made by `save`, or by a `rules.threshold` (an earlier
-- version of a script used one: raised there is raise 1 here).
-- @tparam table data
function Alarm:restore(data)
  local fname = "alarm:restore"
  check_saved(fname, data)
  if self.cond then self.cond:restore(data) end
  if data.state == nil then
    local on = data.on == true
    self.state_, self.id = on and "raised" or "normal", on and 1 or 0
    return
  end
  if not ALARM_STATES[data.state] then
    error(fname .. ": saved state must be normal, raised, acknowledged or cleared, got "
          .. show(data.state), 2)
  end
  local id = check.number(fname, "saved id", data.id, { integer = true, min = 0 })
  self.state_, self.id = data.state, id
  self.changed = saved_field(fname, data, "changed", is_finite, "a finite number")
  self.raised_at = saved_field(fname, data, "raised_at", is_finite, "a finite number")
  self.acked_at = saved_field(fname, data, "acked_at", is_finite, "a finite number")
  self.acked_by = data.acked_by
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
-- Each reading is scored against what came *before* it:
-- `score = (v - mean) / stddev`, and flagged when `|score| > z`. The reading
-- is then learnt whether flagged or not, so a lasting change of level stops
-- being flagged once it has been learnt.
--
-- Options:
--
-- * `method`: `"window"` (the default) scores against the mean and
--   standard deviation of a sliding window; `"ewma"` against an
--   exponentially weighted mean and variance (`lume.window.ewma`: constant
--   memory, recent readings count most).
-- * `window` (method "window"): the number of recent readings to compare
--   against (a count window of that size), or a window made by
--   `lume.window` (for example `window.time(300)`); required.
-- * `alpha` or `half_life_s` (method "ewma"): as for `window.ewma`; one is
--   required.
-- * `z`: the threshold, default 3.
-- * `min_samples`: readings needed before anything is scored, default 10
--   (or the window size, if smaller); at least 2.
-- * `min_stddev`: a floor for the standard deviation, default 0. With 0, a
--   run of identical readings scores any different reading as infinite;
--   set it to the sensor's resolution to avoid that.
-- @tparam table opts
-- @treturn anomaly
function rules.anomaly(opts)
  local fname = "rules.anomaly"
  check.options(fname, opts, { method = true, window = true, alpha = true, half_life_s = true,
                               z = true, min_samples = true, min_stddev = true })
  local method = opts.method or "window"
  local w, e, capacity = nil, nil, nil
  if method == "ewma" then
    if opts.window ~= nil then
      error(fname .. ': window is for method "window"; method "ewma" takes alpha or '
            .. "half_life_s", 2)
    end
    local ok, made = pcall(window.ewma, { alpha = opts.alpha, half_life_s = opts.half_life_s })
    if not ok then error((made:gsub("^window%.ewma", fname)), 2) end
    e = made
  elseif method == "window" then
    if opts.alpha ~= nil or opts.half_life_s ~= nil then
      error(fname .. ': alpha and half_life_s are for method "ewma"', 2)
    end
    w = opts.window
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
  else
    error(fname .. ': method must be "window" or "ewma", got ' .. show(method), 2)
  end
  local z = check.number(fname, "z", opts.z, { gt = 0, default = 3 })
  local min_samples = opts.min_samples
  if min_samples == nil then
    min_samples = capacity and math.min(10, capacity) or 10
  else
    min_samples = check.number(fname, "min_samples", min_samples,
                               { integer = true, min = 2, what = "an integer >= 2" })
    if capacity and min_samples > capacity then
      error(format("%s: min_samples (%d) is larger than the window (%d values), "
                   .. "so nothing would ever be scored", fname, min_samples, capacity), 2)
    end
  end
  local min_stddev = check.number(fname, "min_stddev", opts.min_stddev, { min = 0, default = 0 })
  return setmetatable({ w = w, e = e, z = z, min_samples = min_samples,
                        min_stddev = min_stddev }, Anomaly)
end

--- Score a reading and learn it.
-- @tparam number v the reading (finite)
-- @tparam[opt] number t its time in seconds (required for a time window
--   and for `half_life_s`)
-- @treturn boolean flagged
-- @treturn number|nil the z-score, or nil while fewer than `min_samples`
--   readings came before
function Anomaly:update(v, t)
  if not is_finite(v) then
    error("anomaly:update: value must be a finite number, got " .. show(v), 2)
  end
  local w = self.w or self.e
  if self.w and w.kind == "time" or self.e and self.e.half_life then
    check_time("anomaly:update", t, 2)
    if self.w then w:expire(t) end
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

--- The window the readings are scored against (the `window.ewma` for
-- method "ewma").
-- @treturn window
function Anomaly:window()
  return self.w or self.e
end

--- The state to hand to the next version (see `lume.keep`): the window's
-- readings, or the EWMA's state.
-- @treturn table
function Anomaly:save()
  if self.e then return { ewma = self.e:save() } end
  return { window = self.w:save() }
end

--- Take a state made by `save` (a window's readings are not restored into
-- an EWMA, nor the other way round: the rule starts learning again).
-- @tparam table data
function Anomaly:restore(data)
  check_saved("anomaly:restore", data)
  if self.w and data.window ~= nil then self.w:restore(data.window) end
  if self.e and data.ewma ~= nil then self.e:restore(data.ewma) end
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
