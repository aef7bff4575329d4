//! The rtnetlink objects (links, addresses, routes, nexthops, neighbours,
//! bridge ports, FDB entries): each struct with its key, its body on the
//! wire and its one-line form beside it. Wire layout: see the codec; every
//! count is bounded by the bytes that are really there.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{DecodeError, Reader, Writer};
use crate::object::{family_of, Body, LinkInfo, ObjectKey, RouteDisc, RouteKey, RTNH_F_ONLINK};

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

impl Body for Link {
    fn key(&self) -> ObjectKey {
        ObjectKey::Link(self.ifindex)
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let l = self;
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
        l.info.emit(w);
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Link {
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
            info: LinkInfo::parse(r)?,
        })
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self;
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
}

impl Body for Addr {
    fn key(&self) -> ObjectKey {
        ObjectKey::Addr {
            ifindex: self.ifindex,
            addr: self.addr,
            prefix_len: self.prefix_len,
        }
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let a = self;
        w.u32(a.ifindex);
        w.ip(a.addr);
        w.opt_ip(a.peer);
        w.u8(a.prefix_len);
        w.u8(a.scope);
        w.u32(a.flags);
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Addr {
            ifindex: r.u32()?,
            addr: r.ip()?,
            peer: r.opt_ip()?,
            prefix_len: r.u8()?,
            scope: r.u8()?,
            flags: r.u32()?,
        })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self;
        write!(f, "address {}/{} dev #{}", a.addr, a.prefix_len, a.ifindex)?;
        if let Some(p) = a.peer {
            write!(f, " peer {p}")?;
        }
        write!(f, " scope {} flags {:#x}", a.scope, a.flags)
    }
}

impl Body for Route {
    fn key(&self) -> ObjectKey {
        ObjectKey::Route(Route::key(self))
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let r = self;
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
                emit_hop(w, h);
            }
            NextHops::Multipath(hops) => {
                w.u8(2);
                w.u16(hops.len() as u16);
                for h in hops {
                    emit_hop(w, h);
                }
            }
            NextHops::Id(id) => {
                w.u8(3);
                w.u32(*id);
            }
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let table = r.u32()?;
        let dst = r.ip()?;
        let dst_len = r.u8()?;
        check_prefix_len(&dst, dst_len)?;
        Ok(Route {
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
                1 => NextHops::Single(parse_hop(r)?),
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
                        hops.push(parse_hop(r)?);
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
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
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
}

impl Body for Nexthop {
    fn key(&self) -> ObjectKey {
        ObjectKey::Nexthop(self.id)
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let n = self;
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

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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
        Ok(n)
    }
}

impl fmt::Display for Nexthop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self;
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
}

impl Body for Neigh {
    fn key(&self) -> ObjectKey {
        ObjectKey::Neigh {
            ifindex: self.ifindex,
            dst: self.dst,
        }
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let n = self;
        w.u32(n.ifindex);
        w.ip(n.dst);
        w.short_bytes(&n.lladdr);
        w.u16(n.state);
        w.u8(n.flags);
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Neigh {
            ifindex: r.u32()?,
            dst: r.ip()?,
            lladdr: r.short_bytes()?,
            state: r.u16()?,
            flags: r.u8()?,
        })
    }
}

impl fmt::Display for Neigh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self;
        write!(f, "neighbour {} dev #{} lladdr ", n.dst, n.ifindex)?;
        fmt_mac(f, &n.lladdr)?;
        write!(f, " state {:#x} flags {:#x}", n.state, n.flags)
    }
}

impl Body for BridgePort {
    fn key(&self) -> ObjectKey {
        ObjectKey::BridgePort(self.ifindex)
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let p = self;
        w.u32(p.ifindex);
        w.u32(p.master);
        w.u8(p.state);
        w.u16(p.vlans.len() as u16);
        for (vid, flags) in &p.vlans {
            w.u16(*vid);
            w.u16(*flags);
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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
        Ok(p)
    }
}

impl fmt::Display for BridgePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self;
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
}

impl Body for Fdb {
    fn key(&self) -> ObjectKey {
        ObjectKey::Fdb {
            domain: self.domain(),
            mac: self.mac.clone(),
            vlan: self.vlan,
            dst: self.dst,
        }
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let e = self;
        w.u32(e.ifindex);
        w.short_bytes(&e.mac);
        w.u16(e.vlan);
        w.opt_ip(e.dst);
        w.u32(e.vni);
        w.u32(e.master);
        w.u16(e.state);
        w.u8(e.flags);
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Fdb {
            ifindex: r.u32()?,
            mac: r.short_bytes()?,
            vlan: r.u16()?,
            dst: r.opt_ip()?,
            vni: r.u32()?,
            master: r.u32()?,
            state: r.u16()?,
            flags: r.u8()?,
        })
    }
}

impl fmt::Display for Fdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
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
}
