//! The netlink base every family's decoder builds on: message and
//! attribute iterators, the scalar attribute getters, the message types
//! and groups of rtnetlink, the decoded [`Event`], dump requests and the
//! error code of an NLMSG_ERROR.
//!
//! No I/O, no logging: lengths come from the kernel (or a test) and are all
//! checked; a malformed message is an error, never a panic. Netlink
//! integers are in host byte order. This module depends on no other
//! module of `netlink`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fpc::{Object, ObjectKey, Route, RuleSpec};

pub const NLMSG_HDRLEN: usize = 16;

pub const AF_BRIDGE: u8 = 7;

pub const NLMSG_NOOP: u16 = 1;

pub const NLMSG_ERROR: u16 = 2;

pub const NLMSG_DONE: u16 = 3;

pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x1;

pub const NLM_F_MULTI: u16 = 0x2;

pub const NLM_F_ACK: u16 = 0x4;

pub const NLM_F_DUMP_INTR: u16 = 0x10;

pub const NLM_F_DUMP: u16 = 0x300;

pub const RTM_NEWLINK: u16 = 16;

pub const RTM_DELLINK: u16 = 17;

pub const RTM_GETLINK: u16 = 18;

pub const RTM_NEWADDR: u16 = 20;

pub const RTM_DELADDR: u16 = 21;

pub const RTM_GETADDR: u16 = 22;

pub const RTM_NEWROUTE: u16 = 24;

pub const RTM_DELROUTE: u16 = 25;

pub const RTM_GETROUTE: u16 = 26;

pub const RTM_NEWNEIGH: u16 = 28;

pub const RTM_DELNEIGH: u16 = 29;

pub const RTM_GETNEIGH: u16 = 30;

pub const RTM_NEWNEXTHOP: u16 = 104;

pub const RTM_DELNEXTHOP: u16 = 105;

pub const RTM_GETNEXTHOP: u16 = 106;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_GETRULE: u16 = 34;
pub const RTM_NEWNETCONF: u16 = 80;
pub const RTM_DELNETCONF: u16 = 81;
pub const RTM_GETNETCONF: u16 = 82;
pub const RTM_NEWQDISC: u16 = 36;
pub const RTM_DELQDISC: u16 = 37;
pub const RTM_GETQDISC: u16 = 38;

/// rtnetlink multicast groups (RTNLGRP_*).
pub const RTNLGRP_LINK: u32 = 1;

pub const RTNLGRP_NEIGH: u32 = 3;

pub const RTNLGRP_IPV4_IFADDR: u32 = 5;

pub const RTNLGRP_IPV4_MROUTE: u32 = 6;

pub const RTNLGRP_IPV4_ROUTE: u32 = 7;

pub const RTNLGRP_IPV6_MROUTE: u32 = 10;

pub const RTNLGRP_IPV6_IFADDR: u32 = 9;

pub const RTNLGRP_IPV6_ROUTE: u32 = 11;

pub const RTNLGRP_NEXTHOP: u32 = 32;

pub const IFLA_EXT_MASK: u16 = 29;

/// Asks a dump for the per-port VLANs of bridge ports.
pub const RTEXT_FILTER_BRVLAN: u32 = 1 << 1;

/// Entries in these states are not configuration: the kernel makes them for
/// multicast or while resolving, often without a notification.
pub const NUD_NONE: u16 = 0x00;

pub const NUD_NOARP: u16 = 0x40;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("message length {len} overruns the buffer of {available}")]
    Overrun { len: usize, available: usize },
    #[error("attribute {kind} has a bad length {len}")]
    BadAttr { kind: u16, len: usize },
    #[error("address of {0} bytes")]
    BadAddress(usize),
    #[error("unknown address family {0}")]
    BadFamily(u8),
    #[error("message without {0}")]
    Missing(&'static str),
}

/// One netlink message: header fields and payload.
#[derive(Debug, Clone, Copy)]
pub struct NlMsg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// nlmsg_pid: in a notification, the port id of the socket whose
    /// request caused it (0 for the kernel's own changes).
    pub pid: u32,
    pub payload: &'a [u8],
}

/// Iterates over the messages of one or more concatenated datagrams.
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        if self.buf.len() < NLMSG_HDRLEN {
            let n = self.buf.len();
            self.buf = &[];
            return Some(Err(WireError::Short(n)));
        }
        let len = u32::from_ne_bytes(self.buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > self.buf.len() {
            let available = self.buf.len();
            self.buf = &[];
            return Some(Err(WireError::Overrun { len, available }));
        }
        let msg = NlMsg {
            kind: u16::from_ne_bytes([self.buf[4], self.buf[5]]),
            flags: u16::from_ne_bytes([self.buf[6], self.buf[7]]),
            seq: u32::from_ne_bytes(self.buf[8..12].try_into().unwrap()),
            pid: u32::from_ne_bytes(self.buf[12..16].try_into().unwrap()),
            payload: &self.buf[NLMSG_HDRLEN..len],
        };
        self.buf = &self.buf[align(len).min(self.buf.len())..];
        Some(Ok(msg))
    }
}

