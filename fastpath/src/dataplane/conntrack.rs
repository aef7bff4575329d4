//! The conntrack entries of a view, found by the flow of a forwarded
//! packet, and their hit flags.
//!
//! Each entry is reachable from both of its tuples: a packet of the
//! original direction matches the original tuple, a packet of the reply
//! direction the reply tuple (which says the NAT: fpd forwards packets
//! as they come, so a reply arrives with the translated addresses).
//! A packet does not say its conntrack zone (Linux assigns zones by rules
//! fpd does not run), so a packet marks every entry of its flow, whatever
//! the zone: entries of one flow in two zones are rare (overlapping
//! address spaces), and at worst both are kept alive.
//!
//! Invariants: built off the hot path and never changed after, except for
//! the hit flags (relaxed atomics, set by workers, cleared by the
//! reporter); [`FlowTable::mark4`] and [`FlowTable::mark6`] allocate
//! nothing, lock nothing and walk only the entries of one flow.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::wire::ip_proto;
use common::hash::PrefixHash;
use fpc::{Conntrack, CtTuple, Hit};

/// No further entry of this flow.
const END: u32 = u32::MAX;

/// A flow as conntrack tuples name it: ports, or for ICMP and ICMPv6 the
/// id (`sport`) and the type and code (`dport`, type in the high byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow<A> {
    src: A,
    dst: A,
    proto: u8,
    sport: u16,
    dport: u16,
}

impl<A> Flow<A> {
    /// The flow of `tuple`, its addresses given as `src` and `dst`.
    fn of(src: A, dst: A, tuple: &CtTuple) -> Flow<A> {
        Flow {
            src,
            dst,
            proto: tuple.proto,
            sport: tuple.sport,
            dport: tuple.dport,
        }
    }
}

impl<A: Hash> Hash for Flow<A> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.src.hash(h);
        self.dst.hash(h);
        h.write_u64(
            u64::from(self.proto) << 32 | u64::from(self.sport) << 16 | u64::from(self.dport),
        );
    }
}

/// One synced entry as the dataplane keeps it: what hit flags report,
/// and what the netfilter evaluator reads (its tuples, status and mark).
#[derive(Debug)]
pub(crate) struct FlowEntry {
    orig: CtTuple,
    reply: CtTuple,
    zone: u16,
    /// IPS_* bits, those of [`Conntrack::STATUS_SYNCED`].
    status: u32,
    mark: u32,
    timeout: u32,
    hit: AtomicBool,
    /// The next entry of the same flow from each tuple (original, reply),
    /// as a slot: entry index * 2 + direction.
    next: [u32; 2],
}

/// Which tuple of its entry a packet matched.
#[allow(dead_code)] // until the forwarding path runs the netfilter evaluator
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Original,
    Reply,
}

/// The entries of a packet's flow.
#[allow(dead_code)] // until the forwarding path runs the netfilter evaluator
#[derive(Debug, Clone, Copy)]
pub(crate) enum FlowMatch<'a> {
    None,
    One(&'a FlowEntry, Direction),
    /// The flow has entries in several zones (or twice): which one Linux
    /// would use depends on the zone its rules give the packet.
    Several,
}

