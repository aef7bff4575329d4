//! The typed objects that cross the FPC API, with their stable keys.
//!
//! An object is what the fast path needs of one kernel object, nothing that
//! the kernel changes without telling (statistics, cache info, dead/linkdown
//! flags), so that a notification-fed copy can equal a fresh dump.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::capture::CaptureFilter;
use super::codec::{DecodeError, Reader, Writer};
use super::conntrack::{Conntrack, CtKey};
pub use super::linkinfo::LinkInfo;
use super::mroute::{Mroute, MrouteKey, MrouteVif, MrouteVifKey};
use super::netconf::{NetConf, NetConfKey};
use super::nftables::{NftChain, NftRule, NftSet, NftSetElem, NftTable};
use super::qdisc::Qdisc;
use super::rule::{Rule, RuleKey};
use super::xfrm::{SaKey, SpKey, XfrmReplay, XfrmSa, XfrmSp};
use super::xtables::{XtChain, XtRule};

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

/// A network interface (`RTM_NEWLINK`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` ("veth", "bridge", ...), empty for plain devices.
    pub kind: String,
    /// `ifi_flags` (IFF_UP, IFF_RUNNING, ...).
    pub flags: u32,
    pub mtu: u32,
    /// `ifi_type` (ARPHRD_*).
    pub link_type: u16,
    pub mac: Vec<u8>,
    /// Ifindex of the master (bridge, bond, VRF), 0 for none.
    pub master: u32,
    /// `IFLA_LINK`: the lower device or veth peer, 0 for none.
    pub link: u32,
    /// `IFLA_LINK_NETNSID` of `link`, -1 when it is in the same namespace.
    pub link_netnsid: i32,
    /// `IFLA_OPERSTATE` (RFC 2863).
    pub operstate: u8,
    /// What its kind adds (`IFLA_INFO_DATA`).
    pub info: LinkInfo,
}

/// A bridge port: its state and VLANs (AF_BRIDGE `RTM_NEWLINK`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BridgePort {
    pub ifindex: u32,
    /// The bridge.
    pub master: u32,
    /// BR_STATE_* (0 disabled, 1 listening, 2 learning, 3 forwarding, 4 blocking).
    pub state: u8,
    /// VLANs as (vid, BRIDGE_VLAN_INFO_* flags: 2 pvid, 4 untagged), by vid.
    pub vlans: Vec<(u16, u16)>,
}

/// A forwarding database entry of a bridge or a VXLAN device
/// (AF_BRIDGE `RTM_NEWNEIGH`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fdb {
    pub ifindex: u32,
    pub mac: Vec<u8>,
    /// 0 when the entry has no VLAN.
    pub vlan: u16,
    /// The VXLAN remote, for entries of a VXLAN device.
    pub dst: Option<IpAddr>,
    /// The VXLAN VNI when it differs from the device's, else 0.
    pub vni: u32,
    /// The bridge, 0 for a VXLAN device's own entries.
    pub master: u32,
    /// NUD_* (0x80 permanent, 0x40 static, 0x02 reachable: learned, ...).
    pub state: u16,
    /// NTF_* (0x02 self, 0x04 master, 0x10 extern learned, ...).
    pub flags: u8,
}

/// An interface address (`RTM_NEWADDR`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    pub ifindex: u32,
    /// The local address (`IFA_LOCAL`, or `IFA_ADDRESS` where there is none).
    pub addr: IpAddr,
    /// The peer of a point-to-point address, when it differs from `addr`.
    pub peer: Option<IpAddr>,
    pub prefix_len: u8,
    pub scope: u8,
    /// Configuration flags only (IFA_F_SECONDARY, NODAD, PERMANENT, ...).
    pub flags: u32,
}

/// One next hop of a route: a gateway, a device, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    /// 1..=256 (`rtnh_hops + 1`).
    pub weight: u16,
    /// `RTNH_F_ONLINK` or 0.
    pub flags: u8,
}

/// Where a route sends its packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHops {
    /// No next hop (blackhole, unreachable, prohibit, ...).
    None,
    Single(Hop),
    Multipath(Vec<Hop>),
    /// A nexthop object (`RTA_NH_ID`), as FRR installs routes.
    Id(u32),
}

/// A route of any table and type (`RTM_NEWROUTE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub table: u32,
    /// The destination, host bits cleared; `0.0.0.0` or `::` for default.
    pub dst: IpAddr,
    pub dst_len: u8,
    pub tos: u8,
    pub priority: u32,
    /// `RTN_*`.
    pub rtype: u8,
    pub protocol: u8,
    pub scope: u8,
    pub prefsrc: Option<IpAddr>,
    /// The `mtu` metric (`RTAX_MTU` in `RTA_METRICS`; 0: none): forwarding
    /// honours it before the device's.
    pub mtu: u32,
    pub nexthops: NextHops,
}

/// A nexthop object (`RTM_NEWNEXTHOP`): a single hop or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nexthop {
    pub id: u32,
    pub family: u8,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub blackhole: bool,
    pub fdb: bool,
    /// `RTNH_F_ONLINK` or 0.
    pub flags: u8,
    /// Group members as (id, weight 1..=256); empty for a single hop.
    pub group: Vec<(u32, u16)>,
    /// `NHA_GROUP_TYPE` (0 multipath, 1 resilient).
    pub group_type: u16,
}

/// A neighbour entry (`RTM_NEWNEIGH`, IPv4 and IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Neigh {
    pub ifindex: u32,
    pub dst: IpAddr,
    pub lladdr: Vec<u8>,
    /// `NUD_*`.
    pub state: u16,
    /// `NTF_*`.
    pub flags: u8,
}

