//! What Linux holds now: one dump per cache scope, each through the
//! command sockets (never the listener's), filtered by the features
//! switched on, with every message counted on its socket's statistics.
//! A dump either returns the whole scope or an error: never a part.
//! Multicast VIFs ([`vifs`]) and legacy x_tables ([`legacy_tables`]) are
//! read from Linux here too; their decoders are `crate::netlink`'s.

pub mod legacy_tables;
pub mod vifs;

use fpc::{Object, ObjectKind};
use tracing::warn;

use crate::cache::Scope;
use crate::features::Features;
use crate::netlink::rule::RuleList;
use crate::netlink::xfrm::{self, XfrmEvent};
use crate::netlink::{
    self, mroute, wire, CmdSockets, Event as NlEvent, NetlinkSocket, SocketError,
};
use crate::stats::{SocketStats, SyncStats};

/// Where the processor reads Linux from: the command sockets, or, in the
/// processor's unit tests, a fake holding what Linux would answer. One
/// call per dump (never per message or packet).
pub trait Linux: Send {
    /// Dumps one scope (what `features` syncs of it), counting messages
    /// on the statistics of the socket they came from.
    #[allow(clippy::too_many_arguments)]
    fn dump(
        &mut self,
        scope: Scope,
        features: &Features,
        stats: &mut SocketStats,
        xfrm_stats: &mut SocketStats,
        ct_stats: &mut SocketStats,
        sync: &mut SyncStats,
    ) -> Result<Vec<Object>, SocketError>;

    /// The command sockets, for the reads beside dumps (the console's link
    /// statistics, conntrack's sequence adjustments); none in a fake.
    fn sockets(&mut self) -> Option<&mut CmdSockets>;
}

impl Linux for CmdSockets {
    fn dump(
        &mut self,
        scope: Scope,
        features: &Features,
        stats: &mut SocketStats,
        xfrm_stats: &mut SocketStats,
        ct_stats: &mut SocketStats,
        sync: &mut SyncStats,
    ) -> Result<Vec<Object>, SocketError> {
        dump_scope(self, scope, features, stats, xfrm_stats, ct_stats, sync)
    }

    fn sockets(&mut self) -> Option<&mut CmdSockets> {
        Some(self)
    }
}

/// Dumps one scope from Linux (what `features` syncs of it), counting
/// messages on the command socket.
pub fn dump_scope(
    socks: &mut CmdSockets,
    scope: Scope,
    features: &Features,
    stats: &mut SocketStats,
    xfrm_stats: &mut SocketStats,
    ct_stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    let family = scope.family;
    let (kind, family) = match scope.kind {
        ObjectKind::XfrmSa | ObjectKind::XfrmReplay | ObjectKind::XfrmSp => {
            return dump_xfrm(&mut socks.xfrm, scope, features, xfrm_stats, sync)
        }
        ObjectKind::CaptureFilter => {
            return dump_captures(&mut socks.sock_diag, features, ct_stats)
        }
        ObjectKind::Conntrack => {
            return dump_conntrack(&mut socks.netfilter, features, ct_stats, sync)
        }
        ObjectKind::XtChain | ObjectKind::XtRule => {
            return crate::linux::legacy_tables::dump(scope, features)
        }
        ObjectKind::NftSetElem => {
            return dump_set_elements(&mut socks.netfilter, features, ct_stats, sync)
        }
        ObjectKind::NftTable | ObjectKind::NftChain | ObjectKind::NftSet | ObjectKind::NftRule => {
            return dump_nftables(&mut socks.netfilter, scope, features, ct_stats, sync)
        }
        ObjectKind::MrouteVif => {
            return crate::linux::vifs::dump(&mut socks.route, family, features, stats, sync)
        }
        ObjectKind::Rule => return dump_rules(&mut socks.route, family, features, stats, sync),
        ObjectKind::Qdisc => return dump_qdiscs(&mut socks.route, stats, sync),
        ObjectKind::Link => (wire::RTM_GETLINK, 0),
        ObjectKind::Addr => (wire::RTM_GETADDR, 0),
        ObjectKind::Nexthop => (wire::RTM_GETNEXTHOP, 0),
        ObjectKind::Route => (wire::RTM_GETROUTE, family),
        ObjectKind::Neigh => (wire::RTM_GETNEIGH, family),
        ObjectKind::BridgePort => (wire::RTM_GETLINK, wire::AF_BRIDGE),
        ObjectKind::Fdb => (wire::RTM_GETNEIGH, wire::AF_BRIDGE),
        ObjectKind::Mroute => (wire::RTM_GETROUTE, mroute::rtnl_family(family)),
        ObjectKind::NetConf => (netlink::netconf::RTM_GETNETCONF, family),
    };
    let sock = &mut socks.route;
    let mut out = Vec::new();
    let mut bad = 0u64;
    let res = sock.dump(kind, family, |msg| {
        let Some(msg) = msg else {
            out.clear(); // an interrupted dump starts again
            return;
        };
        stats.count(msg.kind);
        match netlink::decode(msg) {
            Ok(NlEvent::New(obj)) if Scope::of(&obj) == scope && features.syncs(&obj) => {
                out.push(obj)
            }
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                warn!(kind = msg.kind, "malformed netlink message in dump: {e}");
            }
        }
    });
    sync.decode_errors += bad;
    match res {
        Ok(()) => Ok(out),
        // A kernel without nexthop objects answers EOPNOTSUPP or EINVAL.
        // So does one without IPv4/IPv6 multicast routing, or without
        // IPv6 (no netconf handler for AF_INET6).
        Err(SocketError::Kernel(e))
            if matches!(
                scope.kind,
                ObjectKind::Nexthop | ObjectKind::Mroute | ObjectKind::NetConf
            ) && (e == libc::EOPNOTSUPP || e == libc::EINVAL || e == libc::EAFNOSUPPORT) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Dumps one family's policy routing rules (RTM_GETRULE), numbered as
/// notifications number them.
fn dump_rules(
    sock: &mut NetlinkSocket,
    family: u8,
    features: &Features,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    let mut list = RuleList::default();
    let mut bad = 0u64;
    let res = sock.dump(netlink::rule::RTM_GETRULE, family, |msg| {
        let Some(msg) = msg else {
            list = RuleList::default(); // an interrupted dump starts again
            return;
        };
        stats.count(msg.kind);
        match netlink::decode(msg) {
            Ok(NlEvent::NewRule(s)) if s.family == family => list.push_dumped(s),
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                warn!(kind = msg.kind, "malformed rule in dump: {e}");
            }
        }
    });
    sync.decode_errors += bad;
    res?;
    let mut out = list.objects();
    out.retain(|o| features.syncs(o));
    Ok(out)
}

