-- rules.lua — edge rules that ship with lume.
--
-- * Over-temperature alarm with hysteresis: raised when the temperature
--   stays above HIGH for HOLD_S seconds, cleared only once it falls below
--   CLEAR, so a reading that hovers at the limit does not flap.
-- * Vibration anomaly flag: a z-score against a sliding window of recent
--   vibration; flagged samples raise an alarm, at most a few per second.
--
-- Alarms go out on the alarm lane, which overtakes all other traffic.
-- The rules' state (raised or not, the hold in progress, the vibration
-- window, the alarm budget) is kept with lume.keep, so a new version of
-- this script (hot reload, twin push, rollback) or a restart carries on
-- where the last one stopped: an excursion raises one alarm, not one per swap.
-- A board without one of these sensors (boards/host.lua has neither) gets
-- one warning at load naming the rule that is off; the others still run.

local rules = require "lume.rules"

local HIGH, CLEAR, HOLD_S = 30.0, 28.0, 5    -- °C, °C, seconds

local overtemp = lume.keep("overtemp",
  rules.threshold{ above = HIGH, clear = CLEAR, for_s = HOLD_S })
local vibration = lume.keep("vibration", rules.anomaly{ window = 500, z = 6, min_samples = 200 })
local vib_alarms = lume.keep("vib_alarms", rules.rate_limit{ per_s = 1, burst = 3 })

-- Register fn for sensor `name` when the board has it; else say which rule is off.
local function on_sensor(name, rule, fn)
  local ok, err = lume.sensor(name)
  if ok then return lume.on_sample(name, fn) end
  lume.log.warn("%s: the %s rule is off (sensors here: %s)", err, rule,
    table.concat(lume.sensor.list(), ", "))
end

on_sensor("temperature", "over-temperature", function(value, t)
  local change = overtemp:update(value, t)
  if change then
    lume.publish("alarm/overtemp",
      { state = change, value = value, limit = HIGH, clear = CLEAR, t = t },
      { priority = "alarm" })
    lume.log.warn("over-temperature %s at %.2f C", change, value)
  end
end)

on_sensor("vibration", "vibration anomaly", function(value, t)
  local flagged, score = vibration:update(value, t)
  if flagged and vib_alarms:allow(t) then
    lume.publish("alarm/vibration", { value = value, score = score, t = t },
      { priority = "alarm", ttl = 3600 })
  end
end)