impl FlowEntry {
    pub fn orig(&self) -> &CtTuple {
        &self.orig
    }
    pub fn reply(&self) -> &CtTuple {
        &self.reply
    }
    pub fn zone(&self) -> u16 {
        self.zone
    }
    pub fn status(&self) -> u32 {
        self.status
    }
    pub fn mark(&self) -> u32 {
        self.mark
    }
    /// Marks this entry used (what [`FlowTable::mark4`] does for every
    /// entry of a flow), for a caller that found it with `find4`/`find6`.
    #[allow(dead_code)] // until the forwarding path runs the netfilter evaluator
    pub fn mark_hit(&self) {
        if !self.hit.load(Relaxed) {
            self.hit.store(true, Relaxed);
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct FlowTable {
    entries: Vec<FlowEntry>,
    /// The first slot of each flow.
    heads4: HashMap<Flow<u32>, u32, PrefixHash>,
    heads6: HashMap<Flow<u128>, u32, PrefixHash>,
}

/// The ports (or ICMP id, type and code) of an L4 header, as a conntrack
/// tuple holds them; `None` for a protocol conntrack does not tell apart
/// by ports or a header too short to say.
fn l4_ids(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    match proto {
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let h = l4.get(..6)?;
            Some((
                u16::from_be_bytes([h[4], h[5]]),
                u16::from_be_bytes([h[0], h[1]]),
            ))
        }
        // TCP, UDP, DCCP, SCTP, UDP-Lite: the ports lead the header.
        ip_proto::TCP | ip_proto::UDP | 33 | 132 | 136 => {
            let h = l4.get(..4)?;
            Some((
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            ))
        }
        _ => None,
    }
}

fn link<A: Hash + Eq>(
    heads: &mut HashMap<Flow<A>, u32, PrefixHash>,
    flow: Flow<A>,
    slot: u32,
) -> u32 {
    heads.insert(flow, slot).unwrap_or(END)
}

impl FlowTable {
    pub fn new() -> FlowTable {
        let h = PrefixHash::new();
        FlowTable {
            entries: Vec::new(),
            heads4: HashMap::with_hasher(h.clone()),
            heads6: HashMap::with_hasher(h),
        }
    }

    pub fn build<'a>(cts: impl Iterator<Item = &'a Conntrack>) -> FlowTable {
        let mut t = FlowTable::new();
        for ct in cts {
            let index = t.entries.len() as u32;
            let mut next = [END; 2];
            for (dir, tuple) in [ct.orig, ct.reply].iter().enumerate() {
                let slot = index * 2 + dir as u32;
                next[dir] = match (tuple.src, tuple.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        link(&mut t.heads4, Flow::of(s.into(), d.into(), tuple), slot)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        link(&mut t.heads6, Flow::of(s.into(), d.into(), tuple), slot)
                    }
                    _ => END, // mixed families: fpd's tables refuse them
                };
            }
            t.entries.push(FlowEntry {
                orig: ct.orig,
                reply: ct.reply,
                zone: ct.zone,
                status: ct.status,
                mark: ct.mark,
                timeout: ct.timeout,
                hit: AtomicBool::new(false),
                next,
            });
        }
        t
    }

    fn mark_from(&self, mut slot: u32) -> bool {
        let found = slot != END;
        // Each step follows a link made at build: at most two per entry.
        while let Some(e) = self.entries.get((slot / 2) as usize) {
            if !e.hit.load(Relaxed) {
                e.hit.store(true, Relaxed);
            }
            slot = e.next[(slot % 2) as usize];
        }
        found
    }

    /// Marks used the entries of an IPv4 packet's flow (`l4`: its payload);
    /// whether there was one.
    #[inline]
    pub fn mark4(&self, src: u32, dst: u32, proto: u8, l4: &[u8]) -> bool {
        self.mark(&self.heads4, src, dst, proto, l4)
    }

    /// Marks used the entries of an IPv6 packet's flow.
    #[inline]
    pub fn mark6(&self, src: u128, dst: u128, proto: u8, l4: &[u8]) -> bool {
        self.mark(&self.heads6, src, dst, proto, l4)
    }

    #[inline]
    fn mark<A: Hash + Eq>(
        &self,
        heads: &HashMap<Flow<A>, u32, PrefixHash>,
        src: A,
        dst: A,
        proto: u8,
        l4: &[u8],
    ) -> bool {
        if heads.is_empty() {
            return false;
        }
        let Some((sport, dport)) = l4_ids(proto, l4) else {
            return false;
        };
        let flow = Flow {
            src,
            dst,
            proto,
            sport,
            dport,
        };
        self.mark_from(heads.get(&flow).copied().unwrap_or(END))
    }

