//! Entering a named network namespace: fpd's own code, shared.
//!
//! `setns` changes only the calling thread, so cmgrd enters its namespace
//! on the main thread before it starts any other thread or the runtime:
//! every thread it spawns afterwards is born in that namespace.

pub use common::netns::enter;

/// Moves the calling thread into the namespace of `ns` (a namespace file
/// kept open, such as `/proc/thread-self/ns/net` taken before leaving it).
pub fn enter_fd(ns: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on a descriptor we hold; the result is checked.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
