//! A watched interface deleted while the monitor runs: said once on stderr, `/healthz` no
//! longer ok (503, naming it), and exit 1 once every watched interface is gone.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Stdio},
    sync::mpsc::{channel, Receiver},
    time::{Duration, Instant},
};

use common::{sh, Lab};

/// The monitor, killed if a failed assertion leaves it running (it would watch on).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Long enough for a loaded machine; every wait ends as soon as its condition holds.
const DEADLINE: Duration = Duration::from_secs(60);

/// Starts `monitor live --headless` in the lab's client namespace on its veth and `extra`
/// interfaces; returns it once attached, its stderr lines as they come, and where its
/// metrics are served.
fn start(lab: &Lab, extra: &[&str]) -> (Running, Receiver<String>, SocketAddr) {
    let mut child = lab
        .monitor(&["--interval", "0.2", "--metrics", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start monitor");
    let err = BufReader::new(child.stderr.take().expect("stderr"));
    let child = Running(child);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addr = None;
    let start = Instant::now();
    loop {
        let line = rx
            .recv_timeout(DEADLINE.saturating_sub(start.elapsed()))
            .expect("the monitor attaches");
        if let Some(a) = line.split("http://").nth(1) {
            addr = a.trim().trim_end_matches("/metrics").parse().ok();
        }
        if line.contains("attached") {
            break;
        }
    }
    (
        child,
        rx,
        addr.expect("the monitor printed its metrics address"),
    )
}

/// `GET /healthz` from inside the client namespace: (status line, body).
fn healthz(ns: &str, addr: SocketAddr) -> (String, String) {
    Lab::in_ns(ns, move || {
        let mut s = TcpStream::connect(addr).expect("connect to /healthz");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("response");
        let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
        (
            head.lines().next().unwrap_or_default().to_string(),
            body.to_string(),
        )
    })
    .join()
    .expect("GET thread")
}

/// Stderr lines until one contains `needle` (all of them, that one last).
fn wait_line(rx: &Receiver<String>, needle: &str) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(DEADLINE.saturating_sub(start.elapsed())) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no `{needle}` on stderr ({e}); saw {seen:?}"),
        }
    }
}

fn delete(lab: &Lab) {
    sh(&["ip", "-n", &lab.client_ns, "link", "del", &lab.client_if]);
}

#[test]
fn one_interface_of_two_gone_is_said_once_and_healthz_is_not_ok() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("ig");
    let (mut run, rx, addr) = start(&lab, &["-i", "lo"]);
    let child = &mut run.0;
    let (status, body) = healthz(&lab.client_ns, addr);
    assert!(status.contains("200") && body == "ok\n", "{status} {body}");
    delete(&lab);
    let gone = format!("interface {} is gone", lab.client_if);
    wait_line(&rx, &gone);
    let start = Instant::now();
    let (status, body) = loop {
        let (status, body) = healthz(&lab.client_ns, addr);
        if !status.contains("200") || start.elapsed() > DEADLINE {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains(&lab.client_if), "{body}");
    // Still watching lo: it keeps running, and says it once only.
    assert!(
        child.try_wait().expect("monitor").is_none(),
        "the monitor exited"
    );
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest: Vec<String> = rx.iter().collect();
    let status = child.wait().expect("monitor");
    assert!(status.success(), "{status}: {rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains(&gone)),
        "said again: {rest:?}"
    );
    assert!(rest.iter().any(|l| l.contains("detached")), "{rest:?}");
}

#[test]
fn every_interface_gone_ends_the_run_with_exit_1() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("ih");
    let (mut run, rx, _) = start(&lab, &[]);
    let child = &mut run.0;
    delete(&lab);
    let lines = wait_line(&rx, "error: every watched interface is gone");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("monitor") {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "still running: {lines:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let errors = lines.iter().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(errors, 1, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("detached")), "{lines:?}");
}
