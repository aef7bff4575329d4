//! The fast path tables: links, addresses, nexthop objects, neighbours and
//! one FIB per (table id, family), fed by FPC objects.
//!
//! Invariants:
//! * `for_each` gives back every object exactly as it was last applied
//!   (lossless), once, so that a dump equals what the cache manager sent.
//! * An object is either fresh or stale. `begin_sync` marks every object
//!   stale, any upsert makes one fresh, and only a matching `end_sync`
//!   removes the stale ones (mark and sweep): nothing is flushed before
//!   `SyncEnd`, so traffic keeps its routes during a resync.
//! * A rejected object changes nothing.
//! * Routes are not kept as `Route` values: see [`fib`] and [`attrs`] for
//!   the compact form (a 16-byte hash bucket and a control byte per IPv4
//!   route, 28 and one per IPv6 route; with hash map slack, about 36 bytes
//!   resident a route for 1M IPv4 + 200k IPv6 routes, as
//!   `examples/route_memory.rs` and `tests/fpd_memory.rs` measure). This
//!   holds while routes share few distinct attribute sets, as they do.
//! * Every other object is keyed by what `Object::key` (the kinds table)
//!   says: the `ObjectKey` itself, or the one value it holds (an ifindex,
//!   a nexthop id, an SP or conntrack key, ...); nothing here re-derives a
//!   key. The kinds the dataplane reads have typed maps; every other kind
//!   goes to one generic store, so a new kind the dataplane ignores needs
//!   no edit here.

mod attrs;
mod fib;
mod fibs;
mod map;

pub(crate) use fibs::FibSnapshot;
use fibs::{max_prefix_len, Fibs};
use map::ObjectMap;

use std::collections::BTreeMap;
use std::net::IpAddr;

use attrs::AttrTable;
pub(crate) use attrs::RouteAttrs;
use common::hash::PrefixHash;
use fib::{PrefixKey, V4, V6};
use fpc::{
    Addr, Conntrack, CtKey, Link, Neigh, NetConf, NetConfKey, Nexthop, NftChain, NftRule, NftSet,
    NftSetElem, NftSetElemKey, NftTable, Object, ObjectError, ObjectKey, ObjectKind, Op, Qdisc,
    Route, Rule, RuleKey, SpKey, XfrmSp, XtChain, XtRule,
};

/// The kinds fpd keeps without reading them in its dataplane (Linux does
/// what needs them: bridging, IPsec, multicast, capture) go to one generic
/// store by `ObjectKey` (`Tables::stored`): every kind without a typed map
/// here, so a new kind the dataplane does not read needs no edit in this
/// module. Those with a counter of their own name before generic
/// counters existed; any other stored kind is counted under its kind's
/// name.
const COUNTED: [ObjectKind; 7] = [
    ObjectKind::BridgePort,
    ObjectKind::Fdb,
    ObjectKind::XfrmSa,
    ObjectKind::XfrmReplay,
    ObjectKind::Mroute,
    ObjectKind::MrouteVif,
    ObjectKind::CaptureFilter,
];

fn check_addr(a: &Addr) -> Result<(), ObjectError> {
    let valid = a.ifindex != 0
        && a.prefix_len <= max_prefix_len(&a.addr)
        && a.peer.is_none_or(|p| p.is_ipv4() == a.addr.is_ipv4());
    valid.then_some(()).ok_or(ObjectError::Invalid)
}

fn check_nexthop(n: &Nexthop) -> Result<(), ObjectError> {
    let valid = n.id != 0 && n.group.iter().all(|&(id, _)| id != 0 && id != n.id);
    valid.then_some(()).ok_or(ObjectError::Invalid)
}