    /// The entry of an IPv4 packet's flow, without marking it.
    #[allow(dead_code)] // until the forwarding path runs the netfilter evaluator
    #[inline]
    pub fn find4(&self, src: u32, dst: u32, proto: u8, l4: &[u8]) -> FlowMatch<'_> {
        self.find(&self.heads4, src, dst, proto, l4)
    }

    /// The entry of an IPv6 packet's flow, without marking it.
    #[allow(dead_code)] // until the forwarding path runs the netfilter evaluator
    #[inline]
    pub fn find6(&self, src: u128, dst: u128, proto: u8, l4: &[u8]) -> FlowMatch<'_> {
        self.find(&self.heads6, src, dst, proto, l4)
    }

    #[allow(dead_code)]
    #[inline]
    fn find<A: Hash + Eq>(
        &self,
        heads: &HashMap<Flow<A>, u32, PrefixHash>,
        src: A,
        dst: A,
        proto: u8,
        l4: &[u8],
    ) -> FlowMatch<'_> {
        if heads.is_empty() {
            return FlowMatch::None;
        }
        let Some((sport, dport)) = l4_ids(proto, l4) else {
            return FlowMatch::None;
        };
        let flow = Flow {
            src,
            dst,
            proto,
            sport,
            dport,
        };
        let Some(&slot) = heads.get(&flow) else {
            return FlowMatch::None;
        };
        let Some(e) = self.entries.get((slot / 2) as usize) else {
            return FlowMatch::None;
        };
        if e.next[(slot % 2) as usize] != END {
            return FlowMatch::Several;
        }
        let dir = match slot % 2 {
            0 => Direction::Original,
            _ => Direction::Reply,
        };
        // An entry whose reply tuple equals its original one is reachable
        // twice, so it is `Several` above: Linux's answer, not a guess.
        FlowMatch::One(e, dir)
    }

    /// Sets the flag of each entry used in `old` (the view this one
    /// replaces, let go by every worker), so that a rebuild between two
    /// reports loses no hit.
    pub fn carry_hits_from(&self, old: &FlowTable) {
        for e in old.entries.iter().filter(|e| e.hit.load(Relaxed)) {
            let head = match (e.orig.src, e.orig.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    self.heads4.get(&Flow::of(s.into(), d.into(), &e.orig))
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    self.heads6.get(&Flow::of(s.into(), d.into(), &e.orig))
                }
                _ => None,
            };
            let mut slot = head.copied().unwrap_or(END);
            while let Some(x) = self.entries.get((slot / 2) as usize) {
                if x.orig == e.orig && x.zone == e.zone {
                    x.hit.store(true, Relaxed);
                }
                slot = x.next[(slot % 2) as usize];
            }
        }
    }

    /// Appends every entry used since the last call, and clears its flag.
    pub fn take_hits(&self, out: &mut Vec<Hit>) {
        let used = self
            .entries
            .iter()
            .filter(|e| e.hit.swap(false, Relaxed))
            .map(|e| Hit::Conntrack {
                orig: e.orig,
                zone: e.zone,
                timeout: e.timeout,
            });
        out.extend(used);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> CtTuple {
        CtTuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport,
            dport,
        }
    }

    fn entry(orig: CtTuple, reply: CtTuple, zone: u16) -> Conntrack {
        Conntrack {
            orig,
            reply,
            zone,
            status: 0,
            mark: 0,
            timeout: 3,
            seq_adj: [None; 2],
        }
    }

    fn v4(s: &str) -> u32 {
        s.parse::<std::net::Ipv4Addr>().unwrap().into()
    }

    fn udp(sport: u16, dport: u16) -> [u8; 8] {
        let mut h = [0u8; 8];
        h[..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h
    }

    fn taken(t: &FlowTable) -> Vec<Hit> {
        let mut out = Vec::new();
        t.take_hits(&mut out);
        out
    }

    /// A UDP flow SNAT-ed by the router: 10.1.0.2:4000 -> 10.2.0.2:5678
    /// leaves as 10.2.0.1:4000, so replies come back to 10.2.0.1.
    fn snat() -> Conntrack {
        entry(
            tuple("10.1.0.2", "10.2.0.2", 17, 4000, 5678),
            tuple("10.2.0.2", "10.2.0.1", 17, 5678, 4000),
            0,
        )
    }

    #[test]
    fn the_original_direction_marks_the_entry_once() {
        let ct = snat();
        let t = FlowTable::build([&ct].into_iter());
        let l4 = udp(4000, 5678);
        assert!(t.mark4(v4("10.1.0.2"), v4("10.2.0.2"), 17, &l4));
        assert!(t.mark4(v4("10.1.0.2"), v4("10.2.0.2"), 17, &l4));
        let hit = Hit::Conntrack {
            orig: ct.orig,
            zone: 0,
            timeout: 3,
        };
        assert_eq!(taken(&t), vec![hit]);
        assert_eq!(taken(&t), vec![], "the flag is cleared by the report");
    }

    #[test]
    fn the_reply_direction_matches_the_reply_tuple() {
        let ct = snat();
        let t = FlowTable::build([&ct].into_iter());
        assert!(t.mark4(v4("10.2.0.2"), v4("10.2.0.1"), 17, &udp(5678, 4000)));
        assert_eq!(taken(&t).len(), 1);
        // The reply as it was before the NAT is no flow of this entry.
        assert!(!t.mark4(v4("10.2.0.2"), v4("10.1.0.2"), 17, &udp(5678, 4000)));
        assert_eq!(taken(&t), vec![]);
    }

    #[test]
    fn a_rebuilt_table_keeps_the_hits_of_the_one_it_replaces() {
        let (ct, other) = (
            snat(),
            entry(
                tuple("10.1.0.3", "10.2.0.2", 17, 4000, 5678),
                tuple("10.2.0.2", "10.1.0.3", 17, 5678, 4000),
                0,
            ),
        );
        let old = FlowTable::build([&ct, &other].into_iter());
        assert!(old.mark4(v4("10.2.0.2"), v4("10.2.0.1"), 17, &udp(5678, 4000)));
        // The entry changed (its timeout), the other one went.
        let changed = Conntrack {
            timeout: 30,
            ..snat()
        };
        let new = FlowTable::build([&changed].into_iter());
        new.carry_hits_from(&old);
        let hits = taken(&new);
        assert_eq!(hits.len(), 1);
        assert!(
            matches!(hits[0], Hit::Conntrack { timeout: 30, .. }),
            "{hits:?}"
        );
    }

    #[test]
    fn other_flows_match_nothing() {
        let ct = snat();
        let t = FlowTable::build([&ct].into_iter());
        let (a, b) = (v4("10.1.0.2"), v4("10.2.0.2"));
        assert!(!t.mark4(a, b, 17, &udp(4001, 5678)), "another port");
        assert!(!t.mark4(a, b, 6, &udp(4000, 5678)), "TCP, not UDP");
        assert!(!t.mark4(a, b, 17, &[0x0f]), "a header too short");
        assert!(!t.mark4(a, b, 47, &udp(4000, 5678)), "GRE: no ports");
        assert!(!t.mark6(1, 2, 17, &udp(4000, 5678)), "IPv6");
        assert_eq!(taken(&t), vec![]);
        let empty = FlowTable::build(std::iter::empty());
        assert!(!empty.mark4(a, b, 17, &udp(4000, 5678)));
    }

    #[test]
    fn one_flow_in_two_zones_marks_both_and_icmp_and_ipv6_match() {
        let zone1 = snat();
        let zone2 = Conntrack { zone: 2, ..snat() };
        // ICMPv6 echo: id 7, request type 128, reply type 129.
        let ping6 = entry(
            tuple("fd01::2", "fd02::2", 58, 7, 128 << 8),
            tuple("fd02::2", "fd01::2", 58, 7, 129 << 8),
            0,
        );
        let t = FlowTable::build([&zone1, &zone2, &ping6].into_iter());
        assert_eq!(t.len(), 3);
        assert!(t.mark4(v4("10.1.0.2"), v4("10.2.0.2"), 17, &udp(4000, 5678)));
        let mut zones: Vec<u16> = taken(&t)
            .into_iter()
            .map(|h| match h {
                Hit::Conntrack { zone, .. } => zone,
                _ => unreachable!(),
            })
            .collect();
        zones.sort();
        assert_eq!(zones, vec![0, 2]);
        let (a, b): (u128, u128) = (
            "fd01::2".parse::<std::net::Ipv6Addr>().unwrap().into(),
            "fd02::2".parse::<std::net::Ipv6Addr>().unwrap().into(),
        );
        // An echo reply: type 129, code 0, checksum, id 7, sequence.
        assert!(t.mark6(b, a, 58, &[129, 0, 0xab, 0xcd, 0, 7, 0, 1]));
        assert!(!t.mark6(b, a, 58, &[129, 0, 0xab, 0xcd, 0, 8, 0, 1]));
        assert_eq!(taken(&t).len(), 1);
    }
}
