//! The kernel's rare failures reach userspace through aya-log: the program, run by the
//! kernel on hand-built frames (BPF_PROG_TEST_RUN), fills its rings; each failure is
//! counted, and a few lines (not one a failure) say so through the `log` crate; and the
//! binary, flooded in a lab, says it on stderr at `RUST_LOG=debug`.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, TcpStream},
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions},
    Ebpf,
};
use monitor::{
    collector::{Clock, Collector},
    kernel::load::load,
};
use monitor_common::{
    config::PortSet,
    craft::TcpFrame,
    event::Event,
    flow::FlowState,
    parse::{ACK, RST, SYN},
    sample::{Sample, DEFAULT_SAMPLES},
    stats,
};

/// Every line logged in this test binary, as "LEVEL message".
static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, r: &log::Record) {
        let line = format!("{} {}", r.level(), r.args());
        LINES
            .get_or_init(Default::default)
            .lock()
            .unwrap()
            .push(line);
    }

    fn flush(&self) {}
}

fn lines_with(text: &str) -> Vec<String> {
    let all = LINES.get_or_init(Default::default).lock().unwrap();
    all.iter().filter(|l| l.contains(text)).cloned().collect()
}

fn ebpf() -> Ebpf {
    let cfg = "50000-59999"
        .parse::<PortSet>()
        .expect("ports")
        .to_config(0);
    let mut e = load(&cfg, 65_536).expect("load the eBPF object");
    // Every program carries the failure path: the verifier must accept each.
    for name in [
        "tc_eth_in",
        "tc_eth_out",
        "tc_rawip_in",
        "tc_rawip_out",
        "xdp_eth",
    ] {
        common::verify(&mut e, name);
    }
    e
}

fn run(e: &mut Ebpf, frame: &[u8]) {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    let p: &mut SchedClassifier = e.program_mut("tc_eth_in").unwrap().try_into().unwrap();
    let r = p.test_run(opts).expect("BPF_PROG_TEST_RUN");
    // TC_ACT_UNSPEC: a failure, logged or not, never changes what the program returns.
    assert_eq!(
        r.return_value,
        u32::MAX,
        "tc_eth_in must let every packet through"
    );
}

/// At most this many lines for `lost` failures: the 1st, 2nd, 4th... on each CPU.
fn bound(lost: u64) -> usize {
    let cpus = aya::util::nr_cpus().expect("cpus");
    cpus * (64 - lost.leading_zeros() as usize)
}

#[test]
fn full_rings_are_counted_and_said_in_a_few_log_lines() {
    if !common::privileged() {
        return;
    }
    log::set_boxed_logger(Box::new(Capture)).expect("the only logger");
    log::set_max_level(log::LevelFilter::Debug);
    let mut e = ebpf();
    let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).unwrap();

    // A SYN refused by a reset from each of more clients than the EVENTS ring (256 KiB)
    // holds events between two ticks: each refusal is an event.
    let per_event = std::mem::size_of::<Event>() + 8;
    let clients = (256 * 1024 / per_event) as u32 + 500;
    let server = IpAddr::from([10, 0, 0, 2]);
    for i in 0..clients {
        let client = IpAddr::from([10, 1, (i >> 8) as u8, i as u8]);
        let syn = TcpFrame::new(client, 40000, server, 50001).flags(SYN);
        run(&mut e, &syn.ethernet());
        let mut rst = TcpFrame::new(server, 50001, client, 40000).flags(RST | ACK);
        (rst.seq, rst.ack) = (0, syn.seq.wrapping_add(1));
        run(&mut e, &rst.ethernet());
    }
    // One 4-tuple, a new ISN each time: each SYN closes the record before it, more than
    // the CLOSED ring (1 MiB) holds.
    let per_record = std::mem::size_of::<FlowState>() + 8;
    let reuses = (1 << 20) / per_record as u32 + 100;
    for isn in 1..=reuses + 1 {
        let client = IpAddr::from([10, 2, 0, 1]);
        let mut f = TcpFrame::new(client, 40000, IpAddr::from([10, 0, 0, 2]), 50002).flags(SYN);
        f.seq = isn;
        run(&mut e, &f.ethernet());
    }
    // Payload segments, as many per new flow as a direction is sampled by default, more
    // than the SAMPLES ring (4 MiB) holds.
    let per_sample = std::mem::size_of::<Sample>() + 8;
    let per_flow = DEFAULT_SAMPLES;
    let flows = (4 << 20) / per_sample as u32 / per_flow + 100;
    for i in 0..flows {
        let client = IpAddr::from([10, 3, (i >> 8) as u8, i as u8]);
        for k in 0..per_flow {
            let mut f = TcpFrame::new(client, 40000, server, 50003)
                .flags(ACK)
                .payload(b"media");
            f.seq = 1 + 5 * k;
            run(&mut e, &f.ethernet());
        }
    }
    let s = c.collect().unwrap();

    let events_lost = s.counters.get(stats::EVENTS_LOST);
    assert!(
        events_lost >= 500,
        "the EVENTS ring never filled: {events_lost}"
    );
    let said = lines_with("EVENTS ring full");
    assert!(
        !said.is_empty(),
        "no log line for {events_lost} lost events"
    );
    assert!(
        said.len() <= bound(events_lost),
        "{} lines for {events_lost} lost events: {said:?}",
        said.len()
    );
    assert!(said.iter().all(|l| l.starts_with("DEBUG ")), "{said:?}");

    let closed_lost = s.counters.get(stats::CLOSED_LOST);
    assert!(closed_lost > 0, "the CLOSED ring never filled");
    let said = lines_with("CLOSED ring full");
    assert!(
        !said.is_empty(),
        "no log line for {closed_lost} lost records"
    );
    assert!(said.len() <= bound(closed_lost), "{said:?}");

    let samples_lost = s.counters.get(stats::SAMPLES_LOST);
    assert!(samples_lost > 0, "the SAMPLES ring never filled");
    let said = lines_with("SAMPLES ring full");
    assert!(
        !said.is_empty(),
        "no log line for {samples_lost} lost samples"
    );
    assert!(said.len() <= bound(samples_lost), "{said:?}");
}

/// `monitor live` in a lab, flooded with connection attempts to a closed port (each a SYN
/// and a reset: new flows and events faster than one tick's EVENTS ring holds), says the
/// kernel's line on stderr with `RUST_LOG=debug`.
#[test]
fn the_binary_says_the_kernels_failures_at_debug_level() {
    if !common::privileged() {
        return;
    }
    let lab = common::Lab::new("klog");
    let mut child = lab
        .monitor(&["--ports", "50000", "--json", "--duration", "120"])
        .env("RUST_LOG", "warn,monitor::program=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start monitor");
    let err = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let server: SocketAddr = format!("{}:50000", lab.server_ip).parse().unwrap();
    let flood = {
        let stop = stop.clone();
        common::Lab::in_ns(&lab.client_ns, move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = TcpStream::connect_timeout(&server, Duration::from_millis(100));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = None;
    let mut seen = Vec::new();
    while said.is_none() && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains("EVENTS ring full") => said = Some(l),
            Ok(l) => seen.push(l),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().expect("flood");
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let said = said.unwrap_or_else(|| panic!("no line for a full EVENTS ring: {seen:?}"));
    assert!(said.contains("DEBUG"), "{said}");
}
