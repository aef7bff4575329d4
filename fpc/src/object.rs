//! The typed objects that cross the FPC API, with their stable keys.
//!
//! An object is what the fast path needs of one kernel object, nothing that
//! the kernel changes without telling (statistics, cache info, dead/linkdown
//! flags), so that a notification-fed copy can equal a fresh dump.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::{DecodeError, Reader, Writer};

// Each kind in its own file, declared and re-exported here only.
mod capture;
mod conntrack;
mod linkinfo;
mod mroute;
mod netconf;
mod nftables;
mod qdisc;
mod routing;
mod rule;
mod xfrm;
mod xtables;

pub use capture::CaptureFilter;
pub use conntrack::{Conntrack, CtKey, CtTuple, SeqAdj};
pub use linkinfo::LinkInfo;
pub use mroute::{Mroute, MrouteKey, MrouteVif, MrouteVifKey};
pub use netconf::{NetConf, NetConfKey, NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT};
pub use nftables::{
    elem_flags, set_flags, NftChain, NftElemData, NftRule, NftSet, NftSetElem, NftTable,
    PREV_UNKNOWN,
};
pub use qdisc::{Qdisc, TC_H_INGRESS};
pub use routing::{Addr, BridgePort, Fdb, Hop, Link, Neigh, NextHops, Nexthop, Route};
pub use rule::{
    action as rule_action, PortMatch, Rule, RuleKey, RuleSpec, FIB_RULE_FIND_SADDR, FIB_RULE_INVERT,
};
pub use xfrm::{
    Encap, Lifetime, SaKey, Selector, SpKey, XfrmAlgo, XfrmReplay, XfrmSa, XfrmSp, XfrmTmpl,
};
pub use xtables::{verdict_name, XtChain, XtMatch, XtRule, XtTarget, XT_F_GOTO};

/// Address family numbers as the kernel uses them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Route type values (`RTN_*`).
pub mod rtn {
    pub const UNICAST: u8 = 1;
    pub const LOCAL: u8 = 2;
    pub const BROADCAST: u8 = 3;
    pub const ANYCAST: u8 = 4;
    pub const MULTICAST: u8 = 5;
    pub const BLACKHOLE: u8 = 6;
    pub const UNREACHABLE: u8 = 7;
    pub const PROHIBIT: u8 = 8;
    pub const THROW: u8 = 9;
}

/// `RTNH_F_ONLINK`: the only next-hop flag that is configuration, not state.
pub const RTNH_F_ONLINK: u8 = 4;