/// Dumps SAs (with their replay states) or policies from the kernel.
fn dump_xfrm(
    sock: &mut NetlinkSocket,
    scope: Scope,
    features: &Features,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    if !features.enabled(crate::features::IPSEC) {
        return Ok(Vec::new());
    }
    let kind = match scope.kind {
        ObjectKind::XfrmSp => xfrm::XFRM_MSG_GETPOLICY,
        _ => xfrm::XFRM_MSG_GETSA,
    };
    let mut out = Vec::new();
    let mut bad = 0u64;
    let res = sock.dump_with(
        |seq| xfrm::dump_request(kind, seq),
        |msg| {
            let Some(msg) = msg else {
                out.clear();
                return;
            };
            stats.count(msg.kind);
            match (xfrm::decode(msg), scope.kind) {
                (Ok(XfrmEvent::Sa(sa, _)), ObjectKind::XfrmSa) => out.push(Object::XfrmSa(sa)),
                (Ok(XfrmEvent::Sa(_, Some(r))), ObjectKind::XfrmReplay) => {
                    out.push(Object::XfrmReplay(r))
                }
                (Ok(XfrmEvent::Sp(sp)), ObjectKind::XfrmSp) => out.push(Object::XfrmSp(sp)),
                (Ok(_), _) => {}
                (Err(e), _) => {
                    bad += 1;
                    warn!(kind = msg.kind, "malformed xfrm message in dump: {e}");
                }
            }
        },
    );
    sync.decode_errors += bad;
    res.map(|()| out)
}

/// Dumps every conntrack entry (of the families `features` syncs).
fn dump_conntrack(
    sock: &mut NetlinkSocket,
    features: &Features,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    if !features.enabled(crate::features::CONNTRACK) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut bad = 0u64;
    let res = sock.dump_with(netlink::conntrack::dump_request, |msg| {
        let Some(msg) = msg else {
            out.clear();
            return;
        };
        stats.count(msg.kind);
        match netlink::conntrack::decode(msg) {
            Ok(NlEvent::New(obj)) if features.syncs(&obj) => out.push(obj),
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                warn!(kind = msg.kind, "malformed ctnetlink message in dump: {e}");
            }
        }
    });
    sync.decode_errors += bad;
    res.map(|()| out)
}

