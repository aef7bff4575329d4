//! cmgrd's life: a listener thread drains netlink into a bounded queue, a
//! processor thread owns the cache and turns every change into FPC ops for
//! the blades, a tokio runtime carries the blades' connections, and a
//! console thread answers `daemonctl`.
//!
//! Invariants:
//! * The listener is subscribed before the first dump, so no change falls
//!   between the dump and the notifications.
//! * After an overrun the listener reopens its socket before it reports
//!   the overrun, and the processor dumps everything after that report:
//!   whatever was lost is in the dump, whatever comes later is queued.
//! * The audit listener's socket belongs to the init namespace (the only
//!   one the kernel sends records to), whichever namespace cmgrd syncs;
//!   each x_tables record has the legacy tables re-read, and while no
//!   record can come (audit off) they are polled on the link poll's tick.
//! * Every op reaches every connected blade in the order the cache saw it;
//!   a blade that connects (or whose queue overflowed) first gets the whole
//!   cache between SyncBegin and SyncEnd.
//! * A blade whose queue passed `--max-queue` is out of sync from that
//!   moment (SyncState `resyncing`) until its replay is acked; the replay
//!   is queued when its writer reports the queue drained, with no later
//!   change needed.
//! * The processor's state is private to this module: the console's
//!   questions are answered here ([`answers`]), on the processor's thread.
//!
//! Rooms: [`start`] wires the threads, [`listener`] drains netlink,
//! [`event_loop`] takes one event at a time, [`ingest`] applies the
//! families beside routing, [`silent`] recovers what the kernel changes
//! unannounced, [`xt_watch`] follows legacy tables, [`blades`] feeds the
//! fast paths, [`conntrack_sync`] carries conntrack's reverse path; the
//! dumps of Linux are `crate::linux`'s and the events `crate::event`'s.

mod answers;
mod blades;
mod conntrack_sync;
mod event_loop;
mod ingest;
mod listener;
mod silent;
mod start;
#[cfg(test)]
mod tests;
mod xt_watch;

pub use start::run;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fpc::{Endpoint, Object, Op};
use tokio::sync::mpsc;

use crate::blade::Outgoing;
use crate::cache::{Cache, Scope};
use crate::linux::Linux;
use crate::netlink::xfrm;
use crate::netlink::{self, NetlinkSocket, SocketError};
use crate::stats::{QueueStats, SocketStats, SyncStats};

/// Objects per batch frame.
const BATCH: usize = 1024;
/// How often packet sockets' capture filters are looked for.
const CAPTURE_POLL: Duration = Duration::from_millis(250);
/// How often legacy tables are polled (and the audit status looked at)
/// when `--link-poll` is off.
const XT_POLL: Duration = Duration::from_millis(500);
/// A pending reconcile waits at most this long for a quiet moment.
const RECONCILE_DELAY: Duration = Duration::from_millis(50);

/// cmgrd's configuration is its command line.
pub use crate::options::Options as Config;

impl Config {
    pub fn instance_id(&self) -> u32 {
        self.instance.unwrap_or(0)
    }
    /// The seed's identifier: `cmgrd` or `cmgrd<id>`.
    pub fn identifier(&self) -> String {
        match self.instance {
            Some(i) => format!("cmgrd{i}"),
            None => "cmgrd".into(),
        }
    }
    pub fn console(&self) -> PathBuf {
        crate::console::console_path(self.instance)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot enter the network namespace")]
    Netns(#[source] std::io::Error),
    #[error("cannot open a netlink socket")]
    Netlink(#[source] std::io::Error),
    #[error("initial dump failed")]
    Dump(#[source] SocketError),
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("console at {path}")]
    Console {
        path: PathBuf,
        #[source]
        source: crate::console::ConsoleError,
    },
}

/// Where netlink messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Listener,
    /// Fed by the console's `netlink replay FILE` (the seed's command).
    Fed,
}

/// The netlink protocols cmgrd listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Route,
    Xfrm,
    Netfilter,
    /// NETLINK_AUDIT records (AUDIT_NETFILTER_CFG: legacy x_tables).
    Audit,
}

impl Proto {
    /// As said in logs ("malformed xfrm datagram").
    fn name(self) -> &'static str {
        match self {
            Proto::Route => "netlink",
            Proto::Xfrm => "xfrm",
            Proto::Netfilter => "netfilter",
            Proto::Audit => "audit",
        }
    }

    fn open(self, buffer: usize) -> std::io::Result<NetlinkSocket> {
        match self {
            Proto::Route => NetlinkSocket::open(&netlink::ROUTE_GROUPS, buffer),
            Proto::Xfrm => NetlinkSocket::open_proto(libc::NETLINK_XFRM, &xfrm::GROUPS, buffer),
            Proto::Netfilter => NetlinkSocket::open_proto(
                libc::NETLINK_NETFILTER,
                &[
                    netlink::conntrack::GROUPS[0],
                    netlink::conntrack::GROUPS[1],
                    netlink::conntrack::GROUPS[2],
                    netlink::nftables::NFNLGRP_NFTABLES,
                ],
                buffer,
            ),
            Proto::Audit => crate::linux::legacy_tables::open_listener(buffer),
        }
    }
}

/// Where the instance stands with Linux (DESIGN.md's `SyncState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    InitialDump,
    Synced,
    Resyncing,
}

