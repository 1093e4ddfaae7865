-- busted spec for lume.window's rate of change, percentiles, EWMA and
-- sketch: property-style, each against a direct computation on random
-- series of many lengths (fixed seeds, printed in the messages).
--
--   lua5.4 /usr/bin/busted --lpath='stdlib/?.lua' tests/lua/stdlib_window_stats_spec.lua

local window = require "lume.window"

-- A random series of n values: one of a few shapes, so that percentiles
-- see ties, spikes, negatives and wide ranges.
local function series(n, shape)
  local v = {}
  for i = 1, n do
    if shape == 1 then v[i] = math.random() * 100 - 50
    elseif shape == 2 then v[i] = math.random(0, 5)                   -- ties
    elseif shape == 3 then v[i] = math.exp(math.random() * 20 - 5)    -- 1e-2 .. 3e6
    else v[i] = 20 + math.sin(i / 7) + (math.random() < 0.05 and 1e3 or 0) end
  end
  return v
end

local function sorted_copy(v, lo, hi)
  local s = {}
  for i = lo, hi do s[#s + 1] = v[i] end
  table.sort(s)
  return s
end

-- numpy's default percentile (linear between closest ranks), written out
local function direct_percentile(s, p)
  local n = #s
  local h = (n - 1) * p / 100
  local lo = math.floor(h)
  if lo + 1 >= n then return s[n] end
  return s[lo + 1] + (h - lo) * (s[lo + 2] - s[lo + 1])
end

local function direct_slope(ts, vs)
  local n, st, sv = #ts, 0, 0
  for i = 1, n do st, sv = st + ts[i], sv + vs[i] end
  local tm, vm = st / n, sv / n
  local a, b = 0, 0
  for i = 1, n do a, b = a + (ts[i] - tm) * (vs[i] - vm), b + (ts[i] - tm) ^ 2 end
  return a / b
end

local PS = { 0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100 }

describe("lume.window statistics", function()
  it("percentiles of a count window are exact, at every step, on random series", function()
    for seed = 1, 12 do
      math.randomseed(seed)
      local size = ({ 1, 2, 3, 7, 50, 128 })[seed % 6 + 1]
      local v = series(math.random(1, 400), seed % 4 + 1)
      local w = window.count(size)
      for i = 1, #v do
        w:push(v[i])
        if i % 7 == 0 or i == #v then
          local s = sorted_copy(v, math.max(1, i - size + 1), i)
          for _, p in ipairs(PS) do
            assert.are.equal(direct_percentile(s, p), w:percentile(p),
              ("seed %d size %d step %d p %s"):format(seed, size, i, p))
          end
          local a, b, c = w:percentile(10, 50, 90)
          assert.are.same({ direct_percentile(s, 10), direct_percentile(s, 50),
                            direct_percentile(s, 90) }, { a, b, c })
        end
      end
    end
  end)

  it("percentiles of a time window are those of its values", function()
    math.randomseed(5)
    local w, t, kept = window.time(2.5), 0, {}
    for _ = 1, 300 do
      t = t + math.random() * 0.2
      local x = math.random() * 10
      w:push(x, t)
      kept[#kept + 1] = { t = t, v = x }
    end
    local s = {}
    for _, e in ipairs(kept) do if e.t > t - 2.5 then s[#s + 1] = e.v end end
    table.sort(s)
    for _, p in ipairs(PS) do assert.are.equal(direct_percentile(s, p), w:percentile(p)) end
  end)

  it("slope is the least-squares slope of the window, and ends is the two-point one", function()
    for seed = 1, 20 do
      math.randomseed(seed)
      local size = math.random(2, 60)
      local w, t, ts, vs = window.count(size), 1e9, {}, {}
      local rate = math.random() * 4 - 2
      for i = 1, math.random(2, 200) do
        t = t + 0.01 + math.random() * 0.1         -- irregular times
        local x = rate * (t - 1e9) + math.random() - 0.5
        w:push(x, t)
        ts[i], vs[i] = t, x
      end
      local n = #ts
      local lo = math.max(1, n - size + 1)
      local wt, wv = {}, {}
      for i = lo, n do wt[#wt + 1], wv[#wv + 1] = ts[i], vs[i] end
      local want = direct_slope(wt, wv)
      assert.is_true(math.abs(w:slope() - want) <= 1e-6 * math.max(1, math.abs(want)),
        ("seed %d: slope %.17g vs %.17g"):format(seed, w:slope(), want))
      assert.are.near((wv[#wv] - wv[1]) / (wt[#wt] - wt[1]), w:slope("ends"), 1e-9)
    end
    local w = window.count(3)
    assert.is_nil(w:slope())
    w:push(1)
    w:push(2)
    assert.is_nil(w:slope())                        -- no timestamps
    assert.has_error(function() w:slope("mid") end,
      'window:slope: how must be "lsq" or "ends", got "mid"')
  end)

  it("min and max asked for the first time mid-stream match the values", function()
    for seed = 1, 10 do
      math.randomseed(seed)
      local w = window.count(math.random(1, 40))
      local v = series(150, seed % 4 + 1)
      local start = math.random(1, 150)
      for i = 1, #v do
        w:push(v[i])
        if i >= start then
          local s = sorted_copy(v, math.max(1, i - w.size + 1), i)
          assert.are.equal(s[1], w:min(), ("seed %d step %d"):format(seed, i))
          assert.are.equal(s[#s], w:max(), ("seed %d step %d"):format(seed, i))
        end
      end
    end
  end)

  it("ewma follows the direct formula, per reading and with half-lives on irregular times",
     function()
    for seed = 1, 10 do
      math.randomseed(seed)
      local alpha = math.random() * 0.9 + 0.05
      local e, h = window.ewma{ alpha = alpha }, window.ewma{ half_life_s = 3 }
      local m, var, hm, hvar, t, last_t = nil, 0, nil, 0, 0, nil
      for i = 1, math.random(1, 300) do
        t = t + math.random() * 2 * (i % 10 == 0 and 10 or 1)
        local x = math.random() * 100
        e:push(x)
        h:push(x, t)
        if not m then m, hm = x, x
        else
          local d = x - m
          m = m + alpha * d
          var = (1 - alpha) * (var + alpha * d * d)
          local a = 1 - 0.5 ^ ((t - last_t) / 3)
          local hd = x - hm
          hm = hm + a * hd
          hvar = (1 - a) * (hvar + a * hd * hd)
        end
        last_t = t
        assert.are.near(m, e:mean(), 1e-9 * 100)
        assert.are.near(var, e:variance(), 1e-7)
        assert.are.near(hm, h:mean(), 1e-9 * 100)
        assert.are.near(hvar, h:variance(), 1e-7)
      end
    end
    local h = window.ewma{ half_life_s = 10 }
    h:push(0, 0)
    assert.are.equal(5, h:push(10, 10))              -- one half-life: half the weight
    assert.are.equal(5, h:push(1000, 10))            -- no time passed: no weight
    assert.has_error(function() h:push(1, 9) end, "ewma:push: time went backwards (t=9 is before 10)")
    assert.has_error(function() window.ewma{ alpha = 0 } end,
      "window.ewma: alpha must be a positive finite number <= 1, got 0")
    assert.has_error(function() window.ewma{ alpha = 0.5, half_life_s = 1 } end,
      "window.ewma: give exactly one of alpha or half_life_s")
    assert.has_error(function() window.ewma{ alpah = 0.5 } end)
  end)

  it("sketch percentiles are within the documented relative error of the exact order statistic",
     function()
    for seed = 1, 16 do
      math.randomseed(seed)
      local acc = ({ 0.01, 0.02, 0.05, 0.001 })[seed % 4 + 1]
      local sk = window.sketch{ accuracy = acc }
      local v = series(math.random(1, 1500), seed % 4 + 1)
      for i = 1, #v do sk:push(v[i]) end
      local s = sorted_copy(v, 1, #v)
      for _, p in ipairs(PS) do
        local exact = s[math.floor(p / 100 * (#s - 1)) + 1]
        local got = sk:percentile(p)
        assert.is_true(math.abs(got - exact) <= acc * math.abs(exact) + 1e-9,
          ("seed %d n %d accuracy %s p %s: %.17g vs exact %.17g"):format(
            seed, #v, acc, p, got, exact))
      end
      assert.are.equal(#v, sk:count())
      assert.are.equal(s[1], sk:min())
      assert.are.equal(s[#s], sk:max())
      -- bounded memory: one bucket per distinct log-bucket, never more than max_bins
      assert.is_true(sk:bins() <= 2 * 2048 + 1)
      -- save/restore gives the same answers
      local again = window.sketch{ accuracy = acc }
      again:restore(require("lume.json").decode(require("lume.json").encode(sk:save())))
      for _, p in ipairs(PS) do assert.are.equal(sk:percentile(p), again:percentile(p)) end
    end
  end)

  it("sketch memory stays bounded: 50,000 distinct values in a few hundred buckets", function()
    local sk = window.sketch{ accuracy = 0.01 }
    for i = 1, 50000 do sk:push(0.1 + (i % 49999) * 0.002) end
    assert.is_true(sk:bins() < 400, "bins: " .. sk:bins())
    local small = window.sketch{ accuracy = 0.01, max_bins = 10 }
    for i = 1, 1000 do small:push(i) end
    assert.are.equal(10, small:bins())                -- the lowest merged
    assert.are.near(990, small:percentile(99), 990 * 0.01)   -- the top still within bound
  end)

  it("save and restore keep ewma state", function()
    local e = window.ewma{ half_life_s = 5 }
    e:push(1, 0); e:push(3, 2)
    local f = window.ewma{ half_life_s = 5 }
    f:restore(e:save())
    assert.are.equal(e:push(7, 4), f:push(7, 4))
    assert.has_error(function() f:restore({ n = -1 }) end)
  end)
end)
