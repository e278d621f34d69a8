//! Whether the watched interfaces still exist. A deleted interface takes its hooks with it
//! and the monitor would go on reporting empty ticks; the collector asks by ifindex every
//! tick (one `SIOCGIFNAME` ioctl each, no netlink subscription to keep).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};

/// A socket of the namespace the interfaces are in: an ioctl on it names the interfaces
/// of that namespace, whichever namespace the thread asking is in (the demo attaches
/// inside its edge namespace and collects from outside).
#[derive(Debug)]
pub struct Presence {
    sock: OwnedFd,
}

impl Presence {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("opening a socket to watch the interfaces");
        }
        // SAFETY: `fd` is a socket just opened and owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { sock })
    }

    /// Whether an interface with this ifindex exists (renamed or not: the hooks stay on
    /// it). Only `ENODEV` says it is gone; any other failure is taken as present.
    pub fn exists(&self, index: u32) -> bool {
        // SAFETY: `ifreq` is plain data, all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_ifru.ifru_ifindex = index as libc::c_int;
        // SAFETY: SIOCGIFNAME reads the ifindex from and writes the name into `req`, which
        // lives across the call.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFNAME, &mut req) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENODEV)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_an_unused_index_does_not() {
        let p = Presence::open().expect("socket");
        let lo = nix_index("lo");
        assert!(p.exists(lo), "lo has ifindex {lo}");
        assert!(!p.exists(u32::MAX / 2), "no interface has this ifindex");
    }

    fn nix_index(name: &str) -> u32 {
        let c = std::ffi::CString::new(name).expect("name");
        // SAFETY: a NUL-terminated name.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    }
}
