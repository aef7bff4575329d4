//! NETLINK_XFRM messages as the kernel sends them, decoded into IPsec
//! objects, with the kernel's structure layouts named in [`layout`]; the
//! inverse, an encoder of the same layouts for byte fixtures and captures
//! (this kernel has no ESP, so SAs can only be replayed), is [`build`],
//! built for tests and with the `fixtures` feature only.
//!
//! Invariants:
//! * No I/O, no logging; every length is checked, a malformed message is
//!   an error, never a panic. Structures are the kernel's (x86_64 layout:
//!   `xfrm_usersa_info` is 224 bytes, `xfrm_userpolicy_info` 168), host
//!   byte order except SPIs and ports (network order on the wire, host
//!   order in the objects).
//! * Only configuration is kept: `curlft`, `stats` and `XFRMA_LTIME_VAL`
//!   change with traffic and are dropped; the sequence numbers become a
//!   separate [`XfrmReplay`].
//! * The kernel migrates SAs and policies (XFRM_MSG_MIGRATE) without any
//!   NEWSA/DELSA/UPDPOLICY: the migrate message itself says what moved,
//!   and the cache applies it (the seed's `xfrm-migrate` module).
//! * A hard expire (XFRM_MSG_EXPIRE, POLEXPIRE with `hard`) is the only
//!   news of a deletion by timer.

#[cfg(any(test, feature = "fixtures"))]
pub mod build;
mod layout;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fpc::{
    Encap, Lifetime, SaKey, Selector, SpKey, XfrmAlgo, XfrmReplay, XfrmSa, XfrmSp, XfrmTmpl,
    AF_INET, AF_INET6,
};

use super::wire::attrs;
use super::wire::{NlMsg, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST};
use layout::{
    aevent_id, algo, encap, id, lft, mark, migrate, policy_id, policy_info, replay, replay_esn,
    sa_id, sa_info, sel, tmpl,
};

pub const XFRM_MSG_NEWSA: u16 = 16;
pub const XFRM_MSG_DELSA: u16 = 17;
pub const XFRM_MSG_GETSA: u16 = 18;
pub const XFRM_MSG_NEWPOLICY: u16 = 19;
pub const XFRM_MSG_DELPOLICY: u16 = 20;
pub const XFRM_MSG_GETPOLICY: u16 = 21;
pub const XFRM_MSG_EXPIRE: u16 = 24;
pub const XFRM_MSG_UPDPOLICY: u16 = 25;
pub const XFRM_MSG_UPDSA: u16 = 26;
pub const XFRM_MSG_POLEXPIRE: u16 = 27;
pub const XFRM_MSG_FLUSHSA: u16 = 28;
pub const XFRM_MSG_FLUSHPOLICY: u16 = 29;
pub const XFRM_MSG_NEWAE: u16 = 30;
pub const XFRM_MSG_MIGRATE: u16 = 33;

/// The groups a listener joins (XFRMNLGRP_*).
pub const XFRMNLGRP_EXPIRE: u32 = 2;
pub const XFRMNLGRP_SA: u32 = 3;
pub const XFRMNLGRP_POLICY: u32 = 4;
pub const XFRMNLGRP_AEVENTS: u32 = 5;
pub const XFRMNLGRP_MIGRATE: u32 = 7;
pub const GROUPS: [u32; 5] = [
    XFRMNLGRP_SA,
    XFRMNLGRP_POLICY,
    XFRMNLGRP_AEVENTS,
    XFRMNLGRP_EXPIRE,
    XFRMNLGRP_MIGRATE,
];

const XFRMA_ALG_AUTH: u16 = 1;
const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ALG_COMP: u16 = 3;
const XFRMA_ENCAP: u16 = 4;
const XFRMA_TMPL: u16 = 5;
/// Only the fixture encoder writes it (the decoder reads the DELSA id).
#[cfg_attr(not(any(test, feature = "fixtures")), allow(dead_code))]
const XFRMA_SA: u16 = 6;
const XFRMA_POLICY: u16 = 7;
const XFRMA_REPLAY_VAL: u16 = 10;
const XFRMA_POLICY_TYPE: u16 = 16;
const XFRMA_MIGRATE: u16 = 17;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_ALG_AUTH_TRUNC: u16 = 20;
const XFRMA_MARK: u16 = 21;
const XFRMA_REPLAY_ESN_VAL: u16 = 23;
const XFRMA_SA_EXTRA_FLAGS: u16 = 24;
const XFRMA_IF_ID: u16 = 31;

