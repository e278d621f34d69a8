//! The media verdicts' metrics: how many flows got each verdict, and how their STUN
//! transactions ended, each counted once, when the flow's verdict became final (a verdict
//! still open may change, and counting it then would count it twice).

use prometheus_client::{
    encoding::EncodeLabelSet, metrics::counter::Counter, metrics::family::Family,
    registry::Registry,
};

use crate::{media::verdict::Verdict, table::FlowTable};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StunResult {
    result: &'static str,
}

/// The verdicts by name, `unknown` for a flow whose first bytes never said.
const VERDICTS: [&str; 5] = ["ok", "intercepted", "rejected", "no_reply", "unknown"];
const RESULTS: [&str; 3] = ["response", "error", "unanswered"];

pub(super) struct MediaMetrics {
    verdicts: Family<VerdictLabel, Counter>,
    stun: Family<StunResult, Counter>,
}

impl MediaMetrics {
    /// The families, registered in `r`, every series present from the start.
    pub(super) fn register(r: &mut Registry) -> Self {
        let verdicts = Family::default();
        let stun = Family::default();
        r.register(
            "monitor_media_verdicts",
            "Media flows by verdict on their first bytes (ok, intercepted, rejected, no_reply), counted once final",
            verdicts.clone(),
        );
        r.register(
            "monitor_stun_transactions",
            "STUN requests of media flows by how they ended (response, error, unanswered), counted once the flow's verdict is final",
            stun.clone(),
        );
        for verdict in VERDICTS {
            let _ = verdicts.get_or_create(&VerdictLabel { verdict });
        }
        for result in RESULTS {
            let _ = stun.get_or_create(&StunResult { result });
        }
        Self { verdicts, stun }
    }

    /// Counts the verdicts `table`'s change set says became final this tick.
    pub(super) fn observe(&self, table: &FlowTable) {
        for &(at, done) in &table.changes().media {
            let Some(m) = table
                .row(at)
                .and_then(|r| r.media.as_deref())
                .filter(|_| done)
            else {
                continue;
            };
            let verdict = m.verdict.map_or("unknown", Verdict::name);
            self.verdicts.get_or_create(&VerdictLabel { verdict }).inc();
            if let Some(c) = &m.stun {
                for (result, n) in RESULTS
                    .into_iter()
                    .zip([c.responses, c.errors, c.unanswered])
                {
                    self.stun.get_or_create(&StunResult { result }).inc_by(n);
                }
            }
        }
    }
}
