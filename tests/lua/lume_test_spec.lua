-- lume.test (stdlib/lume/test.lua, bindings/sim.c): the rule test harness's
-- simulated clock — timers fire at their due times, in order, as the clock
-- passes them; lume.now() and lume.monotonic() read it; samples carry the
-- trace's t; runs repeat exactly — and what it captures (publishes, outputs,
-- reported, log), and the errors a test author gets for a bad trace.
local harness = require "lume.test"
local H = require "helper"

local function ticker(period_ms)
  return ([[
lume.timer.every(%d, function(now)
  lume.publish("tick", { now = now, lnow = lume.now(), mono = lume.monotonic() })
end)
lume.timer.after(2500, function(now) lume.publish("once", now) end)
lume.on_sample("temperature", function(v, t) lume.publish("seen", { v = v, t = t }) end)
]]):format(period_ms)
end

describe("lume.test", function()
  it("keeps a wall-clock sample time exact: now, and the handler's t, equal the trace's t", function()
    -- times like lume record's (seconds since 1970, µs digits): a plain
    -- ns / 1e9 conversion came back one step low for some of them
    local h <close> = harness.new{ source = ticker(1000), name = "exact", start = 1796053800 }
    math.randomseed(7)
    local t = 1796053800.0
    for i = 1, 500 do
      t = t + math.random(1, 2000000) / 1e6
      h:sample("temperature", i, t)
      assert.equal(t, h:now(), ("now after sample %d at %.6f"):format(i, t))
    end
    local seen = h:published("seen")
    assert.equal(500, #seen)
    assert.equal(t, seen[#seen].value.t)
  end)

  it("fires timers at their due times as the clock advances, never before", function()
    local h <close> = harness.new{ source = ticker(1000), name = "tick", start = 100 }
    assert.equal(100, h:now())
    assert.equal(0, h:advance(0.999))
    assert.same({}, h:published())
    assert.equal(10, h:advance(9.001) - 1)            -- 10 ticks and the one-shot
    local ticks = h:published("tick")
    assert.equal(10, #ticks)
    for i, e in ipairs(ticks) do
      assert.equal(100 + i, e.t)                        -- each at its due time
      assert.same({ now = 100 + i, lnow = 100 + i, mono = i }, e.value)
    end
    local once = h:published("once")
    assert.equal(1, #once)
    assert.equal(102.5, once[1].value)
    assert.equal(110, h:now())
  end)

  it("interleaves timers and samples in time order", function()
    local h <close> = harness.new{ source = ticker(1000), name = "tick" }
    h:feed(harness.generate{ sensor = "temperature", from = 0.5, to = 3.5, every = 1, value = 20 })
    local order = {}
    for _, e in ipairs(h:published()) do order[#order + 1] = ("%s@%g"):format(e.route, e.t) end
    -- a timer due at a sample's t fires before the sample is handled
    assert.same({ "seen@0.5", "tick@1", "seen@1.5", "tick@2", "once@2.5", "seen@2.5",
                  "tick@3", "seen@3.5" }, order)
    assert.equal(1.5, h:published("seen")[2].value.t)  -- the handler's t is the trace's
  end)

  it("gives the same result on every run (a minute of 10 ms timers and 100 Hz samples)", function()
    local function run()
      local h <close> = harness.new{ source = [[
local n, sum = 0, 0
lume.on_sample("vibration", function(v, t) n = n + 1; sum = sum + v end)
lume.timer.every(10, function(now) if n % 97 == 0 then lume.publish("x", { n = n, now = now }) end end)
]], name = "d" }
      h:feed(harness.generate{ sensor = "vibration", to = 60, rate = 100,
        value = function(t, i) return (i * 7919) % 101 end })
      local out = {}
      for _, e in ipairs(h:published()) do out[#out + 1] = { t = e.t, value = e.value } end
      return out
    end
    local a, b = run(), run()
    assert.is_true(#a > 10)
    assert.same(a, b)
  end)

  it("captures outputs, reported properties and the log", function()
    local dir = H.tmpdir()
    H.write(dir .. "/b.lua", ([[return {
      sensors = { { name = "temperature", driver = "sim.temperature" } },
      outputs = { fan = { driver = "file", failsafe = 0, params = { path = %q } } } }]]):format(dir .. "/fan"))
    local h <close> = harness.new{ board = dir .. "/b.lua", name = "fan", source = [[
lume.on_sample("temperature", function(v)
  lume.output("fan"):set(v > 30 and 1 or 0)
  lume.twin.report({ fan = v > 30 })
  if v > 40 then lume.log.warn("too hot: %.1f", v) end
end)]] }
    h:feed({ { t = 1, sensor = "temperature", value = 25 }, { t = 2, sensor = "temperature", value = 35 },
             { t = 3, sensor = "temperature", value = 45 } })
    local sets = h:outputs("fan")
    assert.same({ 0, 1, 1 }, { sets[1].value, sets[2].value, sets[3].value })
    assert.same({ 1, 2, 3 }, { sets[1].t, sets[2].t, sets[3].t })
    assert.equal(true, h:reported().fan)
    local l = h:logs("too hot")
    assert.equal(1, #l)
    assert.equal("warn", l[1].level)
    assert.equal(3, l[1].t)
    h:close()
    H.rmdir(dir)
  end)

  it("reads CSV and JSON-lines traces, and names the line of a bad one", function()
    local dir = H.tmpdir()
    H.write(dir .. "/t.csv", "t,sensor,value\n# a comment\n0.5,temperature,21.5\n\n1,vibration,0.02\n")
    H.write(dir .. "/t.jsonl", '{"t":0.5,"sensor":"temperature","value":21.5}\n{"t":1,"sensor":"vibration","value":0.02}\n')
    local want = { { t = 0.5, sensor = "temperature", value = 21.5 }, { t = 1, sensor = "vibration", value = 0.02 } }
    assert.same(want, harness.read_trace(dir .. "/t.csv"))
    assert.same(want, harness.read_trace(dir .. "/t.jsonl"))
    H.write(dir .. "/bad.csv", "t,sensor,value\n0.5,temperature,warm\n")
    local ok, err = pcall(harness.read_trace, dir .. "/bad.csv")
    assert.is_false(ok)
    assert.matches("bad.csv:2: value must be a number", err, 1, true)
    H.rmdir(dir)
  end)

  it("refuses a sensor the board does not have, and time going back", function()
    local h <close> = harness.new{ source = ticker(1000), name = "tick" }
    local ok, err = pcall(h.sample, h, "pressure", 1, 1)
    assert.is_false(ok)
    assert.matches("no sensor named 'pressure' on board sim (sensors: temperature", err, 1, true)
    h:advance(5)
    ok, err = pcall(h.feed, h, { { t = 4, sensor = "temperature", value = 1 } })
    assert.is_false(ok)
    assert.matches("before now (5.000)", err, 1, true)
  end)

  it("reports a script that does not load, with its line", function()
    local ok, err = pcall(harness.new, { source = "lume.on_sample('temperature', function() end)\nx = = 1", name = "broken" })
    assert.is_false(ok)
    assert.matches("broken", err, 1, true)
    assert.matches(":2:", err, 1, true)
  end)

  it("docs/testing-rules.md shows tests/lua/rules_harness_spec.lua as it is", function()
    local doc = assert(io.open(H.ROOT .. "/docs/testing-rules.md")):read("a")
    local spec = assert(io.open(H.ROOT .. "/tests/lua/rules_harness_spec.lua")):read("a")
    local block = doc:match("<!%-%- fragment: a busted spec[^\n]*\n```lua\n(.-)```\n")
    assert.is_not_nil(block, "the spec's block in docs/testing-rules.md")
    assert.equal(spec, block)
  end)
end)
