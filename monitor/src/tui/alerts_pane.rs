//! The alerts pane, and how a severity looks: shared by the screen's main view and a
//! flow's detail (`view.rs`).

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
    Frame,
};

use crate::model::{Alert, FlowId, Level};

pub(super) fn level_style(l: Option<Level>) -> Style {
    match l {
        Some(Level::Critical) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Some(Level::Warning) => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Green),
    }
}

pub(super) fn marker(l: Level) -> &'static str {
    match l {
        Level::Critical => "CRIT!!",
        _ => "WARN!",
    }
}

/// UTC wall-clock time of an epoch-ns timestamp.
fn clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

fn alert_line(a: &Alert, with_flow: bool) -> Line<'static> {
    let (mark, style) = match a.cleared_ns {
        Some(_) => ("cleared", Style::new().add_modifier(Modifier::DIM)),
        None => (marker(a.severity), level_style(Some(a.severity))),
    };
    let t = a.cleared_ns.unwrap_or(a.changed_ns);
    let mut spans = vec![
        Span::raw(format!("{} ", clock(t))),
        Span::styled(format!("{mark:<7} "), style),
        Span::styled(
            format!("{:<17} ", a.kind.name()),
            Style::new().add_modifier(Modifier::BOLD),
        ),
    ];
    if with_flow {
        spans.push(Span::raw(format!("{} > {}  ", a.client, a.server)));
    }
    let healthy = if a.session_has_healthy_flow {
        " [session has a healthy flow]"
    } else {
        ""
    };
    spans.push(Span::raw(format!("{}{healthy}", a.summary)));
    Line::from(spans)
}

/// The alerts pane; `only` a flow's, each with what it means in a second line
/// (`explain.rs`, as the report says it).
pub(super) fn draw_alerts(
    f: &mut Frame,
    area: Rect,
    alerts: &[Alert],
    title: &str,
    only: Option<FlowId>,
) {
    let shown: Vec<&Alert> = alerts
        .iter()
        .filter(|a| only.is_none_or(|id| a.flow_ids.contains(&id)))
        .collect();
    let active = shown.iter().filter(|a| a.cleared_ns.is_none()).count();
    let lines: Vec<Line> = if shown.is_empty() {
        vec![Line::from("none")]
    } else {
        shown
            .iter()
            .flat_map(|a| {
                let mut lines = vec![alert_line(a, only.is_none())];
                if only.is_some() {
                    lines.push(meaning_line(a));
                }
                lines
            })
            .collect()
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!("{title} (active {active})"));
    let pane = Paragraph::new(lines).block(block);
    // A flow's few alerts have room for their meaning whole.
    let pane = if only.is_some() {
        pane.wrap(Wrap { trim: false })
    } else {
        pane
    };
    f.render_widget(pane, area);
}

fn meaning_line(a: &Alert) -> Line<'static> {
    let evidence = serde_json::Value::Object(a.evidence.clone());
    let x = crate::explain::explain(a.kind.name(), a.direction, &evidence);
    Line::from(Span::styled(
        format!("  {}", x.meaning),
        Style::new().add_modifier(Modifier::DIM),
    ))
}
