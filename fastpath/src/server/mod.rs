//! The FPC server of one blade: accepts a cache manager (role Sync) and
//! readers (role Query) on one or more endpoints, and applies sync frames to
//! the blade's [`Tables`].
//!
//! Invariants:
//! * A frame is read and decoded whole before anything in it is applied, and
//!   the tables lock is taken once per frame: a bad frame changes nothing,
//!   and a reader never sees half a batch.
//! * Of a blade's sync sessions, one is the primary: the highest election
//!   id (from its Hello, `cmgrd --election-id`); the others are backups.
//!   Only the primary's frames are applied; it is checked under the tables
//!   lock before each frame, so once another session is elected the old
//!   primary applies nothing more: its writes get an `Error` frame
//!   (`NotPrimary`, naming the primary), counted, the connection kept.
//!   The primary changes only to a higher id joining, or when the
//!   primary's connection ends (then the highest live backup); every
//!   session is told its role (`Arbitration`) after its Hello and at each
//!   change, which is counted. A new primary resyncs (SyncBegin ...
//!   SyncEnd, mark and sweep): nothing is flushed meanwhile.
//! * A sync Hello naming another blade is refused, and so is one from
//!   another instance with the election id of a session already there
//!   (two cache managers left at the default 0: "blade 1 is owned by
//!   instance 5"). The same instance replaces its old session (a
//!   restarted cmgrd whose old connection fpd has not yet seen close).
//! * Input never makes fpd panic: any bad frame (undecodable, wrong magic,
//!   oversize, unexpected for the role, or before Hello) is logged with the
//!   peer and the reason, answered with an `Error` frame when possible, and
//!   closes that connection only.
//! * The tables lock is only waited for on blocking threads
//!   (`spawn_blocking`), never on a runtime worker, since a large batch
//!   holds it long. A sync batch of at most [`INLINE_OPS`] ops is applied
//!   on the worker itself when `try_lock` finds the lock free (no thread
//!   handoff for a single change); otherwise it goes to a blocking thread
//!   as any other frame. While a frame applies there, the session reads
//!   and decodes the next one (a batch's routes apart, `fpc::SplitBatch`);
//!   frames still apply one at a time in their order, each acked once
//!   applied, the next not started before the one ahead is done.
//!   Lock order: tables, then the arbiter.
//! * No lock is held across socket I/O. A dump copies the tables under the
//!   lock (their compact form: 9 ms for 100,000 routes) and encodes
//!   and writes from the copy, so a reader that does not read slows only
//!   itself; at most `max_dumps` copies exist at once (the memory bound),
//!   and a peer that takes over `write_timeout` to take one frame is
//!   dropped.
//! * Every peer is bounded (see [`crate::limits`]): connections admitted
//!   at once, time to Hello, a query connection's idle time, the frame a
//!   connection may announce (before Hello and for queries, a small bound;
//!   a body is buffered only up to it, refused at once above it).
//! * When a dataplane is attached, every applied frame tells its view
//!   builder (a thread of its own, which takes the tables lock only to
//!   copy), and the sync session sends the dataplane's reports to its peer
//!   (wanted neighbours every 100 ms, hit flags every 500 ms, statistics
//!   every second) between frames: the connection is split into a reader and a
//!   writer half so that a report never cuts into a frame being read.
//! * A Unix socket file is created at bind (after removing a stale one, never
//!   a live one) and removed when its listener goes, if it is still ours.
//!   Its mode is 0600 (0660 with a group), whatever the umask: it is bound
//!   under umask 0177, so it is never more open, even for a moment.
//!
//! Rooms: this module holds the server's types and state; [`listen`] binds
//! and accepts, [`connection`] says hello and carries frames, [`sync`]
//! applies a cache manager's session, [`query`] answers readers.

mod connection;
mod listen;
mod query;
mod sync;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fpc::{
    Counter, Endpoint, ErrorCode, FrameError, FrameReader, Message, Object, ObjectError, Op,
    Stream, VERSION,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument, Span};

use self::listen::{accept_loop, bind_unix};
use crate::dataplane::DataplaneHandle;
use crate::limits::{Limits, Refusal, Refusals, Register};
use crate::tables::Tables;

/// The largest dump frame (one object more may spill over).
const DUMP_FRAME: usize = 64 * 1024;

/// How long connections get to close when fpd stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the sync peer is told of wanted neighbours.
const REPORT_TICK: Duration = Duration::from_millis(100);

