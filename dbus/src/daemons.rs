//! The objects cmgrd and fpd serve under their own names
//! (`org.fpsync.CacheManager1.I<N>`, `org.fpsync.FastPath1.B<B>`).
//!
//! Adapters only: each method hands its work to a core the daemon provides
//! and maps the answer; failures become named errors. A daemon that finds
//! no bus runs on without one: the bus is a view, never a dependency.

use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use crate::{cache_manager_name, cache_manager_path, fast_path_name, fast_path_path, Error};

/// What cmgrd answers on the bus; blocking calls are run off the executor.
pub trait CacheManagerCore: Send + Sync + 'static {
    /// A console command (the seed's `daemonctl` commands) and its answer;
    /// Err for a command the console refuses.
    fn console(&self, command: &str) -> Result<String, String>;
}

pub struct CacheManagerObject {
    instance: u32,
    netns: String,
    sync_state: String,
    core: Arc<dyn CacheManagerCore>,
}

impl CacheManagerObject {
    pub fn new(instance: u32, netns: String, core: Arc<dyn CacheManagerCore>) -> Self {
        CacheManagerObject {
            instance,
            netns,
            sync_state: "initial-dump".into(),
            core,
        }
    }

    async fn run(&self, command: String) -> Result<String, Error> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.console(&command))
            .await
            .map_err(|e| Error::Failed(e.to_string()))?
            .map_err(Error::InvalidArgument)
    }
}

#[interface(name = "org.fpsync.CacheManager1")]
impl CacheManagerObject {
    #[zbus(property)]
    fn instance_id(&self) -> u32 {
        self.instance
    }

    #[zbus(property)]
    fn net_namespace(&self) -> String {
        self.netns.clone()
    }

    /// `initial-dump|synced|resyncing`.
    #[zbus(property)]
    fn sync_state(&self) -> String {
        self.sync_state.clone()
    }

    /// `show sync` as JSON: state, counters, cached objects.
    async fn status(&self) -> Result<String, Error> {
        self.run("show sync --json".into()).await
    }

    /// One console command (root only under the shipped policy).
    async fn console(&self, command: String) -> Result<String, Error> {
        self.run(command).await
    }
}

/// What fpd answers on the bus.
pub trait FastPathCore: Send + Sync + 'static {
    /// Table sizes and sync state, as JSON.
    fn counters(&self) -> Result<String, String>;
    /// Per-interface statistics, as JSON.
    fn statistics(&self) -> Result<String, String>;
}

pub struct FastPathObject {
    blade: u32,
    core: Arc<dyn FastPathCore>,
}

impl FastPathObject {
    pub fn new(blade: u32, core: Arc<dyn FastPathCore>) -> Self {
        FastPathObject { blade, core }
    }

    async fn run(
        &self,
        f: impl FnOnce(&dyn FastPathCore) -> Result<String, String> + Send + 'static,
    ) -> Result<String, Error> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || f(core.as_ref()))
            .await
            .map_err(|e| Error::Failed(e.to_string()))?
            .map_err(Error::Failed)
    }
}

#[interface(name = "org.fpsync.FastPath1")]
impl FastPathObject {
    #[zbus(property)]
    fn blade(&self) -> u32 {
        self.blade
    }

    async fn counters(&self) -> Result<String, Error> {
        self.run(|c| c.counters()).await
    }

    async fn statistics(&self) -> Result<String, Error> {
        self.run(|c| c.statistics()).await
    }
}

/// The bus a child daemon joins: `$FPSYNC_BUS_ADDRESS` (set by fpsyncd),
/// else the address fpsyncd wrote to /run/fpsync/bus, else the system bus.
pub async fn connect_child() -> Result<Connection, zbus::Error> {
    let address = std::env::var("FPSYNC_BUS_ADDRESS").ok().or_else(|| {
        std::fs::read_to_string("/run/fpsync/bus")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    });
    match address {
        Some(a) => {
            zbus::connection::Builder::address(a.as_str())?
                .build()
                .await
        }
        None => Connection::system().await,
    }
}

/// Serves `object` at the instance's path and takes its name.
pub async fn serve_cache_manager(
    conn: &Connection,
    object: CacheManagerObject,
) -> Result<(), zbus::Error> {
    let instance = object.instance;
    conn.object_server()
        .at(cache_manager_path(instance), object)
        .await?;
    conn.request_name(cache_manager_name(instance)).await?;
    Ok(())
}

/// Updates `SyncState` (and signals the change) when it differs.
pub async fn set_sync_state(
    conn: &Connection,
    instance: u32,
    state: &str,
) -> Result<(), zbus::Error> {
    let iface = conn
        .object_server()
        .interface::<_, CacheManagerObject>(cache_manager_path(instance))
        .await?;
    let mut obj = iface.get_mut().await;
    if obj.sync_state != state {
        obj.sync_state = state.to_owned();
        let emitter: &SignalEmitter<'_> = iface.signal_emitter();
        obj.sync_state_changed(emitter).await?;
    }
    Ok(())
}

/// Serves `object` at the blade's path and takes its name.
pub async fn serve_fast_path(conn: &Connection, object: FastPathObject) -> Result<(), zbus::Error> {
    let blade = object.blade;
    conn.object_server()
        .at(fast_path_path(blade), object)
        .await?;
    conn.request_name(fast_path_name(blade)).await?;
    Ok(())
}
