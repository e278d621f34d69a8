//! Real kernels on both ends of a veth pair: the monitor, attached to the client's veth,
//! must see the watched flow with the packet counts the client's own TCP stack reports,
//! ignore an unwatched port, and leave nothing attached when it exits.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use common::{last_json, sh, tcp_segs, Lab};
use serde_json::Value;

const MESSAGES: usize = 20;
const SIZE: usize = 100;

/// Echo servers on a watched and an unwatched port, in the server namespace.
fn servers(lab: &Lab) -> Vec<std::thread::JoinHandle<()>> {
    [50001u16, 40001]
        .into_iter()
        .map(|port| {
            lab.serve(port, |mut s| {
                let mut buf = [0u8; SIZE];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).expect("echo"),
                    }
                }
            })
        })
        .collect()
}

/// One request/response exchange per message, so each send is one segment.
fn talk(ip: &str, port: u16) {
    let mut s = TcpStream::connect((ip, port)).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; SIZE];
    for i in 0..MESSAGES {
        s.write_all(&[i as u8; SIZE]).unwrap();
        s.read_exact(&mut buf).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait for the server's FIN, then for the last ACK to have left.
    let _ = s.read(&mut buf);
    common::wait_time_wait(s.local_addr().expect("local address").port());
}

fn assert_nothing_attached(lab: &Lab) {
    for dir in ["ingress", "egress"] {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &lab.client_ns,
            "tc",
            "filter",
            "show",
            "dev",
            &lab.client_if,
            dir,
        ]);
        assert!(
            out.stdout.is_empty(),
            "tc filter left on {dir}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &lab.client_ns,
        "bpftool",
        "-j",
        "net",
        "show",
        "dev",
        &lab.client_if,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    for section in v.as_array().expect("array") {
        for (name, list) in section.as_object().expect("object") {
            assert!(
                list.as_array().is_none_or(|l| l.is_empty()),
                "bpftool net shows {name} programs left: {list}"
            );
        }
    }
}

