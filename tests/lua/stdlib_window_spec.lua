-- busted spec for lume.window (pure Lua; runs under plain lua5.4 + busted).
--
--   lua5.4 /usr/bin/busted --lpath='stdlib/?.lua;stdlib/?/init.lua' \
--       tests/lua/stdlib_window_spec.lua
--
-- The statistics are checked against a naive recomputation over the same
-- values, on pseudo-random data with a fixed seed (printed on failure).

local window = require "lume.window"

local SEED = 20240611

-- Naive statistics of an array.
local function naive(vals)
  local n = #vals
  if n == 0 then return { n = 0 } end
  local sum = 0
  for i = 1, n do sum = sum + vals[i] end
  local mean = sum / n
  local ss = 0
  for i = 1, n do ss = ss + (vals[i] - mean) ^ 2 end
  local mn, mx = math.huge, -math.huge
  for i = 1, n do
    if vals[i] < mn then mn = vals[i] end
    if vals[i] > mx then mx = vals[i] end
  end
  return { n = n, mean = mean, var = ss / n, min = mn, max = mx, last = vals[n] }
end

-- |a - b| small relative to `scale` (the typical magnitude of the data).
local function close(a, b, scale, tol)
  tol = tol or 1e-9
  return math.abs(a - b) <= tol * math.max(1, math.abs(scale))
end

