//! The console that `daemonctl cmgrd[<id>] <command>` reaches: a Unix
//! stream socket at `/tmp/.cmgrd<id>`; one command line in, one answer out.
//!
//! Invariants:
//! * The console thread only carries text: the processor, which owns every
//!   counter, composes the answer, so an answer is one consistent snapshot;
//!   no lock is held while a client is read or written.
//! * Clients are served concurrently, one thread each, at most
//!   [`MAX_CLIENTS`] at a time (more are told so and closed): an idle or
//!   slow client delays nobody else. Each command line must arrive whole
//!   within [`LINE_DEADLINE`] and be at most [`LINE_LIMIT`] bytes; longer
//!   lines are refused unbuffered, and errors quote at most
//!   [`QUOTE_LIMIT`] characters of the input.
//! * Only root or cmgrd's own uid is served (SO_PEERCRED).
//! * `netlink replay` files are read here, not on the processor: regular
//!   files only (a FIFO or device is refused before it is read), at most
//!   [`REPLAY_LIMIT`] bytes; the processor gets the bytes.
//! * The socket file: a path owned by another user, or a socket another
//!   process answers on, is refused; at exit only the socket this process
//!   bound is removed (device and inode checked).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tracing::{debug, warn};

use crate::event::Event;

/// Clients served at once; more are refused with an error line.
pub const MAX_CLIENTS: usize = 16;
/// A whole command line (not each byte) must arrive within this.
pub const LINE_DEADLINE: Duration = Duration::from_secs(5);
/// The longest command line (bytes, newline excluded).
pub const LINE_LIMIT: usize = 64 * 1024;
/// How much of a client's input an error quotes (characters).
pub const QUOTE_LIMIT: usize = 64;
/// The largest file `netlink replay` reads (64 MiB).
pub const REPLAY_LIMIT: u64 = 64 << 20;
/// How long a client may take to read an answer.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// How long the processor may take to answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("it is owned by uid {uid} ({user}), not by this process's uid {ours}: refusing to use or remove it")]
    OwnedByOther { uid: u32, user: String, ours: u32 },
    #[error("another process answers there ({peer}): is another cache manager running?")]
    InUse { peer: String },
    #[error("it exists and is not a socket")]
    NotASocket,
    #[error("cannot bind it")]
    Bind(#[source] std::io::Error),
    #[error("cannot start the console thread")]
    Thread(#[source] std::io::Error),
}

/// The console path of instance `id` (the seed's `/tmp/.cmgrd<val>`).
pub use fpc::paths::console_path;

/// The console's socket file, removed when dropped if it is still the one
/// this process bound (another process may have bound the path since).
pub struct ConsoleSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                warn!(path = %self.path.display(), "cannot remove the console socket: {e}");
            }
        } else {
            debug!(path = %self.path.display(), "the console path is no longer ours: left alone");
        }
    }
}

/// A Unix socket peer's credentials (SO_PEERCRED: for a server, those of
/// the process that called listen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn peer_cred(stream: &UnixStream) -> std::io::Result<PeerCred> {
    let c = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// A user's name from the password database ("unknown" if none).
