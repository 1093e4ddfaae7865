-- lume.keep: a script's state handed to its next version. The default
-- rules (scripts/rules.lua) raise one alarm for one excursion, whatever
-- swaps happen during it: hot reload, twin push, rollback, restart.
local H = require "helper"
local json = require "lume.json"

-- the shipped rules, with a hold of 2 s instead of 5 to keep the test short
local RULES = io.open("scripts/rules.lua"):read("a")
  :gsub("HOLD_S = 30%.0, 28%.0, 5", "HOLD_S = 30.0, 28.0, 2")
assert(RULES:find("28.0, 2", 1, true), "scripts/rules.lua no longer sets HOLD_S as expected")

-- A board whose temperature is what the test writes in a file.
local function board(dir)
  local value = dir .. "/temperature"
  H.write(value, "22\n")
  H.write(dir .. "/probe.lua", ([[return { name = "probe", sensors = {
    { name = "temperature", driver = "file", unit = "C", rate = 20, min_rate = 1,
      max_rate = 100, params = { path = %q } },
  } }]]):format(value))
  return function(v) H.write(value .. ".tmp", v .. "\n"); os.rename(value .. ".tmp", value) end
end

local function alarms(rt, state)
  local n = 0
  for _, m in ipairs(rt:peek(100000)) do
    if m.topic:find("alarm/overtemp", 1, true) and json.decode(m.payload).state == state then
      n = n + 1
    end
  end
  return n
end

local reported, desire = H.reported, H.desire

