//! The FPC API between a cache manager and a fast path: framing, messages,
//! objects and transports. `codec`, `object` and `message` do no I/O.

mod capture;
mod codec;
mod conntrack;
mod frame;
#[cfg(test)]
mod fuzz;
mod linkinfo;
mod message;
mod mroute;
mod netconf;
mod nftables;
mod object;
mod options;
pub mod paths;
mod qdisc;
mod routing;
mod rule;
mod tls;
mod transport;
mod xfrm;
mod xtables;

pub use capture::CaptureFilter;
pub use codec::DecodeError;
pub use conntrack::{Conntrack, CtKey, CtTuple, SeqAdj};
pub use frame::{FrameError, FrameReader, KEEP_BUFFER};
pub use message::{
    all_capabilities, hello_version, kind_capability, parse_frame, parse_header, Counter,
    ErrorCode, Header, Hello, Hit, InterfaceStats, Message, ObjectError, Op, Role, HEADER_LEN,
    MAGIC, MAX_BODY, VERSION,
};
pub use mroute::{Mroute, MrouteKey, MrouteVif, MrouteVifKey};
pub use netconf::{NetConf, NetConfKey, NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT};
pub use nftables::{
    elem_flags, set_flags, NftChain, NftElemData, NftRule, NftSet, NftSetElem, NftTable,
    PREV_UNKNOWN,
};
pub use object::{
    family_of, rtn, unspecified, Addr, BridgePort, Fdb, Hop, Link, LinkInfo, Neigh, NextHops,
    Nexthop, NftSetElemKey, Object, ObjectKey, ObjectKind, Route, RouteDisc, RouteKey, AF_INET,
    AF_INET6, RTNH_F_ONLINK,
};
pub use options::TlsOptions;
pub use qdisc::{Qdisc, TC_H_INGRESS};
pub use rule::{
    action as rule_action, PortMatch, Rule, RuleKey, RuleSpec, FIB_RULE_FIND_SADDR, FIB_RULE_INVERT,
};
pub use tls::{
    check_dial, client_from_options, install_client, server_config, ClientTcp, TlsError, TlsFiles,
};
pub use transport::{connect, over_tcp, read_frame, Endpoint, QueryClient, Stream, TransportError};
pub use xfrm::{
    Encap, Lifetime, SaKey, Selector, SpKey, XfrmAlgo, XfrmReplay, XfrmSa, XfrmSp, XfrmTmpl,
};
pub use xtables::{verdict_name, XtChain, XtMatch, XtRule, XtTarget, XT_F_GOTO};
