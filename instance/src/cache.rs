//! What cmgrd knows of Linux: every synced object, by kind and key.
//!
//! Invariants: the cache holds exactly what the blades were told (every
//! change returns the op that tells them); an object equal to the cached
//! one yields no op, so dumps and resyncs only send what changed; replay
//! order is links, their IP settings (netconf), addresses, nexthops
//! (single before groups), routes, policy routing rules, neighbours,
//! bridge ports, FDB, then IPsec SAs, their replay states and policies,
//! ..., multicast VIFs before MFC entries, so that a reference never
//! precedes what it names.
//!
//! Routes are not kept as `Object`s: [`routes::Routes`] keeps each as its
//! key's bytes and the id of an interned attribute set (about 45 bytes a
//! route against some 500 as a whole `Object` under its `ObjectKey`), and
//! rebuilds them when asked. So [`Cache::get`] and [`Cache::objects`],
//! which lend `&Object`, serve every kind but routes; [`Cache::route`],
//! [`Cache::contains`] and [`Cache::replay`] (which hands out
//! [`Cow`]s) serve routes too.
//!
//! Hashing: the maps of kinds whose keys only the namespace's own
//! administrator makes (routes, links, addresses, ...) hash with
//! fastpath's seeded fold hash ([`common::hash::PrefixHash`]), several times
//! cheaper than SipHash for a million routes; those whose keys a remote
//! peer picks (conntrack entries, neighbours, FDB entries learnt from
//! traffic) keep SipHash's flood resistance. A hand-written `BuildHasher`
//! because std's maps take one hasher type per map.

mod routes;

use std::borrow::Cow;
use std::collections::hash_map::{DefaultHasher, Entry, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use fpc::{Hop, NextHops, Object, ObjectKey, ObjectKind, Op, Route, RouteKey, AF_INET6};

/// Which part of the cache a dump covers, for mark-and-sweep: a kind, or
/// one address family of a kind split by family
/// ([`ObjectKind::families`]). Every scope and its replay order come from
/// the kinds table, so a new kind needs nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: ObjectKind,
    /// 0 for a kind taken whole, else AF_INET or AF_INET6.
    pub family: u8,
}

/// How many scopes there are: one per family of every kind.
const SCOPES: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < ObjectKind::ALL.len() {
        n += ObjectKind::ALL[i].families().len();
        i += 1;
    }
    n
};

impl Scope {
    /// Every scope, in replay order (the kinds table's, IPv4 before IPv6).
    pub const ALL: [Scope; SCOPES] = {
        let mut all = [Scope::whole(ObjectKind::Link); SCOPES];
        let (mut i, mut n) = (0, 0);
        while i < ObjectKind::ALL.len() {
            let kind = ObjectKind::ALL[i];
            let families = kind.families();
            let mut f = 0;
            while f < families.len() {
                all[n] = Scope::new(kind, families[f]);
                n += 1;
                f += 1;
            }
            i += 1;
        }
        all
    };

    /// A kind taken whole.
    pub const fn whole(kind: ObjectKind) -> Scope {
        Scope { kind, family: 0 }
    }

    /// One family of a kind split by family.
    pub const fn new(kind: ObjectKind, family: u8) -> Scope {
        Scope { kind, family }
    }

    pub fn of(obj: &Object) -> Scope {
        Scope::new(obj.kind(), obj.family())
    }

    fn contains(self, obj: &Object) -> bool {
        Scope::of(obj) == self
    }
}

/// One map per wire kind number, 1 to the highest (numbers may have gaps).
const SLOTS: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < ObjectKind::ALL.len() {
        if ObjectKind::ALL[i] as usize > max {
            max = ObjectKind::ALL[i] as usize;
        }
        i += 1;
    }
    max
};

/// A map's hasher (see the module's header).
#[derive(Clone)]
enum KeyHash {
    Fold(common::hash::PrefixHash),
    Sip(RandomState),
}

impl KeyHash {
    fn of(kind: ObjectKind) -> Self {
        match kind {
            ObjectKind::Conntrack | ObjectKind::Neigh | ObjectKind::Fdb => {
                KeyHash::Sip(RandomState::new())
            }
            _ => KeyHash::Fold(common::hash::PrefixHash::new()),
        }
    }
}

