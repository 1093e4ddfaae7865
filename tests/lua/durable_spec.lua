-- When a published message is durable: lume.flush(), publish {durable = true},
-- outbox.durable_lanes (alarms by default), what lume stats says about it, and
-- loss counters that survive a restart. A real runtime through lume_host.
local H = require "helper"
local json = require "lume.json"

local PUB = [[
  function pub(n, opts)
    local last
    for i = 1, n do last = assert(lume.publish("d", i, opts)) end
    return last
  end
  function try(opts) return lume.publish("d", 1, opts) end
  function bad(opts) return pcall(lume.publish, "d", 1, opts) end
  function flush() return lume.flush() end
]]

-- A shell job that holds the outbox's write lock for `secs` seconds, as
-- another writer would (the commit then fails with "database is locked").
local function hold_lock(db, secs)
  os.execute(("(printf 'BEGIN IMMEDIATE;\\n'; sleep %s; printf 'ROLLBACK;\\n') | "
    .. "sqlite3 '%s' >/dev/null 2>&1 &"):format(secs, db))
  os.execute("sleep 0.4")
end

describe("durability", function()
  it("a default publish is accepted, not yet durable; lume.flush() makes it durable", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("p", PUB))
      local _, last = rt:call("p", "pub", 10)
      local ob = rt:outbox()
      -- no loop turn yet: the commit timer has not handed them over
      assert.are.equal(10, ob.pending)
      assert.are.equal(10, ob.telemetry.pending)
      assert.is_true(ob.durable_id < last)
      local _, ok, err = rt:call("p", "flush")
      assert.is_true(ok, err)
      ob = rt:outbox()
      assert.are.equal(0, ob.pending)
      assert.are.equal(0, ob.telemetry.pending)
      assert.are.equal(last, ob.durable_id)
      assert.are.equal(1, ob.commits)
      -- nothing left to write: flush returns at once and commits nothing
      assert.is_true(select(2, rt:call("p", "flush")))
      assert.are.equal(1, rt:outbox().commits)
      -- the commit timer makes the rest durable within commit_interval_ms
      rt:call("p", "pub", 5)
      assert.are.equal(5, rt:outbox().pending)
      assert.is_truthy(H.run_until(rt, 1000, function() return rt:outbox().pending == 0 end))
    end)
  end)

  it("publish {durable = true} returns once its message is committed", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("p", PUB))
      rt:call("p", "pub", 3)   -- not durable yet: committed with the durable one
      local _, id = rt:call("p", "try", { durable = true })
      local ob = rt:outbox()
      assert.are.equal(0, ob.pending)
      assert.are.equal(id, ob.durable_id)
      local _, ok, err = rt:call("p", "bad", { durable = "yes" })
      assert.is_false(ok)
      assert.matches("durable must be true or false", err)
    end)
  end)

  it("alarms are durable by default; outbox.durable_lanes chooses the lanes", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("p", PUB))
      local _, id = rt:call("p", "try", { priority = "alarm" })
      assert.are.equal(0, rt:outbox().pending)
      assert.are.equal(id, rt:outbox().durable_id)
      local st = json.decode(rt:stats())
      assert.is_true(st.outbox.alarm.durable_publish)
      assert.is_false(st.outbox.telemetry.durable_publish)
    end)
    H.with_runtime({ config = { outbox = { durable_lanes = { "telemetry" } } } }, function(rt)
      assert(rt:install("p", PUB))
      rt:call("p", "try", { priority = "alarm" })
      assert.are.equal(1, rt:outbox().alarm.pending)
      local _, id = rt:call("p", "try", { priority = "telemetry" })
      assert.are.equal(0, rt:outbox().pending)
      assert.are.equal(id, rt:outbox().durable_id)
    end)
    H.with_runtime({ config = { outbox = { durable_lanes = {} } } }, function(rt)
      assert(rt:install("p", PUB))
      rt:call("p", "try", { priority = "alarm" })
      assert.are.equal(1, rt:outbox().alarm.pending)
    end)
    local ok, err = H.host.config_check({ outbox = { durable_lanes = { "alarms" } } })
    assert.is_nil(ok)
    assert.matches('outbox.durable_lanes: expected lane names .* got "alarms"', err)
  end)

  it("the twin's outbox key sets durable_lanes (a list of lane names) and reports it", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("p", PUB))
      assert.is_true(rt:desired(json.encode({ outbox = { durable_lanes = { "telemetry" } } })))
      local rep = json.decode(rt:reported())
      assert.are.same({ "telemetry" }, rep.outbox.durable_lanes)
      local _, id = rt:call("p", "try", { priority = "telemetry" })
      assert.are.equal(0, rt:outbox().pending)
      assert.are.equal(id, rt:outbox().durable_id)
      rt:call("p", "try", { priority = "alarm" })
      assert.are.equal(1, rt:outbox().alarm.pending)
      assert.is_true(rt:desired(json.encode({ outbox = { durable_lanes = { "alarms" } } })))
      rep = json.decode(rt:reported())
      assert.matches("outbox.durable_lanes: expected lane names", rep.errors.outbox)
      assert.are.same({ "telemetry" }, rep.outbox.durable_lanes)   -- unchanged
    end)
  end)

  it("when the disk refuses the commit: flush and durable publishes say so, nothing is lost",
    function()
    H.with_runtime({}, function(rt, dir)
      assert(rt:install("p", PUB))
      rt:call("p", "pub", 2)
      hold_lock(dir .. "/var/outbox.db", 1.6)
      local _, ok, err = rt:call("p", "flush")
      assert.is_nil(ok)
      assert.matches("flush: commit failed: database is locked", err)
      local _, id, perr, pid = rt:call("p", "try", { priority = "alarm" })
      assert.is_nil(id)
      assert.matches("publish: message %d+ accepted but not durable: commit failed: "
        .. "database is locked", perr)
      local ob = rt:outbox()
      assert.are.equal(3, ob.pending)
      assert.is_true(ob.commit_errors >= 2)
      assert.is_true(ob.durable_id < pid)
      os.execute("sleep 1.5")
      assert.is_true(select(2, rt:call("p", "flush")))
      ob = rt:outbox()
      assert.are.equal(0, ob.pending)
      assert.are.equal(pid, ob.durable_id)
      assert.are.equal(3, #rt:peek(10))
    end)
  end)

  it("drop and refusal counts survive a restart and show in lume stats", function()
    local dir = H.tmpdir()
    local opts = { store = dir .. "/var", config = { outbox = { max_messages = 2 } } }
    local rt, d1 = H.runtime(opts)
    assert(rt, d1)
    assert(rt:install("p", PUB))
    rt:call("p", "try", { priority = "bulk" })
    rt:call("p", "try", { priority = "telemetry" })
    rt:call("p", "try", { priority = "telemetry" })   -- drops the bulk one
    local _, id, err = rt:call("p", "try", { priority = "bulk" })
    assert.is_nil(id)
    assert.matches("outbox full", err)
    rt:close()
    local d2
    rt, d2 = H.runtime(opts)
    assert(rt, d2)
    local st = json.decode(rt:stats()).outbox
    assert.are.equal(1, st.bulk.dropped)
    assert.are.equal(1, st.bulk.refused)
    assert.are.equal(0, st.telemetry.dropped)
    assert.are.equal(2, st.telemetry.depth)
    assert.are.equal(0, st.bulk.appended)   -- this process's own count
    rt:close()
    H.rmdir(d1)
    H.rmdir(d2)
    H.rmdir(dir)
  end)
end)
