//! rtnetlink messages as the kernel sends them, decoded into FPC objects
//! (links, addresses, routes, neighbours, nexthops, bridge ports, FDB);
//! the dispatch of every rtnetlink message is `netlink::decode`.
//!
//! No I/O, no logging: `Messages` walks a buffer of netlink messages and
//! `decode` turns one into an [`Event`]. Lengths come from the kernel (or a
//! test) and are all checked; a malformed message is an error, never a
//! panic. Netlink integers are in host byte order.
//!
//! What is kept of each object is what the kernel reports on every change:
//! statistics, cache info and state flags that change silently (RTNH_F_DEAD,
//! RTNH_F_LINKDOWN, IFA_F_TENTATIVE, ...) are left out, so a copy fed by
//! notifications equals a fresh dump.

use std::net::IpAddr;

use fpc::{
    unspecified, Addr, BridgePort, Fdb, Hop, Link, LinkInfo, Neigh, NextHops, Nexthop, Object,
    ObjectKey, Route, AF_INET, AF_INET6, RTNH_F_ONLINK,
};

use super::wire::{
    align, attrs, get_be16, get_be32, get_ip, get_u16, get_u32, get_u8, header, WireError,
    AF_BRIDGE, NUD_NOARP,
};

const IFLA_ADDRESS: u16 = 1;

const IFLA_IFNAME: u16 = 3;

const IFLA_MTU: u16 = 4;

const IFLA_LINK: u16 = 5;

const IFLA_MASTER: u16 = 10;

const IFLA_OPERSTATE: u16 = 16;

const IFLA_LINKINFO: u16 = 18;

const IFLA_INFO_KIND: u16 = 1;

const IFLA_INFO_DATA: u16 = 2;

const IFLA_PROTINFO: u16 = 12;

const IFLA_AF_SPEC: u16 = 26;

const IFLA_BRPORT_STATE: u16 = 1;

const IFLA_BRIDGE_VLAN_INFO: u16 = 2;

const BRIDGE_VLAN_INFO_RANGE_BEGIN: u16 = 0x8;

const BRIDGE_VLAN_INFO_RANGE_END: u16 = 0x10;

const IFLA_LINK_NETNSID: u16 = 37;

const IFA_ADDRESS: u16 = 1;

const IFA_LOCAL: u16 = 2;

const IFA_FLAGS: u16 = 8;

const IFA_F_TENTATIVE: u32 = 0x40;

/// Address flags that are configuration; the others (tentative, deprecated,
/// dadfailed, optimistic) are state.
const IFA_CONFIG_FLAGS: u32 = 0x01 | 0x02 | 0x10 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800;

const RTA_DST: u16 = 1;

const RTA_OIF: u16 = 4;

const RTA_GATEWAY: u16 = 5;

const RTA_PRIORITY: u16 = 6;

const RTA_PREFSRC: u16 = 7;

const RTA_METRICS: u16 = 8;

/// In `RTA_METRICS`: the path MTU.
const RTAX_MTU: u16 = 2;

const RTA_MULTIPATH: u16 = 9;

const RTA_TABLE: u16 = 15;

const RTA_VIA: u16 = 18;

const RTA_NH_ID: u16 = 30;

/// A cached clone (IPv6 exception), not a configured route.
const RTM_F_CLONED: u32 = 0x200;

const NDA_DST: u16 = 1;

const NDA_LLADDR: u16 = 2;

const NDA_VLAN: u16 = 5;

const NDA_VNI: u16 = 7;

const NDA_MASTER: u16 = 9;

const NTF_SELF: u8 = 0x02;

const NUD_REACHABLE: u16 = 0x02;

const NUD_PERMANENT: u16 = 0x80;

/// REACHABLE, STALE, DELAY, PROBE: a lladdr the kernel itself sends to.
const NUD_VALID_DYNAMIC: u16 = 0x02 | 0x04 | 0x08 | 0x10;

const NTF_PROXY: u8 = 0x08;

const NHA_ID: u16 = 1;

const NHA_GROUP: u16 = 2;

const NHA_GROUP_TYPE: u16 = 3;

const NHA_BLACKHOLE: u16 = 4;

const NHA_OIF: u16 = 5;

const NHA_GATEWAY: u16 = 6;

const NHA_FDB: u16 = 11;

