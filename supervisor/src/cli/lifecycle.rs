//! `fpsync start|stop|restart`: of the supervisor itself (started in the
//! background, waited for until it answers on the bus), or of one child
//! unit through the bus, each answer checked.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::status::print_status;
use super::{connect, proxy, run_dir, status_json, CliError};
use crate::config::Config;
use crate::process::running_supervisor;

#[derive(Debug, Clone, Copy)]
pub(super) enum ChildUnit {
    Instance(u32),
    Blade(u32),
}

pub(super) fn unit(instance: Option<u32>, blade: Option<u32>) -> Option<ChildUnit> {
    instance
        .map(ChildUnit::Instance)
        .or(blade.map(ChildUnit::Blade))
}

pub(super) async fn child_action(
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
pub(super) async fn start(
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

pub(super) async fn stop() -> Result<ExitCode, CliError> {
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
