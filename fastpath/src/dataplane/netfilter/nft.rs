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

use std::collections::{HashMap, HashSet};

use super::{
    before_conntrack, Direction, NfCounters, NfVerdict, Packet, Reason, Tracked, NFPROTO_IPV4,
    NFPROTO_IPV6,
};
use fpc::{
    elem_flags, set_flags, NftChain, NftElemData, NftRule, NftSet, NftSetElem, PREV_UNKNOWN,
};

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

/// Every chain of the non-dormant tables, compiled, and the sets their
/// rules look up.
#[derive(Debug, Default)]
pub(super) struct Program {
    chains: Vec<Chain>,
    sets: Vec<Set>,
}

/// Netlink attributes of `b`: (type without the nested and byte-order
/// flags, value).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Reason>> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            b = &[];
            return Some(Err(Reason::BadExpression));
        }
        let value = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some(Ok((kind, value)))
    })
}

fn be32(v: &[u8]) -> Result<u32, Reason> {
    v.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(Reason::BadExpression)
}

/// The word index in the register file of register number `reg` holding
/// `len` bytes (NFT_REG_1..4 or NFT_REG32_00..15; nft_parse_register).
fn register(reg: u32, len: usize) -> Result<usize, Reason> {
    let word = match reg {
        1..=4 => reg as usize * 4,
        8..=23 => reg as usize - 4,
        _ => return Err(Reason::BadExpression),
    };
    if len == 0 || len > 64 || word * 4 + len > REG_WORDS * 4 {
        return Err(Reason::BadExpression);
    }
    Ok(word)
}

/// The expressions of `exprs` as (name, data) pairs.
fn expressions(mut b: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), Reason>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = (b.get(..n)?, b.get(n..)?);
            b = rest;
            Some(head)
        };
        let item = (|| {
            let nlen = take(2)?;
            let name = take(usize::from(u16::from_be_bytes([nlen[0], nlen[1]])))?;
            let dlen = take(4)?;
            let data = take(u32::from_be_bytes([dlen[0], dlen[1], dlen[2], dlen[3]]) as usize)?;
            Some((name, data))
        })();
        if item.is_none() {
            b = &[];
        }
        Some(item.ok_or(Reason::BadExpression))
    })
}

/// NFTA_DATA_VALUE bytes, or a verdict (code, chain name).
enum Data<'a> {
    Value(&'a [u8]),
    Verdict(i32, Option<&'a [u8]>),
}

fn data(v: &[u8]) -> Result<Data<'_>, Reason> {
    for a in attrs(v) {
        let (k, v) = a?;
        match k {
            NFTA_DATA_VALUE => return Ok(Data::Value(v)),
            NFTA_DATA_VERDICT => {
                let (mut code, mut chain) = (None, None);
                for a in attrs(v) {
                    let (k, v) = a?;
                    match k {
                        NFTA_VERDICT_CODE => code = Some(be32(v)? as i32),
                        NFTA_VERDICT_CHAIN => {
                            chain = Some(v.split(|c| *c == 0).next().unwrap_or_default())
                        }
                        _ => {}
                    }
                }
                return Ok(Data::Verdict(code.ok_or(Reason::BadExpression)?, chain));
            }
            _ => {}
        }
    }
    Err(Reason::BadExpression)
}

fn value(v: &[u8]) -> Result<Vec<u8>, Reason> {
    match data(v)? {
        Data::Value(b) if !b.is_empty() && b.len() <= 64 => Ok(b.to_vec()),
        _ => Err(Reason::BadExpression),
    }
}

/// The attributes of one expression's data, by type (the last wins).
fn fields(data: &[u8]) -> Result<[Option<&[u8]>; 9], Reason> {
    let mut out = [None; 9];
    for a in attrs(data) {
        let (k, v) = a?;
        if let Some(slot) = out.get_mut(usize::from(k)) {
            *slot = Some(v);
        }
    }
    Ok(out)
}

