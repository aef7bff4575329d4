//! fpd: one fast path blade. The manager applies FPC messages to the fast
//! path tables; later the dataplane forwards packets with them.
//!
//! Public surface: the FPC protocol ([`fpc`]), the tables ([`Tables`]), the
//! FPC server ([`serve`], [`Server`], [`ServerConfig`]) and the logging set-up
//! shared by every fpsync daemon ([`logging`]).

pub mod fpc;
pub mod logging;
mod manager;
mod tables;

pub use manager::{serve, Server, ServerConfig, ServerError};
pub use tables::Tables;
/// The token that stops [`serve`] and [`Server::run`].
pub use tokio_util::sync::CancellationToken;
