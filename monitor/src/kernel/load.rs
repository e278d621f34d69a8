//! Loading the embedded eBPF object with the run's configuration.

use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader};
use monitor_common::config::Config;

/// The eBPF object built by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// Loads the object: `cfg` into `.rodata` (frozen), the flow map and the ring of changed
/// flows sized to `max_flows`.
/// Nothing is attached yet.
pub fn load(cfg: &Config, max_flows: u32) -> Result<Ebpf> {
    raise_memlock();
    EbpfLoader::new()
        .override_global("CONFIG", cfg, true)
        .map_max_entries("FLOWS", max_flows)
        .map_max_entries(
            "CHANGED",
            monitor_common::flow::changed_ring_bytes(max_flows),
        )
        .load(OBJECT)
        .context("loading the eBPF program")
}

/// The kernel's log of its rare failures (a map insert refused, a full ring, a record lost
/// on port reuse), read from the object's `AYA_LOGS` ring into the `log` crate at debug
/// level (`RUST_LOG=debug` shows them); each also has its counter in `STATS`. Call
/// [`KernelLog::flush`] to move what the kernel said since into the log.
pub struct KernelLog(aya_log::EbpfLogger<&'static dyn log::Log>);

impl KernelLog {
    /// Takes the log ring out of `ebpf`. `None` (said once, at debug level) when the object
    /// has none: the counters still count every failure.
    pub fn take(ebpf: &mut Ebpf) -> Option<Self> {
        match aya_log::EbpfLogger::init(ebpf) {
            Ok(l) => Some(Self(l)),
            Err(e) => {
                log::debug!("the kernel's log is not read: {e}");
                None
            }
        }
    }

    /// Moves every line the kernel wrote since the last call into the log.
    pub fn flush(&mut self) {
        self.0.flush();
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; a million flows need more than
/// the usual 8 MiB. Best effort: later kernels ignore it.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}
