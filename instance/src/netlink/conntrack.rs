//! ctnetlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_CTNETLINK) messages
//! decoded into conntrack objects, and the dump request.
//!
//! Invariants:
//! * No I/O, no logging; every length is checked, a malformed message is
//!   an error, never a panic. After the 4-byte `nfgenmsg`, attributes are
//!   nested (NLA_F_NESTED) and their integers are big-endian.
//! * Events and dumps yield the same object for one entry: only the
//!   compare-safe fields of [`Conntrack`] are kept (no timeout, counters,
//!   TCP state or use count, which change without an event).
//! * The kernel sends NEW and UPDATE both as IPCTNL_MSG_CT_NEW (NEW with
//!   NLM_F_CREATE), DESTROY as IPCTNL_MSG_CT_DELETE.

use super::wire::attrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fastpath::fpc::{Conntrack, CtTuple, Object, ObjectKey};

use super::wire::{Event, NlMsg, WireError, NLMSG_HDRLEN, NLM_F_DUMP, NLM_F_REQUEST};

pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_NEW: u16 = NFNL_SUBSYS_CTNETLINK << 8;
pub const IPCTNL_MSG_CT_GET: u16 = NFNL_SUBSYS_CTNETLINK << 8 | 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = NFNL_SUBSYS_CTNETLINK << 8 | 2;

/// NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY.
pub const GROUPS: [u32; 3] = [1, 2, 3];

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

fn be16(kind: u16, v: &[u8]) -> Result<u16, WireError> {
    v.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

fn be32(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    v.get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

fn u8_of(kind: u16, v: &[u8]) -> Result<u8, WireError> {
    v.first()
        .copied()
        .ok_or(WireError::BadAttr { kind, len: 0 })
}

fn addr(v: &[u8]) -> Result<IpAddr, WireError> {
    match v.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap()))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap()))),
        n => Err(WireError::BadAddress(n)),
    }
}

