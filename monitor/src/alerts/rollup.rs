//! Alert storms roll up: when more sessions than `sessions.rollup_above` fail the same way
//! (kind and direction) toward one server (a scan, a flood, a firewall rule killing every
//! new connection), their findings become those of one alert about that server, so the
//! number of live alerts stays bounded however many clients there are. A session failing
//! another way, or toward another server, keeps its own alert.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use super::lifecycle::{AlertKey, Findings, KeyNumbers};
use crate::{
    model::{Alert, Level, Scope, SessionId},
    table::FlowTable,
};

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
///
/// One pass numbers each finding's roll-up key (a scan's findings all share one, so the
/// key of the finding before is tried first) and counts distinct failing sessions only up
/// to the first over `above`; a second refiles the findings of the keys that roll up.
pub(super) fn fold(
    findings: &mut Findings,
    flows: &FlowTable,
    above: usize,
    active: &BTreeMap<AlertKey, Alert>,
) -> BTreeMap<AlertKey, Covered> {
    const NONE: u32 = u32::MAX;
    let mut numbers = KeyNumbers::default();
    let mut failing: Vec<usize> = Vec::new();
    let mut counted: HashSet<(u32, SessionId)> = HashSet::default();
    let mut group: Vec<u32> = Vec::with_capacity(findings.len());
    for f in findings.iter() {
        let Scope::Session(s) = f.key.scope else {
            group.push(NONE);
            continue;
        };
        let g = numbers.number(server_key(&f.key, flows[f.row].server()));
        failing.resize(numbers.keys.len(), 0);
        group.push(g);
        let n = &mut failing[g as usize];
        if f.finding.level >= Level::Warning && *n <= above && counted.insert((g, s)) {
            *n += 1;
        }
    }
    drop(counted);
    let keys = numbers.keys;
    let folds: Vec<bool> = keys
        .iter()
        .zip(&failing)
        .map(|(k, &n)| n > above || active.contains_key(k))
        .collect();
    let mut covered: BTreeMap<AlertKey, Covered> = BTreeMap::new();
    if !folds.contains(&true) {
        return covered;
    }
    let mut rows: Vec<Vec<(usize, SessionId)>> = vec![Vec::new(); keys.len()];
    for (f, &g) in findings.iter_mut().zip(&group) {
        let Scope::Session(s) = f.key.scope else {
            continue;
        };
        if g != NONE && folds[g as usize] {
            rows[g as usize].push((f.row, s));
            f.key = keys[g as usize];
        }
    }
    for (key, mut rows) in keys.into_iter().zip(rows) {
        if !rows.is_empty() {
            rows.sort_unstable_by_key(|(r, _)| *r);
            covered.insert(key, Covered { rows });
        }
    }
    covered
}

/// The session alerts a roll-up took over this tick: their session's findings of that kind
/// and direction were folded in and none are left of their own (`keys`: the keys findings
/// were filed under, sorted). They clear at once, into the roll-up, rather than linger
/// beside it.
pub(super) fn taken_over(
    covered: &BTreeMap<AlertKey, Covered>,
    keys: &[AlertKey],
    active: &BTreeMap<AlertKey, Alert>,
) -> Vec<(AlertKey, Scope)> {
    let mut left: HashMap<AlertKey, Option<Scope>> = active
        .keys()
        .filter(|k| matches!(k.scope, Scope::Session(_)))
        .filter(|k| keys.binary_search(k).is_err())
        .map(|k| (*k, None))
        .collect();
    if left.is_empty() {
        return Vec::new();
    }
    for (k, c) in covered {
        for s in c.sessions() {
            let key = AlertKey {
                scope: Scope::Session(s),
                kind: k.kind,
                dir: k.dir,
            };
            if let Some(into) = left.get_mut(&key) {
                *into = Some(k.scope);
            }
        }
    }
    let mut out: Vec<(AlertKey, Scope)> = left
        .into_iter()
        .filter_map(|(k, into)| into.map(|into| (k, into)))
        .collect();
    out.sort_unstable();
    out
}
