//! The listener threads: each drains one netlink socket into the
//! processor's bounded queue. After an overrun a listener reopens its
//! socket before it reports the overrun, so whatever was lost is in the
//! processor's re-dump and whatever comes later is queued. The audit
//! socket belongs to the init namespace (the only one the kernel sends
//! records to), whichever namespace cmgrd syncs.

use crossbeam_channel::Sender;
use tracing::warn;

use super::{Config, Proto};
use crate::event::Event;
use crate::netlink::{NetlinkSocket, SocketError};

/// The listener thread: reads datagrams and hands them to the processor in
/// chunks, reopening the socket on overrun.
pub(super) fn listen(proto: Proto, mut sock: NetlinkSocket, buffer: usize, tx: Sender<Event>) {
    let wrap = |buf: Vec<u8>| match proto {
        Proto::Route => Event::Netlink(buf),
        Proto::Xfrm => Event::Xfrm(buf),
        Proto::Netfilter => Event::Netfilter(buf),
        Proto::Audit => Event::Audit(buf),
    };
    // Without its listener cmgrd cannot go on, except for audit's: legacy
    // tables are then polled.
    let failed = |e: String| match proto {
        Proto::Audit => Event::AuditFailed(e),
        _ => Event::ListenerFailed(e),
    };
    // Coalescing what is already queued passes fewer, larger chunks; both
    // bounds keep a steady stream of changes from being held back (the
    // socket is then never empty long enough to stop on WouldBlock).
    const CHUNK: usize = 64 << 10;
    const DATAGRAMS: usize = 256;
    let mut buf = Vec::with_capacity(CHUNK + (1 << 20));
    loop {
        buf.clear();
        let mut res = sock.recv(&mut buf, false);
        pad(&mut buf);
        let mut datagrams = 1;
        while res.is_ok() && buf.len() < CHUNK && datagrams < DATAGRAMS {
            datagrams += 1;
            match sock.recv(&mut buf, true) {
                Ok(_) => pad(&mut buf),
                Err(SocketError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => res = Err(e),
            }
        }
        let msg = match res {
            Ok(_) => wrap(std::mem::take(&mut buf)),
            Err(SocketError::Overrun) => {
                if !buf.is_empty() && tx.send(wrap(std::mem::take(&mut buf))).is_err() {
                    return;
                }
                // Reopen first: what the old socket lost is in the dump that
                // follows, what happens from now on is in the new socket.
                match proto.open(buffer) {
                    Ok(s) => sock = s,
                    Err(e) => {
                        let _ = tx.send(failed(e.to_string()));
                        return;
                    }
                }
                warn!(?proto, "netlink listener overran (ENOBUFS); resyncing");
                Event::Overrun
            }
            Err(e) => {
                let _ = tx.send(failed(e.to_string()));
                return;
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Audit records are not padded to NLMSG_ALIGN (kauditd sets nlmsg_len
/// to the end of the text): datagrams appended one after another are
/// padded so that the next one starts where the message walker looks.
pub(super) fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// The audit listener and, when cmgrd will leave it for --netns, the init
/// namespace to come back to; None when records cannot reach cmgrd (it
/// runs outside the init namespace, or may not read the audit log).
pub(super) fn open_audit(config: &Config) -> Option<(NetlinkSocket, Option<std::fs::File>)> {
    if !config.features.enabled(crate::features::FILTER) {
        return None;
    }
    match crate::linux::legacy_tables::in_init_netns() {
        Ok(true) => {}
        Ok(false) => {
            warn!(
                "cmgrd runs outside the init network namespace, where the kernel sends no \
                 audit records: legacy iptables tables will be polled"
            );
            return None;
        }
        Err(e) => {
            warn!("cannot compare network namespaces ({e}): legacy iptables tables will be polled");
            return None;
        }
    }
    let home = match &config.netns {
        None => None,
        Some(_) => {
            match std::fs::File::open("/proc/thread-self/ns/net") {
                Ok(f) => Some(f),
                Err(e) => {
                    warn!("cannot keep the init namespace ({e}): legacy iptables tables will be polled");
                    return None;
                }
            }
        }
    };
    match Proto::Audit.open(config.netlink_buffer) {
        Ok(sock) => Some((sock, home)),
        Err(e) => {
            warn!(
                "cannot listen to audit records (AUDIT_NLGRP_READLOG needs CAP_AUDIT_READ): {e}; \
                 legacy iptables tables will be polled"
            );
            None
        }
    }
}
