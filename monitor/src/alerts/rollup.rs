//! Alert storms roll up: when more sessions than `sessions.rollup_above` fail the same way
//! (kind and direction) toward one server (a scan, a flood, a firewall rule killing every
//! new connection), their findings become those of one alert about that server, so the
//! number of live alerts stays bounded however many clients there are. A session failing
//! another way, or toward another server, keeps its own alert.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use super::lifecycle::{AlertKey, Findings};
use crate::model::{Alert, FlowRecord, Level, Scope, SessionId};

/// Which session each flow of a roll-up belongs to, this tick.
#[derive(Debug, Default)]
pub(super) struct Covered {
    /// (row, session), ascending by row.
    rows: Vec<(usize, SessionId)>,
}

impl Covered {
    pub fn session_of(&self, row: usize) -> Option<SessionId> {
        let k = self.rows.binary_search_by_key(&row, |(r, _)| *r).ok()?;
        Some(self.rows[k].1)
    }

    /// The distinct sessions of `rows` (rows of this roll-up).
    pub fn sessions_of(&self, rows: impl Iterator<Item = usize>) -> Vec<SessionId> {
        let mut s: Vec<SessionId> = rows.filter_map(|r| self.session_of(r)).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// Every session folded in, whatever its level.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.rows.iter().map(|(_, s)| *s)
    }
}

/// The roll-up key of a session's finding toward `server`.
fn server_key(key: &AlertKey, server: std::net::SocketAddr) -> AlertKey {
    AlertKey {
        scope: Scope::Server(server),
        kind: key.kind,
        dir: key.dir,
    }
}

/// Moves the findings of sessions failing the same way toward one server under one
/// roll-up key, when more than `above` sessions fail so (a warning or worse) or a roll-up of
/// theirs is still active (so a fading storm does not split back into one alert per
/// session). Returns, per roll-up key, which session each of its flows belongs to.
pub(super) fn fold(
    findings: &mut Findings,
    flows: &[FlowRecord],
    above: usize,
    active: &BTreeMap<AlertKey, Alert>,
) -> BTreeMap<AlertKey, Covered> {
    let mut failing: HashMap<AlertKey, Vec<SessionId>> = HashMap::default();
    for (key, list) in findings.iter() {
        let Scope::Session(s) = key.scope else {
            continue;
        };
        for (row, _) in list.iter().filter(|(_, x)| x.level >= Level::Warning) {
            let sessions = failing
                .entry(server_key(key, flows[*row].server()))
                .or_default();
            if sessions.last() != Some(&s) {
                sessions.push(s);
            }
        }
    }
    let mut folds: HashSet<AlertKey> = failing
        .into_iter()
        .filter_map(|(k, mut v)| {
            v.sort_unstable();
            v.dedup();
            (v.len() > above).then_some(k)
        })
        .collect();
    folds.extend(
        active
            .keys()
            .filter(|k| matches!(k.scope, Scope::Server(_)))
            .copied(),
    );
    let mut covered: BTreeMap<AlertKey, Covered> = BTreeMap::new();
    if folds.is_empty() {
        return covered;
    }
    let mut rolled: Findings = BTreeMap::new();
    for (key, list) in std::mem::take(findings) {
        let Scope::Session(s) = key.scope else {
            continue;
        };
        let mut kept = Vec::new();
        for (row, x) in list {
            let to = server_key(&key, flows[row].server());
            if folds.contains(&to) {
                covered.entry(to).or_default().rows.push((row, s));
                rolled.entry(to).or_default().push((row, x));
            } else {
                kept.push((row, x));
            }
        }
        if !kept.is_empty() {
            findings.insert(key, kept);
        }
    }
    for c in covered.values_mut() {
        c.rows.sort_unstable_by_key(|(r, _)| *r);
    }
    findings.extend(rolled);
    covered
}

/// The session alerts a roll-up took over this tick: their session's findings of that kind
/// and direction were folded in and none are left of their own. They clear at once, into
/// the roll-up, rather than linger beside it.
pub(super) fn taken_over(
    covered: &BTreeMap<AlertKey, Covered>,
    findings: &Findings,
    active: &BTreeMap<AlertKey, Alert>,
) -> Vec<(AlertKey, Scope)> {
    let mut folded: HashMap<AlertKey, Scope> = HashMap::default();
    for (k, c) in covered {
        for s in c.sessions() {
            let key = AlertKey {
                scope: Scope::Session(s),
                kind: k.kind,
                dir: k.dir,
            };
            folded.insert(key, k.scope);
        }
    }
    active
        .keys()
        .filter(|k| !findings.contains_key(k))
        .filter_map(|k| folded.get(k).map(|into| (*k, *into)))
        .collect()
}
