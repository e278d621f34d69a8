//! `monitor replay --media-samples N`: the capture source hands over, in its ticks, the first
//! N payload segments of each flow direction, and no more. Nothing shows the samples to a
//! user yet, so this goes through the library: the command line parsed as `monitor` parses
//! it, the source `monitor replay` reads with.

use std::{collections::HashMap, future::Future, path::PathBuf};

use clap::Parser;
use monitor::{
    cli::{Cli, Command},
    pipeline::Source,
    replay,
};
use monitor_common::{flow::FlowKey, sample::Sample};

fn capture() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/pcaps/cs-inconsistent_printer.pcapng"
    ))
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Every sample of the replay `flags` ask for, and each flow direction's count of samples
/// taken as its last record says.
fn replay(flags: &[&str]) -> (Vec<Sample>, HashMap<(FlowKey, u8), u8>) {
    let file = capture();
    let mut argv = vec!["monitor", "replay", file.to_str().expect("path")];
    argv.extend_from_slice(flags);
    let Command::Replay(args) = Cli::try_parse_from(&argv).expect("parses").command else {
        panic!("not a replay");
    };
    let mut source = replay::source(&args).expect("opens");
    let (mut samples, mut last) = (Vec::new(), None);
    block_on(async {
        while let Some(tick) = source.next().await.expect("reads") {
            samples.extend(tick.samples);
            last = Some(tick.snap);
        }
    });
    let mut counts = HashMap::new();
    for f in last.expect("a tick").records().iter() {
        for d in 0..2 {
            *counts.entry((f.key, d as u8)).or_default() += f.state.dir[d].sampled;
        }
    }
    (samples, counts)
}

/// Samples per flow direction, in the order taken.
fn by_direction(samples: &[Sample]) -> HashMap<(FlowKey, u8), Vec<Sample>> {
    let mut out: HashMap<_, Vec<Sample>> = HashMap::new();
    for s in samples {
        out.entry((s.key, s.dir)).or_default().push(*s);
    }
    out
}

#[test]
fn replay_takes_as_many_samples_per_direction_as_asked() {
    let (all, _) = replay(&["--media-samples", "16"]);
    let all = by_direction(&all);
    assert!(
        all.values().any(|v| v.len() > 4),
        "the capture has directions with more than 4 payload segments"
    );
    for (flags, n) in [
        (&["--media-samples", "0"][..], 0usize),
        (&["--media-samples", "1"][..], 1),
        (&["--media-samples", "2"][..], 2),
        (&[][..], 4),
    ] {
        let (samples, counts) = replay(flags);
        let got = by_direction(&samples);
        // The first `n` of each direction's samples at 16: the same segments, in order.
        for (dir, whole) in &all {
            let want = &whole[..whole.len().min(n)];
            let have = got.get(dir).map_or(&[][..], Vec::as_slice);
            assert_eq!(have, want, "{flags:?}: direction {:?}", dir.1);
        }
        assert!(got.keys().all(|k| all.contains_key(k)), "{flags:?}");
        // The records count what was handed over.
        let counted: usize = counts.values().map(|&c| c as usize).sum();
        assert_eq!(counted, samples.len(), "{flags:?}");
    }
}
