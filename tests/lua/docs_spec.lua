-- Every example in README.md and docs/*.md runs.
--
-- Each ```lua block is one of:
--   a config: its first statement is `return {` (or it follows
--     `<!-- config -->`); loaded with lume's config loader (host.config_load,
--     the checks of `lume run`);
--   a script: installed in a real runtime on the sim board; it must load,
--     register at least one callback (a script that registers nothing never
--     runs again), and run 200 ms of the loop without a handler error;
--   a fragment: marked `<!-- fragment: WHY -->` on a line before the fence
--     (blank lines between are fine); not run. The reason is required.
-- Shell blocks (```sh, ```bash) run only when marked:
--   `<!-- runnable -->`: in a scratch directory shared by the runnable
--     blocks of that file, in order (so `lume keygen` can feed `openssl`);
--   `<!-- runnable at the top of the tree -->`: from the repository's root.
--   Both with bash -e, the build directory ($BUILD, default build) first on
--   PATH (so `lume` is the one just built), $LUME_ROOT set to the root.
-- A failure names the file and the line of the block's opening fence.
local H = require "helper"
local json = require "lume.json"

local ROOT = H.ROOT
local BUILD = os.getenv("BUILD") or "build"
if BUILD:sub(1, 1) ~= "/" then BUILD = ROOT .. "/" .. BUILD end

local function doc_files()
  local files = { "README.md" }
  local p = assert(io.popen("ls " .. ROOT .. "/docs/*.md"))
  for f in p:lines() do files[#files + 1] = f:sub(#ROOT + 2) end
  p:close()
  return files
end

-- The fenced blocks of a markdown file: {lang, line, code, marker}, where
-- marker is the `<!-- ... -->` comment just before the fence, if any.
local function blocks(path)
  local out, lines = {}, {}
  for l in io.lines(ROOT .. "/" .. path) do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    local indent, lang = lines[i]:match("^(%s*)```(%w*)%s*$")
    if indent and lang ~= "" then
      local start, body = i, {}
      i = i + 1
      while i <= #lines and not lines[i]:match("^%s*```%s*$") do
        body[#body + 1] = lines[i]:sub(1, #indent) == indent and lines[i]:sub(#indent + 1)
          or lines[i]
        i = i + 1
      end
      local marker
      local j = start - 1
      while j >= 1 and lines[j]:match("^%s*$") do j = j - 1 end
      if j >= 1 then marker = lines[j]:match("^%s*<!%-%-%s*(.-)%s*%-%->%s*$") end
      out[#out + 1] = { lang = lang, line = start, code = table.concat(body, "\n") .. "\n",
                        marker = marker }
    elseif indent then -- a fence without a language: skip to its end
      i = i + 1
      while i <= #lines and not lines[i]:match("^%s*```%s*$") do i = i + 1 end
    end
    i = i + 1
  end
  return out
end

local function is_config(b)
  if b.marker == "config" then return true end
  for l in b.code:gmatch("[^\n]*") do
    if not (l:match("^%s*$") or l:match("^%s*%-%-")) then return l:match("^%s*return%s*{") ~= nil end
  end
  return false
end

local function callbacks(rt, name)
  local stats = assert(json.decode(rt:stats()))
  local s = stats.scripts[name]
  local n = 0
  for _, c in pairs(s and s.handlers or {}) do n = n + c end
  return n
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run_shell(code, dir)
  local f = dir .. "/block.sh"
  H.write(f, code)
  local cmd = ("cd %s && LUME_ROOT=%s PATH=%s:$PATH bash -e %s 2>&1"):format(
    sh_quote(dir), sh_quote(ROOT), sh_quote(BUILD), sh_quote(f))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code_ = p:close()
  os.remove(f)
  return ok, out, code_
end

describe("every example in README.md and docs/", function()
  local all = {}
  for _, f in ipairs(doc_files()) do
    for _, b in ipairs(blocks(f)) do
      b.file = f
      all[#all + 1] = b
    end
  end

  it("finds the examples", function()
    local n = 0
    for _, b in ipairs(all) do if b.lang == "lua" then n = n + 1 end end
    assert.is_true(n >= 15, "found only " .. n .. " lua blocks: is the extractor broken?")
  end)

  it("marks every fragment with a reason", function()
    local bad = {}
    for _, b in ipairs(all) do
      if b.marker and b.marker:match("^fragment") and not b.marker:match("^fragment:%s*%S") then
        bad[#bad + 1] = ("%s:%d: <!-- fragment --> without a reason (<!-- fragment: WHY -->)")
          :format(b.file, b.line)
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)

  it("loads each config block with the config loader", function()
    local dir = H.tmpdir()
    local failures, n = {}, 0
    for _, b in ipairs(all) do
      if b.lang == "lua" and not (b.marker or ""):match("^fragment") and is_config(b) then
        n = n + 1
        local path = dir .. "/lume.conf.lua"
        H.write(path, b.code)
        local ok, err = H.host.config_load(path)
        if not ok then failures[#failures + 1] = ("%s:%d: config: %s"):format(b.file, b.line, err) end
      end
    end
    H.rmdir(dir)
    assert(#failures == 0, "\n" .. table.concat(failures, "\n"))
    assert.is_true(n >= 1)
  end)

  it("runs each script block in a runtime on the sim board", function()
    local failures, n = {}, 0
    H.with_runtime({}, function(rt)
      for _, b in ipairs(all) do
        if b.lang == "lua" and not (b.marker or ""):match("^fragment") and not is_config(b) then
          n = n + 1
          local name = "doc" .. n
          local where = ("%s:%d"):format(b.file, b.line)
          local function fail(msg) failures[#failures + 1] = where .. ": " .. msg end
          local ok, err = rt:install(name, b.code)
          if not ok then
            fail("does not load: " .. tostring(err))
          elseif callbacks(rt, name) == 0 and not rt:scripts()[name].last_error then
            -- (a script that registers a method only is fine too: no idle warning)
            fail("registers no handler or timer: lume would never call it "
              .. "(mark it <!-- fragment: WHY --> if it is not a whole script)")
          elseif callbacks(rt, name) == 0 then
            fail(rt:scripts()[name].last_error)
          else
            rt:run(200)
            local st = rt:scripts()[name]
            if st.status ~= "running" or st.errors > 0 then
              fail(("%s after 200 ms, %d handler errors: %s"):format(st.status, st.errors,
                tostring(st.last_error)))
            end
          end
          rt:unload(name)
        end
      end
    end)
    assert(#failures == 0, "\n" .. table.concat(failures, "\n"))
    assert.is_true(n >= 10)
  end)

  it("runs each shell block marked runnable #native", function()
    local failures, n = {}, 0
    local scratch = {}
    for _, b in ipairs(all) do
      local m = b.marker or ""
      if (b.lang == "sh" or b.lang == "bash") and m:match("^runnable") then
        n = n + 1
        local dir
        if m == "runnable at the top of the tree" then
          dir = ROOT
        elseif m == "runnable" then
          scratch[b.file] = scratch[b.file] or H.tmpdir()
          dir = scratch[b.file]
        else
          failures[#failures + 1] = ("%s:%d: unknown marker <!-- %s --> (runnable, or runnable "
            .. "at the top of the tree)"):format(b.file, b.line, m)
        end
        if dir then
          local ok, out, code = run_shell(b.code, dir)
          if not ok then
            failures[#failures + 1] = ("%s:%d: exit %s:\n%s"):format(b.file, b.line,
              tostring(code), out:sub(-1500))
          end
        end
      end
    end
    for _, d in pairs(scratch) do H.rmdir(d) end
    assert(#failures == 0, "\n" .. table.concat(failures, "\n"))
    assert.is_true(n >= 1)
  end)
end)
