//! The terminal UI in a real terminal (tmux): start the demo, sort, filter, open a flow,
//! quit; the screen shows the expected rows and the terminal is restored afterwards.

mod common;

use std::{
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A private tmux server running `monitor ARGS` in a `w`x`h` terminal; when the monitor
    /// exits, the pane shows `EXIT=<code>` and, on the next line, the terminal's line modes.
    fn start(tag: &str, args: &str, w: u16, h: u16) -> Self {
        let t = Tmux {
            socket: format!("monitor-test-{tag}-{}", std::process::id()),
        };
        let script = format!(
            "TERM=xterm-256color {} {args}; echo EXIT=$?; stty -a | tr ';' '\\n' | grep -Eo -- '-?(icanon|echo)\\b' | tr '\\n' ' '; echo; sleep 600",
            common::MONITOR
        );
        let (w, h) = (w.to_string(), h.to_string());
        t.cmd(&["new-session", "-d", "-s", "ui", "-x", &w, "-y", &h, &script]);
        t
    }

    fn alternate_screen(&self) -> bool {
        self.cmd(&["display-message", "-p", "-t", "ui", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Waits for the monitor to exit and for the shell to print the terminal's line modes
    /// after it; asserts it exited 0 and left the terminal as it found it (line discipline
    /// back, alternate screen left). Returns the screen.
    fn assert_exited_restored(&self) -> String {
        let s = self.wait("the exit and the line modes after it", 20, |s| {
            modes_after_exit(s).is_some()
        });
        assert!(s.contains("EXIT=0"), "{s}");
        let modes = modes_after_exit(&s).unwrap_or_default();
        assert!(
            modes.contains("icanon") && !modes.contains("-icanon"),
            "stty after exit: {modes:?}\n{s}"
        );
        assert!(!modes.contains("-echo "), "stty after exit: {modes:?}");
        assert!(!self.alternate_screen(), "the alternate screen was left");
        s
    }

    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (apt-get install tmux; cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "ui"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "ui"];
        args.extend_from_slice(keys);
        self.cmd(&args);
    }

    /// Waits until the screen satisfies `ok`, or fails with what it showed.
    fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "waiting for {what}; the screen shows:\n{s}"
            );
            sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The line `stty` printed after `EXIT=` (it names `icanon` either way), once it is there.
fn modes_after_exit(screen: &str) -> Option<&str> {
    screen
        .lines()
        .skip_while(|l| !l.contains("EXIT="))
        .nth(1)
        .filter(|l| l.contains("icanon"))
}

/// The flow table's rows: a health marker, then the client.
fn flow_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| {
            let mut w = l.trim_start_matches('│').split_whitespace();
            matches!(w.next(), Some("ok" | "WARN!" | "CRIT!!"))
                && w.next().is_some_and(|c| c.starts_with("10.88.1."))
        })
        .collect()
}

#[test]
fn start_sort_filter_open_a_flow_and_quit() {
    if !common::privileged() {
        return;
    }
    let t = Tmux::start("ui", "demo", 110, 32);

    // Rows appear, then the faults turn some of them into alerts.
    t.wait("the demo's flows", 30, |s| {
        s.contains("10.88.1.11:") && s.contains("Flows")
    });
    let s = t.wait("an alert", 30, |s| {
        s.contains("CRIT!!") && s.contains("media_intercepted")
    });
    assert!(s.contains("monitor if edge0"), "header: {s}");

    // Sort by the next column (client, ascending): the marker moves to CLIENT.
    t.keys(&["s"]);
    let s = t.wait("the client sort", 5, |s| s.contains("CLIENT^"));
    let clients: Vec<String> = flow_rows(&s)
        .iter()
        .filter_map(|l| {
            l.trim_start_matches('│')
                .split_whitespace()
                .nth(1)
                .map(String::from)
        })
        .collect();
    let mut sorted = clients.clone();
    sorted.sort_by_key(|c| c.parse::<std::net::SocketAddr>().ok());
    assert_eq!(clients, sorted, "rows sorted by client:\n{s}");

    // Filter on the reset session's port: only its flows remain. Each key's effect is waited
    // for on the screen before the next key, so no key is read before the UI is ready.
    t.keys(&["/"]);
    t.wait("the filter prompt", 5, |s| s.contains("Enter applies"));
    t.keys(&["50004", "Enter"]);
    let s = t.wait("the filter", 5, |s| {
        s.contains("filter: 50004") && !s.contains("Enter applies")
    });
    let rows = flow_rows(&s);
    assert!(!rows.is_empty(), "filtered rows:\n{s}");
    assert!(
        rows.iter().all(|l| l.contains(":50004")),
        "only port 50004:\n{s}"
    );

    // Open the flow: its detail, history and alerts.
    t.keys(&["Enter"]);
    let s = t.wait("the flow detail", 5, |s| {
        s.contains("history") && s.contains("This flow's alerts")
    });
    assert!(
        s.contains(":50004") && s.contains("media_intercepted"),
        "{s}"
    );
    assert!(s.contains("resets"), "{s}");
    // The media verdict, and what came back: the middlebox's reset, nothing else.
    assert!(s.contains("media pTLS REJECTED"), "{s}");

    // Back, clear the filter, help, quit.
    t.keys(&["Escape"]);
    t.wait("the table", 5, |s| {
        !s.contains("This flow's alerts") && s.contains("filter: 50004")
    });
    t.keys(&["Escape"]);
    t.wait("the whole table again", 5, |s| {
        s.contains("10.88.1.11:") && !s.contains("filter: 50004")
    });
    t.keys(&["?"]);
    t.wait("the help", 5, |s| s.contains("Keys (any key closes)"));
    t.keys(&["x"]);
    t.wait("the help closed", 5, |s| {
        !s.contains("Keys (any key closes)")
    });
    t.keys(&["q"]);
    let s = t.assert_exited_restored();
    assert!(s.contains("lab removed") || !s.contains("mdemo-"), "{s}");
    let left = common::demo_namespaces(None).len();
    assert_eq!(left, 0, "the demo's namespaces are gone");
}

#[test]
fn sigterm_restores_the_terminal() {
    if !common::privileged() {
        return;
    }
    let t = Tmux::start("term", "live -i lo", 80, 24);
    t.wait("the UI", 30, |s| {
        s.contains("monitor if lo") && s.contains("Flows")
    });
    assert!(t.alternate_screen(), "the UI is on the alternate screen");
    let shell = t.cmd(&["display-message", "-p", "-t", "ui", "#{pane_pid}"]);
    let out = Command::new("pkill")
        .args(["-TERM", "-P", shell.trim(), "monitor"])
        .output()
        .expect("pkill (procps)");
    assert!(out.status.success(), "the monitor was found and signalled");
    t.assert_exited_restored();
}
