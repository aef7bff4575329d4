//! cmgrd, the cache manager: listens to netlink in one network namespace,
//! keeps a cache of what it saw, and sends every change to its blades'
//! fast paths through the FPC API.

mod blade;
mod bus;
pub mod cache;
pub mod check;
pub mod cli;
pub mod console;
pub mod daemon;
pub mod daemonize;
mod event;
pub mod features;
pub mod hitflags;
pub mod linux;
mod migrate;
pub mod netlink;
pub mod netns;
pub mod options;
pub mod stats;

pub use daemon::{run, Config, DaemonError};
pub use options::Options;
