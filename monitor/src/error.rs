//! Errors a person can act on: bad usage or input exits 2 with one line and a hint.

use std::fmt;

/// Bad usage or input: the reason, and what to do about it.
#[derive(Debug)]
pub struct UsageError {
    pub reason: String,
    pub hint: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error`, so it can travel through `?`.
pub fn usage(reason: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    UsageError {
        reason: reason.into(),
        hint: hint.into(),
    }
    .into()
}

/// Prints `err` the way the command line promises and returns the exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    if let Some(u) = err.downcast_ref::<UsageError>() {
        crate::output::status(&format!("error: {}\nhint: {}", u.reason, u.hint));
        return 2;
    }
    // One line: the chain of causes, outermost first.
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    crate::output::status(&format!("error: {}", chain.join(": ")));
    1
}
