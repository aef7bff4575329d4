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
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::json;
use tracing::{debug, warn};

use crate::daemon::{Event, Processor};
use crate::netlink::wire::type_name;
use crate::stats::SocketStats;

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
pub fn console_path(instance: Option<u32>) -> PathBuf {
    match instance {
        Some(i) => PathBuf::from(format!("/tmp/.cmgrd{i}")),
        None => PathBuf::from("/tmp/.cmgrd"),
    }
}

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
pub fn peer_cred(stream: &UnixStream) -> std::io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt on a descriptor we own, into a live ucred whose
    // size is passed in `len`.
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred)
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
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
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

/// The processor's side of `netlink replay`: the bytes were read by the
/// console thread.
pub fn replayed(p: &mut Processor, xfrm: bool, bytes: &[u8]) -> String {
    let n = if xfrm {
        p.replay_xfrm(bytes)
    } else {
        p.replay_netlink(bytes)
    };
    format!("replayed {n} netlink messages\n")
}

const HELP: &str = "\
help - Show help
? - Show help
quit - Quit the shell
show - show statistics
ipsec - ipsec commands
netlink - netlink commands
";

const SHOW_HELP: &str = "\
pid - show pid
netlink - show netlink packets
queue - show queued msg
conf - show conf variables
modules - show registered modules
interfaces - show registered interfaces
sync-features - show synchronized feartures
sync - show synchronization state
stats - show fast path statistics beside Linux's own counters
rules - show the policy routing rules synced, in the order they apply
(add --json to any show for JSON)
";

const NETLINK_HELP: &str = "\
replay FILE - feed the netlink messages of FILE (as the kernel sends them)
  through the decoder and sync path, as if the listener had received them
  (a regular file of at most 64 MiB)
replay xfrm FILE - the same for NETLINK_XFRM messages
";

const IPSEC_HELP: &str = "\
ha show - show IPsec High Availability status
ha enable [blade B] - enable IPsec HA (SA sequence numbers sync)
ha disable [blade B] - disable IPsec HA
";

/// Answers one console command. Commands that change state take `&mut`.
pub fn answer(p: &mut Processor, line: &str) -> String {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let json = words.last() == Some(&"--json");
    if json {
        words.pop();
    }
    let out = |v: serde_json::Value| format!("{v}\n");
    match words.as_slice() {
        [] | ["help"] | ["?"] => HELP.to_owned(),
        ["show"] | ["show", "help"] | ["show", "?"] => SHOW_HELP.to_owned(),
        ["show", "pid"] if json => out(json!({ "pid": std::process::id() })),
        ["show", "pid"] => format!("pid: {}\n", std::process::id()),
        ["show", "netlink"] if json => out(json!(sockets(p))),
        ["show", "netlink"] => show_netlink(&sockets(p)),
        // Read by the console thread (`submit`), never here.
        ["netlink", "replay", ..] => {
            "error: netlink replay files are read by the console (daemonctl)\n".to_owned()
        }
        ["show", "queue"] if json => {
            let blades: Vec<_> = p
                .blades
                .iter()
                .map(|b| json!({"blade": b.blade, "endpoint": b.endpoint.to_string(), "queue": b.stats.snapshot()}))
                .collect();
            out(json!(blades))
        }
        ["show", "queue"] => show_queue(p),
        ["show", "sync"] => show_sync(p, json),
        ["show", "rules"] => show_rules(p, json),
        ["show", "stats"] => show_stats(p, json),
        ["show", "conf"] => show_conf(p, json),
        ["show", "modules"] if json => out(json!(MODULES)),
        ["show", "modules"] => MODULES.iter().map(|m| format!("{m}\n")).collect(),
        ["show", "interfaces"] => show_interfaces(p, json),
        ["show", "sync-features"] => show_sync_features(p, json),
        ["ipsec"] | ["ipsec", "help"] | ["ipsec", "ha"] => IPSEC_HELP.to_owned(),
        ["netlink"] | ["netlink", "help"] => NETLINK_HELP.to_owned(),
        ["ipsec", "ha", "show"] => show_ipsec_ha(p, json),
        ["ipsec", "ha", verb @ ("enable" | "disable"), rest @ ..] => {
            let enable = *verb == "enable";
            let blades: Vec<u32> = match rest {
                [] => p.ipsec_ha.keys().copied().collect(),
                ["blade", b] => match b.parse::<u32>() {
                    Ok(b) if p.ipsec_ha.contains_key(&b) => vec![b],
                    _ => {
                        return format!(
                            "error: no blade {} in this instance (blades: {})\n",
                            quote(b),
                            blade_list(p)
                        )
                    }
                },
                _ => {
                    return format!(
                        "error: usage: ipsec ha {verb} [blade B], not {}\n",
                        quote(line)
                    )
                }
            };
            for b in blades {
                p.set_ipsec_ha(b, enable);
            }
            tracing::info!(enable, "IPsec High Availability switched");
            show_ipsec_ha(p, json)
        }
        _ => format!("error: unknown command {} (try help)\n", quote(line)),
    }
}

