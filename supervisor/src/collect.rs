//! Answers from memory: a watcher per running child keeps one session open
//! to it (its console for an instance, an FPC query session for a blade)
//! and asks it every report interval; a sampler reads every child's
//! resources (memory, CPU time, threads) from /proc through sysinfo. What
//! they hear goes into the [`Store`], from which `Status()`,
//! `Statistics()` and the metrics are built without asking anyone.
//!
//! Invariants:
//! * Every exchange with a child (connect included) is bounded by the
//!   query timeout; a child that does not answer (SIGSTOP) costs its own
//!   watcher a timeout and nobody else anything.
//! * The store's lock is held for a map lookup or an `Arc` swap, never
//!   across I/O or while a report is built: readers take a snapshot of
//!   `Arc`s.
//! * A watcher belongs to one run of one child: the core cancels it when
//!   the child exits and forgets its entry; an update tagged with another
//!   run is dropped.
//! * A child is stale when its last good report is older than twice the
//!   report interval (or it has been watched that long without one). That
//!   is decided when a report is built, so a watcher stuck in its timeout
//!   shows its child stale at once, with the error of its last round (or
//!   "no report for N ms").
//! * An instance not yet in sync is asked every [`SYNC_POLL`] (its
//!   `SyncState` moves within that), one in sync every report interval. A
//!   watcher is also asked at once when nudged: the core nudges an
//!   instance's blades when its sync state changes, so their tables are
//!   fresh as soon as it says synced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fpc::Endpoint;
use fpsync_dbus::{ResourceTable, Resources, Unit};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

use crate::heard::{fragments, Data, Heard};
use crate::probe::{self, ConsoleSession, FpcSession, ProbeError, SyncInfo};

/// How often an instance not yet in sync is asked.
pub const SYNC_POLL: Duration = Duration::from_millis(250);

/// The console commands of one instance round: its sync state, its
/// queues, its interfaces' counters and its netlink sockets' counters.
const INSTANCE_COMMANDS: [&str; 4] = [
    probe::SYNC_COMMANDS[0],
    probe::SYNC_COMMANDS[1],
    "show stats --json",
    "show netlink --json",
];

/// Every watched child's last report.
#[derive(Debug, Clone, Default)]
pub struct Store(Arc<Mutex<BTreeMap<Unit, Arc<Heard>>>>);

impl Store {
    /// What was heard of every child, as of now.
    pub fn snapshot(&self) -> BTreeMap<Unit, Arc<Heard>> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Starts the entry of `unit`'s run `run`.
    pub fn begin(&self, unit: Unit, run: u64) {
        let heard = Heard {
            run,
            since: Instant::now(),
            at: None,
            error: None,
            data: None,
            fragments: Arc::default(),
        };
        if let Ok(mut m) = self.0.lock() {
            m.insert(unit, Arc::new(heard));
        }
    }

    pub fn forget(&self, unit: Unit) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&unit);
        }
    }

    /// Applies `f` to the entry of `unit` if it is still run `run`'s. The
    /// entry is cloned outside the lock and swapped in.
    fn update(&self, unit: Unit, run: u64, f: impl FnOnce(&mut Heard)) {
        let Some(current) = self.0.lock().ok().and_then(|m| m.get(&unit).cloned()) else {
            return;
        };
        if current.run != run {
            return;
        }
        let mut next = (*current).clone();
        f(&mut next);
        if let Ok(mut m) = self.0.lock() {
            if m.get(&unit).is_some_and(|h| h.run == run) {
                m.insert(unit, Arc::new(next));
            }
        }
    }
}

/// What one watcher round says, for the core.
#[derive(Debug)]
pub enum Round {
    /// An instance's sync state, or why it could not be read.
    Instance(Result<SyncInfo, ProbeError>),
    /// A blade's: reached, or why not.
    Blade(Result<(), ProbeError>),
}

/// One child's session.
enum Session {
    None,
    Console(ConsoleSession),
    Fpc(FpcSession),
}