fn need<'a>(f: &[Option<&'a [u8]>; 9], k: u16) -> Result<&'a [u8], Reason> {
    f[usize::from(k)].ok_or(Reason::BadExpression)
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

fn compile_step(name: &[u8], d: &[u8], ctx: &Ctx<'_>) -> Result<Step, Reason> {
    let f = fields(d)?;
    Ok(match name {
        b"payload" => {
            if f[usize::from(NFTA_PAYLOAD_SREG)].is_some() {
                return Ok(Step::Unsupported(Reason::Mangle));
            }
            let len = be32(need(&f, NFTA_PAYLOAD_LEN)?)? as usize;
            let transport = match be32(need(&f, NFTA_PAYLOAD_BASE)?)? {
                NFT_PAYLOAD_NETWORK_HEADER => false,
                NFT_PAYLOAD_TRANSPORT_HEADER => true,
                _ => return Ok(Step::Unsupported(Reason::LinkLayer)),
            };
            Step::Payload {
                transport,
                offset: be32(need(&f, NFTA_PAYLOAD_OFFSET)?)? as usize,
                len,
                dreg: register(be32(need(&f, NFTA_PAYLOAD_DREG)?)?, len)?,
            }
        }
        b"cmp" => {
            let data = value(need(&f, NFTA_CMP_DATA)?)?;
            let op = match be32(need(&f, NFTA_CMP_OP)?)? {
                0 => CmpOp::Eq,
                1 => CmpOp::Neq,
                2 => CmpOp::Lt,
                3 => CmpOp::Lte,
                4 => CmpOp::Gt,
                5 => CmpOp::Gte,
                _ => return Err(Reason::BadExpression),
            };
            let sreg = register(be32(need(&f, NFTA_CMP_SREG)?)?, data.len())?;
            let words = data.len().div_ceil(4);
            let (data, mask) = left_aligned(&data)?;
            Step::Cmp {
                sreg,
                words,
                op,
                data,
                mask,
            }
        }
        b"range" => {
            let from = value(need(&f, NFTA_RANGE_FROM_DATA)?)?;
            let to = value(need(&f, NFTA_RANGE_TO_DATA)?)?;
            if from.len() != to.len() {
                return Err(Reason::BadExpression);
            }
            let eq = match be32(need(&f, NFTA_RANGE_OP)?)? {
                0 => true,
                1 => false,
                _ => return Err(Reason::BadExpression),
            };
            let sreg = register(be32(need(&f, NFTA_RANGE_SREG)?)?, from.len())?;
            let words = from.len().div_ceil(4);
            let ((from, mask), (to, _)) = (left_aligned(&from)?, left_aligned(&to)?);
            Step::Range {
                sreg,
                words,
                eq,
                from,
                to,
                mask,
            }
        }
        b"bitwise" => {
            let len = be32(need(&f, NFTA_BITWISE_LEN)?)? as usize;
            let op = match f[usize::from(NFTA_BITWISE_OP)].map(be32).transpose()? {
                None | Some(0) => {
                    let mask = value(need(&f, NFTA_BITWISE_MASK)?)?;
                    let xor = value(need(&f, NFTA_BITWISE_XOR)?)?;
                    if mask.len() != len || xor.len() != len {
                        return Err(Reason::BadExpression);
                    }
                    let words = |b: &[u8]| -> Vec<u32> {
                        b.chunks(4)
                            .map(|c| {
                                let mut w = [0u8; 4];
                                w[..c.len()].copy_from_slice(c);
                                u32::from_ne_bytes(w)
                            })
                            .collect()
                    };
                    BitOp::MaskXor {
                        mask: words(&mask),
                        xor: words(&xor),
                    }
                }
                Some(op @ (1 | 2)) => {
                    let shift = value(need(&f, NFTA_BITWISE_DATA)?)?;
                    let shift = u32::from_ne_bytes(
                        shift
                            .get(..4)
                            .ok_or(Reason::BadExpression)?
                            .try_into()
                            .map_err(|_| Reason::BadExpression)?,
                    );
                    // The kernel refuses shifts of 32 and more; 0 would be
                    // a C shift by 32 in its carry: leave it to Linux.
                    if shift == 0 || shift >= 32 {
                        return Ok(Step::Unsupported(Reason::BadExpression));
                    }
                    if op == 1 {
                        BitOp::Shl(shift)
                    } else {
                        BitOp::Shr(shift)
                    }
                }
                Some(op @ 3..=5) => {
                    let sreg2 = register(be32(need(&f, NFTA_BITWISE_SREG2)?)?, len)?;
                    match op {
                        3 => BitOp::And(sreg2),
                        4 => BitOp::Or(sreg2),
                        _ => BitOp::Xor(sreg2),
                    }
                }
                Some(_) => return Ok(Step::Unsupported(Reason::Expression)),
            };
            Step::Bitwise {
                sreg: register(be32(need(&f, NFTA_BITWISE_SREG)?)?, len)?,
                dreg: register(be32(need(&f, NFTA_BITWISE_DREG)?)?, len)?,
                len,
                op,
            }
        }
        b"byteorder" => {
            let len = be32(need(&f, NFTA_BYTEORDER_LEN)?)? as usize;
            let size = be32(need(&f, NFTA_BYTEORDER_SIZE)?)? as usize;
            // NFT_BYTEORDER_NTOH (0) and _HTON (1) are the same swap.
            if be32(need(&f, NFTA_BYTEORDER_OP)?)? > 1 {
                return Err(Reason::BadExpression);
            }
            if !matches!(size, 2 | 4 | 8) {
                return Err(Reason::BadExpression);
            }
            Step::ByteOrder {
                sreg: register(be32(need(&f, NFTA_BYTEORDER_SREG)?)?, len)?,
                dreg: register(be32(need(&f, NFTA_BYTEORDER_DREG)?)?, len)?,
                len,
                size,
            }
        }
        b"meta" => {
            if f[usize::from(NFTA_META_SREG)].is_some() {
                return Ok(Step::Unsupported(Reason::Mangle));
            }
            let key = be32(need(&f, NFTA_META_KEY)?)?;
            let len = match key {
                meta::LEN | meta::MARK | meta::IIF | meta::OIF => 4,
                meta::PROTOCOL => 2,
                meta::IIFNAME | meta::OIFNAME => 16,
                meta::NFPROTO | meta::L4PROTO | meta::PKTTYPE => 1,
                _ => return Ok(Step::Unsupported(Reason::MetaKey)),
            };
            Step::Meta {
                key,
                dreg: register(be32(need(&f, NFTA_META_DREG)?)?, len)?,
            }
        }
        b"ct" => {
            if f[usize::from(NFTA_CT_SREG)].is_some() {
                return Ok(Step::Unsupported(Reason::Mangle));
            }
            if ctx.before_ct || f[usize::from(NFTA_CT_DIRECTION)].is_some() {
                return Ok(Step::Unsupported(Reason::CtKey));
            }
            let key = be32(need(&f, NFTA_CT_KEY)?)?;
            let len = match key {
                ct::STATE | ct::STATUS | ct::MARK => 4,
                ct::DIRECTION => 1,
                _ => return Ok(Step::Unsupported(Reason::CtKey)),
            };
            Step::Ct {
                key,
                dreg: register(be32(need(&f, NFTA_CT_DREG)?)?, len)?,
            }
        }
        b"immediate" => {
            let dreg = be32(need(&f, NFTA_IMMEDIATE_DREG)?)?;
            match data(need(&f, NFTA_IMMEDIATE_DATA)?)? {
                Data::Verdict(code, chain) if dreg == 0 => {
                    Step::Verdict(verdict(code, chain, ctx.names)?)
                }
                Data::Value(v) if dreg != 0 && !v.is_empty() && v.len() <= 64 => Step::Data {
                    dreg: register(dreg, v.len())?,
                    data: v.to_vec(),
                },
                _ => return Err(Reason::BadExpression),
            }
        }
        b"counter" => Step::Counter,
        b"lookup" => {
            let name = need(&f, NFTA_LOOKUP_SET)?;
            let name = std::str::from_utf8(name.split(|c| *c == 0).next().unwrap_or_default())
                .map_err(|_| Reason::BadExpression)?;
            let Some(&(set, def)) = ctx.sets.get(name) else {
                return Ok(Step::Unsupported(Reason::SetLookup));
            };
            let sreg = register(be32(need(&f, NFTA_LOOKUP_SREG)?)?, def.key_len as usize)
                .map_err(|_| Reason::SetLookup)?;
            let invert = match f[usize::from(NFTA_LOOKUP_FLAGS)] {
                Some(v) => be32(v)? & NFT_LOOKUP_F_INV != 0,
                None => false,
            };
            let dest = match f[usize::from(NFTA_LOOKUP_DREG)].map(be32).transpose()? {
                None => LookupDest::None,
                Some(0) if def.data_type == NFT_DATA_VERDICT => LookupDest::Verdict,
                Some(r) if def.data_type != NFT_DATA_VERDICT => {
                    LookupDest::Reg(register(r, def.data_len as usize)?)
                }
                Some(_) => return Err(Reason::BadExpression),
            };
            Step::Lookup {
                set,
                sreg,
                dest,
                invert,
            }
        }
        b"dynset" => Step::Unsupported(Reason::SetLookup),
        b"nat" | b"masq" | b"redir" => Step::Unsupported(Reason::NatRule),
        b"reject" => Step::Unsupported(Reason::Reject),
        b"queue" => Step::Unsupported(Reason::Queue),
        b"notrack" | b"dup" | b"fwd" | b"exthdr" | b"tproxy" | b"synproxy" => {
            Step::Unsupported(Reason::Mangle)
        }
        _ => Step::Unsupported(Reason::Expression),
    })
}

