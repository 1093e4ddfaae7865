-- routing.lua — what leaves the device, and how.
--
-- Alarms are published by the rules at once on the alarm lane: they never
-- go through a batch. Environment data (temperature, humidity, battery,
-- power source) is batched: one telemetry message when the oldest reading
-- is max_age_s old or max_count readings wait (or, if set, their JSON
-- reaches max_bytes), whichever comes first — what a cellular or metered
-- link wants. The limits come from the twin, and may change at any time:
--
--   desired.routing = { environment = { max_age_s = 10, max_count = 120, max_bytes = 8192 } }
--
-- (a key left out takes its default: max_age_s 10, max_count 120, no
-- max_bytes; removing `routing` goes back to the defaults). Readings already
-- waiting stay in the batch, and go at once if the new limits are already
-- reached. What is applied is reported; a bad value is refused with a
-- reported error, and the last good limits stay:
--
--   reported.routing = { environment = { max_age_s, max_count, max_bytes }, error }
--
-- The waiting readings survive a reload or a restart (lume.keep).
--
--   desired limits ──check──► ok ──► env:configure ──► reported.routing.environment
--                               └─► bad ──► reported.routing.error (last good stay)

local batch = require "lume.batch"
local json_null = (require "lume.json").null

local DEFAULTS = { max_age_s = 10, max_count = 120 }

local env = lume.keep("environment", batch.new{
  max_count = DEFAULTS.max_count,
  max_age_s = DEFAULTS.max_age_s,
  on_flush = function(items)
    lume.publish("environment", { device = lume.device.id, samples = items },
      { priority = "telemetry", ttl = 24 * 3600 })
  end,
})

local function report(err)
  local l = env:limits()
  lume.twin.report({ routing = {
    environment = { max_age_s = l.max_age_s or json_null, max_count = l.max_count or json_null,
                    max_bytes = l.max_bytes or json_null },
    error = err or json_null,
  } })
end

-- Apply desired.routing (nil: the defaults).
local function configure(v)
  local e
  if v ~= nil then
    if type(v) ~= "table" then
      e = "routing must be an object {environment = {max_age_s, max_count, max_bytes}}"
    else
      for k in pairs(v) do
        if k ~= "environment" then
          e = ("routing: unknown key %q (expected environment)"):format(tostring(k))
        end
      end
      if not e and v.environment ~= nil and type(v.environment) ~= "table" then
        e = "routing.environment must be an object {max_age_s, max_count, max_bytes}"
      end
    end
  end
  if not e then
    local want = {}
    for k, d in pairs(DEFAULTS) do want[k] = d end
    for k, x in pairs(v and v.environment or {}) do want[k] = x end
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
  end
  if e then
    lume.log.warn("%s; the last good limits stay", e)
  end
  report(e)
end

for _, name in ipairs{ "temperature", "humidity", "battery", "power" } do
  if lume.sensor(name) then
    lume.on_sample(name, function(value, t)
      env:add({ s = name, v = value, t = t }, t)
    end)
  end
end

configure(lume.twin.desired("routing"))
lume.twin.on_change("routing", function(now) configure(now) end)
lume.timer.every(1000, function(now) env:tick(now) end)   -- now: the clock of samples' t