pub fn user_name(uid: u32) -> String {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return "unknown".into();
    };
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid.to_string()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Binds the console (refusing a path another user owns, or where another
/// process answers) and serves it on its own thread. The returned guard
/// removes the socket file when dropped, if it is still ours.
pub fn spawn(path: &Path, events: Sender<Event>) -> Result<ConsoleSocket, ConsoleError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            // /tmp is world-writable: anyone may have made this path.
            if meta.uid() != euid() {
                return Err(ConsoleError::OwnedByOther {
                    uid: meta.uid(),
                    user: user_name(meta.uid()),
                    ours: euid(),
                });
            }
            if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
                return Err(ConsoleError::NotASocket);
            }
            if let Ok(s) = UnixStream::connect(path) {
                let peer = match peer_cred(&s) {
                    Ok(c) => format!("pid {}, uid {}", c.pid, c.uid),
                    Err(_) => "unknown peer".into(),
                };
                return Err(ConsoleError::InUse { peer });
            }
            // Left by a cache manager that died.
            std::fs::remove_file(path).map_err(ConsoleError::Bind)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(ConsoleError::Bind(e)),
    }
    let listener = UnixListener::bind(path).map_err(ConsoleError::Bind)?;
    let meta = std::fs::symlink_metadata(path).map_err(ConsoleError::Bind)?;
    let guard = ConsoleSocket {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    // The console changes state (IPsec HA, replays): root only. Clients
    // are also checked one by one (the mode comes after the bind).
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(ConsoleError::Bind)?;
    let active = Arc::new(AtomicUsize::new(0));
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("cmgrd-console".into())
        .spawn(move || {
            let _e = span.enter();
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => accept(s, &events, &active, &span),
                    Err(e) => {
                        warn!("console accept: {e}");
                        // EMFILE and the like: do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(ConsoleError::Thread)?;
    Ok(guard)
}

/// Counts a client for as long as its thread lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept(
    mut stream: UnixStream,
    events: &Sender<Event>,
    active: &Arc<AtomicUsize>,
    span: &tracing::Span,
) {
    let _ = stream.set_write_timeout(Some(WRITE_DEADLINE));
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
        active.fetch_sub(1, Ordering::SeqCst);
        warn!("console: {MAX_CLIENTS} clients already; one refused");
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(
            format!("error: too many console clients ({MAX_CLIENTS}); try again later\n\n")
                .as_bytes(),
        );
        return;
    }
    let slot = Slot(active.clone());
    let events = events.clone();
    let span = span.clone();
    let spawned = std::thread::Builder::new()
        .name("cmgrd-console-client".into())
        .spawn(move || {
            let _e = span.enter();
            let _slot = slot;
            if let Err(e) = serve(stream, &events) {
                debug!("console client: {e}");
            }
        });
    if let Err(e) = spawned {
        warn!("console: cannot start a client thread: {e}");
    }
}

/// Why a command line could not be read.
#[derive(Debug, PartialEq, Eq)]
enum LineError {
    TooLong,
    Deadline,
}

/// Reads command lines from one client, each within a deadline and a size
/// limit, without buffering more than the limit.
struct LineReader {
    stream: UnixStream,
    /// Bytes read past the last line's newline.
    pending: Vec<u8>,
    deadline: Duration,
    limit: usize,
}

impl LineReader {
    /// The next line (without its newline), None at the end of input. A
    /// last line without a newline still counts.
    fn next_line(&mut self) -> std::io::Result<Result<Option<String>, LineError>> {
        let deadline = Instant::now() + self.deadline;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                if i > self.limit {
                    return Ok(Err(LineError::TooLong));
                }
                let line: Vec<u8> = self.pending.drain(..=i).take(i).collect();
                return Ok(Ok(Some(String::from_utf8_lossy(&line).into_owned())));
            }
            if self.pending.len() > self.limit {
                return Ok(Err(LineError::TooLong));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Err(LineError::Deadline));
            }
            self.stream.set_read_timeout(Some(left))?;
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(Err(LineError::Deadline))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if self.pending.is_empty() {
                    return Ok(Ok(None));
                }
                let line = std::mem::take(&mut self.pending);
                return Ok(Ok(Some(String::from_utf8_lossy(&line).into_owned())));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

fn serve(stream: UnixStream, events: &Sender<Event>) -> std::io::Result<()> {
    let cred = peer_cred(&stream)?;
    let mut writer = stream.try_clone()?;
    if cred.uid != 0 && cred.uid != euid() {
        warn!(uid = cred.uid, pid = cred.pid, "console client refused");
        writer.write_all(
            format!("error: permission denied (uid {}): root only\n\n", cred.uid).as_bytes(),
        )?;
        return Ok(());
    }
    let mut reader = LineReader {
        stream,
        pending: Vec::new(),
        deadline: LINE_DEADLINE,
        limit: LINE_LIMIT,
    };
    loop {
        let line = match reader.next_line()? {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(LineError::TooLong) => {
                writer.write_all(
                    format!("error: command line longer than {LINE_LIMIT} bytes: refused\n\n")
                        .as_bytes(),
                )?;
                return Ok(());
            }
            Err(LineError::Deadline) => {
                writer.write_all(
                    format!(
                        "error: no whole command line within {} s: closing\n\n",
                        LINE_DEADLINE.as_secs()
                    )
                    .as_bytes(),
                )?;
                return Ok(());
            }
        };
        let command = line.trim();
        if command == "quit" {
            return Ok(());
        }
        let answer = submit(events, command);
        writer.write_all(answer.as_bytes())?;
        // An empty line ends each answer, for clients that keep talking.
        writer.write_all(b"\n")?;
    }
}

/// At most [`QUOTE_LIMIT`] characters of a client's input, quoted.
pub fn quote(input: &str) -> String {
    match input.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &input[..cut], input.len()),
    }
}

