-- Outputs from scripts through a real runtime: the fail-safe value is
-- written on each kind of stop (a failed new version, unload, error storm,
-- budget kill, close), one script owns an output at a time, range and rate
-- limits. The outputs are the built-in `file` driver: the spec reads back
-- what the device would see.
local H = require "helper"
local json = require "lume.json"

local function board(dir)
  H.write(dir .. "/out.lua", ([[return { sensors = {
      { name = "vib", driver = "sim.vibration", rate = 100, min_rate = 1, max_rate = 1000 } },
    outputs = {
      pump = { driver = "file", failsafe = 0, min = 0, max = 10, params = { path = %q } },
      valve = { driver = "file", failsafe = 1, max_rate_hz = 1, params = { path = %q } },
    } }]]):format(dir .. "/pump", dir .. "/valve"))
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local v = tonumber(f:read("l"))
  f:close()
  return v
end

-- run the loop until path reads v (writes happen on the output's thread)
local function settles(rt, path, v)
  for _ = 1, 50 do
    if read(path) == v then return true end
    rt:run(20)
  end
  return read(path) == v
end

local function with_outputs(config, fn)
  local dir = H.tmpdir()
  board(dir)
  local rt, sdir, err = H.runtime({ board = "out", boards_dir = dir, config = config })
  assert(rt, err)
  local ok, e = xpcall(fn, debug.traceback, rt, dir)
  rt:close()
  H.rmdir(sdir)
  H.rmdir(dir)
  if not ok then error(e, 0) end
end

local drive = [[
  local pump = assert(lume.output("pump"))
  assert(pump:set(7))
  function get() return pump:get() end
  lume.on_sample("vib", function() end)
]]

describe("outputs", function()
  it("start at their fail-safe value; a script drives one; get returns the last set", function()
    with_outputs({}, function(rt, dir)
      assert.is_true(settles(rt, dir .. "/pump", 0))
      assert.is_true(settles(rt, dir .. "/valve", 1))
      assert(rt:install("a", drive))
      assert.is_true(settles(rt, dir .. "/pump", 7))
      assert.are.equal(7, select(2, rt:call("a", "get")))
      local st = json.decode(rt:stats()).outputs.pump
      assert.are.equal("a", st.owner)
      assert.are.equal(1, st.sets)
      assert.are.equal(0, st.write_errors)
    end)
  end)

  it("one script owns an output; another's claim is refused naming the owner", function()
    with_outputs({}, function(rt, dir)
      assert(rt:install("a", drive))
      assert(rt:install("b", [[
        function claim() return lume.output("pump") end
        lume.on_sample("vib", function() end)]]))
      local _, o, err = rt:call("b", "claim")
      assert.is_nil(o)
      assert.are.equal("output pump is driven by script a", err)
      assert.is_true(settles(rt, dir .. "/pump", 7))
    end)
  end)

  it("refuses values outside [min, max] and sets faster than max_rate_hz", function()
    with_outputs({}, function(rt)
      assert(rt:install("a", [[
        function set(name, v) return lume.output(name):set(v) end
        lume.on_sample("vib", function() end)]]))
      local _, ok, err = rt:call("a", "set", "pump", 11)
      assert.is_nil(ok)
      assert.are.equal("output pump: 11 is outside [0, 10]", err)
      assert.is_true(select(2, rt:call("a", "set", "valve", 0)))
      _, ok, err = rt:call("a", "set", "valve", 1)
      assert.is_nil(ok)
      assert.are.equal("output valve: rate limited (max_rate_hz = 1)", err)
      assert.are.equal(1, json.decode(rt:stats()).outputs.valve.rate_limited)
    end)
  end)

  it("a new version that fails is rolled back: fail-safe; the old version drives it again", function()
    with_outputs({}, function(rt, dir)
      assert(rt:install("a", drive))
      assert.is_true(settles(rt, dir .. "/pump", 7))
      local ok = rt:install("a", [[assert(lume.output("pump"):set(9)); error("bad version")]])
      assert.is_nil(ok)
      assert.is_true(settles(rt, dir .. "/pump", 0))
      assert.are.equal("running", rt:scripts().a.status)
      assert.are.equal(1, json.decode(rt:stats()).outputs.pump.failsafes)
      assert(rt:install("a", drive)) -- a good version: drives it again
      assert.is_true(settles(rt, dir .. "/pump", 7))
    end)
  end)

  it("unloading the script writes the fail-safe value", function()
    with_outputs({}, function(rt, dir)
      assert(rt:install("a", drive))
      assert.is_true(settles(rt, dir .. "/pump", 7))
      assert.is_true(rt:unload("a"))
      assert.is_true(settles(rt, dir .. "/pump", 0))
    end)
  end)

  it("a script stopped by an error storm fails safe", function()
    with_outputs({ sandbox = { max_errors_per_s = 5 } }, function(rt, dir)
      assert(rt:install("a", [[
        local pump = assert(lume.output("pump"))
        lume.on_sample("vib", function() pump:set(5); error("broken sensor logic") end)]]))
      rt:run(300)
      assert.are.equal("stopped", rt:scripts().a.status)
      assert.is_true(settles(rt, dir .. "/pump", 0))
      local st = json.decode(rt:stats()).outputs.pump
      assert.are.equal(1, st.failsafes)
      assert.are.equal("", st.owner)
    end)
  end)

  it("a handler killed over its CPU budget fails safe", function()
    with_outputs({ sandbox = { cpu_budget_ms = 20 } }, function(rt, dir)
      assert(rt:install("a", [[
        local pump = assert(lume.output("pump"))
        local n = 0
        lume.on_sample("vib", function()
          n = n + 1
          if n == 1 then pump:set(5) elseif n == 50 then while true do end end
        end)]]))
      assert.is_true(settles(rt, dir .. "/pump", 5))
      assert.is_true(settles(rt, dir .. "/pump", 0))
      rt:run(100)
      local st = json.decode(rt:stats())
      assert.is_true(st.scripts.a.budget_overruns >= 1)
      assert.are.equal("", st.outputs.pump.owner)
      assert.are.equal(0, read(dir .. "/pump"))
    end)
  end)

  it("closing the runtime writes every fail-safe value", function()
    local dir = H.tmpdir()
    board(dir)
    local rt, sdir = H.runtime({ board = "out", boards_dir = dir })
    assert(rt:install("a", drive .. [[
      assert(lume.output("valve"):set(0))]]))
    assert.is_true(settles(rt, dir .. "/pump", 7))
    assert.is_true(settles(rt, dir .. "/valve", 0))
    rt:close()
    assert.are.equal(0, read(dir .. "/pump"))
    assert.are.equal(1, read(dir .. "/valve"))
    H.rmdir(sdir)
    H.rmdir(dir)
  end)

  it("a board output without a fail-safe, or with an unknown driver, is refused", function()
    local dir = H.tmpdir()
    H.write(dir .. "/b1.lua", [[return { sensors = { { name = "t", driver = "sim.temperature" } },
      outputs = { pump = { driver = "file", params = { path = "/dev/null" } } } }]])
    H.write(dir .. "/b2.lua", [[return { sensors = { { name = "t", driver = "sim.temperature" } },
      outputs = { pump = { driver = "relay", failsafe = 0 } } }]])
    H.write(dir .. "/b3.lua", [[return { sensors = { { name = "t", driver = "sim.temperature" } },
      outputs = { pump = { driver = "file", failsafe = 0, colour = "red", params = { path = "/dev/null" } } } }]])
    local rt, _, err = H.runtime({ board = "b1", boards_dir = dir })
    assert.is_nil(rt)
    assert.matches("output 'pump': failsafe is required", err)
    rt, _, err = H.runtime({ board = "b2", boards_dir = dir })
    assert.matches("output 'pump': unknown driver 'relay' %(known: file, .*modbus.coil", err)
    rt, _, err = H.runtime({ board = "b3", boards_dir = dir })
    assert.matches("output 'pump': unknown field 'colour'", err)
    H.rmdir(dir)
  end)
end)
