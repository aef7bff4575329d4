//! One FIB: the routes of one (table, family), stored compactly for
//! longest-prefix match.
//!
//! A route is an 8-byte [`Entry`] in a hash map per prefix length, keyed by
//! the masked prefix; its attributes (type, protocol, scope, prefsrc, next
//! hops) are an index into the interned [`super::attrs::AttrTable`].
//!
//! Invariants:
//! * `by_len[len]` holds only keys whose bits past `len` are zero, and
//!   `lens` has bit `len` set exactly when `by_len[len]` is non-empty.
//! * A prefix's first route lives in `by_len`; its further routes (other tos
//!   or priority: rare) live in `extra`, and the first one has `EXTRA` set
//!   exactly when `extra` holds a non-empty list for its prefix.
//! * No two routes of one prefix share (tos, priority).
//! * Each entry owns one reference to its attribute id: every id that leaves
//!   the FIB (replaced, removed, swept) is handed back to the caller to
//!   release.

use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::hash::{Hash, Hasher};

use common::hash::PrefixHash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A masked destination prefix of one family.
pub(crate) trait PrefixKey: Copy + Eq + Hash {
    const MAX_LEN: u8;
    /// The key of `ip`, or `None` if `ip` is of the other family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    fn to_ip(self) -> IpAddr;
    /// `self` with every bit past `len` cleared (`len <= MAX_LEN`).
    fn masked(self, len: u8) -> Self;
}

/// An IPv4 prefix, host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V4(u32);

impl V4 {
    pub(crate) fn from_bits(v: u32) -> Self {
        V4(v)
    }
}

impl Hash for V4 {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u32(self.0);
    }
}

impl PrefixKey for V4 {
    const MAX_LEN: u8 = 32;
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(V4(u32::from(a))),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self.0))
    }
    fn masked(self, len: u8) -> Self {
        match len {
            0 => V4(0),
            l if l >= 32 => self,
            l => V4(self.0 & (u32::MAX << (32 - l))),
        }
    }
}

/// An IPv6 prefix as four words, most significant first. Words rather than
/// a `u128` keep the alignment at 4, so a map bucket is 28 bytes, not 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V6([u32; 4]);

impl V6 {
    pub(crate) fn from_u128(v: u128) -> Self {
        V6([
            (v >> 96) as u32,
            (v >> 64) as u32,
            (v >> 32) as u32,
            v as u32,
        ])
    }
    fn to_u128(self) -> u128 {
        let [a, b, c, d] = self.0;
        (u128::from(a) << 96) | (u128::from(b) << 64) | (u128::from(c) << 32) | u128::from(d)
    }
}

impl Hash for V6 {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(self.to_u128());
    }
}

impl PrefixKey for V6 {
    const MAX_LEN: u8 = 128;
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(V6::from_u128(u128::from(a))),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self.to_u128()))
    }
    fn masked(self, len: u8) -> Self {
        match len {
            0 => V6([0; 4]),
            l if l >= 128 => self,
            l => V6::from_u128(self.to_u128() & (u128::MAX << (128 - l))),
        }
    }
}

/// The set of prefix lengths in use, 0..=128.
#[derive(Debug, Clone, Copy, Default)]
struct LenSet([u64; 3]);

impl LenSet {
    fn insert(&mut self, len: u8) {
        self.0[usize::from(len / 64)] |= 1 << (len % 64);
    }
    fn remove(&mut self, len: u8) {
        self.0[usize::from(len / 64)] &= !(1 << (len % 64));
    }
    /// Longest first.
    fn iter_desc(self) -> impl Iterator<Item = u8> {
        let mut words = self.0;
        let mut w = words.len();
        std::iter::from_fn(move || loop {
            if w == 0 {
                return None;
            }
            let bits = words[w - 1];
            if bits == 0 {
                w -= 1;
                continue;
            }
            let b = 63 - bits.leading_zeros();
            words[w - 1] &= !(1u64 << b);
            return Some(((w - 1) * 64) as u8 + b as u8);
        })
    }
}

/// Set by `mark_stale`, cleared by any upsert.
const STALE: u8 = 1;
/// On a first entry: `extra` holds more routes of its prefix.
const EXTRA: u8 = 2;

/// Bits of an [`Entry`]'s packed word that hold its attribute id.
const ATTR_BITS: u32 = 22;
/// The attribute ids an [`Entry`] can hold: 0 to `MAX_ATTRS - 1`.
pub(crate) const MAX_ATTRS: u32 = 1 << ATTR_BITS;

