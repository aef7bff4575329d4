//! The supervisor's objects: `org.fpsync.Supervisor1` at
//! `/org/fpsync/Supervisor1`, and one object per child at
//! `/org/fpsync/Supervisor1/instance/<N>` and `.../blade/<B>`, mirrored the
//! way systemd mirrors units. [`Publisher`] is how the core changes their
//! properties: each change goes out as one PropertiesChanged, and a change of
//! a child's state also as the supervisor's `ChildStateChanged` signal.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};
use zbus::fdo::Properties;
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;
use zbus::{interface, Connection};

use crate::command::{Answer, Command, CommandError, Request, Unit};
use crate::error::Error;
use crate::SUPERVISOR_PATH;

pub const INSTANCE_INTERFACE: &str = "org.fpsync.Supervisor1.Instance";
pub const BLADE_INTERFACE: &str = "org.fpsync.Supervisor1.Blade";

/// The object path that mirrors `unit`.
pub fn child_path(unit: Unit) -> String {
    format!("{SUPERVISOR_PATH}/{}/{}", unit.kind(), unit.id())
}

/// Sends `command` to the core and waits for its answer, after checking
/// that a mutating command comes from root. The bus policy already refuses
/// others on the system bus; this covers a bus run without the policy.
async fn call(
    requests: &mpsc::Sender<Request>,
    conn: &Connection,
    header: &Header<'_>,
    command: Command,
) -> Result<Answer, Error> {
    if command.mutates() {
        if let Some(sender) = header.sender() {
            let dbus = zbus::fdo::DBusProxy::new(conn).await?;
            let uid = dbus
                .get_connection_unix_user(sender.clone().into())
                .await
                .map_err(|e| Error::AccessDenied(e.to_string()))?;
            if uid != 0 {
                return Err(Error::AccessDenied(format!(
                    "uid {uid} may not call a method that changes the supervisor"
                )));
            }
        }
    }
    let (reply, answer) = oneshot::channel();
    requests
        .send(Request { command, reply })
        .await
        .map_err(|_| Error::from(CommandError::ShuttingDown))?;
    Ok(answer
        .await
        .map_err(|_| Error::from(CommandError::ShuttingDown))??)
}

fn text(answer: Answer) -> Result<String, Error> {
    match answer {
        Answer::Text(s) => Ok(s),
        other => Err(Error::Failed(format!("unexpected answer {other:?}"))),
    }
}

fn ha_map(answer: Answer) -> Result<HashMap<u32, bool>, Error> {
    match answer {
        Answer::IpsecHa(m) => Ok(m.into_iter().collect()),
        other => Err(Error::Failed(format!("unexpected answer {other:?}"))),
    }
}

/// `Status()` and `Statistics()` as the core last built them (it rebuilds
/// them every few report-interval fractions, see `supervisor::core`), or
/// None until it has. The lock is held to clone an `Arc`, never while an
/// answer is built or sent: a call takes the current text and replies
/// without waiting on the core.
#[derive(Debug, Clone, Default)]
pub struct Prebuilt {
    pub status: Option<Arc<str>>,
    pub statistics: Option<Arc<str>>,
}

/// Shared between the core (which swaps answers in) and the supervisor
/// object (which replies with them).
pub type AnswerTable = Arc<RwLock<Prebuilt>>;

/// The prebuilt answer `pick` selects, if there is one.
fn prebuilt(table: &AnswerTable, pick: impl Fn(&Prebuilt) -> Option<Arc<str>>) -> Option<Arc<str>> {
    table.read().ok().and_then(|t| pick(&t))
}

/// `org.fpsync.Supervisor1`.
pub struct SupervisorObject {
    requests: mpsc::Sender<Request>,
    answers: AnswerTable,
    instances: Vec<u32>,
    blades: Vec<u32>,
    state: String,
    bus_address: String,
}

