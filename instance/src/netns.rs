//! Entering a named network namespace: fpd's own code, shared.
//!
//! `setns` changes only the calling thread, so cmgrd enters its namespace
//! on the main thread before it starts any other thread or the runtime:
//! every thread it spawns afterwards is born in that namespace.

pub use fastpath::netns::enter;
