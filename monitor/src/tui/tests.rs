//! The UI with fixed data: the main views rendered on ratatui's `TestBackend` and compared
//! with reviewed snapshots (`snapshots/`), and the key handling driven without a terminal.

use crate::model::FlowStats;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use monitor_common::flow::{seen, FlowKey, C2S, S2C, SYN_OPT_SACK, SYN_OPT_SEEN};
use ratatui::{backend::TestBackend, style::Color, Terminal};

use super::{
    rows::{self, Column},
    state::{Action, UiState, View},
    view,
};
use crate::{
    alerts::{AlertConfig, AlertEngine},
    media::{pseudo_tls, stream::PayloadSample, tls, verdict},
    model::{Counters, FlowId, FlowRecord, RunInfo},
    snapshot::Snapshot,
    table::SharedTable,
};

const S: u64 = 1_000_000_000;
/// 2026-11-25 12:00:00 UTC.
const T0: u64 = 1_795_608_000 * S;

fn flow(client: u8, cport: u16, sport: u16) -> FlowRecord {
    let mut key = FlowKey {
        port_a: cport,
        port_b: sport,
        family: 4,
        ..FlowKey::default()
    };
    key.addr_a[..4].copy_from_slice(&[10, 88, 1, client]);
    key.addr_b[..4].copy_from_slice(&[10, 88, 2, 2]);
    let mut st = FlowStats {
        first_seen_ns: T0,
        last_seen_ns: T0,
        client_is_a: 1,
        seen: seen::SYN
            | seen::SYNACK
            | seen::ESTABLISHED
            | seen::CLIENT_HELLO
            | seen::SERVER_HELLO,
        ..FlowStats::default()
    };
    st.rtt_ns = 420_000;
    st.dir[C2S].syns = 1;
    st.dir[S2C].synacks = 1;
    st.dir[C2S].syn_opts.bits = SYN_OPT_SEEN | SYN_OPT_SACK;
    st.dir[C2S].syn_opts.mss = 1460;
    st.dir[C2S].syn_opts.wscale_p1 = 8;
    st.dir[S2C].syn_opts.bits = SYN_OPT_SEEN;
    st.dir[S2C].syn_opts.mss = 1460;
    st.dir[S2C].syn_opts.wscale_p1 = 8;
    FlowRecord { key, state: st }
}

fn advance(f: &mut FlowRecord, now: u64, retx_s2c: u32) {
    let st = &mut f.state;
    for (d, segs) in [(C2S, 50u64), (S2C, 50)] {
        st.dir[d].packets += segs + 2;
        st.dir[d].segments += segs + 2;
        st.dir[d].data_segments += segs;
        st.dir[d].bytes += segs * 1040;
        st.dir[d].payload_bytes += segs * 1000;
        st.acked_ns[d] = now;
    }
    st.anomalies.get_mut(S2C).retransmits += retx_s2c;
    st.last_seen_ns = now;
}

/// Twelve seconds of three flows through the real alert engine: healthy, lossy (8 % of
/// the server's segments), and a refused handshake.
fn fixture() -> (Snapshot, AlertEngine) {
    let mut engine = AlertEngine::new(AlertConfig::default());
    let mut flows = vec![
        flow(11, 40001, 50001),
        flow(12, 40002, 50002),
        flow(13, 40003, 50003),
    ];
    flows[2].state.seen = seen::SYN | seen::REFUSED;
    flows[2].state.dir[C2S].syns = 2;
    flows[2].state.dir[S2C].rsts = 1;
    flows[2].state.dir[S2C].synacks = 0;
    let mut snap = Snapshot::default();
    let table = SharedTable::default();
    for i in 1..=12 {
        let now = T0 + i * S;
        advance(&mut flows[0], now, 0);
        advance(&mut flows[1], now, 4);
        flows[2].state.last_seen_ns = now;
        let mut counters = Counters::default();
        counters.0[monitor_common::stats::PACKETS as usize] = i * 300;
        table.write().read_whole(flows.clone());
        snap = Snapshot::of(table.clone(), counters, now);
        engine.tick(&mut snap, &[]);
        snap.collect_ns = 1_200_000;
    }
    // Media verdicts from the first bytes: the healthy flow's genuine pseudo-TLS exchange,
    // the lossy flow's hello answered by a real TLS ServerHello in the server's name.
    let hello = pseudo_tls::client_hello(&[7; 32]);
    let genuine = pseudo_tls::server_hello(&[8; 32], &[9; 32]);
    let forged = tls::record_of(
        22,
        0x0303,
        &tls::server_hello_message(0x0303, &[8; 32], &[9; 32], 0x002f),
    );
    for (f, reply) in [(&flows[0], genuine), (&flows[1], forged)] {
        let sample = |seq, bytes: Vec<u8>| PayloadSample {
            seq,
            payload_len: bytes.len() as u32,
            time_ns: T0 + S,
            bytes,
        };
        let media = verdict::judge(&verdict::Exchange {
            client: &[sample(1, hello.clone())],
            server: &[sample(1, reply)],
            reset: None,
            now_ns: T0 + 2 * S,
            reply_timeout_ns: 3 * S,
            stun_timeout_ns: 5 * S,
        });
        let id = FlowId::of(f);
        let mut t = table.write();
        let at = t.find(&id).expect("the flow's row");
        t.set_media(at, &id, media, true);
    }
    (snap, engine)
}

