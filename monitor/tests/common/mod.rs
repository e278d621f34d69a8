//! Shared by the privileged suites: the root gate and a network-namespace lab.
#![allow(dead_code)]

use std::{
    fs::File,
    io::{BufRead, BufReader},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio},
};

pub mod media;

pub const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

/// Privileged suites need root. They fail loudly without it; the only way out is the
/// explicit opt-out `MONITOR_SKIP_PRIVILEGED=1`, which CI never sets.
pub fn privileged() -> bool {
    if std::env::var("MONITOR_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("privileged test not run: MONITOR_SKIP_PRIVILEGED=1 was set by hand");
        return false;
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this suite loads eBPF programs and makes network namespaces: run it as root \
         (or set MONITOR_SKIP_PRIVILEGED=1 to opt out explicitly)"
    );
    true
}

pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth pair, offloads off so one packet is one segment.
/// Removed on drop, even when the test panics.
pub struct Lab {
    pub client_ns: String,
    pub server_ns: String,
    pub client_if: String,
    pub server_if: String,
    pub client_ip: &'static str,
    pub server_ip: &'static str,
}

impl Lab {
    /// Offloads off (TSO, GSO, GRO), so that a captured packet is one segment and the sender's
    /// `TcpRetransSegs` is an oracle for the retransmissions (docs/toolchain.md). tc
    /// egress may still see software-GSO super-packets (segmentation happens after the
    /// qdisc); the monitor counts their segments through `gso_segs`.
    pub fn new(tag: &str) -> Self {
        Self::with_offloads(tag, false)
    }

    /// With TSO/GSO/GRO on, as real hosts run: packets at tc can be super-packets.
    pub fn with_offloads(tag: &str, offloads: bool) -> Self {
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let lab = Lab {
            client_ns: format!("mc-{id}"),
            server_ns: format!("ms-{id}"),
            client_if: format!("vc{id}"),
            server_if: format!("vs{id}"),
            client_ip: "10.77.0.1",
            server_ip: "10.77.0.2",
        };
        assert!(
            lab.client_if.len() <= 15,
            "interface name too long: {}",
            lab.client_if
        );
        sh(&["ip", "netns", "add", &lab.client_ns]);
        sh(&["ip", "netns", "add", &lab.server_ns]);
        sh(&[
            "ip",
            "link",
            "add",
            &lab.client_if,
            "type",
            "veth",
            "peer",
            "name",
            &lab.server_if,
        ]);
        sh(&["ip", "link", "set", &lab.client_if, "netns", &lab.client_ns]);
        sh(&["ip", "link", "set", &lab.server_if, "netns", &lab.server_ns]);
        for (ns, dev, ip) in [
            (&lab.client_ns, &lab.client_if, lab.client_ip),
            (&lab.server_ns, &lab.server_if, lab.server_ip),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            let on = if offloads { "on" } else { "off" };
            sh(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", on, "gso", on, "gro", on,
            ]);
        }
        lab
    }

    /// Runs `f` on a thread that has entered namespace `ns`: sockets it opens live there.
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: `fd` is an open namespace file for the whole call; setns only switches this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Waits until the calling thread's namespace holds the connection from `local_port` in
/// TIME_WAIT: the kernel enters it only after sending the ACK of the peer's FIN (and after
/// its own FIN was acknowledged), so from then on the client sends nothing more and its
/// segment counters are final.
pub fn wait_time_wait(local_port: u16) {
    let want = format!(":{local_port:04X} ");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string("/proc/thread-self/net/tcp").expect("read net/tcp");
        // Columns: sl local_address rem_address st ...; state 06 is TIME_WAIT.
        let found = text.lines().skip(1).any(|l| {
            let mut w = l.split_whitespace().skip(1);
            let local = w.next().unwrap_or_default();
            let state = w.nth(1).unwrap_or_default();
            format!("{local} ").ends_with(&want) && state == "06"
        });
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "the connection from port {local_port} never reached TIME_WAIT:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// TCP segment counters of the calling thread's namespace: (OutSegs, InSegs, RetransSegs).
pub fn tcp_segs() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = lines
        .next()
        .expect("Tcp header")
        .split_whitespace()
        .collect();
    let vals: Vec<&str> = lines
        .next()
        .expect("Tcp values")
        .split_whitespace()
        .collect();
    let get = |n: &str| -> u64 {
        let i = names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("no {n} in snmp"));
        vals[i].parse().expect("number")
    };
    (get("OutSegs"), get("InSegs"), get("RetransSegs"))
}

