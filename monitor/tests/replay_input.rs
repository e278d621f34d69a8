//! `monitor replay` input: standard input, gzip and zstd, captures cut mid-record, damaged
//! records, link types it cannot read, odd pcapng interface options, and streams that are
//! not captures at all.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

fn pcaps() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/pcaps"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monitor-replay-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn replay(file: &Path) -> Output {
    Command::new(MONITOR)
        .arg("replay")
        .arg(file)
        .arg("--json")
        .output()
        .expect("run monitor")
}

/// `monitor replay - --json` with `input` written to its standard input a few bytes at a
/// time, as from a pipe.
fn replay_stdin(input: Vec<u8>) -> Output {
    let mut child = Command::new(MONITOR)
        .args(["replay", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run monitor");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in input.chunks(1000) {
            if stdin.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Exit 2, one `error:` line naming `needle`, one `hint:` line, nothing on stdout.
fn assert_usage_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
    assert!(lines[1].starts_with("hint: "), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

const PCAP: &str = "zeek-retransmit-fast009.pcap";
const PCAPNG: &str = "cs-inconsistent_printer.pcapng";

/// Where each record of a little-endian classic pcap starts, and where the file ends.
fn pcap_record_starts(b: &[u8]) -> Vec<usize> {
    assert_eq!(b[..4], [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
    let mut starts = vec![24];
    let mut off = 24;
    while off < b.len() {
        let incl = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + incl;
        starts.push(off);
    }
    assert_eq!(off, b.len());
    starts
}

#[test]
fn standard_input_reads_as_the_file() {
    for name in [PCAP, PCAPNG] {
        let path = pcaps().join(name);
        let want = ok_json(&replay(&path));
        assert!(want["totals"]["packets"].as_u64().unwrap() > 0);
        let got = ok_json(&replay_stdin(std::fs::read(&path).unwrap()));
        assert_eq!(got, want, "{name} on standard input");
    }
}

#[test]
fn gzip_and_zstd_captures_are_recognised_by_their_magic() {
    for name in [PCAP, PCAPNG] {
        let path = pcaps().join(name);
        let plain = std::fs::read(&path).unwrap();
        let want = ok_json(&replay(&path));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        // Named without a telling suffix: the magic decides, not the name.
        for (bytes, kind) in [(gz, "gzip"), (zst, "zstd")] {
            let file = tmp(&format!("{name}-{kind}.cap"));
            std::fs::write(&file, &bytes).unwrap();
            assert_eq!(ok_json(&replay(&file)), want, "{name} as {kind}");
            assert_eq!(
                ok_json(&replay_stdin(bytes)),
                want,
                "{name} as {kind} on stdin"
            );
        }
    }
}

#[test]
fn a_capture_cut_mid_record_gives_the_complete_records_and_a_warning() {
    let plain = std::fs::read(pcaps().join(PCAP)).unwrap();
    let starts = pcap_record_starts(&plain);
    let n = starts.len() / 2;
    let (boundary, next) = (starts[n], starts[n + 1]);
    let first_n = tmp("first-n.pcap");
    std::fs::write(&first_n, &plain[..boundary]).unwrap();
    let want = ok_json(&replay(&first_n));
    assert_eq!(want["totals"]["packets"].as_u64(), Some(n as u64));
    assert!(
        stderr(&replay(&first_n)).is_empty(),
        "no warning at a record boundary"
    );
    // Cut inside the record header and inside the record's data.
    for cut in [boundary + 5, next - 1] {
        let file = tmp(&format!("cut-{cut}.pcap"));
        std::fs::write(&file, &plain[..cut]).unwrap();
        let out = replay(&file);
        assert_eq!(ok_json(&out), want, "cut at {cut}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("warning: ") && err.contains(&format!("at byte {boundary}")),
            "{err}"
        );
        // The same from a pipe.
        let out = replay_stdin(plain[..cut].to_vec());
        assert_eq!(ok_json(&out), want, "cut at {cut} on stdin");
        assert!(stderr(&out).starts_with("warning: "));
    }
}

#[test]
fn a_damaged_record_before_the_end_exits_2_with_its_offset() {
    let mut b = std::fs::read(pcaps().join(PCAP)).unwrap();
    let starts = pcap_record_starts(&b);
    let at = starts[3];
    b[at + 8..at + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let file = tmp("damaged.pcap");
    std::fs::write(&file, &b).unwrap();
    assert_usage_error(&replay(&file), &format!("at byte {at}"));
    // Not taken for a cut: the damage is followed by more of the capture, from a pipe too.
    assert_usage_error(&replay_stdin(b), &format!("at byte {at}"));
}

#[test]
fn a_link_type_it_cannot_read_exits_2_naming_it() {
    let mut b = std::fs::read(pcaps().join(PCAP)).unwrap();
    b[20..24].copy_from_slice(&147u32.to_le_bytes());
    let file = tmp("user0.pcap");
    std::fs::write(&file, &b).unwrap();
    assert_usage_error(&replay(&file), "link type 147");
}

/// A pcapng file of one Ethernet interface with `opts` (code, value) and one frame of the
/// capture `PCAP` at `ts` interface units.
fn pcapng_with(opts: &[(u16, Vec<u8>)], ts: u64) -> Vec<u8> {
    let plain = std::fs::read(pcaps().join(PCAP)).unwrap();
    let starts = pcap_record_starts(&plain);
    let frame = &plain[starts[0] + 16..starts[1]];
    let block = |ty: u32, mut body: Vec<u8>| {
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (12 + body.len() as u32).to_le_bytes();
        [&ty.to_le_bytes()[..], &len, &body, &len].concat()
    };
    let shb = [
        &0x1a2b_3c4du32.to_le_bytes()[..],
        &1u16.to_le_bytes(),
        &0u16.to_le_bytes(),
        &[0xff; 8],
    ]
    .concat();
    let mut idb = [&1u16.to_le_bytes()[..], &[0; 6]].concat();
    for (code, val) in opts {
        idb.extend_from_slice(&code.to_le_bytes());
        idb.extend_from_slice(&(val.len() as u16).to_le_bytes());
        idb.extend_from_slice(val);
        while !idb.len().is_multiple_of(4) {
            idb.push(0);
        }
    }
    idb.extend_from_slice(&[0; 4]);
    let epb = [
        &0u32.to_le_bytes()[..],
        &((ts >> 32) as u32).to_le_bytes(),
        &(ts as u32).to_le_bytes(),
        &(frame.len() as u32).to_le_bytes(),
        &(frame.len() as u32).to_le_bytes(),
        frame,
    ]
    .concat();
    [block(0x0a0d_0d0a, shb), block(1, idb), block(6, epb)].concat()
}

#[test]
fn a_negative_if_tsoffset_moves_the_capture_back_in_time() {
    // 2000 s of microseconds, less 1000 s: the flow starts at 1000 s.
    let file = tmp("tsoffset.pcapng");
    std::fs::write(
        &file,
        pcapng_with(&[(14, (-1000i64).to_le_bytes().to_vec())], 2_000_000_000),
    )
    .unwrap();
    let v = ok_json(&replay(&file));
    let first = v["flows"][0]["first_seen_ns"].as_u64();
    assert_eq!(first, Some(1_000_000_000_000), "{v}");
}

#[test]
fn a_timestamp_resolution_past_ten_to_the_minus_19_exits_2() {
    let file = tmp("tsresol.pcapng");
    std::fs::write(&file, pcapng_with(&[(9, vec![20])], 1)).unwrap();
    assert_usage_error(&replay(&file), "10^-20");
    std::fs::write(&file, pcapng_with(&[(9, vec![19])], 1)).unwrap();
    ok_json(&replay(&file));
}

#[test]
fn dev_zero_is_refused_at_its_magic_not_read_without_end() {
    let mut child = Command::new(MONITOR)
        .args(["replay", "/dev/zero", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run monitor");
    // A generous deadline: the old reader never returned (it read until memory ran out).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replay /dev/zero did not return");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("neither pcap nor pcapng"), "{err}");
}