/// `RTA_VIA`: a family (u16) then the address.
fn get_via(v: &[u8]) -> Result<IpAddr, WireError> {
    if v.len() < 2 {
        return Err(WireError::BadAttr {
            kind: RTA_VIA,
            len: v.len(),
        });
    }
    get_ip(&v[2..])
}

pub(super) fn decode_link(payload: &[u8]) -> Result<Link, WireError> {
    // struct ifinfomsg: family, pad, type u16, index i32, flags u32, change u32
    let (h, rest) = header::<16>(payload)?;
    let mut link = Link {
        ifindex: u32::from_ne_bytes(h[4..8].try_into().unwrap()),
        name: String::new(),
        kind: String::new(),
        flags: u32::from_ne_bytes(h[8..12].try_into().unwrap()),
        mtu: 0,
        link_type: u16::from_ne_bytes([h[2], h[3]]),
        mac: Vec::new(),
        master: 0,
        link: 0,
        link_netnsid: -1,
        operstate: 0,
        info: LinkInfo::None,
    };
    let mut data = None;
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            IFLA_IFNAME => {
                let raw = v.split(|b| *b == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(raw).into_owned();
            }
            IFLA_ADDRESS => link.mac = v.to_vec(),
            IFLA_MTU => link.mtu = get_u32(kind, v)?,
            IFLA_LINK => link.link = get_u32(kind, v)?,
            IFLA_MASTER => link.master = get_u32(kind, v)?,
            IFLA_OPERSTATE => link.operstate = *v.first().unwrap_or(&0),
            IFLA_LINK_NETNSID => link.link_netnsid = get_u32(kind, v)? as i32,
            IFLA_LINKINFO => {
                for info in attrs(v) {
                    let (ikind, iv) = info?;
                    match ikind {
                        IFLA_INFO_KIND => {
                            let raw = iv.split(|b| *b == 0).next().unwrap_or_default();
                            link.kind = String::from_utf8_lossy(raw).into_owned();
                        }
                        IFLA_INFO_DATA => data = Some(iv),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // The kind is known only once every attribute was seen.
    if let Some(data) = data {
        link.info = decode_link_info(&link.kind, data)?;
    }
    Ok(link)
}

/// `IFLA_INFO_DATA` of the kinds a fast path handles; the attribute
/// numbers are each kind's own (IFLA_VLAN_*, IFLA_VXLAN_*, ...). Only
/// configuration is kept (a bridge's timers, for one, change silently).
fn decode_link_info(kind: &str, data: &[u8]) -> Result<LinkInfo, WireError> {
    let mut info = match kind {
        "vlan" => LinkInfo::Vlan {
            id: 0,
            protocol: 0x8100,
        },
        "macvlan" | "macvtap" => LinkInfo::Macvlan { mode: 0 },
        "vxlan" => LinkInfo::Vxlan {
            vni: 0,
            local: None,
            remote: None,
            port: 0,
            learning: false,
            ttl: 0,
            dev: 0,
        },
        "bond" => LinkInfo::Bond {
            mode: 0,
            active: 0,
            miimon: 0,
        },
        "gre" | "gretap" | "ip6gre" | "ip6gretap" => LinkInfo::Gre {
            ikey: 0,
            okey: 0,
            iflags: 0,
            oflags: 0,
            local: None,
            remote: None,
            ttl: 0,
            dev: 0,
        },
        "ipip" | "sit" | "ip6tnl" => LinkInfo::Tunnel {
            local: None,
            remote: None,
            ttl: 0,
            proto: 0,
            dev: 0,
        },
        "vti" | "vti6" => LinkInfo::Vti {
            ikey: 0,
            okey: 0,
            local: None,
            remote: None,
            dev: 0,
        },
        "bridge" => LinkInfo::Bridge {
            vlan_filtering: false,
            vlan_protocol: 0x8100,
            default_pvid: 1,
        },
        _ => return Ok(LinkInfo::None),
    };
    for attr in attrs(data) {
        let (k, v) = attr?;
        match &mut info {
            LinkInfo::Vlan { id, protocol } => match k {
                1 => *id = get_u16(k, v)?,
                5 => *protocol = get_be16(k, v)?,
                _ => {}
            },
            LinkInfo::Macvlan { mode } => {
                if k == 1 {
                    *mode = get_u32(k, v)?
                }
            }
            LinkInfo::Vxlan {
                vni,
                local,
                remote,
                port,
                learning,
                ttl,
                dev,
            } => match k {
                1 => *vni = get_u32(k, v)?,
                2 | 16 => *remote = Some(get_ip(v)?),
                3 => *dev = get_u32(k, v)?,
                4 | 17 => *local = Some(get_ip(v)?),
                5 => *ttl = get_u8(k, v)?,
                7 => *learning = get_u8(k, v)? != 0,
                15 => *port = get_be16(k, v)?,
                _ => {}
            },
            LinkInfo::Bond {
                mode,
                active,
                miimon,
            } => match k {
                1 => *mode = get_u8(k, v)?,
                2 => *active = get_u32(k, v)?,
                3 => *miimon = get_u32(k, v)?,
                _ => {}
            },
            LinkInfo::Gre {
                ikey,
                okey,
                iflags,
                oflags,
                local,
                remote,
                ttl,
                dev,
            } => match k {
                1 => *dev = get_u32(k, v)?,
                2 => *iflags = get_be16(k, v)?,
                3 => *oflags = get_be16(k, v)?,
                4 => *ikey = get_be32(k, v)?,
                5 => *okey = get_be32(k, v)?,
                6 => *local = Some(get_ip(v)?),
                7 => *remote = Some(get_ip(v)?),
                8 => *ttl = get_u8(k, v)?,
                _ => {}
            },
            LinkInfo::Tunnel {
                local,
                remote,
                ttl,
                proto,
                dev,
            } => match k {
                1 => *dev = get_u32(k, v)?,
                2 => *local = Some(get_ip(v)?),
                3 => *remote = Some(get_ip(v)?),
                4 => *ttl = get_u8(k, v)?,
                9 => *proto = get_u8(k, v)?,
                _ => {}
            },
            LinkInfo::Vti {
                ikey,
                okey,
                local,
                remote,
                dev,
            } => match k {
                1 => *dev = get_u32(k, v)?,
                2 => *ikey = get_be32(k, v)?,
                3 => *okey = get_be32(k, v)?,
                4 => *local = Some(get_ip(v)?),
                5 => *remote = Some(get_ip(v)?),
                _ => {}
            },
            LinkInfo::Bridge {
                vlan_filtering,
                vlan_protocol,
                default_pvid,
            } => match k {
                7 => *vlan_filtering = get_u8(k, v)? != 0,
                8 => *vlan_protocol = get_be16(k, v)?,
                39 => *default_pvid = get_u16(k, v)?,
                _ => {}
            },
            LinkInfo::None => {}
        }
    }
    // An unspecified address is no address (`local any`).
    let drop_any = |a: &mut Option<IpAddr>| {
        if a.is_some_and(|ip| ip.is_unspecified()) {
            *a = None
        }
    };
    match &mut info {
        LinkInfo::Vxlan { local, remote, .. }
        | LinkInfo::Gre { local, remote, .. }
        | LinkInfo::Tunnel { local, remote, .. }
        | LinkInfo::Vti { local, remote, .. } => {
            drop_any(local);
            drop_any(remote);
        }
        _ => {}
    }
    Ok(info)
}

/// Linux's own counters of a link (`IFLA_STATS64`): (ifindex, name,
/// [rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped]).
pub fn decode_link_stats(payload: &[u8]) -> Result<Option<(u32, String, [u64; 6])>, WireError> {
    const IFLA_STATS64: u16 = 23;
    let (h, rest) = header::<16>(payload)?;
    if h[0] == AF_BRIDGE {
        return Ok(None);
    }
    let ifindex = u32::from_ne_bytes(h[4..8].try_into().unwrap());
    let (mut name, mut stats) = (String::new(), None);
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            IFLA_IFNAME => {
                let raw = v.split(|b| *b == 0).next().unwrap_or_default();
                name = String::from_utf8_lossy(raw).into_owned();
            }
            // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes,
            // tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped, ...
            IFLA_STATS64 if v.len() >= 64 => {
                let at = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
                stats = Some([at(0), at(1), at(2), at(3), at(6), at(7)]);
            }
            _ => {}
        }
    }
    Ok(stats.map(|s| (ifindex, name, s)))
}

/// An AF_BRIDGE link message: a port's state and VLANs. None for the
/// bridge's own message (its master is itself).
pub(super) fn decode_bridge_port(payload: &[u8]) -> Result<Option<BridgePort>, WireError> {
    let (h, rest) = header::<16>(payload)?;
    let mut port = BridgePort {
        ifindex: u32::from_ne_bytes(h[4..8].try_into().unwrap()),
        master: 0,
        state: 0,
        vlans: Vec::new(),
    };
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            IFLA_MASTER => port.master = get_u32(kind, v)?,
            // Older kernels send the state as a bare u8, newer ones nest it.
            IFLA_PROTINFO if v.len() == 1 => port.state = v[0],
            IFLA_PROTINFO => {
                for a in attrs(v) {
                    let (k, pv) = a?;
                    if k == IFLA_BRPORT_STATE {
                        port.state = get_u8(k, pv)?;
                    }
                }
            }
            IFLA_AF_SPEC => {
                let mut range_start = None;
                for a in attrs(v) {
                    let (k, vv) = a?;
                    if k != IFLA_BRIDGE_VLAN_INFO {
                        continue;
                    }
                    // struct bridge_vlan_info: flags u16, vid u16
                    let flags = get_u16(k, vv)?;
                    let vid = get_u16(k, vv.get(2..).unwrap_or_default())?;
                    let keep = flags & !(BRIDGE_VLAN_INFO_RANGE_BEGIN | BRIDGE_VLAN_INFO_RANGE_END);
                    if flags & BRIDGE_VLAN_INFO_RANGE_BEGIN != 0 {
                        range_start = Some(vid);
                    } else if flags & BRIDGE_VLAN_INFO_RANGE_END != 0 {
                        let start = range_start.take().unwrap_or(vid);
                        port.vlans
                            .extend((start..=vid.max(start)).map(|v| (v, keep)));
                    } else {
                        port.vlans.push((vid, keep));
                    }
                }
                port.vlans.sort_unstable();
                port.vlans.dedup_by_key(|(vid, _)| *vid);
            }
            _ => {}
        }
    }
    if port.master == 0 || port.master == port.ifindex {
        return Ok(None);
    }
    Ok(Some(port))
}

