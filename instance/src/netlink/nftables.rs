//! nf_tables (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_NFTABLES) messages
//! decoded into table, chain and rule objects, and the dump requests.
//! iptables on Debian 12 is iptables-nft: its rules arrive the same way,
//! as rules with `match`/`target` expressions.
//!
//! Sets and maps (`NFT_MSG_NEWSET`) are objects of their own, and so is
//! each element (`NFT_MSG_NEWSETELEM`; a dump message carries many, a
//! notification one): what a set's `NFTA_SET_COUNT` says, and its
//! elements' counters, change without an event and are left out (a set
//! or element with expressions is marked so, and fpd leaves its lookups
//! to Linux). An element with a timeout is not synced at all: the kernel
//! removes it when it expires without NFT_MSG_DELSETELEM (checked on this
//! kernel), so it is left out of notifications and dumps alike, and its
//! set (which has NFT_SET_TIMEOUT) is Linux's in fpd.
//!
//! Invariants:
//! * No I/O, no logging; every length is checked, a malformed message is
//!   an error, never a panic. Integers in attributes are big-endian.
//! * A rule's expressions are kept as (name, data) pairs in the kernel's
//!   order, except the data of `counter` and `last`, which change with
//!   traffic without an event: a notified rule equals a dumped one.
//! * Deleting a table or a chain deletes what it holds: the kernel
//!   announces each, and the processor also removes them (`Event::Del`
//!   of a table or chain is followed by a sweep of its contents).

use super::wire::attrs;
use fpc::{NftChain, NftElemData, NftRule, NftSet, NftSetElem, NftTable, Object, ObjectKey};

use super::wire::{Event, NlMsg, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST};
use fpc::PREV_UNKNOWN;

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
const BASE: u16 = NFNL_SUBSYS_NFTABLES << 8;
pub const NFT_MSG_NEWTABLE: u16 = BASE;
pub const NFT_MSG_GETTABLE: u16 = BASE | 1;
pub const NFT_MSG_DELTABLE: u16 = BASE | 2;
pub const NFT_MSG_NEWCHAIN: u16 = BASE | 3;
pub const NFT_MSG_GETCHAIN: u16 = BASE | 4;
pub const NFT_MSG_DELCHAIN: u16 = BASE | 5;
pub const NFT_MSG_NEWRULE: u16 = BASE | 6;
pub const NFT_MSG_GETRULE: u16 = BASE | 7;
pub const NFT_MSG_DELRULE: u16 = BASE | 8;
pub const NFT_MSG_NEWSET: u16 = BASE | 9;
pub const NFT_MSG_GETSET: u16 = BASE | 10;
pub const NFT_MSG_DELSET: u16 = BASE | 11;
pub const NFT_MSG_NEWSETELEM: u16 = BASE | 12;
pub const NFT_MSG_GETSETELEM: u16 = BASE | 13;
pub const NFT_MSG_DELSETELEM: u16 = BASE | 14;

/// NFNLGRP_NFTABLES.
pub const NFNLGRP_NFTABLES: u32 = 7;

/// NFPROTO_BRIDGE: ebtables' family.
pub const NFPROTO_BRIDGE: u8 = 7;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_CHAIN_FLAGS: u16 = 10;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_POSITION: u16 = 6;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_TARGET_NAME: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_EXPR: u16 = 17;
const NFTA_SET_EXPRESSIONS: u16 = 18;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_EXPR: u16 = 9;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// NFT_DATA_VALUE_MAXLEN: the longest key or map value.
const MAX_DATA: usize = 64;
/// Elements one message may carry (a dump's fill a netlink page or so).
const MAX_ELEMS: usize = 65_536;

/// The largest rule body kept (an FPC object body is at most 64 KiB).
const MAX_EXPRS: usize = 60_000;

/// Expressions whose data changes with traffic.
const STATEFUL: [&[u8]; 2] = [b"counter", b"last"];
/// Expressions that translate addresses.
const NAT_EXPRS: [&[u8]; 3] = [b"nat", b"masq", b"redir"];
const NAT_TARGETS: [&[u8]; 5] = [b"SNAT", b"DNAT", b"MASQUERADE", b"REDIRECT", b"NETMAP"];

