//! Asking children how they are: a cache manager through its console
//! (`/tmp/.cmgrd<id>`, one command a line, each answer ending with an empty
//! line), a fast path through an FPC query session. The one-shot calls
//! have a deadline; the sessions ([`ConsoleSession`], [`FpcSession`]) are
//! kept open by the collector, which bounds each exchange itself. None
//! blocks a thread.
//!
//! A remote blade (TCP) is dialled from the network namespace of the
//! instance that feeds it, as its cmgrd dials it: the socket is made on a
//! short-lived thread that enters that namespace (`setns` moves only the
//! calling thread; a socket stays in the namespace it was made in), then
//! connected on the runtime, with TLS as fpsyncd's `FPC_TLS_*` identity.

use std::time::Duration;

use fpc::{self, Endpoint, Hello, Message, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach {what}: {message}")]
    Unreachable { what: String, message: String },
    #[error("{0}")]
    Protocol(String),
}

/// The console of cache manager instance `id` (the seed's path).
pub fn console_path(id: u32) -> std::path::PathBuf {
    fpc::paths::console_path(Some(id))
}

/// One open connection to an instance's console, kept between questions
/// (the collector asks every report interval; the console closes a
/// connection idle for 5 s, and [`ConsoleSession::ask`]'s caller reconnects).
pub struct ConsoleSession {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl ConsoleSession {
    /// Connects to instance `id`'s console. Not bounded here: callers
    /// bound the whole exchange.
    pub async fn connect(id: u32) -> Result<ConsoleSession, ProbeError> {
        let path = console_path(id);
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|e| ProbeError::Unreachable {
                what: format!("the console {}", path.display()),
                message: e.to_string(),
            })?;
        let (read, writer) = stream.into_split();
        Ok(ConsoleSession {
            reader: BufReader::new(read),
            writer,
        })
    }

