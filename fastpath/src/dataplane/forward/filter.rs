//! The netfilter steps of a forwarded packet: the prerouting chains (and
//! the destination NAT of its conntrack entry) before the route lookup,
//! the forward and postrouting chains (and the source NAT) after it, in
//! the order of `netfilter`'s module documentation.
//!
//! Invariants: a packet that any step leaves to Linux goes as it was
//! received (the caller restores its [`Headers`]); a drop is Linux's drop
//! (no answer); nothing here allocates or locks.

use super::Verdict;
use crate::dataplane::conntrack::FlowMatch;
use crate::dataplane::netfilter::{
    apply_nat, Iface, Manip, NfCounters, NfVerdict, Packet, Stage, Tracked,
};
use crate::dataplane::stats::DropReason;
use crate::dataplane::view::View;

/// The first bytes of a packet (its IP and transport headers: IPv4
/// options and IPv6 extension headers never get this far), kept so that a
/// packet left to Linux after a rewrite goes as it was received.
pub(super) struct Headers {
    bytes: [u8; Headers::LEN],
    len: usize,
}

impl Headers {
    const LEN: usize = 128;

    pub fn save(l3: &[u8]) -> Headers {
        let len = l3.len().min(Self::LEN);
        let mut bytes = [0u8; Self::LEN];
        bytes[..len].copy_from_slice(&l3[..len]);
        Headers { bytes, len }
    }

    pub fn restore(&self, l3: &mut [u8]) {
        l3[..self.len].copy_from_slice(&self.bytes[..self.len]);
    }

    /// The saved bytes.
    pub fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn iface(view: &View, port: usize) -> Iface {
    let p = &view.ports[port];
    Iface {
        ifindex: p.ifindex,
        name: p.ifname,
    }
}

fn verdict(v: NfVerdict) -> Result<(), Verdict> {
    match v {
        NfVerdict::Accept => Ok(()),
        NfVerdict::Drop => Err(Verdict::Drop(DropReason::Netfilter)),
        NfVerdict::Linux(r) => Err(Verdict::Netfilter(r)),
    }
}

/// The packet's flow in the conntrack table, as received.
fn flow<'v>(view: &'v View, pkt: &Packet<'_>) -> FlowMatch<'v> {
    let l3 = pkt.l3;
    if pkt.v6 {
        let a = |at: usize| u128::from_be_bytes(l3[at..at + 16].try_into().unwrap());
        view.conntracks.find6(a(8), a(24), pkt.l4proto, pkt.l4())
    } else {
        let a = |at: usize| u32::from_be_bytes(l3[at..at + 4].try_into().unwrap());
        view.conntracks.find4(a(12), a(16), pkt.l4proto, pkt.l4())
    }
}

/// Prerouting: conntrack, the chains before and after the destination
/// NAT, and that NAT. Returns the packet's conntrack entry when the rules
/// make flows stateful.
pub(super) fn before_routing<'v>(
    view: &'v View,
    in_port: usize,
    l3: &mut [u8],
    counters: &mut NfCounters,
) -> Result<Option<Tracked<'v>>, Verdict> {
    let nf = &view.ruleset;
    let iif = iface(view, in_port);
    let pkt = Packet::parse(l3, iif, None).map_err(Verdict::Netfilter)?;
    let ct = nf
        .track(&pkt, flow(view, &pkt))
        .map_err(Verdict::Netfilter)?;
    verdict(nf.evaluate(Stage::PreroutingBeforeNat, &pkt, ct.as_ref(), counters))?;
    if let Some(t) = ct.as_ref().filter(|t| t.nat_dst) {
        apply_nat(t.entry, t.dir, Manip::Dst, l3).map_err(Verdict::Netfilter)?;
    }
    let pkt = Packet::parse(l3, iif, None).map_err(Verdict::Netfilter)?;
    verdict(nf.evaluate(Stage::PreroutingAfterNat, &pkt, ct.as_ref(), counters))?;
    Ok(ct)
}

/// Forward and postrouting: the chains before and after the source NAT,
/// and that NAT. The TTL or hop limit is already decremented, as Linux
/// has it at the forward hook.
pub(super) fn after_routing(
    view: &View,
    in_port: usize,
    out_port: usize,
    l3: &mut [u8],
    ct: Option<&Tracked<'_>>,
    counters: &mut NfCounters,
) -> Result<(), Verdict> {
    let nf = &view.ruleset;
    let (iif, oif) = (iface(view, in_port), Some(iface(view, out_port)));
    let pkt = Packet::parse(l3, iif, oif).map_err(Verdict::Netfilter)?;
    verdict(nf.evaluate(Stage::Forward, &pkt, ct, counters))?;
    verdict(nf.evaluate(Stage::PostroutingBeforeNat, &pkt, ct, counters))?;
    if let Some(t) = ct.filter(|t| t.nat_src) {
        apply_nat(t.entry, t.dir, Manip::Src, l3).map_err(Verdict::Netfilter)?;
    }
    let pkt = Packet::parse(l3, iif, oif).map_err(Verdict::Netfilter)?;
    verdict(nf.evaluate(Stage::PostroutingAfterNat, &pkt, ct, counters))
}
