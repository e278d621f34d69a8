//! The label sets of the metric families: each bounded (direction, kind, outcome,
//! interface, reason), so the number of series does not grow with the flows; only the
//! opt-in worst flows (`--metrics-top-flows N`) carry a flow's addresses.

use monitor_common::{
    flow::{C2S, S2C},
    stats,
};
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Dir {
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct IfDir {
    pub(super) interface: String,
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Retx {
    pub(super) direction: &'static str,
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Rst {
    pub(super) direction: &'static str,
    pub(super) suspect_injected: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Reason {
    pub(super) reason: &'static str,
}

/// Why frames were not analysed: the label and the kernel's counter.
pub(super) const SKIPPED: [(&str, u32); 6] = [
    ("malformed", stats::MALFORMED),
    ("truncated", stats::TRUNCATED),
    ("fragments", stats::FRAGMENTS),
    ("too_many_headers", stats::TOO_MANY_HEADERS),
    ("not_tcp", stats::NOT_TCP),
    ("not_ip", stats::NOT_IP),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Outcome {
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AlertLabels {
    pub(super) kind: &'static str,
    pub(super) severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FlowLabels {
    pub(super) client: String,
    pub(super) server: String,
    pub(super) direction: &'static str,
}

pub(super) const DIRS: [(usize, &str); 2] = [(C2S, "c2s"), (S2C, "s2c")];
