//! The routes of one family, a FIB per table ([`Fibs`]), the checks a
//! route must pass, and the read-only snapshot the dataplane looks routes
//! up in ([`FibSnapshot`]). Routes are kept in `fib`'s compact form; a
//! `Route` is rebuilt only for dumps and lookups by the FPC server.

use std::collections::BTreeMap;
use std::net::IpAddr;

use fpc::{NextHops, Object, ObjectError, Op, Route, RouteDisc};

use super::attrs::{AttrTable, RouteAttrs};
use super::fib::{self, Entry, Fib, PrefixKey, Upsert, V4, V6};
use common::hash::PrefixHash;

/// The routes of one family: a FIB per table.
#[derive(Clone)]
pub(super) struct Fibs<K> {
    pub(super) tables: BTreeMap<u32, Fib<K>>,
    pub(super) routes: usize,
}

impl<K: PrefixKey> Fibs<K> {
    pub(super) fn new() -> Self {
        Fibs {
            tables: BTreeMap::new(),
            routes: 0,
        }
    }

    /// Applies `r`, whose family is `K`'s.
    pub(super) fn apply(
        &mut self,
        attrs: &mut AttrTable,
        hasher: &PrefixHash,
        op: Op,
        r: Route,
    ) -> Result<(), ObjectError> {
        let key = K::from_ip(r.dst).ok_or(ObjectError::Invalid)?;
        if r.dst_len > K::MAX_LEN || key.masked(r.dst_len) != key {
            return Err(ObjectError::Invalid);
        }
        let disc = RouteDisc::of(&r.dst, r.protocol, &r.nexthops);
        let (tos, priority, dst) = (r.tos, r.priority, r.dst);
        match op {
            Op::Delete => {
                let fib = self.tables.get_mut(&r.table).ok_or(ObjectError::NotFound)?;
                let id = fib
                    .remove(key, r.dst_len, |e| {
                        same_route(attrs, e, dst, tos, priority, disc)
                    })
                    .ok_or(ObjectError::NotFound)?;
                attrs.release(id);
                if fib.is_empty() {
                    self.tables.remove(&r.table);
                }
                self.routes -= 1;
            }
            Op::Add | Op::Replace => {
                check_route_attrs(&r)?;
                let (table, len) = (r.table, r.dst_len);
                // Over 4 M distinct attribute sets: refused, not wrapped.
                let id = attrs
                    .intern(RouteAttrs::of(r))
                    .ok_or(ObjectError::Unsupported)?;
                let fib = self
                    .tables
                    .entry(table)
                    .or_insert_with(|| Fib::new(hasher.clone()));
                let same = |e: &Entry| same_route(attrs, e, dst, tos, priority, disc);
                match fib.upsert(key, len, (tos, priority, id), same) {
                    Upsert::Inserted => self.routes += 1,
                    Upsert::Replaced(old) => attrs.release(old),
                }
            }
        }
        Ok(())
    }

    pub(super) fn longest_match(&self, attrs: &AttrTable, table: u32, addr: K) -> Option<Route> {
        let (prefix, len, e) = self.tables.get(&table)?.longest_match(addr)?;
        Some(route_of(
            table,
            prefix.to_ip(),
            len,
            &e,
            attrs.get(e.attrs())?,
        ))
    }

    /// The attributes of the route `addr` takes, without allocating, and
    /// the matched prefix's length (what a rule's suppress_prefixlength
    /// compares).
    pub(super) fn lookup_len<'a>(
        &self,
        attrs: &'a AttrTable,
        table: u32,
        addr: K,
    ) -> Option<(u8, &'a RouteAttrs)> {
        let (_, len, e) = self.tables.get(&table)?.longest_match(addr)?;
        attrs.get(e.attrs()).map(|a| (len, a))
    }

    pub(super) fn mark_stale(&mut self) {
        for fib in self.tables.values_mut() {
            fib.mark_stale();
        }
    }

    pub(super) fn sweep(&mut self, attrs: &mut AttrTable) -> usize {
        let mut swept = 0;
        self.tables.retain(|_, fib| {
            swept += fib.sweep(|id| attrs.release(id));
            !fib.is_empty()
        });
        self.routes -= swept;
        swept
    }

    pub(super) fn for_each(&self, attrs: &AttrTable, f: &mut impl FnMut(Object)) {
        for (&table, fib) in &self.tables {
            fib.for_each(|prefix, len, e| {
                if let Some(a) = attrs.get(e.attrs()) {
                    f(Object::Route(route_of(table, prefix.to_ip(), len, e, a)));
                }
            });
        }
    }

    #[cfg(test)]
    pub(super) fn check_counts(&self) {
        assert_eq!(
            self.routes,
            self.tables.values().map(Fib::len).sum::<usize>()
        );
    }
}

pub(super) fn route_of(
    table: u32,
    dst: IpAddr,
    dst_len: u8,
    e: &fib::Entry,
    a: &RouteAttrs,
) -> Route {
    Route {
        table,
        dst,
        dst_len,
        tos: e.tos(),
        priority: e.priority,
        rtype: a.rtype,
        protocol: a.protocol,
        scope: a.scope,
        prefsrc: a.prefsrc,
        mtu: a.mtu,
        nexthops: a.nexthops.clone(),
    }
}

pub(super) fn max_prefix_len(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// What makes a route unusable, beyond its key.
pub(super) fn check_route_attrs(r: &Route) -> Result<(), ObjectError> {
    let valid = r.prefsrc.is_none_or(|s| s.is_ipv4() == r.dst.is_ipv4())
        && match &r.nexthops {
            NextHops::Multipath(hops) => !hops.is_empty(),
            NextHops::Id(id) => *id != 0,
            NextHops::None | NextHops::Single(_) => true,
        };
    valid.then_some(()).ok_or(ObjectError::Invalid)
}

/// Whether `e` is the route (tos, priority, disc) of its prefix; the
/// discriminator of an entry comes from its interned attributes.
pub(super) fn same_route(
    attrs: &AttrTable,
    e: &Entry,
    dst: IpAddr,
    tos: u8,
    priority: u32,
    disc: RouteDisc,
) -> bool {
    e.tos() == tos
        && e.priority == priority
        && (disc == RouteDisc::None && dst.is_ipv4()
            || attrs
                .get(e.attrs())
                .is_some_and(|a| RouteDisc::of(&dst, a.protocol, &a.nexthops) == disc))
}

/// A read-only copy of every route, for the dataplane: the FPC server keeps
/// applying to [`Tables`] while packets are looked up in a snapshot (see
/// `dataplane::view`). Cloning copies the FIB hash maps wholesale (their
/// entries are plain data) and shares the interned attributes.
#[derive(Clone)]
pub(crate) struct FibSnapshot {
    pub(super) routes4: Fibs<V4>,
    pub(super) routes6: Fibs<V6>,
    pub(super) attrs: AttrTable,
}

impl FibSnapshot {
    /// The route an IPv4 destination (host order) takes in `table`, and
    /// its prefix length.
    pub(crate) fn lookup4_len(&self, table: u32, addr: u32) -> Option<(u8, &RouteAttrs)> {
        self.routes4
            .lookup_len(&self.attrs, table, V4::from_bits(addr))
    }

    pub(crate) fn lookup6_len(&self, table: u32, addr: u128) -> Option<(u8, &RouteAttrs)> {
        self.routes6
            .lookup_len(&self.attrs, table, V6::from_u128(addr))
    }
}