/// The fast path tables of one blade. A clone is a snapshot, as a dump
/// takes one (the interned route attributes are shared).
#[derive(Clone)]
pub struct Tables {
    links: ObjectMap<u32, Link>,
    addrs: ObjectMap<ObjectKey, Addr>,
    nexthops: ObjectMap<u32, Nexthop>,
    neighs: ObjectMap<ObjectKey, Neigh>,
    sps: ObjectMap<SpKey, XfrmSp>,
    conntracks: ObjectMap<CtKey, Conntrack>,
    nft_tables: ObjectMap<ObjectKey, NftTable>,
    nft_chains: ObjectMap<ObjectKey, NftChain>,
    nft_rules: ObjectMap<ObjectKey, NftRule>,
    nft_sets: ObjectMap<ObjectKey, NftSet>,
    nft_elems: ObjectMap<NftSetElemKey, NftSetElem>,
    /// The ports' queueing disciplines, by (ifindex, handle).
    qdiscs: ObjectMap<ObjectKey, Qdisc>,
    /// Legacy x_tables chains and rules, by (family, table, chain[, position]).
    xt_chains: ObjectMap<ObjectKey, XtChain>,
    xt_rules: ObjectMap<ObjectKey, Box<XtRule>>,
    /// Per-device IP settings (forwarding, rp_filter, ...), by (family,
    /// ifindex), `all` and `default` included.
    netconfs: ObjectMap<NetConfKey, NetConf>,
    /// Policy routing rules, by (content, copy).
    rules: ObjectMap<RuleKey, Box<Rule>>,
    /// The kinds the dataplane does not read (see [`COUNTED`]: bridge ports,
    /// FDB, IPsec SAs and their sequence numbers, multicast routes and
    /// VIFs, capture filters), kept for dumps and counters by their
    /// `ObjectKey`, one map per kind.
    stored: BTreeMap<ObjectKind, ObjectMap<ObjectKey, Object>>,
    routes4: Fibs<V4>,
    routes6: Fibs<V6>,
    attrs: AttrTable,
    hasher: PrefixHash,
    /// The generation of the sync in progress, between SyncBegin and SyncEnd.
    syncing: Option<u64>,
    generation: u64,
    syncs: u64,
    swept: u64,
    rejected: u64,
}

impl Default for Tables {
    fn default() -> Self {
        Self::new()
    }
}

impl Tables {
    pub fn new() -> Self {
        Tables {
            links: ObjectMap::new(),
            addrs: ObjectMap::new(),
            nexthops: ObjectMap::new(),
            neighs: ObjectMap::new(),
            sps: ObjectMap::new(),
            conntracks: ObjectMap::new(),
            nft_tables: ObjectMap::new(),
            nft_chains: ObjectMap::new(),
            nft_rules: ObjectMap::new(),
            nft_sets: ObjectMap::new(),
            nft_elems: ObjectMap::new(),
            qdiscs: ObjectMap::new(),
            xt_chains: ObjectMap::new(),
            xt_rules: ObjectMap::new(),
            netconfs: ObjectMap::new(),
            rules: ObjectMap::new(),
            stored: BTreeMap::new(),
            routes4: Fibs::new(),
            routes6: Fibs::new(),
            attrs: AttrTable::default(),
            hasher: PrefixHash::new(),
            syncing: None,
            generation: 0,
            syncs: 0,
            swept: 0,
            rejected: 0,
        }
    }

    /// Applies one object. Add and Replace both insert or replace, so a
    /// replay is idempotent; a Delete of a missing key is `NotFound`; an
    /// object the fast path cannot hold (host bits in a prefix, a prefix
    /// length beyond the family's, ifindex 0, ...) is `Invalid`. Every
    /// upsert refreshes the object for the sync in progress.
    pub fn apply(&mut self, op: Op, obj: Object) -> Result<(), ObjectError> {
        let result = match obj {
            Object::Route(r) => self.route_inner(op, r),
            obj => self.apply_inner(op, obj),
        };
        if result.is_err() {
            self.rejected += 1;
        }
        result
    }

    /// [`Self::apply`] of a route, without an `Object` around it.
    pub fn apply_route(&mut self, op: Op, r: Route) -> Result<(), ObjectError> {
        let result = self.route_inner(op, r);
        if result.is_err() {
            self.rejected += 1;
        }
        result
    }

