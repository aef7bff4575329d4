//! The forwarding view: everything a worker reads per packet, built from
//! the tables off the hot path and published RCU-style.
//!
//! Why a snapshot and not a lock: the FPC server's tables sit behind a mutex
//! that a big batch or a dump to a slow reader holds for milliseconds to
//! seconds. Workers must never wait on that. The builder thread (see
//! `Dataplane`) copies what forwarding needs into an immutable [`View`]
//! after each change (coalesced: changes that land during a build make one
//! more build) and swaps it in with `arc_swap`; a worker loads the current
//! view once per burst (a few nanoseconds, no lock, no allocation) and
//! keeps it for that burst. The price is memory (a second copy of the FIBs,
//! about as large as the first, only when ports are attached) and a copy per
//! change, O(routes): about a millisecond per 100,000 routes.
//!
//! A view has two parts, each shared (`Arc`) with the view before it unless
//! the change touched it: [`Routing`] (ports, routes, nexthops, neighbours,
//! local addresses) and the conntrack [`FlowTable`]. Conntrack entries come
//! and go far more often than routes, so a conntrack change copies no FIB,
//! and a change of what forwarding does not read (IPsec SAs, capture
//! filters, ...) makes no view at all (see [`Parts`]). Policy routing
//! rules are part of routing: each build sorts and compiles them (see
//! [`super::rules`]), and `lookup4`/`lookup6` walk them per packet. What
//! closes a family's fast path ([`Gates`]: netfilter hooks, IPsec
//! policies, netconf) is a third, small part.
//!
//! Invariants: a view is never mutated once published, except for the
//! neighbours' and conntrack entries' hit flags (relaxed atomics, set by
//! workers and cleared by the reporter); a lookup allocates nothing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use super::conntrack::FlowTable;
pub(crate) use super::gates::{Gates, PortGates};
use super::netfilter::Ruleset;
pub(crate) use super::port::PortInfo;
pub(crate) use super::rules::{Flow, ToLinux};
use super::rules::{RuleList, Verdict as RuleVerdict};
use crate::tables::{FibSnapshot, RouteAttrs, Tables};
use crate::wire::ethernet::Mac;
use common::hash::PrefixHash;
use fpc::{rtn, Hit, Nexthop, ObjectKind, AF_INET, AF_INET6};

/// `NUD_*` states whose link-layer address can be used.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

/// A port as forwarding sees it: the synced link when there is one (its
/// MAC, MTU and admin state follow `ip link set`), else what was found at
/// open.
#[derive(Debug, Clone)]
pub(crate) struct PortView {
    pub ifindex: u32,
    pub mac: Mac,
    pub mtu: u32,
    pub up: bool,
    /// The source of the ICMP errors fpd sends for packets received here:
    /// the interface's first IPv4 address, and its first global IPv6
    /// address (else its link-local one).
    pub addr4: Option<u32>,
    pub addr6: Option<u128>,
    /// The interface's name as netfilter's `iifname`/`oifname` see it:
    /// NUL-padded to IFNAMSIZ (the synced link's, else the one at open).
    pub ifname: [u8; 16],
    /// The port has a queueing discipline Linux would put packets
    /// through (a shaper, an ingress or clsact classifier): fpd, which
    /// receives and transmits past them, leaves its packets to Linux.
    pub tc: bool,
}

/// A usable neighbour and its hit flag.
#[derive(Debug)]
pub(crate) struct NeighEntry {
    pub mac: Mac,
    hit: AtomicBool,
}

impl NeighEntry {
    /// Marks the entry used; a load first keeps the cache line shared
    /// while the flag is already set.
    #[inline]
    pub fn mark_hit(&self) {
        if !self.hit.load(Relaxed) {
            self.hit.store(true, Relaxed);
        }
    }
}

/// Where a packet goes, per the policy routing rules and route tables.
pub(crate) enum Lookup<'a> {
    /// An address of this host (or a broadcast): Linux's.
    Local,
    Route(&'a RouteAttrs),
    NoRoute,
    /// A `blackhole` rule: drop without an ICMP error.
    Blackhole,
    /// Linux decides: an `unreachable` or `prohibit` rule (whose ICMP
    /// error Linux sends), or a rule fpd cannot evaluate.
    Linux(ToLinux),
}

