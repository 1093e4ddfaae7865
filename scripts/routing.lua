-- routing.lua — what leaves the device, and how.
--
-- Alarms are published by the rules at once on the alarm lane: they never
-- go through a batch. Environment data (temperature, humidity, battery,
-- power source) is batched: one telemetry message when the oldest reading
-- is max_age_s old or max_count readings wait (or, if set, their JSON
-- reaches max_bytes), whichever comes first — what a cellular or metered
-- link wants. The limits come from the twin, and may change at any time:
--
--   desired.routing = { environment = { max_age_s = 10, max_count = 120, max_bytes = 8192,
--                                       encoding = "delta", precision = { temperature = 0.05 } } }
--
-- (a key left out takes its default: max_age_s 10, max_count 120, no
-- max_bytes, encoding "json"; removing `routing` goes back to the defaults).
-- encoding "json" sends {device, samples = {{s, v, t}, ...}}; "delta" sends
-- {device, delta = lume.delta packed string} (docs/delta.md: a series per
-- sensor with its times, at `precision`, whose defaults are in PRECISION
-- below), about a quarter of the bytes of gzip'd JSON. Readings already
-- waiting stay in the batch, and go at once if the new limits are already
-- reached. What is applied is reported; a bad value is refused with a
-- reported error, and the last good limits stay:
--
--   reported.routing = { environment = { max_age_s, max_count, max_bytes, encoding,
--                                        precision }, error }
--
-- The waiting readings survive a reload or a restart (lume.keep).
--
--   desired limits ──check──► ok ──► env:configure ──► reported.routing.environment
--                               └─► bad ──► reported.routing.error (last good stay)

local batch = require "lume.batch"
local check = require "lume.check"
local delta = require "lume.delta"
local json_null = (require "lume.json").null

local DEFAULTS = { max_age_s = 10, max_count = 120 }
local SENSORS = { "temperature", "humidity", "battery", "power" }
-- what a reading of each is worth, for encoding = "delta"
local PRECISION = { temperature = 0.01, humidity = 0.1, battery = 0.001, power = 1 }
local enc = { encoding = "json", precision = PRECISION }   -- as applied

local env = lume.keep("environment", batch.new{
  max_count = DEFAULTS.max_count,
  max_age_s = DEFAULTS.max_age_s,
  on_flush = function(items)
    local doc = { device = lume.device.id, samples = items }
    if enc.encoding == "delta" then
      doc = { device = lume.device.id, delta = delta.pack(delta.series_of(items, enc.precision)) }
    end
    lume.publish("environment", doc, { priority = "telemetry", ttl = 24 * 3600 })
  end,
})

local function report(err)
  local l = env:limits()
  lume.twin.report({ routing = {
    environment = { max_age_s = l.max_age_s or json_null, max_count = l.max_count or json_null,
                    max_bytes = l.max_bytes or json_null, encoding = enc.encoding,
                    precision = enc.precision },
    error = err or json_null,
  } })
end

-- The encoding and precisions of desired routing.environment, or nil, nil,
-- why (unknown keys too; the limits are batch:configure's to check).
local ENV_KEYS = { "max_age_s", "max_bytes", "max_count", "encoding", "precision" }
local function encoding_of(v)
  local fname = "routing.environment.precision"
  local precision = {}
  for k, x in pairs(PRECISION) do precision[k] = x end
  local ok, err = pcall(function()
    check.options("routing.environment", v, ENV_KEYS, 0)
    check.options(fname, v.precision, PRECISION, 0, true)
    for k, x in pairs(v.precision or {}) do
      precision[k] = check.number(fname, k, x, { gt = 0 }, 0)
      if not pcall(delta.pack, { { name = k, precision = x, values = {} } }) then
        error(("%s: %s must be a decimal such as 0.01, 0.5 or 100, got %s"):format(fname, k,
          check.show(x)), 0)
      end
    end
  end)
  if not ok then return nil, nil, tostring(err) end
  local encoding = v.encoding == nil and "json" or v.encoding
  if encoding ~= "json" and encoding ~= "delta" then
    return nil, nil, ('routing.environment.encoding must be "json" or "delta", got %s')
      :format(check.show(encoding))
  end
  return encoding, precision
end

-- Apply desired.routing (nil: the defaults).
local function configure(v)
  local e
  if v ~= nil then
    if type(v) ~= "table" then
      e = "routing must be an object {environment = {max_age_s, max_count, max_bytes, ...}}"
    else
      for k in pairs(v) do
        if k ~= "environment" then
          e = ("routing: unknown key %q (expected environment)"):format(tostring(k))
        end
      end
      if not e and v.environment ~= nil and type(v.environment) ~= "table" then
        e = "routing.environment must be an object {max_age_s, max_count, max_bytes, "
            .. "encoding, precision}"
      end
    end
  end
  local encoding, precision
  if not e then
    encoding, precision, e = encoding_of(v and v.environment or {})
  end
  if not e then
    local want = {}
    for k, d in pairs(DEFAULTS) do want[k] = d end
    for k, x in pairs(v and v.environment or {}) do
      if k ~= "encoding" and k ~= "precision" then want[k] = x end
    end
    -- batch:configure checks the limits as batch.new does; on a mistake
    -- it raises and keeps the last good ones
    local ok, err = pcall(env.configure, env, want, lume.now())
    err = tostring(err)
    if not ok and err:find("^batch:configure: ") then
      e = err:gsub("^batch:configure", "routing.environment")
    elseif not ok then
      -- the limits are applied; the flush they caused failed, and its
      -- readings wait in the batch for the next one
      lume.log.warn("routing: flushing at the new limits failed: %s", err)
    end
    if not e then enc.encoding, enc.precision = encoding, precision end
  end
  if e then
    lume.log.warn("%s; the last good limits stay", e)
  end
  report(e)
end

for _, name in ipairs(SENSORS) do
  if lume.sensor(name) then
    lume.on_sample(name, function(value, t)
      env:add({ s = name, v = value, t = t }, t)
    end)
  end
end

configure(lume.twin.desired("routing"))
lume.twin.on_change("routing", function(now) configure(now) end)
lume.timer.every(1000, function(now) env:tick(now) end)   -- now: the clock of samples' t