/// Hit flags go every this many ticks (500 ms). A used neighbour whose
/// reachable time runs out goes to DELAY (and is re-probed) only if it was
/// used within `delay_first_probe_time` (5 s by default, 1 s at least in
/// practice), else to STALE: the refresh must come more often than that.
const HIT_REPORT_TICKS: u64 = 5;

/// Statistics go every this many ticks (1 s).
const STATS_REPORT_TICKS: u64 = 10;

/// What the server listens on and says of itself.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub blade: u32,
    pub endpoints: Vec<Endpoint>,
    /// What a peer may hold: connections, time, memory.
    pub limits: Limits,
    /// The group of the Unix sockets (mode 0660); without one, 0600.
    pub socket_group: Option<u32>,
    /// The dataplane fed by the tables, if fpd forwards.
    pub dataplane: Option<DataplaneHandle>,
    /// Mutual TLS on the TCP endpoints (`--tls-cert`, `--tls-key`,
    /// `--tls-ca`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Without TLS, plain TCP on loopback addresses (`--allow-plain-tcp`);
    /// any other TCP endpoint without TLS is refused at bind.
    pub allow_plain_tcp: bool,
}

impl ServerConfig {
    /// The blade's default socket, `/run/fpsync/fpd<blade>.sock`.
    pub fn new(blade: u32) -> Self {
        ServerConfig {
            blade,
            endpoints: vec![Endpoint::for_blade(blade)],
            limits: Limits::default(),
            socket_group: None,
            dataplane: None,
            tls: None,
            allow_plain_tcp: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no endpoint to listen on")]
    NoEndpoint,
    #[error("cannot listen on {endpoint}")]
    Listen {
        endpoint: Endpoint,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {0}: another process listens there")]
    InUse(Endpoint),
    #[error("cannot listen on {0}: the path exists and is not a socket")]
    NotASocket(Endpoint),
    #[error("refusing to listen on {0} without TLS: give --tls-cert, --tls-key and --tls-ca (plain TCP only with --allow-plain-tcp, on a loopback address)")]
    PlainTcp(Endpoint),
}

/// A bound FPC server, ready to run.
pub struct Server {
    listeners: Vec<(Endpoint, Listener)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("blade", &self.shared.blade)
            .field("endpoints", &self.local_endpoints())
            .finish()
    }
}

/// Binds `config`'s endpoints and serves until `shutdown` is cancelled.
pub async fn serve(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await
}

impl Server {
    /// Binds every endpoint (Unix: creates the directory, removes a stale
    /// socket file). Must be called within a tokio runtime.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if config.endpoints.is_empty() {
            return Err(ServerError::NoEndpoint);
        }
        let mut listeners = Vec::new();
        for endpoint in &config.endpoints {
            let listener = match endpoint {
                Endpoint::Unix(path) => bind_unix(endpoint, path, config.socket_group)?,
                Endpoint::Tcp(addr) => {
                    let tls = match &config.tls {
                        Some(tls) => Some(tokio_rustls::TlsAcceptor::from(tls.clone())),
                        None if config.allow_plain_tcp && addr.ip().is_loopback() => None,
                        None => return Err(ServerError::PlainTcp(endpoint.clone())),
                    };
                    let listener =
                        TcpListener::bind(addr)
                            .await
                            .map_err(|source| ServerError::Listen {
                                endpoint: endpoint.clone(),
                                source,
                            })?;
                    Listener::Tcp { listener, tls }
                }
            };
            listeners.push((endpoint.clone(), listener));
        }
        Ok(Server {
            listeners,
            shared: Arc::new(Shared {
                tables: Mutex::new(Tables::new()),
                sync: Mutex::new(Arbiter::default()),
                blade: config.blade,
                limits: config.limits,
                register: Register::new(config.limits.max_connections),
                refusals: Refusals::default(),
                dumps: tokio::sync::Semaphore::new(config.limits.max_dumps.max(1)),
                next_conn: AtomicU64::new(0),
                open: AtomicU64::new(0),
                bad_frames: AtomicU64::new(0),
                version_mismatches: AtomicU64::new(0),
                dataplane: config.dataplane,
            }),
        })
    }

    /// The endpoints as bound (a TCP port 0 resolved to the real port).
    pub fn local_endpoints(&self) -> Vec<Endpoint> {
        self.listeners
            .iter()
            .map(|(endpoint, listener)| match listener {
                Listener::Tcp { listener, .. } => listener
                    .local_addr()
                    .map_or(endpoint.clone(), Endpoint::Tcp),
                Listener::Unix { .. } => endpoint.clone(),
            })
            .collect()
    }

