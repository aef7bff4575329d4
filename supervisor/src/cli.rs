//! `fpsync`: the supervisor's command-line client.
//!
//! `start|stop|restart|status [complete]` act on fpsyncd itself (or, with
//! `-I N` / `-b B`, on one child through D-Bus); `show`, `ipsec ha`,
//! `console` and `logs` read and change the running tree. Tables for people
//! by default, JSON with `--json`. Exit codes: 0 done, 1 failed, 2 bad
//! command line, 3 `status` of a stopped fpsyncd (as LSB scripts do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use fpsync_dbus::SupervisorProxy;
use serde_json::Value;
use zbus::Connection;

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
        /// serves).
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

#[derive(Debug, Clone, Copy)]
enum ChildUnit {
    Instance(u32),
    Blade(u32),
}

fn unit(instance: Option<u32>, blade: Option<u32>) -> Option<ChildUnit> {
    instance
        .map(ChildUnit::Instance)
        .or(blade.map(ChildUnit::Blade))
}

async fn child_action(
    address: &Option<String>,
    action: &str,
    u: ChildUnit,
) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    match (action, u) {
        ("start", ChildUnit::Instance(i)) => p.start_instance(i).await?,
        ("start", ChildUnit::Blade(b)) => p.start_blade(b).await?,
        ("stop", ChildUnit::Instance(i)) => p.stop_instance(i).await?,
        ("stop", ChildUnit::Blade(b)) => p.stop_blade(b).await?,
        ("restart", ChildUnit::Instance(i)) => p.restart_instance(i).await?,
        (_, ChildUnit::Blade(b)) => p.restart_blade(b).await?,
        (_, ChildUnit::Instance(i)) => p.restart_instance(i).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts fpsyncd unless it runs, then waits until every instance is in
/// sync (or reports what is not).
async fn start(
    address: &Option<String>,
    bus: &str,
    timeout: Duration,
) -> Result<ExitCode, CliError> {
    let config = Config::load().map_err(|e| CliError::Msg(crate::chain(&e)))?;
    let began = Instant::now();
    let mut spawned = None;
    match running_supervisor(&config.run_dir) {
        Some(pid) => println!("fpsyncd already runs (pid {pid})"),
        None => {
            let program = crate::find_program("fpsyncd", None).ok_or_else(|| {
                CliError::Msg("cannot find fpsyncd (beside fpsync or in PATH)".into())
            })?;
            std::fs::create_dir_all(&config.run_dir).map_err(|e| {
                CliError::Msg(format!("cannot create {}: {e}", config.run_dir.display()))
            })?;
            let log_path = config.run_dir.join("fpsyncd.log");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| CliError::Msg(format!("cannot open {}: {e}", log_path.display())))?;
            let mut cmd = std::process::Command::new(&program);
            match address {
                Some(a) => cmd.args(["--bus", a]),
                None => cmd.args(["--bus", bus]),
            };
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| CliError::Msg(e.to_string()))?)
                .stderr(log);
            // Daemonize: a session of its own, not our child for long.
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid(2) is async-signal-safe, and nix's wrapper
            // allocates nothing.
            unsafe {
                cmd.pre_exec(|| {
                    let _ = nix::unistd::setsid();
                    Ok(())
                });
            }
            let child = cmd
                .spawn()
                .map_err(|e| CliError::Msg(format!("cannot start {}: {e}", program.display())))?;
            println!(
                "fpsyncd started (pid {}), logs: journal or {}",
                child.id(),
                log_path.display()
            );
            spawned = Some((child, log_path));
        }
    }
    // Wait for the bus, then for sync.
    let deadline = began + timeout;
    let mut last: Option<Value> = None;
    loop {
        if let Some((child, log)) = spawned.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(CliError::Msg(format!(
                    "fpsyncd exited ({status}):\n{}",
                    tail.join("\n")
                )));
            }
        }
        if let Ok(conn) = connect(address).await {
            if let Ok(p) = proxy(&conn).await {
                if let Ok(s) = status_json(&p).await {
                    let state = s["state"].as_str().unwrap_or("").to_owned();
                    let failed = s["instances"]
                        .as_array()
                        .into_iter()
                        .chain(s["blades"].as_array())
                        .flatten()
                        .any(|c| c["active_state"] == "failed");
                    if state == "running" {
                        print_status(&s);
                        println!(
                            "all instances in sync after {:.1} s",
                            began.elapsed().as_secs_f64()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    if failed {
                        print_status(&s);
                        return Err(CliError::Msg(
                            "a child failed: see above (fpsync logs -I N)".into(),
                        ));
                    }
                    last = Some(s);
                }
            }
        }
        if Instant::now() >= deadline {
            if let Some(s) = &last {
                print_status(s);
            }
            return Err(CliError::Msg(format!(
                "not every instance is in sync after {:.0} s",
                timeout.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop() -> Result<ExitCode, CliError> {
    let run_dir = run_dir();
    let Some(pid) = running_supervisor(&run_dir) else {
        println!("fpsyncd is not running");
        return Ok(ExitCode::SUCCESS);
    };
    // The pid the locked pid file names.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_supervisor(&run_dir).is_some() {
        if Instant::now() >= deadline {
            return Err(CliError::Msg(format!(
                "fpsyncd (pid {pid}) did not stop within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("fpsyncd stopped");
    Ok(ExitCode::SUCCESS)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

fn n(v: &Value, k: &str) -> String {
    v[k].as_u64()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

fn ids(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

/// Bytes as systemd prints MemoryCurrent (1024-based, one decimal).
fn bytes(v: &Value) -> String {
    let Some(b) = v.as_u64() else {
        return "-".into();
    };
    let units = ["B", "K", "M", "G", "T"];
    let mut x = b as f64;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{x:.1}{}", units[i])
    }
}

/// CPU nanoseconds as seconds with milliseconds.
fn cpu(v: &Value) -> String {
    match v.as_u64() {
        Some(ns) => format!("{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000),
        None => "-".into(),
    }
}

/// The columns every child has: resources and the age of its figures.
fn usage(c: &Value) -> String {
    format!(
        "{:>8} {:>9} {:>5} {:>7}",
        bytes(&c["memory_current"]),
        cpu(&c["cpu_usage_nsec"]),
        n(c, "tasks_current"),
        match c["report_age_ms"].as_u64() {
            Some(ms) => format!("{ms}ms"),
            None => "-".into(),
        }
    )
}

const USAGE_HEADER: [&str; 4] = ["MEMORY", "CPU", "TASKS", "AGE"];

fn usage_header() -> String {
    let [m, c, t, a] = USAGE_HEADER;
    format!("{m:>8} {c:>9} {t:>5} {a:>7}")
}

fn print_status(st: &Value) {
    println!(
        "fpsyncd {} (pid {}), state {}, bus {}",
        s(st, "version"),
        n(st, "pid"),
        s(st, "state"),
        s(st, "bus")
    );
    println!(
        "{:<9} {:<16} {:<7} {:<24} {:<13} {:>8} {:>8} {}  NOTE",
        "INSTANCE",
        "NETNS",
        "BLADES",
        "STATE",
        "SYNC",
        "PID",
        "RESTARTS",
        usage_header()
    );
    for i in st["instances"].as_array().into_iter().flatten() {
        let netns = match s(i, "netns") {
            "" => "(fpsyncd's)",
            x => x,
        };
        println!(
            "{:<9} {:<16} {:<7} {:<24} {:<13} {:>8} {:>8} {}  {}",
            n(i, "id"),
            netns,
            ids(&i["blades"]),
            format!("{}/{}", s(i, "active_state"), s(i, "sub_state")),
            s(i, "sync_state"),
            n(i, "main_pid"),
            n(i, "n_restarts"),
            usage(i),
            i["error"]
                .as_str()
                .or(i["last_failure"].as_str())
                .unwrap_or("")
        );
    }
    println!(
        "{:<9} {:<9} {:<24} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6} {}  NOTE",
        "BLADE",
        "INSTANCE",
        "STATE",
        "PID",
        "LINKS",
        "ADDRS",
        "ROUTES4",
        "ROUTES6",
        "NEXTHOPS",
        "NEIGH",
        usage_header()
    );
    for b in st["blades"].as_array().into_iter().flatten() {
        let t = &b["tables"];
        println!(
            "{:<9} {:<9} {:<24} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6} {}  {}",
            n(b, "id"),
            n(b, "instance"),
            format!("{}/{}", s(b, "active_state"), s(b, "sub_state")),
            n(b, "main_pid"),
            n(t, "links"),
            n(t, "addresses"),
            n(t, "routes4"),
            n(t, "routes6"),
            n(t, "nexthops"),
            n(t, "neighbours"),
            usage(b),
            b["error"]
                .as_str()
                .or(b["last_failure"].as_str())
                .unwrap_or("")
        );
    }
}

async fn status(
    address: &Option<String>,
    complete: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let running = match connect(address).await {
        Ok(conn) => match proxy(&conn).await {
            Ok(p) => Some(status_json(&p).await?),
            Err(CliError::NotRunning) => None,
            Err(e) => return Err(e),
        },
        Err(CliError::NotRunning) => None,
        Err(e) if !complete => return Err(e),
        Err(e) => {
            eprintln!("fpsync: {e}");
            None
        }
    };
    let checks = complete.then(crate::install::check);
    if json {
        let mut out = serde_json::json!({ "running": running.is_some(), "status": running });
        if let Some(c) = &checks {
            out["installation"] = crate::install::to_json(c);
        }
        println!("{out}");
    } else {
        match &running {
            Some(st) => print_status(st),
            None => println!("fpsyncd is not running"),
        }
        if let Some(c) = &checks {
            println!();
            crate::install::print(c);
        }
    }
    Ok(match running {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::from(3),
    })
}

/// The instances a show targets: -I N, the instance feeding -b B, or all.
fn targets(st: &Value, instance: Option<u32>, blade: Option<u32>) -> Result<Vec<u32>, CliError> {
    let all: Vec<u32> = st["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_u64().map(|x| x as u32))
        .collect();
    match (instance, blade) {
        (Some(i), _) if all.contains(&i) => Ok(vec![i]),
        (Some(i), _) => Err(CliError::Msg(format!(
            "no instance {i} (configured: {all:?})"
        ))),
        (None, Some(b)) => st["blades"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["id"].as_u64() == Some(b as u64))
            .map(|x| {
                x["instance"]
                    .as_u64()
                    .map(|i| vec![i as u32])
                    .unwrap_or_default()
            })
            .ok_or_else(|| CliError::Msg(format!("no blade {b}"))),
        (None, None) => Ok(all),
    }
}

async fn show(
    address: &Option<String>,
    what: Show,
    instance: Option<u32>,
    blade: Option<u32>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    let st = status_json(&p).await?;
    let keep_instance = |i: &Value| instance.is_none_or(|x| i["id"].as_u64() == Some(x as u64));
    let keep_blade = |b: &Value| blade.is_none_or(|x| b["id"].as_u64() == Some(x as u64));
    match what {
        Show::Instances | Show::Blades => {
            let mut view = st.clone();
            if let Some(a) = view["instances"].as_array_mut() {
                a.retain(|i| {
                    keep_instance(i)
                        && blade.is_none_or(|b| {
                            i["blades"]
                                .as_array()
                                .is_some_and(|bs| bs.iter().any(|x| x.as_u64() == Some(b as u64)))
                        })
                });
            }
            if let Some(a) = view["blades"].as_array_mut() {
                a.retain(|b| {
                    keep_blade(b)
                        && instance.is_none_or(|i| b["instance"].as_u64() == Some(i as u64))
                });
            }
            let key = if matches!(what, Show::Instances) {
                "instances"
            } else {
                "blades"
            };
            if json {
                println!("{}", view[key]);
            } else {
                if matches!(what, Show::Instances) {
                    view["blades"] = Value::Array(vec![]);
                } else {
                    view["instances"] = Value::Array(vec![]);
                }
                print_status(&view);
            }
        }
        Show::Stats => {
            let stats: Value = serde_json::from_str(&p.statistics().await?)
                .map_err(|e| CliError::Msg(format!("bad Statistics answer: {e}")))?;
            let wanted: Option<Vec<String>> = match (instance, blade) {
                (None, None) => None,
                (_, Some(b)) => Some(vec![b.to_string()]),
                (Some(i), None) => Some(
                    st["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|x| x["id"].as_u64() == Some(i as u64))
                        .flat_map(|x| x["blades"].as_array().cloned().unwrap_or_default())
                        .map(|b| b.to_string())
                        .collect(),
                ),
            };
            if json {
                match &wanted {
                    None => println!("{stats}"),
                    Some(w) => {
                        let blades: serde_json::Map<String, Value> = stats["blades"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, _)| w.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        println!("{}", serde_json::json!({"blades": blades}));
                    }
                }
            } else {
                print_stats(&stats, wanted.as_deref());
                // Each instance's ports: the fast path beside Linux.
                for i in targets(&st, instance, blade)? {
                    match p.console(i, "show stats").await {
                        Ok(a) => {
                            println!("== instance {i}: interfaces ==");
                            print!("{a}");
                        }
                        Err(e) => println!("== instance {i}: interfaces: {} ==", dbus_message(&e)),
                    }
                }
            }
        }
        Show::Netlink | Show::Queue | Show::Interfaces | Show::SyncFeatures => {
            let word = match what {
                Show::Netlink => "netlink",
                Show::Queue => "queue",
                Show::Interfaces => "interfaces",
                _ => "sync-features",
            };
            let command = if json {
                format!("show {word} --json")
            } else {
                format!("show {word}")
            };
            let mut out = BTreeMap::new();
            let mut failed = false;
            for i in targets(&st, instance, blade)? {
                match p.console(i, &command).await {
                    Ok(a) => {
                        out.insert(i, Ok(a));
                    }
                    Err(e) => {
                        failed = true;
                        out.insert(i, Err(dbus_message(&e)));
                    }
                }
            }
            if json {
                let m: serde_json::Map<String, Value> = out
                    .into_iter()
                    .map(|(i, a)| {
                        let v = match a {
                            Ok(t) => serde_json::from_str(t.trim()).unwrap_or(Value::String(t)),
                            Err(e) => serde_json::json!({ "error": e }),
                        };
                        (i.to_string(), v)
                    })
                    .collect();
                println!("{}", Value::Object(m));
            } else {
                for (i, a) in out {
                    println!("== instance {i} ==");
                    match a {
                        Ok(t) => print!("{t}"),
                        Err(e) => println!("error: {e}"),
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `show stats --format openmetrics`: what `Metrics()` answers, as is.
async fn openmetrics(address: &Option<String>) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    print!("{}", p.metrics().await?);
    Ok(ExitCode::SUCCESS)
}

fn print_stats(stats: &Value, wanted: Option<&[String]>) {
    let mut names: Vec<String> = stats["total"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    let blades: Vec<(&String, &Value)> = stats["blades"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| wanted.is_none_or(|w| w.contains(k)))
        .collect();
    print!("{:<22}", "COUNTER");
    for (b, _) in &blades {
        print!(" {:>12}", format!("blade {b}"));
    }
    if wanted.is_none() {
        print!(" {:>12}", "total");
    }
    println!();
    for name in &names {
        print!("{name:<22}");
        for (_, v) in &blades {
            print!(" {:>12}", n(v, name));
        }
        if wanted.is_none() {
            print!(" {:>12}", n(&stats["total"], name));
        }
        println!();
    }
    for (who, e) in stats["errors"].as_object().into_iter().flatten() {
        println!("{who}: {}", e.as_str().unwrap_or(""));
    }
}

async fn ipsec(
    address: &Option<String>,
    action: HaAction,
    blades: Vec<u32>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    let states = match action {
        HaAction::Show => {
            let all = p.ipsec_ha_status().await?;
            all.into_iter()
                .filter(|(b, _)| blades.is_empty() || blades.contains(b))
                .collect::<BTreeMap<_, _>>()
        }
        HaAction::Enable => p.set_ipsec_ha(true, &blades).await?.into_iter().collect(),
        HaAction::Disable => p.set_ipsec_ha(false, &blades).await?.into_iter().collect(),
    };
    if json {
        let m: serde_json::Map<String, Value> = states
            .iter()
            .map(|(b, s)| (b.to_string(), Value::Bool(*s)))
            .collect();
        println!("{}", Value::Object(m));
    } else {
        for (b, s) in states {
            println!(
                "blade {b}: IPsec High Availability {}",
                if s { "enabled" } else { "disabled" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn logs(
    instance: Option<u32>,
    blade: Option<u32>,
    follow: bool,
    lines: u32,
) -> Result<ExitCode, CliError> {
    if !Path::new("/run/systemd/journal/socket").exists() {
        return Err(CliError::Msg(
            "no journal runs here: the children log to fpsyncd's standard error (<run dir>/fpsyncd.log when `fpsync start` started it)".into(),
        ));
    }
    let (ident, field) = match (instance, blade) {
        (Some(i), _) => (format!("cmgrd{i}"), format!("INSTANCE={i}")),
        (None, Some(b)) => (format!("fpd{b}"), format!("BLADE={b}")),
        _ => {
            return Err(CliError::Msg(
                "name an instance (-I N) or a blade (-b B)".into(),
            ))
        }
    };
    // The child's own lines, and fpsyncd's lines about it.
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["--no-pager", "-n", &lines.to_string()])
        .arg(format!("SYSLOG_IDENTIFIER={ident}"))
        .arg("+")
        .arg("SYSLOG_IDENTIFIER=fpsyncd")
        .arg(field);
    if follow {
        cmd.arg("-f");
    }
    let status = cmd
        .status()
        .map_err(|e| CliError::Msg(format!("cannot run journalctl: {e}")))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
