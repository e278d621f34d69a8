//! What a report says, computed from a recording: the session's summary, per-flow time
//! series, the worst flows and each alert with its evidence. Rendering (HTML, Markdown,
//! charts) reads only this.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::explain::{explain, Explanation};
use crate::record::reader::Recording;

/// One flow direction over time: (seconds from the start, value).
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn peak(&self) -> f64 {
        self.points.iter().map(|p| p.1).fold(0.0, f64::max)
    }
}

#[derive(Clone, Debug, Default)]
pub struct FlowSummary {
    pub client: String,
    pub server: String,
    pub outcome: String,
    pub packets: [u64; 2],
    pub retransmits: [u64; 2],
    pub resets: u64,
    pub suspect_resets: u64,
    /// Highest retransmission share seen over the alert window, either direction.
    pub peak_retx: f64,
    pub history: String,
    pub alerts: usize,
}

/// A media flow's verdict on its first bytes, as the recording's last line of it says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaFlow {
    pub client: String,
    pub server: String,
    pub client_sent: String,
    pub server_replied: String,
    pub verdict: String,
    /// `answered/requests` of its STUN checks, when it made some.
    pub stun: Option<(u64, u64)>,
}

#[derive(Clone, Debug, Default)]
pub struct AlertSummary {
    pub id: u64,
    pub kind: String,
    /// The highest severity it reached.
    pub severity: String,
    pub direction: Option<String>,
    pub session: String,
    pub client: String,
    pub server: String,
    /// Seconds from the start.
    pub raised_s: f64,
    pub cleared_s: Option<f64>,
    pub summary: String,
    pub evidence: Value,
    pub session_has_healthy_flow: bool,
    /// The evidence capture a transition named (`"capture"`), as recorded or, in a bundle,
    /// as the archive holds it.
    pub capture: Option<String>,
    /// The alert in plain sentences, from its last evidence.
    pub explained: Explanation,
    /// The ladder diagram of its flow's key packets (SVG), when its capture could be read.
    pub ladder: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub title: String,
    pub source: String,
    pub host: String,
    pub interfaces: Vec<String>,
    pub ports: String,
    pub start_ns: u64,
    pub duration_s: f64,
    pub flows: usize,
    pub sessions: usize,
    pub truncated_tail: bool,
    pub throughput: Vec<Series>,
    pub retx_rate: Vec<Series>,
    pub worst: Vec<FlowSummary>,
    pub alerts: Vec<AlertSummary>,
    /// Flows whose first bytes said something (media verdict known), worst first: what
    /// was not `ok`, then the rest (at most `WORST` of the `ok` ones).
    pub media: Vec<MediaFlow>,
    /// How many media flows had each verdict.
    pub media_counts: BTreeMap<String, usize>,
}

/// Series drawn per chart: the busiest (or worst) few stay readable.
const SERIES: usize = 8;
/// Rows of the worst-flows table.
const WORST: usize = 10;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The flow's media verdict from its `media` object, if its first bytes said something.
fn media_flow(client: &str, server: &str, m: &Value) -> Option<MediaFlow> {
    let name = |k: &str| m[k].as_str().unwrap_or("-").to_string();
    let verdict = m["verdict"].as_str()?.to_string();
    let stun = m["stun"]
        .as_object()
        .map(|s| (u(&s["responses"]), u(&s["requests"])))
        .filter(|(_, n)| *n > 0);
    Some(MediaFlow {
        client: client.to_string(),
        server: server.to_string(),
        client_sent: name("client_sent"),
        server_replied: name("server_replied"),
        verdict,
        stun,
    })
}

