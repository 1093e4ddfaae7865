#!/usr/bin/env bash
# What the broker side can throw at a device that must not take it offline:
# retained desired documents larger than net.max_packet (the device's own
# layer and a group's), which the broker resends on every reconnect, and a
# peer that acknowledges packet ids nobody used. The device skips and
# acknowledges the big ones, says why in reported errors.desired, counts
# both in `lume stats`, and keeps its one connection.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

# mosquitto's own limit well above the documents (0, its default, is none)
mosq_start p --conf 'message_size_limit 8388608' || exit 1
BROKER_PORT=$p_PORT
B="mqtt://127.0.0.1:$p_PORT"
JGET="$ROOT/tests/integration/jget.lua"

D=poisoned
d="$T/$D"
net_device "$d" "url = '$B', keepalive_s = 5, backoff_min_ms = 100, backoff_max_ms = 300" 'x = 0'
sed -i "s|^  net = |  twin = { groups = {'fleet'} },\n  net = |" "$d/lume.conf.lua"

# stat_of PATH: one value of the running device's `lume stats` (control socket);
# the store is $STORE (not $d: lib.sh's check has a local d of its own)
STORE="$d/var"
stat_of() { "$LUME" stats --store "$STORE" 2>/dev/null | sed 's/^ok //' | lua5.4 "$JGET" "$1"; }
stat_is() { [ "$(stat_of "$1")" = "$2" ]; }
stat_ge() { local v; v=$(stat_of "$1"); [ "$v" != nil ] && [ "$v" -ge "$2" ]; }

# a JSON document of 1 MiB (VERSION: two digits)
big_doc() { # FILE VERSION
  { printf '{"$version":%s,"blob":"' "$2"; head -c $((1048576 - 25)) /dev/zero | tr '\0' 'x'; printf '"}'; } >"$1"
}
big_doc "$T/big-device.json" 41
big_doc "$T/big-group.json" 42
SIZE=$(wc -c <"$T/big-device.json")   # 1048576
LIMIT=262144   # net.max_packet's default

start_bg dev "$LUME" run --config "$d/lume.conf.lua"; DEV=$LAST_PID
check "the device connects" wait_for 10 stat_is net.state connected
check "it reports who it is" wait_for 10 reported_is $D lume.groups '["fleet"]'

# steady DESC: still the first connection of this process, seconds after the skip
steady() {
  local desc=$1 connects; connects=$(stat_of net.connects)
  sleep 3
  check "$desc: still connected" stat_is net.state connected
  check "$desc: no reconnect (connects stays $connects)" stat_is net.connects "$connects"
  check "$desc: reconnects 0" stat_is net.reconnects 0
  check "$desc: no protocol error" stat_is net.protocol_errors 0
}

# the packet size named in errors.desired: the document plus MQTT's headers
reason_size_ok() {
  local n
  n=$(reported $D errors.desired | grep -o 'of [0-9]* bytes' | grep -o '[0-9]*')
  [ -n "$n" ] && [ "$n" -gt "$SIZE" ] && [ "$n" -lt $((SIZE + 40)) ]
}

# 1. the device's own layer
mosquitto_pub -h 127.0.0.1 -p $p_PORT -r -q 1 -t "lume/$D/desired" -f "$T/big-device.json"
check "device layer: the 1 MB retained document is skipped (lume stats net.skipped_oversize)" \
  wait_for 10 stat_is net.skipped_oversize 1
steady "device layer"
check "device layer: the log names topic, size and limit" \
  grep -Eq "ERROR +mqtt: PUBLISH to 'lume/$D/desired' of [0-9]+ bytes is larger than net.max_packet \($LIMIT bytes\): skipped \(QoS 1(, retained)?, $SIZE payload bytes dropped\)" "$T/dev.err"
check "device layer: reported errors.desired names the size and the limit" \
  wait_for 10 reported_matches $D errors.desired "^device layer: PUBLISH to 'lume/$D/desired' of [0-9]+ bytes is larger than net.max_packet \($LIMIT bytes\); skipped"
check "device layer: the size named is the packet's (document + headers)" reason_size_ok

# the broker sends the retained document again on every connect: a restart
# must not turn into a loop either
kill -TERM $DEV; wait $DEV
start_bg dev2 "$LUME" run --config "$d/lume.conf.lua"; DEV=$LAST_PID
check "after a restart the retained document is skipped again" wait_for 10 stat_is net.skipped_oversize 1
steady "after a restart"

# a valid document on the same topic still applies and clears the error
mosquitto_pub -h 127.0.0.1 -p $p_PORT -r -q 1 -t "lume/$D/desired" -m '{"$version":43,"log":{"level":"debug"}}'
check "device layer: a following valid document applies" wait_for 10 reported_is $D log.level debug
check "device layer: and clears errors.desired" wait_for 10 reported_is $D errors.desired nil
check "device layer: its version is reported" reported_is $D desired_versions.device 43

