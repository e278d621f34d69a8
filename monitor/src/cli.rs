//! The command line (its contract, flag by flag: docs/contract.md).

use clap::{Parser, Subcommand, ValueEnum};
use monitor_common::config::PortSet;

pub const DEFAULT_PORTS: &str = "50000-59999,443";

#[derive(Parser, Debug)]
#[command(
    name = "monitor",
    version,
    about = "Live TCP health monitor for media edges (eBPF)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Watch TCP flows on network interfaces, live (needs root: CAP_BPF and CAP_NET_ADMIN).
    Live(LiveArgs),
    /// Run the same analysis over a pcap or pcapng file (no privileges needed).
    Replay(ReplayArgs),
    /// Build a private lab (network namespaces, a middlebox, synthetic media sessions with
    /// faults a few seconds in) and watch it live; everything is removed on exit (root).
    Demo(DemoArgs),
    /// Turn a recording (--record) into a report: one self-contained HTML file, or Markdown.
    Report(ReportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML file with timeline charts (default: FILE.html).
    Html,
    /// A Markdown summary for a ticket (default: stdout).
    Md,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// A recording written by `monitor live|demo|replay --record FILE`.
    pub file: std::path::PathBuf,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Where to write it (`-`: stdout).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<std::path::PathBuf>,
    /// Instead, one archive (.tar.gz) to attach to a ticket: the HTML report, the Markdown
    /// summary, the recording and every evidence capture its alerts name.
    #[arg(long, value_name = "OUT", conflicts_with = "output")]
    pub bundle: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Print alert transitions and reports to stdout instead of the terminal UI.
    #[arg(long)]
    pub headless: bool,
    /// Reports as JSON flow summaries (with --headless).
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = AttachMode::Tc)]
    pub attach: AttachMode,
    /// Seconds between two ticks (collection, alerts, reports): 0.001 to 3600.
    #[arg(long, default_value = "1", value_parser = parse_interval, allow_hyphen_values = true)]
    pub interval: f64,
    /// Stop by itself after this many seconds (default: until q, Ctrl-C or SIGTERM).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<f64>,
    /// Show what the monitor's programs cost the kernel per packet (UI header, JSON totals,
    /// metrics): turns BPF run-time statistics on while it runs, which adds two clock reads
    /// to every run of every BPF program.
    #[arg(long)]
    pub self_stats: bool,
    /// Payload segments sampled per flow direction for the media decoders: the first
    /// 256 bytes of each (0 to 16; 0: none).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MEDIA_SAMPLES, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u8).range(0..=MAX_MEDIA_SAMPLES))]
    pub media_samples: u8,
    #[command(flatten)]
    pub alerting: AlertArgs,
    #[command(flatten)]
    pub export: ExportArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The capture (`-`: standard input): pcap or pcapng, plain, gzip or zstd (Ethernet,
    /// Linux cooked SLL/SLL2, raw IP, loopback).
    pub file: std::path::PathBuf,
    /// TCP ports to analyse, as in `live` (default: every TCP port).
    #[arg(long, value_parser = parse_ports, allow_hyphen_values = true)]
    pub ports: Option<PortSet>,
    /// Print the flow summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub record: RecordArgs,
    /// Alert thresholds, as for `live` (alerts are judged every second of capture time).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Payload segments sampled per flow direction for the media decoders: the first
    /// 256 bytes of each (0 to 16; 0: none).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MEDIA_SAMPLES, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u8).range(0..=MAX_MEDIA_SAMPLES))]
    pub media_samples: u8,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
}

