#!/usr/bin/env python3
"""tests/soak/proxy.py — a TCP proxy that breaks connections on purpose.

    proxy.py LISTEN_PORT UPSTREAM_PORT STATS_FILE [--seed N]

Listens on 127.0.0.1:LISTEN_PORT and forwards every connection to
127.0.0.1:UPSTREAM_PORT (the broker). While faults are on, each connection
lives a random while (exponential, mean MEAN_LIFE_S) and then meets one of:

  cut        both sides closed at once, with a RST (SO_LINGER 0) or a FIN
  half-close one direction shut (write EOF) and that pump stopped, the other
             direction still open: towards lume (it reads EOF) or towards the
             broker (which then closes); cut if nothing ends it in 10 s
  stall      no byte forwarded either way (or one way) for 1..6 s, the sockets
             open; then forwarding resumes, or the connection is cut
  refuse     (at accept) closed at once, before any byte

SIGUSR1 turns faults off (stalled connections resume): the soak's final drain.
SIGTERM writes the counters as JSON to STATS_FILE and exits. Loopback only.
"""
import asyncio
import json
import random
import signal
import socket
import struct
import sys

MEAN_LIFE_S = 4.0
REFUSE_P = 0.08

stats = {"connections": 0, "refused": 0, "cut_rst": 0, "cut_fin": 0,
         "half_close_to_client": 0, "half_close_to_broker": 0,
         "stall": 0, "stall_one_way": 0, "stall_then_cut": 0,
         "bytes_up": 0, "bytes_down": 0, "faults_on": True}
faults_on = True
live = set()


def rst(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Conn:
    def __init__(self, cr, cw, ur, uw):
        self.cr, self.cw, self.ur, self.uw = cr, cw, ur, uw
        self.go = {"up": asyncio.Event(), "down": asyncio.Event()}
        for e in self.go.values():
            e.set()
        self.dead = False

    def close(self, hard):
        if self.dead:
            return
        self.dead = True
        for w in (self.cw, self.uw):
            if hard:
                rst(w)
            else:
                try:
                    w.close()
                except Exception:
                    pass
        for e in self.go.values():
            e.set()

    def resume(self):
        for e in self.go.values():
            e.set()

    async def pump(self, name, reader, writer):
        key = "bytes_up" if name == "up" else "bytes_down"
        try:
            while not self.dead:
                await self.go[name].wait()
                if self.dead:
                    break
                data = await reader.read(65536)
                if not data:
                    if not self.dead:  # the peer closed its side: pass it on
                        try:
                            writer.write_eof()
                        except Exception:
                            self.close(False)
                    break
                await self.go[name].wait()  # a stall may start while we read
                if self.dead:
                    break
                stats[key] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            self.close(False)

    async def faults(self):
        while not self.dead:
            await asyncio.sleep(random.expovariate(1.0 / MEAN_LIFE_S))
            if self.dead or not faults_on:
                continue
            r = random.random()
            if r < 0.40:
                hard = random.random() < 0.5
                stats["cut_rst" if hard else "cut_fin"] += 1
                self.close(hard)
            elif r < 0.60:
                to_client = random.random() < 0.5
                stats["half_close_to_client" if to_client else "half_close_to_broker"] += 1
                # shut one direction: its pump stops forwarding
                self.go["down" if to_client else "up"].clear()
                try:
                    (self.cw if to_client else self.uw).write_eof()
                except Exception:
                    pass
                await asyncio.sleep(10)
                self.close(True)  # whatever is left of it
            else:
                one_way = random.random() < 0.3
                stats["stall_one_way" if one_way else "stall"] += 1
                dirs = [random.choice(["up", "down"])] if one_way else ["up", "down"]
                for d in dirs:
                    self.go[d].clear()
                await asyncio.sleep(random.uniform(1.0, 6.0))
                if self.dead:
                    break
                if faults_on and random.random() < 0.3:
                    stats["stall_then_cut"] += 1
                    self.close(random.random() < 0.5)
                else:
                    self.resume()


async def handle(cr, cw, upstream_port):
    stats["connections"] += 1
    if faults_on and random.random() < REFUSE_P:
        stats["refused"] += 1
        rst(cw)
        return
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        rst(cw)
        return
    c = Conn(cr, cw, ur, uw)
    live.add(c)
    tasks = [asyncio.ensure_future(c.pump("up", cr, uw)),
             asyncio.ensure_future(c.pump("down", ur, cw))]
    ft = asyncio.ensure_future(c.faults())
    await asyncio.gather(*tasks, return_exceptions=True)
    ft.cancel()
    c.close(False)
    live.discard(c)


def main():
    listen_port, upstream_port, stats_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if "--seed" in sys.argv:
        random.seed(int(sys.argv[sys.argv.index("--seed") + 1]))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(asyncio.start_server(
        lambda r, w: handle(r, w, upstream_port), "127.0.0.1", listen_port))

    def faults_off():
        global faults_on
        faults_on = False
        stats["faults_on"] = False
        for c in list(live):
            c.resume()

    def stop():
        with open(stats_file, "w") as f:
            json.dump(stats, f)
        server.close()
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, faults_off)
    loop.add_signal_handler(signal.SIGTERM, stop)
    print("listening", listen_port, flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
