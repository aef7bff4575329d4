//! fpd's limits on what its FPC peers may hold (connections, time,
//! memory), the register of admitted connections, and the refusals'
//! counters and logs.
//!
//! Invariants:
//! * At most [`Limits::max_connections`] connections are admitted at once.
//!   One more evicts the oldest connection that has not said Hello, else
//!   the query connection idle longest; a sync session or a query being
//!   answered is never evicted. So the cache manager can always connect,
//!   however many idle clients there are, without a reserved slot that
//!   idle clients could also take. With nothing to evict, the new
//!   connection is refused with an Error frame.
//! * Every refusal is counted (fpd's counters, as `fpsync-check
//!   --dump-fastpath` and the D-Bus `Counters` show them) and logged at
//!   most once per [`LOG_EVERY`] for each reason, with how many went
//!   unlogged meanwhile: a flood of refusals does not flood the log.
//! * The register's lock is held for a lookup or a scan of at most
//!   `max_connections` entries, never across I/O or an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often one reason of refusal is logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits of one fpd, each with its command-line option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `--max-connections`: connections admitted at once, every role.
    pub max_connections: usize,
    /// `--hello-timeout`: how long a new connection has to say Hello.
    pub hello_timeout: Duration,
    /// `--idle-timeout`: how long a query connection may stay silent (or
    /// take to send one frame, or to take one dump) before it is closed.
    pub idle_timeout: Duration,
    /// `--write-timeout`: how long one frame may take to go to a peer that
    /// does not read; then the peer is dropped.
    pub write_timeout: Duration,
    /// `--max-query-frame`: the largest frame body accepted before Hello
    /// and on query connections (their frames are a few bytes). A sync
    /// session may send up to the protocol's `MAX_BODY` (8 MiB).
    pub max_query_frame: usize,
    /// `--max-dumps`: dumps in progress at once. Each holds a copy of the
    /// tables (their own compact form) while it goes out; more wait.
    pub max_dumps: usize,
    /// `--keepalive`: how often a sync session is sent a Keepalive.
    pub keepalive: Duration,
    /// `--peer-timeout`: a sync peer silent this long (no frame, not even
    /// a Keepalive) is taken for gone: a cut link, a frozen host.
    pub peer_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            hello_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_query_frame: 16 * 1024,
            max_dumps: 4,
            keepalive: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
        }
    }
}

/// What an admitted connection is doing, for the choice of whom to evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted, no Hello yet.
    Hello,
    /// A query connection between requests.
    Idle,
    /// A query connection answering a request.
    Busy,
    /// A sync session (owner of the tables or about to be).
    Sync,
}

impl Phase {
    /// Lower goes first; `None`: never evicted.
    fn eviction_rank(self) -> Option<u8> {
        match self {
            Phase::Hello => Some(0),
            Phase::Idle => Some(1),
            Phase::Busy | Phase::Sync => None,
        }
    }
}

struct Entry {
    phase: Phase,
    /// When the phase began (for `Idle`: the last activity).
    since: Instant,
    evict: CancellationToken,
}

/// The admitted connections.
pub(crate) struct Register {
    max: usize,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// A connection over the limit with nothing to evict.
#[derive(Debug)]
pub(crate) struct Full;

impl Register {
    pub(crate) fn new(max: usize) -> Self {
        Register {
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits `conn` (cancelled through `evict` if evicted later); at the
    /// limit, evicts one connection first. Returns the evicted one.
    pub(crate) fn admit(&self, conn: u64, evict: CancellationToken) -> Result<Option<u64>, Full> {
        let mut entries = self.entries();
        let evicted = if entries.len() >= self.max {
            Some(Self::evict_from(&mut entries).ok_or(Full)?)
        } else {
            None
        };
        entries.insert(
            conn,
            Entry {
                phase: Phase::Hello,
                since: Instant::now(),
                evict,
            },
        );
        Ok(evicted)
    }

    /// Evicts one connection if any may go (to free a descriptor).
    pub(crate) fn evict_one(&self) -> Option<u64> {
        Self::evict_from(&mut self.entries())
    }

    fn evict_from(entries: &mut HashMap<u64, Entry>) -> Option<u64> {
        let victim = entries
            .iter()
            .filter_map(|(conn, e)| Some(((e.phase.eviction_rank()?, e.since), *conn)))
            .min()
            .map(|(_, conn)| conn)?;
        if let Some(e) = entries.remove(&victim) {
            e.evict.cancel();
        }
        Some(victim)
    }

    pub(crate) fn set(&self, conn: u64, phase: Phase) {
        if let Some(e) = self.entries().get_mut(&conn) {
            e.phase = phase;
            e.since = Instant::now();
        }
    }

    pub(crate) fn remove(&self, conn: u64) {
        self.entries().remove(&conn);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }
}

/// Why fpd turned a peer away or dropped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// At the connection limit with nothing to evict.
    ConnectionLimit,
    /// Closed to make room for a new connection.
    Evicted,
    /// A frame announced a body over the connection's bound.
    Oversize,
    HelloTimeout,
    IdleTimeout,
    WriteTimeout,
    /// A sync Hello for another blade.
    WrongBlade,
    /// A sync Hello from another instance while the blade has an owner.
    BladeOwned,
    /// accept(2) failed (EMFILE and the like).
    AcceptError,
    /// A TCP peer failed the TLS handshake: no certificate, one from
    /// another CA, not TLS at all, a replay of another session's bytes.
    Tls,
    /// A write from a sync session that is not the primary.
    NotPrimary,
    /// A sync peer silent for the peer timeout.
    PeerTimeout,
}

impl Refusal {
    const ALL: [Refusal; 12] = [
        Refusal::ConnectionLimit,
        Refusal::Evicted,
        Refusal::Oversize,
        Refusal::HelloTimeout,
        Refusal::IdleTimeout,
        Refusal::WriteTimeout,
        Refusal::WrongBlade,
        Refusal::BladeOwned,
        Refusal::AcceptError,
        Refusal::Tls,
        Refusal::NotPrimary,
        Refusal::PeerTimeout,
    ];

