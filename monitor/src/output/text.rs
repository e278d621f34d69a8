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

/// The table into `w`, buffered here (the many small writes of a big table are calls the
/// formatter can inline, not a dynamic call each), ending with a newline.
pub fn write(snap: &Snapshot, w: &mut dyn Write) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, w);
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
        writeln!(
            out,
            "{:<44} {:<44} {:>9} {:>9} {:>11} {:>11} {:>4} {:>4}",
            f.client(),
            f.server(),
            c.packets,
            s.packets,
            c.bytes,
            s.bytes,
            c.rsts + s.rsts,
            c.fins + s.fins
        )?;
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
    out.flush()
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
}
