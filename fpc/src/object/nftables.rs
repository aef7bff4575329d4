//! Netfilter rules from nf_tables (nftables, and iptables-nft, which
//! programs the same objects): tables, chains, rules, sets and set
//! elements, as keyed objects whose rule bodies are the kernel's
//! expression bytes.
//!
//! Invariants:
//! * Keys are the kernel's identities: a table is (family, name), a chain
//!   (family, table, name), a rule (family, table, handle): a handle is
//!   unique within its table; a set (family, table, name), an element
//!   (its set, key, key end, and whether it is an interval end or the
//!   catch-all: an interval set holds a range's start and its end + 1 as
//!   two elements, and adjacent ranges an end and a start of one key).
//! * A set is its definition only; each element is an object of its own
//!   (a set of 10,000 addresses changes one element at a time, and no
//!   object body outgrows the FPC's 64 KiB).
//! * Only what the kernel announces is kept: use counts, chain counters
//!   and the packet and byte counts of `counter` expressions (cleared by
//!   the decoder) change without an event, and are left out.
//! * A rule's place in its chain is `prev`: the handle of the rule before
//!   it, 0 for the first, [`PREV_UNKNOWN`] when not known (a notified
//!   rule whose place the message does not give: cmgrd re-dumps, and the
//!   dump fills it in). The fast path follows `prev` from 0.

use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};

/// An nf_tables table (`NFT_MSG_NEWTABLE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftTable {
    /// NFPROTO_* (1 inet, 2 ipv4, 3 arp, 7 bridge, 10 ipv6, 5 netdev).
    pub family: u8,
    pub name: String,
    pub flags: u32,
}

/// A chain; base chains have a hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftChain {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// (hook number, priority) of a base chain.
    pub hook: Option<(u32, i32)>,
    /// "filter", "nat", "route" for base chains, else empty.
    pub chain_type: String,
    /// NF_ACCEPT (1) or NF_DROP (0) for base chains.
    pub policy: Option<u32>,
    pub flags: u32,
}

/// `NftRule::prev` when the rule's place in its chain is not known.
pub const PREV_UNKNOWN: u64 = u64::MAX;

/// A rule: its expressions as the kernel lists them (`NFTA_RULE_EXPRESSIONS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftRule {
    pub family: u8,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// The handle of the rule before it in its chain, 0 for the first,
    /// [`PREV_UNKNOWN`] when not known.
    pub prev: u64,
    /// Whether an expression translates addresses (nat, masq, redir, or
    /// an xt SNAT/DNAT/MASQUERADE/REDIRECT target): the NAT feature's.
    pub nat: bool,
    pub exprs: Vec<u8>,
}

/// NFT_SET_* flags of a set.
pub mod set_flags {
    pub const ANONYMOUS: u32 = 0x1;
    pub const CONSTANT: u32 = 0x2;
    pub const INTERVAL: u32 = 0x4;
    pub const MAP: u32 = 0x8;
    pub const TIMEOUT: u32 = 0x10;
    pub const EVAL: u32 = 0x20;
    pub const OBJECT: u32 = 0x40;
    pub const CONCAT: u32 = 0x80;
}

/// NFT_SET_ELEM_* flags of an element.
pub mod elem_flags {
    pub const INTERVAL_END: u32 = 0x1;
    pub const CATCHALL: u32 = 0x2;
}

/// An nf_tables set or map (`NFT_MSG_NEWSET`), without its elements.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftSet {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// NFT_SET_* ([`set_flags`]).
    pub flags: u32,
    pub key_type: u32,
    /// Bytes of the key in the registers (a concatenation's fields each
    /// padded to 4 bytes).
    pub key_len: u32,
    /// A map's data type (NFT_DATA_VERDICT, 0xffffff00, for a vmap) and
    /// length; 0 for a plain set.
    pub data_type: u32,
    pub data_len: u32,
    /// The concatenation's field lengths (NFTA_SET_DESC_CONCAT), empty
    /// for a single field.
    pub fields: Vec<u8>,
    /// The set has expressions of its own (NFTA_SET_EXPR(ESSIONS): per
    /// element counters, limits, quotas), evaluated on each match.
    pub exprs: bool,
    /// A default element timeout (NFTA_SET_TIMEOUT).
    pub timeout: bool,
}

