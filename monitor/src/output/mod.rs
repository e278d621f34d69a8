//! Renderings of a [`crate::snapshot::Snapshot`].

pub mod http;
pub mod json;
pub mod metrics;
pub mod text;

use std::io::Write;

/// Writes one report to stdout. A closed pipe (`monitor ... | head -1`) is an error the
/// caller ends on quietly, never a panic as `println!` would make it.
pub fn stdout_line(text: &str) -> std::io::Result<()> {
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
