-- bench/delta.lua — bytes on the wire for one sensor trace, sent four ways.
--
--   lua5.4 bench/delta.lua TRACE TMPDIR      (from the top of the tree)
--
-- TRACE is what bench/simtrace prints (NAME TAB T TAB VALUE, in the order
-- the sampler takes them). Two scenarios: the environment readings
-- scripts/routing.lua batches (temperature, humidity, battery, power), and
-- all the sensors (vibration at 100 Hz as well). Each is sent as:
--   * raw JSON per sample: one message {"s","v","t"} per reading;
--   * JSON batches: routing.lua's batches (lume.batch, max_count 120,
--     max_age_s 10, a tick every second) as routing.lua publishes them,
--     {"device","samples":[{"s","v","t"},...]};
--   * the same batches gzip'd (python3's gzip.compress, level 9, mtime 0:
--     what `gzip -9 -n` writes);
--   * lume.delta batches: the same batches as one delta.pack per batch (a
--     series per sensor, its times in ms), in JSON {"device","delta":"<base64>"},
--     and as the raw packed bytes (an MQTT payload may be binary);
--   * a stricter peer: JSON batches with every value rounded to the delta
--     precision and times to the ms, gzip'd — what gzip makes of the same
--     information the delta carries.
-- Wire bytes add what MQTT 3.1.1 adds to each payload (a QoS 1 PUBLISH:
-- fixed header, remaining length, topic, packet id); the topic is
-- lume/sim-1/telemetry/environment, as `lume run` would send it. Every delta
-- batch is decoded again and checked within precision / 2 (times 0.5 ms).
-- Prints two markdown tables and the goal line.
package.path = "stdlib/?.lua;" .. package.path
local json = require "lume.json"
local batch = require "lume.batch"
local delta = require "lume.delta"

local TRACE, TMP = arg[1], arg[2]
assert(TRACE and TMP, "usage: lua5.4 bench/delta.lua TRACE TMPDIR")

-- Keys sorted: Lua's string hashes are seeded per run, so `next` order (what
-- lume.publish writes) changes from run to run, and so would gzip's figures.
local SORTED = { sort_keys = true }
local DEVICE = "sim-1"
local TOPIC = "lume/" .. DEVICE .. "/telemetry/environment"
-- the resolution each sensor's readings are worth (docs/delta.md: the loss is chosen)
local PRECISION = { temperature = 0.01, humidity = 0.1, battery = 0.001, power = 1,
                    vibration = 0.001 }
local ENV = { temperature = true, humidity = true, battery = true, power = true }

