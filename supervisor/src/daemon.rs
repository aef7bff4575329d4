//! fpsyncd's life: configuration, the pid lock, the bus, the core, signals,
//! and the ordered stop. The core (and so every spawn of a child) runs on
//! the main thread, as the future the runtime blocks on, because children
//! must be spawned from a thread that lives as long as fpsyncd (see
//! `process`); the tasks it spawns (watchers, the sampler, the metrics
//! endpoint) run on [`WORKERS`] worker threads; the D-Bus connection, its
//! method calls and the publishing of changes run on a thread of their
//! own (`fpsyncd-bus`), so that a call is answered at once while the core
//! builds a report or 512 watchers parse their children's answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fpsync_dbus::Publisher;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::bus::{self, BusChoice, BusError};
use crate::config::{Config, ConfigError};
use crate::core::{Core, Programs};
use crate::notify::{Notifier, Watch};
use crate::process::{LockError, PidLock};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("configuration")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot find {0} (looked beside fpsyncd and in PATH)")]
    Program(&'static str),
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot handle signals")]
    Signals(#[source] std::io::Error),
    #[error("D-Bus")]
    Bus(#[from] BusError),
    #[error("the private bus (dbus-daemon) died")]
    BusDied,
    /// The `FPC_TLS_*` files fpsyncd's own queries of remote blades use.
    #[error("FPC_TLS_*: {0}")]
    Tls(String),
    #[error("cannot listen for metrics on {0}")]
    Metrics(std::net::SocketAddr, #[source] std::io::Error),
}

/// The runtime's worker threads (besides the main thread, which runs the
/// core).
pub const WORKERS: usize = 2;

/// How fpsyncd was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub bus: BusChoice,
    /// Where cmgrd and fpd are; default: beside fpsyncd, else PATH.
    pub bin_dir: Option<PathBuf>,
    /// The metrics endpoint's address, over the configuration's.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Finds `name` in `dir`, beside the running program, or in PATH.
pub fn find_program(name: &str, dir: Option<&Path>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = dir {
        dirs.push(d.to_owned());
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        dirs.push(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

pub fn run(options: Options) -> Result<(), DaemonError> {
    let config = Config::load()?;
    // fpsyncd queries remote blades as the same identity as its cmgrd.
    let tcp = fpc::client_from_options(config.tls.as_ref(), false)
        .map_err(|e| DaemonError::Tls(e.to_string()))?;
    fpc::install_client(tcp);
    let _lock = PidLock::acquire(&config.run_dir)?;
    let dir = options.bin_dir.as_deref();
    let programs = Programs {
        cmgrd: find_program("cmgrd", dir).ok_or(DaemonError::Program("cmgrd"))?,
        fpd: find_program("fpd", dir).ok_or(DaemonError::Program("fpd"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("fpsyncd-worker")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let bus_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fpsyncd-bus")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let span = tracing::info_span!("fpsyncd");
    let bus_thread = bus_runtime.handle().clone();
    let result =
        runtime.block_on(serve(Arc::new(config), programs, options, bus_thread).instrument(span));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    bus_runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(
    config: Arc<Config>,
    programs: Programs,
    options: Options,
    bus_thread: tokio::runtime::Handle,
) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let shutdown = CancellationToken::new();

    let (publish_tx, publish_rx) = mpsc::unbounded_channel();
    let (requests_tx, requests_rx) = mpsc::channel(256);
    let core = Core::new(config.clone(), &programs, publish_tx, String::new());
    let instances: Vec<u32> = config.instances.iter().map(|i| i.id).collect();
    let blades: Vec<u32> = config.blades.iter().map(|b| b.id).collect();
    let (conn, address, mut private) = bus::serve(
        &options.bus,
        &config.run_dir,
        requests_tx.clone(),
        instances.clone(),
        blades.clone(),
        core.initial_props(),
        core.resources(),
        core.answers(),
        &bus_thread,
    )
    .await?;
    // READY=1, STATUS= and WATCHDOG=1 come from the core's loop.
    let watch = match Notifier::from_env() {
        Ok(n) => n.map(Watch::new),
        Err(e) => {
            warn!("not telling systemd: {}", crate::chain(&e));
            None
        }
    };
    let core = core.with_bus_address(address.clone()).with_watch(watch);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "fpsyncd serves org.fpsync.Supervisor1 on {address}: instances {instances:?}, blades {blades:?}"
    );
    if private.is_some() {
        println!(
            "fpsyncd: private bus at {address} (also in {})",
            bus::address_file(&config.run_dir).display()
        );
    }

    let metrics_at = options.metrics_listen.or(config.metrics_listen);
    let metrics_task = match metrics_at {
        Some(addr) => {
            let listener = crate::scrape::bind(addr)
                .await
                .map_err(|e| DaemonError::Metrics(addr, e))?;
            Some(tokio::spawn(
                crate::scrape::serve(listener, requests_tx.clone(), shutdown.child_token())
                    .in_current_span(),
            ))
        }
        None => None,
    };

    let publisher = Publisher::new(conn.clone(), requests_tx, core.resources());
    let publish_task = bus_thread.spawn(bus::publish(publisher, publish_rx).in_current_span());

    let stop = shutdown.clone();
    let signals = tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
                    _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
                    _ = sighup.recv() => {
                        warn!("SIGHUP: reloading the configuration is not supported; restart fpsyncd to apply it");
                    }
                }
            }
            stop.cancel();
        }
        .in_current_span(),
    );

    let mut bus_died = false;
    let core_task = core.run(requests_rx, shutdown.clone());
    tokio::pin!(core_task);
    match private.as_mut() {
        Some(p) => {
            tokio::select! {
                _ = &mut core_task => {}
                _ = p.child.wait() => {
                    error!("the private dbus-daemon died: stopping every child");
                    bus_died = true;
                    shutdown.cancel();
                    core_task.await;
                }
            }
        }
        None => core_task.await,
    }
    signals.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    drop(conn);
    publish_task.abort();
    drop(private);
    let _ = std::fs::remove_file(bus::address_file(&config.run_dir));
    if bus_died {
        return Err(DaemonError::BusDied);
    }
    info!("fpsyncd stopped");
    Ok(())
}
