//! Bad input: one line, a hint, exit code 2, nothing on stdout, never a panic.

mod common;

use std::process::{Command, Output};

const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

fn monitor(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(MONITOR)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run monitor")
}

fn assert_usage_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code, stderr: {err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("[")).collect();
    let errors = lines.iter().filter(|l| l.starts_with("error: ")).count();
    let hints = lines.iter().filter(|l| l.starts_with("hint: ")).count();
    assert_eq!(
        (errors, hints),
        (1, 1),
        "one error line, one hint line: {err}"
    );
}

#[test]
fn bad_port_specs_are_refused() {
    for (spec, needle) in [
        ("60000-50000", "backwards"),
        ("70000", "out of range"),
        ("abc", "not a port"),
    ] {
        let out = monitor(&["live", "-i", "lo", "--ports", spec], &[]);
        assert_usage_error(&out, needle);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--help"),
            "a hint to the help"
        );
    }
}

#[test]
fn bad_numbers_are_refused() {
    assert_usage_error(
        &monitor(&["live", "-i", "lo", "--interval", "0"], &[]),
        "0.001 to 3600 seconds",
    );
    assert_usage_error(
        &monitor(&["live", "-i", "lo", "--max-flows", "0"], &[]),
        "max-flows",
    );
    assert_usage_error(&monitor(&["live"], &[]), "--interface");
}

