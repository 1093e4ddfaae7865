-- Hot reload: a new version replaces the old only if it loads; across a
-- swap no sample is dropped and none is handled twice.
local H = require "helper"
local json = require "lume.json"

local function version(n)
  -- every vibration sample's timestamp goes to the outbox, tagged with the version
  return ([[
    local V = %d
    lume.on_sample("vibration", function(v, t)
      lume.publish("seen", string.format("%%d %%.9f", V, t), { priority = "bulk" })
    end)
  ]]):format(n)
end

describe("hot reload", function()
  it("swaps 30 times at 500 Hz without dropping or repeating a sample", function()
    H.with_runtime({}, function(rt)
      rt:set_rate("vibration", 500)
      assert(rt:install("swap", version(1)))
      for v = 2, 31 do
        rt:run(30)
        assert(rt:install("swap", version(v)))
      end
      rt:run(30)
      local st = rt:sensor("vibration")
      assert.are.equal(0, st.drops)
      local msgs = rt:peek(100000)
      local seen, versions, last = {}, {}, -1
      for _, m in ipairs(msgs) do
        local ver, t = m.payload:match("^(%d+) (.+)$")
        assert.is_nil(seen[t], "sample at " .. t .. " handled twice")
        seen[t] = true
        versions[tonumber(ver)] = true
        assert.is_true(tonumber(t) > last, "out of order")
        last = tonumber(t)
      end
      -- every sample the sampler took (but those still in the ring) was handled
      assert.is_true(st.samples - #msgs <= 5,
        ("sampler took %d samples, scripts handled %d"):format(st.samples, #msgs))
      for v = 1, 31 do assert.is_true(versions[v], "version " .. v .. " handled nothing") end
      assert.are.equal(31, rt:scripts().swap.generation)
    end)
  end)

  it("keeps the old version when the new one has a syntax error, naming file:line", function()
    H.with_runtime({ scripts = { r = "function v() return 1 end" } }, function(rt, dir)
      assert.are.equal(1, select(2, rt:call("r", "v")))
      H.write(dir .. "/scripts/r.lua", "function v() return 2 end\nfunction (\n")
      local ok, err = rt:reload("r")
      assert.is_nil(ok)
      assert.matches("scripts/r.lua:2:", err)
      assert.are.equal(1, select(2, rt:call("r", "v")))
      assert.are.equal("running", rt:scripts().r.status)
      assert.truthy(H.find_log("r.lua:2:.*the running version stays"))
      H.write(dir .. "/scripts/r.lua", "function v() return 3 end")
      assert(rt:reload("r"))
      assert.are.equal(3, select(2, rt:call("r", "v")))
      assert.are.equal(2, rt:scripts().r.generation)
    end)
  end)

  it("keeps the old version when the new one errors at load", function()
    H.with_runtime({ scripts = { r = "function v() return 1 end" } }, function(rt, dir)
      H.write(dir .. "/scripts/r.lua", "function v() return 2 end\nerror('not today')")
      local ok, err = rt:reload("r")
      assert.is_nil(ok)
      assert.matches("r.lua:2: not today", err)
      assert.are.equal(1, select(2, rt:call("r", "v")))
    end)
  end)

  it("reloading everything picks up new files and drops deleted ones", function()
    H.with_runtime({ scripts = { a = "A = 1", b = "B = 1" } }, function(rt, dir)
      os.remove(dir .. "/scripts/b.lua")
      H.write(dir .. "/scripts/c.lua", "C = 1")
      assert(rt:reload())
      local s = rt:scripts()
      assert.truthy(s.a)
      assert.is_nil(s.b)
      assert.truthy(s.c)
      assert.are.equal(2, s.a.generation)
    end)
  end)

  it("rejects bad script names", function()
    H.with_runtime({}, function(rt)
      local ok, err = rt:install("../evil", "x = 1")
      assert.is_nil(ok)
      assert.matches("bad script name", err)
    end)
  end)

  it("the timers and handlers of the old version stop at the swap", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("t", [[lume.timer.every(10, function() lume.publish("old", 1) end)]]))
      rt:run(50)
      assert(rt:install("t", [[lume.timer.every(10, function() lume.publish("new", 1) end)]]))
      local before = #rt:peek(10000)
      rt:run(100)
      local msgs = rt:peek(10000)
      local old_after = 0
      for i = before + 1, #msgs do
        if msgs[i].topic:match("/old$") then old_after = old_after + 1 end
      end
      assert.are.equal(0, old_after)
      assert.is_true(#msgs > before)
    end)
  end)
end)