fn info() -> RunInfo {
    RunInfo {
        interfaces: vec!["edge0".into()],
        targets: vec![("edge0".into(), 2)],
        attach: "edge0: tc ingress+egress (tcx)".into(),
        ports: "443,50000-59999".into(),
    }
}

fn render(ui: &mut UiState, snap: &Snapshot, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| view::draw(f, &info(), ui, snap)).expect("draw");
    t
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn ready() -> (Snapshot, UiState) {
    let (snap, _) = fixture();
    let mut ui = UiState::default();
    ui.on_snapshot(&snap, &snap.flows.read());
    (snap, ui)
}

#[test]
fn table_in_80x24_worst_first() {
    let (snap, mut ui) = ready();
    let t = render(&mut ui, &snap, 80, 24);
    insta::assert_snapshot!("table_80x24", t.backend());
    // Severity is colour and text: the critical marker is red.
    let buf = t.backend().buffer();
    let crit = (0..buf.area.height)
        .flat_map(|y| (0..buf.area.width).map(move |x| (x, y)))
        .find(|&(x, y)| buf[(x, y)].symbol() == "C" && buf[(x + 1, y)].symbol() == "R" && x < 3)
        .expect("a CRIT!! cell");
    assert_eq!(buf[crit].fg, Color::Red);
}

#[test]
fn table_in_150x30_with_every_column() {
    let (snap, mut ui) = ready();
    assert_eq!(Column::fitting(148).len(), Column::ALL.len());
    insta::assert_snapshot!("table_150x30", render(&mut ui, &snap, 150, 30).backend());
}

#[test]
fn detail_of_the_lossy_flow() {
    let (mut snap, engine) = ready_with_engine();
    let shared = snap.flows.clone();
    let table = shared.read();
    let mut ui = UiState::default();
    ui.on_snapshot(&snap, &table);
    let lossy = FlowId::of(&snap.records()[1]);
    ui.selected = Some(lossy);
    snap.spark = Some((lossy, engine.spark(&lossy, &table)));
    ui.on_snapshot(&snap, &table);
    assert_eq!(ui.on_key(code(KeyCode::Enter), &snap, &table), Action::None);
    assert_eq!(ui.view, View::Detail);
    insta::assert_snapshot!("detail_100x32", render(&mut ui, &snap, 100, 32).backend());
}

fn ready_with_engine() -> (Snapshot, AlertEngine) {
    fixture()
}

#[test]
fn help_overlay() {
    let (snap, mut ui) = ready();
    let shared = snap.flows.clone();
    let table = shared.read();
    ui.on_key(key('?'), &snap, &table);
    insta::assert_snapshot!("help_80x24", render(&mut ui, &snap, 80, 24).backend());
    ui.on_key(key('x'), &snap, &table);
    assert!(!ui.help, "any key closes the help");
}

/// The order a redraw reuses is the one the settings ask for: whichever column, either
/// direction, the rows are those of a fresh sort.
#[test]
fn a_kept_row_order_follows_the_settings() {
    let (snap, mut ui) = ready();
    let shared = snap.flows.clone();
    let table = shared.read();
    let ids = |rows: Vec<rows::Row>| rows.iter().map(|r| r.id()).collect::<Vec<_>>();
    for descending in [true, false] {
        for c in Column::ALL {
            (ui.sort, ui.descending) = (c, descending);
            let fresh = rows::visible(&snap, &table, &rows::Filter::default(), None, c, descending);
            assert_eq!(
                ids(ui.rows(&snap, &table)),
                ids(fresh),
                "{c:?}, descending {descending}"
            );
            assert_eq!(ui.rows(&snap, &table).len(), 3, "kept, the same rows");
        }
    }
}

