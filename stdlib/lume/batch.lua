--- Batching: gather items and hand them over in groups.
--
-- A batch collects items and calls `on_flush(items, reason)` with an array
-- of them when one of its limits is reached:
--
-- * `max_count`: the batch holds that many items (reason `"count"`);
-- * `max_bytes`: the items' estimated sizes add up to that many bytes
--   (reason `"bytes"`). An item that would take the batch *over* the limit
--   first flushes the items before it, so a batch never exceeds `max_bytes`
--   unless a single item does (such an item is flushed alone);
-- * `max_age_s`: the oldest item is that many seconds old (reason `"age"`),
--   checked by `tick(t)` and by `add(item, t)`;
-- * `flush()` on demand (reason `"manual"`).
--
-- Sizes are estimated per item by `size(item)`: by default the length of a
-- string, of `tostring` for numbers and booleans, and of the JSON encoding
-- (`lume.json`) for tables. The estimate is the sum over the items; framing
-- such as the brackets and commas of a JSON array (one byte per item, plus
-- one) is not counted, so leave that much headroom under a hard limit.
--
-- `configure{...}` changes the limits while the batch runs (scripts/routing.lua
-- takes them from the twin); a batch already past a new limit is flushed
-- at once.
--
-- Nothing is lost when `on_flush` raises an error: the items go back to the
-- front of the batch (before any added during the call) and the error is
-- raised again, so the next flush tries them again.
--
-- @module lume.batch
-- @usage
--   local batch = require "lume.batch"
--   local json = require "lume.json"
--
--   local b = batch.new{
--     max_count = 50, max_bytes = 8192, max_age_s = 30,
--     on_flush = function(items, reason)
--       lume.publish("telemetry", json.encode(items))
--     end,
--   }
--   lume.on_sample("temperature", function(v, t) b:add({t = t, v = v}, t) end)
--   lume.timer.every(1000, function(now) b:tick(now) end)

local check = require "lume.check"
local show, is_finite = check.show, check.is_finite
local json = require "lume.json"

local format = string.format

local batch = {}



--- The default size estimate of an item, in bytes.
-- @param item a string, number, boolean or table
-- @treturn integer
function batch.default_size(item)
  local ty = type(item)
  if ty == "string" then return #item end
  if ty == "table" then return #json.encode(item) end
  return #tostring(item)
end

local Batch = {}
Batch.__index = Batch
Batch.__name = "lume.batch"

local OPTIONS = { max_count = true, max_age_s = true, max_bytes = true,
                  on_flush = true, size = true }
local LIMITS = { "max_age_s", "max_bytes", "max_count" }

-- The limits of opts, checked (one check for new and configure): raises at
-- `level` naming fname, the limit and the value.
local function check_limits(fname, opts, level)
  local l = {
    max_count = check.number(fname, "max_count", opts.max_count,
                             { integer = true, min = 1, optional = true }, level + 1),
    max_bytes = check.number(fname, "max_bytes", opts.max_bytes,
                             { gt = 0, optional = true }, level + 1),
    max_age_s = check.number(fname, "max_age_s", opts.max_age_s,
                             { gt = 0, optional = true }, level + 1),
  }
  if l.max_count == nil and l.max_bytes == nil and l.max_age_s == nil then
    error(fname .. ": give at least one of max_count, max_bytes, max_age_s", level)
  end
  return l
end

--- A new batch.
-- @tparam table opts `on_flush` (function, required); at least one of
--   `max_count` (positive integer), `max_bytes` (positive number),
--   `max_age_s` (positive number); optional `size` (function: item -> bytes).
-- @treturn batch
function batch.new(opts)
  local fname = "batch.new"
  check.options(fname, opts, OPTIONS)
  check.type(fname, "on_flush", opts.on_flush, "function")
  local l = check_limits(fname, opts, 3)
  check.type(fname, "size", opts.size, "function", true)
  return setmetatable({
    max_count = l.max_count, max_bytes = l.max_bytes, max_age_s = l.max_age_s,
    on_flush = opts.on_flush, size = opts.size or batch.default_size,
    items = {}, n = 0, bytes_ = 0, oldest = nil,
  }, Batch)
end

--- Change the limits while the batch runs (from the twin, say).
-- The limits become exactly those given, checked as `batch.new` checks
-- them (a limit left out is no longer a limit; at least one is required):
-- on a mistake it raises and the old limits stay. Items already waiting
-- stay; if the new limits are already reached they are flushed at once,
-- with the reason of the limit reached (`"count"`, `"bytes"`, or `"age"`
-- when `t` is given and the oldest item is `max_age_s` old at `t`;
-- without `t` the next `tick` or `add` checks the age).
-- @tparam table limits `{max_count =, max_bytes =, max_age_s =}`
-- @tparam[opt] number t the time now, in seconds
-- @treturn integer the number of items flushed (0 if none)
function Batch:configure(limits, t)
  local fname = "batch:configure"
  check.options(fname, limits, LIMITS)
  local l = check_limits(fname, limits, 3)
  if t ~= nil and not is_finite(t) then
    error(fname .. ": t must be a finite number (seconds), got " .. show(t), 2)
  end
  self.max_count, self.max_bytes, self.max_age_s = l.max_count, l.max_bytes, l.max_age_s
  if self.n == 0 then return 0 end
  if l.max_count and self.n >= l.max_count then return self:flush("count") end
  if l.max_bytes and self.bytes_ >= l.max_bytes then return self:flush("bytes") end
  if l.max_age_s and t ~= nil and self.oldest ~= nil and t - self.oldest >= l.max_age_s then
    return self:flush("age")
  end
  return 0