/// What one watcher watches.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub unit: Unit,
    pub run: u64,
    /// Blades: where fpd listens.
    pub endpoint: Option<Endpoint>,
    /// Remote blades: the namespace they are dialled from (their
    /// instance's); None: fpsyncd's own.
    pub netns: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub store: Store,
    /// Asks for a round now.
    pub nudge: Arc<tokio::sync::Notify>,
}

impl Watcher {
    /// Asks the child every interval until `token` is cancelled; each
    /// round's outcome also goes to `on_round` (an instance's sync state,
    /// a blade's reachability).
    pub async fn run(self, token: CancellationToken, mut on_round: impl FnMut(Round) + Send) {
        self.store.begin(self.unit, self.run);
        let mut session = Session::None;
        loop {
            let round = tokio::time::timeout(self.timeout, self.round(&mut session));
            let result = tokio::select! {
                r = round => r.unwrap_or(Err(ProbeError::Timeout(self.timeout))),
                _ = token.cancelled() => return,
            };
            let mut in_sync = true;
            match result {
                Ok(data) => {
                    match &data {
                        Data::Instance { sync, .. } => {
                            in_sync = sync.sync_state() == "synced";
                            on_round(Round::Instance(Ok(sync.clone())));
                        }
                        Data::Blade { .. } => on_round(Round::Blade(Ok(()))),
                    }
                    // Rendered here, once per round, not per call.
                    let fragments = Arc::new(fragments(&data));
                    self.store.update(self.unit, self.run, |h| {
                        h.at = Some(Instant::now());
                        h.error = None;
                        h.data = Some(Arc::new(data));
                        h.fragments = fragments;
                    });
                }
                Err(e) => {
                    // A session that failed is not trusted again.
                    session = Session::None;
                    let text = e.to_string();
                    on_round(match self.unit {
                        Unit::Instance(_) => Round::Instance(Err(e)),
                        Unit::Blade(_) => Round::Blade(Err(e)),
                    });
                    self.store
                        .update(self.unit, self.run, |h| h.error = Some(text));
                }
            }
            let pause = if in_sync {
                self.interval
            } else {
                self.interval.min(SYNC_POLL)
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.nudge.notified() => {}
                _ = token.cancelled() => return,
            }
        }
    }

    /// One round on the session, opened (or reopened once, when a kept one
    /// turns out closed: the console closes connections idle for 5 s, fpd
    /// may close its idlest query connection) as need be. Not bounded
    /// here: `run` bounds it.
    async fn round(&self, session: &mut Session) -> Result<Data, ProbeError> {
        let kept = !matches!(session, Session::None);
        match self.ask(session).await {
            Err(ProbeError::Protocol(_)) if kept => {
                *session = Session::None;
                self.ask(session).await
            }
            other => other,
        }
    }

    async fn ask(&self, session: &mut Session) -> Result<Data, ProbeError> {
        match (self.unit, &self.endpoint) {
            (Unit::Instance(id), _) => {
                if !matches!(session, Session::Console(_)) {
                    *session = Session::Console(ConsoleSession::connect(id).await?);
                }
                let Session::Console(c) = session else {
                    unreachable!("just set");
                };
                let answers = c.ask(&INSTANCE_COMMANDS).await?;
                let sync = probe::parse_sync_info(&answers[0], &answers[1])?;
                let json = |i: usize| {
                    probe::parse_json(INSTANCE_COMMANDS[i], &answers[i]).map_err(|e| e.to_string())
                };
                Ok(Data::Instance {
                    sync,
                    stats: json(2),
                    netlink: json(3),
                })
            }
            (Unit::Blade(id), Some(ep)) => {
                if !matches!(session, Session::Fpc(_)) {
                    let s = FpcSession::connect_from(ep, self.netns.as_deref()).await?;
                    if s.blade != id {
                        return Err(ProbeError::Protocol(format!(
                            "{ep} serves blade {}, not {id}",
                            s.blade
                        )));
                    }
                    *session = Session::Fpc(s);
                }
                let Session::Fpc(f) = session else {
                    unreachable!("just set");
                };
                Ok(Data::Blade {
                    counters: f.counters().await?,
                })
            }
            (Unit::Blade(id), None) => Err(ProbeError::Protocol(format!(
                "blade {id} has no FPC endpoint"
            ))),
        }
    }
}

