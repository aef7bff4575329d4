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

mod conntrack_sync;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};
use fastpath::fpc::{Endpoint, Message, Object, ObjectKey, ObjectKind, Op, AF_INET, AF_INET6};
use tokio::sync::mpsc;
use tracing::{debug, error, info, info_span, trace, warn};

use crate::blade::{BladeEvent, BladeTask, Outgoing};
use crate::cache::{Cache, Scope};
use crate::features::Features;
use crate::netlink::mroute::{RTNL_FAMILY_IP6MR, RTNL_FAMILY_IPMR};
use crate::netlink::rule::RuleList;
use crate::netlink::xfrm::{self, XfrmEvent};
use crate::netlink::{
    self, wire, CmdSockets, Event as NlEvent, Messages, NetlinkSocket, SocketError,
};
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

/// Everything the processor reacts to.
pub enum Event {
    /// One or more datagrams from the listener.
    Netlink(Vec<u8>),
    /// One or more datagrams from the XFRM listener.
    Xfrm(Vec<u8>),
    /// One or more datagrams from the ctnetlink listener.
    Netfilter(Vec<u8>),
    /// One or more datagrams (audit records) from the audit listener.
    Audit(Vec<u8>),
    /// The audit listener could not go on: legacy tables are polled.
    AuditFailed(String),
    /// The listener overran, and has reopened its socket.
    Overrun,
    ListenerFailed(String),
    Blade(BladeEvent),
    Console {
        line: String,
        reply: Sender<String>,
    },
    /// `netlink replay [xfrm] FILE`, the file read by the console thread.
    Replay {
        xfrm: bool,
        bytes: Vec<u8>,
        reply: Sender<String>,
    },
    Shutdown,
}

/// Where netlink messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Listener,
    Replay,
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
            Proto::Audit => crate::xtables::open_listener(buffer),
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
enum LinkState {
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

pub struct BladeLink {
    pub blade: u32,
    pub endpoint: Endpoint,
    pub stats: Arc<QueueStats>,
    tx: mpsc::UnboundedSender<Outgoing>,
    state: LinkState,
    seq: u64,
    /// The queue overflowed on this connection: the instance is resyncing
    /// until the replay that follows is acked.
    recovering: bool,
    /// The size of the last replay queued (bytes).
    replay_bytes: u64,
}

impl BladeLink {
    /// Out of sync because of an overflow (replay owed or not yet acked).
    fn recovering(&self) -> bool {
        matches!(self.state, LinkState::Overflowed { .. })
            || (self.recovering && self.stats.in_sync.load(Relaxed) == 0)
    }
}

pub struct Processor {
    pub config: Config,
    pub cache: Cache,
    cmd: CmdSockets,
    pub listen_stats: SocketStats,
    pub cmd_stats: SocketStats,
    pub xfrm_listen_stats: SocketStats,
    pub xfrm_cmd_stats: SocketStats,
    pub ct_listen_stats: SocketStats,
    pub ct_cmd_stats: SocketStats,
    pub audit_listen_stats: SocketStats,
    /// How legacy x_tables changes are found (audit records, or polling).
    xt_watch: XtWatch,
    /// Messages fed through `netlink replay` (captures, test fixtures).
    pub replay_stats: SocketStats,
    pub xfrm_replay_stats: SocketStats,
    pub sync: SyncStats,
    pub state: SyncState,
    pub blades: Vec<BladeLink>,
    /// What the fast paths report back (hit flags, interface statistics).
    pub reverse: Arc<crate::hitflags::ReverseStats>,
    pending: Vec<(Op, Object)>,
    /// IPsec HA (SA sequence number sync) per blade, switchable live.
    pub ipsec_ha: std::collections::BTreeMap<u32, bool>,
    reconcile: BTreeSet<ScopeOrd>,
    reconcile_since: Option<Instant>,
    generation: u64,
    pub started: SystemTime,
}

/// How cmgrd learns of legacy x_tables changes: records on the init
/// namespace's audit socket while audit is enabled, else by polling.
struct XtWatch {
    /// cmgrd listens on the init namespace's audit socket.
    listening: bool,
    /// The AUDIT_GET socket (None when it could not be opened).
    status: Option<crate::xtables::AuditStatus>,
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

/// Runs cmgrd until SIGTERM/SIGINT. `ready` is called once the initial
/// dump is done and the console answers.
pub fn run(config: Config, ready: impl FnOnce()) -> Result<(), DaemonError> {
    // Audit records reach only the init namespace's audit socket, and a
    // socket keeps the namespace it was made in: the listener is opened
    // here, before --netns is entered, and its thread goes back to this
    // namespace to reopen it after an overrun.
    let audit = open_audit(&config);
    if let Some(ns) = &config.netns {
        crate::netns::enter(ns).map_err(DaemonError::Netns)?;
    }
    let span = info_span!(
        "cmgrd",
        instance = config.instance_id(),
        netns = config.netns.as_deref().unwrap_or("")
    );
    let _enter = span.enter();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("cmgrd-blades")
        .build()
        .map_err(DaemonError::Runtime)?;

    let (net_tx, net_rx) = crossbeam_channel::bounded::<Event>(4096);
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Event>();

    // Subscribe before dumping: see the module's invariants.
    for (proto, name) in [
        (Proto::Route, "cmgrd-listener"),
        (Proto::Xfrm, "cmgrd-xfrm-listener"),
        (Proto::Netfilter, "cmgrd-ct-listener"),
    ] {
        let listener = proto
            .open(config.netlink_buffer)
            .map_err(DaemonError::Netlink)?;
        let nl_buffer = config.netlink_buffer;
        let listener_span = span.clone();
        let net_tx = net_tx.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _e = listener_span.enter();
                listen(proto, listener, nl_buffer, net_tx)
            })
            .map_err(DaemonError::Runtime)?;
    }
    let audit_listening = audit.is_some();
    if let Some((listener, home)) = audit {
        let nl_buffer = config.netlink_buffer;
        let listener_span = span.clone();
        let net_tx = net_tx.clone();
        std::thread::Builder::new()
            .name("cmgrd-audit-listener".into())
            .spawn(move || {
                let _e = listener_span.enter();
                if let Some(home) = home {
                    if let Err(e) = crate::netns::enter_fd(&home) {
                        let _ = net_tx.send(Event::AuditFailed(format!(
                            "cannot return to the init namespace: {e}"
                        )));
                        return;
                    }
                }
                listen(Proto::Audit, listener, nl_buffer, net_tx)
            })
            .map_err(DaemonError::Runtime)?;
    }
    drop(net_tx);

