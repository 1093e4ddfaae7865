-- tests/lua/pattern_spec.lua — lume's pattern matcher (bindings/pattern.c)
-- against Lua 5.4's own, and the CPU budget it brings to a script.
--
-- host.pattern_lib() gives the matcher's four functions (without budget
-- checks) in this lua5.4 state; the native ones are captured below. Every
-- case runs both and compares everything: find's positions and captures,
-- match's captures, gmatch's whole sequence (and an error met on the way),
-- gsub's string and count, what a replacement function was called with, and
-- error messages (with the function's name in "bad argument ... to 'x'"
-- left out: Lua names its own functions string.find, ours are anonymous).
local H = require "helper"

local P = H.host.pattern_lib()
local N = { find = string.find, match = string.match, gmatch = string.gmatch,
            gsub = string.gsub }
local pack, unpack, concat = table.pack, table.unpack, table.concat
local mtype = math.type

local comparisons = 0

-- ---- comparing -------------------------------------------------------------

local function norm_err(e)
  if type(e) == "string" then
    e = N.gsub(e, "(bad argument #%d+ to )'[^']*'", "%1'?'")
  end
  return e
end

local function outcome(ok, ...)
  if not ok then return { err = norm_err((...)) } end
  return { vals = pack(...) }
end

-- Deep equality that tells 1 from 1.0 and "1" from 1.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return mtype(a) == mtype(b) and a == b end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function show(v)
  if type(v) == "string" then return N.gsub(string.format("%q", v), "\\\n", "\\n") end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = tostring(k) .. "=" .. show(v[k]) end
  return "{" .. concat(out, ", ") .. "}"
end

local function args_str(a)
  local out = {}
  for i = 1, a.n do out[i] = show(a[i]) end
  return "(" .. concat(out, ", ") .. ")"
end

