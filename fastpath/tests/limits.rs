//! Runs the real fpd against peers that hold what they should not: a
//! Hello for another blade or from another instance, oversize frames, more
//! connections than the limit, silent query clients, a reader that never
//! reads; and checks its socket's mode under umask 000. Each is refused or
//! dropped with a named reason and counted, and the sync session goes on.

mod common;

use std::ffi::CString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::{fpd_command, Client, Fpd, TempDir};
use fpc::{
    all_capabilities, rtn, Endpoint, ErrorCode, Hello, Hop, Link, LinkInfo, Message, NextHops,
    Object, Op, QueryClient, Role, Route, MAGIC, VERSION,
};

fn link(ifindex: u32, name: &str) -> Object {
    Object::Link(Link {
        ifindex,
        name: name.into(),
        kind: "veth".into(),
        flags: 0x1003,
        mtu: 1500,
        link_type: 1,
        mac: vec![2, 0, 0, 0, 0, ifindex as u8],
        master: 0,
        link: 0,
        link_netnsid: -1,
        operstate: 6,
        info: LinkInfo::None,
    })
}

fn route(i: u32) -> Object {
    Object::Route(Route {
        table: 254,
        dst: IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        dst_len: 32,
        tos: 0,
        priority: 0,
        rtype: rtn::UNICAST,
        protocol: 3,
        scope: 0,
        prefsrc: None,
        mtu: 0,
        nexthops: NextHops::Single(Hop {
            gateway: Some("192.0.2.1".parse().unwrap()),
            oif: 2,
            weight: 1,
            flags: 0,
        }),
    })
}

fn batch(objects: &[Object]) -> Message {
    Message::Batch(objects.iter().map(|o| (Op::Add, o.clone())).collect())
}

fn counter(fpd: &Fpd, name: &str) -> u64 {
    let mut q = QueryClient::connect(
        &Endpoint::Unix(fpd.socket.clone()),
        "fpsync-test",
        Duration::from_secs(20),
    )
    .expect("query connection");
    let counters = q.counters().unwrap();
    counters
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no counter {name} in {counters:?}"))
        .1
}

/// Says a sync Hello as `instance` for `blade`: fpd's Hello, or its Error.
fn sync_hello(c: &mut Client, instance: u32, blade: u32) -> Result<Hello, (u16, String)> {
    c.send(&Message::Hello(Hello {
        version: VERSION,
        role: Role::Sync,
        instance,
        blade,
        capabilities: all_capabilities(),
        election_id: 0,
        name: format!("cmgrd{instance}"),
    }));
    match c.recv().expect("an answer") {
        Some((_, Message::Hello(h))) => Ok(h),
        Some((_, Message::Error { code, message })) => Err((code, message)),
        other => panic!("expected Hello or Error, got {other:?}"),
    }
}

fn header(kind: u8, body_len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.push(kind);
    h.push(0);
    h.extend_from_slice(&body_len.to_be_bytes());
    h.extend_from_slice(&1u64.to_be_bytes());
    h
}

#[test]
fn one_cache_manager_per_blade() {
    let fpd = Fpd::start("owner");
    let mut owner = Client::connect(&fpd.socket).unwrap();
    sync_hello(&mut owner, 3, 7).expect("the first owner is accepted");
    assert_eq!(owner.apply(&batch(&[link(2, "eth0")])), vec![]);

    let mut other_blade = Client::connect(&fpd.socket).unwrap();
    let (code, message) = sync_hello(&mut other_blade, 3, 8).unwrap_err();
    assert_eq!(code, ErrorCode::Refused as u16, "{message}");
    assert!(
        message.contains("blade 8") && message.contains("blade 7"),
        "{message}"
    );

    let mut other_instance = Client::connect(&fpd.socket).unwrap();
    let (code, message) = sync_hello(&mut other_instance, 5, 7).unwrap_err();
    assert_eq!(code, ErrorCode::Refused as u16, "{message}");
    assert!(
        message.contains("blade 7 is owned by instance 3"),
        "{message}"
    );
    // The owner keeps the blade.
    assert_eq!(owner.apply(&batch(&[link(3, "eth1")])), vec![]);
    assert_eq!(counter(&fpd, "refused_wrong_blade"), 1);
    assert_eq!(counter(&fpd, "refused_blade_owned"), 1);

    // The same instance (a restarted cmgrd) takes over, as before.
    let mut restarted = Client::connect(&fpd.socket).unwrap();
    sync_hello(&mut restarted, 3, 7).expect("the same instance takes over");
    let (code, _) = owner.expect_closed().expect("an Error frame");
    assert_eq!(code, ErrorCode::Replaced as u16);
    // Once the owner is gone, another instance may have the blade.
    drop(restarted);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&fpd, "sync_connected") != 0 {
        assert!(Instant::now() < deadline, "sync_connected stays 1");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut next = Client::connect(&fpd.socket).unwrap();
    sync_hello(&mut next, 5, 7).expect("a free blade takes any instance");
}