    let cmd = CmdSockets::open().map_err(DaemonError::Netlink)?;
    let reverse = crate::hitflags::Reverse::spawn().map_err(DaemonError::Netlink)?;
    let mut blades = Vec::new();
    for (index, (blade, endpoint)) in config.blades.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(QueueStats::default());
        let task = BladeTask {
            index,
            blade: *blade,
            endpoint: endpoint.clone(),
            netns: config.netns.clone(),
            instance: config.instance_id(),
            name: config.identifier(),
            socket_buffer: config.socket_buffer,
            election_id: config.election_id,
            stats: stats.clone(),
            reverse: reverse.clone(),
        };
        let events = ctl_tx.clone();
        let blade_span = info_span!("blade", blade = *blade);
        runtime.spawn(tracing::Instrument::instrument(
            task.run(rx, events),
            blade_span,
        ));
        blades.push(BladeLink {
            blade: *blade,
            endpoint: endpoint.clone(),
            stats,
            tx,
            state: LinkState::Down,
            seq: 0,
            recovering: false,
            replay_bytes: 0,
        });
    }

    // Removes the console's socket file when dropped (if still ours).
    let _console = crate::console::spawn(&config.console(), ctl_tx.clone()).map_err(|source| {
        DaemonError::Console {
            path: config.console(),
            source,
        }
    })?;
    spawn_signal_watcher(&runtime, ctl_tx.clone());
    runtime.spawn(tracing::Instrument::instrument(
        crate::bus::serve(
            config.instance_id(),
            config.netns.clone().unwrap_or_default(),
            ctl_tx.clone(),
        ),
        span.clone(),
    ));

    let ipsec_ha = config
        .blades
        .iter()
        .map(|(b, _)| (*b, config.ipsec_replay))
        .collect();
    let mut p = Processor {
        reverse: reverse.stats.clone(),
        ipsec_ha,
        config,
        cache: Cache::default(),
        cmd,
        listen_stats: SocketStats::default(),
        cmd_stats: SocketStats::default(),
        xfrm_listen_stats: SocketStats::default(),
        xfrm_cmd_stats: SocketStats::default(),
        ct_listen_stats: SocketStats::default(),
        ct_cmd_stats: SocketStats::default(),
        audit_listen_stats: SocketStats::default(),
        xt_watch: XtWatch {
            listening: audit_listening,
            status: None,
            events: false,
            warned: None,
        },
        replay_stats: SocketStats::default(),
        xfrm_replay_stats: SocketStats::default(),
        sync: SyncStats::default(),
        state: SyncState::InitialDump,
        blades,
        pending: Vec::new(),
        reconcile: BTreeSet::new(),
        reconcile_since: None,
        generation: 0,
        started: SystemTime::now(),
    };
    let id = p.config.instance_id();
    p.listen_stats = SocketStats::named(format!("netlink-route-listen-{id}"));
    p.cmd_stats = SocketStats::named(format!("netlink-route-cmd-{id}"));
    p.replay_stats = SocketStats::named(format!("netlink-replay-{id}"));
    p.xfrm_listen_stats = SocketStats::named(format!("netlink-xfrm-listen-{id}"));
    p.xfrm_cmd_stats = SocketStats::named(format!("netlink-xfrm-cmd-{id}"));
    p.xfrm_replay_stats = SocketStats::named(format!("netlink-xfrm-replay-{id}"));
    p.ct_listen_stats = SocketStats::named(format!("netlink-netfilter-conntrack-listen-{id}"));
    p.ct_cmd_stats = SocketStats::named(format!("netlink-netfilter-conntrack-cmd-{id}"));
    p.audit_listen_stats = SocketStats::named(format!("netlink-audit-listen-{id}"));
    p.xt_watch.status = match crate::xtables::AuditStatus::open() {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot open an audit socket to read the audit status: {e}");
            None
        }
    };
    p.watch_xtables(false);
    let t0 = Instant::now();
    p.full_resync().map_err(DaemonError::Dump)?;
    p.state = SyncState::Synced;
    info!(
        objects = p.cache.total(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "initial dump done"
    );
    ready();
    p.run_loop(net_rx, ctl_rx);
    drop(p); // closes the blades' queues: their tasks end
    runtime.shutdown_timeout(Duration::from_secs(1));
    info!("stopped");
    Ok(())
}

fn spawn_signal_watcher(runtime: &tokio::runtime::Runtime, tx: Sender<Event>) {
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            error!("cannot watch signals");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("signal received, stopping");
        let _ = tx.send(Event::Shutdown);
    });
}

