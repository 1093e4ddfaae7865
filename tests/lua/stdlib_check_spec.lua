-- lume.check: the argument checks shared by the stdlib modules.
local check = require "lume.check"

describe("lume.check", function()
  it("describes values for messages", function()
    assert.equal("nan", check.show(0 / 0))
    assert.equal("inf", check.show(math.huge))
    assert.equal("-inf", check.show(-math.huge))
    assert.equal("3", check.show(3))
    assert.equal('"a\\nb"', check.show("a\nb"))
    assert.equal("true", check.show(true))
    assert.equal("nil", check.show(nil))
    assert.equal("table", check.show({}))
  end)

  it("tells finite numbers and integers from look-alikes", function()
    assert.is_true(check.is_finite(1.5))
    assert.is_false(check.is_finite(0 / 0))
    assert.is_false(check.is_finite("1"))
    assert.equal(3, check.as_integer(3.0))
    assert.is_nil(check.as_integer("3"))
    assert.is_nil(check.as_integer(3.5))
  end)

  it("refuses an unknown option, naming it and the known ones", function()
    local function f(o) return check.options("f", o, {"b", "a"}) end
    assert.has_error(function() f{c = 1} end, 'f: unknown option "c" (expected one of: a, b)')
    assert.has_error(function() f(3) end, "f: expected a table of options, got 3")
    assert.same({a = 1}, f{a = 1})
    assert.same({}, check.options("g", nil, {a = true}, 3, true))
  end)

  it("blames the caller's line", function()
    local function api(o) check.options("api", o, {"a"}) end
    local ok, err = pcall(function() api{z = 1} end)   -- this line
    assert.is_false(ok)
    assert.matches("stdlib_check_spec.lua:%d+: api: unknown option", err)
  end)

  it("checks numbers against bounds and says what was expected", function()
    local n = check.number
    assert.equal(5, n("f", "x", 5, {integer = true, min = 1}))
    assert.equal(7, n("f", "x", nil, {default = 7}))
    assert.is_nil(n("f", "x", nil, {optional = true}))
    assert.has_error(function() n("f", "x", nil) end, "f: x is required")
    assert.has_error(function() n("f", "size", -3, {integer = true, min = 1}) end,
      "f: size must be a positive integer, got -3")
    assert.has_error(function() n("f", "p", 0, {gt = 0}) end,
      "f: p must be a positive finite number, got 0")
    assert.has_error(function() n("f", "a", 2, {gt = 0, max = 1}) end,
      "f: a must be a positive finite number <= 1, got 2")
    assert.has_error(function() n("f", "a", 0 / 0) end, "f: a must be a finite number, got nan")
    assert.has_error(function() n("f", "k", 1.5, {integer = true}) end,
      "f: k must be an integer, got 1.5")
  end)

  it("checks types", function()
    assert.equal(print, check.type("f", "cb", print, "function"))
    assert.is_nil(check.type("f", "cb", nil, "function", true))
    assert.has_error(function() check.type("f", "cb", 3, "function") end,
      "f: cb must be a function, got 3")
  end)
end)
