//! The eBPF program (see `program.rs`). Built for `bpfel-unknown-none` by monitor/build.rs;
//! a host build (`cargo build --workspace`, clippy) sees an empty binary.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod program;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
