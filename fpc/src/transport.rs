//! Carrying FPC frames over Unix stream sockets (local blade) or TCP
//! (remote blade, mutual TLS: see [`super::tls`]), with tokio for the
//! daemons and blocking I/O for tools.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::DecodeError;
use super::frame::{FrameError, FrameReader};
use super::message::{all_capabilities, Header, Hello, Message, Role, MAX_BODY, VERSION};
use super::object::Object;
use super::tls;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connection closed")]
    Closed,
    #[error("I/O error")]
    Io(#[from] io::Error),
    #[error("malformed frame")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Frame(FrameError),
    #[error("peer speaks FPC version {peer}, this side {ours}")]
    VersionMismatch { peer: u16, ours: u16 },
    #[error("peer refused: {0}")]
    Refused(String),
    #[error("unexpected message {0}")]
    Unexpected(String),
    #[error("bad endpoint {0:?}: expected unix:PATH, tcp:HOST:PORT or a path")]
    BadEndpoint(String),
}

impl From<FrameError> for TransportError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Closed => TransportError::Closed,
            FrameError::Io(e) => TransportError::Io(e),
            FrameError::Header(e) | FrameError::Body { error: e, .. } => TransportError::Decode(e),
            e @ (FrameError::Truncated { .. } | FrameError::Oversize { .. }) => {
                TransportError::Frame(e)
            }
        }
    }
}

/// Where a blade's FPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Endpoint {
    /// The default socket of a local blade.
    pub fn for_blade(blade: u32) -> Endpoint {
        Endpoint::Unix(crate::paths::fpd_socket(
            std::path::Path::new(crate::paths::DEFAULT_RUN_DIR),
            blade,
        ))
    }
}

impl FromStr for Endpoint {
    type Err = TransportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Endpoint::Tcp)
                .map_err(|_| TransportError::BadEndpoint(s.to_owned()));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Endpoint::Unix(s.into()));
        }
        Err(TransportError::BadEndpoint(s.to_owned()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Reads one frame of at most [`MAX_BODY`] bytes with `body` as the
/// buffer; `Closed` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    body: &mut Vec<u8>,
) -> Result<(Header, Message), TransportError> {
    let mut reader = FrameReader::with_buffer(r, std::mem::take(body), MAX_BODY);
    let result = reader.read().await;
    *body = reader.into_buffer();
    Ok(result?)
}

/// An async stream of either transport.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub async fn connect(ep: &Endpoint) -> io::Result<Box<dyn Stream>> {
    Ok(match ep {
        Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        Endpoint::Tcp(a) => {
            tls::check_dial(a)?;
            let s = tokio::net::TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            over_tcp(s, a).await?
        }
    })
}

/// A connected TCP stream to `addr` as this process's TCP policy says:
/// the TLS handshake done (the blade's certificate checked), or plain to
/// a loopback address; refused otherwise.
pub async fn over_tcp(s: tokio::net::TcpStream, addr: &SocketAddr) -> io::Result<Box<dyn Stream>> {
    Ok(match tls::dial(addr)? {
        tls::Dial::Plain => Box::new(s),
        tls::Dial::Tls(config, name) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            Box::new(connector.connect(name, s).await.map_err(tls_failed)?)
        }
    })
}

/// A failed handshake, said as such.
fn tls_failed(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
}

/// A blocking FPC client for tools: the equivalence check, benchmarks, the
/// supervisor's queries.
pub struct QueryClient {
    stream: Box<dyn BlockingStream>,
    seq: u64,
    buf: Vec<u8>,
    /// The peer's hello.
    pub peer: Hello,
}

trait BlockingStream: Read + Write + Send {}
impl<T: Read + Write + Send> BlockingStream for T {}

impl QueryClient {
    pub fn connect(ep: &Endpoint, name: &str, timeout: Duration) -> Result<Self, TransportError> {
        let stream: Box<dyn BlockingStream> = match ep {
            Endpoint::Unix(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)?;
                s.set_read_timeout(Some(timeout))?;
                Box::new(s)
            }
            Endpoint::Tcp(a) => {
                let dial = tls::dial(a)?;
                let mut s = std::net::TcpStream::connect_timeout(a, timeout)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                match dial {
                    tls::Dial::Plain => Box::new(s),
                    tls::Dial::Tls(config, name) => {
                        let mut tls = rustls::ClientConnection::new(config, name)
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        // Handshake now, so that a refused certificate
                        // is said as such rather than as a bad frame.
                        while tls.is_handshaking() {
                            tls.complete_io(&mut s).map_err(tls_failed)?;
                        }
                        Box::new(rustls::StreamOwned::new(tls, s))
                    }
                }
            }
        };
        let mut client = QueryClient {
            stream,
            seq: 0,
            buf: Vec::new(),
            peer: Hello {
                version: 0,
                role: Role::Sync,
                instance: 0,
                blade: 0,
                capabilities: 0,
                election_id: 0,
                name: String::new(),
            },
        };
        client.send(&Message::Hello(Hello {
            version: VERSION,
            role: Role::Query,
            instance: 0,
            blade: 0,
            capabilities: all_capabilities(),
            election_id: 0,
            name: name.to_owned(),
        }))?;
        match client.recv()? {
            Message::Hello(h) if h.version == VERSION => client.peer = h,
            Message::Hello(h) => {
                return Err(TransportError::VersionMismatch {
                    peer: h.version,
                    ours: VERSION,
                })
            }
            Message::Error { message, .. } => return Err(TransportError::Refused(message)),
            other => return Err(TransportError::Unexpected(format!("{other:?}"))),
        }
        Ok(client)
    }

    pub fn send(&mut self, msg: &Message) -> Result<(), TransportError> {
        self.seq += 1;
        let mut frame = Vec::new();
        msg.emit(self.seq, &mut frame);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    pub fn recv(&mut self) -> Result<Message, TransportError> {
        let mut reader =
            FrameReader::with_buffer(&mut self.stream, std::mem::take(&mut self.buf), MAX_BODY);
        let result = reader.read_blocking();
        self.buf = reader.into_buffer();
        Ok(result?.1)
    }

    /// Every object the fast path holds.
    pub fn dump(&mut self) -> Result<Vec<Object>, TransportError> {
        self.send(&Message::DumpRequest)?;
        let mut out = Vec::new();
        loop {
            match self.recv()? {
                Message::Batch(ops) => out.extend(ops.into_iter().map(|(_, o)| o)),
                Message::DumpEnd { .. } => return Ok(out),
                other => return Err(TransportError::Unexpected(format!("{other:?}"))),
            }
        }
    }

    /// The fast path's counters (table sizes, sync state).
    pub fn counters(&mut self) -> Result<Vec<(String, u64)>, TransportError> {
        self.send(&Message::CountersRequest)?;
        match self.recv()? {
            Message::Counters(c) => Ok(c),
            other => Err(TransportError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The dataplane's per-interface statistics (empty without ports).
    pub fn stats(&mut self) -> Result<Vec<super::message::InterfaceStats>, TransportError> {
        self.send(&Message::StatsRequest)?;
        match self.recv()? {
            Message::Stats(s) => Ok(s),
            other => Err(TransportError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The route the fast path would use for `addr` in `table`.
    pub fn route_get(
        &mut self,
        table: u32,
        addr: std::net::IpAddr,
    ) -> Result<Option<Object>, TransportError> {
        self.send(&Message::RouteGet { table, addr })?;
        match self.recv()? {
            Message::RouteReply(r) => Ok(r),
            other => Err(TransportError::Unexpected(format!("{other:?}"))),
        }
    }
}
