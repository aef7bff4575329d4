//! fpsyncd, the supervisor: one cache manager (`cmgrd -I <id>`) per
//! instance and one fast path (`fpd --blade <B>`) per blade, started,
//! watched and restarted with systemd's semantics, and served on D-Bus as
//! `org.fpsync.Supervisor1`; and `fpsync`, its command-line client.
//!
//! Modules: `envfile` and `config` (the seed's configuration files),
//! `policy` (restart and start limit, pure), `process` (spawning children
//! that die with fpsyncd), `probe` (asking children how they are),
//! `collect` (watchers that keep what the children said, and their
//! resources), `core` (the one task that owns the children), `report`
//! (aggregated views, from memory),
//! `bus` (D-Bus), `notify` (systemd's READY/STATUS/WATCHDOG), `daemon`
//! (fpsyncd's life), `fpsyncd_cli` (its options), `cli` and `install`
//! (fpsync).

mod bus;
pub mod cli;
mod collect;
pub mod config;
mod core;
mod daemon;
mod envfile;
pub mod fpsyncd_cli;
#[cfg(test)]
mod fuzz;
mod heard;
mod install;
mod metrics;
mod notify;
mod policy;
mod probe;
mod process;
mod report;
mod scrape;

pub use bus::BusChoice;
pub use daemon::{find_program, run, DaemonError, Options};
pub use policy::{Outcome, RestartPolicy};

/// The error and its sources on one line, for the edge of a program.
pub use common::error_chain as chain;
