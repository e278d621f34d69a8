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

/// What the command line prints on stderr for `err`, and its exit code. Printing is the
/// caller's (main.rs, through `output::status`): errors sit below the outputs.
pub fn message(err: &anyhow::Error) -> (String, i32) {
    if let Some(u) = err.downcast_ref::<UsageError>() {
        return (format!("error: {}\nhint: {}", u.reason, u.hint), 2);
    }
    // One line: the chain of causes, outermost first.
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    (format!("error: {}", chain.join(": ")), 1)
}

/// The subcommands, for the hint that points to their help.
const SUBCOMMANDS: [&str; 4] = ["live", "replay", "demo", "report"];

/// The command line parser's error in the project's form: its first paragraph as the reason
/// (one line), its tips and the help of the subcommand at fault as the hint. clap's own
/// output has no hint line and several lines of usage; `args` are the program's arguments,
/// to name the subcommand.
pub fn from_clap(err: &clap::Error, args: &[String]) -> UsageError {
    let text = match err.kind() {
        // `monitor` alone: clap prints the whole help, on stderr.
        clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => format!(
            "error: a subcommand is required: {}",
            SUBCOMMANDS.join(", ")
        ),
        _ => err.render().to_string(),
    };
    let mut paragraphs = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty());
    let reason = paragraphs
        .next()
        .unwrap_or("bad arguments")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let reason = reason
        .strip_prefix("error: ")
        .unwrap_or(&reason)
        .to_string();
    let mut hints: Vec<String> = paragraphs
        .flat_map(str::lines)
        .filter_map(|l| l.trim().strip_prefix("tip: ").map(str::to_string))
        .collect();
    let sub = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .filter(|a| SUBCOMMANDS.contains(&a.as_str()));
    hints.push(match sub {
        Some(s) => format!("see `monitor {s} --help`"),
        None => "see `monitor --help`".to_string(),
    });
    UsageError {
        reason,
        hint: hints.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse_error(args: &[&str]) -> UsageError {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let err = crate::cli::Cli::try_parse_from(&args).expect_err("a bad command line");
        from_clap(&err, &args)
    }

    #[test]
    fn parser_errors_are_one_reason_and_one_hint() {
        for (args, reason, hint) in [
            (
                &["monitor", "live"][..],
                "required arguments were not provided: --interface <IFACE>",
                "see `monitor live --help`",
            ),
            (
                &["monitor", "replay", "x.pcap", "--intervl", "1"][..],
                "unexpected argument '--intervl'",
                "see `monitor replay --help`",
            ),
            (
                &["monitor"][..],
                "a subcommand is required: live, replay, demo, report",
                "see `monitor --help`",
            ),
            (
                &["monitor", "liv"][..],
                "unrecognized subcommand 'liv'",
                "similar subcommand exists: 'live'; see `monitor --help`",
            ),
            (
                &["monitor", "live", "-i", "lo", "--interval", "-1"][..],
                "`-1` is out of range: 0.001 to 3600 seconds",
                "see `monitor live --help`",
            ),
            (
                &["monitor", "demo", "--interval", "1e-10"][..],
                "out of range",
                "see `monitor demo --help`",
            ),
            (
                &["monitor", "live", "-i", "lo", "--max-flows", "-5"][..],
                "'--max-flows <MAX_FLOWS>'",
                "see `monitor live --help`",
            ),
        ] {
            let e = parse_error(args);
            assert!(e.reason.contains(reason), "{args:?}: {}", e.reason);
            assert!(e.hint.contains(hint), "{args:?}: {}", e.hint);
            assert!(!e.reason.contains('\n') && !e.hint.contains('\n'), "{e:?}");
            assert!(!e.reason.contains("For more information"), "{e:?}");
        }
    }
}
