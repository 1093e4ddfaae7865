--- lume.test — a harness for testing your own rules with busted, on a
-- simulated clock (`lume test SPEC...`, docs/testing-rules.md).
--
--   local harness = require "lume.test"
--   local h = harness.new{ script = "scripts/rules.lua" }
--   h:feed(harness.generate{ sensor = "temperature", to = 60, rate = 1,
--                            value = function(t) return t < 10 and 25 or 32 end })
--   assert.equal(1, #h:published("alarm/overtemp"))
--   h:close()
--
-- This is not a model of lume: the script runs in a real lume runtime (the
-- lume_host module: the same sandbox, budgets, outbox, state store,
-- lume.keep and twin as on a device), on a board (sim by default) whose own
-- readings are set aside. Time moves only when the test moves it: samples
-- reach the script's handlers with the trace's `t`, timers fire at their
-- due times as the clock passes them, and lume.now() reads the simulated
-- clock. A trace of a day runs in as long as its handlers take, and gives
-- the same result every run.
--
-- It runs outside the device's sandbox (under busted, on lua5.4), next to
-- the lume_host C module: not for scripts on a device.
local found, host = pcall(require, "lume_host")
if not found then
  error("lume.test is the rule test harness: it runs under `lume test` (busted on lua5.4, "
    .. "docs/testing-rules.md), not in a device's script (" .. tostring(host) .. ")", 2)
end
local json = require "lume.json"

local M = {}

local H = {}
H.__index = H

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error("lume.test: cannot read " .. tostring(err), 3) end
  local s = f:read("a")
  f:close()
  return s
end

local function decode(s)
  local ok, v = pcall(json.decode, s)
  if ok then return v end
  return s
end

-- ---- traces --------------------------------------------------------------------

--- Parse one trace line: CSV `t,sensor,value` or a JSON object
-- {"t":..,"sensor":..,"value":..}. Blank lines, `#` comments and a CSV
-- header (`t,sensor,value`) give nil. Raises on anything else, naming it.
function M.parse_line(line, where)
  where = where or "trace"
  if line:match("^%s*$") or line:match("^%s*#") or line:match("^%s*t%s*,%s*sensor%s*,") then
    return nil
  end
  local t, sensor, value
  if line:match("^%s*{") then
    local ok, o = pcall(json.decode, line)
    if not ok or type(o) ~= "table" then
      error(string.format("%s: not a JSON object: %s", where, line), 0)
    end
    t, sensor, value = o.t, o.sensor, o.value
  else
    local a, b, c = line:match("^%s*([^,]-)%s*,%s*([^,]-)%s*,%s*([^,]-)%s*$")
    t, sensor, value = tonumber(a), b, tonumber(c)
    if not a then
      error(string.format("%s: expected t,sensor,value, got: %s", where, line), 0)
    end
  end
  if type(t) ~= "number" or t < 0 then
    error(string.format("%s: t must be seconds >= 0, got: %s", where, line), 0)
  end
  if type(sensor) ~= "string" or sensor == "" then
    error(string.format("%s: no sensor name in: %s", where, line), 0)
  end
  if type(value) ~= "number" then
    error(string.format("%s: value must be a number, got: %s", where, line), 0)
  end
  return { t = t, sensor = sensor, value = value }
end

--- Read a trace file (what `lume record` writes: CSV or JSON lines) into a
-- list of samples {t, sensor, value}, in the file's order.
function M.read_trace(path)
  local out, n = {}, 0
  local f, err = io.open(path, "r")
  if not f then error("lume.test: cannot read the trace " .. tostring(err), 2) end
  for line in f:lines() do
    n = n + 1
    local s = M.parse_line(line, path .. ":" .. n)
    if s then out[#out + 1] = s end
  end
  f:close()
  return out
end

--- A generated trace: samples of one sensor from `from` (default 0) up to
-- `to` seconds, `rate` per second (or one every `every` seconds); value is
-- a number, or value(t, i) gives one (nil skips that sample).
function M.generate(o)
  assert(type(o) == "table" and type(o.sensor) == "string", "generate: give {sensor = name, ...}")
  local step = o.every or (o.rate and 1 / o.rate) or 1
  assert(step > 0, "generate: rate or every must be > 0")
  local from, to = o.from or 0, assert(o.to, "generate: give to = seconds")
  local out, i = {}, 0
  while true do
    local t = from + i * step
    if t > to + 1e-9 then break end
    i = i + 1
    local v = o.value
    if type(v) == "function" then v = v(t, i) end
    if v ~= nil then out[#out + 1] = { t = t, sensor = o.sensor, value = v } end
  end
  return out
end

--- Several traces as one, in time order (a stable merge: samples at the
-- same t keep the order of the arguments).
function M.merge(...)
  local all, k = {}, 0
  for a = 1, select("#", ...) do
    for _, s in ipairs((select(a, ...))) do
      k = k + 1
      all[#all + 1] = { s = s, k = k }
    end
  end
  table.sort(all, function(x, y)
    if x.s.t ~= y.s.t then return x.s.t < y.s.t end
    return x.k < y.k
  end)
  local out = {}
  for i, e in ipairs(all) do out[i] = e.s end
  return out
end

-- ---- the harness -----------------------------------------------------------------

--- A harness: a runtime on a simulated clock with your scripts in it.
--   script = "path.lua"           one script (named after its file), or
--   source = "...", name = "x"    one script from a string, or
--   scripts = { name = "path.lua", ... }
--   board = "sim"                 a board name or a board file
--   start = seconds               where the clock starts (default: trace's first t, else 0)
--   trace = "file" | samples      fed at once (h:feed)
--   config = { ... }              more config keys (sandbox, twin, ...)
function M.new(o)
  o = o or {}
  local trace = o.trace
  if type(trace) == "string" then trace = M.read_trace(trace) end
  local start = o.start or (trace and trace[1] and trace[1].t) or 0
  local dir = sh("mktemp -d \"${TMPDIR:-/tmp}/lume-test.XXXXXX\"")
  assert(dir:match("/lume%-test%."), "lume.test: cannot make a temp dir")
  os.execute("mkdir -p '" .. dir .. "/scripts'")
  local cfg = {
    device_id = "test-device",
    board = o.board or "sim",
    scripts_dir = dir .. "/scripts",
    store = dir .. "/var",
    status_interval_ms = 0,
    watch_scripts = false,
  }
  for k, v in pairs(o.config or {}) do cfg[k] = v end
  host.logs() -- what came before this harness is not its
  local rt, err = host.new(cfg)
  if not rt then
    os.execute("rm -rf '" .. dir .. "'")
    error("lume.test: " .. tostring(err), 2)
  end
  local h = setmetatable({ rt = rt, dir = dir, cfg = cfg, events = {}, log = {}, sources = {},
                           order = {} }, H)
  assert(rt:sim_start(start))
  local scripts = {}
  if o.script then
    scripts[#scripts + 1] = { name = o.name or o.script:match("([^/]+)%.lua$") or o.script,
                              source = read_file(o.script) }
  elseif o.source then
    scripts[#scripts + 1] = { name = o.name or "script", source = o.source }
  end
  local names = {}
  for name in pairs(o.scripts or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    scripts[#scripts + 1] = { name = name, source = read_file(o.scripts[name]) }
  end
  for _, s in ipairs(scripts) do
    local ok, e = h:install(s.name, s.source)
    if not ok then
      h:close()
      error("lume.test: " .. s.name .. ": " .. tostring(e), 2)
    end
  end
  if trace then h:feed(trace) end
  return h
end

--- Install (or replace: a hot reload, with lume.keep's hand-over) a script.
-- true | nil, err.
function H:install(name, source)
  if not self.sources[name] then self.order[#self.order + 1] = name end
  self.sources[name] = source
  local ok, err = self.rt:install(name, source)
  self:_collect()
  return ok, err
end

--- Load the script again from the same source: a swap, as a hot reload or
-- a restart makes (its lume.keep state is handed over).
function H:reload(name)
  name = name or next(self.sources)
  return self:install(name, assert(self.sources[name], "no script named " .. tostring(name)))
end

--- Stop the runtime and start a new one on the same store, at the same
-- simulated time, with the same scripts: a restart of the device (what the
-- scripts kept with lume.keep comes back from the store).
function H:restart()
  local now = self:now()
  self:_collect()
  self.rt:close()
  local rt, err = host.new(self.cfg)
  if not rt then error("lume.test: restart: " .. tostring(err), 2) end
  self.rt = rt
  assert(rt:sim_start(now))
  for _, name in ipairs(self.order) do
    local ok, e = self:install(name, self.sources[name])
    if not ok then error("lume.test: restart: " .. name .. ": " .. tostring(e), 2) end
  end
end

function H:_logs()
  for _, l in ipairs(host.logs()) do
    l.t = self.rt:sim_now()
    self.log[#self.log + 1] = l
  end
end

function H:_collect()
  for _, e in ipairs(self.rt:sim_events()) do
    if e.kind == "publish" then e.value = decode(e.payload) end
    self.events[#self.events + 1] = e
  end
  self:_logs()
end

--- The simulated time, seconds.
function H:now() return self.rt:sim_now() end

--- One sample of sensor at t (default: now). Time never goes back.
function H:sample(sensor, value, t)
  t = t or self:now()
  if t < self:now() - 1e-9 then
    error(string.format("lume.test: sample of %s at t=%.3f is before now (%.3f): time only goes "
      .. "forward", sensor, t, self:now()), 2)
  end
  local ok, err = self.rt:sim_sample(sensor, value, t)
  if not ok then error("lume.test: " .. err, 2) end
  self:_collect()
end

--- Feed samples: a list of {t, sensor, value} (read_trace, generate,
-- merge), or a trace file's path. Returns how many.
function H:feed(trace)
  if type(trace) == "string" then trace = M.read_trace(trace) end
  for i, s in ipairs(trace) do
    if s.t < self:now() - 1e-9 then
      error(string.format("lume.test: sample %d (%s at t=%.3f) is before now (%.3f): a trace "
        .. "must be in time order (harness.merge sorts)", i, s.sensor, s.t, self:now()), 2)
    end
    local ok, err = self.rt:sim_sample(s.sensor, s.value, s.t)
    if not ok then error(string.format("lume.test: sample %d: %s", i, err), 2) end
    self:_logs() -- each line with the time it was logged at
  end
  self:_collect()
  return #trace
end

--- Move the clock forward by seconds, firing the timers due on the way.
-- Returns how many timer callbacks ran.
function H:advance(seconds)
  assert(type(seconds) == "number" and seconds >= 0, "advance: seconds >= 0")
  local n = self.rt:sim_advance(self:now() + seconds)
  self:_collect()
  return n
end

--- Move the clock to t (seconds).
function H:advance_to(t)
  local n = self.rt:sim_advance(t)
  self:_collect()
  return n
end

local function filter(list, kind, key, want)
  local out = {}
  for _, e in ipairs(list) do
    if e.kind == kind and (want == nil or e[key] == want) then out[#out + 1] = e end
  end
  return out
end

--- What the scripts published, in order: { {t, script, route, payload,
-- value (the payload decoded from JSON), priority, qos}, ... }; only those
-- on route when given.
function H:published(route) return filter(self.events, "publish", "route", route) end

--- The outputs the scripts set, in order: { {t, script, output, value}, ... }.
function H:outputs(name) return filter(self.events, "output", "output", name) end

--- Forget what was recorded so far (publishes, outputs, log).
function H:clear()
  self:_collect()
  self.events, self.log = {}, {}
end

--- Log lines so far: { {t, level, component, msg}, ... }; with a pattern,
-- those whose message matches it (string.find, plain when plain is true).
function H:logs(pattern, plain)
  self:_collect()
  if not pattern then return self.log end
  local out = {}
  for _, l in ipairs(self.log) do
    if l.msg:find(pattern, 1, plain) then out[#out + 1] = l end
  end
  return out
end

--- The reported document (the twin), as a table.
function H:reported()
  local s = self.rt:reported()
  return s and json.decode(s) or {}
end

--- A desired document (a table) as if the hub sent it (layer: default
-- "device").
function H:desired(doc, layer)
  local ok = self.rt:desired(type(doc) == "string" and doc or json.encode(doc), layer)
  self:_collect()
  return ok
end

--- A script's state: {status, version, errors, last_error, ...}.
function H:script(name)
  name = name or next(self.sources)
  return self.rt:scripts()[name]
end

--- Close the runtime and remove its temp files.
function H:close()
  if self.rt then
    self.rt:close()
    self.rt = nil
  end
  if self.dir and self.dir:match("/lume%-test%.") then os.execute("rm -rf '" .. self.dir .. "'") end
  self.dir = nil
end
H.__close = H.close
H.__gc = H.close

return M
