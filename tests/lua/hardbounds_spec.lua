-- Hard bounds on everything a script does: finalizers, C loops the
-- instruction-count hook never sees, coroutines' __close handlers, and
-- conversions the host makes on a script's state. Each case ends within the
-- budget (the test asserts the outcome, not a time: the benchmark measures
-- the stall) and the runtime, the other scripts and the sampler go on.
local H = require "helper"

local CANARY = [[
  local n = 0
  lume.on_sample("vibration", function() n = n + 1 end)
  function seen() return n end
]]

local function contained(bad_src, check, opts)
  opts = opts or {}
  H.with_runtime({ scripts = { canary = CANARY }, config = opts.config }, function(rt)
    rt:run(100)
    local before_canary = select(2, rt:call("canary", "seen"))
    local before_samples = rt:sensor("vibration").samples
    local ok, err = rt:install("bad", bad_src)
    rt:run(opts.run_ms or 400)
    check(ok, err, rt, rt:scripts().bad)
    rt:run(200)
    local after_canary = select(2, rt:call("canary", "seen"))
    assert.is_true(after_canary > before_canary, "canary stopped receiving samples")
    local vib = rt:sensor("vibration")
    assert.is_true(vib.samples > before_samples, "sampler stopped")
    assert.are.equal(0, vib.drops)
    assert.are.equal("running", rt:scripts().canary.status)
  end)
end

local BUDGET = { sandbox = { cpu_budget_ms = 30, max_overruns = 0 } }

describe("hard bounds", function()
  describe("finalizers", function()
    it("refuses a __gc that would loop, at load", function()
      contained([[
        setmetatable({}, { __gc = function() while true do end end })
      ]], function(ok, err)
        assert.is_nil(ok)
        assert.matches("__gc is not available in the sandbox", err)
      end)
    end)

    it("refuses __gc = false swapped for a function later", function()
      contained([[
        local mt = { __gc = false }
        lume.timer.after(10, function()
          local ok, e = pcall(setmetatable, {}, mt)
          refused = not ok and e
          mt.__gc = function() while true do end end
          collectgarbage()
        end)
        function why() return refused end
      ]], function(ok, err, rt)
        assert.is_true(ok, err)
        local _, why = rt:call("bad", "why")
        assert.matches("__gc is not available", why)
      end)
    end)

    it("adding __gc after setmetatable never makes a finalizer", function()
      contained([[
        local mt = {}
        local t = setmetatable({}, mt)
        mt.__gc = function() while true do end end
        t = nil
        collectgarbage()
        lume.timer.after(10, function() collectgarbage() end)
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.are.equal(0, s.errors)
      end)
      -- the runtime closed that state at the end of `contained` without hanging
    end)

    it("hides the metatables of lume's handles", function()
      contained([[
        local h = lume.timer.every(1000, function() end)
        mt = getmetatable(h)
        function what() return mt end
      ]], function(ok, err, rt)
        assert.is_true(ok, err)
        local _, mt = rt:call("bad", "what")
        assert.are.equal("locked", mt)
      end)
    end)

    it("unloading a script with pending to-be-closed coroutines does not hang", function()
      contained([[
        co = coroutine.create(function()
          local x <close> = setmetatable({}, { __close = function() while true do end end })
          coroutine.yield()
        end)
        coroutine.resume(co)
      ]], function(ok, err, rt)
        assert.is_true(ok, err)
        assert.is_true(rt:unload("bad"))
      end)
    end)
  end)

  describe("C loops", function()
    it("string.rep of an empty string returns at once", function()
      contained([[
        lume.timer.after(10, function()
          r1 = string.rep("", 1e18)
          r2 = string.rep("", 2^62, "")
          r3 = ("ab"):rep(3, ",")
        end)
        function results() return r1, r2, r3 end
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.are.equal(0, s.errors)
        local _, a, b, c = rt:call("bad", "results")
        assert.are.equal("", a)
        assert.are.equal("", b)
        assert.are.equal("ab,ab,ab", c)
      end)
    end)

    it("stops table.concat over a proxy whose metamethods are C functions", function()
      contained([[
        lume.timer.after(10, function()
          local smt = getmetatable("")
          smt.__index = string.lower             -- ("")[i] == "" from C
          smt.__len = function() return math.maxinteger end
          table.concat("", "", 1, math.maxinteger - 1)
        end)
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.matches("CPU budget exceeded", s.last_error)
        assert.are.equal(1, s.budget_overruns)
      end, { config = BUDGET })
    end)

    it("stops table.sort with a C comparator on a huge proxy", function()
      contained([[
        lume.timer.after(10, function()
          local p = setmetatable({}, { __index = rawlen, __newindex = rawequal,
                                        __len = function() return 2^30 end })
          table.sort(p, rawequal)
        end)
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.matches("CPU budget exceeded", s.last_error)
      end, { config = BUDGET })
    end)

    it("stops table.move and table.insert over C metamethods", function()
      contained([[
        lume.timer.after(10, function()
          local p = setmetatable({}, { __index = rawlen, __newindex = rawequal })
          table.move(p, 1, math.maxinteger - 1, 2)
        end)
        lume.timer.after(40, function()
          local p = setmetatable({}, { __index = rawlen, __newindex = rawequal,
                                        __len = function() return math.maxinteger - 2 end })
          table.insert(p, 1, 0)
        end)
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.are.equal(2, s.budget_overruns)
      end, { config = BUDGET, run_ms = 600 })
    end)

    it("stops a __close handler that loops, run by coroutine.close", function()
      contained([[
        lume.timer.after(10, function()
          local co = coroutine.create(function()
            local x <close> = setmetatable({}, { __close = function() while true do end end })
            coroutine.yield()
          end)
          coroutine.resume(co)
          coroutine.close(co)
          survived = true
        end)
        function did() return survived or false end
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.matches("CPU budget exceeded", s.last_error)
        assert.is_false(select(2, rt:call("bad", "did")))
      end, { config = BUDGET })
    end)

    it("stops a __close handler run when a wrapped coroutine fails", function()
      contained([[
        lume.timer.after(10, function()
          local w = coroutine.wrap(function()
            local x <close> = setmetatable({}, { __close = function() while true do end end })
            error("boom")
          end)
          w()
        end)
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.matches("CPU budget exceeded", s.last_error)
      end, { config = BUDGET })
    end)

    it("a budget kill inside a pcall'd metamethod still ends the call", function()
      contained([[
        lume.timer.after(10, function()
          local t = setmetatable({}, { __index = function() while true do end end })
          for i = 1, 10 do pcall(function() return t.x end) end
          survived = true
        end)
        function did() return survived or false end
      ]], function(ok, err, rt, s)
        assert.is_true(ok, err)
        assert.are.equal(1, s.budget_overruns)
        assert.is_false(select(2, rt:call("bad", "did")))
      end, { config = BUDGET })
    end)
  end)
end)