/// Every number and duration is checked by the parser, before anything is loaded or
/// attached (`--headless`: as root, a value that passed would attach to `lo`).
#[test]
fn numbers_out_of_range_are_refused_before_anything_is_attached() {
    let live = |extra: &[&str]| {
        // Were a value let through, the run would still end.
        let mut a = vec!["live", "-i", "lo", "--headless"];
        if !extra.contains(&"--duration") {
            a.extend(["--duration", "1"]);
        }
        a.extend_from_slice(extra);
        monitor(&a, &[])
    };
    for (flag, value, needle) in [
        ("--interval", "1e-10", "0.001 to 3600 seconds"),
        ("--interval", "-1", "`-1` is out of range"),
        ("--interval", "NaN", "out of range"),
        ("--interval", "inf", "out of range"),
        ("--interval", "100000", "out of range"),
        ("--duration", "-inf", "out of range"),
        ("--duration", "1e-9", "out of range"),
        ("--max-flows", "-1", "1..=16777216"),
        ("--max-flows", "99999999999", "--max-flows"),
        ("--metrics-top-flows", "70000", "0..=1000"),
        ("--metrics-top-flows", "-3", "--metrics-top-flows"),
        ("--ports", "-5", "not a port"),
        ("--media-samples", "17", "'17' for '--media-samples"),
        ("--media-samples", "-1", "-1 is not in 0..=16"),
        ("--media-samples", "four", "'four' for '--media-samples"),
    ] {
        let out = live(&[flag, value]);
        assert_usage_error(&out, needle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hint: see `monitor live --help`"), "{err}");
        assert!(!err.contains("attached"), "{err}");
    }
    let out = live(&["--record", "/tmp/x.jsonl", "--record-max-mb", "1e30"]);
    assert_usage_error(&out, "--record-max-mb");
    let out = live(&[
        "--record",
        "/tmp/x.jsonl",
        "--record-max-mb",
        "99999999999999",
    ]);
    assert_usage_error(&out, "1..=1048576");
    for args in [
        &["demo", "--headless", "--interval", "1e-10"][..],
        &["demo", "--headless", "--duration", "0"][..],
        &["replay", "x.pcap", "--ports", "0-"][..],
        &["replay", "x.pcap", "--record", "r", "--record-max-mb", "0"][..],
        &["replay", "x.pcap", "--media-samples", "17"][..],
        &["replay", "x.pcap", "--media-samples", "-2"][..],
        &["demo", "--headless", "--media-samples", "100"][..],
    ] {
        let out = monitor(args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_usage_error(&out, &format!("see `monitor {} --help`", args[0]));
        if args.contains(&"--media-samples") {
            assert!(err.contains("is not in 0..=16"), "{err}");
        }
        assert!(!err.contains("lab"), "nothing built: {err}");
    }
}

/// What clap says (unknown flags, missing values, unknown subcommands) comes out as one
/// `error:` line and one `hint:` line, exit 2; help and version still print, exit 0.
#[test]
fn parser_errors_have_one_error_line_and_a_hint() {
    for (args, needle) in [
        (
            &["live", "-i", "lo", "--intervl", "1"][..],
            "unexpected argument '--intervl'",
        ),
        (&["live", "-i"][..], "a value is required for '--interface"),
        (&["live"][..], "--interface"),
        (&["nosuch"][..], "unrecognized subcommand 'nosuch'"),
        (&[][..], "subcommand"),
        (&["report"][..], "<FILE>"),
        (
            &["report", "r.jsonl", "--format", "pdf"][..],
            "invalid value 'pdf'",
        ),
        (&["demo", "--attach", "ebpf"][..], "invalid value 'ebpf'"),
        (
            &["replay", "a.pcap", "b.pcap"][..],
            "unexpected argument 'b.pcap'",
        ),
    ] {
        let out = monitor(args, &[]);
        assert_usage_error(&out, needle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("For more information"), "{err}");
        assert!(!err.contains("Usage:"), "{err}");
        let sub = args
            .first()
            .filter(|s| ["live", "demo", "replay", "report"].contains(s));
        let hint = match sub {
            Some(s) => format!("see `monitor {s} --help`"),
            None => "see `monitor --help`".into(),
        };
        assert!(err.contains(&hint), "{hint} in: {err}");
    }
    for args in [
        &["--help"][..],
        &["live", "--help"],
        &["--version"],
        &["replay", "-h"],
    ] {
        let out = monitor(args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("monitor"), "{args:?}: {text}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn unknown_interface() {
    if !common::privileged() {
        return;
    }
    let out = monitor(&["live", "-i", "nosuch0", "--headless"], &[]);
    assert_usage_error(&out, "no interface named `nosuch0`");
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint: "));
}

#[test]
fn kernel_without_btf() {
    if !common::privileged() {
        return;
    }
    let out = monitor(
        &["live", "-i", "lo", "--headless"],
        &[("MONITOR_SYSFS_BTF", "/nonexistent/vmlinux")],
    );
    assert_usage_error(&out, "no BTF");
}

#[test]
fn not_root() {
    if !common::privileged() {
        return;
    }
    let out = as_nobody(&["live", "-i", "lo"]);
    assert_usage_error(&out, "missing CAP_BPF and CAP_NET_ADMIN");
}

/// The monitor run as user `nobody` with no capabilities.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            MONITOR,
        ])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn a_bad_alert_config_names_the_key_and_line() {
    let dir = std::env::temp_dir().join(format!("monitor-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (text, needles) in [
        (
            "[stall]\nno_progres_s = 2\n",
            vec!["line 2", "no_progres_s"],
        ),
        (
            "[zero_window]\nheld_s = -1\n",
            vec!["line 2", "zero_window.held_s"],
        ),
        (
            "[retransmit_rate]\nwindow_s = 0.5\n",
            vec!["line 2", "retransmit_rate.window_s", "tick"],
        ),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).expect("write config");
        let p = path.to_string_lossy().to_string();
        let out = monitor(&["live", "-i", "lo", "--headless", "--config", &p], &[]);
        for n in needles {
            assert_usage_error(&out, n);
        }
    }
    let out = monitor(
        &[
            "live",
            "-i",
            "lo",
            "--headless",
            "--config",
            "/nonexistent/cfg.toml",
        ],
        &[],
    );
    assert_usage_error(&out, "cannot read config");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_terminal_ui_without_a_terminal_says_to_use_headless() {
    // stdin and stdout are pipes here: refused before anything is loaded or attached.
    let out = monitor(&["live", "-i", "lo"], &[]);
    assert_usage_error(&out, "needs a terminal");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--headless"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("attached"));
}

#[test]
fn the_demo_refuses_without_root_and_leaves_nothing() {
    if !common::privileged() {
        return;
    }
    let out = as_nobody(&["demo", "--headless"]);
    assert_usage_error(&out, "needs root");
    let left = common::demo_namespaces(None).len();
    assert_eq!(left, 0, "no demo namespace left behind");
}

/// Bad input to the demo is refused before its lab is built (as root, it was built first and
/// removed again), and without root too, since the checks need none.
#[test]
fn the_demo_checks_its_input_before_building_the_lab() {
    let dir = std::env::temp_dir().join(format!("monitor-demo-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad_cfg = dir.join("bad.toml");
    std::fs::write(&bad_cfg, "[stall]\nno_progres_s = 2\n").expect("write config");
    let record = dir.join("r.jsonl");
    let (bad_cfg, record) = (bad_cfg.to_string_lossy(), record.to_string_lossy());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    for (args, needle) in [
        (
            &["demo", "--headless", "--config", "/nonexistent/cfg.toml"][..],
            "cannot read config",
        ),
        (
            &["demo", "--headless", "--config", &bad_cfg][..],
            "no_progres_s",
        ),
        (
            &["demo", "--headless", "--record", &record, "--interval", "5"][..],
            "--record with --interval 5",
        ),
        (
            &["demo", "--headless", "--record", "/nonexistent/r.jsonl"][..],
            "--record /nonexistent/r.jsonl: no directory /nonexistent",
        ),
        (
            &["demo", "--headless", "--alerts-log", "/nonexistent/a.jsonl"][..],
            "--alerts-log /nonexistent/a.jsonl: no directory /nonexistent",
        ),
        (
            &["demo", "--headless", "--metrics", &port][..],
            "cannot listen on 127.0.0.1:",
        ),
    ] {
        let out = monitor(args, &[]);
        assert_usage_error(&out, needle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("monitor demo: lab"),
            "the lab was built: {err}"
        );
    }
    assert!(!dir.join("r.jsonl").exists(), "no recording begun");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--evidence` on a live run: a snap length past what the kernel's ring holds, a ring size
/// that is not a power of two, and the ring's size without `--evidence`, each refused
/// before anything is loaded (as root, a run let through would attach to `lo`).
#[test]
fn live_evidence_flags_are_refused_before_anything_is_attached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("ev");
    let ev = ev.to_str().expect("utf-8");
    let live = |extra: &[&str]| {
        let mut a = vec!["live", "-i", "lo", "--headless", "--duration", "1"];
        a.extend_from_slice(extra);
        monitor(&a, &[])
    };
    assert_usage_error(
        &live(&["--evidence", ev, "--evidence-snaplen", "300"]),
        "at most 256 bytes",
    );
    assert_usage_error(
        &live(&["--evidence", ev, "--evidence-ring-mb", "3"]),
        "not a power of two",
    );
    assert_usage_error(&live(&["--evidence-ring-mb", "16"]), "--evidence");
    assert_usage_error(
        &monitor(
            &[
                "demo",
                "--headless",
                "--evidence",
                ev,
                "--evidence-snaplen",
                "1000",
            ],
            &[],
        ),
        "at most 256 bytes",
    );
    assert!(!std::path::Path::new(ev).exists(), "no directory made");
}
