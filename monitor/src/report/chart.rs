//! Timeline charts as inline SVG (plotters' SVG backend): one line per flow direction,
//! alert markers as vertical lines coloured by severity. Text is left to the browser's
//! fonts, so the report needs no font files and fetches nothing.

use plotters::prelude::*;

use super::content::{AlertSummary, Series};

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
    let y_max = if peak > 0.0 { peak * 1.1 } else { 1.0 };
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (960, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
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
            let colour = if a.severity == "critical" {
                RED
            } else {
                RGBColor(230, 150, 0)
            };
            chart.draw_series(LineSeries::new(
                [(a.raised_s, 0.0), (a.raised_s, y_max)],
                colour.stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{} #{}", a.kind, a.id),
                (a.raised_s, y_max * 0.97),
                ("sans-serif", 11).into_font().color(&colour),
            )))?;
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
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 11))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => format!(
            "<p>chart not drawn: {}</p>",
            crate::format::esc(&e.to_string())
        ),
    }
}
