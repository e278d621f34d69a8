//! Types that cross the kernel/user boundary, and the code both sides run.
//!
//! This crate is `no_std` and compiled twice: into the eBPF program (`bpfel-unknown-none`)
//! and into userspace with the `user` feature, which adds aya `Pod` impls and the parts that
//! need `std` (port-set parsing, formatting). Everything the kernel runs here must stay
//! verifier-friendly: bounded loops, no recursion, no panics, small stack.
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod analysis;
pub mod config;
#[cfg(feature = "user")]
pub mod craft;
pub mod event;
pub mod evidence;
pub mod flow;
pub mod parse;
pub mod sample;
pub mod stats;
