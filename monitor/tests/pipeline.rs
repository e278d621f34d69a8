//! The whole pipeline end to end without root: a fake source hands over ticks built by
//! hand (a healthy session and one whose data is retransmitted), and every output the
//! command line can ask for (alerts log, recording, metrics) takes them, as `live` would
//! wire them, beside one that keeps what it saw. The kernel is the only part left out.

use std::{
    future::Future,
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use monitor::{
    alerts::{AlertConfig, AlertEngine, Change, Transition},
    model::{Counters, FlowId, FlowRecord},
    output::{json, metrics::Metrics},
    pipeline::{outputs, End, Output, Pipeline, Source, Tick},
    record::{
        reader,
        writer::{Recorder, Rotation, RunMeta},
    },
    snapshot::Snapshot,
    table::SharedTable,
};
use monitor_common::{
    event::Event,
    flow::{seen, FlowKey, FlowState, C2S, S2C},
    stats,
};

const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;

/// An established flow from `client` to the server 10.0.0.100:50000.
fn flow(client: [u8; 4], cport: u16) -> FlowRecord {
    let mut key = FlowKey {
        port_a: cport,
        port_b: 50_000,
        family: 4,
        ..FlowKey::default()
    };
    key.addr_a[..4].copy_from_slice(&client);
    key.addr_b[..4].copy_from_slice(&[10, 0, 0, 100]);
    let mut st = FlowState {
        key,
        first_seen_ns: T0,
        last_seen_ns: T0,
        client_is_a: 1,
        seen: seen::SYN | seen::SYNACK | seen::ESTABLISHED,
        ..FlowState::default()
    };
    st.dir[C2S].syns = 1;
    st.dir[S2C].synacks = 1;
    FlowRecord::of(&st)
}

/// Second `k` of both sessions: each sends 100 data segments a second and has them
/// acknowledged; the lossy one resends 20 of them (20 %, ten times the warning level).
fn second(k: u64) -> Second {
    let now = T0 + k * S;
    let mut flows = vec![flow([10, 0, 0, 1], 40_000), flow([10, 0, 0, 2], 40_001)];
    for (i, f) in flows.iter_mut().enumerate() {
        let st = &mut f.state;
        st.last_seen_ns = now;
        st.acked_ns = [now, now];
        for d in [C2S, S2C] {
            st.dir[d].packets = 100 * k + 1;
            st.dir[d].bytes = 100_000 * k;
            st.dir[d].segments = 100 * k;
        }
        st.dir[C2S].data_segments = 100 * k;
        st.dir[C2S].payload_bytes = 100_000 * k;
        if i == 1 {
            st.anomalies.get_mut(C2S).retransmits = 20 * k as u32;
        }
    }
    let mut counters = Counters::default();
    counters.0[stats::WATCHED as usize] = flows.iter().map(|f| f.state.dir[0].packets * 2).sum();
    Second {
        flows,
        counters,
        now,
    }
}

/// What the fake kernel holds at a second.
struct Second {
    flows: Vec<FlowRecord>,
    counters: Counters,
    now: u64,
}

/// Ticks from a list, then either the end or (as `live` does) nothing until the run is
/// stopped, when `last` reads one more.
struct FakeSource {
    ticks: std::vec::IntoIter<Second>,
    ends: bool,
    /// The second `last` hands over, and whether it was asked for.
    last: Option<Second>,
    asked_last: bool,
    /// The flow table its ticks write, as the collector's.
    table: SharedTable,
}

impl FakeSource {
    fn new(seconds: std::ops::RangeInclusive<u64>, ends: bool) -> Self {
        Self {
            ticks: seconds.map(second).collect::<Vec<_>>().into_iter(),
            ends,
            last: None,
            asked_last: false,
            table: SharedTable::default(),
        }
    }

    /// A tick that read every flow of `s`.
    fn tick(&self, s: Second) -> Tick {
        self.table.write().read_whole(s.flows);
        let snap = Snapshot::of(self.table.clone(), s.counters, s.now);
        Tick::new(snap, Vec::new(), Instant::now())
    }
}

impl Source for FakeSource {
    async fn next(&mut self) -> anyhow::Result<Option<Tick>> {
        match self.ticks.next() {
            Some(s) => Ok(Some(self.tick(s))),
            None if self.ends => Ok(None),
            None => std::future::pending().await,
        }
    }

    fn last(&mut self) -> anyhow::Result<Option<Tick>> {
        self.asked_last = true;
        Ok(self.last.take().map(|s| self.tick(s)))
    }
}

/// What an output saw: every tick's JSON report and transitions, and whether it finished.
#[derive(Default)]
struct Seen {
    reports: Vec<serde_json::Value>,
    transitions: Vec<Transition>,
    finished_with: Option<u64>,
    /// The sparkline the last tick carried: whose, and how many points.
    spark: Option<(FlowId, usize)>,
}

/// Keeps what it sees in `.0`; asks to end after `.1` ticks; looks at flow `.2`.
struct Keep(Arc<Mutex<Seen>>, Option<usize>, Option<FlowId>);

impl Output for Keep {
    fn tick(
        &mut self,
        snap: &Arc<Snapshot>,
        t: &[Transition],
        _: &[Event],
    ) -> anyhow::Result<bool> {
        let mut s = self.0.lock().unwrap();
        s.reports
            .push(serde_json::from_str(&json::render(snap)).expect("the report is JSON"));
        s.transitions.extend(t.iter().cloned());
        s.spark = snap.spark.as_ref().map(|(id, points)| (*id, points.len()));
        // After this many ticks, ask the run to end (as a closed stdout does).
        Ok(self.1.is_none_or(|n| s.reports.len() < n))
    }

    fn finish(&mut self, last: Option<&Arc<Snapshot>>) -> anyhow::Result<()> {
        self.0.lock().unwrap().finished_with = last.map(|s| s.now_ns);
        Ok(())
    }

    fn selected(&self) -> Option<FlowId> {
        self.2
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("monitor-pipeline-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temp dir");
    d
}

fn recorder(path: &Path) -> Recorder {
    let meta = RunMeta {
        source: "live",
        interfaces: vec!["fake0".into()],
        capture: None,
        ports: "50000-59999".into(),
        config: serde_json::Value::Null,
        start_ns: T0,
    };
    let rotation = Rotation {
        max_bytes: None,
        keep: 1,
    };
    Recorder::create(path, meta, rotation).expect("a recording")
}

#[test]
fn ticks_from_a_fake_source_reach_every_output_and_the_lossy_session_alerts() {
    let d = dir("all");
    let (log_path, rec_path) = (d.join("alerts.jsonl"), d.join("run.jsonl"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let metrics = Arc::new(Mutex::new(Metrics::new(5)));
    let log = std::fs::File::create(&log_path).expect("the alerts log");
    let mut pipeline = Pipeline::new(AlertEngine::new(AlertConfig::default()))
        .with(outputs::AlertsLog::new(log))
        .with(outputs::RecordFile::new(recorder(&rec_path)))
        .with(outputs::MetricsFeed(metrics.clone()))
        .with(Keep(seen.clone(), None, None));
    let mut source = FakeSource::new(1..=6, true);
    let end = block_on(pipeline.run(&mut source, std::future::pending()));
    assert_eq!(end.expect("the run"), End::SourceDone);
    assert!(
        !source.asked_last,
        "a source that ended is not asked for a last tick"
    );
    assert_eq!(pipeline.lost(), None);

    let s = seen.lock().unwrap();
    assert_eq!(s.reports.len(), 6, "one report per tick");
    assert_eq!(
        s.finished_with,
        Some(T0 + 6 * S),
        "finished with the last tick"
    );
    let raised: Vec<&Transition> = s
        .transitions
        .iter()
        .filter(|t| t.change == Change::Raised)
        .collect();
    assert_eq!(
        raised.len(),
        1,
        "one alert, of the lossy session: {raised:#?}"
    );
    let a = &raised[0].alert;
    assert_eq!(a.kind.name(), "retransmit_rate");
    assert_eq!(a.client, "10.0.0.2:40001", "the lossy session's flow");
    let last = s.reports.last().expect("a last report");
    assert_eq!(last["alerts"].as_array().map(Vec::len), Some(1), "{last}");
    assert_eq!(last["flows"].as_array().map(Vec::len), Some(2), "{last}");

    // The alerts log holds the same transition, and the recording every tick and it.
    let log = std::fs::read_to_string(&log_path).expect("the alerts log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(lines[0]["kind"], "retransmit_rate");
    assert_eq!(lines[0]["id"], a.id);
    let rec = reader::read(&rec_path).expect("the recording was renamed into place and reads");
    assert_eq!(rec.ticks.len(), 6);
    assert_eq!(rec.flows.len(), 2, "both flows recorded");
    assert_eq!(rec.alerts.len(), 1);
    assert_eq!(rec.alerts[0]["kind"], "retransmit_rate");

    let text = metrics.lock().unwrap().prometheus_text();
    assert!(
        text.lines().any(|l| l.starts_with("monitor_active_alerts{")
            && l.contains("retransmit_rate")
            && l.ends_with(" 1")),
        "metrics show the active alert:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_stopped_run_reads_one_last_tick_and_an_output_can_end_the_run() {
    // Stopped from outside (a signal, --duration): the source's last tick still goes
    // through, and every output finishes with it.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut pipeline = Pipeline::new(AlertEngine::new(AlertConfig::default())).with(Keep(
        seen.clone(),
        None,
        None,
    ));
    let mut source = FakeSource::new(1..=3, false);
    source.last = Some(second(9));
    let stop = async {
        while seen.lock().unwrap().reports.len() < 3 {
            tokio::task::yield_now().await;
        }
    };
    let end = block_on(pipeline.run(&mut source, stop)).expect("the run");
    assert_eq!(end, End::Stopped);
    assert!(source.asked_last);
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.reports.len(), 4, "three ticks and the last one");
        assert_eq!(s.finished_with, Some(T0 + 9 * S));
    }

    // An output that asks to end (stdout's reader gone) ends the run at that tick.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut pipeline = Pipeline::new(AlertEngine::new(AlertConfig::default())).with(Keep(
        seen.clone(),
        Some(2),
        None,
    ));
    let mut source = FakeSource::new(1..=6, true);
    let end = block_on(pipeline.run(&mut source, std::future::pending())).expect("the run");
    assert_eq!(end, End::OutputDone);
    assert_eq!(seen.lock().unwrap().reports.len(), 2);
    assert!(!source.asked_last);
}

