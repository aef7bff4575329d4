//! fpd's listeners: Unix sockets bound with a mode that does not depend on
//! the umask (0600, or 0660 with --socket-group) and refused when another
//! process owns the path; TCP with mutual TLS. The accept loop admits
//! connections within the limits and refuses the rest with an Error frame.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fpc::{Endpoint, ErrorCode, Message, Stream};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, Instrument};

use super::connection::connection;
use super::{Accepted, Listener, ServerError, Shared, SocketFile, DRAIN_TIMEOUT};
use crate::limits::Refusal;

impl Listener {
    pub(super) async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept().await?;
                let peer = match s.peer_cred().ok().and_then(|c| c.pid()) {
                    Some(pid) => format!("unix pid {pid}"),
                    None => "unix".to_owned(),
                };
                Ok(Accepted {
                    stream: Box::new(s),
                    peer,
                    tls: None,
                })
            }
            Listener::Tcp { listener, tls } => {
                let (s, addr) = listener.accept().await?;
                s.set_nodelay(true)?;
                Ok(Accepted {
                    stream: Box::new(s),
                    peer: format!("tcp {addr}"),
                    tls: tls.clone(),
                })
            }
        }
    }
}

pub(super) fn bind_unix(
    endpoint: &Endpoint,
    path: &Path,
    group: Option<u32>,
) -> Result<Listener, ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let listen_error = |source| ServerError::Listen {
        endpoint: endpoint.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Not world-writable whatever the umask: nobody else may replace
        // the socket file.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(listen_error)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Left by a process that died, unless someone still answers.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(endpoint.clone()));
            }
            std::fs::remove_file(path).map_err(listen_error)?;
        }
        Ok(_) => return Err(ServerError::NotASocket(endpoint.clone())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_error(e)),
    }
    // The socket file takes its mode from the umask at bind: bind under
    // 0177 (mode 0600), so that it is never open to others, then give it
    // its group and 0660 if asked.
    // umask(2) swaps the process's file mode mask: fpd creates no other
    // file while its listeners are being bound.
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(umask);
    let listener = bound.map_err(listen_error)?;
    let meta = std::fs::symlink_metadata(path).map_err(listen_error)?;
    // Made first, so that the file goes if what follows fails.
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(listen_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(listen_error)?;
    }
    Ok(Listener::Unix {
        listener,
        _file: file,
    })
}

pub(super) async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(Accepted { stream, peer, tls }) => {
                    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
                    let span = tracing::info_span!(
                        "connection",
                        peer = %peer,
                        conn,
                        role = tracing::field::Empty,
                        peer_name = tracing::field::Empty,
                    );
                    let evict = shutdown.child_token();
                    match shared.register.admit(conn, evict.clone()) {
                        Ok(evicted) => {
                            if let Some(old) = evicted {
                                note_eviction(&shared, old, "a new connection");
                            }
                            conns.spawn(
                                connection(
                                    (stream, tls),
                                    conn,
                                    shared.clone(),
                                    shutdown.clone(),
                                    evict,
                                )
                                .instrument(span),
                            );
                        }
                        Err(_full) => {
                            let reason = format!(
                                "fpd{} is at its limit of {} connections, none of them idle",
                                shared.blade,
                                shared.register.max()
                            );
                            shared.refusals.note(Refusal::ConnectionLimit, || {
                                format!("refusing a connection from {peer}: {reason}")
                            });
                            // Over TLS, a frame in clear would not be
                            // read: the connection just closes.
                            if tls.is_none() {
                                conns.spawn(refuse(stream, ErrorCode::Limit, reason).instrument(span));
                            }
                        }
                    }
                }
                Err(e) => {
                    shared
                        .refusals
                        .note(Refusal::AcceptError, || format!("accept failed: {e}"));
                    // Out of descriptors: free one if a connection may go
                    // (the peer waiting may be the cache manager), else
                    // wait rather than spin.
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    let freed = out_of_fds && shared.register.evict_one().inspect(|old| {
                        note_eviction(&shared, *old, "a descriptor");
                    }).is_some();
                    let pause = if freed { 10 } else { 100 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    error!("connection task failed: {e}");
                }
            }
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        conns.abort_all();
    }
}

pub(super) fn note_eviction(shared: &Shared, old: u64, wanted: &str) {
    shared.refusals.note(Refusal::Evicted, || {
        format!(
            "at the limit of {} connections: closing connection {old} (no Hello yet, or the query idle longest) for {wanted}",
            shared.register.max()
        )
    });
}

/// Answers a connection that is not admitted with an Error frame.
pub(super) async fn refuse(stream: Box<dyn Stream>, code: ErrorCode, message: String) {
    let mut stream = stream;
    let mut frame = Vec::new();
    Message::Error {
        code: code as u16,
        message,
    }
    .emit(0, &mut frame);
    let send = async {
        stream.write_all(&frame).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}
