//! The UI's state and how keys and new snapshots change it. No terminal here: tests drive
//! it with key events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::rows::{self, Column, Filter};
use crate::{
    model::{FlowId, Level},
    snapshot::Snapshot,
    table::FlowTable,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Table,
    Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
}

#[derive(Clone, Debug)]
pub struct UiState {
    pub view: View,
    pub sort: Column,
    pub descending: bool,
    /// The filter as typed, and whether it is being typed.
    pub filter_text: String,
    pub editing: bool,
    filter: Filter,
    /// Severity floor set with `w` (cycled: all, warning and worse, critical).
    pub min_level: Option<Level>,
    /// Keep the worst flow selected as the table changes.
    pub follow: bool,
    pub help: bool,
    /// The selected flow (followed across re-sorts), and its row.
    pub selected: Option<FlowId>,
    pub cursor: usize,
    /// First row shown (scrolling).
    pub offset: usize,
    /// Packets per second from the last two snapshots.
    pub pps: Option<f64>,
    last_packets: Option<(u64, u64)>,
    /// The rows' order for the snapshot and settings it was made for: sorting a big table
    /// is the costliest step of a frame, and a key press or a redraw should not repeat it.
    order: Option<(Shown, Vec<u32>)>,
}

/// What a row order depends on: the table as written by one tick, the time and the
/// settings.
#[derive(Clone, Debug, PartialEq)]
struct Shown {
    generation: u64,
    flows: usize,
    now_ns: u64,
    sort: Column,
    descending: bool,
    min_level: Option<Level>,
    filter: Filter,
}

impl Default for UiState {
    fn default() -> Self {
        Self {
            view: View::Table,
            sort: Column::Health,
            descending: true,
            filter_text: String::new(),
            editing: false,
            filter: Filter::default(),
            min_level: None,
            follow: false,
            help: false,
            selected: None,
            cursor: 0,
            offset: 0,
            pps: None,
            last_packets: None,
            order: None,
        }
    }
}

impl UiState {
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The table rows to show, in order: sorted again only when the table or the settings
    /// changed since the last call. A key press and a redraw use this list of row
    /// numbers, and build rows only for what they show.
    pub fn order(&mut self, snap: &Snapshot, table: &FlowTable) -> &[u32] {
        let shown = Shown {
            generation: table.generation(),
            flows: table.len(),
            now_ns: snap.now_ns,
            sort: self.sort,
            descending: self.descending,
            min_level: self.min_level,
            filter: self.filter.clone(),
        };
        if self
            .order
            .as_ref()
            .is_none_or(|(made_for, _)| *made_for != shown)
        {
            let rows = rows::visible(
                snap,
                table,
                &self.filter,
                self.min_level,
                self.sort,
                self.descending,
            );
            self.order = Some((shown, rows.iter().map(|r| r.index).collect()));
        }
        self.order.as_ref().map_or(&[], |(_, o)| &o[..])
    }