/// The sockets to list: the replay pseudo-socket only once used.
fn sockets(p: &Processor) -> Vec<&SocketStats> {
    let mut v = vec![
        &p.listen_stats,
        &p.cmd_stats,
        &p.xfrm_listen_stats,
        &p.xfrm_cmd_stats,
        &p.ct_listen_stats,
        &p.ct_cmd_stats,
        &p.audit_listen_stats,
    ];
    if p.replay_stats.packets > 0 {
        v.push(&p.replay_stats);
    }
    if p.xfrm_replay_stats.packets > 0 {
        v.push(&p.xfrm_replay_stats);
    }
    v
}

/// The netlink families this build registers (the seed's `show modules`).
const MODULES: &[&str] = &[
    "route",
    "xfrm",
    "xfrm-migrate",
    "netfilter-conntrack",
    "netfilter-nftables",
    "netfilter-xtables-audit",
];

fn blade_list(p: &Processor) -> String {
    let ids: Vec<String> = p.ipsec_ha.keys().map(u32::to_string).collect();
    ids.join(", ")
}

fn show_ipsec_ha(p: &Processor, json: bool) -> String {
    if json {
        let per: serde_json::Map<String, serde_json::Value> = p
            .ipsec_ha
            .iter()
            .map(|(b, on)| (b.to_string(), json!(on)))
            .collect();
        return format!("{}\n", json!({ "blades": per }));
    }
    let states: std::collections::BTreeSet<bool> = p.ipsec_ha.values().copied().collect();
    let word = |on: bool| if on { "enabled" } else { "disabled" };
    match states.len() {
        0 | 1 => format!(
            "IPsec High Availability {}\n",
            word(states.into_iter().next().unwrap_or(false))
        ),
        _ => p
            .ipsec_ha
            .iter()
            .map(|(b, on)| format!("IPsec High Availability {} (blade {b})\n", word(*on)))
            .collect(),
    }
}

fn show_conf(p: &Processor, json: bool) -> String {
    let c = &p.config;
    let blades: Vec<String> = c.blades.iter().map(|(b, ep)| format!("{b}={ep}")).collect();
    let vars: Vec<(&str, serde_json::Value)> = vec![
        ("instance", json!(c.instance)),
        ("netns", json!(c.netns)),
        ("blades", json!(blades)),
        ("sync_mask", json!(format!("{:#07x}", c.features.mask))),
        ("sync_bpf_all", json!(c.bpf_all)),
        (
            "sync_bpf_pattern_only",
            json!(c.features.bpf_pattern_only()),
        ),
        ("sync_ipsec_replay", json!(c.ipsec_replay)),
        ("debug", json!(format!("{:#x}", c.debug))),
        ("foreground", json!(c.foreground)),
        ("socket_buffer", json!(c.socket_buffer)),
        ("netlink_buffer", json!(c.netlink_buffer)),
        ("max_queue", json!(c.max_queue)),
        (
            "link_poll_ms",
            json!(c.link_poll.map(|d| d.as_millis() as u64).unwrap_or(0)),
        ),
        ("console", json!(c.console().display().to_string())),
        ("pid_file", json!(c.pid_file.display().to_string())),
    ];
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        return format!("{}\n", serde_json::Value::Object(map));
    }
    vars.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}\n"),
            serde_json::Value::Null => format!("{k}=\n"),
            other => format!("{k}={other}\n"),
        })
        .collect()
}

