//! fpd: one fast path blade. The manager applies FPC messages to the fast
//! path tables; the dataplane forwards packets between fpd's ports with
//! them, and reports statistics and hit flags back.
//!
//! Public surface: the FPC protocol ([`fpc`]), the tables ([`Tables`]), the
//! FPC server ([`serve`], [`Server`], [`ServerConfig`]), the dataplane
//! ([`Dataplane`]), packet formats ([`wire`]) and the logging set-up shared
//! by every fpsync daemon ([`logging`]).

pub mod bus;
pub mod cli;
mod dataplane;
pub mod fpc;
mod limits;
pub mod logging;
mod manager;
pub mod netns;
mod tables;
pub mod units;
pub mod wire;

pub use dataplane::{
    Dataplane, DataplaneConfig, DataplaneError, DataplaneHandle, PortBackend, RxRingVersion,
};
pub use limits::Limits;
pub use manager::{serve, Server, ServerConfig, ServerError};
pub use tables::{FoldHasher, PrefixHash, Tables};
/// The token that stops [`serve`] and [`Server::run`].
pub use tokio_util::sync::CancellationToken;

/// An error and its sources on one line, for the edge of a program (each
/// message says what failed, its source why).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
