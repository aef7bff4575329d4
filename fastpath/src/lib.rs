//! fpd: one fast path blade. The FPC server applies FPC messages to the fast
//! path tables; the dataplane forwards packets between fpd's ports with
//! them, and reports statistics and hit flags back.
//!
//! Public surface: the tables ([`Tables`]), the FPC server ([`serve`],
//! [`Server`], [`ServerConfig`]), the dataplane ([`Dataplane`]), packet
//! formats ([`wire`]) and fpd's command line ([`cli`]). The FPC protocol
//! itself is the `fpsync-fpc` crate (`fpc`), shared with the cache manager;
//! logging and namespaces are `fpsync-common`'s.

pub mod bus;
pub mod cli;
mod dataplane;
mod limits;
mod server;
mod tables;
pub mod wire;

pub use dataplane::{
    Dataplane, DataplaneConfig, DataplaneError, DataplaneHandle, PortBackend, RxRingVersion,
};
pub use limits::Limits;
pub use server::{serve, Server, ServerConfig, ServerError};
pub use tables::Tables;
/// The token that stops [`serve`] and [`Server::run`].
pub use tokio_util::sync::CancellationToken;
