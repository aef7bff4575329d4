//! Reverse messages from the fast paths: hit flags and interface
//! statistics.
//!
//! A neighbour that only the fast path uses would age out in Linux (Linux
//! no longer sees that traffic), and Linux would then stop answering for
//! it. So for every neighbour a blade reports used, cmgrd sends Linux an
//! RTM_NEWNEIGH with NTF_USE: the kernel marks the entry used and, when
//! its reachability expires, re-probes it (REACHABLE -> DELAY -> PROBE ->
//! REACHABLE) instead of letting it go STALE. A neighbour a blade reports
//! wanted (a next hop it has no entry for) gets the same request with
//! NLM_F_CREATE, which creates the entry and starts resolution, as a
//! forwarding Linux would on the first packet. The resulting state changes
//! come back to cmgrd as ordinary notifications and are synced to the
//! blades.
//!
//! A conntrack entry that only the fast path carries would expire in Linux
//! the same way. For every entry a blade reports used, cmgrd sends an
//! IPCTNL_MSG_CT_NEW update (no NLM_F_CREATE: an entry deleted meanwhile
//! is ENOENT, counted, not recreated) setting its timeout to the value the
//! blade holds: the one Linux last announced for the entry. That is the
//! timeout Linux itself chose for the entry's state (the protocol's, or
//! `conntrack -I/-U --timeout`), so the entry lives as long as it would
//! if Linux saw the packets; a fixed value would shorten long TCP timeouts
//! or lengthen short ones. (At least [`CT_MIN_TIMEOUT`]: a dump announces
//! what is left, which can be nothing; so after a restart of cmgrd an
//! entry is refreshed to what its dump had left, not to its state's full
//! timeout, until its next event.) The kernel announces the update; cmgrd
//! knows the echo by its port id and keeps the timeout it had (the echo
//! can be a second lower, rounded down, which would otherwise shrink the
//! timeout a little with each refresh).
//!
//! Invariants: the blade tasks only hand messages over (a bounded channel,
//! never waiting: a report that does not fit is dropped and counted, the
//! next one a second later carries the same neighbours); the netlink work
//! is done on a thread of its own, born in cmgrd's namespace (cmgrd enters
//! it before starting any thread), so its socket talks to that namespace.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use fpc::{CtKey, Hit, InterfaceStats, Message};
use tracing::{debug, warn};

use crate::netlink::wire::{self, Messages, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST, RTM_NEWNEIGH};
use crate::netlink::{conntrack, NetlinkSocket, SocketError};

const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
/// `ndm_flags`: "use" the entry, as a packet sent through it would.
const NTF_USE: u8 = 0x01;
const NDA_DST: u16 = 1;
/// Reports waiting for the refresher thread, at most.
const QUEUE: usize = 256;
/// Neighbours per netlink datagram.
const CHUNK: usize = 256;
/// The least timeout a conntrack refresh sets, in seconds: an entry last
/// announced by a dump is announced with what was left of its timeout,
/// which can be 0 or 1 near its end; refreshing to that would let it
/// expire between two reports (every 500 ms).
const CT_MIN_TIMEOUT: u32 = 2;

/// What the refresher did, for the console.
#[derive(Debug, Default)]
pub struct ReverseStats {
    /// Neighbours refreshed in Linux (NTF_USE on an existing entry).
    pub refreshed: AtomicU64,
    /// Neighbours Linux was asked to create and resolve.
    pub resolve_requests: AtomicU64,
    /// Requests Linux refused (a neighbour deleted meanwhile: ENOENT).
    pub errors: AtomicU64,
    /// Conntrack entries whose timeout was pushed back in Linux.
    pub ct_refreshed: AtomicU64,
    /// Conntrack refreshes Linux refused (ENOENT: the entry went meanwhile).
    pub ct_errors: AtomicU64,
    /// The port id of the socket conntrack refreshes go through: the
    /// kernel's update events for them carry it as nlmsg_pid.
    pub ct_portid: u32,
    /// Reports dropped because the refresher was behind.
    pub dropped_reports: AtomicU64,
    /// The last interface statistics of each blade.
    pub interfaces: Mutex<BTreeMap<u32, Vec<InterfaceStats>>>,
}