/// An AF_BRIDGE neighbour message: an FDB entry. Only entries a fast path
/// forwards with are kept: a bridge's (NDA_MASTER names the bridge; the
/// kernel does not set NTF_MASTER in what it sends) and a VXLAN device's
/// remotes (NDA_DST). The "self" entries of plain devices (their multicast
/// address lists, never announced) and a bridge's entries for itself are
/// not.
pub(super) fn decode_fdb(payload: &[u8]) -> Result<Option<Fdb>, WireError> {
    let (h, rest) = header::<12>(payload)?;
    let mut e = Fdb {
        ifindex: u32::from_ne_bytes(h[4..8].try_into().unwrap()),
        mac: Vec::new(),
        vlan: 0,
        dst: None,
        vni: 0,
        master: 0,
        state: u16::from_ne_bytes([h[8], h[9]]),
        flags: h[10],
    };
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            NDA_LLADDR => e.mac = v.to_vec(),
            NDA_DST => e.dst = Some(get_ip(v)?),
            NDA_VLAN => e.vlan = get_u16(kind, v)?,
            NDA_VNI => e.vni = get_u32(kind, v)?,
            NDA_MASTER => e.master = get_u32(kind, v)?,
            _ => {}
        }
    }
    let forwarding = (e.master != 0 && e.flags & NTF_SELF == 0) || e.dst.is_some();
    if !forwarding || e.master == e.ifindex || e.mac.len() != 6 {
        return Ok(None);
    }
    // A learned entry goes from REACHABLE to STALE as it ages, silently:
    // only permanent and static (NOARP) are configuration.
    if e.state & (NUD_PERMANENT | NUD_NOARP) == 0 {
        e.state = NUD_REACHABLE;
    }
    Ok(Some(e))
}

