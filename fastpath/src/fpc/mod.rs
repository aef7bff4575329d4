//! The FPC API between a cache manager and a fast path: framing, messages,
//! objects and transports. `codec`, `object` and `message` do no I/O.

mod codec;
#[cfg(test)]
mod fuzz;
mod linkinfo;
mod message;
mod object;
mod transport;

pub use codec::DecodeError;
pub use message::{
    all_capabilities, hello_version, kind_capability, parse_frame, parse_header, Counter,
    ErrorCode, Header, Hello, Hit, InterfaceStats, Message, ObjectError, Op, Role, HEADER_LEN,
    MAGIC, MAX_BODY, VERSION,
};
pub use object::{
    family_of, rtn, unspecified, Addr, BridgePort, Fdb, Hop, Link, LinkInfo, Neigh, NextHops,
    Nexthop, Object, ObjectKey, ObjectKind, Route, RouteDisc, RouteKey, AF_INET, AF_INET6,
    RTNH_F_ONLINK,
};
pub use transport::{connect, read_frame, Endpoint, QueryClient, Stream, TransportError};
