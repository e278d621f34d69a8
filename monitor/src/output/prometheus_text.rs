//! The Prometheus text format (0.0.4) of an OpenMetrics exposition, for scrapers that do
//! not ask for OpenMetrics: counters are typed by their `_total` name, info metrics are
//! gauges, and there is no `# UNIT` or `# EOF`. prometheus-client writes only OpenMetrics.

use foldhash::HashMap;

/// `om`, an OpenMetrics text, in the Prometheus text format.
pub fn of_openmetrics(om: &str) -> String {
    let mut renamed: HashMap<String, (String, &str)> = HashMap::default();
    for l in om.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, ty) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            match ty {
                "counter" => {
                    renamed.insert(name.into(), (format!("{name}_total"), "counter"));
                }
                "info" => {
                    renamed.insert(name.into(), (format!("{name}_info"), "gauge"));
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for l in om.lines() {
        if l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        if let Some((what, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((new, ty)) = renamed.get(name) {
                let tail = if what == "TYPE" { *ty } else { tail };
                out.push_str(&format!("# {what} {new} {tail}\n"));
                continue;
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}
