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
end)