/// Everything the FPC API carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Object {
    Link(Link),
    Addr(Addr),
    Route(Route),
    Nexthop(Nexthop),
    Neigh(Neigh),
    BridgePort(BridgePort),
    Fdb(Fdb),
    XfrmSa(XfrmSa),
    XfrmSp(XfrmSp),
    XfrmReplay(XfrmReplay),
    Conntrack(Conntrack),
    NftTable(NftTable),
    NftChain(NftChain),
    NftRule(NftRule),
    Mroute(Mroute),
    CaptureFilter(CaptureFilter),
    MrouteVif(MrouteVif),
    XtChain(XtChain),
    /// Boxed: a rule's match fields make it the largest object by far.
    XtRule(Box<XtRule>),
    NetConf(NetConf),
    /// Boxed: every selector of `ip rule` makes it large.
    Rule(Box<Rule>),
    NftSet(NftSet),
    NftSetElem(NftSetElem),
    Qdisc(Qdisc),
}

/// The kinds of object, as numbered on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ObjectKind {
    Link = 1,
    Addr = 2,
    Route = 3,
    Nexthop = 4,
    Neigh = 5,
    BridgePort = 6,
    Fdb = 7,
    XfrmSa = 8,
    XfrmSp = 9,
    XfrmReplay = 10,
    Conntrack = 11,
    NftTable = 12,
    NftChain = 13,
    NftRule = 14,
    Mroute = 15,
    CaptureFilter = 16,
    XtChain = 17,
    XtRule = 18,
    MrouteVif = 19,
    /// Policy routing rules (`ip rule`).
    Rule = 20,
    /// Per-device IP settings (`ip netconf`).
    NetConf = 21,
    /// nf_tables sets and maps, and their elements.
    NftSet = 22,
    NftSetElem = 23,
    /// Queueing disciplines of the ports (`tc qdisc`).
    Qdisc = 24,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 24] = [
        ObjectKind::Link,
        ObjectKind::Addr,
        ObjectKind::Route,
        ObjectKind::Nexthop,
        ObjectKind::Neigh,
        ObjectKind::BridgePort,
        ObjectKind::Fdb,
        ObjectKind::XfrmSa,
        ObjectKind::XfrmSp,
        ObjectKind::XfrmReplay,
        ObjectKind::Conntrack,
        ObjectKind::NftTable,
        ObjectKind::NftChain,
        ObjectKind::NftRule,
        ObjectKind::Mroute,
        ObjectKind::CaptureFilter,
        ObjectKind::MrouteVif,
        ObjectKind::XtChain,
        ObjectKind::XtRule,
        ObjectKind::Rule,
        ObjectKind::NetConf,
        ObjectKind::NftSet,
        ObjectKind::NftSetElem,
        ObjectKind::Qdisc,
    ];

    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => ObjectKind::Link,
            2 => ObjectKind::Addr,
            3 => ObjectKind::Route,
            4 => ObjectKind::Nexthop,
            5 => ObjectKind::Neigh,
            6 => ObjectKind::BridgePort,
            7 => ObjectKind::Fdb,
            8 => ObjectKind::XfrmSa,
            9 => ObjectKind::XfrmSp,
            10 => ObjectKind::XfrmReplay,
            11 => ObjectKind::Conntrack,
            12 => ObjectKind::NftTable,
            13 => ObjectKind::NftChain,
            14 => ObjectKind::NftRule,
            15 => ObjectKind::Mroute,
            16 => ObjectKind::CaptureFilter,
            19 => ObjectKind::MrouteVif,
            17 => ObjectKind::XtChain,
            18 => ObjectKind::XtRule,
            20 => ObjectKind::Rule,
            21 => ObjectKind::NetConf,
            22 => ObjectKind::NftSet,
            23 => ObjectKind::NftSetElem,
            24 => ObjectKind::Qdisc,
            _ => {
                return Err(DecodeError::BadValue {
                    what: "object kind",
                    value: v.into(),
                })
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Link => "link",
            ObjectKind::Addr => "address",
            ObjectKind::Route => "route",
            ObjectKind::Nexthop => "nexthop",
            ObjectKind::Neigh => "neighbour",
            ObjectKind::BridgePort => "bridge port",
            ObjectKind::Fdb => "fdb",
            ObjectKind::XfrmSa => "ipsec sa",
            ObjectKind::XfrmSp => "ipsec sp",
            ObjectKind::XfrmReplay => "ipsec replay",
            ObjectKind::Conntrack => "conntrack",
            ObjectKind::NftTable => "nft table",
            ObjectKind::NftChain => "nft chain",
            ObjectKind::NftRule => "nft rule",
            ObjectKind::Mroute => "mroute",
            ObjectKind::CaptureFilter => "capture filter",
            ObjectKind::MrouteVif => "mroute vif",
            ObjectKind::XtChain => "xt chain",
            ObjectKind::XtRule => "xt rule",
            ObjectKind::NetConf => "netconf",
            ObjectKind::Rule => "rule",
            ObjectKind::NftSet => "nft set",
            ObjectKind::NftSetElem => "nft set element",
            ObjectKind::Qdisc => "qdisc",
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

/// `NTF_SELF`: an entry of the device's own table (a VXLAN device's
/// remotes), not of the bridge it may be a port of.
pub const NTF_SELF: u8 = 0x02;

impl Fdb {
    /// What the entry belongs to: its bridge (NDA_MASTER, not NTF_SELF),
    /// or its own device.
    pub fn domain(&self) -> u32 {
        if self.master != 0 && self.flags & NTF_SELF == 0 {
            self.master
        } else {
            self.ifindex
        }
    }
}

impl Route {
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dst: self.dst,
            dst_len: self.dst_len,
            tos: self.tos,
            priority: self.priority,
            disc: RouteDisc::of(&self.dst, self.protocol, &self.nexthops),
        }
    }

    pub fn family(&self) -> u8 {
        family_of(&self.dst)
    }
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Link(_) => ObjectKind::Link,
            Object::Addr(_) => ObjectKind::Addr,
            Object::Route(_) => ObjectKind::Route,
            Object::Nexthop(_) => ObjectKind::Nexthop,
            Object::Neigh(_) => ObjectKind::Neigh,
            Object::BridgePort(_) => ObjectKind::BridgePort,
            Object::Fdb(_) => ObjectKind::Fdb,
            Object::XfrmSa(_) => ObjectKind::XfrmSa,
            Object::XfrmSp(_) => ObjectKind::XfrmSp,
            Object::XfrmReplay(_) => ObjectKind::XfrmReplay,
            Object::Conntrack(_) => ObjectKind::Conntrack,
            Object::NftTable(_) => ObjectKind::NftTable,
            Object::NftChain(_) => ObjectKind::NftChain,
            Object::NftRule(_) => ObjectKind::NftRule,
            Object::Mroute(_) => ObjectKind::Mroute,
            Object::CaptureFilter(_) => ObjectKind::CaptureFilter,
            Object::MrouteVif(_) => ObjectKind::MrouteVif,
            Object::XtChain(_) => ObjectKind::XtChain,
            Object::XtRule(_) => ObjectKind::XtRule,
            Object::NetConf(_) => ObjectKind::NetConf,
            Object::Rule(_) => ObjectKind::Rule,
            Object::NftSet(_) => ObjectKind::NftSet,
            Object::NftSetElem(_) => ObjectKind::NftSetElem,
            Object::Qdisc(_) => ObjectKind::Qdisc,
        }
    }

    pub fn key(&self) -> ObjectKey {
        match self {
            Object::Link(l) => ObjectKey::Link(l.ifindex),
            Object::Addr(a) => ObjectKey::Addr {
                ifindex: a.ifindex,
                addr: a.addr,
                prefix_len: a.prefix_len,
            },
            Object::Route(r) => ObjectKey::Route(r.key()),
            Object::Nexthop(n) => ObjectKey::Nexthop(n.id),
            Object::Neigh(n) => ObjectKey::Neigh {
                ifindex: n.ifindex,
                dst: n.dst,
            },
            Object::BridgePort(p) => ObjectKey::BridgePort(p.ifindex),
            Object::Fdb(f) => ObjectKey::Fdb {
                domain: f.domain(),
                mac: f.mac.clone(),
                vlan: f.vlan,
                dst: f.dst,
            },
            Object::XfrmSa(sa) => ObjectKey::XfrmSa(sa.key()),
            Object::XfrmSp(sp) => ObjectKey::XfrmSp(sp.key()),
            Object::XfrmReplay(rp) => ObjectKey::XfrmReplay(rp.key()),
            Object::Conntrack(ct) => ObjectKey::Conntrack(ct.key()),
            Object::NftTable(t) => ObjectKey::NftTable {
                family: t.family,
                name: t.name.clone(),
            },
            Object::NftChain(c) => ObjectKey::NftChain {
                family: c.family,
                table: c.table.clone(),
                name: c.name.clone(),
            },
            Object::NftRule(r) => ObjectKey::NftRule {
                family: r.family,
                table: r.table.clone(),
                handle: r.handle,
            },
            Object::Mroute(m) => ObjectKey::Mroute(m.key()),
            Object::CaptureFilter(c) => ObjectKey::CaptureFilter(c.inode),
            Object::MrouteVif(v) => ObjectKey::MrouteVif(v.key()),
            Object::XtChain(c) => ObjectKey::XtChain {
                family: c.family,
                table: c.table.clone(),
                name: c.name.clone(),
            },
            Object::XtRule(r) => ObjectKey::XtRule {
                family: r.family,
                table: r.table.clone(),
                chain: r.chain.clone(),
                position: r.position,
            },
            Object::NetConf(c) => ObjectKey::NetConf(c.key()),
            Object::Rule(r) => ObjectKey::Rule(Box::new(r.key())),
            Object::NftSet(t) => ObjectKey::NftSet {
                family: t.family,
                table: t.table.clone(),
                name: t.name.clone(),
            },
            Object::NftSetElem(e) => ObjectKey::NftSetElem(Box::new(e.key())),
            Object::Qdisc(q) => ObjectKey::Qdisc {
                ifindex: q.ifindex,
                handle: q.handle,
            },
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
            Object::Link(l) => {
                w.u32(l.ifindex);
                w.str(&l.name);
                w.str(&l.kind);
                w.u32(l.flags);
                w.u32(l.mtu);
                w.u16(l.link_type);
                w.short_bytes(&l.mac);
                w.u32(l.master);
                w.u32(l.link);
                w.i32(l.link_netnsid);
                w.u8(l.operstate);
                l.info.emit(&mut w);
            }
            Object::Addr(a) => {
                w.u32(a.ifindex);
                w.ip(a.addr);
                w.opt_ip(a.peer);
                w.u8(a.prefix_len);
                w.u8(a.scope);
                w.u32(a.flags);
            }
            Object::Route(r) => {
                w.u32(r.table);
                w.ip(r.dst);
                w.u8(r.dst_len);
                w.u8(r.tos);
                w.u32(r.priority);
                w.u8(r.rtype);
                w.u8(r.protocol);
                w.u8(r.scope);
                w.opt_ip(r.prefsrc);
                w.u32(r.mtu);
                match &r.nexthops {
                    NextHops::None => w.u8(0),
                    NextHops::Single(h) => {
                        w.u8(1);
                        emit_hop(&mut w, h);
                    }
                    NextHops::Multipath(hops) => {
                        w.u8(2);
                        w.u16(hops.len() as u16);
                        for h in hops {
                            emit_hop(&mut w, h);
                        }
                    }
                    NextHops::Id(id) => {
                        w.u8(3);
                        w.u32(*id);
                    }
                }
            }
            Object::Nexthop(n) => {
                w.u32(n.id);
                w.u8(n.family);
                w.opt_ip(n.gateway);
                w.u32(n.oif);
                w.bool(n.blackhole);
                w.bool(n.fdb);
                w.u8(n.flags);
                w.u16(n.group_type);
                w.u16(n.group.len() as u16);
                for (id, weight) in &n.group {
                    w.u32(*id);
                    w.u16(*weight);
                }
            }
            Object::Neigh(n) => {
                w.u32(n.ifindex);
                w.ip(n.dst);
                w.short_bytes(&n.lladdr);
                w.u16(n.state);
                w.u8(n.flags);
            }
            Object::BridgePort(p) => {
                w.u32(p.ifindex);
                w.u32(p.master);
                w.u8(p.state);
                w.u16(p.vlans.len() as u16);
                for (vid, flags) in &p.vlans {
                    w.u16(*vid);
                    w.u16(*flags);
                }
            }
            Object::Fdb(e) => {
                w.u32(e.ifindex);
                w.short_bytes(&e.mac);
                w.u16(e.vlan);
                w.opt_ip(e.dst);
                w.u32(e.vni);
                w.u32(e.master);
                w.u16(e.state);
                w.u8(e.flags);
            }
            Object::XfrmSa(sa) => sa.emit(&mut w),
            Object::XfrmSp(sp) => sp.emit(&mut w),
            Object::XfrmReplay(rp) => rp.emit(&mut w),
            Object::Conntrack(ct) => ct.emit(&mut w),
            Object::NftTable(t) => t.emit(&mut w),
            Object::NftChain(c) => c.emit(&mut w),
            Object::NftRule(r) => r.emit(&mut w),
            Object::Mroute(m) => m.emit(&mut w),
            Object::CaptureFilter(c) => c.emit(&mut w),
            Object::MrouteVif(v) => v.emit(&mut w),
            Object::XtChain(c) => c.emit(&mut w),
            Object::XtRule(r) => r.emit(&mut w),
            Object::NetConf(c) => c.emit(&mut w),
            Object::Rule(r) => r.emit(&mut w),
            Object::NftSet(t) => t.emit(&mut w),
            Object::NftSetElem(e) => e.emit(&mut w),
            Object::Qdisc(q) => q.emit(&mut w),
        }
        let body_len = (buf.len() - start) as u16;
        buf[len_at..len_at + 2].copy_from_slice(&body_len.to_be_bytes());
    }

    /// Reads one object (kind, length, body) from `r`.
    pub fn parse(r: &mut Reader<'_>) -> Result<Object, DecodeError> {
        let kind = ObjectKind::from_u8(r.u8()?)?;
        let len = r.u16()? as usize;
        let mut r = Reader::new(r.bytes(len)?);
        let obj = match kind {
            ObjectKind::Link => Object::Link(Link {
                ifindex: r.u32()?,
                name: r.str()?,
                kind: r.str()?,
                flags: r.u32()?,
                mtu: r.u32()?,
                link_type: r.u16()?,
                mac: r.short_bytes()?,
                master: r.u32()?,
                link: r.u32()?,
                link_netnsid: r.i32()?,
                operstate: r.u8()?,
                info: LinkInfo::parse(&mut r)?,
            }),
            ObjectKind::Addr => Object::Addr(Addr {
                ifindex: r.u32()?,
                addr: r.ip()?,
                peer: r.opt_ip()?,
                prefix_len: r.u8()?,
                scope: r.u8()?,
                flags: r.u32()?,
            }),
            ObjectKind::Route => {
                let table = r.u32()?;
                let dst = r.ip()?;
                let dst_len = r.u8()?;
                check_prefix_len(&dst, dst_len)?;
                Object::Route(Route {
                    table,
                    dst,
                    dst_len,
                    tos: r.u8()?,
                    priority: r.u32()?,
                    rtype: r.u8()?,
                    protocol: r.u8()?,
                    scope: r.u8()?,
                    prefsrc: r.opt_ip()?,
                    mtu: r.u32()?,
                    nexthops: match r.u8()? {
                        0 => NextHops::None,
                        1 => NextHops::Single(parse_hop(&mut r)?),
                        2 => {
                            let n = r.u16()? as usize;
                            // Each hop takes at least 8 bytes: bound the
                            // allocation by what is really there.
                            if n > r.remaining() / 8 {
                                return Err(DecodeError::BadValue {
                                    what: "hop count",
                                    value: n as u64,
                                });
                            }
                            let mut hops = Vec::with_capacity(n);
                            for _ in 0..n {
                                hops.push(parse_hop(&mut r)?);
                            }
                            NextHops::Multipath(hops)
                        }
                        3 => NextHops::Id(r.u32()?),
                        v => {
                            return Err(DecodeError::BadValue {
                                what: "next-hop form",
                                value: v.into(),
                            })
                        }
                    },
                })
            }
            ObjectKind::Nexthop => {
                let mut n = Nexthop {
                    id: r.u32()?,
                    family: r.u8()?,
                    gateway: r.opt_ip()?,
                    oif: r.u32()?,
                    blackhole: r.bool()?,
                    fdb: r.bool()?,
                    flags: r.u8()?,
                    group_type: r.u16()?,
                    group: Vec::new(),
                };
                let count = r.u16()? as usize;
                if count > r.remaining() / 6 {
                    return Err(DecodeError::BadValue {
                        what: "group size",
                        value: count as u64,
                    });
                }
                for _ in 0..count {
                    n.group.push((r.u32()?, r.u16()?));
                }
                Object::Nexthop(n)
            }
            ObjectKind::Neigh => Object::Neigh(Neigh {
                ifindex: r.u32()?,
                dst: r.ip()?,
                lladdr: r.short_bytes()?,
                state: r.u16()?,
                flags: r.u8()?,
            }),
            ObjectKind::BridgePort => {
                let mut p = BridgePort {
                    ifindex: r.u32()?,
                    master: r.u32()?,
                    state: r.u8()?,
                    vlans: Vec::new(),
                };
                let count = r.u16()? as usize;
                if count > r.remaining() / 4 {
                    return Err(DecodeError::BadValue {
                        what: "vlan count",
                        value: count as u64,
                    });
                }
                for _ in 0..count {
                    p.vlans.push((r.u16()?, r.u16()?));
                }
                Object::BridgePort(p)
            }
            ObjectKind::Fdb => Object::Fdb(Fdb {
                ifindex: r.u32()?,
                mac: r.short_bytes()?,
                vlan: r.u16()?,
                dst: r.opt_ip()?,
                vni: r.u32()?,
                master: r.u32()?,
                state: r.u16()?,
                flags: r.u8()?,
            }),
            ObjectKind::XfrmSa => Object::XfrmSa(XfrmSa::parse(&mut r)?),
            ObjectKind::XfrmSp => Object::XfrmSp(XfrmSp::parse(&mut r)?),
            ObjectKind::XfrmReplay => Object::XfrmReplay(XfrmReplay::parse(&mut r)?),
            ObjectKind::Conntrack => Object::Conntrack(Conntrack::parse(&mut r)?),
            ObjectKind::NftTable => Object::NftTable(NftTable::parse(&mut r)?),
            ObjectKind::NftChain => Object::NftChain(NftChain::parse(&mut r)?),
            ObjectKind::NftRule => Object::NftRule(NftRule::parse(&mut r)?),
            ObjectKind::Mroute => Object::Mroute(Mroute::parse(&mut r)?),
            ObjectKind::CaptureFilter => Object::CaptureFilter(CaptureFilter::parse(&mut r)?),
            ObjectKind::MrouteVif => Object::MrouteVif(MrouteVif::parse(&mut r)?),
            ObjectKind::XtChain => Object::XtChain(XtChain::parse(&mut r)?),
            ObjectKind::XtRule => Object::XtRule(Box::new(XtRule::parse(&mut r)?)),
            ObjectKind::NetConf => Object::NetConf(NetConf::parse(&mut r)?),
            ObjectKind::Rule => Object::Rule(Box::new(Rule::parse(&mut r)?)),
            ObjectKind::NftSet => Object::NftSet(NftSet::parse(&mut r)?),
            ObjectKind::NftSetElem => Object::NftSetElem(NftSetElem::parse(&mut r)?),
            ObjectKind::Qdisc => Object::Qdisc(Qdisc::parse(&mut r)?),
        };
        r.finish()?;
        Ok(obj)
    }
}

