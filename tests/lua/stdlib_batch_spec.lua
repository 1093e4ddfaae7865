-- busted spec for lume.batch (pure Lua; runs under plain lua5.4 + busted).

local batch = require "lume.batch"
local json = require "lume.json"

-- A batch whose flushes are recorded in `log` as {items, reason}.
local function recorder(opts)
  local log = {}
  opts.on_flush = function(items, reason) log[#log + 1] = { items = items, reason = reason } end
  return batch.new(opts), log
end

describe("lume.batch", function()
  it("flushes when max_count is reached", function()
    local b, log = recorder{ max_count = 3 }
    assert.are.equal(0, b:add("a"))
    assert.are.equal(0, b:add("b"))
    assert.are.equal(3, b:add("c"))
    assert.are.equal(1, #log)
    assert.are.same({ "a", "b", "c" }, log[1].items)
    assert.are.equal("count", log[1].reason)
    assert.are.equal(0, b:count())
    b:add("d")
    assert.are.equal(1, #b)
  end)

  it("never lets a batch exceed max_bytes, except a single oversized item", function()
    local b, log = recorder{ max_bytes = 10 }
    b:add("aaaa")          -- 4
    b:add("bbbb")          -- 8
    b:add("ccc")           -- 11 > 10: flush aaaa, bbbb first
    assert.are.equal(1, #log)
    assert.are.same({ "aaaa", "bbbb" }, log[1].items)
    assert.are.equal("bytes", log[1].reason)
    assert.are.equal(3, b:bytes())
    b:add("ddddddd")       -- 3 + 7 = 10: reached, flush
    assert.are.same({ "ccc", "ddddddd" }, log[2].items)
    b:add("x")
    b:add(string.rep("y", 25))  -- too big alone: flushes x, then itself
    assert.are.same({ "x" }, log[3].items)
    assert.are.same({ string.rep("y", 25) }, log[4].items)
    assert.are.equal(0, b:count())
    for _, f in ipairs(log) do
      local total = 0
      for _, item in ipairs(f.items) do total = total + #item end
      assert.is_true(total <= 10 or #f.items == 1)
    end
  end)

  it("estimates tables by their JSON length, and takes a size function", function()
    local item = { t = 1, v = 21.5 }
    assert.are.equal(#json.encode(item), batch.default_size(item))
    assert.are.equal(4, batch.default_size(true))
    assert.are.equal(3, batch.default_size(1.5))
    local b, log = recorder{ max_bytes = 100, size = function() return 40 end }
    b:add({}); b:add({})
    assert.are.equal(80, b:bytes())
    b:add({})
    assert.are.equal(1, #log)
    assert.are.equal(2, #log[1].items)
  end)

  it("flushes on tick once the oldest item reaches max_age_s", function()
    local b, log = recorder{ max_age_s = 5 }
    b:add(1, 100)
    b:add(2, 103)
    assert.are.equal(0, b:tick(104.9))
    assert.are.equal(4.5, b:age(104.5))
    assert.are.equal(2, b:tick(105))
    assert.are.same({ 1, 2 }, log[1].items)
    assert.are.equal("age", log[1].reason)
    assert.are.equal(0, b:tick(1000))   -- empty: nothing to do
    assert.is_nil(b:age(1000))
  end)

  it("flushes an overdue batch before adding to it", function()
    local b, log = recorder{ max_age_s = 5, max_count = 100 }
    b:add("old", 0)
    b:add("new", 7)   -- no tick in between: "old" is overdue
    assert.are.same({ "old" }, log[1].items)
    assert.are.equal(1, b:count())
    assert.are.equal(0, b:tick(11.9))  -- age counts from "new"
    assert.are.equal(1, b:tick(12))
  end)

  it("flushes on demand", function()
    local b, log = recorder{ max_count = 10 }
    assert.are.equal(0, b:flush())
    assert.are.equal(0, #log)
    b:add(1); b:add(2)
    assert.are.equal(2, b:flush())
    assert.are.equal("manual", log[1].reason)
  end)

  it("loses nothing when on_flush fails, and retries on the next flush", function()
    local fail, delivered = true, {}
    local b
    b = batch.new{
      max_count = 2,
      on_flush = function(items)
        if fail then
          b:add("during")           -- added while the flush is under way
          error("broker down")
        end
        for _, v in ipairs(items) do delivered[#delivered + 1] = v end
      end,
    }
    b:add("a")
    assert.has_error(function() b:add("b") end, "broker down")
    assert.are.same({ "a", "b", "during" }, { table.unpack(b.items, 1, b:count()) })
    fail = false
    assert.are.equal(3, b:flush())
    assert.are.same({ "a", "b", "during" }, delivered)
    assert.are.equal(0, b:count())
    assert.are.equal(0, b:bytes())
  end)

  it("passes an error object from on_flush through unchanged", function()
    local sentinel = {}
    local b = batch.new{ max_count = 1, on_flush = function() error(sentinel) end }
    local ok, err = pcall(b.add, b, "x")
    assert.is_false(ok)
    assert.are.equal(sentinel, err)
  end)

  it("checks its options and arguments", function()
    local f = function() end
    assert.has_error(function() batch.new{ max_count = 1 } end,
      "batch.new: on_flush must be a function, got nil")
    assert.has_error(function() batch.new{ on_flush = f } end,
      "batch.new: give at least one of max_count, max_bytes, max_age_s")
    assert.has_error(function() batch.new{ on_flush = f, max_size = 1 } end,
      'batch.new: unknown option "max_size" (expected one of: max_age_s, max_bytes, '
      .. "max_count, on_flush, size)")
    assert.has_error(function() batch.new{ on_flush = f, max_count = 0 } end,
      "batch.new: max_count must be a positive integer, got 0")
    assert.has_error(function() batch.new{ on_flush = f, max_age_s = -1 } end,
      "batch.new: max_age_s must be a positive finite number, got -1")
    assert.has_error(function() batch.new{ on_flush = f, max_age_s = 1 }:add("x") end,
      "batch:add: t is required when max_age_s is set")
    assert.has_error(function() batch.new{ on_flush = f, max_count = 2 }:add(nil) end,
      "batch:add: item must not be nil")
    assert.has_error(function()
      batch.new{ on_flush = f, max_count = 2, size = function() return -1 end }:add("x")
    end, "batch:add: size(item) must return a non-negative number, got -1")
    assert.has_error(function() batch.new{ on_flush = f, max_count = 2 }:add({ 0 / 0 }) end,
      "json.encode: cannot encode NaN at value[1]")
  end)

  describe("configure", function()
    it("changes the limits while items wait, and reports them", function()
      local b, log = recorder{ max_count = 10, max_age_s = 60 }
      b:add("a", 0); b:add("b", 1)
      assert.are.equal(0, b:configure({ max_count = 3 }))   -- no age limit any more
      assert.are.same({ max_count = 3 }, b:limits())
      b:add("c")                                            -- t no longer required
      assert.are.equal(1, #log)
      assert.are.same({ "a", "b", "c" }, log[1].items)
      assert.are.equal("count", log[1].reason)
    end)

    it("flushes at once when the new limits are already reached", function()
      local b, log = recorder{ max_count = 10 }
      for i = 1, 4 do b:add(i) end
      assert.are.equal(4, b:configure{ max_count = 3 })
      assert.are.equal("count", log[1].reason)
      b:add("xxxx"); b:add("yyyy")
      assert.are.equal(2, b:configure{ max_bytes = 8 })
      assert.are.equal("bytes", log[2].reason)
      b:configure{ max_age_s = 100 }
      b:add("z", 10)
      assert.are.equal(0, b:configure({ max_age_s = 5 }, 14))
      assert.are.equal(1, b:configure({ max_age_s = 5 }, 15))
      assert.are.equal("age", log[3].reason)
      assert.are.equal(0, b:configure{ max_count = 1 })     -- empty: nothing to flush
    end)

    it("refuses bad limits as new does, keeping the old ones", function()
      local b = recorder{ max_count = 5, max_age_s = 10 }
      assert.has_error(function() b:configure{ max_count = 0 } end,
        "batch:configure: max_count must be a positive integer, got 0")
      assert.has_error(function() b:configure{ max_age_s = 0 / 0 } end,
        "batch:configure: max_age_s must be a positive finite number, got nan")
      assert.has_error(function() b:configure{} end,
        "batch:configure: give at least one of max_count, max_bytes, max_age_s")
      assert.has_error(function() b:configure{ max_count = 2, on_flush = print } end,
        'batch:configure: unknown option "on_flush" (expected one of: max_age_s, max_bytes, '
        .. "max_count)")
      assert.has_error(function() b:configure({ max_count = 2 }, 0 / 0) end,
        "batch:configure: t must be a finite number (seconds), got nan")
      assert.are.same({ max_count = 5, max_age_s = 10 }, b:limits())
    end)

    it("keeps the items when the flush it causes fails", function()
      local fail = true
      local b = batch.new{ max_count = 10, on_flush = function() if fail then error("down") end end }
      b:add(1); b:add(2)
      assert.has_error(function() b:configure{ max_count = 2 } end, "down")
      assert.are.equal(2, b:count())
      assert.are.same({ max_count = 2 }, b:limits())
      fail = false
      assert.are.equal(2, b:flush())
    end)
  end)
end)
