//! Multicast routes: RTM_NEWROUTE / RTM_DELROUTE of the families
//! RTNL_FAMILY_IPMR and RTNL_FAMILY_IP6MR (the kernel's MFC entries, as
//! `ip mroute` shows them), decoded into [`Mroute`] objects.
//!
//! Invariants: no I/O, no logging, no panic on any input; RTA_MFC_STATS
//! and RTA_EXPIRES (counters, last use) are left out, so a notified entry
//! equals a dumped one; outgoing interfaces are kept sorted by ifindex.

use super::wire::attrs;
use std::net::IpAddr;

use fpc::{Mroute, Object, ObjectKey};

use super::wire::{Event, WireError};

pub const RTNL_FAMILY_IPMR: u8 = 128;
pub const RTNL_FAMILY_IP6MR: u8 = 129;

/// The rtnetlink family of multicast routing for an address family
/// (RTNL_FAMILY_IPMR for AF_INET, RTNL_FAMILY_IP6MR for AF_INET6).
pub fn rtnl_family(af: u8) -> u8 {
    if af == fpc::AF_INET6 {
        RTNL_FAMILY_IP6MR
    } else {
        RTNL_FAMILY_IPMR
    }
}

const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_IIF: u16 = 3;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;

fn ip(v: &[u8]) -> Result<IpAddr, WireError> {
    match v.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(v).unwrap())),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(v).unwrap())),
        n => Err(WireError::BadAddress(n)),
    }
}

pub(super) fn u32_of(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    v.get(..4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

/// Whether an RTM_*ROUTE payload is of a multicast routing family.
pub fn is_mroute(payload: &[u8]) -> bool {
    matches!(
        payload.first(),
        Some(&RTNL_FAMILY_IPMR | &RTNL_FAMILY_IP6MR)
    )
}

fn decode_mfc(payload: &[u8]) -> Result<Mroute, WireError> {
    // struct rtmsg (12 bytes): family, dst_len, src_len, tos, table, ...
    let rest = payload.get(12..).ok_or(WireError::Short(payload.len()))?;
    let family = payload[0];
    let any = if family == RTNL_FAMILY_IP6MR {
        IpAddr::from([0u8; 16])
    } else {
        IpAddr::from([0u8; 4])
    };
    let mut m = Mroute {
        table: payload[4].into(),
        source: any,
        group: any,
        iif: 0,
        oifs: Vec::new(),
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            RTA_SRC => m.source = ip(v)?,
            RTA_DST => m.group = ip(v)?,
            RTA_IIF => m.iif = u32_of(kind, v)?,
            RTA_TABLE => m.table = u32_of(kind, v)?,
            RTA_MULTIPATH => {
                // struct rtnexthop: len, flags, hops (the TTL), ifindex.
                let mut v = v;
                while v.len() >= 8 {
                    let len = u16::from_ne_bytes([v[0], v[1]]) as usize;
                    if len < 8 || len > v.len() {
                        return Err(WireError::BadAttr { kind, len });
                    }
                    m.oifs
                        .push((u32::from_ne_bytes(v[4..8].try_into().unwrap()), v[3]));
                    v = &v[((len + 3) & !3).min(v.len())..];
                }
            }
            _ => {}
        }
    }
    if m.source.is_ipv4() != m.group.is_ipv4() || m.group.is_ipv4() != (family == RTNL_FAMILY_IPMR)
    {
        return Err(WireError::BadFamily(family));
    }
    m.oifs.sort_unstable();
    Ok(m)
}

/// An RTM_NEWROUTE (`new`) or RTM_DELROUTE of a multicast family.
pub fn decode(payload: &[u8], new: bool) -> Result<Event, WireError> {
    let m = decode_mfc(payload)?;
    Ok(if new {
        Event::New(Object::Mroute(m))
    } else {
        Event::Del(ObjectKey::Mroute(m.key()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b
    }

    fn nexthop(ifindex: u32, ttl: u8) -> Vec<u8> {
        let mut b = 8u16.to_ne_bytes().to_vec();
        b.extend_from_slice(&[0, ttl]);
        b.extend_from_slice(&ifindex.to_ne_bytes());
        b
    }

    fn payload(stats: u64) -> Vec<u8> {
        let mut p = vec![RTNL_FAMILY_IPMR, 32, 32, 0, 253, 0, 0, 5, 0, 0, 0, 0];
        p.extend(attr(RTA_TABLE, &253u32.to_ne_bytes()));
        p.extend(attr(RTA_SRC, &[10, 0, 0, 1]));
        p.extend(attr(RTA_DST, &[239, 1, 1, 1]));
        p.extend(attr(RTA_IIF, &2u32.to_ne_bytes()));
        p.extend(attr(
            RTA_MULTIPATH,
            &[nexthop(4, 2), nexthop(3, 1)].concat(),
        ));
        p.extend(attr(17, &stats.to_ne_bytes())); // RTA_MFC_STATS
        p
    }

    #[test]
    fn mfc_entry_without_its_counters() {
        let Ok(Event::New(Object::Mroute(m))) = decode(&payload(0), true) else {
            panic!()
        };
        assert_eq!(m.table, 253);
        assert_eq!(
            (m.source.to_string(), m.group.to_string()),
            ("10.0.0.1".into(), "239.1.1.1".into())
        );
        assert_eq!(m.iif, 2);
        assert_eq!(m.oifs, vec![(3, 1), (4, 2)]);
        assert_eq!(
            decode(&payload(99), true),
            Ok(Event::New(Object::Mroute(m)))
        );
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let p = payload(1);
        for cut in 0..p.len() {
            let _ = decode(&p[..cut], true);
        }
        for at in 0..p.len() {
            for v in [0u8, 1, 4, 8, 0x80, 0xff] {
                let mut b = p.clone();
                b[at] = v;
                let _ = decode(&b, false);
            }
        }
    }
}
