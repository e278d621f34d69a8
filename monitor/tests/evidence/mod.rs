//! What the evidence tests share: sessions crafted as a capture (a handshake, server data,
//! losses resent, an end by FINs or by a reset), and reading captures with tshark.
#![allow(dead_code)]

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use monitor_common::{
    craft::TcpFrame,
    parse::{ACK, FIN, RST, SYN},
};
use serde_json::Value;

pub const MS: u64 = 1_000_000;
pub const T0: u64 = 1_700_000_000_000 * MS;
pub const CLIENT: [u8; 4] = [10, 88, 1, 12];
pub const SERVER: [u8; 4] = [10, 88, 2, 2];

pub type Frames = Vec<(u64, Vec<u8>)>;

/// One connection: a handshake at `t`, then `segments` server data segments 100 ms apart,
/// each ACKed; every `lossy`-th is not ACKed and sent again 200 ms later (a retransmission
/// by tshark's rules and the monitor's). Ends with FINs unless `reset_ttl` is given: then
/// a reset "from the server" with that TTL (the server's own is 64).
pub struct Session {
    pub client: IpAddr,
    pub cport: u16,
    pub server: IpAddr,
    pub sport: u16,
    pub isn: u32,
    pub t: u64,
    pub segments: u32,
    pub lossy: Option<u32>,
    pub reset_ttl: Option<u8>,
}

impl Session {
    pub fn frames(&self) -> Frames {
        self.frames_every(100 * MS)
    }

    /// The frames, the server's data segments `every` ns apart.
    pub fn frames_every(&self, every: u64) -> Frames {
        let c = TcpFrame::new(self.client, self.cport, self.server, self.sport);
        let s = TcpFrame::new(self.server, self.sport, self.client, self.cport);
        let (mut cseq, mut sseq) = (self.isn, self.isn.wrapping_mul(7) ^ 0x5a5a);
        let (mut cid, mut sid) = (100u16, 5000u16);
        let mut out = Vec::new();
        let mut t = self.t;
        let mut push = |t: u64, mut f: TcpFrame, client: bool| {
            if client {
                cid += 1;
                f.ip_id = cid;
            } else {
                sid += 1;
                f.ip_id = sid;
            }
            out.push((t, f.ethernet()));
        };
        let mut syn = c.clone().flags(SYN);
        syn.seq = cseq;
        push(t, syn, true);
        let mut synack = s.clone().flags(SYN | ACK);
        (synack.seq, synack.ack) = (sseq, cseq + 1);
        push(t + MS, synack, false);
        (cseq, sseq) = (cseq + 1, sseq + 1);
        let mut ack = c.clone();
        (ack.seq, ack.ack) = (cseq, sseq);
        push(t + 2 * MS, ack, true);
        t += 10 * MS;
        for k in 0..self.segments {
            let mut d = s.clone().payload(&[0x22; 100]);
            (d.seq, d.ack) = (sseq, cseq);
            push(t, d.clone(), false);
            if self.lossy.is_some_and(|n| k % n == n - 1) {
                push(t + 200 * MS, d, false);
                t += 200 * MS;
            }
            sseq += 100;
            let mut a = c.clone();
            (a.seq, a.ack) = (cseq, sseq);
            push(t + MS, a, true);
            t += every;
        }
        match self.reset_ttl {
            Some(ttl) => {
                let mut r = s.clone().flags(RST | ACK);
                (r.seq, r.ack, r.ttl) = (sseq, cseq, ttl);
                push(t, r, false);
            }
            None => {
                let mut f = c.clone().flags(FIN | ACK);
                (f.seq, f.ack) = (cseq, sseq);
                push(t, f, true);
                let mut g = s.clone().flags(FIN | ACK);
                (g.seq, g.ack) = (sseq, cseq + 1);
                push(t + MS, g, false);
                let mut a = c.clone();
                (a.seq, a.ack) = (cseq + 1, sseq + 1);
                push(t + 2 * MS, a, true);
            }
        }
        out
    }
}

pub fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

pub fn write_capture(path: &Path, mut frames: Frames) {
    frames.sort_by_key(|(t, _)| *t);
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .map(|(t, f)| (*t, f.as_slice(), f.len() as u32))
        .collect();
    std::fs::write(path, monitor_common::craft::pcap(&records)).expect("write capture");
}

pub fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tshark is a test tool (cargo xtask setup) and must run: {e}"));
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

/// The capture file `alert` names, checked to be in `dir` under its documented name.
pub fn capture_of(alert: &Value, dir: &Path) -> PathBuf {
    let path = PathBuf::from(alert["capture"].as_str().unwrap_or_else(|| {
        panic!("alert without a capture: {alert}");
    }));
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let ends = |s: &str| s.replace(':', "_");
    assert_eq!(
        name,
        format!(
            "{}-{}-{}-{}.pcapng",
            alert["id"],
            alert["kind"].as_str().expect("kind"),
            ends(alert["client"].as_str().expect("client")),
            ends(alert["server"].as_str().expect("server"))
        )
    );
    assert!(!name.contains([':', '/', '[', ']']), "{name}");
    assert_eq!(path.parent(), Some(dir));
    assert!(path.is_file(), "{} was not written", path.display());
    path
}

