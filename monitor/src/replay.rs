//! `monitor replay FILE`: the live analysis over a capture file, unprivileged. Frames go
//! through the same parser and `flow::update` as in the kernel, with the capture's clock.

use std::path::Path;

use anyhow::Result;
use monitor_common::{config::PortSet, flow::FlowKey, parse::Packet};

use crate::{
    alerts::{AlertConfig, AlertEngine},
    capture::{CaptureError, Frames, Reader},
    error::usage,
    evidence::{self, verdict, CaptureFiles, CapturePlan, EvidenceSettings, PlannedCapture},
    host::HostFlows,
    model::{Counters, FlowId, FlowRecord},
    output,
    pipeline::{self, outputs, Pipeline, Tick},
    record::writer::{Recorder, Rotation, RunMeta},
    snapshot::Snapshot,
    table::SharedTable,
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
    Reader::open(path).map_err(|e| cannot_read(path, e))
}

fn cannot_read(path: &Path, e: CaptureError) -> anyhow::Error {
    usage(
        format!("cannot read capture {}: {e}", shown(path)),
        "give a pcap or pcapng file (tcpdump -w, tshark -w, dumpcap), possibly gzip- or \
         zstd-compressed, or - for standard input",
    )
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

/// The frames of an opened capture through the parser and the host analysis (`host.rs`).
pub fn analyse_reader(reader: Reader, ports: &PortSet) -> Result<(Snapshot, Frames), CaptureError> {
    let mut host = HostFlows::new(ports);
    let mut pkt = Packet::default();
    let frames = reader.for_each(|frame| match frame.parse(&mut pkt) {
        Ok(()) => {
            host.packet(&pkt, frame.data, 1, frame.ts_ns);
            // A summary has no use for the payload samples.
            host.discard_samples();
        }
        Err(skip) => host.skipped(skip),
    })?;
    Ok((host.snapshot(), frames))
}

/// Capture time between two judgements: the live monitor's default tick.
pub const TICK_NS: u64 = 1_000_000_000;

/// A capture as a pipeline source: read on a thread of its own through the host analysis (`host.rs`),
/// which hands over a tick every second of capture time (as the live monitor would have
/// judged it), then one at the capture's last timestamp.
pub struct CaptureSource {
    ticks: tokio::sync::mpsc::Receiver<CaptureTick>,
    table: SharedTable,
    reader: Option<std::thread::JoinHandle<Result<Frames, CaptureError>>>,
    /// What the read found, once it ended.
    pub frames: Option<Frames>,
}

impl CaptureSource {
    /// Opens the capture with `open` on the reading thread (a capture reader is not moved
    /// between threads) and starts reading; a capture that cannot be opened is an error
    /// here, before the caller creates any output.
    pub fn start(
        open: impl FnOnce() -> Result<Reader, CaptureError> + Send + 'static,
        ports: PortSet,
        media_samples: u32,
    ) -> Result<Self, CaptureError> {
        let (tx, ticks) = tokio::sync::mpsc::channel(2);
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("monitor-capture".into())
            .spawn(move || {
                let reader = match open() {
                    Ok(r) => {
                        let _ = opened_tx.send(Ok(()));
                        r
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                read_ticks(reader, &ports, media_samples, |t| {
                    // The run stopped taking ticks: the rest are not needed.
                    let _ = tx.blocking_send(t);
                })
            })
            .map_err(|e| CaptureError {
                offset: 0,
                reason: format!("cannot start the capture reader: {e}"),
            })?;
        match opened.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(CaptureError {
                    offset: 0,
                    reason: "the capture reader stopped".into(),
                })
            }
        }
        Ok(Self {
            ticks,
            table: SharedTable::default(),
            reader: Some(reader),
            frames: None,
        })
    }
}

impl pipeline::Source for CaptureSource {
    async fn next(&mut self) -> anyhow::Result<Option<Tick>> {
        if let Some(t) = self.ticks.recv().await {
            self.table.write().apply(t.changed, t.closed);
            let snap = Snapshot::of(self.table.clone(), t.counters, t.now_ns);
            return Ok(Some(
                Tick::new(snap, Vec::new(), t.started).with_samples(t.samples),
            ));
        }
        // No more ticks: the read ended, and how it ended says whether the capture was whole.
        match self.reader.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Ok(frames))) => {
                self.frames = Some(frames);
                Ok(None)
            }
            Some(Ok(Err(e))) => Err(CaptureFailed(e).into()),
            Some(Err(_)) => Err(anyhow::anyhow!("the capture reader panicked")),
            None => Ok(None),
        }
    }
}

