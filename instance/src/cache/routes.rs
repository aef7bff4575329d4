//! cmgrd's compact route store: a route is its key's bytes and the id of an
//! interned attribute set, not a whole `Object`.
//!
//! Invariants:
//! * a route is an entry of the IPv4 or the IPv6 map (by its destination's
//!   address family): a packed key (destination, length, tos, table,
//!   priority; for IPv6 also the id of its interned [`RouteDisc`]) and a
//!   32-bit value, the id of its interned [`Attrs`] (everything else of the
//!   route: type, protocol, scope, preferred source, MTU, next hops);
//! * an interned value exists once, with a count of the entries naming it;
//!   it is freed (its id reused) when the last one goes, so the tables hold
//!   only what some route uses. A full table's routes share a handful of
//!   sets (the same gateway, device, protocol, type);
//! * a route rebuilt from its entry equals, field for field, the route that
//!   was stored: two routes are equal exactly when their keys and their
//!   attribute ids are (so an unchanged route is found without comparing
//!   more than an id);
//! * an IPv6 entry's disc is [`RouteDisc::of`] its attributes, as in
//!   [`Route::key`];
//! * the value's top bit ([`MARK`]) is set only between
//!   [`Routes::upsert_marked`] and [`Routes::sweep`] (a reconcile); an
//!   attribute id is below it (one id per distinct set in use: 2^31 of
//!   them would take over 100 GiB).
//!
//! Memory: an IPv4 entry is 20 bytes (16-byte key, 4-byte id) and an IPv6
//! entry 36, plus hashbrown's control byte, at the load its last doubling
//! left; no allocation per route.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::hash::PrefixHash;
use fpc::{NextHops, Route, RouteDisc, RouteKey};

/// Set on an entry a reconcile has seen (see the module's header).
const MARK: u32 = 1 << 31;

/// Everything of a route but its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attrs {
    pub rtype: u8,
    pub protocol: u8,
    pub scope: u8,
    pub prefsrc: Option<IpAddr>,
    pub mtu: u32,
    pub nexthops: NextHops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key4 {
    dst: u32,
    table: u32,
    priority: u32,
    dst_len: u8,
    tos: u8,
}

impl Hash for Key4 {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(u64::from(self.dst) << 32 | u64::from(self.table));
        h.write_u64(
            u64::from(self.priority) << 16 | u64::from(self.dst_len) << 8 | u64::from(self.tos),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key6 {
    dst: [u8; 16],
    table: u32,
    priority: u32,
    disc: u32,
    dst_len: u8,
    tos: u8,
}

impl Hash for Key6 {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(u128::from_ne_bytes(self.dst));
        h.write_u64(u64::from(self.table) << 32 | u64::from(self.priority));
        h.write_u64(
            u64::from(self.disc) << 16 | u64::from(self.dst_len) << 8 | u64::from(self.tos),
        );
    }
}

/// Values stored once, each with the count of entries naming it.
struct Interner<T> {
    slots: Vec<(Option<T>, u32)>,
    index: HashMap<T, u32, PrefixHash>,
    free: Vec<u32>,
    /// The id last interned: a full table names the same set many times
    /// in a row, and comparing with it is cheaper than hashing.
    last: u32,
}

impl<T: Clone + Eq + Hash> Interner<T> {
    fn new() -> Self {
        Interner {
            slots: Vec::new(),
            index: HashMap::with_hasher(PrefixHash::new()),
            free: Vec::new(),
            last: 0,
        }
    }

    /// The id of `v`, counting one more user; `v` back if it was already
    /// there (None if it was moved in).
    fn intern(&mut self, v: T) -> (u32, Option<T>) {
        let last = self.last as usize;
        if let Some((Some(l), refs)) = self.slots.get_mut(last) {
            if *l == v {
                *refs += 1;
                return (self.last, Some(v));
            }
        }
        if let Some(&id) = self.index.get(&v) {
            self.slots[id as usize].1 += 1;
            self.last = id;
            return (id, Some(v));
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = (Some(v.clone()), 1);
                id
            }
            None => {
                self.slots.push((Some(v.clone()), 1));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(v, id);
        self.last = id;
        (id, None)
    }

    fn find(&self, v: &T) -> Option<u32> {
        self.index.get(v).copied()
    }

    /// The value of a live id. Ids come from [`Interner::intern`] and are
    /// live while an entry names them (the module's invariant).
    fn get(&self, id: u32) -> &T {
        match &self.slots[id as usize].0 {
            Some(v) => v,
            None => unreachable!("route store: interned id {id} named after its release"),
        }
    }

    /// One user fewer; the value goes with the last.
    fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        slot.1 -= 1;
        if slot.1 == 0 {
            if let Some(v) = slot.0.take() {
                self.index.remove(&v);
            }
            self.free.push(id);
        }
    }

