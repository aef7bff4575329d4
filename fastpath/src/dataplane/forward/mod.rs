//! The forwarding decision for one frame: parse, look up, choose the next
//! hop, rewrite in place. No I/O: it takes the view and the frame, so unit
//! tests need no sockets.
//!
//! Invariants: a frame is only rewritten when the verdict is `Forward`
//! (TTL or hop limit decremented, IPv4 checksum updated, MACs set); every
//! other verdict leaves it as received, for Linux. Nothing here allocates,
//! locks or logs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::fpc::{rtn, NextHops};
use crate::wire::ethernet::{self, ethertype, Frame, Mac};
use crate::wire::{ip_proto, ipv4, ipv6};

use super::stats::{DropReason, Exception};
use super::view::{Lookup, View};

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Rewritten: send it on this port.
    Forward(usize),
    /// Leave it to Linux.
    Exception(Exception),
    /// Leave it to Linux, and ask Linux to resolve this neighbour (an
    /// `Exception::NoNeighbour`).
    Resolve {
        ifindex: u32,
        dst: IpAddr,
    },
    Drop(DropReason),
}

/// Decides the fate of `frame`, received on port `in_port`, and rewrites
/// it when it is to be forwarded.
pub(crate) fn forward(view: &View, in_port: usize, frame: &mut [u8]) -> Verdict {
    let Some(port) = view.ports.get(in_port) else {
        return Verdict::Drop(DropReason::PortDown);
    };
    let Ok(mut eth) = Frame::new_checked(&mut *frame) else {
        return Verdict::Drop(DropReason::Malformed);
    };
    let dst = eth.dst();
    if dst != port.mac {
        return Verdict::Exception(if ethernet::is_multicast(&dst) {
            Exception::L2Multicast
        } else {
            Exception::OtherHost
        });
    }
    let next = match eth.ethertype() {
        ethertype::IPV4 => route4(view, eth.payload_mut()),
        ethertype::IPV6 => route6(view, eth.payload_mut()),
        _ => Err(Verdict::Exception(Exception::NotIp)),
    };
    match next {
        Ok((out, mac)) => {
            eth.set_dst(&mac);
            eth.set_src(&view.ports[out].mac);
            Verdict::Forward(out)
        }
        Err(v) => v,
    }
}

/// The output port and next-hop MAC of an IPv4 packet; rewrites its TTL
/// and checksum when it is to be forwarded.
fn route4(view: &View, payload: &mut [u8]) -> Result<(usize, Mac), Verdict> {
    let mut p =
        ipv4::Packet::new_checked(payload).map_err(|_| Verdict::Drop(DropReason::Malformed))?;
    if !p.verify_checksum() {
        return Err(Verdict::Drop(DropReason::BadChecksum));
    }
    if p.header_len() > ipv4::HEADER_LEN {
        return Err(Verdict::Exception(Exception::IpOptions));
    }
    let dst = p.dst();
    if dst >> 28 == 0xe || dst == u32::MAX {
        return Err(Verdict::Exception(Exception::Multicast));
    }
    if view.is_local4(dst) {
        return Err(Verdict::Exception(Exception::Local));
    }
    let attrs = match view.lookup4(dst) {
        Lookup::Local => return Err(Verdict::Exception(Exception::Local)),
        Lookup::NoRoute => return Err(Verdict::Exception(Exception::NoRoute)),
        Lookup::Route(a) => a,
    };
    check_type(attrs.rtype)?;
    if p.ttl() <= 1 {
        return Err(Verdict::Exception(Exception::Ttl));
    }
    let (sport, dport) = p.ports();
    let flow = flow_hash(
        u64::from(p.src()),
        u64::from(dst),
        u64::from(p.protocol()) << 32 | u64::from(sport) << 16 | u64::from(dport),
    );
    let dst_ip = IpAddr::V4(Ipv4Addr::from(dst));
    let (out, mac) = next_hop(view, &attrs.nexthops, flow, dst_ip, p.total_len())?;
    p.decrement_ttl();
    Ok((out, mac))
}

