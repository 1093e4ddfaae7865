--- Argument checks shared by lume's stdlib (and open to your own modules).
--
-- Every stdlib constructor checks its options and raises on a mistake,
-- naming the function, the option and the value it got, and refuses an
-- option name it does not know (a typo would otherwise be silently ignored).
-- These helpers are that check, written once.
--
-- The `level` arguments follow `error`: 1 is the helper itself, so the
-- default, 3, blames the caller of the function that called the helper --
-- the user's line, when a public function calls a helper directly.
--
-- @module lume.check
-- @usage
--   local check = require "lume.check"
--
--   function M.new(opts)
--     check.options("mymod.new", opts, {"limit", "name"})
--     local limit = check.number("mymod.new", "limit", opts.limit, {min = 0})
--     ...
--   end

local huge, tointeger = math.huge, math.tointeger
local format, gsub = string.format, string.gsub
local concat, sort = table.concat, table.sort

local check = {}

--- Describe a value for an error message: numbers as written (nan, inf),
-- strings quoted on one line, booleans as written, anything else by its
-- type.
function check.show(x)
  local t = type(x)
  if t == "number" then
    if x ~= x then return "nan" end
    if x == huge then return "inf" end
    if x == -huge then return "-inf" end
    return tostring(x)
  elseif t == "string" then
    return (gsub(format("%q", x), "\\\n", "\\n"))
  elseif t == "boolean" then
    return tostring(x)
  end
  return t
end
local show = check.show

--- True when x is a number that is neither NaN nor infinite.
function check.is_finite(x)
  return type(x) == "number" and x == x and x ~= huge and x ~= -huge
end
local is_finite = check.is_finite

--- x as an integer if it is a number with an integral value, else nil.
-- (math.tointeger alone would also accept the string "3".)
function check.as_integer(x)
  return type(x) == "number" and tointeger(x) or nil
end
local as_integer = check.as_integer

-- The allowed names as a set, from a list or a set (cached per table).
local sets = setmetatable({}, {__mode = "k"})
local function as_set(allowed)
  local set = sets[allowed]
  if set then return set end
  set = {}
  if allowed[1] ~= nil then
    for _, name in ipairs(allowed) do set[name] = true end
  else
    for name in pairs(allowed) do set[name] = true end
  end
  sets[allowed] = set
  return set
end

--- Check that opts is a table whose keys are all in allowed (a list or a
-- set of names). With `optional`, nil stands for no options and returns {}.
-- Returns opts.
function check.options(fname, opts, allowed, level, optional)
  level = level or 3
  if opts == nil and optional then return {} end
  if type(opts) ~= "table" then
    error(format("%s: expected a table of options, got %s", fname, show(opts)), level)
  end
  local set = as_set(allowed)
  for k in pairs(opts) do
    if not set[k] then
      local names = {}
      for name in pairs(set) do names[#names + 1] = name end
      sort(names)
      error(format("%s: unknown option %s (expected one of: %s)",
                   fname, show(k), concat(names, ", ")), level)
    end
  end
  return opts
end

--- Check a numeric option and return it (or `spec.default` when it is nil
-- and a default is given). spec fields, all optional:
--   integer = true     an integral value
--   min = m            v >= m        gt = m   v > m
--   max = m            v <= m
--   default = d        the value when v is nil (nil: the option is required)
--   optional = true    nil is allowed and returned as nil
--   what = "..."       how to describe the expected value in the message
function check.number(fname, name, v, spec, level)
  spec = spec or {}
  level = level or 3
  if v == nil then
    if spec.default ~= nil then return spec.default end
    if spec.optional then return nil end
    error(format("%s: %s is required", fname, name), level)
  end
  local ok, got = is_finite(v), v
  if ok and spec.integer then
    v = as_integer(v)
    ok = v ~= nil
  end
  if ok and spec.min ~= nil and v < spec.min then ok = false end
  if ok and spec.gt ~= nil and v <= spec.gt then ok = false end
  if ok and spec.max ~= nil and v > spec.max then ok = false end
  if not ok then
    local what = spec.what
    if not what then
      local kind = spec.integer and "integer" or "finite number"
      if spec.gt == 0 or (spec.min == 1 and spec.integer) then
        what = "a positive " .. kind
      elseif spec.min == 0 then
        what = "a non-negative " .. kind
      else
        what = (spec.integer and "an " or "a ") .. kind
      end
      local bounds = {}
      if spec.min ~= nil and not (spec.min == 0 or (spec.min == 1 and spec.integer)) then
        bounds[#bounds + 1] = ">= " .. show(spec.min)
      end
      if spec.gt ~= nil and spec.gt ~= 0 then bounds[#bounds + 1] = "> " .. show(spec.gt) end
      if spec.max ~= nil then bounds[#bounds + 1] = "<= " .. show(spec.max) end
      if #bounds > 0 then what = what .. " " .. concat(bounds, " and ") end
    end
    error(format("%s: %s must be %s, got %s", fname, name, what, show(got)), level)
  end
  return v
end

--- Check that v has Lua type `want` ("function", "table", ...); nil is
-- allowed when `optional`. Returns v.
function check.type(fname, name, v, want, optional, level)
  if v == nil and optional then return nil end
  if type(v) ~= want then
    error(format("%s: %s must be a %s, got %s", fname, name, want, show(v)), level or 3)
  end
  return v
end

return check