    fn route_inner(&mut self, op: Op, r: Route) -> Result<(), ObjectError> {
        match r.dst {
            IpAddr::V4(_) => self.routes4.apply(&mut self.attrs, &self.hasher, op, r),
            IpAddr::V6(_) => self.routes6.apply(&mut self.attrs, &self.hasher, op, r),
        }
    }

    /// Every kind but routes (applied by `route_inner`).
    fn apply_inner(&mut self, op: Op, obj: Object) -> Result<(), ObjectError> {
        // Keys come from the kinds table's `ObjectKey` (routes keep their
        // own compact form in `fib`).
        let key = obj.key();
        match obj {
            Object::Link(l) => {
                if l.ifindex == 0 {
                    return Err(ObjectError::Invalid);
                }
                self.links.apply(op, l.ifindex, l)
            }
            Object::Addr(a) => {
                check_addr(&a)?;
                self.addrs.apply(op, key, a)
            }
            Object::Nexthop(n) => {
                if op != Op::Delete {
                    check_nexthop(&n)?;
                }
                self.nexthops.apply(op, n.id, n)
            }
            Object::Neigh(n) => {
                if n.ifindex == 0 {
                    return Err(ObjectError::Invalid);
                }
                self.neighs.apply(op, key, n)
            }
            Object::Route(r) => self.route_inner(op, r),
            Object::BridgePort(p) => {
                if p.ifindex == 0 || p.master == 0 {
                    return Err(ObjectError::Invalid);
                }
                self.store(op, Object::BridgePort(p))
            }
            Object::Fdb(e) => {
                if e.ifindex == 0 || e.mac.len() != 6 {
                    return Err(ObjectError::Invalid);
                }
                self.store(op, Object::Fdb(e))
            }
            Object::XfrmSa(sa) => {
                if op != Op::Delete && (sa.daddr.is_ipv4() != sa.saddr.is_ipv4() || sa.proto == 0) {
                    return Err(ObjectError::Invalid);
                }
                self.store(op, Object::XfrmSa(sa))
            }
            Object::XfrmSp(sp) => self.sps.apply(op, sp.key(), sp),
            Object::Conntrack(ct) => {
                if ct.orig.src.is_ipv4() != ct.orig.dst.is_ipv4() {
                    return Err(ObjectError::Invalid);
                }
                self.conntracks.apply(op, ct.key(), ct)
            }
            Object::NftTable(t) => self.nft_tables.apply(op, key, t),
            Object::NftChain(c) => self.nft_chains.apply(op, key, c),
            Object::NftRule(r) => self.nft_rules.apply(op, key, r),
            Object::NftSet(t) => self.nft_sets.apply(op, key, t),
            Object::NftSetElem(e) => self.nft_elems.apply(op, e.key(), e),
            Object::Qdisc(q) => {
                if op != Op::Delete && q.ifindex == 0 {
                    return Err(ObjectError::Invalid);
                }
                self.qdiscs.apply(op, key, q)
            }
            Object::Mroute(m) => {
                if m.source.is_ipv4() != m.group.is_ipv4() {
                    return Err(ObjectError::Invalid);
                }
                self.store(op, Object::Mroute(m))
            }
            Object::MrouteVif(v) => {
                if op != Op::Delete && !v.is_valid() {
                    return Err(ObjectError::Invalid);
                }
                self.store(op, Object::MrouteVif(v))
            }
            Object::CaptureFilter(c) => {
                if op != Op::Delete && !c.program.len().is_multiple_of(8) {
                    return Err(ObjectError::Invalid);
                }
                self.store(op, Object::CaptureFilter(c))
            }
            Object::XtChain(c) => self.xt_chains.apply(op, key, c),
            Object::XtRule(r) => self.xt_rules.apply(op, key, r),
            Object::NetConf(c) => {
                if op != Op::Delete && !c.is_valid() {
                    return Err(ObjectError::Invalid);
                }
                self.netconfs.apply(op, c.key(), c)
            }
            Object::Rule(r) => {
                if op != Op::Delete && !r.is_valid() {
                    return Err(ObjectError::Invalid);
                }
                self.rules.apply(op, r.key(), r)
            }
            // Kept, not read: the generic store.
            obj => self.store(op, obj),
        }
    }

