//! A sync session: the cache manager's ops applied to the tables (small
//! batches inline when the lock is free, the rest off the runtime), the
//! arbitration between primary and backups, and the reports (hit flags,
//! statistics, wanted neighbours) sent back on their ticks.

use std::convert::Infallible;
use std::sync::Arc;

use fpc::{ErrorCode, Hello, Message, Object, ObjectError, ObjectKind, Op, SplitBatch, MAX_BODY};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Span};

use super::{
    Applied, Close, FrameIo, FrameWriter, OwnerGuard, Reports, Shared, SyncMember,
    HIT_REPORT_TICKS, INLINE_OPS, REPORT_TICK, STATS_REPORT_TICKS,
};
use crate::dataplane::{DataplaneHandle, Parts};
use crate::limits::{Phase, Refusal};
use crate::tables::Tables;

pub(super) async fn sync_session(
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
    // Batches are decoded here, their routes apart (no `Object` per
    // route); the vectors go to the apply and come back, capacity kept.
    // While one frame is applied off the runtime, the next is read and
    // decoded (into the other set of vectors); frames still apply one
    // after another, in order, each acked once applied.
    let mut batch = SplitBatch::default();
    let mut spare: Option<SplitBatch> = None;
    let mut inflight: Option<InFlight> = None;
    loop {
        if let Some(s) = spare.take() {
            if batch.routes.capacity() == 0 {
                batch = s;
            }
        }
        let (header, msg) = {
            let read = io.r.read_split(&mut batch);
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
                    (seq, done) = finished(&mut inflight) => {
                        spare = ack(&mut io.w, shared, seq, done).await?;
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
        let frame = match msg {
            None => SyncFrame::Batch(std::mem::take(&mut batch)),
            Some(m @ (Message::SyncBegin { .. } | Message::SyncEnd { .. })) => SyncFrame::Mark(m),
            // A batch is decoded into `batch` (never here), but one whole
            // would be applied the same.
            Some(Message::Batch(ops)) => SyncFrame::Mark(Message::Batch(ops)),
            Some(other) => SyncFrame::None(other),
        };
        let msg = match frame {
            SyncFrame::None(msg) => msg,
            frame => {
                // The frame before this one first, applied and acked.
                if inflight.is_some() {
                    let (seq, done) = finished(&mut inflight).await;
                    spare = ack(&mut io.w, shared, seq, done).await?;
                }
                match start_apply(shared, conn, frame) {
                    Applying::Done(done) => {
                        let back = ack(&mut io.w, shared, header.seq, done).await?;
                        spare = spare.or(back);
                    }
                    Applying::Off(handle) => inflight = Some((header.seq, handle)),
                }
                continue;
            }
        };
        match msg {
            Message::Keepalive => {}
            Message::Error { code, message } => return Err(Close::PeerError { code, message }),
            other => {
                return Err(Close::bad(
                    ErrorCode::Unexpected,
                    format!("{} on a sync connection", other.name()),
                ))
            }
        }
    }
}

impl Reports {
    pub(super) fn new(dataplane: Option<DataplaneHandle>) -> Self {
        let mut interval = tokio::time::interval(REPORT_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Reports {
            dataplane,
            interval,
            ticks: 0,
        }
    }

    /// Never ready without a dataplane.
    pub(super) async fn tick(&mut self) {
        if self.dataplane.is_none() {
            return std::future::pending().await;
        }
        self.interval.tick().await;
    }

    pub(super) async fn send(&mut self, w: &mut FrameWriter) -> Result<(), Close> {
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

/// A frame of the sync stream to apply.
pub(super) enum SyncFrame {
    /// SyncBegin, SyncEnd (or a batch decoded whole).
    Mark(Message),
    /// A batch, its routes apart.
    Batch(SplitBatch),
    /// Not a write.
    None(Message),
}

impl SyncFrame {
    fn ops(&self) -> usize {
        match self {
            SyncFrame::Mark(Message::Batch(ops)) => ops.len(),
            SyncFrame::Batch(b) => b.len(),
            _ => 0,
        }
    }
}

/// What applying a frame gives: the rejected objects (or why nothing was
/// applied) and the split batch's vectors for a later frame.
type ApplyResult = Result<(Applied, Option<SplitBatch>), Close>;

/// A frame being applied off the runtime: its sequence number and the task.
type InFlight = (u64, tokio::task::JoinHandle<ApplyResult>);

/// A frame's apply: done inline, or running off the runtime.
enum Applying {
    Done(ApplyResult),
    Off(tokio::task::JoinHandle<ApplyResult>),
}

/// Starts applying one sync frame under one lock: a batch of at most
/// [`INLINE_OPS`] ops inline when the lock is free, the rest on the
/// blocking pool.
fn start_apply(shared: &Arc<Shared>, conn: u64, frame: SyncFrame) -> Applying {
    let batch = matches!(
        frame,
        SyncFrame::Batch(_) | SyncFrame::Mark(Message::Batch(_))
    );
    if batch && frame.ops() <= INLINE_OPS {
        let free = match shared.tables.try_lock() {
            Ok(t) => Some(t),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut tables) = free {
            return Applying::Done(apply_locked(shared, &mut tables, conn, frame));
        }
    }
    let shared = shared.clone();
    let span = Span::current();
    Applying::Off(tokio::task::spawn_blocking(move || {
        span.in_scope(|| apply_locked(&shared, &mut shared.tables(), conn, frame))
    }))
}

/// The frame in flight once applied (never ready when there is none);
/// `inflight` is then empty.
async fn finished(inflight: &mut Option<InFlight>) -> (u64, ApplyResult) {
    let Some((seq, handle)) = inflight else {
        return std::future::pending().await;
    };
    let seq = *seq;
    let done = handle
        .await
        .unwrap_or_else(|e| Err(Close::Internal(e.to_string())));
    *inflight = None;
    (seq, done)
}

/// Acks an applied frame (or refuses it: not the primary); returns the
/// split batch's vectors.
async fn ack(
    w: &mut FrameWriter,
    shared: &Shared,
    seq: u64,
    done: ApplyResult,
) -> Result<Option<SplitBatch>, Close> {
    let (applied, back) = done?;
    match applied {
        Ok(errors) => w.send(&Message::Ack(errors), seq).await?,
        Err(reason) => {
            shared.refusals.note(Refusal::NotPrimary, || {
                format!("refusing a write: {reason}")
            });
            let refusal = Message::Error {
                code: ErrorCode::NotPrimary as u16,
                message: reason,
            };
            w.send(&refusal, seq).await?;
        }
    }
    Ok(back)
}

/// A frame's apply, the tables lock held.
pub(super) fn apply_locked(
    shared: &Shared,
    tables: &mut Tables,
    conn: u64,
    frame: SyncFrame,
) -> Result<(Applied, Option<SplitBatch>), Close> {
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
            let back = match frame {
                SyncFrame::Batch(b) => Some(b),
                _ => None,
            };
            return Ok((
                Err(format!(
                    "blade {}: this session is a backup, not the primary ({primary}): its writes are refused",
                    shared.blade
                )),
                back,
            ));
        }
    }
    let mut errors = Vec::new();
    // What of the dataplane's view this frame changes (a sweep at
    // SyncEnd may touch anything).
    let parts = match &frame {
        SyncFrame::Mark(Message::Batch(ops)) => ops
            .iter()
            .fold(Parts::default(), |p, (_, o)| p.union(Parts::of(o.kind()))),
        SyncFrame::Batch(b) => b
            .others
            .iter()
            .fold(Parts::default(), |p, (_, _, o)| {
                p.union(Parts::of(o.kind()))
            })
            .union(if b.routes.is_empty() {
                Parts::default()
            } else {
                Parts::of(ObjectKind::Route)
            }),
        SyncFrame::Mark(Message::SyncEnd { .. }) => Parts::ALL,
        _ => Parts::default(),
    };
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    let mut back = None;
    match frame {
        SyncFrame::Mark(Message::SyncBegin { generation }) => {
            tables.begin_sync(generation);
            info!(generation, "sync begins");
        }
        SyncFrame::Mark(Message::SyncEnd { generation }) => {
            let swept = tables.end_sync(generation);
            info!(generation, swept, "sync ends");
        }
        SyncFrame::Mark(Message::Batch(ops)) => {
            for (index, (op, obj)) in ops.into_iter().enumerate() {
                apply_one(tables, &mut errors, debug, index as u32, op, obj);
            }
        }
        SyncFrame::Batch(mut b) => {
            let mut state = (tables, &mut errors);
            b.take_each(
                &mut state,
                |(tables, errors), index, op, route| {
                    let shown = debug.then(|| route.to_string());
                    let res = tables.apply_route(op, route);
                    note_rejected(errors, index, op, shown, res);
                },
                |(tables, errors), index, op, obj| apply_one(tables, errors, debug, index, op, obj),
            );
            back = Some(b);
        }
        _ => {}
    }
    if let Some(dp) = &shared.dataplane {
        dp.0.changed(parts);
    }
    Ok((Ok(errors), back))
}

fn apply_one(
    tables: &mut Tables,
    errors: &mut Vec<(u32, ObjectError)>,
    debug: bool,
    index: u32,
    op: Op,
    obj: Object,
) {
    let shown = debug.then(|| obj.to_string());
    let res = tables.apply(op, obj);
    note_rejected(errors, index, op, shown, res);
}

/// A rejected op's index and reason, kept for the ack (and logged, with
/// the object as `shown` before it was applied, at debug level).
fn note_rejected(
    errors: &mut Vec<(u32, ObjectError)>,
    index: u32,
    op: Op,
    shown: Option<String>,
    res: Result<(), ObjectError>,
) {
    if let Err(e) = res {
        if let Some(shown) = shown {
            debug!(index, ?op, error = ?e, "rejected: {shown}");
        }
        errors.push((index, e));
    }
}
