//! Arbitrary bytes as a capture file: the reader, the header parser and the analysis core
//! (through the host engine) must never panic, whatever the file says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{capture::Reader, replay::analyse_reader};
use monitor_common::config::PortSet;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = Reader::from_bytes(data.to_vec()) else { return };
    if let Ok(snap) = analyse_reader(&reader, &PortSet::all()) {
        let _ = monitor::output::json::render(&snap);
    }
});