/// `IPSEC_PROTO_ANY`: a flush of every IPsec protocol.
pub const IPSEC_PROTO_ANY: u8 = 255;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_AH: u8 = 51;
const IPPROTO_COMP: u8 = 108;

/// One move of an XFRM_MSG_MIGRATE (`struct xfrm_user_migrate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub old_daddr: IpAddr,
    pub old_saddr: IpAddr,
    pub new_daddr: IpAddr,
    pub new_saddr: IpAddr,
    pub proto: u8,
    pub mode: u8,
    /// 0 matches any.
    pub reqid: u32,
}

/// What one XFRM message means for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XfrmEvent {
    /// A new or updated SA, with its replay state when the message had one.
    Sa(XfrmSa, Option<XfrmReplay>),
    DelSa(SaKey),
    Sp(XfrmSp),
    DelSp(SpKey),
    /// New sequence numbers of an SA (XFRM_MSG_NEWAE).
    Replay(XfrmReplay),
    /// Every SA of `proto` (or of every IPsec protocol) is gone.
    FlushSa {
        proto: u8,
    },
    /// Every policy of this type is gone.
    FlushSp {
        ptype: u8,
    },
    /// SAs and a policy moved to new addresses.
    Migrate {
        sel: Selector,
        dir: u8,
        ptype: u8,
        moves: Vec<Migration>,
    },
    /// Acquires, soft expires, reports, socket policies.
    Ignored,
    Unknown,
}

/// Whether an SA of `proto` goes with a flush of `flushed` (the kernel's
/// `xfrm_id_proto_match`).
pub fn flush_matches(flushed: u8, proto: u8) -> bool {
    proto == flushed
        || flushed == IPSEC_PROTO_ANY && matches!(proto, IPPROTO_ESP | IPPROTO_AH | IPPROTO_COMP)
}

fn short(len: usize) -> WireError {
    WireError::Short(len)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

fn be16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// An `xfrm_address_t` of `family`.
fn addr_at(b: &[u8], at: usize, family: u16) -> Result<IpAddr, WireError> {
    match family as u8 {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(&b[at..at + 4]).unwrap(),
        ))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&b[at..at + 16]).unwrap(),
        ))),
        _ => Err(WireError::BadFamily(family as u8)),
    }
}

fn split(payload: &[u8], n: usize) -> Result<(&[u8], &[u8]), WireError> {
    if payload.len() < n {
        return Err(short(payload.len()));
    }
    Ok(payload.split_at(n))
}

fn decode_sel(b: &[u8]) -> Result<Selector, WireError> {
    let family = u16_at(b, sel::FAMILY);
    // A selector of family 0 matches everything: addresses are zero of
    // the state's family; IPv4 then.
    let fam = if family == 0 { AF_INET as u16 } else { family };
    Ok(Selector {
        daddr: addr_at(b, sel::DADDR, fam)?,
        saddr: addr_at(b, sel::SADDR, fam)?,
        dport: be16_at(b, sel::DPORT),
        dport_mask: be16_at(b, sel::DPORT_MASK),
        sport: be16_at(b, sel::SPORT),
        sport_mask: be16_at(b, sel::SPORT_MASK),
        prefixlen_d: b[sel::PREFIXLEN_D],
        prefixlen_s: b[sel::PREFIXLEN_S],
        proto: b[sel::PROTO],
        ifindex: u32_at(b, sel::IFINDEX) as i32,
        user: u32_at(b, sel::USER),
    })
}

fn decode_lft(b: &[u8]) -> Lifetime {
    Lifetime {
        soft_bytes: u64_at(b, lft::SOFT_BYTES),
        hard_bytes: u64_at(b, lft::HARD_BYTES),
        soft_packets: u64_at(b, lft::SOFT_PACKETS),
        hard_packets: u64_at(b, lft::HARD_PACKETS),
        soft_add_seconds: u64_at(b, lft::SOFT_ADD_SECONDS),
        hard_add_seconds: u64_at(b, lft::HARD_ADD_SECONDS),
        soft_use_seconds: u64_at(b, lft::SOFT_USE_SECONDS),
        hard_use_seconds: u64_at(b, lft::HARD_USE_SECONDS),
    }
}

