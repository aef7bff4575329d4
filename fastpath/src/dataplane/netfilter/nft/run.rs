//! The register machine over compiled steps (the kernel's `nft_do_chain`
//! for one rule): loads, compares, bitwise operations, lookups and
//! verdicts, with no allocation.

use super::{
    bytes_of, ct, load_be, meta, store_bytes, BitOp, Chain, ElemValue, LookupDest, Regs, Set, Step,
    Verdict, REG_WORDS,
};
use super::{
    Direction, NfCounters, NfVerdict, Packet, Reason, Tracked, NFPROTO_IPV4, NFPROTO_IPV6,
};

pub(super) fn policy(base: &Chain) -> NfVerdict {
    if base.policy_accept {
        NfVerdict::Accept
    } else {
        NfVerdict::Drop
    }
}

/// Runs one rule: its verdict (`Continue` when it ran to its end without
/// one), or the reason it needs Linux.
pub(super) fn run_rule(
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
pub(super) fn bitwise(regs: &mut Regs, sreg: usize, dreg: usize, len: usize, op: &BitOp) {
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
pub(super) fn load_meta(regs: &mut Regs, key: u32, d: usize, pkt: &Packet<'_>) -> bool {
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
