//! The flow table's rows: which flows are shown (filter), in which order (sort), and the
//! text of each cell. Pure functions of a snapshot and the UI state, tested without a
//! terminal.

use crate::model::FlowStats;
use std::cmp::Ordering;

use monitor_common::flow::{seen, C2S, S2C};

use crate::{
    format::{bytes, duration},
    media::verdict::{ClientSent, Media, Verdict},
    model::{FlowHealth, FlowId, FlowRecord, Level},
    snapshot::Snapshot,
    table::FlowTable,
};

/// The table's columns, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Health,
    Client,
    Server,
    Age,
    State,
    Handshake,
    ThroughputC2S,
    ThroughputS2C,
    RetxC2S,
    RetxS2C,
    Resets,
    ZeroWindow,
    Tls,
    Media,
}

impl Column {
    pub const ALL: [Column; 14] = [
        Column::Health,
        Column::Client,
        Column::Server,
        Column::Age,
        Column::State,
        Column::Handshake,
        Column::ThroughputC2S,
        Column::ThroughputS2C,
        Column::RetxC2S,
        Column::RetxS2C,
        Column::Resets,
        Column::ZeroWindow,
        Column::Tls,
        Column::Media,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Health => "HEALTH",
            Column::Client => "CLIENT",
            Column::Server => "SERVER",
            Column::Age => "AGE",
            Column::State => "STATE",
            Column::Handshake => "HANDSHAKE",
            Column::ThroughputC2S => "B/s C>S",
            Column::ThroughputS2C => "B/s S>C",
            Column::RetxC2S => "RTX C>S",
            Column::RetxS2C => "RTX S>C",
            Column::Resets => "RST",
            Column::ZeroWindow => "ZWIN",
            Column::Tls => "TLS",
            Column::Media => "MEDIA",
        }
    }

    /// Width of the column's cells.
    pub fn width(self) -> u16 {
        match self {
            Column::Health => 6,
            Column::Client | Column::Server => 21,
            Column::Age => 6,
            Column::State => 7,
            Column::Handshake => 13,
            Column::ThroughputC2S | Column::ThroughputS2C => 7,
            Column::RetxC2S | Column::RetxS2C => 7,
            Column::Resets => 4,
            Column::ZeroWindow => 5,
            Column::Tls => 5,
            Column::Media => 16,
        }
    }

    /// Which columns survive on a narrow terminal, most important first.
    const PRIORITY: [Column; 14] = [
        Column::Health,
        Column::Client,
        Column::Server,
        Column::RetxS2C,
        Column::RetxC2S,
        Column::Resets,
        Column::Media,
        Column::Handshake,
        Column::ThroughputS2C,
        Column::ThroughputC2S,
        Column::State,
        Column::ZeroWindow,
        Column::Tls,
        Column::Age,
    ];

    /// The columns that fit in `width` cells (one space between columns), display order.
    pub fn fitting(width: u16) -> Vec<Column> {
        let mut used = 0u16;
        let mut keep = Vec::new();
        for c in Self::PRIORITY {
            let need = c.width() + if keep.is_empty() { 0 } else { 1 };
            if used + need <= width {
                used += need;
                keep.push(c);
            }
        }
        Self::ALL.into_iter().filter(|c| keep.contains(c)).collect()
    }
}

/// What a row needs from the flow table.
pub struct Row<'a> {
    /// The flow's row in the table.
    pub index: u32,
    pub flow: &'a FlowRecord,
    /// `None` where no alert engine judged the flows.
    pub health: Option<&'a FlowHealth>,
    /// What its first payload bytes say, once something is known.
    pub media: Option<&'a Media>,
}

impl<'a> Row<'a> {
    /// Row `index` of the table, if it holds a flow.
    pub fn at(snap: &Snapshot, table: &'a FlowTable, index: u32) -> Option<Self> {
        table.row(index).map(|r| Self {
            index,
            flow: &r.flow,
            health: snap.judged.then_some(&r.health),
            media: r.media.as_deref(),
        })
    }

    pub fn id(&self) -> FlowId {
        FlowId::of(self.flow)
    }