enum KeyHasher {
    Fold(common::hash::FoldHasher),
    Sip(DefaultHasher),
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        match self {
            KeyHash::Fold(f) => KeyHasher::Fold(f.build_hasher()),
            KeyHash::Sip(s) => KeyHasher::Sip(s.build_hasher()),
        }
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        match self {
            KeyHasher::Fold(h) => h.write(bytes),
            KeyHasher::Sip(h) => h.write(bytes),
        }
    }
    fn write_u8(&mut self, v: u8) {
        match self {
            KeyHasher::Fold(h) => h.write_u8(v),
            KeyHasher::Sip(h) => h.write_u8(v),
        }
    }
    fn write_u32(&mut self, v: u32) {
        match self {
            KeyHasher::Fold(h) => h.write_u32(v),
            KeyHasher::Sip(h) => h.write_u32(v),
        }
    }
    fn write_u64(&mut self, v: u64) {
        match self {
            KeyHasher::Fold(h) => h.write_u64(v),
            KeyHasher::Sip(h) => h.write_u64(v),
        }
    }
    fn write_usize(&mut self, v: usize) {
        match self {
            KeyHasher::Fold(h) => h.write_usize(v),
            KeyHasher::Sip(h) => h.write_usize(v),
        }
    }
    fn finish(&self) -> u64 {
        match self {
            KeyHasher::Fold(h) => h.finish(),
            KeyHasher::Sip(h) => h.finish(),
        }
    }
}

type Map = HashMap<ObjectKey, Object, KeyHash>;

pub struct Cache {
    /// Every kind's map but routes' (empty: see `routes`).
    maps: [Map; SLOTS],
    routes: routes::Routes,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            maps: std::array::from_fn(|i| {
                let kind = ObjectKind::ALL
                    .iter()
                    .copied()
                    .find(|k| slot(*k) == i)
                    .unwrap_or(ObjectKind::Link);
                HashMap::with_hasher(KeyHash::of(kind))
            }),
            routes: routes::Routes::default(),
        }
    }
}

fn slot(kind: ObjectKind) -> usize {
    kind as usize - 1
}

