//! The supervisor's core: one task that owns every child's state, starts,
//! watches and restarts children, and answers the commands the D-Bus
//! adapters send. Nothing here knows D-Bus: state goes out as [`Publish`]
//! messages, commands come in as [`Request`]s.
//!
//! Invariants:
//! * Only this task changes a child's state, and it never waits on I/O:
//!   probes, queries and console calls run as tasks that report back with
//!   events tagged by the child's run number, so a late report about an
//!   earlier run is ignored.
//! * `Status()` and `Statistics()` are built here, from memory: a
//!   watcher per running child (`collect`), started when it is ready and
//!   cancelled when it exits, keeps what it last heard in the store, and a
//!   sampler keeps every child's resources; the answer is built from the
//!   views, the store and the resources without asking any child.
//! * Both answers are built ahead of the calls, every [`answer_period`]
//!   (a tenth of the report interval, 10 to 100 ms), into the
//!   [`AnswerTable`] the supervisor object replies from without waiting on
//!   this task. A change of any child's state (anything its bus object or
//!   the views show) or of the supervisor's state withdraws them at once,
//!   before any reply to the method that caused it, so a call after such a
//!   change is answered here, fresh, until the next build: what a prebuilt
//!   answer can lag by is the figures and their ages, by one period.
//! * Children are spawned from the thread this task runs on, which must be
//!   the process's main thread (see `process`).
//! * Start order: blades first; an instance starts once none of its blades
//!   is still activating. Stop order (shutdown): instances first, then
//!   blades. Stopping or restarting one child never touches another.
//! * A method replies once, when its work is done: Start when the child is
//!   ready (its console or FPC socket answers as that pid/blade), Stop when
//!   it has exited.
//! * A remote blade (`BLADE_<B>_ENDPOINT`) is no process: it is watched
//!   from the start, for the whole life of fpsyncd (run 1), never started,
//!   stopped or restarted. Each round of its watcher says whether it was
//!   reached: active/remote when it was, activating/unreachable (with the
//!   reason) when not, so Status and Statistics carry a per-blade error
//!   instead of failing or waiting. Instances do not wait for remote
//!   blades before they start (their cmgrd reconnects by itself).
//! * A blade's SyncState is its instance's word on that blade's queue
//!   (`show queue`): synced (connected, replayed), resyncing (connected,
//!   replaying), backup (connected as a backup: another control plane's
//!   cache manager, of a higher election id, is its primary),
//!   disconnected, or unknown (no instance report).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fpc::Endpoint;
use fpsync_dbus::{
    Answer, AnswerTable, ChildProps, Command, CommandError, Request, ResourceTable, Unit,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::collect::{self, Store, Watcher};
use crate::config::Config;
use crate::metrics;
use crate::notify::{self, Watch};
use crate::policy::{Outcome, StartHistory};
use crate::probe;
use crate::process::{self, Handle, Registry};
use crate::report::{self, ChildView};

/// How often the prebuilt answers are rebuilt: a tenth of the report
/// interval, between 10 and 100 ms.
pub fn answer_period(report_interval: Duration) -> Duration {
    (report_interval / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// How often a starting child is asked whether it is ready.
const READY_POLL: Duration = Duration::from_millis(20);

type Reply = oneshot::Sender<Result<Answer, CommandError>>;

/// What the bus should show: sent to the publisher task, in order.
#[derive(Debug)]
pub enum Publish {
    Child(Unit, ChildProps),
    State(String),
}

/// Where the children's programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub cmgrd: PathBuf,
    pub fpd: PathBuf,
}

#[derive(Debug)]
enum Event {
    Exited {
        unit: Unit,
        run: u64,
        outcome: Outcome,
    },
    Ready {
        unit: Unit,
        run: u64,
    },
    Synced {
        unit: Unit,
        run: u64,
        info: Result<probe::SyncInfo, probe::ProbeError>,
    },
    /// A remote blade's watcher round: reached, or why not.
    Reached {
        unit: Unit,
        run: u64,
        result: Result<(), String>,
    },
}

struct Child {
    unit: Unit,
    program: PathBuf,
    args: Vec<String>,
    active: &'static str,
    sub: &'static str,
    result: &'static str,
    handle: Option<Handle>,
    run: u64,
    n_restarts: u32,
    changed_at: u64,
    history: StartHistory,
    sync: Option<probe::SyncInfo>,
    /// Cancels the collector's watcher of the current run.
    watcher: Option<CancellationToken>,
    /// Asks that watcher for a round now.
    nudge: Arc<tokio::sync::Notify>,
    start_waiters: Vec<Reply>,
    stop_waiters: Vec<Reply>,
    restart_at: Option<Instant>,
    start_deadline: Option<Instant>,
    stop_deadline: Option<Instant>,
    /// SIGKILL was sent after the stop timeout.
    killed: bool,
    /// Start again once the current stop completes (Restart).
    start_after_stop: bool,
    /// Waiting for its blades before its first start.
    pending: bool,
    /// The next start is an automatic restart (counted in NRestarts).
    restarting: bool,
    /// The IPsec HA switch the operator set last, re-applied after a restart.
    ipsec_ha: Option<bool>,
    netns: Option<String>,
    peers: Vec<u32>,
    endpoint: Option<Endpoint>,
    last_failure: Option<String>,
    /// A remote blade: watched, never run.
    remote: bool,
    /// A remote blade: why the last round could not reach it.
    unreachable: Option<String>,
    /// A blade: what its instance last said of its queue.
    blade_sync: Option<&'static str>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Child {
    fn new(unit: Unit, program: PathBuf, args: Vec<String>) -> Child {
        Child {
            unit,
            program,
            args,
            active: "inactive",
            sub: "dead",
            result: "success",
            handle: None,
            run: 0,
            n_restarts: 0,
            changed_at: now_us(),
            history: StartHistory::default(),
            sync: None,
            watcher: None,
            nudge: Arc::default(),
            start_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            restart_at: None,
            start_deadline: None,
            stop_deadline: None,
            killed: false,
            start_after_stop: false,
            pending: false,
            restarting: false,
            ipsec_ha: None,
            netns: None,
            peers: Vec::new(),
            endpoint: None,
            last_failure: None,
            remote: false,
            unreachable: None,
            blade_sync: None,
        }
    }

    fn pid(&self) -> u32 {
        self.handle.as_ref().map(|h| h.pid).unwrap_or(0)
    }

    fn is_running(&self) -> bool {
        self.handle.is_some()
    }

    fn sync_state(&self) -> String {
        match (&self.unit, &self.sync) {
            (Unit::Instance(_), Some(s)) if self.active == "active" => s.sync_state().to_owned(),
            (Unit::Instance(_), _) => "unknown".into(),
            (Unit::Blade(_), _) => self.blade_sync.unwrap_or("unknown").to_owned(),
        }
    }

    fn props(&self) -> ChildProps {
        ChildProps {
            active_state: self.active.into(),
            sub_state: self.sub.into(),
            result: self.result.into(),
            main_pid: self.pid(),
            n_restarts: self.n_restarts,
            state_change_timestamp: self.changed_at,
            sync_state: self.sync_state(),
            net_namespace: self.netns.clone().unwrap_or_default(),
            peers: self.peers.clone(),
            endpoint: self
                .endpoint
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        }
    }

    fn view(&self) -> ChildView {
        let instance = matches!(self.unit, Unit::Instance(_));
        ChildView {
            kind: self.unit.kind(),
            id: self.unit.id(),
            active_state: self.active,
            sub_state: self.sub,
            result: self.result,
            main_pid: self.pid(),
            n_restarts: self.n_restarts,
            state_change_timestamp: self.changed_at,
            sync_state: Some(self.sync_state()),
            netns: if instance {
                Some(self.netns.clone().unwrap_or_default())
            } else {
                None
            },
            blades: if instance {
                self.peers.clone()
            } else {
                Vec::new()
            },
            instance: if instance {
                None
            } else {
                self.peers.first().copied()
            },
            endpoint: self.endpoint.as_ref().map(|e| e.to_string()),
            last_failure: self.last_failure.clone(),
            remote: self.remote,
            unreachable: self.unreachable.clone(),
            unit: Some(self.unit),
            run: self.run,
        }
    }

    fn log_name(&self) -> String {
        match self.unit {
            Unit::Instance(i) => format!("cmgrd{i}"),
            Unit::Blade(b) => format!("fpd{b}"),
        }
    }
}

/// Logs with the child's identity as a structured field (INSTANCE or BLADE
/// in the journal).
macro_rules! child_log {
    ($level:ident, $unit:expr, $($arg:tt)+) => {
        match $unit {
            Unit::Instance(id) => $level!(instance = id, $($arg)+),
            Unit::Blade(id) => $level!(blade = id, $($arg)+),
        }
    };
}

pub struct Core {
    config: Arc<Config>,
    children: BTreeMap<Unit, Child>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    publish: mpsc::UnboundedSender<Publish>,
    registry: Registry,
    /// Cancels the tasks the core spawned (probes, queries).
    tasks: CancellationToken,
    stopping: bool,
    /// Until every child has been started once.
    starting: bool,
    state: String,
    bus_address: String,
    /// What the watchers heard.
    store: Store,
    /// Every child's resources, sampled; read by the bus objects too.
    resources: ResourceTable,
    /// The running children's pids, for the sampler.
    pids: Arc<std::sync::Mutex<Vec<(Unit, u32)>>>,
    /// Tells the sampler that `pids` changed.
    pids_changed: Arc<tokio::sync::Notify>,
    /// systemd's notification socket and watchdog, when it listens.
    watch: Option<Watch>,
    /// `Status()` and `Statistics()`, built ahead (see the invariants).
    answers: AnswerTable,
    /// When they were last built.
    answers_at: Option<Instant>,
}

impl Core {
    pub fn new(
        config: Arc<Config>,
        programs: &Programs,
        publish: mpsc::UnboundedSender<Publish>,
        bus_address: String,
    ) -> Core {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut children = BTreeMap::new();
        for b in &config.blades {
            let unit = Unit::Blade(b.id);
            let mut c = Child::new(unit, programs.fpd.clone(), config.fpd_args(b));
            c.remote = b.remote;
            c.peers = b.instance.into_iter().collect();
            c.endpoint = Some(b.endpoint.clone());
            children.insert(unit, c);
        }
        for i in &config.instances {
            let unit = Unit::Instance(i.id);
            let mut c = Child::new(unit, programs.cmgrd.clone(), config.cmgrd_args(i));
            c.netns = i.netns.clone();
            c.peers = i.blades.clone();
            c.pending = true;
            children.insert(unit, c);
        }
        Core {
            registry: Registry::new(&config.run_dir),
            config,
            children,
            events_tx,
            events_rx,
            publish,
            tasks: CancellationToken::new(),
            stopping: false,
            starting: true,
            state: "starting".into(),
            bus_address,
            store: Store::default(),
            resources: ResourceTable::default(),
            pids: Arc::default(),
            pids_changed: Arc::default(),
            watch: None,
            answers: AnswerTable::default(),
            answers_at: None,
        }
    }

    /// Sets the bus address shown by Status.
    pub fn with_bus_address(mut self, address: String) -> Core {
        self.bus_address = address;
        self
    }

    /// Tells systemd how the children are, from the main loop.
    pub fn with_watch(mut self, watch: Option<Watch>) -> Core {
        self.watch = watch;
        self
    }

    /// Every child's resources, as the sampler reads them.
    pub fn resources(&self) -> ResourceTable {
        self.resources.clone()
    }

    /// The prebuilt `Status()` and `Statistics()`, for the bus object.
    pub fn answers(&self) -> AnswerTable {
        self.answers.clone()
    }

    /// The initial properties of every child, for the bus objects.
    pub fn initial_props(&self) -> Vec<(Unit, ChildProps)> {
        self.children
            .values()
            .map(|c| (c.unit, c.props()))
            .collect()
    }

    /// Runs until `shutdown` is cancelled and every child has stopped.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        for name in self.registry.clean_leftovers() {
            warn!("killed {name}, left running by a previous fpsyncd");
        }
        let pids = self.pids.clone();
        tokio::spawn(collect::sample_resources(
            move || pids.lock().map(|p| p.clone()).unwrap_or_default(),
            self.resources.clone(),
            self.config.report_interval,
            self.pids_changed.clone(),
            self.tasks.clone(),
        ));
        let blades: Vec<Unit> = self
            .children
            .keys()
            .copied()
            .filter(|u| matches!(u, Unit::Blade(_)))
            .collect();
        for unit in blades {
            if self.children[&unit].remote {
                self.watch_remote(unit);
            } else {
                self.start(unit, None);
            }
        }
        loop {
            self.start_pending();
            self.advance_shutdown();
            self.update_state();
            self.notify_progress();
            if self.stopping && self.children.values().all(|c| !c.is_running()) {
                break;
            }
            self.build_answers_if_due();
            let deadline = self.next_deadline();
            tokio::select! {
                _ = shutdown.cancelled(), if !self.stopping => self.begin_shutdown(),
                Some(request) = requests.recv() => self.handle(request),
                Some(event) = self.events_rx.recv() => self.on_event(event),
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timers(),
            }
        }
        self.tasks.cancel();
        for c in self.children.values_mut() {
            for w in c.start_waiters.drain(..).chain(c.stop_waiters.drain(..)) {
                let _ = w.send(Err(CommandError::ShuttingDown));
            }
        }
        // Answer what is still queued, then stop listening.
        requests.close();
        while let Ok(r) = requests.try_recv() {
            let _ = r.reply.send(Err(CommandError::ShuttingDown));
        }
        self.registry.remove();
        info!("every child stopped");
    }

    fn publish_child(&mut self, unit: Unit) {
        self.withdraw_answers();
        if let Some(c) = self.children.get(&unit) {
            let _ = self.publish.send(Publish::Child(unit, c.props()));
        }
    }

    fn set_state(&mut self, unit: Unit, active: &'static str, sub: &'static str) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.active != active || c.sub != sub {
            c.active = active;
            c.sub = sub;
            c.changed_at = now_us();
        }
        self.publish_child(unit);
    }

    fn record_children(&self) {
        let running = || self.children.values().filter(|c| c.is_running());
        let live: Vec<(u32, String)> = running().map(|c| (c.pid(), c.log_name())).collect();
        self.registry.write(&live);
        if let Ok(mut p) = self.pids.lock() {
            *p = running().map(|c| (c.unit, c.pid())).collect();
        }
        self.pids_changed.notify_one();
    }

    // ---- starting --------------------------------------------------------

    /// Begins watching remote blade `unit` (its only run).
    fn watch_remote(&mut self, unit: Unit) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        c.run = 1;
        child_log!(
            info,
            unit,
            "{} is remote, at {}: watched, not started",
            c.log_name(),
            c.endpoint
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        self.set_state(unit, "activating", "connecting");
        self.spawn_watcher(unit);
    }

    /// A remote blade's watcher reached it, or not.
    fn on_reached(&mut self, unit: Unit, run: u64, result: Result<(), String>) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.run != run || !c.remote {
            return;
        }
        match result {
            Ok(()) => {
                if c.active != "active" {
                    child_log!(
                        info,
                        unit,
                        "{} reached at {}",
                        c.log_name(),
                        c.endpoint
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_default()
                    );
                }
                // Only a change is published (and withdraws the answers).
                let changed = c.unreachable.take().is_some() || c.sub != "remote";
                if changed {
                    self.set_state(unit, "active", "remote");
                }
            }
            Err(reason) => {
                let changed = c.unreachable.as_ref() != Some(&reason) || c.sub != "unreachable";
                if c.unreachable.as_ref() != Some(&reason) {
                    child_log!(warn, unit, "{} unreachable: {reason}", c.log_name());
                    c.last_failure = Some(format!("unreachable: {reason}"));
                }
                c.unreachable = Some(reason);
                if changed {
                    self.set_state(unit, "activating", "unreachable");
                }
            }
        }
    }

    /// What instance `unit`'s report says of each of its blades' queues.
    fn update_blade_sync(&mut self, unit: Unit) {
        let Some(c) = self.children.get(&unit) else {
            return;
        };
        let queue = c
            .sync
            .as_ref()
            .filter(|_| c.active == "active")
            .map(|s| s.queue.clone());
        for b in c.peers.clone() {
            let state = queue.as_ref().map(|q| blade_queue_state(q, b));
            let Some(bc) = self.children.get_mut(&Unit::Blade(b)) else {
                continue;
            };
            if bc.blade_sync != state {
                bc.blade_sync = state;
                self.publish_child(Unit::Blade(b));
            }
        }
    }

    /// Starts `unit` now (the start limit permitting); `waiter` is answered
    /// once it is ready or has failed.
    fn start(&mut self, unit: Unit, waiter: Option<Reply>) {
        let policy = self.config.policy.clone();
        let start_timeout = self.config.start_timeout;
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.remote {
            if let Some(w) = waiter {
                let _ = w.send(Err(remote_refusal(c)));
            }
            return;
        }
        c.pending = false;
        c.restart_at = None;
        if let Some(w) = waiter {
            c.start_waiters.push(w);
        }
        let now = Instant::now();
        if !policy.admit(&mut c.history, now) {
            c.restarting = false;
            c.result = "start-limit-hit";
            c.last_failure = Some(format!(
                "start limit hit: {} starts within {:?}",
                policy.burst, policy.interval
            ));
            child_log!(
                error,
                unit,
                "{}: start limit hit ({} starts within {:?}); failed until reset",
                c.log_name(),
                policy.burst,
                policy.interval
            );
            let reason = c.last_failure.clone().unwrap_or_default();
            for w in c.start_waiters.drain(..) {
                let _ = w.send(Err(CommandError::StartFailed {
                    unit,
                    reason: reason.clone(),
                }));
            }
            self.set_state(unit, "failed", "start-limit-hit");
            return;
        }
        let mut cmd = process::command(&c.program, &c.args);
        cmd.stdin(Stdio::null());
        // Children join fpsyncd's bus under their own names.
        if !self.bus_address.is_empty() {
            cmd.env("FPSYNC_BUS_ADDRESS", &self.bus_address);
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                c.handle = Some(process::handle(pid));
                c.run += 1;
                c.sync = None;
                c.killed = false;
                c.start_deadline = Some(now + start_timeout);
                if std::mem::take(&mut c.restarting) {
                    c.n_restarts += 1;
                }
                let run = c.run;
                child_log!(info, unit, "{} started (pid {pid})", c.log_name());
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    let outcome = match child.wait().await {
                        Ok(status) => Outcome::from_status(status),
                        Err(_) => Outcome::ExitCode(-1),
                    };
                    let _ = events.send(Event::Exited { unit, run, outcome });
                });
                self.spawn_ready_probe(unit, run, pid);
                self.set_state(unit, "activating", "start");
                self.record_children();
            }
            Err(e) => {
                let reason = format!("cannot run {}: {e}", c.program.display());
                child_log!(error, unit, "{reason}");
                c.last_failure = Some(reason.clone());
                for w in c.start_waiters.drain(..) {
                    let _ = w.send(Err(CommandError::StartFailed {
                        unit,
                        reason: reason.clone(),
                    }));
                }
                self.after_failure(unit, "resources");
            }
        }
    }

    fn spawn_ready_probe(&self, unit: Unit, run: u64, pid: u32) {
        let events = self.events_tx.clone();
        let token = self.tasks.clone();
        let timeout = self.config.start_timeout;
        let endpoint = self.children.get(&unit).and_then(|c| c.endpoint.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + timeout;
            let probe_timeout = Duration::from_millis(500);
            while Instant::now() < deadline && !token.is_cancelled() {
                let ready = match (unit, &endpoint) {
                    (Unit::Instance(id), _) => {
                        probe::console_json(id, "show pid --json", probe_timeout)
                            .await
                            .is_ok_and(|v| v["pid"].as_u64() == Some(pid as u64))
                    }
                    (Unit::Blade(id), Some(ep)) => probe::fpd_counters(ep, probe_timeout)
                        .await
                        .is_ok_and(|(blade, _)| blade == id),
                    _ => false,
                };
                if ready {
                    let _ = events.send(Event::Ready { unit, run });
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(READY_POLL) => {}
                    _ = token.cancelled() => return,
                }
            }
        });
    }

    /// Starts the instances whose blades are no longer activating.
    fn start_pending(&mut self) {
        if self.stopping {
            return;
        }
        let ready: Vec<Unit> = self
            .children
            .values()
            .filter(|c| c.pending)
            .filter(|c| {
                c.peers.iter().all(|b| {
                    self.children
                        .get(&Unit::Blade(*b))
                        .is_none_or(|bc| bc.remote || bc.active != "activating")
                })
            })
            .map(|c| c.unit)
            .collect();
        for unit in ready {
            self.start(unit, None);
        }
    }

    // ---- stopping --------------------------------------------------------

    /// Sends SIGTERM; `waiter` is answered when it has exited.
    fn stop(&mut self, unit: Unit, waiter: Option<Reply>) {
        let stop_timeout = self.config.stop_timeout;
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        c.pending = false;
        if c.restart_at.take().is_some() || !c.is_running() {
            // Waiting to restart or not running: nothing to stop.
            if let Some(w) = waiter {
                let _ = w.send(Ok(Answer::Done));
            }
            if c.active == "activating" && c.sub == "auto-restart" {
                self.set_state(unit, "inactive", "dead");
            }
            return;
        }
        if let Some(w) = waiter {
            c.stop_waiters.push(w);
        }
        if c.active == "deactivating" {
            return;
        }
        if let Some(h) = &c.handle {
            h.signal(libc::SIGTERM);
        }
        c.stop_deadline = Some(Instant::now() + stop_timeout);
        c.start_deadline = None;
        child_log!(info, unit, "stopping {} (pid {})", c.log_name(), c.pid());
        for w in c.start_waiters.drain(..) {
            let _ = w.send(Err(CommandError::StartFailed {
                unit,
                reason: "stopped before it was ready".into(),
            }));
        }
        self.set_state(unit, "deactivating", "stop-sigterm");
    }

    fn begin_shutdown(&mut self) {
        info!("stopping: instances first, then blades");
        self.stopping = true;
        let _ = self.publish.send(Publish::State("stopping".into()));
        self.state = "stopping".into();
        for c in self.children.values_mut() {
            c.start_after_stop = false;
            c.pending = false;
        }
        let units: Vec<Unit> = self.children.keys().copied().collect();
        for unit in units {
            let c = &self.children[&unit];
            if c.restart_at.is_some() {
                self.stop(unit, None);
            }
        }
        let instances: Vec<Unit> = self
            .children
            .keys()
            .copied()
            .filter(|u| matches!(u, Unit::Instance(_)))
            .collect();
        for unit in instances {
            self.stop(unit, None);
        }
    }

    /// Once no instance runs any more, stops the blades.
    fn advance_shutdown(&mut self) {
        if !self.stopping {
            return;
        }
        let instances_down = self
            .children
            .values()
            .filter(|c| matches!(c.unit, Unit::Instance(_)))
            .all(|c| !c.is_running());
        if !instances_down {
            return;
        }
        let blades: Vec<Unit> = self
            .children
            .values()
            .filter(|c| {
                matches!(c.unit, Unit::Blade(_)) && c.is_running() && c.active != "deactivating"
            })
            .map(|c| c.unit)
            .collect();
        for unit in blades {
            self.stop(unit, None);
        }
    }

    // ---- events ------------------------------------------------------------

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited { unit, run, outcome } => self.on_exit(unit, run, outcome),
            Event::Reached { unit, run, result } => self.on_reached(unit, run, result),
            Event::Ready { unit, run } => {
                let Some(c) = self.children.get_mut(&unit) else {
                    return;
                };
                if c.run != run || c.active != "activating" {
                    return;
                }
                c.start_deadline = None;
                for w in c.start_waiters.drain(..) {
                    let _ = w.send(Ok(Answer::Done));
                }
                child_log!(info, unit, "{} is ready (pid {})", c.log_name(), c.pid());
                if let (Unit::Instance(id), Some(enable)) = (unit, c.ipsec_ha) {
                    self.spawn_ha_reapply(id, enable);
                }
                self.set_state(unit, "active", "running");
                self.spawn_watcher(unit);
            }
            Event::Synced { unit, run, info } => {
                let Some(c) = self.children.get_mut(&unit) else {
                    return;
                };
                if c.run != run {
                    return;
                }
                let before = c.sync_state();
                match info {
                    Ok(info) => {
                        c.sync = Some(info);
                    }
                    Err(e) => {
                        if c.active == "active" {
                            child_log!(warn, unit, "{} does not answer: {e}", c.log_name());
                        }
                    }
                }
                self.update_blade_sync(unit);
                let Some(c) = self.children.get_mut(&unit) else {
                    return;
                };
                if c.sync_state() != before {
                    child_log!(
                        info,
                        unit,
                        "{} sync state: {}",
                        c.log_name(),
                        c.sync_state()
                    );
                    c.changed_at = now_us();
                    // Its blades' tables changed with it: read them now.
                    let peers = c.peers.clone();
                    for b in peers {
                        if let Some(bc) = self.children.get(&Unit::Blade(b)) {
                            bc.nudge.notify_one();
                        }
                    }
                    self.publish_child(unit);
                }
            }
        }
    }

    fn on_exit(&mut self, unit: Unit, run: u64, outcome: Outcome) {
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        if c.run != run {
            return;
        }
        let ours = c.active == "deactivating";
        let pid = c.pid();
        c.handle = None;
        c.sync = None;
        if let Some(w) = c.watcher.take() {
            w.cancel();
        }
        self.store.forget(unit);
        c.start_deadline = None;
        c.stop_deadline = None;
        if matches!(unit, Unit::Instance(_)) {
            self.update_blade_sync(unit);
        }
        let c = self.children.get_mut(&unit).expect("present");
        let was_ready = c.active == "active";
        let outcome = if ours && c.killed {
            Outcome::Timeout
        } else {
            outcome
        };
        self.record_children();
        let c = self.children.get_mut(&unit).expect("present");
        if ours {
            child_log!(
                info,
                unit,
                "{} stopped ({})",
                c.log_name(),
                outcome.describe()
            );
            c.result = if c.killed { "timeout" } else { "success" };
            for w in c.stop_waiters.drain(..) {
                let _ = w.send(Ok(Answer::Done));
            }
            let again = std::mem::take(&mut c.start_after_stop);
            self.set_state(unit, "inactive", "dead");
            if again && !self.stopping {
                let c = self.children.get_mut(&unit).expect("present");
                c.history.clear();
                let waiters = std::mem::take(&mut c.start_waiters);
                self.start(unit, None);
                if let Some(c) = self.children.get_mut(&unit) {
                    c.start_waiters.extend(waiters);
                }
            }
            return;
        }
        let why = outcome.describe();
        for w in c.start_waiters.drain(..) {
            let _ = w.send(Err(CommandError::StartFailed {
                unit,
                reason: why.clone(),
            }));
        }
        if !outcome.is_failure() {
            child_log!(
                warn,
                unit,
                "{} {why} on its own; not restarted (Restart=on-failure)",
                c.log_name()
            );
            c.result = "success";
            self.set_state(unit, "inactive", "dead");
            return;
        }
        child_log!(
            error,
            unit,
            "{} (pid {pid}) {why}{}",
            c.log_name(),
            if was_ready {
                ""
            } else {
                " before it was ready"
            }
        );
        c.last_failure = Some(why);
        self.after_failure(unit, outcome.result());
    }

    /// Schedules a restart with back-off, or marks the child failed.
    fn after_failure(&mut self, unit: Unit, result: &'static str) {
        let policy = self.config.policy.clone();
        let stopping = self.stopping;
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        c.handle = None;
        c.result = result;
        if stopping {
            self.set_state(unit, "failed", "failed");
            return;
        }
        let now = Instant::now();
        let delay = policy.delay(&mut c.history, now);
        c.restart_at = Some(now + delay);
        child_log!(info, unit, "{} restarts in {delay:?}", c.log_name());
        self.set_state(unit, "activating", "auto-restart");
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if let Some(w) = self.watch.as_mut() {
            w.ping_if_due(now);
        }
        let units: Vec<Unit> = self.children.keys().copied().collect();
        for unit in units {
            let c = self.children.get_mut(&unit).expect("present");
            if c.restart_at.is_some_and(|t| t <= now) {
                c.restart_at = None;
                c.restarting = true;
                self.start(unit, None);
                continue;
            }
            if c.start_deadline.is_some_and(|t| t <= now) {
                c.start_deadline = None;
                child_log!(
                    error,
                    unit,
                    "{} not ready after {:?}: killing it",
                    c.log_name(),
                    self.config.start_timeout
                );
                c.last_failure = Some("not ready in time".into());
                if let Some(h) = &c.handle {
                    h.signal(libc::SIGKILL);
                }
                // Its exit is a failure; restart policy applies then.
            }
            if c.stop_deadline.is_some_and(|t| t <= now) {
                c.stop_deadline = None;
                c.killed = true;
                child_log!(
                    warn,
                    unit,
                    "{} did not stop in {:?}: SIGKILL",
                    c.log_name(),
                    self.config.stop_timeout
                );
                if let Some(h) = &c.handle {
                    h.signal(libc::SIGKILL);
                }
                self.set_state(unit, "deactivating", "stop-sigkill");
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        // Nothing due: wake up now and then all the same.
        let mut next = Instant::now() + Duration::from_secs(3600);
        if let Some(t) = self.watch.as_ref().and_then(Watch::next_ping) {
            next = next.min(t);
        }
        if let Some(t) = self.answers_due() {
            next = next.min(t);
        }
        for c in self.children.values() {
            for t in [c.restart_at, c.start_deadline, c.stop_deadline]
                .into_iter()
                .flatten()
            {
                next = next.min(t);
            }
        }
        next
    }

    /// Starts the collector's watcher of `unit`'s current run; each
    /// instance round's sync state comes back as [`Event::Synced`].
    fn spawn_watcher(&mut self, unit: Unit) {
        let netns = self.dial_netns(unit);
        let Some(c) = self.children.get_mut(&unit) else {
            return;
        };
        let token = self.tasks.child_token();
        if let Some(old) = c.watcher.replace(token.clone()) {
            old.cancel();
        }
        let run = c.run;
        let watcher = Watcher {
            unit,
            run,
            endpoint: c.endpoint.clone(),
            netns,
            interval: self.config.report_interval,
            timeout: self.config.query_timeout,
            store: self.store.clone(),
            nudge: c.nudge.clone(),
        };
        let events = self.events_tx.clone();
        tokio::spawn(watcher.run(token, move |round| {
            let _ = events.send(match round {
                collect::Round::Instance(info) => Event::Synced { unit, run, info },
                collect::Round::Blade(result) => Event::Reached {
                    unit,
                    run,
                    result: result.map_err(|e| e.to_string()),
                },
            });
        }));
    }

    /// The namespace a remote blade is dialled from: its instance's.
    fn dial_netns(&self, unit: Unit) -> Option<String> {
        let c = self.children.get(&unit)?;
        if !c.remote {
            return None;
        }
        let instance = c.peers.first()?;
        self.children.get(&Unit::Instance(*instance))?.netns.clone()
    }

    fn spawn_ha_reapply(&self, id: u32, enable: bool) {
        let timeout = self.config.query_timeout;
        tokio::spawn(async move {
            let command = if enable {
                "ipsec ha enable"
            } else {
                "ipsec ha disable"
            };
            match probe::console(id, &[command], timeout).await {
                Ok(a) if report::parse_ha(&a[0]) == Ok(enable) => {
                    info!(
                        instance = id,
                        "IPsec HA {} again after the restart",
                        if enable { "enabled" } else { "disabled" }
                    );
                }
                Ok(a) => warn!(instance = id, "cannot re-apply IPsec HA: {}", a[0].trim()),
                Err(e) => warn!(instance = id, "cannot re-apply IPsec HA: {e}"),
            }
        });
    }

    /// The supervisor's State: starting | running | syncing | degraded |
    /// stopping.
    fn update_state(&mut self) {
        if self.stopping {
            return;
        }
        let all_started = self
            .children
            .values()
            .all(|c| !(c.pending || c.active == "activating" && c.sub == "start"));
        if self.starting && all_started {
            self.starting = false;
        }
        let degraded = self.children.values().any(|c| {
            c.active != "active" && !(self.starting && (c.pending || c.active == "activating"))
        });
        let unsynced = self
            .children
            .values()
            .any(|c| matches!(c.unit, Unit::Instance(_)) && c.sync_state() != "synced");
        let state = if degraded {
            "degraded"
        } else if self.starting {
            "starting"
        } else if unsynced {
            "syncing"
        } else {
            "running"
        };
        if self.state != state {
            info!("state: {state}");
            self.withdraw_answers();
            self.state = state.to_owned();
            let _ = self.publish.send(Publish::State(state.to_owned()));
        }
    }

    /// READY=1, STATUS= and STOPPING=1 for systemd (see `notify::Watch`).
    fn notify_progress(&mut self) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let count = |instances: bool, ok: &dyn Fn(&Child) -> bool| {
            let of_kind = self
                .children
                .values()
                .filter(|c| matches!(c.unit, Unit::Instance(_)) == instances);
            let all: Vec<&Child> = of_kind.collect();
            (all.iter().filter(|c| ok(c)).count(), all.len())
        };
        let (synced, instances) = count(true, &|c| c.sync_state() == "synced");
        let (running, blades) = count(false, &|c| c.active == "active");
        let status = notify::status_line(synced, instances, running, blades);
        watch.progress(!self.starting, self.stopping, status);
    }

    // ---- commands ------------------------------------------------------------

    fn known(&self, instance: bool) -> String {
        let ids: Vec<String> = self
            .children
            .keys()
            .filter(|u| matches!(u, Unit::Instance(_)) == instance)
            .map(|u| u.id().to_string())
            .collect();
        if ids.is_empty() {
            "none".into()
        } else {
            ids.join(", ")
        }
    }

    fn is_remote(&self, unit: Unit) -> bool {
        self.children.get(&unit).is_some_and(|c| c.remote)
    }

    fn check_unit(&self, unit: Unit) -> Result<(), CommandError> {
        if self.children.contains_key(&unit) {
            return Ok(());
        }
        Err(match unit {
            Unit::Instance(id) => CommandError::NoSuchInstance {
                id,
                known: self.known(true),
            },
            Unit::Blade(id) => CommandError::NoSuchBlade {
                id,
                known: self.known(false),
            },
        })
    }

    fn views(&self) -> Vec<ChildView> {
        self.children.values().map(Child::view).collect()
    }

    /// When the prebuilt answers are next due: none while stopping.
    fn answers_due(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        let period = answer_period(self.config.report_interval);
        Some(self.answers_at.map_or_else(Instant::now, |t| t + period))
    }

    /// Rebuilds `Status()` and `Statistics()` into the answer table when
    /// due; while stopping, withdraws them (every call then comes here).
    fn build_answers_if_due(&mut self) {
        let Some(due) = self.answers_due() else {
            self.withdraw_answers();
            return;
        };
        if due > Instant::now() {
            return;
        }
        let header = self.status_header();
        let (status, statistics) =
            self.report(|inputs| (report::status(header, inputs), report::statistics(inputs)));
        let old = self.answers.write().ok().map(|mut t| {
            std::mem::replace(
                &mut *t,
                fpsync_dbus::Prebuilt {
                    status: Some(status.into()),
                    statistics: Some(statistics.into()),
                },
            )
        });
        // The old texts are freed here, outside the lock.
        drop(old);
        self.answers_at = Some(Instant::now());
    }

    /// Withdraws the prebuilt answers (a child's or the supervisor's state
    /// changed): calls are answered by the core until the next build.
    fn withdraw_answers(&mut self) {
        let old = self
            .answers
            .write()
            .ok()
            .map(|mut t| std::mem::take(&mut *t));
        drop(old);
    }

    /// The supervisor's own members of `Status()`.
    fn status_header(&self) -> serde_json::Value {
        json!({
            "state": self.state,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "bus": self.bus_address,
            "config": self.config.files,
        })
    }

    /// Builds a report from memory (see `report`).
    fn report<T>(&self, build: impl FnOnce(&report::Inputs) -> T) -> T {
        let views = self.views();
        let heard = self.store.snapshot();
        let resources = self.resources.read().map(|r| r.clone()).unwrap_or_default();
        build(&report::Inputs {
            views: &views,
            heard: &heard,
            resources: &resources,
            interval: self.config.report_interval,
            now: Instant::now(),
        })
    }

    fn handle(&mut self, request: Request) {
        let Request { command, reply } = request;
        if self.stopping && command.mutates() {
            let _ = reply.send(Err(CommandError::ShuttingDown));
            return;
        }
        let timeout = self.config.query_timeout;
        match command {
            Command::Status => {
                let header = self.status_header();
                let text = self.report(|inputs| report::status(header, inputs));
                let _ = reply.send(Ok(Answer::Text(text)));
            }
            Command::Statistics => {
                let text = self.report(report::statistics);
                let _ = reply.send(Ok(Answer::Text(text)));
            }
            Command::Metrics => {
                let state = self.state.clone();
                let text = self.report(|inputs| metrics::render(&state, inputs));
                let _ = reply.send(Ok(Answer::Text(text)));
            }
            Command::IpsecHaStatus => self.ipsec_ha(None, reply),
            Command::SetIpsecHa { enable, blades } => self.ipsec_ha(Some((enable, blades)), reply),
            Command::Start(unit) => {
                if let Err(e) = self.check_unit(unit) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let c = self.children.get_mut(&unit).expect("checked");
                match (c.active, c.sub) {
                    ("active", _) => {
                        let _ = reply.send(Ok(Answer::Done));
                    }
                    ("activating", "start") => c.start_waiters.push(reply),
                    ("deactivating", _) => {
                        c.start_after_stop = true;
                        c.start_waiters.push(reply);
                    }
                    _ => {
                        // An operator's start clears a failed state first.
                        c.history.clear();
                        self.start(unit, Some(reply));
                    }
                }
            }
            Command::Stop(unit) | Command::Restart(unit) if self.is_remote(unit) => {
                let _ = reply.send(Err(remote_refusal(&self.children[&unit])));
            }
            Command::Stop(unit) => match self.check_unit(unit) {
                Ok(()) => self.stop(unit, Some(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Restart(unit) => {
                if let Err(e) = self.check_unit(unit) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let c = self.children.get_mut(&unit).expect("checked");
                if c.is_running() {
                    // Stop first: a stop fails the waiters of a start.
                    self.stop(unit, None);
                    let c = self.children.get_mut(&unit).expect("checked");
                    c.start_after_stop = true;
                    c.start_waiters.push(reply);
                } else {
                    c.history.clear();
                    self.start(unit, Some(reply));
                }
            }
            Command::ResetFailed(unit) => {
                if let Some(u) = unit {
                    if let Err(e) = self.check_unit(u) {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                let units: Vec<Unit> = self
                    .children
                    .keys()
                    .copied()
                    .filter(|u| unit.is_none_or(|x| x == *u))
                    .collect();
                for u in units {
                    let c = self.children.get_mut(&u).expect("present");
                    c.history.clear();
                    if c.active == "failed" {
                        c.result = "success";
                        self.set_state(u, "inactive", "dead");
                    }
                }
                let _ = reply.send(Ok(Answer::Done));
            }
            Command::Console { instance, command } => {
                let unit = Unit::Instance(instance);
                if let Err(e) = self.check_unit(unit) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let line = command.trim().to_owned();
                if line.is_empty() || line.chars().any(|c| c.is_control()) || line == "quit" {
                    let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                        "{command:?} is not a console command: one line, not empty, not quit"
                    ))));
                    return;
                }
                if self.children[&unit].active != "active" {
                    let _ = reply.send(Err(CommandError::NotRunning(unit)));
                    return;
                }
                tokio::spawn(async move {
                    let answer = match probe::console(instance, &[line.as_str()], timeout).await {
                        Ok(mut a) => {
                            let a = a.remove(0);
                            if a.starts_with("error:") {
                                Err(CommandError::InvalidArgument(format!(
                                    "instance {instance}: {}",
                                    a.trim_end()
                                )))
                            } else {
                                Ok(Answer::Text(a))
                            }
                        }
                        Err(e) => Err(CommandError::Failed(format!("instance {instance}: {e}"))),
                    };
                    let _ = reply.send(answer);
                });
            }
        }
    }

    /// Reads (set None) or switches the IPsec HA switch of the instances
    /// feeding the blades named. The switch is per instance: switching
    /// some of an instance's blades but not all is refused, since it would
    /// switch the others too.
    fn ipsec_ha(&mut self, set: Option<(bool, Vec<u32>)>, reply: Reply) {
        let all: Vec<u32> = self
            .children
            .keys()
            .filter_map(|u| match u {
                Unit::Blade(b) => Some(*b),
                _ => None,
            })
            .collect();
        let named: Vec<u32> = match &set {
            Some((_, blades)) if !blades.is_empty() => blades.clone(),
            _ => all.clone(),
        };
        let mut seen = BTreeSet::new();
        for b in &named {
            if !seen.insert(*b) {
                let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                    "blade {b} is listed twice"
                ))));
                return;
            }
            if !all.contains(b) {
                let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                    "no blade {b} (configured: {})",
                    self.known(false)
                ))));
                return;
            }
        }
        // instance -> its blades among those named
        let mut by_instance: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut orphans = Vec::new();
        for b in &named {
            match self.children[&Unit::Blade(*b)].peers.first() {
                Some(i) => by_instance.entry(*i).or_default().push(*b),
                None => orphans.push(*b),
            }
        }
        if set.is_some() {
            if let Some(b) = orphans.first() {
                let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                    "no instance feeds blade {b}: nothing to switch"
                ))));
                return;
            }
            for (i, blades) in &by_instance {
                let own = &self.children[&Unit::Instance(*i)].peers;
                if own.len() != blades.len() {
                    let _ = reply.send(Err(CommandError::InvalidArgument(format!(
                        "blades {own:?} share instance {i}, whose IPsec HA switch is per instance: name them all"
                    ))));
                    return;
                }
            }
            if let Some((enable, _)) = &set {
                for i in by_instance.keys() {
                    if let Some(c) = self.children.get_mut(&Unit::Instance(*i)) {
                        c.ipsec_ha = Some(*enable);
                    }
                }
            }
        }
        let running: BTreeMap<u32, bool> = by_instance
            .keys()
            .map(|i| (*i, self.children[&Unit::Instance(*i)].active == "active"))
            .collect();
        let timeout = self.config.query_timeout;
        let enable = set.as_ref().map(|(e, _)| *e);
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, blades) in by_instance {
                let up = running[&i];
                tasks.spawn(async move {
                    if !up {
                        return (i, blades, Err(format!("instance {i} is not running")));
                    }
                    let mut commands = Vec::new();
                    if let Some(e) = enable {
                        commands.push(if e {
                            "ipsec ha enable"
                        } else {
                            "ipsec ha disable"
                        });
                    }
                    commands.push("ipsec ha show");
                    let res = match probe::console(i, &commands, timeout).await {
                        Ok(answers) => {
                            report::parse_ha(answers.last().map(String::as_str).unwrap_or(""))
                                .map_err(|e| format!("instance {i}: {e}"))
                                .and_then(|state| match enable {
                                    Some(e) if e != state => Err(format!(
                                        "instance {i} still says {}",
                                        if state { "enabled" } else { "disabled" }
                                    )),
                                    _ => Ok(state),
                                })
                        }
                        Err(e) => Err(format!("instance {i}: {e}")),
                    };
                    (i, blades, res)
                });
            }
            let mut states = BTreeMap::new();
            let mut failures = Vec::new();
            let mut lines = Vec::new();
            while let Some(Ok((_, blades, res))) = tasks.join_next().await {
                for b in blades {
                    match &res {
                        Ok(s) => {
                            states.insert(b, *s);
                            lines.push((
                                b,
                                format!("blade {b}: {}", if *s { "enabled" } else { "disabled" }),
                            ));
                        }
                        Err(e) => {
                            failures.push(b);
                            lines.push((b, format!("blade {b}: failed: {e}")));
                        }
                    }
                }
            }
            lines.sort();
            let answer = if failures.is_empty() {
                Ok(Answer::IpsecHa(states))
            } else {
                let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
                Err(CommandError::PartialFailure(text.join("; ")))
            };
            let _ = reply.send(answer);
        });
    }
}

