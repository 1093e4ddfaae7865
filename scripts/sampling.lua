-- sampling.lua — adaptive sampling: fast when the signal is interesting,
-- slow when it is stable.
--
-- For each sensor it adapts, every period_s seconds it looks at a window of
-- the latest `window` readings:
-- * their variance against a baseline learnt while the signal was calm: at
--   `rise` times the baseline (or more) the signal is interesting;
-- * the threshold proximity: a reading in the window within `band` of
--   `above` (or of `below`) is interesting too.
-- Interesting: the rate is multiplied by `up` (up to max_rate) and the
-- state is "active". Stable (variance under `settle` times the baseline,
-- no reading near a threshold): the baseline follows the signal, the rate
-- is multiplied by `down` (down to min_rate) and the state is "calm".
-- Between the two the rate holds. Rates always stay within the board's
-- bounds (sensor:bounds()). The baseline follows the signal only while it
-- is calm, so a long burst does not become "normal".
--
--            variance >= rise x baseline, or a reading within band of a threshold
--   calm ───────────────────────────────────────────────────────────────► active
--   (rate x down each period,                                   (rate x up each period,
--    down to min_rate) ◄───── variance < settle x baseline, ────  up to max_rate)
--                             no reading near a threshold
--
-- Parameters come from the twin, per sensor (keys left out take the
-- defaults below; min_rate defaults to the sensor's rate when the policy
-- first took it, max_rate to the board's max_rate):
--
--   desired.sampling = { vibration = { rise = 4, settle = 1.5, up = 2, down = 0.8,
--                                      min_rate = 100, max_rate = 2000, period_s = 0.5,
--                                      window = 256 },
--                        temperature = { above = 30, band = 1, max_rate = 10 } }
--
-- Without desired.sampling it adapts vibration with the defaults (if the
-- board has it). A sensor taken out of desired.sampling goes back to its
-- rate from before. What it does is reported when the state changes and
-- when the rate settles (reaches a bound, or holds), with the rate
-- sensor:rate() gives then (not at every step of a ramp: each report sends
-- the whole reported document):
--
--   reported.sampling.<sensor> = { rate, state = "active" | "calm", why, min_rate, max_rate }
--   reported.sampling.error    = why the last desired document was refused (the last good
--                                parameters stay)
--
-- The baselines, states and rates from before survive a reload or a
-- restart (lume.keep).

local check = require "lume.check"
local window = require "lume.window"
local json_null = (require "lume.json").null

local DEFAULTS = { rise = 4, settle = 1.5, up = 2, down = 0.8, period_s = 0.5, window = 256,
                   band = 0 }
local KEYS = { "rise", "settle", "up", "down", "min_rate", "max_rate", "above", "below",
               "band", "period_s", "window" }

-- per sensor: baseline (variance while calm), state, why, calm_hz (its rate
-- before the policy took it)
local st = lume.keep("sampling", { sensors = {} })
local live = {}          -- per sensor: { p = params (p.sensor: the handle), win, sample, timer }

-- The parameters of one sensor, checked; raises with a message naming the
-- key (level 0: the message is the operator's, not a line of this file).
local function params_of(name, v)
  local fname = "sampling." .. name
  local s, err = lume.sensor(name)
  if not s then
    error(("%s: %s (sensors here: %s)"):format(fname, err,
      table.concat(lume.sensor.list(), ", ")), 0)
  end
  check.options(fname, v, KEYS, 0)
  local lo, hi = s:bounds()
  local calm = st.sensors[name] and st.sensors[name].calm_hz or s:rate()
  local p = { sensor = s }
  local function num(k, spec)
    spec.default = spec.default or DEFAULTS[k]
    p[k] = check.number(fname, k, v[k], spec, 0)
  end
  num("rise", { gt = 1 })
  num("settle", { gt = 0 })
  num("up", { gt = 1 })
  num("down", { gt = 0, max = 1 })
  num("period_s", { min = 0.05, max = 3600 })
  num("window", { integer = true, min = 8, max = 4096 })   -- its ring is allocated whole
  num("band", { min = 0 })
  num("above", { optional = true })
  num("below", { optional = true })
  local bounds = ("a rate in Hz within the board's bounds [%g, %g]"):format(lo, hi)
  num("min_rate", { min = lo, max = hi, default = math.max(lo, math.min(hi, calm)),
                    what = bounds })
  num("max_rate", { min = lo, max = hi, default = hi, what = bounds })
  if p.settle >= p.rise then
    error(("%s: settle (%g) must be below rise (%g)"):format(fname, p.settle, p.rise), 0)
  end
  if p.down >= 1 then
    error(("%s: down must be below 1, got %g"):format(fname, p.down), 0)
  end
  if p.min_rate > p.max_rate then
    error(("%s: min_rate (%g) must not be above max_rate (%g)"):format(fname, p.min_rate,
      p.max_rate), 0)
  end
  return p, calm
end

local function report(name)
  local l, s = live[name], st.sensors[name]
  s.reported = l.p.sensor:rate()
  lume.twin.report({ sampling = { [name] = {
    rate = s.reported, state = s.state, why = s.why,
    min_rate = l.p.min_rate, max_rate = l.p.max_rate,
  } } })
end

-- A reading in the window within band of a threshold, described; or nil.
local function near(p, w)
  if p.above and w:max() >= p.above - p.band then
    return ("%g is within %g of above = %g"):format(w:max(), p.band, p.above)
  end
  if p.below and w:min() <= p.below + p.band then
    return ("%g is within %g of below = %g"):format(w:min(), p.band, p.below)
  end
end

local function evaluate(name)
  local l, s = live[name], st.sensors[name]
  local p, w = l.p, l.win
  if w:count() < math.max(8, p.window // 4) then return end
  local var = w:variance()
  s.baseline = s.baseline or var
  local base = math.max(s.baseline, 1e-12)
  local ratio = var / base
  local rate = p.sensor:rate()
  local close = near(p, w)
  local state, why, want = s.state, s.why, rate
  if close or ratio >= p.rise then
    state, want = "active", math.min(p.max_rate, rate * p.up)
    why = close or ("variance %.3g is %.1fx calm"):format(var, ratio)
  elseif ratio < p.settle then
    s.baseline = 0.9 * s.baseline + 0.1 * var
    state, want = "calm", math.max(p.min_rate, rate * p.down)
    why = "stable"
  end
  -- a rate from before (a reload with new bounds) is brought within them
  want = math.max(p.min_rate, math.min(p.max_rate, want))
  local applied = want ~= rate and p.sensor:rate(want) or rate
  -- reported when the state changes and once the rate settles (at a
  -- bound, or holding): not at every step of a ramp, since each report
  -- sends the whole reported document
  if state ~= s.state then
    lume.log.info("%s %s (%s): %g -> %g Hz", name, state, why, rate, applied)
    s.state, s.why = state, why
    report(name)
  elseif applied == rate and rate ~= s.reported then
    s.why = why
    report(name)
  end
end

local function stop(name)
  local l = live[name]
  l.sample:cancel()
  l.timer:cancel()
  live[name] = nil
end

-- Apply desired.sampling (nil: vibration with the defaults, if the board has it).
local function configure(v)
  local want, err = v, nil
  if want == nil then
    want = lume.sensor("vibration") and { vibration = {} } or {}
  end
  local parsed = {}
  if type(want) ~= "table" then
    err = "sampling must be an object {sensor = {rise, settle, ...}}"
  else
    for name, pv in pairs(want) do
      local ok, p, calm = pcall(params_of, tostring(name), pv)
      if not ok then err = tostring(p); break end
      parsed[name] = { p = p, calm = calm }
    end
  end
  if err then
    lume.log.warn("%s; the last good parameters stay", err)
    lume.twin.report({ sampling = { error = err } })
    return
  end
  -- sensors no longer adapted (here or by the version before) go back to
  -- their rate from before
  for name, s in pairs(st.sensors) do
    if not parsed[name] then
      local sensor = lume.sensor(name)
      if sensor then
        local back = sensor:rate(s.calm_hz)
        lume.log.info("%s: no longer adapted, back to %g Hz", name, back)
      end
      if live[name] then stop(name) end
      st.sensors[name] = nil
      lume.twin.report({ sampling = { [name] = json_null } })
    end
  end
  for name, x in pairs(parsed) do
    if live[name] then stop(name) end
    local s = st.sensors[name] or { calm_hz = x.calm, state = "calm", why = "starting" }
    st.sensors[name] = s
    local w = window.count(x.p.window)
    live[name] = {
      p = x.p, win = w,
      sample = lume.on_sample(name, function(values)
        for i = 1, #values do w:push(values[i]) end
      end, { batch = true }),
      timer = lume.timer.every(math.floor(x.p.period_s * 1000 + 0.5), function()
        evaluate(name)
      end),
    }
    report(name)
  end
  lume.twin.report({ sampling = { error = json_null } })
end

configure(lume.twin.desired("sampling"))
lume.twin.on_change("sampling", function(now) configure(now) end)
if next(live) == nil and lume.twin.desired("sampling") == nil then
  -- a board without vibration (boards/host.lua) and nothing desired
  local _, err = lume.sensor("vibration")
  lume.log.warn("%s: adaptive sampling is off (sensors here: %s); desired.sampling can "
    .. "name the sensors to adapt", err, table.concat(lume.sensor.list(), ", "))
end
