//! NETLINK_XFRM messages as the kernel sends them, decoded into IPsec
//! objects; and the inverse, an encoder of the same kernel layouts, for
//! byte fixtures and captures (this kernel has no ESP, so SAs can only be
//! replayed).
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

use super::wire::attrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fpc::{
    Encap, Lifetime, SaKey, Selector, SpKey, XfrmAlgo, XfrmReplay, XfrmSa, XfrmSp, XfrmTmpl,
    AF_INET, AF_INET6,
};

use super::wire::{NlMsg, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST};

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

const SEL_LEN: usize = 56;
const ID_LEN: usize = 24;
const LFT_LEN: usize = 64;
const SA_INFO_LEN: usize = 224;
const SA_ID_LEN: usize = 24;
const POLICY_INFO_LEN: usize = 168;
const POLICY_ID_LEN: usize = 64;
const TMPL_LEN: usize = 64;
const AEVENT_ID_LEN: usize = 48;
const MIGRATE_LEN: usize = 76;
const ALGO_NAME_LEN: usize = 64;

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
    let family = u16_at(b, 40);
    // A selector of family 0 matches everything: addresses are zero of
    // the state's family; IPv4 then.
    let fam = if family == 0 { AF_INET as u16 } else { family };
    Ok(Selector {
        daddr: addr_at(b, 0, fam)?,
        saddr: addr_at(b, 16, fam)?,
        dport: be16_at(b, 32),
        dport_mask: be16_at(b, 34),
        sport: be16_at(b, 36),
        sport_mask: be16_at(b, 38),
        prefixlen_d: b[42],
        prefixlen_s: b[43],
        proto: b[44],
        ifindex: u32_at(b, 48) as i32,
        user: u32_at(b, 52),
    })
}

fn decode_lft(b: &[u8]) -> Lifetime {
    Lifetime {
        soft_bytes: u64_at(b, 0),
        hard_bytes: u64_at(b, 8),
        soft_packets: u64_at(b, 16),
        hard_packets: u64_at(b, 24),
        soft_add_seconds: u64_at(b, 32),
        hard_add_seconds: u64_at(b, 40),
        soft_use_seconds: u64_at(b, 48),
        hard_use_seconds: u64_at(b, 56),
    }
}