/// Why a remote blade cannot be started, stopped or restarted here.
fn remote_refusal(c: &Child) -> CommandError {
    CommandError::InvalidArgument(format!(
        "blade {} is remote (at {}): its fpd runs on its own host, not under this fpsyncd",
        c.unit.id(),
        c.endpoint
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default()
    ))
}

/// A blade's SyncState from its instance's `show queue --json`.
fn blade_queue_state(queue: &serde_json::Value, blade: u32) -> &'static str {
    let entry = queue
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["blade"].as_u64() == Some(u64::from(blade)));
    let Some(q) = entry.map(|b| &b["queue"]) else {
        return "unknown";
    };
    if q["backup"].as_bool() == Some(true) {
        return "backup";
    }
    match (q["connected"].as_bool(), q["in_sync"].as_bool()) {
        (Some(true), Some(true)) => "synced",
        (Some(true), _) => "resyncing",
        _ => "disconnected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_rebuilt_every_tenth_of_the_interval_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(answer_period(ms(1000)), ms(100));
        assert_eq!(answer_period(ms(300)), ms(30));
        assert_eq!(answer_period(ms(10)), ms(10));
        assert_eq!(answer_period(Duration::from_secs(60)), ms(100));
    }

    #[test]
    fn a_remote_blade_reached_again_keeps_the_prebuilt_answers() {
        let dir = std::env::temp_dir().join(format!("fpsync-core-remote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let global = "BLADE_1_ENDPOINT=tcp:192.0.2.7:7700\nFPSYNC_RUN_DIR=/tmp/x\nFPC_TLS_CERT=/c.pem\nFPC_TLS_KEY=/c.key\nFPC_TLS_CA=/ca.pem\n";
        let env = vec![
            ("CONF_FILE_linux_fp_sync".into(), file("lfs.env", global)),
            ("CONF_FILE_cmgr".into(), file("cmgr.env", "")),
        ];
        let config = Arc::new(Config::load_from(env).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        let programs = Programs {
            cmgrd: "cmgrd".into(),
            fpd: "fpd".into(),
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut core = Core::new(config, &programs, tx, String::new());
        let unit = Unit::Blade(1);
        core.children.get_mut(&unit).unwrap().run = 1;
        let prebuild = |core: &Core| {
            *core.answers.write().unwrap() = fpsync_dbus::Prebuilt {
                status: Some("{}".into()),
                statistics: Some("{}".into()),
            };
        };
        let kept = |core: &Core| core.answers.read().unwrap().status.is_some();
        for result in [Ok(()), Err("refused".to_owned())] {
            // A change withdraws them; the same word again does not.
            prebuild(&core);
            core.on_reached(unit, 1, result.clone());
            assert!(!kept(&core), "{result:?}");
            prebuild(&core);
            core.on_reached(unit, 1, result.clone());
            assert!(kept(&core), "{result:?} again");
        }
        core.on_reached(unit, 1, Err("timeout".into()));
        assert!(!kept(&core), "another reason");
    }

    #[test]
    fn a_blade_sync_state_is_its_instance_word_on_its_queue() {
        let q = json!([
            {"blade": 1, "queue": {"connected": true, "in_sync": true}},
            {"blade": 2, "queue": {"connected": true, "in_sync": false}},
            {"blade": 3, "queue": {"connected": false, "in_sync": false}},
            {"blade": 5, "queue": {"connected": false, "in_sync": false, "backup": true}},
        ]);
        assert_eq!(blade_queue_state(&q, 5), "backup");
        assert_eq!(blade_queue_state(&q, 1), "synced");
        assert_eq!(blade_queue_state(&q, 2), "resyncing");
        assert_eq!(blade_queue_state(&q, 3), "disconnected");
        assert_eq!(blade_queue_state(&q, 4), "unknown");
        assert_eq!(blade_queue_state(&json!("junk"), 1), "unknown");
    }
}
