#!/usr/bin/python3
"""tests/integration/modbus_server.py — a Modbus server lume did not write:
pymodbus's own (Debian's python3-pymodbus, 3.0 API: pymodbus.server
StartTcpServer / StartSerialServer, ModbusSlaveContext with zero_mode so
addresses are the wire's).

  modbus_server.py tcp PORT DUMP      on 127.0.0.1:PORT
  modbus_server.py rtu DEVICE DUMP    Modbus RTU on a serial device (a pty)

Every write of a coil or a holding register rewrites DUMP (atomically) with
one line per coil and register: "co0=1", "hr10=550". The registers hold a
fixed map of every type lume decodes (the test checks the values):
  holding 0      u16 1234             holding 1    s16 -200
  holding 2-3    float32 123.456, high word first
  holding 4-5    u32 74565 (0x12345), low word first
  holding 6-7    s32 -100000, high word first
  input 0        u16 500               discrete 0   1
"""
import os
import struct
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartSerialServer, StartTcpServer
from pymodbus.transaction import ModbusRtuFramer

mode, where, dump = sys.argv[1], sys.argv[2], sys.argv[3]


class Dumped(ModbusSequentialDataBlock):
    """A block that writes every coil and holding register to DUMP on change."""

    blocks = {}

    def __init__(self, tag, values):
        super().__init__(0, values)
        Dumped.blocks[tag] = self

    def setValues(self, address, values):  # pylint: disable=invalid-name
        super().setValues(address, values)
        lines = []
        for tag, block in sorted(Dumped.blocks.items()):
            n = 16 if tag == "co" else 16
            for i, v in enumerate(block.values[:n]):
                lines.append("%s%d=%d" % (tag, i, int(v)))
        tmp = dump + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, dump)


f = struct.unpack(">HH", struct.pack(">f", 123.456))
s32 = struct.unpack(">HH", struct.pack(">i", -100000))
hr = [1234, (-200) & 0xFFFF, f[0], f[1], 0x2345, 0x0001, s32[0], s32[1]] + [0] * 56
store = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [1] + [0] * 63),
    co=Dumped("co", [0] * 64),
    hr=Dumped("hr", hr),
    ir=ModbusSequentialDataBlock(0, [500] + [0] * 63),
    zero_mode=True,
)
context = ModbusServerContext(slaves=store, single=True)
Dumped.blocks["co"].setValues(0, [0])  # the first dump: the server is up

if mode == "tcp":
    StartTcpServer(context=context, address=("127.0.0.1", int(where)))
else:
    StartSerialServer(context=context, framer=ModbusRtuFramer, port=where,
                      baudrate=19200, bytesize=8, parity="N", stopbits=1, timeout=0.05)
