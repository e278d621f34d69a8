//! The demo's private network: three namespaces in a row, clients, a middlebox with
//! nftables, and the edge whose interface the monitor watches.
//!
//! ```text
//!  clients (10.88.1.11-18) ── dc0 ═ dm0 ── middlebox (forwards, nftables) ── dm1 ═ edge0 ── edge (10.88.2.2, .17)
//! ```
//! Everything is created inside namespaces named after this process, so two demos never
//! collide, and deleting the namespaces removes every link, address and rule. The lab is
//! removed on drop (normal exit, error, panic); one left by `kill -9` is removed by the
//! next demo, which knows it by its dead owner's pid.

use std::{fs::File, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::error::usage;

pub const CLIENT_NET: &str = "10.88.1";
pub const EDGE_IP: &str = "10.88.2.2";
/// The edge's network (`EDGE_IP` and the addresses its outbound sessions come from).
pub const EDGE_NET: &str = "10.88.2";
/// The interface the monitor watches, inside the edge namespace.
pub const EDGE_IF: &str = "edge0";
const PREFIX: &str = "mdemo-";

pub struct Lab {
    pub clients: String,
    pub middlebox: String,
    pub edge: String,
    made: Vec<String>,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn have(tool: &str, version_flag: &str) -> bool {
    Command::new(tool)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Namespaces of demos whose process is gone (`kill -9`).
fn stale() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

impl Lab {
    /// Checks the machine can host the lab, then builds it.
    pub fn build(clients: usize) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(usage(
                "the demo builds network namespaces and attaches eBPF programs: it needs root",
                "run it as root (sudo monitor demo), or watch a real interface with `monitor live`",
            ));
        }
        crate::kernel::preflight::check_privileges()?;
        for (tool, flag, pkg) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
            if !have(tool, flag) {
                return Err(usage(
                    format!("the demo needs `{tool}`, which is not installed"),
                    format!("install it: apt-get install {pkg}"),
                ));
            }
        }
        for old in stale() {
            let _ = run(&["ip", "netns", "del", &old]);
            crate::output::status(&format!(
                "monitor: removed {old}, left by a demo that was killed"
            ));
        }
        let id = format!("{PREFIX}{}", std::process::id());
        let mut lab = Lab {
            clients: format!("{id}-clients"),
            middlebox: format!("{id}-middlebox"),
            edge: format!("{id}-edge"),
            made: Vec::new(),
        };
        for ns in [lab.clients.clone(), lab.middlebox.clone(), lab.edge.clone()] {
            run(&["ip", "netns", "add", &ns]).map_err(|e| {
                usage(
                    format!("cannot create a network namespace: {e:#}"),
                    "the demo needs network namespaces (root, and not inside a restricted container)",
                )
            })?;
            lab.made.push(ns);
        }
        lab.wire(clients)?;
        Ok(lab)
    }

    fn wire(&self, clients: usize) -> Result<()> {
        let (c, m, e) = (&self.clients, &self.middlebox, &self.edge);
        run(&[
            "ip", "-n", c, "link", "add", "dc0", "type", "veth", "peer", "name", "dm0", "netns", m,
        ])?;
        run(&[
            "ip", "-n", m, "link", "add", "dm1", "type", "veth", "peer", "name", EDGE_IF, "netns",
            e,
        ])?;
        for i in 0..clients {
            let a = format!("{CLIENT_NET}.{}/24", 11 + i);
            run(&["ip", "-n", c, "addr", "add", &a, "dev", "dc0"])?;
        }
        run(&[
            "ip",
            "-n",
            m,
            "addr",
            "add",
            &format!("{CLIENT_NET}.1/24"),
            "dev",
            "dm0",
        ])?;
        run(&["ip", "-n", m, "addr", "add", "10.88.2.1/24", "dev", "dm1"])?;
        run(&[
            "ip",
            "-n",
            e,
            "addr",
            "add",
            &format!("{EDGE_IP}/24"),
            "dev",
            EDGE_IF,
        ])?;
        for (ns, ifs) in [
            (c, vec!["lo", "dc0"]),
            (m, vec!["lo", "dm0", "dm1"]),
            (e, vec!["lo", EDGE_IF]),
        ] {
            for i in ifs {
                run(&["ip", "-n", ns, "link", "set", i, "up"])?;
            }
        }
        run(&[
            "ip",
            "-n",
            c,
            "route",
            "add",
            "default",
            "via",
            &format!("{CLIENT_NET}.1"),
        ])?;
        run(&["ip", "-n", e, "route", "add", "default", "via", "10.88.2.1"])?;
        run(&[
            "ip",
            "netns",
            "exec",
            m,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        self.nft("add table inet demo")?;
        self.nft(
            "add chain inet demo forward { type filter hook forward priority 0; policy accept; }",
        )?;
        Ok(())
    }

    /// One nftables command in the middlebox.
    pub fn nft(&self, cmd: &str) -> Result<()> {
        let mut args = vec!["ip", "netns", "exec", &self.middlebox, "nft"];
        args.extend(cmd.split_whitespace());
        run(&args)
    }

    /// One more address on the edge's interface, for a session the edge starts.
    pub fn add_edge_address(&self, ip: std::net::Ipv4Addr) -> Result<()> {
        run(&[
            "ip",
            "-n",
            &self.edge,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            EDGE_IF,
        ])
    }

    /// A handle on one namespace, for threads that join it.
    pub fn open(name: &str) -> Result<File> {
        File::open(format!("/run/netns/{name}"))
            .with_context(|| format!("opening namespace {name}"))
    }

    /// Removes everything; also what `drop` does. Safe to call twice.
    pub fn remove(&mut self) {
        for ns in self.made.drain(..) {
            if let Err(e) = run(&["ip", "netns", "del", &ns]) {
                crate::output::status(&format!("monitor: could not remove namespace {ns}: {e:#}"));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove();
    }
}
