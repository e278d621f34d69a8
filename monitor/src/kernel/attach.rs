//! Attaching the programs. Every link lives in the `Ebpf` value: dropping it (normal exit,
//! SIGINT, SIGTERM, an error half-way through) detaches everything. tcx and XDP links are
//! also released by the kernel if the process dies; netlink clsact filters are not, which
//! is why preflight looks for leftovers. A clsact qdisc this run added for netlink filters
//! is removed at exit when nothing else uses it.

use anyhow::{Context, Result};
use aya::{
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    util::KernelVersion,
    Ebpf,
};

use super::preflight::LinkKind;
use crate::{
    cli::{AttachMode, TcApi},
    error::usage,
};

/// An interface to attach to, after preflight.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub index: u32,
    pub kind: LinkKind,
}

fn tcx_available() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load().map_err(|e| verifier_error(name, e))?;
    }
    Ok(prog)
}

/// The verifier's log runs to thousands of lines: keep its last line (the reason) in the
/// error, and the whole log at debug level (`RUST_LOG=debug`).
fn verifier_error(name: &str, e: aya::programs::ProgramError) -> anyhow::Error {
    let full = e.to_string();
    log::debug!("verifier log for {name}:\n{full}");
    let reason = full
        .lines()
        .rev()
        .find(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("processed ")
                && !l.starts_with(": Invalid argument")
        })
        .unwrap_or("no reason given")
        .trim()
        .to_string();
    anyhow::anyhow!(
        "the kernel refused program {name}: {reason} (full verifier log: RUST_LOG=debug)"
    )
}

/// How one tc program was attached, and whether this run added the interface's clsact qdisc
/// for it (then it is removed again at exit: see [`remove_added_clsact`]).
struct TcAttached {
    how: &'static str,
    added_clsact: bool,
}

fn attach_tc(ebpf: &mut Ebpf, t: &Target, dir: TcAttachType, api: TcApi) -> Result<TcAttached> {
    let prog_name = match (t.kind, dir) {
        (LinkKind::Ethernet | LinkKind::Loopback, TcAttachType::Egress) => "tc_eth_out",
        (LinkKind::Ethernet | LinkKind::Loopback, _) => "tc_eth_in",
        (LinkKind::RawIp, TcAttachType::Egress) => "tc_rawip_out",
        (LinkKind::RawIp, _) => "tc_rawip_in",
    };
    let use_tcx = match api {
        TcApi::Auto => tcx_available(),
        TcApi::Tcx => true,
        TcApi::Netlink => false,
    };
    let prog = classifier(ebpf, prog_name)?;
    let what = || format!("attaching {prog_name} to {} {dir:?}", t.name);
    if use_tcx {
        prog.attach_with_options(
            &t.name,
            dir,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(what)?;
        Ok(TcAttached {
            how: "tcx",
            added_clsact: false,
        })
    } else {
        // An error is EEXIST (the clsact qdisc is already there: not ours to remove) or one
        // the attach below reports better.
        let added_clsact = tc::qdisc_add_clsact(&t.name).is_ok();
        prog.attach_with_options(&t.name, dir, TcAttachOptions::Netlink(NlOptions::default()))
            .with_context(what)?;
        Ok(TcAttached {
            how: "clsact/netlink",
            added_clsact,
        })
    }
}

/// Removes the clsact qdisc from each interface this run added it to, once the monitor's
/// filters are detached (call it after dropping the `Ebpf` value, in the same namespace).
/// A qdisc that holds any other filter by then is left: deleting it would delete those.
/// Returns a line for each qdisc that could not be removed.
pub fn remove_added_clsact(ifaces: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for iface in ifaces {
        let mut empty = true;
        for dir in ["ingress", "egress"] {
            match std::process::Command::new("tc")
                .args(["filter", "show", "dev", iface, dir])
                .output()
            {
                Ok(o) if o.status.success() => empty &= o.stdout.trim_ascii().is_empty(),
                // No iproute2, or the interface is gone (with its qdisc): nothing to check.
                _ => empty = false,
            }
        }
        if !empty {
            continue;
        }
        match std::process::Command::new("tc")
            .args(["qdisc", "del", "dev", iface, "clsact"])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => problems.push(format!(
                "monitor: could not remove the clsact qdisc it added on {iface}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => problems.push(format!(
                "monitor: could not remove the clsact qdisc it added on {iface}: {e}"
            )),
        }
    }
    problems
}