/// The listener thread: reads datagrams and hands them to the processor in
/// chunks, reopening the socket on overrun.
fn listen(proto: Proto, mut sock: NetlinkSocket, buffer: usize, tx: Sender<Event>) {
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
fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// The audit listener and, when cmgrd will leave it for --netns, the init
/// namespace to come back to; None when records cannot reach cmgrd (it
/// runs outside the init namespace, or may not read the audit log).
fn open_audit(config: &Config) -> Option<(NetlinkSocket, Option<std::fs::File>)> {
    if !config.features.enabled(crate::features::FILTER) {
        return None;
    }
    match crate::xtables::in_init_netns() {
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

impl Processor {
    fn run_loop(&mut self, net_rx: Receiver<Event>, ctl_rx: Receiver<Event>) {
        let poll = self.config.link_poll;
        let mut next_poll = Instant::now() + poll.unwrap_or(Duration::MAX / 4);
        // Packet sockets' filters come with no notification: polled.
        let captures = self
            .config
            .features
            .enabled(crate::features::BPF)
            .then_some(CAPTURE_POLL);
        let mut next_capture = Instant::now() + captures.unwrap_or(Duration::MAX / 4);
        // Legacy x_tables: the audit status is looked at (and, without
        // records, the tables polled) on the link poll's tick.
        let xt_period = self
            .config
            .features
            .enabled(crate::features::FILTER)
            .then(|| poll.unwrap_or(XT_POLL));
        let mut next_xt = Instant::now() + xt_period.unwrap_or(Duration::MAX / 4);
        loop {
            if xt_period.is_some() && Instant::now() >= next_xt {
                self.watch_xtables(true);
                next_xt = Instant::now() + xt_period.unwrap_or_default();
            }
            if poll.is_some() && Instant::now() >= next_poll {
                self.poll_links();
                self.poll_seq_adj();
                next_poll = Instant::now() + poll.unwrap_or_default();
            }
            if captures.is_some() && Instant::now() >= next_capture {
                if let Err(e) = self.resync_scopes(&[Scope::Captures]) {
                    warn!("capture filter poll failed: {e}");
                }
                self.flush();
                next_capture = Instant::now() + captures.unwrap_or_default();
            }
            let event = if self.pending.is_empty() && self.reconcile.is_empty() {
                let wait = next_poll
                    .min(next_capture)
                    .min(next_xt)
                    .saturating_duration_since(Instant::now());
                select! {
                    recv(net_rx) -> e => e.ok(),
                    recv(ctl_rx) -> e => e.ok(),
                    default(wait) => continue,
                }
            } else {
                // Work is waiting: take what is already there, else do it.
                match ctl_rx.try_recv().or_else(|_| net_rx.try_recv()) {
                    Ok(e) => Some(e),
                    Err(_) => {
                        self.idle();
                        continue;
                    }
                }
            };
            let Some(event) = event else { return };
            match event {
                Event::Netlink(buf) => self.on_netlink(&buf, Source::Listener),
                Event::Xfrm(buf) => self.on_xfrm(&buf, Source::Listener),
                Event::Netfilter(buf) => self.on_netfilter(&buf),
                Event::Audit(buf) => self.on_audit(&buf),
                Event::AuditFailed(e) => {
                    warn!("audit listener stopped: {e}; legacy iptables tables will be polled");
                    self.xt_watch.listening = false;
                    self.watch_xtables(true);
                }
                Event::Overrun => {
                    self.sync.overruns += 1;
                    self.state = SyncState::Resyncing;
                    if let Err(e) = self.full_resync() {
                        error!("resync failed: {e}; retrying at the next event");
                        self.reconcile
                            .extend(Scope::ALL.iter().map(|s| scope_ord(*s)));
                    }
                    self.sync.resyncs += 1;
                    self.state = SyncState::Synced;
                }
                Event::ListenerFailed(e) => {
                    error!("netlink listener failed: {e}");
                    return;
                }
                Event::Blade(e) => self.on_blade(e),
                Event::Console { line, reply } => {
                    let _ = reply.send(crate::console::answer(self, &line));
                }
                Event::Replay { xfrm, bytes, reply } => {
                    let _ = reply.send(crate::console::replayed(self, xfrm, &bytes));
                }
                Event::Shutdown => return,
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
            if self
                .reconcile_since
                .is_some_and(|t| t.elapsed() >= RECONCILE_DELAY)
            {
                self.run_reconcile();
            }
        }
    }

    /// The kernel announces a link's kind-specific changes (`ip link set
    /// ... type macvlan mode ...`), its master and a bridge port's state
    /// only while the link is up (netdev_state_change checks IFF_UP), and
    /// recomputes a bridge's MAC without telling: links and bridge ports
    /// are re-dumped periodically, and what changed is counted. So are
    /// multicast VIFs and MIFs, never announced at all.
    fn poll_links(&mut self) {
        let before = self.pending.len();
        if let Err(e) = self.resync_scopes(&[Scope::Links, Scope::BridgePorts]) {
            warn!("link poll failed: {e}");
            return;
        }
        let found = self.pending.len().saturating_sub(before);
        if found > 0 {
            self.sync.silent_changes += found as u64;
            debug!(found, "link poll found changes the kernel did not announce");
            self.flush();
        }
        self.reread_vifs(&[RTNL_FAMILY_IPMR, RTNL_FAMILY_IP6MR]);
    }

    /// Re-reads the VIFs and MIFs of `families` (RTNL_FAMILY_IPMR, IP6MR;
    /// the kernel announces none of their changes, see [`crate::mvif`])
    /// and, where they changed, the family's MFC entries, which the kernel
    /// dumps with existing VIFs only. What it finds is a silent change.
    fn reread_vifs(&mut self, families: &[u8]) {
        let mut found = 0;
        for &f in families {
            let res = self
                .resync_scopes(&[Scope::MrouteVifs(f)])
                .and_then(|n| match n {
                    0 => Ok(0),
                    n => Ok(n + self.resync_scopes(&[Scope::Mroutes(f)])?),
                });
            match res {
                Ok(n) => found += n,
                Err(e) => {
                    warn!("multicast VIF re-read failed: {e}; retrying");
                    self.schedule(&[Scope::MrouteVifs(f)]);
                }
            }
        }
        if found > 0 {
            self.sync.silent_changes += found as u64;
            debug!(
                found,
                "VIF re-read found changes the kernel did not announce"
            );
            self.flush();
        }
    }

    /// Schedules a VIF (`ipv4`) or MIF re-read, when multicast is synced.
    fn schedule_vifs(&mut self, ipv4: bool) {
        if self.config.features.enabled(crate::features::MCAST) {
            self.schedule(&[Scope::MrouteVifs(if ipv4 {
                RTNL_FAMILY_IPMR
            } else {
                RTNL_FAMILY_IP6MR
            })]);
        }
    }

    /// Audit records: every x_tables one (the kernel does not say of which
    /// namespace) has this namespace's legacy tables read again.
    fn on_audit(&mut self, buf: &[u8]) {
        let mut xt = false;
        for msg in Messages::new(buf) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!("malformed audit datagram: {e}");
                    break;
                }
            };
            self.audit_listen_stats.count(msg.kind);
            xt |= netlink::audit::netfilter_cfg(&msg).is_some_and(|c| c.is_xtables());
        }
        if xt {
            self.read_xtables();
        }
    }

    fn read_xtables(&mut self) -> usize {
        let before = self.pending.len();
        if let Err(e) = self.resync_scopes(&[Scope::XtChains, Scope::XtRules]) {
            warn!("reading the legacy iptables tables failed: {e}");
        }
        let changed = self.pending.len().saturating_sub(before);
        self.flush();
        changed
    }

    /// Looks at the audit status: while it is enabled (and cmgrd hears the
    /// records) changes arrive as AUDIT_NETFILTER_CFG; otherwise the tables
    /// are read on each tick (`poll`), and what changed is counted as
    /// silent. Switching to records reads the tables once more, for what
    /// changed since the last poll.
    fn watch_xtables(&mut self, poll: bool) {
        if !self.config.features.enabled(crate::features::FILTER) {
            return; // a switched-off feature reads nothing
        }
        let w = &mut self.xt_watch;
        let status = match (&mut w.status, w.listening) {
            (_, false) => Err("cmgrd hears no audit records".to_owned()),
            (None, true) => Err("the audit status cannot be read".to_owned()),
            (Some(s), true) => match s.enabled() {
                Ok(true) => Ok(()),
                Ok(false) => Err("audit is disabled (auditctl -e 0)".to_owned()),
                Err(e) => Err(format!("the audit status cannot be read: {e}")),
            },
        };
        match status {
            Ok(()) => {
                if !w.events {
                    w.events = true;
                    w.warned = None;
                    info!("legacy iptables changes arrive as AUDIT_NETFILTER_CFG records");
                    if poll {
                        self.read_xtables();
                    }
                }
            }
            Err(why) => {
                w.events = false;
                if w.warned.as_ref() != Some(&why) {
                    warn!("{why}: legacy iptables tables are polled");
                    w.warned = Some(why);
                }
                if poll {
                    let found = self.read_xtables();
                    if found > 0 {
                        self.sync.silent_changes += found as u64;
                        debug!(found, "legacy table poll found changes");
                    }
                }
            }
        }
    }

    /// How legacy iptables changes are found now: `audit` (records) or
    /// `poll`.
    pub fn xtables_watch(&self) -> &'static str {
        if self.xt_watch.events {
            "audit"
        } else {
            "poll"
        }
    }

    /// Nothing is waiting: send what is pending, recover silent deletions.
    fn idle(&mut self) {
        self.flush();
        if !self.reconcile.is_empty() {
            self.run_reconcile();
            self.flush();
        }
    }

    /// Feeds messages captured elsewhere (a file of netlink messages, as
    /// the kernel sends them) through the same decoder and sync path as
    /// the listener's. Returns how many messages there were.
    pub fn replay_netlink(&mut self, buf: &[u8]) -> usize {
        let before = self.replay_stats.packets;
        self.on_netlink(buf, Source::Replay);
        self.flush();
        (self.replay_stats.packets - before) as usize
    }

    fn on_netlink(&mut self, buf: &[u8], source: Source) {
        for msg in Messages::new(buf) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!("malformed netlink datagram: {e}");
                    break;
                }
            };
            match source {
                Source::Listener => self.listen_stats.count(msg.kind),
                Source::Replay => self.replay_stats.count(msg.kind),
            }
            if let Some(af) = netlink::mvif::mc_forwarding_news(msg.kind, msg.payload) {
                self.schedule_vifs(af == AF_INET);
            }
            let event = netlink::decode(&msg);
            trace!(kind = msg.kind, ?event, payload = ?msg.payload, "netlink message");
            match event {
                Ok(NlEvent::New(obj)) if self.config.features.syncs(&obj) => {
                    self.watch_silent_changes(&obj);
                    self.watch_replaced(&obj, msg.flags);
                    self.pending.extend(self.cache.upsert(obj));
                }
                // A switched-off feature sends nothing.
                Ok(NlEvent::New(_)) => {}
                Ok(NlEvent::Del(key)) => {
                    self.watch_silent_deletions_del(&key);
                    self.pending.extend(self.cache.remove(&key));
                }
                Ok(NlEvent::DelRoute(route)) => {
                    self.pending.extend(self.cache.remove_route(route));
                }
                Ok(NlEvent::NetConfChange(news)) => self.netconf_change(news),
                Ok(NlEvent::NewRule(spec)) => self.on_rule(spec, true),
                Ok(NlEvent::DelRule(spec)) => self.on_rule(spec, false),
                Ok(NlEvent::Ignored | NlEvent::Unknown) => {}
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!(kind = msg.kind, "malformed netlink message: {e}");
                }
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
    }

    /// A netconf news of one value. The kernel sends only the attribute
    /// that changed, so it is merged into the cached object (the other
    /// values stay); see [`netlink::netconf`] for what it announces.
    fn netconf_change(&mut self, news: fastpath::fpc::NetConf) {
        let family = news.family;
        if !self.config.features.syncs(&Object::NetConf(news.clone())) {
            return; // a switched-off feature sends nothing
        }
        // IPv4 copies some `default` values into every device that never
        // had them written, and announces `default` only; IPv6 sets
        // `default` with some `all` values, unannounced: re-dumped.
        if netlink::netconf::implies_unannounced_changes(&news) {
            self.schedule(&[Scope::NetConfs(family)]);
        }
        match self.cache.get(&ObjectKey::NetConf(news.key())) {
            Some(Object::NetConf(cached)) => {
                let merged = Object::NetConf(cached.merged(&news));
                self.pending.extend(self.cache.upsert(merged));
            }
            // A change of something never announced whole (its
            // announcement was lost): the family is dumped again.
            _ => {
                debug!(?news, "netconf change of an unknown device: re-dumping");
                self.schedule(&[Scope::NetConfs(family)]);
            }
        }
    }

    /// Re-dumps the netconf of `families` (AF_INET, AF_INET6); what it
    /// finds the kernel changed without telling.
    fn redump_netconfs(&mut self, families: &[u8]) {
        let mut found = 0;
        for &f in families {
            match self.resync_scopes(&[Scope::NetConfs(f)]) {
                Ok(n) => found += n,
                Err(e) => {
                    warn!("netconf re-dump failed: {e}; retrying");
                    self.schedule(&[Scope::NetConfs(f)]);
                }
            }
        }
        if found > 0 {
            self.sync.silent_changes += found as u64;
            debug!(
                found,
                "netconf re-dump found changes the kernel did not announce"
            );
            self.flush();
        }
    }

    /// A rule added or deleted: the kernel's list changes as the kernel
    /// changes it (see `netlink::rule::RuleList`), and the family's rules
    /// are renumbered from it; only what moved is sent. Then the family
    /// is re-dumped (see below).
    fn on_rule(&mut self, spec: fastpath::fpc::RuleSpec, new: bool) {
        let family = spec.family;
        let probe = Object::Rule(Box::new(fastpath::fpc::Rule {
            spec,
            nth: 0,
            position: 0,
        }));
        if !self.config.features.syncs(&probe) {
            return;
        }
        let Object::Rule(probe) = probe else {
            unreachable!("made above")
        };
        let mut list = RuleList::from_objects(self.cache.objects(ObjectKind::Rule).filter_map(
            |o| match o {
                Object::Rule(r) if r.spec.family == family => Some(&**r),
                _ => None,
            },
        ));
        if new {
            list.insert(probe.spec);
        } else if !list.remove(&probe.spec) {
            return; // not synced (it came before a resync that had it gone)
        }
        let ops = self.cache.reconcile(Scope::Rules(family), list.objects());
        self.pending.extend(ops);
        // Adding is not idempotent: a notification read after a dump that
        // already listed its rule (the listener opens before the dump at
        // start and on overruns) would add a second copy. A re-dump of the
        // family, coalesced and run once the queue is drained, settles it.
        self.schedule(&[Scope::Rules(family)]);
    }

    /// ctnetlink events: conntrack entries created, updated, destroyed.
    fn on_netfilter(&mut self, buf: &[u8]) {
        for msg in Messages::new(buf) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!("malformed netfilter datagram: {e}");
                    break;
                }
            };
            self.ct_listen_stats.count(msg.kind);
            if matches!(
                msg.kind,
                netlink::nftables::NFT_MSG_NEWSETELEM | netlink::nftables::NFT_MSG_DELSETELEM
            ) {
                self.on_set_elements(&msg);
                if self.pending.len() >= BATCH {
                    self.flush();
                }
                continue;
            }
            let event = if msg.kind >> 8 == netlink::nftables::NFNL_SUBSYS_NFTABLES {
                netlink::nftables::decode(&msg)
            } else {
                netlink::conntrack::decode(&msg)
            };
            match event {
                Ok(NlEvent::New(obj)) if self.config.features.syncs(&obj) => {
                    let obj = self.conntrack_event(msg.pid, obj);
                    self.pending.extend(self.cache.upsert(obj));
                }
                Ok(NlEvent::Del(key)) => {
                    self.remove_nft_contents(&key);
                    self.pending.extend(self.cache.remove(&key));
                }
                Ok(_) => {}
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!(kind = msg.kind, "malformed ctnetlink message: {e}");
                }
            }
            if matches!(
                msg.kind,
                netlink::nftables::NFT_MSG_NEWRULE | netlink::nftables::NFT_MSG_DELRULE
            ) {
                // A notified rule's place is unknown, and a delete moves
                // its successor: a coalesced re-dump gives every place.
                self.schedule(&[Scope::NftRules]);
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
    }

    /// Set elements added or deleted (one per notification, as the kernel
    /// sends them; a message without any, which no kernel path sends
    /// today, re-dumps every set's elements rather than guess).
    fn on_set_elements(&mut self, msg: &netlink::NlMsg<'_>) {
        let elems = match netlink::nftables::decode_elements(msg) {
            Ok(elems) => elems,
            Err(e) => {
                self.sync.decode_errors += 1;
                warn!(
                    kind = msg.kind,
                    "malformed nf_tables set element message: {e}"
                );
                self.schedule(&[Scope::NftSetElems]);
                return;
            }
        };
        if elems.is_empty() {
            self.schedule(&[Scope::NftSetElems]);
        }
        let new = msg.kind == netlink::nftables::NFT_MSG_NEWSETELEM;
        for e in elems {
            let set = ObjectKey::NftSet {
                family: e.family,
                table: e.table.clone(),
                name: e.set.clone(),
            };
            if matches!(self.cache.get(&set), Some(Object::NftSet(s)) if !s.elements_synced()) {
                continue;
            }
            let obj = Object::NftSetElem(e);
            if !self.config.features.syncs(&obj) {
                continue;
            }
            if new {
                self.pending.extend(self.cache.upsert(obj));
            } else {
                self.pending.extend(self.cache.remove(&obj.key()));
            }
        }
    }

    /// A deleted nf_tables table or chain takes its chains and rules along
    /// (announced one by one too; this makes sure, and deletes them first);
    /// a table its sets, and a set its elements (the kernel announces only
    /// the set's deletion).
    fn remove_nft_contents(&mut self, key: &ObjectKey) {
        if let ObjectKey::NftSet {
            family,
            table,
            name,
        } = key
        {
            let elems = self.cache.remove_where(ObjectKind::NftSetElem, |o| {
                matches!(o, Object::NftSetElem(e) if e.family == *family && e.table == *table
                    && e.set == *name)
            });
            self.pending.extend(elems);
            return;
        }
        let (family, table, chain) = match key {
            ObjectKey::NftTable { family, name } => (*family, name.clone(), None),
            ObjectKey::NftChain {
                family,
                table,
                name,
            } => (*family, table.clone(), Some(name.clone())),
            _ => return,
        };
        let rules = self.cache.remove_where(ObjectKind::NftRule, |o| {
            matches!(o, Object::NftRule(r) if r.family == family && r.table == table
                && chain.as_ref().is_none_or(|c| *c == r.chain))
        });
        self.pending.extend(rules);
        if chain.is_none() {
            let elems = self.cache.remove_where(
                ObjectKind::NftSetElem,
                |o| matches!(o, Object::NftSetElem(e) if e.family == family && e.table == table),
            );
            self.pending.extend(elems);
            let sets = self.cache.remove_where(
                ObjectKind::NftSet,
                |o| matches!(o, Object::NftSet(s) if s.family == family && s.table == table),
            );
            self.pending.extend(sets);
            let chains = self.cache.remove_where(
                ObjectKind::NftChain,
                |o| matches!(o, Object::NftChain(c) if c.family == family && c.table == table),
            );
            self.pending.extend(chains);
        }
    }

    /// Feeds captured XFRM messages (byte fixtures: this kernel has no
    /// ESP) through the XFRM sync path. Returns how many there were.
    pub fn replay_xfrm(&mut self, buf: &[u8]) -> usize {
        let before = self.xfrm_replay_stats.packets;
        self.on_xfrm(buf, Source::Replay);
        self.flush();
        (self.xfrm_replay_stats.packets - before) as usize
    }

    fn on_xfrm(&mut self, buf: &[u8], source: Source) {
        for msg in Messages::new(buf) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!("malformed xfrm datagram: {e}");
                    break;
                }
            };
            match source {
                Source::Listener => self.xfrm_listen_stats.count(msg.kind),
                Source::Replay => self.xfrm_replay_stats.count(msg.kind),
            }
            let event = xfrm::decode(&msg);
            trace!(kind = msg.kind, ?event, "xfrm message");
            match event {
                Ok(e) if self.config.features.enabled(crate::features::IPSEC) => self.apply_xfrm(e),
                Ok(_) => {} // a switched-off feature sends nothing
                Err(e) => {
                    self.sync.decode_errors += 1;
                    warn!(kind = msg.kind, "malformed xfrm message: {e}");
                }
            }
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
    }

    /// What one XFRM event changes in the cache. An SA's replay state
    /// lives and dies with it; a NEWAE for an SA not cached is dropped.
    fn apply_xfrm(&mut self, event: XfrmEvent) {
        match event {
            XfrmEvent::Sa(sa, replay) => {
                self.pending.extend(self.cache.upsert(Object::XfrmSa(sa)));
                if let Some(r) = replay {
                    self.pending
                        .extend(self.cache.upsert(Object::XfrmReplay(r)));
                }
            }
            XfrmEvent::DelSa(key) => {
                self.pending
                    .extend(self.cache.remove(&ObjectKey::XfrmReplay(key)));
                self.pending
                    .extend(self.cache.remove(&ObjectKey::XfrmSa(key)));
            }
            XfrmEvent::Replay(r) => {
                if self.cache.get(&ObjectKey::XfrmSa(r.key())).is_some() {
                    self.pending
                        .extend(self.cache.upsert(Object::XfrmReplay(r)));
                }
            }
            XfrmEvent::Sp(sp) => self.pending.extend(self.cache.upsert(Object::XfrmSp(sp))),
            XfrmEvent::DelSp(key) => self
                .pending
                .extend(self.cache.remove(&ObjectKey::XfrmSp(key))),
            XfrmEvent::FlushSa { proto } => {
                for kind in [ObjectKind::XfrmReplay, ObjectKind::XfrmSa] {
                    let ops = self.cache.remove_where(kind, |o| match o {
                        Object::XfrmSa(sa) => xfrm::flush_matches(proto, sa.proto),
                        Object::XfrmReplay(r) => xfrm::flush_matches(proto, r.proto),
                        _ => false,
                    });
                    self.pending.extend(ops);
                }
            }
            XfrmEvent::FlushSp { ptype } => {
                let ops = self.cache.remove_where(
                    ObjectKind::XfrmSp,
                    |o| matches!(o, Object::XfrmSp(sp) if sp.ptype == ptype),
                );
                self.pending.extend(ops);
            }
            XfrmEvent::Migrate {
                sel,
                dir,
                ptype,
                moves,
            } => {
                let ops = crate::migrate::apply(&mut self.cache, &sel, dir, ptype, &moves);
                self.sync.migrations += 1;
                self.pending.extend(ops);
            }
            XfrmEvent::Ignored | XfrmEvent::Unknown => {}
        }
    }

    /// Switches IPsec HA for one blade, live: enabling sends it every SA's
    /// current sequence numbers at once, disabling withdraws them (a
    /// blade without HA holds no sequence numbers that would go stale).
    pub fn set_ipsec_ha(&mut self, blade: u32, enable: bool) {
        let was = self.ipsec_ha.insert(blade, enable).unwrap_or(false);
        if was == enable {
            return;
        }
        self.flush(); // what is pending predates the switch
        let op = if enable { Op::Add } else { Op::Delete };
        let ops: Vec<(Op, Object)> = self
            .cache
            .objects(ObjectKind::XfrmReplay)
            .map(|o| (op, o.clone()))
            .collect();
        let Some(link) = self.blades.iter_mut().find(|l| l.blade == blade) else {
            return;
        };
        let LinkState::Up { conn } = link.state else {
            return; // its replay on connection will follow the new setting
        };
        if !ops.is_empty() {
            send(link, conn, &Message::Batch(ops), &mut Vec::new());
        }
    }

    fn schedule(&mut self, scopes: &[Scope]) {
        self.reconcile.extend(scopes.iter().map(|s| scope_ord(*s)));
        self.reconcile_since.get_or_insert_with(Instant::now);
    }

    /// Changes the kernel makes without telling, that follow a link's news:
    /// * IPv4 routes (and nexthop objects) are deleted without RTM_DELROUTE
    ///   when their link goes down, administratively or by carrier loss;
    /// * the first end of a new veth pair is announced before its peer
    ///   exists (IFLA_LINK 0), and gets its peer's index silently.
    ///
    /// Each schedules a re-dump of what may have changed.
    fn watch_silent_changes(&mut self, obj: &Object) {
        // MFC news name VIFs, which come and go unannounced.
        if let Object::Mroute(m) = obj {
            self.schedule_vifs(m.group.is_ipv4());
        }
        let Object::Link(new) = obj else { return };
        const IFF_UP: u32 = 1;
        // The kernel reports IFF_LOWER_UP (carrier) only while IFF_UP.
        const IFF_LOWER_UP: u32 = 0x1_0000;
        let old = self.cache.get(&ObjectKey::Link(new.ifindex));
        let new_veth = old.is_none() && new.kind == "veth";
        // Carrier loss with the link left up (its veth peer down, a cable
        // pulled; NETDEV_CHANGE) flushes like admin down, also silently:
        // nexthop_flush_dev deletes the nexthop objects on the link (both
        // families) and shrinks their groups, which deletes the IPv4
        // routes using them (an IPv6 route's deletion is announced);
        // fib_sync_down_dev only marks other routes linkdown, which is not
        // synced. Its non-permanent neighbours go with RTM_DELNEIGH.
        //
        // Judged on the link's state, not on a change from the cached one:
        // the link poll's dump may have cached the new flags before the
        // announcement (queued behind the listener) is processed. Both
        // flushes run before their announcement (linkwatch's carrier
        // change is a notifier call, then RTM_NEWLINK), so a re-dump it
        // schedules finds them done.
        let carrier_lost = new.flags & IFF_UP != 0 && new.flags & IFF_LOWER_UP == 0;
        // A port's or a bridge's MAC change re-points the bridge's local
        // FDB entries without telling (br_fdb_changeaddr).
        let mac_moved = matches!(old, Some(Object::Link(old)) if old.mac != new.mac)
            && (new.master != 0 || new.kind == "bridge");
        if new_veth {
            self.schedule(&[Scope::Links]);
        }
        if mac_moved {
            self.schedule(&[Scope::Fdb]);
        }
        let went_down = new.flags & IFF_UP == 0 || carrier_lost;
        if went_down && self.cache.routes_depend_on(new.ifindex, None) {
            debug!(
                ifindex = new.ifindex,
                carrier_lost, "link down: re-dumping routes and nexthops"
            );
            self.schedule(&[
                Scope::Nexthops,
                Scope::Routes(AF_INET),
                Scope::Routes(AF_INET6),
            ]);
        }
    }

    /// `ip -6 route replace` may replace a route of another identity (IPv6
    /// keys apart a gateway route, a device route and a nexthop-object
    /// route of one prefix and metric): the kernel's RTM_NEWROUTE carries
    /// NLM_F_REPLACE and the route that came, not the one that went. A
    /// replacement whose route is not cached under its own key replaced
    /// another: the IPv6 routes are re-dumped.
    fn watch_replaced(&mut self, obj: &Object, nlmsg_flags: u16) {
        const NLM_F_REPLACE: u16 = 0x100;
        if let Object::Route(r) = obj {
            if nlmsg_flags & NLM_F_REPLACE != 0
                && r.dst.is_ipv6()
                && !self.cache.contains(&obj.key())
            {
                self.schedule(&[Scope::Routes(AF_INET6)]);
            }
        }
    }

    /// Deleting a link, an IPv4 address or a nexthop object also deletes,
    /// without a notification, the routes (and nexthops) that used it; a
    /// link's deletion also its VIFs and MIFs (ipmr_device_event).
    fn watch_silent_deletions_del(&mut self, key: &ObjectKey) {
        match key {
            ObjectKey::Mroute(m) => self.schedule_vifs(m.group.is_ipv4()),
            ObjectKey::Link(ifindex) => {
                let on = |o: &Object| matches!(o, Object::MrouteVif(v) if v.ifindex == *ifindex);
                if self.cache.objects(ObjectKind::MrouteVif).any(on) {
                    self.schedule_vifs(true);
                    self.schedule_vifs(false);
                }
                if self.cache.routes_depend_on(*ifindex, None) {
                    self.schedule(&[
                        Scope::Nexthops,
                        Scope::Routes(AF_INET),
                        Scope::Routes(AF_INET6),
                    ]);
                }
                // Its qdiscs go with it, unannounced.
                self.schedule(&[
                    Scope::Addrs,
                    Scope::Neighs(AF_INET),
                    Scope::Neighs(AF_INET6),
                    Scope::BridgePorts,
                    Scope::Fdb,
                    Scope::Qdiscs,
                ]);
            }
            ObjectKey::Addr {
                ifindex,
                addr: addr @ IpAddr::V4(_),
                ..
            } if self.cache.routes_depend_on(*ifindex, Some(*addr)) => {
                self.schedule(&[Scope::Routes(AF_INET)]);
            }
            // A port leaving its bridge: its local FDB entry may be
            // re-pointed to the bridge itself, silently (fdb_delete_local).
            ObjectKey::BridgePort(_) => self.schedule(&[Scope::Fdb]),
            ObjectKey::Nexthop(id) => {
                if self.cache.routes_use_nexthop(*id) {
                    self.schedule(&[Scope::Routes(AF_INET), Scope::Routes(AF_INET6)]);
                }
                self.schedule(&[Scope::Nexthops]);
            }
            _ => {}
        }
    }

    fn run_reconcile(&mut self) {
        let (vifs, scopes): (Vec<Scope>, Vec<Scope>) = std::mem::take(&mut self.reconcile)
            .into_iter()
            .map(|s| Scope::ALL[s.0])
            .partition(|s| matches!(s, Scope::MrouteVifs(_)));
        let (netconfs, scopes): (Vec<Scope>, Vec<Scope>) = scopes
            .into_iter()
            .partition(|s| matches!(s, Scope::NetConfs(_)));
        self.reconcile_since = None;
        self.sync.reconciles += 1;
        // Netconf re-dumps, too, count what they find as silent changes.
        let families: Vec<u8> = netconfs
            .iter()
            .filter_map(|s| match s {
                Scope::NetConfs(f) => Some(*f),
                _ => None,
            })
            .collect();
        self.redump_netconfs(&families);
        // VIF re-reads count what they find themselves (silent changes).
        let families: Vec<u8> = vifs
            .iter()
            .filter_map(|s| match s {
                Scope::MrouteVifs(f) => Some(*f),
                _ => None,
            })
            .collect();
        self.reread_vifs(&families);
        let before = self.pending.len();
        let t0 = Instant::now();
        let res = self.resync_scopes(&scopes);
        debug!(
            ?scopes,
            elapsed_us = t0.elapsed().as_micros() as u64,
            "re-dumped"
        );
        if let Err(e) = res {
            warn!("re-dump failed: {e}; retrying");
            self.schedule(&scopes);
        }
        let deleted = self.pending[before..]
            .iter()
            .filter(|(op, _)| *op == Op::Delete)
            .count();
        self.sync.silent_deletions += deleted as u64;
        if deleted > 0 {
            debug!(
                deleted,
                "re-dump found objects deleted without notification"
            );
        }
    }

    /// Dumps every scope and makes the cache (and so the blades) equal to it.
    fn full_resync(&mut self) -> Result<(), SocketError> {
        self.resync_scopes(&Scope::ALL).map(drop)
    }

    /// Dumps `scopes` and reconciles the cache with them; how many ops
    /// that made.
    fn resync_scopes(&mut self, scopes: &[Scope]) -> Result<usize, SocketError> {
        let mut changes = 0;
        for scope in scopes {
            let mut fresh = match dump_scope(
                &mut self.cmd,
                *scope,
                &self.config.features,
                &mut self.cmd_stats,
                &mut self.xfrm_cmd_stats,
                &mut self.ct_cmd_stats,
                &mut self.sync,
            ) {
                Ok(fresh) => fresh,
                // A legacy table that cannot be read or decoded leaves the
                // cache as it was (and cmgrd running): said, counted.
                Err(SocketError::Io(e)) if matches!(scope, Scope::XtChains | Scope::XtRules) => {
                    warn!("legacy iptables tables not read: {e}");
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.sync.decode_errors += 1;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if *scope == Scope::Conntracks {
                self.complete_dumped_conntracks(&mut fresh);
            }
            let ops = self.cache.reconcile(*scope, fresh);
            changes += ops.len();
            self.pending.extend(ops);
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
        Ok(changes)
    }

    fn on_blade(&mut self, event: BladeEvent) {
        match event {
            BladeEvent::Up { blade, conn } => {
                self.flush(); // pending ops predate this connection's replay
                let link = &mut self.blades[blade];
                link.state = LinkState::Up { conn };
                link.seq = 0;
                link.recovering = false;
                self.replay(blade);
            }
            BladeEvent::Down { blade, conn } => {
                let link = &mut self.blades[blade];
                if matches!(link.state, LinkState::Up { conn: c } | LinkState::Overflowed { conn: c } if c == conn)
                {
                    link.state = LinkState::Down;
                    link.recovering = false;
                }
            }
            BladeEvent::Drained { .. } => self.check_overflowed(),
        }
    }

    /// The instance's SyncState: `resyncing` also while a blade whose
    /// queue overflowed waits for (or has not yet acked) its replay.
    pub fn sync_state(&self) -> SyncState {
        if self.state == SyncState::Synced && self.blades.iter().any(BladeLink::recovering) {
            SyncState::Resyncing
        } else {
            self.state
        }
    }

    /// Queues SyncBegin, the whole cache and SyncEnd for one blade.
    fn replay(&mut self, index: usize) {
        self.generation = self.generation.max(now_ns()) + 1;
        let generation = self.generation;
        let ha = self.ipsec_ha.get(&self.blades[index].blade) == Some(&true);
        let wanted = |o: &std::borrow::Cow<Object>| ha || !matches!(**o, Object::XfrmReplay(_));
        let link = &mut self.blades[index];
        let LinkState::Up { conn } = link.state else {
            return;
        };
        link.stats.replays.fetch_add(1, Relaxed);
        info!(
            blade = link.blade,
            generation,
            objects = self.cache.total()
                - if ha {
                    0
                } else {
                    self.cache.len(ObjectKind::XfrmReplay)
                },
            "replaying the cache"
        );
        let mut frames = Vec::new();
        let mut bytes = send(link, conn, &Message::SyncBegin { generation }, &mut frames);
        // Cloned a frame at a time, not the whole cache at once first.
        let mut batch = Vec::with_capacity(BATCH);
        for o in self.cache.replay().filter(wanted) {
            batch.push((Op::Add, o.into_owned()));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                bytes += send(link, conn, &Message::Batch(full), &mut frames);
            }
        }
        if !batch.is_empty() {
            bytes += send(link, conn, &Message::Batch(batch), &mut frames);
        }
        // Known before it is sent, so that its ack cannot come first.
        link.stats
            .sync_end_seq
            .store(link.seq + 1, std::sync::atomic::Ordering::SeqCst);
        bytes += send(link, conn, &Message::SyncEnd { generation }, &mut frames);
        link.replay_bytes = bytes;
    }

    /// Sends the pending ops to every blade that is up.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // The next batch gets room for a whole frame: no regrowth copies.
        let ops = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
        // IPsec sequence numbers go only to blades with IPsec HA on.
        let without_ha = ops
            .iter()
            .any(|(_, o)| matches!(o, Object::XfrmReplay(_)))
            .then(|| {
                let rest: Vec<(Op, Object)> = ops
                    .iter()
                    .filter(|(_, o)| !matches!(o, Object::XfrmReplay(_)))
                    .cloned()
                    .collect();
                Message::Batch(rest)
            });
        let msg = Message::Batch(ops);
        let mut overflowed = Vec::new();
        for (index, link) in self.blades.iter_mut().enumerate() {
            let LinkState::Up { conn } = link.state else {
                trace!(blade = link.blade, state = ?link.state, "blade not up: its replay will carry these ops");
                continue;
            };
            trace!(blade = link.blade, conn, "sending a batch");
            let mut frame = Vec::new();
            let msg = match &without_ha {
                Some(m) if self.ipsec_ha.get(&link.blade) != Some(&true) => {
                    if matches!(m, Message::Batch(b) if b.is_empty()) {
                        continue;
                    }
                    m
                }
                _ => &msg,
            };
            send(link, conn, msg, &mut frame);
            // Until its replay is acked, a blade may hold that replay on
            // top of the limit: a replay larger than --max-queue is not
            // abandoned by the next change (and replayed again, forever).
            let allowance = match link.stats.in_sync.load(Relaxed) {
                0 => link.replay_bytes,
                _ => 0,
            };
            if link.stats.in_queue_bytes.load(Relaxed)
                > (self.config.max_queue as u64).saturating_add(allowance)
            {
                overflowed.push(index);
            }
        }
        for index in overflowed {
            self.overflow(index);
        }
        self.check_overflowed();
    }

    /// A blade too slow to keep up: its queue is abandoned (its connection
    /// drops whatever was queued) and it gets a replay once drained.
    fn overflow(&mut self, index: usize) {
        let link = &mut self.blades[index];
        if let LinkState::Up { conn } = link.state {
            warn!(
                blade = link.blade,
                "fast path queue passed its limit; will resync it"
            );
            link.stats.overflows.fetch_add(1, Relaxed);
            link.stats.lost_sync();
            link.recovering = true;
            link.state = LinkState::Overflowed { conn };
        }
    }

    /// Replays each overflowed blade whose queue has drained. Called after
    /// every flush and on `BladeEvent::Drained`, which the writer sends
    /// when an overflowed queue empties: the replay starts on a quiet
    /// system too, with no later change to carry it.
    fn check_overflowed(&mut self) {
        for index in 0..self.blades.len() {
            let link = &mut self.blades[index];
            if let LinkState::Overflowed { conn } = link.state {
                if link.stats.want_drain() {
                    link.state = LinkState::Up { conn };
                    self.replay(index);
                }
            }
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Linux's own counters of every link, by ifindex (a link dump).
    pub fn linux_link_stats(&mut self) -> std::collections::BTreeMap<u32, (String, [u64; 6])> {
        let mut out = std::collections::BTreeMap::new();
        let res = self.cmd.route.dump(wire::RTM_GETLINK, 0, |msg| match msg {
            None => out.clear(),
            Some(m) => {
                if let Ok(Some((ifindex, name, stats))) = wire::decode_link_stats(m.payload) {
                    out.insert(ifindex, (name, stats));
                }
            }
        });
        if let Err(e) = res {
            warn!("link statistics dump failed: {e}");
        }
        out
    }
}

/// Encodes `msg` with the blade's next sequence number and queues it;
/// returns its size in bytes.
fn send(link: &mut BladeLink, conn: u64, msg: &Message, buf: &mut Vec<u8>) -> u64 {
    link.seq += 1;
    buf.clear();
    msg.emit(link.seq, buf);
    let bytes = std::mem::take(buf);
    link.stats.enqueued(1, bytes.len() as u64);
    let len = bytes.len() as u64;
    if link
        .tx
        .send(Outgoing {
            conn,
            bytes,
            frames: 1,
        })
        .is_err()
    {
        let _ = link.stats.dequeued(1, len);
    }
    len
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
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
    if matches!(scope, Scope::XfrmSas | Scope::XfrmReplays | Scope::XfrmSps) {
        return dump_xfrm(&mut socks.xfrm, scope, features, xfrm_stats, sync);
    }
    if scope == Scope::Captures {
        return dump_captures(&mut socks.sock_diag, features, ct_stats);
    }
    if scope == Scope::Conntracks {
        return dump_conntrack(&mut socks.netfilter, features, ct_stats, sync);
    }
    if matches!(scope, Scope::XtChains | Scope::XtRules) {
        return crate::xtables::dump(scope, features);
    }
    if scope == Scope::NftSetElems {
        return dump_set_elements(&mut socks.netfilter, features, ct_stats, sync);
    }
    if matches!(
        scope,
        Scope::NftTables | Scope::NftChains | Scope::NftSets | Scope::NftRules
    ) {
        return dump_nftables(&mut socks.netfilter, scope, features, ct_stats, sync);
    }
    if let Scope::MrouteVifs(family) = scope {
        return crate::mvif::dump(&mut socks.route, family, features, stats, sync);
    }
    if let Scope::Rules(family) = scope {
        return dump_rules(&mut socks.route, family, features, stats, sync);
    }
    if scope == Scope::Qdiscs {
        return dump_qdiscs(&mut socks.route, stats, sync);
    }
    let sock = &mut socks.route;
    let (kind, family) = match scope {
        Scope::Links => (wire::RTM_GETLINK, 0),
        Scope::Addrs => (wire::RTM_GETADDR, 0),
        Scope::Nexthops => (wire::RTM_GETNEXTHOP, 0),
        Scope::Routes(f) => (wire::RTM_GETROUTE, f),
        Scope::Neighs(f) => (wire::RTM_GETNEIGH, f),
        Scope::BridgePorts => (wire::RTM_GETLINK, wire::AF_BRIDGE),
        Scope::Fdb => (wire::RTM_GETNEIGH, wire::AF_BRIDGE),
        Scope::Mroutes(f) => (wire::RTM_GETROUTE, f),
        Scope::NetConfs(f) => (netlink::netconf::RTM_GETNETCONF, f),
        Scope::XfrmSas
        | Scope::XfrmReplays
        | Scope::XfrmSps
        | Scope::Conntracks
        | Scope::NftTables
        | Scope::NftChains
        | Scope::NftSets
        | Scope::NftSetElems
        | Scope::NftRules
        | Scope::MrouteVifs(_)
        | Scope::Rules(_)
        | Scope::Captures
        | Scope::XtChains
        | Scope::XtRules
        | Scope::Qdiscs => unreachable!("dumped above"),
    };
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
                scope,
                Scope::Nexthops | Scope::Mroutes(_) | Scope::NetConfs(_)
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
    let kind = match scope {
        Scope::XfrmSps => xfrm::XFRM_MSG_GETPOLICY,
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
            match (xfrm::decode(msg), scope) {
                (Ok(XfrmEvent::Sa(sa, _)), Scope::XfrmSas) => out.push(Object::XfrmSa(sa)),
                (Ok(XfrmEvent::Sa(_, Some(r))), Scope::XfrmReplays) => {
                    out.push(Object::XfrmReplay(r))
                }
                (Ok(XfrmEvent::Sp(sp)), Scope::XfrmSps) => out.push(Object::XfrmSp(sp)),
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
    let kind = match scope {
        Scope::NftTables => netlink::nftables::NFT_MSG_GETTABLE,
        Scope::NftChains => netlink::nftables::NFT_MSG_GETCHAIN,
        Scope::NftSets => netlink::nftables::NFT_MSG_GETSET,
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
    let sets = dump_nftables(sock, Scope::NftSets, features, stats, sync)?;
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
