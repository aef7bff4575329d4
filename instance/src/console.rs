//! The console that `daemonctl cmgrd[<id>] <command>` reaches: a Unix
//! stream socket at `/tmp/.cmgrd<id>`; one command line in, one answer out.
//!
//! The console thread only carries text: the processor, which owns every
//! counter, composes the answer, so an answer is one consistent snapshot.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::json;
use tracing::warn;

use crate::daemon::{Event, Processor};
use crate::netlink::wire::type_name;
use crate::stats::SocketStats;

/// The console path of instance `id` (the seed's `/tmp/.cmgrd<val>`).
pub fn console_path(instance: Option<u32>) -> PathBuf {
    match instance {
        Some(i) => PathBuf::from(format!("/tmp/.cmgrd{i}")),
        None => PathBuf::from("/tmp/.cmgrd"),
    }
}

/// Binds the console (refusing if another cmgrd answers there) and serves
/// it on its own thread.
pub fn spawn(path: &Path, events: Sender<Event>) -> std::io::Result<()> {
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another cache manager answers there",
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("cmgrd-console".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = serve(s, &events) {
                            warn!("console client: {e}");
                        }
                    }
                    Err(e) => warn!("console accept: {e}"),
                }
            }
        })?;
    Ok(())
}

fn serve(stream: UnixStream, events: &Sender<Event>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    while {
        line.clear();
        reader.read_line(&mut line)? > 0
    } {
        let command = line.trim().to_owned();
        if command == "quit" {
            break;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let answer = if events
            .send(Event::Console {
                line: command,
                reply: tx,
            })
            .is_err()
        {
            "error: the cache manager is stopping\n".to_owned()
        } else {
            rx.recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| "error: no answer from the cache manager\n".to_owned())
        };
        writer.write_all(answer.as_bytes())?;
        // An empty line ends each answer, for clients that keep talking.
        writer.write_all(b"\n")?;
    }
    Ok(())
}

const HELP: &str = "\
help - Show help
? - Show help
quit - Quit the shell
show - show statistics
ipsec - ipsec commands
";

const SHOW_HELP: &str = "\
pid - show pid
netlink - show netlink packets
queue - show queued msg
sync - show synchronization state
";

/// Answers one console command.
pub fn answer(p: &Processor, line: &str) -> String {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let json = words.last() == Some(&"--json");
    if json {
        words.pop();
    }
    match words.as_slice() {
        [] | ["help"] | ["?"] => HELP.to_owned(),
        ["show"] | ["show", "help"] | ["show", "?"] => SHOW_HELP.to_owned(),
        ["show", "pid"] if json => format!("{}\n", json!({ "pid": std::process::id() })),
        ["show", "pid"] => format!("pid: {}\n", std::process::id()),
        ["show", "netlink"] if json => format!("{}\n", json!([&p.listen_stats, &p.cmd_stats])),
        ["show", "netlink"] => show_netlink(&[&p.listen_stats, &p.cmd_stats]),
        ["show", "queue"] if json => {
            let blades: Vec<_> = p
                .blades
                .iter()
                .map(|b| json!({"blade": b.blade, "endpoint": b.endpoint.to_string(), "queue": b.stats.snapshot()}))
                .collect();
            format!("{}\n", json!(blades))
        }
        ["show", "queue"] => show_queue(p),
        ["show", "sync"] => show_sync(p, json),
        _ => format!("error: unknown command {line:?} (try help)\n"),
    }
}

fn show_netlink(sockets: &[&SocketStats]) -> String {
    let mut out = String::from("Dump netlink socket statistics:\n");
    out += &format!("{:<32} {}\n", "netlink socket name", "packets received");
    for s in sockets {
        out += &format!("{:<32} {}\n", s.name, s.packets);
        for (kind, n) in &s.by_type {
            out += &format!("    {:<28} {}\n", type_name(*kind), n);
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

fn show_sync(p: &Processor, json: bool) -> String {
    use fastpath::fpc::ObjectKind;
    let counts: serde_json::Map<String, serde_json::Value> = ObjectKind::ALL
        .iter()
        .map(|k| (k.name().to_owned(), json!(p.cache.len(*k))))
        .collect();
    let v = json!({
        "state": p.state.name(),
        "generation": p.generation(),
        "overruns": p.sync.overruns,
        "resyncs": p.sync.resyncs,
        "reconciles": p.sync.reconciles,
        "silent_deletions": p.sync.silent_deletions,
        "decode_errors": p.sync.decode_errors,
        "cache": counts,
    });
    if json {
        return format!("{v}\n");
    }
    let mut out = format!(
        "Synchronization state: {}\n- overruns: {}\n- resyncs: {}\n- reconciles: {}\n\
         - silent deletions: {}\n- decode errors: {}\nCached objects\n",
        p.state.name(),
        p.sync.overruns,
        p.sync.resyncs,
        p.sync.reconciles,
        p.sync.silent_deletions,
        p.sync.decode_errors
    );
    for k in ObjectKind::ALL {
        out += &format!("- {}: {}\n", k.name(), p.cache.len(k));
    }
    out
}
