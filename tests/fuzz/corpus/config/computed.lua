local host = os.getenv("HOSTNAME") or "lume"
local id = string.format("%s-%d", host:gsub("[^%w]", "-"), math.floor(2^10))
return { device_id = id:sub(1, 64), status_interval_ms = 5 * 1000,
         net = { url = "ws://" .. ("broker"):rep(2, ".") .. ":80/mqtt" } }
