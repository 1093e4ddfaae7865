--- A small, strict JSON encoder and decoder (RFC 8259) in pure Lua.
--
-- Mapping between Lua and JSON:
--
-- * `nil` and `json.null` encode as `null`; `null` decodes as `json.null`
--   (a sentinel, so arrays keep their length: test with `v == json.null`;
--   note that `json.null` is truthy).
-- * Integers encode without a fraction; so do floats with an integral value
--   in the range of Lua integers (`3.0` -> `3`); other floats with the
--   shortest of `%.14g` .. `%.17g` that reads back exactly. NaN and infinity
--   have no JSON form and raise an error that names where they were found.
--   Decoded numbers without fraction or exponent become Lua integers when
--   they fit in 64 bits, floats otherwise.
-- * Strings must be valid UTF-8; they are written as is, except `"`, `\` and
--   control characters, which are escaped. Decoding handles every escape,
--   including `\u` surrogate pairs, and checks that the result is UTF-8.
-- * A table whose metatable (as `getmetatable` shows it) has
--   `__jsontype = "array"` encodes as an array, even when empty: `json.array`
--   gives a table that metatable, and so does `json.decode` to every array
--   (lume's C decoder too: `lume.store.get`, `lume.twin.desired`), so an
--   empty `[]` re-encodes as `[]`. `__jsontype = "null"` encodes as `null`
--   (that is `json.null`). Otherwise the keys decide: exactly `1..n` is an
--   array, all strings (or no keys: `{}`) an object. Any other table (a
--   sparse array, a mix of key types, keys that are neither strings nor
--   positive integers, a cycle) raises an error. Object members come in the
--   table's own order (`next`) unless `sort_keys` is given. Decoded object
--   keys come in no particular order; a duplicated key keeps its last value.
--
-- This is lume's one rule for Lua values as JSON: `lume.publish`,
-- `lume.twin.report` and the store encode tables with the same rule in C
-- (bindings/luajson.c), byte for byte and error for error (only the prefix
-- differs: `publish: cannot encode NaN at value.v`).
--
-- Errors. `json.encode` raises (a value that cannot be encoded is a bug in
-- the caller): `json.encode: cannot encode NaN at value.readings[3]`, where
-- the path uses Lua's 1-based indices. `json.decode` is for text from
-- elsewhere and returns `nil, message` when the text is not JSON:
-- `json.decode: expected ',' or '}' at line 1 col 17 (found ']')`, with the
-- line and (byte) column of the problem. Both raise on misuse (a decode
-- argument that is not a string, an unknown option).
--
-- Nesting deeper than `max_depth` (default 64) is refused by both, so the
-- decoder cannot be driven into deep recursion by hostile input, and what
-- the encoder writes the decoder accepts.
--
-- @module lume.json
-- @usage
--   local json = require "lume.json"
--
--   local s = json.encode({id = "t1", v = {21.5, 21.7}, tags = json.array()},
--                         {sort_keys = true})
--   --> {"id":"t1","tags":[],"v":[21.5,21.7]}
--
--   local doc, err = json.decode('{"cmd": "rate", "hz": 10, "note": null}')
--   if not doc then lume.log.warn("%s", err) return end
--   print(doc.hz, doc.note == json.null)   --> 10   true

local check = require "lume.check"
local show = check.show
local byte, char, find, format, sub, gsub, rep =
  string.byte, string.char, string.find, string.format, string.sub, string.gsub, string.rep
local concat, sort = table.concat, table.sort
local getmetatable, setmetatable, rawget, next, tostring, type, error, pcall =
  getmetatable, setmetatable, rawget, next, tostring, type, error, pcall
local floor, huge, mtype, tointeger = math.floor, math.huge, math.type, math.tointeger
local utf8len, utf8char = utf8.len, utf8.char

local json = {}

local DEFAULT_MAX_DEPTH = 64

--- The JSON `null`. Encodes as `null`; `json.decode` returns it for `null`.
-- Its metatable is protected; what `getmetatable` shows of it says
-- `__jsontype = "null"`, which is how lume's C encoder knows it too.
json.null = setmetatable({}, {
  __name = "json.null",
  __tostring = function() return "json.null" end,
  __newindex = function() error("json.null is read-only", 2) end,
  __metatable = { __jsontype = "null" },
})

-- The metatable of the tables json.array and json.decode mark as arrays.
local ARRAY_MT = { __jsontype = "array" }

-- What a table's metatable says of its JSON type: "array", "null" or nil.
local function jsontype(t)
  local mt = getmetatable(t)
  if type(mt) == "table" then
    local jt = rawget(mt, "__jsontype")
    if jt == "array" or jt == "null" then return jt end
  end
  return nil
end

--- Mark a table as a JSON array, so that it encodes as `[]` even when empty.
-- The mark is a metatable (`{__jsontype = "array"}`), seen by lume's C
-- encoder too (`lume.publish`); a table that already has another metatable
-- cannot take it: put `__jsontype = "array"` in that metatable instead.
-- @tparam[opt] table t the table (a new one if omitted)
-- @treturn table t
function json.array(t)
  if t == nil then
    return setmetatable({}, ARRAY_MT)
  elseif type(t) ~= "table" then
    error("json.array: expected a table or nothing, got " .. type(t), 2)
  end
  local mt = getmetatable(t)
  if mt == nil then return setmetatable(t, ARRAY_MT) end
  if jsontype(t) == "array" then return t end
  error("json.array: the table already has a metatable (give that metatable "
        .. '__jsontype = "array" to encode the table as an array)', 2)
end

--- Whether a table is marked as an array (by `json.array`, `json.decode`,
-- lume's decoder, or its own metatable's `__jsontype = "array"`).
-- @treturn boolean
function json.is_array(t)
  return type(t) == "table" and jsontype(t) == "array"
end


local function check_depth(fname, d)
  if d == nil then return DEFAULT_MAX_DEPTH end
  local n = type(d) == "number" and tointeger(d)
  if not n or n < 1 then
    error(fname .. ": max_depth must be a positive integer, got " .. show(d), 3)
  end
  return n
end

---------------------------------------------------------------------------
-- Encoder
---------------------------------------------------------------------------

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local c = char(i)
  if not escapes[c] then escapes[c] = format("\\u%04x", i) end
end

-- Encoder state: buf (output pieces), keys (path from the root, one key per
-- level), depth, seen (tables on the current path), opts.
local Enc = {}
Enc.__index = Enc

function Enc:path()
  local parts = { "value" }
  for i = 1, self.depth do
    local k = self.keys[i]
    if type(k) == "number" then
      parts[#parts + 1] = "[" .. k .. "]"
    elseif find(k, "^[%a_][%w_]*$") then
      parts[#parts + 1] = "." .. k
    else
      parts[#parts + 1] = "[" .. show(k) .. "]"
    end
  end
  return concat(parts)
end

function Enc:fail(msg)
  error("json.encode: " .. msg .. " at " .. self:path(), 0)
end

function Enc:number(x)
  if mtype(x) == "integer" then return format("%d", x) end
  if x ~= x then self:fail("cannot encode NaN") end
  if x == huge or x == -huge then
    self:fail("cannot encode " .. (x > 0 and "inf" or "-inf"))
  end
  if x == floor(x) and x >= -9.2233720368547758e18 and x < 9.2233720368547758e18 then
    return format("%d", x) -- integral and within int64: written as an integer
  end
  -- The shortest of 14..17 significant digits that reads back exactly.
  local s = format("%.14g", x)
  if tonumber(s) ~= x then
    s = format("%.15g", x)
    if tonumber(s) ~= x then
      s = format("%.16g", x)
      if tonumber(s) ~= x then s = format("%.17g", x) end
    end
  end
  return s
end

function Enc:string(s)
  local ok, bad = utf8len(s)
  if not ok then
    self:fail(format("string is not valid UTF-8 (bad byte at position %d)", bad))
  end
  return '"' .. gsub(s, '[%z\1-\31"\\]', escapes) .. '"'
end

function Enc:newline(depth)
  local ind = self.indent
  if ind then
    local buf = self.buf
    buf[#buf + 1] = "\n" .. rep(ind, depth)
  end
end

function Enc:value(v)
  local buf = self.buf
  local t = type(v)
  if v == nil or v == json.null then
    buf[#buf + 1] = "null"
  elseif t == "boolean" then
    buf[#buf + 1] = v and "true" or "false"
  elseif t == "number" then
    buf[#buf + 1] = self:number(v)
  elseif t == "string" then
    buf[#buf + 1] = self:string(v)
  elseif t == "table" then
    local jt = jsontype(v)
    if jt == "null" then
      buf[#buf + 1] = "null"
    else
      self:table(v, jt == "array")
    end
  else
    self:fail("cannot encode a " .. t)
  end
end

function Enc:table(tbl, marked)
  if self.seen[tbl] then self:fail("table contains a cycle") end
  if self.depth >= self.max_depth then
    self:fail(format("nesting deeper than %d", self.max_depth))
  end

  -- Classify the keys (raw: `next`, never a __pairs).
  local n, strings, ints, maxint, odd = 0, 0, 0, 0, nil
  for k in next, tbl do
    n = n + 1
    if type(k) == "string" then
      strings = strings + 1
    elseif mtype(k) == "integer" and k > 0 then
      ints = ints + 1
      if k > maxint then maxint = k end
    else
      odd = odd or k
    end
  end
  local is_array
  if odd ~= nil then
    self:fail(format("table has a %s key %s (JSON keys are strings)", type(odd), show(odd)))
  elseif marked or (n > 0 and ints == n) then
    if strings > 0 then
      local k = next(tbl)
      while type(k) ~= "string" do k = next(tbl, k) end
      self:fail(format("array table has a string key %s", show(k)))
    elseif maxint ~= n then
      self:fail(format("sparse array (key %d, but only %d elements); "
                       .. "use json.null for holes", maxint, n))
    end
    is_array = true
  elseif ints > 0 then
    local k = next(tbl)
    while type(k) == "string" do k = next(tbl, k) end
    self:fail(format("table mixes string keys and the integer key %d", k))
  else
    is_array = false
  end

  local buf, depth, keys = self.buf, self.depth + 1, self.keys
  self.seen[tbl] = true
  self.depth = depth
  if is_array then
    buf[#buf + 1] = "["
    for i = 1, n do
      if i > 1 then buf[#buf + 1] = "," end
      self:newline(depth)
      keys[depth] = i
      self:value(tbl[i])
    end
    if n > 0 then self:newline(depth - 1) end
    buf[#buf + 1] = "]"
  else
    local names = {}
    for k in next, tbl do names[#names + 1] = k end
    if self.sort_keys then sort(names) end
    local colon = self.indent and ": " or ":"
    buf[#buf + 1] = "{"
    for i = 1, #names do
      local k = names[i]
      if i > 1 then buf[#buf + 1] = "," end
      self:newline(depth)
      keys[depth] = k
      buf[#buf + 1] = self:string(k)
      buf[#buf + 1] = colon
      self:value(tbl[k])
    end
    if #names > 0 then self:newline(depth - 1) end
    buf[#buf + 1] = "}"
  end
  keys[depth] = nil
  self.depth = depth - 1
  self.seen[tbl] = nil
end

--- Encode a value as JSON text.
-- @param v a table, string, number, boolean, nil or `json.null`
-- @tparam[opt] table opts
--   `sort_keys` (boolean): write object keys in sorted order (deterministic
--   output); `indent` (integer or string): pretty-print, indenting each level
--   by that many spaces or by that string; `max_depth` (integer, default 64).
-- @treturn string
function json.encode(v, opts)
  opts = check.options("json.encode", opts, { "sort_keys", "indent", "max_depth" }, 3, true)
  local indent = opts.indent
  if indent ~= nil then
    if type(indent) == "number" and tointeger(indent) and indent >= 0 then
      indent = rep(" ", indent)
    elseif type(indent) ~= "string" or find(indent, "[^ \t]") then
      error("json.encode: indent must be a number of spaces or a string of "
            .. "spaces and tabs, got " .. show(indent), 2)
    end
  end
  local enc = setmetatable({
    buf = {}, keys = {}, depth = 0, seen = {},
    sort_keys = opts.sort_keys and true or false,
    indent = indent,
    max_depth = check_depth("json.encode", opts.max_depth),
  }, Enc)
  enc:value(v)
  return concat(enc.buf)
end

---------------------------------------------------------------------------
-- Decoder
--
-- Recursive descent over the string, by byte position. Errors inside raise
-- a ParseError, which `json.decode` turns into `nil, message`; anything else
-- (out of memory, a host's CPU budget) propagates untouched.
---------------------------------------------------------------------------

local ParseError = {}

local function describe_at(s, pos)
  local c = sub(s, pos, pos)
  if c == "" then return "end of input" end
  local b = byte(c)
  if b < 32 or b >= 127 then return format("byte 0x%02x", b) end
  return "'" .. c .. "'"
end

local function fail(s, pos, msg, no_found)
  local line, col = 1, pos
  local start = 1
  while true do
    local nl = find(s, "\n", start, true)
    if not nl or nl >= pos then break end
    line = line + 1
    start = nl + 1
  end
  col = pos - start + 1
  local text = format("json.decode: %s at line %d col %d", msg, line, col)
  if not no_found then
    text = text .. " (found " .. describe_at(s, pos) .. ")"
  end
  error(setmetatable({ msg = text }, ParseError), 0)
end

local function skip(s, pos)
  local _, e = find(s, "^[ \t\r\n]*", pos)
  return e + 1
end

local simple_escapes = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b",
  [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t",
}

-- Append s[i..j] to buf after checking it is UTF-8.
local function add_raw(s, i, j, buf)
  if j < i then return end
  local ok, bad = utf8len(s, i, j)
  if not ok then fail(s, bad, "invalid UTF-8 in string") end
  buf[#buf + 1] = sub(s, i, j)
end

local function hex4(s, pos)
  local h = sub(s, pos, pos + 3)
  if not find(h, "^%x%x%x%x$") then return nil end
  return tonumber(h, 16)
end

-- pos is at the opening quote. Returns the string and the position after
-- the closing quote.
local function parse_string(s, pos)
  local i = pos + 1
  local buf
  while true do
    local j = find(s, '[%z\1-\31"\\]', i)
    if not j then fail(s, pos, "unterminated string", true) end
    local c = byte(s, j)
    if c == 34 then
      if not buf then
        local ok, bad = utf8len(s, i, j - 1)
        if not ok then fail(s, bad, "invalid UTF-8 in string") end
        return sub(s, i, j - 1), j + 1
      end
      add_raw(s, i, j - 1, buf)
      return concat(buf), j + 1
    elseif c == 92 then
      buf = buf or {}
      add_raw(s, i, j - 1, buf)
      local e = byte(s, j + 1)
      if e == 117 then -- \u
        local cp = hex4(s, j + 2)
        if not cp then fail(s, j, "invalid \\u escape (expected 4 hex digits)") end
        local after = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = sub(s, after, after + 1) == "\\u" and hex4(s, after + 2)
          if not lo or lo < 0xDC00 or lo > 0xDFFF then
            fail(s, j, format("unpaired surrogate \\u%04X (a high surrogate must be "
                              .. "followed by a \\u escape for a low one)", cp), true)
          end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          after = after + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(s, j, format("unpaired surrogate \\u%04X", cp), true)
        end
        buf[#buf + 1] = utf8char(cp)
        i = after
      else
        local r = e and simple_escapes[e]
        if not r then fail(s, j + 1, "invalid escape in string") end
        buf[#buf + 1] = r
        i = j + 2
      end
    else
      fail(s, j, "control character in string (it must be escaped)")
    end
  end
end

local function parse_number(s, pos)
  local p = pos
  if byte(s, p) == 45 then p = p + 1 end -- '-'
  local c = byte(s, p)
  if c == 48 then -- '0'
    p = p + 1
    c = byte(s, p)
    if c and c >= 48 and c <= 57 then fail(s, p - 1, "leading zero in number", true) end
  elseif c and c >= 49 and c <= 57 then
    local _, e = find(s, "^%d+", p)
    p = e + 1
  else
    fail(s, p, "expected a digit")
  end
  local int = true
  if byte(s, p) == 46 then -- '.'
    local _, e = find(s, "^%d+", p + 1)
    if not e then fail(s, p + 1, "expected a digit after '.'") end
    p, int = e + 1, false
  end
  c = byte(s, p)
  if c == 101 or c == 69 then -- 'e' 'E'
    local q = p + 1
    c = byte(s, q)
    if c == 43 or c == 45 then q = q + 1 end
    local _, e = find(s, "^%d+", q)
    if not e then fail(s, q, "expected a digit in the exponent") end
    p, int = e + 1, false
  end
  local text = sub(s, pos, p - 1)
  local v = tonumber(text)
  if int then v = tointeger(v) or v else v = v + 0.0 end
  return v, p
end

local parse_value

local function parse_array(s, pos, depth, max_depth)
  if depth >= max_depth then
    fail(s, pos, format("nesting deeper than %d", max_depth), true)
  end
  depth = depth + 1
  local arr, n = setmetatable({}, ARRAY_MT), 0
  pos = skip(s, pos + 1)
  if byte(s, pos) == 93 then return arr, pos + 1 end -- ']'
  while true do
    local v
    v, pos = parse_value(s, pos, depth, max_depth)
    n = n + 1
    arr[n] = v
    pos = skip(s, pos)
    local c = byte(s, pos)
    if c == 93 then return arr, pos + 1 end
    if c ~= 44 then fail(s, pos, "expected ',' or ']'") end
    pos = pos + 1
  end
end

local function parse_object(s, pos, depth, max_depth)
  if depth >= max_depth then
    fail(s, pos, format("nesting deeper than %d", max_depth), true)
  end
  depth = depth + 1
  local obj = {}
  pos = skip(s, pos + 1)
  if byte(s, pos) == 125 then return obj, pos + 1 end -- '}'
  while true do
    if byte(s, pos) ~= 34 then fail(s, pos, "expected a string key") end
    local k
    k, pos = parse_string(s, pos)
    pos = skip(s, pos)
    if byte(s, pos) ~= 58 then fail(s, pos, "expected ':'") end
    local v
    v, pos = parse_value(s, pos + 1, depth, max_depth)
    obj[k] = v
    pos = skip(s, pos)
    local c = byte(s, pos)
    if c == 125 then return obj, pos + 1 end
    if c ~= 44 then fail(s, pos, "expected ',' or '}'") end
    pos = skip(s, pos + 1)
  end
end

local literals = { [116] = { "true", true }, [102] = { "false", false },
                   [110] = { "null", json.null } }

function parse_value(s, pos, depth, max_depth)
  pos = skip(s, pos)
  local c = byte(s, pos)
  if c == 123 then return parse_object(s, pos, depth, max_depth) end
  if c == 91 then return parse_array(s, pos, depth, max_depth) end
  if c == 34 then return parse_string(s, pos) end
  if c == 45 or (c and c >= 48 and c <= 57) then return parse_number(s, pos) end
  local lit = c and literals[c]
  if lit then
    local word = lit[1]
    if sub(s, pos, pos + #word - 1) == word then
      return lit[2], pos + #word
    end
  end
  fail(s, pos, "expected a value")
end

local function parse_document(s, max_depth)
  local pos = 1
  if sub(s, 1, 3) == "\239\187\191" then pos = 4 end -- UTF-8 byte order mark
  local v
  v, pos = parse_value(s, pos, 0, max_depth)
  pos = skip(s, pos)
  if pos <= #s then fail(s, pos, "unexpected text after the value") end
  return v
end

--- Decode JSON text.
-- @tparam string s the text
-- @tparam[opt] table opts `max_depth` (integer, default 64): the deepest
--   nesting of arrays and objects accepted
-- @return the value, or nil and a message naming the line and column of
--   the first problem
function json.decode(s, opts)
  if type(s) ~= "string" then
    error("json.decode: expected a string, got " .. type(s), 2)
  end
  opts = check.options("json.decode", opts, { "max_depth" }, 3, true)
  local max_depth = check_depth("json.decode", opts.max_depth)
  local ok, res = pcall(parse_document, s, max_depth)
  if ok then return res end
  if getmetatable(res) == ParseError then return nil, res.msg end
  error(res, 0)
end

return json
