//! `monitor report FILE --bundle OUT.tar.gz`: one archive to attach to a ticket, holding the
//! HTML report, the Markdown summary, the recording and every evidence capture its alerts
//! name (`"capture"` on a transition line). Everything it needs is checked before anything
//! is written: a named capture that is missing refuses the bundle rather than leaving the
//! ticket without its proof. Written like the reports (`output::file`): to a temporary file
//! beside OUT, then renamed.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use flate2::{write::GzEncoder, Compression};

use super::{content, html, markdown};
use crate::{error::usage, output, record::reader};

/// One evidence capture the recording names.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    /// As the transition line has it.
    pub named: String,
    /// Where it is read from: relative names from the recording's directory.
    pub path: PathBuf,
    /// Its name in the archive, below the bundle's directory.
    pub archived: String,
    /// The first alert that names it, for the error when it is missing.
    pub alert: u64,
}

/// The captures `rec` names, once each, with their names in the archive. A file name taken
/// twice (two directories) gets a number in front, so no capture replaces another.
pub fn captures(rec: &reader::Recording) -> Vec<Capture> {
    let base = match rec.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out: Vec<Capture> = Vec::new();
    for t in &rec.alerts {
        let Some(named) = t["capture"].as_str().filter(|c| !c.is_empty()) else {
            continue;
        };
        if out.iter().any(|c| c.named == named) {
            continue;
        }
        let path = base.join(named);
        // The same file under two spellings (`ev/a.pcapng`, `./ev/a.pcapng`) is one capture.
        if let Some(same) = out.iter().find(|c| output::file::same_file(&c.path, &path)) {
            let mut c = same.clone();
            c.named = named.to_string();
            out.push(c);
            continue;
        }
        let file = Path::new(named)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into());
        let mut archived = format!("captures/{file}");
        let mut n = 1;
        while out.iter().any(|c| c.archived == archived) {
            n += 1;
            archived = format!("captures/{n}-{file}");
        }
        out.push(Capture {
            named: named.to_string(),
            path,
            archived,
            alert: t["id"].as_u64().unwrap_or(0),
        });
    }
    out
}

/// The directory the archive unpacks into: OUT's name without `.tar.gz`, `.tgz` or `.tar`.
fn top_directory(out: &Path) -> String {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    if stem.is_empty() || stem.starts_with('.') {
        "report".into()
    } else {
        stem.to_string()
    }
}