# 2. a group's layer: the whole group would go offline
mosquitto_pub -h 127.0.0.1 -p $p_PORT -r -q 1 -t "lume/groups/fleet/desired" -f "$T/big-group.json"
check "group layer: the 1 MB retained document is skipped" wait_for 10 stat_is net.skipped_oversize 2
steady "group layer"
check "group layer: reported errors.desired names the layer, size and limit" \
  wait_for 10 reported_matches $D errors.desired "^group:fleet layer: PUBLISH to 'lume/groups/fleet/desired' of [0-9]+ bytes is larger than net.max_packet \($LIMIT bytes\); skipped"
mosquitto_pub -h 127.0.0.1 -p $p_PORT -r -q 1 -t "lume/groups/fleet/desired" -m '{"$version":44,"sensors":{"vibration":{"rate":250}}}'
check "group layer: a following valid document applies" wait_for 10 reported_is $D sensors.vibration.rate 250
check "group layer: and clears errors.desired" wait_for 10 reported_is $D errors.desired nil
check "no acknowledgement was unexpected on a well-behaved broker" stat_is net.unexpected_acks 0
check "nothing was logged as unexpected" sh -c "! grep -q 'unexpected' '$T/dev.err' '$T/dev2.err'"
kill -TERM $DEV; wait $DEV

# 3. a peer that acknowledges an id nobody used: a tiny fake broker that
# answers CONNECT with CONNACK and then PUBACK 4242, and otherwise behaves
# (SUBACK, PUBACK, PINGRESP). It logs every CONNECT it answers.
cat >"$T/fake_broker.py" <<'EOPY'
import socket, sys
port, log = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(4)

def read_packet(c, buf):
    while True:
        if len(buf) >= 2:
            rl, mul, i = 0, 1, 1
            while i < len(buf) and i <= 4:
                rl += (buf[i] & 0x7F) * mul
                mul *= 128
                if not buf[i] & 0x80:
                    if len(buf) >= i + 1 + rl:
                        return buf[0], buf[i + 1:i + 1 + rl], buf[i + 1 + rl:]
                    break
                i += 1
        more = c.recv(65536)
        if not more:
            return None, None, b""
        buf += more

while True:
    c, _ = srv.accept()
    buf = b""
    while True:
        first, body, buf = read_packet(c, buf)
        if first is None:
            break
        t = first >> 4
        if t == 1:                                   # CONNECT
            with open(log, "a") as f:
                f.write("connect\n")
            c.sendall(bytes([0x20, 2, 0, 0]))          # CONNACK accepted
            c.sendall(bytes([0x40, 2, 0x10, 0x92]))    # PUBACK 4242: nobody sent it
        elif t == 8:                                 # SUBSCRIBE
            c.sendall(bytes([0x90, 3]) + body[:2] + bytes([1]))
        elif t == 3 and (first >> 1) & 3:            # PUBLISH QoS 1
            tl = body[0] << 8 | body[1]
            c.sendall(bytes([0x40, 2]) + body[2 + tl:4 + tl])
        elif t == 12:                                # PINGREQ
            c.sendall(bytes([0xD0, 0]))
        elif t == 14:                                # DISCONNECT
            break
    c.close()
EOPY
mosq_free_port; FAKE_PORT=$REPLY
start_bg fake python3 "$T/fake_broker.py" "$FAKE_PORT" "$T/fake.connects"
wait_for 10 _mosq_port_open "$FAKE_PORT"
d="$T/acked"
STORE="$d/var"
net_device "$d" "url = 'mqtt://127.0.0.1:$FAKE_PORT', keepalive_s = 2, backoff_min_ms = 100, backoff_max_ms = 300"
start_bg acked "$LUME" run --config "$d/lume.conf.lua"; ACK=$LAST_PID
check "fake broker: lume connects" wait_for 10 stat_is net.state connected
check "fake broker: lume logs a WARN naming the PUBACK and its id" \
  wait_for 10 grep -Eq "WARN +mqtt: unexpected PUBACK with packet id 4242 from 127.0.0.1:$FAKE_PORT" "$T/acked.err"
check "fake broker: lume stats counts it (net.unexpected_acks)" wait_for 5 stat_is net.unexpected_acks 1
sleep 3   # more than one keepalive: PINGREQ/PINGRESP go round
check "fake broker: the connection stays up" stat_is net.state connected
check "fake broker: no reconnect" stat_is net.reconnects 0
check "fake broker: one connection (one CONNECT)" test "$(grep -c connect "$T/fake.connects")" = 1
check "fake broker: telemetry is acknowledged as usual" stat_ge net.acked 1
kill -TERM $ACK; wait $ACK

finish
