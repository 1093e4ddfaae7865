--- Delta encoding of numeric series, for compact payloads.
--
-- A series of readings that changes slowly (temperatures, levels, counters)
-- is mostly redundant: after quantising each value to a multiple of a
-- chosen `precision`, the differences between neighbours are small
-- integers, which JSON, CBOR or a varint codec carry in a few bytes each.
--
-- Quantisation is `q = round(v / precision)` (halves round up) and decoding
-- is `v' = q * precision`, so every decoded value lies within
-- `precision / 2` of the original (plus the rounding of one float
-- multiplication; an integer precision decodes to integers). Deltas are
-- taken between *quantised* values, so errors do not accumulate along the
-- series. When `1 / precision` is a whole number (0.01, 0.5, 0.001)
-- decoding divides by it instead, which yields the double nearest the
-- decimal (21.37, not 21.369999999999997).
--
-- `|v / precision|` must stay below 2^53, where doubles stop holding every
-- integer; a larger value raises an error rather than losing precision.
--
-- Batch form: `delta.encode(values, {precision = p})` returns a table
-- `{base = q1, scale = p, deltas = {q2 - q1, q3 - q2, ...}}` (no `base` for
-- an empty series) and `delta.decode` turns it back into values.
--
-- Streaming form: `delta.encoder{precision = p, keyframe_every = n}` gives an
-- object whose `push(v)` returns `"keyframe", q` or `"delta", d`; a keyframe
-- carries the absolute quantised value so that a receiver can start (or
-- resynchronise) there. `delta.decoder{precision = p}` is its counterpart.
--
-- Packed form (format version 2, docs/delta.md): `delta.pack(series, opts)`
-- puts named series, each with its own precision and optional timestamps,
-- in one string of bytes (base64 by default) -- zigzag varints of the
-- quantised deltas, behind a header a decoder in any language can read.
-- `delta.unpack(s)` (and `delta.decode(s)`) reads it back. The batch table
-- above is format version 1: still produced by `encode`, still decoded.
--
-- @module lume.delta
-- @usage
--   local delta = require "lume.delta"
--
--   local enc = delta.encode({21.37, 21.38, 21.38, 21.35}, {precision = 0.01})
--   -- enc = {base = 2137, scale = 0.01, deltas = {1, 0, -3}}
--   local values = delta.decode(enc)   -- {21.37, 21.38, 21.38, 21.35}
--
--   local e = delta.encoder{precision = 0.1, keyframe_every = 100}
--   print(e:push(20.04))               --> keyframe   200
--   print(e:push(20.21))               --> delta      2

local check = require "lume.check"
local show, is_finite, as_integer = check.show, check.is_finite, check.as_integer
local floor, huge = math.floor, math.huge
local tointeger = math.tointeger
local format = string.format

local delta = {}

-- Largest |q| for which every integer is a double (2^53).
local QMAX = 9007199254740992.0



local function check_precision(fname, p, level)
  if p == nil then
    error(fname .. ": precision is required (for example {precision = 0.01})", level + 1)
  end
  if not is_finite(p) or p <= 0 then
    error(fname .. ": precision must be a positive finite number, got " .. show(p),
          level + 1)
  end
end

-- The whole number 1/p when there is one (p = 0.01 -> 100), else nil.
-- An integer precision decodes by multiplication, to integers.
local function inverse_of(p)
  if math.type(p) == "integer" then return nil end
  local inv = 1 / p
  local r = floor(inv + 0.5)
  if r >= 1 and r < QMAX and math.abs(inv - r) <= 1e-9 * r then
    return r + 0.0
  end
  return nil
end

-- Quantise v; on failure returns nil and a reason.
local function quantise(v, p)
  if not is_finite(v) then
    return nil, "must be a finite number, got " .. show(v)
  end
  local x = v / p
  if not (x > -QMAX and x < QMAX) then
    return nil, format("%s is too large for precision %s (|v / precision| must be "
                       .. "below 2^53)", show(v), show(p))
  end
  local q = floor(x)
  if x - q >= 0.5 then q = q + 1 end
  return tointeger(q)
end

local function dequantise(q, p, inv)
  if inv then return q / inv end
  return q * p
end

