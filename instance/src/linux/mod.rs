//! What Linux holds now: one dump per cache scope, each through the
//! command sockets (never the listener's), filtered by the features
//! switched on, with every message counted on its socket's statistics.
//! A dump either returns the whole scope or an error: never a part.
//! Multicast VIFs ([`vifs`]) and legacy x_tables ([`legacy_tables`]) are
//! read from Linux here too; their decoders are `crate::netlink`'s.

pub mod legacy_tables;
pub mod vifs;
mod walk;

use walk::collect;

use fpc::{Object, ObjectKind};

use crate::cache::Scope;
use crate::features::Features;
use crate::netlink::rule::RuleList;
use crate::netlink::xfrm::{self, XfrmEvent};
use crate::netlink::{
    self, wire, CmdSockets, Event as NlEvent, NetlinkSocket, SocketError, WireError,
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
            return dump_captures(&mut socks.sock_diag, features, ct_stats, sync)
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
        // Every other kind is read by the generic walk (a kind with
        // neither is an error, never an empty dump that would sweep it).
        _ => netlink::rtnl_dump(scope.kind, family).ok_or_else(|| {
            SocketError::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("no dump for {}", scope.kind.name()),
            ))
        })?,
    };
    let request = |seq| wire::dump_request(kind, family, seq);
    let res = collect(
        &mut socks.route,
        request,
        "netlink",
        stats,
        sync,
        |msg, out| {
            if let NlEvent::New(obj) = netlink::decode(msg)? {
                if Scope::of(&obj) == scope && features.syncs(&obj) {
                    out.push(obj);
                }
            }
            Ok::<_, WireError>(())
        },
    );
    match res {
        Ok(out) => Ok(out),
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
    let request = |seq| wire::dump_request(netlink::rule::RTM_GETRULE, family, seq);
    let specs = collect(sock, request, "rule", stats, sync, |msg, out| {
        match netlink::decode(msg)? {
            NlEvent::NewRule(s) if s.family == family => out.push(s),
            _ => {}
        }
        Ok::<_, WireError>(())
    })?;
    let mut list = RuleList::default();
    specs.into_iter().for_each(|s| list.push_dumped(s));
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
    let request = |seq| xfrm::dump_request(kind, seq);
    collect(sock, request, "xfrm", stats, sync, |msg, out| {
        match (xfrm::decode(msg)?, scope.kind) {
            (XfrmEvent::Sa(sa, _), ObjectKind::XfrmSa) => out.push(Object::XfrmSa(sa)),
            (XfrmEvent::Sa(_, Some(r)), ObjectKind::XfrmReplay) => out.push(Object::XfrmReplay(r)),
            (XfrmEvent::Sp(sp), ObjectKind::XfrmSp) => out.push(Object::XfrmSp(sp)),
            _ => {}
        }
        Ok::<_, WireError>(())
    })
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
    let request = netlink::conntrack::dump_request;
    collect(sock, request, "ctnetlink", stats, sync, |msg, out| {
        match netlink::conntrack::decode(msg)? {
            NlEvent::New(obj) if features.syncs(&obj) => out.push(obj),
            _ => {}
        }
        Ok::<_, WireError>(())
    })
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
    let request = |seq| netlink::nftables::dump_request(kind, seq);
    collect(sock, request, "nf_tables", stats, sync, |msg, out| {
        match netlink::nftables::decode(msg)? {
            NlEvent::New(obj) if Scope::of(&obj) == scope && features.syncs(&obj) => out.push(obj),
            _ => {}
        }
        Ok::<_, WireError>(())
    })
}

/// Dumps the ports' qdiscs (RTM_GETQDISC; the default ones are left out
/// by the decoder).
fn dump_qdiscs(
    sock: &mut NetlinkSocket,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    let request = netlink::qdisc::dump_request;
    collect(sock, request, "qdisc", stats, sync, |msg, out| {
        if let NlEvent::New(obj) = netlink::qdisc::decode(msg.kind, msg.payload)? {
            out.push(obj);
        }
        Ok::<_, WireError>(())
    })
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
        let request =
            |seq| netlink::nftables::elements_request(set.family, &set.table, &set.name, seq);
        let res = collect(sock, request, "nf_tables", stats, sync, |msg, found| {
            if msg.kind == netlink::nftables::NFT_MSG_NEWSETELEM {
                let elems = netlink::nftables::decode_elements(msg)?;
                found.extend(elems.into_iter().map(Object::NftSetElem));
            }
            Ok::<_, WireError>(())
        });
        match res {
            Ok(found) => out.extend(found),
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
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    if !features.enabled(crate::features::BPF) {
        return Ok(Vec::new());
    }
    let request = netlink::capture::dump_request;
    let found = collect(sock, request, "sock_diag", stats, sync, |msg, found| {
        // A socket whose filter cannot be read is not a capture: skipped.
        if let Ok(Some(c)) = netlink::capture::decode(msg) {
            found.push(c);
        }
        Ok::<_, std::convert::Infallible>(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scope of the kinds table has a reader: none answers "no
    /// dump" (read-only dumps of the test's own namespace; other errors,
    /// such as a kernel without a family, are the dumps' own business).
    #[test]
    fn every_scope_has_a_dump() {
        let mut socks = CmdSockets::open().expect("command sockets");
        let (mut a, mut b, mut c) = Default::default();
        let mut sync = SyncStats::default();
        for scope in Scope::ALL {
            let res = dump_scope(
                &mut socks,
                scope,
                &Features::default(),
                &mut a,
                &mut b,
                &mut c,
                &mut sync,
            );
            if let Err(SocketError::Io(e)) = &res {
                assert_ne!(e.kind(), std::io::ErrorKind::Unsupported, "{scope:?}: {e}");
            }
        }
    }
}
