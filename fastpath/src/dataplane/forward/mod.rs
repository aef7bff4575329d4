//! The forwarding decision for one frame: parse, look up, choose the next
//! hop, rewrite in place. No I/O: it takes the view and the frame, so unit
//! tests need no sockets.
//!
//! A forwarded packet marks the conntrack entries of its flow used (hit
//! flags, reported to cmgrd, which keeps them alive in Linux).
//!
//! The first rule: fpd forwards a packet only when it knows Linux would
//! forward it the same way (same output, same bytes, no ICMP error, no
//! redirect); anything else is an exception, which Linux handles with its
//! full semantics (on AF_XDP, as if received on the port: see
//! `port::xdp`). A family whose configuration fpd does not evaluate
//! (netfilter hooks, IPsec policies: [`Gates`]) goes to Linux whole.
//!
//! Invariants: a frame is only rewritten when the verdict is `Forward`
//! (TTL or hop limit decremented, IPv4 checksum updated, MACs set); every
//! other verdict leaves it as received, for Linux. Nothing here allocates,
//! locks or logs.
//!
//! ICMP errors: the router's Linux does not forward (`ip_forward` off), so
//! it drops a transit packet whose TTL expires, or that has no route,
//! without a word. [`icmp_error`] lets the worker answer such a packet
//! itself, from the ingress interface's address, routed like any packet.
//! It never answers an ICMP error, a non-first fragment, or a multicast,
//! broadcast or unspecified source (RFC 1812 4.3.2.7, RFC 4443 2.4 e).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::tables::RouteAttrs;
use crate::wire::ethernet::{self, ethertype, Frame, Mac};
use crate::wire::{icmp, ip_proto, ipv4, ipv6};
use fpc::{rtn, NextHops};

use super::conntrack::FlowEntry;
use super::gates::Gates;
use super::netfilter::{NfCounters, Reason};
use super::stats::{DropReason, Exception};
use super::view::{Flow, Lookup, ToLinux, View};

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
    /// Leave it to Linux: netfilter evaluation cannot decide it exactly
    /// (an `Exception::Netfilter`).
    Netfilter(Reason),
}

/// Decides the fate of `frame`, received on port `in_port`, and rewrites
/// it when it is to be forwarded.
#[cfg(test)]
pub(crate) fn forward(view: &View, in_port: usize, frame: &mut [u8]) -> Verdict {
    forward_counting(view, in_port, frame, &mut NfCounters::default())
}

