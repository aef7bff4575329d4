//! One blade's FPC connection: connect (and reconnect), say hello, write
//! the frames the processor queues, read the acks.
//!
//! Invariant: every frame carries the id of the connection it was made
//! for; frames made for an earlier connection are dropped unsent, because
//! a new connection always starts with a full replay (SyncBegin, every
//! cached object, SyncEnd) that the processor queues when told `Up`.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fpc::{
    self, all_capabilities, Endpoint, Hello, Message, Role, Stream, TransportError, VERSION,
};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::stats::QueueStats;

/// Frames for one connection of one blade.
pub struct Outgoing {
    pub conn: u64,
    pub bytes: Vec<u8>,
    pub frames: u64,
}

/// How a blade task tells the processor; false once the processor is gone
/// (shutting down). The task does not know the processor's event type.
pub type Notify = std::sync::Arc<dyn Fn(BladeEvent) -> bool + Send + Sync>;

/// What a blade task tells the processor.
#[derive(Debug)]
pub enum BladeEvent {
    /// `index` is the blade's place in cmgrd's `--blade` list (not its
    /// number).
    Up {
        index: usize,
        conn: u64,
    },
    Down {
        index: usize,
        conn: u64,
    },
    // The queue emptied after the processor asked (`want_drain`): an
    // overflowed blade's replay can start.
    Drained {
        index: usize,
    },
    /// The blade acked its replay (in sync again): the processor's
    /// SyncState may have changed, with nothing else to tell it.
    InSync {
        index: usize,
    },
}

pub struct BladeTask {
    pub index: usize,
    pub blade: u32,
    pub endpoint: Endpoint,
    /// The namespace cmgrd entered (`--netns`): TCP endpoints are dialled
    /// from inside it.
    pub netns: Option<String>,
    pub instance: u32,
    pub name: String,
    /// `-b`: the socket's send buffer.
    pub socket_buffer: usize,
    /// `--election-id`: the Hello's; the blade applies only its primary's
    /// writes.
    pub election_id: u64,
    /// `--keepalive`: how often the blade is sent a Keepalive.
    pub keepalive: Duration,
    /// `--peer-timeout`: the blade silent this long (no frame, not even
    /// its Keepalive) is taken for gone: a cut link, a frozen host.
    /// Reconnected, resynced.
    pub peer_timeout: Duration,
    pub stats: Arc<QueueStats>,
    /// Takes the reverse messages (hit flags, statistics) fpd sends.
    pub reverse: crate::hitflags::Reverse,
}

const RETRY: Duration = Duration::from_millis(100);
/// The first wait before dialling again a fast path that does not answer
/// (a restarted fpd listens a few ms after its start: a resync's first
/// part is this wait), doubling from there.
const FIRST_UNREACHABLE_RETRY: Duration = Duration::from_millis(2);
/// The longest wait between attempts to reach a fast path that does not
/// answer (back-off from [`FIRST_UNREACHABLE_RETRY`], doubling).
const MAX_UNREACHABLE_RETRY: Duration = Duration::from_secs(2);
/// A lost connection is dialled again at once (the fast path restarted, a
/// cut link healed), unless it and the one before it each lived less than
/// this: then [`RETRY`] first, so a peer that closes every connection at
/// once is not replayed to in a loop.
const STEADY: Duration = Duration::from_secs(1);
/// How long a connection attempt may take (a dropped SYN is otherwise
/// retried for minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait between attempts when fpd answers and refuses (another
/// instance owns the blade, another blade, a limit): back-off from
/// [`RETRY`], doubling.
const MAX_REFUSED_RETRY: Duration = Duration::from_secs(5);
/// A failure that goes on is logged again this often.
const RELOG: Duration = Duration::from_secs(60);

