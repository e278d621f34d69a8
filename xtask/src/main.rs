//! Developer tasks: `setup` (toolchain and test tools, idempotent), `lint`, `test`, `run`.
//!
//! A fresh Debian 12 machine has no compiler that can build the eBPF crate: `setup` installs
//! Debian's rustc 1.96 with its matching rust-src and the LLVM of the same major, builds
//! bpf-linker against that LLVM, and links the compiler as the rustup toolchain
//! `monitor-bpf` that monitor/build.rs uses (TOOLCHAIN.md). Each step checks first, so a
//! second run installs nothing. People with nightly + rust-src set MONITOR_BPF_TOOLCHAIN
//! and keep their own compiler; setup then only installs the test tools.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need; does nothing when it is all there.
    Setup,
    /// rustfmt and clippy (-D warnings) on the host crates and on the eBPF crate's target.
    Lint,
    /// Setup, lint, every test suite (the privileged ones need root), a short fuzz run.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, build the release binary, run it with these arguments.
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
}

const BPF_TOOLCHAIN: &str = "monitor-bpf";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the tests drive: namespaces and tc, bpftool, offload switches, nftables
/// for loss/resets/blackholes, setpriv to drop root, tcpdump for debugging captures.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "ethtool",
    "nftables",
    "util-linux",
    "procps",
    "tcpdump",
];

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
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn apt_install(pkgs: &[String]) -> Result<()> {
    let missing: Vec<&String> = pkgs.iter().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        println!("setup: Debian packages present ({})", pkgs.join(" "));
        return Ok(());
    }
    if !is_root() {
        bail!("setup must install {missing:?} with apt-get: run it as root");
    }
    println!("setup: installing {missing:?}");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

/// LLVM major of the Debian compiler, read from `rustc -vV` so a Debian update that moves
/// LLVM does not silently break the bpf-linker build.
fn llvm_major() -> Result<String> {
    let v = output(Command::new("/usr/bin/rustc").arg("-vV")).context("/usr/bin/rustc -vV")?;
    let line = v
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("no `LLVM version:` line in rustc -vV")?;
    Ok(line.split('.').next().unwrap_or(line).to_string())
}

fn setup() -> Result<()> {
    let own_toolchain = std::env::var("MONITOR_BPF_TOOLCHAIN")
        .ok()
        .filter(|t| t != BPF_TOOLCHAIN);
    let mut pkgs: Vec<String> = TEST_PACKAGES.iter().map(|s| s.to_string()).collect();
    if let Some(t) = &own_toolchain {
        println!("setup: MONITOR_BPF_TOOLCHAIN={t}: using your toolchain for the eBPF crate");
        return apt_install(&pkgs);
    }
    pkgs.extend(["rustc-web", "cargo-web", "rust-web-src", "rust-web-clippy"].map(String::from));
    apt_install(&pkgs)?;
    let llvm = llvm_major()?;
    apt_install(&[
        format!("llvm-{llvm}-dev"),
        format!("libpolly-{llvm}-dev"),
        "zlib1g-dev".into(),
        "libzstd-dev".into(),
    ])?;
    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if linker.contains(BPF_LINKER_VERSION) {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
    } else {
        println!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm}");
        run(Command::new("cargo")
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ]))?;
    }
    let fuzz = output(Command::new("cargo").args(["fuzz", "--version"])).unwrap_or_default();
    if fuzz.starts_with("cargo-fuzz") {
        println!("setup: cargo-fuzz present");
    } else {
        println!("setup: installing cargo-fuzz");
        run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            "0.13.2",
            "--locked",
        ]))?;
    }
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if toolchains.lines().any(|l| l.starts_with(BPF_TOOLCHAIN)) {
        println!("setup: rustup toolchain {BPF_TOOLCHAIN} present");
    } else {
        println!("setup: linking /usr as rustup toolchain {BPF_TOOLCHAIN}");
        run(Command::new("rustup").args(["toolchain", "link", BPF_TOOLCHAIN, "/usr"]))?;
    }
    Ok(())
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
    let toolchain = std::env::var("MONITOR_BPF_TOOLCHAIN").unwrap_or_else(|_| BPF_TOOLCHAIN.into());
    run(Command::new("rustup")
        .current_dir(root().join("monitor-ebpf"))
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"",
        )
        .args([
            "run",
            &toolchain,
            "cargo",
            "clippy",
            "--target",
            "bpfel-unknown-none",
        ])
        .args([
            "-Z",
            "build-std=core",
            "--target-dir",
            "../target/bpf-clippy",
        ])
        .args(["--", "-D", "warnings"]))
}

/// A short fuzzing run (capture reader, parser, analysis core), seeded with the test
/// captures: long enough to catch a panic a change introduced, short enough for CI.
fn fuzz_smoke(seconds: u32) -> Result<()> {
    let corpus = root().join("fuzz/corpus/replay");
    std::fs::create_dir_all(&corpus)?;
    for entry in std::fs::read_dir(root().join("testdata/pcaps"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, corpus.join(name))?;
        }
    }
    let toolchain = std::env::var("MONITOR_BPF_TOOLCHAIN").unwrap_or_else(|_| BPF_TOOLCHAIN.into());
    // No sanitizer: Debian's compiler ships no ASAN runtime, and for safe Rust the finding
    // that matters is a panic, which libFuzzer catches on its own.
    run(Command::new("rustup")
        .current_dir(root().join("fuzz"))
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "run",
            &toolchain,
            "cargo",
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "replay",
        ])
        .arg(&corpus)
        .args(["--", &format!("-max_total_time={seconds}")]))
}

fn test(extra: &[String]) -> Result<()> {
    let skip = std::env::var("MONITOR_SKIP_PRIVILEGED").as_deref() == Ok("1");
    if !is_root() && !skip {
        bail!(
            "the test suites need root (eBPF loading, network namespaces); run as root, \
             or set MONITOR_SKIP_PRIVILEGED=1 to run only the unprivileged suites"
        );
    }
    if skip {
        eprintln!("WARNING: MONITOR_SKIP_PRIVILEGED=1: the privileged suites will not run");
    }
    setup()?;
    lint()?;
    let mut c = cargo(&["test", "--workspace", "--no-fail-fast"]);
    c.args(extra);
    run(&mut c)?;
    fuzz_smoke(20)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup(),
        Task::Lint => lint(),
        Task::Test { args } => test(&args),
        Task::Run { args } => setup()
            .and_then(|()| run(&mut cargo(&["build", "--release", "-p", "monitor"])))
            .and_then(|()| {
                let status = Command::new(root().join("target/release/monitor"))
                    .args(&args)
                    .status()
                    .context("starting target/release/monitor")?;
                match status.code() {
                    Some(0) => Ok(()),
                    Some(code) => std::process::exit(code),
                    None => bail!("monitor ended by a signal"),
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
