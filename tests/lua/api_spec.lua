-- The Lua API scripts see, driven through a real runtime on the sim board.
local H = require "helper"
local json = require "lume.json"

describe("lume API", function()
  it("on_sample delivers each sample once, in time order, with the sensor name", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("s", [[
        ts, names, vals = {}, {}, {}
        lume.on_sample("vibration", function(v, t, name)
          ts[#ts + 1] = t ; names[name] = true ; vals[#vals + 1] = v
        end)
        function got() return #ts, ts[1], ts[#ts], names end
        function ordered()
          for i = 2, #ts do if ts[i] <= ts[i - 1] then return false, i end end
          return true
        end
        function numeric() for _, v in ipairs(vals) do if v ~= v or type(v) ~= "number" then return false end end return true end
      ]]))
      rt:run(500)
      local _, n, first, last, names = rt:call("s", "got")
      assert.is_true(n >= 20, "only " .. n .. " vibration samples in 500 ms at 100 Hz")
      assert.is_true(last > first)
      assert.is_true(math.abs(first - os.time()) < 5, "t is not wall-clock seconds")
      assert.are.same({ vibration = true }, names)
      assert.is_true(select(2, rt:call("s", "ordered")))
      assert.is_true(select(2, rt:call("s", "numeric")))
    end)
  end)

  it("batched handlers get every sample of a drain, exactly once", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("b", [[
        local count, calls, last = 0, 0, 0
        local dup = false
        lume.sensor("vibration"):rate(1000)
        lume.on_sample("vibration", function(values, times, name)
          calls = calls + 1
          assert(#values == #times and name == "vibration")
          for i = 1, #times do
            if times[i] <= last then dup = true end
            last = times[i]
          end
          count = count + #values
        end, { batch = true })
        local single = 0
        lume.on_sample("vibration", function() single = single + 1 end)
        -- keep the loop busy now and then, so samples queue up between drains
        lume.timer.every(50, function()
          local t0 = os.clock() ; while os.clock() - t0 < 0.02 do end
        end)
        function stats() return count, calls, dup, single end
      ]]))
      rt:run(600)
      local _, count, calls, dup, single = rt:call("b", "stats")
      assert.is_false(dup)
      assert.are.equal(single, count)   -- batched and per-sample saw the same samples
      assert.is_true(count > calls, "batches of one sample only")
    end)
  end)

  it("sensor: read, rate clamped to the board's bounds, stats, unknown names", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("s", [[
        local vib = lume.sensor("vibration")
        function info()
          local lo, hi = vib:bounds()
          return vib.name, vib.unit, lo, hi, vib:rate()
        end
        function set(hz) return vib:rate(hz) end
        function read() return vib:read() end
        function stats() return vib:stats() end
        function missing() return lume.sensor("nope") end
        function list() return lume.sensor.list() end
      ]]))
      local _, name, unit, lo, hi, rate = rt:call("s", "info")
      assert.are.equal("vibration", name)
      assert.are.equal("string", type(unit))
      assert.is_true(lo <= rate and rate <= hi)
      assert.are.equal(hi, select(2, rt:call("s", "set", hi * 10)))
      assert.are.equal(lo, select(2, rt:call("s", "set", lo / 10)))
      assert.are.equal(200, select(2, rt:call("s", "set", 200)))
      rt:run(300)
      local _, v, t = rt:call("s", "read")
      assert.are.equal("number", type(v))
      assert.is_true(math.abs(t - os.time()) < 5)
      local _, st = rt:call("s", "stats")
      assert.is_true(st.samples > 20)
      assert.are.equal(200, st.rate)
      assert.are.equal(0, st.drops)
      assert.is_true(st.late_p99_us >= 0 and st.late_max_us >= st.late_p50_us)
      local _, none, err = rt:call("s", "missing")
      assert.is_nil(none)
      assert.matches("no sensor named 'nope'", err)
      local _, names = rt:call("s", "list")
      assert.are.same({ "temperature", "humidity", "vibration", "battery", "power" }, names)
    end)
  end)

  it("on_sample on an unknown sensor fails the load with the sensors listed", function()
    H.with_runtime({}, function(rt)
      local ok, err = rt:install("s", [[lume.on_sample("temprature", print)]])
      assert.is_nil(ok)
      assert.matches("no sensor named 'temprature' on board sim %(sensors: temperature", err)
    end)
  end)

  it("timers: every, after, cancel, and <close>", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("t", [[
        ticks, once, cancelled_ran, self_cancel = 0, 0, false, 0
        local t = lume.timer.every(20, function() ticks = ticks + 1 end)
        lume.timer.after(30, function() once = once + 1 end)
        local c = lume.timer.after(50, function() cancelled_ran = true end)
        assert(c:active())
        assert(c:cancel() == true and not c:active())
        local me
        me = lume.timer.every(10, function()
          self_cancel = self_cancel + 1
          if self_cancel == 3 then me:cancel() end
        end)
        do local scoped <close> = lume.timer.after(10, function() cancelled_ran = true end) end
        function state() return ticks, once, cancelled_ran, self_cancel end
      ]]))
      rt:run(400)
      local _, ticks, once, cancelled_ran, self_cancel = rt:call("t", "state")
      assert.is_true(ticks >= 5 and ticks <= 25, ticks .. " ticks in 400 ms at 20 ms")
      assert.are.equal(1, once)
      assert.is_false(cancelled_ran)
      assert.are.equal(3, self_cancel)
    end)
  end)

  it("publish: lanes, topics, JSON payloads, ttl, bad options", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("p", [[
        function go()
          assert(lume.publish("env", { t = 21.5, ok = true, list = { 1, 2, 3 } }))
          assert(lume.publish("raw", "as-is", { priority = "bulk" }))
          assert(lume.publish("alarm/x", 42, { priority = "alarm", ttl = 60, qos = 0 }))
          return true
        end
        function bad(opts) return pcall(lume.publish, "r", 1, opts) end
        function nan() return pcall(lume.publish, "r", { v = 0/0 }) end
        function badroute() return pcall(lume.publish, "a/#", 1) end
      ]]))
      assert.is_true(select(2, rt:call("p", "go")))
      local msgs = rt:peek(10)
      assert.are.equal(3, #msgs)
      -- alarm first, then telemetry, then bulk
      assert.are.equal("alarm", msgs[1].lane)
      assert.are.equal("lume/spec-device/telemetry/alarm/x", msgs[1].topic)
      assert.are.equal("42", msgs[1].payload)
      assert.are.equal(0, msgs[1].qos)
      assert.are.equal("telemetry", msgs[2].lane)
      assert.are.same({ t = 21.5, ok = true, list = { 1, 2, 3 } }, json.decode(msgs[2].payload))
      assert.are.equal(1, msgs[2].qos)
      assert.are.equal("bulk", msgs[3].lane)
      assert.are.equal("as-is", msgs[3].payload)
      local _, ok, err = rt:call("p", "bad", { priority = "urgent" })
      assert.is_false(ok)
      assert.matches("priority must be", err)
      _, ok, err = rt:call("p", "bad", { qos = 2 })
      assert.is_false(ok)
      assert.matches("qos must be 0 or 1", err)
      _, ok, err = rt:call("p", "nan")
      assert.is_false(ok)
      assert.matches("publish: cannot encode NaN at value%.v", err)
      _, ok, err = rt:call("p", "badroute")
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'lume%.publish' %(route must not hold '%+' or '#'", err)
    end)
  end)

  it("publish refused by the outbox cap returns nil, err (alarms still go in)", function()
    H.with_runtime({ config = { outbox = { max_messages = 10 } } }, function(rt)
      assert(rt:install("p", [[
        function fill(n, lane)
          local refused, err = 0
          for i = 1, n do
            local id, e = lume.publish("x", i, { priority = lane })
            if not id then refused = refused + 1 ; err = e end
          end
          return refused, err
        end
      ]]))
      assert.are.equal(0, select(2, rt:call("p", "fill", 10, "alarm")))
      local _, refused, err = rt:call("p", "fill", 5, "telemetry")
      assert.are.equal(5, refused)
      assert.matches("outbox full", err)
      assert.are.equal(0, select(2, rt:call("p", "fill", 5, "alarm")))
      local ob = rt:outbox()
      assert.are.equal(15, ob.alarm.depth)
      assert.are.equal(5, ob.telemetry.refused)
    end)
  end)

  it("store persists per script across restarts, with a quota", function()
    local dir = H.tmpdir()
    local store = dir .. "/var"
    local src = [[
      function put(k, v) return lume.store.set(k, v) end
      function get(k) return lume.store.get(k) end
      function keys() local k = lume.store.keys() ; table.sort(k) ; return k end
      function del(k) return lume.store.delete(k) end
    ]]
    local rt = assert(H.runtime({ store = store, config = { sandbox = { store_quota = 4096 } } }))
    assert(rt:install("a", src))
    assert(rt:install("b", src))
    assert.is_true(select(2, rt:call("a", "put", "cfg", { limit = 30.5, on = true, tags = { "x" } })))
    assert.is_true(select(2, rt:call("a", "put", "n", 7)))
    assert.is_true(select(2, rt:call("b", "put", "n", 8)))
    local _, ok, err = rt:call("a", "put", "big", string.rep("x", 5000))
    assert.is_nil(ok)
    assert.matches("quota of 4096 bytes", err)
    rt:close()
    rt = assert(H.runtime({ store = store }))
    assert(rt:install("a", src))
    assert(rt:install("b", src))
    assert.are.same({ limit = 30.5, on = true, tags = { "x" } }, select(2, rt:call("a", "get", "cfg")))
    assert.are.equal(7, select(2, rt:call("a", "get", "n")))
    assert.are.equal(8, select(2, rt:call("b", "get", "n")))
    assert.are.same({ "cfg", "n" }, select(2, rt:call("a", "keys")))
    rt:call("a", "del", "n")
    assert.is_nil(select(2, rt:call("a", "get", "n")))
    rt:close()
    H.rmdir(dir)
  end)

  it("device, log, print, require", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      assert(rt:install("d", [[
        lume.log.warn("hello %s %d", "world", 42)
        print("printed", 1, nil)
        local window = require "lume.window"
        function dev() return lume.device.id, lume.device.board, lume.device.version, lume.device.script end
        function win() local w = window.count(3) ; w:push(1) ; w:push(3) ; return w:mean() end
        function missing() return pcall(require, "lume.nope") end
      ]]))
      local _, id, board, version, script = rt:call("d", "dev")
      assert.are.equal("spec-device", id)
      assert.are.equal("sim", board)
      assert.are.equal(H.host.version, version)
      assert.are.equal("d", script)
      assert.are.equal(2, select(2, rt:call("d", "win")))
      local l = H.find_log("hello world 42")
      assert.truthy(l)
      assert.are.equal("warn", l.level)
      assert.are.equal("script d", l.component)
      assert.truthy(H.find_log("printed\t1\tnil"))
      local _, ok, err = rt:call("d", "missing")
      assert.is_false(ok)
      assert.matches("module 'lume.nope' not found", err)
    end)
  end)

  it("a handler error is logged with script:line and a traceback, and counted", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      assert(rt:install("e", "lume.timer.after(5, function()\n  local x = nil\n  return x.field\nend)"))
      rt:run(100)
      local s = rt:scripts().e
      assert.are.equal(1, s.errors)
      assert.matches("e:3: attempt to index a nil value", s.last_error)
      local l = H.find_log("e:3: attempt to index")
      assert.truthy(l)
      assert.matches("stack traceback", l.msg)
    end)
  end)
end)