/// A capture found damaged while it was read (the front-end names the file).
#[derive(Debug)]
pub struct CaptureFailed(pub CaptureError);

impl std::fmt::Display for CaptureFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CaptureFailed {}

/// What the reading thread hands over at a tick: what changed since the tick before.
pub struct CaptureTick {
    /// Records of the flows that saw packets.
    pub changed: Vec<FlowRecord>,
    /// Records port reuse ended.
    pub closed: Vec<FlowRecord>,
    pub counters: Counters,
    /// The tick's capture time.
    pub now_ns: u64,
    pub samples: Vec<monitor_common::sample::Sample>,
    pub started: std::time::Instant,
}

/// The frames of `reader` through the host analysis (`host.rs`), with `each` given a tick every second of
/// capture time (a quiet stretch still gets its ticks, so alerts clear) and one at the last
/// timestamp.
pub fn read_ticks(
    reader: Reader,
    ports: &PortSet,
    media_samples: u32,
    mut each: impl FnMut(CaptureTick),
) -> Result<Frames, CaptureError> {
    let mut host = HostFlows::new(ports).with_samples(media_samples);
    let mut pkt = Packet::default();
    let mut next_tick: Option<u64> = None;
    // A tick carries the samples of the segments before it, as the kernel's ring would.
    let tick = |host: &mut HostFlows, at: u64| {
        let started = std::time::Instant::now();
        let (changed, closed) = host.take_changes();
        CaptureTick {
            changed,
            closed,
            counters: host.counters().clone(),
            now_ns: at,
            samples: host.take_samples(),
            started,
        }
    };
    let frames = reader.for_each(|frame| {
        let ts = frame.ts_ns;
        match next_tick {
            None => next_tick = Some(ts - ts % TICK_NS + TICK_NS),
            Some(mut due) => {
                let mut ticks = 0;
                while ts >= due && ticks < 3600 {
                    each(tick(&mut host, due));
                    due += TICK_NS;
                    ticks += 1;
                }
                if ts >= due {
                    due = ts - ts % TICK_NS + TICK_NS;
                }
                next_tick = Some(due);
            }
        }
        match frame.parse(&mut pkt) {
            Ok(()) => host.packet(&pkt, frame.data, 1, ts),
            Err(skip) => host.skipped(skip),
        }
    })?;
    let last = host.last_ts();
    each(tick(&mut host, last));
    Ok(frames)
}

/// The capture `args` names as a pipeline source, reading `--ports` (default: every port)
/// and sampling `--media-samples` payload segments per flow direction.
pub fn source(args: &crate::cli::ReplayArgs) -> Result<CaptureSource> {
    let ports = args.ports.clone().unwrap_or_else(PortSet::all);
    let path = args.file.clone();
    CaptureSource::start(
        move || Reader::open(&path),
        ports,
        u32::from(args.media_samples),
    )
    .map_err(|e| cannot_read(&args.file, e))
}

