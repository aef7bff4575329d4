//! ctnetlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_CTNETLINK) messages
//! decoded into conntrack objects, and the dump request.
//!
//! Invariants:
//! * No I/O, no logging; every length is checked, a malformed message is
//!   an error, never a panic. After the 4-byte `nfgenmsg`, attributes are
//!   nested (NLA_F_NESTED) and their integers are big-endian.
//! * Events and dumps yield the same object for one entry, but for the
//!   timeout (CTA_TIMEOUT, the seconds left when the message was built,
//!   which counts down between events): only the fields of [`Conntrack`]
//!   are kept (no counters, TCP state or use count, which change without
//!   an event).
//! * The kernel sends NEW and UPDATE both as IPCTNL_MSG_CT_NEW (NEW with
//!   NLM_F_CREATE), DESTROY as IPCTNL_MSG_CT_DELETE. A change made through
//!   ctnetlink, even of the timeout alone (`conntrack -U --timeout`), is
//!   announced (an update event carrying the new CTA_TIMEOUT, nlmsg_pid the
//!   port id of the socket that asked); a timeout pushed back by a packet
//!   is not.
//! * [`refresh_request`] builds the update cmgrd sends to keep an entry
//!   that only a fast path carries alive: IPCTNL_MSG_CT_NEW without
//!   NLM_F_CREATE (ENOENT when the entry is gone), the original tuple,
//!   zone and timeout.

use super::wire::attrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fpc::{Conntrack, CtTuple, Object, ObjectKey, SeqAdj};

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
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
/// CTA_NAT_SEQ_ADJ_ORIG, _REPLY (nested CTA_SEQADJ_*), sent when the
/// entry has IPS_SEQ_ADJUST: a NAT helper (FTP) resized a payload.
const CTA_SEQ_ADJ_ORIG: u16 = 15;
const CTA_SEQ_ADJ_REPLY: u16 = 16;
const CTA_ZONE: u16 = 18;
const CTA_STATUS_MASK: u16 = 26;
const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;
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

