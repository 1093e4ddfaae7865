-- boards/modbus-plc.lua — a legacy controller (a PLC of a pump station)
-- reached over Modbus TCP, with its coils and a setpoint register as
-- outputs that fail safe.
--
-- Register map of the example controller (edit `url` and the addresses for
-- yours; docs/sampler.md lists every param of the modbus driver):
--   input registers   0   tank level, 0.1 %          (u16)
--                     1   water temperature, 0.01 C  (s16)
--                     2-3 flow, l/min                (float32, high word first)
--                     4-5 pump run hours             (u32, low word first)
--   discrete inputs   0   pump running (feedback)
--   coils             0   pump on            (output `pump`)
--                     1   alarm horn         (output `horn`)
--   holding register  10  speed setpoint, %  (output `speed`)
-- The controller's own logic is the last line of defence; lume's fail-safe
-- values (docs/outputs.md) put the pump off, the horn off and the speed at
-- 0 whenever the script driving them stops, is rolled back or quarantined,
-- crashes, and when lume shuts down. A Modbus server that stops answering
-- never delays the other channels: its readings time out (lume stats).
local plc = "tcp://192.168.1.50:502"
return {
  name = "modbus-plc",
  description = "Pump station PLC over Modbus TCP: tank level, temperature, flow; "
             .. "pump and horn coils and a speed setpoint as fail-safe outputs",
  sensors = {
    { name = "level", driver = "modbus", unit = "%", rate = 1, min_rate = 0.1, max_rate = 10,
      params = { url = plc, unit = 1, table = "input", address = 0, type = "u16",
                 scale = 0.1, timeout_ms = 300 } },
    { name = "water_temp", driver = "modbus", unit = "C", rate = 1, min_rate = 0.1, max_rate = 10,
      params = { url = plc, unit = 1, table = "input", address = 1, type = "s16",
                 scale = 0.01, timeout_ms = 300 } },
    { name = "flow", driver = "modbus", unit = "l/min", rate = 1, min_rate = 0.1, max_rate = 10,
      params = { url = plc, unit = 1, table = "input", address = 2, type = "float32",
                 order = "big", timeout_ms = 300 } },
    { name = "run_hours", driver = "modbus", unit = "h", rate = 0.1, min_rate = 0.01, max_rate = 1,
      params = { url = plc, unit = 1, table = "input", address = 4, type = "u32",
                 order = "little", timeout_ms = 300 } },
    { name = "pump_running", driver = "modbus", unit = "on", rate = 1, min_rate = 0.1, max_rate = 10,
      params = { url = plc, unit = 1, table = "discrete", address = 0, timeout_ms = 300 } },
  },
  outputs = {
    pump  = { driver = "modbus.coil", failsafe = 0, max_rate_hz = 0.2,
              params = { url = plc, unit = 1, address = 0, timeout_ms = 300 },
              description = "pump contactor; at most one switch per 5 s" },
    horn  = { driver = "modbus.coil", failsafe = 0, max_rate_hz = 1,
              params = { url = plc, unit = 1, address = 1, timeout_ms = 300 } },
    speed = { driver = "modbus.register", failsafe = 0, min = 0, max = 100, max_rate_hz = 2,
              params = { url = plc, unit = 1, address = 10, type = "u16", scale = 0.1,
                         timeout_ms = 300 },
              description = "speed setpoint in %, written in 0.1 % steps" },
  },
}
