#!/usr/bin/env python3
"""Write the hand-made captures of testdata/pcaps (crafted-*.pcap): small TCP conversations
that exercise one rule of Wireshark's analysis each, which no public capture in the set
covers alone. Standard library only; deterministic bytes (fixed times, addresses, ISNs).

    python3 scripts/craft-captures.py            # rewrite the files
    python3 scripts/craft-captures.py --check    # exit 1 if a file would change

Then record their goldens with scripts/tshark-golden.py, as for every capture.

crafted-fin-repeat.pcap: a capture started mid-connection whose first client segment is a
pure ACK; the server ACKs client data the capture missed and then repeats its FIN at the
same sequence number while the client keeps sending data with the same ACK number.
Wireshark numbers a side first seen without a SYN from 1 (its base is one below that first
sequence number), so the pure ACK already makes the client's "next sequence" and "max seq
to be acked" known: the server's ACK past them is an ACKed unseen segment (and sets the
client's duplicate-ACK counter to -1), the client's next data shows the hole (a lost
segment), and each repeated FIN that the client's ACK names within 20 ms is a fast
retransmission. Numbered from 0 instead, the pure ACK would leave all three unknown.
"""
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PCAPS = ROOT / "testdata" / "pcaps"

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def frame(src, sport, dst, dport, seq, ack, flags, payload=b"", window=502, ip_id=1):
    """Ethernet, IPv4 and TCP (no options), checksums filled in."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, window, 0, 0) + payload
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, 64, 6, 0,
                     ip4(src), ip4(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002") + bytes.fromhex("020000000001") + b"\x08\x00"
    return eth + ip + tcp


def pcap(frames):
    """Classic pcap, microsecond times, Ethernet."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for t_us, data in frames:
        out += struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(data), len(data))
        out += data
    return out


def fin_repeat():
    c, s = ("192.0.2.10", 40100), ("198.51.100.20", 443)
    ic, is_ = 1_000_000, 7_000_000  # ISNs; relative numbers below start at 1

    def cs(rel_seq, rel_ack, flags, payload=b""):
        return frame(c[0], c[1], s[0], s[1], ic + rel_seq, is_ + rel_ack, flags, payload)

    def sc(rel_seq, rel_ack, flags, payload=b""):
        return frame(s[0], s[1], c[0], c[1], is_ + rel_seq, ic + rel_ack, flags, payload)

    data = b"x" * 100
    frames = [
        # The capture starts here: the client's first segment is a pure ACK.
        cs(101, 201, ACK),
        # The server ACKs client data 101..301 the capture never saw, and closes.
        sc(201, 301, FIN | ACK),
        # The client keeps sending with the same ACK (it has not taken the FIN) ...
        cs(301, 201, PSH | ACK, data),
        # ... and the server repeats its FIN at the same sequence number.
        sc(201, 401, FIN | ACK),
        cs(401, 201, PSH | ACK, data),
        sc(201, 501, FIN | ACK),
        # The client finally takes the FIN and closes too.
        cs(501, 202, FIN | ACK),
        sc(202, 502, ACK),
    ]
    t0 = 1_700_000_000_000_000
    # 2 ms apart: every repeat is within Wireshark's 20 ms of the client's last ACK.
    return pcap([(t0 + i * 2000, f) for i, f in enumerate(frames)])


CAPTURES = {"crafted-fin-repeat.pcap": fin_repeat}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, make in CAPTURES.items():
        path = PCAPS / name
        data = make()
        if check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
    if stale:
        print("would change: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
