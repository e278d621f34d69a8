//! Checks made before anything is loaded or attached, so a person gets a reason and a hint
//! instead of a raw errno, and nothing is left half-attached.

use std::{ffi::CString, path::Path, process::Command};

use anyhow::Result;

use crate::error::usage;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// How frames start on an interface, which decides the program attached to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Ethernet header.
    Ethernet,
    /// Loopback: an Ethernet-shaped header of zeros, and every packet passes the device
    /// twice (sent, then received), so only one hook may count it.
    Loopback,
    /// No link header: tun, WireGuard, ipip.
    RawIp,
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Root, or at least CAP_BPF (or CAP_SYS_ADMIN on older kernels) and CAP_NET_ADMIN.
pub fn check_privileges() -> Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    let uid = unsafe { libc::geteuid() };
    Err(usage(
        format!("missing {} (running as uid {uid})", missing.join(" and ")),
        "run as root (sudo monitor live ...), or grant the binary \
         `setcap cap_bpf,cap_net_admin,cap_perfmon+ep`",
    ))
}

/// BTF describes the kernel's types; the loader needs it to relocate the program.
/// `MONITOR_SYSFS_BTF` overrides the path (tests use it to play a kernel without BTF).
pub fn check_btf() -> Result<()> {
    let path =
        std::env::var("MONITOR_SYSFS_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    if Path::new(&path).exists() {
        return Ok(());
    }
    Err(usage(
        format!("this kernel has no BTF ({path} is missing)"),
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's kernel since 2021 is)",
    ))
}

/// The interface's index and link kind.
pub fn interface(name: &str) -> Result<(u32, LinkKind)> {
    let not_found = || {
        usage(
            format!("no interface named `{name}`"),
            "list interfaces with `ip -br link`; inside a network namespace, run the monitor in it (ip netns exec NS monitor ...)",
        )
    };
    let cname = CString::new(name).map_err(|_| not_found())?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call, which only reads it.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 || name.contains('/') {
        return Err(not_found());
    }
    let ty = std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let kind = match ty {
        // ARPHRD_ETHER; unknown sysfs: assume Ethernet, the common case.
        Some(1) | None => LinkKind::Ethernet,
        Some(772) => LinkKind::Loopback,
        // ARPHRD_NONE (tun, WireGuard), ARPHRD_TUNNEL/TUNNEL6/SIT, ARPHRD_RAWIP.
        Some(65534) | Some(768) | Some(769) | Some(776) | Some(519) => LinkKind::RawIp,
        Some(other) => {
            return Err(usage(
                format!("interface `{name}` has link type {other}, which the monitor cannot parse"),
                "watch an Ethernet, loopback or IP tunnel interface instead",
            ))
        }
    };
    Ok((index, kind))
}

/// Program names the monitor attaches; a clsact filter with one of these is ours.
pub const TC_PROGRAMS: [&str; 4] = ["tc_eth_in", "tc_eth_out", "tc_rawip_in", "tc_rawip_out"];

/// Refuses when a monitor's clsact filter is already on `iface`: another monitor attached
/// the old (netlink) way, or one was killed before it could detach. Counting twice would be
/// wrong, and the leftover must be removed by hand: the hint names each of ours by its
/// priority and handle, so running it deletes no other tool's filter.
pub fn check_no_legacy_filter(iface: &str) -> Result<()> {
    let mut ours = Vec::new();
    let mut first_dir = None;
    for dir in ["ingress", "egress"] {
        let out = match Command::new("tc")
            .args(["filter", "show", "dev", iface, dir])
            .output()
        {
            Ok(o) => o,
            // Without iproute2 there is nothing to compare with; attaching still works.
            Err(_) => return Ok(()),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let found = monitor_filters(&text);
        if !found.is_empty() {
            first_dir.get_or_insert(dir);
        }
        ours.extend(found.into_iter().map(|f| f.delete_command(iface, dir)));
    }
    let Some(dir) = first_dir else {
        return Ok(());
    };
    let fix = if ours.iter().all(Option::is_some) {
        format!(
            "remove the leftover with `{}`",
            ours.into_iter().flatten().collect::<Vec<_>>().join("; ")
        )
    } else {
        format!("find the leftover with `tc filter show dev {iface} {dir}` and delete it by its pref and handle")
    };
    Err(usage(
        format!("a monitor's tc filter is already attached to {iface} ({dir}, clsact)"),
        format!("another monitor runs with --tc-api netlink, or one was killed: stop it, or {fix}"),
    ))
}

/// One of the monitor's filters in `tc filter show` output: its priority and handle (either
/// may be missing from an odd listing).
#[derive(Debug, PartialEq, Eq)]
struct MonitorFilter {
    pref: Option<String>,
    handle: Option<String>,
    chain: Option<String>,
}

impl MonitorFilter {
    /// The `tc` command deleting exactly this filter, when its priority and handle are known.
    fn delete_command(&self, iface: &str, dir: &str) -> Option<String> {
        let chain = match self.chain.as_deref() {
            None | Some("0") => String::new(),
            Some(c) => format!(" chain {c}"),
        };
        Some(format!(
            "tc filter del dev {iface} {dir} pref {}{chain} handle {} bpf",
            self.pref.as_deref()?,
            self.handle.as_deref()?
        ))
    }
}

/// The monitor's filters in one direction's `tc filter show` listing: the lines naming one
/// of [`TC_PROGRAMS`] (as `name tc_eth_in`, `tc_eth_in` or `file.o:[tc_eth_in]`).
fn monitor_filters(listing: &str) -> Vec<MonitorFilter> {
    listing
        .lines()
        .filter(|l| {
            TC_PROGRAMS
                .iter()
                .any(|p| l.contains(&format!("{p}]")) || l.split_whitespace().any(|w| w == *p))
        })
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |key: &str| {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|i| words.get(i + 1))
                    .map(|w| w.to_string())
            };
            MonitorFilter {
                pref: after("pref"),
                handle: after("handle"),
                chain: after("chain"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delete_command_names_only_our_filter() {
        let listing = "filter protocol ip pref 10 u32 chain 0 \n\
filter protocol ip pref 10 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 not_in_hw \n\
filter protocol all pref 49152 bpf chain 0 \n\
filter protocol all pref 49152 bpf chain 0 handle 0x1 tc_eth_out direct-action not_in_hw id 810 name tc_eth_out tag 374e19379664d371 jited \n";
        let found = monitor_filters(listing);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].delete_command("veth0", "egress").as_deref(),
            Some("tc filter del dev veth0 egress pref 49152 handle 0x1 bpf")
        );
        let old_style =
            "filter protocol all pref 3 bpf chain 7 handle 0x2 monitor.o:[tc_eth_in] direct-action";
        assert_eq!(
            monitor_filters(old_style)[0]
                .delete_command("eth0", "ingress")
                .as_deref(),
            Some("tc filter del dev eth0 ingress pref 3 chain 7 handle 0x2 bpf")
        );
        assert!(
            monitor_filters("filter protocol all pref 1 bpf chain 0 handle 0x1 other_prog")
                .is_empty()
        );
    }
}