-- gmatch: the whole sequence of results, at most 300 of them.
local function gmatch_seq(F, a)
  local ok, it = pcall(F.gmatch, unpack(a, 1, a.n))
  if not ok then return { err = norm_err(it) } end
  local seq = {}
  for _ = 1, 300 do
    local r = pack(pcall(it))
    if not r[1] then seq[#seq + 1] = { err = norm_err(r[2]) }; break end
    if r.n == 1 then seq[#seq + 1] = "end"; break end
    seq[#seq + 1] = pack(unpack(r, 2, r.n))
  end
  return seq
end

-- A replacement function for gsub that records its arguments, and whose
-- answer depends on them (a string, false, nil, a number, a table, an error).
local function recorder(log)
  return function(...)
    log[#log + 1] = pack(...)
    local a = ...
    if a == "b" then return false end
    if a == "c" then return nil end
    if a == "d" then return 7 end
    if a == "e" then return 2.5 end
    if a == "zz" then return {} end
    if a == "q" then error("boom", 0) end
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    return "<" .. concat(parts, ",") .. ">"
  end
end

local TABLE_REPL = { a = "A", b = 1, ab = false, c = 2.5, ["1"] = "one", [1] = "pos1",
                     [2] = "pos2", [4] = {}, x = "%1", aa = "AA", ["("] = "paren" }

-- Run op on both implementations with arguments a; return a description of
-- the difference, or nil.
local function differ(op, a)
  comparisons = comparisons + 1
  local mine, lua
  if op == "gmatch" then
    mine, lua = gmatch_seq(P, a), gmatch_seq(N, a)
  elseif op == "gsub" and a[3] == recorder then
    local log1, log2 = {}, {}
    local a1 = pack(unpack(a, 1, a.n)); a1[3] = recorder(log1)
    local a2 = pack(unpack(a, 1, a.n)); a2[3] = recorder(log2)
    mine = { outcome(pcall(P.gsub, unpack(a1, 1, a1.n))), log1 }
    lua = { outcome(pcall(N.gsub, unpack(a2, 1, a2.n))), log2 }
  else
    mine = outcome(pcall(P[op], unpack(a, 1, a.n)))
    lua = outcome(pcall(N[op], unpack(a, 1, a.n)))
  end
  if not same(mine, lua) then
    local shown = pack(unpack(a, 1, a.n))
    if shown[3] == recorder then shown[3] = "<function>" end
    return op .. args_str(shown) .. ":\n    lume: " .. show(mine) .. "\n    lua:  " .. show(lua)
  end
end

-- Collects differences; fails with the first few.
local function checker()
  local diffs, count = {}, 0
  local c = {}
  function c.run(op, ...)
    local d = differ(op, pack(...))
    count = count + 1
    if d then diffs[#diffs + 1] = d end
  end
  function c.done(min_cases)
    if #diffs > 0 then
      local first = {}
      for i = 1, math.min(#diffs, 8) do first[i] = diffs[i] end
      error(#diffs .. " of " .. count .. " cases differ from Lua:\n  " .. concat(first, "\n  "), 0)
    end
    assert(count >= (min_cases or 1), "only " .. count .. " cases ran")
  end
  return c
end

-- Every operation on one subject and pattern.
local REPLS = { "", "x", "<%0>", "[%1]", "%2-%1", "%%", "%", "%a", "%9", "%1%1%1", 42, 1.5,
                TABLE_REPL, recorder }
local function all_ops(c, s, p, inits)
  for _, init in ipairs(inits or { 1 }) do
    c.run("find", s, p, init)
    c.run("match", s, p, init)
    c.run("gmatch", s, p, init)
  end
  c.run("find", s, p)
  c.run("find", s, p, 1, true)
  c.run("match", s, p)
  c.run("gmatch", s, p)
  for _, r in ipairs(REPLS) do c.run("gsub", s, p, r) end
  c.run("gsub", s, p, "<%0>", 1)
  c.run("gsub", s, p, recorder, 2)
end

local function cross(patterns, subjects, inits)
  local c = checker()
  for _, p in ipairs(patterns) do
    for _, s in ipairs(subjects) do all_ops(c, s, p, inits) end
  end
  c.done(#patterns * #subjects)
end

-- ---- the corpus ------------------------------------------------------------

local SUBJECTS = {
  "", "a", "aaa", "abc", "hello world", "  key = value  ", "k=12.5", "x=-3", "t=1e5",
  "THE (quick) [brown] fox", "f(a(b)c)d", "((()))()", "a,b,,c,", "temp:21.5;hum:40;ok",
  "line1\nline2\r\n", "tab\there", "\0a\0b\0", "caf\195\169 \255\128", "%d%%", "]^-[",
  "aXbXc", "1234567890", "0x1F 0xZZ", "__init__", "a.b.c", "$100 & 50%",
  "Mixed CASE words_42", "ab ab ab", "zz", "qed",
}

local CLASS_PATTERNS = {}
for _, cl in ipairs { "a", "c", "d", "g", "l", "p", "s", "u", "w", "x" } do
  for _, c in ipairs { cl, cl:upper() } do
    CLASS_PATTERNS[#CLASS_PATTERNS + 1] = "%" .. c
    CLASS_PATTERNS[#CLASS_PATTERNS + 1] = "%" .. c .. "+"
    CLASS_PATTERNS[#CLASS_PATTERNS + 1] = "[%" .. c .. "_]*"
    CLASS_PATTERNS[#CLASS_PATTERNS + 1] = "[^%" .. c .. "]-x"
  end
end
for _, lit in ipairs { "%z", "%Z", "[%z]", "[^%z]", "%z+", "%.", "%%", "%-", "%]", "%[", "%^", "%$", "%(", "%)",
                       "%*", "%+", "%?", "%e", "%q", "%1x", "%\255", "%\0" } do
  CLASS_PATTERNS[#CLASS_PATTERNS + 1] = lit
end

local SET_PATTERNS = {
  "[abc]", "[^abc]", "[a-c]+", "[^a-c]+", "[a-]", "[-a]", "[]]", "[^]]", "[]a]+", "[a%-z]",
  "[%a_][%w_]*", "[%d%.]+", "[%]]", "[%^]", "[^^]", "[a^]", "[z-a]", "[a-a]", "[%a-z]",
  "[\128-\255]+", "[\0-\31]", "[%s,;]+", "[[]", "[x-]+", "[---]", "[%%]", "[.]", "[(]",
  "[^%s]+", "[%w%p]+", "[a-cx-z]", "[]-a]", "[^]-a]+",
}

local QUANT_PATTERNS = {
  "a*", "a+", "a-", "a?", "ab*", "ab+c", "a.-b", "a.*b", ".", ".*", ".+", ".-", ".?", "x*",
  "a*a", "a-a", "a?a", "a?b?c?", "[ab]*c", "%w+%s*=%s*%w+", "%s*(.-)%s*$", "^%s*(.-)%s*$",
  "(.-),", "([^,]*)", "[^,]*", "a-$", ".-$", "%d+%.?%d*", "^(%w+)=(%-?%d+%.?%d*)$",
  "%-?%d+", "%a+://", "*", "+a", "?", "-", "a**", "a*+", "a--", "a?*", "a*?",
}

local ANCHOR_PATTERNS = {
  "^", "$", "^$", "^a", "a$", "^a$", "^.", ".$", "^.*$", "a^", "$a", "^^", "^$$", "$$",
  "%^a", "a%$", "^(a)", "(a)$", "^()", "()$", "^%s*", "%s*$", "^[^%s]+",
}

local CAPTURE_PATTERNS = {
  "(a)", "(a)(b)", "(a(b)c)", "((a)(b))", "()", "()a()", "(a)()", "(()a())", "(%w+)",
  "(%w+)=(%w+)", "(.)(.)(.)", "((.)%2)", "(.)%1", "(a)%1", "(%w+) %1", "(.-)%1", "()(%1)",
  "(a*(.)%w(%s*))", "(h)(e)(l)(l)(o)", "([^,]*),?", "(%d+)%.(%d+)", "(%a)(%d?)",
  "(x?)(x?)", "%f[%w](%w+)", "(.)-", "(.)%1%1", "(()())", "(%b())", "(%f[%a])",
}

local BALANCE_FRONTIER_PATTERNS = {
  "%b()", "%b[]", "%b{}", "%b<>", "%bab", "%baa", "%bxx", "%b()+", "%b()*", "(%b())",
  "f%b()", "%b%%", "%b()%b()", "%f[%a]", "%f[%a]%a+", "%f[%A]", "%f[%w]%w+%f[%W]",
  "%f[%d]%d+", "%f[^%z]", "%f[%z]", "%f[\0]", "%f[^\0]", "%f[^%s]", "%f[%s]", "%f[a]a",
  "%f[]]", "%f[%l]%u", "%f[%u]", "%f[.]", "%f[%p]%p",
}

local MALFORMED_PATTERNS = {
  "%", "a%", "[", "[a", "[^", "[^a", "[a-", "[%", "[a%", "[%]", "(", "(a", "a(", ")", "a)",
  "(()", "((a)", "%b", "%ba", "(%b", "%f", "%fa", "%f(", "x%f", "%0", "%1", "%2", "(a)%2",
  "(a%1)", "(()%1)", "%9", "((a)%2)", "[]", "[^]", "%b(", "a[", "[a]%", "(%)",
  "%f[", "%f[a", "x[", "b)", "()%", "(a)(b)%3", "b%1",
}

local NUL_PATTERNS = { "\0", "a\0b", "%z", "[\0]", "[^\0]+", "\0*", "(\0)", "%b\0a",
                       "[%z]", "a\0" }

local INITS = { 1, 2, 0, -1, -2, -3, -100, 5, 11, 12, 13, 100 }

describe("lume's pattern matcher agrees with Lua 5.4", function()
  it("is a different implementation from Lua's", function()
    for _, name in ipairs { "find", "match", "gmatch", "gsub" } do
      assert.is_function(P[name])
      assert.are_not.equal(N[name], P[name])
    end
  end)

  it("character classes %a %c %d %g %l %p %s %u %w %x, their complements, escapes", function()
    cross(CLASS_PATTERNS, SUBJECTS)
    -- every byte against every class and every escape
    local c = checker()
    local bytes = {}
    for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
    local all = concat(bytes)
    for b = 0, 255 do
      c.run("gsub", all, "%" .. string.char(b), "")
      c.run("find", all, "[%" .. string.char(b) .. "]+")
      c.run("gsub", all, "[^%" .. string.char(b) .. "]", "")
      c.run("match", all, string.char(b))
      c.run("gsub", all, "[" .. string.char(b) .. "-\255]", "")
    end
    c.done(256 * 5)
  end)

  it("sets: ranges, negation, ']' first, escapes inside", function()
    cross(SET_PATTERNS, SUBJECTS)
  end)

  it("quantifiers * + - ?", function()
    cross(QUANT_PATTERNS, SUBJECTS)
  end)

  it("anchors ^ and $ (gmatch takes ^ literally, as in Lua 5.4)", function()
    cross(ANCHOR_PATTERNS, SUBJECTS, { 1, 2, -1 })
    cross({ "^a", "^(a)", "^", "^%w+" }, { "aaa", "^a^a", "a^", "^^", "" }, INITS)
  end)

  it("captures, position captures and back references", function()
    cross(CAPTURE_PATTERNS, SUBJECTS, { 1, 3 })
  end)

  it("%b and %f", function()
    cross(BALANCE_FRONTIER_PATTERNS, SUBJECTS, { 1, 4 })
  end)

  it("malformed patterns raise Lua's errors (lazily, where Lua does)", function()
    cross(MALFORMED_PATTERNS, SUBJECTS)
  end)

  it("embedded NULs and bytes above 127", function()
    cross(NUL_PATTERNS, { "", "\0", "a\0b", "\0\0a\0", "x\0", "\255\0\128", "ab" })
  end)

  it("init arguments: negative, zero, beyond the end, floats, strings, bad ones", function()
    local inits = { 1, 2, 0, -1, -2, -5, -6, -7, -100, 5, 6, 7, 8, 100,
                    math.maxinteger, math.mininteger, 3.0, "2", "-1", " 3 ", 2.5, "x", {},
                    1e100, -1e100, 0.0, -0.0 }
    local c = checker()
    for _, s in ipairs { "", "a", "hello", "aaaaa", "ab\0cd" } do
      for _, p in ipairs { "", "l", "l+", "()", "^h", "^", "$", "o$", ".-", "(a*)", "x*", "%f[%w]" } do
        for _, init in ipairs(inits) do
          c.run("find", s, p, init)
          c.run("find", s, p, init, true)
          c.run("match", s, p, init)
          c.run("gmatch", s, p, init)
        end
      end
    end
    c.done(5 * 12 * #inits * 4)
  end)

  it("plain find and find without specials", function()
    local c = checker()
    local subjects = { "", "a", "a.b.c", "a+b", "x%dy", "[a]", "aaab", "ab\0ab\0", "(a)", "^a$" }
    local patterns = { "", ".", "a.", "+", "%d", "[a]", "aab", "\0", "b\0", "(a)", "^a", "a$",
                       "^", "$", "abc", "zzz", "\0a", "a\0b", "%", "[", "(" }
    for _, s in ipairs(subjects) do
      for _, p in ipairs(patterns) do
        for _, init in ipairs { 1, 2, -1, 0, 10, -20 } do
          c.run("find", s, p, init, true)
          c.run("find", s, p, init, 1)
          c.run("find", s, p, init, false)
          c.run("find", s, p, init, nil)
        end
      end
    end
    -- long needles (another search path): found, not found, at the ends,
    -- overlapping near-misses
    local hay = ("ab"):rep(60) .. "abc" .. ("x"):rep(40) .. "\0" .. ("ab"):rep(30)
    for _, len in ipairs { 31, 32, 33, 40, 64, 121, 200, 300 } do
      for _, at in ipairs { 1, 2, 50, 100, 120, 150 } do
        local needle = hay:sub(at, at + len - 1)
        for _, init in ipairs { 1, 2, at, at + 1, -len, -len - 1 } do
          c.run("find", hay, needle, init, true)
          c.run("find", hay, needle .. "y", init, true)
          c.run("find", hay, "y" .. needle, init, true)
        end
      end
      c.run("find", ("a"):rep(1000), ("a"):rep(len) .. "b", 1, true)
      c.run("find", ("a"):rep(1000) .. "b", ("a"):rep(len) .. "b", 1, true)
    end
    c.done(#subjects * #patterns * 24 + 8 * (6 * 6 * 3 + 2))
  end)

  it("gsub: string, table and function replacements, %0-%9 and %%, max n", function()
    local c = checker()
    local repls = pack("", "-", "%0%0", "%1", "%2", "%3", "%1-%2", "%%1", "%%", "%", "%x", "a%",
                       "%10", "%0%1%2", "<%1>", 0, -3, 2.0, 1e300, TABLE_REPL, {}, recorder,
                       true, nil, false, tostring, function() end)
    local patterns = { "a", "(a)", "()", "(a)(b)", "%w+", "(%w+)", "()(%w)", "", "x*", ".",
                       "(b)", "(c)", "(d)", "(e)", "(zz)", "(q)", "^a", "^", "$", "(a)()",
                       "(%()", "b*" }
    local subjects = { "", "abc", "aa bb", "a(b)c", "xyz", "ababab", "d e zz", "q", "1 2 3" }
    local ns = { nil, 0, 1, 2, -1, 100, 2.0, 1.5, "1", "x", math.maxinteger, math.mininteger }
    for _, s in ipairs(subjects) do
      for _, p in ipairs(patterns) do
        for i = 1, repls.n do
          c.run("gsub", s, p, repls[i])
        end
        for i = 1, 12 do
          c.run("gsub", s, p, "[%0]", ns[i])
          c.run("gsub", s, p, recorder, ns[i])
        end
      end
    end
    -- the subject as given when nothing changed, a number subject, a number pattern
    c.run("gsub", 123, "4", "x")
    c.run("gsub", 123, 2, "x")
    c.run("gsub", 1.5, "%.", ",")
    c.run("gsub", "abc", "b", TABLE_REPL, 1)
    c.done(#subjects * #patterns * 50)
  end)

  it("gmatch: whole sequences, empty matches, init, captures", function()
    local c = checker()
    local patterns = { "", "a*", "a-", "%w+", "(%w+)=(%w+)", "()", "(a)()", ".", "x*", "b*",
                       "(%w*)", "%s*", "[^,]*", "(.)(.)", "^a", "$", "a$", "%f[%w]%w+" }
    local subjects = { "", "a", "abc", "a=1, b=2, c=3", "aaa bbb", ",,a,,", "b a b", "^a" }
    for _, s in ipairs(subjects) do
      for _, p in ipairs(patterns) do
        for _, init in ipairs { 1, 2, 3, -1, -2, 0, 4, 50, -50 } do
          c.run("gmatch", s, p, init)
        end
        c.run("gmatch", s, p)
      end
    end
    c.done(#subjects * #patterns * 10)
    -- an iterator made in one coroutine and driven from others
    for _, F in ipairs { P, N } do
      local it = F.gmatch("a b c d", "%a")
      local got = { it() }
      coroutine.wrap(function() got[#got + 1] = it() end)()
      local co = coroutine.create(function() got[#got + 1] = it() ; coroutine.yield() ; got[#got + 1] = it() end)
      coroutine.resume(co)
      got[#got + 1] = it()
      coroutine.resume(co)
      assert.are.same({ "a", "b", "c", "d" }, got)
    end
  end)

  it("limits: pattern too complex, too many captures, long subjects", function()
    local c = checker()
    for k = 190, 210 do
      c.run("find", ("a"):rep(k + 5), ("a?"):rep(k))
      c.run("match", ("a"):rep(k), ("(a)?"):rep(k))
      c.run("find", ("a"):rep(k), ("a?"):rep(k) .. "$")
      c.run("match", ("ab"):rep(k), ("()a"):rep(k // 7))
    end
    for k = 28, 36 do
      c.run("match", ("a"):rep(40), ("(a)"):rep(k))
      c.run("match", ("a"):rep(40), ("("):rep(k) .. "a" .. (")"):rep(k))
      c.run("gsub", ("a"):rep(40), ("(a)"):rep(k), "%9")
      c.run("gmatch", ("a"):rep(40), ("()"):rep(k))
      c.run("find", ("a"):rep(40), ("()"):rep(k) .. "b")
    end
    local long = ("word, "):rep(2000) .. "end"
    c.run("gsub", long, "%w+", "%0%0")
    c.run("gsub", long, "(%w+), ", recorder)
    c.run("match", long, "^(.-)end$")
    c.run("find", long, "end", -3, true)
    c.run("gmatch", ("x"):rep(1000), "x")
    c.run("find", ("("):rep(3000) .. (")"):rep(3000), "%b()")
    c.run("find", ("a"):rep(5000), "(a*)%1$")
    c.done(21 * 4 + 9 * 5 + 7)
  end)

  it("argument errors", function()
    local c = checker()
    for _, op in ipairs { "find", "match", "gmatch", "gsub" } do
      c.run(op)
      c.run(op, "a")
      c.run(op, nil, "a")
      c.run(op, {}, "a")
      c.run(op, "a", {})
      c.run(op, "a", "a", {})
      c.run(op, "a", "a", "x")
      c.run(op, "a", "a", 1.5)
      c.run(op, 12, 2)
      c.run(op, "a", "a", "b", "c")
      c.run(op, setmetatable({}, { __tostring = function() return "a" end }), "a")
    end
    c.run("gsub", "a", "a")
    c.run("gsub", "a", "a", true)
    c.run("gsub", "a", "a", nil, 1)
    c.run("gsub", "a", "a", "b", {})
    c.run("gsub", "a", "(", true)
    c.done(4 * 11 + 5)
  end)

  it("a random corpus of 12000 patterns and subjects (fixed seed)", function()
    -- xorshift32: the same corpus on every run and every Lua build
    local state = 0x2545F491
    local function rnd(n)
      state = state ~ ((state << 13) & 0xffffffff)
      state = state ~ (state >> 17)
      state = state ~ ((state << 5) & 0xffffffff)
      return state % n + 1
    end
    local function pick(t) return t[rnd(#t)] end
    local ATOMS = { "a", "a", "b", "b", "c", " ", "1", ".", ".", "%a", "%d", "%s", "%w", "%p",
                    "%l", "%u", "%x", "%c", "%g", "%A", "%D", "%S", "%W", "%.", "%%", "%(", "%z",
                    "[ab]", "[^a]", "[a-c]", "[%d ]", "[]]", "[^]]", "[a-]", "[%a%d]", "[^%s]",
                    "(", "(", ")", ")", "()", "%1", "%2", "%b()", "%bab", "%f[%w]", "%f[^a]",
                    "%f[%s]", "$", "^", "-", "[.%-]",
                    -- broken pieces, now and then
                    "%", "[", "[^", "%b", "%f", "%fa", "%0", "%9", "]" }
    local QUANTS = { "*", "+", "-", "?" }
    local ALPHA = { "a", "a", "a", "b", "b", "c", " ", " ", "1", "2", "(", ")", ".", "%", "_",
                    "\0", "A", "\n", "-", "]", "^", "\200" }
    -- at most max_q quantifiers a pattern: enough for every interplay, and
    -- no pattern backtracks for long on the short subjects below
    local max_q, max_len
    local function pattern()
      local parts = {}
      local quants = 0
      local function item()
        local a = pick(ATOMS)
        parts[#parts + 1] = a
        if quants < max_q and #a <= 5 and a ~= "(" and a ~= ")" and a ~= "()" and rnd(3) == 1 then
          parts[#parts + 1] = pick(QUANTS)
          quants = quants + 1
        end
      end
      if rnd(4) == 1 then parts[#parts + 1] = "^" end
      for _ = 1, rnd(7) - 1 do
        if rnd(4) == 1 then   -- a balanced group of one or two items
          parts[#parts + 1] = "("
          item()
          if rnd(2) == 1 then item() end
          parts[#parts + 1] = ")"
        else
          item()
        end
      end
      if rnd(6) == 1 then parts[#parts + 1] = "$" end
      return concat(parts)
    end
    local function subject()
      local parts = {}
      for i = 1, rnd(max_len + 1) - 1 do parts[i] = pick(ALPHA) end
      return concat(parts)
    end
    local INIT = { 1, 1, 1, 2, 3, 0, -1, -2, -4, 8, 30, -30 }
    local RANDOM_REPLS = { "", "<%0>", "%1", "%2%1", "%%", "x", "%", "%3", TABLE_REPL,
                           recorder, 7 }
    local c = checker()
    for i = 1, 12000 do
      max_q, max_len = 3, 21
      if i > 10000 then max_q, max_len = 2, 160 end  -- and 2000 longer subjects
      local p, s = pattern(), subject()
      local init = pick(INIT)
      c.run("find", s, p, init)
      c.run("match", s, p, init)
      c.run("gmatch", s, p, init)
      c.run("gsub", s, p, pick(RANDOM_REPLS), rnd(4) == 1 and rnd(3) or nil)
      if rnd(5) == 1 then c.run("find", s, p, init, true) end
    end
    c.done(12000 * 4)
  end)
end)

-- ---- in a script's sandbox -----------------------------------------------

-- Joins any results into one string, so they cross rt:call as one value.
local SHOW = [[
  local function show(...)
    local n = select("#", ...)
    local out = {}
    for i = 1, n do
      local v = select(i, ...)
      out[i] = type(v) .. ":" .. tostring(v)
    end
    return n .. "|" .. table.concat(out, "|")
  end
]]
local show_native = assert(load(SHOW .. " return show"))()

describe("the sandbox's pattern functions", function()
  it("give Lua's results as string.* and as string methods", function()
    H.with_runtime({ scripts = { p = SHOW .. [[
      function f_find(s, p, i) return show(pcall(string.find, s, p, i)) end
      function m_find(s, p, i) return show(pcall(function() return s:find(p, i) end)) end
      function m_match(s, p) return show(pcall(function() return s:match(p) end)) end
      function m_gsub(s, p, r) return show(pcall(function() return s:gsub(p, r) end)) end
      function m_gmatch(s, p)
        local out = {}
        for a, b in s:gmatch(p) do out[#out + 1] = show(a, b) end
        return table.concat(out, ";")
      end
    ]] } }, function(rt)
      local cases = {
        { "k=12.5", "^(%w+)=(%-?%d+%.?%d*)$" }, { "hello world", "o w" }, { "a,b,,c", "([^,]*)" },
        { "THE (quick) fox", "%f[%a]%a+" }, { "x(a(b)c)y", "%b()" }, { "abc", "[a" },
        { "abc", "(()" }, { "abc", "%1" }, { "aaa", "()a" },
      }
      for _, cs in ipairs(cases) do
        local s, p = cs[1], cs[2]
        local function eq(fn, native, ...)
          local ok, got = rt:call("p", fn, s, p, ...)
          assert.is_true(ok, got)
          -- an error raised under a Lua caller (s:find inside a function)
          -- carries its script:line; the native run has none
          got = N.gsub(got, "string:[^|]-%.lua:%d+: ", "string:")
          assert.are.equal(native, got, fn .. "(" .. s .. ", " .. p .. ")")
        end
        eq("f_find", show_native(pcall(N.find, s, p, 2)), 2)
        eq("m_find", show_native(pcall(N.find, s, p)))
        eq("m_match", show_native(pcall(N.match, s, p)))
        eq("m_gsub", show_native(pcall(N.gsub, s, p, "<%0>")), "<%0>")
        local ok, seq = pcall(function()
          local out = {}
          for a, b in N.gmatch(s, p) do out[#out + 1] = show_native(a, b) end
          return table.concat(out, ";")
        end)
        if ok then eq("m_gmatch", seq) end
      end
    end)
  end)
end)

-- Catastrophic backtracking in a handler: the watchdog's budget stops it and
-- the runtime, the script and its other handlers keep going.
local PATHOLOGICAL = {
  { "find",          [[string.find(string.rep("a", 300), "a*a*a*a*a*a*a*b")]] },
  { "match",         [[("x"):rep(500):match("(.-)(.-)(.-)(.-)y")]] },
  { "gmatch",        [[for _ in ("a"):rep(300):gmatch("a*a*a*a*a*a*a*b") do end]] },
  { "gsub",          [[("a"):rep(300):gsub("a-a-a-a-a-a-a-b", "x")]] },
  { "gsub function", [[("ab"):rep(150):gsub(".-.-.-.-.-.-c", function(x) return x end)]] },
  { "method find",   [[local s = ("a"):rep(300) ; s:find("a*a*a*a*a*a*a*b")]] },
  { "balance",       [[("("):rep(200000):find("%b()")]] },
  { "back reference", [[("a"):rep(200000):find("(a*)%1b")]] },
  { "long set",      [[("a"):rep(100000):find("[" .. ("b"):rep(100000) .. "]")]] },
  { "long pattern",  [[("a"):rep(100000):find(("a"):rep(50000) .. "b$")]] },
  { "in pcall",      [[pcall(string.find, ("a"):rep(300), "a*a*a*a*a*a*a*b") ; escaped = true]] },
  { "in a coroutine", [[coroutine.wrap(function()
                          ("a"):rep(300):match("(a*)(a*)(a*)(a*)(a*)(a*)b") end)()]] },
}

describe("the CPU budget stops a pattern that backtracks", function()
  -- A script with one timer per case, a sample handler, and probes.
  local function bad_script(cases)
    local lines = { "handled = 0" }
    for i, case in ipairs(cases) do
      lines[#lines + 1] = ("lume.timer.after(%d, function() %s ; finished_%d = true end)")
        :format(i * 5, case[2], i)
    end
    lines[#lines + 1] = [[
      lume.on_sample("vibration", function() handled = handled + 1 end)
      function state()
        local done = 0
        for i = 1, ]] .. #cases .. [[ do if _G["finished_" .. i] then done = done + 1 end end
        return handled, done, escaped or false
      end
      function still_matches() return ("k=12"):match("^(%w+)=(%d+)$") end
    ]]
    return concat(lines, "\n")
  end

  it("in every pattern function, and the runtime keeps going", function()
    -- six cases a script, so that each script's errors are all logged in full
    local scripts = {}
    for i = 1, #PATHOLOGICAL, 6 do
      scripts["bad" .. #scripts + 1] = { unpack(PATHOLOGICAL, i, math.min(i + 5, #PATHOLOGICAL)) }
      scripts[#scripts + 1] = "bad" .. #scripts + 1
    end
    H.with_runtime({ scripts = { canary = [[
        local n = 0
        lume.on_sample("vibration", function() n = n + 1 end)
        function seen() return n end
      ]] }, config = { sandbox = { cpu_budget_ms = 40, max_overruns = 0 } } }, function(rt)
      rt:run(50)
      H.clear_logs()
      for _, name in ipairs(scripts) do
        assert(rt:install(name, bad_script(scripts[name])))
      end
      local before = {}
      for _, name in ipairs(scripts) do
        local cases = scripts[name]
        local s = H.run_until(rt, 5000, function()
          local st = rt:scripts()[name]
          return st.budget_overruns >= #cases and st
        end)
        assert.truthy(s, name .. ": budget overruns: " .. rt:scripts()[name].budget_overruns)
        assert.are.equal(#cases, s.budget_overruns)
        assert.are.equal(#cases, s.errors)
        assert.are.equal("running", s.status)
        assert.matches("CPU budget exceeded", s.last_error)
        -- one logged error per case, each the budget's
        local budget_lines = 0
        for _, l in ipairs(H.logs()) do
          if l.component == "script " .. name and l.msg:find("CPU budget exceeded", 1, true) then
            budget_lines = budget_lines + 1
          end
        end
        assert.are.equal(#cases, budget_lines)
        -- none of the handlers ran past its pattern; pcall did not swallow it
        local _, handled, finished, escaped = rt:call(name, "state")
        assert.are.equal(0, finished)
        assert.is_false(escaped)
        before[name] = handled
      end
      -- the scripts, their other handlers, the other script and the sampler go on
      rt:run(300)
      for _, name in ipairs(scripts) do
        local _, k, v = rt:call(name, "still_matches")
        assert.are.equal("k", k)
        assert.are.equal("12", v)
        assert.is_true(select(2, rt:call(name, "state")) > before[name],
                       name .. ": the script's other handler stopped")
      end
      assert.is_true(select(2, rt:call("canary", "seen")) > 0)
      assert.are.equal("running", rt:scripts().canary.status)
    end)
  end)

  it("at a script's top level, under the load budget; the old version stays", function()
    H.with_runtime({ config = { sandbox = { load_budget_ms = 100 } } }, function(rt)
      assert(rt:install("bad", "function v() return ('ab'):match('(a)(b)') end"))
      local ok, err = rt:install("bad", [[string.find(("a"):rep(300), "a*a*a*a*a*a*a*b")]])
      assert.is_nil(ok)
      assert.matches("CPU budget exceeded", err)
      local _, a, b = rt:call("bad", "v")
      assert.are.equal("a", a)
      assert.are.equal("b", b)
    end)
  end)
end)

describe("pattern spec", function()
  it("ran its comparisons", function()
    assert.is_true(comparisons > 50000, comparisons .. " comparisons")
    io.write(("# pattern_spec: %d comparisons of lume's matcher with Lua's\n"):format(comparisons))
  end)
end)
