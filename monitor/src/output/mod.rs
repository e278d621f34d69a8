//! Renderings of a [`crate::snapshot::Snapshot`].

pub mod file;
pub mod http;
pub mod json;
mod kernel_metrics;
mod media_metrics;
mod metric_labels;
pub mod metrics;
mod prometheus_text;
pub mod text;

use std::io::Write;

/// Writes one report to stdout: `Ok(true)` when written, `Ok(false)` when the reader has
/// gone (`monitor ... | head -1`: the caller stops quietly, as command-line tools do), and
/// an error for any other failure (a full disk, `/dev/full`): output lost is never a success.
pub fn print(text: &str) -> anyhow::Result<bool> {
    match stdout_line(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// Writes one report to stdout as `write` produces it, straight into one buffered stream (a
/// summary of a hundred thousand flows is never a string of a hundred megabytes first);
/// `write` ends it with its newline. Results as [`print`].
pub fn print_with(
    write: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> anyhow::Result<bool> {
    let result = (|| {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        write(&mut out)?;
        out.flush()
    })();
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// One report to stdout, never a panic as `println!` would make it; see [`print`].
fn stdout_line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A status line on stderr; if nobody reads stderr any more, it is dropped.
pub fn status(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}
