-- The callback registry (bindings/registry.c): every kind of handle a
-- script can make — on_sample, timer.every, timer.after, subscribe, net.on,
-- twin.on_change — is released when cancelled, so create+cancel cycles
-- leave a script's memory and the registry as they found them; cancelling
-- during a dispatch releases after it; handles keep their Lua face.
local H = require "helper"
local json = require "lume.json"

-- lume stats' per-script callback counts (lume_runtime_stats_json).
local function counts(rt, name)
  return json.decode(rt:stats()).scripts[name].handlers
end

local KINDS = {
  on_sample = "lume.on_sample('vibration', f)",
  every = "lume.timer.every(1000, f)",
  after = "lume.timer.after(1000, f)",
  subscribe = "lume.subscribe('lume/x/cmd/#', f)",
  net_on = "lume.net.on('connected', f)",
  twin = "lume.twin.on_change('cfg', f)",
}

local function cycles_source()
  local src = { "local f = function() end", "local make = {}" }
  for kind, expr in pairs(KINDS) do
    src[#src + 1] = ("make[%q] = function() return %s end"):format(kind, expr)
  end
  src[#src + 1] = [[
    function cycle(kind, n)
      local mk = make[kind]
      for i = 1, n do
        local h = mk()
        assert(h:active(), "a new handle is active")
        assert(h:cancel() == true, "the first cancel cancels")
        assert(h:cancel() == false, "the second finds nothing")
        assert(not h:active())
      end
      return true
    end
    function mem()
      collectgarbage("collect") ; collectgarbage("collect")
      return collectgarbage("count")
    end
    -- one live handle of each kind, kept, so the counts start above zero
    keep = {}
    for kind, mk in pairs(make) do keep[kind] = mk() end
  ]]
  return table.concat(src, "\n")
end

