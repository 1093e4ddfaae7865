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

describe("a script that registers nothing", function()
  local function warning_of(name)
    for _, l in ipairs(H.logs()) do
      if l.level == "warn" and l.msg:find(name .. ": registers no handler", 1, true) then
        return l.msg
      end
    end
  end

  it("is warned about, naming the global handlers lume never calls", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      assert(rt:install("globals", [[
        local n = 0
        function on_sample(v, t) n = n + 1 end
        function on_tick(t) end
        function on_message(topic, payload) end
      ]]))
      local msg = warning_of("globals")
      assert.truthy(msg, "no warning")
      assert.matches("defines global function on_sample, which lume never calls; use "
        .. "lume.on_sample%(\"SENSOR\", on_sample%)", msg)
      assert.matches("defines global function on_tick, which lume never calls; use "
        .. "lume.timer.every%(MS, on_tick%)", msg)
      assert.matches("defines global function on_message, which lume never calls; use "
        .. "lume.subscribe", msg)
      local st = rt:scripts().globals
      assert.are.equal("running", st.status) -- a warning, not a failure
      assert.matches("^warning: registers no handler.*on_sample", st.last_error)
      assert.matches("registers no handler", rt:stats())

      -- the fixed version is not warned about, and its status is clean
      H.clear_logs()
      assert(rt:install("globals", [[
        local n = 0
        local function on_sample(v, t) n = n + 1 end
        lume.on_sample("vibration", on_sample)
      ]]))
      assert.is_nil(warning_of("globals"))
      assert.is_nil(rt:scripts().globals.last_error)
    end)
  end)

  it("without lookalike globals, says it will never run again", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      assert(rt:install("once", [[ local x = 1 + 1 ]]))
      assert.matches("never calls it after it loads %(register with lume.on_sample",
        warning_of("once"))
    end)
  end)

  it("is not warned about when it registers any kind of callback", function()
    H.with_runtime({}, function(rt)
      H.clear_logs()
      for name, src in pairs{
        timer = [[ lume.timer.after(100000, function() end) ]],
        sub = [[ lume.subscribe("a/b", function() end) ]],
        twin = [[ lume.twin.on_change("cfg", function() end) ]],
        method = [[ lume.method("ping", function() return 1 end) ]],
        c2d = [[ lume.on_c2d(function() end) ]],
        net = [[ lume.net.on("connected", function() end) ]],
      } do
        assert(rt:install(name, src))
        assert.is_nil(warning_of(name), name .. " was warned about")
      end
    end)
  end)
end)

describe("the default scripts", function()
  it("run on the host board, which has none of their sensors, with one warning each", function()
    H.clear_logs()
    H.with_runtime({ board = "host", config = { scripts_dir = H.ROOT .. "/scripts" } }, function(rt)
      rt:run(100)
      local scripts = rt:scripts()
      for _, name in ipairs{ "rules", "sampling", "routing" } do
        assert.truthy(scripts[name], name .. " not loaded")
        assert.are.equal("running", scripts[name].status, name .. ": " .. tostring(scripts[name].last_error))
      end
      local warns = {}
      for _, l in ipairs(H.logs()) do
        if l.level == "warn" or l.level == "error" then warns[#warns + 1] = l.component .. ": " .. l.msg end
      end
      local text = table.concat(warns, "\n")
      assert.matches("script rules: no sensor named 'temperature' on board host: the "
        .. "over%-temperature rule is off %(sensors here: load, mem_available, cpu", text)
      assert.matches("script rules: no sensor named 'vibration' on board host: the vibration "
        .. "anomaly rule is off", text)
      assert.matches("script sampling: no sensor named 'vibration' on board host: adaptive "
        .. "sampling is off", text)
      -- a script that said why it is idle is not also called idle
      assert.is_nil(text:find("registers no handler", 1, true), text)
      assert.is_nil(text:find("level=error", 1, true))
    end)
  end)

  it("run on the sim board without a warning", function()
    H.clear_logs()
    H.with_runtime({ config = { scripts_dir = H.ROOT .. "/scripts" } }, function(rt)
      rt:run(100)
      for name, st in pairs(rt:scripts()) do
        assert.are.equal("running", st.status, name)
        assert.is_nil(st.last_error, name)
      end
      for _, l in ipairs(H.logs()) do
        assert.is_false(l.level == "warn" and l.component:find("^script") ~= nil, l.msg)
      end
    end)
  end)
end)

describe("lume.log", function()
  it("called as a function names the right call", function()
    H.with_runtime({}, function(rt)
      local ok, err = rt:install("l", [[ lume.log("warn", "x") ]])
      assert.is_nil(ok)
      assert.matches("lume.log is not a function: call lume.log.warn%(fmt, ...%)", err)
      assert.matches("l:1", err)
    end)
  end)
end)