    fn live(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|(v, _)| v.as_ref())
    }
}

pub struct Routes {
    v4: HashMap<Key4, u32, PrefixHash>,
    v6: HashMap<Key6, u32, PrefixHash>,
    attrs: Interner<Attrs>,
    discs: Interner<RouteDisc>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            v4: HashMap::with_hasher(PrefixHash::new()),
            v6: HashMap::with_hasher(PrefixHash::new()),
            attrs: Interner::new(),
            discs: Interner::new(),
        }
    }
}

/// Whether an upsert changed anything, and how.
pub enum Change {
    Added,
    Replaced,
}

fn split(r: Route) -> (Attrs, u32, IpAddr, u8, u8, u32) {
    let Route {
        table,
        dst,
        dst_len,
        tos,
        priority,
        rtype,
        protocol,
        scope,
        prefsrc,
        mtu,
        nexthops,
    } = r;
    let attrs = Attrs {
        rtype,
        protocol,
        scope,
        prefsrc,
        mtu,
        nexthops,
    };
    (attrs, table, dst, dst_len, tos, priority)
}

fn build(table: u32, dst: IpAddr, dst_len: u8, tos: u8, priority: u32, a: Attrs) -> Route {
    Route {
        table,
        dst,
        dst_len,
        tos,
        priority,
        rtype: a.rtype,
        protocol: a.protocol,
        scope: a.scope,
        prefsrc: a.prefsrc,
        mtu: a.mtu,
        nexthops: a.nexthops,
    }
}

fn rebuild4(k: &Key4, a: &Attrs) -> Route {
    let dst = IpAddr::V4(Ipv4Addr::from(k.dst));
    build(k.table, dst, k.dst_len, k.tos, k.priority, a.clone())
}

fn rebuild6(k: &Key6, a: &Attrs) -> Route {
    let dst = IpAddr::V6(Ipv6Addr::from(k.dst));
    build(k.table, dst, k.dst_len, k.tos, k.priority, a.clone())
}

impl Routes {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or refreshes `r`: what changed and the route (as stored),
    /// or None if it was cached unchanged.
    pub fn upsert(&mut self, r: Route) -> Option<(Change, Route)> {
        self.put(r, 0)
    }

    /// As [`Routes::upsert`], and marks the route seen for [`Routes::sweep`].
    pub fn upsert_marked(&mut self, r: Route) -> Option<(Change, Route)> {
        self.put(r, MARK)
    }

