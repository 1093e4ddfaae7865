-- busted spec for lume.json (pure Lua; runs under plain lua5.4 + busted).

local json = require "lume.json"

local SEED = 1337

-- Deep equality that tells integers from floats and json.null from nil.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math.type(a) == math.type(b) and a == b end
  if type(a) ~= "table" then return a == b end
  if a == json.null or b == json.null then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- A random valid UTF-8 string: ASCII (control characters included), two-,
-- three- and four-byte sequences.
local function random_string()
  local parts = {}
  for i = 1, math.random(0, 12) do
    local r = math.random()
    local cp
    if r < 0.5 then
      cp = math.random(0, 127)
    elseif r < 0.7 then
      cp = math.random(0x80, 0x7FF)
    elseif r < 0.9 then
      repeat cp = math.random(0x800, 0xFFFF) until cp < 0xD800 or cp > 0xDFFF
    else
      cp = math.random(0x10000, 0x10FFFF)
    end
    parts[i] = utf8.char(cp)
  end
  return table.concat(parts)
end

local function random_value(depth)
  local r = math.random(1, depth < 4 and 9 or 6)
  if r == 1 then return json.null
  elseif r == 2 then return math.random() < 0.5
  elseif r == 3 then return math.random(math.mininteger, math.maxinteger)
  elseif r == 4 then
    local x = (math.random() - 0.5) * 10 ^ math.random(-30, 30)
    -- an integral float in the integer range is written, and so read back,
    -- as an integer
    x = math.tointeger(x) or x
    return x
  elseif r == 5 or r == 6 then return random_string()
  elseif r == 7 then
    local arr = json.array()
    for i = 1, math.random(0, 5) do arr[i] = random_value(depth + 1) end
    return arr
  else
    local obj = {}
    for _ = 1, math.random(0, 5) do obj[random_string()] = random_value(depth + 1) end
    return obj
  end
end

-- Expect json.decode(s) to fail with exactly `msg`.
local function decode_error(s, msg)
  local v, err = json.decode(s)
  assert.is_nil(v, "decoded " .. tostring(v) .. " from " .. s)
  assert.are.equal(msg, err)
end

