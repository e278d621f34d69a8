//! The terminal UI: state (`state`), rows (`rows`) and rendering (`view`) kept apart; this
//! file owns the terminal. The UI runs on its own thread and renders the latest snapshot
//! it was given, so a slow terminal never slows collection, and collection never blocks
//! the UI. The terminal is restored on every exit path: quit, Ctrl-C, SIGTERM (the live
//! loop stops the UI), and panics (a hook restores it before the message prints).

mod alerts_pane;
pub mod rows;
pub mod state;
pub mod view;

#[cfg(test)]
mod tests;

use std::{
    io::{IsTerminal, Stdout},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Once,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{anyhow, Result};
use crossterm::{
    event::{self, Event, KeyEventKind},
    execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{backend::CrosstermBackend, Terminal};
use tokio::sync::{oneshot, watch};

use crate::{
    error::usage,
    model::{FlowId, RunInfo},
    snapshot::Snapshot,
};

/// Puts the terminal back as it was. Safe to call more than once.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped: normal return, error, or unwinding.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
    });
}

/// The running UI, as the live loop sees it.
pub struct Ui {
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    selected: Arc<Mutex<Option<FlowId>>>,
    stop: Arc<AtomicBool>,
    quit: Option<oneshot::Receiver<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Ui {
    /// Refuses early (before anything is attached) when there is no terminal to draw on.
    pub fn check_terminal() -> Result<()> {
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            return Err(usage(
                "the terminal UI needs a terminal, and stdin/stdout are not one",
                "add --headless (with --json for machine-readable output)",
            ));
        }
        Ok(())
    }

    /// Takes over the terminal and starts the UI thread.
    pub fn start(info: RunInfo) -> Result<Self> {
        Self::check_terminal()?;
        install_panic_hook();
        terminal::enable_raw_mode().map_err(|e| anyhow!("terminal raw mode: {e}"))?;
        let guard = TerminalGuard;
        execute!(std::io::stdout(), EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        let (tx, rx) = watch::channel(None);
        let (quit_tx, quit_rx) = oneshot::channel();
        let selected = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (sel, stp) = (selected.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("monitor-ui".into())
            .spawn(move || {
                let _guard = guard;
                let r = ui_loop(terminal, &info, rx, &sel, &stp);
                // Whatever ended the loop, the live loop must stop too.
                let _ = quit_tx.send(());
                r
            })?;
        Ok(Self {
            snapshots: tx,
            selected,
            stop,
            quit: Some(quit_rx),
            thread: Some(thread),
        })
    }

    pub fn publish(&self, snap: Arc<Snapshot>) {
        let _ = self.snapshots.send(Some(snap));
    }

    /// The flow the user looks at in detail (its sparklines go into the next snapshot).
    pub fn selected(&self) -> Option<FlowId> {
        self.selected.lock().ok().and_then(|g| *g)
    }

    /// Completes when the UI ends (the user quit, or it failed).
    pub fn take_quit(&mut self) -> Option<oneshot::Receiver<()>> {
        self.quit.take()
    }

    /// Stops the UI thread and restores the terminal; the UI's own error, if any.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow!("the terminal UI panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ui_loop(
    mut terminal: Terminal<CrosstermBackend<Stdout>>,
    info: &RunInfo,
    mut rx: watch::Receiver<Option<Arc<Snapshot>>>,
    selected: &Mutex<Option<FlowId>>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut ui = state::UiState::default();
    let mut snap = Arc::new(Snapshot::default());
    let mut dirty = true;
    while !stop.load(Ordering::SeqCst) {
        if rx.has_changed().unwrap_or(false) {
            if let Some(s) = rx.borrow_and_update().clone() {
                snap = s;
                ui.on_snapshot(&snap, &snap.flows.read());
                dirty = true;
            }
        }
        if dirty {
            terminal.draw(|f| view::draw(f, info, &mut ui, &snap))?;
            if let Ok(mut g) = selected.lock() {
                *g = ui.selected;
            }
            dirty = false;
        }
        if event::poll(Duration::from_millis(100))? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    if ui.on_key(k, &snap, &snap.flows.read()) == state::Action::Quit {
                        return Ok(());
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
    Ok(())
}
