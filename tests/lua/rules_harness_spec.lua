-- A spec for scripts/rules.lua on lume's rule test harness (docs/testing-rules.md
-- shows this file). Run it with `lume test tests/lua/rules_harness_spec.lua`
-- from the top of the tree; `make test` runs it too.
local harness = require "lume.test"

-- a temperature trace: `base` everywhere, `hot` from t = a to t = b (1 Hz)
local function temperature(to, base, a, b, hot)
  return harness.generate{ sensor = "temperature", to = to, rate = 1,
    value = function(t) return (t >= a and t < b) and hot or base end }
end

describe("scripts/rules.lua", function()
  local h
  before_each(function() h = harness.new{ script = "scripts/rules.lua" } end)
  after_each(function() h:close() end)

  describe("over-temperature", function()
    it("raises one alarm once the temperature stays above 30 for 5 s", function()
      h:feed(temperature(60, 25, 10, 61, 32))
      local alarms = h:published("alarm/overtemp")
      assert.equal(1, #alarms)
      assert.equal(15, alarms[1].t)                  -- 10 s, plus the 5 s hold
      assert.equal("alarm", alarms[1].priority)      -- the lane that overtakes the rest
      assert.same({ state = "raised", status = "raised", id = 1, value = 32, limit = 30,
        clear = 28, t = 15 }, alarms[1].value)
      assert.equal(1, #h:logs("overtemp raised (raise 1, now raised) at 32.00", true))
    end)

    it("ignores a spike shorter than the hold", function()
      h:feed(temperature(60, 25, 10, 13, 35))
      assert.same({}, h:published("alarm/overtemp"))
    end)

    it("clears only below 28 (hysteresis): a value hovering at the limit does not flap", function()
      local trace = harness.generate{ sensor = "temperature", to = 120, rate = 1,
        value = function(t)
          if t < 10 then return 25 end
          if t < 40 then return 32 end               -- raised at 15
          if t < 80 then return t % 2 == 0 and 29.5 or 30.5 end -- hovering: no change
          return 27                                  -- cleared at 80
        end }
      h:feed(trace)
      local alarms = h:published("alarm/overtemp")
      assert.equal(2, #alarms)
      assert.same({ "raised", "cleared" }, { alarms[1].value.state, alarms[2].value.state })
      assert.same({ 15, 80 }, { alarms[1].t, alarms[2].t })
    end)

    it("keeps its state across a hot reload: one excursion, one alarm", function()
      h:feed(temperature(30, 25, 10, 31, 32))          -- raised at 15, still hot at 30
      h:reload()                                       -- a new version (lume.keep hands over)
      h:feed(harness.generate{ sensor = "temperature", from = 31, to = 60, rate = 1, value = 32 })
      local alarms = h:published("alarm/overtemp")
      assert.equal(1, #alarms, "the reload must not raise the alarm again")
      h:feed(harness.generate{ sensor = "temperature", from = 61, to = 65, rate = 1, value = 27 })
      alarms = h:published("alarm/overtemp")
      assert.equal(2, #alarms)
      assert.equal("cleared", alarms[2].value.state)
    end)

    it("keeps its state across a restart of the device", function()
      h:feed(temperature(30, 25, 10, 31, 32))          -- raised at 15
      h:restart()                                      -- the same store, a new process
      h:feed(harness.generate{ sensor = "temperature", from = 31, to = 40, rate = 1, value = 32 })
      assert.equal(1, #h:published("alarm/overtemp"), "the restart must not raise it again")
    end)

    it("is acknowledged through a desired property, and a stale ack is refused", function()
      h:feed(temperature(30, 25, 10, 31, 32))          -- raised at 15: raise id 1
      h:desired{ alarms = { overtemp = { ack = 2 } } } -- not this raise
      assert.equal("raised", h:reported().alarms.overtemp.state)
      h:desired{ alarms = { overtemp = { ack = 1 } } }
      local alarms = h:published("alarm/overtemp")
      assert.equal("acknowledged", alarms[#alarms].value.state)
      assert.equal("acknowledged", h:reported().alarms.overtemp.state)
    end)
  end)

  describe("vibration anomaly", function()
    -- steady vibration (a deterministic wobble around 1.0 g) at 100 Hz
    local function steady(from, to)
      return harness.generate{ sensor = "vibration", from = from, to = to, rate = 100,
        value = function(t, i) return 1.0 + 0.01 * math.sin(i * 1.7) end }
    end

    it("flags a reading far from the recent mean, on the alarm lane", function()
      h:feed(steady(0, 3))
      assert.same({}, h:published("alarm/vibration"))
      h:sample("vibration", 5.0, 3.5)
      local alarms = h:published("alarm/vibration")
      assert.equal(1, #alarms)
      assert.equal(5.0, alarms[1].value.value)
      assert.is_true(alarms[1].value.score > 6)
      assert.equal("alarm", alarms[1].priority)
    end)

    it("sends at most 3 alarms in a burst, then 1 per second", function()
      h:feed(steady(0, 3))
      for i = 1, 20 do h:sample("vibration", 9.0, 3 + i * 0.01) end -- 20 spikes in 0.2 s
      assert.equal(3, #h:published("alarm/vibration"))
      h:feed(steady(3.3, 5.3))
      h:sample("vibration", 50.0, 5.31)
      assert.equal(4, #h:published("alarm/vibration")) -- the bucket refilled
    end)
  end)

  it("runs a recorded trace (lume record's CSV) in simulated time", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("t,sensor,value\n")                      -- lume record writes this header
    for t = 0, 3600 do                                -- an hour, 1 Hz
      f:write(string.format("%d,temperature,%.1f\n", 1700000000 + t, t > 1800 and 31 or 26))
    end
    f:close()
    local trace = harness.read_trace(path)
    os.remove(path)
    local rec = harness.new{ script = "scripts/rules.lua", start = trace[1].t }
    rec:feed(trace)                                   -- an hour, in as long as the handlers take
    assert.equal(1700000000 + 1806, rec:published("alarm/overtemp")[1].t)
    assert.equal(1700003600, rec:now())
    rec:close()
  end)
end)