fn attach_xdp(ebpf: &mut Ebpf, t: &Target) -> Result<String> {
    if t.kind == LinkKind::RawIp {
        return Err(usage(
            format!(
                "XDP needs an Ethernet interface; {} has no link header",
                t.name
            ),
            "use --attach tc on this interface",
        ));
    }
    let prog: &mut Xdp = ebpf
        .program_mut("xdp_eth")
        .context("program xdp_eth missing from the eBPF object")?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load().map_err(|e| verifier_error("xdp_eth", e))?;
    }
    match prog.attach(&t.name, XdpMode::Driver) {
        Ok(_) => Ok("XDP native".into()),
        Err(native) => match prog.attach(&t.name, XdpMode::Skb) {
            Ok(_) => Ok(format!("XDP generic (native refused: {native})")),
            Err(e) if is_busy(&e) => Err(usage(
                format!("another XDP program is attached to {}", t.name),
                format!("see it with `bpftool net show dev {0}`; detach it (`ip link set dev {0} xdp off`) or use --attach tc", t.name),
            )),
            Err(e) => Err(anyhow::Error::new(e).context(format!("attaching xdp_eth to {}", t.name))),
        },
    }
}

fn is_busy(e: &aya::programs::ProgramError) -> bool {
    let text = format!("{e:?}");
    text.contains("EBUSY")
        || text.contains("EEXIST")
        || text.contains("Device or resource busy")
        || text.contains("File exists")
}

/// Attaches to every target; returns one line per interface saying how, for the start-up
/// message. Each interface whose clsact qdisc this run added goes into `clsact_added`, also
/// when a later attach fails: the caller drops `ebpf` (detaching whatever was attached), then
/// gives the list to [`remove_added_clsact`].
pub fn attach_all(
    ebpf: &mut Ebpf,
    targets: &[Target],
    mode: AttachMode,
    api: TcApi,
    clsact_added: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for t in targets {
        let mut attach_tc = |ebpf: &mut Ebpf, dir| -> Result<&'static str> {
            let a = attach_tc(ebpf, t, dir, api)?;
            if a.added_clsact {
                clsact_added.push(t.name.clone());
            }
            Ok(a.how)
        };
        let line = match (mode, t.kind) {
            // Every loopback packet is sent and then received on the same device: one hook
            // sees it once. Egress, since this host sent it.
            (AttachMode::Tc, LinkKind::Loopback) => {
                let how = attach_tc(ebpf, TcAttachType::Egress)?;
                format!("{}: tc egress only, loopback ({how})", t.name)
            }
            (AttachMode::Xdp, LinkKind::Loopback) => {
                let xdp = attach_xdp(ebpf, t)?;
                format!("{}: {xdp} only, loopback", t.name)
            }
            (AttachMode::Tc, _) => {
                let how = attach_tc(ebpf, TcAttachType::Ingress)?;
                attach_tc(ebpf, TcAttachType::Egress)?;
                format!("{}: tc ingress+egress ({how})", t.name)
            }
            (AttachMode::Xdp, _) => {
                let xdp = attach_xdp(ebpf, t)?;
                let how = attach_tc(ebpf, TcAttachType::Egress)?;
                format!("{}: ingress {xdp}, egress tc ({how})", t.name)
            }
        };
        lines.push(line);
    }
    Ok(lines)
}
