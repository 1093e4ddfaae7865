-- What the device reports must follow what is desired: errors go away with
-- their cause, sensors no longer desired leave the reported document, a
-- layer's bundle replaces the one below it whole, and a desired value too
-- large for a script's memory is that script's reported error, never a
-- crash. Documents are fed with rt:desired (as if they had arrived on the
-- layer's topic); the reported document is read with rt:reported().
local H = require "helper"
local json = require "lume.json"

local function reported(rt)
  return json.decode(rt:reported() or "{}")
end

local v = 0
local function desire(rt, doc, layer)
  v = v + 1
  doc["$version"] = v
  assert.is_true(rt:desired(json.encode(doc), layer))
  rt:run(50)
end

local TWIN = { twin = { allow_unsigned = true, groups = { "fleet" } } }

describe("reported state", function()
  it("keeps what a script reports at its top level, before the twin has started", function()
    -- scripts load before the twin host starts: those reports used to vanish
    local src = [[
lume.twin.report({ early = { n = 1, gone = "soon" } })
lume.twin.report({ early = { n = 2, gone = json_null } })
lume.timer.every(1000, function() end)
]]
    src = src:gsub("json_null", "require(\"lume.json\").null")
    H.with_runtime({ config = TWIN, scripts = { early = src } }, function(rt)
      rt:run(50)
      local doc = reported(rt)
      assert.same({ n = 2 }, doc.early, "both reports, in order, the null one deleting")
    end)
  end)

  it("errors.scripts goes away after a valid document", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { scripts = 5 })
      assert.matches("must be an object", reported(rt).errors.scripts)
      desire(rt, { scripts = {} })
      assert.is_nil((reported(rt).errors or {}).scripts)
    end)
  end)

  it("errors.log and errors.sensors go away when the key is removed", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { log = "loud", sensors = { nosuch = 5 } })
      local errs = reported(rt).errors
      assert.matches("level must be", errs.log)
      assert.matches("nosuch: no such sensor", errs.sensors)
      desire(rt, {})
      errs = reported(rt).errors or {}
      assert.is_nil(errs.log)
      assert.is_nil(errs.sensors)
    end)
  end)

  it("a sensor no longer desired leaves reported.sensors", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { sensors = { vibration = 99999, temperature = 2 } })
      local s = reported(rt).sensors
      assert.is_true(s.vibration.clamped)
      assert.are.equal(2, s.temperature.rate)
      desire(rt, { sensors = { temperature = 2 } })
      s = reported(rt).sensors
      assert.is_nil(s.vibration)
      assert.are.equal(2, s.temperature.rate)
    end)
  end)

  it("a device layer's bundle replaces a group's bundle of the same name whole", function()
    H.with_runtime({ config = TWIN }, function(rt)
      desire(rt, { scripts = { app = { version = "g1", chunks = { "function who() return 'group' end" } } } }, "group:fleet")
      assert.are.equal("active", reported(rt).scripts.app.status)
      desire(rt, { scripts = { app = { version = "d1", source = "function who() return 'device' end" } } })
      local app = reported(rt).scripts.app
      assert.are.equal("active", app.status, app.error)
      assert.are.equal("d1", app.running)
      assert.are.equal("device", select(2, rt:call("app", "who")))
      -- the device layer dropping its bundle brings the group's back, whole
      desire(rt, {})
      app = reported(rt).scripts.app
      assert.are.equal("g1", app.running, app.error)
      assert.are.equal("group", select(2, rt:call("app", "who")))
    end)
  end)

  it("a desired value too large for the script's memory is its reported error", function()
    H.with_runtime({ config = { twin = { allow_unsigned = true },
                                sandbox = { memory_limit = "1MiB" } },
                     scripts = { owner = [[
                       seen = 0
                       lume.twin.on_change("cfg", function(now) seen = seen + 1 end)
                       function count() return seen end
                     ]] } }, function(rt)
      local cfg = {}
      for i = 1, 22000 do cfg["k" .. i] = i % 10 end -- ~220 KB, under the 256 KiB limit
      desire(rt, { cfg = cfg })
      local errs = reported(rt).errors
      assert.matches("script owner: twin.on_change%(cfg%).*memory limit", errs.cfg)
      assert.are.equal("running", rt:scripts().owner.status)
      -- a value that fits clears the error
      desire(rt, { cfg = { a = 1 } })
      assert.is_nil((reported(rt).errors or {}).cfg)
      assert.are.equal(1, select(2, rt:call("owner", "count")))
    end)
  end)

  it("a desired document of 15,000 script entries is reported, and removed entries go", function()
    H.with_runtime({ config = TWIN }, function(rt)
      local scripts = {}
      for i = 1, 15000 do scripts["s" .. i] = i end
      desire(rt, { scripts = scripts })
      local rep = reported(rt).scripts
      assert.are.equal("rejected", rep.s1.status)
      assert.are.equal("rejected", rep.s15000.status)
      desire(rt, { scripts = {} })
      assert.is_nil(next(reported(rt).scripts or {}))
    end)
  end)
