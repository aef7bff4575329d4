//! fpd under hostile peers, with cmgrd syncing a real namespace: a query
//! client that asks for a dump and never reads, 20,000 idle connections
//! and half-sent 8 MiB frames, a second cache manager pointed at the same
//! blade. Each time the sync goes on (the check is empty) and fpd's memory
//! stays bounded.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fpc::{all_capabilities, Endpoint, Hello, Message, Role, MAGIC, VERSION};
use fpsync_tests::{bin, unique, wait_until, Daemon, Netns, Setup};

fn socket_path(s: &Setup) -> PathBuf {
    match &s.endpoint {
        Endpoint::Unix(p) => p.clone(),
        other => panic!("not a Unix endpoint: {other}"),
    }
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    msg.emit(1, &mut out);
    out
}

fn query_hello() -> Vec<u8> {
    frame(&Message::Hello(Hello {
        version: VERSION,
        role: Role::Query,
        instance: 0,
        blade: 0,
        capabilities: all_capabilities(),
        election_id: 0,
        name: "hostile".into(),
    }))
}

/// `ip -batch` lines adding `n` /32 routes in 10.<first>.x.y.
fn routes(first: u8, n: u32) -> String {
    (0..n)
        .map(|i| format!("route add 10.{first}.{}.{}/32 dev lo\n", i / 256, i % 256))
        .collect()
}

fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Raises this process's descriptor limit as far as allowed (the hard
/// limit: CAP_SYS_RESOURCE, needed to go above it, may be missing) and
/// returns it.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on one live rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let wanted = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            return want;
        }
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// Waits until fpd holds `want` IPv4 routes; returns how long it took
/// since `started`.
fn routes_reach_fpd(s: &Setup, want: u64, started: Instant, timeout: Duration) -> Option<Duration> {
    wait_until(timeout, || s.fp_counter("routes4") == want).then(|| started.elapsed())
}

#[test]
fn a_dump_reader_that_never_reads_does_not_delay_the_sync() {
    let s = Setup::new("dumpstall");
    s.ns.batch(&routes(1, 20_000));
    s.assert_in_sync(Duration::from_secs(60));
    // Asks for a dump of some 20,000 routes (more than the socket buffers
    // hold) and never reads.
    let stuck = UnixStream::connect(socket_path(&s)).unwrap();
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on our own socket with a live c_int.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&stuck),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let mut request = query_hello();
    request.extend(frame(&Message::DumpRequest));
    (&stuck).write_all(&request).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let before = s.fp_counter("routes4");
    // Timed from before the routes are added to when fpd holds them all.
    let started = Instant::now();
    s.ns.batch(&routes(2, 1_000));
    let took = routes_reach_fpd(&s, before + 1_000, started, Duration::from_secs(40));
    s.assert_in_sync(Duration::from_secs(20));
    eprintln!("1,000 routes reached fpd in {took:?} beside a dump reader that never reads");
    match took {
        Some(t) => assert!(t < Duration::from_secs(1), "1,000 routes took {t:?}"),
        None => panic!("1,000 routes did not reach fpd within 40 s"),
    }
    drop(stuck);
}

/// Holds `n` connections to `path` that never say anything, opened from a
/// thread; `started` is set once `n / 2` are open.
fn idle_flood(
    path: &Path,
    n: usize,
    started: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<UnixStream>> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            match UnixStream::connect(&path) {
                Ok(c) => held.push(c),
                Err(e) => panic!("idle connection {i}: {e}"),
            }
            if i == n / 2 {
                started.store(true, Ordering::Relaxed);
            }
        }
        held
    })
}

/// Sends half of an 8 MiB frame (before Hello, or after a query Hello).
fn half_frame(path: &Path, hello: bool) -> UnixStream {
    let c = UnixStream::connect(path).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut bytes = if hello { query_hello() } else { Vec::new() };
    bytes.extend_from_slice(&MAGIC.to_be_bytes());
    bytes.extend_from_slice(&[4, 0]);
    bytes.extend_from_slice(&(8u32 << 20).to_be_bytes());
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.resize(bytes.len() + (4 << 20), 0);
    // fpd refuses the frame and closes: the write fails, as it should.
    let _ = (&c).write_all(&bytes);
    c
}