#[test]
fn oversize_frames_are_refused_before_their_body() {
    let fpd = Fpd::start_with("oversize", &["--max-query-frame", "16K"]);
    for (what, query) in [("before Hello", false), ("on a query connection", true)] {
        let mut c = Client::connect(&fpd.socket).unwrap();
        if query {
            c.hello(Role::Query, VERSION);
        }
        // An 8 MiB body announced, 64 KiB of it sent: refused at once.
        let started = Instant::now();
        let mut bytes = header(4, 8 << 20);
        bytes.extend_from_slice(&[0; 64 * 1024]);
        let _ = c.send_raw(&bytes);
        let (code, message) = c.expect_closed().expect("an Error frame");
        assert_eq!(code, ErrorCode::Limit as u16, "{what}: {message}");
        assert!(message.contains("16384"), "{what}: {message}");
        assert!(started.elapsed() < Duration::from_secs(2), "{what}");
    }
    assert_eq!(counter(&fpd, "oversize_frames"), 2);
    // A sync session may send large frames (here some 100 KiB).
    let mut sync = Client::connect(&fpd.socket).unwrap();
    sync.hello(Role::Sync, VERSION);
    let routes: Vec<Object> = (0..2_000).map(route).collect();
    assert_eq!(sync.apply(&batch(&routes)), vec![]);
    assert_eq!(counter(&fpd, "routes4"), 2_000);
}

#[test]
fn at_the_connection_limit_idle_peers_make_room_never_the_sync_session() {
    let fpd = Fpd::start_with("limit", &["--max-connections", "8"]);
    let mut sync = Client::connect(&fpd.socket).unwrap();
    sync.hello(Role::Sync, VERSION);
    let mut idle: Vec<Client> = (0..40)
        .map(|_| Client::connect(&fpd.socket).unwrap())
        .collect();
    // The sync session goes on, and a query client gets in.
    assert_eq!(sync.apply(&batch(&[link(2, "eth0")])), vec![]);
    // (An evicted connection's task may take a moment to end.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&fpd, "connections") > 8 {
        assert!(Instant::now() < deadline, "more connections than the limit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(counter(&fpd, "evicted_connections") >= 33);
    assert_eq!(counter(&fpd, "max_connections"), 8);
    // The oldest idle connection was told why.
    let (code, message) = idle[0].expect_closed().expect("an Error frame");
    assert_eq!(code, ErrorCode::Limit as u16, "{message}");
    assert!(message.contains("limit of 8 connections"), "{message}");
    // Logged, but not once per eviction.
    if common::logs_to_stderr() {
        let log = fpd.log();
        let lines = log
            .lines()
            .filter(|l| l.contains("evicted_connections"))
            .count();
        assert!((1..=2).contains(&lines), "{lines} lines:\n{log}");
    }
    idle.clear();
}

#[test]
fn silent_query_clients_are_closed_after_the_idle_timeout() {
    let fpd = Fpd::start_with("idle", &["--idle-timeout", "1"]);
    let mut q = Client::connect(&fpd.socket).unwrap();
    q.hello(Role::Query, VERSION);
    let started = Instant::now();
    let (code, message) = q.expect_closed().expect("an Error frame");
    let waited = started.elapsed();
    assert_eq!(code, ErrorCode::Limit as u16, "{message}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(counter(&fpd, "idle_timeouts"), 1);
}

#[test]
fn a_reader_that_never_reads_slows_only_itself() {
    let fpd = Fpd::start_with("stuck", &["--write-timeout", "2"]);
    let mut sync = Client::connect(&fpd.socket).unwrap();
    sync.hello(Role::Sync, VERSION);
    let routes: Vec<Object> = (0..20_000).map(route).collect();
    for chunk in routes.chunks(1_000) {
        assert_eq!(sync.apply(&batch(chunk)), vec![]);
    }
    let mut stuck = Client::connect(&fpd.socket).unwrap();
    stuck.hello(Role::Query, VERSION);
    stuck.send(&Message::DumpRequest);
    std::thread::sleep(Duration::from_millis(300));
    // The dump is stuck in the socket; sync frames and queries go on.
    let started = Instant::now();
    for i in 20_000..21_000 {
        assert_eq!(sync.apply(&batch(&[route(i)])), vec![]);
    }
    assert_eq!(counter(&fpd, "routes4"), 21_000);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // After the write timeout, the reader is dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&fpd, "write_timeouts") != 1 {
        assert!(Instant::now() < deadline, "the stuck reader stays");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether uid/gid 65534 (nobody/nogroup) can connect to `path`: forks,
/// drops privileges in the child and tries.
fn nobody_connects(path: &std::path::Path) -> Result<(), i32> {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a zeroed sockaddr_un is valid; the path fits (checked).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = c_path.as_bytes_with_nul();
    assert!(bytes.len() <= addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: the child calls only async-signal-safe functions (setgroups,
    // setgid, setuid, socket, connect, _exit) on memory prepared before
    // the fork, and the parent waits for it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                100
            } else {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) == 0 {
                    0
                } else {
                    *libc::__errno_location()
                }
            };
            libc::_exit(code);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status));
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            e => Err(e),
        }
    }
}