fn decode_mark(v: &[u8]) -> Result<(u32, u32), WireError> {
    if v.len() < mark::LEN {
        return Err(WireError::BadAttr {
            kind: XFRMA_MARK,
            len: v.len(),
        });
    }
    Ok((u32_at(v, mark::V), u32_at(v, mark::M)))
}

fn attr_u32(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    if v.len() < 4 {
        return Err(WireError::BadAttr { kind, len: v.len() });
    }
    Ok(u32_at(v, 0))
}

/// `xfrm_algo`, `xfrm_algo_auth` or `xfrm_algo_aead`: a 64-byte name, the
/// key length in bits, for auth-trunc and aead a length in bits, the key.
fn decode_algo(kind: u16, v: &[u8]) -> Result<XfrmAlgo, WireError> {
    let bad = || WireError::BadAttr { kind, len: v.len() };
    let with_param = matches!(kind, XFRMA_ALG_AUTH_TRUNC | XFRMA_ALG_AEAD);
    let fixed = algo::KEY_LEN + if with_param { 8 } else { 4 };
    if v.len() < fixed {
        return Err(bad());
    }
    let name = v[..algo::NAME_LEN].split(|b| *b == 0).next().unwrap_or(&[]);
    let key_bits = u32_at(v, algo::KEY_LEN);
    let key_len = key_bits.div_ceil(8) as usize;
    if key_len > 255 || v.len() < fixed + key_len {
        return Err(bad());
    }
    Ok(XfrmAlgo {
        attr: kind as u8,
        name: String::from_utf8_lossy(name).into_owned(),
        key_bits,
        param: if with_param {
            u32_at(v, algo::EXTRA)
        } else {
            0
        },
        key: v[fixed..fixed + key_len].to_vec(),
    })
}

/// `XFRMA_REPLAY_VAL` (`xfrm_replay_state`: oseq, seq, bitmap) or
/// `XFRMA_REPLAY_ESN_VAL` (`xfrm_replay_state_esn`).
fn decode_replay(key: SaKey, kind: u16, v: &[u8]) -> Result<(XfrmReplay, u32), WireError> {
    let bad = || WireError::BadAttr { kind, len: v.len() };
    let mut r = XfrmReplay {
        daddr: key.daddr,
        spi: key.spi,
        proto: key.proto,
        mark: key.mark,
        oseq: 0,
        seq: 0,
        esn: kind == XFRMA_REPLAY_ESN_VAL,
        bitmap: Vec::new(),
    };
    if kind == XFRMA_REPLAY_VAL {
        if v.len() < replay::LEN {
            return Err(bad());
        }
        r.oseq = u32_at(v, replay::OSEQ).into();
        r.seq = u32_at(v, replay::SEQ).into();
        r.bitmap = vec![u32_at(v, replay::BITMAP)];
        return Ok((r, 0));
    }
    if v.len() < replay_esn::BMP {
        return Err(bad());
    }
    let bmp_len = u32_at(v, replay_esn::BMP_LEN) as usize;
    if bmp_len > (v.len() - replay_esn::BMP) / 4 {
        return Err(bad());
    }
    r.oseq =
        u64::from(u32_at(v, replay_esn::OSEQ_HI)) << 32 | u64::from(u32_at(v, replay_esn::OSEQ));
    r.seq = u64::from(u32_at(v, replay_esn::SEQ_HI)) << 32 | u64::from(u32_at(v, replay_esn::SEQ));
    r.bitmap = (0..bmp_len)
        .map(|i| u32_at(v, replay_esn::BMP + 4 * i))
        .collect();
    Ok((r, u32_at(v, replay_esn::REPLAY_WINDOW)))
}

