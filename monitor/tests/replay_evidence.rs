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
        self.frames_every(100 * MS)
    }

    /// The frames, the server's data segments `every` ns apart.
    fn frames_every(&self, every: u64) -> Frames {
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
/// up to, not including, the next connection's SYN (another ISN): as tshark reads them
/// (time, length).
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
    // A scan: 15 clients whose SYNs (each sent three times) are never answered, rolled up
    // into one alert about the server; its capture is its worst flow's.
    for i in 0..15u8 {
        let mut syn = TcpFrame::new(ip([10, 77, 0, i]), 45000, server, 50009).flags(SYN);
        syn.seq = 31 * u32::from(i) + 1;
        for resend in [0, 1000, 3000] {
            let t = T0 + 5000 * MS + u64::from(i) * 10 * MS + resend * MS;
            frames.push((t, syn.ethernet()));
        }
    }
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
    let rollup = alerts
        .iter()
        .find(|a| {
            a["session"]
                .as_str()
                .is_some_and(|s| s.starts_with("rollup:"))
        })
        .unwrap_or_else(|| panic!("no roll-up alert in {alerts:#?}"));
    assert!(stderr.contains("evidence capture(s) written"), "{stderr}");

    // The recording's alert lines name the same files, from the line that raised them.
    let rec = std::fs::read_to_string(&record).expect("recording");
    for a in [retx, reset, rollup] {
        let raised = rec
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["type"] == "alert" && l["alert"] == "raised" && l["id"] == a["id"])
            .unwrap_or_else(|| panic!("no raised line for {a}"));
        assert_eq!(raised["capture"], a["capture"], "{raised}");
    }

    for a in [retx, reset, rollup] {
        let file = capture_of(a, &ev);
        let f = file.display().to_string();
        // The flow is the one the alert's flow entry names (its connection of the tuple).
        let flow = v["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .find(|fl| {
                fl["client"] == a["client"]
                    && fl["server"] == a["server"]
                    && fl["alerts"]
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
        // Its handshake came first: the file starts at the flow's SYN.
        let syn = tshark(&[
            "-r",
            &f,
            "-Y",
            "frame.number==1 && tcp.flags.syn==1 && tcp.flags.ack==0",
        ]);
        assert_eq!(syn.lines().count(), 1, "{f}: the flow's SYN first: {syn}");
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

    // Cut to a snap length of 64, frames keep their length on the wire, so tshark's
    // analysis finds the same retransmissions in the headers alone.
    let ev64 = dir.path().join("ev64");
    run_replay(&[
        &input.display().to_string(),
        "--json",
        "--evidence",
        &ev64.display().to_string(),
        "--evidence-snaplen",
        "64",
    ]);
    let name = capture_of(retx, &ev).file_name().expect("name").to_owned();
    let f64 = ev64.join(name).display().to_string();
    let full = capture_of(retx, &ev).display().to_string();
    let sizes = |f: &str| {
        lines(&tshark(&[
            "-r",
            f,
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
        ]))
    };
    let (cut, whole) = (sizes(&f64), sizes(&full));
    assert_eq!(cut.len(), whole.len());
    for (c, w) in cut.iter().zip(&whole) {
        let len: u32 = w
            .split('\t')
            .next()
            .and_then(|l| l.parse().ok())
            .expect("len");
        assert_eq!(c, &format!("{len}\t{}", len.min(64)), "{f64}");
    }
    let flagged64 = lines(&tshark(&[
        "-r",
        &f64,
        "-Y",
        "tcp.analysis.retransmission",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]));
    assert_eq!(flagged64, flagged, "{f64}");
}

/// Raw IP (LINKTYPE_RAW, 101) instead of Ethernet: the captures keep the input's link type.
fn write_raw_ip_capture(path: &Path, mut frames: Frames) {
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

#[test]
fn the_directory_limit_drops_files_cleared_first_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("lossy.pcap");
    let ev = dir.path().join("ev");
    let record = dir.path().join("run.jsonl");
    // Four lossy sessions of about 0.6 MB of evidence each, one after the other (the first
    // ones' alerts clear while the later ones run): 2.4 MB for a 1 MB directory.
    let mut frames = Vec::new();
    for i in 0..4u8 {
        frames.extend(
            Session {
                client: ip([10, 88, 1, 20 + i]),
                cport: 41000,
                server: ip(SERVER),
                sport: 50002,
                isn: 1000 + u32::from(i),
                t: T0 + u64::from(i) * 60_000 * MS,
                segments: 1600,
                lossy: Some(4),
                reset_ttl: None,
            }
            .frames_every(20 * MS),
        );
    }
    write_raw_ip_capture(&input, frames);
    let (v, stderr) = run_replay(&[
        &input.display().to_string(),
        "--json",
        "--evidence",
        &ev.display().to_string(),
        "--evidence-max-mb",
        "1",
        "--record",
        &record.display().to_string(),
    ]);
    let total: u64 = std::fs::read_dir(&ev)
        .expect("evidence dir")
        .map(|e| e.expect("entry").metadata().expect("size").len())
        .sum();
    assert!(total <= 1024 * 1024, "{total} bytes in {}", ev.display());
    // Every alert raised named a capture; those not in the directory were said dropped,
    // cleared alerts' first, oldest first.
    let rec: Vec<Value> = std::fs::read_to_string(&record)
        .expect("recording")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &Value| l["type"] == "alert")
        .collect();
    let raised: Vec<&Value> = rec.iter().filter(|l| l["alert"] == "raised").collect();
    assert!(raised.len() >= 4, "{rec:#?}");
    let cleared = |id: &Value| {
        rec.iter()
            .any(|l| l["alert"] == "cleared" && &l["id"] == id)
    };
    let mut order: Vec<(bool, u64, String)> = raised
        .iter()
        .map(|l| {
            let path = l["capture"].as_str().expect("capture").to_string();
            (!cleared(&l["id"]), l["id"].as_u64().expect("id"), path)
        })
        .collect();
    order.sort();
    let dropped: Vec<&str> = stderr.lines().filter(|l| l.contains("dropped")).collect();
    assert!(!dropped.is_empty(), "nothing dropped: {stderr}");
    let missing: Vec<&String> = order
        .iter()
        .map(|o| &o.2)
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert_eq!(missing.len(), dropped.len(), "{stderr}");
    for (line, path) in dropped.iter().zip(&missing) {
        assert!(
            line.contains(path.as_str()) && line.contains("--evidence-max-mb 1"),
            "{line}"
        );
    }
    // What goes first is what comes first in that order.
    let firsts: Vec<&String> = order.iter().take(missing.len()).map(|o| &o.2).collect();
    assert_eq!(missing, firsts, "{stderr}");
    // The files kept are whole, of the input's link type, and the summary names only them.
    let kept: Vec<&String> = order
        .iter()
        .map(|o| &o.2)
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!kept.is_empty(), "{stderr}");
    for p in &kept {
        let info = String::from_utf8_lossy(
            &Command::new("capinfos")
                .arg(p)
                .output()
                .expect("capinfos")
                .stdout,
        )
        .into_owned();
        assert!(info.contains("Raw IP"), "{p}: {info}");
        assert!(!tshark(&["-r", p]).is_empty(), "{p}");
    }
    for a in v["alerts"].as_array().expect("alerts") {
        if let Some(p) = a["capture"].as_str() {
            assert!(
                Path::new(p).exists(),
                "the summary names a dropped file: {a}"
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&ev)
        .expect("evidence dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            !e.file_name().to_string_lossy().ends_with(".pcapng")
                || e.file_name().to_string_lossy().starts_with('.')
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Each bad `--evidence` is one error line, one hint line, exit 2, before anything is read
/// or written: no summary on stdout, no directory made.
#[test]
fn bad_evidence_directories_are_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.pcap");
    write_capture(
        &input,
        Session {
            client: ip(CLIENT),
            cport: 40002,
            server: ip(SERVER),
            sport: 50002,
            isn: 1,
            t: T0,
            segments: 3,
            lossy: None,
            reset_ttl: None,
        }
        .frames(),
    );
    let a_file = dir.path().join("plain-file");
    std::fs::write(&a_file, b"x").expect("write");
    let ev = dir.path().join("ev");
    std::fs::create_dir(&ev).expect("ev");
    let inside = ev.join("1-reset-10.0.0.1_1-10.0.0.2_2.pcapng");
    std::fs::copy(&input, &inside).expect("copy");
    let missing_parent = dir.path().join("no/such/dir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                input.display().to_string(),
                "--evidence".into(),
                a_file.display().to_string(),
            ],
            "is not a directory",
        ),
        (
            vec![
                input.display().to_string(),
                "--evidence".into(),
                "/proc/1".into(),
            ],
            "cannot be written",
        ),
        (
            vec![
                input.display().to_string(),
                "--evidence".into(),
                missing_parent.display().to_string(),
            ],
            "nor does its parent",
        ),
        (
            vec![
                inside.display().to_string(),
                "--evidence".into(),
                ev.display().to_string(),
            ],
            "could be overwritten",
        ),
        (
            vec!["-".into(), "--evidence".into(), ev.display().to_string()],
            "standard input",
        ),
    ];
    for (args, why) in cases {
        let out = Command::new(common::MONITOR)
            .arg("replay")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(why),
            "{args:?}: {err}"
        );
        assert!(lines[1].starts_with("hint: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!missing_parent.exists());
    // A capture found damaged while it is read: exit 2, and the new DIR is not made.
    let damaged = dir.path().join("damaged.pcap");
    let mut bytes = std::fs::read(&input).expect("read");
    // A record header claiming 1 GB: refused as damaged, not waited for as a cut.
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    bytes.extend_from_slice(&[0; 64]);
    std::fs::write(&damaged, bytes).expect("write");
    let fresh = dir.path().join("fresh");
    let out = Command::new(common::MONITOR)
        .arg("replay")
        .arg(&damaged)
        .arg("--evidence")
        .arg(&fresh)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh.exists(), "a failed run made --evidence's directory");
    assert_eq!(
        std::fs::read_dir(&ev).expect("ev").count(),
        1,
        "only the input is in ev"
    );
}
