//! Entering a named network namespace.
//!
//! `setns` changes only the calling thread, so cmgrd enters its namespace
//! on the main thread before it starts any other thread or the runtime:
//! every thread it spawns afterwards is born in that namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where `ip netns add` puts its namespaces.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// Moves the calling thread into the namespace `ip netns` knows as `name`.
pub fn enter(name: &str) -> io::Result<()> {
    let file = File::open(netns_path(name))
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name:?}: {e}")))?;
    // SAFETY: setns(2) on a descriptor we own; the result is checked.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if ret != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {name:?}: {e}")));
    }
    Ok(())
}
