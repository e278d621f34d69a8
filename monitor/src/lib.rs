//! The userspace side of the monitor. Data flows one way, kernel → collector → flow table →
//! alerts → outputs, and imports point down (tests/layers.rs holds it):
//! - `model`: the types every layer shares (it imports no other module);
//! - `format`: numbers and text as people read them, for the TUI and the report;
//! - `kernel`: preflight checks, loading the eBPF object, attaching and detaching;
//! - `media`: decoders of a media flow's first bytes (TLS, pseudo-TLS, MS-TURN, STUN) and
//!   the verdict on them, pure functions below the collector;
//! - `table`: the flow table, a row per flow at a stable index, and what each tick changed;
//! - `collector`: reads the kernel's maps into the flow table;
//! - `snapshot`: the table with a tick's totals and alerts, what every output renders;
//! - `output`: the renderings (JSON summary, text table);
//! - `pipeline`: the one loop, source → alert engine → outputs, every command runs;
//! - `live`, `replay`, `demo`: the front-ends that pick a source and outputs for it.

pub mod alerts;
pub mod capture;
pub mod cli;
pub mod collector;
pub mod demo;
pub mod error;
pub mod evidence;
pub mod explain;
pub mod footprint;
pub mod format;
pub mod host;
pub mod kernel;
pub mod live;
pub mod media;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod replay;
pub mod report;
pub mod snapshot;
pub mod table;
pub mod tui;