/// One route, less its prefix (the map key) and attributes (interned).
/// Eight bytes: the attribute id (22 bits), the tos (8) and the flags (2)
/// share one word, so a map bucket is 12 bytes for IPv4, 24 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub priority: u32,
    packed: u32,
}

impl Entry {
    /// `attrs` is below [`MAX_ATTRS`] (the attribute table hands out no
    /// other id).
    fn new(tos: u8, priority: u32, attrs: u32) -> Self {
        debug_assert!(attrs < MAX_ATTRS, "attribute id {attrs} too large");
        Entry {
            priority,
            packed: (attrs & (MAX_ATTRS - 1)) | u32::from(tos) << ATTR_BITS,
        }
    }
    /// An id of the [`super::attrs::AttrTable`].
    pub(crate) fn attrs(&self) -> u32 {
        self.packed & (MAX_ATTRS - 1)
    }
    pub(crate) fn tos(&self) -> u8 {
        (self.packed >> ATTR_BITS) as u8
    }
    fn flags(&self) -> u8 {
        (self.packed >> (ATTR_BITS + 8)) as u8
    }
    fn set_flags(&mut self, flags: u8) {
        self.packed = (self.packed & ((1 << (ATTR_BITS + 8)) - 1))
            | (u32::from(flags & (STALE | EXTRA)) << (ATTR_BITS + 8));
    }
    fn set_attrs(&mut self, attrs: u32) {
        debug_assert!(attrs < MAX_ATTRS, "attribute id {attrs} too large");
        self.packed = (self.packed & !(MAX_ATTRS - 1)) | (attrs & (MAX_ATTRS - 1));
    }
    fn stale(&self) -> bool {
        self.flags() & STALE != 0
    }
}

/// What an upsert did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Upsert {
    Inserted,
    /// The route existed; here is its previous attribute id to release.
    Replaced(u32),
}

/// The routes of one (table, family).
#[derive(Clone)]
pub(crate) struct Fib<K> {
    by_len: Vec<HashMap<K, Entry, PrefixHash>>,
    lens: LenSet,
    extra: HashMap<(u8, K), Vec<Entry>, PrefixHash>,
    hasher: PrefixHash,
    routes: usize,
}

