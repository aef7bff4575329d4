//! `fpsync`: the supervisor's command-line client.
//!
//! `start|stop|restart|status [complete]` act on fpsyncd itself (or, with
//! `-I N` / `-b B`, on one child through D-Bus); `show`, `ipsec ha`,
//! `console` and `logs` read and change the running tree. Tables for people
//! by default, JSON with `--json`. Exit codes: 0 done, 1 failed, 2 bad
//! command line, 3 `status` of a stopped fpsyncd (as LSB scripts do).

mod lifecycle;
mod show;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use fpsync_dbus::SupervisorProxy;
use serde_json::Value;
use zbus::Connection;

use self::lifecycle::{child_action, start, stop, unit};
use self::show::{ipsec, logs, openmetrics, show};
use self::status::status;
use crate::config::{Config, DEFAULT_RUN_DIR};
use crate::process::running_supervisor;

#[derive(Debug, Parser)]
#[command(
    name = "fpsync",
    version,
    about = "Control fpsyncd, the fpsync supervisor"
)]
struct Cli {
    /// The supervisor's bus [default: $FPSYNC_BUS_ADDRESS, then the address
    /// in <run dir>/bus, then the system bus].
    #[arg(long, global = true, value_name = "ADDRESS")]
    address: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start fpsyncd (daemonized) and wait until every instance is in sync;
    /// with -I/-b, start one child.
    Start {
        #[arg(short = 'I', value_name = "N", conflicts_with = "blade")]
        instance: Option<u32>,
        #[arg(short = 'b', value_name = "B")]
        blade: Option<u32>,
        /// How long to wait for sync, in seconds.
        #[arg(long, default_value = "120", value_parser = common::units::Checked(common::units::parse_seconds))]
        timeout: Duration,
        /// The bus fpsyncd serves on: auto, system, private or an address.
        #[arg(long, default_value = "auto")]
        bus: String,
    },
    /// Stop fpsyncd and every child (instances first); with -I/-b, one child.
    Stop {
        #[arg(short = 'I', value_name = "N", conflicts_with = "blade")]
        instance: Option<u32>,
        #[arg(short = 'b', value_name = "B")]
        blade: Option<u32>,
    },
    /// Stop, then start; with -I/-b, restart one child.
    Restart {
        #[arg(short = 'I', value_name = "N", conflicts_with = "blade")]
        instance: Option<u32>,
        #[arg(short = 'b', value_name = "B")]
        blade: Option<u32>,
        #[arg(long, default_value = "120", value_parser = common::units::Checked(common::units::parse_seconds))]
        timeout: Duration,
    },
    /// The running children; `status complete` also checks the installation.
    Status {
        #[arg(value_parser = ["complete"])]
        complete: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Views of the running tree.
    Show {
        what: Show,
        #[arg(short = 'I', value_name = "N", conflicts_with = "blade")]
        instance: Option<u32>,
        #[arg(short = 'b', value_name = "B")]
        blade: Option<u32>,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// table (for people), json, or openmetrics (`show stats` only:
        /// every counter of every child, the text the metrics endpoint
        /// serves). In `show stats` JSON a counter that is 0 (a flag that
        /// is false) is left out, but for `total`.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// `ipsec ha show|enable|disable [-b B]...`
    Ipsec {
        #[arg(value_parser = ["ha"])]
        feature: String,
        action: HaAction,
        /// Blades (repeatable) [default: all].
        #[arg(short = 'b', value_name = "B")]
        blades: Vec<u32>,
        #[arg(long)]
        json: bool,
    },
    /// One command for an instance's console.
    Console {
        #[arg(short = 'I', value_name = "N")]
        instance: u32,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// A child's journal.
    Logs {
        #[arg(
            short = 'I',
            value_name = "N",
            conflicts_with = "blade",
            required_unless_present = "blade"
        )]
        instance: Option<u32>,
        #[arg(short = 'b', value_name = "B")]
        blade: Option<u32>,
        /// Follow.
        #[arg(short = 'f')]
        follow: bool,
        /// Lines to show.
        #[arg(short = 'n', default_value_t = 100)]
        lines: u32,
    },
    /// Clear failed children (start-limit-hit), as `systemctl reset-failed`.
    ResetFailed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Show {
    Instances,
    Blades,
    Stats,
    Netlink,
    Queue,
    Interfaces,
    SyncFeatures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Openmetrics,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HaAction {
    Show,
    Enable,
    Disable,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Msg(String),
    #[error("fpsyncd is not running")]
    NotRunning,
    #[error("cannot reach fpsyncd on the bus {address}: {source}")]
    Bus {
        address: String,
        source: Box<zbus::Error>,
    },
    #[error("{}", dbus_message(.0))]
    Call(Box<zbus::Error>),
}

fn dbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => {
            let short = name.as_str().rsplit('.').next().unwrap_or("");
            format!("{msg} ({short})")
        }
        other => other.to_string(),
    }
}

impl From<zbus::Error> for CliError {
    fn from(e: zbus::Error) -> Self {
        CliError::Call(Box::new(e))
    }
}

/// fpsync's clap command, for its man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fpsync: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(CliError::NotRunning) => {
            eprintln!("fpsync: fpsyncd is not running");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("fpsync: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The run directory of the configuration in force (default if it does not
/// load: then `start` reports why).
fn run_dir() -> PathBuf {
    Config::load()
        .map(|c| c.run_dir)
        .unwrap_or_else(|_| PathBuf::from(DEFAULT_RUN_DIR))
}

fn bus_address(explicit: &Option<String>, run_dir: &Path) -> Option<String> {
    explicit
        .clone()
        .or_else(|| {
            std::env::var("FPSYNC_BUS_ADDRESS")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            std::fs::read_to_string(crate::bus::address_file(run_dir))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
}

async fn connect(address: &Option<String>) -> Result<Connection, CliError> {
    let run_dir = run_dir();
    let addr = bus_address(address, &run_dir);
    let shown = addr.clone().unwrap_or_else(|| "system".into());
    let conn = match &addr {
        Some(a) => match zbus::connection::Builder::address(a.as_str()) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        },
        None => Connection::system().await,
    };
    conn.map_err(|source| {
        if addr.is_none() && running_supervisor(&run_dir).is_none() {
            CliError::NotRunning
        } else {
            CliError::Bus {
                address: shown,
                source: Box::new(source),
            }
        }
    })
}

async fn proxy(conn: &Connection) -> Result<SupervisorProxy<'_>, CliError> {
    let p = SupervisorProxy::new(conn).await?;
    // Fail early and clearly when nobody owns the name.
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let name =
        zbus::names::BusName::try_from(fpsync_dbus::SUPERVISOR_NAME).map_err(zbus::Error::from)?;
    if !dbus.name_has_owner(name).await.map_err(zbus::Error::from)? {
        return Err(CliError::NotRunning);
    }
    Ok(p)
}

async fn status_json(p: &SupervisorProxy<'_>) -> Result<Value, CliError> {
    let text = p.status().await?;
    serde_json::from_str(&text).map_err(|e| CliError::Msg(format!("bad Status answer: {e}")))
}

async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    let address = cli.address.clone();
    match cli.command {
        Cmd::Start {
            instance,
            blade,
            timeout,
            bus,
        } => match unit(instance, blade) {
            Some(u) => child_action(&address, "start", u).await,
            None => start(&address, &bus, timeout).await,
        },
        Cmd::Stop { instance, blade } => match unit(instance, blade) {
            Some(u) => child_action(&address, "stop", u).await,
            None => stop().await,
        },
        Cmd::Restart {
            instance,
            blade,
            timeout,
        } => match unit(instance, blade) {
            Some(u) => child_action(&address, "restart", u).await,
            None => {
                stop().await?;
                start(&address, "auto", timeout).await
            }
        },
        Cmd::Status { complete, json } => status(&address, complete.is_some(), json).await,
        Cmd::Show {
            what,
            instance,
            blade,
            json,
            format,
        } => match (format, what) {
            (Format::Openmetrics, Show::Stats) if instance.is_none() && blade.is_none() => {
                openmetrics(&address).await
            }
            (Format::Openmetrics, Show::Stats) => Err(CliError::Msg(
                "--format openmetrics shows every child: drop -I/-b (select with labels)".into(),
            )),
            (Format::Openmetrics, _) => Err(CliError::Msg(
                "--format openmetrics is for `show stats` only".into(),
            )),
            _ => {
                show(
                    &address,
                    what,
                    instance,
                    blade,
                    json || format == Format::Json,
                )
                .await
            }
        },
        Cmd::Ipsec {
            action,
            blades,
            json,
            ..
        } => ipsec(&address, action, blades, json).await,
        Cmd::Console { instance, command } => {
            let conn = connect(&address).await?;
            let p = proxy(&conn).await?;
            print!("{}", p.console(instance, &command.join(" ")).await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Logs {
            instance,
            blade,
            follow,
            lines,
        } => logs(instance, blade, follow, lines),
        Cmd::ResetFailed => {
            let conn = connect(&address).await?;
            proxy(&conn).await?.reset_failed().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