pub fn write(file: &Path, out: &Path) -> Result<()> {
    // Before anything is read: the bundle must not replace the recording.
    output::file::check_outputs(&[("--bundle", out)], &[("FILE", file)])?;
    if out.is_dir() {
        return Err(usage(
            format!("--bundle {} is a directory", out.display()),
            "give --bundle a file name, e.g. ticket.tar.gz",
        ));
    }
    // Read once: the recording in the archive is the one the report was made from.
    let bytes = std::fs::read(file).map_err(|e| {
        usage(
            format!("cannot read recording {}: {e}", file.display()),
            "give a file written by --record",
        )
    })?;
    let rec = reader::parse(&bytes, file)?;
    let caps = captures(&rec);
    for c in &caps {
        match std::fs::metadata(&c.path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(usage(
                    format!(
                        "alert #{} names the evidence capture {}, which is not a file",
                        c.alert,
                        c.path.display()
                    ),
                    "the recording's alerts name their captures; put the capture there, or make the report without --bundle",
                ))
            }
            Err(e) => {
                return Err(usage(
                    format!(
                        "alert #{} names the evidence capture {}, which cannot be read: {e}",
                        c.alert,
                        c.path.display()
                    ),
                    "a relative capture name is read from the recording's directory: bring the capture back there (or run the report where the recording was made), or make the report without --bundle",
                ))
            }
        }
    }
    let inputs: Vec<(&str, &Path)> = std::iter::once(("FILE", file))
        .chain(
            caps.iter()
                .map(|c| ("the evidence capture", c.path.as_path())),
        )
        .collect();
    output::file::check_outputs(&[("--bundle", out)], &inputs)?;

    let top = top_directory(out);
    let mut report = content::Report::from(&rec);
    super::ladder::draw_all(&mut report, &super::ladder::base_of(&rec.path));
    let archived: BTreeMap<&str, &str> = caps
        .iter()
        .map(|c| (c.named.as_str(), c.archived.as_str()))
        .collect();
    // The reports in the bundle name each capture where the bundle holds it.
    for a in &mut report.alerts {
        if let Some(name) = a.capture.as_deref().and_then(|c| archived.get(c)) {
            a.capture = Some(name.to_string());
        }
    }
    let rec_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording.jsonl".into());
    let mut entries: Vec<(String, Entry)> = vec![
        (
            "report.html".into(),
            Entry::Made(html::render(&report).into_bytes()),
        ),
        (
            "report.md".into(),
            Entry::Made(markdown::render(&report).into_bytes()),
        ),
        (format!("recording/{rec_name}"), Entry::Read(bytes, file)),
    ];
    let mut seen = Vec::new();
    for c in &caps {
        if !seen.contains(&c.archived) {
            seen.push(c.archived.clone());
            entries.push((c.archived.clone(), Entry::File(&c.path)));
        }
    }

    let target = output::file::replace_target(out);
    match &target {
        Some(t) => {
            // The error's kind alone: its text names the temporary file, not OUT.
            let tmp = output::file::temporary_beside(t).map_err(|e| {
                usage(
                    format!(
                        "cannot write --bundle {}: {}",
                        out.display(),
                        std::io::Error::from(e.kind())
                    ),
                    "give --bundle a path in a directory that exists and can be written",
                )
            })?;
            let tmp = archive(tmp, &top, &entries)
                .with_context(|| format!("writing {}", out.display()))?;
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("writing {}", out.display()))?;
            // A failed rename hands the temporary file back; dropping it removes it.
            tmp.persist(t)
                .map_err(|e| e.error)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        None => {
            // A FIFO or device: written in place, never renamed or removed.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(out)
                .map_err(|e| {
                    usage(
                        format!("cannot write --bundle {}: {e}", out.display()),
                        "give --bundle a path that can be written",
                    )
                })?;
            archive(f, &top, &entries).with_context(|| format!("writing {}", out.display()))?;
        }
    }
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    output::status(&format!(
        "monitor: bundle written to {} ({} flows, {} alerts, {} evidence capture{}): {top}/{{{}}}{}",
        out.display(),
        report.flows,
        report.alerts.len(),
        seen.len(),
        if seen.len() == 1 { "" } else { "s" },
        names.join(", "),
        if rec.truncated_tail {
            "; the recording's cut last line was left out of the report"
        } else {
            ""
        }
    ));
    Ok(())
}

/// What goes into the archive under one name.
enum Entry<'a> {
    /// Made by this command (the reports).
    Made(Vec<u8>),
    /// Already read: the recording's bytes, with the file for its times and mode.
    Read(Vec<u8>, &'a Path),
    /// Copied from a file as it is.
    File(&'a Path),
}

/// Writes the gzip-compressed tar of `entries` under `top/` into `w`, and hands `w` back.
fn archive<W: Write>(w: W, top: &str, entries: &[(String, Entry)]) -> Result<W> {
    let mut tar = tar::Builder::new(GzEncoder::new(w, Compression::default()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name, entry) in entries {
        let path = format!("{top}/{name}");
        match entry {
            Entry::Made(bytes) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(now);
                tar.append_data(&mut h, &path, bytes.as_slice())?;
            }
            Entry::Read(bytes, from) => {
                let mut h = tar::Header::new_gnu();
                match std::fs::metadata(from) {
                    Ok(m) => h.set_metadata(&m),
                    Err(_) => {
                        h.set_mode(0o644);
                        h.set_mtime(now);
                    }
                }
                h.set_size(bytes.len() as u64);
                tar.append_data(&mut h, &path, bytes.as_slice())?;
            }
            Entry::File(from) => {
                let mut f =
                    File::open(from).with_context(|| format!("reading {}", from.display()))?;
                tar.append_file(&path, &mut f)
                    .with_context(|| format!("reading {}", from.display()))?;
            }
        }
    }
    let gz = tar.into_inner()?;
    Ok(gz.finish()?)
}
