//! The ladder diagram of an alert's flow: its key packets, read from the alert's evidence
//! capture, as arrows between the client and the server in time order, each with what it
//! was (SYN, the pseudo-TLS hello, a ServerHello and Certificate, a retransmission, a
//! reset) and its TTL. Hand-built SVG: the plotting crate draws charts, not sequence
//! diagrams.

use std::{
    fmt::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use monitor_common::parse::{Packet, ACK, FIN, RST, SYN};

use super::content::Report;
use crate::{
    capture::Reader,
    media::{pseudo_tls, stun, tls},
};

/// One packet of the diagram.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Seconds from the flow's first packet.
    pub t_s: f64,
    pub from_client: bool,
    pub label: String,
    pub ttl: u8,
    /// What a healthy flow does not do (a retransmission, a reset, an answer the genuine
    /// server never sends): drawn red.
    pub bad: bool,
}

/// Packets drawn at most; the rest are counted under the diagram.
pub const MAX_STEPS: usize = 40;

/// What a payload's first bytes are, for a label.
fn payload_name(p: &[u8], len: u32) -> (String, bool) {
    if pseudo_tls::is_client_hello(p) {
        return ("pseudo-TLS hello".into(), false);
    }
    if let Some(recs) = tls::decode(p).filter(|r| !r.is_empty()) {
        let alert = recs.iter().any(|r| r.content_type == 21);
        let hs: Vec<&str> = recs
            .iter()
            .flat_map(|r| r.messages.iter().filter_map(|m| m.handshake_type()))
            .map(|t| match t {
                tls::SERVER_HELLO => "ServerHello",
                tls::CERTIFICATE => "Certificate",
                tls::SERVER_HELLO_DONE => "ServerHelloDone",
                1 => "ClientHello",
                _ => "handshake",
            })
            .collect();
        let cert = hs.contains(&"Certificate");
        return match (alert, hs.is_empty()) {
            (true, _) => ("TLS alert".into(), true),
            (false, false) => (format!("TLS {}", hs.join(" + ")), cert),
            (false, true) => (format!("TLS data, {len} B"), false),
        };
    }
    if stun::decode(p).is_some() || p.len() > 2 && stun::decode(&p[2..]).is_some() {
        return ("STUN".into(), false);
    }
    (format!("data, {len} B"), false)
}