/// Which parts of the view a change of the tables touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Parts {
    pub routing: bool,
    pub flows: bool,
    /// What closes a family's fast path ([`Gates`]).
    pub gates: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        routing: true,
        flows: true,
        gates: true,
    };

    /// What objects of `kind` change in the view.
    pub fn of(kind: ObjectKind) -> Parts {
        use ObjectKind::*;
        Parts {
            routing: matches!(kind, Link | Addr | Route | Nexthop | Neigh | Rule | Qdisc),
            flows: kind == Conntrack,
            gates: matches!(
                kind,
                NftTable
                    | NftChain
                    | NftRule
                    | NftSet
                    | NftSetElem
                    | XtChain
                    | XtRule
                    | XfrmSp
                    | NetConf
            ),
        }
    }

    pub fn union(self, other: Parts) -> Parts {
        Parts {
            routing: self.routing || other.routing,
            flows: self.flows || other.flows,
            gates: self.gates || other.gates,
        }
    }

    pub fn is_empty(self) -> bool {
        self == Parts::default()
    }
}

/// See the module documentation. Derefs to its [`Routing`].
pub(crate) struct View {
    routing: Arc<Routing>,
    /// The conntrack entries, by flow.
    pub conntracks: Arc<FlowTable>,
    /// Which families must go to Linux whatever the packet, per input port.
    pub gates: Arc<PortGates>,
    /// The netfilter rules of the forwarding path, compiled.
    pub ruleset: Arc<Ruleset>,
    /// Whether Linux forwards what fpd hands it (AF_XDP).
    linux_forwards: bool,
}

/// What forwarding reads but the conntrack entries.
pub(crate) struct Routing {
    pub ports: Vec<PortView>,
    fib: Option<FibSnapshot>,
    nexthops: HashMap<u32, Nexthop, PrefixHash>,
    neigh4: HashMap<(u32, u32), NeighEntry, PrefixHash>,
    neigh6: HashMap<(u32, u128), NeighEntry, PrefixHash>,
    local4: HashSet<u32, PrefixHash>,
    local6: HashSet<u128, PrefixHash>,
    /// Policy routing rules, sorted and compiled.
    rules4: RuleList<u32>,
    rules6: RuleList<u128>,
}

impl Deref for View {
    type Target = Routing;
    fn deref(&self) -> &Routing {
        &self.routing
    }
}

impl View {
    /// Nothing is forwarded (before the first sync). `linux_forwards`:
    /// Linux forwards what fpd hands it (AF_XDP).
    pub fn empty(ports: &[PortInfo], linux_forwards: bool) -> View {
        View {
            routing: Arc::new(Routing::empty(ports)),
            conntracks: Arc::new(FlowTable::new()),
            gates: Arc::new(PortGates::build(&Tables::new(), ports, linux_forwards)),
            ruleset: Arc::new(Ruleset::default()),
            linux_forwards,
        }
    }

    /// A whole view of `tables`, for a Linux that does not forward.
    #[cfg(test)]
    pub fn build(tables: &Tables, ports: &[PortInfo]) -> View {
        View::empty(ports, false).rebuild(tables, ports, Parts::ALL)
    }

    /// The view after a change of `parts` of `tables`: the other part is
    /// this view's, shared.
    pub fn rebuild(&self, tables: &Tables, ports: &[PortInfo], parts: Parts) -> View {
        View {
            routing: match parts.routing {
                true => Arc::new(Routing::build(tables, ports)),
                false => self.routing.clone(),
            },
            conntracks: match parts.flows {
                true => Arc::new(FlowTable::build(tables.conntracks())),
                false => self.conntracks.clone(),
            },
            gates: match parts.gates {
                true => Arc::new(PortGates::build(tables, ports, self.linux_forwards)),
                false => self.gates.clone(),
            },
            ruleset: match parts.gates {
                true => Arc::new(Ruleset::build(tables)),
                false => self.ruleset.clone(),
            },
            linux_forwards: self.linux_forwards,
        }
    }

