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
        "positive",
    );
    assert_usage_error(
        &monitor(&["live", "-i", "lo", "--max-flows", "0"], &[]),
        "max-flows",
    );
    assert_usage_error(&monitor(&["live"], &[]), "--interface");
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
