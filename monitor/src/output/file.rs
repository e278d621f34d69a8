//! Files the monitor writes: never one of its inputs, and an existing file is replaced only
//! by a file written whole (a temporary file beside it, created exclusively, then renamed).

use std::{
    fs::{Metadata, Permissions},
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

use crate::error::usage;

fn identity(m: &Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Whether `a` and `b` are one file (device and inode; symlinks and hard links followed).
/// A path that does not exist is no file yet, so it is nobody's input.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => identity(&a) == identity(&b),
        _ => false,
    }
}

/// Refuses a run whose output would overwrite one of its inputs, or two outputs that are one
/// file: each is `(what, path)`, `what` as the command line names it (`--record`).
pub fn check_outputs(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    for (i, (out, op)) in outputs.iter().enumerate() {
        let others = inputs.iter().chain(&outputs[..i]);
        if let Some((what, p)) = others.into_iter().find(|(_, p)| same_file(op, p)) {
            return Err(usage(
                format!(
                    "{out} {} is the same file as {what} {}: it would be overwritten",
                    op.display(),
                    p.display()
                ),
                format!("give {out} another path"),
            ));
        }
    }
    Ok(())
}

/// Refuses a run whose standard output is one of its inputs (`monitor replay x.pcap >>
/// x.pcap`): the input would grow while it is read.
pub fn check_stdout(inputs: &[(&str, &Path)]) -> Result<()> {
    let Some(out) = stdout_metadata() else {
        return Ok(());
    };
    for (what, p) in inputs {
        if std::fs::metadata(p).is_ok_and(|m| identity(&m) == identity(&out)) {
            return Err(usage(
                format!(
                    "standard output is {what} {}: it would be overwritten",
                    p.display()
                ),
                "redirect the output to another file",
            ));
        }
    }
    Ok(())
}

fn stdout_metadata() -> Option<Metadata> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let m = std::fs::File::from(fd).metadata().ok()?;
    m.is_file().then_some(m)
}

/// Where a file written whole goes by renaming onto it: the regular file a link names (the
/// link stays a link, and nothing is created beside `/dev/stdout` or in `/proc`), the path
/// itself when nothing is there yet (or a directory, onto which the rename fails), or
/// `None` for anything else (a FIFO, a device, a terminal, a link that cannot be resolved):
/// written in place, never renamed or removed.
pub fn replace_target(path: &Path) -> Option<PathBuf> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::canonicalize(path).ok(),
        Ok(m) if m.is_dir() => Some(path.to_path_buf()),
        Ok(_) => None,
        Err(_) => Some(path.to_path_buf()),
    }
}

/// A new temporary file in the directory of `target` (so that renaming it onto `target`
/// never crosses file systems): a random name created with `O_EXCL`, so nothing planted at
/// a guessable name (a symlink) is followed; removed when dropped unless persisted. Mode
/// 0666 less the umask, as a plain `File::create` would give.
pub fn temporary_beside(target: &Path) -> std::io::Result<NamedTempFile> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Writes `bytes` to `path` whole or not at all: on any failure the temporary file is
/// removed and an existing file is left as it was. A FIFO or device is written in place.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(target) = replace_target(path) else {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .with_context(|| format!("writing {}", path.display()));
    };
    let target = target.as_path();
    let mut tmp =
        temporary_beside(target).with_context(|| format!("writing {}", target.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", target.display()))?;
    // A failed rename hands the temporary file back; dropping it removes it.
    tmp.persist(target)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("monitor-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_through_links_too() {
        let d = dir("same");
        let input = d.join("in.pcap");
        std::fs::write(&input, b"x").expect("write");
        let link = d.join("link.pcap");
        std::os::unix::fs::symlink(&input, &link).expect("symlink");
        let hard = d.join("hard.pcap");
        std::fs::hard_link(&input, &hard).expect("hard link");
        for out in [&input, &link, &hard] {
            let e =
                check_outputs(&[("--record", out)], &[("FILE", &input)]).expect_err("same file");
            let u = e.downcast_ref::<crate::error::UsageError>().expect("usage");
            assert!(u.reason.contains("same file as FILE"), "{}", u.reason);
        }
        // Not there yet, or another file: fine.
        let fresh = d.join("new.jsonl");
        check_outputs(&[("--record", &fresh)], &[("FILE", &input)]).expect("new path");
        std::fs::write(&fresh, b"y").expect("write");
        check_outputs(&[("--record", &fresh)], &[("FILE", &input)]).expect("other file");
        // Two outputs that are one file.
        let e = check_outputs(&[("--record", &fresh), ("--alerts-log", &fresh)], &[])
            .expect_err("two outputs");
        assert!(e.to_string().contains("--alerts-log"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file_and_the_target_as_it_was() {
        let d = dir("rename");
        let target = d.join("report.html");
        std::fs::create_dir(&target).expect("a directory where the file goes");
        std::fs::write(target.join("kept"), b"old").expect("write");
        write_whole(&target, b"new").expect_err("cannot rename onto a directory");
        let left: Vec<_> = std::fs::read_dir(&d)
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("report.html")]);
        assert_eq!(std::fs::read(target.join("kept")).expect("read"), b"old");
        let _ = std::fs::remove_dir_all(&d);
    }
}