/// Dumps nf_tables tables, chains or rules of every family.
fn dump_nftables(
    sock: &mut NetlinkSocket,
    scope: Scope,
    features: &Features,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    use crate::features::{EBTABLES, FILTER};
    if !features.enabled(FILTER) && !features.enabled(EBTABLES) {
        return Ok(Vec::new());
    }
    let kind = match scope.kind {
        ObjectKind::NftTable => netlink::nftables::NFT_MSG_GETTABLE,
        ObjectKind::NftChain => netlink::nftables::NFT_MSG_GETCHAIN,
        ObjectKind::NftSet => netlink::nftables::NFT_MSG_GETSET,
        _ => netlink::nftables::NFT_MSG_GETRULE,
    };
    let mut out = Vec::new();
    let mut bad = 0u64;
    let res = sock.dump_with(
        |seq| netlink::nftables::dump_request(kind, seq),
        |msg| {
            let Some(msg) = msg else {
                out.clear();
                return;
            };
            stats.count(msg.kind);
            match netlink::nftables::decode(msg) {
                Ok(NlEvent::New(obj)) if Scope::of(&obj) == scope && features.syncs(&obj) => {
                    out.push(obj)
                }
                Ok(_) => {}
                Err(e) => {
                    bad += 1;
                    warn!(kind = msg.kind, "malformed nf_tables message in dump: {e}");
                }
            }
        },
    );
    sync.decode_errors += bad;
    res.map(|()| out)
}

/// Dumps the ports' qdiscs (RTM_GETQDISC; the default ones are left out
/// by the decoder).
fn dump_qdiscs(
    sock: &mut NetlinkSocket,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    let mut out = Vec::new();
    let mut bad = 0u64;
    let res = sock.dump_with(netlink::qdisc::dump_request, |msg| {
        let Some(msg) = msg else {
            out.clear();
            return;
        };
        stats.count(msg.kind);
        match netlink::qdisc::decode(msg.kind, msg.payload) {
            Ok(NlEvent::New(obj)) => out.push(obj),
            Ok(_) => {}
            Err(e) => {
                bad += 1;
                warn!(kind = msg.kind, "malformed qdisc message in dump: {e}");
            }
        }
    });
    sync.decode_errors += bad;
    res.map(|()| out)
}

/// Dumps every set's elements: the sets first, then one element dump
/// per set (the kernel dumps the elements of one named set at a time).
/// A set deleted between the two dumps answers ENOENT: it has none.
fn dump_set_elements(
    sock: &mut NetlinkSocket,
    features: &Features,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    let sets = dump_nftables(
        sock,
        Scope::whole(ObjectKind::NftSet),
        features,
        stats,
        sync,
    )?;
    let mut out = Vec::new();
    for set in sets {
        let Object::NftSet(set) = set else { continue };
        if !set.elements_synced() {
            continue;
        }
        let mut found = Vec::new();
        let mut bad = 0u64;
        let res = sock.dump_with(
            |seq| netlink::nftables::elements_request(set.family, &set.table, &set.name, seq),
            |msg| {
                let Some(msg) = msg else {
                    found.clear();
                    return;
                };
                stats.count(msg.kind);
                if msg.kind != netlink::nftables::NFT_MSG_NEWSETELEM {
                    return;
                }
                match netlink::nftables::decode_elements(msg) {
                    Ok(elems) => found.extend(elems.into_iter().map(Object::NftSetElem)),
                    Err(e) => {
                        bad += 1;
                        warn!(kind = msg.kind, "malformed nf_tables message in dump: {e}");
                    }
                }
            },
        );
        sync.decode_errors += bad;
        match res {
            Ok(()) => out.extend(found),
            Err(SocketError::Kernel(e)) if e == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Dumps the packet sockets' filters with their owners' names.
fn dump_captures(
    sock: &mut NetlinkSocket,
    features: &Features,
    stats: &mut SocketStats,
) -> Result<Vec<Object>, SocketError> {
    if !features.enabled(crate::features::BPF) {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    sock.dump_with(netlink::capture::dump_request, |msg| {
        let Some(msg) = msg else {
            found.clear();
            return;
        };
        stats.count(msg.kind);
        if let Ok(Some(c)) = netlink::capture::decode(msg) {
            found.push(c);
        }
    })?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let owners = netlink::capture::socket_owners();
    Ok(found
        .into_iter()
        .filter_map(|mut c| {
            c.process = owners.get(&c.inode)?.clone();
            let obj = Object::CaptureFilter(c);
            features.syncs(&obj).then_some(obj)
        })
        .collect())
}
