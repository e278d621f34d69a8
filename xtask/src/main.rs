//! Developer tasks: `setup` (toolchain and test tools, idempotent), `lint`, `test`, `run`.
//!
//! A fresh Debian 12 machine has no compiler that can build the eBPF crate: `setup` installs
//! Debian's rustc-web with its matching rust-src and the LLVM of the same major, builds
//! bpf-linker against that LLVM, and links the compiler as the rustup toolchain
//! `monitor-bpf` that monitor/build.rs uses. Each step checks first, so a second run
//! installs nothing. People with nightly + rust-src set MONITOR_BPF_TOOLCHAIN to their
//! toolchain and keep their own compiler and bpf-linker; setup then skips the compiler
//! steps and only installs the test tools (with apt, as root).

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer tasks for the monitor workspace")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need; does nothing when it is all there.
    Setup,
    /// rustfmt --check and clippy -D warnings (host crates and the eBPF crate's target).
    Lint,
    /// Setup, lint, build, every test suite (the privileged ones need root), a short fuzz run.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, build the release binary, then exec it with these arguments (after `--`).
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The benchmarks (root): BENCHMARKS.md tables and target/bench/results.json.
    Bench {
        /// Tiny counts, a few seconds each: proves the harness runs, measures nothing.
        #[arg(long)]
        smoke: bool,
        /// Only these groups: kernel, live, offline, scale (comma-separated).
        #[arg(long)]
        only: Option<String>,
    },
}

const BPF_TOOLCHAIN: &str = "monitor-bpf";
const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Debian's compiler with its matching rust-src (`-Z build-std=core` needs it) and clippy
/// (lint runs clippy on the eBPF target with this compiler).
const COMPILER_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "rust-web-clippy"];
/// Debian packages the tests drive: namespaces and tc, bpftool, offload switches, nftables
/// for loss/resets/blackholes (and the demo's middlebox), setpriv to drop root, tcpdump for
/// debugging captures, tmux to drive the terminal UI in a real terminal, Prometheus (and
/// promtool) for the metrics tests, curl for its query API, Chromium to render reports.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "ethtool",
    "nftables",
    "util-linux",
    "procps",
    "tcpdump",
    "tmux",
    "prometheus",
    "curl",
    "chromium",
    "tshark",
];
/// The same tools as commands, checked where there is no dpkg.
const TEST_COMMANDS: &[&str] = &[
    "ip",
    "tc",
    "bpftool",
    "ethtool",
    "nft",
    "setpriv",
    "ps",
    "tcpdump",
    "tmux",
    "promtool",
    "prometheus",
    "curl",
    "chromium",
    "tshark",
];
const SKIP_PRIVILEGED: &str = "MONITOR_SKIP_PRIVILEGED";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// stdout of a command that succeeded; None if it could not start or failed.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            // Uid: real effective saved filesystem
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
}

fn step(what: &str, outcome: &str) {
    // stderr, like cargo's own progress: `xtask run -- ... --json > file` keeps only JSON.
    eprintln!("setup: {what}: {outcome}");
}

/// The packages of `pkgs` dpkg does not list as installed (one dpkg-query for all).
fn missing_packages(pkgs: &[String]) -> Vec<String> {
    // dpkg-query exits 1 when some name is unknown but still prints the others.
    let listed = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(pkgs)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    pkgs.iter()
        .filter(|p| {
            !listed.lines().any(|l| {
                l.split_once(' ')
                    .is_some_and(|(name, status)| name == *p && status == "install ok installed")
            })
        })
        .cloned()
        .collect()
}