pub async fn run(args: crate::cli::ReplayArgs) -> Result<()> {
    let ports = args.ports.clone().unwrap_or_else(PortSet::all);
    // Before anything is read or written: no output may be one of the inputs.
    let mut inputs = vec![("FILE", args.file.as_path())];
    if let Some(c) = &args.config {
        inputs.push(("--config", c.as_path()));
    }
    if let Some(r) = &args.record.record {
        output::file::check_outputs(&[("--record", r)], &inputs)?;
    }
    output::file::check_stdout(&inputs)?;
    let evidence = evidence_settings(&args)?;
    if let Some(e) = &evidence {
        let mut others = inputs.clone();
        others.extend(args.record.record.as_deref().map(|r| ("--record", r)));
        evidence::check(&e.dir, &others)?;
    }
    let cfg = match &args.config {
        Some(p) => AlertConfig::load(p, TICK_NS as f64 / 1e9)?,
        None => AlertConfig::default(),
    };
    let mut source = source(&args)?;
    let mut pipeline = Pipeline::new(AlertEngine::new(cfg.clone()))
        .with_media_samples(u32::from(args.media_samples));
    let plan = evidence.as_ref().map(|e| CapturePlan::new(&e.dir));
    if let (Some(settings), Some(plan)) = (evidence, &plan) {
        pipeline = pipeline.with(outputs::EvidenceCaptures::new(
            plan.clone(),
            evidence_writer(&args, ports.clone(), settings),
        ));
    }
    pipeline = pipeline.with(outputs::FinalReport {
        format: outputs::SummaryFormat::json(args.json),
        captures: plan.clone(),
    });
    if let Some(path) = &args.record.record {
        let recording = outputs::RecordFile::new(Recorder::create(
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
        )?);
        pipeline = pipeline.with(match &plan {
            Some(p) => recording.with_captures(p.clone()),
            None => recording,
        });
    }
    // No recording of a capture that could not be read to its end: an error leaves the
    // outputs unfinished, so the temporary file goes and an existing file stays as it was.
    pipeline
        .run(&mut source, std::future::pending())
        .await
        .map_err(|e| match e.downcast::<CaptureFailed>() {
            Ok(CaptureFailed(c)) => damaged(&args.file, c),
            Err(e) => e,
        })?;
    if let Some(frames) = &source.frames {
        warn_if_cut(&args.file, frames);
    }
    match pipeline.lost() {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

/// `--evidence` and its limits, refused for standard input: the captures are made from a
/// second read of the capture once the run ended.
fn evidence_settings(args: &crate::cli::ReplayArgs) -> Result<Option<EvidenceSettings>> {
    let e = &args.evidence;
    let Some(dir) = &e.evidence else {
        return Ok(None);
    };
    if args.file.as_os_str() == "-" {
        return Err(usage(
            "--evidence needs a capture file: standard input cannot be read a second time",
            "write the capture to a file first (tcpdump -w FILE), then replay FILE",
        ));
    }
    Ok(Some(EvidenceSettings {
        dir: dir.clone(),
        max_bytes: e.evidence_max_mb.map(|mb| mb * 1024 * 1024),
        snaplen: e.evidence_snaplen,
        max_file_packets: evidence::MAX_FILE_PACKETS,
    }))
}

/// Writes the evidence captures from a second read of `args.file` through the same host
/// analysis as the run: each frame falls in the flow (and connection, on reused ports)
/// the run saw it in, and gets the verdict the run gave it.
fn evidence_writer(
    args: &crate::cli::ReplayArgs,
    ports: PortSet,
    settings: EvidenceSettings,
) -> outputs::EvidenceWriter {
    let file = args.file.clone();
    let record = args.record.record.clone();
    Box::new(move |plans: Vec<PlannedCapture>, last: Option<&Snapshot>| {
        let name = file
            .file_name()
            .map_or_else(|| shown(&file), |n| n.to_string_lossy().into_owned());
        let dir = settings.dir.clone();
        let mut files = CaptureFiles::create(settings, plans, last, &name)
            .map_err(|e| format!("evidence captures in {}: {e}", dir.display()))?;
        let reader = Reader::open(&file)
            .map_err(|e| format!("evidence: cannot read capture {} again: {e}", shown(&file)))?;
        let mut host = HostFlows::new(&ports).with_samples(0);
        let mut pkt = Packet::default();
        reader
            .for_each(|frame| match frame.parse(&mut pkt) {
                Ok(()) => {
                    host.packet(&pkt, frame.data, 1, frame.ts_ns);
                    let (key, _) = FlowKey::of(&pkt);
                    let Some(st) = host.flow(&key) else { return };
                    let id = FlowId {
                        key,
                        first_seen_ns: st.first_seen_ns,
                    };
                    if files.wants(&id) {
                        let facts = verdict::PacketFacts::of(st, &pkt);
                        let said = verdict::comment(&facts);
                        files.frame(&id, &frame, said.as_deref(), verdict::answers(&facts, &pkt));
                    }
                }
                Err(skip) => host.skipped(skip),
            })
            .map_err(|e| format!("evidence: capture {} changed: {e}", shown(&file)))?;
        let mut inputs = vec![file.as_path()];
        inputs.extend(record.as_deref());
        files.finish(&inputs)
    })
}
