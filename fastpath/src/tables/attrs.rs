//! Interned route attributes: what routes share (type, protocol, scope,
//! preferred source, next hops) stored once and referred to by a `u32` id.
//!
//! Invariants: a live id's slot holds its attributes and a reference count
//! of at least one, and `index` maps those attributes back to it; when the
//! count drops to zero the slot is emptied, the id leaves `index` and is
//! reused by a later `intern`. Memory is thus proportional to the number of
//! distinct attribute sets (a few on a typical router), not of routes.
//! Ids stay below [`MAX_ATTRS`] (a FIB entry packs its id in 22 bits): a
//! new set past that is refused. The id interned last is tried before the
//! index (routes of a batch mostly share their attributes), which spares
//! most routes a hash of their attributes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::fib::MAX_ATTRS;
use fpc::{NextHops, Route};

/// Everything of a route but its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RouteAttrs {
    pub rtype: u8,
    pub protocol: u8,
    pub scope: u8,
    pub prefsrc: Option<IpAddr>,
    pub mtu: u32,
    pub nexthops: NextHops,
}

impl RouteAttrs {
    pub(crate) fn of(r: Route) -> Self {
        RouteAttrs {
            rtype: r.rtype,
            protocol: r.protocol,
            scope: r.scope,
            prefsrc: r.prefsrc,
            mtu: r.mtu,
            nexthops: r.nexthops,
        }
    }
}

#[derive(Clone)]
struct Slot {
    attrs: Option<Arc<RouteAttrs>>,
    refs: u32,
}

#[derive(Default, Clone)]
pub(crate) struct AttrTable {
    slots: Vec<Slot>,
    index: HashMap<Arc<RouteAttrs>, u32>,
    free: Vec<u32>,
    /// The id `intern` returned last (its slot may since have changed).
    last: u32,
}

impl AttrTable {
    /// The id of `attrs`, with one more reference; None when `attrs` is
    /// new and every id a FIB entry can hold ([`MAX_ATTRS`]) is in use.
    pub(crate) fn intern(&mut self, attrs: RouteAttrs) -> Option<u32> {
        if let Some(slot) = self.slots.get_mut(self.last as usize) {
            if slot.attrs.as_deref() == Some(&attrs) {
                slot.refs = slot.refs.saturating_add(1);
                return Some(self.last);
            }
        }
        if let Some(&id) = self.index.get(&attrs) {
            self.last = id;
            let slot = &mut self.slots[id as usize];
            slot.refs = slot.refs.saturating_add(1);
            return Some(id);
        }
        if self.free.is_empty() && self.slots.len() >= MAX_ATTRS as usize {
            return None;
        }
        let attrs = Arc::new(attrs);
        let slot = Slot {
            attrs: Some(attrs.clone()),
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(attrs, id);
        self.last = id;
        Some(id)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&RouteAttrs> {
        self.slots.get(id as usize)?.attrs.as_deref()
    }

    /// Drops one reference to `id`.
    pub(crate) fn release(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            debug_assert!(false, "release of unknown attribute id {id}");
            return;
        };
        debug_assert!(slot.refs > 0, "release of free attribute id {id}");
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs == 0 {
            if let Some(attrs) = slot.attrs.take() {
                self.index.remove(&*attrs);
                self.free.push(id);
            }
        }
    }

    /// How many distinct attribute sets are in use.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    pub(crate) fn refs(&self, id: u32) -> u32 {
        self.slots.get(id as usize).map_or(0, |s| s.refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(protocol: u8) -> RouteAttrs {
        RouteAttrs {
            rtype: 1,
            protocol,
            scope: 0,
            prefsrc: None,
            mtu: 0,
            nexthops: NextHops::Id(7),
        }
    }

    #[test]
    fn interning_counts_and_reuses() {
        let mut t = AttrTable::default();
        let a = t.intern(attrs(3)).unwrap();
        assert_eq!(t.intern(attrs(3)), Some(a));
        let b = t.intern(attrs(4)).unwrap();
        assert_ne!(a, b);
        assert_eq!((t.refs(a), t.refs(b), t.len()), (2, 1, 2));
        t.release(a);
        assert_eq!(t.get(a), Some(&attrs(3)));
        t.release(a);
        assert_eq!(t.get(a), None);
        assert_eq!(t.len(), 1);
        // The freed id is reused.
        assert_eq!(t.intern(attrs(5)), Some(a));
        assert_eq!(t.get(a), Some(&attrs(5)));
    }
}