    /// Serves until `shutdown` is cancelled, then closes every connection
    /// and removes the Unix socket files.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let builder = match &self.shared.dataplane {
            Some(dp) => {
                let (dp, shared, span) = (dp.clone(), self.shared.clone(), Span::current());
                let thread = std::thread::Builder::new()
                    .name("fpd-view".into())
                    .spawn(move || span.in_scope(|| dp.build_views(|| shared.tables())));
                match thread {
                    Ok(t) => Some(t),
                    Err(e) => {
                        error!("cannot start the view builder: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let mut loops = JoinSet::new();
        for (endpoint, listener) in self.listeners {
            info!(%endpoint, "listening");
            let shared = self.shared.clone();
            loops
                .spawn(accept_loop(listener, shared, shutdown.clone()).instrument(Span::current()));
        }
        while let Some(done) = loops.join_next().await {
            if let Err(e) = done {
                error!("listener task failed: {e}");
            }
        }
        if let Some(dp) = &self.shared.dataplane {
            dp.close();
        }
        if let Some(t) = builder {
            let _ = t.join();
        }
        info!("stopped");
        Ok(())
    }
}

/// What every connection shares.
struct Shared {
    tables: Mutex<Tables>,
    sync: Mutex<Arbiter>,
    blade: u32,
    limits: Limits,
    /// The admitted connections, for the connection limit.
    register: Register,
    refusals: Refusals,
    /// One permit per dump in progress (each holds a copy of the tables).
    dumps: tokio::sync::Semaphore,
    next_conn: AtomicU64,
    open: AtomicU64,
    bad_frames: AtomicU64,
    version_mismatches: AtomicU64,
    dataplane: Option<DataplaneHandle>,
}

/// One sync session of the blade: the primary or a backup.
struct SyncMember {
    conn: u64,
    /// The cache manager's instance, from its Hello.
    instance: u32,
    election_id: u64,
    /// Cancelled when a restart of the same instance replaces it.
    cancel: CancellationToken,
    /// Arbitration messages for this session's writer.
    tell: tokio::sync::mpsc::UnboundedSender<Message>,
}

/// The blade's sync sessions and which is primary: the highest election
/// id (ids are unique among the sessions of a blade).
#[derive(Default)]
struct Arbiter {
    members: Vec<SyncMember>,
    primary: Option<u64>,
    /// How many times the primary changed to another session.
    changes: u64,
}

impl Arbiter {
    fn primary(&self) -> Option<&SyncMember> {
        self.members.iter().find(|m| Some(m.conn) == self.primary)
    }

    /// Elects the highest election id; when the primary changes, tells
    /// every session (each whether it is the primary), counts it and
    /// returns true.
    fn elect(&mut self) -> bool {
        let best = self
            .members
            .iter()
            .max_by_key(|m| m.election_id)
            .map(|m| m.conn);
        if best == self.primary {
            return false;
        }
        let had = self.primary.is_some();
        self.primary = best;
        let Some(p) = self.primary() else {
            return false;
        };
        let (instance, election_id) = (p.instance, p.election_id);
        if had {
            self.changes += 1;
        }
        info!(
            primary_conn = best,
            primary_instance = instance,
            election_id,
            backups = self.members.len() - 1,
            "a new primary"
        );
        for m in &self.members {
            let _ = m.tell.send(Message::Arbitration {
                primary: Some(m.conn) == best,
                primary_instance: instance,
                primary_election_id: election_id,
            });
        }
        true
    }
}

impl Shared {
    /// Blocks: only on blocking threads.
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held briefly only; may be taken on a runtime worker.
    fn sync(&self) -> MutexGuard<'_, Arbiter> {
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counters(&self) -> Vec<Counter> {
        let mut out = self.tables().counters();
        let (sync, backups, changes, election_id) = {
            let a = self.sync();
            let p = a.primary();
            (
                p.is_some(),
                a.members.len().saturating_sub(usize::from(p.is_some())),
                a.changes,
                p.map_or(0, |p| p.election_id),
            )
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.extend(
            [
                ("sync_connected", u64::from(sync)),
                ("sync_backups", backups as u64),
                ("primary_changes", changes),
                ("primary_election_id", election_id),
                ("connections", load(&self.open)),
                ("max_connections", self.register.max() as u64),
                ("bad_frames", load(&self.bad_frames)),
                ("version_mismatches", load(&self.version_mismatches)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        out.extend(self.refusals.counters());
        if let Some(dp) = &self.dataplane {
            out.extend(dp.0.counters());
        }
        out
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `f` on a blocking thread, in the current span.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, Close> {
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Close::Internal(e.to_string()))
}

/// A Unix socket file that is removed when dropped, if it is still the one
/// this process bound (a newer fpd may have replaced it).
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                warn!(path = %self.path.display(), "cannot remove the socket file: {e}");
            }
        }
    }
}

enum Listener {
    Unix {
        listener: UnixListener,
        /// Dropped after the listener (fields drop in order).
        _file: SocketFile,
    },
    Tcp {
        listener: TcpListener,
        /// The handshake each connection goes through first; None: plain
        /// (loopback, `--allow-plain-tcp`).
        tls: Option<tokio_rustls::TlsAcceptor>,
    },
}

/// An accepted connection, before any handshake.
struct Accepted {
    stream: Box<dyn Stream>,
    peer: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Why a connection ends.
enum Close {
    /// The peer closed between frames.
    Eof,
    Shutdown,
    /// A newer sync session took over.
    Replaced,
    /// Turned away by a limit or a rule (counted and logged rate-limited).
    Refused {
        refusal: Refusal,
        code: ErrorCode,
        reason: String,
    },
    /// The peer's Hello announced this version.
    Version(u16),
    /// Bad input: counted, answered with an Error frame.
    Bad {
        code: ErrorCode,
        reason: String,
    },
    /// Closed to make room for a new connection.
    Evicted,
    /// The peer said goodbye with an Error frame.
    PeerError {
        code: u16,
        message: String,
    },
    Io(io::Error),
    Internal(String),
}

impl Close {
    fn bad(code: ErrorCode, reason: String) -> Close {
        Close::Bad { code, reason }
    }
    fn malformed(reason: String) -> Close {
        Close::bad(ErrorCode::Malformed, reason)
    }
    fn refused(refusal: Refusal, code: ErrorCode, reason: String) -> Close {
        Close::Refused {
            refusal,
            code,
            reason,
        }
    }
}

/// A frame the reader refuses closes the connection.
impl From<FrameError> for Close {
    fn from(e: FrameError) -> Close {
        match e {
            FrameError::Closed => Close::Eof,
            FrameError::Io(e) => Close::Io(e),
            // Refused before any of it is read: a partial frame never
            // holds more than the bound.
            e @ FrameError::Oversize { .. } => {
                Close::refused(Refusal::Oversize, ErrorCode::Limit, e.to_string())
            }
            FrameError::Body {
                hello_version: Some(v),
                ..
            } if v != VERSION => Close::Version(v),
            e
            @ (FrameError::Truncated { .. } | FrameError::Header(_) | FrameError::Body { .. }) => {
                Close::malformed(e.to_string())
            }
        }
    }
}

/// Counts the connection as open, and admitted, while it lives.
struct OpenGuard(Arc<Shared>, u64);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.register.remove(self.1);
    }
}

/// A connection's two halves and their buffers: reading a frame borrows
/// only the reader, so the writer can send while a read is pending.
struct FrameIo {
    r: FrameReader<ReadHalf<Box<dyn Stream>>>,
    w: FrameWriter,
}

struct FrameWriter {
    writer: WriteHalf<Box<dyn Stream>>,
    out: Vec<u8>,
    /// How long one frame may take to go out.
    timeout: Duration,
}

/// Releases sync ownership when the session ends, unless already taken over.
struct OwnerGuard {
    shared: Arc<Shared>,
    conn: u64,
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        let mut arbiter = self.shared.sync();
        arbiter.members.retain(|m| m.conn != self.conn);
        if arbiter.primary == Some(self.conn) {
            info!("the primary's sync session ended");
            // The highest live backup takes over (and resyncs); counted
            // as a change, since `primary` still names the one that went.
            arbiter.elect();
        } else {
            debug!("a backup's sync session ended");
        }
    }
}

/// The dataplane's reports to the sync peer: wanted neighbours every tick,
/// hit flags every [`HIT_REPORT_TICKS`], statistics every
/// [`STATS_REPORT_TICKS`].
struct Reports {
    dataplane: Option<DataplaneHandle>,
    interval: tokio::time::Interval,
    ticks: u64,
}

/// The largest sync batch applied on a runtime worker (see the module's
/// header): it holds the tables lock a few microseconds.
const INLINE_OPS: usize = 16;

/// What applying a frame gives: the rejected objects, or why nothing was
/// applied (this session is not the primary).
type Applied = Result<Vec<(u32, ObjectError)>, String>;

struct DumpBatch {
    ops: Vec<(Op, Object)>,
    size: usize,
    scratch: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    seq: u64,
    count: u64,
    open: bool,
}
