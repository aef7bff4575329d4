//! Sync pipeline capacity without the kernel (issue 16). The kernel's part
//! is taken out: the netlink notifications of a route load are recorded
//! once from a real kernel (a namespace, `ip -batch`, a listener subscribed
//! as cmgrd's is), then fed to cmgrd through `netlink replay` as fast as it
//! takes them: cmgrd's decoder, its cache, the FPC encoding, the socket and
//! fpd's apply, the same path as the listener's datagrams. Prints, in this
//! one run:
//!
//! * the kernel's own install rate (the recording's `ip -batch`);
//! * one instance (fpd and cmgrd pinned to the cores `--cpus` names, one
//!   by default): routes per second from the first replay command to fpd
//!   holding the last route, and that against the kernel's rate;
//! * the same on every core;
//! * `--instances N` (32) instances sharing the machine, the recording
//!   split between them: all routes over the time until every fpd holds
//!   its share (`--instances 0`: not measured);
//! * after each one-instance run, a full resync: fpd killed (SIGKILL) and
//!   started again, the time from its start to holding every route (the
//!   same measure as bench-routes' (b), the kernel out of it too).
//!
//! `netlink replay` reads regular files of at most 64 MiB (the console's
//! bound, kept): the recording is cut at datagram boundaries into as many
//! files as that takes, replayed one after another.
//!
//! Usage: bench-pipeline [--v4 N] [--v6 N] [--instances N] [--cpus LIST]
//! [--rounds N] (defaults 1,000,000, 200,000, 32, "1", 2). Release build,
//! as root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fpc::QueryClient;
use fpsync_tests::{arg, console, Netns, Setup, TempDir};
use instance::netlink::{wire, NetlinkSocket, SocketError, ROUTE_GROUPS};

/// `netlink replay`'s bound on a file (the console's REPLAY_LIMIT).
const FILE_MAX: usize = 64 << 20;

const LINKS: &str = "link add v0 type veth peer name v1\nlink set v0 up\nlink set v1 up\n\
     addr add 10.0.0.1/16 dev v0\naddr add 2001:db8::1/64 dev v0 nodad\n";

fn routes_in_fpd(client: &mut QueryClient) -> u64 {
    client
        .counters()
        .expect("fpd counters")
        .into_iter()
        .filter(|(n, _)| n == "routes4" || n == "routes6")
        .map(|(_, v)| v)
        .sum()
}

/// Datagrams as received, one after another (each a whole number of
/// netlink messages).
struct Recording {
    datagrams: Vec<Vec<u8>>,
    routes: usize,
}

/// The offsets of the messages in `buf` and how many are RTM_NEWROUTE.
fn new_routes(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < 16 {
            break;
        }
        n += usize::from(kind == wire::RTM_NEWROUTE);
        at += len.next_multiple_of(4);
    }
    n
}

