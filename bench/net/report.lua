-- bench/net/report.lua — the tables of bench/net/run, from the JSON lines it
-- collects (one object per run; fields written by bench/net/run, count_sub,
-- mosq_pub, push_lat and `lume stats`).
--
--   lua5.4 bench/net/report.lua throughput|rtt|push RESULTS.jsonl
package.path = arg[0]:gsub("[^/]+$", "") .. "../../stdlib/?.lua;" .. package.path
local json = require "lume.json"

local what, file = arg[1], arg[2]
local runs = {}
for line in io.lines(file) do
  if line:match("^{") then
    local r, err = json.decode(line)
    if not r then error(file .. ": " .. err) end
    runs[#runs + 1] = r
  end
end

local function num(x) return type(x) == "number" and x or nil end
local function get(t, ...)
  for _, k in ipairs({ ... }) do
    if type(t) ~= "table" then return nil end
    t = t[k]
  end
  if t == json.null then return nil end
  return t
end

-- 1234567.8 -> "1,234,568"
local function grouped(x)
  if not x then return "-" end
  local s = string.format("%.0f", x)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end
local function ms(x) return x and string.format("%.3g", x) or "-" end

local function table_out(head, rows)
  local w = {}
  for _, r in ipairs({ head, table.unpack(rows) }) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #tostring(c)) end
  end
  local function line(r)
    local cells = {}
    for i, c in ipairs(r) do cells[i] = string.format("%-" .. w[i] .. "s", tostring(c)) end
    print("| " .. table.concat(cells, " | ") .. " |")
  end
  line(head)
  local sep = {}
  for i = 1, #w do sep[i] = string.rep("-", w[i]) end
  print("|-" .. table.concat(sep, "-|-") .. "-|")
  for _, r in ipairs(rows) do line(r) end
end

if what == "throughput" then
  local rows, notes, cpu = {}, {}, {}
  for _, tr in ipairs({ "mqtt", "mqtts" }) do
    for _, q in ipairs({ 1, 0 }) do
      local best, all, lost, cpus = {}, { lume = {}, peer = {} }, { lume = 0, peer = 0 }, {
        lume = { pub = 0, broker = 0, sub = 0, n = 0 }, peer = { pub = 0, broker = 0, sub = 0, n = 0 } }
      local resent, cipher, expected = 0, nil, nil
      for _, r in ipairs(runs) do
        if r.bench == "tp" and r.tr == tr and r.qos == q then
          local rate = num(get(r, "sub", "rate")) or 0
          local miss = (num(get(r, "sub", "missing")) or 0)
          local dups = (num(get(r, "sub", "dups")) or 0)
          expected = get(r, "sub", "expected")
          table.insert(all[r.who], grouped(rate) .. (miss > 0 and (" (" .. miss .. " missing)") or "")
                                   .. (dups > 0 and (" (" .. dups .. " dup)") or ""))
          lost[r.who] = lost[r.who] + miss
          if miss == 0 and rate > (best[r.who] or 0) then best[r.who] = rate end
          local c = cpus[r.who]
          c.pub = c.pub + (num(r.pub_cpu_s) or num(get(r, "pub", "cpu_s")) or 0)
          c.broker = c.broker + (num(r.broker_cpu_s) or 0)
          c.sub = c.sub + (num(get(r, "sub", "cpu_s")) or 0)
          c.n = c.n + 1
          if r.who == "lume" then resent = resent + (num(get(r, "stats", "net", "resent")) or 0) end
          if r.who == "peer" and get(r, "pub", "tls") ~= "none" then
            cipher = get(r, "pub", "tls") .. " " .. get(r, "pub", "cipher")
          end
        end
      end
      if cpus.lume.n + cpus.peer.n > 0 then
        local goal = q == 1 and 1.0 or 0.8
        local ratio = best.lume and best.peer and best.lume / best.peer
        local met = ratio and ratio >= goal and lost.lume == 0
        rows[#rows + 1] = { tr .. "://", q, grouped(best.lume), grouped(best.peer),
                            ratio and string.format("%.2f", ratio) or "-",
                            string.format(">= %.1f", goal), met and "yes" or "NO" }
        notes[#notes + 1] = string.format("%s:// QoS %d rounds — lume: %s; libmosquitto: %s%s%s",
          tr, q, table.concat(all.lume, ", "), table.concat(all.peer, ", "),
          resent > 0 and string.format("; lume resent %d", resent) or "",
          cipher and ("; TLS: " .. cipher) or "")
        local per = 100000 / (expected or 1)
        local function c(who, k)
          local x = cpus[who]
          return x.n > 0 and string.format("%.2f", x[k] / x.n * per) or "-"
        end
        cpu[#cpu + 1] = { tr .. "://", q, c("lume", "pub"), c("peer", "pub"), c("lume", "broker"),
                          c("peer", "broker"), c("lume", "sub"), c("peer", "sub") }
      end
    end
  end
  table_out({ "transport", "QoS", "lume msg/s", "libmosquitto msg/s", "lume / peer", "goal", "met" },
            rows)
  print()
  print("best round shown (a round with missing messages does not count); every round:")
  for _, n in ipairs(notes) do print("  " .. n) end
  print()
  print("CPU seconds per 100,000 messages (mean of the rounds; lume's includes its start-up):")
  table_out({ "transport", "QoS", "lume", "libmosquitto", "broker (lume)", "broker (peer)",
              "subscriber (lume)", "subscriber (peer)" }, cpu)

elseif what == "rtt" then
  local rows = {}
  local goals = {
    telemetry = { p99 = 55, text = "p99 <= 55 ms (commit_interval_ms 50 + 5)" },
    alarm = { p99 = 5, text = "p99 <= 5 ms" },
  }
  for _, r in ipairs(runs) do
    if r.bench == "rtt" then
      local l = get(r, "sub", "lat") or {}
      local label, goal
      if r.who == "lume" then
        label = r.lane == "telemetry" and "lume, telemetry lane (committed every 50 ms)"
                or r.variant == "lazy" and "lume, alarm lane, durable_lanes = {} (committed at the end of the turn)"
                or "lume, alarm lane (durable: committed before publish returns)"
        goal = goals[r.lane]
      else
        label = "libmosquitto at 1 kHz, its own timestamps"
      end
      local met = "-"
      if goal then
        met = (num(l.p99_ms) and l.p99_ms <= goal.p99 and l.n == get(r, "sub", "expected")) and "yes" or "NO"
      end
      local drops = get(r, "stats", "sensors", "vibration", "drops")
      rows[#rows + 1] = { label, l.n or 0, ms(l.p50_ms), ms(l.p99_ms), ms(l.max_ms), ms(l.mean_ms),
                          goal and goal.text or "-", met,
                          drops and tostring(drops) or "-" }
    end
  end
  table_out({ "publisher", "n", "p50 ms", "p99 ms", "max ms", "mean ms", "goal", "met",
              "ring drops" }, rows)
  print()
  print("lume's time starts when the sampler took the sample (the t of on_sample), so it")
  print("includes the sample's trip through the ring to the loop and the Lua handler;")
  print("the peer's starts right before mosquitto_publish. Both end in the same subscriber.")

elseif what == "push" then
  local rows, drows = {}, {}
  for _, r in ipairs(runs) do
    if r.bench == "push" then
      local p, f = get(r, "push", "push") or {}, get(r, "push", "floor") or {}
      local failed = get(r, "push", "failed") or 0
      local label = r.broker == "nodelay" and "mosquitto, set_tcp_nodelay true"
                    or "mosquitto defaults (Nagle on)"
      local met = (num(p.p50_ms) and p.p50_ms <= 20 and failed == 0) and "yes" or "NO"
      rows[#rows + 1] = { label, string.format("%d/%d", p.n or 0, (p.n or 0) + failed),
                          ms(p.p50_ms), ms(p.p99_ms), ms(p.max_ms), ms(f.p50_ms), ms(f.p99_ms),
                          "p50 <= 20 ms", met }
      local v = get(r, "stats", "sensors", "vibration") or {}
      drows[#drows + 1] = { label, v.samples or "-", v.drops or "-", v.overruns or "-",
                            ms(num(v.late_p99_us) and v.late_p99_us / 1000), "drops = 0",
                            v.drops == 0 and "yes" or "NO" }
      if failed > 0 then
        print(string.format("%s: %d push(es) failed, first: %s", label, failed,
                            get(r, "push", "error") or "?"))
      end
      if not rows.bytes then
        rows.bytes = string.format("script %d bytes, desired document %d bytes",
                                   get(r, "push", "script_bytes") or 0, get(r, "push", "doc_bytes") or 0)
      end
    end
  end
  table_out({ "broker", "pushes ok", "push p50 ms", "push p99 ms", "push max ms",
              "floor p50 ms", "floor p99 ms", "goal", "met" }, rows)
  print()
  print("push: desired document published -> reported scripts.bench running the new version,")
  print("status active (" .. (rows.bytes or "") .. ").")
  print("floor: one QoS 1 message published and received back through the same broker.")
  print()
  print("The 1 kHz vibration sensor during the whole run (start, connect, every push):")
  table_out({ "broker", "samples", "ring drops", "overruns", "lateness p99 ms", "goal", "met" }, drows)
else
  error("usage: report.lua throughput|rtt|push RESULTS.jsonl")
end