/// Starts fpd under umask 000 on DIR/sub/fpd.sock; returns the child and
/// the socket once it answers.
fn fpd_under_umask_000(dir: &TempDir, options: &str) -> (std::process::Child, std::path::PathBuf) {
    let socket = dir.0.join("sub").join("fpd.sock");
    let script = format!(
        "umask 000; exec {} --blade 7 --listen unix:{} {options}",
        env!("CARGO_BIN_EXE_fpd"),
        socket.display()
    );
    let child = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Client::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "fpd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, socket)
}

#[test]
fn the_socket_is_0600_whatever_the_umask_or_0660_with_its_group() {
    // The test's directory lets anyone through, so that only the socket's
    // own mode decides.
    let dir = TempDir::new("mode");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, socket) = fpd_under_umask_000(&dir, "");
    let meta = std::fs::metadata(&socket).unwrap();
    let sub = std::fs::metadata(socket.parent().unwrap()).unwrap();
    let result = nobody_connects(&socket);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(sub.permissions().mode() & 0o777, 0o755, "fpd's directory");
    assert_eq!(result, Err(libc::EACCES), "nobody may not connect");

    // With --socket-group, 0660 and that group: its members get in.
    let dir = TempDir::new("mode-group");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, socket) = fpd_under_umask_000(&dir, "--socket-group 65534");
    let meta = std::fs::metadata(&socket).unwrap();
    let result = nobody_connects(&socket);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);
    assert_eq!(result, Ok(()), "a member of the socket's group connects");
    // An unknown group is a clear error on the command line.
    let out = fpd_command(&["--blade", "7", "--socket-group", "no-such-group-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such group"));
}

#[test]
fn a_reader_that_trickles_a_dump_is_dropped_after_the_idle_timeout() {
    let fpd = Fpd::start_with("trickle", &["--idle-timeout", "2", "--write-timeout", "10"]);
    let mut sync = Client::connect(&fpd.socket).unwrap();
    sync.hello(Role::Sync, VERSION);
    let routes: Vec<Object> = (0..20_000).map(route).collect();
    for chunk in routes.chunks(1_000) {
        assert_eq!(sync.apply(&batch(chunk)), vec![]);
    }
    let mut slow = Client::connect(&fpd.socket).unwrap();
    slow.hello(Role::Query, VERSION);
    slow.send(&Message::DumpRequest);
    // 16 KiB every 300 ms: each frame goes within the write timeout, the
    // whole dump (about 700 KB) not within the idle timeout.
    let started = Instant::now();
    let mut got = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match std::io::Read::read(&mut slow.stream, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never dropped");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(got < 20_000 * 30, "the whole dump came ({got} bytes)");
    assert_eq!(counter(&fpd, "write_timeouts"), 1);
}
