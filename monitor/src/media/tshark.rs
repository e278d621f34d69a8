//! The media decoders against Wireshark's, on the same bytes: TLS records and handshakes
//! (ClientHello with SNI and ALPN, ServerHello, Certificate, ServerHelloDone, Alert, and
//! the pseudo-TLS pair) and STUN over RFC 4571 framing on TCP, crafted into one capture,
//! read by tshark field by field, and compared with what our decoders say of each frame.
//! tshark missing is a failure, never a skip: `cargo xtask setup` installs it.

use std::{collections::BTreeMap, net::IpAddr, process::Command};

use monitor_common::craft::{pcap, TcpFrame};

use super::{
    pseudo_tls::tests as ptls,
    stun::{
        self,
        tests::{rfc5389, SOFTWARE},
    },
    tls::{
        self,
        tests::{certificate_of, client_hello_record, handshake, record, server_hello},
        RecordMessage,
    },
    turn::{self, tests::rfc4571, Framing},
};

const FIELDS: &[&str] = &[
    "frame.number",
    "tls.record.content_type",
    "tls.record.length",
    "tls.handshake.type",
    "tls.handshake.ciphersuite",
    "tls.handshake.session_id_length",
    "tls.handshake.extension.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "stun.type",
    "stun.type.class",
    "stun.type.method",
    "stun.length",
    "stun.id",
];

const STUN_PORT: u16 = 3478;

/// A self-signed certificate for edge.example.com (made with `openssl req -x509 -newkey ec
/// -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=edge.example.com -outform DER`):
/// Wireshark decodes the certificate, and stops at one that is not DER.
const EDGE_CERT: &[u8] = include_bytes!("../../../testdata/media/edge.example.com.der");

/// (the TCP payload, towards the server or from it) for each frame.
fn payloads() -> Vec<(Vec<u8>, bool)> {
    let flight = [
        record(tls::HANDSHAKE, 0x0303, &server_hello(0xc02f)),
        record(
            tls::HANDSHAKE,
            0x0303,
            &[certificate_of(EDGE_CERT), handshake(14, &[])].concat(),
        ),
    ]
    .concat();
    let xor_mapped = [
        0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0x2b, 0x12, 0xa4, 0x43,
    ];
    let error = [0x00, 0x09, 0x00, 0x04, 0x00, 0x00, 0x04, 0x01];
    vec![
        (
            client_hello_record("edge.example.com", &[0xc02f, 0x1301, 0x0018]),
            true,
        ),
        (flight, false),
        (record(tls::ALERT, 0x0303, &[2, 40]), false),
        (ptls::client_hello(), true),
        (ptls::server_hello(), false),
        (rfc4571(&rfc5389(0x0001, [0x5a; 12], &SOFTWARE)), true),
        (rfc4571(&rfc5389(0x0101, [0x5a; 12], &xor_mapped)), false),
        (rfc4571(&rfc5389(0x0111, [0x6b; 12], &error)), false),
    ]
}

fn capture(dir: &std::path::Path) -> std::path::PathBuf {
    let client: IpAddr = "192.0.2.10".parse().unwrap();
    let server: IpAddr = "198.51.100.20".parse().unwrap();
    let frames: Vec<Vec<u8>> = payloads()
        .iter()
        .enumerate()
        .map(|(i, (payload, up))| {
            let sport = 40000 + i as u16;
            let dport = if payload.first() == Some(&tls::HANDSHAKE)
                || payload.first() == Some(&tls::ALERT)
            {
                443
            } else {
                STUN_PORT
            };
            let f = if *up {
                TcpFrame::new(client, sport, server, dport)
            } else {
                TcpFrame::new(server, dport, client, sport)
            };
            f.flags(0x18).payload(payload).ethernet()
        })
        .collect();
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (1_000_000_000 * (i as u64 + 1), f.as_slice(), f.len() as u32))
        .collect();
    let path = dir.join("media.pcap");
    std::fs::write(&path, pcap(&records)).unwrap();
    path
}

/// tshark's fields per frame.
fn tshark(path: &std::path::Path) -> Vec<BTreeMap<&'static str, String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-n", "-T", "fields", "-E", "occurrence=a"]);
    cmd.args(["-E", "aggregator=,", "-E", "separator=\t"]);
    cmd.args(["-d", &format!("tcp.port=={STUN_PORT},stun")]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("tshark could not run ({e}): it is required for this test (cargo xtask setup)")
    });
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            FIELDS
                .iter()
                .copied()
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

