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
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            MONITOR,
            "live",
            "-i",
            "lo",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_usage_error(&out, "missing CAP_BPF and CAP_NET_ADMIN");
}
