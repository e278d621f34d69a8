//! The media verdict of every flow of a capture, judged from the payload samples the host
//! analysis hands over in its ticks (`replay::read_ticks`) and the flow's last record. The
//! collector does not hand samples to `media::verdict::judge` yet; until it does, the tests
//! that check traffic against the verdict assemble the `Exchange` here.

use std::{collections::HashMap, net::SocketAddr, path::Path};

use monitor::{
    capture::Reader,
    media::{
        alert_config::STUN_TIMEOUT_S,
        stream::PayloadSample,
        stun::Side,
        verdict::{self, Exchange, Media, Reset},
    },
    replay,
    table::FlowTable,
};
use monitor_common::{
    config::PortSet,
    flow::{FlowKey, C2S, S2C},
    sample::DEFAULT_SAMPLES,
};

/// The TLS reply timeout's default (`tls.reply_timeout_s` in alerts/config.rs).
pub const REPLY_TIMEOUT_NS: u64 = 3_000_000_000;

#[derive(Debug)]
pub struct Judged {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub media: Media,
}

/// Each flow of the capture at `path` (every port), judged at the capture's last
/// timestamp. A reset is the server side's when it sent one, else the client side's.
pub fn judge_capture(path: &Path) -> Vec<Judged> {
    let reader = Reader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut samples: HashMap<(FlowKey, u8), Vec<PayloadSample>> = HashMap::new();
    let mut table = FlowTable::default();
    let mut now_ns = 0;
    replay::read_ticks(reader, &PortSet::all(), DEFAULT_SAMPLES, |tick| {
        for s in &tick.samples {
            samples
                .entry((s.key, s.dir))
                .or_default()
                .push(PayloadSample::from(s));
        }
        table.apply(tick.changed, tick.closed);
        now_ns = tick.now_ns;
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let none = Vec::new();
    table
        .records()
        .iter()
        .map(|f| {
            let of = |d: usize| samples.get(&(f.key, d as u8)).unwrap_or(&none);
            let reset = [(S2C, Side::Server), (C2S, Side::Client)]
                .into_iter()
                .find(|(d, _)| f.state.dir[*d].rsts > 0)
                .map(|(d, from)| Reset {
                    from,
                    time_ns: f.state.anomalies(d).last_rst_ns,
                });
            let media = verdict::judge(&Exchange {
                client: of(C2S),
                server: of(S2C),
                reset,
                now_ns,
                reply_timeout_ns: REPLY_TIMEOUT_NS,
                stun_timeout_ns: (STUN_TIMEOUT_S * 1e9) as u64,
            });
            Judged {
                client: f.client(),
                server: f.server(),
                media,
            }
        })
        .collect()
}

/// One line per flow, for a failure message.
pub fn table(judged: &[Judged]) -> String {
    judged
        .iter()
        .map(|j| {
            let m = &j.media;
            format!(
                "{} -> {}: client {:?} server {:?} verdict {:?} stun {:?} ({})",
                j.client,
                j.server,
                m.client_sent.map(|c| c.name()),
                m.server_replied.map(|s| s.name()),
                m.verdict.map(|v| v.name()),
                m.stun,
                m.evidence
                    .as_ref()
                    .map(|e| e.describe())
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
