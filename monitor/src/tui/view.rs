//! Rendering: a pure function of the run's info, the UI state and one snapshot. Severity
//! shows as colour and as text (`CRIT!!`, `WARN!`), so it reads without colour too.

use monitor_common::flow::{SynOpts, C2S, S2C, SYN_OPT_SACK, SYN_OPT_SEEN, SYN_OPT_TIMESTAMPS};
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row as TRow, Sparkline, Table},
    Frame,
};

use super::{
    alerts_pane::{draw_alerts, level_style, marker},
    rows::{self, Column, Row},
    state::{UiState, View},
};
use crate::{
    format,
    media::verdict::{Media, Verdict},
    model::{Alert, Anomalies, DirCounts, FlowStats, InFlight, Level, Point, RunInfo},
    snapshot::Snapshot,
    table::FlowTable,
};

/// Draws the whole screen.
pub fn draw(f: &mut Frame, info: &RunInfo, ui: &mut UiState, snap: &Snapshot) {
    let table = snap.flows.read();
    let area = f.area();
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, header, info, ui, snap, table.len());
    match ui.view {
        View::Table => {
            let alerts_h = (body.height / 3).clamp(4, 10);
            let [area_of_table, alerts] =
                Layout::vertical([Constraint::Min(3), Constraint::Length(alerts_h)]).areas(body);
            draw_table(f, area_of_table, ui, snap, &table);
            draw_alerts(f, alerts, &snap.alerts, "Alerts", None);
        }
        View::Detail => draw_detail(f, body, ui, snap, &table),
    }
    draw_footer(f, footer, ui);
    if ui.help {
        draw_help(f, area);
    }
}

fn draw_header(
    f: &mut Frame,
    area: Rect,
    info: &RunInfo,
    ui: &UiState,
    snap: &Snapshot,
    flows: usize,
) {
    let active: Vec<&Alert> = snap
        .alerts
        .iter()
        .filter(|a| a.cleared_ns.is_none())
        .collect();
    let crit = active
        .iter()
        .filter(|a| a.severity == Level::Critical)
        .count();
    let pps = ui.pps.map_or("-".into(), |p| format!("{p:.0}"));
    let mut line1 = vec![Span::styled(
        "monitor ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    // First on the line, so a narrow terminal still shows it.
    let gone: Vec<&str> = snap
        .interfaces
        .iter()
        .filter(|i| i.gone)
        .map(|i| i.name.as_str())
        .collect();
    if !gone.is_empty() {
        line1.push(Span::styled(
            format!("GONE: {}  ", gone.join(",")),
            level_style(Some(Level::Critical)),
        ));
    }
    line1.push(Span::raw(format!(
        "if {}  attach {}  ports {}",
        info.interfaces.join(","),
        info.attach,
        info.ports
    )));
    let line1 = Line::from(line1);
    // Shown once there are any: most runs never lose one, and the line is full.
    let lost_flows = match snap.lost_flows {
        0 => String::new(),
        n => format!("  lost flows {n}"),
    };
    let alerts_span = if active.is_empty() {
        Span::styled("alerts 0", level_style(None))
    } else {
        Span::styled(
            format!("alerts {} ({crit} crit)", active.len()),
            level_style(Some(if crit > 0 {
                Level::Critical
            } else {
                Level::Warning
            })),
        )
    };
    // `--self-stats`: the kernel's time per packet through one hook, over the last tick.
    let kernel = match snap.kernel_cost {
        Some(c) => format!(
            "  kernel {}",
            c.ns_per_run
                .map_or("- ns/pkt".into(), |n| format!("{n:.0} ns/pkt"))
        ),
        None => String::new(),
    };
    let line2 = Line::from(vec![
        Span::raw(format!("pkts/s {pps}  flows {flows}  ")),
        alerts_span,
        Span::raw(format!(
            "  evicted {}{lost_flows}  lost events {}  lag {}{kernel}",
            snap.evicted_flows,
            snap.counters.get(monitor_common::stats::EVENTS_LOST),
            rows::millis(snap.collect_ns)
        )),
    ]);
    f.render_widget(Paragraph::new(vec![line1, line2]), area);
}

fn draw_table(f: &mut Frame, area: Rect, ui: &mut UiState, snap: &Snapshot, flows: &FlowTable) {
    let cols = Column::fitting(area.width.saturating_sub(2));
    let height = area.height.saturating_sub(3) as usize;
    ui.scroll(height);
    let (offset, cursor) = (ui.offset, ui.cursor);
    let order = ui.order(snap, flows);
    let shown = order.len();
    let rows: Vec<(usize, Row)> = order
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .filter_map(|(k, &i)| Row::at(snap, flows, i).map(|r| (k, r)))
        .collect();
    let header = TRow::new(cols.iter().map(|c| {
        let mark = if *c == ui.sort {
            if ui.descending {
                "v"
            } else {
                "^"
            }
        } else {
            ""
        };
        Cell::from(format!("{}{mark}", c.title()))
    }))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body: Vec<TRow> = rows
        .iter()
        .map(|(k, r)| table_row(r, &cols, snap, *k == cursor))
        .collect();
    let title = format!(
        "Flows {}/{}{}{}",
        shown,
        flows.len(),
        match ui.min_level {
            Some(Level::Critical) => "  [critical only]",
            Some(_) => "  [warning+]",
            None => "",
        },
        if ui.follow { "  [following worst]" } else { "" }
    );
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width())).collect();
    let table = Table::new(body, widths)
        .header(header)
        .block(Block::new().borders(Borders::ALL).title(title));
    f.render_widget(table, area);
    if shown == 0 {
        let msg = if flows.is_empty() {
            "no TCP flows on the watched ports yet"
        } else {
            "no flow matches the filter (Esc clears it)"
        };
        let inner = Rect {
            x: area.x + 2,
            y: area.y + 2,
            width: area.width.saturating_sub(4),
            height: 1.min(area.height.saturating_sub(3)),
        };
        f.render_widget(Paragraph::new(msg), inner);
    }
}