/// [`forward`], adding to `nf` the netfilter rule counters the packet
/// reached.
pub(crate) fn forward_counting(
    view: &View,
    in_port: usize,
    frame: &mut [u8],
    nf: &mut NfCounters,
) -> Verdict {
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
    if port.tc {
        return Verdict::Exception(Exception::Tc);
    }
    let next = match (eth.ethertype(), view.gates.port(in_port)) {
        (ethertype::IPV4, Gates { v4: Some(e), .. })
        | (ethertype::IPV6, Gates { v6: Some(e), .. }) => Err(Verdict::Exception(e)),
        (ethertype::IPV4, _) => route4(view, in_port, eth.payload_mut(), nf),
        (ethertype::IPV6, _) => route6(view, in_port, eth.payload_mut(), nf),
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

/// The ICMP errors fpd sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpError {
    /// TTL or hop limit exceeded in transit.
    TimeExceeded,
    /// No route to the destination network.
    NetUnreachable,
}

impl IcmpError {
    /// The error a verdict calls for, if any.
    pub fn for_verdict(v: Verdict) -> Option<IcmpError> {
        match v {
            Verdict::Exception(Exception::Ttl) => Some(IcmpError::TimeExceeded),
            Verdict::Exception(Exception::NoRoute) => Some(IcmpError::NetUnreachable),
            _ => None,
        }
    }
}

/// Writes into `out` the frame of the ICMP error `why` that answers
/// `frame`, received on port `in_port` and left as received by
/// [`forward`]. Returns the port to send it on and its length, or what to
/// do with `frame` instead: `None` when no error is due or it cannot be
/// sent (leave it to Linux as decided), `Some(Resolve)` when the way back
/// needs a neighbour Linux should resolve.
pub(crate) fn icmp_error(
    view: &View,
    in_port: usize,
    frame: &[u8],
    why: IcmpError,
    out: &mut [u8],
) -> Result<(usize, usize), Option<Verdict>> {
    let port = view.ports.get(in_port).ok_or(None)?;
    let eth = Frame::new_checked(frame).map_err(|_| None)?;
    let ip_out = out.get_mut(ethernet::HEADER_LEN..).ok_or(None)?;
    let eth_out = eth.ethertype();
    let (len, back) = match eth_out {
        ethertype::IPV4 => {
            let p = ipv4::Packet::new_checked(eth.payload()).map_err(|_| None)?;
            let src = p.src();
            let non_first_fragment = p.frag_offset() != 0;
            let l4 = p.payload();
            let is_error =
                p.protocol() == ip_proto::ICMP && l4.first().is_some_and(|&t| icmp::is_error_v4(t));
            if non_first_fragment || is_error || src == 0 || src >> 28 >= 0xe || view.is_local4(src)
            {
                return Err(None);
            }
            let from = port.addr4.ok_or(None)?;
            // RFC 792: the original header and its first 64 bits of data.
            let quote_len = (p.header_len() + 8).min(p.total_len());
            let quote = &eth.payload()[..quote_len];
            let (icmp_type, code) = match why {
                IcmpError::TimeExceeded => (icmp::v4::TIME_EXCEEDED, 0),
                IcmpError::NetUnreachable => (icmp::v4::DEST_UNREACHABLE, 0),
            };
            let len = icmp::emit_error_v4(ip_out, from, src, icmp_type, code, quote).ok_or(None)?;
            let flow = Flow::icmp_error(from, src, ip_proto::ICMP, icmp_type, code);
            let attrs = match view.lookup4(&flow) {
                Lookup::Route(a) => a,
                _ => return Err(None),
            };
            check_type(attrs.rtype).map_err(|_| None)?;
            let flow = flow_hash(
                u64::from(from),
                u64::from(src),
                u64::from(ip_proto::ICMP) << 32,
            );
            let dst_ip = IpAddr::V4(Ipv4Addr::from(src));
            (len, next_hop(view, attrs, flow, dst_ip, len))
        }
        ethertype::IPV6 => {
            let p = ipv6::Packet::new_checked(eth.payload()).map_err(|_| None)?;
            let src = p.src();
            let l4 = p.payload();
            let non_first_fragment = p.next_header() == ip_proto::FRAGMENT
                && l4
                    .get(2..4)
                    .is_some_and(|o| u16::from_be_bytes([o[0], o[1]]) & 0xfff8 != 0);
            let is_error = p.next_header() == ip_proto::ICMPV6
                && l4.first().is_some_and(|&t| icmp::is_error_v6(t));
            if non_first_fragment
                || is_error
                || src == 0
                || ipv6::is_multicast(src)
                || view.is_local6(src)
            {
                return Err(None);
            }
            let from = port.addr6.ok_or(None)?;
            let (icmp_type, code) = match why {
                IcmpError::TimeExceeded => (icmp::v6::TIME_EXCEEDED, 0),
                IcmpError::NetUnreachable => (icmp::v6::DEST_UNREACHABLE, 0),
            };
            let original = &eth.payload()[..p.total_len()];
            let len =
                icmp::emit_error_v6(ip_out, from, src, icmp_type, code, original).ok_or(None)?;
            let flow = Flow::icmp_error(from, src, ip_proto::ICMPV6, icmp_type, code);
            let attrs = match view.lookup6(&flow) {
                Lookup::Route(a) => a,
                _ => return Err(None),
            };
            check_type(attrs.rtype).map_err(|_| None)?;
            let flow = flow_hash(
                (from as u64) ^ ((from >> 64) as u64),
                (src as u64) ^ ((src >> 64) as u64),
                u64::from(ip_proto::ICMPV6) << 32,
            );
            let dst_ip = IpAddr::V6(Ipv6Addr::from(src));
            (len, next_hop(view, attrs, flow, dst_ip, len))
        }
        _ => return Err(None),
    };
    let (out_port, mac) = back.map_err(|v| match v {
        Verdict::Resolve { .. } => Some(v),
        _ => None,
    })?;
    let mut reply = Frame::new_checked(&mut out[..ethernet::HEADER_LEN + len]).map_err(|_| None)?;
    reply.set_dst(&mac);
    reply.set_src(&view.ports[out_port].mac);
    reply.set_ethertype(eth_out);
    Ok((out_port, ethernet::HEADER_LEN + len))
}

/// The output port and next-hop MAC of an IPv4 packet received on
/// `in_port`; rewrites it (TTL, checksum, the NAT of its conntrack entry)
/// when it is to be forwarded.
fn route4(
    view: &View,
    in_port: usize,
    payload: &mut [u8],
    nf: &mut NfCounters,
) -> Result<(usize, Mac), Verdict> {
    let frame_len = payload.len();
    let (src, dst) = {
        let p = ipv4::Packet::new_checked(&*payload)
            .map_err(|_| Verdict::Drop(DropReason::Malformed))?;
        if !p.verify_checksum() {
            return Err(Verdict::Drop(DropReason::BadChecksum));
        }
        if p.header_len() > ipv4::HEADER_LEN {
            return Err(Verdict::Exception(Exception::IpOptions));
        }
        let (src, dst) = (p.src(), p.dst());
        check_addresses4(view, src, dst)?;
        // Linux trims the frame to the packet; so does it reassemble and
        // refragment as soon as conntrack runs, which fpd cannot see.
        if p.total_len() != frame_len {
            return Err(Verdict::Exception(Exception::Padded));
        }
        if p.is_fragment() {
            return Err(Verdict::Exception(Exception::Fragment));
        }
        (src, dst)
    };
    let filtering = !view.ruleset.is_empty();
    let received = filtering.then(|| filter::Headers::save(payload));
    // From here on the packet may be rewritten: what goes to Linux goes as
    // it was received.
    let result = (|| {
        let ct = match filtering {
            true => filter::before_routing(view, in_port, payload, nf)?,
            false => None,
        };
        let mut p = ipv4::Packet::new_checked(&mut *payload)
            .map_err(|_| Verdict::Drop(DropReason::Malformed))?;
        let dst = p.dst();
        if ct.is_some_and(|t| t.nat_dst) {
            check_addresses4(view, p.src(), dst)?;
        }
        let iif = view.ports[in_port].ifindex;
        let attrs = match view.lookup4(&Flow::of_ipv4(&p, iif)) {
            Lookup::Route(a) => a,
            other => return Err(not_routed(other)),
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
        let (out, mac) = next_hop(view, attrs, flow, dst_ip, p.total_len())?;
        if out == in_port {
            return Err(Verdict::Exception(Exception::Redirect));
        }
        p.decrement_ttl();
        if filtering {
            filter::after_routing(view, in_port, out, payload, ct.as_ref(), nf)?;
        }
        Ok((out, mac, ct.map(|t| t.entry)))
    })();
    settle(result, received, payload, |l3| mark4(view, src, dst, l3))
}

/// The end of [`route4`] and [`route6`]: a forwarded packet marks its
/// conntrack entry used (its tracked one, else by its headers as received,
/// through `mark`); a packet left to Linux is put back as received.
fn settle(
    result: Result<(usize, Mac, Option<&FlowEntry>), Verdict>,
    received: Option<filter::Headers>,
    payload: &mut [u8],
    mark: impl FnOnce(&[u8]),
) -> Result<(usize, Mac), Verdict> {
    match result {
        Ok((out, mac, entry)) => {
            match (entry, &received) {
                (Some(e), _) => e.mark_hit(),
                (None, Some(h)) => mark(h.get()),
                (None, None) => mark(payload),
            }
            Ok((out, mac))
        }
        Err(v) => {
            if let Some(h) = received.filter(|_| !matches!(v, Verdict::Drop(_))) {
                h.restore(payload);
            }
            Err(v)
        }
    }
}

/// Marks the conntrack entries of the IPv4 packet `l3` (as received).
fn mark4(view: &View, src: u32, dst: u32, l3: &[u8]) {
    let hl = usize::from(l3[0] & 0x0f) * 4;
    view.conntracks
        .mark4(src, dst, l3[9], l3.get(hl..).unwrap_or(&[]));
}

/// What fpd leaves to Linux by an IPv4 packet's addresses.
fn check_addresses4(view: &View, src: u32, dst: u32) -> Result<(), Verdict> {
    if dst >> 28 == 0xe || dst == u32::MAX {
        return Err(Verdict::Exception(Exception::Multicast));
    }
    if view.is_local4(dst) {
        return Err(Verdict::Exception(Exception::Local));
    }
    if martian4(src, dst) || view.is_local4(src) {
        return Err(Verdict::Exception(Exception::Martian));
    }
    Ok(())
}

fn route6(
    view: &View,
    in_port: usize,
    payload: &mut [u8],
    nf: &mut NfCounters,
) -> Result<(usize, Mac), Verdict> {
    let frame_len = payload.len();
    let (src, dst) = {
        let p = ipv6::Packet::new_checked(&*payload)
            .map_err(|_| Verdict::Drop(DropReason::Malformed))?;
        let (src, dst) = (p.src(), p.dst());
        if p.next_header() == ip_proto::HOP_BY_HOP {
            return Err(Verdict::Exception(Exception::IpOptions));
        }
        check_addresses6(view, src, dst)?;
        if p.total_len() != frame_len {
            return Err(Verdict::Exception(Exception::Padded));
        }
        if p.next_header() == ip_proto::FRAGMENT {
            return Err(Verdict::Exception(Exception::Fragment));
        }
        (src, dst)
    };
    let filtering = !view.ruleset.is_empty();
    let received = filtering.then(|| filter::Headers::save(payload));
    let result = (|| {
        let ct = match filtering {
            true => filter::before_routing(view, in_port, payload, nf)?,
            false => None,
        };
        let mut p = ipv6::Packet::new_checked(&mut *payload)
            .map_err(|_| Verdict::Drop(DropReason::Malformed))?;
        let dst = p.dst();
        if ct.is_some_and(|t| t.nat_dst) {
            check_addresses6(view, p.src(), dst)?;
        }
        let iif = view.ports[in_port].ifindex;
        let attrs = match view.lookup6(&Flow::of_ipv6(&p, iif)) {
            Lookup::Route(a) => a,
            other => return Err(not_routed(other)),
        };
        check_type(attrs.rtype)?;
        if p.hop_limit() <= 1 {
            return Err(Verdict::Exception(Exception::Ttl));
        }
        let (sport, dport) = p.ports();
        let src_now = p.src();
        let flow = flow_hash(
            (src_now as u64) ^ ((src_now >> 64) as u64),
            (dst as u64) ^ ((dst >> 64) as u64),
            u64::from(p.next_header()) << 32 | u64::from(sport) << 16 | u64::from(dport),
        );
        let dst_ip = IpAddr::V6(Ipv6Addr::from(dst));
        let (out, mac) = next_hop(view, attrs, flow, dst_ip, p.total_len())?;
        if out == in_port {
            return Err(Verdict::Exception(Exception::Redirect));
        }
        p.decrement_hop_limit();
        if filtering {
            filter::after_routing(view, in_port, out, payload, ct.as_ref(), nf)?;
        }
        Ok((out, mac, ct.map(|t| t.entry)))
    })();
    settle(result, received, payload, |l3| mark6(view, src, dst, l3))
}

/// Marks the conntrack entries of the IPv6 packet `l3` (as received).
fn mark6(view: &View, src: u128, dst: u128, l3: &[u8]) {
    view.conntracks
        .mark6(src, dst, l3[6], l3.get(ipv6::HEADER_LEN..).unwrap_or(&[]));
}

/// What fpd leaves to Linux by an IPv6 packet's addresses.
fn check_addresses6(view: &View, src: u128, dst: u128) -> Result<(), Verdict> {
    if ipv6::is_multicast(dst) {
        return Err(Verdict::Exception(Exception::Multicast));
    }
    if ipv6::is_link_local(dst) || ipv6::is_link_local(src) {
        return Err(Verdict::Exception(Exception::LinkLocal));
    }
    if view.is_local6(dst) {
        return Err(Verdict::Exception(Exception::Local));
    }
    if martian6(src) || martian6(dst) || ipv6::is_multicast(src) || view.is_local6(src) {
        return Err(Verdict::Exception(Exception::Martian));
    }
    Ok(())
}

/// An IPv4 source or destination Linux will not route (RFC 1812 5.3.7,
/// `ip_route_input_slow`): `0.0.0.0/8` and `127.0.0.0/8` either way, a
/// multicast or limited-broadcast source (the destination was checked).
fn martian4(src: u32, dst: u32) -> bool {
    let zero_or_loopback = |a: u32| a >> 24 == 0 || a >> 24 == 127;
    zero_or_loopback(src) || zero_or_loopback(dst) || src >> 28 == 0xe || src == u32::MAX
}

/// An IPv6 address Linux will not forward to or from: unspecified,
/// loopback, IPv4-mapped.
fn martian6(a: u128) -> bool {
    a == 0 || a == 1 || a >> 32 == 0xffff
}

/// The verdict for a lookup that gave no route to forward by.
fn not_routed(l: Lookup<'_>) -> Verdict {
    match l {
        Lookup::Route(_) | Lookup::Local => Verdict::Exception(Exception::Local),
        Lookup::NoRoute => Verdict::Exception(Exception::NoRoute),
        Lookup::Blackhole => Verdict::Drop(DropReason::Blackhole),
        Lookup::Linux(ToLinux::Unreachable | ToLinux::Prohibit) => {
            Verdict::Exception(Exception::Unreachable)
        }
        Lookup::Linux(ToLinux::Unsupported) => Verdict::Exception(Exception::Rule),
    }
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
/// connected route), and marks the neighbour used. A packet larger than
/// the route's MTU metric or the port's MTU is Linux's (which answers or
/// fragments it).
fn next_hop(
    view: &View,
    route: &RouteAttrs,
    flow: u64,
    dst: IpAddr,
    ip_len: usize,
) -> Result<(usize, Mac), Verdict> {
    let (gateway, oif) = match &route.nexthops {
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
        return Err(Verdict::Exception(Exception::LinkDown));
    }
    if port.tc {
        return Err(Verdict::Exception(Exception::Tc));
    }
    if ip_len > port.mtu as usize || (route.mtu != 0 && ip_len > route.mtu as usize) {
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

mod filter;
#[cfg(test)]
mod tests;