    /// The route of `table` that `addr` takes: the longest matching prefix,
    /// and among its routes of tos 0 the one of lowest priority (metric).
    pub fn longest_match(&self, table: u32, addr: IpAddr) -> Option<Route> {
        match addr {
            IpAddr::V4(_) => self
                .routes4
                .longest_match(&self.attrs, table, V4::from_ip(addr)?),
            IpAddr::V6(_) => self
                .routes6
                .longest_match(&self.attrs, table, V6::from_ip(addr)?),
        }
    }

    /// A copy of the routes for the dataplane.
    pub(crate) fn fib_snapshot(&self) -> FibSnapshot {
        FibSnapshot {
            routes4: self.routes4.clone(),
            routes6: self.routes6.clone(),
            attrs: self.attrs.clone(),
        }
    }

    pub(crate) fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    pub(crate) fn addrs(&self) -> impl Iterator<Item = &Addr> {
        self.addrs.values()
    }

    pub(crate) fn nexthops(&self) -> impl Iterator<Item = &Nexthop> {
        self.nexthops.values()
    }

    pub(crate) fn neighs(&self) -> impl Iterator<Item = &Neigh> {
        self.neighs.values()
    }

    pub(crate) fn conntracks(&self) -> impl Iterator<Item = &Conntrack> {
        self.conntracks.values()
    }

    /// The nf_tables tables, chains and rules, in no order (the
    /// netfilter evaluator orders them).
    pub(crate) fn nft_tables(&self) -> impl Iterator<Item = &NftTable> {
        self.nft_tables.values()
    }

    pub(crate) fn nft_chains(&self) -> impl Iterator<Item = &NftChain> {
        self.nft_chains.values()
    }

    pub(crate) fn nft_rules(&self) -> impl Iterator<Item = &NftRule> {
        self.nft_rules.values()
    }

    pub(crate) fn nft_sets(&self) -> impl Iterator<Item = &NftSet> {
        self.nft_sets.values()
    }

    pub(crate) fn nft_elems(&self) -> impl Iterator<Item = &NftSetElem> {
        self.nft_elems.values()
    }

    pub(crate) fn qdiscs(&self) -> impl Iterator<Item = &Qdisc> {
        self.qdiscs.values()
    }

    /// The legacy x_tables chains and rules, in no order.
    pub(crate) fn xt_chains(&self) -> impl Iterator<Item = &XtChain> {
        self.xt_chains.values()
    }

    pub(crate) fn xt_rules(&self) -> impl Iterator<Item = &XtRule> {
        self.xt_rules.values().map(|r| &**r)
    }

    pub(crate) fn xfrm_policies(&self) -> impl Iterator<Item = &XfrmSp> {
        self.sps.values()
    }

    /// Every device's IP settings, and `all`'s and `default`'s, of both
    /// families.
    pub fn netconfs(&self) -> impl Iterator<Item = &NetConf> {
        self.netconfs.values()
    }

