//! A query session (the check, the supervisor): counters, statistics and
//! dumps, read-only; a dump is made from a snapshot of the tables, taken
//! under the lock and streamed without it, within the idle timeout.

use std::convert::Infallible;
use std::sync::Arc;

use fpc::{ErrorCode, Message, Object, Op, HEADER_LEN};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Span};

use super::{blocking, Close, DumpBatch, FrameIo, Shared, DUMP_FRAME};
use crate::limits::{Phase, Refusal};

pub(super) async fn query_session(
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
                    format!("{} on a query connection", other.name()),
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
pub(super) async fn dump(io: &mut FrameIo, shared: &Arc<Shared>, seq: u64) -> Result<(), Close> {
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

impl DumpBatch {
    pub(super) fn push(&mut self, obj: Object) {
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

    pub(super) fn flush(&mut self) {
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
