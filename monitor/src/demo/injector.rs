//! The middlebox that misidentifies media as TLS: it watches one interface, and when it
//! sees a ClientHello from its target it either gives up on it, injecting resets both ways
//! ([`Mode::Reset`]), or acts as a decrypting firewall, answering the hello itself in the
//! server's name with a real TLS ServerHello (another cipher), a Certificate and a
//! ServerHelloDone, then resetting both sides ([`Mode::Intercept`]; the lab's nftables
//! holds the hello back from the server). nftables cannot forge packets, so this is a
//! packet socket and a raw socket in the middlebox namespace. What it sends leaves with the
//! middlebox's own TTL: one hop "closer" than the far end's packets, the evidence the
//! monitor marks as suspect injected.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{bail, Result};

use super::sys;
use crate::media::tls;
use monitor_common::{
    craft::TcpFrame,
    parse::{parse_l3, Packet, ACK, ETH_P_IP, PSH, RST},
};

/// What the middlebox does to its target's ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Resets both sides right after it (the hello reaches the server).
    Reset,
    /// Answers it in the server's name ([`firewall_answer`]), then resets both sides.
    Intercept,
}

/// The certificate the firewall presents: a self-signed one for edge.example.com, as an
/// inspecting firewall re-signs the server's with its own authority.
const FIREWALL_CERT: &[u8] = include_bytes!("../../../testdata/media/edge.example.com.der");

/// What a decrypting firewall answers a ClientHello with: one TLS 1.0 record holding a
/// ServerHello choosing TLS_RSA_WITH_AES_128_CBC_SHA (0x002f), a Certificate and a
/// ServerHelloDone. The genuine MS-TURN server would send an 83-byte ServerHello with
/// cipher 0x0018 and no Certificate (`media/pseudo_tls.rs`).
pub fn firewall_answer() -> Vec<u8> {
    let flight = [
        tls::server_hello_message(0x0301, &[0x4f; 32], &[0x46; 32], 0x002f),
        tls::certificate_of(FIREWALL_CERT),
        tls::handshake(tls::SERVER_HELLO_DONE, &[]),
    ]
    .concat();
    tls::record_of(tls::HANDSHAKE, 0x0301, &flight)
}

fn last_err<T>(what: &str) -> Result<T> {
    bail!("{what}: {}", std::io::Error::last_os_error())
}

/// The Internet checksum over `chunks`.
fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        for pair in c.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], 0])
            };
            sum += w as u32;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 TCP packet with valid IP and TCP checksums.
