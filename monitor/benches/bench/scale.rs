//! Group 5, scale: N concurrent flows in the kernel map (filled through BPF_PROG_TEST_RUN
//! with synthetic flows), then what one collector tick costs with them (reading the map,
//! judging the flows, feeding the metrics), the monitor's resident memory, the kernel map's
//! memory, rendering the flow table, and a `/metrics` scrape.

use std::time::Instant;

use aya::{programs::SchedClassifier, Ebpf};
use monitor::{
    alerts::{AlertConfig, AlertEngine, SPARK_POINTS},
    collector::{Clock, Collector},
    kernel::load::load,
    model::RunInfo,
    output::metrics::Metrics,
    tui::{state::UiState, view},
};
use monitor_common::{
    config::PortSet,
    parse::{ACK, SYN},
};
use ratatui::{backend::TestBackend, Terminal};
use serde_json::{json, Value};

use crate::{
    kernel::{run, seg},
    stats::Figure,
};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The kernel's accounting of the LRU flow map with `max_entries` (from our fdinfo).
fn map_memlock(max_entries: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(String::from)
        };
        if field("map_type:").as_deref() == Some("9")
            && field("max_entries:").as_deref() == Some(&max_entries.to_string())
        {
            return field("memlock:").and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// `n` flows, each a handshake and one data segment.
fn fill(e: &mut Ebpf, n: u32) {
    for i in 0..n {
        run(e, &seg(i, true, 1000, 0, SYN, 0), 1);
        run(e, &seg(i, false, 5000, 1001, SYN | ACK, 0), 1);
        run(e, &seg(i, true, 1001, 5001, ACK, 200), 1);
    }
}

/// The next data segment of every `step`th flow starting at `first` (the `round`th since
/// the fill): the flows that changed between two ticks.
fn touch(e: &mut Ebpf, n: u32, first: u32, step: u32, round: u32) {
    let seq = 1201 + 200 * round;
    for i in (first..n).step_by(step as usize) {
        run(e, &seg(i, true, seq, 5001, ACK, 200), 1);
    }
}

/// Between two ticks one flow in this many gets a packet.
const CHANGED_EVERY: u32 = 100;

/// Ticks after the first that are not measured: a flow that changed stays awake (judged,
/// its samples taken) until its rate window (10 s by default) holds no change, so the
/// share of awake flows settles only after that many ticks.
const WARM_UP: usize = 12;

pub fn bench(sizes: &[u32], runs: usize) -> Value {
    let mut out = Vec::new();
    for &n in sizes {
        let base_rss = rss_bytes();
        let max = n + n / 8;
        let cfg = crate::DEFAULT_PORTS
            .parse::<PortSet>()
            .expect("ports")
            .to_config(0);
        let mut e = load(&cfg, max).expect("load");
        let p: &mut SchedClassifier = e
            .program_mut("tc_eth_in")
            .expect("tc")
            .try_into()
            .expect("tc");
        p.load().expect("verifier");
        let t = Instant::now();
        fill(&mut e, n);
        let fill_s = t.elapsed().as_secs_f64();
        let map_bytes = map_memlock(max);
        let mut collector =
            Collector::new(&mut e, Clock::monotonic(), Vec::new()).expect("collector");
        let mut engine = AlertEngine::new(AlertConfig::default());
        let mut metrics = Metrics::new(0);
        let (mut read, mut judge, mut feed, mut render, mut redraw, mut scrape) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut flows_seen = 0;
        let mut rss_after = 0;
        let mut first_tick = [0.0; 3];
        let mut reads_after_first = collector.reads;
        let mut shown = None;
        // The first tick meets every flow; the others see 1 % of the flows changed since
        // the tick before (one data segment each), as on a busy edge where most media
        // flows of a huge table are between bursts.
        for run in 0..=(WARM_UP + runs) {
            if run > 0 {
                touch(
                    &mut e,
                    n,
                    run as u32 % CHANGED_EVERY,
                    CHANGED_EVERY,
                    run as u32,
                );
            }
            let t = Instant::now();
            let mut snap = collector.collect().expect("collect");
            read.push(t.elapsed().as_secs_f64() * 1e3);
            flows_seen = snap.flows.read().len();
            let t = Instant::now();
            engine.tick(&mut snap, &[]);
            judge.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            metrics.observe(&snap);
            feed.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let mut ui = UiState::default();
            ui.on_snapshot(&snap, &snap.flows.read());
            let mut term = Terminal::new(TestBackend::new(160, 48)).expect("terminal");
            term.draw(|f| view::draw(f, &RunInfo::default(), &mut ui, &snap))
                .expect("draw");
            render.push(t.elapsed().as_secs_f64() * 1e3);
            // A key press: the cursor moves, the table is drawn again (same snapshot).
            let t = Instant::now();
            ui.on_key(
                crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Down),
                &snap,
                &snap.flows.read(),
            );
            term.draw(|f| view::draw(f, &RunInfo::default(), &mut ui, &snap))
                .expect("draw");
            redraw.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let text = metrics.prometheus_text();
            scrape.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(text.contains("monitor_active_flows"));
            rss_after = rss_after.max(rss_bytes());
            // Kept until the next tick's is ready, as the terminal UI keeps what it shows.
            shown = Some(snap);
            if run == 0 {
                first_tick = [read[0], judge[0], feed[0]];
            }
            if run <= WARM_UP {
                reads_after_first = collector.reads;
                for v in [
                    &mut read,
                    &mut judge,
                    &mut feed,
                    &mut render,
                    &mut redraw,
                    &mut scrape,
                ] {
                    v.clear();
                }
            }
        }
        let measured = collector.reads;
        drop(shown);
        // Three minutes on: every flow's sparkline full (the flows idle since), a tick a
        // second of monitor time.
        let start = collector.collect().expect("collect").now_ns;
        for k in 1..=SPARK_POINTS as u64 {
            let mut snap = collector.collect().expect("collect");
            snap.now_ns = start + k * 1_000_000_000;
            engine.tick(&mut snap, &[]);
        }
        let rss_3min = rss_bytes();
        let footprint: Vec<Value> = collector
            .footprint()
            .into_iter()
            .chain(engine.footprint())
            .map(|(what, bytes)| json!([what, bytes]))
            .collect();
        let tick: Vec<f64> = (0..runs).map(|i| read[i] + judge[i] + feed[i]).collect();
        drop(engine);
        drop(metrics);
        // More first ticks, on the same full map, as a monitor restarted on a busy edge
        // meets it (after the memory figures, which a second table would change).
        let mut firsts = vec![first_tick];
        while firsts.len() < runs {
            firsts.push(first_tick_again(&mut collector));
        }
        drop(collector);
        let part = |k: usize| Figure::of(firsts.iter().map(|f| f[k]).collect()).median();
        out.push(json!({
            "flows": n,
            "flows_read": flows_seen,
            "fill_s": fill_s,
            "first_tick_ms": Figure::of(firsts.iter().map(|f| f.iter().sum()).collect()).json(),
            // Its parts' medians: reading the map whole, judging every flow, the metrics.
            "first_tick_parts_ms": [part(0), part(1), part(2)],
            "changed_share": 1.0 / CHANGED_EVERY as f64,
            "tick_ms": Figure::of(tick).json(),
            "read_map_ms": Figure::of(read).json(),
            "judge_ms": Figure::of(judge).json(),
            "metrics_observe_ms": Figure::of(feed).json(),
            "render_table_ms": Figure::of(render).json(),
            "key_redraw_ms": Figure::of(redraw).json(),
            "scrape_ms": Figure::of(scrape).json(),
            "rss_bytes": rss_after,
            "rss_growth_bytes": rss_after.saturating_sub(base_rss),
            "rss_after_3min_bytes": rss_3min,
            "kernel_map_bytes": map_bytes,
            // After the 3 minutes: bytes by what holds them, as allocated.
            "footprint_bytes": footprint,
            // Of the measured ticks, how many read the map whole (the rest read back only
            // the flows the kernel reported changed), and how many records they read back.
            "ticks_read_whole": measured.full - reads_after_first.full,
            "records_read_back": measured.records - reads_after_first.records,
        }));
        drop(e);
    }
    json!({ "sizes": out })
}

/// One first tick of a new monitor on the map as it is: reading it whole, judging every
/// flow, the metrics, in ms.
fn first_tick_again(collector: &mut Collector) -> [f64; 3] {
    collector.start_over();
    let mut engine = AlertEngine::new(AlertConfig::default());
    let mut metrics = Metrics::new(0);
    let t = Instant::now();
    let mut snap = collector.collect().expect("collect");
    let read = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    engine.tick(&mut snap, &[]);
    let judge = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    metrics.observe(&snap);
    [read, judge, t.elapsed().as_secs_f64() * 1e3]
}
