local s = ("a"):rep(20) .. "b"
local n = 0
for i = 1, 100 do n = n + #s:gsub("a", "aa") end
return { status_interval_ms = n }
