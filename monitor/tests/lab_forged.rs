//! A forged frame on a live flow: a 106-byte frame whose IPv4 header claims 65535 bytes,
//! sent on the flow's 4-tuple with the server's next sequence number. tc ingress sees it
//! before the receiver's IP layer drops it; the monitor must count it as malformed and leave
//! the flow exactly as the real segments make it: no invented payload, no retransmission,
//! no alert.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::fd::AsRawFd,
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{packet_socket, send_frame, Lab};
use monitor_common::parse::{parse_ethernet, Packet};
use serde_json::Value;

const PORT: u16 = 50001;
const SIZE: usize = 500;
const BEFORE: usize = 30;
const AFTER: usize = 150;

/// The frame of `seg` (a real segment of the server's) turned into the lie: its headers,
/// 40 bytes of payload, an IPv4 total length of 65535 (checksum made right, as a forger
/// would), at the server's next sequence number.
fn forge(seg: &[u8], pkt: &Packet) -> Vec<u8> {
    let ihl = ((seg[14] & 0x0f) as usize) * 4;
    let tcp = 14 + ihl;
    let mut f = seg[..tcp + pkt.tcp_hdr_len as usize].to_vec();
    f.extend_from_slice(&[0x55; 40]);
    f[16..18].copy_from_slice(&65535u16.to_be_bytes());
    let next = pkt.seq.wrapping_add(pkt.payload_len);
    f[tcp + 4..tcp + 8].copy_from_slice(&next.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let mut sum: u32 = f[14..tcp]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}

#[test]
fn a_forged_ip_length_on_a_live_flow_changes_nothing() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("f");
    let mut monitor = lab
        .monitor(&[
            "--json",
            "--ports",
            &PORT.to_string(),
            "--interval",
            "1",
            "--duration",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start monitor");
    let mut err = std::io::BufReader::new(monitor.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).expect("monitor stderr");
    assert!(line.contains("attached"), "monitor did not attach: {line}");

    // The forger, on the server's side of the path: it watches the server's segments go out
    // and, once the first BEFORE have left, sends its frame and lets the server go on.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server_if = lab.server_if.clone();
    let forger = Lab::in_ns(&lab.server_ns, move || {
        let (fd, ifindex) = packet_socket(&server_if);
        ready_tx.send(()).expect("test alive");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65536];
        let mut sent = 0usize;
        let mut last: Option<(Vec<u8>, Packet)> = None;
        while sent < BEFORE * SIZE {
            assert!(
                Instant::now() < deadline,
                "saw {sent} bytes of the server's"
            );
            // SAFETY: all-zero is a valid sockaddr_ll for recvfrom to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of_val(&from) as u32;
            // SAFETY: `buf` and `from` outlive the call and have the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype != libc::PACKET_OUTGOING {
                continue;
            }
            let frame = &buf[..n as usize];
            let mut pkt = Packet::default();
            if parse_ethernet(frame, &mut pkt).is_ok() && pkt.sport == PORT && pkt.payload_len > 0 {
                sent += pkt.payload_len as usize;
                last = Some((frame.to_vec(), pkt));
            }
        }
        let (seg, pkt) = last.expect("a server segment");
        let lie = forge(&seg, &pkt);
        send_frame(&fd, ifindex, &lie);
        go_tx.send(()).expect("server alive");
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("forger ready");

    let server = lab.serve(PORT, move |mut s| {
        s.set_nodelay(true).expect("nodelay");
        let chunk = [0xabu8; SIZE];
        for _ in 0..BEFORE {
            s.write_all(&chunk).expect("send");
            std::thread::sleep(Duration::from_millis(10));
        }
        go_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the forged frame was sent");
        for _ in 0..AFTER {
            s.write_all(&chunk).expect("send");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let ip = lab.server_ip;
    let received = Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, PORT)).expect("connect");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read");
        all.len()
    })
    .join()
    .expect("client");
    forger.join().expect("forger");
    server.join().expect("server");
    assert_eq!(
        received,
        (BEFORE + AFTER) * SIZE,
        "the connection was disturbed"
    );

    let out = monitor.wait_with_output().expect("monitor output");
    assert!(out.status.success(), "monitor exit: {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let raised: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"raised\""))
        .collect();
    assert!(
        raised.is_empty(),
        "an alert from a forged frame: {raised:?}"
    );
    let last: Value =
        serde_json::from_str(stdout.lines().last().expect("a summary")).expect("JSON summary");
    assert_eq!(
        last["totals"]["skipped"]["malformed"], 1,
        "the forged frame reached tc and was counted as malformed: {}",
        last["totals"]
    );
    let flows = last["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 1, "{flows:?}");
    let s2c = &flows[0]["s2c"];
    assert_eq!(
        s2c["payload_bytes"],
        ((BEFORE + AFTER) * SIZE) as u64,
        "payload is what the frames carried: {s2c}"
    );
    for field in [
        "retransmits",
        "out_of_order",
        "lost_segments",
        "acked_unseen",
    ] {
        assert_eq!(s2c[field], 0, "s2c.{field}: {s2c}");
    }
    assert_eq!(last["alerts"], serde_json::json!([]), "{}", last["alerts"]);
}
