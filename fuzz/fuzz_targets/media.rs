//! Arbitrary bytes through every media decoder (TLS records, the pseudo-TLS checks, STUN,
//! MS-TURN and RFC 4571 framing) and through the verdict, the bytes cut into samples of
//! both directions: none may panic, whatever a flow's first bytes say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::media::{
    pseudo_tls,
    stream::PayloadSample,
    stun, tls, turn,
    verdict::{judge, Exchange, Reset},
};

fuzz_target!(|data: &[u8]| {
    let _ = tls::decode(data);
    let _ = pseudo_tls::is_client_hello(data);
    let _ = pseudo_tls::check_server_hello(data);
    let _ = stun::decode(data);
    let _ = turn::detect(data);
    for framing in [
        turn::Framing::MsTurn,
        turn::Framing::Rfc4571,
        turn::Framing::Bare,
    ] {
        let _ = turn::frames(data, framing);
    }
    // The first byte splits the rest into samples, alternating sides, each with its own
    // sequence number and time taken from the bytes.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(n % 97);
    let (mut client, mut server) = (Vec::new(), Vec::new());
    for (i, part) in rest.chunks(chunk).enumerate() {
        let word = |k: usize| part.get(k).copied().unwrap_or(0);
        let sample = PayloadSample {
            seq: u32::from_be_bytes([word(0), word(1), 0, 0]).wrapping_add(i as u32 * 64),
            payload_len: part.len() as u32 + u32::from(word(2) % 3),
            time_ns: u64::from(word(3)) * 1_000_000 * (i as u64 + 1),
            bytes: part.to_vec(),
        };
        if i % 2 == 0 {
            client.push(sample)
        } else {
            server.push(sample)
        }
    }
    let reset = (n & 0x80 != 0).then_some(Reset {
        from: if n & 0x40 != 0 {
            stun::Side::Server
        } else {
            stun::Side::Client
        },
        time_ns: u64::from(n) * 1_000_000,
    });
    let media = judge(&Exchange {
        client: &client,
        server: &server,
        reset,
        now_ns: u64::from(n) * 10_000_000,
        reply_timeout_ns: 5_000_000_000,
        stun_timeout_ns: 5_000_000_000,
    });
    if let Some(e) = media.evidence {
        let _ = e.describe();
    }
});
