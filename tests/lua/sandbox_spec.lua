-- The sandbox zoo: each bad script gets a clear error, and the runtime, its
-- other scripts and the sampler keep running.
local H = require "helper"

-- A well-behaved script that counts the temperature and vibration samples it
-- sees; rt:call("canary", "seen") returns the count.
local CANARY = [[
  local n = 0
  lume.on_sample("vibration", function() n = n + 1 end)
  function seen() return n end
]]

local function zoo(bad_src, check, opts)
  opts = opts or {}
  local scripts = { canary = CANARY }
  H.with_runtime({ scripts = scripts, config = opts.config }, function(rt)
    rt:run(100)
    local before_canary = select(2, rt:call("canary", "seen"))
    local before_samples = rt:sensor("vibration").samples
    local ok, err = rt:install("bad", bad_src)
    rt:run(opts.run_ms or 400)
    check(ok, err, rt)
    -- the runtime and the other script kept going, the sampler too
    rt:run(200)
    local after_canary = select(2, rt:call("canary", "seen"))
    assert.is_true(after_canary > before_canary, "canary stopped receiving samples")
    local vib = rt:sensor("vibration")
    assert.is_true(vib.samples > before_samples, "sampler stopped")
    assert.are.equal(0, vib.drops)
    assert.are.equal("running", rt:scripts().canary.status)
  end)
end

local function bad_status(rt)
  return rt:scripts().bad
end