impl SupervisorObject {
    pub fn new(
        requests: mpsc::Sender<Request>,
        answers: AnswerTable,
        instances: Vec<u32>,
        blades: Vec<u32>,
        bus_address: String,
    ) -> Self {
        SupervisorObject {
            requests,
            answers,
            instances,
            blades,
            state: "starting".into(),
            bus_address,
        }
    }
}

#[interface(name = "org.fpsync.Supervisor1")]
impl SupervisorObject {
    /// Every child's lifecycle and sync state, each blade's table sizes
    /// (JSON), from memory: the answer the core last built, each child's
    /// figures with their age; a child that stopped reporting has an
    /// "error" member (and `"stale": true`) instead of holding the call.
    /// The counters are `Statistics()`' (an instance's cache sizes, the
    /// generations), but for an instance's overruns, resyncs, reconciles
    /// and silent deletions when not 0.
    async fn status(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, Error> {
        if let Some(a) = prebuilt(&self.answers, |t| t.status.clone()) {
            return Ok(String::from(&*a));
        }
        text(call(&self.requests, conn, &header, Command::Status).await?)
    }

    /// Every blade's counters, their sums, and every instance's queues
    /// (JSON), from memory as `Status()` is. A counter that is 0 (a flag
    /// that is false) is left out, absent meaning 0, but in `total`,
    /// which lists every blade counter.
    async fn statistics(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, Error> {
        if let Some(a) = prebuilt(&self.answers, |t| t.statistics.clone()) {
            return Ok(String::from(&*a));
        }
        text(call(&self.requests, conn, &header, Command::Statistics).await?)
    }

    /// Every counter of `Statistics()`, with the children's states,
    /// restarts and resources, in the OpenMetrics text format (what the
    /// metrics endpoint serves).
    async fn metrics(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, Error> {
        text(call(&self.requests, conn, &header, Command::Metrics).await?)
    }

    /// Blade -> whether IPsec HA (SA sequence number sync) is on for it.
    async fn ipsec_ha_status(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<HashMap<u32, bool>, Error> {
        ha_map(call(&self.requests, conn, &header, Command::IpsecHaStatus).await?)
    }

    /// Switches IPsec HA for `blades` (all when empty); the new states.
    async fn set_ipsec_ha(
        &self,
        enable: bool,
        blades: Vec<u32>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<HashMap<u32, bool>, Error> {
        let command = Command::SetIpsecHa { enable, blades };
        ha_map(call(&self.requests, conn, &header, command).await?)
    }

    async fn start_instance(
        &self,
        id: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::Start(Unit::Instance(id));
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    async fn stop_instance(
        &self,
        id: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::Stop(Unit::Instance(id));
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    async fn restart_instance(
        &self,
        id: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::Restart(Unit::Instance(id));
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    async fn start_blade(
        &self,
        id: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::Start(Unit::Blade(id));
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    async fn stop_blade(
        &self,
        id: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::Stop(Unit::Blade(id));
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    async fn restart_blade(
        &self,
        id: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::Restart(Unit::Blade(id));
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    /// Clears every child's failed state, as `systemctl reset-failed`.
    async fn reset_failed(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let command = Command::ResetFailed(None);
        call(&self.requests, conn, &header, command).await.map(drop)
    }

    /// One command for an instance's console; its answer.
    async fn console(
        &self,
        instance: u32,
        command: String,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, Error> {
        let command = Command::Console { instance, command };
        text(call(&self.requests, conn, &header, command).await?)
    }

    /// A child changed its lifecycle or sync state.
    #[zbus(signal)]
    pub async fn child_state_changed(
        emitter: &SignalEmitter<'_>,
        kind: &str,
        id: u32,
        active_state: &str,
        sub_state: &str,
        result: &str,
        sync_state: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    async fn instances(&self) -> Vec<u32> {
        self.instances.clone()
    }

    #[zbus(property)]
    async fn blades(&self) -> Vec<u32> {
        self.blades.clone()
    }

    /// starting | running | syncing | degraded | stopping.
    #[zbus(property)]
    async fn state(&self) -> String {
        self.state.clone()
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property, name = "MainPID")]
    async fn main_pid(&self) -> u32 {
        std::process::id()
    }

    /// The bus the supervisor serves on, as an address.
    #[zbus(property)]
    async fn bus_address(&self) -> String {
        self.bus_address.clone()
    }
}

/// The lifecycle properties of one child, in systemd's vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildProps {
    /// inactive | activating | active | deactivating | failed
    pub active_state: String,
    /// dead | start | running | stop-sigterm | auto-restart | failed | start-limit-hit
    pub sub_state: String,
    /// success | exit-code | signal | core-dump | timeout | start-limit-hit | resources
    pub result: String,
    pub main_pid: u32,
    pub n_restarts: u32,
    /// CLOCK_REALTIME, microseconds.
    pub state_change_timestamp: u64,
    /// Instances: initial-dump | synced | resyncing | unknown; blades:
    /// synced | resyncing | backup | disconnected | unknown (their instance's word
    /// on their queue).
    pub sync_state: String,
    /// Instances: the network namespace ("" for fpsyncd's own).
    pub net_namespace: String,
    /// Instances: the blades they feed; blades: the instance feeding them.
    pub peers: Vec<u32>,
    /// Blades: the FPC endpoint.
    pub endpoint: String,
}

impl ChildProps {
    /// The properties that differ from `old`, by D-Bus name.
    fn changes(&self, old: &ChildProps, instance: bool) -> HashMap<&'static str, Value<'static>> {
        let mut out: HashMap<&'static str, Value<'static>> = HashMap::new();
        if self.active_state != old.active_state {
            out.insert("ActiveState", Value::from(self.active_state.clone()));
        }
        if self.sub_state != old.sub_state {
            out.insert("SubState", Value::from(self.sub_state.clone()));
        }
        if self.result != old.result {
            out.insert("Result", Value::from(self.result.clone()));
        }
        if self.main_pid != old.main_pid {
            out.insert("MainPID", Value::from(self.main_pid));
        }
        if self.n_restarts != old.n_restarts {
            out.insert("NRestarts", Value::from(self.n_restarts));
        }
        if self.state_change_timestamp != old.state_change_timestamp {
            out.insert(
                "StateChangeTimestamp",
                Value::from(self.state_change_timestamp),
            );
        }
        if instance {
            if self.sync_state != old.sync_state {
                out.insert("SyncState", Value::from(self.sync_state.clone()));
            }
            if self.net_namespace != old.net_namespace {
                out.insert("NetNamespace", Value::from(self.net_namespace.clone()));
            }
            if self.peers != old.peers {
                out.insert("Blades", Value::from(self.peers.clone()));
            }
        } else {
            if self.sync_state != old.sync_state {
                out.insert("SyncState", Value::from(self.sync_state.clone()));
            }
            if self.peers != old.peers {
                out.insert("Instances", Value::from(self.peers.clone()));
            }
            if self.endpoint != old.endpoint {
                out.insert("Endpoint", Value::from(self.endpoint.clone()));
            }
        }
        out
    }
}

/// What one child uses, as systemd shows it per unit: `MemoryCurrent`
/// (bytes resident), `CPUUsageNSec` (user + system time of its life),
/// `TasksCurrent` (threads). `u64::MAX` is systemd's "not known" (a child
/// not running, or not sampled yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub memory_current: u64,
    pub cpu_usage_nsec: u64,
    pub tasks_current: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            memory_current: u64::MAX,
            cpu_usage_nsec: u64::MAX,
            tasks_current: u64::MAX,
        }
    }
}

/// Every child's [`Resources`]: the supervisor's sampler writes it, the
/// child objects read it at each Get (held for a map lookup, never across
/// I/O). Not signalled: like systemd's, these change all the time.
pub type ResourceTable = Arc<RwLock<BTreeMap<Unit, Resources>>>;

fn resources_of(table: &ResourceTable, unit: Unit) -> Resources {
    table
        .read()
        .map(|t| t.get(&unit).copied().unwrap_or_default())
        .unwrap_or_default()
}

macro_rules! child_object {
    ($name:ident, $iface:literal, $unit:expr, { $($extra:tt)* }) => {
        pub struct $name {
            id: u32,
            props: ChildProps,
            requests: mpsc::Sender<Request>,
            resources: ResourceTable,
        }

        impl $name {
            pub fn new(
                id: u32,
                props: ChildProps,
                requests: mpsc::Sender<Request>,
                resources: ResourceTable,
            ) -> Self {
                $name { id, props, requests, resources }
            }
        }

        #[interface(name = $iface)]
        impl $name {
            async fn start(
                &self,
                #[zbus(connection)] conn: &Connection,
                #[zbus(header)] header: Header<'_>,
            ) -> Result<(), Error> {
                let command = Command::Start($unit(self.id));
                call(&self.requests, conn, &header, command).await.map(drop)
            }

            async fn stop(
                &self,
                #[zbus(connection)] conn: &Connection,
                #[zbus(header)] header: Header<'_>,
            ) -> Result<(), Error> {
                let command = Command::Stop($unit(self.id));
                call(&self.requests, conn, &header, command).await.map(drop)
            }

            async fn restart(
                &self,
                #[zbus(connection)] conn: &Connection,
                #[zbus(header)] header: Header<'_>,
            ) -> Result<(), Error> {
                let command = Command::Restart($unit(self.id));
                call(&self.requests, conn, &header, command).await.map(drop)
            }

            /// Clears a failed state (start-limit-hit included).
            async fn reset_failed(
                &self,
                #[zbus(connection)] conn: &Connection,
                #[zbus(header)] header: Header<'_>,
            ) -> Result<(), Error> {
                let command = Command::ResetFailed(Some($unit(self.id)));
                call(&self.requests, conn, &header, command).await.map(drop)
            }

            #[zbus(property)]
            async fn id(&self) -> u32 {
                self.id
            }

            #[zbus(property)]
            async fn active_state(&self) -> String {
                self.props.active_state.clone()
            }

            #[zbus(property)]
            async fn sub_state(&self) -> String {
                self.props.sub_state.clone()
            }

            #[zbus(property)]
            async fn result(&self) -> String {
                self.props.result.clone()
            }

            #[zbus(property, name = "MainPID")]
            async fn main_pid(&self) -> u32 {
                self.props.main_pid
            }

            #[zbus(property, name = "NRestarts")]
            async fn n_restarts(&self) -> u32 {
                self.props.n_restarts
            }

            #[zbus(property)]
            async fn state_change_timestamp(&self) -> u64 {
                self.props.state_change_timestamp
            }

            /// Bytes resident (u64::MAX when not known).
            #[zbus(property(emits_changed_signal = "false"))]
            async fn memory_current(&self) -> u64 {
                resources_of(&self.resources, $unit(self.id)).memory_current
            }

            /// CPU time used, user and system, in nanoseconds.
            #[zbus(property(emits_changed_signal = "false"), name = "CPUUsageNSec")]
            async fn cpu_usage_nsec(&self) -> u64 {
                resources_of(&self.resources, $unit(self.id)).cpu_usage_nsec
            }

            /// Threads.
            #[zbus(property(emits_changed_signal = "false"))]
            async fn tasks_current(&self) -> u64 {
                resources_of(&self.resources, $unit(self.id)).tasks_current
            }

            $($extra)*
        }
    };
}

child_object!(
    InstanceObject,
    "org.fpsync.Supervisor1.Instance",
    Unit::Instance,
    {
        /// initial-dump | synced | resyncing | unknown (not running).
        #[zbus(property)]
        async fn sync_state(&self) -> String {
            self.props.sync_state.clone()
        }

        #[zbus(property)]
        async fn net_namespace(&self) -> String {
            self.props.net_namespace.clone()
        }

        #[zbus(property)]
        async fn blades(&self) -> Vec<u32> {
            self.props.peers.clone()
        }
    }
);

child_object!(BladeObject, "org.fpsync.Supervisor1.Blade", Unit::Blade, {
    /// What its instance says of its queue: synced | resyncing | backup |
    /// disconnected | unknown.
    #[zbus(property)]
    async fn sync_state(&self) -> String {
        self.props.sync_state.clone()
    }

    /// The instance that feeds this blade (none or one).
    #[zbus(property)]
    async fn instances(&self) -> Vec<u32> {
        self.props.peers.clone()
    }

    #[zbus(property)]
    async fn endpoint(&self) -> String {
        self.props.endpoint.clone()
    }
});

/// How the core changes what the bus shows.
#[derive(Clone)]
pub struct Publisher {
    conn: Connection,
    requests: mpsc::Sender<Request>,
    resources: ResourceTable,
}

impl Publisher {
    pub fn new(
        conn: Connection,
        requests: mpsc::Sender<Request>,
        resources: ResourceTable,
    ) -> Self {
        Publisher {
            conn,
            requests,
            resources,
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Adds the object that mirrors `unit` (InterfacesAdded goes out).
    pub async fn add_child(&self, unit: Unit, props: ChildProps) -> zbus::Result<()> {
        let server = self.conn.object_server();
        let path = child_path(unit);
        match unit {
            Unit::Instance(id) => {
                server
                    .at(
                        path,
                        InstanceObject::new(
                            id,
                            props,
                            self.requests.clone(),
                            self.resources.clone(),
                        ),
                    )
                    .await?
            }
            Unit::Blade(id) => {
                server
                    .at(
                        path,
                        BladeObject::new(id, props, self.requests.clone(), self.resources.clone()),
                    )
                    .await?
            }
        };
        Ok(())
    }

    /// Sets `unit`'s properties: one PropertiesChanged with what changed,
    /// and ChildStateChanged when its state did.
    pub async fn update_child(&self, unit: Unit, props: ChildProps) -> zbus::Result<()> {
        let server = self.conn.object_server();
        let path = child_path(unit);
        let (old, emitter) = match unit {
            Unit::Instance(_) => {
                let iface = server.interface::<_, InstanceObject>(path.as_str()).await?;
                let mut obj = iface.get_mut().await;
                let old = std::mem::replace(&mut obj.props, props.clone());
                (old, iface.signal_emitter().clone())
            }
            Unit::Blade(_) => {
                let iface = server.interface::<_, BladeObject>(path.as_str()).await?;
                let mut obj = iface.get_mut().await;
                let old = std::mem::replace(&mut obj.props, props.clone());
                (old, iface.signal_emitter().clone())
            }
        };
        let instance = matches!(unit, Unit::Instance(_));
        let changed = props.changes(&old, instance);
        if changed.is_empty() {
            return Ok(());
        }
        let iface = if instance {
            INSTANCE_INTERFACE
        } else {
            BLADE_INTERFACE
        };
        Properties::properties_changed(
            &emitter,
            InterfaceName::from_static_str_unchecked(iface),
            changed,
            Cow::Borrowed(&[]),
        )
        .await?;
        let state_changed = props.active_state != old.active_state
            || props.sub_state != old.sub_state
            || props.result != old.result
            || props.sync_state != old.sync_state;
        if state_changed {
            let sup = SignalEmitter::new(&self.conn, SUPERVISOR_PATH)?;
            SupervisorObject::child_state_changed(
                &sup,
                unit.kind(),
                unit.id(),
                &props.active_state,
                &props.sub_state,
                &props.result,
                &props.sync_state,
            )
            .await?;
        }
        Ok(())
    }

    /// Sets the supervisor's `State`.
    pub async fn set_state(&self, state: &str) -> zbus::Result<()> {
        let iface = self
            .conn
            .object_server()
            .interface::<_, SupervisorObject>(SUPERVISOR_PATH)
            .await?;
        let mut obj = iface.get_mut().await;
        if obj.state == state {
            return Ok(());
        }
        obj.state = state.to_owned();
        obj.state_changed(iface.signal_emitter()).await
    }
}
