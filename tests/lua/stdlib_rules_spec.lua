-- busted spec for lume.rules (pure Lua; runs under plain lua5.4 + busted).

local rules = require "lume.rules"
local window = require "lume.window"

-- Feed a threshold a sequence of {v, t} (or plain values) and collect the
-- events, with nil written as "-".
local function run(th, seq)
  local out = {}
  for i, s in ipairs(seq) do
    local v, t = s, nil
    if type(s) == "table" then v, t = s[1], s[2] end
    out[i] = th:update(v, t) or "-"
  end
  return out
end

describe("lume.rules", function()
  describe("threshold", function()
    it("raises above the level and clears only below the clear level", function()
      local th = rules.threshold{ above = 30, clear = 28 }
      assert.are.same(
        { "-", "-", "raised", "-", "-", "-", "-", "cleared", "-", "raised" },
        run(th, { 25, 30, 30.5, 31, 29, 28, 30, 27.9, 29.9, 35 }))
      assert.is_true(th:active())
    end)

    it("does not flap on noise inside the hysteresis band", function()
      local th = rules.threshold{ above = 30, clear = 28 }
      math.randomseed(7)
      local events = 0
      th:update(31)
      for _ = 1, 500 do
        if th:update(28 + math.random() * 2) then events = events + 1 end
      end
      assert.are.equal(0, events)
      assert.is_true(th:active())
    end)

    it("without clear, clears below the trigger level", function()
      local th = rules.threshold{ above = 30 }
      assert.are.same({ "raised", "-", "-", "cleared" }, run(th, { 31, 30, 30, 29.99 }))
    end)

    it("works downwards with below", function()
      local th = rules.threshold{ below = 5, clear = 8 }
      assert.are.same({ "-", "raised", "-", "-", "cleared", "-" },
        run(th, { 6, 4.9, 7, 8, 8.1, 6 }))
    end)

    it("with for_s, raises only after the condition held that long", function()
      local th = rules.threshold{ above = 30, clear = 28, for_s = 10 }
      assert.are.same(
        { "-", "-", "-", "raised", "-", "cleared" },
        run(th, { { 31, 0 }, { 32, 5 }, { 31, 9.9 }, { 33, 10 }, { 29, 11 }, { 20, 12 } }))
    end)

    it("with for_s, restarts the wait when the condition breaks", function()
      local th = rules.threshold{ above = 30, for_s = 10 }
      assert.are.same(
        { "-", "-", "-", "-", "-", "raised" },
        -- 30 is not above 30: the wait restarts at t=8
        run(th, { { 31, 0 }, { 31, 7 }, { 30, 7.5 }, { 31, 8 }, { 31, 17.9 }, { 31, 18 } }))
    end)

    it("with for_s = 0 raises at once", function()
      local th = rules.threshold{ above = 1, for_s = 0 }
      assert.are.equal("raised", th:update(2, 0))
    end)

    it("ignores NaN: no raise, no clear", function()
      local th = rules.threshold{ above = 30, clear = 28 }
      assert.is_nil(th:update(0 / 0))
      th:update(31)
      assert.is_nil(th:update(0 / 0))
      assert.is_true(th:active())
    end)

    it("resets", function()
      local th = rules.threshold{ above = 1 }
      th:update(2)
      th:reset()
      assert.is_false(th:active())
      assert.are.equal("raised", th:update(2))
    end)

    it("checks its options", function()
      assert.has_error(function() rules.threshold{ above = 30, below = 10 } end,
        "rules.threshold: give either above or below, not both (use two thresholds for a band)")
      assert.has_error(function() rules.threshold{} end,
        "rules.threshold: one of above or below is required")
      assert.has_error(function() rules.threshold{ above = 30, clear = 32 } end,
        "rules.threshold: clear (32) must not be greater than above (30)")
      assert.has_error(function() rules.threshold{ below = 5, clear = 4 } end,
        "rules.threshold: clear (4) must not be less than below (5)")
      assert.has_error(function() rules.threshold{ above = 0 / 0 } end,
        "rules.threshold: above must be a finite number, got nan")
      assert.has_error(function() rules.threshold{ above = 1, for_s = -1 } end,
        "rules.threshold: for_s must be a non-negative number of seconds, got -1")
      assert.has_error(function() rules.threshold{ abve = 30 } end,
        'rules.threshold: unknown option "abve" (expected one of: above, below, clear, for_s)')
      assert.has_error(function() rules.threshold(30) end,
        "rules.threshold: expected a table of options, got 30")
      local th = rules.threshold{ above = 1, for_s = 5 }
      assert.has_error(function() th:update(2) end,
        "threshold:update: t must be a finite number (seconds) when for_s is set, got nil")
      assert.has_error(function() th:update("2", 1) end,
        'threshold:update: value must be a number, got "2"')
    end)
  end)

  describe("rate_limit", function()
    it("allows a burst, then per_s on average", function()
      local rl = rules.rate_limit{ per_s = 2, burst = 3 }
      local got = {}
      for i = 1, 5 do got[i] = rl:allow(0) end
      assert.are.same({ true, true, true, false, false }, got)
      assert.is_false(rl:allow(0.4))   -- 0.8 tokens
      assert.is_true(rl:allow(0.5))    -- 1.0 token
      assert.is_false(rl:allow(0.5))
    end)

    it("allows calls exactly 1/per_s apart despite float time steps", function()
      local rl = rules.rate_limit{ per_s = 10 }
      local t, allowed = 0.0, 0
      for _ = 1, 1000 do
        if rl:allow(t) then allowed = allowed + 1 end
        t = t + 0.1
      end
      assert.are.equal(1000, allowed)
    end)

    it("over a long run allows no more than burst + per_s * elapsed", function()
      math.randomseed(99)
      local rl = rules.rate_limit{ per_s = 5, burst = 10 }
      local t, allowed = 0, 0
      for _ = 1, 20000 do
        t = t + math.random() * 0.02
        if rl:allow(t) then allowed = allowed + 1 end
      end
      assert.is_true(allowed <= 10 + 5 * t, allowed .. " allowed in " .. t .. " s")
      -- and the bucket is not starved: calls come ~100/s, far above 5/s
      assert.is_true(allowed >= 5 * t - 1, allowed .. " allowed in " .. t .. " s")
    end)

    it("does not refill when time goes backwards", function()
      local rl = rules.rate_limit{ per_s = 1 }
      assert.is_true(rl:allow(10))
      assert.is_false(rl:allow(5))
      assert.is_false(rl:allow(10.5))
      assert.is_true(rl:allow(11))
    end)

    it("takes a cost and reports what is left", function()
      local rl = rules.rate_limit{ per_s = 1, burst = 5 }
      assert.is_true(rl:allow(0, 4))
      assert.are.equal(1, rl:available(0))
      assert.is_false(rl:allow(0, 2))
      assert.has_error(function() rl:allow(0, 6) end,
        "rate_limit:allow: cost 6 exceeds burst 5 (it could never be allowed)")
    end)

    it("checks its options", function()
      assert.has_error(function() rules.rate_limit{ per_s = 0 } end,
        "rules.rate_limit: per_s must be a positive finite number, got 0")
      assert.has_error(function() rules.rate_limit{ per_s = 1, burst = 0.5 } end,
        "rules.rate_limit: burst must be a finite number >= 1, got 0.5")
      assert.has_error(function() rules.rate_limit{ per_s = 1 }:allow() end,
        "rate_limit:allow: t must be a finite number (seconds), got nil")
    end)
  end)

  describe("anomaly", function()
    it("scores against the window before adding the reading", function()
      local an = rules.anomaly{ window = 5, z = 2, min_samples = 5 }
      local vals = { 10, 12, 10, 12, 10 }
      for _, v in ipairs(vals) do
        local flagged, score = an:update(v)
        assert.is_false(flagged)
        assert.is_nil(score)        -- not enough samples yet
      end
      -- mean 10.8, population stddev sqrt(0.96)
      local flagged, score = an:update(13)
      local expect = (13 - 10.8) / math.sqrt(0.96)
      assert.is_true(math.abs(score - expect) < 1e-12, tostring(score))
      assert.is_true(flagged)        -- 2.245 > 2
      flagged, score = an:update(11)
      assert.is_false(flagged)
      assert.is_true(math.abs(score) < 1)
    end)

    it("flags a spike in noisy data and little else", function()
      math.randomseed(3)
      local an = rules.anomaly{ window = 50, z = 4 }
      local flagged_noise = 0
      for _ = 1, 1000 do
        -- uniform noise has |z| <= sqrt(3) < 4: never flagged
        if an:update(20 + math.random()) then flagged_noise = flagged_noise + 1 end
      end
      assert.are.equal(0, flagged_noise)
      local flagged, score = an:update(40)
      assert.is_true(flagged)
      assert.is_true(score > 4)
      flagged, score = an:update(0)
      assert.is_true(flagged)
      assert.is_true(score < -4)
    end)

    it("learns a lasting change of level", function()
      local an = rules.anomaly{ window = 10, z = 3 }
      for i = 1, 20 do an:update(10 + (i % 2) * 0.1) end
      local flags = 0
      for i = 1, 30 do
        if an:update(50 + (i % 2) * 0.1) then flags = flags + 1 end
      end
      assert.is_true(flags >= 1 and flags < 10, "flagged " .. flags .. " times")
      assert.is_false((an:update(50.05)))
    end)

    it("handles a constant window: infinite score, or min_stddev", function()
      local an = rules.anomaly{ window = 5 }
      for _ = 1, 5 do an:update(7) end
      local flagged, score = an:update(7)
      assert.is_false(flagged)
      assert.are.equal(0, score)
      flagged, score = an:update(7.5)
      assert.is_true(flagged)
      assert.are.equal(math.huge, score)

      local soft = rules.anomaly{ window = 5, min_stddev = 0.5 }
      for _ = 1, 5 do soft:update(7) end
      flagged, score = soft:update(8)
      assert.is_false(flagged)
      assert.are.equal(2, score)
    end)

    it("accepts a time window", function()
      local an = rules.anomaly{ window = window.time(10), z = 3, min_samples = 3 }
      for t = 0, 9 do an:update(t % 2, t) end
      assert.is_true((an:update(5, 10)))
      -- at t = 100 every earlier sample has expired: nothing to score against
      local flagged, score = an:update(5, 100)
      assert.is_false(flagged)
      assert.is_nil(score)
      assert.has_error(function() an:update(1) end,
        "anomaly:update: t must be a finite number (seconds), got nil")
    end)

    it("checks its options", function()
      assert.has_error(function() rules.anomaly{} end,
        "rules.anomaly: window must be an integer >= 2 or a lume.window, got nil")
      assert.has_error(function() rules.anomaly{ window = 5, min_samples = 6 } end,
        "rules.anomaly: min_samples (6) is larger than the window (5 values), "
        .. "so nothing would ever be scored")
      assert.has_error(function() rules.anomaly{ window = 5, z = -1 } end,
        "rules.anomaly: z must be a positive finite number, got -1")
      assert.has_error(function() rules.anomaly{ window = 5 }:update(0 / 0) end,
        "anomaly:update: value must be a finite number, got nan")
      -- default min_samples follows a small window
      local an = rules.anomaly{ window = 3 }
      an:update(1); an:update(2); an:update(3)
      local _, score = an:update(2)
      assert.are.equal(0, score)
    end)
  end)

  describe("debounce", function()
    it("changes only after the new value held for the hold time", function()
      local db = rules.debounce(2)
      local seq = {
        { true, 0 }, { true, 1 }, { true, 2 },     -- first value settles at 2
        { false, 3 }, { true, 3.5 }, { false, 4 }, -- bounce
        { false, 5 }, { false, 6 },                -- settles at 6
        { false, 7 },
      }
      local got = {}
      for i, s in ipairs(seq) do
        local changed, value = db:update(s[1], s[2])
        got[i] = changed and tostring(value) or "-"
      end
      assert.are.same({ "-", "-", "true", "-", "-", "-", "-", "false", "-" }, got)
      assert.is_false(db:value())
    end)

    it("restarts the hold when the candidate value changes", function()
      local db = rules.debounce(2)
      db:update("idle", 0)
      assert.is_true((db:update("idle", 2)))
      assert.is_false((db:update("run", 3)))
      assert.is_false((db:update("fault", 4)))  -- a new candidate: hold from 4
      assert.is_false((db:update("fault", 5.9)))
      local changed, value = db:update("fault", 6)
      assert.is_true(changed)
      assert.are.equal("fault", value)
    end)

    it("with 0 s passes every change at once", function()
      local db = rules.debounce(0)
      assert.are.same({ true, "a" }, { db:update("a", 0) })
      assert.are.same({ false, "a" }, { db:update("a", 0) })
      assert.are.same({ true, "b" }, { db:update("b", 0) })
    end)

    it("checks its arguments", function()
      assert.has_error(function() rules.debounce(-1) end,
        "rules.debounce: seconds must be a non-negative finite number, got -1")
      local db = rules.debounce(1)
      assert.has_error(function() db:update(nil, 1) end,
        "debounce:update: value must not be nil")
      assert.has_error(function() db:update(true) end,
        "debounce:update: t must be a finite number (seconds), got nil")
    end)
  end)

  describe("deadband", function()
    it("reports the first value and then only moves of at least delta", function()
      local db = rules.deadband(0.5)
      local got = {}
      for i, v in ipairs{ 20, 20.2, 20.49, 20.5, 20.1, 20.0, 19.99, 20.3 } do
        got[i] = db:update(v) or "-"
      end
      assert.are.same({ 20, "-", "-", 20.5, "-", 20.0, "-", "-" }, got)
      assert.are.equal(20.0, db:last())
    end)

    it("counts a move of exactly delta despite float rounding", function()
      local db = rules.deadband(0.1)
      assert.are.equal(0.2, db:update(0.2))
      assert.are.equal(0.3, db:update(0.3))   -- 0.3 - 0.2 = 0.09999999999999998
    end)

    it("never reports NaN and keeps its reference", function()
      local db = rules.deadband(1)
      assert.is_nil(db:update(0 / 0))
      assert.are.equal(5, db:update(5))
      assert.is_nil(db:update(0 / 0))
      assert.is_nil(db:update(5.5))
      assert.are.equal(6, db:update(6))
    end)

    it("with delta 0 reports every change, not repeats", function()
      local db = rules.deadband(0)
      assert.are.equal(1, db:update(1))
      assert.is_nil(db:update(1))
      assert.are.equal(1.0000001, db:update(1.0000001))
      db:reset()
      assert.are.equal(1.0000001, db:update(1.0000001))
    end)

    it("checks its arguments", function()
      assert.has_error(function() rules.deadband(-0.1) end,
        "rules.deadband: delta must be a non-negative finite number, got -0.1")
      assert.has_error(function() rules.deadband(1):update("x") end,
        'deadband:update: value must be a number, got "x"')
    end)
  end)
end)
