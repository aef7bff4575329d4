//! Netlink: the sockets and messages of the route, XFRM and netfilter
//! (ctnetlink, nf_tables) families. Here: the rtnetlink groups the
//! listener joins, the dispatch of each rtnetlink message to its decoder
//! ([`decode`]) and the rtnetlink dump of each kind ([`rtnl_dump`]), so a
//! new rtnetlink kind is wired in this one file beside its decoder's.

pub mod audit;
pub mod capture;
pub mod conntrack;
pub mod mroute;
pub mod mvif;
pub mod netconf;
pub mod nftables;
pub mod qdisc;
pub mod rtnl;
pub mod rule;
pub mod socket;
pub mod wire;
pub mod xfrm;
pub mod xtables;

use fpc::{Object, ObjectKey, ObjectKind};
use wire::{
    AF_BRIDGE, RTM_DELADDR, RTM_DELLINK, RTM_DELNEIGH, RTM_DELNEXTHOP, RTM_DELROUTE, RTM_NEWADDR,
    RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWNEXTHOP, RTM_NEWROUTE,
};

pub use socket::{NetlinkSocket, SocketError};
pub use wire::{Event, Messages, NlMsg, WireError};

/// The groups a route-family listener joins.
pub const ROUTE_GROUPS: [u32; 14] = [
    wire::RTNLGRP_LINK,
    wire::RTNLGRP_NEIGH,
    wire::RTNLGRP_IPV4_IFADDR,
    wire::RTNLGRP_IPV4_ROUTE,
    wire::RTNLGRP_IPV6_IFADDR,
    wire::RTNLGRP_IPV6_ROUTE,
    wire::RTNLGRP_IPV4_MROUTE,
    wire::RTNLGRP_IPV6_MROUTE,
    wire::RTNLGRP_NEXTHOP,
    // Per-device IP settings (netconf); no VIF or MIF news exists either,
    // and mc_forwarding's netconf news stands in.
    mvif::RTNLGRP_IPV4_NETCONF,
    mvif::RTNLGRP_IPV6_NETCONF,
    rule::RTNLGRP_IPV4_RULE,
    rule::RTNLGRP_IPV6_RULE,
    // The ports' queueing disciplines.
    qdisc::RTNLGRP_TC,
];

/// Decodes one rtnetlink message: the dispatch of every rtnetlink
/// message type to its family's decoder (a new rtnetlink kind is routed
/// here, beside its groups and its dump).
pub fn decode(msg: &NlMsg<'_>) -> Result<Event, WireError> {
    let new = |o: Option<Object>| o.map(Event::New).unwrap_or(Event::Ignored);
    let del = |o: Option<Object>| o.map(|o| Event::Del(o.key())).unwrap_or(Event::Ignored);
    Ok(match msg.kind {
        // AF_BRIDGE link messages are a bridge's news about a port, not
        // about the link itself (an RTM_DELLINK of them is a port leaving).
        RTM_NEWLINK if msg.payload.first() == Some(&AF_BRIDGE) => {
            rtnl::decode_bridge_port(msg.payload)?
                .map(Object::BridgePort)
                .map(Event::New)
                .unwrap_or(Event::Ignored)
        }
        RTM_DELLINK if msg.payload.first() == Some(&AF_BRIDGE) => {
            rtnl::decode_bridge_port(msg.payload)?
                .map(|p| Event::Del(ObjectKey::BridgePort(p.ifindex)))
                .unwrap_or(Event::Ignored)
        }
        RTM_NEWNEIGH if msg.payload.first() == Some(&AF_BRIDGE) => rtnl::decode_fdb(msg.payload)?
            .map(Object::Fdb)
            .map(Event::New)
            .unwrap_or(Event::Ignored),
        RTM_DELNEIGH if msg.payload.first() == Some(&AF_BRIDGE) => rtnl::decode_fdb(msg.payload)?
            .map(|e| Event::Del(Object::Fdb(e).key()))
            .unwrap_or(Event::Ignored),
        RTM_NEWLINK => Event::New(Object::Link(rtnl::decode_link(msg.payload)?)),
        RTM_DELLINK => Event::Del(ObjectKey::Link(rtnl::decode_link(msg.payload)?.ifindex)),
        RTM_NEWADDR => match rtnl::decode_addr(msg.payload)? {
            // An address under duplicate address detection cannot be used,
            // and the kernel announces it only once DAD is done.
            Some((a, true)) => Event::Del(Object::Addr(a).key()),
            Some((a, false)) => Event::New(Object::Addr(a)),
            None => Event::Ignored,
        },
        RTM_DELADDR => del(rtnl::decode_addr(msg.payload)?.map(|(a, _)| Object::Addr(a))),
        // Multicast routes (MFC entries) come as routes of their own families.
        RTM_NEWROUTE if mroute::is_mroute(msg.payload) => mroute::decode(msg.payload, true)?,
        RTM_DELROUTE if mroute::is_mroute(msg.payload) => mroute::decode(msg.payload, false)?,
        RTM_NEWROUTE => new(rtnl::decode_route(msg.payload)?.map(Object::Route)),
        RTM_DELROUTE => rtnl::decode_route(msg.payload)?
            .map(Event::DelRoute)
            .unwrap_or(Event::Ignored),
        RTM_NEWNEIGH => match rtnl::decode_neigh(msg.payload)? {
            // An entry that falls back to NONE or NOARP is no longer synced.
            rtnl::NeighMsg::Synced(n) => Event::New(Object::Neigh(n)),
            rtnl::NeighMsg::Unsynced(key) => key.map(Event::Del).unwrap_or(Event::Ignored),
        },
        RTM_DELNEIGH => match rtnl::decode_neigh(msg.payload)? {
            rtnl::NeighMsg::Synced(n) => Event::Del(Object::Neigh(n).key()),
            rtnl::NeighMsg::Unsynced(key) => key.map(Event::Del).unwrap_or(Event::Ignored),
        },
        rule::RTM_NEWRULE if rule::is_synced_family(msg.payload) => {
            Event::NewRule(rule::decode(msg.payload)?)
        }
        rule::RTM_DELRULE if rule::is_synced_family(msg.payload) => {
            Event::DelRule(rule::decode(msg.payload)?)
        }
        // Multicast routing's own rules (`ip mrule`).
        rule::RTM_NEWRULE | rule::RTM_DELRULE => Event::Ignored,
        RTM_NEWNEXTHOP => Event::New(Object::Nexthop(rtnl::decode_nexthop(msg.payload)?)),
        RTM_DELNEXTHOP => Event::Del(ObjectKey::Nexthop(rtnl::decode_nexthop(msg.payload)?.id)),
        netconf::RTM_NEWNETCONF | netconf::RTM_DELNETCONF => {
            netconf::decode(msg.kind, msg.payload)?
        }
        qdisc::RTM_NEWQDISC | qdisc::RTM_DELQDISC => qdisc::decode(msg.kind, msg.payload)?,
        _ => Event::Unknown,
    })
}

