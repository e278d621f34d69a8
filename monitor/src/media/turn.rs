//! How STUN messages are framed on a TCP stream, and the walk along the frames:
//! - MS-TURN ([MS-TURN] 2.1.4 "TCP"): a 4-byte header, type `0x02` (a TURN control
//!   message) or `0x03` (end-to-end data), a reserved zero byte, a 2-byte length;
//! - RFC 4571 (section 2), used by ICE-TCP (RFC 6544): a 2-byte length before each STUN
//!   or media packet;
//! - bare STUN (RFC 5389 section 7.2.2): messages back to back, each sized by its header.
//!
//! The framing is chosen from the first frame, which must hold a STUN message whose own
//! length agrees with the frame's, so arbitrary bytes are rarely taken for a frame.

use super::stun;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    MsTurn,
    Rfc4571,
    Bare,
}

/// MS-TURN frame types.
pub const CONTROL: u8 = 0x02;
pub const DATA: u8 = 0x03;

/// One frame of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame starts in the input.
    pub start: usize,
    /// The MS-TURN type (`CONTROL` or `DATA`); `CONTROL` for the other framings.
    pub kind: u8,
    /// The payload length the frame declares.
    pub length: usize,
    /// The whole frame is present.
    pub complete: bool,
    /// The STUN message it carries (MS-TURN data frames are not read).
    pub stun: Option<stun::StunMessage>,
}

/// The framing of a stream that starts with `bytes`.
pub fn detect(bytes: &[u8]) -> Option<Framing> {
    let agrees = |payload: &[u8], length: usize| {
        stun::decode(payload).is_some_and(|m| m.wire_len() == length)
    };
    match bytes {
        [CONTROL, 0, hi, lo, rest @ ..] if agrees(rest, be16(*hi, *lo)) => {
            return Some(Framing::MsTurn)
        }
        [hi, lo, rest @ ..] if agrees(rest, be16(*hi, *lo)) => return Some(Framing::Rfc4571),
        _ => {}
    }
    if stun::decode(bytes).is_some() {
        return Some(Framing::Bare);
    }
    // Data frames only: taken as MS-TURN when they tile the bytes exactly.
    if bytes.first() == Some(&DATA) {
        let frames = frames(bytes, Framing::MsTurn);
        let end = frames.last().map(|f| f.start + 4 + f.length);
        if frames.iter().all(|f| f.complete) && end == Some(bytes.len()) {
            return Some(Framing::MsTurn);
        }
    }
    None
}

fn be16(hi: u8, lo: u8) -> usize {
    usize::from(u16::from_be_bytes([hi, lo]))
}

/// The frames along `bytes` in `framing`, up to the first that does not fit it; the last
/// may be cut.
pub fn frames(bytes: &[u8], framing: Framing) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let (head, kind, length) = match (framing, rest) {
            (Framing::MsTurn, [kind @ (CONTROL | DATA), 0, hi, lo, ..]) => {
                (4, *kind, be16(*hi, *lo))
            }
            (Framing::Rfc4571, [hi, lo, ..]) => (2, CONTROL, be16(*hi, *lo)),
            (Framing::Bare, _) => match stun::decode(rest) {
                Some(m) => (0, CONTROL, m.wire_len()),
                None => break,
            },
            _ => break,
        };
        let payload = &rest[head..(head + length).min(rest.len())];
        let stun = (kind == CONTROL).then(|| stun::decode(payload)).flatten();
        // A control frame of MS-TURN holds a TURN message, or the framing is not MS-TURN.
        if framing == Framing::MsTurn && kind == CONTROL && stun.is_none() {
            break;
        }
        let complete = payload.len() == length;
        out.push(Frame {
            start: at,
            kind,
            length,
            complete,
            stun,
        });
        if !complete {
            break;
        }
        at += head + length;
    }
    out
}

/// An MS-TURN frame: type, reserved, length, payload.
pub fn ms_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u16).to_be_bytes();
    [&[kind, 0, l[0], l[1]], payload].concat()
}

/// An RFC 4571 frame: length, payload.
pub fn rfc4571(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u16).to_be_bytes()[..], payload].concat()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::stun::tests::{ms_turn, rfc5389, SOFTWARE};

    pub use super::{ms_frame, rfc4571};

    #[test]
    fn ms_turn_frames_carry_control_messages_and_data() {
        let alloc = ms_turn(0x0003, [1; 16], &SOFTWARE);
        let bytes = [
            ms_frame(CONTROL, &alloc),
            ms_frame(DATA, &[0xee; 10]),
            ms_frame(CONTROL, &ms_turn(0x0103, [1; 16], &[])),
        ]
        .concat();
        assert_eq!(detect(&bytes), Some(Framing::MsTurn));
        let f = frames(&bytes, Framing::MsTurn);
        let kinds: Vec<_> = f.iter().map(|f| (f.start, f.kind, f.length)).collect();
        assert_eq!(kinds, [(0, 2, 36), (40, 3, 10), (54, 2, 28)]);
        assert_eq!(f[0].stun.as_ref().map(|m| m.kind), Some(0x0003));
        assert_eq!(f[1].stun, None);
        assert_eq!(f[2].stun.as_ref().map(|m| m.kind), Some(0x0103));
        // Data frames alone, tiling the bytes.
        let data = [ms_frame(DATA, &[1; 5]), ms_frame(DATA, &[2; 7])].concat();
        assert_eq!(detect(&data), Some(Framing::MsTurn));
        assert_eq!(detect(&data[..data.len() - 1]), None);
    }

    #[test]
    fn rfc4571_frames_carry_stun_and_media() {
        let req = rfc5389(0x0001, [5; 12], &SOFTWARE);
        let rtp = [0x80, 0x60, 0, 1, 0, 0, 0, 0];
        let bytes = [rfc4571(&req), rfc4571(&rtp), rfc4571(&req)].concat();
        assert_eq!(detect(&bytes), Some(Framing::Rfc4571));
        let f = frames(&bytes, Framing::Rfc4571);
        assert_eq!(f.len(), 3);
        assert!(f[0].stun.is_some() && f[1].stun.is_none() && f[2].stun.is_some());
        assert_eq!(f[1].start, 2 + 28);
    }

    #[test]
    fn bare_stun_back_to_back() {
        let a = rfc5389(0x0001, [1; 12], &SOFTWARE);
        let b = rfc5389(0x0101, [1; 12], &[]);
        let bytes = [a, b].concat();
        assert_eq!(detect(&bytes), Some(Framing::Bare));
        let f = frames(&bytes, Framing::Bare);
        assert_eq!(f.iter().map(|f| f.start).collect::<Vec<_>>(), [0, 28]);
    }

    #[test]
    fn a_cut_frame_ends_the_walk() {
        let req = rfc5389(0x0001, [5; 12], &SOFTWARE);
        let bytes = [rfc4571(&req), rfc4571(&req)].concat();
        let f = frames(&bytes[..40], Framing::Rfc4571);
        assert_eq!(f.len(), 2);
        assert!(f[0].complete && !f[1].complete);
        // Its STUN header is still read when present.
        assert!(frames(&bytes[..30 + 22], Framing::Rfc4571)[1]
            .stun
            .is_some());
    }

    #[test]
    fn other_bytes_have_no_framing() {
        for b in [
            &b"GET / HTTP/1.1\r\n"[..],
            &[0x16, 3, 1, 0, 0x2d, 1, 0, 0, 0x29][..],
            &ms_frame(CONTROL, &[0; 24])[..],
            &[][..],
        ] {
            assert_eq!(detect(b), None, "{b:02x?}");
        }
    }
}