    /// Whether `other` shares this view's routing part (no copy was made).
    pub fn shares_routing(&self, other: &View) -> bool {
        Arc::ptr_eq(&self.routing, &other.routing)
    }

    /// Sets the hit flags of what was used in `old`, the view this one
    /// replaced, once no worker holds `old`: a rebuild between two reports
    /// loses no hit. A shared part has the same flags already.
    pub fn carry_hits_from(&self, old: &View) {
        if !self.shares_routing(old) {
            self.routing.carry_hits_from(&old.routing);
        }
        if !Arc::ptr_eq(&self.conntracks, &old.conntracks) {
            self.conntracks.carry_hits_from(&old.conntracks);
        }
    }

    /// Appends every neighbour and conntrack entry used since the last
    /// call, and clears its flag.
    pub fn take_hits(&self, out: &mut Vec<Hit>) {
        self.routing.take_hits(out);
        self.conntracks.take_hits(out);
    }
}

impl Routing {
    fn empty(ports: &[PortInfo]) -> Routing {
        let h = PrefixHash::new();
        Routing {
            ports: ports.iter().map(port_view).collect(),
            fib: None,
            nexthops: HashMap::with_hasher(h.clone()),
            neigh4: HashMap::with_hasher(h.clone()),
            neigh6: HashMap::with_hasher(h.clone()),
            local4: HashSet::with_hasher(h.clone()),
            local6: HashSet::with_hasher(h),
            rules4: RuleList::build(AF_INET, std::iter::empty(), &[]),
            rules6: RuleList::build(AF_INET6, std::iter::empty(), &[]),
        }
    }

    fn build(tables: &Tables, ports: &[PortInfo]) -> Routing {
        let mut v = Routing::empty(ports);
        v.fib = Some(tables.fib_snapshot());
        let links: Vec<_> = tables.links().collect();
        v.rules4 = RuleList::build(AF_INET, tables.rules(), &links);
        v.rules6 = RuleList::build(AF_INET6, tables.rules(), &links);
        for (view, info) in v.ports.iter_mut().zip(ports) {
            if let Some(l) = tables.links().find(|l| l.ifindex == info.ifindex) {
                if let Ok(mac) = <Mac>::try_from(&l.mac[..]) {
                    view.mac = mac;
                }
                view.mtu = l.mtu;
                // Up and with carrier: without it, Linux keeps IPv4
                // routes through the port (flagged linkdown) unless told
                // to ignore them, and fpd cannot tell which.
                view.up = l.flags & IFF_UP != 0 && l.flags & IFF_LOWER_UP != 0;
                view.ifname = crate::dataplane::netfilter::ifname(&l.name);
            }
            view.tc = tables.qdiscs().any(|q| q.ifindex == info.ifindex);
        }
        for n in tables.nexthops() {
            v.nexthops.insert(n.id, n.clone());
        }
        for n in tables.neighs() {
            let Ok(mac) = <Mac>::try_from(&n.lladdr[..]) else {
                continue;
            };
            if n.state & NUD_USABLE == 0 {
                continue;
            }
            let entry = NeighEntry {
                mac,
                hit: AtomicBool::new(false),
            };
            match n.dst {
                IpAddr::V4(a) => v.neigh4.insert((n.ifindex, a.into()), entry),
                IpAddr::V6(a) => v.neigh6.insert((n.ifindex, a.into()), entry),
            };
        }
        for a in tables.addrs() {
            match a.addr {
                IpAddr::V4(x) => v.local4.insert(x.into()),
                IpAddr::V6(x) => v.local6.insert(x.into()),
            };
            let Some(port) = v.ports.iter_mut().find(|p| p.ifindex == a.ifindex) else {
                continue;
            };
            match a.addr {
                IpAddr::V4(x) => {
                    port.addr4.get_or_insert(x.into());
                }
                IpAddr::V6(x) => {
                    let x = u128::from(x);
                    let better = port.addr6.is_none_or(|old| {
                        crate::wire::ipv6::is_link_local(old)
                            && !crate::wire::ipv6::is_link_local(x)
                    });
                    if better {
                        port.addr6 = Some(x);
                    }
                }
            }
        }
        v
    }

