//! fpsyncd on D-Bus: the system bus when one runs, else a private
//! dbus-daemon that fpsyncd starts with the shipped policy (its address in
//! `<run dir>/bus`, where the CLI finds it), or the bus an address names.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fpsync_dbus::{
    child_path, AnswerTable, BladeObject, ChildProps, InstanceObject, Publisher, Request,
    ResourceTable, SupervisorObject, Unit, MANAGER_PATH, SUPERVISOR_NAME, SUPERVISOR_PATH,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tracing::{debug, info};
use zbus::Connection;

use crate::core::Publish;
use crate::process::{self, Handle};

/// The shipped policy and private bus configuration.
pub const POLICY: &str = include_str!("../../etc/dbus-1/system.d/org.fpsync.conf");
pub const PRIVATE_BUS_CONFIG: &str = include_str!("../../etc/dbus-1/fpsync-bus.conf");

/// Which bus to serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    /// The system bus if one answers, else a private one.
    Auto,
    System,
    Private,
    Address(String),
}

impl std::str::FromStr for BusChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => BusChoice::Auto,
            "system" => BusChoice::System,
            "private" => BusChoice::Private,
            a if a.contains(':') => BusChoice::Address(a.to_owned()),
            _ => {
                return Err(format!(
                    "{s:?}: expected auto, system, private or a D-Bus address"
                ))
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot start dbus-daemon for a private bus")]
    Spawn(#[source] std::io::Error),
    #[error("the private dbus-daemon did not print its address: {0}")]
    NoAddress(String),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the bus at {address}")]
    Connect {
        address: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("cannot own {SUPERVISOR_NAME} (another supervisor, or the bus policy refuses)")]
    Name(#[source] Box<zbus::Error>),
}

/// A private dbus-daemon, a child of fpsyncd.
pub struct PrivateBus {
    pub child: tokio::process::Child,
    pub handle: Handle,
    pub address_file: PathBuf,
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        self.handle.signal(libc::SIGTERM);
        let _ = std::fs::remove_file(&self.address_file);
    }
}

/// Where fpsyncd writes the address of the bus it serves on.
pub fn address_file(run_dir: &Path) -> PathBuf {
    run_dir.join("bus")
}

/// Starts `dbus-daemon` with the shipped private-bus configuration and
/// policy, listening in `run_dir`.
pub async fn start_private(run_dir: &Path) -> Result<(PrivateBus, String), BusError> {
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|source| BusError::Write { path, source })
    };
    std::fs::create_dir_all(run_dir.join("system.d")).map_err(|source| BusError::Write {
        path: run_dir.to_owned(),
        source,
    })?;
    write(run_dir.join("system.d/org.fpsync.conf"), POLICY)?;
    let config = run_dir.join("bus.conf");
    write(config.clone(), PRIVATE_BUS_CONFIG)?;
    let socket = run_dir.join("bus.sock");
    let _ = std::fs::remove_file(&socket);
    let mut cmd = process::command(
        Path::new("dbus-daemon"),
        &[
            "--nofork".into(),
            format!("--config-file={}", config.display()),
            format!("--address=unix:path={}", socket.display()),
            "--print-address=1".into(),
        ],
    );
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(BusError::Spawn)?;
    let handle = process::handle(child.id().unwrap_or(0));
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BusError::NoAddress("no stdout".into()))?;
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let read = reader.read_line(&mut line);
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(Ok(_)) => return Err(BusError::NoAddress("it exited (its error is above)".into())),
        Ok(Err(e)) => return Err(BusError::NoAddress(e.to_string())),
        Err(_) => return Err(BusError::NoAddress("nothing within 10 s".into())),
    }
    let address = line.trim().to_owned();
    let address_file = address_file(run_dir);
    write(address_file.clone(), &format!("{address}\n"))?;
    Ok((
        PrivateBus {
            child,
            handle,
            address_file,
        },
        address,
    ))
}

