//! STUN message headers of both styles, and the matching of requests to their responses.
//! - RFC 5389/8489 (section 5 / 5 of each): type, length, the magic cookie `0x2112A442`,
//!   a 12-byte transaction ID; the class in bits C1 (0x0100) and C0 (0x0010).
//! - The old style MS-TURN uses ([MS-TURN] 2.2.1 "StunMessage Header", 2.2.2.8 "Magic Cookie"):
//!   type, length, a 16-byte transaction ID, then the magic-cookie attribute (`0x000F`,
//!   value `0x72C64BC6`) first. Without that attribute, 20 arbitrary bytes would pass.
//!
//! Only the header (and the cookie attribute) is read: class, method and transaction ID
//! are what matching needs, and they are all in the first 28 bytes even of a cut sample.
//! Written by hand for that reason: a STUN codec crate decodes whole RFC 5389 messages,
//! while here the message may be cut and may be of MS-TURN's older style.

use std::collections::{HashMap, HashSet};

pub const MAGIC_COOKIE: u32 = 0x2112_a442;
pub const HEADER: usize = 20;
/// [MS-TURN] 2.2.2.8: the attribute type and its value.
pub const MS_COOKIE_ATTRIBUTE: u16 = 0x000f;
pub const MS_COOKIE: u32 = 0x72c6_4bc6;
/// [MS-TURN] 2.2.1: Send request and Data Indication, which are never answered.
const MS_SEND: u16 = 0x0004;
const MS_DATA_INDICATION: u16 = 0x0115;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// RFC 5389/8489, magic cookie in the header.
    Rfc5389,
    /// MS-TURN's, 16-byte transaction ID and the magic-cookie attribute.
    MsTurn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    SuccessResponse,
    ErrorResponse,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunMessage {
    pub style: Style,
    /// The 16-bit message type as sent.
    pub kind: u16,
    pub class: Class,
    /// The method, the type without its class bits (1 = Binding).
    pub method: u16,
    /// The attribute length the header declares.
    pub length: u16,
    /// The 16 bytes after the length: for RFC 5389 the cookie and the 12-byte ID. Both
    /// styles match on all 16.
    pub transaction: [u8; 16],
    /// The whole message is present.
    pub complete: bool,
}

impl StunMessage {
    /// The transaction ID as each style defines it (12 bytes, or 16).
    pub fn id(&self) -> &[u8] {
        match self.style {
            Style::Rfc5389 => &self.transaction[4..],
            Style::MsTurn => &self.transaction,
        }
    }

    /// The message's total length: header and attributes.
    pub fn wire_len(&self) -> usize {
        HEADER + usize::from(self.length)
    }
}

/// The STUN message at the start of `bytes`, from its header (cut bodies included).
pub fn decode(bytes: &[u8]) -> Option<StunMessage> {
    let header = bytes.get(..HEADER)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let length = u16::from_be_bytes([header[2], header[3]]);
    if kind & 0xc000 != 0 {
        return None;
    }
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let style = if cookie == MAGIC_COOKIE {
        if length % 4 != 0 {
            return None;
        }
        Style::Rfc5389
    } else {
        let attr = bytes.get(HEADER..HEADER + 8)?;
        let is_cookie = u16::from_be_bytes([attr[0], attr[1]]) == MS_COOKIE_ATTRIBUTE
            && u16::from_be_bytes([attr[2], attr[3]]) == 4
            && u32::from_be_bytes([attr[4], attr[5], attr[6], attr[7]]) == MS_COOKIE;
        if !is_cookie || length < 8 {
            return None;
        }
        Style::MsTurn
    };
    let class = match (style, kind) {
        (Style::MsTurn, MS_SEND | MS_DATA_INDICATION) => Class::Indication,
        _ => match kind & 0x0110 {
            0x0000 => Class::Request,
            0x0010 => Class::Indication,
            0x0100 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        },
    };
    let method = (kind & 0x000f) | ((kind >> 1) & 0x0070) | ((kind >> 2) & 0x0f80);
    let mut transaction = [0; 16];
    transaction.copy_from_slice(&header[4..HEADER]);
    Some(StunMessage {
        style,
        kind,
        class,
        method,
        length,
        transaction,
        complete: bytes.len() >= HEADER + usize::from(length),
    })
}

