-- scripts/sampling.lua: adaptive sampling from desired properties, through
-- a real runtime. The sensor is a file the test writes (a generated trace:
-- quiet noise, a burst, quiet again, a level near a threshold) while the
-- real sampler reads it; rates, states and the reported document are
-- checked against what sensor:rate() says.
local H = require "helper"
local json = require "lume.json"

local SAMPLING = io.open("scripts/sampling.lua"):read("a")
local TWIN = { twin = { allow_unsigned = true } }

local reported, desire = H.reported, H.desire

-- A board whose "level" (10 Hz, bounds 2..40 Hz) reads the file the
-- returned function writes.
local function board(dir)
  local path = dir .. "/level"
  H.write(path, "10\n")
  H.write(dir .. "/trace.lua", ([[return { name = "trace", sensors = {
    { name = "level", driver = "file", unit = "m", rate = 10, min_rate = 2, max_rate = 40,
      params = { path = %q } },
  } }]]):format(path))
  return function(x)
    H.write(path .. ".tmp", ("%.6f\n"):format(x))
    os.rename(path .. ".tmp", path)
  end
end

local function gauss()
  return math.sqrt(-2 * math.log(1 - math.random())) * math.cos(2 * math.pi * math.random())
end

-- Run the loop for up to ms while the sensor reads mean + sd * noise,
-- until done(reported sampling.level) holds; check the bounds on the way.
-- Returns done()'s value, the highest rate seen and the number of reports.
local function drive(rt, write, ms, mean, sd, done)
  local top, reports, last = 0, 0, nil
  for _ = 1, ms // 20 do
    write(mean + sd * gauss())
    rt:run(20)
    local rate = rt:sensor("level").rate
    top = math.max(top, rate)
    assert.is_true(rate >= 2 and rate <= 40, "rate " .. rate .. " outside the board's bounds")
    local rep = (reported(rt).sampling or {}).level or {}
    local text = json.encode(rep, { sort_keys = true })
    if text ~= last then reports, last = reports + 1, text end
    if done and done(rep) then
      assert.are.equal(rate, rep.rate)    -- a settled report says what the sampler does
      return true, top, reports
    end
  end
  return done == nil, top, reports
end

local function with_trace(fn)
  local dir = H.tmpdir()
  local write = board(dir)
  local ok, err = pcall(H.with_runtime, { config = TWIN, boards_dir = dir, board = "trace" },
    function(rt) fn(rt, write) end)
  H.rmdir(dir)
  if not ok then error(err, 0) end
end

describe("scripts/sampling.lua", function()
  before_each(function() math.randomseed(7) end)

  it("raises the rate in a burst and lowers it back when calm, within bounds", function()
    with_trace(function(rt, write)
      desire(rt, { sampling = { level = { window = 16, period_s = 0.2, up = 1.5, down = 0.5 } } })
      assert(rt:install("sampling", SAMPLING))
      local rep = reported(rt).sampling.level
      assert.are.same({ rate = 10, state = "calm", why = "starting", min_rate = 10,
                        max_rate = 40 }, rep)
      drive(rt, write, 2000, 10, 0.01)                    -- learn the calm baseline
      assert.are.equal(10, rt:sensor("level").rate)
      -- (the bounds are wall time the runtime gets to react; each drive ends as
      -- soon as its condition holds, so a loaded machine only waits longer)
      local up, _, reports = drive(rt, write, 10000, 10, 2, function(l) return l.rate == 40 end)
      assert.is_true(up)
      assert.is_true(reports <= 3, reports .. " reports")  -- active, then 40 Hz: not each step
      rep = reported(rt).sampling.level
      assert.are.equal("active", rep.state)
      assert.matches("variance .* calm", rep.why)
      -- a new version in the middle of the burst keeps the state, and the rate
      -- from before (10 Hz) as the one to come back to
      assert(rt:install("sampling", SAMPLING .. "\n-- v2\n"))
      assert.are.equal(40, rt:sensor("level").rate)
      assert.are.equal("active", reported(rt).sampling.level.state)
      local back, top = drive(rt, write, 15000, 10, 0.01, function(l) return l.rate == 10 end)
      assert.is_true(back, "the rate did not come back to 10 Hz")
      assert.are.equal(40, top)
      rep = reported(rt).sampling.level
      assert.are.equal("calm", rep.state)
      assert.are.equal(10, rep.min_rate)
      assert.truthy(H.find_log("level active", "info"))
    end)
  end)

  it("raises the rate when readings come near a threshold", function()
    with_trace(function(rt, write)
      desire(rt, { sampling = { level = { above = 30, band = 2, window = 16, period_s = 0.2,
                                          max_rate = 20 } } })
      assert(rt:install("sampling", SAMPLING))
      drive(rt, write, 1500, 20, 0.05)
      assert.are.equal("calm", reported(rt).sampling.level.state)
      local ok, top = drive(rt, write, 2000, 28.5, 0.05, function(l) return l.rate == 20 end)
      assert.is_true(ok)
      assert.are.equal(20, top)                          -- max_rate, not the board's 40
      local rep = reported(rt).sampling.level
      assert.are.equal("active", rep.state)
      assert.matches("within 2 of above = 30", rep.why)
    end)
  end)

  it("refuses bad parameters with a reported error, keeping the last good ones", function()
    with_trace(function(rt, write)
      desire(rt, { sampling = { level = { max_rate = 20, period_s = 0.2 } } })
      assert(rt:install("sampling", SAMPLING))
      local cases = {
        { { level = { rise = 0.5 } }, "sampling.level: rise must be a finite number > 1, got 0.5" },
        { { level = { max_rate = 1000 } }, "sampling.level: max_rate must be a rate in Hz "
          .. "within the board's bounds [2, 40], got 1000" },
        { { level = { rise = 2, settle = 3 } }, "sampling.level: settle (3) must be below rise (2)" },
        { { level = { rsie = 2 } }, 'sampling.level: unknown option "rsie" (expected one of: ' },
        { { level = { window = 2.5 } }, "sampling.level: window must be an integer >= 8" },
        { { level = { min_rate = 30, max_rate = 20 } },
          "sampling.level: min_rate (30) must not be above max_rate (20)" },
        { { pressure = {} }, "sampling.pressure: no sensor named" },
        { { level = true }, "sampling.level: expected a table of options, got true" },
        { 5, "sampling must be an object" },
      }
      for _, c in ipairs(cases) do
        desire(rt, { sampling = c[1] })
        local rep = reported(rt).sampling
        assert.are.equal(c[2], rep.error and rep.error:sub(1, #c[2]))
        assert.are.equal(20, rep.level.max_rate)           -- the last good parameters
        assert.truthy(H.find_log(c[2]:gsub("%p", "%%%0"), "warn"))
      end
      desire(rt, { sampling = { level = { max_rate = 30 } } })
      assert.is_nil(reported(rt).sampling.error)
      assert.are.equal(30, reported(rt).sampling.level.max_rate)
      -- taken out of the policy: back to its rate from before, no longer reported
      rt:set_rate("level", 25)
      desire(rt, { sampling = {} })
      assert.are.equal(10, rt:sensor("level").rate)
      assert.is_nil(reported(rt).sampling.level)
    end)
  end)

  it("adapts vibration with the defaults on the sim board", function()
    H.with_runtime({ config = TWIN }, function(rt)
      assert(rt:install("sampling", SAMPLING))
      local rep = reported(rt).sampling.vibration
      assert.are.equal(100, rep.rate)
      assert.are.equal(100, rep.min_rate)
      assert.are.equal(2000, rep.max_rate)
      assert.are.equal("calm", rep.state)
    end)
  end)
end)
