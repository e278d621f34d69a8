//! The alert lifecycle, as README.md ("Alerts") states it:
//!
//! - An alert belongs to a session, kind and direction ([`AlertKey`]); the flows' findings
//!   are filed under it, and it names the worst flow and how many flows show it.
//! - `raised` when a finding reaches a warning; `escalated` when it gets worse (warning to
//!   critical); its summary and evidence follow the worst flow while it is active.
//! - Hysteresis: `cleared` once no finding has held it for `clear_after_s` (10 s). That a
//!   rate must fall below `clear_ratio` of its threshold to count as gone, and that one-off
//!   facts (a reset, a failed handshake) hold for `hold_s` (30 s), is in `rules.rs`: a
//!   finding below warning keeps an alert alive but raises none.
//! - Roll-ups (`rollup.rs`): sessions failing the same way toward one server become one
//!   alert about that server; the session alerts it takes over clear at once, saying
//!   `rolled_up_into`.
//! - `session_has_healthy_flow`: whether the session (for a roll-up, one of its sessions)
//!   still has a working flow.
//! - The last 200 cleared alerts are kept for the UI and the summary.

use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;
use serde::Serialize;

use super::{config::AlertConfig, finding::MediaContext, ns, rollup, rules};
use crate::{
    media::alerting::ReplyTtl,
    model::{Alert, FlowId, Kind, Level, OrderKey, Scope, SessionId},
    table::FlowTable,
};
use monitor_common::flow::S2C;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Raised,
    Escalated,
    Cleared,
}

/// One step of an alert's lifecycle: what the alert log and `--headless` print.
#[derive(Clone, Debug, Serialize)]
pub struct Transition {
    #[serde(rename = "alert")]
    pub change: Change,
    pub ts_ns: u64,
    #[serde(flatten)]
    pub alert: Alert,
}

/// What an alert is about: a session (or a server, for a roll-up), a kind, a direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct AlertKey {
    pub(super) scope: Scope,
    pub(super) kind: Kind,
    pub(super) dir: Option<usize>,
}

impl AlertKey {
    fn session(&self) -> Option<SessionId> {
        match self.scope {
            Scope::Session(s) => Some(s),
            Scope::Server(_) => None,
        }
    }
}

/// One flow's finding, filed under the alert it belongs to, with the flow's row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Filed {
    pub(super) key: AlertKey,
    pub(super) row: usize,
    pub(super) finding: rules::Finding,
}

/// One tick's findings, one list for every flow (a scan files one per failing session).
pub(super) type Findings = Vec<Filed>;

/// Files a flow's findings under the alert they belong to.
pub(super) fn collect(
    findings: &mut Findings,
    session: SessionId,
    row: usize,
    found: &[rules::Finding],
) {
    findings.extend(found.iter().map(|x| Filed {
        key: AlertKey {
            scope: Scope::Session(session),
            kind: x.kind,
            dir: x.dir,
        },
        row,
        finding: *x,
    }));
}

/// Numbers the distinct alert keys of a run of findings, one hash lookup for each run of
/// findings of one key (a storm's findings all share one).
#[derive(Default)]
pub(super) struct KeyNumbers {
    pub(super) keys: Vec<AlertKey>,
    numbers: HashMap<AlertKey, u32>,
    last: Option<(AlertKey, u32)>,
}

impl KeyNumbers {
    pub(super) fn number(&mut self, key: AlertKey) -> u32 {
        match self.last {
            Some((k, n)) if k == key => n,
            _ => {
                let keys = &mut self.keys;
                let n = *self.numbers.entry(key).or_insert_with(|| {
                    keys.push(key);
                    (keys.len() - 1) as u32
                });
                self.last = Some((key, n));
                n
            }
        }
    }
}