fn join<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// What our decoders say of one payload, in tshark's field names and formats.
fn ours(payload: &[u8]) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    if let Some(records) = tls::decode(payload) {
        assert!(records.iter().all(|r| r.complete()), "{records:?}");
        m.insert(
            "tls.record.content_type",
            join(records.iter().map(|r| r.content_type)),
        );
        m.insert("tls.record.length", join(records.iter().map(|r| r.length)));
        let msgs: Vec<&RecordMessage> = records.iter().flat_map(|r| &r.messages).collect();
        m.insert(
            "tls.handshake.type",
            join(msgs.iter().filter_map(|m| m.handshake_type())),
        );
        let (mut ciphers, mut sid, mut exts, mut sni, mut alpn) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut level, mut desc) = (vec![], vec![]);
        for msg in msgs {
            match msg {
                RecordMessage::ClientHello(h) => {
                    ciphers.extend(h.ciphers.iter().map(|c| format!("0x{c:04x}")));
                    sid.extend(h.session_id_len);
                    exts.extend(h.extensions.iter().copied());
                    sni.extend(h.sni.clone());
                    alpn.extend(h.alpn.clone());
                }
                RecordMessage::ServerHello(h) => {
                    ciphers.extend(h.cipher.map(|c| format!("0x{c:04x}")));
                    sid.extend(h.session_id_len);
                }
                RecordMessage::Alert {
                    level: l,
                    description: d,
                } => {
                    level.extend(*l);
                    desc.extend(*d);
                }
                _ => {}
            }
        }
        m.insert("tls.handshake.ciphersuite", join(ciphers));
        m.insert("tls.handshake.session_id_length", join(sid));
        m.insert("tls.handshake.extension.type", join(exts));
        m.insert("tls.handshake.extensions_server_name", join(sni));
        m.insert("tls.handshake.extensions_alpn_str", join(alpn));
        m.insert("tls.alert_message.level", join(level));
        m.insert("tls.alert_message.desc", join(desc));
    }
    if let Some(framing) = turn::detect(payload) {
        assert_eq!(framing, Framing::Rfc4571);
        let msgs: Vec<stun::StunMessage> = turn::frames(payload, framing)
            .into_iter()
            .filter_map(|f| f.stun)
            .collect();
        m.insert(
            "stun.type",
            join(msgs.iter().map(|s| format!("0x{:04x}", s.kind))),
        );
        let class = |c: stun::Class| match c {
            // tshark shows the class bits C1 C0 as hex digits.
            stun::Class::Request => "0x0000",
            stun::Class::Indication => "0x0001",
            stun::Class::SuccessResponse => "0x0010",
            stun::Class::ErrorResponse => "0x0011",
        };
        m.insert("stun.type.class", join(msgs.iter().map(|s| class(s.class))));
        m.insert(
            "stun.type.method",
            join(msgs.iter().map(|s| format!("0x{:04x}", s.method))),
        );
        m.insert("stun.length", join(msgs.iter().map(|s| s.length)));
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        m.insert("stun.id", join(msgs.iter().map(|s| hex(s.id()))));
    }
    m
}

#[test]
fn our_decoders_agree_with_tshark_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let rows = tshark(&capture(dir.path()));
    let payloads = payloads();
    assert_eq!(rows.len(), payloads.len(), "tshark rows: {rows:#?}");
    let mut diffs = Vec::new();
    for (i, ((payload, _), theirs)) in payloads.iter().zip(&rows).enumerate() {
        let ours = ours(payload);
        assert!(
            !ours.is_empty(),
            "frame {}: our decoders found nothing",
            i + 1
        );
        for field in &FIELDS[1..] {
            let want = theirs.get(field).map(String::as_str).unwrap_or("");
            let got = ours.get(field).map(String::as_str).unwrap_or("");
            if want != got {
                diffs.push(format!(
                    "frame {} {field}: tshark {want:?}, ours {got:?}",
                    i + 1
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "disagreements with tshark:\n{}",
        diffs.join("\n")
    );
}