/// The rtnetlink dump (message type, family) that reads a scope of a kind
/// taken from NETLINK_ROUTE by the generic walk; `None` for the kinds
/// `crate::linux` reads its own way (other protocols, per-set element
/// dumps, /proc, x_tables, rules renumbered, qdiscs filtered).
pub fn rtnl_dump(kind: ObjectKind, family: u8) -> Option<(u16, u8)> {
    Some(match kind {
        ObjectKind::Link => (wire::RTM_GETLINK, 0),
        ObjectKind::Addr => (wire::RTM_GETADDR, 0),
        ObjectKind::Nexthop => (wire::RTM_GETNEXTHOP, 0),
        ObjectKind::Route => (wire::RTM_GETROUTE, family),
        ObjectKind::Neigh => (wire::RTM_GETNEIGH, family),
        ObjectKind::BridgePort => (wire::RTM_GETLINK, AF_BRIDGE),
        ObjectKind::Fdb => (wire::RTM_GETNEIGH, AF_BRIDGE),
        ObjectKind::Mroute => (wire::RTM_GETROUTE, mroute::rtnl_family(family)),
        ObjectKind::NetConf => (netconf::RTM_GETNETCONF, family),
        ObjectKind::XfrmSa
        | ObjectKind::XfrmReplay
        | ObjectKind::XfrmSp
        | ObjectKind::Conntrack
        | ObjectKind::NftTable
        | ObjectKind::NftChain
        | ObjectKind::NftSet
        | ObjectKind::NftSetElem
        | ObjectKind::NftRule
        | ObjectKind::MrouteVif
        | ObjectKind::CaptureFilter
        | ObjectKind::XtChain
        | ObjectKind::XtRule
        | ObjectKind::Rule
        | ObjectKind::Qdisc => return None,
    })
}

/// The command sockets dumps go through, one per netlink protocol.
pub struct CmdSockets {
    pub route: NetlinkSocket,
    pub xfrm: NetlinkSocket,
    pub netfilter: NetlinkSocket,
    pub sock_diag: NetlinkSocket,
}

impl CmdSockets {
    pub fn open() -> std::io::Result<CmdSockets> {
        Ok(CmdSockets {
            route: NetlinkSocket::open(&[], 4 << 20)?,
            xfrm: NetlinkSocket::open_proto(libc::NETLINK_XFRM, &[], 4 << 20)?,
            netfilter: NetlinkSocket::open_proto(libc::NETLINK_NETFILTER, &[], 4 << 20)?,
            sock_diag: NetlinkSocket::open_proto(capture::NETLINK_SOCK_DIAG, &[], 4 << 20)?,
        })
    }
}
