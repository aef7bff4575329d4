//! Going to the background the way an init script wants it: the command
//! that started cmgrd returns only once the daemon is ready (status 0), or
//! with the daemon's own error message (status 1).
//!
//! Invariant: called before any thread exists (fork copies one thread).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::ForkResult;

/// The daemon's end of the readiness pipe.
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// For a process that stays in the foreground: nothing to tell.
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the waiting parent that the daemon is ready.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"ready\n");
        }
    }

    /// Tells the waiting parent why the daemon could not start.
    pub fn fail(&mut self, message: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(message.as_bytes());
        }
    }
}

/// Forks into the background. In the original process this never returns:
/// it exits 0 when the daemon reports ready, 1 with its message otherwise.
/// `log` receives the daemon's stderr (None: /dev/null).
pub fn daemonize(log: Option<&Path>) -> io::Result<Readiness> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the process has one thread (this module's invariant), so the
    // child inherits no lock held by another thread.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {}
        ForkResult::Parent { .. } => {
            drop(write);
            let mut answer = String::new();
            let _ = File::from(read).read_to_string(&mut answer);
            if answer.starts_with("ready") {
                std::process::exit(0);
            }
            let answer = answer.trim();
            if answer.is_empty() {
                eprintln!("cmgrd: the daemon exited before it was ready");
            } else {
                eprintln!("{answer}");
            }
            std::process::exit(1);
        }
    }
    drop(read);
    // The child is not a group leader: setsid cannot fail with EPERM.
    nix::unistd::setsid()?;
    // Fork again so that the daemon can never reacquire a terminal.
    // SAFETY: still one thread.
    if let ForkResult::Parent { .. } = unsafe { nix::unistd::fork() }? {
        // SAFETY: _exit ends the process at once, without the destructors
        // and atexit handlers that belong to the daemon (nix has no _exit).
        unsafe { libc::_exit(0) };
    }
    std::env::set_current_dir("/")?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let err = match log {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            File::options().create(true).append(true).open(path)?
        }
        None => null.try_clone()?,
    };
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&err)?;
    Ok(Readiness {
        pipe: Some(File::from(write)),
    })
}

/// A pid file removed on drop.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn write(path: &Path) -> io::Result<PidFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))?;
        Ok(PidFile {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
