use super::*;
use crate::model::FlowStats;
use crate::{
    model::{Counters, FlowRecord},
    table::SharedTable,
};
use monitor_common::flow::FlowKey;

thread_local! {
    /// The flow table this test's ticks write (each test runs on a thread of its own).
    static TABLE: SharedTable = SharedTable::default();
}

/// `n` flows; those below `busy` have `t` packets (they change every tick), the others
/// one (idle after the first tick); written into the test's table as a tick would.
fn snap(t: u64, n: u16, busy: u16) -> Snapshot {
    let flows: Vec<FlowRecord> = (0..n)
        .map(|p| {
            let mut st = FlowStats {
                first_seen_ns: 1,
                last_seen_ns: if p < busy { t } else { 1 },
                client_is_a: 1,
                ..FlowStats::default()
            };
            st.dir[0].packets = if p < busy { t } else { 1 };
            let key = FlowKey {
                port_a: p,
                port_b: 443,
                ..FlowKey::default()
            };
            FlowRecord { key, state: st }
        })
        .collect();
    let table = TABLE.with(SharedTable::clone);
    table.write().read_whole(flows);
    Snapshot::of(table, Counters::default(), t * 1_000_000_000)
}

fn meta() -> RunMeta<'static> {
    RunMeta {
        source: "live",
        interfaces: vec!["eth0".into()],
        capture: None,
        ports: "443".into(),
        config: Value::Null,
        start_ns: 0,
    }
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("monitor-rec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

fn rotating(mb: u64, keep: u32) -> Rotation {
    Rotation {
        max_bytes: Some(mb * 1024 * 1024),
        keep,
    }
}

/// Recordings are a contract: their event names are the kinds' one names.
#[test]
fn event_lines_carry_each_kinds_name() {
    let d = dir("events");
    let path = d.join("rec.jsonl");
    let no_rotation = Rotation {
        max_bytes: None,
        keep: 0,
    };
    let mut r = Recorder::create(&path, meta(), no_rotation).expect("create");
    r.commit().expect("commit");
    let s = snap(1, 1, 1);
    let mut events: Vec<Event> = EventKind::ALL
        .iter()
        .map(|k| Event {
            ts_ns: s.now_ns,
            key: s.records()[0].key,
            kind: *k as u8,
            dir: 0,
            tcp_flags: 0,
            ttl: 64,
            _pad: [0; 4],
        })
        .collect();
    // A byte no kind has.
    events.push(Event {
        kind: 0,
        ..events[0]
    });
    r.tick(&s, &events, &[]).expect("tick");
    drop(r);
    let rec = super::super::reader::read(&path).expect("read");
    let got: Vec<&str> = rec
        .events
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    let mut want: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
    want.push("unknown");
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_burst_is_cut_at_the_limit_and_idle_ticks_do_not_rotate() {
    let d = dir("burst");
    let path = d.join("rec.jsonl");
    let mut r = Recorder::create(&path, meta(), rotating(1, 10)).expect("create");
    r.commit().expect("commit");
    // One tick with 5,000 new flows, then a minute in which nothing changes.
    r.tick(&snap(1, 5000, 0), &[], &[]).expect("burst");
    let after_burst = names(&d);
    for t in 2..=60 {
        r.tick(&snap(t, 5000, 0), &[], &[]).expect("idle tick");
    }
    drop(r);
    assert!(
        after_burst.len() > 2,
        "the burst spans files: {after_burst:?}"
    );
    assert_eq!(names(&d), after_burst, "idle ticks made new files");
    let mut ids = std::collections::BTreeSet::new();
    let mut longest = 0;
    for name in &after_burst {
        let p = d.join(name);
        let text = std::fs::read_to_string(&p).expect("read");
        longest = longest.max(text.lines().map(|l| l.len() + 1).max().unwrap_or(0));
        assert!(
            text.len() as u64 <= 1024 * 1024,
            "{name}: {} bytes under a 1 MB limit",
            text.len()
        );
        let rec = super::super::reader::read(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rec.header["source"], "live");
        assert!(!rec.ticks.is_empty(), "{name} has its tick");
        ids.extend(rec.flows.keys().cloned());
    }
    assert!(longest < 4096, "lines are short: {longest}");
    // Every flow of the burst is in one of the files: none was lost to rotation.
    assert_eq!(ids.len(), 5000);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn rotation_keeps_the_last_n_files_and_each_reads_alone() {
    let d = dir("keep");
    let path = d.join("rec.jsonl");
    let mut r = Recorder::create(&path, meta(), rotating(1, 3)).expect("create");
    r.commit().expect("commit");
    for t in 1..=6 {
        r.tick(&snap(t, 2000, 2000), &[], &[]).expect("tick");
    }
    drop(r);
    assert_eq!(names(&d), ["rec.jsonl", "rec.jsonl.1", "rec.jsonl.2"]);
    // Newest first: FILE has the highest part number.
    let part = |n: &str| {
        let rec = super::super::reader::read(&d.join(n)).expect("read");
        rec.header["part"].as_u64().unwrap_or(0)
    };
    let (p0, p1, p2) = (part("rec.jsonl"), part("rec.jsonl.1"), part("rec.jsonl.2"));
    assert!(p0 > 3 && p1 == p0 - 1 && p2 == p0 - 2, "{p0} {p1} {p2}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_existing_file_is_untouched_until_the_commit() {
    let d = dir("commit");
    let path = d.join("rec.jsonl");
    std::fs::write(&path, "precious\n").expect("write");
    // A run that fails (dropped without commit), rotating or not, leaves no trace.
    for rotation in [
        rotating(1, 10),
        Rotation {
            max_bytes: None,
            keep: 10,
        },
    ] {
        let mut r = Recorder::create(&path, meta(), rotation).expect("create");
        r.tick(&snap(1, 3000, 3000), &[], &[]).expect("tick");
        drop(r);
        assert_eq!(names(&d), ["rec.jsonl"]);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious\n");
    }
    // Without rotation a finished run replaces the file.
    let mut r = Recorder::create(
        &path,
        meta(),
        Rotation {
            max_bytes: None,
            keep: 10,
        },
    )
    .expect("create");
    r.tick(&snap(1, 10, 10), &[], &[]).expect("tick");
    r.commit().expect("commit");
    drop(r);
    assert_eq!(names(&d), ["rec.jsonl"]);
    assert!(super::super::reader::read(&path).is_ok());
    // With rotation, the files a run made before its commit come first, newest at
    // FILE, and what was at FILE moves after them.
    std::fs::write(&path, "precious\n").expect("write");
    let mut r = Recorder::create(&path, meta(), rotating(1, 10)).expect("create");
    r.tick(&snap(1, 3000, 3000), &[], &[]).expect("tick");
    r.commit().expect("commit");
    drop(r);
    let all = names(&d);
    // FILE, FILE.1 .. FILE.k from this run, then the old file at FILE.(k+1).
    let k = all.len() - 2;
    assert!(k >= 2, "{all:?}");
    let old = d.join(format!("rec.jsonl.{}", k + 1));
    assert_eq!(std::fs::read_to_string(&old).expect("read"), "precious\n");
    for n in 0..=k {
        let name = if n == 0 {
            "rec.jsonl".to_string()
        } else {
            format!("rec.jsonl.{n}")
        };
        let rec = super::super::reader::read(&d.join(&name)).expect("read");
        assert_eq!(
            rec.header["part"].as_u64().unwrap_or(0),
            (k - n) as u64,
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}