impl Cache {
    /// The cached object of `key`, of any kind but routes (which are not
    /// kept as `Object`s: see [`Cache::route`], [`Cache::contains`]).
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        debug_assert!(!matches!(key, ObjectKey::Route(_)), "Cache::get of a route");
        self.maps[slot(key.kind())].get(key)
    }

    /// The cached route of `key`, rebuilt.
    pub fn route(&self, key: &RouteKey) -> Option<Route> {
        self.routes.get(key)
    }

    /// Whether an object of `key` (of any kind) is cached.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        match key {
            ObjectKey::Route(k) => self.routes.contains(k),
            _ => self.maps[slot(key.kind())].contains_key(key),
        }
    }

    /// Inserts or refreshes `obj`; the op to send, or None if unchanged.
    pub fn upsert(&mut self, obj: Object) -> Option<(Op, Object)> {
        let obj = match obj {
            Object::Route(r) => return route_op(self.routes.upsert(r)),
            obj => obj,
        };
        let map = &mut self.maps[slot(obj.kind())];
        match map.entry(obj.key()) {
            Entry::Occupied(o) if *o.get() == obj => None,
            Entry::Occupied(mut o) => {
                *o.get_mut() = obj.clone();
                Some((Op::Replace, obj))
            }
            Entry::Vacant(v) => {
                v.insert(obj.clone());
                Some((Op::Add, obj))
            }
        }
    }

    /// Removes `key`; the delete op to send, or None if it was not cached.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<(Op, Object)> {
        if let ObjectKey::Route(k) = key {
            return self
                .routes
                .remove(k)
                .map(|r| (Op::Delete, Object::Route(r)));
        }
        self.maps[slot(key.kind())]
            .remove(key)
            .map(|o| (Op::Delete, o))
    }

    /// Applies an RTM_DELROUTE. For an IPv6 multipath route, a message that
    /// names only some of its hops removes those hops (the route stays,
    /// single-hop when one is left); otherwise the route goes. An IPv6
    /// deletion that names none of the cached route's hops is left alone:
    /// it is of a version the cache no longer holds (a re-dump, run while
    /// the message waited in the listener's queue, already has the route
    /// without that hop).
    pub fn remove_route(&mut self, gone: Route) -> Option<(Op, Object)> {
        let key = ObjectKey::Route(gone.key());
        let cached = match gone.dst.is_ipv6() {
            true => self.routes.get(&gone.key()),
            false => None,
        };
        if let Some(cached) = &cached {
            let removed: Vec<&Hop> = match &gone.nexthops {
                NextHops::Single(h) => vec![h],
                NextHops::Multipath(hs) => hs.iter().collect(),
                _ => Vec::new(),
            };
            let same = |a: &Hop, b: &Hop| a.gateway == b.gateway && a.oif == b.oif;
            let cached_hops: &[Hop] = match &cached.nexthops {
                NextHops::Single(h) => std::slice::from_ref(h),
                NextHops::Multipath(hs) => hs,
                _ => &[],
            };
            if !removed.is_empty()
                && !cached_hops.is_empty()
                && !cached_hops
                    .iter()
                    .any(|h| removed.iter().any(|r| same(h, r)))
            {
                return None;
            }
            if let NextHops::Multipath(hops) = &cached.nexthops {
                let left: Vec<Hop> = hops
                    .iter()
                    .filter(|h| !removed.iter().any(|r| same(h, r)))
                    .cloned()
                    .collect();
                if !removed.is_empty() && !left.is_empty() && left.len() < hops.len() {
                    let mut route = cached.clone();
                    route.nexthops = match <[Hop; 1]>::try_from(left) {
                        Ok([mut single]) => {
                            single.weight = 1; // a lone IPv6 hop carries no weight
                            NextHops::Single(single)
                        }
                        Err(left) => NextHops::Multipath(left),
                    };
                    return self.upsert(Object::Route(route));
                }
            }
        }
        self.remove(&key)
    }

    pub fn len(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Route => self.routes.len(),
            _ => self.maps[slot(kind)].len(),
        }
    }

    /// How many objects there are, every kind (what [`Cache::replay`]
    /// yields, without rebuilding the routes to count them).
    pub fn total(&self) -> usize {
        self.routes.len() + self.maps.iter().map(Map::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.maps.iter().all(Map::is_empty)
    }

    /// Every object, in the order a full sync sends them (bridge ports and FDB entries after
    /// the links they name); routes rebuilt (owned), the rest lent.
    pub fn in_sync_order(&self) -> impl Iterator<Item = Cow<'_, Object>> {
        let (single, groups): (Vec<&Object>, Vec<&Object>) = self.maps[slot(ObjectKind::Nexthop)]
            .values()
            .partition(|o| matches!(o, Object::Nexthop(n) if n.group.is_empty()));
        let before = self.maps[slot(ObjectKind::Link)]
            .values()
            .chain(self.maps[slot(ObjectKind::NetConf)].values())
            .chain(self.maps[slot(ObjectKind::Addr)].values())
            .chain(single)
            .chain(groups)
            .map(Cow::Borrowed);
        let routes = self.routes.iter().map(|r| Cow::Owned(Object::Route(r)));
        let after = self.maps[slot(ObjectKind::Rule)]
            .values()
            .chain(self.maps[slot(ObjectKind::Neigh)].values())
            .chain(self.maps[slot(ObjectKind::BridgePort)].values())
            .chain(self.maps[slot(ObjectKind::Fdb)].values())
            .chain(self.maps[slot(ObjectKind::XfrmSa)].values())
            .chain(self.maps[slot(ObjectKind::XfrmReplay)].values())
            .chain(self.maps[slot(ObjectKind::XfrmSp)].values())
            .chain(self.maps[slot(ObjectKind::Conntrack)].values())
            .chain(self.maps[slot(ObjectKind::NftTable)].values())
            .chain(self.maps[slot(ObjectKind::NftChain)].values())
            .chain(self.maps[slot(ObjectKind::NftSet)].values())
            .chain(self.maps[slot(ObjectKind::NftSetElem)].values())
            .chain(self.maps[slot(ObjectKind::NftRule)].values())
            .chain(self.maps[slot(ObjectKind::MrouteVif)].values())
            .chain(self.maps[slot(ObjectKind::Mroute)].values())
            .chain(self.maps[slot(ObjectKind::CaptureFilter)].values())
            .chain(self.maps[slot(ObjectKind::XtChain)].values())
            .chain(self.maps[slot(ObjectKind::XtRule)].values())
            .chain(self.maps[slot(ObjectKind::Qdisc)].values())
            .map(Cow::Borrowed);
        before.chain(routes).chain(after)
    }

    /// The objects of one kind, any but routes (see [`Cache::replay`]).
    pub fn objects(&self, kind: ObjectKind) -> impl Iterator<Item = &Object> {
        debug_assert!(kind != ObjectKind::Route, "Cache::objects of routes");
        self.maps[slot(kind)].values()
    }

    /// Removes every object of `kind` that `gone` selects (a flush);
    /// the delete ops to send.
    pub fn remove_where(
        &mut self,
        kind: ObjectKind,
        gone: impl Fn(&Object) -> bool,
    ) -> Vec<(Op, Object)> {
        if kind == ObjectKind::Route {
            let gone = self
                .routes
                .remove_where(|r| gone(&Object::Route(r.clone())));
            return gone
                .into_iter()
                .map(|r| (Op::Delete, Object::Route(r)))
                .collect();
        }
        let map = &mut self.maps[slot(kind)];
        let keys: Vec<ObjectKey> = map
            .iter()
            .filter(|(_, o)| gone(o))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| map.remove(&k).map(|o| (Op::Delete, o)))
            .collect()
    }

    /// Makes `scope` equal to `fresh` (a complete dump of it): upserts what
    /// is new or changed, removes what the dump no longer has. Returns the
    /// ops, deletions last.
    pub fn reconcile(&mut self, scope: Scope, fresh: Vec<Object>) -> Vec<(Op, Object)> {
        if scope.kind == ObjectKind::Route {
            let family = scope.family;
            let mut ops = Vec::new();
            for obj in fresh {
                match obj {
                    Object::Route(r) if r.family() == family => {
                        ops.extend(route_op(self.routes.upsert_marked(r)));
                    }
                    // Not of this scope (never dumped so): kept out of its sweep.
                    other => ops.extend(self.upsert(other)),
                }
            }
            let gone = self.routes.sweep(family == AF_INET6);
            ops.extend(gone.into_iter().map(|r| (Op::Delete, Object::Route(r))));
            return ops;
        }
        let mut seen = std::collections::HashSet::with_capacity(fresh.len());
        let mut ops = Vec::new();
        for obj in fresh {
            debug_assert!(scope.contains(&obj));
            seen.insert(obj.key());
            ops.extend(self.upsert(obj));
        }
        let map = &mut self.maps[slot(scope.kind)];
        let stale: Vec<ObjectKey> = map
            .iter()
            .filter(|(k, o)| scope.contains(o) && !seen.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            ops.extend(map.remove(&key).map(|o| (Op::Delete, o)));
        }
        ops
    }

    /// Whether some route or nexthop uses interface `ifindex` (directly or
    /// through a nexthop object), or has `prefsrc` as source: the routes
    /// the kernel may delete without telling when that link goes down or
    /// that address goes away.
    pub fn routes_depend_on(&self, ifindex: u32, prefsrc: Option<std::net::IpAddr>) -> bool {
        let nh_map = &self.maps[slot(ObjectKind::Nexthop)];
        let nh_uses = |id: u32| match nh_map.get(&ObjectKey::Nexthop(id)) {
            Some(Object::Nexthop(n)) => {
                n.oif == ifindex
                    || n.group.iter().any(|(m, _)| {
                        matches!(nh_map.get(&ObjectKey::Nexthop(*m)),
                            Some(Object::Nexthop(mn)) if mn.oif == ifindex)
                    })
            }
            _ => false,
        };
        let nexthops_use = nh_map
            .values()
            .any(|o| matches!(o, Object::Nexthop(n) if n.oif == ifindex));
        nexthops_use
            || self.routes.attrs().any(|r| {
                if prefsrc.is_some() && r.prefsrc == prefsrc {
                    return true;
                }
                match &r.nexthops {
                    NextHops::None => false,
                    NextHops::Single(h) => h.oif == ifindex,
                    NextHops::Multipath(hops) => hops.iter().any(|h| h.oif == ifindex),
                    NextHops::Id(id) => nh_uses(*id),
                }
            })
    }

    /// Whether some route uses nexthop `id`, alone or in a group.
    pub fn routes_use_nexthop(&self, id: u32) -> bool {
        let nh_map = &self.maps[slot(ObjectKind::Nexthop)];
        let groups: Vec<u32> = nh_map
            .values()
            .filter_map(|o| match o {
                Object::Nexthop(n) if n.group.iter().any(|(m, _)| *m == id) => Some(n.id),
                _ => None,
            })
            .collect();
        self.routes
            .attrs()
            .any(|r| matches!(r.nexthops, NextHops::Id(n) if n == id || groups.contains(&n)))
    }
}

