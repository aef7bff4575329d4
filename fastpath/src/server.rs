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
//!   as any other frame.
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

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument, Span};

use fpc::{
    all_capabilities, Counter, Endpoint, ErrorCode, FrameError, FrameReader, Header, Hello,
    Message, Object, ObjectError, Op, Role, Stream, HEADER_LEN, KEEP_BUFFER, MAX_BODY, VERSION,
};

use crate::dataplane::{DataplaneHandle, Parts};
use crate::limits::{Limits, Phase, Refusal, Refusals, Register};
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

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept().await?;
                let peer = match s.peer_cred().ok().and_then(|c| c.pid()) {
                    Some(pid) => format!("unix pid {pid}"),
                    None => "unix".to_owned(),
                };
                Ok(Accepted {
                    stream: Box::new(s),
                    peer,
                    tls: None,
                })
            }
            Listener::Tcp { listener, tls } => {
                let (s, addr) = listener.accept().await?;
                s.set_nodelay(true)?;
                Ok(Accepted {
                    stream: Box::new(s),
                    peer: format!("tcp {addr}"),
                    tls: tls.clone(),
                })
            }
        }
    }
}

fn bind_unix(
    endpoint: &Endpoint,
    path: &Path,
    group: Option<u32>,
) -> Result<Listener, ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let listen_error = |source| ServerError::Listen {
        endpoint: endpoint.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Not world-writable whatever the umask: nobody else may replace
        // the socket file.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(listen_error)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Left by a process that died, unless someone still answers.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(endpoint.clone()));
            }
            std::fs::remove_file(path).map_err(listen_error)?;
        }
        Ok(_) => return Err(ServerError::NotASocket(endpoint.clone())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_error(e)),
    }
    // The socket file takes its mode from the umask at bind: bind under
    // 0177 (mode 0600), so that it is never open to others, then give it
    // its group and 0660 if asked.
    // umask(2) swaps the process's file mode mask: fpd creates no other
    // file while its listeners are being bound.
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(umask);
    let listener = bound.map_err(listen_error)?;
    let meta = std::fs::symlink_metadata(path).map_err(listen_error)?;
    // Made first, so that the file goes if what follows fails.
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(listen_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(listen_error)?;
    }
    Ok(Listener::Unix {
        listener,
        _file: file,
    })
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(Accepted { stream, peer, tls }) => {
                    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
                    let span = tracing::info_span!(
                        "connection",
                        peer = %peer,
                        conn,
                        role = tracing::field::Empty,
                        peer_name = tracing::field::Empty,
                    );
                    let evict = shutdown.child_token();
                    match shared.register.admit(conn, evict.clone()) {
                        Ok(evicted) => {
                            if let Some(old) = evicted {
                                note_eviction(&shared, old, "a new connection");
                            }
                            conns.spawn(
                                connection(
                                    (stream, tls),
                                    conn,
                                    shared.clone(),
                                    shutdown.clone(),
                                    evict,
                                )
                                .instrument(span),
                            );
                        }
                        Err(_full) => {
                            let reason = format!(
                                "fpd{} is at its limit of {} connections, none of them idle",
                                shared.blade,
                                shared.register.max()
                            );
                            shared.refusals.note(Refusal::ConnectionLimit, || {
                                format!("refusing a connection from {peer}: {reason}")
                            });
                            // Over TLS, a frame in clear would not be
                            // read: the connection just closes.
                            if tls.is_none() {
                                conns.spawn(refuse(stream, ErrorCode::Limit, reason).instrument(span));
                            }
                        }
                    }
                }
                Err(e) => {
                    shared
                        .refusals
                        .note(Refusal::AcceptError, || format!("accept failed: {e}"));
                    // Out of descriptors: free one if a connection may go
                    // (the peer waiting may be the cache manager), else
                    // wait rather than spin.
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    let freed = out_of_fds && shared.register.evict_one().inspect(|old| {
                        note_eviction(&shared, *old, "a descriptor");
                    }).is_some();
                    let pause = if freed { 10 } else { 100 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    error!("connection task failed: {e}");
                }
            }
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        conns.abort_all();
    }
}

fn note_eviction(shared: &Shared, old: u64, wanted: &str) {
    shared.refusals.note(Refusal::Evicted, || {
        format!(
            "at the limit of {} connections: closing connection {old} (no Hello yet, or the query idle longest) for {wanted}",
            shared.register.max()
        )
    });
}

