//! nf_tables rules: the synced expression bytes decoded into steps, and
//! the kernel's register machine (`nft_do_chain`) over them.
//!
//! The bytes are those cmgrd keeps (instance/src/netlink/nftables.rs):
//! per expression a u16 name length, the name, a u32 data length and the
//! expression's NFTA_EXPR_DATA attributes as the kernel dumped them
//! (netlink attribute headers in host order, values big-endian; the
//! `counter` data emptied). Attribute numbers are those of the kernel's
//! uapi `linux/netfilter/nf_tables.h`.
//!
//! Registers are the kernel's `struct nft_regs`: 20 words of 32 bits, the
//! verdict in words 0-3, NFT_REG_1..4 (16 bytes each) at words 4, 8, 12,
//! 16, NFT_REG32_00..15 at words 4..19. Data is stored as the kernel
//! stores it (packet bytes as they are, host integers in host order:
//! fpd runs on the same byte order as the Linux it mirrors), so a `cmp`
//! is a byte comparison, as the kernel's `memcmp`.
//!
//! Rule order (a kernel fact, checked on this kernel): a chain's rules
//! are a list; `nft add` appends (NLM_F_APPEND in the notification, no
//! NFTA_RULE_POSITION), `nft insert` prepends (no NLM_F_APPEND, no
//! position), and a rule added or inserted at a position is announced
//! with NFTA_RULE_POSITION = the handle of the rule now before it. Dumps
//! list rules in order, each with the previous rule's handle as its
//! position. A rule's place is synced as `prev` (its predecessor's
//! handle, 0 for the first); a chain whose rules do not form one list
//! from 0, or has a rule of unknown place, is compiled as one
//! unsupported step ([`Reason::RuleOrder`]): Linux decides until cmgrd's
//! re-dump gives every place.
//!
//! Sets and maps (`lookup`, `nft_lookup_eval`): a synced set is
//! compiled with the program, its elements in a hash by key (the
//! kernel's hash and bitmap sets) or, for an interval set, sorted by key
//! with each range's start and end + 1 (the kernel's rbtree: a key
//! matches when the last element at or below it is a start; at one key
//! an end sorts before a start, so adjacent ranges meet). Keys compare
//! as bytes (`memcmp`), the register bytes of the set's key length. A
//! miss falls to the catch-all element if there is one, else breaks the
//! rule; a map copies the element's data to its register, a vmap its
//! verdict. A lookup fpd cannot answer exactly goes to Linux
//! ([`Reason::SetLookup`]): a set not synced, with timeouts or a default
//! timeout, dynamic (`NFT_SET_EVAL`, or named by any rule's `dynset`:
//! the packet path adds to it without an event), with expressions of
//! its own or its elements' (counters, limits, quotas run per match),
//! object maps, and concatenations of ranges (elements with a key end,
//! the kernel's pipapo).
//!
//! Invariants: compiling never fails (an expression fpd does not
//! implement becomes [`Step::Unsupported`]); running allocates nothing
//! and reads only within the packet and the 80-byte register file.

mod compile;
mod run;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use fpc::{NftChain, NftRule, NftSet, NftSetElem};

use super::{
    before_conntrack, Direction, NfCounters, NfVerdict, Packet, Reason, Tracked, NFPROTO_IPV4,
    NFPROTO_IPV6,
};

pub(super) use self::compile::offloads_flows;
use self::compile::{compile_rule, compile_set, dynamic_sets, in_order};
use self::run::{policy, run_rule};

// NFTA_LIST_ELEM / NFTA_EXPR_* are unpacked by cmgrd already.
const NFTA_DATA_VALUE: u16 = 1;

const NFTA_DATA_VERDICT: u16 = 2;

const NFTA_VERDICT_CODE: u16 = 1;

const NFTA_VERDICT_CHAIN: u16 = 2;

const NFTA_PAYLOAD_DREG: u16 = 1;

const NFTA_PAYLOAD_BASE: u16 = 2;

const NFTA_PAYLOAD_OFFSET: u16 = 3;

const NFTA_PAYLOAD_LEN: u16 = 4;

const NFTA_PAYLOAD_SREG: u16 = 5;

const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;

const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

const NFTA_CMP_SREG: u16 = 1;

const NFTA_CMP_OP: u16 = 2;

const NFTA_CMP_DATA: u16 = 3;

const NFTA_BITWISE_SREG: u16 = 1;

const NFTA_BITWISE_DREG: u16 = 2;

