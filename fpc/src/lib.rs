//! The FPC API between a cache manager and a fast path: framing, messages,
//! objects and transports. `codec`, `object` and `message` do no I/O.

mod codec;
mod frame;
#[cfg(test)]
mod fuzz;
mod message;
mod object;
mod options;
pub mod paths;
mod tls;
mod transport;

pub use codec::DecodeError;
pub use frame::{FrameError, FrameReader, KEEP_BUFFER};
pub use message::{
    all_capabilities, hello_version, kind_capability, parse_frame, parse_header, BatchWriter,
    Counter, ErrorCode, Header, Hello, Hit, InterfaceStats, Message, ObjectError, Op, Role,
    SplitBatch, HEADER_LEN, MAGIC, MAX_BODY, VERSION,
};
pub use object::*;
pub use options::TlsOptions;
pub use tls::{
    check_dial, client_from_options, install_client, server_config, ClientTcp, TlsError, TlsFiles,
};
pub use transport::{connect, over_tcp, read_frame, Endpoint, QueryClient, Stream, TransportError};
