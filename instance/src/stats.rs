//! Counters: per netlink socket and message type (the seed's `show
//! netlink`), per blade queue (`show queue`), and sync events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use serde::Serialize;

/// Messages received on one netlink socket, by type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SocketStats {
    pub name: String,
    pub packets: u64,
    pub by_type: BTreeMap<u16, u64>,
}

impl SocketStats {
    pub fn named(name: String) -> Self {
        SocketStats {
            name,
            ..Default::default()
        }
    }

    pub fn count(&mut self, kind: u16) {
        self.packets += 1;
        *self.by_type.entry(kind).or_default() += 1;
    }
}

/// What the processor counts of its own work.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStats {
    /// Times the listener's queue overran (ENOBUFS).
    pub overruns: u64,
    /// Full resyncs with Linux (after overruns).
    pub resyncs: u64,
    /// Partial re-dumps that recover deletions the kernel did not notify.
    pub reconciles: u64,
    /// Objects that reconciles found gone without a notification.
    pub silent_deletions: u64,
    /// Changes the periodic link poll found (not announced by the kernel).
    pub silent_changes: u64,
    /// Netlink messages that did not decode.
    pub decode_errors: u64,
    /// XFRM migrations applied (the `xfrm-migrate` module).
    pub migrations: u64,
}

/// A blade's outgoing queue, shared by the processor (which enqueues) and
/// the blade's writer task (which sends). The names follow the seed.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Frames written to the socket.
    pub sent: AtomicU64,
    /// Frames written when nothing was queued before them.
    pub directly: AtomicU64,
    pub in_queue: AtomicU64,
    pub in_queue_bytes: AtomicU64,
    pub highest_in_queue: AtomicU64,
    /// Writes that found the socket full and had to wait.
    pub has_blocked: AtomicU64,
    /// Writes that took only part of a frame.
    pub partially_sent: AtomicU64,
    /// Write and connection errors.
    pub errors: AtomicU64,
    /// Objects the fast path rejected (per-object errors in acks).
    pub rejected: AtomicU64,
    pub acked: AtomicU64,
    pub connects: AtomicU64,
    /// Full replays sent (each connection, and each queue overflow).
    pub replays: AtomicU64,
    /// Times the queue passed its limit and was replaced by a replay.
    pub overflows: AtomicU64,
    pub connected: AtomicU64,
    /// Connected as a backup of the blade (another cache manager with a
    /// higher election id is its primary): nothing is sent.
    pub backup: AtomicU64,
    /// Sequence number of the last SyncEnd sent, and whether it was acked.
    /// `u64::MAX` while a replay is owed (the queue overflowed).
    pub sync_end_seq: AtomicU64,
    pub in_sync: AtomicU64,
    /// Set by the processor when the queue overflowed: the writer tells it
    /// (`BladeEvent::Drained`) when the queue next reaches empty.
    pub drain_wanted: AtomicBool,
}

impl QueueStats {
    pub fn enqueued(&self, frames: u64, bytes: u64) {
        let before = self.in_queue.fetch_add(frames, Relaxed);
        if before == 0 {
            self.directly.fetch_add(frames, Relaxed);
        }
        self.in_queue_bytes.fetch_add(bytes, Relaxed);
        self.highest_in_queue.fetch_max(before + frames, Relaxed);
    }

    /// Counts frames taken off the queue; true when that emptied a queue
    /// the processor waits on (`drain_wanted`), which is then cleared.
    /// SeqCst pairs with [`QueueStats::want_drain`]: either the writer
    /// sees the wish or the processor sees the empty queue.
    pub fn dequeued(&self, frames: u64, bytes: u64) -> bool {
        self.in_queue_bytes.fetch_sub(bytes, Relaxed);
        let left = self.in_queue.fetch_sub(frames, SeqCst) - frames;
        left == 0 && self.drain_wanted.swap(false, SeqCst)
    }

    /// Asks the writer to report the queue's next drain; true when it is
    /// already empty (then nothing will be reported).
    pub fn want_drain(&self) -> bool {
        self.drain_wanted.store(true, SeqCst);
        if self.in_queue.load(SeqCst) == 0 {
            self.drain_wanted.store(false, SeqCst);
            return true;
        }
        false
    }

    /// The queue overflowed: out of sync until a new replay is acked.
    pub fn lost_sync(&self) {
        self.sync_end_seq.store(u64::MAX, SeqCst);
        self.in_sync.store(0, SeqCst);
    }

    /// An ack of `seq` arrived: in sync when it covers the last SyncEnd.
    /// True when this ack made the blade in sync (it was not before).
    pub fn acked_up_to(&self, seq: u64) -> bool {
        self.acked.store(seq, Relaxed);
        loop {
            let end = self.sync_end_seq.load(SeqCst);
            if end == 0 || seq < end {
                return false;
            }
            let was = self.in_sync.swap(1, SeqCst);
            // The processor may have marked the blade out of sync (or
            // sent a new replay) between the load and the store.
            if self.sync_end_seq.load(SeqCst) == end {
                return was == 0;
            }
            self.in_sync.store(0, SeqCst);
        }
    }

    pub fn snapshot(&self) -> QueueSnapshot {
        let g = |a: &AtomicU64| a.load(Relaxed);
        QueueSnapshot {
            sent: g(&self.sent),
            directly: g(&self.directly),
            in_queue: g(&self.in_queue),
            in_queue_bytes: g(&self.in_queue_bytes),
            highest_in_queue: g(&self.highest_in_queue),
            has_blocked: g(&self.has_blocked),
            partially_sent: g(&self.partially_sent),
            errors: g(&self.errors),
            rejected: g(&self.rejected),
            acked: g(&self.acked),
            connects: g(&self.connects),
            replays: g(&self.replays),
            overflows: g(&self.overflows),
            connected: g(&self.connected) != 0,
            in_sync: g(&self.in_sync) != 0,
            backup: g(&self.backup) != 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    pub sent: u64,
    pub directly: u64,
    pub in_queue: u64,
    pub in_queue_bytes: u64,
    pub highest_in_queue: u64,
    pub has_blocked: u64,
    pub partially_sent: u64,
    pub errors: u64,
    pub rejected: u64,
    pub acked: u64,
    pub connects: u64,
    pub replays: u64,
    pub overflows: u64,
    pub connected: bool,
    pub in_sync: bool,
    /// Connected as a backup: another cache manager (a higher election
    /// id) is the blade's primary; nothing is sent until promoted.
    pub backup: bool,
}
