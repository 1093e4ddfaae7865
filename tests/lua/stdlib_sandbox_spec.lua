-- busted spec: the stdlib modules load and work inside an environment as
-- bare as an edge script's sandbox (no io, os.execute, debug, package,
-- load; `require` reaching only stdlib/), and define no globals.
--
-- It reads the module files itself, relative to the current directory, so
-- run it from the top of the tree like the other specs.

local MODULES = { "lume.window", "lume.rules", "lume.delta", "lume.batch", "lume.json" }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A fresh sandbox-like environment whose require loads from stdlib/.
local function sandbox()
  local env = {
    assert = assert, error = error, getmetatable = getmetatable, ipairs = ipairs,
    next = next, pairs = pairs, pcall = pcall, rawequal = rawequal, rawget = rawget,
    rawlen = rawlen, rawset = rawset, select = select, setmetatable = setmetatable,
    tonumber = tonumber, tostring = tostring, type = type, xpcall = xpcall,
    _VERSION = _VERSION,
    math = copy(math), string = copy(string), table = copy(table), utf8 = copy(utf8),
    os = { time = os.time, clock = os.clock, date = os.date },
  }
  env._G = env
  local loaded = {}
  env.require = function(name)
    if loaded[name] then return loaded[name] end
    assert(type(name) == "string" and name:match("^[%w_]+[%w_.]*$"), "bad module name")
    local path = "stdlib/" .. name:gsub("%.", "/") .. ".lua"
    local chunk = assert(loadfile(path, "t", env))
    loaded[name] = chunk(name) or true
    return loaded[name]
  end
  return env
end

describe("stdlib in a sandbox", function()
  for _, name in ipairs(MODULES) do
    it(name .. " loads, returns a table and sets no globals", function()
      local env = sandbox()
      local before = {}
      for k in pairs(env) do before[k] = true end
      local mod = env.require(name)
      assert.is_table(mod)
      for k in pairs(env) do
        assert.is_true(before[k], name .. " set the global " .. tostring(k))
      end
    end)
  end

  it("the modules work together there", function()
    local env = sandbox()
    local chunk = assert(load([[
      local window = require "lume.window"
      local rules = require "lume.rules"
      local delta = require "lume.delta"
      local batch = require "lume.batch"
      local json = require "lume.json"

      local sent = {}
      local b = batch.new{ max_count = 4, on_flush = function(items)
        sent[#sent + 1] = json.encode(items)
      end }
      local th = rules.threshold{ above = 30, clear = 28 }
      local w = window.count(4)
      local events = {}
      for i, v in ipairs{ 25, 31, 29, 27, 26, 32, 33, 30 } do
        w:push(v, i)
        events[#events + 1] = th:update(v, i) or "-"
        b:add({ t = i, v = v, mean = w:mean() }, i)
      end
      local enc = delta.encode(w:values(), { precision = 1 })
      return events, sent, enc
    ]], "=sandboxed", "t", env))
    local events, sent, enc = chunk()
    assert.are.same({ "-", "raised", "-", "cleared", "-", "raised", "-", "-" }, events)
    assert.are.equal(2, #sent)
    local json = env.require("lume.json")
    local first = json.decode(sent[1])
    assert.are.equal(4, #first)
    assert.are.equal(25, first[1].v)
    assert.are.equal(31, first[2].v)
    assert.are.equal(28, first[2].mean)
    assert.are.same({ 26, 32, 33, 30 }, env.require("lume.delta").decode(enc))
  end)
end)
