-- What a new script writer trips over first: print, the time, timer
-- arguments, and a script that registers nothing.
local H = require "helper"

-- the messages logged by script `name` since the last clear, in order
local function script_lines(name)
  local out = {}
  for _, l in ipairs(H.logs()) do
    if l.component == "script " .. name then out[#out + 1] = l.msg end
  end
  return out
end

describe("print", function()
  it("logs exactly its arguments, tab-separated, like Lua's print", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      assert(rt:install("p", [[
        print("hello")
        print("a", 1, 2.5, nil, true)
        print()
        print(nil)
        print("a\0b", "\0")
        print({})
        print(setmetatable({}, { __tostring = function() return "custom" end }))
        print(setmetatable({}, { __name = "my.type" }))
        function bad_tostring() print("x", setmetatable({}, { __tostring = function() error("boom") end })) end
        function number_tostring() print(setmetatable({}, { __tostring = function() return 42 end })) end
        function table_tostring() print(setmetatable({}, { __tostring = function() return {} end })) end
        function after() print("still", "here") end
      ]]))
      local lines = script_lines("p")
      assert.are.equal("hello", lines[1])
      assert.are.equal("a\t1\t2.5\tnil\ttrue", lines[2])
      assert.are.equal("", lines[3])
      assert.are.equal("nil", lines[4])
      -- a NUL byte would cut the log line short: it is shown as \0
      assert.are.equal("a\\0b\t\\0", lines[5])
      assert.matches("^table: 0x%x+$", lines[6])
      assert.are.equal("custom", lines[7])
      assert.matches("^my%.type: 0x%x+$", lines[8])
      assert.are.equal(8, #lines)

      -- a __tostring that fails is the caller's error, with its message; nothing half-printed
      H.clear_logs()
      local ok, err = rt:call("p", "bad_tostring")
      assert.is_nil(ok)
      assert.matches("boom", err)
      ok, err = rt:call("p", "table_tostring")
      assert.is_nil(ok)
      assert.matches("'__tostring' must return a string", err)
      assert.are.same({}, script_lines("p"))
      assert(rt:call("p", "number_tostring")) -- a number is a string to Lua, as in print
      assert.are.same({ "42" }, script_lines("p"))
      H.clear_logs()
      -- and the state is fine afterwards
      assert(rt:call("p", "after"))
      assert.are.same({ "still\there" }, script_lines("p"))
    end)
  end)
end)

describe("time", function()
  it("lume.now() is wall-clock seconds, the clock of samples' t; lume.monotonic() only grows", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("c", [[
        last_t = nil
        lume.on_sample("vibration", function(v, t) last_t = t end)
        function now() return lume.now(), os.time(), lume.monotonic() end
        function sample_lag() return lume.now() - last_t end
      ]]))
      local _, now, os_now, mono1 = rt:call("c", "now")
      assert.is_true(math.abs(now - os_now) <= 1.5, "lume.now() is not the wall clock")
      rt:run(200)
      local _, lag = rt:call("c", "sample_lag")
      assert.is_true(lag >= 0 and lag < 1, "samples' t and lume.now() differ by " .. lag .. " s")
      local _, _, _, mono2 = rt:call("c", "now")
      assert.is_true(mono2 >= mono1 + 0.15, "monotonic did not advance with the loop")
    end)
  end)

  it("timer callbacks get the time they fire at and their own handle", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      assert(rt:install("t", [[
        ticks, once = {}, nil
        lume.timer.every(30, function(now, self)
          ticks[#ticks + 1] = now
          if #ticks == 3 then self:cancel() end  -- no upvalue declared before it
        end)
        lume.timer.after(20, function(now, self) once = { now, self:active(), tostring(self) } end)
        function got() return ticks, once end
        function before() return lume.now() end
      ]]))
      local _, t0 = rt:call("t", "before")
      rt:run(300)
      local _, ticks, once = rt:call("t", "got")
      assert.are.equal(3, #ticks) -- cancelled itself at the third
      assert.is_true(ticks[1] >= t0 - 0.001 and ticks[1] < t0 + 1)
      assert.is_true(ticks[2] > ticks[1] and ticks[3] > ticks[2])
      assert.is_true(once[1] >= t0 - 0.001 and once[1] < t0 + 1)
      assert.is_false(once[2])           -- a one-shot is over as it fires
      assert.matches("^lume.timer", once[3])
      assert.are.equal(0, rt:scripts().t.errors)
    end)
  end)
end)
