"""tests/integration/mqtt_wire.py — MQTT 3.1.1 wire helpers and the SAS
token arithmetic shared by the Azure emulators (azure_hub.py, the IoT Hub;
dps_emulator.py, the Device Provisioning Service). Both proxy a device's
TCP connection to a real mosquitto after checking its CONNECT as the
service would; these are the bytes they read and write to do it.
"""
import base64
import hashlib
import hmac


def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def read_packet(s):
    """One packet from socket s: (fixed header bytes, body). The header's
    first byte is the packet type and flags (hdr[0] >> 4 is the type)."""
    first = read_exact(s, 1)
    mult, length, hdr = 1, 0, b""
    while True:
        d = read_exact(s, 1)
        hdr += d
        length += (d[0] & 127) * mult
        mult *= 128
        if not d[0] & 128:
            break
    return first + hdr, read_exact(s, length)


def varlen(n):
    out = b""
    while True:
        d = n % 128
        n //= 128
        out += bytes([d | (128 if n else 0)])
        if not n:
            return out


def packet(first, body):
    """A packet from its first byte (an int) and its body."""
    return bytes([first]) + varlen(len(body)) + body


def mqtt_str(b, i):
    """The length-prefixed string at b[i:]: (bytes, index after it)."""
    n = int.from_bytes(b[i:i + 2], "big")
    return b[i + 2:i + 2 + n], i + 2 + n


def enc_str(s):
    return len(s).to_bytes(2, "big") + s


def parse_connect(body):
    """A CONNECT body: (client id, user name or None, password or None)."""
    _, i = mqtt_str(body, 0)          # "MQTT"
    flags = body[i + 1]
    i += 4                            # level, flags, keepalive
    cid, i = mqtt_str(body, i)
    if flags & 0x04:                  # will topic and message
        _, i = mqtt_str(body, i)
        _, i = mqtt_str(body, i)
    user = pw = None
    if flags & 0x80:
        user, i = mqtt_str(body, i)
    if flags & 0x40:
        pw, i = mqtt_str(body, i)
    return cid.decode(), user.decode() if user else None, pw.decode() if pw else None


def raw_fields(token):
    """The fields of a SAS token (after "SharedAccessSignature ") as they
    stand, not URL-decoded."""
    out = {}
    for part in token.split("&"):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def sas_sign(key_b64, text):
    """base64(HMAC-SHA256(base64dec(key), text)): a SAS signature over
    "sr\\nse", or a group enrollment's device key derived from its
    registration id."""
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), text.encode(),
                                     hashlib.sha256).digest()).decode()
