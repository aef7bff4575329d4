//! The supervisor's core: one task that owns every child's state, starts,
//! watches and restarts children, and answers the commands the D-Bus
//! adapters send. Nothing here knows D-Bus: state goes out as [`Publish`]
//! messages, commands come in as [`Request`]s. The core's methods are
//! split by concern: `lifecycle` (start, stop, shutdown), `exits` (results,
//! restarts, timers), `remote` (remote blades), `answers` (watchers and
//! prebuilt answers), `commands` (the D-Bus adapters' requests).
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

// After `child_log!`, which they use.
mod answers;
mod commands;
mod exits;
mod lifecycle;
mod remote;

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
