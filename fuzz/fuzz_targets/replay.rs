//! Arbitrary bytes as a capture: the streaming reader (plain, and through the gzip and
//! zstd decoders when the bytes start with their magic), the header parser and the
//! analysis core (through the host engine) must never panic, whatever the file says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{capture::Reader, replay::analyse_reader};
use monitor_common::config::PortSet;

/// Hands out at most a few bytes per read, as a pipe may: the reader must not depend on
/// how its input is split.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The bytes compressed, so the fuzzer's captures also go through a decoder whole.
fn compressed(bytes: &[u8], zstd: bool) -> Vec<u8> {
    if zstd {
        zstd::encode_all(bytes, 1).unwrap_or_default()
    } else {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(bytes);
        e.finish().unwrap_or_default()
    }
}

fuzz_target!(|data: &[u8]| {
    // The length picks the path (so the corpus's captures stay whole): read whole, in
    // small reads as from a pipe, or gzip- or zstd-compressed.
    let step = 1 + data.len() % 13;
    let (bytes, step) = match data.len() % 4 {
        0 => (data.to_vec(), usize::MAX),
        1 => (data.to_vec(), step),
        2 => (compressed(data, false), step),
        _ => (compressed(data, true), usize::MAX),
    };
    let input = Trickle {
        data: bytes,
        at: 0,
        step,
    };
    let Ok(reader) = Reader::new(input) else {
        return;
    };
    if let Ok((snap, _)) = analyse_reader(reader, &PortSet::all()) {
        let _ = monitor::output::json::render(&snap);
    }
});
