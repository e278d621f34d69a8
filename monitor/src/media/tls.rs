//! What the first bytes of one direction hold, read as TLS records (RFC 5246 section 6.2.1)
//! and handshake messages (section 7.4), through `tls-parser`. A sample is only the first
//! bytes of a segment, so a record or message cut short still counts from its header and
//! whatever of its body is there; nothing here panics on any input.

use tls_parser::{
    parse_tls_client_hello_extension, parse_tls_handshake_client_hello,
    parse_tls_handshake_msg_server_hello, parse_tls_message_alert, TlsExtension, TlsMessage,
    TlsMessageHandshake, MAX_RECORD_LEN,
};

/// TLS content types (RFC 5246 section 6.2.1).
pub const CHANGE_CIPHER_SPEC: u8 = 0x14;
pub const ALERT: u8 = 0x15;
pub const HANDSHAKE: u8 = 0x16;
pub const APPLICATION_DATA: u8 = 0x17;
pub const HEARTBEAT: u8 = 0x18;

/// Handshake types (RFC 5246 section 7.4).
pub const CLIENT_HELLO: u8 = 1;
pub const SERVER_HELLO: u8 = 2;
pub const CERTIFICATE: u8 = 11;
pub const SERVER_HELLO_DONE: u8 = 14;

/// Bytes of a record header: type, version, length.
pub const RECORD_HEADER: usize = 5;

/// One record: its header and the messages found in the part of its body that is present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRecord {
    pub content_type: u8,
    pub version: u16,
    /// The body length the header declares.
    pub length: u16,
    /// Bytes of the body present in the input (at most `length`).
    pub present: usize,
    pub messages: Vec<RecordMessage>,
}

impl TlsRecord {
    pub fn complete(&self) -> bool {
        self.present == usize::from(self.length)
    }
}

/// A message inside a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordMessage {
    ClientHello(ClientHello),
    ServerHello(ServerHello),
    Certificate {
        length: u32,
        complete: bool,
        /// Certificates in the chain, when the whole message is present.
        certificates: Option<usize>,
    },
    ServerHelloDone {
        length: u32,
    },
    /// Any other handshake type, by its number.
    Handshake {
        kind: u8,
        length: u32,
        complete: bool,
    },
    /// `level` and `description` when the two bytes are present and plaintext.
    Alert {
        level: Option<u8>,
        description: Option<u8>,
    },
    ChangeCipherSpec,
    /// Application data, heartbeat or an unknown content type: opaque.
    Opaque,
}

