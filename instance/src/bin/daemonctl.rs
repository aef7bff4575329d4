//! `daemonctl cmgrd[<id>] [command...]`: the cache manager's console
//! client. With a command, prints its answer; without, reads commands from
//! standard input, one a line, until `quit` or end of input.
//!
//! An answer is trusted only from a server run by root or by the caller's
//! own uid (SO_PEERCRED), and, when the instance's pid file
//! (`/run/fpsync/cmgrd<id>.pid`) names a live process, from that process:
//! `/tmp` is world-writable, so anyone could have bound the path first.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use instance::console::{console_path, peer_cred, user_name};

fn usage() -> ExitCode {
    eprintln!("usage: daemonctl cmgrd[<id>] [command...]   (try: daemonctl cmgrd help)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(daemon) = args.first() else {
        return usage();
    };
    let Some(id) = daemon.strip_prefix("cmgrd") else {
        eprintln!("daemonctl: unknown daemon {daemon:?}: only cmgrd[<id>] has a console");
        return ExitCode::from(2);
    };
    let instance = match id {
        "" => None,
        n => match n.parse::<u32>() {
            Ok(i) => Some(i),
            Err(_) => {
                eprintln!("daemonctl: bad instance id {n:?} in {daemon:?}");
                return ExitCode::from(2);
            }
        },
    };
    let path = console_path(instance);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "daemonctl: cannot reach {daemon} at {}: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    if let Err(why) = trusted(&stream, instance) {
        eprintln!(
            "daemonctl: not trusting {}: {why}; is someone squatting the console path?",
            path.display()
        );
        return ExitCode::from(1);
    }
    let commands: Vec<String> = if args.len() > 1 {
        vec![args[1..].join(" ")]
    } else {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect()
    };
    match converse(stream, &commands) {
        Ok(failed) if failed => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daemonctl: {daemon}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether the console's server may be believed: root or our own uid, and
/// the pid of the instance's pid file when that names a live process.
fn trusted(stream: &UnixStream, instance: Option<u32>) -> Result<(), String> {
    let cred = peer_cred(stream).map_err(|e| format!("cannot read its credentials: {e}"))?;
    let ours = nix::unistd::getuid().as_raw();
    if cred.uid != 0 && cred.uid != ours {
        return Err(format!(
            "its server runs as uid {} ({}, pid {}), neither root nor uid {ours}",
            cred.uid,
            user_name(cred.uid),
            cred.pid
        ));
    }
    let pid_file = match instance {
        Some(i) => format!("/run/fpsync/cmgrd{i}.pid"),
        None => "/run/fpsync/cmgrd.pid".to_owned(),
    };
    let recorded = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0 && alive(*pid));
    match recorded {
        Some(pid) if pid != cred.pid => Err(format!(
            "its server is pid {}, but {pid_file} names pid {pid}",
            cred.pid
        )),
        _ => Ok(()),
    }
}

/// Whether a process with this pid exists (kill with signal 0).
fn alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// Sends each command and prints each answer (answers end with an empty
/// line). True when an answer was an error.
fn converse(stream: UnixStream, commands: &[String]) -> std::io::Result<bool> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for command in commands {
        writer.write_all(format!("{command}\n").as_bytes())?;
        if command.trim() == "quit" {
            break;
        }
        let mut first = true;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\n" {
                break;
            }
            if first && line.starts_with("error:") {
                failed = true;
            }
            first = false;
            out.write_all(line.as_bytes())?;
        }
    }
    Ok(failed)
}
