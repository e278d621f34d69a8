//! `monitor replay --evidence DIR`: every alert's capture holds exactly its flow's frames of
//! the input (one connection of a reused 4-tuple, from its SYN), tshark reads it, its
//! comments name the packets the alert is about, and tshark's own analysis of it finds the
//! retransmissions and the reset. tshark is a test tool (`cargo xtask setup`): missing,
//! these tests fail.

mod common;
mod evidence;

use std::process::Command;

use evidence::*;
use monitor_common::{craft::TcpFrame, parse::SYN};
use serde_json::Value;

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