impl NftSet {
    /// Whether its elements are synced: not for a set with timeouts
    /// (elements expire without an event) or a dynamic one (the packet
    /// path adds to it without an event). fpd leaves lookups in either to
    /// Linux.
    pub fn elements_synced(&self) -> bool {
        self.flags & (set_flags::TIMEOUT | set_flags::EVAL) == 0 && !self.timeout
    }
}

/// What an element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NftElemData {
    None,
    /// A map's value (NFTA_DATA_VALUE).
    Value(Vec<u8>),
    /// A vmap's verdict: NF_* / NFT_* code and, for jump and goto, the
    /// chain's name.
    Verdict {
        code: i32,
        chain: String,
    },
}

/// One element of a set (`NFT_MSG_NEWSETELEM`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftSetElem {
    pub family: u8,
    pub table: String,
    pub set: String,
    /// The key's bytes as the kernel holds them (empty for the catch-all).
    pub key: Vec<u8>,
    /// NFTA_SET_ELEM_KEY_END: a concatenated range's end, else empty.
    pub key_end: Vec<u8>,
    /// NFT_SET_ELEM_* ([`elem_flags`]).
    pub flags: u32,
    pub data: NftElemData,
    /// The element has expressions of its own (counters, limits, quotas:
    /// they run on each match and change without an event).
    pub stateful: bool,
}

impl NftSetElem {
    /// The flags that are part of the element's identity.
    pub fn identity_flags(&self) -> u32 {
        self.flags & (elem_flags::INTERVAL_END | elem_flags::CATCHALL)
    }
}

impl NftTable {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.name);
        w.u32(self.flags);
    }
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NftTable {
            family: r.u8()?,
            name: r.str()?,
            flags: r.u32()?,
        })
    }
}

impl NftChain {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.table);
        w.str(&self.name);
        match self.hook {
            None => w.u8(0),
            Some((num, prio)) => {
                w.u8(1);
                w.u32(num);
                w.i32(prio);
            }
        }
        w.str(&self.chain_type);
        match self.policy {
            None => w.u8(0),
            Some(p) => {
                w.u8(1);
                w.u32(p);
            }
        }
        w.u32(self.flags);
    }
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let family = r.u8()?;
        let table = r.str()?;
        let name = r.str()?;
        let hook = match r.u8()? {
            0 => None,
            _ => Some((r.u32()?, r.i32()?)),
        };
        let chain_type = r.str()?;
        let policy = match r.u8()? {
            0 => None,
            _ => Some(r.u32()?),
        };
        Ok(NftChain {
            family,
            table,
            name,
            hook,
            chain_type,
            policy,
            flags: r.u32()?,
        })
    }
}

impl NftRule {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.table);
        w.str(&self.chain);
        w.u64(self.handle);
        w.u64(self.prev);
        w.bool(self.nat);
        w.u32(self.exprs.len() as u32);
        w.buf_mut().extend_from_slice(&self.exprs);
    }
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let family = r.u8()?;
        let table = r.str()?;
        let chain = r.str()?;
        let handle = r.u64()?;
        let prev = r.u64()?;
        let nat = r.bool()?;
        let len = r.u32()? as usize;
        Ok(NftRule {
            family,
            table,
            chain,
            handle,
            prev,
            nat,
            exprs: r.bytes(len)?.to_vec(),
        })
    }
}

impl NftSet {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.table);
        w.str(&self.name);
        w.u32(self.flags);
        w.u32(self.key_type);
        w.u32(self.key_len);
        w.u32(self.data_type);
        w.u32(self.data_len);
        w.short_bytes(&self.fields);
        w.bool(self.exprs);
        w.bool(self.timeout);
    }
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NftSet {
            family: r.u8()?,
            table: r.str()?,
            name: r.str()?,
            flags: r.u32()?,
            key_type: r.u32()?,
            key_len: r.u32()?,
            data_type: r.u32()?,
            data_len: r.u32()?,
            fields: r.short_bytes()?,
            exprs: r.bool()?,
            timeout: r.bool()?,
        })
    }
}

