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


--- Decode what `encode` produced.
-- @tparam table enc `{base =, scale =, deltas =}`
-- @treturn {number,...} the values
function delta.decode(enc)
  local fname = "delta.decode"
  if type(enc) ~= "table" then
    error(fname .. ": expected an encoded table {base, scale, deltas}, got " .. show(enc), 2)
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
