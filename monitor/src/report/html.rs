//! The report as one self-contained HTML file: inline CSS and SVG, no scripts, no fetches.

use std::fmt::Write;

use super::{
    chart,
    content::{AlertSummary, Report},
};
use crate::format::{bytes, duration, esc};

fn utc(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let days = s / 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.critical{color:#c00;font-weight:bold}.warning{color:#b60}
.kv td:first-child{color:#666}code{font-size:.9em}.chart svg{max-width:100%;height:auto}
h3{font-size:1em;margin:1.4em 0 .4em}dl{margin:0 0 .6em}dt{color:#666;font-size:.85em}dd{margin:0 0 .4em 1em}
.evidence{margin-bottom:.6em}";

fn severity(a: &AlertSummary) -> String {
    let mark = if a.severity == "critical" {
        "CRIT!!"
    } else {
        "WARN!"
    };
    format!(
        "<span class=\"{}\">{mark} {}</span>",
        esc(&a.severity),
        esc(&a.severity)
    )
}

/// One alert in plain sentences, with its evidence values named and its capture.
fn explained(h: &mut String, a: &AlertSummary) {
    let x = &a.explained;
    let _ = writeln!(
        h,
        "<section class=\"alert\" id=\"alert-{}\"><h3>#{} {} {}: {} &gt; {}</h3><dl>\
         <dt>Observed</dt><dd>{}</dd><dt>A healthy flow</dt><dd>{}</dd><dt>What it means</dt><dd>{}</dd></dl>",
        a.id,
        a.id,
        severity(a),
        esc(&a.kind),
        esc(&a.client),
        esc(&a.server),
        esc(&x.observed),
        esc(&x.healthy),
        esc(&x.meaning)
    );
    if !x.values.is_empty() {
        h.push_str("<table class=\"kv evidence\">");
        for (k, v) in &x.values {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
        }
        h.push_str("</table>\n");
    }
    if let Some(l) = &a.ladder {
        h.push_str("<p>The flow's key packets, from the evidence capture (red: what a healthy flow does not do):</p>\n");
        h.push_str(l);
        h.push('\n');
    }
    if let Some(c) = &a.capture {
        let _ = writeln!(
            h,
            "<p>Evidence capture: <code class=\"capture\">{}</code> (opens in Wireshark)</p>",
            esc(c)
        );
    }
    h.push_str("</section>\n");
}

/// What the media flows' first bytes said: the verdicts counted, then the flows that were
/// not `ok` (and a few that were).
fn media_section(h: &mut String, r: &Report) {
    if r.media.is_empty() {
        return;
    }
    h.push_str("<h2>Media</h2>\n<p>What each media flow's first bytes said (the pseudo-TLS hello of MS-TURN has one genuine answer; anything else came from a device in the path).</p>\n<p>");
    let counts: Vec<String> = r
        .media_counts
        .iter()
        .map(|(v, n)| format!("{} {}", n, esc(v)))
        .collect();
    h.push_str(&counts.join(", "));
    h.push_str("</p>\n<table id=\"media\"><tr><th>client</th><th>server</th><th>client sent</th><th>server replied</th><th>verdict</th><th>STUN answered</th></tr>\n");
    for m in &r.media {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.client),
            esc(&m.server),
            esc(&m.client_sent),
            esc(&m.server_replied),
            esc(&m.verdict),
            m.stun.map_or("-".into(), |(a, n)| format!("{a}/{n}"))
        );
    }
    h.push_str("</table>\n");
}

pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&r.title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(&r.title));
    let crit = r.alerts.iter().filter(|a| a.severity == "critical").count();
    let _ = writeln!(
        h,
        "<table class=\"kv\" id=\"summary\"><tr><td>start</td><td>{}</td></tr><tr><td>duration</td><td>{}</td></tr>\
         <tr><td>source</td><td>{} on {}</td></tr><tr><td>interfaces</td><td>{}</td></tr><tr><td>ports</td><td>{}</td></tr>\
         <tr><td>flows</td><td>{}</td></tr><tr><td>sessions</td><td>{}</td></tr><tr><td>alerts</td><td>{} ({crit} critical)</td></tr></table>",
        utc(r.start_ns),
        duration((r.duration_s * 1e9) as u64),
        esc(&r.source),
        esc(&r.host),
        esc(&r.interfaces.join(", ")),
        esc(&r.ports),
        r.flows,
        r.sessions,
        r.alerts.len()
    );
    if r.truncated_tail {
        h.push_str("<p><em>The recording ends in a cut line (the monitor was killed); it was left out.</em></p>\n");
    }
    h.push_str("<h2>Timeline</h2>\n<p>Per flow and direction; vertical lines mark alerts when raised (red: critical, orange: warning).</p>\n");
    let _ = writeln!(
        h,
        "<div class=\"chart\" id=\"chart-retx\">{}</div>\n<div class=\"chart\" id=\"chart-throughput\">{}</div>",
        chart::timeline(
            if r.retx_rate.is_empty() {
                "Retransmission rate: none (or too few data segments for a rate)"
            } else {
                "Retransmission rate (share of data segments over the alert window)"
            },
            "%",
            &r.retx_rate,
            &r.alerts,
            r.duration_s
        ),
        chart::timeline("Throughput", "bytes/s", &r.throughput, &r.alerts, r.duration_s)
    );
    h.push_str("<h2>Worst flows</h2>\n<table id=\"worst\"><tr><th>client</th><th>server</th><th>handshake</th><th>packets c&gt;s / s&gt;c</th><th>retransmits c&gt;s / s&gt;c</th><th>peak retx rate</th><th>resets (suspect)</th><th>alerts</th><th>history</th></tr>\n");
    for f in &r.worst {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{} / {}</td><td>{:.1} %</td><td>{} ({})</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&f.client),
            esc(&f.server),
            esc(&f.outcome),
            f.packets[0],
            f.packets[1],
            f.retransmits[0],
            f.retransmits[1],
            f.peak_retx * 100.0,
            f.resets,
            f.suspect_resets,
            f.alerts,
            esc(&f.history)
        );
    }
    h.push_str("</table>\n");
    media_section(&mut h, r);
    h.push_str("<h2>Alerts</h2>\n");
    if r.alerts.is_empty() {
        h.push_str("<p>None: every session stayed healthy.</p>\n");
    } else {
        h.push_str("<table id=\"alerts\"><tr><th>#</th><th>raised</th><th>cleared</th><th>severity</th><th>kind</th><th>session</th><th>flow</th><th>what</th></tr>\n");
        for a in &r.alerts {
            let _ = writeln!(
                h,
                "<tr><td><a href=\"#alert-{}\">{}</a></td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}{}</td><td>{} &gt; {}</td><td>{}</td></tr>",
                a.id,
                a.id,
                a.raised_s,
                a.cleared_s.map_or("active at the end".into(), |c| format!("{c:.1} s")),
                severity(a),
                esc(&a.kind),
                a.direction.as_deref().map(|d| format!(" ({})", esc(d))).unwrap_or_default(),
                esc(&a.session),
                if a.session_has_healthy_flow { "<br>(still has a healthy flow)" } else { "" },
                esc(&a.client),
                esc(&a.server),
                esc(&a.summary),
            );
        }
        h.push_str("</table>\n");
        for a in &r.alerts {
            explained(&mut h, a);
        }
    }
    let _ = writeln!(
        h,
        "<p><small>monitor {} · throughput peaks: {}</small></p>\n</body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&r
            .throughput
            .iter()
            .take(3)
            .map(|s| format!("{} {}/s", s.label, bytes(s.peak())))
            .collect::<Vec<_>>()
            .join("; "))
    );
    h
}
