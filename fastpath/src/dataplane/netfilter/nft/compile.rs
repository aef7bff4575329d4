//! From the synced expression bytes to steps: each expression decoded
//! (attribute by attribute, every length checked), adjacent loads and
//! compares fused, sets compiled with their elements; whatever fpd cannot
//! evaluate exactly becomes an unsupported step naming its reason.

use std::collections::{HashMap, HashSet};

use fpc::{elem_flags, set_flags, NftElemData, NftRule, NftSet, NftSetElem, PREV_UNKNOWN};

use super::Reason;
use super::{
    ct, left_aligned, meta, BitOp, CmpOp, Ctx, Data, ElemValue, LookupDest, Set, Step, Verdict,
    CT_STATUS_SYNCED, NFTA_BITWISE_DATA, NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_MASK,
    NFTA_BITWISE_OP, NFTA_BITWISE_SREG, NFTA_BITWISE_SREG2, NFTA_BITWISE_XOR, NFTA_BYTEORDER_DREG,
    NFTA_BYTEORDER_LEN, NFTA_BYTEORDER_OP, NFTA_BYTEORDER_SIZE, NFTA_BYTEORDER_SREG, NFTA_CMP_DATA,
    NFTA_CMP_OP, NFTA_CMP_SREG, NFTA_CT_DIRECTION, NFTA_CT_DREG, NFTA_CT_KEY, NFTA_CT_SREG,
    NFTA_DATA_VALUE, NFTA_DATA_VERDICT, NFTA_DYNSET_SET_NAME, NFTA_IMMEDIATE_DATA,
    NFTA_IMMEDIATE_DREG, NFTA_LOOKUP_DREG, NFTA_LOOKUP_FLAGS, NFTA_LOOKUP_SET, NFTA_LOOKUP_SREG,
    NFTA_META_DREG, NFTA_META_KEY, NFTA_META_SREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_DREG,
    NFTA_PAYLOAD_LEN, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_SREG, NFTA_RANGE_FROM_DATA, NFTA_RANGE_OP,
    NFTA_RANGE_SREG, NFTA_RANGE_TO_DATA, NFTA_VERDICT_CHAIN, NFTA_VERDICT_CODE, NFT_BREAK,
    NFT_CONTINUE, NFT_DATA_VERDICT, NFT_GOTO, NFT_JUMP, NFT_LOOKUP_F_INV,
    NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER, NFT_RETURN, NF_ACCEPT, NF_DROP,
    NF_QUEUE, NF_VERDICT_MASK, REG_WORDS,
};

/// Netlink attributes of `b`: (type without the nested and byte-order
/// flags, value).
pub(super) fn attrs(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Reason>> {
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

pub(super) fn be32(v: &[u8]) -> Result<u32, Reason> {
    v.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(Reason::BadExpression)
}

/// The word index in the register file of register number `reg` holding
/// `len` bytes (NFT_REG_1..4 or NFT_REG32_00..15; nft_parse_register).
pub(super) fn register(reg: u32, len: usize) -> Result<usize, Reason> {
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
pub(super) fn expressions(mut b: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), Reason>> {
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

pub(super) fn data(v: &[u8]) -> Result<Data<'_>, Reason> {
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

pub(super) fn value(v: &[u8]) -> Result<Vec<u8>, Reason> {
    match data(v)? {
        Data::Value(b) if !b.is_empty() && b.len() <= 64 => Ok(b.to_vec()),
        _ => Err(Reason::BadExpression),
    }
}

/// The attributes of one expression's data, by type (the last wins).
pub(super) fn fields(data: &[u8]) -> Result<[Option<&[u8]>; 9], Reason> {
    let mut out = [None; 9];
    for a in attrs(data) {
        let (k, v) = a?;
        if let Some(slot) = out.get_mut(usize::from(k)) {
            *slot = Some(v);
        }
    }
    Ok(out)
}

pub(super) fn need<'a>(f: &[Option<&'a [u8]>; 9], k: u16) -> Result<&'a [u8], Reason> {
    f[usize::from(k)].ok_or(Reason::BadExpression)
}

pub(super) fn compile_step(name: &[u8], d: &[u8], ctx: &Ctx<'_>) -> Result<Step, Reason> {
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

pub(super) fn verdict(
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
pub(super) fn compile_rule(exprs: &[u8], ctx: &Ctx<'_>) -> Vec<Step> {
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
pub(super) fn fuse(steps: Vec<Step>) -> Vec<Step> {
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

pub(super) fn check_ct_status(steps: &mut [Step]) {
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
pub(super) fn in_order(rules: Vec<&NftRule>) -> Option<Vec<&NftRule>> {
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

/// The sets any rule's `dynset` writes to (from the packet path,
/// without an event): (family, table, set).
pub(super) fn dynamic_sets<'a>(rules: &[&'a NftRule]) -> HashSet<(u8, &'a str, Vec<u8>)> {
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
pub(super) fn compile_set(
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

pub(super) fn fill_set(
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

/// Whether a rule's expressions offload flows to a flowtable
/// (`flow add @ft`, the kernel's `flow_offload` expression).
pub(in crate::dataplane::netfilter) fn offloads_flows(exprs: &[u8]) -> bool {
    expressions(exprs)
        .flatten()
        .any(|(name, _)| name == b"flow_offload")
}
