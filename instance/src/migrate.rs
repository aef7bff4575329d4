//! The seed's `xfrm-migrate` module: applies an XFRM_MSG_MIGRATE to the
//! cache.
//!
//! The kernel moves SAs and a policy to new addresses (MOBIKE, Mobile IPv6)
//! without a NEWSA, DELSA or UPDPOLICY: `xfrm_migrate` clones each matching
//! SA with the new addresses (same SPI), deletes the old one silently, and
//! rewrites the policy's templates in place; the MIGRATE message is its
//! only news. This module does the same to the cache, following the
//! kernel's matching rules:
//! * an SA moves when its proto, mode and (unless the move's reqid is 0)
//!   reqid match, and its daddr/saddr are the move's old ones; its replay
//!   state moves with it;
//! * the policy of that selector, direction and type gets, in each
//!   template of that proto and mode (and reqid), the new addresses; in
//!   transport mode templates carry no addresses to compare.
//!
//! Invariant: the ops returned leave the blades equal to the cache (old
//! SAs deleted before their clones are added).

use fpc::{Object, ObjectKey, ObjectKind, Op, Selector};

use crate::cache::Cache;
use crate::netlink::xfrm::Migration;

const XFRM_MODE_TRANSPORT: u8 = 0;

/// Applies the moves; the ops to send.
pub fn apply(
    cache: &mut Cache,
    sel: &Selector,
    dir: u8,
    ptype: u8,
    moves: &[Migration],
) -> Vec<(Op, Object)> {
    let mut ops = Vec::new();
    for mv in moves {
        let sas: Vec<_> = cache
            .objects(ObjectKind::XfrmSa)
            .filter_map(|o| match o {
                Object::XfrmSa(sa)
                    if sa.proto == mv.proto
                        && sa.mode == mv.mode
                        && (mv.reqid == 0 || sa.reqid == mv.reqid)
                        && sa.daddr == mv.old_daddr
                        && sa.saddr == mv.old_saddr =>
                {
                    Some(sa.clone())
                }
                _ => None,
            })
            .collect();
        for old in sas {
            let replay = cache.remove(&ObjectKey::XfrmReplay(old.key()));
            ops.extend(replay.clone());
            ops.extend(cache.remove(&ObjectKey::XfrmSa(old.key())));
            let mut new = old;
            new.daddr = mv.new_daddr;
            new.saddr = mv.new_saddr;
            let key = new.key();
            ops.extend(cache.upsert(Object::XfrmSa(new)));
            if let Some((_, Object::XfrmReplay(mut r))) = replay {
                r.daddr = key.daddr;
                ops.extend(cache.upsert(Object::XfrmReplay(r)));
            }
        }
    }
    let policy = cache.objects(ObjectKind::XfrmSp).find_map(|o| match o {
        Object::XfrmSp(sp) if sp.sel == *sel && sp.dir == dir && sp.ptype == ptype => {
            Some(sp.clone())
        }
        _ => None,
    });
    if let Some(mut sp) = policy {
        for t in &mut sp.tmpls {
            let Some(mv) = moves.iter().find(|mv| {
                t.proto == mv.proto
                    && t.mode == mv.mode
                    && (mv.reqid == 0 || t.reqid == mv.reqid)
                    && (mv.mode == XFRM_MODE_TRANSPORT
                        || t.daddr == mv.old_daddr && t.saddr == mv.old_saddr)
            }) else {
                continue;
            };
            if mv.mode != XFRM_MODE_TRANSPORT {
                t.daddr = mv.new_daddr;
                t.saddr = mv.new_saddr;
            }
        }
        ops.extend(cache.upsert(Object::XfrmSp(sp)));
    }
    ops
}
