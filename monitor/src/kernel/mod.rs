//! Everything that touches the kernel: checks before loading, loading, attaching.

pub mod attach;
pub mod load;
pub mod netns;
pub mod preflight;
pub mod self_stats;