fn table_row<'a>(r: &Row, cols: &[Column], snap: &Snapshot, selected: bool) -> TRow<'a> {
    let level = r.level();
    let cells = cols.iter().map(|c| {
        let text = r.cell(*c, snap);
        let style = match c {
            Column::Health => level_style(level),
            Column::Resets if text.ends_with('!') => level_style(Some(Level::Critical)),
            _ => Style::new(),
        };
        Cell::from(text).style(style)
    });
    let row = TRow::new(cells);
    if selected {
        row.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        row
    }
}

fn draw_footer(f: &mut Frame, area: Rect, ui: &UiState) {
    let text = if ui.editing {
        format!(
            "filter: {}_   (Enter applies, Esc clears; port:N sev:warn|crit text)",
            ui.filter_text
        )
    } else {
        let filter = if ui.filter_text.is_empty() {
            String::new()
        } else {
            format!("filter: {}  ", ui.filter_text)
        };
        let keys = match ui.view {
            View::Table => "q quit  ? keys  Enter detail  / filter  s sort  w severity  f follow",
            View::Detail => "q quit  ? keys  Esc back to the table",
        };
        format!("{filter}sort {}  {keys}", ui.sort.title())
    };
    f.render_widget(
        Paragraph::new(text).style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
    );
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit (the terminal is restored)"),
    ("Up/Down, j/k", "select a flow; PgUp/PgDn, Home/End"),
    (
        "Enter",
        "flow detail: counters, sparklines, handshake, history, alerts",
    ),
    ("Esc", "back to the table; clear the filter"),
    ("s / S", "sort by the next / previous column"),
    ("r", "reverse the sort order"),
    ("/", "filter: text, port:N, sev:warn, sev:crit"),
    ("w", "show all / warning and worse / critical only"),
    ("f", "follow the worst flow"),
    ("?", "this help"),
];

fn draw_help(f: &mut Frame, area: Rect) {
    let w = area.width.min(72);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:<14}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*v),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(
        "HEALTH: ok, WARN!, CRIT!!   RST n! = suspect injected",
    ));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::ALL)
                .title("Keys (any key closes)"),
        ),
        r,
    );
}

fn opts(o: &SynOpts) -> String {
    if o.bits & SYN_OPT_SEEN == 0 {
        return "-".into();
    }
    let mut s = format!("mss {}", o.mss);
    if o.wscale_p1 != 0 {
        s += &format!(" ws {}", o.wscale_p1 - 1);
    }
    if o.bits & SYN_OPT_SACK != 0 {
        s += " sack";
    }
    if o.bits & SYN_OPT_TIMESTAMPS != 0 {
        s += " ts";
    }
    s
}