    fn put(&mut self, r: Route, mark: u32) -> Option<(Change, Route)> {
        let (attrs, table, dst, dst_len, tos, priority) = split(r);
        match dst {
            IpAddr::V4(a) => {
                let key = Key4 {
                    dst: a.to_bits(),
                    table,
                    priority,
                    dst_len,
                    tos,
                };
                let (change, attrs) = match self.v4.entry(key) {
                    Entry::Occupied(mut o) => {
                        let old = *o.get() & !MARK;
                        if *self.attrs.get(old) == attrs {
                            *o.get_mut() = old | mark;
                            return None;
                        }
                        let (id, back) = self.attrs.intern(attrs);
                        self.attrs.release(old);
                        *o.get_mut() = id | mark;
                        (
                            Change::Replaced,
                            back.unwrap_or_else(|| self.attrs.get(id).clone()),
                        )
                    }
                    Entry::Vacant(v) => {
                        let (id, back) = self.attrs.intern(attrs);
                        v.insert(id | mark);
                        (
                            Change::Added,
                            back.unwrap_or_else(|| self.attrs.get(id).clone()),
                        )
                    }
                };
                Some((change, build(table, dst, dst_len, tos, priority, attrs)))
            }
            IpAddr::V6(a) => {
                let disc = RouteDisc::of(&dst, attrs.protocol, &attrs.nexthops);
                let (disc_id, _) = self.discs.intern(disc);
                let key = Key6 {
                    dst: a.octets(),
                    table,
                    priority,
                    disc: disc_id,
                    dst_len,
                    tos,
                };
                let (change, attrs) = match self.v6.entry(key) {
                    Entry::Occupied(mut o) => {
                        self.discs.release(disc_id); // the entry counts already
                        let old = *o.get() & !MARK;
                        if *self.attrs.get(old) == attrs {
                            *o.get_mut() = old | mark;
                            return None;
                        }
                        let (id, back) = self.attrs.intern(attrs);
                        self.attrs.release(old);
                        *o.get_mut() = id | mark;
                        (
                            Change::Replaced,
                            back.unwrap_or_else(|| self.attrs.get(id).clone()),
                        )
                    }
                    Entry::Vacant(v) => {
                        let (id, back) = self.attrs.intern(attrs);
                        v.insert(id | mark);
                        (
                            Change::Added,
                            back.unwrap_or_else(|| self.attrs.get(id).clone()),
                        )
                    }
                };
                Some((change, build(table, dst, dst_len, tos, priority, attrs)))
            }
        }
    }

    fn key4(k: &RouteKey) -> Option<Key4> {
        match k.dst {
            IpAddr::V4(a) => Some(Key4 {
                dst: a.to_bits(),
                table: k.table,
                priority: k.priority,
                dst_len: k.dst_len,
                tos: k.tos,
            }),
            IpAddr::V6(_) => None,
        }
    }

    fn key6(&self, k: &RouteKey) -> Option<Key6> {
        match k.dst {
            IpAddr::V6(a) => Some(Key6 {
                dst: a.octets(),
                table: k.table,
                priority: k.priority,
                disc: self.discs.find(&k.disc)?,
                dst_len: k.dst_len,
                tos: k.tos,
            }),
            IpAddr::V4(_) => None,
        }
    }

    /// The route cached under `k`, rebuilt.
    pub fn get(&self, k: &RouteKey) -> Option<Route> {
        if let Some(key) = Self::key4(k) {
            let id = self.v4.get(&key)? & !MARK;
            return Some(rebuild4(&key, self.attrs.get(id)));
        }
        let key = self.key6(k)?;
        let id = self.v6.get(&key)? & !MARK;
        Some(rebuild6(&key, self.attrs.get(id)))
    }

    pub fn contains(&self, k: &RouteKey) -> bool {
        match Self::key4(k) {
            Some(key) => self.v4.contains_key(&key),
            None => self.key6(k).is_some_and(|key| self.v6.contains_key(&key)),
        }
    }

    /// Removes the route cached under `k`; it, rebuilt.
    pub fn remove(&mut self, k: &RouteKey) -> Option<Route> {
        if let Some(key) = Self::key4(k) {
            let id = self.v4.remove(&key)? & !MARK;
            let r = rebuild4(&key, self.attrs.get(id));
            self.attrs.release(id);
            return Some(r);
        }
        let key = self.key6(k)?;
        let id = self.v6.remove(&key)? & !MARK;
        let r = rebuild6(&key, self.attrs.get(id));
        self.attrs.release(id);
        self.discs.release(key.disc);
        Some(r)
    }

