//! Running kernel set-up inside another network namespace (the demo's edge) without moving
//! the whole process: a scoped thread joins the namespace, does the work, and ends.
//! Interface names, ifindexes, netlink and tcx attachment all resolve in the calling
//! thread's namespace.

use std::{fs::File, os::fd::AsRawFd};

use anyhow::{anyhow, Context, Result};

/// Runs `f` in namespace `ns` (or here, when `None`).
pub fn within<T: Send>(ns: Option<&File>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let Some(ns) = ns else {
        return f();
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace fd; affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("joining the network namespace");
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("the namespace thread panicked"))?
    })
}