describe("lume.json", function()
  before_each(function() math.randomseed(SEED) end)

  describe("encode", function()
    it("writes scalars", function()
      assert.are.equal("null", json.encode(nil))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("true", json.encode(true))
      assert.are.equal("false", json.encode(false))
      assert.are.equal('"hi"', json.encode("hi"))
    end)

    it("writes integers without a fraction, floats exactly", function()
      assert.are.equal("42", json.encode(42))
      assert.are.equal("-7", json.encode(-7))
      assert.are.equal("3", json.encode(3.0))
      assert.are.equal(tostring(math.maxinteger), json.encode(math.maxinteger))
      assert.are.equal(tostring(math.mininteger), json.encode(math.mininteger))
      assert.are.equal("0.1", json.encode(0.1))
      assert.are.equal("21.5", json.encode(21.5))
      assert.are.equal("1e+300", json.encode(1e300))
      assert.are.equal("1152921504606846976", json.encode(2.0 ^ 60))
      assert.are.equal("float", math.type(json.decode(json.encode(2.0 ^ 64))))
      assert.are.equal(2.0 ^ 64, json.decode(json.encode(2.0 ^ 64)))
      for _ = 1, 2000 do
        local x = (math.random() - 0.5) * 10 ^ math.random(-300, 300)
        local s = json.encode(x)
        assert.are.equal(x, tonumber(s), s)
        assert.is_nil(s:find("[^%d%.eE+-]"), s)
      end
    end)

    it("refuses NaN and infinity, naming where they are", function()
      assert.has_error(function() json.encode({ readings = { 1, 2, 0 / 0 } }) end,
        "json.encode: cannot encode NaN at value.readings[3]")
      assert.has_error(function() json.encode(math.huge) end,
        "json.encode: cannot encode inf at value")
      assert.has_error(function() json.encode({ ["a b"] = { x = -math.huge } }) end,
        'json.encode: cannot encode -inf at value["a b"].x')
    end)

    it("escapes quotes, backslashes and control characters", function()
      assert.are.equal([["a\"b\\c/d"]], json.encode('a"b\\c/d'))
      assert.are.equal([["\b\f\n\r\t"]], json.encode("\b\f\n\r\t"))
      assert.are.equal([["\u0000\u0001\u001f x"]], json.encode("\0\1\31 x"))
      assert.are.equal('"/"', json.encode("/"))
    end)

    it("passes UTF-8 through and refuses invalid UTF-8", function()
      assert.are.equal('"café 😀"', json.encode("café 😀"))
      assert.has_error(function() json.encode({ name = "ab\255c" }) end,
        "json.encode: string is not valid UTF-8 (bad byte at position 3) at value.name")
      assert.has_error(function() json.encode({ ["\192"] = 1 }) end,
        'json.encode: string is not valid UTF-8 (bad byte at position 1) at value["\192"]')
    end)

    it("tells arrays from objects", function()
      assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
      assert.are.equal("{}", json.encode({}))
      assert.are.equal("[]", json.encode(json.array()))
      assert.are.equal("[[],{}]", json.encode({ json.array(), {} }))
      assert.are.equal('{"a":1}', json.encode({ a = 1 }))
      assert.are.equal("[1,null,3]", json.encode({ 1, json.null, 3 }))
      local t = json.array({ 4, 5 })
      assert.are.equal("[4,5]", json.encode(t))
      assert.is_true(json.is_array(t))
      assert.is_false(json.is_array({}))
    end)

    it("refuses tables JSON cannot represent", function()
      assert.has_error(function() json.encode({ 1, nil, 3 }) end,
        "json.encode: sparse array (key 3, but only 2 elements); use json.null for holes at value")
      assert.has_error(function() json.encode({ x = { 1, y = 3 } }) end,
        "json.encode: table mixes string keys and the integer key 1 at value.x")
    end)

    it("refuses non-string keys, functions and cycles", function()
      assert.has_error(function() json.encode({ [true] = 1 }) end,
        "json.encode: table has a boolean key true (JSON keys are strings) at value")
      assert.has_error(function() json.encode({ [1.5] = 1 }) end,
        "json.encode: table has a number key 1.5 (JSON keys are strings) at value")
      assert.has_error(function() json.encode({ f = print }) end,
        "json.encode: cannot encode a function at value.f")
      local a = { b = {} }
      a.b.c = a
      assert.has_error(function() json.encode(a) end,
        "json.encode: table contains a cycle at value.b.c")
      local arr = json.array({ "x" })
      arr.k = 1
      assert.has_error(function() json.encode(arr) end,
        'json.encode: array table has a string key "k" at value')
    end)

    it("encodes a table twice in a tree (not a cycle)", function()
      local shared = { 1 }
      assert.are.equal("[[1],[1]]", json.encode({ shared, shared }))
    end)

    it("limits nesting to max_depth", function()
      local deep = {}
      local cur = deep
      for _ = 1, 63 do cur[1] = {}; cur = cur[1] end
      assert.are.equal(string.rep("[", 63) .. "{}" .. string.rep("]", 63), json.encode(deep))
      cur[1] = {}
      assert.has_error(function() json.encode(deep) end)
      local ok, err = pcall(json.encode, deep)
      assert.is_false(ok)
      assert.matches("^json.encode: nesting deeper than 64 at value%[1%]", err)
      assert.are.equal(65 * 2, #json.encode(deep, { max_depth = 65 }))
    end)

    it("sorts keys and indents on request", function()
      local v = { b = 1, a = { 1, 2 }, c = { d = json.array() } }
      assert.are.equal('{"a":[1,2],"b":1,"c":{"d":[]}}', json.encode(v, { sort_keys = true }))
      assert.are.equal(table.concat({
        "{",
        '  "a": [',
        "    1,",
        "    2",
        "  ],",
        '  "b": 1,',
        '  "c": {',
        '    "d": []',
        "  }",
        "}",
      }, "\n"), json.encode(v, { sort_keys = true, indent = 2 }))
      assert.are.equal('{\n\t"a": 1\n}', json.encode({ a = 1 }, { indent = "\t" }))
      assert.has_error(function() json.encode({}, { indent = "x" }) end,
        'json.encode: indent must be a number of spaces or a string of spaces and tabs, got "x"')
      assert.has_error(function() json.encode({}, { sorted = true }) end,
        'json.encode: unknown option "sorted" (expected one of: indent, max_depth, sort_keys)')
    end)
  end)

  describe("decode", function()
    it("reads scalars", function()
      assert.are.equal(json.null, json.decode("null"))
      assert.are.equal(true, json.decode(" true "))
      assert.are.equal(false, json.decode("false"))
      assert.are.equal("x", json.decode('"x"'))
    end)

    it("reads integers as integers and the rest as floats", function()
      assert.are.equal("integer", math.type(json.decode("42")))
      assert.are.equal(-42, json.decode("-42"))
      assert.are.equal(math.maxinteger, json.decode(tostring(math.maxinteger)))
      assert.are.equal(math.mininteger, json.decode(tostring(math.mininteger)))
      local big = json.decode("123456789012345678901234567890")
      assert.are.equal("float", math.type(big))
      assert.are.equal(1.2345678901234568e29, big)
      assert.are.equal("float", math.type(json.decode("1.0")))
      assert.are.equal(1.5e-7, json.decode("1.5E-7"))
      assert.are.equal(2e10, json.decode("2e+10"))
      assert.are.equal("float", math.type(json.decode("1e2")))
      assert.are.equal(0, json.decode("-0"))
    end)

    it("reads escapes, \\u escapes and surrogate pairs", function()
      assert.are.equal('"\\/\b\f\n\r\t', json.decode([["\"\\\/\b\f\n\r\t"]]))
      assert.are.equal("é", json.decode([["\u00e9"]]))
      assert.are.equal("é", json.decode([["\u00E9"]]))
      assert.are.equal("\0", json.decode([["\u0000"]]))
      assert.are.equal("€", json.decode([["\u20ac"]]))
      assert.are.equal("😀", json.decode([["\ud83d\ude00"]]))
      assert.are.equal("\240\159\152\128", json.decode([["\uD83D\uDE00"]]))
      assert.are.equal("a😀b𝄞c", json.decode([["a\ud83d\ude00b\ud834\udd1ec"]]))
      assert.are.equal("café 😀", json.decode('"café 😀"'))
    end)

    it("refuses unpaired surrogates and bad escapes", function()
      decode_error([["\ud83d"]],
        "json.decode: unpaired surrogate \\uD83D (a high surrogate must be followed by "
        .. "a \\u escape for a low one) at line 1 col 2")
      decode_error([["\ud83d\u0041"]],
        "json.decode: unpaired surrogate \\uD83D (a high surrogate must be followed by "
        .. "a \\u escape for a low one) at line 1 col 2")
      decode_error([["ab\ude00"]], "json.decode: unpaired surrogate \\uDE00 at line 1 col 4")
      decode_error([["\u12g4"]],
        "json.decode: invalid \\u escape (expected 4 hex digits) at line 1 col 2 (found '\\')")
      decode_error([["\x"]], "json.decode: invalid escape in string at line 1 col 3 (found 'x')")
      decode_error('"a\nb"',
        "json.decode: control character in string (it must be escaped) at line 1 col 3 "
        .. "(found byte 0x0a)")
      decode_error('"ab\255"', "json.decode: invalid UTF-8 in string at line 1 col 4 (found byte 0xff)")
      decode_error('"abc', "json.decode: unterminated string at line 1 col 1")
    end)

    it("names the line and column of a syntax error", function()
      decode_error('{"a": 1, "b": 2 ]',
        "json.decode: expected ',' or '}' at line 1 col 17 (found ']')")
      decode_error("[1,\n 2,\n x]", "json.decode: expected a value at line 3 col 2 (found 'x')")
      decode_error("[1, 2", "json.decode: expected ',' or ']' at line 1 col 6 (found end of input)")
      decode_error("", "json.decode: expected a value at line 1 col 1 (found end of input)")
      decode_error("   ", "json.decode: expected a value at line 1 col 4 (found end of input)")
      decode_error("[1,]", "json.decode: expected a value at line 1 col 4 (found ']')")
      decode_error('{"a":1,}', "json.decode: expected a string key at line 1 col 8 (found '}')")
      decode_error("{a:1}", "json.decode: expected a string key at line 1 col 2 (found 'a')")
      decode_error('{"a" 1}', "json.decode: expected ':' at line 1 col 6 (found '1')")
      decode_error("01", "json.decode: leading zero in number at line 1 col 1")
      decode_error("1.", "json.decode: expected a digit after '.' at line 1 col 3 (found end of input)")
      decode_error("-", "json.decode: expected a digit at line 1 col 2 (found end of input)")
      decode_error("1e", "json.decode: expected a digit in the exponent at line 1 col 3 "
        .. "(found end of input)")
      decode_error(".5", "json.decode: expected a value at line 1 col 1 (found '.')")
      decode_error("tru", "json.decode: expected a value at line 1 col 1 (found 't')")
      decode_error("NaN", "json.decode: expected a value at line 1 col 1 (found 'N')")
      decode_error("[1] [2]", "json.decode: unexpected text after the value at line 1 col 5 (found '[')")
      decode_error("1 x", "json.decode: unexpected text after the value at line 1 col 3 (found 'x')")
    end)

    it("survives a depth bomb without deep recursion", function()
      decode_error(string.rep("[", 100000),
        "json.decode: nesting deeper than 64 at line 1 col 65")
      decode_error(string.rep('{"a":', 100000),
        "json.decode: nesting deeper than 64 at line 1 col 321")
      -- exactly 64 levels is fine
      local ok = json.decode(string.rep("[", 64) .. string.rep("]", 64))
      assert.is_table(ok)
      decode_error(string.rep("[", 65) .. string.rep("]", 65),
        "json.decode: nesting deeper than 64 at line 1 col 65")
      assert.is_table(json.decode(string.rep("[", 65) .. string.rep("]", 65), { max_depth = 65 }))
    end)

    it("skips a byte order mark and whitespace", function()
      assert.are.same({ a = 1 }, json.decode('\239\187\191 {\r\n\t"a" : 1 }\n'))
    end)

    it("keeps the last of duplicate keys, and null as json.null", function()
      local v = json.decode('{"a": 1, "a": 2, "n": null, "l": [null, 1]}')
      assert.are.equal(2, v.a)
      assert.are.equal(json.null, v.n)
      assert.are.equal(2, #v.l)
      assert.are.equal(json.null, v.l[1])
    end)

    it("marks decoded arrays, so empty ones re-encode as []", function()
      local v = json.decode('{"a": [], "b": {}, "c": [[]]}')
      assert.is_true(json.is_array(v.a))
      assert.are.equal('{"a":[],"b":{},"c":[[]]}', json.encode(v, { sort_keys = true }))
    end)

    it("raises on misuse", function()
      assert.has_error(function() json.decode(42) end, "json.decode: expected a string, got number")
      assert.has_error(function() json.decode("1", { max_depth = 0 }) end,
        "json.decode: max_depth must be a positive integer, got 0")
      assert.has_error(function() json.decode("1", { depth = 3 }) end,
        'json.decode: unknown option "depth" (expected one of: max_depth)')
    end)

    it("lets errors that are not its own (a host's CPU budget) through", function()
      local doc = json.encode((function()
        local t = {}
        for i = 1, 2000 do t[i] = { i, "x" } end
        return t
      end)())
      local budget = setmetatable({}, { __tostring = function() return "budget" end })
      debug.sethook(function() error(budget) end, "", 10000)
      local ok, err = pcall(json.decode, doc)
      debug.sethook()
      assert.is_false(ok)
      assert.are.equal(budget, err)
    end)
  end)

  describe("round trips", function()
    it("random documents survive encode -> decode", function()
      for i = 1, 300 do
        local v = random_value(0)
        local s = json.encode(v)
        local back, err = json.decode(s)
        assert.is_nil(err)
        assert.is_true(same(v, back), "document " .. i .. ": " .. s)
        -- sorted output is a fixed point
        local sorted = json.encode(v, { sort_keys = true })
        assert.are.equal(sorted, json.encode(json.decode(sorted), { sort_keys = true }))
        assert.are.equal(sorted, json.encode(json.decode(json.encode(v, { indent = 2 })),
                                             { sort_keys = true }))
      end
    end)

    it("every code point that \\u can spell decodes to its UTF-8", function()
      for _ = 1, 2000 do
        local cp
        repeat cp = math.random(0, 0x10FFFF) until cp < 0xD800 or cp > 0xDFFF
        local esc
        if cp < 0x10000 then
          esc = string.format("\\u%04x", cp)
        else
          local c = cp - 0x10000
          esc = string.format("\\u%04X\\u%04X", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF))
        end
        assert.are.equal(utf8.char(cp), json.decode('"' .. esc .. '"'), esc)
      end
    end)

    it("random strings, control characters included, round-trip", function()
      for _ = 1, 1000 do
        local s = random_string()
        assert.are.equal(s, json.decode(json.encode(s)))
      end
    end)
  end)
end)
