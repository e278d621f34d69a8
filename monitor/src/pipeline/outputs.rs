//! The outputs a run can have, each as a [`super::Output`]: the front-ends (`live`, `demo`,
//! `replay`) pick theirs from the command line and hand the list to the pipeline.

use std::{
    fs::File,
    io::Write,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use monitor_common::{event::Event, evidence::EvidencePacket};

use super::Output;
use crate::{
    alerts::Transition,
    evidence::{CapturePlan, LiveCaptures, PlannedCapture},
    model::FlowId,
    output::{self, json, metrics::Metrics, text},
    record::writer::Recorder,
    snapshot::Snapshot,
    tui,
};

/// How a report is rendered: JSON (`--json`) or the plain table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryFormat {
    Json,
    Text,
}

impl SummaryFormat {
    pub fn json(json: bool) -> Self {
        if json {
            Self::Json
        } else {
            Self::Text
        }
    }

    /// Prints the report of `snap` on stdout, as [`output::print`] says.
    fn print(self, snap: &Snapshot) -> Result<bool> {
        match self {
            Self::Json => output::print_with(|w| json::write(snap, w)),
            Self::Text => output::print_with(|w| text::write(snap, w)),
        }
    }
}

/// Says on stderr that an output stopped, and keeps why for the exit code.
fn lose(lost: &mut Option<String>, what: &str, e: &std::io::Error) {
    output::status(&format!(
        "monitor: {what}: {e}; no longer written (the monitor goes on, and exits 1 at the end)"
    ));
    lost.get_or_insert(format!("{what} stopped: {e}"));
}

/// `--headless`: every tick's alert transitions, then its report, on stdout.
pub struct Headless {
    pub format: SummaryFormat,
    /// With `--evidence`: each transition line names its alert's capture.
    pub captures: Option<CapturePlan>,
}

/// The tick's transition lines, each naming its capture when `plan` has one for it (the
/// transitions noted in `plan` first: it is idempotent, so no output depends on the order
/// the outputs were added in).
fn lines(transitions: &[Transition], plan: Option<&CapturePlan>) -> Vec<String> {
    if let Some(p) = plan {
        p.note(transitions);
    }
    transitions
        .iter()
        .map(|t| json::transition_line_with(t, plan.and_then(|p| p.path_of(t.alert.id))))
        .collect()
}

impl Output for Headless {
    fn tick(
        &mut self,
        snap: &Arc<Snapshot>,
        transitions: &[Transition],
        _: &[Event],
    ) -> Result<bool> {
        for l in lines(transitions, self.captures.as_ref()) {
            if !output::print(&l)? {
                return Ok(false);
            }
        }
        self.format.print(snap)
    }
}

/// `replay`: one report on stdout, of the last tick, once the capture was read to its end.
pub struct FinalReport {
    pub format: SummaryFormat,
    /// With `--evidence`: each alert of the JSON summary names its capture, once written.
    pub captures: Option<CapturePlan>,
}

impl Output for FinalReport {
    fn tick(&mut self, _: &Arc<Snapshot>, _: &[Transition], _: &[Event]) -> Result<bool> {
        Ok(true)
    }

    fn finish(&mut self, last: Option<&Arc<Snapshot>>) -> Result<()> {
        let snap = last.cloned().unwrap_or_default();
        // A closed pipe downstream ends the output quietly; any other failure is an error.
        match (&self.captures, self.format) {
            (Some(plan), SummaryFormat::Json) => {
                let summary = json::summary_with(&snap, |id| plan.written_path_of(id));
                output::print_with(|w| json::write_summary(&summary, w))?;
            }
            _ => {
                self.format.print(&snap)?;
            }
        }
        Ok(())
    }
}

/// Makes the evidence captures at the end of a run: the source's own way of finding a
/// flow's frames again (replay: a second read of the capture). `Err` says why the run
/// must exit 1.
pub type EvidenceWriter =
    Box<dyn FnOnce(Vec<PlannedCapture>, Option<&Snapshot>) -> Result<Vec<u64>, String> + Send>;

/// `--evidence DIR`: names each raised alert's capture in `plan` (the recording and the
/// final summary show it), and once the run ended without an error has the files written.
/// Added before the outputs that show the names, so that they are noted first.
pub struct EvidenceCaptures {
    plan: CapturePlan,
    write: Option<EvidenceWriter>,
    lost: Option<String>,
}

impl EvidenceCaptures {
    pub fn new(plan: CapturePlan, write: EvidenceWriter) -> Self {
        Self {
            plan,
            write: Some(write),
            lost: None,
        }
    }
}

impl Output for EvidenceCaptures {
    fn tick(&mut self, _: &Arc<Snapshot>, transitions: &[Transition], _: &[Event]) -> Result<bool> {
        self.plan.note(transitions);
        Ok(true)
    }

    fn finish(&mut self, last: Option<&Arc<Snapshot>>) -> Result<()> {
        let Some(write) = self.write.take() else {
            return Ok(());
        };
        if let Some(snap) = last {
            self.plan.refresh(&snap.alerts);
        }
        match write(self.plan.entries(), last.map(|s| &**s)) {
            Ok(ids) => {
                self.plan.mark_written(&ids);
                output::status(&format!(
                    "monitor: {} evidence capture(s) written in {}",
                    ids.len(),
                    self.plan.dir().display()
                ));
            }
            Err(why) => {
                output::status(&format!("monitor: {why} (the monitor exits 1)"));
                self.lost = Some(why);
            }
        }
        Ok(())
    }

    fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }
}

/// `--evidence DIR` on a live run: the kernel's packets of each alert's flow, written as
/// the run goes (`evidence/live.rs`).
impl Output for LiveCaptures {
    fn evidence(&mut self, packets: &[EvidencePacket]) {
        self.take_packets(packets);
    }

    fn tick(
        &mut self,
        snap: &Arc<Snapshot>,
        transitions: &[Transition],
        _: &[Event],
    ) -> Result<bool> {
        LiveCaptures::tick(self, snap.now_ns, transitions);
        Ok(true)
    }

    fn finish(&mut self, last: Option<&Arc<Snapshot>>) -> Result<()> {
        LiveCaptures::finish(self, last.map_or(&[][..], |s| &s.alerts[..]));
        Ok(())
    }

    fn lost(&self) -> Option<&str> {
        self.failed()
    }
}

/// The terminal UI: it renders the latest tick on its own thread, and is stopped (the
/// terminal restored) when the run ends.
pub struct TerminalUi(Option<tui::Ui>);

impl TerminalUi {
    pub fn new(ui: tui::Ui) -> Self {
        Self(Some(ui))
    }
}

impl Output for TerminalUi {
    fn tick(&mut self, snap: &Arc<Snapshot>, _: &[Transition], _: &[Event]) -> Result<bool> {
        if let Some(ui) = &self.0 {
            ui.publish(snap.clone());
        }
        Ok(true)
    }

    fn finish(&mut self, _: Option<&Arc<Snapshot>>) -> Result<()> {
        match self.0.take() {
            Some(ui) => ui.stop(),
            None => Ok(()),
        }
    }

    fn selected(&self) -> Option<FlowId> {
        self.0.as_ref().and_then(tui::Ui::selected)
    }
}

/// `--metrics`: the counters the HTTP server renders, fed every tick.
pub struct MetricsFeed(pub Arc<Mutex<Metrics>>);

impl Output for MetricsFeed {
    fn tick(&mut self, snap: &Arc<Snapshot>, _: &[Transition], _: &[Event]) -> Result<bool> {
        if let Ok(mut m) = self.0.lock() {
            m.observe(snap);
        }
        Ok(true)
    }
}

/// `--alerts-log`: one JSON line per alert transition, flushed as it happens.
pub struct AlertsLog {
    file: Option<File>,
    lost: Option<String>,
    /// With `--evidence`: each line names its alert's capture.
    captures: Option<CapturePlan>,
}

impl AlertsLog {
    pub fn new(file: File) -> Self {
        Self {
            file: Some(file),
            lost: None,
            captures: None,
        }
    }

    /// The same output, its lines naming the captures `plan` decides.
    pub fn with_captures(mut self, plan: CapturePlan) -> Self {
        self.captures = Some(plan);
        self
    }
}

impl Output for AlertsLog {
    fn tick(&mut self, _: &Arc<Snapshot>, transitions: &[Transition], _: &[Event]) -> Result<bool> {
        let Some(f) = self.file.as_mut() else {
            return Ok(true);
        };
        for line in lines(transitions, self.captures.as_ref()) {
            if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                self.file = None;
                lose(&mut self.lost, "alerts log", &e);
                break;
            }
        }
        Ok(true)
    }

    fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }
}

/// `--record`: every tick's changed flows, events and transitions. Renamed into place at
/// the end of a run that succeeded, if the front-end did not do it earlier (live does
/// once attached); a run that fails leaves an existing file at the path as it was.
pub struct RecordFile {
    recorder: Option<Recorder>,
    lost: Option<String>,
    /// With `--evidence`: each alert line names its capture.
    captures: Option<CapturePlan>,
}

impl RecordFile {
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder: Some(recorder),
            lost: None,
            captures: None,
        }
    }

    /// The same output, its alert lines naming the captures `plan` decides.
    pub fn with_captures(mut self, plan: CapturePlan) -> Self {
        self.captures = Some(plan);
        self
    }
}

impl Output for RecordFile {
    fn tick(
        &mut self,
        snap: &Arc<Snapshot>,
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<bool> {
        if let Some(r) = self.recorder.as_mut() {
            let written = match &self.captures {
                Some(plan) => {
                    // Noted here too (it is idempotent): the name does not depend on the
                    // order the outputs were added in.
                    plan.note(transitions);
                    r.tick_with_captures(snap, events, transitions, &|id| plan.path_of(id))
                }
                None => r.tick(snap, events, transitions),
            };
            if let Err(e) = written {
                self.recorder = None;
                lose(&mut self.lost, "recording", &e);
            }
        }
        Ok(true)
    }

    fn finish(&mut self, _: Option<&Arc<Snapshot>>) -> Result<()> {
        // A recording that stopped is not renamed into place: its temporary file goes.
        if self.lost.is_some() {
            return Ok(());
        }
        if let Some(r) = self.recorder.as_mut() {
            r.commit()
                .map_err(|e| anyhow::Error::from(e).context("writing the recording"))?;
        }
        Ok(())
    }

    fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }
}