fn decode_mark(v: &[u8]) -> Result<(u32, u32), WireError> {
    if v.len() < 8 {
        return Err(WireError::BadAttr {
            kind: XFRMA_MARK,
            len: v.len(),
        });
    }
    Ok((u32_at(v, 0), u32_at(v, 4)))
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
    let fixed = ALGO_NAME_LEN + if with_param { 8 } else { 4 };
    if v.len() < fixed {
        return Err(bad());
    }
    let name = v[..ALGO_NAME_LEN].split(|b| *b == 0).next().unwrap_or(&[]);
    let key_bits = u32_at(v, ALGO_NAME_LEN);
    let key_len = key_bits.div_ceil(8) as usize;
    if key_len > 255 || v.len() < fixed + key_len {
        return Err(bad());
    }
    Ok(XfrmAlgo {
        attr: kind as u8,
        name: String::from_utf8_lossy(name).into_owned(),
        key_bits,
        param: if with_param {
            u32_at(v, ALGO_NAME_LEN + 4)
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
        if v.len() < 12 {
            return Err(bad());
        }
        r.oseq = u32_at(v, 0).into();
        r.seq = u32_at(v, 4).into();
        r.bitmap = vec![u32_at(v, 8)];
        return Ok((r, 0));
    }
    if v.len() < 24 {
        return Err(bad());
    }
    let bmp_len = u32_at(v, 0) as usize;
    if bmp_len > (v.len() - 24) / 4 {
        return Err(bad());
    }
    r.oseq = u64::from(u32_at(v, 12)) << 32 | u64::from(u32_at(v, 4));
    r.seq = u64::from(u32_at(v, 16)) << 32 | u64::from(u32_at(v, 8));
    r.bitmap = (0..bmp_len).map(|i| u32_at(v, 24 + 4 * i)).collect();
    Ok((r, u32_at(v, 20)))
}

/// An `xfrm_usersa_info` and the attributes that follow it.
fn decode_sa(info: &[u8], rest: &[u8]) -> Result<(XfrmSa, Option<XfrmReplay>), WireError> {
    let family = u16_at(info, 212);
    let id = &info[SEL_LEN..SEL_LEN + ID_LEN];
    let mut sa = XfrmSa {
        sel: decode_sel(&info[..SEL_LEN])?,
        daddr: addr_at(id, 0, family)?,
        spi: be32_at(id, 16),
        proto: id[20],
        saddr: addr_at(info, 80, family)?,
        mode: info[214],
        reqid: u32_at(info, 208),
        replay_window: info[215].into(),
        flags: info[216].into(),
        algos: Vec::new(),
        encap: None,
        mark: (0, 0),
        if_id: 0,
        lifetime: decode_lft(&info[96..96 + LFT_LEN]),
    };
    let mut replay_attr = None;
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            XFRMA_ALG_AUTH | XFRMA_ALG_CRYPT | XFRMA_ALG_COMP | XFRMA_ALG_AEAD
            | XFRMA_ALG_AUTH_TRUNC => sa.algos.push(decode_algo(kind, v)?),
            XFRMA_ENCAP => {
                if v.len() < 24 {
                    return Err(WireError::BadAttr { kind, len: v.len() });
                }
                let oa = addr_at(v, 8, family)?;
                sa.encap = Some(Encap {
                    encap_type: u16_at(v, 0),
                    sport: be16_at(v, 2),
                    dport: be16_at(v, 4),
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
        sel: decode_sel(&info[..SEL_LEN])?,
        lifetime: decode_lft(&info[SEL_LEN..SEL_LEN + LFT_LEN]),
        priority: u32_at(info, 152),
        index: u32_at(info, 156),
        dir: info[160],
        action: info[161],
        flags: info[162],
        ptype: 0,
        mark: (0, 0),
        if_id: 0,
        tmpls: Vec::new(),
    };
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            XFRMA_TMPL => {
                for t in v.chunks_exact(TMPL_LEN) {
                    let family = u16_at(t, 24);
                    sp.tmpls.push(XfrmTmpl {
                        daddr: addr_at(t, 0, family)?,
                        spi: be32_at(t, 16),
                        proto: t[20],
                        saddr: addr_at(t, 28, family)?,
                        reqid: u32_at(t, 44),
                        mode: t[48],
                        share: t[49],
                        optional: t[50],
                        aalgos: u32_at(t, 52),
                        ealgos: u32_at(t, 56),
                        calgos: u32_at(t, 60),
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
            let (info, rest) = split(p, SA_INFO_LEN)?;
            let (sa, replay) = decode_sa(info, rest)?;
            XfrmEvent::Sa(sa, replay)
        }
        XFRM_MSG_DELSA => {
            // An xfrm_usersa_id, then the whole state in XFRMA_SA and the
            // state's other attributes (its mark among them).
            let (id, rest) = split(p, SA_ID_LEN)?;
            let family = u16_at(id, 20);
            let mut key = SaKey {
                daddr: addr_at(id, 0, family)?,
                spi: be32_at(id, 16),
                proto: id[22],
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
            let (info, rest) = split(p, SA_INFO_LEN + 8)?;
            let (sa, _) = decode_sa(&info[..SA_INFO_LEN], rest)?;
            if info[SA_INFO_LEN] != 0 {
                XfrmEvent::DelSa(sa.key())
            } else {
                XfrmEvent::Ignored
            }
        }
        XFRM_MSG_NEWPOLICY | XFRM_MSG_UPDPOLICY => {
            let (info, rest) = split(p, POLICY_INFO_LEN)?;
            let sp = decode_sp(info, rest)?;
            if sp.dir >= XFRM_POLICY_MAX {
                XfrmEvent::Ignored
            } else {
                XfrmEvent::Sp(sp)
            }
        }
        XFRM_MSG_DELPOLICY => {
            let (id, rest) = split(p, POLICY_ID_LEN)?;
            let mut key = SpKey {
                index: u32_at(id, 56),
                dir: id[60],
                ptype: 0,
            };
            for attr in attrs(rest) {
                let (kind, v) = attr?;
                if kind == XFRMA_POLICY_TYPE {
                    key.ptype = *v.first().unwrap_or(&0);
                }
                // The index of the id may be 0 when the policy was named
                // by selector; the full policy in XFRMA_POLICY has it.
                if kind == XFRMA_POLICY && v.len() >= POLICY_INFO_LEN {
                    key.index = u32_at(v, 156);
                }
            }
            if key.dir >= XFRM_POLICY_MAX {
                XfrmEvent::Ignored
            } else {
                XfrmEvent::DelSp(key)
            }
        }
        XFRM_MSG_POLEXPIRE => {
            let (info, rest) = split(p, POLICY_INFO_LEN + 8)?;
            let sp = decode_sp(&info[..POLICY_INFO_LEN], rest)?;
            if info[POLICY_INFO_LEN] != 0 && sp.dir < XFRM_POLICY_MAX {
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
            let (id, rest) = split(p, AEVENT_ID_LEN)?;
            let family = u16_at(id, 20);
            let mut key = SaKey {
                daddr: addr_at(id, 0, family)?,
                spi: be32_at(id, 16),
                proto: id[22],
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
            let (id, rest) = split(p, POLICY_ID_LEN)?;
            let sel = decode_sel(&id[..SEL_LEN])?;
            let dir = id[60];
            let (mut ptype, mut moves) = (0, Vec::new());
            for attr in attrs(rest) {
                let (kind, v) = attr?;
                match kind {
                    XFRMA_POLICY_TYPE => ptype = *v.first().unwrap_or(&0),
                    XFRMA_MIGRATE => {
                        for m in v.chunks_exact(MIGRATE_LEN) {
                            let (old_family, new_family) = (u16_at(m, 72), u16_at(m, 74));
                            moves.push(Migration {
                                old_daddr: addr_at(m, 0, old_family)?,
                                old_saddr: addr_at(m, 16, old_family)?,
                                new_daddr: addr_at(m, 32, new_family)?,
                                new_saddr: addr_at(m, 48, new_family)?,
                                proto: m[64],
                                mode: m[65],
                                reqid: u32_at(m, 68),
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

/// Encoders of the kernel's messages, for byte fixtures (tests, demos):
/// each is what the kernel would multicast for the object.
pub mod build {
    use super::*;

    fn family(ip: &IpAddr) -> u16 {
        if ip.is_ipv4() {
            AF_INET.into()
        } else {
            AF_INET6.into()
        }
    }

    fn put_addr(b: &mut [u8], at: usize, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => b[at..at + 4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => b[at..at + 16].copy_from_slice(&a.octets()),
        }
    }

    fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    }

    fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put_u64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    fn sel(s: &Selector) -> [u8; SEL_LEN] {
        let mut b = [0; SEL_LEN];
        put_addr(&mut b, 0, &s.daddr);
        put_addr(&mut b, 16, &s.saddr);
        b[32..34].copy_from_slice(&s.dport.to_be_bytes());
        b[34..36].copy_from_slice(&s.dport_mask.to_be_bytes());
        b[36..38].copy_from_slice(&s.sport.to_be_bytes());
        b[38..40].copy_from_slice(&s.sport_mask.to_be_bytes());
        put_u16(&mut b, 40, family(&s.daddr));
        b[42] = s.prefixlen_d;
        b[43] = s.prefixlen_s;
        b[44] = s.proto;
        put_u32(&mut b, 48, s.ifindex as u32);
        put_u32(&mut b, 52, s.user);
        b
    }

    fn lft(l: &Lifetime) -> [u8; LFT_LEN] {
        let mut b = [0; LFT_LEN];
        for (i, v) in [
            l.soft_bytes,
            l.hard_bytes,
            l.soft_packets,
            l.hard_packets,
            l.soft_add_seconds,
            l.hard_add_seconds,
            l.soft_use_seconds,
            l.hard_use_seconds,
        ]
        .into_iter()
        .enumerate()
        {
            put_u64(&mut b, 8 * i, v);
        }
        b
    }

    /// A message under construction: header, fixed part, attributes.
    struct Msg(Vec<u8>);

    impl Msg {
        fn new(kind: u16, fixed: &[u8]) -> Msg {
            let mut b = vec![0u8; NLMSG_HDRLEN];
            b[4..6].copy_from_slice(&kind.to_ne_bytes());
            b.extend_from_slice(fixed);
            Msg(b)
        }
        fn attr(mut self, kind: u16, value: &[u8]) -> Msg {
            self.0
                .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            self.0.extend_from_slice(&kind.to_ne_bytes());
            self.0.extend_from_slice(value);
            while !self.0.len().is_multiple_of(4) {
                self.0.push(0);
            }
            self
        }
        fn done(mut self) -> Vec<u8> {
            let len = self.0.len() as u32;
            self.0[0..4].copy_from_slice(&len.to_ne_bytes());
            self.0
        }
    }

    fn sa_info(sa: &XfrmSa) -> Vec<u8> {
        let mut b = vec![0u8; SA_INFO_LEN];
        b[..SEL_LEN].copy_from_slice(&sel(&sa.sel));
        put_addr(&mut b, SEL_LEN, &sa.daddr);
        b[SEL_LEN + 16..SEL_LEN + 20].copy_from_slice(&sa.spi.to_be_bytes());
        b[SEL_LEN + 20] = sa.proto;
        put_addr(&mut b, 80, &sa.saddr);
        b[96..96 + LFT_LEN].copy_from_slice(&lft(&sa.lifetime));
        put_u32(&mut b, 208, sa.reqid);
        put_u16(&mut b, 212, family(&sa.daddr));
        b[214] = sa.mode;
        b[215] = sa.replay_window.min(255) as u8;
        b[216] = sa.flags as u8;
        b
    }

    fn replay_attr(r: &XfrmReplay, window: u32) -> (u16, Vec<u8>) {
        let mut v = Vec::new();
        if r.esn {
            v.extend_from_slice(&(r.bitmap.len() as u32).to_ne_bytes());
            v.extend_from_slice(&(r.oseq as u32).to_ne_bytes());
            v.extend_from_slice(&(r.seq as u32).to_ne_bytes());
            v.extend_from_slice(&((r.oseq >> 32) as u32).to_ne_bytes());
            v.extend_from_slice(&((r.seq >> 32) as u32).to_ne_bytes());
            v.extend_from_slice(&window.to_ne_bytes());
            for w in &r.bitmap {
                v.extend_from_slice(&w.to_ne_bytes());
            }
            (XFRMA_REPLAY_ESN_VAL, v)
        } else {
            v.extend_from_slice(&(r.oseq as u32).to_ne_bytes());
            v.extend_from_slice(&(r.seq as u32).to_ne_bytes());
            v.extend_from_slice(&r.bitmap.first().copied().unwrap_or(0).to_ne_bytes());
            (XFRMA_REPLAY_VAL, v)
        }
    }

    fn sa_attrs(mut m: Msg, sa: &XfrmSa, replay: Option<&XfrmReplay>) -> Msg {
        for a in &sa.algos {
            let mut v = vec![0u8; ALGO_NAME_LEN];
            let n = a.name.len().min(ALGO_NAME_LEN - 1);
            v[..n].copy_from_slice(&a.name.as_bytes()[..n]);
            v.extend_from_slice(&a.key_bits.to_ne_bytes());
            if matches!(a.attr.into(), XFRMA_ALG_AUTH_TRUNC | XFRMA_ALG_AEAD) {
                v.extend_from_slice(&a.param.to_ne_bytes());
            }
            v.extend_from_slice(&a.key);
            m = m.attr(a.attr.into(), &v);
        }
        if let Some(e) = &sa.encap {
            let mut v = vec![0u8; 24];
            put_u16(&mut v, 0, e.encap_type);
            v[2..4].copy_from_slice(&e.sport.to_be_bytes());
            v[4..6].copy_from_slice(&e.dport.to_be_bytes());
            if let Some(oa) = &e.oa {
                put_addr(&mut v, 8, oa);
            }
            m = m.attr(XFRMA_ENCAP, &v);
        }
        if let Some(r) = replay {
            let (kind, v) = replay_attr(r, sa.replay_window);
            m = m.attr(kind, &v);
        }
        if sa.flags >> 8 != 0 {
            m = m.attr(XFRMA_SA_EXTRA_FLAGS, &(sa.flags >> 8).to_ne_bytes());
        }
        if sa.mark != (0, 0) {
            let mut v = sa.mark.0.to_ne_bytes().to_vec();
            v.extend_from_slice(&sa.mark.1.to_ne_bytes());
            m = m.attr(XFRMA_MARK, &v);
        }
        if sa.if_id != 0 {
            m = m.attr(XFRMA_IF_ID, &sa.if_id.to_ne_bytes());
        }
        m
    }

    /// XFRM_MSG_NEWSA (or UPDSA with `update`), with the replay state.
    pub fn new_sa(sa: &XfrmSa, replay: Option<&XfrmReplay>, update: bool) -> Vec<u8> {
        let kind = if update {
            XFRM_MSG_UPDSA
        } else {
            XFRM_MSG_NEWSA
        };
        sa_attrs(Msg::new(kind, &sa_info(sa)), sa, replay).done()
    }

    /// XFRM_MSG_DELSA: the id, the state in XFRMA_SA, its attributes.
    pub fn del_sa(sa: &XfrmSa) -> Vec<u8> {
        let mut id = vec![0u8; SA_ID_LEN];
        put_addr(&mut id, 0, &sa.daddr);
        id[16..20].copy_from_slice(&sa.spi.to_be_bytes());
        put_u16(&mut id, 20, family(&sa.daddr));
        id[22] = sa.proto;
        let m = Msg::new(XFRM_MSG_DELSA, &id).attr(XFRMA_SA, &sa_info(sa));
        sa_attrs(m, sa, None).done()
    }

    /// XFRM_MSG_EXPIRE, soft or hard.
    pub fn expire(sa: &XfrmSa, hard: bool) -> Vec<u8> {
        let mut fixed = sa_info(sa);
        fixed.extend_from_slice(&[hard as u8, 0, 0, 0, 0, 0, 0, 0]);
        sa_attrs(Msg::new(XFRM_MSG_EXPIRE, &fixed), sa, None).done()
    }

    /// XFRM_MSG_FLUSHSA of `proto` (IPSEC_PROTO_ANY for all).
    pub fn flush_sa(proto: u8) -> Vec<u8> {
        Msg::new(XFRM_MSG_FLUSHSA, &[proto, 0, 0, 0]).done()
    }

    /// XFRM_MSG_NEWAE: an SA's new sequence numbers.
    pub fn new_ae(r: &XfrmReplay, saddr: &IpAddr, reqid: u32, window: u32) -> Vec<u8> {
        let mut id = vec![0u8; AEVENT_ID_LEN];
        put_addr(&mut id, 0, &r.daddr);
        id[16..20].copy_from_slice(&r.spi.to_be_bytes());
        put_u16(&mut id, 20, family(&r.daddr));
        id[22] = r.proto;
        put_addr(&mut id, 24, saddr);
        put_u32(&mut id, 44, reqid);
        let (kind, v) = replay_attr(r, window);
        let mut m = Msg::new(XFRM_MSG_NEWAE, &id).attr(kind, &v);
        if r.mark != (0, 0) {
            let mut v = r.mark.0.to_ne_bytes().to_vec();
            v.extend_from_slice(&r.mark.1.to_ne_bytes());
            m = m.attr(XFRMA_MARK, &v);
        }
        m.done()
    }

    fn sp_info(sp: &XfrmSp) -> Vec<u8> {
        let mut b = vec![0u8; POLICY_INFO_LEN];
        b[..SEL_LEN].copy_from_slice(&sel(&sp.sel));
        b[SEL_LEN..SEL_LEN + LFT_LEN].copy_from_slice(&lft(&sp.lifetime));
        put_u32(&mut b, 152, sp.priority);
        put_u32(&mut b, 156, sp.index);
        b[160] = sp.dir;
        b[161] = sp.action;
        b[162] = sp.flags;
        b
    }

    fn sp_attrs(mut m: Msg, sp: &XfrmSp) -> Msg {
        if !sp.tmpls.is_empty() {
            let mut v = Vec::new();
            for t in &sp.tmpls {
                let mut b = [0u8; TMPL_LEN];
                put_addr(&mut b, 0, &t.daddr);
                b[16..20].copy_from_slice(&t.spi.to_be_bytes());
                b[20] = t.proto;
                put_u16(&mut b, 24, family(&t.daddr));
                put_addr(&mut b, 28, &t.saddr);
                put_u32(&mut b, 44, t.reqid);
                b[48] = t.mode;
                b[49] = t.share;
                b[50] = t.optional;
                put_u32(&mut b, 52, t.aalgos);
                put_u32(&mut b, 56, t.ealgos);
                put_u32(&mut b, 60, t.calgos);
                v.extend_from_slice(&b);
            }
            m = m.attr(XFRMA_TMPL, &v);
        }
        m = m.attr(XFRMA_POLICY_TYPE, &[sp.ptype, 0, 0, 0, 0, 0]);
        if sp.mark != (0, 0) {
            let mut v = sp.mark.0.to_ne_bytes().to_vec();
            v.extend_from_slice(&sp.mark.1.to_ne_bytes());
            m = m.attr(XFRMA_MARK, &v);
        }
        if sp.if_id != 0 {
            m = m.attr(XFRMA_IF_ID, &sp.if_id.to_ne_bytes());
        }
        m
    }

    /// XFRM_MSG_NEWPOLICY.
    pub fn new_sp(sp: &XfrmSp) -> Vec<u8> {
        sp_attrs(Msg::new(XFRM_MSG_NEWPOLICY, &sp_info(sp)), sp).done()
    }

    fn policy_id(s: &Selector, index: u32, dir: u8) -> Vec<u8> {
        let mut id = vec![0u8; POLICY_ID_LEN];
        id[..SEL_LEN].copy_from_slice(&sel(s));
        put_u32(&mut id, 56, index);
        id[60] = dir;
        id
    }

    /// XFRM_MSG_DELPOLICY: the id, the policy in XFRMA_POLICY, its attributes.
    pub fn del_sp(sp: &XfrmSp) -> Vec<u8> {
        let m = Msg::new(XFRM_MSG_DELPOLICY, &policy_id(&sp.sel, sp.index, sp.dir))
            .attr(XFRMA_POLICY, &sp_info(sp));
        sp_attrs(m, sp).done()
    }

    /// XFRM_MSG_MIGRATE of the policy (`sel`, `dir`) and its SAs.
    pub fn migrate(sel: &Selector, dir: u8, moves: &[Migration]) -> Vec<u8> {
        let mut v = Vec::new();
        for mv in moves {
            let mut b = [0u8; MIGRATE_LEN];
            put_addr(&mut b, 0, &mv.old_daddr);
            put_addr(&mut b, 16, &mv.old_saddr);
            put_addr(&mut b, 32, &mv.new_daddr);
            put_addr(&mut b, 48, &mv.new_saddr);
            b[64] = mv.proto;
            b[65] = mv.mode;
            put_u32(&mut b, 68, mv.reqid);
            put_u16(&mut b, 72, family(&mv.old_daddr));
            put_u16(&mut b, 74, family(&mv.new_daddr));
            v.extend_from_slice(&b);
        }
        Msg::new(XFRM_MSG_MIGRATE, &policy_id(sel, 0, dir))
            .attr(XFRMA_POLICY_TYPE, &[0, 0, 0, 0, 0, 0])
            .attr(XFRMA_MIGRATE, &v)
            .done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Messages;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn decode_one(buf: &[u8]) -> Result<XfrmEvent, WireError> {
        let mut it = Messages::new(buf);
        let msg = it.next().expect("one message")?;
        assert!(it.next().is_none());
        decode(&msg)
    }

    pub(crate) fn sample_sa() -> XfrmSa {
        XfrmSa {
            sel: Selector {
                daddr: ip("10.2.0.0"),
                saddr: ip("10.1.0.0"),
                prefixlen_d: 16,
                prefixlen_s: 16,
                dport: 0,
                dport_mask: 0,
                sport: 0,
                sport_mask: 0,
                proto: 0,
                ifindex: 0,
                user: 0,
            },
            daddr: ip("192.0.2.2"),
            spi: 0xc0ffee,
            proto: 50,
            saddr: ip("192.0.2.1"),
            mode: 1,
            reqid: 7,
            replay_window: 32,
            flags: 0,
            algos: vec![
                XfrmAlgo {
                    attr: XFRMA_ALG_CRYPT as u8,
                    name: "cbc(aes)".into(),
                    key_bits: 128,
                    param: 0,
                    key: vec![0x11; 16],
                },
                XfrmAlgo {
                    attr: XFRMA_ALG_AUTH_TRUNC as u8,
                    name: "hmac(sha256)".into(),
                    key_bits: 256,
                    param: 128,
                    key: vec![0x22; 32],
                },
            ],
            encap: None,
            mark: (0x10, 0xff),
            if_id: 0,
            lifetime: Lifetime {
                hard_add_seconds: 3600,
                ..Lifetime::default()
            },
        }
    }

    fn replay_of(sa: &XfrmSa, oseq: u64, seq: u64, esn: bool) -> XfrmReplay {
        let k = sa.key();
        XfrmReplay {
            daddr: k.daddr,
            spi: k.spi,
            proto: k.proto,
            mark: k.mark,
            oseq,
            seq,
            esn,
            bitmap: if esn { vec![0xf, 0] } else { vec![0xf] },
        }
    }

    #[test]
    fn sa_layout_is_the_kernels() {
        let sa = sample_sa();
        let msg = build::new_sa(&sa, None, false);
        // Header, 224-byte xfrm_usersa_info, then attributes.
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), XFRM_MSG_NEWSA);
        let info = &msg[NLMSG_HDRLEN..NLMSG_HDRLEN + SA_INFO_LEN];
        assert_eq!(&info[56..60], &[192, 0, 2, 2], "id.daddr");
        assert_eq!(
            &info[72..76],
            &[0, 0xc0, 0xff, 0xee],
            "id.spi, network order"
        );
        assert_eq!(info[76], 50, "id.proto");
        assert_eq!(&info[80..84], &[192, 0, 2, 1], "saddr");
        assert_eq!(u16::from_ne_bytes([info[212], info[213]]), 2, "family");
        assert_eq!((info[214], info[215]), (1, 32), "mode, replay_window");
        assert_eq!(decode_one(&msg), Ok(XfrmEvent::Sa(sa, None)));
    }

    #[test]
    fn sa_with_replay_state_both_forms() {
        let sa = sample_sa();
        for esn in [false, true] {
            let mut sa = sa.clone();
            let r = replay_of(&sa, if esn { 5 << 32 | 9 } else { 9 }, 4, esn);
            if esn {
                sa.replay_window = 64;
            }
            let msg = build::new_sa(&sa, Some(&r), true);
            assert_eq!(decode_one(&msg), Ok(XfrmEvent::Sa(sa, Some(r))));
        }
    }

    #[test]
    fn deletions_expires_and_flushes() {
        let sa = sample_sa();
        assert_eq!(
            decode_one(&build::del_sa(&sa)),
            Ok(XfrmEvent::DelSa(sa.key()))
        );
        assert_eq!(
            decode_one(&build::expire(&sa, true)),
            Ok(XfrmEvent::DelSa(sa.key()))
        );
        assert_eq!(
            decode_one(&build::expire(&sa, false)),
            Ok(XfrmEvent::Ignored)
        );
        assert_eq!(
            decode_one(&build::flush_sa(IPSEC_PROTO_ANY)),
            Ok(XfrmEvent::FlushSa {
                proto: IPSEC_PROTO_ANY
            })
        );
        assert!(flush_matches(IPSEC_PROTO_ANY, 50) && flush_matches(51, 51));
        assert!(!flush_matches(51, 50));
    }

    #[test]
    fn aevent_carries_the_sequence_numbers() {
        let sa = sample_sa();
        let r = replay_of(&sa, 1000, 990, false);
        let msg = build::new_ae(&r, &sa.saddr, sa.reqid, 32);
        assert_eq!(decode_one(&msg), Ok(XfrmEvent::Replay(r)));
    }

    fn sample_sp() -> XfrmSp {
        XfrmSp {
            sel: sample_sa().sel,
            dir: 1,
            index: 0x201,
            ptype: 0,
            priority: 1000,
            action: 0,
            flags: 0,
            mark: (0, 0),
            if_id: 0,
            lifetime: Lifetime {
                soft_bytes: u64::MAX,
                hard_bytes: u64::MAX,
                soft_packets: u64::MAX,
                hard_packets: u64::MAX,
                ..Lifetime::default()
            },
            tmpls: vec![XfrmTmpl {
                daddr: ip("192.0.2.2"),
                spi: 0,
                proto: 50,
                saddr: ip("192.0.2.1"),
                reqid: 7,
                mode: 1,
                share: 0,
                optional: 0,
                aalgos: u32::MAX,
                ealgos: u32::MAX,
                calgos: u32::MAX,
            }],
        }
    }

    #[test]
    fn policies_and_their_deletion() {
        let sp = sample_sp();
        assert_eq!(
            decode_one(&build::new_sp(&sp)),
            Ok(XfrmEvent::Sp(sp.clone()))
        );
        assert_eq!(
            decode_one(&build::del_sp(&sp)),
            Ok(XfrmEvent::DelSp(sp.key()))
        );
        // A socket policy (dir 3 + n) is not the system's.
        let mut sock = sp.clone();
        sock.dir = 4;
        assert_eq!(decode_one(&build::new_sp(&sock)), Ok(XfrmEvent::Ignored));
    }

    #[test]
    fn migrate_lists_its_moves() {
        let sp = sample_sp();
        let mv = Migration {
            old_daddr: ip("192.0.2.2"),
            old_saddr: ip("192.0.2.1"),
            new_daddr: ip("198.51.100.2"),
            new_saddr: ip("198.51.100.1"),
            proto: 50,
            mode: 1,
            reqid: 7,
        };
        assert_eq!(
            decode_one(&build::migrate(&sp.sel, 1, std::slice::from_ref(&mv))),
            Ok(XfrmEvent::Migrate {
                sel: sp.sel,
                dir: 1,
                ptype: 0,
                moves: vec![mv]
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let sa = sample_sa();
        let sp = sample_sp();
        let good = [
            build::new_sa(&sa, Some(&replay_of(&sa, 1, 2, true)), false),
            build::del_sa(&sa),
            build::expire(&sa, true),
            build::new_sp(&sp),
            build::del_sp(&sp),
            build::new_ae(&replay_of(&sa, 1, 2, false), &sa.saddr, 1, 32),
            build::migrate(
                &sp.sel,
                1,
                &[Migration {
                    old_daddr: ip("::1"),
                    old_saddr: ip("::2"),
                    new_daddr: ip("10.0.0.1"),
                    new_saddr: ip("10.0.0.2"),
                    proto: 50,
                    mode: 1,
                    reqid: 0,
                }],
            ),
        ];
        for msg in good {
            // Every truncation and every byte value at every place.
            for cut in NLMSG_HDRLEN..msg.len() {
                let mut m = msg[..cut].to_vec();
                m[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                let _ = decode_one(&m);
            }
            for at in NLMSG_HDRLEN..msg.len() {
                for v in [0u8, 1, 2, 10, 0x7f, 0xff] {
                    let mut m = msg.clone();
                    m[at] = v;
                    let _ = decode_one(&m);
                }
            }
        }
    }
}