impl Lab {
    /// `monitor live` on the client's veth, run inside the client namespace.
    pub fn monitor(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.client_ns,
            MONITOR,
            "live",
            "-i",
            &self.client_if,
            "--headless",
        ])
        .args(extra);
        cmd
    }

    /// Starts `monitor live --json` and waits until it has attached. Keep the returned
    /// stderr open: the monitor must be able to write its last status line.
    pub fn start_monitor(&self, extra: &[&str]) -> (Child, BufReader<ChildStderr>) {
        let mut child = self
            .monitor(&["--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start monitor");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        err.read_line(&mut line).expect("read monitor stderr");
        assert!(line.contains("attached"), "monitor did not attach: {line}");
        (child, err)
    }
}

impl Lab {
    /// Listens on `port` in the server namespace, returns once listening; the thread
    /// accepts one connection and hands it to `f`.
    pub fn serve(
        &self,
        port: u16,
        f: impl FnOnce(std::net::TcpStream) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let ip = self.server_ip;
        let (tx, rx) = std::sync::mpsc::channel();
        let h = Lab::in_ns(&self.server_ns, move || {
            let l = std::net::TcpListener::bind((ip, port)).expect("bind");
            tx.send(()).expect("test alive");
            let (s, _) = l.accept().expect("accept");
            f(s)
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("server listening");
        h
    }
}

impl Lab {
    /// A server on `port` that reads everything it is sent, until the client closes.
    pub fn sink(&self, port: u16) -> std::thread::JoinHandle<()> {
        self.serve(port, |mut s| {
            use std::io::Read;
            let mut buf = [0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        })
    }

    /// Small writes leave as small segments (no autocorking) in both namespaces.
    pub fn no_autocork(&self) {
        for ns in [&self.client_ns, &self.server_ns] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.tcp_autocorking=0",
            ]);
        }
    }
}

/// Network namespaces of `monitor demo` runs (`mdemo-PID-...`), of one pid or of any.
pub fn demo_namespaces(pid: Option<u32>) -> Vec<String> {
    let prefix = match pid {
        Some(p) => format!("mdemo-{p}-"),
        None => "mdemo-".into(),
    };
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The monitor's last JSON summary (the one printed at exit) and its exit status.
pub fn last_json(child: Child) -> (serde_json::Value, ExitStatus) {
    let out = child.wait_with_output().expect("monitor output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no JSON from the monitor"));
    (serde_json::from_str(last).expect("valid JSON"), out.status)
}

/// `monitor replay --json` over a capture written to `path` from `records` (`ts_ns`,
/// captured bytes, original length); its summary. Panics with stderr when replay fails.
pub fn replay_records(path: &std::path::Path, records: &[(u64, &[u8], u32)]) -> serde_json::Value {
    std::fs::write(path, monitor_common::craft::pcap(records)).expect("write capture");
    let out = Command::new(MONITOR)
        .args(["replay", "--json"])
        .arg(path)
        .output()
        .expect("run monitor replay");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads program `name` of `e` through the verifier, as tc or XDP.
pub fn verify(e: &mut aya::Ebpf, name: &str) {
    let p = e
        .program_mut(name)
        .unwrap_or_else(|| panic!("no program {name}"));
    let r = match p {
        aya::programs::Program::SchedClassifier(p) => p.load(),
        aya::programs::Program::Xdp(p) => p.load(),
        _ => panic!("{name} is neither tc nor XDP"),
    };
    r.unwrap_or_else(|err| panic!("verifier refuses {name}: {err:?}"));
}

/// A packet socket bound to `ifname` in the calling thread's namespace.
pub fn packet_socket(ifname: &str) -> (OwnedFd, i32) {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
    assert!(
        fd >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).expect("interface name");
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
    assert!(ifindex > 0, "no interface {ifname} in this namespace");
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sll) as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: `tv` is a timeval of the size passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of_val(&tv) as u32,
        )
    };
    (fd, ifindex)
}