fn verdict(
    code: i32,
    chain: Option<&[u8]>,
    names: &HashMap<&str, usize>,
) -> Result<Verdict, Reason> {
    let target = || -> Result<usize, Reason> {
        let name = std::str::from_utf8(chain.ok_or(Reason::BadExpression)?)
            .map_err(|_| Reason::BadExpression)?;
        names.get(name).copied().ok_or(Reason::JumpDepth)
    };
    Ok(match code {
        NFT_CONTINUE => Verdict::Continue,
        NFT_BREAK => Verdict::Break,
        NFT_RETURN => Verdict::Return,
        NFT_JUMP => Verdict::Jump(target()?),
        NFT_GOTO => Verdict::Goto(target()?),
        c if c & NF_VERDICT_MASK == NF_ACCEPT && c == NF_ACCEPT => Verdict::Accept,
        // NF_DROP may carry an errno in its upper bits (NF_DROP_ERR):
        // still a drop for a forwarded packet.
        c if c & NF_VERDICT_MASK == NF_DROP => Verdict::Drop,
        c if c & NF_VERDICT_MASK == NF_QUEUE => return Err(Reason::Queue),
        _ => return Err(Reason::BadExpression),
    })
}

/// One rule's steps: an expression that does not decode (or whose
/// verdict does not resolve) becomes an unsupported step in its place.
fn compile_rule(exprs: &[u8], ctx: &Ctx<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    for e in expressions(exprs) {
        let step = e.and_then(|(name, d)| compile_step(name, d, ctx));
        steps.push(step.unwrap_or_else(Step::Unsupported));
    }
    check_ct_status(&mut steps);
    fuse(steps)
}