/// The address, and whether it is tentative (DAD not done, or failed).
pub(super) fn decode_addr(payload: &[u8]) -> Result<Option<(Addr, bool)>, WireError> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index u32
    let (h, rest) = header::<8>(payload)?;
    if h[0] != AF_INET && h[0] != AF_INET6 {
        return Ok(None);
    }
    let mut flags = h[2] as u32;
    let (mut address, mut local) = (None, None);
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            IFA_ADDRESS => address = Some(get_ip(v)?),
            IFA_LOCAL => local = Some(get_ip(v)?),
            IFA_FLAGS => flags = get_u32(kind, v)?,
            _ => {}
        }
    }
    // IPv4: IFA_LOCAL is the address, IFA_ADDRESS the peer on a
    // point-to-point link. IPv6: IFA_ADDRESS, with IFA_LOCAL only for a peer.
    let (addr, peer) = match (local, address) {
        (Some(l), Some(a)) if l != a => (l, Some(a)),
        (Some(l), _) => (l, None),
        (None, Some(a)) => (a, None),
        (None, None) => {
            return Err(WireError::BadAttr {
                kind: IFA_ADDRESS,
                len: 0,
            })
        }
    };
    let addr = Addr {
        ifindex: u32::from_ne_bytes(h[4..8].try_into().unwrap()),
        addr,
        peer,
        prefix_len: h[1],
        scope: h[3],
        flags: flags & IFA_CONFIG_FLAGS,
    };
    Ok(Some((addr, flags & IFA_F_TENTATIVE != 0)))
}