/// The findings in alert order, rows ascending within one alert: the distinct keys, sorted,
/// and (key's place among them, row, finding's index) for every finding. Sorting integers
/// is what keeps a storm's tick short: a hundred thousand findings of one key would
/// otherwise be sorted by comparing keys.
fn by_alert(findings: &Findings) -> (Vec<AlertKey>, Vec<(u32, u32, u32)>) {
    let mut numbers = KeyNumbers::default();
    let mut order: Vec<(u32, u32, u32)> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| (numbers.number(f.key), f.row as u32, i as u32))
        .collect();
    let numbered = numbers.keys;
    let mut places: Vec<u32> = (0..numbered.len() as u32).collect();
    places.sort_unstable_by_key(|&n| numbered[n as usize]);
    let mut rank = vec![0u32; numbered.len()];
    for (place, &n) in places.iter().enumerate() {
        rank[n as usize] = place as u32;
    }
    for o in &mut order {
        o.0 = rank[o.0 as usize];
    }
    order.sort_unstable();
    let keys = places.iter().map(|&n| numbered[n as usize]).collect();
    (keys, order)
}

/// Cleared alerts kept for the UI and the summary.
const RECENT_CLEARED: usize = 200;

/// The active alerts and the recently cleared.
pub(super) struct Lifecycle {
    pub(super) active: BTreeMap<AlertKey, Alert>,
    cleared: VecDeque<Alert>,
    next_id: u64,
    /// The rows of the alerts whose flows were listed this tick, by alert id.
    made: HashMap<u64, Vec<u32>>,
}

impl Lifecycle {
    pub(super) fn new() -> Self {
        Self {
            active: BTreeMap::new(),
            cleared: VecDeque::new(),
            next_id: 1,
            made: HashMap::default(),
        }
    }

    /// The sessions whose having a working flow matters this tick (where something is
    /// wrong), each `false` for the caller to set.
    pub(super) fn sessions_in_question(&self, findings: &Findings) -> HashMap<SessionId, bool> {
        findings
            .iter()
            .map(|f| &f.key)
            .chain(self.active.keys())
            .filter_map(AlertKey::session)
            .map(|s| (s, false))
            .collect()
    }