fn emit_hop(w: &mut Writer<'_>, h: &Hop) {
    w.opt_ip(h.gateway);
    w.u32(h.oif);
    w.u16(h.weight);
    w.u8(h.flags);
}

fn parse_hop(r: &mut Reader<'_>) -> Result<Hop, DecodeError> {
    Ok(Hop {
        gateway: r.opt_ip()?,
        oif: r.u32()?,
        weight: r.u16()?,
        flags: r.u8()?,
    })
}

fn check_prefix_len(dst: &IpAddr, len: u8) -> Result<(), DecodeError> {
    let max = if dst.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(DecodeError::BadValue {
            what: "prefix length",
            value: len.into(),
        });
    }
    Ok(())
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

fn fmt_mac(f: &mut fmt::Formatter<'_>, mac: &[u8]) -> fmt::Result {
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn fmt_hop(f: &mut fmt::Formatter<'_>, h: &Hop) -> fmt::Result {
    if let Some(gw) = h.gateway {
        write!(f, " via {gw}")?;
    }
    if h.oif != 0 {
        write!(f, " dev #{}", h.oif)?;
    }
    if h.weight != 1 {
        write!(f, " weight {}", h.weight)?;
    }
    if h.flags & RTNH_F_ONLINK != 0 {
        f.write_str(" onlink")?;
    }
    Ok(())
}

/// One line per object, in the spirit of `ip` output, for diffs and logs.
impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Link(l) => {
                write!(
                    f,
                    "link #{} {} kind {:?} flags {:#x} mtu {} type {} mac ",
                    l.ifindex, l.name, l.kind, l.flags, l.mtu, l.link_type
                )?;
                fmt_mac(f, &l.mac)?;
                write!(
                    f,
                    " master {} link {} netnsid {} operstate {}{}",
                    l.master, l.link, l.link_netnsid, l.operstate, l.info
                )
            }
            Object::Addr(a) => {
                write!(f, "address {}/{} dev #{}", a.addr, a.prefix_len, a.ifindex)?;
                if let Some(p) = a.peer {
                    write!(f, " peer {p}")?;
                }
                write!(f, " scope {} flags {:#x}", a.scope, a.flags)
            }
            Object::Route(r) => {
                write!(
                    f,
                    "route table {} {}/{} tos {} metric {} type {} proto {} scope {}",
                    r.table, r.dst, r.dst_len, r.tos, r.priority, r.rtype, r.protocol, r.scope
                )?;
                if let Some(src) = r.prefsrc {
                    write!(f, " src {src}")?;
                }
                if r.mtu != 0 {
                    write!(f, " mtu {}", r.mtu)?;
                }
                match &r.nexthops {
                    NextHops::None => Ok(()),
                    NextHops::Single(h) => fmt_hop(f, h),
                    NextHops::Multipath(hops) => {
                        for h in hops {
                            f.write_str(" nexthop")?;
                            fmt_hop(f, h)?;
                        }
                        Ok(())
                    }
                    NextHops::Id(id) => write!(f, " nhid {id}"),
                }
            }
            Object::Nexthop(n) => {
                write!(f, "nexthop id {} family {}", n.id, n.family)?;
                if !n.group.is_empty() {
                    f.write_str(" group ")?;
                    for (i, (id, w)) in n.group.iter().enumerate() {
                        if i > 0 {
                            f.write_str("/")?;
                        }
                        write!(f, "{id},{w}")?;
                    }
                    write!(f, " type {}", n.group_type)?;
                }
                if let Some(gw) = n.gateway {
                    write!(f, " via {gw}")?;
                }
                if n.oif != 0 {
                    write!(f, " dev #{}", n.oif)?;
                }
                if n.blackhole {
                    f.write_str(" blackhole")?;
                }
                if n.fdb {
                    f.write_str(" fdb")?;
                }
                if n.flags & RTNH_F_ONLINK != 0 {
                    f.write_str(" onlink")?;
                }
                Ok(())
            }
            Object::Neigh(n) => {
                write!(f, "neighbour {} dev #{} lladdr ", n.dst, n.ifindex)?;
                fmt_mac(f, &n.lladdr)?;
                write!(f, " state {:#x} flags {:#x}", n.state, n.flags)
            }
            Object::BridgePort(p) => {
                write!(
                    f,
                    "bridge port #{} master #{} state {}",
                    p.ifindex, p.master, p.state
                )?;
                for (vid, flags) in &p.vlans {
                    write!(f, " vlan {vid}")?;
                    if flags & 2 != 0 {
                        f.write_str(" pvid")?;
                    }
                    if flags & 4 != 0 {
                        f.write_str(" untagged")?;
                    }
                }
                Ok(())
            }
            Object::Fdb(e) => {
                f.write_str("fdb ")?;
                fmt_mac(f, &e.mac)?;
                write!(f, " dev #{}", e.ifindex)?;
                if e.vlan != 0 {
                    write!(f, " vlan {}", e.vlan)?;
                }
                if let Some(d) = e.dst {
                    write!(f, " dst {d}")?;
                }
                if e.vni != 0 {
                    write!(f, " vni {}", e.vni)?;
                }
                write!(
                    f,
                    " master #{} state {:#x} flags {:#x}",
                    e.master, e.state, e.flags
                )
            }
            Object::XfrmSa(sa) => sa.fmt(f),
            Object::XfrmSp(sp) => sp.fmt(f),
            Object::XfrmReplay(rp) => rp.fmt(f),
            Object::Conntrack(ct) => ct.fmt(f),
            Object::NftTable(t) => t.fmt(f),
            Object::NftChain(c) => c.fmt(f),
            Object::NftRule(r) => r.fmt(f),
            Object::Mroute(m) => m.fmt(f),
            Object::CaptureFilter(c) => c.fmt(f),
            Object::MrouteVif(v) => v.fmt(f),
            Object::XtChain(c) => c.fmt(f),
            Object::XtRule(r) => r.fmt(f),
            Object::NetConf(c) => c.fmt(f),
            Object::Rule(r) => r.fmt(f),
            Object::NftSet(t) => t.fmt(f),
            Object::NftSetElem(e) => e.fmt(f),
            Object::Qdisc(q) => q.fmt(f),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conntrack::{CtTuple, SeqAdj};
    use crate::nftables::NftElemData;
    use crate::xfrm::{Encap, Lifetime, Selector, XfrmAlgo, XfrmTmpl};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn hop(gw: Option<&str>, oif: u32, weight: u16, flags: u8) -> Hop {
        Hop {
            gateway: gw.map(ip),
            oif,
            weight,
            flags,
        }
    }

    fn route(dst: &str, dst_len: u8, nexthops: NextHops) -> Route {
        Route {
            table: 254,
            dst: ip(dst),
            dst_len,
            tos: 0,
            priority: 100,
            rtype: rtn::UNICAST,
            protocol: 3,
            scope: 0,
            prefsrc: None,
            mtu: 0,
            nexthops,
        }
    }

    /// One object of every kind and every form.
    pub(crate) fn samples() -> Vec<Object> {
        let mut local = route("192.0.2.7", 32, NextHops::Single(hop(None, 2, 1, 0)));
        local.table = 255;
        local.rtype = rtn::LOCAL;
        local.scope = 254;
        local.prefsrc = Some(ip("192.0.2.7"));
        let mut tos = route("10.0.0.0", 8, NextHops::Id(12));
        tos.tos = 0x10;
        tos.priority = u32::MAX;
        let mut blackhole = route("::", 0, NextHops::None);
        blackhole.rtype = rtn::BLACKHOLE;
        vec![
            Object::Link(Link {
                ifindex: 2,
                name: "eth0".into(),
                kind: "veth".into(),
                flags: 0x11043,
                mtu: 1500,
                link_type: 1,
                mac: vec![2, 0, 0, 0, 0, 1],
                master: 5,
                link: 3,
                link_netnsid: -1,
                operstate: 6,
                info: LinkInfo::None,
            }),
            Object::Link(Link {
                ifindex: u32::MAX,
                name: "lo".into(),
                kind: String::new(),
                flags: 0,
                mtu: 65536,
                link_type: 772,
                mac: vec![],
                master: 0,
                link: 0,
                link_netnsid: 7,
                operstate: 0,
                info: LinkInfo::Vxlan {
                    vni: 42,
                    local: Some(ip("192.0.2.1")),
                    remote: Some(ip("ff02::1")),
                    port: 4789,
                    learning: true,
                    ttl: 8,
                    dev: 3,
                },
            }),
            Object::Link(Link {
                ifindex: 9,
                name: "gre1".into(),
                kind: "gre".into(),
                flags: 1,
                mtu: 1476,
                link_type: 778,
                mac: vec![192, 0, 2, 1],
                master: 0,
                link: 0,
                link_netnsid: -1,
                operstate: 6,
                info: LinkInfo::Gre {
                    ikey: 1,
                    okey: 2,
                    iflags: 0x2000,
                    oflags: 0x2000,
                    local: None,
                    remote: Some(ip("192.0.2.2")),
                    ttl: 64,
                    dev: 0,
                },
            }),
            Object::BridgePort(BridgePort {
                ifindex: 4,
                master: 2,
                state: 3,
                vlans: vec![(1, 6), (100, 0)],
            }),
            Object::Fdb(Fdb {
                ifindex: 4,
                mac: vec![2, 0, 0, 0, 0, 9],
                vlan: 100,
                dst: Some(ip("2001:db8::9")),
                vni: 5000,
                master: 2,
                state: 0x80,
                flags: 0x02,
            }),
            Object::Addr(Addr {
                ifindex: 2,
                addr: ip("192.0.2.7"),
                peer: None,
                prefix_len: 24,
                scope: 0,
                flags: 0x80,
            }),
            Object::Addr(Addr {
                ifindex: 2,
                addr: ip("2001:db8::7"),
                peer: Some(ip("2001:db8::8")),
                prefix_len: 128,
                scope: 200,
                flags: 0x2,
            }),
            Object::Route(route(
                "0.0.0.0",
                0,
                NextHops::Single(hop(Some("192.0.2.1"), 2, 1, RTNH_F_ONLINK)),
            )),
            Object::Route(route(
                "2001:db8::",
                32,
                NextHops::Multipath(vec![
                    hop(Some("fe80::1"), 2, 1, 0),
                    hop(Some("fe80::2"), 3, 256, 0),
                    hop(None, 4, 2, 0),
                ]),
            )),
            Object::Route(local),
            Object::Route(tos),
            Object::Route(blackhole),
            Object::Nexthop(Nexthop {
                id: 10,
                family: AF_INET,
                gateway: Some(ip("192.0.2.1")),
                oif: 2,
                blackhole: false,
                fdb: false,
                flags: RTNH_F_ONLINK,
                group: vec![],
                group_type: 0,
            }),
            Object::Nexthop(Nexthop {
                id: 12,
                family: 0,
                gateway: None,
                oif: 0,
                blackhole: false,
                fdb: true,
                flags: 0,
                group: vec![(10, 1), (11, 256)],
                group_type: 1,
            }),
            Object::Nexthop(Nexthop {
                id: 13,
                family: AF_INET6,
                gateway: None,
                oif: 0,
                blackhole: true,
                fdb: false,
                flags: 0,
                group: vec![],
                group_type: 0,
            }),
            Object::Neigh(Neigh {
                ifindex: 2,
                dst: ip("192.0.2.1"),
                lladdr: vec![2, 0, 0, 0, 0, 2],
                state: 0x02,
                flags: 0,
            }),
            Object::Neigh(Neigh {
                ifindex: 3,
                dst: ip("fe80::1"),
                lladdr: vec![],
                state: 0x20,
                flags: 0x80,
            }),
            Object::XfrmSa(xfrm_sa()),
            Object::XfrmSp(XfrmSp {
                sel: selector(),
                dir: 1,
                index: 0x209,
                ptype: 0,
                priority: 100,
                action: 0,
                flags: 0,
                mark: (0, 0),
                if_id: 0,
                lifetime: Lifetime::default(),
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
            }),
            Object::XfrmReplay(XfrmReplay {
                daddr: ip("2001:db8::2"),
                spi: 0x1000,
                proto: 50,
                mark: (1, 0xff),
                oseq: 1 << 33,
                seq: 12,
                esn: true,
                bitmap: vec![0xffff_0000, 1],
            }),
            Object::Conntrack(Conntrack {
                orig: CtTuple {
                    src: ip("10.0.0.1"),
                    dst: ip("192.0.2.9"),
                    proto: 6,
                    sport: 40000,
                    dport: 80,
                },
                reply: CtTuple {
                    src: ip("10.1.0.9"),
                    dst: ip("192.0.2.1"),
                    proto: 6,
                    sport: 8080,
                    dport: 40000,
                },
                zone: 3,
                status: 0x3e,
                mark: 0xdead,
                timeout: 431_999,
                seq_adj: [
                    None,
                    Some(SeqAdj {
                        correction_pos: 0x8000_0001,
                        offset_before: 0,
                        offset_after: -3,
                    }),
                ],
            }),
            Object::NftTable(NftTable {
                family: 1,
                name: "t".into(),
                flags: 0,
            }),
            Object::NftChain(NftChain {
                family: 1,
                table: "t".into(),
                name: "fw".into(),
                hook: Some((2, -100)),
                chain_type: "nat".into(),
                policy: Some(1),
                flags: 1,
            }),
            Object::NftRule(NftRule {
                family: 2,
                table: "t".into(),
                chain: "fw".into(),
                handle: 4,
                prev: 3,
                nat: true,
                exprs: vec![1, 2, 3, 4, 5],
            }),
            Object::NftSet(NftSet {
                family: 1,
                table: "t".into(),
                name: "__map0".into(),
                flags: 0xb,
                key_type: 13,
                key_len: 2,
                data_type: 0xffff_ff00,
                data_len: 16,
                fields: vec![4, 2],
                exprs: true,
                timeout: false,
            }),
            Object::NftSetElem(NftSetElem {
                family: 1,
                table: "t".into(),
                set: "__map0".into(),
                key: vec![0x11, 0x5c, 0, 0],
                key_end: vec![0x11, 0x5d, 0, 0],
                flags: 1,
                data: NftElemData::Verdict {
                    code: -3,
                    chain: "c2".into(),
                },
                stateful: false,
            }),
            Object::NftSetElem(NftSetElem {
                family: 2,
                table: "t".into(),
                set: "m".into(),
                key: vec![10, 2, 0, 2],
                key_end: vec![],
                flags: 0,
                data: NftElemData::Value(vec![7, 0, 0, 0]),
                stateful: true,
            }),
            Object::Qdisc(Qdisc {
                ifindex: 3,
                handle: 0x8001_0000,
                parent: 0xffff_ffff,
                kind: "tbf".into(),
            }),
            Object::NftSetElem(NftSetElem {
                family: 2,
                table: "t".into(),
                set: "m".into(),
                key: vec![],
                key_end: vec![],
                flags: 2,
                data: NftElemData::None,
                stateful: false,
            }),
            Object::Mroute(Mroute {
                table: 253,
                source: ip("10.0.0.1"),
                group: ip("239.1.1.1"),
                iif: 2,
                oifs: vec![(3, 1), (4, 2)],
            }),
            Object::CaptureFilter(CaptureFilter {
                inode: 12345,
                ifindex: 1,
                protocol: 3,
                process: "tcpdump".into(),
                program: vec![0x06, 0, 0, 0, 0, 0, 4, 0],
            }),
            Object::MrouteVif(MrouteVif {
                family: AF_INET,
                table: 253,
                vif: 2,
                ifindex: 2,
                flags: 0,
                local: Some(ip("10.9.1.1")),
                remote: Some(ip("192.0.2.9")),
            }),
            Object::MrouteVif(MrouteVif {
                family: AF_INET6,
                table: 254,
                vif: 31,
                ifindex: 7,
                flags: 1,
                local: None,
                remote: None,
            }),
            Object::NetConf(NetConf {
                family: AF_INET,
                ifindex: 3,
                forwarding: Some(1),
                rp_filter: Some(2),
                mc_forwarding: Some(0),
                proxy_neigh: Some(0),
                ignore_routes_with_linkdown: Some(1),
            }),
            Object::NetConf(NetConf {
                family: AF_INET6,
                ifindex: crate::netconf::NETCONFA_IFINDEX_ALL,
                forwarding: Some(0),
                rp_filter: None,
                mc_forwarding: None,
                proxy_neigh: Some(1),
                ignore_routes_with_linkdown: None,
            }),
        ]
        .into_iter()
        .chain(crate::xtables::tests::samples())
        .chain(crate::rule::tests::samples())
        .collect()
    }

    fn selector() -> Selector {
        Selector {
            daddr: ip("10.2.0.0"),
            saddr: ip("10.1.0.0"),
            prefixlen_d: 16,
            prefixlen_s: 16,
            dport: 0,
            dport_mask: 0,
            sport: 500,
            sport_mask: 0xffff,
            proto: 17,
            ifindex: 0,
            user: 0,
        }
    }

    fn xfrm_sa() -> XfrmSa {
        XfrmSa {
            sel: selector(),
            daddr: ip("192.0.2.2"),
            spi: 0xc0ffee,
            proto: 50,
            saddr: ip("192.0.2.1"),
            mode: 1,
            reqid: 7,
            replay_window: 64,
            flags: 0x21,
            algos: vec![
                XfrmAlgo {
                    attr: 2,
                    name: "cbc(aes)".into(),
                    key_bits: 128,
                    param: 0,
                    key: vec![7; 16],
                },
                XfrmAlgo {
                    attr: 20,
                    name: "hmac(sha256)".into(),
                    key_bits: 256,
                    param: 128,
                    key: vec![9; 32],
                },
            ],
            encap: Some(Encap {
                encap_type: 2,
                sport: 4500,
                dport: 4500,
                oa: None,
            }),
            mark: (5, 0xffff),
            if_id: 3,
            lifetime: Lifetime {
                hard_bytes: u64::MAX,
                ..Lifetime::default()
            },
        }
    }

    fn round_trip(o: &Object) -> Object {
        let mut buf = Vec::new();
        o.emit(&mut buf);
        let mut r = Reader::new(&buf);
        let back = Object::parse(&mut r).unwrap();
        r.finish().unwrap();
        back
    }

    #[test]
    fn every_object_round_trips() {
        for o in samples() {
            assert_eq!(round_trip(&o), o);
            // Display never fails and says what the object is.
            assert!(o.to_string().starts_with(o.kind().name()), "{o}");
        }
    }

    #[test]
    fn neighbour_bytes() {
        let n = Object::Neigh(Neigh {
            ifindex: 2,
            dst: ip("192.0.2.1"),
            lladdr: vec![0xaa, 0xbb],
            state: 0x0102,
            flags: 0x80,
        });
        let mut buf = Vec::new();
        n.emit(&mut buf);
        #[rustfmt::skip]
        let expected = [
            5, 0, 15,               // kind Neigh, body length 15
            0, 0, 0, 2,             // ifindex
            4, 192, 0, 2, 1,        // dst
            2, 0xaa, 0xbb,          // lladdr
            0x01, 0x02,             // state
            0x80,                   // flags
        ];
        assert_eq!(buf, expected);
        assert_eq!(round_trip(&n), n);
    }

    #[test]
    fn bad_objects_are_refused() {
        // A /33 IPv4 route.
        let mut buf = Vec::new();
        Object::Route(route("10.0.0.0", 8, NextHops::None)).emit(&mut buf);
        buf[3 + 4 + 5] = 33;
        assert!(Object::parse(&mut Reader::new(&buf)).is_err());
        // A body shorter than its fields, and one longer.
        let mut buf = Vec::new();
        samples()[0].emit(&mut buf);
        let short = [&[1, 0, 3][..], &buf[3..6]].concat();
        assert!(Object::parse(&mut Reader::new(&short)).is_err());
        let len = u16::from_be_bytes([buf[1], buf[2]]) + 1;
        let mut long = buf.clone();
        long[1..3].copy_from_slice(&len.to_be_bytes());
        long.push(0);
        assert_eq!(
            Object::parse(&mut Reader::new(&long)),
            Err(DecodeError::Trailing(1))
        );
    }
}