/// apt-get, run at most one `apt-get update` per setup.
#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn install(&mut self, pkgs: &[String]) -> Result<()> {
        if !on_path("apt-get") {
            bail!(
                "setup must install {} but this machine has no apt-get; install the equivalent \
                 yourself, or use the ordinary route (README: nightly + rust-src + bpf-linker, \
                 MONITOR_BPF_TOOLCHAIN=nightly)",
                pkgs.join(" ")
            );
        }
        if !is_root() {
            bail!(
                "setup must install {} with apt-get, which needs root: run it as root (or \
                 `sudo apt-get install {}` first)",
                pkgs.join(" "),
                pkgs.join(" ")
            );
        }
        if !self.updated {
            run(Command::new("apt-get").arg("update"))?;
            self.updated = true;
        }
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(pkgs))
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// LLVM major of the Debian compiler, read from `rustc -vV` so a Debian update that moves
/// LLVM does not silently break the bpf-linker build.
fn llvm_major() -> Result<String> {
    let v = output(Command::new("/usr/bin/rustc").arg("-vV")).context("/usr/bin/rustc -vV")?;
    let version = v
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("no `LLVM version:` line in /usr/bin/rustc -vV")?;
    let major = version.split('.').next().unwrap_or(version).trim();
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        bail!("cannot read the LLVM major from `LLVM version: {version}`");
    }
    Ok(major.to_string())
}

/// Test tools: the packages to install with apt, when missing and we can (apt-get and root).
/// They are only needed by the privileged suites, which need root anyway, so without root a
/// missing tool is a warning, not a failure.
fn test_tools() -> Vec<String> {
    let what = format!("test tools ({})", TEST_PACKAGES.join(" "));
    let what = what.as_str();
    if !on_path("dpkg-query") {
        let missing: Vec<&str> = TEST_COMMANDS
            .iter()
            .copied()
            .filter(|c| !on_path(c))
            .collect();
        if missing.is_empty() {
            step(what, "ok (present)");
        } else {
            step(
                what,
                &format!(
                    "WARNING: not found: {} (no dpkg here; install them yourself, the \
                     privileged suites need them)",
                    missing.join(" ")
                ),
            );
        }
        return Vec::new();
    }
    let missing = missing_packages(&strings(TEST_PACKAGES));
    if missing.is_empty() {
        step(what, "ok (present)");
    } else if on_path("apt-get") && is_root() {
        step(what, &format!("installing {} (apt-get)", missing.join(" ")));
        return missing;
    } else {
        step(
            what,
            &format!(
                "WARNING: missing {} (not root, not installing; the privileged suites need \
                 them)",
                missing.join(" ")
            ),
        );
    }
    Vec::new()
}

fn cargo_fuzz() -> Result<()> {
    let what = "cargo-fuzz";
    let version = output(Command::new("cargo").args(["fuzz", "--version"])).unwrap_or_default();
    if version.starts_with("cargo-fuzz") {
        step(what, "ok (present)");
        return Ok(());
    }
    step(
        what,
        &format!("installing {CARGO_FUZZ_VERSION} (cargo install)"),
    );
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

fn setup() -> Result<()> {
    let mut apt = Apt::default();
    let own_toolchain = std::env::var("MONITOR_BPF_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty() && t != BPF_TOOLCHAIN);

    if let Some(t) = &own_toolchain {
        step(
            "eBPF compiler",
            &format!("MONITOR_BPF_TOOLCHAIN={t}: yours, Debian compiler steps skipped"),
        );
        if !on_path("bpf-linker") {
            step(
                "bpf-linker",
                "WARNING: not on PATH; the eBPF build needs it (`cargo install bpf-linker`)",
            );
        }
        let tools = test_tools();
        if !tools.is_empty() {
            apt.install(&tools)?;
        }
        return cargo_fuzz();
    }

    // 1. Debian's compiler and its rust-src; installed together with missing test tools.
    let what = format!("Debian compiler ({})", COMPILER_PACKAGES.join(" "));
    let mut compiler_missing = if on_path("dpkg-query") {
        missing_packages(&strings(COMPILER_PACKAGES))
    } else {
        strings(COMPILER_PACKAGES)
    };
    if compiler_missing.is_empty() {
        step(&what, "ok (present)");
    } else {
        step(
            &what,
            &format!("installing {} (apt-get)", compiler_missing.join(" ")),
        );
    }
    // 2. Test tools; one apt-get run for them and the compiler.
    compiler_missing.extend(test_tools());
    if !compiler_missing.is_empty() {
        apt.install(&compiler_missing)?;
    }

    // 3. The LLVM of the compiler's major, for bpf-linker.
    let llvm = llvm_major()?;
    let llvm_pkgs = vec![
        format!("llvm-{llvm}-dev"),
        format!("libpolly-{llvm}-dev"),
        "zlib1g-dev".to_string(),
        "libzstd-dev".to_string(),
    ];
    let what = format!("LLVM {llvm} ({})", llvm_pkgs.join(" "));
    let missing = missing_packages(&llvm_pkgs);
    if missing.is_empty() {
        step(&what, "ok (present)");
    } else {
        step(
            &what,
            &format!("installing {} (apt-get)", missing.join(" ")),
        );
        apt.install(&missing)?;
    }

    // 4. bpf-linker built against that LLVM.
    let what = format!("bpf-linker {BPF_LINKER_VERSION}");
    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if linker.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
        step(&what, "ok (present)");
    } else {
        step(
            &what,
            &format!("building against /usr/lib/llvm-{llvm} (cargo install, ~1 min)"),
        );
        run(Command::new("cargo")
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ]))?;
    }

    // 5. cargo-fuzz, for the test command's fuzz run.
    cargo_fuzz()?;

    // 6. The Debian compiler as the rustup toolchain monitor/build.rs picks by default.
    let what = format!("rustup toolchain {BPF_TOOLCHAIN} (/usr)");
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("`rustup toolchain list` failed: rustup is needed (monitor/build.rs uses it)")?;
    if toolchains
        .lines()
        .any(|l| l.split_whitespace().next() == Some(BPF_TOOLCHAIN))
    {
        step(&what, "ok (present)");
    } else {
        step(&what, "linking (rustup toolchain link)");
        run(Command::new("rustup").args(["toolchain", "link", BPF_TOOLCHAIN, "/usr"]))?;
    }
    Ok(())
}

