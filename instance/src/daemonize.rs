//! Going to the background the way an init script wants it: the command
//! that started cmgrd returns only once the daemon is ready (status 0), or
//! with the daemon's own error message (status 1).
//!
//! Invariant: called before any thread exists (fork copies one thread).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The daemon's end of the readiness pipe.
pub struct Readiness {
    pipe: Option<File>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
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
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors; the result is checked.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are fresh and owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (this module's invariant).
    match check(unsafe { libc::fork() })? {
        0 => {}
        _ => {
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
    // SAFETY: setsid in the child, which is not a group leader.
    check(unsafe { libc::setsid() })?;
    // Fork again so that the daemon can never reacquire a terminal.
    // SAFETY: still one thread.
    if check(unsafe { libc::fork() })? != 0 {
        // SAFETY: leaves without running the parent's destructors.
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
    for (from, to) in [(&null, 0), (&null, 1), (&err, 2)] {
        // SAFETY: dup2 onto the standard descriptors.
        check(unsafe { libc::dup2(from.as_raw_fd(), to) })?;
    }
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