/// The flow's media verdict, and what was expected and came back (decoded).
fn media_line(m: Option<&Media>) -> Line<'static> {
    let what = rows::media_cell(m);
    let said = m
        .and_then(|m| m.evidence.as_ref())
        .map(|e| {
            // What the genuine server sends is the same for every flow: what came is news.
            let d = e.describe();
            let got = d.split_once("; got ").map_or(d.as_str(), |(_, g)| g);
            format!("  got {got}")
        })
        .or_else(|| m.and_then(|m| m.sni.as_ref()).map(|s| format!("  SNI {s}")))
        .unwrap_or_default();
    let level = m.and_then(|m| match m.verdict {
        Some(Verdict::Intercepted | Verdict::Rejected) => Some(Level::Critical),
        Some(Verdict::NoReply) => Some(Level::Warning),
        _ => m.stun.filter(|c| c.unanswered > 0).map(|_| Level::Warning),
    });
    let style = level.map_or(Style::new(), |l| level_style(Some(l)));
    Line::from(vec![
        Span::raw("media "),
        Span::styled(what, style),
        Span::raw(said),
    ])
}

/// The server side's first bytes in hex, as the verdict read them.
fn reply_line(m: Option<&Media>) -> Line<'static> {
    let head = m.and_then(|m| m.evidence.as_ref()).map(|e| &e.got.head[..]);
    match head {
        Some(b) if !b.is_empty() => {
            let hex: Vec<String> = b.iter().take(24).map(|x| format!("{x:02x}")).collect();
            let more = if b.len() > 24 { " ..." } else { "" };
            Line::from(format!("reply {}{more}", hex.join(" ")))
        }
        _ => Line::from("reply -"),
    }
}

fn draw_detail(f: &mut Frame, area: Rect, ui: &UiState, snap: &Snapshot, flows: &FlowTable) {
    let Some(row) = ui
        .selected
        .and_then(|id| flows.find(&id))
        .and_then(|i| flows.row(i))
    else {
        f.render_widget(
            Paragraph::new("the flow is gone from the kernel's table (Esc: back)")
                .block(Block::new().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let fl = &row.flow;
    let st = &fl.state;
    let h = snap.judged.then_some(&row.health);
    // An alert and its meaning take about three lines; room for two, the rest cut.
    let mine = snap
        .alerts
        .iter()
        .filter(|a| ui.selected.is_some_and(|id| a.flow_ids.contains(&id)))
        .count();
    let [top, mid, bottom] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Min(6),
        Constraint::Length(2 + 3 * mine.clamp(1, 2) as u16),
    ])
    .areas(area);
    let (c, s) = (&st.dir[C2S], &st.dir[S2C]);
    let level = h.and_then(|h| h.level);
    let head = vec![
        Line::from(vec![
            Span::styled(
                format!("{:<6} ", level.map_or("ok", marker)),
                level_style(level),
            ),
            Span::styled(
                format!("{} > {}", fl.client(), fl.server()),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "  {}  age {}",
                rows::state(st),
                format::duration(snap.now_ns.saturating_sub(st.first_seen_ns)),
            )),
        ]),
        Line::from(format!(
            "session {}  handshake {}  rtt {}  SYNs {}  SYN/ACKs {}",
            h.and_then(|h| h.session(fl))
                .map_or("-".into(), |s| s.to_string()),
            snap.outcome(st).unwrap_or("pending"),
            if st.rtt_ns == 0 {
                "-".into()
            } else {
                rows::millis(st.rtt_ns)
            },
            c.syns,
            s.synacks
        )),
        Line::from(format!(
            "options SYN [{}]  SYN/ACK [{}]{}",
            opts(&c.syn_opts),
            opts(&s.syn_opts),
            if c.syn_opts.bits & SYN_OPT_SEEN != 0
                && s.syn_opts.bits & SYN_OPT_SEEN != 0
                && ((c.syn_opts.bits ^ s.syn_opts.bits) & (SYN_OPT_SACK | SYN_OPT_TIMESTAMPS) != 0
                    || (c.syn_opts.wscale_p1 == 0) != (s.syn_opts.wscale_p1 == 0))
            {
                "  (differ: stripped by a middlebox?)"
            } else {
                ""
            }
        )),
        Line::from(format!(
            "history {}   (Zeek letters: uppercase client, lowercase server)",
            h.map_or("-", |h| &*h.history)
        )),
        media_line(row.media.as_deref()),
        reply_line(row.media.as_deref()),
    ];
    f.render_widget(
        Paragraph::new(head).block(Block::new().borders(Borders::BOTTOM)),
        top,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(20)]).areas(mid);
    draw_counters(f, left, st, h.map(|_| st.in_flight.map(InFlight::get)));
    draw_sparks(f, right, ui, snap);
    draw_alerts(f, bottom, &snap.alerts, "This flow's alerts", ui.selected);
}