fn watched_flow_matches_the_kernel(attach: &str, tag: &str) {
    let lab = Lab::new(tag);
    let servers = servers(&lab);
    // Only 50001: the client's ephemeral ports may fall anywhere in 32768-60999.
    // XDP's run also measures its own cost (`--self-stats`); tc's does not.
    let self_stats = attach == "xdp";
    let mut args = vec![
        "--ports",
        "50001",
        "--attach",
        attach,
        "--duration",
        "4",
        "--interval",
        "1",
    ];
    if self_stats {
        args.push("--self-stats");
    }
    let (child, _err) = lab.start_monitor(&args);
    let server_ip = lab.server_ip.to_string();
    let (before, after) = Lab::in_ns(&lab.client_ns, move || {
        let before = tcp_segs();
        talk(&server_ip, 50001);
        let after = tcp_segs();
        talk(&server_ip, 40001);
        (before, after)
    })
    .join()
    .expect("client");
    for s in servers {
        s.join().expect("server");
    }
    let (json, status) = last_json(child);
    assert!(status.success(), "monitor exit: {status}");
    let flows = json["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 1, "only the watched port: {json}");
    let f = &flows[0];
    assert_eq!(f["server"], format!("{}:50001", lab.server_ip));
    assert!(f["client"].as_str().unwrap().starts_with(lab.client_ip));
    assert_eq!(
        after.2, before.2,
        "no retransmission expected on a clean veth"
    );
    assert_eq!(
        f["c2s"]["packets"],
        after.0 - before.0,
        "c2s packets = client's OutSegs: {f}"
    );
    assert_eq!(
        f["s2c"]["packets"],
        after.1 - before.1,
        "s2c packets = client's InSegs: {f}"
    );
    assert_eq!(f["c2s"]["payload_bytes"], (MESSAGES * SIZE) as u64);
    assert_eq!(f["s2c"]["payload_bytes"], (MESSAGES * SIZE) as u64);
    assert_eq!(f["handshake"]["syn"], 1);
    assert_eq!(
        (f["c2s"]["fins"].as_u64(), f["s2c"]["fins"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (f["c2s"]["rsts"].as_u64(), f["s2c"]["rsts"].as_u64()),
        (Some(0), Some(0))
    );
    // A clean veth: a complete handshake, no analysis flag in either direction.
    assert_eq!(f["handshake"]["outcome"], "ok");
    assert!(f["handshake"]["rtt_us"].as_u64().is_some(), "{f}");
    assert_eq!(
        (
            f["handshake"]["syn_retransmits"].as_u64(),
            f["handshake"]["synack_retransmits"].as_u64()
        ),
        (Some(0), Some(0))
    );
    for dir in ["c2s", "s2c"] {
        for field in [
            "retransmits",
            "out_of_order",
            "lost_segments",
            "dup_acks",
            "zero_windows",
            "suspect_injected_rsts",
        ] {
            assert_eq!(f[dir][field], 0, "{dir}.{field}: {f}");
        }
    }
    // The payload is not TLS: known absent, not null.
    assert_eq!(
        (
            f["tls"]["client_hello"].as_bool(),
            f["tls"]["server_hello"].as_bool()
        ),
        (Some(false), Some(false))
    );
    assert_eq!(json["totals"]["flows"], 1);
    assert_eq!(json["totals"]["lost_events"], 0);
    let kernel = &json["totals"]["kernel"];
    if self_stats {
        // Every packet of both exchanges ran through a program, each run timed.
        let runs = kernel["runs"].as_u64().unwrap_or(0);
        let watched =
            f["c2s"]["packets"].as_u64().unwrap_or(0) + f["s2c"]["packets"].as_u64().unwrap_or(0);
        assert!(
            runs >= watched && kernel["run_ns"].as_u64().unwrap_or(0) > runs,
            "{kernel}"
        );
    } else {
        assert!(kernel.is_null(), "no --self-stats, no cost: {kernel}");
    }
    assert_nothing_attached(&lab);
}

#[test]
fn tc_sees_the_watched_flow_with_exact_counts() {
    if common::privileged() {
        watched_flow_matches_the_kernel("tc", "t");
    }
}

#[test]
fn xdp_sees_the_watched_flow_with_exact_counts() {
    if common::privileged() {
        watched_flow_matches_the_kernel("xdp", "x");
    }
}

#[test]
fn sigterm_detaches_and_prints_a_last_summary() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("s");
    let (child, _err) = lab.start_monitor(&["--interval", "60"]);
    // `ip netns exec` execs the monitor: the child's pid is the monitor's.
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (json, status) = last_json(child);
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert_eq!(json["totals"]["flows"], 0);
    assert_nothing_attached(&lab);
}

#[test]
fn a_leftover_netlink_filter_is_refused_with_a_hint() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("l");
    // Another tool's filter on the same clsact qdisc: the hint's command must spare it.
    let ns = |args: &[&str]| {
        let mut all = vec!["ip", "netns", "exec", &lab.client_ns];
        all.extend_from_slice(args);
        sh(&all)
    };
    ns(&["tc", "qdisc", "add", "dev", &lab.client_if, "clsact"]);
    let theirs = [
        "protocol", "ip", "pref", "10", "u32", "match", "u32", "0", "0",
    ];
    for dir in ["ingress", "egress"] {
        let mut add = vec!["tc", "filter", "add", "dev", &lab.client_if, dir];
        add.extend_from_slice(&theirs);
        ns(&add);
    }
    let (mut child, _err) = lab.start_monitor(&["--tc-api", "netlink"]);
    // kill -9: the monitor cannot remove its clsact filters.
    child.kill().expect("kill -9");
    let _ = child.wait();
    let out = lab
        .monitor(&["--duration", "1"])
        .output()
        .expect("second monitor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already attached") && err.contains("hint: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The hint's own command removes ours, and only ours.
    let command = err
        .split("remove the leftover with `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no command in the hint: {err}"));
    for dir in ["ingress", "egress"] {
        assert!(
            command.contains(&format!("dev {} {dir} pref ", lab.client_if))
                && command.contains(" handle "),
            "{command}"
        );
    }
    ns(&["sh", "-c", command]);
    for dir in ["ingress", "egress"] {
        let out = ns(&["tc", "filter", "show", "dev", &lab.client_if, dir]);
        let left = String::from_utf8_lossy(&out.stdout);
        assert!(
            !left.contains("tc_eth") && left.contains("pref 10 u32"),
            "after the hint's command, {dir}: {left}"
        );
        ns(&[
            "tc",
            "filter",
            "del",
            "dev",
            &lab.client_if,
            dir,
            "pref",
            "10",
        ]);
    }
    assert_nothing_attached(&lab);
}

/// `--tc-api netlink` adds the clsact qdisc it needs and removes it at a clean exit; a qdisc
/// that was there before is left as it was.
#[test]
fn a_clean_netlink_exit_removes_only_the_clsact_it_added() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("n");
    let qdiscs = || {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &lab.client_ns,
            "tc",
            "qdisc",
            "show",
            "dev",
            &lab.client_if,
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!qdiscs().contains("clsact"), "{}", qdiscs());
    let (child, _err) = lab.start_monitor(&["--tc-api", "netlink", "--duration", "1"]);
    assert!(qdiscs().contains("clsact"), "attached: {}", qdiscs());
    let (_, status) = last_json(child);
    assert!(status.success(), "{status}");
    assert!(!qdiscs().contains("clsact"), "after exit: {}", qdiscs());
    assert_nothing_attached(&lab);

    // Someone else's clsact qdisc stays.
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.client_ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        &lab.client_if,
        "clsact",
    ]);
    let (child, _err) = lab.start_monitor(&["--tc-api", "netlink", "--duration", "1"]);
    let (_, status) = last_json(child);
    assert!(status.success(), "{status}");
    assert!(qdiscs().contains("clsact"), "not ours: {}", qdiscs());
    assert_nothing_attached(&lab);
}

