//! Netfilter rules from nf_tables (nftables, and iptables-nft, which
//! programs the same objects): tables, chains and rules, as keyed objects
//! whose rule bodies are the kernel's expression bytes.
//!
//! Invariants:
//! * Keys are the kernel's identities: a table is (family, name), a chain
//!   (family, table, name), a rule (family, table, handle): a handle is
//!   unique within its table.
//! * Only what the kernel announces is kept: use counts, chain counters
//!   and the packet and byte counts of `counter` expressions (cleared by
//!   the decoder) change without an event, and are left out.
//! * A rule's place in its chain is `prev`: the handle of the rule before
//!   it, 0 for the first, [`PREV_UNKNOWN`] when not known (a notified
//!   rule whose place the message does not give: cmgrd re-dumps, and the
//!   dump fills it in). The fast path follows `prev` from 0.

use std::fmt;

use super::codec::{DecodeError, Reader, Writer};

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