/// Connects to the chosen bus (starting a private one if need be), serves
/// every object and takes the supervisor's name. The connection is built
/// on `bus_thread` (a runtime of its own), so its reader and every method
/// call run there, never queued behind the watchers' tasks; the private
/// dbus-daemon, if any, is started from the caller's thread and comes back
/// too: it lives as long as it is held.
// Each argument is one thing the objects are made of; a struct of them
// would only rename this list.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    choice: &BusChoice,
    run_dir: &Path,
    requests: mpsc::Sender<Request>,
    instances: Vec<u32>,
    blades: Vec<u32>,
    children: Vec<(Unit, ChildProps)>,
    resources: ResourceTable,
    answers: AnswerTable,
    bus_thread: &tokio::runtime::Handle,
) -> Result<(Connection, String, Option<PrivateBus>), BusError> {
    let (builder, address, private) = match choice {
        BusChoice::System => (system_builder()?, "system".to_owned(), None),
        BusChoice::Address(a) => (builder_at(a)?, a.clone(), None),
        BusChoice::Private => {
            let (p, a) = start_private(run_dir).await?;
            (builder_at(&a)?, a, Some(p))
        }
        BusChoice::Auto => {
            let system = tokio::time::timeout(Duration::from_secs(2), Connection::system()).await;
            match system {
                Ok(Ok(_probe)) => (system_builder()?, "system".to_owned(), None),
                _ => {
                    info!("no system bus: starting a private one");
                    let (p, a) = start_private(run_dir).await?;
                    (builder_at(&a)?, a, Some(p))
                }
            }
        }
    };
    let connect_err = |source| BusError::Connect {
        address: address.clone(),
        source: Box::new(source),
    };
    let sup = SupervisorObject::new(
        requests.clone(),
        answers,
        instances,
        blades,
        address.clone(),
    );
    let mut builder = builder
        .serve_at(SUPERVISOR_PATH, sup)
        .map_err(connect_err)?
        .serve_at(MANAGER_PATH, zbus::fdo::ObjectManager)
        .map_err(connect_err)?;
    for (unit, props) in children {
        builder = match unit {
            Unit::Instance(id) => builder.serve_at(
                child_path(unit),
                InstanceObject::new(id, props, requests.clone(), resources.clone()),
            ),
            Unit::Blade(id) => builder.serve_at(
                child_path(unit),
                BladeObject::new(id, props, requests.clone(), resources.clone()),
            ),
        }
        .map_err(connect_err)?;
    }
    let builder = builder.name(SUPERVISOR_NAME).map_err(connect_err)?;
    let conn = bus_thread
        .spawn(builder.build())
        .await
        .unwrap_or_else(|e| Err(zbus::Error::Failure(format!("the bus thread: {e}"))))
        .map_err(|e| match e {
            zbus::Error::NameTaken | zbus::Error::FDO(_) => BusError::Name(Box::new(e)),
            e => connect_err(e),
        })?;
    if private.is_none() && address != "system" {
        // Let the CLI find an explicitly named bus too.
        let file = address_file(run_dir);
        let _ = std::fs::write(&file, format!("{address}\n"));
    }
    Ok((conn, address, private))
}

fn system_builder() -> Result<zbus::connection::Builder<'static>, BusError> {
    zbus::connection::Builder::system().map_err(|source| BusError::Connect {
        address: "system".into(),
        source: Box::new(source),
    })
}

fn builder_at(address: &str) -> Result<zbus::connection::Builder<'static>, BusError> {
    zbus::connection::Builder::address(address).map_err(|source| BusError::Connect {
        address: address.to_owned(),
        source: Box::new(source),
    })
}

/// Applies the core's state changes to the bus objects, in order.
pub async fn publish(publisher: Publisher, mut rx: mpsc::UnboundedReceiver<Publish>) {
    while let Some(p) = rx.recv().await {
        let res = match p {
            Publish::Child(unit, props) => publisher.update_child(unit, props).await,
            Publish::State(state) => publisher.set_state(&state).await,
        };
        if let Err(e) = res {
            debug!("publishing a change failed: {e}");
        }
    }
}
