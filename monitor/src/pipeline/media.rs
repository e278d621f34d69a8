//! The media verdict of each flow, kept in its row of the flow table. A tick's payload
//! samples go to the tracker (`media::flows`) with the row of their flow; what it judges
//! goes back into the rows and into the tick's change set, where the alert engine and the
//! outputs find it. Once a flow's verdict is final its samples are dropped, and only the
//! verdict stays in the row.

use monitor_common::{
    flow::{C2S, S2C},
    sample::Sample,
};

use crate::{
    media::{
        flows::{FlowFacts, MediaFlows, MediaFlowsConfig, DEFAULT_MAX_PENDING},
        stun::Side,
        verdict::Reset,
    },
    model::{FlowId, FlowStats},
    table::FlowTable,
};

pub struct MediaVerdicts {
    tracker: MediaFlows,
}

/// The flow's reset for the verdict, as the side that answered the hello with it: the
/// server side's when it sent one (what a device answering in the server's name sends).
/// A reset from the client side whose TTL, IP-ID or burst are not the client's
/// (`suspect_injected_rsts`) was sent by a device in the path, not by the client: seen at
/// the server (an edge), that is how a middlebox refusing the hello looks, so it counts as
/// the answer too. A plain reset from the client is the client giving up.
fn reset_of(st: &FlowStats) -> Option<Reset> {
    let (c, s) = (&st.dir[C2S], &st.dir[S2C]);
    let (d, from) = if s.rsts > 0 {
        (S2C, Side::Server)
    } else if st.anomalies(C2S).suspect_injected_rsts > 0 {
        (C2S, Side::Server)
    } else if c.rsts > 0 {
        (C2S, Side::Client)
    } else {
        return None;
    };
    Some(Reset {
        from,
        time_ns: st.anomalies(d).last_rst_ns,
    })
}

impl MediaVerdicts {
    /// `samples`: payload segments sampled per flow direction (`--media-samples`);
    /// `reply_timeout_ns` and `stun_timeout_ns`: the alert settings' waits.
    pub fn new(samples: u32, reply_timeout_ns: u64, stun_timeout_ns: u64) -> Self {
        Self {
            tracker: MediaFlows::new(MediaFlowsConfig {
                samples,
                max_pending: DEFAULT_MAX_PENDING,
                reply_timeout_ns,
                stun_timeout_ns,
            }),
        }
    }

    /// One tick: `samples` (those since the tick before) judged with their flows' rows, at
    /// `now_ns`; the verdicts that changed are written into the rows.
    pub fn tick(&mut self, table: &mut FlowTable, samples: &[Sample], now_ns: u64) {
        for s in samples {
            let Some(at) = table.find_live(&s.key) else {
                continue;
            };
            let Some(row) = table.row_mut(at).filter(|r| !r.media_done) else {
                continue;
            };
            if s.dir == 1 && row.reply_ttl.is_none() {
                row.reply_ttl = Some(s.ttl);
            }
            let first_seen = row.flow.state.first_seen_ns;
            self.tracker.add(s.key, first_seen, at, s);
        }
        let updates = self
            .tracker
            .tick(now_ns, |key, first_seen, at| match table.row(at) {
                Some(r) if r.flow.key == *key && r.flow.state.first_seen_ns == first_seen => {
                    FlowFacts {
                        reset: reset_of(&r.flow.state),
                        gone: false,
                    }
                }
                _ => FlowFacts {
                    reset: None,
                    gone: true,
                },
            });
        for u in updates {
            let id = FlowId {
                key: u.key,
                first_seen_ns: u.first_seen_ns,
            };
            table.set_media(u.slot, &id, u.media, u.done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_answers_the_hello_unless_the_client_itself_sent_it() {
        let mut st = FlowStats::default();
        assert_eq!(reset_of(&st), None);
        st.dir[C2S].rsts = 1;
        st.anomalies.get_mut(C2S).last_rst_ns = 5;
        assert_eq!(reset_of(&st).map(|r| r.from), Some(Side::Client));
        st.anomalies.get_mut(C2S).suspect_injected_rsts = 1;
        assert_eq!(
            reset_of(&st).map(|r| r.from),
            Some(Side::Server),
            "injected"
        );
        st.dir[S2C].rsts = 1;
        st.anomalies.get_mut(S2C).last_rst_ns = 7;
        assert_eq!(
            reset_of(&st),
            Some(Reset {
                from: Side::Server,
                time_ns: 7
            })
        );
    }
}