fn draw_counters(f: &mut Frame, area: Rect, st: &FlowStats, flight: Option<[Option<u32>; 2]>) {
    // One row per counter, the client's and the server's side by side.
    let (c, s) = (&st.dir[C2S], &st.dir[S2C]);
    let row = |name: &'static str, get: fn(&DirCounts) -> u64| {
        (name, get(c).to_string(), get(s).to_string())
    };
    let (ca, sa) = (st.anomalies(C2S), st.anomalies(S2C));
    let flag = |name: &'static str, get: fn(&Anomalies) -> u32| {
        (name, get(ca).to_string(), get(sa).to_string())
    };
    let fl = |d: usize| {
        flight
            .and_then(|x| x[d])
            .map_or("-".into(), |v| v.to_string())
    };
    let rows: Vec<(&str, String, String)> = vec![
        row("packets", |d| d.packets),
        row("bytes", |d| d.bytes),
        flag("retransmits", |d| d.retransmits),
        flag("  fast", |d| d.fast_retransmits),
        flag("  spurious", |d| d.spurious_retransmits),
        flag("out of order", |d| d.out_of_order),
        flag("lost segments", |d| d.lost_segments),
        flag("dup ACKs", |d| d.dup_acks),
        flag("zero windows", |d| d.zero_windows),
        flag("zw probes", |d| d.zero_window_probes),
        row("resets", |d| d.rsts as u64),
        flag("  suspect", |d| d.suspect_injected_rsts),
        row("FINs", |d| d.fins as u64),
        ("in flight", fl(C2S), fl(S2C)),
        row("data segments", |d| d.data_segments),
        row("payload bytes", |d| d.payload_bytes),
        flag("keep-alives", |d| d.keep_alives),
        flag("window full", |d| d.window_full),
        flag("ACKed unseen", |d| d.acked_unseen),
    ];
    let body = rows
        .into_iter()
        .map(|(k, a, b)| TRow::new(vec![Cell::from(k), Cell::from(a), Cell::from(b)]));
    let t = Table::new(
        body,
        [
            Constraint::Length(14),
            Constraint::Length(12),
            Constraint::Length(12),
        ],
    )
    .header(TRow::new(vec!["", "C>S", "S>C"]).style(Style::new().add_modifier(Modifier::BOLD)))
    .block(Block::new().borders(Borders::RIGHT));
    f.render_widget(t, area);
}

fn draw_sparks(f: &mut Frame, area: Rect, ui: &UiState, snap: &Snapshot) {
    let points = match (&snap.spark, ui.selected) {
        (Some((id, p)), Some(sel)) if *id == sel => p.as_slice(),
        _ => &[],
    };
    let width = area.width.saturating_sub(1) as usize;
    let tail = &points[points.len().saturating_sub(width)..];
    // (title, direction, retransmission share or throughput)
    let series = [
        ("retx % C>S", C2S, true),
        ("retx % S>C", S2C, true),
        ("B/s C>S", C2S, false),
        ("B/s S>C", S2C, false),
    ];
    let areas = Layout::vertical([Constraint::Ratio(1, 4); 4]).split(area);
    for ((name, d, retx), a) in series.into_iter().zip(areas.iter()) {
        // Sparklines take integers: retransmission shares in tenths of a percent.
        let value = |p: &Point| {
            if retx {
                (p.retx_ratio[d] * 1000.0) as u64
            } else {
                p.bytes_per_s[d] as u64
            }
        };
        let data: Vec<u64> = tail.iter().map(value).collect();
        let last = match tail.last() {
            Some(p) if retx => rows::percent(Some(p.retx_ratio[d] as f64)),
            Some(p) => format::bytes(p.bytes_per_s[d] as f64),
            None => "-".into(),
        };
        let title = format!(" {name} now {last} ({} s)", tail.len());
        let style = Style::new().fg(if retx { Color::Red } else { Color::Cyan });
        f.render_widget(
            Sparkline::default()
                .block(Block::new().title(title))
                .data(&data)
                .style(style),
            *a,
        );
    }
}