/// Loads the routes into a new namespace with one `ip -batch` while a
/// listener (subscribed as cmgrd's) records every datagram; returns the
/// recording and the kernel's install time (`ip -batch` wall time).
fn record(v4: usize, v6: usize, dir: &Path) -> (Recording, Duration) {
    let ns = Netns::new("rec");
    ns.batch(LINKS);
    let batch = fpsync_tests::route_batch(v4, v6);
    let path = dir.join("routes.batch");
    std::fs::write(&path, &batch).expect("write the batch");
    drop(batch);

    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let name = ns.name.clone();
    let stop = done.clone();
    let want = v4 + v6;
    let recorder = std::thread::spawn(move || {
        instance::netns::enter(&name).expect("enter the namespace");
        let mut sock = NetlinkSocket::open(&ROUTE_GROUPS, 256 << 20).expect("netlink socket");
        ready_tx.send(()).expect("main thread waits");
        let mut rec = Recording {
            datagrams: Vec::new(),
            routes: 0,
        };
        let mut quiet_since = None;
        loop {
            let mut buf = Vec::new();
            match sock.recv(&mut buf, true) {
                Ok(_) => {
                    rec.routes += new_routes(&buf);
                    rec.datagrams.push(buf);
                    quiet_since = None;
                }
                Err(SocketError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Done once `ip` exited, every route came and the
                    // socket stayed quiet a moment.
                    if stop.load(Ordering::Relaxed) && rec.routes >= want {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(200) {
                            return rec;
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("the recording listener failed: {e}"),
            }
        }
    });
    ready_rx.recv().expect("recorder ready");
    let t0 = Instant::now();
    let status = std::process::Command::new("ip")
        .args(["-n", &ns.name, "-batch", path.to_str().expect("utf-8 path")])
        .status()
        .expect("run ip -batch");
    let kernel = t0.elapsed();
    assert!(status.success(), "ip -batch failed");
    done.store(true, Ordering::Relaxed);
    let rec = recorder.join().expect("recorder");
    (rec, kernel)
}

/// Writes `datagrams` into files of at most FILE_MAX bytes, cut between
/// datagrams; returns their paths.
fn write_files(datagrams: &[Vec<u8>], dir: &Path, tag: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut flush = |cur: &mut Vec<u8>| {
        if !cur.is_empty() {
            let p = dir.join(format!("{tag}.{}.nl", files.len()));
            std::fs::write(&p, &*cur).expect("write a replay file");
            files.push(p);
            cur.clear();
        }
    };
    for d in datagrams {
        if cur.len() + d.len() > FILE_MAX {
            flush(&mut cur);
        }
        cur.extend_from_slice(d);
    }
    flush(&mut cur);
    files
}

/// Pins every thread of `pid` to `cpus` (taskset's list form).
fn pin(pid: i32, cpus: &str) {
    fpsync_tests::sh(&["taskset", "-a", "-p", "-c", cpus, &pid.to_string()]);
}

/// One instance, its replay files and the routes they hold.
struct Lane {
    setup: Setup,
    files: Vec<PathBuf>,
    target: u64,
}

fn lane(tag: &str, files: Vec<PathBuf>, routes: usize) -> Lane {
    let setup = Setup::new(tag);
    setup.ns.batch(LINKS);
    setup.assert_in_sync(Duration::from_secs(10));
    let mut client = QueryClient::connect(&setup.endpoint, "bench", Duration::from_secs(10))
        .expect("fpd query socket");
    let target = routes_in_fpd(&mut client) + routes as u64;
    Lane {
        setup,
        files,
        target,
    }
}

/// Replays every lane's files (one thread a lane, all at once) and
/// returns the time from the first command to every fpd holding its
/// routes.
fn run(lanes: &[Lane]) -> Duration {
    let start = Arc::new(std::sync::Barrier::new(lanes.len() + 1));
    let t0 = std::thread::scope(|sc| {
        for l in lanes {
            let start = start.clone();
            sc.spawn(move || {
                let mut client =
                    QueryClient::connect(&l.setup.endpoint, "bench", Duration::from_secs(10))
                        .expect("fpd query socket");
                let path = l.setup.console_path();
                start.wait();
                for f in &l.files {
                    let answer = console(&path, &format!("netlink replay {}", f.display()));
                    assert!(answer.starts_with("replayed"), "replay: {answer}");
                }
                let deadline = Instant::now() + Duration::from_secs(600);
                while routes_in_fpd(&mut client) < l.target {
                    assert!(Instant::now() < deadline, "fpd never held every route");
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
        }
        start.wait();
        Instant::now()
    });
    t0.elapsed()
}

/// The resident memory (VmRSS) of `pid`, KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let (v4, v6, instances, rounds) = (
        arg("--v4", 1_000_000usize),
        arg("--v6", 200_000usize),
        arg("--instances", 32usize),
        arg("--rounds", 2usize),
    );
    let cpus: String = arg("--cpus", "1".to_string());
    let dir = TempDir::new("pipeline");

    let (rec, kernel_t) = record(v4, v6, &dir.path);
    let kernel_rate = rec.routes as f64 / kernel_t.as_secs_f64();
    let bytes: usize = rec.datagrams.iter().map(Vec::len).sum();
    println!(
        "recorded: {} datagrams, {} bytes, {} RTM_NEWROUTE ({v4} IPv4 + {v6} IPv6 asked)",
        rec.datagrams.len(),
        bytes,
        rec.routes
    );
    println!(
        "kernel: ip -batch installed them in {:.2} s: {:.0} routes/s",
        kernel_t.as_secs_f64(),
        kernel_rate
    );
    let files = write_files(&rec.datagrams, &dir.path, "all");

    for round in 1..=rounds {
        for (label, pinned) in [
            (format!("cpus {cpus}"), Some(cpus.as_str())),
            ("every core".to_owned(), None),
        ] {
            let l = lane("pipe", files.clone(), rec.routes);
            let (fpd, cmgrd) = (
                l.setup.fpd.as_ref().expect("fpd").pid(),
                l.setup.cmgrd.as_ref().expect("cmgrd").pid(),
            );
            if let Some(c) = pinned {
                pin(fpd, c);
                pin(cmgrd, c);
            }
            let (fpd_before, cmgrd_before) = (rss_kib(fpd), rss_kib(cmgrd));
            let t = run(std::slice::from_ref(&l));
            let rate = rec.routes as f64 / t.as_secs_f64();
            println!(
                "round {round}, 1 instance ({label}): {} routes in {:.0} ms: {:.0} routes/s = {:.1} x the kernel's rate (target >= 2,000,000 on one core)",
                rec.routes,
                t.as_secs_f64() * 1e3,
                rate,
                rate / kernel_rate
            );
            let per = |after: u64, before: u64| {
                (after.saturating_sub(before) * 1024) as f64 / rec.routes as f64
            };
            println!(
                "    memory per route: fpd {:.1} bytes, cmgrd {:.1} bytes (VmRSS growth; cmgrd's includes the replay files read)",
                per(rss_kib(fpd), fpd_before),
                per(rss_kib(cmgrd), cmgrd_before)
            );
            println!("    {}", l.setup.console("show queue").replace('\n', " "));

            // Full resync: a new fpd (pinned as the old one) gets cmgrd's
            // whole cache.
            let mut l = l;
            l.setup.fpd.as_mut().expect("fpd").kill();
            let t1 = Instant::now();
            l.setup.start_fpd();
            if let Some(c) = pinned {
                pin(l.setup.fpd.as_ref().expect("fpd").pid(), c);
            }
            let mut client =
                QueryClient::connect(&l.setup.endpoint, "bench", Duration::from_secs(30))
                    .expect("new fpd's query socket");
            let deadline = Instant::now() + Duration::from_secs(120);
            while routes_in_fpd(&mut client) < l.target {
                assert!(
                    Instant::now() < deadline,
                    "the new fpd never held every route"
                );
                std::thread::sleep(Duration::from_micros(500));
            }
            println!(
                "    full resync after fpd restart ({label}): {:.0} ms (target <= 250 ms)",
                t1.elapsed().as_secs_f64() * 1e3
            );
        }
        if instances == 0 {
            continue;
        }

        // The recording split between the instances, at datagram bounds.
        let per = rec.datagrams.len().div_ceil(instances);
        let lanes: Vec<Lane> = rec
            .datagrams
            .chunks(per)
            .enumerate()
            .map(|(i, part)| {
                let routes = part.iter().map(|d| new_routes(d)).sum();
                let files = write_files(part, &dir.path, &format!("part{i}"));
                lane("pipe", files, routes)
            })
            .collect();
        let t = run(&lanes);
        let rate = rec.routes as f64 / t.as_secs_f64();
        println!(
            "round {round}, {} instances (every core): {} routes in {:.0} ms: {:.0} routes/s = {:.1} x the kernel's rate",
            lanes.len(),
            rec.routes,
            t.as_secs_f64() * 1e3,
            rate,
            rate / kernel_rate
        );
    }
}
