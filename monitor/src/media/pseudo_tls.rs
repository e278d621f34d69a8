//! MS-TURN's pseudo-TLS exchange ([MS-TURN] section 2.1.1, "Pseudo-TLS over TCP"): a
//! client reaching a TURN server or media edge over TCP first sends a fixed TLS 1.0-shaped
//! ClientHello, and the genuine server answers with a ServerHello and a ServerHelloDone in
//! one record. Both have one exact shape, so anything else in answer (a Certificate, another
//! cipher, another length) was not sent by the server: that is what names interception.
//! The layouts are checked byte by byte here rather than through `tls-parser`, because the
//! point is the exact shape, not what a TLS stack would accept.

/// TLS_DH_anon_WITH_RC4_128_MD5, the only cipher suite of the exchange.
pub const CIPHER: u16 = 0x0018;
/// The ClientHello record: 5-byte record header and a 45-byte handshake message.
pub const CLIENT_HELLO_LEN: usize = 50;
/// The answer: one 83-byte record, ServerHello (74 bytes) then ServerHelloDone (4 bytes).
pub const SERVER_HELLO_LEN: usize = 83;

/// Record header (handshake, TLS 1.0, 45 bytes), ClientHello of 41 bytes, version 3.1.
const CLIENT_PREFIX: [u8; 11] = [
    0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x01,
];
/// After the 32-byte random: no session id, one cipher (0x0018), one null compression, and
/// nothing more (no extensions).
const CLIENT_TAIL: [u8; 7] = [0x00, 0x00, 0x02, 0x00, 0x18, 0x01, 0x00];
/// Record header (handshake, TLS 1.0, 78 bytes), ServerHello of 70 bytes.
const SERVER_PREFIX: [u8; 9] = [0x16, 0x03, 0x01, 0x00, 0x4e, 0x02, 0x00, 0x00, 0x46];
const SERVER_DONE: [u8; 4] = [0x0e, 0x00, 0x00, 0x00];

/// The pseudo-TLS ClientHello with `random`, byte for byte as [MS-TURN] 2.1.1 lays it out:
/// what a client sends first (the demo's clients and the test captures use it).
pub fn client_hello(random: &[u8; 32]) -> Vec<u8> {
    [&CLIENT_PREFIX[..], random, &CLIENT_TAIL].concat()
}

/// The genuine server's answer: ServerHello (version 3.1, `random`, the 32-byte
/// `session_id`, cipher 0x0018, null compression) and ServerHelloDone in one record.
pub fn server_hello(random: &[u8; 32], session_id: &[u8; 32]) -> Vec<u8> {
    let mut b = SERVER_PREFIX.to_vec();
    b.extend_from_slice(&[0x03, 0x01]);
    b.extend_from_slice(random);
    b.push(32);
    b.extend_from_slice(session_id);
    b.extend_from_slice(&CIPHER.to_be_bytes());
    b.push(0);
    b.extend_from_slice(&SERVER_DONE);
    b
}

/// Whether `bytes` start with the pseudo-TLS ClientHello.
pub fn is_client_hello(bytes: &[u8]) -> bool {
    bytes.len() >= CLIENT_HELLO_LEN
        && bytes[..11] == CLIENT_PREFIX
        && bytes[43..CLIENT_HELLO_LEN] == CLIENT_TAIL
}

/// How a reply differs from the genuine server's answer: the first field that does not
/// match, what it holds and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub field: &'static str,
    pub got: String,
    pub expected: String,
}

