//! The shipped Prometheus rules (`deploy/prometheus/`): valid, and behaving as their unit
//! tests say (`promtool test rules`).

use std::{path::Path, process::Command};

fn promtool(args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian package prometheus; cargo xtask setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_rules_are_valid() {
    let out = promtool(&["check", "rules", "rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", "tests.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every query of the Grafana dashboard parses (promtool checks it as a recording rule)
/// and names only series the monitor exports or the shipped rules record.
#[test]
fn the_dashboard_queries_parse_and_use_real_series() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/monitor.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|e| e.replace("$instance", ".*")))
        .collect();
    assert!(exprs.len() >= 8);
    let mut known: Vec<String> = monitor::output::metrics::Metrics::new(1)
        .prometheus_text()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("# TYPE ")?
                .split(' ')
                .next()
                .map(String::from)
        })
        .collect();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/rules.yml")).expect("rules");
    known.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- record: ").map(String::from)),
    );
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("monitor_") || word.contains(":monitor_") {
                let base = word.trim_end_matches("_bucket");
                assert!(
                    known.iter().any(|k| k == base),
                    "`{base}` in `{e}` is not exported"
                );
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("monitor-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut yml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        yml += &format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(e).expect("quote")
        );
    }
    std::fs::write(dir.join("dash.yml"), yml).expect("write");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.join("dash.yml"))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
