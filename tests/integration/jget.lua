-- jget.lua PATH: read JSON on stdin, print the value at PATH ("a.b.c");
-- tables print as JSON, nothing prints as "nil".
package.path = arg[0]:gsub("[^/]+$", "") .. "../../stdlib/?.lua;" .. package.path
local json = require "lume.json"
local doc = json.decode(io.read("a"))
local v = doc
for key in (arg[1] or ""):gmatch("[^.]+") do
  if type(v) ~= "table" then v = nil break end
  v = v[key]
end
if v == nil or v == json.null then print("nil")
elseif type(v) == "table" then print(json.encode(v, { sort_keys = true }))
else print(tostring(v)) end