pub(crate) fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Iterates over netlink attributes (`struct rtattr` / `struct nlattr`,
/// the same layout), flag bits masked off; every family's decoder uses it.
pub(crate) struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([self.buf[0], self.buf[1]]) as usize;
        // The top two bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        let kind = u16::from_ne_bytes([self.buf[2], self.buf[3]]) & 0x3fff;
        if len < 4 || len > self.buf.len() {
            self.buf = &[];
            return Some(Err(WireError::BadAttr { kind, len }));
        }
        let value = &self.buf[4..len];
        self.buf = &self.buf[align(len).min(self.buf.len())..];
        Some(Ok((kind, value)))
    }
}

pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { buf }
}

pub(crate) fn get_u32(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    v.get(..4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

pub(crate) fn get_ip(v: &[u8]) -> Result<IpAddr, WireError> {
    match v.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap()))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap()))),
        n => Err(WireError::BadAddress(n)),
    }
}

pub(crate) fn header<const N: usize>(payload: &[u8]) -> Result<(&[u8; N], &[u8]), WireError> {
    if payload.len() < N {
        return Err(WireError::Short(payload.len()));
    }
    Ok((payload[..N].try_into().unwrap(), &payload[N..]))
}

/// What one message means for the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new or changed object.
    New(Object),
    /// An object is gone.
    Del(ObjectKey),
    /// A route is gone, or for IPv6 only some of its next hops: the kernel
    /// reports the removal of one sibling of a multipath route with that
    /// sibling alone.
    DelRoute(Route),
    /// A netconf news of the one value that changed (the others are None):
    /// merged into the cached object, see [`super::netconf`].
    NetConfChange(fpc::NetConf),
    /// A policy routing rule was added: where it goes in the list is the
    /// kernel's rule (see `rule::RuleList`).
    NewRule(RuleSpec),
    /// A rule was deleted: the first one equal to this.
    DelRule(RuleSpec),
    /// A message about something this layer does not sync (cloned routes,
    /// proxy or multicast neighbours, other families).
    Ignored,
    /// A message of a type this decoder does not know.
    Unknown,
}

pub(crate) fn get_u8(kind: u16, v: &[u8]) -> Result<u8, WireError> {
    v.first()
        .copied()
        .ok_or(WireError::BadAttr { kind, len: 0 })
}

pub(crate) fn get_u16(kind: u16, v: &[u8]) -> Result<u16, WireError> {
    v.get(..2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or(WireError::BadAttr { kind, len: v.len() })
}

/// A big-endian u16 (ports, protocols, GRE flags).
pub(crate) fn get_be16(kind: u16, v: &[u8]) -> Result<u16, WireError> {
    get_u16(kind, v).map(u16::from_be)
}

/// A big-endian u32 (GRE and VTI keys).
pub(crate) fn get_be32(kind: u16, v: &[u8]) -> Result<u32, WireError> {
    get_u32(kind, v).map(u32::from_be)
}

/// Builds a dump request (`NLM_F_REQUEST | NLM_F_DUMP`) for `kind`
/// (RTM_GETLINK, ...) and `family` (0 for all).
pub fn dump_request(kind: u16, family: u8, seq: u32) -> Vec<u8> {
    let body_len = match kind {
        RTM_GETLINK => 16,
        RTM_GETADDR | RTM_GETNEXTHOP => 8,
        // A bare netconfmsg: a strict-checking kernel refuses more.
        RTM_GETNETCONF => 4,
        _ => 12, // rtmsg, ndmsg
    };
    // A bridge port dump asks for the ports' VLANs too.
    let ext_mask = kind == RTM_GETLINK && family == AF_BRIDGE;
    let len = NLMSG_HDRLEN + body_len + if ext_mask { 8 } else { 0 };
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.resize(NLMSG_HDRLEN + body_len, 0);
    if ext_mask {
        buf.extend_from_slice(&8u16.to_ne_bytes());
        buf.extend_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
        buf.extend_from_slice(&RTEXT_FILTER_BRVLAN.to_ne_bytes());
    }
    buf
}

/// The errno of an `NLMSG_ERROR` message (0 for an ack).
pub fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
        .unwrap_or(-libc::EBADMSG)
}

/// The name the seed's `show netlink` prints for a message type.
pub fn type_name(kind: u16) -> String {
    let name = match kind {
        NLMSG_NOOP => "NLMSG_NOOP",
        NLMSG_ERROR => "NLMSG_ERROR",
        NLMSG_DONE => "NLMSG_DONE",
        RTM_NEWLINK => "RTM_NEWLINK",
        RTM_DELLINK => "RTM_DELLINK",
        RTM_NEWADDR => "RTM_NEWADDR",
        RTM_DELADDR => "RTM_DELADDR",
        RTM_NEWROUTE => "RTM_NEWROUTE",
        RTM_DELROUTE => "RTM_DELROUTE",
        RTM_NEWNEIGH => "RTM_NEWNEIGH",
        RTM_DELNEIGH => "RTM_DELNEIGH",
        RTM_NEWNEXTHOP => "RTM_NEWNEXTHOP",
        RTM_DELNEXTHOP => "RTM_DELNEXTHOP",
        RTM_NEWRULE => "RTM_NEWRULE",
        RTM_DELRULE => "RTM_DELRULE",
        RTM_NEWNETCONF => "RTM_NEWNETCONF",
        RTM_DELNETCONF => "RTM_DELNETCONF",
        RTM_NEWQDISC => "RTM_NEWQDISC",
        RTM_DELQDISC => "RTM_DELQDISC",
        _ => return format!("RTM_[{kind}]"),
    };
    name.to_owned()
}