impl NftSetElem {
    pub(crate) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.family);
        w.str(&self.table);
        w.str(&self.set);
        w.short_bytes(&self.key);
        w.short_bytes(&self.key_end);
        w.u32(self.flags);
        match &self.data {
            NftElemData::None => w.u8(0),
            NftElemData::Value(v) => {
                w.u8(1);
                w.short_bytes(v);
            }
            NftElemData::Verdict { code, chain } => {
                w.u8(2);
                w.i32(*code);
                w.str(chain);
            }
        }
        w.bool(self.stateful);
    }
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let family = r.u8()?;
        let table = r.str()?;
        let set = r.str()?;
        let key = r.short_bytes()?;
        let key_end = r.short_bytes()?;
        let flags = r.u32()?;
        let data = match r.u8()? {
            0 => NftElemData::None,
            1 => NftElemData::Value(r.short_bytes()?),
            2 => NftElemData::Verdict {
                code: r.i32()?,
                chain: r.str()?,
            },
            v => {
                return Err(DecodeError::BadValue {
                    what: "set element data",
                    value: v.into(),
                })
            }
        };
        Ok(NftSetElem {
            family,
            table,
            set,
            key,
            key_end,
            flags,
            data,
            stateful: r.bool()?,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl fmt::Display for NftSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nft set family {} {} {} flags {:#x} key type {:#x} len {}",
            self.family, self.table, self.name, self.flags, self.key_type, self.key_len
        )?;
        if self.flags & set_flags::MAP != 0 {
            write!(f, " data type {:#x} len {}", self.data_type, self.data_len)?;
        }
        if !self.fields.is_empty() {
            write!(f, " fields {:?}", self.fields)?;
        }
        if self.exprs {
            write!(f, " exprs")?;
        }
        if self.timeout {
            write!(f, " timeout")?;
        }
        Ok(())
    }
}

impl fmt::Display for NftSetElem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nft set element family {} {} {} key {}",
            self.family,
            self.table,
            self.set,
            if self.flags & elem_flags::CATCHALL != 0 {
                "*".to_string()
            } else {
                hex(&self.key)
            }
        )?;
        if !self.key_end.is_empty() {
            write!(f, "-{}", hex(&self.key_end))?;
        }
        if self.flags & elem_flags::INTERVAL_END != 0 {
            write!(f, " end")?;
        }
        match &self.data {
            NftElemData::None => {}
            NftElemData::Value(v) => write!(f, " : {}", hex(v))?,
            NftElemData::Verdict { code, chain } if chain.is_empty() => {
                write!(f, " : verdict {code}")?
            }
            NftElemData::Verdict { code, chain } => write!(f, " : verdict {code} {chain}")?,
        }
        if self.stateful {
            write!(f, " stateful")?;
        }
        Ok(())
    }
}

impl fmt::Display for NftTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nft table family {} {} flags {:#x}",
            self.family, self.name, self.flags
        )
    }
}

impl fmt::Display for NftChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nft chain family {} {} {}",
            self.family, self.table, self.name
        )?;
        if let Some((num, prio)) = self.hook {
            write!(f, " type {:?} hook {num} priority {prio}", self.chain_type)?;
        }
        if let Some(p) = self.policy {
            write!(f, " policy {p}")?;
        }
        write!(f, " flags {:#x}", self.flags)
    }
}

impl fmt::Display for NftRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nft rule family {} {} {} handle {} prev {}{} exprs {} bytes",
            self.family,
            self.table,
            self.chain,
            self.handle,
            if self.prev == PREV_UNKNOWN {
                "unknown".to_string()
            } else {
                self.prev.to_string()
            },
            if self.nat { " nat" } else { "" },
            self.exprs.len()
        )
    }
}
