//! Loading the embedded eBPF object with the run's configuration.

use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader};
use monitor_common::config::Config;

/// The eBPF object built by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// Loads the object: `cfg` into `.rodata` (frozen), the flow map and the ring of changed
/// flows sized to `max_flows`, the evidence ring (used only when `cfg.snaplen` is not 0)
/// to `--evidence-ring-mb`'s default. Nothing is attached yet.
pub fn load(cfg: &Config, max_flows: u32) -> Result<Ebpf> {
    load_with_ring(
        cfg,
        max_flows,
        monitor_common::evidence::DEFAULT_RING_MB << 20,
    )
}

/// As [`load`], the evidence ring of `evidence_ring_bytes` (a power of two of at least a
/// page) when `cfg.snaplen` turns it on; otherwise it keeps its one page.
pub fn load_with_ring(cfg: &Config, max_flows: u32, evidence_ring_bytes: u32) -> Result<Ebpf> {
    raise_memlock();
    let mut loader = EbpfLoader::new();
    loader
        .override_global("CONFIG", cfg, true)
        .map_max_entries("FLOWS", max_flows)
        .map_max_entries(
            "CHANGED",
            monitor_common::flow::changed_ring_bytes(max_flows),
        );
    if cfg.snaplen != 0 {
        loader.map_max_entries("EVIDENCE", evidence_ring_bytes);
    }
    loader.load(OBJECT).context("loading the eBPF program")
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
    // SAFETY: `lim` is a valid rlimit for the call to read.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}