const NFTA_BITWISE_LEN: u16 = 3;

const NFTA_BITWISE_MASK: u16 = 4;

const NFTA_BITWISE_XOR: u16 = 5;

const NFTA_BITWISE_OP: u16 = 6;

const NFTA_BITWISE_DATA: u16 = 7;

const NFTA_BITWISE_SREG2: u16 = 8;

const NFTA_META_DREG: u16 = 1;

const NFTA_META_KEY: u16 = 2;

const NFTA_META_SREG: u16 = 3;

const NFTA_IMMEDIATE_DREG: u16 = 1;

const NFTA_IMMEDIATE_DATA: u16 = 2;

const NFTA_RANGE_SREG: u16 = 1;

const NFTA_RANGE_OP: u16 = 2;

const NFTA_RANGE_FROM_DATA: u16 = 3;

const NFTA_RANGE_TO_DATA: u16 = 4;

const NFTA_BYTEORDER_SREG: u16 = 1;

const NFTA_BYTEORDER_DREG: u16 = 2;

const NFTA_BYTEORDER_OP: u16 = 3;

const NFTA_BYTEORDER_LEN: u16 = 4;

const NFTA_BYTEORDER_SIZE: u16 = 5;

const NFTA_LOOKUP_SET: u16 = 1;

const NFTA_LOOKUP_SREG: u16 = 2;

const NFTA_LOOKUP_DREG: u16 = 3;

const NFTA_LOOKUP_FLAGS: u16 = 5;

const NFT_LOOKUP_F_INV: u32 = 1;

const NFTA_DYNSET_SET_NAME: u16 = 1;

/// NFT_DATA_VERDICT: a vmap's data type.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

const NFTA_CT_DREG: u16 = 1;

const NFTA_CT_KEY: u16 = 2;

const NFTA_CT_DIRECTION: u16 = 3;

const NFTA_CT_SREG: u16 = 4;

/// NFT_META_* keys fpd loads.
mod meta {
    pub const LEN: u32 = 0;
    pub const PROTOCOL: u32 = 1;
    pub const MARK: u32 = 3;
    pub const IIF: u32 = 4;
    pub const OIF: u32 = 5;
    pub const IIFNAME: u32 = 6;
    pub const OIFNAME: u32 = 7;
    pub const NFPROTO: u32 = 15;
    pub const L4PROTO: u32 = 16;
    pub const PKTTYPE: u32 = 19;
}

/// NFT_CT_* keys fpd loads.
mod ct {
    pub const STATE: u32 = 0;
    pub const DIRECTION: u32 = 1;
    pub const STATUS: u32 = 2;
    pub const MARK: u32 = 3;
}

/// Verdict codes (NF_* and NFT_*).
const NF_DROP: i32 = 0;

const NF_ACCEPT: i32 = 1;

const NF_QUEUE: i32 = 3;

const NFT_CONTINUE: i32 = -1;

const NFT_BREAK: i32 = -2;

const NFT_JUMP: i32 = -3;

const NFT_GOTO: i32 = -4;

const NFT_RETURN: i32 = -5;

const NF_VERDICT_MASK: i32 = 0xff;

/// NFT_JUMP_STACK_SIZE.
/// Rules one packet may visit in one base chain before fpd gives up.
const MAX_RULE_VISITS: u32 = 1 << 16;

const JUMP_STACK: usize = 16;

/// Words of `struct nft_regs`.
const REG_WORDS: usize = 20;

/// The register file as the kernel's: 32-bit words in host order, each
/// written whole (a byte store followed by a wider load would stall the
/// CPU's store forwarding, per comparison).
type Regs = [u32; REG_WORDS];

/// The `words` words at `at` as their bytes read big-endian, left-aligned:
/// comparing two such values masked to a length compares those bytes as
/// the kernel's `memcmp` does.
#[inline]
fn load_be(regs: &Regs, at: usize, words: usize) -> u128 {
    let mut acc = 0u128;
    for (i, w) in regs[at..at + words].iter().enumerate() {
        acc |= u128::from(u32::from_be(*w)) << (96 - 32 * i);
    }
    acc
}