/// The index of interface `dev` in namespace `ns`.
fn ifindex(ns: &str, dev: &str) -> u32 {
    let out = sh(&["ip", "-n", ns, "-o", "link", "show", "dev", dev]);
    let out = String::from_utf8_lossy(&out.stdout);
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index for {dev} in {ns}: {out}"))
}

/// An attach that fails half-way (XDP refused on the second, raw-IP interface, after the
/// first got its tc egress filter) leaves no clsact qdisc behind either.
#[test]
fn a_failed_netlink_attach_leaves_no_clsact() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("f");
    let tun = format!("t{}", lab.client_if);
    let add_tun = || {
        sh(&[
            "ip",
            "-n",
            &lab.client_ns,
            "tuntap",
            "add",
            "dev",
            &tun,
            "mode",
            "tun",
        ]);
    };
    add_tun();
    // The veth keeps the index the host gave it, the tun takes the namespace's next: on a
    // host that has made hundreds of interfaces the two can share a counter slot, which the
    // monitor refuses before it attaches anything. Made again, the tun takes another index.
    let slot = |dev: &str| ifindex(&lab.client_ns, dev) % monitor_common::stats::IF_SLOTS;
    if slot(&tun) == slot(&lab.client_if) {
        sh(&["ip", "-n", &lab.client_ns, "link", "del", "dev", &tun]);
        add_tun();
    }
    assert_ne!(
        slot(&tun),
        slot(&lab.client_if),
        "the test's interfaces share a slot"
    );
    let out = lab
        .monitor(&["-i", &tun, "--attach", "xdp", "--tc-api", "netlink"])
        .output()
        .expect("monitor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("XDP needs an Ethernet interface"), "{err}");
    let qdiscs = sh(&[
        "ip",
        "netns",
        "exec",
        &lab.client_ns,
        "tc",
        "qdisc",
        "show",
        "dev",
        &lab.client_if,
    ]);
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(!qdiscs.contains("clsact"), "{qdiscs}");
    assert_nothing_attached(&lab);
}

/// Loopback: every packet passes lo twice (sent, then received); it must be counted once.
#[test]
fn loopback_counts_each_packet_once() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("o");
    let mut child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client_ns,
            common::MONITOR,
            "live",
            "-i",
            "lo",
            "--headless",
            "--json",
        ])
        .args(["--ports", "50001", "--duration", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("monitor on lo");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).expect("stderr");
    assert!(line.contains("egress only, loopback"), "{line}");
    let (before, after) = Lab::in_ns(&lab.client_ns, || {
        let l = std::net::TcpListener::bind(("127.0.0.1", 50001)).expect("bind");
        let before = tcp_segs();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; SIZE];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        talk("127.0.0.1", 50001);
        echo.join().expect("echo");
        (before, tcp_segs())
    })
    .join()
    .expect("client");
    let (json, status) = last_json(child);
    assert!(status.success());
    let f = &json["flows"][0];
    assert_eq!(json["flows"].as_array().map(|a| a.len()), Some(1), "{json}");
    assert_eq!(f["handshake"]["syn"], 1, "{f}");
    assert_eq!(f["handshake"]["outcome"], "ok");
    // Both ends live in this namespace: every segment it sent is one the monitor saw.
    let sent = after.0 - before.0;
    let seen = f["c2s"]["packets"].as_u64().unwrap() + f["s2c"]["packets"].as_u64().unwrap();
    assert_eq!(seen, sent, "{f}");
    for dir in ["c2s", "s2c"] {
        assert_eq!(f[dir]["retransmits"], 0, "{f}");
        assert_eq!(f[dir]["dup_acks"], 0, "{f}");
    }
}
