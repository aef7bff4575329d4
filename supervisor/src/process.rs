//! Starting children so that none outlives fpsyncd, and signalling them
//! without races.
//!
//! Invariants:
//! * Every child gets `PR_SET_PDEATHSIG(SIGKILL)` before it execs, and
//!   checks that its parent did not die before that (else it would miss the
//!   signal). Kernel quirk: the signal fires when the *thread* that forked
//!   dies, not the process; fpsyncd therefore spawns children only from its
//!   main thread, which lives as long as the process.
//! * Each child runs in its own process group, so a terminal's Ctrl-C
//!   reaches fpsyncd alone, which then stops children in order.
//! * Signals go through a pidfd opened before anyone can reap the child, so
//!   a recycled pid is never signalled.
//! * `children` in the run directory lists live children (pid and start
//!   time); a new fpsyncd kills what a killed one left behind, if anything.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::warn;

/// A started child: its pid and a pidfd for signals.
#[derive(Debug)]
pub struct Handle {
    pub pid: u32,
    pidfd: Option<OwnedFd>,
}

impl Handle {
    /// Sends `sig`; false when the process is gone.
    pub fn signal(&self, sig: i32) -> bool {
        match &self.pidfd {
            // SAFETY: pidfd_send_signal(2) with a pidfd we own, no siginfo.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                ) == 0
            },
            // kill(2) on our own child's pid (pidfds unsupported).
            None => Signal::try_from(sig)
                .and_then(|sig| kill(Pid::from_raw(self.pid as i32), sig))
                .is_ok(),
        }
    }
}

/// Prepares a child command: own process group, parent-death signal.
pub fn command(program: &Path, args: &[String]) -> tokio::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).process_group(0);
    // systemd's notification socket is fpsyncd's alone (NotifyAccess=main).
    for var in [
        crate::notify::NOTIFY_SOCKET,
        crate::notify::WATCHDOG_USEC,
        crate::notify::WATCHDOG_PID,
    ] {
        cmd.env_remove(var);
    }
    let parent = Pid::from_raw(std::process::id() as i32);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit: nix's
    // wrappers allocate nothing) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent died before prctl: nobody will signal us.
            if nix::unistd::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    cmd
}

/// Opens a pidfd for `pid` (a child not yet reaped).
pub fn handle(pid: u32) -> Handle {
    // SAFETY: pidfd_open(2); the result is checked before use.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let pidfd = if fd >= 0 {
        // SAFETY: a new descriptor that nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    } else {
        None
    };
    Handle { pid, pidfd }
}

/// The start time of `pid` (field 22 of /proc/pid/stat), to tell it from a
/// later process with the same pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The list of live children kept in the run directory.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
}

impl Registry {
    pub fn new(run_dir: &Path) -> Registry {
        Registry {
            path: run_dir.join("children"),
        }
    }

    /// Kills children a previous fpsyncd left (it was killed before it
    /// could stop them and they outlived it); their names.
    pub fn clean_leftovers(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let mut killed = Vec::new();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some(pid), Some(start), Some(name)) = (w.next(), w.next(), w.next()) else {
                continue;
            };
            let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
                continue;
            };
            if pid != 0 && start_time(pid) == Some(start) {
                // A pid whose start time proves it is the process we
                // recorded.
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                killed.push(format!("{name} (pid {pid})"));
            }
        }
        killed
    }

    /// Records the live children: (pid, name).
    pub fn write(&self, children: &[(u32, String)]) {
        let mut text = String::new();
        for (pid, name) in children {
            if let Some(start) = start_time(*pid) {
                text += &format!("{pid} {start} {name}\n");
            }
        }
        let tmp = self.path.with_extension("tmp");
        let res = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            warn!("cannot record children in {}: {e}", self.path.display());
        }
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid file, locked for fpsyncd's life: one supervisor per run
/// directory.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    _file: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another fpsyncd runs (pid {0})")]
    Running(String),
    #[error("cannot lock {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PidLock {
    pub fn acquire(run_dir: &Path) -> Result<PidLock, LockError> {
        let path = run_dir.join("fpsyncd.pid");
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(run_dir).map_err(io_err)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err(_) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LockError::Running(pid.trim().to_owned()));
            }
        };
        file.set_len(0).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(PidLock { path, _file: file })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid of the fpsyncd that holds `run_dir`'s lock, if one runs.
pub fn running_supervisor(run_dir: &Path) -> Option<u32> {
    let path = run_dir.join("fpsyncd.pid");
    let file = File::open(&path).ok()?;
    // Released when the lock is dropped.
    if Flock::lock(file, FlockArg::LockSharedNonblock).is_ok() {
        return None;
    }
    std::fs::read_to_string(&path).ok()?.trim().parse().ok()
}