/// Sends `frame` out of the interface of a packet socket from [`packet_socket`].
pub fn send_frame(fd: &OwnedFd, ifindex: i32, frame: &[u8]) {
    // SAFETY: all-zero is a valid sockaddr_ll; ifindex and address set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `to` outlive the call and have the sizes passed.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &to as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&to) as u32,
        )
    };
    assert_eq!(
        n,
        frame.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

/// The MAC address of `ifname` in namespace `ns`.
pub fn mac(ns: &str, ifname: &str) -> [u8; 6] {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{ifname}/address"),
    ]);
    let mut m = [0u8; 6];
    for (b, part) in m
        .iter_mut()
        .zip(String::from_utf8_lossy(&out.stdout).trim().split(':'))
    {
        *b = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    m
}

impl Lab {
    /// An echo server on the client namespace's `port` (where a monitor started with
    /// [`Lab::monitor`] watches), for one session; returns once it listens.
    pub fn echo_on_client_side(&self, port: u16) -> std::thread::JoinHandle<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let ip = self.client_ip;
        let h = Lab::in_ns(&self.client_ns, move || {
            let l = std::net::TcpListener::bind((ip, port)).expect("bind");
            tx.send(()).expect("caller alive");
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 4096];
            use std::io::{Read, Write};
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("listening");
        h
    }

    /// A healthy session from the server namespace to that echo server: 200 bytes and
    /// their echo every 50 ms for `secs`; the thread returns its local port.
    pub fn healthy_session(&self, port: u16, secs: f64) -> std::thread::JoinHandle<u16> {
        let ip = self.client_ip;
        Lab::in_ns(&self.server_ns, move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect((ip, port)).expect("the session connects");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = [0u8; 200];
            let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
            while std::time::Instant::now() < end {
                if s.write_all(&[0x5a; 200]).is_err() || s.read_exact(&mut buf).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            s.local_addr().expect("local address").port()
        })
    }

    /// `clients` SYNs toward the client namespace's `port`, each from its own spoofed
    /// client in 198.18.0.0/15, sent from the other end of the wire at about `pps`
    /// (`None`: as fast as they go); the thread returns the rate it reached.
    pub fn syn_flood(
        &self,
        port: u16,
        clients: u32,
        pps: Option<u32>,
    ) -> std::thread::JoinHandle<f64> {
        use monitor_common::{craft::TcpFrame, parse::SYN};
        use std::net::{IpAddr, Ipv4Addr};
        // The flooded host answers (SYN/ACKs, SYN cookies once its backlog fills) toward
        // the spoofed sources through the other namespace, which drops them.
        sh(&[
            "ip",
            "-n",
            &self.client_ns,
            "route",
            "replace",
            "198.18.0.0/15",
            "via",
            self.server_ip,
        ]);
        let dst_mac = mac(&self.client_ns, &self.client_if);
        let server_if = self.server_if.clone();
        let dst: IpAddr = self.client_ip.parse().expect("ip");
        Lab::in_ns(&self.server_ns, move || {
            let (fd, ifindex) = packet_socket(&server_if);
            let t0 = std::time::Instant::now();
            for i in 0..clients {
                let src = IpAddr::V4(Ipv4Addr::new(
                    198,
                    18 + (i >> 16) as u8,
                    (i >> 8) as u8,
                    i as u8,
                ));
                let mut f = TcpFrame::new(src, 1024 + (i % 60_000) as u16, dst, port)
                    .flags(SYN)
                    .ethernet();
                f[..6].copy_from_slice(&dst_mac);
                send_frame(&fd, ifindex, &f);
                // Paced: the i-th SYN not before i/pps seconds.
                if let Some(pps) = pps.filter(|_| i % 256 == 0) {
                    let due = std::time::Duration::from_secs_f64(f64::from(i) / f64::from(pps));
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            f64::from(clients) / t0.elapsed().as_secs_f64()
        })
    }
}

/// Loads nftables `rules` into namespace `ns` (`nft -f -`).
pub fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(rules.as_bytes())?;
            c.wait_with_output()
        })
        .expect("nft");
    assert!(out.status.success(), "nft failed on:\n{rules}");
}