end)

describe("bundles", function()
  it("a bundle rejected while another soaks does not take the soaking one's name", function()
    local dir = H.tmpdir()
    local store = dir .. "/store"
    local cfg = { config = TWIN, store = store }
    H.with_runtime(cfg, function(rt)
      desire(rt, { scripts = { app = { version = "v1", source = "function v() return 1 end" } } })
      desire(rt, { scripts = { app = { version = "v2", soak_s = 1,
                                       source = "function v() return 2 end" } } })
      assert.are.equal("soaking", reported(rt).scripts.app.status)
      desire(rt, { scripts = { app = { version = "v3", source = "local = broken" } } })
      assert.are.equal("rejected", reported(rt).scripts.app.status)
      H.run_until(rt, 3000, function() return reported(rt).scripts.app.status == "active" end)
      local app = reported(rt).scripts.app
      assert.are.equal("active", app.status)
      assert.are.equal("v2", app.version)
      assert.are.equal("v2", app.running)
    end)
    -- the last-known-good kept across a restart is v2, under its own name
    H.with_runtime(cfg, function(rt)
      local app = reported(rt).scripts.app
      assert.are.equal("v2", app.running)
      assert.are.equal(2, select(2, rt:call("app", "v")))
    end)
    H.rmdir(dir)
  end)
end)

describe("log lines", function()
  it("a failed reload of a script that never loaded does not claim a version runs", function()
    H.with_runtime({ scripts = { broken = "local = 1" } }, function(rt, dir)
      H.clear_logs()
      H.write(dir .. "/scripts/broken.lua", "still = = broken")
      assert.is_nil(rt:reload("broken"))
      local l = H.find_log("broken:", "error")
      assert.truthy(l)
      assert.is_nil(l.msg:find("the running version stays", 1, true))
      assert.are.equal("failed", rt:scripts().broken.status)
      assert.matches("unexpected symbol", rt:scripts().broken.last_error)
    end)
  end)
end)

describe("lume's own keys", function()
  it("twin.report refuses the schema's keys and lume's reported ones, naming them", function()
    H.with_runtime({ config = TWIN }, function(rt)
      assert(rt:install("p", "function rep(t) return lume.twin.report(t) end"))
      for _, k in ipairs({ "sensors", "health", "outbox", "errors", "desired_versions" }) do
        local ok, err = rt:call("p", "rep", { [k] = 1 })
        assert.is_falsy(ok)
        assert.matches("'" .. k .. "' is reported by lume itself", err, 1, true)
      end
      assert.is_true(select(2, rt:call("p", "rep", { mine = 1 })))
    end)
  end)

  it("a script's reported entry says where its code came from", function()
    H.with_runtime({ config = TWIN, scripts = { loc = "lume.timer.every(100, function() end)" } },
      function(rt)
        rt:run(50)
        local e = reported(rt).scripts.loc
        assert.are.equal("local", e.origin)
        assert.matches("loc%.lua$", e.file)
        assert.are.equal(64, #e.sha256)
        desire(rt, { scripts = { loc = { version = "t1", source = "lume.timer.every(100, function() end)" } } })
        e = reported(rt).scripts.loc
        assert.are.equal("twin", e.origin)
        assert.are.equal("t1", e.running)
        assert.is_nil(e.file)
        desire(rt, { scripts = {} })   -- the bundle goes, and with it what ran
        assert.is_nil(reported(rt).scripts.loc)
      end)
  end)
end)
