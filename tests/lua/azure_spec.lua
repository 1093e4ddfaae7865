-- tests/lua/azure_spec.lua — the script side of the azure dialect, offline:
-- what lume.publish puts in the outbox (the property bag in the topic), the
-- 256 KiB limit, the reported key rules at lume.twin.report, lume.method and
-- lume.on_c2d. The wire side is tests/integration/test_azure.sh.
local H = require "helper"

local KEY = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3OA=="
local AZ = { net = { dialect = "azure",
  connection_string = "HostName=hub.azure-devices.net;DeviceId=spec-device;SharedAccessKey=" .. KEY } }

describe("azure dialect (offline)", function()
  it("publish: the route and the script's properties go in the property bag", function()
    H.with_runtime({ config = AZ }, function(rt)
      assert(rt:install("p", [[
        function go()
          assert(lume.publish("temp/avg", { t = 1 }, { properties = { site = "plant a", ["k&"] = "v=1" } }))
          assert(lume.publish("plain", 2))
          return true
        end
        function bad(p) return pcall(lume.publish, "r", 1, { properties = p }) end
        function big() return lume.publish("r", string.rep("x", 256 * 1024)) end
      ]]))
      assert.is_true(select(2, rt:call("p", "go")))
      local msgs = rt:peek(10)
      assert.are.equal(2, #msgs)
      local t1 = msgs[1].topic
      assert.truthy(t1:find("^devices/spec%-device/messages/events/%$%.ct=application%%2Fjson&%$%.ce=utf%-8&route=temp%%2Favg&t=mqtt&"))
      assert.truthy(t1:find("site=plant%20a", 1, true))
      assert.truthy(t1:find("k%26=v%3D1", 1, true))
      assert.are.equal("devices/spec-device/messages/events/$.ct=application%2Fjson&$.ce=utf-8&route=plain&t=mqtt",
                       msgs[2].topic)
      local _, ok, err = rt:call("p", "bad", { 1, 2 })
      assert.is_false(ok)
      assert.matches("properties must map string keys to string values", err)
      _, ok, err = rt:call("p", "bad", "x")
      assert.is_false(ok)
      assert.matches("properties must be a table", err)
      local _, id, why = rt:call("p", "big")
      assert.is_nil(id)
      assert.matches("over the 256 KiB a hub accepts", why)
    end)
  end)

  it("twin.report refuses a key the hub refuses, naming it; methods and C2D register", function()
    H.with_runtime({ config = AZ }, function(rt)
      assert(rt:install("p", [[
        function rep(t) return lume.twin.report(t) end
        function reg()
          lume.method("ping", function() return "pong" end)
          lume.on_c2d(function() end)
          return pcall(lume.method, "a/b", function() end)
        end
      ]]))
      local _, ok, err = rt:call("p", "rep", { valve = { ["a b"] = 1 } })
      assert.is_nil(ok)
      assert.matches('twin.report: reported key "a b" %(at valve.a b%) holds a space', err)
      _, ok, err = rt:call("p", "rep", { ["$x"] = 1 })
      assert.is_nil(ok)
      assert.matches("'%$'", err)
      assert.is_true(select(2, rt:call("p", "rep", { valve = { open = true } })))
      local _, pok, perr = rt:call("p", "reg")
      assert.is_false(pok)
      assert.matches("a method name is 1..127 bytes", perr)
    end)
  end)
end)
