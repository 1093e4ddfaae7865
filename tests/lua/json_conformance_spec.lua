-- One JSON rule for Lua values: lume.publish (C, bindings/luajson.c) and
-- lume.json.encode (pure Lua, stdlib/lume/json.lua) give the same text, and
-- refuse the same values with the same message, case by case — run inside
-- a real runtime on the same table, so even the order of an object's keys
-- is compared. The expected text pins the rule itself (docs/stdlib.md,
-- "lume.json"); the pure-Lua encoder is also checked against it outside
-- lume, in plain lua5.4.
local H = require "helper"
local json = require "lume.json"

-- { source of the value (json is in scope), expected text or "ERR: message" or
-- false when only the two encoders are compared (key order) }
local CASES = {
  -- scalars
  { "nil", "null" },
  { "json.null", "null" },
  { "true", "true" },
  { "false", "false" },
  { "0", "0" },
  { "-7", "-7" },
  { "math.maxinteger", "9223372036854775807" },
  { "math.mininteger", "-9223372036854775808" },
  { "3.0", "3" },
  { "-0.0", "0" },
  { "0.1", "0.1" },
  { "21.5", "21.5" },
  { "1/3", "0.3333333333333333" },
  { "0.1 + 0.2", "0.30000000000000004" },
  { "1e15", "1000000000000000" },
  { "2^53", "9007199254740992" },
  { "2^60", "1152921504606846976" },
  { "-2^63", "-9223372036854775808" },
  { "2^63", "9.223372036854776e+18" },
  { "1e300", "1e+300" },
  { "123456789.123456", "123456789.123456" },
  { "5e-324", "4.9406564584125e-324" },
  { "1.7976931348623157e308", "1.7976931348623157e+308" },
  { "0/0", "ERR: cannot encode NaN at value" },
  { "1/0", "ERR: cannot encode inf at value" },
  { "-1/0", "ERR: cannot encode -inf at value" },
  { "{ readings = { 1, 2, 0/0 } }", "ERR: cannot encode NaN at value.readings[3]" },
  -- strings (inside a table: a top-level string is published as it is)
  { [[{ 'a"b\\c/d' }]], [=[["a\"b\\c/d"]]=] },
  { [[{ "\b\f\n\r\t" }]], [=[["\b\f\n\r\t"]]=] },
  { [[{ "\0\1\31 \127x" }]], '["\\u0000\\u0001\\u001f \127x"]' },
  { [[{ "café 😀 \u{10FFFF}" }]], '["café 😀 \u{10FFFF}"]' },
  { [[{ name = "ab\255c" }]], "ERR: string is not valid UTF-8 (bad byte at position 3) at value.name" },
  { [[{ "\192\128" }]], "ERR: string is not valid UTF-8 (bad byte at position 1) at value[1]" },
  { [[{ "x\237\160\128" }]], "ERR: string is not valid UTF-8 (bad byte at position 2) at value[1]" },
  { [[{ "\244\144\128\128" }]], "ERR: string is not valid UTF-8 (bad byte at position 1) at value[1]" },
  { [[{ "ab\226\130" }]], "ERR: string is not valid UTF-8 (bad byte at position 3) at value[1]" },
  { [[{ "\128" }]], "ERR: string is not valid UTF-8 (bad byte at position 1) at value[1]" },
  { [[{ ["\192"] = 1 }]], 'ERR: string is not valid UTF-8 (bad byte at position 1) at value["\192"]' },
  -- arrays and objects
  { "{}", "{}" },
  { "json.array()", "[]" },
  { "json.array({ 4, 5 })", "[4,5]" },
  { "{ 1, 2, 3 }", "[1,2,3]" },
  { "{ json.array(), {} }", "[[],{}]" },
  { "{ 1, json.null, 3 }", "[1,null,3]" },
  { "{ a = 1 }", '{"a":1}' },
  { "{ a = { b = { c = json.array() } } }", '{"a":{"b":{"c":[]}}}' },
  { "json.decode('[]')", "[]" },
  { "json.decode('{\"a\":[],\"b\":{}}').a", "[]" },
  { "setmetatable({}, { __jsontype = 'array' })", "[]" },
  { "setmetatable({}, { __metatable = { __jsontype = 'array' } })", "[]" },
  { "setmetatable({}, { __jsontype = 'null' })", "null" },
  { "setmetatable({}, { __jsontype = 'object' })", "{}" },
  { "setmetatable({ 1 }, { __index = function() return 9 end, __len = function() return 5 end })", "[1]" },
  { "setmetatable({ a = 1 }, { __pairs = function() error('no pairs here') end })", '{"a":1}' },
  { "(function() local s = { 1 } ; return { s, s } end)()", "[[1],[1]]" },
  { "{ 1, nil, 3 }", "ERR: sparse array (key 3, but only 2 elements); use json.null for holes at value" },
  { "{ [2] = 1 }", "ERR: sparse array (key 2, but only 1 elements); use json.null for holes at value" },
  { "{ x = { 1, y = 3 } }", "ERR: table mixes string keys and the integer key 1 at value.x" },
  { "(function() local a = json.array({ 'x' }) ; a.k = 1 ; return a end)()",
    'ERR: array table has a string key "k" at value' },
  { "json.array({ [3] = 1 })", "ERR: sparse array (key 3, but only 1 elements); use json.null for holes at value" },
  { "{ [true] = 1 }", "ERR: table has a boolean key true (JSON keys are strings) at value" },
  { "{ [1.5] = 1 }", "ERR: table has a number key 1.5 (JSON keys are strings) at value" },
  { "{ [2^63] = 1 }", "ERR: table has a number key 9.2233720368548e+18 (JSON keys are strings) at value" },
  { "{ [0] = 1 }", "ERR: table has a number key 0 (JSON keys are strings) at value" },
  { "{ k = { [-1] = 1 } }", "ERR: table has a number key -1 (JSON keys are strings) at value.k" },
  { "{ f = print }", "ERR: cannot encode a function at value.f" },
  { "{ co = coroutine.create(print) }", "ERR: cannot encode a thread at value.co" },
  { "{ h = lume.timer.after(100000, print) }", "ERR: cannot encode a userdata at value.h" },
  { "{ ['a b'] = { x = -1/0 } }", 'ERR: cannot encode -inf at value["a b"].x' },
  { "{ ['a\\nb\\r'] = 0/0 }", 'ERR: cannot encode NaN at value["a\\nb\\13"]' },
  { "{ ['\\0' .. '1'] = 0/0 }", 'ERR: cannot encode NaN at value["\\0001"]' },
  { "{ ['1a'] = { _ok9 = { 0/0 } } }", 'ERR: cannot encode NaN at value["1a"]._ok9[1]' },
  { "{ [''] = 0/0 }", 'ERR: cannot encode NaN at value[""]' },
  { "{ ['\"q\"'] = 0/0 }", 'ERR: cannot encode NaN at value["\\"q\\""]' },
  { "(function() local a = { b = {} } ; a.b.c = a ; return a end)()",
    "ERR: table contains a cycle at value.b.c" },
  { "(function() local t = {} ; t[1] = t ; return t end)()", "ERR: table contains a cycle at value[1]" },
  { "(function() local t = {} ; local c = t ; for i = 1, 63 do c[1] = {} ; c = c[1] end ; return t end)()",
    string.rep("[", 63) .. "{}" .. string.rep("]", 63) },
  { "(function() local t = {} ; local c = t ; for i = 1, 64 do c[1] = {} ; c = c[1] end ; return t end)()",
    "ERR: nesting deeper than 64 at value" .. string.rep("[1]", 64) },
  -- the order of an object's members: the table's own, the same for both
  { "{ b = 1, a = { 1, 2 }, c = { d = json.array() }, e = 'x', f = false, g = 2.5 }", false },
  { "(function() local t = {} ; for i = 1, 40 do t['k' .. i] = i end ; return t end)()", false },
  { "(function() local t = { z = 1, y = 2 } ; t.x = 3 ; t.z = nil ; t.w = 4 ; return t end)()", false },
}