impl BladeTask {
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Outgoing>, notify: Notify) {
        let mut conn = 0u64;
        let mut failures = 0u64;
        let mut retry = RETRY;
        // The last failure logged, and when.
        let mut logged: Option<(String, tokio::time::Instant)> = None;
        // Connections in a row that lived less than STEADY.
        let mut short_lived = 0u32;
        loop {
            let stream = match self.handshake().await {
                Ok(s) => s,
                Err(e) => {
                    // Not connected: not a backup either, until told again.
                    self.stats.backup.store(0, Relaxed);
                    failures += 1;
                    let refused = matches!(
                        e,
                        TransportError::Refused(_) | TransportError::VersionMismatch { .. }
                    );
                    // Refused by a live fpd: asking again at once changes
                    // nothing; one that does not answer (a cut link)
                    // is tried again sooner, still backing off.
                    let (first, max) = if refused {
                        (RETRY, MAX_REFUSED_RETRY)
                    } else {
                        (FIRST_UNREACHABLE_RETRY, MAX_UNREACHABLE_RETRY)
                    };
                    retry = if failures == 1 {
                        first
                    } else {
                        (retry * 2).clamp(first, max)
                    };
                    let reason = e.to_string();
                    let due = logged
                        .as_ref()
                        .is_none_or(|(last, at)| *last != reason || at.elapsed() >= RELOG);
                    if due {
                        if refused {
                            warn!(endpoint = %self.endpoint, attempts = failures, "the fast path refuses this cache manager: {reason}; retrying every {} s at most", MAX_REFUSED_RETRY.as_secs());
                        } else {
                            warn!(endpoint = %self.endpoint, attempts = failures, "{}; retrying", self.unreachable(&e));
                        }
                        logged = Some((reason, tokio::time::Instant::now()));
                    }
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            failures = 0;
            retry = RETRY;
            logged = None;
            conn += 1;
            info!(endpoint = %self.endpoint, conn, "connected to fast path");
            let since = tokio::time::Instant::now();
            self.stats.connects.fetch_add(1, Relaxed);
            self.stats.connected.store(1, Relaxed);
            self.stats.backup.store(0, Relaxed);
            self.stats.in_sync.store(0, Relaxed);
            let (reader, mut writer) = tokio::io::split(stream);
            if !notify(BladeEvent::Up {
                index: self.index,
                conn,
            }) {
                return; // the processor is gone: shutting down
            }
            let mut acks = tokio::spawn(read_acks(
                reader,
                self.stats.clone(),
                (self.blade, self.reverse.clone()),
                self.peer_timeout,
                (notify.clone(), self.index),
            ));
            let mut keepalive = tokio::time::interval(self.keepalive);
            keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let closed = loop {
                tokio::select! {
                    _ = keepalive.tick() => {
                        if let Err(e) = writer.write_all(&keepalive_frame()).await {
                            break format!("write: {e}");
                        }
                    }
                    frame = rx.recv() => {
                        let Some(frame) = frame else {
                            let _ = writer.shutdown().await;
                            acks.abort();
                            return;
                        };
                        if self.stats.dequeued(frame.frames, frame.bytes.len() as u64)
                            && !notify(BladeEvent::Drained { index: self.index })
                        {
                            return;
                        }
                        if frame.conn != conn {
                            debug!(frame_conn = frame.conn, conn, "dropping a frame of an earlier connection");
                            continue;
                        }
                        if let Err(e) = write_counted(&mut writer, &frame.bytes, &self.stats).await {
                            break format!("write: {e}");
                        }
                        self.stats.sent.fetch_add(frame.frames, Relaxed);
                    }
                    res = &mut acks => {
                        break match res {
                            Ok(Err(e)) => e.to_string(),
                            _ => "reader ended".into(),
                        };
                    }
                }
            };
            acks.abort();
            warn!(endpoint = %self.endpoint, conn, "fast path connection lost: {closed}");
            self.stats.errors.fetch_add(1, Relaxed);
            self.stats.connected.store(0, Relaxed);
            self.stats.in_sync.store(0, Relaxed);
            if !notify(BladeEvent::Down {
                index: self.index,
                conn,
            }) {
                return;
            }
            short_lived = if since.elapsed() < STEADY {
                short_lived.saturating_add(1)
            } else {
                0
            };
            if short_lived > 1 {
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Why the blade could not be reached, naming the endpoint, the
    /// namespace it was dialled from and the error (errno included), e.g.
    /// "blade 2: connect tcp:127.0.0.1:9000 from netns red: Connection
    /// refused (os error 111)".
    fn unreachable(&self, e: &TransportError) -> String {
        let from = match &self.netns {
            Some(ns) => format!("netns {ns}"),
            None => "the initial netns".to_owned(),
        };
        match e {
            TransportError::Io(io) => {
                format!(
                    "blade {}: connect {} from {from}: {io}",
                    self.blade, self.endpoint
                )
            }
            other => format!(
                "blade {}: {} (dialled from {from}): {}",
                self.blade,
                self.endpoint,
                common::error_chain(other)
            ),
        }
    }

    async fn handshake(&self) -> Result<Box<dyn Stream>, TransportError> {
        let mut stream =
            tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.endpoint, self.socket_buffer))
                .await
                .map_err(|_| {
                    TransportError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                    ))
                })??;
        let mut frame = Vec::new();
        Message::Hello(Hello {
            version: VERSION,
            role: Role::Sync,
            instance: self.instance,
            blade: self.blade,
            capabilities: all_capabilities(),
            election_id: self.election_id,
            name: self.name.clone(),
        })
        .emit(0, &mut frame);
        stream.write_all(&frame).await?;
        let mut body = Vec::new();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            fpc::read_frame(&mut stream, &mut body),
        )
        .await
        .map_err(|_| TransportError::Unexpected("no hello within 5 s".into()))??;
        match reply.1 {
            Message::Hello(h) if h.version == VERSION => {
                debug!(peer = %h.name, "fast path hello");
                self.until_primary(&mut stream, &mut body).await?;
                Ok(stream)
            }
            Message::Hello(h) => Err(TransportError::VersionMismatch {
                peer: h.version,
                ours: VERSION,
            }),
            Message::Error { message, .. } => Err(TransportError::Refused(message)),
            other => Err(TransportError::Unexpected(format!("{other:?}"))),
        }
    }
}