/// The evidence captures (`--evidence DIR`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EvidenceArgs {
    /// For every alert raised, write its worst flow's packets, each annotated with the
    /// monitor's verdict, as DIR/<id>-<kind>-<client>-<server>.pcapng (made if missing).
    #[arg(long, value_name = "DIR")]
    pub evidence: Option<std::path::PathBuf>,
    /// Keep DIR's captures within this many MB (1 to 1048576): files of cleared alerts go
    /// first, oldest first, then those of active alerts.
    #[arg(long, value_name = "MB", requires = "evidence", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u64).range(1..=MAX_RECORD_MB))]
    pub evidence_max_mb: Option<u64>,
    /// Bytes kept of each frame (64 to 262144); the original length is kept.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EVIDENCE_SNAPLEN,
          requires = "evidence", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(64..=262_144))]
    pub evidence_snaplen: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    /// tc ingress and egress (tcx links where the kernel has them).
    Tc,
    /// XDP on ingress (native, else generic) and tc on egress.
    Xdp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TcApi {
    /// tcx links on kernels >= 6.6, clsact filters (netlink) before.
    Auto,
    /// tcx links only: released by the kernel if the monitor dies.
    Tcx,
    /// clsact filters over netlink, removed on exit (left behind by `kill -9`).
    Netlink,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    /// Interface to watch; repeat for several.
    #[arg(short = 'i', long = "interface", required = true, value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// TCP ports to watch: ranges and single ports.
    #[arg(long, default_value = DEFAULT_PORTS, value_parser = parse_ports, allow_hyphen_values = true)]
    pub ports: PortSet,
    #[arg(long, value_enum, default_value_t = AttachMode::Tc)]
    pub attach: AttachMode,
    /// Which kernel interface attaches tc programs.
    #[arg(long, value_enum, default_value_t = TcApi::Auto)]
    pub tc_api: TcApi,
    /// Print to stdout instead of the terminal UI.
    #[arg(long)]
    pub headless: bool,
    /// Print the flow summary as JSON (one document per line).
    #[arg(long)]
    pub json: bool,
    /// Seconds between two reports: 0.001 to 3600.
    #[arg(long, default_value = "1", value_parser = parse_interval, allow_hyphen_values = true)]
    pub interval: f64,
    /// Stop by itself after this many seconds.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<f64>,
    /// Flows the kernel map holds (1 to 16777216); beyond that the least recently used are
    /// evicted.
    #[arg(long, default_value_t = 262_144, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=MAX_FLOWS))]
    pub max_flows: u32,
    /// Show what the monitor's programs cost the kernel per packet (UI header, JSON totals,
    /// metrics): turns BPF run-time statistics on while it runs, which adds two clock reads
    /// to every run of every BPF program.
    #[arg(long)]
    pub self_stats: bool,
    /// Payload segments sampled per flow direction for the media decoders: the first
    /// 256 bytes of each (0 to 16; 0: none).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MEDIA_SAMPLES, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u8).range(0..=MAX_MEDIA_SAMPLES))]
    pub media_samples: u8,
    #[command(flatten)]
    pub alerting: AlertArgs,
    #[command(flatten)]
    pub export: ExportArgs,
}

/// Outputs beside the UI, shared by `live` and `demo`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExportArgs {
    /// Serve /metrics (Prometheus text, or OpenMetrics when asked) and /healthz on
    /// ADDR:PORT; a bare port binds 127.0.0.1.
    #[arg(long, value_name = "ADDR:PORT", value_parser = crate::output::http::parse_listen)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also export the retransmission ratio of the N worst flows, one series each
    /// (default 0: no label per flow, so series stay bounded; at most 1000).
    #[arg(long, value_name = "N", default_value_t = 0, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u16).range(0..=MAX_TOP_FLOWS))]
    pub metrics_top_flows: u16,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub evidence: LiveEvidenceArgs,
}

/// The evidence captures of a live run: the packets come from the kernel as they pass.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LiveEvidenceArgs {
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// MiB for the packets kept before an alert (a power of two, 1 to 1024): the kernel's
    /// evidence ring, and as much again for the flows' latest packets in the monitor.
    #[arg(long, value_name = "MB", default_value_t = DEFAULT_EVIDENCE_RING_MB,
          requires = "evidence", allow_hyphen_values = true, value_parser = parse_ring_mb)]
    pub evidence_ring_mb: u32,
}

