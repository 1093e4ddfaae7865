-- connectivity.lua — when the device is online: the connectivity policy.
--
-- The twin says what it wants:
--
--   desired.connectivity = { mode = "persistent" | "intermittent" | "auto",
--                            every_s = 300,    -- intermittent: a window this often
--                            max_queued = 0,   -- ... or when this many messages wait (0: never)
--                            window_s = 60,    -- the longest a window stays open
--                            alarm = true }    -- ... or at once on a new alarm
--
-- and this script decides the mode: `auto` is persistent while the board's
-- power-source sensor (`power`: 1 mains, 0 battery) says mains, and
-- intermittent on battery; without desired.connectivity the device stays
-- persistent. The mechanism — connecting, draining the outbox, exchanging
-- the twin, disconnecting cleanly, waking on the timer, the queue or an
-- alarm — is lume's (lume.net.connectivity, core/net/link.c). It checks
-- every value: a bad one (an unknown mode, a negative every_s) is refused
-- with a message in the log and in reported.errors.connectivity, and the
-- mode applied before stays. What is applied is reported in
-- reported.connectivity (mode, parameters, by, windows, last_connect,
-- last_disconnect). docs/connectivity.md has the whole story.
--
-- Change it freely: e.g. intermittent below a battery voltage, or only at
-- night. Whatever it passes to lume.net.connectivity is checked there.

local POWER = "power"          -- the board's power-source sensor: 1 mains, 0 battery

local desired = lume.twin.desired("connectivity")
local source                   -- "mains" | "battery" | nil (no sensor, no reading yet)

local function apply()
  local d = desired
  if d == nil then d = {} end
  if type(d) ~= "table" then
    return lume.net.connectivity(d)   -- refused there, with what was expected
  end
  local p = {}
  for k, v in pairs(d) do p[k] = v end
  if d.mode == "auto" then
    if source == "battery" then
      p.mode, p.by = "intermittent", "auto: on battery"
    elseif source == "mains" then
      p.mode, p.by = "persistent", "auto: on mains"
    else
      p.mode, p.by = "persistent", "auto: no power source reading"
    end
  else
    p.by = d.mode and "desired" or "default"
  end
  return lume.net.connectivity(p)
end

local function on_power(value)
  local now = value >= 0.5 and "mains" or "battery"
  if now == source then return end
  local before = source
  source = now
  if type(desired) == "table" and desired.mode == "auto" then
    lume.log.info("power source %s%s: %s", before and (before .. " -> ") or "", now,
      now == "battery" and "intermittent" or "persistent")
    apply()
  end
end

local sensor = lume.sensor(POWER)
if sensor then
  local v = sensor:read()
  if v then on_power(v) end
  lume.on_sample(POWER, on_power)
end

lume.twin.on_change("connectivity", function(now)
  desired = now
  apply()   -- a bad value: lume.net.connectivity logs it and reports errors.connectivity
end)
apply()