/// The input's frames of `client`-`server` (both directions) from the one at `first_ns`
/// up to, not including, the next connection's SYN (another ISN): as tshark reads them
/// (time, length).
pub fn flow_in_input(input: &Path, client: &str, server: &str, first_ns: u64) -> Vec<String> {
    let (c, s): (std::net::SocketAddr, std::net::SocketAddr) = (
        client.parse().expect("client"),
        server.parse().expect("server"),
    );
    let filter = format!(
        "ip.addr=={} && ip.addr=={} && tcp.port=={} && tcp.port=={}",
        c.ip(),
        s.ip(),
        c.port(),
        s.port()
    );
    let out = tshark(&[
        "-r",
        &input.display().to_string(),
        "-Y",
        &filter,
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
        "-e",
        "tcp.flags.syn",
        "-e",
        "tcp.flags.ack",
        "-e",
        "tcp.seq_raw",
    ]);
    let first = format!(
        "{}.{:09}",
        first_ns / 1_000_000_000,
        first_ns % 1_000_000_000
    );
    let rows: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    let start = rows
        .iter()
        .position(|r| r[0] == first)
        .unwrap_or_else(|| panic!("no input frame at {first}: {out}"));
    let mut kept = vec![format!("{}\t{}", rows[start][0], rows[start][1])];
    for r in &rows[start + 1..] {
        // A SYN with another ISN starts the next connection (a resent SYN does not).
        if r[2] == "1" && r[3] == "0" && r[4] != rows[start][4] {
            break;
        }
        kept.push(format!("{}\t{}", r[0], r[1]));
    }
    kept
}

pub fn run_replay(args: &[&str]) -> (Value, String) {
    let out = Command::new(super::common::MONITOR)
        .arg("replay")
        .args(args)
        .output()
        .expect("run monitor replay");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay {args:?}: {stderr}");
    let v = serde_json::from_slice(&out.stdout).expect("the JSON summary");
    (v, stderr)
}

/// Raw IP (LINKTYPE_RAW, 101) instead of Ethernet: the captures keep the input's link type.
pub fn write_raw_ip_capture(path: &Path, mut frames: Frames) {
    frames.sort_by_key(|(t, _)| *t);
    let raw: Vec<(u64, Vec<u8>)> = frames
        .into_iter()
        .map(|(t, f)| (t, f[14..].to_vec()))
        .collect();
    let records: Vec<(u64, &[u8], u32)> = raw
        .iter()
        .map(|(t, f)| (*t, f.as_slice(), f.len() as u32))
        .collect();
    let mut bytes = monitor_common::craft::pcap(&records);
    bytes[20..24].copy_from_slice(&101u32.to_le_bytes());
    std::fs::write(path, bytes).expect("write capture");
}

/// A live run's capture of `alert` (its transition line), checked as a vendor would read
/// it: tshark reads it whole; it holds one flow, from the flow's SYN; its header names the
/// alert; and the packets the alert is about carry the monitor's verdict: each of tshark's
/// retransmissions is commented as one, and each commented one tshark flags too (as a
/// retransmission, or out of order where it lacks the packets the ring let go), but for
/// the first packet after them; a reset alert's reset is commented; a media alert's verdict
/// is said on the packet that answered the hello. Returns the frames' comments.
pub fn check_live_capture(alert: &Value, dir: &Path) -> Vec<String> {
    let path = capture_of(alert, dir);
    let p = path.to_str().expect("utf-8 path");
    let streams = lines(&tshark(&["-r", p, "-T", "fields", "-e", "tcp.stream"]));
    let mut unique = streams.clone();
    unique.dedup();
    assert_eq!(unique, ["0"], "{p} holds one flow: {streams:?}");
    let first = tshark(&["-r", p, "-c", "1", "-T", "fields", "-e", "tcp.flags.str"]);
    assert!(
        first.contains('S') && !first.contains('A'),
        "{p} starts with the client's SYN: {first}"
    );
    let info = Command::new("capinfos")
        .args(["-k", p])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let id = alert["id"].as_u64().expect("id");
    assert!(
        info.contains(&format!(
            "monitor alert {id}: {}",
            alert["kind"].as_str().unwrap_or("")
        )),
        "{p}: the section header names the alert: {info}"
    );
    let fields = |filter: &str| {
        lines(&tshark(&[
            "-r",
            p,
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]))
    };
    let comments = lines(&tshark(&["-r", p, "-T", "fields", "-e", "frame.comment"]));
    let kind = alert["kind"].as_str().unwrap_or_default();
    if kind == "retransmit_rate" {
        let theirs = fields("tcp.analysis.retransmission");
        assert!(!theirs.is_empty(), "{p}: tshark finds the retransmissions");
        let ours = fields("frame.comment contains \"retransmission\"");
        for n in &theirs {
            assert!(
                ours.contains(n),
                "{p}: tshark's retransmission {n} is commented"
            );
        }
        let after_gap = fields("frame.comment contains \"not in this file\"");
        let flagged = fields("tcp.analysis.flags");
        for n in &ours {
            assert!(
                flagged.contains(n) || after_gap.contains(n),
                "{p}: frame {n} is commented a retransmission, tshark disagrees"
            );
        }
    }
    if kind == "media_intercepted" {
        // The packet that answered the hello says what the hello should have got.
        let said =
            fields("frame.comment contains \"media \" && (tcp.len > 0 || tcp.flags.reset == 1)");
        assert_eq!(said.len(), 1, "{p}: one packet names the media verdict");
    }
    if kind == "reset" {
        let resets = fields("tcp.flags.reset == 1");
        let said = fields("frame.comment contains \"reset\"");
        assert!(!resets.is_empty(), "{p}: the reset is in the capture");
        for n in &resets {
            assert!(said.contains(n), "{p}: reset frame {n} is commented");
        }
    }
    comments
}