impl<K: PrefixKey> Fib<K> {
    pub(crate) fn new(hasher: PrefixHash) -> Self {
        Fib {
            by_len: (0..=K::MAX_LEN)
                .map(|_| HashMap::with_hasher(hasher.clone()))
                .collect(),
            lens: LenSet::default(),
            extra: HashMap::with_hasher(hasher.clone()),
            hasher,
            routes: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.routes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Inserts or replaces the route of (key, len) that `same` recognises
    /// (same tos and priority, and for IPv6 the same discriminator); the
    /// caller has checked that `key` is masked to `len <= MAX_LEN`.
    pub(crate) fn upsert(
        &mut self,
        key: K,
        len: u8,
        (tos, priority, attrs): (u8, u32, u32),
        same: impl Fn(&Entry) -> bool,
    ) -> Upsert {
        let fresh = Entry::new(tos, priority, attrs);
        let map = &mut self.by_len[usize::from(len)];
        match map.entry(key) {
            MapEntry::Vacant(v) => {
                v.insert(fresh);
                self.lens.insert(len);
                self.routes += 1;
                Upsert::Inserted
            }
            MapEntry::Occupied(mut o) => {
                let first = o.get_mut();
                if same(first) {
                    let old = first.attrs();
                    first.set_attrs(attrs);
                    first.set_flags(first.flags() & !STALE);
                    return Upsert::Replaced(old);
                }
                let list = self.extra.entry((len, key)).or_default();
                if let Some(e) = list.iter_mut().find(|e| same(e)) {
                    let old = e.attrs();
                    *e = fresh;
                    return Upsert::Replaced(old);
                }
                list.push(fresh);
                first.set_flags(first.flags() | EXTRA);
                self.routes += 1;
                Upsert::Inserted
            }
        }
    }

    /// Removes the route of (key, len) that `same` recognises and returns
    /// its attribute id.
    pub(crate) fn remove(&mut self, key: K, len: u8, same: impl Fn(&Entry) -> bool) -> Option<u32> {
        let map = self.by_len.get_mut(usize::from(len))?;
        let first = map.get_mut(&key)?;
        let removed = if same(first) {
            let old = first.attrs();
            if first.flags() & EXTRA == 0 {
                map.remove(&key);
                if map.is_empty() {
                    self.lens.remove(len);
                    *map = HashMap::with_hasher(self.hasher.clone());
                }
            } else {
                // Promote a further route of the prefix to first.
                let list = self.extra.get_mut(&(len, key))?;
                let next = list.pop()?;
                let more = !list.is_empty();
                if !more {
                    self.extra.remove(&(len, key));
                }
                *first = next;
                first.set_flags((next.flags() & STALE) | if more { EXTRA } else { 0 });
            }
            old
        } else {
            if first.flags() & EXTRA == 0 {
                return None;
            }
            let list = self.extra.get_mut(&(len, key))?;
            let at = list.iter().position(same)?;
            let gone = list.swap_remove(at);
            if list.is_empty() {
                self.extra.remove(&(len, key));
                first.set_flags(first.flags() & !EXTRA);
            }
            gone.attrs()
        };
        self.routes -= 1;
        Some(removed)
    }

    /// The route for `addr`: the longest prefix holding a tos-0 route, and
    /// of its tos-0 routes the one with the lowest priority (metric).
    /// Returns (prefix, prefix length, entry).
    pub(crate) fn longest_match(&self, addr: K) -> Option<(K, u8, Entry)> {
        for len in self.lens.iter_desc() {
            let key = addr.masked(len);
            let Some(first) = self.by_len[usize::from(len)].get(&key) else {
                continue;
            };
            let mut best = (first.tos() == 0).then_some(*first);
            if first.flags() & EXTRA != 0 {
                for e in self.extra.get(&(len, key)).into_iter().flatten() {
                    if e.tos() == 0 && best.is_none_or(|b| e.priority < b.priority) {
                        best = Some(*e);
                    }
                }
            }
            if let Some(e) = best {
                return Some((key, len, e));
            }
        }
        None
    }

    /// Marks every route stale.
    pub(crate) fn mark_stale(&mut self) {
        for map in &mut self.by_len {
            for e in map.values_mut() {
                e.set_flags(e.flags() | STALE);
            }
        }
        for list in self.extra.values_mut() {
            for e in list {
                e.set_flags(e.flags() | STALE);
            }
        }
    }

    /// Removes every stale route, handing each attribute id to `release`;
    /// returns how many went.
    pub(crate) fn sweep(&mut self, mut release: impl FnMut(u32)) -> usize {
        let mut swept = 0;
        let Fib {
            by_len,
            lens,
            extra,
            hasher,
            ..
        } = self;
        for (len, map) in by_len.iter_mut().enumerate() {
            if map.is_empty() {
                continue;
            }
            let len = len as u8;
            map.retain(|key, first| {
                if first.flags() & EXTRA != 0 {
                    let list_key = (len, *key);
                    let mut list = extra.remove(&list_key).unwrap_or_default();
                    list.retain(|e| {
                        if e.stale() {
                            release(e.attrs());
                            swept += 1;
                        }
                        !e.stale()
                    });
                    if first.stale() {
                        release(first.attrs());
                        swept += 1;
                        match list.pop() {
                            Some(next) => *first = next,
                            None => return false,
                        }
                    }
                    if list.is_empty() {
                        first.set_flags(first.flags() & !EXTRA);
                    } else {
                        first.set_flags(first.flags() | EXTRA);
                        extra.insert(list_key, list);
                    }
                    return true;
                }
                if first.stale() {
                    release(first.attrs());
                    swept += 1;
                    return false;
                }
                true
            });
            if map.is_empty() {
                lens.remove(len);
                *map = HashMap::with_hasher(hasher.clone());
            } else if map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        self.routes -= swept;
        swept
    }

    /// Every route as (prefix, prefix length, entry).
    pub(crate) fn for_each(&self, mut f: impl FnMut(K, u8, &Entry)) {
        for (len, map) in self.by_len.iter().enumerate() {
            for (key, first) in map {
                f(*key, len as u8, first);
                if first.flags() & EXTRA != 0 {
                    for e in self.extra.get(&(len as u8, *key)).into_iter().flatten() {
                        f(*key, len as u8, e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Matches by (tos, priority), as for IPv4.
    fn is(tos: u8, priority: u32) -> impl Fn(&Entry) -> bool {
        move |e| e.tos() == tos && e.priority == priority
    }

    use super::*;

    fn v4(s: &str) -> V4 {
        V4::from_ip(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn masks() {
        assert_eq!(v4("10.1.2.3").masked(0), v4("0.0.0.0"));
        assert_eq!(v4("10.1.2.3").masked(8), v4("10.0.0.0"));
        assert_eq!(v4("10.1.2.3").masked(24), v4("10.1.2.0"));
        assert_eq!(v4("10.1.2.3").masked(32), v4("10.1.2.3"));
        let a = V6::from_ip("2001:db8:1:2:3:4:5:6".parse().unwrap()).unwrap();
        assert_eq!(a.masked(64).to_ip().to_string(), "2001:db8:1:2::");
        assert_eq!(a.masked(0).to_ip().to_string(), "::");
        assert_eq!(a.masked(128), a);
        assert_eq!(a.masked(127).to_ip().to_string(), "2001:db8:1:2:3:4:5:6");
        assert_eq!(a.masked(125).to_ip().to_string(), "2001:db8:1:2:3:4:5:0");
    }

    #[test]
    fn len_set_iterates_longest_first() {
        let mut s = LenSet::default();
        for l in [0, 8, 63, 64, 65, 127, 128] {
            s.insert(l);
        }
        s.remove(65);
        assert_eq!(
            s.iter_desc().collect::<Vec<_>>(),
            vec![128, 127, 64, 63, 8, 0]
        );
        assert_eq!(LenSet::default().iter_desc().count(), 0);
    }

    #[test]
    fn entry_is_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        assert_eq!(std::mem::size_of::<(V4, Entry)>(), 12);
        assert_eq!(std::mem::size_of::<(V6, Entry)>(), 24);
        // Every field keeps its value beside the others.
        let mut e = Entry::new(0xfc, 7, MAX_ATTRS - 1);
        assert_eq!(
            (e.tos(), e.priority, e.attrs(), e.flags()),
            (0xfc, 7, MAX_ATTRS - 1, 0)
        );
        e.set_flags(STALE | EXTRA);
        e.set_attrs(5);
        assert_eq!((e.tos(), e.attrs(), e.flags()), (0xfc, 5, STALE | EXTRA));
    }

    #[test]
    fn several_routes_per_prefix() {
        let mut fib = Fib::<V4>::new(PrefixHash::new());
        let p = v4("10.0.0.0");
        assert_eq!(fib.upsert(p, 8, (0, 100, 1), is(0, 100)), Upsert::Inserted);
        assert_eq!(fib.upsert(p, 8, (0, 50, 2), is(0, 50)), Upsert::Inserted);
        assert_eq!(fib.upsert(p, 8, (4, 10, 3), is(4, 10)), Upsert::Inserted);
        assert_eq!(fib.upsert(p, 8, (0, 50, 4), is(0, 50)), Upsert::Replaced(2));
        assert_eq!(fib.len(), 3);
        // Lowest metric among tos-0 routes.
        let (_, _, e) = fib.longest_match(v4("10.9.9.9")).unwrap();
        assert_eq!((e.priority, e.attrs()), (50, 4));
        // Remove the first: a further one is promoted.
        assert_eq!(fib.remove(p, 8, is(0, 100)), Some(1));
        assert_eq!(fib.remove(p, 8, is(0, 100)), None);
        assert_eq!(fib.len(), 2);
        let mut seen = Vec::new();
        fib.for_each(|_, _, e| seen.push((e.tos(), e.priority)));
        seen.sort();
        assert_eq!(seen, vec![(0, 50), (4, 10)]);
        assert_eq!(fib.remove(p, 8, is(0, 50)), Some(4));
        // Only a tos-4 route is left: no tos-0 match.
        assert!(fib.longest_match(v4("10.9.9.9")).is_none());
        assert_eq!(fib.remove(p, 8, is(4, 10)), Some(3));
        assert!(fib.is_empty());
        assert!(fib.extra.is_empty());
        assert_eq!(fib.lens.iter_desc().count(), 0);
    }

    #[test]
    fn sweep_promotes_fresh_routes() {
        let mut fib = Fib::<V4>::new(PrefixHash::new());
        let p = v4("10.0.0.0");
        fib.upsert(p, 8, (0, 1, 1), is(0, 1));
        fib.upsert(p, 8, (0, 2, 2), is(0, 2));
        fib.upsert(p, 8, (0, 3, 3), is(0, 3));
        fib.upsert(v4("192.168.0.0"), 16, (0, 0, 4), is(0, 0));
        fib.mark_stale();
        fib.upsert(p, 8, (0, 3, 3), is(0, 3));
        let mut released = Vec::new();
        assert_eq!(fib.sweep(|id| released.push(id)), 3);
        released.sort();
        assert_eq!(released, vec![1, 2, 4]);
        assert_eq!(fib.len(), 1);
        let (_, len, e) = fib.longest_match(v4("10.1.1.1")).unwrap();
        assert_eq!((len, e.priority, e.flags()), (8, 3, 0));
        assert!(fib.extra.is_empty());
        assert!(fib.longest_match(v4("192.168.1.1")).is_none());
    }
}