fn string(v: &[u8]) -> String {
    let raw = v.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(raw).into_owned()
}

fn cstr(v: &[u8]) -> &[u8] {
    v.split(|b| *b == 0).next().unwrap_or_default()
}

fn be32(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    v.get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

fn be64(kind: u16, v: &[u8]) -> Result<u64, WireError> {
    v.get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

fn family(payload: &[u8]) -> Result<(u8, &[u8]), WireError> {
    // struct nfgenmsg: family, version, res_id.
    match payload.get(4..) {
        Some(rest) => Ok((payload[0], rest)),
        None => Err(WireError::Short(payload.len())),
    }
}

fn decode_table(payload: &[u8]) -> Result<NftTable, WireError> {
    let (family, rest) = family(payload)?;
    let mut t = NftTable {
        family,
        name: String::new(),
        flags: 0,
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            NFTA_TABLE_NAME => t.name = string(v),
            NFTA_TABLE_FLAGS => t.flags = be32(kind, v)?,
            _ => {}
        }
    }
    Ok(t)
}

fn decode_chain(payload: &[u8]) -> Result<NftChain, WireError> {
    let (family, rest) = family(payload)?;
    let mut c = NftChain {
        family,
        table: String::new(),
        name: String::new(),
        hook: None,
        chain_type: String::new(),
        policy: None,
        flags: 0,
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            NFTA_CHAIN_TABLE => c.table = string(v),
            NFTA_CHAIN_NAME => c.name = string(v),
            NFTA_CHAIN_TYPE => c.chain_type = string(v),
            NFTA_CHAIN_POLICY => c.policy = Some(be32(kind, v)?),
            NFTA_CHAIN_FLAGS => c.flags = be32(kind, v)?,
            NFTA_CHAIN_HOOK => {
                let (mut num, mut prio) = (0, 0);
                for a in attrs(v) {
                    let (k, v) = a?;
                    match k {
                        NFTA_HOOK_HOOKNUM => num = be32(k, v)?,
                        NFTA_HOOK_PRIORITY => prio = be32(k, v)? as i32,
                        _ => {}
                    }
                }
                c.hook = Some((num, prio));
            }
            _ => {}
        }
    }
    Ok(c)
}