    pub fn level(&self) -> Option<Level> {
        self.health.and_then(|h| h.level)
    }

    pub fn cell(&self, c: Column, snap: &Snapshot) -> String {
        let st = &self.flow.state;
        let h = self.health;
        match c {
            Column::Health => match self.level() {
                Some(Level::Critical) => "CRIT!!".into(),
                Some(Level::Warning) => "WARN!".into(),
                _ => "ok".into(),
            },
            Column::Client => self.flow.client().to_string(),
            Column::Server => self.flow.server().to_string(),
            Column::Age => duration(snap.now_ns.saturating_sub(st.first_seen_ns)),
            Column::State => state(st).into(),
            Column::Handshake => {
                let o = snap.outcome(st).unwrap_or("pending");
                if st.rtt_ns != 0 {
                    format!("{o} {}", millis(st.rtt_ns))
                } else {
                    o.into()
                }
            }
            Column::ThroughputC2S => h.map_or("-".into(), |h| bytes(h.throughput[C2S])),
            Column::ThroughputS2C => h.map_or("-".into(), |h| bytes(h.throughput[S2C])),
            Column::RetxC2S => percent(h.and_then(|h| h.retx_rate[C2S].get())),
            Column::RetxS2C => percent(h.and_then(|h| h.retx_rate[S2C].get())),
            Column::Resets => {
                let n = st.dir[C2S].rsts + st.dir[S2C].rsts;
                let suspect = st.anomalies(C2S).suspect_injected_rsts
                    + st.anomalies(S2C).suspect_injected_rsts;
                match (n, suspect) {
                    (0, _) => "-".into(),
                    (n, 0) => n.to_string(),
                    (n, _) => format!("{n}!"),
                }
            }
            Column::ZeroWindow => {
                let t = h.map_or(0, |h| h.zero_window_ns[C2S] + h.zero_window_ns[S2C]);
                if t == 0 {
                    "-".into()
                } else {
                    duration(t)
                }
            }
            Column::Tls => match (
                st.seen & seen::CLIENT_HELLO != 0,
                st.seen & seen::SERVER_HELLO != 0,
            ) {
                (true, true) => "CH+SH".into(),
                (true, false) => "CH".into(),
                (false, true) => "SH".into(),
                (false, false) => "-".into(),
            },
            Column::Media => media_cell(self.media),
        }
    }

    /// Orders two rows by a column (numbers as numbers).
    fn compare(&self, other: &Row, c: Column, snap: &Snapshot) -> Ordering {
        let num = |r: &Row| -> f64 {
            let st = &r.flow.state;
            let h = r.health;
            match c {
                Column::Health => r.level().map_or(0.0, |l| 1.0 + l as u8 as f64),
                Column::Age => snap.now_ns.saturating_sub(st.first_seen_ns) as f64,
                Column::Handshake => st.rtt_ns as f64,
                Column::ThroughputC2S => h.map_or(0.0, |h| h.throughput[C2S]),
                Column::ThroughputS2C => h.map_or(0.0, |h| h.throughput[S2C]),
                Column::RetxC2S => h.and_then(|h| h.retx_rate[C2S].get()).unwrap_or(-1.0),
                Column::RetxS2C => h.and_then(|h| h.retx_rate[S2C].get()).unwrap_or(-1.0),
                Column::Resets => (st.dir[C2S].rsts + st.dir[S2C].rsts) as f64,
                Column::ZeroWindow => h.map_or(0.0, |h| {
                    (h.zero_window_ns[C2S] + h.zero_window_ns[S2C]) as f64
                }),
                _ => 0.0,
            }
        };
        match c {
            Column::Client => self.flow.client().cmp(&other.flow.client()),
            Column::Server => self.flow.server().cmp(&other.flow.server()),
            Column::State | Column::Tls | Column::Media => {
                self.cell(c, snap).cmp(&other.cell(c, snap))
            }
            _ => num(self).total_cmp(&num(other)),
        }
    }
}

