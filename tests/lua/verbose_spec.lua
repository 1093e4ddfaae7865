-- scripts/verbose.lua: verbose logging on demand. Errors past a threshold
-- switch the runtime to debug for a while, then back; what it did is
-- reported. lume.log.level and lume.log.counts underneath.
local H = require "helper"
local json = require "lume.json"

local VERBOSE = io.open("scripts/verbose.lua"):read("a")
local TWIN = { twin = { allow_unsigned = true } }

local reported, desire = H.reported, H.desire

-- a script that logs an error line each time fail() is called
local NOISY = [[function fail() lume.log.error("sensor bus timeout") end
  function level() return lume.log.level() end
  lume.timer.every(1000, function() end)]]

describe("lume.log", function()
  it("level(name, why) sets the runtime's level and reports who set it", function()
    H.with_runtime({ config = TWIN }, function(rt)
      assert(rt:install("a", [[function set(l, w) return lume.log.level(l, w) end
        function get() return lume.log.level() end lume.timer.every(1000, function() end)]]))
      assert.are.equal("info", select(2, rt:call("a", "set", "debug", "looking")))
      assert.are.equal("debug", select(2, rt:call("a", "get")))
      local log = reported(rt).log
      assert.are.same({ level = "debug", by = "script a", why = "looking" }, log)
      local ok, err = rt:call("a", "set", "loud")
      assert.is_nil(ok)
      assert.matches("'loud' is not a level", err)
      desire(rt, { log = "warn" })          -- the twin has the last word
      assert.are.same({ level = "warn", by = "desired" }, reported(rt).log)
      assert.are.equal("warn", select(2, rt:call("a", "get")))
    end)
  end)

  it("counts() counts error and warn lines, whatever the level", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("a", NOISY .. [[
        function counts() local c = lume.log.counts() return c.error, c.warn end]]))
      local _, e0 = rt:call("a", "counts")
      rt:call("a", "fail"); rt:call("a", "fail")
      assert.are.equal(e0 + 2, select(2, rt:call("a", "counts")))
    end)
  end)
end)

describe("scripts/verbose.lua", function()
  it("is off until desired, reported as off", function()
    H.with_runtime({ config = TWIN }, function(rt)
      assert(rt:install("verbose", VERBOSE))
      assert(rt:install("noisy", NOISY))
      for _ = 1, 30 do rt:call("noisy", "fail") end
      rt:run(1300)
      assert.are.equal("info", select(2, rt:call("noisy", "level")))
      assert.are.equal("off", reported(rt).verbose.state)
    end)
  end)

  it("switches to debug past the threshold and back after debug_min, reporting both", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { verbose = { errors = 3, window_s = 10, debug_min = 0.04 } }) -- 2.4 s
      assert(rt:install("verbose", VERBOSE))
      assert(rt:install("noisy", NOISY))
      assert.are.equal("normal", reported(rt).verbose.state)
      rt:call("noisy", "fail"); rt:call("noisy", "fail")
      rt:run(1300)
      assert.are.equal("info", select(2, rt:call("noisy", "level"))) -- 2 < 3
      rt:call("noisy", "fail")
      H.run_until(rt, 1500, function() return reported(rt).verbose.state == "debug" end)
      local rep = reported(rt)
      assert.are.equal("debug", rep.verbose.state)
      assert.matches("3 errors in 10 s", rep.verbose.reason)
      assert.are.equal("debug", rep.log.level)
      assert.are.equal("script verbose", rep.log.by)
      assert.are.equal("debug", select(2, rt:call("noisy", "level")))
      assert.truthy(H.find_log("level info %-> debug, set by script verbose", "warn"))
      -- a reload mid-spell keeps it (lume.keep), and its end
      assert(rt:install("verbose", VERBOSE .. "\n-- v2\n"))
      assert.are.equal("debug", reported(rt).verbose.state)
      H.run_until(rt, 4000, function() return reported(rt).verbose.state == "normal" end)
      rep = reported(rt)
      assert.are.equal("normal", rep.verbose.state)
      assert.matches("debug for 0.04 min is over", rep.verbose.reason)
      assert.are.equal("info", rep.log.level)
      assert.are.equal("info", select(2, rt:call("noisy", "level")))
    end)
  end)

  it("refuses bad parameters with a reported error, keeping the last good ones", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { verbose = { errors = 3 } })
      assert(rt:install("verbose", VERBOSE))
      desire(rt, { verbose = { errors = -1 } })
      assert.matches("verbose.errors must be a positive number", reported(rt).verbose.error)
      desire(rt, { verbose = { erors = 3 } })
      assert.matches('unknown key "erors"', reported(rt).verbose.error)
      assert.are.equal(3, reported(rt).verbose.params.errors)
    end)
  end)
end)
