//! Renderings of a [`crate::snapshot::Snapshot`].

pub mod file;
pub mod http;
pub mod json;
mod kernel_metrics;
mod media_metrics;
mod metric_labels;
pub mod metrics;
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

/// Writes one report to stdout as `write` produces it, straight into the stream (a summary
/// of a hundred thousand flows is never a string of a hundred megabytes first), and a
/// newline unless it ended with one; results as [`print`].
pub fn print_with(
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<bool> {
    let result = (|| {
        let mut out = LastByte(
            std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
            None,
        );
        write(&mut out)?;
        if out.1 != Some(b'\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    })();
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// A writer that remembers the last byte written through it.
struct LastByte<W>(W, Option<u8>);

impl<W: Write> Write for LastByte<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        if n > 0 {
            self.1 = Some(buf[n - 1]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
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
