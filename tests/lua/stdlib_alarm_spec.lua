-- busted spec for rules.alarm (the acknowledged alarm's state machine) and
-- rules.anomaly{method = "ewma"}.
--
--   lua5.4 /usr/bin/busted --lpath='stdlib/?.lua' tests/lua/stdlib_alarm_spec.lua

local rules = require "lume.rules"
local json = require "lume.json"

local function events(list, n)
  local out = {}
  for i = 1, n do
    local e = list[i]
    out[i] = e and (e.event .. ">" .. e.state .. "#" .. e.id) or "-"
  end
  return table.concat(out, " ")
end

describe("rules.alarm", function()
  it("walks normal -> raised -> acknowledged -> normal, with ids", function()
    local a = rules.alarm{ name = "hot", above = 30, clear = 28 }
    assert.are.equal("normal", a:state())
    local evs = { a:update(25, 1), a:update(31, 2), a:update(32, 3) }
    assert.are.equal("- raised>raised#1 -", events(evs, 3))
    local ack = assert(a:ack(1, 4, "method"))
    assert.are.same({ alarm = "hot", event = "acknowledged", state = "acknowledged", id = 1,
                      t = 4, by = "method" }, ack)
    assert.is_true(a:active())
    local clr = a:update(27, 5)
    assert.are.equal("cleared", clr.event)
    assert.are.equal("normal", clr.state)
    assert.are.equal(27, clr.value)
    assert.are.same({ state = "normal", id = 1, since = 5, raised_at = 2, acked_at = 4,
                      acked_by = "method" }, a:report())
  end)

  it("an unacknowledged alarm that clears waits for its ack; raised again, it needs a new one",
     function()
    local a = rules.alarm{ name = "hot", above = 30, clear = 28 }
    a:update(31, 1)
    assert.are.equal("cleared", a:update(20, 2).state)   -- cleared, not acknowledged
    assert.is_false(a:active())
    local again = a:update(31, 3)
    assert.are.equal("raised", again.event)
    assert.are.equal(2, again.id)                          -- a new raise, a new id
    local ev, err = a:ack(1, 4)                            -- the old raise's ack
    assert.is_nil(ev)
    assert.are.equal("alarm hot: ack for raise 1 is stale: the current raise is 2", err)
    assert.are.equal("raised", a:state())
    ev, err = a:ack(3, 4)
    assert.is_nil(ev)
    assert.matches("for a raise not made yet", err)
    a:update(20, 5)
    assert.are.equal("cleared", a:state())
    local ok = assert(a:ack(2, 6, "desired"))              -- cleared + ack -> normal
    assert.are.equal("acknowledged", ok.event)
    assert.are.equal("normal", ok.state)
  end)

  it("refuses an ack while normal, a repeated ack, and an id that is not an integer", function()
    local a = rules.alarm{ name = "hot", above = 30 }
    local ev, err = a:ack(1, 1)
    assert.is_nil(ev)
    assert.are.equal("alarm hot is not raised (raise 0 was never made)", err)
    a:update(31, 2)
    assert(a:ack(1, 3))
    ev, err = a:ack(1, 4)
    assert.is_nil(ev)
    assert.are.equal("alarm hot: raise 1 is already acknowledged", err)
    for _, bad in ipairs{ "1", 1.5, {}, true } do
      ev, err = a:ack(bad, 5)
      assert.is_nil(ev)
      assert.matches("an ack needs the raise id %(an integer%)", err)
    end
    assert.are.equal("acknowledged", a:state())
    a:update(20, 6)
    ev, err = a:ack(1, 7)
    assert.matches("already acknowledged and cleared", err)
  end)

  it("holds for for_s before raising, and set() drives an alarm without a threshold", function()
    local a = rules.alarm{ name = "hot", above = 30, for_s = 5 }
    assert.is_nil(a:update(31, 0))
    assert.is_nil(a:update(31, 4))
    assert.are.equal("raised", a:update(31, 5).event)
    local b = rules.alarm{ name = "door" }
    assert.is_nil(b:set(false, 1))
    assert.are.equal(1, b:set(true, 2, "open").id)
    assert.is_nil(b:set(true, 3))
    assert.are.equal("cleared", b:set(false, 4).state)
    assert.has_error(function() b:update(1, 5) end,
      "alarm:update: this alarm has no above or below; drive it with alarm:set")
  end)

  it("checks its options through lume.check", function()
    assert.has_error(function() rules.alarm{ above = 30 } end,
      "rules.alarm: name must be a string, got nil")
    assert.has_error(function() rules.alarm{ name = "x", abvoe = 30 } end)
    assert.has_error(function() rules.alarm{ name = "x", above = 30, clear = 31 } end,
      "rules.alarm: clear (31) must not be greater than above (30)")
    assert.has_error(function() rules.alarm{ name = "x", clear = 3 } end,
      "rules.alarm: clear and for_s need above or below")
  end)

  -- Every sequence of inputs: an alarm saved and restored (through JSON)
  -- at any step behaves from there on exactly like one that never stopped.
  it("save/restore mid-state: random sequences continue identically", function()
    for seed = 1, 60 do
      math.randomseed(seed)
      local opts = { name = "hot", above = 30, clear = 28, for_s = math.random(0, 2) }
      local a, b = rules.alarm(opts), nil
      local cut = math.random(1, 40)
      local log_a, log_b = {}, {}
      for step = 1, 60 do
        if step == cut then
          b = rules.alarm(opts)
          b:restore(json.decode(json.encode(a:save())))
        end
        local r, pick = math.random(), math.random()
        local function apply(x, log)
          local ev, err
          if r < 0.2 then
            ev, err = x:ack(math.floor(pick * (x.id + 2)), step, "t")
          else
            ev = x:update(20 + r * 15, step)
          end
          log[#log + 1] = (ev and (ev.event .. ev.state .. ev.id) or "-") .. (err or "")
        end
        apply(a, log_a)
        if b then apply(b, log_b) else log_b[#log_b + 1] = log_a[#log_a] end
        -- the machine never leaves its four states, and acks never skip ids
        assert.is_truthy(({ normal = 1, raised = 1, acknowledged = 1, cleared = 1 })[a:state()])
      end
      assert.are.same(log_a, log_b, "seed " .. seed .. " cut " .. cut)
      assert.are.same(a:report(), b:report())
    end
  end)

  it("takes over a threshold's saved state (an earlier script version), and gives one back",
     function()
    local th = rules.threshold{ above = 30, clear = 28 }
    th:update(31)
    local a = rules.alarm{ name = "hot", above = 30, clear = 28 }
    a:restore(th:save())
    assert.are.equal("raised", a:state())
    assert.are.equal(1, a.id)
    assert.is_nil(a:update(31, 1))                 -- no second raise
    local back = rules.threshold{ above = 30, clear = 28 }
    back:restore(a:save())
    assert.is_true(back:active())
    assert.has_error(function() a:restore({ state = "sleeping", id = 1 }) end,
      'alarm:restore: saved state must be normal, raised, acknowledged or cleared, got "sleeping"')
    assert.has_error(function() a:restore({ state = "raised", id = -1 }) end)
  end)
end)

describe("rules.anomaly{method = \"ewma\"}", function()
  it("scores each reading against the EWMA mean and stddev before it", function()
    local an = rules.anomaly{ method = "ewma", alpha = 0.1, z = 4, min_samples = 5 }
    local ref = require("lume.window").ewma{ alpha = 0.1 }
    math.randomseed(3)
    for i = 1, 200 do
      local v = 10 + math.random() - 0.5
      if i == 150 then v = 30 end
      local mean, sd = ref:mean(), ref:stddev()
      local flagged, score = an:update(v, i)
      if i <= 5 then
        assert.is_false(flagged)
        assert.is_nil(score)
      else
        assert.are.near((v - mean) / sd, score, 1e-9)
        assert.are.equal(i == 150, flagged, "reading " .. i)
      end
      ref:push(v)
    end
  end)

  it("takes half_life_s with irregular times, and saves its EWMA", function()
    local an = rules.anomaly{ method = "ewma", half_life_s = 10, min_samples = 2 }
    an:update(1, 0); an:update(2, 5); an:update(1.5, 30)
    local copy = rules.anomaly{ method = "ewma", half_life_s = 10, min_samples = 2 }
    copy:restore(json.decode(json.encode(an:save())))
    assert.are.same({ an:update(9, 31) }, { copy:update(9, 31) })
    assert.has_error(function() an:update(1) end)
  end)

  it("names what is wrong with its options", function()
    assert.has_error(function() rules.anomaly{ method = "ewma", window = 10, alpha = 0.1 } end,
      'rules.anomaly: window is for method "window"; method "ewma" takes alpha or half_life_s')
    assert.has_error(function() rules.anomaly{ method = "ewma" } end,
      "rules.anomaly: give exactly one of alpha or half_life_s")
    assert.has_error(function() rules.anomaly{ window = 10, alpha = 0.1 } end,
      'rules.anomaly: alpha and half_life_s are for method "ewma"')
    assert.has_error(function() rules.anomaly{ method = "median", window = 10 } end,
      'rules.anomaly: method must be "window" or "ewma", got "median"')
  end)
end)