    /// The rows to show, in order (see [`UiState::order`]).
    pub fn rows<'a>(&mut self, snap: &Snapshot, table: &'a FlowTable) -> Vec<rows::Row<'a>> {
        self.order(snap, table)
            .iter()
            .filter_map(|&i| rows::Row::at(snap, table, i))
            .collect()
    }

    /// The flow at `at` of the order.
    fn id_at(&self, table: &FlowTable, at: usize) -> Option<FlowId> {
        let (_, order) = self.order.as_ref()?;
        let row = table.row(*order.get(at)?)?;
        Some(FlowId::of(&row.flow))
    }

    /// A new snapshot: rates for the header, selection kept on its flow.
    pub fn on_snapshot(&mut self, snap: &Snapshot, table: &FlowTable) {
        self.order = None;
        let packets = snap.counters.get(monitor_common::stats::PACKETS);
        if let Some((t0, p0)) = self.last_packets {
            let dt = snap.now_ns.saturating_sub(t0);
            if dt > 0 {
                self.pps = Some(packets.saturating_sub(p0) as f64 * 1e9 / dt as f64);
            }
        }
        self.last_packets = Some((snap.now_ns, packets));
        if self.follow {
            if let Some(w) = rows::worst(snap, table) {
                self.selected = Some(w);
            }
        }
        self.sync_cursor(snap, table);
    }

    /// Puts the cursor on the selected flow's row, or selects the row under the cursor.
    fn sync_cursor(&mut self, snap: &Snapshot, table: &FlowTable) {
        let selected = self.selected.and_then(|id| table.find(&id));
        let order = self.order(snap, table);
        let n = order.len();
        if n == 0 {
            self.cursor = 0;
            return;
        }
        match selected.and_then(|row| order.iter().position(|&i| i == row)) {
            Some(i) => self.cursor = i,
            None => {
                self.cursor = self.cursor.min(n - 1);
                self.selected = self.id_at(table, self.cursor);
            }
        }
    }

    fn move_cursor(&mut self, snap: &Snapshot, table: &FlowTable, delta: isize) {
        let n = self.order(snap, table).len();
        if n == 0 {
            return;
        }
        let last = n as isize - 1;
        self.cursor = (self.cursor as isize + delta).clamp(0, last) as usize;
        self.selected = self.id_at(table, self.cursor);
        self.follow = false;
    }

    /// Keeps the cursor inside a table of `height` rows.
    pub fn scroll(&mut self, height: usize) {
        if height == 0 {
            return;
        }
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + height {
            self.offset = self.cursor + 1 - height;
        }
    }

    pub fn on_key(&mut self, key: KeyEvent, snap: &Snapshot, table: &FlowTable) -> Action {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Action::Quit;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter_text.clear();
                }
                KeyCode::Backspace => {
                    self.filter_text.pop();
                }
                KeyCode::Char(c) => self.filter_text.push(c),
                _ => {}
            }
            self.filter = Filter::parse(&self.filter_text);
            self.sync_cursor(snap, table);
            return Action::None;
        }
        if self.help {
            // Any key closes the help; `q` still quits.
            self.help = false;
            return if key.code == KeyCode::Char('q') {
                Action::Quit
            } else {
                Action::None
            };
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Esc => {
                if self.view == View::Detail {
                    self.view = View::Table;
                } else if !self.filter_text.is_empty() {
                    self.filter_text.clear();
                    self.filter = Filter::default();
                }
            }
            KeyCode::Enter if self.selected.is_some() => self.view = View::Detail,
            KeyCode::Down | KeyCode::Char('j') => self.move_cursor(snap, table, 1),
            KeyCode::Up | KeyCode::Char('k') => self.move_cursor(snap, table, -1),
            KeyCode::PageDown => self.move_cursor(snap, table, 10),
            KeyCode::PageUp => self.move_cursor(snap, table, -10),
            KeyCode::Home | KeyCode::Char('g') => self.move_cursor(snap, table, isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_cursor(snap, table, isize::MAX / 2),
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Char('s') | KeyCode::Char('>') => self.cycle_sort(1),
            KeyCode::Char('S') | KeyCode::Char('<') => self.cycle_sort(-1),
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('w') => {
                self.min_level = match self.min_level {
                    None => Some(Level::Warning),
                    Some(Level::Warning) => Some(Level::Critical),
                    _ => None,
                }
            }
            KeyCode::Char('f') => {
                self.follow = !self.follow;
                if self.follow {
                    self.on_snapshot_follow(snap, table);
                }
            }
            _ => {}
        }
        self.sync_cursor(snap, table);
        Action::None
    }

    fn on_snapshot_follow(&mut self, snap: &Snapshot, table: &FlowTable) {
        if let Some(w) = rows::worst(snap, table) {
            self.selected = Some(w);
        }
    }

    fn cycle_sort(&mut self, step: isize) {
        let all = Column::ALL;
        let i = all.iter().position(|c| *c == self.sort).unwrap_or(0) as isize;
        let n = all.len() as isize;
        self.sort = all[((i + step).rem_euclid(n)) as usize];
        // Text sorts ascending, figures worst-first.
        self.descending = !matches!(
            self.sort,
            Column::Client | Column::Server | Column::State | Column::Tls | Column::Media
        );
    }
}
