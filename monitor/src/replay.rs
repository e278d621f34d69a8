//! `monitor replay FILE`: the live analysis over a capture file, unprivileged. Frames go
//! through the same parser and `flow::update` as in the kernel, with the capture's clock.

use std::path::Path;

use anyhow::Result;
use monitor_common::{
    config::PortSet,
    parse::{parse_ethernet, parse_l3, Packet, Skip},
};

use crate::{
    capture::{CaptureError, Link, Reader},
    engine::Engine,
    error::usage,
    output,
    snapshot::Snapshot,
};

/// Runs the analysis over every frame of `path`. A damaged file is a usage error naming
/// the byte offset; nothing is printed from a half-read file.
pub fn analyse(path: &Path, ports: &PortSet) -> Result<Snapshot> {
    let reader = Reader::open(path).map_err(|e| {
        usage(
            format!("cannot read capture {}: {e}", path.display()),
            "give a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap)",
        )
    })?;
    analyse_reader(&reader, ports).map_err(|e| {
        usage(
            format!("capture {} is damaged: {e}", path.display()),
            "the file may be truncated or not a capture; check it with `capinfos`",
        )
    })
}

/// The frames of an opened capture through the parser and the host engine.
pub fn analyse_reader(reader: &Reader, ports: &PortSet) -> Result<Snapshot, CaptureError> {
    let mut engine = Engine::new(ports);
    let mut pkt = Packet::default();
    reader.for_each(|frame| {
        let parsed = match frame.link {
            Link::Ethernet => parse_ethernet(frame.data, &mut pkt),
            Link::L3 { offset, ethertype } => parse_l3(frame.data, offset, ethertype, &mut pkt),
            Link::Unsupported(_) => Err(Skip::NotIp),
        };
        match parsed {
            Ok(()) => engine.packet(&pkt, 1, frame.ts_ns),
            Err(skip) => engine.skipped(skip),
        }
    })?;
    Ok(engine.snapshot())
}

pub fn run(args: crate::cli::ReplayArgs) -> Result<()> {
    let ports = args
        .ports
        .unwrap_or_else(monitor_common::config::PortSet::all);
    let snap = analyse(&args.file, &ports)?;
    let text = if args.json {
        output::json::render(&snap)
    } else {
        output::text::render(&snap)
    };
    // A closed pipe downstream is not an error of ours.
    let _ = output::stdout_line(&text);
    Ok(())
}
