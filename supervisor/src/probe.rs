//! Asking children how they are: a cache manager through its console
//! (`/tmp/.cmgrd<id>`, one command a line, each answer ending with an empty
//! line), a fast path through an FPC query session. Every call has a
//! deadline; none blocks a thread.

use std::time::Duration;

use fastpath::fpc::{self, Endpoint, Hello, Message, Role};
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
    std::path::PathBuf::from(format!("/tmp/.cmgrd{id}"))
}

/// Sends each command to instance `id`'s console; the answers, in order.
pub async fn console(
    id: u32,
    commands: &[&str],
    timeout: Duration,
) -> Result<Vec<String>, ProbeError> {
    let path = console_path(id);
    let work = async {
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|e| ProbeError::Unreachable {
                what: format!("the console {}", path.display()),
                message: e.to_string(),
            })?;
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            write
                .write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(|e| ProbeError::Protocol(format!("console write: {e}")))?;
            let mut answer = String::new();
            loop {
                let mut line = String::new();
                let n = reader
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
        let _ = write.write_all(b"quit\n").await;
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
    serde_json::from_str(answer.trim()).map_err(|_| {
        ProbeError::Protocol(format!(
            "{command:?} answered {:?}",
            answer.lines().next().unwrap_or("")
        ))
    })
}

/// A fast path's counters, and the blade number it says it serves.
pub async fn fpd_counters(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(u32, Vec<(String, u64)>), ProbeError> {
    let work = async {
        let mut stream = fpc::connect(endpoint)
            .await
            .map_err(|e| ProbeError::Unreachable {
                what: endpoint.to_string(),
                message: e.to_string(),
            })?;
        let proto = |e: fpc::TransportError| ProbeError::Protocol(format!("{endpoint}: {e}"));
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
        .emit(1, &mut frame);
        Message::CountersRequest.emit(2, &mut frame);
        stream
            .write_all(&frame)
            .await
            .map_err(|e| proto(e.into()))?;
        let mut body = Vec::new();
        let blade = match fpc::read_frame(&mut stream, &mut body)
            .await
            .map_err(proto)?
            .1
        {
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
        match fpc::read_frame(&mut stream, &mut body)
            .await
            .map_err(proto)?
            .1
        {
            Message::Counters(c) => Ok((blade, c)),
            other => Err(ProbeError::Protocol(format!(
                "{endpoint}: unexpected {other:?}"
            ))),
        }
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
    /// Whether every blade's queue is connected and in sync.
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

/// `show sync --json` and `show queue --json` on one connection.
pub async fn sync_info(id: u32, timeout: Duration) -> Result<SyncInfo, ProbeError> {
    let answers = console(id, &["show sync --json", "show queue --json"], timeout).await?;
    let parse = |i: usize, what: &str| -> Result<serde_json::Value, ProbeError> {
        serde_json::from_str(answers[i].trim()).map_err(|_| {
            ProbeError::Protocol(format!(
                "{what} answered {:?}",
                answers[i].lines().next().unwrap_or("")
            ))
        })
    };
    let sync = parse(0, "show sync --json")?;
    let queue = parse(1, "show queue --json")?;
    let state = sync
        .get("state")
        .and_then(|s| s.as_str())
        .ok_or_else(|| ProbeError::Protocol("show sync --json has no state".into()))?
        .to_owned();
    let blades_in_sync = queue.as_array().is_some_and(|blades| {
        blades.iter().all(|b| {
            let q = &b["queue"];
            q["connected"].as_bool() == Some(true) && q["in_sync"].as_bool() == Some(true)
        })
    });
    Ok(SyncInfo {
        state,
        blades_in_sync,
        sync,
        queue,
    })
}
