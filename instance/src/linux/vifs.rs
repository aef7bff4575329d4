//! Reading the multicast virtual interfaces from Linux: IPv4 VIFs through
//! the IPMR link dump, IPv6 MIFs from `/proc/net/ip6_mr_vif`.
//!
//! Invariants: a read is complete or an error (never a partial table that
//! a reconcile would take for deletions); a read returns only what
//! `features` syncs; the namespace read is the calling thread's.
//!
//! The kernel announces no VIF or MIF change (see
//! [`crate::netlink::mvif`]), so the processor re-reads them on every
//! `--link-poll` tick, on mc_forwarding netconf news, on MFC news and on a
//! link's deletion, and re-dumps the family's MFC entries when they
//! changed: an MFC entry is dumped with the VIFs that exist only (an
//! outgoing VIF deleted, or the incoming one, vanishes from it silently).

use tracing::warn;

use fpc::Object;

use crate::features::{Features, IPV6, MCAST};
use crate::netlink::mroute::{RTNL_FAMILY_IP6MR, RTNL_FAMILY_IPMR};
use crate::netlink::mvif::{decode_ipmr_link, parse_ip6_mr_vif};
use crate::netlink::{wire, NetlinkSocket, SocketError};
use crate::stats::{SocketStats, SyncStats};

/// The thread's own namespace: /proc/net is /proc/self/net, the namespace
/// of the process's main thread, which is not the one a check thread has
/// entered.
const IP6_MR_VIF: &str = "/proc/thread-self/net/ip6_mr_vif";

/// The VIFs (`af` AF_INET: RTNL_FAMILY_IPMR) or MIFs (AF_INET6:
/// RTNL_FAMILY_IP6MR) that `features` syncs.
pub fn dump(
    sock: &mut NetlinkSocket,
    af: u8,
    features: &Features,
    stats: &mut SocketStats,
    sync: &mut SyncStats,
) -> Result<Vec<Object>, SocketError> {
    let family = crate::netlink::mroute::rtnl_family(af);
    if !features.enabled(MCAST) || (family == RTNL_FAMILY_IP6MR && !features.enabled(IPV6)) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    match family {
        RTNL_FAMILY_IPMR => {
            // A kernel without IPv4 multicast routing answers with the
            // plain link dump (family AF_UNSPEC): no VIFs.
            let request = |seq| wire::dump_request(wire::RTM_GETLINK, RTNL_FAMILY_IPMR, seq);
            out = super::walk::collect(sock, request, "IPMR link", stats, sync, |msg, out| {
                if msg.kind == wire::RTM_NEWLINK {
                    let vifs = decode_ipmr_link(msg.payload)?.unwrap_or_default();
                    out.extend(vifs.into_iter().map(Object::MrouteVif));
                }
                Ok::<_, crate::netlink::mvif::VifError>(())
            })?;
        }
        RTNL_FAMILY_IP6MR => {
            let text = match std::fs::read_to_string(IP6_MR_VIF) {
                Ok(t) => t,
                // No IPv6 multicast routing in this kernel: no MIFs.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(SocketError::Io(e)),
            };
            let mut mifs = Vec::new();
            for line in parse_ip6_mr_vif(&text) {
                match line {
                    Ok(m) => mifs.push(m),
                    Err(e) => {
                        sync.decode_errors += 1;
                        warn!("{IP6_MR_VIF}: {e}");
                    }
                }
            }
            for mif in mifs {
                // A device gone between the read and here takes its MIF
                // along (mif6_delete on NETDEV_UNREGISTER): leave it out.
                if let Some(ifindex) = ifindex_of(&mif.name) {
                    out.push(Object::MrouteVif(mif.object(ifindex)));
                }
            }
        }
        _ => {}
    }
    out.retain(|o| features.syncs(o));
    Ok(out)
}

/// The ifindex of device `name` in the calling thread's namespace.
fn ifindex_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (ifindex != 0).then_some(ifindex)
}
