-- tests/lua/helper.lua — shared by the busted specs that drive a real runtime.
local host = require "lume_host"
local json = require "lume.json"

local M = { host = host }

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

M.ROOT = sh("pwd")

function M.tmpdir()
  return sh("mktemp -d \"${TMPDIR:-/tmp}/lume-spec.XXXXXX\"")
end

function M.rmdir(d)
  assert(d:match("^/.+/lume%-spec%.") , "refusing to remove " .. d)
  os.execute("rm -rf '" .. d .. "'")
end

function M.write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- A runtime on the sim board (or opts.board / opts.boards_dir) in a fresh
-- temp dir, with opts.scripts = { name = source } written to its scripts dir.
-- Returns rt, dir. The caller closes rt and removes dir (see M.with_runtime).
function M.runtime(opts)
  opts = opts or {}
  local dir = M.tmpdir()
  os.execute("mkdir -p '" .. dir .. "/scripts'")
  for name, src in pairs(opts.scripts or {}) do
    M.write(dir .. "/scripts/" .. name .. ".lua", src)
  end
  local cfg = {
    device_id = "spec-device",
    board = opts.board or "sim",
    boards_dir = opts.boards_dir or (M.ROOT .. "/boards"),
    stdlib_dir = M.ROOT .. "/stdlib",
    scripts_dir = dir .. "/scripts",
    store = opts.store or (dir .. "/var"),
  }
  for k, v in pairs(opts.config or {}) do cfg[k] = v end
  local rt, err = host.new(cfg)
  if not rt then M.rmdir(dir) end
  return rt, dir, err
end

-- Run fn(rt, dir) with a runtime, and always clean up.
function M.with_runtime(opts, fn)
  local rt, dir, err = M.runtime(opts)
  assert(rt, err)
  local ok, e = xpcall(fn, debug.traceback, rt, dir)
  rt:close()
  M.rmdir(dir)
  if not ok then error(e, 0) end
end

-- Log lines captured so far (accumulated across calls to host.logs()).
local seen = {}
function M.logs()
  for _, l in ipairs(host.logs()) do seen[#seen + 1] = l end
  return seen
end
function M.clear_logs() M.logs(); seen = {} end
function M.find_log(pattern, level)
  for _, l in ipairs(M.logs()) do
    if (not level or l.level == level) and (l.msg:find(pattern) or l.component:find(pattern)) then
      return l
    end
  end
end

-- The reported document of rt, decoded.
function M.reported(rt) return json.decode(rt:reported() or "{}") end

-- Hand rt a desired document (device layer) with the next $version, as if
-- it had arrived, and run the loop 50 ms so the scripts see it.
local version = 0
function M.desire(rt, doc)
  version = version + 1
  doc["$version"] = version
  local ok, err = rt:desired(json.encode(doc))
  assert(ok == true, err or "desired document not applied")
  rt:run(50)
end

-- Run the loop in slices until cond() holds or ms pass. Returns cond()'s value.
function M.run_until(rt, ms, cond)
  local waited = 0
  while waited < ms do
    local v = cond()
    if v then return v end
    rt:run(20)
    waited = waited + 20
  end
  return cond()
end

return M
