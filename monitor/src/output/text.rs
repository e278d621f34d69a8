//! A plain table for a terminal or a log, one line per flow.

use std::{io::Write, net::SocketAddr};

use monitor_common::flow::{C2S, S2C};

use crate::snapshot::Snapshot;

/// The table as a string (tests; the outputs write it with [`write`]).
pub fn render(snap: &Snapshot) -> String {
    let mut out = Vec::new();
    // Writing into memory cannot fail.
    let _ = write(snap, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Wider than any cell of the table, and than any address or count.
const CELL: usize = 64;

/// `text` in a cell `width` wide, left- or right-aligned as `{:<width}` or `{:>width}` puts
/// it, then `end`: padded with one write, where the formatter pads a character at a time.
fn cell(
    out: &mut impl Write,
    text: &[u8],
    width: usize,
    left: bool,
    end: u8,
) -> std::io::Result<()> {
    let pad = [b' '; CELL];
    let pad = &pad[..width.saturating_sub(text.len())];
    let (a, b) = if left { (text, pad) } else { (pad, text) };
    out.write_all(a)?;
    out.write_all(b)?;
    out.write_all(&[end])
}

/// An address as `SocketAddr` displays it, into `buf`: an IPv4 one digit by digit (the
/// formatter's machinery was most of what a table of 200,000 flows cost, and `--headless`
/// prints it every tick; BENCHMARKS.md), an IPv6 one by the formatter.
fn address(a: SocketAddr, buf: &mut [u8; CELL]) -> &[u8] {
    let mut n = 0;
    let mut put = |b: &[u8]| {
        buf[n..n + b.len()].copy_from_slice(b);
        n += b.len();
    };
    let mut digits = itoa::Buffer::new();
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    put(b".");
                }
                put(digits.format(*o).as_bytes());
            }
            put(b":");
            put(digits.format(v4.port()).as_bytes());
        }
        SocketAddr::V6(_) => {
            let mut free = &mut buf[..];
            // A displayed socket address is shorter than a cell.
            let _ = write!(free, "{a}");
            n = CELL - free.len();
        }
    }
    &buf[..n]
}

/// One line of the table, read from its row.
#[derive(Clone, Copy)]
struct Line {
    client: SocketAddr,
    server: SocketAddr,
    counts: [u64; 6],
}

/// The table into `out` (a buffered stream: a big table is many small writes), ending with
/// a newline.
pub fn write(snap: &Snapshot, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<44} {:<44} {:>9} {:>9} {:>11} {:>11} {:>4} {:>4}",
        "CLIENT", "SERVER", "PKTS C>S", "PKTS S>C", "BYTES C>S", "BYTES S>C", "RST", "FIN"
    )?;
    let lines = snap.flows.read().in_report_order(|_, r| {
        let f = &r.flow;
        let (c, s) = (&f.state.dir[C2S], &f.state.dir[S2C]);
        Line {
            client: f.client(),
            server: f.server(),
            counts: [
                c.packets,
                s.packets,
                c.bytes,
                s.bytes,
                u64::from(c.rsts + s.rsts),
                u64::from(c.fins + s.fins),
            ],
        }
    });
    let mut buf = [0u8; CELL];
    let mut digits = itoa::Buffer::new();
    for l in &lines {
        // As the header's format: two addresses left in 44 columns, six counts right.
        cell(out, address(l.client, &mut buf), 44, true, b' ')?;
        cell(out, address(l.server, &mut buf), 44, true, b' ')?;
        for (k, (n, width)) in l.counts.iter().zip([9, 9, 11, 11, 4, 4]).enumerate() {
            let end = if k == 5 { b'\n' } else { b' ' };
            cell(out, digits.format(*n).as_bytes(), width, false, end)?;
        }
    }
    writeln!(
        out,
        "flows {}  evicted {}  lost flows {}  lost events {}  lost samples {}",
        lines.len(),
        snap.evicted_flows,
        snap.lost_flows,
        snap.counters.get(monitor_common::stats::EVENTS_LOST),
        snap.counters.get(monitor_common::stats::SAMPLES_LOST)
    )?;
    let k = super::json::Skipped::of(snap);
    writeln!(
        out,
        "not analysed: malformed {}  truncated {}  fragments {}  too many headers {}  \
         not tcp {}  not ip {}",
        k.malformed, k.truncated, k.fragments, k.too_many_headers, k.not_tcp, k.not_ip
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use monitor_common::stats;

    use crate::{model::Counters, snapshot::Snapshot};

    #[test]
    fn lost_samples_are_in_the_totals_of_text_and_json() {
        let mut c = Counters::default();
        c.0[stats::SAMPLES_LOST as usize] = 3;
        let snap = Snapshot::new(Vec::new(), &[], c, 1);
        assert!(
            super::render(&snap).contains("lost events 0  lost samples 3"),
            "{}",
            super::render(&snap)
        );
        let json: serde_json::Value =
            serde_json::from_str(&super::super::json::render(&snap)).expect("JSON");
        assert_eq!(json["totals"]["lost_samples"], 3);
    }

    /// A cell is what the formatter's own display and padding make of it, for the widest
    /// values too.
    #[test]
    fn cells_pad_as_the_formatter_does() {
        let mut buf = [0u8; super::CELL];
        for a in [
            "[fe80::1:2:3:4%4294967295]:65535",
            "[::ffff:10.0.0.1]:1",
            "10.100.0.0:40000",
            "255.255.255.255:65535",
            "0.0.0.0:0",
        ] {
            let a: std::net::SocketAddr = a.parse().expect("an address");
            let mut out = Vec::new();
            super::cell(&mut out, super::address(a, &mut buf), 44, true, b' ').expect("cell");
            assert_eq!(String::from_utf8_lossy(&out), format!("{a:<44} "));
        }
        for n in [0u64, 7, 123_456_789, u64::MAX] {
            let mut out = Vec::new();
            let mut digits = itoa::Buffer::new();
            super::cell(&mut out, digits.format(n).as_bytes(), 9, false, b'\n').expect("cell");
            assert_eq!(String::from_utf8_lossy(&out), format!("{n:>9}\n"));
        }
    }
}
