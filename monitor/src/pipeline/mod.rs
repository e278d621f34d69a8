//! The one loop every command runs: a source yields ticks, the alert engine judges each,
//! and every output takes the judged tick in turn. `live` and `demo` run it on the kernel
//! collector, `replay` on the capture engine, the tests on a fake source: what a tick goes
//! through is the same code whatever produced it.

mod media;
pub mod outputs;

pub use media::MediaVerdicts;

use std::{future::Future, sync::Arc, time::Instant};

use anyhow::Result;
use monitor_common::{event::Event, evidence::EvidencePacket, sample::Sample};

use crate::{
    alerts::{AlertEngine, Transition},
    model::FlowId,
    snapshot::Snapshot,
};

/// What a source hands over at a tick: the flows as they are, and the kernel's events and
/// payload samples since the tick before.
pub struct Tick {
    pub snap: Snapshot,
    pub events: Vec<Event>,
    /// The first payload bytes of flows' first segments (`monitor_common::sample`), for the
    /// media verdicts (`media.rs`).
    pub samples: Vec<Sample>,
    /// Watched packets from the kernel's evidence ring (`--evidence`), for the captures.
    pub evidence: Vec<EvidencePacket>,
    /// When the source began reading it: the UI shows how long a tick took to read and
    /// judge.
    pub started: Instant,
}

impl Tick {
    pub fn new(snap: Snapshot, events: Vec<Event>, started: Instant) -> Self {
        Self {
            snap,
            events,
            samples: Vec::new(),
            evidence: Vec::new(),
            started,
        }
    }

    /// The same tick, carrying `samples`.
    pub fn with_samples(mut self, samples: Vec<Sample>) -> Self {
        self.samples = samples;
        self
    }

    /// The same tick, carrying the evidence ring's `packets`.
    pub fn with_evidence(mut self, packets: Vec<EvidencePacket>) -> Self {
        self.evidence = packets;
        self
    }
}

/// Where ticks come from: the kernel collector (live, demo), a capture read at its own
/// pace (replay), or a list of ticks (tests).
pub trait Source {
    /// Waits for the next tick and takes it; `None` once the source has no more. Dropped
    /// while it waits (the run stopped), nothing is lost: the wait comes before the read.
    fn next(&mut self) -> impl Future<Output = Result<Option<Tick>>>;

    /// A tick read now, for a run stopped from outside (a signal, `--duration`, the UI's
    /// quit): the last report then says what happened up to the stop. A source that ends by
    /// itself has given its last tick already.
    fn last(&mut self) -> Result<Option<Tick>> {
        Ok(None)
    }
}

/// Where judged ticks go: the terminal UI, stdout lines, metrics, the alerts log, the
/// recording, the final report.
pub trait Output {
    /// One judged tick; `Ok(false)` when the run should end (stdout's reader has gone), an
    /// error when it cannot go on (stdout could not be written).
    fn tick(
        &mut self,
        snap: &Arc<Snapshot>,
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<bool>;

    /// The evidence ring's packets of the tick about to be handed over (`--evidence`
    /// live): only the evidence captures take them.
    fn evidence(&mut self, _packets: &[EvidencePacket]) {}

    /// The run ended without an error; `last` is the last judged tick.
    fn finish(&mut self, _last: Option<&Arc<Snapshot>>) -> Result<()> {
        Ok(())
    }

    /// The flow a person looks at: its sparkline goes into the next tick.
    fn selected(&self) -> Option<FlowId> {
        None
    }

    /// Why the output stopped being written, if it did: a file output that fails is said
    /// on stderr and dropped, the run goes on, and exits 1 at its end.
    fn lost(&self) -> Option<&str> {
        None
    }
}

/// The media verdicts, the alert engine and the outputs, in the order they take each tick.
pub struct Pipeline {
    pub media: MediaVerdicts,
    pub engine: AlertEngine,
    pub outputs: Vec<Box<dyn Output>>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The source had no more ticks (a capture's end, every watched interface gone).
    SourceDone,
    /// `stop` completed (a signal, `--duration`, the UI's quit).
    Stopped,
    /// An output asked to end (stdout's reader has gone).
    OutputDone,
}

impl Pipeline {
    /// A pipeline judging the media of `DEFAULT_SAMPLES` payload samples a direction
    /// (see [`Pipeline::with_media_samples`]).
    pub fn new(engine: AlertEngine) -> Self {
        let media = Self::media_for(&engine, monitor_common::sample::DEFAULT_SAMPLES);
        Self {
            media,
            engine,
            outputs: Vec::new(),
        }
    }