/// The expressions as (name, data) pairs: u16 name length, name, u32
/// data length, data; and whether one translates addresses.
fn normalize_exprs(v: &[u8]) -> Result<(Vec<u8>, bool), WireError> {
    let (mut out, mut nat) = (Vec::new(), false);
    for elem in attrs(v) {
        let (kind, elem) = elem?;
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let (mut name, mut data): (&[u8], &[u8]) = (&[], &[]);
        for a in attrs(elem) {
            let (k, v) = a?;
            match k {
                NFTA_EXPR_NAME => name = cstr(v),
                NFTA_EXPR_DATA => data = v,
                _ => {}
            }
        }
        if STATEFUL.contains(&name) {
            data = &[];
        }
        if NAT_EXPRS.contains(&name) {
            nat = true;
        }
        if name == b"target" {
            for a in attrs(data) {
                let (k, v) = a?;
                if k == NFTA_TARGET_NAME && NAT_TARGETS.contains(&cstr(v)) {
                    nat = true;
                }
            }
        }
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
    Ok((out, nat))
}

/// A rule; `dumped` says the message is a dump's (NLM_F_MULTI).
///
/// Its place (kernel fact, nf_tables_fill_rule_info): a dump lists a
/// chain's rules in order, each but the first with NFTA_RULE_POSITION =
/// the handle of the rule before it, so a dumped rule's `prev` is that
/// attribute, 0 without it. A notification's position is not trusted
/// (`nft add` has none, `nft insert` none either, `insert ... position`
/// names a neighbour): a notified rule's place is unknown, and the daemon
/// re-dumps the rules, which gives it.
fn decode_rule(payload: &[u8], dumped: bool) -> Result<NftRule, WireError> {
    let (family, rest) = family(payload)?;
    let mut r = NftRule {
        family,
        table: String::new(),
        chain: String::new(),
        handle: 0,
        prev: if dumped { 0 } else { PREV_UNKNOWN },
        nat: false,
        exprs: Vec::new(),
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            NFTA_RULE_TABLE => r.table = string(v),
            NFTA_RULE_CHAIN => r.chain = string(v),
            NFTA_RULE_HANDLE => r.handle = be64(kind, v)?,
            NFTA_RULE_POSITION if dumped => r.prev = be64(kind, v)?,
            NFTA_RULE_EXPRESSIONS => {
                (r.exprs, r.nat) = normalize_exprs(v)?;
                // An FPC object body is at most 64 KiB.
                if r.exprs.len() > MAX_EXPRS {
                    return Err(WireError::BadAttr { kind, len: v.len() });
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

fn decode_set(payload: &[u8]) -> Result<NftSet, WireError> {
    let (family, rest) = family(payload)?;
    let mut s = NftSet {
        family,
        table: String::new(),
        name: String::new(),
        flags: 0,
        key_type: 0,
        key_len: 0,
        data_type: 0,
        data_len: 0,
        fields: Vec::new(),
        exprs: false,
        timeout: false,
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            NFTA_SET_TABLE => s.table = string(v),
            NFTA_SET_NAME => s.name = string(v),
            NFTA_SET_FLAGS => s.flags = be32(kind, v)?,
            NFTA_SET_KEY_TYPE => s.key_type = be32(kind, v)?,
            NFTA_SET_KEY_LEN => s.key_len = be32(kind, v)?,
            NFTA_SET_DATA_TYPE => s.data_type = be32(kind, v)?,
            NFTA_SET_DATA_LEN => s.data_len = be32(kind, v)?,
            NFTA_SET_TIMEOUT => s.timeout = true,
            NFTA_SET_EXPR | NFTA_SET_EXPRESSIONS => s.exprs = true,
            NFTA_SET_DESC => {
                for a in attrs(v) {
                    let (k, v) = a?;
                    if k != NFTA_SET_DESC_CONCAT {
                        continue;
                    }
                    for field in attrs(v) {
                        for a in attrs(field?.1) {
                            let (k, v) = a?;
                            if k == NFTA_SET_FIELD_LEN && s.fields.len() < 16 {
                                s.fields.push(be32(k, v)?.min(255) as u8);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// NFTA_DATA_VALUE's bytes (a key or a map's value).
fn data_value(kind: u16, v: &[u8]) -> Result<Vec<u8>, WireError> {
    for a in attrs(v) {
        let (k, v) = a?;
        if k == NFTA_DATA_VALUE && v.len() <= MAX_DATA {
            return Ok(v.to_vec());
        }
    }
    Err(WireError::BadAttr { kind, len: v.len() })
}

fn elem_data(kind: u16, v: &[u8]) -> Result<NftElemData, WireError> {
    for a in attrs(v) {
        let (k, v) = a?;
        match k {
            NFTA_DATA_VALUE if v.len() <= MAX_DATA => return Ok(NftElemData::Value(v.to_vec())),
            NFTA_DATA_VERDICT => {
                let (mut code, mut chain) = (None, String::new());
                for a in attrs(v) {
                    let (k, v) = a?;
                    match k {
                        NFTA_VERDICT_CODE => code = Some(be32(k, v)? as i32),
                        NFTA_VERDICT_CHAIN => chain = string(v),
                        _ => {}
                    }
                }
                let code = code.ok_or(WireError::BadAttr { kind, len: v.len() })?;
                return Ok(NftElemData::Verdict { code, chain });
            }
            _ => {}
        }
    }
    Err(WireError::BadAttr { kind, len: v.len() })
}

/// The elements of an NFT_MSG_NEWSETELEM or DELSETELEM message.
pub fn decode_elements(msg: &NlMsg<'_>) -> Result<Vec<NftSetElem>, WireError> {
    let (family, rest) = family(msg.payload)?;
    let (mut table, mut set) = (String::new(), String::new());
    let mut out = Vec::new();
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            NFTA_SET_ELEM_LIST_TABLE => table = string(v),
            NFTA_SET_ELEM_LIST_SET => set = string(v),
            NFTA_SET_ELEM_LIST_ELEMENTS => {
                for elem in attrs(v) {
                    let (k, elem) = elem?;
                    if k != NFTA_LIST_ELEM {
                        continue;
                    }
                    if out.len() == MAX_ELEMS {
                        return Err(WireError::BadAttr { kind, len: v.len() });
                    }
                    let mut expires = false;
                    let mut e = NftSetElem {
                        family,
                        table: String::new(),
                        set: String::new(),
                        key: Vec::new(),
                        key_end: Vec::new(),
                        flags: 0,
                        data: NftElemData::None,
                        stateful: false,
                    };
                    for a in attrs(elem) {
                        let (k, v) = a?;
                        match k {
                            NFTA_SET_ELEM_KEY => e.key = data_value(k, v)?,
                            NFTA_SET_ELEM_KEY_END => e.key_end = data_value(k, v)?,
                            NFTA_SET_ELEM_DATA => e.data = elem_data(k, v)?,
                            NFTA_SET_ELEM_FLAGS => e.flags = be32(k, v)?,
                            NFTA_SET_ELEM_TIMEOUT | NFTA_SET_ELEM_EXPIRATION => expires = true,
                            NFTA_SET_ELEM_EXPR | NFTA_SET_ELEM_EXPRESSIONS => e.stateful = true,
                            _ => {}
                        }
                    }
                    if !expires {
                        out.push(e);
                    }
                }
            }
            _ => {}
        }
    }
    for e in &mut out {
        e.table.clone_from(&table);
        e.set.clone_from(&set);
    }
    Ok(out)
}

/// Decodes one nf_tables message (set elements: [`decode_elements`];
/// objects, flowtables and generation news are not synced).
pub fn decode(msg: &NlMsg<'_>) -> Result<Event, WireError> {
    let p = msg.payload;
    let dumped = msg.flags & NLM_F_MULTI != 0;
    Ok(match msg.kind {
        NFT_MSG_NEWTABLE => Event::New(Object::NftTable(decode_table(p)?)),
        NFT_MSG_DELTABLE => Event::Del(Object::NftTable(decode_table(p)?).key()),
        NFT_MSG_NEWCHAIN => Event::New(Object::NftChain(decode_chain(p)?)),
        NFT_MSG_DELCHAIN => Event::Del(Object::NftChain(decode_chain(p)?).key()),
        NFT_MSG_NEWRULE => Event::New(Object::NftRule(decode_rule(p, dumped)?)),
        NFT_MSG_DELRULE => {
            let r = decode_rule(p, dumped)?;
            Event::Del(ObjectKey::NftRule {
                family: r.family,
                table: r.table,
                handle: r.handle,
            })
        }
        NFT_MSG_NEWSET => Event::New(Object::NftSet(decode_set(p)?)),
        NFT_MSG_DELSET => Event::Del(Object::NftSet(decode_set(p)?).key()),
        k if k >> 8 == NFNL_SUBSYS_NFTABLES => Event::Ignored,
        _ => Event::Unknown,
    })
}

/// A dump of every family's tables, chains, rules or sets.
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    request(kind, 0, seq, &[])
}

/// A dump of the elements of one set (the kernel needs its family,
/// table and name).
pub fn elements_request(family: u8, table: &str, set: &str, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    for (kind, name) in [
        (NFTA_SET_ELEM_LIST_TABLE, table),
        (NFTA_SET_ELEM_LIST_SET, set),
    ] {
        let len = 4 + name.len() + 1;
        attrs.extend_from_slice(&(len as u16).to_ne_bytes());
        attrs.extend_from_slice(&kind.to_ne_bytes());
        attrs.extend_from_slice(name.as_bytes());
        attrs.push(0);
        attrs.resize(attrs.len().next_multiple_of(4), 0);
    }
    request(NFT_MSG_GETSETELEM, family, seq, &attrs)
}

fn request(kind: u16, family: u8, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0, 0, 0]);
    buf.extend_from_slice(attrs);
    buf
}

pub fn type_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        NFT_MSG_NEWTABLE => "NFT_MSG_NEWTABLE",
        NFT_MSG_DELTABLE => "NFT_MSG_DELTABLE",
        NFT_MSG_NEWCHAIN => "NFT_MSG_NEWCHAIN",
        NFT_MSG_DELCHAIN => "NFT_MSG_DELCHAIN",
        NFT_MSG_NEWRULE => "NFT_MSG_NEWRULE",
        NFT_MSG_DELRULE => "NFT_MSG_DELRULE",
        NFT_MSG_NEWSET => "NFT_MSG_NEWSET",
        NFT_MSG_DELSET => "NFT_MSG_DELSET",
        NFT_MSG_NEWSETELEM => "NFT_MSG_NEWSETELEM",
        NFT_MSG_DELSETELEM => "NFT_MSG_DELSETELEM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Messages;

    const NESTED: u16 = 0x8000;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b
    }

    fn msg(kind: u16, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body = [vec![family, 0, 0, 0], attrs.concat()].concat();
        let mut m = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    fn expr(name: &str, data: &[u8]) -> Vec<u8> {
        let name = [name.as_bytes(), &[0]].concat();
        attr(
            NFTA_LIST_ELEM | NESTED,
            &[
                attr(NFTA_EXPR_NAME, &name),
                attr(NFTA_EXPR_DATA | NESTED, data),
            ]
            .concat(),
        )
    }

    /// An iptables-nft MASQUERADE rule with its counter.
    fn masquerade(packets: u64) -> Vec<u8> {
        let counter = [
            attr(1, &(packets * 60).to_be_bytes()),
            attr(2, &packets.to_be_bytes()),
        ]
        .concat();
        let target = attr(NFTA_TARGET_NAME, b"MASQUERADE\0");
        msg(
            NFT_MSG_NEWRULE,
            2,
            &[
                attr(NFTA_RULE_TABLE, b"nat\0"),
                attr(NFTA_RULE_CHAIN, b"POSTROUTING\0"),
                attr(NFTA_RULE_HANDLE, &4u64.to_be_bytes()),
                attr(
                    NFTA_RULE_EXPRESSIONS | NESTED,
                    &[expr("counter", &counter), expr("target", &target)].concat(),
                ),
            ],
        )
    }

    fn decode_one(buf: &[u8]) -> Result<Event, WireError> {
        decode(&Messages::new(buf).next().unwrap()?)
    }

    #[test]
    fn rules_are_keyed_nat_is_seen_counters_are_not() {
        let Ok(Event::New(Object::NftRule(r))) = decode_one(&masquerade(0)) else {
            panic!()
        };
        assert_eq!(
            (r.family, r.table.as_str(), r.chain.as_str(), r.handle),
            (2, "nat", "POSTROUTING", 4)
        );
        assert!(r.nat);
        assert_eq!(
            decode_one(&masquerade(1000)),
            Ok(Event::New(Object::NftRule(r)))
        );
    }

    #[test]
    fn base_chain_with_its_hook() {
        let hook = [
            attr(NFTA_HOOK_HOOKNUM, &4u32.to_be_bytes()),
            attr(NFTA_HOOK_PRIORITY, &(-100i32).to_be_bytes()),
        ]
        .concat();
        let m = msg(
            NFT_MSG_NEWCHAIN,
            1,
            &[
                attr(NFTA_CHAIN_TABLE, b"t\0"),
                attr(NFTA_CHAIN_NAME, b"post\0"),
                attr(NFTA_CHAIN_HOOK | NESTED, &hook),
                attr(NFTA_CHAIN_POLICY, &1u32.to_be_bytes()),
                attr(NFTA_CHAIN_TYPE, b"nat\0"),
            ],
        );
        let Ok(Event::New(Object::NftChain(c))) = decode_one(&m) else {
            panic!()
        };
        assert_eq!(c.hook, Some((4, -100)));
        assert_eq!((c.chain_type.as_str(), c.policy), ("nat", Some(1)));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let m = masquerade(3);
        for cut in NLMSG_HDRLEN..m.len() {
            let mut b = m[..cut].to_vec();
            b[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            let _ = decode_one(&b);
        }
        for at in NLMSG_HDRLEN..m.len() {
            for v in [0u8, 1, 4, 0x7f, 0xff] {
                let mut b = m.clone();
                b[at] = v;
                let _ = decode_one(&b);
            }
        }
    }

    /// Captured on this kernel (Linux 6.18, tests of `nft` in a netns):
    /// the NFT_MSG_NEWRULE notifications of chain inet t c and its dump.
    const ADD: &str = "64000000060a000c01000000b261000001000004060001007400000006000200630000000c000300000000000000000234000400300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001";
    const INSERT: &str = "64000000060a000401000000e361000001000005060001007400000006000200630000000c000300000000000000000334000400300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000000";
    const ADD_POSITION_2: &str = "60000000060a000c010000002462000001000006060001007400000006000200630000000c0003000000000000000004300004002c0001000c000100636f756e746572001c0002000c00010000000000000000000c0002000000000000000000";
    const INSERT_POSITION_2: &str = "c0000000060a0004010000004962000001000007060001007400000006000200630000000c00030000000000000000050c00060000000000000000038400040024000100090001006d6574610000000014000200080002000000000308000100000000012c00010008000100636d700020000200080001000000000108000200000000000c0003000800010003000000300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001";
    const DUMP: [&str; 4] = [
        "64000000060a020801000000a034a7c901000007060001007400000006000200630000000c000300000000000000000334000400300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000000",
        "c0000000060a020801000000a034a7c901000007060001007400000006000200630000000c00030000000000000000050c00060000000000000000038400040024000100090001006d6574610000000014000200080002000000000308000100000000012c00010008000100636d700020000200080001000000000108000200000000000c0003000800010003000000300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001",
        "70000000060a020801000000a034a7c901000007060001007400000006000200630000000c00030000000000000000020c000600000000000000000534000400300001000e000100696d6d6564696174650000001c0002000800010000000000100002000c0002000800010000000001",
        "6c000000060a020801000000a034a7c901000007060001007400000006000200630000000c00030000000000000000040c0006000000000000000002300004002c0001000c000100636f756e746572001c0002000c00010000000000000000000c0002000000000000000000",
    ];

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn place(hex: &str) -> (u64, u64) {
        let Ok(Event::New(Object::NftRule(r))) = decode_one(&unhex(hex)) else {
            panic!("not a rule: {hex}");
        };
        (r.handle, r.prev)
    }

    #[test]
    fn a_dumped_rule_has_its_place_a_notified_one_does_not() {
        // `nft -a list chain inet t c`: drop # handle 3, meta mark 3
        // accept # handle 5, accept # handle 2, counter # handle 4.
        let dumped: Vec<(u64, u64)> = DUMP.iter().map(|h| place(h)).collect();
        assert_eq!(dumped, [(3, 0), (5, 3), (2, 5), (4, 2)]);
        // add (NLM_F_APPEND, no position), insert (neither), add at
        // position 2 (as plain add: no position), insert at position 2
        // (position 3, the rule now before it): none is trusted.
        for (hex, handle) in [
            (ADD, 2),
            (INSERT, 3),
            (ADD_POSITION_2, 4),
            (INSERT_POSITION_2, 5),
        ] {
            assert_eq!(place(hex), (handle, PREV_UNKNOWN));
        }
    }

    /// Captured on this kernel (Linux 6.18, `nft` in a netns): the
    /// notifications of `add set inet f nets { type ipv4_addr; flags
    /// interval; }`, `add element inet f nets { 10.2.0.0/25 }`, `add map
    /// inet f vm { type inet_service : verdict; }`, `add element inet f vm
    /// { 5678 : accept, 4444 : jump c2, * : drop }` and `delete set inet
    /// f nets`.
    const NETS: &str = "7c000000090a000401000000036c0000010000040600010066000000090002006e657473000000000c00100000000000000000020800030000000004080004000000000708000500000000040a000d000004020000000000040009001700130030786666666666666666383235303636363000000800140000000000";
    const NETS_ELEMS: [&str; 3] = [
        "440000000c0a000400000000046c0000010000050600010066000000090002006e657473000000001c000300180001000c00010008000100000000000800030000000001",
        "3c0000000c0a000400000000046c0000010000050600010066000000090002006e6574730000000014000300100001000c000100080001000a020000",
        "440000000c0a000400000000046c0000010000050600010066000000090002006e657473000000001c000300180001000c000100080001000a0200800800030000000001",
    ];
    const VMAP: &str = "94000000090a000401000000056c000001000006060001006600000007000200766d00000c00100000000000000000030800030000000008080004000000000d080005000000000208000600ffffff00080007000000001016000d000004020000000104000000000604000000000000040009001700130030786666666666666666383235303634633000000800140000000000";
    const VMAP_ELEMS: [&str; 3] = [
        "480000000c0a000400000000066c000001000007060001006600000007000200766d000024000300200001000c00010006000100162e0000100002000c0002000800010000000001",
        "500000000c0a000400000000066c000001000007060001006600000007000200766d00002c000300280001000c00010006000100115c0000180002001400020008000100fffffffd0700020063320000",
        "440000000c0a000400000000066c000001000007060001006600000007000200766d0000200003001c000100100002000c00020008000100000000000800030000000002",
    ];
    const DEL_NETS: &str = "340000000b0a000001000000006c0000010000080600010066000000090002006e657473000000000c0010000000000000000002";

    fn elements(hex: &str) -> Vec<NftSetElem> {
        let buf = unhex(hex);
        decode_elements(&Messages::new(&buf).next().unwrap().unwrap()).unwrap()
    }

    #[test]
    fn sets_and_their_elements_as_the_kernel_sends_them() {
        let Ok(Event::New(Object::NftSet(nets))) = decode_one(&unhex(NETS)) else {
            panic!()
        };
        assert_eq!(
            (nets.family, nets.table.as_str(), nets.name.as_str()),
            (1, "f", "nets")
        );
        assert_eq!((nets.flags, nets.key_type, nets.key_len), (0x4, 7, 4));
        assert!(!nets.exprs && !nets.timeout);
        // An interval: a leading end marker, the start, the end + 1.
        let got: Vec<(Vec<u8>, u32)> = NETS_ELEMS
            .iter()
            .flat_map(|h| elements(h))
            .map(|e| {
                assert_eq!((e.table.as_str(), e.set.as_str()), ("f", "nets"));
                assert_eq!(e.data, NftElemData::None);
                (e.key, e.flags)
            })
            .collect();
        assert_eq!(
            got,
            [
                (vec![0, 0, 0, 0], 1),
                (vec![10, 2, 0, 0], 0),
                (vec![10, 2, 0, 128], 1)
            ]
        );
        let Ok(Event::New(Object::NftSet(vm))) = decode_one(&unhex(VMAP)) else {
            panic!()
        };
        assert_eq!(
            (vm.flags, vm.key_len, vm.data_type, vm.data_len),
            (0x8, 2, 0xffff_ff00, 16)
        );
        let got: Vec<(Vec<u8>, u32, NftElemData)> = VMAP_ELEMS
            .iter()
            .flat_map(|h| elements(h))
            .map(|e| (e.key, e.flags, e.data))
            .collect();
        let verdict = |code, chain: &str| NftElemData::Verdict {
            code,
            chain: chain.into(),
        };
        assert_eq!(
            got,
            [
                (5678u16.to_be_bytes().to_vec(), 0, verdict(1, "")),
                (4444u16.to_be_bytes().to_vec(), 0, verdict(-3, "c2")),
                (vec![], 2, verdict(0, "")),
            ]
        );
        assert_eq!(
            decode_one(&unhex(DEL_NETS)),
            Ok(Event::Del(ObjectKey::NftSet {
                family: 1,
                table: "f".into(),
                name: "nets".into()
            }))
        );
    }

    #[test]
    fn malformed_set_messages_are_errors_not_panics() {
        for hex in [NETS, VMAP, VMAP_ELEMS[1], NETS_ELEMS[2]] {
            let m = unhex(hex);
            for at in NLMSG_HDRLEN..m.len() {
                for v in [0u8, 1, 4, 0x7f, 0xff] {
                    let mut b = m.clone();
                    b[at] = v;
                    if let Some(Ok(msg)) = Messages::new(&b).next() {
                        let _ = decode(&msg);
                        let _ = decode_elements(&msg);
                    }
                }
            }
        }
    }

    #[test]
    fn an_element_dump_names_its_set() {
        let req = elements_request(1, "f", "nets", 7);
        let m = Messages::new(&req).next().unwrap().unwrap();
        assert_eq!(m.kind, NFT_MSG_GETSETELEM);
        assert_eq!(m.payload[0], 1);
        let names: Vec<(u16, String)> = attrs(&m.payload[4..])
            .map(|a| a.map(|(k, v)| (k, string(v))).unwrap())
            .collect();
        assert_eq!(names, [(1, "f".to_string()), (2, "nets".to_string())]);
    }
}