/// A CTA_SEQ_ADJ_* nest. The kernel always sends its three members; a
/// nest without them is malformed.
fn decode_seq_adj(kind: u16, v: &[u8]) -> Result<SeqAdj, WireError> {
    let (mut pos, mut before, mut after) = (None, None, None);
    for a in attrs(v) {
        let (k, v) = a?;
        match k {
            CTA_SEQADJ_CORRECTION_POS => pos = Some(be32(k, v)?),
            // struct nf_ct_seqadj holds them as s32, sent as be32.
            CTA_SEQADJ_OFFSET_BEFORE => before = Some(be32(k, v)? as i32),
            CTA_SEQADJ_OFFSET_AFTER => after = Some(be32(k, v)? as i32),
            _ => {}
        }
    }
    match (pos, before, after) {
        (Some(correction_pos), Some(offset_before), Some(offset_after)) => Ok(SeqAdj {
            correction_pos,
            offset_before,
            offset_after,
        }),
        _ => Err(WireError::BadAttr { kind, len: v.len() }),
    }
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
        timeout: 0,
        seq_adj: [None; 2],
    };
    for a in attrs(rest) {
        let (kind, v) = a?;
        match kind {
            CTA_TUPLE_ORIG => orig = Some(decode_tuple(v)?),
            CTA_TUPLE_REPLY => reply = Some(decode_tuple(v)?),
            CTA_STATUS => ct.status = be32(kind, v)? & Conntrack::STATUS_SYNCED,
            CTA_MARK => ct.mark = be32(kind, v)?,
            CTA_ZONE => ct.zone = be16(kind, v)?,
            CTA_TIMEOUT => ct.timeout = be32(kind, v)?,
            CTA_SEQ_ADJ_ORIG => ct.seq_adj[0] = Some(decode_seq_adj(kind, v)?),
            CTA_SEQ_ADJ_REPLY => ct.seq_adj[1] = Some(decode_seq_adj(kind, v)?),
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

/// A dump of the entries that have every status bit of `status` set (the
/// kernel filters with CTA_STATUS and CTA_STATUS_MASK).
pub fn dump_request_status(seq: u32, status: u32) -> Vec<u8> {
    let mut buf = dump_request(seq);
    put_attr(&mut buf, CTA_STATUS, &status.to_be_bytes());
    put_attr(&mut buf, CTA_STATUS_MASK, &status.to_be_bytes());
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

const NLA_F_NESTED: u16 = 0x8000;

/// Appends a netlink attribute (host-order header, value padded to 4).
fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Appends a nested attribute whose contents `fill` writes.
fn put_nest(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    fill(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Appends an IPCTNL_MSG_CT_NEW that updates the existing entry `orig` in
/// `zone` to `timeout` seconds (NLM_F_ACK; no NLM_F_CREATE, so an entry
/// deleted meanwhile is ENOENT, not recreated). The tuple is encoded as
/// the kernel's lookup wants it: ports for every protocol but ICMP and
/// ICMPv6, which need id, type and code.
pub fn refresh_request(buf: &mut Vec<u8>, seq: u32, orig: &CtTuple, zone: u16, timeout: u32) {
    let start = buf.len();
    let family = if orig.src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&IPCTNL_MSG_CT_NEW.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | super::wire::NLM_F_ACK).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // struct nfgenmsg: family, NFNETLINK_V0, res_id.
    buf.extend_from_slice(&[family, 0, 0, 0]);
    put_nest(buf, CTA_TUPLE_ORIG, |b| {
        put_nest(b, CTA_TUPLE_IP, |b| {
            let (src, dst) = if orig.src.is_ipv4() {
                (CTA_IP_V4_SRC, CTA_IP_V4_DST)
            } else {
                (CTA_IP_V6_SRC, CTA_IP_V6_DST)
            };
            put_attr(b, src, &ip_bytes(orig.src));
            put_attr(b, dst, &ip_bytes(orig.dst));
        });
        put_nest(b, CTA_TUPLE_PROTO, |b| {
            put_attr(b, CTA_PROTO_NUM, &[orig.proto]);
            let icmp = match orig.proto {
                1 => Some((CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)),
                58 => Some((
                    CTA_PROTO_ICMPV6_ID,
                    CTA_PROTO_ICMPV6_TYPE,
                    CTA_PROTO_ICMPV6_CODE,
                )),
                _ => None,
            };
            if let Some((id, ty, code)) = icmp {
                put_attr(b, id, &orig.sport.to_be_bytes());
                put_attr(b, ty, &[(orig.dport >> 8) as u8]);
                put_attr(b, code, &[orig.dport as u8]);
            } else {
                put_attr(b, CTA_PROTO_SRC_PORT, &orig.sport.to_be_bytes());
                put_attr(b, CTA_PROTO_DST_PORT, &orig.dport.to_be_bytes());
            }
        });
    });
    put_attr(buf, CTA_TIMEOUT, &timeout.to_be_bytes());
    put_attr(buf, CTA_ZONE, &zone.to_be_bytes());
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
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

    /// `conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 120`:
    /// the NEW event (NLM_F_CREATE | NLM_F_EXCL), as this kernel sent it.
    const UDP_NEW_120: &[&str] = &[
        "b80000000001000600000000db390000020000003400018014000180080001000a000001080002000a0000021c000280",
        "05000100110000000600020003e8000006000300003500003400028014000180080001000a000002080002000a000001",
        "1c000280050001001100000006000200003500000600030003e8000008000c003f225b90080003000000000808000700",
        "000000781c0018800800010000000000080002000000000008000300000000000800080000000000",
    ];
    /// `conntrack -U -p udp -s 10.0.0.1 --timeout 300`: a timeout-only change is
    /// an update event too (flags 0), with the new CTA_TIMEOUT.
    const UDP_UPDATE_300: &[&str] = &[
        "b800000000010000000000006fb82ede020000003400018014000180080001000a000001080002000a0000021c000280",
        "05000100110000000600020003e8000006000300003500003400028014000180080001000a000002080002000a000001",
        "1c000280050001001100000006000200003500000600030003e8000008000c003f225b90080003000000000808000700",
        "0000012c1c0018800800010000000000080002000000000008000300000000000800080000000000",
    ];
    /// An FTP control connection SNAT-ed to 10.10.2.100 after the NAT helper
    /// rewrote a PORT command two bytes longer, in a dump (NLM_F_MULTI): status
    /// with IPS_SEQ_ADJUST and CTA_SEQ_ADJ_ORIG/_REPLY.
    const FTP_SEQ_ADJ_DUMP: &[&str] = &[
        "180100000001020001000000466d0000020000003400018014000180080001000a0a0102080002000a0a02021c000280",
        "050001000600000006000200ed42000006000300001500003400028014000180080001000a0a0202080002000a0a0264",
        "1c0002800500010006000000060002000015000006000300ed42000008000300000021de080008000000000008000c00",
        "b8875e7008000b00000000010800070000000077300004802c0001800500010007000000050002000a00000005000300",
        "0a000000060004002700000006000500230000000c00058008000100667470001c000f80080001007b155d3f08000200",
        "0000000008000300000000021c001080080001000000000008000200000000000800030000000000",
    ];
    /// The same connection's next update event (its TCP state changed): status
    /// with IPS_SEQ_ADJUST, but no CTA_SEQ_ADJ_* (events never carry them here).
    const FTP_SEQ_ADJ_EVENT: &[&str] = &[
        "d0000000000100000000000000000000020000003400018014000180080001000a0a0102080002000a0a02021c000280",
        "050001000600000006000200ed42000006000300001500003400028014000180080001000a0a0202080002000a0a0264",
        "1c0002800500010006000000060002000015000006000300ed42000008000c00b8875e7008000300000021de08000700",
        "00000078300004802c0001800500010004000000050002000a000000050003000a000000060004003700000006000500",
        "230000000c0005800800010066747000",
    ];

    fn unhex(lines: &[&str]) -> Vec<u8> {
        let hex: String = lines.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn entry_of(lines: &[&str]) -> Conntrack {
        match decode_one(&unhex(lines)) {
            Ok(Event::New(Object::Conntrack(ct))) => ct,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kernel_events_carry_the_timeout_announced() {
        let new = entry_of(UDP_NEW_120);
        assert_eq!(
            new.orig.to_string(),
            "src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=53"
        );
        assert_eq!((new.orig.proto, new.timeout, new.status), (17, 120, 0x8));
        assert_eq!(new.seq_adj, [None, None]);
        let updated = entry_of(UDP_UPDATE_300);
        assert_eq!(updated.timeout, 300);
        assert_eq!(
            Conntrack {
                timeout: 120,
                ..updated
            },
            new,
            "only the timeout moved"
        );
    }

    #[test]
    fn nat_sequence_adjustments_from_a_dump() {
        let ct = entry_of(FTP_SEQ_ADJ_DUMP);
        assert_eq!(ct.reply.dst, "10.10.2.100".parse::<IpAddr>().unwrap());
        assert_ne!(ct.status & Conntrack::IPS_SEQ_ADJUST, 0);
        assert_eq!(
            ct.seq_adj,
            [
                Some(SeqAdj {
                    correction_pos: 0x7b15_5d3f,
                    offset_before: 0,
                    offset_after: 2,
                }),
                Some(SeqAdj {
                    correction_pos: 0,
                    offset_before: 0,
                    offset_after: 0,
                }),
            ]
        );
        let event = entry_of(FTP_SEQ_ADJ_EVENT);
        assert_ne!(event.status & Conntrack::IPS_SEQ_ADJUST, 0);
        assert_eq!(event.seq_adj, [None, None]);
        // A nest without its three members is malformed.
        let mut bad = unhex(FTP_SEQ_ADJ_DUMP);
        // CTA_SEQ_ADJ_REPLY is the last 28 bytes: its header, then its
        // members; the first member's type becomes 9.
        let at = bad.len() - 28 + 4;
        bad[at + 2] = 9;
        assert!(decode_one(&bad).is_err());
    }

    #[test]
    fn kernel_fixtures_cut_or_mutated_are_errors_not_panics() {
        for fixture in [
            UDP_NEW_120,
            UDP_UPDATE_300,
            FTP_SEQ_ADJ_DUMP,
            FTP_SEQ_ADJ_EVENT,
        ] {
            let msg = unhex(fixture);
            for cut in NLMSG_HDRLEN..msg.len() {
                let mut m = msg[..cut].to_vec();
                m[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                let _ = decode_one(&m);
            }
            for at in NLMSG_HDRLEN..msg.len() {
                for v in [0u8, 1, 3, 4, 0x7f, 0x80, 0xff] {
                    let mut m = msg.clone();
                    m[at] = v;
                    let _ = decode_one(&m);
                }
            }
        }
    }

    #[test]
    fn a_refresh_names_the_entry_as_the_kernel_looks_it_up() {
        let udp = entry_of(UDP_NEW_120);
        let mut buf = Vec::new();
        refresh_request(&mut buf, 9, &udp.orig, 0, 120);
        let msg = Messages::new(&buf).next().unwrap().unwrap();
        assert_eq!((msg.kind, msg.flags, msg.seq), (IPCTNL_MSG_CT_NEW, 0x5, 9));
        assert_eq!(&msg.payload[..4], &[2, 0, 0, 0], "AF_INET, version 0");
        // The kernel's own encoding of the same tuple, and what it needs.
        let tuple = attrs(&msg.payload[4..]).next().unwrap().unwrap();
        assert_eq!(tuple.0, CTA_TUPLE_ORIG);
        assert_eq!(decode_tuple(tuple.1), Ok(udp.orig));
        let kernel = unhex(UDP_NEW_120);
        assert!(kernel.windows(tuple.1.len()).any(|w| w == tuple.1));
        let rest: Vec<(u16, Vec<u8>)> = attrs(&msg.payload[4..])
            .skip(1)
            .map(|a| a.map(|(k, v)| (k, v.to_vec())).unwrap())
            .collect();
        assert_eq!(
            rest,
            vec![(CTA_TIMEOUT, vec![0, 0, 0, 120]), (CTA_ZONE, vec![0, 0])]
        );
        // ICMPv6 names id, type and code; appended messages stay aligned.
        let ping = CtTuple {
            src: "fd01::2".parse().unwrap(),
            dst: "fd02::2".parse().unwrap(),
            proto: 58,
            sport: 7,
            dport: 128 << 8,
        };
        refresh_request(&mut buf, 10, &ping, 4, 30);
        let msgs: Vec<NlMsg<'_>> = Messages::new(&buf).map(|m| m.unwrap()).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].payload[0], 10, "AF_INET6");
        let tuple = attrs(&msgs[1].payload[4..]).next().unwrap().unwrap();
        assert_eq!(decode_tuple(tuple.1), Ok(ping));
    }

    #[test]
    fn a_status_filtered_dump() {
        let r = dump_request_status(3, Conntrack::IPS_SEQ_ADJUST);
        let msg = Messages::new(&r).next().unwrap().unwrap();
        assert_eq!(
            (msg.kind, msg.flags),
            (IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP)
        );
        let a: Vec<(u16, &[u8])> = attrs(&msg.payload[4..]).map(|a| a.unwrap()).collect();
        assert_eq!(
            a,
            vec![
                (CTA_STATUS, &[0, 0, 0, 0x40][..]),
                (CTA_STATUS_MASK, &[0, 0, 0, 0x40][..])
            ]
        );
    }

    fn decode_one(buf: &[u8]) -> Result<Event, WireError> {
        let mut it = Messages::new(buf);
        let msg = it.next().expect("one message")?;
        decode(&msg)
    }

    #[test]
    fn dnat_entry_and_its_timeout() {
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
        assert_eq!(ct.timeout, 100);
        // Another timeout is the same entry, announced again.
        assert_eq!(
            decode_one(&message(IPCTNL_MSG_CT_NEW, 5)),
            Ok(Event::New(Object::Conntrack(Conntrack {
                timeout: 5,
                ..ct.clone()
            })))
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