    /// The port of an interface, if fpd forwards on it.
    #[inline]
    pub fn port_of(&self, ifindex: u32) -> Option<usize> {
        self.ports.iter().position(|p| p.ifindex == ifindex)
    }

    pub fn is_local4(&self, a: u32) -> bool {
        self.local4.contains(&a)
    }

    pub fn is_local6(&self, a: u128) -> bool {
        self.local6.contains(&a)
    }

    /// Where `flow` goes: the policy routing rules in order, each table
    /// lookup by longest match. Allocates nothing, locks nothing.
    pub fn lookup4(&self, flow: &Flow<u32>) -> Lookup<'_> {
        let Some(fib) = &self.fib else {
            return Lookup::NoRoute;
        };
        lookup_of(self.rules4.lookup(flow, |t, dst| fib.lookup4_len(t, dst)))
    }

    pub fn lookup6(&self, flow: &Flow<u128>) -> Lookup<'_> {
        let Some(fib) = &self.fib else {
            return Lookup::NoRoute;
        };
        lookup_of(self.rules6.lookup(flow, |t, dst| fib.lookup6_len(t, dst)))
    }

    /// How many rules each family's lookup walks (IPv4, IPv6).
    #[cfg(test)]
    pub fn rule_counts(&self) -> (usize, usize) {
        (self.rules4.len(), self.rules6.len())
    }

    pub fn nexthop(&self, id: u32) -> Option<&Nexthop> {
        self.nexthops.get(&id)
    }

    /// The usable neighbour `dst` on `ifindex`.
    #[inline]
    pub fn neigh(&self, ifindex: u32, dst: IpAddr) -> Option<&NeighEntry> {
        match dst {
            IpAddr::V4(a) => self.neigh4.get(&(ifindex, a.into())),
            IpAddr::V6(a) => self.neigh6.get(&(ifindex, a.into())),
        }
    }

    /// Sets the hit flags of the neighbours used in `old`.
    fn carry_hits_from(&self, old: &Routing) {
        for (k, e) in &old.neigh4 {
            if let (true, Some(n)) = (e.hit.load(Relaxed), self.neigh4.get(k)) {
                n.mark_hit();
            }
        }
        for (k, e) in &old.neigh6 {
            if let (true, Some(n)) = (e.hit.load(Relaxed), self.neigh6.get(k)) {
                n.mark_hit();
            }
        }
    }

    /// Appends every neighbour used since the last call, and clears its
    /// flag.
    fn take_hits(&self, out: &mut Vec<Hit>) {
        let hits4 = self
            .neigh4
            .iter()
            .filter(|(_, e)| e.hit.swap(false, Relaxed))
            .map(|(&(ifindex, a), _)| Hit::Neigh {
                ifindex,
                dst: IpAddr::V4(a.into()),
            });
        out.extend(hits4);
        let hits6 = self
            .neigh6
            .iter()
            .filter(|(_, e)| e.hit.swap(false, Relaxed))
            .map(|(&(ifindex, a), _)| Hit::Neigh {
                ifindex,
                dst: IpAddr::V6(a.into()),
            });
        out.extend(hits6);
    }

    pub fn neighbours(&self) -> usize {
        self.neigh4.len() + self.neigh6.len()
    }
}

fn lookup_of(v: RuleVerdict<'_>) -> Lookup<'_> {
    match v {
        RuleVerdict::Route(a) if is_local(a) => Lookup::Local,
        RuleVerdict::Route(a) => Lookup::Route(a),
        RuleVerdict::NoRoute => Lookup::NoRoute,
        RuleVerdict::Blackhole => Lookup::Blackhole,
        RuleVerdict::Linux(why) => Lookup::Linux(why),
    }
}

fn is_local(a: &RouteAttrs) -> bool {
    matches!(
        a.rtype,
        rtn::LOCAL | rtn::BROADCAST | rtn::ANYCAST | rtn::MULTICAST
    )
}

fn port_view(p: &PortInfo) -> PortView {
    PortView {
        ifindex: p.ifindex,
        mac: p.mac,
        mtu: p.mtu,
        up: true,
        addr4: None,
        addr6: None,
        ifname: crate::dataplane::netfilter::ifname(&p.name),
        tc: false,
    }
}
