//! `monitor report FILE`: a recording turned into something a person reads: one
//! self-contained HTML file (charts as inline SVG), or Markdown for a ticket.

pub mod chart;
pub mod html;
pub mod markdown;
pub mod model;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{
    cli::{ReportArgs, ReportFormat},
    output,
    record::reader,
};

pub fn run(args: ReportArgs) -> Result<()> {
    let rec = reader::read(&args.file)?;
    let report = model::Report::from(&rec);
    let (text, default_out) = match args.format {
        ReportFormat::Html => (
            html::render(&report),
            Some(args.file.with_extension("html")),
        ),
        ReportFormat::Md => (markdown::render(&report), None),
    };
    let out: Option<PathBuf> = match args.output {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(p),
        None => default_out,
    };
    match out {
        Some(path) => {
            // Written whole to a temporary name, then renamed: never a half-written report.
            let tmp = path.with_extension("tmp-report");
            std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            output::status(&format!(
                "monitor: report written to {} ({} flows, {} alerts{})",
                path.display(),
                report.flows,
                report.alerts.len(),
                if rec.truncated_tail {
                    "; the recording's cut last line was left out"
                } else {
                    ""
                }
            ));
        }
        None => {
            let _ = output::stdout_line(&text);
        }
    }
    Ok(())
}