/// An `xfrm_usersa_info` and the attributes that follow it.
fn decode_sa(info: &[u8], rest: &[u8]) -> Result<(XfrmSa, Option<XfrmReplay>), WireError> {
    let family = u16_at(info, sa_info::FAMILY);
    let id = &info[sa_info::ID..sa_info::ID + id::LEN];
    let mut sa = XfrmSa {
        sel: decode_sel(&info[sa_info::SEL..sa_info::SEL + sel::LEN])?,
        daddr: addr_at(id, id::DADDR, family)?,
        spi: be32_at(id, id::SPI),
        proto: id[id::PROTO],
        saddr: addr_at(info, sa_info::SADDR, family)?,
        mode: info[sa_info::MODE],
        reqid: u32_at(info, sa_info::REQID),
        replay_window: info[sa_info::REPLAY_WINDOW].into(),
        flags: info[sa_info::FLAGS].into(),
        algos: Vec::new(),
        encap: None,
        mark: (0, 0),
        if_id: 0,
        lifetime: decode_lft(&info[sa_info::LFT..sa_info::LFT + lft::LEN]),
    };
    let mut replay_attr = None;
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            XFRMA_ALG_AUTH | XFRMA_ALG_CRYPT | XFRMA_ALG_COMP | XFRMA_ALG_AEAD
            | XFRMA_ALG_AUTH_TRUNC => sa.algos.push(decode_algo(kind, v)?),
            XFRMA_ENCAP => {
                if v.len() < encap::LEN {
                    return Err(WireError::BadAttr { kind, len: v.len() });
                }
                let oa = addr_at(v, encap::OA, family)?;
                sa.encap = Some(Encap {
                    encap_type: u16_at(v, encap::TYPE),
                    sport: be16_at(v, encap::SPORT),
                    dport: be16_at(v, encap::DPORT),
                    oa: (!oa.is_unspecified()).then_some(oa),
                });
            }
            XFRMA_MARK => sa.mark = decode_mark(v)?,
            XFRMA_IF_ID => sa.if_id = attr_u32(kind, v)?,
            XFRMA_SA_EXTRA_FLAGS => sa.flags |= attr_u32(kind, v)? << 8,
            XFRMA_REPLAY_VAL | XFRMA_REPLAY_ESN_VAL => replay_attr = Some((kind, v)),
            _ => {}
        }
    }
    // The kernel sends both auth forms for an auth-trunc algorithm (the
    // plain one for old tools): keep the one that says everything.
    if sa
        .algos
        .iter()
        .any(|a| a.attr == XFRMA_ALG_AUTH_TRUNC as u8)
    {
        sa.algos.retain(|a| a.attr != XFRMA_ALG_AUTH as u8);
    }
    sa.algos.sort_by_key(|a| a.attr);
    let replay = match replay_attr {
        Some((kind, v)) => {
            let (r, esn_window) = decode_replay(sa.key(), kind, v)?;
            if kind == XFRMA_REPLAY_ESN_VAL {
                sa.replay_window = esn_window;
            }
            Some(r)
        }
        None => None,
    };
    Ok((sa, replay))
}

/// An `xfrm_userpolicy_info` and the attributes that follow it.
fn decode_sp(info: &[u8], rest: &[u8]) -> Result<XfrmSp, WireError> {
    let mut sp = XfrmSp {
        sel: decode_sel(&info[policy_info::SEL..policy_info::SEL + sel::LEN])?,
        lifetime: decode_lft(&info[policy_info::LFT..policy_info::LFT + lft::LEN]),
        priority: u32_at(info, policy_info::PRIORITY),
        index: u32_at(info, policy_info::INDEX),
        dir: info[policy_info::DIR],
        action: info[policy_info::ACTION],
        flags: info[policy_info::FLAGS],
        ptype: 0,
        mark: (0, 0),
        if_id: 0,
        tmpls: Vec::new(),
    };
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            XFRMA_TMPL => {
                for t in v.chunks_exact(tmpl::LEN) {
                    let family = u16_at(t, tmpl::FAMILY);
                    sp.tmpls.push(XfrmTmpl {
                        daddr: addr_at(t, tmpl::ID + id::DADDR, family)?,
                        spi: be32_at(t, tmpl::ID + id::SPI),
                        proto: t[tmpl::ID + id::PROTO],
                        saddr: addr_at(t, tmpl::SADDR, family)?,
                        reqid: u32_at(t, tmpl::REQID),
                        mode: t[tmpl::MODE],
                        share: t[tmpl::SHARE],
                        optional: t[tmpl::OPTIONAL],
                        aalgos: u32_at(t, tmpl::AALGOS),
                        ealgos: u32_at(t, tmpl::EALGOS),
                        calgos: u32_at(t, tmpl::CALGOS),
                    });
                }
            }
            XFRMA_POLICY_TYPE => sp.ptype = *v.first().unwrap_or(&0),
            XFRMA_MARK => sp.mark = decode_mark(v)?,
            XFRMA_IF_ID => sp.if_id = attr_u32(kind, v)?,
            _ => {}
        }
    }
    Ok(sp)
}

