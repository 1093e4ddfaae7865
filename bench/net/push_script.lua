-- bench/net/push_script.lua — the script bench/net/push_lat pushes 100 times
-- through the twin (each push prefixed with "-- push N"). About 4 KB of
-- ordinary edge logic: a table of signal functions, a vibration handler that
-- keeps windowed statistics over the 1 kHz samples (batched per loop turn),
-- a threshold rule with hysteresis, and a self_test. It publishes nothing
-- unless the vibration RMS crosses the alarm level, which the simulated
-- sensor does not reach.
local M = {}

function M.mean(xs, n)
  local s = 0
  for i = 1, n do s = s + xs[i] end
  return n > 0 and s / n or 0
end

function M.rms(xs, n)
  local s = 0
  for i = 1, n do s = s + xs[i] * xs[i] end
  return n > 0 and math.sqrt(s / n) or 0
end

function M.variance(xs, n)
  if n < 2 then return 0 end
  local m = M.mean(xs, n)
  local s = 0
  for i = 1, n do
    local d = xs[i] - m
    s = s + d * d
  end
  return s / (n - 1)
end

function M.minmax(xs, n)
  local lo, hi = math.huge, -math.huge
  for i = 1, n do
    local x = xs[i]
    if x < lo then lo = x end
    if x > hi then hi = x end
  end
  return lo, hi
end

function M.peak_to_peak(xs, n)
  local lo, hi = M.minmax(xs, n)
  return n > 0 and hi - lo or 0
end

function M.crest(xs, n)
  local r = M.rms(xs, n)
  local lo, hi = M.minmax(xs, n)
  local peak = math.max(math.abs(lo), math.abs(hi))
  return r > 0 and peak / r or 0
end

function M.kurtosis(xs, n)
  if n < 4 then return 0 end
  local m, s2, s4 = M.mean(xs, n), 0, 0
  for i = 1, n do
    local d = xs[i] - m
    s2 = s2 + d * d
    s4 = s4 + d * d * d * d
  end
  return s2 > 0 and n * s4 / (s2 * s2) or 0
end

-- exponential moving average with a time constant in seconds
function M.ema(tau)
  local value, last_t
  return function(x, t)
    if not value then
      value, last_t = x, t
      return value
    end
    local a = 1 - math.exp(-(t - last_t) / tau)
    value, last_t = value + a * (x - value), t
    return value
  end
end

-- threshold with hysteresis and a minimum duration
function M.threshold(above, clear, for_s)
  local state, since = "clear", nil
  return function(x, t)
    if state == "clear" then
      if x > above then
        since = since or t
        if t - since >= for_s then
          state = "raised"
          return "raised"
        end
      else
        since = nil
      end
    elseif x < clear then
      state, since = "clear", nil
      return "cleared"
    end
    return nil
  end
end

-- a fixed-size ring of the last n values
function M.ring(n)
  local buf, head, count = {}, 0, 0
  local r = {}
  function r.push(x)
    head = head % n + 1
    buf[head] = x
    if count < n then count = count + 1 end
  end
  function r.values()
    local out = {}
    for i = 1, count do out[i] = buf[(head - count + i - 1) % n + 1] end
    return out, count
  end
  function r.size() return count end
  return r
end

local WINDOW = 256
local window = M.ring(WINDOW)
local slow = M.ema(5.0)
local rule = M.threshold(1.5, 1.2, 0.5)
local stats = { windows = 0, rms = 0, crest = 0, p2p = 0 }

local function summarise(t)
  local xs, n = window.values()
  stats.windows = stats.windows + 1
  stats.rms = M.rms(xs, n)
  stats.crest = M.crest(xs, n)
  stats.p2p = M.peak_to_peak(xs, n)
  local level = slow(stats.rms, t)
  local change = rule(level, t)
  if change then
    lume.publish("alarm/vibration", { state = change, rms = level, t = t },
                 { priority = "alarm" })
  end
end

local seen = 0
lume.on_sample("vibration", function(values, times)
  for i = 1, #values do
    window.push(values[i])
    seen = seen + 1
    if seen % WINDOW == 0 then summarise(times[i]) end
  end
end, { batch = true })

function self_test()
  local xs = { 1, -1, 1, -1 }
  if math.abs(M.rms(xs, 4) - 1) > 1e-9 then return false, "rms" end
  if M.peak_to_peak(xs, 4) ~= 2 then return false, "peak_to_peak" end
  if math.abs(M.variance({ 2, 4, 4, 4, 5, 5, 7, 9 }, 8) - 32 / 7) > 1e-9 then
    return false, "variance"
  end
  local r = M.ring(3)
  for i = 1, 5 do r.push(i) end
  local v = r.values()
  if v[1] ~= 3 or v[3] ~= 5 then return false, "ring" end
  return true
end
