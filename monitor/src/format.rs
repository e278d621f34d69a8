//! Numbers and text as people read them, shared by the TUI and the report so both say
//! the same thing the same way.

/// A duration: `4.2s`, `3m05s`, `2h01m`.
pub fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ns as f64 / 1e9)
    }
}

/// A count or a rate with an SI suffix: `950`, `1.2k`, `34M`.
pub fn bytes(per_s: f64) -> String {
    let units = ["", "k", "M", "G", "T"];
    let mut v = per_s;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}")
    } else if v < 10.0 {
        format!("{v:.1}{}", units[i])
    } else {
        format!("{v:.0}{}", units[i])
    }
}

/// Text made safe inside HTML and SVG (elements and attribute values).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
