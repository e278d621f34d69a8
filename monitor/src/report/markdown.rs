//! The report as Markdown, for a ticket.

use std::fmt::Write;

use super::content::{AlertSummary, Report};
use crate::format::duration;

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// One alert in plain sentences, with its evidence values named and its capture.
fn explained(m: &mut String, a: &AlertSummary) {
    let x = &a.explained;
    let _ = writeln!(
        m,
        "### Alert #{}: {} ({}), {} > {}\n\n- **Observed:** {}\n- **A healthy flow:** {}\n- **What it means:** {}",
        a.id, a.kind, a.severity, a.client, a.server, x.observed, x.healthy, x.meaning
    );
    if !x.values.is_empty() {
        let values: Vec<String> = x.values.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(m, "- **Evidence:** {}", values.join("; "));
    }
    if let Some(c) = &a.capture {
        let _ = writeln!(m, "- **Evidence capture:** `{c}`");
    }
    let _ = writeln!(m);
}

pub fn render(r: &Report) -> String {
    let mut m = String::new();
    let crit = r.alerts.iter().filter(|a| a.severity == "critical").count();
    let _ = writeln!(m, "# {}\n", r.title);
    let _ = writeln!(
        m,
        "- duration: {}\n- interfaces: {}\n- ports: {}\n- flows: {}, sessions: {}\n- alerts: {} ({crit} critical)\n",
        duration((r.duration_s * 1e9) as u64),
        if r.interfaces.is_empty() { "-".into() } else { r.interfaces.join(", ") },
        r.ports,
        r.flows,
        r.sessions,
        r.alerts.len()
    );
    if r.truncated_tail {
        let _ = writeln!(
            m,
            "_The recording ends in a cut line (the monitor was killed); it was left out._\n"
        );
    }
    let _ = writeln!(m, "## Alerts\n");
    if r.alerts.is_empty() {
        let _ = writeln!(m, "None: every session stayed healthy.\n");
    } else {
        let _ = writeln!(m, "| raised | cleared | severity | kind | session | flow | what |\n|---|---|---|---|---|---|---|");
        for a in &r.alerts {
            let _ = writeln!(
                m,
                "| {:.1} s | {} | {} | {}{} | {}{} | {} > {} | {} |",
                a.raised_s,
                a.cleared_s.map_or("active".into(), |c| format!("{c:.1} s")),
                a.severity,
                a.kind,
                a.direction
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                a.session,
                if a.session_has_healthy_flow {
                    " (has a healthy flow)"
                } else {
                    ""
                },
                a.client,
                a.server,
                cell(&a.summary)
            );
        }
        let _ = writeln!(m);
        for a in &r.alerts {
            explained(&mut m, a);
        }
    }
    if !r.media.is_empty() {
        let counts: Vec<String> = r
            .media_counts
            .iter()
            .map(|(v, n)| format!("{n} {v}"))
            .collect();
        let _ = writeln!(
            m,
            "## Media\n\nVerdicts on the media flows' first bytes: {}.\n\n| client | server | client sent | server replied | verdict | STUN answered |\n|---|---|---|---|---|---|",
            counts.join(", ")
        );
        for f in &r.media {
            let stun = f.stun.map_or("-".into(), |(a, n)| format!("{a}/{n}"));
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {stun} |",
                f.client, f.server, f.client_sent, f.server_replied, f.verdict
            );
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "## Worst flows\n\n| client | server | handshake | retransmits c>s / s>c | peak retx rate | resets (suspect) | history |\n|---|---|---|---|---|---|---|");
    for f in &r.worst {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} / {} | {:.1} % | {} ({}) | `{}` |",
            f.client,
            f.server,
            f.outcome,
            f.retransmits[0],
            f.retransmits[1],
            f.peak_retx * 100.0,
            f.resets,
            f.suspect_resets,
            f.history
        );
    }
    m
}