local samples = {}
for line in io.lines(TRACE) do
  local s, t, v = line:match("^(%S+)\t(%S+)\t(%S+)$")
  samples[#samples + 1] = { s = s, t = tonumber(t), v = tonumber(v) }
end

-- MQTT 3.1.1 PUBLISH at QoS 1 carrying n payload bytes.
local function wire(n)
  local rem = 2 + #TOPIC + 2 + n
  local len = rem < 128 and 1 or rem < 16384 and 2 or rem < 2097152 and 3 or 4
  return 1 + len + rem
end

-- v rounded to the decimal precision p (0.01, 1), as the shortest decimal
-- that JSON then writes ("21.37", not "21.370000000000001")
local function round(v, p)
  local digits = math.max(0, -math.floor(math.log(p, 10) + 1e-9))
  return tonumber(("%." .. digits .. "f"):format(math.floor(v / p + 0.5) * p))
end

local function scenario(title, keep)
  -- routing.lua's batches, on the trace's own clock
  local batches = {}
  local b = batch.new{ max_count = 120, max_age_s = 10,
                       on_flush = function(items) batches[#batches + 1] = items end }
  local n, next_tick = 0, nil
  for _, s in ipairs(samples) do
    if keep(s.s) then
      next_tick = next_tick or s.t + 1
      while s.t >= next_tick do b:tick(next_tick); next_tick = next_tick + 1 end
      b:add({ s = s.s, v = s.v, t = s.t }, s.t)
      n = n + 1
    end
  end
  b:flush()

  local raw = { payload = 0, wire = 0 }
  for _, s in ipairs(samples) do
    if keep(s.s) then
      local p = #json.encode({ s = s.s, v = s.v, t = s.t }, SORTED)
      raw.payload, raw.wire = raw.payload + p, raw.wire + wire(p)
    end
  end

  local jb, db, dr = { payload = 0, wire = 0 }, { payload = 0, wire = 0 }, { payload = 0, wire = 0 }
  local f = assert(io.open(TMP .. "/batches.jsonl", "w"))
  local fr = assert(io.open(TMP .. "/rounded.jsonl", "w"))
  for _, items in ipairs(batches) do
    local text = json.encode({ device = DEVICE, samples = items }, SORTED)
    jb.payload, jb.wire = jb.payload + #text, jb.wire + wire(#text)
    f:write(text, "\n")
    local rounded = {}
    for i, it in ipairs(items) do
      rounded[i] = { s = it.s, v = round(it.v, PRECISION[it.s]), t = round(it.t, 0.001) }
    end
    fr:write(json.encode({ device = DEVICE, samples = rounded }, SORTED), "\n")

    local series = delta.series_of(items, PRECISION)
    local packed = delta.pack(series)
    local doc = json.encode({ device = DEVICE, delta = packed }, SORTED)
    db.payload, db.wire = db.payload + #doc, db.wire + wire(#doc)
    local bytes = delta.pack(series, { base64 = false })
    dr.payload, dr.wire = dr.payload + #bytes, dr.wire + wire(#bytes)
    -- the round trip, as a receiver would decode it
    local back = assert(delta.unpack(packed))
    for k, s in ipairs(series) do
      for i = 1, #s.values do
        assert(math.abs(back[k].values[i] - s.values[i]) <= s.precision / 2 + 1e-9, s.name)
        assert(math.abs(back[k].times[i] - s.times[i]) <= 0.0005 + 1e-6, s.name)
      end
    end
  end
  f:close(); fr:close()

  local script = assert(io.open(TMP .. "/gz.py", "w"))
  script:write([[
import gzip, sys
for path in sys.argv[1:]:
    sizes = [len(gzip.compress(l.rstrip(b"\n"), compresslevel=9, mtime=0)) for l in open(path, "rb")]
    print(" ".join(map(str, sizes)))
]])
  script:close()
  local py = assert(io.popen(("python3 %s/gz.py %s/batches.jsonl %s/rounded.jsonl"):format(
    TMP, TMP, TMP)))
  local gz, gzr = { payload = 0, wire = 0 }, { payload = 0, wire = 0 }
  for _, acc in ipairs{ gz, gzr } do
    for x in py:read("l"):gmatch("%d+") do
      local p = tonumber(x)
      acc.payload, acc.wire = acc.payload + p, acc.wire + wire(p)
    end
  end
  assert(py:close(), "python3 failed")

  print(("### %s: %d readings, %d batches"):format(title, n, #batches))
  print()
  print("| sent as | messages | payload bytes | on the wire (MQTT) | wire bytes/reading | × gzip'd JSON batches (wire) |")
  print("|---|---:|---:|---:|---:|---:|")
  local function row(name, msgs, a)
    print(("| %s | %d | %d | %d | %.2f | %.3f |"):format(name, msgs, a.payload, a.wire,
      a.wire / n, a.wire / gz.wire))
  end
  row("raw JSON, one message per reading", n, raw)
  row("JSON batches (routing.lua)", #batches, jb)
  row("JSON batches, gzip -9 (**the peer**)", #batches, gz)
  row("JSON batches rounded to the delta precisions, gzip -9", #batches, gzr)
  row("lume.delta batches, base64 in JSON", #batches, db)
  row("lume.delta batches, raw bytes", #batches, dr)
  print()
  local ratio = db.wire / gz.wire
  print(("goal: lume.delta (base64 in JSON) <= 0.5 x gzip'd JSON batches, on the wire: "
         .. "%.3f x (payload only: %.3f x) — %s"):format(ratio, db.payload / gz.payload,
         ratio <= 0.5 and "met" or "NO"))
  print()
end

local pnames = {}
for k, p in pairs(PRECISION) do pnames[#pnames + 1] = ("%s %g"):format(k, p) end
table.sort(pnames)
print("precisions: " .. table.concat(pnames, ", ") .. "; times 0.001 s")
print()
scenario("Environment (what scripts/routing.lua batches)", function(s) return ENV[s] end)
scenario("All five sensors (vibration at 100 Hz too)", function() return true end)
