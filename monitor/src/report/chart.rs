//! Timeline charts as inline SVG (plotters' SVG backend): one line per flow direction,
//! alert markers as vertical lines coloured by severity. Text is left to the browser's
//! fonts, so the report needs no font files and fetches nothing.
//!
//! The alerts' labels sit in a band at the top of the plot, above the data, in as many lanes
//! as alerts close in time need so no two labels overlap (written as SVG by hand after
//! plotters' drawing, each box sized to its text with `textLength`).

use std::ops::Range;

use plotters::{coord::types::RangedCoordf64, prelude::*};

use super::content::{AlertSummary, Series};
use crate::format::esc;
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

const SIZE: (u32, u32) = (960, 360);
/// One lane of alert labels: an 11 px font in a 15 px box, 2 px apart.
const LANE_H: i32 = 17;
const BOX_H: i32 = 15;
/// At most this many lanes; the labels beyond are left out and said under the chart.
const MAX_LANES: usize = 5;
/// A width per character generous for an 11 px sans-serif font; the text is fitted to its
/// box (`textLength`) whatever the browser's font.
const CHAR_W: f64 = 6.3;
/// Space between two labels in one lane, and the label's inset from its marker.
const GAP: f64 = 4.0;

/// Where a label goes: its box's left edge and its lane (0: nearest the data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placed {
    pub x: f64,
    pub lane: usize,
}

/// Places labels of `widths` at markers `xs` (pixels) within `left..right`: each box starts
/// just right of its marker (moved left where it would pass `right`), and goes in the
/// lowest lane where it overlaps no other box. `None`: no lane of `max_lanes` is free.
pub fn place_labels(
    xs: &[f64],
    widths: &[f64],
    left: f64,
    right: f64,
    max_lanes: usize,
) -> Vec<Option<Placed>> {
    let starts: Vec<f64> = xs
        .iter()
        .zip(widths)
        .map(|(&x, &w)| (x + GAP / 2.0).min(right - w).max(left))
        .collect();
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| starts[a].total_cmp(&starts[b]));
    // Each lane's rightmost box end so far: boxes come in order of their left edge, so the
    // first lane whose end is left of this box holds it without overlap.
    let mut ends: Vec<f64> = Vec::new();
    let mut out = vec![None; xs.len()];
    for i in order {
        let x = starts[i];
        let lane = match ends.iter().position(|&e| e + GAP <= x) {
            Some(l) => l,
            None if ends.len() < max_lanes => {
                ends.push(f64::NEG_INFINITY);
                ends.len() - 1
            }
            None => continue,
        };
        ends[lane] = x + widths[i];
        out[i] = Some(Placed { x, lane });
    }
    out
}

fn label_text(a: &AlertSummary) -> String {
    format!("{} #{}", a.kind, a.id)
}

fn label_width(text: &str) -> f64 {
    (text.chars().count() as f64 * CHAR_W + 8.0).ceil()
}

fn colour(a: &AlertSummary) -> RGBColor {
    if a.severity == "critical" {
        RED
    } else {
        RGBColor(230, 150, 0)
    }
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The chart's layout: the title, axes and label areas, on a drawing area of `SIZE`.
fn layout<'a, DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_max: f64,
    y_max: f64,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
}

/// The plot area in pixels, the same for any data range (the label areas are fixed).
fn plot_area(title: &str) -> Option<(Range<i32>, Range<i32>)> {
    let mut scratch = String::new();
    let root = SVGBackend::with_string(&mut scratch, SIZE).into_drawing_area();
    let chart = layout(&root, title, 1.0, 1.0).ok()?;
    Some(chart.plotting_area().get_pixel_range())
}

