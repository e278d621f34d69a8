//! A plain table for a terminal or a log, one line per flow.

use std::io::Write;

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

/// `v` in a cell `width` wide, left- or right-aligned as `{:<width}` or `{:>width}` puts it,
/// then `end`. Formatted unpadded into a stack buffer and padded with one write: the
/// formatter pads a character at a time, which was most of what the table of 200,000 flows
/// cost (`--headless` prints it every tick; BENCHMARKS.md).
fn cell(
    out: &mut impl Write,
    v: impl std::fmt::Display,
    width: usize,
    left: bool,
    end: u8,
) -> std::io::Result<()> {
    let mut buf = [b' '; CELL];
    let mut free = &mut buf[..];
    write!(free, "{v}")?;
    let n = CELL - free.len();
    let pad = [b' '; CELL];
    let pad = &pad[..width.saturating_sub(n)];
    let text = &buf[..n];
    let (a, b) = if left { (text, pad) } else { (pad, text) };
    out.write_all(a)?;
    out.write_all(b)?;
    out.write_all(&[end])
}

/// The table into `out` (a buffered stream: a big table is many small writes), ending with
/// a newline.
pub fn write(snap: &Snapshot, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<44} {:<44} {:>9} {:>9} {:>11} {:>11} {:>4} {:>4}",
        "CLIENT", "SERVER", "PKTS C>S", "PKTS S>C", "BYTES C>S", "BYTES S>C", "RST", "FIN"
    )?;
    // Read in place, in report order: a big table is not copied to be printed.
    let table = snap.flows.read();
    let order = table.sorted();
    for f in order.iter().filter_map(|&i| table.row(i)).map(|r| &r.flow) {
        let (c, s) = (&f.state.dir[C2S], &f.state.dir[S2C]);
        // As the header's format: two addresses left in 44 columns, six counts right.
        cell(out, f.client(), 44, true, b' ')?;
        cell(out, f.server(), 44, true, b' ')?;
        cell(out, c.packets, 9, false, b' ')?;
        cell(out, s.packets, 9, false, b' ')?;
        cell(out, c.bytes, 11, false, b' ')?;
        cell(out, s.bytes, 11, false, b' ')?;
        cell(out, c.rsts + s.rsts, 4, false, b' ')?;
        cell(out, c.fins + s.fins, 4, false, b'\n')?;
    }
    writeln!(
        out,
        "flows {}  evicted {}  lost flows {}  lost events {}  lost samples {}",
        order.len(),
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

    /// A cell is what the formatter's own padding makes of it, for the widest values too.
    #[test]
    fn cells_pad_as_the_formatter_does() {
        let v6: std::net::SocketAddr = "[fe80::1:2:3:4%4294967295]:65535".parse().expect("v6");
        let v4: std::net::SocketAddr = "10.100.0.0:40000".parse().expect("v4");
        for a in [v4, v6] {
            let mut out = Vec::new();
            super::cell(&mut out, a, 44, true, b' ').expect("cell");
            assert_eq!(String::from_utf8_lossy(&out), format!("{a:<44} "));
        }
        for n in [0u64, 7, 123_456_789, u64::MAX] {
            let mut out = Vec::new();
            super::cell(&mut out, n, 9, false, b'\n').expect("cell");
            assert_eq!(String::from_utf8_lossy(&out), format!("{n:>9}\n"));
        }
    }
}
