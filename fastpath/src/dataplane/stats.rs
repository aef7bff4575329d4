//! Per-interface counters of the dataplane: what each port received, sent
//! and forwarded, and why packets went to Linux (exceptions) or nowhere
//! (drops).
//!
//! Invariants: each worker owns one [`WorkerStats`] and is the only writer
//! of its counters, so a count is a relaxed load and store (no locked
//! instruction); readers sum every worker's counters and may see a burst
//! half counted, never a torn value.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use fpc::InterfaceStats;

use super::netfilter::Reason;
use super::port::PortInfo;

/// Why a packet went to Linux rather than through the fast path. With
/// AF_PACKET Linux receives every frame anyway: an exception is a frame
/// fpd leaves to Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Exception {
    /// ARP, VLAN-tagged and other non-IP frames.
    NotIp,
    /// A unicast MAC that is not the port's.
    OtherHost,
    /// Broadcast and multicast MACs.
    L2Multicast,
    /// Destined to this host (its addresses, local and broadcast routes).
    Local,
    /// IPv4 multicast and limited broadcast, IPv6 multicast.
    Multicast,
    /// IPv6 link-local source or destination: never forwarded.
    LinkLocal,
    NoRoute,
    /// Unreachable, prohibit and throw routes: Linux answers with ICMP.
    Unreachable,
    /// The next hop has no usable neighbour entry (resolution is asked).
    NoNeighbour,
    /// TTL or hop limit would expire.
    Ttl,
    /// IPv4 options, IPv6 hop-by-hop options.
    IpOptions,
    /// Larger than the output interface's MTU.
    Mtu,
    /// The route leaves through an interface fpd does not forward on.
    NotAPort,
    /// The family's forwarding path has netfilter hooks (nf_tables base
    /// chains, legacy x_tables rules) fpd does not evaluate.
    Netfilter,
    /// The family has IPsec policies for forwarded or outgoing packets.
    Xfrm,
    /// An IPv4 fragment or an IPv6 packet with a fragment header.
    Fragment,
    /// A source or destination Linux refuses to route (loopback,
    /// unspecified, multicast or broadcast source, one of its own
    /// addresses as source, IPv4-mapped IPv6).
    Martian,
    /// The packet would leave through the port it came in on: Linux also
    /// sends an ICMP redirect.
    Redirect,
    /// The frame is longer than its IP packet (Ethernet padding): Linux
    /// forwards the packet without it.
    Padded,
    /// The output port is down or has no carrier.
    LinkDown,
    /// Linux does not forward this family from the input port
    /// (`forwarding` off), or its setting is not synced yet.
    Forwarding,
    /// Reverse-path filtering is on for the input port.
    RpFilter,
    /// A policy routing rule fpd cannot evaluate exactly could match.
    Rule,
    /// The input or output port has a queueing discipline (`tc`) that
    /// shapes or classifies: Linux puts the packet through it.
    Tc,
}

impl Exception {
    pub const ALL: [Exception; 24] = [
        Exception::NotIp,
        Exception::OtherHost,
        Exception::L2Multicast,
        Exception::Local,
        Exception::Multicast,
        Exception::LinkLocal,
        Exception::NoRoute,
        Exception::Unreachable,
        Exception::NoNeighbour,
        Exception::Ttl,
        Exception::IpOptions,
        Exception::Mtu,
        Exception::NotAPort,
        Exception::Netfilter,
        Exception::Xfrm,
        Exception::Fragment,
        Exception::Martian,
        Exception::Redirect,
        Exception::Padded,
        Exception::LinkDown,
        Exception::Forwarding,
        Exception::RpFilter,
        Exception::Rule,
        Exception::Tc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Exception::NotIp => "exception_not_ip",
            Exception::OtherHost => "exception_other_host",
            Exception::L2Multicast => "exception_l2_multicast",
            Exception::Local => "exception_local",
            Exception::Multicast => "exception_multicast",
            Exception::LinkLocal => "exception_link_local",
            Exception::NoRoute => "exception_no_route",
            Exception::Unreachable => "exception_unreachable",
            Exception::NoNeighbour => "exception_no_neighbour",
            Exception::Ttl => "exception_ttl",
            Exception::IpOptions => "exception_ip_options",
            Exception::Mtu => "exception_mtu",
            Exception::NotAPort => "exception_not_a_port",
            Exception::Netfilter => "exception_netfilter",
            Exception::Xfrm => "exception_xfrm",
            Exception::Fragment => "exception_fragment",
            Exception::Martian => "exception_martian",
            Exception::Redirect => "exception_redirect",
            Exception::Padded => "exception_padded",
            Exception::LinkDown => "exception_link_down",
            Exception::Forwarding => "exception_forwarding",
            Exception::RpFilter => "exception_rp_filter",
            Exception::Rule => "exception_rule",
            Exception::Tc => "exception_tc",
        }
    }
}