--- Encode a series.
-- @tparam {number,...} values the series (finite numbers)
-- @tparam table opts `precision`, required: the quantum values are rounded to
-- @treturn table `{base = integer|nil, scale = precision, deltas = {integer,...}}`
function delta.encode(values, opts)
  local fname = "delta.encode"
  if type(values) ~= "table" then
    error(fname .. ": values must be an array of numbers, got " .. show(values), 2)
  end
  check.options(fname, opts, { precision = true }, 3)
  local p = opts.precision
  check_precision(fname, p, 2)
  local deltas = {}
  local base, prev
  for i = 1, #values do
    local q, why = quantise(values[i], p)
    if not q then
      error(format("%s: values[%d] %s", fname, i, why), 2)
    end
    if prev == nil then
      base = q
    else
      deltas[i - 1] = q - prev
    end
    prev = q
  end
  return { base = base, scale = p, deltas = deltas }
end


--- Decode what `encode` or `pack` produced.
-- @tparam table|string enc `{base =, scale =, deltas =}` (format version 1;
--   `v = 1` allowed, any other `v` refused), or a packed string (version 2:
--   the same as `delta.unpack`)
-- @treturn {number,...} the values (a table), or what `unpack` returns (a string)
function delta.decode(enc)
  local fname = "delta.decode"
  if type(enc) == "string" then return delta.unpack(enc) end
  if type(enc) ~= "table" then
    error(fname .. ": expected an encoded table {base, scale, deltas} or a packed string, got "
          .. show(enc), 2)
  end
  if enc.v ~= nil and enc.v ~= 1 then
    error(format("%s: a table of format version %s is not supported (tables are version 1; "
                 .. "version 2 is a packed string)", fname, show(enc.v)), 2)
  end
  local p, deltas = enc.scale, enc.deltas
  if not is_finite(p) or p <= 0 then
    error(fname .. ": scale must be a positive finite number, got " .. show(p), 2)
  end
  if type(deltas) ~= "table" then
    error(fname .. ": deltas must be an array of integers, got " .. show(deltas), 2)
  end
  local out = {}
  if enc.base == nil then
    if #deltas > 0 then
      error(fname .. ": deltas without a base", 2)
    end
    return out
  end
  local q = as_integer(enc.base)
  if not q then
    error(fname .. ": base must be an integer, got " .. show(enc.base), 2)
  end
  local inv = inverse_of(p)
  out[1] = dequantise(q, p, inv)
  for i = 1, #deltas do
    local d = as_integer(deltas[i])
    if not d then
      error(format("%s: deltas[%d] must be an integer, got %s", fname, i, show(deltas[i])), 2)
    end
    q = q + d
    out[i + 1] = dequantise(q, p, inv)
  end
  return out
end

---------------------------------------------------------------------------
-- Packed form: format version 2 (docs/delta.md is its specification)
---------------------------------------------------------------------------

local char, byte, concat = string.char, string.byte, table.concat
local VERSION = 2
local MAGIC = "LD"
local MAX_EXP = 22          -- 10^22 is the largest power of ten a double holds exactly
local POW10 = {}
for k = 0, MAX_EXP do POW10[k] = 10.0 ^ k end

delta.VERSION = VERSION

-- precision as m * 10^e (m a positive integer, |e| <= 22), or nil and why.
-- The decimal is what the decoder multiplies by, so the pair must give back
-- exactly the double the caller chose: 0.01 -> 1, -2; 0.5 -> 5, -1; 100 -> 1, 2.
local function decimal_of(p)
  for k = 0, MAX_EXP do
    local m = floor(p * POW10[k] + 0.5)
    if m >= 1 and m < QMAX and m / POW10[k] == p then
      local e = -k
      m = tointeger(m)
      while e < MAX_EXP and m % 10 == 0 do m, e = m // 10, e + 1 end
      return m, e
    end
  end
  return nil, format("precision %s is not a decimal m * 10^e with |e| <= %d "
                     .. "(use one such as 0.01, 0.5 or 100)", show(p), MAX_EXP)
end

-- The value of quantum q for precision m * 10^e: the normative formula of
-- docs/delta.md, so every decoder gets the same double.
local function value_of(q, m, e)
  local x = q * m                                  -- |x| < 2^53: exact
  if e >= 0 then
    local v = x * POW10[e]
    return tointeger(v) or v                       -- integers stay integers
  end
  return x / POW10[-e]
end

local function zigzag(n) return n >= 0 and 2 * n or -2 * n - 1 end