    /// Sends each command; the answers, in order. Not bounded here.
    pub async fn ask(&mut self, commands: &[&str]) -> Result<Vec<String>, ProbeError> {
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            self.writer
                .write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(|e| ProbeError::Protocol(format!("console write: {e}")))?;
            let mut answer = String::new();
            loop {
                let mut line = String::new();
                let n = self
                    .reader
                    .read_line(&mut line)
                    .await
                    .map_err(|e| ProbeError::Protocol(format!("console read: {e}")))?;
                if n == 0 {
                    if answer.is_empty() {
                        return Err(ProbeError::Protocol("the console closed".into()));
                    }
                    break;
                }
                if line == "\n" {
                    break;
                }
                answer += &line;
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn quit(mut self) {
        let _ = self.writer.write_all(b"quit\n").await;
    }
}

/// Sends each command to instance `id`'s console on a connection of its
/// own; the answers, in order.
pub async fn console(
    id: u32,
    commands: &[&str],
    timeout: Duration,
) -> Result<Vec<String>, ProbeError> {
    let work = async {
        let mut session = ConsoleSession::connect(id).await?;
        let answers = session.ask(commands).await?;
        session.quit().await;
        Ok(answers)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

/// One console command whose answer is JSON.
pub async fn console_json(
    id: u32,
    command: &str,
    timeout: Duration,
) -> Result<serde_json::Value, ProbeError> {
    let answer = console(id, &[command], timeout).await?.remove(0);
    parse_json(command, &answer)
}

/// One FPC query session with a fast path, kept between questions.
pub struct FpcSession {
    stream: Box<dyn fpc::Stream>,
    endpoint: Endpoint,
    body: Vec<u8>,
    seq: u64,
    /// The blade number the fast path says it serves.
    pub blade: u32,
}

impl FpcSession {
    /// Connects and exchanges Hello. Not bounded here: callers bound it.
    pub async fn connect(endpoint: &Endpoint) -> Result<FpcSession, ProbeError> {
        FpcSession::connect_from(endpoint, None).await
    }

    /// As [`FpcSession::connect`], a TCP endpoint dialled from the
    /// namespace `netns` (`ip netns` name; None: fpsyncd's own).
    pub async fn connect_from(
        endpoint: &Endpoint,
        netns: Option<&str>,
    ) -> Result<FpcSession, ProbeError> {
        let unreachable = |e: std::io::Error| ProbeError::Unreachable {
            what: match netns {
                Some(ns) => format!("{endpoint} from netns {ns}"),
                None => endpoint.to_string(),
            },
            message: e.to_string(),
        };
        let stream = match (endpoint, netns) {
            (Endpoint::Tcp(addr), Some(ns)) => {
                let socket = socket_in(ns, addr).await.map_err(unreachable)?;
                let tcp = socket.connect(*addr).await.map_err(unreachable)?;
                tcp.set_nodelay(true).map_err(unreachable)?;
                fpc::over_tcp(tcp, addr).await.map_err(unreachable)?
            }
            _ => fpc::connect(endpoint).await.map_err(unreachable)?,
        };
        let mut s = FpcSession {
            stream,
            endpoint: endpoint.clone(),
            body: Vec::new(),
            seq: 1,
            blade: 0,
        };
        let mut frame = Vec::new();
        Message::Hello(Hello {
            version: fpc::VERSION,
            role: Role::Query,
            instance: 0,
            blade: 0,
            capabilities: fpc::all_capabilities(),
            election_id: 0,
            name: "fpsyncd".into(),
        })
        .emit(s.seq, &mut frame);
        s.send(&frame).await?;
        s.blade = match s.read().await? {
            Message::Hello(h) if h.version == fpc::VERSION => h.blade,
            Message::Hello(h) => {
                return Err(ProbeError::Protocol(format!(
                    "{endpoint} speaks FPC version {}, fpsyncd {}",
                    h.version,
                    fpc::VERSION
                )))
            }
            other => {
                return Err(ProbeError::Protocol(format!(
                    "{endpoint}: unexpected {other:?}"
                )))
            }
        };
        Ok(s)
    }

    fn protocol(&self, e: fpc::TransportError) -> ProbeError {
        ProbeError::Protocol(format!("{}: {e}", self.endpoint))
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), ProbeError> {
        match self.stream.write_all(frame).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.protocol(e.into())),
        }
    }

    async fn read(&mut self) -> Result<Message, ProbeError> {
        match fpc::read_frame(&mut self.stream, &mut self.body).await {
            Ok((_, m)) => Ok(m),
            Err(e) => Err(self.protocol(e)),
        }
    }

    /// The fast path's counters. Not bounded here.
    pub async fn counters(&mut self) -> Result<Vec<(String, u64)>, ProbeError> {
        self.seq += 1;
        let mut frame = Vec::new();
        Message::CountersRequest.emit(self.seq, &mut frame);
        self.send(&frame).await?;
        match self.read().await? {
            Message::Counters(c) => Ok(c),
            other => Err(ProbeError::Protocol(format!(
                "{}: unexpected {other:?}",
                self.endpoint
            ))),
        }
    }
}

/// A TCP socket for `addr` made in the namespace `ns`, on a thread of its
/// own (the runtime's threads never change namespace).
async fn socket_in(
    ns: &str,
    addr: &std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpSocket> {
    fpc::check_dial(addr)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (ns, v4) = (ns.to_owned(), addr.is_ipv4());
    std::thread::Builder::new()
        .name("fpsyncd-dial".into())
        .spawn(move || {
            let made = common::netns::enter(&ns).and_then(|()| {
                if v4 {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
            });
            let _ = tx.send(made);
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("the dialling thread ended without a socket"))?
}

/// A fast path's counters, and the blade number it says it serves, on a
/// connection of their own.
pub async fn fpd_counters(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(u32, Vec<(String, u64)>), ProbeError> {
    let work = async {
        let mut session = FpcSession::connect(endpoint).await?;
        let counters = session.counters().await?;
        Ok((session.blade, counters))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

/// What an instance's console says of its sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncInfo {
    /// cmgrd's own state: initial-dump | synced | resyncing.
    pub state: String,
    /// Whether every blade's queue is connected and in sync (or waits as
    /// a backup).
    pub blades_in_sync: bool,
    pub sync: serde_json::Value,
    pub queue: serde_json::Value,
}

impl SyncInfo {
    /// The instance's SyncState: cmgrd's state, except that a cache in sync
    /// with Linux but not yet replayed to every blade is still resyncing.
    pub fn sync_state(&self) -> &str {
        if self.state == "synced" && !self.blades_in_sync {
            "resyncing"
        } else {
            &self.state
        }
    }
}

/// The console commands whose answers make a [`SyncInfo`].
pub const SYNC_COMMANDS: [&str; 2] = ["show sync --json", "show queue --json"];

/// A [`SyncInfo`] from the answers to [`SYNC_COMMANDS`].
pub fn parse_sync_info(sync: &str, queue: &str) -> Result<SyncInfo, ProbeError> {
    let sync = parse_json("show sync --json", sync)?;
    let queue = parse_json("show queue --json", queue)?;
    let state = sync
        .get("state")
        .and_then(|s| s.as_str())
        .ok_or_else(|| ProbeError::Protocol("show sync --json has no state".into()))?
        .to_owned();
    // A backup of a blade (another control plane's cache manager is its
    // primary) has nothing to replay until it is promoted: in sync.
    let blades_in_sync = queue.as_array().is_some_and(|blades| {
        blades.iter().all(|b| {
            let q = &b["queue"];
            q["connected"].as_bool() == Some(true) && q["in_sync"].as_bool() == Some(true)
                || q["backup"].as_bool() == Some(true)
        })
    });
    Ok(SyncInfo {
        state,
        blades_in_sync,
        sync,
        queue,
    })
}

/// A console answer that should be JSON.
pub fn parse_json(command: &str, answer: &str) -> Result<serde_json::Value, ProbeError> {
    serde_json::from_str(answer.trim()).map_err(|_| {
        ProbeError::Protocol(format!(
            "{command:?} answered {:?}",
            answer.lines().next().unwrap_or("")
        ))
    })
}