#[test]
fn an_output_that_fails_is_lost_and_said_and_the_run_goes_on() {
    // /dev/full refuses every write, as a full disk does: the alerts log fails at the
    // first transition, and the other outputs still take every tick.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut pipeline = Pipeline::new(AlertEngine::new(AlertConfig::default()))
        .with(outputs::AlertsLog::new(full))
        .with(Keep(seen.clone(), None, None));
    let mut source = FakeSource::new(1..=6, true);
    block_on(pipeline.run(&mut source, std::future::pending())).expect("the run goes on");
    let s = seen.lock().unwrap();
    assert_eq!(s.reports.len(), 6, "every tick still reached the rest");
    assert!(!s.transitions.is_empty(), "a transition was there to write");
    let why = pipeline.lost().expect("the lost alerts log is said");
    assert!(why.starts_with("alerts log stopped:"), "{why}");
}

#[test]
fn the_flow_an_output_looks_at_gets_its_whole_sparkline() {
    // The healthy flow raises nothing, so only being looked at keeps its points: past the
    // rate window (10 s), a line of every tick, not only of the window.
    let healthy = FlowId::of(&second(1).flows[0]);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut pipeline = Pipeline::new(AlertEngine::new(AlertConfig::default())).with(Keep(
        seen.clone(),
        None,
        Some(healthy),
    ));
    let mut source = FakeSource::new(1..=30, true);
    block_on(pipeline.run(&mut source, std::future::pending())).expect("the run");
    let (id, points) = seen
        .lock()
        .unwrap()
        .spark
        .expect("a sparkline in the last tick");
    assert_eq!(id, healthy);
    assert!(points >= 25, "{points} points after 30 ticks looked at");
}
