//! `monitor replay FILE`: the live analysis over a capture file, unprivileged. Frames go
//! through the same parser and `flow::update` as in the kernel, with the capture's clock.

use std::path::Path;

use anyhow::Result;
use monitor_common::{
    config::PortSet,
    parse::{parse_ethernet, parse_l3, Captured, Packet, Skip},
};

use crate::{
    alerts::{AlertConfig, AlertEngine, Transition},
    capture::{self, CaptureError, Frames, Link, Reader},
    engine::Engine,
    error::usage,
    output,
    record::writer::{Recorder, Rotation, RunMeta},
    snapshot::Snapshot,
};

/// Runs the analysis over every frame of `path` (`-`: standard input). A damaged file is
/// a usage error naming the byte offset; nothing is printed from a half-read file. A
/// capture cut mid-record is analysed up to the cut, with a warning on stderr.
pub fn analyse(path: &Path, ports: &PortSet) -> Result<Snapshot> {
    let reader = open(path)?;
    let (snap, frames) = analyse_reader(reader, ports).map_err(|e| damaged(path, e))?;
    warn_if_cut(path, &frames);
    Ok(snap)
}

/// The name a capture goes by in messages.
fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "on standard input".to_string()
    } else {
        path.display().to_string()
    }
}

fn open(path: &Path) -> Result<Reader> {
    Reader::open(path).map_err(|e| {
        usage(
            format!("cannot read capture {}: {e}", shown(path)),
            "give a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap), possibly gzip- or \
             zstd-compressed, or - for standard input",
        )
    })
}

fn damaged(path: &Path, e: CaptureError) -> anyhow::Error {
    usage(
        format!("capture {} is damaged: {e}", shown(path)),
        "the file may be damaged, not a capture or of a link type the monitor does not read; \
         check it with `capinfos`",
    )
}

/// A cut capture is still analysed, as tshark does, but never silently.
fn warn_if_cut(path: &Path, frames: &Frames) {
    if let Some(cut) = &frames.cut {
        output::status(&format!(
            "warning: capture {} is cut short: {cut}; the {} complete frames before it were \
             analysed",
            shown(path),
            frames.count
        ));
    }
}

/// The frames of an opened capture through the parser and the host engine.
pub fn analyse_reader(reader: Reader, ports: &PortSet) -> Result<(Snapshot, Frames), CaptureError> {
    let mut engine = Engine::new(ports);
    let mut pkt = Packet::default();
    let frames = reader.for_each(|frame| match parse_frame(&frame, &mut pkt) {
        Ok(()) => engine.packet(&pkt, 1, frame.ts_ns),
        Err(skip) => engine.skipped(skip),
    })?;
    Ok((engine.snapshot(), frames))
}

/// One captured frame through the parser. Its headers are held to the length the frame had
/// on the wire (the record's original length), not to the bytes a snap length kept: an IP
/// length past the frame is malformed here as in the kernel.
pub fn parse_frame(frame: &capture::Packet<'_>, pkt: &mut Packet) -> Result<(), Skip> {
    let f = Captured {
        bytes: frame.data,
        wire_len: frame.orig_len as usize,
    };
    match frame.link {
        Link::Ethernet => parse_ethernet(&f, pkt),
        Link::L3 { offset, ethertype } => parse_l3(&f, offset, ethertype, pkt),
    }
}

/// Capture time between two judgements: the live monitor's default tick.
pub const TICK_NS: u64 = 1_000_000_000;

/// The analysis with the alert engine judging every second of capture time, as the live
/// monitor would have; `each` sees every tick's snapshot and transitions. Returns the
/// last snapshot, judged, and what the read found.
pub fn judge_reader(
    reader: Reader,
    ports: &PortSet,
    alerts: &mut AlertEngine,
    mut each: impl FnMut(&Snapshot, &[Transition]),
) -> Result<(Snapshot, Frames), CaptureError> {
    let mut engine = Engine::new(ports);
    let mut pkt = Packet::default();
    let mut next_tick: Option<u64> = None;
    let mut judge = |engine: &Engine, at: u64, alerts: &mut AlertEngine| {
        let mut snap = engine.snapshot();
        snap.now_ns = at;
        let t = alerts.tick(&mut snap, &[]);
        each(&snap, &t);
        snap
    };
    let frames = reader.for_each(|frame| {
        let ts = frame.ts_ns;
        match next_tick {
            None => next_tick = Some(ts - ts % TICK_NS + TICK_NS),
            Some(mut due) => {
                // A quiet stretch of the capture still gets its ticks (alerts clear).
                let mut ticks = 0;
                while ts >= due && ticks < 3600 {
                    judge(&engine, due, alerts);
                    due += TICK_NS;
                    ticks += 1;
                }
                if ts >= due {
                    due = ts - ts % TICK_NS + TICK_NS;
                }
                next_tick = Some(due);
            }
        }
        match parse_frame(&frame, &mut pkt) {
            Ok(()) => engine.packet(&pkt, 1, ts),
            Err(skip) => engine.skipped(skip),
        }
    })?;
    let end = engine.last_ts();
    Ok((judge(&engine, end, alerts), frames))
}

pub fn run(args: crate::cli::ReplayArgs) -> Result<()> {
    let ports = args
        .ports
        .unwrap_or_else(monitor_common::config::PortSet::all);
    // Before anything is read or written: no output may be one of the inputs.
    let mut inputs = vec![("FILE", args.file.as_path())];
    if let Some(c) = &args.config {
        inputs.push(("--config", c.as_path()));
    }
    if let Some(r) = &args.record.record {
        output::file::check_outputs(&[("--record", r)], &inputs)?;
    }
    output::file::check_stdout(&inputs)?;
    let cfg = match &args.config {
        Some(p) => AlertConfig::load(p, TICK_NS as f64 / 1e9)?,
        None => AlertConfig::default(),
    };
    let reader = open(&args.file)?;
    let mut recorder = match &args.record.record {
        Some(path) => Some(Recorder::create(
            path,
            RunMeta {
                source: "replay",
                interfaces: Vec::new(),
                capture: Some(&args.file),
                ports: ports.to_string(),
                config: serde_json::to_value(&cfg).unwrap_or_default(),
                start_ns: 0,
            },
            Rotation::of(&args.record),
        )?),
        None => None,
    };
    let mut alerts = AlertEngine::new(cfg);
    let mut write_error = None;
    let (snap, frames) = judge_reader(reader, &ports, &mut alerts, |snap, t| {
        if let Some(r) = recorder.as_mut() {
            if let Err(e) = r.tick(snap, &[], t) {
                write_error.get_or_insert(e);
            }
        }
    })
    .map_err(|e| {
        // No recording of a capture that could not be read to its end: the temporary file
        // goes, an existing file at the path stays as it was.
        drop(recorder.take());
        damaged(&args.file, e)
    })?;
    warn_if_cut(&args.file, &frames);
    let text = if args.json {
        output::json::render(&snap)
    } else {
        output::text::render(&snap)
    };
    // A closed pipe downstream ends the output quietly; any other failure is an error.
    output::print(&text)?;
    if let Some(e) = write_error {
        return Err(anyhow::Error::from(e).context("writing the recording"));
    }
    if let Some(r) = recorder.as_mut() {
        r.commit()
            .map_err(|e| anyhow::Error::from(e).context("writing the recording"))?;
    }
    Ok(())
}
