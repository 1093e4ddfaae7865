-- save() / restore(data) of the stdlib's stateful objects: what lume.keep
-- hands to a script's next version. Pure Lua; the saved state goes through
-- lume.json as it does on a device.
local json = require "lume.json"
local rules = require "lume.rules"
local window = require "lume.window"
local batch = require "lume.batch"

-- save, through JSON and back, into a fresh object
local function carry(from, to)
  to:restore(json.decode(json.encode(from:save())))
  return to
end

describe("save and restore", function()
  it("threshold: a raised alarm stays raised, a hold in progress goes on", function()
    local a = rules.threshold{ above = 30, clear = 28, for_s = 5 }
    assert.is_nil(a:update(31, 100))                 -- the hold starts at 100
    local b = carry(a, rules.threshold{ above = 30, clear = 28, for_s = 5 })
    assert.is_nil(b:update(31, 104))
    assert.are.equal("raised", b:update(31, 105))   -- 5 s after 100, not after 104
    local c = carry(b, rules.threshold{ above = 32, clear = 29 }) -- new levels, state kept
    assert.is_true(c:active())
    assert.is_nil(c:update(31))                      -- no second "raised"
    assert.are.equal("cleared", c:update(28.5))      -- the new clear level applies
  end)

  it("rate_limit: tokens spent stay spent, cut to a smaller burst", function()
    local a = rules.rate_limit{ per_s = 1, burst = 3 }
    assert.is_true(a:allow(0)); assert.is_true(a:allow(0)); assert.is_true(a:allow(0))
    local b = carry(a, rules.rate_limit{ per_s = 1, burst = 3 })
    assert.is_false(b:allow(0))
    local c = carry(rules.rate_limit{ per_s = 1, burst = 5 }, rules.rate_limit{ per_s = 1, burst = 2 })
    assert.are.equal(2, c:available(0))
  end)

  it("windows: statistics after a restore equal a direct computation", function()
    math.randomseed(7)
    for _, size in ipairs{ 1, 2, 5, 50 } do
      for _, into in ipairs{ size, math.max(1, size // 2), size * 2 } do
        local a, direct = window.count(size), window.count(into)
        for i = 1, size * 3 do
          local v = math.random() * 100 - 50
          a:push(v, i); direct:push(v, i)
        end
        local b = carry(a, window.count(into))
        -- b holds the newest min(size, into) values; direct holds the newest `into`
        local n = math.min(size, into)
        assert.are.equal(n, b:count())
        local vals = direct:values()
        local sum, lo, hi = 0, math.huge, -math.huge
        for i = #vals - n + 1, #vals do
          sum = sum + vals[i]; lo = math.min(lo, vals[i]); hi = math.max(hi, vals[i])
        end
        assert.is_true(math.abs(b:mean() - sum / n) < 1e-9)
        assert.are.equal(lo, b:min())
        assert.are.equal(hi, b:max())
        assert.are.equal(3 * size, select(2, b:last()))
      end
    end
  end)

  it("a time window drops what expired, and keeps its clock", function()
    local a = window.time(10)
    for t = 1, 20 do a:push(t, t) end
    local b = carry(a, window.time(5))
    assert.are.same({ 16, 17, 18, 19, 20 }, (b:values()))
    assert.has_error(function() b:push(1, 19) end)   -- time does not go back
  end)

  it("anomaly: the window goes with it, so nothing is relearnt", function()
    local a = rules.anomaly{ window = 20, z = 3, min_samples = 10 }
    for i = 1, 20 do a:update(10 + (i % 2) * 0.1, i) end
    local b = carry(a, rules.anomaly{ window = 20, z = 3, min_samples = 10 })
    local flagged, score = b:update(50, 21)
    assert.is_true(flagged)
    assert.is_true(score > 3)
  end)

  it("debounce and deadband carry their reference", function()
    local d = rules.debounce(2)
    d:update(true, 0); d:update(true, 2)
    local d2 = carry(d, rules.debounce(2))
    assert.are.equal(true, d2:value())
    local db = rules.deadband(1)
    db:update(10)
    local db2 = carry(db, rules.deadband(1))
    assert.is_nil(db2:update(10.5))
    assert.are.equal(12, db2:update(12))
  end)

  it("batch: pending items go over once, and flush with the new limits", function()
    local out = {}
    local a = batch.new{ max_count = 10, on_flush = function() end }
    for i = 1, 4 do a:add({ n = i }) end
    local b = batch.new{ max_count = 5, on_flush = function(items)
      for _, x in ipairs(items) do out[#out + 1] = x.n end end }
    carry(a, b); carry(a, b)                         -- twice is once
    assert.are.equal(4, b:count())
    b:add({ n = 5 })
    assert.are.same({ 1, 2, 3, 4, 5 }, out)
  end)

  it("malformed saved state raises, naming the field", function()
    local t = rules.threshold{ above = 1 }
    assert.has_error(function() t:restore({ on = "yes" }) end,
      'threshold:restore: saved on must be a boolean, got "yes"')
    assert.has_error(function() window.count(3):restore({ values = { 1, "x" } }) end,
      'window:restore: saved value 2 must be a finite number, got "x"')
    assert.has_error(function() batch.new{ max_count = 1, on_flush = print }:restore(5) end)
  end)
end)