/// What each kind of object provides beside its struct, in its own file:
/// its key, its body on the wire, and one line for diffs and logs.
pub(crate) trait Body: Sized + fmt::Display {
    fn key(&self) -> ObjectKey;
    fn emit(&self, w: &mut Writer<'_>);
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// A boxed kind (the large ones) is its contents.
impl<T: Body> Body for Box<T> {
    fn key(&self) -> ObjectKey {
        (**self).key()
    }
    fn emit(&self, w: &mut Writer<'_>) {
        (**self).emit(w)
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        T::parse(r).map(Box::new)
    }
}

/// [`Body`] for a kind whose file has inherent `emit` and `parse`: only
/// its key is said here.
macro_rules! body {
    ($($t:ty => |$s:ident| $key:expr;)*) => {$(
        impl Body for $t {
            fn key(&self) -> ObjectKey {
                let $s = self;
                $key
            }
            fn emit(&self, w: &mut Writer<'_>) {
                <$t>::emit(self, w)
            }
            fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                <$t>::parse(r)
            }
        }
    )*};
}

body! {
    XfrmSa => |s| ObjectKey::XfrmSa(s.key());
    XfrmSp => |s| ObjectKey::XfrmSp(s.key());
    XfrmReplay => |s| ObjectKey::XfrmReplay(s.key());
    Conntrack => |s| ObjectKey::Conntrack(s.key());
    NftTable => |t| ObjectKey::NftTable {
        family: t.family,
        name: t.name.clone(),
    };
    NftChain => |c| ObjectKey::NftChain {
        family: c.family,
        table: c.table.clone(),
        name: c.name.clone(),
    };
    NftRule => |r| ObjectKey::NftRule {
        family: r.family,
        table: r.table.clone(),
        handle: r.handle,
    };
    Mroute => |m| ObjectKey::Mroute(m.key());
    CaptureFilter => |c| ObjectKey::CaptureFilter(c.inode);
    MrouteVif => |v| ObjectKey::MrouteVif(v.key());
    XtChain => |c| ObjectKey::XtChain {
        family: c.family,
        table: c.table.clone(),
        name: c.name.clone(),
    };
    XtRule => |r| ObjectKey::XtRule {
        family: r.family,
        table: r.table.clone(),
        chain: r.chain.clone(),
        position: r.position,
    };
    NetConf => |c| ObjectKey::NetConf(c.key());
    Rule => |r| ObjectKey::Rule(Box::new(r.key()));
    NftSet => |t| ObjectKey::NftSet {
        family: t.family,
        table: t.table.clone(),
        name: t.name.clone(),
    };
    NftSetElem => |e| ObjectKey::NftSetElem(Box::new(e.key()));
    Qdisc => |q| ObjectKey::Qdisc {
        ifindex: q.ifindex,
        handle: q.handle,
    };
}

/// The one table of object kinds: `Variant(type) = wire number, name`, in
/// replay order (`ObjectKind::ALL`: what an object refers to comes first).
/// It makes [`Object`], [`ObjectKind`] (with `ALL`, `from_u8`, `name`) and
/// the dispatch of `kind`, `key`, `emit`, `parse` and `Display` to each
/// kind's [`Body`]. A new kind is its file under `object/` and, in this
/// file only, its `mod` and re-export, one line here, its [`ObjectKey`]
/// variant, its key in `body!` (or its own `Body`), and, if it is split
/// by family, [`ObjectKind::families`] and [`Object::family`].
macro_rules! object_kinds {
    ($($(#[$doc:meta])* $v:ident($t:ty) = $n:literal, $name:literal;)*) => {
        /// Everything the FPC API carries.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Object {
            $($(#[$doc])* $v($t),)*
        }

        /// The kinds of object, as numbered on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum ObjectKind {
            $($(#[$doc])* $v = $n,)*
        }

        impl ObjectKind {
            pub const ALL: [ObjectKind; [$($n),*].len()] = [$(ObjectKind::$v),*];

            pub fn from_u8(v: u8) -> Result<ObjectKind, DecodeError> {
                match v {
                    $($n => Ok(ObjectKind::$v),)*
                    _ => Err(DecodeError::BadValue {
                        what: "object kind",
                        value: v.into(),
                    }),
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(ObjectKind::$v => $name,)*
                }
            }
        }

        impl ObjectKey {
            /// The kind of the object this key names.
            pub fn kind(&self) -> ObjectKind {
                match self {
                    $(ObjectKey::$v { .. } => ObjectKind::$v,)*
                }
            }
        }

        impl Object {
            pub fn kind(&self) -> ObjectKind {
                match self {
                    $(Object::$v(_) => ObjectKind::$v,)*
                }
            }

            pub fn key(&self) -> ObjectKey {
                match self {
                    $(Object::$v(o) => Body::key(o),)*
                }
            }

            /// Appends kind, body length and body.
            pub fn emit(&self, buf: &mut Vec<u8>) {
                buf.push(self.kind() as u8);
                let len_at = buf.len();
                buf.extend_from_slice(&[0, 0]);
                let start = buf.len();
                let mut w = Writer::new(buf);
                match self {
                    $(Object::$v(o) => Body::emit(o, &mut w),)*
                }
                let body_len = (buf.len() - start) as u16;
                buf[len_at..len_at + 2].copy_from_slice(&body_len.to_be_bytes());
            }

            /// Reads one object (kind, length, body) from `r`.
            pub fn parse(r: &mut Reader<'_>) -> Result<Object, DecodeError> {
                let (kind, mut r) = Self::parse_head(r)?;
                let obj = Self::parse_body(kind, &mut r)?;
                r.finish()?;
                Ok(obj)
            }

            /// The body of an object of `kind` (its whole length in `r`,
            /// which the caller finishes).
            fn parse_body(kind: ObjectKind, r: &mut Reader<'_>) -> Result<Object, DecodeError> {
                Ok(match kind {
                    $(ObjectKind::$v => Object::$v(<$t as Body>::parse(r)?),)*
                })
            }
        }

        /// One line per object, in the spirit of `ip` output, for diffs and logs.
        impl fmt::Display for Object {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Object::$v(o) => fmt::Display::fmt(o, f),)*
                }
            }
        }
    };
}

object_kinds! {
    Link(Link) = 1, "link";
    /// Per-device IP settings (`ip netconf`).
    NetConf(NetConf) = 21, "netconf";
    Addr(Addr) = 2, "address";
    Nexthop(Nexthop) = 4, "nexthop";
    Route(Route) = 3, "route";
    /// Policy routing rules (`ip rule`); boxed: every selector makes it
    /// large.
    Rule(Box<Rule>) = 20, "rule";
    Neigh(Neigh) = 5, "neighbour";
    BridgePort(BridgePort) = 6, "bridge port";
    Fdb(Fdb) = 7, "fdb";
    XfrmSa(XfrmSa) = 8, "ipsec sa";
    XfrmReplay(XfrmReplay) = 10, "ipsec replay";
    XfrmSp(XfrmSp) = 9, "ipsec sp";
    Conntrack(Conntrack) = 11, "conntrack";
    NftTable(NftTable) = 12, "nft table";
    NftChain(NftChain) = 13, "nft chain";
    /// nf_tables sets and maps, and their elements (before the rules that
    /// look them up).
    NftSet(NftSet) = 22, "nft set";
    NftSetElem(NftSetElem) = 23, "nft set element";
    NftRule(NftRule) = 14, "nft rule";
    /// Multicast VIFs before the MFC entries that name them.
    MrouteVif(MrouteVif) = 19, "mroute vif";
    Mroute(Mroute) = 15, "mroute";
    CaptureFilter(CaptureFilter) = 16, "capture filter";
    XtChain(XtChain) = 17, "xt chain";
    /// Boxed: a rule's match fields make it the largest object by far.
    XtRule(Box<XtRule>) = 18, "xt rule";
    /// Queueing disciplines of the ports (`tc qdisc`).
    Qdisc(Qdisc) = 24, "qdisc";
}

impl ObjectKind {
    /// The address families a kind is dumped and reconciled by, one at a
    /// time (IPv4 before IPv6); `[0]` for a kind taken whole.
    pub const fn families(self) -> &'static [u8] {
        match self {
            ObjectKind::NetConf
            | ObjectKind::Route
            | ObjectKind::Rule
            | ObjectKind::Neigh
            | ObjectKind::MrouteVif
            | ObjectKind::Mroute => &[AF_INET, AF_INET6],
            _ => &[0],
        }
    }
}

impl Object {
    /// The family among its kind's [`ObjectKind::families`] this object
    /// belongs to (0 for a kind taken whole).
    pub fn family(&self) -> u8 {
        match self {
            Object::NetConf(c) => c.family,
            Object::Route(r) => r.family(),
            Object::Rule(r) => r.spec.family,
            Object::Neigh(n) => family_of(&n.dst),
            Object::MrouteVif(v) => v.family,
            Object::Mroute(m) if m.group.is_ipv4() => AF_INET,
            Object::Mroute(_) => AF_INET6,
            _ => 0,
        }
    }
}

/// The identity of an object: two objects with one key are versions of one
/// kernel object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    Link(u32),
    Addr {
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    },
    Route(RouteKey),
    Nexthop(u32),
    Neigh {
        ifindex: u32,
        dst: IpAddr,
    },
    BridgePort(u32),
    /// `domain` is the bridge for a bridge's entry (an entry moves between
    /// ports under one key, as in the kernel), the device for a VXLAN
    /// device's own remotes.
    Fdb {
        domain: u32,
        mac: Vec<u8>,
        vlan: u16,
        dst: Option<IpAddr>,
    },
    XfrmSa(SaKey),
    XfrmSp(SpKey),
    /// The replay state of the SA of this key.
    XfrmReplay(SaKey),
    Conntrack(CtKey),
    NftTable {
        family: u8,
        name: String,
    },
    NftChain {
        family: u8,
        table: String,
        name: String,
    },
    NftRule {
        family: u8,
        table: String,
        handle: u64,
    },
    Mroute(MrouteKey),
    /// A packet socket's inode.
    CaptureFilter(u32),
    MrouteVif(MrouteVifKey),
    XtChain {
        family: u8,
        table: String,
        name: String,
    },
    XtRule {
        family: u8,
        table: String,
        chain: String,
        position: u32,
    },
    NetConf(NetConfKey),
    Rule(Box<RuleKey>),
    NftSet {
        family: u8,
        table: String,
        name: String,
    },
    NftSetElem(Box<NftSetElemKey>),
    Qdisc {
        ifindex: u32,
        handle: u32,
    },
}