/// Answers a connection that is not admitted with an Error frame.
async fn refuse(stream: Box<dyn Stream>, code: ErrorCode, message: String) {
    let mut stream = stream;
    let mut frame = Vec::new();
    Message::Error {
        code: code as u16,
        message,
    }
    .emit(0, &mut frame);
    let send = async {
        stream.write_all(&frame).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
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

async fn connection(
    (stream, tls): (Box<dyn Stream>, Option<tokio_rustls::TlsAcceptor>),
    conn: u64,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    evict: CancellationToken,
) {
    shared.count(&shared.open);
    let _open = OpenGuard(shared.clone(), conn);
    debug!("connection accepted");
    let stream = match tls {
        None => stream,
        Some(acceptor) => match handshake(acceptor, stream, &shared, &evict).await {
            Some(s) => s,
            None => return,
        },
    };
    let (reader, writer) = tokio::io::split(stream);
    let mut io = FrameIo {
        r: FrameReader::new(reader, shared.limits.max_query_frame.min(MAX_BODY)),
        w: FrameWriter {
            writer,
            out: Vec::new(),
            timeout: shared.limits.write_timeout,
        },
    };
    // `evict` is a child of `shutdown`: cancelled alone, it is an eviction.
    let close = match session(&mut io, &shared, conn, &evict).await {
        Ok(never) => match never {},
        Err(Close::Shutdown) if !shutdown.is_cancelled() => Close::Evicted,
        Err(close) => close,
    };
    let reply = match close {
        Close::Eof => {
            debug!("peer closed the connection");
            None
        }
        Close::Shutdown => {
            debug!("closing the connection: fpd stops");
            None
        }
        Close::Evicted => {
            // Counted and logged (rate-limited) where it was decided.
            debug!("closing the connection: evicted for a new one");
            Some((
                ErrorCode::Limit,
                format!(
                    "closed to make room: fpd{} is at its limit of {} connections",
                    shared.blade,
                    shared.register.max()
                ),
            ))
        }
        Close::Refused {
            refusal,
            code,
            reason,
        } => {
            shared
                .refusals
                .note(refusal, || format!("closing the connection: {reason}"));
            // A peer that does not read gets no last frame either.
            (refusal != Refusal::WriteTimeout).then_some((code, reason))
        }
        Close::Replaced => {
            info!("closing the sync session: a newer one took over");
            Some((
                ErrorCode::Replaced,
                "replaced by a newer sync session".to_owned(),
            ))
        }
        Close::Version(peer) => {
            shared.count(&shared.version_mismatches);
            let reason = format!(
                "FPC version mismatch: the peer speaks version {peer}, fpd{} speaks version {VERSION}",
                shared.blade
            );
            warn!("closing the connection: {reason}");
            Some((ErrorCode::VersionMismatch, reason))
        }
        Close::Bad { code, reason } => {
            shared.count(&shared.bad_frames);
            warn!("closing the connection on bad input: {reason}");
            Some((code, reason))
        }
        Close::PeerError { code, message } => {
            info!(code, "the peer closes the connection: {message}");
            None
        }
        Close::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
        {
            info!("the peer dropped the connection: {e}");
            None
        }
        Close::Io(e) => {
            warn!("closing the connection: {e}");
            None
        }
        Close::Internal(e) => {
            error!("closing the connection: internal error: {e}");
            None
        }
    };
    if let Some((code, message)) = reply {
        let error = Message::Error {
            code: code as u16,
            message,
        };
        let seq = io.r.last_seq;
        let _ = tokio::time::timeout(Duration::from_secs(1), io.send(&error, seq)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), io.w.writer.shutdown()).await;
}

/// The server side of the TLS handshake, within the Hello timeout: a
/// peer without a certificate from the CA, or that does not speak TLS, or
/// replays another session's bytes, is refused here (counted and logged)
/// before any FPC frame is read.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: Box<dyn Stream>,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Option<Box<dyn Stream>> {
    let timeout = shared.limits.hello_timeout;
    let result = tokio::select! {
        _ = cancel.cancelled() => return None,
        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => r,
    };
    match result {
        Ok(Ok(tls)) => {
            debug!("TLS handshake done");
            Some(Box::new(tls))
        }
        Ok(Err(e)) => {
            shared.refusals.note(Refusal::Tls, || {
                format!("refusing the connection: TLS handshake failed: {e}")
            });
            None
        }
        Err(_) => {
            shared.refusals.note(Refusal::Tls, || {
                format!(
                    "refusing the connection: no TLS handshake within {} s",
                    timeout.as_secs_f32()
                )
            });
            None
        }
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

impl FrameIo {
    /// Reads one whole frame (fpc's reader, bounded by this connection's
    /// limit). Not cancel-safe.
    async fn read(&mut self) -> Result<(Header, Message), Close> {
        Ok(self.r.read().await?)
    }

    async fn send(&mut self, msg: &Message, seq: u64) -> Result<(), Close> {
        self.w.send(msg, seq).await
    }
}

impl FrameWriter {
    async fn send(&mut self, msg: &Message, seq: u64) -> Result<(), Close> {
        self.out.clear();
        msg.emit(seq, &mut self.out);
        let result = write_frame(&mut self.writer, &self.out, self.timeout).await;
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        result
    }

    /// Writes an encoded frame.
    async fn send_raw(&mut self, frame: &[u8]) -> Result<(), Close> {
        write_frame(&mut self.writer, frame, self.timeout).await
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    stream: &mut W,
    frame: &[u8],
    timeout: Duration,
) -> Result<(), Close> {
    match tokio::time::timeout(timeout, stream.write_all(frame)).await {
        Ok(result) => result.map_err(Close::Io),
        Err(_) => Err(Close::refused(
            Refusal::WriteTimeout,
            ErrorCode::Limit,
            format!(
                "the peer does not read: a frame of {} bytes did not go out within {} s",
                frame.len(),
                timeout.as_secs_f32()
            ),
        )),
    }
}

/// The name of a message's kind, for logs.
fn describe(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "Hello",
        Message::SyncBegin { .. } => "SyncBegin",
        Message::SyncEnd { .. } => "SyncEnd",
        Message::Batch(_) => "Batch",
        Message::Ack(_) => "Ack",
        Message::Error { .. } => "Error",
        Message::DumpRequest => "DumpRequest",
        Message::DumpEnd { .. } => "DumpEnd",
        Message::CountersRequest => "CountersRequest",
        Message::Counters(_) => "Counters",
        Message::RouteGet { .. } => "RouteGet",
        Message::RouteReply(_) => "RouteReply",
        Message::StatsRequest => "StatsRequest",
        Message::Stats(_) => "Stats",
        Message::HitFlags(_) => "HitFlags",
        Message::Arbitration { .. } => "Arbitration",
        Message::Keepalive => "Keepalive",
    }
}

async fn session(
    io: &mut FrameIo,
    shared: &Arc<Shared>,
    conn: u64,
    shutdown: &CancellationToken,
) -> Result<Infallible, Close> {
    let hello_timeout = shared.limits.hello_timeout;
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Err(Close::Shutdown),
        first = tokio::time::timeout(hello_timeout, io.read()) => first,
    };
    let timed_out = |_| {
        Close::refused(
            Refusal::HelloTimeout,
            ErrorCode::Unexpected,
            format!("no Hello within {} s", hello_timeout.as_secs_f32()),
        )
    };
    let (header, hello) = match first.map_err(timed_out)?? {
        (header, Message::Hello(hello)) => (header, hello),
        (_, other) => {
            return Err(Close::bad(
                ErrorCode::Unexpected,
                format!("{} before Hello", describe(&other)),
            ))
        }
    };
    if hello.version != VERSION {
        return Err(Close::Version(hello.version));
    }
    let span = Span::current();
    span.record("role", tracing::field::debug(hello.role));
    span.record("peer_name", hello.name.as_str());
    let reply = Message::Hello(Hello {
        version: VERSION,
        role: hello.role,
        instance: 0,
        blade: shared.blade,
        capabilities: all_capabilities(),
        election_id: 0,
        name: format!("fpd{}", shared.blade),
    });
    match hello.role {
        Role::Sync => sync_session(io, shared, conn, shutdown, &hello, (header.seq, reply)).await,
        Role::Query => {
            debug!("query session");
            io.send(&reply, header.seq).await?;
            shared.register.set(conn, Phase::Idle);
            query_session(io, shared, conn, shutdown).await
        }
    }
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

async fn sync_session(
    io: &mut FrameIo,
    shared: &Arc<Shared>,
    conn: u64,
    shutdown: &CancellationToken,
    hello: &Hello,
    (seq, reply): (u64, Message),
) -> Result<Infallible, Close> {
    if hello.blade != shared.blade {
        return Err(Close::refused(
            Refusal::WrongBlade,
            ErrorCode::Refused,
            format!(
                "{} asks for blade {}: this is fpd{}, blade {}",
                hello.name, hello.blade, shared.blade, shared.blade
            ),
        ));
    }
    let cancel = shutdown.child_token();
    let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
    let previous = {
        let mut arbiter = shared.sync();
        let rival = arbiter
            .members
            .iter()
            .find(|m| m.instance != hello.instance && m.election_id == hello.election_id);
        if let Some(o) = rival {
            return Err(Close::refused(
                Refusal::BladeOwned,
                ErrorCode::Refused,
                format!(
                    "blade {} is owned by instance {} (connection {}) with election id {}: instance {} is refused (give each cache manager its own --election-id)",
                    shared.blade, o.instance, o.conn, o.election_id, hello.instance
                ),
            ));
        }
        // A restart of the same instance replaces its old session.
        let previous = arbiter
            .members
            .iter()
            .position(|m| m.instance == hello.instance)
            .map(|i| arbiter.members.remove(i));
        if previous
            .as_ref()
            .is_some_and(|p| arbiter.primary == Some(p.conn))
        {
            arbiter.primary = None;
        }
        arbiter.members.push(SyncMember {
            conn,
            instance: hello.instance,
            election_id: hello.election_id,
            cancel: cancel.clone(),
            tell: tell.clone(),
        });
        previous
    };
    shared.register.set(conn, Phase::Sync);
    io.r.limit = MAX_BODY;
    let _owner = OwnerGuard {
        shared: shared.clone(),
        conn,
    };
    if let Some(previous) = previous {
        info!(
            previous_conn = previous.conn,
            "a new sync session of the same instance replaces the old one"
        );
        previous.cancel.cancel();
    }
    info!(
        peer_instance = hello.instance,
        election_id = hello.election_id,
        "sync session from {}",
        hello.name
    );
    io.send(&reply, seq).await?;
    // This session's role, after the Hello: the primary, or a backup
    // (then told when it becomes primary).
    {
        let mut arbiter = shared.sync();
        let told = arbiter.elect();
        if let Some(p) = arbiter.primary().filter(|_| !told) {
            let _ = tell.send(Message::Arbitration {
                primary: p.conn == conn,
                primary_instance: p.instance,
                primary_election_id: p.election_id,
            });
        }
    }
    let mut reports = Reports::new(shared.dataplane.clone());
    let mut keepalive = tokio::time::interval(shared.limits.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let peer_timeout = shared.limits.peer_timeout;
    loop {
        let (header, msg) = {
            let read = io.r.read();
            tokio::pin!(read);
            // Any frame, a Keepalive at least, within the peer timeout.
            let silent = tokio::time::sleep(peer_timeout);
            tokio::pin!(silent);
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {
                        return Err(if shutdown.is_cancelled() { Close::Shutdown } else { Close::Replaced })
                    }
                    frame = &mut read => break frame?,
                    _ = &mut silent => {
                        return Err(Close::refused(
                            Refusal::PeerTimeout,
                            ErrorCode::Limit,
                            format!(
                                "the sync peer sent nothing for {} s (not even a Keepalive): taken for gone",
                                peer_timeout.as_secs_f32()
                            ),
                        ))
                    }
                    Some(m) = told.recv() => io.w.send(&m, 0).await?,
                    _ = keepalive.tick() => io.w.send(&Message::Keepalive, 0).await?,
                    _ = reports.tick() => reports.send(&mut io.w).await?,
                }
            }
        };
        match msg {
            Message::Keepalive => {}
            Message::SyncBegin { .. } | Message::SyncEnd { .. } | Message::Batch(_) => {
                match apply_frame(shared, conn, msg).await? {
                    Ok(errors) => io.send(&Message::Ack(errors), header.seq).await?,
                    Err(reason) => {
                        shared.refusals.note(Refusal::NotPrimary, || {
                            format!("refusing a write: {reason}")
                        });
                        let refusal = Message::Error {
                            code: ErrorCode::NotPrimary as u16,
                            message: reason,
                        };
                        io.send(&refusal, header.seq).await?;
                    }
                }
            }
            Message::Error { code, message } => return Err(Close::PeerError { code, message }),
            other => {
                return Err(Close::bad(
                    ErrorCode::Unexpected,
                    format!("{} on a sync connection", describe(&other)),
                ))
            }
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

impl Reports {
    fn new(dataplane: Option<DataplaneHandle>) -> Self {
        let mut interval = tokio::time::interval(REPORT_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Reports {
            dataplane,
            interval,
            ticks: 0,
        }
    }

    /// Never ready without a dataplane.
    async fn tick(&mut self) {
        if self.dataplane.is_none() {
            return std::future::pending().await;
        }
        self.interval.tick().await;
    }

    async fn send(&mut self, w: &mut FrameWriter) -> Result<(), Close> {
        let Some(dp) = &self.dataplane else {
            return Ok(());
        };
        self.ticks += 1;
        let mut hits = dp.0.take_wanted();
        if self.ticks.is_multiple_of(HIT_REPORT_TICKS) {
            dp.0.take_hits(&mut hits);
        }
        if !hits.is_empty() {
            debug!(hits = hits.len(), "reporting hit flags");
            w.send(&Message::HitFlags(hits), 0).await?;
        }
        if self.ticks.is_multiple_of(STATS_REPORT_TICKS) {
            w.send(&Message::Stats(dp.0.stats()), 0).await?;
        }
        Ok(())
    }
}

/// The largest sync batch applied on a runtime worker (see the module's
/// header): it holds the tables lock a few microseconds.
const INLINE_OPS: usize = 16;

/// What applying a frame gives: the rejected objects, or why nothing was
/// applied (this session is not the primary).
type Applied = Result<Vec<(u32, ObjectError)>, String>;

/// Applies one sync frame under one lock; returns the rejected objects,
/// or why nothing was applied (this session is not the primary).
async fn apply_frame(shared: &Arc<Shared>, conn: u64, msg: Message) -> Result<Applied, Close> {
    if matches!(&msg, Message::Batch(ops) if ops.len() <= INLINE_OPS) {
        let free = match shared.tables.try_lock() {
            Ok(t) => Some(t),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut tables) = free {
            return apply_locked(shared, &mut tables, conn, msg);
        }
    }
    let shared = shared.clone();
    blocking(move || apply_locked(&shared, &mut shared.tables(), conn, msg)).await?
}

/// [`apply_frame`]'s work, the tables lock held.
fn apply_locked(
    shared: &Shared,
    tables: &mut Tables,
    conn: u64,
    msg: Message,
) -> Result<Applied, Close> {
    {
        let arbiter = shared.sync();
        if !arbiter.members.iter().any(|m| m.conn == conn) {
            return Err(Close::Replaced);
        }
        if arbiter.primary != Some(conn) {
            let primary = match arbiter.primary() {
                Some(p) => format!(
                    "instance {} with election id {} is",
                    p.instance, p.election_id
                ),
                None => "none is elected yet".to_owned(),
            };
            return Ok(Err(format!(
                "blade {}: this session is a backup, not the primary ({primary}): its writes are refused",
                shared.blade
            )));
        }
    }
    let mut errors = Vec::new();
    // What of the dataplane's view this frame changes (a sweep at
    // SyncEnd may touch anything).
    let parts = match &msg {
        Message::Batch(ops) => ops
            .iter()
            .fold(Parts::default(), |p, (_, o)| p.union(Parts::of(o.kind()))),
        Message::SyncEnd { .. } => Parts::ALL,
        _ => Parts::default(),
    };
    match msg {
        Message::SyncBegin { generation } => {
            tables.begin_sync(generation);
            info!(generation, "sync begins");
        }
        Message::SyncEnd { generation } => {
            let swept = tables.end_sync(generation);
            info!(generation, swept, "sync ends");
        }
        Message::Batch(ops) => {
            let debug = tracing::enabled!(tracing::Level::DEBUG);
            for (index, (op, obj)) in ops.into_iter().enumerate() {
                let shown = debug.then(|| obj.to_string());
                if let Err(e) = tables.apply(op, obj) {
                    if let Some(shown) = shown {
                        debug!(index, ?op, error = ?e, "rejected: {shown}");
                    }
                    errors.push((index as u32, e));
                }
            }
        }
        _ => {}
    }
    if let Some(dp) = &shared.dataplane {
        dp.0.changed(parts);
    }
    Ok(Ok(errors))
}

async fn query_session(
    io: &mut FrameIo,
    shared: &Arc<Shared>,
    conn: u64,
    shutdown: &CancellationToken,
) -> Result<Infallible, Close> {
    let idle = shared.limits.idle_timeout;
    loop {
        shared.register.set(conn, Phase::Idle);
        let (header, msg) = tokio::select! {
            _ = shutdown.cancelled() => return Err(Close::Shutdown),
            frame = tokio::time::timeout(idle, io.read()) => frame.map_err(|_| {
                Close::refused(
                    Refusal::IdleTimeout,
                    ErrorCode::Limit,
                    format!("a query connection idle for {} s", idle.as_secs_f32()),
                )
            })??,
        };
        shared.register.set(conn, Phase::Busy);
        let seq = header.seq;
        match msg {
            Message::DumpRequest => dump(io, shared, seq).await?,
            Message::CountersRequest => {
                let s = shared.clone();
                let counters = blocking(move || s.counters()).await?;
                io.send(&Message::Counters(counters), seq).await?;
            }
            Message::StatsRequest => {
                let stats = shared
                    .dataplane
                    .as_ref()
                    .map(|dp| dp.0.stats())
                    .unwrap_or_default();
                io.send(&Message::Stats(stats), seq).await?;
            }
            Message::RouteGet { table, addr } => {
                let s = shared.clone();
                let route = blocking(move || s.tables().longest_match(table, addr)).await?;
                io.send(&Message::RouteReply(route.map(Object::Route)), seq)
                    .await?;
            }
            Message::Error { code, message } => return Err(Close::PeerError { code, message }),
            other => {
                return Err(Close::bad(
                    ErrorCode::Unexpected,
                    format!("{} on a query connection", describe(&other)),
                ))
            }
        }
    }
}

/// Streams every object as Batch frames of at most about [`DUMP_FRAME`]
/// bytes, then `DumpEnd`.
///
/// The tables are copied under their lock, and the copy encoded and
/// written without it: a reader that does not read holds no lock, so the
/// sync session goes on. A copy (the tables' compact form, some 36 bytes a
/// route) is about as large as the encoded dump but three times quicker
/// to make (9 ms for 100,000 routes), so the lock is held for the copy
/// only; at most `max_dumps` copies exist at once (a
/// dump beyond that waits, holding nothing), and a peer that does not
/// take a frame within the write timeout, or the whole dump within the
/// idle timeout, is dropped, which frees its copy.
/// The dump is a consistent snapshot of one moment.
async fn dump(io: &mut FrameIo, shared: &Arc<Shared>, seq: u64) -> Result<(), Close> {
    let _permit = shared
        .dumps
        .acquire()
        .await
        .map_err(|e| Close::Internal(e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let s = shared.clone();
    let span = Span::current();
    // Spawned now (not on first poll) so that it fills the channel.
    let producer = tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let copy = s.tables().clone();
        let mut batch = DumpBatch {
            ops: Vec::new(),
            size: 0,
            scratch: Vec::new(),
            tx,
            seq,
            count: 0,
            open: true,
        };
        copy.for_each(|obj| batch.push(obj));
        batch.flush();
        batch.count
    });
    // Forward frames until the producer is done and the channel drained; on
    // error `rx` goes, and the producer stops at its next frame. The whole
    // dump gets the idle timeout, so that a reader taking a frame now and
    // then does not hold a copy (and a turn) for ever.
    let deadline = shared.limits.idle_timeout;
    let forward = async {
        while let Some(frame) = rx.recv().await {
            io.w.send_raw(&frame).await?;
        }
        Ok::<(), Close>(())
    };
    tokio::time::timeout(deadline, forward)
        .await
        .map_err(|_| {
            Close::refused(
                Refusal::WriteTimeout,
                ErrorCode::Limit,
                format!(
                    "the peer reads too slowly: its dump did not go out within {} s",
                    deadline.as_secs_f32()
                ),
            )
        })??;
    let count = producer.await.map_err(|e| Close::Internal(e.to_string()))?;
    debug!(count, "dump sent");
    io.send(&Message::DumpEnd { count }, seq).await
}

struct DumpBatch {
    ops: Vec<(Op, Object)>,
    size: usize,
    scratch: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    seq: u64,
    count: u64,
    open: bool,
}

impl DumpBatch {
    fn push(&mut self, obj: Object) {
        if !self.open {
            return;
        }
        self.scratch.clear();
        obj.emit(&mut self.scratch);
        let n = 1 + self.scratch.len();
        if !self.ops.is_empty() && self.size + n > DUMP_FRAME - HEADER_LEN - 4 {
            self.flush();
        }
        self.ops.push((Op::Add, obj));
        self.size += n;
        self.count += 1;
    }

    fn flush(&mut self) {
        if self.ops.is_empty() || !self.open {
            return;
        }
        let mut frame = Vec::with_capacity(HEADER_LEN + 4 + self.size);
        Message::Batch(std::mem::take(&mut self.ops)).emit(self.seq, &mut frame);
        self.size = 0;
        // Fails when the connection has gone: stop, which frees the copy.
        if self.tx.blocking_send(frame).is_err() {
            self.open = false;
        }
    }
}
