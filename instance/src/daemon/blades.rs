//! The processor's side of the blades: every op goes to every connected
//! blade in cache order; a blade that connects, or whose queue passed
//! `--max-queue`, gets the whole cache between SyncBegin and SyncEnd (the
//! overflowed one once its writer reports the queue drained, with no later
//! change needed), and is out of sync until that replay is acked.

use std::sync::atomic::Ordering::Relaxed;

use fpc::{BatchWriter, Message, Object, ObjectKind, Op};
use tracing::{info, trace, warn};

use super::now_ns;
use super::{BladeSession, Processor, SessionState, BATCH};
use crate::blade::{BladeEvent, Outgoing};

/// Encodes `msg` with the blade's next sequence number and queues it;
/// returns its size in bytes.
pub(super) fn send(session: &mut BladeSession, conn: u64, msg: &Message, buf: &mut Vec<u8>) -> u64 {
    session.seq += 1;
    buf.clear();
    msg.emit(session.seq, buf);
    queue(session, conn, std::mem::take(buf))
}

/// Queues one encoded frame (made with the blade's current sequence
/// number); returns its size in bytes.
fn queue(session: &mut BladeSession, conn: u64, bytes: Vec<u8>) -> u64 {
    session.stats.enqueued(1, bytes.len() as u64);
    let len = bytes.len() as u64;
    if session
        .tx
        .send(Outgoing {
            conn,
            bytes,
            frames: 1,
        })
        .is_err()
    {
        let _ = session.stats.dequeued(1, len);
    }
    len
}

impl Processor {
    pub(super) fn on_blade(&mut self, event: BladeEvent) {
        match event {
            BladeEvent::Up { index, conn } => {
                self.flush(); // pending ops predate this connection's replay
                let session = &mut self.blades[index];
                session.state = SessionState::Up { conn };
                session.seq = 0;
                session.recovering = false;
                self.full_sync(index);
            }
            BladeEvent::Down { index, conn } => {
                let session = &mut self.blades[index];
                if matches!(session.state, SessionState::Up { conn: c } | SessionState::Overflowed { conn: c } if c == conn)
                {
                    session.state = SessionState::Down;
                    session.recovering = false;
                }
            }
            BladeEvent::Drained { .. } => self.check_overflowed(),
            // Published by the loop after this event (`publish_state`).
            BladeEvent::InSync { .. } => {}
        }
    }

    /// Queues SyncBegin, the whole cache and SyncEnd for one blade.
    pub(super) fn full_sync(&mut self, index: usize) {
        self.generation = self.generation.max(now_ns()) + 1;
        let generation = self.generation;
        let ha = self.ipsec_ha.get(&self.blades[index].blade) == Some(&true);
        let wanted = |o: &std::borrow::Cow<Object>| ha || !matches!(**o, Object::XfrmReplay(_));
        let session = &mut self.blades[index];
        let SessionState::Up { conn } = session.state else {
            return;
        };
        session.stats.replays.fetch_add(1, Relaxed);
        info!(
            blade = session.blade,
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
        let mut bytes = send(
            session,
            conn,
            &Message::SyncBegin { generation },
            &mut frames,
        );
        // Encoded a frame at a time straight from the cache (no batch of
        // cloned objects first); each frame's buffer sized as the last.
        let mut objects = self.cache.in_sync_order().filter(wanted).peekable();
        let mut size = 0;
        while objects.peek().is_some() {
            session.seq += 1;
            let mut frame = Vec::with_capacity(size);
            let mut batch = BatchWriter::new(session.seq, &mut frame);
            for o in objects.by_ref().take(BATCH) {
                batch.push(Op::Add, &o);
            }
            batch.finish();
            size = frame.len();
            bytes += queue(session, conn, frame);
        }
        // Known before it is sent, so that its ack cannot come first.
        session
            .stats
            .sync_end_seq
            .store(session.seq + 1, std::sync::atomic::Ordering::SeqCst);
        bytes += send(session, conn, &Message::SyncEnd { generation }, &mut frames);
        session.replay_bytes = bytes;
    }

    /// Sends the pending ops to every blade that is up.
    pub(super) fn flush(&mut self) {
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
        for (index, session) in self.blades.iter_mut().enumerate() {
            let SessionState::Up { conn } = session.state else {
                trace!(blade = session.blade, state = ?session.state, "blade not up: its replay will carry these ops");
                continue;
            };
            trace!(blade = session.blade, conn, "sending a batch");
            let mut frame = Vec::new();
            let msg = match &without_ha {
                Some(m) if self.ipsec_ha.get(&session.blade) != Some(&true) => {
                    if matches!(m, Message::Batch(b) if b.is_empty()) {
                        continue;
                    }
                    m
                }
                _ => &msg,
            };
            send(session, conn, msg, &mut frame);
            // Until its replay is acked, a blade may hold that replay on
            // top of the limit: a replay larger than --max-queue is not
            // abandoned by the next change (and replayed again, forever).
            let allowance = match session.stats.in_sync.load(Relaxed) {
                0 => session.replay_bytes,
                _ => 0,
            };
            if session.stats.in_queue_bytes.load(Relaxed)
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
    pub(super) fn overflow(&mut self, index: usize) {
        let session = &mut self.blades[index];
        if let SessionState::Up { conn } = session.state {
            warn!(
                blade = session.blade,
                "fast path queue passed its limit; will resync it"
            );
            session.stats.overflows.fetch_add(1, Relaxed);
            session.stats.lost_sync();
            session.recovering = true;
            session.state = SessionState::Overflowed { conn };
        }
    }

    /// Replays each overflowed blade whose queue has drained. Called after
    /// every flush and on `BladeEvent::Drained`, which the writer sends
    /// when an overflowed queue empties: the replay starts on a quiet
    /// system too, with no later change to carry it.
    pub(super) fn check_overflowed(&mut self) {
        for index in 0..self.blades.len() {
            let session = &mut self.blades[index];
            if let SessionState::Overflowed { conn } = session.state {
                if session.stats.want_drain() {
                    session.state = SessionState::Up { conn };
                    self.full_sync(index);
                }
            }
        }
    }
}
