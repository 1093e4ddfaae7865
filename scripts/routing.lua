-- routing.lua — what leaves the device, and how.
--
-- Alarms are published by the rules at once on the alarm lane. Environment
-- data (temperature, humidity, battery, power source) is batched: one
-- telemetry message every 10 s (or every 120 readings), which is what a
-- cellular or metered link wants.

local batch = require "lume.batch"

local env = batch.new{
  max_count = 120,
  max_age_s = 10,
  on_flush = function(items)
    lume.publish("environment", { device = lume.device.id, samples = items },
      { priority = "telemetry", ttl = 24 * 3600 })
  end,
}

for _, name in ipairs{ "temperature", "humidity", "battery", "power" } do
  if lume.sensor(name) then
    lume.on_sample(name, function(value, t)
      env:add({ s = name, v = value, t = t }, t)
    end)
  end
end

lume.timer.every(1000, function(now) env:tick(now) end)   -- now: the clock of samples' t
