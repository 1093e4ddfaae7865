-- sampling.lua — adaptive sampling of vibration.
--
-- When the variance of the signal rises well above its calm baseline, the
-- vibration rate doubles (up to the board's max_rate) so a burst is captured
-- in detail; while the signal is stable the rate decays back toward the
-- board's min_rate, saving power and bandwidth. The baseline follows the
-- signal only while it is calm, so a long burst does not become "normal".
-- On a board without a vibration sensor it warns once at load and does
-- nothing.

local window = require "lume.window"

local vib, err = lume.sensor("vibration")
if not vib then   -- a board without it (boards/host.lua): nothing to adapt
  lume.log.warn("%s: adaptive sampling is off (sensors here: %s)", err,
    table.concat(lume.sensor.list(), ", "))
  return
end
local min_hz, max_hz = vib:bounds()
local calm_hz = math.max(min_hz, math.min(max_hz, vib:rate()))
local recent = window.count(256)
local baseline               -- variance while calm
local RISE, SETTLE = 4.0, 1.5 -- variance ratios that mean "active" / "calm"

lume.on_sample("vibration", function(values)
  for i = 1, #values do recent:push(values[i]) end
end, { batch = true })

lume.timer.every(500, function()
  if recent:count() < 64 then return end
  local var = recent:variance()
  baseline = baseline or var
  local rate = vib:rate()
  if var > RISE * baseline then
    local new = vib:rate(math.min(max_hz, rate * 2))
    if new ~= rate then
      lume.log.info("vibration active (variance %.3g, %.1fx calm): %g -> %g Hz",
        var, var / baseline, rate, new)
    end
  elseif var < SETTLE * baseline then
    baseline = 0.9 * baseline + 0.1 * var
    if rate > calm_hz then
      local new = vib:rate(math.max(calm_hz, rate * 0.8))
      if new == calm_hz then lume.log.info("vibration calm again: %g Hz", new) end
    end
  end
end)