fn decode_hop_attrs(buf: &[u8], hop: &mut Hop) -> Result<(), WireError> {
    for attr in attrs(buf) {
        let (kind, v) = attr?;
        match kind {
            RTA_GATEWAY => hop.gateway = Some(get_ip(v)?),
            RTA_VIA => hop.gateway = Some(get_via(v)?),
            _ => {}
        }
    }
    Ok(())
}

fn decode_multipath(mut v: &[u8]) -> Result<Vec<Hop>, WireError> {
    // struct rtnexthop: len u16, flags u8, hops u8, ifindex i32, then attrs
    let mut hops = Vec::new();
    while v.len() >= 8 {
        let len = u16::from_ne_bytes([v[0], v[1]]) as usize;
        if len < 8 || len > v.len() {
            return Err(WireError::BadAttr {
                kind: RTA_MULTIPATH,
                len,
            });
        }
        let mut hop = Hop {
            gateway: None,
            oif: u32::from_ne_bytes(v[4..8].try_into().unwrap()),
            weight: v[3] as u16 + 1,
            flags: v[2] & RTNH_F_ONLINK,
        };
        decode_hop_attrs(&v[8..len], &mut hop)?;
        hops.push(hop);
        v = &v[align(len).min(v.len())..];
    }
    // IPv6 reports siblings in insertion order in notifications but in
    // another order in dumps: the hops are a set, so keep them sorted.
    hops.sort_by(|a, b| {
        (a.gateway, a.oif, a.weight, a.flags).cmp(&(b.gateway, b.oif, b.weight, b.flags))
    });
    Ok(hops)
}

/// The `RTAX_MTU` metric of a route's nested `RTA_METRICS` (0 when the
/// route has none). The other metrics (advmss, window, rtt, hoplimit,
/// ...) only shape what the router itself sends: forwarding reads none.
fn metric_mtu(nested: &[u8]) -> Result<u32, WireError> {
    for attr in attrs(nested) {
        let (kind, v) = attr?;
        if kind == RTAX_MTU {
            return get_u32(kind, v);
        }
    }
    Ok(0)
}

pub(super) fn decode_route(payload: &[u8]) -> Result<Option<Route>, WireError> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags u32
    let (h, rest) = header::<12>(payload)?;
    let family = h[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let rtm_flags = u32::from_ne_bytes(h[8..12].try_into().unwrap());
    if rtm_flags & RTM_F_CLONED != 0 {
        return Ok(None);
    }
    let mut route = Route {
        table: h[4] as u32,
        dst: unspecified(family),
        dst_len: h[1],
        tos: h[3],
        priority: 0,
        rtype: h[7],
        protocol: h[5],
        scope: h[6],
        prefsrc: None,
        mtu: 0,
        nexthops: NextHops::None,
    };
    let mut single = Hop {
        gateway: None,
        oif: 0,
        weight: 1,
        flags: 0,
    };
    let mut nh_id = None;
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            RTA_DST => route.dst = get_ip(v)?,
            RTA_TABLE => route.table = get_u32(kind, v)?,
            RTA_PRIORITY => route.priority = get_u32(kind, v)?,
            RTA_PREFSRC => route.prefsrc = Some(get_ip(v)?),
            RTA_METRICS => route.mtu = metric_mtu(v)?,
            RTA_OIF => single.oif = get_u32(kind, v)?,
            RTA_GATEWAY => single.gateway = Some(get_ip(v)?),
            RTA_VIA => single.gateway = Some(get_via(v)?),
            RTA_MULTIPATH => route.nexthops = NextHops::Multipath(decode_multipath(v)?),
            RTA_NH_ID => nh_id = Some(get_u32(kind, v)?),
            _ => {}
        }
    }
    // With net.ipv4.nexthop_compat_mode (the default) a route by nexthop
    // object also carries the object expanded (RTA_MULTIPATH, RTA_OIF,
    // RTA_GATEWAY); the object is what is configured, so it wins.
    if let Some(id) = nh_id {
        route.nexthops = NextHops::Id(id);
    }
    let max = if family == AF_INET { 32 } else { 128 };
    if route.dst_len > max || route.dst.is_ipv4() != (family == AF_INET) {
        return Err(WireError::BadFamily(family));
    }
    single.flags = (rtm_flags as u8) & RTNH_F_ONLINK;
    if route.nexthops == NextHops::None && (single.oif != 0 || single.gateway.is_some()) {
        route.nexthops = NextHops::Single(single);
    }
    Ok(Some(route))
}