impl SyncState {
    pub fn name(self) -> &'static str {
        match self {
            SyncState::InitialDump => "initial-dump",
            SyncState::Synced => "synced",
            SyncState::Resyncing => "resyncing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    Down,
    Up {
        conn: u64,
    },
    /// The queue passed its limit: nothing more is queued until it drains,
    /// then the blade gets a full replay.
    Overflowed {
        conn: u64,
    },
}

pub struct BladeSession {
    blade: u32,
    endpoint: Endpoint,
    stats: Arc<QueueStats>,
    tx: mpsc::UnboundedSender<Outgoing>,
    state: SessionState,
    seq: u64,
    /// The queue overflowed on this connection: the instance is resyncing
    /// until the replay that follows is acked.
    recovering: bool,
    /// The size of the last replay queued (bytes).
    replay_bytes: u64,
}

impl BladeSession {
    /// A session not connected yet, whose frames go to `tx`.
    fn new(
        blade: u32,
        endpoint: Endpoint,
        stats: Arc<QueueStats>,
        tx: mpsc::UnboundedSender<Outgoing>,
    ) -> Self {
        BladeSession {
            blade,
            endpoint,
            stats,
            tx,
            state: SessionState::Down,
            seq: 0,
            recovering: false,
            replay_bytes: 0,
        }
    }

    /// Out of sync because of an overflow (replay owed or not yet acked).
    fn recovering(&self) -> bool {
        matches!(self.state, SessionState::Overflowed { .. })
            || (self.recovering && self.stats.in_sync.load(Relaxed) == 0)
    }
}

pub struct Processor {
    config: Config,
    cache: Cache,
    /// Where dumps come from (the command sockets; a fake in unit tests).
    linux: Box<dyn Linux>,
    listen_stats: SocketStats,
    cmd_stats: SocketStats,
    xfrm_listen_stats: SocketStats,
    xfrm_cmd_stats: SocketStats,
    ct_listen_stats: SocketStats,
    ct_cmd_stats: SocketStats,
    audit_listen_stats: SocketStats,
    /// How legacy x_tables changes are found (audit records, or polling).
    xt_watch: XtWatch,
    /// Messages fed through `netlink replay` (captures, test fixtures).
    replay_stats: SocketStats,
    xfrm_replay_stats: SocketStats,
    sync: SyncStats,
    state: SyncState,
    blades: Vec<BladeSession>,
    /// What the fast paths report back (hit flags, interface statistics).
    reverse: Arc<crate::hitflags::ReverseStats>,
    pending: Vec<(Op, Object)>,
    /// IPsec HA (SA sequence number sync) per blade, switchable live.
    ipsec_ha: std::collections::BTreeMap<u32, bool>,
    reconcile: BTreeSet<ScopeOrd>,
    reconcile_since: Option<Instant>,
    /// Where the SyncState is published when it changes (to the bus
    /// object; none in unit tests).
    published: Option<tokio::sync::watch::Sender<SyncState>>,
    /// The instant of the step being processed: set by the event loop
    /// (the one reader of the clock) or by a unit test.
    now: Instant,
    generation: u64,
}

impl Processor {
    /// A processor before its initial dump: an empty cache, the blades'
    /// sessions down, every socket's statistics named after instance
    /// `config.instance`, reading Linux through `linux`.
    fn new(
        config: Config,
        linux: Box<dyn Linux>,
        blades: Vec<BladeSession>,
        reverse: Arc<crate::hitflags::ReverseStats>,
        audit_listening: bool,
    ) -> Self {
        let id = config.instance_id();
        let named = |what: &str| SocketStats::named(format!("netlink-{what}-{id}"));
        let ipsec_ha = config
            .blades
            .iter()
            .map(|(b, _)| (*b, config.ipsec_replay))
            .collect();
        Processor {
            reverse,
            ipsec_ha,
            config,
            cache: Cache::default(),
            linux,
            listen_stats: named("route-listen"),
            cmd_stats: named("route-cmd"),
            xfrm_listen_stats: named("xfrm-listen"),
            xfrm_cmd_stats: named("xfrm-cmd"),
            ct_listen_stats: named("netfilter-conntrack-listen"),
            ct_cmd_stats: named("netfilter-conntrack-cmd"),
            audit_listen_stats: named("audit-listen"),
            xt_watch: XtWatch {
                listening: audit_listening,
                status: None,
                events: false,
                warned: None,
            },
            replay_stats: named("replay"),
            xfrm_replay_stats: named("xfrm-replay"),
            sync: SyncStats::default(),
            state: SyncState::InitialDump,
            blades,
            pending: Vec::new(),
            reconcile: BTreeSet::new(),
            reconcile_since: None,
            published: None,
            now: Instant::now(),
            generation: 0,
        }
    }
}

/// How cmgrd learns of legacy x_tables changes: records on the init
/// namespace's audit socket while audit is enabled, else by polling.
struct XtWatch {
    /// cmgrd listens on the init namespace's audit socket.
    listening: bool,
    /// The AUDIT_GET socket (None when it could not be opened).
    status: Option<crate::linux::legacy_tables::AuditStatus>,
    /// Changes arrive as records (audit was enabled at the last look).
    events: bool,
    /// Why not, as last warned (so each reason is warned once).
    warned: Option<String>,
}

/// `Scope` ordered for a deterministic reconcile order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ScopeOrd(usize);

fn scope_ord(s: Scope) -> ScopeOrd {
    ScopeOrd(Scope::ALL.iter().position(|x| *x == s).unwrap_or(0))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Processor {
    /// The instance's SyncState: `resyncing` also while a blade whose
    /// queue overflowed waits for (or has not yet acked) its replay.
    pub fn sync_state(&self) -> SyncState {
        if self.state == SyncState::Synced && self.blades.iter().any(BladeSession::recovering) {
            SyncState::Resyncing
        } else {
            self.state
        }
    }

    /// Tells the bus object the SyncState if it changed (a comparison
    /// otherwise: called after every event and tick).
    pub(super) fn publish_state(&self) {
        if let Some(tx) = &self.published {
            let now = self.sync_state();
            tx.send_if_modified(|s| std::mem::replace(s, now) != now);
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}
