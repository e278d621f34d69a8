//! A SYN flood beside a healthy session, live: 20,000 spoofed SYNs from distinct clients
//! into the watched port of a host that also serves one real session. What the outputs need
//! must survive it: no report loses events to a full ring, every flow is known, the flood
//! rolls up into a handful of alerts about the server, and the healthy session stays
//! healthy. (How long the ticks take under the flood is the benchmark's business.)

mod common;

use std::time::Duration;

use common::Lab;
use serde_json::Value;

const PORT: u16 = 50000;
const FLOOD: u32 = 20_000;

#[test]
fn a_syn_flood_rolls_up_loses_nothing_and_leaves_the_healthy_session_alone() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("fl");
    let (monitor, _err) = lab.start_monitor(&[
        "--ports",
        &PORT.to_string(),
        "--interval",
        "1",
        "--duration",
        "9",
    ]);

    // The flooded host's listener (in the monitor's namespace) serves the healthy session.
    let server = lab.echo_on_client_side(PORT);
    let client = lab.healthy_session(PORT, 7.0);
    // The flood, from the other side of the wire: each SYN from its own spoofed client.
    std::thread::sleep(Duration::from_secs(1));
    let flood = lab.syn_flood(PORT, FLOOD, None);
    flood.join().expect("the flood was sent");
    let healthy_port = client.join().expect("the healthy session ran");
    drop(server);

    let out = monitor.wait_with_output().expect("monitor output");
    assert!(out.status.success(), "monitor failed: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reports: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"flows\""))
        .map(|l| serde_json::from_str(l).expect("a JSON report"))
        .collect();
    let last = reports.last().expect("a last report");
    let totals = &last["totals"];
    assert_eq!(
        totals["lost_events"], 0,
        "events lost to a full ring: {totals}"
    );
    assert_eq!(totals["lost_flows"], 0, "{totals}");
    assert_eq!(totals["evicted_flows"], 0, "{totals}");
    let flows = last["flows"].as_array().expect("flows");
    assert!(
        flows.len() as u32 > FLOOD,
        "every flooding client and the healthy session are known: {} flows",
        flows.len()
    );

    let alerts = last["alerts"].as_array().expect("active alerts");
    assert!(
        !alerts.is_empty() && alerts.len() <= 4,
        "the flood rolls up into a handful of alerts, not one per client: {} alerts, the first {:#}",
        alerts.len(),
        alerts.first().unwrap_or(&Value::Null)
    );
    let rolled = alerts
        .iter()
        .find(|a| a["session"] == format!("rollup:{}:{PORT}", lab.client_ip))
        .unwrap_or_else(|| panic!("no roll-up alert about the server: {alerts:#?}"));
    let sessions = rolled["evidence"]["sessions"].as_u64().unwrap_or(0);
    assert!(
        sessions >= u64::from(FLOOD) * 9 / 10,
        "the roll-up counts the flooding clients: {rolled:#}"
    );

    let healthy = flows
        .iter()
        .find(|f| f["client"] == format!("{}:{healthy_port}", lab.server_ip))
        .unwrap_or_else(|| panic!("the healthy session is not among the flows"));
    assert_eq!(healthy["handshake"]["outcome"], "ok", "{healthy:#}");
    assert_eq!(healthy["alerts"], Value::Array(vec![]), "{healthy:#}");
    assert_eq!(healthy["c2s"]["retransmits"], 0, "{healthy:#}");
    assert!(
        healthy["c2s"]["payload_bytes"].as_u64().unwrap_or(0) >= 200 * 50,
        "the healthy session's data was counted: {healthy:#}"
    );
}