local SCRIPT = [[
local json = require "lume.json"

-- encode the value of src both ways: ok_lua, text|err, ok_c, err
function run(i, src)
  local v = assert(load("local json = ... ; return " .. src, "=case", "t"))(json)
  local okl, outl = pcall(json.encode, v)
  local okc, errc = pcall(lume.publish, "case/" .. i, v)
  if not okl then outl = outl:gsub("^json%.encode: ", "") end
  if not okc then errc = tostring(errc):gsub("^publish: ", "") end
  return okl, outl, okc, okc and "" or errc
end

-- the store's values come back through lume's C decoder: arrays marked too
function stored()
  assert(lume.store.set("k", { a = json.array(), b = {}, c = { json.array() } }))
  local v = lume.store.get("k")
  assert(lume.publish("stored", v))
  return json.encode(v, { sort_keys = true }), json.is_array(v.a), json.is_array(v.b)
end

-- random documents (seeded), encoded both ways
local function rstring()
  local p = {}
  for i = 1, math.random(0, 8) do
    local r = math.random()
    p[i] = utf8.char(r < 0.5 and math.random(0, 127) or r < 0.8 and math.random(0x80, 0x7FF)
                     or math.random(0x10000, 0x10FFFF))
  end
  return table.concat(p)
end
local function rvalue(d)
  local r = math.random(1, d < 4 and 10 or 7)
  if r == 1 then return json.null
  elseif r == 2 then return math.random() < 0.5
  elseif r == 3 then return math.random(math.mininteger, math.maxinteger)
  elseif r == 4 then return (math.random() - 0.5) * 10 ^ math.random(-30, 30)
  elseif r == 5 then return math.random(-1000, 1000) + 0.0
  elseif r == 6 or r == 7 then return rstring()
  elseif r == 8 then
    local a = json.array()
    for i = 1, math.random(0, 5) do a[i] = rvalue(d + 1) end
    return a
  else
    local o = {}
    for _ = 1, math.random(0, 6) do o[rstring()] = rvalue(d + 1) end
    return o
  end
end
function random_docs(n, seed)
  math.randomseed(seed)
  local texts = {}
  for i = 1, n do
    local v = { doc = rvalue(0) }
    texts[i] = json.encode(v)
    assert(lume.publish("rand/" .. i, v))
  end
  return texts
end
]]