    /// The source samples `n` payload segments a flow direction (`--media-samples`).
    pub fn with_media_samples(mut self, n: u32) -> Self {
        self.media = Self::media_for(&self.engine, n);
        self
    }

    fn media_for(engine: &AlertEngine, samples: u32) -> MediaVerdicts {
        let cfg = engine.config();
        let reply = (cfg.tls_reply_timeout_s * 1e9) as u64;
        MediaVerdicts::new(samples, reply, cfg.media.stun_timeout_ns())
    }

    /// Adds an output; outputs take each tick in the order they were added.
    pub fn with(mut self, output: impl Output + 'static) -> Self {
        self.outputs.push(Box::new(output));
        self
    }

    /// Runs ticks from `source` through the engine and the outputs until the source ends,
    /// an output asks to, or `stop` completes (then one last tick is read, see
    /// [`Source::last`]). On success the outputs are finished with the last tick; on an
    /// error they are not (a recording of a capture that could not be read is not kept).
    pub async fn run(
        &mut self,
        source: &mut impl Source,
        stop: impl Future<Output = ()>,
    ) -> Result<End> {
        let mut stop = std::pin::pin!(stop);
        let mut last: Option<Arc<Snapshot>> = None;
        let end = loop {
            let (tick, stopped) = tokio::select! {
                t = source.next() => (t?, false),
                () = &mut stop => (source.last()?, true),
            };
            let Some(tick) = tick else {
                break if stopped {
                    End::Stopped
                } else {
                    End::SourceDone
                };
            };
            let (snap, go_on) = self.step(tick)?;
            last = Some(snap);
            if stopped {
                break End::Stopped;
            }
            if !go_on {
                break End::OutputDone;
            }
        };
        for o in &mut self.outputs {
            o.finish(last.as_ref())?;
        }
        Ok(end)
    }

    /// One tick through the engine and every output; `false` when an output asked to end.
    pub fn step(&mut self, tick: Tick) -> Result<(Arc<Snapshot>, bool)> {
        let Tick {
            mut snap,
            events,
            samples,
            evidence,
            started,
        } = tick;
        let read = started.elapsed();
        self.media
            .tick(&mut snap.flows.write(), &samples, snap.now_ns);
        // Said before the tick: the engine keeps sparkline points only for the flow looked
        // at and for alerting flows.
        let selected = self.outputs.iter().find_map(|o| o.selected());
        self.engine.look_at(selected);
        let transitions = self.engine.tick(&mut snap, &events);
        if let Some(id) = selected {
            let points = self.engine.spark(&id, &snap.flows.read());
            snap.spark = Some((id, points));
        }
        snap.collect_ns = started.elapsed().as_nanos() as u64;
        let judged = started.elapsed();
        let snap = Arc::new(snap);
        let mut go_on = true;
        for o in &mut self.outputs {
            if !evidence.is_empty() {
                o.evidence(&evidence);
            }
            go_on &= o.tick(&snap, &transitions, &events)?;
            if !go_on {
                break;
            }
        }
        // Where a slow tick went (`RUST_LOG=debug`): a tick longer than the interval
        // delays the next report.
        log::debug!(
            "tick of {} flows: read {:.1} ms, judged {:.1} ms, outputs {:.1} ms",
            snap.flows.read().len(),
            read.as_secs_f64() * 1e3,
            (judged - read).as_secs_f64() * 1e3,
            (started.elapsed() - judged).as_secs_f64() * 1e3,
        );
        Ok((snap, go_on))
    }

    /// The first reason an output stopped being written, if one did.
    pub fn lost(&self) -> Option<String> {
        self.outputs
            .iter()
            .find_map(|o| o.lost())
            .map(str::to_string)
    }
}