/// Why a packet was dropped by fpd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum DropReason {
    /// Truncated or inconsistent headers.
    Malformed,
    BadChecksum,
    /// Blackhole routes and nexthops.
    Blackhole,
    /// The output port is administratively down.
    PortDown,
    /// The output port's transmit ring was full.
    TxFull,
    /// The frame was cut by the receive ring (larger than a ring slot).
    Truncated,
    /// A netfilter rule (or chain policy) dropped it, as Linux would.
    Netfilter,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::Blackhole,
        DropReason::PortDown,
        DropReason::TxFull,
        DropReason::Truncated,
        DropReason::Netfilter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "drop_malformed",
            DropReason::BadChecksum => "drop_bad_checksum",
            DropReason::Blackhole => "drop_blackhole",
            DropReason::PortDown => "drop_port_down",
            DropReason::TxFull => "drop_tx_full",
            DropReason::Truncated => "drop_truncated",
            DropReason::Netfilter => "drop_netfilter",
        }
    }
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Received on this port and sent on another.
    pub forwarded: Counter,
    /// Frames the kernel could not put in the receive ring (it was full).
    pub rx_ring_drops: Counter,
    /// ICMP errors fpd sent for packets received here (TTL or hop limit
    /// expired, no route).
    pub icmp_errors_sent: Counter,
    pub exceptions: [Counter; Exception::ALL.len()],
    pub drops: [Counter; DropReason::ALL.len()],
    /// Why netfilter evaluation left a packet to Linux (counted beside
    /// `exception_netfilter`).
    pub nf_reasons: [Counter; Reason::ALL.len()],
    /// Rule counters (nft `counter`, x_tables rules) packets fpd handled
    /// reached: Linux's own counters of those rules do not see them.
    pub nf_rule_counters: Counter,
}

impl PortCounters {
    #[inline]
    pub fn exception(&self, e: Exception) {
        self.exceptions[e as usize].add(1);
    }

    #[inline]
    pub fn drop(&self, d: DropReason) {
        self.drops[d as usize].add(1);
    }
}

/// One worker's counters, a [`PortCounters`] per port.
#[derive(Debug)]
pub(crate) struct WorkerStats {
    pub ports: Box<[PortCounters]>,
}

impl WorkerStats {
    pub fn new(ports: usize) -> Self {
        WorkerStats {
            ports: (0..ports).map(|_| PortCounters::default()).collect(),
        }
    }
}

/// Every worker's counters summed per port, zeros included (a reader can
/// tell "none" from "not counted").
pub(crate) fn collect(
    ports: &[PortInfo],
    workers: &[std::sync::Arc<WorkerStats>],
) -> Vec<InterfaceStats> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let sum = |f: &dyn Fn(&PortCounters) -> &Counter| -> u64 {
                workers.iter().map(|w| f(&w.ports[i]).get()).sum()
            };
            let mut counters = vec![
                ("rx_packets", sum(&|c| &c.rx_packets)),
                ("rx_bytes", sum(&|c| &c.rx_bytes)),
                ("tx_packets", sum(&|c| &c.tx_packets)),
                ("tx_bytes", sum(&|c| &c.tx_bytes)),
                ("forwarded", sum(&|c| &c.forwarded)),
                ("rx_ring_drops", sum(&|c| &c.rx_ring_drops)),
                ("icmp_errors_sent", sum(&|c| &c.icmp_errors_sent)),
            ];
            let exceptions: u64 = Exception::ALL
                .iter()
                .map(|e| sum(&|c| &c.exceptions[*e as usize]))
                .sum();
            let drops: u64 = DropReason::ALL
                .iter()
                .map(|d| sum(&|c| &c.drops[*d as usize]))
                .sum();
            counters.push(("exceptions", exceptions));
            counters.push(("drops", drops));
            for e in Exception::ALL {
                counters.push((e.name(), sum(&|c| &c.exceptions[e as usize])));
            }
            for d in DropReason::ALL {
                counters.push((d.name(), sum(&|c| &c.drops[d as usize])));
            }
            for (i, r) in Reason::ALL.iter().enumerate() {
                counters.push((r.name(), sum(&|c| &c.nf_reasons[i])));
            }
            counters.push(("nf_rule_counters", sum(&|c| &c.nf_rule_counters)));
            InterfaceStats {
                ifindex: p.ifindex,
                name: p.name.clone(),
                counters: counters
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            }
        })
        .collect()
}