fn route6(view: &View, payload: &mut [u8]) -> Result<(usize, Mac), Verdict> {
    let mut p =
        ipv6::Packet::new_checked(payload).map_err(|_| Verdict::Drop(DropReason::Malformed))?;
    let (src, dst) = (p.src(), p.dst());
    if ipv6::is_multicast(dst) {
        return Err(Verdict::Exception(Exception::Multicast));
    }
    if ipv6::is_link_local(dst) || ipv6::is_link_local(src) {
        return Err(Verdict::Exception(Exception::LinkLocal));
    }
    if p.next_header() == ip_proto::HOP_BY_HOP {
        return Err(Verdict::Exception(Exception::IpOptions));
    }
    if view.is_local6(dst) {
        return Err(Verdict::Exception(Exception::Local));
    }
    let attrs = match view.lookup6(dst) {
        Lookup::Local => return Err(Verdict::Exception(Exception::Local)),
        Lookup::NoRoute => return Err(Verdict::Exception(Exception::NoRoute)),
        Lookup::Route(a) => a,
    };
    check_type(attrs.rtype)?;
    if p.hop_limit() <= 1 {
        return Err(Verdict::Exception(Exception::Ttl));
    }
    let (sport, dport) = p.ports();
    let flow = flow_hash(
        (src as u64) ^ ((src >> 64) as u64),
        (dst as u64) ^ ((dst >> 64) as u64),
        u64::from(p.next_header()) << 32 | u64::from(sport) << 16 | u64::from(dport),
    );
    let dst_ip = IpAddr::V6(Ipv6Addr::from(dst));
    let (out, mac) = next_hop(view, &attrs.nexthops, flow, dst_ip, p.total_len())?;
    p.decrement_hop_limit();
    Ok((out, mac))
}

fn check_type(rtype: u8) -> Result<(), Verdict> {
    match rtype {
        rtn::UNICAST => Ok(()),
        rtn::BLACKHOLE => Err(Verdict::Drop(DropReason::Blackhole)),
        rtn::UNREACHABLE | rtn::PROHIBIT | rtn::THROW => {
            Err(Verdict::Exception(Exception::Unreachable))
        }
        _ => Err(Verdict::Exception(Exception::Local)),
    }
}

/// Resolves the route's next hops to an output port and a MAC: picks one
/// hop by flow hash and weight (multipath, nexthop groups), finds its port
/// and its neighbour (the gateway, or the destination itself on a
/// connected route), and marks the neighbour used.
fn next_hop(
    view: &View,
    nexthops: &NextHops,
    flow: u64,
    dst: IpAddr,
    ip_len: usize,
) -> Result<(usize, Mac), Verdict> {
    let (gateway, oif) = match nexthops {
        NextHops::None => return Err(Verdict::Exception(Exception::NoRoute)),
        NextHops::Single(h) => (h.gateway, h.oif),
        NextHops::Multipath(hops) => {
            let h = pick(hops.iter().map(|h| u32::from(h.weight)), flow)
                .and_then(|i| hops.get(i))
                .ok_or(Verdict::Exception(Exception::NoRoute))?;
            (h.gateway, h.oif)
        }
        NextHops::Id(id) => {
            let mut nh = view
                .nexthop(*id)
                .ok_or(Verdict::Exception(Exception::NoRoute))?;
            if !nh.group.is_empty() {
                let member = pick(nh.group.iter().map(|&(_, w)| u32::from(w)), flow)
                    .and_then(|i| nh.group.get(i))
                    .and_then(|&(id, _)| view.nexthop(id))
                    .ok_or(Verdict::Exception(Exception::NoRoute))?;
                nh = member;
            }
            if nh.blackhole {
                return Err(Verdict::Drop(DropReason::Blackhole));
            }
            (nh.gateway, nh.oif)
        }
    };
    let out = view
        .port_of(oif)
        .ok_or(Verdict::Exception(Exception::NotAPort))?;
    let port = &view.ports[out];
    if !port.up {
        return Err(Verdict::Drop(DropReason::PortDown));
    }
    if ip_len > port.mtu as usize {
        return Err(Verdict::Exception(Exception::Mtu));
    }
    let via = gateway.unwrap_or(dst);
    let neigh = view.neigh(oif, via).ok_or(Verdict::Resolve {
        ifindex: oif,
        dst: via,
    })?;
    neigh.mark_hit();
    Ok((out, neigh.mac))
}

/// The index chosen by `flow` among entries of these weights (0 counts as
/// 1), or `None` for none.
fn pick(weights: impl Iterator<Item = u32> + Clone, flow: u64) -> Option<usize> {
    let total: u64 = weights.clone().map(|w| u64::from(w.max(1))).sum();
    if total == 0 {
        return None;
    }
    let mut at = (flow >> 32) % total;
    for (i, w) in weights.enumerate() {
        let w = u64::from(w.max(1));
        if at < w {
            return Some(i);
        }
        at -= w;
    }
    None
}

/// A flow's hash: every input bit spread over the high half.
fn flow_hash(a: u64, b: u64, c: u64) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |s: u64, v: u64| {
        let m = u128::from(s ^ v) * u128::from(K);
        (m as u64) ^ ((m >> 64) as u64)
    };
    mix(mix(mix(K, a), b), c)
}

#[cfg(test)]
mod tests;