/// Which side sent a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Counts of one flow's STUN transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub responses: u64,
    pub errors: u64,
    /// Requests with no response after the timeout.
    pub unanswered: u64,
    /// Requests still within the timeout, not yet answered.
    pub pending: u64,
    /// When the last response (success or error) came.
    pub last_answered_ns: Option<u64>,
}

/// Requests and their responses matched by transaction ID. Fed the messages of both
/// directions in time order; a response counts only from the side the request went to,
/// and a request repeated with the same ID counts once.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    /// (side that asked, transaction) -> when it asked.
    open: HashMap<(Side, [u8; 16]), u64>,
    /// Transactions already counted (answered or open), so a repeat counts once.
    seen: HashSet<(Side, [u8; 16])>,
    requests: u64,
    responses: u64,
    errors: u64,
    last_answered_ns: Option<u64>,
}

impl Matcher {
    pub fn feed(&mut self, from: Side, msg: &StunMessage, time_ns: u64) {
        match msg.class {
            Class::Request => {
                let key = (from, msg.transaction);
                if self.seen.insert(key) {
                    self.requests += 1;
                    self.open.insert(key, time_ns);
                }
            }
            Class::SuccessResponse | Class::ErrorResponse => {
                if self.open.remove(&(from.other(), msg.transaction)).is_some() {
                    if msg.class == Class::SuccessResponse {
                        self.responses += 1;
                    } else {
                        self.errors += 1;
                    }
                    self.last_answered_ns = Some(time_ns);
                }
            }
            Class::Indication => {}
        }
    }

    /// When the next open request still within `timeout_ns` at `now_ns` turns unanswered.
    pub fn next_expiry(&self, now_ns: u64, timeout_ns: u64) -> Option<u64> {
        self.open
            .values()
            .map(|&asked| asked.saturating_add(timeout_ns))
            .filter(|&expires| expires > now_ns)
            .min()
    }

    /// The counts at `now_ns`: an open request older than `timeout_ns` is unanswered.
    pub fn counts(&self, now_ns: u64, timeout_ns: u64) -> Counts {
        let unanswered = self
            .open
            .values()
            .filter(|&&asked| now_ns.saturating_sub(asked) >= timeout_ns)
            .count() as u64;
        Counts {
            requests: self.requests,
            responses: self.responses,
            errors: self.errors,
            unanswered,
            pending: self.open.len() as u64 - unanswered,
            last_answered_ns: self.last_answered_ns,
        }
    }
}

/// An RFC 5389 message: type, length, cookie, 12-byte ID, attributes (whole, already
/// padded to 4 bytes). The demo speaks STUN with it; the tests build their layouts with it.
pub fn rfc5389(kind: u16, id: [u8; 12], attrs: &[u8]) -> Vec<u8> {
    let mut b = kind.to_be_bytes().to_vec();
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b.extend_from_slice(&id);
    b.extend_from_slice(attrs);
    b
}

