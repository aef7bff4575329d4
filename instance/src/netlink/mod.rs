//! Netlink: the route family's sockets and messages.

pub mod socket;
pub mod wire;

pub use socket::{NetlinkSocket, SocketError};
pub use wire::{decode, Event, Messages, NlMsg, WireError};

/// The groups a route-family listener joins.
pub const ROUTE_GROUPS: [u32; 7] = [
    wire::RTNLGRP_LINK,
    wire::RTNLGRP_NEIGH,
    wire::RTNLGRP_IPV4_IFADDR,
    wire::RTNLGRP_IPV4_ROUTE,
    wire::RTNLGRP_IPV6_IFADDR,
    wire::RTNLGRP_IPV6_ROUTE,
    wire::RTNLGRP_NEXTHOP,
];
