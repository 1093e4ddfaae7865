-- rules.lua — edge rules that ship with lume.
--
-- * Over-temperature alarm with hysteresis: raised when the temperature
--   stays above HIGH for HOLD_S seconds, cleared only once it falls below
--   CLEAR, so a reading that hovers at the limit does not flap. An operator
--   acknowledges it (rules.alarm in lume.rules draws the states):
--     - direct method `ack_alarm` with {"name": "overtemp", "id": N}
--       (answers {ok = true, state, id} or {ok = false, error});
--     - desired property `alarms.overtemp.ack = N`.
--   N is the raise id, published with every alarm event and reported, so
--   an ack of an old raise does not acknowledge a new one. The state is
--   reported as alarms.overtemp = {state, id, since, raised_at, acked_at,
--   acked_by}; a refused ack as alarms.overtemp.ack_error (and in the log).
-- * Vibration anomaly flag: a z-score against a sliding window of recent
--   vibration; flagged samples raise an alarm, at most a few per second.
--
-- Alarms go out on the alarm lane, which overtakes all other traffic:
-- alarm/overtemp {state = "raised" | "acknowledged" | "cleared" (what
-- happened), status (the alarm's state now), id, value, limit, clear, t, by}.
-- The rules' state (raised or not, acknowledged or not, the hold in
-- progress, the vibration window, the alarm budget) is kept with lume.keep,
-- so a new version of this script (hot reload, twin push, rollback) or a
-- restart carries on where the last one stopped: an excursion raises one
-- alarm, not one per swap.
-- A board without one of these sensors (boards/host.lua has neither) gets
-- one warning at load naming the rule that is off; the others still run.

local rules = require "lume.rules"
local null = (require "lume.json").null

local HIGH, CLEAR, HOLD_S = 30.0, 28.0, 5    -- °C, °C, seconds

local overtemp = lume.keep("overtemp",
  rules.alarm{ name = "overtemp", above = HIGH, clear = CLEAR, for_s = HOLD_S })
local vibration = lume.keep("vibration", rules.anomaly{ window = 500, z = 6, min_samples = 200 })
local vib_alarms = lume.keep("vib_alarms", rules.rate_limit{ per_s = 1, burst = 3 })
local alarms = { overtemp = overtemp }

-- The alarm's state in reported properties (null for what is not known, so
-- the merge drops the last raise's fields).
local function report(alarm, ack_error)
  local r = alarm:report()
  for _, k in ipairs{ "since", "raised_at", "acked_at", "acked_by" } do
    if r[k] == nil then r[k] = null end
  end
  r.ack_error = ack_error or null
  lume.twin.report({ alarms = { [alarm.name] = r } })
end

local function publish(ev)
  lume.publish("alarm/" .. ev.alarm,
    { state = ev.event, status = ev.state, id = ev.id, value = ev.value, limit = HIGH,
      clear = CLEAR, t = ev.t, by = ev.by },
    { priority = "alarm" })
  lume.log.warn("%s %s (raise %d, now %s)%s", ev.alarm, ev.event, ev.id, ev.state,
    ev.value and (" at %.2f"):format(ev.value) or ev.by and " by " .. ev.by or "")
  report(alarms[ev.alarm])
end

-- An ack from the method or the twin: the event, or nil and why not.
local function ack(name, id, by)
  local alarm = alarms[name]
  if not alarm then
    local known = {}
    for k in pairs(alarms) do known[#known + 1] = k end
    return nil, ("no alarm named %s (alarms here: %s)"):format(tostring(name),
      table.concat(known, ", "))
  end
  local ev, err = alarm:ack(id, lume.now(), by)
  if ev then publish(ev) else report(alarm, err) end
  return ev, err
end

lume.method("ack_alarm", function(p)
  if type(p) ~= "table" then
    local err = "ack_alarm takes {\"name\": ALARM, \"id\": RAISE_ID}"
    lume.log.warn("method ack_alarm: %s", err)
    return { ok = false, error = err }
  end
  local ev, err = ack(p.name, p.id, "method")
  if not ev then
    lume.log.warn("method ack_alarm: %s", err)
    return { ok = false, error = err }
  end
  return { ok = true, state = ev.state, id = ev.id }
end)

-- desired.alarms = { overtemp = { ack = N } }. The desired document is
-- state, not an event: an ack value is applied once, when it first differs
-- from the last one seen (kept across versions and restarts), so it is not
-- applied again, nor complained about, on every reload.
local acks_seen = lume.keep("acks_seen", {})
local function desired_acks(doc)
  if doc == nil then return end
  if type(doc) ~= "table" then
    lume.log.warn("desired alarms must be an object {NAME = {ack = RAISE_ID}}")
    return
  end
  for name, v in pairs(doc) do
    local id = type(v) == "table" and v.ack or nil
    if id ~= nil and acks_seen[name] ~= id then
      acks_seen[name] = id
      local ev, err = ack(name, id, "desired")
      if not ev then lume.log.warn("desired alarms.%s.ack: %s", tostring(name), err) end
    end
  end
end
lume.twin.on_change("alarms", function(now) desired_acks(now) end)
-- once running (at a start the twin comes up after the scripts have loaded)
lume.timer.after(1, function()
  report(overtemp)
  desired_acks(lume.twin.desired("alarms"))
end)

-- Register fn for sensor `name` when the board has it; else say which rule is off.
local function on_sensor(name, rule, fn)
  local ok, err = lume.sensor(name)
  if ok then return lume.on_sample(name, fn) end
  lume.log.warn("%s: the %s rule is off (sensors here: %s)", err, rule,
    table.concat(lume.sensor.list(), ", "))
end

on_sensor("temperature", "over-temperature", function(value, t)
  local ev = overtemp:update(value, t)
  if ev then publish(ev) end
end)

on_sensor("vibration", "vibration anomaly", function(value, t)
  local flagged, score = vibration:update(value, t)
  if flagged and vib_alarms:allow(t) then
    lume.publish("alarm/vibration", { value = value, score = score, t = t },
      { priority = "alarm", ttl = 3600 })
  end
end)
