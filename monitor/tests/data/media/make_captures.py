#!/usr/bin/env python3
"""Writes one classic pcap per media verdict (Python 3 standard library only), for
monitor/tests/replay_media.rs. Each capture is one TCP connection with its handshake, built
byte by byte from the layouts in monitor/src/media/ (pseudo_tls.rs, tls.rs, stun.rs,
turn.rs). Rebuild with `python3 monitor/tests/data/media/make_captures.py` (it writes next
to itself); the output is the same on every run.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CERT = os.path.join(HERE, "..", "..", "..", "..", "testdata", "media", "edge.example.com.der")

CLIENT = bytes([192, 0, 2, 10])
SERVER = bytes([198, 51, 100, 20])
CLIENT_PORT = 40000
MS = 1_000_000  # ns

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src, dst, sport, dport, seq, ack, flags, payload=b"", ttl=64):
    """An Ethernet frame holding an IPv4 TCP segment, checksums valid."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    csum = checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, ttl, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + tcp + payload


class Connection:
    """One TCP connection: the handshake, then segments each way in order."""

    def __init__(self, port):
        self.port = port
        self.frames = []
        self.cseq, self.sseq = 1000, 5000
        self.t = 1000 * MS

    def at(self, t_ms):
        self.t = 1000 * MS + t_ms * MS

    def add(self, up, flags, payload=b"", ttl=64):
        if up:
            f = frame(CLIENT, SERVER, CLIENT_PORT, self.port, self.cseq, self.sseq, flags, payload, ttl)
            self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        else:
            f = frame(SERVER, CLIENT, self.port, CLIENT_PORT, self.sseq, self.cseq, flags, payload, ttl)
            self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.frames.append((self.t, f))
        self.t += MS

    def handshake(self):
        self.cseq -= 1  # the SYN's own sequence number
        f = frame(CLIENT, SERVER, CLIENT_PORT, self.port, self.cseq, 0, SYN)
        self.cseq += 1
        self.frames.append((self.t, f))
        self.t += MS
        self.sseq -= 1
        self.add(False, SYN | ACK)
        self.add(True, ACK)

    def write(self, name):
        out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        for t, f in self.frames:
            out += struct.pack("<IIII", t // 1_000_000_000, (t % 1_000_000_000) // 1000, len(f), len(f))
            out += f
        with open(os.path.join(HERE, name), "wb") as fh:
            fh.write(out)


# Byte layouts (monitor/src/media/).
def pseudo_client_hello():
    return bytes.fromhex("160301002d0100002903 01".replace(" ", "")) + bytes([0xA5] * 32) + bytes.fromhex("00000200180100")


def pseudo_server_hello():
    return (
        bytes.fromhex("160301004e020000460301")
        + bytes([0x5A] * 32)
        + bytes([32])
        + bytes([0x77] * 32)
        + bytes.fromhex("0018")
        + b"\0"
        + bytes.fromhex("0e000000")
    )


def handshake(kind, body):
    return bytes([kind]) + struct.pack("!I", len(body))[1:] + body


def record(content_type, version, body):
    return struct.pack("!BHH", content_type, version, len(body)) + body


def server_hello(version, cipher):
    body = struct.pack("!H", version) + bytes([0x22] * 32) + bytes([32]) + bytes([0x33] * 32)
    return handshake(2, body + struct.pack("!H", cipher) + b"\0")


def certificate(der):
    one = struct.pack("!I", len(der))[1:] + der
    return handshake(11, struct.pack("!I", len(one))[1:] + one)


def extension(kind, data):
    return struct.pack("!HH", kind, len(data)) + data


def tls_client_hello(sni, ciphers):
    body = b"\x03\x03" + bytes([0x11] * 32) + b"\0"
    body += struct.pack("!H", 2 * len(ciphers)) + b"".join(struct.pack("!H", c) for c in ciphers)
    body += b"\x01\x00"
    name = sni.encode()
    server_name = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    alpn = b"\x00\x03\x02h2"
    exts = extension(0, server_name) + extension(16, alpn) + extension(13, b"\x00\x02\x04\x01")
    body += struct.pack("!H", len(exts)) + exts
    return record(0x16, 0x0301, handshake(1, body))


MAGIC = 0x2112A442
MS_COOKIE = bytes.fromhex("000f000472c64bc6")


def stun(kind, tid, attrs=b""):
    """RFC 5389: type, length, cookie, 12-byte transaction ID, attributes."""
    return struct.pack("!HHI", kind, len(attrs), MAGIC) + tid + attrs


def ms_turn(kind, tid, attrs=b""):
    """MS-TURN's style: type, length, 16-byte transaction ID, the magic-cookie attribute."""
    body = MS_COOKIE + attrs
    return struct.pack("!HH", kind, len(body)) + tid + body


def ms_frame(kind, payload):
    return struct.pack("!BBH", kind, 0, len(payload)) + payload


def rfc4571(payload):
    return struct.pack("!H", len(payload)) + payload


def xor_mapped(ip, port):
    addr = struct.unpack("!I", ip)[0] ^ MAGIC
    return struct.pack("!HHBBHI", 0x0020, 8, 0, 1, port ^ (MAGIC >> 16), addr)


def pseudo_tls_start(port=443):
    c = Connection(port)
    c.handshake()
    c.at(10)
    c.add(True, PSH | ACK, pseudo_client_hello())
    return c


def main():
    with open(CERT, "rb") as fh:
        der = fh.read()

    # ok: the genuine answer, an MS-TURN Allocate and its response, data frames both ways.
    c = pseudo_tls_start()
    c.at(40)
    c.add(False, PSH | ACK, pseudo_server_hello())
    c.at(50)
    c.add(True, PSH | ACK, ms_frame(2, ms_turn(0x0003, bytes([1] * 16))))
    c.add(False, PSH | ACK, ms_frame(2, ms_turn(0x0103, bytes([1] * 16))))
    c.add(True, PSH | ACK, ms_frame(3, bytes([0x17] * 196)))
    c.add(False, PSH | ACK, ms_frame(3, bytes([0x17] * 996)))
    c.add(True, ACK)
    c.write("pseudo_tls_ok.pcap")

    # intercepted: a real ServerHello (cipher 0x002f), a Certificate and a ServerHelloDone
    # in the server's name, then a reset, from a device three hops nearer than the server
    # (TTL 61 where the server's SYN/ACK came with 64).
    c = pseudo_tls_start()
    c.at(12)
    flight = server_hello(0x0301, 0x002F) + certificate(der) + handshake(14, b"")
    c.add(False, PSH | ACK, record(0x16, 0x0301, flight), ttl=61)
    c.add(False, RST | ACK, ttl=61)
    c.write("intercepted.pcap")

    # rejected: a TLS alert (fatal, handshake_failure), then a reset.
    c = pseudo_tls_start()
    c.at(12)
    c.add(False, PSH | ACK, record(0x15, 0x0301, b"\x02\x28"))
    c.add(False, RST | ACK)
    c.write("rejected_alert.pcap")

    # rejected: a reset right after the hello.
    c = pseudo_tls_start()
    c.at(12)
    c.add(False, RST | ACK)
    c.write("rejected_reset.pcap")

    # no_reply: the hello is acknowledged, then nothing for 5 s (the reply timeout is
    # 3 s, alerts/config.rs); the client gives up with a FIN.
    c = pseudo_tls_start()
    c.at(11)
    c.add(False, ACK)
    c.at(5010)
    c.add(True, FIN | ACK)
    c.write("no_reply.pcap")

    # real TLS: a ClientHello with SNI answered by a ServerHello, a Certificate and a
    # ServerHelloDone: TLS, not interception.
    c = Connection(443)
    c.handshake()
    c.at(10)
    c.add(True, PSH | ACK, tls_client_hello("edge.example.com", [0xC02F, 0x1301, 0x002F]))
    c.at(30)
    c.add(False, PSH | ACK, record(0x16, 0x0303, server_hello(0x0303, 0xC02F) + certificate(der) + handshake(14, b"")))
    c.add(True, ACK)
    c.write("tls_ok.pcap")

    # STUN over TCP (RFC 4571 framing): four Binding requests 500 ms apart; the first gets
    # a success response, the second an error (487 Role Conflict), the last two nothing
    # for more than the STUN timeout (5 s, media/alert_config.rs).
    c = Connection(3478)
    c.handshake()
    error = struct.pack("!HHHBB", 0x0009, 4, 0, 4, 87)
    for i in range(4):
        c.at(10 + 500 * i)
        tid = bytes([0x40 + i] * 12)
        c.add(True, PSH | ACK, rfc4571(stun(0x0001, tid, bytes.fromhex("8022000474657374"))))
        if i == 0:
            c.add(False, PSH | ACK, rfc4571(stun(0x0101, tid, xor_mapped(CLIENT, CLIENT_PORT))))
        elif i == 1:
            c.add(False, PSH | ACK, rfc4571(stun(0x0111, tid, error)))
        else:
            c.add(False, ACK)
    c.at(7600)
    c.add(True, FIN | ACK)
    c.write("stun_tcp.pcap")


if __name__ == "__main__":
    main()