impl Report {
    pub fn from(rec: &Recording) -> Self {
        let h = &rec.header;
        let (t0, t1) = rec.span().unwrap_or((0, 0));
        let rel = |ns: u64| ns.saturating_sub(t0) as f64 / 1e9;
        let mut throughput = Vec::new();
        let mut retx = Vec::new();
        let mut flows = Vec::new();
        let mut sessions = BTreeSet::new();
        let mut alerts_per_flow: BTreeMap<(String, String), usize> = BTreeMap::new();
        for a in rec.alerts.iter().filter(|a| a["alert"] == "raised") {
            let k = (
                a["client"].as_str().unwrap_or_default().to_string(),
                a["server"].as_str().unwrap_or_default().to_string(),
            );
            *alerts_per_flow.entry(k).or_default() += 1;
        }
        let mut media = Vec::new();
        for samples in rec.flows.values() {
            let Some(last) = samples.last() else { continue };
            let client = last["client"].as_str().unwrap_or_default().to_string();
            let server = last["server"].as_str().unwrap_or_default().to_string();
            media.extend(media_flow(&client, &server, &last["media"]));
            let mut peak = 0.0f64;
            for (d, name) in [(0usize, "c2s"), (1, "s2c")] {
                let label = format!("{client} > {server} {name}");
                let mut th = Series {
                    label: label.clone(),
                    points: Vec::new(),
                };
                let mut rr = Series {
                    label,
                    points: Vec::new(),
                };
                for s in samples {
                    let t = rel(u(&s["ts_ns"]));
                    if let Some(v) = s["health"]["throughput_bps"][d].as_f64() {
                        th.points.push((t, v));
                    }
                    if let Some(v) = s["health"]["retx_rate"][d].as_f64() {
                        rr.points.push((t, v * 100.0));
                        peak = peak.max(v);
                    }
                    if let Some(sess) = s["health"]["session"].as_str() {
                        sessions.insert(sess.to_string());
                    }
                }
                throughput.push(th);
                retx.push(rr);
            }
            let dir = |name: &str, field: &str| u(&last[name][field]);
            flows.push(FlowSummary {
                outcome: last["handshake"]["outcome"]
                    .as_str()
                    .unwrap_or("pending")
                    .to_string(),
                packets: [dir("c2s", "packets"), dir("s2c", "packets")],
                retransmits: [dir("c2s", "retransmits"), dir("s2c", "retransmits")],
                resets: dir("c2s", "rsts") + dir("s2c", "rsts"),
                suspect_resets: dir("c2s", "suspect_injected_rsts")
                    + dir("s2c", "suspect_injected_rsts"),
                peak_retx: peak,
                history: last["health"]["history"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                alerts: alerts_per_flow
                    .get(&(client.clone(), server.clone()))
                    .copied()
                    .unwrap_or(0),
                client,
                server,
            });
        }
        let flow_count = flows.len();
        flows.sort_by(|a, b| {
            (b.alerts > 0)
                .cmp(&(a.alerts > 0))
                .then(b.peak_retx.total_cmp(&a.peak_retx))
                .then(
                    (b.resets + b.retransmits[0] + b.retransmits[1])
                        .cmp(&(a.resets + a.retransmits[0] + a.retransmits[1])),
                )
        });
        flows.truncate(WORST);
        let keep = |mut v: Vec<Series>| {
            v.retain(|s| s.peak() > 0.0);
            v.sort_by(|a, b| b.peak().total_cmp(&a.peak()));
            v.truncate(SERIES);
            v
        };
        let mut alerts: BTreeMap<u64, AlertSummary> = BTreeMap::new();
        for t in &rec.alerts {
            let id = u(&t["id"]);
            let ts = rel(u(&t["ts_ns"]));
            let e = alerts.entry(id).or_insert_with(|| AlertSummary {
                id,
                kind: t["kind"].as_str().unwrap_or_default().into(),
                severity: t["severity"].as_str().unwrap_or_default().into(),
                direction: t["direction"].as_str().map(String::from),
                session: t["session"].as_str().unwrap_or_default().into(),
                client: t["client"].as_str().unwrap_or_default().into(),
                server: t["server"].as_str().unwrap_or_default().into(),
                raised_s: ts,
                cleared_s: None,
                summary: t["summary"].as_str().unwrap_or_default().into(),
                evidence: t["evidence"].clone(),
                session_has_healthy_flow: t["session_has_healthy_flow"].as_bool().unwrap_or(false),
                capture: None,
                explained: Explanation::default(),
                ladder: None,
            });
            if let Some(c) = t["capture"].as_str() {
                e.capture = Some(c.to_string());
            }
            match t["alert"].as_str() {
                Some("escalated") => {
                    e.severity = t["severity"].as_str().unwrap_or_default().into();
                    e.summary = t["summary"].as_str().unwrap_or_default().into();
                    e.evidence = t["evidence"].clone();
                }
                Some("cleared") => e.cleared_s = Some(ts),
                _ => {}
            }
        }
        for a in alerts.values_mut() {
            a.explained = explain(&a.kind, a.direction.as_deref(), &a.evidence);
        }
        let mut media_counts: BTreeMap<String, usize> = BTreeMap::new();
        for m in &media {
            *media_counts.entry(m.verdict.clone()).or_default() += 1;
        }
        media.sort_by_key(|m| (m.verdict == "ok", m.client.clone(), m.server.clone()));
        let bad = media.iter().filter(|m| m.verdict != "ok").count();
        media.truncate(bad + WORST);
        let source = h["source"].as_str().unwrap_or_default().to_string();
        Report {
            title: match h["capture"].as_str() {
                Some(c) => format!("TCP health report: capture {c}"),
                None => format!(
                    "TCP health report: {} on {}",
                    source,
                    h["host"].as_str().unwrap_or("?")
                ),
            },
            source,
            host: h["host"].as_str().unwrap_or_default().into(),
            interfaces: h["interfaces"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            ports: h["ports"].as_str().unwrap_or_default().into(),
            start_ns: t0,
            duration_s: t1.saturating_sub(t0) as f64 / 1e9,
            flows: flow_count,
            sessions: sessions.len(),
            truncated_tail: rec.truncated_tail,
            media,
            media_counts,
            throughput: keep(throughput),
            retx_rate: keep(retx),
            worst: flows,
            alerts: alerts.into_values().collect(),
        }
    }
}