/// The MEDIA cell: what the client sent first and the verdict (`pTLS ok`,
/// `pTLS INTERCEPTED`), or for STUN the checks answered of those sent (`STUN 3/10`); a
/// verdict that is wrong in capitals.
pub fn media_cell(m: Option<&Media>) -> String {
    let Some(m) = m else {
        return "-".into();
    };
    let stun = m
        .stun
        .as_ref()
        .filter(|c| c.requests > 0)
        .map(|c| format!("STUN {}/{}", c.responses, c.requests));
    let verdict = match m.verdict {
        Some(Verdict::Ok) => "ok",
        Some(Verdict::Intercepted) => "INTERCEPTED",
        Some(Verdict::Rejected) => "REJECTED",
        Some(Verdict::NoReply) => "NO REPLY",
        None => "?",
    };
    let sent = match m.client_sent {
        Some(ClientSent::PseudoTls) => "pTLS",
        Some(ClientSent::Tls) => "TLS",
        Some(ClientSent::MsTurn) => "MS-TURN",
        Some(ClientSent::Stun) => return stun.unwrap_or_else(|| "STUN".into()),
        Some(ClientSent::Other) => return "other".into(),
        None => return stun.unwrap_or_else(|| "-".into()),
    };
    match stun {
        Some(s) if m.verdict == Some(Verdict::Ok) => format!("{sent} ok {s}"),
        _ => format!("{sent} {verdict}"),
    }
}

pub fn state(st: &FlowStats) -> &'static str {
    let (c, s) = (&st.dir[C2S], &st.dir[S2C]);
    let has = |b: u16| st.seen & b != 0;
    if c.rsts + s.rsts > 0 {
        "reset"
    } else if c.fins > 0 && s.fins > 0 {
        "closed"
    } else if c.fins + s.fins > 0 {
        "closing"
    } else if has(seen::ESTABLISHED) {
        "estab"
    } else if has(seen::MIDSTREAM) {
        "mid"
    } else if has(seen::SYNACK) {
        "syn-ack"
    } else {
        "syn"
    }
}

pub fn millis(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

pub fn percent(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) => format!("{:.1}%", r * 100.0),
    }
}

/// A parsed filter: words that must all match. `port:N` matches either port, `sev:warn`
/// and `sev:crit` a minimum health, anything else a substring of client, server, state
/// or the flow's alert kinds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub ports: Vec<u16>,
    pub min_level: Option<Level>,
    pub words: Vec<String>,
}

impl Filter {
    pub fn parse(text: &str) -> Self {
        let mut f = Filter::default();
        for w in text.split_whitespace() {
            let lw = w.to_ascii_lowercase();
            if let Some(p) = lw.strip_prefix("port:").and_then(|p| p.parse().ok()) {
                f.ports.push(p);
            } else if let Some(s) = lw.strip_prefix("sev:") {
                f.min_level = match s {
                    "crit" | "critical" => Some(Level::Critical),
                    _ => Some(Level::Warning),
                };
            } else {
                f.words.push(lw);
            }
        }
        f
    }

    fn matches(&self, r: &Row, snap: &Snapshot) -> bool {
        let (c, s) = (r.flow.client(), r.flow.server());
        if !self.ports.is_empty() && !self.ports.iter().any(|p| *p == c.port() || *p == s.port()) {
            return false;
        }
        if let Some(min) = self.min_level {
            if r.level().is_none_or(|l| l < min) {
                return false;
            }
        }
        if self.words.is_empty() {
            return true;
        }
        let kinds: Vec<&str> = r
            .health
            .map(|h| {
                h.alerts
                    .iter()
                    .filter_map(|id| snap.alerts.iter().find(|a| a.id == *id))
                    .map(|a| a.kind.name())
                    .collect()
            })
            .unwrap_or_default();
        let hay = format!(
            "{c} {s} {} {} {}",
            state(&r.flow.state),
            kinds.join(" "),
            media_cell(r.media).to_lowercase()
        );
        self.words.iter().all(|w| hay.contains(w.as_str()))
    }
}