pub fn ipv4_packet(f: &TcpFrame) -> Vec<u8> {
    let (mut p, _) = f.ip();
    let ihl = ((p[0] & 0x0f) as usize) * 4;
    let ip_sum = checksum(&[&p[..ihl]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp_len = (p.len() - ihl) as u16;
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    let sum = checksum(&[&pseudo, &p[ihl..]]);
    p[ihl + 16..ihl + 18].copy_from_slice(&sum.to_be_bytes());
    p
}

pub struct Injector {
    sniff: OwnedFd,
    raw: OwnedFd,
    target: Ipv4Addr,
    port: u16,
    mode: Mode,
}

impl Injector {
    /// Opens the sockets; call from a thread inside the middlebox namespace. `target` is
    /// the client whose hellos to port `port` it acts on, seen on `iface`.
    pub fn open(iface: &str, target: Ipv4Addr, port: u16, mode: Mode) -> Result<Self> {
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: plain socket calls; every descriptor is owned right after creation.
        unsafe {
            let index = libc::if_nametoindex(name.as_ptr());
            if index == 0 {
                return last_err(&format!("interface {iface}"));
            }
            let proto = (libc::ETH_P_IP as u16).to_be();
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                proto as i32,
            );
            if fd < 0 {
                return last_err("packet socket");
            }
            let sniff = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            let (addr, len) = sys::raw(&sll);
            if libc::bind(fd, addr, len) != 0 {
                return last_err("binding the packet socket");
            }
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
            let rfd = libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            );
            if rfd < 0 {
                return last_err("raw socket");
            }
            Ok(Self {
                sniff,
                raw: OwnedFd::from_raw_fd(rfd),
                target,
                port,
                mode,
            })
        }
    }

    /// Waits up to 100 ms for a packet; acts when it is the target's ClientHello. Returns
    /// whether it did.
    pub fn poll(&self) -> Result<bool> {
        let mut buf = [0u8; 2048];
        // SAFETY: reading into a local buffer of the given size.
        let n = unsafe {
            libc::recv(
                self.sniff.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            return Ok(false);
        }
        let mut pkt = Packet::default();
        if parse_l3(&buf[..n as usize], 0, ETH_P_IP, &mut pkt).is_err() {
            return Ok(false);
        }
        let src = Ipv4Addr::new(pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]);
        let dst = Ipv4Addr::new(pkt.dst[0], pkt.dst[1], pkt.dst[2], pkt.dst[3]);
        let is_hello = pkt.head_len as usize >= 6
            && pkt.head[0] == 0x16
            && pkt.head[1] == 3
            && pkt.head[5] == 1;
        if src != self.target || pkt.dport != self.port || !is_hello {
            return Ok(false);
        }
        let hello_end = pkt.seq.wrapping_add(pkt.payload_len);
        // The answer in the server's name: its next sequence number is what the hello
        // acknowledged.
        let answer = match self.mode {
            Mode::Reset => Vec::new(),
            Mode::Intercept => firewall_answer(),
        };
        let mut to_client = TcpFrame::new(IpAddr::V4(dst), pkt.dport, IpAddr::V4(src), pkt.sport);
        to_client.seq = pkt.ack;
        to_client.ack = hello_end;
        to_client.ip_id = 0;
        if !answer.is_empty() {
            let reply = to_client.clone().flags(PSH | ACK).payload(&answer);
            self.send(&ipv4_packet(&reply), src)?;
            to_client.seq = to_client.seq.wrapping_add(answer.len() as u32);
        }
        let mut to_client = to_client.flags(RST | ACK);
        to_client.window = 0;
        // To the server: in its window, so its stack accepts it. A held hello never got
        // there, so the server still expects its first byte.
        let mut to_server =
            TcpFrame::new(IpAddr::V4(src), pkt.sport, IpAddr::V4(dst), pkt.dport).flags(RST | ACK);
        to_server.seq = match self.mode {
            Mode::Reset => hello_end,
            Mode::Intercept => pkt.seq,
        };
        to_server.ack = pkt.ack;
        to_server.window = 0;
        to_server.ip_id = 0;
        for (f, to) in [(&to_server, dst), (&to_client, src)] {
            self.send(&ipv4_packet(f), to)?;
        }
        Ok(true)
    }

    fn send(&self, p: &[u8], to: Ipv4Addr) -> Result<()> {
        // Bound to a name: a temporary would be gone by the call, its pointer dangling.
        let sa = sys::sockaddr_in(to, 0);
        let (addr, len) = sys::raw(&sa);
        // SAFETY: sending a local buffer to a valid address structure.
        let n = unsafe {
            libc::sendto(
                self.raw.as_raw_fd(),
                p.as_ptr() as *const libc::c_void,
                p.len(),
                0,
                addr,
                len,
            )
        };
        if n < 0 {
            return last_err("sending a forged packet");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{pseudo_tls, stream::PayloadSample, verdict};

    #[test]
    fn the_firewall_answer_is_real_tls_that_the_genuine_server_never_sends() {
        let a = firewall_answer();
        let recs = tls::decode(&a).expect("TLS");
        assert_eq!(recs.len(), 1);
        assert!(recs[0].complete());
        let types: Vec<_> = recs[0]
            .messages
            .iter()
            .filter_map(|m| m.handshake_type())
            .collect();
        assert_eq!(
            types,
            [tls::SERVER_HELLO, tls::CERTIFICATE, tls::SERVER_HELLO_DONE]
        );
        assert!(matches!(
            &recs[0].messages[1],
            tls::RecordMessage::Certificate {
                certificates: Some(1),
                ..
            }
        ));
        // One segment on the lab's 1500-byte links.
        assert!(a.len() < 1400, "{}", a.len());
        // Answering the pseudo-TLS hello, it is an interception.
        let sample = |seq, bytes: Vec<u8>| PayloadSample {
            seq,
            payload_len: bytes.len() as u32,
            time_ns: u64::from(seq),
            bytes,
        };
        let m = verdict::judge(&verdict::Exchange {
            client: &[sample(1, pseudo_tls::client_hello(&[7; 32]))],
            server: &[sample(2, a)],
            reset: None,
            now_ns: 3,
            reply_timeout_ns: 1_000_000_000,
            stun_timeout_ns: 1_000_000_000,
        });
        assert_eq!(m.verdict, Some(verdict::Verdict::Intercepted));
        assert_eq!(m.evidence.and_then(|e| e.got.cipher), Some(0x002f));
    }

    #[test]
    fn checksums_verify_to_zero() {
        let f = TcpFrame::new(
            "10.0.0.1".parse().expect("ip"),
            1234,
            "10.0.0.2".parse().expect("ip"),
            443,
        )
        .flags(RST | ACK)
        .payload(b"abc");
        let p = ipv4_packet(&f);
        assert_eq!(checksum(&[&p[..20]]), 0, "IP header");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, (p.len() - 20) as u8]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "TCP with pseudo-header");
    }
}