/// Has the processor answer one command line (from a console client or
/// D-Bus), on the caller's thread: `netlink replay` files are read here.
pub fn submit(events: &Sender<Event>, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let event = match words.as_slice() {
        ["netlink", "replay", rest @ ..] => {
            let (xfrm, path) = match rest {
                ["xfrm", path] => (true, *path),
                [path] if *path != "xfrm" => (false, *path),
                _ => {
                    return format!(
                        "error: usage: netlink replay [xfrm] FILE, not {}\n",
                        quote(line)
                    )
                }
            };
            match read_replay_file(Path::new(path)) {
                Ok(bytes) => Event::Replay {
                    xfrm,
                    bytes,
                    reply: tx,
                },
                Err(e) => return format!("error: {e}\n"),
            }
        }
        _ => Event::Console {
            line: line.to_owned(),
            reply: tx,
        },
    };
    if events.send(event).is_err() {
        return "error: the cache manager is stopping\n".to_owned();
    }
    rx.recv_timeout(ANSWER_DEADLINE)
        .unwrap_or_else(|_| "error: no answer from the cache manager\n".to_owned())
}

/// Reads a `netlink replay` file: a regular file of at most
/// [`REPLAY_LIMIT`] bytes. Opened non-blocking, so that a FIFO without a
/// writer does not hang the open; its type is checked on the open file.
pub fn read_replay_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = quote(&path.to_string_lossy());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {shown}: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "refused: {shown} is {kind}; netlink replay reads regular files only"
        ));
    }
    let too_big = |len: u64| {
        format!(
            "refused: {shown} has {len} bytes or more; netlink replay reads at most {REPLAY_LIMIT} bytes (64 MiB)"
        )
    };
    if meta.len() > REPLAY_LIMIT {
        return Err(too_big(meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never past the limit.
    file.take(REPLAY_LIMIT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if buf.len() as u64 > REPLAY_LIMIT {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(stream: UnixStream, deadline: Duration, limit: usize) -> LineReader {
        LineReader {
            stream,
            pending: Vec::new(),
            deadline,
            limit,
        }
    }

    #[test]
    fn lines_are_split_and_the_rest_kept() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"show pid\nshow queue\nlast").unwrap();
        drop(a);
        let mut r = reader(b, Duration::from_secs(1), 64);
        assert_eq!(r.next_line().unwrap(), Ok(Some("show pid".into())));
        assert_eq!(r.next_line().unwrap(), Ok(Some("show queue".into())));
        assert_eq!(r.next_line().unwrap(), Ok(Some("last".into())));
        assert_eq!(r.next_line().unwrap(), Ok(None));
    }

    #[test]
    fn a_long_line_is_refused_without_buffering_it() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'x'; 65536];
            // Far more than the limit; stops when the reader hangs up.
            for _ in 0..1000 {
                if a.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let mut r = reader(b, Duration::from_secs(5), 1000);
        assert_eq!(r.next_line().unwrap(), Err(LineError::TooLong));
        assert!(r.pending.len() <= 1000 + 4096, "{}", r.pending.len());
        drop(r);
        writer.join().unwrap();
        // A long line with its newline in one read is refused too.
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[b'y'; 2000]).unwrap();
        a.write_all(b"\n").unwrap();
        assert_eq!(
            reader(b, Duration::from_secs(1), 1000).next_line().unwrap(),
            Err(LineError::TooLong)
        );
    }

    #[test]
    fn the_deadline_is_for_the_whole_line() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..20 {
                if a.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let t0 = Instant::now();
        let mut r = reader(b, Duration::from_millis(300), 1000);
        assert_eq!(r.next_line().unwrap(), Err(LineError::Deadline));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(600),
            "{took:?}"
        );
        drop(r);
        writer.join().unwrap();
    }

    #[test]
    fn errors_quote_a_short_prefix() {
        assert_eq!(quote("show x"), "\"show x\"");
        let long = "é".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < 200, "{q}");
        assert!(q.ends_with("... (20000 bytes)"), "{q}");
    }

    #[test]
    fn replay_files_are_regular_and_bounded() {
        let e = read_replay_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("is a character device"), "{e}");
        let dir = std::env::temp_dir().join(format!("cmgrd-replay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_replay_file(&fifo).unwrap_err();
        assert!(e.contains("is a FIFO"), "{e}");
        let e = read_replay_file(&dir).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let big = dir.join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(REPLAY_LIMIT + 1)
            .unwrap();
        let e = read_replay_file(&big).unwrap_err();
        assert!(e.contains("at most 67108864 bytes"), "{e}");
        let small = dir.join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(read_replay_file(&small).unwrap(), b"abc");
        let e = read_replay_file(&dir.join("missing")).unwrap_err();
        assert!(e.starts_with("cannot open"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
