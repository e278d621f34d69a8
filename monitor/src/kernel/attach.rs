//! Attaching the programs. Every link lives in the `Ebpf` value: dropping it (normal exit,
//! SIGINT, SIGTERM, an error half-way through) detaches everything. tcx and XDP links are
//! also released by the kernel if the process dies; netlink clsact filters are not, which
//! is why preflight looks for leftovers.

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

fn attach_tc(ebpf: &mut Ebpf, t: &Target, dir: TcAttachType, api: TcApi) -> Result<&'static str> {
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
        Ok("tcx")
    } else {
        // EEXIST just means the clsact qdisc is already there.
        let _ = tc::qdisc_add_clsact(&t.name);
        prog.attach_with_options(&t.name, dir, TcAttachOptions::Netlink(NlOptions::default()))
            .with_context(what)?;
        Ok("clsact/netlink")
    }
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
/// message. On error, dropping `ebpf` detaches whatever was attached.
pub fn attach_all(
    ebpf: &mut Ebpf,
    targets: &[Target],
    mode: AttachMode,
    api: TcApi,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for t in targets {
        let line = match (mode, t.kind) {
            // Every loopback packet is sent and then received on the same device: one hook
            // sees it once. Egress, since this host sent it.
            (AttachMode::Tc, LinkKind::Loopback) => {
                let how = attach_tc(ebpf, t, TcAttachType::Egress, api)?;
                format!("{}: tc egress only, loopback ({how})", t.name)
            }
            (AttachMode::Xdp, LinkKind::Loopback) => {
                let xdp = attach_xdp(ebpf, t)?;
                format!("{}: {xdp} only, loopback", t.name)
            }
            (AttachMode::Tc, _) => {
                let how = attach_tc(ebpf, t, TcAttachType::Ingress, api)?;
                attach_tc(ebpf, t, TcAttachType::Egress, api)?;
                format!("{}: tc ingress+egress ({how})", t.name)
            }
            (AttachMode::Xdp, _) => {
                let xdp = attach_xdp(ebpf, t)?;
                let how = attach_tc(ebpf, t, TcAttachType::Egress, api)?;
                format!("{}: ingress {xdp}, egress tc ({how})", t.name)
            }
        };
        lines.push(line);
    }
    Ok(lines)
}
