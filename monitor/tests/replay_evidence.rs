//! `monitor replay --evidence DIR`: every alert's capture holds exactly its flow's frames of
//! the input (one connection of a reused 4-tuple, from its SYN), tshark reads it, its
//! comments name the packets the alert is about, and tshark's own analysis of it finds the
//! retransmissions and the reset. The directory limit drops files, says so, and holds.
//! tshark is a test tool (`cargo xtask setup`): missing, these tests fail.

mod common;

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

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000 * MS;
const CLIENT: [u8; 4] = [10, 88, 1, 12];
const SERVER: [u8; 4] = [10, 88, 2, 2];

type Frames = Vec<(u64, Vec<u8>)>;

/// One connection: a handshake at `t`, then `segments` server data segments 100 ms apart,
/// each ACKed; every `lossy`-th is not ACKed and sent again 200 ms later (a retransmission
/// by tshark's rules and the monitor's). Ends with FINs unless `reset_ttl` is given: then
/// a reset "from the server" with that TTL (the server's own is 64).
struct Session {
    client: IpAddr,
    cport: u16,
    server: IpAddr,
    sport: u16,
    isn: u32,
    t: u64,
    segments: u32,
    lossy: Option<u32>,
    reset_ttl: Option<u8>,
}

impl Session {
    fn frames(&self) -> Frames {
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
            t += 100 * MS;
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

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn write_capture(path: &Path, mut frames: Frames) {
    frames.sort_by_key(|(t, _)| *t);
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .map(|(t, f)| (*t, f.as_slice(), f.len() as u32))
        .collect();
    std::fs::write(path, monitor_common::craft::pcap(&records)).expect("write capture");
}

fn tshark(args: &[&str]) -> String {
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

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

/// The capture file `alert` names, checked to be in `dir` under its documented name.
fn capture_of(alert: &Value, dir: &Path) -> PathBuf {
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
/// up to, not including, the next connection's SYN: as tshark reads them (time, length).
fn flow_in_input(input: &Path, client: &str, server: &str, first_ns: u64) -> Vec<String> {
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
        if r[2] == "1" && r[3] == "0" {
            break;
        }
        kept.push(format!("{}\t{}", r[0], r[1]));
    }
    kept
}

fn run_replay(args: &[&str]) -> (Value, String) {
    let out = Command::new(common::MONITOR)
        .arg("replay")
        .args(args)
        .output()
        .expect("run monitor replay");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay {args:?}: {stderr}");
    let v = serde_json::from_slice(&out.stdout).expect("the JSON summary");
    (v, stderr)
}

#[test]
fn each_alert_capture_holds_its_flow_and_shows_what_the_alert_is_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("edge.pcap");
    let ev = dir.path().join("ev");
    let record = dir.path().join("run.jsonl");
    let (client, server) = (ip(CLIENT), ip(SERVER));
    let base = |isn, t, segments, lossy| Session {
        client,
        cport: 40002,
        server,
        sport: 50002,
        isn,
        t,
        segments,
        lossy,
        reset_ttl: None,
    };
    let mut frames = Vec::new();
    // The same 4-tuple three times: a healthy connection, the lossy one, a healthy one.
    frames.extend(base(1000, T0, 5, None).frames());
    frames.extend(base(90_000, T0 + 2000 * MS, 40, Some(4)).frames());
    frames.extend(base(500_000, T0 + 15_000 * MS, 5, None).frames());
    // A session reset by a middlebox: the reset's TTL is not the server's.
    frames.extend(
        Session {
            client: ip([10, 88, 1, 14]),
            cport: 40004,
            server,
            sport: 50004,
            isn: 7000,
            t: T0 + 1000 * MS,
            segments: 6,
            lossy: None,
            reset_ttl: Some(63),
        }
        .frames(),
    );
    write_capture(&input, frames);

    let (v, stderr) = run_replay(&[
        &input.display().to_string(),
        "--json",
        "--evidence",
        &ev.display().to_string(),
        "--record",
        &record.display().to_string(),
    ]);
    let alerts = v["alerts"].as_array().expect("alerts");
    let find = |kind: &str| {
        alerts
            .iter()
            .find(|a| a["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} alert in {alerts:#?}"))
    };
    let (retx, reset) = (find("retransmit_rate"), find("reset"));
    assert!(stderr.contains("evidence capture(s) written"), "{stderr}");

    // The recording's alert lines name the same files, from the line that raised them.
    let rec = std::fs::read_to_string(&record).expect("recording");
    for a in [retx, reset] {
        let raised = rec
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["type"] == "alert" && l["alert"] == "raised" && l["id"] == a["id"])
            .unwrap_or_else(|| panic!("no raised line for {a}"));
        assert_eq!(raised["capture"], a["capture"], "{raised}");
    }

    for a in [retx, reset] {
        let file = capture_of(a, &ev);
        let f = file.display().to_string();
        // The flow is the one the alert's flow entry names (its connection of the tuple).
        let flow = v["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .find(|fl| {
                fl["alerts"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x["id"] == a["id"]))
            })
            .unwrap_or_else(|| panic!("no flow for {a}"));
        let first = flow["first_seen_ns"].as_u64().expect("first seen");
        let want = flow_in_input(
            &input,
            a["client"].as_str().expect("client"),
            a["server"].as_str().expect("server"),
            first,
        );
        let got = lines(&tshark(&[
            "-r",
            &f,
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len",
        ]));
        assert_eq!(got, want, "{f} holds other frames than its flow's");
        let syns = tshark(&["-r", &f, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0"]);
        assert_eq!(syns.lines().count(), 1, "{f}: the flow's SYN: {syns}");
        let info = String::from_utf8_lossy(
            &Command::new("capinfos")
                .arg(&f)
                .output()
                .expect("capinfos")
                .stdout,
        )
        .into_owned();
        let summary = a["summary"].as_str().expect("summary");
        assert!(info.contains(summary), "{f}: the header comment: {info}");
        assert!(info.contains("monitor "), "{f}: the application: {info}");
    }

    // Retransmissions: the frames tshark flags are exactly those the comments name.
    let f = capture_of(retx, &ev).display().to_string();
    let flagged = lines(&tshark(&[
        "-r",
        &f,
        "-Y",
        "tcp.analysis.retransmission",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]));
    assert_eq!(
        flagged.len(),
        10,
        "{f}: tshark's retransmissions {flagged:?}"
    );
    let commented = lines(&tshark(&[
        "-r",
        &f,
        "-Y",
        "frame.comment contains \"retransmission\"",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]));
    assert_eq!(commented, flagged, "{f}: comments");
    let syn_comment = tshark(&[
        "-r",
        &f,
        "-Y",
        "tcp.flags.syn==1 && tcp.flags.ack==0",
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]);
    assert!(syn_comment.contains("SYN"), "{syn_comment}");

    // The reset: tshark sees it, and its comment says why the monitor suspects it.
    let f = capture_of(reset, &ev).display().to_string();
    let rst = lines(&tshark(&[
        "-r",
        &f,
        "-Y",
        "tcp.flags.reset==1",
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]));
    assert_eq!(
        rst,
        vec!["reset, suspect injected: TTL 63, the server's 64".to_string()],
        "{f}"
    );
    // Packets with nothing to say carry no comment: the plain ACKs of the data.
    let plain = tshark(&["-r", &f, "-Y", "!frame.comment"]);
    assert!(plain.lines().count() >= 6, "{f}: {plain}");
}
