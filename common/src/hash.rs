//! A fast seeded hash for integer keys (prefixes, object keys), shared by
//! fpd's FIBs and cmgrd's cache. Invariant: one random seed per
//! [`PrefixHash`], taken from std's `RandomState`, so two processes (or two
//! maps) do not share bucket layouts.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`FoldHasher`]s with a per-process random seed.
///
/// Prefix keys are integers whose low bits are often all zero (a /24 has
/// eight): a folded 64x64->128 multiply spreads every input bit over both
/// ends of the hash, which hashbrown uses (low bits pick the bucket, the top
/// seven the control byte). Keys come from the trusted cache manager, so
/// this trades SipHash's flood resistance for speed.
#[derive(Debug, Clone)]
pub struct PrefixHash {
    seed: u64,
}

impl PrefixHash {
    pub fn new() -> Self {
        PrefixHash {
            seed: RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }
}

impl Default for PrefixHash {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for PrefixHash {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher { state: self.seed }
    }
}

/// See [`PrefixHash`].
pub struct FoldHasher {
    state: u64,
}

impl FoldHasher {
    #[inline]
    fn mix(&mut self, v: u64) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let m = u128::from(self.state ^ v) * u128::from(K);
        self.state = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.mix(v.into());
    }
    fn write_u32(&mut self, v: u32) {
        self.mix(v.into());
    }
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    fn write_u128(&mut self, v: u128) {
        self.mix(v as u64);
        self.mix((v >> 64) as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    fn finish(&self) -> u64 {
        self.state
    }
}