impl RecordMessage {
    /// The handshake type, for handshake messages.
    pub fn handshake_type(&self) -> Option<u8> {
        match self {
            RecordMessage::ClientHello(_) => Some(CLIENT_HELLO),
            RecordMessage::ServerHello(_) => Some(SERVER_HELLO),
            RecordMessage::Certificate { .. } => Some(CERTIFICATE),
            RecordMessage::ServerHelloDone { .. } => Some(SERVER_HELLO_DONE),
            RecordMessage::Handshake { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The handshake length the message header declares.
    pub length: u32,
    /// The whole message is present.
    pub complete: bool,
    pub version: Option<u16>,
    pub session_id_len: Option<u8>,
    /// The offered cipher suites; empty when the list is cut.
    pub ciphers: Vec<u16>,
    pub compression: Vec<u8>,
    /// The extension types present, in order (a cut last one included).
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub length: u32,
    pub complete: bool,
    pub version: Option<u16>,
    pub session_id_len: Option<u8>,
    pub cipher: Option<u16>,
    pub compression: Option<u8>,
}

/// The records at the start of `bytes`, or `None` when they do not start with a TLS record
/// header (a known content type, major version 3, a length TLS allows).
pub fn decode(bytes: &[u8]) -> Option<Vec<TlsRecord>> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while let Some((record, next)) = record(rest) {
        let whole = record.complete();
        records.push(record);
        rest = next;
        if !whole || rest.is_empty() {
            break;
        }
    }
    (!records.is_empty()).then_some(records)
}

/// Whether `bytes` start with a plausible TLS record header.
pub fn is_record_header(bytes: &[u8]) -> bool {
    match bytes {
        [t, 3, minor, hi, lo, ..] => {
            (CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(t)
                && *minor <= 4
                && u16::from_be_bytes([*hi, *lo]) <= MAX_RECORD_LEN
        }
        _ => false,
    }
}

fn record(bytes: &[u8]) -> Option<(TlsRecord, &[u8])> {
    if !is_record_header(bytes) {
        return None;
    }
    let content_type = bytes[0];
    let version = u16::from_be_bytes([bytes[1], bytes[2]]);
    let length = u16::from_be_bytes([bytes[3], bytes[4]]);
    let body_end = (RECORD_HEADER + usize::from(length)).min(bytes.len());
    let body = &bytes[RECORD_HEADER..body_end];
    let messages = match content_type {
        HANDSHAKE => handshakes(body),
        ALERT => vec![alert(body, length)],
        CHANGE_CIPHER_SPEC => vec![RecordMessage::ChangeCipherSpec],
        _ => vec![RecordMessage::Opaque],
    };
    let record = TlsRecord {
        content_type,
        version,
        length,
        present: body.len(),
        messages,
    };
    Some((record, &bytes[body_end..]))
}

fn alert(body: &[u8], length: u16) -> RecordMessage {
    // An encrypted alert is longer than two bytes: its level and description are unknown.
    match parse_tls_message_alert(body) {
        Ok((_, TlsMessage::Alert(a))) if length == 2 => RecordMessage::Alert {
            level: Some(a.severity.0),
            description: Some(a.code.0),
        },
        _ => RecordMessage::Alert {
            level: None,
            description: None,
        },
    }
}

/// The handshake messages of one record body, the last one possibly cut.
fn handshakes(mut body: &[u8]) -> Vec<RecordMessage> {
    let mut out = Vec::new();
    while let [kind, a, b, c, rest @ ..] = body {
        let length = u32::from_be_bytes([0, *a, *b, *c]);
        let have = rest.len().min(length as usize);
        let complete = have == length as usize;
        let msg = &rest[..have];
        out.push(match *kind {
            CLIENT_HELLO => RecordMessage::ClientHello(client_hello(msg, length, complete)),
            SERVER_HELLO => RecordMessage::ServerHello(server_hello(msg, length, complete)),
            CERTIFICATE => RecordMessage::Certificate {
                length,
                complete,
                certificates: complete.then(|| certificates(msg)).flatten(),
            },
            SERVER_HELLO_DONE => RecordMessage::ServerHelloDone { length },
            kind => RecordMessage::Handshake {
                kind,
                length,
                complete,
            },
        });
        if !complete {
            break;
        }
        body = &rest[have..];
    }
    out
}

fn certificates(msg: &[u8]) -> Option<usize> {
    let raw = [&[CERTIFICATE], &(msg.len() as u32).to_be_bytes()[1..], msg].concat();
    match tls_parser::parse_tls_message_handshake(&raw) {
        Ok((_, TlsMessage::Handshake(TlsMessageHandshake::Certificate(c)))) => {
            Some(c.cert_chain.len())
        }
        _ => None,
    }
}

fn client_hello(msg: &[u8], length: u32, complete: bool) -> ClientHello {
    let mut hello = ClientHello {
        length,
        complete,
        version: msg.get(..2).map(|v| u16::from_be_bytes([v[0], v[1]])),
        session_id_len: msg.get(34).copied(),
        ..ClientHello::default()
    };
    // tls-parser reads the fixed fields; it leaves the extension block unread when that
    // block is cut, and the walk below then reads the extensions that are whole.
    let Ok((rest, ch)) = parse_tls_handshake_client_hello(msg) else {
        return hello;
    };
    hello.ciphers = ch.ciphers.iter().map(|c| c.0).collect();
    hello.compression = ch.comp.iter().map(|c| c.0).collect();
    let block = match ch.ext {
        Some(ext) => ext,
        // The two length bytes, then what is present of the extensions.
        None => rest.get(2..).unwrap_or_default(),
    };
    extensions(block, &mut hello);
    hello
}

fn extensions(mut block: &[u8], hello: &mut ClientHello) {
    while let [t0, t1, l0, l1, rest @ ..] = block {
        hello.extensions.push(u16::from_be_bytes([*t0, *t1]));
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if rest.len() < len {
            break;
        }
        match parse_tls_client_hello_extension(&block[..4 + len]) {
            Ok((_, TlsExtension::SNI(names))) => {
                // The first one counts: a cut copy of the hello then says no more than all.
                if let (None, Some((_, name))) = (&hello.sni, names.first()) {
                    hello.sni = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
            Ok((_, TlsExtension::ALPN(protocols))) if hello.alpn.is_empty() => {
                hello.alpn = protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            _ => {}
        }
        block = &rest[len..];
    }
}

fn server_hello(msg: &[u8], length: u32, complete: bool) -> ServerHello {
    let mut hello = ServerHello {
        length,
        complete,
        version: msg.get(..2).map(|v| u16::from_be_bytes([v[0], v[1]])),
        session_id_len: msg.get(34).copied(),
        ..ServerHello::default()
    };
    if let Ok((_, TlsMessageHandshake::ServerHello(sh))) = parse_tls_handshake_msg_server_hello(msg)
    {
        hello.cipher = Some(sh.cipher.0);
        hello.compression = Some(sh.compression.0);
    }
    hello
}

/// A handshake message: type, 24-bit length, body.
pub fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    [&[kind], &len[1..], body].concat()
}

/// A record: type, version, length, body.
pub fn record_of(content_type: u8, version: u16, body: &[u8]) -> Vec<u8> {
    let v = version.to_be_bytes();
    let l = (body.len() as u16).to_be_bytes();
    [&[content_type, v[0], v[1], l[0], l[1]], body].concat()
}

/// A ServerHello (RFC 5246 7.4.1.3): `version`, `random`, a 32-byte `session_id`, `cipher`,
/// null compression, no extensions.
pub fn server_hello_message(
    version: u16,
    random: &[u8; 32],
    session_id: &[u8; 32],
    cipher: u16,
) -> Vec<u8> {
    let body = [
        &version.to_be_bytes()[..],
        random,
        &[32],
        session_id,
        &cipher.to_be_bytes(),
        &[0],
    ]
    .concat();
    handshake(SERVER_HELLO, &body)
}

/// A Certificate message (RFC 5246 7.4.2) holding the one certificate `der`.
pub fn certificate_of(der: &[u8]) -> Vec<u8> {
    let one = [&(der.len() as u32).to_be_bytes()[1..], der].concat();
    let list = [&(one.len() as u32).to_be_bytes()[1..], &one].concat();
    handshake(CERTIFICATE, &list)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub use super::{certificate_of, handshake, record_of as record};

    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        [
            &kind.to_be_bytes()[..],
            &(data.len() as u16).to_be_bytes(),
            data,
        ]
        .concat()
    }

    /// A TLS 1.2 ClientHello (RFC 5246 7.4.1.2) with SNI (RFC 6066 3) and ALPN (RFC 7301 3.1).
    pub fn client_hello_record(sni: &str, ciphers: &[u16]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x11; 32]);
        body.push(0);
        body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            body.extend_from_slice(&c.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let name = sni.as_bytes();
        let mut server_name = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        server_name.push(0);
        server_name.extend_from_slice(&(name.len() as u16).to_be_bytes());
        server_name.extend_from_slice(name);
        let alpn = [&[0, 3, 2][..], b"h2"].concat();
        let exts = [
            extension(0, &server_name),
            extension(16, &alpn),
            extension(13, &[0, 2, 4, 1]),
        ]
        .concat();
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        record(HANDSHAKE, 0x0301, &handshake(CLIENT_HELLO, &body))
    }

    /// A ServerHello (RFC 5246 7.4.1.3) with a 32-byte session id and `cipher`.
    pub fn server_hello(cipher: u16) -> Vec<u8> {
        super::server_hello_message(0x0303, &[0x22; 32], &[0x33; 32], cipher)
    }

    /// A Certificate message (RFC 5246 7.4.2) holding one opaque certificate of `n` bytes.
    pub fn certificate(n: usize) -> Vec<u8> {
        certificate_of(&vec![0x30; n])
    }

    #[test]
    fn a_client_hello_gives_its_version_ciphers_sni_alpn_and_extensions() {
        let bytes = client_hello_record("edge.example.com", &[0xc02f, 0x1301]);
        let recs = decode(&bytes).expect("TLS");
        assert_eq!(recs.len(), 1);
        assert!(recs[0].complete());
        assert_eq!((recs[0].content_type, recs[0].version), (HANDSHAKE, 0x0301));
        let RecordMessage::ClientHello(h) = &recs[0].messages[0] else {
            panic!("{recs:?}")
        };
        assert!(h.complete);
        assert_eq!(h.version, Some(0x0303));
        assert_eq!(h.session_id_len, Some(0));
        assert_eq!(h.ciphers, [0xc02f, 0x1301]);
        assert_eq!(h.compression, [0]);
        assert_eq!(h.extensions, [0, 16, 13]);
        assert_eq!(h.sni.as_deref(), Some("edge.example.com"));
        assert_eq!(h.alpn, ["h2"]);
    }

    #[test]
    fn a_client_hello_cut_in_its_extensions_keeps_the_whole_ones() {
        let bytes = client_hello_record("edge.example.com", &[0xc02f]);
        // Cut inside the ALPN extension: SNI whole, ALPN's type seen, signature_algorithms not.
        let sni_end = 5 + 4 + 2 + 32 + 1 + 2 + 2 + 2 + 2 + 4 + 5 + 16;
        let cut = &bytes[..sni_end + 6];
        let recs = decode(cut).expect("TLS");
        assert!(!recs[0].complete());
        let RecordMessage::ClientHello(h) = &recs[0].messages[0] else {
            panic!("{recs:?}")
        };
        assert!(!h.complete);
        assert_eq!(h.ciphers, [0xc02f]);
        assert_eq!(h.sni.as_deref(), Some("edge.example.com"));
        assert_eq!(h.extensions, [0, 16]);
        assert!(h.alpn.is_empty());
        // Cut in the random: still a ClientHello, with its version only.
        let recs = decode(&bytes[..20]).expect("TLS");
        let RecordMessage::ClientHello(h) = &recs[0].messages[0] else {
            panic!("{recs:?}")
        };
        assert_eq!(
            (h.version, h.ciphers.len(), h.sni.as_ref()),
            (Some(0x0303), 0, None)
        );
    }

    #[test]
    fn a_server_flight_gives_server_hello_certificate_and_done_in_one_record() {
        let flight = [server_hello(0xc02f), certificate(100), handshake(14, &[])].concat();
        let recs = decode(&record(HANDSHAKE, 0x0303, &flight)).expect("TLS");
        let m = &recs[0].messages;
        assert_eq!(m.len(), 3, "{m:?}");
        let RecordMessage::ServerHello(sh) = &m[0] else {
            panic!("{m:?}")
        };
        assert_eq!(
            (sh.version, sh.session_id_len, sh.cipher, sh.compression),
            (Some(0x0303), Some(32), Some(0xc02f), Some(0))
        );
        assert_eq!(
            m[1],
            RecordMessage::Certificate {
                length: 3 + 3 + 100,
                complete: true,
                certificates: Some(1)
            }
        );
        assert_eq!(m[2], RecordMessage::ServerHelloDone { length: 0 });
        let types: Vec<_> = m.iter().filter_map(RecordMessage::handshake_type).collect();
        assert_eq!(types, [2, 11, 14]);
    }

    #[test]
    fn records_follow_each_other_until_one_is_cut() {
        let bytes = [
            record(HANDSHAKE, 0x0303, &server_hello(0x002f)),
            record(HANDSHAKE, 0x0303, &certificate(400)),
        ]
        .concat();
        let recs = decode(&bytes[..256]).expect("TLS");
        assert_eq!(recs.len(), 2);
        assert!(recs[0].complete() && !recs[1].complete());
        assert_eq!(
            recs[1].messages,
            [RecordMessage::Certificate {
                length: 406,
                complete: false,
                certificates: None
            }]
        );
    }

    #[test]
    fn an_alert_gives_level_and_description() {
        let recs = decode(&record(ALERT, 0x0303, &[2, 40])).expect("TLS");
        assert_eq!(
            recs[0].messages,
            [RecordMessage::Alert {
                level: Some(2),
                description: Some(40)
            }]
        );
        // Encrypted (longer than two bytes): an alert, contents unknown.
        let recs = decode(&record(ALERT, 0x0303, &[9; 26])).expect("TLS");
        assert_eq!(
            recs[0].messages,
            [RecordMessage::Alert {
                level: None,
                description: None
            }]
        );
    }

    #[test]
    fn other_records_and_handshakes_are_named_by_number() {
        let recs = decode(&record(HANDSHAKE, 0x0303, &handshake(12, &[7; 9]))).expect("TLS");
        assert_eq!(
            recs[0].messages,
            [RecordMessage::Handshake {
                kind: 12,
                length: 9,
                complete: true
            }]
        );
        let recs = decode(&record(APPLICATION_DATA, 0x0303, &[1; 30])).expect("TLS");
        assert_eq!(recs[0].messages, [RecordMessage::Opaque]);
        let recs = decode(&record(CHANGE_CIPHER_SPEC, 0x0303, &[1])).expect("TLS");
        assert_eq!(recs[0].messages, [RecordMessage::ChangeCipherSpec]);
    }

    #[test]
    fn bytes_that_are_not_a_record_header_are_not_tls() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n"[..],
            &[0x16, 0x03, 0x01, 0x00][..], // header cut
            &[0x16, 0x02, 0x00, 0x00, 0x05][..],
            &[0x19, 0x03, 0x03, 0x00, 0x05][..],
            &[0x17, 0x03, 0x03, 0xff, 0xff][..], // longer than TLS allows
            &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42][..],
            &[][..],
        ] {
            assert_eq!(decode(bytes), None, "{bytes:02x?}");
        }
    }
}