fn bpf_toolchain() -> String {
    std::env::var("MONITOR_BPF_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| BPF_TOOLCHAIN.into())
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root()).args(args);
    c
}

fn lint() -> Result<()> {
    run(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
    run(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate on its own target, with the compiler that builds it.
    run(Command::new("rustup")
        .current_dir(root().join("monitor-ebpf"))
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"",
        )
        .args([
            "run",
            &bpf_toolchain(),
            "cargo",
            "clippy",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
            "../target/bpf-clippy",
            "--",
            "-D",
            "warnings",
        ]))
}

/// A short fuzzing run of each target: `replay` (capture reader, parser, analysis core),
/// seeded with the test captures, and `media` (the media decoders and verdict): long enough
/// to catch a panic a change introduced, short enough for CI.
fn fuzz_smoke(seconds: u32) -> Result<()> {
    let corpus = root().join("fuzz/corpus/replay");
    std::fs::create_dir_all(&corpus)?;
    for entry in std::fs::read_dir(root().join("testdata/pcaps"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            if path.is_file() {
                std::fs::copy(&path, corpus.join(name))?;
            }
        }
    }
    for target in ["replay", "media"] {
        let corpus = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        // No sanitizer: Debian's compiler ships no ASAN runtime, and for safe Rust the
        // finding that matters is a panic, which libFuzzer catches on its own.
        run(Command::new("rustup")
            .current_dir(root().join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            .args([
                "run",
                &bpf_toolchain(),
                "cargo",
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                target,
            ])
            .arg(&corpus)
            .args(["--", &format!("-max_total_time={seconds}")]))?;
    }
    Ok(())
}

fn skip_warning() {
    eprintln!();
    eprintln!("{}", "!".repeat(78));
    eprintln!("!! WARNING: {SKIP_PRIVILEGED}=1: the PRIVILEGED test suites are SKIPPED");
    eprintln!("!! (eBPF loading, in-kernel tests, network-namespace labs). Only the");
    eprintln!("!! unprivileged suites run; this is not a full test run. CI never sets it.");
    eprintln!("{}", "!".repeat(78));
    eprintln!();
}

fn test(extra: &[String]) -> Result<()> {
    let skip = std::env::var(SKIP_PRIVILEGED).as_deref() == Ok("1");
    if !is_root() && !skip {
        bail!(
            "the test suites need root (eBPF loading, network namespaces); run as root, \
             or set MONITOR_SKIP_PRIVILEGED=1 to run only the unprivileged suites"
        );
    }
    if skip {
        skip_warning();
    }
    setup()?;
    lint()?;
    run(&mut cargo(&["build", "--workspace"]))?;
    let mut c = cargo(&["test", "--workspace", "--no-fail-fast"]);
    // UI snapshots are compared, never rewritten, by the test command.
    c.env("INSTA_UPDATE", "no");
    if skip {
        // The test code reads it; say it explicitly rather than rely on inheritance.
        c.env(SKIP_PRIVILEGED, "1");
    }
    c.args(extra);
    run(&mut c)?;
    fuzz_smoke(20)?;
    if skip {
        skip_warning();
    } else {
        bench_smoke()?;
    }
    Ok(())
}

/// Every benchmark with tiny counts, so the harness cannot rot: it must run and its output
/// must parse with every group present. Speed is not judged here.
fn bench_smoke() -> Result<()> {
    let dir = root().join("target/bench-smoke");
    std::fs::create_dir_all(&dir)?;
    let (md, json) = (dir.join("BENCHMARKS.md"), dir.join("results.json"));
    let _ = std::fs::remove_file(&md);
    bench_run(&[
        "--smoke".into(),
        "--out".into(),
        md.display().to_string(),
        "--json".into(),
        json.display().to_string(),
    ])?;
    let text = std::fs::read_to_string(&json).context("the smoke run wrote no JSON")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the smoke run's JSON does not parse")?;
    for group in ["kernel", "live", "offline", "scale"] {
        if v.get(group).is_none() {
            bail!("the smoke run's JSON has no `{group}` group");
        }
    }
    let median = |f: &serde_json::Value| f["median"].as_f64().filter(|m| m.is_finite() && *m > 0.0);
    let classes = v["kernel"]["classes"].as_array().map(Vec::len).unwrap_or(0);
    let figures = [
        median(&v["kernel"]["classes"][0]["ns_per_packet"]),
        median(&v["live"]["overhead"][0]["pps"]),
        median(&v["live"]["peers"][1]["cpu_s_per_mpkt"]),
        median(&v["live"]["flood"]["reports"]),
        median(&v["offline"]["ratio"]),
        median(&v["offline"]["scan"]["ratio"]),
        median(&v["scale"]["sizes"][0]["tick_ms"]),
    ];
    if classes != 10 || figures.iter().any(Option::is_none) {
        bail!("the smoke run's figures are incomplete: {classes} kernel classes, {figures:?}");
    }
    let tables = std::fs::read_to_string(&md)?;
    for heading in ["### 1.", "### 2.", "### 3.", "### 4.", "### 5."] {
        if !tables.contains(heading) {
            bail!("the smoke run's BENCHMARKS.md lacks section {heading}");
        }
    }
    eprintln!("xtask: benchmark smoke run ok ({})", dir.display());
    Ok(())
}

/// `cargo bench` of the harness (release build, root) with `args` after `--`.
fn bench_run(args: &[String]) -> Result<()> {
    let mut c = cargo(&["bench", "-p", "monitor", "--bench", "bench", "--"]);
    c.args(args);
    run(&mut c)
}

fn bench(smoke: bool, only: Option<String>) -> Result<()> {
    if !is_root() {
        bail!("the benchmarks load eBPF programs and build network namespaces: run them as root");
    }
    setup()?;
    let mut args = Vec::new();
    if smoke {
        args.push("--smoke".to_string());
    }
    if let Some(o) = only {
        args.push("--only".into());
        args.push(o);
    }
    args.push("--out".into());
    args.push(root().join("BENCHMARKS.md").display().to_string());
    args.push("--json".into());
    args.push(
        root()
            .join("target/bench/results.json")
            .display()
            .to_string(),
    );
    bench_run(&args)
}

/// Setup, release build, then replace this process with the monitor: stdio, signals (Ctrl-C
/// reaches the monitor alone, which prints its last summary) and the exit code are its own.
fn run_monitor(args: &[String]) -> Result<()> {
    setup()?;
    run(&mut cargo(&["build", "--release", "-p", "monitor"]))?;
    let bin = root().join("target/release/monitor");
    let err = Command::new(&bin).args(args).exec();
    Err(err).with_context(|| format!("cannot exec {}", bin.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup(),
        // The eBPF crate's lint needs the compiler set-up installs (quick when present).
        Task::Lint => setup().and_then(|()| lint()),
        Task::Test { args } => test(&args),
        Task::Run { args } => run_monitor(&args),
        Task::Bench { smoke, only } => bench(smoke, only),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
