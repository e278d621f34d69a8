//! `monitor report FILE`: a recording turned into something a person reads: one
//! self-contained HTML file (charts as inline SVG), or Markdown for a ticket, or both in one
//! archive with the recording and its evidence captures (`--bundle`).

pub mod bundle;
pub mod chart;
pub mod content;
pub mod html;
pub mod ladder;
pub mod markdown;

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    cli::{ReportArgs, ReportFormat},
    output,
    record::reader,
};

pub fn run(args: ReportArgs) -> Result<()> {
    if let Some(out) = &args.bundle {
        return bundle::write(&args.file, out);
    }
    let default_out = match args.format {
        ReportFormat::Html => Some(args.file.with_extension("html")),
        ReportFormat::Md => None,
    };
    let named = args.output.is_some();
    let out: Option<PathBuf> = match args.output {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(p),
        None => default_out,
    };
    // Before anything is read: the report must not replace the recording it is made from.
    let input = [("FILE", args.file.as_path())];
    match &out {
        Some(p) => {
            let what = if named { "-o" } else { "the report" };
            output::file::check_outputs(&[(what, p)], &input)?
        }
        None => output::file::check_stdout(&input)?,
    }
    let rec = reader::read(&args.file)?;
    let mut report = content::Report::from(&rec);
    ladder::draw_all(&mut report, &ladder::base_of(&rec.path));
    let text = match args.format {
        ReportFormat::Html => html::render(&report),
        ReportFormat::Md => markdown::render(&report),
    };
    match out {
        Some(path) => {
            // Written whole beside the target, then renamed: never a half-written report,
            // and an existing file is replaced only by a whole one.
            output::file::write_whole(&path, text.as_bytes())?;
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
            // A closed pipe (`| head`) ends quietly; a failed write is an error.
            output::print(&text)?;
        }
    }
    Ok(())
}