/// What tells two elements of a set apart (see `fpc::nftables`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NftSetElemKey {
    pub family: u8,
    pub table: String,
    pub set: String,
    pub key: Vec<u8>,
    pub key_end: Vec<u8>,
    /// NFT_SET_ELEM_INTERVAL_END and NFT_SET_ELEM_CATCHALL.
    pub flags: u32,
}

impl NftSetElem {
    pub fn key(&self) -> NftSetElemKey {
        NftSetElemKey {
            family: self.family,
            table: self.table.clone(),
            set: self.set.clone(),
            key: self.key.clone(),
            key_end: self.key_end.clone(),
            flags: self.identity_flags(),
        }
    }
}

/// What tells two routes apart in the kernel's FIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub table: u32,
    pub dst: IpAddr,
    pub dst_len: u8,
    pub tos: u8,
    pub priority: u32,
    pub disc: RouteDisc,
}

/// IPv6 keeps routes of one prefix, tos and metric apart unless they can
/// be ECMP siblings (a gateway, not learned from RAs, no nexthop object):
/// `fe80::/64` exists once per link. This is what tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteDisc {
    /// IPv4, or an IPv6 route that merges into ECMP siblings.
    None,
    Dev {
        via: Option<IpAddr>,
        dev: u32,
    },
    Nhid(u32),
}