/// Joins each small payload load, and each meta load, with the one-word
/// comparison of its register that follows it: the same result, half
/// the dispatch.
fn fuse(steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    let mut it = steps.into_iter().peekable();
    while let Some(step) = it.next() {
        if let Step::Payload {
            transport,
            offset,
            len,
            dreg,
        } = step
        {
            if let Some(&Step::Cmp {
                sreg,
                words: 1,
                op,
                data,
                mask,
            }) = it.peek()
            {
                if sreg == dreg && len <= 4 {
                    out.push(Step::PayloadCmp {
                        transport,
                        offset,
                        len,
                        reg: dreg,
                        op,
                        data: (data >> 96) as u32,
                        mask: (mask >> 96) as u32,
                    });
                    it.next();
                    continue;
                }
            }
        }
        if let Step::Meta { key, dreg } = step {
            if let Some(&Step::Cmp {
                sreg,
                words: 1,
                op,
                data,
                mask,
            }) = it.peek()
            {
                if sreg == dreg {
                    out.push(Step::MetaCmp {
                        key,
                        reg: dreg,
                        op,
                        data: (data >> 96) as u32,
                        mask: (mask >> 96) as u32,
                    });
                    it.next();
                    continue;
                }
            }
        }
        out.push(step);
    }
    out
}