/// One chart: `series` over `duration_s`, y labelled `unit`, with the alerts marked.
pub fn timeline(
    title: &str,
    unit: &str,
    series: &[Series],
    alerts: &[AlertSummary],
    duration_s: f64,
) -> String {
    let mut svg = String::new();
    let x_max = duration_s.max(1.0);
    let peak = series.iter().map(Series::peak).fold(0.0, f64::max);
    // Nothing to draw still gets readable axes.
    let data_top = if peak > 0.0 { peak * 1.1 } else { 1.0 };
    let texts: Vec<String> = alerts.iter().map(label_text).collect();
    let widths: Vec<f64> = texts.iter().map(|t| label_width(t)).collect();
    // The lanes the labels need, from the plot's width alone, decide the band above the data.
    let (xr, yr) = plot_area(title).unwrap_or((0..SIZE.0 as i32, 0..SIZE.1 as i32));
    let (left, right) = (xr.start as f64, xr.end as f64);
    let px = |t: f64| left + t / x_max * (right - left);
    let marks: Vec<f64> = alerts.iter().map(|a| px(a.raised_s)).collect();
    let lanes = place_labels(&marks, &widths, left, right, MAX_LANES)
        .iter()
        .flatten()
        .map(|p| p.lane + 1)
        .max()
        .unwrap_or(0);
    let band = if lanes > 0 {
        lanes as i32 * LANE_H + 4
    } else {
        0
    };
    let plot_h = (yr.end - yr.start).max(band + 1) as f64;
    let y_max = data_top * plot_h / (plot_h - band as f64);
    let mut unlabelled = 0;
    let drawn = (|| -> Result<String, Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = layout(&root, title, x_max, y_max)?;
        let fmt_y = |v: &f64| {
            if y_max >= 1000.0 {
                crate::format::bytes(*v)
            } else if y_max >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        };
        chart
            .configure_mesh()
            .x_desc("seconds from the start")
            .y_desc(unit)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&fmt_y)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for a in alerts {
            chart.draw_series(LineSeries::new(
                [(a.raised_s, 0.0), (a.raised_s, data_top)],
                colour(a).stroke_width(1),
            ))?;
        }
        for (i, s) in series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        if !series.is_empty() {
            // Upper right, below the alerts' band: its width estimated as the labels' are
            // (the legend's own margins and line sample included).
            let chars = series
                .iter()
                .map(|s| s.label.chars().count())
                .max()
                .unwrap_or(0);
            let w = (chars as f64 * CHAR_W) as i32 + 30 + 20;
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 11))
                .position(SeriesLabelPosition::Coordinate(
                    (xr.end - xr.start - w - 5).max(5),
                    band + 5,
                ))
                .draw()?;
        }
        root.present()?;
        // The labels, placed again from where plotters put the markers (the same pixels as
        // estimated above, bar rounding), within the lanes the band has room for.
        let marks: Vec<f64> = alerts
            .iter()
            .map(|a| chart.backend_coord(&(a.raised_s, 0.0)).0 as f64)
            .collect();
        let placed = place_labels(&marks, &widths, xr.start as f64, xr.end as f64, lanes);
        let band_bottom = yr.start + band;
        let mut lines = String::new();
        let mut boxes = String::new();
        for (i, a) in alerts.iter().enumerate() {
            let Some(p) = placed[i] else {
                unlabelled += 1;
                continue;
            };
            let c = hex(colour(a));
            let y = band_bottom - 2 - BOX_H - p.lane as i32 * LANE_H;
            lines.push_str(&format!(
                "<line x1=\"{x:.0}\" y1=\"{band_bottom}\" x2=\"{x:.0}\" y2=\"{}\" stroke=\"{c}\"/>\n",
                y + BOX_H,
                x = marks[i]
            ));
            boxes.push_str(&format!(
                "<g class=\"alert-label\" data-alert=\"{id}\"><rect class=\"alert-label\" x=\"{x:.0}\" y=\"{y}\" width=\"{w:.0}\" height=\"{BOX_H}\" fill=\"#ffffff\" stroke=\"{c}\"/>\
                 <text x=\"{tx:.0}\" y=\"{ty}\" font-family=\"sans-serif\" font-size=\"11\" fill=\"{c}\" textLength=\"{tl:.0}\" lengthAdjust=\"spacingAndGlyphs\">{t}</text></g>\n",
                id = a.id,
                x = p.x,
                w = widths[i],
                tx = p.x + 4.0,
                ty = y + 11,
                tl = widths[i] - 8.0,
                t = esc(&texts[i])
            ));
        }
        Ok(format!("<g class=\"alert-labels\">\n{lines}{boxes}</g>\n"))
    })();
    match drawn {
        Ok(labels) => {
            // After plotters' own elements, so the boxes cover the lines they cross.
            if let Some(end) = svg.rfind("</svg>") {
                svg.insert_str(end, &labels);
            }
            if unlabelled > 0 {
                svg.push_str(&format!(
                    "<p class=\"chart-note\">{unlabelled} alert marker{} without a label here, too close to the others; every alert is in the table below.</p>",
                    if unlabelled == 1 { "" } else { "s" }
                ));
            }
            svg
        }
        Err(e) => format!("<p>chart not drawn: {}</p>", esc(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: u64, kind: &str, raised_s: f64) -> AlertSummary {
        AlertSummary {
            id,
            kind: kind.into(),
            severity: if id.is_multiple_of(2) {
                "critical"
            } else {
                "warning"
            }
            .into(),
            raised_s,
            ..AlertSummary::default()
        }
    }

    /// The label boxes the SVG holds: (x, y, width, height).
    fn boxes(svg: &str) -> Vec<(f64, f64, f64, f64)> {
        svg.split("<rect class=\"alert-label\"")
            .skip(1)
            .map(|r| {
                let attr = |name: &str| -> f64 {
                    let at = r.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
                    r[at..].split('"').next().unwrap_or("").parse().expect(name)
                };
                (attr("x"), attr("y"), attr("width"), attr("height"))
            })
            .collect()
    }

    fn overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }

    fn series() -> Vec<Series> {
        vec![Series {
            label: "10.0.0.1:5000 > 10.0.0.2:443 c2s".into(),
            points: (0..60).map(|t| (t as f64, (t % 7) as f64)).collect(),
        }]
    }

    #[test]
    fn alerts_raised_at_the_same_second_get_labels_that_do_not_overlap() {
        let alerts = [
            alert(1, "retransmit_rate", 30.0),
            alert(2, "reset", 30.0),
            alert(3, "stall", 30.4),
            alert(4, "zero_window", 31.0),
            // At the right edge: moved left, still apart.
            alert(5, "handshake_failure", 60.0),
            alert(6, "tls_stall", 60.0),
        ];
        let svg = timeline("t", "%", &series(), &alerts, 60.0);
        let b = boxes(&svg);
        assert_eq!(b.len(), alerts.len(), "a label per alert: {svg}");
        for i in 0..b.len() {
            for j in i + 1..b.len() {
                assert!(!overlap(b[i], b[j]), "labels {i} and {j} overlap: {b:?}");
            }
            assert!(b[i].0 >= 0.0 && b[i].0 + b[i].2 <= SIZE.0 as f64, "{b:?}");
        }
        for a in &alerts {
            assert!(svg.contains(&format!(">{} #{}</text>", a.kind, a.id)));
        }
        assert!(!svg.contains("chart-note"), "all labelled");
    }

    #[test]
    fn labels_apart_in_time_share_a_lane_and_too_many_are_counted() {
        let apart = [alert(1, "reset", 5.0), alert(2, "reset", 50.0)];
        let svg = timeline("t", "%", &series(), &apart, 60.0);
        let b = boxes(&svg);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].1, b[1].1, "one lane: {b:?}");
        let crowd: Vec<AlertSummary> = (1..=9).map(|i| alert(i, "stall", 10.0)).collect();
        let svg = timeline("t", "%", &series(), &crowd, 60.0);
        let b = boxes(&svg);
        assert_eq!(b.len(), MAX_LANES);
        assert!(
            svg.contains("4 alert markers without a label here"),
            "{svg}"
        );
        for i in 0..b.len() {
            for j in i + 1..b.len() {
                assert!(!overlap(b[i], b[j]), "{b:?}");
            }
        }
    }

    #[test]
    fn place_labels_takes_the_lowest_free_lane() {
        let p = place_labels(&[10.0, 10.0, 200.0, 12.0], &[100.0; 4], 0.0, 500.0, 3);
        let lanes: Vec<Option<usize>> = p.iter().map(|p| p.map(|p| p.lane)).collect();
        assert_eq!(lanes, vec![Some(0), Some(1), Some(0), Some(2)]);
        // Past the right edge: moved left to end there.
        let p = place_labels(&[495.0], &[100.0], 0.0, 500.0, 3);
        assert_eq!(p[0], Some(Placed { x: 400.0, lane: 0 }));
        assert_eq!(
            place_labels(&[1.0, 1.0], &[50.0; 2], 0.0, 500.0, 1)[1],
            None
        );
    }
}