fn route_op(change: Option<(routes::Change, Route)>) -> Option<(Op, Object)> {
    change.map(|(c, r)| {
        let op = match c {
            routes::Change::Added => Op::Add,
            routes::Change::Replaced => Op::Replace,
        };
        (op, Object::Route(r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpc::{rtn, Route, AF_INET};
    use std::net::IpAddr;

    fn route(dst: &str, len: u8, oif: u32) -> Object {
        Object::Route(Route {
            table: 254,
            dst: dst.parse::<IpAddr>().unwrap(),
            dst_len: len,
            tos: 0,
            priority: 0,
            rtype: rtn::UNICAST,
            protocol: 3,
            scope: 0,
            prefsrc: None,
            mtu: 0,
            nexthops: NextHops::Single(fpc::Hop {
                gateway: None,
                oif,
                weight: 1,
                flags: 0,
            }),
        })
    }

    /// An IPv6 route via a gateway (ECMP-able: keyed without its hop) on
    /// `oif`.
    fn route6_via(gw: &str, oif: u32) -> Route {
        let Object::Route(mut r) = route("2001:db8:11a::", 64, oif) else {
            unreachable!()
        };
        if let NextHops::Single(h) = &mut r.nexthops {
            h.gateway = Some(gw.parse().unwrap());
        }
        r
    }

    #[test]
    fn a_deletion_naming_none_of_a_routes_hops_is_stale() {
        let mut c = Cache::default();
        // A re-dump already left the route on its d1 hop (oif 3) when the
        // deletion of its c1 hop (oif 2), queued before, is applied.
        c.upsert(Object::Route(route6_via("2001:db8:2::4", 3)));
        assert!(c.remove_route(route6_via("2001:db8:1::5", 2)).is_none());
        assert_eq!(c.len(ObjectKind::Route), 1);
        // The deletion of its own hop removes it.
        let (op, _) = c.remove_route(route6_via("2001:db8:2::4", 3)).unwrap();
        assert_eq!((op, c.len(ObjectKind::Route)), (Op::Delete, 0));
    }

    #[test]
    fn upsert_reports_only_changes() {
        let mut c = Cache::default();
        assert_eq!(c.upsert(route("10.0.0.0", 8, 1)).unwrap().0, Op::Add);
        assert!(c.upsert(route("10.0.0.0", 8, 1)).is_none());
        assert_eq!(c.upsert(route("10.0.0.0", 8, 2)).unwrap().0, Op::Replace);
        assert_eq!(c.len(ObjectKind::Route), 1);
        assert!(c.routes_depend_on(2, None));
        assert!(!c.routes_depend_on(1, None));
    }

    #[test]
    fn every_kind_has_its_map_despite_gaps_in_the_numbers() {
        // NetConf is kind 21 while ObjectKind::ALL has fewer entries.
        let mut c = Cache::default();
        let conf = |family, ifindex| {
            Object::NetConf(fpc::NetConf {
                family,
                ifindex,
                forwarding: Some(1),
                rp_filter: None,
                mc_forwarding: None,
                proxy_neigh: None,
                ignore_routes_with_linkdown: None,
            })
        };
        c.upsert(route("10.0.0.0", 8, 1));
        c.upsert(conf(AF_INET, -1));
        c.upsert(conf(AF_INET6, 3));
        assert_eq!(c.len(ObjectKind::NetConf), 2);
        assert!(c.get(&conf(AF_INET6, 3).key()).is_some());
        let ops = c.reconcile(Scope::new(ObjectKind::NetConf, AF_INET6), vec![]);
        assert_eq!(ops.len(), 1, "only the IPv6 one is swept");
        assert_eq!(c.len(ObjectKind::NetConf), 1);
        let order: Vec<ObjectKind> = c.in_sync_order().map(|o| o.kind()).collect();
        assert_eq!(c.total(), order.len());
        assert_eq!(order, vec![ObjectKind::NetConf, ObjectKind::Route]);
    }

    #[test]
    fn reconcile_sweeps_only_its_scope() {
        let mut c = Cache::default();
        c.upsert(route("10.0.0.0", 8, 1));
        c.upsert(route("10.1.0.0", 16, 1));
        c.upsert(route("2001:db8::", 32, 1));
        let ops = c.reconcile(
            Scope::new(ObjectKind::Route, AF_INET),
            vec![route("10.1.0.0", 16, 1)],
        );
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].0, Op::Delete);
        assert_eq!(c.len(ObjectKind::Route), 2, "the IPv6 route stays");
    }
}
