-- bench/fleet/rule.lua — the script bench/fleet/devices pushes to its whole fleet:
-- an over-temperature alarm with hysteresis on the board's temperature
-- (raised above 30 °C held for 5 s, cleared below 28 °C), the kind of edge
-- rule an operator rolls out to every device at once.
local rules = require "lume.rules"

local overtemp = rules.threshold{ above = 30.0, clear = 28.0, for_s = 5 }

lume.on_sample("temperature", function(value, t)
  local change = overtemp:update(value, t)
  if change then
    lume.publish("alarm/overtemp", { state = change, value = value, t = t },
      { priority = "alarm" })
  end
end)