fn check_ct_status(steps: &mut [Step]) {
    // `ct status` is exact only through a mask that keeps to the synced
    // bits (the kernel's status also has HELPER, OFFLOAD, ...).
    for i in 0..steps.len() {
        if let Step::Ct {
            key: ct::STATUS,
            dreg,
        } = steps[i]
        {
            let masked = matches!(steps.get(i + 1), Some(Step::Bitwise {
                sreg, dreg: d2, len: 4, op: BitOp::MaskXor { mask, xor }
            }) if *sreg == dreg && *d2 == dreg && xor.iter().all(|w| *w == 0)
                && mask[0] & !CT_STATUS_SYNCED == 0);
            if !masked {
                steps[i] = Step::Unsupported(Reason::CtStatus);
            }
        }
    }
}

/// A chain's rules in the kernel's order, following `prev` from 0; None
/// when a place is unknown or the links are not one list of them all.
fn in_order(rules: Vec<&NftRule>) -> Option<Vec<&NftRule>> {
    let mut by_prev: HashMap<u64, &NftRule> = HashMap::with_capacity(rules.len());
    for r in &rules {
        if r.prev == PREV_UNKNOWN || by_prev.insert(r.prev, r).is_some() {
            return None;
        }
    }
    let mut out = Vec::with_capacity(rules.len());
    let mut at = 0;
    while let Some(r) = by_prev.get(&at) {
        if out.len() == rules.len() {
            return None; // a cycle
        }
        out.push(*r);
        at = r.handle;
    }
    (out.len() == rules.len()).then_some(out)
}

/// Whether a rule's expressions offload flows to a flowtable
/// (`flow add @ft`, the kernel's `flow_offload` expression).
pub(super) fn offloads_flows(exprs: &[u8]) -> bool {
    expressions(exprs)
        .flatten()
        .any(|(name, _)| name == b"flow_offload")
}

/// The sets any rule's `dynset` writes to (from the packet path,
/// without an event): (family, table, set).
fn dynamic_sets<'a>(rules: &[&'a NftRule]) -> HashSet<(u8, &'a str, Vec<u8>)> {
    let mut out = HashSet::new();
    for r in rules {
        for (name, d) in expressions(&r.exprs).flatten() {
            if name != b"dynset" {
                continue;
            }
            for (k, v) in attrs(d).flatten() {
                if k == NFTA_DYNSET_SET_NAME {
                    let set = v.split(|c| *c == 0).next().unwrap_or_default();
                    out.insert((r.family, r.table.as_str(), set.to_vec()));
                }
            }
        }
    }
    out
}

