//! The few socket calls std does not offer, shared by the demo's traffic and its injector.

use std::{io, net::Ipv4Addr, os::fd::RawFd};

/// An IPv4 socket address as the kernel takes it.
pub fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// The address as the pointer and length `bind`, `connect` and `sendto` take. The pointer
/// is valid only while `sa` is: pass a named value, never a temporary (`raw(&make())`
/// dangles once the statement ends).
pub fn raw<T>(sa: &T) -> (*const libc::sockaddr, libc::socklen_t) {
    (
        sa as *const T as *const libc::sockaddr,
        std::mem::size_of::<T>() as libc::socklen_t,
    )
}

/// `setsockopt(fd, level, name, value)`.
pub fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc)
}

/// A libc return code as a result: non-zero is the error in `errno`.
pub fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
