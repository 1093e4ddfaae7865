-- verbose.lua — verbose logging on demand.
--
-- When the device logs `errors` error lines within `window_s` seconds, the
-- log level goes to debug for `debug_min` minutes, then back to the level
-- desired in log.level (or the one before the switch, when none is
-- desired). Off until the twin asks for it:
--
--   desired.verbose = { errors = 20, window_s = 60, debug_min = 10 }
--
-- (a key left out takes that default; removing `verbose` turns it off and
-- ends a debug spell at once). What it did is reported:
--
--   reported.verbose = { state = "debug" | "normal" | "off", since, until,
--                        errors, reason, params }   (times: lume.now())
--   reported.log     = { level, by = "script verbose", why }
--
--          errors in window >= errors
--   normal ───────────────────────────► debug ──── until reached ───► normal
--      ▲                                  │
--      └──── desired.verbose removed ─────┘ (at once)
--
-- The spell survives a reload or a restart (lume.keep): a device in debug
-- stays there until its time is up.

local window = require "lume.window"
local json_null = (require "lume.json").null

local DEFAULTS = { errors = 20, window_s = 60, debug_min = 10 }
local LEVELS = { debug = true, info = true, warn = true, error = true }

local st = lume.keep("spell", { on = false, since = nil, ["until"] = nil, before = nil,
                                reason = nil })
local params            -- nil while off
local recent            -- error lines per tick, over window_s
local seen = lume.log.counts().error

-- The desired verbose document as parameters, or nil and why not.
local function parse(v)
  if type(v) ~= "table" then
    return nil, "verbose must be an object {errors, window_s, debug_min}"
  end
  local p = {}
  for k in pairs(v) do
    if DEFAULTS[k] == nil then
      return nil, ("verbose: unknown key %q (expected errors, window_s, debug_min)"):format(
        tostring(k))
    end
  end
  for k, d in pairs(DEFAULTS) do
    local x = v[k]
    if x == nil then x = d end
    if type(x) ~= "number" or x ~= x or x <= 0 or x == math.huge then
      return nil, ("verbose.%s must be a positive number, got %s"):format(k, tostring(v[k]))
    end
    p[k] = x
  end
  return p
end

local function desired_level()
  local l = lume.twin.desired("log")
  if type(l) == "table" then l = l.level end
  return LEVELS[l] and l or nil
end

local function report(now, errors)
  lume.twin.report({ verbose = {
    state = not params and "off" or st.on and "debug" or "normal",
    since = st.since or json_null, ["until"] = st["until"] or json_null,
    errors = errors, reason = st.reason or json_null, params = params or json_null,
    error = json_null,
  } })
end

local function back(now, why)
  local level = desired_level() or st.before or "info"
  lume.log.level(level, why)
  st.on, st.since, st["until"], st.before = false, now, nil, nil
  st.reason = why
end

local function tick(now)
  local count = lume.log.counts().error
  local new = count - seen
  seen = count
  if not params then return end
  recent:push(new, now)
  local errors = math.floor(recent:mean() * recent:count() + 0.5)
  if not st.on and errors >= params.errors then
    st.before = lume.log.level()
    st.on, st.since, st["until"] = true, now, now + params.debug_min * 60
    st.reason = ("%d errors in %g s (threshold %g)"):format(errors, params.window_s,
                                                            params.errors)
    lume.log.level("debug", st.reason .. ("; debug for %g min"):format(params.debug_min))
    report(now, errors)
  elseif st.on and now >= st["until"] then
    back(now, ("debug for %g min is over"):format(params.debug_min))
    recent:clear()
    report(now, 0)
  elseif st.on and lume.log.level() ~= "debug" then
    lume.log.level("debug", st.reason)   -- after a restart, the spell goes on
  end
end

local function configure(v)
  local now = lume.now()
  if v == nil then
    if st.on then back(now, "desired.verbose removed") end
    params = nil
    report(now, 0)
    return
  end
  local p, err = parse(v)
  if not p then
    lume.log.warn("%s; the last good parameters stay", err)
    lume.twin.report({ verbose = { error = err } })
    return
  end
  params = p
  recent = window.time(p.window_s)
  if st.on then st["until"] = st.since + p.debug_min * 60 end
  report(now, 0)
end

configure(lume.twin.desired("verbose"))
lume.twin.on_change("verbose", function(now) configure(now) end)
lume.timer.every(1000, function(now) tick(now) end)