/// Reads the resources of `pids` (children's main pids) from /proc. A
/// fresh `System` each time: the figures read are totals, so no state is
/// needed between samples, and nothing accumulates.
pub fn sample(pids: &[(Unit, u32)]) -> BTreeMap<Unit, Resources> {
    let Ok(mut sys) = System::new() else {
        return BTreeMap::new();
    };
    let wanted: Vec<Pid> = pids.iter().map(|(_, p)| Pid::from_u32(*p)).collect();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&wanted),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    pids.iter()
        .filter_map(|(unit, pid)| {
            let p = sys.process(Pid::from_u32(*pid))?;
            Some((
                *unit,
                Resources {
                    memory_current: p.memory(),
                    cpu_usage_nsec: p.accumulated_cpu_time().saturating_mul(1_000_000),
                    // sysinfo lists the threads other than the main one.
                    tasks_current: p.tasks().map_or(1, |t| t.len() as u64 + 1),
                },
            ))
        })
        .collect()
}

/// Samples the resources of the children `pids` returns every `interval`
/// (and at once when `changed` is notified: a child started or exited)
/// into `table`, on the blocking pool (reading /proc blocks), until
/// `token` is cancelled.
pub async fn sample_resources(
    pids: impl Fn() -> Vec<(Unit, u32)> + Send,
    table: ResourceTable,
    interval: Duration,
    changed: Arc<tokio::sync::Notify>,
    token: CancellationToken,
) {
    loop {
        let now = pids();
        let read = tokio::task::spawn_blocking(move || sample(&now));
        let sampled = tokio::select! {
            r = read => r.unwrap_or_default(),
            _ = token.cancelled() => return,
        };
        if let Ok(mut t) = table.write() {
            *t = sampled;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = changed.notified() => {}
            _ = token.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_twice_the_interval_with_the_last_error() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(100);
        let mut h = Heard {
            run: 1,
            since: t0,
            at: Some(t0),
            error: None,
            data: None,
            fragments: Arc::default(),
        };
        assert_eq!(h.stale(t0 + Duration::from_millis(150), interval), None);
        let s = h.stale(t0 + Duration::from_millis(250), interval);
        assert_eq!(s.as_deref(), Some("no report for 250 ms"));
        h.error = Some("no answer within 1s".into());
        let s = h.stale(t0 + Duration::from_millis(250), interval);
        assert_eq!(s.as_deref(), Some("no answer within 1s"));
        // Never heard: counted from when the watch began.
        h.at = None;
        assert_eq!(h.stale(t0 + Duration::from_millis(150), interval), None);
    }

    #[test]
    fn an_update_of_another_run_is_dropped() {
        let store = Store::default();
        let unit = Unit::Blade(3);
        store.begin(unit, 2);
        store.update(unit, 1, |h| h.error = Some("old".into()));
        assert!(store.snapshot()[&unit].error.is_none());
        store.update(unit, 2, |h| h.error = Some("new".into()));
        assert_eq!(store.snapshot()[&unit].error.as_deref(), Some("new"));
        store.forget(unit);
        assert!(store.snapshot().is_empty());
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let got = sample(&[(Unit::Instance(0), me)]);
        let r = got[&Unit::Instance(0)];
        assert!(r.memory_current > 0 && r.memory_current != u64::MAX);
        assert!(r.tasks_current >= 1);
        // A pid that does not exist is left out (systemd's "not known").
        let none = sample(&[(Unit::Blade(1), u32::MAX - 1)]);
        assert!(none.is_empty());
    }
}