describe("sandbox zoo", function()
  it("stops an infinite loop in a handler at its CPU budget", function()
    zoo([[
      lume.timer.after(10, function() while true do end end)
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      local s = bad_status(rt)
      assert.matches("CPU budget exceeded", s.last_error)
      assert.matches("timer.after", s.last_error)
      assert.are.equal(1, s.budget_overruns)
    end, { config = { sandbox = { cpu_budget_ms = 50 } } })
  end)

  it("cannot be caught by pcall, xpcall or a coroutine", function()
    zoo([[
      local co = coroutine.create(function() while true do end end)
      lume.timer.after(10, function()
        while true do pcall(function() while true do end end) end
      end)
      lume.timer.after(20, function()
        xpcall(function() while true do end end, function(e) return e end)
        loop_survived_xpcall = true
      end)
      lume.timer.after(30, function() coroutine.resume(co) ; loop_survived_co = true end)
      lume.timer.after(40, function()
        local w = coroutine.wrap(function() while true do end end)
        w()
      end)
      function survived() return loop_survived_xpcall or false, loop_survived_co or false end
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      local s = bad_status(rt)
      assert.are.equal(4, s.budget_overruns)
      local _, a, b = rt:call("bad", "survived")
      assert.is_false(a)
      assert.is_false(b)
    end, { config = { sandbox = { cpu_budget_ms = 30, max_overruns = 0 } }, run_ms = 600 })
  end)

  it("stops a script that keeps overrunning (sandbox.max_overruns)", function()
    zoo([[
      lume.on_sample("vibration", function() while true do end end)
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      local s = bad_status(rt)
      assert.are.equal("stopped", s.status)
      assert.are.equal(3, s.budget_overruns)
      assert.matches("3 CPU budget overruns", s.last_error)
      assert.truthy(H.find_log("stopped: 3 CPU budget overruns", "error"))
    end, { config = { sandbox = { cpu_budget_ms = 20, max_overruns = 3 } }, run_ms = 300 })
  end)

  it("refuses a memory bomb at the state's cap and keeps the script #native", function()
    zoo([[
      local n = 0
      lume.timer.after(10, function()
        local t = {}
        while true do t[#t + 1] = string.rep("x", 64) .. #t end
      end)
      lume.on_sample("temperature", function() n = n + 1 end)
      function alive() collectgarbage() ; return n, collectgarbage("count") end
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      local s = bad_status(rt)
      assert.matches("memory limit of 1048576 bytes exceeded", s.last_error)
      assert.are.equal("running", s.status)
      rt:run(1200)
      local _, n, kb = rt:call("bad", "alive")
      assert.is_true(n >= 1, "the script's other handler stopped")
      assert.is_true(kb < 512, "memory was not given back: " .. kb .. " KiB")
      assert.is_true(rt:scripts().bad.mem_peak <= 1048576)
    end)
  end)

  it("refuses a string.rep bomb #native", function()
    zoo([[
      lume.timer.after(10, function() local s = string.rep("x", 1e9) end)
      lume.timer.after(20, function() local s = string.rep("abc", 2^40) end)
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      local s = bad_status(rt)
      assert.are.equal(2, s.errors)
      assert.truthy(H.find_log("memory limit of 1048576 bytes exceeded"))
      assert.matches("too large", s.last_error)
    end)
  end)

  it("stops deep recursion", function()
    zoo([[
      local function down(n) return 1 + down(n + 1) end
      lume.timer.after(10, function() down(1) end)
      lume.timer.after(20, function()
        local function cdeep(n) return select(2, pcall(cdeep, n + 1)) end
        cdeep(1)
      end)
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      local s = bad_status(rt)
      assert.is_true(s.errors >= 1)
      local l = H.find_log("stack overflow") or H.find_log("memory limit")
      assert.truthy(l, "no stack overflow or memory error logged")
    end)
  end)

  for _, case in ipairs{
    { "io", [[io.open("/etc/passwd")]], "global 'io'" },
    { "os.execute", [[os.execute("touch /tmp/lume-pwned")]], "field 'execute'" },
    { "os.exit", [[os.exit(1)]], "field 'exit'" },
    { "debug", [[debug.sethook()]], "global 'debug'" },
    { "package.loadlib", [[package.loadlib("libc.so.6", "system")]], "field 'loadlib'" },
    { "loadfile", [[loadfile("/etc/passwd")]], "global 'loadfile'" },
    { "dofile", [[dofile("/etc/passwd")]], "global 'dofile'" },
    { "string.dump", [[string.dump(print)]], "field 'dump'" },
    { "binary load", [[load("\27Lua", "x", "b")]], "binary chunks are not allowed" },
    { "require outside stdlib", [[require "io"]], "module 'io' not found" },
    { "require by path", [[require "../../etc/passwd"]], "bad module name" },
    { "require a C module", [[require "lfs"]], "not found" },
  } do
    it("denies " .. case[1] .. " with a clear error", function()
      zoo(case[2], function(ok, err, rt)
        assert.is_nil(ok)
        assert.matches(case[3], err, 1, true)
        assert.matches("bad", err) -- names the script (chunk name)
        assert.are.equal("failed", bad_status(rt).status)
      end)
    end)
  end

  it("counts a handler erroring 10,000 times and keeps its other handlers", function()
    zoo([[
      local ok_calls = 0
      lume.sensor("vibration"):rate(2000)
      lume.on_sample("vibration", function(v) error("boom " .. v) end)
      lume.on_sample("vibration", function() ok_calls = ok_calls + 1 end)
      function good() return ok_calls end
    ]], function(ok, err, rt)
      assert.is_true(ok, err)
      H.run_until(rt, 20000, function() return rt:scripts().bad.errors >= 10000 end)
      local s = bad_status(rt)
      assert.is_true(s.errors >= 10000, "only " .. s.errors .. " errors")
      assert.are.equal("running", s.status)
      assert.matches("boom", s.last_error)
      local _, good = rt:call("bad", "good")
      assert.is_true(good >= 10000)
      -- the log is not flooded: the first errors in full, then summaries
      local lines = 0
      for _, l in ipairs(H.logs()) do
        if l.component == "script bad" then lines = lines + 1 end
      end
      assert.is_true(lines < 40, lines .. " log lines for one error storm")
    end, { run_ms = 100 })
  end)

  it("refuses a script whose top level never returns; the old version stays", function()
    H.with_runtime({ scripts = { canary = CANARY },
                     config = { sandbox = { load_budget_ms = 200 } } }, function(rt)
      assert(rt:install("bad", "function v() return 1 end"))
      local ok, err = rt:install("bad", "while true do end")
      assert.is_nil(ok)
      assert.matches("CPU budget exceeded", err)
      local s = rt:scripts().bad
      assert.are.equal("running", s.status)
      assert.are.equal(1, s.generation)
      assert.matches("reload failed", s.last_error)
      assert.are.equal(1, select(2, rt:call("bad", "v")))
      rt:run(200)
      assert.is_true(select(2, rt:call("canary", "seen")) > 0)
    end)
  end)
end)