describe("callback registry", function()
  for kind in pairs(KINDS) do
    it("100,000 create+cancel cycles of " .. kind .. " leave memory and counts flat", function()
      H.with_runtime({}, function(rt)
        assert(rt:install("c", cycles_source()))
        local start = counts(rt, "c")
        assert.are.same({ on_sample = 1, timers = 2, subscriptions = 1, net = 1, twin = 1 }, start)
        -- warm up: the registry's free list and the arrays reach their size
        assert.is_true(select(2, assert(rt:call("c", "cycle", kind, 1000))))
        local _, kb0 = rt:call("c", "mem")
        local mem0 = rt:scripts().c.mem
        local ok, done = rt:call("c", "cycle", kind, 100000)
        assert(ok, done)
        assert.is_true(done)
        local _, kb1 = rt:call("c", "mem")
        local mem1 = rt:scripts().c.mem
        assert.is_true(kb1 - kb0 < 4, ("Lua heap grew %.1f KiB over 100,000 cycles"):format(kb1 - kb0))
        assert.is_true(mem1 - mem0 < 4096, ("script memory grew %d bytes"):format(mem1 - mem0))
        assert.are.same(start, counts(rt, "c"))
        assert.are.equal(0, rt:scripts().c.errors)
      end)
    end)
  end

  it("handlers cancelled during a dispatch are released after it", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("d", [[
        lume.sensor("vibration"):rate(1000)
        calls, cancelled_ran = 0, 0
        local victim
        -- registered first, so it runs first in each dispatch: cancels the
        -- victim (later in the same list)
        local first = true
        lume.on_sample("vibration", function()
          calls = calls + 1
          if first then first = false ; victim:cancel() end
        end)
        victim = lume.on_sample("vibration", function() cancelled_ran = cancelled_ran + 1 end)
        -- called once per drain, inside the dispatch: churns handlers there
        -- (a fixed number per drain, so the registry's high-water mark does
        -- not depend on how many samples a drain holds)
        lume.on_sample("vibration", function()
          for i = 1, 200 do lume.on_sample("vibration", function() end):cancel() end
        end, { batch = true })
        function state()
          collectgarbage("collect")
          return calls, cancelled_ran, collectgarbage("count")
        end
      ]]))
      rt:run(300)
      local _, calls0, ran, kb0 = rt:call("d", "state")
      assert.is_true(calls0 > 50, "only " .. calls0 .. " samples")
      assert.are.equal(0, ran) -- cancelled before its first turn came
      assert.are.equal(2, counts(rt, "d").on_sample)
      rt:run(1000)
      local _, calls1, _, kb1 = rt:call("d", "state")
      assert.is_true(calls1 > calls0 + 300)
      assert.are.equal(2, counts(rt, "d").on_sample)
      assert.is_true(kb1 - kb0 < 16, ("Lua heap grew %.1f KiB"):format(kb1 - kb0))
      assert.are.equal(0, rt:scripts().d.errors)
    end)
  end)

  it("a timer cancelled from its own or another timer's callback never fires again", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("t", [[
        a, b, once_active = 0, 0, nil
        local tb
        local ta ; ta = lume.timer.every(5, function()
          a = a + 1
          if a == 2 then ta:cancel() ; tb:cancel() end
        end)
        tb = lume.timer.every(5, function() b = b + 1 end)
        local once ; once = lume.timer.after(5, function() once_active = once:active() end)
        function state() return a, b, once_active end
      ]]))
      rt:run(200)
      local _, a, b, once_active = rt:call("t", "state")
      assert.are.equal(2, a)
      assert.is_true(b <= 2)
      assert.is_false(once_active) -- a one-shot is over as it fires
      assert.are.equal(0, counts(rt, "t").timers)
    end)
  end)

  it("twin.on_change handlers cancelled in a notify are released after it", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("w", [[
        seen = {}
        local h2
        local h1 = lume.twin.on_change("cfg", function(v)
          seen[#seen + 1] = "h1:" .. tostring(v) ; h2:cancel()
        end)
        h2 = lume.twin.on_change("cfg", function(v) seen[#seen + 1] = "h2:" .. tostring(v) end)
        function state() return table.concat(seen, " ") end
      ]]))
      assert.are.equal(2, counts(rt, "w").twin)
      assert.is_true(rt:desired(json.encode({ cfg = 1, ["$version"] = 1 })))
      rt:run(50)
      assert.is_true(rt:desired(json.encode({ cfg = 2, ["$version"] = 2 })))
      rt:run(50)
      assert.are.equal("h1:1 h1:2", select(2, rt:call("w", "state")))
      assert.are.equal(1, counts(rt, "w").twin)
    end)
  end)

  it("dropping a handle keeps its callback; <close> cancels it; handles say what they are", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("g", [[
        ticks, scoped = 0, 0
        lume.timer.every(5, function() ticks = ticks + 1 end)   -- dropped at once
        do local h <close> = lume.timer.every(5, function() scoped = scoped + 1 end) end
        do local s <close> = lume.subscribe("a/#", function() end) end
        do local n <close> = lume.net.on("disconnected", function() end) end
        do local w <close> = lume.twin.on_change("k", function() end) end
        do local o <close> = lume.on_sample("vibration", function() end) end
        function gc() collectgarbage("collect") ; collectgarbage("collect") end
        function state() return ticks, scoped end
        function names()
          local t = {}
          for _, h in ipairs({ lume.on_sample("vibration", print), lume.timer.after(1000, print),
                               lume.subscribe("b", print), lume.net.on("connected", print),
                               lume.twin.on_change("k", print) }) do
            t[#t + 1] = tostring(h):match("^[^:]+") ; h:cancel()
          end
          return table.concat(t, " ")
        end
        function misuse() return pcall(lume.timer.after(1000, print).cancel, lume.subscribe("c", print)) end
      ]]))
      rt:call("g", "gc")
      rt:run(100)
      local _, ticks, scoped = rt:call("g", "state")
      assert.is_true(ticks >= 5, ticks .. " ticks")
      assert.are.equal(0, scoped)
      assert.are.same({ on_sample = 0, timers = 1, subscriptions = 0, net = 0, twin = 0 },
        counts(rt, "g"))
      assert.are.equal("lume.handler lume.timer lume.subscription lume.listener lume.twin.listener",
        select(2, rt:call("g", "names")))
      local _, ok, err = rt:call("g", "misuse")
      assert.is_false(ok)
      assert.matches("lume.timer expected, got lume.subscription", err)
    end)
  end)

  it("unloading a script releases all it registered", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("u", cycles_source()))
      assert(rt:unload("u"))
      assert.is_nil(rt:scripts().u)
      assert(rt:install("u", cycles_source()))
      rt:run(50)
      assert.are.same({ on_sample = 1, timers = 2, subscriptions = 1, net = 1, twin = 1 },
        counts(rt, "u"))
    end)
  end)
end)