    /// The policy routing rules, in no particular order.
    pub(crate) fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values().map(|r| &**r)
    }

    /// Starts a full resync: every object is stale until applied again.
    /// Applies an object of a kind without a typed map, by its `ObjectKey`.
    fn store(&mut self, op: Op, obj: Object) -> Result<(), ObjectError> {
        let map = self.stored.entry(obj.kind()).or_insert_with(ObjectMap::new);
        map.apply(op, obj.key(), obj)
    }

    fn stored_len(&self, kind: ObjectKind) -> u64 {
        self.stored.get(&kind).map_or(0, |m| m.len() as u64)
    }

    fn each_stored(&self, kind: ObjectKind, f: &mut impl FnMut(Object)) {
        if let Some(map) = self.stored.get(&kind) {
            map.values().for_each(|o| f(o.clone()));
        }
    }

    pub fn begin_sync(&mut self, generation: u64) {
        if let Some(previous) = self.syncing {
            tracing::info!(previous, generation, "sync restarted before it ended");
        }
        self.links.mark_stale();
        self.addrs.mark_stale();
        self.nexthops.mark_stale();
        self.neighs.mark_stale();
        self.sps.mark_stale();
        self.conntracks.mark_stale();
        self.nft_tables.mark_stale();
        self.nft_chains.mark_stale();
        self.nft_rules.mark_stale();
        self.nft_sets.mark_stale();
        self.nft_elems.mark_stale();
        self.qdiscs.mark_stale();
        self.stored.values_mut().for_each(ObjectMap::mark_stale);
        self.xt_chains.mark_stale();
        self.xt_rules.mark_stale();
        self.netconfs.mark_stale();
        self.rules.mark_stale();
        self.routes4.mark_stale();
        self.routes6.mark_stale();
        self.syncing = Some(generation);
        self.generation = generation;
    }

    /// Ends the resync begun with the same generation: removes every object
    /// not applied since, and returns how many. A generation that does not
    /// match the last `begin_sync` sweeps nothing.
    pub fn end_sync(&mut self, generation: u64) -> usize {
        match self.syncing {
            Some(g) if g == generation => {}
            Some(expected) => {
                tracing::warn!(
                    expected,
                    generation,
                    "SyncEnd does not match the last SyncBegin: nothing swept"
                );
                return 0;
            }
            None => {
                tracing::warn!(generation, "SyncEnd without SyncBegin: nothing swept");
                return 0;
            }
        }
        let swept = self.links.sweep()
            + self.addrs.sweep()
            + self.nexthops.sweep()
            + self.neighs.sweep()
            + self.sps.sweep()
            + self.conntracks.sweep()
            + self.nft_tables.sweep()
            + self.nft_chains.sweep()
            + self.nft_rules.sweep()
            + self.nft_sets.sweep()
            + self.nft_elems.sweep()
            + self.qdiscs.sweep()
            + self
                .stored
                .values_mut()
                .map(ObjectMap::sweep)
                .sum::<usize>()
            + self.xt_chains.sweep()
            + self.xt_rules.sweep()
            + self.netconfs.sweep()
            + self.rules.sweep()
            + self.routes4.sweep(&mut self.attrs)
            + self.routes6.sweep(&mut self.attrs);
        self.syncing = None;
        self.syncs += 1;
        self.swept += swept as u64;
        swept
    }

    /// Every object, in replay order (the kinds table's, single nexthops
    /// before groups, IPv4 routes before IPv6).
    pub fn for_each(&self, mut f: impl FnMut(Object)) {
        for kind in ObjectKind::ALL {
            self.each_of(kind, &mut f);
        }
    }

    /// Every object of one kind.
    fn each_of(&self, kind: ObjectKind, f: &mut impl FnMut(Object)) {
        match kind {
            ObjectKind::Link => self.links.values().for_each(|l| f(Object::Link(l.clone()))),
            ObjectKind::NetConf => self
                .netconfs
                .values()
                .for_each(|c| f(Object::NetConf(c.clone()))),
            ObjectKind::Addr => self.addrs.values().for_each(|a| f(Object::Addr(a.clone()))),
            ObjectKind::Nexthop => {
                for groups in [false, true] {
                    self.nexthops
                        .values()
                        .filter(|n| n.group.is_empty() != groups)
                        .for_each(|n| f(Object::Nexthop(n.clone())));
                }
            }
            ObjectKind::Route => {
                self.routes4.for_each(&self.attrs, &mut *f);
                self.routes6.for_each(&self.attrs, &mut *f);
            }
            ObjectKind::Rule => self.rules.values().for_each(|r| f(Object::Rule(r.clone()))),
            ObjectKind::Neigh => self
                .neighs
                .values()
                .for_each(|n| f(Object::Neigh(n.clone()))),
            ObjectKind::XfrmSp => self.sps.values().for_each(|s| f(Object::XfrmSp(s.clone()))),
            ObjectKind::Conntrack => self
                .conntracks
                .values()
                .for_each(|c| f(Object::Conntrack(c.clone()))),
            ObjectKind::NftTable => self
                .nft_tables
                .values()
                .for_each(|t| f(Object::NftTable(t.clone()))),
            ObjectKind::NftChain => self
                .nft_chains
                .values()
                .for_each(|c| f(Object::NftChain(c.clone()))),
            ObjectKind::NftSet => self
                .nft_sets
                .values()
                .for_each(|t| f(Object::NftSet(t.clone()))),
            ObjectKind::NftSetElem => self
                .nft_elems
                .values()
                .for_each(|e| f(Object::NftSetElem(e.clone()))),
            ObjectKind::NftRule => self
                .nft_rules
                .values()
                .for_each(|r| f(Object::NftRule(r.clone()))),
            ObjectKind::XtChain => self
                .xt_chains
                .values()
                .for_each(|c| f(Object::XtChain(c.clone()))),
            ObjectKind::XtRule => self
                .xt_rules
                .values()
                .for_each(|r| f(Object::XtRule(r.clone()))),
            ObjectKind::Qdisc => self
                .qdiscs
                .values()
                .for_each(|q| f(Object::Qdisc(q.clone()))),
            _ => self.each_stored(kind, f),
        }
    }

    /// How many objects of each kind, and the sync history.
    pub fn counters(&self) -> Vec<(String, u64)> {
        [
            ("links", self.links.len() as u64),
            ("addresses", self.addrs.len() as u64),
            ("routes4", self.routes4.routes as u64),
            ("routes6", self.routes6.routes as u64),
            ("nexthops", self.nexthops.len() as u64),
            ("neighbours", self.neighs.len() as u64),
            ("bridge_ports", self.stored_len(ObjectKind::BridgePort)),
            ("fdb", self.stored_len(ObjectKind::Fdb)),
            ("ipsec_sas", self.stored_len(ObjectKind::XfrmSa)),
            ("ipsec_sps", self.sps.len() as u64),
            ("ipsec_replays", self.stored_len(ObjectKind::XfrmReplay)),
            ("conntracks", self.conntracks.len() as u64),
            ("nft_tables", self.nft_tables.len() as u64),
            ("nft_chains", self.nft_chains.len() as u64),
            ("nft_rules", self.nft_rules.len() as u64),
            ("nft_sets", self.nft_sets.len() as u64),
            ("nft_set_elements", self.nft_elems.len() as u64),
            ("qdiscs", self.qdiscs.len() as u64),
            ("mroutes", self.stored_len(ObjectKind::Mroute)),
            ("mroute_vifs", self.stored_len(ObjectKind::MrouteVif)),
            (
                "capture_filters",
                self.stored_len(ObjectKind::CaptureFilter),
            ),
            ("xt_chains", self.xt_chains.len() as u64),
            ("xt_rules", self.xt_rules.len() as u64),
            ("netconfs", self.netconfs.len() as u64),
            ("rules", self.rules.len() as u64),
            ("route_attrs", self.attrs.len() as u64),
            ("generation", self.generation),
            ("syncs", self.syncs),
            ("swept", self.swept),
            ("rejected", self.rejected),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(
            self.stored
                .iter()
                .filter(|(k, _)| !COUNTED.contains(k))
                .map(|(k, m)| (k.name().replace(' ', "_"), m.len() as u64)),
        )
        .collect()
    }

    /// The number of objects of every kind.
    pub fn len(&self) -> usize {
        self.links.len()
            + self.addrs.len()
            + self.nexthops.len()
            + self.neighs.len()
            + self.sps.len()
            + self.conntracks.len()
            + self.nft_tables.len()
            + self.nft_chains.len()
            + self.nft_rules.len()
            + self.nft_sets.len()
            + self.nft_elems.len()
            + self.qdiscs.len()
            + self.stored.values().map(ObjectMap::len).sum::<usize>()
            + self.xt_chains.len()
            + self.xt_rules.len()
            + self.netconfs.len()
            + self.rules.len()
            + self.routes4.routes
            + self.routes6.routes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.counters().iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

#[cfg(test)]
mod tests;
