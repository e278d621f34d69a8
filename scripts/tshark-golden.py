#!/usr/bin/env python3
"""Regenerate testdata/golden/<capture>.json from tshark: what Wireshark's TCP analysis flags,
per connection (tshark's tcp.stream) and direction, for every capture in testdata/pcaps.

The conformance test (monitor/tests/conformance.rs) compares `monitor replay` with these
files; nobody edits them by hand. Run from the repository root:

    python3 scripts/tshark-golden.py          # rewrite the files
    python3 scripts/tshark-golden.py --check  # exit 1 if a file would change

Choices:
- tshark's own defaults (relative sequence numbers on, as a user sees them), plus
  tcp.analyze_sequence_numbers:TRUE (the default, stated so a changed default cannot drift).
- Only frames with a TCP layer count; for ICMP errors quoting a TCP header (two tcp layers)
  the first occurrence is used, as `-E occurrence=f` does.
- The output is deterministic: sorted keys, stable order, no generation time.
"""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PCAPS = ROOT / "testdata" / "pcaps"
GOLDEN = ROOT / "testdata" / "golden"

FLAGS = [
    "retransmission", "fast_retransmission", "spurious_retransmission", "out_of_order",
    "lost_segment", "ack_lost_segment", "duplicate_ack", "zero_window", "zero_window_probe",
    "zero_window_probe_ack", "window_full", "window_update", "keep_alive", "keep_alive_ack",
    "reused_ports",
]
BASE = ["frame.number", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport",
        "tcp.dstport", "tcp.stream", "tcp.flags", "tcp.len"]
FIELDS = BASE + ["tcp.analysis." + f for f in FLAGS]
COUNTERS = ["frames", "payload_bytes", "syn", "synack", "fin", "rst"] + FLAGS


def tshark_version():
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[2] if out.startswith("TShark") else out.splitlines()[0]


def endpoint(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def analyse(pcap):
    cmd = ["tshark", "-r", str(pcap), "-n", "-o", "tcp.analyze_sequence_numbers:TRUE",
           "-Y", "tcp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    conns = {}
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split("\t")))
        src = endpoint(v["ip.src"] or v["ipv6.src"], v["tcp.srcport"])
        dst = endpoint(v["ip.dst"] or v["ipv6.dst"], v["tcp.dstport"])
        stream = int(v["tcp.stream"])
        frame = int(v["frame.number"])
        c = conns.setdefault(stream, {"stream": stream, "first_frame": frame,
                                      "endpoints": [src, dst], "syn_sender": None,
                                      "directions": {}, "frames": []})
        a, b = c["endpoints"]
        for d in (f"{a}->{b}", f"{b}->{a}"):
            c["directions"].setdefault(d, {k: 0 for k in COUNTERS})
        flags = int(v["tcp.flags"] or "0", 16)
        syn, ack, fin, rst = flags & 2, flags & 16, flags & 1, flags & 4
        if syn and not ack and c["syn_sender"] is None:
            c["syn_sender"] = src
        d = c["directions"][f"{src}->{dst}"]
        d["frames"] += 1
        d["payload_bytes"] += int(v["tcp.len"] or 0)
        d["syn"] += bool(syn and not ack)
        d["synack"] += bool(syn and ack)
        d["fin"] += bool(fin)
        d["rst"] += bool(rst)
        set_flags = [f for f in FLAGS if v.get("tcp.analysis." + f)]
        for f in set_flags:
            d[f] += 1
        if set_flags:
            dir_name = "A->B" if src == a else "B->A"
            c["frames"].append([frame, dir_name, set_flags])
    totals = {k: 0 for k in COUNTERS}
    for c in conns.values():
        for d in c["directions"].values():
            for k in COUNTERS:
                totals[k] += d[k]
    return {"capture": pcap.name, "tshark": tshark_version(),
            "connections": [conns[s] for s in sorted(conns)], "totals": totals}


def main():
    check = "--check" in sys.argv[1:]
    GOLDEN.mkdir(parents=True, exist_ok=True)
    changed = []
    pcaps = sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    for pcap in pcaps:
        text = json.dumps(analyse(pcap), indent=1, sort_keys=True) + "\n"
        path = GOLDEN / (pcap.name + ".json")
        old = path.read_text() if path.exists() else None
        if old != text:
            changed.append(path.name)
            if not check:
                path.write_text(text)
        g = json.loads(text)
        nonzero = {k: v for k, v in g["totals"].items()
                   if v and k not in ("frames", "payload_bytes", "syn", "synack", "fin", "rst")}
        print(f"{pcap.name:36} conns {len(g['connections']):2}  {nonzero}")
    if check and changed:
        print("would change:", ", ".join(changed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
