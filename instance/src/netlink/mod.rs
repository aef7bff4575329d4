//! Netlink: the sockets and messages of the route, XFRM and netfilter
//! (ctnetlink, nf_tables) families.

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

pub use rtnl::decode;
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