pub(super) enum NeighMsg {
    Synced(Neigh),
    /// An entry not synced; its key when it is an IP neighbour.
    Unsynced(Option<ObjectKey>),
}

pub(super) fn decode_neigh(payload: &[u8]) -> Result<NeighMsg, WireError> {
    // struct ndmsg: family, pad1, pad2 u16, ifindex i32, state u16, flags u8,
    // type u8
    let (h, rest) = header::<12>(payload)?;
    let family = h[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(NeighMsg::Unsynced(None));
    }
    let mut n = Neigh {
        ifindex: u32::from_ne_bytes(h[4..8].try_into().unwrap()),
        dst: unspecified(family),
        lladdr: Vec::new(),
        state: u16::from_ne_bytes([h[8], h[9]]),
        flags: h[10],
    };
    let mut has_dst = false;
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            NDA_DST => {
                n.dst = get_ip(v)?;
                has_dst = true;
            }
            NDA_LLADDR => n.lladdr = v.to_vec(),
            _ => {}
        }
    }
    if !has_dst || n.flags & NTF_PROXY != 0 {
        return Ok(NeighMsg::Unsynced(None));
    }
    // What a fast path can use: a permanent entry, or a valid one. The
    // kernel moves valid entries between REACHABLE, STALE, DELAY and PROBE
    // and announces only some of these moves (REACHABLE -> DELAY -> PROBE
    // and STALE -> DELAY are silent), so all four are synced as REACHABLE.
    // INCOMPLETE (never announced) and FAILED have no usable address.
    n.state = match n.state {
        s if s & NUD_PERMANENT != 0 => NUD_PERMANENT,
        s if s & NUD_VALID_DYNAMIC != 0 && !n.lladdr.is_empty() => NUD_REACHABLE,
        _ => return Ok(NeighMsg::Unsynced(Some(Object::Neigh(n).key()))),
    };
    Ok(NeighMsg::Synced(n))
}

pub(super) fn decode_nexthop(payload: &[u8]) -> Result<Nexthop, WireError> {
    // struct nhmsg: family, scope, protocol, resvd, flags u32
    let (h, rest) = header::<8>(payload)?;
    let mut nh = Nexthop {
        id: 0,
        family: h[0],
        gateway: None,
        oif: 0,
        blackhole: false,
        fdb: false,
        flags: (u32::from_ne_bytes(h[4..8].try_into().unwrap()) as u8) & RTNH_F_ONLINK,
        group: Vec::new(),
        group_type: 0,
    };
    for attr in attrs(rest) {
        let (kind, v) = attr?;
        match kind {
            NHA_ID => nh.id = get_u32(kind, v)?,
            NHA_GROUP => {
                // struct nexthop_grp: id u32, weight u8, weight_high u8,
                // resvd u16; the weight is stored minus one.
                for g in v.chunks_exact(8) {
                    let weight = (g[4] as u16 | (g[5] as u16) << 8) + 1;
                    nh.group
                        .push((u32::from_ne_bytes(g[0..4].try_into().unwrap()), weight));
                }
            }
            NHA_GROUP_TYPE => {
                nh.group_type = v
                    .get(..2)
                    .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                    .ok_or(WireError::BadAttr { kind, len: v.len() })?
            }
            NHA_BLACKHOLE => nh.blackhole = true,
            NHA_FDB => nh.fdb = true,
            NHA_OIF => nh.oif = get_u32(kind, v)?,
            NHA_GATEWAY => nh.gateway = Some(get_ip(v)?),
            _ => {}
        }
    }
    Ok(nh)
}

#[cfg(test)]
mod tests;