#[test]
fn keys_sort_filter_select_follow_and_quit() {
    let (snap, mut ui) = ready();
    let shared = snap.flows.clone();
    let table = shared.read();
    let order = |ui: &mut UiState| -> Vec<u16> {
        ui.rows(&snap, &table)
            .iter()
            .map(|r| r.flow.server().port())
            .collect()
    };
    // Worst first: refused (critical), lossy (warning... escalated to critical), healthy.
    assert_eq!(ui.sort, Column::Health);
    assert_eq!(
        *order(&mut ui).last().expect("rows"),
        50001,
        "the healthy flow last"
    );
    // Next column: client, ascending.
    ui.on_key(key('s'), &snap, &table);
    assert_eq!(ui.sort, Column::Client);
    assert_eq!(order(&mut ui), vec![50001, 50002, 50003]);
    ui.on_key(key('r'), &snap, &table);
    assert_eq!(order(&mut ui), vec![50003, 50002, 50001]);
    // Filter by port, then by text; Esc clears.
    ui.on_key(key('/'), &snap, &table);
    for c in "port:50002".chars() {
        ui.on_key(key(c), &snap, &table);
    }
    ui.on_key(code(KeyCode::Enter), &snap, &table);
    assert_eq!(order(&mut ui), vec![50002]);
    ui.on_key(code(KeyCode::Esc), &snap, &table);
    assert_eq!(order(&mut ui).len(), 3);
    ui.on_key(key('/'), &snap, &table);
    for c in "10.88.1.13".chars() {
        ui.on_key(key(c), &snap, &table);
    }
    ui.on_key(code(KeyCode::Enter), &snap, &table);
    assert_eq!(order(&mut ui), vec![50003]);
    ui.on_key(code(KeyCode::Esc), &snap, &table);
    // Severity floor: warning and worse hides the healthy flow.
    ui.on_key(key('w'), &snap, &table);
    assert!(!order(&mut ui).contains(&50001));
    ui.on_key(key('w'), &snap, &table);
    ui.on_key(key('w'), &snap, &table);
    assert_eq!(order(&mut ui).len(), 3);
    // Move and open; Esc goes back.
    ui.on_key(code(KeyCode::Home), &snap, &table);
    ui.on_key(code(KeyCode::Down), &snap, &table);
    let second = ui.rows(&snap, &table)[1].id();
    assert_eq!(ui.selected, Some(second));
    ui.on_key(code(KeyCode::Enter), &snap, &table);
    assert_eq!(ui.view, View::Detail);
    ui.on_key(code(KeyCode::Esc), &snap, &table);
    assert_eq!(ui.view, View::Table);
    // Follow the worst: the selection jumps to it, and moving stops following.
    ui.on_key(key('f'), &snap, &table);
    assert!(ui.follow);
    assert_eq!(ui.selected, super::rows::worst(&snap, &table));
    ui.on_key(code(KeyCode::Down), &snap, &table);
    assert!(!ui.follow);
    // q and Ctrl-C quit; q typed into the filter does not.
    ui.on_key(key('/'), &snap, &table);
    assert_eq!(ui.on_key(key('q'), &snap, &table), Action::None);
    ui.on_key(code(KeyCode::Esc), &snap, &table);
    assert_eq!(ui.on_key(key('q'), &snap, &table), Action::Quit);
    assert_eq!(
        ui.on_key(
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            &snap,
            &table
        ),
        Action::Quit
    );
}

#[test]
fn an_empty_table_says_why() {
    let mut ui = UiState::default();
    let snap = Snapshot::default();
    let t = render(&mut ui, &snap, 80, 24);
    assert!(format!("{}", t.backend()).contains("no TCP flows on the watched ports yet"));
}

/// A watched interface that is gone, and records lost with a full ring, are in the header
/// (and neither is, while there is none: the reviewed snapshots above).
#[test]
fn the_header_says_an_interface_is_gone_and_flows_were_lost() {
    let (mut snap, mut ui) = ready();
    snap.interfaces = vec![crate::model::IfaceTraffic {
        name: "edge0".into(),
        gone: true,
        ..Default::default()
    }];
    snap.lost_flows = 7;
    let t = render(&mut ui, &snap, 80, 24);
    let text = format!("{}", t.backend());
    let mut lines = text.lines();
    let (l1, l2) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    assert!(l1.contains("monitor GONE: edge0  if edge0"), "{l1}");
    assert!(
        l2.contains("evicted 0  lost flows 7  lost events 0"),
        "{l2}"
    );
    let buf = t.backend().buffer();
    let g = (0..buf.area.width)
        .find(|&x| buf[(x, 0)].symbol() == "G")
        .expect("a GONE cell");
    assert_eq!(buf[(g, 0)].fg, Color::Red);
}