fn show_sync_features(p: &Processor, json: bool) -> String {
    let features = &p.config.features;
    let listed = crate::features::FEATURES
        .iter()
        .filter(|f| f.bit != crate::features::TAP_PATTERN_ONLY);
    if json {
        let map: serde_json::Map<String, serde_json::Value> = listed
            .map(|f| {
                (
                    f.name.to_owned(),
                    json!({"enabled": features.enabled(f.bit),
                           "synchronized_by_this_build": f.bit & crate::features::IMPLEMENTED != 0}),
                )
            })
            .collect();
        return format!(
            "{}\n",
            json!({"mask": format!("{:#07x}", features.mask),
                   "bpf_pattern_only": features.bpf_pattern_only(),
                   "features": map})
        );
    }
    let mut out = String::from(
        "Cache manager uses fpsync configuration\nFeatures Status (enabled/disabled)\n",
    );
    for f in listed {
        let state = if features.enabled(f.bit) {
            "enabled"
        } else {
            "disabled"
        };
        out += &format!("{:<16}{state}\n", f.name);
    }
    out
}

/// A stable 32-bit id of an interface: FNV-1a of the namespace and the
/// ifindex (names change, ifindexes are not reused while the link lives).
pub fn ifuid(netns: &str, ifindex: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in netns.bytes().chain(ifindex.to_be_bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The seed's interface type (24 loopback, 6 Ethernet-like) and our
/// subtype by link kind.
fn if_type(l: &fastpath::fpc::Link) -> (u32, u32) {
    const ARPHRD_LOOPBACK: u16 = 772;
    let ty = if l.link_type == ARPHRD_LOOPBACK {
        24
    } else {
        6
    };
    let subtype = match l.kind.as_str() {
        "veth" => 1,
        "vlan" => 2,
        "macvlan" | "macvtap" => 3,
        "vxlan" => 4,
        "bridge" => 5,
        "bond" => 6,
        "gre" | "gretap" | "ip6gre" | "ip6gretap" => 7,
        "tun" => 8,
        "ipip" | "sit" | "ip6tnl" => 9,
        "vti" | "vti6" => 10,
        _ => 0,
    };
    (ty, subtype)
}

fn show_interfaces(p: &Processor, json: bool) -> String {
    use fastpath::fpc::{Object, ObjectKey};
    let ns = p.config.netns.clone().unwrap_or_default();
    let blade = p.config.blades.first().map(|(b, _)| *b).unwrap_or(0);
    let mut links: Vec<&fastpath::fpc::Link> = p
        .cache
        .objects(fastpath::fpc::ObjectKind::Link)
        .filter_map(|o| match o {
            Object::Link(l) => Some(l),
            _ => None,
        })
        .collect();
    links.sort_by_key(|l| std::cmp::Reverse(l.ifindex));
    let master_of = |l: &fastpath::fpc::Link| match l.master {
        0 => None,
        m => match p.cache.get(&ObjectKey::Link(m)) {
            Some(Object::Link(master)) => Some(master.clone()),
            _ => None,
        },
    };
    let mac = |m: &[u8]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if json {
        let list: Vec<_> = links
            .iter()
            .map(|l| {
                let (ty, subtype) = if_type(l);
                let master = master_of(l);
                json!({
                    "name": l.name, "vrfid": 0, "ifindex": l.ifindex,
                    "ifuid": format!("{:#x}", ifuid(&ns, l.ifindex)),
                    "type": ty, "subtype": subtype, "flags": format!("{:#x}", l.flags), "mtu": l.mtu,
                    "master_ifuid": format!("{:#x}", master.as_ref().map(|m| ifuid(&ns, m.ifindex)).unwrap_or(0)),
                    "vnb_nodeid": "0x0",
                    "in_l_bond": master.as_ref().is_some_and(|m| m.kind == "bond"),
                    "blade_id": blade, "kind": l.kind, "mac": mac(&l.mac), "link": l.link,
                    "operstate": l.operstate, "info": l.info.to_string().trim(),
                })
            })
            .collect();
        return format!("{}\n", json!(list));
    }
    let mut out = String::from("Interfaces list:\n");
    let mut bridge_ports = String::new();
    for l in &links {
        let (ty, subtype) = if_type(l);
        let master = master_of(l);
        let master_uid = master.as_ref().map(|m| ifuid(&ns, m.ifindex)).unwrap_or(0);
        out += &format!(
            "{} vrfid 0 (ifindex: {}, ifuid: {:#x})\n\
             \x20 type: {ty}, subtype: {subtype}, flags: {:#x}, mtu: {}\n\
             \x20 master_ifuid: {master_uid:#x}, vnb_nodeid: 0x0\n\
             \x20 in_l_bond: {}, blade_id: {blade}\n\
             \x20 kind: {}, mac: {}, link: {}, operstate: {}{}\n",
            l.name,
            l.ifindex,
            ifuid(&ns, l.ifindex),
            l.flags,
            l.mtu,
            if master.as_ref().is_some_and(|m| m.kind == "bond") {
                "yes"
            } else {
                "no"
            },
            if l.kind.is_empty() { "-" } else { &l.kind },
            mac(&l.mac),
            l.link,
            l.operstate,
            l.info,
        );
        if master.as_ref().is_some_and(|m| m.kind == "bridge") {
            bridge_ports += &format!(
                "{} vrfid 0 (ifindex: {}, ifuid: {:#x})\n\x20 type: 249, subtype: 0, master_ifuid: {master_uid:#x}\n",
                l.name,
                l.ifindex,
                ifuid(&ns, l.ifindex),
            );
        }
    }
    out += "Bridge interfaces list:\n";
    out += &bridge_ports;
    out
}

fn show_netlink(sockets: &[&SocketStats]) -> String {
    let mut out = String::from("Dump netlink socket statistics:\n");
    out += &format!("{:<32} {}\n", "netlink socket name", "packets received");
    for s in sockets {
        out += &format!("{:<32} {}\n", s.name, s.packets);
        let xfrm = s.name.starts_with("netlink-xfrm");
        for (kind, n) in &s.by_type {
            let name = if xfrm {
                crate::netlink::xfrm::type_name(*kind)
            } else if s.name.starts_with("netlink-audit") {
                crate::netlink::audit::type_name(*kind)
            } else if s.name.starts_with("netlink-netfilter") {
                crate::netlink::nftables::type_name(*kind)
                    .map(str::to_owned)
                    .unwrap_or_else(|| crate::netlink::conntrack::type_name(*kind))
            } else {
                type_name(*kind)
            };
            out += &format!("    {:<28} {}\n", name, n);
        }
    }
    out
}

fn show_queue(p: &Processor) -> String {
    let mut out = String::new();
    for b in &p.blades {
        let q = b.stats.snapshot();
        out += &format!(
            "Queue information (blade {} at {})\n\
             - sent: {}\n- directly: {}\n- in-queue: {}\n- highest in-queue: {}\n\
             - has blocked: {}\n- partially sent: {}\n- errors: {}\n\
             - rejected objects: {}\n- connected: {}\n- in sync: {}\n- replays: {}\n- overflows: {}\n",
            b.blade,
            b.endpoint,
            q.sent,
            q.directly,
            q.in_queue,
            q.highest_in_queue,
            q.has_blocked,
            q.partially_sent,
            q.errors,
            q.rejected,
            q.connected as u8,
            q.in_sync as u8,
            q.replays,
            q.overflows,
        );
    }
    out
}

/// The fast paths' per-interface statistics (their latest reports), each
/// beside Linux's own counters of the same interface.
fn show_stats(p: &mut Processor, json: bool) -> String {
    let reports = p.reverse.interfaces();
    let linux = p.linux_link_stats();
    let get = |counters: &[(String, u64)], name: &str| {
        counters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    if json {
        let blades: serde_json::Map<String, serde_json::Value> =
            reports
                .iter()
                .map(|(blade, ifaces)| {
                    let list: Vec<serde_json::Value> = ifaces
                    .iter()
                    .map(|i| {
                        let fp: serde_json::Map<String, serde_json::Value> =
                            i.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        let lx = linux.get(&i.ifindex).map(|(_, s)| {
                            json!({"rx_packets": s[0], "tx_packets": s[1], "rx_bytes": s[2],
                                   "tx_bytes": s[3], "rx_dropped": s[4], "tx_dropped": s[5]})
                        });
                        json!({"ifindex": i.ifindex, "name": i.name, "fastpath": fp, "linux": lx})
                    })
                    .collect();
                    (blade.to_string(), json!(list))
                })
                .collect();
        return format!("{}\n", json!({ "blades": blades }));
    }
    if reports.is_empty() {
        return "No fast path statistics reported (no blade forwards on ports)\n".into();
    }
    let mut out = String::new();
    for (blade, ifaces) in &reports {
        out += &format!(
            "Fast path statistics (blade {blade}), beside Linux's own counters\n\
             {:<16}{:>12}{:>12}{:>12}{:>12}{:>12}{:>14}{:>14}\n",
            "interface", "fp rx", "fp tx", "fp fwd", "fp exc", "fp drops", "linux rx", "linux tx"
        );
        for i in ifaces {
            let exceptions: u64 = i
                .counters
                .iter()
                .filter(|(k, _)| k.starts_with("exception_"))
                .map(|(_, v)| v)
                .sum();
            let drops: u64 = i
                .counters
                .iter()
                .filter(|(k, _)| k.starts_with("drop_"))
                .map(|(_, v)| v)
                .sum();
            let (lrx, ltx) = linux
                .get(&i.ifindex)
                .map(|(_, s)| (s[0], s[1]))
                .unwrap_or_default();
            out += &format!(
                "{:<16}{:>12}{:>12}{:>12}{:>12}{:>12}{:>14}{:>14}\n",
                i.name,
                get(&i.counters, "rx_packets"),
                get(&i.counters, "tx_packets"),
                get(&i.counters, "forwarded"),
                exceptions,
                drops,
                lrx,
                ltx
            );
        }
        // Why packets left the fast path for Linux, by reason.
        for i in ifaces {
            let reasons: Vec<String> = i
                .counters
                .iter()
                .filter(|(k, v)| k.starts_with("exception_") && *v > 0)
                .map(|(k, v)| format!("{} {v}", &k["exception_".len()..]))
                .collect();
            if !reasons.is_empty() {
                out += &format!("{} to Linux: {}\n", i.name, reasons.join(", "));
            }
        }
    }
    out
}

/// The synced rules of each family by priority, then the kernel's order,
/// as `ip rule` lists them.
fn show_rules(p: &Processor, json: bool) -> String {
    use fastpath::fpc::{Object, ObjectKind};
    let mut rules: Vec<_> = p
        .cache
        .objects(ObjectKind::Rule)
        .filter_map(|o| match o {
            Object::Rule(r) => Some(r),
            _ => None,
        })
        .collect();
    rules.sort_by_key(|r| (r.spec.family, r.spec.priority, r.position));
    if json {
        let v: Vec<_> = rules.iter().map(|r| json!(r.to_string())).collect();
        return format!("{}\n", serde_json::Value::Array(v));
    }
    rules.iter().map(|r| format!("{r}\n")).collect()
}

fn show_sync(p: &Processor, json: bool) -> String {
    use fastpath::fpc::ObjectKind;
    let counts: serde_json::Map<String, serde_json::Value> = ObjectKind::ALL
        .iter()
        .map(|k| (k.name().to_owned(), json!(p.cache.len(*k))))
        .collect();
    let v = json!({
        "state": p.sync_state().name(),
        "generation": p.generation(),
        "overruns": p.sync.overruns,
        "resyncs": p.sync.resyncs,
        "reconciles": p.sync.reconciles,
        "silent_deletions": p.sync.silent_deletions,
        "silent_changes": p.sync.silent_changes,
        "decode_errors": p.sync.decode_errors,
        "xtables": p.xtables_watch(),
        "cache": counts,
        "hit_flags": hit_flags(p),
    });
    if json {
        return format!("{v}\n");
    }
    let mut out = format!(
        "Synchronization state: {}\n- overruns: {}\n- resyncs: {}\n- reconciles: {}\n\
         - silent deletions: {}\n- silent changes: {}\n- decode errors: {}\n\
         - legacy iptables changes: {}\nCached objects\n",
        p.sync_state().name(),
        p.sync.overruns,
        p.sync.resyncs,
        p.sync.reconciles,
        p.sync.silent_deletions,
        p.sync.silent_changes,
        p.sync.decode_errors,
        p.xtables_watch(),
    );
    for k in ObjectKind::ALL {
        out += &format!("- {}: {}\n", k.name(), p.cache.len(k));
    }
    out += "Hit flags (refreshed in Linux for the fast paths)\n";
    if let serde_json::Value::Object(m) = hit_flags(p) {
        for (k, v) in m {
            out += &format!("- {}: {v}\n", k.replace('_', " "));
        }
    }
    out
}

/// What the hit-flags refresher did (`crate::hitflags`).
fn hit_flags(p: &Processor) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let r = &p.reverse;
    json!({
        "neighbours_refreshed": r.refreshed.load(Relaxed),
        "neighbour_resolve_requests": r.resolve_requests.load(Relaxed),
        "neighbour_errors": r.errors.load(Relaxed),
        "conntracks_refreshed": r.ct_refreshed.load(Relaxed),
        "conntrack_refresh_errors": r.ct_errors.load(Relaxed),
        "dropped_reports": r.dropped_reports.load(Relaxed),
    })
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
