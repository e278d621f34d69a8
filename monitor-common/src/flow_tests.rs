//! The per-packet flow update and roles, on hand-built packets.

use super::*;
use crate::{config::PortSet, parse::Packet};

fn pkt(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Packet {
    let mut p = Packet {
        family: 4,
        ttl: 64,
        sport,
        dport,
        flags,
        ..Packet::default()
    };
    p.src[..4].copy_from_slice(&src);
    p.dst[..4].copy_from_slice(&dst);
    p
}

#[test]
fn both_directions_share_one_key() {
    let fwd = pkt([10, 0, 0, 1], 40000, [10, 0, 0, 2], 50001, 0);
    let rev = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, 0);
    let (k1, a1) = FlowKey::of(&fwd);
    let (k2, a2) = FlowKey::of(&rev);
    assert_eq!(k1, k2);
    assert_ne!(a1, a2);
    // Same address, ports decide.
    let x = pkt([10, 0, 0, 1], 2, [10, 0, 0, 1], 1, 0);
    let y = pkt([10, 0, 0, 1], 1, [10, 0, 0, 1], 2, 0);
    assert_eq!(FlowKey::of(&x).0, FlowKey::of(&y).0);
}

#[test]
fn roles_from_syn_then_port_then_guess() {
    let cfg = "50000-59999".parse::<PortSet>().unwrap().to_config(0);
    use crate::parse::{ACK, SYN};
    // Watched destination port: the source is the client, even on a server's reply.
    let p = pkt([10, 0, 0, 1], 40000, [10, 0, 0, 2], 50001, ACK);
    assert_eq!(
        src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
        (true, ROLE_BY_PORT)
    );
    let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, ACK);
    assert_eq!(
        src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
        (false, ROLE_BY_PORT)
    );
    // The SYN decides, even against the ports.
    let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, SYN);
    assert_eq!(
        src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
        (true, ROLE_BY_SYN)
    );
    let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 50002, SYN);
    assert_eq!(
        src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
        (true, ROLE_BY_SYN)
    );
    let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 50002, SYN | ACK);
    assert_eq!(
        src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
        (false, ROLE_BY_SYNACK)
    );
    let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 50002, ACK);
    assert_eq!(
        src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
        (false, ROLE_BY_GUESS)
    );
}

#[test]
fn reset_evidence_ttl_ipid_burst_and_syn_options() {
    use crate::parse::{ACK, RST, SYN};
    let run = |resets: &[(u8, u16, u64)]| {
        let c = |flags| pkt([10, 0, 0, 1], 40000, [10, 0, 0, 2], 50001, flags);
        let sv = |flags| pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, flags);
        let mut syn = c(SYN);
        syn.opts = crate::parse::TcpOpts {
            mss: 1460,
            wscale: 7,
            sack_perm: true,
            timestamps: true,
            nops: 1,
        };
        let (key, a) = FlowKey::of(&syn);
        let mut st = FlowState::new(key, a, src_is_client(&syn, false, true), 0);
        update(&mut st, a, &syn, 1, 1, false);
        let mut synack = sv(SYN | ACK);
        synack.opts = crate::parse::TcpOpts {
            mss: 1380,
            ..crate::parse::TcpOpts::default_absent()
        };
        update(&mut st, !a, &synack, 1, 2, false);
        let mut ack = c(ACK);
        ack.ip_id = 77;
        update(&mut st, a, &ack, 1, 3, false);
        for &(ttl, ip_id, t) in resets {
            let mut r = sv(RST);
            r.ttl = ttl;
            r.ip_id = ip_id;
            update(&mut st, !a, &r, 1, t, false);
        }
        st
    };
    let honest = run(&[(64, 5, 10_000_000)]);
    assert_eq!(
        (
            honest.dir[S2C].rsts,
            honest.dir[S2C].anomalies.suspect_injected_rsts
        ),
        (1, 0)
    );
    assert_eq!(
        run(&[(50, 5, 10_000_000)]).dir[S2C]
            .anomalies
            .suspect_injected_rsts,
        1,
        "TTL off"
    );
    assert_eq!(
        run(&[(64, 77, 10_000_000)]).dir[S2C]
            .anomalies
            .suspect_injected_rsts,
        1,
        "IP-ID copied"
    );
    let burst = run(&[(64, 5, 10_000_000), (64, 6, 10_200_000)]);
    assert_eq!(
        burst.dir[S2C].anomalies.suspect_injected_rsts, 1,
        "second reset within 1 ms"
    );
    // The SYN offered SACK, timestamps and a scale; the SYN/ACK returned none of them.
    let o = (honest.dir[C2S].syn_opts, honest.dir[S2C].syn_opts);
    assert_eq!(
        o.0,
        SynOpts {
            mss: 1460,
            wscale_p1: 8,
            bits: SYN_OPT_SEEN | SYN_OPT_SACK | SYN_OPT_TIMESTAMPS,
            nops: 1
        }
    );
    assert_eq!(
        o.1,
        SynOpts {
            mss: 1380,
            wscale_p1: 0,
            bits: SYN_OPT_SEEN,
            nops: 0
        }
    );
}

#[test]
fn direction_follows_the_client() {
    let cfg = "50001".parse::<PortSet>().unwrap().to_config(0);
    let reply = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, 0);
    let (_, src_is_a) = FlowKey::of(&reply);
    let roles = src_is_client(&reply, cfg.watches(reply.sport), cfg.watches(reply.dport));
    let st = FlowState::new(FlowKey::default(), src_is_a, roles, 7);
    assert_eq!(st.direction(src_is_a), S2C);
    assert_eq!(st.direction(!src_is_a), C2S);
    assert_eq!(st.first_seen_ns, 7);
}