local function payloads(rt)
  local by = {}
  for _, m in ipairs(rt:peek(5000)) do by[m.topic:match("^lume/spec%-device/telemetry/(.*)$")] = m.payload end
  return by
end

describe("one JSON rule: lume.publish and lume.json.encode", function()
  it("give the same text and the same errors, case by case", function()
    H.with_runtime({ config = { sandbox = { memory_limit = 8 * 1024 * 1024 } } }, function(rt)
      assert(rt:install("j", SCRIPT))
      local results = {}
      for i, c in ipairs(CASES) do
        local ok, okl, outl, okc, errc = rt:call("j", "run", i, c[1])
        assert(ok, okl)
        results[i] = { okl = okl, outl = outl, okc = okc, errc = errc }
      end
      local pub = payloads(rt)
      for i, c in ipairs(CASES) do
        local r, want = results[i], c[2]
        local what = "case " .. i .. " (" .. c[1] .. ")"
        assert.are.equal(r.okl, r.okc, what .. ": " .. tostring(r.outl) .. " / " .. tostring(r.errc))
        if r.okl then
          assert.are.equal(r.outl, pub["case/" .. i], what)
          if want then assert.are.equal(want, r.outl, what) end
        else
          assert.is_nil(pub["case/" .. i], what)
          assert.are.equal(r.outl, r.errc, what)
          if want then assert.are.equal(want, "ERR: " .. r.outl, what) end
        end
      end
    end)
  end)

  it("agree on 300 random documents", function()
    H.with_runtime({ config = { sandbox = { memory_limit = 8 * 1024 * 1024 } } }, function(rt)
      assert(rt:install("j", SCRIPT))
      local _, texts = assert(rt:call("j", "random_docs", 300, 4242))
      local pub = payloads(rt)
      assert.are.equal(300, #texts)
      for i = 1, 300 do
        assert.are.equal(texts[i], pub["rand/" .. i], "document " .. i)
      end
    end)
  end)

  it("arrays decoded by lume (the store) stay arrays, empty or not", function()
    H.with_runtime({}, function(rt)
      assert(rt:install("j", SCRIPT))
      local _, text, a_is, b_is = rt:call("j", "stored")
      assert.are.equal('{"a":[],"b":{},"c":[[]]}', text)
      assert.is_true(a_is)
      assert.is_false(b_is)
      assert.are.same({ a = {}, b = {}, c = { {} } }, json.decode(payloads(rt).stored))
      assert.are.equal(text, json.encode(json.decode(payloads(rt).stored), { sort_keys = true }))
    end)
  end)

  it("the pure-Lua encoder outside lume follows the same rule", function()
    for i, c in ipairs(CASES) do
      local want = c[2]
      if want and not c[1]:find("lume%.") then
        local v = assert(load("local json = ... ; return " .. c[1], "=case", "t"))(json)
        local ok, out = pcall(json.encode, v)
        if not ok then out = "ERR: " .. out:gsub("^json%.encode: ", "") end
        assert.are.equal(want, out, "case " .. i .. " (" .. c[1] .. ")")
      end
    end
  end)

  it("json.array marks with a metatable, and says so when the table has another", function()
    local t = json.array({ 1 })
    assert.is_true(json.is_array(t))
    assert.are.equal(t, json.array(t))
    assert.is_true(json.is_array(json.array(setmetatable({}, { __jsontype = "array" }))))
    assert.has_error(function() json.array(setmetatable({}, {})) end,
      'json.array: the table already has a metatable (give that metatable __jsontype = "array" '
      .. "to encode the table as an array)")
    assert.is_false(json.is_array({}))
    assert.is_false(json.is_array(json.null))
  end)
end)