impl BladeTask {
    /// Waits until the blade makes this session its primary (at once, or
    /// when the primary goes): a backup sends nothing, and the full replay
    /// that follows `Up` is its takeover's resync.
    async fn until_primary(
        &self,
        stream: &mut Box<dyn Stream>,
        body: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let mut said = false;
        let mut keepalive = tokio::time::interval(self.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Keepalives go out while waiting for the next frame; the
            // read itself is never cut short (frames are read whole).
            let msg = {
                let (mut r, mut w) = tokio::io::split(&mut *stream);
                let read = read_live(&mut r, body, self.peer_timeout);
                tokio::pin!(read);
                loop {
                    tokio::select! {
                        frame = &mut read => break frame?.1,
                        _ = keepalive.tick() => w.write_all(&keepalive_frame()).await?,
                    }
                }
            };
            match msg {
                Message::Arbitration { primary: true, .. } => {
                    if said {
                        info!(
                            blade = self.blade,
                            "this cache manager is now the blade's primary: resyncing"
                        );
                    }
                    return Ok(());
                }
                Message::Arbitration {
                    primary: false,
                    primary_instance,
                    primary_election_id,
                } => {
                    info!(
                        blade = self.blade,
                        primary_instance,
                        primary_election_id,
                        election_id = self.election_id,
                        "backup of the blade: instance {primary_instance} (election id {primary_election_id}) is its primary"
                    );
                    self.stats.backup.store(1, Relaxed);
                    said = true;
                }
                Message::Error { message, .. } => return Err(TransportError::Refused(message)),
                // Keepalives, and reports meant for the primary: not ours.
                _ => {}
            }
        }
    }
}