    /// One tick's findings (`flows` the snapshot's rows they name) become transitions:
    /// raised, escalated, cleared. `working` says which sessions still have a working flow.
    pub(super) fn update(
        &mut self,
        mut findings: Findings,
        working: &HashMap<SessionId, bool>,
        flows: &FlowTable,
        cfg: &AlertConfig,
        now: u64,
    ) -> Vec<Transition> {
        let above = cfg.rollup_above as usize;
        let covered = rollup::fold(&mut findings, flows, above, &self.active);
        let (keys, order) = by_alert(&findings);
        let taken_over = rollup::taken_over(&covered, &keys, &self.active);
        let ok = |s: &SessionId| working.get(s).copied().unwrap_or(false);
        self.made.clear();
        let mut out = Vec::new();
        for list in order.chunk_by(|a, b| a.0 == b.0) {
            let key = keys[list[0].0 as usize];
            let list: Vec<&Filed> = list
                .iter()
                .map(|&(_, _, i)| &findings[i as usize])
                .collect();
            let Some(level) = list.iter().map(|f| f.finding.level).max() else {
                continue;
            };
            // Of the flows at the worst level, the last in report order (client, server,
            // first seen), however the flows came to be judged.
            let Some(w) = list
                .iter()
                .filter(|f| f.finding.level == level)
                .max_by_key(|f| OrderKey::of(&flows[f.row]))
            else {
                continue;
            };
            let (wi, worst) = (w.row, &w.finding);
            let flow = &flows[wi];
            // Rows ascending: reading the flows of a storm walks the table forward.
            let raising: Vec<usize> = list
                .iter()
                .filter(|f| f.finding.level >= Level::Warning)
                .map(|f| f.row)
                .collect();
            let rolled_up = match key.scope {
                Scope::Server(server) => covered.get(&key).map(|c| (server, c)),
                Scope::Session(_) => None,
            };
            let healthy = match rolled_up {
                Some((_, c)) => c.sessions().any(|s| ok(&s)),
                None => key.session().is_some_and(|s| ok(&s)),
            };
            // What the alert shows of its worst flow, made only for an alert raised or
            // kept up to date this tick.
            let row = flows.row(wi as u32);
            let media = row.and_then(|r| r.media.as_deref()).map(|m| MediaContext {
                media: m,
                cfg: &cfg.media,
                ttl: ReplyTtl {
                    reply: row.and_then(|r| r.reply_ttl),
                    server_baseline: Some(flow.state.dir[S2C].ttl_base).filter(|t| *t != 0),
                },
                now_ns: now,
            });
            let shown = || {
                let ids: Vec<FlowId> = raising.iter().map(|&r| FlowId::of(&flows[r])).collect();
                let mut evidence = worst.evidence_with(media);
                let summary = match rolled_up {
                    Some((server, c)) => {
                        let sessions = c.sessions_of(raising.iter().copied());
                        evidence.insert("sessions".into(), sessions.len().into());
                        if let Some(s) = c.session_of(wi) {
                            evidence.insert("worst_session".into(), s.to_string().into());
                        }
                        format!(
                            "{} sessions toward {server}: {}",
                            sessions.len(),
                            worst.summary_with(media)
                        )
                    }
                    None => worst.summary_with(media),
                };
                (ids, summary, evidence)
            };
            let alert = match self.active.get_mut(&key) {
                Some(a) => {
                    a.last_true_ns = now;
                    a.session_has_healthy_flow = healthy;
                    let made = worst.level >= Level::Warning;
                    if made {
                        let (ids, summary, evidence) = shown();
                        a.summary = summary;
                        a.evidence = evidence;
                        a.client = flow.client().to_string();
                        a.server = flow.server().to_string();
                        a.flows = ids.len();
                        a.flow_ids = ids.into();
                        a.worst = Some(FlowId::of(flow));
                    }
                    if worst.level > a.severity {
                        a.severity = worst.level;
                        a.changed_ns = now;
                        out.push(Transition {
                            change: Change::Escalated,
                            ts_ns: now,
                            alert: a.clone(),
                        });
                    }
                    made.then_some(a.id)
                }
                None if worst.level >= Level::Warning => {
                    let (ids, summary, evidence) = shown();
                    let a = Alert {
                        id: self.next_id,
                        kind: key.kind,
                        severity: worst.level,
                        direction: key.dir.map(rules::dir_name),
                        session: key.scope,
                        client: flow.client().to_string(),
                        server: flow.server().to_string(),
                        flows: ids.len(),
                        since_ns: now,
                        changed_ns: now,
                        cleared_ns: None,
                        summary,
                        evidence,
                        session_has_healthy_flow: healthy,
                        flow_ids: ids.into(),
                        worst: Some(FlowId::of(flow)),
                        last_true_ns: now,
                    };
                    self.next_id += 1;
                    out.push(Transition {
                        change: Change::Raised,
                        ts_ns: now,
                        alert: a.clone(),
                    });
                    let id = a.id;
                    self.active.insert(key, a);
                    Some(id)
                }
                None => None,
            };
            if let Some(id) = alert {
                self.made
                    .insert(id, raising.iter().map(|&r| r as u32).collect());
            }
        }
        self.clear(taken_over, working, ns(cfg.clear_after_s), now, &mut out);
        out
    }