/// The key packets of the capture at `path`, `client_port` telling the client's side:
/// the handshake, payload segments (the first of each side named by its first bytes),
/// retransmissions, FINs and resets; pure ACKs after the handshake's are left out.
pub fn steps(path: &Path, client_port: u16) -> Result<(Vec<Step>, usize), String> {
    let reader = Reader::open(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut more = 0usize;
    let mut t0 = None;
    // Per side: the highest sequence number sent with payload, and whether its first
    // payload was named.
    let mut top: [Option<u32>; 2] = [None, None];
    let mut handshake_acked = false;
    let mut pkt = Packet::default();
    reader
        .for_each(|frame| {
            if frame.parse(&mut pkt).is_err() {
                return;
            }
            let t = *t0.get_or_insert(frame.ts_ns);
            let from_client = pkt.sport == client_port;
            let side = usize::from(!from_client);
            let f = pkt.flags;
            let payload = frame
                .data
                .get(pkt.payload_off as usize..)
                .unwrap_or_default();
            let (label, bad) = if f & RST != 0 {
                ("RST".to_string(), true)
            } else if f & SYN != 0 {
                (
                    if f & ACK != 0 { "SYN/ACK" } else { "SYN" }.to_string(),
                    false,
                )
            } else if pkt.payload_len > 0 {
                let end = pkt.seq.wrapping_add(pkt.payload_len);
                let resent = top[side].is_some_and(|h| (end.wrapping_sub(h) as i32) <= 0);
                top[side] = Some(match top[side] {
                    Some(h) if (end.wrapping_sub(h) as i32) <= 0 => h,
                    _ => end,
                });
                if resent {
                    (format!("retransmission, {} B", pkt.payload_len), true)
                } else {
                    payload_name(payload, pkt.payload_len)
                }
            } else if f & FIN != 0 {
                ("FIN".to_string(), false)
            } else if !handshake_acked && from_client {
                handshake_acked = true;
                ("ACK".to_string(), false)
            } else {
                return;
            };
            if out.len() == MAX_STEPS {
                more += 1;
                return;
            }
            out.push(Step {
                t_s: frame.ts_ns.saturating_sub(t) as f64 / 1e9,
                from_client,
                label,
                ttl: pkt.ttl,
                bad,
            });
        })
        .map_err(|e| e.to_string())?;
    Ok((out, more))
}

/// Draws the ladder of every alert whose evidence capture is readable, its name resolved
/// against `base` (the recording's directory). A capture that cannot be read leaves the
/// alert without a diagram: the report still says everything else.
pub fn draw_all(report: &mut Report, base: &Path) {
    for a in &mut report.alerts {
        let Some(name) = a.capture.as_deref() else {
            continue;
        };
        let Some(port) = a.client.parse::<SocketAddr>().ok().map(|c| c.port()) else {
            continue;
        };
        if let Ok((steps, more)) = steps(&base.join(name), port) {
            a.ladder = Some(svg(&a.client, &a.server, &steps, more));
        }
    }
}

/// The directory a recording's relative names are resolved against.
pub fn base_of(recording: &Path) -> PathBuf {
    match recording.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The diagram as an SVG element: the client's line on the left, the server's on the right.
pub fn svg(client: &str, server: &str, steps: &[Step], more: usize) -> String {
    const W: i32 = 640;
    const TOP: i32 = 48;
    const ROW: i32 = 26;
    let (left, right) = (150, W - 110);
    let h = TOP + ROW * steps.len() as i32 + if more > 0 { 30 } else { 14 };
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"ladder\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" \
         viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <defs><marker id=\"ah\" markerWidth=\"8\" markerHeight=\"8\" refX=\"7\" refY=\"3\" \
         orient=\"auto\"><path d=\"M0,0 L7,3 L0,6 z\" fill=\"context-stroke\"/></marker></defs>\
         <text x=\"{left}\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">client {}</text>\
         <text x=\"{right}\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">server {}</text>\
         <line x1=\"{left}\" y1=\"24\" x2=\"{left}\" y2=\"{h}\" stroke=\"#888\"/>\
         <line x1=\"{right}\" y1=\"24\" x2=\"{right}\" y2=\"{h}\" stroke=\"#888\"/>",
        esc(client),
        esc(server)
    );
    for (i, st) in steps.iter().enumerate() {
        let y = TOP + ROW * i as i32;
        let (x1, x2) = if st.from_client {
            (left, right)
        } else {
            (right, left)
        };
        let colour = if st.bad { "#c62828" } else { "#333" };
        let _ = write!(
            s,
            "<g class=\"step{}\"><text x=\"8\" y=\"{y}\" fill=\"#555\">+{:.3} s</text>\
             <line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{}\" stroke=\"{colour}\" \
             stroke-width=\"1.5\" marker-end=\"url(#ah)\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{colour}\">{} (TTL {})</text></g>",
            if st.bad { " bad" } else { "" },
            st.t_s,
            y + 8,
            (left + right) / 2,
            y - 3,
            esc(&st.label),
            st.ttl
        );
    }
    if more > 0 {
        let _ = write!(
            s,
            "<text x=\"8\" y=\"{}\" fill=\"#555\">and {more} more packets (in the capture)</text>",
            h - 8
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intercepted_capture_draws_its_hello_the_forged_answer_and_the_reset() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media/intercepted.pcap");
        let (steps, more) = steps(&path, 40000).expect("read the capture");
        let labels: Vec<(&str, bool, u8)> = steps
            .iter()
            .map(|s| (s.label.as_str(), s.from_client, s.ttl))
            .collect();
        assert_eq!(more, 0);
        assert_eq!(
            labels,
            [
                ("SYN", true, 64),
                ("SYN/ACK", false, 64),
                ("ACK", true, 64),
                ("pseudo-TLS hello", true, 64),
                ("TLS ServerHello + Certificate + ServerHelloDone", false, 61),
                ("RST", false, 61),
            ],
            "{steps:?}"
        );
        assert!(steps[4].bad && steps[5].bad && !steps[3].bad);
        let svg = svg("192.0.2.10:40000", "198.51.100.20:443", &steps, more);
        assert_eq!(svg.matches("<g class=\"step").count(), 6);
        assert!(svg.contains("(TTL 61)") && svg.contains("class=\"step bad\""));
    }
}