/// An MS-TURN message: type, length, 16-byte ID, the magic-cookie attribute, `attrs`.
pub fn ms_turn(kind: u16, id: [u8; 16], attrs: &[u8]) -> Vec<u8> {
    let mut body = MS_COOKIE_ATTRIBUTE.to_be_bytes().to_vec();
    body.extend_from_slice(&4u16.to_be_bytes());
    body.extend_from_slice(&MS_COOKIE.to_be_bytes());
    body.extend_from_slice(attrs);
    let mut b = kind.to_be_bytes().to_vec();
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(&id);
    b.extend_from_slice(&body);
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub use super::{ms_turn, rfc5389};

    /// SOFTWARE (0x8022) "test", one attribute to give messages a body.
    pub const SOFTWARE: [u8; 8] = [0x80, 0x22, 0x00, 0x04, b't', b'e', b's', b't'];

    #[test]
    fn rfc5389_classes_methods_and_ids() {
        let id = [7; 12];
        for (kind, class, method) in [
            (0x0001, Class::Request, 1),
            (0x0011, Class::Indication, 1),
            (0x0101, Class::SuccessResponse, 1),
            (0x0111, Class::ErrorResponse, 1),
            (0x0003, Class::Request, 3),       // TURN Allocate (RFC 8656)
            (0x0016, Class::Indication, 6),    // TURN Send indication
            (0x0118, Class::ErrorResponse, 8), // TURN CreatePermission error
        ] {
            let m = decode(&rfc5389(kind, id, &SOFTWARE)).expect("STUN");
            assert_eq!(
                (m.style, m.class, m.method),
                (Style::Rfc5389, class, method)
            );
            assert_eq!((m.length, m.complete, m.id()), (8, true, &id[..]));
        }
    }

    #[test]
    fn ms_turn_style_needs_its_cookie_attribute() {
        let id = [9; 16];
        for (kind, class, method) in [
            (0x0003, Class::Request, 3),
            (0x0103, Class::SuccessResponse, 3),
            (0x0113, Class::ErrorResponse, 3),
            (0x0004, Class::Indication, 4), // Send request: never answered
            (0x0115, Class::Indication, 5), // Data Indication
            (0x0006, Class::Request, 6),
            (0x0116, Class::ErrorResponse, 6),
        ] {
            let m = decode(&ms_turn(kind, id, &SOFTWARE)).expect("MS-TURN");
            assert_eq!((m.style, m.class, m.method), (Style::MsTurn, class, method));
            assert_eq!((m.length, m.id()), (16, &id[..]));
        }
        // The same header without the attribute is not STUN.
        let mut b = ms_turn(0x0003, id, &[]);
        b[HEADER + 4] ^= 0xff;
        assert_eq!(decode(&b), None);
    }

    #[test]
    fn not_stun() {
        let ok = rfc5389(0x0001, [1; 12], &SOFTWARE);
        let mut top_bits = ok.clone();
        top_bits[0] = 0x40;
        let mut odd_len = ok.clone();
        odd_len[3] = 7;
        for b in [
            &ok[..19],
            &top_bits[..],
            &odd_len[..],
            &[0x16, 3, 1, 0, 0x2d][..],
        ] {
            assert_eq!(decode(b), None, "{b:02x?}");
        }
    }

    #[test]
    fn a_cut_message_keeps_its_header() {
        let b = rfc5389(0x0101, [3; 12], &[0; 40]);
        let m = decode(&b[..24]).expect("STUN");
        assert_eq!(
            (m.class, m.length, m.complete),
            (Class::SuccessResponse, 40, false)
        );
    }

    #[test]
    fn the_matcher_counts_answers_errors_and_the_unanswered() {
        let req = |id: u8| decode(&rfc5389(0x0001, [id; 12], &[])).unwrap();
        let ok = |id: u8| decode(&rfc5389(0x0101, [id; 12], &[])).unwrap();
        let err = |id: u8| decode(&rfc5389(0x0111, [id; 12], &[])).unwrap();
        let mut m = Matcher::default();
        m.feed(Side::Client, &req(1), 10);
        m.feed(Side::Client, &req(1), 11); // a repeat counts once
        m.feed(Side::Server, &ok(1), 20);
        m.feed(Side::Server, &req(2), 30); // checks go both ways
        m.feed(Side::Client, &err(2), 40);
        m.feed(Side::Client, &req(3), 50);
        m.feed(Side::Client, &ok(3), 55); // from the side that asked: not an answer
        m.feed(Side::Server, &ok(9), 60); // no such request
        m.feed(Side::Client, &req(4), 95);
        let c = m.counts(100, 30);
        assert_eq!(
            c,
            Counts {
                requests: 4,
                responses: 1,
                errors: 1,
                unanswered: 1,
                pending: 1,
                last_answered_ns: Some(40),
            }
        );
        assert_eq!(m.counts(200, 30).unanswered, 2);
    }
}
