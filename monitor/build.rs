//! Builds the eBPF program and embeds it in the binary.
//!
//! The eBPF crate needs `-Z build-std=core` with a compiler whose `rust-src` matches it. The
//! toolchain comes from `MONITOR_BPF_TOOLCHAIN` (default: `monitor-bpf`, the Debian compiler
//! linked by `cargo xtask setup`, else `nightly` with rust-src as aya documents).

use std::process::Command;

fn toolchain_usable(name: &str) -> bool {
    Command::new("rustup")
        .args(["run", name, "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MONITOR_BPF_TOOLCHAIN");
    println!("cargo:rerun-if-changed=../monitor-common/src");
    let toolchain = match std::env::var("MONITOR_BPF_TOOLCHAIN") {
        Ok(t) => t,
        Err(_) if toolchain_usable("monitor-bpf") => "monitor-bpf".to_string(),
        Err(_) => "nightly".to_string(),
    };
    // build-std is a nightly feature; the Debian compiler is stable. Enable it for this build
    // script's child cargo only, never for the workspace build.
    std::env::set_var("RUSTC_BOOTSTRAP", "1");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf");
    let pkg = aya_build::Package {
        name: "monitor-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([pkg], aya_build::Toolchain::Custom(&toolchain))
}