/// `RTPROT_RA`: routes learned from router advertisements (RTF_ADDRCONF).
pub const RTPROT_RA: u8 = 9;

impl RouteDisc {
    pub fn of(dst: &IpAddr, protocol: u8, nexthops: &NextHops) -> RouteDisc {
        if dst.is_ipv4() {
            return RouteDisc::None;
        }
        match nexthops {
            NextHops::Id(id) => RouteDisc::Nhid(*id),
            NextHops::Single(h) if h.gateway.is_none() || protocol == RTPROT_RA => RouteDisc::Dev {
                via: h.gateway,
                dev: h.oif,
            },
            _ => RouteDisc::None,
        }
    }
}

pub fn family_of(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

/// The unspecified address of a family (`0.0.0.0` or `::`).
pub fn unspecified(family: u8) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl Object {
    /// An object's kind and a reader over its body (kind, length, body).
    fn parse_head<'a>(r: &mut Reader<'a>) -> Result<(ObjectKind, Reader<'a>), DecodeError> {
        let kind = ObjectKind::from_u8(r.u8()?)?;
        let len = r.u16()? as usize;
        Ok((kind, Reader::new(r.bytes(len)?)))
    }

    /// Reads one object as [`Object::parse`] does (the same checks), a
    /// route as a bare [`Route`] (no `Object` around it).
    pub(crate) fn parse_route_apart(
        r: &mut Reader<'_>,
    ) -> Result<Result<Route, Object>, DecodeError> {
        let (kind, mut r) = Self::parse_head(r)?;
        let obj = if kind == ObjectKind::Route {
            Ok(<Route as Body>::parse(&mut r)?)
        } else {
            Err(Self::parse_body(kind, &mut r)?)
        };
        r.finish()?;
        Ok(obj)
    }
}

#[cfg(test)]
pub(crate) mod tests;