/// The rows to show: filtered by `filter` and `min_level`, sorted by `sort`.
pub fn visible<'a>(
    snap: &Snapshot,
    table: &'a FlowTable,
    filter: &Filter,
    min_level: Option<Level>,
    sort: Column,
    descending: bool,
) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = matching(snap, table, filter, min_level).collect();
    rows.sort_by(|a, b| {
        let o = a.compare(b, sort, snap);
        let o = if descending { o.reverse() } else { o };
        // Ties keep the rows' order in the table: a flow keeps its row while it lives, so
        // the order is stable from tick to tick.
        o.then(a.index.cmp(&b.index))
    });
    rows
}

/// The rows `filter` and `min_level` let through.
fn matching<'a, 'b>(
    snap: &'b Snapshot,
    table: &'a FlowTable,
    filter: &'b Filter,
    min_level: Option<Level>,
) -> impl Iterator<Item = Row<'a>> + 'b
where
    'a: 'b,
{
    table
        .rows()
        .filter_map(|(i, _)| Row::at(snap, table, i))
        .filter(move |r| min_level.is_none_or(|m| r.level().is_some_and(|l| l >= m)))
        .filter(move |r| filter.matches(r, snap))
}

/// The worst flow: highest health level, then highest retransmission rate.
pub fn worst(snap: &Snapshot, table: &FlowTable) -> Option<FlowId> {
    // The maximum needs no sort (a million rows).
    let all = Filter::default();
    matching(snap, table, &all, None)
        .filter(|r| r.level().is_some())
        .max_by(|a, b| {
            a.compare(b, Column::Health, snap)
                .then_with(|| {
                    let rate = |r: &Row| {
                        r.health.map_or(0.0, |h| {
                            h.retx_rate[0]
                                .get()
                                .unwrap_or(0.0)
                                .max(h.retx_rate[1].get().unwrap_or(0.0))
                        })
                    };
                    rate(a).total_cmp(&rate(b))
                })
                .then(b.index.cmp(&a.index))
        })
        .map(|r| r.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_terminals_keep_the_important_columns() {
        let c80 = Column::fitting(78);
        assert!(c80.contains(&Column::Health) && c80.contains(&Column::Client));
        assert!(c80.contains(&Column::RetxS2C) && c80.contains(&Column::Resets));
        assert!(!c80.contains(&Column::Age), "{c80:?}");
        assert_eq!(Column::fitting(200).len(), Column::ALL.len());
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bytes(950.0), "950");
        assert_eq!(bytes(12_345.0), "12k");
        assert_eq!(bytes(1_500_000.0), "1.5M");
        assert_eq!(percent(Some(0.0512)), "5.1%");
        assert_eq!(percent(None), "-");
        assert_eq!(duration(1_500_000_000), "1.5s");
        assert_eq!(duration(125_000_000_000), "2m05s");
        assert_eq!(millis(420_000), "0.4ms");
    }

    #[test]
    fn the_media_cell_names_the_protocol_and_what_is_wrong() {
        use crate::media::stun::Counts;
        let m = |sent, verdict, stun: Option<(u64, u64)>| Media {
            client_sent: Some(sent),
            verdict,
            stun: stun.map(|(responses, requests)| Counts {
                requests,
                responses,
                unanswered: requests - responses,
                ..Counts::default()
            }),
            ..Media::default()
        };
        assert_eq!(media_cell(None), "-");
        let ok = m(ClientSent::PseudoTls, Some(Verdict::Ok), None);
        assert_eq!(media_cell(Some(&ok)), "pTLS ok");
        let bad = m(ClientSent::PseudoTls, Some(Verdict::Intercepted), None);
        assert_eq!(media_cell(Some(&bad)), "pTLS INTERCEPTED");
        let ice = m(ClientSent::Stun, Some(Verdict::Ok), Some((3, 10)));
        assert_eq!(media_cell(Some(&ice)), "STUN 3/10");
        let turn = m(ClientSent::PseudoTls, Some(Verdict::Ok), Some((1, 1)));
        assert_eq!(media_cell(Some(&turn)), "pTLS ok STUN 1/1");
    }

    #[test]
    fn filters_parse_ports_severity_and_words() {
        let f = Filter::parse("port:50001 sev:crit 10.0.0");
        assert_eq!(f.ports, vec![50001]);
        assert_eq!(f.min_level, Some(Level::Critical));
        assert_eq!(f.words, vec!["10.0.0".to_string()]);
    }
}