end

--- The limits in force: `{max_count =, max_bytes =, max_age_s =}` (nil
-- for a limit not set).
-- @treturn table
function Batch:limits()
  return { max_count = self.max_count, max_bytes = self.max_bytes, max_age_s = self.max_age_s }
end

--- Hand the items to `on_flush` now (if there are any).
-- @tparam[opt="manual"] string reason passed to `on_flush`
-- @treturn integer the number of items flushed
function Batch:flush(reason)
  local n = self.n
  if n == 0 then return 0 end
  local items, bytes, oldest = self.items, self.bytes_, self.oldest
  self.items, self.n, self.bytes_, self.oldest = {}, 0, 0, nil
  local ok, err = pcall(self.on_flush, items, reason or "manual")
  if not ok then
    -- Put the items back in front of any that on_flush added meanwhile.
    local added = self.items
    for i = 1, self.n do items[n + i] = added[i] end
    self.items, self.n = items, n + self.n
    self.bytes_ = bytes + self.bytes_
    self.oldest = oldest
    error(err, 0)
  end
  return n
end

local function too_old(self, t)
  return self.max_age_s and self.n > 0 and t ~= nil and self.oldest ~= nil
         and t - self.oldest >= self.max_age_s
end

--- Add an item, flushing first or afterwards as the limits require.
-- @param item the item (not nil)
-- @tparam[opt] number t the time in seconds (required when `max_age_s` is set)
-- @treturn integer the number of items flushed by this call (0 if none)
function Batch:add(item, t)
  if item == nil then error("batch:add: item must not be nil", 2) end
  if t ~= nil and not is_finite(t) then
    error("batch:add: t must be a finite number (seconds), got " .. show(t), 2)
  end
  if self.max_age_s and t == nil then
    error("batch:add: t is required when max_age_s is set", 2)
  end
  local size = self.size(item)
  if not is_finite(size) or size < 0 then
    error("batch:add: size(item) must return a non-negative number, got " .. show(size), 2)
  end

  local flushed = 0
  if too_old(self, t) then
    flushed = flushed + self:flush("age")
  end
  local max_bytes = self.max_bytes
  if max_bytes and self.n > 0 and self.bytes_ + size > max_bytes then
    flushed = flushed + self:flush("bytes")
  end

  local n = self.n + 1
  self.items[n] = item
  self.n = n
  self.bytes_ = self.bytes_ + size
  if n == 1 then self.oldest = t end

  if self.max_count and n >= self.max_count then
    flushed = flushed + self:flush("count")
  elseif max_bytes and self.bytes_ >= max_bytes then
    flushed = flushed + self:flush("bytes")
  end
  return flushed
end

--- Flush if the oldest item is at least `max_age_s` old at time `t`.
-- Call it periodically, so a quiet stream still gets flushed.
-- @tparam number t the time in seconds
-- @treturn integer the number of items flushed (0 if none)
function Batch:tick(t)
  if not is_finite(t) then
    error("batch:tick: t must be a finite number (seconds), got " .. show(t), 2)
  end
  if too_old(self, t) then return self:flush("age") end
  return 0
end

--- Number of items waiting.
-- @treturn integer
function Batch:count()
  return self.n
end

Batch.__len = Batch.count

--- Estimated size of the items waiting, in bytes.
-- @treturn number
function Batch:bytes()
  return self.bytes_
end

--- Age of the oldest item at time `t`, or nil when the batch is empty or
-- its oldest item came without a time.
-- @tparam number t the time in seconds
-- @treturn number|nil
function Batch:age(t)
  if self.n == 0 or self.oldest == nil then return nil end
  return t - self.oldest
end

--- The state to hand to the next version (see `lume.keep`): the items
-- waiting and the time of the oldest. The limits and `on_flush` are not
-- saved: they come from the code that restores it. Items must be data
-- (what `lume.json` can encode) to be saved.
-- @treturn table
function Batch:save()
  local items = {}
  for i = 1, self.n do items[i] = self.items[i] end
  return { items = items, oldest = self.oldest }
end

--- Take a state made by `save`: its items replace those waiting (so
-- restoring twice adds nothing), sized by this batch's `size` function.
-- Nothing is flushed here: the next `add` or `tick` applies this batch's
-- limits.
-- @tparam table data
function Batch:restore(data)
  local fname = "batch:restore"
  if type(data) ~= "table" or type(data.items) ~= "table" then
    error(fname .. ": saved state must be a table with an items array, got " .. show(data), 2)
  end
  if data.oldest ~= nil and not is_finite(data.oldest) then
    error(fname .. ": saved oldest must be a finite number, got " .. show(data.oldest), 2)
  end
  local saved = data.items
  local items, bytes = {}, 0
  for i = 1, #saved do
    local size = self.size(saved[i])
    if not is_finite(size) or size < 0 then
      error(format("%s: size(item %d) must return a non-negative number, got %s", fname, i,
                   show(size)), 2)
    end
    items[i], bytes = saved[i], bytes + size
  end
  self.items, self.n, self.bytes_ = items, #saved, bytes
  self.oldest = #saved > 0 and data.oldest or nil
end

return batch