impl ReverseStats {
    pub fn interfaces(&self) -> BTreeMap<u32, Vec<InterfaceStats>> {
        self.interfaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Where the blade tasks hand reverse messages.
#[derive(Clone)]
pub struct Reverse {
    tx: Sender<(u32, Vec<Hit>)>,
    pub stats: Arc<ReverseStats>,
}

impl Reverse {
    /// Starts the refresher thread. Call in cmgrd's namespace.
    pub fn spawn() -> io::Result<Reverse> {
        let sock = NetlinkSocket::open(&[], 1 << 20)?;
        let ct_sock = NetlinkSocket::open_proto(libc::NETLINK_NETFILTER, &[], 1 << 20)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let stats = Arc::new(ReverseStats {
            ct_portid: ct_sock.portid()?,
            ..ReverseStats::default()
        });
        let s = stats.clone();
        let span = tracing::Span::current();
        let mut socks = Sockets {
            neigh: sock,
            conntrack: ct_sock,
        };
        std::thread::Builder::new()
            .name("cmgrd-hitflags".into())
            .spawn(move || span.in_scope(|| refresh(&mut socks, rx, &s)))?;
        Ok(Reverse { tx, stats })
    }

    /// Takes a reverse message from `blade`'s connection; gives back any
    /// other message.
    pub fn handle(&self, blade: u32, msg: Message) -> Result<(), Box<Message>> {
        match msg {
            Message::HitFlags(hits) => {
                if let Err(TrySendError::Full(_)) = self.tx.try_send((blade, hits)) {
                    self.stats.dropped_reports.fetch_add(1, Relaxed);
                }
                Ok(())
            }
            Message::Stats(interfaces) => {
                self.stats
                    .interfaces
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(blade, interfaces);
                Ok(())
            }
            other => Err(Box::new(other)),
        }
    }
}

/// The refresher's sockets: NETLINK_ROUTE for neighbours,
/// NETLINK_NETFILTER for conntrack entries.
struct Sockets {
    neigh: NetlinkSocket,
    conntrack: NetlinkSocket,
}

/// When each conntrack entry was last refreshed, and half its timeout:
/// an entry is refreshed again only once that half has passed, so a busy
/// flow costs Linux two updates (and cmgrd two echoes) per timeout, not
/// one per report.
#[derive(Default)]
struct CtRefreshes(HashMap<CtKey, (Instant, Duration)>);

impl CtRefreshes {
    /// The hits due for a refresh at `now`, remembered as refreshed.
    fn due(&mut self, hits: Vec<Hit>, now: Instant) -> Vec<Hit> {
        self.0
            .retain(|_, (at, half)| now.saturating_duration_since(*at) < *half);
        hits.into_iter()
            .filter(|hit| {
                let Hit::Conntrack {
                    orig,
                    zone,
                    timeout,
                } = *hit
                else {
                    return false;
                };
                let half = Duration::from_secs(u64::from(timeout.max(CT_MIN_TIMEOUT))) / 2;
                let key = CtKey { orig, zone };
                if self.0.contains_key(&key) {
                    return false;
                }
                self.0.insert(key, (now, half));
                true
            })
            .collect()
    }
}

fn refresh(socks: &mut Sockets, rx: Receiver<(u32, Vec<Hit>)>, stats: &ReverseStats) {
    let mut seq = 0u32;
    let mut buf = Vec::new();
    let mut refreshes = CtRefreshes::default();
    while let Ok((blade, hits)) = rx.recv() {
        let (cts, neighs): (Vec<Hit>, Vec<Hit>) = hits
            .into_iter()
            .partition(|h| matches!(h, Hit::Conntrack { .. }));
        let cts = refreshes.due(cts, Instant::now());
        for chunk in neighs.chunks(CHUNK) {
            buf.clear();
            for hit in chunk {
                seq = seq.wrapping_add(1);
                let (ifindex, dst, create) = match *hit {
                    Hit::Neigh { ifindex, dst } => (ifindex, dst, false),
                    Hit::NeighWanted { ifindex, dst } => (ifindex, dst, true),
                    Hit::Conntrack { .. } => continue,
                };
                neigh_use(&mut buf, seq, ifindex, dst, create);
                let counter = if create {
                    &stats.resolve_requests
                } else {
                    &stats.refreshed
                };
                counter.fetch_add(1, Relaxed);
            }
            send(
                &mut socks.neigh,
                &buf,
                chunk.len(),
                &stats.errors,
                blade,
                "neighbour",
            );
        }
        for chunk in cts.chunks(CHUNK) {
            buf.clear();
            for hit in chunk {
                if let Hit::Conntrack {
                    orig,
                    zone,
                    timeout,
                } = hit
                {
                    seq = seq.wrapping_add(1);
                    let timeout = (*timeout).max(CT_MIN_TIMEOUT);
                    conntrack::refresh_request(&mut buf, seq, orig, *zone, timeout);
                }
            }
            let refused = send(
                &mut socks.conntrack,
                &buf,
                chunk.len(),
                &stats.ct_errors,
                blade,
                "conntrack",
            );
            stats
                .ct_refreshed
                .fetch_add((chunk.len() as u64).saturating_sub(refused), Relaxed);
        }
    }
}

/// Sends `n` requests and reads their answers; how many Linux refused
/// (counted in `errors` too).
fn send(
    sock: &mut NetlinkSocket,
    buf: &[u8],
    n: usize,
    errors: &AtomicU64,
    blade: u32,
    what: &str,
) -> u64 {
    if let Err(e) = sock.send(buf) {
        warn!(blade, "cannot send {what} refreshes: {e}");
        return n as u64;
    }
    match read_acks(sock, n, errors, what) {
        Ok(refused) => refused,
        Err(e) => {
            warn!(blade, "reading {what} refresh answers: {e}");
            0
        }
    }
}

/// Reads the acknowledgement of each of `n` requests; how many were
/// errors (counted in `errors`).
fn read_acks(
    sock: &mut NetlinkSocket,
    mut n: usize,
    errors: &AtomicU64,
    what: &str,
) -> Result<u64, SocketError> {
    let mut buf = Vec::new();
    let mut refused = 0;
    while n > 0 {
        buf.clear();
        sock.recv(&mut buf, false)?;
        for msg in Messages::new(&buf) {
            let msg = msg?;
            if msg.kind != NLMSG_ERROR {
                continue;
            }
            n = n.saturating_sub(1);
            let code = wire::error_code(msg.payload);
            if code != 0 {
                refused += 1;
                errors.fetch_add(1, Relaxed);
                debug!(
                    seq = msg.seq,
                    "Linux refused a {what} refresh: {}",
                    io::Error::from_raw_os_error(-code)
                );
            }
        }
    }
    Ok(refused)
}

/// Appends an RTM_NEWNEIGH with NTF_USE for `dst` on `ifindex`: refresh an
/// existing entry, or (`create`) create it and start resolution.
fn neigh_use(buf: &mut Vec<u8>, seq: u32, ifindex: u32, dst: IpAddr, create: bool) {
    let (family, addr): (u8, Vec<u8>) = match dst {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let start = buf.len();
    let mut flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE;
    if create {
        flags |= NLM_F_CREATE;
    }
    // struct nlmsghdr: length (filled below), type, flags, seq, pid.
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // struct ndmsg: family, pad, pad, ifindex, state (ignored with
    // NTF_USE), flags, type.
    buf.extend_from_slice(&[family, 0, 0, 0]);
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&[NTF_USE, 0]);
    // NDA_DST.
    let attr_len = 4 + addr.len() as u16;
    buf.extend_from_slice(&attr_len.to_ne_bytes());
    buf.extend_from_slice(&NDA_DST.to_ne_bytes());
    buf.extend_from_slice(&addr);
    while !(buf.len() - start).is_multiple_of(4) {
        buf.push(0);
    }
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_refreshed_once_per_half_timeout() {
        let hit = |sport, timeout| Hit::Conntrack {
            orig: fpc::CtTuple {
                src: "10.1.0.2".parse().unwrap(),
                dst: "10.2.0.2".parse().unwrap(),
                proto: 17,
                sport,
                dport: 5678,
            },
            zone: 0,
            timeout,
        };
        let mut r = CtRefreshes::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(r.due(vec![hit(1, 4), hit(2, 60)], t0).len(), 2);
        assert_eq!(r.due(vec![hit(1, 4), hit(2, 60)], at(500)), vec![]);
        // Half of 4 s has passed for the first: it is due again.
        assert_eq!(
            r.due(vec![hit(1, 4), hit(2, 60)], at(2000)),
            vec![hit(1, 4)]
        );
        // A timeout below the least one counts as the least (2 s).
        assert_eq!(r.due(vec![hit(3, 0)], at(2000)).len(), 1);
        assert_eq!(r.due(vec![hit(3, 0)], at(2500)), vec![]);
        assert_eq!(r.due(vec![hit(3, 0)], at(3000)).len(), 1);
        // Entries past their half are forgotten.
        r.due(vec![], at(31_000));
        assert_eq!(r.0.len(), 0);
    }

    #[test]
    fn neigh_use_bytes() {
        let mut buf = Vec::new();
        neigh_use(&mut buf, 7, 3, "10.2.0.2".parse().unwrap(), true);
        let mut expected = Vec::new();
        expected.extend_from_slice(&36u32.to_ne_bytes());
        expected.extend_from_slice(&28u16.to_ne_bytes());
        expected.extend_from_slice(&(0x1u16 | 0x4 | 0x100 | 0x400).to_ne_bytes());
        expected.extend_from_slice(&7u32.to_ne_bytes());
        expected.extend_from_slice(&0u32.to_ne_bytes());
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(&3i32.to_ne_bytes());
        expected.extend_from_slice(&[0, 0, 1, 0]);
        expected.extend_from_slice(&8u16.to_ne_bytes());
        expected.extend_from_slice(&1u16.to_ne_bytes());
        expected.extend_from_slice(&[10, 2, 0, 2]);
        assert_eq!(buf, expected);
        // IPv6: 16-byte address, already aligned; messages append.
        neigh_use(&mut buf, 8, 4, "fd02::2".parse().unwrap(), false);
        assert_eq!(buf.len(), 36 + 48);
        let msgs: Vec<_> = Messages::new(&buf).map(|m| m.unwrap().seq).collect();
        assert_eq!(msgs, vec![7, 8]);
    }
}