fn decode_tuple(v: &[u8]) -> Result<CtTuple, WireError> {
    let unspec = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut t = CtTuple {
        src: unspec,
        dst: unspec,
        proto: 0,
        sport: 0,
        dport: 0,
    };
    let (mut icmp_type, mut icmp_code) = (None, 0u8);
    for a in attrs(v) {
        let (kind, v) = a?;
        match kind {
            CTA_TUPLE_IP => {
                for a in attrs(v) {
                    let (k, v) = a?;
                    match k {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => t.src = addr(v)?,
                        CTA_IP_V4_DST | CTA_IP_V6_DST => t.dst = addr(v)?,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in attrs(v) {
                    let (k, v) = a?;
                    match k {
                        CTA_PROTO_NUM => t.proto = u8_of(k, v)?,
                        CTA_PROTO_SRC_PORT | CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                            t.sport = be16(k, v)?
                        }
                        CTA_PROTO_DST_PORT => t.dport = be16(k, v)?,
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            icmp_type = Some(u8_of(k, v)?)
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => icmp_code = u8_of(k, v)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(ty) = icmp_type {
        t.dport = u16::from(ty) << 8 | u16::from(icmp_code);
    }
    Ok(t)
}

/// The entry of an IPCTNL_MSG_CT_NEW or _DELETE.
fn decode_entry(payload: &[u8]) -> Result<Option<Conntrack>, WireError> {
    // struct nfgenmsg: family, version, res_id (be16).
    let rest = payload.get(4..).ok_or(WireError::Short(payload.len()))?;
    let (mut orig, mut reply) = (None, None);
    let mut ct = Conntrack {
        orig: decode_tuple(&[])?,
        reply: decode_tuple(&[])?,
        zone: 0,
        status: 0,
        mark: 0,
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            CTA_TUPLE_ORIG => orig = Some(decode_tuple(v)?),
            CTA_TUPLE_REPLY => reply = Some(decode_tuple(v)?),
            CTA_STATUS => ct.status = be32(kind, v)? & Conntrack::STATUS_SYNCED,
            CTA_MARK => ct.mark = be32(kind, v)?,
            CTA_ZONE => ct.zone = be16(kind, v)?,
            _ => {}
        }
    }
    let (Some(o), Some(r)) = (orig, reply) else {
        return Ok(None); // not an entry (a template, an expectation)
    };
    ct.orig = o;
    ct.reply = r;
    Ok(Some(ct))
}

/// Decodes one ctnetlink message.
pub fn decode(msg: &NlMsg<'_>) -> Result<Event, WireError> {
    Ok(match msg.kind {
        IPCTNL_MSG_CT_NEW => match decode_entry(msg.payload)? {
            Some(ct) => Event::New(Object::Conntrack(ct)),
            None => Event::Ignored,
        },
        IPCTNL_MSG_CT_DELETE => match decode_entry(msg.payload)? {
            Some(ct) => Event::Del(ObjectKey::Conntrack(ct.key())),
            None => Event::Ignored,
        },
        _ => Event::Unknown,
    })
}

/// A dump of every entry of every family (nfgenmsg family 0).
pub fn dump_request(seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&IPCTNL_MSG_CT_GET.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf
}

/// The name `show netlink` prints for a message type.
pub fn type_name(kind: u16) -> String {
    match kind {
        IPCTNL_MSG_CT_NEW => "IPCTNL_MSG_CT_NEW".into(),
        IPCTNL_MSG_CT_DELETE => "IPCTNL_MSG_CT_DELETE".into(),
        2 => "NLMSG_ERROR".into(),
        3 => "NLMSG_DONE".into(),
        _ => format!("NFNL_MSG_[{kind:#x}]"),
    }
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

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let ip = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
        let proto = [
            attr(CTA_PROTO_NUM, &[6]),
            attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
        .concat();
        [
            attr(CTA_TUPLE_IP | NESTED, &ip),
            attr(CTA_TUPLE_PROTO | NESTED, &proto),
        ]
        .concat()
    }

    /// A DNAT-ed TCP entry as the kernel sends it, with the fields that
    /// are left out (timeout, use, id).
    fn message(kind: u16, timeout: u32) -> Vec<u8> {
        let body = [
            vec![2, 0, 0, 0],
            attr(
                CTA_TUPLE_ORIG | NESTED,
                &tuple([10, 0, 0, 1], [192, 0, 2, 9], 40000, 80),
            ),
            attr(
                CTA_TUPLE_REPLY | NESTED,
                &tuple([10, 1, 0, 9], [10, 0, 0, 1], 8080, 40000),
            ),
            attr(CTA_STATUS, &(0x1aau32 | 1 << 12).to_be_bytes()),
            attr(CTA_TIMEOUT_FOR_TEST, &timeout.to_be_bytes()),
            attr(CTA_MARK, &7u32.to_be_bytes()),
            attr(CTA_ZONE, &3u16.to_be_bytes()),
        ]
        .concat();
        let mut m = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    const CTA_TIMEOUT_FOR_TEST: u16 = 7;

    fn decode_one(buf: &[u8]) -> Result<Event, WireError> {
        let mut it = Messages::new(buf);
        let msg = it.next().expect("one message")?;
        decode(&msg)
    }

    #[test]
    fn dnat_entry_without_its_timeout() {
        let Ok(Event::New(Object::Conntrack(ct))) = decode_one(&message(IPCTNL_MSG_CT_NEW, 100))
        else {
            panic!()
        };
        assert_eq!(ct.orig.dst, "192.0.2.9".parse::<IpAddr>().unwrap());
        assert_eq!((ct.orig.sport, ct.orig.dport), (40000, 80));
        assert_eq!(ct.reply.src, "10.1.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(ct.reply.sport, 8080);
        assert_eq!((ct.zone, ct.mark), (3, 7));
        assert_eq!(ct.status, 0x1aa, "bit 12 (untracked) is not kept");
        // Another timeout is the same object.
        assert_eq!(
            decode_one(&message(IPCTNL_MSG_CT_NEW, 5)),
            Ok(Event::New(Object::Conntrack(ct.clone())))
        );
        assert_eq!(
            decode_one(&message(IPCTNL_MSG_CT_DELETE, 0)),
            Ok(Event::Del(ObjectKey::Conntrack(ct.key())))
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let msg = message(IPCTNL_MSG_CT_NEW, 1);
        for cut in NLMSG_HDRLEN..msg.len() {
            let mut m = msg[..cut].to_vec();
            m[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            let _ = decode_one(&m);
        }
        for at in NLMSG_HDRLEN..msg.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut m = msg.clone();
                m[at] = v;
                let _ = decode_one(&m);
            }
        }
    }

    #[test]
    fn dump_request_layout() {
        let r = dump_request(5);
        assert_eq!(r.len(), 20);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 0x101);
    }
}