local function check_against(w, vals, ctx)
  local ref = naive(vals)
  assert.are.equal(ref.n, w:count(), ctx .. ": count")
  assert.are.equal(ref.n, #w, ctx .. ": #w")
  if ref.n == 0 then
    assert.is_nil(w:mean(), ctx)
    return
  end
  local scale = math.max(math.abs(ref.max), math.abs(ref.min))
  assert.is_true(close(w:mean(), ref.mean, scale),
    string.format("%s: mean %.17g vs naive %.17g", ctx, w:mean(), ref.mean))
  assert.is_true(close(w:variance(), ref.var, scale * scale),
    string.format("%s: variance %.17g vs naive %.17g", ctx, w:variance(), ref.var))
  assert.is_true(close(w:stddev(), math.sqrt(ref.var), scale),
    string.format("%s: stddev", ctx))
  assert.are.equal(ref.min, w:min(), ctx .. ": min")
  assert.are.equal(ref.max, w:max(), ctx .. ": max")
  assert.are.equal(ref.last, (w:last()), ctx .. ": last")
end

describe("lume.window", function()
  before_each(function() math.randomseed(SEED) end)

  describe("constructors", function()
    it("reject a bad count size with a message naming the value", function()
      assert.has_error(function() window.count(-3) end,
        "window.count: size must be a positive integer, got -3")
      assert.has_error(function() window.count(0) end,
        "window.count: size must be a positive integer, got 0")
      assert.has_error(function() window.count(2.5) end,
        "window.count: size must be a positive integer, got 2.5")
      assert.has_error(function() window.count("3") end,
        'window.count: size must be a positive integer, got "3"')
      assert.has_error(function() window.count() end,
        "window.count: size must be a positive integer, got nil")
    end)

    it("accept an integral float size", function()
      assert.are.equal(0, window.count(4.0):count())
    end)

    it("reject a bad time span", function()
      assert.has_error(function() window.time(0) end,
        "window.time: seconds must be a positive finite number, got 0")
      assert.has_error(function() window.time(-1) end,
        "window.time: seconds must be a positive finite number, got -1")
      assert.has_error(function() window.time(0 / 0) end,
        "window.time: seconds must be a positive finite number, got nan")
      assert.has_error(function() window.time(math.huge) end,
        "window.time: seconds must be a positive finite number, got inf")
    end)
  end)

  describe("an empty window", function()
    for _, w in ipairs{ window.count(3), window.time(10) } do
      it("has no statistics (" .. tostring(w) .. ")", function()
        assert.are.equal(0, w:count())
        assert.is_nil(w:mean())
        assert.is_nil(w:variance())
        assert.is_nil(w:stddev())
        assert.is_nil(w:min())
        assert.is_nil(w:max())
        assert.is_nil(w:last())
        assert.are.same({}, (w:values()))
      end)
    end
  end)

  describe("push", function()
    it("rejects non-finite values", function()
      local w = window.count(3)
      assert.has_error(function() w:push(0 / 0) end,
        "window:push: value must be a finite number, got nan")
      assert.has_error(function() w:push(math.huge) end,
        "window:push: value must be a finite number, got inf")
      assert.has_error(function() w:push("1") end,
        'window:push: value must be a finite number, got "1"')
      assert.are.equal(0, w:count())
    end)

    it("needs a timestamp in a time window, and never an older one", function()
      local w = window.time(5)
      assert.has_error(function() w:push(1) end,
        "window:push: a time window needs a finite timestamp t (seconds), got nil")
      w:push(1, 10)
      assert.has_error(function() w:push(2, 9.5) end,
        "window:push: time went backwards (t=9.5 is before 10)")
      w:push(3, 10) -- equal timestamps are fine
      assert.are.equal(2, w:count())
    end)
  end)

  describe("count window", function()
    it("keeps the last n values, oldest first", function()
      local w = window.count(3)
      for i = 1, 5 do w:push(i) end
      assert.are.same({ 3, 4, 5 }, (w:values()))
      assert.are.equal(4, w:mean())
      assert.are.equal(3, w:min())
      assert.are.equal(5, w:max())
    end)

    it("reports population variance (divided by n)", function()
      local w = window.count(4)
      for _, v in ipairs{ 2, 4, 4, 6 } do w:push(v) end
      -- deviations -2, 0, 0, 2 -> sum of squares 8, / 4 = 2 (n - 1 would give 8/3)
      assert.are.equal(2, w:variance())
      assert.are.equal(math.sqrt(2), w:stddev())
    end)

    it("matches a naive recomputation on random data, at every step", function()
      for _, size in ipairs{ 1, 2, 7, 64 } do
        local w = window.count(size)
        local all = {}
        for i = 1, 1500 do
          local v
          if i % 3 == 0 then
            v = math.random(-5, 5)              -- integers: many ties
          else
            v = (math.random() - 0.5) * 200
          end
          all[#all + 1] = v
          w:push(v)
          local vals = {}
          for j = math.max(1, #all - size + 1), #all do vals[#vals + 1] = all[j] end
          check_against(w, vals, string.format("seed %d size %d step %d", SEED, size, i))
        end
      end
    end)

    it("finds min and max through monotonic runs and ties", function()
      local w = window.count(4)
      local seq = { 5, 4, 3, 2, 1, 1, 1, 2, 3, 4, 5, 5, 5, 0, 9, 9, 0 }
      local all = {}
      for i, v in ipairs(seq) do
        w:push(v)
        all[#all + 1] = v
        local vals = {}
        for j = math.max(1, #all - 3), #all do vals[#vals + 1] = all[j] end
        local ref = naive(vals)
        assert.are.equal(ref.min, w:min(), "step " .. i)
        assert.are.equal(ref.max, w:max(), "step " .. i)
      end
    end)

    it("stays accurate with a large offset (no catastrophic cancellation)", function()
      local w = window.count(100)
      local all = {}
      for i = 1, 20000 do
        local v = 1e9 + math.random() -- variance ~ 1/12 on top of 1e9
        all[#all + 1] = v
        w:push(v)
      end
      local vals = { table.unpack(all, #all - 99) }
      local ref = naive(vals)
      assert.is_true(math.abs(w:variance() - ref.var) <= 1e-6 * ref.var,
        string.format("variance %.17g vs naive %.17g", w:variance(), ref.var))
    end)

    it("recovers once a huge spike has left the window", function()
      local w = window.count(10)
      local all = {}
      local function push(v) all[#all + 1] = v; w:push(v) end
      for _ = 1, 25 do push(math.random()) end
      push(1e12)
      for step = 1, 30 do
        push(math.random())
        check_against(w, { table.unpack(all, #all - 9) }, "step " .. step)
      end
      -- the spike is gone: a tight comparison
      local ref = naive({ table.unpack(all, #all - 9) })
      assert.is_true(ref.max < 1)
      assert.is_true(math.abs(w:variance() - ref.var) <= 1e-12,
        string.format("variance %.17g vs naive %.17g", w:variance(), ref.var))
      assert.is_true(math.abs(w:mean() - ref.mean) <= 1e-12)
    end)

    it("gives exactly zero variance once the values are constant", function()
      local w = window.count(5)
      for _, v in ipairs{ 1.5, 7.25, -3.1, 9.9, 0.3 } do w:push(v) end
      for _ = 1, 5 do w:push(0.1) end
      assert.are.equal(0, w:variance())
      assert.are.equal(0.1, w:mean())
    end)

    it("has a rate only when given timestamps", function()
      local w = window.count(5)
      w:push(1); w:push(2)
      assert.is_nil(w:rate())
      local tw = window.count(5)
      for i = 0, 9 do tw:push(i, 100 + i * 0.5) end  -- 2 values per second
      assert.are.equal(2, tw:rate())
      local v, t = tw:last()
      assert.are.equal(9, v)
      assert.are.equal(104.5, t)
      local vals, times = tw:values()
      assert.are.same({ 5, 6, 7, 8, 9 }, vals)
      assert.are.same({ 102.5, 103, 103.5, 104, 104.5 }, times)
    end)

    it("clears", function()
      local w = window.count(3)
      for i = 1, 7 do w:push(i) end
      w:clear()
      assert.are.equal(0, w:count())
      assert.is_nil(w:max())
      w:push(42)
      assert.are.equal(42, w:min())
      assert.are.equal(42, w:mean())
    end)

    it("has no expire", function()
      assert.has_error(function() window.count(2):expire(1) end,
        "window:expire: only time windows expire (this is a count window)")
    end)
  end)

  describe("time window", function()
    it("holds the values of (now - seconds, now]", function()
      local w = window.time(10)
      w:push(1, 100)
      w:push(2, 105)
      w:push(3, 110)          -- 100 is exactly 10 s old: evicted
      assert.are.same({ 2, 3 }, (w:values()))
      w:push(4, 114.999)
      assert.are.same({ 2, 3, 4 }, (w:values()))
      w:push(5, 115)
      assert.are.same({ 3, 4, 5 }, (w:values()))
    end)

    it("matches a naive recomputation on random data, at every step", function()
      for _, span in ipairs{ 0.5, 3, 30 } do
        local w = window.time(span)
        local all, t, first = {}, 1000, 1
        for i = 1, 1500 do
          -- irregular gaps, including bursts with equal timestamps and gaps
          -- longer than the window
          local r = math.random()
          if r < 0.1 then
            t = t + 0
          elseif r < 0.97 then
            t = t + math.random() * span / 4
          else
            t = t + span * (1 + math.random())
          end
          local v = i % 4 == 0 and math.random(0, 3) or math.random() * 50
          all[#all + 1] = { v = v, t = t }
          w:push(v, t)
          while all[first].t <= t - span do first = first + 1 end
          local vals = {}
          for j = first, #all do vals[#vals + 1] = all[j].v end
          check_against(w, vals, string.format("seed %d span %s step %d", SEED, span, i))
          assert.are.equal(#vals / span, w:rate())
        end
      end
    end)

    it("expires when asked, and reports the rate over its whole span", function()
      local w = window.time(10)
      for i = 0, 9 do w:push(i, i) end
      assert.are.equal(1, w:rate())        -- 10 values in 10 s
      assert.are.equal(0.5, w:rate(14))    -- 0..4 expired at now = 14
      assert.are.same({ 5, 6, 7, 8, 9 }, (w:values()))
      w:expire(100)
      assert.are.equal(0, w:count())
      assert.is_nil(w:mean())
      assert.has_error(function() w:push(1, 50) end,
        "window:push: time went backwards (t=50 is before 100)")
    end)

    it("grows and shrinks its storage with the samples inside it", function()
      local w = window.time(1)
      for i = 1, 5000 do w:push(i, i / 10000) end   -- all inside 1 s
      assert.are.equal(5000, w:count())
      assert.are.equal(1, w:min())
      assert.are.equal(5000, w:max())
      w:push(-1, 10)                                  -- everything else expires
      assert.are.equal(1, w:count())
      assert.are.equal(-1, w:min())
      assert.are.equal(-1, w:max())
      assert.is_true(w.cap <= 16, "storage shrank to " .. w.cap .. " slots")
      local vals, times = w:values()
      assert.are.same({ -1 }, vals)
      assert.are.same({ 10 }, times)
    end)
  end)

  it("tells its windows apart from other tables", function()
    assert.is_true(window.is_window(window.count(1)))
    assert.is_false(window.is_window({}))
    assert.matches("window.count%(3%): 0 values", tostring(window.count(3)))
  end)
end)
