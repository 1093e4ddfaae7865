-- busted spec for lume.delta (pure Lua; runs under plain lua5.4 + busted).

local delta = require "lume.delta"

local SEED = 4242

-- Within precision/2, allowing for the rounding of the float arithmetic.
local function within(decoded, original, p)
  return math.abs(decoded - original) <= p / 2 + 1e-12 * math.max(1, math.abs(original))
end

describe("lume.delta", function()
  before_each(function() math.randomseed(SEED) end)

  describe("encode / decode", function()
    it("produces a base, the scale and integer deltas", function()
      local enc = delta.encode({ 21.37, 21.38, 21.38, 21.35 }, { precision = 0.01 })
      assert.are.equal(2137, enc.base)
      assert.are.equal(0.01, enc.scale)
      assert.are.same({ 1, 0, -3 }, enc.deltas)
      for _, d in ipairs(enc.deltas) do assert.are.equal("integer", math.type(d)) end
      assert.are.equal("integer", math.type(enc.base))
    end)

    it("decodes to the nearest doubles of the decimals when 1/precision is whole", function()
      local values = { 21.37, 0.35, 0.41, 0.57, -0.7, 0.83, 0 }  -- 0.35 ~= 35 * 0.01
      assert.are.same(values, delta.decode(delta.encode(values, { precision = 0.01 })))
    end)

    it("round-trips random series within precision / 2", function()
      for _, p in ipairs{ 0.01, 0.1, 0.5, 1, 0.003, 7, 1e-6 } do
        local values, v = {}, (math.random() - 0.5) * 1000
        for i = 1, 500 do
          v = v + (math.random() - 0.5) * 10
          values[i] = v
        end
        local enc = delta.encode(values, { precision = p })
        local out = delta.decode(enc)
        assert.are.equal(#values, #out)
        for i = 1, #values do
          assert.is_true(within(out[i], values[i], p),
            string.format("p=%s i=%d: %.17g decoded as %.17g", p, i, values[i], out[i]))
        end
      end
    end)

    it("does not accumulate error along a long series", function()
      -- a slow ramp whose steps are each below the precision
      local values = {}
      for i = 1, 10000 do values[i] = i * 0.0037 end
      local out = delta.decode(delta.encode(values, { precision = 0.01 }))
      for i = 1, #values do
        assert.is_true(within(out[i], values[i], 0.01), "i = " .. i)
      end
    end)

    it("decodes an integer precision to integers", function()
      local out = delta.decode(delta.encode({ 100, 103, 99 }, { precision = 1 }))
      assert.are.same({ 100, 103, 99 }, out)
      for _, v in ipairs(out) do assert.are.equal("integer", math.type(v)) end
    end)

    it("rounds halves up", function()
      local enc = delta.encode({ 0.5, 1.5, -0.5, -1.5 }, { precision = 1 })
      assert.are.equal(1, enc.base)
      assert.are.same({ 1, -2, -1 }, enc.deltas) -- 1, 2, 0, -1
    end)

    it("handles an empty series and a single value", function()
      local empty = delta.encode({}, { precision = 0.1 })
      assert.is_nil(empty.base)
      assert.are.same({}, empty.deltas)
      assert.are.same({}, delta.decode(empty))
      assert.are.same({ 2.5 }, delta.decode(delta.encode({ 2.5 }, { precision = 0.1 })))
    end)

    it("accepts integral floats from another JSON decoder", function()
      assert.are.same({ 1, 1.5, 1.25 },
        delta.decode({ base = 4.0, scale = 0.25, deltas = { 2.0, -1.0 } }))
    end)

    it("refuses what it cannot represent", function()
      assert.has_error(function() delta.encode({ 1, 0 / 0 }, { precision = 0.1 }) end,
        "delta.encode: values[2] must be a finite number, got nan")
      assert.has_error(function() delta.encode({ 1e300 }, { precision = 0.01 }) end,
        "delta.encode: values[1] 1e+300 is too large for precision 0.01 "
        .. "(|v / precision| must be below 2^53)")
      assert.has_error(function() delta.encode({ 1 }, {}) end,
        "delta.encode: precision is required (for example {precision = 0.01})")
      assert.has_error(function() delta.encode({ 1 }, { precision = 0 }) end,
        "delta.encode: precision must be a positive finite number, got 0")
      assert.has_error(function() delta.encode({ 1 }, { precison = 0.1 }) end,
        'delta.encode: unknown option "precison" (expected one of: precision)')
      assert.has_error(function() delta.encode(5, { precision = 1 }) end,
        "delta.encode: values must be an array of numbers, got 5")
      assert.has_error(function() delta.decode({ base = 1, scale = 1, deltas = { 1, 0.5 } }) end,
        "delta.decode: deltas[2] must be an integer, got 0.5")
      assert.has_error(function() delta.decode({ base = 1, deltas = {} }) end,
        "delta.decode: scale must be a positive finite number, got nil")
      assert.has_error(function() delta.decode({ scale = 1, deltas = { 1 } }) end,
        "delta.decode: deltas without a base")
    end)
  end)

  describe("streaming", function()
    it("emits a keyframe, then deltas", function()
      local e = delta.encoder{ precision = 0.1 }
      assert.are.same({ "keyframe", 200 }, { e:push(20.04) })
      assert.are.same({ "delta", 2 }, { e:push(20.21) })
      assert.are.same({ "delta", 0 }, { e:push(20.19) })
      assert.are.same({ "delta", -5 }, { e:push(19.7) })
    end)

    it("emits a keyframe every keyframe_every pushes", function()
      local e = delta.encoder{ precision = 1, keyframe_every = 3 }
      local kinds = {}
      for i = 1, 8 do kinds[i] = (e:push(i)) end
      assert.are.same({ "keyframe", "delta", "delta", "keyframe", "delta", "delta",
                        "keyframe", "delta" }, kinds)
      local every = delta.encoder{ precision = 1, keyframe_every = 1 }
      assert.are.equal("keyframe", (every:push(1)))
      assert.are.equal("keyframe", (every:push(2)))
    end)

    it("keyframe() forces the next push to be one", function()
      local e = delta.encoder{ precision = 1 }
      e:push(1); e:push(2)
      e:keyframe()
      assert.are.same({ "keyframe", 3 }, { e:push(3) })
      assert.are.same({ "delta", 1 }, { e:push(4) })
    end)

    it("round-trips through the decoder, and matches the batch encoding", function()
      local values, v = {}, 50
      for i = 1, 1000 do
        v = v + (math.random() - 0.5) * 3
        values[i] = v
      end
      local e = delta.encoder{ precision = 0.05, keyframe_every = 64 }
      local d = delta.decoder{ precision = 0.05 }
      local batch = delta.decode(delta.encode(values, { precision = 0.05 }))
      for i = 1, #values do
        local out = d:push(e:push(values[i]))
        assert.is_true(within(out, values[i], 0.05), "i = " .. i)
        assert.are.equal(batch[i], out, "i = " .. i)
      end
    end)

    it("a decoder joining mid-stream waits for a keyframe", function()
      local e = delta.encoder{ precision = 1, keyframe_every = 4 }
      local items = {}
      for i = 1, 8 do items[i] = { e:push(i * 10) } end
      local d = delta.decoder{ precision = 1 }
      local got = {}
      for i = 2, 8 do
        local v, err = d:push(items[i][1], items[i][2])
        got[#got + 1] = v or err
      end
      assert.are.same({
        "decoder:push: a delta needs a keyframe before it",
        "decoder:push: a delta needs a keyframe before it",
        "decoder:push: a delta needs a keyframe before it",
        50, 60, 70, 80,
      }, got)
    end)

    it("checks its arguments", function()
      assert.has_error(function() delta.encoder{ precision = 1, keyframe_every = 0 } end,
        "delta.encoder: keyframe_every must be a positive integer, got 0")
      assert.has_error(function() delta.encoder{} end,
        "delta.encoder: precision is required (for example {precision = 0.01})")
      assert.has_error(function() delta.encoder{ precision = 1 }:push(math.huge) end,
        "encoder:push: value must be a finite number, got inf")
      assert.has_error(function() delta.decoder{ precision = 1 }:push("key", 1) end,
        'decoder:push: kind must be "keyframe" or "delta", got "key"')
      assert.has_error(function() delta.decoder{ precision = 1 }:push("keyframe", 1.5) end,
        "decoder:push: expected an integer, got 1.5")
    end)
  end)

  describe("packed form (format version 2, docs/delta.md)", function()
    local PRECISIONS = { 1e-6, 1e-5, 0.001, 0.003, 0.01, 0.05, 0.1, 0.5, 1, 2, 7, 10, 100 }
    local LENGTHS = { 0, 1, 2, 3, 7, 64, 65, 500, 3000 }

    -- A random series of length n at precision p: a walk with steps of a few
    -- quanta, occasional jumps of a million quanta, negative values too.
    local function series(n, p)
      local values, times, v, t = {}, {}, (math.random() - 0.5) * 1e4 * p, 1764500000
      for i = 1, n do
        local r = math.random()
        if r < 0.02 then
          v = v + (math.random() - 0.5) * 2e6 * p        -- a large jump
        elseif r < 0.03 then
          v = -v                                         -- a change of sign
        else
          v = v + (math.random() - 0.5) * 8 * p
        end
        t = t + 0.5 + math.random() * 0.01
        values[i], times[i] = v, t
      end
      return values, times
    end

    it("round-trips random series of many lengths and precisions within precision / 2", function()
      for pi, p in ipairs(PRECISIONS) do
        for ni, n in ipairs(LENGTHS) do
          do
            local every = ({ 0, 1, 16 })[(pi + ni) % 3 + 1]  -- each length meets each
            local values, times = series(n, p)
            local s = delta.pack({ { name = "x", precision = p, values = values, times = times,
                                     order = ni % 2 + 1 } },
                                 { keyframe_every = every, time_order = pi % 2 + 1 })
            local out = assert(delta.unpack(s))
            assert.are.equal(1, #out)
            assert.are.equal(p, out[1].precision)
            assert.are.equal(n, #out[1].values)
            assert.are.equal(n, #out[1].times)
            for i = 1, n do    -- (busted's assert on every value would take seconds)
              local v, t = out[1].values[i], out[1].times[i]
              if not within(v, values[i], p) or not within(t, times[i], 0.001) then
                error(string.format("p=%s n=%d every=%d i=%d: %.17g decoded as %.17g, "
                  .. "time %.17g as %.17g", p, n, every, i, values[i], v, times[i], t))
              end
            end
          end
        end
      end
    end)

    it("decodes to what the table form decodes to, keyframes or not", function()
      local values = series(1000, 0.01)
      local a = delta.decode(delta.encode(values, { precision = 0.01 }))
      local b = delta.decode(delta.pack({ { name = "v", precision = 0.01, values = values } },
                                        { keyframe_every = 10 }))[1].values
      assert.are.same(a, b)
    end)

    it("is small: a slow series costs about a byte a value, keyframes cost more", function()
      local values = {}
      for i = 1, 1000 do values[i] = 20 + math.sin(i / 50) + (math.random() - 0.5) * 0.04 end
      local raw = delta.pack({ { name = "t", precision = 0.01, values = values } },
                             { base64 = false })
      assert.is_true(#raw < 1100, #raw)
      local every = delta.pack({ { name = "t", precision = 0.01, values = values } },
                               { base64 = false, keyframe_every = 10 })
      assert.is_true(#every > #raw)
      assert.are.equal((#raw + 2) // 3 * 4,                    -- base64: 4 per 3 bytes
        #delta.pack({ { name = "t", precision = 0.01, values = values } }))
    end)

    it("reads the raw bytes and base64 alike, and starts with the format id and version", function()
      local sr = { { name = "power", precision = 1, values = { 1, 1, 0, 1 } } }
      local raw = delta.pack(sr, { base64 = false })
      assert.are.equal("LD\2\1\2\5\0\5power\2\0\4\0\0\2\0\1\2", raw)  -- docs/delta.md
      assert.are.equal("TEQC", delta.pack(sr):sub(1, 4))
      assert.are.same(delta.unpack(raw), delta.unpack(delta.pack(sr)))
      assert.are.same({ 1, 1, 0, 1 }, delta.unpack(raw)[1].values)
      for _, v in ipairs(delta.unpack(raw)[1].values) do
        assert.are.equal("integer", math.type(v))       -- an integer precision, integers
      end
    end)

    it("refuses an unknown version, naming it, and bad input with nil and a message", function()
      local good = delta.pack({ { name = "x", precision = 0.1, values = { 1, 2, 3 } } },
                              { base64 = false })
      local function with(pos, b) return good:sub(1, pos - 1) .. string.char(b) .. good:sub(pos + 1) end
      local cases = {
        { with(3, 3), "format version 3 is not supported" },
        { with(3, 1), "format version 1 is not supported" },
        { "TEQD", "format version 3 is not supported" },
        { "XX", "not base64" },
        { "AAAA", "not a lume.delta packed string" },
        { good:sub(1, #good - 1), "truncated in series 1 %(\"x\"%) values%[3%]" },
        { good .. "\0", "1 bytes after the last series" },
        -- LD 2, one series, time precision 1e-3, time base 0, then "x" ...
        { "LD\2\1\2\5\0\1x\2\1\1\0\8\0", "unknown flags 0x08" },
        { "LD\2\1\2\5\0\1x\2\1\1\0\4\0", "unknown flags 0x04" },   -- order 2 times, no times
        { "LD\2\1\2\5\0\1x\0\0\1\0\0\0", "precision 0 %* 10%^0 is not allowed" },
        { "LD\2\1\0\5\0", "time precision 0 %* 10%^%-3 is not allowed" },
        { "LD\2\1\2\5\0\1x\2\0\1\0\0\255\255\255\255\255\255\255\255\1",
          "longer than 8 bytes" },
      }
      for _, c in ipairs(cases) do
        local v, err = delta.unpack(c[1])
        assert.is_nil(v)
        assert.matches("^delta.unpack: ", err)
        assert.matches(c[2], err)
      end
      assert.has_error(function() delta.decode({ v = 2, base = 1, scale = 1, deltas = {} }) end,
        "delta.decode: a table of format version 2 is not supported (tables are version 1; "
        .. "version 2 is a packed string)")
      assert.are.same({ 1 }, delta.decode({ v = 1, base = 1, scale = 1, deltas = {} }))
    end)

    it("groups readings of several sensors into series with series_of", function()
      local readings = { { s = "a", v = 1, t = 10 }, { s = "b", v = 5, t = 10.5 },
                         { s = "a", v = 2, t = 11 } }
      local series = delta.series_of(readings, { a = 1, b = 0.5 })
      assert.are.same({
        { name = "a", precision = 1, values = { 1, 2 }, times = { 10, 11 } },
        { name = "b", precision = 0.5, values = { 5 }, times = { 10.5 } },
      }, series)
      assert.are.same(series, delta.unpack(delta.pack(series)))
      assert.has_error(function() delta.series_of(readings, { a = 1 }) end,
        'delta.series_of: readings[2]: no precision for "b"')
    end)

    it("answers damaged input with nil and a message, never an error", function()
      local good = delta.pack({
        { name = "a", precision = 0.01, values = { 1, 2, 3, 4.5, -7 }, times = { 1, 2, 3, 4, 5 },
          order = 2 },
        { name = "b", precision = 100, values = { 1e6, 2e6 } },
      }, { base64 = false, keyframe_every = 2 })
      for _ = 1, 3000 do
        local s = good
        for _ = 1, math.random(1, 3) do
          local pos, r = math.random(1, #s), math.random()
          local b = string.char(math.random(0, 255))
          if r < 0.6 then s = s:sub(1, pos - 1) .. b .. s:sub(pos + 1)    -- a byte changed
          elseif r < 0.8 then s = s:sub(1, pos)                          -- cut short
          else s = s:sub(1, pos) .. b .. s:sub(pos + 1) end              -- a byte added
        end
        local ok, out, err = pcall(delta.unpack, s)
        if not ok then error("unpack raised on " .. string.format("%q", s) .. ": " .. out) end
        if out == nil and not (type(err) == "string" and err:find("^delta.unpack: ")) then
          error("no message for " .. string.format("%q", s))
        end
      end
    end)

    it("refuses what it cannot pack, naming the series and the item", function()
      assert.has_error(function()
        delta.pack({ { name = "t", precision = 0.1, values = { 1, 0 / 0 } } })
      end, "delta.pack: series[1].values[2] must be a finite number, got nan")
      assert.has_error(function()
        delta.pack({ { name = "t", precision = 1e-30, values = { 1 } } })
      end, "delta.pack: series[1].precision 1e-30 is not a decimal m * 10^e with "
        .. "|e| <= 22 (use one such as 0.01, 0.5 or 100)")
      assert.has_error(function()
        delta.pack({ { name = "t", precision = 0.01, values = { 1e300 } } })
      end)
      assert.has_error(function()
        delta.pack({ { name = "t", precision = 1, values = { 1, 2 }, times = { 1 } } })
      end, "delta.pack: series[1] has 2 values and 1 times")
      assert.has_error(function() delta.pack({}, { keyframe_every = -1 }) end,
        "delta.pack: keyframe_every must be a non-negative integer, got -1")
    end)

    it("is decoded to the same doubles by an independent decoder in Python", function()
      local dir = os.tmpname()
      local f = assert(io.open(dir, "w"))
      local packed = {}
      for _, p in ipairs(PRECISIONS) do
        for _, n in ipairs{ 0, 1, 2, 300 } do
          local values, times = series(n, p)
          local s = delta.pack({
            { name = "a", precision = p, values = values, times = times, order = n % 2 + 1 },
            { name = "b\u{e9}", precision = 0.5, values = { -3.25, 7, 1e6 } },
            { name = "c", precision = 0.1, values = { 1, 2, 4, 8 }, times = { 5, 6, 7.5, 8 },
              order = 2 },
          }, { keyframe_every = n % 7, time_order = p < 0.1 and 1 or 2 })
          packed[#packed + 1] = s
          f:write(s, "\n")
        end
      end
      f:write(packed[1]:sub(1, 4) == "TEQC" and "TEQD\n" or "\n")
      f:close()
      local py = assert(io.popen("python3 tests/lua/delta_decode.py " .. dir))
      local lines = {}
      for l in py:lines() do lines[#lines + 1] = l end
      py:close()
      os.remove(dir)
      local json = require "lume.json"
      assert.are.equal(#packed + 1, #lines)
      for i, s in ipairs(packed) do
        local theirs, ours = json.decode(lines[i]), assert(delta.unpack(s))
        assert.are.equal(#ours, #theirs)
        for k = 1, #ours do
          assert.are.equal(ours[k].name, theirs[k].name)
          assert.are.equal(ours[k].precision, theirs[k].precision)
          for _, col in ipairs{ "values", "times" } do
            local a, b = ours[k][col], theirs[k][col]
            assert.are.equal(a == nil, b == nil)
            for j = 1, a and #a or 0 do
              assert.are.equal(a[j], b[j], string.format("line %d %s %s[%d]", i, ours[k].name,
                                                         col, j))
            end
          end
        end
      end
      assert.matches("format version 3 is not supported", json.decode(lines[#lines]).error)
    end)
  end)
end)