/// Writes `bytes` from word `at` on, as the kernel copies data into a
/// register: the last word's bytes past the data are zeroed.
#[inline]
fn store_bytes(regs: &mut Regs, at: usize, bytes: &[u8]) {
    // The usual lengths without a copy call (protocols, ports, addresses).
    match *bytes {
        [a] => regs[at] = u32::from_ne_bytes([a, 0, 0, 0]),
        [a, b] => regs[at] = u32::from_ne_bytes([a, b, 0, 0]),
        [a, b, c, d] => regs[at] = u32::from_ne_bytes([a, b, c, d]),
        _ => {
            for (i, chunk) in bytes.chunks(4).enumerate() {
                let mut w = [0u8; 4];
                for (k, x) in chunk.iter().enumerate() {
                    w[k] = *x;
                }
                regs[at + i] = u32::from_ne_bytes(w);
            }
        }
    }
}

/// The bytes of `words` words from `at` (bitwise, byteorder).
fn bytes_of(regs: &Regs, at: usize, words: usize) -> [u8; REG_WORDS * 4] {
    let mut out = [0u8; REG_WORDS * 4];
    for (i, w) in regs[at..at + words].iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    out
}

/// `data` (at most 16 bytes) left-aligned as [`load16`] reads it, and
/// the mask of its length.
fn left_aligned(data: &[u8]) -> Result<(u128, u128), Reason> {
    if data.is_empty() || data.len() > 16 {
        return Err(Reason::BadExpression);
    }
    let mut b = [0u8; 16];
    b[..data.len()].copy_from_slice(data);
    let mask = u128::MAX << (8 * (16 - data.len()));
    Ok((u128::from_be_bytes(b), mask))
}