#[test]
fn idle_connections_and_half_sent_frames_leave_room_for_cmgrd() {
    // 20,000 idle connections, or as many as this process may open (all
    // far above fpd's limit of 256).
    let n = 20_000.min(raise_nofile(21_000).saturating_sub(500) as usize);
    assert!(n > 5_000, "too few descriptors for the test: {n}");
    let mut s = Setup::new("flood");
    let fpd_pid = s.fpd.as_ref().unwrap().pid();
    let rss_before = vm_rss_kib(fpd_pid);
    // cmgrd restarts while the flood goes on.
    s.cmgrd.take().unwrap().kill();
    let path = socket_path(&s);
    // Half-sent frames first (so that none is evicted unread), then the
    // idle flood, during which cmgrd restarts.
    let half: Vec<UnixStream> = (0..40).map(|i| half_frame(&path, i % 2 == 0)).collect();
    let started = Arc::new(AtomicBool::new(false));
    let flood = idle_flood(&path, n, started.clone());
    assert!(wait_until(Duration::from_secs(60), || started.load(Ordering::Relaxed)));
    s.start_cmgrd();
    let idle = flood.join().expect("the flood thread");
    assert_eq!(idle.len(), n);
    s.ns.batch(&routes(3, 1_000));
    s.assert_in_sync(Duration::from_secs(30));
    let rss = vm_rss_kib(fpd_pid);
    let counters: std::collections::HashMap<String, u64> = s.fp_counters().into_iter().collect();
    eprintln!(
        "fpd VmRSS {rss_before} kB before, {rss} kB with {n} idle connections and 40 half-sent 8 MiB frames; {counters:?}"
    );
    // 256 connections of at most a 16 KiB frame each, on an fpd of about
    // 10 MB: far below the 336 MB the same flood took before the limits.
    assert!(rss < 64 * 1024, "fpd's VmRSS is {rss} kB");
    assert_eq!(counters["sync_connected"], 1);
    assert!(counters["connections"] <= 256, "{counters:?}");
    assert!(
        counters["evicted_connections"] as usize >= n - 256,
        "{counters:?}"
    );
    assert_eq!(counters["oversize_frames"], 40, "{counters:?}");
    drop((idle, half));
}

#[test]
fn a_second_cache_manager_on_the_blade_is_refused_and_the_first_keeps_it() {
    let a = Setup::new("owner-a");
    a.ns.ip(&["route", "add", "198.51.100.0/24", "dev", "lo"]);
    a.assert_in_sync(Duration::from_secs(10));
    let syncs = a.fp_counter("syncs");
    // Another instance, another namespace, the same blade.
    let ns_b = Netns::new("owner-b");
    ns_b.ip(&["route", "add", "203.0.113.0/24", "dev", "lo"]);
    let instance_b = unique();
    let log_b = a.dir.path.join(format!("cmgrd-b.{}.log", unique()));
    let b = Daemon::spawn(
        &bin("cmgrd"),
        &[
            "-F".into(),
            "-I".into(),
            instance_b.to_string(),
            "--netns".into(),
            ns_b.name.clone(),
            "--blade".into(),
            format!("1={}", a.endpoint),
        ],
        log_b,
    );
    let reason = format!("blade 1 is owned by instance {}", a.instance);
    assert!(
        wait_until(Duration::from_secs(10), || b.log().contains(&reason)),
        "cmgrd B does not say why it is refused:\n{}",
        b.log()
    );
    // For several seconds the tables stay A's: never flipped to B's.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let diffs = a.diff();
        assert!(diffs.is_empty(), "the tables left A's namespace: {diffs:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    a.ns.ip(&["route", "add", "192.0.2.0/24", "dev", "lo"]);
    a.assert_in_sync(Duration::from_secs(10));
    assert_eq!(a.fp_counter("syncs"), syncs, "no resync of the blade");
    // B backs off rather than spinning, and says so once.
    let refused = a.fp_counter("refused_blade_owned");
    assert!((1..=10).contains(&refused), "{refused} refused Hellos");
    let said = b.log().matches(&reason).count();
    assert!(said <= 2, "B logged its refusal {said} times:\n{}", b.log());
}
