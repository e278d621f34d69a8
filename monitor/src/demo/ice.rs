//! ICE connectivity checks over TCP, as RFC 6544 runs them on a TCP candidate: STUN Binding
//! requests (RFC 5389 section 7) both ways, each message in RFC 4571's 2-byte length
//! framing, every request answered by a success response with the same transaction ID and
//! the asker's address in XOR-MAPPED-ADDRESS (section 15.2). The client (the active side)
//! checks first; the server answers and then checks the client every half second, as the
//! controlled agent's triggered and consent checks do.

use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use super::traffic::{fresh, stopped};
use crate::media::{
    stun::{self, Class, MAGIC_COOKIE},
    turn,
};

const BINDING: u16 = 0x0001;
const BINDING_OK: u16 = 0x0101;
/// How often the server checks the client.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// PRIORITY (0x0024) and ICE-CONTROLLING (0x802A) or ICE-CONTROLLED (0x8029), RFC 8445
/// section 16.1: what marks a Binding request as an ICE check.
fn check_attributes(controlling: bool) -> Vec<u8> {
    let role: u16 = if controlling { 0x802a } else { 0x8029 };
    [
        &[0x00, 0x24, 0x00, 0x04][..],
        &0x6e00_01ffu32.to_be_bytes(),
        &role.to_be_bytes(),
        &[0x00, 0x08],
        &fresh::<8>(),
    ]
    .concat()
}

/// XOR-MAPPED-ADDRESS (0x0020) of an IPv4 `addr`.
fn xor_mapped(addr: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = addr.ip() else {
        return Vec::new();
    };
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = u32::from(ip) ^ MAGIC_COOKIE;
    [
        &[0x00, 0x20, 0x00, 0x08, 0x00, 0x01][..],
        &port.to_be_bytes(),
        &ip.to_be_bytes(),
    ]
    .concat()
}

fn request(controlling: bool) -> Vec<u8> {
    turn::rfc4571(&stun::rfc5389(
        BINDING,
        fresh(),
        &check_attributes(controlling),
    ))
}

/// The active side: one check, then answers to the peer's checks until the demo stops.
pub fn check(mut sock: TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    sock.write_all(&request(true))?;
    exchange(&mut sock, stop, None)
}

/// The passive side: answers, and checks the peer every `CHECK_EVERY` once it was checked.
pub fn serve(mut sock: TcpStream, stop: &AtomicBool) {
    let _ = sock.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = exchange(&mut sock, stop, Some(CHECK_EVERY));
}

/// Reads framed STUN messages and answers each Binding request; with `checks`, also sends
/// a request of its own that often, from the first request answered on.
fn exchange(
    sock: &mut TcpStream,
    stop: &AtomicBool,
    checks: Option<Duration>,
) -> std::io::Result<()> {
    let peer = sock.peer_addr()?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next_check: Option<Instant> = None;
    while !stopped(stop) {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        let frames = turn::frames(&pending, turn::Framing::Rfc4571);
        let whole: Vec<_> = frames.iter().filter(|f| f.complete).collect();
        for m in whole.iter().filter_map(|f| f.stun.as_ref()) {
            if m.class == Class::Request && m.method == 1 {
                let mut id = [0; 12];
                id.copy_from_slice(m.id());
                let answer = stun::rfc5389(BINDING_OK, id, &xor_mapped(peer));
                sock.write_all(&turn::rfc4571(&answer))?;
                if next_check.is_none() {
                    next_check = checks.map(|_| Instant::now());
                }
            }
        }
        let used = whole.last().map_or(0, |f| f.start + 2 + f.length);
        pending.drain(..used);
        if let (Some(at), Some(every)) = (next_check, checks) {
            if Instant::now() >= at {
                sock.write_all(&request(false))?;
                next_check = Some(at + every);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_a_framed_binding_request_with_its_ice_attributes() {
        let b = request(true);
        assert_eq!(turn::detect(&b), Some(turn::Framing::Rfc4571));
        let f = &turn::frames(&b, turn::Framing::Rfc4571)[0];
        let m = f.stun.as_ref().expect("STUN");
        assert_eq!(
            (m.class, m.method, m.style),
            (Class::Request, 1, stun::Style::Rfc5389)
        );
        assert!(f.complete && m.complete);
        assert_eq!(&b[2 + 20..2 + 24], &[0x00, 0x24, 0x00, 0x04]);
        assert_eq!(&b[2 + 28..2 + 30], &[0x80, 0x2a]);
    }

    #[test]
    fn the_mapped_address_is_xored_with_the_cookie() {
        // RFC 5769 section 2.2's sample: 192.0.2.1 port 32853 -> 0xa147 and 0xe112a643.
        let a = xor_mapped("192.0.2.1:32853".parse().expect("addr"));
        assert_eq!(a, [0, 0x20, 0, 8, 0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
    }
}
