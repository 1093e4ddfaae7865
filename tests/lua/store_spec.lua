-- busted spec: the store as the runtime shows it (docs/store.md) — one
-- runtime per store, the `store` object in stats, the twin's `store`
-- section, a damaged outbox at start.
local H = require "helper"
local json = require "lume.json"

local function stats(rt) return json.decode(rt:stats()).store end
local function reported(rt) return json.decode(rt:reported() or "{}") end

describe("the store", function()
  it("is reported in stats and in the twin, healthy", function()
    H.with_runtime({}, function(rt)
      local s = stats(rt)
      assert.is_true(s.writable)
      assert.is_false(s.disk_full)
      assert.are.equal(0, s.corruptions)
      assert.are.equal(0, s.recoveries)
      assert.are.equal("file", s.files.outbox.mode)
      assert.are.equal("file", s.files.state.mode)
      assert.is_true(s.free_bytes > 0)
      local r = reported(rt).store
      assert.truthy(r)
      assert.is_true(r.writable)
      assert.are.equal(0, r.corruptions)
    end)
  end)

  it("belongs to one runtime at a time", function()
    local rt, dir = H.runtime({})
    assert(rt)
    local other, _, err = H.runtime({ store = dir .. "/var" })
    assert.is_nil(other)
    assert.matches("in use by another lume %(pid %d+", err)
    rt:close()
    local again = assert(H.runtime({ store = dir .. "/var" }))
    again:close()
    H.rmdir(dir)
  end)

  it("salvages a damaged outbox at start and says so", function()
    local dir = H.tmpdir()
    local store = dir .. "/var"
    local rt = assert(H.runtime({ store = store, scripts = {
      fill = 'for i = 1, 3000 do lume.publish("m", string.rep("x", 40) .. i) end' } }))
    rt:run(200)
    assert.are.equal(3000, rt:outbox().telemetry.depth)
    rt:close()
    -- garbage over a page in the middle
    local f = assert(io.open(store .. "/outbox.db", "r+b"))
    local size = f:seek("end")
    f:seek("set", (size // 4096 // 2) * 4096)
    f:write(string.rep("\xa5", 4096))
    f:close()
    rt = assert(H.runtime({ store = store }))
    local s = stats(rt)
    assert.are.equal(1, s.corruptions)
    assert.is_true(s.salvaged > 2500)
    -- rows: the 3000 messages and the one topic row they share (docs/outbox.md)
    assert.are.equal(3001, s.salvaged + s.lost)
    assert.matches("moved aside to .*outbox%.db%.corrupt%-%d+T%d+Z", s.last_event)
    -- every salvaged message is queued again (the topic row, in the first
    -- page, is far from the damage in the middle)
    assert.are.equal(s.salvaged - 1, rt:outbox().telemetry.depth)
    local r = reported(rt).store
    assert.are.equal(1, r.corruptions)
    assert.are.equal(s.salvaged, r.salvaged)
    rt:close()
    H.rmdir(dir)
  end)
end)