/// `Ok` when `bytes` start with the genuine server's answer to the pseudo-TLS ClientHello,
/// else the first field that differs.
pub fn check_server_hello(bytes: &[u8]) -> Result<(), Mismatch> {
    let diff = |field, got: String, expected: String| {
        Err(Mismatch {
            field,
            got,
            expected,
        })
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let be16 = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let short = || {
        diff(
            "reply length",
            bytes.len().to_string(),
            SERVER_HELLO_LEN.to_string(),
        )
    };
    if bytes.len() < 5 {
        return short();
    }
    if bytes[..3] != SERVER_PREFIX[..3] {
        return diff("record header", hex(&bytes[..3]), hex(&SERVER_PREFIX[..3]));
    }
    if bytes[3..5] != SERVER_PREFIX[3..5] {
        return diff("record length", be16(3).to_string(), "78".into());
    }
    if bytes.len() < 9 {
        return short();
    }
    if bytes[5] != SERVER_PREFIX[5] {
        return diff(
            "handshake type",
            bytes[5].to_string(),
            "2 (ServerHello)".into(),
        );
    }
    if bytes[6..9] != SERVER_PREFIX[6..9] {
        let got = u32::from_be_bytes([0, bytes[6], bytes[7], bytes[8]]);
        return diff("ServerHello length", got.to_string(), "70".into());
    }
    if bytes.len() < SERVER_HELLO_LEN {
        return short();
    }
    if bytes[43] != 32 {
        return diff("session id length", bytes[43].to_string(), "32".into());
    }
    if be16(76) != CIPHER {
        return diff(
            "cipher",
            format!("0x{:04x}", be16(76)),
            format!("0x{CIPHER:04x}"),
        );
    }
    if bytes[79..83] != SERVER_DONE {
        let got = format!("handshake type {} ({})", bytes[79], hex(&bytes[79..83]));
        return diff(
            "after ServerHello",
            got,
            "ServerHelloDone (0e000000)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The pseudo-TLS ClientHello, byte for byte as [MS-TURN] 2.1.1 lays it out.
    pub fn client_hello() -> Vec<u8> {
        super::client_hello(&[0xa5; 32])
    }

    /// The genuine server's ServerHello + ServerHelloDone record.
    pub fn server_hello() -> Vec<u8> {
        super::server_hello(&[0x5a; 32], &[0x77; 32])
    }

    #[test]
    fn the_layouts_have_the_lengths_of_the_specification() {
        assert_eq!(client_hello().len(), CLIENT_HELLO_LEN);
        assert_eq!(server_hello().len(), SERVER_HELLO_LEN);
        // And read as TLS, they are what they claim.
        let recs = crate::media::tls::decode(&server_hello()).expect("TLS");
        assert!(recs[0].complete());
        let types: Vec<_> = recs[0]
            .messages
            .iter()
            .filter_map(|m| m.handshake_type())
            .collect();
        assert_eq!(types, [2, 14]);
        let recs = crate::media::tls::decode(&client_hello()).expect("TLS");
        let crate::media::tls::RecordMessage::ClientHello(h) = &recs[0].messages[0] else {
            panic!("{recs:?}")
        };
        assert_eq!((h.ciphers.as_slice(), h.complete), (&[CIPHER][..], true));
        assert!(h.extensions.is_empty());
    }

    #[test]
    fn the_builders_put_random_and_session_id_where_the_layout_has_them() {
        let (r, id) = ([1; 32], [2; 32]);
        let c = super::client_hello(&r);
        assert_eq!((&c[11..43], is_client_hello(&c)), (&r[..], true));
        let s = super::server_hello(&r, &id);
        assert_eq!((&s[11..43], &s[44..76]), (&r[..], &id[..]));
        assert_eq!(check_server_hello(&s), Ok(()));
    }

    #[test]
    fn the_client_hello_is_recognised_and_any_change_is_not() {
        assert!(is_client_hello(&client_hello()));
        assert!(!is_client_hello(&client_hello()[..49]));
        for at in [0, 4, 5, 9, 10, 43, 44, 46, 47, 48, 49] {
            let mut b = client_hello();
            b[at] ^= 0x01;
            assert!(!is_client_hello(&b), "byte {at} changed");
        }
        // The random is random.
        let mut b = client_hello();
        b[11..43].copy_from_slice(&[0; 32]);
        assert!(is_client_hello(&b));
    }

    #[test]
    fn the_genuine_answer_matches() {
        assert_eq!(check_server_hello(&server_hello()), Ok(()));
    }

    #[test]
    fn each_difference_is_named() {
        let field = |b: &[u8]| check_server_hello(b).map_err(|m| m.field);
        let with = |at: usize, v: u8| {
            let mut b = server_hello();
            b[at] = v;
            b
        };
        assert_eq!(field(&[]), Err("reply length"));
        assert_eq!(field(&with(0, 0x15)), Err("record header"));
        assert_eq!(field(&with(4, 0x4a)), Err("record length"));
        assert_eq!(field(&with(5, 11)), Err("handshake type"));
        assert_eq!(field(&with(8, 0x47)), Err("ServerHello length"));
        assert_eq!(field(&server_hello()[..60]), Err("reply length"));
        assert_eq!(field(&with(43, 0)), Err("session id length"));
        let m = check_server_hello(&with(77, 0x2f)).unwrap_err();
        assert_eq!(
            (m.field, m.got.as_str(), m.expected.as_str()),
            ("cipher", "0x002f", "0x0018")
        );
        let m = check_server_hello(&with(79, 11)).unwrap_err();
        assert_eq!(m.field, "after ServerHello");
        assert!(m.got.starts_with("handshake type 11"), "{m:?}");
    }
}
