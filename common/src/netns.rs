//! Entering a named network namespace.
//!
//! `setns` changes only the calling thread, so fpd enters its namespace on
//! the main thread before it starts any other thread or the runtime: every
//! thread it spawns afterwards (workers, runtime) is born in it, and its
//! packet sockets bind to that namespace's interfaces.

use std::fs::File;
use std::io;

/// Moves the calling thread into the namespace `ip netns` knows as `name`
/// (`/var/run/netns/NAME`), or the one at `name` if it is a path.
pub fn enter(name: &str) -> io::Result<()> {
    let path = if name.contains('/') {
        name.to_owned()
    } else {
        format!("/var/run/netns/{name}")
    };
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name:?}: {e}")))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("setns {name:?}: {e}"))
    })?;
    Ok(())
}