/// Compiles one set and its elements; `names` are the chains of its
/// table (for a vmap's jumps).
fn compile_set(
    def: &NftSet,
    elems: &[&NftSetElem],
    names: &HashMap<&str, usize>,
    dynamic: bool,
) -> Set {
    let mut set = Set {
        key_len: def.key_len as usize,
        interval: def.flags & set_flags::INTERVAL != 0,
        ..Set::default()
    };
    if let Err(reason) = fill_set(&mut set, def, elems, names, dynamic) {
        set = Set {
            key_len: set.key_len,
            unusable: Some(reason),
            ..Set::default()
        };
    }
    set
}

fn fill_set(
    set: &mut Set,
    def: &NftSet,
    elems: &[&NftSetElem],
    names: &HashMap<&str, usize>,
    dynamic: bool,
) -> Result<(), Reason> {
    let changing = set_flags::TIMEOUT | set_flags::EVAL | set_flags::OBJECT;
    if dynamic || def.flags & changing != 0 || def.timeout || def.exprs {
        return Err(Reason::SetLookup);
    }
    if set.key_len == 0 || set.key_len > 64 || set.interval && def.fields.len() > 1 {
        return Err(Reason::SetLookup);
    }
    let map = def.flags & set_flags::MAP != 0;
    let vmap = map && def.data_type == NFT_DATA_VERDICT;
    for e in elems {
        if e.stateful || !e.key_end.is_empty() {
            return Err(Reason::SetLookup);
        }
        let end = e.flags & elem_flags::INTERVAL_END != 0;
        let value = match &e.data {
            NftElemData::None if !map || end => ElemValue::None,
            NftElemData::Value(v) if map && !vmap && v.len() == def.data_len as usize => {
                ElemValue::Data(v.clone())
            }
            NftElemData::Verdict { code, chain } if vmap => {
                let chain = (!chain.is_empty()).then_some(chain.as_bytes());
                let v = verdict(*code, chain, names)?;
                if let Verdict::Jump(to) | Verdict::Goto(to) = v {
                    set.targets.push(to);
                }
                ElemValue::Verdict(v)
            }
            _ => return Err(Reason::SetLookup),
        };
        let index = set.values.len();
        set.values.push(value);
        if e.flags & elem_flags::CATCHALL != 0 {
            set.catchall = Some(index);
            continue;
        }
        if e.key.len() != set.key_len {
            return Err(Reason::SetLookup);
        }
        let key: Box<[u8]> = e.key.clone().into();
        if set.interval {
            set.bounds.push((key, !end, index));
        } else if end {
            return Err(Reason::SetLookup);
        } else {
            set.exact.insert(key, index);
        }
    }
    // At one key an end (false) sorts before a start (true).
    set.bounds.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(())
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

fn policy(base: &Chain) -> NfVerdict {
    if base.policy_accept {
        NfVerdict::Accept
    } else {
        NfVerdict::Drop
    }
}

/// Runs one rule: its verdict (`Continue` when it ran to its end without
/// one), or the reason it needs Linux.
fn run_rule(
    steps: &[Step],
    sets: &[Set],
    regs: &mut Regs,
    pkt: &Packet<'_>,
    ctx: Option<&Tracked<'_>>,
    counters: &mut NfCounters,
) -> Result<Verdict, Reason> {
    for step in steps {
        match step {
            Step::Payload {
                transport,
                offset,
                len,
                dreg,
            } => {
                let base = if *transport { pkt.thoff } else { 0 };
                let Some(src) = pkt.l3.get(base + offset..base + offset + len) else {
                    return Ok(Verdict::Break);
                };
                store_bytes(regs, *dreg, src);
            }
            Step::Cmp {
                sreg,
                words,
                op,
                data,
                mask,
            } => {
                if !op.holds((load_be(regs, *sreg, *words) & mask).cmp(data)) {
                    return Ok(Verdict::Break);
                }
            }
            Step::PayloadCmp {
                transport,
                offset,
                len,
                reg,
                op,
                data,
                mask,
            } => {
                let base = if *transport { pkt.thoff } else { 0 };
                let Some(src) = pkt.l3.get(base + offset..base + offset + len) else {
                    return Ok(Verdict::Break);
                };
                store_bytes(regs, *reg, src);
                if !op.holds((u32::from_be(regs[*reg]) & mask).cmp(data)) {
                    return Ok(Verdict::Break);
                }
            }
            Step::Range {
                sreg,
                words,
                eq,
                from,
                to,
                mask,
            } => {
                let x = load_be(regs, *sreg, *words) & mask;
                if (x >= *from && x <= *to) != *eq {
                    return Ok(Verdict::Break);
                }
            }
            Step::Bitwise {
                sreg,
                dreg,
                len,
                op,
            } => bitwise(regs, *sreg, *dreg, *len, op),
            Step::MetaCmp {
                key,
                reg,
                op,
                data,
                mask,
            } => {
                if !load_meta(regs, *key, *reg, pkt)
                    || !op.holds((u32::from_be(regs[*reg]) & mask).cmp(data))
                {
                    return Ok(Verdict::Break);
                }
            }
            Step::ByteOrder {
                sreg,
                dreg,
                len,
                size,
            } => {
                let words = len.div_ceil(4);
                let mut b = bytes_of(regs, *sreg, words);
                for chunk in b[..len / size * size].chunks_exact_mut(*size) {
                    // NTOH and HTON alike: a swap on a little-endian host,
                    // nothing on a big-endian one.
                    if cfg!(target_endian = "little") {
                        chunk.reverse();
                    }
                }
                // The destination's words past the converted bytes keep
                // the source's (dst and src are usually one register).
                let keep = bytes_of(regs, *dreg, words);
                b[len / size * size..words * 4]
                    .copy_from_slice(&keep[len / size * size..words * 4]);
                for i in 0..words {
                    regs[dreg + i] =
                        u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
                }
            }
            Step::Meta { key, dreg } => {
                if !load_meta(regs, *key, *dreg, pkt) {
                    return Ok(Verdict::Break);
                }
            }
            Step::Ct { key, dreg } => {
                let Some(t) = ctx else {
                    // Only a stateless ruleset is evaluated without an
                    // entry, and it has no ct expression.
                    return Err(Reason::NoConntrack);
                };
                regs[*dreg] = match *key {
                    ct::STATE => t.state,
                    ct::STATUS => t.entry.status(),
                    ct::MARK => t.entry.mark(),
                    _ => u32::from_ne_bytes([(t.dir == Direction::Reply).into(), 0, 0, 0]),
                };
            }
            Step::Data { dreg, data } => store_bytes(regs, *dreg, data),
            Step::Lookup {
                set,
                sreg,
                dest,
                invert,
            } => {
                let s = &sets[*set];
                if let Some(reason) = s.unusable {
                    return Err(reason);
                }
                let key = bytes_of(regs, *sreg, s.key_len.div_ceil(4));
                let hit = s.find(&key[..s.key_len]);
                // nft_lookup_eval: an inverted miss is found without an
                // element; a miss falls to the catch-all, or breaks.
                let found = if hit.is_some() != *invert {
                    hit
                } else {
                    match s.catchall {
                        Some(i) => Some(i),
                        None => return Ok(Verdict::Break),
                    }
                };
                match (dest, found.map(|i| &s.values[i])) {
                    (LookupDest::None, _) | (_, None) => {}
                    (LookupDest::Reg(d), Some(ElemValue::Data(v))) => store_bytes(regs, *d, v),
                    (LookupDest::Verdict, Some(ElemValue::Verdict(v))) => {
                        if *v != Verdict::Continue {
                            return Ok(*v);
                        }
                    }
                    _ => return Err(Reason::SetLookup),
                }
            }
            Step::Verdict(v) => return Ok(*v),
            Step::Counter => counters.rule_counters += 1,
            Step::Unsupported(reason) => return Err(*reason),
        }
    }
    Ok(Verdict::Continue)
}

/// `nft_bitwise_eval`, word by word in host order as the kernel does.
fn bitwise(regs: &mut Regs, sreg: usize, dreg: usize, len: usize, op: &BitOp) {
    let words = len.div_ceil(4);
    let mut out = [0u32; REG_WORDS];
    match op {
        BitOp::MaskXor { mask, xor } => {
            for i in 0..words {
                out[i] = (regs[sreg + i] & mask[i]) ^ xor[i];
            }
        }
        BitOp::Shl(shift) => {
            let mut carry = 0u32;
            for i in (0..words).rev() {
                let s = regs[sreg + i];
                out[i] = (s << shift) | carry;
                carry = s >> (32 - shift);
            }
        }
        BitOp::Shr(shift) => {
            let mut carry = 0u32;
            for i in 0..words {
                let s = regs[sreg + i];
                out[i] = carry | (s >> shift);
                carry = s << (32 - shift);
            }
        }
        BitOp::And(s2) | BitOp::Or(s2) | BitOp::Xor(s2) => {
            for i in 0..words {
                let (a, b) = (regs[sreg + i], regs[s2 + i]);
                out[i] = match op {
                    BitOp::And(_) => a & b,
                    BitOp::Or(_) => a | b,
                    _ => a ^ b,
                };
            }
        }
    }
    regs[dreg..dreg + words].copy_from_slice(&out[..words]);
}

/// Loads a meta key as `nft_meta_get_eval` does; false where the kernel
/// breaks the rule (no transport protocol known).
fn load_meta(regs: &mut Regs, key: u32, d: usize, pkt: &Packet<'_>) -> bool {
    let byte = |v: u8| u32::from_ne_bytes([v, 0, 0, 0]);
    match key {
        // skb->len at the IP hooks: the IP packet (trimmed to its length).
        meta::LEN => regs[d] = pkt.l3.len() as u32,
        meta::PROTOCOL => {
            let e: [u8; 2] = if pkt.v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
            regs[d] = u32::from_ne_bytes([e[0], e[1], 0, 0]);
        }
        // A packet from the wire has mark 0; a rule that sets one is
        // Linux's (meta mark set, MARK), so no evaluated packet has one.
        meta::MARK => regs[d] = 0,
        meta::IIF => regs[d] = pkt.iif.ifindex,
        meta::OIF => regs[d] = pkt.oif.map_or(0, |o| o.ifindex),
        meta::IIFNAME => store_bytes(regs, d, &pkt.iif.name),
        meta::OIFNAME => store_bytes(regs, d, &pkt.oif.map_or([0; 16], |o| o.name)),
        meta::NFPROTO => regs[d] = byte(if pkt.v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }),
        meta::L4PROTO => regs[d] = byte(pkt.l4proto),
        // PACKET_HOST: fpd evaluates only frames sent to its port's MAC.
        meta::PKTTYPE => regs[d] = byte(0),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(bounds: &[(&[u8], bool)]) -> Set {
        let mut set = Set {
            key_len: 1,
            interval: true,
            ..Set::default()
        };
        for (i, (k, start)) in bounds.iter().enumerate() {
            set.values.push(ElemValue::None);
            set.bounds.push((k.to_vec().into(), *start, i));
        }
        set.bounds.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        set
    }

    #[test]
    fn an_interval_set_matches_as_the_kernels_rbtree() {
        // `{ 10-19, 20-29, 200-255 }` as nft sends it: a leading end
        // marker at 0, each range's start and end + 1 (20 twice: the end
        // of the first range and the start of the second), the last
        // range open to the top.
        let set = interval(&[
            (&[0], false),
            (&[10], true),
            (&[20], false),
            (&[20], true),
            (&[30], false),
            (&[200], true),
        ]);
        let inside = |k: u8| set.find(&[k]).is_some();
        let got: Vec<u8> = (0..=255).filter(|k| inside(*k)).collect();
        let want: Vec<u8> = (10..30).chain(200..=255).collect();
        assert_eq!(got, want);
    }
}