/// A recording for `monitor report`, shared by `live`, `demo` and `replay`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RecordArgs {
    /// Record the session as JSON lines (header, changed flows every tick, events, alert
    /// transitions) for `monitor report`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Rotate the recording before it grows past this size (1 to 1048576 MB): FILE becomes
    /// FILE.1, FILE.1 becomes FILE.2, and so on.
    #[arg(long, value_name = "MB", requires = "record", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u64).range(1..=MAX_RECORD_MB))]
    pub record_max_mb: Option<u64>,
    /// Files kept by rotation, FILE included: FILE, FILE.1 .. FILE.(N-1).
    #[arg(long, value_name = "N", default_value_t = 10, requires = "record_max_mb",
          allow_hyphen_values = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub record_keep: u32,
}

/// Options of the alert engine, shared by `live` and `demo`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AlertArgs {
    /// Alert thresholds (TOML; see README.md, "Alerts"). Default: the values listed there.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Append every alert transition (raised, escalated, cleared) as a JSON line.
    #[arg(long, value_name = "FILE")]
    pub alerts_log: Option<std::path::PathBuf>,
}

fn parse_ports(s: &str) -> Result<PortSet, String> {
    s.parse::<PortSet>().map_err(|e| e.to_string())
}

/// The largest `--max-flows`: the kernel map and its change ring are sized from it.
pub const MAX_FLOWS: i64 = 16_777_216;
/// The largest `--metrics-top-flows`: each flow is a series per direction.
pub const MAX_TOP_FLOWS: i64 = 1000;
/// `--media-samples`' default (`monitor_common::sample`).
pub const DEFAULT_MEDIA_SAMPLES: u8 = monitor_common::sample::DEFAULT_SAMPLES as u8;
/// The largest `--media-samples`: each sample is a 320-byte ring entry.
pub const MAX_MEDIA_SAMPLES: i64 = monitor_common::sample::MAX_SAMPLES as i64;
/// `--evidence-snaplen`'s default: the headers and the first payload bytes (a TLS record
/// header and handshake type).
pub const DEFAULT_EVIDENCE_SNAPLEN: u32 = 256;
/// The largest `--record-max-mb` (1 TiB): bytes of it must fit a `u64` with room to spare.
pub const MAX_RECORD_MB: u64 = 1 << 20;

/// A tick's length: below a millisecond the kernel's reports cannot be read back between
/// two ticks (and below a nanosecond a timer has no period at all); above an hour the
/// alert windows never fill.
fn parse_interval(s: &str) -> Result<f64, String> {
    parse_seconds(s, 0.001, 3600.0)
}

/// `--evidence-ring-mb`'s default.
pub const DEFAULT_EVIDENCE_RING_MB: u32 = monitor_common::evidence::DEFAULT_RING_MB;

/// The kernel sizes a ring in a power of two of pages.
fn parse_ring_mb(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=1024).contains(&n) && n.is_power_of_two() => Ok(n),
        _ => Err(format!(
            "{s} is not a power of two from 1 to 1024 (1, 2, 4, ... 1024)"
        )),
    }
}

/// A run's length: anything from a millisecond to a year.
fn parse_duration(s: &str) -> Result<f64, String> {
    parse_seconds(s, 0.001, 86_400.0 * 365.0)
}

/// A number of seconds within `[min, max]`; NaN and infinities are out of range.
fn parse_seconds(s: &str, min: f64, max: f64) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(_) => Err(format!("`{s}` is out of range: {min} to {max} seconds")),
        Err(_) => Err(format!("`{s}` is not a number of seconds ({min} to {max})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_outside_a_millisecond_to_an_hour_are_refused() {
        for bad in [
            "0", "1e-10", "0.0009", "-1", "NaN", "inf", "-inf", "3601", "1e300",
        ] {
            let err = parse_interval(bad).expect_err(bad);
            assert!(err.contains("0.001 to 3600"), "{bad}: {err}");
        }
        for good in ["0.001", "1", "0.25", "3600"] {
            assert!(parse_interval(good).is_ok(), "{good}");
        }
        assert!(parse_duration("31536001").is_err());
        assert!(parse_duration("nan").is_err());
        assert_eq!(parse_duration("86400"), Ok(86400.0));
    }
}
