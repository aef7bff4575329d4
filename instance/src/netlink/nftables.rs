//! nf_tables (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_NFTABLES) messages
//! decoded into table, chain and rule objects, and the dump requests.
//! iptables on Debian 12 is iptables-nft: its rules arrive the same way,
//! as rules with `match`/`target` expressions.
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
use fastpath::fpc::{NftChain, NftRule, NftTable, Object, ObjectKey};

use super::wire::{Event, NlMsg, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_MULTI, NLM_F_REQUEST};
use fastpath::fpc::PREV_UNKNOWN;

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

/// Decodes one nf_tables message (sets, objects, flowtables and
/// generation news are not synced).
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
        k if k >> 8 == NFNL_SUBSYS_NFTABLES => Event::Ignored,
        _ => Event::Unknown,
    })
}

/// A dump of every family's tables, chains or rules.
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
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
}
