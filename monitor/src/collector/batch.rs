//! Reading the whole flow map with `BPF_MAP_LOOKUP_BATCH`: thousands of entries per system
//! call instead of two calls per entry (next key, lookup): at a big map's size the
//! entry-by-entry walk is mostly system calls.

use std::os::fd::{AsRawFd, OwnedFd};

use monitor_common::flow::{FlowKey, FlowState};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr` (the kernel zero-fills what is not passed).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

pub struct BatchReader {
    fd: OwnedFd,
    keys: Vec<FlowKey>,
    values: Vec<FlowState>,
}

/// Entries per call: a few MB of buffers.
const CHUNK: usize = 4096;

impl BatchReader {
    pub fn new(fd: OwnedFd) -> Self {
        Self {
            fd,
            keys: vec![FlowKey::default(); CHUNK],
            values: vec![FlowState::default(); CHUNK],
        }
    }

    /// Calls `each` for every entry. `Ok(false)`: the kernel has no batch operations for this
    /// map (before 5.6); the caller walks it entry by entry instead.
    pub fn read(&mut self, mut each: impl FnMut(&FlowKey, &FlowState)) -> std::io::Result<bool> {
        let mut token_in = 0u32;
        let mut token_out = 0u32;
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &token_in as *const u32 as u64
                },
                out_batch: &mut token_out as *mut u32 as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: self.keys.len() as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: the buffers hold `count` keys and values of the map's sizes, and the
            // tokens are u32 as the hash map's batch cursor is.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>() as u32,
                )
            };
            let err = (rc < 0).then(std::io::Error::last_os_error);
            let n = (attr.count as usize).min(self.keys.len());
            match err.as_ref().and_then(|e| e.raw_os_error()) {
                None | Some(libc::ENOENT) => {
                    for i in 0..n {
                        each(&self.keys[i], &self.values[i]);
                    }
                    if err.is_some() {
                        return Ok(true);
                    }
                }
                // One bucket holds more entries than the buffer: grow it, same cursor.
                Some(libc::ENOSPC) => {
                    let more = self.keys.len() * 2;
                    self.keys.resize(more, FlowKey::default());
                    self.values.resize(more, FlowState::default());
                    continue;
                }
                Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(libc::EOPNOTSUPP) if first => {
                    return Ok(false)
                }
                Some(_) => return Err(err.unwrap_or_else(std::io::Error::last_os_error)),
            }
            first = false;
            token_in = token_out;
        }
    }
}