/// A Keepalive frame (sequence 0: not acknowledged).
fn keepalive_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    Message::Keepalive.emit(0, &mut frame);
    frame
}

/// Reads one frame, or fails if the fast path sends nothing (not even a
/// Keepalive) for `peer_timeout`.
async fn read_live<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    body: &mut Vec<u8>,
    peer_timeout: Duration,
) -> Result<(fpc::Header, Message), TransportError> {
    tokio::time::timeout(peer_timeout, fpc::read_frame(r, body))
        .await
        .map_err(|_| {
            TransportError::Unexpected(format!(
                "the fast path sent nothing for {} s (not even a Keepalive): taken for gone",
                peer_timeout.as_secs_f64()
            ))
        })?
}

/// Connects with a send buffer of `sndbuf` bytes (SO_SNDBUFFORCE, else
/// SO_SNDBUF, which the kernel caps at net.core.wmem_max).
async fn connect(ep: &Endpoint, sndbuf: usize) -> std::io::Result<Box<dyn Stream>> {
    fn set(fd: std::os::fd::RawFd, bytes: usize) {
        let value = (bytes / 2).min(i32::MAX as usize) as libc::c_int;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
            // SAFETY: setsockopt on a descriptor we own, with a live c_int.
            let ret = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &value as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if ret == 0 {
                return;
            }
        }
    }
    Ok(match ep {
        Endpoint::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await?;
            set(s.as_raw_fd(), sndbuf);
            Box::new(s)
        }
        Endpoint::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            set(s.as_raw_fd(), sndbuf);
            fpc::over_tcp(s, a).await?
        }
    })
}

/// Writes `bytes`, counting writes that had to wait and partial writes.
async fn write_counted(
    w: &mut WriteHalf<Box<dyn Stream>>,
    bytes: &[u8],
    stats: &QueueStats,
) -> std::io::Result<()> {
    let mut off = 0;
    while off < bytes.len() {
        let mut fut = pin!(w.write(&bytes[off..]));
        let first = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        let n = match first {
            Poll::Ready(r) => r?,
            Poll::Pending => {
                stats.has_blocked.fetch_add(1, Relaxed);
                fut.await?
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        if off + n < bytes.len() {
            stats.partially_sent.fetch_add(1, Relaxed);
        }
        off += n;
    }
    Ok(())
}

async fn read_acks(
    mut r: ReadHalf<Box<dyn Stream>>,
    stats: Arc<QueueStats>,
    (blade, reverse): (u32, crate::hitflags::Reverse),
    peer_timeout: Duration,
    (notify, index): (Notify, usize),
) -> Result<(), TransportError> {
    let mut body = Vec::new();
    loop {
        let (header, msg) = read_live(&mut r, &mut body, peer_timeout).await?;
        match msg {
            Message::Keepalive => {}
            Message::Ack(errors) => {
                if stats.acked_up_to(header.seq) && !notify(BladeEvent::InSync { index }) {
                    return Ok(()); // the processor is gone: shutting down
                }
                if !errors.is_empty() {
                    stats.rejected.fetch_add(errors.len() as u64, Relaxed);
                    for (index, err) in &errors {
                        debug!(
                            seq = header.seq,
                            index,
                            ?err,
                            "fast path rejected an object"
                        );
                    }
                }
            }
            Message::Error { code, message } => {
                return Err(TransportError::Refused(format!("{message} (code {code})")))
            }
            // Taken over by a higher election id: reconnect, as a backup.
            Message::Arbitration {
                primary: false,
                primary_instance,
                primary_election_id,
            } => {
                return Err(TransportError::Refused(format!(
                "taken over by instance {primary_instance} with election id {primary_election_id}"
            )))
            }
            Message::Arbitration { primary: true, .. } => {}
            // Reverse messages (hit flags, interface statistics): see
            // hitflags.rs.
            other => {
                if let Err(other) = reverse.handle(blade, other) {
                    return Err(TransportError::Unexpected(format!("{other:?}")));
                }
            }
        }
    }
}
