//! The analysis against real kernels: loss, refusal, a blackholed handshake, an injected
//! reset and a stalled receiver, made with nftables and raw sockets between two namespaces,
//! each checked against what the kernels themselves report.

mod common;

use std::{
    io::{BufReader, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream},
    process::{Child, ChildStderr, Command},
    time::Duration,
};

use common::{last_json, nft, sh, tcp_segs, Lab};
use monitor::demo::injector::ipv4_packet;
use monitor_common::{craft::TcpFrame, parse::RST};
use serde_json::Value;

/// The monitor on the client's veth for `secs`, watching `ports`; its flows at exit.
fn watch(lab: &Lab, ports: &str, secs: u32) -> Monitor {
    let (child, err) = lab.start_monitor(&[
        "--ports",
        ports,
        "--interval",
        "1",
        "--duration",
        &secs.to_string(),
    ]);
    Monitor { child, _err: err }
}

struct Monitor {
    child: Child,
    _err: BufReader<ChildStderr>,
}

fn flows_at_exit(m: Monitor) -> Vec<Value> {
    let (v, status) = last_json(m.child);
    assert!(status.success(), "monitor: {status}");
    v["flows"].as_array().expect("flows").clone()
}

/// A server that reads everything, or one that stops reading (its window closes).
fn server(lab: &Lab, port: u16, read: bool) -> std::thread::JoinHandle<()> {
    if read {
        return lab.sink(port);
    }
    lab.serve(port, |_s| std::thread::sleep(Duration::from_secs(4)))
}

/// (a) 3 % random loss of client-to-server data: the monitor's retransmissions for that
/// direction match the sender's own count of retransmitted segments within 5 %.
#[test]
fn loss_matches_the_senders_retransmission_count() {
    if common::privileged() {
        loss_scenario("a", false);
    }
}

/// (a) again with TSO/GSO/GRO on: tc sees super-packets, and retransmitted segments are
/// counted through `gso_segs`.
#[test]
fn loss_with_offloads_on_counts_segments() {
    if common::privileged() {
        loss_scenario("o", true);
    }
}

fn loss_scenario(tag: &str, offloads: bool) {
    let lab = Lab::with_offloads(tag, offloads);
    nft(
        &lab.server_ns,
        "table inet loss {\n chain in {\n type filter hook input priority 0;\n tcp dport 50001 numgen random mod 100 < 3 drop\n }\n}\n",
    );
    let srv = server(&lab, 50001, true);
    let mon = watch(&lab, "50001", 12);
    let ip = lab.server_ip;
    let retrans = Lab::in_ns(&lab.client_ns, move || {
        let before = tcp_segs();
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        let chunk = vec![7u8; 1400];
        for _ in 0..3000 {
            s.write_all(&chunk).expect("write");
        }
        s.shutdown(Shutdown::Write).unwrap();
        let _ = s.read(&mut [0u8; 16]);
        // No retransmission can follow once the FIN was acknowledged both ways.
        common::wait_time_wait(s.local_addr().expect("local address").port());
        tcp_segs().2 - before.2
    })
    .join()
    .expect("client");
    srv.join().unwrap();
    let flows = flows_at_exit(mon);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let seen = flows[0]["c2s"]["retransmits"]
        .as_u64()
        .expect("retransmits");
    assert!(
        retrans > 20,
        "the drop rule must bite: {retrans} retransmitted segments"
    );
    let diff = (seen as f64 - retrans as f64).abs() / retrans as f64;
    assert!(
        diff <= 0.05,
        "monitor {seen} vs kernel TcpRetransSegs {retrans}: {:.1} % apart",
        diff * 100.0
    );
}

/// (b) A SYN to a closed port: refused.
/// (c) SYN/ACKs dropped: the SYN is retransmitted and the handshake times out.
#[test]
fn refused_and_blackholed_handshakes() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("h");
    nft(
        &lab.server_ns,
        "table inet bh {\n chain out {\n type filter hook output priority 0;\n tcp sport 50002 tcp flags & (syn|ack) == (syn|ack) drop\n }\n}\n",
    );
    // A listener whose SYN/ACKs never leave.
    let ip = lab.server_ip;
    let (bound, listening) = std::sync::mpsc::channel();
    let (client_done, done) = std::sync::mpsc::channel::<()>();
    // Held until the client has given up: a listener closed earlier (a fixed time that a
    // slow start of the monitor used up) would answer a SYN retry with a reset.
    let blackholed = Lab::in_ns(&lab.server_ns, move || {
        let l = TcpListener::bind((ip, 50002)).expect("bind");
        bound.send(()).expect("test alive");
        let _ = done.recv_timeout(Duration::from_secs(120));
        drop(l);
    });
    listening
        .recv_timeout(Duration::from_secs(5))
        .expect("the blackholed listener is bound");
    let mon = watch(&lab, "50001-50002", 8);
    Lab::in_ns(&lab.client_ns, move || {
        let refused = TcpStream::connect((ip, 50001));
        assert!(refused.is_err(), "port 50001 must be closed");
        let addr = SocketAddrV4::new(ip.parse::<Ipv4Addr>().unwrap(), 50002).into();
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(4));
    })
    .join()
    .expect("client");
    let _ = client_done.send(());
    blackholed.join().expect("blackholed listener");
    let flows = flows_at_exit(mon);
    let by_port = |p: u64| {
        flows
            .iter()
            .find(|f| f["server"].as_str().unwrap().ends_with(&format!(":{p}")))
            .unwrap_or_else(|| panic!("no flow to {p}: {flows:?}"))
    };
    let refused = by_port(50001);
    assert_eq!(refused["handshake"]["outcome"], "refused", "{refused}");
    assert_eq!(refused["s2c"]["rsts"], 1);
    let bh = by_port(50002);
    assert_eq!(bh["handshake"]["outcome"], "timeout", "{bh}");
    assert!(
        bh["handshake"]["syn_retransmits"].as_u64().unwrap() >= 1,
        "{bh}"
    );
    assert!(
        bh["c2s"]["retransmits"].as_u64().unwrap() >= 1,
        "SYN retries are retransmissions: {bh}"
    );
}