describe("lume.keep", function()
  it("hands a plain table to the next version, and migrates a new version", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("k", [[
        st = lume.keep("st", {n = 0})
        function bump() st.n = st.n + 1; return st.n end
        lume.timer.every(1000, function() end)
      ]]))
      rt:call("k", "bump"); rt:call("k", "bump")
      assert(rt:install("k", [[
        st = lume.keep("st", {n = 100, added = "new"})
        function bump() st.n = st.n + 1; return st.n, st.added end
        lume.timer.every(1000, function() end)
      ]]))
      local _, n, added = rt:call("k", "bump")
      assert.are.equal(3, n)
      assert.are.equal("new", added) -- a key the old version had not keeps its default
      assert(rt:install("k", [[
        st = lume.keep("st", {count = 0}, {version = 2,
          migrate = function(old, old_version) return {count = old.n * 10} end})
        function bump() st.count = st.count + 1; return st.count end
        lume.timer.every(1000, function() end)
      ]]))
      assert.are.equal(31, select(2, rt:call("k", "bump")))
    end)
  end)

  it("refuses state of another version without migrate, naming both versions", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("k", [[st = lume.keep("st", {n = 5}, {version = 2})
        function get() return st.n end lume.timer.every(1000, function() end)]]))
      H.clear_logs()
      assert(rt:install("k", [[st = lume.keep("st", {n = 0}, {version = 3})
        function get() return st.n end lume.timer.every(1000, function() end)]]))
      assert.are.equal(0, select(2, rt:call("k", "get")))
      assert.truthy(H.find_log("kept state 'st' is version 2 and this version keeps version 3",
                               "warn"))
      assert.are.equal("running", rt:scripts().k.status)
    end)
  end)

  it("refuses a bad call with a clear error", function()
    H.with_runtime({}, function(rt)
      local ok, err = rt:install("k", [[lume.keep("a b", {})]])
      assert.is_nil(ok)
      assert.matches("name must be", err)
      ok, err = rt:install("k", [[lume.keep("a", {}, {versoin = 2})]])
      assert.is_nil(ok)
      assert.matches("unknown option 'versoin'", err)
      ok, err = rt:install("k", [[lume.keep("a", {}); lume.keep("a", {})]])
      assert.is_nil(ok)
      assert.matches("'a' is kept already", err)
    end)
  end)

  it("a state that cannot be saved is the script's error, and the last save is used", function()
    H.with_runtime({}, function(rt)
      local src = [[st = lume.keep("st", {n = 0})
        function set(n) st.n = n end
        function get() return st.n end
        function spoil() st.f = print end
        lume.timer.every(1000, function() end)]]
      assert(rt:install("k", src))
      rt:call("k", "set", 5)
      assert(rt:install("k", src .. "\n-- v2\n"))  -- the swap saves {n = 5}
      rt:call("k", "set", 6)
      rt:call("k", "spoil")                          -- a function: cannot be saved
      H.clear_logs()
      assert(rt:install("k", src .. "\n-- v3\n"))
      assert.truthy(H.find_log("lume.keep 'st': cannot save: .*function"))
      assert.are.equal(5, select(2, rt:call("k", "get")))
    end)
  end)

  it("keeps the stdlib's windows and batches across a reload", function()
    H.with_runtime({}, function(rt)
      local src = [[
        local window = require "lume.window"
        local batch = require "lume.batch"
        w = lume.keep("w", window.count(%d))
        flushed = {}
        b = lume.keep("b", batch.new{max_count = 10, on_flush = function(items)
          for _, x in ipairs(items) do flushed[#flushed + 1] = x end end})
        function feed(x) w:push(x); b:add(x) end
        function stats() return w:count(), w:mean(), b:count(), #flushed end
        lume.timer.every(1000, function() end)
      ]]
      assert(rt:install("k", src:format(5)))
      for i = 1, 7 do rt:call("k", "feed", i) end
      assert(rt:install("k", src:format(3)))
      local _, n, mean, pending = rt:call("k", "stats")
      assert.are.equal(3, n)              -- the smaller window keeps the newest
      assert.are.equal(6, mean)           -- (5 + 6 + 7) / 3
      assert.are.equal(7, pending)        -- no pending item lost or flushed twice
      for i = 8, 10 do rt:call("k", "feed", i) end
      local _, _, _, left, flushed = rt:call("k", "stats")
      assert.are.equal(0, left)
      assert.are.equal(10, flushed)
    end)
  end)

  it("scripts/rules.lua raises one alarm for one excursion across reload, twin push, "
     .. "rollback and restart", function()
    local dir = H.tmpdir()
    local set = board(dir)
    local cfg = { board = "probe", boards_dir = dir, store = dir .. "/store",
                  config = { twin = { allow_unsigned = true } } }
    local rt, sdir, err = H.runtime(cfg)
    assert(rt, err)
    local ok, e = pcall(function()
      assert(rt:install("rules", RULES))
      rt:run(300)
      set(35)                           -- the excursion starts; the hold is 2 s
      rt:run(1500)
      assert.are.equal(0, alarms(rt, "raised"))
      -- hot reload mid-hold: the hold goes on (raised within 1.2 s, where a
      -- hold started again would need 2 s)
      assert(rt:install("rules", RULES .. "\n-- v2\n"))
      H.run_until(rt, 1200, function() return alarms(rt, "raised") == 1 end)
      assert.are.equal(1, alarms(rt, "raised"))
      -- twin push while raised: longer than the hold, and no second alarm
      desire(rt, { scripts = { rules = { version = "v3", source = RULES .. "\n-- v3\n" } } })
      assert.are.equal("active", reported(rt).scripts.rules.status)
      rt:run(2500)
      assert.are.equal(1, alarms(rt, "raised"))
      -- a version that fails its soak; the excursion ends while it runs (it
      -- clears the alarm), and v3 comes back knowing it is cleared
      local bad = RULES .. [[
        local born = lume.now()
        lume.on_sample("temperature", function()
          if lume.now() - born > 1.0 then error("v4 is broken") end
        end)
      ]]
      desire(rt, { scripts = { rules = { version = "v4", soak_s = 3, source = bad } } })
      set(20)
      H.run_until(rt, 4000, function()
        return reported(rt).scripts.rules.status == "rolled_back"
      end)
      assert.are.equal("rolled_back", reported(rt).scripts.rules.status)
      assert.are.equal("v3", reported(rt).scripts.rules.running)
      rt:run(500)
      assert.are.equal(1, alarms(rt, "cleared"))
      -- a second excursion, raised by v3, in progress at the restart
      set(35)
      H.run_until(rt, 3000, function() return alarms(rt, "raised") == 2 end)
      assert.are.equal(2, alarms(rt, "raised"))
    end)
    rt:close()
    -- restart: same store; v3 comes back from the last-known-good with its state
    if ok then
      rt, _, err = H.runtime(cfg)
      assert(rt, err)
      ok, e = pcall(function()
        rt:run(3000)                    -- longer than the hold: no new alarm
        assert.are.equal(2, alarms(rt, "raised"))
        assert.are.equal(1, alarms(rt, "cleared"))
        set(20)                         -- the excursion ends: cleared, once
        H.run_until(rt, 2000, function() return alarms(rt, "cleared") == 2 end)
        assert.are.equal(2, alarms(rt, "cleared"))
        assert.are.equal(2, alarms(rt, "raised"))
      end)
      rt:close()
    end
    H.rmdir(sdir)
    H.rmdir(dir)
    if not ok then error(e, 0) end
  end)
end)