    /// Every route, rebuilt (IPv4 first).
    pub fn iter(&self) -> impl Iterator<Item = Route> + '_ {
        let v4 = self
            .v4
            .iter()
            .map(|(k, id)| rebuild4(k, self.attrs.get(id & !MARK)));
        let v6 = self
            .v6
            .iter()
            .map(|(k, id)| rebuild6(k, self.attrs.get(id & !MARK)));
        v4.chain(v6)
    }

    /// Every attribute set some route uses.
    pub fn attrs(&self) -> impl Iterator<Item = &Attrs> {
        self.attrs.live()
    }

    /// Removes the routes `gone` selects; them.
    pub fn remove_where(&mut self, gone: impl Fn(&Route) -> bool) -> Vec<Route> {
        let keys: Vec<RouteKey> = self.iter().filter(|r| gone(r)).map(|r| r.key()).collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Ends a reconcile of `family`'s routes: removes those not marked
    /// since the last sweep (returns them) and clears the marks.
    pub fn sweep(&mut self, ipv6: bool) -> Vec<Route> {
        let mut gone = Vec::new();
        let attrs = &mut self.attrs;
        if ipv6 {
            let discs = &mut self.discs;
            self.v6.retain(|k, v| {
                if *v & MARK != 0 {
                    *v &= !MARK;
                    return true;
                }
                gone.push(rebuild6(k, attrs.get(*v)));
                attrs.release(*v);
                discs.release(k.disc);
                false
            });
        } else {
            self.v4.retain(|k, v| {
                if *v & MARK != 0 {
                    *v &= !MARK;
                    return true;
                }
                gone.push(rebuild4(k, attrs.get(*v)));
                attrs.release(*v);
                false
            });
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fpc::{rtn, Hop};

    fn route(dst: &str, len: u8, gw: Option<&str>, oif: u32) -> Route {
        Route {
            table: 254,
            dst: dst.parse().unwrap(),
            dst_len: len,
            tos: 0,
            priority: 1024,
            rtype: rtn::UNICAST,
            protocol: 4,
            scope: 0,
            prefsrc: None,
            mtu: 0,
            nexthops: NextHops::Single(Hop {
                gateway: gw.map(|g| g.parse().unwrap()),
                oif,
                weight: 1,
                flags: 0,
            }),
        }
    }

    #[test]
    fn routes_come_back_as_stored_and_share_their_attributes() {
        let mut s = Routes::default();
        let a = route("10.1.0.0", 16, Some("10.0.0.2"), 2);
        let b = route("10.2.0.0", 16, Some("10.0.0.2"), 2);
        let c = route("2001:db8:1::", 64, None, 2);
        let d = route("2001:db8:1::", 64, None, 3); // another disc: another route
        for r in [&a, &b, &c, &d] {
            let (change, back) = s.upsert(r.clone()).unwrap();
            assert!(matches!(change, Change::Added));
            assert_eq!(&back, r);
        }
        assert_eq!(s.len(), 4);
        assert_eq!(s.attrs().count(), 3, "a and b share one set");
        for r in [&a, &b, &c, &d] {
            assert_eq!(s.get(&r.key()).as_ref(), Some(r));
            assert!(s.upsert(r.clone()).is_none(), "unchanged");
        }
        let mut b2 = b.clone();
        b2.mtu = 1400;
        assert!(matches!(s.upsert(b2.clone()), Some((Change::Replaced, r)) if r == b2));
        assert_eq!(s.attrs().count(), 4);
        assert_eq!(s.remove(&b2.key()), Some(b2.clone()));
        assert_eq!(s.attrs().count(), 3, "the last user took its set along");
        assert_eq!(s.remove(&b2.key()), None);
        assert_eq!(s.remove(&d.key()), Some(d.clone()));
        assert!(s.get(&d.key()).is_none() && s.get(&c.key()).is_some());
        let mut all: Vec<Route> = s.iter().collect();
        all.sort_by_key(|r| r.dst);
        assert_eq!(all, vec![a.clone(), c.clone()]);
    }

    #[test]
    fn sweep_removes_what_a_reconcile_did_not_see() {
        let mut s = Routes::default();
        let a = route("10.1.0.0", 16, Some("10.0.0.2"), 2);
        let b = route("10.2.0.0", 16, Some("10.0.0.2"), 2);
        let c = route("2001:db8:1::", 64, None, 2);
        for r in [&a, &b, &c] {
            s.upsert(r.clone());
        }
        assert!(s.upsert_marked(a.clone()).is_none());
        assert_eq!(s.sweep(false), vec![b.clone()]);
        assert_eq!(s.len(), 2, "the IPv6 route is another sweep's");
        // Marks are cleared: the next sweep without a mark removes a.
        assert_eq!(s.sweep(false), vec![a]);
        assert_eq!(s.sweep(true), vec![c]);
        assert!(s.is_empty() && s.attrs().count() == 0);
    }
}