    /// Which active alerts each flow is part of: (row, alert id). The rows of an alert
    /// whose flows were listed this tick are those its findings came from; the flows of
    /// one kept from an earlier tick are looked up by id (their rows may have moved).
    pub(super) fn part_of(&self, table: &FlowTable) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for a in self.active.values() {
            match self.made.get(&a.id) {
                Some(rows) => out.extend(rows.iter().map(|&r| (r, a.id))),
                None => out.extend(
                    a.flow_ids
                        .iter()
                        .filter_map(|id| table.find(id))
                        .map(|r| (r, a.id)),
                ),
            }
        }
        out
    }

    /// Clears the alerts no finding held for `clear_after` and those a roll-up took over
    /// (`taken_over`: the key and the roll-up it went into).
    fn clear(
        &mut self,
        taken_over: Vec<(AlertKey, Scope)>,
        working: &HashMap<SessionId, bool>,
        clear_after: u64,
        now: u64,
        out: &mut Vec<Transition>,
    ) {
        let mut done: Vec<(AlertKey, Option<Scope>)> = self
            .active
            .iter()
            .filter(|(_, a)| {
                now.saturating_sub(a.last_true_ns) >= clear_after && a.last_true_ns != now
            })
            .map(|(k, _)| (*k, None))
            .collect();
        done.extend(taken_over.into_iter().map(|(k, into)| (k, Some(into))));
        done.sort_unstable();
        done.dedup_by_key(|(k, _)| *k);
        for (key, into) in done {
            let Some(mut a) = self.active.remove(&key) else {
                continue;
            };
            a.cleared_ns = Some(now);
            a.changed_ns = now;
            if let Some(s) = key.session() {
                a.session_has_healthy_flow = working.get(&s).copied().unwrap_or(false);
            }
            if let Some(into) = into {
                a.evidence
                    .insert("rolled_up_into".into(), into.to_string().into());
            }
            out.push(Transition {
                change: Change::Cleared,
                ts_ns: now,
                alert: a.clone(),
            });
            if self.cleared.len() == RECENT_CLEARED {
                self.cleared.pop_front();
            }
            self.cleared.push_back(a);
        }
    }

    /// Active alerts (worst first), then the recently cleared (newest first).
    pub(super) fn alerts(&self) -> Vec<Alert> {
        let mut active: Vec<Alert> = self.active.values().cloned().collect();
        active.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.since_ns.cmp(&b.since_ns))
        });
        active.extend(self.cleared.iter().rev().cloned());
        active
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{by_alert, AlertKey, Filed};
    use crate::{
        alerts::rules::{Finding, Found},
        model::{Kind, Level, Scope, SessionId},
    };

    fn filed(host: u8, kind: bool, dir: Option<usize>, row: usize) -> Filed {
        let kind = if kind {
            Kind::Reset
        } else {
            Kind::HandshakeFailure
        };
        Filed {
            key: AlertKey {
                scope: Scope::Session(SessionId {
                    remote: [10, 0, 0, host].into(),
                    n: 1,
                }),
                kind,
                dir,
            },
            row,
            finding: Finding {
                kind,
                dir,
                level: Level::Warning,
                found: Found::Reset {
                    rsts: 1,
                    suspect_injected: 0,
                    ttl_base: 64,
                },
            },
        }
    }

    proptest! {
        /// The integer sort puts findings in the order sorting them by (key, row) does,
        /// stable, and names the distinct keys in that order.
        #[test]
        fn by_alert_orders_as_sorting_by_key_and_row(
            raw in proptest::collection::vec((0u8..4, any::<bool>(), 0usize..3, 0usize..50), 0..200)
        ) {
            let findings: Vec<Filed> = raw
                .iter()
                .map(|&(h, k, d, r)| filed(h, k, [None, Some(0), Some(1)][d], r))
                .collect();
            let (keys, order) = by_alert(&findings);
            let mut naive: Vec<usize> = (0..findings.len()).collect();
            naive.sort_by_key(|&i| (findings[i].key, findings[i].row));
            let got: Vec<usize> = order.iter().map(|&(_, _, i)| i as usize).collect();
            prop_assert_eq!(got, naive.clone());
            let mut distinct: Vec<AlertKey> = naive.iter().map(|&i| findings[i].key).collect();
            distinct.dedup();
            prop_assert_eq!(keys.clone(), distinct);
            for &(place, _, i) in &order {
                prop_assert_eq!(keys[place as usize], findings[i as usize].key);
            }
        }
    }
}
