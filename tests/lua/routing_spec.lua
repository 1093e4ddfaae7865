-- scripts/routing.lua: the environment batch's limits come from desired
-- properties, are reported, and change while readings wait; bad limits are
-- refused with a reported error, keeping the last good ones. Through a real
-- runtime on the sim board (sampler, outbox, twin).
local H = require "helper"
local json = require "lume.json"

local ROUTING = io.open("scripts/routing.lua"):read("a")
local TWIN = { twin = { allow_unsigned = true } }

local reported, desire = H.reported, H.desire

-- The environment messages committed so far, decoded.
local function env_messages(rt)
  local out = {}
  for _, m in ipairs(rt:peek(1000)) do
    if m.topic:match("/telemetry/environment$") then
      out[#out + 1] = assert(json.decode(m.payload))
    end
  end
  return out
end

describe("scripts/routing.lua", function()
  it("reports its default limits, and applies the desired ones", function()
    H.with_runtime({ config = TWIN }, function(rt)
      assert(rt:install("routing", ROUTING))
      local rep = reported(rt).routing
      assert.are.equal(10, rep.environment.max_age_s)
      assert.are.equal(120, rep.environment.max_count)
      assert.is_nil(rep.environment.max_bytes)          -- null: not set
      assert.is_nil(rep.error)
      desire(rt, { routing = { environment = { max_count = 3 } } })
      rep = reported(rt).routing
      assert.are.equal(3, rep.environment.max_count)
      assert.are.equal(10, rep.environment.max_age_s)   -- left out: the default
      -- the sim board gives about 3 environment readings a second
      H.run_until(rt, 3000, function() return #env_messages(rt) >= 2 end)
      local msgs = env_messages(rt)
      assert.is_true(#msgs >= 2)
      for _, m in ipairs(msgs) do
        assert.are.equal(3, #m.samples)
        assert.are.equal("spec-device", m.device)
      end
    end)
  end)

  it("flushes what waits at once when a new limit is already reached", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { routing = { environment = { max_count = 1000, max_age_s = 600 } } })
      assert(rt:install("routing", ROUTING))
      rt:run(1500)
      assert.are.same({}, env_messages(rt))
      -- a new version keeps the waiting readings (lume.keep)
      assert(rt:install("routing", ROUTING .. "\n-- v2\n"))
      rt:run(600)
      assert.are.same({}, env_messages(rt))
      desire(rt, { routing = { environment = { max_count = 2, max_age_s = 600 } } })
      local msgs = env_messages(rt)
      assert.is_true(#msgs >= 1)
      assert.is_true(#msgs[1].samples >= 4, #msgs[1].samples .. " samples")
      local t = 0
      for _, s in ipairs(msgs[1].samples) do   -- in order, from before the reload
        assert.is_true(s.t >= t)
        t = s.t
      end
      desire(rt, { routing = { environment = { max_age_s = 0.5 } } })   -- back to count 120
      assert.are.equal(120, reported(rt).routing.environment.max_count)
      assert.are.equal(0.5, reported(rt).routing.environment.max_age_s)
    end)
  end)

  it("refuses bad limits with a reported error, keeping the last good ones", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { routing = { environment = { max_count = 7, max_age_s = 30 } } })
      assert(rt:install("routing", ROUTING))
      local cases = {
        { { environment = { max_count = 0 } },
          "routing.environment: max_count must be a positive integer, got 0" },
        { { environment = { max_age_s = "10" } },
          'routing.environment: max_age_s must be a positive finite number, got "10"' },
        { { environment = { max_cnt = 5 } },
          'routing.environment: unknown option "max_cnt" (expected one of: encoding, '
          .. "max_age_s, max_bytes, max_count, precision)" },
        { { environment = { encoding = "gzip" } },
          'routing.environment.encoding must be "json" or "delta", got "gzip"' },
        { { environment = { encoding = "delta", precision = { temperature = -1 } } },
          "routing.environment.precision: temperature must be a positive finite number, got -1" },
        { { environment = { encoding = "delta", precision = { temperature = 1e-30 } } },
          "routing.environment.precision: temperature must be a decimal such as 0.01" },
        { { environment = { precision = { pressure = 1 } } },
          'routing.environment.precision: unknown option "pressure"' },
        { { enviroment = {} }, 'routing: unknown key "enviroment" (expected environment)' },
        { { environment = 5 }, "routing.environment must be an object" },
      }
      for _, c in ipairs(cases) do
        desire(rt, { routing = c[1] })
        local rep = reported(rt).routing
        assert.are.equal(c[2], rep.error:sub(1, #c[2]))
        assert.are.equal(7, rep.environment.max_count)
        assert.are.equal(30, rep.environment.max_age_s)
        assert.truthy(H.find_log(c[2]:gsub("%p", "%%%0"), "warn"))
      end
      desire(rt, { routing = { environment = { max_count = 9 } } })
      assert.is_nil(reported(rt).routing.error)
      assert.are.equal(9, reported(rt).routing.environment.max_count)
    end)
  end)

  it("sends lume.delta batches when asked, which decode to the readings", function()
    local delta = require "lume.delta"
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { routing = { environment = { max_count = 8, encoding = "delta",
                                               precision = { temperature = 0.05 } } } })
      assert(rt:install("routing", ROUTING))
      local env = reported(rt).routing.environment
      assert.are.equal("delta", env.encoding)
      assert.are.equal(0.05, env.precision.temperature)
      assert.are.equal(0.1, env.precision.humidity)          -- the default
      H.run_until(rt, 4000, function() return #env_messages(rt) >= 1 end)
      local msg = env_messages(rt)[1]
      assert.is_nil(msg.samples)
      local series = assert(delta.unpack(msg.delta))
      local n, names = 0, {}
      for _, s in ipairs(series) do
        n = n + #s.values
        names[s.name] = s
        assert.are.equal(#s.values, #s.times)
        for i = 2, #s.times do assert.is_true(s.times[i] > s.times[i - 1]) end
      end
      assert.are.equal(8, n)                                  -- max_count readings
      assert.are.equal(0.05, names.temperature.precision)
      for _, x in ipairs(names.temperature.values) do
        assert.is_true(x > 5 and x < 40)                      -- the sim's air
        assert.is_true(math.abs(x / 0.05 - math.floor(x / 0.05 + 0.5)) < 1e-6)
      end
      assert.is_true(math.abs(names.temperature.times[1] - os.time()) < 60) -- wall-clock s
      desire(rt, { routing = { environment = { max_count = 8 } } })    -- back to JSON
      assert.are.equal("json", reported(rt).routing.environment.encoding)
    end)
  end)

  it("never holds an alarm behind the environment batch", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { routing = { environment = { max_count = 1000, max_age_s = 600 } } })
      assert(rt:install("routing", ROUTING))
      assert(rt:install("alarm", [[
        function raise() return lume.publish("alarm/overtemp", { state = "raised" },
                                             { priority = "alarm" }) end
        lume.timer.every(1000, function() end)]]))
      rt:run(1200)
      assert(rt:call("alarm", "raise"))
      rt:run(20)
      local alarms = 0
      for _, m in ipairs(rt:peek(1000)) do
        if m.lane == "alarm" then alarms = alarms + 1 end
      end
      assert.are.equal(1, alarms)
      assert.are.same({}, env_messages(rt))      -- the readings still wait
    end)
  end)
end)
