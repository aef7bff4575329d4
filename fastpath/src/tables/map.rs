//! One kind's objects by key, each with its stale mark: what mark and
//! sweep needs (`mark_stale` before a full sync, an upsert refreshes,
//! `sweep` removes what was not refreshed).

use std::collections::HashMap;
use std::hash::Hash;

use fpc::{ObjectError, Op};

/// Objects of one kind by key, each with its stale mark.
#[derive(Clone)]
pub(super) struct ObjectMap<K, V> {
    pub(super) map: HashMap<K, (V, bool)>,
}

impl<K: Eq + Hash, V> ObjectMap<K, V> {
    pub(super) fn new() -> Self {
        ObjectMap {
            map: HashMap::new(),
        }
    }
    pub(super) fn upsert(&mut self, key: K, value: V) {
        self.map.insert(key, (value, false));
    }
    pub(super) fn remove(&mut self, key: &K) -> Result<(), ObjectError> {
        self.map.remove(key).map(drop).ok_or(ObjectError::NotFound)
    }
    pub(super) fn apply(&mut self, op: Op, key: K, value: V) -> Result<(), ObjectError> {
        match op {
            Op::Add | Op::Replace => {
                self.upsert(key, value);
                Ok(())
            }
            Op::Delete => self.remove(&key),
        }
    }
    pub(super) fn mark_stale(&mut self) {
        for (_, stale) in self.map.values_mut() {
            *stale = true;
        }
    }
    pub(super) fn sweep(&mut self) -> usize {
        let before = self.map.len();
        self.map.retain(|_, (_, stale)| !*stale);
        let swept = before - self.map.len();
        if swept > 0 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
        }
        swept
    }
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|(v, _)| v)
    }
}