/// Policies of a socket (dir >= XFRM_POLICY_MAX) are not the system's.
const XFRM_POLICY_MAX: u8 = 3;

/// Decodes one NETLINK_XFRM message.
pub fn decode(msg: &NlMsg<'_>) -> Result<XfrmEvent, WireError> {
    let p = msg.payload;
    Ok(match msg.kind {
        XFRM_MSG_NEWSA | XFRM_MSG_UPDSA => {
            let (info, rest) = split(p, sa_info::LEN)?;
            let (sa, replay) = decode_sa(info, rest)?;
            XfrmEvent::Sa(sa, replay)
        }
        XFRM_MSG_DELSA => {
            // An xfrm_usersa_id, then the whole state in XFRMA_SA and the
            // state's other attributes (its mark among them).
            let (id, rest) = split(p, sa_id::LEN)?;
            let family = u16_at(id, sa_id::FAMILY);
            let mut key = SaKey {
                daddr: addr_at(id, sa_id::DADDR, family)?,
                spi: be32_at(id, sa_id::SPI),
                proto: id[sa_id::PROTO],
                mark: (0, 0),
            };
            for attr in attrs(rest) {
                let (kind, v) = attr?;
                if kind == XFRMA_MARK {
                    key.mark = decode_mark(v)?;
                }
            }
            XfrmEvent::DelSa(key)
        }
        XFRM_MSG_EXPIRE => {
            // xfrm_user_expire: the state, then `hard` (u8, padded to 8).
            let (info, rest) = split(p, sa_info::LEN + 8)?;
            let (sa, _) = decode_sa(&info[..sa_info::LEN], rest)?;
            if info[sa_info::LEN] != 0 {
                XfrmEvent::DelSa(sa.key())
            } else {
                XfrmEvent::Ignored
            }
        }
        XFRM_MSG_NEWPOLICY | XFRM_MSG_UPDPOLICY => {
            let (info, rest) = split(p, policy_info::LEN)?;
            let sp = decode_sp(info, rest)?;
            if sp.dir >= XFRM_POLICY_MAX {
                XfrmEvent::Ignored
            } else {
                XfrmEvent::Sp(sp)
            }
        }
        XFRM_MSG_DELPOLICY => {
            let (id, rest) = split(p, policy_id::LEN)?;
            let mut key = SpKey {
                index: u32_at(id, policy_id::INDEX),
                dir: id[policy_id::DIR],
                ptype: 0,
            };
            for attr in attrs(rest) {
                let (kind, v) = attr?;
                if kind == XFRMA_POLICY_TYPE {
                    key.ptype = *v.first().unwrap_or(&0);
                }
                // The index of the id may be 0 when the policy was named
                // by selector; the full policy in XFRMA_POLICY has it.
                if kind == XFRMA_POLICY && v.len() >= policy_info::LEN {
                    key.index = u32_at(v, policy_info::INDEX);
                }
            }
            if key.dir >= XFRM_POLICY_MAX {
                XfrmEvent::Ignored
            } else {
                XfrmEvent::DelSp(key)
            }
        }
        XFRM_MSG_POLEXPIRE => {
            // xfrm_user_polexpire: the policy, then `hard`.
            let (info, rest) = split(p, policy_info::LEN + 8)?;
            let sp = decode_sp(&info[..policy_info::LEN], rest)?;
            if info[policy_info::LEN] != 0 && sp.dir < XFRM_POLICY_MAX {
                XfrmEvent::DelSp(sp.key())
            } else {
                XfrmEvent::Ignored
            }
        }
        XFRM_MSG_FLUSHSA => XfrmEvent::FlushSa {
            proto: *p.first().ok_or(short(0))?,
        },
        XFRM_MSG_FLUSHPOLICY => {
            let mut ptype = 0;
            for attr in attrs(p) {
                let (kind, v) = attr?;
                if kind == XFRMA_POLICY_TYPE {
                    ptype = *v.first().unwrap_or(&0);
                }
            }
            XfrmEvent::FlushSp { ptype }
        }
        XFRM_MSG_NEWAE => {
            let (id, rest) = split(p, aevent_id::LEN)?;
            let sa = aevent_id::SA_ID;
            let family = u16_at(id, sa + sa_id::FAMILY);
            let mut key = SaKey {
                daddr: addr_at(id, sa + sa_id::DADDR, family)?,
                spi: be32_at(id, sa + sa_id::SPI),
                proto: id[sa + sa_id::PROTO],
                mark: (0, 0),
            };
            let mut replay = None;
            for attr in attrs(rest) {
                let (kind, v) = attr?;
                match kind {
                    XFRMA_MARK => key.mark = decode_mark(v)?,
                    XFRMA_REPLAY_VAL | XFRMA_REPLAY_ESN_VAL => replay = Some((kind, v)),
                    _ => {}
                }
            }
            match replay {
                Some((kind, v)) => XfrmEvent::Replay(decode_replay(key, kind, v)?.0),
                None => XfrmEvent::Ignored,
            }
        }
        XFRM_MSG_MIGRATE => {
            let (id, rest) = split(p, policy_id::LEN)?;
            let sel = decode_sel(&id[policy_id::SEL..policy_id::SEL + sel::LEN])?;
            let dir = id[policy_id::DIR];
            let (mut ptype, mut moves) = (0, Vec::new());
            for attr in attrs(rest) {
                let (kind, v) = attr?;
                match kind {
                    XFRMA_POLICY_TYPE => ptype = *v.first().unwrap_or(&0),
                    XFRMA_MIGRATE => {
                        for m in v.chunks_exact(migrate::LEN) {
                            let (old_family, new_family) = (
                                u16_at(m, migrate::OLD_FAMILY),
                                u16_at(m, migrate::NEW_FAMILY),
                            );
                            moves.push(Migration {
                                old_daddr: addr_at(m, migrate::OLD_DADDR, old_family)?,
                                old_saddr: addr_at(m, migrate::OLD_SADDR, old_family)?,
                                new_daddr: addr_at(m, migrate::NEW_DADDR, new_family)?,
                                new_saddr: addr_at(m, migrate::NEW_SADDR, new_family)?,
                                proto: m[migrate::PROTO],
                                mode: m[migrate::MODE],
                                reqid: u32_at(m, migrate::REQID),
                            });
                        }
                    }
                    _ => {}
                }
            }
            XfrmEvent::Migrate {
                sel,
                dir,
                ptype,
                moves,
            }
        }
        23 | 32 | 38 => XfrmEvent::Ignored, // ACQUIRE, REPORT, MAPPING
        _ => XfrmEvent::Unknown,
    })
}

