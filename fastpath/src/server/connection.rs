//! One FPC connection: the handshake (Hello within the Hello timeout,
//! version and role checked), then a sync or a query session; frames read
//! with fpc's bounded reader and written with a deadline.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fpc::{
    all_capabilities, ErrorCode, FrameReader, Header, Hello, Message, Role, Stream, KEEP_BUFFER,
    MAX_BODY, VERSION,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Span};

use super::query::query_session;
use super::sync::sync_session;
use super::{Close, FrameIo, FrameWriter, OpenGuard, Shared};
use crate::limits::{Phase, Refusal};

pub(super) async fn connection(
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
pub(super) async fn handshake(
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

impl FrameIo {
    /// Reads one whole frame (fpc's reader, bounded by this connection's
    /// limit). Not cancel-safe.
    pub(super) async fn read(&mut self) -> Result<(Header, Message), Close> {
        Ok(self.r.read().await?)
    }

    pub(super) async fn send(&mut self, msg: &Message, seq: u64) -> Result<(), Close> {
        self.w.send(msg, seq).await
    }
}

impl FrameWriter {
    pub(super) async fn send(&mut self, msg: &Message, seq: u64) -> Result<(), Close> {
        self.out.clear();
        msg.emit(seq, &mut self.out);
        let result = write_frame(&mut self.writer, &self.out, self.timeout).await;
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        result
    }

    /// Writes an encoded frame.
    pub(super) async fn send_raw(&mut self, frame: &[u8]) -> Result<(), Close> {
        write_frame(&mut self.writer, frame, self.timeout).await
    }
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
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

pub(super) async fn session(
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
                format!("{} before Hello", other.name()),
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