    /// The name of its counter.
    pub(crate) fn counter(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => "refused_connections",
            Refusal::Evicted => "evicted_connections",
            Refusal::Oversize => "oversize_frames",
            Refusal::HelloTimeout => "hello_timeouts",
            Refusal::IdleTimeout => "idle_timeouts",
            Refusal::WriteTimeout => "write_timeouts",
            Refusal::WrongBlade => "refused_wrong_blade",
            Refusal::BladeOwned => "refused_blade_owned",
            Refusal::AcceptError => "accept_errors",
            Refusal::Tls => "refused_tls",
            Refusal::NotPrimary => "refused_not_primary",
            Refusal::PeerTimeout => "peer_timeouts",
        }
    }
}

/// When a reason was last logged, and how many went unlogged since.
#[derive(Clone, Copy, Default)]
struct LogState {
    last: Option<Instant>,
    unlogged: u64,
}

/// The refusals' counters and their rate-limited log.
#[derive(Default)]
pub(crate) struct Refusals {
    counts: [AtomicU64; Refusal::ALL.len()],
    logs: Mutex<[LogState; Refusal::ALL.len()]>,
}

impl Refusals {
    /// Counts one refusal and logs `message` (a warning) unless this
    /// reason was logged less than [`LOG_EVERY`] ago.
    pub(crate) fn note(&self, reason: Refusal, message: impl FnOnce() -> String) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = self.due(reason, Instant::now()) {
            let message = message();
            if unlogged == 0 {
                warn!(reason = reason.counter(), "{message}");
            } else {
                warn!(
                    reason = reason.counter(),
                    unlogged, "{message} ({unlogged} more of these since the last report)"
                );
            }
        }
    }

    /// Whether a refusal for `reason` at `now` is logged, with how many
    /// were not since the last one that was.
    fn due(&self, reason: Refusal, now: Instant) -> Option<u64> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut logs[reason as usize];
        match state.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                state.unlogged += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.unlogged))
            }
        }
    }

    /// Every refusal counter, by name.
    pub(crate) fn counters(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        Refusal::ALL.iter().map(|r| {
            (
                r.counter().to_owned(),
                self.counts[*r as usize].load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_oldest_pre_hello_then_the_longest_idle_query() {
        let reg = Register::new(4);
        let tokens: Vec<CancellationToken> = (0..6).map(|_| CancellationToken::new()).collect();
        for conn in 0..4 {
            assert_eq!(
                reg.admit(conn, tokens[conn as usize].clone()).unwrap(),
                None
            );
        }
        reg.set(0, Phase::Sync);
        reg.set(1, Phase::Idle);
        reg.set(3, Phase::Idle);
        // 2 is the only one without Hello: it goes first.
        assert_eq!(reg.admit(4, tokens[4].clone()).unwrap(), Some(2));
        assert!(tokens[2].is_cancelled());
        reg.set(4, Phase::Busy);
        // Then the query idle longest (1), never the sync session.
        assert_eq!(reg.admit(5, tokens[5].clone()).unwrap(), Some(1));
        reg.set(5, Phase::Sync);
        assert_eq!(reg.evict_one(), Some(3));
        // Left: a sync session, a busy query, a second sync: none may go.
        assert_eq!(reg.evict_one(), None);
        assert_eq!(reg.len(), 3);
        assert!(!tokens[0].is_cancelled() && !tokens[4].is_cancelled());
        reg.remove(4);
        assert_eq!(reg.admit(6, CancellationToken::new()).unwrap(), None);
        reg.set(6, Phase::Sync);
        assert_eq!(reg.admit(7, CancellationToken::new()).unwrap(), None);
        reg.set(7, Phase::Busy);
        assert!(reg.admit(8, CancellationToken::new()).is_err());
    }

    #[test]
    fn refusals_are_counted_always_and_logged_once_per_period() {
        let r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.due(Refusal::Oversize, t0), Some(0));
        for i in 1..=5 {
            assert_eq!(r.due(Refusal::Oversize, t0 + Duration::from_secs(i)), None);
        }
        // Another reason has its own period.
        assert_eq!(r.due(Refusal::Evicted, t0), Some(0));
        assert_eq!(r.due(Refusal::Oversize, t0 + LOG_EVERY), Some(5));
        for _ in 0..3 {
            r.note(Refusal::IdleTimeout, || "idle".into());
        }
        let counters: HashMap<String, u64> = r.counters().collect();
        assert_eq!(counters["idle_timeouts"], 3);
        assert_eq!(counters["oversize_frames"], 0);
        assert_eq!(counters.len(), Refusal::ALL.len());
    }
}