/// A dump request: the header alone (XFRM_MSG_GETSA or GETPOLICY).
pub fn dump_request(kind: u16, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDRLEN);
    buf.extend_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf
}

/// The name the seed's `show netlink` prints for a message type.
pub fn type_name(kind: u16) -> String {
    let name = match kind {
        XFRM_MSG_NEWSA => "XFRM_MSG_NEWSA",
        XFRM_MSG_DELSA => "XFRM_MSG_DELSA",
        XFRM_MSG_NEWPOLICY => "XFRM_MSG_NEWPOLICY",
        XFRM_MSG_DELPOLICY => "XFRM_MSG_DELPOLICY",
        XFRM_MSG_EXPIRE => "XFRM_MSG_EXPIRE",
        XFRM_MSG_UPDPOLICY => "XFRM_MSG_UPDPOLICY",
        XFRM_MSG_UPDSA => "XFRM_MSG_UPDSA",
        XFRM_MSG_POLEXPIRE => "XFRM_MSG_POLEXPIRE",
        XFRM_MSG_FLUSHSA => "XFRM_MSG_FLUSHSA",
        XFRM_MSG_FLUSHPOLICY => "XFRM_MSG_FLUSHPOLICY",
        XFRM_MSG_NEWAE => "XFRM_MSG_NEWAE",
        XFRM_MSG_MIGRATE => "XFRM_MSG_MIGRATE",
        2 => "NLMSG_ERROR",
        3 => "NLMSG_DONE",
        _ => return format!("XFRM_MSG_[{kind}]"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests;