local function put_varint(out, z)
  local n = #out
  while z >= 0x80 do
    n = n + 1
    out[n] = char((z & 0x7f) | 0x80)
    z = z >> 7
  end
  out[n + 1] = char(z)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_ENC, B64_DEC = {}, {}
for i = 1, 64 do
  B64_ENC[i - 1] = B64:sub(i, i)
  B64_DEC[byte(B64, i)] = i - 1
end

local function base64(s)
  local out, n = {}, 0
  for i = 1, #s - 2, 3 do
    local a, b, c = byte(s, i, i + 2)
    local x = (a << 16) | (b << 8) | c
    n = n + 1
    out[n] = B64_ENC[x >> 18] .. B64_ENC[(x >> 12) & 63] .. B64_ENC[(x >> 6) & 63]
             .. B64_ENC[x & 63]
  end
  local rest = #s % 3
  if rest == 1 then
    local x = byte(s, #s) << 16
    out[n + 1] = B64_ENC[x >> 18] .. B64_ENC[(x >> 12) & 63] .. "=="
  elseif rest == 2 then
    local a, b = byte(s, #s - 1, #s)
    local x = (a << 16) | (b << 8)
    out[n + 1] = B64_ENC[x >> 18] .. B64_ENC[(x >> 12) & 63] .. B64_ENC[(x >> 6) & 63] .. "="
  end
  return concat(out)
end

-- bytes, or nil and why
local function unbase64(s)
  if #s % 4 ~= 0 then
    return nil, format("not base64: %d characters, not a multiple of 4", #s)
  end
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local pad = 0
    if i + 3 == #s then
      if d == 61 then pad = 1; d = 65 end            -- "=" read as "A" (0)
      if pad == 1 and c == 61 then pad = 2; c = 65 end
    end
    a, b, c, d = B64_DEC[a], B64_DEC[b], B64_DEC[c], B64_DEC[d]
    if not (a and b and c and d) then
      return nil, format("not base64: a character outside A-Z a-z 0-9 + / at %d..%d", i, i + 3)
    end
    local x = (a << 18) | (b << 12) | (c << 6) | d
    n = n + 1
    if pad == 0 then out[n] = char(x >> 16, (x >> 8) & 255, x & 255)
    elseif pad == 1 then out[n] = char(x >> 16, (x >> 8) & 255)
    else out[n] = char(x >> 16) end
  end
  return concat(out)
end

-- The quanta of one column (values or times) at precision p = m * 10^e.
-- Raises naming the item.
local function quantise_column(fname, what, xs, p, m)
  local qs = {}
  local limit = QMAX / m
  for i = 1, #xs do
    local v = xs[i]
    if not is_finite(v) then
      error(format("%s: %s[%d] must be a finite number, got %s", fname, what, i, show(v)), 3)
    end
    local x = v / p
    local q = (x > -QMAX and x < QMAX) and floor(x)
    if q and x - q >= 0.5 then q = q + 1 end
    if not q or not (q > -limit and q < limit) then
      error(format("%s: %s[%d] %s is too large for precision %s (|round(v / precision)| * m "
                   .. "must be below 2^53, the precision being m * 10^e)", fname, what, i,
                   show(v), show(p)), 3)
    end
    qs[i] = tointeger(q)
  end
  return qs
end

-- Write quanta qs (minus base) to out: a keyframe (the quantum itself) at
-- item 0 and every `every` items, else the difference from the item before
-- (order 1) or the difference of that difference from the one before it
-- (order 2; the item right after a keyframe is an order-1 difference).
local function put_column(out, qs, base, every, order)
  local prev, d
  for i = 1, #qs do
    local q = qs[i] - base
    if prev == nil or (every > 0 and (i - 1) % every == 0) then
      put_varint(out, zigzag(q))
      d = nil
    elseif order == 1 or d == nil then
      d = q - prev
      put_varint(out, zigzag(d))
    else
      local nd = q - prev
      put_varint(out, zigzag(nd - d))
      d = nd
    end
    prev = q
  end
end

local PACK_OPTIONS = { keyframe_every = true, time_precision = true, time_order = true,
                       base64 = true }
local SERIES_KEYS = { name = true, precision = true, values = true, times = true, order = true }

--- Pack named series into one string (format version 2, docs/delta.md).
-- @tparam {table,...} series each `{name = string, precision = number,
--   values = {number,...}, times = {number,...} | nil, order = 1 | 2}`
--   (times, when given, one per value; order: 2 sends differences of
--   differences, for values that move smoothly; default 1)
-- @tparam[opt] table opts `keyframe_every` (non-negative integer, default 0:
--   only each column's first item is a keyframe), `time_precision`
--   (default 0.001 s), `time_order` (default 2: regular sampling makes the
--   differences of the times' differences small), `base64` (default true;
--   false returns the raw bytes)
-- @treturn string
function delta.pack(series, opts)
  local fname = "delta.pack"
  opts = check.options(fname, opts, PACK_OPTIONS, 3, true)
  local every = check.number(fname, "keyframe_every", opts.keyframe_every,
                             { integer = true, min = 0, default = 0 })
  local tp = check.number(fname, "time_precision", opts.time_precision,
                          { gt = 0, default = 0.001 })
  local torder = check.number(fname, "time_order", opts.time_order,
                              { integer = true, min = 1, max = 2, default = 2 })
  local tm, te = decimal_of(tp)
  if not tm then error(fname .. ": time_precision: " .. te, 2) end
  check.type(fname, "series", series, "table")
  local cols, base = {}, nil
  for si = 1, #series do
    local s = series[si]
    local where = format("series[%d]", si)
    check.options(fname .. " " .. where, s, SERIES_KEYS)
    check.type(fname, where .. ".name", s.name, "string")
    check.type(fname, where .. ".values", s.values, "table")
    check.type(fname, where .. ".times", s.times, "table", true)
    local p = check.number(fname, where .. ".precision", s.precision, { gt = 0 })
    local order = check.number(fname, where .. ".order", s.order,
                               { integer = true, min = 1, max = 2, default = 1 })
    local m, e = decimal_of(p)
    if not m then error(format("%s: %s.%s", fname, where, e), 2) end
    if s.times and #s.times ~= #s.values then
      error(format("%s: %s has %d values and %d times", fname, where, #s.values, #s.times), 2)
    end
    local c = { s = s, m = m, e = e, order = order,
                values = quantise_column(fname, where .. ".values", s.values, p, m) }
    if s.times then
      c.times = quantise_column(fname, where .. ".times", s.times, tp, tm)
      base = base or c.times[1]
    end
    cols[si] = c
  end
  local out = { MAGIC, char(VERSION) }
  put_varint(out, #series)
  put_varint(out, zigzag(tm)); put_varint(out, zigzag(te))
  base = base or 0
  put_varint(out, zigzag(base))
  for si = 1, #cols do
    local c = cols[si]
    put_varint(out, #c.s.name)
    out[#out + 1] = c.s.name
    put_varint(out, zigzag(c.m)); put_varint(out, zigzag(c.e))
    put_varint(out, #c.values)
    put_varint(out, every)
    out[#out + 1] = char((c.times and 1 or 0) | (c.order == 2 and 2 or 0)
                         | (c.times and torder == 2 and 4 or 0))
    put_column(out, c.values, 0, every, c.order)
    if c.times then put_column(out, c.times, base, every, torder) end
  end
  local bytes = concat(out)
  if opts.base64 == false then return bytes end
  return base64(bytes)
end

--- Readings of several sensors, in the order they came, as series for
-- `pack`: one per name, in the order of first appearance, with its times.
-- @tparam {table,...} readings `{s = name, v = value, t = time}` each (the
--   items scripts/routing.lua batches)
-- @tparam table precisions name -> precision, for every name present
-- @treturn {table,...} series
function delta.series_of(readings, precisions)
  local fname = "delta.series_of"
  check.type(fname, "readings", readings, "table")
  check.type(fname, "precisions", precisions, "table")
  local by, series = {}, {}
  for i = 1, #readings do
    local r = readings[i]
    local s = by[r.s]
    if not s then
      local p = precisions[r.s]
      if p == nil then
        error(format("%s: readings[%d]: no precision for %s", fname, i, show(r.s)), 2)
      end
      s = { name = r.s, precision = p, values = {}, times = {} }
      by[r.s] = s
      series[#series + 1] = s
    end
    local n = #s.values + 1
    s.values[n], s.times[n] = r.v, r.t
  end
  return series
end

-- A reader over the bytes; its methods return nil and why at the end.
local function reader(s)
  local pos = 1
  local r = {}
  function r.pos() return pos - 1 end
  function r.varint(what)
    local z, shift = 0, 0
    for i = 0, 7 do                 -- |q| < 2^53 needs at most 8 bytes
      local b = byte(s, pos)
      if not b then return nil, format("truncated in %s at byte %d", what, pos - 1) end
      pos = pos + 1
      z = z | ((b & 0x7f) << shift)
      if b < 0x80 then return z end
      shift = shift + 7
      if i == 7 then break end
    end
    return nil, format("varint of %s at byte %d is longer than 8 bytes", what, pos - 8)
  end
  function r.signed(what)
    local z, err = r.varint(what)
    if not z then return nil, err end
    return (z >> 1) ~ -(z & 1)
  end
  function r.bytes(n, what)
    if pos + n - 1 > #s then return nil, format("truncated in %s at byte %d", what, pos - 1) end
    local b = s:sub(pos, pos + n - 1)
    pos = pos + n
    return b
  end
  return r
end

local function get_column(r, what, n, m, e, every, order, base)
  local xs, q, d = {}, 0, nil
  local limit = QMAX // m
  for i = 1, n do
    local x, err = r.signed(format("%s[%d]", what, i))
    if not x then return nil, err end
    if i == 1 or (every > 0 and (i - 1) % every == 0) then
      q, d = x + base, nil
    elseif order == 1 or d == nil then
      d = x
      q = q + d
    else
      d = d + x
      q = q + d
    end
    if q >= limit or q <= -limit or (d and (d >= 2 * QMAX or d <= -2 * QMAX)) then
      return nil, format("%s[%d] is out of range (|q * m| must be below 2^53)", what, i)
    end
    xs[i] = value_of(q, m, e)
  end
  return xs
end

-- A precision m * 10^e from r, checked; or nil and why.
local function get_precision(r, what)
  local m, err = r.signed(what)
  if not m then return nil, err end
  local e
  e, err = r.signed(what)
  if not e then return nil, err end
  if m < 1 or e < -MAX_EXP or e > MAX_EXP then
    return nil, format("%s %d * 10^%d is not allowed (m >= 1, |e| <= %d)", what, m, e, MAX_EXP)
  end
  return m, e
end

--- Read a packed string (base64 or raw bytes) back.
-- @tparam string s what `pack` returned
-- @treturn {table,...}|nil series `{name, precision, values, times}` (times
--   only where packed), or nil and a message naming what was wrong
function delta.unpack(s)
  local fname = "delta.unpack"
  if type(s) ~= "string" then
    return nil, fname .. ": expected a packed string, got " .. show(s)
  end
  local bytes = s
  if s:sub(1, 2) ~= MAGIC or (byte(s, 3) or 0) >= 0x20 then
    local err
    bytes, err = unbase64(s)
    if not bytes then return nil, fname .. ": " .. err end
  end
  if bytes:sub(1, 2) ~= MAGIC then
    return nil, fname .. ": not a lume.delta packed string (it must start with \"LD\", "
                .. "base64 \"TE\")"
  end
  local version = byte(bytes, 3)
  if version ~= VERSION then
    return nil, format("%s: format version %s is not supported (this decoder reads version "
                       .. "%d packed strings and version 1 tables {base, scale, deltas})",
                       fname, show(version), VERSION)
  end
  local r = reader(bytes)
  r.bytes(3, "header")
  local fail = function(err) return nil, fname .. ": " .. err end
  local count, tm, te, base, err
  count, err = r.varint("the series count"); if not count then return fail(err) end
  tm, te = get_precision(r, "time precision"); if not tm then return fail(te) end
  base, err = r.signed("the time base"); if not base then return fail(err) end
  local out = {}
  for si = 1, count do
    local where = format("series %d", si)
    local len, name, m, e, n, every, flags
    len, err = r.varint(where .. " name length"); if not len then return fail(err) end
    name, err = r.bytes(len, where .. " name"); if not name then return fail(err) end
    where = format("series %d (%q)", si, name)
    m, e = get_precision(r, where .. " precision"); if not m then return fail(e) end
    n, err = r.varint(where .. " count"); if not n then return fail(err) end
    every, err = r.varint(where .. " keyframe interval"); if not every then return fail(err) end
    flags, err = r.bytes(1, where .. " flags"); if not flags then return fail(err) end
    flags = byte(flags)
    if flags & ~7 ~= 0 or (flags & 4 ~= 0 and flags & 1 == 0) then
      return fail(format("%s: unknown flags 0x%02x (this decoder knows 0x01 times, 0x02 "
                         .. "values of order 2, 0x04 times of order 2)", where, flags))
    end
    local values, times
    values, err = get_column(r, where .. " values", n, m, e, every, flags & 2 ~= 0 and 2 or 1, 0)
    if not values then return fail(err) end
    if flags & 1 ~= 0 then
      times, err = get_column(r, where .. " times", n, tm, te, every,
                              flags & 4 ~= 0 and 2 or 1, base)
      if not times then return fail(err) end
    end
    out[si] = { name = name, precision = value_of(1, m, e), values = values, times = times }
  end
  if r.pos() ~= #bytes then
    return fail(format("%d bytes after the last series", #bytes - r.pos()))
  end
  return out
end

---------------------------------------------------------------------------
-- Streaming encoder
---------------------------------------------------------------------------

local Encoder = {}
Encoder.__index = Encoder
Encoder.__name = "lume.delta.encoder"

--- A streaming encoder.
-- @tparam table opts `precision` (required); `keyframe_every` (optional
--   positive integer): emit a keyframe every that many pushes (1 makes every
--   push a keyframe). Without it only the first push, and the first push
--   after `keyframe()`, is a keyframe.
-- @treturn encoder
function delta.encoder(opts)
  local fname = "delta.encoder"
  check.options(fname, opts, { precision = true, keyframe_every = true }, 3)
  check_precision(fname, opts.precision, 2)
  local every = opts.keyframe_every
  if every ~= nil then
    every = as_integer(every)
    if not every or every < 1 then
      error(fname .. ": keyframe_every must be a positive integer, got "
            .. show(opts.keyframe_every), 2)
    end
  end
  return setmetatable({ scale = opts.precision, every = every, prev = nil, since = 0 },
                      Encoder)
end

--- Encode the next value.
-- @tparam number v the value (finite)
-- @treturn string `"keyframe"` or `"delta"`
-- @treturn integer the quantised value (keyframe) or its difference from
--   the previous quantised value (delta)
function Encoder:push(v)
  local q, why = quantise(v, self.scale)
  if not q then error("encoder:push: value " .. why, 2) end
  local prev = self.prev
  self.prev = q
  if prev == nil or (self.every and self.since >= self.every) then
    self.since = 1
    return "keyframe", q
  end
  self.since = self.since + 1
  return "delta", q - prev
end

--- Make the next push a keyframe (after a reconnect, say).
function Encoder:keyframe()
  self.prev = nil
end

---------------------------------------------------------------------------
-- Streaming decoder
---------------------------------------------------------------------------

local Decoder = {}
Decoder.__index = Decoder
Decoder.__name = "lume.delta.decoder"

--- A streaming decoder, the counterpart of `delta.encoder`.
-- @tparam table opts `precision` (required, the encoder's)
-- @treturn decoder
function delta.decoder(opts)
  local fname = "delta.decoder"
  check.options(fname, opts, { precision = true }, 3)
  check_precision(fname, opts.precision, 2)
  return setmetatable({ scale = opts.precision, inv = inverse_of(opts.precision), q = nil },
                      Decoder)
end

--- Decode the next item.
-- A delta that arrives before any keyframe (a receiver that joined
-- mid-stream) cannot be decoded: it returns nil and a message, and the
-- decoder waits for the next keyframe.
-- @tparam string kind `"keyframe"` or `"delta"`
-- @tparam integer n what the encoder returned with it
-- @treturn number|nil the value
-- @treturn[opt] string why there is no value
function Decoder:push(kind, n)
  local i = as_integer(n)
  if not i then
    error("decoder:push: expected an integer, got " .. show(n), 2)
  end
  if kind == "keyframe" then
    self.q = i
  elseif kind == "delta" then
    if self.q == nil then
      return nil, "decoder:push: a delta needs a keyframe before it"
    end
    self.q = self.q + i
  else
    error("decoder:push: kind must be \"keyframe\" or \"delta\", got " .. show(kind), 2)
  end
  return dequantise(self.q, self.scale, self.inv)
end

return delta
