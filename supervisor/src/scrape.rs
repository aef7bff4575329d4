//! The metrics endpoint: `GET /metrics` over HTTP/1.1 on a loopback
//! address (`METRICS_LISTEN` or `--metrics-listen`, off by default),
//! answering the same OpenMetrics text as `Metrics()` on D-Bus.
//!
//! Hand-written rather than with an HTTP crate: none is on the project's
//! list, and a scrape is one GET with no body; what it needs is bounds,
//! which are easier to see here than to configure in a server:
//! * only loopback addresses are accepted (checked in `config`), so the
//!   endpoint is no way in from the network;
//! * at most [`MAX_CONNECTIONS`] at once; more are closed unanswered;
//! * a request's head must arrive whole within [`DEADLINE`] and in at most
//!   [`MAX_REQUEST`] bytes, and the answer must be taken within the same
//!   deadline, else the connection is closed;
//! * one request per connection (`Connection: close`); no body is read.
//!
//! The answer comes from the core over its request channel, like a D-Bus
//! call's: this module holds no lock and reads no child.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fpsync_dbus::{Answer, Command, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::metrics::CONTENT_TYPE;

/// Scrapes served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// The whole exchange of one connection.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves scrapes until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    requests: mpsc::Sender<Request>,
    token: CancellationToken,
) {
    if let Ok(a) = listener.local_addr() {
        info!("metrics at http://{a}/metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = token.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("metrics: {peer} refused: {MAX_CONNECTIONS} scrapes already");
            continue;
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(DEADLINE, exchange(stream, &requests))
                .await
                .is_err()
            {
                debug!("metrics: {peer} took longer than {DEADLINE:?}: closed");
            }
            drop(permit);
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

/// Reads the request line of a complete head (ending in an empty line).
fn parse_head(head: &[u8]) -> Asked {
    let Ok(text) = std::str::from_utf8(head) else {
        return Asked::Bad;
    };
    let line = text.lines().next().unwrap_or("");
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") || words.next().is_some() {
        return Asked::Bad;
    }
    if method != "GET" {
        return Asked::NotAllowed;
    }
    match target.split('?').next() {
        Some("/metrics") => Asked::Metrics,
        _ => Asked::NotFound,
    }
}

/// Reads the head, at most [`MAX_REQUEST`] bytes; None when it is longer
/// or the peer closed first.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Some(head);
        }
        if head.len() >= MAX_REQUEST {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n.min(MAX_REQUEST - head.len())]);
    }
}

async fn exchange(mut stream: TcpStream, requests: &mpsc::Sender<Request>) {
    let asked = match read_head(&mut stream).await {
        Some(head) => parse_head(&head),
        None => Asked::Bad,
    };
    let (status, content_type, body) = match asked {
        Asked::Metrics => {
            let (reply, answer) = oneshot::channel();
            let sent = requests
                .send(Request {
                    command: Command::Metrics,
                    reply,
                })
                .await;
            match (sent, answer.await) {
                (Ok(()), Ok(Ok(Answer::Text(t)))) => ("200 OK", CONTENT_TYPE, t),
                _ => (
                    "503 Service Unavailable",
                    "text/plain",
                    "the supervisor is stopping\n".into(),
                ),
            }
        }
        Asked::NotFound => ("404 Not Found", "text/plain", "only /metrics\n".into()),
        Asked::NotAllowed => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
        Asked::Bad => (
            "400 Bad Request",
            "text/plain",
            format!("a request head of at most {MAX_REQUEST} bytes\n"),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_request_line() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Asked::Metrics
        );
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Asked::Metrics
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Asked::NotFound);
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Asked::NotAllowed
        );
        assert_eq!(parse_head(b"GET /metrics\r\n\r\n"), Asked::Bad);
        assert_eq!(parse_head(b"\xff\xfe\r\n\r\n"), Asked::Bad);
    }
}
