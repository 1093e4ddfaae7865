-- Bad input: malformed config, unknown board, script syntax errors, a sensor
-- whose read fails. Each gets a clear message; the runtime keeps going
-- where it can.
local H = require "helper"
local host = H.host

describe("config validation", function()
  local cases = {
    { { sandbox = { memory_limit = -5 } }, "sandbox.memory_limit: expected a size in bytes between 65536 and 1073741824, got %-5" },
    { { sandbox = { memory_limit = "lots" } }, "sandbox.memory_limit: expected a size in bytes like" },
    { { outbx = {} }, "outbx: unknown key %(did you mean 'outbox'%?%)" },
    { { sandbox = { cpu_budget = 5 } }, "sandbox.cpu_budget: unknown key %(did you mean 'sandbox.cpu_budget_ms'%?%)" },
    { { board = 7 }, "board: expected a string, got 7" },
    { { board = ".hidden" }, "board: expected a board name" },
    { { board = ("b"):rep(65) }, "board: expected a board name .*at most 64 bytes" },
    { { device_id = "has space" }, "device_id: expected letters, digits" },
    { { log_level = "loud" }, "log_level: expected \"debug\", \"info\", \"warn\" or \"error\", got \"loud\"" },
    { { sampler = { realtime = "yes" } }, "sampler.realtime: expected true or false, got \"yes\"" },
    { { sampler = { priority = 100 } }, "sampler.priority: expected a number between 1 and 99, got 100" },
    { { outbox = { commit_batch = 1.5 } }, "outbox.commit_batch: expected a whole number, got 1.5" },
    { { outbox = { synchronous = "sometimes" } }, "outbox.synchronous: expected \"normal\" or \"full\"" },
    { { sandbox = 3 }, "sandbox: expected a table, got 3" },
    { { status_interval_ms = print }, "status_interval_ms: expected a number, got a function" },
    { { [1] = "x" }, "keys must be names" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[2]:gsub("%%", ""):sub(1, 60), function()
      local ok, err = host.config_check(c[1])
      assert.is_nil(ok)
      assert.matches(c[2], err)
    end)
  end

  -- names that end up in MQTT packets and topics (MQTT 3.1.1: UTF-8, no
  -- U+0000, no wildcards in names that are topic levels)
  local names = {
    { { net = { client_id = "dev\255" } },
      'net.client_id: "dev\\xff" is not a valid MQTT client id: it must be well%-formed UTF%-8 %(MQTT 3.1.1, 1.5.3%), and it is not well%-formed UTF%-8 %(byte 0xff at offset 3%)' },
    { { net = { client_id = "dev\0ice" } }, 'net.client_id: "dev\\0ice" holds a NUL byte %(at byte 3%)' },
    { { net = { username = "\237\160\128" } }, "net.username: .* is not a valid MQTT user name" },
    { { device_id = "pump/7" }, "device_id: expected letters, digits and %-%._: only %(the device id is a level of every topic lume uses: no '%+', '#' or '/', no spaces%), got \"pump/7\"" },
    { { device_id = "#" }, "device_id: expected letters, digits" },
    { { device_id = "pump\0" .. "7" }, 'device_id: "pump\\07" holds a NUL byte' },
    { { device_id = ("d"):rep(129) }, "device_id: expected a string of 1 to 128 bytes" },
    { { twin = { groups = { "fleet", "#" } } },
      'twin.groups: "#" is not a valid group name: no \'%+\', \'#\' or \'/\' %(they are MQTT wildcards and topic separators%)' },
    { { twin = { groups = { "site+a" } } }, 'twin.groups: "site%+a" is not a valid group name' },
    { { twin = { groups = { "site/a" } } }, 'twin.groups: "site/a" is not a valid group name' },
    { { twin = { groups = { "" } } }, 'twin.groups: entry 1 is "": expected a list of non%-empty names' },
    { { twin = { groups = "fleet,,site" } }, 'twin.groups: "" is not a valid group name: it must not be empty' },
    { { twin = { groups = { "s\255" } } }, 'twin.groups: "s\\xff" is not a valid group name: it must be well%-formed UTF%-8' },
    { { twin = { groups = { "a\0b" } } }, 'twin.groups: .* holds a NUL byte' },
    { { twin = { groups = { ("g"):rep(129) } } }, "is not a valid group name: at most 128 bytes, got 129" },
  }
  for _, c in ipairs(names) do
    it("rejects " .. c[2]:gsub("%%", ""):sub(1, 60), function()
      local ok, err = host.config_check(c[1])
      assert.is_nil(ok)
      assert.matches(c[2], err)
    end)
  end

  it("accepts UTF-8 group names and client ids", function()
    assert.is_true(host.config_check{
      device_id = "pump-7", net = { client_id = "pumpe-\195\169t\195\169" },
      twin = { groups = { "fleet", "site-m\195\188nchen", "ring_1" } },
    })
  end)

  it("a config that loops or eats memory is stopped, naming the file and the limit #native", function()
    local dir = H.tmpdir()
    H.write(dir .. "/loop.lua", "while true do end\nreturn {}\n")
    -- about 100 MiB each if nothing stopped them
    H.write(dir .. "/bomb.lua", "local t = {}\nfor i = 1, 1e6 do t[i] = ('x'):rep(64) .. i end\nreturn {}\n")
    H.write(dir .. "/rep.lua", "return { store = ('x'):rep(100 << 20) }\n")
    -- one C call that backtracks for minutes: the deadline reaches it too
    H.write(dir .. "/pattern.lua", "return { store = ('a'):rep(40):find('a*a*a*a*a*a*a*a*b') and 'x' or 'y' }\n")
    local ok, err = host.config_load(dir .. "/loop.lua")
    assert.is_nil(ok)
    assert.matches("config " .. dir .. "/loop.lua: stopped: it ran longer than 2000 ms, the time limit of a config file", err, 1, true)
    ok, err = host.config_load(dir .. "/bomb.lua")
    assert.is_nil(ok)
    assert.matches("config " .. dir .. "/bomb.lua: stopped: it needed more than 16 MiB of memory, the memory limit of a config file", err, 1, true)
    ok, err = host.config_load(dir .. "/rep.lua")
    assert.matches("rep.lua: stopped: it needed more than 16 MiB", err, 1, true)
    ok, err = host.config_load(dir .. "/pattern.lua")
    assert.matches("pattern.lua: stopped: it ran longer than 2000 ms", err, 1, true)
    -- what configs do keep working: os.getenv, string and math
    H.write(dir .. "/fine.lua", [[
      local host = os.getenv("LUME_SPEC_UNSET") or "pump-7.local"
      return { device_id = host:gsub("%.local$", ""):upper(), sandbox = { cpu_budget_ms = math.floor(20.5) } }
    ]])
    assert.is_true(host.config_load(dir .. "/fine.lua"))
    H.rmdir(dir)
  end)

  it("accepts sizes with units and a full valid config", function()
    assert.is_true(host.config_check{
      device_id = "pump-7", board = "host", log_level = "debug",
      sandbox = { memory_limit = "2MiB", cpu_budget_ms = 20, store_quota = "64KiB" },
      outbox = { commit_interval_ms = 10, commit_batch = 500, max_messages = 1000,
                 max_bytes = "16MiB", synchronous = "full" },
      sampler = { realtime = true, priority = 80, lock_memory = true, ring_size = 4096 },
    })
  end)

  it("names the file and line of a config with a syntax error", function()
    local dir = H.tmpdir()
    H.write(dir .. "/bad.lua", "return {\n  board = 'sim'\n  store = 'x' }\n")
    local ok, err = host.config_load(dir .. "/bad.lua")
    assert.is_nil(ok)
    assert.matches("bad.lua:3:", err)
    H.write(dir .. "/notable.lua", "return 42")
    ok, err = host.config_load(dir .. "/notable.lua")
    assert.matches("must return a table, returned number", err)
    H.write(dir .. "/io.lua", "return { store = io.read() }")
    ok, err = host.config_load(dir .. "/io.lua")
    assert.matches("global 'io'", err)
    ok, err = host.config_load(dir .. "/missing.lua")
    assert.matches("cannot open .*missing.lua", err)
    H.rmdir(dir)
  end)
end)

describe("routes and filters at the edge", function()
  -- misuse raises, naming the rule (MQTT 3.1.1), and nothing reaches the outbox
  local bad_routes = {
    { "a\255b", "route must be well%-formed UTF%-8 %(MQTT 3.1.1, 1.5.3: topics are UTF%-8%): \"a\\xffb\" is not well%-formed UTF%-8 %(byte 0xff at offset 1%)" },
    { "a\192\175", "route must be well%-formed UTF%-8" },          -- overlong '/'
    { "a\237\160\128", "route must be well%-formed UTF%-8" },      -- a surrogate
    { "a\0b", "route must not hold a NUL byte %(MQTT 3.1.1, 1.5.3: topics are UTF%-8 without U%+0000%): \"a\\0b\" contains U%+0000 at byte 1" },
    { "a/+/b", "route must not hold '%+' or '#' %(MQTT 3.1.1, 4.7.1: wildcards are for subscriptions, never in a published topic%): \"a/%+/b\" contains wildcard '%+'" },
    { "x/#", "route must not hold '%+' or '#'.*contains wildcard '#'" },
    { ("r"):rep(256), "route must be at most 255 bytes: \"r+\"%.%.%. is 256 bytes" },
    { "", "route must not be empty" },
    { "/x", "route must not start with '/'" },
  }
  local bad_filters = {
    { "a/#/b", "subscribe: \"a/#/b\" is not a valid topic filter: '#' only as the whole last level, '%+' only as a whole level %(MQTT 3.1.1, 4.7.1%); it has '#' not as the last level" },
    { "a+", "not a valid topic filter: '#' only as the whole last level" },
    { "a\0b", "subscribe: \"a\\0b\" is not a valid topic filter: well%-formed UTF%-8 without U%+0000" },
    { "a\255", "is not a valid topic filter: well%-formed UTF%-8.*byte 0xff" },
    { "", "is not a valid topic filter: a filter is at least one character" },
  }

  it("lume.publish refuses routes that can never be a topic", function()
    H.with_runtime({}, function(rt)
      -- rt:call passes arguments as JSON, which cannot carry a NUL byte:
      -- send the bytes in hex
      local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
      assert(rt:install("p", [[
        local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end
        function pub(route) return pcall(lume.publish, unhex(route), 1) end
        function sub(filter) return pcall(lume.subscribe, unhex(filter), function() end) end
      ]]))
      for _, c in ipairs(bad_routes) do
        local _, ok, err = rt:call("p", "pub", hex(c[1]))
        assert.is_false(ok, c[2])
        assert.matches("bad argument #1 to 'lume%.publish' %(" .. c[2], err)
      end
      assert.are.equal(0, #rt:peek(10))
      -- the longest route, UTF-8 and an empty level are fine
      assert.is_true(select(2, rt:call("p", "pub", hex(("r"):rep(255)))))
      assert.is_true(select(2, rt:call("p", "pub", hex("caf\195\169/\240\159\140\161"))))
      assert.is_true(select(2, rt:call("p", "pub", hex("a//b"))))
      local msgs = rt:peek(10)
      assert.are.equal(3, #msgs)
      assert.are.equal("lume/spec-device/telemetry/caf\195\169/\240\159\140\161", msgs[2].topic)
      for _, c in ipairs(bad_filters) do
        local _, ok, err = rt:call("p", "sub", hex(c[1]))
        assert.is_false(ok, c[2])
        assert.matches(c[2], err)
      end
      assert.is_true(select(2, rt:call("p", "sub", hex("a/+/#"))))
    end)
  end)
end)

describe("boards", function()
  it("an unknown board names the boards that exist", function()
    local rt, dir, err = H.runtime({ board = "nosuch" })
    assert.is_nil(rt)
    assert.matches("unknown board 'nosuch'.*boards in .*: .*host, .*sim", err)
  end)

  it("a board named by its path is read from there; a missing one is named", function()
    local dir = H.tmpdir()
    H.write(dir .. "/mine.lua", [[return { sensors = { { name = "t", driver = "sim.temperature" } } }]])
    local rt, _, err = H.runtime({ board = dir .. "/mine.lua" })
    assert.is_not_nil(rt, err)
    rt:close()
    rt, _, err = H.runtime({ board = dir .. "/gone.lua" })
    assert.is_nil(rt)
    assert.matches("board file " .. dir .. "/gone.lua: No such file or directory", err, 1, true)
  end)

  it("a board with an unknown driver or bad rates is refused with the sensor named", function()
    local dir = H.tmpdir()
    H.write(dir .. "/b1.lua", [[return { sensors = { { name = "x", driver = "sim.warp" } } }]])
    H.write(dir .. "/b2.lua", [[return { sensors = { { name = "x", driver = "sim.temperature", rate = 50, max_rate = 10 } } }]])
    H.write(dir .. "/b3.lua", [[return { sensors = { { name = "x", driver = "sim.temperature", colour = "red" } } }]])
    H.write(dir .. "/b4.lua", [[os.exit(1)]])
    local rt, _, err = H.runtime({ board = "b1", boards_dir = dir })
    assert.is_nil(rt)
    assert.matches("sensor 'x': unknown driver 'sim.warp' %(known: sim.temperature", err)
    rt, _, err = H.runtime({ board = "b2", boards_dir = dir })
    assert.matches("sensor 'x': rates must be", err)
    rt, _, err = H.runtime({ board = "b3", boards_dir = dir })
    assert.matches("unknown field 'colour'", err)
    rt, _, err = H.runtime({ board = "b4", boards_dir = dir })
    assert.matches("global 'os'", err)
    H.rmdir(dir)
  end)

  it("a sensor whose read fails is counted and logged; the rest keeps running", function()
    local dir = H.tmpdir()
    local value = dir .. "/value"
    H.write(value, "21.5\n")
    H.write(dir .. "/flaky.lua", ([[return { name = "flaky", sensors = {
      { name = "probe", driver = "file", unit = "C", rate = 50, min_rate = 1, max_rate = 100,
        params = { path = %q } },
      { name = "vibration", driver = "sim.vibration", rate = 100, min_rate = 10, max_rate = 1000 },
    } }]]):format(value))
    H.clear_logs()
    local rt, sdir, err = H.runtime({ board = "flaky", boards_dir = dir })
    assert(rt, err)
    assert(rt:install("s", [[
      n = 0 ; probe = 0
      lume.on_sample("vibration", function() n = n + 1 end)
      lume.on_sample("probe", function(v) probe = v end)
      function counts() return n, probe end
    ]]))
    rt:run(200)
    assert.are.equal(21.5, select(3, rt:call("s", "counts")))
    os.remove(value)
    rt:run(300)
    local before = select(2, rt:call("s", "counts"))
    H.write(value, "not a number\n")
    rt:run(300)
    local st = rt:sensor("probe")
    assert.is_true(st.read_errors >= 5, st.read_errors .. " read errors")
    assert.truthy(H.find_log("sensor 'probe' read failed", "warn"))
    assert.is_true(select(2, rt:call("s", "counts")) > before, "other sensors stopped")
    H.write(value, "30\n")
    rt:run(200)
    assert.are.equal(30, select(3, rt:call("s", "counts")))
    rt:close()
    H.rmdir(sdir)
    H.rmdir(dir)
  end)

  it("a script with a syntax error is reported with file:line and the others run", function()
    H.with_runtime({ scripts = { good = "lume.on_sample('temperature', function() end)",
                                 broken = "local x = = 1" } }, function(rt)
      local s = rt:scripts()
      assert.are.equal("running", s.good.status)
      assert.are.equal("failed", s.broken.status)
      assert.matches("broken.lua:1:", s.broken.last_error)
      assert.truthy(H.find_log("broken.lua:1:"))
    end)
  end)
end)