/// An IPv4 TCP RST from `src` to `dst` with the given TTL, checksums right (the demo's
/// injector builds the same packets).
fn rst_packet(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ttl: u8) -> Vec<u8> {
    let mut f = TcpFrame::new(
        (*src.ip()).into(),
        src.port(),
        (*dst.ip()).into(),
        dst.port(),
    )
    .flags(RST);
    f.seq = seq;
    f.window = 0;
    f.ttl = ttl;
    f.ip_id = 0x1234;
    ipv4_packet(&f)
}

/// (d) A reset injected into an established flow from another namespace, with a TTL the
/// server's own packets never had: counted as suspect injected.
#[test]
fn an_injected_reset_is_suspect() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("r");
    // The injector: a third namespace on the same L2 segment, as an on-path middlebox is.
    // The server's veth and the injector's join a bridge that now carries the server's
    // address; the injector forges the server's address with a TTL of its own.
    let id = std::process::id() % 100_000;
    let inj_ns = format!("mi-{id}");
    let _inj = InjectorNs(inj_ns.clone());
    let (iv, jv) = (format!("vi{id}"), format!("vj{id}"));
    let s = lab.server_ns.as_str();
    sh(&["ip", "netns", "add", &inj_ns]);
    sh(&[
        "ip", "link", "add", &iv, "type", "veth", "peer", "name", &jv,
    ]);
    sh(&["ip", "link", "set", &iv, "netns", &inj_ns]);
    sh(&["ip", "link", "set", &jv, "netns", s]);
    sh(&["ip", "-n", s, "link", "add", "br0", "type", "bridge"]);
    sh(&[
        "ip",
        "-n",
        s,
        "addr",
        "del",
        &format!("{}/24", lab.server_ip),
        "dev",
        &lab.server_if,
    ]);
    sh(&[
        "ip",
        "-n",
        s,
        "link",
        "set",
        &lab.server_if,
        "master",
        "br0",
    ]);
    sh(&["ip", "-n", s, "link", "set", &jv, "master", "br0"]);
    sh(&[
        "ip",
        "-n",
        s,
        "addr",
        "add",
        &format!("{}/24", lab.server_ip),
        "dev",
        "br0",
    ]);
    sh(&["ip", "-n", s, "link", "set", &jv, "up"]);
    sh(&["ip", "-n", s, "link", "set", "br0", "up"]);
    sh(&[
        "ip",
        "-n",
        &inj_ns,
        "addr",
        "add",
        "10.77.0.3/24",
        "dev",
        &iv,
    ]);
    sh(&["ip", "-n", &inj_ns, "link", "set", &iv, "up"]);

    let srv = server(&lab, 50001, true);
    let mon = watch(&lab, "50001", 5);
    let ip = lab.server_ip;
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddrV4>();
    // The client keeps its connection open until the reset has been sent.
    let (injected, injected_rx) = std::sync::mpsc::channel::<()>();
    let client = Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        s.write_all(b"media").unwrap();
        let local = match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        tx.send(local).unwrap();
        let _ = injected_rx.recv_timeout(Duration::from_secs(30));
    });
    let client_addr = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("client address");
    let server_addr = SocketAddrV4::new(ip.parse().unwrap(), 50001);
    Lab::in_ns(&inj_ns, move || {
        // SAFETY: a plain system call with constant arguments; the fd is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // The server's own packets arrive with TTL 64; the injector's with 200.
        let pkt = rst_packet(server_addr, client_addr, 12345, 200);
        let dst = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(client_addr.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `pkt` and `dst` outlive the call, which only reads them, with their true lengths.
        let n = unsafe {
            libc::sendto(
                fd,
                pkt.as_ptr() as *const _,
                pkt.len(),
                0,
                &dst as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&dst) as u32,
            )
        };
        assert_eq!(
            n,
            pkt.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is the socket opened above, closed once.
        unsafe { libc::close(fd) };
        let _ = injected.send(());
    })
    .join()
    .expect("injector");
    client.join().expect("client");
    srv.join().unwrap();
    let flows = flows_at_exit(mon);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert!(f["s2c"]["rsts"].as_u64().unwrap() >= 1, "{f}");
    assert_eq!(f["s2c"]["suspect_injected_rsts"], 1, "{f}");
}

struct InjectorNs(String);

impl Drop for InjectorNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// (e) A receiver that stops reading: the server advertises a zero window.
#[test]
fn a_stalled_receiver_shows_zero_windows() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("z");
    let srv = server(&lab, 50001, false);
    let mon = watch(&lab, "50001", 6);
    let ip = lab.server_ip;
    Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let chunk = vec![1u8; 65536];
        // Until the buffers on both sides are full and the write blocks.
        while s.write_all(&chunk).is_ok() {}
    })
    .join()
    .expect("client");
    srv.join().unwrap();
    let flows = flows_at_exit(mon);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert!(f["s2c"]["zero_windows"].as_u64().unwrap() >= 1, "{f}");
}