/// The IPS_* bits the synced status has (Conntrack::STATUS_SYNCED).
const CT_STATUS_SYNCED: u32 = fpc::Conntrack::STATUS_SYNCED;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CmpOp {
    /// Whether the register compared `ord` to the data passes.
    #[inline]
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        match self {
            CmpOp::Eq => ord.is_eq(),
            CmpOp::Neq => ord.is_ne(),
            CmpOp::Lt => ord.is_lt(),
            CmpOp::Lte => ord.is_le(),
            CmpOp::Gt => ord.is_gt(),
            CmpOp::Gte => ord.is_ge(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BitOp {
    /// Per word, host order (zero-padded to the last word, as the
    /// kernel's zeroed `nft_data`).
    MaskXor {
        mask: Vec<u32>,
        xor: Vec<u32>,
    },
    Shl(u32),
    Shr(u32),
    And(usize),
    Or(usize),
    Xor(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Drop,
    Continue,
    Break,
    Return,
    Jump(usize),
    Goto(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Load `len` bytes at `offset` of the network (`transport` false) or
    /// transport header into the register at byte `dreg`.
    Payload {
        transport: bool,
        offset: usize,
        len: usize,
        dreg: usize,
    },
    /// `data` and `mask` as [`left_aligned`] makes them, over `words`
    /// register words.
    Cmp {
        sreg: usize,
        words: usize,
        op: CmpOp,
        data: u128,
        mask: u128,
    },
    Range {
        sreg: usize,
        words: usize,
        eq: bool,
        from: u128,
        to: u128,
        mask: u128,
    },
    Bitwise {
        sreg: usize,
        dreg: usize,
        len: usize,
        op: BitOp,
    },
    /// Host to network order or back, in words of `size` bytes
    /// (`nft_byteorder_eval`).
    ByteOrder {
        sreg: usize,
        dreg: usize,
        len: usize,
        size: usize,
    },
    Meta {
        key: u32,
        dreg: usize,
    },
    Ct {
        key: u32,
        dreg: usize,
    },
    Data {
        dreg: usize,
        data: Vec<u8>,
    },
    /// A payload load of at most 4 bytes and the `cmp` of its register
    /// that follows it, in one step (the load is still stored: a later
    /// expression may read it). `data` and `mask` are of the word read
    /// big-endian, as [`load_be`].
    PayloadCmp {
        transport: bool,
        offset: usize,
        len: usize,
        reg: usize,
        op: CmpOp,
        data: u32,
        mask: u32,
    },
    /// A meta load and the one-word `cmp` of its register after it.
    MetaCmp {
        key: u32,
        reg: usize,
        op: CmpOp,
        data: u32,
        mask: u32,
    },
    /// A lookup in `Program::sets[set]` of the key at word `sreg`.
    Lookup {
        set: usize,
        sreg: usize,
        dest: LookupDest,
        invert: bool,
    },
    Verdict(Verdict),
    Counter,
    Unsupported(Reason),
}

/// Where a lookup puts what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookupDest {
    /// A plain set: found or not.
    None,
    /// A vmap: the element's verdict.
    Verdict,
    /// A map: the element's data, into the register at this word.
    Reg(usize),
}

/// What a set's element maps to, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ElemValue {
    None,
    Data(Vec<u8>),
    Verdict(Verdict),
}

/// A synced set, ready for lookups (see the module documentation).
#[derive(Debug, Default)]
struct Set {
    key_len: usize,
    /// Why lookups in it go to Linux, if they do.
    unusable: Option<Reason>,
    interval: bool,
    /// Exact keys, to their value's index in `values`.
    exact: HashMap<Box<[u8]>, usize>,
    /// Interval sets: (key, is a start, value index of a start) sorted
    /// by key, an end before a start of the same key.
    bounds: Vec<(Box<[u8]>, bool, usize)>,
    catchall: Option<usize>,
    values: Vec<ElemValue>,
    /// The chains its verdicts jump or go to.
    targets: Vec<usize>,
}

impl Set {
    /// The value index of `key`'s element, if it has one.
    fn find(&self, key: &[u8]) -> Option<usize> {
        if !self.interval {
            return self.exact.get(key).copied();
        }
        let after = self.bounds.partition_point(|(k, _, _)| &**k <= key);
        match after.checked_sub(1).map(|i| &self.bounds[i]) {
            Some((_, true, value)) => Some(*value),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Chain {
    /// Each rule's steps.
    rules: Vec<Vec<Step>>,
    /// A base chain's policy (true: accept).
    policy_accept: bool,
    reads_conntrack: bool,
}

/// NFTA_DATA_VALUE bytes, or a verdict (code, chain name).
enum Data<'a> {
    Value(&'a [u8]),
    Verdict(i32, Option<&'a [u8]>),
}

/// A table's set names, to their index and definition.
type SetNames<'a> = HashMap<&'a str, (usize, &'a NftSet)>;

/// The context a rule is compiled in.
struct Ctx<'a> {
    /// Chain names of the rule's table, to their index.
    names: &'a HashMap<&'a str, usize>,
    /// Set names of the rule's table, to their index and definition.
    sets: &'a SetNames<'a>,
    /// Whether the chain (as a base chain) runs before conntrack.
    before_ct: bool,
}

/// Every chain of the non-dormant tables, compiled, and the sets their
/// rules look up.
#[derive(Debug, Default)]
pub(super) struct Program {
    chains: Vec<Chain>,
    sets: Vec<Set>,
}

impl Program {
    /// Compiles `chains` (their index here is their index in the
    /// program), the rules of `rules` that belong to them, and the sets
    /// with their elements.
    pub fn build<'a>(
        chains: &[&NftChain],
        rules: impl Iterator<Item = &'a NftRule>,
        sets: impl Iterator<Item = &'a NftSet>,
        elems: impl Iterator<Item = &'a NftSetElem>,
    ) -> Program {
        let rules: Vec<&NftRule> = rules.collect();
        let mut by_table: HashMap<(u8, &str), HashMap<&str, usize>> = HashMap::new();
        for (i, c) in chains.iter().enumerate() {
            by_table
                .entry((c.family, c.table.as_str()))
                .or_default()
                .insert(c.name.as_str(), i);
        }
        let empty = HashMap::new();
        let sets: Vec<&NftSet> = sets.collect();
        let mut sets_by_table: HashMap<(u8, &str), SetNames<'_>> = HashMap::new();
        for (i, s) in sets.iter().enumerate() {
            sets_by_table
                .entry((s.family, s.table.as_str()))
                .or_default()
                .insert(s.name.as_str(), (i, *s));
        }
        let mut per_set: Vec<Vec<&NftSetElem>> = vec![Vec::new(); sets.len()];
        for e in elems {
            if let Some(&(i, _)) = sets_by_table
                .get(&(e.family, e.table.as_str()))
                .and_then(|m| m.get(e.set.as_str()))
            {
                per_set[i].push(e);
            }
        }
        let dynamic = dynamic_sets(&rules);
        let mut program = Program {
            chains: chains
                .iter()
                .map(|c| Chain {
                    rules: Vec::new(),
                    policy_accept: c.policy != Some(0),
                    reads_conntrack: false,
                })
                .collect(),
            sets: sets
                .iter()
                .zip(&per_set)
                .map(|(s, elems)| {
                    let names = by_table
                        .get(&(s.family, s.table.as_str()))
                        .unwrap_or(&empty);
                    let dynamic =
                        dynamic.contains(&(s.family, s.table.as_str(), s.name.as_bytes().to_vec()));
                    compile_set(s, elems, names, dynamic)
                })
                .collect(),
        };
        let no_sets = HashMap::new();
        let mut per_chain: Vec<Vec<&NftRule>> = vec![Vec::new(); chains.len()];
        for r in rules {
            let names = by_table
                .get(&(r.family, r.table.as_str()))
                .unwrap_or(&empty);
            let Some(&index) = names.get(r.chain.as_str()) else {
                continue; // a rule of a dormant table, or not yet its chain
            };
            per_chain[index].push(r);
        }
        for (index, rules) in per_chain.into_iter().enumerate() {
            let Some(ordered) = in_order(rules) else {
                // The kernel's order is not known (yet): Linux decides.
                program.chains[index].rules = vec![vec![Step::Unsupported(Reason::RuleOrder)]];
                continue;
            };
            let c = chains[index];
            let names = &by_table[&(c.family, c.table.as_str())];
            let ctx = Ctx {
                names,
                sets: sets_by_table
                    .get(&(c.family, c.table.as_str()))
                    .unwrap_or(&no_sets),
                before_ct: c.hook.is_some_and(|(h, p)| before_conntrack(h, p)),
            };
            for r in ordered {
                let steps = compile_rule(&r.exprs, &ctx);
                let chain = &mut program.chains[index];
                chain.reads_conntrack |= steps.iter().any(|s| matches!(s, Step::Ct { .. }));
                chain.rules.push(steps);
            }
        }
        program
    }

    /// Whether a ct expression is in chain `index` or a chain it jumps
    /// or goes to, however deep (built off the hot path).
    pub fn reaches_conntrack(&self, index: usize) -> bool {
        let mut seen = vec![false; self.chains.len()];
        let mut todo = vec![index];
        while let Some(i) = todo.pop() {
            let Some(c) = self.chains.get(i) else {
                continue;
            };
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            if c.reads_conntrack {
                return true;
            }
            for step in c.rules.iter().flatten() {
                match step {
                    Step::Verdict(Verdict::Jump(to) | Verdict::Goto(to)) => todo.push(*to),
                    Step::Lookup { set, .. } => todo.extend(&self.sets[*set].targets),
                    _ => {}
                }
            }
        }
        false
    }

    /// The verdict of base chain `start` for `pkt` (`nft_do_chain`).
    pub fn run(
        &self,
        start: usize,
        pkt: &Packet<'_>,
        ct: Option<&Tracked<'_>>,
        counters: &mut NfCounters,
    ) -> NfVerdict {
        let Some(base) = self.chains.get(start) else {
            return NfVerdict::Linux(Reason::JumpDepth);
        };
        let mut stack = [(0usize, 0usize); JUMP_STACK];
        let mut depth = 0;
        let (mut chain, mut rule) = (start, 0);
        // The kernel refuses loops at load; rules synced half-way through
        // a change could still form one: never spin on it.
        let mut budget = MAX_RULE_VISITS;
        let mut regs: Regs = [0; REG_WORDS];
        loop {
            let Some(steps) = self.chains[chain].rules.get(rule) else {
                // The end of a chain: back to the caller, or the policy.
                if depth == 0 {
                    return policy(base);
                }
                depth -= 1;
                (chain, rule) = stack[depth];
                continue;
            };
            budget -= 1;
            if budget == 0 {
                return NfVerdict::Linux(Reason::JumpDepth);
            }
            let v = match run_rule(steps, &self.sets, &mut regs, pkt, ct, counters) {
                Ok(v) => v,
                Err(reason) => return NfVerdict::Linux(reason),
            };
            match v {
                Verdict::Continue | Verdict::Break => rule += 1,
                Verdict::Accept => return NfVerdict::Accept,
                Verdict::Drop => return NfVerdict::Drop,
                Verdict::Return => {
                    if depth == 0 {
                        return policy(base);
                    }
                    depth -= 1;
                    (chain, rule) = stack[depth];
                }
                Verdict::Jump(to) => {
                    if depth == JUMP_STACK {
                        return NfVerdict::Linux(Reason::JumpDepth);
                    }
                    stack[depth] = (chain, rule + 1);
                    depth += 1;
                    (chain, rule) = (to, 0);
                }
                Verdict::Goto(to) => (chain, rule) = (to, 0),
            }
        }
    }
}
